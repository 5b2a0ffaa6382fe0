"""Accounts, tokens and devices through the real gateway over TLS and mTLS with real certificates."""

from __future__ import annotations

import sqlite3
import time
import uuid
from contextlib import closing

import grpc
import pytest
from argon2 import PasswordHasher
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from collector.enrollment import DeviceInfo, enroll, renew
from collector.transport import IngestClient
from gateway.identity_store import IdentityStore, InvalidCredentials, TooManyAttempts
from infra.devices import new_account
from schemas.api_client import delete_account, log_in, sign_up
from schemas.codec import encode_interval
from schemas.wire import accounts_pb2 as pb
from schemas.wire import accounts_pb2_grpc
from tests.conftest import eventually
from tests.e2e.test_pipeline import interval, seconds_per_app


def ca_pem(stack) -> bytes:
    return (stack.settings.pki_dir / "ca.crt").read_bytes()


def call(stack, service: str, method: str, request, token: str | None = None):
    """One call on the public port, with the token as bearer metadata when given."""
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    with grpc.secure_channel(stack.settings.gateway_public_address, grpc.ssl_channel_credentials(ca_pem(stack))) as ch:
        stub = getattr(accounts_pb2_grpc, f"{service}Stub")(ch)
        return getattr(stub, method)(request, metadata=metadata, timeout=30)


def refused(fn, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn(*args, **kwargs)
    return info.value


@pytest.fixture
def account(stack):
    user_id, email, password = new_account(stack.settings)
    token = log_in(stack.settings.gateway_public_address, ca_pem(stack), email, password).token
    return {"user_id": user_id, "email": email, "password": password, "token": token}


def test_sign_up_and_login_give_a_token_naming_the_user(stack, account):
    me = call(stack, "Accounts", "WhoAmI", pb.Empty(), account["token"])
    assert (me.user_id, me.email) == (account["user_id"], account["email"])


def test_sign_up_refuses_a_taken_email_a_weak_password_and_a_bad_address(stack, account):
    address, ca = stack.settings.gateway_public_address, ca_pem(stack)
    taken = refused(sign_up, address, ca, account["email"].upper(), "another long password")
    assert taken.code() == grpc.StatusCode.ALREADY_EXISTS
    weak = refused(sign_up, address, ca, f"{uuid.uuid4().hex}@example.org", "short")
    assert weak.code() == grpc.StatusCode.INVALID_ARGUMENT and "password" in weak.details()
    bad = refused(sign_up, address, ca, "not-an-address", "a long enough password")
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and "email" in bad.details()


def test_a_wrong_password_is_refused(stack, account):
    wrong = refused(log_in, stack.settings.gateway_public_address, ca_pem(stack), account["email"], "wrong password!")
    assert wrong.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_thousand_wrong_passwords_from_other_addresses_do_not_stop_the_owner(stack):
    settings, ca = stack.settings, ca_pem(stack)
    email, password = f"owner-{uuid.uuid4().hex[:12]}@example.org", "the owner's own passphrase"
    # The guesses go straight into the gateway's identity store, each a full check of the password, against a
    # cheap hash so that a thousand take seconds; then the hash becomes one the gateway makes, so the timed
    # sign-in costs what a real one does (and no rehash).
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    with IdentityStore(settings.identity_store_path, password_hasher=cheap) as guessed:
        owner = guessed.create_user(email, password)
        for index in range(1000):
            with pytest.raises(InvalidCredentials):
                guessed.authenticate(email, f"guess number {index}", f"198.18.{index // 250}.{index % 250 + 1}")
        # Each guessing address is held back on this account now, even with the right password.
        with pytest.raises(TooManyAttempts):
            guessed.authenticate(email, password, "198.18.0.1")
    with closing(sqlite3.connect(settings.identity_store_path)) as db, db:
        db.execute("UPDATE users SET password_hash = ? WHERE id = ?", (PasswordHasher().hash(password), owner.id))
    started = time.monotonic()
    token = log_in(settings.gateway_public_address, ca, email, password).token
    assert time.monotonic() - started < 1
    # Enrollment and account deletion, which take the password too, are not held back either.
    identity, _ = enroll(
        settings.gateway_public_address, ca, DeviceInfo("after the guessing"), email=email, password=password
    )
    assert identity.user_id == owner.id
    delete_account(settings.gateway_public_address, ca, token, password)
    assert refused(log_in, settings.gateway_public_address, ca, email, password).code() == (
        grpc.StatusCode.UNAUTHENTICATED
    )


def test_calls_without_a_valid_token_are_refused(stack):
    assert refused(call, stack, "Accounts", "WhoAmI", pb.Empty()).code() == grpc.StatusCode.UNAUTHENTICATED
    forged = refused(call, stack, "Devices", "List", pb.Empty(), "eyJhbGciOiJFZERTQSJ9.e30.c2ln")
    assert forged.code() == grpc.StatusCode.UNAUTHENTICATED


def test_logout_revokes_the_token(stack, account):
    call(stack, "Accounts", "Logout", pb.Empty(), account["token"])
    after = refused(call, stack, "Accounts", "WhoAmI", pb.Empty(), account["token"])
    assert after.code() == grpc.StatusCode.UNAUTHENTICATED and "revoked" in after.details()


def test_changing_the_password_revokes_older_tokens(stack, account):
    request = pb.ChangePasswordRequest(old_password=account["password"], new_password="a brand new passphrase")
    call(stack, "Accounts", "ChangePassword", request, account["token"])
    assert refused(call, stack, "Accounts", "WhoAmI", pb.Empty(), account["token"]).code() == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    fresh = log_in(stack.settings.gateway_public_address, ca_pem(stack), account["email"], "a brand new passphrase")
    assert call(stack, "Accounts", "WhoAmI", pb.Empty(), fresh.token).user_id == account["user_id"]


def test_enrollment_certifies_the_devices_own_key_and_records_the_device(stack, account):
    device = DeviceInfo("work laptop", "Linux", "6.1")
    identity, creds = enroll(
        stack.settings.gateway_public_address,
        ca_pem(stack),
        device,
        email=account["email"],
        password=account["password"],
    )
    assert identity.user_id == account["user_id"]
    cert = x509.load_pem_x509_certificate(creds.cert_pem)
    key = serialization.load_pem_private_key(creds.key_pem, None)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    devices = call(stack, "Devices", "List", pb.Empty(), account["token"]).devices
    assert [(d.device_id, d.name, d.os, d.os_version, d.revoked) for d in devices] == [
        (identity.device_id, "work laptop", "Linux", "6.1", False)
    ]


def test_a_one_time_enrollment_code_works_exactly_once(stack, account):
    code = call(stack, "Devices", "CreateEnrollmentCode", pb.Empty(), account["token"]).code
    address, ca = stack.settings.gateway_public_address, ca_pem(stack)
    identity, _ = enroll(address, ca, DeviceInfo("desktop"), enrollment_code=code)
    assert identity.user_id == account["user_id"]
    again = refused(enroll, address, ca, DeviceInfo("another"), enrollment_code=code)
    assert again.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_malformed_csr_is_refused(stack, account):
    request = pb.EnrollRequest(
        email=account["email"], password=account["password"], csr_pem=b"not a csr", device=pb.DeviceInfo(name="x")
    )
    bad = refused(call, stack, "Devices", "Enroll", request)
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_revoked_device_is_refused_from_its_next_call_although_its_certificate_is_valid(stack, account):
    identity, creds = enroll(
        stack.settings.gateway_public_address,
        ca_pem(stack),
        DeviceInfo("phone-ish"),
        email=account["email"],
        password=account["password"],
    )
    with IngestClient(stack.settings.gateway_address, creds) as client:
        assert client.send_batch([encode_interval(interval(0, 0, 10, "Code"))]).accepted == 1
        call(stack, "Devices", "Revoke", pb.DeviceRef(device_id=identity.device_id), account["token"])
        after = refused(client.send_batch, [encode_interval(interval(1, 10, 10, "Code"))])
    assert after.code() == grpc.StatusCode.PERMISSION_DENIED


def test_renewal_needs_the_device_certificate_and_gives_a_working_one(stack, account):
    identity, creds = enroll(
        stack.settings.gateway_public_address,
        ca_pem(stack),
        DeviceInfo("renewing"),
        email=account["email"],
        password=account["password"],
    )
    renewed = renew(stack.settings.gateway_address, creds)
    assert renewed.key_pem != creds.key_pem
    with IngestClient(stack.settings.gateway_address, renewed) as client:
        assert client.send_batch([encode_interval(interval(0, 0, 10, "Code"))]).accepted == 1
    no_cert = refused(call, stack, "Devices", "Renew", pb.RenewRequest(csr_pem=b""))
    assert no_cert.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_user_cannot_touch_another_users_devices(stack, account):
    other_id, other_email, other_password = new_account(stack.settings)
    theirs, _ = enroll(
        stack.settings.gateway_public_address,
        ca_pem(stack),
        DeviceInfo("theirs"),
        email=other_email,
        password=other_password,
    )
    assert call(stack, "Devices", "List", pb.Empty(), account["token"]).devices == []
    revoke = refused(call, stack, "Devices", "Revoke", pb.DeviceRef(device_id=theirs.device_id), account["token"])
    assert revoke.code() == grpc.StatusCode.NOT_FOUND
    rename = refused(
        call, stack, "Devices", "Rename", pb.RenameRequest(device_id=theirs.device_id, name="mine"), account["token"]
    )
    assert rename.code() == grpc.StatusCode.NOT_FOUND


def test_closed_sign_up_is_refused(stack):
    store = IdentityStore(stack.settings.identity_store_path)
    store.set_signup_mode("closed")
    try:
        closed = refused(new_account, stack.settings)
        assert closed.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        store.set_signup_mode("open")
        store.close()


def test_deleting_the_account_deletes_its_data_devices_and_login(stack, account, warehouse_client):
    identity, creds = enroll(
        stack.settings.gateway_public_address,
        ca_pem(stack),
        DeviceInfo("doomed"),
        email=account["email"],
        password=account["password"],
    )
    with IngestClient(stack.settings.gateway_address, creds) as client:
        assert client.send_batch([encode_interval(interval(0, 0, 30, "Code"))]).accepted == 1
        assert eventually(lambda: seconds_per_app(warehouse_client, account["user_id"]) == {"Code": 30.0})
        call(
            stack, "Accounts", "DeleteAccount", pb.DeleteAccountRequest(password=account["password"]), account["token"]
        )
        assert refused(client.send_batch, [encode_interval(interval(1, 30, 5, "Code"))]).code() == (
            grpc.StatusCode.PERMISSION_DENIED
        )
    rows = warehouse_client.query(
        "SELECT count() FROM intervals WHERE user_id = {u:String}", parameters={"u": account["user_id"]}
    ).result_rows[0][0]
    assert rows == 0
    gone = refused(log_in, stack.settings.gateway_public_address, ca_pem(stack), account["email"], account["password"])
    assert gone.code() == grpc.StatusCode.UNAUTHENTICATED


def test_devices_are_copied_to_the_warehouse_with_their_names(stack, account, warehouse_client):
    identity, _ = enroll(
        stack.settings.gateway_public_address,
        ca_pem(stack),
        DeviceInfo("studio", "Linux", "6.1"),
        email=account["email"],
        password=account["password"],
    )
    call(
        stack, "Devices", "Rename", pb.RenameRequest(device_id=identity.device_id, name="studio mac"), account["token"]
    )
    rows = warehouse_client.query(
        "SELECT name, os, revoked FROM devices FINAL WHERE user_id = {u:String} AND device_id = {d:String}",
        parameters={"u": account["user_id"], "d": identity.device_id},
    ).result_rows
    assert rows == [("studio mac", "Linux", False)]


def test_category_rules_are_edited_through_the_gateway_for_the_token_owner_only(stack, account, warehouse_client):
    """The dashboard's warehouse login only reads (warehouse/roles.py): rules are written by the gateway, for the
    account the token signs in, and another account's token cannot touch them."""
    from schemas.api_client import add_category_rule, delete_category_rule, update_category_rule
    from warehouse.categories import DEFAULT_RULES, list_rules

    def rule(rule_id: str):
        rules = list_rules(warehouse_client, account["user_id"])
        return rules[rules["rule_id"] == rule_id].iloc[0] if (rules["rule_id"] == rule_id).any() else None

    address, ca = stack.settings.gateway_public_address, ca_pem(stack)
    # A new account starts with the default rules, as its own.
    defaults = list_rules(warehouse_client, account["user_id"])
    assert list(zip(defaults["field"], defaults["pattern"], defaults["category"], strict=True)) == list(DEFAULT_RULES)
    rule_id = add_category_rule(address, ca, account["token"], "app", "^Code$", "Work/Programming")
    assert rule(rule_id)["category"] == "Work/Programming"
    assert int(rule(rule_id)["position"]) == len(DEFAULT_RULES)  # after the account's other rules

    bad = refused(add_category_rule, address, ca, account["token"], "app", "(?<=x)", "Work")
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and "RE2" in bad.details(), bad.details()
    bad = refused(add_category_rule, address, ca, account["token"], "colour", "x", "Work")
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and "colour" in bad.details(), bad.details()

    _, email, password = new_account(stack.settings)
    stranger = log_in(address, ca, email, password).token
    for attempt in (
        lambda: update_category_rule(address, ca, stranger, rule_id, category="Stolen"),
        lambda: delete_category_rule(address, ca, stranger, rule_id),
        lambda: delete_category_rule(address, ca, stranger, defaults["rule_id"].iloc[0]),
    ):
        assert refused(attempt).code() == grpc.StatusCode.NOT_FOUND
    assert refused(add_category_rule, address, ca, "not-a-token", "app", "x", "Work").code() in (
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
    )

    update_category_rule(address, ca, account["token"], rule_id, category="Work/Code", position=3)
    changed = rule(rule_id)
    assert (changed["category"], changed["pattern"], int(changed["position"])) == ("Work/Code", "^Code$", 3)
    delete_category_rule(address, ca, account["token"], rule_id)
    assert rule(rule_id) is None
    # A default rule is removed like any other.
    delete_category_rule(address, ca, account["token"], defaults["rule_id"].iloc[0])
    assert len(list_rules(warehouse_client, account["user_id"])) == len(DEFAULT_RULES) - 1


def test_goals_are_edited_through_the_gateway_for_the_token_owner_only(stack, account, warehouse_client):
    """Goals are written by the gateway for the account the token signs in (the dashboard only reads them); a bad
    goal is one line naming what is wrong, and another account's token cannot touch them."""
    from schemas.api_client import add_goal, delete_goal
    from warehouse.categories import DEFAULT_RULES
    from warehouse.goals import list_goals

    address, ca = stack.settings.gateway_public_address, ca_pem(stack)
    category = DEFAULT_RULES[0][2].split("/")[0]  # a new account's default rules name categories of their own
    goal_id = add_goal(
        address, ca, account["token"], kind="category", target=category, direction="at_most", period="week",
        minutes=600, weekdays=[0, 1, 2, 3, 4],
    )  # fmt: skip
    [goal] = [g for g in list_goals(warehouse_client, account["user_id"]) if g.goal_id == goal_id]
    assert (goal.kind, goal.target, goal.minutes, goal.weekdays) == ("category", category, 600, (0, 1, 2, 3, 4))

    base = {"kind": "app", "target": "Code", "direction": "at_most", "period": "day", "minutes": 30}
    for fields, said in (
        ({"minutes": 0}, "a goal needs more than 0 minutes; got 0"),
        ({"minutes": -30}, "a goal needs more than 0 minutes; got -30"),
        ({"target": ""}, "a goal on an app needs the app's name"),
        ({"kind": "category", "target": "No/Such"}, "there is no category 'No/Such' in this account's category rules"),
        ({"devices": ["not-a-device"]}, "no device 'not-a-device' in this account"),
    ):
        bad = refused(lambda fields=fields: add_goal(address, ca, account["token"], **{**base, **fields}))
        assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad.details() == f"the goal was not saved: {said}", bad.details()
    assert [g.goal_id for g in list_goals(warehouse_client, account["user_id"])] == [goal_id]

    _, email, password = new_account(stack.settings)
    stranger = log_in(address, ca, email, password).token
    assert refused(lambda: delete_goal(address, ca, stranger, goal_id)).code() == grpc.StatusCode.NOT_FOUND
    assert refused(lambda: delete_goal(address, ca, "not-a-token", goal_id)).code() in (
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
    )
    delete_goal(address, ca, account["token"], goal_id)
    assert list_goals(warehouse_client, account["user_id"]) == []


def test_goal_notices_are_switched_through_the_gateway_for_the_token_owner_only(stack, account, warehouse_client):
    """A goal's notice is switched by its owner's token only; a bad channel or zone is one line and changes nothing;
    e-mail is refused while it is not built."""
    from schemas.api_client import add_goal, set_goal_notice, set_notice_pause
    from warehouse.notices import notice_settings

    address, ca = stack.settings.gateway_public_address, ca_pem(stack)
    token, user = account["token"], account["user_id"]
    goal_id = add_goal(address, ca, token, kind="all", target="", direction="at_most", period="day", minutes=60)
    set_goal_notice(address, ca, token, goal_id, "desktop", True)
    set_notice_pause(address, ca, token, paused=False, tz="Europe/Prague")
    before = notice_settings(warehouse_client, user)
    assert before.switches[goal_id] == frozenset({"desktop"}) and before.tz == "Europe/Prague"
    for call, said in (
        (lambda: set_goal_notice(address, ca, token, goal_id, "pigeon", True), "notices go by desktop or email"),
        (lambda: set_goal_notice(address, ca, token, goal_id, "email", True), "does not send email notices"),
        (lambda: set_notice_pause(address, ca, token, paused=True, tz="Mars/Olympus"), "not a time zone"),
    ):
        bad = refused(call)
        assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad.details().startswith("the notice setting was not saved: ") and said in bad.details(), bad.details()
    assert notice_settings(warehouse_client, user) == before

    _, email, password = new_account(stack.settings)
    stranger = log_in(address, ca, email, password).token
    off = refused(lambda: set_goal_notice(address, ca, stranger, goal_id, "desktop", False))
    assert off.code() == grpc.StatusCode.NOT_FOUND
    assert refused(lambda: set_notice_pause(address, ca, "not-a-token", paused=True)).code() in (
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert notice_settings(warehouse_client, user) == before
