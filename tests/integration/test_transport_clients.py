"""Every client built from the settings connects over TLS and logs in as itself, for real, on loopback.

Kafka: the real embedded broker (tansu) behind `tests.tls_front.KafkaScramFront`, which terminates TLS with a
certificate from the stack's own PKI and checks SCRAM logins (tansu 0.6.0 can do neither; see that module). The
warehouse: the real embedded server behind a TLS front. What a real Kafka's ACLs and a real ClickHouse's TLS
listener do is not run here (docs/transport-security.md, "What is tested where").
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from clickhouse_connect.driver.exceptions import OperationalError

from gateway.pki import create_ca, ensure_server_bundle
from gateway.producer import BrokerUnavailable, IntervalProducer
from infra.processes import free_port, wait_for_port
from infra.stack import tansu_binary
from infra.topics import ensure_topics
from plumbing.kafka_security import client_options
from plumbing.settings import Settings
from tests.tls_front import KafkaScramFront, TlsFront
from warehouse.client import connect

PASSWORDS = {"admin": "admin-pw", "gateway": "gateway-pw", "worker": "worker-pw"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A CA, a server certificate for 127.0.0.1 only (the name clients dial), and a second, unrelated CA."""
    root = tmp_path_factory.mktemp("transport")
    ca_cert, ca_key = create_ca()
    (root / "ca.crt").write_bytes(ca_cert)
    ensure_server_bundle(root / "server", ca_cert, ca_key, ["127.0.0.1"])
    (root / "other-ca.crt").write_bytes(create_ca("Someone else's CA")[0])
    return root


@pytest.fixture(scope="module")
def broker(pki: Path) -> Iterator[KafkaScramFront]:
    """tansu on a loopback port, reachable only through the TLS and SCRAM front, which it advertises."""
    upstream = free_port()
    users = {user: ("SCRAM-SHA-512", password) for user, password in PASSWORDS.items()}
    front = KafkaScramFront(upstream, str(pki / "server" / "server.crt"), str(pki / "server" / "server.key"), users)
    front.start()
    tansu = subprocess.Popen(
        [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{upstream}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{front.port}",
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", upstream, 30, "the broker")
        yield front
    finally:
        tansu.kill()
        tansu.wait(10)
        front.stop()


def _as(pki: Path, front: TlsFront, user: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": pki / "data",
        "broker_mode": "kafka",
        "kafka_bootstrap": f"127.0.0.1:{front.port}",
        "kafka_security": "sasl_ssl",
        "kafka_username": user,
        "kafka_password": PASSWORDS[user],
        "kafka_ca_file": str(pki / "ca.crt"),
        "topic_partitions": 2,
    }
    values.update(overrides)
    return Settings(**values)


async def test_every_kafka_client_logs_in_over_tls_as_its_own_user(pki, broker):
    admin, gateway, worker = (_as(pki, broker, user) for user in ("admin", "gateway", "worker"))

    # The topics job's admin client.
    await ensure_topics(admin)
    assert set(broker.logins) == {"admin"}

    # The gateway's producer, as the gateway builds it: an identity event and a batch.
    broker.logins.clear()
    producer = IntervalProducer(
        gateway.kafka_bootstrap, gateway.intervals_topic, send_timeout_s=10, options=client_options(gateway)
    )
    await producer.start()
    try:
        await producer.publish(gateway.identity_topic, b"user/u1", b"event")
        await producer.send(b"device-1", [b"one", b"two"])
    finally:
        await producer.stop()
    assert broker.logins and set(broker.logins) == {"gateway"}

    # The worker's own consumers (identity events, data-loss watch) take exactly these options.
    broker.logins.clear()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=worker.kafka_bootstrap, enable_auto_commit=False, **client_options(worker)
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(worker.intervals_topic, p) for p in range(2)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        values = [r.value for records in (await consumer.getmany(timeout_ms=5000)).values() for r in records]
    finally:
        await consumer.stop()
    assert values == [b"one", b"two"]
    assert broker.logins and set(broker.logins) == {"worker"}
    assert broker.refused == []


async def test_the_faust_app_logs_in_over_tls_as_the_worker(pki, broker):
    from stream_jobs.app import create_app

    worker = _as(pki, broker, "worker")
    app = create_app(worker)
    broker.logins.clear()
    # faust's own producer (dead letters) and its worker consumer, built by faust from broker_credentials.
    await app.producer.start()
    try:
        sent = await app.producer.send_and_wait(worker.deadletter_topic, b"k", b"dead", None, None, None)
    finally:
        await app.producer.stop()
    assert sent.topic == worker.deadletter_topic
    consumer = app.consumer._thread._create_worker_consumer(app.transport)
    await consumer.start()
    await consumer.stop()
    assert broker.logins and set(broker.logins) == {"worker"}


async def test_a_wrong_password_is_refused(pki, broker):
    gateway = _as(pki, broker, "gateway", kafka_password="not-the-password")
    producer = IntervalProducer(gateway.kafka_bootstrap, gateway.intervals_topic, options=client_options(gateway))
    with pytest.raises(BrokerUnavailable):
        await producer.start()
    await producer.stop()
    assert any(r.startswith("gateway: wrong password") for r in broker.refused)
    broker.refused.clear()


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"kafka_ca_file_from": "other-ca.crt"}, id="a certificate from another CA"),
        pytest.param({"kafka_bootstrap_host": "localhost"}, id="a certificate for another name"),
    ],
)
async def test_a_broker_certificate_that_does_not_check_out_is_refused(pki, broker, overrides):
    values: dict[str, object] = {}
    if "kafka_ca_file_from" in overrides:
        values["kafka_ca_file"] = str(pki / overrides["kafka_ca_file_from"])
    if "kafka_bootstrap_host" in overrides:
        values["kafka_bootstrap"] = f"{overrides['kafka_bootstrap_host']}:{broker.port}"
    gateway = _as(pki, broker, "gateway", **values)
    before = len(broker.logins)
    producer = IntervalProducer(gateway.kafka_bootstrap, gateway.intervals_topic, options=client_options(gateway))
    with pytest.raises(BrokerUnavailable):
        await producer.start()
    await producer.stop()
    assert len(broker.logins) == before, "no password may be sent to a server that did not prove who it is"


@pytest.fixture(scope="module")
def warehouse_front(pki: Path) -> Iterator[TlsFront]:
    from warehouse.server import WarehouseServer

    port = free_port()
    server = WarehouseServer(pki / "warehouse", port=port, user="productimon", password="pw")
    server.start()
    front = TlsFront(port, str(pki / "server" / "server.crt"), str(pki / "server" / "server.key")).start()
    try:
        yield front
    finally:
        front.stop()
        server.shutdown()


def _warehouse(pki: Path, front: TlsFront, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": pki / "data",
        "warehouse_host": "127.0.0.1",
        "warehouse_port": front.port,
        "warehouse_password": "pw",
        "warehouse_secure": True,
        "warehouse_ca_file": str(pki / "ca.crt"),
    }
    values.update(overrides)
    return Settings(**values)


def test_the_warehouse_client_speaks_https_and_checks_the_certificate(pki, warehouse_front):
    client = connect(_warehouse(pki, warehouse_front), with_database=False)
    try:
        assert client.command("SELECT 1 + 1") == 2
        assert client.url.startswith("https://")
    finally:
        client.close()


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"warehouse_ca_file": "other-ca.crt"}, id="a certificate from another CA"),
        pytest.param({"warehouse_host": "localhost"}, id="a certificate for another name"),
    ],
)
def test_a_warehouse_certificate_that_does_not_check_out_is_refused(pki, warehouse_front, overrides):
    if "warehouse_ca_file" in overrides:
        overrides = {**overrides, "warehouse_ca_file": str(pki / overrides["warehouse_ca_file"])}
    with pytest.raises(OperationalError):
        connect(_warehouse(pki, warehouse_front, **overrides), with_database=False)
