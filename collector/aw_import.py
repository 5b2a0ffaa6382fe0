"""`productimon-collector import-activitywatch FILE`: this computer's ActivityWatch history into the account.

The export is read and planned (schemas/activitywatch.py), this device's privacy choices are applied as they are
to what the collector records (collector/privacy.py), and the records go through the gateway's `Import` call with
the device's certificate (schemas/import_sender.py): the gateway checks them against the same contract as live
data, leaves out what was imported before and cuts what this device recorded itself, and the worker applies the
account's choices again before storing. Progress goes to stderr; the summary to stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from collector.config import CollectorHome, load_collector_settings
from collector.enrolled import load_credentials, load_enrollment
from collector.privacy import PrivacySettings, apply_privacy
from collector.transport import DeviceCredentials, channel_credentials
from plumbing.cli import UserFacingError
from schemas.activitywatch import ImportPlan, NotAnExport, plan_import, read_export
from schemas.import_sender import ImportSummary, send_import


def private_plan(plan: ImportPlan, privacy: PrivacySettings) -> ImportPlan:
    """The plan with the device's privacy choices applied to every record, as the tracker applies them to what it
    samples; one application per distinct (app, title, URL), as a history repeats them."""
    seen: dict[tuple, dict] = {}
    for records in plan.streams.values():
        for n, record in enumerate(records):
            key = (record["app"], record["title"], record["url"])
            private = seen.get(key)
            if private is None:
                private = seen[key] = apply_privacy({"app": key[0], "title": key[1], "url": key[2]}, privacy)
            records[n] = {**record, "app": private["app"], "title": private["title"], "url": private["url"]}
    return plan


def progress_bar(out=sys.stderr, every_s: float = 1.0) -> Callable[[int, int], None]:
    last = [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - last[0] < every_s:
            return
        last[0] = now
        share = done / total if total else 1.0
        filled = int(share * 30)
        print(f"\r    importing [{'#' * filled}{'.' * (30 - filled)}] {done:,}/{total:,}", end="", file=out, flush=True)
        if done >= total:
            print(file=out)

    return show


def read_plan(path: Path) -> ImportPlan:
    """The file's import plan; one readable line when it is not an export."""
    try:
        raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        raise UserFacingError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return plan_import(read_export(raw))
    except NotAnExport as exc:
        raise UserFacingError(f"{path}: {exc}; nothing was imported") from None


def send_as_device(
    server: str,
    creds: DeviceCredentials,
    plan: ImportPlan,
    *,
    all_or_nothing: bool = False,
    progress: Callable[[int, int], None] = lambda done, total: None,
    timeout_s: float = 600.0,
) -> ImportSummary:
    """Send the plan through the gateway's `Import` with the device's certificate."""
    import grpc

    from schemas.wire import ingest_pb2_grpc

    channel = grpc.secure_channel(
        server, channel_credentials(creds), options=[("grpc.max_send_message_length", 16 * 1024 * 1024)]
    )
    try:
        stub = ingest_pb2_grpc.IngestStub(channel)
        return send_import(
            lambda batches: stub.Import(batches, timeout=timeout_s),
            plan,
            int(time.time() * 1000),
            all_or_nothing=all_or_nothing,
            progress=progress,
        )
    except grpc.RpcError as exc:
        raise UserFacingError(
            f"the gateway at {server} stopped the import ({exc.details() or exc.code().name}); what it "
            "acknowledged is stored, and importing the same file again adds only the rest"
        ) from None
    finally:
        channel.close()


def import_file(home: CollectorHome, path: Path, *, all_or_nothing: bool) -> ImportSummary:
    from collector.agent import saved_account_privacy  # the agent forwards watchers' events with private_plan

    enrollment = load_enrollment(home)
    creds = load_credentials(home)
    plan = read_plan(path)
    settings = load_collector_settings(home)
    plan = private_plan(plan, replace(settings.privacy(), account=saved_account_privacy(home)))
    return send_as_device(enrollment.server, creds, plan, all_or_nothing=all_or_nothing, progress=progress_bar())


def cmd_import_activitywatch(home: CollectorHome, args: argparse.Namespace) -> int:
    summary = import_file(home, args.file, all_or_nothing=args.all_or_nothing)
    for line in summary.lines():
        print(line)
    return 0 if summary.sent else 1
