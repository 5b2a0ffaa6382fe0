"""An account's privacy rules: set once in the dashboard, applied everywhere (docs/privacy-rules.md).

A rule excludes an app, a site (with all its subdomains) or titles containing a pattern, with one of two actions:
`hide_title` (the time and app are kept, the title goes) or `drop_details` (only that time was spent is kept: the
app becomes "(private)", title and site go). The collector applies the account's rules before anything touches
disk, and the worker applies them again, because clients are not trusted.

Patterns are case-insensitive globs (`*` any text, `?` one character), not regular expressions: the worker runs
every account's rules on every interval, and a glob cannot backtrack for ever (Python's `fnmatch` translates it
without nested repetition), so no one's rule can stall storage for everyone. Pure: no I/O.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

from schemas.titles import DEFAULT_TITLE_MODE, TitleMode, apply_title_mode

RuleOn = Literal["app", "site", "title"]
RuleAction = Literal["hide_title", "drop_details"]
TITLE_MODES: tuple[TitleMode, ...] = get_args(TitleMode)
PRIVATE_APP = "(private)"
MAX_PATTERN_CHARS = 200
MAX_RULES = 500

_DOMAIN_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class InvalidPrivacyRule(ValueError):
    """A rule that cannot be used; the message names what is wrong."""


def _normalize_site(pattern: str) -> str:
    site = pattern.strip().lower().rstrip(".")
    site = site.removeprefix("*.").removeprefix(".")
    for prefix in ("https://", "http://"):
        site = site.removeprefix(prefix)
    site = site.split("/", 1)[0]
    try:
        site = site.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidPrivacyRule(f"site {pattern!r} is not a domain name") from None
    labels = site.split(".")
    if not site or any(not _DOMAIN_LABEL.match(label) for label in labels):
        raise InvalidPrivacyRule(
            f"site {pattern!r} is not a domain name (write it like example.com; it covers its subdomains)"
        )
    return site


@dataclass(frozen=True)
class PrivacyRule:
    on: RuleOn
    pattern: str
    action: RuleAction
    _match: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self.on not in get_args(RuleOn):
            raise InvalidPrivacyRule(f"a rule applies to an app, a site or a title, not {self.on!r}")
        if self.action not in get_args(RuleAction):
            raise InvalidPrivacyRule(f"a rule's action is hide_title or drop_details, not {self.action!r}")
        if not isinstance(self.pattern, str) or not self.pattern.strip():
            raise InvalidPrivacyRule(f"the {self.on} pattern is empty")
        if len(self.pattern) > MAX_PATTERN_CHARS:
            raise InvalidPrivacyRule(f"the {self.on} pattern is longer than {MAX_PATTERN_CHARS} characters")
        if self.on == "site":
            object.__setattr__(self, "pattern", _normalize_site(self.pattern))
            return
        pattern = self.pattern.strip()
        if not pattern.replace("*", "").replace("?", "").strip():
            raise InvalidPrivacyRule(
                f"the {self.on} pattern {self.pattern!r} would match everything; name what to exclude"
            )
        object.__setattr__(self, "pattern", pattern)
        glob = pattern if self.on == "app" else f"*{pattern}*"  # a title rule matches anywhere in the title
        glob = glob.casefold().replace("[", "[[]")  # only * and ? are wildcards: "[WIP]" means itself
        object.__setattr__(self, "_match", re.compile(fnmatch.translate(glob), re.DOTALL))

    def matches(self, app: str | None, title: str | None, site: str | None) -> bool:
        if self.on == "site":
            return site is not None and (site == self.pattern or site.endswith("." + self.pattern))
        value = app if self.on == "app" else title
        return value is not None and self._match is not None and self._match.match(value.casefold()) is not None

    def to_dict(self) -> dict[str, str]:
        return {"on": self.on, "pattern": self.pattern, "action": self.action}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> PrivacyRule:
        try:
            return cls(str(data["on"]), str(data["pattern"]), str(data["action"]))  # type: ignore[arg-type]
        except KeyError as missing:
            raise InvalidPrivacyRule(f"a rule needs on, pattern and action; {missing} is missing") from None


@dataclass(frozen=True)
class AccountPrivacy:
    """What an account chose: how titles are kept, and its rules."""

    title_mode: TitleMode = DEFAULT_TITLE_MODE
    rules: tuple[PrivacyRule, ...] = ()

    def __post_init__(self) -> None:
        if self.title_mode not in TITLE_MODES:
            raise InvalidPrivacyRule(f"titles are off, scrubbed or full, not {self.title_mode!r}")

    def actions(self, app: str | None, title: str | None, site: str | None) -> set[str]:
        return {rule.action for rule in self.rules if rule.matches(app, title, site)}

    def to_dict(self) -> dict[str, object]:
        return {"title_mode": self.title_mode, "rules": [rule.to_dict() for rule in self.rules]}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> AccountPrivacy:
        rules = data.get("rules") or []
        if not isinstance(rules, Iterable):
            raise InvalidPrivacyRule("rules must be a list")
        return cls(str(data.get("title_mode", DEFAULT_TITLE_MODE)), tuple(PrivacyRule.from_dict(r) for r in rules))  # type: ignore[arg-type]


def private_fields(
    app: str | None,
    title: str | None,
    site: str | None,
    account: AccountPrivacy,
    *,
    titles_allowed: bool = True,
    actions: Iterable[str] = (),
) -> tuple[str | None, str | None, str | None]:
    """(app, title, site) as the account's choices keep them: its rules matched on what was captured, then the
    title mode (`titles_allowed=False`, a device's own "no titles", wins over any mode); `actions` are those of
    rules matched elsewhere (a device's config.toml). drop_details keeps only that time was spent."""
    matched = account.actions(app, title, site) | set(actions)
    if "drop_details" in matched:
        return PRIVATE_APP, None, None
    if "hide_title" in matched or not titles_allowed:
        return app, None, site
    return app, apply_title_mode(title, app, account.title_mode, site), site
