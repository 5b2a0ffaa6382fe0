"""The compose stack encrypts and authenticates every hop, and gives each service only its own rights.

What the files promise, checked as Compose resolves them (docs/transport-security.md): Kafka's client listener is
SASL_SSL with SCRAM, nothing is allowed without an ACL, the ACL job grants exactly the documented table, each
service holds only its own Kafka login, ClickHouse has no plain port, and each TLS file reaches only its server.
No engine runs here: what the servers do with these files is for a real deployment to show.
"""

from __future__ import annotations

import base64
import re
import stat
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath

import pytest

from gateway.pki import create_ca, ensure_server_bundle
from plumbing.settings import Settings
from tests.integration.test_compose import COMPOSE, REPO, _environment, _run_compose, _yaml

KAFKA = REPO / "infra" / "kafka"
CLICKHOUSE_TLS = REPO / "infra" / "clickhouse" / "config.d" / "tls.xml"
CLICKHOUSE_CLIENT = REPO / "infra" / "clickhouse" / "client.d" / "tls.xml"
DOC = REPO / "docs" / "transport-security.md"
# The services of the productimon image that talk to Kafka, and as whom.
KAFKA_LOGINS = {"gateway": "gateway", "worker": "worker", "topics": "admin"}


@pytest.fixture(scope="module")
def config() -> dict:
    done = _run_compose("config")
    assert done.returncode == 0, done.stderr
    return _yaml(done.stdout)


@pytest.fixture(scope="module")
def committed() -> dict:
    return _yaml(COMPOSE.read_text())


def _properties(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and line[0] != "#")
    return {key.strip(): value.strip() for key, value in pairs}


def _mounts(service: dict) -> dict[str, tuple[str, bool]]:
    """target -> (source, read-only) of a resolved service."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            found[volume["target"]] = (str(volume.get("source", "")), bool(volume.get("read_only")))
        else:
            parts = volume.split(":")
            found[parts[1]] = (parts[0], len(parts) > 2 and "ro" in parts[2].split(","))
    return found


def _volume_users(config: dict, volume: str) -> dict[str, bool]:
    """service -> read-only, for every service that mounts the named volume."""
    users = {}
    for name, service in config["services"].items():
        for source, read_only in _mounts(service).values():
            if source.split("_", 1)[-1] == volume or source == volume:
                users[name] = read_only
    return users


# -- Kafka ----------------------------------------------------------------------------------------------


def test_clients_reach_kafka_only_over_tls_with_scram():
    props = _properties(KAFKA / "server.properties")
    protocols = dict(item.split(":") for item in props["listener.security.protocol.map"].split(","))
    listeners = dict(re.fullmatch(r"(\w+)://(.*)", item).groups() for item in props["listeners"].split(","))
    assert set(listeners) == set(protocols)
    for name, address in listeners.items():
        if name == props["controller.listener.names"]:
            # The one plaintext listener is the controller's, on loopback inside the container.
            assert protocols[name] == "PLAINTEXT"
            assert address.startswith("127.0.0.1:")
        else:
            assert protocols[name] == "SASL_SSL", name
    advertised = [re.fullmatch(r"(\w+)://.*", item).group(1) for item in props["advertised.listeners"].split(",")]
    assert advertised and all(protocols[name] == "SASL_SSL" for name in advertised)
    assert protocols[props["inter.broker.listener.name"]] == "SASL_SSL"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["ssl.enabled.protocols"] == "TLSv1.3,TLSv1.2"
    assert props["controller.quorum.voters"].endswith("@127.0.0.1:9093")


def test_nothing_is_allowed_on_kafka_without_an_acl():
    props = _properties(KAFKA / "server.properties")
    assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    # admin for the one-shot jobs; ANONYMOUS exists only on the loopback controller listener (the broker itself).
    assert set(props["super.users"].split(";")) == {"User:admin", "User:ANONYMOUS"}
    assert props["auto.create.topics.enable"] == "false"


def test_the_broker_runs_the_shipped_configuration_and_publishes_no_port(config):
    kafka = config["services"]["kafka"]
    assert kafka["command"] == ["/bin/sh", "/opt/productimon/start.sh"]
    mounts = _mounts(kafka)
    assert mounts["/opt/productimon/server.properties"] == (str(KAFKA / "server.properties"), True)
    assert mounts["/opt/productimon/start.sh"] == (str(KAFKA / "start.sh"), True)
    assert mounts["/etc/kafka/tls"][1] is True
    assert not kafka.get("ports")
    assert "--command-config" in " ".join(kafka["healthcheck"]["test"])
    assert kafka["depends_on"]["tls-init"]["condition"] == "service_completed_successfully"
    start = (KAFKA / "start.sh").read_text()
    assert sorted(re.findall(r"--add-scram \"SCRAM-SHA-512=\[name=(\w+),", start)) == ["admin", "gateway", "worker"]
    assert "/opt/productimon/server.properties" in start and "kafka-server-start.sh" in start


def _acl_script_table() -> set[tuple[str, str, str, str, str]]:
    script = (KAFKA / "acls.sh").read_text()
    defaults = dict(re.findall(r"^(\w+)=\$\{PRODUCTIMON_\w+:-([^}]+)\}$", script, re.MULTILINE))
    table = re.search(r"<<TABLE\n(.*?)\nTABLE\n", script, re.DOTALL).group(1)
    rows = set()
    for line in table.splitlines():
        principal, operation, resource, pattern, name = line.split()
        rows.add((principal, operation, resource, pattern, defaults[name.removeprefix("$")]))
    return rows


def _acl_doc_table() -> set[tuple[str, str, str, str, str]]:
    section = DOC.read_text().split("## Who may do what", 1)[1].split("\n## ", 1)[0]
    rows = set()
    for line in section.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] not in {"principal", ""} and not set(cells[0]) <= {"-"}:
            rows.add(tuple(cells))
    return rows


def test_the_acl_job_grants_exactly_the_documented_table():
    script, doc = _acl_script_table(), _acl_doc_table()
    assert script == doc


def test_the_acls_are_what_each_service_does_with_the_topics():
    s = Settings()
    gateway = {("Write", s.intervals_topic), ("Write", s.identity_topic)}  # gateway/producer.py, gateway/server.py
    worker_reads = {s.intervals_topic, s.identity_topic}  # the agent, follow_identity_events (stream_jobs/app.py)
    expected = {("gateway", op, "Topic", "literal", topic) for op, topic in gateway}
    expected |= {("gateway", "Describe", "Topic", "literal", topic) for _, topic in gateway}
    expected |= {("worker", op, "Topic", "literal", t) for t in worker_reads for op in ("Read", "Describe")}
    expected |= {("worker", op, "Topic", "literal", s.deadletter_topic) for op in ("Write", "Describe")}
    expected |= {("worker", "Read", "Group", "literal", s.worker_id)}
    assert _acl_script_table() == expected
    assert not any(row[3] == "prefixed" for row in expected)


def test_the_acl_job_runs_as_admin_before_the_services(config):
    services = config["services"]
    job = services["kafka-acls"]
    assert job["command"] == ["/bin/sh", "/opt/productimon/acls.sh"]
    assert job["restart"] == "no"
    assert job["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["topics"]["depends_on"]["kafka-acls"]["condition"] == "service_completed_successfully"
    for name in ("gateway", "worker"):
        assert services[name]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert 'username=\\"admin\\"' in (KAFKA / "acls.sh").read_text()


def test_each_service_holds_only_its_own_kafka_login(config, committed):
    resolved = config["services"]
    as_written = committed["services"]
    anchor = committed["x-productimon"]["environment"]
    assert not {k for k in anchor if k in {"PRODUCTIMON_KAFKA_USERNAME", "PRODUCTIMON_KAFKA_PASSWORD"}}
    passwords = re.compile(r"PRODUCTIMON_KAFKA_(ADMIN|GATEWAY|WORKER)_PASSWORD")
    for name, service in resolved.items():
        env = _environment(service)
        written = {k: v for k, v in _environment(as_written[name]).items() if k != "<<"}
        if name in KAFKA_LOGINS:
            user = KAFKA_LOGINS[name]
            assert env["PRODUCTIMON_KAFKA_USERNAME"] == user, name
            referenced = set(passwords.findall(" ".join(written.values())))
            assert referenced == {user.upper()}, f"{name} must hold the {user} password only, not {referenced}"
        elif name in {"kafka", "kafka-acls"}:
            continue  # the broker formats the logins; the ACL job sets the services' passwords as admin
        else:
            assert "PRODUCTIMON_KAFKA_USERNAME" not in env and "PRODUCTIMON_KAFKA_PASSWORD" not in env, name
            assert not passwords.search(" ".join(written.values())), name


def test_every_kafka_client_uses_sasl_ssl_and_has_its_ca_mounted(config):
    for name, service in config["services"].items():
        env = _environment(service)
        if "PRODUCTIMON_KAFKA_USERNAME" in env:
            assert env["PRODUCTIMON_KAFKA_SECURITY"] == "sasl_ssl", name
            assert env["PRODUCTIMON_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512", name
            assert env["PRODUCTIMON_KAFKA_BOOTSTRAP"] == "kafka:9092", name
            _assert_mounted(name, service, env["PRODUCTIMON_KAFKA_CA_FILE"])


def _assert_mounted(name: str, service: dict, file: str) -> None:
    """The file's directory is a volume of the service (a service listing volumes replaces the shared list)."""
    directory = str(PurePosixPath(file).parent)
    assert directory in _mounts(service), f"{name} reads {file} but mounts nothing at {directory}"


# -- ClickHouse -----------------------------------------------------------------------------------------


def test_clickhouse_listens_with_tls_only():
    root = ET.parse(CLICKHOUSE_TLS).getroot()
    for plain in ("http_port", "tcp_port", "mysql_port", "postgresql_port", "interserver_http_port"):
        assert root.find(plain) is not None and root.find(plain).get("remove"), f"{plain} must be removed"
    assert root.findtext("https_port") == "8443"
    assert root.findtext("tcp_port_secure") == "9440"
    server = root.find("openSSL/server")
    assert server.findtext("certificateFile") == "/etc/clickhouse-server/tls/server.crt"
    assert server.findtext("privateKeyFile") == "/etc/clickhouse-server/tls/server.key"
    assert "tlsv1_1" in server.findtext("disableProtocols")
    client = ET.parse(CLICKHOUSE_CLIENT).getroot()
    assert client.tag == "config"  # the client's own config root, or ClickHouse ignores the file
    assert client.findtext("secure") == "true" and client.findtext("port") == "9440"
    assert client.findtext("openSSL/client/caConfig") == "/etc/clickhouse-server/tls/ca.crt"


def test_clickhouse_mounts_its_tls_files_and_checks_its_health_over_https(config):
    clickhouse = config["services"]["clickhouse"]
    mounts = _mounts(clickhouse)
    assert mounts["/etc/clickhouse-server/config.d/tls.xml"] == (str(CLICKHOUSE_TLS), True)
    assert mounts["/etc/clickhouse-client/config.d/tls.xml"] == (str(CLICKHOUSE_CLIENT), True)
    assert mounts["/etc/clickhouse-server/tls"][1] is True
    assert not clickhouse.get("ports")
    test = clickhouse["healthcheck"]["test"]
    assert "https://localhost:8443/ping" in test
    assert "--ca-certificate=/etc/clickhouse-server/tls/ca.crt" in test
    assert not any("http://" in part for part in test)


def test_every_warehouse_client_uses_https_and_has_its_ca_mounted(config):
    for name, service in config["services"].items():
        env = _environment(service)
        if "PRODUCTIMON_WAREHOUSE_HOST" not in env or name == "pki-init":
            continue
        assert env["PRODUCTIMON_WAREHOUSE_SECURE"] == "true", name
        assert env["PRODUCTIMON_WAREHOUSE_PORT"] == "8443", name
        _assert_mounted(name, service, env["PRODUCTIMON_WAREHOUSE_CA_FILE"])
    assert _environment(config["services"]["pki-init"])["PRODUCTIMON_WAREHOUSE_SECURE"] == "false"


# -- TLS files ------------------------------------------------------------------------------------------


def test_each_servers_tls_files_reach_that_server_only(config):
    assert _volume_users(config, "kafka-tls") == {"kafka": True, "tls-init": False}
    assert _volume_users(config, "clickhouse-tls") == {"clickhouse": True, "tls-init": False}
    ca_users = _volume_users(config, "ca")
    assert ca_users.pop("tls-init") is False
    assert ca_users and all(ca_users.values()), ca_users
    # The CA key is in pki: neither server nor the ACL job, worker or topics job mounts it.
    assert not set(_volume_users(config, "pki")) & {"kafka", "clickhouse", "kafka-acls", "worker", "topics"}
    assert _volume_users(config, "pki")["tls-init"] is True


def test_tls_init_gives_each_directory_to_its_servers_uid(config):
    job = config["services"]["tls-init"]
    assert str(job["user"]) == "0:0" and job["restart"] == "no"
    assert job["depends_on"]["pki-init"]["condition"] == "service_completed_successfully"
    script = " ".join(job["command"])
    mounts = {target: source.split("_", 1)[-1] for target, (source, _) in _mounts(job).items()}
    issued = re.findall(r"productimon-pki (server-cert|ca-cert)\s*(.*?)\s*--out (\S+) --owner (\d+):(\d+)", script)
    owners = {mounts[out]: (kind, names, int(uid), int(gid)) for kind, names, out, uid, gid in issued}
    dockerfile = (REPO / "infra" / "docker" / "Dockerfile").read_text()
    productimon_uid = int(re.search(r"--uid (\d+)", dockerfile).group(1))
    assert owners == {
        # apache/kafka runs as appuser, uid 1000; clickhouse-server drops to clickhouse, uid 101.
        "kafka-tls": ("server-cert", "--name kafka", 1000, 1000),
        "clickhouse-tls": ("server-cert", "--name clickhouse localhost", 101, 101),
        # The dashboard's own certificate, for its own name (docs/least-privilege.md), as the productimon user.
        "dashboard-tls": ("server-cert", '--name "$$DASHBOARD_NAME" localhost', productimon_uid, productimon_uid),
        "ca": ("ca-cert", "", productimon_uid, productimon_uid),
    }
    assert config["services"]["kafka-acls"]["user"] == f"{productimon_uid}:{productimon_uid}"


def test_the_docs_state_the_local_limit():
    text = DOC.read_text()
    assert "loopback" in text and "PRODUCTIMON_KAFKA_BOOTSTRAP" in text
    assert "docs/transport-security.md" in (REPO / "README.md").read_text()


# -- the shipped scripts, run with stand-ins for Kafka's tools ------------------------------------------


def _stub_kafka(home: Path) -> Path:
    """A Kafka home whose tools record their arguments, one call a line, fields separated by \\x1f."""
    log = home / "calls"
    (home / "bin").mkdir(parents=True)
    for tool in ("kafka-storage.sh", "kafka-server-start.sh", "kafka-acls.sh", "kafka-configs.sh"):
        stub = home / "bin" / tool
        stub.write_text(f"#!/bin/sh\nprintf '%s\\037' {tool} \"$@\" >> '{log}'\necho >> '{log}'\n")
        stub.chmod(0o700)
    return log


def _calls(log: Path) -> list[list[str]]:
    return [line.rstrip("\x1f").split("\x1f") for line in log.read_text().splitlines() if line]


def _run_script(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", str(KAFKA / script)], env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True
    )


@pytest.fixture
def kafka_tls(tmp_path: Path) -> Path:
    ca_cert, ca_key = create_ca()
    ensure_server_bundle(tmp_path / "tls", ca_cert, ca_key, ["kafka"])
    return tmp_path / "tls"


def _start_env(tmp_path: Path, tls: Path, **overrides: str) -> dict[str, str]:
    env = {
        "PRODUCTIMON_KAFKA_HOME": str(tmp_path / "kafka"),
        "PRODUCTIMON_KAFKA_TLS_DIR": str(tls),
        "PRODUCTIMON_KAFKA_TEMPLATE": str(KAFKA / "server.properties"),
        "CLUSTER_ID": "MkU3OEVBNTcwNTJENDM2Qk",
        "PRODUCTIMON_KAFKA_ADMIN_PASSWORD": "admin-Pw_1",
        "PRODUCTIMON_KAFKA_GATEWAY_PASSWORD": "gateway-Pw_2",
        "PRODUCTIMON_KAFKA_WORKER_PASSWORD": "worker-Pw_3",
    }
    env.update(overrides)
    return env


def _kafka_pem_entries(value: str, name: str) -> list[bytes]:
    """Kafka's own PEM parser (DefaultSslEngineFactory.PemParser), applied to a configuration value."""
    label = name.replace(" ", r"\s+")
    pattern = (
        rf"-+BEGIN\s*.*{label}[^-]*-+\s+(?:\s*[^\r\n]*:[^\r\n]*[\r\n]+)*([a-zA-Z0-9/+=\s]*)-+END\s*.*{label}[^-]*-+\s+"
    )
    return [base64.b64decode(re.sub(r"\s", "", m)) for m in re.findall(pattern, value + "\n")]


def test_the_start_script_formats_with_the_three_logins_and_runs_kafka_with_its_tls_files(tmp_path, kafka_tls):
    log = _stub_kafka(tmp_path / "kafka")
    done = _run_script("start.sh", _start_env(tmp_path, kafka_tls))
    assert done.returncode == 0, done.stderr
    (storage, *format_args), (start, config_file) = _calls(log)
    assert storage == "kafka-storage.sh" and start == "kafka-server-start.sh"
    assert format_args[:2] == ["format", "--ignore-formatted"]
    scram = [format_args[i + 1] for i, arg in enumerate(format_args) if arg == "--add-scram"]
    assert scram == [
        "SCRAM-SHA-512=[name=admin,password=admin-Pw_1]",
        "SCRAM-SHA-512=[name=gateway,password=gateway-Pw_2]",
        "SCRAM-SHA-512=[name=worker,password=worker-Pw_3]",
    ]
    assert format_args[format_args.index("--cluster-id") + 1] == "MkU3OEVBNTcwNTJENDM2Qk"
    assert format_args[format_args.index("--config") + 1] == config_file
    config = Path(config_file)
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    props = _properties(config)
    assert {k: props[k] for k in _properties(KAFKA / "server.properties")} == _properties(KAFKA / "server.properties")
    assert props["node.id"] == "1"
    # The key and certificate, on one line each, read back by Kafka's parser as the very files tls-init wrote.
    [key] = _kafka_pem_entries(props["ssl.keystore.key"], "PRIVATE KEY")
    assert key == _pem_der((kafka_tls / "server.key").read_text())
    [cert] = _kafka_pem_entries(props["ssl.keystore.certificate.chain"], "CERTIFICATE")
    assert cert == _pem_der((kafka_tls / "server.crt").read_text())
    jaas = props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    assert (
        jaas
        == 'org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="admin-Pw_1";'
    )
    admin = _properties(config.parent / "admin.properties")
    assert admin["security.protocol"] == "SASL_SSL" and admin["ssl.truststore.location"] == f"{kafka_tls}/ca.crt"


def _pem_der(pem: str) -> bytes:
    return base64.b64decode("".join(line for line in pem.splitlines() if not line.startswith("-----")))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"PRODUCTIMON_KAFKA_WORKER_PASSWORD": ""}, "PRODUCTIMON_KAFKA_WORKER_PASSWORD is not set"),
        ({"PRODUCTIMON_KAFKA_GATEWAY_PASSWORD": "a,b]"}, "PRODUCTIMON_KAFKA_GATEWAY_PASSWORD may hold only"),
        ({"PRODUCTIMON_KAFKA_ADMIN_PASSWORD": 'x"y'}, "PRODUCTIMON_KAFKA_ADMIN_PASSWORD may hold only"),
        ({"CLUSTER_ID": ""}, "CLUSTER_ID is not set"),
        ({"PRODUCTIMON_KAFKA_TLS_DIR": "/nonexistent"}, "/nonexistent/server.crt is missing"),
    ],
)
def test_the_start_script_refuses_what_it_cannot_use_with_one_line(tmp_path, kafka_tls, overrides, message):
    log = _stub_kafka(tmp_path / "kafka")
    done = _run_script("start.sh", _start_env(tmp_path, kafka_tls, **overrides))
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"kafka start: {message}"), done.stderr
    assert not log.exists(), "nothing may be formatted or started"


def test_the_acl_script_makes_exactly_its_table_as_admin_and_sets_the_services_passwords(tmp_path):
    log = _stub_kafka(tmp_path / "kafka")
    env = {
        "PRODUCTIMON_KAFKA_HOME": str(tmp_path / "kafka"),
        "PRODUCTIMON_KAFKA_CA_FILE": "/ca/ca.crt",
        "PRODUCTIMON_KAFKA_ADMIN_PASSWORD": "admin-pw",
        "PRODUCTIMON_KAFKA_GATEWAY_PASSWORD": "gateway-pw",
        "PRODUCTIMON_KAFKA_WORKER_PASSWORD": "worker-pw",
        "TMPDIR": str(tmp_path),
    }
    done = _run_script("acls.sh", env)
    assert done.returncode == 0, done.stderr
    calls = _calls(log)
    granted = set()
    for tool, *args in calls:
        assert args[args.index("--bootstrap-server") + 1] == "kafka:9092"
        if tool == "kafka-acls.sh":
            value = dict(zip(args[::1], args[1::1], strict=False))
            resource = "Topic" if "--topic" in args else "Group"
            name = value["--topic"] if resource == "Topic" else value["--group"]
            assert "--add" in args and "--deny-principal" not in args
            principal = value["--allow-principal"].removeprefix("User:")
            granted.add((principal, value["--operation"], resource, value["--resource-pattern-type"], name))
    assert granted == _acl_doc_table()
    configs = [args for tool, *args in calls if tool == "kafka-configs.sh"]
    set_passwords = {a[a.index("--entity-name") + 1]: a[a.index("--add-config") + 1] for a in configs}
    assert set_passwords == {
        "gateway": "SCRAM-SHA-512=[password=gateway-pw]",
        "worker": "SCRAM-SHA-512=[password=worker-pw]",
    }
    assert not list(tmp_path.glob("tmp.*")), "the admin's client config is removed afterwards"
