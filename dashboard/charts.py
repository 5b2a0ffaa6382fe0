"""What the charts share: each app's colour, stable for the account, and time-axis labels that never repeat.

Pure: the pages build their Altair charts with these (an Altair object is only a description of a chart).

- Colours. An app's colour comes from its place among the account's apps in the order they were first used
  (`warehouse.queries.app_order`): the n-th app takes the n-th colour of `PALETTE`. So an app has the same
  colour on every page and every day, whichever other apps are drawn beside it, and an app used for the first
  time takes the next place without moving any other; the first `len(PALETTE)` apps all differ.
- Time axes. Times are drawn on a UTC scale holding the viewer's wall-clock times (`period.wall_clock`). A tick
  is labelled with its time to its own precision (10:05, 10:05:30, 10:05:30.250), after the date once the axis
  spans a day or more (and the year from 365 days), so no two ticks of an axis read the same, at any zoom.
  Days on an axis of their own are named by `day_labels`, with the year where they span more than one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import altair as alt
import pandas as pd

# Tableau's 10, then 10 more that still read on light and dark backgrounds.
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
    "#a0cbe8",
    "#ffbe7d",
    "#8cd17d",
    "#b6992d",
    "#499894",
    "#86bcb6",
    "#d37295",
    "#fabfd2",
    "#d4a6c8",
    "#79706e",
)
LEGEND_COLUMNS = 4


def app_colours(account_apps: Sequence[str], apps: Iterable[str]) -> dict[str, str]:
    """The colour of each of `apps`: by its place in `account_apps` (the account's apps, first used first),
    cycling through `PALETTE`. An app the list does not hold yet (first used a moment ago) takes a colour from
    its name alone. Either way an app's colour depends on nothing but the account and the app."""
    place = {app: i for i, app in enumerate(dict.fromkeys(account_apps))}
    colours = {}
    for app in apps:
        index = place.get(app)
        if index is None:
            index = int.from_bytes(hashlib.sha256(app.encode("utf-8")).digest()[:8], "big")
        colours[app] = PALETTE[index % len(PALETTE)]
    return colours


def legend_order(apps: Iterable[str]) -> list[str]:
    """The apps of a chart as its legend lists them: each once, by name."""
    return sorted(set(apps), key=lambda app: (app.casefold(), app))


def app_color(field: str, apps: Iterable[str], account_apps: Sequence[str], *, legend: bool = True) -> alt.Color:
    """The colour encoding of a chart of `apps`: each app its account colour, and (with `legend`) a legend
    below the chart that lists every app drawn, however many (Vega's default keeps only the first 30)."""
    domain = legend_order(apps)
    colours = app_colours(account_apps, domain)
    return alt.Color(
        f"{field}:N",
        title="App",
        scale=alt.Scale(domain=domain, range=[colours[app] for app in domain]),
        legend=(
            alt.Legend(orient="bottom", columns=max(1, min(LEGEND_COLUMNS, len(domain))), symbolLimit=0)
            if legend
            else None
        ),
    )


# --- time axes -----------------------------------------------------------------------------------------------

SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS
DAY_MS = 24 * 60 * MINUTE_MS
YEAR_MS = 365 * DAY_MS
# The date part of a label, by the axis's span (longest first); a shorter axis shows no date.
_DATE_PARTS = ((YEAR_MS, "%d %b %Y"), (DAY_MS, "%d %b"))
# The time part of a label, by the tick's own precision (coarsest first); a tick at midnight on an axis that
# shows dates is labelled with its date alone.
_TIME_PARTS = ((MINUTE_MS, "%H:%M"), (SECOND_MS, "%H:%M:%S"), (1, "%H:%M:%S.%L"))


def tick_format(tick_ms: int, span_ms: float) -> str:
    """The format (d3's directives; %L is milliseconds) of the label of the tick at `tick_ms` (ms since the
    epoch, on the UTC scale) on a time axis whose domain is `span_ms` long."""
    date = next((part for least, part in _DATE_PARTS if span_ms >= least), "")
    if date and tick_ms % DAY_MS == 0:
        return date
    time = next(part for step, part in _TIME_PARTS if tick_ms % step == 0)
    return f"{date} {time}" if date else time


def tick_label(tick_ms: int, span_ms: float) -> str:
    """The label the axis shows for the tick at `tick_ms`: what `tick_label_expr` computes in the browser."""
    moment = datetime.fromtimestamp(tick_ms // 1000, UTC)
    return moment.strftime(tick_format(tick_ms, span_ms).replace("%L", f"{tick_ms % 1000:03d}"))


def tick_label_expr(scale: str = "x") -> str:
    """`tick_format`, as the Vega expression an axis's labelExpr takes: the span is the scale's domain as it is
    now, so the labels follow zooming and panning."""
    span = f"span(domain('{scale}'))"
    value = "datum.value"
    time = repr(_TIME_PARTS[-1][1])
    for step, part in reversed(_TIME_PARTS[:-1]):
        time = f"({value} % {step} == 0 ? {part!r} : {time})"
    formats = time
    for least, part in reversed(_DATE_PARTS):
        formats = f"({span} >= {least} ? ({value} % {DAY_MS} == 0 ? {part!r} : {part!r} + ' ' + {time}) : {formats})"
    return f"utcFormat({value}, {formats})"


def day_labels(days: pd.Series) -> pd.Series:
    """How a chart names calendar days (local midnights): 'Sat 28 Nov', with the year where the days span more
    than one, so no two days read the same."""
    fmt = "%a %d %b %Y" if days.dt.year.nunique() > 1 else "%a %d %b"
    return days.dt.strftime(fmt)


def time_axis(title: str) -> alt.Axis:
    """The x axis of a chart of wall-clock times (a UTC scale): labels by `tick_format`."""
    return alt.Axis(title=title, labelExpr=tick_label_expr("x"))
