"""Sessionization: one device's ordered interval stream cut into app sessions and focus sessions.

Pure: no broker, no warehouse, no clock. The worker keeps a `DeviceState` per device (saved with `to_dict`)
and calls `advance` with each batch of that device's intervals, in the order of the device's partition.

Definitions (docs/design.md, "Sessions"):

- An app session is a maximal run of consecutive non-idle intervals with the same `(app, site)`, each starting at
  most `session_gap_ms` after the session's end so far (an overlap, a start before that end, also continues it).
  Title changes do not split it. An idle interval belongs to no app session and ends the open one.
- A focus session is a maximal run of non-idle intervals whose gaps are all shorter than `break_after_ms`; a gap
  runs from the session's end so far to the next non-idle start, whether idle intervals or silence filled it.
  An interval starting `MAX_SESSION_MS` (a day, schemas/contract.py) or more after the session's start begins a
  new one, as a break would: every session then spans less than `SESSION_SPAN_MS`, which bounds the scan of a query
  for the sessions overlapping a period (warehouse/queries.py).
  Its `context_switches` are the app-session boundaries inside it (`app_sessions - 1`).
- An interval whose `device_seq` is not above the highest one already processed is a redelivery: it changes nothing.

Choices where the definitions are silent:

- Gaps are measured from the latest end seen so far in the session, not the previous interval's end, so an interval
  nested inside an earlier one cannot open a phantom gap. A session runs from its first interval's start to the
  latest end; `start` never changes between versions, because the warehouse's sorting key holds it and a row only
  replaces a row with the same key. `active_ms` is the sum of the intervals' durations (the span minus the gaps when
  intervals do not overlap), so overlapping time counts twice; a device's intervals normally follow one another.
- An app session never crosses a focus break, even under rules with `break_after_ms <= session_gap_ms`: every app
  session lies inside exactly one focus session.
- Keystrokes and clicks of idle intervals count nowhere: idle means the user was away for the whole interval, so
  such counts are collector noise (a key pressed as the idle timer fired), not focus.
- Zero-length intervals are intervals like any other: a zero-length interval of another app splits an app session.
- A focus session is closed only by activity that cannot continue it, never by idle time or silence: until the next
  non-idle interval arrives, an earlier-starting (overlapping) one could still continue it. Readers should treat an
  open focus session whose end is `break_after_ms` in the past as over.
- Every emitted row's `version` is the `device_seq` of the interval whose processing produced it, so rows are a pure
  function of the stream, and a later emission of a session always has a higher version (ReplacingMergeTree).
- Session ids name the device and the session's first interval by its `device_seq`: `"{device_id}:{seq}"` for an
  app session, `"{device_id}:{seq}:focus"` for a focus session (both start at the same interval). A device's seqs
  never repeat, so neither do its ids, and ids that differ in their last digits cost the warehouse a few bytes where
  a random one cost 39 (docs/design.md, "Event ids"). Sessions stored before that are named by the event id of
  their first interval instead, as is an open one a saved state carries over; ids are opaque to every reader.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from schemas.contract import MAX_SESSION_MS

# Bumped when the saved shape of DeviceState changes, so a worker never misreads another version's table.
_STATE_FORMAT = 1


@dataclass(frozen=True)
class SessionRules:
    session_gap_ms: int = 30_000
    break_after_ms: int = 300_000

    def __post_init__(self) -> None:
        if self.session_gap_ms < 0:
            raise ValueError(f"session_gap_ms must be >= 0, got {self.session_gap_ms}")
        # A focus gap continues the session only when shorter than break_after_ms; with 0 nothing would continue.
        if self.break_after_ms <= 0:
            raise ValueError(f"break_after_ms must be > 0, got {self.break_after_ms}")


@dataclass(frozen=True)
class AppSession:
    session_id: str
    user_id: str
    device_id: str
    app: str
    site: str
    start: int
    end: int
    active_ms: int
    keystrokes: int
    clicks: int
    intervals: int
    version: int
    closed: bool


@dataclass(frozen=True)
class FocusSession:
    session_id: str
    user_id: str
    device_id: str
    start: int
    end: int
    active_ms: int
    context_switches: int
    app_sessions: int
    keystrokes: int
    clicks: int
    version: int
    closed: bool


@dataclass
class DeviceState:
    """What a device's sessionization remembers between batches: the open sessions, as their latest rows."""

    last_seq: int = -1
    app_session: AppSession | None = None
    focus_session: FocusSession | None = None
    # The deletions (schemas/deletions.py) this state has been cut by: a covering one missing is applied first.
    applied: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": _STATE_FORMAT,
            "last_seq": self.last_seq,
            "app_session": None if self.app_session is None else asdict(self.app_session),
            "focus_session": None if self.focus_session is None else asdict(self.focus_session),
            "applied": list(self.applied),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeviceState:
        if data.get("format") != _STATE_FORMAT:
            raise ValueError(f"unknown DeviceState format {data.get('format')!r} (expected {_STATE_FORMAT})")
        app, focus = data["app_session"], data["focus_session"]
        return cls(
            last_seq=data["last_seq"],
            app_session=None if app is None else AppSession(**app),
            focus_session=None if focus is None else FocusSession(**focus),
            applied=tuple(data.get("applied", ())),
        )


@dataclass(frozen=True)
class Advance:
    state: DeviceState
    app_sessions: list[AppSession]
    focus_sessions: list[FocusSession]


def advance(
    state: DeviceState | None, intervals: Iterable[Mapping[str, Any]], rules: SessionRules = SessionRules()
) -> Advance:
    """Process one batch of a device's intervals (in device_seq order) from `state`; `state` is left untouched.

    Returns the new state and, for every session the batch touched, exactly one row: its latest version, with
    `closed=True` if the batch closed it.
    """
    if state is None:
        state = DeviceState()
    gap_ms = rules.session_gap_ms
    break_ms = rules.break_after_ms
    last_seq = batch_floor = state.last_seq
    app_rows: list[AppSession] = []
    focus_rows: list[FocusSession] = []

    # The open sessions live in plain locals while the batch runs: a frozen row per interval would cost more than
    # the sessionization itself. Rows are built only when a session closes and at the end of the batch.
    a = state.app_session
    a_open = a is not None
    if a is not None:
        a_id, a_user, a_dev, a_app, a_site = a.session_id, a.user_id, a.device_id, a.app, a.site
        a_start, a_end, a_active, a_keys, a_clicks, a_n, a_ver = (
            a.start, a.end, a.active_ms, a.keystrokes, a.clicks, a.intervals, a.version
        )  # fmt: skip
    f = state.focus_session
    f_open = f is not None
    if f is not None:
        f_id, f_user, f_dev = f.session_id, f.user_id, f.device_id
        f_start, f_end, f_active, f_apps, f_keys, f_clicks, f_ver = (
            f.start, f.end, f.active_ms, f.app_sessions, f.keystrokes, f.clicks, f.version
        )  # fmt: skip

    for iv in intervals:
        seq = iv["device_seq"]
        if seq <= last_seq:
            continue  # a redelivery of something already counted
        last_seq = seq

        if iv["idle"]:
            if a_open:
                app_rows.append(
                    AppSession(
                        a_id, a_user, a_dev, a_app, a_site, a_start, a_end, a_active, a_keys, a_clicks, a_n, seq, True
                    )
                )
                a_open = False
            continue

        start = iv["start"]
        end = iv["end"]
        app = iv["app"]
        site = iv["site"]
        if f_open:
            if iv["device_id"] != f_dev:
                raise ValueError(f"interval of device {iv['device_id']!r} in the stream of device {f_dev!r}")
            if start - f_end < break_ms and start - f_start < MAX_SESSION_MS:
                if a_open and start - a_end <= gap_ms and app == a_app and site == a_site:
                    if end > a_end:
                        a_end = end
                    a_active += end - start
                    a_keys += iv["keystrokes"]
                    a_clicks += iv["clicks"]
                    a_n += 1
                    a_ver = seq
                else:
                    if a_open:
                        app_rows.append(
                            AppSession(
                                a_id,
                                a_user,
                                a_dev,
                                a_app,
                                a_site,
                                a_start,
                                a_end,
                                a_active,
                                a_keys,
                                a_clicks,
                                a_n,
                                seq,
                                True,
                            )  # fmt: skip
                        )
                    a_open = True
                    a_id = f"{f_dev}:{seq}"
                    a_user, a_dev, a_app, a_site = iv["user_id"], f_dev, app, site
                    a_start, a_end, a_active = start, end, end - start
                    a_keys, a_clicks, a_n, a_ver = iv["keystrokes"], iv["clicks"], 1, seq
                    f_apps += 1
                if end > f_end:
                    f_end = end
                f_active += end - start
                f_keys += iv["keystrokes"]
                f_clicks += iv["clicks"]
                f_ver = seq
                continue
            # A focus break: the open app session ends with it, whatever its app (app sessions nest in focus ones).
            if a_open:
                app_rows.append(
                    AppSession(
                        a_id, a_user, a_dev, a_app, a_site, a_start, a_end, a_active, a_keys, a_clicks, a_n, seq, True
                    )
                )
            focus_rows.append(
                FocusSession(
                    f_id, f_user, f_dev, f_start, f_end, f_active, f_apps - 1, f_apps, f_keys, f_clicks, seq, True
                )
            )

        # The first activity of a focus session, which opens an app session too.
        f_open = a_open = True
        f_dev = iv["device_id"]
        a_id = f"{f_dev}:{seq}"
        f_id = f"{a_id}:focus"
        a_user = f_user = iv["user_id"]
        a_dev, a_app, a_site = f_dev, app, site
        a_start = f_start = start
        a_end = f_end = end
        a_active = f_active = end - start
        a_keys = f_keys = iv["keystrokes"]
        a_clicks = f_clicks = iv["clicks"]
        a_n = f_apps = 1
        a_ver = f_ver = seq

    app_row = None
    if a_open:
        app_row = AppSession(
            a_id, a_user, a_dev, a_app, a_site, a_start, a_end, a_active, a_keys, a_clicks, a_n, a_ver, False
        )
        if a_ver > batch_floor:
            app_rows.append(app_row)
    focus_row = None
    if f_open:
        focus_row = FocusSession(
            f_id, f_user, f_dev, f_start, f_end, f_active, f_apps - 1, f_apps, f_keys, f_clicks, f_ver, False
        )
        if f_ver > batch_floor:
            focus_rows.append(focus_row)
    return Advance(DeviceState(last_seq, app_row, focus_row, state.applied), app_rows, focus_rows)
