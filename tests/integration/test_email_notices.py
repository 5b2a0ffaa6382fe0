"""E-mail notices: the gateway's mailer (gateway/mailer.py) against the real embedded warehouse and a real SMTP
server in this process (testbed/mailbox.py: aiosmtpd with STARTTLS and a login), and the real unsubscribe page
(gateway/unsubscribe_page.py) over HTTPS. The one stand-in is the clock, so that days and weeks pass: "now" moves
through Wednesday 2026-03-11 (UTC) and the week after it. The whole path through the running gateway is
tests/e2e/test_email_notices.py.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import re
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from gateway.mail_rules import notice_email
from gateway.mailer import Mailer, SmtpServer, SmtpSession
from gateway.pki import ensure_stack_pki
from gateway.tokens import DASHBOARD_SCOPE, ensure_signing_key, issue_token, issue_unsubscribe_token
from gateway.unsubscribe_page import UnsubscribePage
from infra.processes import free_port
from plumbing.settings import Settings
from testbed.mailbox import Mailbox
from tests.conftest import lone_warehouse
from tests.integration.test_goals import interval, store
from warehouse.goals import add_goal, delete_goal
from warehouse.notices import notice_history, notice_settings, set_account, set_goal_channel, set_weekly_summary

DAY = datetime(2026, 3, 11, tzinfo=UTC)  # a Wednesday
ANN = "ann@example.org"
BOB = "bob@example.org"
BOTH = ("desktop", "email")


@pytest.fixture
def client(tmp_path):
    with lone_warehouse(tmp_path / "warehouse") as c:
        yield c


@pytest.fixture
def mailbox(tmp_path):
    with Mailbox(tmp_path / "smtp") as box:
        yield box


@pytest.fixture
def keys(tmp_path):
    return ensure_signing_key(tmp_path / "keys")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def make_mailer(client, mailbox: Mailbox, keys, clock: Clock, addresses: dict[str, str], port: int = 7445, **extra):
    settings = Settings(**{**mailbox.smtp_settings(), "unsubscribe_port": port, **extra})
    locks: dict[str, asyncio.Lock] = {}
    return Mailer(
        settings, lambda: client, addresses.get, keys[0], lambda u: locks.setdefault(u, asyncio.Lock()), clock
    )


def one_round(mailer: Mailer) -> int:
    return asyncio.run(mailer.round())


def games(client, user: str, at: datetime, minutes: float, seq: int) -> None:
    store(client, user, [interval("laptop", at, minutes, "Game", seq=seq)])


def limit(client, user: str, minutes: int = 60, period: str = "day") -> str:
    return add_goal(client, user, kind="app", target="Game", direction="at_most", period=period, minutes=minutes)


def over_the_limit(client, user: str) -> str:
    """A 60 min daily limit on Game with its e-mail on, and 70 min of Game on DAY: both thresholds crossed."""
    goal = limit(client, user)
    set_goal_channel(client, user, goal, "email", True, BOTH)
    games(client, user, DAY + timedelta(hours=9), 70, 1)
    return goal


def link_of(message) -> str:
    (link,) = re.findall(r"<(https://[^>]+)>", message["List-Unsubscribe"])
    return link


def test_crossing_sends_one_e_mail_per_threshold_with_a_one_click_unsubscribe(client, mailbox, keys):
    clock = Clock(DAY + timedelta(hours=10))
    mailer = make_mailer(client, mailbox, keys, clock, {"ann": ANN})
    goal = limit(client, "ann")
    set_goal_channel(client, "ann", goal, "email", True, BOTH)
    games(client, "ann", DAY + timedelta(hours=9), 40, 1)
    assert one_round(mailer) == 0  # 40 of 60 min: not crossed
    assert mailbox.received == []

    games(client, "ann", DAY + timedelta(hours=9, minutes=40), 12, 2)
    assert one_round(mailer) == 1
    (first,) = mailbox.wait_for(ANN)
    assert first["Subject"] == "85 % of your limit: at most 1 h a day of Game"
    assert first["To"] == ANN and first["From"] == "Productimon <notices@example.org>"
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert first["Auto-Submitted"] == "auto-generated"
    assert first["Message-ID"].endswith("@example.org>")
    link = link_of(first)
    assert link.startswith("https://127.0.0.1:7445/unsubscribe?t=")
    text = first.get_content()
    assert "52 of 60 min today." in text and link in text
    assert "Game window" not in text  # counts, never content: no title is ever in a notice
    assert mailbox.received[0].sender == "notices@example.org"

    assert one_round(mailer) == 0  # at most one notice per goal, threshold and period
    games(client, "ann", DAY + timedelta(hours=9, minutes=52), 10, 3)
    assert one_round(mailer) == 1
    assert [m["Subject"] for m in mailbox.wait_for(ANN, 2)][1] == "Limit reached: at most 1 h a day of Game"
    assert one_round(mailer) == 0 and len(mailbox.received) == 2
    assert {(n.threshold, n.channel, n.state) for n in notice_history(client, "ann")} == {
        (85, "email", "sent"),
        (100, "email", "sent"),
    }


def test_nothing_is_sent_for_a_goal_or_channel_that_is_off_or_paused(client, mailbox, keys):
    clock = Clock(DAY + timedelta(hours=12))
    mailer = make_mailer(client, mailbox, keys, clock, {"ann": ANN, "bob": BOB})
    desktop_only, switched_off, paused = limit(client, "ann"), limit(client, "ann", 30), limit(client, "bob")
    set_goal_channel(client, "ann", desktop_only, "desktop", True, BOTH)
    set_goal_channel(client, "ann", switched_off, "email", True, BOTH)
    set_goal_channel(client, "bob", paused, "email", True, BOTH)
    set_account(client, "bob", paused=True)
    set_goal_channel(client, "ann", switched_off, "email", False, BOTH)  # off mid-period, before the crossing
    games(client, "ann", DAY + timedelta(hours=9), 70, 1)
    games(client, "bob", DAY + timedelta(hours=9), 70, 1)
    assert one_round(mailer) == 0
    assert mailbox.received == []
    assert notice_history(client, "ann") == [] and notice_history(client, "bob") == []


def test_switched_off_between_finding_and_sending_nothing_goes(client, mailbox, keys):
    clock = Clock(DAY + timedelta(hours=12))
    mailer = make_mailer(client, mailbox, keys, clock, {"ann": ANN})
    goal = over_the_limit(client, "ann")
    mailbox.stop()  # the notice is found, but cannot go yet
    assert one_round(mailer) == 0
    assert sorted(n.state for n in notice_history(client, "ann")) == ["pending", "superseded"]
    set_goal_channel(client, "ann", goal, "email", False, BOTH)
    mailbox.start()
    assert one_round(mailer) == 0
    assert mailbox.received == []
    assert sorted(n.state for n in notice_history(client, "ann")) == ["dropped", "superseded"]


def test_an_smtp_server_away_or_refusing_the_login_delays_the_notice_and_loses_nothing(client, mailbox, keys, caplog):
    clock = Clock(DAY + timedelta(hours=12))
    over_the_limit(client, "ann")
    wrong = make_mailer(client, mailbox, keys, clock, {"ann": ANN}, smtp_password="not-the-password")
    with caplog.at_level(logging.WARNING, logger="gateway.mailer"):
        assert one_round(wrong) == 0
        assert one_round(wrong) == 0
    said = [r.getMessage() for r in caplog.records if r.name == "gateway.mailer"]
    assert len(said) == 1  # a lasting problem is said once, in one line
    assert "refused the login: 535" in said[0] and "PRODUCTIMON_SMTP_PASSWORD" in said[0] and "\n" not in said[0]
    mailbox.stop()
    caplog.clear()
    right = make_mailer(client, mailbox, keys, clock, {"ann": ANN})
    with caplog.at_level(logging.WARNING, logger="gateway.mailer"):
        assert one_round(right) == 0
    (said,) = [r.getMessage() for r in caplog.records if r.name == "gateway.mailer"]
    assert f"cannot reach the SMTP server 127.0.0.1:{mailbox.port}" in said
    mailbox.start()
    assert one_round(right) == 1
    (message,) = mailbox.wait_for(ANN)
    assert message["Subject"] == "Limit reached: at most 1 h a day of Game"


def test_an_untrusted_smtp_certificate_sends_nothing_and_says_why(client, mailbox, keys, tmp_path, caplog):
    other_ca = ensure_stack_pki(tmp_path / "other-pki", ["localhost"]).ca_cert_path
    over_the_limit(client, "ann")
    mailer = make_mailer(client, mailbox, keys, Clock(DAY + timedelta(hours=12)), {"ann": ANN})
    mailer.server = SmtpServer(**{**mailer.server.__dict__, "ca_file": str(other_ca)})
    with caplog.at_level(logging.WARNING, logger="gateway.mailer"):
        assert one_round(mailer) == 0
    said = [r.getMessage() for r in caplog.records if r.name == "gateway.mailer"]
    assert len(said) == 1 and "certificate is not trusted" in said[0]
    assert mailbox.received == [] and mailbox.handler.logins == []  # the password never went out


def test_a_mailbox_refused_for_good_is_dropped_and_never_tried_again(client, mailbox, keys):
    mailbox.refuse(ANN)
    mailer = make_mailer(client, mailbox, keys, Clock(DAY + timedelta(hours=12)), {"ann": ANN, "bob": BOB})
    for user in ("ann", "bob"):
        over_the_limit(client, user)
    assert one_round(mailer) == 1  # Bob's still goes
    assert sorted(n.state for n in notice_history(client, "ann")) == ["dropped", "superseded"]
    assert one_round(mailer) == 0
    assert [r.recipients for r in mailbox.received] == [[BOB]]


def test_a_deleted_or_disabled_account_is_sent_nothing(client, mailbox, keys):
    mailer = make_mailer(client, mailbox, keys, Clock(DAY + timedelta(hours=12)), {})  # no address: gone
    over_the_limit(client, "ann")
    assert one_round(mailer) == 0
    assert mailbox.received == []


def test_the_weekly_summary_comes_once_after_the_week_ends_in_the_account_s_zone(client, mailbox, keys):
    # Auckland is UTC+13 in March: its Monday 2026-03-16 begins at Sunday 11:00 UTC.
    clock = Clock(DAY)
    mailer = make_mailer(client, mailbox, keys, clock, {"ann": ANN})
    daily = limit(client, "ann", 60)
    add_goal(client, "ann", kind="all", target="", direction="at_least", period="week", minutes=120)
    set_weekly_summary(client, "ann", True, "Pacific/Auckland", BOTH, now=DAY)
    assert notice_settings(client, "ann").weekly
    for n, minutes in enumerate((30, 90, 30)):  # Thursday to Saturday, local: one day over the daily limit
        games(client, "ann", datetime(2026, 3, 11, 22, tzinfo=UTC) + timedelta(days=n), minutes, n + 1)
    clock.now = DAY + timedelta(days=1)  # the week the summary was switched on in has not ended
    assert one_round(mailer) == 0
    clock.now = datetime(2026, 3, 15, 10, 59, tzinfo=UTC)  # Sunday 23:59 in Auckland
    assert one_round(mailer) == 0
    clock.now = datetime(2026, 3, 15, 11, 1, tzinfo=UTC)  # Monday 00:01 in Auckland; still Sunday in UTC
    assert one_round(mailer) == 1
    (summary,) = mailbox.wait_for(ANN)
    assert summary["Subject"] == "Your week 09 Mar to 15 Mar 2026: 2 h 30 min of activity"
    text = summary.get_content()
    assert "- at most 1 h a day of Game: met 6 of 7 days (2 h 30 min)" in text
    assert "- at least 2 h a week of all activity: met 1 of 1 week (2 h 30 min)" in text
    assert "weekly summary" in text and link_of(summary) in text
    assert one_round(mailer) == 0  # once per week
    clock.now += timedelta(days=3)
    assert one_round(mailer) == 0
    clock.now += timedelta(days=4)  # the next Monday: the next week's summary
    assert one_round(mailer) == 1
    assert mailbox.wait_for(ANN, 2)[1]["Subject"].startswith("Your week 16 Mar to 22 Mar 2026")
    delete_goal(client, "ann", daily)


def _https(port: int, ca: Path, method: str, link: str, body: bytes | None = None) -> tuple[int, str]:
    url = urlsplit(link)
    connection = http.client.HTTPSConnection(
        "127.0.0.1", port, context=ssl.create_default_context(cafile=str(ca)), timeout=10
    )
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
    connection.request(method, f"{url.path}?{url.query}", body=body, headers=headers)
    answer = connection.getresponse()
    status, text = answer.status, answer.read().decode()
    connection.close()
    return status, text


@pytest.fixture
def page(client, keys, tmp_path):
    pki = ensure_stack_pki(tmp_path / "pki", ["127.0.0.1"])
    served = UnsubscribePage(
        "127.0.0.1", free_port(), str(pki.server_cert_path), str(pki.server_key_path), keys[1], lambda: client
    )
    served.start()
    yield served, pki.ca_cert_path
    served.stop()


def test_the_unsubscribe_link_switches_that_notice_off_with_one_post_and_no_sign_in(client, mailbox, keys, page):
    served, ca = page
    mailer = make_mailer(client, mailbox, keys, Clock(DAY + timedelta(hours=10)), {"ann": ANN}, port=served.port)
    goal, other = limit(client, "ann"), limit(client, "ann", 50)
    for one in (goal, other):
        set_goal_channel(client, "ann", one, "email", True, BOTH)
        set_goal_channel(client, "ann", one, "desktop", True, BOTH)
    games(client, "ann", DAY + timedelta(hours=9), 52, 1)  # 85 % of 60 min, over 50 min
    assert one_round(mailer) == 2
    by_subject = {m["Subject"]: m for m in mailbox.wait_for(ANN, 2)}
    link = link_of(by_subject["85 % of your limit: at most 1 h a day of Game"])

    status, text = _https(served.port, ca, "GET", link)  # a person opening it, or a mail scanner: no change
    assert status == 200 and "Stop e-mail notices of the goal at most 1 h a day of Game?" in text
    assert "email" in notice_settings(client, "ann").switches[goal]
    status, text = _https(served.port, ca, "POST", link, b"List-Unsubscribe=One-Click")  # RFC 8058
    assert status == 200 and "You will get no more e-mail notices of the goal at most 1 h a day of Game." in text
    switches = notice_settings(client, "ann").switches
    assert switches[goal] == {"desktop"} and switches[other] == {"desktop", "email"}  # only that one, that channel
    status, text = _https(served.port, ca, "POST", link, b"List-Unsubscribe=One-Click")
    assert status == 200 and "already off" in text

    games(client, "ann", DAY + timedelta(hours=9, minutes=52), 10, 2)
    assert one_round(mailer) == 0  # its 100 % goes by desktop only; the other goal had its 100 % already
    assert len(mailbox.received) == 2

    forged = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
    status, text = _https(served.port, ca, "POST", forged, b"List-Unsubscribe=One-Click")
    assert status == 400 and "does not work" in text
    dashboard_token = issue_token(keys[0], "ann", DASHBOARD_SCOPE, 3600)  # genuine, but not for unsubscribing
    assert _https(served.port, ca, "POST", f"/unsubscribe?t={dashboard_token}", b"")[0] == 400
    assert _https(served.port, ca, "GET", "/elsewhere?t=x")[0] == 404
    assert notice_settings(client, "ann").switches[other] == {"desktop", "email"}


def test_the_weekly_summary_s_link_switches_the_summary_off(client, mailbox, keys, page):
    served, ca = page
    clock = Clock(DAY)
    mailer = make_mailer(client, mailbox, keys, clock, {"ann": ANN}, port=served.port)
    set_weekly_summary(client, "ann", True, "UTC", BOTH, now=DAY)
    clock.now = DAY + timedelta(days=6)  # Tuesday of the next week
    assert one_round(mailer) == 1
    (summary,) = mailbox.wait_for(ANN)
    assert _https(served.port, ca, "POST", link_of(summary), b"List-Unsubscribe=One-Click")[0] == 200
    assert not notice_settings(client, "ann").weekly
    clock.now += timedelta(days=7)
    assert one_round(mailer) == 0


def test_a_link_of_another_account_stops_only_that_account_s_notice(client, mailbox, keys, page):
    served, ca = page
    ann_goal, bob_goal = limit(client, "ann"), limit(client, "bob")
    set_goal_channel(client, "ann", ann_goal, "email", True, BOTH)
    set_goal_channel(client, "bob", bob_goal, "email", True, BOTH)
    # A link names its account and goal together, signed: Ann's token for Bob's goal finds no goal of Ann's.
    crossed = issue_unsubscribe_token(keys[0], "ann", bob_goal)
    status, text = _https(served.port, ca, "POST", f"/unsubscribe?t={crossed}", b"List-Unsubscribe=One-Click")
    assert status == 200 and "already off" in text
    assert notice_settings(client, "bob").switches[bob_goal] == {"email"}


def test_the_message_headers_carry_no_line_break_from_a_goal_s_target(client):
    from warehouse.notice_rules import Notice

    notice = Notice("n", "g", DAY.date(), 85, "email", "pending", "85 % of: Evil\r\nBcc: x@example.org", "b")
    message = notice_email(notice, ANN, "n@example.org", "https://h/unsubscribe?t=x", DAY)
    assert message["Subject"] == "85 % of: Evil  Bcc: x@example.org"
    assert "Bcc" not in message.keys()


def test_an_smtp_session_sends_several_messages_on_one_connection(client, mailbox, keys):
    session = SmtpSession(make_mailer(client, mailbox, keys, Clock(DAY), {}).server)
    from warehouse.notice_rules import Notice

    for n in range(3):
        notice = Notice(str(n), "g", DAY.date(), 85, "email", "pending", f"s{n}", "b")
        session.send(notice_email(notice, ANN, "n@example.org", "https://h/unsubscribe?t=x", DAY))
    session.close()
    assert [m["Subject"] for m in mailbox.wait_for(ANN, 3)] == ["s0", "s1", "s2"]
    assert mailbox.handler.logins == ["notices"]  # one login: one connection


def test_a_client_that_connects_and_says_nothing_does_not_hold_up_the_page(client, mailbox, keys, page):
    import socket

    served, ca = page
    silent = socket.create_connection(("127.0.0.1", served.port))  # no TLS hello, ever
    try:
        status, text = _https(served.port, ca, "GET", "/unsubscribe?t=x")
        assert status == 400 and "does not work" in text
    finally:
        silent.close()


def test_tls_from_the_first_byte_sends_as_starttls_does(client, keys, tmp_path):
    with Mailbox(tmp_path / "smtps", implicit_tls=True) as smtps:
        mailer = make_mailer(client, smtps, keys, Clock(DAY + timedelta(hours=12)), {"ann": ANN})
        assert mailer.server.security == "tls"
        over_the_limit(client, "ann")
        assert one_round(mailer) == 1
        (message,) = smtps.wait_for(ANN)
        assert message["Subject"] == "Limit reached: at most 1 h a day of Game"
        assert smtps.handler.logins == ["notices"]
