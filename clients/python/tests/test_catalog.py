"""ListFlights, GetSchema, the default schema, and a table with no rows."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.flight as flight
import pytest
from psycopg import sql

from support import app_metadata, cancel_flight, command, path, raises_status, read_flight, unique


@pytest.fixture
def catalog_schema(pg, make_schema):
    schema = make_schema("list")
    ident = sql.Identifier(schema)
    pg.execute(sql.SQL("CREATE TABLE {}.alpha (id integer PRIMARY KEY, v text)").format(ident))
    pg.execute(sql.SQL("CREATE TABLE {}.{} (a smallint, b numeric(10,3))").format(ident, sql.Identifier("Beta Table")))
    pg.execute(sql.SQL("CREATE TABLE {}.gamma (k bigint NOT NULL, PRIMARY KEY (k))").format(ident))
    pg.execute(sql.SQL("INSERT INTO {}.alpha SELECT g, 'v' || g FROM generate_series(1, 10) g").format(ident))
    pg.execute(sql.SQL("CREATE VIEW {}.alpha_view AS SELECT id, v FROM {}.alpha WHERE id <= 4").format(ident, ident))
    return schema


def test_list_flights_returns_the_tables_of_the_criteria_schema(client, catalog_schema):
    infos = list(client.list_flights(catalog_schema.encode("utf-8")))
    paths = [[p.decode() for p in i.descriptor.path] for i in infos]
    assert sorted(paths) == sorted(
        [[catalog_schema, t] for t in ("alpha", "Beta Table", "gamma", "alpha_view")]
    )
    for info in infos:
        assert info.descriptor.descriptor_type == flight.DescriptorType.PATH
        assert list(info.endpoints) == []
        assert info.total_records >= -1
        # ListFlights describes the same schema GetSchema and GetFlightInfo promise.
        assert client.get_schema(info.descriptor).schema.equals(info.schema, check_metadata=True)
    by_name = {i.descriptor.path[1].decode(): i for i in infos}
    assert by_name["Beta Table"].schema.field("b").type == pa.decimal128(10, 3)
    assert by_name["gamma"].schema.field("k").nullable is False
    assert by_name["gamma"].schema.metadata[b"redshift_flight.primary_key"] == b'["k"]'


def test_list_flights_matches_schema_names_case_insensitively(client, catalog_schema):
    infos = list(client.list_flights(catalog_schema.upper().encode()))
    assert {i.descriptor.path[1].decode() for i in infos} == {"alpha", "Beta Table", "gamma", "alpha_view"}


def test_list_flights_of_an_unknown_schema_is_empty(client):
    assert list(client.list_flights(unique("no_such_schema").encode())) == []


def test_list_flights_rejects_non_utf8_criteria(client):
    with raises_status("INVALID_ARGUMENT", match="UTF-8"):
        list(client.list_flights(b"\xff\xfe"))


def test_views_are_served(client, catalog_schema):
    info = client.get_flight_info(path(catalog_schema, "alpha_view"))
    assert sorted(read_flight(client, info).column("id").to_pylist()) == [1, 2, 3, 4]


def test_table_names_match_case_insensitively_when_unambiguous(client, catalog_schema):
    info = client.get_flight_info(path(catalog_schema, "ALPHA"))
    assert info.total_records == 10
    assert app_metadata(info)["table"] == f"{catalog_schema}.alpha"
    cancel_flight(client, info)  # not read: drop the staged run now
    info = client.get_flight_info(command(table=f"{catalog_schema}.alpha", columns=["V"], mode="full"))
    assert info.schema.names == ["v"]
    cancel_flight(client, info)


def test_zero_row_table(client, pg, catalog_schema):
    """No rows: UNLOAD writes no files, so no endpoints; the schema is still exact."""
    info = client.get_flight_info(path(catalog_schema, "gamma"))
    assert list(info.endpoints) == []
    assert info.total_records == 0
    assert info.total_bytes == 0
    assert info.schema.equals(
        pa.schema([pa.field("k", pa.int64(), nullable=False, metadata={"redshift_flight.type": "bigint"})]).with_metadata(
            {"redshift_flight.table": f"{catalog_schema}.gamma", "redshift_flight.primary_key": '["k"]'}
        ),
        check_metadata=True,
    )
    meta = app_metadata(info)
    assert meta["files"] == 0 and meta["mode"] == "full"
    assert client.get_schema(path(catalog_schema, "gamma")).schema.equals(info.schema, check_metadata=True)
    table = read_flight(client, info)
    assert table.num_rows == 0 and table.schema.equals(info.schema)
    # A projection of an empty table, and a filterless view over no rows.
    info = client.get_flight_info(command(table=f"{catalog_schema}.Beta Table", columns=["b"]))
    assert list(info.endpoints) == [] and info.total_records == 0
    assert info.schema.names == ["b"] and info.schema.field("b").type == pa.decimal128(10, 3)


def test_default_schema_path_and_list(client, pg):
    """["table"] reads the default schema (redshift_schema = public); so does ListFlights without
    criteria. The only test that touches public (the catalog caches a schema for a minute)."""
    table = unique("pyt_default")
    pg.execute(sql.SQL("CREATE TABLE public.{} (id integer, label char(3))").format(sql.Identifier(table)))
    try:
        pg.execute(sql.SQL("INSERT INTO public.{} VALUES (1, 'a'), (2, NULL)").format(sql.Identifier(table)))
        info = client.get_flight_info(path(table))
        assert app_metadata(info)["table"] == f"public.{table}"
        result = read_flight(client, info).sort_by("id")
        assert result.column("label").to_pylist() == ["a  ", None]
        info = client.get_flight_info(command(table=table))
        assert info.total_records == 2
        cancel_flight(client, info)
        listed = {tuple(p.decode() for p in i.descriptor.path) for i in client.list_flights()}
        assert ("public", table) in listed
    finally:
        pg.execute(sql.SQL("DROP TABLE public.{}").format(sql.Identifier(table)))


def test_get_schema_ignores_mode_and_cursor(client, catalog_schema):
    """GetSchema answers from the catalog: even a command GetFlightInfo refuses (a damaged cursor,
    incremental on a table without a replication key) gets its schema, projection included; and
    the schema of an incremental read is the schema of a full one."""
    table = f"{catalog_schema}.alpha"
    descriptor = command(table=table, columns=["v"], mode="incremental", cursor="c")
    assert client.get_schema(descriptor).schema.names == ["v"]
    with raises_status("INVALID_ARGUMENT", match="invalid cursor"):
        client.get_flight_info(descriptor)
    descriptor = command(table=table, columns=["v"], mode="incremental", lookback="soon")
    assert client.get_schema(descriptor).schema.names == ["v"]
    with raises_status("INVALID_ARGUMENT", match=f"table {table} has no replication key"):
        client.get_flight_info(descriptor)
    # A real incremental read (an explicit integer key) promises what GetSchema says.
    info = client.get_flight_info(command(table=table, columns=["v"], replication_key="id"))
    meta = app_metadata(info)
    assert meta["mode"] == "incremental" and meta["replication_key"] == "id"
    cursor = meta["next_cursor"]
    for request in (
        dict(table=table, columns=["v"], replication_key="id"),
        dict(table=table, columns=["v"], mode="incremental", cursor=cursor, lookback=3),
        dict(table=table, columns=["v"], mode="full"),
    ):
        assert client.get_schema(command(**request)).schema.equals(info.schema, check_metadata=True)
    cancel_flight(client, info)
