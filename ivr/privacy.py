"""Caller numbers are personal data: hash them for matching, mask them for display.

The event log never holds a raw caller number. It stores

* a keyed hash (HMAC-SHA256 of the E.164 form), so that repeat contacts from the same
  number can be counted without anyone being able to look the number up, and
* a masked form such as ``+46 70-*** ** 67`` that a supervisor can read.

The hash is only as private as its key: with the key, anyone can hash every Swedish
number and reverse the table. Keep the key secret (``IVR_HASH_KEY``) and rotate it
when the retention period of the log runs out. Everything here is pure.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import phonenumbers

# Demo only: this key is public (it is in the source), so hashes made with it are as
# good as raw numbers. ``resolve_hash_key`` hands it out only when asked for ``demo``.
DEMO_KEY: bytes = b"ivr-kontaktcenter DEMO key - public, never use in production"

MIN_KEY_BYTES = 16

# How switches spell a withheld number (Twilio, Asterisk, SIP "From" display names).
WITHHELD = frozenset({"anonymous", "restricted", "unknown", "private", "withheld", "unavailable"})


class PrivacyError(RuntimeError):
    """The privacy settings are unusable (missing or too short hash key)."""


def normalize_number(number: str | None, region: str = "SE") -> str | None:
    """The E.164 form of ``number``, or ``None`` when the number is withheld.

    ``"070-123 45 67"`` becomes ``"+46701234567"``. Strings that are not phone numbers
    (SIP extensions such as ``"1001"``, ``"client:anna"``) come back stripped but
    otherwise unchanged, so that internal callers still hash consistently.
    """
    if number is None:
        return None
    text = number.strip()
    if not text or text.lower() in WITHHELD:
        return None
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return text
    if not phonenumbers.is_possible_number(parsed):
        return text
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def caller_hash(number: str | None, key: bytes) -> str | None:
    """Hex HMAC-SHA256 of the normalized number under ``key``; ``None`` if withheld."""
    normalized = normalize_number(number)
    if normalized is None:
        return None
    return hmac.new(key, normalized.encode("utf-8"), hashlib.sha256).hexdigest()


def mask_number(number: str | None) -> str:
    """A display form that hides the subscriber part of the number.

    ``"070-123 45 67"`` -> ``"+46 70-*** ** 67"``: country code, the first two and the
    last two digits of the national number. Withheld numbers read ``"withheld"``;
    anything that is not a phone number keeps only its first character.
    """
    normalized = normalize_number(number)
    if normalized is None:
        return "withheld"
    if normalized.startswith("+"):
        try:
            parsed = phonenumbers.parse(normalized, None)
        except phonenumbers.NumberParseException:
            parsed = None
        if parsed is not None:  # the national digits as E.164 writes them (see hash_and_mask)
            national = normalized[len(str(parsed.country_code)) + 1:]
            return f"+{parsed.country_code} {_mask_national(national)}"
    return _mask_other(normalized)


def _mask_national(digits: str) -> str:
    if len(digits) <= 5:
        return digits[0] + "*" * (len(digits) - 1)
    hidden = len(digits) - 4
    groups = [3] + [2] * ((hidden - 3) // 2) if hidden > 3 else [hidden]
    groups[-1] += hidden - sum(groups)
    stars = " ".join("*" * size for size in groups)
    return f"{digits[:2]}-{stars} {digits[-2:]}"


def _mask_other(text: str) -> str:
    if len(text) <= 1:
        return "*"
    return text[0] + "*" * (len(text) - 1)


def resolve_hash_key(key: bytes | None, *, env_name: str = "IVR_HASH_KEY", demo: bool) -> bytes:
    """The key to hash caller numbers with.

    A given key must be at least 16 bytes. Without a key only a demo may run, with
    the public :data:`DEMO_KEY`.
    """
    if key is not None:
        if len(key) < MIN_KEY_BYTES:
            raise PrivacyError(
                f"{env_name} is too short ({len(key)} bytes): "
                f"it must be a secret of at least {MIN_KEY_BYTES} bytes"
            )
        return key
    if demo:
        return DEMO_KEY
    raise PrivacyError(
        f"{env_name} is not set: caller numbers are stored only as a keyed hash; "
        f"set {env_name} to a secret of at least {MIN_KEY_BYTES} bytes, or run with --demo"
    )


def scrub_caller(data: dict[str, Any], key: bytes) -> dict[str, Any]:
    """``data`` with a raw ``caller`` number replaced by ``caller_hash`` and ``caller_masked``.

    Returns ``data`` itself when it holds no ``caller``; never modifies it.
    """
    if "caller" not in data:
        return data
    clean = dict(data)
    raw = clean.pop("caller")
    number = None if raw is None else str(raw)
    clean["caller_hash"], clean["caller_masked"] = hash_and_mask(number, key)
    return clean


def hash_and_mask(number: str | None, key: bytes) -> tuple[str | None, str]:
    """``(caller_hash(number, key), mask_number(number))`` with one phonenumbers parse
    instead of three (the parse is most of the cost of logging a new call)."""
    text = None if number is None else number.strip()
    if not text or text.lower() in WITHHELD:
        return None, "withheld"
    try:
        parsed = phonenumbers.parse(text, "SE")
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is None or not phonenumbers.is_possible_number(parsed):
        return caller_hash(number, key), mask_number(number)  # not a phone number: the slow, exact way
    normalized = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    digest = hmac.new(key, normalized.encode("utf-8"), hashlib.sha256).hexdigest()
    # the national digits as the E.164 form writes them, as mask_number takes them: for a
    # string of zeros phonenumbers' national number and a re-parse of its E.164 differ
    national = normalized[len(str(parsed.country_code)) + 1:]
    return digest, f"+{parsed.country_code} {_mask_national(national)}"
