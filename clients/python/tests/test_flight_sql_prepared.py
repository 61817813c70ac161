"""Flight SQL prepared statements through ADBC: the handle is a signed token (no server state),
parameters bound by DoPut reach SQL only as typed literals built by the quoting module; every
result is compared row for row with PostgreSQL (behind the Redshift emulator)."""

from __future__ import annotations

import adbc_driver_manager
import pyarrow as pa
import pytest

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
