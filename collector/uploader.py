"""Delivering the spool to the gateway: oldest first, in batches, deleting only what was acknowledged.

While the gateway (or its broker) is away, nothing is deleted and the uploader waits with exponential
backoff and jitter, so a fleet of collectors coming back online does not arrive in lockstep.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from collector.spool import Spool
from collector.transport import DeviceIngest, retry_after_s
from collector.wire import RpcError, StatusCode, rpc_reason
from schemas.contract import SPOOL_MAX_HOLD_MS

log = logging.getLogger(__name__)

# Per-record refusals the gateway will repeat forever: keeping such a record would block the spool.
_RETRYABLE = {StatusCode.UNAVAILABLE, StatusCode.DEADLINE_EXCEEDED, StatusCode.RESOURCE_EXHAUSTED}


@dataclass(frozen=True)
class Backoff:
    first_s: float = 1.0
    max_s: float = 300.0

    def delay(self, failures: int, rng: random.Random) -> float:
        """Full jitter: a random wait up to the exponential bound for this many failures in a row."""
        bound = min(self.max_s, self.first_s * 2 ** min(failures, 30))
        return rng.uniform(0, bound)


@dataclass
class UploadHealth:
    """What the uploader last met, for `status`: the last failure (reason, when) until a batch goes through
    again, and the gateway's reason once it refused the device itself (revoked, or its account deleted)."""

    address: str
    last_error: str | None = None
    last_error_ms: int | None = None
    gone: str | None = None

    def failed(self, exc: RpcError, now_ms: int) -> None:
        self.last_error = rpc_reason(exc)
        self.last_error_ms = now_ms

    def succeeded(self) -> None:
        self.last_error = self.last_error_ms = None


@dataclass
class UploadResult:
    sent: int = 0
    accepted: int = 0
    refused: int = 0


def upload_once(spool: Spool, client: DeviceIngest, batch_size: int = 500) -> UploadResult:
    """Send the oldest batch and acknowledge it; returns what happened. Raises collector.wire.RpcError when the
    gateway did not answer with an acknowledgement (nothing is deleted then)."""
    batch = spool.next_batch(batch_size)
    if not batch:
        return UploadResult()
    ack = client.send_batch([item.payload for item in batch], batch_id=batch[0].seq, spool_depth=spool.depth)
    for error in ack.errors:
        log.warning("the gateway refused interval %d for good: %s", batch[error.index].seq, error.reason)
    # Every record of an acknowledged batch is either stored or refused for good: both leave the spool.
    spool.acknowledge(item.seq for item in batch)
    return UploadResult(sent=len(batch), accepted=ack.accepted, refused=len(ack.errors))


def run_uploader(
    spool: Spool,
    connect: Callable[[], DeviceIngest],
    stop: threading.Event,
    backoff: Backoff = Backoff(),
    idle_wait_s: float = 5.0,
    rng: random.Random | None = None,
    reconnect: threading.Event | None = None,
    batch_size: int = 500,
    wake: threading.Event | None = None,
    health: UploadHealth | None = None,
    on_gone: Callable[[str], None] | None = None,
) -> None:
    """Upload until `stop` is set: as fast as the gateway takes batches, waiting when the spool is empty,
    backing off while the gateway is away. Setting `reconnect` makes the next batch use a new connection
    (new credentials after a renewal); setting `wake` ends a wait for new intervals early (set it with `stop`).

    `health` records each failure and success for `status`. When the gateway refuses the device itself
    (PERMISSION_DENIED: revoked, or its account deleted) nothing it holds can ever be delivered: the uploader
    calls `on_gone` with the gateway's reason and stops."""
    rng = rng or random.Random()
    wake = wake or stop
    failures = 0
    client: DeviceIngest | None = None
    while not stop.is_set():
        # What the spool held past its maximum age would only be refused: drop it here, counted.
        spool.expire(int(time.time() * 1000) - SPOOL_MAX_HOLD_MS)
        if reconnect is not None and reconnect.is_set():
            reconnect.clear()
            if client is not None:
                client.close()
                client = None
        try:
            client = client or connect()
            result = upload_once(spool, client, batch_size)
        except RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            if health is not None:
                health.failed(exc, int(time.time() * 1000))
            if code is StatusCode.PERMISSION_DENIED and on_gone is not None:
                reason = exc.details() or "this device was refused"
                log.error("the gateway refused this device for good: %s", reason)
                if health is not None:
                    health.gone = reason
                on_gone(reason)
                break
            if code is not None and code not in _RETRYABLE:
                log.error("the gateway refused the upload (%s): %s", code.name, exc.details())
            failures += 1
            wait = backoff.delay(failures, rng)
            asked = retry_after_s(exc)
            if asked is not None:  # the gateway is busy and said how long: wait that, spread a little
                wait = asked * rng.uniform(1.0, 1.25)
            log.info("gateway unavailable (%s); retrying in %.1fs", code.name if code else exc, wait)
            if client is not None:
                client.close()
                client = None
            stop.wait(wait)
            continue
        failures = 0
        if health is not None and result.sent:
            health.succeeded()
        if result.sent == 0:
            wake.wait(idle_wait_s)
            if wake is not stop:
                wake.clear()
    if client is not None:
        client.close()
