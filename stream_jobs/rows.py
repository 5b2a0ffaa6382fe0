"""From stamped intervals on the topic to warehouse rows: decode, trim the URL, lay out for insert.

Pure: no broker, no warehouse. Records that cannot be read come back with a reason, so the worker can
dead-letter them without stopping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from schemas.codec import CodecError, decode_stamped_intervals, encode_interval
from schemas.contract import DEFAULT_WINDOW, FUTURE_SKEW_MS, Window, checked_interval, utc_from_ms
from schemas.privacy_rules import AccountPrivacy, private_fields
from stream_jobs.sessionize import AppSession, FocusSession
from stream_jobs.trim import site_of
from warehouse.writes import INTERVAL_COLUMNS


class Rejected(NamedTuple):
    """A record, or one interval of one (re-encoded), set aside for the dead-letter topic with the reason; for an
    interval whose identity could be read, the (user_id, device_id, device_seq, event_id, reason) refusal."""

    value: bytes
    reason: str
    refusal: tuple[str, str, int, str, str] | None = None


def decode_intervals(
    values: Iterable[bytes], window: Window = DEFAULT_WINDOW, now_ms: int | None = None
) -> tuple[list[dict], list[Rejected]]:
    """Flat interval dicts (identity, interval fields in normal form, trimmed `site`) and what was refused:
    whole records that cannot be read or claim to be received in the future (past `now_ms`, when given), or
    single intervals that break the contract (`schemas/contract.py`)."""
    intervals: list[dict] = []
    rejected: list[Rejected] = []
    for value in values:
        try:
            batch = decode_stamped_intervals(value)
        except CodecError as exc:
            rejected.append(Rejected(value, f"undecodable stamped intervals: {exc}"))
            continue
        user_id, device_id, received_at = batch["user_id"], batch["device_id"], batch["received_at"]
        if now_ms is not None and received_at > now_ms + FUTURE_SKEW_MS:
            rejected.append(Rejected(value, "stamped intervals received in the future"))
            continue
        for interval in batch["intervals"]:
            # The contract again: the topic may hold records that did not come through the gateway.
            normal, problem = checked_interval(interval, received_at, window)
            if normal is None:
                seq = interval["device_seq"]
                # Dead-letter reasons travel in the clear (a record header): they name no device or user.
                reason = f"invalid interval (device_seq {seq}): {problem}"
                refusal = (user_id, device_id, seq, str(interval["event_id"]), problem or "") if seq >= 0 else None
                rejected.append(Rejected(encode_interval(interval), reason, refusal))
                continue
            interval = normal
            interval["user_id"] = user_id
            interval["device_id"] = device_id
            interval["received_at"] = received_at
            # Clients are not trusted: whatever the collector removed, only the site is kept from here on. The
            # title is as captured: the account's choices are applied before anything is stored (`private_interval`).
            interval["site"] = site_of(interval.pop("url", None)) or ""
            interval["title"] = interval.get("title") or ""
            intervals.append(interval)
    return intervals, rejected


def interval_columns(intervals: Sequence[dict]) -> list[list[object]]:
    """Column-oriented rows in INTERVAL_COLUMNS order."""
    as_time = {"start", "end", "received_at"}
    return [
        [utc_from_ms(i[name]) for i in intervals] if name in as_time else [i[name] for i in intervals]
        for name in INTERVAL_COLUMNS
    ]


def source_rows(intervals: Sequence[dict], kinds: Mapping[str, str]) -> list[tuple]:
    """Rows in SOURCE_INTERVAL_COLUMNS order of intervals of another source kind (`kinds`: device -> kind)."""
    return [
        (
            i["user_id"],
            i["device_id"],
            kinds[i["device_id"]],
            i["event_id"],
            i["device_seq"],
            utc_from_ms(i["start"]),
            utc_from_ms(i["end"]),
            i["app"],
            i["title"],
            i["site"],
            utc_from_ms(i["received_at"]),
        )
        for i in intervals
    ]


def session_rows(sessions: Iterable[AppSession | FocusSession], columns: Sequence[str]) -> list[tuple]:
    """Row-oriented session versions in `columns` order (APP_SESSION_COLUMNS or FOCUS_SESSION_COLUMNS)."""
    rows = []
    for s in sessions:
        values = {**vars(s), "start": utc_from_ms(s.start), "end": utc_from_ms(s.end)}
        rows.append(tuple(values[c] for c in columns))
    return rows


def private_interval(interval: dict, account: AccountPrivacy) -> dict:
    """The interval as its account's privacy choices keep it (schemas/privacy_rules.py): rules applied, the title
    scrubbed (or not kept) as its title mode says. Applied by the worker to everything it stores, whatever the
    collector already did: clients are not trusted."""
    return private_intervals([interval], {interval["user_id"]: account})[0]


def private_intervals(intervals: Iterable[dict], accounts: Mapping[str, AccountPrivacy]) -> list[dict]:
    """`private_interval` of each interval under its user's account, each distinct (user, app, title, site) worked
    out once: `private_fields` is pure, a batch's windows repeat (one person returns to the same few documents), and
    scrubbing a title is most of what keeping the choices costs (about 14 µs an interval on realistic data)."""
    done: dict[tuple[str, str, str | None, str | None], tuple[str | None, str | None, str | None]] = {}
    out = []
    for interval in intervals:
        key = (interval["user_id"], interval["app"], interval.get("title"), interval.get("site") or None)
        fields = done.get(key)
        if fields is None:
            fields = done[key] = private_fields(key[1], key[2], key[3], accounts[key[0]])
        app, title, site = fields
        out.append({**interval, "app": app or "", "title": title or "", "site": site or ""})
    return out
