"""An adversarial device: schema-valid batches of hostile values sent through the real gateway, for the fuzz test
(tests/e2e/test_fuzz_ingest.py) and the fuzz soak benchmark (bench/fuzz_soak.py). Needs the `dev` extra
(hypothesis), which draws the values.

Each batch mixes fresh, repeated and reused device_seqs and event ids (in every form a UUID can be written, and
some that are none), times from 1970 to far in the future, counts up to the Avro int's limits, strings of control,
bidirectional-formatting and combining characters of every length, and URLs of every shape, now and then a
record that is not an interval at all. It remembers what the gateway accepted and what it refused with which
reason, so a test can check that every accepted interval is stored and nothing else is.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from collector.transport import IngestClient
from schemas.codec import encode_interval
from schemas.contract import canonical_uuid

_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
DAY_MS = 86_400_000


def refused_after_sending(reason: str) -> bool:
    """Whether the worker refused it after the gateway had sent it on (its device_seq counts as used)."""
    return reason.startswith("the warehouse refused it") or "already stored under device_seq" in reason


AVRO_INT = (-(2**31), 2**31 - 1)
AVRO_LONG = (-(2**63), 2**63 - 1)

HOSTILE_CHARACTERS = list("\x00\x07\x1b\x7f\x85\x9b\u202a\u202e\u2066\u2069\u200e\u200f\u061c\u2028\u2029\ufeff\t\r\n")
ODD_URLS = [
    "https://user:pw@www.example.com/path?q=secret#frag",
    "notes.txt",
    "a sentence, not an address",
    "file:///home/me/secret.pdf",
    "javascript:alert(1)",
    "http://[::1]:8080/x",
    "http://127.1/",
    "http://xn--/",
    "https://exa mple.com/",
    "HTTPS://WWW.GitHub.com/org/repo",
    "localhost:3000/app",
    "https://" + "a" * 300 + ".com/",
    "https://example.com/" + "p" * 5000,
    "",
    "   ",
]


def hostile_text(max_size: int = 1500) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=40),
        st.text(
            alphabet=st.one_of(st.sampled_from(HOSTILE_CHARACTERS), st.characters(codec="utf-8")), max_size=max_size
        ),
        st.sampled_from(["", " ", "Code", "e\u0301", "\u202eedoC", "Fire\x00fox"]),
    )


@dataclass
class FuzzDevice:
    """What has been offered and what came back; `draw` is hypothesis's `data.draw`."""

    address: str
    creds: object
    now_ms: Callable[[], int] = lambda: int(time.time() * 1000)
    next_seq: int = 0
    event_ids: list[str] = field(default_factory=list)
    # (device_seq, canonical event id) of every interval the gateway accepted.
    accepted: set[tuple[int, str]] = field(default_factory=set)
    refusals: list[str] = field(default_factory=list)
    batches: int = 0
    sent: int = 0
    retries: int = 0

    # Every draw has the same shape whatever the device's state (hypothesis checks that a run's draws do not
    # depend on anything outside it); the state is applied to the values drawn afterwards.

    def _seq(self, draw) -> int:
        kind = draw(st.sampled_from(["next"] * 14 + ["reused", "reused", "negative", "huge", "any"]))
        step = draw(st.integers(0, 10**9))
        if kind == "negative":
            return -1 - step
        if kind == "reused" and self.next_seq:
            return step % (self.next_seq + 1)
        if kind == "huge":  # a jump ahead, small enough that the sequence never runs out of longs
            return self.next_seq + step
        if kind == "any":
            return draw(st.integers(AVRO_LONG[0], 0)) + step
        self.next_seq += 1 + step % 3
        return self.next_seq

    def _event_id(self, draw) -> str:
        kind = draw(st.sampled_from(["fresh"] * 12 + ["again", "again", "braces", "upper", "hex", "urn", "junk"]))
        number = draw(st.integers(0, 2**128 - 1))
        value, junk = str(uuid.UUID(int=number)), draw(st.text(max_size=40))
        if kind == "again" and self.event_ids:
            return self.event_ids[-1 - number % min(len(self.event_ids), 50)]
        if kind == "junk":
            return junk
        self.event_ids.append(value)
        forms = {
            "braces": f"{{{value}}}",
            "upper": value.upper(),
            "hex": value.replace("-", ""),
            "urn": f"urn:uuid:{value}",
        }
        return forms.get(kind, value)

    def _times(self, draw) -> tuple[int, int]:
        kind = draw(st.sampled_from(["recent"] * 14 + ["old", "future", "backwards", "long", "any"]))
        offset, length = draw(st.integers(0, 400 * DAY_MS)), draw(st.integers(0, 3_600_000))
        anywhere = draw(st.tuples(st.integers(*AVRO_LONG), st.integers(*AVRO_LONG)))
        now = self.now_ms()
        if kind == "any":
            return anywhere
        if kind == "recent":
            start = now - 3_600_000 - offset % (29 * DAY_MS)
        elif kind == "old":
            start = now - 31 * DAY_MS - offset
        elif kind == "future":
            start = now + 6 * 60_000 + offset
        elif kind == "backwards":
            return now - offset % DAY_MS, now - offset % DAY_MS - 1 - length
        else:  # longer than a day
            return now - 3 * DAY_MS, now - 3 * DAY_MS + DAY_MS + 1 + length
        return start, start + length

    def _count(self, draw, start: int, end: int) -> int:
        wild, value = draw(st.sampled_from(["ok"] * 9 + ["wild"])), draw(st.integers(*AVRO_INT))
        plausible = max(0, min(end - start, 3_600_000)) // 100  # within 10 a second
        return value if wild == "wild" else abs(value) % (plausible + 1)

    def draw_interval(self, draw) -> dict:
        start, end = self._times(draw)
        return {
            "event_id": self._event_id(draw),
            "device_seq": self._seq(draw),
            "start": start,
            "end": end,
            "app": draw(hostile_text(400)),
            "title": draw(st.none() | hostile_text()),
            "url": draw(st.none() | st.sampled_from(ODD_URLS) | hostile_text(200)),
            "keystrokes": self._count(draw, start, end),
            "clicks": self._count(draw, start, end),
            "idle": draw(st.booleans()),
        }

    def draw_batch(self, draw) -> list[bytes]:
        records = []
        for _ in range(draw(st.integers(1, 60))):
            if draw(st.sampled_from(["interval"] * 30 + ["junk"])) == "junk":
                records.append(draw(st.binary(max_size=64)))  # not an interval at all
            else:
                records.append(encode_interval(self.draw_interval(draw)))
        return records

    def run_for(self, seconds: float, progress: Callable[[str], None] = lambda message: None) -> None:
        """Send hostile batches until `seconds` have passed."""
        deadline = time.monotonic() + seconds
        with IngestClient(self.address, self.creds, timeout_s=30) as client:
            # Each example is one batch; rounds of them until the deadline (one long example would overrun
            # hypothesis's buffer). No shrinking: the stack's state moves on between examples.
            @settings(
                max_examples=20,
                phases=[Phase.generate],
                database=None,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(st.data())
            def one_batch(data):
                self.send(client, self.draw_batch(data.draw), deadline + 60)

            reported = time.monotonic()
            while time.monotonic() < deadline:
                one_batch()
                if time.monotonic() - reported > 30:
                    reported = time.monotonic()
                    progress(f"fuzzer: {self.batches} batches, {self.sent} records, {len(self.accepted)} accepted")

    def send(self, client: IngestClient, records: list[bytes], deadline: float) -> None:
        """One batch, sent again like a collector does while the gateway is busy; its outcome remembered."""
        from schemas.codec import CodecError, decode_interval

        while True:
            try:
                ack = client.send_batch(records, batch_id=self.batches)
                break
            except grpc.RpcError as exc:
                if exc.code() not in _RETRYABLE or time.monotonic() > deadline:
                    raise
                self.retries += 1
                time.sleep(0.2)
        self.batches += 1
        self.sent += len(records)
        refused = {e.index: e.reason for e in ack.errors}
        if len(records) - len(refused) != ack.accepted:
            raise AssertionError(
                f"batch {self.batches}: {ack.accepted} accepted but {len(refused)} of {len(records)} refused"
            )
        self.refusals += refused.values()
        for index, raw in enumerate(records):
            reason = refused.get(index)
            if reason is not None and not refused_after_sending(reason):
                continue
            try:
                interval = decode_interval(raw)
            except CodecError as exc:
                raise AssertionError(f"the gateway accepted a record that is no interval: {exc}") from None
            # After a jump ahead, go on above it, as a device whose counter jumped would; so also above what the
            # worker refused once it was sent (its seq is used).
            self.next_seq = max(self.next_seq, interval["device_seq"])
            if reason is None:
                self.accepted.add((interval["device_seq"], canonical_uuid(interval["event_id"])))
