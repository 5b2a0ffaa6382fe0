"""The gRPC face of accounts, tokens and devices; the rules themselves live in the identity store.

Sign-up, login and enrollment come in on the public port (server-authenticated TLS). Calls for a
signed-in user carry a token in `authorization: Bearer ...` metadata, checked for signature, expiry and
revocation on every call. Renewal and device info need the device's own certificate (the mTLS port).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import ipaddress
import logging
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TypeVar

import grpc
from clickhouse_connect.driver.client import Client
from cryptography import x509

from gateway.identity_store import (
    ENROLLMENT_CODE_TTL,
    AccountDisabled,
    AccountError,
    CertificateReplaced,
    DeviceRevoked,
    EmailTaken,
    IdentityStore,
    InvalidCredentials,
    InvalidDeviceInfo,
    InvalidEmail,
    InvalidEnrollmentCode,
    InvalidInviteCode,
    InvalidShareLink,
    ShareLink,
    SignupClosed,
    TooManyAttempts,
    UnknownDevice,
    UnknownUser,
    WeakPassword,
    address_ip,
    clean_device_name,
)
from gateway.keybook import KeyBook
from gateway.pki import PkiError, StackPki, identity_from_certificate, new_device_id, sign_device_csr
from gateway.producer import BrokerUnavailable
from gateway.tokens import (
    DASHBOARD_SCOPE,
    SHARE_SCOPE,
    TokenClaims,
    TokenError,
    issue_share_token,
    issue_token,
    verify_token,
)
from schemas.api_client import CLIENT_ADDRESS_HEADER
from schemas.contract import utc_from_ms
from schemas.deletions import ACCOUNT, DEVICE, PERIOD, InvalidDeletion, plan_deletion
from schemas.device_keys import DeviceIdentity
from schemas.identity_events import DEVICE_REVOKED, USER_DELETED, encode_event, event_key
from schemas.privacy_rules import InvalidPrivacyRule, PrivacyRule
from schemas.wire import accounts_pb2 as pb
from schemas.wire import accounts_pb2_grpc
from stream_jobs import history
from stream_jobs.forget import DeletionReport, delete
from stream_jobs.sessionize import SessionRules
from warehouse import categories, goals, notices, privacy
from warehouse.goal_rules import InvalidGoal
from warehouse.imports import streams_of_user
from warehouse.notice_rules import InvalidNoticeSetting
from warehouse.writes import upsert_devices

log = logging.getLogger(__name__)
T = TypeVar("T")

_STATUS: list[tuple[type[AccountError], grpc.StatusCode]] = [
    (InvalidEmail, grpc.StatusCode.INVALID_ARGUMENT),
    (WeakPassword, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidDeviceInfo, grpc.StatusCode.INVALID_ARGUMENT),
    (EmailTaken, grpc.StatusCode.ALREADY_EXISTS),
    (SignupClosed, grpc.StatusCode.PERMISSION_DENIED),
    (InvalidInviteCode, grpc.StatusCode.PERMISSION_DENIED),
    (AccountDisabled, grpc.StatusCode.PERMISSION_DENIED),
    (DeviceRevoked, grpc.StatusCode.PERMISSION_DENIED),
    (InvalidCredentials, grpc.StatusCode.UNAUTHENTICATED),
    (CertificateReplaced, grpc.StatusCode.UNAUTHENTICATED),
    (InvalidEnrollmentCode, grpc.StatusCode.UNAUTHENTICATED),
    (InvalidShareLink, grpc.StatusCode.PERMISSION_DENIED),
    (TooManyAttempts, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (UnknownUser, grpc.StatusCode.NOT_FOUND),
    (UnknownDevice, grpc.StatusCode.NOT_FOUND),
]


def status_for(error: AccountError) -> grpc.StatusCode:
    for kind, code in _STATUS:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.FAILED_PRECONDITION


async def refuse(context: grpc.aio.ServicerContext, error: AccountError) -> None:
    if isinstance(error, TooManyAttempts):
        context.set_trailing_metadata((("retry-after", str(int(error.retry_after) + 1)),))
    await context.abort(status_for(error), str(error))


def refusing(servicer: type) -> type:
    """Every RPC of `servicer` answers an AccountError with the refusal it names (`refuse`): one place for what
    would otherwise be a try/except in each method."""
    for name, method in list(vars(servicer).items()):
        if name[:1].isupper() and inspect.iscoroutinefunction(method):

            @functools.wraps(method)
            async def rpc(self, request, context, _method=method):
                try:
                    return await _method(self, request, context)
                except AccountError as exc:
                    await refuse(context, exc)

            setattr(servicer, name, rpc)
    return servicer


async def device_identity(context: grpc.aio.ServicerContext, store: IdentityStore) -> tuple[DeviceIdentity, int]:
    """The verified device certificate's identity and serial, refused when the device is revoked or deleted, or
    when the certificate is not the device's latest: a renewal retires the one before it at once, so a copy
    of an old certificate and key is useless from the next call on."""
    certs = context.auth_context().get("x509_pem_cert")
    if not certs:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a device certificate is required (use the mTLS port)")
    try:
        identity = identity_from_certificate(certs[0])
        serial = x509.load_pem_x509_certificate(certs[0]).serial_number
    except (PkiError, ValueError) as exc:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"device certificate refused: {exc}")
    current = store.current_cert_serial(identity.user_id, identity.device_id)
    if current is None:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "this device has been revoked or its account deleted")
    if serial != current:
        log.warning("device %s used certificate %x, which a renewal replaced; refused", identity.device_id, serial)
        await refuse(context, CertificateReplaced())
    return identity, serial


def client_address(
    peer: str, metadata: dict[str, str], trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
) -> str:
    """Who a sign-in attempt is throttled as: the connecting peer, or the client a trusted proxy names."""
    named = metadata.get(CLIENT_ADDRESS_HEADER, "").strip()
    ip = address_ip(peer)
    if named and ip is not None and any(ip in network for network in trusted):
        return named
    return peer


def report_message(report: DeletionReport) -> pb.DeletionReport:
    return pb.DeletionReport(
        deletion_id=report.deletion.deletion_id,
        removed=report.removed,
        seconds=report.seconds,
        summary=report.summary(),
    )


class Authority:
    """What the services share: the store, the CA, the token keys, the warehouse (its own login) and the
    warehouse with the deletion login (warehouse/roles.py)."""

    def __init__(
        self,
        store: IdentityStore,
        pki: StackPki,
        token_keys: tuple[bytes, bytes],
        token_ttl_s: int,
        device_cert_days: int,
        warehouse: Callable[[], Client],
        announce: Callable[[bytes, bytes], Awaitable[None]],
        trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (),
        rules: SessionRules | None = None,
        keys: KeyBook | None = None,
        deletion_warehouse: Callable[[], Client] | None = None,
        rules_reach_workers_s: float = 30.0,
        channels: tuple[str, ...] = notices.DESKTOP_ONLY,
    ) -> None:
        self.channels = channels  # the notice channels this server delivers (e-mail only with SMTP configured)
        self.trusted_proxies = trusted_proxies
        # How long after a privacy rule is saved every worker applies it to what it stores (stream_jobs/batch.py
        # PrivacyChoices): applying it to past data waits until then, so nothing stored after it escapes it.
        self.rules_reach_workers_s = rules_reach_workers_s
        self.rules = rules or SessionRules()  # the sessions' rules, to cut sessions at a deletion's edges
        self.keys = keys  # the ingest's data keys: a deletion that shreds a user's keys drops them from memory
        self.store = store
        self.pki = pki
        self.private_key, self.public_key = token_keys
        self.token_ttl_s = token_ttl_s
        self.device_cert_days = device_cert_days
        self.warehouse = warehouse
        self.deletion_warehouse = deletion_warehouse or warehouse
        self.announce = announce  # publishes (key, identity event), returns once the broker has it
        # Per account, held while its notices are found and handed out; forgotten when no request holds it.
        self._notice_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def notice_lock(self, user_id: str) -> asyncio.Lock:
        lock = self._notice_locks.get(user_id)
        if lock is None:
            lock = self._notice_locks[user_id] = asyncio.Lock()
        return lock

    def forget_keys(self, user_id: str) -> None:
        if self.keys is not None:
            self.keys.forget(user_id)

    def client(self, context: grpc.aio.ServicerContext) -> str:
        return client_address(context.peer(), dict(context.invocation_metadata()), self.trusted_proxies)

    async def bearer(self, context: grpc.aio.ServicerContext, scope: str) -> TokenClaims:
        """The verified claims of the call's bearer token for `scope` (signature and expiry only)."""
        header = dict(context.invocation_metadata()).get("authorization", "")
        scheme, _, token = header.partition(" ")
        try:
            if scheme.lower() != "bearer" or not token:
                raise TokenError("an 'authorization: Bearer <token>' header is required")
            return verify_token(self.public_key, token.strip(), scope)
        except TokenError as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))

    async def signed_in(self, context: grpc.aio.ServicerContext) -> TokenClaims:
        claims = await self.bearer(context, DASHBOARD_SCOPE)
        if not self.store.token_is_current(claims.user_id, claims.token_id, claims.issued_at):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "the token has been revoked")
        return claims

    async def mirror_device(self, user_id: str, device_id: str) -> None:
        """Copy a device's name and state to the warehouse, for per-device views. Best effort: the identity
        store stays the source, and the gateway copies every device again when it starts."""
        try:
            device = self.store.get_device(user_id, device_id)
            row = (user_id, device.id, device.name, device.os, device.os_version, device.revoked)
            await asyncio.to_thread(upsert_devices, self.warehouse(), [row])
        except Exception as exc:  # the warehouse being away must not fail the device's own request
            log.warning("could not copy device %s to the warehouse: %s", device_id, exc)

    def certify(self, csr_pem: bytes, identity: DeviceIdentity) -> tuple[bytes, x509.Certificate]:
        pem = sign_device_csr(self.pki.ca_cert_pem, self.pki.ca_key_pem, csr_pem, identity, days=self.device_cert_days)
        return pem, x509.load_pem_x509_certificate(pem)


def _certificate_reply(identity: DeviceIdentity, pem: bytes, cert: x509.Certificate, ca_pem: bytes) -> pb.Certificate:
    return pb.Certificate(
        device_id=identity.device_id,
        user_id=identity.user_id,
        certificate_pem=pem,
        ca_chain_pem=ca_pem,
        not_after=int(cert.not_valid_after_utc.timestamp()),
    )


@refusing
class AccountsService(accounts_pb2_grpc.AccountsServicer):
    def __init__(self, authority: Authority) -> None:
        self.a = authority

    async def GetSignUpMode(self, request, context):  # noqa: N802 (gRPC method names)
        return pb.SignUpMode(mode=await asyncio.to_thread(self.a.store.signup_mode))

    async def SignUp(self, request, context):  # noqa: N802 (gRPC method names)
        user = await asyncio.to_thread(
            self.a.store.sign_up, request.email, request.password, request.invite_code or None
        )
        log.info("account created: %s", user.id)
        try:
            await asyncio.to_thread(categories.add_default_rules, self.a.warehouse(), user.id)
        except Exception as exc:  # the warehouse away: the account works, its time simply starts uncategorized
            log.warning("the default category rules of %s were not written: %s", user.id, exc)
        return pb.User(user_id=user.id, email=user.email)

    async def Login(self, request, context):  # noqa: N802
        client = self.a.client(context)
        user = await asyncio.to_thread(self.a.store.authenticate, request.email, request.password, client)
        issued_at = self.a.store.token_issue_time(user.id)
        token = issue_token(self.a.private_key, user.id, DASHBOARD_SCOPE, self.a.token_ttl_s, now=issued_at)
        claims = verify_token(self.a.public_key, token, DASHBOARD_SCOPE)
        return pb.Token(token=token, expires_at=claims.expires_at, user_id=user.id)

    async def Logout(self, request, context):  # noqa: N802
        claims = await self.a.signed_in(context)
        self.a.store.revoke_token(claims.token_id, claims.expires_at)
        return pb.Empty()

    async def WhoAmI(self, request, context):  # noqa: N802
        claims = await self.a.signed_in(context)
        user = self.a.store.get_user(claims.user_id)
        return pb.User(user_id=user.id, email=user.email)

    async def ChangePassword(self, request, context):  # noqa: N802
        claims = await self.a.signed_in(context)
        await asyncio.to_thread(
            self.a.store.change_password,
            claims.user_id,
            request.old_password,
            request.new_password,
            self.a.client(context),
        )
        return pb.Empty()

    async def DeleteAccount(self, request, context):  # noqa: N802
        """Revoke the devices, delete the warehouse data, then the account: if the warehouse is away, the
        account stays (devices revoked, so nothing new arrives) and the user can simply ask again."""
        claims = await self.a.signed_in(context)
        store = self.a.store
        user = store.get_user(claims.user_id)
        await asyncio.to_thread(store.authenticate, user.email, request.password, self.a.client(context))
        for device in store.list_devices(user.id):
            if not device.revoked:
                store.revoke_device(user.id, device.id)
        try:
            # Workers drop what is still in flight for this user from the moment they read this event.
            await self.a.announce(
                event_key(user.id), encode_event(USER_DELETED, user.id, at_ms=int(time.time() * 1000))
            )
            deletion = plan_deletion(ACCOUNT, user.id, int(time.time() * 1000))
            report = await asyncio.to_thread(delete, self.a.deletion_warehouse(), deletion, self.a.rules)
            self.a.forget_keys(user.id)
        except Exception as exc:  # the broker's or warehouse's failure is the client's UNAVAILABLE, not a crash
            log.warning("deleting the data of %s failed: %s", user.id, exc)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the deletion could not complete now; ask again later")
        store.delete_user(user.id)
        log.info("account %s deleted with all its data: %s", user.id, report.summary())
        return report_message(report)

    async def DeleteData(self, request, context):  # noqa: N802
        """Delete a period, one device's data or all data of the signed-in account, from every table, for good:
        the deletion is recorded first, so whatever is in flight or replayed later is never stored again."""
        claims = await self.a.signed_in(context)
        kind, device_id = request.kind, request.device_id
        try:
            # An imported stream is deleted as a device is; deleting a device's data deletes what was imported
            # for it too (warehouse/imports.py).
            streams = await asyncio.to_thread(streams_of_user, self.a.warehouse(), claims.user_id) if device_id else []
        except Exception as exc:
            log.warning("cannot read the import streams of %s: %s", claims.user_id, exc)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the deletion could not complete now; ask again later")
        try:
            known = {d.id for d in self.a.store.list_devices(claims.user_id)} | {s.device_id for s in streams}
            if device_id and device_id not in known:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"there is no device {device_id!r} in this account")
            period = {}
            if kind == PERIOD:
                period = {"start": utc_from_ms(request.period_start), "end": utc_from_ms(request.period_end)}
            elif request.period_start or request.period_end:
                raise InvalidDeletion(f"a deletion of kind {kind!r} takes no period")
            now_ms = int(time.time() * 1000)
            devices = [device_id] + [s.device_id for s in streams if device_id and s.live_device == device_id]
            deletions = [
                plan_deletion(
                    kind, claims.user_id, now_ms, device_id=device if kind in (DEVICE, PERIOD) else "", **period
                )
                for device in (devices if kind in (DEVICE, PERIOD) else [""])
            ]
        except (InvalidDeletion, OverflowError, ValueError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"nothing was deleted: {exc}")
        try:
            reports = [await asyncio.to_thread(delete, self.a.deletion_warehouse(), d, self.a.rules) for d in deletions]
            self.a.forget_keys(claims.user_id)
        except Exception as exc:  # the warehouse away: the record may stand, and asking again finishes the job
            log.warning("deleting %s data of %s failed: %s", kind, claims.user_id, exc)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the deletion could not complete now; ask again later")
        report = reports[0]
        for more in reports[1:]:
            removed = {k: report.removed.get(k, 0) + more.removed.get(k, 0) for k in {*report.removed, *more.removed}}
            report = replace(report, removed=removed, seconds=report.seconds + more.seconds)
        log.info("%s data of %s deleted: %s", kind, claims.user_id, report.summary())
        return report_message(report)

    async def CreateShareLink(self, request, context):  # noqa: N802
        """A read-only link to one view of one period: a signed token of the share scope naming only the
        link's row in the identity store, which holds its owner, view and period, so the owner can revoke it."""
        claims = await self.a.signed_in(context)
        link_id = str(uuid.uuid4())
        link = self.a.store.add_share_link(
            claims.user_id,
            link_id,
            request.view,
            request.period_start,
            request.period_end,
            request.tz,
            request.ttl_seconds,
        )
        token = issue_share_token(self.a.private_key, link.id, request.ttl_seconds, now=link.created_at)
        log.info("share link %s of %s created (%s)", link_id, claims.user_id, link.view)
        return pb.ShareLinkToken(token=token, link=_share_reply(link))

    async def ListShareLinks(self, request, context):  # noqa: N802
        claims = await self.a.signed_in(context)
        return pb.ShareLinkList(links=[_share_reply(link) for link in self.a.store.list_share_links(claims.user_id)])

    async def RevokeShareLink(self, request, context):  # noqa: N802
        claims = await self.a.signed_in(context)
        self.a.store.revoke_share_link(claims.user_id, request.link_id)
        log.info("share link %s of %s revoked", request.link_id, claims.user_id)
        return pb.Empty()

    async def OpenShareLink(self, request, context):  # noqa: N802
        """What a share token's link shows: its owner, view and period come from the record alone."""
        claims = await self.a.bearer(context, SHARE_SCOPE)
        link = self.a.store.open_share_link(claims.token_id)
        return _share_reply(link)

    async def AddCategoryRule(self, request, context):  # noqa: N802
        claims = await self.a.signed_in(context)
        position = request.position if request.HasField("position") else None
        rule_id = await self._edit_rules(
            context, categories.add_rule, claims.user_id, request.field, request.pattern, request.category, position
        )
        log.info("category rule %s added for %s", rule_id, claims.user_id)
        return pb.CategoryRuleRef(rule_id=rule_id)

    async def UpdateCategoryRule(self, request, context):  # noqa: N802
        claims = await self.a.signed_in(context)
        changes = {name: getattr(request, name) or None for name in ("field", "pattern", "category")}
        changes["position"] = request.position if request.HasField("position") else None
        await self._edit_rules(context, categories.update_rule, claims.user_id, request.rule_id, **changes)
        log.info("category rule %s of %s changed", request.rule_id, claims.user_id)
        return pb.Empty()

    async def DeleteCategoryRule(self, request, context):  # noqa: N802
        claims = await self.a.signed_in(context)
        await self._edit_rules(context, categories.delete_rule, claims.user_id, request.rule_id)
        log.info("category rule %s of %s deleted", request.rule_id, claims.user_id)
        return pb.Empty()

    async def AddGoal(self, request, context):  # noqa: N802
        claims = await self.a.signed_in(context)
        goal_id = await self._edit_rules(
            context,
            goals.add_goal,
            claims.user_id,
            kind=request.kind,
            target=request.target,
            direction=request.direction,
            period=request.period,
            minutes=request.minutes,
            weekdays=list(request.weekdays),
            devices=list(request.devices),
        )
        log.info("goal %s added for %s", goal_id, claims.user_id)
        return pb.GoalRef(goal_id=goal_id)

    async def DeleteGoal(self, request, context):  # noqa: N802
        claims = await self.a.signed_in(context)
        await self._edit_rules(context, goals.delete_goal, claims.user_id, request.goal_id)
        log.info("goal %s of %s deleted", request.goal_id, claims.user_id)
        return pb.Empty()

    async def SetGoalNotice(self, request, context):  # noqa: N802
        claims = await self.a.signed_in(context)
        await self._edit_rules(
            context,
            notices.set_goal_channel,
            claims.user_id,
            request.goal_id,
            request.channel,
            request.enabled,
            self.a.channels,
        )
        log.info("%s notices of goal %s of %s %s", request.channel, request.goal_id, claims.user_id,
                 "on" if request.enabled else "off")  # fmt: skip
        return pb.Empty()

    async def SetNoticePause(self, request, context):  # noqa: N802
        claims = await self.a.signed_in(context)
        await self._edit_rules(context, notices.set_account, claims.user_id, request.paused, request.tz or None)
        log.info("notices of %s %s", claims.user_id, "paused" if request.paused else "resumed")
        return pb.Empty()

    async def SetWeeklySummary(self, request, context):  # noqa: N802
        claims = await self.a.signed_in(context)
        await self._edit_rules(
            context, notices.set_weekly_summary, claims.user_id, request.enabled, request.tz or None, self.a.channels
        )
        log.info("weekly summary of %s %s", claims.user_id, "on" if request.enabled else "off")
        return pb.Empty()

    async def GetPrivacy(self, request, context):  # noqa: N802
        claims = await self.a.signed_in(context)
        return await privacy_reply(context, self.a, claims.user_id)

    async def SetTitleMode(self, request, context):  # noqa: N802
        claims = await self.a.signed_in(context)
        await self._edit_rules(context, privacy.set_title_mode, claims.user_id, request.mode)
        log.info("title mode of %s set to %s", claims.user_id, request.mode)
        return pb.Empty()

    async def AddPrivacyRule(self, request, context):  # noqa: N802
        claims = await self.a.signed_in(context)
        try:
            rule = PrivacyRule(request.on, request.pattern, request.action)
        except InvalidPrivacyRule as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the rule was not saved: {exc}")
        rule_id = await self._edit_rules(context, privacy.add_rule, claims.user_id, rule)
        log.info("privacy rule %s added for %s", rule_id, claims.user_id)
        return pb.PrivacyRuleRef(rule_id=rule_id)

    async def DeletePrivacyRule(self, request, context):  # noqa: N802
        claims = await self.a.signed_in(context)
        await self._edit_rules(context, privacy.delete_rule, claims.user_id, request.rule_id)
        log.info("privacy rule %s of %s deleted", request.rule_id, claims.user_id)
        return pb.Empty()

    async def PreviewPrivacyRule(self, request, context):  # noqa: N802
        claims = await self.a.signed_in(context)
        rule, _ = await self._edit_rules(context, privacy.saved_rule, claims.user_id, request.rule_id)
        try:
            effect = await asyncio.to_thread(history.preview, self.a.warehouse(), claims.user_id, rule)
        except Exception as exc:  # the warehouse away
            log.warning("previewing privacy rule %s of %s failed: %s", request.rule_id, claims.user_id, exc)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the past data cannot be read now; try again later")
        return _effect_reply(effect)

    async def ApplyPrivacyRule(self, request, context):  # noqa: N802
        """Apply a saved rule to the account's past data (stream_jobs/history.py), once every worker has it."""
        claims = await self.a.signed_in(context)
        rule, saved_ms = await self._edit_rules(context, privacy.saved_rule, claims.user_id, request.rule_id)
        wait_s = saved_ms / 1000 + self.a.rules_reach_workers_s - time.time()
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        try:
            effect = await asyncio.to_thread(
                history.apply_rule, self.a.deletion_warehouse(), claims.user_id, rule, self.a.rules
            )
        except Exception as exc:  # the warehouse away: what is done stays done, and applying again finishes it
            log.warning("applying privacy rule %s of %s to past data failed: %s", request.rule_id, claims.user_id, exc)
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, "the rule could not be applied to past data now; apply it again later"
            )
        log.info(
            "privacy rule %s of %s applied to %d past intervals in %.2f s",
            request.rule_id,
            claims.user_id,
            effect.intervals,
            effect.seconds,
        )
        return _effect_reply(effect)

    async def _edit_rules(self, context: grpc.aio.ServicerContext, edit: Callable[..., T], *args, **kwargs) -> T:
        """Run one edit (or look-up) of the signed-in account's category or privacy rules or goals with the
        gateway's warehouse login; its refusal is one line naming what was wrong."""
        try:
            return await asyncio.to_thread(edit, self.a.warehouse(), *args, **kwargs)
        except (categories.InvalidRule, InvalidPrivacyRule) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the rule was not saved: {exc}")
        except InvalidGoal as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the goal was not saved: {exc}")
        except InvalidNoticeSetting as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the notice setting was not saved: {exc}")
        except (categories.RuleNotFound, privacy.PrivacyRuleNotFound, goals.GoalNotFound) as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except Exception as exc:  # the warehouse away: nothing was written, asking again is safe
            log.warning("editing the category or privacy rules or goals failed: %s", exc)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the change cannot be made now; try again later")
        raise AssertionError("unreachable: context.abort raises")


async def privacy_reply(context: grpc.aio.ServicerContext, authority: Authority, user_id: str) -> pb.Privacy:
    try:
        rules = await asyncio.to_thread(privacy.rules_with_ids, authority.warehouse(), user_id)
        choice = (await asyncio.to_thread(privacy.load_privacy, authority.warehouse(), [user_id]))[user_id]
    except Exception as exc:  # the warehouse away: the devices keep the rules they last fetched
        log.warning("reading the privacy choices of %s failed: %s", user_id, exc)
        await context.abort(grpc.StatusCode.UNAVAILABLE, "the privacy settings cannot be read now; try again later")
    return pb.Privacy(
        title_mode=choice.title_mode,
        rules=[pb.PrivacyRule(rule_id=i, on=r.on, pattern=r.pattern, action=r.action) for i, r in rules],
    )


def _effect_reply(effect: history.RuleEffect) -> pb.RuleEffect:
    return pb.RuleEffect(
        intervals=effect.intervals, active_seconds=effect.active_seconds, devices=effect.devices, seconds=effect.seconds
    )


def _share_reply(link: ShareLink) -> pb.ShareLink:
    return pb.ShareLink(
        link_id=link.id,
        user_id=link.user_id,
        view=link.view,
        period_start=int(link.period_start),
        period_end=int(link.period_end),
        tz=link.tz,
        created_at=int(link.created_at),
        expires_at=int(link.expires_at),
        revoked=link.revoked,
    )


@refusing
class DevicesService(accounts_pb2_grpc.DevicesServicer):
    def __init__(self, authority: Authority) -> None:
        self.a = authority

    async def Enroll(self, request, context):  # noqa: N802
        store = self.a.store
        info = request.device
        clean_device_name(info.name)  # refuse a bad name before a one-time code is spent on it
        if request.enrollment_code:
            user = store.redeem_enrollment_code(request.enrollment_code)
        else:
            client = self.a.client(context)
            user = await asyncio.to_thread(store.authenticate, request.email, request.password, client)
        identity = DeviceIdentity(user.id, new_device_id())
        try:
            pem, cert = self.a.certify(request.csr_pem, identity)
        except PkiError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"certificate request refused: {exc}")
        store.add_device(
            user.id,
            info.name,
            info.os,
            info.os_version,
            cert.serial_number,
            cert.not_valid_after_utc.timestamp(),
            device_id=identity.device_id,
        )
        log.info("device %s enrolled for %s", identity.device_id, user.id)
        await self.a.mirror_device(user.id, identity.device_id)
        return _certificate_reply(identity, pem, cert, self.a.pki.ca_cert_pem)

    async def Renew(self, request, context):  # noqa: N802
        """A new certificate that replaces the asking one: from the next call on, only the new one gets in."""
        identity, serial = await device_identity(context, self.a.store)
        try:
            pem, cert = self.a.certify(request.csr_pem, identity)
        except PkiError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"certificate request refused: {exc}")
        self.a.store.record_renewal(
            identity.device_id, serial, cert.serial_number, cert.not_valid_after_utc.timestamp()
        )
        log.info("device %s renewed: certificate %x replaced by %x", identity.device_id, serial, cert.serial_number)
        await self.a.mirror_device(identity.user_id, identity.device_id)
        return _certificate_reply(identity, pem, cert, self.a.pki.ca_cert_pem)

    async def GetPrivacy(self, request, context):  # noqa: N802
        """The privacy choices of the calling device's account (mTLS), for it to apply before recording."""
        identity, _ = await device_identity(context, self.a.store)
        return await privacy_reply(context, self.a, identity.user_id)

    async def TakeNotices(self, request, context):  # noqa: N802
        """The desktop notices of the calling device's account now due (mTLS), each handed out once."""
        identity, _ = await device_identity(context, self.a.store)
        # One account's notices are found and handed out one request at a time, so two of its devices asking at
        # once never both get the same notice.
        async with self.a.notice_lock(identity.user_id):
            try:
                taken = await asyncio.to_thread(notices.take_due, self.a.warehouse(), identity.user_id, "desktop")
            except Exception as exc:  # the warehouse away: nothing was handed out, the device asks again later
                log.warning("finding the notices of %s failed: %s", identity.user_id, exc)
                await context.abort(grpc.StatusCode.UNAVAILABLE, "the notices cannot be read now; try again later")
        if taken:
            log.info("%d desktop notices handed to device %s", len(taken), identity.device_id)
        return pb.NoticeList(
            notices=[pb.DeviceNotice(notice_id=n.notice_id, summary=n.summary, body=n.body) for n in taken]
        )

    async def UpdateInfo(self, request, context):  # noqa: N802
        identity, _ = await device_identity(context, self.a.store)
        self.a.store.update_device_info(identity.device_id, request.os, request.os_version)
        if request.name:
            self.a.store.rename_device(identity.user_id, identity.device_id, request.name)
        await self.a.mirror_device(identity.user_id, identity.device_id)
        return pb.Empty()

    async def CreateEnrollmentCode(self, request, context):  # noqa: N802
        claims = await self.a.signed_in(context)
        code = self.a.store.create_enrollment_code(claims.user_id, ENROLLMENT_CODE_TTL)
        return pb.EnrollmentCode(code=code, expires_at=int(time.time()) + ENROLLMENT_CODE_TTL)

    async def List(self, request, context):  # noqa: N802
        claims = await self.a.signed_in(context)
        return pb.DeviceList(
            devices=[
                pb.Device(
                    device_id=d.id,
                    name=d.name,
                    os=d.os,
                    os_version=d.os_version,
                    created_at=int(d.created_at),
                    certificate_not_after=int(d.cert_not_after),
                    revoked=d.revoked,
                )
                for d in self.a.store.list_devices(claims.user_id)
            ]
        )

    async def Rename(self, request, context):  # noqa: N802
        claims = await self.a.signed_in(context)
        self.a.store.rename_device(claims.user_id, request.device_id, request.name)
        await self.a.mirror_device(claims.user_id, request.device_id)
        return pb.Empty()

    async def Revoke(self, request, context):  # noqa: N802
        if request.device_id:
            user_id, device_id = (await self.a.signed_in(context)).user_id, request.device_id
        else:
            # No device named: a device revoking itself (the collector's `unenroll`), proven by its certificate.
            own, _ = await device_identity(context, self.a.store)
            user_id, device_id = own.user_id, own.device_id
        self.a.store.revoke_device(user_id, device_id)
        event = encode_event(DEVICE_REVOKED, user_id, device_id, int(time.time() * 1000))
        try:
            await self.a.announce(event_key(user_id, device_id), event)
        except BrokerUnavailable:
            # The device is already refused at the door; only the workers' notice is missing. Revoking
            # again is harmless, so the client is told to retry.
            await context.abort(grpc.StatusCode.UNAVAILABLE, "revoked, but not yet announced; ask again later")
        log.info("device %s of %s revoked", device_id, user_id)
        await self.a.mirror_device(user_id, device_id)
        return pb.Empty()
