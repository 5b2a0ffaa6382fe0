"""An account's privacy choices in the warehouse (tables `privacy_rules` and `privacy_settings`, migration 0009):
edited through the gateway, read by the gateway for the devices and by the workers (schemas/privacy_rules.py)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.client import Client

from schemas.privacy_rules import (
    DEFAULT_TITLE_MODE,
    MAX_RULES,
    AccountPrivacy,
    InvalidPrivacyRule,
    PrivacyRule,
    TitleMode,
)

_RULE_COLUMNS = ("user_id", "rule_id", "target", "pattern", "action", "deleted", "updated_at")

_RULES = """
SELECT user_id, toString(rule_id), target, pattern, action
FROM privacy_rules FINAL
WHERE user_id IN {users:Array(String)} AND NOT deleted
ORDER BY user_id, updated_at, rule_id
"""
_MODES = """
SELECT user_id, argMax(title_mode, updated_at) FROM privacy_settings
WHERE user_id IN {users:Array(String)} GROUP BY user_id
"""


class PrivacyRuleNotFound(LookupError):
    pass


def _now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def rules_with_ids(client: Client, user_id: str) -> list[tuple[str, PrivacyRule]]:
    """The account's live rules with their ids, oldest first."""
    rows = client.query(_RULES, parameters={"users": [user_id]}).result_rows
    return [(rule_id, PrivacyRule(target, pattern, action)) for _, rule_id, target, pattern, action in rows]


def load_privacy(client: Client, user_ids: Sequence[str]) -> dict[str, AccountPrivacy]:
    """Each account's choices; an account that chose nothing has the defaults (titles scrubbed, no rules).

    A stored rule that no longer validates (a rule from an older version) is skipped, never fatal."""
    users = sorted(set(user_ids))
    if not users:
        return {}
    modes = dict(client.query(_MODES, parameters={"users": users}).result_rows)
    rules: dict[str, list[PrivacyRule]] = {u: [] for u in users}
    for user, _, target, pattern, action in client.query(_RULES, parameters={"users": users}).result_rows:
        try:
            rules[user].append(PrivacyRule(target, pattern, action))
        except InvalidPrivacyRule:
            continue
    found = {}
    for user in users:
        mode = modes.get(user, DEFAULT_TITLE_MODE)
        try:
            found[user] = AccountPrivacy(mode, tuple(rules[user]))
        except InvalidPrivacyRule:
            found[user] = AccountPrivacy(DEFAULT_TITLE_MODE, tuple(rules[user]))
    return found


def set_title_mode(client: Client, user_id: str, mode: TitleMode) -> None:
    AccountPrivacy(mode)  # validates
    client.insert("privacy_settings", [(user_id, mode, _now())], column_names=("user_id", "title_mode", "updated_at"))


def add_rule(client: Client, user_id: str, rule: PrivacyRule) -> str:
    """Store a validated rule; its id. Refused past MAX_RULES rules."""
    if len(rules_with_ids(client, user_id)) >= MAX_RULES:
        raise InvalidPrivacyRule(f"an account has at most {MAX_RULES} privacy rules; remove one first")
    rule_id = str(uuid.uuid4())
    row = (user_id, rule_id, rule.on, rule.pattern, rule.action, False, _now())
    client.insert("privacy_rules", [row], column_names=_RULE_COLUMNS)
    return rule_id


def delete_rule(client: Client, user_id: str, rule_id: str) -> None:
    try:
        rule_id = str(uuid.UUID(str(rule_id)))
    except ValueError:
        raise PrivacyRuleNotFound(f"no privacy rule {rule_id!r}") from None
    current = dict(rules_with_ids(client, user_id))
    if rule_id not in current:
        raise PrivacyRuleNotFound(f"this account has no privacy rule {rule_id}")
    rule = current[rule_id]
    row = (user_id, rule_id, rule.on, rule.pattern, rule.action, True, _now() + timedelta(milliseconds=1))
    client.insert("privacy_rules", [row], column_names=_RULE_COLUMNS)
