"""The dashboard in a real browser: Debian's chromium, driven by Playwright, against the running stack over
HTTPS. It signs in with a real account whose week of activity went through the gateway, visits every page,
checks the numbers shown against the query API, and saves the screenshots the README shows."""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import tempfile
import urllib.request
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pandas as pd
import pytest
import websockets.sync.client
from cryptography import x509
from playwright.sync_api import Browser, Page, expect, sync_playwright

from collector.transport import IngestClient
from dashboard import export, formatting
from dashboard.period import preset_period, viewer_zone
from infra.demo import DEVICES, demo_intervals
from infra.devices import enroll_device, new_account
from schemas.codec import encode_interval
from tests.conftest import eventually
from tests.e2e.dashboard_fixtures import make_account, release_insights
from warehouse import categories, queries
from warehouse.insight_rules import week_of

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
# Every run saves its screenshots (to look at when it fails); PRODUCTIMON_SCREENSHOTS=docs refreshes the copies in
# docs/screenshots that the documents show instead, so an ordinary test run leaves the working tree as it was.
README_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SCREENSHOTS = (
    README_SCREENSHOTS
    if os.environ.get("PRODUCTIMON_SCREENSHOTS") == "docs"
    else Path(tempfile.gettempdir()) / "productimon-screenshots"
)
NOW = datetime.now(UTC)
RULES = [
    ("app", "^(Code|Terminal)$", "Work/Programming"),
    ("app", "^(Slack|Thunderbird|Zoom)$", "Work/Communication"),
    ("site", "^(github\\.com|docs\\.python\\.org)$", "Work/Research"),
    ("site", "^(youtube\\.com|en\\.wikipedia\\.org)$", "Leisure/Reading and video"),
    ("app", "^(Steam|Spotify)$", "Leisure/Games and music"),
]


# Collects what the page's Content-Security-Policy refused, from before its first script runs.
WATCH_CSP = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) =>
    window.cspViolations.push(`${e.violatedDirective} refused ${e.blockedURI} (${e.sourceFile}:${e.lineNumber})`));
"""


class Week:
    def __init__(self, user_id: str, email: str, password: str, devices: dict[str, str]) -> None:
        self.user_id, self.email, self.password, self.devices = user_id, email, password, devices


@pytest.fixture(scope="module")
def week(stack, warehouse_client) -> Week:
    """A new account with the demo week of two devices sent through the gateway, and category rules."""
    s = stack.settings
    user_id, email, password = new_account(s)
    devices, sent = {}, 0
    for device in DEVICES:
        identity, creds = enroll_device(s, email, password, device.name)
        devices[identity.device_id] = device.name
        records = [encode_interval(i) for i in demo_intervals(device, NOW)]
        with IngestClient(s.gateway_address, creds) as client:
            acks = client.upload([records[i : i + 500] for i in range(0, len(records), 500)])
        assert sum(a.accepted for a in acks) == len(records)
        sent += len(records)
    count = "SELECT count() FROM intervals FINAL WHERE user_id = {u:String}"
    eventually(lambda: warehouse_client.query(count, parameters={"u": user_id}).result_rows[0][0] == sent, 120)
    for field, pattern, category in RULES:
        categories.add_rule(warehouse_client, user_id, field, pattern, category)
    return Week(user_id, email, password, devices)


@pytest.fixture(scope="module")
def second_person(stack, warehouse_client):
    """Another account, active in the same hours of a weekday as the demo week's work laptop (9:00 to 12:00
    UTC), so the insights have two people to describe, and a second user to see nothing of the first."""
    weekday = next(d for d in (NOW.date() - timedelta(days=n) for n in range(1, 8)) if d.weekday() < 5)
    return make_account(stack.settings, warehouse_client, start=datetime.combine(weekday, time(10), tzinfo=UTC))


@pytest.fixture(scope="module")
def dashboard_url(stack, second_person):
    """The stack's dashboard, over HTTPS, with cross-user insights on (k = 2) so every page is there."""
    saved = dict(stack.env)
    stack.env.update(PRODUCTIMON_DASHBOARD_AGGREGATES="true", PRODUCTIMON_AGGREGATE_K="2")
    try:
        stack.start_dashboard()
        yield stack.dashboard_url()
    finally:
        if stack.dashboard is not None:
            stack.dashboard.stop(30)
            stack.dashboard = None
        stack.env.clear()
        stack.env.update(saved)


@pytest.fixture(scope="module")
def browser() -> Browser:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


def served_certificate(stack) -> x509.Certificate:
    """The dashboard's certificate, fetched over a TLS connection that trusts only the stack's CA and checks
    the host name: this fails unless the dashboard proves itself with a certificate of the stack's PKI."""
    context = ssl.create_default_context(cafile=str(stack.settings.pki_dir / "ca.crt"))
    host, port = stack.settings.dashboard_host, stack.settings.dashboard_port
    with (
        socket.create_connection((host, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def new_page(browser: Browser, scheme: str = "light") -> Page:
    # The certificate is the stack's (checked in served_certificate and against what the browser saw);
    # chromium has no per-context CA option, hence ignore_https_errors.
    context = browser.new_context(
        ignore_https_errors=True, timezone_id="UTC", viewport={"width": 1440, "height": 1000}, color_scheme=scheme
    )
    context.set_default_timeout(60_000)
    context.add_init_script(WATCH_CSP)
    page = context.new_page()
    page.console_csp = []
    page.on("console", lambda m: "Content Security Policy" in m.text and page.console_csp.append(m.text))
    return page


def csp_violations(page: Page) -> list[str]:
    """What the page's policy refused so far, as securitypolicyviolation events and as console messages."""
    return page.evaluate("window.cspViolations") + page.console_csp


def settle(page: Page) -> None:
    """Wait until the script run is over: no spinner, no running indicator, charts drawn."""
    page.wait_for_load_state("networkidle")
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=stSpinner]') && "
        "!document.querySelector('[data-testid=stStatusWidget] [data-testid=stStatusWidgetRunningIcon]')"
    )
    page.wait_for_timeout(1500)  # vega-embed draws after the run; give it a moment before a screenshot


def sign_in(page: Page, url: str, email: str, password: str) -> None:
    response = page.goto(url)
    details = response.security_details()
    assert details and details.get("issuer") == "Productimon CA", details
    page.get_by_role("textbox", name="Email").fill(email)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    settle(page)


def go(page: Page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()
    expect(page.get_by_role("heading", name=title, exact=False).first).to_be_visible()
    settle(page)


def metric(page: Page, label: str) -> str:
    card = page.get_by_test_id("stMetric").filter(
        has=page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True)
    )
    return card.get_by_test_id("stMetricValue").inner_text().strip()


def time_labels(chart) -> list[str]:
    """The labels the chart's time axis shows, after checking that no two of them read the same."""
    axis = chart.locator("[aria-roledescription=axis]").filter(has_text="Time (")
    labels = [t for t in axis.locator(".role-axis-label text").all_text_contents() if t.strip()]
    assert len(labels) == len(set(labels)), labels
    return labels


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_every_page_in_a_real_browser_shows_the_query_apis_numbers(
    stack, week, second_person, dashboard_url, browser, warehouse_client
):
    cert = served_certificate(stack)
    assert cert.issuer.rfc4514_string() == "CN=Productimon CA"
    zone = viewer_zone("UTC")
    period = preset_period("Last 7 days", NOW.astimezone(zone).date(), zone)
    client, user = warehouse_client, week.user_id

    page = new_page(browser)
    sign_in(page, dashboard_url, week.email, week.password)
    totals = queries.totals(client, user, period.start, period.end)
    assert metric(page, "Active in period") == formatting.duration(totals["active_seconds"].iloc[0])
    assert metric(page, "Idle in period") == formatting.duration(totals["idle_seconds"].iloc[0])
    today = preset_period("Today", period.last, zone)
    today_active = queries.totals(client, user, today.start, today.end)["active_seconds"].iloc[0]
    assert metric(page, "Active today") == formatting.duration(today_active)
    apps = queries.time_per_app(client, user, period.start, period.end)
    apps_table = page.get_by_test_id("stTable").first
    for app, seconds in zip(apps["app"].head(10), apps["seconds"].head(10), strict=True):
        expect(apps_table.get_by_role("row").filter(has_text=app).first).to_contain_text(formatting.duration(seconds))
    shot(page, "overview")

    go(page, "Timeline")
    days = [period.last - timedelta(days=i) for i in range(period.days)]
    busy = next(d for d in days if not queries.app_timeline(client, user, period.start, period.end, day=d).empty)
    if busy != period.last:
        page.get_by_test_id("stSelectbox").filter(has_text="Day").click()
        page.get_by_role("option", name=busy.strftime("%a %d %b %Y")).click()
        settle(page)
    sessions = queries.app_timeline(client, user, period.start, period.end, day=busy)
    assert metric(page, "App sessions") == str(len(sessions))
    timeline = page.get_by_test_id("stVegaLiteChart").first
    # Every app drawn is named in the legend as drawn (SVG text), and no two time labels read the same, also
    # once zoomed far into the day (where a minutes-only format would repeat).
    legend = timeline.locator(".role-legend-label text").all_text_contents()
    assert sorted(legend) == sorted(set(sessions["app"])), legend
    whole_day = time_labels(timeline)
    assert len(whole_day) >= 2
    shot(page, "timeline")
    timeline.locator("svg.marks").hover(position={"x": 500, "y": 40})  # over the bars, where Vega zooms
    zoomed = whole_day
    for _ in range(40):  # into a span of a few minutes, ticks seconds apart
        if len(zoomed) >= 3 and any(label.count(":") == 2 for label in zoomed):
            break
        page.mouse.wheel(0, -250)
        page.wait_for_timeout(250)
        zoomed = time_labels(timeline)
    assert len(zoomed) >= 3 and any(label.count(":") == 2 for label in zoomed), zoomed

    go(page, "Trends")
    assert metric(page, "Active in period") == formatting.duration(totals["active_seconds"].iloc[0])
    shot(page, "trends")

    go(page, "Focus")
    focus = queries.focus_sessions(client, user, period.start, period.end)
    assert metric(page, "Focus sessions") == str(len(focus))
    assert metric(page, "Longest streak") == formatting.duration((focus["end"] - focus["start"]).max().total_seconds())
    shot(page, "focus")

    go(page, "Categories")
    page.get_by_label("Pattern (RE2 regular expression)").fill("^Firefox$")
    page.get_by_label("Pattern (RE2 regular expression)").press("Enter")
    settle(page)
    firefox = queries.rule_matches(client, user, period.start, period.end, field="app", pattern="^Firefox$")
    expect(page.get_by_text(f"{formatting.duration(firefox['seconds'].sum())}:", exact=False)).to_be_visible()
    shot(page, "categories")

    go(page, "Devices")
    per_device = queries.time_per_device(client, user, period.start, period.end)
    devices_table = page.get_by_test_id("stTable").first
    for name, seconds in zip(per_device["name"], per_device["seconds"], strict=True):
        expect(devices_table.get_by_role("row").filter(has_text=name)).to_contain_text(formatting.duration(seconds))
    shot(page, "devices")

    go(page, "Data")
    exported = queries.export_intervals(client, user, period.start, period.end)
    page.get_by_role("button", name="Prepare activity intervals as CSV").click()
    settle(page)
    with page.expect_download() as csv_download:
        page.get_by_role("button", name="Download activity intervals as CSV").click()
    csv_file = csv_download.value
    assert csv_file.suggested_filename == export.file_name("intervals", period.first, period.last, "CSV")
    from_csv = pd.read_csv(csv_file.path())
    assert len(from_csv) == len(exported) > 3000
    assert list(from_csv["event_id"]) == list(exported["event_id"])
    assert from_csv["keystrokes"].sum() == exported["keystrokes"].sum()
    assert list(from_csv["device"]) == [week.devices[d] for d in from_csv["device_id"]]  # named, id kept
    page.get_by_test_id("stRadio").get_by_text("JSON").click()
    settle(page)
    page.get_by_role("button", name="Prepare activity intervals as JSON").click()
    settle(page)
    with page.expect_download() as json_download:
        page.get_by_role("button", name="Download activity intervals as JSON").click()
    from_json = json.loads(Path(json_download.value.path()).read_text())
    assert len(from_json) == len(exported) and from_json[0]["event_id"] == exported["event_id"].iloc[0]
    shot(page, "data")

    go(page, "Sharing")
    page.get_by_role("button", name="Make a share link").click()
    settle(page)
    link = page.get_by_test_id("stCode").inner_text().strip()
    assert re.fullmatch(rf"{re.escape(dashboard_url)}/\?share=[\w.-]+", link), link
    shot(page, "sharing")

    released = release_insights(client, week_of(NOW.date()), k=2, crowd=6)
    go(page, "Insights")
    expect(page.get_by_test_id("stVegaLiteChart").nth(1)).to_be_visible()
    for r in released.values():
        expect(page.get_by_text(f"About {r.people} people").nth(0)).to_be_visible()
    expect(page.get_by_text("Noisy on purpose")).to_have_count(2)
    shot(page, "insights")

    # The link, opened by someone who is not signed in, shows the overview of that period and nothing else.
    stranger = new_page(browser)
    stranger.goto(link)
    expect(stranger.get_by_role("heading", name="Overview")).to_be_visible()
    settle(stranger)
    assert metric(stranger, "Active in period") == formatting.duration(totals["active_seconds"].iloc[0])
    assert stranger.get_by_test_id("stSidebarNav").count() == 0
    assert week.email not in stranger.content()
    shot(stranger, "shared-link")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()

    # Another account, signed in in the same browser, sees none of this account's data on any page.
    other = second_person
    theirs = new_page(browser)
    sign_in(theirs, dashboard_url, other.email, other.password)
    # (A site as stored, not one the default category rules every account starts with name: "youtube\.com" is.)
    only_the_week_has = [week.email, week.user_id, *week.devices, *week.devices.values(), "Thunderbird",
                         "en.wikipedia.org"]  # fmt: skip
    for title in (
        "Overview",
        "Timeline",
        "Trends",
        "Focus",
        "Categories",
        "Goals",
        "Devices",
        "Data",
        "Sharing",
        "Insights",
    ):
        if title != "Overview":
            go(theirs, title)
        shown = theirs.content() + theirs.get_by_test_id("stMain").inner_text()
        assert not [s for s in only_the_week_has if s in shown], title

    dark = new_page(browser, "dark")
    sign_in(dark, dashboard_url, week.email, week.password)
    go(dark, "Trends")
    shot(dark, "trends-dark")
    # Every page worked under the dashboard's Content-Security-Policy: nothing it needed was refused.
    assert [csp_violations(p) for p in (page, stranger, theirs, dark)] == [[]] * 4


def test_every_kind_of_dashboard_response_forbids_framing(stack, dashboard_url):
    context = ssl.create_default_context(cafile=str(stack.settings.pki_dir / "ca.crt"))
    with urllib.request.urlopen(f"{dashboard_url}/?share=x.y.z", context=context, timeout=30) as index:
        html, headers = index.read().decode(), {"the page": index.headers}
    asset = re.search(r'src="\./(static/js/[^"]+\.js)"', html)[1]
    for what, path in (("a script", asset), ("a page's path", "trends"), ("the health check", "_stcore/health")):
        with urllib.request.urlopen(f"{dashboard_url}/{path}", context=context, timeout=30) as response:
            headers[what] = response.headers
    stream = dashboard_url.replace("https://", "wss://") + "/_stcore/stream"
    with websockets.sync.client.connect(stream, ssl=context, subprotocols=["streamlit"]) as ws:
        headers["the websocket"] = ws.response.headers
    for what, got in headers.items():
        assert got.get("X-Frame-Options") == "DENY", what
        assert "frame-ancestors 'none'" in got.get("Content-Security-Policy", "").split("; "), what


def test_a_real_browser_shows_the_dashboard_within_its_policy_and_never_in_a_frame(week, dashboard_url, browser):
    page = new_page(browser)
    sign_in(page, dashboard_url, week.email, week.password)
    go(page, "Trends")
    assert csp_violations(page) == []
    framing = new_page(browser)
    with framing.expect_console_message(lambda m: "frame-ancestors 'none'" in m.text, timeout=10_000):
        framing.set_content(f'<iframe src="{dashboard_url}"></iframe>')


def test_a_sign_in_survives_reloads_new_tabs_bookmarks_and_a_restart_until_sign_out(
    stack, week, dashboard_url, browser
):
    page = new_page(browser)
    sign_in(page, dashboard_url, week.email, week.password)
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "productimon_browser"]
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict", cookie
    assert "productimon_browser" not in page.evaluate("document.cookie")  # no script on the page can read it
    page.reload()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    bookmark = page.context.new_page()  # a new tab, opened on a bookmarked page
    bookmark.goto(f"{dashboard_url}/trends")
    expect(bookmark.get_by_role("heading", name="Trends", exact=False).first).to_be_visible()
    # The dashboard restarted: the sign-in is still there, and what it keeps on disk opens nothing by itself.
    stack.dashboard.stop(30)
    stack.dashboard = None
    stack.start_dashboard()
    page.goto(dashboard_url)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    kept = (stack.settings.data_dir / "dashboard" / "sessions.json").read_text()
    assert "eyJ" not in kept and cookie["value"] not in kept  # neither the token nor the cookie
    # Another browser holding a copy of the cookie is signed in too, until the owner signs out: then the
    # gateway has revoked the token and the dashboard forgotten it, for every tab and copy.
    copy = browser.new_context(ignore_https_errors=True)
    copy.add_cookies([{k: cookie[k] for k in ("name", "value", "domain", "path", "secure", "httpOnly", "sameSite")}])
    stolen = copy.new_page()
    stolen.goto(dashboard_url)
    expect(stolen.get_by_role("heading", name="Overview")).to_be_visible()
    settle(page)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    for signed_out in (bookmark, stolen):
        signed_out.reload()
        expect(signed_out.get_by_role("button", name="Sign in")).to_be_visible()
    stranger = new_page(browser)  # a browser that never signed in
    stranger.goto(dashboard_url)
    expect(stranger.get_by_role("button", name="Sign in")).to_be_visible()
    copy.close()


def test_an_activitywatch_export_uploads_with_a_progress_bar_and_a_summary(
    stack, dashboard_url, browser, warehouse_client, tmp_path
):
    """In a real browser: the export chosen in the Data page's uploader, imported through the gateway with the
    person's token, its summary shown; then the same file again changes nothing."""
    user_id, email, password = new_account(stack.settings)
    day = (NOW - timedelta(days=400)).replace(hour=9, minute=0, second=0, microsecond=0)
    window = [{"timestamp": day.isoformat(), "duration": 1800, "data": {"app": "Imported editor", "title": "x"}}]
    afk = [{"timestamp": day.isoformat(), "duration": 1800, "data": {"status": "not-afk"}}]
    kinds = {"window": ("currentwindow", window), "afk": ("afkstatus", afk), "mood": ("mood", [])}
    buckets = {
        f"aw-watcher-{name}_box": {"id": f"aw-watcher-{name}_box", "type": kind, "hostname": "box", "events": events}
        for name, (kind, events) in kinds.items()
    }
    path = tmp_path / "aw-buckets-export.json"
    path.write_text(json.dumps({"buckets": buckets}))
    page = new_page(browser)
    sign_in(page, dashboard_url, email, password)
    go(page, "Data")
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(path))
    expect(page.get_by_role("button", name=f"Remove {path.name}")).to_be_visible()
    for attempt in ("first", "again"):
        page.get_by_role("button", name="Import", exact=True).click()
        said = "1 imported, 0 merged" if attempt == "first" else "0 imported, 1 merged"
        expect(page.get_by_text(f"2 events read, 2 used: 1 intervals; {said}")).to_be_visible(timeout=90_000)
        expect(page.get_by_text("has the unknown type 'mood'")).to_be_visible()
        assert "stProgress" in page.content()
    period = (day - timedelta(hours=1), day + timedelta(hours=2))

    def per_app() -> dict[str, float]:
        df = queries.time_per_app(warehouse_client, user_id, *period)
        return dict(zip(df["app"], df["seconds"], strict=True))

    assert eventually(lambda: per_app() == {"Imported editor": 1800.0})
