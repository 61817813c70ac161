"""Hostile and mistaken requests get the documented gRPC status (never a hang, never a crash), and
afterwards every table is intact and still served."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.flight as flight
import pytest
from psycopg import sql

from support import MAGIC, command, path, quote_part, raises_status, read_flight

HOSTILE_NAME = "x\"; DROP TABLE victims; --'"


@pytest.fixture
def victims(pg, make_schema):
    """Two tables the hostile requests aim at: (schema, {table: row count})."""
    schema = make_schema("hostile")
    counts = {"victims": 25, "Other \"T\"": 3}
    for table, n in counts.items():
        pg.execute(
            sql.SQL("CREATE TABLE {}.{} (id integer PRIMARY KEY, note varchar(20))").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
        )
        pg.execute(
            sql.SQL("INSERT INTO {}.{} SELECT g, 'n' || g FROM generate_series(1, %s) g").format(
                sql.Identifier(schema), sql.Identifier(table)
            ),
            [n],
        )
    return schema, counts


def assert_intact(pg, client, schema: str, counts: dict[str, int]) -> None:
    for table, n in counts.items():
        assert pg.execute(
            sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        ).fetchone()[0] == n, table
        info = client.get_flight_info(path(schema, table))
        assert info.total_records == n
        assert read_flight(client, info).num_rows == n


def test_unknown_table_is_not_found(client, victims):
    schema, _ = victims
    with raises_status("NOT_FOUND", match="not found"):
        client.get_flight_info(path(schema, "no_such_table"))
    with raises_status("NOT_FOUND"):
        client.get_flight_info(path("no_such_schema_at_all", "victims"))
    with raises_status("NOT_FOUND"):
        client.get_flight_info(command(table=f"{schema}.no_such_table"))
    with raises_status("NOT_FOUND"):
        client.get_schema(path(schema, "no_such_table"))
    with raises_status("NOT_FOUND"):
        client.get_flight_info(path(schema, HOSTILE_NAME))


@pytest.mark.parametrize(
    "cmd",
    [
        b"not json",
        b"\xff\xfe{}",
        b"[]",
        b"{}",
        b'{"table": ""}',
        b'{"table": "a.b.c.d"}',  # three parts name a consumer database's table (NOT_FOUND if none)
        b'{"table": "\\"unterminated"}',
        b'{"table": "s.t", "colums": ["x"]}',
        b'{"table": "s.t", "mode": "sometimes"}',
        b'{"table": 42}',
        b'{"table": "s.t", "columns": "id"}',
    ],
    ids=lambda c: c.decode("utf-8", "replace"),
)
def test_malformed_command_is_invalid_argument(client, cmd):
    with raises_status("INVALID_ARGUMENT", match="invalid flight descriptor"):
        client.get_flight_info(flight.FlightDescriptor.for_command(cmd))
    with raises_status("INVALID_ARGUMENT"):
        client.get_schema(flight.FlightDescriptor.for_command(cmd))


def test_oversized_command_is_invalid_argument(client, victims):
    schema, _ = victims
    padding = " " * (64 * 1024)
    cmd = json.dumps({"table": f"{schema}.victims"}).encode() + padding.encode()
    with raises_status("INVALID_ARGUMENT", match="65536"):
        client.get_flight_info(flight.FlightDescriptor.for_command(cmd))


def test_messages_over_the_grpc_limit_are_refused_before_parsing(client, victims):
    schema, _ = victims
    cmd = json.dumps({"table": f"{schema}.victims"}).encode() + b" " * (2 * 1024 * 1024)
    # OUT_OF_RANGE from the gRPC layer (pyarrow raises ArrowInvalid for it).
    with pytest.raises(pa.ArrowInvalid, match="out-of-range error.*limit is: 1048576 bytes"):
        client.get_flight_info(flight.FlightDescriptor.for_command(cmd))
    # The server is still there.
    assert [d.descriptor.path for d in client.list_flights(schema.encode())]


def test_bad_projection_is_invalid_argument(client, victims):
    schema, _ = victims
    table = f"{schema}.victims"
    with raises_status("INVALID_ARGUMENT", match="no column"):
        client.get_flight_info(command(table=table, columns=["id", "nope"]))
    with raises_status("INVALID_ARGUMENT", match="no column"):
        client.get_flight_info(command(table=table, columns=["id\"; DROP TABLE victims; --"]))
    with raises_status("INVALID_ARGUMENT", match="twice"):
        client.get_flight_info(command(table=table, columns=["id", "ID"]))
    with raises_status("INVALID_ARGUMENT", match="must not be empty"):
        client.get_flight_info(command(table=table, columns=[]))


def test_bad_paths_are_invalid_argument(client, victims):
    schema, _ = victims
    with raises_status("INVALID_ARGUMENT", match="path"):
        client.get_flight_info(path(schema, "victims", "extra", "more"))
    with raises_status("INVALID_ARGUMENT", match="path"):
        client.get_flight_info(path("a.b", "victims", "extra"))  # a database name has no dot
    # Three elements name a consumer database's table: this server serves none of that name.
    with raises_status("NOT_FOUND"):
        client.get_flight_info(path(schema, "victims", "extra"))
    with raises_status("INVALID_ARGUMENT", match="path"):
        client.get_flight_info(path(schema, ""))
    with raises_status("INVALID_ARGUMENT", match="path"):
        client.get_flight_info(flight.FlightDescriptor.for_path())


def test_bad_incremental_requests_are_invalid_argument(client, victims):
    """victims has no TIMESTAMP, TIMESTAMPTZ or DATE column: incremental needs an explicit key.
    Every mistaken incremental request is INVALID_ARGUMENT with a message saying what to fix."""
    schema, counts = victims
    table = f"{schema}.victims"
    for request, match in (
        (dict(table=table, mode="incremental"), f"table {table} has no replication key"),
        (dict(table=table, cursor="anything"), "invalid cursor: not a redshift-flight cursor"),
        (dict(table=table, mode="auto", cursor="x"), "invalid cursor"),
        (dict(table=table, mode="incremental", cursor="rsfc1.e30"), "invalid cursor: damaged"),
        (dict(table=table, replication_key="nope"), "has no column"),
        (dict(table=table, replication_key="id", lookback="an hour"), "invalid lookback"),
        (dict(table=table, replication_key="note", lookback=5), "does not support a lookback"),
        (dict(table=table, mode="incremental", replication_key='id"; DROP TABLE victims; --'), "has no column"),
        (dict(table=table, lookbak="1 hour"), "unknown field"),
    ):
        with raises_status("INVALID_ARGUMENT", match=match):
            client.get_flight_info(command(**request))
    # The same table with an explicit key is served incrementally, and its cursor continues.
    info = client.get_flight_info(command(table=table, replication_key="id"))
    meta = json.loads(info.app_metadata)
    assert meta["mode"] == "incremental" and meta["replication_key"] == "id"
    assert meta["replication_key_source"] == "requested" and meta["upper_bound"] == str(counts["victims"])
    assert read_flight(client, info).num_rows == counts["victims"]
    again = client.get_flight_info(command(table=table, cursor=meta["next_cursor"]))
    assert list(again.endpoints) == [] and json.loads(again.app_metadata)["next_cursor"] == meta["next_cursor"]
    with raises_status("INVALID_ARGUMENT", match="the cursor is for table"):
        other = quote_part('Other "T"')
        client.get_flight_info(command(table=f"{schema}.{other}", cursor=meta["next_cursor"]))


def test_mode_auto_without_cursor_serves_a_full_snapshot(client, victims):
    schema, counts = victims
    info = client.get_flight_info(command(table=f"{schema}.victims", mode="auto"))
    meta = json.loads(info.app_metadata)
    assert meta["mode"] == "full" and "auto" in meta["reason"]
    assert read_flight(client, info).num_rows == counts["victims"]


@pytest.mark.parametrize(
    "ticket",
    [b"", b"junk", MAGIC, MAGIC + b"\xff\xff\xff", b"RSF2" + b"\x0a\x00\x12\x00", MAGIC + b"\x0a\x05ab"],
    ids=["empty", "junk", "magic-only", "bad-protobuf", "other-magic", "truncated"],
)
def test_garbage_ticket_is_invalid_argument(client, ticket):
    with raises_status("INVALID_ARGUMENT", "PERMISSION_DENIED", match="ticket"):
        client.do_get(flight.Ticket(ticket)).read_all()


def test_garbage_tickets_with_bad_framing_are_invalid_argument(client):
    for ticket in (b"", b"junk", MAGIC + b"\xff\xff\xff"):
        with raises_status("INVALID_ARGUMENT", match="malformed ticket"):
            client.do_get(flight.Ticket(ticket)).read_all()


def test_oversized_ticket_is_invalid_argument(client):
    with raises_status("INVALID_ARGUMENT", match="malformed ticket"):
        client.do_get(flight.Ticket(MAGIC + b"\x00" * (256 * 1024))).read_all()


def test_tampered_ticket_is_rejected(client, victims):
    schema, _ = victims
    info = client.get_flight_info(path(schema, "victims"))
    ticket = list(info.endpoints)[0].ticket.ticket
    # A flipped bit anywhere after the magic: the framing breaks or the signature no longer
    # verifies; never data.
    for i in range(len(MAGIC), len(ticket), max(1, len(ticket) // 40)):
        bad = bytearray(ticket)
        bad[i] ^= 0x01
        with raises_status("INVALID_ARGUMENT", "PERMISSION_DENIED", match="ticket"):
            client.do_get(flight.Ticket(bytes(bad))).read_all()
    # The last byte is part of the MAC: that is a bad signature, PERMISSION_DENIED.
    bad = ticket[:-1] + bytes([ticket[-1] ^ 0x80])
    with raises_status("PERMISSION_DENIED", match="signature"):
        client.do_get(flight.Ticket(bad)).read_all()
    # Truncation.
    with raises_status("INVALID_ARGUMENT", "PERMISSION_DENIED", match="ticket"):
        client.do_get(flight.Ticket(ticket[:-5])).read_all()
    # The untouched ticket still works.
    assert client.do_get(flight.Ticket(ticket)).read_all().num_rows == info.total_records


def test_unsupported_rpcs_are_unimplemented(client, victims):
    schema, _ = victims
    with raises_status("INVALID_ARGUMENT"):
        # CancelFlightInfo exists; an empty body has no FlightInfo to cancel.
        list(client.do_action(flight.Action("CancelFlightInfo", b"")))
    with raises_status("UNIMPLEMENTED"):
        list(client.do_action(flight.Action("DROP TABLE victims", b"")))
    with raises_status("UNIMPLEMENTED", match="read-only"):
        # The status may arrive with the schema message, a batch, or the close.
        writer, _reader = client.do_put(path(schema, "victims"), pa.schema([("id", pa.int32())]))
        writer.write_table(pa.table({"id": pa.array([1], pa.int32())}))
        writer.close()
    assert sorted(a.type for a in client.list_actions()) == [
        "CancelFlightInfo",
        "ClosePreparedStatement",
        "CreatePreparedStatement",
        "RenewFlightEndpoint",
    ]


def test_tables_are_intact_after_hostile_requests(client, pg, victims):
    schema, counts = victims
    hostile = [
        path(schema, HOSTILE_NAME),
        path(HOSTILE_NAME, "victims"),
        command(table=f"{quote_part(schema)}.{quote_part(HOSTILE_NAME)}"),
        command(table=f"{schema}.victims", columns=["id); DROP TABLE victims; --"]),
        command(table=f"{schema}.victims'); DROP TABLE victims; --"),
        command(table=f"{schema}.victims", replication_key="id); DROP TABLE victims; --"),
        command(table=f"{schema}.victims", replication_key="id", lookback="1'); DROP TABLE victims; --"),
        flight.FlightDescriptor.for_command(b"'; DROP TABLE victims; --"),
    ]
    for descriptor in hostile:
        with pytest.raises((pa.ArrowKeyError, pa.ArrowInvalid)):
            client.get_flight_info(descriptor)
    for ticket in (b"'; DROP TABLE victims; --", MAGIC + b"\x00" * 64):
        with pytest.raises((pa.ArrowInvalid, flight.FlightUnauthorizedError)):
            client.do_get(flight.Ticket(ticket)).read_all()
    assert_intact(pg, client, schema, counts)
