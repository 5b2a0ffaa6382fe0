"""Interval building: the collector's 1-second samples become ActivityInterval records (docs/design.md, "Event
contract").

Pure: no clock, no OS. The sampling loop passes each sample's time in, and says when the user went idle.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

_MAX_SEQ = (1 << 62) - 1


@dataclass(frozen=True)
class Sample:
    """What was in front at one instant, and the input COUNTS since the previous sample.

    Only counts: no key identity, text or pointer position ever reaches this type (docs/collector.md, "What it
    records")."""

    at_ms: int
    app: str
    title: str | None
    url: str | None
    keystrokes: int
    clicks: int
    idle: bool  # the user has been idle for at least `idle_after`
    # When the last key, click or pointer movement was (the OS's idle clock); None when unknown.
    last_input_ms: int | None = None


@dataclass(frozen=True)
class IntervalRules:
    max_interval_ms: int = 60_000
    # A longer silence between samples means the collector was not sampling (suspend, a stalled process): the
    # open interval ends at its last sample rather than claiming time nobody observed. At 1 s sampling, 10 s
    # tolerates a slow tick without splitting real activity.
    max_gap_ms: int = 10_000
    # After this long without input the active interval is held open past max_interval: if the quiet lasts until
    # the user counts as idle, the idle cut goes back to when input stopped, and only an interval still open can
    # be cut. Input before idle_after releases it in max_interval pieces, as if never held.
    hold_when_quiet_ms: int = 5_000

    def __post_init__(self) -> None:
        if self.max_interval_ms <= 0:
            raise ValueError(f"max_interval_ms must be positive, got {self.max_interval_ms}")
        if self.max_gap_ms <= 0:
            raise ValueError(f"max_gap_ms must be positive, got {self.max_gap_ms}")


def event_id(run: int, seq: int) -> str:
    """The event id of interval `seq` of a collector run that drew `run` (64 random bits) when it started.

    A UUIDv8 (RFC 9562's layout for ids of one's own design): `run` in the high half (its version nibble set to 8),
    `seq` in the 62 low bits under the variant. As unique as a random id (no two runs draw the same 60 bits, a run
    never repeats a seq, and a spool started afresh begins a new run), yet one device's ids differ only in their
    last digits, so the warehouse stores one in about a byte rather than 16 (docs/design.md, "Event ids").
    Pure."""
    if not 0 <= run < 1 << 64:
        raise ValueError(f"run must be 64 bits, got {run}")
    if not 0 <= seq <= _MAX_SEQ:
        raise ValueError(f"seq must be in [0, 2**62), got {seq}")
    high = (run & ~(0xF << 12)) | (0x8 << 12)
    return str(uuid.UUID(int=(high << 64) | (0b10 << 62) | seq))


_Key = tuple[str, str | None, str | None, bool]  # (app, title, url, idle): one per interval


@dataclass
class _Open:
    start: int
    key: _Key
    keystrokes: int = 0
    clicks: int = 0


class IntervalBuilder:
    """Cuts a stream of samples into ActivityInterval v2 dicts.

    An interval closes when app, title, URL or idle state changes, and at the latest `max_interval` after it
    started; consecutive intervals are contiguous (next start == previous end). A sample's counts happened
    since the previous sample, so they go to the interval in progress up to that sample's time. Time never runs
    backwards here: a sample older than the last one seen is read as arriving at the last one's time, so no
    interval ever ends before it starts. Zero-length intervals are not emitted; their counts carry over to the
    next interval, so no key press or click is lost."""

    def __init__(
        self,
        rules: IntervalRules = IntervalRules(),
        next_seq: int = 0,
        run: int | None = None,
    ) -> None:
        """`run`: the 64 bits this run's event ids carry (`event_id`); drawn at random when None."""
        self._rules = rules
        self._next_seq = next_seq
        self._run = secrets.randbits(64) if run is None else run
        self._open: _Open | None = None
        self._last_at: int | None = None
        self._carry_keystrokes = 0
        self._carry_clicks = 0

    @property
    def next_seq(self) -> int:
        """The device_seq the next emitted interval gets; persist it so a restart continues the sequence."""
        return self._next_seq

    def feed(self, sample: Sample) -> list[dict]:
        """Take one sample; return the intervals it closed, in order."""
        at = sample.at_ms if self._last_at is None else max(sample.at_ms, self._last_at)
        key: _Key = (sample.app, sample.title, sample.url, sample.idle)
        closed: list[dict] = []
        if self._open is not None and self._last_at is not None and at - self._last_at > self._rules.max_gap_ms:
            closed += self._close(self._last_at)
        self._last_at = at

        if self._open is None:
            self._begin(at, key)
            self._add(sample.keystrokes, sample.clicks)
            return closed

        holding = self._holding(sample, at) and self._open.key == key
        if not holding:
            closed += self._split_before(at)
        # Now the open interval covers the time since the previous sample: the counts belong to it.
        self._add(sample.keystrokes, sample.clicks)
        if self._open.key != key or (not holding and at - self._open.start >= self._rules.max_interval_ms):
            closed += self._close(at)
            self._begin(at, key)
        return closed

    def _holding(self, sample: Sample, at: int) -> bool:
        """Whether the open active interval waits, past max_interval, to learn whether the quiet becomes idle."""
        assert self._open is not None
        quiet = sample.last_input_ms is not None and at - sample.last_input_ms >= self._rules.hold_when_quiet_ms
        return quiet and not self._open.key[3]

    def flush(self, at_ms: int) -> list[dict]:
        """Close the open interval at `at_ms` (shutdown, pause); the next sample starts afresh."""
        if self._open is None:
            return []
        assert self._last_at is not None  # an open interval has seen a sample
        at = max(at_ms, self._last_at)
        closed = self._split_before(at)
        closed += self._close(at)
        self._last_at = None
        return closed

    def idle_since(self, idle_start_ms: int) -> list[dict]:
        """The user has been idle since `idle_start_ms`: the active interval ends there, idle time begins there.

        Intervals already emitted stand (they may be stored or sent), so the cut is never earlier than the open
        interval's start, nor later than the last sample seen. Samples that carry `last_input_ms` keep the open
        interval open through a quiet stretch (`hold_when_quiet_ms`), so the cut lands where input stopped."""
        if self._open is None or self._open.key[3]:
            return []
        app, title, url, _ = self._open.key
        assert self._last_at is not None
        cut = min(max(idle_start_ms, self._open.start), self._last_at)
        closed = self._split_before(cut)
        closed += self._close(cut)
        self._begin(cut, (app, title, url, True))
        return closed

    def _split_before(self, at: int) -> list[dict]:
        """Close `max_interval`-long pieces of the open activity until what remains started within it of `at`."""
        assert self._open is not None
        closed: list[dict] = []
        key = self._open.key
        while self._open.start + self._rules.max_interval_ms < at:
            split = self._open.start + self._rules.max_interval_ms
            closed += self._close(split)
            self._begin(split, key)
        return closed

    def _begin(self, start: int, key: _Key) -> None:
        self._open = _Open(start, key, self._carry_keystrokes, self._carry_clicks)
        self._carry_keystrokes = self._carry_clicks = 0

    def _add(self, keystrokes: int, clicks: int) -> None:
        assert self._open is not None
        self._open.keystrokes += max(keystrokes, 0)
        self._open.clicks += max(clicks, 0)

    def _close(self, end: int) -> list[dict]:
        interval, self._open = self._open, None
        if interval is None:
            return []
        if end <= interval.start:
            self._carry_keystrokes += interval.keystrokes
            self._carry_clicks += interval.clicks
            return []
        app, title, url, idle = interval.key
        record = {
            "event_id": event_id(self._run, self._next_seq),
            "device_seq": self._next_seq,
            "start": interval.start,
            "end": end,
            "app": app,
            "title": title,
            "url": url,
            "keystrokes": interval.keystrokes,
            "clicks": interval.clicks,
            "idle": idle,
        }
        self._next_seq += 1
        return [record]
