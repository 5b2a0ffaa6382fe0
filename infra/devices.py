"""Accounts and devices made through the gateway's real sign-up and enrollment: for the demo, tests
and benchmarks. Each device makes its own key pair; only its CSR travels."""

from __future__ import annotations

import secrets
import uuid

from collector.enrollment import DeviceInfo, enroll
from collector.transport import DeviceCredentials
from plumbing.settings import Settings
from schemas.api_client import sign_up
from schemas.device_keys import DeviceIdentity


def new_account(settings: Settings, email: str | None = None, password: str | None = None) -> tuple[str, str, str]:
    """Sign up an account through the gateway; returns (user id, email, password)."""
    email = email or f"user-{uuid.uuid4().hex[:12]}@example.org"
    password = password or secrets.token_urlsafe(16)
    ca_pem = (settings.pki_dir / "ca.crt").read_bytes()
    return sign_up(settings.gateway_public_address, ca_pem, email, password), email, password


def enroll_device(
    settings: Settings, email: str, password: str, device_name: str = "device"
) -> tuple[DeviceIdentity, DeviceCredentials]:
    ca_pem = (settings.pki_dir / "ca.crt").read_bytes()
    return enroll(settings.gateway_public_address, ca_pem, DeviceInfo(device_name), email=email, password=password)


def new_user_device(settings: Settings, device_name: str = "device") -> tuple[DeviceIdentity, DeviceCredentials]:
    """A device of a new account, enrolled through the gateway."""
    _, email, password = new_account(settings)
    return enroll_device(settings, email, password, device_name)
