"""The embedded warehouse server, spoken to by a real clickhouse-connect client the way every process does."""

from __future__ import annotations

import base64
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import clickhouse_connect
import pandas as pd
import pyarrow as pa
import pytest
import urllib3
import zstandard
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError
from clickhouse_connect.driver.summary import QuerySummary

from infra.processes import free_port
from warehouse.server import WarehouseServer, main

USER = "productimon"
PASSWORD = "correct horse 'battery' \"staple\""

ACTIVITY_DDL = """
    CREATE TABLE IF NOT EXISTS activity (
        user_id   String,
        start     DateTime64(3, 'UTC'),
        seconds   UInt32,
        app       LowCardinality(String),
        title     Nullable(String),
        keys      UInt32
    ) ENGINE = MergeTree ORDER BY (user_id, start)
"""
COLUMNS = ["user_id", "start", "seconds", "app", "title", "keys"]
T0 = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC)


def activity_rows(user_id: str, count: int, offset: int = 0) -> list[list[object]]:
    return [
        [
            user_id,
            T0 + dt.timedelta(seconds=offset + i, milliseconds=i % 1000),
            i % 600,
            ["firefox", "code", "slack"][i % 3],
            None if i % 5 == 0 else f'tïtle «{i}» it\'s "quoted"',
            i % 1000,
        ]
        for i in range(count)
    ]


def utc(row: tuple[object, ...] | list[object]) -> list[object]:
    """A row as inserted: clickhouse-connect hands back naive datetimes when the server's zone is UTC."""
    return [v.replace(tzinfo=dt.UTC) if isinstance(v, dt.datetime) and v.tzinfo is None else v for v in row]


def connect(server: WarehouseServer, **options: object) -> Client:
    # Without an HTTP session, as warehouse.client.connect makes every client: the server has none.
    options = {"username": USER, "password": PASSWORD, "autogenerate_session_id": False, **options}
    return clickhouse_connect.get_client(host="127.0.0.1", port=server.port, **options)


def post(server: WarehouseServer, sql: str, *, url: str = "/", **headers: str) -> urllib3.BaseHTTPResponse:
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return urllib3.request(
        "POST",
        f"http://127.0.0.1:{server.port}{url}",
        body=sql.encode(),
        headers={"Authorization": f"Basic {auth}", **headers},
        decode_content=False,
        retries=False,
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[WarehouseServer]:
    running = WarehouseServer(tmp_path / "warehouse", port=0, user=USER, password=PASSWORD)
    running.start()
    try:
        yield running
    finally:
        running.shutdown()


@pytest.fixture
def client(server: WarehouseServer) -> Iterator[Client]:
    opened = connect(server)
    opened.command(ACTIVITY_DDL)
    yield opened
    opened.close()


def test_a_plain_client_connects_and_answers_select_one(server):
    client = connect(server)
    assert client.command("SELECT 1") == 1
    assert client.ping()
    assert client.server_version.startswith("26.")
    client.close()


def test_databases_and_tables_are_created_and_used_through_the_database_parameter(server):
    admin = connect(server)
    admin.command("CREATE DATABASE IF NOT EXISTS analytics")
    scoped = connect(server, database="analytics")
    scoped.command(ACTIVITY_DDL)
    assert scoped.command("SELECT currentDatabase()") == "analytics"
    assert admin.command("EXISTS TABLE analytics.activity") == 1
    assert admin.command("EXISTS TABLE default.activity") == 0
    with pytest.raises(DatabaseError) as refused:
        connect(server, database="no_such_database")
    assert refused.value.code == 81


@pytest.mark.parametrize("compress", [False, "lz4", "zstd", "gzip"])
def test_inserted_rows_read_back_unchanged_with_each_compression(server, compress):
    client = connect(server, compress=compress)
    client.command(ACTIVITY_DDL)
    rows = activity_rows("alice", 2_000)
    summary = client.insert("activity", rows, column_names=COLUMNS)
    assert summary.written_rows == len(rows)
    read = client.query("SELECT * FROM activity ORDER BY start").result_rows
    assert [utc(row) for row in read] == rows


def test_dataframes_round_trip_through_insert_df_and_query_df(client):
    frame = pd.DataFrame(activity_rows("bob", 500), columns=COLUMNS)
    client.insert_df("activity", frame)
    back = client.query_df("SELECT * FROM activity ORDER BY start")
    assert back["user_id"].tolist() == frame["user_id"].tolist()
    assert back["seconds"].tolist() == frame["seconds"].tolist()
    assert back["app"].tolist() == frame["app"].tolist()
    assert [None if pd.isna(t) else t for t in back["title"]] == [None if pd.isna(t) else t for t in frame["title"]]
    assert utc([ts.to_pydatetime() for ts in back["start"]]) == frame["start"].tolist()


def test_arrow_tables_round_trip_through_insert_arrow_and_query_arrow(client):
    table = pa.table(
        {
            "user_id": pa.array(["carol"] * 300),
            "start": pa.array([T0 + dt.timedelta(seconds=i) for i in range(300)], pa.timestamp("ms", tz="UTC")),
            "seconds": pa.array(range(300), pa.uint32()),
            "app": pa.array(["code"] * 300),
            "title": pa.array([None if i % 2 else f"t{i}" for i in range(300)]),
            "keys": pa.array(range(300), pa.uint32()),
        }
    )
    client.insert_arrow("activity", table)
    back = client.query_arrow("SELECT * FROM activity ORDER BY start")
    assert back.num_rows == 300
    assert back.column("user_id").to_pylist() == table.column("user_id").to_pylist()
    assert back.column("title").to_pylist() == table.column("title").to_pylist()
    assert back.column("keys").to_pylist() == table.column("keys").to_pylist()
    assert [ts.timestamp() for ts in back.column("start").to_pylist()] == [
        ts.timestamp() for ts in table.column("start").to_pylist()
    ]


def test_bound_parameters_are_values_never_sql(client):
    client.insert("activity", activity_rows("alice", 10) + activity_rows("bob", 7), column_names=COLUMNS)
    count = "SELECT count() FROM activity WHERE user_id = {u:String}"
    assert client.query(count, parameters={"u": "alice"}).result_rows == [(10,)]
    assert client.query(count, parameters={"u": "alice' OR 1=1 --"}).result_rows == [(0,)]
    assert client.query(count, parameters={"u": "alice\\' OR \\'1\\'=\\'1"}).result_rows == [(0,)]
    awkward = 'it\'s "quoted" \\ back\tslash\nnew line; DROP TABLE activity; --'
    assert client.query("SELECT {v:String}", parameters={"v": awkward}).result_rows == [(awkward,)]
    assert client.command("EXISTS TABLE activity") == 1


def test_long_bound_parameters_travel_as_a_form_and_still_bind(client):
    long_value = "x'\"\\" * 3_000  # past clickhouse-connect's 4 KiB URL budget, so it posts a multipart form
    assert client.query("SELECT length({v:String})", parameters={"v": long_value}).result_rows == [(len(long_value),)]


def test_bad_sql_raises_a_database_error_carrying_the_clickhouse_code(client):
    with pytest.raises(DatabaseError) as syntax:
        client.query("SELEC 1")
    assert syntax.value.code == 62
    assert "Code: 62" in str(syntax.value)
    with pytest.raises(DatabaseError) as missing:
        client.command("SELECT * FROM no_such_table")
    assert missing.value.code == 60


def test_errors_are_reported_with_clickhouse_headers_and_status(server):
    response = post(server, "SELECT * FROM no_such_table")
    assert response.status == 404
    assert response.headers["X-ClickHouse-Exception-Code"] == "60"
    assert response.data.startswith(b"Code: 60. DB::Exception: ")


def test_wrong_password_is_refused_without_echoing_it(server):
    wrong = "hunter2-not-the-password"
    with pytest.raises(DatabaseError) as refused:
        connect(server, password=wrong)
    assert refused.value.code == 516
    assert wrong not in str(refused.value)
    with pytest.raises(DatabaseError):
        connect(server, username="someone_else")

    for headers in ({"X-ClickHouse-User": USER, "X-ClickHouse-Key": wrong}, {}):
        response = urllib3.request(
            "POST", f"http://127.0.0.1:{server.port}/?password={wrong}", body=b"SELECT 1", headers=headers
        )
        assert response.status == 403
        assert response.headers["X-ClickHouse-Exception-Code"] == "516"
        assert wrong.encode() not in response.data


def test_a_refused_insert_leaves_the_connection_usable(server, client):
    intruder = urllib3.PoolManager(maxsize=1)
    url = f"http://127.0.0.1:{server.port}/?query=INSERT+INTO+activity+FORMAT+Native"
    refused = intruder.request("POST", url, body=os.urandom(3 << 20), headers={"X-ClickHouse-Key": "nope"})
    assert refused.headers["X-ClickHouse-Exception-Code"] == "516"
    auth = {"X-ClickHouse-User": USER, "X-ClickHouse-Key": PASSWORD}
    assert intruder.request("POST", f"http://127.0.0.1:{server.port}/", body=b"SELECT 7", headers=auth).data == b"7\n"
    assert client.command("SELECT count() FROM activity") == 0


def test_multi_statements_and_get_writes_are_refused_like_clickhouse(server, client):
    with pytest.raises(DatabaseError) as multi:
        client.command("SELECT 1; DROP TABLE activity")
    assert multi.value.code == 62
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    get = urllib3.request(
        "GET",
        f"http://127.0.0.1:{server.port}/?query=DROP+TABLE+activity",
        headers={"Authorization": f"Basic {auth}"},
    )
    assert get.headers["X-ClickHouse-Exception-Code"] == "164"
    assert client.command("EXISTS TABLE activity") == 1


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM file('/etc/passwd', LineAsString)",
        "SELECT 1 INTO OUTFILE '/tmp/productimon-outfile'",
        "INSERT INTO activity FROM INFILE '/etc/passwd' FORMAT LineAsString",
        "CREATE TABLE leak (line String) ENGINE = File(LineAsString, '/etc/passwd')",
        "SELECT * FROM url('http://127.0.0.1:1/', LineAsString)",
    ],
)
def test_the_server_filesystem_and_network_are_out_of_reach(client, sql):
    # A ClickHouse server confines these to user_files; chDB has no such sandbox, so the server refuses them.
    with pytest.raises(DatabaseError) as refused:
        client.command(sql)
    assert refused.value.code == 497


def test_settings_in_the_url_apply_to_that_query_only(client):
    default_threads = client.command("SELECT getSetting('max_threads')")
    assert client.command("SELECT getSetting('max_threads')", settings={"max_threads": 1}) == 1
    assert client.command("SELECT getSetting('max_threads')") == default_threads


def test_http_sessions_are_refused(server):
    with_session = connect(server, autogenerate_session_id=True)
    with pytest.raises(DatabaseError) as refused:
        with_session.command("SELECT 1")
    assert refused.value.code == 48
    response = post(server, "SELECT 1", url="/?session_id=s1")
    assert response.status == 501
    assert response.headers["X-ClickHouse-Exception-Code"] == "48"


def test_set_readonly_is_forgotten_once_the_statement_ends(server, client):
    sessionless = connect(server)
    sessionless.command("SET readonly = 1")  # without a session, forgotten once the statement ends
    for _ in range(6):  # whichever pooled engine connection serves them
        client.insert("activity", activity_rows("gina", 1), column_names=COLUMNS)
        sessionless.insert("activity", activity_rows("hank", 1), column_names=COLUMNS)
    assert sessionless.command("SELECT count() FROM activity") == 12


def test_command_tells_an_empty_result_from_a_statement_without_one(client):
    assert client.command("SELECT user_id FROM activity WHERE 0") == ""
    assert isinstance(client.command("CREATE TABLE IF NOT EXISTS other (a UInt8) ENGINE = Memory"), QuerySummary)


def test_responses_are_compressed_only_when_the_client_asks(server):
    sql = "SELECT number FROM numbers(1000) FORMAT TabSeparated"
    expected = "".join(f"{n}\n" for n in range(1000)).encode()
    compressed = post(server, sql, url="/?enable_http_compression=1", **{"Accept-Encoding": "zstd"})
    assert compressed.headers["Content-Encoding"] == "zstd"
    assert zstandard.ZstdDecompressor().decompressobj().decompress(compressed.data) == expected
    plain = post(server, sql, **{"Accept-Encoding": "zstd"})
    assert "Content-Encoding" not in plain.headers
    assert plain.data == expected
    assert plain.headers["X-ClickHouse-Format"] == "TabSeparated"
    assert plain.headers["X-ClickHouse-Timezone"]
    assert plain.headers["X-ClickHouse-Query-Id"]


def test_many_clients_insert_and_query_concurrently(server, client):
    users = [f"user-{n}" for n in range(6)]
    batches, batch_size = 5, 400
    failures: list[BaseException] = []

    def work(user_id: str) -> None:
        try:
            mine = connect(server, compress="lz4")
            for batch in range(batches):
                mine.insert("activity", activity_rows(user_id, batch_size, batch * batch_size), column_names=COLUMNS)
                seen = mine.query(
                    "SELECT count() FROM activity WHERE user_id = {u:String}", parameters={"u": user_id}
                ).result_rows
                assert seen == [((batch + 1) * batch_size,)]
            mine.close()
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(user_id,)) for user_id in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures
    totals = dict(client.query("SELECT user_id, count() FROM activity GROUP BY user_id").result_rows)
    assert totals == dict.fromkeys(users, batches * batch_size)


def test_data_survives_shutdown_and_a_new_server_on_the_same_directory(tmp_path):
    directory = tmp_path / "warehouse"
    first = WarehouseServer(directory, port=0, user=USER, password=PASSWORD)
    first.start()
    writer = connect(first)
    writer.command(ACTIVITY_DDL)
    writer.insert("activity", activity_rows("dave", 1_234), column_names=COLUMNS)
    writer.close()
    first.shutdown()

    second = WarehouseServer(directory, port=0, user=USER, password=PASSWORD)
    second.start()
    try:
        reader = connect(second)
        assert reader.command("SELECT count() FROM activity WHERE user_id = 'dave'") == 1_234
        reader.close()
    finally:
        second.shutdown()


def test_a_200k_row_insert_arrives_whole(client):
    rows = activity_rows("erin", 200_000)
    client.insert("activity", rows, column_names=COLUMNS, settings={"max_insert_block_size": 50_000})
    count, keys, first, last = client.query(
        "SELECT count(), sum(keys), min(start), max(start) FROM activity"
    ).result_rows[0]
    assert count == 200_000
    assert keys == sum(row[5] for row in rows)
    assert utc([first, last]) == [rows[0][1], rows[-1][1]]


def test_decimal_and_nested_types_survive_the_native_round_trip(client):
    client.command(
        "CREATE TABLE typed (id UInt8, amount Decimal(12, 3), tags Array(String), attrs Map(String, UInt16)) "
        "ENGINE = MergeTree ORDER BY id"
    )
    rows = [[1, Decimal("1234.567"), ["a", "b'c"], {"k": 7}], [2, Decimal("-0.001"), [], {}]]
    client.insert("typed", rows)
    assert [list(row) for row in client.query("SELECT * FROM typed ORDER BY id").result_rows] == rows


def test_serve_forever_serves_until_shutdown_from_another_thread(tmp_path):
    blocking = WarehouseServer(tmp_path / "warehouse", port=0, user=USER, password=PASSWORD)
    serving = threading.Thread(target=blocking.serve_forever)
    serving.start()
    try:
        assert connect(blocking).command("SELECT 41 + 1") == 42
    finally:
        blocking.shutdown()
        serving.join(30)
    assert not serving.is_alive()


def test_an_empty_password_is_refused(tmp_path):
    with pytest.raises(ValueError, match="password"):
        WarehouseServer(tmp_path, port=0, user=USER, password="")


def test_main_refuses_an_empty_password_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PRODUCTIMON_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PRODUCTIMON_WAREHOUSE_PASSWORD", "")
    monkeypatch.delenv("PRODUCTIMON_TRACEBACK", raising=False)
    monkeypatch.delenv("PRODUCTIMON_CONFIG", raising=False)
    monkeypatch.setattr("sys.argv", ["productimon-warehouse"])
    assert main() == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "PRODUCTIMON_WAREHOUSE_PASSWORD" in error


def _start_main(tmp_path: Path, port: int) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PRODUCTIMON_DATA_DIR": str(tmp_path),
        "PRODUCTIMON_WAREHOUSE_PORT": str(port),
        "PRODUCTIMON_WAREHOUSE_USER": USER,
        "PRODUCTIMON_WAREHOUSE_PASSWORD": PASSWORD,
    }
    env.pop("PRODUCTIMON_CONFIG", None)
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; from warehouse.server import main; sys.exit(main())"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_command_announces_itself_and_stops_cleanly_on_signal(tmp_path, signum):
    port = free_port()
    process = _start_main(tmp_path, port)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert re.fullmatch(rf"warehouse listening on http://127\.0\.0\.1:{port}\n", line), line
        client = clickhouse_connect.get_client(
            host="127.0.0.1", port=port, username=USER, password=PASSWORD, autogenerate_session_id=False
        )
        client.command(ACTIVITY_DDL)
        client.insert("activity", activity_rows("frank", 10), column_names=COLUMNS)
        process.send_signal(signum)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.stdout.read() == ""
    assert _reopens(tmp_path / "warehouse")


def _reopens(directory: Path) -> bool:
    server = WarehouseServer(directory, port=0, user=USER, password=PASSWORD)
    server.start()
    try:
        return connect(server).command("SELECT count() FROM activity") == 10
    finally:
        server.shutdown()


def test_a_second_server_on_the_same_directory_fails_with_a_clear_line(server, tmp_path):
    process = _start_main(tmp_path, free_port())
    try:
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1
    assert "another warehouse server" in err.strip().splitlines()[-1]
