"""`productimon-pki`: create the stack's CA and server certificate, issue other servers' certificates (Kafka,
ClickHouse) from it, and make device bundles signed by it."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from gateway.pki import (
    CA_KEY_FILE,
    DEFAULT_SERVER_NAMES,
    DEVICE_DAYS,
    SERVER_CERT_FILE,
    SERVER_KEY_FILE,
    check_id,
    ensure_server_bundle,
    ensure_stack_pki,
    new_device_id,
    sign_device_csr,
)
from plumbing.cli import UserFacingError, command
from plumbing.files import make_private_dir, write_atomically, write_private_files
from plumbing.settings import load_settings
from schemas.device_keys import (
    CA_CERT_FILE,
    DEVICE_CERT_FILE,
    DEVICE_KEY_FILE,
    DeviceIdentity,
    device_bundle,
    new_device_key_and_csr,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="productimon-pki", description="The stack's private CA.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    init = commands.add_parser("init", help="create the CA and the gateway's server certificate (once)")
    init.add_argument(
        "--name",
        dest="names",
        action="extend",
        nargs="+",
        default=[],
        metavar="NAME",
        help="a DNS name or IP address clients use to reach the gateway; repeatable "
        f"({', '.join(DEFAULT_SERVER_NAMES)} are always included)",
    )
    server = commands.add_parser(
        "server-cert",
        help="keep a server certificate from the stack's CA in a directory of its own (for Kafka, ClickHouse)",
    )
    server.add_argument(
        "--name",
        dest="names",
        action="extend",
        nargs="+",
        required=True,
        metavar="NAME",
        help="a DNS name or IP address clients use to reach the server; repeatable",
    )
    server.add_argument("--out", required=True, type=Path, help="directory for server.crt, server.key and ca.crt")
    server.add_argument("--owner", type=_owner, help="UID:GID to own the directory and its files (needs root)")
    ca = commands.add_parser("ca-cert", help="copy the CA certificate (never its key) into a directory of its own")
    ca.add_argument("--out", required=True, type=Path, help="directory for ca.crt")
    ca.add_argument("--owner", type=_owner, help="UID:GID to own the directory and the file (needs root)")
    device = commands.add_parser("device", help="make a key and certificate for a new device of a user")
    device.add_argument("--user", required=True, help="the user id the device belongs to")
    device.add_argument("--name", required=True, dest="device_name", help="a label for the device, e.g. laptop")
    device.add_argument("--out", required=True, type=Path, help="directory to write the device bundle to")
    device.add_argument("--days", type=int, default=DEVICE_DAYS, help=f"certificate lifetime (default {DEVICE_DAYS})")
    return parser


def _init(pki_dir: Path, names: list[str]) -> None:
    pki = ensure_stack_pki(pki_dir, list(dict.fromkeys([*DEFAULT_SERVER_NAMES, *names])))
    print(f"CA certificate      {pki.ca_cert_path}")
    print(f"CA key              {pki.ca_key_path}")
    print(f"server certificate  {pki.server_cert_path}")
    print(f"server key          {pki.server_key_path}")


def _owner(value: str) -> tuple[int, int]:
    uid, sep, gid = value.partition(":")
    if not (sep and uid.isdigit() and gid.isdigit()):
        raise argparse.ArgumentTypeError(f"{value!r} is not UID:GID (numbers)")
    return int(uid), int(gid)


def _stack_ca(pki_dir: Path) -> tuple[bytes, bytes]:
    ca_cert_path, ca_key_path = pki_dir / CA_CERT_FILE, pki_dir / CA_KEY_FILE
    if not (ca_cert_path.is_file() and ca_key_path.is_file()):
        raise UserFacingError(f"no CA in {pki_dir}; run `productimon-pki init` first")
    return ca_cert_path.read_bytes(), ca_key_path.read_bytes()


def _hand_over(out_dir: Path, files: list[str], owner: tuple[int, int] | None) -> None:
    """Owner-only (0700 directory, 0600 files), owned by the server's own uid where given: the files are then
    readable by that server and by nobody else (docs/transport-security.md, "Certificates")."""
    paths = [out_dir, *(out_dir / name for name in files)]
    for path in paths:
        os.chmod(path, 0o700 if path.is_dir() else 0o600)
        if owner is not None:
            try:
                os.chown(path, *owner)
            except PermissionError:
                raise UserFacingError(
                    f"cannot give {path} to {owner[0]}:{owner[1]}: --owner needs root (the compose file's tls-init)"
                ) from None


def _server_cert(pki_dir: Path, names: list[str], out_dir: Path, owner: tuple[int, int] | None) -> None:
    ca_cert_pem, ca_key_pem = _stack_ca(pki_dir)
    issued = ensure_server_bundle(out_dir, ca_cert_pem, ca_key_pem, list(dict.fromkeys(names)))
    _hand_over(out_dir, [SERVER_CERT_FILE, SERVER_KEY_FILE, CA_CERT_FILE, ".lock"], owner)
    state = "issued" if issued else "kept (still valid for these names)"
    print(f"server certificate  {out_dir / SERVER_CERT_FILE}  {state}: {', '.join(names)}")
    print(f"server key          {out_dir / SERVER_KEY_FILE}")
    print(f"CA certificate      {out_dir / CA_CERT_FILE}")


def _ca_cert(pki_dir: Path, out_dir: Path, owner: tuple[int, int] | None) -> None:
    ca_cert_pem, _ = _stack_ca(pki_dir)
    make_private_dir(out_dir)
    path = out_dir / CA_CERT_FILE
    if not path.exists() or path.read_bytes() != ca_cert_pem:
        write_atomically(path, ca_cert_pem)
    _hand_over(out_dir, [CA_CERT_FILE], owner)
    print(f"CA certificate      {path}")


def _device(pki_dir: Path, user_id: str, device_name: str, out_dir: Path, days: int) -> None:
    check_id("user id", user_id)
    ca_cert_path, ca_key_path = pki_dir / CA_CERT_FILE, pki_dir / CA_KEY_FILE
    if not (ca_cert_path.is_file() and ca_key_path.is_file()):
        raise UserFacingError(f"no CA in {pki_dir}; run `productimon-pki init` first")
    if (out_dir / DEVICE_KEY_FILE).exists():
        raise UserFacingError(f"{out_dir} already holds a device key; choose another --out directory")
    # The same steps a collector takes when it enrolls: the key is made where it will live.
    key_pem, csr_pem = new_device_key_and_csr(device_name)
    identity = DeviceIdentity(user_id, new_device_id())
    ca_pem = ca_cert_path.read_bytes()
    cert_pem = sign_device_csr(ca_pem, ca_key_path.read_bytes(), csr_pem, identity, days)
    write_private_files(out_dir, device_bundle(key_pem, cert_pem, ca_pem))
    print(f"device id  {identity.device_id}")
    print(f"user id    {identity.user_id}")
    for name in (DEVICE_KEY_FILE, DEVICE_CERT_FILE, CA_CERT_FILE):
        print(f"wrote      {out_dir / name}")


@command("productimon-pki")
def main() -> int:
    args = _parser().parse_args()
    settings = load_settings()
    if args.command == "init":
        _init(settings.pki_dir, args.names)
    elif args.command == "server-cert":
        _server_cert(settings.pki_dir, args.names, args.out.expanduser().resolve(), args.owner)
    elif args.command == "ca-cert":
        _ca_cert(settings.pki_dir, args.out.expanduser().resolve(), args.owner)
    else:
        _device(settings.pki_dir, args.user, args.device_name, args.out.expanduser().resolve(), args.days)
    return 0
