"""The collector's privacy controls, applied to every interval before anything is stored on disk.

Pure: the settings are passed in. Titles are scrubbed (schemas/titles.py) as the account's title mode says, or
not kept; the account's rules (schemas/privacy_rules.py, fetched from the gateway) and this device's own
config.toml rules hide a title or an interval's details; a URL loses its query, fragment and user info here, on
the device. The worker applies the account's choices again and trims URLs to the site, because clients are not
trusted; this is the promise the device itself keeps.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from schemas.privacy_rules import PRIVATE_APP, AccountPrivacy, private_fields
from schemas.sites import kept_segment

_WEB_SCHEMES = frozenset({"http", "https"})

RuleTarget = Literal["app", "title"]
RuleAction = Literal["hide_title", "drop_details"]


@dataclass(frozen=True)
class ExclusionRule:
    """A regular expression searched (anywhere, case-insensitively) in the app name or the window title.

    Case-insensitive because a user who writes `bank` means "Bank" and "BANK" too: a rule that misses a
    spelling leaks exactly what it was written to hide. `hide_title` drops the title; `drop_details` keeps
    only that time was spent: app becomes "(private)", title and URL go."""

    pattern: str
    on: RuleTarget
    action: RuleAction
    _compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.on not in get_args(RuleTarget):
            raise ValueError(f"exclusion rule {self.pattern!r}: 'on' must be 'app' or 'title', got {self.on!r}")
        if self.action not in get_args(RuleAction):
            raise ValueError(
                f"exclusion rule {self.pattern!r}: 'action' must be 'hide_title' or 'drop_details', got {self.action!r}"
            )
        try:
            compiled = re.compile(self.pattern, re.IGNORECASE)
        except re.error as e:
            raise ValueError(f"exclusion rule pattern {self.pattern!r} is not a valid regular expression: {e}") from e
        object.__setattr__(self, "_compiled", compiled)

    def matches(self, interval: Mapping[str, Any]) -> bool:
        value = interval.get(self.on)
        return value is not None and self._compiled.search(value) is not None


@dataclass(frozen=True)
class PrivacySettings:
    """This device's own settings (config.toml) and its account's choices (fetched from the gateway)."""

    capture_titles: bool = True
    rules: tuple[ExclusionRule, ...] = ()
    account: AccountPrivacy = AccountPrivacy()


def strip_url(url: str | None) -> str | None:
    """The URL as the collector may keep it: scheme, host and port of a web page, and its first path segment only
    where the shared allow-list keeps it (schemas/multi_app_sites.toml: "google.com/maps"); only the scheme of
    anything else (`file:`, `chrome:`), never a local file's path. None when there is no URL or it cannot be read.

    A path names pages, people and documents; query and fragment carry search terms, tokens and form input; user
    info carries credentials: none of them reaches the device's disk. A URL without a scheme is dropped: a bare
    `notes/secret.txt` cannot be told from a host and path."""
    if url is None:
        return None
    # Browsers read "\" as "/" in web URLs ("https://a.com\@b.com/" is a page on a.com); so does this.
    url = url.strip().replace("\\", "/")
    try:
        parts = urlsplit(url)
        scheme = parts.scheme
        if not scheme:
            return None
        if scheme not in _WEB_SCHEMES:
            return f"{scheme}:"
        host = parts.hostname
        port = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return None
    if not host:
        return None
    if ":" in host:  # IPv6 literal: urlsplit drops the brackets
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    first = parts.path.split("/")[1] if parts.path.count("/") >= 1 and len(parts.path) > 1 else ""
    kept = kept_segment(host, first) if first else None
    return f"{scheme}://{netloc}/{kept}" if kept else f"{scheme}://{netloc}/"


def host_of(url: str | None) -> str | None:
    """The lower-cased host of a web URL, for the account's site rules (a rule covers a site's subdomains)."""
    if url is None:
        return None
    try:
        host = urlsplit(url.strip().replace("\\", "/")).hostname
    except ValueError:
        return None
    return host.lower().rstrip(".") if host else None


def apply_privacy(interval: Mapping[str, Any], settings: PrivacySettings) -> dict[str, Any]:
    """A copy of the interval with the privacy choices applied, its URL stripped and its title scrubbed
    (schemas/titles.py) as the account's title mode says: the account's rules and this device's config.toml
    rules both apply, whichever is stricter wins.

    Rules match the interval as captured, so a title rule still applies when titles are not kept."""
    matched = [rule.action for rule in settings.rules if rule.matches(interval)]
    url = interval.get("url")
    app, title, _ = private_fields(
        interval.get("app"),
        interval.get("title"),
        host_of(url),
        settings.account,
        titles_allowed=settings.capture_titles,
        actions=matched,
    )
    private = dict(interval)
    private.update(app=app, title=title, url=strip_url(url) if app != PRIVATE_APP else None)
    return private
