"""Storing a batch when some of its records can never be stored: split until the records at fault stand alone.

Pure over the write it is given. A batch whose write fails permanently (`stream_jobs/failures.py`) is cut in
two, first between devices, then within a device's intervals (in their order, so each device's sessions are
still cut from its intervals in sequence), and each half is written on its own; a single interval that still
fails is poison, returned with its reason for the dead-letter topic. The rest is stored at once. A transient
failure is raised to the caller, which retries the whole batch: what was written already is written again
harmlessly, and a poison interval below a device's saved state is skipped as processed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

Batch = dict[str, list[dict]]


@dataclass
class Isolated:
    """What a batch's writes returned, and the intervals no write could store, with why."""

    results: list[object] = field(default_factory=list)
    poison: list[tuple[dict, BaseException]] = field(default_factory=list)


def halves(batch: Batch) -> tuple[Batch, Batch]:
    """Two non-empty parts of a batch holding more than one interval: by device, else within its one device."""
    devices = list(batch)
    if len(devices) > 1:
        middle = len(devices) // 2
        return {d: batch[d] for d in devices[:middle]}, {d: batch[d] for d in devices[middle:]}
    (device, items), middle = next(iter(batch.items())), len(next(iter(batch.values()))) // 2
    return {device: items[:middle]}, {device: items[middle:]}


def write_isolating(
    write: Callable[[Batch], object], batch: Batch, is_permanent: Callable[[BaseException], bool]
) -> Isolated:
    """Write `batch`, isolating records that fail permanently (module docstring)."""
    outcome = Isolated()
    _write_part(write, {d: items for d, items in batch.items() if items}, is_permanent, outcome)
    return outcome


def _write_part(write: Callable[[Batch], object], part: Batch, is_permanent, outcome: Isolated) -> None:
    if not part:
        return
    try:
        outcome.results.append(write(part))
        return
    except Exception as exc:
        if not is_permanent(exc):
            raise
        size = sum(len(items) for items in part.values())
        if size == 1:
            outcome.poison.append((next(iter(part.values()))[0], exc))
            return
        log.warning("the warehouse refused a write of %d intervals for its data (%s): splitting it", size, exc)
    first, second = halves(part)
    _write_part(write, first, is_permanent, outcome)
    _write_part(write, second, is_permanent, outcome)
