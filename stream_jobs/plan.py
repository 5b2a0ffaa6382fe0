"""The worker's batch plan, pure: from a batch of decoded intervals, each device's saved state, the event ids
already stored and the recorded deletions, what the batch writes (`plan_batch`).

Every write it plans is a function of the device's intervals up to its last device_seq, so planning the same
batch again (a redelivery after a crash, a second worker, a new consumer group) plans the same rows, which the
tables' keys collapse (docs/design.md, "Delivery"). `stream_jobs/batch.py` does the reading and writing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from schemas.contract import Window
from schemas.deletions import Deletion
from stream_jobs.rows import session_rows
from stream_jobs.sessionize import Advance, DeviceState, SessionRules, advance
from warehouse.writes import APP_SESSION_COLUMNS, FOCUS_SESSION_COLUMNS, NO_DELETIONS, DeletionGuard


def group_by_device(intervals: list[dict]) -> dict[str, list[dict]]:
    by_device: dict[str, list[dict]] = {}
    for interval in intervals:
        by_device.setdefault(interval["device_id"], []).append(interval)
    return by_device


def sessionize_batch(
    by_device: dict[str, list[dict]], saved: Callable[[str], dict | None], rules: SessionRules
) -> tuple[dict[str, Advance], dict[str, int]]:
    """Each device's intervals (in arrival order) advanced from its saved state; also the highest device_seq
    each device had processed before this batch (-1 for none)."""
    advances, before = {}, {}
    for device_id, items in by_device.items():
        data = saved(device_id)
        state = DeviceState.from_dict(data) if data else DeviceState()
        before[device_id] = state.last_seq
        advances[device_id] = advance(state, items, rules)
    return advances, before


def intervals_to_insert(by_device: dict[str, list[dict]], floors: dict[str, int]) -> list[dict]:
    """The intervals the saved state has not processed yet: per device, those above its floor, first of each seq.

    A device's floor is the highest device_seq its saved state reflects. The state is saved after the
    intervals, rollups and sessions it produced, so everything at or below the floor is stored; above it,
    some may be stored already (a worker died before saving the state), and storing them again is harmless.
    """
    fresh = []
    for device_id, items in by_device.items():
        floor = floors.get(device_id, -1)
        for interval in items:
            if interval["device_seq"] > floor:
                fresh.append(interval)
                floor = interval["device_seq"]
    return fresh


def drop_repeated_event_ids(
    by_device: dict[str, list[dict]], floors: dict[str, int], stored_firsts: dict[tuple[str, str], int]
) -> tuple[dict[str, list[dict]], list[tuple[str, str, int, str, str]]]:
    """Pure: the batch without any interval under an event_id its device already used for a lower device_seq
    (stored, as `stored_firsts` maps (device_id, event_id) to the lowest device_seq stored under it, or earlier
    in this batch), and a refusal (user_id, device_id, device_seq, event_id, reason) for each one dropped.

    One event_id names one interval of a device: the first, in device_seq order, is the one that counts
    (docs/design.md, "Delivery"). Intervals at or below the device's floor are redeliveries and left alone."""
    kept: dict[str, list[dict]] = {}
    refusals = []
    for device_id, items in by_device.items():
        floor = floors.get(device_id, -1)
        firsts: dict[str, int] = {}
        kept[device_id] = []
        for interval in items:
            seq, event_id = interval["device_seq"], interval["event_id"]
            if seq > floor:
                first = min(firsts.get(event_id, seq), stored_firsts.get((device_id, event_id), seq))
                if first != seq:
                    reason = f"repeated event_id: {event_id} was already stored under device_seq {first}"
                    refusals.append((interval["user_id"], device_id, seq, event_id, reason))
                    continue
                firsts.setdefault(event_id, seq)
            kept[device_id].append(interval)
    return {d: items for d, items in kept.items() if items}, refusals


def drop_deleted(by_device: dict[str, list[dict]], guard: DeletionGuard) -> dict[str, list[dict]]:
    """Pure: the batch without the intervals a recorded deletion covers. They leave no row at all, not even a
    refusal: a device waiting to hear of them is told by the gateway, which reads the same record."""
    if not guard.deletions:
        return by_device
    kept: dict[str, list[dict]] = {}
    for device_id, items in by_device.items():
        for interval in items:
            if guard.covering(interval["user_id"], device_id, interval["start"], interval["end"]) is None:
                kept.setdefault(device_id, []).append(interval)
    return kept


def stale_deletions(saved: dict[str, str], users: dict[str, str], guard: DeletionGuard) -> list[Deletion]:
    """Pure: the recorded deletions that some saved state (device_id -> JSON; `users` maps device_id to user_id)
    has not been cut by: a deletion ran while the state's writer was writing it. They are applied again first."""
    stale: dict[str, Deletion] = {}
    for device_id, data in saved.items():
        applied = set(DeviceState.from_dict(json.loads(data)).applied)
        for d in guard.deletions:
            if d.names(users[device_id], device_id) and d.deletion_id not in applied:
                stale.setdefault(d.deletion_id, d)
    return list(stale.values())


@dataclass(frozen=True)
class BatchWrites:
    """Everything one batch writes to the warehouse, in the order it must be written."""

    intervals: list[dict]
    app_rows: list[tuple]
    focus_rows: list[tuple]
    # (user_id, device_id, device_seq, event_id, reason) of intervals refused as repeated event ids.
    refusals: list[tuple[str, str, int, str, str]]
    # (user_id, device_id, last_seq, state JSON) of every device whose state moved.
    states: list[tuple[str, str, int, str]]
    # How many intervals a recorded deletion covered (dropped without a trace).
    deleted: int = 0


def floors_of(saved: dict[str, str]) -> dict[str, int]:
    """The highest device_seq each device's saved state (JSON, as `load_device_states` returns) reflects."""
    return {device_id: DeviceState.from_dict(json.loads(data)).last_seq for device_id, data in saved.items()}


def plan_batch(
    by_device: dict[str, list[dict]],
    saved: dict[str, str],
    rules: SessionRules,
    stored_firsts: dict[tuple[str, str], int] | None = None,
    guard: DeletionGuard = NO_DELETIONS,
) -> BatchWrites:
    """Pure: what a batch writes, given each device's saved state (JSON, as `load_device_states` returns), the
    lowest device_seq stored under each of its event ids (`drop_repeated_event_ids`) and the deletions recorded
    for its users (`drop_deleted`); every state it saves records those deletions as applied."""
    arrived = sum(len(items) for items in by_device.values())
    by_device = drop_deleted(by_device, guard)
    covered = arrived - sum(len(items) for items in by_device.values())
    by_device, refusals = drop_repeated_event_ids(by_device, floors_of(saved), stored_firsts or {})
    advances, floors = sessionize_batch(
        by_device, lambda device_id: json.loads(saved[device_id]) if device_id in saved else None, rules
    )
    states = []
    for device_id, adv in advances.items():
        if adv.state.last_seq > floors[device_id]:
            user_id = by_device[device_id][0]["user_id"]
            applied = dict.fromkeys(adv.state.applied)
            applied.update(dict.fromkeys(d.deletion_id for d in guard.deletions if d.names(user_id, device_id)))
            state = DeviceState(adv.state.last_seq, adv.state.app_session, adv.state.focus_session, tuple(applied))
            states.append((user_id, device_id, state.last_seq, json.dumps(state.to_dict())))
    return BatchWrites(
        intervals=intervals_to_insert(by_device, floors),
        app_rows=session_rows((s for a in advances.values() for s in a.app_sessions), APP_SESSION_COLUMNS),
        focus_rows=session_rows((s for a in advances.values() for s in a.focus_sessions), FOCUS_SESSION_COLUMNS),
        refusals=refusals,
        states=states,
        deleted=covered,
    )


def event_id_span(by_device: dict[str, list[dict]], window: Window) -> tuple[int, int]:
    """The start times among which a batch's repeated event ids are looked for: the acceptance window before
    the earliest receipt to the latest possible end."""
    received = [i["received_at"] for items in by_device.values() for i in items]
    # An imported stream's intervals may lie before the window (schemas/contract.py IMPORT_WINDOW).
    earliest = min(i["start"] for items in by_device.values() for i in items)
    return min(min(received) - window.max_age_ms, earliest), max(received) + window.future_skew_ms
