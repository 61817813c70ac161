"""Relations whose columns are not in pg_attribute, or that are not plain tables: late-binding views
(`WITH NO SCHEMA BINDING`), materialized views and Spectrum external tables. For each kind:
ListFlights lists it with its kind in the schema metadata, GetSchema promises what ListFlights
said, a full read returns every row and column PostgreSQL holds, and an incremental read (the
replication key inferred from the relation's own columns) returns exactly the rows added since.
A late-binding view whose table was dropped is FAILED_PRECONDITION naming the view.

The emulator answers Redshift's catalog for these (see tests/redshift-emulator/src/compat_catalog.rs):
late-binding views and external schemas are created through it, as on Redshift; the data behind
them is written straight into PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import psycopg
import pyarrow as pa
import pytest
from psycopg import sql

from support import command, path, raises_status, read_flight, unique

KIND = b"redshift_flight.kind"


def ident(*parts: str) -> sql.Composable:
    return sql.SQL(".").join(sql.Identifier(p) for p in parts)


def emulator(testbed) -> psycopg.Connection:
    """A connection to the Redshift emulator (statements PostgreSQL cannot parse go through it)."""
    return psycopg.connect(
        host=testbed["TESTBED_REDSHIFT_HOST"], port=int(testbed["TESTBED_REDSHIFT_PORT"]),
        user=testbed["TESTBED_REDSHIFT_USER"], password=testbed["TESTBED_REDSHIFT_PASSWORD"],
        dbname=testbed["TESTBED_REDSHIFT_DATABASE"], autocommit=True,
    )


def base_rows(first: int, last: int) -> list[tuple]:
    start = dt.datetime(2024, 5, 1, 12, 0, 0)
    return [
        (i, Decimal(i) / 4, f"note {i}" if i % 3 else None, start + dt.timedelta(hours=i))
        for i in range(first, last + 1)
    ]


@pytest.fixture
def relations(pg, testbed, make_schema):
    """A schema with a table `base`, the late-binding view `lbv` over it (created through the
    emulator) and the materialized view `mv` over it."""
    schema = make_schema("kinds")
    pg.execute(sql.SQL(
        "CREATE TABLE {} (id integer PRIMARY KEY, amount numeric(10,2), note varchar(20), updated_at timestamp)"
    ).format(ident(schema, "base")))
    with pg.cursor() as cur:
        cur.executemany(sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s)").format(ident(schema, "base")), base_rows(1, 20))
    with emulator(testbed) as conn:
        conn.execute(sql.SQL(
            "CREATE VIEW {} AS SELECT id, amount, note, updated_at FROM {} WITH NO SCHEMA BINDING"
        ).format(ident(schema, "lbv"), ident(schema, "base")))
    pg.execute(sql.SQL(
        "CREATE MATERIALIZED VIEW {} AS SELECT id, (amount * 2)::numeric(12,2) AS doubled, updated_at FROM {}"
    ).format(ident(schema, "mv"), ident(schema, "base")))
    return schema


@pytest.fixture
def spectrum(pg, testbed):
    """An external schema (CREATE EXTERNAL SCHEMA through the emulator) with the external table
    `events`: scalar Hive types, an array and a struct."""
    schema = unique("spectrum")
    with emulator(testbed) as conn:
        conn.execute(sql.SQL(
            "CREATE EXTERNAL SCHEMA {} FROM DATA CATALOG DATABASE 'lake' IAM_ROLE 'arn:aws:iam::123456789012:role/spectrum'"
        ).format(sql.Identifier(schema)))
    pg.execute(sql.SQL("CREATE TYPE {} AS (a integer, b text)").format(ident(schema, "pair")))
    pg.execute(sql.SQL(
        "CREATE TABLE {} (id bigint NOT NULL, name text, price numeric(12,3), tags text[], attrs {}, "
        "ratio real, score double precision, flag boolean, day date, updated_at timestamp)"
    ).format(ident(schema, "events"), ident(schema, "pair")))
    insert_events(pg, schema, 1, 12)
    yield schema
    pg.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    pg.execute("DELETE FROM redshift_emulator.external_schemas WHERE schemaname = %s", (schema,))


def insert_events(pg, schema: str, first: int, last: int) -> None:
    start = dt.datetime(2024, 6, 1, 8, 30, 0)
    with pg.cursor() as cur:
        for i in range(first, last + 1):
            cur.execute(
                sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s, ROW(%s, %s), %s, %s, %s, %s, %s)").format(
                    ident(schema, "events")
                ),
                (
                    i, f"event {i}" if i % 4 else None, Decimal(i) / 8, [f"t{i}", "x'y\"z"] if i % 5 else None,
                    i, f"b{i}", i / 2, i / 3, i % 2 == 0, dt.date(2024, 6, 1) + dt.timedelta(days=i),
                    start + dt.timedelta(minutes=i),
                ),
            )


def pg_table(pg, query: sql.Composable, names: list[str], json_columns=()) -> list[dict]:
    """Rows PostgreSQL returns for `query`, as dicts keyed by `names`; JSON columns parsed."""
    rows = []
    for values in pg.execute(query).fetchall():
        row = dict(zip(names, values))
        for name in json_columns:
            if row[name] is not None and isinstance(row[name], str):
                row[name] = json.loads(row[name])
        rows.append(row)
    return sorted(rows, key=lambda r: r["id"])


def flight_rows(table: pa.Table, json_columns=()) -> list[dict]:
    rows = table.to_pylist()
    for row in rows:
        for name in json_columns:
            if row[name] is not None:
                row[name] = json.loads(row[name])
    return sorted(rows, key=lambda r: r["id"])


EVENTS_SELECT = (
    "SELECT id, name, price, to_jsonb(tags), to_jsonb(attrs), ratio, score, flag, day, updated_at FROM {}"
)
EVENTS_COLUMNS = ["id", "name", "price", "tags", "attrs", "ratio", "score", "flag", "day", "updated_at"]
NESTED = ("tags", "attrs")


def test_list_flights_and_get_schema_of_each_kind(client, relations):
    infos = {i.descriptor.path[1].decode(): i for i in client.list_flights(relations.encode())}
    assert set(infos) == {"base", "lbv", "mv"}
    assert KIND not in infos["base"].schema.metadata
    assert infos["lbv"].schema.metadata[KIND] == b"late_binding_view"
    assert infos["mv"].schema.metadata[KIND] == b"materialized_view"
    for info in infos.values():
        assert client.get_schema(info.descriptor).schema.equals(info.schema, check_metadata=True)
    # A late-binding view's columns come from pg_get_late_binding_view_cols(), typed by the one
    # type table; Redshift says nothing of their nullability, and a view has no primary key.
    lbv = infos["lbv"].schema
    assert [(f.name, f.type, f.nullable) for f in lbv] == [
        ("id", pa.int32(), True),
        ("amount", pa.decimal128(10, 2), True),
        ("note", pa.string(), True),
        ("updated_at", pa.timestamp("us"), True),
    ]
    assert lbv.field("amount").metadata[b"redshift_flight.type"] == b"numeric(10,2)"
    assert lbv.metadata[b"redshift_flight.primary_key"] == b"[]"
    assert [(f.name, f.type) for f in infos["mv"].schema] == [
        ("id", pa.int32()), ("doubled", pa.decimal128(12, 2)), ("updated_at", pa.timestamp("us")),
    ]


def test_list_flights_and_get_schema_of_an_external_table(client, spectrum):
    infos = list(client.list_flights(spectrum.encode()))
    assert [[p.decode() for p in i.descriptor.path] for i in infos] == [[spectrum, "events"]]
    schema = infos[0].schema
    assert schema.metadata[KIND] == b"external_table"
    assert schema.metadata[b"redshift_flight.primary_key"] == b"[]"
    assert client.get_schema(path(spectrum, "events")).schema.equals(schema, check_metadata=True)
    # Nested columns are JSON text: pyarrow reads the arrow.json extension as its JSON type.
    assert [(f.name, getattr(f.type, "storage_type", f.type), f.nullable) for f in schema] == [
        ("id", pa.int64(), False),
        ("name", pa.string(), True),
        ("price", pa.decimal128(12, 3), True),
        ("tags", pa.string(), True),
        ("attrs", pa.string(), True),
        ("ratio", pa.float32(), True),
        ("score", pa.float64(), True),
        ("flag", pa.bool_(), True),
        ("day", pa.date32(), True),
        ("updated_at", pa.timestamp("us"), True),
    ]
    types = {f.name: f.metadata[b"redshift_flight.type"].decode() for f in schema}
    assert types["name"] == "character varying"  # Hive's string, spelled as Redshift's type
    assert types["tags"] == "array<string>"
    assert types["attrs"] == "struct<a:int,b:string>"
    assert types["ratio"] == "real"  # Hive's float is single precision
    for nested in NESTED:
        assert schema.field(nested).type.extension_name == "arrow.json"


@pytest.mark.parametrize("relation", ["lbv", "mv"])
def test_full_read_of_a_view_kind_matches_postgresql(client, pg, relations, relation):
    info = client.get_flight_info(command(table=f"{relations}.{relation}", mode="full"))
    table = read_flight(client, info)
    names = table.schema.names
    expected = pg_table(pg, sql.SQL("SELECT * FROM {}").format(ident(relations, relation)), names)
    assert flight_rows(table) == expected
    assert len(expected) == 20


def test_full_read_of_an_external_table_matches_postgresql(client, pg, spectrum):
    info = client.get_flight_info(path(spectrum, "events"))
    table = read_flight(client, info)
    expected = pg_table(pg, sql.SQL(EVENTS_SELECT).format(ident(spectrum, "events")), EVENTS_COLUMNS, NESTED)
    got = flight_rows(table, NESTED)
    assert len(got) == 12
    for want, have in zip(expected, got):
        assert have == {**want, "ratio": pytest.approx(want["ratio"])}, (want, have)


@pytest.mark.parametrize("relation", ["lbv", "mv"])
def test_incremental_reads_of_a_view_kind(client, pg, relations, relation):
    table = f"{relations}.{relation}"
    first = client.get_flight_info(command(table=table))
    meta = json.loads(first.app_metadata)
    assert meta["mode"] == "incremental" and meta["replication_key"] == "updated_at"
    assert len(read_flight(client, first)) == 20
    with pg.cursor() as cur:
        cur.executemany(sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s)").format(ident(relations, "base")), base_rows(21, 26))
    if relation == "mv":
        pg.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(ident(relations, "mv")))
    second = client.get_flight_info(command(table=table, cursor=meta["next_cursor"]))
    assert json.loads(second.app_metadata)["mode"] == "incremental"
    got = read_flight(client, second)
    expected = pg_table(
        pg, sql.SQL("SELECT * FROM {} WHERE id > 20").format(ident(relations, relation)), got.schema.names
    )
    assert flight_rows(got) == expected
    assert [r["id"] for r in expected] == list(range(21, 27))


def test_incremental_reads_of_an_external_table(client, pg, spectrum):
    table = f"{spectrum}.events"
    first = client.get_flight_info(command(table=table))
    meta = json.loads(first.app_metadata)
    assert meta["mode"] == "incremental" and meta["replication_key"] == "updated_at"
    assert len(read_flight(client, first)) == 12
    insert_events(pg, spectrum, 13, 17)
    second = client.get_flight_info(command(table=table, cursor=meta["next_cursor"]))
    got = flight_rows(read_flight(client, second), NESTED)
    expected = pg_table(
        pg, sql.SQL(EVENTS_SELECT + " WHERE id > 12").format(ident(spectrum, "events")), EVENTS_COLUMNS, NESTED
    )
    assert [r["id"] for r in got] == list(range(13, 18))
    for want, have in zip(expected, got):
        assert have == {**want, "ratio": pytest.approx(want["ratio"])}, (want, have)


def test_a_late_binding_view_that_no_longer_resolves_is_failed_precondition(client, pg, testbed, make_schema):
    """Its table is dropped (nothing binds the view to it, so that succeeds), or re-created with a
    column of another type: the view stays in the catalog, and reading it is FAILED_PRECONDITION
    naming the view, for a full and for an incremental read."""
    schema = make_schema("lbvgone")
    pg.execute(sql.SQL("CREATE TABLE {} (id integer, amount numeric(10,2), updated_at timestamp)").format(ident(schema, "t")))
    pg.execute(sql.SQL("INSERT INTO {} VALUES (1, 1.5, '2024-01-01')").format(ident(schema, "t")))
    with emulator(testbed) as conn:
        conn.execute(sql.SQL("CREATE VIEW {} AS SELECT * FROM {} WITH NO SCHEMA BINDING").format(
            ident(schema, "v"), ident(schema, "t")
        ))
    assert len(read_flight(client, client.get_flight_info(path(schema, "v")))) == 1
    pg.execute(sql.SQL("DROP TABLE {}").format(ident(schema, "t")))
    # (The listing may still be the cached one, with `t`: the view is listed either way.)
    assert "v" in [i.descriptor.path[1].decode() for i in client.list_flights(schema.encode())]
    for descriptor in (path(schema, "v"), command(table=f"{schema}.v", mode="full")):
        with raises_status("FAILED_PRECONDITION", match=f"late-binding view {schema}.v no longer resolves"):
            client.get_flight_info(descriptor)
    pg.execute(sql.SQL("CREATE TABLE {} (id integer, amount text, updated_at timestamp)").format(ident(schema, "t")))
    with raises_status("FAILED_PRECONDITION", match=f"late-binding view {schema}.v no longer resolves"):
        client.get_flight_info(command(table=f"{schema}.v", mode="full"))
