"""Sign-in throttling's pure rules (gateway/throttling.py): the keys failures are counted under, and the waits they
cost, without a store or a clock."""

from __future__ import annotations

import ipaddress
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.account_rules import AccountError, InvalidEmail, normalize_email
from gateway.throttling import (
    MAX_ADDRESS_LENGTH,
    THROTTLE_BASE_DELAY,
    THROTTLE_FREE_FAILURES,
    THROTTLE_FREE_FAILURES_PER_ADDRESS,
    THROTTLE_MAX_DELAY,
    THROTTLE_WINDOW,
    TooManyAttempts,
    account_key_range,
    address_ip,
    failure_keys,
    legacy_account_key,
    sign_in_delay,
    throttle_address,
    throttle_delay,
    window_start,
)

NOW = 1_800_000_000.0
times = st.floats(min_value=NOW - 2 * THROTTLE_WINDOW, max_value=NOW + 120, allow_nan=False)


def normalized(email: str) -> str | None:
    try:
        return normalize_email(email)
    except InvalidEmail:
        return None


# Normalized email addresses: letters, digits, punctuation and symbols of any script ('!' sorts right after a space).
_part = st.text(st.characters(categories=["L", "N", "P", "S"], exclude_characters="@"), min_size=1, max_size=12)
emails = st.builds("{}@{}.{}".format, _part, _part, _part).map(normalized).filter(lambda email: email is not None)
addresses = st.one_of(st.ip_addresses().map(str), st.text(max_size=40))


def test_too_many_attempts_is_an_account_refusal_with_whole_seconds_to_wait():
    refused = TooManyAttempts(29.2)
    assert isinstance(refused, AccountError)
    assert refused.retry_after == 29.2
    assert str(refused) == "too many failed sign-in attempts; try again in 30 s"


def test_the_window_starts_its_length_before_now():
    assert window_start(NOW) == NOW - THROTTLE_WINDOW == NOW - 900


def test_failures_exactly_one_window_old_are_forgotten():
    assert throttle_delay([window_start(NOW)] * 50, NOW) == 0
    assert throttle_delay([window_start(NOW) + 0.001] * THROTTLE_FREE_FAILURES, NOW) == 0  # waited out already
    assert throttle_delay([NOW - 1] * THROTTLE_FREE_FAILURES, NOW) == THROTTLE_BASE_DELAY - 1


def test_an_address_gets_the_larger_allowance_a_pair_the_smaller():
    assert sign_in_delay([NOW] * (THROTTLE_FREE_FAILURES_PER_ADDRESS - 1), [], [], NOW) == 0
    assert sign_in_delay([NOW] * THROTTLE_FREE_FAILURES_PER_ADDRESS, [], [], NOW) == THROTTLE_BASE_DELAY
    assert sign_in_delay([], [NOW] * THROTTLE_FREE_FAILURES, [], NOW) == THROTTLE_BASE_DELAY


def test_an_account_under_attack_refuses_an_address_that_failed_on_it_until_that_failure_leaves_the_window():
    attacked = [NOW - 10] * 100
    assert sign_in_delay([], [], attacked, NOW) == 0  # the owner, clean on the account
    assert sign_in_delay([NOW - 60], [NOW - 60], attacked, NOW) == THROTTLE_WINDOW - 60
    assert sign_in_delay([window_start(NOW)], [window_start(NOW)], attacked, NOW) == 0


@given(st.lists(times, max_size=60), st.lists(times, max_size=60), st.lists(times, max_size=300))
def test_the_wait_is_bounded_and_never_less_than_the_address_or_the_pair_alone(address, pair, account):
    delay = sign_in_delay(address, pair, account, NOW)
    assert 0 <= delay <= THROTTLE_MAX_DELAY
    assert delay >= throttle_delay(address, NOW, THROTTLE_FREE_FAILURES_PER_ADDRESS)
    assert delay >= throttle_delay(pair, NOW)


@given(st.lists(times, max_size=60), st.lists(times, max_size=60), st.lists(times, max_size=300), times)
def test_one_more_failure_never_shortens_the_wait(address, pair, account, failure):
    # A failure of the pair is also one of its address and of its account, as the store counts them.
    before = sign_in_delay(address, pair, account, NOW)
    assert sign_in_delay([*address, failure], [*pair, failure], [*account, failure], NOW) >= before
    assert sign_in_delay([*address, failure], pair, account, NOW) >= before
    assert sign_in_delay(address, pair, [*account, failure], NOW) >= before


@given(st.lists(times, max_size=60), st.lists(times, max_size=300))
def test_the_order_failures_are_read_in_does_not_matter(pair, account):
    assert sign_in_delay([], pair, account, NOW) == sign_in_delay([], pair[::-1], account[::-1], NOW)


@pytest.mark.parametrize(
    ("address", "ip"),
    [
        ("203.0.113.9", "203.0.113.9"),
        (" ipv4:203.0.113.9:51234 ", "203.0.113.9"),
        ("ipv6:[2001:db8::1]:443", "2001:db8::1"),
        ("ipv6:%5b2001:db8::1%5d:443", "2001:db8::1"),
        ("ipv6:[::ffff:198.51.100.7]:443", "198.51.100.7"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("unix:/run/gateway.sock", None),
        ("", None),
    ],
)
def test_the_ip_of_a_peer_string_or_bare_address(address, ip):
    assert address_ip(address) == (None if ip is None else ipaddress.ip_address(ip))


@given(st.ip_addresses(v=4), st.integers(min_value=1, max_value=65535))
def test_an_ipv4_client_is_its_address_whatever_its_port(ip, port):
    assert throttle_address(f"ipv4:{ip}:{port}") == throttle_address(f"{ip}:{port}") == throttle_address(str(ip))
    assert throttle_address(f"ipv6:[::ffff:{ip}]:{port}") == str(ip)


@given(st.ip_addresses(v=6), st.integers(min_value=0, max_value=2**64 - 1), st.integers(min_value=1, max_value=65535))
def test_every_host_of_one_ipv6_slash_64_is_one_key(ip, host, port):
    network = ipaddress.IPv6Network((ip, 64), strict=False)
    neighbour = network[host]
    if ip.ipv4_mapped is not None or neighbour.ipv4_mapped is not None:
        return  # ::ffff:0:0/96 is IPv4, counted per address
    assert throttle_address(f"ipv6:[{neighbour}]:{port}") == throttle_address(str(ip)) == str(network)


@given(st.one_of(addresses, st.text(min_size=MAX_ADDRESS_LENGTH, max_size=400)))
def test_any_address_text_gives_a_bounded_key(address):
    key = throttle_address(address)
    assert len(key) <= MAX_ADDRESS_LENGTH
    assert throttle_address(key) == key


def test_an_unknown_email_is_counted_only_under_its_address():
    assert failure_keys(None, "ipv4:203.0.113.9:1") == ("addr:203.0.113.9", None)
    assert failure_keys("alice@example.com", "203.0.113.9") == (
        "addr:203.0.113.9",
        "email-addr:alice@example.com 203.0.113.9",
    )


def test_the_key_older_versions_counted_an_account_under():
    assert legacy_account_key("alice@example.com") == "email:alice@example.com"
    low, high = account_key_range("alice@example.com")
    assert not low <= legacy_account_key("alice@example.com") < high


@given(emails, emails, st.text("!#$%&'*+-./0a~", min_size=1, max_size=3), addresses)
def test_an_accounts_key_range_holds_exactly_its_own_pair_keys(email, other, suffix, address):
    low, high = account_key_range(email)

    def in_range(key: str | None) -> bool:
        assert key is not None
        return low <= key < high

    assert in_range(failure_keys(email, address)[1])
    # Another account, and one whose address starts with this one's (a@b.c, a@b.co, a@b.c!x), are outside.
    for someone_else in (other, normalized(email + suffix)):
        if someone_else is not None and someone_else != email:
            assert not in_range(failure_keys(someone_else, address)[1])
    assert not in_range(failure_keys(None, address)[0])
    assert not in_range(legacy_account_key(email))


def test_a_huge_failure_count_does_not_overflow():
    assert throttle_delay([NOW] * 100_000, NOW) == THROTTLE_MAX_DELAY
    assert math.isfinite(sign_in_delay([NOW] * 100_000, [NOW] * 100_000, [NOW] * 100_000, NOW))
