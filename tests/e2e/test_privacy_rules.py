"""An account's privacy choices, set once and applied everywhere (issue 17, schemas/privacy_rules.py), tried as
a careless client would: a device that sends titles as captured, unscrubbed, must still have only what the
account's choices keep stored, because the worker applies them again. And the device itself fetches them over
mTLS, keeps them for offline starts, and applies them before anything touches its disk."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from collector.agent import PrivacySync, saved_account_privacy
from collector.config import CollectorHome, CollectorSettings
from collector.enrolled import Enrollment, save_credentials, save_enrollment
from collector.spool import Spool
from collector.tracker import Tracker
from collector.transport import IngestClient
from collector.wire import RpcError, StatusCode
from infra.devices import enroll_device, new_account
from schemas.api_client import (
    add_privacy_rule,
    delete_privacy_rule,
    get_privacy,
    log_in,
    revoke_device,
    set_title_mode,
)
from schemas.codec import encode_interval
from tests.conftest import eventually

pytestmark = pytest.mark.e2e

LEAKS = {
    "mail": ("thunderbird", "Inbox - alice.private@example.org - Mozilla Thunderbird", "alice.private"),
    "search": ("firefox", "how to tell my boss I am quitting – Google Search — Mozilla Firefox", "quitting"),
    "repo": ("firefox", "Fix crash · Pull Request #4521 · acme/secret-repo · GitHub — Mozilla Firefox", "secret-repo"),
    "pdf": ("evince", "/home/alice/Documents/legal/divorce-settlement.pdf", "legal"),
    "terminal": ("gnome-terminal-server", "mysql -u root -pHunter2Secret db", "Hunter2Secret"),
}


def _interval(seq: int, app: str, title: str, url: str | None = None) -> dict:
    start = datetime.now(UTC) - timedelta(minutes=30) + timedelta(seconds=seq * 10)
    return {
        "event_id": str(uuid.uuid4()),
        "device_seq": seq,
        "start": int(start.timestamp() * 1000),
        "end": int((start + timedelta(seconds=5)).timestamp() * 1000),
        "app": app,
        "title": title,
        "url": url,
        "keystrokes": 3,
        "clicks": 1,
        "idle": False,
    }


def _stored(client, user_id: str) -> dict[int, tuple[str, str, str]]:
    rows = client.query(
        "SELECT device_seq, app, title, site FROM intervals WHERE user_id = {u:String}", parameters={"u": user_id}
    ).result_rows
    return {seq: (app, title, site) for seq, app, title, site in rows}


@pytest.fixture
def person(stack):
    user_id, email, password = new_account(stack.settings)
    identity, creds = enroll_device(stack.settings, email, password, "laptop")
    ca = (stack.settings.pki_dir / "ca.crt").read_bytes()
    token = log_in(stack.settings.gateway_public_address, ca, email, password).token
    return {"user_id": user_id, "identity": identity, "creds": creds, "ca": ca, "token": token}


def test_a_careless_client_still_gets_only_scrubbed_titles_stored(stack, person, warehouse_client):
    """The reproduced leaks, sent raw through the real gateway with a real device certificate."""
    sent = [_interval(n, app, title) for n, (app, title, _) in enumerate(LEAKS.values())]
    with IngestClient(stack.settings.gateway_address, person["creds"]) as client:
        assert client.send_batch([encode_interval(i) for i in sent]).accepted == len(sent)
    stored = eventually(lambda: (found := _stored(warehouse_client, person["user_id"])) and len(found) == 5 and found)
    for n, (_, _, secret) in enumerate(LEAKS.values()):
        assert secret.lower() not in stored[n][1].lower(), stored[n]
    assert stored[4][1] == "mysql" and stored[1][1] == "Google Search"


def test_rules_and_the_title_mode_set_in_the_account_reach_the_worker(stack, person, warehouse_client):
    address, ca, token = stack.settings.gateway_public_address, person["ca"], person["token"]
    set_title_mode(address, ca, token, "full")
    rule_id = add_privacy_rule(address, ca, token, "site", "bank.example", "drop_details")
    add_privacy_rule(address, ca, token, "title", "salary", "hide_title")
    choice = get_privacy(address, ca, token)
    assert choice.title_mode == "full" and {r.pattern for r in choice.rules} == {"bank.example", "salary"}
    # The worker reads an account's choices again within privacy_reload_seconds (stream_jobs/batch.py PrivacyChoices).
    time.sleep(stack.settings.privacy_reload_seconds + 1)
    sent = [
        _interval(0, "firefox", "Statement — Online Banking — Mozilla Firefox", "https://online.bank.example/a?x=1"),
        _interval(1, "libreoffice-calc", "salary review 2026.ods - LibreOffice Calc"),
        _interval(2, "gnome-terminal-server", "htop --sort-key PERCENT_CPU"),
    ]
    with IngestClient(stack.settings.gateway_address, person["creds"]) as client:
        assert client.send_batch([encode_interval(i) for i in sent]).accepted == 3
    stored = eventually(lambda: (found := _stored(warehouse_client, person["user_id"])) and len(found) == 3 and found)
    assert stored[0] == ("(private)", "", "")
    assert stored[1] == ("libreoffice-calc", "", "")
    assert stored[2][1] == "htop --sort-key PERCENT_CPU"  # "full": the account chose whole titles
    delete_privacy_rule(address, ca, token, rule_id)
    assert {r.pattern for r in get_privacy(address, ca, token).rules} == {"salary"}


def test_bad_rules_and_modes_are_refused_in_one_line_and_another_account_cannot_touch_them(stack, person):
    address, ca, token = stack.settings.gateway_public_address, person["ca"], person["token"]
    for on, pattern, word in (
        ("title", "*", "everything"),
        ("title", "  ", "empty"),
        ("site", "no such site", "domain"),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            add_privacy_rule(address, ca, token, on, pattern, "hide_title")
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and word in refused.value.details()
        assert "\n" not in refused.value.details()
    with pytest.raises(grpc.RpcError) as refused:
        set_title_mode(address, ca, token, "everything")
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    rule_id = add_privacy_rule(address, ca, token, "app", "keepassxc", "drop_details")
    _, email, password = new_account(stack.settings)
    stranger = log_in(address, ca, email, password).token
    with pytest.raises(grpc.RpcError) as refused:
        delete_privacy_rule(address, ca, stranger, rule_id)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert [r.pattern for r in get_privacy(address, ca, token).rules] == ["keepassxc"]
    assert not get_privacy(address, ca, stranger).rules


def test_the_device_fetches_the_choices_over_mtls_keeps_them_offline_and_applies_them(stack, person, tmp_path):
    address, ca, token = stack.settings.gateway_public_address, person["ca"], person["token"]
    add_privacy_rule(address, ca, token, "app", "KeePass*", "drop_details")
    home = CollectorHome(tmp_path / "collector").create()
    enrollment = Enrollment(
        user_id=person["identity"].user_id,
        device_id=person["identity"].device_id,
        server=stack.settings.gateway_address,
        public_server=address,
        device_name="laptop",
        os="Linux",
        os_version="6",
    )
    save_enrollment(home, enrollment)
    save_credentials(home, person["creds"])
    settings = CollectorSettings()
    spool = Spool(home.spool_file)
    try:
        tracker = Tracker(spool, settings.privacy())
        PrivacySync(home, settings, tracker).once()
        assert [r.pattern for r in tracker.privacy.account.rules] == ["KeePass*"]
        saved = json.loads(home.privacy_file.read_text())
        assert saved["rules"] == [{"on": "app", "pattern": "KeePass*", "action": "drop_details"}]
        # Offline: a collector started later has them before it can reach the gateway.
        assert saved_account_privacy(home) == tracker.privacy.account
    finally:
        spool.close()
    # A revoked device is refused them.
    revoke_device(address, ca, token, person["identity"].device_id)
    other = Spool(tmp_path / "s2.sqlite3")
    try:
        with pytest.raises(RpcError) as refused:  # the device's own call: collector/wire.py
            PrivacySync(home, settings, Tracker(other, settings.privacy())).once()
        assert refused.value.code() is StatusCode.PERMISSION_DENIED
    finally:
        other.close()


# --- a rule applied to past data (stream_jobs/history.py) ------------------------------------------------------


def _past(seq: int, start: datetime, seconds: int, app: str, title: str, url: str | None = None) -> dict:
    return dict(_interval(seq, app, title, url), start=int(start.timestamp() * 1000),
                end=int((start + timedelta(seconds=seconds)).timestamp() * 1000))  # fmt: skip


def _send(settings, creds, intervals: list[dict]) -> None:
    with IngestClient(settings.gateway_address, creds) as client:
        assert client.send_batch([encode_interval(i) for i in intervals]).accepted == len(intervals)


def _day_of_work(t: datetime, first_seq: int = 0) -> list[dict]:
    """An editor, chat and a bank's site; a break; then chat again, still going on (the saved state holds it)."""
    out, seq = [], first_seq
    for app, title, url, n in (
        ("code", "budget.py - Visual Studio Code", None, 6),
        ("slack", "general (Channel) - Acme - Slack", None, 4),
        ("firefox", "Statement — Online Banking — Mozilla Firefox", "https://online.bank.example/s?id=9", 3),
        ("libreoffice-calc", "salary review.ods - LibreOffice Calc", None, 3),
        ("code", "budget.py - Visual Studio Code", None, 2),
    ):
        for _ in range(n):
            out.append(_past(seq, t, 50, app, title, url))
            seq, t = seq + 1, t + timedelta(seconds=60)
    t += timedelta(minutes=12)  # a break: a new focus session
    for app, n in (("code", 2), ("slack", 3)):
        for _ in range(n):
            out.append(_past(seq, t, 50, app, "budget.py - Visual Studio Code" if app == "code" else "thread - Slack"))
            seq, t = seq + 1, t + timedelta(seconds=60)
    return out


def _raw(client, user_id: str) -> list[dict]:
    from schemas.deletions import FOREVER_MS
    from warehouse.deletion import intervals_in

    devices = [d for (d,) in client.query(
        "SELECT DISTINCT device_id FROM intervals WHERE user_id = {u:String}", parameters={"u": user_id}
    ).result_rows]  # fmt: skip
    return [i for rows in intervals_in(client, user_id, {d: (0, FOREVER_MS) for d in devices}).values() for i in rows]


def _sessions_are_those_of_the_raw_rows(client, user_id: str, stack) -> list[tuple]:
    """The stored app and focus sessions are exactly what sessionizing the raw rows left gives, and the rollups
    agree with them: the promise 'sessions and rollups stay exact'."""
    from stream_jobs.forget import rules_of
    from stream_jobs.sessionize import DeviceState, advance
    from warehouse.rollups import rollup_drift

    made = advance(DeviceState(), _raw(client, user_id), rules_of(stack.settings))
    stored_apps = sorted(client.query(
        "SELECT app, site, toUnixTimestamp64Milli(start), toUnixTimestamp64Milli(`end`), active_ms "
        "FROM app_sessions FINAL WHERE user_id = {u:String}", parameters={"u": user_id}).result_rows)  # fmt: skip
    stored_focus = sorted(client.query(
        "SELECT toUnixTimestamp64Milli(start), toUnixTimestamp64Milli(`end`), active_ms, context_switches "
        "FROM focus_sessions FINAL WHERE user_id = {u:String}", parameters={"u": user_id}).result_rows)  # fmt: skip
    assert stored_apps == sorted((s.app, s.site, s.start, s.end, s.active_ms) for s in made.app_sessions)
    assert stored_focus == sorted((f.start, f.end, f.active_ms, f.context_switches) for f in made.focus_sessions)
    assert rollup_drift(client, user_id) == []
    return stored_apps


def _settled(client, user_id: str, count: int) -> bool:
    """The worker stored `count` intervals of the account and saved the state past the last one."""
    return client.query(
        "SELECT (SELECT count() FROM intervals FINAL WHERE user_id = {u:String}), "
        "(SELECT max(last_seq) FROM device_state WHERE user_id = {u:String})",
        parameters={"u": user_id},
    ).result_rows[0] == (count, count - 1)


def test_a_rule_applied_to_past_data_rewrites_the_rows_it_matches_and_sessions_and_rollups_stay_exact(
    stack, person, warehouse_client
):
    from schemas.api_client import apply_privacy_rule, preview_privacy_rule

    address, ca, token, user = stack.settings.gateway_public_address, person["ca"], person["token"], person["user_id"]
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    sent = _day_of_work(t0)
    _send(stack.settings, person["creds"], sent)
    # Someone else, with the same apps, whose rows no rule of this account may touch.
    other_user, other_email, other_password = new_account(stack.settings)
    _, other_creds = enroll_device(stack.settings, other_email, other_password, "theirs")
    _send(stack.settings, other_creds, _day_of_work(t0))
    eventually(lambda: all(_settled(warehouse_client, u, len(sent)) for u in (user, other_user)))
    theirs = _stored(warehouse_client, other_user)
    assert "slack" in {app for app, *_ in _sessions_are_those_of_the_raw_rows(warehouse_client, user, stack)}

    chat = add_privacy_rule(address, ca, token, "app", "Slack", "drop_details")
    salary = add_privacy_rule(address, ca, token, "title", "salary", "hide_title")
    stranger = log_in(address, ca, other_email, other_password).token
    for call in (preview_privacy_rule, apply_privacy_rule):
        with pytest.raises(grpc.RpcError) as refused:
            call(address, ca, stranger, chat)
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    slack = [i for i in sent if i["app"] == "slack"]
    preview = preview_privacy_rule(address, ca, token, chat)
    assert (preview.intervals, preview.active_seconds, preview.devices) == (len(slack), 50 * len(slack), 1)
    assert _stored(warehouse_client, user)[sent.index(slack[0])][0] == "slack"  # a preview changes nothing

    applied = apply_privacy_rule(address, ca, token, chat)
    assert applied.intervals == len(slack)
    stored = _stored(warehouse_client, user)
    for i in sent:
        if i["app"] == "slack":
            assert stored[i["device_seq"]] == ("(private)", "", "")
        else:
            assert stored[i["device_seq"]][0] == i["app"]
    apps = {app for app, *_ in _sessions_are_those_of_the_raw_rows(warehouse_client, user, stack)}
    assert "slack" not in apps and "(private)" in apps
    rollup_apps = {a for (a,) in warehouse_client.query(
        "SELECT DISTINCT app FROM usage_by_hour FINAL WHERE user_id = {u:String}", parameters={"u": user}
    ).result_rows}  # fmt: skip
    assert "slack" not in rollup_apps
    state = warehouse_client.query(
        "SELECT argMax(state, (last_seq, updated_at)) FROM device_state WHERE user_id = {u:String}",
        parameters={"u": user},
    ).result_rows[0][0]
    assert '"slack"' not in state  # the open session the saved state continues was cut too
    assert preview_privacy_rule(address, ca, token, chat).intervals == 0  # applied: nothing left to change

    # A title rule empties titles only; the time stays where it was.
    assert preview_privacy_rule(address, ca, token, salary).intervals == 3
    assert apply_privacy_rule(address, ca, token, salary).intervals == 3
    assert {v for v in _stored(warehouse_client, user).values() if v[0] == "libreoffice-calc"} == {
        ("libreoffice-calc", "", "")
    }
    # Nor is a hidden title left in the daily rollup by title (nor a dropped app's window titles).
    rolled = set(warehouse_client.query(
        "SELECT DISTINCT app, title FROM usage_by_title_day FINAL WHERE user_id = {u:String}", parameters={"u": user}
    ).result_rows)  # fmt: skip
    assert {title for app, title in rolled if app == "libreoffice-calc"} == {""}
    assert "slack" not in {app for app, _ in rolled} and ("(private)", "") in rolled
    assert rolled == {(app, title) for app, title, _ in _stored(warehouse_client, user).values()}
    # The device goes on in the session the state holds open: what it sends next counts exactly.
    t = datetime.fromtimestamp(sent[-1]["end"] / 1000, UTC) + timedelta(seconds=10)
    more = [_past(len(sent) + n, t + timedelta(seconds=60 * n), 50, "slack", "thread - Slack") for n in range(3)]
    _send(stack.settings, person["creds"], more)
    eventually(lambda: _settled(warehouse_client, user, len(sent) + 3))
    assert "slack" not in {app for app, *_ in _sessions_are_those_of_the_raw_rows(warehouse_client, user, stack)}
    assert _stored(warehouse_client, other_user) == theirs  # nobody else's rows changed


@pytest.mark.parametrize("stopped", ["after the sessions", "after the rows"])
def test_applying_a_rule_again_after_it_stopped_half_way_finishes_the_job(stack, person, warehouse_client, stopped):
    """A gateway killed half-way through an apply: the steps it got through are done by hand (the owner's login),
    then the person applies again through the gateway, and everything is exact."""
    from schemas.api_client import apply_privacy_rule
    from stream_jobs import history
    from stream_jobs.forget import rules_of
    from warehouse import privacy
    from warehouse.rollups import rollup_drift

    address, ca, token, user = stack.settings.gateway_public_address, person["ca"], person["token"], person["user_id"]
    sent = _day_of_work(datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5))
    _send(stack.settings, person["creds"], sent)
    eventually(lambda: _settled(warehouse_client, user, len(sent)))
    rule_id = add_privacy_rule(address, ca, token, "site", "bank.example", "drop_details")
    time.sleep(stack.settings.privacy_reload_seconds + 1)
    rule, _ = privacy.saved_rule(warehouse_client, user, rule_id)
    groups, _ = history.effect_of(rule, privacy.stored_groups(warehouse_client, user))
    history._remake_sessions(
        warehouse_client, user, groups, privacy.intervals_of_groups(warehouse_client, user, groups),
        rules_of(stack.settings),
    )  # fmt: skip
    if stopped == "after the rows":
        privacy.rewrite_groups(warehouse_client, user, groups, rule.action)
        assert rollup_drift(warehouse_client, user)  # half-way: the rollups disagree with the rows
    else:
        with pytest.raises(AssertionError):  # half-way: the sessions disagree with the rows
            _sessions_are_those_of_the_raw_rows(warehouse_client, user, stack)
    applied = apply_privacy_rule(address, ca, token, rule_id)
    assert applied.intervals == (3 if stopped == "after the sessions" else 0)
    assert "firefox" not in {app for app, *_ in _sessions_are_those_of_the_raw_rows(warehouse_client, user, stack)}
    assert not [v for v in _stored(warehouse_client, user).values() if v[2]]  # no site left: only the bank had one
