"""The ticket wire format as proto-docs/README.md documents it: tickets the server issues decode
with the documented layout and verify with the keys derived from the configured ticket_secret, and tickets signed
with that secret but expired, of another version, or naming a file that is gone get the
documented statuses. Also: replicas sharing ticket_secret serve each other's tickets."""

from __future__ import annotations

import hashlib
import json
import re
import time

import boto3
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from psycopg import sql

from support import (
    app_metadata,
    decode_ticket,
    encode_ticket,
    key_id,
    path,
    raises_status,
    cancel_flight,
    read_flight,
    sign,
)

# The golden ticket of src/ticket.rs (secret "golden-key"): the format is a contract with clients.
GOLDEN_HEX = (
    "525346320a3708021201731a01742201722a016b3002380348048a0120111111111111111111111111111111111111"
    "1111111111111111111111111111122096f1b05b2abfe2d809ca2abf17f751128c1ebddf3b1fc1c8f77adecec9a69a24"
    "1a08af6528a1f4cc1be1"
)
GOLDEN_PAYLOAD = {
    "version": 2,
    "schema": "s",
    "table": "t",
    "run_id": "r",
    "key": "k",
    "file_size": 2,
    "rows": 3,
    "expires_at_ms": 4,
    "run_endpoints": 0,
    "row_group_start": 0,
    "row_group_end": 0,
    "footer_len": 0,
    "reader": "",
    "dictionary": False,
    "columns_sha256": b"\x11" * 32,
}


def s3_client(testbed):
    return boto3.client(
        "s3",
        endpoint_url=testbed["TESTBED_S3_ENDPOINT"],
        region_name=testbed["TESTBED_S3_REGION"],
        aws_access_key_id=testbed["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=testbed["AWS_SECRET_ACCESS_KEY"],
    )


@pytest.fixture
def staged(client, pg, make_schema):
    """A small table staged by GetFlightInfo: (schema, info, first ticket bytes)."""
    schema = make_schema("tickets")
    pg.execute(
        sql.SQL("CREATE TABLE {}.t (id bigint PRIMARY KEY, name varchar(10) NOT NULL, at date)").format(
            sql.Identifier(schema)
        )
    )
    pg.execute(
        sql.SQL("INSERT INTO {}.t SELECT g, 'n' || g, date '2024-01-01' + g FROM generate_series(1, 50) g").format(
            sql.Identifier(schema)
        )
    )
    info = client.get_flight_info(path(schema, "t"))
    yield schema, info, list(info.endpoints)[0].ticket.ticket
    # The tests read only parts of the run, or none of it: drop it, as a client should.
    cancel_flight(client, info)


def test_golden_ticket_matches_the_documented_format():
    assert encode_ticket(GOLDEN_PAYLOAD, b"golden-key").hex() == GOLDEN_HEX
    payload, _raw, _mac, kid = decode_ticket(bytes.fromhex(GOLDEN_HEX))
    assert payload == GOLDEN_PAYLOAD
    assert kid.hex() == "af6528a1f4cc1be1"


def test_issued_tickets_follow_the_documented_format(flight_server, staged, testbed):
    schema, info, _ = staged
    secret = flight_server.config["ticket_secret"].encode()
    meta = app_metadata(info)
    endpoints = list(info.endpoints)
    # The promised schema is stored once, in the run's columns object; tickets carry its SHA-256.
    columns_key = f"{flight_server.config['s3_prefix']}/{meta['run_id']}/columns.json"
    columns_bytes = s3_client(testbed).get_object(Bucket=testbed["TESTBED_S3_BUCKET"], Key=columns_key)["Body"].read()
    assert json.loads(columns_bytes) == {
        "version": 1,
        "columns": [
            {"name": "id", "catalog_type": "bigint", "nullable": False},
            {"name": "name", "catalog_type": "character varying(10)", "nullable": False},
            {"name": "at", "catalog_type": "date", "nullable": True},
        ],
        "primary_key": ["id"],
    }
    payloads = []
    for endpoint in endpoints:
        ticket = endpoint.ticket.ticket
        assert len(ticket) < 1024
        payload, raw, mac, kid = decode_ticket(ticket)
        assert kid == key_id(secret)
        assert mac == sign(secret, raw), "MAC is not HMAC-SHA256(ticket key, 'RSF2' || key_id || payload)"
        assert payload["version"] == 2
        assert (payload["schema"], payload["table"]) == (schema, "t")
        assert payload["run_id"] == meta["run_id"]
        assert payload["key"].startswith(f"{flight_server.config['s3_prefix']}/{meta['run_id']}/")
        assert payload["key"].endswith(".parquet")
        assert payload["columns_sha256"] == hashlib.sha256(columns_bytes).digest()
        # pyarrow gives expiration_time as a TimestampScalar (nanoseconds, UTC).
        expiry = endpoint.expiration_time.cast(pa.timestamp("ms", tz="UTC"))
        assert payload["expires_at_ms"] == expiry.value
        payloads.append(payload)
    assert sum(p["rows"] for p in payloads) == info.total_records == 50
    sizes = {p["key"]: p["file_size"] for p in payloads}
    assert sum(sizes.values()) == info.total_bytes
    assert len(sizes) == meta["files"]
    # Each endpoint is a whole file (row_group_end 0) or a distinct range of its row groups.
    parts = {(p["key"], p["row_group_start"], p["row_group_end"]) for p in payloads}
    assert len(parts) == len(payloads)
    assert all(p["run_endpoints"] == len(payloads) for p in payloads)
    # The footer's length, measured at planning: metadata + the 8-byte tail, inside the file.
    assert all(8 < p["footer_len"] < p["file_size"] for p in payloads)
    # One reader id per FlightInfo: 16 hex digits.
    readers = {p["reader"] for p in payloads}
    assert len(readers) == 1 and re.fullmatch(r"[0-9a-f]{16}", readers.pop())


def test_expired_ticket_is_failed_precondition(client, flight_server, staged):
    _schema, _info, ticket = staged
    payload, _raw, _mac, _kid = decode_ticket(ticket)
    payload["expires_at_ms"] = int(time.time() * 1000) - 60_000
    expired = encode_ticket(payload, flight_server.config["ticket_secret"].encode())
    with raises_status("FAILED_PRECONDITION", match="call GetFlightInfo again"):
        client.do_get(flight.Ticket(expired)).read_all()


def test_ticket_signed_with_another_key_is_permission_denied(client, staged):
    _schema, _info, ticket = staged
    payload, _raw, _mac, _kid = decode_ticket(ticket)
    forged = encode_ticket(payload, b"not the server's secret")
    with raises_status("PERMISSION_DENIED", match="signature"):
        client.do_get(flight.Ticket(forged)).read_all()
    # Widening the expiry without the key is just as useless.
    payload["expires_at_ms"] += 365 * 24 * 3600 * 1000
    with raises_status("PERMISSION_DENIED", match="signature"):
        client.do_get(flight.Ticket(encode_ticket(payload, b""))).read_all()


def test_other_version_is_invalid_argument(client, flight_server, staged):
    _schema, _info, ticket = staged
    payload, _raw, _mac, _kid = decode_ticket(ticket)
    payload["version"] = 3
    with raises_status("INVALID_ARGUMENT", match="version 3"):
        client.do_get(flight.Ticket(encode_ticket(payload, flight_server.config["ticket_secret"].encode()))).read_all()


def test_missing_staged_file_is_not_found(client, flight_server, testbed, staged):
    """A valid ticket whose file is gone (cleaned up, expired) asks the client to start over."""
    _schema, _info, ticket = staged
    payload, _raw, _mac, _kid = decode_ticket(ticket)
    payload["key"] = payload["key"].rsplit("/", 1)[0] + "/no_such_part_00.parquet"
    gone = encode_ticket(payload, flight_server.config["ticket_secret"].encode())
    with raises_status("NOT_FOUND", match="call GetFlightInfo again"):
        client.do_get(flight.Ticket(gone)).read_all()


def test_deleted_run_is_not_found(client, testbed, staged):
    """Delete the staged run behind the server's back (as the sweeper would): DoGet says so."""
    _schema, info, ticket = staged
    meta = app_metadata(info)
    payload, _raw, _mac, _kid = decode_ticket(ticket)
    s3 = s3_client(testbed)
    prefix = payload["key"].rsplit("/", 1)[0] + "/"
    assert meta["run_id"] in prefix
    listed = s3.list_objects_v2(Bucket=testbed["TESTBED_S3_BUCKET"], Prefix=prefix).get("Contents", [])
    assert payload["key"] in {o["Key"] for o in listed}
    for obj in listed:
        s3.delete_object(Bucket=testbed["TESTBED_S3_BUCKET"], Key=obj["Key"])
    with raises_status("NOT_FOUND", match="call GetFlightInfo again"):
        client.do_get(flight.Ticket(ticket)).read_all()


def test_replica_with_the_same_secret_serves_the_ticket(flight_server, staged, testbed, tmp_path):
    """Tickets are self-contained: a second server with the same ticket_secret serves them."""
    from conftest import base_config, start_server, stop_server

    _schema, info, _ticket = staged
    config = base_config(testbed)
    config["ticket_secret"] = flight_server.config["ticket_secret"]
    replica = start_server(config, tmp_path / "replica")
    try:
        table = read_flight(replica.connect(), info)
        assert table.num_rows == info.total_records
        assert table.schema.equals(info.schema, check_metadata=True)
    finally:
        stop_server(replica)
    # A server with another secret refuses them.
    other = start_server(base_config(testbed), tmp_path / "other")
    try:
        with raises_status("PERMISSION_DENIED", match="signature"):
            read_flight(other.connect(), info)
    finally:
        stop_server(other)


def test_app_metadata_is_json(staged):
    _schema, info, _ = staged
    meta = json.loads(bytes(info.app_metadata))
    assert isinstance(meta, dict) and meta["files"] == len(list(info.endpoints))
