"""`productimon-admin`: the operator's commands on the identity store — users, their devices, sign-up policy."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import sys
from collections.abc import Sequence

from gateway.identity_store import (
    IDENTITY_DB_FILE,
    INVITE_TTL,
    SIGNUP_MODES,
    AccountError,
    IdentityStore,
    UnknownUser,
    check_password_policy,
    normalize_email,
)
from plumbing.cli import UserFacingError, command
from plumbing.settings import load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="productimon-admin", description="Manage accounts and devices.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    users = commands.add_parser("users", help="create, list, reset, disable and enable accounts")
    user_commands = users.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = user_commands.add_parser("create", help="create an account (sign-up mode does not apply)")
    create.add_argument("--email", required=True)
    create.add_argument("--admin", action="store_true", help="make the account an administrator")
    _password_source(create)
    user_commands.add_parser("list", help="list every account")
    reset = user_commands.add_parser("reset-password", help="set a new password; the account's tokens are revoked")
    reset.add_argument("--email", required=True)
    _password_source(reset)
    disable = user_commands.add_parser("disable", help="refuse the account's sign-ins, tokens and devices")
    disable.add_argument("--email", required=True)
    enable = user_commands.add_parser("enable", help="allow a disabled account again")
    enable.add_argument("--email", required=True)

    devices = commands.add_parser("devices", help="an account's devices")
    device_commands = devices.add_subparsers(dest="action", required=True, metavar="ACTION")
    list_devices = device_commands.add_parser("list", help="list an account's devices, revoked ones included")
    list_devices.add_argument("--email", required=True)

    signup = commands.add_parser("signup-mode", help="show or set who may sign up: open, invite or closed")
    signup.add_argument("mode", nargs="?", choices=SIGNUP_MODES)

    invite = commands.add_parser("invite", help="single-use invite codes for invite-only sign-up")
    invite_commands = invite.add_subparsers(dest="action", required=True, metavar="ACTION")
    create_invite = invite_commands.add_parser("create", help="make an invite code")
    create_invite.add_argument(
        "--days",
        type=int,
        default=INVITE_TTL // 86400,
        help=f"days the code stays valid (default {INVITE_TTL // 86400})",
    )
    return parser


def _password_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin", action="store_true", help="read the password from the first line of standard input"
    )


def _read_password(from_stdin: bool, email: str) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password[:-1] if password.endswith("\r") else password
    else:
        password = getpass.getpass("new password: ")
        # Checked before the second prompt, so a too-short password is not typed twice.
        check_password_policy(password, email)
        if getpass.getpass("repeat it: ") != password:
            raise UserFacingError("the two passwords differ; nothing was changed")
    return password


def _exists(store: IdentityStore, email: str) -> bool:
    try:
        store.user_by_email(email)
    except UnknownUser:
        return False
    return True


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    if not rows:
        return
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    for row in [headers, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _run(store: IdentityStore, args: argparse.Namespace) -> None:
    if args.command == "users":
        if args.action == "create":
            email = normalize_email(args.email)
            if _exists(store, email):
                raise UserFacingError(f"an account with the email {email} already exists")
            user = store.create_user(email, _read_password(args.password_stdin, email), is_admin=args.admin)
            print(f"created {'administrator' if user.is_admin else 'user'} {user.email}  id {user.id}")
        elif args.action == "list":
            users = store.list_users()
            _table(
                ["EMAIL", "ID", "CREATED", "ROLE", "STATUS", "DEVICES"],
                [
                    [
                        user.email,
                        user.id,
                        _when(user.created_at),
                        "admin" if user.is_admin else "user",
                        "disabled" if user.disabled else "active",
                        str(sum(not device.revoked for device in store.list_devices(user.id))),
                    ]
                    for user in users
                ],
            )
            print(f"{len(users)} account{'' if len(users) == 1 else 's'}")
        elif args.action == "reset-password":
            user = store.user_by_email(args.email)
            store.reset_password(user.email, _read_password(args.password_stdin, user.email))
            print(f"password of {user.email} reset; its existing tokens are revoked")
        elif args.action == "disable":
            user = store.disable(args.email)
            print(f"disabled {user.email}: its sign-ins, tokens and devices are refused")
        elif args.action == "enable":
            user = store.enable(args.email)
            print(f"enabled {user.email}")
    elif args.command == "devices":
        user = store.user_by_email(args.email)
        devices = store.list_devices(user.id)
        _table(
            ["NAME", "ID", "OS", "ENROLLED", "CERTIFICATE EXPIRES", "STATUS"],
            [
                [
                    device.name,
                    device.id,
                    f"{device.os} {device.os_version}".strip() or "-",
                    _when(device.created_at),
                    _when(device.cert_not_after),
                    "revoked" if device.revoked else "active",
                ]
                for device in devices
            ],
        )
        print(f"{len(devices)} device{'' if len(devices) == 1 else 's'} of {user.email}")
    elif args.command == "signup-mode":
        if args.mode:
            store.set_signup_mode(args.mode)
        print(f"sign-up mode: {store.signup_mode()}")
    elif args.command == "invite":
        if not 1 <= args.days <= 90:
            raise UserFacingError(f"--days {args.days} is not between 1 and 90")
        code = store.create_invite(args.days * 86400)
        print(f"invite code {code}  (single use, valid for {args.days} day{'' if args.days == 1 else 's'})")
        if store.signup_mode() != "invite":
            print(f"note: sign-up mode is {store.signup_mode()}; invite codes are asked for only in invite mode")


@command("productimon-admin")
def main() -> int:
    args = _parser().parse_args()
    settings = load_settings()
    with IdentityStore(settings.data_dir / IDENTITY_DB_FILE) as store:
        try:
            _run(store, args)
        except AccountError as exc:
            raise UserFacingError(str(exc)) from None
    return 0
