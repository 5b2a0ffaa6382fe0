"""The query API: every question the product asks the warehouse, as a named function for one user.

Each function takes the client, the user it serves and its parameters, binds them through the client
(never string formatting) and returns a DataFrame with the columns and dtypes its docstring names, also
when there is nothing to show. This module is the only place the dashboard's SQL lives; every per-user
query is scoped to exactly one user. Nothing here describes more than one person: figures across people are
released, noisy, by warehouse/insights.py and never computed exactly for anyone to see.

Conventions:
- A period is `[start, end)` given as timezone-aware datetimes.
- Time is exact to the millisecond: whole UTC hours inside the period are read from the `usage_by_hour`
  rollup (exact, as it is rebuilt from raw: warehouse/rollups.py; a year of it is ~100x fewer rows than the
  intervals), the partial hours at either edge from the raw intervals, clipped to the period. Idle
  intervals count as idle time, never as active.
- Keystrokes and clicks count in the period (hour, day) in which their interval started, as in the rollups.
- Functions that group by local day or hour take `tz`, an IANA zone name, which ClickHouse applies
  (`toDate(ts, {tz:String})`). In zones whose offset is not a whole number of hours (Asia/Kolkata), an
  hour of the rollup is placed in the local hour or day where it starts, so up to 45 minutes of it can land
  in the neighbouring bucket.
- Seconds are float64, counts int64, timestamps datetime64[ms, UTC], local days datetime64[ns] (naive).
- The per-user functions take `devices`, a list of the user's device ids to limit the answer to (the
  dashboard's device filter); None or an empty list means all of them.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, Final

import pandas as pd
from clickhouse_connect.driver.client import Client

from schemas.contract import MAX_INTERVAL_MS, SESSION_SPAN_MS

_TS: Final = "datetime64[ms, UTC]"
_HOUR = timedelta(hours=1)
# No interval is longer than the gateway accepts, so an interval overlapping [a, b) starts after
# a - MAX_INTERVAL_MS; saying so lets the primary key (user_id, start) bound the scan from both sides.
_MAX_INTERVAL = timedelta(milliseconds=MAX_INTERVAL_MS)
# Sessions overlapping a moment started less than this before it (schemas/contract.py SESSION_SPAN_MS).
_SESSION_SPAN = timedelta(milliseconds=SESSION_SPAN_MS)
UNCATEGORIZED = "Uncategorized"
# The dashboard's device filter, bound as an array; an empty array keeps every device.
_DEVICE_FILTER = "(empty({devices:Array(String)}) OR has({devices:Array(String)}, device_id))"


# ---------------------------------------------------------------------------------------------------------
# Parameters


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("query periods must be timezone-aware datetimes")
    return moment.astimezone(UTC)


def _period(start: datetime, end: datetime) -> dict[str, datetime]:
    start, end = _utc(start), _utc(end)
    if end <= start:
        raise ValueError(f"the period ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    return {"from": start, "to": end}


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


def _zone(tz: str) -> zoneinfo.ZoneInfo:
    """The IANA zone named `tz`; anything else is refused before it reaches the warehouse."""
    if not isinstance(tz, str) or tz not in _known_zones():
        raise ValueError(f"unknown time zone {tz!r}: expected an IANA name such as 'Europe/Prague'")
    return zoneinfo.ZoneInfo(tz)


def _floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _floor_day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _ceil_day(moment: datetime) -> datetime:
    floor = _floor_day(moment)
    return floor if floor == moment else floor + timedelta(days=1)


def _ceil_hour(moment: datetime) -> datetime:
    floor = _floor_hour(moment)
    return floor if floor == moment else floor + _HOUR


def _devices(devices: Sequence[str] | None) -> list[str]:
    """The device filter as a bound array: empty means every device of the user."""
    if devices is None:
        return []
    if isinstance(devices, str) or not all(isinstance(d, str) for d in devices):
        raise ValueError(f"devices must be a sequence of device ids, got {devices!r}")
    return list(devices)


def _usage_parameters(start: datetime, end: datetime, devices: Sequence[str] | None = None) -> dict[str, object]:
    """Bounds of the three pieces of a period: raw [from, c), rollup [c, f), raw [max(f, c), to).

    c and f are the first and last whole UTC hour boundaries inside the period. Every raw piece lies within
    one UTC hour, so grouping a piece by where it starts is exact, as it is for a rollup hour. For a period
    inside one hour, c >= to: the first raw piece is the whole period and the other two are empty.
    """
    period = _period(start, end)
    c, f = _ceil_hour(period["from"]), _floor_hour(period["to"])
    return {
        **period,
        "devices": _devices(devices),
        "h_from": c,
        "h_to": f,
        "edge1_to": min(c, period["to"]),
        "edge2_from": max(f, c),
        "edge1_scan": period["from"] - _MAX_INTERVAL,
        "edge2_scan": max(f, c) - _MAX_INTERVAL,
    }


# ---------------------------------------------------------------------------------------------------------
# Usage: active/idle milliseconds, keys and clicks of one user in a period, as pieces that each lie in one
# UTC hour: `ts` (where the piece starts), device_id, app, site, active_ms, idle_ms, keystrokes, clicks.


def _raw_piece(a: str, b: str, scan_from: str, extra: str = "") -> str:
    # A zero-length interval starting in [a, b) still carries keys and clicks, hence the OR.
    return f"""
    SELECT greatest(start, {{{a}:DateTime64(3, 'UTC')}}) AS ts, device_id, app, site{extra},
           toUInt64(greatest(0, dateDiff('millisecond', greatest(start, {{{a}:DateTime64(3, 'UTC')}}),
                                         least(`end`, {{{b}:DateTime64(3, 'UTC')}})))) AS piece_ms,
           if(idle, toUInt64(0), piece_ms) AS active_ms,
           if(idle, piece_ms, toUInt64(0)) AS idle_ms,
           toUInt64(if(start >= {{{a}:DateTime64(3, 'UTC')}}, keystrokes, 0)) AS keystrokes,
           toUInt64(if(start >= {{{a}:DateTime64(3, 'UTC')}}, clicks, 0)) AS clicks
    FROM intervals FINAL
    WHERE user_id = {{user:String}} AND {_DEVICE_FILTER}
      AND {{{a}:DateTime64(3, 'UTC')}} < {{{b}:DateTime64(3, 'UTC')}}
      AND start >= {{{scan_from}:DateTime64(3, 'UTC')}}
      AND start < {{{b}:DateTime64(3, 'UTC')}}
      AND (`end` > {{{a}:DateTime64(3, 'UTC')}} OR start >= {{{a}:DateTime64(3, 'UTC')}})"""


# Each piece with the bounds of its range (the names of two bound parameters): a piece whose range is empty is left out
# of the SQL (`_expanded`), since even one that reads nothing costs the engine several milliseconds to plan and run,
# which is most of what a day's question takes.
_USAGE_PIECES = (
    (
        ("h_from", "h_to"),
        f"""
    SELECT toDateTime64(hour, 3, 'UTC') AS ts, device_id, app, site, active_ms, idle_ms, keystrokes, clicks
    FROM usage_by_hour FINAL
    WHERE user_id = {{user:String}} AND {_DEVICE_FILTER}
      AND hour >= {{h_from:DateTime('UTC')}}
      AND hour < {{h_to:DateTime('UTC')}}""",
    ),
    (
        ("from", "edge1_to"),
        f"""
    SELECT ts, device_id, app, site, active_ms, idle_ms, keystrokes, clicks
    FROM ({_raw_piece("from", "edge1_to", "edge1_scan")})""",
    ),
    (
        ("edge2_from", "to"),
        f"""
    SELECT ts, device_id, app, site, active_ms, idle_ms, keystrokes, clicks
    FROM ({_raw_piece("edge2_from", "to", "edge2_scan")})""",
    ),
)
_USAGE = "__USAGE__"

# Usage by title: the same three pieces by UTC day, whole days from the daily rollup by title (migration 0015), the
# part-days at the edges from the raw intervals: device_id, app, site, title, active_ms, idle_ms, keystrokes, clicks.
_TITLE_USAGE_PIECES = (
    (
        ("d_from", "d_to"),
        f"""
    SELECT device_id, app, site, title, active_ms, idle_ms, keystrokes, clicks
    FROM usage_by_title_day FINAL
    WHERE user_id = {{user:String}} AND {_DEVICE_FILTER}
      AND day >= {{d_from:Date}}
      AND day < {{d_to:Date}}""",
    ),
    (
        ("from", "dedge1_to"),
        f"""
    SELECT device_id, app, site, title, active_ms, idle_ms, keystrokes, clicks
    FROM ({_raw_piece("from", "dedge1_to", "dedge1_scan", ", title")})""",
    ),
    (
        ("dedge2_from", "to"),
        f"""
    SELECT device_id, app, site, title, active_ms, idle_ms, keystrokes, clicks
    FROM ({_raw_piece("dedge2_from", "to", "dedge2_scan", ", title")})""",
    ),
)
_TITLE_USAGE = "__TITLE_USAGE__"
_PIECES = {_USAGE: _USAGE_PIECES, _TITLE_USAGE: _TITLE_USAGE_PIECES}


def _before(lo: Any, hi: Any) -> bool:
    return bool(lo < hi)


def _expanded(sql: str, parameters: dict[str, object]) -> str:
    """`sql` with each usage placeholder replaced by the union of those of its pieces whose range is not empty for
    these parameters (the rollup piece alone, which then reads nothing, when all are)."""
    for marker, pieces in _PIECES.items():
        if marker in sql:
            kept = [text for (lo, hi), text in pieces if _before(parameters[lo], parameters[hi])] or [pieces[0][1]]
            sql = sql.replace(marker, "(" + "\n    UNION ALL".join(kept) + "\n)")
    return sql


def _title_usage_parameters(start: datetime, end: datetime, devices: Sequence[str] | None = None) -> dict[str, object]:
    """Bounds of the pieces of `_TITLE_USAGE`: raw [from, c), rollup days [c, f), raw [max(f, c), to), with c and f
    the first and last UTC midnights inside the period (as `_usage_parameters` does with hours)."""
    period = _period(start, end)
    c, f = _ceil_day(period["from"]), _floor_day(period["to"])
    return {
        **period,
        "devices": _devices(devices),
        "d_from": c.date(),
        "d_to": f.date(),
        "dedge1_to": min(c, period["to"]),
        "dedge2_from": max(f, c),
        "dedge1_scan": period["from"] - _MAX_INTERVAL,
        "dedge2_scan": max(f, c) - _MAX_INTERVAL,
    }


# Raw intervals of the period, clipped to it, for the questions no rollup answers (an export of the rows).
_RAW_IN_PERIOD = f"""
    user_id = {{user:String}} AND {_DEVICE_FILTER}
    AND start >= {{scan_from:DateTime64(3, 'UTC')}}
    AND start < {{to:DateTime64(3, 'UTC')}}
    AND `end` > {{from:DateTime64(3, 'UTC')}}"""


def _raw_parameters(start: datetime, end: datetime, devices: Sequence[str] | None = None) -> dict[str, object]:
    period = _period(start, end)
    return {**period, "devices": _devices(devices), "scan_from": period["from"] - _MAX_INTERVAL}


# ---------------------------------------------------------------------------------------------------------
# Shaping results


def typed_frame(df: pd.DataFrame, schema: dict[str, str]) -> pd.DataFrame:
    """`df` with exactly the columns of `schema` in its dtypes (an empty frame of them when there are no rows)."""
    if df.empty:
        return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in schema.items()})
    df = df[list(schema)].copy()
    for name, dtype in schema.items():
        if dtype == _TS:
            df[name] = pd.to_datetime(df[name], utc=True).astype(_TS)
        elif dtype == "str":
            df[name] = df[name].astype(str)
        else:
            df[name] = df[name].astype(pd.api.types.pandas_dtype(dtype))
    return df.reset_index(drop=True)


def _query(client: Client, sql: str, parameters: dict[str, object], schema: dict[str, str]) -> pd.DataFrame:
    return typed_frame(client.query_df(_expanded(sql, parameters), parameters=parameters), schema)


# ---------------------------------------------------------------------------------------------------------
# Totals and time per app, site, device


_TOTALS = f"""
SELECT sum(active_ms) / 1000 AS active_seconds,
       sum(idle_ms) / 1000 AS idle_seconds,
       sum(keystrokes) AS keystrokes,
       sum(clicks) AS clicks,
       (SELECT count() FROM app_sessions FINAL
        WHERE user_id = {{user:String}} AND {_DEVICE_FILTER} AND start >= {{from:DateTime64(3, 'UTC')}}
          AND start < {{to:DateTime64(3, 'UTC')}}) AS app_sessions,
       (SELECT count() FROM focus_sessions FINAL
        WHERE user_id = {{user:String}} AND {_DEVICE_FILTER} AND start >= {{from:DateTime64(3, 'UTC')}}
          AND start < {{to:DateTime64(3, 'UTC')}}) AS focus_sessions
FROM {_USAGE}
"""
_TOTALS_SCHEMA = {
    "active_seconds": "float64",
    "idle_seconds": "float64",
    "keystrokes": "int64",
    "clicks": "int64",
    "app_sessions": "int64",
    "focus_sessions": "int64",
}


def totals(
    client: Client, user_id: str, start: datetime, end: datetime, devices: Sequence[str] | None = None
) -> pd.DataFrame:
    """How much the user did in [start, end): one row of active_seconds, idle_seconds, keystrokes, clicks,
    app_sessions and focus_sessions (sessions that started in the period, open ones included)."""
    parameters = {"user": user_id, **_usage_parameters(start, end, devices)}
    df = client.query_df(_expanded(_TOTALS, parameters), parameters=parameters)
    return typed_frame(df.fillna(0), _TOTALS_SCHEMA)


_TIME_PER_APP = f"""
SELECT app, sum(active_ms) / 1000 AS seconds
FROM {_USAGE}
GROUP BY app
HAVING sum(active_ms) > 0
ORDER BY seconds DESC, app
"""


def time_per_app(
    client: Client, user_id: str, start: datetime, end: datetime, devices: Sequence[str] | None = None
) -> pd.DataFrame:
    """Seconds of active (non-idle) time per application for one user in [start, end).

    Columns: app (str), seconds (float64), most time first."""
    parameters = {"user": user_id, **_usage_parameters(start, end, devices)}
    return _query(client, _TIME_PER_APP, parameters, {"app": "str", "seconds": "float64"})


_TIME_PER_SITE = f"""
SELECT site, sum(active_ms) / 1000 AS seconds
FROM {_USAGE}
WHERE site != ''
GROUP BY site
HAVING sum(active_ms) > 0
ORDER BY seconds DESC, site
"""


def time_per_site(
    client: Client, user_id: str, start: datetime, end: datetime, devices: Sequence[str] | None = None
) -> pd.DataFrame:
    """Seconds of active time per website (trimmed site) in [start, end); time with no site is left out.

    Columns: site (str), seconds (float64), most time first."""
    parameters = {"user": user_id, **_usage_parameters(start, end, devices)}
    return _query(client, _TIME_PER_SITE, parameters, {"site": "str", "seconds": "float64"})


_TIME_PER_DEVICE = f"""
SELECT usage.device_id AS device_id,
       if(known.name = '', usage.device_id, known.name) AS name,
       known.os AS os,
       usage.seconds AS seconds, usage.keystrokes AS keystrokes, usage.clicks AS clicks
FROM
(
    SELECT device_id, sum(active_ms) / 1000 AS seconds, sum(keystrokes) AS keystrokes, sum(clicks) AS clicks
    FROM {_USAGE}
    GROUP BY device_id
    HAVING sum(active_ms) > 0
) AS usage
LEFT JOIN
(
    SELECT device_id, name, toString(os) AS os FROM devices FINAL WHERE user_id = {{user:String}}
) AS known ON usage.device_id = known.device_id
ORDER BY seconds DESC, device_id
"""


def time_per_device(
    client: Client, user_id: str, start: datetime, end: datetime, devices: Sequence[str] | None = None
) -> pd.DataFrame:
    """Active time, keys and clicks per device in [start, end), with the device's name and OS as enrolled
    (a device the warehouse has no name for is named by its id; revoked devices keep their history).

    Columns: device_id, name, os (str), seconds (float64), keystrokes, clicks (int64), most time first."""
    parameters = {"user": user_id, **_usage_parameters(start, end, devices)}
    schema = {
        "device_id": "str",
        "name": "str",
        "os": "str",
        "seconds": "float64",
        "keystrokes": "int64",
        "clicks": "int64",
    }
    return _query(client, _TIME_PER_DEVICE, parameters, schema)


# ---------------------------------------------------------------------------------------------------------
# Categories, applied at query time: the user's rules are bound as arrays in position order and the first
# rule whose pattern matches its field names the category, so editing a rule relabels all of history. The
# patterns travel as bound data and are never part of the SQL text.

_RULES = """
SELECT toString(field) AS field, pattern, category
FROM category_rules FINAL
WHERE user_id = {user:String} AND NOT deleted
ORDER BY position, rule_id
"""

_FIRST_MATCH = (
    "arrayFirstIndex((f, p) -> match(multiIf(f = 'app', app, f = 'title', title, site), p), "
    "{rule_fields:Array(String)}, {rule_patterns:Array(String)})"
)
# depth 0 keeps the whole path; depth n keeps its first n levels ("Work/Programming" -> "Work").
_CATEGORY = """
    if(rule = 0, {uncategorized:String},
       if({depth:UInt8} = 0, {rule_categories:Array(String)}[rule],
          arrayStringConcat(
              arraySlice(splitByChar('/', {rule_categories:Array(String)}[rule]), 1, {depth:UInt8}), '/')))"""

# Rules on app and site need the hourly rollup; a rule on titles the daily rollup by title. Either way the patterns
# run once per distinct (app, site[, title]), not once per interval.
_CATEGORY_OF_USAGE = f"""
SELECT {_CATEGORY} AS category, active_ms, keystrokes, clicks
FROM
(
    SELECT app, site, '' AS title, sum(active_ms) AS active_ms, sum(keystrokes) AS keystrokes,
           sum(clicks) AS clicks, {_FIRST_MATCH} AS rule
    FROM {_USAGE}
    GROUP BY app, site
)"""
_CATEGORY_OF_INTERVALS = f"""
SELECT {_CATEGORY} AS category, active_ms, keystrokes, clicks
FROM
(
    SELECT app, site, title, sum(active_ms) AS active_ms, sum(keystrokes) AS keystrokes, sum(clicks) AS clicks,
           {_FIRST_MATCH} AS rule
    FROM {_TITLE_USAGE}
    GROUP BY app, site, title
)"""


def _rule_parameters(client: Client, user_id: str, depth: int) -> tuple[dict[str, object], bool]:
    """The user's live rules as bound arrays, and whether any of them looks at titles."""
    if not 0 <= depth <= 5:
        raise ValueError(f"depth must be between 0 (whole path) and 5, got {depth}")
    rows = client.query(_RULES, parameters={"user": user_id}).result_rows
    fields = [r[0] for r in rows]
    return {
        "rule_fields": fields,
        "rule_patterns": [r[1] for r in rows],
        "rule_categories": [r[2] for r in rows],
        "uncategorized": UNCATEGORIZED,
        "depth": depth,
    }, "title" in fields


def time_per_category(
    client: Client,
    user_id: str,
    start: datetime,
    end: datetime,
    depth: int | None = None,
    devices: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Seconds of active time per category in [start, end), by the user's rules as they are now; time no
    rule matches is "Uncategorized". `depth` cuts paths to their first levels (1: "Work/Programming" is
    counted as "Work"); None keeps whole paths.

    Columns: category (str), seconds (float64), most time first."""
    rules, needs_titles = _rule_parameters(client, user_id, depth or 0)
    if needs_titles:
        parameters = {"user": user_id, **_title_usage_parameters(start, end, devices), **rules}
        source = _CATEGORY_OF_INTERVALS
    else:
        parameters = {"user": user_id, **_usage_parameters(start, end, devices), **rules}
        source = _CATEGORY_OF_USAGE
    sql = f"""
    SELECT category, sum(active_ms) / 1000 AS seconds FROM ({source})
    GROUP BY category HAVING sum(active_ms) > 0 ORDER BY seconds DESC, category"""
    return _query(client, sql, parameters, {"category": "str", "seconds": "float64"})


_RULE_MATCHES = {
    "app": f"""
        SELECT app AS value, sum(active_ms) / 1000 AS seconds FROM {_USAGE}
        WHERE match(app, {{pattern:String}}) GROUP BY value HAVING sum(active_ms) > 0
        ORDER BY seconds DESC, value LIMIT {{limit:UInt32}}""",
    "site": f"""
        SELECT site AS value, sum(active_ms) / 1000 AS seconds FROM {_USAGE}
        WHERE site != '' AND match(site, {{pattern:String}}) GROUP BY value HAVING sum(active_ms) > 0
        ORDER BY seconds DESC, value LIMIT {{limit:UInt32}}""",
    "title": f"""
        SELECT title AS value, sum(active_ms) / 1000 AS seconds FROM {_TITLE_USAGE}
        WHERE match(title, {{pattern:String}})
        GROUP BY value HAVING sum(active_ms) > 0 ORDER BY seconds DESC, value LIMIT {{limit:UInt32}}""",
}


def rule_matches(
    client: Client,
    user_id: str,
    start: datetime,
    end: datetime,
    field: str = "app",
    pattern: str = "^",
    limit: int = 50,
    devices: Sequence[str] | None = None,
) -> pd.DataFrame:
    """What a rule's pattern would match on `field` in [start, end): the distinct values and their active
    time, for the dashboard's live preview (regardless of earlier rules). The pattern must already be
    validated (`warehouse.categories.preview_rule` does that first).

    Columns: value (str), seconds (float64), most time first, at most `limit` rows."""
    if field not in _RULE_MATCHES:
        raise ValueError(f"field must be one of app, title, site, got {field!r}")
    period = (
        _title_usage_parameters(start, end, devices) if field == "title" else _usage_parameters(start, end, devices)
    )
    parameters = {"user": user_id, "pattern": pattern, "limit": limit, **period}
    return _query(client, _RULE_MATCHES[field], parameters, {"value": "str", "seconds": "float64"})


# ---------------------------------------------------------------------------------------------------------
# Sessions


_TIMELINE = f"""
SELECT s.device_id AS device_id, if(d.name = '', s.device_id, d.name) AS device_name, s.session_id AS session_id,
       s.app AS app, s.site AS site, s.start AS start, s.`end` AS `end`, s.active_ms / 1000 AS active_seconds,
       s.keystrokes AS keystrokes, s.clicks AS clicks, s.closed AS closed
FROM
(
    SELECT device_id, session_id, app, site, start, `end`, active_ms, keystrokes, clicks, closed
    FROM app_sessions FINAL
    WHERE user_id = {{user:String}} AND {_DEVICE_FILTER}
      AND start >= {{session_scan:DateTime64(3, 'UTC')}}
      AND start < {{day_end:DateTime64(3, 'UTC')}} AND `end` > {{day_start:DateTime64(3, 'UTC')}}
) AS s
LEFT JOIN
(
    SELECT device_id, name FROM devices FINAL WHERE user_id = {{user:String}}
) AS d ON s.device_id = d.device_id
ORDER BY device_id, start, session_id
"""
_TIMELINE_SCHEMA = {
    "device_id": "str",
    "device_name": "str",
    "session_id": "str",
    "app": "str",
    "site": "str",
    "start": _TS,
    "end": _TS,
    "active_seconds": "float64",
    "keystrokes": "int64",
    "clicks": "int64",
    "closed": "bool",
}


def _local_day(day: date, zone: zoneinfo.ZoneInfo) -> tuple[datetime, datetime]:
    """[midnight, next midnight) of a local calendar day, in UTC (23 or 25 hours on DST changes)."""
    first = datetime.combine(day, time(), tzinfo=zone)
    return first.astimezone(UTC), datetime.combine(day + timedelta(days=1), time(), tzinfo=zone).astimezone(UTC)


def app_timeline(
    client: Client,
    user_id: str,
    start: datetime,
    end: datetime,
    day: date | None = None,
    tz: str = "UTC",
    devices: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The app sessions of one local day, per device, as the timeline shows them: every session that
    overlaps the day in `tz` and the period, cut at their edges (`clip_sessions`: what a session did outside
    them is not shown). `day=None` is the period's last day.

    Columns: device_id, device_name, session_id, app, site (str), start, end (datetime64[ms, UTC]),
    active_seconds (float64), keystrokes, clicks (int64), closed (bool); by device, then start."""
    zone = _zone(tz)
    period = _period(start, end)
    if day is None:
        day = (period["to"] - timedelta(microseconds=1)).astimezone(zone).date()
    day_start, day_end = _local_day(day, zone)
    day_start, day_end = max(day_start, period["from"]), min(day_end, period["to"])
    if day_end <= day_start:  # a day outside the period shows nothing
        return typed_frame(pd.DataFrame(), _TIMELINE_SCHEMA)
    parameters = {
        "user": user_id,
        "day_start": day_start,
        "day_end": day_end,
        "devices": _devices(devices),
        "session_scan": day_start - _SESSION_SPAN,
    }
    sessions = _query(client, _TIMELINE, parameters, _TIMELINE_SCHEMA)
    return clip_sessions(client, user_id, sessions, day_start, day_end, same_app=True)


_FOCUS = f"""
SELECT device_id, session_id, start, `end`, active_ms / 1000 AS active_seconds, context_switches, app_sessions,
       keystrokes, clicks, closed,
       -- The latest end among the sessions before this one, on any device: a break is time with no focus anywhere.
       max(`end`) OVER (ORDER BY start, session_id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before_end,
       row_number() OVER (ORDER BY start, session_id) AS n
FROM focus_sessions FINAL
WHERE user_id = {{user:String}} AND {_DEVICE_FILTER}
  AND start >= {{session_scan:DateTime64(3, 'UTC')}}
  AND start < {{to:DateTime64(3, 'UTC')}} AND `end` > {{from:DateTime64(3, 'UTC')}}
ORDER BY start, session_id
"""
_FOCUS_SCHEMA = {
    "device_id": "str",
    "session_id": "str",
    "start": _TS,
    "end": _TS,
    "active_seconds": "float64",
    "context_switches": "int64",
    "app_sessions": "int64",
    "keystrokes": "int64",
    "clicks": "int64",
    "closed": "bool",
    "break_before_seconds": "float64",
}


# What the raw intervals (non-idle) and the app sessions of the sessions a view cuts at its edges did inside the
# view, summed by the engine for each of those sessions: one query for all of them, one scan of each table over the
# time ranges of those sessions only (RANGES: one condition per session, so the primary key reads those ranges and
# nothing between them). A row belongs to each session whose condition it meets (`MEMBER_OF`: the indexes of the
# sessions, in order), so sessions that share an instant are summed as each alone would be.
_CLIP = """
SELECT 0 AS kind, n, count() AS found,
       sum(greatest(0, least(e, {hi:Int64}) - greatest(s, {lo:Int64}))) AS active_ms,
       sum(if(s >= {lo:Int64} AND s < {hi:Int64}, keystrokes, 0)) AS keystrokes,
       sum(if(s >= {lo:Int64} AND s < {hi:Int64}, clicks, 0)) AS clicks
FROM (
    SELECT arrayJoin(RAW_MEMBER_OF) AS n, toUnixTimestamp64Milli(start) AS s, toUnixTimestamp64Milli(`end`) AS e,
           keystrokes, clicks
    FROM intervals FINAL
    WHERE user_id = {user:String} AND NOT idle AND (RANGES)
)
GROUP BY n
APPS_PART"""
_CLIP_APPS = """
UNION ALL
SELECT 1 AS kind, n, count() AS found, 0 AS active_ms, 0 AS keystrokes, 0 AS clicks
FROM (
    SELECT arrayJoin(APP_MEMBER_OF) AS n
    FROM app_sessions FINAL
    WHERE user_id = {user:String} AND (RANGES)
)
GROUP BY n"""


def _clip_sql(
    crossing: pd.DataFrame, shown: list[tuple[pd.Timestamp, pd.Timestamp]], same_app: bool
) -> tuple[str, dict[str, object]]:
    """`_CLIP` for the `crossing` sessions (in order: the n of each is its position), each shown from `shown[n]`'s
    start to its end, and its parameters."""
    ranges: list[str] = []
    raw_member: list[str] = []
    app_member: list[str] = []
    parameters: dict[str, object] = {}
    for n, (device, first, last) in enumerate(
        zip(crossing["device_id"], crossing["start"], crossing["end"], strict=True)
    ):
        within = (
            f"device_id = {{d{n}:String}} AND start >= {{f{n}:DateTime64(3, 'UTC')}} "
            f"AND start <= {{l{n}:DateTime64(3, 'UTC')}}"
        )
        ranges.append(f"({within})")
        parameters |= {f"d{n}": device, f"f{n}": first.to_pydatetime(), f"l{n}": last.to_pydatetime()}
        if same_app:
            parameters |= {f"a{n}": crossing["app"].iloc[n], f"s{n}": crossing["site"].iloc[n]}
            raw_member.append(f"if({within} AND app = {{a{n}:String}} AND site = {{s{n}:String}}, {n}, -1)")
        else:
            raw_member.append(f"if({within}, {n}, -1)")
            # An app session inside what is shown of the focus session: begun in it, and overlapping the view.
            parameters |= {f"cs{n}": shown[n][0].to_pydatetime(), f"ce{n}": shown[n][1].to_pydatetime()}
            app_member.append(
                f"if({within} AND start < {{ce{n}:DateTime64(3, 'UTC')}} AND `end` > {{cs{n}:DateTime64(3, 'UTC')}}, "
                f"{n}, -1)"
            )
    sql = _CLIP.replace("APPS_PART", "" if same_app else _CLIP_APPS.replace("APP_MEMBER_OF", _members(app_member)))
    return sql.replace("RAW_MEMBER_OF", _members(raw_member)).replace("RANGES", " OR ".join(ranges)), parameters


def _members(conditions: list[str]) -> str:
    return f"arrayFilter(x -> x >= 0, [{', '.join(conditions)}])"


def clip_sessions(
    client: Client, user_id: str, sessions: pd.DataFrame, lo: datetime, hi: datetime, *, same_app: bool
) -> pd.DataFrame:
    """Sessions (app sessions with `same_app`, else focus sessions) cut at [lo, hi): a session crossing an edge
    keeps only what its raw intervals did inside (active time, and the keys and clicks of the intervals begun
    inside; for a focus session, the app sessions and context switches inside), and its start and end are cut.
    What a view shows of a period is then the period's alone. Where raw intervals have aged out (retention), the
    active time is taken in proportion to the part inside. One query, whatever the number of sessions cut."""
    lo_ts, hi_ts = pd.Timestamp(lo).tz_convert("UTC"), pd.Timestamp(hi).tz_convert("UTC")
    sessions = sessions.copy()
    crossing = sessions[(sessions["start"] < lo_ts) | (sessions["end"] > hi_ts)]
    if crossing.empty:
        return sessions
    # What a view shows of each: from the later of its start and lo to the earlier of its end and hi.
    shown = [(max(a, lo_ts), min(b, hi_ts)) for a, b in zip(crossing["start"], crossing["end"], strict=True)]
    sql, parameters = _clip_sql(crossing, shown, same_app)
    parameters |= {
        "user": user_id,
        "lo": int(lo_ts.value // 1_000_000),
        "hi": int(hi_ts.value // 1_000_000),
    }
    found = {(kind, n): rest for kind, n, *rest in client.query(sql, parameters=parameters).result_rows}
    for n, i in enumerate(crossing.index):
        row = crossing.loc[i]
        clip_start, clip_end = shown[n]
        raw = found.get((0, n))
        if raw is not None:
            _, active_ms, keys, clicks = raw
            sessions.loc[i, ["active_seconds", "keystrokes", "clicks"]] = [active_ms / 1000, keys, clicks]
        else:
            span = (row["end"] - row["start"]).total_seconds()
            inside = (clip_end - clip_start).total_seconds()
            sessions.loc[i, "active_seconds"] = row["active_seconds"] * inside / span if span > 0 else 0.0
        if not same_app:
            inside_apps = int(found[(1, n)][0]) if (1, n) in found else 0
            sessions.loc[i, ["app_sessions", "context_switches"]] = [inside_apps, max(inside_apps - 1, 0)]
        sessions.loc[i, "start"], sessions.loc[i, "end"] = clip_start, clip_end
    return sessions


def focus_sessions(
    client: Client, user_id: str, start: datetime, end: datetime, devices: Sequence[str] | None = None
) -> pd.DataFrame:
    """The focus sessions that overlap [start, end), cut at its edges (`clip_sessions`), in order, each with the
    break before it: seconds from the latest end of an earlier session in the period (any device) to its start,
    0 when they overlap, NaN for the first.

    Columns: device_id, session_id (str), start, end (datetime64[ms, UTC]), active_seconds (float64),
    context_switches, app_sessions, keystrokes, clicks (int64), closed (bool), break_before_seconds (float64)."""
    period = _period(start, end)
    parameters = {
        "user": user_id,
        "devices": _devices(devices),
        **period,
        "session_scan": period["from"] - _SESSION_SPAN,
    }
    df = client.query_df(_FOCUS, parameters=parameters)
    if df.empty:
        return typed_frame(df, _FOCUS_SCHEMA)
    df["break_before_seconds"] = 0.0
    df = clip_sessions(client, user_id, typed_frame(df, {**_FOCUS_SCHEMA, "before_end": _TS, "n": "int64"}),
                       period["from"], period["to"], same_app=False)  # fmt: skip
    # pandas-stubs types clip's bounds as numbers only; pandas clips a datetime column by a Timestamp just as well.
    before = df["before_end"].clip(lower=pd.Timestamp(period["from"]))  # type: ignore[call-overload]
    df["break_before_seconds"] = (df["start"] - before).dt.total_seconds().clip(lower=0).where(df["n"] > 1)
    return typed_frame(df, _FOCUS_SCHEMA)


def focus_breaks(
    client: Client, user_id: str, start: datetime, end: datetime, devices: Sequence[str] | None = None
) -> pd.DataFrame:
    """The breaks between the focus sessions that started in [start, end): each stretch with no focus
    session on any device, from the end of one to the start of the next.

    Columns: start, end (datetime64[ms, UTC]), seconds (float64); in order."""
    sessions = focus_sessions(client, user_id, start, end, devices)
    schema = {"start": _TS, "end": _TS, "seconds": "float64"}
    if sessions.empty:
        return typed_frame(sessions, schema)
    latest_end = sessions["end"].cummax().shift(1)
    gaps = pd.DataFrame({"start": latest_end, "end": sessions["start"]})
    gaps = gaps[gaps["end"] > gaps["start"]]
    gaps["seconds"] = (gaps["end"] - gaps["start"]).dt.total_seconds()
    return typed_frame(gaps, schema)


# ---------------------------------------------------------------------------------------------------------
# Local time: heatmap, daily trend, intensity


_HEATMAP = f"""
SELECT toDayOfWeek(ts, 0, {{tz:String}}) AS weekday, toHour(ts, {{tz:String}}) AS hour,
       sum(active_ms) / 1000 AS active_seconds, sum(keystrokes) AS keystrokes, sum(clicks) AS clicks
FROM {_USAGE}
GROUP BY weekday, hour
"""


def weekday_hour_heatmap(
    client: Client, user_id: str, start: datetime, end: datetime, tz: str = "UTC", devices: Sequence[str] | None = None
) -> pd.DataFrame:
    """Active time, keys and clicks per local day of the week and hour of the day in [start, end): all
    7 x 24 cells, zeros included, weekday 1 = Monday.

    Columns: weekday, hour, keystrokes, clicks (int64), active_seconds (float64)."""
    _zone(tz)
    parameters = {"user": user_id, "tz": tz, **_usage_parameters(start, end, devices)}
    df = client.query_df(_expanded(_HEATMAP, parameters), parameters=parameters)
    cells = pd.MultiIndex.from_product([range(1, 8), range(24)], names=["weekday", "hour"]).to_frame(index=False)
    if not df.empty:
        cells = cells.merge(df.astype({"weekday": "int64", "hour": "int64"}), on=["weekday", "hour"], how="left")
    cells = cells.reindex(columns=["weekday", "hour", "active_seconds", "keystrokes", "clicks"]).fillna(0)
    schema = {
        "weekday": "int64",
        "hour": "int64",
        "active_seconds": "float64",
        "keystrokes": "int64",
        "clicks": "int64",
    }
    return typed_frame(cells, schema)


_DAILY = f"""
SELECT toDate(ts, {{tz:String}}) AS day, sum(active_ms) / 1000 AS active_seconds, sum(idle_ms) / 1000 AS idle_seconds,
       sum(keystrokes) AS keystrokes, sum(clicks) AS clicks
FROM {_USAGE}
GROUP BY day
"""


def daily_trend(
    client: Client, user_id: str, start: datetime, end: datetime, tz: str = "UTC", devices: Sequence[str] | None = None
) -> pd.DataFrame:
    """Active and idle time, keys and clicks per local day in `tz`, for every day [start, end) touches
    (zeros included), in order. The first and last day count only their part inside the period.

    Columns: day (datetime64[ns], local midnight, naive), active_seconds, idle_seconds (float64),
    keystrokes, clicks (int64)."""
    zone = _zone(tz)
    period = _period(start, end)
    parameters = {"user": user_id, "tz": tz, **_usage_parameters(start, end, devices)}
    df = client.query_df(_expanded(_DAILY, parameters), parameters=parameters)
    first = period["from"].astimezone(zone).date()
    last = (period["to"] - timedelta(microseconds=1)).astimezone(zone).date()
    days = pd.DataFrame({"day": pd.date_range(first, last, freq="D")})
    if not df.empty:
        df["day"] = pd.to_datetime(df["day"]).astype("datetime64[ns]")
        days = days.merge(df, on="day", how="left")
    days = days.reindex(columns=["day", "active_seconds", "idle_seconds", "keystrokes", "clicks"]).fillna(0)
    schema = {
        "day": "datetime64[ns]",
        "active_seconds": "float64",
        "idle_seconds": "float64",
        "keystrokes": "int64",
        "clicks": "int64",
    }
    return typed_frame(days, schema)


_INTENSITY = f"""
SELECT toHour(ts, {{tz:String}}) AS hour, sum(active_ms) / 1000 AS active_seconds,
       sum(keystrokes) AS keystrokes, sum(clicks) AS clicks
FROM {_USAGE}
GROUP BY hour
"""


def input_intensity(
    client: Client, user_id: str, start: datetime, end: datetime, tz: str = "UTC", devices: Sequence[str] | None = None
) -> pd.DataFrame:
    """How intensely the user types and clicks at each local hour of the day over [start, end): totals and
    per active minute (0 where there was no active time). All 24 hours, in order.

    Columns: hour, keystrokes, clicks (int64), active_seconds, keys_per_active_minute,
    clicks_per_active_minute (float64)."""
    _zone(tz)
    parameters = {"user": user_id, "tz": tz, **_usage_parameters(start, end, devices)}
    df = client.query_df(_expanded(_INTENSITY, parameters), parameters=parameters)
    hours = pd.DataFrame({"hour": range(24)})
    if not df.empty:
        hours = hours.merge(df.astype({"hour": "int64"}), on="hour", how="left")
    hours = hours.reindex(columns=["hour", "active_seconds", "keystrokes", "clicks"]).fillna(0)
    minutes = hours["active_seconds"].astype("float64") / 60
    safe = minutes.where(minutes > 0)
    hours["keys_per_active_minute"] = (hours["keystrokes"].astype("float64") / safe).fillna(0.0)
    hours["clicks_per_active_minute"] = (hours["clicks"].astype("float64") / safe).fillna(0.0)
    schema = {
        "hour": "int64",
        "active_seconds": "float64",
        "keystrokes": "int64",
        "clicks": "int64",
        "keys_per_active_minute": "float64",
        "clicks_per_active_minute": "float64",
    }
    return typed_frame(hours, schema)


# ---------------------------------------------------------------------------------------------------------
# Titles and comparisons


_TOP_TITLES = f"""
SELECT title, sum(active_ms) / 1000 AS seconds, sum(keystrokes) AS keystrokes, sum(clicks) AS clicks
FROM {_TITLE_USAGE}
WHERE app = {{app:String}}
GROUP BY title
HAVING sum(active_ms) > 0
ORDER BY seconds DESC, title
LIMIT {{limit:UInt32}}
"""


def top_titles(
    client: Client,
    user_id: str,
    start: datetime,
    end: datetime,
    app: str | None = None,
    limit: int = 20,
    devices: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The window titles of one app the user spent most active time on in [start, end); `app=None` takes the
    user's top app of the period.

    Columns: title (str), seconds (float64), keystrokes, clicks (int64); at most `limit` rows."""
    schema = {"title": "str", "seconds": "float64", "keystrokes": "int64", "clicks": "int64"}
    if app is None:
        apps = time_per_app(client, user_id, start, end, devices)
        if apps.empty:
            return typed_frame(apps, schema)
        app = str(apps["app"].iloc[0])
    parameters = {"user": user_id, "app": app, "limit": limit, **_title_usage_parameters(start, end, devices)}
    return _query(client, _TOP_TITLES, parameters, schema)


_COMPARABLE: dict[str, Callable[..., pd.DataFrame]] = {}


def compare_periods(
    client: Client,
    user_id: str,
    start: datetime,
    end: datetime,
    compare_to: tuple[datetime, datetime] | None = None,
    by: str = "app",
    devices: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Active time per app, site, category or device in [start, end) against another period (by default the
    one of the same length just before), with the change. Keys present in either period are listed.

    Columns: key (str: the app, site, category or device id), seconds, previous_seconds, delta_seconds
    (float64), delta_ratio (float64: delta / previous, NaN when the key was absent before); largest
    |delta| first."""
    if by not in _COMPARABLE:
        raise ValueError(f"by must be one of {', '.join(_COMPARABLE)}, got {by!r}")
    period = _period(start, end)
    if compare_to is None:
        length = period["to"] - period["from"]
        compare_to = (period["from"] - length, period["from"])
    fn, column = _COMPARABLE[by], {"app": "app", "site": "site", "category": "category", "device": "device_id"}[by]
    now = fn(client, user_id, start, end, devices=devices)[[column, "seconds"]].rename(columns={column: "key"})
    before = fn(client, user_id, *compare_to, devices=devices)[[column, "seconds"]]
    before = before.rename(columns={column: "key", "seconds": "previous_seconds"})
    df = now.merge(before, on="key", how="outer").fillna({"seconds": 0.0, "previous_seconds": 0.0})
    df["delta_seconds"] = df["seconds"] - df["previous_seconds"]
    df["delta_ratio"] = df["delta_seconds"] / df["previous_seconds"].where(df["previous_seconds"] > 0)
    df = df.assign(_size=df["delta_seconds"].abs()).sort_values(["_size", "key"], ascending=[False, True])
    schema = {
        "key": "str",
        "seconds": "float64",
        "previous_seconds": "float64",
        "delta_seconds": "float64",
        "delta_ratio": "float64",
    }
    return typed_frame(df, schema)


_EXPORT = f"""
SELECT start, `end`, device_id, app, title, site, idle, keystrokes, clicks, toString(event_id) AS event_id
FROM intervals FINAL
WHERE {_RAW_IN_PERIOD} AND start >= {{from:DateTime64(3, 'UTC')}}
ORDER BY start, device_id, event_id
"""


def export_intervals(
    client: Client, user_id: str, start: datetime, end: datetime, devices: Sequence[str] | None = None
) -> pd.DataFrame:
    """Everything stored of the user's activity that started in [start, end), for the user's own export: one
    row per interval as the warehouse holds it (sites, never URLs).

    Columns: start, end (datetime64[ms, UTC]), device_id, app, title, site (str), idle (bool), keystrokes,
    clicks (int64), event_id (str); in order of start."""
    schema = {
        "start": _TS,
        "end": _TS,
        "device_id": "str",
        "app": "str",
        "title": "str",
        "site": "str",
        "idle": "bool",
        "keystrokes": "int64",
        "clicks": "int64",
        "event_id": "str",
    }
    return _query(client, _EXPORT, {"user": user_id, **_raw_parameters(start, end, devices)}, schema)


_APP_ORDER = """
SELECT app, min(start) AS first_used
FROM app_sessions FINAL
WHERE user_id = {user:String}
GROUP BY app
ORDER BY first_used, app
"""


def app_order(client: Client, user_id: str) -> pd.DataFrame:
    """Every app the user has app sessions of, in the order first used (then by name): the order the dashboard
    gives apps their colours in, which an app used for the first time only extends. All devices, all time.

    Columns: app (str), first_used (datetime64[ms, UTC])."""
    return _query(client, _APP_ORDER, {"user": user_id}, {"app": "str", "first_used": _TS})


_COMPARABLE.update(app=time_per_app, site=time_per_site, category=time_per_category, device=time_per_device)


# Every per-user query function, by name; each is callable as fn(client, user_id, start, end) and takes its
# other parameters as keywords with defaults. The benchmark times each of them.
QUERY_FUNCTIONS: dict[str, Callable[..., pd.DataFrame]] = {
    "totals": totals,
    "time_per_app": time_per_app,
    "time_per_site": time_per_site,
    "time_per_category": time_per_category,
    "time_per_device": time_per_device,
    "rule_matches": rule_matches,
    "app_timeline": app_timeline,
    "focus_sessions": focus_sessions,
    "focus_breaks": focus_breaks,
    "weekday_hour_heatmap": weekday_hour_heatmap,
    "daily_trend": daily_trend,
    "input_intensity": input_intensity,
    "top_titles": top_titles,
    "compare_periods": compare_periods,
}


_IMPORT_STREAMS = """
SELECT s.device_id AS device_id, d.name AS name, s.source AS source, s.host AS host, s.live_device AS live_device
FROM (
    SELECT device_id, argMax(source, created_at) AS source, argMax(host, created_at) AS host,
           argMax(live_device, created_at) AS live_device
    FROM import_streams WHERE user_id = {user:String} GROUP BY device_id
) AS s
LEFT JOIN (SELECT device_id, argMax(name, updated_at) AS name FROM devices WHERE user_id = {user:String}
           GROUP BY device_id) AS d USING (device_id)
ORDER BY name, device_id
"""


def import_streams(client: Client, user_id: str) -> pd.DataFrame:
    """The user's imported streams (docs/activitywatch.md): each is stored as a device of its own.

    Columns: device_id, name, source ("window" or another source kind), host, live_device (str; '' for none)."""
    schema = {"device_id": "str", "name": "str", "source": "str", "host": "str", "live_device": "str"}
    return _query(client, _IMPORT_STREAMS, {"user": user_id}, schema)


_TIME_PER_SOURCE = """
SELECT source, app, title,
       sum(toUnixTimestamp64Milli(least(`end`, {end:DateTime64(3, 'UTC')}))
           - toUnixTimestamp64Milli(greatest(start, {start:DateTime64(3, 'UTC')}))) / 1000 AS seconds
FROM source_intervals FINAL
WHERE user_id = {user:String}
  AND start < {end:DateTime64(3, 'UTC')} AND `end` > {start:DateTime64(3, 'UTC')}
  AND start >= {start:DateTime64(3, 'UTC')} - INTERVAL 1 DAY
GROUP BY source, app, title
ORDER BY seconds DESC, source, app, title
"""


def time_per_source(client: Client, user_id: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Time of the imported sources other than the window in front (an editor's projects, a terminal, media), in
    [start, end): apart from the time in front, which they never add to.

    Columns: source, app, title (str), seconds (float64)."""
    parameters = {"user": user_id, "start": _utc(start), "end": _utc(end)}
    schema = {"source": "str", "app": "str", "title": "str", "seconds": "float64"}
    return _query(client, _TIME_PER_SOURCE, parameters, schema)
