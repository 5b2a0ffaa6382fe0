"""One warehouse login per service, each refused what its job does not need (warehouse/roles.py,
docs/least-privilege.md), tried as an attacker holding one service's password would, through a real embedded
warehouse server over HTTP with the product's real schema.

Every refusal must leave the warehouse as it was; every role must still do its own job; and the ClickHouse users
file the compose stack mounts must give exactly the same rights (a real ClickHouse server cannot run here: no
container engine, no ClickHouse package; its grant statements are parsed by the same engine, chDB)."""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from tests.conftest import stack_settings
from warehouse.client import connect
from warehouse.goals import add_goal
from warehouse.migrate import pending_migrations, prepare_warehouse
from warehouse.notices import find_due, notice_history, notice_settings, set_account, set_goal_channel, take_pending
from warehouse.roles import LOGINS, ROLES, TABLES, clickhouse_users_xml, grants
from warehouse.server import WarehouseServer

REPO = Path(__file__).resolve().parents[2]
USERS_XML = REPO / "infra" / "clickhouse" / "users.d" / "productimon.xml"
OWNER_PASSWORD = secrets.token_urlsafe(16)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Iterator[dict]:
    settings = stack_settings(tmp_path_factory.mktemp("roles"), warehouse_password=OWNER_PASSWORD)
    passwords = {role: secrets.token_urlsafe(16) for role in ROLES}
    logins = {LOGINS[role][0]: (passwords[role], ROLES[role]) for role in ROLES}
    server = WarehouseServer(
        settings.warehouse_dir,
        port=settings.warehouse_port,
        user=settings.warehouse_user,
        password=OWNER_PASSWORD,
        logins=logins,
    )
    server.start()
    clients: list[Client] = []

    def client_of(role: str | None, *, with_database: bool = True) -> Client:
        own = settings
        if role is not None:
            own = settings.model_copy(update={"warehouse_user": LOGINS[role][0], "warehouse_password": passwords[role]})
        client = connect(own, with_database=with_database)
        clients.append(client)
        return client

    try:
        # The migrations themselves run with the migrate login: its rights are enough for the whole schema.
        prepare_warehouse(client_of("migrate", with_database=False), settings.warehouse_database, 0)
        yield {"client": client_of, "settings": settings}
    finally:
        for client in clients:
            client.close()
        server.shutdown()


def _seed(owner: Client) -> dict[str, int]:
    owner.command(
        "INSERT INTO intervals (user_id, device_id, device_seq, event_id, start, end, app, title, idle) VALUES "
        "('u1', 'd1', 1, generateUUIDv4(), now64(3) - 60, now64(3), 'Code', 'main.py', false)"
    )
    owner.command("INSERT INTO data_keys VALUES ('u1', 'd1', generateUUIDv4(), 'k', now64(3))")
    return _counts(owner)


def _counts(owner: Client) -> dict[str, int]:
    return {table: int(owner.command(f"SELECT count() FROM {table}")) for table in sorted(TABLES)}


def _refused(client: Client, sql: str) -> str:
    with pytest.raises(DatabaseError) as caught:
        client.command(sql)
    text = str(caught.value)
    assert "ACCESS_DENIED" in text, text
    return text


# (role, statement) pairs each role must be refused: writes it has no right to, the schema, and reads of tables
# it must never see, spelt as an attacker would (quoted, qualified, inside sub-queries, CTEs and joins).
REFUSED = {
    "dashboard": [
        "INSERT INTO intervals (user_id) VALUES ('x')",
        "INSERT INTO category_rules (user_id) VALUES ('x')",
        "INSERT INTO `productimon`.devices (user_id) VALUES ('x')",
        "INSERT INTO intervals SELECT * FROM intervals",
        "ALTER TABLE intervals DELETE WHERE 1",
        'ALTER TABLE productimon."intervals" DELETE WHERE 1',
        "ALTER TABLE intervals UPDATE app = 'x' WHERE 1",
        "DELETE FROM intervals WHERE 1",
        "DROP TABLE intervals",
        "TRUNCATE TABLE intervals",
        "RENAME TABLE intervals TO gone",
        "OPTIMIZE TABLE intervals FINAL",
        "CREATE TABLE mine (a Int8) ENGINE = Memory",
        "ALTER TABLE intervals ADD COLUMN spy String",
        "SELECT * FROM data_keys",
        'SELECT key FROM "data_keys"',
        "SELECT key FROM productimon.`data_keys`",
        "SELECT key FROM /* a comment */ data_keys",
        "SELECT * FROM intervals WHERE user_id IN (SELECT user_id FROM data_keys)",
        "WITH k AS (SELECT key FROM data_keys) SELECT * FROM k",
        "SELECT app, key FROM intervals AS i INNER JOIN data_keys AS k ON i.user_id = k.user_id",
        "SELECT * FROM deletions",
        "SELECT * FROM device_state",
        "SELECT * FROM refused_intervals",
        "EXPLAIN SELECT * FROM data_keys",
        "DESCRIBE TABLE data_keys",
    ],
    "worker": [
        "INSERT INTO data_keys (user_id) VALUES ('x')",
        "INSERT INTO deletions (user_id) VALUES ('x')",
        "INSERT INTO category_rules (user_id) VALUES ('x')",
        "INSERT INTO devices (user_id) VALUES ('x')",
        "ALTER TABLE intervals DELETE WHERE 1",
        "DELETE FROM app_sessions WHERE 1",
        "DROP TABLE intervals",
        "TRUNCATE TABLE data_keys",
        "CREATE TABLE mine (a Int8) ENGINE = Memory",
        "SELECT * FROM category_rules",
        "SELECT * FROM devices",
    ],
    "gateway": [
        "INSERT INTO intervals (user_id) VALUES ('x')",
        "INSERT INTO deletions (user_id) VALUES ('x')",
        "INSERT INTO app_sessions (user_id) VALUES ('x')",
        "ALTER TABLE intervals DELETE WHERE 1",
        "ALTER TABLE data_keys DELETE WHERE 1",
        "DROP TABLE data_keys",
        "TRUNCATE TABLE intervals",
        "SELECT * FROM app_sessions",
    ],
    "deletion": [
        "ALTER TABLE deletions DELETE WHERE 1",
        "DELETE FROM deletions WHERE 1",
        "INSERT INTO intervals (user_id) VALUES ('x')",
        "INSERT INTO data_keys (user_id) VALUES ('x')",
        "INSERT INTO category_rules (user_id) VALUES ('x')",
        # It may rewrite raw intervals (a privacy rule applied to past data), and nothing else.
        "ALTER TABLE data_keys UPDATE key = 'x' WHERE 1",
        "ALTER TABLE deletions UPDATE kind = 'x' WHERE 1",
        "ALTER TABLE `productimon`.\"app_sessions\" UPDATE app = 'x' WHERE 1",
        "ALTER TABLE intervals UPDATE app = 'x' WHERE 1, ADD COLUMN spy String",
        "ALTER TABLE intervals UPDATE app = 'x' WHERE 1, DELETE WHERE 1",
        "ALTER TABLE intervals ADD COLUMN spy String",
        "ALTER TABLE intervals DELETE WHERE 1, ADD COLUMN spy String",
        "ALTER TABLE intervals DELETE WHERE app = '(', DROP COLUMN app",
        "DROP TABLE intervals",
        "TRUNCATE TABLE intervals",
    ],
}


@pytest.mark.parametrize(
    ("role", "statement"), [(role, sql) for role, statements in REFUSED.items() for sql in statements]
)
def test_each_role_is_refused_what_its_job_does_not_need(warehouse, role, statement):
    owner = warehouse["client"](None)
    before = _seed(owner)
    text = _refused(warehouse["client"](role), statement)
    assert f"the {role} role may not" in text, text
    assert _counts(owner) == before, f"{role} changed the warehouse with a refused statement: {statement}"
    owner.command("TRUNCATE TABLE intervals")
    owner.command("TRUNCATE TABLE data_keys")


def test_a_statement_parsed_before_is_judged_again_for_each_role_that_sends_it(warehouse):
    """The server remembers the engine's parse of a statement (warehouse/server/engine.py `check`), never a
    verdict: the same text is allowed to the role whose job it is and refused to another, however often and in
    whatever order they send it."""
    client_of = warehouse["client"]
    gateway, dashboard = client_of("gateway"), client_of("dashboard")
    write = "INSERT INTO data_keys VALUES ('u3', 'd3', generateUUIDv4(), 'k', now64(3))"
    for _ in range(3):
        assert "the dashboard role may not" in _refused(dashboard, write)
        gateway.command(write)
    assert client_of(None).command("SELECT count() FROM data_keys WHERE user_id = 'u3'") == 3
    client_of(None).command("TRUNCATE TABLE data_keys")


def test_each_role_does_its_own_job(warehouse):
    client_of = warehouse["client"]
    owner = client_of(None)
    worker, gateway, deletion, dashboard = (client_of(r) for r in ("worker", "gateway", "deletion", "dashboard"))
    worker.command(
        "INSERT INTO intervals (user_id, device_id, device_seq, event_id, start, end, app, title, idle) VALUES "
        "('u2', 'd2', 1, generateUUIDv4(), now64(3) - 60, now64(3), 'Code', 'main.py', false)"
    )
    assert worker.command("SELECT count() FROM intervals WHERE user_id = 'u2'") == 1
    gateway.command("INSERT INTO data_keys VALUES ('u2', 'd2', generateUUIDv4(), 'k', now64(3))")
    gateway.command("INSERT INTO devices (user_id, device_id, name) VALUES ('u2', 'd2', 'laptop')")
    assert gateway.command("SELECT count() FROM data_keys WHERE user_id = 'u2'") == 1
    assert dashboard.command("SELECT count() FROM intervals WHERE user_id = 'u2'") == 1
    assert dashboard.command("SELECT count() FROM devices WHERE user_id = 'u2'") == 1
    deletion.command(
        "INSERT INTO deletions (deletion_id, user_id, kind, deleted_at) "
        "VALUES (generateUUIDv4(), 'u2', 'all', now64(3))"
    )
    deletion.command(
        "ALTER TABLE intervals UPDATE app = '(private)', title = '' WHERE user_id = 'u2'",
        settings={"mutations_sync": 2},
    )
    assert owner.query("SELECT app, title FROM intervals WHERE user_id = 'u2'").result_rows == [("(private)", "")]
    deletion.command("ALTER TABLE intervals DELETE WHERE user_id = 'u2'", settings={"mutations_sync": 2})
    deletion.command("ALTER TABLE data_keys DELETE WHERE user_id = 'u2'", settings={"mutations_sync": 2})
    assert owner.command("SELECT count() FROM intervals WHERE user_id = 'u2'") == 0
    assert owner.command("SELECT count() FROM data_keys WHERE user_id = 'u2'") == 0
    assert owner.command("SELECT count() FROM deletions WHERE user_id = 'u2'") == 1


def test_the_gateway_finds_and_hands_out_notices_and_the_dashboard_reads_their_switches(warehouse):
    client_of = warehouse["client"]
    gateway, dashboard, worker = client_of("gateway"), client_of("dashboard"), client_of("worker")
    goal = add_goal(gateway, "u3", kind="all", target="", direction="at_most", period="day", minutes=1)
    set_account(gateway, "u3", paused=False, tz="Europe/Prague")
    set_goal_channel(gateway, "u3", goal, "desktop", True)
    # Two minutes in the hour of "now", written as the worker writes: the raw rows are what that hour is read from.
    worker.command(
        "INSERT INTO intervals (user_id, device_id, device_seq, event_id, start, end, app, title, idle) VALUES "
        "('u3', 'd3', 1, generateUUIDv4(), '2026-03-11 09:00:00', '2026-03-11 09:02:00', 'Code', 'main.py', false)"
    )
    assert [n.threshold for n in find_due(gateway, "u3", datetime(2026, 3, 11, 9, 30, tzinfo=UTC))] == [85, 100]
    assert [n.threshold for n in take_pending(gateway, "u3", "desktop")] == [100]
    assert notice_settings(dashboard, "u3").switches == {goal: frozenset({"desktop"})}
    assert len(notice_history(dashboard, "u3")) == 2
    # What clickhouse-connect and the migrations check read is open to every login.
    assert not pending_migrations(dashboard)


def test_a_table_named_by_a_query_parameter_is_refused(warehouse):
    """`{t:Identifier}` would name data_keys where the statement does not: refused to every login."""
    for role in (None, "dashboard"):
        with pytest.raises(DatabaseError, match="Identifier are not available"):
            warehouse["client"](role).query("SELECT * FROM {t:Identifier}", parameters={"t": "data_keys"})


def test_a_role_login_with_a_wrong_password_is_refused(warehouse):
    settings = warehouse["settings"].model_copy(
        update={"warehouse_user": LOGINS["dashboard"][0], "warehouse_password": "guess"}
    )
    with pytest.raises(DatabaseError, match="AUTHENTICATION_FAILED|Authentication failed"):
        connect(settings)


def test_the_compose_users_file_is_the_roles_table():
    """infra/clickhouse/users.d/productimon.xml is generated from warehouse/roles.py; regenerate it with
    `productimon-migrate --users-xml > infra/clickhouse/users.d/productimon.xml`."""
    assert USERS_XML.read_text() == clickhouse_users_xml("productimon"), "the users file is stale: regenerate it"
    users = ET.fromstring(USERS_XML.read_text()).find("users")
    assert users is not None
    found = {user.tag: [q.text for q in user.iter("query")] for user in users}
    assert found == {LOGINS[name][0]: grants(role, "productimon") for name, role in ROLES.items()}
    for user in users:
        password = user.find("password")
        assert password is not None and password.text is None, f"{user.tag}: no password may be in the file"
        assert password.get("from_env", "").startswith("PRODUCTIMON_WAREHOUSE_")


def test_the_grants_parse_in_the_engine(warehouse):
    """Each grant is a statement ClickHouse parses (the engine's own parser, as the server's would)."""
    owner = warehouse["client"](None)
    for name, role in ROLES.items():
        for statement in grants(role, "productimon"):
            printed = owner.command("SELECT formatQuery({sql:String})", parameters={"sql": f"{statement} TO x"})
            assert str(printed).startswith("GRANT "), (name, statement, printed)


def test_the_dashboard_role_reads_nothing_secret_and_writes_nothing():
    dashboard = ROLES["dashboard"]
    assert not dashboard.inserts and not dashboard.deletes and not dashboard.schema
    assert not {"data_keys", "deletions", "device_state"} & dashboard.reads
