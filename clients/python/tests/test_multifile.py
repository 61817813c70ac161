"""A table large enough that UNLOAD writes several files (the emulator spreads rows over four
slices): every endpoint read in parallel, and the result checked against PostgreSQL with pyarrow,
Polars, DataFusion and DuckDB.

ADBC is not exercised: adbc-driver-flightsql speaks Flight SQL (CommandStatementQuery and friends
in the descriptor), and redshift-flight is a plain Arrow Flight service with its own JSON command,
so there is nothing for the Flight SQL driver to talk to."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import datafusion
import duckdb
import polars as pl
import polars.testing
import pyarrow as pa
import pytest
from psycopg import sql

from conftest import base_config, start_server, stop_server
from support import app_metadata, path, read_endpoint, read_flight, unique

ROWS = 120_000


@pytest.fixture(scope="module")
def big_table(pg):
    schema = unique("multi")
    pg.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    pg.execute(
        sql.SQL(
            "CREATE TABLE {}.big (id bigint PRIMARY KEY, grp integer NOT NULL, amount numeric(12,2), "
            "label varchar(40), ts timestamp, f double precision)"
        ).format(sql.Identifier(schema))
    )
    pg.execute(
        sql.SQL(
            "INSERT INTO {}.big SELECT g, g %% 97, "
            "CASE WHEN g %% 13 = 0 THEN NULL ELSE (g * 7.31)::numeric(12,2) - 500000 END, "
            "CASE WHEN g %% 11 = 0 THEN NULL ELSE 'row ' || g || repeat('ß', g %% 5) END, "
            "timestamp '2020-01-01' + g * interval '1 second' + (g %% 1000) * interval '1 microsecond', "
            "g / 3.0 FROM generate_series(1, %s) g"
        ).format(sql.Identifier(schema)),
        [ROWS],
    )
    yield schema, "big"
    pg.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def postgres_rows(pg, schema: str) -> list[tuple]:
    return pg.execute(
        sql.SQL("SELECT id, grp, amount, label, ts, f FROM {}.big ORDER BY id").format(sql.Identifier(schema))
    ).fetchall()


@pytest.fixture(scope="module")
def flight_result(flight_server, big_table):
    """The whole table as one pyarrow Table, each endpoint read on its own thread."""
    client = flight_server.connect()
    info = client.get_flight_info(path(*big_table))
    endpoints = list(info.endpoints)
    with ThreadPoolExecutor(max_workers=8) as pool:
        parts = list(pool.map(lambda e: read_endpoint(flight_server.connect(), e), endpoints))
    client.close()
    return info, parts


def test_several_endpoints_cover_every_row_once(flight_result, pg, big_table):
    info, parts = flight_result
    assert len(parts) > 1, "expected UNLOAD to write several files"
    assert info.total_records == ROWS
    assert app_metadata(info)["files"] == len(parts)
    assert all(p.num_rows > 0 for p in parts)
    assert all(p.schema.equals(info.schema, check_metadata=True) for p in parts)
    table = pa.concat_tables(parts).sort_by("id")
    assert table.num_rows == ROWS
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("amount").type == pa.decimal128(12, 2)
    assert table.schema.field("ts").type == pa.timestamp("us")
    got = list(zip(*(table.column(n).to_pylist() for n in table.column_names)))
    assert got == postgres_rows(pg, big_table[0])


def test_endpoints_can_be_read_again_and_out_of_order(flight_server, flight_result):
    info, parts = flight_result
    client = flight_server.connect()
    endpoints = list(info.endpoints)
    again = [read_endpoint(client, e) for e in reversed(endpoints)]
    assert [t.num_rows for t in reversed(again)] == [t.num_rows for t in parts]
    assert all(a.equals(b) for a, b in zip(reversed(again), parts))


def test_polars_frame_equals_postgres(flight_result, pg, big_table):
    _info, parts = flight_result
    frame = pl.from_arrow(pa.concat_tables(parts)).sort("id")
    assert frame.schema == pl.Schema(
        {
            "id": pl.Int64,
            "grp": pl.Int32,
            "amount": pl.Decimal(12, 2),
            "label": pl.String,
            "ts": pl.Datetime("us"),
            "f": pl.Float64,
        }
    )
    expected = pl.DataFrame(postgres_rows(pg, big_table[0]), schema=frame.schema, orient="row")
    polars.testing.assert_frame_equal(frame, expected)


def test_datafusion_aggregates_equal_postgres(flight_result, pg, big_table):
    _info, parts = flight_result
    ctx = datafusion.SessionContext()
    ctx.register_record_batches("big", [p.to_batches() for p in parts])
    got = ctx.sql(
        "SELECT count(*) AS n, count(amount) AS n_amount, sum(id) AS s_id, sum(amount) AS s_amount, "
        "count(DISTINCT grp) AS groups, max(ts) AS last_ts FROM big"
    ).to_arrow_table().to_pylist()[0]
    want = pg.execute(
        sql.SQL(
            "SELECT count(*), count(amount), sum(id), sum(amount), count(DISTINCT grp), max(ts) FROM {}.big"
        ).format(sql.Identifier(big_table[0]))
    ).fetchone()
    assert (got["n"], got["n_amount"], got["s_id"], Decimal(got["s_amount"]), got["groups"], got["last_ts"]) == want
    # DataFusion over a DataFrame built straight from the pyarrow table as well.
    frame = ctx.from_arrow(pa.concat_tables(parts))
    assert frame.count() == ROWS


def test_duckdb_aggregates_equal_postgres(flight_result, pg, big_table):
    _info, parts = flight_result
    arrow_table = pa.concat_tables(parts)
    con = duckdb.connect()
    con.register("big", arrow_table)
    got = con.execute("SELECT grp, count(*), sum(amount), min(label) FROM big GROUP BY grp ORDER BY grp").fetchall()
    want = pg.execute(
        sql.SQL(
            "SELECT grp, count(*), sum(amount), min(label COLLATE \"C\") FROM {}.big GROUP BY grp ORDER BY grp"
        ).format(sql.Identifier(big_table[0]))
    ).fetchall()
    assert got == want


def test_read_flight_helper_in_parallel_matches(flight_server, big_table, flight_result):
    """The same read through the helper the examples use, with four workers."""
    info, parts = flight_result
    client = flight_server.connect()
    table = read_flight(client, client.get_flight_info(path(*big_table)), workers=4)
    assert table.sort_by("id").equals(pa.concat_tables(parts).sort_by("id"))
    assert table.column("ts").type == pa.timestamp("us")
    assert table.sort_by("id").column("ts")[0].as_py() == dt.datetime(2020, 1, 1, 0, 0, 1, 1)


def test_concurrent_flights_beyond_max_parallel_workers(flight_server, pg, make_schema):
    """Sixteen clients at once, each for its own table, against max_parallel_workers = 4: UNLOADs
    queue, none fails."""
    schema = make_schema("concurrent")
    for i in range(16):
        pg.execute(sql.SQL("CREATE TABLE {}.{} (id integer)").format(sql.Identifier(schema), sql.Identifier(f"t{i}")))
        pg.execute(
            sql.SQL("INSERT INTO {}.{} SELECT generate_series(1, 1000)").format(
                sql.Identifier(schema), sql.Identifier(f"t{i}")
            )
        )

    def one(i):
        client = flight_server.connect()
        info = client.get_flight_info(path(schema, f"t{i}"))
        return app_metadata(info)["run_id"], read_flight(client, info).column("id").to_pylist()

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(one, range(16)))
    assert len({run for run, _ in results}) == 16, "every table is staged in its own run"
    assert all(sorted(ids) == list(range(1, 1001)) for _, ids in results)


@pytest.fixture
def sharing_server(testbed, tmp_path):
    """A server whose identical requests share a run for 5 s after it was staged: on a loaded
    machine a thread may only reach GetFlightInfo once the first UNLOAD has finished."""
    server = start_server(dict(base_config(testbed), snapshot_reuse_seconds="5"), tmp_path / "sharing")
    yield server
    assert stop_server(server) is None, server.stderr_tail()


def test_sixteen_identical_requests_share_one_unload(sharing_server, pg, make_schema):
    """Sixteen clients asking for the same table at once get one staged run (snapshot reuse), each
    reads all of it, and the run goes once the last of them is done."""
    flight_server = sharing_server
    schema = make_schema("shared")
    pg.execute(sql.SQL("CREATE TABLE {}.t (id integer)").format(sql.Identifier(schema)))
    pg.execute(sql.SQL("INSERT INTO {}.t SELECT generate_series(1, 1000)").format(sql.Identifier(schema)))
    barrier = threading.Barrier(16)

    def one(_):
        client = flight_server.connect()
        barrier.wait()
        info = client.get_flight_info(path(schema, "t"))
        meta = app_metadata(info)
        return meta["run_id"], meta["snapshot_reused"], read_flight(client, info).column("id").to_pylist()

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(one, range(16)))
    runs = {run for run, _, _ in results}
    assert len(runs) == 1, runs
    assert sorted(reused for _, reused, _ in results) == [False] + [True] * 15
    assert all(sorted(ids) == list(range(1, 1001)) for _, _, ids in results)
