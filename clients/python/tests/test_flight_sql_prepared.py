"""Flight SQL prepared statements through ADBC: the handle is a signed token (no server state),
parameters bound by DoPut reach SQL only as typed literals built by the quoting module; every
result is compared row for row with PostgreSQL (behind the Redshift emulator)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import adbc_driver_manager
import pyarrow as pa
import pytest
from psycopg import sql

from test_flight_sql import arrow_sorted, connect, pg_rows, sales  # noqa: F401

HOSTILE = "x'; DROP TABLE t; --"
BACKSLASH = "a\\' OR 1=1 --"


def test_prepare_reports_the_parameter_schema(flight_server, sales):  # noqa: F811
    with connect(flight_server) as conn, conn.cursor() as cur:
        params = cur.adbc_prepare(f'SELECT id, amount FROM "{sales}".orders WHERE customer_id = ? AND amount > ?')
        assert params.names == ["$1", "$2"]
        assert cur.adbc_prepare(f'SELECT id FROM "{sales}".orders').names == []


def test_prepared_without_parameters_matches_postgres(flight_server, pg, sales):  # noqa: F811
    query = f'SELECT o.id, c.name, o.amount, o.placed FROM "{sales}".orders o JOIN "{sales}".customers c ON c.id = o.customer_id'
    with connect(flight_server) as conn, conn.cursor() as cur:
        cur.adbc_prepare(query)
        cur.execute(query)
        first = arrow_sorted(cur.fetch_arrow_table())
        cur.execute(query)
        again = arrow_sorted(cur.fetch_arrow_table())
    assert first == again == pg_rows(pg, query)
    assert len(first) == 5


@pytest.mark.parametrize(
    "query, params, pg_query, pg_params",
    [
        ('SELECT id, amount FROM "{s}".orders WHERE customer_id = ?', (1,), 'SELECT id, amount FROM "{s}".orders WHERE customer_id = %s', (1,)),
        (
            'SELECT id FROM "{s}".orders WHERE amount > ? AND placed < ?',
            (pa.scalar(10, pa.int64()), "2024-02-01 00:00:00"),
            "SELECT id FROM \"{s}\".orders WHERE amount > %s AND placed < %s",
            (10, "2024-02-01 00:00:00"),
        ),
        ('SELECT name FROM "{s}".customers WHERE name = $1 OR region = $2', ("Bo'b", "north"), 'SELECT name FROM "{s}".customers WHERE name = %s OR region = %s', ("Bo'b", "north")),
        ('SELECT id FROM "{s}".orders WHERE id > 2 -? ORDER BY id LIMIT 3', (-1,), 'SELECT id FROM "{s}".orders WHERE id > 2 - %s ORDER BY id LIMIT 3', (-1,)),
        ("SELECT ? AS text, ? AS n, ? AS nothing", (HOSTILE, 2.5, None), "SELECT %s::varchar AS text, %s::float8 AS n, %s::text AS nothing", (HOSTILE, 2.5, None)),
    ],
)
def test_parameters_match_postgres(flight_server, pg, sales, query, params, pg_query, pg_params):  # noqa: F811
    params = tuple(p.as_py() if isinstance(p, pa.Scalar) else p for p in params)
    with connect(flight_server) as conn, conn.cursor() as cur:
        cur.execute(query.format(s=sales), params)
        got = arrow_sorted(cur.fetch_arrow_table())
    want = sorted(pg.execute(pg_query.format(s=sales), pg_params).fetchall(), key=repr)
    assert got == want


def test_hostile_strings_are_data(flight_server, pg, sales):  # noqa: F811
    before = pg_rows(pg, f'SELECT * FROM "{sales}".customers')
    with connect(flight_server) as conn, conn.cursor() as cur:
        for value in [HOSTILE, BACKSLASH, "\\", "'", "''", "$1", "?"]:
            cur.execute(f'SELECT ? AS v, count(*) AS n FROM "{sales}".customers WHERE name = ?', (value, value))
            assert cur.fetch_arrow_table().to_pylist() == [{"v": value, "n": 0}], value
        cur.execute(f'SELECT name FROM "{sales}".customers WHERE name = ?', ("Bo'b",))
        assert cur.fetch_arrow_table().to_pylist() == [{"name": "Bo'b"}]
    assert pg_rows(pg, f'SELECT * FROM "{sales}".customers') == before


def test_bad_bindings_and_statements_are_refused(flight_server, pg, sales):  # noqa: F811
    with connect(flight_server) as conn:
        with conn.cursor() as cur, pytest.raises(adbc_driver_manager.Error, match="parameters"):
            cur.execute(f'SELECT id FROM "{sales}".orders WHERE id = ? AND customer_id = ?', (1,))
        with conn.cursor() as cur, pytest.raises(adbc_driver_manager.Error, match="read-only|DELETE"):
            cur.execute(f'DELETE FROM "{sales}".orders WHERE id = ?', (1,))
        with conn.cursor() as cur, pytest.raises(adbc_driver_manager.Error):
            cur.execute("SELECT ? AS b", (b"bytes",))
    assert len(pg_rows(pg, f'SELECT * FROM "{sales}".orders')) == 5


@pytest.fixture
def typed(pg, make_schema):
    """A table with a column of each type a parameter is compared with."""
    schema = make_schema("fsqlp")
    table = f'"{schema}".events'
    pg.execute(
        sql.SQL(
            "CREATE TABLE {}.events (id integer, small smallint, d date, ts timestamp, tz timestamptz, "
            "n numeric(12,3), s varchar(20), f double precision, ok boolean)"
        ).format(sql.Identifier(schema))
    )
    pg.execute(
        sql.SQL(
            "INSERT INTO {}.events VALUES "
            "(1, 10, '2024-01-01', '2024-01-01 09:30:00', '2024-01-01 09:30:00+00', 10.125, 'Ann', 0.5, true), "
            "(2, 20, '2024-01-02', '2024-01-02 00:00:00', '2024-01-02 00:00:00+00', 10.13, 'Bo''b', 1.5, false), "
            "(3, 30, '2024-02-29', '2024-02-29 23:59:59.999999', '2024-02-29 23:59:59.999999+00', -7.5, 'x'';--', NULL, NULL), "
            "(4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
        ).format(sql.Identifier(schema))
    )
    return table


def test_the_parameter_schema_has_the_types_redshift_infers(flight_server, typed):
    query = f"SELECT id FROM {typed} WHERE id = ? AND d = ? AND ts < ? AND n > ? AND s <> ? AND tz >= ? AND small = ? AND ok = ?"
    with connect(flight_server) as conn, conn.cursor() as cur:
        params = cur.adbc_prepare(query)
    assert params.names == [f"${n}" for n in range(1, 9)]
    assert params.types == [
        pa.int32(),
        pa.date32(),
        pa.timestamp("us"),
        # The protocol describes a NUMERIC parameter without precision or scale: exact text.
        pa.string(),
        pa.string(),
        pa.timestamp("us", tz="UTC"),
        pa.int16(),
        pa.bool_(),
    ]
    assert [f.metadata[b"redshift_flight.type"].decode() for f in params] == [
        "integer",
        "date",
        "timestamp without time zone",
        "numeric",
        "character varying",
        "timestamp with time zone",
        "smallint",
        "boolean",
    ]
    assert all(f.nullable for f in params)


UTC = dt.timezone.utc


@pytest.mark.parametrize(
    "where, params",
    [
        ("d = ?", (dt.date(2024, 1, 2),)),
        ("d >= ?", ("2024-01-02",)),
        ("d BETWEEN ? AND ?", ("2024-01-01", dt.date(2024, 1, 2))),
        ("ts < ?", (dt.datetime(2024, 1, 2, 0, 0),)),
        ("ts >= ?", (dt.date(2024, 1, 2),)),
        ("ts <= ?", ("2024-02-29 23:59:59.999999",)),
        ("tz < ?", (dt.datetime(2024, 1, 2, 0, 0, tzinfo=UTC),)),
        ("tz > ?", ("2024-01-01 10:30:00+01",)),
        ("n > ?", (Decimal("10.125"),)),
        ("n > ?", (10,)),
        ("n <= ?", ("10.13",)),
        ("n < ?", (-7.25,)),
        ("id = ?", ("2",)),
        ("small = ? OR id = ?", (20, 3)),
        ("s = ?", ("Bo'b",)),
        ("s = ?", ("x';--",)),
        ("f = ?", (0.5,)),
        ("f > ?", (1,)),
        ("ok = ?", (False,)),
        ("small + ? > 25", (6,)),
        ("d = ? OR ts = ? OR n = ? OR s = ?", (None, None, None, None)),
    ],
)
def test_typed_parameters_match_postgres(flight_server, pg, typed, where, params):
    query = f"SELECT id, small, d, ts, tz, n, s, f, ok FROM {typed} WHERE {where}"
    with connect(flight_server) as conn, conn.cursor() as cur:
        cur.execute(query, params)
        got = arrow_sorted(cur.fetch_arrow_table())
    want = sorted(pg.execute(query.replace("?", "%s"), params).fetchall(), key=repr)
    assert got == want, (where, params)


def test_parameters_keep_their_types_in_results(flight_server, pg, typed):
    # `small + ?` is a SMALLINT on PostgreSQL (the parameter is one), `? - d` the days between
    # two dates (the parameter is a DATE, even bound as a string).
    query = f"SELECT id, small + ? AS more, ? - d AS days FROM {typed} WHERE id = 1"
    params = (1, "2024-01-31")
    with connect(flight_server) as conn, conn.cursor() as cur:
        cur.execute(query, params)
        table = cur.fetch_arrow_table()
    assert table.schema.field("more").type == pa.int16()
    assert table.schema.field("days").type == pa.int32()
    assert arrow_sorted(table) == pg.execute(query.replace("?", "%s"), params).fetchall() == [(1, 11, 30)]


def test_hostile_strings_bound_to_typed_parameters_are_data(flight_server, pg, typed):
    before = pg_rows(pg, f"SELECT * FROM {typed}")
    hostile = [HOSTILE, BACKSLASH, "'; DROP TABLE events; --", "\\'", "x';--"]
    with connect(flight_server) as conn:
        for value in hostile:
            with conn.cursor() as cur:
                cur.execute(f"SELECT id FROM {typed} WHERE s = ? OR s = ?", (value, value + "'"))
                rows = cur.fetch_arrow_table().to_pylist()
            assert rows == ([{"id": 3}] if value == "x';--" else []), value
            for where in ["d = ?", "id = ?", "n > ?", "ok = ?"]:
                with conn.cursor() as cur, pytest.raises(adbc_driver_manager.Error) as raised:
                    cur.execute(f"SELECT id FROM {typed} WHERE {where}", (value,))
                    cur.fetch_arrow_table()
                assert "INVALID_ARGUMENT" in str(raised.value) or "InvalidArgument" in str(raised.value), (where, raised.value)
    assert pg_rows(pg, f"SELECT * FROM {typed}") == before


@pytest.mark.parametrize(
    "where, value, message",
    [
        ("id = ?", "abc", r"parameter \$1 is INTEGER: .* is not an integer"),
        ("id = ?", 1.5, "is not an integer"),
        ("small = ?", 70000, "out of its range"),
        ("d = ?", True, "a boolean cannot be bound"),
        ("n > ?", "1e5", "not a plain decimal number"),
        ("ok = ?", "maybe", "not a boolean"),
        ("d = ?", "not a date", "date"),
    ],
)
def test_values_that_cannot_be_their_parameter_type_are_refused(flight_server, typed, where, value, message):
    with connect(flight_server) as conn, conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error, match=message) as raised:
            cur.execute(f"SELECT id FROM {typed} WHERE {where}", (value,))
            cur.fetch_arrow_table()
    assert "INVALID_ARGUMENT" in str(raised.value) or "InvalidArgument" in str(raised.value), raised.value
