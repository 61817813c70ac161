"""Flight SQL queries answered on the connection (`direct_max_rows`): when Redshift's EXPLAIN
estimates a small result, no UNLOAD runs; the one endpoint's ticket runs the query through a
cursor at DoGet. Both paths must deliver identical tables (schema and every value), equal to what
PostgreSQL holds, for every type."""

from __future__ import annotations

import json
import struct

import pyarrow as pa
import pyarrow.flight as flight
import pytest
from psycopg import sql

from conftest import base_config, start_server, stop_server
from support import cancel_flight
from test_all_types import COLUMNS, NAMES, ROWS, all_types, arrow_rows, postgres_rows  # noqa: F401
from test_flight_sql import QUERIES, arrow_sorted, connect, pg_rows, sales  # noqa: F401

SQL_COMMAND = "type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(tag: int, data: bytes) -> bytes:
    return _varint(tag << 3 | 2) + _varint(len(data)) + data


def statement(query: str) -> flight.FlightDescriptor:
    """A Flight SQL CommandStatementQuery descriptor (an Any), encoded by hand."""
    inner = _field(1, query.encode())
    return flight.FlightDescriptor.for_command(_field(1, SQL_COMMAND.encode()) + _field(2, inner))


@pytest.fixture(scope="module")
def unload_server(testbed, tmp_path_factory):
    """A server that always stages queries by UNLOAD (`direct_max_rows` 0)."""
    server = start_server(dict(base_config(testbed), direct_max_rows="0"), tmp_path_factory.mktemp("unload-only"))
    yield server
    assert stop_server(server) is None, server.stderr_tail()


def run(server, query: str) -> pa.Table:
    with connect(server) as conn, conn.cursor() as cur:
        cur.execute(query)
        return cur.fetch_arrow_table()


def info_metadata(server, query: str) -> tuple[flight.FlightInfo, dict]:
    """The FlightInfo of `query` and its app_metadata; what it staged (if anything) is dropped, as
    the test does not read it."""
    client = flight.connect(server.location)
    info = client.get_flight_info(statement(query))
    cancel_flight(client, info)
    return info, json.loads(info.app_metadata or b"{}")


def bits(column: pa.ChunkedArray) -> list:
    """A column's values, floats as their exact bits (NaN equals NaN, -0 differs from 0)."""
    if pa.types.is_floating(column.type):
        fmt = "<d" if column.type == pa.float64() else "<f"
        return [None if v is None else struct.pack(fmt, v) for v in column.to_pylist()]
    return column.to_pylist()


def quoted(schema: str, table: str) -> str:
    return '"{}"."{}"'.format(schema.replace('"', '""'), table.replace('"', '""'))


def test_every_type_is_identical_on_both_paths(flight_server, unload_server, pg, all_types):  # noqa: F811
    schema, table = all_types
    query = f"SELECT * FROM {quoted(schema, table)}"
    _, direct_meta = info_metadata(flight_server, query)
    _, unload_meta = info_metadata(unload_server, query)
    assert direct_meta.get("direct") is True, direct_meta
    assert "run_id" in unload_meta and not unload_meta.get("direct"), unload_meta
    direct = run(flight_server, query).sort_by("select")
    unloaded = run(unload_server, query).sort_by("select")
    assert direct.schema == unloaded.schema
    assert direct.column_names == NAMES
    for name in NAMES:
        assert bits(direct.column(name)) == bits(unloaded.column(name)), name
    names = [n for n, _, _, kind in COLUMNS if kind != "geometry"]
    assert arrow_rows(direct, names) == postgres_rows(pg, schema, table, names)
    assert direct.num_rows == len(ROWS)


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_queries_are_identical_on_both_paths(flight_server, unload_server, pg, sales, name):  # noqa: F811
    query = QUERIES[name].format(s=sales)
    assert info_metadata(flight_server, query)[1].get("direct") is True
    direct, unloaded = run(flight_server, query), run(unload_server, query)
    assert direct.schema == unloaded.schema
    assert arrow_sorted(direct) == arrow_sorted(unloaded)
    assert len(arrow_sorted(direct)) == len(pg_rows(pg, query))


def test_the_estimate_decides_the_path(testbed, tmp_path, pg, sales):  # noqa: F811
    """With statistics, PostgreSQL estimates 5 orders: 5 rows or more is staged, fewer is not."""
    pg.execute(sql.SQL("ANALYZE {}.orders").format(sql.Identifier(sales)))
    query = f'SELECT * FROM "{sales}".orders'
    for limit, direct in (("5", False), ("6", True)):
        server = start_server(dict(base_config(testbed), direct_max_rows=limit), tmp_path / f"limit-{limit}")
        try:
            info, meta = info_metadata(server, query)
            assert bool(meta.get("direct")) is direct, (limit, meta)
            assert arrow_sorted(run(server, query)) == pg_rows(pg, query)
        finally:
            assert stop_server(server) is None, server.stderr_tail()


def test_many_rows_arrive_in_several_fetches(flight_server, pg, make_schema):
    """25,000 rows (the cursor fetches at most 8,192 at a time) arrive whole and in order."""
    schema = make_schema("direct")
    s = sql.Identifier(schema)
    pg.execute(sql.SQL("CREATE TABLE {}.wide (id integer, label varchar(40), amount numeric(12,3))").format(s))
    pg.execute(
        sql.SQL(
            "INSERT INTO {}.wide SELECT g, 'row ' || g, g / 7.0 FROM generate_series(1, 25000) g"
        ).format(s)
    )
    pg.execute(sql.SQL("ANALYZE {}.wide").format(s))
    query = f'SELECT id, label, amount FROM "{schema}".wide'
    assert info_metadata(flight_server, query)[1].get("direct") is True
    got = run(flight_server, query)
    assert got.num_rows == 25000
    want = pg.execute(sql.SQL("SELECT id, label, amount FROM {}.wide ORDER BY id").format(s)).fetchall()
    assert sorted(tuple(r.values()) for r in got.to_pylist()) == want


def test_a_runtime_error_is_the_clients_and_the_server_goes_on(flight_server, pg, sales):  # noqa: F811
    import adbc_driver_manager

    query = f'SELECT id / (id - id) AS boom FROM "{sales}".orders'
    with connect(flight_server) as conn, conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error, match="division by zero") as raised:
            cur.execute(query)
            cur.fetch_arrow_table()
        assert "INVALID_ARGUMENT" in str(raised.value) or "InvalidArgument" in str(raised.value)
    assert arrow_sorted(run(flight_server, f'SELECT id FROM "{sales}".orders')) == pg_rows(
        pg, f'SELECT id FROM "{sales}".orders'
    )


def test_altered_and_stale_tickets_are_refused(flight_server, pg, sales):  # noqa: F811
    client = flight.connect(flight_server.location)
    query = f'SELECT id, amount FROM "{sales}".orders'
    info = client.get_flight_info(statement(query))
    ticket = info.endpoints[0].ticket.ticket
    # Flip one byte of the signed payload (inside the Any's value): refused, not run.
    forged = bytearray(ticket)
    forged[-40] ^= 0x01
    with pytest.raises(flight.FlightError) as raised:
        client.do_get(flight.Ticket(bytes(forged))).read_all()
    assert any(word in str(raised.value).lower() for word in ("signature", "malformed", "invalid")), raised.value
    # The table changes its columns between GetFlightInfo and DoGet: a clear error, no wrong data.
    pg.execute(sql.SQL("ALTER TABLE {}.orders ALTER COLUMN amount TYPE numeric(12,4)").format(sql.Identifier(sales)))
    try:
        with pytest.raises((flight.FlightError, pa.ArrowInvalid), match="changed since GetFlightInfo") as raised:
            client.do_get(info.endpoints[0].ticket).read_all()
        assert "precondition" in str(raised.value).lower()
    finally:
        pg.execute(
            sql.SQL("ALTER TABLE {}.orders ALTER COLUMN amount TYPE numeric(10,2)").format(sql.Identifier(sales))
        )


def test_a_reader_that_leaves_half_way_leaves_no_open_transaction(flight_server, pg, make_schema):
    schema = make_schema("direct")
    s = sql.Identifier(schema)
    pg.execute(sql.SQL("CREATE TABLE {}.big (id integer, pad varchar(200))").format(s))
    pg.execute(sql.SQL("INSERT INTO {}.big SELECT g, repeat('x', 200) FROM generate_series(1, 60000) g").format(s))
    pg.execute(sql.SQL("ANALYZE {}.big").format(s))
    client = flight.connect(flight_server.location)
    info = client.get_flight_info(statement(f'SELECT * FROM "{schema}".big'))
    reader = client.do_get(info.endpoints[0].ticket)
    first = reader.read_chunk()
    assert first.data.num_rows > 0
    reader.cancel()
    client.close()
    import time

    deadline = time.monotonic() + 20
    while True:
        open_cursors = pg.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' AND query LIKE '%rsf_direct%'"
        ).fetchone()[0]
        if open_cursors == 0:
            break
        assert time.monotonic() < deadline, "a cursor's transaction stayed open after the reader left"
        time.sleep(0.2)
    # The server still answers.
    assert run(flight_server, f'SELECT count(*) AS n FROM "{schema}".big').to_pylist() == [{"n": 60000}]


def test_cancel_and_renew_of_a_direct_answer(flight_server, pg, sales):  # noqa: F811
    """Nothing is staged, so CancelFlightInfo has nothing to cancel; RenewFlightEndpoint gives the
    ticket a later expiry and the renewed ticket reads the same rows."""
    client = flight.connect(flight_server.location)
    query = f'SELECT id, amount FROM "{sales}".orders'
    info = client.get_flight_info(statement(query))
    raw = info.serialize()
    cancel = _field(1, raw)  # CancelFlightInfoRequest.info = 1
    [result] = list(client.do_action(flight.Action("CancelFlightInfo", cancel)))
    assert result.body.to_pybytes() == _varint(1 << 3) + _varint(3)  # status NOT_CANCELLABLE (3)
    endpoint = info.endpoints[0]
    renew = _field(1, endpoint.serialize())  # RenewFlightEndpointRequest.endpoint = 1
    [result] = list(client.do_action(flight.Action("RenewFlightEndpoint", renew)))
    renewed = flight.FlightEndpoint.deserialize(result.body.to_pybytes())
    assert renewed.expiration_time.as_py() >= endpoint.expiration_time.as_py()
    assert renewed.ticket.ticket != endpoint.ticket.ticket
    got = client.do_get(renewed.ticket).read_all()
    assert arrow_sorted(got) == pg_rows(pg, query)
