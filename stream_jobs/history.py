"""A privacy rule applied to past data (docs/privacy-rules.md, "Applying a rule to past data").

A rule saved on the Privacy page applies to what is stored after it. Applied to history, it rewrites the stored
rows it matches, physically (a mutation rewrites the parts, as a deletion does): `hide_title` empties their title;
`drop_details` makes their app "(private)" and removes site and title. Sessions carry the app and site, so for
`drop_details` the focus sessions holding a rewritten interval are made again from the raw rows, with the saved
sessionizer state cut the same way, exactly as a deletion cuts them (stream_jobs/forget.py), and the rollups are
rebuilt from raw: sessions and rollups stay a function of the raw rows. Titles are only in the raw rows.

On past rows a rule matches what was stored (a title as it was scrubbed), not what the window showed. The pure
parts are `rewritten`, `effect_of` and `spans_to_remake`; `preview` and `apply_rule` are the I/O around them.
"""

from __future__ import annotations

import bisect
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from schemas.contract import utc_from_ms
from schemas.deletions import FOREVER_MS
from schemas.privacy_rules import PRIVATE_APP, PrivacyRule
from stream_jobs.forget import remake, store_sessions
from stream_jobs.sessionize import DeviceState, SessionRules
from warehouse import deletion as sql
from warehouse import privacy
from warehouse.rollups import MAX_INTERVAL, rebuild_user_span, repair_rollups
from warehouse.writes import DeletionGuard

# Sessions are made again in spans of at most this much of one device's time, so memory stays bounded however
# much history a rule touches (a span is whole focus sessions; one longer than this is a span of its own).
MAX_SPAN_MS = 2 * 86_400_000


@dataclass(frozen=True)
class RuleEffect:
    """What applying a rule to past data changes (or changed): stored intervals, their active time, devices."""

    intervals: int = 0
    active_seconds: int = 0
    devices: int = 0
    seconds: float = 0.0


def rewritten(rule: PrivacyRule, app: str, site: str, title: str) -> tuple[str, str, str] | None:
    """Pure: the (app, site, title) the rule makes of a stored interval's, or None where it does not match or
    leaves the interval as it is (already without a title, or already private)."""
    if not rule.matches(app, title or None, site or None):
        return None
    kept = (PRIVATE_APP, "", "") if rule.action == "drop_details" else (app, site, "")
    return None if kept == (app, site, title) else kept


def effect_of(
    rule: PrivacyRule, groups: Iterable[tuple[str, str, str, str, int, int]]
) -> tuple[list[privacy.Group], RuleEffect]:
    """Pure: of the stored (device, app, site, title, intervals, active ms) groups, the (app, site, title) the
    rule rewrites, and what that touches."""
    matched: set[privacy.Group] = set()
    devices: set[str] = set()
    intervals = active_ms = 0
    for device, app, site, title, n, ms in groups:
        if rewritten(rule, app, site, title) is not None:
            matched.add((app, site, title))
            devices.add(device)
            intervals += n
            active_ms += ms
    return sorted(matched), RuleEffect(intervals, active_ms // 1000, len(devices))


def spans_to_remake(
    sessions: Sequence[tuple[int, int]],
    hits: Sequence[tuple[int, int]],
    open_from: int | None = None,
    max_span_ms: int = MAX_SPAN_MS,
) -> list[tuple[int, int]]:
    """Pure: for one device, the spans (whole focus sessions, in time order, of at most `max_span_ms` each unless
    one session is longer) holding every focus session that overlaps one of the `hits` (rewritten intervals).

    `sessions` are the device's focus sessions in start order; `open_from` is the start of the one its saved state
    holds open, if any: a hit in it makes the last span run on for ever, so the state is cut too."""
    starts = [lo for lo, _ in sessions]
    touched: set[int] = set()
    reaches_open = False
    for start, end in hits:
        if open_from is not None and end >= open_from:
            reaches_open = True
        # Focus sessions follow one another: those overlapping [start, end] are the last one starting at or before
        # its end, and those before it still reaching its start.
        n = bisect.bisect_right(starts, end) - 1
        while n >= 0 and sessions[n][1] >= start:
            touched.add(n)
            n -= 1
    spans: list[tuple[int, int]] = []
    for n in sorted(touched):
        lo, hi = sessions[n]
        if spans and hi - spans[-1][0] <= max_span_ms:
            spans[-1] = (spans[-1][0], max(spans[-1][1], hi))
        else:
            spans.append((lo, hi))
    if reaches_open and open_from is not None:
        if spans and spans[-1][1] >= open_from:
            spans[-1] = (spans[-1][0], FOREVER_MS)
        else:
            spans.append((open_from, FOREVER_MS))
    return spans


def preview(client: Client, user_id: str, rule: PrivacyRule) -> RuleEffect:
    """What applying `rule` to the account's stored intervals would change, as of now."""
    return effect_of(rule, privacy.stored_groups(client, user_id))[1]


def apply_rule(client: Client, user_id: str, rule: PrivacyRule, rules: SessionRules) -> RuleEffect:
    """Rewrite the account's stored intervals the rule matches, with their sessions, saved states and rollups made
    again to match (`client`: the deletion login). Idempotent, and safe to run again after a failure at any step:
    sessions and states are made (from the rows as the rule rewrites them) before the rows are rewritten, so a run
    that stopped before the rewrite finds the rows again, and one that stopped after it repairs the rollups."""
    began = time.monotonic()
    groups, effect = effect_of(rule, privacy.stored_groups(client, user_id))
    if not groups:
        repair_rollups(client, user_id)
        return RuleEffect(seconds=time.monotonic() - began)
    hits = privacy.intervals_of_groups(client, user_id, groups)
    if rule.action != "hide_title":
        # Sessions hold no title: only a rule that drops the app and site changes them.
        _remake_sessions(client, user_id, groups, hits, rules)
    privacy.rewrite_groups(client, user_id, groups, rule.action)
    # The daily rollup by title (and, for drop_details, the hourly one) holds what was rewritten: its days are
    # deleted and made again from the rewritten rows, so a hidden title is left nowhere.
    first = min(start for device_hits in hits.values() for start, _ in device_hits)
    last_end = max(end for device_hits in hits.values() for _, end in device_hits)
    rebuild_user_span(client, user_id, utc_from_ms(first) - MAX_INTERVAL, utc_from_ms(last_end) + MAX_INTERVAL)
    return RuleEffect(effect.intervals, effect.active_seconds, effect.devices, time.monotonic() - began)


def _remake_sessions(
    client: Client,
    user_id: str,
    groups: Sequence[privacy.Group],
    hits: dict[str, list[tuple[int, int]]],
    rules: SessionRules,
) -> None:
    """The sessions of every focus session holding one of the `hits` (the intervals of `groups`), and the saved
    states holding one open, made again from the raw rows as drop_details leaves them."""
    matched = set(groups)

    def private(interval: dict) -> dict:
        if (interval["app"], interval["site"], interval["title"]) in matched:
            return dict(interval, app=PRIVATE_APP, site="", title="")
        return interval

    saved = sql.states_of(client, user_id, sorted(hits))
    sessions = privacy.focus_session_bounds(client, user_id, sorted(hits))
    guard = DeletionGuard.load(client, [user_id])
    cut_states: dict[str, tuple[int, str]] = {}
    for device, device_hits in sorted(hits.items()):
        open_session = DeviceState.from_dict(json.loads(saved[device])).focus_session if device in saved else None
        spans = spans_to_remake(
            sessions.get(device, []), device_hits, open_session.start if open_session is not None else None
        )
        for span in spans:
            one = {device: span}
            rows = {d: [private(i) for i in found] for d, found in sql.intervals_in(client, user_id, one).items()}
            sql.delete_sessions_in(client, user_id, one)
            # Only the last span can run on for ever, and only then does it hold the state's open session.
            state = {device: saved[device]} if span[1] == FOREVER_MS and device in saved else {}
            made = remake(one, rows, state, rules)
            store_sessions(client, guard, made)
            cut_states.update(made.states)
    sql.replace_device_states(client, user_id, cut_states)
