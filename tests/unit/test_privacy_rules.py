"""An account's privacy rules (schemas/privacy_rules.py): what a rule matches, what is refused, and how the rules
and the title mode combine. Pure."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.privacy_rules import (
    PRIVATE_APP,
    AccountPrivacy,
    InvalidPrivacyRule,
    PrivacyRule,
    private_fields,
)


@pytest.mark.parametrize(
    ("on", "pattern", "app", "title", "site", "matches"),
    [
        ("app", "keepassxc", "KeePassXC", None, None, True),
        ("app", "keepass*", "KeePassXC", None, None, True),
        ("app", "keepass", "KeePassXC", None, None, False),  # an app rule names the whole app (globs widen it)
        ("title", "salary", "libreoffice", "Salary review.ods", None, True),  # a title rule matches anywhere
        ("title", "[WIP]", "code", "fix [wip] parser", None, True),  # only * and ? are wildcards
        ("title", "[WIP]", "code", "fix w parser", None, False),
        ("title", "bank ?? statement", "evince", "Bank 03 Statement.pdf", None, True),
        ("site", "bank.example", "firefox", None, "bank.example", True),
        ("site", "bank.example", "firefox", None, "online.bank.example", True),  # every subdomain
        ("site", "bank.example", "firefox", None, "notbank.example", False),
        ("site", "https://www.Bank.example/login", "firefox", None, "bank.example", False),  # www. is a subdomain
        ("site", "https://Bank.example/login", "firefox", None, "www.bank.example", True),
        ("title", "salary", "libreoffice", None, None, False),  # no title: nothing to match
    ],
)
def test_what_a_rule_matches(on, pattern, app, title, site, matches):
    assert PrivacyRule(on, pattern, "hide_title").matches(app, title, site) is matches


@pytest.mark.parametrize(
    ("on", "pattern", "action", "problem"),
    [
        ("title", "", "hide_title", "empty"),
        ("title", "   ", "hide_title", "empty"),
        ("title", "*", "hide_title", "would match everything"),
        ("app", "**", "drop_details", "would match everything"),
        ("title", "?*?", "hide_title", "would match everything"),
        ("site", "not a domain", "hide_title", "not a domain name"),
        ("site", "-bad-.example", "hide_title", "not a domain name"),
        ("title", "x" * 201, "hide_title", "longer than 200"),
        ("url", "x", "hide_title", "app, a site or a title"),
        ("title", "x", "delete", "hide_title or drop_details"),
    ],
)
def test_a_bad_rule_is_refused_naming_the_problem(on, pattern, action, problem):
    with pytest.raises(InvalidPrivacyRule, match=problem) as refused:
        PrivacyRule(on, pattern, action)
    assert "\n" not in str(refused.value)


def test_an_unknown_title_mode_is_refused():
    with pytest.raises(InvalidPrivacyRule, match="off, scrubbed or full"):
        AccountPrivacy("everything")


def test_drop_details_wins_then_hide_title_then_the_title_mode():
    account = AccountPrivacy(
        "full",
        (PrivacyRule("site", "bank.example", "drop_details"), PrivacyRule("title", "salary", "hide_title")),
    )
    assert private_fields("firefox", "Salary — Bank", "bank.example", account) == (PRIVATE_APP, None, None)
    assert private_fields("calc", "salary.ods", None, account) == ("calc", None, None)
    assert private_fields("calc", "budget.ods - /home/a", None, account) == ("calc", "budget.ods - /home/a", None)
    # A device's own "no titles" wins over the account's "full"; a device's own rules add to the account's.
    assert private_fields("calc", "budget.ods", None, account, titles_allowed=False) == ("calc", None, None)
    assert private_fields("calc", "budget.ods", None, account, actions=["drop_details"]) == (PRIVATE_APP, None, None)
    assert private_fields("calc", "budget.ods", None, AccountPrivacy("off")) == ("calc", None, None)


def test_choices_round_trip_through_their_stored_form():
    account = AccountPrivacy("off", (PrivacyRule("site", "Mail.Example.org", "drop_details"),))
    again = AccountPrivacy.from_dict(account.to_dict())
    assert again == account and again.rules[0].pattern == "mail.example.org"
    with pytest.raises(InvalidPrivacyRule, match="pattern"):
        AccountPrivacy.from_dict({"rules": [{"on": "app", "action": "hide_title"}]})


@given(st.text(alphabet="a*?", min_size=1, max_size=40).filter(lambda p: p.strip("*?")), st.integers(100, 4000))
def test_no_pattern_can_make_matching_slow(pattern, length):
    """The worker runs every account's rules on every interval: a pathological glob must not backtrack for
    ever (a regular expression like (a*)*b would)."""
    rule = PrivacyRule("title", pattern + "b", "hide_title")
    began = time.perf_counter()
    rule.matches("x", "a" * length, None)
    assert time.perf_counter() - began < 1.0  # exponential backtracking would take hours here
