"""`productimon-collector`: sign up, enroll this computer, run the collector, see its status, pause, unenroll,
import ActivityWatch history."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from collector.agent import Agent, is_running, pause_in_effect, pause_until_ms
from collector.aw_import import cmd_import_activitywatch
from collector.config import CollectorHome, load_collector_settings
from collector.enrolled import (
    Enrollment,
    NotEnrolled,
    certificate_validity,
    forget_device,
    forget_recording,
    load_credentials,
    load_enrollment,
    save_credentials,
    save_enrollment,
)
from collector.enrollment import DeviceInfo, enroll, revoke_self
from collector.service_files import enable_hint, service_file, service_file_location
from collector.spool import Spool, SpoolStatus
from collector.transport import DeviceCredentials, DeviceIngest
from collector.uploader import upload_once
from collector.wire import RpcError, StatusCode, rpc_reason
from plumbing.cli import UserFacingError, command
from schemas.contract import SPOOL_MAX_AGE_DAYS

INGEST_PORT = 7443
PUBLIC_PORT = 7444


def gateway_addresses(server: str, public_server: str | None) -> tuple[str, str]:
    """`host`, `host:port` or `[v6 address]:port` for ingest (default port 7443); the public port defaults to
    7444 on that host."""

    def parsed(text: str, option: str, default_port: int) -> tuple[str, int]:
        try:
            parts = urlsplit(f"//{text.strip()}")
            host, port = parts.hostname, parts.port
        except ValueError as exc:
            raise UserFacingError(f"{option} {text!r} is not host[:port] ({exc}); write IPv6 as [addr]:port") from None
        if not host:
            raise UserFacingError(f"{option} {text!r} names no host")
        if parts.netloc.endswith(":"):
            raise UserFacingError(f"{option} {text!r} has an empty port")
        if parts.path or parts.query or parts.fragment or parts.username:
            raise UserFacingError(f"{option} {text!r} is not host[:port]; write IPv6 as [addr]:port")
        return host, port or default_port

    def joined(host: str, port: int) -> str:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    host, port = parsed(server, "--server", INGEST_PORT)
    if public_server:
        return joined(host, port), joined(*parsed(public_server, "--public-server", PUBLIC_PORT))
    return joined(host, port), joined(host, PUBLIC_PORT)


def _rpc_errors() -> tuple[type[Exception], ...]:
    """The errors of a call: grpcio's (signup, enroll and sign-in use it) and collector/wire.py's (the device's own
    calls). grpcio is imported only here, when a call failed, so `run` never loads it."""
    import grpc

    return (grpc.RpcError, RpcError)


def rpc_failure(action: str, exc: Exception, address: str | None = None, ca: str | None = None) -> UserFacingError:
    """One line for a failed call: what to do when the server at `address` did not prove itself with the CA
    file `ca`, or did not answer; the gateway's own words otherwise."""
    code = exc.code() if hasattr(exc, "code") else None
    details = (exc.details() if hasattr(exc, "details") else None) or str(exc)
    if address and ca and ("CERTIFICATE_VERIFY_FAILED" in details or "handshake failed" in details.lower()):
        return UserFacingError(
            f"{action}: the server at {address} does not prove itself with the CA in --ca {ca}; give this "
            "instance's ca.crt (<data dir>/pki/ca.crt on its server)"
        )
    if address and code is not None and code.name in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
        reason = "connection refused" if "refused" in details.lower() else "no answer"
        return UserFacingError(f"{action}: {reason} from {address}; check the address and that the gateway runs")
    return UserFacingError(f"{action}: {rpc_reason(exc)}")


def _instance_ca(path: str) -> bytes:
    """The instance's CA certificate, refused in one line if it cannot be read or is not a PEM certificate."""
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise UserFacingError(f"cannot read the instance CA certificate --ca {path}: {exc.strerror}") from None
    from cryptography import x509

    try:
        x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise UserFacingError(
            f"--ca {path} is not a PEM certificate; give this instance's ca.crt (<data dir>/pki/ca.crt on its server)"
        ) from None
    return pem


def _new_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    password = getpass.getpass("Choose a password: ")
    if getpass.getpass("The same password again: ") != password:
        raise UserFacingError("the two passwords differ; no account was created")
    return password


def cmd_signup(home: CollectorHome, args: argparse.Namespace) -> int:
    """Create an account on the instance, as its sign-up mode allows; then say how to enroll this computer."""
    from schemas.api_client import sign_up, sign_up_mode

    _, public_server = gateway_addresses(args.server, args.public_server)
    ca_pem = _instance_ca(args.ca)
    try:
        mode = sign_up_mode(public_server, ca_pem)
    except _rpc_errors() as exc:
        raise rpc_failure("sign-up", exc, public_server, args.ca) from None
    if mode == "closed":
        raise UserFacingError(f"sign-up is closed on {public_server}; ask its operator for an account")
    invite_code = args.invite_code or ""
    if mode == "invite" and not invite_code:
        raise UserFacingError(
            f"{public_server} signs people up with an invite code from its operator: give --invite-code"
        )
    password = _new_password(args)
    try:
        sign_up(public_server, ca_pem, args.email, password, invite_code)
    except _rpc_errors() as exc:
        raise rpc_failure(f"sign-up at {public_server} failed", exc, public_server, args.ca) from None
    print(f"account {args.email} created at {public_server}")
    public = f" --public-server {args.public_server}" if args.public_server else ""
    print(f"next, enroll this computer: productimon-collector enroll --server {args.server}{public} --ca {args.ca} "
          f"--email {args.email}")  # fmt: skip
    return 0


def reachable(address: str, what: str, timeout_s: float = 5.0) -> None:
    """Refuse, naming the address, one that nothing answers on: before anything is asked of the gateway."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserFacingError(f"{what} {address} cannot be reached ({reason}); nothing was enrolled or saved") from None


def prove_ingest(
    server: str, public_server: str, ca_pem: bytes, creds: DeviceCredentials, device_id: str, email: str, password: str
) -> None:
    """An (empty) upload with the new certificate on the ingest port, before anything is saved: an enrollment
    whose uploads could not go anywhere is undone (with the password; a code cannot sign in) and refused."""
    try:
        with DeviceIngest(server, creds, timeout_s=15) as client:
            client.send_batch([])
    except _rpc_errors() as exc:
        undone = "; remove it in the dashboard's Devices page"
        if email and password:
            from schemas.api_client import log_in, revoke_device

            try:
                revoke_device(public_server, ca_pem, log_in(public_server, ca_pem, email, password).token, device_id)
                undone = "; it was revoked again"
            except _rpc_errors():
                pass
        raise UserFacingError(
            f"the gateway's ingest address {server} does not take this device's uploads "
            f"({rpc_failure('upload', exc)}); nothing was saved here, and device {device_id} is of no use{undone}"
        ) from None


def cmd_enroll(home: CollectorHome, args: argparse.Namespace) -> int:
    if home.identity_file.exists():
        current = load_enrollment(home)
        raise UserFacingError(
            f"already enrolled as device {current.device_id} ({current.device_name}); run `unenroll` first"
        )
    if home.spool_file.exists():
        with Spool(home.spool_file) as spool:
            if spool.depth:
                raise UserFacingError(f"{home.spool_file} still holds another device's intervals; run `unenroll` first")
    server, public_server = gateway_addresses(args.server, args.public_server)
    ca_pem = _instance_ca(args.ca)
    if not args.code and not args.email:
        raise UserFacingError("give --email (and the password when asked) or a one-time --code")
    password = ""
    if not args.code:
        password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("Password: ")
    device = DeviceInfo(args.device_name or socket.gethostname())
    reachable(server, "the gateway's ingest address (--server)")
    try:
        identity, creds = enroll(
            public_server, ca_pem, device, email=args.email or "", password=password, enrollment_code=args.code or ""
        )
    except _rpc_errors() as exc:
        raise rpc_failure(f"enrollment at {public_server} failed", exc, public_server, args.ca) from None
    prove_ingest(server, public_server, ca_pem, creds, identity.device_id, args.email or "", password)
    home.create()
    home.retired_file.unlink(missing_ok=True)
    save_credentials(home, creds)
    save_enrollment(
        home,
        Enrollment(
            identity.user_id, identity.device_id, server, public_server, device.name, device.os, device.os_version
        ),
    )
    print(f"enrolled {device.name!r} as device {identity.device_id}; start it with `productimon-collector run`")
    print(f"or as a service: `productimon-collector install-service`, then {enable_hint()}")
    return 0


def cmd_run(home: CollectorHome, args: argparse.Namespace) -> int:
    if not home.identity_file.exists() and home.retired_file.exists():
        raise UserFacingError(
            "this computer's device was refused for good by the gateway (see `productimon-collector status`); "
            "run `productimon-collector enroll` to record again"
        )
    settings = load_collector_settings(home)
    stop = threading.Event()

    def stop_on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, stop_on_signal)
    signal.signal(signal.SIGINT, stop_on_signal)
    Agent(home, settings).run(stop)
    return 0


def _ago(ms: int | None, now: float) -> str:
    if ms is None:
        return "never"
    moment = dt.datetime.fromtimestamp(ms / 1000).astimezone()
    seconds = max(0, int(now - ms / 1000))
    return f"{moment:%Y-%m-%d %H:%M:%S} ({_duration(seconds)} ago)"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def status_report(home: CollectorHome, now: float) -> dict:
    """Everything `status` shows, as plain data (also printed with --json)."""
    report: dict = {"home": str(home.root), "enrolled": home.identity_file.exists()}
    if report["enrolled"]:
        enrollment = load_enrollment(home)
        report.update(
            device_id=enrollment.device_id,
            device_name=enrollment.device_name,
            user_id=enrollment.user_id,
            server=enrollment.server,
        )
        try:
            validity = certificate_validity(home)
            report["certificate_valid_until"] = validity.not_after.isoformat(timespec="seconds")
        except NotEnrolled as exc:
            report["certificate_problem"] = str(exc)
    elif home.retired_file.exists():
        try:
            report["retired"] = json.loads(home.retired_file.read_text())
        except (OSError, ValueError):
            report["retired"] = {"reason": "the gateway refused this device for good"}
    report["running"] = is_running(home)
    until = pause_until_ms(home)
    report["paused"] = pause_in_effect(until, int(now * 1000))
    report["paused_until_ms"] = until or None
    if home.spool_file.exists():
        with Spool(home.spool_file) as spool:
            s: SpoolStatus = spool.status()
            report["spool"] = {
                "depth": s.depth,
                "bytes": s.bytes,
                "oldest_ms": s.oldest_ms,
                "refused_when_full": s.refused_when_full,
                "expired": s.expired,
                "last_upload_ms": s.last_ack_ms,
            }
    try:
        running = json.loads(home.status_file.read_text())
        upload = running.get("upload") or {}
        if upload.get("last_error"):
            report["upload_problem"] = {k: upload.get(k) for k in ("address", "last_error", "last_error_ms")}
        if report["running"]:
            report["unavailable"] = running.get("unavailable", [])
            report["sources"] = running.get("sources") or []
            report["browser_reports"] = running.get("browser_reports")
            report["activitywatch_api"] = running.get("activitywatch_api")
            report["last_report_ms"] = running.get("updated_ms")
    except (OSError, ValueError):
        pass
    return report


def cmd_status(home: CollectorHome, args: argparse.Namespace) -> int:
    now = time.time()
    report = status_report(home, now)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0 if report["enrolled"] else 3
    if not report["enrolled"]:
        retired = report.get("retired")
        if retired:
            server, device = retired.get("server", "?"), retired.get("device_id", "?")
            when, dropped = _ago(retired.get("at_ms"), now), retired.get("dropped", 0)
            print(f"enrolled:     no: the gateway at {server} refused device {device} for good, {when}:")
            print(f"              {retired['reason']}")
            print(f"              the collector stopped; its credentials and the {dropped} intervals waiting to be")
            print("              sent were removed. Run `productimon-collector enroll` to record again")
            return 3
        print(f"enrolled:     no (home {home.root}); run `productimon-collector enroll`")
        return 3
    print(f"enrolled:     yes, device {report['device_id']} ({report['device_name']}), gateway {report['server']}")
    state = "running" if report["running"] else "not running"
    if report["paused"]:
        until = report["paused_until_ms"]
        state += ", paused" + (f" until {dt.datetime.fromtimestamp(until / 1000):%H:%M}" if until else "")
    print(f"collector:    {state}")
    spool = report.get("spool")
    if spool:
        print(f"spool:        {spool['depth']} intervals ({spool['bytes']} bytes) waiting to be sent")
        print(f"              {spool['refused_when_full']} intervals could not be kept because the spool was full")
        if spool["expired"]:
            print(f"              {spool['expired']} intervals were dropped, unsent after {SPOOL_MAX_AGE_DAYS} days")
        print(f"last upload:  {_ago(spool['last_upload_ms'], now)}")
    else:
        print("spool:        empty (nothing recorded yet)")
    problem = report.get("upload_problem")
    if problem:
        print(f"upload:       failing since {_ago(problem['last_error_ms'], now)} at {problem['address']}: "
              f"{problem['last_error']}")  # fmt: skip
    if "certificate_valid_until" in report:
        until = dt.datetime.fromisoformat(report["certificate_valid_until"])
        left = (until - dt.datetime.now(dt.timezone.utc)).total_seconds()
        expiry = "EXPIRED" if left <= 0 else f"in {_duration(left)}, renewed automatically before then"
        print(f"certificate:  valid until {until:%Y-%m-%d %H:%M} UTC ({expiry})")
    else:
        print(f"certificate:  {report.get('certificate_problem')}")
    browser = report.get("browser_reports")
    if browser is not None:
        refused = sum(browser["refused"].values())
        print(f"browser:      {browser['accepted']} tab reports taken, {refused} refused since start")
    watchers = report.get("activitywatch_api")
    if watchers is not None:
        refused = sum(watchers["refused"].values())
        until = watchers.get("forwarded_until_ms")
        print(f"activitywatch: watchers report to http://127.0.0.1:{watchers['port']}/api/0/; {watchers['accepted']} "
              f"requests taken, {refused} refused since start; forwarded until {_ago(until, now)}: "
              f"{watchers['intervals']} intervals stored, {watchers['merged']} merged")  # fmt: skip
        if watchers.get("last_error"):
            print(f"              forwarding failing: {watchers['last_error']}")
    for line in report.get("sources", []):
        print(f"source:       {line}")
    for line in report.get("unavailable", []):
        print(f"unavailable:  {line}")
    return 0


def cmd_pause(home: CollectorHome, args: argparse.Namespace) -> int:
    load_enrollment(home)
    until = int((time.time() + args.minutes * 60) * 1000) if args.minutes else 0
    home.paused_file.write_text(str(until))
    print("tracking paused" + (f" for {args.minutes:g} min" if args.minutes else " until `resume`"))
    return 0


def cmd_resume(home: CollectorHome, args: argparse.Namespace) -> int:
    load_enrollment(home)
    home.paused_file.unlink(missing_ok=True)
    print("tracking resumed")
    return 0


def cmd_unenroll(home: CollectorHome, args: argparse.Namespace) -> int:
    enrollment = load_enrollment(home)
    if is_running(home):
        raise UserFacingError(
            "the collector is running; stop it first (e.g. `systemctl --user stop productimon-collector`)"
        )
    creds = load_credentials(home)
    if home.spool_file.exists() and not args.discard:
        with Spool(home.spool_file) as spool, DeviceIngest(enrollment.server, creds) as client:
            while spool.depth:
                try:
                    upload_once(spool, client)
                except _rpc_errors() as exc:
                    raise UserFacingError(
                        f"{spool.depth} intervals are not delivered yet and the gateway did not take them "
                        f"({rpc_failure('upload', exc)}); try again later, or add --discard to drop them"
                    ) from None
    if not args.local_only:
        try:
            revoke_self(enrollment.server, creds)
        except _rpc_errors() as exc:
            if exc.code() is not StatusCode.PERMISSION_DENIED:  # already revoked: nothing left to do there
                raise UserFacingError(
                    f"{rpc_failure('could not revoke this device at the gateway', exc)}; try again, or add "
                    "--local-only and revoke it from the dashboard"
                ) from None
    forget_device(home)
    forget_recording(home)
    print(f"unenrolled device {enrollment.device_id} ({enrollment.device_name}); its data stays in your account")
    return 0


def cmd_install_service(home: CollectorHome, args: argparse.Namespace) -> int:
    load_enrollment(home)
    text = service_file(Path(sys.executable), home.root)
    if args.print:
        sys.stdout.write(text.decode())
        return 0
    target = service_file_location()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(text)
    print(f"wrote {target}; enable it with: {enable_hint()}")
    return 0


DESKTOP_SUPPORT = {
    "kde": "KDE Plasma: nothing to install: the collector loads its KWin script when it starts and unloads it when it "
    "stops",
    "wlroots": "wlroots compositors (sway, Hyprland, river, labwc): nothing to install: the compositor itself tells "
    "the collector which window is in front",
    "x11": "X11: nothing to install",
}


def cmd_install_desktop_support(home: CollectorHome, args: argparse.Namespace) -> int:
    from collector.sampling import session_kind, wayland_desktop

    desktop = args.desktop
    if desktop is None:
        kind = session_kind(os.environ, sys.platform)
        if kind not in ("wayland", "x11"):
            raise UserFacingError(
                "no desktop session here ($WAYLAND_DISPLAY and $DISPLAY unset): run this inside the desktop session, "
                "or name the desktop with --desktop gnome|kde|wlroots"
            )
        desktop = wayland_desktop(os.environ) if kind == "wayland" else "x11"
    if desktop != "gnome":
        print(DESKTOP_SUPPORT[desktop])
        return 0
    from collector.wayland.gnome import install_gnome_extension, xdg_data_home

    for line in install_gnome_extension(xdg_data_home(os.environ), os.environ):
        print(line)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="productimon-collector", description=__doc__)
    p.add_argument("--home", type=Path, help="the collector's state directory (default: PRODUCTIMON_COLLECTOR_HOME)")
    sub = p.add_subparsers(dest="command", required=True)

    su = sub.add_parser("signup", help="create your account on a Productimon server (where its operator allows)")
    su.add_argument("--server", required=True, help="the gateway, host or host:port (ingest port, default 7443)")
    su.add_argument("--public-server", help="host:port of sign-in and enrollment (default: the server's host, 7444)")
    su.add_argument("--ca", required=True, help="the instance's CA certificate (ca.crt from the server)")
    su.add_argument("--email", required=True, help="your email: you sign in with it (you are asked for a password)")
    su.add_argument("--invite-code", help="the invite code from the operator, where sign-up needs one")
    su.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    su.set_defaults(run=cmd_signup)

    e = sub.add_parser("enroll", help="enroll this computer with your Productimon server")
    e.add_argument("--server", required=True, help="the gateway, host or host:port (ingest port, default 7443)")
    e.add_argument("--public-server", help="host:port of sign-in and enrollment (default: the server's host, 7444)")
    e.add_argument("--ca", required=True, help="the instance's CA certificate (ca.crt from the server)")
    e.add_argument("--email", help="your account's email (you are asked for the password)")
    e.add_argument("--code", help="a one-time enrollment code from the dashboard, instead of email and password")
    e.add_argument("--device-name", help="how this computer is named in your dashboard (default: its host name)")
    e.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    e.set_defaults(run=cmd_enroll)

    sub.add_parser("run", help="track and upload until stopped (what the service runs)").set_defaults(run=cmd_run)

    s = sub.add_parser("status", help="enrollment, spool, last upload, certificate expiry")
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=cmd_status)

    pa = sub.add_parser("pause", help="stop recording until `resume` (or for a while)")
    pa.add_argument("--minutes", type=float, help="resume by itself after this many minutes")
    pa.set_defaults(run=cmd_pause)
    sub.add_parser("resume", help="record again").set_defaults(run=cmd_resume)

    u = sub.add_parser("unenroll", help="deliver what waits, revoke this device, forget its keys and spool")
    u.add_argument("--discard", action="store_true", help="drop intervals not yet delivered instead of sending them")
    u.add_argument("--local-only", action="store_true", help="do not contact the gateway to revoke the device")
    u.set_defaults(run=cmd_unenroll)

    i = sub.add_parser("install-service", help="run the collector at sign-in (systemd user unit, launchd, Startup)")
    i.add_argument("--print", action="store_true", help="print the service file instead of installing it")
    i.set_defaults(run=cmd_install_service)

    d = sub.add_parser(
        "install-desktop-support", help="install what this desktop needs to show the collector the window in front"
    )
    d.add_argument(
        "--desktop", choices=["gnome", "kde", "wlroots", "x11"], help="the desktop (default: this session's)"
    )
    d.set_defaults(run=cmd_install_desktop_support)

    im = sub.add_parser(
        "import-activitywatch",
        help="import this computer's ActivityWatch history (an export from its web UI or GET /api/0/export)",
    )
    im.add_argument("file", type=Path, help="the export's JSON file ('-' reads it from stdin)")
    im.add_argument(
        "--all-or-nothing",
        action="store_true",
        help="import nothing when any part of the file is refused (by default the rest is imported)",
    )
    im.set_defaults(run=cmd_import_activitywatch)
    return p


@command("productimon-collector")
def main() -> int:
    args = parser().parse_args()
    home = CollectorHome(args.home.expanduser().resolve()) if args.home else CollectorHome.default()
    try:
        return args.run(home, args)
    except NotEnrolled as exc:
        raise UserFacingError(str(exc)) from None
