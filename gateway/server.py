"""The gateway: the only door into the system. mTLS gRPC in, identity-stamped intervals out to Kafka.

A batch is acknowledged only after the broker holds every accepted record of it; refused records get a
reason each and do not hold back the rest. When the broker is away, the answer is UNAVAILABLE and
nothing is acknowledged, so the collector keeps its spool.
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
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gateway.pki import DeviceIdentity, PkiError, ensure_stack_pki, identity_from_certificate
from gateway.producer import BrokerUnavailable, IntervalProducer
from gateway.proto import ingest_pb2, ingest_pb2_grpc
from gateway.stamping import stamp_batch
from infra.cli import command
from infra.settings import Settings, load_settings

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class IngestService(ingest_pb2_grpc.IngestServicer):
    def __init__(self, producer: IntervalProducer, max_batch: int) -> None:
        self._producer = producer
        self._max_batch = max_batch

    async def _identity(self, context: grpc.aio.ServicerContext) -> DeviceIdentity:
        certs = context.auth_context().get("x509_pem_cert")
        if not certs:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a device certificate is required")
        try:
            return identity_from_certificate(certs[0])
        except PkiError as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"device certificate refused: {exc}")
            raise  # unreachable: abort raises

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
        return ingest_pb2.BatchAck(
            batch_id=batch.batch_id,
            accepted=len(stamped.values),
            errors=[ingest_pb2.RecordError(index=e.index, reason=e.reason) for e in stamped.errors],
        )

    async def SendBatch(self, request, context):  # noqa: N802 (gRPC method name)
        identity = await self._identity(context)
        return await self._ingest(request, identity, context)

    async def Upload(self, request_iterator, context) -> AsyncIterator[ingest_pb2.BatchAck]:  # noqa: N802
        identity = await self._identity(context)
        async for batch in request_iterator:
            yield await self._ingest(batch, identity, context)


def server_credentials(ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> grpc.ServerCredentials:
    """TLS that refuses any client without a certificate signed by the project's CA."""
    return grpc.ssl_server_credentials([(key_pem, cert_pem)], root_certificates=ca_pem, require_client_auth=True)


class Gateway:
    """The gateway server and its producer, started and stopped together."""

    def __init__(self, settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
        self.settings = settings
        self._host = host or settings.gateway_host
        self._port = settings.gateway_port if port is None else port
        self.producer = IntervalProducer(
            settings.kafka_bootstrap, settings.intervals_topic, send_timeout_s=settings.gateway_send_timeout_seconds
        )
        self.server: grpc.aio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        pki = ensure_stack_pki(self.settings.pki_dir, ["localhost", "127.0.0.1", self._host])
        await self.producer.start()
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ]
        )
        ingest_pb2_grpc.add_IngestServicer_to_server(
            IngestService(self.producer, self.settings.gateway_max_batch), server
        )
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        service_names = (
            ingest_pb2.DESCRIPTOR.services_by_name["Ingest"].full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        )
        reflection.enable_server_reflection(service_names, server)
        creds = server_credentials(pki.ca_cert_pem, pki.server_cert_pem, pki.server_key_pem)
        self.port = server.add_secure_port(f"{self._host}:{self._port}", creds)
        if not self.port:
            raise OSError(f"cannot listen on {self._host}:{self._port}")
        await server.start()
        for name in service_names[:1] + ("",):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.server = server

    async def stop(self, grace_s: float = 5.0) -> None:
        """Finish in-flight batches, then let the producer flush; record the offsets written."""
        if self.server is not None:
            await self.server.stop(grace_s)
            self.server = None
        await self.producer.stop()

    def write_offsets(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps({"topic": self.settings.intervals_topic, "last_offsets": self.producer.last_offsets})
        )


async def serve(settings: Settings, offsets_file: Path | None) -> None:
    gateway = Gateway(settings)
    await gateway.start()
    print(f"gateway listening on {settings.gateway_host}:{gateway.port} (mTLS)", flush=True)
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
