"""`productimon-admin`, run in-process against a real identity store in a temporary data directory."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from gateway import admin_cli
from gateway.identity_store import IDENTITY_DB_FILE, IdentityStore, InvalidCredentials

PASSWORD = "correct horse battery staple"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("PRODUCTIMON_DATA_DIR", str(tmp_path))
    for name in ("PRODUCTIMON_CONFIG", "PRODUCTIMON_TRACEBACK"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def admin(data_dir, monkeypatch, capsys):
    """Run the command with these arguments and standard input: (exit code, stdout, stderr)."""

    def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["productimon-admin", *argv])
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        try:
            code = admin_cli.main()
        except SystemExit as exit_:
            code = exit_.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def store(data_dir):
    with IdentityStore(data_dir / IDENTITY_DB_FILE, password_hasher=PasswordHasher(1, 8, 1)) as store:
        yield store


def test_users_create_reads_the_password_from_stdin_and_list_shows_the_account(admin, store):
    code, out, err = admin(
        "users", "create", "--email", "Root@Example.com", "--admin", "--password-stdin", stdin=f"{PASSWORD}\n"
    )
    assert (code, err) == (0, "")
    user = store.user_by_email("root@example.com")
    assert out == f"created administrator root@example.com  id {user.id}\n"
    assert user.is_admin
    assert store.authenticate("root@example.com", PASSWORD, "127.0.0.1") == user

    assert admin("users", "create", "--email", "bob@example.com", "--password-stdin", stdin=f"{PASSWORD}\r\n")[0] == 0
    code, out, _ = admin("users", "list")
    assert code == 0
    header, root_row, bob_row, total = out.splitlines()
    assert header.split() == ["EMAIL", "ID", "CREATED", "ROLE", "STATUS", "DEVICES"]
    assert root_row.split()[:2] == ["root@example.com", user.id]
    assert root_row.split()[-3:] == ["admin", "active", "0"]
    assert bob_row.split()[-3:] == ["user", "active", "0"]
    assert total == "2 accounts"
    # Aligned: every column starts at the same place on every line.
    assert header.index("ID") == root_row.index(user.id) == bob_row.index(bob_row.split()[1])


def test_users_create_prompts_twice_and_refuses_a_mismatch(admin, store, monkeypatch):
    answers = iter([PASSWORD, PASSWORD + "!"])
    monkeypatch.setattr(admin_cli.getpass, "getpass", lambda prompt: next(answers))
    code, out, err = admin("users", "create", "--email", "alice@example.com")
    assert (code, out) == (1, "")
    assert err.startswith("productimon-admin: error: the two passwords differ; nothing was changed")
    assert store.list_users() == []

    answers = iter([PASSWORD, PASSWORD])
    assert admin("users", "create", "--email", "alice@example.com")[0] == 0
    assert store.user_by_email("alice@example.com").email == "alice@example.com"


def test_a_weak_password_is_refused_at_the_first_prompt(admin, store, monkeypatch):
    prompts: list[str] = []
    monkeypatch.setattr(admin_cli.getpass, "getpass", lambda prompt: prompts.append(prompt) or "short")
    code, _, err = admin("users", "create", "--email", "alice@example.com")
    assert code == 1 and "shorter than 10 characters" in err
    assert len(prompts) == 1


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (("users", "create", "--email", "nope", "--password-stdin"), PASSWORD, "not an email address"),
        (("users", "create", "--email", "a@example.com", "--password-stdin"), "short\n", "shorter than 10"),
        (("users", "reset-password", "--email", "nobody@example.com", "--password-stdin"), PASSWORD, "no account"),
        (("users", "disable", "--email", "nobody@example.com"), "", "no account has the email nobody@example.com"),
        (("users", "enable", "--email", "nobody@example.com"), "", "no account has the email nobody@example.com"),
        (("devices", "list", "--email", "nobody@example.com"), "", "no account has the email nobody@example.com"),
    ],
)
def test_refusals_are_one_line_and_exit_1(admin, argv, stdin, message):
    code, out, err = admin(*argv, stdin=stdin)
    assert (code, out) == (1, "")
    assert len(err.splitlines()) == 1
    assert err.startswith("productimon-admin: error: ") and message in err


def test_creating_an_existing_account_is_refused_before_asking_for_a_password(admin, store, monkeypatch):
    store.create_user("alice@example.com", PASSWORD)
    monkeypatch.setattr(admin_cli.getpass, "getpass", lambda prompt: pytest.fail("asked for a password"))
    code, _, err = admin("users", "create", "--email", "ALICE@example.com")
    assert code == 1 and "alice@example.com already exists" in err


def test_reset_password_replaces_the_password(admin, store):
    user = store.create_user("alice@example.com", PASSWORD)
    code, out, _ = admin(
        "users", "reset-password", "--email", "alice@example.com", "--password-stdin", stdin="new password here\n"
    )
    assert code == 0
    assert out == "password of alice@example.com reset; its existing tokens are revoked\n"
    with pytest.raises(InvalidCredentials):
        store.authenticate("alice@example.com", PASSWORD, "127.0.0.1")
    assert store.authenticate("alice@example.com", "new password here", "127.0.0.1") == user


def test_disable_and_enable_an_account(admin, store):
    user = store.create_user("alice@example.com", PASSWORD)
    device = store.add_device(user.id, "laptop", "Linux", "6.1", 1, 1_900_000_000.0)
    code, out, _ = admin("users", "disable", "--email", "alice@example.com")
    assert code == 0 and out.startswith("disabled alice@example.com")
    assert not store.device_is_active(user.id, device.id)
    assert "disabled" in admin("users", "list")[1].splitlines()[1].split()
    assert admin("users", "enable", "--email", "alice@example.com")[1] == "enabled alice@example.com\n"
    assert store.device_is_active(user.id, device.id)


def test_devices_list_shows_every_device_of_the_account(admin, store):
    user = store.create_user("alice@example.com", PASSWORD)
    laptop = store.add_device(user.id, "Work laptop", "Linux", "6.1", 1, 1_900_000_000.0)
    phone = store.add_device(user.id, "desk", "", "", 2, 1_900_000_000.0)
    store.revoke_device(user.id, phone.id)
    code, out, _ = admin("devices", "list", "--email", "alice@example.com")
    assert code == 0
    header, first, second, total = out.splitlines()
    assert re.split(r"\s{2,}", header) == ["NAME", "ID", "OS", "ENROLLED", "CERTIFICATE EXPIRES", "STATUS"]
    assert re.split(r"\s{2,}", first)[:3] == ["Work laptop", laptop.id, "Linux 6.1"]
    assert re.split(r"\s{2,}", first)[-2:] == ["2030-03-17 17:46 UTC", "active"]
    assert re.split(r"\s{2,}", second)[:3] == ["desk", phone.id, "-"]
    assert second.endswith("revoked")
    assert total == "2 devices of alice@example.com"
    assert "1" == admin("users", "list")[1].splitlines()[1].split()[-1]


def test_signup_mode_shows_and_sets_the_mode(admin, store):
    assert admin("signup-mode") == (0, "sign-up mode: open\n", "")
    assert admin("signup-mode", "invite") == (0, "sign-up mode: invite\n", "")
    assert store.signup_mode() == "invite"
    code, _, err = admin("signup-mode", "everyone")
    assert code == 2 and "invalid choice" in err
    assert store.signup_mode() == "invite"


def test_invite_create_prints_a_code_that_signs_one_person_up(admin, store):
    admin("signup-mode", "invite")
    code, out, _ = admin("invite", "create", "--days", "2")
    assert code == 0
    match = re.fullmatch(r"invite code (\S+)  \(single use, valid for 2 days\)\n", out)
    assert match
    assert store.sign_up("alice@example.com", PASSWORD, invite_code=match[1]).email == "alice@example.com"


def test_invite_create_warns_when_invites_are_not_asked_for(admin):
    code, out, _ = admin("invite", "create")
    assert code == 0
    assert "valid for 7 days" in out
    assert "note: sign-up mode is open" in out
    assert admin("invite", "create", "--days", "0")[0] == 1


def test_a_missing_command_is_a_usage_error(admin):
    code, _, err = admin()
    assert code == 2 and "usage: productimon-admin" in err
