"""What the warehouse can store: the one contract every interval meets, checked by the gateway and again by the
worker (the broker is not trusted either), and met by the collector before it spools anything.

Pure. `checked_interval` either refuses an interval with one readable reason or returns it in normal form:
- times within a window around when it was received: not older than `Window.max_age_ms` (by default the
  collector spool's maximum age, so nothing a collector may still hold is refused), not ending more than
  `Window.future_skew_ms` in the future, at most a day long, never ending before it starts;
- counts within what hands can do in the interval's time (`count_limit`);
- strings in Unicode NFC with control and bidirectional-formatting characters removed (line breaks and tabs
  become spaces), trimmed, and cut to their caps, so what a dashboard shows reads as what it is;
- the event id in canonical form (lower case, hyphenated), whatever form `uuid.UUID` accepted.
Which sites are stored (host names and IP literals, anything else a fixed label) is `stream_jobs/trim.py`'s rule.
"""

from __future__ import annotations

import math
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

MAX_APP_CHARS = 256
MAX_TITLE_CHARS = 1024
MAX_URL_CHARS = 4096
MAX_INTERVAL_MS = 24 * 3600 * 1000
# A focus session takes no interval starting this long after its own start (stream_jobs/sessionize.py): it ends and
# another begins. So a session (app or focus: app sessions nest in focus ones) spans less than this plus the longest
# interval, and a query for sessions overlapping a moment scans back only that far (warehouse/queries.py).
MAX_SESSION_MS = 24 * 3600 * 1000
SESSION_SPAN_MS = MAX_SESSION_MS + MAX_INTERVAL_MS
# Workstation clocks drift; an interval may end this far past the receiver's clock and still be real.
FUTURE_SKEW_MS = 5 * 60 * 1000
# The collector spool's maximum age, and so the gateway's default window: what began longer ago is refused.
SPOOL_MAX_AGE_DAYS = 30
DAY_MS = 24 * 3600 * 1000
# How long the collector's spool holds an interval (collector/spool.py `expire`): the window less the longest
# interval, so whatever it still holds began inside the default window.
SPOOL_MAX_HOLD_MS = SPOOL_MAX_AGE_DAYS * DAY_MS - MAX_INTERVAL_MS
# Physical limits per second of an interval: keyboard auto-repeat runs at up to about 50 presses a second and
# the fastest clicking at about 25; twice that leaves room. An interval shorter than a second is allowed one
# second's worth (a press lands in the sample that closes it).
MAX_KEYSTROKES_PER_SECOND = 100
MAX_CLICKS_PER_SECOND = 50

# Removed from every string: C0 and C1 controls (NUL included) and the bidirectional formatting characters
# (embeddings, overrides, isolates and marks), which can make a stored name display as another. Line breaks
# and tabs become a space instead, so words stay apart.
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_AS_SPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\x85\u2028\u2029"
_CLEAN = {ord(c): " " for c in _AS_SPACE} | {
    code: None for code in (*range(0x20), *range(0x7F, 0xA0), *map(ord, _BIDI)) if chr(code) not in _AS_SPACE
}


@dataclass(frozen=True)
class RecordError:
    index: int
    reason: str


@dataclass(frozen=True)
class Window:
    """How far from the time it was received an interval may lie."""

    max_age_ms: int = SPOOL_MAX_AGE_DAYS * DAY_MS
    future_skew_ms: int = FUTURE_SKEW_MS

    @classmethod
    def of_days(cls, max_age_days: float) -> Window:
        return cls(max_age_ms=int(max_age_days * DAY_MS))


DEFAULT_WINDOW = Window()
# Imported history (schemas/activitywatch.py) may be years old: its streams take anything since about 1990, and
# nothing from the future, as ever. The gateway numbers and checks such a stream itself (docs/activitywatch.md).
IMPORT_WINDOW = Window(max_age_ms=36 * 365 * DAY_MS)


def normal_text(text: str, limit: int) -> str:
    """`text` as stored: NFC, without controls or bidi formatting, trimmed, at most `limit` characters."""
    if not (text.isascii() and text.isprintable()):  # the common case needs none of this
        text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").translate(_CLEAN)
    text = text.strip()
    return text[:limit].rstrip() if len(text) > limit else text


def count_limit(per_second: int, start_ms: int, end_ms: int) -> int:
    """The most presses or clicks an interval from `start_ms` to `end_ms` can honestly hold."""
    return per_second * max(1, math.ceil((end_ms - start_ms) / 1000))


def canonical_uuid(value: str) -> str:
    """The canonical form (lower case, hyphenated) of an id `uuid.UUID` accepts; raises ValueError otherwise.
    Cheap for one already in that form (36 characters with the hyphens in place leave exactly 32 hex digits)."""
    if len(value) == 36 and value[8] == value[13] == value[18] == value[23] == "-" and value == value.lower():
        int(value.replace("-", ""), 16)  # raises ValueError when a character is not a hex digit
        return value
    return str(uuid.UUID(value))


def checked_interval(
    interval: Mapping[str, Any], received_ms: int, window: Window = DEFAULT_WINDOW
) -> tuple[dict[str, Any] | None, str | None]:
    """(the interval in normal form, None) when it meets the contract, else (None, why it does not)."""
    try:
        event_id = canonical_uuid(interval["event_id"])
    except ValueError:
        return None, "event_id is not a UUID"
    if interval["device_seq"] < 0:
        return None, "device_seq is negative"
    start, end = interval["start"], interval["end"]
    if end < start:
        return None, "end is before start"
    if end - start > MAX_INTERVAL_MS:
        return None, "interval is longer than a day"
    if end > received_ms + window.future_skew_ms:
        return None, "interval ends in the future"
    if start < received_ms - window.max_age_ms:
        return None, f"interval is too old: it began more than {window.max_age_ms / DAY_MS:g} days before it arrived"
    for counter, per_second in (("keystrokes", MAX_KEYSTROKES_PER_SECOND), ("clicks", MAX_CLICKS_PER_SECOND)):
        count = interval[counter]
        if count < 0:
            return None, f"{counter} is negative"
        if count > count_limit(per_second, start, end):
            return None, f"{counter} exceed {per_second} a second: {count} in {max(end - start, 0) / 1000:g} s"
    app = normal_text(interval["app"], MAX_APP_CHARS)
    if not app:
        return None, "app is empty"
    title, url = interval.get("title"), interval.get("url")
    normal = {
        **interval,
        "event_id": event_id,
        "app": app,
        "title": (normal_text(title, MAX_TITLE_CHARS) or None) if title is not None else None,
    }
    if "url" in interval:
        normal["url"] = (normal_text(url, MAX_URL_CHARS) or None) if url is not None else None
    return normal, None


def within_limits(interval: Mapping[str, Any]) -> dict[str, Any]:
    """The interval with its counts cut to `count_limit`: what a collector sends, so an honest device (a stuck
    key, a burst) never loses an interval to the rule."""
    start, end = interval["start"], interval["end"]
    return {
        **interval,
        "keystrokes": min(interval["keystrokes"], count_limit(MAX_KEYSTROKES_PER_SECOND, start, end)),
        "clicks": min(interval["clicks"], count_limit(MAX_CLICKS_PER_SECOND, start, end)),
    }


def utc_from_ms(ms: int) -> datetime:
    """A contract time (UTC milliseconds since the Unix epoch) as an aware datetime, as the warehouse stores it."""
    return datetime.fromtimestamp(ms / 1000, timezone.utc)
