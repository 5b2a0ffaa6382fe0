"""Per-user category rules: writing, validating and listing them (applying them is the query API's job).

A rule says "when `field` (app, title or site) matches the RE2 `pattern`, the time is in `category`", a path
such as Work/Programming. Rules are versioned rows (ReplacingMergeTree(updated_at)): an edit or a deletion
writes a new version, and because categories are applied at query time, it relabels all of history.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from warehouse.queries import rule_matches, typed_frame

FIELDS = ("app", "title", "site")
MAX_LEVELS = 5
MAX_SEGMENT_CHARS = 64
# Patterns run against every distinct app, site or title of a period; a bound keeps a rule cheap to apply.
MAX_PATTERN_CHARS = 1000
# ClickHouse's error code for a regular expression RE2 cannot compile.
_CANNOT_COMPILE_REGEXP = 427

_COLUMNS = ("user_id", "rule_id", "position", "field", "pattern", "category", "deleted", "updated_at")


class InvalidRule(ValueError):
    """A rule that cannot be stored; the message names what is wrong."""


class RuleNotFound(LookupError):
    """No live rule with this id belongs to the user."""


def validate_field(field: object) -> str:
    if field not in FIELDS:
        raise InvalidRule(f"field must be one of {', '.join(FIELDS)}, got {field!r}")
    return str(field)


def validate_category(category: object) -> str:
    """A category path: 1 to 5 segments separated by '/', each 1-64 printable characters without surrounding
    spaces (so "Work / Code" is refused rather than stored as a different category than "Work/Code")."""
    if not isinstance(category, str):
        raise InvalidRule(f"category must be a string, got {type(category).__name__}")
    segments = category.split("/")
    if len(segments) > MAX_LEVELS:
        raise InvalidRule(f"category {category!r} has {len(segments)} levels; at most {MAX_LEVELS} are allowed")
    for segment in segments:
        if not segment:
            raise InvalidRule(f"category {category!r} has an empty level (leading, trailing or double '/')")
        if len(segment) > MAX_SEGMENT_CHARS:
            raise InvalidRule(f"category level {segment[:20]!r}... is longer than {MAX_SEGMENT_CHARS} characters")
        if not segment.isprintable():
            raise InvalidRule(f"category level {segment!r} contains a non-printable character")
        if segment != segment.strip():
            raise InvalidRule(f"category level {segment!r} starts or ends with a space")
    return category


def validate_pattern(client: Client, pattern: object) -> str:
    """A non-empty RE2 pattern, compiled by the warehouse itself so that exactly its dialect is accepted
    (RE2 refuses backreferences and lookarounds that Python's `re` would take)."""
    if not isinstance(pattern, str):
        raise InvalidRule(f"pattern must be a string, got {type(pattern).__name__}")
    if not pattern:
        raise InvalidRule("pattern is empty; write '.*' for a rule that matches everything")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise InvalidRule(f"pattern is longer than {MAX_PATTERN_CHARS} characters")
    try:
        client.query("SELECT match('', {pattern:String})", parameters={"pattern": pattern})
    except DatabaseError as exc:
        text = str(exc)
        if f"code: {_CANNOT_COMPILE_REGEXP}" not in text and "re2" not in text.lower():
            raise
        reason = text.split("error:", 1)[1].split(". Look at", 1)[0].strip() if "error:" in text else text
        raise InvalidRule(f"pattern {pattern!r} is not a valid RE2 regular expression: {reason}") from exc
    return pattern


def _now() -> datetime:
    # The column holds milliseconds; truncating here keeps the version read back equal to the one written.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _rule_id(rule_id: object) -> str:
    try:
        return str(uuid.UUID(str(rule_id)))
    except ValueError:
        raise RuleNotFound(f"no rule {rule_id!r}") from None


def _write(client: Client, user_id: str, rule: dict[str, object]) -> None:
    client.insert("category_rules", [[user_id, *(rule[c] for c in _COLUMNS[1:])]], column_names=_COLUMNS)


_NEXT_POSITION = """
SELECT max(position) + 1, count() FROM category_rules FINAL WHERE user_id = {user:String} AND NOT deleted
"""


def add_rule(client: Client, user_id: str, field: str, pattern: str, category: str, position: int | None = None) -> str:
    """Store a new rule and return its id. `position=None` puts it after the user's other rules (the first
    matching rule by position wins; rules with equal positions are ordered by id)."""
    field = validate_field(field)
    category = validate_category(category)
    pattern = validate_pattern(client, pattern)
    if position is None:
        after_last, count = client.query(_NEXT_POSITION, parameters={"user": user_id}).result_rows[0]
        position = int(after_last) if count else 0
    _check_position(position)
    rule_id = str(uuid.uuid4())
    rule = {"rule_id": rule_id, "position": position, "field": field, "pattern": pattern, "category": category}
    _write(client, user_id, {**rule, "deleted": False, "updated_at": _now()})
    return rule_id


def _check_position(position: object) -> None:
    if not isinstance(position, int) or isinstance(position, bool) or not 0 <= position < 2**32:
        raise InvalidRule(f"position must be an integer from 0 to {2**32 - 1}, got {position!r}")


_RULE = """
SELECT position, toString(field) AS field, pattern, category, deleted, updated_at
FROM category_rules FINAL
WHERE user_id = {user:String} AND rule_id = {rule:UUID}
"""


def _current(client: Client, user_id: str, rule_id: str) -> dict[str, object]:
    rows = client.query(_RULE, parameters={"user": user_id, "rule": rule_id}).result_rows
    if not rows or rows[0][4]:
        raise RuleNotFound(f"user has no rule {rule_id}")
    position, field, pattern, category, _, updated_at = rows[0]
    return {
        "rule_id": rule_id,
        "position": position,
        "field": field,
        "pattern": pattern,
        "category": category,
        "updated_at": updated_at,
    }


def _next_version(previous: datetime) -> datetime:
    # The newest updated_at wins; two edits within one millisecond must still be ordered.
    if previous.tzinfo is None:
        previous = previous.replace(tzinfo=UTC)
    return max(_now(), previous + timedelta(milliseconds=1))


def update_rule(
    client: Client,
    user_id: str,
    rule_id: str,
    *,
    field: str | None = None,
    pattern: str | None = None,
    category: str | None = None,
    position: int | None = None,
) -> None:
    """Change some of a rule's field, pattern, category and position; the rest stays. History is relabelled
    by the next query."""
    rule_id = _rule_id(rule_id)
    rule = _current(client, user_id, rule_id)
    if field is not None:
        rule["field"] = validate_field(field)
    if category is not None:
        rule["category"] = validate_category(category)
    if pattern is not None:
        rule["pattern"] = validate_pattern(client, pattern)
    if position is not None:
        _check_position(position)
        rule["position"] = position
    _write(client, user_id, {**rule, "deleted": False, "updated_at": _next_version(rule["updated_at"])})


def delete_rule(client: Client, user_id: str, rule_id: str) -> None:
    """Remove a rule; the time it claimed falls to the next matching rule or to Uncategorized."""
    rule_id = _rule_id(rule_id)
    rule = _current(client, user_id, rule_id)
    _write(client, user_id, {**rule, "deleted": True, "updated_at": _next_version(rule["updated_at"])})


_LIST = """
SELECT toString(rule_id) AS rule_id, position, toString(field) AS field, pattern, category, updated_at
FROM category_rules FINAL
WHERE user_id = {user:String} AND NOT deleted
ORDER BY position, rule_id
"""


def list_rules(client: Client, user_id: str) -> pd.DataFrame:
    """The user's live rules in the order they apply.

    Columns: rule_id, field, pattern, category (str), position (int64), updated_at (datetime64[ms, UTC])."""
    schema = {
        "rule_id": "str",
        "position": "int64",
        "field": "str",
        "pattern": "str",
        "category": "str",
        "updated_at": "datetime64[ms, UTC]",
    }
    return typed_frame(client.query_df(_LIST, parameters={"user": user_id}), schema)


def preview_rule(
    client: Client, user_id: str, field: str, pattern: str, start: datetime, end: datetime, limit: int = 50
) -> pd.DataFrame:
    """What a rule with this field and pattern would match in [start, end), before it is saved: the distinct
    values and their active time. Raises InvalidRule for a bad field or pattern.

    Columns: value (str), seconds (float64), most time first."""
    field = validate_field(field)
    pattern = validate_pattern(client, pattern)
    return rule_matches(client, user_id, start, end, field=field, pattern=pattern, limit=limit)


# A new account's rules, so its time is sorted from the first day (the person edits or removes them like any
# other). Sites come first: a browser's time is the site's. RE2, case-insensitive; app names as collectors
# report them (process names, WM_CLASS, macOS and Windows names). tests/integration/test_queries.py checks each
# compiles in the warehouse and sorts the demo's apps and sites.
_SITES = r"(?i)(^|\.)({})$"
_APPS = r"(?i)^({})$"
DEFAULT_RULES: tuple[tuple[str, str, str], ...] = (
    ("site", _SITES.format(r"github\.com|gitlab\.com|bitbucket\.org|stackoverflow\.com|stackexchange\.com|"
                           r"readthedocs\.io|docs\.python\.org|developer\.mozilla\.org|pypi\.org|docs\.rs"),
     "Work/Programming"),
    ("site", _SITES.format(r"docs\.google\.com|notion\.so|office\.com|sharepoint\.com|atlassian\.net|figma\.com|"
                           r"overleaf\.com"), "Work/Documents"),
    ("site", _SITES.format(r"mail\.google\.com|outlook\.live\.com|outlook\.office\.com|slack\.com|"
                           r"teams\.microsoft\.com|zoom\.us|meet\.google\.com|discord\.com"), "Communication"),
    ("site", _SITES.format(r"youtube\.com|netflix\.com|twitch\.tv|primevideo\.com|disneyplus\.com|vimeo\.com|"
                           r"spotify\.com"), "Leisure/Video and music"),
    ("site", _SITES.format(r"reddit\.com|twitter\.com|x\.com|facebook\.com|instagram\.com|tiktok\.com|"
                           r"linkedin\.com|mastodon\.social|bsky\.app"), "Leisure/Social"),
    ("site", _SITES.format(r"wikipedia\.org|news\.ycombinator\.com|bbc\.co\.uk|bbc\.com|nytimes\.com|"
                           r"theguardian\.com"), "Leisure/Reading"),
    ("app", _APPS.format(r"code|code-oss|vscodium|visual studio code|.*pycharm.*|.*intellij.*|idea|goland|webstorm|"
                         r"clion|rider|android-studio|sublime_text|sublime text|vim|gvim|nvim|neovide|emacs|zed|"
                         r"xcode|devenv"), "Work/Programming"),
    ("app", _APPS.format(r"terminal|gnome-terminal-server|gnome-terminal|konsole|kitty|alacritty|wezterm|"
                         r"wezterm-gui|xterm|urxvt|tilix|iterm2|windowsterminal|windows terminal|foot|terminator"),
     "Work/Programming"),
    ("app", _APPS.format(r"libreoffice.*|soffice.*|winword|excel|powerpnt|microsoft (word|excel|powerpoint)|pages|"
                         r"numbers|keynote|evince|okular|acrobat.*|acrord32|zathura|obsidian|notion"),
     "Work/Documents"),
    ("app", _APPS.format(r"slack|teams|ms-teams|microsoft teams|zoom|zoom\.us|thunderbird|outlook|mail|evolution|"
                         r"geary|signal|telegram.*|discord|element|skype|whatsapp"), "Communication"),
    ("app", _APPS.format(r"spotify|rhythmbox|music|itunes|vlc|mpv|totem|celluloid"), "Leisure/Video and music"),
    ("app", _APPS.format(r"steam|steamwebhelper|factorio|minecraft.*|lutris|heroic|epicgameslauncher|"
                         r"battle\.net"), "Leisure/Games"),
)  # fmt: skip


def add_default_rules(client: Client, user_id: str) -> int:
    """Give an account without any category rule (never had one) the default rules, in one insert; returns how
    many were added (0 for an account that has or had rules of its own)."""
    had = "SELECT count() FROM category_rules WHERE user_id = {user:String}"
    if client.query(had, parameters={"user": user_id}).result_rows[0][0]:
        return 0
    now = _now()
    rows = [
        [user_id, str(uuid.uuid4()), position, field, pattern, category, False, now]
        for position, (field, pattern, category) in enumerate(DEFAULT_RULES)
    ]
    client.insert("category_rules", rows, column_names=_COLUMNS)
    return len(rows)
