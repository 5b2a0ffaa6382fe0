"""What the dashboard tests share: accounts with real activity sent through the gateway, and AppTest driving.

Each account's app, site and device names carry a random mark, so a test can tell one account's data from
another's anywhere on a page (text, tables, chart specs).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from collector.transport import IngestClient
from dashboard.period import preset_period, viewer_zone
from infra.devices import enroll_device, new_account
from schemas.api_client import log_in
from schemas.codec import encode_interval
from tests.conftest import eventually, store_recorded
from warehouse import queries

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
PAGES = ("overview", "timeline", "trends", "focus", "categories", "goals", "devices", "data", "sharing")


def _activity_start(now: datetime) -> datetime:
    """Three hours ago on a whole minute, inside "Last 7 days" (the default period); two hours earlier still when
    the hour of activity from there would cross midnight (UTC, the pages' zone here), so every page puts it on
    one day whatever the time of day (at 02:10 a start three hours back split a day's total 51 + 4)."""
    start = now.replace(second=0, microsecond=0) - timedelta(hours=3)
    return start - timedelta(hours=2) if (start + timedelta(hours=2)).date() != start.date() else start


T0 = _activity_start(datetime.now(UTC))


@dataclass
class Account:
    user_id: str
    email: str
    password: str
    mark: str
    devices: dict[str, str]  # device id -> name

    @property
    def names(self) -> list[str]:
        """Strings only this account's data contains."""
        return [self.mark, self.user_id, self.email, *self.devices]

    def token(self, settings) -> str:
        return log_in(settings.gateway_public_address, ca_pem(settings), self.email, self.password).token


def ca_pem(settings) -> bytes:
    return (settings.pki_dir / "ca.crt").read_bytes()


def _interval(seq: int, start: datetime, seconds: float, app: str, *, url=None, idle=False, keys=0, clicks=0):
    return {
        "event_id": str(uuid.uuid4()),
        "device_seq": seq,
        "start": int(start.timestamp() * 1000),
        "end": int((start + timedelta(seconds=seconds)).timestamp() * 1000),
        "app": app,
        "title": f"{app} window",
        "url": url,
        "keystrokes": keys,
        "clicks": clicks,
        "idle": idle,
    }


def activity(mark: str, start: datetime) -> tuple[list[dict], list[dict]]:
    """Two devices' intervals: on the first, editor and browser with a break; on the second, a terminal."""
    first, second = [], []
    t = start
    for i in range(20):  # 20 min of the editor, one interval a minute
        first.append(_interval(i, t, 60, f"Editor{mark}", keys=90, clicks=2))
        t += timedelta(minutes=1)
    for i in range(10):  # 10 min in the browser on one site (the query string never arrives)
        first.append(_interval(20 + i, t, 60, f"Browser{mark}", url=f"https://docs{mark}.example.org/p?q=1", clicks=5))
        t += timedelta(minutes=1)
    first.append(_interval(30, t, 600, f"Browser{mark}", idle=True))  # away for 10 min: a break
    t += timedelta(minutes=10)
    for i in range(15):
        first.append(_interval(31 + i, t, 60, f"Editor{mark}", keys=60, clicks=1))
        t += timedelta(minutes=1)
    for i in range(5):
        second.append(_interval(i, start + timedelta(minutes=2 * i), 120, f"Terminal{mark}", keys=30))
    return first, second


def send_intervals(settings, email: str, password: str, device_name: str, intervals: list[dict]) -> str:
    """Enroll a device of the account and send its intervals through the gateway; its device id."""
    identity, creds = enroll_device(settings, email, password, device_name)
    with IngestClient(settings.gateway_address, creds) as client:
        assert client.send_batch([encode_interval(i) for i in intervals]).accepted == len(intervals)
    return identity.device_id


def interval(seq: int, start: datetime, seconds: float, app: str, **details) -> dict:
    """One interval as a collector sends it (`url`, `idle`, `keys`, `clicks` as keywords)."""
    return _interval(seq, start, seconds, app, **details)


def make_account(settings, warehouse_client, start: datetime = T0) -> Account:
    """A new account with two devices and their activity sent through the gateway, stored by the worker."""
    mark = uuid.uuid4().hex[:6]
    user_id, email, password = new_account(settings)
    batches = activity(mark, start)
    devices = {}
    for name, batch in zip((f"laptop-{mark}", f"desk-{mark}"), batches, strict=True):
        identity, creds = enroll_device(settings, email, password, name)
        devices[identity.device_id] = name
        with IngestClient(settings.gateway_address, creds) as client:
            assert client.send_batch([encode_interval(i) for i in batch]).accepted == len(batch)
    expected = sum(i["end"] - i["start"] for b in batches for i in b if not i["idle"]) / 1000
    day = (start - timedelta(days=1), start + timedelta(days=1))
    eventually(lambda: queries.totals(warehouse_client, user_id, *day)["active_seconds"].iloc[0] == expected, 90)
    # The sessions are written by the same worker; wait for both devices' last app session too.
    eventually(lambda: len(queries.app_timeline(warehouse_client, user_id, *day, day=start.date())) >= 4, 90)
    return Account(user_id, email, password, mark, devices)


@contextmanager
def dashboard_env_of(stack) -> Iterator[None]:
    """`stack`'s settings as its dashboard process would get them, its own warehouse login included (AppTest runs
    the app in this process)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in stack.env_for("dashboard").items():
            if name.startswith("PRODUCTIMON_"):
                patch.setenv(name, value)
        st.cache_resource.clear()
        yield
        st.cache_resource.clear()


@pytest.fixture(scope="module")
def dashboard_env(stack) -> Iterator[None]:
    """The session stack's settings as its dashboard process would get them."""
    with dashboard_env_of(stack):
        yield


def new_app(query: dict[str, str] | None = None, timezone: str = "UTC") -> AppTest:
    """The dashboard as a browser in `timezone` opens it."""
    at = AppTest.from_file(APP, default_timeout=90)
    at.context["timezone"] = timezone
    for name, value in (query or {}).items():
        at.query_params[name] = value
    return at


def signed_in_app(account: Account, timezone: str = "UTC") -> AppTest:
    """The dashboard after signing in through its form with the account's email and password."""
    at = new_app(timezone=timezone).run()
    at.text_input(key="sign_in_email").input(account.email)
    at.text_input(key="sign_in_password").input(account.password)
    at.form_submit_button[0].click().run()
    assert not at.exception, at.exception
    return at


def open_page(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def default_period():
    """The period the dashboard shows by default (Last 7 days, UTC, as the tests' browser says)."""
    zone = viewer_zone("UTC")
    return preset_period("Last 7 days", datetime.now(zone).date(), zone)


def metric(at: AppTest, label: str) -> str:
    found = [m.value for m in at.metric if m.label == label]
    assert found, f"no metric {label!r}; have {[m.label for m in at.metric]}"
    return found[0]


def everything_shown(at: AppTest) -> str:
    """All that the page holds: every element's content, table cells and chart specs with their data."""
    parts: list[str] = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            parts.append(str(proto))
        if getattr(node, "type", None) in ("arrow_data_frame", "dataframe", "table"):
            try:
                parts.append(node.value.to_string())
            except Exception as exc:  # a frame that cannot be read is reported in the text itself
                parts.append(f"unreadable table: {exc}")
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(parts)


@dataclass
class Chart:
    spec: dict
    data: pd.DataFrame  # the rows the chart draws

    def encoding(self, channel: str) -> dict:
        return self.spec.get("encoding", {}).get(channel, {})


def charts_shown(at: AppTest) -> list[Chart]:
    """Every Vega-Lite chart on the page, as the browser gets it: its spec and its data."""
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    found = []
    for element in [*at.get("arrow_vega_lite_chart"), *at.get("vega_lite_chart")]:
        proto = element.proto
        spec = json.loads(proto.spec)
        frames = [convert_arrow_bytes_to_pandas_df(d.data.data) for d in proto.datasets]
        if proto.HasField("data") and proto.data.data:
            frames.append(convert_arrow_bytes_to_pandas_df(proto.data.data))
        found.append(Chart(spec, frames[0] if frames else pd.DataFrame()))
    return found


def chart_of(at: AppTest, field: str, channel: str = "x") -> Chart:
    """The chart on the page whose `channel` draws `field`."""
    matching = [c for c in charts_shown(at) if c.encoding(channel).get("field") == field]
    assert matching, f"no chart draws {field} on {channel}: {[c.spec.get('encoding') for c in charts_shown(at)]}"
    return matching[0]


def live_crowd(warehouse_client, week, people: int) -> None:
    """`people` accounts active in `week` an hour ago, stored as the worker stores a running collector's time (received
    a minute after it happened) from an enrolled device: a crowd that counts for the insights."""
    now = datetime.now(UTC)
    start = max(now - timedelta(hours=2), datetime.combine(week, datetime.min.time(), tzinfo=UTC))
    end = min(start + timedelta(minutes=50), now - timedelta(minutes=1))
    users = [f"crowd-{uuid.uuid4().hex[:8]}" for _ in range(people)]
    rows = [
        {"user_id": u, "device_id": "laptop", "event_id": str(uuid.uuid4()), "device_seq": 0,
         "start": int(start.timestamp() * 1000), "end": int(end.timestamp() * 1000), "app": "Code", "title": "",
         "site": "", "keystrokes": 1, "clicks": 0, "idle": False, "received_at": int(end.timestamp() * 1000) + 60_000}
        for u in users
    ]  # fmt: skip
    store_recorded(warehouse_client, rows, [(u, "laptop") for u in users])


def release_insights(warehouse_client, week, k: int, epsilon: float = 10.0, crowd: int = 0) -> dict:
    """Release a week's insights now, as the gateway's weekly job does (warehouse/insights.py), with anyone active
    on a day of it counting, and a `crowd` of live people added first; the figures as stored, by figure."""
    from warehouse.insight_rules import Budget
    from warehouse.insights import InsightSettings, release_week, releases

    if crowd:
        live_crowd(warehouse_client, week, crowd)
    release_week(warehouse_client, week, InsightSettings(Budget(epsilon), k=k, min_active_days=1), datetime.now(UTC))
    return releases(warehouse_client, week)
