"""Who is looking: sign-up, sign-in, sign-out and share links, each checked with the gateway (no Streamlit here).

A sign-in token is verified with the token public key and then confirmed by the gateway's WhoAmI on every
page view, because only the gateway knows whether it was revoked since (logout, password change, deleted
account). A share token is verified the same way against the share scope and the gateway's OpenShareLink;
it names only its link, and the gateway says whose data, which view and which period that link shows.
An unreachable gateway means nobody is signed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from dashboard.share import SharedView, ShareRefused, shared_view
from gateway.tokens import DASHBOARD_SCOPE, SHARE_SCOPE, TokenError, read_public_key, verify_token
from plumbing.settings import Settings
from schemas import api_client


class AccessDenied(Exception):
    """Nobody is signed in, or the link cannot be opened; the message is one line saying why."""


@dataclass(frozen=True)
class SignedIn:
    user_id: str
    email: str
    token: str
    expires_at: int


@dataclass(frozen=True)
class Gateway:
    """Where the dashboard reaches the gateway's account API, and the CA that proves it is ours."""

    address: str
    ca_pem: bytes

    @classmethod
    def of(cls, settings: Settings) -> Gateway:
        try:
            return cls(settings.gateway_public_address, (settings.pki_dir / "ca.crt").read_bytes())
        except OSError as exc:
            raise AccessDenied(f"cannot reach the gateway: no CA certificate ({exc.strerror})") from None


def one_line(exc: BaseException) -> str:
    """An error as the one line shown to the user."""
    if isinstance(exc, grpc.RpcError):
        text = exc.details() or exc.code().name.lower().replace("_", " ")
    else:
        text = str(exc) or type(exc).__name__
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first[:300]


def _gateway_refusal(exc: grpc.RpcError) -> AccessDenied:
    if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return AccessDenied("the gateway cannot be reached to confirm the sign-in; try again shortly")
    return AccessDenied(one_line(exc))


def sign_in(settings: Settings, email: str, password: str, client_address: str | None = None) -> SignedIn:
    """Log in through the gateway with email and password; AccessDenied with the gateway's reason.

    `client_address` is the browser's address: the gateway throttles failed sign-ins per person, not per
    dashboard (it trusts the dashboard to say so only from PRODUCTIMON_GATEWAY_TRUSTED_PROXIES)."""
    if not email.strip() or not password:
        raise AccessDenied("enter your email address and password")
    gateway = Gateway.of(settings)
    try:
        reply = api_client.log_in(gateway.address, gateway.ca_pem, email.strip(), password, client_address or "")
    except grpc.RpcError as exc:
        raise _gateway_refusal(exc) from None
    return confirm(settings, reply.token)


def sign_up_mode(settings: Settings) -> str | None:
    """Whether this instance lets people sign up by themselves: "open", "invite" or "closed"; None when the
    gateway cannot say now."""
    try:
        gateway = Gateway.of(settings)
        return api_client.sign_up_mode(gateway.address, gateway.ca_pem)
    except (AccessDenied, grpc.RpcError):
        return None


def sign_up(
    settings: Settings, email: str, password: str, again: str, invite_code: str = "", client_address: str | None = None
) -> SignedIn:
    """Create an account through the gateway (its sign-up mode and password policy decide), then sign it in;
    AccessDenied with the one-line reason, and then nothing was created."""
    if not email.strip() or not password:
        raise AccessDenied("enter an email address and a password")
    if password != again:
        raise AccessDenied("the two passwords differ")
    gateway = Gateway.of(settings)
    try:
        api_client.sign_up(gateway.address, gateway.ca_pem, email.strip(), password, invite_code.strip())
    except grpc.RpcError as exc:
        raise _gateway_refusal(exc) from None
    return sign_in(settings, email, password, client_address)


def confirm(settings: Settings, token: str | None) -> SignedIn:
    """The account a sign-in token signs in, now; AccessDenied when it is missing, forged, expired or revoked."""
    try:
        claims = verify_token(read_public_key(settings.public_dir), token, DASHBOARD_SCOPE)
    except TokenError as exc:
        raise AccessDenied(str(exc)) from None
    gateway = Gateway.of(settings)
    try:
        user = api_client.who_am_i(gateway.address, gateway.ca_pem, token)
    except grpc.RpcError as exc:
        raise _gateway_refusal(exc) from None
    if user.user_id != claims.user_id:
        raise AccessDenied("the token does not match its account")
    return SignedIn(user.user_id, user.email, token, claims.expires_at)


def sign_out(settings: Settings, token: str) -> None:
    """Revoke the token at the gateway, so a copy of it is useless too."""
    gateway = Gateway.of(settings)
    api_client.log_out(gateway.address, gateway.ca_pem, token)


def open_share(settings: Settings, token: str | None) -> SharedView:
    """What a share link shows, after the signature, the expiry and the gateway's record (not revoked, not
    expired, owner still there) all agree; AccessDenied otherwise."""
    try:
        claims = verify_token(read_public_key(settings.public_dir), token, SHARE_SCOPE)
    except TokenError as exc:
        raise AccessDenied(f"this share link cannot be opened: {exc}") from None
    gateway = Gateway.of(settings)
    try:
        link = api_client.open_share_link(gateway.address, gateway.ca_pem, token)
    except grpc.RpcError as exc:
        raise _gateway_refusal(exc) from None
    if link.link_id != claims.token_id:
        raise AccessDenied("this share link does not match its record")
    try:
        return shared_view(
            link.link_id, link.user_id, link.view, link.period_start, link.period_end, link.tz, link.expires_at
        )
    except ShareRefused as exc:
        raise AccessDenied(str(exc)) from None
