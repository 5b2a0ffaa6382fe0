"""ActivityWatch's own server and Productimon on the same generated year, side by side (issue 24).

The year: one person's realistic year on one computer (testbed/realistic.py), given to ActivityWatch as its window,
AFK and web watchers would have recorded it (`activitywatch_export`, imported through aw-server's own
/api/0/import) and to Productimon as its collector records it (`store`, as the worker stores it). ActivityWatch is
aw-server 0.12.0 from PyPI in a venv of its own (testbed/activitywatch.py), with its default peewee (SQLite) storage.

For a day, a week, a month and a year ending at midnight: the time per app, asked of aw-server with the query its web
UI and aw-client's fullDesktopQuery use (window events intersected with not-afk time, merged by app) over its REST
API, and of Productimon with `warehouse.queries.time_per_app` over the warehouse's HTTP interface. Both are timed
from this process, medians of several rounds; the answers must agree to the second for every app. Also: the import
into aw-server (its bulk insert, events/s) and each side's disk for the year.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench._stack import bench_stack, stored_bytes
from testbed.activitywatch import AwServer, post_json, time_per_app_of
from testbed.realistic import Person, activitywatch_export, describe, person_intervals, store
from warehouse.client import connect
from warehouse.queries import time_per_app

PERSON = Person("peer", 7, ("laptop",), weekday_hours=10.5)
HOST = "peer-laptop"
PERIODS = {"day": 1, "week": 7, "month": 30, "year": 365}
AW_ROUNDS = {"day": 7, "week": 5, "month": 3, "year": 3}
OURS_ROUNDS = 21
TOLERANCE_S = 1.0  # per app: ActivityWatch keeps durations as float seconds


def _ours(client, start: datetime, end: datetime) -> dict[str, float]:
    answer = time_per_app(client, PERSON.user_id, start, end)
    return {str(app): float(seconds) for app, seconds in zip(answer["app"], answer["seconds"], strict=True)}


def _timed(fn, rounds: int) -> tuple[float, object]:
    timings, answer = [], None
    for _ in range(rounds):
        began = time.perf_counter()
        answer = fn()
        timings.append((time.perf_counter() - began) * 1000)
    return statistics.median(timings), answer


def _largest_difference(a: dict[str, float], b: dict[str, float]) -> float:
    return max((abs(a.get(app, 0.0) - b.get(app, 0.0)) for app in set(a) | set(b)), default=0.0)


def _directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run(progress) -> dict:
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    frame = person_intervals(PERSON, 365, midnight)
    export = activitywatch_export(frame, HOST)
    events = sum(len(bucket["events"]) for bucket in export["buckets"].values())
    progress(f"generated {len(frame):,} intervals, {events:,} ActivityWatch events")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-aw-peer-") as tmp:
        stack = bench_stack(Path(tmp) / "productimon")
        (Path(tmp) / "aw").mkdir()
        with AwServer(Path(tmp) / "aw") as server:
            began = time.monotonic()
            post_json(f"{server.url}/api/0/import", export)
            aw_import_s = time.monotonic() - began
            progress(f"aw-server imported {events:,} events in {aw_import_s:.0f} s ({events / aw_import_s:,.0f}/s)")
            aw_bytes = _directory_bytes(Path(tmp) / "aw" / "home")
            try:
                stack.start_warehouse()
                client = connect(stack.settings)
                store(client, frame, progress)
                for period, days in PERIODS.items():
                    start, end = midnight - timedelta(days=days), midnight
                    asked = lambda s=start, e=end: time_per_app_of(server, HOST, s, e)  # noqa: E731
                    aw_ms, aw_answer = _timed(asked, AW_ROUNDS[period])
                    ours_ms, ours_answer = _timed(lambda s=start, e=end: _ours(client, s, e), OURS_ROUNDS)
                    assert isinstance(aw_answer, dict) and isinstance(ours_answer, dict)
                    results[period] = {
                        "activitywatch_ms": round(aw_ms, 1),
                        "productimon_ms": round(ours_ms, 1),
                        "ratio": round(aw_ms / ours_ms, 1),
                        "apps": len(ours_answer),
                        "active_hours": round(sum(ours_answer.values()) / 3600, 1),
                        "largest_difference_s": round(_largest_difference(aw_answer, ours_answer), 3),
                    }
                    progress(
                        f"{period:<6} ActivityWatch {aw_ms:9.1f} ms   Productimon {ours_ms:7.1f} ms   "
                        f"{aw_ms / ours_ms:7.1f}x   ({len(ours_answer)} apps, {results[period]['active_hours']} h, "
                        f"largest difference {results[period]['largest_difference_s']} s)"
                    )
                ours_bytes = sum(stored_bytes(client).values())
                client.close()
            finally:
                stack.down()
    agree = all(r["largest_difference_s"] <= TOLERANCE_S for r in results.values())
    faster = all(r["ratio"] > 1 for r in results.values())
    return {
        "data": f"testbed/realistic.py, one person's year on one computer: {describe(frame)}; as ActivityWatch "
        f"watchers record it, {events:,} events",
        "activitywatch": "aw-server 0.12.0 (PyPI, peewee/SQLite storage), its REST query API",
        "time_per_app": results,
        "activitywatch_import_events_per_s": round(events / aw_import_s),
        "activitywatch_disk_bytes_per_event": round(aw_bytes / events, 1),
        "productimon_disk_bytes_per_interval": round(ours_bytes / len(frame), 1),
        "disk_ratio_activitywatch_to_productimon_for_the_year": round(aw_bytes / ours_bytes, 2),
        "target": "Productimon answers faster than ActivityWatch for each period, each app's time within "
        f"{TOLERANCE_S:g} s of ActivityWatch's",
        "meets_target": agree and faster,
    }
