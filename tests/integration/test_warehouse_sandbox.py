"""The embedded warehouse server's sandbox, tried as an attacker holding the warehouse password would: statements
that reach for a file, a URL, the system tables, another process or the host, spelt every way the engine accepts
(quoting, comments, case, whitespace, unicode, nesting, sub-queries, aliases), through a real server over HTTP.

Each statement must leave no trace outside: the secret file's marker never comes back, nothing is written
beside it, the local HTTP server is never called, the query log is never read. And the same spellings of the
product's own statements still work, so the sandbox is not just refusing everything."""

from __future__ import annotations

import base64
import http.server
import itertools
import random
import threading
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
import urllib3

from tests.integration.test_warehouse_server import ACTIVITY_DDL, PASSWORD, USER
from warehouse.server import WarehouseServer

MARKER = "SECRET-MARKER-5f3c1b"


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        _Recorder.hits.append(self.path)
        body = f"{MARKER}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("sandbox")
    secret = root / "secret.txt"
    secret.write_text(f"{MARKER}\n")
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    server = WarehouseServer(root / "warehouse", port=0, user=USER, password=PASSWORD)
    server.start()
    try:
        _send(server, ACTIVITY_DDL)
        _send(
            server,
            "INSERT INTO activity (user_id, start, seconds, app, title, keys) VALUES ('u', now(), 1, 'a', 't', 1)",
        )
        yield {
            "server": server,
            "secret": secret,
            "out": root / "out.txt",
            "url": f"http://127.0.0.1:{web.server_port}/x",
        }
    finally:
        server.shutdown()
        web.shutdown()


def _send(server: WarehouseServer, sql: str, **params: str) -> urllib3.BaseHTTPResponse:
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    query = urlencode(params)
    return urllib3.request(
        "POST",
        f"http://127.0.0.1:{server.port}/?{query}",
        body=sql.encode(),
        headers={"Authorization": f"Basic {auth}"},
        retries=False,
        timeout=10,
    )


# What an attacker reaches for, as statement templates: {F} is a spelling of a function or table-function name,
# {S} of the system database, {P} the secret file's path, {U} the local URL, {O} where an OUTFILE would go.
_REACHES = [
    ("file", "SELECT * FROM {F}('{P}', LineAsString)"),
    ("file", "SELECT {F}('{P}')"),
    ("file", "SELECT x FROM (SELECT {F}('{P}') AS x) AS t"),
    ("file", "WITH (SELECT {F}('{P}')) AS x SELECT x"),
    ("file", "SELECT 1 WHERE 1 IN (SELECT length({F}('{P}')))"),
    ("file", "SELECT * FROM activity AS a JOIN {F}('{P}', LineAsString) AS b ON 1 = 1"),
    ("file", "SELECT arrayMap(x -> concat(x, {F}('{P}')), ['a'])"),
    ("file", "CREATE TABLE leak (line String) ENGINE = {F}(LineAsString, '{P}')"),
    ("file", "CREATE VIEW leak_view AS SELECT * FROM {F}('{P}', LineAsString)"),
    ("file", "INSERT INTO activity (title) SELECT * FROM {F}('{P}', LineAsString)"),
    ("file", "SELECT * FROM view(SELECT * FROM {F}('{P}', LineAsString))"),
    ("file", "DESCRIBE TABLE {F}('{P}', LineAsString)"),
    ("url", "SELECT * FROM {F}('{U}', LineAsString)"),
    ("url", "CREATE TABLE leak_url (line String) ENGINE = {F}('{U}', LineAsString)"),
    ("url", "SELECT (SELECT * FROM {F}('{U}', LineAsString)) AS x"),
    ("system", "SELECT query FROM {S}.query_log"),
    ("system", "SELECT * FROM {S}.processes"),
    ("system", "SELECT * FROM {S}.query_log AS settings"),
    ("system", "SELECT * FROM activity WHERE title IN (SELECT query FROM {S}.query_log)"),
    ("system", "USE {S}"),
    ("system", "SELECT * FROM merge({S}, '.*')"),
    ("system", "SELECT * FROM loop({S}, query_log)"),
    ("system", "SHOW PROCESSLIST"),
    ("outfile", "SELECT '{M}' INTO OUTFILE '{O}'"),
    ("outfile", "SELECT * FROM activity INTO OUTFILE '{O}' FORMAT CSV"),
    ("infile", "INSERT INTO activity (title) FROM INFILE '{P}' FORMAT LineAsString"),
    ("host", "SELECT * FROM executable('cat {P}', LineAsString, 'x String')"),
    ("host", "SYSTEM FLUSH LOGS"),
    ("host", "SYSTEM SHUTDOWN"),
    ("host", "ATTACH TABLE stolen FROM '{P}' (a String) ENGINE = MergeTree ORDER BY a"),
    (
        "host",
        "CREATE DICTIONARY d (a String) PRIMARY KEY a SOURCE(FILE(path '{P}' format 'LineAsString')) "
        "LAYOUT(FLAT()) LIFETIME(0)",
    ),
    ("host", "CREATE FUNCTION leak_fn AS x -> x"),
    ("host", "CREATE DATABASE host_fs ENGINE = Filesystem('/')"),
    ("host", "SELECT * FROM remote('127.0.0.1:9000', system.one)"),
    ("host", "SELECT * FROM python('x')"),
    ("host", "SELECT dictGet('d', 'a', 1)"),
    ("settings", "SELECT * FROM activity SETTINGS format_schema = '{P}:M'"),
    ("settings", "SET dialect = 'prql'"),
    ("settings", "SELECT 1 SETTINGS allow_introspection_functions = 1"),
    ("settings", "SELECT 1 FORMAT Template SETTINGS format_template_resultset = '{P}'"),
]


def _spellings(name: str, *, case: bool = True) -> list[str]:
    """Ways the engine accepts one name: as is, quoted each way, in another case (function names only: database
    names are case-sensitive), with comments around it."""
    cased = [name.upper(), name.capitalize()] if case else [f"`{name}` /**/", f'"{name}"/*""*/']
    return [name, f"`{name}`", f'"{name}"', *cased, f"/* x */{name}/* y */", f"`{name}`/**/", f"{name}\t",
            f"--c\n{name}", f"--☃\n{name}"]  # fmt: skip


def _dressings(sql: str, rng: random.Random) -> Iterator[str]:
    """The same statement in other dress: comments, newlines, case, unicode in literals and aliases."""
    yield sql
    yield sql.replace(" ", "\n", 3)
    yield "/* ☃ */ " + sql.replace(" ", " /*é*/ ", 2)
    yield "  " + sql + " -- trailing ✓"
    yield sql.replace("SELECT", "select", 1).replace("FROM", "fRoM", 1)
    yield sql.replace(" ", rng.choice(["\t", "\r\n", "  "]), 2)


def hostile_statements(sandbox: dict) -> list[tuple[str, str]]:
    rng = random.Random(20261202)
    values = {"P": str(sandbox["secret"]), "U": sandbox["url"], "O": str(sandbox["out"]), "M": MARKER}
    made: list[tuple[str, str]] = []
    for reach, template in _REACHES:
        names = {"file": "file", "url": "url"}.get(reach)
        subject = _spellings(names) if names else _spellings("system", case=False) if "{S}" in template else [None]
        for spelling, dressed in itertools.product(subject, range(6)):
            sql = template.format(**values, F=spelling or "", S=spelling or "")
            made.append((reach, list(_dressings(sql, rng))[dressed]))
    return made


def test_no_spelling_of_a_hostile_statement_finds_a_way_out(sandbox):
    server = sandbox["server"]
    statements = hostile_statements(sandbox)
    assert len(statements) >= 500
    escaped = []
    for reach, sql in statements:
        try:
            answer = _send(server, sql)
        except urllib3.exceptions.HTTPError as error:  # it ran, or hangs: either way not refused
            escaped.append(f"{reach}: {sql!r} -> no answer ({error.__class__.__name__})")
            continue
        body = answer.data.decode(errors="replace")
        code = answer.headers.get("X-ClickHouse-Exception-Code")
        if answer.status == 200 or MARKER in body or code != "497":
            escaped.append(f"{reach}: {sql!r} -> {answer.status} {code} {body[:120]!r}")
    assert _Recorder.hits == [], f"the local URL was called: {_Recorder.hits[:3]}"
    assert not sandbox["out"].exists(), "an OUTFILE was written"
    assert escaped == [], f"{len(escaped)} of {len(statements)} were not refused by the sandbox:\n" + "\n".join(
        escaped[:20]
    )
    # Still there: nothing the statements tried was created or dropped.
    assert _send(server, "EXISTS TABLE leak").data.strip() == b"0"
    assert _send(server, "SELECT count() FROM activity").data.strip() == b"1"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count() FROM /* c */ `activity`",
        "SELECT count() FROM \"activity\" AS `file` WHERE `file`.user_id = 'u'",
        "SELECT name FROM system.tables WHERE database = currentDatabase() AND name = 'activity'",
        "SELECT name FROM `system`.`settings` WHERE name = 'max_threads'",
        "SELECT count() FROM numbers(10) AS file",
        "SELECT format('{} {}', 'file', 'url'), 'SELECT * FROM file(\\'x\\')'",
        "SELECT x FROM (SELECT title AS x FROM activity) WHERE x != 'system.query_log'",
        "CREATE TABLE IF NOT EXISTS kept (a String) ENGINE = ReplacingMergeTree ORDER BY a",
        "ALTER TABLE activity DELETE WHERE user_id = 'nobody' SETTINGS mutations_sync = 2",
        "SELECT 1 SETTINGS max_threads = 1",
        "SHOW TABLES",
    ],
)
def test_the_products_own_statements_pass_in_any_spelling(sandbox, sql):
    answer = _send(sandbox["server"], sql)
    assert answer.status == 200, answer.data.decode(errors="replace")


def test_a_url_setting_that_names_a_file_is_refused(sandbox):
    answer = _send(sandbox["server"], "SELECT 1", format_schema=f"{sandbox['secret']}:M")
    assert answer.headers.get("X-ClickHouse-Exception-Code") == "497"
    assert "format_schema" in answer.data.decode()


def test_the_system_database_cannot_be_made_the_current_one(sandbox):
    answer = _send(sandbox["server"], "SELECT count() FROM query_log", database="system")
    assert answer.headers.get("X-ClickHouse-Exception-Code") == "497"


def test_a_statement_the_engine_cannot_parse_fails_with_its_own_error(sandbox):
    answer = _send(sandbox["server"], "SELEC 1")
    assert answer.headers.get("X-ClickHouse-Exception-Code") == "62"
    assert "formatQuery" not in answer.data.decode()
