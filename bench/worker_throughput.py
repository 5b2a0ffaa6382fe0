"""Intervals/s through one stream worker from the topic into the warehouse (decode, trim, sessionize,
insert), beside a bare consume-and-insert baseline in the same run; and freshness, from the gateway's
acknowledgement to visible in a query, at 5,000 intervals/s (issue: stream jobs figures). The gateway
acknowledges after the broker here, so freshness is the worker's lag; acknowledged after storage (the
default) a batch is visible when acknowledged, by construction (`bench/overload.py`)."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from bench._figures import percentile
from bench._stack import bench_stack
from collector.intervals import event_id
from collector.transport import IngestClient
from infra.devices import new_user_device
from infra.processes import free_port
from infra.stack import Stack
from plumbing.settings import Settings
from schemas.codec import encode_interval, encode_stamped_batch
from schemas.contract import Window
from schemas.sealing import partition_key, seal
from stream_jobs.keyring import KeyRing, key_ids, open_records
from stream_jobs.rows import decode_intervals, interval_columns
from warehouse.client import connect
from warehouse.keys import create_key
from warehouse.writes import NO_DELETIONS, store_intervals

DEVICES = 200
PER_DEVICE = 1000
TARGET_RATE = 30_000
FRESHNESS_RATE = 5_000
FRESHNESS_SECONDS = 20
FRESHNESS_DEVICES = 10
TARGET_P95_S = 2.0
FRESHNESS_GRACE_S = 60  # how long after the last batch the poller waits for all to be visible
TARGET_RATIO = 0.8  # of a bare consume + insert of the same records in the same run
ROUNDS = 3  # the rates are medians of this many rounds, each from the start of the topic
# What the worker makes from the topic: cleared before each round, so every round does the same work.
_MADE = ("intervals", "app_sessions", "focus_sessions", "usage_by_hour", "usage_by_title_day", "device_state")
APPS = [
    ("Code", None),
    ("Firefox", "https://github.com/a/b?x=1"),
    ("Firefox", "https://www.google.com/search?q=x"),
    ("Slack", None),
    ("Terminal", None),
    ("Firefox", "https://docs.python.org/3/"),
]


def _stream(device: int, n: int, start_ms: int) -> list[dict]:
    out, t = [], start_ms
    run = uuid.uuid4().int >> 64  # a collector run's bits (collector/intervals.py event_id)
    for seq in range(n):
        app, url = APPS[(seq // 4 + device) % len(APPS)]
        length = 5_000 + (seq * 7919 % 55_000)
        out.append(
            {
                "event_id": event_id(run, seq),
                "device_seq": seq,
                "start": t,
                "end": t + length,
                "app": app,
                "title": f"{app} window {seq % 5}",
                "url": url,
                "keystrokes": seq % 120,
                "clicks": seq % 11,
                "idle": seq % 40 == 39,
            }
        )
        t += length + (400_000 if seq % 97 == 96 else 1_000)
    return out


async def _preload(settings: Settings) -> int:
    """DEVICES devices' intervals straight into the topic, as the gateway writes them (a StampedBatch
    record per batch of 500); returns how many intervals."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", max_batch_size=1 << 20)
    await producer.start()
    now = int(time.time() * 1000)
    start = now - 40 * 86_400_000
    total = 0
    client = connect(settings)
    for d in range(DEVICES):
        device_id, user_id = str(uuid.uuid4()), f"bench-user-{d % 50}"
        # Sealed under the device's data key, as the gateway writes them (schemas/sealing.py).
        key_id, key = create_key(client, user_id, device_id)
        stream = _stream(d, PER_DEVICE, start)
        for b in range(0, len(stream), 500):
            chunk = stream[b : b + 500]
            value = encode_stamped_batch(
                {"user_id": user_id, "device_id": device_id, "received_at": now, "intervals": chunk}
            )
            await producer.send_and_wait(
                settings.intervals_topic, seal(key_id, key, value), key=partition_key(device_id)
            )
            total += len(chunk)
    client.close()
    await producer.stop()
    return total


def _count(settings: Settings, table: str = "intervals") -> int:
    client = connect(settings)
    try:
        return client.query(f"SELECT count() FROM {table}").result_rows[0][0]
    finally:
        client.close()


def _wait_for_count(settings: Settings, expected: int, timeout_s: float = 600) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _count(settings) >= expected:
            return time.monotonic()
        time.sleep(0.1)
    raise TimeoutError(f"only {_count(settings)} of {expected} intervals arrived")


async def _bare_consume_and_insert(settings: Settings, expected: int, group: str) -> float:
    """Baseline: consume, open, decode, trim, insert the intervals only (no sessions, no state); intervals/s."""
    consumer = AIOKafkaConsumer(
        settings.intervals_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        max_poll_records=2000,
    )
    await consumer.start()
    client = connect(settings)
    ring = KeyRing()
    done = 0
    begin = None
    while done < expected:
        batches = await consumer.getmany(timeout_ms=500, max_records=20)
        values = [r.value for records in batches.values() for r in records]
        if not values:
            continue
        begin = begin or time.monotonic()
        ring.load(client, ring.missing(key_ids(values)))
        opened = [plain for _, _, plain, _, _ in open_records(values, ring).records]
        intervals, _ = decode_intervals(opened, Window.of_days(settings.interval_max_age_days))
        await asyncio.to_thread(store_intervals, client, NO_DELETIONS, interval_columns(intervals))
        await consumer.commit()
        done += len(intervals)
    elapsed = time.monotonic() - begin
    await consumer.stop()
    client.close()
    return expected / elapsed


def _step_seconds(settings: Settings) -> dict[str, float]:
    """Seconds the worker spent in each step of its batches so far (stream_jobs/batch.py STEPS), from its metrics."""
    url = f"http://{settings.metrics_host}:{settings.worker_metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    return {
        sample.labels["step"]: round(sample.value, 2)
        for family in text_string_to_metric_families(text)
        if family.name == "productimon_worker_step_seconds"
        for sample in family.samples
        if sample.name.endswith("_sum")
    }


def _freshness(stack: Stack) -> list[float]:
    """Send FRESHNESS_RATE intervals/s through the gateway; seconds from each batch's ack to visible."""
    settings = stack.settings
    devices = [new_user_device(settings, f"fresh-{d}") for d in range(FRESHNESS_DEVICES)]
    per_tick = FRESHNESS_RATE // FRESHNESS_DEVICES // 10  # 10 ticks a second
    acked: list[tuple[str, int, float]] = []  # device, last seq, ack time
    seen: dict[str, list[tuple[float, int]]] = {identity.device_id: [] for identity, _ in devices}
    stop = threading.Event()
    users = [identity.user_id for identity, _ in devices]

    def poll() -> None:
        client = connect(settings)
        query = (
            "SELECT device_id, max(device_seq) FROM intervals WHERE user_id IN {users:Array(String)} GROUP BY device_id"
        )
        while not stop.is_set():
            rows = client.query(query, parameters={"users": users}).result_rows
            now = time.monotonic()
            for device_id, seq in rows:
                seen[device_id].append((now, seq))
            time.sleep(0.05)
        client.close()

    poller = threading.Thread(target=poll)
    poller.start()
    clients = [(identity, IngestClient(settings.gateway_address, creds)) for identity, creds in devices]
    streams = {
        identity.device_id: _stream(i, per_tick * 10 * FRESHNESS_SECONDS, int(time.time() * 1000) - 14 * 86_400_000)
        for i, (identity, _) in enumerate(devices)
    }
    begin = time.monotonic()
    for tick in range(10 * FRESHNESS_SECONDS):
        for identity, client in clients:
            chunk = streams[identity.device_id][tick * per_tick : (tick + 1) * per_tick]
            ack = client.send_batch([encode_interval(i) for i in chunk])
            if ack.errors:
                raise RuntimeError(f"the gateway refused benchmark intervals: {ack.errors[0].reason}")
            acked.append((identity.device_id, chunk[-1]["device_seq"], time.monotonic()))
        time.sleep(max(0.0, begin + (tick + 1) / 10 - time.monotonic()))
    last = {device_id: seq for device_id, seq, _ in acked}
    deadline = time.monotonic() + FRESHNESS_GRACE_S
    while time.monotonic() < deadline and not all(
        any(s >= seq for _, s in seen[device_id]) for device_id, seq in last.items()
    ):
        time.sleep(0.2)
    stop.set()
    poller.join()
    for _, client in clients:
        client.close()
    delays = []
    for device_id, seq, ack_time in acked:
        visible = next((t for t, s in seen[device_id] if s >= seq and t >= ack_time), None)
        delays.append((visible - ack_time) if visible is not None else float("inf"))
    return sorted(delays)


def run(progress) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        stack = bench_stack(Path(tmp), topic_partitions=12, gateway_ack_after="broker", worker_metrics_port=free_port())
        settings = stack.settings
        try:
            stack.start_broker()
            stack.start_warehouse()
            stack.start_gateway()
            total = asyncio.run(_preload(settings))
            progress(f"preloaded {total:,} intervals of {DEVICES} devices into {settings.intervals_topic}")
            bare_rates, worker_rates, steps = [], [], []
            for r in range(ROUNDS):
                _clear(stack.settings)
                bare_rates.append(asyncio.run(_bare_consume_and_insert(stack.settings, total, f"bench-bare-{r}")))
                progress(f"round {r + 1}: bare consume + decode + insert        {bare_rates[-1]:>9,.0f} intervals/s")
                _clear(stack.settings)
                # A group of its own each round: the worker reads the topic from the start again.
                stack.env["PRODUCTIMON_WORKER_ID"] = f"{settings.worker_id}-round-{r}"
                worker = stack.start_worker(f"worker-round-{r}")
                begin = time.monotonic()
                worker_rates.append(total / (_wait_for_count(stack.settings, total) - begin))
                progress(f"round {r + 1}: worker (trim + sessionize + insert)  {worker_rates[-1]:>9,.0f} intervals/s")
                steps.append(_step_seconds(stack.settings))
                progress(f"round {r + 1}: seconds per step {steps[-1]}")
                app_sessions = _count(stack.settings, "app_sessions FINAL")
                if r < ROUNDS - 1:
                    worker.stop(60)
                    stack.workers.remove(worker)
            bare, worker_rate = statistics.median(bare_rates), statistics.median(worker_rates)
            delays = _freshness(stack)
        finally:
            stack.down()
    p50, p95 = percentile(delays, 0.5), percentile(delays, 0.95)
    never = sum(d == float("inf") for d in delays)
    progress(
        f"freshness at {FRESHNESS_RATE}/s: p50 {p50:.2f} s, p95 {p95:.2f} s ({len(delays)} batches, "
        f"{never} not visible {FRESHNESS_GRACE_S} s after the last)"
    )
    ratio = worker_rate / bare
    return {
        "data": (
            f"{DEVICES} devices of 50 users, {PER_DEVICE} intervals each (5-60 s, 6 apps, 3 sites, 5 titles per app, a "
            "break every 97), sealed StampedBatch records of 500 as the gateway writes them; freshness: "
            f"{FRESHNESS_DEVICES} devices sending through the gateway for {FRESHNESS_SECONDS} s"
        ),
        "rounds": ROUNDS,
        "intervals": total,
        "devices": DEVICES,
        "worker_intervals_per_s": round(worker_rate),
        "worker_rounds_per_s": [round(x) for x in worker_rates],
        "bare_consume_insert_per_s": round(bare),
        "bare_rounds_per_s": [round(x) for x in bare_rates],
        "ratio_worker_to_bare": round(ratio, 3),
        "app_sessions_written": app_sessions,
        # Where the worker's time went (its metrics, productimon_worker_step_seconds), per round.
        "worker_step_seconds": steps,
        "freshness_rate_per_s": FRESHNESS_RATE,
        "freshness_samples": len(delays),
        # None: that share of the batches was not visible FRESHNESS_GRACE_S after the last was acknowledged.
        "freshness_p50_s": round(p50, 3) if p50 != float("inf") else None,
        "freshness_p95_s": round(p95, 3) if p95 != float("inf") else None,
        "freshness_not_visible": never,
        "target": (
            f">= {TARGET_RATE}/s per worker and >= {TARGET_RATIO} of a bare consume + insert (medians of {ROUNDS} "
            f"rounds); freshness p95 < {TARGET_P95_S} s at {FRESHNESS_RATE}/s"
        ),
        "meets_target": worker_rate >= TARGET_RATE and ratio >= TARGET_RATIO and p95 < TARGET_P95_S,
    }


def _clear(settings: Settings) -> None:
    client = connect(settings)
    try:
        for table in _MADE:
            client.command(f"TRUNCATE TABLE {table}")
    finally:
        client.close()
