"""The dashboard's pure parts: periods, presets and the viewer's clock, how numbers are written, app colours and
time-axis labels, focus figures, exports, share links' rules, share-link records in the identity store, and the
token claims a share link carries."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo, available_timezones

import grpc
import pandas as pd
import pytest
from argon2 import PasswordHasher
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard import charts, export, formatting, share, streaks
from dashboard.access import one_line
from dashboard.period import (
    MAX_DAYS,
    Period,
    local_hour,
    period_from_utc,
    preset_period,
    viewer_today,
    viewer_zone,
    wall_clock,
)
from gateway.identity_store import IdentityStore, InvalidShareLink
from gateway.tokens import (
    DASHBOARD_SCOPE,
    SHARE_SCOPE,
    TokenError,
    ensure_signing_key,
    issue_share_token,
    verify_token,
)

PRAGUE = ZoneInfo("Europe/Prague")
SATURDAY = date(2026, 11, 28)


# --- periods ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("preset", "first", "last"),
    [
        ("Today", SATURDAY, SATURDAY),
        ("Yesterday", date(2026, 11, 27), date(2026, 11, 27)),
        ("This week", date(2026, 11, 23), SATURDAY),
        ("Last 7 days", date(2026, 11, 22), SATURDAY),
        ("Last 30 days", date(2026, 10, 30), SATURDAY),
    ],
)
def test_presets_are_whole_local_days_ending_today(preset, first, last):
    period = preset_period(preset, SATURDAY, PRAGUE)
    assert (period.first, period.last) == (first, last)
    assert period.start == datetime(first.year, first.month, first.day, tzinfo=PRAGUE)
    # Prague is UTC+1 in November: the last day ends at 23:00 UTC.
    assert period.end.astimezone(UTC) == datetime(last.year, last.month, last.day, 23, tzinfo=UTC)


def test_a_custom_period_takes_its_days_in_any_order_and_refuses_none():
    period = preset_period("Custom", SATURDAY, PRAGUE, (SATURDAY, date(2026, 11, 1)))
    assert (period.first, period.last, period.days) == (date(2026, 11, 1), SATURDAY, 28)
    with pytest.raises(ValueError, match="choose the first and the last day"):
        preset_period("Custom", SATURDAY, PRAGUE, None)
    with pytest.raises(ValueError, match="unknown period"):
        preset_period("Forever", SATURDAY, PRAGUE)


def test_a_period_is_bounded_and_knows_the_one_before():
    with pytest.raises(ValueError, match="at most"):
        Period(date(2020, 1, 1), date(2020, 1, 1) + pd.Timedelta(days=MAX_DAYS).to_pytimedelta(), PRAGUE)
    week = preset_period("This week", SATURDAY, PRAGUE)
    before = week.previous()
    assert (before.first, before.last) == (date(2026, 11, 17), date(2026, 11, 22))
    assert before.end == week.start


def test_a_dst_change_day_is_23_hours_long():
    day = Period(date(2026, 3, 29), date(2026, 3, 29), PRAGUE)
    assert (day.end.astimezone(UTC) - day.start.astimezone(UTC)).total_seconds() == 23 * 3600


def test_a_shared_utc_range_comes_back_as_the_same_local_days():
    period = preset_period("Last 7 days", SATURDAY, PRAGUE)
    again = period_from_utc(int(period.start.timestamp()), int(period.end.timestamp()), "Europe/Prague")
    assert again == period


def test_an_unknown_zone_falls_back_to_utc():
    assert viewer_zone("Mars/Olympus") == ZoneInfo("UTC")
    assert viewer_zone(None) == ZoneInfo("UTC")


ZONES = sorted(available_timezones())


@given(st.sampled_from(ZONES))
def test_the_viewers_zone_is_kept_when_every_page_and_query_can_use_it(name):
    from warehouse import queries

    zone = viewer_zone(name)
    assert zone.key == name
    queries._zone(zone.key)  # the Timeline's and Trends' queries take it too, not only the Overview's arithmetic


@pytest.mark.parametrize("name", ["posixrules", "right/UTC", "posix/Europe/Prague", "Mars/Olympus", "", "../etc"])
def test_a_zone_the_query_api_would_refuse_is_utc_on_every_page(name):
    from warehouse import queries

    zone = viewer_zone(name)
    assert zone.key == "UTC"
    queries._zone(zone.key)


def test_today_is_the_viewers_calendar_day_on_every_page():
    moment = datetime(2026, 11, 28, 11, 30, tzinfo=UTC)
    assert viewer_today(ZoneInfo("Pacific/Auckland"), moment) == date(2026, 11, 29)  # 00:30 NZDT
    assert viewer_today(ZoneInfo("America/Los_Angeles"), moment) == date(2026, 11, 28)  # 03:30 PST
    assert viewer_today(ZoneInfo("UTC"), moment) == date(2026, 11, 28)
    zone = ZoneInfo("Pacific/Auckland")
    assert preset_period("Today", viewer_today(zone, moment), zone).start.astimezone(UTC) == datetime(
        2026, 11, 28, 11, tzinfo=UTC
    )


@settings(max_examples=200)
@given(st.integers(0, 4_102_444_800_000), st.sampled_from(ZONES))
def test_charts_and_buckets_show_the_viewers_wall_clock_whatever_the_browser(ms, name):
    moment = pd.Series(pd.to_datetime([ms], unit="ms", utc=True)).astype("datetime64[ms, UTC]")
    local = moment.iloc[0].tz_convert(name)
    shown = wall_clock(moment, name).iloc[0]
    # Carried as UTC: a chart on a UTC scale draws exactly the local time, in any browser.
    assert str(shown.tz) == "UTC"
    assert shown.replace(tzinfo=None) == local.replace(tzinfo=None)
    assert local_hour(moment, name).iloc[0] == local.hour


# --- numbers ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 min"), (29, "0 min"), (31, "1 min"), (3599, "1 h 00 min"), (5400, "1 h 30 min"), (float("nan"), "0 min")],
)
def test_durations_read_like_time_spent(seconds, text):
    assert formatting.duration(seconds) == text


def test_changes_and_shares_say_which_way():
    assert formatting.signed_duration(3900) == "+1 h 05 min"
    assert formatting.signed_duration(-720) == "−12 min"
    assert formatting.signed_duration(10) == "±0 min"
    assert formatting.share(1, 4) == "25 %" and formatting.share(1, 0) == "–"


def test_rates_have_one_decimal_like_every_other_figure():
    assert formatting.rate(2.4) == "2.4" and formatting.rate(16 / 3.5) == "4.6" and formatting.rate(0) == "0.0"
    assert formatting.rate(float("nan")) == "–" and formatting.rate(None) == "–"


@given(st.lists(st.floats(0, 10 * 86400, allow_nan=False), max_size=20))
def test_charts_draw_durations_in_minutes_or_hours_as_fits(seconds):
    unit = formatting.chart_unit(seconds)
    largest = max(seconds, default=0.0)
    assert unit == (formatting.HOURS if largest >= 2 * 3600 else formatting.MINUTES)
    if unit == formatting.MINUTES:
        assert unit.of(largest) < 120  # never thousands of minutes
    else:
        assert unit.of(largest) >= 2  # never a chart of slivers of one hour
    assert formatting.chart_unit([35 * 60, 600]).title == "Minutes"
    assert formatting.chart_unit([5 * 3600]).title == "Hours"


def test_devices_with_the_same_name_can_be_told_apart():
    labels = formatting.device_labels({"aaaaaaaa-1": "laptop", "bbbbbbbb-2": "laptop", "c": "desk"})
    assert labels == {"aaaaaaaa-1": "laptop (aaaaaaaa)", "bbbbbbbb-2": "laptop (bbbbbbbb)", "c": "desk"}


def test_errors_are_one_line():
    assert one_line(ValueError("first line\nsecond line")) == "first line"
    assert one_line(ValueError("")) == "ValueError"

    class Refused(grpc.RpcError):
        def details(self):
            return "wrong email or password"

        def code(self):
            return grpc.StatusCode.UNAUTHENTICATED

    assert one_line(Refused()) == "wrong email or password"


# --- app colours and time labels --------------------------------------------------------------------------------

APP_NAMES = st.text(alphabet="abcdefgXYZ .-—", min_size=1, max_size=8)


@given(st.lists(APP_NAMES, unique=True, max_size=40), st.data())
def test_an_apps_colour_depends_only_on_the_account_never_on_the_other_apps_drawn(account, data):
    every = account + data.draw(st.lists(APP_NAMES.filter(lambda a: a not in account), unique=True, max_size=5))
    app = data.draw(st.sampled_from(every)) if every else "x"
    one_day = data.draw(st.sets(st.sampled_from(every))) if every else set()
    other_day = data.draw(st.sets(st.sampled_from(every))) if every else set()
    assert charts.app_colours(account, one_day | {app})[app] == charts.app_colours(account, other_day | {app})[app]
    # An app used for the first time takes the next place: nobody else's colour changes.
    later = [*account, *data.draw(st.lists(APP_NAMES.filter(lambda a: a not in account), unique=True, max_size=5))]
    before, after = charts.app_colours(account, account), charts.app_colours(later, account)
    assert before == after


def test_the_accounts_first_apps_all_differ_and_a_chart_names_every_app_it_draws():
    account = [f"app{i}" for i in range(45)]
    colours = charts.app_colours(account, account)
    assert len(set(list(colours.values())[: len(charts.PALETTE)])) == len(charts.PALETTE)
    drawn = [f"app{i}" for i in range(44, -1, -1)] * 2  # more than Vega's default legend keeps (30)
    color = charts.app_color("app", drawn, account).to_dict()
    assert color["scale"]["domain"] == charts.legend_order(drawn) and len(color["scale"]["domain"]) == 45
    assert color["scale"]["range"] == [colours[a] for a in color["scale"]["domain"]]
    assert color["legend"]["symbolLimit"] == 0  # no limit: every app drawn is listed
    assert charts.app_color("app", drawn, account, legend=False).to_dict()["legend"] is None


class VegaExpression:
    """Just enough of Vega's expression language to evaluate an axis's labelExpr here, as the browser would:
    literals, datum.value, %, +, ==, >=, ?:, span(domain('x')) and utcFormat."""

    TOKEN = re.compile(r"\s*(\d+|'[^']*'|datum\.value|[A-Za-z_]+|==|>=|[()?:%+,])")

    def __init__(self, text: str) -> None:
        self.tokens, at = [], 0
        while at < len(text.rstrip()):
            match = self.TOKEN.match(text, at)
            assert match, f"cannot read {text[at:]!r}"
            self.tokens.append(match.group(1))
            at = match.end()

    def __call__(self, value: int, span: float) -> str:
        self.value, self.span, self.at = value, span, 0
        result = self.ternary()
        assert self.at == len(self.tokens)
        return result

    def take(self, expected: str | None = None) -> str:
        token = self.tokens[self.at]
        assert expected is None or token == expected, (token, expected)
        self.at += 1
        return token

    def peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def ternary(self):
        condition = self.compare()
        if self.peek() != "?":
            return condition
        self.take("?")
        yes = self.ternary()
        self.take(":")
        no = self.ternary()
        return yes if condition else no

    def compare(self):
        left = self.sum()
        if self.peek() in ("==", ">="):
            op, right = self.take(), self.sum()
            return left == right if op == "==" else left >= right
        return left

    def sum(self):
        total = self.product()
        while self.peek() == "+":
            self.take()
            total = total + self.product()
        return total

    def product(self):
        left = self.primary()
        while self.peek() == "%":
            self.take()
            left = left % self.primary()
        return left

    def primary(self):
        token = self.take()
        if token == "(":
            inside = self.ternary()
            self.take(")")
            return inside
        if token.isdigit():
            return int(token)
        if token.startswith("'"):
            return token[1:-1]
        if token == "datum.value":
            return self.value
        self.take("(")
        if token == "span":
            assert self.take() == "domain" and self.take("(") and self.take() == "'x'" and self.take(")")
            self.take(")")
            return self.span
        assert token == "utcFormat", token
        value = self.ternary()
        self.take(",")
        fmt = self.ternary()
        self.take(")")
        moment = datetime.fromtimestamp(value // 1000, UTC)
        return moment.strftime(fmt.replace("%L", f"{value % 1000:03d}"))


LABEL = VegaExpression(charts.tick_label_expr())
EPOCH_2100 = 4_102_444_800_000


@settings(max_examples=300)
@given(
    st.integers(0, EPOCH_2100),
    st.one_of(st.integers(1, 10_000), st.integers(1, 2 * charts.DAY_MS), st.integers(1, 3 * charts.YEAR_MS)),
    st.data(),
)
def test_time_labels_never_repeat_on_one_axis_whatever_its_span(start, span, data):
    """Whichever ticks the browser picks inside a domain (any zoom), no two read the same; the browser's label
    (the labelExpr, evaluated as Vega does) is the one computed here."""
    ticks = data.draw(st.sets(st.integers(start, start + span), min_size=1, max_size=40))
    # Ticks as Vega places them, on whole seconds, minutes, hours and days, as well as anywhere.
    ticks |= {t - t % step for t in ticks for step in (1000, 60_000, 3_600_000, charts.DAY_MS) if t - t % step >= start}
    labels = [charts.tick_label(t, span) for t in sorted(ticks)]
    assert len(set(labels)) == len(labels), labels
    for t in list(ticks)[:10]:
        assert LABEL(t, span) == charts.tick_label(t, span)


def test_time_labels_read_like_a_clock_to_the_precision_of_the_tick():
    ten = int(datetime(2026, 11, 28, 10, 5, tzinfo=UTC).timestamp() * 1000)
    hour = 3_600_000
    assert charts.tick_label(ten, hour) == "10:05"
    assert charts.tick_label(ten + 30_000, hour) == "10:05:30"
    assert charts.tick_label(ten + 30_250, 2000) == "10:05:30.250"
    midnight = int(datetime(2026, 11, 29, tzinfo=UTC).timestamp() * 1000)
    assert charts.tick_label(midnight, 3 * charts.DAY_MS) == "29 Nov"
    assert charts.tick_label(midnight + 6 * hour, 3 * charts.DAY_MS) == "29 Nov 06:00"
    assert charts.tick_label(midnight, 400 * charts.DAY_MS) == "29 Nov 2026"
    assert charts.tick_label(midnight, 20 * hour) == "00:00"


@given(st.sets(st.dates(date(2024, 1, 1), date(2027, 12, 31)), min_size=1, max_size=366))
def test_day_labels_never_repeat(days):
    labels = charts.day_labels(pd.Series(pd.to_datetime(sorted(days))))
    assert labels.is_unique
    assert charts.day_labels(pd.Series(pd.to_datetime([SATURDAY]))).tolist() == ["Sat 28 Nov"]


# --- focus ------------------------------------------------------------------------------------------------------


def sessions_frame() -> pd.DataFrame:
    starts = pd.to_datetime(["2026-11-27T09:00Z", "2026-11-27T11:00Z", "2026-11-27T14:00Z"], utc=True)
    return pd.DataFrame(
        {
            "start": starts,
            "end": starts + pd.to_timedelta([3600, 1800, 7200], unit="s"),
            "active_seconds": [3600.0, 1800.0, 7200.0],
            "context_switches": [6, 6, 4],
            "keystrokes": [1, 2, 3],
            "clicks": [1, 1, 1],
        }
    )


def test_focus_summary_counts_streaks_breaks_and_switches_per_hour():
    sessions = sessions_frame()
    breaks = pd.DataFrame({"seconds": [3600.0, 5400.0]})
    summary = streaks.summarize(sessions, breaks)
    assert summary.sessions == 3 and summary.breaks == 2
    assert summary.longest_seconds == 7200.0 and summary.break_seconds == 9000.0
    assert summary.switches_per_hour == pytest.approx(16 / 3.5)
    top = streaks.longest_streaks(sessions, n=2)
    assert list(top["active_seconds"]) == [7200.0, 3600.0]
    assert list(top["switches_per_hour"]) == [2.0, 6.0]


def test_switches_by_hour_are_local_and_empty_without_focus():
    by_hour = streaks.switches_by_hour(sessions_frame(), "Europe/Prague")
    assert dict(zip(by_hour["hour"], by_hour["switches_per_hour"], strict=True)) == {10: 6.0, 12: 12.0, 15: 2.0}
    empty = streaks.switches_by_hour(sessions_frame().iloc[0:0], "UTC")
    assert empty.empty and list(empty.columns) == ["hour", "switches_per_hour"]
    assert streaks.summarize(sessions_frame().iloc[0:0], pd.DataFrame({"seconds": []})).switches_per_hour == 0.0


def at(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def focus_frame(rows: list[tuple[str, str, float, int]]) -> pd.DataFrame:
    """Focus sessions (start, end, active seconds, context switches)."""
    return pd.DataFrame(
        {
            "start": pd.Series([at(r[0]) for r in rows], dtype="datetime64[ms, UTC]"),
            "end": pd.Series([at(r[1]) for r in rows], dtype="datetime64[ms, UTC]"),
            "active_seconds": [r[2] for r in rows],
            "context_switches": [r[3] for r in rows],
            "keystrokes": [0] * len(rows),
            "clicks": [0] * len(rows),
        }
    )


def test_focused_is_the_time_inside_focus_sessions_not_the_active_time():
    sessions = focus_frame(
        [
            # 40 minutes of focus, with pauses shorter than a break: 30 of them active.
            ("2026-11-27T09:00Z", "2026-11-27T09:40Z", 1800.0, 3),
            # Another device in focus at the same time: the time counts once, its activity twice.
            ("2026-11-27T09:30Z", "2026-11-27T09:50Z", 1200.0, 1),
            ("2026-11-27T11:00Z", "2026-11-27T11:10Z", 480.0, 0),
        ]
    )
    breaks = pd.DataFrame({"seconds": [70 * 60.0]})
    summary = streaks.summarize(sessions, breaks)
    assert summary.focused_seconds == 60 * 60  # 09:00-09:50 and 11:00-11:10
    assert summary.active_seconds == 58 * 60  # 30 + 20 + 8 active minutes
    assert summary.longest_seconds == 40 * 60  # the longest session, start to end, not its 30 active minutes
    assert summary.longest_break_seconds == 70 * 60 and summary.context_switches == 4
    assert summary.switches_per_hour == pytest.approx(4.0)  # per focused hour
    paused = focus_frame([("2026-11-27T09:00Z", "2026-11-27T09:40Z", 1800.0, 2)])
    alone = streaks.summarize(paused, pd.DataFrame({"seconds": []}))
    assert (alone.focused_seconds, alone.active_seconds) == (2400.0, 1800.0)
    top = streaks.longest_streaks(sessions, n=2)
    assert list(top["span_seconds"]) == [2400.0, 1200.0] and list(top["switches_per_hour"]) == [4.5, 3.0]


def _minutes(n: int) -> pd.Timestamp:
    return pd.Timestamp(n * 60_000, unit="ms", tz="UTC")


SESSION = st.tuples(st.integers(0, 10_000), st.integers(0, 3_000)).map(lambda r: (_minutes(r[0]), _minutes(sum(r))))


@given(st.lists(SESSION, min_size=1, max_size=30))
def test_focused_time_and_the_breaks_between_sessions_fill_the_span_from_first_start_to_last_end(spans):
    spans = sorted(spans)
    sessions = pd.DataFrame(
        {
            "start": pd.Series([s for s, _ in spans], dtype="datetime64[ms, UTC]"),
            "end": pd.Series([e for _, e in spans], dtype="datetime64[ms, UTC]"),
        }
    )
    # The breaks as the query API finds them (queries.focus_breaks): stretches with no session on any device.
    latest_end = sessions["end"].cummax().shift(1)
    gaps = (sessions["start"] - latest_end).dt.total_seconds().clip(lower=0).fillna(0).sum()
    whole = (sessions["end"].max() - sessions["start"].min()).total_seconds()
    focused = streaks.focused_seconds(sessions)
    assert focused + gaps == pytest.approx(whole)
    assert streaks.span_seconds(sessions).max() <= focused <= streaks.span_seconds(sessions).sum()


# --- export -----------------------------------------------------------------------------------------------------


def test_exports_write_utc_timestamps_and_plain_numbers():
    df = pd.DataFrame(
        {
            "start": pd.to_datetime(["2026-11-27T09:00:00.250Z"], utc=True).astype("datetime64[ms, UTC]"),
            "app": ["Code, the editor"],
            "keystrokes": pd.Series([12], dtype="int64"),
            "idle": [False],
        }
    )
    rows = json.loads(export.to_json(df))
    assert rows == [{"start": "2026-11-27T09:00:00.250Z", "app": "Code, the editor", "keystrokes": 12, "idle": False}]
    assert export.to_csv(df).decode().splitlines() == [
        "start,app,keystrokes,idle",
        '2026-11-27T09:00:00.250Z,"Code, the editor",12,False',
    ]
    assert export.encode(df, "JSON")[1] == "application/json"
    with pytest.raises(ValueError, match="unknown export format"):
        export.encode(df, "XLSX")
    assert export.file_name("apps", date(2026, 11, 1), SATURDAY, "CSV") == "productimon-apps-2026-11-01-2026-11-28.csv"


def test_exports_name_each_device_beside_its_id():
    df = pd.DataFrame(
        {
            "start": pd.to_datetime(["2026-11-27T09:00Z"] * 3, utc=True).astype("datetime64[ms, UTC]"),
            "device_id": ["aaaaaaaa-1", "bbbbbbbb-2", "gone-3"],
            "app": ["Code"] * 3,
        }
    )
    labels = formatting.device_labels({"aaaaaaaa-1": "laptop", "bbbbbbbb-2": "laptop"})
    named = export.name_devices(df, labels)
    assert list(named.columns) == ["start", "device", "device_id", "app"]
    # Repeated names are told apart; a device no longer listed is named by its id.
    assert list(named["device"]) == ["laptop (aaaaaaaa)", "laptop (bbbbbbbb)", "gone-3"]
    assert export.to_csv(named).decode().splitlines()[:2] == [
        "start,device,device_id,app",
        "2026-11-27T09:00:00.000Z,laptop (aaaaaaaa),aaaaaaaa-1,Code",
    ]
    assert json.loads(export.to_json(named))[1]["device"] == "laptop (bbbbbbbb)"
    without = pd.DataFrame({"app": ["Code"], "seconds": [1.0]})
    assert export.name_devices(without, labels) is without
    assert list(export.name_devices(df.iloc[0:0], labels).columns) == ["start", "device", "device_id", "app"]


# --- share links ------------------------------------------------------------------------------------------------


def test_only_views_about_a_period_can_be_shared():
    period = preset_period("Last 7 days", SATURDAY, PRAGUE)
    request = share.link_request("trends", period, "7 days")
    assert request == {
        "view": "trends",
        "period_start": int(period.start.timestamp()),
        "period_end": int(period.end.timestamp()),
        "tz": "Europe/Prague",
        "ttl_s": 7 * 86400,
    }
    for view in ("devices", "data", "categories", "sharing", "insights"):
        with pytest.raises(ValueError, match="cannot be shared"):
            share.link_request(view, period, "1 day")
        with pytest.raises(share.ShareRefused):
            share.shared_view("id", "user", view, request["period_start"], request["period_end"], "UTC", 0)
    with pytest.raises(ValueError, match="lifetime"):
        share.link_request("trends", period, "forever")


def test_an_opened_link_shows_its_own_period():
    period = preset_period("This week", SATURDAY, PRAGUE)
    view = share.shared_view(
        "id", "user", "overview", int(period.start.timestamp()), int(period.end.timestamp()), "Europe/Prague", 1
    )
    assert view.period == period
    with pytest.raises(share.ShareRefused, match="empty"):
        share.shared_view("id", "user", "overview", 10, 10, "UTC", 1)


def test_the_share_url_carries_only_the_token():
    url = share.share_url("https://dash.example.org:8501/sharing?token=secret#x", "abc.def.ghi")
    assert url == "https://dash.example.org:8501/?share=abc.def.ghi"


def test_a_share_token_reads_as_nothing_but_its_link_id_and_only_opens_links(tmp_path):
    private, public = ensure_signing_key(tmp_path)
    link_id = str(uuid.uuid4())
    now = int(time.time())
    token = issue_share_token(private, link_id, 600, now=now)
    # What anyone holding the link can read, without any key.
    readable = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert readable == {
        "iss": "productimon",
        "sub": link_id,
        "scope": SHARE_SCOPE,
        "iat": now,
        "exp": now + 600,
        "jti": link_id,
    }
    assert verify_token(public, token, SHARE_SCOPE).token_id == link_id
    with pytest.raises(TokenError, match="not valid for dashboard"):
        verify_token(public, token, DASHBOARD_SCOPE)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path):
    clock = Clock()
    store = IdentityStore(
        tmp_path / "identity.sqlite3",
        clock=clock,
        password_hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
    )
    store.clock = clock
    yield store
    store.close()


def test_share_links_are_listed_opened_revoked_and_expire(store):
    alice = store.sign_up("alice@example.com", "correct horse battery staple")
    bob = store.sign_up("bob@example.com", "correct horse battery staple")
    link_id = str(uuid.uuid4())
    link = store.add_share_link(alice.id, link_id, "trends", 100, 200, "UTC", 3600)
    assert store.open_share_link(link_id) == link  # the id alone says whose link it is and what it shows
    assert store.list_share_links(alice.id) == [link] and store.list_share_links(bob.id) == []
    with pytest.raises(InvalidShareLink, match="does not exist"):
        store.open_share_link(str(uuid.uuid4()))
    with pytest.raises(InvalidShareLink, match="no share link"):
        store.revoke_share_link(bob.id, link_id)
    store.revoke_share_link(alice.id, link_id)
    with pytest.raises(InvalidShareLink, match="revoked"):
        store.open_share_link(link_id)

    other = str(uuid.uuid4())
    store.add_share_link(alice.id, other, "overview", 100, 200, "UTC", 60)
    store.clock.now += 61
    with pytest.raises(InvalidShareLink, match="expired"):
        store.open_share_link(other)
    assert [listed.id for listed in store.list_share_links(alice.id)] == [link_id]

    store.delete_user(alice.id)
    with pytest.raises(InvalidShareLink):
        store.open_share_link(link_id)


@pytest.mark.parametrize(
    ("view", "start", "end", "tz", "ttl", "message"),
    [
        ("Trends!", 1, 2, "UTC", 60, "not a view that can be shared"),
        ("trends", 2, 1, "UTC", 60, "ends before it starts"),
        ("trends", 1, 2, "", 60, "time zone"),
        ("trends", 1, 2, "UTC", 59, "lasts from"),
        ("trends", 1, 2, "UTC", 91 * 86400, "lasts from"),
    ],
)
def test_a_share_link_that_makes_no_sense_is_refused(store, view, start, end, tz, ttl, message):
    alice = store.sign_up("alice@example.com", "correct horse battery staple")
    with pytest.raises(InvalidShareLink, match=message):
        store.add_share_link(alice.id, str(uuid.uuid4()), view, start, end, tz, ttl)
