"""The staff directory: people and units, imported from CSV, edited by supervisors, searched.

An entry says who someone is (name, title, unit), how to reach them (phone, extension,
email, an endpoint per transport), what they know (languages, topics), when they work and
their status. Entries live in the event log's SQLite file (tables ``directory_*``).

``Directory.import_csv`` reads a file as an HR or directory export gives it: UTF-8 (with
or without BOM), UTF-16 with BOM or Windows-1252; semicolons (Excel in Sweden), commas or
tabs; Swedish or English headers. Every problem is reported as ``(line, column,
message)`` and nothing is written unless the whole file is good. The file is the truth
for the entries it imports: re-importing adds, updates and removes by id, except that a
status set by a supervisor is kept, and entries a supervisor created are left alone.

``Directory.search`` forgives typos and Swedish letters: text is folded (casefold, accents
stripped, ``ae``/``oe``/``aa`` spellings merged) and also reduced to a Swedish phonetic key
(å sounds like o, ä like e), then matched word by word with rapidfuzz against an inverted
index, weighting the field the match is in (name > unit > title > topics). See
``docs/directory.md``.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import difflib
import io
import json
import re
import sqlite3
import threading
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

import phonenumbers
import sqlite_utils
from rapidfuzz import fuzz, process

from ivr.hours import STOCKHOLM
from ivr.store import format_at, migrate

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


# --------------------------------------------------------------------------- columns

COLUMNS: dict[str, tuple[str, ...]] = {  # canonical key -> header names (folded: see _header_key)
    "id": ("id",),
    "kind": ("typ", "kind", "type"),
    "name": ("namn", "name"),
    "first_name": ("fornamn", "firstname", "givenname"),
    "last_name": ("efternamn", "lastname", "surname", "familyname"),
    "title": ("titel", "title", "befattning"),
    "unit": ("enhet", "unit", "avdelning", "department"),
    "phone": ("telefon", "phone", "telefonnummer", "tel"),
    "extension": ("anknytning", "extension", "ankn", "ext"),
    "email": ("epost", "email", "mail"),
    "twilio": ("twilio",),
    "asterisk": ("asterisk",),
    "languages": ("sprak", "languages", "language"),
    "topics": ("amnen", "topics", "amne", "nyckelord", "keywords"),
    "hours": ("arbetstid", "hours", "workinghours"),
    "status": ("status",),
    "status_note": ("statusnotering", "statusnote"),
    "status_until": ("statustill", "statusuntil"),
}
_HEADER = {alias: key for key, aliases in COLUMNS.items() for alias in aliases}

KIND_NAMES = {"person": "person", "unit": "unit", "enhet": "unit", "avdelning": "unit",
              "funktion": "unit"}
STATUS_NAMES = {
    **{s: s for s in STATUSES}, "tillganglig": "available", "inne": "available",
    "upptagen": "busy", "mote": "meeting", "i mote": "meeting", "borta": "away", "ute": "away",
    "franvarande": "away", "ledig": "leave", "tjanstledig": "leave", "foraldraledig": "leave",
    "semester": "leave", "pa semester": "leave",
}
# ISO 639-1 (all 183 codes), and the language names a Swedish export may use instead
ISO_639_1 = frozenset(re.findall(r"[a-z]{2}", """
aa ab ae af ak am an ar as av ay az ba be bg bi bm bn bo br bs ca ce ch co cr cs
cu cv cy da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy
hz ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt
lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm
rn ro ru rw sa sc sd se sg si sk sl sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw
ty ug uk ur uz ve vi vo wa wo xh yi yo za zh zu"""))
LANGUAGE_NAMES = {
    "svenska": "sv", "swedish": "sv", "engelska": "en", "english": "en", "finska": "fi", "finnish": "fi",
    "arabiska": "ar", "arabic": "ar", "somaliska": "so", "somali": "so", "persiska": "fa", "persian": "fa",
    "tigrinja": "ti", "tigrinya": "ti", "bosniska": "bs", "serbiska": "sr", "kroatiska": "hr",
    "polska": "pl", "polish": "pl", "tyska": "de", "german": "de", "franska": "fr", "french": "fr",
    "spanska": "es", "spanish": "es", "ryska": "ru", "russian": "ru", "ukrainska": "uk",
    "ukrainian": "uk", "turkiska": "tr", "turkish": "tr", "kurdiska": "ku", "kurdish": "ku",
    "norska": "no", "norwegian": "no", "danska": "da", "danish": "da", "samiska": "se",
}
DELIMITERS = {";": "semicolon", ",": "comma", "\t": "tab"}
LIST_SPLIT = re.compile(r"[|,;]")  # inside a cell: languages and topics
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_EMAIL = re.compile(r"[^@\s,;<>()\[\]\"]+@[^@\s,;<>()\[\]\"]+\.[^@\s,;<>()\[\]\".]{2,}")
_CLIENT = re.compile(r"client:[A-Za-z0-9_.@-]{1,121}")
_SIP = re.compile(r"sip:[^\s@]+@[^\s@]+")
_DIAL = re.compile(r"[A-Za-z][A-Za-z0-9]*/\S+")
_EXTENSION = re.compile(r"\d{1,8}")


def _header_key(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.strip().casefold())
    return "".join(c for c in decomposed if c.isalnum() and not unicodedata.combining(c))


# --------------------------------------------------------------------------- normalising

_PLAIN = str.maketrans({"æ": "ae", "ø": "o", "ß": "ss", "ł": "l", "đ": "d", "þ": "th"})
_SOUND = str.maketrans({"å": "o", "ä": "e", "æ": "e", "ø": "o", "ö": "o", "ß": "ss", "w": "v", "z": "s",
                        "q": "k"})
_SOUND_RULES = (("aa", "o"), ("ae", "e"), ("oe", "o"), ("ph", "f"), ("ck", "k"))
_NONWORD = re.compile(r"[\W_]+")


def _strip(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return _NONWORD.sub(" ", "".join(c for c in decomposed if not unicodedata.combining(c))).strip()


def fold(text: str) -> str:
    """Search form: ``"Åsa Öberg"`` -> ``"asa oberg"``; ``"Oeberg"``, ``"Aasa"`` fold the same way."""
    plain = _strip(text.casefold().translate(_PLAIN))
    return plain.replace("ae", "a").replace("oe", "o").replace("aa", "a")


def sound(text: str) -> str:
    """Swedish phonetic form: å like o, ä like e (``"Osa Öbärg"`` and ``"Åsa Öberg"`` -> ``"osa oberg"``)."""
    spoken = unicodedata.normalize("NFC", text.casefold()).translate(_SOUND)
    for a, b in _SOUND_RULES:
        spoken = spoken.replace(a, b)
    return _strip(spoken)


_ALPHABET = str.maketrans({"å": "{", "ä": "|", "æ": "|", "ö": "}", "ø": "}"})  # after "z" in ASCII


def sort_key(text: str) -> str:
    """Swedish alphabetical order: ... x y z å ä ö, other accents ignored."""
    swedish = unicodedata.normalize("NFC", text.casefold()).translate(_ALPHABET)
    decomposed = unicodedata.normalize("NFKD", swedish)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def slug(*parts: str | None) -> str:
    return "-".join(fold(p).replace(" ", "-") for p in parts if p and fold(p))[:100]


# --------------------------------------------------------------------------- fields


def _text(value: Any, *, limit: int = MAX_TEXT) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {json.dumps(value)}")
    value = " ".join(value.split())
    if len(value) > limit:
        raise ValueError(f"at most {limit} characters, got {len(value)}")
    return value or None


def _items(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        items = LIST_SPLIT.split(value)
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        items = list(value)
    else:
        raise ValueError(f"expected a list of texts, got {json.dumps(value)}")
    out = [t for t in (" ".join(i.split()) for i in items) if t]
    if len(out) > MAX_ITEMS:
        raise ValueError(f"at most {MAX_ITEMS} items, got {len(out)}")
    return out


def _choice(value: str | None, names: Mapping[str, str], what: str, default: str) -> str:
    if value is None:
        return default
    found = names.get(" ".join(fold(value).split()))
    if found is None:
        choices = sorted(set(names.values()))
        close = difflib.get_close_matches(fold(value), list(names), n=1)
        hint = f' (did you mean "{names[close[0]]}"?)' if close else ""
        raise ValueError(f'unknown {what} "{value}"; expected one of {", ".join(choices)}{hint}')
    return found


def parse_phone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        number = phonenumbers.parse(value, "SE")
    except phonenumbers.NumberParseException as e:
        raise ValueError(f'"{value}" is not a phone number ({e._msg})') from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f'"{value}" is not a valid phone number (read as '
                         f'{phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)})')
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def parse_email(value: str | None) -> str | None:
    if value is not None and not _EMAIL.fullmatch(value):
        raise ValueError(f'"{value}" is not an email address (expected name@example.se)')
    return value


def parse_endpoint(transport: str, value: str | None) -> str | None:
    if value is None:
        return None
    if transport == "asterisk":
        if not _DIAL.fullmatch(value):
            raise ValueError(f'"{value}" is not an Asterisk dial string (expected e.g. "PJSIP/1234")')
        return value
    if _CLIENT.fullmatch(value) or _SIP.fullmatch(value):
        return value
    try:
        return parse_phone(value)
    except ValueError:
        raise ValueError(f'"{value}" is not a Twilio endpoint (expected a phone number, '
                         f'"client:IDENTITY" or "sip:USER@HOST")') from None


def parse_languages(value: Any) -> tuple[str, ...]:
    codes: list[str] = []
    for item in _items(value):
        code = LANGUAGE_NAMES.get(fold(item), item.lower())
        if code not in ISO_639_1:
            raise ValueError(f'"{item}" is not a language code (ISO 639-1, e.g. "sv", "en", "ar")')
        if code not in codes:
            codes.append(code)
    return tuple(codes)


def parse_until(value: str | None) -> datetime | None:
    """An ISO date or date-time; without an offset it is Swedish time; a date is its midnight."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            parsed = datetime.combine(date.fromisoformat(value), datetime.min.time())
        else:
            parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f'"{value}" is not a date (expected e.g. "2026-03-01" or '
                         f'"2026-03-01 14:00")') from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=STOCKHOLM)).astimezone(STOCKHOLM)


def build_entry(values: Mapping[str, Any], *, entry_id: str | None = None
                ) -> tuple[Entry | None, list[tuple[str, str]]]:
    """An entry from raw values keyed by :data:`COLUMNS` keys, or the problems ``[(key, message)]``."""
    problems: list[tuple[str, str]] = []
    out: dict[str, Any] = {}

    def take(key: str, parse: Callable[[Any], Any]) -> None:
        try:
            out[key] = parse(values.get(key))
        except ValueError as e:
            problems.append((key, str(e)))

    for key in ("name", "first_name", "last_name", "title", "unit", "hours", "status_note", "phone",
                "extension", "email", "kind", "status", "status_until", "id", *TRANSPORTS):
        take(key, _text)  # every cell is text first: trimmed, spaces collapsed, "" is None
    if not out.get("name") and (out.get("first_name") or out.get("last_name")):
        out["name"] = " ".join(filter(None, (out.get("first_name"), out.get("last_name"))))
    kind = "unit" if out.get("name") and out.get("name") == out.get("unit") else "person"
    checks: list[tuple[str, Callable[[Any], Any]]] = [
        ("kind", lambda v: _choice(v, KIND_NAMES, "kind", kind)),
        ("status", lambda v: _choice(v, STATUS_NAMES, "status", "available")),
        ("phone", parse_phone), ("email", parse_email), ("status_until", parse_until),
        ("extension", lambda v: _check(v, _EXTENSION, "an extension is 1 to 8 digits")),
        *((t, lambda v, t=t: parse_endpoint(t, v)) for t in TRANSPORTS),
    ]
    for key, check in checks:
        if not any(k == key for k, _ in problems):
            try:
                out[key] = check(out.get(key))
            except ValueError as e:
                problems.append((key, str(e)))
    take("languages", parse_languages)
    take("topics", lambda v: tuple(dict.fromkeys(_text(t, limit=100) for t in _items(v))))
    if not out.get("name"):
        problems.append(("name", "missing: every entry needs a name"))
    ident = entry_id or out.get("id")
    if ident is not None and not _ID.fullmatch(ident):
        problems.append(("id", f'"{ident}" is not an id (letters a-z, digits, ".", "_", "-"; '
                               f"at most 100)"))
    if problems:
        return None, problems
    if out.get("unit") is None and out["kind"] == "unit":
        out["unit"] = out["name"]
    endpoints = MappingProxyType({t: out[t] for t in TRANSPORTS if out.get(t)})
    entry = Entry(
        id=ident or slug(out["kind"], out["name"], out["unit"] if out["kind"] == "person" else None),
        kind=out["kind"], name=out["name"], title=out["title"], unit=out["unit"], phone=out["phone"],
        extension=out["extension"], email=out["email"], endpoints=endpoints,
        languages=out["languages"], topics=out["topics"], hours=out["hours"], status=out["status"],
        status_note=out["status_note"], status_until=out["status_until"])
    return entry, []


def _check(value: str | None, pattern: re.Pattern[str], message: str) -> str | None:
    if value is not None and not pattern.fullmatch(value):
        raise ValueError(f'"{value}": {message}')
    return value


# --------------------------------------------------------------------------- reading CSV


def decode(data: bytes) -> tuple[str, str]:
    """The text of a file and the encoding it was in (UTF-8 [BOM], UTF-16 BOM, Windows-1252)."""
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8):].decode("utf-8"), "UTF-8 with BOM"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16"), "UTF-16"
    try:
        return data.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError:
        return data.decode("cp1252"), "Windows-1252"


def read_csv(data: bytes) -> tuple[list[tuple[int, Entry]], ImportResult]:
    """Parse and check a whole file: its entries with their line numbers, or DirectoryImportError."""
    try:
        text, encoding = decode(data)
    except UnicodeDecodeError as e:
        raise DirectoryImportError([Problem(0, "", f"not UTF-8 and not Windows-1252 text (byte "
                                                   f"{e.start}: {data[e.start:e.start + 1]!r})")]) from None
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = max(DELIMITERS, key=lambda d: (_known_columns(first, d), first.count(d)))
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    problems: list[Problem] = []
    fail = _failer(problems, encoding, delimiter)
    try:
        header, header_line = next(((row, rows.line_num) for row in rows if any(c.strip() for c in row)),
                                   ([], 0))
    except csv.Error as e:
        fail(Problem(rows.line_num, "", f"not CSV: {e}"))
    if not header:
        fail(Problem(0, "", "empty file: expected a header line and one line per entry"))
    columns: list[str | None] = []
    ignored: list[str] = []
    seen: dict[str, str] = {}
    for name in header:
        key = _HEADER.get(_header_key(name))
        if key is None:
            close = difflib.get_close_matches(_header_key(name), list(_HEADER), n=1, cutoff=0.75)
            if close and name.strip():
                problems.append(Problem(header_line, name, f'unknown column (did you mean '
                                                           f'"{COLUMNS[_HEADER[close[0]]][0]}"?)'))
            elif name.strip():
                ignored.append(name.strip())
        elif key in seen:
            problems.append(Problem(header_line, name, f'the same column as "{seen[key]}"'))
            key = None
        else:
            seen[key] = name
        columns.append(key)
    if not ({"name", "first_name", "last_name"} & seen.keys()):
        problems.append(Problem(header_line, "namn", f"missing column: no name column (namn/name) in the "
                                                     f"header, read with delimiter {DELIMITERS[delimiter]}"))
    if problems:
        fail()
    entries: list[tuple[int, Entry]] = []
    ids: dict[str, int] = {}
    order = {key: i for i, key in enumerate(columns) if key}
    start = rows.line_num + 1
    try:
        for row in rows:
            line, start = start, rows.line_num + 1
            if not any(c.strip() for c in row):
                continue
            if len(row) > len(header):
                problems.append(Problem(line, "", f"{len(row)} cells but the header has {len(header)} "
                                                  f"columns (a {DELIMITERS[delimiter]} too many?)"))
                continue
            values = {key: (row[i] if i < len(row) else "") for i, key in enumerate(columns) if key}
            entry, found = build_entry(values)
            for key, message in sorted(found, key=lambda p: order.get(p[0], -1)):
                problems.append(Problem(line, seen.get(key) or COLUMNS[key][0], message))
            if entry is None:
                continue
            if entry.id in ids:
                column = seen.get("id") or "id"
                problems.append(Problem(line, column, f'id "{entry.id}" is also on line {ids[entry.id]}'
                                        + ("" if "id" in seen else " (add an id column to tell them apart)")))
                continue
            ids[entry.id] = line
            entries.append((line, entry))
    except csv.Error as e:
        problems.append(Problem(rows.line_num, "", f"not CSV: {e}"))
    if not entries and not problems:
        problems.append(Problem(0, "", "no entries, only a header: importing it would empty the directory"))
    if problems:
        fail()
    result = ImportResult(entries=len(entries), added=0, updated=0, unchanged=0, removed=0,
                          encoding=encoding, delimiter=delimiter, ignored_columns=tuple(ignored))
    return entries, result


def _known_columns(line: str, delimiter: str) -> int:
    try:
        cells = next(csv.reader([line], delimiter=delimiter))
    except (csv.Error, StopIteration):
        return 0
    return sum(_header_key(c) in _HEADER for c in cells)


def _failer(problems: list[Problem], encoding: str, delimiter: str) -> Callable[..., Any]:
    def fail(*more: Problem) -> None:
        raise DirectoryImportError([*problems, *more], encoding=encoding, delimiter=delimiter)
    return fail


# --------------------------------------------------------------------------- search index

WEIGHTS = {"name": 1.0, "unit": 0.9, "title": 0.8, "topic": 0.75}
MIN_SCORE = 60.0
PREFIX_FACTOR = 0.95   # "byggl" is a prefix of "bygglovsenheten": good, but less than a whole word
INFIX_FACTOR = 0.85    # "plan" inside "detaljplan" (4+ letters, a close match only)
INFIX_MIN = 85.0
SOUND_FACTOR = 0.98    # a match by sound ("Osa" for "Åsa") ranks just below the same match by spelling
WORD_CUTOFF = 65.0


class _Index:
    """Inverted index over folded and phonetic words and phrases of every entry's searchable fields."""

    def __init__(self, entries: list[Entry]):
        self.entries = entries
        self.words: dict[str, dict[str, list[tuple[int, str, str]]]] = {"fold": {}, "sound": {}}
        self.phrases: dict[str, dict[str, list[tuple[int, str, str]]]] = {"fold": {}, "sound": {}}
        for i, e in enumerate(entries):
            fields = [("name", e.name), ("unit", e.unit), ("title", e.title),
                      *(("topic", t) for t in e.topics)]
            for name, value in fields:
                if not value:
                    continue
                for form, fn in (("fold", fold), ("sound", sound)):
                    key = fn(value)
                    self.phrases[form].setdefault(key, []).append((i, name, value))
                    for word in set(key.split()):
                        self.words[form].setdefault(word, []).append((i, name, value))
        self.sorted = {form: sorted(words) for form, words in self.words.items()}
        self.lists = {form: list(words) for form, words in self.words.items()}
        self.phrase_lists = {form: list(p) for form, p in self.phrases.items()}

    def _word_scores(self, form: str, token: str) -> dict[str, float]:
        """Vocabulary words like ``token``: whole-word similarity, prefix, or (4+ letters) inside."""
        scores: dict[str, float] = {}
        words = self.sorted[form]
        at = bisect.bisect_left(words, token)
        while at < len(words) and words[at].startswith(token):
            w = words[at]
            scores[w] = 100.0 if w == token else 100.0 * PREFIX_FACTOR
            at += 1
        if len(token) < 3:
            return scores
        for w, s, _ in process.extract(token, self.lists[form], scorer=fuzz.ratio, score_cutoff=WORD_CUTOFF,
                                       limit=None):
            scores[w] = max(scores.get(w, 0.0), s)
        for w, s, _ in process.extract(token, self.lists[form], scorer=fuzz.partial_ratio,
                                       score_cutoff=WORD_CUTOFF, limit=None):
            if len(w) <= len(token) or w in scores and scores[w] >= s * PREFIX_FACTOR:
                continue
            prefix = fuzz.ratio(token, w[:len(token)])
            if prefix >= WORD_CUTOFF:
                scores[w] = max(scores.get(w, 0.0), prefix * PREFIX_FACTOR)
            elif len(token) >= 4 and s >= INFIX_MIN:
                scores[w] = max(scores.get(w, 0.0), s * INFIX_FACTOR)
        return scores

    def search(self, query: str, limit: int) -> list[Hit]:
        best: dict[int, tuple[float, str, str]] = {}  # entry -> (score, field, text)
        forms = {"fold": fold(query), "sound": sound(query)}
        tokens = {form: q.split() for form, q in forms.items()}
        n = len(tokens["fold"])
        if n == 0:
            return self._digits(query, limit)
        totals: dict[int, float] = {}
        for t in range(n):
            per_entry: dict[int, tuple[float, str, str]] = {}
            for form in forms:
                if t >= len(tokens[form]):
                    continue
                factor = SOUND_FACTOR if form == "sound" else 1.0
                for word, s in self._word_scores(form, tokens[form][t]).items():
                    for i, name, value in self.words[form][word]:
                        score = s * WEIGHTS[name] * factor
                        if score > per_entry.get(i, (0.0,))[0]:
                            per_entry[i] = (score, name, value)
            for i, hit in per_entry.items():
                totals[i] = totals.get(i, 0.0) + hit[0]
                if hit[0] > best.get(i, (0.0,))[0]:
                    best[i] = hit
        scored = {i: (total / n, *best[i][1:]) for i, total in totals.items()}
        for form, q in forms.items():
            for phrase, s, _ in process.extract(q, self.phrase_lists[form], scorer=fuzz.ratio,
                                                score_cutoff=MIN_SCORE, limit=None):
                for i, name, value in self.phrases[form][phrase]:
                    score = s * WEIGHTS[name] * (SOUND_FACTOR if form == "sound" else 1.0)
                    if score > scored.get(i, (0.0,))[0]:
                        scored[i] = (score, name, value)
        hits = [Hit(self.entries[i], round(s, 1), value, name)
                for i, (s, name, value) in scored.items() if s >= MIN_SCORE]
        hits.sort(key=lambda h: (-h.score, h.entry.kind != "unit", sort_key(h.entry.name), h.entry.id))
        return hits[:limit] or self._digits(query, limit)

    def _digits(self, query: str, limit: int) -> list[Hit]:
        """An extension or the end of a phone number: ``"1234"`` finds extension 1234."""
        digits = re.sub(r"[\s-]", "", query)
        if not digits.isdigit() or len(digits) < 2:
            return []
        hits = [Hit(e, 100.0, e.extension, "extension") for e in self.entries if e.extension == digits]
        if len(digits) >= 4:
            hits += [Hit(e, 90.0, e.phone, "phone") for e in self.entries
                     if e.phone and e.phone.endswith(digits[-9:] if digits.startswith("0") else digits)
                     and e.extension != digits]
        return hits[:limit]


# --------------------------------------------------------------------------- the directory

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS directory_entries (id TEXT PRIMARY KEY, kind TEXT NOT NULL,
    name TEXT NOT NULL, title TEXT, unit TEXT, phone TEXT, extension TEXT, email TEXT,
    endpoints TEXT NOT NULL, languages TEXT NOT NULL, topics TEXT NOT NULL, hours TEXT,
    status TEXT NOT NULL, status_note TEXT, status_until TEXT,
    status_set_by TEXT, status_set_at TEXT,      -- a supervisor's status survives imports
    source TEXT NOT NULL,                         -- "import" or "manual" (imports leave manual ones)
    updated_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS directory_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)""",
    "INSERT OR IGNORE INTO directory_meta (key, value) VALUES ('generation', 0)",
    "INSERT OR IGNORE INTO directory_meta (key, value) VALUES ('schema', 1)",
)
_FIELDS = ("id", "kind", "name", "title", "unit", "phone", "extension", "email", "endpoints", "languages",
           "topics", "hours", "status", "status_note", "status_until")
_STATUS_FIELDS = ("status", "status_note", "status_until")


def _row(entry: Entry) -> dict[str, Any]:
    row = {k: getattr(entry, k) for k in _FIELDS}
    row["endpoints"] = json.dumps(dict(entry.endpoints), ensure_ascii=False, sort_keys=True)
    row["languages"] = json.dumps(list(entry.languages))
    row["topics"] = json.dumps(list(entry.topics), ensure_ascii=False)
    row["status_until"] = format_at(entry.status_until) if entry.status_until else None
    return row


def _entry(row: sqlite3.Row | Mapping[str, Any]) -> Entry:
    until = row["status_until"]
    return Entry(
        id=row["id"], kind=row["kind"], name=row["name"], title=row["title"], unit=row["unit"],
        phone=row["phone"], extension=row["extension"], email=row["email"],
        endpoints=MappingProxyType(json.loads(row["endpoints"])),
        languages=tuple(json.loads(row["languages"])),
        topics=tuple(json.loads(row["topics"])), hours=row["hours"], status=row["status"],
        status_note=row["status_note"],
        status_until=datetime.fromisoformat(until).astimezone(STOCKHOLM) if until else None)


class Directory:
    """The directory in the event log's SQLite file; thread-safe (one connection, one lock)."""

    def __init__(self, db_path: str | Path, *, now: Callable[[], datetime] | None = None):
        self.db_path = Path(db_path)
        self.now = now or (lambda: datetime.now(UTC))
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.db_path), check_same_thread=False, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            db = sqlite_utils.Database(conn)
            db.enable_wal()
            migrate(db)  # the file is (or becomes) an event log: `ivr serve` opens it later
            for statement in _SCHEMA:
                conn.execute(statement)
        except BaseException:
            conn.close()
            raise
        conn.row_factory = sqlite3.Row
        self._conn = conn
        self._lock = threading.RLock()
        self._index: _Index | None = None
        self._generation = -1

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Directory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reading

    def get(self, entry_id: str) -> Entry | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM directory_entries WHERE id = ?", (entry_id,)).fetchone()
        return _entry(row) if row else None

    def all(self) -> list[Entry]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM directory_entries").fetchall()
        return sorted(map(_entry, rows), key=lambda e: (e.kind != "unit", sort_key(e.name), e.id))

    def search(self, query: str, limit: int = 10) -> list[Hit]:
        """Entries by name, unit, title or topic, best first; typos and å/ä/ö forgiven."""
        with self._lock:
            (generation,) = self._conn.execute(
                "SELECT value FROM directory_meta WHERE key = 'generation'").fetchone()
            if self._index is None or generation != self._generation:
                self._index, self._generation = _Index(self.all()), generation
            index = self._index
        return index.search(query[:200], max(1, limit))

    # ------------------------------------------------------------------ writing

    def _write(self, *, rollback: bool = False) -> _Transaction:
        return _Transaction(self, rollback=rollback)

    def upsert(self, entry: Entry, *, by: str | None = None) -> None:
        """Add or replace ``entry``. With ``by`` (a supervisor's name) its status then survives
        imports, and a new entry is a manual one that imports leave alone."""
        if entry.kind not in KINDS or entry.status not in STATUSES or not _ID.fullmatch(entry.id):
            raise DirectoryError(f"bad entry {entry.id!r}: kind {entry.kind!r}, status {entry.status!r}")
        now = format_at(self.now())
        with self._write() as conn:
            old = conn.execute("SELECT source, status_set_by, status_set_at FROM directory_entries "
                               "WHERE id = ?", (entry.id,)).fetchone()
            source = old["source"] if old else ("manual" if by else "import")
            set_by, set_at = (by, now) if by else ((old["status_set_by"], old["status_set_at"]) if old
                                                   else (None, None))
            self._put(conn, entry, source=source, set_by=set_by, set_at=set_at, at=now)

    def set_status(self, entry_id: str, status: str, note: str | None, until: datetime | None, *,
                   by: str | None = None) -> Entry:
        if status not in STATUSES:
            raise DirectoryError(f'status: expected one of {", ".join(STATUSES)}, got "{status}"',
                                 [("status", f"unknown status {status!r}")])
        if until is not None and until.utcoffset() is None:
            until = until.replace(tzinfo=STOCKHOLM)
        now = format_at(self.now())
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE directory_entries SET status = ?, status_note = ?, status_until = ?, "
                "status_set_by = ?, status_set_at = ?, updated_at = ? WHERE id = ?",
                (status, _text(note), format_at(until) if until else None, by or "?", now, now, entry_id))
            if not cur.rowcount:
                raise DirectoryError(f'no directory entry "{entry_id}"')
        entry = self.get(entry_id)
        assert entry is not None
        return entry

    def delete(self, entry_id: str) -> bool:
        with self._write() as conn:
            return bool(conn.execute("DELETE FROM directory_entries WHERE id = ?", (entry_id,)).rowcount)

    def import_csv(self, path: Path | str, *, dry_run: bool = False) -> ImportResult:
        """Import a whole file or nothing; raises :class:`DirectoryImportError` with every problem."""
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise DirectoryImportError([Problem(0, "", f"cannot read {path}: {e.strerror}")]) from None
        return self.import_bytes(data, dry_run=dry_run)

    def import_bytes(self, data: bytes, *, dry_run: bool = False) -> ImportResult:
        entries, result = read_csv(data)
        now = format_at(self.now())
        added = updated = unchanged = kept = 0
        with self._write(rollback=dry_run) as conn:
            old = {r["id"]: r for r in conn.execute("SELECT * FROM directory_entries")}
            for _, entry in entries:
                before = old.pop(entry.id, None)
                set_by = set_at = None
                if before is not None and before["status_set_by"] is not None:
                    kept += 1
                    set_by, set_at = before["status_set_by"], before["status_set_at"]
                    entry = replace(entry, **{k: getattr(_entry(before), k) for k in _STATUS_FIELDS})
                if before is None:
                    added += 1
                elif _entry(before) == entry and before["source"] == "import":
                    unchanged += 1
                    continue
                else:
                    updated += 1
                self._put(conn, entry, source="import", set_by=set_by, set_at=set_at, at=now)
            gone = [i for i, r in old.items() if r["source"] == "import"]
            conn.executemany("DELETE FROM directory_entries WHERE id = ?", [(i,) for i in gone])
        return replace(result, added=added, updated=updated, unchanged=unchanged, removed=len(gone),
                       kept_status=kept, dry_run=dry_run)

    def _put(self, conn: sqlite3.Connection, entry: Entry, *, source: str, set_by: str | None,
             set_at: str | None, at: str) -> None:
        row = {**_row(entry), "status_set_by": set_by, "status_set_at": set_at, "source": source,
               "updated_at": at}
        conn.execute(f"INSERT OR REPLACE INTO directory_entries ({', '.join(row)}) "
                     f"VALUES ({', '.join('?' * len(row))})", tuple(row.values()))


class _Transaction:
    """``with directory._write() as conn``: BEGIN IMMEDIATE ... COMMIT, bumping the generation."""

    def __init__(self, directory: Directory, *, rollback: bool = False):
        self.directory, self.rollback = directory, rollback

    def __enter__(self) -> sqlite3.Connection:
        self.directory._lock.acquire()
        try:
            self.directory._conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.directory._lock.release()
            raise
        return self.directory._conn

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        conn = self.directory._conn
        try:
            if kind is None and not self.rollback:
                conn.execute("UPDATE directory_meta SET value = value + 1 WHERE key = 'generation'")
                conn.execute("COMMIT")
            else:
                conn.execute("ROLLBACK")
        finally:
            self.directory._lock.release()
