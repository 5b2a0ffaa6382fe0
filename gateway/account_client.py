"""Calls to the gateway's account API from the other parts (dashboard, demo, tests), over TLS."""

from __future__ import annotations

import grpc

from gateway.proto import accounts_pb2 as pb
from gateway.proto import accounts_pb2_grpc


def _channel(public_address: str, ca_pem: bytes) -> grpc.Channel:
    return grpc.secure_channel(public_address, grpc.ssl_channel_credentials(root_certificates=ca_pem))


def sign_up(public_address: str, ca_pem: bytes, email: str, password: str, invite_code: str = "") -> str:
    """Create an account; returns its user id."""
    with _channel(public_address, ca_pem) as channel:
        user = accounts_pb2_grpc.AccountsStub(channel).SignUp(
            pb.SignUpRequest(email=email, password=password, invite_code=invite_code), timeout=30
        )
    return user.user_id


def log_in(public_address: str, ca_pem: bytes, email: str, password: str) -> pb.Token:
    with _channel(public_address, ca_pem) as channel:
        return accounts_pb2_grpc.AccountsStub(channel).Login(
            pb.LoginRequest(email=email, password=password), timeout=30
        )


def who_am_i(public_address: str, ca_pem: bytes, token: str, timeout_s: float = 10) -> pb.User:
    """The user a token signs in, as the gateway sees it now (revoked tokens are refused)."""
    with _channel(public_address, ca_pem) as channel:
        return accounts_pb2_grpc.AccountsStub(channel).WhoAmI(
            pb.Empty(), metadata=(("authorization", f"Bearer {token}"),), timeout=timeout_s
        )
