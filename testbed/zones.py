"""Time zones for tests and benchmarks that measure "today" through the real stack."""

from __future__ import annotations

from datetime import UTC, datetime


def noon_zone() -> str:
    """A fixed-offset zone whose local time is near noon now (Etc/GMT-N is N hours east of UTC): activity of the
    last few hours falls on one local day whatever the hour of the run."""
    offset = 12 - datetime.now(UTC).hour
    return "UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"
