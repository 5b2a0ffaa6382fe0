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
from gateway.account_client import (
    add_privacy_rule,
    delete_privacy_rule,
    get_privacy,
    log_in,
    revoke_device,
    set_title_mode,
)
from infra.devices import enroll_device, new_account
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
    # The worker reads an account's choices again within 30 s (stream_jobs/app.py PRIVACY_TTL_S).
    time.sleep(31)
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
        with pytest.raises(grpc.RpcError) as refused:
            PrivacySync(home, settings, Tracker(other, settings.privacy())).once()
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        other.close()
