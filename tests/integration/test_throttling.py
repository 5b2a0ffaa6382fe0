"""Repeated failed logins are slowed down, through a private gateway (its own address counts), and counted
per person when the dashboard, a trusted proxy, passes sign-ins on; a stranger's failures never hold back the
owner with the right password."""

from __future__ import annotations

from contextlib import contextmanager

import grpc
import pytest

from gateway.identity_store import THROTTLE_FREE_FAILURES, THROTTLE_FREE_FAILURES_PER_ADDRESS
from infra.devices import new_account
from infra.stack import Stack
from plumbing.settings import Settings
from schemas.api_client import log_in
from tests.conftest import _quiet, stack_settings


@contextmanager
def gateway_running(data_dir, **overrides):
    stack = Stack(stack_settings(data_dir, **overrides), _quiet)
    try:
        stack.start_broker()
        stack.start_gateway()
        yield stack
    finally:
        stack.down()


@pytest.fixture
def gateway_only(tmp_path):
    with gateway_running(tmp_path) as stack:
        yield stack


@pytest.fixture
def behind_the_dashboard(tmp_path):
    """A gateway that trusts loopback, as the compose file's trusts the dashboard's address."""
    with gateway_running(tmp_path, gateway_trusted_proxies="127.0.0.1,::1") as stack:
        yield stack


def _fail_from(settings, ca: bytes, times: int, for_client: str) -> None:
    """Failed sign-ins of unknown accounts, passed on by a proxy for `for_client`."""
    for index in range(times):
        with pytest.raises(grpc.RpcError) as failed:
            log_in(settings.gateway_public_address, ca, f"guess{index}@example.com", "not it", for_client)
        assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_repeated_failed_logins_from_one_address_slow_it_down_even_for_the_right_password(gateway_only):
    settings = gateway_only.settings
    _, email, password = new_account(settings)
    ca = (settings.pki_dir / "ca.crt").read_bytes()
    codes = []
    for _ in range(6):
        with pytest.raises(grpc.RpcError) as failed:
            log_in(settings.gateway_public_address, ca, email, "not the password")
        codes.append(failed.value.code())
    assert codes[0] == grpc.StatusCode.UNAUTHENTICATED
    assert codes[-1] == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(grpc.RpcError) as slowed:
        log_in(settings.gateway_public_address, ca, email, password)
    assert slowed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "try again in" in slowed.value.details()
    assert int(dict(slowed.value.trailing_metadata())["retry-after"]) >= 1


def test_a_trusted_proxy_has_failed_sign_ins_counted_per_person_it_passes_on(behind_the_dashboard):
    settings = behind_the_dashboard.settings
    _, email, password = new_account(settings)
    ca = (settings.pki_dir / "ca.crt").read_bytes()
    _fail_from(settings, ca, THROTTLE_FREE_FAILURES_PER_ADDRESS, for_client="198.51.100.7")
    # The person guessing is slowed down; someone else signing in through the same dashboard is not.
    with pytest.raises(grpc.RpcError) as slowed:
        log_in(settings.gateway_public_address, ca, email, password, "198.51.100.7")
    assert slowed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert log_in(settings.gateway_public_address, ca, email, password, "203.0.113.9").token


def test_a_stranger_guessing_from_many_addresses_does_not_stop_the_owner(behind_the_dashboard):
    settings = behind_the_dashboard.settings
    _, email, password = new_account(settings)
    ca = (settings.pki_dir / "ca.crt").read_bytes()
    strangers = [f"198.51.100.{host}" for host in range(1, THROTTLE_FREE_FAILURES + 2)]
    for stranger in strangers:
        with pytest.raises(grpc.RpcError) as failed:
            log_in(settings.gateway_public_address, ca, email, "not the password", stranger)
        assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # The account is under attack: an address that guessed is held back, even with the right password...
    with pytest.raises(grpc.RpcError) as held:
        log_in(settings.gateway_public_address, ca, email, password, strangers[0])
    assert held.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # ...and the owner, at an address of their own, is not.
    assert log_in(settings.gateway_public_address, ca, email, password, "203.0.113.9").token


def test_an_untrusted_caller_cannot_choose_the_address_it_is_counted_as(tmp_path):
    # Nobody is trusted by default: not even a process on the gateway's own host.
    assert Settings.model_fields["gateway_trusted_proxies"].default == ""
    with gateway_running(tmp_path) as stack:
        settings = stack.settings
        _, email, password = new_account(settings)
        ca = (settings.pki_dir / "ca.crt").read_bytes()
        _fail_from(settings, ca, THROTTLE_FREE_FAILURES_PER_ADDRESS, for_client="198.51.100.7")
        # The header was ignored: every failure counted against the real peer, whatever it claims next.
        with pytest.raises(grpc.RpcError) as slowed:
            log_in(settings.gateway_public_address, ca, email, password, "203.0.113.9")
        assert slowed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
