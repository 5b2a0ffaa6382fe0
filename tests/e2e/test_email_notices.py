"""E-mail notices through the whole running pipeline: a stack of its own whose gateway sends through a real SMTP
server in this process (testbed/mailbox.py: aiosmtpd, STARTTLS, a login). A device sends its intervals through
the real gateway with its real certificate; the worker stores them; the gateway's mailer finds the limit crossed
and sends the e-mail; its one-click unsubscribe link is POSTed, without signing in, to the gateway's HTTPS page.
And an account deleted while its notice waits is never sent it. The weekly summary's rollover in the account's
zone is seen by running the gateway under libfaketime (Debian's faketime), its clock started just before the end
of that account's week: the one thing moved is that process's clock.

Each account's zone is chosen so that its local time is around noon whatever the hour of the run: the activity
of "today" always fits in today.
"""

from __future__ import annotations

import http.client
import re
import ssl
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import grpc
import pytest

from collector.transport import IngestClient
from infra.devices import enroll_device, new_account
from infra.processes import ManagedProcess
from infra.stack import _module
from schemas import api_client
from schemas.codec import encode_interval
from testbed.mailbox import Mailbox
from testbed.zones import noon_zone
from tests.conftest import eventually, private_stack_running
from warehouse.client import connect
from warehouse.notice_rules import duration
from warehouse.notices import notice_history, notice_settings
from warehouse.queries import time_per_app

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def mailbox(tmp_path_factory):
    with Mailbox(tmp_path_factory.mktemp("smtp")) as box:
        yield box


@pytest.fixture(scope="module")
def mailing_stack(tmp_path_factory, mailbox):
    with private_stack_running(
        tmp_path_factory.mktemp("stack"), **mailbox.smtp_settings(), email_every_seconds=1.0
    ) as running:
        yield running


@pytest.fixture(scope="module")
def owner_client(mailing_stack):
    client = connect(mailing_stack.settings)
    yield client
    client.close()


class Person:
    def __init__(self, stack) -> None:
        self.settings = stack.settings
        self.ca = (self.settings.pki_dir / "ca.crt").read_bytes()
        self.user_id, self.email, self.password = new_account(self.settings)
        self.identity, self.credentials = enroll_device(self.settings, self.email, self.password, "laptop")
        self.token = api_client.log_in(self.settings.gateway_public_address, self.ca, self.email, self.password).token
        self.seq = 0
        self.zone = noon_zone()
        self.call(api_client.set_notice_pause, False, self.zone)

    def call(self, function, *args, **kwargs):
        return function(self.settings.gateway_public_address, self.ca, self.token, *args, **kwargs)

    def limit(self, app: str, minutes: int, *channels: str, kind: str = "app") -> str:
        goal = self.call(api_client.add_goal, kind=kind, target=app, direction="at_most", period="day", minutes=minutes)
        for channel in channels:
            self.call(api_client.set_goal_notice, goal, channel, True)
        return goal

    def use(self, app: str, minutes: float) -> None:
        """`minutes` of `app` ending a minute ago, through the gateway with the device's certificate."""
        end = datetime.now(UTC) - timedelta(minutes=1) - timedelta(seconds=self.seq)
        start = end - timedelta(minutes=minutes)
        self.seq += 1
        record = {
            "event_id": str(uuid.uuid4()),
            "device_seq": self.seq,
            "start": int(start.timestamp() * 1000),
            "end": int(end.timestamp() * 1000),
            "app": app,
            "title": f"secret plans in {app}",
            "url": None,
            "keystrokes": 0,
            "clicks": 0,
            "idle": False,
        }
        with IngestClient(self.settings.gateway_address, self.credentials) as client:
            assert client.send_batch([encode_interval(record)]).accepted == 1


def link_of(message) -> str:
    (link,) = re.findall(r"<(https://[^>]+)>", message["List-Unsubscribe"])
    return link


def post(stack, link: str) -> tuple[int, str]:
    """The RFC 8058 one-click POST a mail program sends: no cookie, no token but the link's."""
    url = urlsplit(link)
    context = ssl.create_default_context(cafile=str(stack.settings.pki_dir / "ca.crt"))
    connection = http.client.HTTPSConnection(url.hostname, url.port, context=context, timeout=10)
    connection.request("POST", f"{url.path}?{url.query}", body=b"List-Unsubscribe=One-Click",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    answer = connection.getresponse()
    result = answer.status, answer.read().decode()
    connection.close()
    return result


def test_a_crossed_limit_arrives_by_e_mail_and_its_link_switches_it_off_without_signing_in(
    mailing_stack, mailbox, owner_client
):
    ann = Person(mailing_stack)
    games = ann.limit("Game", 60, "email")
    chat = ann.limit("Chat", 20, "email")
    ann.use("Game", 52)  # 87 % of the limit
    (first,) = mailbox.wait_for(ann.email)
    assert first["Subject"] == "85 % of your limit: at most 1 h a day of Game"
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = link_of(first)
    assert link.startswith(f"https://127.0.0.1:{mailing_stack.settings.unsubscribe_port}/unsubscribe?t=")
    assert "secret plans" not in first.as_string()  # counts, never content

    status, text = post(mailing_stack, link)
    assert status == 200 and "no more e-mail notices of the goal at most 1 h a day of Game" in text
    assert "email" not in notice_settings(owner_client, ann.user_id).switches.get(games, frozenset())

    quiet = ann.limit("Mail", 60, "email")
    ann.use("Mail", 10)  # a sixth of its limit: never a notice
    ann.use("Game", 10)  # over the limit: but its e-mail is off now
    ann.use("Chat", 25)  # this one's is on: once it arrives, the mailer has seen the Game and Mail time too
    subjects = [m["Subject"] for m in mailbox.wait_for(ann.email, 2)]
    assert subjects[1] == "Limit reached: at most 20 min a day of Chat"
    eventually(lambda: len(notice_history(owner_client, ann.user_id)) >= 3)
    noticed = {n.goal_id for n in notice_history(owner_client, ann.user_id)}
    assert chat in noticed and quiet not in noticed
    assert not any(n.goal_id == games and n.threshold == 100 for n in notice_history(owner_client, ann.user_id))
    assert len(mailbox.to(ann.email)) == 2

    # A category goal follows the account's category edits, the day's time already stored included: Chat's
    # 25 min count for "Talk" once a rule says so, and that limit is crossed without another minute of activity.
    ann.call(api_client.add_category_rule, "app", "^Phone$", "Talk")  # the category exists; Chat is not in it
    talk = ann.limit("Talk", 20, "email", kind="category")
    time.sleep(3 * mailing_stack.settings.email_every_seconds)  # rounds pass: nothing counts for Talk yet
    assert len(mailbox.to(ann.email)) == 2
    ann.call(api_client.add_category_rule, "app", "^Chat$", "Talk")
    assert mailbox.wait_for(ann.email, 3)[2]["Subject"] == "Limit reached: at most 20 min a day of Talk"
    assert talk in {n.goal_id for n in notice_history(owner_client, ann.user_id)}


def test_an_account_deleted_while_its_notice_waits_is_never_sent_it(mailing_stack, mailbox, owner_client):
    bob, witness = Person(mailing_stack), Person(mailing_stack)
    bob.limit("Game", 30, "email")
    mailbox.stop()  # the SMTP server away: Bob's notice is found but waits
    try:
        bob.use("Game", 40)
        eventually(lambda: [n.state for n in notice_history(owner_client, bob.user_id) if n.threshold == 100]
                   == ["pending"])  # fmt: skip
        report = bob.call(api_client.delete_account, bob.password)
        assert report is not None
    finally:
        mailbox.start()
    witness.limit("Game", 30, "email")
    witness.use("Game", 40)
    mailbox.wait_for(witness.email)  # rounds go on, and deliver: Bob's would have gone with them
    assert mailbox.to(bob.email) == []
    assert notice_history(owner_client, bob.user_id) == []
    assert notice_settings(owner_client, bob.user_id).switches == {}


def test_without_smtp_the_e_mail_channel_is_refused_in_one_line(stack):
    person = Person(stack)
    goal = person.limit("Game", 30)
    with pytest.raises(grpc.RpcError) as refused:
        person.call(api_client.set_goal_notice, goal, "email", True)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == (
        "the notice setting was not saved: this server does not send email notices (its operator has not set up "
        "SMTP); only desktop"
    )
    with pytest.raises(grpc.RpcError) as weekly:
        person.call(api_client.set_weekly_summary, True)
    assert "does not send e-mail" in weekly.value.details()


@pytest.fixture
def mailing_dashboard_env(mailing_stack):
    from tests.e2e.dashboard_fixtures import dashboard_env_of

    with dashboard_env_of(mailing_stack):
        yield


def test_the_goals_page_offers_e_mail_and_the_weekly_summary_where_smtp_is_set(
    mailing_stack, mailing_dashboard_env, owner_client
):
    from tests.e2e.dashboard_fixtures import Account, open_page, signed_in_app

    cara = Person(mailing_stack)
    goal = cara.limit("Game", 45)
    at = open_page(signed_in_app(Account(cara.user_id, cara.email, cara.password, "", {})), "goals")
    assert at.toggle(key=f"goal_email_{goal}").value is False and at.toggle(key="weekly_summary").value is False
    at.toggle(key=f"goal_email_{goal}").set_value(True).run()
    assert not at.error, [e.value for e in at.error]
    assert at.success[0].value == "E-mail notices on: at most 45 min a day of Game"
    at.toggle(key="weekly_summary").set_value(True).run()
    assert at.success[0].value == "Weekly summary on"
    stored = notice_settings(owner_client, cara.user_id)
    assert stored.switches == {goal: frozenset({"email"})} and stored.weekly and stored.tz == "UTC"
    at.toggle(key="weekly_summary").set_value(False).run()
    assert not notice_settings(owner_client, cara.user_id).weekly


@contextmanager
def gateway_clock_at(stack, moment: datetime) -> Iterator[None]:
    """The stack's gateway restarted under libfaketime (Debian's faketime): its clock starts at `moment` and runs
    on from there. Nothing of the product is changed or stubbed; that process's clock is all that moves. The
    stack's own gateway is back afterwards."""
    stack.stop_gateway()
    argv = ["faketime", "-f", f"@{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}", *_module("gateway.server")]
    gateway = ManagedProcess("gateway-faketime", argv, stack.logs, {**stack.env_for("gateway"), "TZ": "UTC"})
    gateway.start()
    try:
        gateway.wait_for_output(r"gateway listening on", 60)
        yield
    finally:
        gateway.stop(30)
        stack.start_gateway()


def test_the_weekly_summary_comes_when_the_week_ends_in_the_account_s_zone(mailing_stack, mailbox, owner_client):
    """Auckland's week ends while the gateway runs; the summary of that week comes then, and not before."""
    dana = Person(mailing_stack)
    dana.limit("Game", 60)
    dana.call(api_client.set_weekly_summary, True, "Pacific/Auckland")
    dana.use("Game", 30)
    zone = ZoneInfo("Pacific/Auckland")
    local = datetime.now(zone)
    monday = (local - timedelta(days=local.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    week_end = monday + timedelta(days=7)
    # The week's time as the warehouse will hold it: the interval, cut at the week's start if it began before.
    end = datetime.now(UTC) - timedelta(minutes=1)
    seconds = (end - max(end - timedelta(minutes=30), monday.astimezone(UTC))).total_seconds()
    stored = lambda: float(time_per_app(owner_client, dana.user_id, monday, week_end)["seconds"].sum())  # noqa: E731
    eventually(lambda: stored() >= seconds - 1)
    assert mailbox.to(dana.email) == []
    ahead_s = 25
    with gateway_clock_at(mailing_stack, week_end - timedelta(seconds=ahead_s)):
        swapped = time.time()
        (summary,) = mailbox.wait_for(dana.email, timeout_s=ahead_s + 60)
    arrived = next(r.at for r in mailbox.received if dana.email in r.recipients)
    assert arrived - swapped > ahead_s - 12  # not before Monday in Auckland (the gateway took a few s to start)
    assert parsedate_to_datetime(summary["Date"]) >= week_end
    sunday = monday + timedelta(days=6)
    total = duration(seconds)
    assert summary["Subject"] == f"Your week {monday:%d %b} to {sunday:%d %b %Y}: {total} of activity"
    assert "- at most 1 h a day of Game: met 7 of 7 days" in summary.get_content()
    time.sleep(3 * mailing_stack.settings.email_every_seconds)  # the stack's own gateway again: once per week
    assert len(mailbox.to(dana.email)) == 1
