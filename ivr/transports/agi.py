"""AGI as text: the commands the Asterisk transport sends and the results it reads back.

Pure functions, no I/O, so each is checked against the frames of the recorded Asterisk 22
traffic (``tests/fixtures/ami/``). Facts they rely on, as recorded:

* ``AsyncAGIStart`` carries the AGI environment URL-encoded in ``Env`` (``agi_callerid``,
  ``agi_dnid``, ``agi_extension``, ``agi_channel``, ``agi_uniqueid``...).
* ``AsyncAGIExec`` carries the result URL-encoded with a trailing newline
  (``200%20result%3D50%20endpos%3D17760%0A``) and the command id spelled ``CommandId``.
* ``STREAM FILE`` with escape digits answers ``result=<ASCII code>`` of the key that
  interrupted it (``50`` is ``2``), ``0`` when it played to the end and ``-1`` on hang-up
  (or when the file cannot be opened). ``GET DATA`` answers the digits (``result=4711``),
  ``result= (timeout)`` when none came. ``WAIT FOR DIGIT`` answers an ASCII code or ``0``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

MENU_KEYS = "0123456789*#"

_CODE = re.compile(r"^\s*(\d{3})(?:[ -](.*))?$", re.DOTALL)
_RESULT = re.compile(r"result=(\S*)")
_DATA = re.compile(r"\(([^)]*)\)")
_ENDPOS = re.compile(r"endpos=(-?\d+)")


def decode(value: str) -> str:
    """A URL-encoded AMI field as text (already-decoded text passes unchanged)."""
    return unquote(value) if "%" in value else value


@dataclass(frozen=True, slots=True)
class AgiResult:
    """One AGI command's answer: ``200 result=50 endpos=17760`` -> code 200, result "50"."""

    code: int
    result: str = ""
    data: str = ""          # what stood in parentheses: "timeout", "dtmf", "hangup", "ANSWER"
    endpos: int | None = None
    raw: str = ""

    @property
    def ok(self) -> bool:
        return self.code == 200

    @property
    def hung_up(self) -> bool:
        """-1: the channel hung up (or the file could not be opened: see ``agi`` docs)."""
        return self.code != 200 or self.result == "-1" or self.data == "hangup"

    @property
    def number(self) -> int:
        try:
            return int(self.result)
        except ValueError:
            return 0

    @property
    def key(self) -> str | None:
        """The key pressed (STREAM FILE, WAIT FOR DIGIT, RECORD FILE), or None."""
        n = self.number
        return chr(n) if 0 < n < 256 and chr(n) in MENU_KEYS else None

    @property
    def timed_out(self) -> bool:
        return self.data == "timeout"


def parse_result(value: str) -> AgiResult:
    """An ``AsyncAGIExec`` ``Result`` (URL-encoded or not) as an :class:`AgiResult`."""
    text = decode(value).strip()
    match = _CODE.match(text)
    if match is None:
        return AgiResult(0, raw=text)
    rest = match.group(2) or ""
    result = _RESULT.search(rest)
    data = _DATA.search(rest)
    endpos = _ENDPOS.search(rest)
    return AgiResult(int(match.group(1)), result.group(1) if result else "",
                     data.group(1).strip() if data else "",
                     int(endpos.group(1)) if endpos else None, text)


def parse_env(value: str) -> dict[str, str]:
    """The ``Env`` of an ``AsyncAGIStart``: ``agi_*`` variables, decoded."""
    env: dict[str, str] = {}
    for line in decode(value).splitlines():
        key, sep, val = line.partition(":")
        if sep and key.strip():
            env[key.strip()] = val.strip()
    return env


def known(value: str | None) -> str | None:
    """Asterisk writes "unknown" (or nothing) for what it does not know."""
    if value is None:
        return None
    value = value.strip()
    return None if not value or value.lower() in ("unknown", "<unknown>", "anonymous") else value


def callable_back(number: str | None) -> bool:
    """A number the trunk can dial back: digits (national or ``+`` international), not withheld."""
    value = known(number)
    return value is not None and re.fullmatch(r"\+?[0-9]{3,15}", value) is not None


def caller_and_called(env: dict[str, str]) -> tuple[str | None, str | None]:
    """The caller's number and the number called, from an AGI environment."""
    called = known(env.get("agi_dnid"))
    if called is None:
        exten = known(env.get("agi_extension"))
        called = exten if exten not in (None, "s") else None
    return known(env.get("agi_callerid")), called


# --------------------------------------------------------------------------- commands


def quote(arg: str) -> str:
    """One AGI argument in double quotes (an empty one, or one with spaces, survives)."""
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


_NEEDS_QUOTES = re.compile(r'[\s"\\]')


def _arg(arg: str) -> str:
    return arg if arg and _NEEDS_QUOTES.search(arg) is None else quote(arg)


def answer() -> str:
    return "ANSWER"


def hangup() -> str:
    return "HANGUP"


def stream_file(sound: str, escape: str = "") -> str:
    return f"STREAM FILE {_arg(sound)} {quote(escape)}"


def wait_for_digit(timeout_s: float) -> str:
    return f"WAIT FOR DIGIT {_ms(timeout_s)}"


def get_data(sound: str, timeout_s: float, max_digits: int) -> str:
    """Digits until ``#``, ``max_digits`` or ``timeout_s`` of silence (per digit)."""
    return f"GET DATA {_arg(sound)} {_ms(timeout_s)} {max_digits}"


def record_file(path: str, max_length_s: float, finish_on_key: str, *, silence_s: int = 5) -> str:
    """Record ``path``.wav until the finish key, ``max_length_s`` or ``silence_s`` of silence."""
    return (f"RECORD FILE {_arg(path)} wav {quote(finish_on_key)} {_ms(max_length_s)} BEEP "
            f"s={silence_s}")


def music(on: bool, moh_class: str = "default") -> str:
    return f"SET MUSIC ON {moh_class}" if on else "SET MUSIC OFF"


def exec_app(app: str, args: str) -> str:
    return f"EXEC {app} {quote(args)}"


def get_variable(name: str) -> str:
    return f"GET VARIABLE {name}"


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


# --------------------------------------------------------------------------- transfers

DIAL_OUTCOMES = {"BUSY": "busy", "NOANSWER": "no-answer"}  # else "failed"


def dial_string(target: str, context: str) -> str:
    """A transfer target as Asterisk dials it: a dial string as is, a number via ``context``."""
    return target if "/" in target else f"Local/{target}@{context}"


def transfer_outcome(dialstatus: str) -> str | None:
    """None when the transfer was answered (the call is over); else TransferResult.outcome."""
    status = dialstatus.strip().upper()
    if status == "ANSWER":
        return None
    return DIAL_OUTCOMES.get(status, "failed")


def safe_name(value: str) -> str:
    """A call id as a file name Asterisk and the purge agree on."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", value)[:120] or "call"
