"""The ingest fuzzer for longer than CI runs it: an adversarial device (infra/fuzzing.py) sends hostile batches through
the real gateway while a well-behaved device streams beside it, for `PRODUCTIMON_FUZZ_SECONDS` (default 600).

Figures: the well-behaved device's freshness (seconds from sending a batch to its acknowledgement, which comes once
it is stored) at p50 and p95, beside the same device streaming alone in the same run (the baseline); whether its
data is exact in every table; how many batches and records the fuzzer sent, how many were accepted, whether every
accepted one is stored and nothing else, and the refusals by kind. Targets: freshness p95 under 2 s, exact data,
accepted == stored, every refusal with a reason.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from bench._stack import bench_stack
from infra.devices import new_user_device
from infra.fuzzing import FuzzDevice
from infra.streams import StreamingDevice, exactness
from plumbing import metrics
from stream_jobs.forget import rules_of
from warehouse.client import connect
from warehouse.rollups import rollup_drift


def _steady(stack, seed: int, seconds: float) -> StreamingDevice:
    device = StreamingDevice(
        stack.settings, seed, int(seconds * 12), deadline_s=seconds * 4 + 120, batch=10, pace_s=0.5
    )
    device.start()
    return device


def _quantiles(latencies: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(latencies, n=20)
    return {"p50_s": round(statistics.median(latencies), 3), "p95_s": round(cuts[-1], 3)}


def run(progress) -> dict:
    seconds = float(os.environ.get("PRODUCTIMON_FUZZ_SECONDS", "600"))
    with tempfile.TemporaryDirectory(prefix="productimon-fuzz-") as tmp:
        # The default 30-day window: the fuzzer's times are drawn around it.
        stack = bench_stack(Path(tmp), topic_partitions=2, interval_max_age_days=30)
        try:
            stack.up(dashboard=False)
            rules = rules_of(stack.settings)
            alone = _steady(stack, 21, 30)
            alone.join()
            baseline = _quantiles(alone.latencies)
            progress(f"baseline, the steady device alone: p50 {baseline['p50_s']}s, p95 {baseline['p95_s']}s")
            identity, creds = new_user_device(stack.settings)
            fuzzer = FuzzDevice(stack.settings.gateway_address, creds)
            steady = _steady(stack, 22, seconds)
            failures: list[str] = []
            fuzzing = threading.Thread(
                target=lambda: _guard(failures, lambda: fuzzer.run_for(seconds, progress)), daemon=True
            )
            fuzzing.start()
            fuzzing.join()
            steady.join()
            time.sleep(3)  # sessions and rollups are written moments after the intervals the acks wait for
            client = connect(stack.settings)
            found = exactness(client, steady, rules)
            stored = set(
                client.query(
                    "SELECT device_seq, toString(event_id) FROM intervals FINAL WHERE user_id = {u:String}",
                    parameters={"u": identity.user_id},
                ).result_rows
            )
            drift = len(rollup_drift(client, identity.user_id))
        finally:
            stack.down()
    beside = _quantiles(steady.latencies)
    kinds = Counter(metrics.refusal_label(reason) for reason in fuzzer.refusals)
    figures = {
        "seconds": seconds,
        "steady_alone": baseline,
        "steady_beside_fuzzer": beside,
        "p95_ratio_to_alone": round(beside["p95_s"] / baseline["p95_s"], 2),
        "steady_exact": found.exact and steady.problem is None,
        "steady_exactness": vars(found),
        "fuzzer_batches": fuzzer.batches,
        "fuzzer_records": fuzzer.sent,
        "fuzzer_accepted": len(fuzzer.accepted),
        "fuzzer_accepted_all_stored_nothing_else": stored == fuzzer.accepted,
        "fuzzer_rollup_drift_rows": drift,
        "refusals_by_kind": dict(sorted(kinds.items())),
        "refusals_without_reason": sum(1 for r in fuzzer.refusals if not r.strip()),
        "fuzzer_failures": failures,
    }
    figures["meets_target"] = (
        beside["p95_s"] < 2.0
        and figures["steady_exact"]
        and figures["fuzzer_accepted_all_stored_nothing_else"]
        and not drift
        and not figures["refusals_without_reason"]
        and not failures
    )
    progress(
        f"steady device beside the fuzzer: p50 {beside['p50_s']}s, p95 {beside['p95_s']}s "
        f"({figures['p95_ratio_to_alone']}x alone); exact: {figures['steady_exact']}"
    )
    progress(
        f"fuzzer: {fuzzer.batches} batches, {fuzzer.sent} records, {len(fuzzer.accepted)} accepted, all stored and "
        f"nothing else: {figures['fuzzer_accepted_all_stored_nothing_else']}"
    )
    return figures


def _guard(failures: list[str], work) -> None:
    try:
        work()
    except Exception as exc:  # reported in the figures, and the target is missed
        failures.append(f"{type(exc).__name__}: {exc}")
