"""Against the real ActivityWatch from PyPI (aw-server 0.12.0, aw-client 0.5.15, in a venv of their own:
testbed/activitywatch.py): a day recorded through aw-client into aw-server, exported by aw-server, imported with
`productimon-collector import-activitywatch`, and every app's and site's total held against ActivityWatch's own
canonical query; then aw-client reporting into the collector's compatible API, found in the warehouse."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from collector.spool import Spool
from infra.processes import free_port
from schemas.codec import encode_interval
from testbed.activitywatch import AwServer, canonical_totals, ensure_aw_env, export_all, record_day
from testbed.collector_process import collector_command, enrolled_home, run_collector, start_collector, stop_collector
from testbed.desktop import virtual_desktop
from tests.conftest import eventually
from warehouse.queries import time_per_app, time_per_site

pytestmark = pytest.mark.e2e

HOST = "ann-laptop"
DAY = (datetime.now(UTC) - timedelta(days=2)).replace(hour=8, minute=0, second=0, microsecond=0)
APPS = ["Code", "Google-chrome", "Terminal", "Slack"]
SITES = ["https://docs.python.org/3/library/", "https://github.com/org/repo/pull/7", "https://www.example.com/"]


def seg(bucket: str, start: datetime, end: datetime, **data) -> dict:
    return {"bucket": bucket, "start": start.isoformat(), "end": end.isoformat(), "every_s": 30, "data": data}


def working_day(seed: int = 7) -> list[dict]:
    """Eight hours: apps in stretches of 3 to 25 minutes, Chrome on one or two sites per stretch, away for lunch
    (in Chrome) and for three shorter breaks wherever the person was."""
    rng = random.Random(seed)
    script, at, end = [], DAY, DAY + timedelta(hours=8)
    while at < end:
        until = min(end, at + timedelta(minutes=rng.randint(3, 25)))
        app = rng.choice(APPS)
        script.append(seg("window", at, until, app=app, title=f"{app} {rng.randint(1, 40)}"))
        if app == "Google-chrome":
            middle = at + (until - at) / 2 if rng.random() < 0.5 else until
            for start, stop in ((at, middle), (middle, until)):
                if start < stop:
                    script.append(seg("web", start, stop, url=rng.choice(SITES), title="tab", incognito=False))
        at = until
    away = [(DAY + timedelta(hours=4), 45), (DAY + timedelta(hours=1, minutes=50), 10)]
    away += [(DAY + timedelta(hours=6, minutes=5), 7), (DAY + timedelta(hours=7, minutes=31), 12)]
    at = DAY
    for start, minutes in sorted(away):
        script.append(seg("afk", at, start, status="not-afk"))
        script.append(seg("afk", start, start + timedelta(minutes=minutes), status="afk"))
        at = start + timedelta(minutes=minutes)
    script.append(seg("afk", at, end, status="not-afk"))
    return script


def totals_of(frame, key: str) -> dict[str, float]:
    return dict(zip(frame[key], frame["seconds"], strict=True))


def test_an_activitywatch_day_imports_with_activitywatch_s_own_totals_per_app_and_site(
    stack, warehouse_client, tmp_path
):
    ensure_aw_env()
    with AwServer(tmp_path / "aw") as server:
        record_day(server.url, HOST, working_day())
        exported = export_all(server.url)
        theirs = canonical_totals(server.url, HOST, DAY.isoformat(), (DAY + timedelta(hours=9)).isoformat())
    assert set(theirs["apps"]) == set(APPS) and len(theirs["sites"]) == 3  # the day used everything
    path = tmp_path / "aw-export.json"
    path.write_text(json.dumps(exported))

    home, user_id, *_ = enrolled_home(stack.settings, tmp_path / "home")
    done = run_collector(home, "import-activitywatch", str(path))
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert " imported, 0 merged " in first and first.endswith(", 0 refused"), done.stdout
    assert "importing [" in done.stderr  # the progress bar

    period = (DAY - timedelta(hours=1), DAY + timedelta(hours=10))

    def ours() -> dict:
        apps = totals_of(time_per_app(warehouse_client, user_id, *period), "app")
        sites = totals_of(time_per_site(warehouse_client, user_id, *period), "site")
        return {"apps": apps, "sites": sites}

    def matches() -> bool:
        found = ours()
        return all(
            set(found[kind]) == set(theirs[kind])
            and all(abs(found[kind][name] - seconds) <= 1.0 for name, seconds in theirs[kind].items())
            for kind in ("apps", "sites")
        )

    assert eventually(matches, 60), f"ours {ours()} against ActivityWatch's {theirs}"

    again = collector_command(home, "import-activitywatch", str(path))
    assert " 0 imported, " in again.splitlines()[0] and again.splitlines()[0].endswith(", 0 refused")
    assert matches()


def test_a_broken_export_is_refused_in_one_line_or_imported_in_part_as_asked(stack, warehouse_client, tmp_path):
    home, user_id, *_ = enrolled_home(stack.settings, tmp_path / "home")
    cut_short = tmp_path / "cut.json"
    cut_short.write_text('{"buckets": {"aw-watcher-window_h": {"type": "currentwindow", "events": [{"timesta')
    done = run_collector(home, "import-activitywatch", str(cut_short))
    assert done.returncode != 0 and "cut short" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    not_aw = tmp_path / "toggl.json"
    not_aw.write_text(json.dumps([{"project": "x", "duration": 5}]))
    done = run_collector(home, "import-activitywatch", str(not_aw))
    assert "not an ActivityWatch export" in done.stderr and "Traceback" not in done.stderr

    at = DAY.isoformat()
    mixed = {
        "buckets": {
            "aw-watcher-window_h": {
                "id": "aw-watcher-window_h",
                "type": "currentwindow",
                "hostname": "h",
                "events": [
                    {"timestamp": at, "duration": 600, "data": {"app": "Code", "title": "x"}},
                    {"timestamp": at, "duration": -30, "data": {"app": "Ghost"}},
                ],
            },
            "aw-watcher-mood_h": {"id": "aw-watcher-mood_h", "type": "mood.tracker", "hostname": "h", "events": []},
        }
    }
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(mixed))
    strict = run_collector(home, "import-activitywatch", "--all-or-nothing", str(path))
    assert strict.returncode == 1
    assert "nothing was imported" in strict.stdout
    assert "event 1: has a negative duration (-30 s)" in strict.stdout
    assert "has the unknown type 'mood.tracker'" in strict.stdout
    period = (DAY - timedelta(hours=1), DAY + timedelta(hours=1))
    assert time_per_app(warehouse_client, user_id, *period).empty

    lenient = run_collector(home, "import-activitywatch", str(path))
    assert lenient.returncode == 0 and "event 1: has a negative duration" in lenient.stdout
    assert eventually(lambda: totals_of(time_per_app(warehouse_client, user_id, *period), "app") == {"Code": 600.0})


def test_aw_client_reports_into_the_collector_s_compatible_api_and_reaches_the_warehouse(
    stack, warehouse_client, tmp_path
):
    ensure_aw_env()
    port = free_port()
    config = f"activitywatch_api = true\nactivitywatch_api_port = {port}\nactivitywatch_forward_seconds = 1\n"
    home, user_id, *_ = enrolled_home(stack.settings, tmp_path / "home", config)
    now = datetime.now(UTC).replace(microsecond=0)
    # The collector itself recorded 3 minutes of the watchers' time (delivered from its spool at start).
    recorded_from = now - timedelta(minutes=15)
    with Spool(home.spool_file) as spool:
        for seq in range(3):
            start = int((recorded_from + timedelta(minutes=seq)).timestamp() * 1000)
            record = {"event_id": str(uuid.uuid4()), "device_seq": seq, "start": start, "end": start + 60_000}
            record |= {"app": "Recorded", "title": None, "url": None, "keystrokes": 0, "clicks": 0, "idle": False}
            assert spool.append(seq, encode_interval(record))
    with virtual_desktop() as desktop:
        collector = start_collector(home, desktop.env, tmp_path / "collector.log")
        try:
            begin, end = now - timedelta(minutes=20), now - timedelta(minutes=6)
            record_day(
                f"http://127.0.0.1:{port}",
                HOST,
                [
                    seg("window", begin, end, app="Code", title="main.py"),
                    seg("afk", begin, end, status="not-afk"),
                    {
                        **seg("aw-watcher-vim_" + HOST, begin, begin + timedelta(minutes=10), language="python"),
                        "type": "app.editor.activity",
                        "data": {"file": "/home/ann/secret-plans.txt", "project": "/home/ann/rocket", "language": "c"},
                    },
                ],
            )
            period = (now - timedelta(hours=1), now + timedelta(hours=1))
            # 14 minutes of Code, less the 3 the collector recorded itself: no second counts twice.
            expected = {"Code": 660.0, "Recorded": 180.0}
            assert eventually(
                lambda: totals_of(time_per_app(warehouse_client, user_id, *period), "app") == expected, 90
            )

            def editor() -> list[tuple]:
                return warehouse_client.query(
                    "SELECT source, app, title, sum(toUnixTimestamp64Milli(`end`) - toUnixTimestamp64Milli(start)) "
                    "FROM source_intervals FINAL WHERE user_id = {u:String} GROUP BY source, app, title",
                    parameters={"u": user_id},
                ).result_rows

            # Its own stream, never time in front; the project's name only, never a file's path.
            assert eventually(lambda: editor() == [("editor", "productimon-testbed", "rocket", 600_000)], 30), editor()
            forwarded = json.loads(collector_command(home, "status", "--json"))
            assert forwarded["activitywatch_api"]["port"] == port
        finally:
            assert stop_collector(collector) == 0
    assert "secret-plans" not in (home.activitywatch_file.read_bytes().decode("utf-8", "replace"))
