"""Columns of a directory export and the checking of each field (and text folding for search)."""

from __future__ import annotations

import difflib
import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from datetime import date, datetime
from types import MappingProxyType
from typing import Any

import phonenumbers

from ivr.directory.model import MAX_ITEMS, MAX_TEXT, STATUSES, TRANSPORTS, Entry
from ivr.hours import STOCKHOLM

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


