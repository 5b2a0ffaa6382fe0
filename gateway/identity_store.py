"""The identity store: accounts, devices, revoked tokens, one-time codes and sign-up policy, in one SQLite file.

Passwords are Argon2id hashes (argon2-cffi); one-time codes come from `secrets` and only their SHA-256 is kept.
This module is the SQL. What a request must meet before it is stored is gateway/account_rules.py's, how long a
sign-in must wait gateway/throttling.py's, and how codes are made and when one may be used
gateway/one_time_codes.py's; the file is opened, migrated and written as plumbing/sqlite.py keeps SQLite files.
"""

from __future__ import annotations

import logging
import re
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.account_rules import (
    MAX_DEVICE_INFO_LENGTH,
    MAX_DEVICE_NAME_LENGTH,
    MAX_EMAIL_LENGTH,
    MAX_PASSWORD_LENGTH,
    MAX_SHARE_LINK_TTL,
    MIN_PASSWORD_LENGTH,
    SIGNUP_MODES,
    AccountDisabled,
    AccountError,
    CertificateReplaced,
    Device,
    DeviceRevoked,
    EmailTaken,
    InvalidCredentials,
    InvalidDeviceInfo,
    InvalidEmail,
    InvalidEnrollmentCode,
    InvalidInviteCode,
    InvalidShareLink,
    ShareLink,
    SignupClosed,
    SignupMode,
    UnknownDevice,
    UnknownUser,
    User,
    WeakPassword,
    cert_serial_text,
    check_cert_not_after,
    check_enrollment_code,
    check_invite,
    check_password_policy,
    check_share_link,
    check_share_link_open,
    check_signup_mode,
    clean_device_name,
    clean_os_info,
    normalize_email,
    revocation_line,
    signup_needs_invite,
)
from gateway.one_time_codes import (
    CODE_ALPHABET,
    CODE_GROUP_LENGTH,
    CODE_GROUPS,
    ENROLLMENT_CODE_TTL,
    INVITE_TTL,
    MAX_ENROLLMENT_CODE_TTL,
    MAX_INVITE_TTL,
    check_ttl,
    code_state,
    hash_code,
    new_one_time_code,
    purge_before,
)
from gateway.pki import PkiError, check_id, new_device_id
from gateway.throttling import (
    MAX_ADDRESS_LENGTH,
    THROTTLE_BASE_DELAY,
    THROTTLE_FREE_FAILURES,
    THROTTLE_FREE_FAILURES_PER_ADDRESS,
    THROTTLE_MAX_DELAY,
    THROTTLE_WINDOW,
    TooManyAttempts,
    account_key_range,
    address_ip,
    failure_keys,
    legacy_account_key,
    sign_in_delay,
    throttle_address,
    throttle_delay,
    window_start,
)
from plumbing.sqlite import BUSY_TIMEOUT_MS, Migration, connect, migrate, snapshot, transaction

# What callers import from here: the store, and (from the rule modules) the records, refusals and rules it applies.
__all__ = [
    "BUSY_TIMEOUT_MS",
    "CODE_ALPHABET",
    "CODE_GROUPS",
    "CODE_GROUP_LENGTH",
    "ENROLLMENT_CODE_TTL",
    "IDENTITY_DB_FILE",
    "INVITE_TTL",
    "MAX_ADDRESS_LENGTH",
    "MAX_DEVICE_INFO_LENGTH",
    "MAX_DEVICE_NAME_LENGTH",
    "MAX_EMAIL_LENGTH",
    "MAX_ENROLLMENT_CODE_TTL",
    "MAX_INVITE_TTL",
    "MAX_PASSWORD_LENGTH",
    "MAX_SHARE_LINK_TTL",
    "MIGRATIONS_DIR",
    "MIN_PASSWORD_LENGTH",
    "SIGNUP_MODES",
    "THROTTLE_BASE_DELAY",
    "THROTTLE_FREE_FAILURES",
    "THROTTLE_FREE_FAILURES_PER_ADDRESS",
    "THROTTLE_MAX_DELAY",
    "THROTTLE_WINDOW",
    "AccountDisabled",
    "AccountError",
    "CertificateReplaced",
    "Device",
    "DeviceRevoked",
    "EmailTaken",
    "IdentityStore",
    "IdentityStoreError",
    "InvalidCredentials",
    "InvalidDeviceInfo",
    "InvalidEmail",
    "InvalidEnrollmentCode",
    "InvalidInviteCode",
    "InvalidShareLink",
    "ShareLink",
    "SignupClosed",
    "SignupMode",
    "TooManyAttempts",
    "UnknownDevice",
    "UnknownUser",
    "User",
    "WeakPassword",
    "account_key_range",
    "address_ip",
    "check_password_policy",
    "clean_device_name",
    "failure_keys",
    "load_migrations",
    "new_one_time_code",
    "normalize_email",
    "sign_in_delay",
    "throttle_address",
    "throttle_delay",
]

log = logging.getLogger(__name__)

IDENTITY_DB_FILE = "identity.sqlite3"
MIGRATIONS_DIR = Path(__file__).with_name("identity_migrations")
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class IdentityStoreError(Exception):
    """The identity database itself cannot be used (unreadable, newer schema, broken migration)."""


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """(version, name, statements) of each NNNN_name.sql in `directory`, in version order, numbered 1, 2, ..."""
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise IdentityStoreError(f"identity migration file {path.name!r} is not named NNNN_name.sql")
        migrations.append(Migration(int(match[1]), match[2], _split_statements(path.read_text(encoding="utf-8"))))
    versions = [version for version, _, _ in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise IdentityStoreError(f"identity migrations in {directory} are not numbered 1, 2, 3...: {versions}")
    return migrations


def _split_statements(sql: str) -> list[str]:
    statements, pending = [], ""
    for line in sql.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise IdentityStoreError(f"identity migration ends in an unterminated statement: {pending.strip()[:60]!r}")
    return statements


_USER_COLUMNS = "id, email, created_at, disabled_at, is_admin"
_SHARE_COLUMNS = "id, user_id, view, period_start, period_end, tz, created_at, expires_at, revoked_at"


def _share_link(row: sqlite3.Row | tuple) -> ShareLink:
    return ShareLink(*row[:8], revoked=row[8] is not None)


_DEVICE_COLUMNS = "id, user_id, name, os, os_version, created_at, revoked_at, cert_not_after"


def _user(row: sqlite3.Row | tuple) -> User:
    return User(id=row[0], email=row[1], created_at=row[2], disabled=row[3] is not None, is_admin=bool(row[4]))


def _device(row: sqlite3.Row | tuple) -> Device:
    return Device(
        id=row[0],
        user_id=row[1],
        name=row[2],
        os=row[3],
        os_version=row[4],
        created_at=row[5],
        revoked=row[6] is not None,
        cert_not_after=row[7],
    )


class IdentityStore:
    """Accounts and devices in one SQLite file (WAL, foreign keys on, every change a transaction).

    Threads: one connection per store, used under a lock, so one store may be shared by all threads of a
    process; several stores or processes on the same file are serialised by SQLite (writes take the lock
    at BEGIN IMMEDIATE and wait up to BUSY_TIMEOUT_MS for it). Argon2 runs outside the lock and releases the
    GIL: in grpc.aio, call sign_up, authenticate, change_password, reset_password and create_user through
    `asyncio.to_thread`; the other methods are short queries (current_cert_serial is a few microseconds).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        clock: Callable[[], float] = time.time,
        password_hasher: PasswordHasher | None = None,
        migrations_dir: Path = MIGRATIONS_DIR,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        # argon2-cffi's defaults are RFC 9106's low-memory profile: Argon2id, t=3, 64 MiB, p=4.
        self._hasher = password_hasher or PasswordHasher()
        # Made now, not at the first unknown email, so that first one is not slower than the rest.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(32))
        self._lock = threading.Lock()
        self._db = self._connect()
        try:
            self._migrate(load_migrations(migrations_dir))
        except BaseException:
            self._db.close()
            raise

    # -- connection and schema

    def _connect(self) -> sqlite3.Connection:
        # The file holds password hashes: created owner-only. synchronous stays FULL (the default): a revocation
        # must survive a power cut; writes are rare. Several stores or processes may open one new file at once,
        # so the switch to WAL waits for the others (plumbing/sqlite.py use_wal).
        return connect(
            self.path,
            what="identity store",
            error=IdentityStoreError,
            log=log,
            pragmas=(
                "PRAGMA foreign_keys = ON",
                # What is deleted is overwritten with zeros, in the file and in its free pages: a deleted account
                # must leave no trace (docs/design.md "Delete means gone"; delete_user then also empties the
                # write-ahead log, which holds older page images).
                "PRAGMA secure_delete = ON",
            ),
            wait_for_wal=True,
        )

    def _migrate(self, migrations: list[Migration]) -> None:
        with self._lock:
            migrate(
                self._db,
                migrations,
                what="identity store",
                path=self.path,
                error=IdentityStoreError,
                log=log,
                failed=lambda migration, exc: IdentityStoreError(
                    f"identity migration {migration.version:04d}_{migration.name} failed: {exc}"
                ),
            )

    def schema_version(self) -> int:
        with self._lock:
            return self._db.execute("PRAGMA user_version").fetchone()[0]

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock, transaction(self._db) as db:
            yield db

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: several SELECTs see one snapshot."""
        with self._lock, snapshot(self._db) as db:
            yield db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> IdentityStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- passwords

    def _verify(self, password_hash: str | None, password: str) -> tuple[bool, bool]:
        """(matches, needs rehash). An unknown account is checked against a dummy hash, so it takes as long."""
        if password_hash is None:
            password_hash = self._dummy_hash
        try:
            self._hasher.verify(password_hash, password)
        except InvalidHashError:
            log.warning("a stored password hash is not a valid Argon2 hash; the sign-in is refused")
            return False, False
        except VerificationError:
            return False, False
        return password_hash is not self._dummy_hash, self._hasher.check_needs_rehash(password_hash)

    # -- accounts

    def create_user(self, email: str, password: str, *, is_admin: bool = False) -> User:
        """An account made by the operator: sign-up mode does not apply."""
        return self._create_user(email, password, is_admin=is_admin, invite_code=None, by_operator=True)

    def sign_up(self, email: str, password: str, invite_code: str | None = None) -> User:
        """Self-service sign-up, as the instance's sign-up mode allows."""
        return self._create_user(email, password, is_admin=False, invite_code=invite_code, by_operator=False)

    def _create_user(
        self, email: str, password: str, *, is_admin: bool, invite_code: str | None, by_operator: bool
    ) -> User:
        email = normalize_email(email)
        check_password_policy(password, email)
        invite_hash = None
        # Refusals are checked before hashing too, so refused requests cost no Argon2 work.
        with self._read() as db:
            if not by_operator:
                invite_hash = self._check_signup_allowed(db, invite_code)
            if db.execute("SELECT 1 FROM users WHERE email = ?", (email,)).fetchone():
                raise EmailTaken(f"an account with the email {email} already exists")
        password_hash = self._hasher.hash(password)
        now = self._clock()
        user = User(id=str(uuid.uuid4()), email=email, created_at=now, disabled=False, is_admin=is_admin)
        with self._write() as db:
            # Checked again inside the transaction: the mode or the invite may have changed meanwhile.
            if not by_operator:
                invite_hash = self._check_signup_allowed(db, invite_code)
            try:
                db.execute(
                    "INSERT INTO users (id, email, password_hash, created_at, is_admin) VALUES (?, ?, ?, ?, ?)",
                    (user.id, email, password_hash, now, int(is_admin)),
                )
            except sqlite3.IntegrityError:
                raise EmailTaken(f"an account with the email {email} already exists") from None
            if invite_hash is not None:
                db.execute(
                    "UPDATE invites SET used_at = ?, used_by = ? WHERE code_hash = ?", (now, user.id, invite_hash)
                )
        return user

    def _check_signup_allowed(self, db: sqlite3.Connection, invite_code: str | None) -> str | None:
        """The hash of the invite to consume (None in open mode), or the refusal."""
        mode = db.execute("SELECT signup_mode FROM instance").fetchone()[0]
        if not signup_needs_invite(mode, invite_code):
            return None
        invite_hash = hash_code(invite_code)
        row = (
            db.execute("SELECT expires_at, used_at FROM invites WHERE code_hash = ?", (invite_hash,)).fetchone()
            if invite_hash
            else None
        )
        check_invite(None if row is None else code_state(row[0], row[1], self._clock()))
        return invite_hash

    def authenticate(self, email: str, password: str, address: str) -> User:
        """The account whose email and password these are; `address` is the client's (see throttle_address).

        Throttled as sign_in_delay says: a throttled attempt is refused with TooManyAttempts before the
        password is looked at, and is not itself counted. Unknown and known emails take the same time and are
        counted the same way, so neither reveals that an account exists.
        """
        now = self._clock()
        try:
            normalized: str | None = normalize_email(email)
        except InvalidEmail:
            normalized = None
        keys = failure_keys(normalized, address)
        attempt = self._admit(normalized, keys, now)
        row = None
        if normalized:
            with self._lock:
                row = self._db.execute(
                    f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE email = ?", (normalized,)
                ).fetchone()
        matches, needs_rehash = self._verify(row[5] if row else None, password if isinstance(password, str) else "")
        if not matches or row is None:
            raise InvalidCredentials("wrong email or password")
        self._forgive(attempt, keys[1])
        user = _user(row)
        if user.disabled:
            raise AccountDisabled(f"the account {user.email} is disabled; ask the operator of this instance")
        if needs_rehash:
            new_hash = self._hasher.hash(password)
            with self._write() as db:
                # Compare-and-set: a password changed meanwhile is not overwritten with the old one.
                db.execute(
                    "UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?", (new_hash, user.id, row[5])
                )
        return user

    def _admit(self, email: str | None, keys: tuple[str, str | None], now: float) -> list[int]:
        """Refuse a throttled attempt, else count it as a failure at once and return its rows.

        Counted before the password is verified, in the same transaction as the check: concurrent attempts
        from one address (Argon2 runs outside the lock) see each other instead of all passing one check.
        The caller forgives the rows when the password turns out right.
        """
        since = window_start(now)
        address_key, pair_key = keys
        with self._write() as db:
            address_failures = _times(db, _FAILURES_OF_KEY, (address_key, since))
            pair_failures = _times(db, _FAILURES_OF_KEY, (pair_key, since)) if pair_key else []
            account_failures = _times(db, _FAILURES_IN_RANGE, (*account_key_range(email), since)) if email else []
            delay = sign_in_delay(address_failures, pair_failures, account_failures, now)
            if delay > 0:
                raise TooManyAttempts(delay)
            db.execute("DELETE FROM login_failures WHERE at <= ?", (since,))
            insert = "INSERT INTO login_failures (key, at) VALUES (?, ?)"
            return [db.execute(insert, (key, now)).lastrowid for key in keys if key]

    def _forgive(self, attempt: list[int], pair_key: str | None) -> None:
        """A right password: the attempt was no failure, and its address's earlier mistypes on the account are
        forgotten. The account's failures from elsewhere stay: one sign-in of the owner must not hand every
        guessing address a fresh allowance."""
        with self._write() as db:
            db.executemany("DELETE FROM login_failures WHERE rowid = ?", [(rowid,) for rowid in attempt])
            db.execute("DELETE FROM login_failures WHERE key = ?", (pair_key,))

    def change_password(self, user_id: str, old_password: str, new_password: str, address: str) -> None:
        """Replace the password after checking the current one; every token issued before now is revoked.

        A wrong current password counts as a failed sign-in of the account from `address` (and is throttled
        like one).
        """
        now = self._clock()
        with self._lock:
            row = self._db.execute(
                "SELECT email, password_hash, disabled_at FROM users WHERE id = ?", (user_id,)
            ).fetchone()
        if row is None:
            raise UnknownUser(f"no account has the id {user_id!r}")
        email, old_hash, disabled_at = row
        if disabled_at is not None:
            raise AccountDisabled(f"the account {email} is disabled; ask the operator of this instance")
        check_password_policy(new_password, email)
        keys = failure_keys(email, address)
        attempt = self._admit(email, keys, now)
        if not self._verify(old_hash, old_password if isinstance(old_password, str) else "")[0]:
            raise InvalidCredentials("the current password is wrong")
        self._forgive(attempt, keys[1])
        self._set_password(user_id, self._hasher.hash(new_password), now)

    def reset_password(self, email: str, new_password: str) -> User:
        """The operator sets a new password; every token issued before now is revoked, failures forgotten."""
        user = self.user_by_email(email)
        check_password_policy(new_password, user.email)
        self._set_password(user.id, self._hasher.hash(new_password), self._clock())
        return user

    def _set_password(self, user_id: str, password_hash: str, now: float) -> None:
        with self._write() as db:
            updated = db.execute(
                "UPDATE users SET password_hash = ?, tokens_valid_after = max(tokens_valid_after, ?) "
                "WHERE id = ? RETURNING email",
                (password_hash, revocation_line(now), user_id),
            ).fetchone()
            if updated is None:
                raise UnknownUser(f"no account has the id {user_id!r}")
            _forget_failures(db, updated[0])

    def disable(self, email: str) -> User:
        """Refuse the account's sign-ins, tokens and devices until it is enabled again (tokens stay revoked)."""
        email = normalize_email(email)
        now = self._clock()
        with self._write() as db:
            row = db.execute(
                "UPDATE users SET disabled_at = coalesce(disabled_at, ?), "
                f"tokens_valid_after = max(tokens_valid_after, ?) WHERE email = ? RETURNING {_USER_COLUMNS}",
                (now, revocation_line(now), email),
            ).fetchone()
        if row is None:
            raise UnknownUser(f"no account has the email {email}")
        return _user(row)

    def enable(self, email: str) -> User:
        email = normalize_email(email)
        with self._write() as db:
            row = db.execute(
                f"UPDATE users SET disabled_at = NULL WHERE email = ? RETURNING {_USER_COLUMNS}", (email,)
            ).fetchone()
        if row is None:
            raise UnknownUser(f"no account has the email {email}")
        return _user(row)

    def delete_user(self, user_id: str) -> list[str]:
        """Remove the account, its devices and codes in one transaction; the ids of all its devices, now refused.

        Deleting the user's data in the warehouse is the caller's next step.
        """
        with self._write() as db:
            row = db.execute("SELECT email FROM users WHERE id = ?", (user_id,)).fetchone()
            if row is None:
                raise UnknownUser(f"no account has the id {user_id!r}")
            device_ids = [
                device_id
                for (device_id,) in db.execute(
                    "SELECT id FROM devices WHERE user_id = ? ORDER BY created_at, id", (user_id,)
                )
            ]
            # Devices and enrollment codes go with the user (ON DELETE CASCADE); the email's failure
            # records are the account's personal data too.
            db.execute("DELETE FROM users WHERE id = ?", (user_id,))
            _forget_failures(db, row[0])
        self._forget_old_page_images()
        return device_ids

    def _forget_old_page_images(self) -> None:
        """Copy the write-ahead log into the file and empty it: its frames hold pages as they were before a
        deletion. Another connection reading at that moment (an admin command) can hold the log: then it is
        tried again, and a failure is said, not hidden."""
        for _ in range(50):
            with self._lock:
                busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return
            time.sleep(0.1)
        log.warning("identity store %s: the write-ahead log could not be emptied after a deletion (busy)", self.path)

    def get_user(self, user_id: str) -> User:
        with self._lock:
            row = self._db.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,)).fetchone()
        if row is None:
            raise UnknownUser(f"no account has the id {user_id!r}")
        return _user(row)

    def user_by_email(self, email: str) -> User:
        email = normalize_email(email)
        with self._lock:
            row = self._db.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE email = ?", (email,)).fetchone()
        if row is None:
            raise UnknownUser(f"no account has the email {email}")
        return _user(row)

    def list_users(self) -> list[User]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_USER_COLUMNS} FROM users ORDER BY created_at, email").fetchall()
        return [_user(row) for row in rows]

    # -- devices

    def add_device(
        self,
        user_id: str,
        name: str,
        os: str,
        os_version: str,
        cert_serial: int,
        cert_not_after: float,
        *,
        device_id: str | None = None,
    ) -> Device:
        """Record an enrolled device of an active account.

        `device_id` defaults to a new one; the gateway passes the id it already put in the certificate.
        """
        name = clean_device_name(name)
        os, os_version = clean_os_info(os, os_version)
        serial, not_after = cert_serial_text(cert_serial), check_cert_not_after(cert_not_after)
        if device_id is None:
            device_id = new_device_id()
        else:
            try:
                check_id("device id", device_id)
            except PkiError as exc:
                raise InvalidDeviceInfo(str(exc)) from None
        now = self._clock()
        with self._write() as db:
            self._require_active_user(db, user_id)
            try:
                db.execute(
                    "INSERT INTO devices (id, user_id, name, os, os_version, created_at, cert_serial, cert_not_after) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (device_id, user_id, name, os, os_version, now, serial, not_after),
                )
            except sqlite3.IntegrityError:
                raise InvalidDeviceInfo(f"a device with the id {device_id} already exists") from None
        return Device(device_id, user_id, name, os, os_version, now, False, not_after)

    def _require_active_user(self, db: sqlite3.Connection, user_id: str) -> None:
        row = db.execute("SELECT email, disabled_at FROM users WHERE id = ?", (user_id,)).fetchone()
        if row is None:
            raise UnknownUser(f"no account has the id {user_id!r}")
        if row[1] is not None:
            raise AccountDisabled(f"the account {row[0]} is disabled; ask the operator of this instance")

    def list_devices(self, user_id: str) -> list[Device]:
        """All the account's devices, revoked ones included, oldest first."""
        with self._read() as db:
            if db.execute("SELECT 1 FROM users WHERE id = ?", (user_id,)).fetchone() is None:
                raise UnknownUser(f"no account has the id {user_id!r}")
            rows = db.execute(
                f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE user_id = ? ORDER BY created_at, id", (user_id,)
            ).fetchall()
        return [_device(row) for row in rows]

    def get_device(self, user_id: str, device_id: str) -> Device:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE id = ? AND user_id = ?", (device_id, user_id)
            ).fetchone()
        if row is None:
            raise UnknownDevice(f"the account has no device {device_id!r}")
        return _device(row)

    def _require_device(self, db: sqlite3.Connection, device_id: str, user_id: str | None = None) -> Device:
        """The device (of `user_id`, when given); a device of another account is reported as unknown."""
        row = db.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE id = ?", (device_id,)).fetchone()
        if row is None or (user_id is not None and row[1] != user_id):
            raise UnknownDevice(f"the account has no device {device_id!r}")
        return _device(row)

    def rename_device(self, user_id: str, device_id: str, name: str) -> Device:
        name = clean_device_name(name)
        with self._write() as db:
            device = self._require_device(db, device_id, user_id)
            if device.revoked:
                raise DeviceRevoked(f"the device {device.name!r} has been revoked")
            db.execute("UPDATE devices SET name = ? WHERE id = ?", (name, device_id))
        return replace(device, name=name)

    def revoke_device(self, user_id: str, device_id: str) -> Device:
        """Refuse the device's certificate from the next call on; revoking a revoked device changes nothing."""
        with self._write() as db:
            device = self._require_device(db, device_id, user_id)
            db.execute(
                "UPDATE devices SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?", (self._clock(), device_id)
            )
        return replace(device, revoked=True)

    def record_renewal(self, device_id: str, replacing: int, cert_serial: int, cert_not_after: float) -> Device:
        """Make the device's new certificate its only valid one, if the device and its account are still
        active and `replacing` (the serial of the certificate that asked) is still its current one: of two
        renewals with one certificate, only the first succeeds."""
        old, serial = cert_serial_text(replacing), cert_serial_text(cert_serial)
        not_after = check_cert_not_after(cert_not_after)
        with self._write() as db:
            device = self._require_device(db, device_id)
            if device.revoked:
                raise DeviceRevoked(f"the device {device.name!r} has been revoked; enroll it again")
            self._require_active_user(db, device.user_id)
            updated = db.execute(
                "UPDATE devices SET cert_serial = ?, cert_not_after = ?, renewed_at = ? "
                "WHERE id = ? AND cert_serial = ?",
                (serial, not_after, self._clock(), device_id, old),
            ).rowcount
        if not updated:
            raise CertificateReplaced()
        return replace(device, cert_not_after=not_after)

    def update_device_info(self, device_id: str, os: str, os_version: str) -> Device:
        os, os_version = clean_os_info(os, os_version)
        with self._write() as db:
            device = self._require_device(db, device_id)
            if device.revoked:
                raise DeviceRevoked(f"the device {device.name!r} has been revoked")
            db.execute("UPDATE devices SET os = ?, os_version = ? WHERE id = ?", (os, os_version, device_id))
        return replace(device, os=os, os_version=os_version)

    def device_is_active(self, user_id: str, device_id: str) -> bool:
        """Whether a certificate naming this user and device may be used at all: the device exists, belongs to
        the user, is not revoked, and the account exists and is not disabled."""
        return self.current_cert_serial(user_id, device_id) is not None

    def current_cert_serial(self, user_id: str, device_id: str) -> int | None:
        """The serial of the one certificate the device may use now (from its enrollment or latest renewal),
        or None when the device may not be used (see device_is_active). Called on every device call."""
        with self._lock:
            row = self._db.execute(
                "SELECT devices.cert_serial FROM devices JOIN users ON users.id = devices.user_id "
                "WHERE devices.id = ? AND devices.user_id = ? "
                "AND devices.revoked_at IS NULL AND users.disabled_at IS NULL",
                (device_id, user_id),
            ).fetchone()
        return None if row is None else int(row[0], 16)

    # -- one-time enrollment codes

    def create_enrollment_code(self, user_id: str, ttl_s: int = ENROLLMENT_CODE_TTL) -> str:
        """A single-use code that enrolls one device into the account within `ttl_s` seconds."""
        check_ttl("enrollment code", ttl_s, MAX_ENROLLMENT_CODE_TTL)
        code = new_one_time_code()
        now = self._clock()
        with self._write() as db:
            self._require_active_user(db, user_id)
            db.execute("DELETE FROM enrollment_codes WHERE expires_at <= ?", (purge_before(now),))
            db.execute(
                "INSERT INTO enrollment_codes (code_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
                (hash_code(code), user_id, now, now + ttl_s),
            )
        return code

    def redeem_enrollment_code(self, code: str) -> User:
        """The account the code was made for; the code is used up, atomically, even by concurrent callers."""
        code_hash = hash_code(code)
        if code_hash is None:
            raise InvalidEnrollmentCode("that is not an enrollment code: expected 16 letters and digits")
        now = self._clock()
        with self._write() as db:
            row = db.execute(
                "SELECT user_id, expires_at, used_at FROM enrollment_codes WHERE code_hash = ?", (code_hash,)
            ).fetchone()
            check_enrollment_code(None if row is None else code_state(row[1], row[2], now))
            user_id = row[0]
            self._require_active_user(db, user_id)
            db.execute("UPDATE enrollment_codes SET used_at = ? WHERE code_hash = ?", (now, code_hash))
            user = _user(db.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,)).fetchone())
        return user

    # -- tokens

    def revoke_token(self, jti: str, expires_at: float) -> None:
        """Refuse the token with this id until it expires anyway (logout); expired entries are purged."""
        with self._write() as db:
            db.execute("DELETE FROM revoked_tokens WHERE expires_at <= ?", (self._clock(),))
            db.execute(
                "INSERT INTO revoked_tokens (jti, expires_at) VALUES (?, ?) "
                "ON CONFLICT (jti) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)",
                (jti, float(expires_at)),
            )

    def token_is_revoked(self, jti: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM revoked_tokens WHERE jti = ?", (jti,)).fetchone() is not None

    def token_issue_time(self, user_id: str) -> float:
        """When a token issued now for this user must say it was issued: now, or the user's revocation line
        if that lies ahead (it is rounded up to whole seconds, so a password change a moment ago puts it
        up to a second in the future, and a token dated earlier would be born revoked)."""
        return max(self._clock(), self.tokens_valid_after(user_id))

    def tokens_valid_after(self, user_id: str) -> int:
        """Tokens of this user with an `iat` earlier than this (Unix seconds) are revoked."""
        with self._lock:
            row = self._db.execute("SELECT tokens_valid_after FROM users WHERE id = ?", (user_id,)).fetchone()
        if row is None:
            raise UnknownUser(f"no account has the id {user_id!r}")
        return row[0]

    def token_is_current(self, user_id: str, jti: str, issued_at: int) -> bool:
        """All the store's checks of a verified token in one query: the account exists and is enabled, the
        token was issued no earlier than tokens_valid_after, and its id is not revoked."""
        with self._lock:
            return (
                self._db.execute(
                    "SELECT 1 FROM users WHERE id = ? AND disabled_at IS NULL AND tokens_valid_after <= ? "
                    "AND NOT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = ?)",
                    (user_id, issued_at, jti),
                ).fetchone()
                is not None
            )

    # -- share links

    def add_share_link(
        self, user_id: str, link_id: str, view: str, period_start: float, period_end: float, tz: str, ttl_s: int
    ) -> ShareLink:
        """Record a read-only link (its random id is all its token holds) to one view of one period, valid
        `ttl_s` s."""
        link_id = check_share_link(link_id, view, period_start, period_end, tz, ttl_s)
        now = self._clock()
        link = ShareLink(link_id, user_id, view, float(period_start), float(period_end), tz, now, now + ttl_s, False)
        with self._write() as db:
            self._require_active_user(db, user_id)
            db.execute("DELETE FROM share_links WHERE user_id = ? AND expires_at <= ?", (user_id, now))
            db.execute(
                f"INSERT INTO share_links ({_SHARE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                (link.id, user_id, view, link.period_start, link.period_end, tz, now, link.expires_at),
            )
        return link

    def list_share_links(self, user_id: str) -> list[ShareLink]:
        """The account's links that have not expired, revoked ones included, newest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_SHARE_COLUMNS} FROM share_links WHERE user_id = ? AND expires_at > ? "
                "ORDER BY created_at DESC, id",
                (user_id, self._clock()),
            ).fetchall()
        return [_share_link(row) for row in rows]

    def revoke_share_link(self, user_id: str, link_id: str) -> None:
        """Refuse the link from its next view on; a link of another account is reported as unknown."""
        with self._write() as db:
            updated = db.execute(
                "UPDATE share_links SET revoked_at = coalesce(revoked_at, ?) WHERE id = ? AND user_id = ?",
                (self._clock(), str(link_id), user_id),
            ).rowcount
        if not updated:
            raise InvalidShareLink(f"the account has no share link {link_id!r}")

    def open_share_link(self, link_id: str) -> ShareLink:
        """The link if it may be viewed now: it exists, is neither revoked nor expired, and its owner's
        account is enabled; InvalidShareLink otherwise. A share token names only the link: whose it is, and
        what it shows, is this row."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {', '.join('s.' + c for c in _SHARE_COLUMNS.split(', '))} FROM share_links AS s "
                "JOIN users ON users.id = s.user_id WHERE s.id = ? AND users.disabled_at IS NULL",
                (str(link_id),),
            ).fetchone()
        if row is None:
            raise InvalidShareLink("this share link does not exist (any more)")
        return check_share_link_open(_share_link(row), self._clock())

    # -- sign-up policy

    def signup_mode(self) -> SignupMode:
        with self._lock:
            return self._db.execute("SELECT signup_mode FROM instance").fetchone()[0]

    def set_signup_mode(self, mode: SignupMode) -> None:
        mode = check_signup_mode(mode)
        with self._write() as db:
            db.execute("UPDATE instance SET signup_mode = ?", (mode,))

    def create_invite(self, ttl_s: int = INVITE_TTL) -> str:
        """A single-use code that lets one person sign up while sign-up is invite-only."""
        check_ttl("invite", ttl_s, MAX_INVITE_TTL)
        code = new_one_time_code()
        now = self._clock()
        with self._write() as db:
            db.execute("DELETE FROM invites WHERE expires_at <= ?", (purge_before(now),))
            db.execute(
                "INSERT INTO invites (code_hash, created_at, expires_at) VALUES (?, ?, ?)",
                (hash_code(code), now, now + ttl_s),
            )
        return code


_FAILURES_OF_KEY = "SELECT at FROM login_failures WHERE key = ? AND at > ?"
_FAILURES_IN_RANGE = "SELECT at FROM login_failures WHERE key >= ? AND key < ? AND at > ?"


def _times(db: sqlite3.Connection, query: str, parameters: tuple) -> list[float]:
    return [at for (at,) in db.execute(query, parameters)]


def _forget_failures(db: sqlite3.Connection, email: str) -> None:
    """Delete the account's failure records: each address's on it, and the per-account key that versions
    before per-address counting wrote (see legacy_account_key)."""
    db.execute(
        "DELETE FROM login_failures WHERE key = ? OR (key >= ? AND key < ?)",
        (legacy_account_key(email), *account_key_range(email)),
    )
