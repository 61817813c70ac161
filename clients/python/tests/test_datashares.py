"""Tables of a consumer (datashare) database, served with `redshift_databases`: ListFlights of the
namespace `database.schema` lists them with three-part paths, GetSchema promises what ListFlights
said, and full and incremental reads by `database.schema.table` return every row PostgreSQL holds.
Table patterns name them by their three-part names.

The emulator maps a consumer database's schema `s` to the PostgreSQL schema named `db.s` (see
tests/redshift-emulator/src/compat_catalog.rs); the database itself is created through the emulator
with Redshift's `CREATE DATABASE ... FROM DATASHARE`."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pyarrow as pa
import pyarrow.flight as flight
import pytest
from psycopg import sql

from conftest import base_config, start_server, stop_server
from support import command, path, raises_status, read_flight, unique
from test_catalog_kinds import emulator


@pytest.fixture
def consumer(pg, testbed):
    """A consumer database with the table `public.orders` and the view `public.big_orders`."""
    database = unique("sales_db")
    schema = f"{database}.public"
    with emulator(testbed) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} FROM DATASHARE sales_share OF ACCOUNT '123456789012' NAMESPACE 'a1b2c3'").format(
            sql.Identifier(database)
        ))
    pg.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    pg.execute(sql.SQL(
        "CREATE TABLE {}.orders (id integer NOT NULL, total numeric(12,2), customer varchar(30), updated_at timestamp)"
    ).format(sql.Identifier(schema)))
    insert_orders(pg, schema, 1, 15)
    pg.execute(sql.SQL("CREATE VIEW {}.big_orders AS SELECT id, total FROM {}.orders WHERE total > 2").format(
        sql.Identifier(schema), sql.Identifier(schema)
    ))
    yield database
    pg.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    pg.execute("DELETE FROM redshift_emulator.datashare_databases WHERE database_name = %s", (database,))


def insert_orders(pg, schema: str, first: int, last: int) -> None:
    start = dt.datetime(2024, 7, 1)
    with pg.cursor() as cur:
        cur.executemany(
            sql.SQL("INSERT INTO {}.orders VALUES (%s, %s, %s, %s)").format(sql.Identifier(schema)),
            [(i, Decimal(i) / 4, f"c{i}" if i % 2 else None, start + dt.timedelta(hours=i)) for i in range(first, last + 1)],
        )


@pytest.fixture
def datashare_server(testbed, consumer, tmp_path):
    config = dict(base_config(testbed), redshift_databases=consumer)
    server = start_server(config, tmp_path / "server")
    yield server
    stop_server(server)


def pg_orders(pg, database: str, where: str = "") -> list[dict]:
    rows = pg.execute(
        sql.SQL("SELECT id, total, customer, updated_at FROM {}.orders " + where + " ORDER BY id").format(
            sql.Identifier(f"{database}.public")
        )
    ).fetchall()
    return [dict(zip(["id", "total", "customer", "updated_at"], r)) for r in rows]


def test_list_flights_and_get_schema_of_a_consumer_database(datashare_server, consumer):
    client = datashare_server.connect()
    infos = list(client.list_flights(f"{consumer}.public".encode()))
    paths = sorted([p.decode() for p in i.descriptor.path] for i in infos)
    assert paths == [[consumer, "public", "big_orders"], [consumer, "public", "orders"]]
    orders = next(i for i in infos if i.descriptor.path[-1] == b"orders")
    assert orders.schema.metadata[b"redshift_flight.table"] == f"{consumer}.public.orders".encode()
    assert [(f.name, f.type, f.nullable) for f in orders.schema] == [
        ("id", pa.int32(), False),
        ("total", pa.decimal128(12, 2), True),
        ("customer", pa.string(), True),
        ("updated_at", pa.timestamp("us"), True),
    ]
    for info in infos:
        assert client.get_schema(info.descriptor).schema.equals(info.schema, check_metadata=True)
    # The connected database's schemas are listed as before; the consumer's are not among them.
    assert client.get_schema(path(consumer, "public", "orders")).schema.equals(orders.schema, check_metadata=True)
    with raises_status("NOT_FOUND"):
        client.get_flight_info(path(consumer, "public", "no_such_table"))


def test_full_and_incremental_reads_by_three_part_names(datashare_server, pg, consumer):
    client = datashare_server.connect()
    table = f"{consumer}.public.orders"
    full = read_flight(client, client.get_flight_info(command(table=table, mode="full")))
    assert sorted(full.to_pylist(), key=lambda r: r["id"]) == pg_orders(pg, consumer)
    view = read_flight(client, client.get_flight_info(path(consumer, "public", "big_orders")))
    assert sorted(r["id"] for r in view.to_pylist()) == [r["id"] for r in pg_orders(pg, consumer, "WHERE total > 2")]

    first = client.get_flight_info(command(table=table))
    meta = json.loads(first.app_metadata)
    assert meta["mode"] == "incremental" and meta["replication_key"] == "updated_at"
    assert meta["table"] == table
    assert read_flight(client, first).num_rows == 15
    insert_orders(pg, f"{consumer}.public", 16, 19)
    second = client.get_flight_info(command(table=table, cursor=meta["next_cursor"]))
    got = sorted(read_flight(client, second).to_pylist(), key=lambda r: r["id"])
    assert got == pg_orders(pg, consumer, "WHERE id > 15")


def test_table_patterns_name_consumer_tables_by_three_part_names(testbed, pg, consumer, tmp_path):
    """A token allowed `db.public.orders` lists and reads that table only; DoGet re-checks the
    three-part name from the ticket."""
    token = "t-reader-0123456789abcdef0123456789"
    access = tmp_path / "access.toml"
    access.write_text(f'[[tokens]]\nname = "reader"\ntoken = "{token}"\ntables = ["{consumer}.public.orders"]\n')
    config = dict(base_config(testbed), redshift_databases=consumer, auth_file=str(access))
    server = start_server(config, tmp_path / "server")
    try:
        options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])
        client = server.connect()
        listed = [i.descriptor.path for i in client.list_flights(f"{consumer}.public".encode(), options)]
        assert listed == [[consumer.encode(), b"public", b"orders"]]
        info = client.get_flight_info(path(consumer, "public", "orders"), options)
        table = read_flight(client, info, options=options)
        assert sorted(table.column("id").to_pylist()) == [r["id"] for r in pg_orders(pg, consumer)]
        with raises_status("PERMISSION_DENIED"):
            client.get_flight_info(command(table=f"{consumer}.public.big_orders"), options)
    finally:
        assert stop_server(server) is None, server.stderr_tail()
