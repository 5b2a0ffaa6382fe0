"""The gateway: the only door into the system. mTLS gRPC in, identity-stamped intervals out to Kafka.

A batch is acknowledged only after the broker holds every accepted record of it; refused records get a
reason each and do not hold back the rest. When the broker is away, the answer is UNAVAILABLE and
nothing is acknowledged, so the collector keeps its spool.

Collectors may report how many intervals wait in their spool in the gRPC request metadata header
`x-productimon-spool-depth` (a non-negative integer, with each SendBatch call or once per Upload
stream); it feeds the `productimon_collector_spool_depth` histogram and is otherwise ignored, as is
any value that is not such an integer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from clickhouse_connect.driver.client import Client
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gateway.accounts_service import AccountsService, Authority, DevicesService, device_identity
from gateway.identity_store import IdentityStore
from gateway.pki import DeviceIdentity, ensure_stack_pki
from gateway.producer import BrokerUnavailable, IntervalProducer
from gateway.proto import accounts_pb2, accounts_pb2_grpc, ingest_pb2, ingest_pb2_grpc
from gateway.stamping import stamp_batch
from gateway.tokens import ensure_signing_key
from infra import metrics
from infra.cli import command
from infra.settings import Settings, load_settings
from warehouse.client import connect
from warehouse.writes import upsert_devices

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
SPOOL_DEPTH_HEADER = "x-productimon-spool-depth"

# How a refused call is counted in productimon_gateway_batches_total{outcome}.
_OUTCOME_OF_STATUS = {
    grpc.StatusCode.UNAVAILABLE: "unavailable",
    grpc.StatusCode.INVALID_ARGUMENT: "invalid",
    grpc.StatusCode.UNAUTHENTICATED: "unauthenticated",
    grpc.StatusCode.PERMISSION_DENIED: "revoked",
}


def observe_spool_depth(context: grpc.aio.ServicerContext) -> None:
    """Record the spool depth a collector reported in the request metadata, if it sent a usable one."""
    for key, value in context.invocation_metadata() or ():
        if key == SPOOL_DEPTH_HEADER:
            try:
                depth = int(value)
            except (TypeError, ValueError):
                return
            if depth >= 0:
                metrics.COLLECTOR_SPOOL_DEPTH.observe(depth)
            return


class IngestService(ingest_pb2_grpc.IngestServicer):
    def __init__(self, producer: IntervalProducer, store: IdentityStore, max_batch: int) -> None:
        self._producer = producer
        self._store = store
        self._max_batch = max_batch

    async def _identity(self, context: grpc.aio.ServicerContext) -> DeviceIdentity:
        # Checked on every batch: a device revoked a moment ago is refused from its next batch on.
        return await device_identity(context, self._store)

    async def _ingest(
        self, batch: ingest_pb2.Batch, identity: DeviceIdentity, context: grpc.aio.ServicerContext
    ) -> ingest_pb2.BatchAck:
        if len(batch.intervals) > self._max_batch:
            size, limit = len(batch.intervals), self._max_batch
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"batch {batch.batch_id} has {size} records; at most {limit} are allowed per batch",
            )
        stamped = stamp_batch(batch.intervals, identity, int(time.time() * 1000))
        try:
            if stamped.values:
                with metrics.GATEWAY_BROKER_SEND_SECONDS.time():
                    await self._producer.send(stamped.key, stamped.values)
        except BrokerUnavailable as exc:
            log.warning("batch %s from device %s not taken: %s", batch.batch_id, identity.device_id, exc)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the broker is unavailable; retry later")
        if stamped.errors:
            log.info(
                "device %s batch %s: %d records refused, first: %s",
                identity.device_id,
                batch.batch_id,
                len(stamped.errors),
                stamped.errors[0].reason,
            )
            refused: dict[str, int] = {}
            for error in stamped.errors:
                label = metrics.refusal_label(error.reason)
                refused[label] = refused.get(label, 0) + 1
            for label, count in refused.items():
                metrics.GATEWAY_REFUSED.labels(label).inc(count)
        metrics.GATEWAY_ACCEPTED.inc(stamped.accepted)
        metrics.GATEWAY_BATCHES.labels("acked").inc()
        return ingest_pb2.BatchAck(
            batch_id=batch.batch_id,
            accepted=stamped.accepted,
            errors=[ingest_pb2.RecordError(index=e.index, reason=e.reason) for e in stamped.errors],
        )

    async def _counted(self, batch: ingest_pb2.Batch, context: grpc.aio.ServicerContext) -> ingest_pb2.BatchAck:
        try:
            identity = await self._identity(context)
            return await self._ingest(batch, identity, context)
        except grpc.aio.AbortError:
            metrics.GATEWAY_BATCHES.labels(_OUTCOME_OF_STATUS.get(context.code(), "invalid")).inc()
            raise

    async def SendBatch(self, request, context):  # noqa: N802 (gRPC method name)
        observe_spool_depth(context)
        return await self._counted(request, context)

    async def Upload(self, request_iterator, context) -> AsyncIterator[ingest_pb2.BatchAck]:  # noqa: N802
        observe_spool_depth(context)
        async for batch in request_iterator:
            yield await self._counted(batch, context)


class Gateway:
    """The gateway server, its producer and identity store, started and stopped together."""

    def __init__(self, settings: Settings, *, store: IdentityStore | None = None) -> None:
        self.settings = settings
        self.producer = IntervalProducer(
            settings.kafka_bootstrap, settings.intervals_topic, send_timeout_s=settings.gateway_send_timeout_seconds
        )
        self.store = store or IdentityStore(settings.identity_store_path)
        self.server: grpc.aio.Server | None = None
        self._warehouse: Client | None = None
        self._metrics = None

    def _warehouse_client(self) -> Client:
        if self._warehouse is None:
            self._warehouse = connect(self.settings)
        return self._warehouse

    async def start(self) -> None:
        s = self.settings
        pki = ensure_stack_pki(s.pki_dir, ["localhost", "127.0.0.1", s.gateway_host])
        await self.producer.start()
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ]
        )
        authority = Authority(
            self.store,
            pki,
            ensure_signing_key(s.keys_dir),
            s.token_ttl_seconds,
            s.device_cert_days,
            self._warehouse_client,
            lambda key, event: self.producer.publish(s.identity_topic, key, event),
            s.trusted_proxy_networks,
        )
        ingest_pb2_grpc.add_IngestServicer_to_server(
            IngestService(self.producer, self.store, s.gateway_max_batch), server
        )
        accounts_pb2_grpc.add_AccountsServicer_to_server(AccountsService(authority), server)
        accounts_pb2_grpc.add_DevicesServicer_to_server(DevicesService(authority), server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        services = (
            ingest_pb2.DESCRIPTOR.services_by_name["Ingest"].full_name,
            accounts_pb2.DESCRIPTOR.services_by_name["Accounts"].full_name,
            accounts_pb2.DESCRIPTOR.services_by_name["Devices"].full_name,
        )
        reflection.enable_server_reflection(
            (*services, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
        )
        # Two doors: the mTLS port demands a device certificate; the public one serves clients that have
        # none yet (sign-up, login, enrollment). Each method checks what it needs, whichever port it came in on.
        key_pair = [(pki.server_key_pem, pki.server_cert_pem)]
        mtls = grpc.ssl_server_credentials(key_pair, root_certificates=pki.ca_cert_pem, require_client_auth=True)
        public = grpc.ssl_server_credentials(key_pair)
        for port, creds in ((s.gateway_port, mtls), (s.gateway_public_port, public)):
            if not server.add_secure_port(f"{s.gateway_host}:{port}", creds):
                raise OSError(f"cannot listen on {s.gateway_host}:{port}")
        await server.start()
        self._metrics = metrics.serve_metrics(s.metrics_host, s.gateway_metrics_port)
        self._mirror = asyncio.create_task(self._mirror_all_devices())
        for name in (*services, ""):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.server = server

    async def _mirror_all_devices(self) -> None:
        """Copy every device to the warehouse once at start: repairs copies missed while it was away."""
        rows = [
            (user.id, d.id, d.name, d.os, d.os_version, d.revoked)
            for user in self.store.list_users()
            for d in self.store.list_devices(user.id)
        ]
        try:
            await asyncio.to_thread(upsert_devices, self._warehouse_client(), rows)
        except Exception as exc:  # best effort, like every copy of a device to the warehouse
            log.warning("could not copy the devices to the warehouse: %s", exc)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Finish in-flight batches, then let the producer flush."""
        if self.server is not None:
            await self.server.stop(grace_s)
            self.server = None
        metrics.stop_metrics(self._metrics)
        self._metrics = None
        await self.producer.stop()
        if self._warehouse is not None:
            self._warehouse.close()
        self.store.close()

    def write_offsets(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps({"topic": self.settings.intervals_topic, "last_offsets": self.producer.last_offsets})
        )


async def serve(settings: Settings, offsets_file: Path | None) -> None:
    gateway = Gateway(settings)
    await gateway.start()
    print(
        f"gateway listening on {settings.gateway_address} (mTLS) and {settings.gateway_public_address} (TLS)",
        flush=True,
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("stopping: finishing in-flight batches")
    await gateway.stop()
    if offsets_file is not None:
        gateway.write_offsets(offsets_file)


@command("productimon-gateway")
def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="productimon-gateway", description="Run the ingest gateway.")
    parser.add_argument(
        "--offsets-file", type=Path, help="on a clean stop, write the last offset written per partition here"
    )
    args = parser.parse_args()
    settings = load_settings()
    try:
        asyncio.run(serve(settings, args.offsets_file))
    except BrokerUnavailable as exc:
        raise SystemExit(f"productimon-gateway: error: {exc}") from None
    return 0
