"""`productimon-pki`: create the stack's CA and server certificate, and make device bundles signed by it."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.pki import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    DEFAULT_SERVER_NAMES,
    DEVICE_CERT_FILE,
    DEVICE_DAYS,
    DEVICE_KEY_FILE,
    DeviceIdentity,
    check_id,
    ensure_stack_pki,
    new_device_id,
    new_device_key_and_csr,
    sign_device_csr,
    write_device_bundle,
)
from infra.cli import UserFacingError, command
from infra.settings import load_settings


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
    write_device_bundle(out_dir, key_pem, cert_pem, ca_pem)
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
    else:
        _device(settings.pki_dir, args.user, args.device_name, args.out.expanduser().resolve(), args.days)
    return 0
