"""Calls to the gateway's account API from the other parts (dashboard, demo, tests), over TLS."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime

import grpc

from schemas.activitywatch import ImportPlan
from schemas.import_sender import ImportSummary, send_import
from schemas.wire import accounts_pb2 as pb
from schemas.wire import accounts_pb2_grpc

# Set by a trusted proxy (the dashboard) to the address of the person it signs in.
CLIENT_ADDRESS_HEADER = "x-productimon-client-address"


def public_channel(public_address: str, ca_pem: bytes) -> grpc.Channel:
    """A channel to the gateway's public port: server-authenticated TLS, for callers without a certificate."""
    return grpc.secure_channel(public_address, grpc.ssl_channel_credentials(root_certificates=ca_pem))


def sign_up_mode(public_address: str, ca_pem: bytes, timeout_s: float = 10) -> str:
    """The instance's sign-up mode: "open", "invite" (an invite code is needed) or "closed"."""
    with public_channel(public_address, ca_pem) as channel:
        return accounts_pb2_grpc.AccountsStub(channel).GetSignUpMode(pb.Empty(), timeout=timeout_s).mode


def sign_up(public_address: str, ca_pem: bytes, email: str, password: str, invite_code: str = "") -> str:
    """Create an account; returns its user id."""
    with public_channel(public_address, ca_pem) as channel:
        user = accounts_pb2_grpc.AccountsStub(channel).SignUp(
            pb.SignUpRequest(email=email, password=password, invite_code=invite_code), timeout=30
        )
    return user.user_id


def log_in(public_address: str, ca_pem: bytes, email: str, password: str, for_client: str = "") -> pb.Token:
    """`for_client`: the address of the person a proxy (the dashboard) signs in; honoured only from a proxy the
    gateway trusts (PRODUCTIMON_GATEWAY_TRUSTED_PROXIES), so failed sign-ins are throttled per person."""
    metadata = ((CLIENT_ADDRESS_HEADER, for_client),) if for_client else None
    with public_channel(public_address, ca_pem) as channel:
        return accounts_pb2_grpc.AccountsStub(channel).Login(
            pb.LoginRequest(email=email, password=password), timeout=30, metadata=metadata
        )


def who_am_i(public_address: str, ca_pem: bytes, token: str, timeout_s: float = 10) -> pb.User:
    """The user a token signs in, as the gateway sees it now (revoked tokens are refused)."""
    with public_channel(public_address, ca_pem) as channel:
        return accounts_pb2_grpc.AccountsStub(channel).WhoAmI(
            pb.Empty(), metadata=(("authorization", f"Bearer {token}"),), timeout=timeout_s
        )


def _bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def log_out(public_address: str, ca_pem: bytes, token: str) -> None:
    """Revoke the token (the gateway refuses it from now on)."""
    with public_channel(public_address, ca_pem) as channel:
        accounts_pb2_grpc.AccountsStub(channel).Logout(pb.Empty(), metadata=_bearer(token), timeout=30)


def delete_account(public_address: str, ca_pem: bytes, token: str, password: str) -> pb.DeletionReport:
    """Revoke the account's devices, delete all of its data, then the account; the password is asked again."""
    with public_channel(public_address, ca_pem) as channel:
        return accounts_pb2_grpc.AccountsStub(channel).DeleteAccount(
            pb.DeleteAccountRequest(password=password), metadata=_bearer(token), timeout=300
        )


def delete_data(
    public_address: str,
    ca_pem: bytes,
    token: str,
    kind: str,
    *,
    device_id: str = "",
    period: tuple[datetime, datetime] | None = None,
) -> pb.DeletionReport:
    """Delete a period ("period", with `period`), one device's data ("device") or all data ("all") of the
    signed-in account, for good; returns what was removed and how long it took."""
    start, end = (round(moment.timestamp() * 1000) for moment in period) if period else (0, 0)
    request = pb.DeleteDataRequest(kind=kind, device_id=device_id, period_start=start, period_end=end)
    with public_channel(public_address, ca_pem) as channel:
        return accounts_pb2_grpc.AccountsStub(channel).DeleteData(request, metadata=_bearer(token), timeout=300)


def list_devices(public_address: str, ca_pem: bytes, token: str) -> list[pb.Device]:
    with public_channel(public_address, ca_pem) as channel:
        return list(
            accounts_pb2_grpc.DevicesStub(channel).List(pb.Empty(), metadata=_bearer(token), timeout=30).devices
        )


def rename_device(public_address: str, ca_pem: bytes, token: str, device_id: str, name: str) -> None:
    with public_channel(public_address, ca_pem) as channel:
        accounts_pb2_grpc.DevicesStub(channel).Rename(
            pb.RenameRequest(device_id=device_id, name=name), metadata=_bearer(token), timeout=30
        )


def revoke_device(public_address: str, ca_pem: bytes, token: str, device_id: str) -> None:
    with public_channel(public_address, ca_pem) as channel:
        accounts_pb2_grpc.DevicesStub(channel).Revoke(
            pb.DeviceRef(device_id=device_id), metadata=_bearer(token), timeout=30
        )


def create_enrollment_code(public_address: str, ca_pem: bytes, token: str) -> pb.EnrollmentCode:
    """A one-time code that enrolls one new device into the token's account."""
    with public_channel(public_address, ca_pem) as channel:
        return accounts_pb2_grpc.DevicesStub(channel).CreateEnrollmentCode(
            pb.Empty(), metadata=_bearer(token), timeout=30
        )


def create_share_link(
    public_address: str, ca_pem: bytes, token: str, view: str, period_start: int, period_end: int, tz: str, ttl_s: int
) -> pb.ShareLinkToken:
    request = pb.ShareLinkRequest(view=view, period_start=period_start, period_end=period_end, tz=tz, ttl_seconds=ttl_s)
    with public_channel(public_address, ca_pem) as channel:
        return accounts_pb2_grpc.AccountsStub(channel).CreateShareLink(request, metadata=_bearer(token), timeout=30)


def list_share_links(public_address: str, ca_pem: bytes, token: str) -> list[pb.ShareLink]:
    with public_channel(public_address, ca_pem) as channel:
        reply = accounts_pb2_grpc.AccountsStub(channel).ListShareLinks(pb.Empty(), metadata=_bearer(token), timeout=30)
    return list(reply.links)


def revoke_share_link(public_address: str, ca_pem: bytes, token: str, link_id: str) -> None:
    with public_channel(public_address, ca_pem) as channel:
        accounts_pb2_grpc.AccountsStub(channel).RevokeShareLink(
            pb.ShareLinkRef(link_id=link_id), metadata=_bearer(token), timeout=30
        )


def open_share_link(public_address: str, ca_pem: bytes, share_token: str, timeout_s: float = 10) -> pb.ShareLink:
    """What a share token shows, as the gateway sees it now (revoked and expired links are refused)."""
    with public_channel(public_address, ca_pem) as channel:
        return accounts_pb2_grpc.AccountsStub(channel).OpenShareLink(
            pb.Empty(), metadata=_bearer(share_token), timeout=timeout_s
        )


def add_category_rule(
    public_address: str, ca_pem: bytes, token: str, field: str, pattern: str, category: str, position: int | None = None
) -> str:
    """Add a rule to the token's account (after its other rules unless `position` is given); its id."""
    rule = pb.CategoryRule(field=field, pattern=pattern, category=category, position=position)
    with public_channel(public_address, ca_pem) as channel:
        reply = accounts_pb2_grpc.AccountsStub(channel).AddCategoryRule(rule, metadata=_bearer(token), timeout=30)
    return reply.rule_id


def update_category_rule(
    public_address: str,
    ca_pem: bytes,
    token: str,
    rule_id: str,
    *,
    field: str = "",
    pattern: str = "",
    category: str = "",
    position: int | None = None,
) -> None:
    """Change a rule of the token's account; what is left empty (or None) stays as it is."""
    rule = pb.CategoryRule(rule_id=rule_id, field=field, pattern=pattern, category=category, position=position)
    with public_channel(public_address, ca_pem) as channel:
        accounts_pb2_grpc.AccountsStub(channel).UpdateCategoryRule(rule, metadata=_bearer(token), timeout=30)


def delete_category_rule(public_address: str, ca_pem: bytes, token: str, rule_id: str) -> None:
    with public_channel(public_address, ca_pem) as channel:
        accounts_pb2_grpc.AccountsStub(channel).DeleteCategoryRule(
            pb.CategoryRuleRef(rule_id=rule_id), metadata=_bearer(token), timeout=30
        )


def add_goal(
    public_address: str,
    ca_pem: bytes,
    token: str,
    *,
    kind: str,
    target: str,
    direction: str,
    period: str,
    minutes: int,
    weekdays: Sequence[int] = (),
    devices: Sequence[str] = (),
) -> str:
    """Add a goal to the token's account (warehouse/goal_rules.py says what one is); its id."""
    goal = pb.Goal(
        kind=kind,
        target=target,
        direction=direction,
        period=period,
        minutes=minutes,
        weekdays=list(weekdays),
        devices=list(devices),
    )
    with public_channel(public_address, ca_pem) as channel:
        return accounts_pb2_grpc.AccountsStub(channel).AddGoal(goal, metadata=_bearer(token), timeout=30).goal_id


def delete_goal(public_address: str, ca_pem: bytes, token: str, goal_id: str) -> None:
    with public_channel(public_address, ca_pem) as channel:
        accounts_pb2_grpc.AccountsStub(channel).DeleteGoal(
            pb.GoalRef(goal_id=goal_id), metadata=_bearer(token), timeout=30
        )


def set_goal_notice(public_address: str, ca_pem: bytes, token: str, goal_id: str, channel: str, enabled: bool) -> None:
    """Switch one notice channel ("desktop", or "email" where the server sends e-mail) of one goal on or off."""
    switch = pb.GoalNoticeSwitch(goal_id=goal_id, channel=channel, enabled=enabled)
    with public_channel(public_address, ca_pem) as channel_:
        accounts_pb2_grpc.AccountsStub(channel_).SetGoalNotice(switch, metadata=_bearer(token), timeout=30)


def set_notice_pause(public_address: str, ca_pem: bytes, token: str, paused: bool, tz: str = "") -> None:
    """Pause (or resume) every notice of the account; `tz` sets the zone its goal periods fall in ("" keeps it)."""
    with public_channel(public_address, ca_pem) as channel:
        accounts_pb2_grpc.AccountsStub(channel).SetNoticePause(
            pb.NoticePause(paused=paused, tz=tz), metadata=_bearer(token), timeout=30
        )


def set_weekly_summary(public_address: str, ca_pem: bytes, token: str, enabled: bool, tz: str = "") -> None:
    """Switch the account's weekly summary e-mail on or off; `tz` as in `set_notice_pause`."""
    with public_channel(public_address, ca_pem) as channel:
        accounts_pb2_grpc.AccountsStub(channel).SetWeeklySummary(
            pb.WeeklySummarySwitch(enabled=enabled, tz=tz), metadata=_bearer(token), timeout=30
        )


def get_privacy(public_address: str, ca_pem: bytes, token: str) -> pb.Privacy:
    """The token's account's title mode and privacy rules."""
    with public_channel(public_address, ca_pem) as channel:
        return accounts_pb2_grpc.AccountsStub(channel).GetPrivacy(pb.Empty(), metadata=_bearer(token), timeout=30)


def set_title_mode(public_address: str, ca_pem: bytes, token: str, mode: str) -> None:
    with public_channel(public_address, ca_pem) as channel:
        accounts_pb2_grpc.AccountsStub(channel).SetTitleMode(
            pb.TitleModeRequest(mode=mode), metadata=_bearer(token), timeout=30
        )


def add_privacy_rule(public_address: str, ca_pem: bytes, token: str, on: str, pattern: str, action: str) -> str:
    rule = pb.PrivacyRule(on=on, pattern=pattern, action=action)
    with public_channel(public_address, ca_pem) as channel:
        return accounts_pb2_grpc.AccountsStub(channel).AddPrivacyRule(rule, metadata=_bearer(token), timeout=30).rule_id


def delete_privacy_rule(public_address: str, ca_pem: bytes, token: str, rule_id: str) -> None:
    with public_channel(public_address, ca_pem) as channel:
        accounts_pb2_grpc.AccountsStub(channel).DeletePrivacyRule(
            pb.PrivacyRuleRef(rule_id=rule_id), metadata=_bearer(token), timeout=30
        )


def preview_privacy_rule(public_address: str, ca_pem: bytes, token: str, rule_id: str) -> pb.RuleEffect:
    """What applying the saved rule to the account's past data would change."""
    with public_channel(public_address, ca_pem) as channel:
        return accounts_pb2_grpc.AccountsStub(channel).PreviewPrivacyRule(
            pb.PrivacyRuleRef(rule_id=rule_id), metadata=_bearer(token), timeout=60
        )


def apply_privacy_rule(public_address: str, ca_pem: bytes, token: str, rule_id: str) -> pb.RuleEffect:
    """Apply the saved rule to the account's past data; returns once it is done (it first waits until every
    worker has the rule, up to about half a minute after it was saved)."""
    with public_channel(public_address, ca_pem) as channel:
        return accounts_pb2_grpc.AccountsStub(channel).ApplyPrivacyRule(
            pb.PrivacyRuleRef(rule_id=rule_id), metadata=_bearer(token), timeout=600
        )


def import_activity(
    public_address: str,
    ca_pem: bytes,
    token: str,
    plan: ImportPlan,
    *,
    device_id: str = "",
    all_or_nothing: bool = False,
    progress: Callable[[int, int], None] = lambda done, total: None,
    timeout_s: float = 600.0,
) -> ImportSummary:
    """Import a plan (schemas/activitywatch.py) into the signed-in account, as describing `device_id` (one of its
    devices; empty for none) through the gateway's `Import` (schemas/import_sender.py)."""
    from schemas.wire import ingest_pb2_grpc

    with public_channel(public_address, ca_pem) as channel:
        stub = ingest_pb2_grpc.IngestStub(channel)
        return send_import(
            lambda batches: stub.Import(batches, metadata=_bearer(token), timeout=timeout_s),
            plan,
            int(time.time() * 1000),
            device_id=device_id,
            all_or_nothing=all_or_nothing,
            progress=progress,
        )
