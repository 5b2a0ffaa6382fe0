"""The query API: every question the product asks the warehouse, as a named function for one user.

Each function takes the client, the user it serves and its parameters, binds them through the client
(never string formatting) and returns a DataFrame. This module is the only place the dashboard's SQL
lives, and every query here is scoped to exactly one user.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
from clickhouse_connect.driver.client import Client


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("query periods must be timezone-aware datetimes")
    return moment.astimezone(UTC)


def _period(start: datetime, end: datetime) -> dict[str, datetime]:
    start, end = _utc(start), _utc(end)
    if end <= start:
        raise ValueError(f"the period ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    return {"from": start, "to": end}


# Intervals are clipped to the period, so an interval that straddles midnight counts only its part.
_TIME_PER_APP = """
SELECT app,
       sum(dateDiff('millisecond',
                    greatest(start, {from:DateTime64(3, 'UTC')}),
                    least(`end`, {to:DateTime64(3, 'UTC')}))) / 1000 AS seconds
FROM intervals FINAL
WHERE user_id = {user:String}
  AND start < {to:DateTime64(3, 'UTC')}
  AND `end` > {from:DateTime64(3, 'UTC')}
  AND NOT idle
GROUP BY app
ORDER BY seconds DESC, app
"""


def time_per_app(client: Client, user_id: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Seconds of active (non-idle) time per application for one user in [start, end)."""
    df = client.query_df(_TIME_PER_APP, parameters={"user": user_id, **_period(start, end)})
    if df.empty:
        return pd.DataFrame({"app": pd.Series(dtype="str"), "seconds": pd.Series(dtype="float64")})
    return df.astype({"seconds": "float64"})
