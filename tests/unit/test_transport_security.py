"""Transport security settings and the client options built from them (docs/transport-security.md)."""

from __future__ import annotations

import ast
import os
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.pki import create_ca, ensure_server_bundle, issue_server_certificate
from plumbing.cli import UserFacingError
from plumbing.kafka_security import client_options, faust_options
from plumbing.settings import ConfigError, Settings, is_loopback_address, load_settings
from warehouse.client import transport_options

REPO = Path(__file__).resolve().parents[2]
# Where the product's Kafka clients live; bench/ and tests/ run against the embedded broker only.
PRODUCT_PACKAGES = ("gateway", "stream_jobs", "infra", "warehouse", "dashboard", "collector", "schemas")


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    path = tmp_path / "ca.crt"
    path.write_bytes(create_ca()[0])
    return path


def _sasl(tmp_path: Path, ca_file: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path,
        "broker_mode": "kafka",
        "kafka_bootstrap": "kafka:9092",
        "kafka_security": "sasl_ssl",
        "kafka_username": "gateway",
        "kafka_password": "secret",
        "kafka_ca_file": str(ca_file),
    }
    values.update(overrides)
    return Settings(**values)


# -- settings --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address", ["127.0.0.1:9092", "127.0.0.53:1", "localhost:9092", "[::1]:9092", "127.0.0.1:1,localhost:2"]
)
def test_loopback_addresses(address):
    assert is_loopback_address(address)


@pytest.mark.parametrize(
    "address", ["0.0.0.0:9092", "10.0.0.5:9092", "kafka:9092", "[::]:9092", "127.0.0.1:1,10.0.0.1:2", "", ":9092"]
)
def test_addresses_that_are_not_loopback(address):
    assert not is_loopback_address(address)


@pytest.mark.parametrize("bootstrap", ["0.0.0.0:9092", "192.168.1.10:9092", "kafka:9092"])
def test_the_embedded_broker_may_listen_on_loopback_only(monkeypatch, tmp_path, bootstrap):
    monkeypatch.setenv("PRODUCTIMON_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PRODUCTIMON_KAFKA_BOOTSTRAP", bootstrap)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("invalid configuration: PRODUCTIMON_KAFKA_BOOTSTRAP:")
    assert "loopback" in message


def test_the_embedded_broker_is_plaintext_only(tmp_path, ca_file):
    with pytest.raises(ConfigError, match=r"PRODUCTIMON_KAFKA_SECURITY: the embedded broker speaks plaintext only"):
        load_settings(**{**_sasl(tmp_path, ca_file).model_dump(), "broker_mode": "embedded"})


@pytest.mark.parametrize(
    ("missing", "variable"),
    [("kafka_username", "PRODUCTIMON_KAFKA_USERNAME"), ("kafka_password", "PRODUCTIMON_KAFKA_PASSWORD")],
)
def test_sasl_ssl_needs_a_login(tmp_path, ca_file, missing, variable):
    values = {**_sasl(tmp_path, ca_file).model_dump(), missing: ""}
    with pytest.raises(ConfigError, match=rf"^invalid configuration: {variable}: required"):
        load_settings(**values)


@pytest.mark.parametrize("ca", ["", "/nonexistent/ca.crt"])
def test_sasl_ssl_needs_an_existing_ca_file(tmp_path, ca_file, ca):
    values = {**_sasl(tmp_path, ca_file).model_dump(), "kafka_ca_file": ca}
    with pytest.raises(ConfigError, match=r"^invalid configuration: PRODUCTIMON_KAFKA_CA_FILE: "):
        load_settings(**values)


@pytest.mark.parametrize("ca", ["", "/nonexistent/ca.crt"])
def test_a_secure_warehouse_needs_an_existing_ca_file(tmp_path, ca):
    with pytest.raises(ConfigError, match=r"^invalid configuration: PRODUCTIMON_WAREHOUSE_CA_FILE: "):
        load_settings(data_dir=tmp_path, warehouse_secure=True, warehouse_ca_file=ca)


def test_the_mechanism_is_one_of_the_two_scram_ones(tmp_path, ca_file):
    assert _sasl(tmp_path, ca_file).kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert _sasl(tmp_path, ca_file, kafka_sasl_mechanism="SCRAM-SHA-256").kafka_sasl_mechanism == "SCRAM-SHA-256"
    with pytest.raises(ConfigError, match="PRODUCTIMON_KAFKA_SASL_MECHANISM"):
        load_settings(**{**_sasl(tmp_path, ca_file).model_dump(), "kafka_sasl_mechanism": "PLAIN"})


def test_the_defaults_are_the_local_stack(tmp_path):
    settings = Settings(data_dir=tmp_path)
    assert (settings.broker_mode, settings.kafka_security, settings.warehouse_secure) == (
        "embedded",
        "plaintext",
        False,
    )
    assert is_loopback_address(settings.kafka_bootstrap)


# -- the options every client takes ----------------------------------------------------------------------


def test_plaintext_options_are_plaintext_and_carry_no_secret(tmp_path):
    settings = Settings(data_dir=tmp_path, kafka_password="unused")
    assert client_options(settings) == {"security_protocol": "PLAINTEXT"}
    assert faust_options(settings) == {}


def test_sasl_ssl_options_are_tls_checked_against_the_ca_then_scram(tmp_path, ca_file):
    options = client_options(_sasl(tmp_path, ca_file))
    assert options["security_protocol"] == "SASL_SSL"
    assert (options["sasl_mechanism"], options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "SCRAM-SHA-512",
        "gateway",
        "secret",
    )
    context: ssl.SSLContext = options["ssl_context"]
    assert context.check_hostname is True
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert [dict(c["subject"][0])["commonName"] for c in context.get_ca_certs()] == ["Productimon CA"]


def test_faust_gets_the_same_connection_as_every_other_client(tmp_path, ca_file):
    """faust builds its consumer, producer and admin client from broker_credentials with this one function."""
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    settings = _sasl(tmp_path, ca_file, kafka_username="worker", kafka_sasl_mechanism="SCRAM-SHA-256")
    through_faust = credentials_to_aiokafka_auth(faust_options(settings)["broker_credentials"])
    ours = client_options(settings)
    assert {k: v for k, v in through_faust.items() if k != "ssl_context"} == {
        k: v for k, v in ours.items() if k != "ssl_context"
    }
    assert through_faust["ssl_context"].verify_mode == ssl.CERT_REQUIRED


def test_the_worker_app_has_no_topic_of_its_own_to_be_granted(tmp_path, ca_file):
    """The worker's ACLs (infra/kafka/acls.sh) cover its group and the stack's topics, no faust-internal topic:
    with the leader topic disabled and no tables, faust creates none. A table or the leader topic would need a
    PREFIXED grant on the app id (docs/transport-security.md)."""
    from stream_jobs.app import create_app

    app = create_app(_sasl(tmp_path, ca_file, kafka_username="worker"))
    assert app.conf.broker_credentials.username == "worker"
    assert app.conf.topic_disable_leader is True
    assert not app.tables
    assert not app.tables.changelog_topics


def test_the_warehouse_client_options(tmp_path, ca_file):
    assert transport_options(Settings(data_dir=tmp_path)) == {"interface": "http", "secure": False}
    secure = Settings(data_dir=tmp_path, warehouse_secure=True, warehouse_ca_file=str(ca_file))
    assert transport_options(secure) == {"interface": "https", "secure": True, "verify": True, "ca_cert": str(ca_file)}


def _kafka_client_calls() -> list[tuple[str, ast.Call]]:
    found = []
    for package in PRODUCT_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Call):
                    name = ast.unparse(node.func)
                    if name.split(".")[-1] in {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient"} or (
                        name in {"faust.App", "IntervalProducer"}
                    ):
                        found.append((f"{path.relative_to(REPO)}:{node.lineno} {name}", node))
    return found


def test_every_kafka_client_in_the_product_takes_the_transport_options():
    calls = _kafka_client_calls()
    assert len(calls) >= 7, calls  # the producer, three consumers, the admin client, faust, the gateway's producer
    for where, call in calls:
        passed = [ast.unparse(k.value) for k in call.keywords if k.arg is None] + [
            ast.unparse(k.value) for k in call.keywords if k.arg == "options"
        ]
        assert any(("client_options(" in p or "faust_options(" in p or p == "self._options") for p in passed), where


# -- the local stack's broker ----------------------------------------------------------------------------


def test_the_stack_refuses_to_start_the_embedded_broker_beyond_loopback(tmp_path):
    from infra.stack import Stack

    stack = Stack(Settings(data_dir=tmp_path), lambda *a, **k: None)
    # model_copy skips validation: the check where the listener is made must hold on its own.
    stack.settings = stack.settings.model_copy(update={"kafka_bootstrap": "0.0.0.0:9092"})
    with pytest.raises(UserFacingError, match=r"loopback only.*'0\.0\.0\.0:9092'"):
        stack.start_broker()
    assert stack.broker is None


# -- other servers' certificates (pki-init's and tls-init's) -----------------------------------------------


def test_a_server_bundle_is_issued_once_and_kept(tmp_path):
    ca_cert, ca_key = create_ca()
    out = tmp_path / "kafka"
    assert ensure_server_bundle(out, ca_cert, ca_key, ["kafka"]) is True
    first = {name: (out / name).read_bytes() for name in ("server.crt", "server.key", "ca.crt")}
    assert first["ca.crt"] == ca_cert
    assert not (out / "ca.key").exists()
    assert ensure_server_bundle(out, ca_cert, ca_key, ["kafka"]) is False
    assert {name: (out / name).read_bytes() for name in first} == first
    assert stat.S_IMODE(out.stat().st_mode) == 0o700


def test_a_server_bundle_is_reissued_for_a_new_name_keeping_the_old_ones(tmp_path):
    from cryptography import x509

    ca_cert, ca_key = create_ca()
    out = tmp_path / "clickhouse"
    ensure_server_bundle(out, ca_cert, ca_key, ["clickhouse"])
    assert ensure_server_bundle(out, ca_cert, ca_key, ["localhost"]) is True
    cert = x509.load_pem_x509_certificate((out / "server.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {"clickhouse", "localhost"}


def test_a_server_bundle_from_another_ca_is_replaced(tmp_path):
    ca_cert, ca_key = create_ca()
    out = tmp_path / "kafka"
    out.mkdir(mode=0o700)
    other_cert, other_key = create_ca("another")
    cert_pem, key_pem = issue_server_certificate(other_cert, other_key, ["kafka"])
    (out / "server.crt").write_bytes(cert_pem)
    (out / "server.key").write_bytes(key_pem)
    (out / "ca.crt").write_bytes(other_cert)
    assert ensure_server_bundle(out, ca_cert, ca_key, ["kafka"]) is True
    assert (out / "ca.crt").read_bytes() == ca_cert


def _pki(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRODUCTIMON_DATA_DIR": str(tmp_path)}
    code = (
        "import sys; from gateway.pki_cli import main; sys.argv = ['productimon-pki', *sys.argv[1:]]; sys.exit(main())"
    )
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=60)


def test_the_cli_hands_each_server_its_own_files_and_the_ca_certificate_alone(tmp_path):
    assert _pki(tmp_path, "init").returncode == 0
    owner = f"{os.getuid()}:{os.getgid()}"
    done = _pki(tmp_path, "server-cert", "--name", "kafka", "--out", str(tmp_path / "tls/kafka"), "--owner", owner)
    assert done.returncode == 0, done.stderr
    assert "issued: kafka" in done.stdout
    again = _pki(tmp_path, "server-cert", "--name", "kafka", "--out", str(tmp_path / "tls/kafka"))
    assert "kept" in again.stdout
    assert _pki(tmp_path, "ca-cert", "--out", str(tmp_path / "tls/ca"), "--owner", owner).returncode == 0
    assert sorted(p.name for p in (tmp_path / "tls/ca").iterdir()) == ["ca.crt"]
    assert (tmp_path / "tls/ca/ca.crt").read_bytes() == (tmp_path / "pki/ca.crt").read_bytes()
    for path in [*(tmp_path / "tls").rglob("*"), tmp_path / "tls/kafka", tmp_path / "tls/ca"]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path
        assert (path.stat().st_uid, path.stat().st_gid) == (os.getuid(), os.getgid())
    assert not any(p.name == "ca.key" for p in (tmp_path / "tls").rglob("*"))


def test_the_cli_needs_the_ca_first(tmp_path):
    done = _pki(tmp_path, "server-cert", "--name", "kafka", "--out", str(tmp_path / "kafka"))
    assert done.returncode != 0
    assert "no CA" in done.stderr and "productimon-pki init" in done.stderr
