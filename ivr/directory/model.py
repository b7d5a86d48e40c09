"""The directory's data: entries, search hits, import problems and results."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, NamedTuple

KINDS = ("person", "unit")
STATUSES = ("available", "busy", "meeting", "away", "leave")
TRANSPORTS = ("twilio", "asterisk")
BUSY_TIMEOUT_MS = 5000
MAX_TEXT = 500
MAX_ITEMS = 50

# --------------------------------------------------------------------------- the data


@dataclass(frozen=True)
class Entry:
    id: str
    kind: str
    name: str
    title: str | None = None
    unit: str | None = None
    phone: str | None = None
    extension: str | None = None
    email: str | None = None
    endpoints: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    languages: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    hours: str | None = None
    status: str = "available"
    status_note: str | None = None
    status_until: datetime | None = None

    def status_at(self, now: datetime) -> str:
        """The status in force at ``now``: a status whose ``status_until`` has passed is over."""
        if self.status_until is not None and now >= self.status_until:
            return "available"
        return self.status

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "name": self.name, "title": self.title, "unit": self.unit,
            "phone": self.phone, "extension": self.extension, "email": self.email,
            "endpoints": dict(self.endpoints), "languages": list(self.languages),
            "topics": list(self.topics), "hours": self.hours, "status": self.status,
            "status_note": self.status_note,
            "status_until": self.status_until.isoformat() if self.status_until else None,
        }


@dataclass(frozen=True)
class Hit:
    entry: Entry
    score: float    # 0-100
    matched: str    # the text that matched best: "Bygglovsenheten", "strandskydd"
    field: str = "name"  # where it was: "name" | "unit" | "title" | "topic" | "extension" | "phone"


class Problem(NamedTuple):
    line: int       # 1 is the header; 0 for the file as a whole
    column: str     # as written in the file's header (or the expected name when missing)
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "file"
        return f"{where}: {self.column}: {self.message}" if self.column else f"{where}: {self.message}"


class DirectoryImportError(Exception):
    def __init__(self, problems: list[Problem], *, encoding: str | None = None,
                 delimiter: str | None = None):
        self.problems = problems
        self.encoding, self.delimiter = encoding, delimiter
        n = len(problems)
        super().__init__(f"{n} problem{'s' if n != 1 else ''}; nothing imported")


class DirectoryError(ValueError):
    """A bad edit (unknown entry, invalid field); ``problems`` is ``[(field, message)]``."""

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.problems = problems or []


@dataclass(frozen=True)
class ImportResult:
    entries: int
    added: int
    updated: int
    unchanged: int
    removed: int
    encoding: str
    delimiter: str
    ignored_columns: tuple[str, ...] = ()
    kept_status: int = 0  # entries whose supervisor-set status the import did not touch
    dry_run: bool = False

    def as_json(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


