"""testbed/activitywatch.py against the real aw-server 0.12.0 and aw-client 0.5.15 in their own venv: a short
morning recorded through aw-client's heartbeats, then ActivityWatch's own totals (fullDesktopQuery) and export."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from testbed.activitywatch import AwServer, canonical_totals, ensure_aw_env, export_all, plan_heartbeats, record_day

HOST = "ann-laptop"
DAY = datetime(2026, 3, 2, tzinfo=UTC)
CHROME = "Google-chrome"  # one of ActivityWatch's names for Chrome's window: web time counts only while it is in front
DOCS = {"url": "https://docs.python.org/3/", "title": "3.13 Documentation", "audible": False, "incognito": False}


def at(hhmm: str) -> str:
    hours, minutes = map(int, hhmm.split(":"))
    return (DAY + timedelta(hours=hours, minutes=minutes)).isoformat()


def segment(bucket: str, start: str, end: str, data: dict, every_s: float = 5) -> dict:
    return {"bucket": bucket, "start": at(start), "end": at(end), "every_s": every_s, "data": data}


# 09:00-09:20 Code, 09:20-09:40 Chrome on the Python docs with the person away from 09:30, 09:40-09:50 Code again.
MORNING = [
    segment("window", "09:00", "09:20", {"app": "Code", "title": "main.py"}),
    segment("window", "09:20", "09:40", {"app": CHROME, "title": "3.13 Documentation"}),
    segment("window", "09:40", "09:50", {"app": "Code", "title": "main.py"}),
    segment("afk", "09:00", "09:30", {"status": "not-afk"}, every_s=10),
    segment("afk", "09:30", "09:40", {"status": "afk"}, every_s=10),
    segment("afk", "09:40", "09:50", {"status": "not-afk"}, every_s=10),
    segment("web", "09:00", "09:50", DOCS, every_s=10),
]


def test_a_segment_is_heartbeats_from_its_start_to_its_end() -> None:
    away = {"bucket": "afk", "start": at("09:00"), "end": "2026-03-02T09:00:12Z", "data": {"status": "afk"}}
    buckets, beats = plan_heartbeats(HOST, [away])
    assert buckets == {
        "aw-watcher-window_ann-laptop": "currentwindow",
        "aw-watcher-afk_ann-laptop": "afkstatus",
        "aw-watcher-web-chrome_ann-laptop": "web.tab.current",
    }
    assert beats == [
        ["aw-watcher-afk_ann-laptop", f"2026-03-02T09:00:{second}+00:00", {"status": "afk"}, 6.0]
        for second in ("00", "05", "10", "12")
    ]
    with pytest.raises(ValueError, match="overlap"):
        plan_heartbeats(HOST, [segment("window", "09:00", "09:10", {}), segment("window", "09:05", "09:20", {})])
    with pytest.raises(ValueError, match="time zone"):
        plan_heartbeats(HOST, [{"bucket": "afk", "start": "2026-03-02T09:00", "end": at("09:01"), "data": {}}])


@pytest.fixture(scope="module")
def morning(tmp_path_factory: pytest.TempPathFactory):
    ensure_aw_env()
    with AwServer(tmp_path_factory.mktemp("activitywatch")) as server:
        record_day(server.url, HOST, MORNING)
        yield server


def test_activitywatch_totals_are_what_the_script_implies(morning: AwServer) -> None:
    totals = canonical_totals(morning.url, HOST, at("08:00"), at("11:00"))
    # AFK time is never an app's: Chrome's 09:30-09:40 is left out.
    assert totals["apps"] == pytest.approx({"Code": 30 * 60, CHROME: 10 * 60}, abs=1)
    assert totals["sites"] == pytest.approx({"docs.python.org": 10 * 60}, abs=1)
    # ActivityWatch's own browser figure counts the browser in front, AFK or not.
    theirs = canonical_totals(morning.url, HOST, at("08:00"), at("11:00"), afk_filter_for_browser=False)
    assert theirs["sites"] == pytest.approx({"docs.python.org": 20 * 60}, abs=1)
    assert theirs["apps"] == totals["apps"]
    # A period cuts the events at its edges.
    assert canonical_totals(morning.url, HOST, at("09:10"), at("09:25"))["apps"] == pytest.approx(
        {"Code": 10 * 60, CHROME: 5 * 60}, abs=1
    )


def test_the_export_holds_every_bucket_with_its_merged_events(morning: AwServer) -> None:
    buckets = export_all(morning.url)["buckets"]
    assert set(buckets) == {f"aw-watcher-{kind}_{HOST}" for kind in ("window", "afk", "web-chrome")}
    window = buckets[f"aw-watcher-window_{HOST}"]
    assert (window["type"], window["hostname"], window["client"]) == ("currentwindow", HOST, "productimon-testbed")
    events = sorted(window["events"], key=lambda event: event["timestamp"])
    assert [(e["timestamp"], e["duration"], e["data"]["app"]) for e in events] == [
        (at("09:00"), 1200.0, "Code"),
        (at("09:20"), 1200.0, CHROME),
        (at("09:40"), 600.0, "Code"),
    ]
    afk = sorted(buckets[f"aw-watcher-afk_{HOST}"]["events"], key=lambda event: event["timestamp"])
    assert [e["data"]["status"] for e in afk] == ["not-afk", "afk", "not-afk"]
    assert [e["data"]["url"] for e in buckets[f"aw-watcher-web-chrome_{HOST}"]["events"]] == [DOCS["url"]]
