"""The Prometheus endpoints of the gateway and the worker count what happened, with bounded labels."""

from __future__ import annotations

import json
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.transport import IngestClient, channel_credentials
from gateway.server import SPOOL_DEPTH_HEADER
from infra.devices import new_user_device
from infra.processes import free_port
from schemas.codec import encode_interval
from schemas.wire import ingest_pb2, ingest_pb2_grpc
from tests.conftest import eventually, private_stack_running
from tests.e2e.test_pipeline import interval


@pytest.fixture(scope="module")
def metered_stack(tmp_path_factory):
    with private_stack_running(
        tmp_path_factory.mktemp("metered"),
        gateway_metrics_port=free_port(),
        worker_metrics_port=free_port(),
        gateway_max_batch=5,
        log_format="json",
    ) as stack:
        yield stack


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample on the endpoint, by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_gateway_counts_accepted_refused_and_spool_depth(metered_stack):
    settings = metered_stack.settings
    _, creds = new_user_device(settings)
    good = [encode_interval(interval(i, i * 10, 10, "Code")) for i in range(2)]
    with IngestClient(settings.gateway_address, creds) as client:
        ack = client.send_batch([good[0], b"not an interval", good[1]])
        assert ack.accepted == 2
        with pytest.raises(grpc.RpcError) as too_big:
            client.send_batch(good * 3)
        assert too_big.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with grpc.secure_channel(settings.gateway_address, channel_credentials(creds)) as channel:
        stub = ingest_pb2_grpc.IngestStub(channel)
        stub.SendBatch(ingest_pb2.Batch(batch_id=1), metadata=[(SPOOL_DEPTH_HEADER, "42")], timeout=30)
        stub.SendBatch(ingest_pb2.Batch(batch_id=2), metadata=[(SPOOL_DEPTH_HEADER, "lots")], timeout=30)
        stub.SendBatch(ingest_pb2.Batch(batch_id=3), metadata=[(SPOOL_DEPTH_HEADER, "-1")], timeout=30)

    samples = scrape(settings.gateway_metrics_port)
    assert samples[("productimon_gateway_intervals_accepted_total", ())] == 2
    assert samples[("productimon_gateway_intervals_refused_total", (("reason", "undecodable"),))] == 1
    assert samples[("productimon_gateway_intervals_refused_total", (("reason", "future"),))] == 0
    assert samples[("productimon_gateway_batches_total", (("outcome", "acked"),))] == 4
    assert samples[("productimon_gateway_batches_total", (("outcome", "invalid"),))] == 1
    assert samples[("productimon_gateway_broker_send_seconds_count", ())] == 1
    assert samples[("productimon_collector_spool_depth_count", ())] == 1
    assert samples[("productimon_collector_spool_depth_sum", ())] == 42


def test_refusal_labels_never_carry_free_text(metered_stack):
    reasons = {
        labels
        for (name, labels) in scrape(metered_stack.settings.gateway_metrics_port)
        if name == "productimon_gateway_intervals_refused_total"
    }
    allowed = {
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
    }
    assert {dict(labels)["reason"] for labels in reasons} == allowed


def test_worker_counts_what_it_stored(metered_stack):
    settings = metered_stack.settings
    _, creds = new_user_device(settings)
    with IngestClient(settings.gateway_address, creds) as client:
        assert client.send_batch([encode_interval(interval(i, i * 10, 10, "Mail")) for i in range(3)]).accepted == 3

    def stored() -> float:
        return scrape(settings.worker_metrics_port)[("productimon_worker_intervals_stored_total", ())]

    # The first test's two intervals and these three.
    assert eventually(lambda: stored() == 5, 60)
    samples = scrape(settings.worker_metrics_port)
    assert samples[("productimon_worker_batches_total", ())] >= 1
    assert samples[("productimon_worker_insert_seconds_count", ())] >= 1
    for step in ("decode", "filter", "dedupe", "insert", "save_state", "commit"):
        assert samples[("productimon_worker_step_seconds_count", (("step", step),))] >= 1, step
    assert samples[("productimon_worker_dead_letters_total", ())] == 0
    assert samples[("productimon_worker_intervals_dropped_total", (("reason", "revoked"),))] == 0


def test_worker_reports_consumer_lag_per_partition(metered_stack):
    def partitions() -> set[str]:
        samples = scrape(metered_stack.settings.worker_metrics_port)
        return {dict(labels)["partition"] for name, labels in samples if name == "productimon_worker_consumer_lag"}

    # Measured every 10 s; the embedded broker's highwater makes the value approximate, so only its presence
    # is asserted.
    assert eventually(lambda: partitions() == {str(p) for p in range(metered_stack.settings.topic_partitions)}, 30)


def test_worker_logs_json_lines_when_asked(metered_stack):
    log = (metered_stack.logs / "worker.log").read_text()
    lines = [json.loads(line) for line in log.splitlines()]
    assert any("Ready" in line["message"] for line in lines)
    assert all(line["process"] == "productimon-worker" for line in lines)
