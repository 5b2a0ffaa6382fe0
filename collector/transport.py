"""The collector's channel to the gateway: mTLS gRPC with the device's own certificate.

`DeviceIngest` is the running collector's (collector/wire.py: no grpcio in the long-running process);
`IngestClient`, on grpcio, serves the short-lived commands, the tools and the tests. Both speak the same RPC."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from schemas.wire import ingest_pb2

if TYPE_CHECKING:
    import grpc

# Read by the gateway (gateway/server.py); not imported from there, so the collector needs no server code.
SPOOL_DEPTH_HEADER = "x-productimon-spool-depth"


def spool_depth_metadata(spool_depth: int | None) -> tuple[tuple[str, str], ...]:
    """The call metadata telling the gateway how many intervals wait on this device (its fleet metric)."""
    return () if spool_depth is None else ((SPOOL_DEPTH_HEADER, str(spool_depth)),)


# Trailing metadata of a RESOURCE_EXHAUSTED answer: how long (milliseconds) the gateway asks the device to wait.
RETRY_AFTER_HEADER = "x-productimon-retry-after-ms"


def retry_after_s(exc: object) -> float | None:
    """The wait the gateway asked for in a refused call's trailing metadata, in seconds (None: it named none)."""
    trailing = getattr(exc, "trailing_metadata", None)
    for key, value in (trailing() if callable(trailing) else None) or ():
        if key == RETRY_AFTER_HEADER:
            try:
                ms = int(value)
            except (TypeError, ValueError):
                return None
            return min(ms, 600_000) / 1000 if ms >= 0 else None
    return None


@dataclass(frozen=True)
class DeviceCredentials:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    # Where they were read from, when from files (`ssl` loads a certificate and key only from files).
    directory: Path | None = field(default=None, compare=False)

    @classmethod
    def from_dir(cls, directory: Path) -> DeviceCredentials:
        """A device bundle as `productimon-pki device` writes it: ca.crt, device.crt, device.key."""
        return cls(
            (directory / "ca.crt").read_bytes(),
            (directory / "device.crt").read_bytes(),
            (directory / "device.key").read_bytes(),
            directory,
        )


def device_channel(address: str, creds: DeviceCredentials):
    """A collector/wire.py channel to `address` with the device's certificate."""
    from collector.wire import open_channel

    return open_channel(address, creds.ca_pem, creds.cert_pem, creds.key_pem, creds.directory)


class DeviceIngest:
    """The running collector's ingest client (collector/wire.py): one connection, reused for every batch."""

    METHOD = "/productimon.ingest.v1.Ingest/SendBatch"

    def __init__(self, address: str, creds: DeviceCredentials, timeout_s: float = 30.0) -> None:
        self._channel = device_channel(address, creds)
        self._timeout_s = timeout_s

    def send_batch(
        self, records: Sequence[bytes], batch_id: int = 0, spool_depth: int | None = None
    ) -> ingest_pb2.BatchAck:
        metadata = spool_depth_metadata(spool_depth)
        batch = ingest_pb2.Batch(batch_id=batch_id, intervals=records)
        return self._channel.call(self.METHOD, batch, ingest_pb2.BatchAck, self._timeout_s, metadata)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> DeviceIngest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def channel_credentials(creds: DeviceCredentials) -> grpc.ChannelCredentials:
    import grpc

    return grpc.ssl_channel_credentials(
        root_certificates=creds.ca_pem, private_key=creds.key_pem, certificate_chain=creds.cert_pem
    )


class IngestClient:
    """Blocking client for the ingest service; one channel, reused for every batch."""

    def __init__(self, address: str, creds: DeviceCredentials, timeout_s: float = 30.0) -> None:
        import grpc

        from schemas.wire import ingest_pb2_grpc

        self._channel = grpc.secure_channel(
            address,
            channel_credentials(creds),
            options=[("grpc.max_send_message_length", 16 * 1024 * 1024)],
        )
        self._stub = ingest_pb2_grpc.IngestStub(self._channel)
        self._timeout_s = timeout_s

    def send_batch(
        self, records: Sequence[bytes], batch_id: int = 0, spool_depth: int | None = None
    ) -> ingest_pb2.BatchAck:
        """Send one batch; `spool_depth` (intervals waiting on this device) feeds the gateway's fleet metric."""
        metadata = spool_depth_metadata(spool_depth) or None
        return self._stub.SendBatch(
            ingest_pb2.Batch(batch_id=batch_id, intervals=records), timeout=self._timeout_s, metadata=metadata
        )

    def upload(self, batches: Iterable[Sequence[bytes]]) -> list[ingest_pb2.BatchAck]:
        """Stream batches; one acknowledgement per batch, in order."""
        requests = (ingest_pb2.Batch(batch_id=i, intervals=b) for i, b in enumerate(batches))
        return list(self._stub.Upload(requests, timeout=self._timeout_s * 10))

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> IngestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
