"""The gateway's weekly insights release (warehouse/insights.py): while Insights are on, every RELEASE_EVERY_S it
releases each week that is due and not released yet. One release per figure and week is ever made; a round that
fails is tried again next time, and nothing of a failed round is stored (both figures of a week go in one insert).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from plumbing.settings import Settings
from warehouse.insight_rules import Budget
from warehouse.insights import InsightSettings, release_due

log = logging.getLogger("productimon.gateway.insights")
RELEASE_EVERY_S = 900.0


def insight_settings(settings: Settings) -> InsightSettings:
    return InsightSettings(
        budget=Budget(settings.insights_epsilon, settings.insights_delta),
        k=settings.aggregate_k,
        min_active_days=settings.insights_min_active_days,
    )


async def run(warehouse: Callable[[], Client], settings: Settings, stop: asyncio.Event,
              every_s: float = RELEASE_EVERY_S) -> None:  # fmt: skip
    chosen = insight_settings(settings)
    while not stop.is_set():
        try:
            released = await asyncio.to_thread(release_due, warehouse(), chosen, datetime.now(UTC))
        except Exception as exc:  # tried again next round; never the end of the gateway
            log.warning("insights: the release failed (%s: %s); trying again", type(exc).__name__, exc)
        else:
            for r in released:
                shown = "shown" if r.shown else "too few people to show"
                log.info("insights: released the %s figure of the week of %s (epsilon %.3g, delta %.3g, %s)",
                         r.figure, r.week, r.epsilon, r.delta, shown)  # fmt: skip
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
