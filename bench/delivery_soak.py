"""Exactly-once under many random faults: devices stream through the real gateway while a chaos loop kills the
worker, the warehouse, the broker and the gateway, and adds and removes a second worker, at random moments.
Afterwards every device's data is compared with the reference computed from what it sent. The figures are
what was lost, doubled or drifted (all must be 0), how many faults of each kind landed, and the throughput
beside the same streams sent without faults in the same run (the baseline).

`PRODUCTIMON_SOAK_SECONDS` (default 240) bounds the chaos phase; the streams are sized to outlast it.
"""

from __future__ import annotations

import os
import random
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from bench._stack import bench_stack
from infra.stack import Stack
from infra.streams import StreamingDevice, exactness
from stream_jobs.forget import rules_of
from warehouse.client import connect

DEVICES = 4
SEED = 2026


def _stack(data_dir: Path) -> Stack:
    return bench_stack(
        data_dir,
        topic_partitions=4,
        worker_batch_records=3,
        worker_batch_seconds=0.2,
        gateway_store_timeout_seconds=8.0,
    )


def _chaos(stack: Stack, stop: threading.Event, rng: random.Random, faults: Counter, progress) -> None:
    """One random fault every 3-8 s until `stop`."""
    second = None
    while not stop.wait(rng.uniform(3, 8)):
        done = stack.supervise()  # as the local stack does: a worker that exited is started again
        if done:
            progress(done)
        kind = rng.choice(["worker", "second_worker", "warehouse", "broker", "gateway"])
        if kind == "worker":
            victim = stack.workers[0]
            victim.kill()
            stack.workers.remove(victim)
            stack.start_worker(f"worker-{sum(faults.values())}")
        elif kind == "second_worker":
            if second is None:
                second = stack.start_worker(f"second-{sum(faults.values())}")
            else:
                second.kill()
                stack.workers.remove(second)
                second = None
        elif kind == "warehouse":
            stack.warehouse.kill()
            time.sleep(rng.uniform(0, 2))
            stack.start_warehouse()
        elif kind == "broker":
            stack.recover_broker()
            second = None
        else:
            stack.gateway.kill()
            stack.gateway = None
            stack.start_gateway()
        faults[kind] += 1
        progress(f"fault {sum(faults.values())}: {kind}")


def _stream(stack: Stack, per_device: int, seed: int, deadline_s: float) -> tuple[list[StreamingDevice], float]:
    senders = [StreamingDevice(stack.settings, seed + n, per_device, deadline_s) for n in range(DEVICES)]
    began = time.monotonic()
    for sender in senders:
        sender.start()
    return senders, began


def run(progress) -> dict:
    soak_s = float(os.environ.get("PRODUCTIMON_SOAK_SECONDS", "240"))
    rng = random.Random(SEED)
    with tempfile.TemporaryDirectory(prefix="productimon-soak-") as tmp:
        stack = _stack(Path(tmp))
        try:
            stack.up(dashboard=False)
            rules = rules_of(stack.settings)
            # Baseline: the same kind of streams, no faults, in this run.
            baseline, began = _stream(stack, 2000, SEED + 100, 600)
            for sender in baseline:
                sender.join()
            baseline_rate = sum(s.acked for s in baseline) / (time.monotonic() - began)
            progress(f"baseline without faults: {baseline_rate:.0f} intervals/s acknowledged")
            # Sized to outlast the chaos phase at the baseline rate, so faults land while streams run.
            per_device = min(int(baseline_rate * soak_s / DEVICES * 0.8) + 500, 100_000)
            faults: Counter = Counter()
            stop = threading.Event()
            senders, began = _stream(stack, per_device, SEED, soak_s * 4 + 300)
            chaos = threading.Thread(target=_chaos, args=(stack, stop, rng, faults, progress), daemon=True)
            chaos.start()
            chaos_until = time.monotonic() + soak_s
            while any(s.is_alive() for s in senders) and time.monotonic() < chaos_until:
                time.sleep(1)
            stop.set()
            chaos.join()
            for sender in senders:
                sender.join()
            elapsed = time.monotonic() - began
            problems = [s.problem for s in senders if s.problem]
            time.sleep(5)  # sessions and rollups are written moments after the intervals the acks wait for
            client = connect(stack.settings)
            found = [exactness(client, s, rules) for s in senders]
        finally:
            stack.down()
    sent = sum(len(s.stream) for s in senders)
    figures = {
        "devices": DEVICES,
        "intervals_sent": sent,
        "intervals_acknowledged": sum(s.acked for s in senders),
        "faults": dict(faults),
        "faults_total": sum(faults.values()),
        "resends": sum(s.retries for s in senders),
        "lost": sum(f.lost for f in found),
        "doubled": sum(f.doubled for f in found),
        "session_mismatches": sum(f.session_mismatches for f in found),
        "rollup_drift_rows": sum(f.rollup_drift for f in found),
        "active_drift_ms": sum(abs(f.active_drift_ms) for f in found),
        "sender_problems": problems,
        "rate_under_faults_per_s": round(sum(s.acked for s in senders) / elapsed),
        "baseline_rate_per_s": round(baseline_rate),
        "rate_ratio_vs_baseline": round(sum(s.acked for s in senders) / elapsed / baseline_rate, 3),
        "data": f"{DEVICES} devices streaming infra.streams.realistic_stream through the gateway (seed {SEED})",
        "target": "lost, doubled, session mismatches and rollup drift all 0 under random faults",
    }
    figures["meets_target"] = (
        not problems
        and figures["faults_total"] > 0
        and all(figures[k] == 0 for k in ("lost", "doubled", "session_mismatches", "rollup_drift_rows"))
        and figures["active_drift_ms"] == 0
        and figures["intervals_acknowledged"] == sent
    )
    return figures
