"""One-time codes' pure rules (gateway/one_time_codes.py): their shape, the forms of one code that mean it, what is
stored of it, lifetimes, and when a stored code may be used."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.one_time_codes import (
    CODE_ALPHABET,
    CODE_GROUP_LENGTH,
    CODE_GROUPS,
    CODE_RETENTION,
    ENROLLMENT_CODE_TTL,
    INVITE_TTL,
    MAX_ENROLLMENT_CODE_TTL,
    MAX_INVITE_TTL,
    check_ttl,
    code_state,
    hash_code,
    new_one_time_code,
    purge_before,
)

CODE = re.compile(rf"[{CODE_ALPHABET}]{{4}}(-[{CODE_ALPHABET}]{{4}}){{3}}")
codes = st.text(CODE_ALPHABET, min_size=16, max_size=16).map(lambda s: "-".join(re.findall("....", s)))


def test_the_alphabet_has_no_symbol_that_reads_as_another():
    assert len(set(CODE_ALPHABET)) == len(CODE_ALPHABET) == 30
    assert not set("0O1ILU") & set(CODE_ALPHABET)
    assert CODE_GROUPS * CODE_GROUP_LENGTH == 16


def test_new_codes_are_four_groups_of_four_and_differ():
    made = {new_one_time_code() for _ in range(200)}
    assert len(made) == 200
    assert all(CODE.fullmatch(code) for code in made)
    assert all(hash_code(code) is not None for code in made)


def test_what_is_stored_is_the_sha256_of_the_bare_symbols():
    assert hash_code("K7QM-2XPA-9RTD-HWE4") == hashlib.sha256(b"K7QM2XPA9RTDHWE4").hexdigest()


@given(codes, st.lists(st.sampled_from(["", " ", "-", "\t", "\n"]), min_size=17, max_size=17), st.booleans())
def test_every_way_of_typing_one_code_hashes_the_same(code, separators, lower):
    bare = code.replace("-", "")
    typed = "".join(sep + symbol for sep, symbol in zip(separators[:16], bare, strict=True)) + separators[-1]
    typed = typed.lower() if lower else typed
    if len(typed) <= 64:
        assert hash_code(typed) == hash_code(code) == hash_code(bare)


@given(codes, codes)
def test_different_codes_hash_differently(code, other):
    assert (hash_code(code) == hash_code(other)) == (code == other)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ABCD-EFGH",
        "ABCD-EFGH-JKMN-PQR0",
        "ABCD-EFGH-JKMN-PQRSA",
        "ABCD_EFGH_JKMN_PQRS",
        "A" * 16 + " " * 49,
        None,
        16,
    ],
)
def test_text_that_cannot_be_a_code_has_no_hash(text):
    assert hash_code(text) is None


@given(st.text(max_size=80))
def test_a_hash_is_only_ever_of_a_well_formed_code(text):
    digest = hash_code(text)
    bare = re.sub(r"[\s-]", "", text).upper()
    assert (digest is not None) == (len(text) <= 64 and len(bare) == 16 and set(bare) <= set(CODE_ALPHABET))


def test_lifetimes_are_a_minute_to_their_maximum_in_whole_seconds():
    assert check_ttl("invite", 60, MAX_INVITE_TTL) == 60
    assert check_ttl("invite", MAX_INVITE_TTL, MAX_INVITE_TTL) == MAX_INVITE_TTL
    assert ENROLLMENT_CODE_TTL <= MAX_ENROLLMENT_CODE_TTL and INVITE_TTL <= MAX_INVITE_TTL
    for wrong in (59, MAX_ENROLLMENT_CODE_TTL + 1, 600.0, True, "600", None):
        with pytest.raises(ValueError, match="enrollment code lifetime .* is not between 60 and 86400 seconds"):
            check_ttl("enrollment code", wrong, MAX_ENROLLMENT_CODE_TTL)  # type: ignore[arg-type]


def test_a_code_is_usable_until_it_expires_and_used_takes_precedence():
    assert code_state(expires_at=1000.0, used_at=None, now=999.9) == "usable"
    assert code_state(expires_at=1000.0, used_at=None, now=1000.0) == "expired"
    assert code_state(expires_at=1000.0, used_at=500.0, now=999.0) == "used"
    assert code_state(expires_at=1000.0, used_at=500.0, now=5000.0) == "used"


@given(st.floats(allow_nan=False), st.one_of(st.none(), st.floats(allow_nan=False)), st.floats(allow_nan=False))
def test_code_state_says_used_for_every_used_code_and_expired_exactly_from_its_expiry(expires_at, used_at, now):
    state = code_state(expires_at, used_at, now)
    if used_at is not None:
        assert state == "used"
    else:
        assert state == ("expired" if now >= expires_at else "usable")


def test_used_codes_are_purged_a_day_after_they_expired():
    assert CODE_RETENTION == 86400
    assert purge_before(1_800_000_000.0) == 1_800_000_000.0 - 86400
