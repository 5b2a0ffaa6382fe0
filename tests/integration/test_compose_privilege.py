"""Which volumes and secrets each compose service gets, against the table in docs/least-privilege.md, and the
promises behind it: the dashboard holds no CA key, no token-signing key, no identity store; no warehouse or
broker login is shared between services; only the migrate job may change the warehouse's schema.

The compose file is read as committed (variables not substituted), with docker-compose's own YAML parser
(tests/integration/test_compose.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.integration.test_compose import COMPOSE, _environment, _yaml
from warehouse.roles import LOGINS

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "least-privilege.md"
SECRET = re.compile(r"PASSWORD|SECRET|TOKEN(?!_TTL)|CLUSTER_ID|_KEY$")
VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)")


@pytest.fixture(scope="module")
def services() -> dict[str, dict]:
    return _yaml(COMPOSE.read_text())["services"]


def _documented() -> dict[str, tuple[set[str], set[str]]]:
    """service -> (volumes as `source:target[:ro]`, secret variables), from the table after the marker."""
    text = DOC.read_text().split("<!-- mounts-table: read by tests/integration/test_compose_privilege.py -->", 1)
    assert len(text) == 2, "docs/least-privilege.md lost its mounts table"
    rows = {}
    for line in text[1].strip().splitlines()[2:]:
        if not line.startswith("|"):
            break
        service, volumes, secrets = (cell.strip() for cell in line.strip("|").split("|"))
        rows[service.strip("`")] = (_cells(volumes), _cells(secrets))
    return rows


def _cells(cell: str) -> set[str]:
    return {item.strip().strip("`") for item in cell.split(",") if item.strip() not in ("", "—")}


def _volumes(service: dict) -> set[str]:
    found = set()
    for volume in service.get("volumes", []):
        assert isinstance(volume, str), f"write volumes in the short form: {volume}"
        found.add(volume)
    return found


def _secrets(service: dict) -> set[str]:
    return {
        variable
        for value in _environment(service).values()
        for variable in VARIABLE.findall(value)
        if SECRET.search(variable)
    }


def test_every_service_mounts_and_receives_what_the_table_says(services):
    documented = _documented()
    assert set(documented) == set(services), "docs/least-privilege.md must list exactly the compose services"
    for name, service in services.items():
        volumes, secrets = documented[name]
        assert _volumes(service) == volumes, f"{name}: volumes differ from docs/least-privilege.md"
        assert _secrets(service) == secrets, f"{name}: secrets differ from docs/least-privilege.md"


def test_the_dashboard_holds_no_ca_key_no_signing_key_and_no_identity_store(services):
    dashboard = services["dashboard"]
    sources = {volume.split(":")[0] for volume in _volumes(dashboard)}
    assert not sources & {"pki", "identity"}, f"the dashboard mounts {sources & {'pki', 'identity'}}"
    # It writes only its own browsers' sign-ins (docs/dashboard-sessions.md), to a volume no other service mounts.
    written = {volume.split(":")[0] for volume in _volumes(dashboard) if not volume.endswith(":ro")}
    assert written == {"dashboard-sessions"}, f"the dashboard writes to {written}"
    # What it does mount holds none of those: tls-init writes only its certificate and the CA certificate to
    # dashboard-tls, the gateway only the verification key to token-public.
    writers = {
        source: {
            n for n, s in services.items() for v in _volumes(s) if v.split(":")[0] == source and not v.endswith(":ro")
        }
        for source in sources
    }
    expected = {"dashboard-tls": {"tls-init"}, "token-public": {"gateway"}, "dashboard-sessions": {"dashboard"}}
    assert writers == expected, writers
    mounted_by = {n for n, s in services.items() for v in _volumes(s) if v.split(":")[0] == "dashboard-sessions"}
    assert mounted_by == {"dashboard"}, mounted_by
    assert not _secrets(dashboard) - {"PRODUCTIMON_WAREHOUSE_DASHBOARD_PASSWORD"}, _secrets(dashboard)


def test_the_ca_key_and_the_identity_store_are_only_where_they_are_needed(services):
    holders = {
        source: {n for n, s in services.items() for v in _volumes(s) if v.split(":")[0] == source}
        for source in ("pki", "identity")
    }
    assert holders == {"pki": {"pki-init", "tls-init", "gateway"}, "identity": {"gateway"}}, holders
    assert all(v.endswith(":ro") for v in _volumes(services["tls-init"]) if v.startswith("pki:"))


def test_no_warehouse_login_is_shared_and_only_migrate_changes_the_schema(services):
    users = {}
    for name, service in services.items():
        env = _environment(service)
        if "PRODUCTIMON_WAREHOUSE_USER" in env:
            users[name] = env["PRODUCTIMON_WAREHOUSE_USER"]
    assert users == {
        "migrate": LOGINS["migrate"][0],
        "gateway": LOGINS["gateway"][0],
        "worker": LOGINS["worker"][0],
        "dashboard": LOGINS["dashboard"][0],
    }, users
    deleters = {n for n, s in services.items() if "PRODUCTIMON_WAREHOUSE_DELETION_USER" in _environment(s)}
    assert deleters == {"gateway", "worker"}
    for name in ("topics", "pki-init"):
        assert not [
            k for k in _environment(services[name]) if k.startswith("PRODUCTIMON_WAREHOUSE_") and SECRET.search(k)
        ]
    # Each service's password variable is its own role's.
    for name, user in users.items():
        role = next(r for r, (u, _) in LOGINS.items() if u == user)
        password = _environment(services[name])["PRODUCTIMON_WAREHOUSE_PASSWORD"]
        assert VARIABLE.findall(password) == [LOGINS[role][1]], (name, password)
    assert "/etc/clickhouse-server/users.d/productimon.xml" in " ".join(_volumes(services["clickhouse"]))
