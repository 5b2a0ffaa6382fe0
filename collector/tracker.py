"""The tracking loop: one sample a second becomes intervals, privacy-filtered, encoded and spooled on disk.

Everything platform-specific sits behind `collector.sampling.Sources`; the browser URL comes from an intake
(`collector.browser`) when one is given. The loop thread is the only writer of new intervals to the spool.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from collector.intervals import IntervalBuilder, IntervalRules, Sample
from collector.privacy import PrivacySettings, apply_privacy
from collector.sampling import Sources
from collector.spool import Spool
from schemas.codec import encode_interval
from schemas.contract import MAX_APP_CHARS, MAX_TITLE_CHARS, MAX_URL_CHARS, normal_text, within_limits

log = logging.getLogger(__name__)

# The app of time when no window is in front (an empty desktop, a locked screen without a window).
NO_WINDOW = "(no window)"
# A focus change passes through "no window"; only this many samples in a row without one are recorded as such.
NO_WINDOW_AFTER_SAMPLES = 3


class UrlSource(Protocol):
    def url_for(self, app: str, title: str | None, now_ms: int) -> str | None:
        """The URL to attach while this window is in front, or None."""


@dataclass(frozen=True)
class Observation:
    """What one tick saw, before privacy and interval building."""

    at_ms: int
    app: str
    title: str | None
    url: str | None
    keystrokes: int
    clicks: int
    idle_seconds: float


def well_formed(text: str | None) -> str | None:
    """The text with any lone UTF-16 surrogate (a title cut inside an emoji, an escape in a browser report)
    replaced, so it can be encoded: one odd character must not stop tracking."""
    if text is None:
        return None
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def bounded(text: str | None, limit: int) -> str | None:
    """The text cut to what the gateway accepts: a longer title must shorten, not cost the interval."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def storable(text: str | None) -> str | None:
    """The text in the contract's normal form (no controls or bidi formatting, NFC, trimmed), uncut."""
    text = well_formed(text)
    return None if text is None else normal_text(text, len(text))


class Tracker:
    """Feeds observations through privacy into the interval builder and spools what closes.

    `observe` is the pure-ish core (no OS calls): the loop, tests and the benchmark drive it with observations.
    """

    def __init__(
        self,
        spool: Spool,
        privacy: PrivacySettings,
        idle_after_s: float = 180.0,
        rules: IntervalRules | None = None,
        on_spooled: Callable[[], None] = lambda: None,
    ) -> None:
        self.spool = spool
        self._on_spooled = on_spooled
        self.privacy = privacy
        self.idle_after_s = idle_after_s
        self.builder = IntervalBuilder(rules or IntervalRules(), next_seq=spool.last_seq() + 1)
        self._idle = False
        self.spooled = 0
        self.not_spooled = 0  # refused by a full spool; counted on disk by the spool too

    def observe(self, seen: Observation) -> None:
        idle = seen.idle_seconds >= self.idle_after_s
        if idle and not self._idle:
            # The interval that went idle ends when input stopped, not when the threshold passed.
            self._store(self.builder.idle_since(seen.at_ms - int(seen.idle_seconds * 1000)))
        # Privacy first, on the whole text as captured (a rule may match past any cut); then what remains is made
        # acceptable to the gateway, which would refuse an interval for good rather than shorten it.
        private = apply_privacy({"app": seen.app, "title": seen.title, "url": seen.url}, self.privacy)
        url = well_formed(private["url"])
        private = {
            "app": bounded(storable(private["app"]), MAX_APP_CHARS) or NO_WINDOW,
            "title": bounded(storable(private["title"]), MAX_TITLE_CHARS) or None,
            "url": url if url is None or len(url) <= MAX_URL_CHARS else None,
        }
        last_input_ms = seen.at_ms - int(seen.idle_seconds * 1000)
        if self._idle and not idle:
            # Input came back: what was typed belongs to the activity that starts now, not to the idle stretch.
            self._store(self.builder.feed(self._sample(seen.at_ms, private, 0, 0, False, last_input_ms)))
        sample = self._sample(seen.at_ms, private, seen.keystrokes, seen.clicks, idle, last_input_ms)
        self._store(self.builder.feed(sample))
        self._idle = idle

    def pause(self, at_ms: int) -> None:
        """Close what is open; nothing is recorded until the next observation."""
        self._store(self.builder.flush(at_ms))
        self._idle = False

    @staticmethod
    def _sample(at_ms: int, private: dict, keystrokes: int, clicks: int, idle: bool, last_input_ms: int) -> Sample:
        return Sample(at_ms, private["app"], private["title"], private["url"], keystrokes, clicks, idle, last_input_ms)

    def _store(self, intervals: list[dict]) -> None:
        for interval in intervals:
            # A stuck key or a burst past the contract's physical limits is cut, never the interval refused.
            if self.spool.append(interval["device_seq"], encode_interval(within_limits(interval))):
                self.spooled += 1
            else:
                self.not_spooled += 1
        if intervals:
            self._on_spooled()


def run_tracking(
    tracker: Tracker,
    sources: Sources,
    stop: threading.Event,
    *,
    sample_s: float = 1.0,
    paused: Callable[[], bool] = lambda: False,
    urls: UrlSource | None = None,
    clock: Callable[[], float] = time.time,
    on_tick: Callable[[bool], None] = lambda paused: None,
) -> None:
    """Sample every `sample_s` until `stop` is set, then close the interval in progress."""
    was_paused = False
    last_window: tuple[str, str | None] | None = None
    windowless = 0  # samples in a row that found no window in front
    next_tick = time.monotonic()
    while not stop.is_set():
        now_ms = int(clock() * 1000)
        keystrokes, clicks = sources.inputs.take()  # taken while paused too, so paused input is never counted
        if paused():
            if not was_paused:
                tracker.pause(now_ms)
                log.info("tracking paused")
            was_paused = True
        else:
            if was_paused:
                log.info("tracking resumed")
            was_paused = False
            window = sources.windows.active()
            windowless = windowless + 1 if window is None else 0
            if window is None and windowless < NO_WINDOW_AFTER_SAMPLES:
                # Between one window losing the focus and the next taking it there is briefly none: not a
                # moment without a window worth recording.
                window = last_window
            last_window = window
            app, title = window if window is not None else (NO_WINDOW, None)
            url = urls.url_for(app, title, now_ms) if urls is not None else None
            tracker.observe(Observation(now_ms, app, title, url, keystrokes, clicks, sources.idle_seconds()))
        on_tick(was_paused)
        # Ticks keep to a fixed rhythm; after a stall (suspend) the next tick is simply now.
        next_tick = max(next_tick + sample_s, time.monotonic())
        stop.wait(next_tick - time.monotonic())
    tracker.pause(int(clock() * 1000))
