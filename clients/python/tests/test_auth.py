"""Bearer-token authentication: a server with auth_tokens accepts `authorization: Bearer <token>`
on every RPC and answers UNAUTHENTICATED without it."""

from __future__ import annotations

import pyarrow.flight as flight
import pytest
from psycopg import sql

from conftest import base_config, start_server, stop_server
from support import path, raises_status, read_flight

TOKENS = ("token-one", "token-two")


def bearer(token: str) -> flight.FlightCallOptions:
    return flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])


@pytest.fixture(scope="module")
def auth_server(testbed, tmp_path_factory):
    config = base_config(testbed)
    config["auth_tokens"] = ",".join(TOKENS)
    server = start_server(config, tmp_path_factory.mktemp("auth-server"))
    yield server
    died = stop_server(server)
    assert died is None, f"the auth server died (status {died}):\n{server.stderr_tail()}"


@pytest.fixture
def small_table(pg, make_schema):
    schema = make_schema("auth")
    pg.execute(sql.SQL("CREATE TABLE {}.t (id integer PRIMARY KEY)").format(sql.Identifier(schema)))
    pg.execute(sql.SQL("INSERT INTO {}.t VALUES (1), (2), (3)").format(sql.Identifier(schema)))
    return schema


def test_requests_without_a_token_are_unauthenticated(auth_server, small_table):
    client = auth_server.connect()
    with raises_status("UNAUTHENTICATED"):
        list(client.list_flights(small_table.encode()))
    with raises_status("UNAUTHENTICATED"):
        client.get_flight_info(path(small_table, "t"))
    # pyarrow's get_schema raises a plain OSError for Flight-specific codes (it converts the status
    # with check_status, not check_flight_status); the code text is in the message all the same.
    with pytest.raises(OSError, match="Flight returned unauthenticated error"):
        client.get_schema(path(small_table, "t"))
    with raises_status("UNAUTHENTICATED"):
        list(client.list_actions())


@pytest.mark.parametrize(
    "header",
    [b"Bearer wrong", b"Bearer ", b"token-one", b"Basic dG9rZW4tb25lOg==", b"Bearer token-one-and-more"],
)
def test_wrong_credentials_are_unauthenticated(auth_server, small_table, header):
    client = auth_server.connect()
    options = flight.FlightCallOptions(headers=[(b"authorization", header)])
    with raises_status("UNAUTHENTICATED", match="invalid credentials"):
        client.get_flight_info(path(small_table, "t"), options)


def test_every_token_is_accepted_on_every_rpc(auth_server, small_table):
    client = auth_server.connect()
    for token in TOKENS:
        options = bearer(token)
        assert {i.descriptor.path[1] for i in client.list_flights(small_table.encode(), options)} == {b"t"}
        info = client.get_flight_info(path(small_table, "t"), options)
        assert client.get_schema(path(small_table, "t"), options).schema.equals(info.schema)
        assert sorted(read_flight(client, info, options=options).column("id").to_pylist()) == [1, 2, 3]


def test_do_get_needs_the_token_too(auth_server, small_table):
    client = auth_server.connect()
    info = client.get_flight_info(path(small_table, "t"), bearer(TOKENS[0]))
    ticket = list(info.endpoints)[0].ticket
    with raises_status("UNAUTHENTICATED"):
        client.do_get(ticket).read_all()
    with raises_status("UNAUTHENTICATED"):
        client.do_get(ticket, flight.FlightCallOptions(headers=[(b"authorization", b"Bearer nope")])).read_all()
    assert client.do_get(ticket, bearer(TOKENS[1])).read_all().num_rows == 3
