"""Sign-in throttling's rules: how long an attempt must wait, given the times of earlier failures, and which keys
those failures are counted under. Pure: the identity store (gateway/identity_store.py) reads and writes the
failures and passes the time in.

Why the account's own count never refuses an address clean on it: docs/design.md "Security".
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence

from gateway.account_rules import AccountError

MAX_ADDRESS_LENGTH = 128

# Login throttling (sign_in_delay): the first THROTTLE_FREE_FAILURES failures in the window cost nothing
# (people mistype); after that each failure doubles the wait, from THROTTLE_BASE_DELAY up to THROTTLE_MAX_DELAY.
THROTTLE_WINDOW = 15 * 60.0
THROTTLE_FREE_FAILURES = 5
# An address is shared (an office behind NAT, the dashboard server signing everyone in): it gets a larger
# allowance than one account, or a handful of mistypes anywhere behind it would lock everyone else out.
THROTTLE_FREE_FAILURES_PER_ADDRESS = 30
THROTTLE_BASE_DELAY = 30.0
THROTTLE_MAX_DELAY = 15 * 60.0


class TooManyAttempts(AccountError):
    """Too many recent failed sign-ins from this address (for this account or any); `retry_after` is in seconds."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many failed sign-in attempts; try again in {math.ceil(retry_after)} s")


def throttle_delay(failure_times: Sequence[float], now: float, free: int = THROTTLE_FREE_FAILURES) -> float:
    """Seconds a key must still wait before its next sign-in attempt, given its failures' times.

    Failures older than THROTTLE_WINDOW are forgotten. With fewer than THROTTLE_FREE_FAILURES recent ones
    there is no wait; from then on the wait after the latest failure is THROTTLE_BASE_DELAY doubled for each
    further failure, capped at THROTTLE_MAX_DELAY. Failures "in the future" (another process's clock ran
    ahead) count as recent.
    """
    recent = sorted(t for t in failure_times if t > window_start(now))
    if len(recent) < free:
        return 0.0
    # The exponent is bounded so a huge failure count cannot overflow a float.
    doublings = min(len(recent) - free, 32)
    delay = min(THROTTLE_BASE_DELAY * 2.0**doublings, THROTTLE_MAX_DELAY)
    return min(max(0.0, recent[-1] + delay - now), THROTTLE_MAX_DELAY)


def sign_in_delay(
    address_failures: Sequence[float], pair_failures: Sequence[float], account_failures: Sequence[float], now: float
) -> float:
    """Seconds an attempt from one address on one account must still wait, given the failures' times of that
    address (on any account), of that address on that account, and of that account (from anywhere).

    The address and the (account, address) pair are throttled as throttle_delay says: that stops one guesser,
    and it stops only them. The account's own count never refuses an address that has not failed on it in
    the window, so a stranger's guesses from elsewhere cannot lock the owner out. Once the account has had
    THROTTLE_FREE_FAILURES failures, though, an address that has failed on it is refused until its failures
    leave the window or the account calms down: guessing one account from many addresses gets about one
    guess per address (IPv6: per /64) per THROTTLE_WINDOW, each costing a full Argon2 verification.
    """
    delay = max(
        throttle_delay(address_failures, now, THROTTLE_FREE_FAILURES_PER_ADDRESS),
        throttle_delay(pair_failures, now),
    )
    recent_pair = [t for t in pair_failures if t > window_start(now)]
    if recent_pair:
        account_delay = throttle_delay(account_failures, now)
        delay = max(delay, min(account_delay, max(recent_pair) + THROTTLE_WINDOW - now))
    return min(delay, THROTTLE_MAX_DELAY)


def window_start(now: float) -> float:
    """Failures at or before this time are forgotten: they count for nothing and may be purged."""
    return now - THROTTLE_WINDOW


def failure_keys(email: str | None, address: str) -> tuple[str, str | None]:
    """The login_failures keys of an attempt: its address's, and its (account, address) pair's.

    The pair's key starts with the account's email and a space (no email has one): the account's failures
    from anywhere are the rows under that prefix (account_key_range), so forgiving one address's mistypes
    on a right password takes them out of the account's count too.
    """
    where = throttle_address(address)
    if email is None:
        return f"addr:{where}", None
    return f"addr:{where}", f"email-addr:{email} {where}"


def account_key_range(email: str) -> tuple[str, str]:
    """[low, high) of the pair keys of one account: the prefix, and the prefix with its space made a '!'."""
    return f"email-addr:{email} ", f"email-addr:{email}!"


def legacy_account_key(email: str) -> str:
    """The per-account key that versions before per-address counting wrote (gone by itself within
    THROTTLE_WINDOW, but it names the account, so forgetting an account deletes it too)."""
    return f"email:{email}"


def throttle_address(address: str) -> str:
    """The throttling key part for a client address: its IP without port, IPv6 cut to its /64.

    Accepts a bare IP or a gRPC peer string ("ipv4:203.0.113.9:51234", "ipv6:[2001:db8::1]:443", with the
    brackets percent-encoded or not). One IPv6 host usually holds a whole /64, so a per-address limit on
    single IPv6 addresses would be no limit at all. Anything unparsable is used as given, bounded.
    """
    ip = address_ip(address)
    if ip is None:
        return str(address)[:MAX_ADDRESS_LENGTH]
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def address_ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP in a bare address or a gRPC peer string (IPv4-mapped IPv6 as IPv4); None when there is none."""
    text = str(address).strip()
    for prefix in ("ipv4:", "ipv6:"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    text = text.replace("%5B", "[").replace("%5D", "]").replace("%5b", "[").replace("%5d", "]")
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
