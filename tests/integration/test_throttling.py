"""Repeated failed logins are slowed down, through a private gateway (its own address counts)."""

from __future__ import annotations

import grpc
import pytest

from gateway.account_client import log_in
from infra.devices import new_account
from infra.stack import Stack
from tests.conftest import _quiet, stack_settings


@pytest.fixture
def gateway_only(tmp_path):
    stack = Stack(stack_settings(tmp_path), _quiet)
    try:
        stack.start_broker()
        stack.start_gateway()
        yield stack
    finally:
        stack.down()


def test_repeated_failed_logins_are_slowed_down_even_for_the_right_password(gateway_only):
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
