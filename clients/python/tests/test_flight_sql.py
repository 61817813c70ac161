"""Flight SQL through real clients (ADBC's Flight SQL driver, Polars, DuckDB): queries are
validated, pushed down into Redshift and staged by UNLOAD; every result is compared row for row
with what PostgreSQL (behind the Redshift emulator) returns for the same SQL."""

from __future__ import annotations

import subprocess
from pathlib import Path
from decimal import Decimal

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import duckdb
import polars as pl
import pyarrow as pa
import pytest
from psycopg import sql

from conftest import _server_binary, base_config, start_server, stop_server
from support import path, read_flight
from test_all_types import COLUMNS, NAMES, ROWS, all_types, arrow_rows, postgres_rows  # noqa: F401

PASSWORD = "flight-sql-password"
VERSION = next(
    line.split('"')[1] for line in (Path(__file__).parents[3] / "Cargo.toml").read_text().splitlines() if line.startswith("version")
)


def connect(server, **db_kwargs):
    return flight_sql.connect(server.location, db_kwargs=db_kwargs or None, autocommit=True)


@pytest.fixture
def sales(pg, make_schema):
    """Two small related tables in a schema of their own."""
    schema = make_schema("fsql")
    s = sql.Identifier(schema)
    pg.execute(sql.SQL("CREATE TABLE {}.customers (id integer PRIMARY KEY, name varchar(40), region varchar(10))").format(s))
    pg.execute(
        sql.SQL(
            "CREATE TABLE {}.orders (id integer PRIMARY KEY, customer_id integer NOT NULL, "
            "amount numeric(10,2), placed timestamp)"
        ).format(s)
    )
    pg.execute(
        sql.SQL("INSERT INTO {}.customers VALUES (1, 'Ann', 'north'), (2, 'Bo''b', 'south'), (3, 'Cé', 'north')").format(s)
    )
    pg.execute(
        sql.SQL(
            "INSERT INTO {}.orders VALUES (1, 1, 10.50, '2024-01-01 10:00'), (2, 1, 99.99, '2024-01-02 11:00'), "
            "(3, 2, 5.00, '2024-01-03 12:00'), (4, 3, NULL, NULL), (5, 2, 1234.56, '2024-02-29 23:59:59.999999')"
        ).format(s)
    )
    return schema


def pg_rows(pg, query: str) -> list[tuple]:
    return sorted(pg.execute(query).fetchall(), key=repr)


def arrow_sorted(table: pa.Table) -> list[tuple]:
    return sorted((tuple(row.values()) for row in table.to_pylist()), key=repr)


QUERIES = {
    "join": 'SELECT o.id, c.name, o.amount, o.placed FROM "{s}".orders o JOIN "{s}".customers c ON c.id = o.customer_id',
    "aggregate": (
        'SELECT c.region, count(*) AS n, CAST(sum(o.amount) AS DECIMAL(12,2)) AS total '
        'FROM "{s}".orders o JOIN "{s}".customers c ON c.id = o.customer_id GROUP BY c.region'
    ),
    "cte": 'WITH big AS (SELECT * FROM "{s}".orders WHERE amount > 10) SELECT customer_id, count(*) AS n FROM big GROUP BY customer_id',
    "window": (
        'SELECT id, amount, rank() OVER (PARTITION BY customer_id ORDER BY amount DESC) AS r, '
        'sum(amount) OVER (PARTITION BY customer_id) AS customer_total FROM "{s}".orders'
    ),
    "subquery": 'SELECT name FROM "{s}".customers WHERE id IN (SELECT customer_id FROM "{s}".orders WHERE amount > 50)',
    "union": 'SELECT id FROM "{s}".orders UNION ALL SELECT id FROM "{s}".customers',
    "limit": 'SELECT id, amount FROM "{s}".orders ORDER BY id LIMIT 2',
    "values": "SELECT 1 AS one, 'it''s' AS text, CAST(2.50 AS DECIMAL(5,2)) AS d",
}


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_queries_match_postgres(flight_server, pg, sales, name):
    query = QUERIES[name].format(s=sales)
    with connect(flight_server) as conn, conn.cursor() as cur:
        cur.execute(query)
        got = cur.fetch_arrow_table()
    want = pg_rows(pg, query)
    rows = arrow_sorted(got)
    # sum() OVER of numeric(10,2) is numeric without a scale: it arrives as its exact text.
    if name == "window":
        rows = [r[:3] + ((Decimal(r[3]) if r[3] is not None else None),) for r in rows]
        want = [w[:3] + (w[3],) for w in want]
    assert rows == want, f"{name}: {query}"
    assert len(rows) == len(want) > 0


def test_every_type_matches_a_plain_flight_read(flight_server, client, pg, all_types):  # noqa: F811
    schema, table = all_types
    quoted = '"{}"."{}"'.format(schema.replace('"', '""'), table.replace('"', '""'))
    with connect(flight_server) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT * FROM {quoted}")
        got = cur.fetch_arrow_table()
    plain = read_flight(client, client.get_flight_info(path(schema, table)))
    assert got.column_names == NAMES
    assert got.num_rows == len(ROWS)
    # Every value equals PostgreSQL's, as the plain read's do (GEOMETRY aside: the emulator
    # describes a query's GEOMETRY column as its base type, bytea, so it arrives as EWKB).
    names = [n for n, _, _, kind in COLUMNS if kind != "geometry"]
    assert arrow_rows(got, names) == postgres_rows(pg, schema, table, names)
    assert arrow_rows(got, names) == arrow_rows(plain, names)
    for name, _, arrow_type, _ in COLUMNS:
        if arrow_type is not None and name != "geo":
            assert got.schema.field(name).type == arrow_type, name


def test_refused_statements_change_nothing(flight_server, pg, sales):
    before = pg_rows(pg, f'SELECT * FROM "{sales}".orders')
    refused = [
        f'DELETE FROM "{sales}".orders',
        f'DROP TABLE "{sales}".orders',
        f'SELECT 1; DELETE FROM "{sales}".orders',
        f'SELECT 1; -- hidden\nDROP TABLE "{sales}".orders',
        f'SELECT * INTO "{sales}".copy FROM "{sales}".orders',
        f'WITH d AS (DELETE FROM "{sales}".orders RETURNING *) SELECT * FROM d',
        f'UPDATE "{sales}".orders SET amount = 0',
        "SELECT pg_terminate_backend(1)",
        "SELECT set_config('search_path', 'x', false)",
        f"UNLOAD ('SELECT 1') TO 's3://x/' IAM_ROLE default",
    ]
    with connect(flight_server) as conn:
        for statement in refused:
            with conn.cursor() as cur, pytest.raises(adbc_driver_manager.Error) as raised:
                cur.execute(statement)
                cur.fetch_arrow_table()
            assert "INVALID_ARGUMENT" in str(raised.value) or "InvalidArgument" in str(raised.value), (
                statement,
                raised.value,
            )
    assert pg_rows(pg, f'SELECT * FROM "{sales}".orders') == before
    assert pg.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s AND table_name = 'copy'", (sales,)
    ).fetchone() == (0,)


def test_unknown_tables_and_bad_sql_are_clear_errors(flight_server, sales):
    with connect(flight_server) as conn:
        with conn.cursor() as cur, pytest.raises(adbc_driver_manager.Error, match="not found"):
            cur.execute(f'SELECT * FROM "{sales}".no_such_table')
        with conn.cursor() as cur, pytest.raises(adbc_driver_manager.Error, match="no_such_column"):
            cur.execute(f'SELECT no_such_column FROM "{sales}".orders')
            cur.fetch_arrow_table()


def test_metadata_through_adbc(flight_server, testbed, sales):
    with connect(flight_server) as conn:
        info = conn.adbc_get_info()
        assert info["vendor_name"] == "redshift-flight", info
        assert info["vendor_version"] == VERSION, info
        schema = conn.adbc_get_table_schema("orders", db_schema_filter=sales)
        assert schema.names == ["id", "customer_id", "amount", "placed"]
        assert schema.field("amount").type == pa.decimal128(10, 2)
        objects = conn.adbc_get_objects(depth="tables", db_schema_filter=sales).read_all().to_pylist()
        assert [c["catalog_name"] for c in objects] == [testbed["TESTBED_REDSHIFT_DATABASE"]]
        schemas = objects[0]["catalog_db_schemas"]
        assert [s["db_schema_name"] for s in schemas] == [sales]
        assert sorted(t["table_name"] for t in schemas[0]["db_schema_tables"]) == ["customers", "orders"]
        assert {t["table_type"] for t in schemas[0]["db_schema_tables"]} == {"TABLE"}


def test_polars_and_duckdb_read_through_adbc(flight_server, pg, sales):
    query = f'SELECT o.id, c.region, o.amount FROM "{sales}".orders o JOIN "{sales}".customers c ON c.id = o.customer_id'
    with connect(flight_server) as conn:
        frame = pl.read_database(query, connection=conn)
        with conn.cursor() as cur:
            cur.execute(query)
            arrow = cur.fetch_arrow_table()
    assert sorted(frame.rows(), key=repr) == pg_rows(pg, query)
    assert duckdb.sql("SELECT region, count(*) FROM arrow GROUP BY region ORDER BY region").fetchall() == [
        ("north", 3),
        ("south", 2),
    ]


@pytest.fixture
def access_server(testbed, tmp_path, sales):
    password_hash = subprocess.run(
        [str(_server_binary()), "hash-password"], input=PASSWORD + "\n", capture_output=True, text=True, check=True
    ).stdout.strip()
    access = tmp_path / "access.toml"
    access.write_text(f'[[users]]\nname = "alice"\npassword_hash = "{password_hash}"\ntables = ["{sales}.orders"]\n')
    server = start_server(dict(base_config(testbed), auth_file=str(access)), tmp_path / "access")
    yield server
    assert stop_server(server) is None, server.stderr_tail()


def test_authorisation_covers_every_relation_of_the_query(access_server, pg, sales):
    with pytest.raises(adbc_driver_manager.Error):
        with connect(access_server, username="alice", password="wrong") as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
    with connect(access_server, username="alice", password=PASSWORD) as conn:
        with conn.cursor() as cur:
            cur.execute(f'SELECT id, amount FROM "{sales}".orders')
            assert arrow_sorted(cur.fetch_arrow_table()) == pg_rows(pg, f'SELECT id, amount FROM "{sales}".orders')
        refused = [
            f'SELECT o.id FROM "{sales}".orders o JOIN "{sales}".customers c ON c.id = o.customer_id',
            f'SELECT id FROM "{sales}".orders WHERE customer_id IN (SELECT id FROM "{sales}".customers)',
            f'WITH c AS (SELECT * FROM "{sales}".customers) SELECT * FROM c',
            f'SELECT id FROM "{sales}".orders UNION SELECT id FROM "{sales}".customers',
            "SELECT * FROM pg_catalog.pg_user",
        ]
        for query in refused:
            with conn.cursor() as cur, pytest.raises(adbc_driver_manager.Error, match="may not read"):
                cur.execute(query)
        # A CTE's name is not a table: this reads only orders.
        with conn.cursor() as cur:
            cur.execute(f'WITH customers AS (SELECT customer_id FROM "{sales}".orders) SELECT count(*) AS n FROM customers')
            assert cur.fetch_arrow_table().to_pylist() == [{"n": 5}]
        objects = conn.adbc_get_objects(depth="tables", db_schema_filter=sales).read_all().to_pylist()
        tables = [t["table_name"] for s in objects[0]["catalog_db_schemas"] for t in s["db_schema_tables"]]
        assert tables == ["orders"], "metadata lists only what alice may read"


def test_unqualified_names_resolve_in_the_default_schema(testbed, tmp_path, pg, sales):
    """Unqualified relations are authorised and read in `redshift_schema`, whatever Redshift's
    own search path would say."""
    pg.execute("CREATE TABLE IF NOT EXISTS public.rsf_fsql_shadow (id integer)")
    server = start_server(dict(base_config(testbed), redshift_schema=sales), tmp_path / "default-schema")
    try:
        with connect(server) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) AS n, max(amount) AS top FROM orders")
            # max() of a numeric(10,2) has no declared scale on PostgreSQL: its exact text.
            assert cur.fetch_arrow_table().to_pylist() == [{"n": 5, "top": "1234.56"}]
            with pytest.raises(adbc_driver_manager.Error, match="not found"):
                cur.execute("SELECT * FROM rsf_fsql_shadow")
    finally:
        assert stop_server(server) is None, server.stderr_tail()

