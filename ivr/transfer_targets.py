"""Transfer targets checked at the door: the ``[transfers]`` policy for outside numbers,
queue and directory names, and the errors a desk gets back (:class:`TransferError`, with
its HTTP status). Pure: the directory is passed in. See ``docs/transfers.md``.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import phonenumbers

from ivr.privacy import mask_number

TARGET_KINDS = ("queue", "directory", "number")
FALLBACKS = ("agent", "message")


class TransferError(ValueError):
    """A transfer request that cannot be carried out; ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------- policy


@dataclass(frozen=True, slots=True)
class TransferPolicy:
    """The ``[transfers]`` settings (defaults here; config.toml can override them)."""

    ring_timeout_s: float = 25.0              # the target rings this long, then the fallback
    no_answer: str = "agent"                  # a blind transfer nobody answers: "agent" | "message"
    region: str = "SE"                        # numbers without a country code are read as this
    allowed_prefixes: tuple[str, ...] = ("+46",)  # outside numbers must start with one ("+" = any)
    blocked_prefixes: tuple[str, ...] = ("+46900", "+46939", "+46944")  # premium rate, never
    misroute_window_s: float = 60.0           # reports: a transfer this soon after the answer

    def __post_init__(self) -> None:
        def bad(name: str, form: str) -> TransferError:
            return TransferError(f"transfers.{name}: expected {form}, got {getattr(self, name)!r}")

        for name in ("ring_timeout_s", "misroute_window_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise bad(name, "a positive number of seconds")
        if self.no_answer not in FALLBACKS:
            raise bad("no_answer", '"agent" or "message"')
        for name in ("allowed_prefixes", "blocked_prefixes"):
            prefixes = getattr(self, name)
            if not isinstance(prefixes, tuple) or not all(
                    isinstance(p, str) and (p == "+" or (p.startswith("+") and p[1:].isdigit()))
                    for p in prefixes):
                raise bad(name, 'a list of E.164 prefixes such as "+46"')

    def check_number(self, raw: object) -> str:
        """``raw`` as E.164 if the policy lets agents transfer to it; else TransferError (400)."""
        if not isinstance(raw, str) or not raw.strip():
            raise TransferError("target.number: expected a phone number, got " + repr(raw))
        try:
            parsed = phonenumbers.parse(raw, self.region)
        except phonenumbers.NumberParseException as e:
            raise TransferError(f"target.number: {raw!r} is not a phone number ({e})") from None
        if not phonenumbers.is_valid_number(parsed):
            raise TransferError(f"target.number: {raw!r} is not a valid phone number")
        number = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        if any(number.startswith(p) for p in self.blocked_prefixes):
            raise TransferError(f"target.number: {mask_number(number)} is a blocked number "
                                f"(transfers.blocked_prefixes)")
        if not any(p == "+" or number.startswith(p) for p in self.allowed_prefixes):
            allowed = ", ".join(self.allowed_prefixes) or "none"
            raise TransferError(f"target.number: {mask_number(number)} is outside the allowed "
                                f"prefixes ({allowed}; transfers.allowed_prefixes)")
        return number


# --------------------------------------------------------------------------- targets


class DirectoryEntry(Protocol):
    id: str
    name: str
    phone: str | None
    endpoints: Mapping[str, str]
    topics: tuple[str, ...]


class DirectoryLike(Protocol):
    def get(self, entry_id: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class Target:
    """Where a transfer goes. ``endpoint`` is what the transport dials (None for a queue);
    ``shown`` is what the log keeps (an outside number masked: it may be a private person's)."""

    kind: str            # "queue" | "directory" | "number"
    id: str              # queue name, directory entry id, or the E.164 number
    endpoint: str | None = None
    name: str = ""
    topics: tuple[str, ...] = ()

    @property
    def shown(self) -> str:
        return mask_number(self.id) if self.kind == "number" else self.id


def resolve_target(spec: object, *, transport: str, queues: Collection[str],
                   directory: DirectoryLike | None, policy: TransferPolicy) -> Target:
    """``{"queue": NAME}``, ``{"directory": ENTRY_ID}`` or ``{"number": "+46..."}`` -> a Target
    the ``transport`` can dial. Unknown names: 404; bad input: 400; no endpoint for this
    transport: 409."""
    if not isinstance(spec, Mapping) or len(spec) != 1 or next(iter(spec)) not in TARGET_KINDS:
        raise TransferError('target: expected exactly one of {"queue": NAME}, {"directory": ID} '
                            f'or {{"number": "+46..."}}, got {spec!r}')
    kind, value = next(iter(spec.items()))
    if kind == "number":
        number = policy.check_number(value)
        return Target("number", number, number, mask_number(number))
    if not isinstance(value, str) or not value:
        raise TransferError(f"target.{kind}: expected a non-empty string, got {value!r}")
    if kind == "queue":
        if value not in queues:
            raise TransferError(f'target.queue: unknown queue "{value}"' + _suggest(value, queues), 404)
        return Target("queue", value, None, value, (value,))
    entry = directory.get(value) if directory is not None else None
    if entry is None:
        raise TransferError(f'target.directory: no directory entry "{value}"', 404)
    endpoint = entry.endpoints.get(transport) or entry.phone
    if not endpoint:
        raise TransferError(f'target.directory: "{entry.name}" ({value}) has no {transport} endpoint '
                            "and no phone number", 409)
    return Target("directory", entry.id, endpoint, entry.name, tuple(entry.topics))


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""
