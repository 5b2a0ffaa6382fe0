"""The production compose file: valid for Docker Compose, and keeping the deployment's promises.

No container engine runs in CI; Debian's `docker-compose` (1.29, from infra/apt-packages.txt) parses,
interpolates and validates the file without one. The project's venv has no YAML parser, so the YAML is
read by the Python that runs docker-compose, which has one.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "infra" / "compose.yaml"
ENV_EXAMPLE = REPO / "infra" / "compose.env.example"
ONE_SHOT = {"topics", "pki-init", "migrate", "tls-init", "kafka-acls"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN(?!_TTL)|CLUSTER_ID|_KEY$", re.IGNORECASE)
YAML_TO_JSON = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"


def _docker_compose() -> str:
    path = shutil.which("docker-compose")
    if path is None:
        pytest.fail(
            "docker-compose is not installed: `apt-get install docker-compose` "
            "(./dev test installs it from infra/apt-packages.txt)"
        )
    return path


def _run_compose(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [_docker_compose(), "-f", str(COMPOSE), "--env-file", str(ENV_EXAMPLE), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO)


def _yaml(text: str) -> dict:
    """Parse YAML with docker-compose's own interpreter (it ships with PyYAML)."""
    interpreter = Path(_docker_compose()).read_text().splitlines()[0].removeprefix("#!").split()
    if not interpreter or not Path(interpreter[0]).exists():
        interpreter = ["python3"]
    done = subprocess.run([*interpreter, "-c", YAML_TO_JSON], input=text, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def config() -> dict:
    """The file as Compose resolves it: anchors merged, variables from compose.env.example."""
    done = _run_compose("config")
    assert done.returncode == 0, done.stderr
    return _yaml(done.stdout)


@pytest.fixture(scope="module")
def committed() -> dict:
    """The file as committed, variables not yet substituted."""
    return _yaml(COMPOSE.read_text())


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def test_docker_compose_validates_the_production_file():
    done = _run_compose("config", "-q")
    assert done.returncode == 0, f"docker-compose config failed:\n{done.stderr}"


def test_no_service_runs_the_embedded_broker(config):
    for name, service in config["services"].items():
        env = _environment(service)
        if name in {"kafka", "clickhouse", "kafka-acls"}:  # not the productimon image
            continue
        assert env.get("PRODUCTIMON_BROKER_MODE") == "kafka", name
        assert env.get("PRODUCTIMON_KAFKA_BOOTSTRAP") == "kafka:9092", name
        assert env.get("PRODUCTIMON_WAREHOUSE_HOST") == "clickhouse", name


def test_every_long_running_service_has_a_healthcheck_and_restarts(config):
    long_running = set(config["services"]) - ONE_SHOT
    assert {"kafka", "clickhouse", "gateway", "worker", "dashboard"} <= long_running
    for name in long_running:
        service = config["services"][name]
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert service.get("restart") == "unless-stopped", f"{name} does not restart"


def test_one_shot_jobs_run_once_and_gate_the_services(config):
    services = config["services"]
    for name in ONE_SHOT:
        assert services[name].get("restart") == "no", name
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    gateway_needs = services["gateway"]["depends_on"]
    assert gateway_needs["pki-init"]["condition"] == "service_completed_successfully"
    assert gateway_needs["topics"]["condition"] == "service_completed_successfully"
    assert services["worker"]["depends_on"]["topics"]["condition"] == "service_completed_successfully"


def test_the_worker_is_replicated(config, committed):
    assert int(config["services"]["worker"]["deploy"]["replicas"]) >= 2
    assert committed["services"]["worker"]["deploy"]["replicas"] == "${PRODUCTIMON_WORKERS:-2}"


def test_all_state_lives_on_volumes(config):
    services = config["services"]

    def targets(name: str) -> set[str]:
        return {v["target"] if isinstance(v, dict) else v.split(":")[1] for v in services[name].get("volumes", [])}

    assert "/var/lib/kafka/data" in targets("kafka")
    assert "/var/lib/clickhouse" in targets("clickhouse")
    assert {"/var/lib/productimon", "/var/lib/productimon/pki"} <= targets("gateway")
    assert "/var/lib/productimon/pki" in targets("pki-init")


def test_no_secret_value_is_committed(committed):
    for name, service in committed["services"].items():
        for key, value in _environment(service).items():
            if SECRET_NAME.search(key):
                # `:?` a secret every instance has; `?` one that may be empty (an SMTP relay without a login).
                assert re.fullmatch(r"\$\{[A-Z0-9_]+:?\?[^}]+\}", value), f"{name}: {key} must come from .env"
    text = COMPOSE.read_text()
    example = dict(
        line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if line and not line.startswith("#")
    )
    for key, value in example.items():
        if SECRET_NAME.search(key):
            assert re.fullmatch(r"<[^>]+>", value), f"compose.env.example: {key} must be a placeholder"
            assert value not in text


def test_the_example_env_file_names_every_variable_the_compose_file_uses():
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text()))
    documented = {
        line.split("=", 1)[0] for line in ENV_EXAMPLE.read_text().splitlines() if line and not line.startswith("#")
    }
    assert used - documented == set()
