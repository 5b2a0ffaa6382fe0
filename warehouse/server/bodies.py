"""Request and response bodies: a request body read as it arrives (sized or chunked) and undone of its
Content-Encoding, in large pieces so an insert streams instead of being held in memory; and a response body
compressed the cheapest way the client accepts."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import lz4.frame
import zstandard

from warehouse.server.errors import BAD_ARGUMENTS, CANNOT_DECOMPRESS, NOT_IMPLEMENTED, ClickHouseError

READ_SIZE = 1 << 20  # request bodies are read, decompressed and spooled in pieces of this size
_MAX_DISCARD_BYTES = 256 << 20  # an unwanted body is read and dropped up to this size to keep the connection


class RequestBody:
    """The request body as it arrives, sized or chunked, in large pieces; `finished` once fully read."""

    def __init__(self, rfile: Any, headers: Any) -> None:
        self._rfile = rfile
        self.finished = True
        self._chunks: Iterator[bytes] = iter(())
        if "chunked" in headers.get("Transfer-Encoding", "").lower():
            self.finished = False
            self._chunks = self._chunked()
        elif headers.get("Content-Length"):
            try:
                length = int(headers["Content-Length"])
            except ValueError:
                raise ClickHouseError.of(BAD_ARGUMENTS, "Content-Length is not a number") from None
            if length > 0:
                self.finished = False
                self._chunks = self._sized(length)

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def discard(self) -> bool:
        """Read and drop what is left, up to a limit; true when the connection can carry another request."""
        dropped = 0
        for chunk in self._chunks:
            dropped += len(chunk)
            if dropped > _MAX_DISCARD_BYTES:
                return False
        return self.finished

    def _sized(self, length: int) -> Iterator[bytes]:
        while length:
            chunk = self._rfile.read(min(length, READ_SIZE))
            if not chunk:
                raise ConnectionError("client closed the connection inside the request body")
            length -= len(chunk)
            yield chunk
        self.finished = True

    def _chunked(self) -> Iterator[bytes]:
        while True:
            line = self._rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0], 16)
            except ValueError:
                raise ConnectionError("malformed chunked request body") from None
            if size == 0:
                while self._rfile.readline(65536) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self.finished = True
                return
            while size:
                chunk = self._rfile.read(min(size, READ_SIZE))
                if not chunk:
                    raise ConnectionError("client closed the connection inside the request body")
                size -= len(chunk)
                yield chunk
            self._rfile.readline(3)


def decompressed(chunks: Iterable[bytes], encoding: str) -> Iterator[bytes]:
    """Undo Content-Encoding. clickhouse-connect compresses each insert block as its own frame."""
    if encoding in ("", "identity"):
        yield from chunks
        return
    try:
        if encoding == "zstd":
            zstd = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)
            for chunk in chunks:
                if out := zstd.decompress(chunk):
                    yield out
            return
        new_decompressor: Callable[[], Any] | None = {
            "lz4": lz4.frame.LZ4FrameDecompressor,
            "gzip": lambda: zlib.decompressobj(wbits=31),
            "deflate": zlib.decompressobj,
        }.get(encoding)
        if new_decompressor is None:
            raise ClickHouseError.of(NOT_IMPLEMENTED, f"Unsupported Content-Encoding {encoding[:40]!r}")
        decompressor = new_decompressor()
        for chunk in chunks:
            while chunk:
                if out := decompressor.decompress(chunk):
                    yield out
                if not decompressor.eof:
                    break
                chunk, decompressor = decompressor.unused_data, new_decompressor()
    except (RuntimeError, zlib.error, zstandard.ZstdError) as exc:
        raise ClickHouseError.of(CANNOT_DECOMPRESS, f"Cannot decompress the {encoding} request body: {exc}") from None


def compressed(body: bytes | memoryview, accept_encoding: str) -> tuple[bytes | memoryview, str | None]:
    """The response body in the cheapest encoding the client accepts, and its name; as it is when none."""
    # On loopback CPU matters more than bytes, so the cheapest method the client accepts wins.
    accepted = {part.split(";", 1)[0].strip().lower() for part in accept_encoding.split(",")}
    if "lz4" in accepted:
        return lz4.frame.compress(body), "lz4"
    if "zstd" in accepted:
        return zstandard.ZstdCompressor(level=1).compress(body), "zstd"
    if "gzip" in accepted:
        gzip = zlib.compressobj(1, wbits=31)
        return gzip.compress(body) + gzip.flush(), "gzip"
    if "deflate" in accepted:
        return zlib.compress(body, 1), "deflate"
    return body, None
