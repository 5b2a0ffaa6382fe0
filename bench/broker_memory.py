"""The embedded broker's memory over a simulated year of one busy person: 10 hours a day, an interval every
30 s on average, 365 days (about 440,000 intervals), sent through the real gateway from the person's four
devices in batches of 500 as collectors upload them, with the local stack's supervision on (it starts the
broker afresh past `broker_max_memory_mb`, default 150). Figures: the broker's peak resident memory, its
growth per 100,000 intervals before any restart, how many restarts it took, and that every interval was
stored (target: peak under 200 MB, nothing lost).
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

from bench._stack import bench_stack
from infra.streams import StreamingDevice
from warehouse.client import connect

DEVICES = 4
YEAR_INTERVALS = 365 * 10 * 120
TARGET_MB = 200


def run(progress) -> dict:
    per_device = YEAR_INTERVALS // DEVICES
    with tempfile.TemporaryDirectory(prefix="productimon-broker-memory-") as tmp:
        stack = bench_stack(Path(tmp), topic_partitions=4, worker_batch_seconds=0.2)
        try:
            stack.up(dashboard=False)
            start_mb = stack.broker.resident_mb()
            senders = [
                StreamingDevice(stack.settings, 500 + n, per_device, deadline_s=3600, batch=500) for n in range(DEVICES)
            ]
            samples: list[tuple[int, float]] = []
            restarts: list[str] = []
            stop = threading.Event()

            def watch() -> None:
                while not stop.wait(1.0):
                    acked = sum(s.acked for s in senders)
                    samples.append((acked, stack.broker.resident_mb()))
                    done = stack.supervise()
                    if done:
                        restarts.append(done)
                        progress(f"{acked} intervals: {done}")
                    if len(samples) % 15 == 0:
                        progress(f"{acked} of {per_device * DEVICES} intervals stored; broker {samples[-1][1]:.0f} MiB")

            watcher = threading.Thread(target=watch, daemon=True)
            began = time.monotonic()
            watcher.start()
            for sender in senders:
                sender.start()
            for sender in senders:
                sender.join()
            stop.set()
            watcher.join()
            elapsed = time.monotonic() - began
            client = connect(stack.settings)
            stored = sum(
                client.query(
                    "SELECT uniqExact(device_seq) FROM intervals WHERE user_id = {u:String}",
                    parameters={"u": s.identity.user_id},
                ).result_rows[0][0]
                for s in senders
            )
            problems = [s.problem for s in senders if s.problem]
        finally:
            stack.down()
    sent = per_device * DEVICES
    first_restart_at = next((i for i in range(1, len(samples)) if samples[i][1] < samples[i - 1][1] * 0.5), None)
    growth_window = samples[: first_restart_at or len(samples)]
    growth = (
        (growth_window[-1][1] - growth_window[0][1]) / max(1, growth_window[-1][0] - growth_window[0][0]) * 100_000
        if len(growth_window) > 1
        else 0.0
    )
    peak = max([mb for _, mb in samples] + [start_mb])
    return {
        "intervals": sent,
        "intervals_stored": stored,
        "sender_problems": problems,
        "seconds_to_send": round(elapsed, 1),
        "broker_start_mb": round(start_mb, 1),
        "broker_peak_mb": round(peak, 1),
        "broker_growth_mb_per_100k_intervals": round(growth, 1),
        "broker_restarts": len(restarts),
        "data": f"a year of one busy person: {YEAR_INTERVALS:,} intervals from {DEVICES} devices in batches of 500",
        "target": f"broker peak under {TARGET_MB} MB over a simulated year of one busy person, nothing lost",
        "meets_target": peak < TARGET_MB and stored == sent and not problems,
    }
