"""Caller numbers: normalization, keyed hashing, masking and the hash key."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ivr.privacy import (
    DEMO_KEY,
    PrivacyError,
    caller_hash,
    hash_and_mask,
    mask_number,
    normalize_number,
    resolve_hash_key,
    scrub_caller,
)

KEY = b"0123456789abcdef-test-key"
OTHER_KEY = b"fedcba9876543210-other-key"

SAME_MOBILE = ["070-123 45 67", "0701234567", "+46 70 123 45 67", "0046701234567", "+46701234567"]


@pytest.mark.parametrize("number", SAME_MOBILE)
def test_swedish_mobile_formats_normalize_to_e164(number: str) -> None:
    assert normalize_number(number) == "+46701234567"


@pytest.mark.parametrize(
    ("number", "e164"),
    [
        ("08-123 456 78", "+46812345678"),  # Stockholm
        ("031-365 00 00", "+46313650000"),  # Göteborg
        ("0771-123 123", "+46771123123"),  # non-geographic
        ("  +1 (415) 555-2671 ", "+14155552671"),  # foreign, with noise around it
    ],
)
def test_other_numbers_normalize_to_e164(number: str, e164: str) -> None:
    assert normalize_number(number) == e164


@pytest.mark.parametrize("withheld", [None, "", "   ", "anonymous", "Anonymous", "RESTRICTED",
                                      "unknown", " Unknown ", "private", "Withheld"])  # fmt: skip
def test_withheld_numbers_normalize_to_none(withheld: str | None) -> None:
    assert normalize_number(withheld) is None
    assert caller_hash(withheld, KEY) is None
    assert mask_number(withheld) == "withheld"


@pytest.mark.parametrize("extension", ["1001", "client:anna", "sip:1001@pbx.kommun.se"])
def test_extensions_pass_through_stripped(extension: str) -> None:
    assert normalize_number(f"  {extension} ") == extension


def test_hash_is_hmac_sha256_hex_of_the_normalized_number() -> None:
    import hashlib
    import hmac

    expected = hmac.new(KEY, b"+46701234567", hashlib.sha256).hexdigest()
    assert caller_hash("070-123 45 67", KEY) == expected
    assert re.fullmatch(r"[0-9a-f]{64}", expected)


def test_hash_is_stable_across_formats_of_the_same_number() -> None:
    assert len({caller_hash(n, KEY) for n in SAME_MOBILE}) == 1


def test_hash_is_keyed() -> None:
    assert caller_hash("0701234567", KEY) != caller_hash("0701234567", OTHER_KEY)


def test_different_numbers_hash_differently() -> None:
    assert caller_hash("0701234567", KEY) != caller_hash("0701234568", KEY)


def test_extensions_hash_consistently() -> None:
    assert caller_hash("1001", KEY) == caller_hash(" 1001 ", KEY)
    assert caller_hash("1001", KEY) != caller_hash("1002", KEY)


def test_mask_of_a_swedish_mobile() -> None:
    assert mask_number("070-123 45 67") == "+46 70-*** ** 67"


def test_mask_of_a_stockholm_number_keeps_only_the_ends() -> None:
    masked = mask_number("08-123 456 78")
    assert masked.startswith("+46 81")
    assert masked.endswith(" 78")
    assert "2345" not in masked.replace(" ", "").replace("-", "")


def test_mask_of_an_extension_keeps_the_first_character() -> None:
    assert mask_number("1001") == "1***"
    assert mask_number("client:anna") == "c" + "*" * 10


@given(st.from_regex(r"07[02369][0-9]{7}", fullmatch=True))
def test_mask_never_shows_the_middle_digits(number: str) -> None:
    masked = mask_number(number)
    digits = re.sub(r"\D", "", masked)
    national = number[1:]  # without the trunk 0
    assert digits == "46" + national[:2] + national[-2:]
    assert masked.count("*") == len(national) - 4


def test_scrub_caller_replaces_the_raw_number() -> None:
    data = {"caller": "070-123 45 67", "called": "+46313650000"}
    clean = scrub_caller(data, KEY)
    assert clean == {
        "called": "+46313650000",
        "caller_hash": caller_hash("+46701234567", KEY),
        "caller_masked": "+46 70-*** ** 67",
    }
    assert data["caller"] == "070-123 45 67"  # the input is not modified
    assert scrub_caller({"digits": "1"}, KEY) == {"digits": "1"}


def test_resolve_key_returns_a_given_key() -> None:
    assert resolve_hash_key(KEY, demo=False) == KEY
    assert resolve_hash_key(KEY, demo=True) == KEY


def test_resolve_key_refuses_a_short_key_naming_the_variable() -> None:
    with pytest.raises(PrivacyError, match=r"MY_KEY.*at least 16 bytes"):
        resolve_hash_key(b"too short", env_name="MY_KEY", demo=True)


def test_resolve_key_without_a_key_in_production_says_what_to_do() -> None:
    with pytest.raises(PrivacyError) as raised:
        resolve_hash_key(None, demo=False)
    assert str(raised.value) == (
        "IVR_HASH_KEY is not set: caller numbers are stored only as a keyed hash; "
        "set IVR_HASH_KEY to a secret of at least 16 bytes, or run with --demo"
    )
    with pytest.raises(PrivacyError, match=r"^KOMMUN_KEY is not set: .* set KOMMUN_KEY to"):
        resolve_hash_key(None, env_name="KOMMUN_KEY", demo=False)


def test_resolve_key_without_a_key_in_a_demo_uses_the_demo_key() -> None:
    assert resolve_hash_key(None, demo=True) == DEMO_KEY
    assert len(DEMO_KEY) >= 16


@pytest.mark.parametrize("number", [
    "070-123 45 67", "+46701234567", "0046 8 123 456 78", "+1 415 555 0100", "08-123 45", "1001",
    "client:anna", "anonymous", "", "  ", "+4670", "+999 123", None])
def test_one_parse_gives_exactly_the_hash_and_the_mask(number) -> None:
    assert hash_and_mask(number, KEY) == (caller_hash(number, KEY), mask_number(number))


@given(st.text(alphabet="+0123456789 -()", max_size=18))
@example("00000000")  # phonenumbers' national number and a re-parse of its E.164 differ here
def test_one_parse_agrees_on_any_dialled_string(number) -> None:
    assert hash_and_mask(number, KEY) == (caller_hash(number, KEY), mask_number(number))
