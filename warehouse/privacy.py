"""An account's privacy choices in the warehouse (tables `privacy_rules` and `privacy_settings`, migration 0009):
edited through the gateway, read by the gateway for the devices and by the workers (schemas/privacy_rules.py);
and the SQL of applying a rule to past data (stream_jobs/history.py)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.client import Client

from schemas.privacy_rules import (
    DEFAULT_TITLE_MODE,
    MAX_RULES,
    PRIVATE_APP,
    AccountPrivacy,
    InvalidPrivacyRule,
    PrivacyRule,
    TitleMode,
)
from warehouse import deletion
from warehouse.client import MUTATIONS_SYNC

_RULE_COLUMNS = ("user_id", "rule_id", "target", "pattern", "action", "deleted", "updated_at")

_RULE = """
SELECT target, pattern, action, toUnixTimestamp64Milli(updated_at)
FROM privacy_rules FINAL
WHERE user_id = {user:String} AND rule_id = {rule:UUID} AND NOT deleted
"""
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


def _rule_id(rule_id: str) -> str:
    try:
        return str(uuid.UUID(str(rule_id)))
    except ValueError:
        raise PrivacyRuleNotFound(f"no privacy rule {rule_id!r}") from None


def delete_rule(client: Client, user_id: str, rule_id: str) -> None:
    rule_id = _rule_id(rule_id)
    current = dict(rules_with_ids(client, user_id))
    if rule_id not in current:
        raise PrivacyRuleNotFound(f"this account has no privacy rule {rule_id}")
    rule = current[rule_id]
    row = (user_id, rule_id, rule.on, rule.pattern, rule.action, True, _now() + timedelta(milliseconds=1))
    client.insert("privacy_rules", [row], column_names=_RULE_COLUMNS)


def saved_rule(client: Client, user_id: str, rule_id: str) -> tuple[PrivacyRule, int]:
    """One live rule of the account and when it was saved (ms); PrivacyRuleNotFound for any other id."""
    rule_id = _rule_id(rule_id)
    rows = client.query(_RULE, parameters={"user": user_id, "rule": rule_id}).result_rows
    if not rows:
        raise PrivacyRuleNotFound(f"this account has no privacy rule {rule_id}")
    target, pattern, action, saved_ms = rows[0]
    return PrivacyRule(target, pattern, action), int(saved_ms)


# --- applying a rule to past data (stream_jobs/history.py) ---

Group = tuple[str, str, str]  # a stored interval's (app, site, title)
# A mutation names the groups it rewrites in a parameter; groups are sent this many at a time, which keeps
# each request well under the HTTP server's limits however long the titles are.
_GROUPS_PER_MUTATION = 500
_ASSIGNMENTS = {"hide_title": "title = ''", "drop_details": f"app = '{PRIVATE_APP}', site = '', title = ''"}
_IN_GROUPS = "user_id = {user:String} AND (app, site, title) IN {groups:Array(Tuple(String, String, String))}"


def stored_groups(client: Client, user_id: str) -> list[tuple[str, str, str, str, int, int]]:
    """Every (device, app, site, title) of the account's stored intervals: how many intervals, active ms."""
    return [
        (device, app, site, title, int(n), int(active_ms))
        for device, app, site, title, n, active_ms in client.query(
            "SELECT device_id, app, site, title, count(), "
            "sumIf(toUnixTimestamp64Milli(`end`) - toUnixTimestamp64Milli(start), NOT idle) "
            "FROM intervals FINAL WHERE user_id = {user:String} GROUP BY device_id, app, site, title",
            parameters={"user": user_id},
        ).result_rows
    ]


def _chunks(groups: Sequence[Group]) -> list[list[Group]]:
    ordered = sorted(groups)
    return [ordered[n : n + _GROUPS_PER_MUTATION] for n in range(0, len(ordered), _GROUPS_PER_MUTATION)]


def intervals_of_groups(client: Client, user_id: str, groups: Sequence[Group]) -> dict[str, list[tuple[int, int]]]:
    """(start, end) in ms of the account's stored intervals in these groups, per device, in start order."""
    found: dict[str, list[tuple[int, int]]] = {}
    for chunk in _chunks(groups):
        rows = client.query(
            "SELECT device_id, toUnixTimestamp64Milli(start), toUnixTimestamp64Milli(`end`) FROM intervals FINAL "
            f"WHERE {_IN_GROUPS}",
            parameters={"user": user_id, "groups": chunk},
        ).result_rows
        for device, start, end in rows:
            found.setdefault(device, []).append((int(start), int(end)))
    return {device: sorted(spans) for device, spans in found.items()}


def focus_session_bounds(client: Client, user_id: str, devices: Sequence[str]) -> dict[str, list[tuple[int, int]]]:
    """(start, end) in ms of each device's focus sessions, in start order."""
    rows = client.query(
        "SELECT device_id, toUnixTimestamp64Milli(start), toUnixTimestamp64Milli(`end`) FROM focus_sessions FINAL "
        "WHERE user_id = {user:String} AND device_id IN {devices:Array(String)} ORDER BY device_id, start",
        parameters={"user": user_id, "devices": sorted(devices)},
    ).result_rows
    found: dict[str, list[tuple[int, int]]] = {}
    for device, start, end in rows:
        found.setdefault(device, []).append((int(start), int(end)))
    return found


def rewrite_groups(client: Client, user_id: str, groups: Sequence[Group], action: str) -> None:
    """Rewrite, physically and before returning, the account's raw intervals in these groups as the rule's
    action keeps them: hide_title empties the title; drop_details keeps only that time was spent."""
    assignments = _ASSIGNMENTS[action]
    for chunk in _chunks(groups):
        client.command(
            f"ALTER TABLE {deletion.target(client, 'intervals')} UPDATE {assignments} WHERE {_IN_GROUPS}",
            parameters={"user": user_id, "groups": chunk},
            settings=MUTATIONS_SYNC,
        )
