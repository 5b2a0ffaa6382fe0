"""A year of ActivityWatch history imported through the whole local stack (issue 22; docs/activitywatch.md).

The export: `testbed.activitywatch.generated_export`, a year of a window, an AFK and a Chrome watcher (about a
million events), written to a file as aw-server writes its export. Timed from reading the file to the gateway's last
acknowledgement, which comes once the warehouse holds every record (the stack's default `ack_after = stored`), with
the collector's own path: `collector.aw_import` (read, plan, this device's privacy choices, send through the
gateway's Import with the device's certificate). Phases are reported apart.

Baseline, measured in the same run on the same stack: the first BASELINE_INTERVALS of the same intervals sent as live
data by a collector's path (the Upload call, 500 per batch as collectors send), on a device of its own; its rate
beside the import's shows what an import costs against storing live data.

Target (issue 22): a year imports in under two minutes on this machine.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from bench._stack import bench_stack
from collector.aw_import import private_plan, read_plan, send_as_device
from collector.privacy import PrivacySettings
from collector.transport import IngestClient
from infra.devices import enroll_device, new_account
from schemas.codec import encode_interval
from testbed.activitywatch import generated_export
from warehouse.client import connect

TARGET_S = 120.0
LIVE_BATCH = 500
BASELINE_INTERVALS = 20_000


def _count(settings, user_id: str) -> int:
    client = connect(settings)
    try:
        return client.query(
            "SELECT count() FROM intervals WHERE user_id = {u:String}", parameters={"u": user_id}
        ).result_rows[0][0]
    finally:
        client.close()


def run(progress) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-aw-import-") as tmp:
        export = generated_export()
        events = sum(len(b["events"]) for b in export["buckets"].values())
        path = Path(tmp) / "aw-export.json"
        path.write_text(json.dumps(export))
        del export
        progress(f"generated a year of ActivityWatch history: {events:,} events, {path.stat().st_size / 1e6:.0f} MB")
        # The live baseline sends the same year as if it were recent: a window wider than the year.
        stack = bench_stack(Path(tmp) / "stack", interval_max_age_days=400)
        try:
            stack.up(dashboard=False)
            settings = stack.settings
            user_id, email, password = new_account(settings)
            _, creds = enroll_device(settings, email, password, "laptop")

            began = time.monotonic()
            plan = read_plan(path)
            planned = time.monotonic()
            plan = private_plan(plan, PrivacySettings())  # the defaults: titles scrubbed, no rules
            private = time.monotonic()
            last = [0.0]

            def shown(done: int, total: int) -> None:
                if time.monotonic() - last[0] > 10 or done == total:
                    last[0] = time.monotonic()
                    progress(f"import: {done:,} of {total:,} intervals stored ({time.monotonic() - began:.0f} s)")

            summary = send_as_device(settings.gateway_address, creds, plan, progress=shown)
            done = time.monotonic()
            total_s = done - began
            stored = _count(settings, user_id)
            if summary.imported != plan.intervals or summary.refused or stored < plan.intervals:
                raise RuntimeError(f"the import did not store everything: {summary.lines()}, {stored:,} rows")
            progress(
                f"imported {events:,} events ({plan.intervals:,} intervals) in {total_s:.1f} s: "
                f"{events / total_s:,.0f} events/s (read and plan {planned - began:.1f} s, privacy "
                f"{private - planned:.1f} s, send until stored {done - private:.1f} s)"
            )

            records = [r for rs in plan.streams.values() for r in rs][:BASELINE_INTERVALS]
            _, live_creds = enroll_device(settings, email, password, "live")
            encoded = [encode_interval({**r, "device_seq": n}) for n, r in enumerate(records)]
            with IngestClient(settings.gateway_address, live_creds, timeout_s=120) as client:
                live_began = time.monotonic()
                acks = client.upload([encoded[i : i + LIVE_BATCH] for i in range(0, len(encoded), LIVE_BATCH)])
                live_s = time.monotonic() - live_began
            if sum(a.accepted for a in acks) != len(encoded):
                raise RuntimeError("the live baseline did not store everything")
            live_rate = len(encoded) / live_s
            progress(f"baseline, the same intervals sent live: {live_rate:,.0f} intervals/s ({live_s:.1f} s)")
        finally:
            stack.down()
    import_rate = plan.intervals / (done - private)
    return {
        "data": "testbed.activitywatch.generated_export(365): one person's year of window, AFK and Chrome watchers",
        "events": events,
        "intervals": plan.intervals,
        "seconds_total": round(total_s, 1),
        "seconds_read_and_plan": round(planned - began, 1),
        "seconds_privacy": round(private - planned, 1),
        "seconds_send_until_stored": round(done - private, 1),
        "events_per_s": round(events / total_s),
        "import_intervals_per_s": round(import_rate),
        "baseline_live_intervals_per_s": round(live_rate),
        "ratio_import_to_live": round(import_rate / live_rate, 2),
        "target_s": TARGET_S,
        "target": f"a year of ActivityWatch history imported in < {TARGET_S:g} s",
        "meets_target": total_s < TARGET_S,
    }
