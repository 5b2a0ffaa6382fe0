"""`productimon-topics`: create the stack's topics with their partitions and retention, once the broker answers.

Run once per deployment (the compose stack's one-shot `topics` service); topics that exist are left alone.
"""

from __future__ import annotations

import asyncio
import os
import time

from infra.topics import DEFAULT_INTERVALS_RETENTION_DAYS, TopicsRefused, ensure_topics, topic_specs
from plumbing.cli import UserFacingError, command
from plumbing.settings import Settings, load_settings

# Read here, not in plumbing/settings.py: only topic creation needs them.
RETENTION_ENV = "PRODUCTIMON_INTERVALS_RETENTION_DAYS"
REPLICATION_ENV = "PRODUCTIMON_TOPIC_REPLICATION_FACTOR"
WAIT_ENV = "PRODUCTIMON_TOPICS_WAIT_SECONDS"


def _int_from_env(name: str, default: int, low: int, high: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UserFacingError(f"{name}: expected a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise UserFacingError(f"{name}: must be between {low} and {high}, got {value}")
    return value


def intervals_retention_days() -> int:
    """Days raw intervals stay in the broker; short, so deleted users' events age out."""
    return _int_from_env(RETENTION_ENV, DEFAULT_INTERVALS_RETENTION_DAYS, 1, 365)


def replication_factor() -> int:
    return _int_from_env(REPLICATION_ENV, 1, 1, 16)


async def _create_when_reachable(settings: Settings, retention_days: int, replicas: int, wait_s: int) -> list[str]:
    deadline = time.monotonic() + wait_s
    attempt = 0
    while True:
        attempt += 1
        try:
            return await ensure_topics(settings, retention_days, replicas)
        except TopicsRefused:
            raise  # the broker answered: waiting will not change its mind
        except Exception as exc:  # any failure to reach the broker is retried until the deadline
            if time.monotonic() > deadline:
                raise UserFacingError(
                    f"the broker at {settings.kafka_bootstrap} did not answer within {wait_s} s: {exc}"
                ) from None
            print(f"waiting for the broker at {settings.kafka_bootstrap} (attempt {attempt}): {exc}", flush=True)
            await asyncio.sleep(min(2 * attempt, 10))


@command("productimon-topics")
def main() -> int:
    settings = load_settings()
    retention_days = intervals_retention_days()
    replicas = replication_factor()
    wait_s = _int_from_env(WAIT_ENV, 120, 1, 3600)
    created = set(asyncio.run(_create_when_reachable(settings, retention_days, replicas, wait_s)))
    for name, spec in topic_specs(settings, retention_days).items():
        configs = ", ".join(f"{k}={v}" for k, v in spec.configs.items()) or "broker defaults"
        state = "created" if name in created else "exists (left as is)"
        print(f"{state}: {name}  partitions={spec.partitions}  {configs}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
