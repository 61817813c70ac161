"""The sync client (clients/python/redshift_flight_sync.py) against the test bed: repeated runs with
writes in between end with the same data as PostgreSQL (DuckDB and Parquet), a crash between
reading endpoints and storing the cursor loses nothing, and one table's failure does not lose
another's progress."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from psycopg import sql

from support import cancel_flight, command, decode_cursor

CLIENT_DIR = Path(__file__).resolve().parents[1]
SYNC = CLIENT_DIR / "redshift_flight_sync.py"
sys.path.insert(0, str(CLIENT_DIR))
import redshift_flight_sync  # noqa: E402


def ident(*parts: str) -> sql.Composable:
    return sql.SQL(".").join(sql.Identifier(p) for p in parts)


@pytest.fixture
def source(pg, make_schema):
    """Three tables: orders (primary key, updated_at: incremental), customers (primary key, no
    time column: a full snapshot every run), events (updated_at, no primary key: appended)."""
    schema = make_schema("sync")
    pg.execute(
        sql.SQL(
            "CREATE TABLE {} (id bigint PRIMARY KEY, customer_id integer, amount numeric(12,2), "
            "status varchar(20), note text, placed timestamptz, updated_at timestamp NOT NULL)"
        ).format(ident(schema, "orders"))
    )
    pg.execute(sql.SQL("CREATE TABLE {} (id integer PRIMARY KEY, name varchar(40), vip boolean)").format(ident(schema, "customers")))
    pg.execute(sql.SQL("CREATE TABLE {} (kind varchar(10), payload text, updated_at timestamp)").format(ident(schema, "events")))
    add_orders(pg, schema, range(1, 201), dt.datetime(2024, 1, 1))
    pg.execute(
        sql.SQL("INSERT INTO {} SELECT g, 'customer ' || g || ' ''q'' \\ ü', g % 3 = 0 FROM generate_series(1, 30) g").format(
            ident(schema, "customers")
        )
    )
    add_events(pg, schema, 0, 10, dt.datetime(2024, 1, 1))
    return schema


def add_orders(pg, schema: str, ids, at: dt.datetime) -> None:
    with pg.cursor() as cur:
        cur.executemany(
            sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s, %s, %s, %s)").format(ident(schema, "orders")),
            [
                (
                    i, i % 30 + 1, Decimal(i * 131 % 100000) / 100, "new", None if i % 5 == 0 else f"note {i} 'x'",
                    dt.datetime(2023, 6, 1, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=i), at + dt.timedelta(microseconds=i),
                )
                for i in ids
            ],
        )


def add_events(pg, schema: str, start: int, n: int, at: dt.datetime) -> None:
    with pg.cursor() as cur:
        cur.executemany(
            sql.SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(ident(schema, "events")),
            [("k" + str(i % 3), f"event {i}", at + dt.timedelta(seconds=i)) for i in range(start, start + n)],
        )


def write_between_runs(pg, schema: str, at: dt.datetime) -> None:
    """Inserts and updates (moving updated_at forward) orders; changes and deletes customers (a
    full snapshot carries deletes); appends events."""
    add_orders(pg, schema, range(201, 261), at)
    pg.execute(
        sql.SQL("UPDATE {} SET status = 'shipped', amount = amount + 0.01, updated_at = %s WHERE id %% 7 = 0").format(
            ident(schema, "orders")
        ),
        [at + dt.timedelta(seconds=1, microseconds=7)],
    )
    pg.execute(sql.SQL("UPDATE {} SET vip = NOT vip WHERE id < 5").format(ident(schema, "customers")))
    pg.execute(sql.SQL("DELETE FROM {} WHERE id > 27").format(ident(schema, "customers")))
    pg.execute(sql.SQL("INSERT INTO {} VALUES (100, 'new customer', NULL)").format(ident(schema, "customers")))
    add_events(pg, schema, 10, 5, at)


def postgres(pg, schema: str, table: str, order: str) -> list[tuple]:
    return pg.execute(sql.SQL("SELECT * FROM {} ORDER BY {}").format(ident(schema, table), sql.SQL(order))).fetchall()


ORDER_BY = {"orders": "id", "customers": "id", "events": "payload"}


def run_cli(location: str, state: Path, out: Path, *tables: str, extra=(), env=None, script=None) -> subprocess.CompletedProcess:
    args = [sys.executable, str(script or SYNC), "--location", location, "--state", str(state), "--out", str(out), *extra, *tables]
    return subprocess.run(args, capture_output=True, text=True, timeout=240, env=env)


def summary_lines(result: subprocess.CompletedProcess) -> dict[str, str]:
    lines = {}
    for line in result.stdout.splitlines():
        table, _, rest = line.partition(": ")
        lines[table] = rest
    return lines


def load_state(state: Path) -> dict:
    return json.loads(state.read_text())["tables"]


def duckdb_rows(database: Path, name: str, order: str) -> list[tuple]:
    with duckdb.connect(str(database), read_only=True) as con:
        return con.execute(f'SELECT * FROM "{name}" ORDER BY {order}').fetchall()


def test_cli_twice_with_writes_duckdb_equals_postgres(flight_server, pg, source, tmp_path):
    schema = source
    tables = [f"{schema}.{t}" for t in ("orders", "customers", "events")]
    state, out = tmp_path / "state.json", tmp_path / "data"
    database = out / "redshift_flight.duckdb"

    first = run_cli(flight_server.location, state, out, *tables, extra=["--format", "duckdb", "--workers", "3"])
    assert first.returncode == 0, first.stderr
    lines = summary_lines(first)
    assert "mode=incremental key=updated_at rows=200" in lines[tables[0]] and "cursor advanced" in lines[tables[0]]
    assert "mode=full rows=30" in lines[tables[1]] and "no cursor" in lines[tables[1]]
    assert "mode=incremental key=updated_at rows=10" in lines[tables[2]]
    cursors = {t: e["cursor"] for t, e in load_state(state).items()}
    assert decode_cursor(cursors[tables[0]])["b"] == "2024-01-01 00:00:00.0002"
    assert cursors[tables[1]] is None

    write_between_runs(pg, schema, dt.datetime(2024, 2, 1))
    second = run_cli(flight_server.location, state, out, *tables, extra=["--format", "duckdb"])
    assert second.returncode == 0, second.stderr
    lines = summary_lines(second)
    assert "mode=incremental key=updated_at rows=88" in lines[tables[0]] and "cursor advanced" in lines[tables[0]]
    assert "rows=5 " in lines[tables[2]]
    state_now = load_state(state)
    assert decode_cursor(state_now[tables[0]]["cursor"])["b"] == "2024-02-01 00:00:01.000007"
    for t in ("orders", "customers", "events"):
        assert duckdb_rows(database, f"{schema}.{t}", ORDER_BY[t]) == postgres(pg, schema, t, ORDER_BY[t]), t

    # Nothing changed: no rows, the cursors stay byte for byte.
    third = run_cli(flight_server.location, state, out, *tables, extra=["--format", "duckdb"])
    assert third.returncode == 0, third.stderr
    assert "rows=0 endpoints=0 cursor unchanged" in summary_lines(third)[tables[0]]
    assert load_state(state)[tables[0]]["cursor"] == state_now[tables[0]]["cursor"]
    for t in ("orders", "customers", "events"):
        assert duckdb_rows(database, f"{schema}.{t}", ORDER_BY[t]) == postgres(pg, schema, t, ORDER_BY[t]), t


def test_parquet_output_upserted_equals_postgres(flight_server, pg, source, tmp_path):
    schema = source
    tables = [f"{schema}.{t}" for t in ("orders", "customers", "events")]
    state, out = tmp_path / "state.json", tmp_path / "data"
    kwargs = dict(location=flight_server.location, state=state, out=out, format="parquet", workers=3)

    results = redshift_flight_sync.sync_tables(tables, **kwargs)
    assert [r.ok for r in results] == [True, True, True], [r.error for r in results]
    write_between_runs(pg, schema, dt.datetime(2024, 2, 1))
    # A lookback re-reads rows already synced: the upsert on the primary key absorbs them.
    results = redshift_flight_sync.sync_tables(tables[:2], lookback="1 hour", **kwargs)
    assert [r.ok for r in results] == [True, True], [r.error for r in results]
    assert results[0].rows == 200 + 60, "the lookback re-read the first sync's rows too"
    results += redshift_flight_sync.sync_tables(tables[2:], **kwargs)
    assert results[2].ok and results[2].rows == 5

    files = {t: sorted(p.name for p in (out / t).iterdir()) for t in tables}
    assert files[tables[0]] == ["000001-incremental.parquet", "000002-incremental.parquet"]
    assert files[tables[1]] == ["000002-full.parquet"], "a full snapshot replaces the files before it"
    for t in ("orders", "customers", "events"):
        got = redshift_flight_sync.read_parquet_output(out, f"{schema}.{t}").sort_by(ORDER_BY[t])
        assert [tuple(r.values()) for r in got.to_pylist()] == postgres(pg, schema, t, ORDER_BY[t]), t
    assert pq.read_schema(out / tables[0] / "000001-incremental.parquet").metadata[b"redshift_flight.primary_key"] == b'["id"]'

    # A run with nothing new writes no file for the incremental tables, a new snapshot for the full one.
    results = redshift_flight_sync.sync_tables(tables, **kwargs)
    assert [(r.ok, r.cursor_advanced, r.output) for r in results[::2]] == [(True, False, None), (True, False, None)]
    assert sorted(p.name for p in (out / tables[1]).iterdir()) == ["000003-full.parquet"]
    assert redshift_flight_sync.parquet_files(out, tables[1]) == [out / tables[1] / "000003-full.parquet"]


CRASH_DRIVER = """
import os, signal, sys, threading
sys.path.insert(0, {client_dir!r})
import redshift_flight_sync as sync

real = sync.read_endpoint
done = []
lock = threading.Lock()

def read_then_die(*args, **kwargs):
    rows = real(*args, **kwargs)
    with lock:
        done.append(rows)
        if len(done) == 1:
            # The first endpoint was read and written: die before the others and the cursor
            # (leaving the endpoint behind, so that the test can cancel the abandoned run).
            with open({endpoint_file!r}, "wb") as f:
                f.write(args[1].serialize())
            os.kill(os.getpid(), signal.SIGKILL)
    return rows

sync.read_endpoint = read_then_die
sys.exit(sync.main(sys.argv[1:]))
"""


def test_killed_mid_sync_keeps_the_cursor_and_the_rerun_is_complete(flight_server, client, pg, source, tmp_path):
    schema = source
    table = f"{schema}.orders"
    state, out = tmp_path / "state.json", tmp_path / "data"
    first = run_cli(flight_server.location, state, out, table)
    assert first.returncode == 0, first.stderr
    before = state.read_bytes()
    cursor = load_state(state)[table]["cursor"]

    # Enough new rows for several staged files (endpoints).
    add_orders(pg, schema, range(1000, 9000), dt.datetime(2024, 3, 1))
    pg.execute(sql.SQL("UPDATE {} SET status = 'x', updated_at = '2024-03-02' WHERE id <= 10").format(ident(schema, "orders")))
    probe = client.get_flight_info(command(table=table, cursor=cursor))
    assert len(list(probe.endpoints)) >= 2, "the window must span several endpoints for a mid-sync crash"
    cancel_flight(client, probe)

    driver = tmp_path / "crash_driver.py"
    endpoint_file = tmp_path / "endpoint.bin"
    driver.write_text(CRASH_DRIVER.format(client_dir=str(CLIENT_DIR), endpoint_file=str(endpoint_file)))
    crashed = run_cli(flight_server.location, state, out, table, extra=["--endpoint-workers", "1"], script=driver)
    assert crashed.returncode == -signal.SIGKILL, (crashed.returncode, crashed.stdout, crashed.stderr)
    assert state.read_bytes() == before, "the cursor moved although not every endpoint was read"
    visible = sorted(p.name for p in (out / table).iterdir() if not p.name.startswith("."))
    assert visible == ["000001-incremental.parquet"], "a partial sync became visible"
    cancel_flight(client, endpoints=[endpoint_file.read_bytes()])  # the abandoned run, as an operator would

    rerun = run_cli(flight_server.location, state, out, table)
    assert rerun.returncode == 0, rerun.stderr
    assert "rows=8010" in summary_lines(rerun)[table] and "cursor advanced" in summary_lines(rerun)[table]
    assert decode_cursor(load_state(state)[table]["cursor"])["b"] == "2024-03-02 00:00:00"
    got = redshift_flight_sync.read_parquet_output(out, table).sort_by("id")
    assert [tuple(r.values()) for r in got.to_pylist()] == postgres(pg, schema, "orders", "id")


def test_one_failing_table_does_not_lose_the_others_progress(flight_server, pg, source, tmp_path, monkeypatch, capsys):
    schema = source
    orders, customers, events = (f"{schema}.{t}" for t in ("orders", "customers", "events"))
    state, out = tmp_path / "state.json", tmp_path / "data"
    database = out / "redshift_flight.duckdb"
    args = ["--location", flight_server.location, "--state", str(state), "--out", str(out), "--format", "duckdb"]
    assert redshift_flight_sync.main(args + [orders, events]) == 0
    before = load_state(state)
    duck_before = duckdb_rows(database, orders, "id")
    write_between_runs(pg, schema, dt.datetime(2024, 2, 1))

    real = redshift_flight_sync.read_endpoint

    def fail_orders(client, endpoint, options, write, schema_):
        rows = real(client, endpoint, options, write, schema_)
        if schema_.metadata[b"redshift_flight.table"] == orders.encode():
            raise RuntimeError("injected failure after an endpoint of orders")
        return rows

    monkeypatch.setattr(redshift_flight_sync, "read_endpoint", fail_orders)
    code = redshift_flight_sync.main(args + [orders, f"{schema}.no_such_table", events, customers])
    printed = capsys.readouterr()
    assert code == 1
    assert f"{orders}: FAILED: RuntimeError: injected failure" in printed.out
    assert f"{schema}.no_such_table: FAILED: " in printed.out and "not found" in printed.out
    assert "2 of 4 tables failed" in printed.err
    after = load_state(state)
    assert after[orders] == before[orders], "the failed table's cursor moved"
    assert after[events]["cursor"] != before[events]["cursor"] and after[customers]["mode"] == "full"
    assert f"{schema}.no_such_table" not in after
    assert duckdb_rows(database, orders, "id") == duck_before, "a failed sync changed the output"
    assert duckdb_rows(database, events, "payload") == postgres(pg, schema, "events", "payload")

    monkeypatch.setattr(redshift_flight_sync, "read_endpoint", real)
    assert redshift_flight_sync.main(args + [orders, events, customers]) == 0
    for t in ("orders", "customers", "events"):
        assert duckdb_rows(database, f"{schema}.{t}", ORDER_BY[t]) == postgres(pg, schema, t, ORDER_BY[t]), t


def test_parallel_tables_share_one_state_file(flight_server, pg, make_schema, tmp_path):
    schema = make_schema("many")
    names = [f"t{i}" for i in range(8)]
    for i, name in enumerate(names):
        pg.execute(sql.SQL("CREATE TABLE {} (id integer PRIMARY KEY, updated_at timestamp)").format(ident(schema, name)))
        pg.execute(
            sql.SQL("INSERT INTO {} SELECT g, timestamp '2024-01-01' + g * interval '1 second' FROM generate_series(1, %s) g").format(
                ident(schema, name)
            ),
            [10 + i],
        )
    state, out = tmp_path / "state.json", tmp_path / "data"
    tables = [f"{schema}.{n}" for n in names]
    results = redshift_flight_sync.sync_tables(tables, location=flight_server.location, state=state, out=out, workers=8)
    assert all(r.ok for r in results), [r.error for r in results]
    entries = load_state(state)
    assert sorted(entries) == sorted(tables)
    for i, t in enumerate(tables):
        assert decode_cursor(entries[t]["cursor"])["b"] == str(dt.datetime(2024, 1, 1) + dt.timedelta(seconds=10 + i))
        assert entries[t]["rows"] == 10 + i
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "state.json", "state.json.lock"]


def test_damaged_state_file_is_not_overwritten(flight_server, source, tmp_path):
    state, out = tmp_path / "state.json", tmp_path / "data"
    state.write_text('{"version": 1, "tables": {')
    result = run_cli(flight_server.location, state, out, f"{source}.orders")
    assert result.returncode == 1
    assert "not valid JSON" in result.stderr
    assert state.read_text() == '{"version": 1, "tables": {'


def test_usage_errors_exit_2(tmp_path):
    result = subprocess.run([sys.executable, str(SYNC), "--state", str(tmp_path / "s.json")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--out" in result.stderr
    assert os.listdir(tmp_path) == []
