"""The Prometheus metrics of the gateway and the stream workers, and the endpoint that serves them.

Labels are a small fixed set of words, never free text, user ids or device ids: a label value is a
time series, and a metric must not grow with the number of people or say who they are.
"""

from __future__ import annotations

import logging
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

# -- gateway ------------------------------------------------------------------------------------
GATEWAY_ACCEPTED = Counter(
    "productimon_gateway_intervals_accepted", "Intervals the gateway accepted and the broker holds."
)
GATEWAY_REFUSED = Counter(
    "productimon_gateway_intervals_refused", "Intervals the gateway refused, by reason.", ["reason"]
)
GATEWAY_BATCHES = Counter("productimon_gateway_batches", "Batches received, by how they were answered.", ["outcome"])
GATEWAY_PUSHBACKS = Counter(
    "productimon_gateway_pushbacks", "Batches refused with RESOURCE_EXHAUSTED because too much waited to be stored."
)
GATEWAY_STORE_WAIT_SECONDS = Histogram(
    "productimon_gateway_store_wait_seconds", "From sending a batch to the broker until the warehouse held it."
)
GATEWAY_BROKER_SEND_SECONDS = Histogram(
    "productimon_gateway_broker_send_seconds", "Time until the broker acknowledged a batch's records."
)
# Collectors report how many intervals wait in their spool; a growing spool is a gateway or network problem.
COLLECTOR_SPOOL_DEPTH = Histogram(
    "productimon_collector_spool_depth",
    "Intervals waiting in a collector's spool, as reported with its batches.",
    buckets=(0, 10, 100, 1_000, 10_000, 100_000, 1_000_000, float("inf")),
)

REFUSAL_REASONS = (
    "undecodable",
    "end_before_start",
    "too_long",
    "future",
    "too_old",
    "implausible_count",
    "repeated_event_id",
    "warehouse_refused",
    "out_of_order",
    "reused_seq",
    "bad_field",
    "other",
)
BATCH_OUTCOMES = ("acked", "unavailable", "invalid", "unauthenticated", "revoked", "busy")

# The readable reasons of schemas/contract.py, gateway/stamping.py, gateway/acks.py and the worker, by how they
# begin, to a label.
_REASON_PREFIXES = (
    ("not a readable ActivityInterval", "undecodable"),
    ("end is before start", "end_before_start"),
    ("interval is longer than", "too_long"),
    ("interval ends in the future", "future"),
    ("interval is too old", "too_old"),
    ("repeated event_id: ", "repeated_event_id"),
    ("the warehouse refused it", "warehouse_refused"),
    ("deleted: ", "deleted"),
    ("keystrokes exceed", "implausible_count"),
    ("clicks exceed", "implausible_count"),
    ("out of order: ", "out_of_order"),
    ("reused device_seq: ", "reused_seq"),
    ("repeated device_seq: ", "reused_seq"),
    ("event_id ", "bad_field"),
    ("device_seq ", "bad_field"),
    ("start ", "bad_field"),
    ("app ", "bad_field"),
    ("title ", "bad_field"),
    ("url ", "bad_field"),
    ("keystrokes ", "bad_field"),
    ("clicks ", "bad_field"),
)


def refusal_label(reason: str) -> str:
    """The bounded label for a refusal reason; "other" for one this table does not know yet."""
    for prefix, label in _REASON_PREFIXES:
        if reason.startswith(prefix):
            return label
    return "other"


# -- stream worker ------------------------------------------------------------------------------
WORKER_BATCHES = Counter("productimon_worker_batches", "Topic batches the worker processed.")
WORKER_STORED = Counter("productimon_worker_intervals_stored", "Intervals inserted into the warehouse.")
WORKER_DROPPED = Counter(
    "productimon_worker_intervals_dropped",
    "Intervals not stored: of revoked devices or deleted accounts, already stored (duplicate), a second "
    "interval under an event id its device already used (repeated_event_id), or in data a person deleted (deleted).",
    ["reason"],
)
WORKER_DEAD_LETTERS = Counter("productimon_worker_dead_letters", "Topic records sent to the dead-letter topic.")
WORKER_RETRIES = Counter(
    "productimon_worker_retries",
    "Warehouse writes that failed transiently (the warehouse away or busy) and were retried.",
)
WORKER_RETRYING_SECONDS = Gauge(
    "productimon_worker_retrying_seconds", "How long the worker has been retrying its current batch (0: it is not)."
)
WORKER_INSERT_SECONDS = Histogram(
    "productimon_worker_insert_seconds",
    "Time to insert one batch's intervals and sessions into the warehouse (successful attempt).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, float("inf")),
)
WORKER_STEP_SECONDS = Histogram(
    "productimon_worker_step_seconds",
    "Time spent in each step of a batch (stream_jobs/batch.py: decode, filter, dedupe, insert, save_state, commit).",
    ["step"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, float("inf")),
)
# Approximate on the embedded broker, which reports a partition's end as its last batch's first offset + 1.
WORKER_CONSUMER_LAG = Gauge(
    "productimon_worker_consumer_lag",
    "Records of the intervals topic not yet fetched, per assigned partition (highwater - position).",
    ["partition"],
)

# Every labelled series exists from the start, so a rate over it is defined before the first event.
for _reason in REFUSAL_REASONS:
    GATEWAY_REFUSED.labels(_reason)
for _outcome in BATCH_OUTCOMES:
    GATEWAY_BATCHES.labels(_outcome)
for _reason in ("revoked", "duplicate", "repeated_event_id"):
    WORKER_DROPPED.labels(_reason)


def serve_metrics(host: str, port: int) -> tuple[WSGIServer, Thread] | None:
    """Serve /metrics on host:port in a daemon thread; port 0 means metrics are off."""
    if not port:
        return None
    served = start_http_server(port, host)
    log.info("metrics on http://%s:%d/metrics", host, port)
    return served


def stop_metrics(served: tuple[WSGIServer, Thread] | None) -> None:
    if served is not None:
        server, thread = served
        server.shutdown()
        server.server_close()
        thread.join(5)
