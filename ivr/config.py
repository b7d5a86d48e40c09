"""Settings: ``config.toml`` read into typed, frozen values.

Layers, later wins: defaults in code, the file, the environment, overrides (dotted keys
from command-line flags, e.g. ``{"server.port": 9090}``). Secrets come only from the
environment; a secret written in the file (or passed as an override) is an error.

Every problem is collected before anything is raised, so one run shows them all:
``config.toml: hours.office.monday: expected "HH:MM-HH:MM", got "8-16"``. Relative
paths are resolved against the config file's directory (the working directory when
there is no file), including paths given as overrides.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from ivr.hours import (
    DEFAULT_CLOSED_EVES,
    STOCKHOLM,
    WEEKDAYS,
    HoursError,
    Interval,
    Schedule,
    known_eves,
    parse_intervals,
    unknown_eves_message,
)

DEFAULTS_SOURCE = "<defaults>"
OVERRIDES_SOURCE = "<overrides>"
_MISSING = object()


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


def _from_env(variable: str) -> Any:
    """A secret field: read from ``env[variable]`` (or from the variable another field
    names) and never from the file."""
    return field(default=None, repr=False, metadata={"env": variable})


_PORT: Any = {"range": (1, 65535)}
_EMAIL = r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+"
_URL: Any = {"pattern": r"https?://\S+", "form": 'a URL starting with "https://"'}


class ConfigError(ValueError):
    """Everything wrong with a configuration; ``problems`` has one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True)
class StoreSettings:
    path: Path = Path("data/ivr.db")
    # ivr serve: the event log's writer (SQLite, call summaries) in a process of its own, off
    # the server's event loop; "thread": in the server's process (ivr.store)
    writer: str = field(default="process", metadata={"pattern": "process|thread",
                                                      "form": '"process" or "thread"'})


@dataclass(frozen=True, slots=True)
class PrivacySettings:
    hash_key_env: str = "IVR_HASH_KEY"
    hash_key: bytes | None = _from_env("hash_key_env")  # utf-8 bytes
    raw_number_days: int = 30
    recording_days: int = 90
    note_days: int = 365
    repeat_window_days: int = 7


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """One queue; the keys after ``categories`` are the queue engine's (``queues.QueueConfig``)."""

    name: str
    display: Mapping[str, str] = field(default_factory=_empty, hash=False)  # language -> name
    categories: tuple[str, ...] = ()
    strategy: str = "longest-idle"      # "longest-idle" | "round-robin" | "skills"
    skill: str | None = None            # the skill agents need; None: the queue's name
    fallback_after_s: float = 60.0      # skills: then any agent may take the caller
    ring_timeout_s: float = 20.0
    wrapup_s: float = 30.0
    max_wait_s: float | None = None     # then overflow
    max_length: int | None = None       # callers waiting; one more overflows at once
    overflow: str | None = None         # "queue:NAME", or a target for the controller ("message")
    when_no_agents: str = "join"        # "join" | "reject"
    leave_when_empty: bool = False
    announce_every_s: float = 60.0      # 0: never
    expected_handle_s: float = 240.0
    callback_retry_s: float = 900.0
    callback_max_attempts: int = 3
    pause_on_missed: bool = True

    @property
    def needs(self) -> str:
        """The skill an agent must have to serve this queue."""
        return self.skill or self.name


@dataclass(frozen=True, slots=True)
class AgentSettings:
    id: str
    name: str
    skills: Mapping[str, int] = field(default_factory=_empty, hash=False)  # skill -> level 1..10
    endpoints: Mapping[str, str] = field(default_factory=_empty, hash=False)  # transport -> address


@dataclass(frozen=True, slots=True)
class UserSettings:
    """A person who logs in: an agent (at the desk) or a supervisor (everything)."""

    name: str
    role: str                      # "agent" | "supervisor"
    password_hash: str             # argon2 (`ivr passwd` prints one)
    agent: str | None = None       # the [agents.ID] an agent user works as
    display: str | None = None
    demo: bool = False             # only active when the server runs with --demo


@dataclass(frozen=True, slots=True)
class KpiSettings:
    service_level_s: int = field(default=60, metadata={"range": (1, None)})  # answered within
    service_level_goal: float = field(default=0.8, metadata={"range": (0.0, 1.0)})
    short_abandon_s: int = 5  # abandons quicker than this are left out of the abandon rate
    abandons_in_service_level: bool = True  # abandons count in the service level's denominator


@dataclass(frozen=True, slots=True)
class AnnouncementSettings:
    slot: str
    text: Mapping[str, str] = field(default_factory=_empty, hash=False)  # language -> text
    audio: Mapping[str, str] = field(default_factory=_empty, hash=False)  # language -> recording
    enabled: bool = False
    until: datetime | None = None  # aware


@dataclass(frozen=True, slots=True)
class TwilioSettings:
    enabled: bool = True                 # serve the webhooks under /twilio/
    public_url: str | None = field(default=None, metadata=_URL)  # as Twilio sees us (reverse proxy)
    account_sid: str | None = _from_env("TWILIO_ACCOUNT_SID")
    auth_token: str | None = _from_env("TWILIO_AUTH_TOKEN")
    voice_sv: str = "Polly.Astrid"
    voice_en: str = "Polly.Amy"
    caller_id: str | None = None         # the number agents and called-back citizens see
    hold_music: str | None = None        # a file under recordings/ played between announcements
    validate: bool = True                # False only as an explicit demo, and only on loopback
    rest_retries: int = field(default=4, metadata={"range": (0, 10)})


@dataclass(frozen=True, slots=True)
class AsteriskSettings:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = field(default=5038, metadata=_PORT)
    username: str = "ivr"
    secret_env: str = "IVR_AMI_SECRET"
    secret: str | None = _from_env("secret_env")
    sounds: str = "ivr"                  # prompt path prefix as Asterisk sees it (sounds dir)
    agent_context: str = "ivr-agent"     # dialplan context that connects a caller to an agent
    moh_class: str = "default"           # music on hold while waiting
    action_timeout_s: float = field(default=10.0, metadata={"range": (0.5, 120.0)})
    reconnect_max_s: float = field(default=30.0, metadata={"range": (1.0, 600.0)})
    login_attempts: int = field(default=5, metadata={"range": (1, 100)})


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = field(default=8080, metadata=_PORT)
    purge_at: str = "03:00"              # local time of the daily retention purge


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """Where messages to case officers are mailed; no host: e-mail is off (kept, not sent)."""

    host: str | None = None
    port: int = field(default=587, metadata=_PORT)
    starttls: bool = True                # upgrade with STARTTLS (port 587); false: plain (loopback)
    username: str | None = None          # log in when set; the password: IVR_SMTP_PASSWORD
    from_address: str | None = field(default=None, metadata={
        "key": "from", "pattern": rf"{_EMAIL}|[^<>]*<{_EMAIL}>",
        "form": 'an e-mail address such as "kontaktcenter@bollebygd.se"'})
    timeout_s: float = field(default=30.0, metadata={"range": (1.0, 300.0)})
    retry_min_s: float = field(default=60.0, metadata={"range": (1.0, 86400.0)})
    retry_max_s: float = field(default=3600.0, metadata={"range": (1.0, 86400.0)})
    password: str | None = _from_env("IVR_SMTP_PASSWORD")

    @property
    def enabled(self) -> bool:
        return self.host is not None


@dataclass(frozen=True, slots=True)
class MessageSettings:
    """Messages to case officers (ivr.messages)."""

    promise_hours: int = field(default=24, metadata={"range": (1, 720)})  # callback promised within
    categories: tuple[str, ...] = ("fraga", "arende", "synpunkt", "felanmalan", "ovrigt")
    voicemail_target: str | None = None  # directory entry id that voice messages go to
    audio_url_base: str | None = field(default=None, metadata=_URL)  # links in e-mails to audio


@dataclass(frozen=True, slots=True)
class TransferSettings:
    """Agent transfers (ivr.transfers): ring time, the fallback, outside numbers, reports."""

    ring_timeout_s: float = field(default=25.0, metadata={"range": (5.0, 600.0)})  # then the fallback
    no_answer: str = field(default="agent", metadata={  # a blind transfer nobody answers
        "pattern": "agent|message", "form": '"agent" or "message"'})
    allowed_prefixes: tuple[str, ...] = ("+46",)  # outside numbers agents may transfer to ("+": any)
    blocked_prefixes: tuple[str, ...] = ("+46900", "+46939", "+46944")  # premium rate: never
    misroute_window_s: float = field(default=60.0, metadata={"range": (1.0, 3600.0)})  # reports

    def policy(self) -> Any:
        """The :class:`ivr.transfer_targets.TransferPolicy` of these settings."""
        from ivr.transfer_targets import TransferPolicy

        return TransferPolicy(ring_timeout_s=self.ring_timeout_s, no_answer=self.no_answer,
                              allowed_prefixes=self.allowed_prefixes, blocked_prefixes=self.blocked_prefixes,
                              misroute_window_s=self.misroute_window_s)


@dataclass(frozen=True, slots=True)
class _PathSettings:
    flows: Path = Path("callflows")
    recordings: Path = Path("recordings")


@dataclass(frozen=True, slots=True)
class Settings:
    source: str  # the config file's name as used in messages, or "<defaults>"
    base_dir: Path
    flows_dir: Path
    recordings_dir: Path
    store: StoreSettings
    privacy: PrivacySettings
    server: ServerSettings
    hours: Mapping[str, Schedule] = field(hash=False)
    queues: Mapping[str, QueueSettings] = field(hash=False)
    announcements: Mapping[str, AnnouncementSettings] = field(hash=False)
    twilio: TwilioSettings
    asterisk: AsteriskSettings
    agents: Mapping[str, AgentSettings] = field(default_factory=_empty, hash=False)
    kpi: KpiSettings = field(default_factory=KpiSettings)
    users: Mapping[str, UserSettings] = field(default_factory=_empty, hash=False)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    messages: MessageSettings = field(default_factory=MessageSettings)
    transfers: TransferSettings = field(default_factory=TransferSettings)


# Plain sections are read field by field from their dataclass; named tables
# ([hours.NAME] ...) list the keys of one entry.
_SECTIONS: dict[str, type] = {
    "store": StoreSettings, "privacy": PrivacySettings, "paths": _PathSettings,
    "server": ServerSettings, "twilio": TwilioSettings, "asterisk": AsteriskSettings,
    "kpi": KpiSettings, "smtp": SmtpSettings, "messages": MessageSettings, "transfers": TransferSettings,
}
_NAMED: dict[str, tuple[str, ...]] = {
    "hours": ("timezone", *WEEKDAYS, "closed_dates", "reduced", "public_holidays",
              "closed_eves", "reduced_before_holidays"),
    "queues": ("display", "categories", *(f.name for f in fields(QueueSettings)[3:])),
    "announcements": ("text", "audio", "enabled", "until"),
    "agents": ("name", "skills", "endpoints"),
    "users": ("role", "password_hash", "agent", "display", "demo"),
}
_STRATEGIES = ("longest-idle", "round-robin", "skills")
_TRANSPORTS = ("asterisk", "twilio")


def default_config_path() -> Path | None:
    """``./config.toml`` if it exists in the working directory, else None."""
    path = Path.cwd() / "config.toml"
    return path if path.is_file() else None


def load_settings(path: str | Path | None = None, *, env: Mapping[str, str] | None = None,
                  overrides: Mapping[str, object] | None = None) -> Settings:
    """Read ``path`` (None: built-in defaults only), then ``env``, then ``overrides``."""
    env = os.environ if env is None else env
    if path is None:
        source, base_dir, data = DEFAULTS_SOURCE, Path.cwd(), {}
    else:
        path = Path(path)
        source, base_dir = path.name, path.absolute().parent
        data = _read_toml(path, source)
    reader = _Reader(source, set(overrides or ()))
    for key, value in (overrides or {}).items():
        reader.override(data, key, value)
    settings = reader.settings(data, env, base_dir)
    if reader.problems:
        raise ConfigError(reader.problems)
    assert settings is not None
    return settings


def _read_toml(path: Path, source: str) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as e:
        raise ConfigError([f"{source}: cannot read the file ({e.strerror})"]) from e
    except UnicodeDecodeError as e:
        raise ConfigError([f"{source}: expected UTF-8 text ({e.reason})"]) from e
    except tomllib.TOMLDecodeError as e:
        message = str(e)
        if m := re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", message, re.DOTALL):
            message = f"line {m[2]}, column {m[3]}: {m[1]}"
        elif m := re.fullmatch(r"(.*) \(at end of document\)", message, re.DOTALL):
            message = f"end of file: {m[1]}"
        raise ConfigError([f"{source}: {message}"]) from e


def _show(value: object) -> str:
    """A value the way the file spells it, for "got ..." in messages."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return value.isoformat() if isinstance(value, date) else str(value)


def _attempt(check: Callable[[Any], Any], value: object) -> Any:
    try:
        return check(value)
    except (TypeError, ValueError, AttributeError):
        return None


def _from_flag(value: str) -> object:
    """A command-line string as the TOML value it spells: true, false or an integer."""
    text = value.strip()
    if text in ("true", "false"):
        return text == "true"
    return int(text) if re.fullmatch(r"-?\d+", text) else value


def _suggest(word: str, choices: object) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1)  # type: ignore[call-overload]
    return f' (did you mean "{close[0]}"?)' if close else ""


class _Reader:
    """Validates raw TOML data, collecting problems instead of stopping at the first."""

    def __init__(self, source: str, overridden: set[str]):
        self.source = source
        self.overridden = overridden
        self.problems: list[str] = []

    def where(self, key: str) -> str:
        from_overrides = any(key == o or key.startswith(o + ".") for o in self.overridden)
        return f"{OVERRIDES_SOURCE if from_overrides else self.source}: {key}"

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.where(key)}: {message}")

    def expected(self, key: str, form: str, value: object) -> None:
        self.problem(key, f"expected {form}, got {_show(value)}")

    def override(self, data: dict[str, Any], key: str, value: object) -> None:
        *parents, last = key.split(".")
        table = data
        for i, part in enumerate(parents):
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                self.expected(".".join(parents[: i + 1]), "a table", table)
                return
        table[last] = value

    # ------------------------------------------------------------------ values

    def table(self, raw: object, key: str, allowed: tuple[str, ...] | None) -> dict[str, Any]:
        if not isinstance(raw, dict):
            self.expected(key, "a table", raw)
            return {}
        for name in raw:
            if allowed is not None and name not in allowed:
                self.problem(f"{key}.{name}", "unknown key" + _suggest(name, allowed))
        return raw

    def value(self, raw: dict[str, Any], key: str, name: str, form: str,
              check: Callable[[Any], Any], default: Any) -> Any:
        """``check(value)`` converts a good value and returns None for a bad one."""
        value = raw.get(name, _MISSING)
        if value is _MISSING:
            return default
        dotted = f"{key}.{name}"
        result = _attempt(check, value)
        if result is None and isinstance(value, str) and dotted in self.overridden:
            result = _attempt(check, _from_flag(value))  # "9090" from a command line
        if result is None:
            self.expected(dotted, form, value)
            return default
        return result

    def string(self, raw: dict[str, Any], key: str, name: str, default: Any) -> Any:
        return self.value(raw, key, name, "a non-empty string",
                          lambda v: v if isinstance(v, str) and v.strip() else None, default)

    def integer(self, raw: dict[str, Any], key: str, name: str, default: int, low: int = 0,
                high: int | None = None) -> int:
        form = (f"an integer from {low} to {high}" if high else
                "a positive integer" if low > 0 else "a non-negative integer")

        def check(v: object) -> int | None:
            good = type(v) is int and v >= low and (high is None or v <= high)
            return v if good else None  # type: ignore[return-value]

        return self.value(raw, key, name, form, check, default)

    def number(self, raw: dict[str, Any], key: str, name: str, default: Any, low: float = 0.0,
               high: float | None = None, *, positive: bool = False, unit: str = "") -> Any:
        """A finite int or float as a float: at least ``low`` (above it if ``positive``)."""
        form = (f"a number from {low:g} to {high:g}" if high is not None else
                f"a {'positive' if positive else 'non-negative'} number{unit}")

        def check(v: object) -> float | None:
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                return None
            good = (v > low if positive else v >= low) and (high is None or v <= high)
            return float(v) if good else None

        return self.value(raw, key, name, form, check, default)

    def choice(self, raw: dict[str, Any], key: str, name: str, choices: tuple[str, ...],
               default: str) -> str:
        value = raw.get(name, default)
        if value in choices:
            return value
        hint = _suggest(value, choices) if isinstance(value, str) else ""
        form = " or ".join(f'"{c}"' for c in choices) if len(choices) == 2 else \
            "one of " + ", ".join(f'"{c}"' for c in choices)
        self.problem(f"{key}.{name}", f"expected {form}, got {_show(value)}{hint}")
        return default

    def boolean(self, raw: dict[str, Any], key: str, name: str, default: bool) -> bool:
        return self.value(raw, key, name, "true or false",
                          lambda v: v if isinstance(v, bool) else None, default)

    def texts(self, raw: dict[str, Any], key: str, name: str,
              noun: str = "text") -> Mapping[str, str]:
        form = f'a table of language = {noun}, e.g. {{ sv = "...", en = "..." }}'
        value = self.value(raw, key, name, form, lambda v: v if isinstance(v, dict) else None, {})
        good = {}
        for lang, text in value.items():
            if isinstance(text, str) and text.strip():
                good[lang] = text
            else:
                self.expected(f"{key}.{name}.{lang}", "a non-empty string", text)
        return MappingProxyType(good)

    def secret(self, raw: dict[str, Any], key: str, name: str, env_name: str) -> None:
        if name in raw:
            self.problem(f"{key}.{name}", f"secrets belong in the environment ({env_name})")

    # ------------------------------------------------------------------ sections

    def settings(self, data: dict[str, Any], env: Mapping[str, str],
                 base_dir: Path) -> Settings | None:
        allowed = (*_SECTIONS, *_NAMED)
        for name in data:
            if name not in allowed:
                self.problem(name, "unknown section" + _suggest(name, allowed))
        sec = {name: self.section(data.get(name, {}), name, cls, env, base_dir)
               for name, cls in _SECTIONS.items()}
        named = {name: self.table(data.get(name, {}), name, None) for name in _NAMED}
        hours = {n: self.schedule(n, raw) for n, raw in named["hours"].items()}
        queues = {n: self.queue(n, raw) for n, raw in named["queues"].items()}
        self.overflows(queues)
        skills = {q.needs for q in queues.values()}
        agents = {n: self.agent(n, raw, skills) for n, raw in named["agents"].items()}
        slots = {n: self.announcement(n, raw) for n, raw in named["announcements"].items()}
        users = {n: self.user(n, raw, agents) for n, raw in named["users"].items()}
        self.smtp(sec["smtp"], data.get("smtp"))
        self.prefixes(sec["transfers"])
        if self.problems:
            return None
        return Settings(
            source=self.source, base_dir=base_dir, flows_dir=sec["paths"].flows,
            recordings_dir=sec["paths"].recordings, store=sec["store"], privacy=sec["privacy"],
            server=sec["server"], hours=MappingProxyType(hours), queues=MappingProxyType(queues),
            announcements=MappingProxyType(slots), twilio=sec["twilio"],
            asterisk=sec["asterisk"], agents=MappingProxyType(agents), kpi=sec["kpi"],
            users=MappingProxyType(users), smtp=sec["smtp"], messages=sec["messages"],
            transfers=sec["transfers"])

    def section(self, raw: object, name: str, cls: type, env: Mapping[str, str],
                base_dir: Path) -> Any:
        """A plain section, checked against the fields (and defaults) of ``cls``."""
        raw = self.table(raw, name, tuple(f.metadata.get("key", f.name) for f in fields(cls)))
        defaults, values = cls(), {}
        for f in fields(cls):
            default, meta = getattr(defaults, f.name), f.metadata
            key = meta.get("key", f.name)  # the file's spelling ("from" is a Python keyword)
            if "env" in meta:  # the variable itself, or the field naming it
                variable = values.get(meta["env"], meta["env"])
                if f.name in raw:
                    self.problem(f"{name}.{f.name}",
                                 f"secrets belong in the environment ({variable})")
                secret = env.get(variable) or None
                values[f.name] = secret.encode() if secret and "bytes" in f.type else secret
            elif isinstance(default, bool):
                values[f.name] = self.boolean(raw, name, key, default)
            elif isinstance(default, int):
                values[f.name] = self.integer(raw, name, key, default,
                                              *meta.get("range", (0, None)))
            elif isinstance(default, float):
                values[f.name] = self.number(raw, name, key, default,
                                             *meta.get("range", (0.0, None)))
            elif isinstance(default, tuple):
                values[f.name] = self.words(raw, name, key, default)
            elif isinstance(default, Path):
                text = self.value(raw, name, f.name, "a non-empty path",
                                  lambda v: str(v) if str(v).strip() and isinstance(
                                      v, str | os.PathLike) else None, str(default))
                values[f.name] = base_dir / text
            elif "pattern" in meta:
                values[f.name] = self.value(
                    raw, name, key, meta["form"],
                    lambda v, p=meta["pattern"]: v if re.fullmatch(p, v) else None, default)
            else:
                values[f.name] = self.string(raw, name, key, default)
        return cls(**values)

    def words(self, raw: dict[str, Any], key: str, name: str, default: tuple[str, ...]
              ) -> tuple[str, ...]:
        """An array of distinct non-empty strings."""
        words = self.value(raw, key, name, "an array of non-empty strings",
                           lambda v: tuple(v) if isinstance(v, list) and v and all(
                               isinstance(w, str) and w.strip() for w in v) else None, default)
        for i, word in enumerate(words):
            if word in words[:i]:
                self.problem(f"{key}.{name}[{i}]", f'expected distinct values, got "{word}" twice')
        return words

    def smtp(self, smtp: SmtpSettings, raw: object) -> None:
        """What the fields cannot check one by one."""
        if not isinstance(raw, dict):
            return
        if smtp.retry_min_s > smtp.retry_max_s:
            self.problem("smtp.retry_max_s", f"expected at least retry_min_s ({smtp.retry_min_s:g}), "
                         f"got {smtp.retry_max_s:g}")
        if smtp.host is not None and smtp.from_address is None and "from" not in raw:
            self.problem("smtp.from", 'missing; the sender of messages, e.g. "kontaktcenter@bollebygd.se"')

    def prefixes(self, transfers: TransferSettings) -> None:
        """Number prefixes are E.164 beginnings: "+" and digits ("+" alone: any number)."""
        for name in ("allowed_prefixes", "blocked_prefixes"):
            for i, prefix in enumerate(getattr(transfers, name)):
                if not re.fullmatch(r"\+[0-9]{0,14}", prefix):
                    self.expected(f"transfers.{name}[{i}]", 'a number prefix such as "+46"', prefix)

    def intervals(self, raw: dict[str, Any], key: str, name: str) -> tuple[Interval, ...] | None:
        value = raw.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            self.expected(f"{key}.{name}", '"HH:MM-HH:MM"', value)
            return None
        try:
            return parse_intervals(value, self.where(f"{key}.{name}"))
        except HoursError as e:
            self.problems.append(str(e))
            return None

    def date(self, value: object, key: str) -> date | None:
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        try:
            return date.fromisoformat(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            self.expected(key, "a date (YYYY-MM-DD)", value)
            return None

    def timezone(self, raw: dict[str, Any], key: str) -> ZoneInfo:
        name = raw.get("timezone", "Europe/Stockholm")
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            hint = _suggest(name, available_timezones()) if isinstance(name, str) else ""
            self.problem(f"{key}.timezone", 'expected an IANA time zone such as '
                         f'"Europe/Stockholm", got {_show(name)}{hint}')
            return STOCKHOLM

    def schedule(self, name: str, raw: object) -> Schedule | None:
        key = f"hours.{name}"
        raw = self.table(raw, key, _NAMED["hours"])
        before = len(self.problems)
        tz = self.timezone(raw, key)
        weekly = tuple(self.intervals(raw, key, day) or () for day in WEEKDAYS)
        closed = raw.get("closed_dates", [])
        if not isinstance(closed, list):
            self.expected(f"{key}.closed_dates", "an array of dates", closed)
            closed = []
        closed_dates = {self.date(d, f"{key}.closed_dates[{i}]") for i, d in enumerate(closed)}
        reduced: dict[date, tuple[Interval, ...]] = {}
        for day, hours in self.table(raw.get("reduced", {}), f"{key}.reduced", None).items():
            parsed_day = self.date(day, f"{key}.reduced.{day}")
            parsed = self.intervals({day: hours}, f"{key}.reduced", day)
            if parsed_day is not None and parsed is not None:
                reduced[parsed_day] = parsed
        public = self.boolean(raw, key, "public_holidays", True)
        eves = self.value(raw, key, "closed_eves", "an array of eve names",
                          lambda v: [e.lower() for e in v] if isinstance(v, list)
                          and all(isinstance(e, str) for e in v) else None,
                          sorted(DEFAULT_CLOSED_EVES))
        if unknown := set(eves) - known_eves():
            self.problem(f"{key}.closed_eves", unknown_eves_message(unknown))
        half_days = self.intervals(raw, key, "reduced_before_holidays")
        if len(self.problems) > before:
            return None
        schedule = Schedule(name=name, timezone=tz, weekly=weekly,
                            closed_dates=frozenset(closed_dates) - {None}, reduced=reduced,
                            public_holidays=public, closed_eves=frozenset(eves),
                            reduced_before_holidays=half_days)
        for day in reduced:
            if (why := schedule.holiday_name(day)) is not None:
                self.problem(f"{key}.reduced.{day}", f"{day} is closed all day ({why}), "
                             "so these hours would never apply")
        return schedule

    def queue(self, name: str, raw: object) -> QueueSettings:
        key = f"queues.{name}"
        raw = self.table(raw, key, _NAMED["queues"])
        display = self.texts(raw, key, "display", "name")
        if "display" not in raw:
            self.problem(f"{key}.display", 'missing; expected a table of language = name, '
                         'e.g. { sv = "Växeln", en = "Switchboard" }')
        categories = self.value(raw, key, "categories", "an array of non-empty strings",
                                lambda v: tuple(v) if isinstance(v, list) and all(
                                    isinstance(c, str) and c.strip() for c in v) else None, ())
        for i, category in enumerate(categories):
            if category in categories[:i]:
                self.problem(f"{key}.categories[{i}]",
                             f'expected distinct categories, got "{category}" twice')
        return QueueSettings(name, display, categories, **self.queue_engine_keys(raw, key))

    def queue_engine_keys(self, raw: dict[str, Any], key: str) -> dict[str, Any]:
        d = QueueSettings("")
        seconds = " of seconds"
        keys: dict[str, Any] = {
            "strategy": self.choice(raw, key, "strategy", _STRATEGIES, d.strategy),
            "skill": self.string(raw, key, "skill", None),
            "when_no_agents": self.choice(raw, key, "when_no_agents", ("join", "reject"),
                                          d.when_no_agents),
            "overflow": self.string(raw, key, "overflow", None),
            "max_length": self.integer(raw, key, "max_length", None, 1),  # type: ignore[arg-type]
            "callback_max_attempts": self.integer(raw, key, "callback_max_attempts",
                                                  d.callback_max_attempts, 1),
            "leave_when_empty": self.boolean(raw, key, "leave_when_empty", d.leave_when_empty),
            "pause_on_missed": self.boolean(raw, key, "pause_on_missed", d.pause_on_missed),
        }
        for name in ("ring_timeout_s", "expected_handle_s", "max_wait_s"):
            keys[name] = self.number(raw, key, name, getattr(d, name), positive=True, unit=seconds)
        for name in ("fallback_after_s", "wrapup_s", "announce_every_s", "callback_retry_s"):
            keys[name] = self.number(raw, key, name, getattr(d, name), unit=seconds)
        return keys

    def overflows(self, queues: dict[str, QueueSettings]) -> None:
        for name, q in queues.items():
            if q.overflow and q.overflow.startswith("queue:"):
                target = q.overflow[len("queue:"):]
                if target == name or target not in queues:
                    others = [n for n in queues if n != name]
                    self.problem(f"queues.{name}.overflow",
                                 f'expected "queue:NAME" naming another queue, got '
                                 f'{_show(q.overflow)}{_suggest(target, others)}')

    def agent(self, ident: str, raw: object, skills: set[str]) -> AgentSettings:
        key = f"agents.{ident}"
        raw = self.table(raw, key, _NAMED["agents"])
        name = self.string(raw, key, "name", ident)
        if "skills" not in raw:
            self.problem(f"{key}.skills", "missing; expected a table of skill = level "
                         "(1 to 10), e.g. { vaxeln = 5 }")
        levels = {}
        for skill, level in self.table(raw.get("skills", {}), f"{key}.skills", None).items():
            if skill not in skills:
                self.problem(f"{key}.skills.{skill}", "unknown skill: no queue needs it"
                             + _suggest(skill, skills))
            elif type(level) is not int or not 1 <= level <= 10:
                self.expected(f"{key}.skills.{skill}", "an integer from 1 to 10", level)
            else:
                levels[skill] = level
        endpoints = {}
        for transport, address in self.table(raw.get("endpoints", {}), f"{key}.endpoints",
                                             _TRANSPORTS).items():
            if not isinstance(address, str) or not address.strip():
                self.expected(f"{key}.endpoints.{transport}", 'an address such as '
                              '"client:anna" or "PJSIP/1001"', address)
            elif transport in _TRANSPORTS:
                endpoints[transport] = address
        return AgentSettings(ident, name, MappingProxyType(levels), MappingProxyType(endpoints))

    def user(self, name: str, raw: object, agents: Mapping[str, AgentSettings]) -> UserSettings:
        key = f"users.{name}"
        raw = self.table(raw, key, _NAMED["users"])
        role = self.choice(raw, key, "role", ("agent", "supervisor"), "agent")
        hashed = raw.get("password_hash")
        if not isinstance(hashed, str) or not hashed.startswith("$argon2"):
            self.expected(f"{key}.password_hash", 'an argon2 hash ("$argon2id$..."; `ivr passwd` '
                          "prints one)", hashed)
            hashed = ""
        agent = raw.get("agent")
        if role == "agent" and agent not in agents:
            self.problem(f"{key}.agent", f"expected the id of an [agents.ID] table, got {_show(agent)}"
                         + _suggest(str(agent), agents))
        display = raw.get("display")
        demo = raw.get("demo", False)
        if not isinstance(demo, bool):
            self.expected(f"{key}.demo", "true or false", demo)
            demo = False
        return UserSettings(name, role, hashed, agent if isinstance(agent, str) else None,
                            display if isinstance(display, str) else None, demo)

    def announcement(self, slot: str, raw: object) -> AnnouncementSettings:
        key = f"announcements.{slot}"
        raw = self.table(raw, key, _NAMED["announcements"])

        def until(value: object) -> datetime | None:
            if isinstance(value, str):
                value = datetime.fromisoformat(value)
            if not isinstance(value, datetime):
                return None
            aware = value if value.tzinfo else value.replace(tzinfo=STOCKHOLM)
            return aware.astimezone(STOCKHOLM)

        return AnnouncementSettings(
            slot, self.texts(raw, key, "text"), self.texts(raw, key, "audio", "recording"),
            self.boolean(raw, key, "enabled", False),
            self.value(raw, key, "until", "a date-time such as 2026-03-01T18:00:00", until, None))
