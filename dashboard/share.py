"""Read-only share links: which views can be shared, for how long, and what an opened link shows.

A link is a signed token of the gateway's share scope (gateway/tokens.py) naming only the link's opaque id;
the owner, the view and the period are the link's record in the identity store, where the owner lists and
revokes it. The gateway checks it on every view; this module holds only the rules the dashboard applies on top.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit, urlunsplit

from dashboard.period import Period, period_from_utc

# Views whose content is about a period and nothing else. Categories, Devices and Data act on the account
# and are never shared.
SHAREABLE_VIEWS = {"overview": "Overview", "timeline": "Timeline", "trends": "Trends", "focus": "Focus"}
LIFETIMES = {"1 day": 86400, "7 days": 7 * 86400, "30 days": 30 * 86400}
QUERY_PARAMETER = "share"


class ShareRefused(Exception):
    """The link cannot be shown; the message is one line for the person who opened it."""


@dataclass(frozen=True)
class SharedView:
    """Exactly what a link shows: one view of one owner's data for one period."""

    link_id: str
    user_id: str
    view: str
    period: Period
    expires_at: int


def shared_view(
    link_id: str, user_id: str, view: str, start_s: int, end_s: int, tz: str, expires_at: int
) -> SharedView:
    """The view an opened link (as the gateway confirmed it) shows; ShareRefused for one this dashboard
    would not share."""
    if view not in SHAREABLE_VIEWS:
        raise ShareRefused(f"this link names a view that cannot be shared ({view!r})")
    if end_s <= start_s:
        raise ShareRefused("this link's period is empty")
    try:
        period = period_from_utc(start_s, end_s, tz)
    except ValueError as exc:
        raise ShareRefused(f"this link's period cannot be shown: {exc}") from None
    return SharedView(link_id, user_id, view, period, expires_at)


def link_request(view: str, period: Period, lifetime: str) -> dict[str, object]:
    """The gateway request for a link to `view` over `period`, valid for one of LIFETIMES."""
    if view not in SHAREABLE_VIEWS:
        raise ValueError(f"{view!r} cannot be shared; choose one of {', '.join(SHAREABLE_VIEWS)}")
    if lifetime not in LIFETIMES:
        raise ValueError(f"choose a lifetime of {', '.join(LIFETIMES)}")
    return {
        "view": view,
        "period_start": int(period.start.timestamp()),
        "period_end": int(period.end.timestamp()),
        "tz": period.tz,
        "ttl_s": LIFETIMES[lifetime],
    }


def share_url(dashboard_url: str, token: str) -> str:
    """The dashboard's own address with only the share token as its query."""
    parts = urlsplit(dashboard_url)
    return urlunsplit((parts.scheme, parts.netloc, "/", urlencode({QUERY_PARAMETER: token}), ""))
