"""What makes an interval acceptable at the gateway: pure checks, one readable reason per refusal."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

MAX_APP_CHARS = 256
MAX_TITLE_CHARS = 1024
MAX_URL_CHARS = 4096
MAX_INTERVAL_MS = 24 * 3600 * 1000
# Workstation clocks drift; an interval may end this far past the gateway's clock and still be real.
FUTURE_SKEW_MS = 5 * 60 * 1000
MAX_COUNT = 2**31 - 1


@dataclass(frozen=True)
class RecordError:
    index: int
    reason: str


def interval_problem(interval: dict, now_ms: int) -> str | None:
    """Why this decoded interval must be refused, or None when it is acceptable."""
    try:
        uuid.UUID(interval["event_id"])
    except ValueError:
        return "event_id is not a UUID"
    if interval["device_seq"] < 0:
        return "device_seq is negative"
    start, end = interval["start"], interval["end"]
    if end < start:
        return "end is before start"
    if end - start > MAX_INTERVAL_MS:
        return "interval is longer than a day"
    if start < 0:
        return "start is before 1970"
    if end > now_ms + FUTURE_SKEW_MS:
        return "interval ends in the future"
    app = interval["app"]
    if not app.strip():
        return "app is empty"
    if len(app) > MAX_APP_CHARS:
        return f"app is longer than {MAX_APP_CHARS} characters"
    if interval.get("title") is not None and len(interval["title"]) > MAX_TITLE_CHARS:
        return f"title is longer than {MAX_TITLE_CHARS} characters"
    if interval.get("url") is not None and len(interval["url"]) > MAX_URL_CHARS:
        return f"url is longer than {MAX_URL_CHARS} characters"
    for counter in ("keystrokes", "clicks"):
        if not 0 <= interval[counter] <= MAX_COUNT:
            return f"{counter} is negative"
    return None
