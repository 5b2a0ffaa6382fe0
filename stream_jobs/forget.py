"""Applying a deletion to everything the stream jobs wrote: raw intervals, sessions cut at the deletion's edges,
rollups, and each device's saved sessionizer state (docs/design.md, "Delete means gone").

`apply_deletion` is idempotent: the gateway calls it when a person deletes, and a worker calls it again whenever
it finds that a deletion ran while it was writing (or that a state it loaded has not been cut by one), so a
batch in flight at any moment cannot bring back what the deletion removed. `recut` is the pure core.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from clickhouse_connect.driver.client import Client

from plumbing.settings import Settings
from schemas.deletions import ACCOUNT, ALL_DATA, FOREVER_MS, PERIOD, Deletion
from stream_jobs.rows import session_rows
from stream_jobs.sessionize import AppSession, DeviceState, FocusSession, SessionRules, advance
from warehouse import deletion as sql
from warehouse.writes import APP_SESSION_COLUMNS, FOCUS_SESSION_COLUMNS, DeletionGuard, store_rows


def rules_of(settings: Settings) -> SessionRules:
    return SessionRules(
        session_gap_ms=int(settings.session_gap_seconds * 1000), break_after_ms=int(settings.break_after_seconds * 1000)
    )


@dataclass(frozen=True)
class Recut:
    app_sessions: list[AppSession]
    focus_sessions: list[FocusSession]
    # device_id -> (last_seq, state JSON) of every device whose saved state the deletion cut.
    states: dict[str, tuple[int, str]]


def recut(
    deletion: Deletion,
    spans: dict[str, tuple[int, int]],
    remaining: dict[str, list[dict]],
    saved: dict[str, str],
    rules: SessionRules,
) -> Recut:
    """Pure: the sessions of each device's span made again from the raw intervals left in it (what lay on both
    sides of the deletion becomes sessions of its own, cut at the edges), and each saved state cut the same way;
    each state records the deletion as applied."""
    return remake(
        spans,
        remaining,
        saved,
        rules,
        removed=lambda i: deletion.covers(i["user_id"], i["device_id"], i["start"], i["end"]),
        applied=deletion.deletion_id,
    )


def remake(
    spans: dict[str, tuple[int, int]],
    remaining: dict[str, list[dict]],
    saved: dict[str, str],
    rules: SessionRules,
    *,
    removed: Callable[[dict], bool] = lambda interval: False,
    applied: str | None = None,
) -> Recut:
    """Pure: the sessions of each device's span (whole focus sessions) made again from its raw intervals, those
    `removed` says are gone left out, and each saved state cut the same way. A deletion removes intervals; a
    privacy rule applied to past data (stream_jobs/history.py) removes none but changes their app and site.

    Only intervals the saved state reflects (device_seq up to its last_seq) are taken: one stored but not yet
    reflected is counted when the worker gets to it. A state's open sessions are replaced by what is left of
    them; its last_seq stays, so redeliveries remain redeliveries, and it records `applied` (a deletion's id)."""
    app: list[AppSession] = []
    focus: list[FocusSession] = []
    states: dict[str, tuple[int, str]] = {}
    for device_id in sorted(set(spans) | set(saved)):
        state = DeviceState.from_dict(json.loads(saved[device_id])) if device_id in saved else None
        floor = state.last_seq if state is not None else None
        left = [
            i for i in remaining.get(device_id, []) if not removed(i) and (floor is None or i["device_seq"] <= floor)
        ]
        open_here = (
            state is not None
            and state.focus_session is not None
            and device_id in spans
            and spans[device_id][0] <= state.focus_session.start
        )
        made = advance(DeviceState(), left, rules) if device_id in spans else None
        if made is not None:
            # Sessions of the span that were closed stay closed; the state's open ones stay open.
            keep_open_app = open_here and made.state.app_session is not None
            keep_open_focus = open_here and made.state.focus_session is not None
            app += [
                s if (keep_open_app and s == made.state.app_session) else replace(s, closed=True)
                for s in made.app_sessions
            ]
            focus += [
                s if (keep_open_focus and s == made.state.focus_session) else replace(s, closed=True)
                for s in made.focus_sessions
            ]
        if state is None:
            continue
        done = state.applied
        if applied is not None and applied not in done:
            done = (*done, applied)
        if open_here and made is not None:
            cut = DeviceState(state.last_seq, made.state.app_session, made.state.focus_session, done)
        else:
            cut = replace(state, applied=done)
        states[device_id] = (cut.last_seq, json.dumps(cut.to_dict()))
    return Recut(app, focus, states)


def store_sessions(client: Client, guard: DeletionGuard, made: Recut) -> None:
    """Store the sessions made again (but what `guard` covers)."""
    store_rows(client, guard, "app_sessions", APP_SESSION_COLUMNS, session_rows(made.app_sessions, APP_SESSION_COLUMNS))
    store_rows(
        client, guard, "focus_sessions", FOCUS_SESSION_COLUMNS, session_rows(made.focus_sessions, FOCUS_SESSION_COLUMNS)
    )


def apply_deletion(client: Client, deletion: Deletion, rules: SessionRules) -> dict[str, int]:
    """Remove from every table what `deletion` covers, cut the sessions and saved states at its edges and make
    the rollups exact from the raw rows left; returns what was removed (rows per table, active seconds)."""
    if deletion.kind == ACCOUNT:
        return sql.delete_rows_of(client, deletion, sql.USER_TABLES)
    saved = sql.device_states(client, deletion)
    spans = sql.focus_spans(client, deletion)
    for device_id, data in saved.items():
        focus_session = DeviceState.from_dict(json.loads(data)).focus_session
        if focus_session is not None and deletion.covers_span(
            deletion.user_id, device_id, focus_session.start, focus_session.end
        ):
            # The open focus session is cut too, and everything after its start is made again with it.
            lo = min(spans.get(device_id, (focus_session.start, 0))[0], focus_session.start)
            spans[device_id] = (lo, FOREVER_MS)
    removed: dict[str, int] = {}
    removed["intervals"], removed["active_seconds"] = sql.delete_covered_intervals(client, deletion)
    removed["source_intervals"] = sql.delete_covered(client, "source_intervals", deletion)
    removed.update(sql.delete_sessions_in(client, deletion.user_id, spans))
    cut = recut(deletion, spans, sql.intervals_in(client, deletion.user_id, spans), saved, rules)
    store_sessions(client, DeletionGuard((deletion,)), cut)
    sql.rebuild_rollups_around(client, deletion)
    if deletion.kind != PERIOD:
        # A device's or all data: what the worker refused of it goes too, and with all data the category rules.
        # Its data keys go: every copy of its records still in the broker can no longer be opened (shredded);
        # the gateway makes a new key for what the device sends next.
        tables = ("refused_intervals", "data_keys", "import_streams")
        removed.update(
            sql.delete_rows_of(client, deletion, (*tables, "category_rules") if deletion.kind == ALL_DATA else tables)
        )
    # Last: a state is cut only once the rows it continues are. A device's state left with nothing open after
    # everything it recorded went (a device's or all data) goes too: no row of that device remains but its name.
    emptied = {
        device_id
        for device_id, (_, data) in cut.states.items()
        if deletion.start_ms == 0 and DeviceState.from_dict(json.loads(data)).focus_session is None
    }
    sql.replace_device_states(client, deletion.user_id, {d: s for d, s in cut.states.items() if d not in emptied})
    sql.delete_device_states(client, deletion.user_id, sorted(emptied))
    return removed


@dataclass(frozen=True)
class DeletionReport:
    deletion: Deletion
    removed: dict[str, int]
    seconds: float

    def summary(self) -> str:
        parts = [
            f"{n:,} {table.replace('_', ' ')}" for table, n in self.removed.items() if n and table != "active_seconds"
        ]
        active = self.removed.get("active_seconds", 0)
        what = ", ".join(parts) or "nothing stored"
        hours = f" ({active / 3600:.1f} h of activity)" if active else ""
        return f"removed {what}{hours} in {self.seconds:.2f} s"


def delete(client: Client, deletion: Deletion, rules: SessionRules) -> DeletionReport:
    """Record the deletion (from then on every writer applies it), then apply it; report what it removed."""
    began = time.monotonic()
    sql.record_deletion(client, deletion)
    removed = apply_deletion(client, deletion, rules)
    return DeletionReport(deletion, removed, time.monotonic() - began)
