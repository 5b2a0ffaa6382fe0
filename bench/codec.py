"""What the codec's speed-only code buys, each piece against what it stands in for, in the same run:

- the compiled 32-bit int check on decoding (schemas/codec.py `_compile_int_check`) against the full schema
  checker;
- the gateway's StampedBatch made by concatenating the interval bytes it received (`stamp_encoded_batch`) against
  encoding the decoded intervals again (`encode_stamped_batch`), which it falls back to for older versions.

Decoding is the hot path: the gateway decodes every interval it receives, the worker every record it reads.
fastavro reads an over-long varint as a bigger int rather than failing, so every decoded record is checked;
the compiled check looks at the int fields only, the full checker walks every field. Both give the same
answer (tests/unit/test_codec.py). The compiled check covers records of plain fields, which is what the gateway
decodes (one ActivityInterval per record of a batch); a StampedBatch holds an array, which the compiled check
does not look into, so the worker's decode uses the full checker either way: its two figures should agree (a
ratio near 1), which shows the comparison is fair. Figures are medians of
ROUNDS rounds, each timing N decodes both ways, interleaved so the machine's noise falls on both alike.

(The encoder had a similar pre-check; encoding is not on a hot path — the gateway forwards the bytes it
received and encodes only what normalising changed — so it was removed rather than kept for 2 µs.)
"""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import replace
from functools import partial
from typing import Any

from schemas import codec

ROUNDS = 15
N_INTERVALS = 20_000
N_BATCHES = 40
BATCH = 1000
TARGET_RATIO = 1.2  # each piece is kept only if it makes its path at least this much faster


def _interval(seq: int) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "device_seq": seq,
        "start": 1_767_000_000_000 + seq * 5_000,
        "end": 1_767_000_004_000 + seq * 5_000,
        "app": "Code",
        "title": f"module_{seq % 97}.py - productimon - Visual Studio Code",
        "url": None if seq % 3 else "https://docs.python.org/3/library/",
        "keystrokes": seq % 90,
        "clicks": seq % 7,
        "idle": seq % 13 == 0,
    }


def _with_full_check(readers: dict[bytes, Any]) -> dict[bytes, Any]:
    """The same readers, their int check replaced by the full checker (what the code did without it)."""
    return {
        fp: replace(r, target=replace(r.target, ints_fit=partial(codec._fits, r.target.check)))
        for fp, r in readers.items()
    }


def _per_item_us(work, data: Any, n: int, items: int) -> float:
    began = time.perf_counter()
    for _ in range(n):
        work(data)
    return (time.perf_counter() - began) / (n * items) * 1e6


def run(say) -> dict:
    interval = codec.encode_interval(_interval(7))
    batch = codec.encode_stamped_batch(
        {"user_id": str(uuid.uuid4()), "device_id": str(uuid.uuid4()), "received_at": 1_767_000_000_000}
        | {"intervals": [_interval(i) for i in range(BATCH)]}
    )
    fast_iv = partial(codec._decode, codec._INTERVAL_READERS, "ActivityInterval")
    full_iv = partial(codec._decode, _with_full_check(codec._INTERVAL_READERS), "ActivityInterval")
    fast_b = partial(codec._decode, codec._BATCH_READERS, "StampedBatch")
    full_b = partial(codec._decode, _with_full_check(codec._BATCH_READERS), "StampedBatch")
    assert fast_iv(interval) == full_iv(interval) and fast_b(batch) == full_b(batch)
    encoded = [codec.encode_interval(_interval(i)) for i in range(BATCH)]
    decoded = [codec.decode_interval(e) for e in encoded]
    identity = {"user_id": "u" * 36, "device_id": "d" * 36, "received_at": 1_767_000_000_000}
    stamp = partial(codec.stamp_encoded_batch, identity["user_id"], identity["device_id"], identity["received_at"])
    assert stamp(encoded) == codec.encode_stamped_batch({**identity, "intervals": decoded})
    names = ("interval_fast", "interval_full", "batch_fast", "batch_full", "stamp_concatenated", "stamp_encoded")
    figures: dict[str, list[float]] = {name: [] for name in names}
    for r in range(ROUNDS):
        figures["interval_fast"].append(_per_item_us(fast_iv, interval, N_INTERVALS, 1))
        figures["interval_full"].append(_per_item_us(full_iv, interval, N_INTERVALS, 1))
        figures["batch_fast"].append(_per_item_us(fast_b, batch, N_BATCHES, BATCH))
        figures["batch_full"].append(_per_item_us(full_b, batch, N_BATCHES, BATCH))
        figures["stamp_concatenated"].append(_per_item_us(stamp, encoded, N_BATCHES, BATCH))
        again = {**identity, "intervals": decoded}
        figures["stamp_encoded"].append(_per_item_us(codec.encode_stamped_batch, again, N_BATCHES, BATCH))
        say(f"round {r + 1}/{ROUNDS}")
    med = {k: statistics.median(v) for k, v in figures.items()}
    stamp_ratio = med["stamp_encoded"] / med["stamp_concatenated"]
    interval_ratio = med["interval_full"] / med["interval_fast"]
    batch_ratio = med["batch_full"] / med["batch_fast"]
    return {
        "data": f"one ActivityInterval ({len(interval)} B) and one StampedBatch of {BATCH} intervals ({len(batch)} B)",
        "rounds": ROUNDS,
        "gateway_decode_us_per_interval": {
            "with_int_check": round(med["interval_fast"], 2),
            "full_checker": round(med["interval_full"], 2),
        },
        "worker_decode_us_per_interval": {
            "with_int_check": round(med["batch_fast"], 2),
            "full_checker": round(med["batch_full"], 2),
        },
        "gateway_speedup": round(interval_ratio, 2),
        "gateway_saved_us_per_interval": round(med["interval_full"] - med["interval_fast"], 2),
        # The batch's int check is the full checker on both sides: a ratio near 1 (noise only).
        "worker_ratio_same_checker": round(batch_ratio, 2),
        "gateway_stamp_us_per_interval": {
            "concatenated": round(med["stamp_concatenated"], 2),
            "encoded_again": round(med["stamp_encoded"], 2),
        },
        "stamp_speedup": round(stamp_ratio, 2),
        "target_speedup": TARGET_RATIO,
        "target": f"each speed-only piece >= {TARGET_RATIO}x what it stands in for (medians of {ROUNDS} rounds)",
        "meets_target": interval_ratio >= TARGET_RATIO and stamp_ratio >= TARGET_RATIO,
    }
