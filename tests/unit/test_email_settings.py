"""The operator's e-mail settings, the unsubscribe token and the notice e-mail itself (plumbing/settings.py,
gateway/tokens.py, gateway/mail_rules.py): a bad SMTP setting is one line naming the variable; a token says whose
notice it stops and nothing forged or of another kind passes; the message carries RFC 8058's headers."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.mail_rules import SUBJECT_LIMIT, notice_email, unsubscribe_link
from gateway.tokens import (
    DASHBOARD_SCOPE,
    TokenError,
    ensure_signing_key,
    issue_token,
    issue_unsubscribe_token,
    verify_token,
    verify_unsubscribe_token,
)
from infra.stack import Stack
from plumbing.settings import ConfigError, Settings, load_settings
from warehouse.goal_rules import Goal
from warehouse.notice_rules import WEEKLY_GOAL_ID, Notice, WeekOfGoal, duration, weekly_notice

SMTP = {"smtp_host": "smtp.example.org", "smtp_from": "Productimon <notices@example.org>"}


def test_without_an_smtp_host_no_e_mail_is_sent_and_the_link_points_at_the_gateway(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    assert not settings.email_notices
    assert settings.unsubscribe_link_base == "https://127.0.0.1:7445/unsubscribe"
    assert load_settings(data_dir=tmp_path, **SMTP).email_notices
    behind = load_settings(data_dir=tmp_path, unsubscribe_url="https://stats.example.org/unsubscribe")
    assert behind.unsubscribe_link_base == "https://stats.example.org/unsubscribe"


@pytest.mark.parametrize(
    ("values", "variable", "says"),
    [
        ({"smtp_from": ""}, "SMTP_FROM", "required with PRODUCTIMON_SMTP_HOST"),
        ({"smtp_from": "notices"}, "SMTP_FROM", "is not an e-mail address"),
        ({"smtp_host": "smtp example"}, "SMTP_HOST", "is not a host name"),
        ({"smtp_username": "me"}, "SMTP_PASSWORD", "go together"),
        ({"smtp_password": "pw"}, "SMTP_USERNAME", "go together"),
        ({"smtp_security": "plaintext"}, "SMTP_SECURITY", "plaintext only to a relay on this host"),
        ({"smtp_ca_file": "/nonexistent/ca.crt"}, "SMTP_CA_FILE", "is not a file"),
        ({"unsubscribe_url": "http://stats.example.org/unsubscribe"}, "UNSUBSCRIBE_URL", "https://"),
        ({"unsubscribe_url": "https://stats.example.org/u?x=1"}, "UNSUBSCRIBE_URL", "without a query"),
        ({"gateway_host": "0.0.0.0"}, "UNSUBSCRIBE_URL", "required with PRODUCTIMON_SMTP_HOST while the gateway"),
    ],
)
def test_a_bad_smtp_setting_is_one_line_naming_the_variable(tmp_path, values, variable, says):
    with pytest.raises(ConfigError) as refused:
        load_settings(data_dir=tmp_path, **{**SMTP, **values})
    line = str(refused.value)
    assert line.startswith(f"invalid configuration: PRODUCTIMON_{variable}: ") and says in line
    assert "\n" not in line


def test_a_bad_smtp_port_or_security_is_refused(tmp_path):
    for values in ({"smtp_port": 0}, {"smtp_security": "ssl"}):
        with pytest.raises(ConfigError, match="^invalid configuration: PRODUCTIMON_SMTP_"):
            load_settings(data_dir=tmp_path, **{**SMTP, **values})


def test_plaintext_is_allowed_to_a_relay_on_loopback(tmp_path):
    assert load_settings(data_dir=tmp_path, **{**SMTP, "smtp_host": "127.0.0.1", "smtp_security": "plaintext"})


def test_only_the_gateway_gets_the_smtp_login(tmp_path):
    stack = Stack(Settings(data_dir=tmp_path, **SMTP, smtp_username="mailer", smtp_password="smtp-secret"), print)
    assert stack.env_for("gateway")["PRODUCTIMON_SMTP_PASSWORD"] == "smtp-secret"
    for role in ("worker", "dashboard"):
        env = stack.env_for(role)
        assert "smtp-secret" not in env.values() and "PRODUCTIMON_SMTP_USERNAME" not in env
    assert "smtp-secret" not in stack.env.values()


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return ensure_signing_key(tmp_path_factory.mktemp("keys"))


def test_an_unsubscribe_token_names_its_account_and_what_it_stops(keys):
    token = issue_unsubscribe_token(keys[0], "ann", "goal-1")
    assert verify_unsubscribe_token(keys[1], token) == ("ann", "goal-1")


def test_an_unsubscribe_token_is_no_sign_in_and_a_sign_in_is_no_unsubscribe_token(keys):
    with pytest.raises(TokenError, match="not valid for dashboard"):
        verify_token(keys[1], issue_unsubscribe_token(keys[0], "ann", "goal-1"), DASHBOARD_SCOPE)
    with pytest.raises(TokenError, match="not valid for unsubscribe"):
        verify_unsubscribe_token(keys[1], issue_token(keys[0], "ann", DASHBOARD_SCOPE, 3600))


def test_a_forged_or_cut_unsubscribe_token_is_refused(keys, tmp_path):
    token = issue_unsubscribe_token(keys[0], "ann", "goal-1")
    other = ensure_signing_key(tmp_path / "other")
    with pytest.raises(TokenError, match="changed, or not issued by this instance"):
        verify_unsubscribe_token(keys[1], issue_unsubscribe_token(other[0], "ann", "goal-1"))
    with pytest.raises(TokenError):
        verify_unsubscribe_token(keys[1], token[: len(token) // 2])
    with pytest.raises(TokenError, match="no token"):
        verify_unsubscribe_token(keys[1], "")


def test_an_old_e_mail_s_link_still_works_for_a_year(keys):
    a_year_ago = datetime(2025, 12, 1, tzinfo=UTC).timestamp()
    token = issue_unsubscribe_token(keys[0], "ann", "weekly", now=a_year_ago)
    assert verify_unsubscribe_token(keys[1], token) == ("ann", "weekly")


NOTICE = Notice("n1", "g1", date(2026, 3, 11), 85, "email", "pending", "85 % of your limit: x", "52 of 60 min today.")
NOW = datetime(2026, 3, 11, 10, tzinfo=UTC)


def test_a_notice_e_mail_carries_the_one_click_unsubscribe_headers_and_the_link_in_its_text():
    link = unsubscribe_link("https://stats.example.org/unsubscribe", "a.b-c_d")
    assert link == "https://stats.example.org/unsubscribe?t=a.b-c_d"
    message = notice_email(NOTICE, "ann@example.org", "Productimon <notices@example.org>", link, NOW)
    assert message["List-Unsubscribe"] == f"<{link}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"] == "Wed, 11 Mar 2026 10:00:00 +0000"
    assert message.get_content_type() == "text/plain"
    text = message.get_content()
    assert text.startswith("52 of 60 min today.") and "this goal" in text and link in text


def test_the_weekly_summary_s_text_says_what_its_link_stops():
    weekly = Notice("w", WEEKLY_GOAL_ID, date(2026, 3, 9), 0, "email", "pending", "Your week", "Active time: 1 h")
    text = notice_email(weekly, "a@example.org", "n@example.org", "https://h/unsubscribe?t=x", NOW).get_content()
    assert "Stop the weekly summary with one click: https://h/unsubscribe?t=x" in text


@given(st.text(max_size=400))
def test_any_summary_makes_one_header_line_of_bounded_length(summary):
    notice = Notice("n", "g", date(2026, 3, 11), 85, "email", "pending", summary, "b")
    subject = notice_email(notice, "a@example.org", "n@example.org", "https://h/u?t=x", NOW)["Subject"] or ""
    assert "\n" not in subject and "\r" not in subject and len(subject) <= SUBJECT_LIMIT


def test_a_weekly_summary_counts_time_and_goals_never_content():
    goal = Goal("g1", "app", "Game", "at_most", "day", 60)
    notice = weekly_notice("ann", date(2026, 3, 9), 9000, [WeekOfGoal(goal, 6, 7, 9000)])
    assert notice.summary == "Your week 09 Mar to 15 Mar 2026: 2 h 30 min of activity"
    assert notice.body.splitlines() == [
        "Active time: 2 h 30 min.",
        "",
        "Goals:",
        "- at most 1 h a day of Game: met 6 of 7 days (2 h 30 min)",
    ]
    assert (notice.goal_id, notice.threshold, notice.channel) == (WEEKLY_GOAL_ID, 0, "email")
    assert weekly_notice("ann", date(2026, 3, 9), 0, []).notice_id == notice.notice_id  # one per week, ever
    assert weekly_notice("ann", date(2026, 3, 16), 0, []).notice_id != notice.notice_id


@pytest.mark.parametrize(("seconds", "text"), [(0, "0 min"), (59, "0 min"), (2700, "45 min"), (3900, "1 h 05 min")])
def test_durations_read_in_whole_minutes(seconds, text):
    assert duration(seconds) == text
