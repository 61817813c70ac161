"""Helpers shared by the client tests: reading a flight, app_metadata, gRPC status checks, and a
small codec for the documented ticket format (proto-docs/README.md, "Tickets")."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.flight as flight
import pytest



def unique(prefix: str) -> str:
    """A name no other test (or earlier run) uses."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------------------------------
# Reading


def read_endpoint(client: flight.FlightClient, endpoint: flight.FlightEndpoint, options=None) -> pa.Table:
    """All batches of one endpoint, read from the server the client is connected to (the server
    sends no locations: an endpoint without locations is served by the server that issued it)."""
    args = (endpoint.ticket,) if options is None else (endpoint.ticket, options)
    return client.do_get(*args).read_all()


def read_flight(client: flight.FlightClient, info: flight.FlightInfo, workers: int = 4, options=None) -> pa.Table:
    """Reads every endpoint (in parallel when workers > 1) and concatenates them in endpoint
    order. Each endpoint's stream must carry exactly the FlightInfo schema."""
    endpoints = list(info.endpoints)
    if workers > 1 and len(endpoints) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(lambda e: read_endpoint(client, e, options), endpoints))
    else:
        parts = [read_endpoint(client, e, options) for e in endpoints]
    for part in parts:
        assert part.schema.equals(info.schema, check_metadata=True), (part.schema, info.schema)
    if not parts:
        return info.schema.empty_table()
    return pa.concat_tables(parts)


def app_metadata(info: flight.FlightInfo) -> dict:
    """FlightInfo.app_metadata as the JSON object the contract promises."""
    raw = info.app_metadata
    assert raw, "FlightInfo.app_metadata is empty"
    return json.loads(bytes(raw).decode("utf-8"))


def path(*parts: str) -> flight.FlightDescriptor:
    return flight.FlightDescriptor.for_path(*parts)


def command(**kwargs) -> flight.FlightDescriptor:
    return flight.FlightDescriptor.for_command(json.dumps(kwargs).encode("utf-8"))


def quote_part(name: str) -> str:
    """A schema or table name as one part of the command's `table` key: double-quoted, `"` doubled."""
    return '"' + name.replace('"', '""') + '"'


# --------------------------------------------------------------------------------------------------
# Incremental reads: cursors (proto-docs/README.md, "Cursors") and one sync at a time


def decode_cursor(cursor: str) -> dict:
    """The documented cursor format: "rsfc1." + unpadded base64url of {"s","t","k","y","b"}."""
    assert cursor.startswith("rsfc1."), cursor
    body = cursor[len("rsfc1.") :]
    assert "=" not in body
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def encode_cursor(fields: dict) -> str:
    raw = json.dumps(fields, separators=(",", ":")).encode()
    return "rsfc1." + base64.urlsafe_b64encode(raw).decode().rstrip("=")


class Sync:
    """One GetFlightInfo and everything its endpoints sent."""

    def __init__(self, client: flight.FlightClient, descriptor: flight.FlightDescriptor):
        self.started = time.monotonic()
        self.info = client.get_flight_info(descriptor)
        self.planned = time.monotonic()
        self.meta = app_metadata(self.info)
        self.table = read_flight(client, self.info)
        assert self.table.num_rows == self.info.total_records
        self.rows = self.table.to_pylist()

    @property
    def cursor(self) -> str | None:
        return self.meta["next_cursor"]

    def ids(self, key: str = "id") -> list:
        return sorted(r[key] for r in self.rows)


def sync(client, table: str, **cmd) -> Sync:
    return Sync(client, command(table=table, **cmd))


def cancel_flight(client: flight.FlightClient, info: flight.FlightInfo | None = None, endpoints=()) -> None:
    """Drops a staged run that a test does not read (CancelFlightInfo), so that no run is left in
    the bucket. `endpoints`: serialized FlightEndpoints, when only those are known (one suffices)."""
    if info is not None:
        raw = info.serialize()
    else:
        raw = b"".join(_varint(3 << 3 | 2) + _varint(len(e)) + e for e in endpoints)  # FlightInfo.endpoint = 3
    body = _varint(1 << 3 | 2) + _varint(len(raw)) + raw  # CancelFlightInfoRequest.info = 1
    results = list(client.do_action(flight.Action("CancelFlightInfo", body)))
    assert len(results) == 1, results


def assert_nothing_new(s: Sync, cursor: str) -> None:
    """The contract for "nothing above the cursor": no UNLOAD, no endpoints, the cursor unchanged."""
    assert list(s.info.endpoints) == []
    assert s.info.total_records == 0 and s.info.total_bytes == 0
    assert s.meta["mode"] == "incremental"
    assert s.meta["next_cursor"] == cursor
    assert s.meta["next_cursor"].encode("utf-8") == cursor.encode("utf-8")
    assert s.meta["run_id"] is None and s.meta["expires_at"] is None and s.meta["files"] == 0
    assert s.meta["upper_bound"] is None
    assert s.meta["lower_bound"] == decode_cursor(cursor)["b"]
    assert s.table.num_rows == 0 and s.table.schema.equals(s.info.schema, check_metadata=True)


# --------------------------------------------------------------------------------------------------
# gRPC status codes as pyarrow raises them: pyarrow turns the code into an exception class and
# prefixes the server's message with "Flight returned <code text> error, with message: " (or
# "gRPC returned ..." for the codes Flight has no name for, such as FAILED_PRECONDITION).

STATUS = {
    "NOT_FOUND": (pa.ArrowKeyError, "not found"),
    "INVALID_ARGUMENT": (pa.ArrowInvalid, "invalid argument"),
    "FAILED_PRECONDITION": (pa.ArrowInvalid, "precondition failed"),
    "PERMISSION_DENIED": (flight.FlightUnauthorizedError, "unauthorized"),
    "UNAUTHENTICATED": (flight.FlightUnauthenticatedError, "unauthenticated"),
    "UNIMPLEMENTED": (pa.ArrowNotImplementedError, "unimplemented"),
}


@contextlib.contextmanager
def raises_status(*codes: str, match: str | None = None):
    """Expects the block to fail with one of the gRPC `codes`; `match` must be in the message."""
    classes = tuple(STATUS[c][0] for c in codes)
    with pytest.raises(classes) as caught:
        yield caught
    message = str(caught.value)
    texts = [STATUS[c][1] for c in codes if isinstance(caught.value, STATUS[c][0])]
    assert any(f"returned {t} error" in message for t in texts), (codes, type(caught.value), message)
    if match is not None:
        assert match in message, (match, message)


# --------------------------------------------------------------------------------------------------
# The ticket format (version 2): "RSF2" || SignedTicket{payload=1, mac=2, key_id=3},
# mac = HMAC-SHA256(ticket key, "RSF2" || key_id || payload), where the ticket key and the key id
# are derived from ticket_secret with HKDF-SHA256. A minimal protobuf codec, enough for tests.

MAGIC = b"RSF2"
PAYLOAD_FIELDS = {
    1: ("version", "varint"),
    2: ("schema", "str"),
    3: ("table", "str"),
    4: ("run_id", "str"),
    5: ("key", "str"),
    6: ("file_size", "varint"),
    7: ("rows", "varint"),
    9: ("expires_at_ms", "int64"),
    11: ("run_endpoints", "varint"),
    12: ("row_group_start", "varint"),
    13: ("row_group_end", "varint"),
    14: ("footer_len", "varint"),
    15: ("reader", "str"),
    16: ("dictionary", "bool"),
    17: ("columns_sha256", "bytes"),
}


def hkdf_sha256(secret: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF-SHA256 without salt, for up to 32 bytes (as proto-docs/README.md specifies)."""
    prk = hmac.new(b"\0" * 32, secret, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()[:length]


def ticket_key(secret: bytes) -> bytes:
    return hkdf_sha256(secret, b"redshift-flight ticket v1", 32)


def key_id(secret: bytes) -> bytes:
    return hkdf_sha256(secret, b"redshift-flight key id v1", 8)


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(data: bytes):
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
            if pos > len(data):
                raise ValueError("truncated field")
        else:
            raise ValueError(f"unexpected wire type {wire}")
        yield number, wire, value


def _decode_message(data: bytes, spec: dict) -> dict:
    out: dict = {}
    for name, kind in spec.values():
        out[name] = [] if kind.endswith("*") else ("" if kind == "str" else b"" if kind == "bytes" else 0)
    for number, _wire, value in _fields(data):
        name, kind = spec[number]
        if kind == "str":
            out[name] = value.decode("utf-8")
        elif kind == "bytes":
            out[name] = bytes(value)
        elif kind == "bool":
            out[name] = bool(value)
        elif kind == "int64":
            out[name] = value - (1 << 64) if value >= 1 << 63 else value
        else:
            out[name] = value
    out["dictionary"] = bool(out.get("dictionary", False))
    return out


def _encode_message(message: dict, spec: dict) -> bytes:
    out = bytearray()
    for number, (name, kind) in sorted(spec.items()):
        v = message.get(name)
        if v in (None, "", b"", 0, False):
            continue  # proto3 leaves default values out
        if kind in ("str", "bytes"):
            raw = v.encode("utf-8") if kind == "str" else v
            out += _varint(number << 3 | 2) + _varint(len(raw)) + raw
        else:
            out += _varint(number << 3) + _varint(int(v))
    return bytes(out)


def decode_ticket(ticket: bytes) -> tuple[dict, bytes, bytes, bytes]:
    """(payload as a dict, payload bytes, mac, key id) of a ticket; checks the framing only."""
    assert ticket.startswith(MAGIC), ticket[:8]
    signed = {n: v for n, _w, v in _fields(ticket[len(MAGIC) :])}
    payload, mac, kid = signed[1], signed[2], signed[3]
    return _decode_message(payload, PAYLOAD_FIELDS), payload, mac, kid


def sign(secret: bytes, payload: bytes) -> bytes:
    """The MAC of a payload signed with (the keys derived from) `secret`."""
    return hmac.new(ticket_key(secret), MAGIC + key_id(secret) + payload, hashlib.sha256).digest()


def encode_ticket(payload: dict, secret: bytes) -> bytes:
    """Encodes and signs a payload dict the way the server does."""
    raw = _encode_message(payload, PAYLOAD_FIELDS)
    mac = sign(secret, raw)
    kid = key_id(secret)
    signed = (
        _varint(1 << 3 | 2) + _varint(len(raw)) + raw
        + _varint(2 << 3 | 2) + _varint(len(mac)) + mac
        + _varint(3 << 3 | 2) + _varint(len(kid)) + kid
    )
    return MAGIC + signed
