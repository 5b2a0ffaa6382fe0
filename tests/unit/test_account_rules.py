"""The account rules (gateway/account_rules.py) without a store: what an email, a password, a device's details, a
share link and a sign-up must be, and what each refusal says."""

from __future__ import annotations

import math
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.account_rules import (
    MAX_DEVICE_INFO_LENGTH,
    MAX_DEVICE_NAME_LENGTH,
    MAX_EMAIL_LENGTH,
    MAX_PASSWORD_LENGTH,
    MAX_SHARE_LINK_TTL,
    MIN_PASSWORD_LENGTH,
    SIGNUP_MODES,
    AccountError,
    InvalidDeviceInfo,
    InvalidEmail,
    InvalidEnrollmentCode,
    InvalidInviteCode,
    InvalidShareLink,
    ShareLink,
    SignupClosed,
    WeakPassword,
    cert_serial_text,
    check_cert_not_after,
    check_enrollment_code,
    check_invite,
    check_password_policy,
    check_share_link,
    check_share_link_open,
    check_signup_mode,
    clean_device_name,
    clean_os_info,
    normalize_email,
    revocation_line,
    signup_needs_invite,
)

LINK_ID = "0b5d3c1e-8a4f-4a57-9d9c-2f6f3b1f7e21"
T0 = 1_800_000_000.0


def test_every_refusal_is_an_account_error():
    refusals = [InvalidEmail, WeakPassword, InvalidDeviceInfo, InvalidShareLink, InvalidInviteCode, SignupClosed]
    assert all(issubclass(refusal, AccountError) for refusal in refusals)


# -- emails and passwords


@given(st.text(max_size=300))
def test_a_normalized_email_normalizes_to_itself(text):
    try:
        email = normalize_email(text)
    except InvalidEmail:
        return
    assert normalize_email(email) == email == email.strip().lower()
    assert 3 <= len(email) <= MAX_EMAIL_LENGTH and email.count("@") == 1
    assert not any(c.isspace() or not c.isprintable() for c in email)


def _verdict(email: str) -> str:
    try:
        return normalize_email(email)
    except InvalidEmail as refused:
        return f"refused: {refused}"


@given(st.text(max_size=40), st.text(" \t\n", max_size=3), st.text(" \t\n", max_size=3))
def test_surrounding_whitespace_never_changes_the_verdict(text, before, after):
    assert _verdict(before + text + after) == _verdict(text)


@given(st.text(st.characters(min_codepoint=0, max_codepoint=127), max_size=40))
def test_the_case_of_an_ascii_address_never_changes_the_verdict(text):
    assert _verdict(text.upper()) == _verdict(text.lower()) == _verdict(text)


def test_an_email_of_254_characters_is_accepted_and_255_refused():
    domain = "@example.com"
    assert normalize_email("a" * (MAX_EMAIL_LENGTH - len(domain)) + domain)
    with pytest.raises(InvalidEmail, match="longer than 254"):
        normalize_email("a" * (MAX_EMAIL_LENGTH + 1 - len(domain)) + domain)


@given(st.integers(min_value=0, max_value=MAX_PASSWORD_LENGTH + 50))
def test_a_password_is_accepted_exactly_from_10_to_1024_characters(length):
    password = "p" * length
    if MIN_PASSWORD_LENGTH <= length <= MAX_PASSWORD_LENGTH:
        check_password_policy(password, "alice@example.com")
    else:
        with pytest.raises(WeakPassword, match="shorter than 10|longer than 1024"):
            check_password_policy(password, "alice@example.com")


def test_the_email_in_any_case_is_no_password():
    with pytest.raises(WeakPassword, match="must not be the email address"):
        check_password_policy(" Alice.Long@Example.com ", "alice.long@example.com")


@pytest.mark.parametrize(("now", "line"), [(T0, T0), (T0 + 0.25, T0 + 1), (T0 + 0.999, T0 + 1)])
def test_the_revocation_line_is_the_next_whole_second(now, line):
    assert revocation_line(now) == line and isinstance(revocation_line(now), int)


@given(st.floats(min_value=0, max_value=4e9), st.floats(min_value=1e-3, max_value=1e6))
def test_no_token_issued_before_the_change_survives_it(now, earlier_by):
    line = revocation_line(now)
    assert line - 1 < now <= line
    # A token's iat is the whole second it was issued in: any instant before `now` is dated before the line.
    assert math.floor(now - earlier_by) < line


# -- devices


@given(st.text(max_size=80))
def test_a_cleaned_device_name_cleans_to_itself(text):
    try:
        name = clean_device_name(text)
    except InvalidDeviceInfo:
        return
    assert clean_device_name(name) == name == text.strip()
    assert 1 <= len(name) <= MAX_DEVICE_NAME_LENGTH and name.isprintable()


def test_os_details_may_be_empty_but_not_long_or_unprintable():
    assert clean_os_info("  Linux ", "") == ("Linux", "")
    with pytest.raises(InvalidDeviceInfo, match="the OS name must be 0 to 64 characters, not 65"):
        clean_os_info("L" * (MAX_DEVICE_INFO_LENGTH + 1), "6.1")
    with pytest.raises(InvalidDeviceInfo, match="the OS version '6\\\\x001' contains control characters"):
        clean_os_info("Linux", "6\x001")
    with pytest.raises(InvalidDeviceInfo, match="the OS version must be text"):
        clean_os_info("Linux", 6.1)  # type: ignore[arg-type]


@given(st.integers(min_value=1, max_value=2**160))
def test_a_serial_is_stored_as_hex_that_reads_back_as_itself(serial):
    assert int(cert_serial_text(serial), 16) == serial
    assert cert_serial_text(serial) == cert_serial_text(serial).lower()


@pytest.mark.parametrize("serial", [0, -5, True, 1.0, "17", None])
def test_a_serial_is_a_positive_integer(serial):
    with pytest.raises(InvalidDeviceInfo, match="is not a positive integer"):
        cert_serial_text(serial)


def test_a_certificate_expiry_is_a_finite_unix_time():
    assert check_cert_not_after(1_900_000_000) == 1_900_000_000.0
    assert isinstance(check_cert_not_after(1_900_000_000), float)
    for wrong in (math.inf, math.nan, True, "1900000000", None):
        with pytest.raises(InvalidDeviceInfo, match="is not a Unix time"):
            check_cert_not_after(wrong)  # type: ignore[arg-type]


# -- one-time codes and sign-up


@pytest.mark.parametrize(
    ("state", "reason"),
    [(None, "is not valid"), ("used", "already been used"), ("expired", "expired; make a new one in the dashboard")],
)
def test_an_enrollment_code_is_refused_saying_why(state, reason):
    with pytest.raises(InvalidEnrollmentCode, match=reason):
        check_enrollment_code(state)


@pytest.mark.parametrize(
    ("state", "reason"), [(None, "is not valid"), ("used", "already been used"), ("expired", "has expired$")]
)
def test_an_invite_is_refused_saying_why(state, reason):
    with pytest.raises(InvalidInviteCode, match=reason):
        check_invite(state)


def test_usable_codes_pass():
    check_enrollment_code("usable")
    check_invite("usable")


@pytest.mark.parametrize("invite_code", [None, "", "ABCD-EFGH-JKMN-PQRS"])
def test_open_sign_up_uses_no_invite_and_closed_sign_up_refuses_everyone(invite_code):
    assert signup_needs_invite("open", invite_code) is False
    with pytest.raises(SignupClosed, match="sign-up is closed"):
        signup_needs_invite("closed", invite_code)


def test_invite_only_sign_up_needs_an_invite_code():
    assert signup_needs_invite("invite", "ABCD-EFGH-JKMN-PQRS") is True
    for missing in (None, ""):
        with pytest.raises(InvalidInviteCode, match="needs an invite code"):
            signup_needs_invite("invite", missing)


def test_the_sign_up_modes_are_checked():
    assert SIGNUP_MODES == ("open", "invite", "closed")
    assert [check_signup_mode(mode) for mode in SIGNUP_MODES] == list(SIGNUP_MODES)
    with pytest.raises(ValueError, match="sign-up mode 'public' is not one of open, invite, closed"):
        check_signup_mode("public")


# -- share links


def test_a_share_link_id_is_returned_canonical():
    assert check_share_link(LINK_ID.upper(), "overview", T0, T0 + 86400, "Europe/Paris", 3600) == LINK_ID
    assert check_share_link(uuid.UUID(LINK_ID).hex, "top_apps", 0, 1, "UTC", MAX_SHARE_LINK_TTL) == LINK_ID


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"view": "Overview"}, "is not a view that can be shared"),
        ({"view": "a" * 33}, "is not a view that can be shared"),
        ({"view": None}, "is not a view that can be shared"),
        ({"period_start": math.nan}, "must be two Unix times"),
        ({"period_end": "tomorrow"}, "must be two Unix times"),
        ({"period_end": T0}, "ends before it starts"),
        ({"tz": ""}, "is not a time zone name"),
        ({"tz": "x" * 65}, "is not a time zone name"),
        ({"tz": "Europe/\nParis"}, "is not a time zone name"),
        ({"ttl_s": 59}, "lasts from 60 s to 90 days"),
        ({"ttl_s": MAX_SHARE_LINK_TTL + 1}, "lasts from 60 s to 90 days"),
        ({"ttl_s": 3600.0}, "lasts from 60 s to 90 days"),
        ({"ttl_s": True}, "lasts from 60 s to 90 days"),
        ({"link_id": "not-a-uuid"}, "is not a share link id"),
        ({"link_id": None}, "is not a share link id"),
    ],
)
def test_a_share_link_that_cannot_be_made_is_refused_saying_why(change, reason):
    link = {"link_id": LINK_ID, "view": "overview", "period_start": T0, "period_end": T0 + 1, "tz": "UTC"}
    with pytest.raises(InvalidShareLink, match=reason):
        check_share_link(**{**link, "ttl_s": 3600, **change})


def _link(expires_at: float, revoked: bool = False) -> ShareLink:
    return ShareLink(LINK_ID, "user", "overview", T0, T0 + 1, "UTC", T0, expires_at, revoked)


@given(st.floats(min_value=T0, max_value=T0 + 2 * MAX_SHARE_LINK_TTL), st.booleans())
def test_a_share_link_opens_exactly_while_unrevoked_and_before_its_expiry(now, revoked):
    link = _link(T0 + 3600, revoked)
    if not revoked and now < link.expires_at:
        assert check_share_link_open(link, now) is link
    else:
        with pytest.raises(InvalidShareLink, match="revoked by its owner" if revoked else "has expired"):
            check_share_link_open(link, now)
