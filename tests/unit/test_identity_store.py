"""The identity store: accounts, devices, codes and tokens in a real SQLite file, and every refusal it makes."""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from hypothesis import given
from hypothesis import strategies as st

from gateway.accounts_service import client_address
from gateway.identity_store import (
    CODE_ALPHABET,
    THROTTLE_BASE_DELAY,
    THROTTLE_FREE_FAILURES_PER_ADDRESS,
    THROTTLE_MAX_DELAY,
    THROTTLE_WINDOW,
    AccountDisabled,
    CertificateReplaced,
    DeviceRevoked,
    EmailTaken,
    IdentityStore,
    IdentityStoreError,
    InvalidCredentials,
    InvalidDeviceInfo,
    InvalidEmail,
    InvalidEnrollmentCode,
    InvalidInviteCode,
    SignupClosed,
    TooManyAttempts,
    UnknownDevice,
    UnknownUser,
    WeakPassword,
    check_password_policy,
    clean_device_name,
    failure_keys,
    load_migrations,
    normalize_email,
    sign_in_delay,
    throttle_address,
    throttle_delay,
)
from schemas.api_client import CLIENT_ADDRESS_HEADER

PASSWORD = "correct horse battery staple"
ADDRESS = "192.0.2.10"
DAY = 86400.0


class Clock:
    """A clock the test moves by hand, so throttling and expiry are tested without sleeping."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CountingHasher(PasswordHasher):
    """Argon2id with test-sized costs that counts how often a password is verified."""

    def __init__(self, time_cost: int = 1) -> None:
        super().__init__(time_cost=time_cost, memory_cost=8, parallelism=1)
        self.verifications = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verifications += 1
        return super().verify(hash, password)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hasher() -> CountingHasher:
    return CountingHasher()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "identity.sqlite3"


@pytest.fixture
def open_store(db_path, clock, hasher) -> Callable[..., IdentityStore]:
    opened: list[IdentityStore] = []

    def make(**kwargs: object) -> IdentityStore:
        options = {"clock": clock, "password_hasher": hasher, **kwargs}
        store = IdentityStore(db_path, **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store) -> IdentityStore:
    return open_store()


@pytest.fixture
def alice(store):
    return store.sign_up("alice@example.com", PASSWORD)


def raw(db_path: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Read the file directly, as an attacker with a copy of it would."""
    with sqlite3.connect(db_path) as db:
        return db.execute(sql, params).fetchall()


def stored_bytes(db_path: Path) -> bytes:
    """Everything on disk: the database and its write-ahead log, where recent writes still are."""
    return b"".join(path.read_bytes() for path in sorted(db_path.parent.glob(db_path.name + "*")))


def add_laptop(store: IdentityStore, user_id: str, name: str = "laptop", **kwargs):
    values = {"os": "Linux", "os_version": "6.1", "cert_serial": 2**158 + 7, "cert_not_after": 1_900_000_000.0}
    values.update(kwargs)
    return store.add_device(user_id, name, **values)


# -- schema and migrations


def test_opening_twice_applies_each_migration_once_and_keeps_the_data(open_store, db_path):
    first = open_store()
    user = first.sign_up("alice@example.com", PASSWORD)
    second = open_store()
    latest = len(load_migrations())
    assert second.schema_version() == latest >= 1
    assert second.get_user(user.id) == user
    assert raw(db_path, "PRAGMA user_version") == [(latest,)]


def test_the_file_is_wal_owner_only_and_enforces_foreign_keys(store, db_path):
    assert raw(db_path, "PRAGMA journal_mode") == [("wal",)]
    assert db_path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(sqlite3.IntegrityError):
        store._db.execute(
            "INSERT INTO devices (id, user_id, name, created_at, cert_serial, cert_not_after) "
            "VALUES ('d', 'no-such-user', 'x', 0, '1', 0)"
        )


def test_a_schema_newer_than_the_code_is_refused(db_path, open_store):
    open_store().close()
    with sqlite3.connect(db_path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(IdentityStoreError, match="schema version 99, newer"):
        open_store()


def test_a_failing_migration_is_rolled_back_whole(tmp_path, db_path, open_store):
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_one.sql").write_text("CREATE TABLE one (x);\n")
    (migrations / "0002_two.sql").write_text("-- half of this must not stay\nCREATE TABLE two (x);\nNOT SQL;\n")
    with pytest.raises(IdentityStoreError, match="0002_two failed"):
        open_store(migrations_dir=migrations)
    tables = {name for (name,) in raw(db_path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "one" in tables and "two" not in tables
    assert raw(db_path, "PRAGMA user_version") == [(1,)]


def test_migrations_must_be_numbered_without_gaps(tmp_path):
    (tmp_path / "0001_one.sql").write_text("CREATE TABLE one (x);\n")
    (tmp_path / "0003_three.sql").write_text("CREATE TABLE three (x);\n")
    with pytest.raises(IdentityStoreError, match="not numbered"):
        load_migrations(tmp_path)


def test_stores_opening_a_new_file_at_once_migrate_it_once(tmp_path, clock, hasher):
    # Switching a new file to WAL races between connections (SQLite answers "database is locked" at once, without
    # its busy handler); one round in twenty lost it before the retry, so several fresh files are opened.
    for round_ in range(12):
        db_path = tmp_path / f"identity-{round_}.sqlite3"
        errors, stores = [], []

        def open_one(db_path: Path, stores: list, errors: list) -> None:
            try:
                stores.append(IdentityStore(db_path, clock=clock, password_hasher=hasher))
            except Exception as exc:
                errors.append(exc)

        threads = [threading.Thread(target=open_one, args=(db_path, stores, errors)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert all(store.schema_version() == len(load_migrations()) for store in stores)
        assert raw(db_path, "SELECT count(*) FROM instance") == [(1,)]
        assert raw(db_path, "PRAGMA journal_mode") == [("wal",)]
        for store in stores:
            store.close()


# -- email and password rules


@pytest.mark.parametrize(
    ("email", "normalized"),
    [
        ("alice@example.com", "alice@example.com"),
        ("  Alice.Smith+tag@Example.CO.uk ", "alice.smith+tag@example.co.uk"),
        ("élodie@exemple.fr", "élodie@exemple.fr"),
    ],
)
def test_emails_are_trimmed_and_lower_cased(email, normalized):
    assert normalize_email(email) == normalized


@pytest.mark.parametrize(
    ("email", "reason"),
    [
        ("", "empty"),
        ("alice", "exactly one '@'"),
        ("alice@bob@example.com", "exactly one '@'"),
        ("@example.com", "nothing before"),
        ("alice@localhost", "needs a dot"),
        ("alice@example.", "needs a dot"),
        ("alice@.example.com", "needs a dot"),
        ("alice@example..com", "needs a dot"),
        ("al ice@example.com", "spaces"),
        ("alice\x00@example.com", "control"),
        ("a" * 250 + "@example.com", "longer than 254"),
    ],
)
def test_malformed_emails_are_refused_saying_why(email, reason):
    with pytest.raises(InvalidEmail, match=re.escape(reason)):
        normalize_email(email)


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short", "shorter than 10"),
        ("x" * 1025, "longer than 1024"),
        ("Alice@Example.com", "must not be the email"),
    ],
)
def test_weak_passwords_are_refused_saying_why(password, reason):
    with pytest.raises(WeakPassword, match=reason):
        check_password_policy(password, "alice@example.com")


def test_passwords_of_ten_to_1024_characters_are_accepted():
    check_password_policy("x" * 10, "alice@example.com")
    check_password_policy("🔑" * 1024, "alice@example.com")


# -- sign-up


def test_sign_up_stores_an_argon2id_hash_never_the_password(store, alice, db_path):
    assert alice.email == "alice@example.com"
    assert uuid.UUID(alice.id)
    assert not alice.disabled and not alice.is_admin
    [(stored,)] = raw(db_path, "SELECT password_hash FROM users WHERE id = ?", (alice.id,))
    assert stored.startswith("$argon2id$v=19$")
    assert PASSWORD not in stored
    assert PASSWORD.encode() not in stored_bytes(db_path)


def test_emails_are_unique_whatever_their_case(store, alice):
    with pytest.raises(EmailTaken, match="alice@example.com already exists"):
        store.sign_up(" ALICE@Example.COM", "another password")
    assert len(store.list_users()) == 1


def test_sign_up_refuses_bad_input_and_stores_nothing(store):
    with pytest.raises(InvalidEmail):
        store.sign_up("not-an-email", PASSWORD)
    with pytest.raises(WeakPassword):
        store.sign_up("alice@example.com", "short")
    assert store.list_users() == []


def test_closed_sign_up_is_refused_but_the_operator_can_still_create_accounts(store):
    store.set_signup_mode("closed")
    with pytest.raises(SignupClosed, match="closed"):
        store.sign_up("alice@example.com", PASSWORD)
    admin = store.create_user("root@example.com", PASSWORD, is_admin=True)
    assert admin.is_admin
    assert store.list_users() == [admin]


def test_invite_only_sign_up_needs_an_unused_unexpired_invite(store, clock):
    store.set_signup_mode("invite")
    with pytest.raises(InvalidInviteCode, match="needs an invite code"):
        store.sign_up("alice@example.com", PASSWORD)
    with pytest.raises(InvalidInviteCode, match="not valid"):
        store.sign_up("alice@example.com", PASSWORD, invite_code="AAAA-AAAA-AAAA-AAAA")
    with pytest.raises(InvalidInviteCode, match="not valid"):
        store.sign_up("alice@example.com", PASSWORD, invite_code="hello")
    code = store.create_invite()
    alice = store.sign_up("alice@example.com", PASSWORD, invite_code=code.lower().replace("-", ""))
    with pytest.raises(InvalidInviteCode, match="already been used"):
        store.sign_up("bob@example.com", PASSWORD, invite_code=code)
    expiring = store.create_invite(ttl_s=3600)
    clock.advance(3600)
    with pytest.raises(InvalidInviteCode, match="expired"):
        store.sign_up("bob@example.com", PASSWORD, invite_code=expiring)
    assert store.list_users() == [alice]


def test_a_refused_sign_up_does_not_use_up_the_invite(store, alice):
    store.set_signup_mode("invite")
    code = store.create_invite()
    with pytest.raises(EmailTaken):
        store.sign_up("alice@example.com", PASSWORD, invite_code=code)
    assert store.sign_up("bob@example.com", PASSWORD, invite_code=code).email == "bob@example.com"


def test_open_sign_up_ignores_an_invite_code(store):
    assert store.sign_up("alice@example.com", PASSWORD, invite_code="whatever").email == "alice@example.com"


def test_sign_up_mode_is_open_by_default_persists_and_is_validated(store, open_store):
    assert store.signup_mode() == "open"
    store.set_signup_mode("invite")
    assert open_store().signup_mode() == "invite"
    with pytest.raises(ValueError, match="not one of open, invite, closed"):
        store.set_signup_mode("everyone")
    with pytest.raises(ValueError, match="lifetime"):
        store.create_invite(ttl_s=0)


# -- authentication and throttling


def test_authenticate_accepts_the_right_password_with_any_email_case(store, alice):
    assert store.authenticate("ALICE@example.com ", PASSWORD, ADDRESS) == alice


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("alice@example.com", "wrong password!"),
        ("nobody@example.com", PASSWORD),
        ("not an email", PASSWORD),
        ("alice@example.com", ""),
    ],
)
def test_wrong_or_unknown_credentials_get_the_same_refusal(store, alice, email, password):
    with pytest.raises(InvalidCredentials) as refused:
        store.authenticate(email, password, ADDRESS)
    assert str(refused.value) == "wrong email or password"


def test_an_unknown_email_costs_one_password_verification_like_a_known_one(store, alice, hasher):
    hasher.verifications = 0
    with pytest.raises(InvalidCredentials):
        store.authenticate("alice@example.com", "wrong password!", ADDRESS)
    with pytest.raises(InvalidCredentials):
        store.authenticate("nobody@example.com", "wrong password!", ADDRESS)
    assert hasher.verifications == 2


def test_a_disabled_account_is_refused_only_after_the_right_password(store, alice):
    store.disable("alice@example.com")
    with pytest.raises(InvalidCredentials):
        store.authenticate("alice@example.com", "wrong password!", ADDRESS)
    with pytest.raises(AccountDisabled, match="alice@example.com is disabled"):
        store.authenticate("alice@example.com", PASSWORD, ADDRESS)


def fail(store: IdentityStore, times: int, email: str = "alice@example.com", address: str = ADDRESS) -> None:
    for _ in range(times):
        with pytest.raises(InvalidCredentials):
            store.authenticate(email, "wrong password!", address)


def test_five_failures_slow_that_address_down_on_the_account_even_for_the_right_password(store, alice, clock):
    fail(store, 5, address="198.51.100.1")
    with pytest.raises(TooManyAttempts) as refused:
        store.authenticate("alice@example.com", PASSWORD, "198.51.100.1")
    assert refused.value.retry_after == THROTTLE_BASE_DELAY
    assert "try again in 30 s" in str(refused.value)
    clock.advance(THROTTLE_BASE_DELAY - 1)
    with pytest.raises(TooManyAttempts) as refused:
        store.authenticate("alice@example.com", PASSWORD, "198.51.100.1")
    assert refused.value.retry_after == 1


def test_another_address_failing_does_not_stop_the_owner_with_the_right_password(store, alice):
    fail(store, 5, address="198.51.100.1")
    assert store.authenticate("alice@example.com", PASSWORD, "203.0.113.9") == alice


def test_a_thousand_guesses_from_a_thousand_addresses_do_not_stop_the_owner(store, alice, hasher):
    for index in range(1000):
        fail(store, 1, address=f"10.{index // 256}.{index % 256}.1")
    started = time.monotonic()
    assert store.authenticate("alice@example.com", PASSWORD, "203.0.113.9") == alice
    assert time.monotonic() - started < 1


def test_an_account_under_attack_gets_one_guess_per_address_per_window(store, alice, clock, hasher):
    fail(store, 5, address="198.51.100.1")
    fail(store, 1, address="198.51.100.2")
    hasher.verifications = 0
    # The second address has failed on the account while it is under attack: refused unverified, even for
    # the right password, until its failure leaves the window.
    with pytest.raises(TooManyAttempts) as refused:
        store.authenticate("alice@example.com", PASSWORD, "198.51.100.2")
    assert refused.value.retry_after == 2 * THROTTLE_BASE_DELAY  # the account's sixth failure
    assert hasher.verifications == 0
    clock.advance(2 * THROTTLE_BASE_DELAY)
    assert store.authenticate("alice@example.com", PASSWORD, "198.51.100.2") == alice


def test_the_guesses_of_one_address_are_counted_before_their_passwords_are_verified(store, alice):
    # Concurrent attempts run Argon2 outside the lock: each must already see the ones before it.
    attempts = [
        store._admit("alice@example.com", failure_keys("alice@example.com", ADDRESS), store._clock()) for _ in range(5)
    ]
    assert len(attempts) == 5
    with pytest.raises(TooManyAttempts):
        store.authenticate("alice@example.com", PASSWORD, ADDRESS)


@given(
    st.lists(st.floats(min_value=0, max_value=5000, allow_nan=False), max_size=20),
    st.lists(st.floats(min_value=0, max_value=5000, allow_nan=False), max_size=2000),
    st.floats(min_value=0, max_value=5000),
)
def test_failures_on_the_account_elsewhere_never_refuse_an_address_clean_on_it(address_failures, account, now):
    own = throttle_delay(address_failures, now, THROTTLE_FREE_FAILURES_PER_ADDRESS)
    assert sign_in_delay(address_failures, [], account, now) == own
    assert 0 <= sign_in_delay(address_failures, [now], account, now) <= THROTTLE_MAX_DELAY


def test_the_wait_doubles_with_each_further_failure(store, alice, clock):
    fail(store, 5)
    clock.advance(THROTTLE_BASE_DELAY)
    fail(store, 1)
    with pytest.raises(TooManyAttempts) as refused:
        store.authenticate("alice@example.com", PASSWORD, ADDRESS)
    assert refused.value.retry_after == 2 * THROTTLE_BASE_DELAY


def test_throttled_attempts_are_not_counted_and_a_success_clears_the_address_on_the_account(store, alice, clock):
    fail(store, 5)
    for _ in range(10):
        with pytest.raises(TooManyAttempts):
            store.authenticate("alice@example.com", "wrong password!", ADDRESS)
    clock.advance(THROTTLE_BASE_DELAY)
    assert store.authenticate("alice@example.com", PASSWORD, ADDRESS) == alice
    clock.advance(THROTTLE_WINDOW + 1)
    fail(store, 4)
    assert store.authenticate("alice@example.com", PASSWORD, ADDRESS) == alice
    fail(store, 4)
    assert store.authenticate("alice@example.com", PASSWORD, ADDRESS) == alice


def test_failures_from_one_address_slow_that_address_down_across_accounts(store, alice):
    for index in range(THROTTLE_FREE_FAILURES_PER_ADDRESS):
        fail(store, 1, email=f"guess{index}@example.com")
    with pytest.raises(TooManyAttempts):
        store.authenticate("alice@example.com", PASSWORD, ADDRESS)
    assert store.authenticate("alice@example.com", PASSWORD, "203.0.113.9") == alice


def test_unknown_accounts_are_throttled_like_known_ones(store):
    fail(store, 5, email="nobody@example.com", address="198.51.100.1")
    with pytest.raises(TooManyAttempts):
        store.authenticate("nobody@example.com", PASSWORD, "198.51.100.1")


def test_failures_are_forgotten_after_the_window(store, alice, clock, db_path):
    fail(store, 5)
    clock.advance(THROTTLE_WINDOW + 1)
    fail(store, 1, email="bob@example.com", address="203.0.113.9")
    assert store.authenticate("alice@example.com", PASSWORD, ADDRESS) == alice
    assert raw(db_path, "SELECT key FROM login_failures ORDER BY key") == [
        ("addr:203.0.113.9",),
        ("email-addr:bob@example.com 203.0.113.9",),
    ]


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("ipv4:203.0.113.9:51234", "203.0.113.9"),
        ("203.0.113.9:51234", "203.0.113.9"),
        ("ipv6:[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"),
        ("ipv6:%5B2001:db8:1:2::9%5D:443", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::9", "2001:db8:1:2::/64"),
        ("ipv6:[::ffff:203.0.113.9]:443", "203.0.113.9"),
        ("unix:/run/gateway.sock", "unix:/run/gateway.sock"),
        ("x" * 500, "x" * 128),
    ],
)
def test_addresses_are_throttled_by_ip_and_ipv6_by_its_slash_64(address, key):
    assert throttle_address(address) == key


def test_a_shared_address_allows_more_failures_than_one_account(store, alice):
    # People behind one address (an office, the dashboard server) mistyping their own passwords.
    for index in range(THROTTLE_FREE_FAILURES_PER_ADDRESS - 1):
        fail(store, 1, email=f"colleague{index}@example.com")
    assert store.authenticate("alice@example.com", PASSWORD, ADDRESS) == alice


def test_one_ipv6_network_is_throttled_as_one_address(store, alice):
    for host in range(THROTTLE_FREE_FAILURES_PER_ADDRESS):
        fail(store, 1, email=f"guess{host}@example.com", address=f"ipv6:[2001:db8::{host + 1}]:443")
    with pytest.raises(TooManyAttempts):
        store.authenticate("alice@example.com", PASSWORD, "2001:db8::ff")


def test_an_unusable_path_is_reported_as_such(tmp_path):
    with pytest.raises(IdentityStoreError, match="cannot open the identity store"):
        IdentityStore(tmp_path)


def test_an_outdated_hash_is_replaced_at_the_next_sign_in(open_store, db_path):
    old = open_store(password_hasher=CountingHasher(time_cost=1))
    alice = old.sign_up("alice@example.com", PASSWORD)
    [(before,)] = raw(db_path, "SELECT password_hash FROM users")
    stronger = open_store(password_hasher=CountingHasher(time_cost=2))
    assert stronger.authenticate("alice@example.com", PASSWORD, ADDRESS) == alice
    [(after,)] = raw(db_path, "SELECT password_hash FROM users")
    assert "t=1" in before and "t=2" in after
    assert stronger.authenticate("alice@example.com", PASSWORD, ADDRESS) == alice


def test_a_corrupt_stored_hash_refuses_the_sign_in(store, alice):
    store._db.execute("UPDATE users SET password_hash = 'not a hash'")
    with pytest.raises(InvalidCredentials):
        store.authenticate("alice@example.com", PASSWORD, ADDRESS)


def test_throttle_allows_four_failures_for_free():
    now = 1000.0
    assert throttle_delay([], now) == 0
    assert throttle_delay([now] * 4, now) == 0


def test_throttle_waits_from_the_latest_failure_doubling_up_to_the_cap():
    now = 10_000.0
    assert throttle_delay([now] * 5, now) == THROTTLE_BASE_DELAY
    assert throttle_delay([now] * 6, now) == 2 * THROTTLE_BASE_DELAY
    assert throttle_delay([now] * 7, now) == 4 * THROTTLE_BASE_DELAY
    assert throttle_delay([now] * 9, now) == 16 * THROTTLE_BASE_DELAY
    assert throttle_delay([now] * 10, now) == THROTTLE_MAX_DELAY == 900
    assert throttle_delay([now] * 10_000, now) == THROTTLE_MAX_DELAY
    assert throttle_delay([now - 100] * 4 + [now - 10], now) == THROTTLE_BASE_DELAY - 10
    assert throttle_delay([now - 100] * 5, now) == 0


def test_throttle_forgets_failures_older_than_the_window():
    now = 10_000.0
    assert throttle_delay([now - THROTTLE_WINDOW] * 20, now) == 0
    assert throttle_delay([now - THROTTLE_WINDOW] * 20 + [now] * 4, now) == 0


def test_throttle_counts_failures_from_a_clock_running_ahead():
    assert throttle_delay([1060.0] * 5, 1000.0) == THROTTLE_BASE_DELAY + 60


@given(
    st.lists(st.floats(min_value=0, max_value=5000, allow_nan=False), max_size=40),
    st.floats(min_value=0, max_value=5000),
)
def test_throttle_is_bounded_and_another_failure_never_shortens_it(failures, now):
    delay = throttle_delay(failures, now)
    assert 0 <= delay <= THROTTLE_MAX_DELAY
    assert throttle_delay([*failures, now], now) >= delay


# -- password changes, disabling, deletion


def test_change_password_needs_the_current_one_and_revokes_older_tokens(store, alice, clock):
    clock.now = 1_800_000_000.25
    with pytest.raises(InvalidCredentials, match="current password is wrong"):
        store.change_password(alice.id, "wrong password!", "a new password", ADDRESS)
    with pytest.raises(WeakPassword):
        store.change_password(alice.id, PASSWORD, "short", ADDRESS)
    assert store.tokens_valid_after(alice.id) == 0
    store.change_password(alice.id, PASSWORD, "a new password", ADDRESS)
    assert store.tokens_valid_after(alice.id) == 1_800_000_001
    with pytest.raises(InvalidCredentials):
        store.authenticate("alice@example.com", PASSWORD, ADDRESS)
    assert store.authenticate("alice@example.com", "a new password", ADDRESS) == alice


def test_a_token_issued_right_after_a_password_change_is_dated_to_stay_valid(store, alice, clock):
    clock.now = 1_800_000_000.25
    assert store.token_issue_time(alice.id) == 1_800_000_000.25
    store.change_password(alice.id, PASSWORD, "a new password", ADDRESS)
    issued = store.token_issue_time(alice.id)
    assert issued == 1_800_000_001 and int(issued) >= store.tokens_valid_after(alice.id)
    clock.now = 1_800_000_100.5
    assert store.token_issue_time(alice.id) == 1_800_000_100.5


def test_change_password_guesses_are_throttled(store, alice):
    for _ in range(5):
        with pytest.raises(InvalidCredentials):
            store.change_password(alice.id, "wrong password!", "a new password", ADDRESS)
    with pytest.raises(TooManyAttempts):
        store.change_password(alice.id, PASSWORD, "a new password", ADDRESS)
    store.change_password(alice.id, PASSWORD, "a new password", "203.0.113.9")


def test_change_password_refuses_unknown_and_disabled_accounts(store, alice):
    with pytest.raises(UnknownUser):
        store.change_password("no-such-user", PASSWORD, "a new password", ADDRESS)
    store.disable(alice.email)
    with pytest.raises(AccountDisabled):
        store.change_password(alice.id, PASSWORD, "a new password", ADDRESS)


def test_reset_password_replaces_it_revokes_tokens_and_lifts_the_throttle(store, alice, clock):
    fail(store, 5, address="198.51.100.1")
    assert store.reset_password("Alice@Example.com", "reset by the operator") == alice
    assert store.tokens_valid_after(alice.id) == math.ceil(clock.now)
    assert store.authenticate("alice@example.com", "reset by the operator", "198.51.100.1") == alice
    with pytest.raises(UnknownUser):
        store.reset_password("nobody@example.com", "reset by the operator")
    with pytest.raises(WeakPassword):
        store.reset_password("alice@example.com", "short")


def test_disable_refuses_devices_and_tokens_until_enabled(store, alice, clock):
    device = add_laptop(store, alice.id)
    disabled = store.disable("alice@example.com")
    assert disabled.disabled and store.get_user(alice.id).disabled
    assert store.tokens_valid_after(alice.id) == math.ceil(clock.now)
    assert not store.device_is_active(alice.id, device.id)
    assert not store.token_is_current(alice.id, "jti", int(clock.now) + 10)
    assert store.disable("alice@example.com").disabled
    assert not store.enable("alice@example.com").disabled
    assert store.device_is_active(alice.id, device.id)
    with pytest.raises(UnknownUser):
        store.disable("nobody@example.com")
    with pytest.raises(UnknownUser):
        store.enable("nobody@example.com")


def test_delete_user_removes_the_account_its_devices_and_codes_at_once(store, alice, db_path, clock):
    bob = store.sign_up("bob@example.com", PASSWORD)
    first = add_laptop(store, alice.id, "one")
    clock.advance(1)
    second = add_laptop(store, alice.id, "two")
    bobs = add_laptop(store, bob.id)
    store.revoke_device(alice.id, second.id)
    store.create_enrollment_code(alice.id)
    store.set_signup_mode("invite")
    store.sign_up("carol@example.com", PASSWORD, invite_code=store.create_invite())
    fail(store, 1)

    assert store.delete_user(alice.id) == [first.id, second.id]

    assert not store.device_is_active(alice.id, first.id)
    for table in ("devices", "enrollment_codes"):
        assert raw(db_path, f"SELECT count(*) FROM {table} WHERE user_id = ?", (alice.id,)) == [(0,)]
    assert raw(db_path, "SELECT count(*) FROM login_failures WHERE key LIKE 'email:alice%'") == [(0,)]
    with pytest.raises(UnknownUser):
        store.get_user(alice.id)
    with pytest.raises(UnknownUser):
        store.tokens_valid_after(alice.id)
    with pytest.raises(UnknownUser):
        store.delete_user(alice.id)
    assert store.device_is_active(bob.id, bobs.id)
    store.set_signup_mode("open")
    assert store.sign_up("alice@example.com", PASSWORD).id != alice.id


def test_users_can_be_looked_up_and_listed(store, alice, clock):
    clock.advance(1)
    root = store.create_user("root@example.com", PASSWORD, is_admin=True)
    assert store.get_user(root.id) == root
    assert store.user_by_email("ROOT@example.com") == root
    assert store.list_users() == [alice, root]
    with pytest.raises(UnknownUser, match="nobody@example.com"):
        store.user_by_email("nobody@example.com")
    with pytest.raises(UnknownUser):
        store.get_user(str(uuid.uuid4()))


# -- devices


def test_add_device_trims_the_name_and_records_the_certificate(store, alice, db_path, clock):
    device = add_laptop(store, alice.id, "  Work laptop  ", cert_serial=2**158 + 7)
    assert device.name == "Work laptop"
    assert uuid.UUID(device.id)
    assert (device.user_id, device.os, device.os_version, device.revoked) == (alice.id, "Linux", "6.1", False)
    assert device.created_at == clock.now
    assert store.list_devices(alice.id) == [device]
    assert raw(db_path, "SELECT cert_serial FROM devices") == [(format(2**158 + 7, "x"),)]
    assert store.device_is_active(alice.id, device.id)


def test_add_device_keeps_the_id_already_in_the_certificate(store, alice):
    device_id = str(uuid.uuid4())
    assert add_laptop(store, alice.id, device_id=device_id).id == device_id
    with pytest.raises(InvalidDeviceInfo, match="already exists"):
        add_laptop(store, alice.id, device_id=device_id)
    with pytest.raises(InvalidDeviceInfo, match="device id"):
        add_laptop(store, alice.id, device_id="../etc")


@pytest.mark.parametrize(
    ("name", "reason"),
    [("", "1 to 64 characters"), ("   ", "1 to 64 characters"), ("x" * 65, "not 65"), ("lap\ttop", "control")],
)
def test_device_names_must_be_one_to_64_printable_characters(store, alice, name, reason):
    with pytest.raises(InvalidDeviceInfo, match=reason):
        add_laptop(store, alice.id, name)
    with pytest.raises(InvalidDeviceInfo):
        clean_device_name(name)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("os", "x" * 65, "OS name"),
        ("os_version", "1\n2", "OS version"),
        ("cert_serial", 0, "serial"),
        ("cert_serial", "12", "serial"),
        ("cert_not_after", float("nan"), "expiry"),
    ],
)
def test_add_device_refuses_bad_device_or_certificate_details(store, alice, field, value, reason):
    with pytest.raises(InvalidDeviceInfo, match=reason):
        add_laptop(store, alice.id, **{field: value})
    assert store.list_devices(alice.id) == []


def test_devices_are_added_only_to_active_accounts(store, alice):
    with pytest.raises(UnknownUser):
        add_laptop(store, "no-such-user")
    store.disable(alice.email)
    with pytest.raises(AccountDisabled):
        add_laptop(store, alice.id)


def test_list_devices_shows_revoked_ones_oldest_first(store, alice, clock):
    first = add_laptop(store, alice.id, "first")
    clock.advance(1)
    second = add_laptop(store, alice.id, "second")
    store.revoke_device(alice.id, first.id)
    assert [(d.id, d.revoked) for d in store.list_devices(alice.id)] == [(first.id, True), (second.id, False)]
    with pytest.raises(UnknownUser):
        store.list_devices("no-such-user")


def test_rename_device_only_for_its_owner_and_while_active(store, alice):
    bob = store.sign_up("bob@example.com", PASSWORD)
    device = add_laptop(store, alice.id)
    assert store.rename_device(alice.id, device.id, " Desk ").name == "Desk"
    assert store.get_device(alice.id, device.id).name == "Desk"
    with pytest.raises(UnknownDevice):
        store.rename_device(bob.id, device.id, "mine now")
    with pytest.raises(InvalidDeviceInfo):
        store.rename_device(alice.id, device.id, "")
    store.revoke_device(alice.id, device.id)
    with pytest.raises(DeviceRevoked):
        store.rename_device(alice.id, device.id, "again")


def test_a_revoked_device_is_refused_at_once_and_revoking_twice_is_harmless(store, alice):
    bob = store.sign_up("bob@example.com", PASSWORD)
    device = add_laptop(store, alice.id)
    with pytest.raises(UnknownDevice):
        store.revoke_device(bob.id, device.id)
    assert store.device_is_active(alice.id, device.id)
    assert store.revoke_device(alice.id, device.id).revoked
    assert not store.device_is_active(alice.id, device.id)
    assert store.revoke_device(alice.id, device.id).revoked
    with pytest.raises(UnknownDevice):
        store.revoke_device(alice.id, "no-such-device")


def test_device_is_active_needs_the_right_user(store, alice):
    bob = store.sign_up("bob@example.com", PASSWORD)
    device = add_laptop(store, alice.id)
    assert not store.device_is_active(bob.id, device.id)
    assert not store.device_is_active(alice.id, "no-such-device")
    with pytest.raises(UnknownDevice):
        store.get_device(bob.id, device.id)


def test_device_is_active_takes_well_under_100_microseconds(store, alice):
    for index in range(200):
        add_laptop(store, alice.id, f"device {index}")
    device = add_laptop(store, alice.id)
    calls = 5000
    started = time.perf_counter()
    for _ in range(calls):
        store.device_is_active(alice.id, device.id)
    assert (time.perf_counter() - started) / calls < 100e-6


def test_renewal_records_the_new_certificate_of_an_active_device(store, alice):
    device = add_laptop(store, alice.id)
    enrolled = store.current_cert_serial(alice.id, device.id)
    renewed = store.record_renewal(device.id, enrolled, 42, 1_950_000_000.0)
    assert renewed.cert_not_after == 1_950_000_000.0
    assert store.get_device(alice.id, device.id) == renewed
    assert store.current_cert_serial(alice.id, device.id) == 42
    with pytest.raises(UnknownDevice):
        store.record_renewal("no-such-device", 42, 43, 1_950_000_000.0)
    store.disable(alice.email)
    with pytest.raises(AccountDisabled):
        store.record_renewal(device.id, 42, 43, 1_950_000_000.0)
    store.enable(alice.email)
    store.revoke_device(alice.id, device.id)
    with pytest.raises(DeviceRevoked):
        store.record_renewal(device.id, 42, 43, 1_950_000_000.0)


def test_a_replaced_certificate_cannot_renew_again(store, alice):
    device = add_laptop(store, alice.id)
    enrolled = store.current_cert_serial(alice.id, device.id)
    store.record_renewal(device.id, enrolled, 42, 1_950_000_000.0)
    with pytest.raises(CertificateReplaced, match="replaced by a renewal"):
        store.record_renewal(device.id, enrolled, 43, 1_950_000_000.0)
    assert store.current_cert_serial(alice.id, device.id) == 42


def test_update_device_info_records_a_new_os_version(store, alice):
    device = add_laptop(store, alice.id)
    updated = store.update_device_info(device.id, "Linux", "6.12")
    assert store.get_device(alice.id, device.id) == updated
    assert updated.os_version == "6.12"
    with pytest.raises(InvalidDeviceInfo):
        store.update_device_info(device.id, "Linux", "x" * 65)
    with pytest.raises(UnknownDevice):
        store.update_device_info("no-such-device", "Linux", "6.12")
    store.revoke_device(alice.id, device.id)
    with pytest.raises(DeviceRevoked):
        store.update_device_info(device.id, "Linux", "6.13")


# -- enrollment codes


def test_enrollment_codes_are_typable_and_only_their_hash_is_stored(store, alice, db_path):
    code = store.create_enrollment_code(alice.id)
    assert re.fullmatch(rf"[{CODE_ALPHABET}]{{4}}(-[{CODE_ALPHABET}]{{4}}){{3}}", code)
    [(stored, expires_at, created_at)] = raw(db_path, "SELECT code_hash, expires_at, created_at FROM enrollment_codes")
    assert stored == hashlib.sha256(code.replace("-", "").encode()).hexdigest()
    assert expires_at - created_at == 900
    assert code.replace("-", "").encode() not in stored_bytes(db_path)
    assert store.create_enrollment_code(alice.id) != code


def test_an_enrollment_code_works_once(store, alice):
    code = store.create_enrollment_code(alice.id)
    assert store.redeem_enrollment_code(f" {code.lower().replace('-', ' ')} ") == alice
    with pytest.raises(InvalidEnrollmentCode, match="already been used"):
        store.redeem_enrollment_code(code)


def test_an_enrollment_code_expires(store, alice, clock):
    code = store.create_enrollment_code(alice.id, ttl_s=60)
    clock.advance(60)
    with pytest.raises(InvalidEnrollmentCode, match="expired"):
        store.redeem_enrollment_code(code)


@pytest.mark.parametrize("code", ["", "ABCD-EFGH", "ABCD-EFGH-JKMN-PQR0", "x" * 100])
def test_malformed_enrollment_codes_are_refused(store, code):
    with pytest.raises(InvalidEnrollmentCode, match="not an enrollment code"):
        store.redeem_enrollment_code(code)


def test_an_unknown_enrollment_code_is_refused(store):
    with pytest.raises(InvalidEnrollmentCode, match="not valid"):
        store.redeem_enrollment_code("ABCD-EFGH-JKMN-PQRS")


def test_a_disabled_account_cannot_make_or_use_enrollment_codes(store, alice):
    code = store.create_enrollment_code(alice.id)
    store.disable(alice.email)
    with pytest.raises(AccountDisabled):
        store.create_enrollment_code(alice.id)
    with pytest.raises(AccountDisabled):
        store.redeem_enrollment_code(code)
    store.enable(alice.email)
    assert store.redeem_enrollment_code(code) == alice


def test_enrollment_codes_are_made_only_for_known_accounts_with_a_sane_lifetime(store, alice):
    with pytest.raises(UnknownUser):
        store.create_enrollment_code("no-such-user")
    for ttl in (0, 59, 86401):
        with pytest.raises(ValueError, match="lifetime"):
            store.create_enrollment_code(alice.id, ttl_s=ttl)


def test_concurrent_redemptions_of_one_code_let_exactly_one_through(open_store, alice, store):
    code = store.create_enrollment_code(alice.id)
    stores = [store, open_store()]
    outcomes: list[str] = []

    def redeem(index: int) -> None:
        try:
            stores[index % 2].redeem_enrollment_code(code)
            outcomes.append("redeemed")
        except InvalidEnrollmentCode:
            outcomes.append("refused")

    threads = [threading.Thread(target=redeem, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["redeemed"] + ["refused"] * 7


# -- tokens


def test_revoked_tokens_stay_revoked_until_they_expire(store, clock, db_path):
    assert not store.token_is_revoked("jti-1")
    store.revoke_token("jti-1", clock.now + 60)
    store.revoke_token("jti-1", clock.now + 30)
    assert store.token_is_revoked("jti-1")
    clock.advance(61)
    store.revoke_token("jti-2", clock.now + 60)
    assert not store.token_is_revoked("jti-1")
    assert raw(db_path, "SELECT jti FROM revoked_tokens") == [("jti-2",)]


def test_token_is_current_combines_every_check(store, alice, clock):
    issued = int(clock.now)
    assert store.tokens_valid_after(alice.id) == 0
    assert store.token_is_current(alice.id, "jti-1", issued)
    store.revoke_token("jti-1", clock.now + 60)
    assert not store.token_is_current(alice.id, "jti-1", issued)
    clock.advance(0.5)
    store.change_password(alice.id, PASSWORD, "a new password", ADDRESS)
    assert not store.token_is_current(alice.id, "jti-2", issued)
    assert store.token_is_current(alice.id, "jti-3", store.tokens_valid_after(alice.id))
    assert not store.token_is_current("no-such-user", "jti-4", issued)


# -- concurrency


def run_threads(count: int, target: Callable[[int], None]) -> None:
    threads = [threading.Thread(target=target, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_concurrent_sign_ups_of_different_emails_through_two_stores_all_succeed(open_store):
    stores = [open_store(), open_store()]
    created, errors = [], []

    def sign_up(index: int) -> None:
        try:
            created.append(stores[index % 2].sign_up(f"user{index}@example.com", PASSWORD))
        except Exception as exc:
            errors.append(exc)

    run_threads(16, sign_up)
    assert errors == []
    assert sorted(user.email for user in stores[0].list_users()) == sorted(user.email for user in created)
    assert len(created) == 16


def test_concurrent_sign_ups_of_one_email_let_exactly_one_win(open_store):
    stores = [open_store(), open_store()]
    outcomes: list[object] = []

    def sign_up(index: int) -> None:
        try:
            outcomes.append(
                stores[index % 2].sign_up("Same@Example.com" if index % 3 else "same@example.com", PASSWORD)
            )
        except EmailTaken:
            outcomes.append("taken")

    run_threads(8, sign_up)
    winners = [outcome for outcome in outcomes if outcome != "taken"]
    assert len(winners) == 1 and outcomes.count("taken") == 7
    assert stores[1].list_users() == winners


class RendezvousHasher(CountingHasher):
    """Makes two sign-ups hash at the same moment, so both pass the early duplicate check."""

    def __init__(self) -> None:
        super().__init__()
        self.barrier: threading.Barrier | None = None

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        if self.barrier is not None:
            self.barrier.wait()
        return super().hash(password, salt=salt)


def test_two_sign_ups_racing_past_the_early_check_still_make_one_account(open_store):
    hasher = RendezvousHasher()
    stores = [open_store(password_hasher=hasher), open_store(password_hasher=hasher)]
    hasher.barrier = threading.Barrier(2, timeout=10)
    outcomes: list[object] = []

    def sign_up(index: int) -> None:
        try:
            outcomes.append(stores[index].sign_up("same@example.com", PASSWORD))
        except EmailTaken as exc:
            outcomes.append(exc)

    run_threads(2, sign_up)
    assert sum(isinstance(outcome, EmailTaken) for outcome in outcomes) == 1
    assert len(stores[0].list_users()) == 1


@pytest.mark.parametrize(
    ("peer", "trusted", "counted_as"),
    [
        ("ipv4:127.0.0.1:50000", ("127.0.0.1/32",), "198.51.100.7"),  # the dashboard names its client
        ("ipv6:[::1]:50000", ("::1/128",), "198.51.100.7"),
        ("ipv4:10.0.0.5:50000", ("127.0.0.1/32",), "ipv4:10.0.0.5:50000"),  # not trusted: its own address
        ("ipv4:127.0.0.1:50000", (), "ipv4:127.0.0.1:50000"),  # nobody trusted
    ],
)
def test_only_a_trusted_proxy_names_the_client_a_sign_in_is_counted_for(peer, trusted, counted_as):
    networks = tuple(ipaddress.ip_network(t) for t in trusted)
    assert client_address(peer, {CLIENT_ADDRESS_HEADER: "198.51.100.7"}, networks) == counted_as
    assert client_address(peer, {}, networks) == peer  # no header: the peer itself


def test_a_deleted_account_leaves_no_trace_in_the_file_its_log_or_its_free_pages(store, db_path, clock):
    marker = "zq-marker-erin@example.com"
    erin = store.sign_up(marker, PASSWORD)
    add_laptop(store, erin.id, "erins-secret-laptop")
    store.create_enrollment_code(erin.id)
    fail(store, 1, email=marker)
    hash_of_erin = raw(db_path, "SELECT password_hash FROM users WHERE id = ?", (erin.id,))[0][0]
    store.sign_up("frank@example.com", PASSWORD)  # a neighbour whose rows share the pages
    assert marker.encode() in stored_bytes(db_path)

    store.delete_user(erin.id)

    on_disk = stored_bytes(db_path)  # the file, its write-ahead log and shared memory, as a copy would have them
    for trace in (marker, erin.id, "erins-secret-laptop", hash_of_erin):
        assert (trace.encode() if isinstance(trace, str) else trace) not in on_disk, trace
    assert store.user_by_email("frank@example.com")  # the neighbour is intact
