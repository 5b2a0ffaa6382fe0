"""The collector's privacy controls, applied to every interval before anything is stored on disk (issue 4).

Pure: the configured settings are passed in. Title capture can be turned off, exclusion rules hide a title or an
interval's details, and a URL loses its query, fragment and user info here, on the device. The stream jobs trim
URLs again on the server, because clients are not trusted; this is the promise the device itself keeps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, get_args
from urllib.parse import urlsplit

PRIVATE_APP = "(private)"

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

    def matches(self, interval: dict) -> bool:
        value = interval.get(self.on)
        return value is not None and self._compiled.search(value) is not None


@dataclass(frozen=True)
class PrivacySettings:
    capture_titles: bool = True
    rules: tuple[ExclusionRule, ...] = ()


def strip_url(url: str | None) -> str | None:
    """The URL as the collector may keep it: scheme, host, port and path of a web page; only the scheme of
    anything else (`file:`, `chrome:`), never a local file's path. None when there is no URL or it cannot be read.

    Query and fragment can carry search terms, tokens and form input; user info carries credentials. An `@` in
    the path (`/@name`) is kept percent-encoded, so no output ever contains `?`, `#` or `@`. A URL without a
    scheme is dropped: a bare `notes/secret.txt` cannot be told from a host and path."""
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
    return f"{scheme}://{netloc}{parts.path.replace('@', '%40')}"


# A word that looks like an address (a '.' or '/' before its first '?' or '#'), with the query and fragment after.
_ADDRESS_TAIL = re.compile(r"(?P<address>[^\s?#]*[./][^\s?#]*)[?#]\S*")
# Credentials in an address with a scheme: `scheme://user:password@host`.
_USER_INFO = re.compile(r"(?P<scheme>://)[^\s/@]*@")


def scrub_title(title: str | None) -> str | None:
    """The title with any address in it cut before its query and fragment, and without user info.

    Titles carry addresses: a browser titles a page that has no <title> with its address, query included; a
    terminal shows the command it runs. A query can hold search terms and tokens, so it never survives in a
    title either. Words without a '.' or '/' ("What?", "C#") are left alone."""
    if title is None or ("?" not in title and "#" not in title and "@" not in title):
        return title  # nearly every title: nothing to cut, and the stream worker scrubs thousands a second
    return _USER_INFO.sub(r"\g<scheme>", _ADDRESS_TAIL.sub(r"\g<address>", title))


def apply_privacy(interval: dict, settings: PrivacySettings) -> dict:
    """A copy of the interval with the user's privacy settings applied and its URL stripped.

    Rules match the interval as captured, so a title rule still applies when titles are not kept."""
    matched = [rule.action for rule in settings.rules if rule.matches(interval)]
    private = dict(interval)
    private["url"] = strip_url(interval.get("url"))
    private["title"] = scrub_title(interval.get("title"))
    if not settings.capture_titles or "hide_title" in matched:
        private["title"] = None
    if "drop_details" in matched:
        private.update(app=PRIVATE_APP, title=None, url=None)
    return private
