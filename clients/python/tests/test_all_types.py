"""Every type of the type table, at its limits, through pyarrow.flight, compared value by value
with what psycopg reads from PostgreSQL (the data behind the Redshift emulator).

Schema, table and column names use capitals, spaces, both quote characters, dots, non-ASCII
letters and reserved words, so that they travel through the catalog, the UNLOAD quoting, the ticket and the schema
unchanged."""

from __future__ import annotations

import datetime as dt
import json
import math
import struct
from decimal import Decimal

import psycopg
import pyarrow as pa
import pytest
from psycopg import sql

from support import (
    app_metadata, assert_nothing_new, cancel_flight, command, decode_cursor, path, quote_part, raises_status, read_flight, sync, unique,
)

UTC = dt.timezone.utc
INSERT_ZONE = "America/New_York"  # timestamptz literals are read in this zone, not UTC

# (column name, PostgreSQL type, expected Arrow type, kind used to compare values)
COLUMNS = [
    ("select", "integer NOT NULL PRIMARY KEY", pa.int32(), "int"),
    ("Small Int", "smallint", pa.int16(), "int"),
    ('int"q"', "integer", pa.int32(), "int"),
    ("BigInt", "bigint", pa.int64(), "int"),
    ("n 38,10", "numeric(38,10)", pa.decimal128(38, 10), "decimal"),
    ("n.5.2", "numeric(5,2)", pa.decimal128(5, 2), "decimal"),
    ("Real", "real", pa.float32(), "float32"),
    ("double 'd'", "double precision", pa.float64(), "float64"),
    ("from", "boolean", pa.bool_(), "plain"),
    ("Char5", "char(5)", pa.string(), "plain"),
    ("Var Char", "varchar(100)", pa.string(), "plain"),
    ("date", "date", pa.date32(), "plain"),
    ("TS", "timestamp", pa.timestamp("us"), "timestamp"),
    ("TS TZ", "timestamptz", pa.timestamp("us", tz="UTC"), "timestamptz"),
    ("time", "time", pa.time64("us"), "plain"),
    ("TimeTZ", "timetz", pa.string(), "text"),
    ("Bytes", "varbyte", pa.binary(), "bytes"),
    ("Super", "super", None, "json"),  # Utf8 marked arrow.json: see test_schema_and_metadata
    ("geo", "geometry", pa.binary(), "geometry"),
]
NAMES = [c[0] for c in COLUMNS]

# EWKB as stored (hex) -> the ISO WKB the server must send.
POINT_SRID_EWKB = "0101000020e6100000000000000000f03f0000000000000040"  # SRID=4326;POINT(1 2)
POINT_WKB = "0101000000000000000000f03f0000000000000040"
POINT_Z_EWKB = "0101000080000000000000f03f00000000000000400000000000000840"  # POINT Z (1 2 3)
POINT_Z_WKB = "01e9030000000000000000f03f00000000000000400000000000000840"
LINE_WKB = "010200000002000000" + "00" * 8 + "00" * 8 + "000000000000f03f" + "000000000000f03f"
GEOMETRY_WKB = {POINT_SRID_EWKB: POINT_WKB, POINT_Z_EWKB: POINT_Z_WKB, LINE_WKB: LINE_WKB}

# One tuple per row, in COLUMNS order, as PostgreSQL literals (None = SQL NULL).
ROWS = [
    (
        "1", "1", "42", "-7", "12345.6789012345", "1.5", "3.14", "2.718281828459045", "true",
        "ab", "hello", "2024-02-29", "2024-02-29 12:34:56.789012", "2024-07-04 09:15:00.000001",
        "12:34:56.789", "12:34:56.789+05:30", "\\xdeadbeef", '{"a": [1, 2.5, "x"], "b": null, "ü": true}',
        "\\x" + POINT_SRID_EWKB,
    ),
    (  # upper limits
        "2", "32767", "2147483647", "9223372036854775807",
        "9999999999999999999999999999.9999999999", "999.99", "Infinity", "NaN", "false",
        "abcde", "Grüße 👋 日本語 ñ — ∑", "9999-12-31", "9999-12-31 23:59:59.999999",
        "9999-12-30 23:59:59.999999", "23:59:59.999999", "23:59:59.999999-12", "\\x00ff00",
        '[1, "two", {"three": [3.0]}]', "\\x" + POINT_Z_EWKB,
    ),
    (  # lower limits
        "3", "-32768", "-2147483648", "-9223372036854775808",
        "-9999999999999999999999999999.9999999999", "-999.99", "-Infinity", "-0", "false",
        "a", "", "0001-01-01", "0001-01-01 00:00:00.000001", "0001-01-02 00:00:00.000001",
        "00:00:00", "00:00:00+14", "\\x", '"just a string"', "\\x" + LINE_WKB,
    ),
    (  # small and awkward values
        "4", "0", "0", "0", "0.0000000001", "0.01", "-0", "5e-324", "true",
        "  x", "it's \"quoted\" \\ back\nslash\ttab", "1970-01-01", "1969-12-31 23:59:59.999999",
        "1999-12-31 19:00:00.5", "00:00:00.000001", "00:00:00-00:30", "\\x00", "null",
        "\\x" + POINT_SRID_EWKB,
    ),
    (  # every column NULL but the key
        "5", None, None, None, None, None, None, None, None, None, None, None, None, None, None,
        None, None, None, None,
    ),
    (
        "6", "-1", "-1", "-1", "1234567890123456789012345678.0123456789", "-0.01", "3.4028235e38",
        "1.7976931348623157e308", "true", "12345", "tab\there", "2000-02-29",
        "2000-02-29 00:00:00", "2024-11-03 01:30:00-04", "12:00:00", "12:00:00+00", "\\x0a0d",
        "{}", "\\x" + LINE_WKB,
    ),
    (
        "7", "7", "7", "7", "-0.0000000001", "0", "1.17549435e-38", "-2.2250738585072014e-308",
        "false", "ü", "ü", "1582-10-10", "1582-10-10 10:10:10", "1900-01-01 00:00:00",
        "23:59:59", "01:02:03.456789+01:02", "\\x" + "ab" * 300, '{"nested": {"deep": [[], [null]]}}',
        "\\x" + POINT_Z_EWKB,
    ),
]


@pytest.fixture(scope="module")
def all_types(testbed):
    """Creates the table (in its own schema, rows inserted in a non-UTC session) and yields
    (schema, table); drops the schema afterwards."""
    schema = unique("Types.\"Q\" 'x' Order")  # a dot: the command must quote it
    table = "All Types \"T\" 'o' Tábla 表"
    with psycopg.connect(testbed["TESTBED_PG_URL"], autocommit=True) as conn:
        conn.execute(f"SET TIME ZONE '{INSERT_ZONE}'")
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            columns = sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(pg_type))
                for name, pg_type, _, _ in COLUMNS
            )
            conn.execute(
                sql.SQL("CREATE TABLE {}.{} ({})").format(
                    sql.Identifier(schema), sql.Identifier(table), columns
                )
            )
            for row in ROWS:
                conn.execute(
                    sql.SQL("INSERT INTO {}.{} VALUES ({})").format(
                        sql.Identifier(schema),
                        sql.Identifier(table),
                        sql.SQL(", ").join(sql.Literal(v) for v in row),
                    )
                )
            yield schema, table
        finally:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def postgres_rows(pg, schema: str, table: str, names: list[str]) -> list[tuple]:
    """The rows as psycopg reads them, sorted by the key; TIMETZ and SUPER as their text."""
    kinds = dict((c[0], c[3]) for c in COLUMNS)
    select = sql.SQL(", ").join(
        sql.SQL("{}::text").format(sql.Identifier(n)) if kinds[n] in ("text", "json") else sql.Identifier(n)
        for n in names
    )
    rows = pg.execute(
        sql.SQL("SELECT {} FROM {}.{} ORDER BY {}").format(
            select, sql.Identifier(schema), sql.Identifier(table), sql.Identifier("select")
        )
    ).fetchall()
    return [tuple(comparable(kinds[n], v, "postgres") for n, v in zip(names, row)) for row in rows]


def arrow_rows(result: pa.Table, names: list[str]) -> list[tuple]:
    kinds = dict((c[0], c[3]) for c in COLUMNS)
    result = result.sort_by("select") if "select" in result.column_names else result
    columns = [result.column(n).to_pylist() for n in names]
    return [tuple(comparable(kinds[n], v, "arrow") for n, v in zip(names, row)) for row in zip(*columns)]


def comparable(kind: str, value, side: str):
    """One value in a form both sides can be compared in, exactly."""
    if value is None:
        return None
    if kind == "float32":
        return "NaN" if math.isnan(value) else struct.pack("<f", value).hex()
    if kind == "float64":
        return "NaN" if math.isnan(value) else struct.pack("<d", value).hex()
    if kind == "decimal":
        assert isinstance(value, Decimal), (side, value)
        return value
    if kind == "timestamptz":
        assert value.utcoffset() == dt.timedelta(0) or side == "postgres", (side, value)
        return value.astimezone(UTC)
    if kind == "timestamp":
        assert value.tzinfo is None, (side, value)
        return value
    if kind == "json":
        return ("json", json.loads(value))
    if kind == "bytes":
        return bytes(value)
    if kind == "geometry":
        data = bytes(value)
        return GEOMETRY_WKB[data.hex()] if side == "postgres" else data.hex()
    return value


def test_every_row_and_column_matches_postgres(client, pg, all_types):
    schema, table = all_types
    info = client.get_flight_info(path(schema, table))
    result = read_flight(client, info)

    assert info.total_records == len(ROWS)
    assert sum(1 for _ in info.endpoints) >= 1
    assert result.num_rows == len(ROWS)
    assert result.column_names == NAMES
    expected = postgres_rows(pg, schema, table, NAMES)
    got = arrow_rows(result, NAMES)
    for want_row, got_row in zip(expected, got):
        for name, want, have in zip(NAMES, want_row, got_row):
            assert have == want, f"row select={want_row[0]} column {name!r}: got {have!r}, PostgreSQL has {want!r}"
    assert got == expected


def test_char_padding_is_what_postgres_returns(client, pg, all_types):
    schema, table = all_types
    result = read_flight(client, client.get_flight_info(path(schema, table))).sort_by("select")
    want = [
        r[0]
        for r in pg.execute(
            sql.SQL("SELECT {} FROM {}.{} ORDER BY {}").format(
                sql.Identifier("Char5"), sql.Identifier(schema), sql.Identifier(table), sql.Identifier("select")
            )
        )
    ]
    assert result.column("Char5").to_pylist() == want
    # PostgreSQL (like Redshift) returns char(n) blank-padded to n characters.
    assert {"ab   ", "a    ", "  x  ", "ü    "} <= set(want)


def test_empty_string_and_null_stay_apart(client, all_types):
    schema, table = all_types
    result = read_flight(client, client.get_flight_info(path(schema, table))).sort_by("select")
    varchar = dict(zip(result.column("select").to_pylist(), result.column("Var Char").to_pylist()))
    assert varchar[3] == ""
    assert varchar[5] is None
    blobs = dict(zip(result.column("select").to_pylist(), result.column("Bytes").to_pylist()))
    assert blobs[3] == b""
    assert blobs[5] is None


def test_schema_and_metadata(client, pg, all_types):
    schema, table = all_types
    info = client.get_flight_info(path(schema, table))
    fields = {f.name: f for f in info.schema}
    assert [f.name for f in info.schema] == NAMES
    for name, _pg_type, arrow_type, _kind in COLUMNS:
        if arrow_type is not None:
            assert fields[name].type == arrow_type, (name, fields[name].type)
        assert fields[name].nullable == (name != "select"), name
    # SUPER: UTF-8 JSON text, marked with the canonical arrow.json extension.
    # (pyarrow reads a Utf8 field with ARROW:extension:name = arrow.json as its JSON extension type.)
    assert fields["Super"].type == pa.json_(pa.string()), fields["Super"].type
    catalog_types = dict(
        pg.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
            [sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table)).as_string(pg)],
        ).fetchall()
    )
    for name in NAMES:
        metadata = fields[name].metadata or {}
        assert metadata.get(b"redshift_flight.type") == catalog_types[name].encode(), (name, metadata)
    geo = fields["geo"].metadata
    assert geo[b"ARROW:extension:name"] == b"geoarrow.wkb"
    assert json.loads(geo[b"ARROW:extension:metadata"]) == {}
    assert info.schema.metadata[b"redshift_flight.table"] == f"{schema}.{table}".encode()
    assert json.loads(info.schema.metadata[b"redshift_flight.primary_key"]) == ["select"]
    cancel_flight(client, info)  # not read: drop the staged run now


def test_get_schema_equals_flight_info_schema(client, all_types):
    schema, table = all_types
    info = client.get_flight_info(path(schema, table))
    for descriptor in (path(schema, table), command(table=f"{quote_part(schema)}.{quote_part(table)}")):
        result = client.get_schema(descriptor)
        assert result.schema.equals(info.schema, check_metadata=True)
    cancel_flight(client, info)  # not read: drop the staged run now


def test_flight_info_fields_and_app_metadata(client, all_types):
    schema, table = all_types
    before = dt.datetime.now(UTC)
    info = client.get_flight_info(path(schema, table))
    assert info.ordered is False
    assert info.total_bytes > 0
    assert info.descriptor == path(schema, table)
    endpoints = list(info.endpoints)
    for endpoint in endpoints:
        assert endpoint.ticket.ticket.startswith(b"RSF2")
        assert list(endpoint.locations) == []
        expiry = endpoint.expiration_time.as_py()  # a pyarrow TimestampScalar, UTC
        assert expiry.utcoffset() == dt.timedelta(0)
        assert expiry > before + dt.timedelta(minutes=30)
    meta = app_metadata(info)
    assert set(meta) == {
        "table", "mode", "reason", "replication_key", "replication_key_source", "next_cursor", "lower_bound",
        "upper_bound", "lookback", "run_id", "expires_at", "files", "snapshot_reused",
    }, meta
    assert meta["snapshot_reused"] is False
    assert meta["mode"] == "full" and meta["reason"] == "full snapshot requested"
    assert meta["table"] == f"{schema}.{table}"
    assert 1 <= meta["files"] <= len(endpoints)
    # No preferred column name: the first TIMESTAMP, TIMESTAMPTZ or DATE column is the key, and a
    # full snapshot's next_cursor is its MAX at planning, so an incremental chain can start here.
    assert meta["replication_key"] == "date" and meta["replication_key_source"] == "inferred"
    assert meta["lower_bound"] is None and meta["lookback"] is None
    assert meta["upper_bound"] == "9999-12-31"
    assert decode_cursor(meta["next_cursor"]) == {"s": schema, "t": table, "k": "date", "y": "date", "b": "9999-12-31"}
    assert dt.datetime.fromisoformat(meta["expires_at"].replace("Z", "+00:00")) > before
    # A GetFlightInfo after the first was answered stages a fresh run (snapshot_reuse_seconds 0:
    # only requests arriving while an identical one is staged share its run).
    again = client.get_flight_info(path(schema, table))
    assert app_metadata(again)["run_id"] != meta["run_id"]
    assert app_metadata(again)["snapshot_reused"] is False
    cancel_flight(client, info)  # neither is read: drop both staged runs now
    cancel_flight(client, again)


def test_command_with_projection(client, pg, all_types):
    schema, table = all_types
    columns = ["TS TZ", "n 38,10", "select", "Super", "double 'd'"]
    info = client.get_flight_info(
        command(table=f"{quote_part(schema)}.{quote_part(table)}", columns=columns, mode="full")
    )
    assert info.schema.names == columns
    assert app_metadata(info)["mode"] == "full"
    result = read_flight(client, info)
    assert result.schema.names == columns
    assert arrow_rows(result, columns) == postgres_rows(pg, schema, table, columns)
    # GetSchema with the same command promises the same projection.
    assert client.get_schema(
        command(table=f"{quote_part(schema)}.{quote_part(table)}", columns=columns, mode="full")
    ).schema.equals(info.schema, check_metadata=True)


def test_types_without_an_arrow_mapping_arrive_as_their_text(client, pg, make_schema):
    """NUMERIC without precision, INTERVAL, HLLSKETCH and anything else the type table does not
    name: Utf8 holding the database's text form, nothing lost."""
    schema = make_schema("other")
    pg.execute(
        sql.SQL("CREATE TABLE {}.t (id integer, n numeric, iv interval, h hllsketch, u uuid)").format(
            sql.Identifier(schema)
        )
    )
    pg.execute(
        sql.SQL(
            "INSERT INTO {}.t VALUES (1, 12345678901234567890.123456789012345, '1 day 02:03:04.5', "
            "'{{\"version\":1}}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'), (2, NULL, NULL, NULL, NULL)"
        ).format(sql.Identifier(schema))
    )
    info = client.get_flight_info(path(schema, "t"))
    assert [f.type for f in info.schema] == [pa.int32()] + [pa.string()] * 4
    assert [info.schema.field(n).metadata[b"redshift_flight.type"] for n in ("n", "iv", "h", "u")] == [
        b"numeric", b"interval", b"hllsketch", b"uuid"
    ]
    got = read_flight(client, info).sort_by("id").to_pylist()
    want = pg.execute(
        sql.SQL("SELECT id, n::text, iv::text, h::text, u::text FROM {}.t ORDER BY id").format(sql.Identifier(schema))
    ).fetchall()
    assert [tuple(r.values()) for r in got] == want


def test_time_2400_is_never_sent_as_invalid_arrow(client, pg, make_schema):
    """Redshift's TIME range ends at 24:00:00 inclusive. Whatever the server does with it (an error
    naming the column, or another representation), it must not send invalid Arrow data."""
    schema = make_schema("time24")
    pg.execute(sql.SQL("CREATE TABLE {}.t (id integer, t time)").format(sql.Identifier(schema)))
    pg.execute(sql.SQL("INSERT INTO {}.t VALUES (1, '24:00:00'), (2, '23:59:59.999999')").format(sql.Identifier(schema)))
    info = client.get_flight_info(path(schema, "t"))
    try:
        table = read_flight(client, info)
    except pa.ArrowException as error:
        assert '"t"' in str(error) or "24:00:00" in str(error), error
        cancel_flight(client, info)  # the stream failed: its run was not consumed
        return
    table.validate(full=True)


KEY_COLUMNS = ["select", "Small Int", 'int"q"', "BigInt", "n 38,10", "n.5.2", "Char5", "Var Char", "date", "TS", "TS TZ"]


@pytest.mark.parametrize("key", KEY_COLUMNS)
def test_every_key_type_round_trips_its_bound(client, pg, all_types, key):
    """Each column type that can be a replication key, at its limits and with hostile names: the
    cursor's bound is MAX(key) exactly as the database prints it (every digit, every
    microsecond), so a sync from that cursor finds nothing new."""
    schema, table = all_types
    name = f"{quote_part(schema)}.{quote_part(table)}"
    first = sync(client, name, mode="incremental", replication_key=key)
    # As the database prints MAX(key); ::text would strip CHAR's padding, which the bound keeps.
    want = pg.execute(
        sql.SQL("SELECT max({}){} FROM {}.{}").format(
            sql.Identifier(key), sql.SQL("" if key == "Char5" else "::text"), sql.Identifier(schema), sql.Identifier(table)
        )
    ).fetchone()[0]
    assert first.meta["upper_bound"] is not None
    if key == "TS TZ":  # the text of an instant depends on the session's zone: compare instants
        assert dt.datetime.fromisoformat(first.meta["upper_bound"]) == dt.datetime.fromisoformat(want)
    else:
        assert first.meta["upper_bound"] == want
    cursor = decode_cursor(first.cursor)
    assert (cursor["s"], cursor["t"], cursor["k"], cursor["b"]) == (schema, table, key, first.meta["upper_bound"])
    non_null = pg.execute(
        sql.SQL("SELECT count(*) FROM {}.{} WHERE {} IS NOT NULL").format(
            sql.Identifier(schema), sql.Identifier(table), sql.Identifier(key)
        )
    ).fetchone()[0]
    assert first.table.num_rows == non_null
    assert_nothing_new(sync(client, name, cursor=first.cursor), first.cursor)


@pytest.mark.parametrize("key", ["Real", "double 'd'", "from", "time", "TimeTZ", "Bytes", "Super", "geo"])
def test_columns_that_cannot_be_keys(client, all_types, key):
    schema, table = all_types
    with raises_status("INVALID_ARGUMENT", match="cannot be a replication key"):
        client.get_flight_info(command(table=f"{quote_part(schema)}.{quote_part(table)}", replication_key=key))
