"""A user sees only their own data: on every page of the dashboard, and through share links, which show
exactly the one view and period their owner chose, until revoked or expired, and nothing to anyone else."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import grpc
import pytest

from collector.transport import IngestClient
from dashboard import formatting
from dashboard.period import period_from_utc
from gateway.tokens import ensure_signing_key, issue_share_token
from infra.devices import enroll_device, new_account
from schemas.api_client import (
    create_share_link,
    delete_account,
    list_share_links,
    log_in,
    open_share_link,
    revoke_share_link,
    who_am_i,
)
from schemas.codec import encode_interval
from tests.conftest import eventually
from tests.e2e.dashboard_fixtures import (
    PAGES,
    ca_pem,
    dashboard_env,  # noqa: F401 (a fixture)
    default_period,
    everything_shown,
    make_account,
    metric,
    new_app,
    open_page,
    signed_in_app,
)
from warehouse import queries

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("dashboard_env")]


@pytest.fixture(scope="module")
def first(stack, warehouse_client):
    return make_account(stack.settings, warehouse_client)


@pytest.fixture(scope="module")
def second(stack, warehouse_client):
    return make_account(stack.settings, warehouse_client)


def assert_none_of(account, shown: str, where: str) -> None:
    leaked = [name for name in account.names if name in shown]
    assert not leaked, f"{where} shows {leaked} of another account"


def share_token_from(at) -> str:
    url = at.code[0].value
    return parse_qs(urlsplit(url).query)["share"][0]


def readable_claims(token: str) -> dict:
    """What anyone holding a link reads in it, with no key: a JWT's payload is only base64."""
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))


def test_a_second_user_sees_none_of_the_first_users_data_on_any_page(first, second):
    at = signed_in_app(second)
    for page in PAGES:
        open_page(at, page)
        shown = everything_shown(at)
        if page == "overview":
            assert second.mark in shown  # their own data is there
        assert_none_of(first, shown, page)
    # The device filter offers only the second user's own devices, whatever is put in the session.
    assert set(at.sidebar.multiselect(key="device_filter").options) == set(second.devices.values())


def test_a_share_link_shows_exactly_its_view_and_period_and_nothing_else(stack, first, warehouse_client):
    owner = open_page(signed_in_app(first), "sharing")
    owner.selectbox(key="share_view").select("trends").run()
    owner.button(key="share_create").click().run()
    assert owner.success and "shown only once" in owner.success[0].value
    token = share_token_from(owner)

    at = new_app({"share": token}).run()
    assert not at.error and not at.exception
    assert at.title[0].value == "Trends"
    period = default_period()
    active = queries.totals(warehouse_client, first.user_id, period.start, period.end)["active_seconds"].iloc[0]
    assert metric(at, "Active in period") == formatting.duration(active) == "55 min"
    shown = everything_shown(at)
    assert first.email not in shown  # who shared it is not part of the view
    assert not at.sidebar.children or not at.sidebar.get("multiselect")  # no filters, no navigation
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("views/devices.py")
    for page in ("overview", "devices", "data", "sharing"):
        assert page not in [str(i.get("url_pathname")) for i in at._registered_pages.values()]


def test_a_shared_trends_view_shows_nothing_of_the_period_before_it(stack, warehouse_client):
    owner = make_account(stack.settings, warehouse_client)
    # The owner was active in the week before the shared one too, in an app seen nowhere else.
    _, creds = enroll_device(stack.settings, owner.email, owner.password, f"old-{owner.mark}")
    period = default_period()
    before = int((period.start - timedelta(days=3)).timestamp() * 1000)
    earlier = {
        "event_id": str(uuid.uuid4()),
        "device_seq": 0,
        "start": before,
        "end": before + 45 * 60_000,
        "app": f"earlier-{owner.mark}",
        "title": None,
        "url": None,
        "keystrokes": 5,
        "clicks": 1,
        "idle": False,
    }
    with IngestClient(stack.settings.gateway_address, creds) as client:
        assert client.send_batch([encode_interval(earlier)]).accepted == 1
    owners_view = open_page(signed_in_app(owner), "trends")
    assert f"earlier-{owner.mark}" in everything_shown(owners_view)  # the owner's own comparison has it
    sharing = open_page(signed_in_app(owner), "sharing")
    sharing.selectbox(key="share_view").select("trends").run()
    sharing.button(key="share_create").click().run()

    at = new_app({"share": share_token_from(sharing)}).run()
    assert not at.error and not at.exception
    shown = everything_shown(at)
    assert f"earlier-{owner.mark}" not in shown
    assert [m.label for m in at.metric] == ["Active in period", "Daily average"]
    assert not any("Compared with" in h.value for h in at.subheader)
    active = queries.totals(warehouse_client, owner.user_id, period.start, period.end)["active_seconds"].iloc[0]
    assert metric(at, "Active in period") == formatting.duration(active)


def test_every_number_of_every_shareable_view_is_the_owners_for_the_period_alone(stack, warehouse_client):
    """A shared day whose first and last sessions cross its edges, beside activity the day before: each of the
    four views shows, in every figure, only what happened inside the day (computed here from what was sent)."""
    s = stack.settings
    mark = uuid.uuid4().hex[:6]
    _, email, password = new_account(s)
    _, creds = enroll_device(s, email, password, f"desk-{mark}")
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    lo, hi = int(day.timestamp() * 1000), int((day + timedelta(days=1)).timestamp() * 1000)
    minute = 60_000

    def run(app: str, first: int, n: int) -> list[dict]:
        return [
            {"event_id": str(uuid.uuid4()), "start": first + k * minute, "end": first + k * minute + 50_000,
             "app": app, "title": None, "url": None, "keystrokes": 4, "clicks": 1, "idle": False}
            for k in range(n)
        ]  # fmt: skip

    sent = (
        run(f"before-{mark}", lo - 86_400_000 + 3600_000, 10)  # the day before: nothing of it may show
        + run(f"edge-{mark}", lo - 30 * minute, 60)  # a session crossing the day's start
        + run(f"inside-{mark}", lo + 6 * 3600_000, 15)
        + run(f"other-{mark}", lo + 6 * 3600_000 + 15 * minute, 15)  # the same focus session: one switch
        + run(f"late-{mark}", hi - 20 * minute, 40)  # a session crossing the day's end
    )
    for seq, item in enumerate(sent):
        item["device_seq"] = seq
    with IngestClient(s.gateway_address, creds) as client:
        assert client.send_batch([encode_interval(i) for i in sent]).accepted == len(sent)
    # The truth, from what was sent: every interval cut at the day's edges.
    inside = {}
    for i in sent:
        part = max(0, min(i["end"], hi) - max(i["start"], lo)) / 1000
        if part:
            inside[i["app"]] = inside.get(i["app"], 0) + part
    active = sum(inside.values())
    assert active == (30 + 15 + 15 + 20) * 50

    user_id = who_am_i(s.gateway_public_address, ca_pem(s), _token(s, email, password)).user_id
    assert eventually(lambda: len(queries.app_timeline(warehouse_client, user_id, day - timedelta(days=1),
                                                       day + timedelta(days=2), day=day.date())) == 4, 90)  # fmt: skip

    def shared(view: str):
        token = create_share_link(
            s.gateway_public_address, ca_pem(s), _token(s, email, password), view, lo // 1000, hi // 1000, "UTC", 3600
        ).token
        at = new_app({"share": token}).run()
        assert not at.error and not at.exception
        shown = everything_shown(at)
        assert f"before-{mark}" not in shown, view
        return at

    at = shared("overview")
    assert metric(at, "Active in period") == formatting.duration(active)
    assert metric(at, "Idle in period") == "0 min"
    apps = at.table[0].value
    assert dict(zip(apps.iloc[:, 0], apps["Time"], strict=True)) == {
        app: formatting.duration(seconds) for app, seconds in inside.items()
    }

    at = shared("trends")
    assert metric(at, "Active in period") == formatting.duration(active)
    assert metric(at, "Daily average") == formatting.duration(active)

    at = shared("focus")
    # Three focus sessions (the edge one, the middle one with two apps, the late one), cut at the day's edges.
    # Focused is the time inside them, start to end (their 10 s pauses included), not the active time: the edge
    # one from the day's start to its last interval's end (29 min 50 s), the middle one 29 min 50 s, the late
    # one from its start to the day's end (20 min).
    focused = (29 * 60 + 50) * 2 + 20 * 60
    assert metric(at, "Focus sessions") == "3"
    assert metric(at, "Focused") == formatting.duration(focused) != formatting.duration(active)
    assert metric(at, "Longest streak") == formatting.duration(29 * 60 + 50)
    assert metric(at, "Breaks") == "2"
    assert metric(at, "Context switches / hour") == f"{1 / (focused / 3600):.1f}"

    at = shared("timeline")
    assert metric(at, "App sessions") == "4"
    summary = [c.value for c in at.caption if " app sessions on " in c.value]
    assert summary and f"{formatting.duration(active)} active" in summary[0], summary


def _token(settings, email: str, password: str) -> str:
    return log_in(settings.gateway_public_address, ca_pem(settings), email, password).token


def test_a_share_link_ignores_the_viewers_own_sign_in(stack, first, second):
    token = _share(stack, first, "overview")
    at = signed_in_app(second)
    at.query_params["share"] = token
    at.run()
    shown = everything_shown(at)
    assert first.mark in shown
    assert_none_of(second, shown, "the shared overview")
    assert not at.get("multiselect")


def _share(stack, account, view: str, ttl_s: int = 3600) -> str:
    s = stack.settings
    period = default_period()
    made = create_share_link(
        s.gateway_public_address,
        ca_pem(s),
        account.token(s),
        view,
        int(period.start.timestamp()),
        int(period.end.timestamp()),
        "UTC",
        ttl_s,
    )
    return made.token


def test_a_revoked_link_shows_nothing(stack, first):
    owner = open_page(signed_in_app(first), "sharing")
    owner.button(key="share_create").click().run()
    token = share_token_from(owner)
    assert new_app({"share": token}).run().metric
    owner = open_page(signed_in_app(first), "sharing")
    link_id = readable_claims(token)["jti"]
    owner.selectbox(key="share_revoke_id").select(link_id).run()
    owner.button(key="share_revoke").click().run()
    assert not owner.error, [e.value for e in owner.error]
    links = list_share_links(stack.settings.gateway_public_address, ca_pem(stack.settings), first.token(stack.settings))
    assert {link.link_id: link.revoked for link in links}[link_id] is True
    at = new_app({"share": token}).run()
    assert at.error and "revoked" in at.error[0].value
    assert not at.metric and not at.table
    assert_none_of(first, everything_shown(at), "a revoked link")


def test_an_expired_link_shows_nothing(stack, first):
    key = ensure_signing_key(stack.settings.keys_dir)[0]
    long_ago = (datetime.now(UTC) - timedelta(days=2)).timestamp()
    token = issue_share_token(key, readable_claims(_share(stack, first, "overview"))["jti"], 600, now=long_ago)
    at = new_app({"share": token}).run()
    assert at.error and "expired" in at.error[0].value
    assert_none_of(first, everything_shown(at), "an expired link")


def test_links_nobody_was_given_show_nothing(stack, first, second, tmp_path):
    key = ensure_signing_key(stack.settings.keys_dir)[0]
    forged_key, _ = ensure_signing_key(tmp_path / "other-keys")
    genuine = _share(stack, first, "overview")
    header, payload, signature = genuine.split(".")
    # Another of the owner's links, named in the genuine link's signed payload.
    other = readable_claims(_share(stack, first, "trends"))["jti"]
    redirected = {**readable_claims(genuine), "sub": other, "jti": other}
    tampered_payload = base64.urlsafe_b64encode(json.dumps(redirected).encode()).decode().rstrip("=")
    attempts = {
        "a sign-in token used as a share link": second.token(stack.settings),
        "the owner's sign-in token used as a share link": first.token(stack.settings),
        "a link signed by another key": issue_share_token(forged_key, readable_claims(genuine)["jti"], 600),
        # Signed by the real key but never recorded by the gateway (no owner made it).
        "a link the owner never made": issue_share_token(key, str(uuid.uuid4()), 600),
        "a link changed to name another link": f"{header}.{tampered_payload}.{signature}",
        "a link cut short when copied": genuine.rsplit(".", 1)[0],  # its signature left behind
        "garbage": "not-a-token",
    }
    # What the person holding the link reads: what happened to it, in words, never the token library's.
    says = {
        "a link signed by another key": "changed, or not issued by this instance",
        "a link changed to name another link": "changed, or not issued by this instance",
        "a link cut short when copied": "damaged or incomplete",
        "garbage": "damaged or incomplete",
    }
    for what, token in attempts.items():
        at = new_app({"share": token}).run()
        assert at.error and "\n" not in at.error[0].value, what
        assert says.get(what, "") in at.error[0].value and "padding" not in at.error[0].value, at.error[0].value
        assert not at.metric and not at.table, what
        assert_none_of(first, everything_shown(at), what)
        assert_none_of(second, everything_shown(at), what)


def test_a_share_token_holds_only_an_opaque_link_id_and_still_opens_its_view(stack, first):
    token = _share(stack, first, "overview")
    claims = readable_claims(token)
    assert set(claims) <= {"iss", "sub", "scope", "iat", "exp", "jti"}, claims
    assert claims["sub"] == claims["jti"] and uuid.UUID(claims["jti"]).version == 4  # random, names nobody
    assert_none_of(first, json.dumps(claims), "a share token's readable claims")
    at = new_app({"share": token}).run()
    assert not at.error and at.title[0].value == "Overview"
    assert first.mark in everything_shown(at)  # the owner's data, found from the link id alone


def test_deleting_the_account_makes_its_links_fail(stack):
    s = stack.settings
    _, email, password = new_account(s)
    owner = log_in(s.gateway_public_address, ca_pem(s), email, password).token
    period = default_period()
    start, end = int(period.start.timestamp()), int(period.end.timestamp())
    token = create_share_link(s.gateway_public_address, ca_pem(s), owner, "overview", start, end, "UTC", 3600).token
    assert open_share_link(s.gateway_public_address, ca_pem(s), token).view == "overview"
    delete_account(s.gateway_public_address, ca_pem(s), owner, password)
    with pytest.raises(grpc.RpcError) as opened:
        open_share_link(s.gateway_public_address, ca_pem(s), token)
    assert opened.value.code() == grpc.StatusCode.PERMISSION_DENIED
    at = new_app({"share": token}).run()
    assert at.error and not at.metric


def test_the_owner_lists_links_and_another_user_cannot_see_or_revoke_them(stack, first, second):
    _share(stack, first, "focus")
    s = stack.settings
    mine = list_share_links(s.gateway_public_address, ca_pem(s), first.token(s))
    assert any(link.view == "focus" for link in mine)
    assert list_share_links(s.gateway_public_address, ca_pem(s), second.token(s)) == []
    with pytest.raises(grpc.RpcError, match="no share link"):
        revoke_share_link(s.gateway_public_address, ca_pem(s), second.token(s), mine[0].link_id)
    at = open_page(signed_in_app(second), "sharing")
    assert_none_of(first, everything_shown(at), "the second user's sharing page")
    link = mine[0]
    assert period_from_utc(link.period_start, link.period_end, link.tz) == default_period()


def test_a_share_token_signs_nobody_in_and_a_sign_in_token_opens_no_link(stack, first):
    s = stack.settings
    token = _share(stack, first, "overview")
    with pytest.raises(grpc.RpcError) as as_sign_in:
        who_am_i(s.gateway_public_address, ca_pem(s), token)
    assert as_sign_in.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as as_share:
        open_share_link(s.gateway_public_address, ca_pem(s), first.token(s))
    assert as_share.value.code() == grpc.StatusCode.UNAUTHENTICATED
    at = new_app({"token": token}).run()  # a share token in the sign-in parameter
    assert at.error and not at.metric
