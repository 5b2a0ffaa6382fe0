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

from bench._figures import tail
from bench._stack import bench_stack
from infra.devices import new_user_device
from infra.fuzzing import FuzzDevice
from infra.streams import StreamingDevice, exactness
from plumbing import metrics
from stream_jobs.forget import rules_of
from warehouse.client import connect
from warehouse.rollups import rollup_drift

# The steady device alone, the baseline: 12 intervals a second in batches of 10, so 90 s make 108 batches, enough
# for a p95 (bench/_figures.py MIN_SAMPLES_FOR_P95).
ALONE_S = 90.0
TARGET_P95_S = 2.0


def _steady(stack, seed: int, seconds: float) -> StreamingDevice:
    device = StreamingDevice(
        stack.settings, seed, int(seconds * 12), deadline_s=seconds * 4 + 120, batch=10, pace_s=0.5
    )
    device.start()
    return device


def _quantiles(latencies: list[float]) -> dict[str, float | None]:
    p95 = tail(latencies, 0.95)
    return {
        "p50_s": round(statistics.median(latencies), 3),
        "p95_s": None if p95 is None else round(p95, 3),
        "samples": len(latencies),
    }


def run(progress) -> dict:
    seconds = float(os.environ.get("PRODUCTIMON_FUZZ_SECONDS", "600"))
    with tempfile.TemporaryDirectory(prefix="productimon-fuzz-") as tmp:
        # The default 30-day window: the fuzzer's times are drawn around it.
        stack = bench_stack(Path(tmp), topic_partitions=2, interval_max_age_days=30)
        try:
            stack.up(dashboard=False)
            rules = rules_of(stack.settings)
            alone = _steady(stack, 21, ALONE_S)
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
        "p95_ratio_to_alone": round(beside["p95_s"] / baseline["p95_s"], 2)
        if beside["p95_s"] and baseline["p95_s"]
        else None,
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
    figures["data"] = (
        f"a steady device (infra.streams.realistic_stream, batches of 10 every 0.5 s) alone for {ALONE_S:g} s, then "
        f"beside a fuzzer sending hostile batches through the gateway for {seconds:g} s"
    )
    figures["target"] = (
        f"the steady device's p95 under {TARGET_P95_S:g} s beside the fuzzer and its data exact; every accepted fuzzer "
        "record stored and nothing else; no rollup drift; every refusal with a reason"
    )
    figures["meets_target"] = (
        beside["p95_s"] is not None
        and beside["p95_s"] < TARGET_P95_S
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
