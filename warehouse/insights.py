"""Insights across people: the eligible people's contributions read from the warehouse, each week's figures
released once (warehouse/insight_rules.py) and stored in `insight_releases`, and what was released and spent read
back. Exact per-person figures exist only in memory, inside `release_week`; nothing exact is returned or stored.
docs/insights.md explains it in plain words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta

import pandas as pd
from clickhouse_connect.driver.client import Client

from warehouse.insight_rules import (
    FIGURES,
    LIVE_WITHIN,
    LOOKBACK_DAYS,
    Budget,
    Release,
    contribution,
    due_weeks,
    release,
)


@dataclass(frozen=True)
class InsightSettings:
    """What the operator chose (plumbing/settings.py: insights_epsilon, insights_delta, aggregate_k,
    insights_min_active_days)."""

    budget: Budget
    k: int = 10
    min_active_days: int = 7


# Each eligible person's active time per (UTC) day of the week and hour of the day in the week. Eligible: at least
# `min_days` distinct days with active time in the LOOKBACK_DAYS ending with the week, counting only time from an
# enrolled device that reached the gateway within LIVE_WITHIN of its end (imports and backfills prove no presence:
# a crowd of fresh accounts cannot make itself eligible in a day), and active in the week itself.
_CONTRIBUTIONS = """
SELECT user_id, toDayOfWeek(hour) AS weekday, toHour(hour) AS hour_of_day, sum(active_ms) AS active
FROM usage_by_hour FINAL
WHERE hour >= {week:DateTime('UTC')} AND hour < {after:DateTime('UTC')}
  AND user_id GLOBAL IN (
    SELECT user_id
    FROM intervals
    WHERE start >= {lookback:DateTime64(3, 'UTC')} AND start < {after:DateTime64(3, 'UTC')} AND NOT idle
      AND received_at <= `end` + toIntervalSecond({live_s:UInt32})
      AND (user_id, device_id) GLOBAL IN (SELECT user_id, device_id FROM devices)
    GROUP BY user_id
    HAVING uniqExact(toDate(start)) >= {min_days:UInt32} AND max(start) >= {week:DateTime64(3, 'UTC')}
  )
GROUP BY user_id, weekday, hour_of_day
HAVING active > 0
ORDER BY user_id, weekday, hour_of_day
"""


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def contributions(client: Client, week: date, min_active_days: int) -> dict[str, list[tuple[float, ...]]]:
    """Per figure, one contribution per eligible person active in `week` (a Monday), in no particular person's
    order; nothing names whose it is."""
    after = _midnight(week + timedelta(weeks=1))
    parameters = {
        "week": _midnight(week),
        "after": after,
        "lookback": after - timedelta(days=LOOKBACK_DAYS),
        "live_s": int(LIVE_WITHIN.total_seconds()),
        "min_days": min_active_days,
    }
    rows = client.query(_CONTRIBUTIONS, parameters=parameters).result_rows
    per_person: dict[str, dict[str, list[float]]] = {}
    for user_id, weekday, hour, active in rows:
        vectors = per_person.setdefault(user_id, {f: [0.0] * n for f, n in FIGURES.items()})
        vectors["weekday"][weekday - 1] += active
        vectors["hour"][hour] += active
    return {f: [contribution(v[f]) for v in per_person.values()] for f in FIGURES}


_COLUMNS = ("week", "figure", "released_at", "shown", "shares", "people", "epsilon", "delta", "mechanism",
            "share_scale", "count_scale", "k", "min_active_days")  # fmt: skip


def release_week(client: Client, week: date, settings: InsightSettings, now: datetime) -> list[Release]:
    """Release both figures of `week` and store them in one insert (both or neither)."""
    parts = contributions(client, week, settings.min_active_days)
    releases = [
        release(figure, week, parts[figure], settings.budget, settings.k, settings.min_active_days)
        for figure in FIGURES
    ]
    rows = []
    for r in releases:
        fields = asdict(r)
        fields["released_at"] = now
        fields["shares"] = list(r.shares)
        rows.append([fields[c] for c in _COLUMNS])
    client.insert("insight_releases", rows, column_names=list(_COLUMNS))
    return releases


def released_weeks(client: Client) -> set[date]:
    """The weeks whose every figure is stored."""
    rows = client.query(
        "SELECT week FROM insight_releases GROUP BY week HAVING uniqExact(figure) = {n:UInt32}",
        parameters={"n": len(FIGURES)},
    ).result_rows
    return {row[0] for row in rows}


def release_due(client: Client, settings: InsightSettings, now: datetime) -> list[Release]:
    """Release every week that is due and not released yet (warehouse/insight_rules.py `due_weeks`)."""
    released: list[Release] = []
    for week in due_weeks(now, released_weeks(client)):
        released.extend(release_week(client, week, settings, now))
    return released


def _first_releases(where: str = "1") -> str:
    return f"""
SELECT week, figure, released_at, shown, shares, people, epsilon, delta, mechanism, share_scale, count_scale, k,
       min_active_days
FROM insight_releases
WHERE {where}
ORDER BY week, figure, released_at
LIMIT 1 BY week, figure
"""


def _release_of(row: Sequence) -> Release:
    fields = dict(zip(_COLUMNS, row, strict=True))
    fields.pop("released_at")
    fields["shares"] = tuple(fields["shares"])
    return Release(**fields)


def releases(client: Client, week: date) -> dict[str, Release]:
    """The figures released for `week`, by figure: the first stored of each (the one ever shown)."""
    rows = client.query(_first_releases("week = {week:Date}"), parameters={"week": week}).result_rows
    return {row[1]: _release_of(row) for row in rows}


def release_weeks(client: Client) -> list[date]:
    """Every week with a released figure, newest first."""
    rows = client.query("SELECT DISTINCT week FROM insight_releases ORDER BY week DESC").result_rows
    return [row[0] for row in rows]


def budget_spent(client: Client) -> pd.DataFrame:
    """The privacy budget spent per week, every stored release counted (a duplicate one too).

    Columns: week (date), releases (int64), epsilon (float64), delta (float64), last_released (datetime)."""
    df = client.query_df(
        "SELECT week, count() AS releases, sum(epsilon) AS epsilon, sum(delta) AS delta, "
        "max(released_at) AS last_released FROM insight_releases GROUP BY week ORDER BY week DESC"
    )
    if df.empty:
        return pd.DataFrame(
            {
                "week": pd.Series(dtype="object"),
                "releases": pd.Series(dtype="int64"),
                "epsilon": pd.Series(dtype="float64"),
                "delta": pd.Series(dtype="float64"),
                "last_released": pd.Series(dtype="datetime64[ms, UTC]"),
            }
        )
    df["week"] = df["week"].dt.date
    return df.astype({"releases": "int64", "epsilon": "float64", "delta": "float64"})
