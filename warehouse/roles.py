"""Who may do what in the warehouse: one login per service, each with only the rights its job needs
(docs/least-privilege.md).

The same table of rights is enforced in both modes. In production `clickhouse_users_xml` turns it into ClickHouse
users with grants (infra/clickhouse/users.d/productimon.xml, mounted by the compose file); the embedded warehouse
server checks each statement against it with `role_refusal`, on the engine's own canonical form of the statement
(warehouse/statements.py), so a compromised dashboard cannot write, and a compromised gateway cannot drop a table.

- migrate: the schema (the migration step; no long-running service holds it);
- gateway: what ingest and the accounts service need: the acknowledgement checks, device rows, data keys, category
  rules, goals and notice switches a person edits through it, and the hourly usage it measures goals against to
  find the notices due (warehouse/notices.py); and it releases the week's insights across people
  (warehouse/insights.py), reading who is eligible and storing only the noisy release;
- worker: reads what it continues from and inserts what it makes, nothing else;
- deletion: removes rows (mutations) and makes again what a deletion cuts; held by the gateway, which deletes on a
  person's request, and by the workers, which apply again a deletion that raced a batch (docs/design.md,
  "Delete means gone"); it also rewrites the raw intervals a privacy rule applied to past data matches
  (stream_jobs/history.py), through the same path;
- dashboard: reads a person's data; never a data key, never the deletion records, never a write.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from warehouse.cluster import local_table
from warehouse.statements import Name, names_and_symbols

# Every table the product keeps (warehouse/migrations/), and the migrations' own record.
DATA_TABLES = (
    "intervals",
    "app_sessions",
    "focus_sessions",
    "usage_by_hour",
    "usage_by_title_day",
    "device_state",
    "refused_intervals",
    "devices",
    "category_rules",
    "data_keys",
    "deletions",
    "privacy_rules",
    "privacy_settings",
    "goals",
    "notice_switches",
    "notice_accounts",
    "goal_notices",
    "notice_weekly",
    "import_streams",
    "source_intervals",
    "insight_releases",
)
SCHEMA_TABLE = "schema_migrations"
TABLES = frozenset((*DATA_TABLES, SCHEMA_TABLE))
_SESSIONS_AND_ROLLUPS = ("app_sessions", "focus_sessions", "usage_by_hour", "usage_by_title_day")
_PRIVACY = ("privacy_rules", "privacy_settings")  # an account's privacy choices (schemas/privacy_rules.py)
# Goal notices and the weekly summary (warehouse/notice_rules.py).
_NOTICES = ("notice_switches", "notice_accounts", "goal_notices", "notice_weekly")
# Imported streams and their intervals of other source kinds (warehouse/imports.py).
_IMPORTS = ("import_streams", "source_intervals")
# Insights across people as released, noise included: about no one (warehouse/insights.py).
_INSIGHTS = "insight_releases"


@dataclass(frozen=True)
class Role:
    name: str
    reads: frozenset[str]
    inserts: frozenset[str] = frozenset()
    deletes: frozenset[str] = frozenset()  # ALTER TABLE ... DELETE and DELETE FROM
    updates: frozenset[str] = frozenset()  # ALTER TABLE ... UPDATE
    schema: bool = False  # CREATE, ALTER, DROP, RENAME, TRUNCATE, OPTIMIZE: the migrations

    def __post_init__(self) -> None:
        unknown = (self.reads | self.inserts | self.deletes | self.updates) - TABLES
        if unknown:
            raise ValueError(f"role {self.name} names tables the warehouse does not have: {sorted(unknown)}")


def _tables(*names: str) -> frozenset[str]:
    return frozenset(names)


MIGRATE = Role("migrate", reads=TABLES, inserts=TABLES, deletes=TABLES, schema=True)
GATEWAY = Role(
    "gateway",
    reads=_tables(SCHEMA_TABLE, "intervals", "refused_intervals", "deletions", "device_state", "devices", "data_keys",
                  "category_rules", "goals", *_PRIVACY, "usage_by_hour", *_NOTICES, *_IMPORTS, _INSIGHTS),
    inserts=_tables("devices", "data_keys", "category_rules", "goals", *_PRIVACY, *_NOTICES, "import_streams",
                    _INSIGHTS),
)  # fmt: skip
WORKER = Role(
    "worker",
    reads=_tables(SCHEMA_TABLE, "intervals", *_SESSIONS_AND_ROLLUPS, "device_state", "refused_intervals", "data_keys",
                  "deletions", *_PRIVACY, *_IMPORTS),
    inserts=_tables("intervals", *_SESSIONS_AND_ROLLUPS, "device_state", "refused_intervals", "source_intervals"),
)  # fmt: skip
DELETION = Role(
    "deletion",
    reads=TABLES,
    inserts=_tables("deletions", *_SESSIONS_AND_ROLLUPS, "device_state"),
    deletes=frozenset(DATA_TABLES) - {"deletions"},  # the record of a deletion outlives what it deleted
    # A privacy rule applied to past data rewrites the raw rows it matches (stream_jobs/history.py).
    updates=_tables("intervals"),
)
DASHBOARD = Role(
    "dashboard",
    reads=_tables(SCHEMA_TABLE, "intervals", *_SESSIONS_AND_ROLLUPS, "devices", "category_rules", "goals", *_PRIVACY,
                  *_NOTICES, *_IMPORTS, _INSIGHTS),
)  # fmt: skip
# The operator's own login (ClickHouse's administrator, the local stack's generated owner password): unlimited
# inside the warehouse server's sandbox. No service runs with it.
OWNER = Role("owner", reads=TABLES, inserts=TABLES, deletes=TABLES, schema=True)

ROLES = {role.name: role for role in (MIGRATE, GATEWAY, WORKER, DELETION, DASHBOARD)}
# The production login of each role: ClickHouse user name and the environment variable holding its password.
LOGINS = {name: (f"productimon_{name}", f"PRODUCTIMON_WAREHOUSE_{name.upper()}_PASSWORD") for name in ROLES}

_READING = frozenset({"SELECT", "WITH", "EXISTS", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "SET", "USE"})


def _table_after(tokens: list[Name | str], n: int) -> tuple[str | None, int]:
    """The table named at tokens[n] (`t` or `db.t`) and the index just past it."""
    if n >= len(tokens) or not isinstance(tokens[n], Name):
        return None, n
    name = tokens[n]
    if n + 2 < len(tokens) and tokens[n + 1] == "." and isinstance(tokens[n + 2], Name):
        return tokens[n + 2].text, n + 3
    return name.text, n + 1


def _written(tokens: list[Name | str]) -> tuple[str, str | None, str | None]:
    """(what the statement does, the table it changes or None, a refusal reason or None)."""
    words = [t.text.upper() if isinstance(t, Name) and not t.quoted else None for t in tokens]
    kind = words[0] or ""
    if kind in _READING:
        return "read", None, None
    if kind == "INSERT" and words[1:2] == ["INTO"]:
        start = 3 if words[2:3] == ["TABLE"] else 2
        table, _ = _table_after(tokens, start)
        return "insert", table, None if table else "INSERT without a table"
    if kind == "DELETE" and words[1:2] == ["FROM"]:
        table, _ = _table_after(tokens, 2)
        return "delete", table, None if table else "DELETE without a table"
    if kind == "ALTER" and words[1:2] == ["TABLE"]:
        table, after = _table_after(tokens, 2)
        if words[after : after + 2] == ["ON", "CLUSTER"]:
            after += 3
        for command, action in (("DELETE", "delete"), ("UPDATE", "update")):
            if table and _only_commands(tokens[after:], command):
                return action, table, None
    return "schema", None, None


def _only_commands(commands: list[Name | str], command: str) -> bool:
    """Whether an ALTER's command list, as the engine prints it (`(DELETE WHERE ...), (...)`), holds nothing but
    `command` (DELETE or UPDATE) commands."""
    depth, expecting, seen = 0, False, False
    for token in commands:
        if expecting:
            if not (isinstance(token, Name) and not token.quoted and token.text.upper() == command):
                return False
            expecting, seen = False, True
        if token == "(":
            depth += 1
            expecting = depth == 1
        elif token == ")":
            depth -= 1
        elif depth == 0 and token != ",":
            return False
    return seen and depth == 0


def role_refusal(role: Role, canonical: str) -> str | None:
    """Why `role` may not run the statement (in the engine's canonical form), or None.

    A statement may change at most the one table it names after INSERT INTO, DELETE FROM or ALTER TABLE ...
    DELETE (or UPDATE); every other product table it names anywhere (in a sub-query, a join, a CTE) it must be
    allowed to read. Naming is enough to be refused: a table cannot be read without being named (table functions that
    read others, `merge`, `remote` and the like, are refused to everyone by warehouse/statements.py)."""
    tokens = list(names_and_symbols(canonical))
    if not tokens or role.schema:
        return None  # the migrations (and the owner) may do anything the sandbox allows
    action, table, malformed = _written(tokens)
    if malformed:
        return f"{malformed} is not available to the {role.name} role"
    if action == "schema" and not role.schema:
        first = tokens[0].text.upper() if isinstance(tokens[0], Name) else str(tokens[0])
        return f"the {role.name} role may not change the warehouse's schema ({first} needs the migrate role)"
    if action == "insert" and _base(table) not in role.inserts:
        return f"the {role.name} role may not insert into {table}"
    if action == "delete" and _base(table) not in role.deletes:
        return f"the {role.name} role may not delete from {table}"
    if action == "update" and _base(table) not in role.updates:
        return f"the {role.name} role may not update {table}"
    for n, token in enumerate(tokens):
        if isinstance(token, Name) and token.text != table and _base(token.text) in TABLES:
            if _is_parameter(tokens, n):
                continue  # `{devices:Array(String)}` names a query parameter, not a table
            if _base(token.text) not in role.reads:
                return f"the {role.name} role may not read {token.text}"
    return None


def _is_parameter(tokens: list[Name | str], n: int) -> bool:
    return 0 < n < len(tokens) - 1 and tokens[n - 1] == "{" and tokens[n + 1] == ":" and not tokens[n].quoted


def _base(table: str | None) -> str | None:
    """A cluster's per-shard table is the table it holds the rows of."""
    suffix = local_table("")
    return table[: -len(suffix)] if table and suffix and table.endswith(suffix) else table


# --- production: the same rights as ClickHouse users ---


def grants(role: Role, database: str) -> list[str]:
    """The GRANT statements (without grantee, as users.xml takes them) giving a ClickHouse user `role`."""
    if role.schema:
        return [f"GRANT ALL ON {database}.*", "GRANT CLUSTER ON *.*"]
    statements = []
    rights = (("SELECT", role.reads), ("INSERT", role.inserts), ("ALTER DELETE", role.deletes))
    for privilege, tables in (*rights, ("ALTER UPDATE", role.updates)):
        statements.extend(
            f"GRANT {privilege} ON {database}.{name}" for table in sorted(tables) for name in _with_local(table)
        )
    if role.deletes or role.updates:
        statements.append("GRANT CLUSTER ON *.*")  # a cluster's mutations go ON CLUSTER to every shard
    return statements


def _with_local(table: str) -> Iterable[str]:
    yield table
    if table != SCHEMA_TABLE:
        yield local_table(table)  # on a cluster (README.md "ClickHouse cluster") the rows are in these


def clickhouse_users_xml(database: str) -> str:
    """users.d file for a ClickHouse server: one user per role, password from the server's environment."""
    lines = [
        "<!-- Generated from warehouse/roles.py by productimon-migrate (its users-xml option): do not edit by hand",
        "     (tests/integration/test_warehouse_roles.py checks that it matches). One user per service, each with",
        "     only the rights its job needs (docs/least-privilege.md). Passwords come from the server's",
        "     environment, set by infra/compose.yaml from .env. -->",
        "<clickhouse>",
        "    <users>",
    ]
    for name, role in ROLES.items():
        user, variable = LOGINS[name]
        lines += [
            f"        <{user}>",
            f"            <password from_env={quoteattr(variable)}/>",
            "            <networks><ip>::/0</ip></networks>",
            "            <profile>default</profile>",
            "            <quota>default</quota>",
            "            <access_management>0</access_management>",
            "            <grants>",
            *(f"                <query>{escape(statement)}</query>" for statement in grants(role, database)),
            "            </grants>",
            f"        </{user}>",
        ]
    lines += ["    </users>", "</clickhouse>", ""]
    return "\n".join(lines)
