"""Security with real clients: pyarrow over grpc+tls (server certificate, then mutual TLS), Basic
authentication through the Flight Handshake (pyarrow's authenticate_basic_token), table patterns
per user and per token, and the refusal to serve an unauthenticated non-loopback listener."""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
from pathlib import Path

import pyarrow.flight as flight
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from psycopg import sql

from conftest import _server_binary, base_config, start_server, stop_server
from support import path, raises_status, read_flight

PASSWORD = "correct horse battery staple"
ETL_TOKEN = "etl-token-0123456789abcdef"


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _cert(subject: str, key, issuer_key=None, issuer_name=None, ca=False, server=False):
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key or key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """A CA, a server certificate for localhost signed by it, and a client certificate."""
    d = tmp_path_factory.mktemp("pki")
    ca_key = _key()
    ca = _cert("redshift-flight test CA", ca_key, ca=True)
    server_key = _key()
    server = _cert("localhost", server_key, ca_key, ca.subject, server=True)
    client_key = _key()
    client = _cert("test client", client_key, ca_key, ca.subject)
    files = {
        "ca": ca.public_bytes(serialization.Encoding.PEM),
        "server_cert": server.public_bytes(serialization.Encoding.PEM),
        "server_key": _pem_key(server_key),
        "client_cert": client.public_bytes(serialization.Encoding.PEM),
        "client_key": _pem_key(client_key),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = d / f"{name}.pem"
        paths[name].write_bytes(data)
    return paths


@pytest.fixture
def table(pg, make_schema):
    schema = make_schema("sec")
    for t in ("open", "secret"):
        pg.execute(sql.SQL("CREATE TABLE {}.{} (id integer PRIMARY KEY)").format(sql.Identifier(schema), sql.Identifier(t)))
        pg.execute(sql.SQL("INSERT INTO {}.{} VALUES (1), (2), (3)").format(sql.Identifier(schema), sql.Identifier(t)))
    return schema


def _tls_location(server) -> str:
    return server.location.replace("grpc://127.0.0.1", "grpc+tls://localhost")


def test_pyarrow_reads_over_tls_and_plaintext_is_refused(testbed, tmp_path, pki, table):
    config = dict(base_config(testbed), tls_cert=str(pki["server_cert"]), tls_key=str(pki["server_key"]))
    server = start_server(config, tmp_path / "tls")
    try:
        client = flight.FlightClient(_tls_location(server), tls_root_certs=pki["ca"].read_bytes())
        info = client.get_flight_info(path(table, "open"))
        assert sorted(read_flight(client, info).column("id").to_pylist()) == [1, 2, 3]
        plain = flight.FlightClient(server.location)
        with pytest.raises(flight.FlightError):
            plain.get_flight_info(path(table, "open"), flight.FlightCallOptions(timeout=5))
        untrusting = flight.FlightClient(_tls_location(server))
        with pytest.raises(flight.FlightError):
            untrusting.get_flight_info(path(table, "open"), flight.FlightCallOptions(timeout=5))
    finally:
        assert stop_server(server) is None, server.stderr_tail()


def test_mutual_tls_requires_a_client_certificate(testbed, tmp_path, pki, table):
    config = dict(
        base_config(testbed),
        tls_cert=str(pki["server_cert"]),
        tls_key=str(pki["server_key"]),
        tls_client_ca=str(pki["ca"]),
    )
    server = start_server(config, tmp_path / "mtls")
    try:
        anonymous = flight.FlightClient(_tls_location(server), tls_root_certs=pki["ca"].read_bytes())
        with pytest.raises(flight.FlightError):
            anonymous.get_flight_info(path(table, "open"), flight.FlightCallOptions(timeout=5))
        client = flight.FlightClient(
            _tls_location(server),
            tls_root_certs=pki["ca"].read_bytes(),
            cert_chain=pki["client_cert"].read_bytes(),
            private_key=pki["client_key"].read_bytes(),
        )
        info = client.get_flight_info(path(table, "open"))
        assert sorted(read_flight(client, info).column("id").to_pylist()) == [1, 2, 3]
    finally:
        assert stop_server(server) is None, server.stderr_tail()


@pytest.fixture
def access_server(testbed, tmp_path, table):
    password_hash = subprocess.run(
        [str(_server_binary()), "hash-password"], input=PASSWORD + "\n", capture_output=True, text=True, check=True
    ).stdout.strip()
    access = tmp_path / "access.toml"
    access.write_text(
        f'[[users]]\nname = "alice"\npassword_hash = "{password_hash}"\ntables = ["{table}.open"]\n\n'
        f'[[tokens]]\nname = "etl"\ntoken = "{ETL_TOKEN}"\ntables = ["{table}.*"]\n'
    )
    config = dict(base_config(testbed), auth_file=str(access))
    server = start_server(config, tmp_path / "access")
    yield server, table
    assert stop_server(server) is None, server.stderr_tail()


def test_basic_handshake_issues_a_bearer_token_limited_to_the_users_tables(access_server):
    server, schema = access_server
    client = server.connect()
    with raises_status("UNAUTHENTICATED"):
        client.authenticate_basic_token("alice", "wrong password")
    with raises_status("UNAUTHENTICATED"):
        client.authenticate_basic_token("mallory", PASSWORD)
    header = client.authenticate_basic_token("alice", PASSWORD)
    assert header[0] == b"authorization" and header[1].startswith(b"Bearer rsfb2.")
    options = flight.FlightCallOptions(headers=[header])
    info = client.get_flight_info(path(schema, "open"), options)
    assert sorted(read_flight(client, info, options=options).column("id").to_pylist()) == [1, 2, 3]
    listed = [i.descriptor.path for i in client.list_flights(schema.encode(), options)]
    assert listed == [[schema.encode(), b"open"]], "only the tables alice may read are listed"
    with raises_status("PERMISSION_DENIED"):
        client.get_flight_info(path(schema, "secret"), options)
    # pyarrow's get_schema raises a plain OSError for PERMISSION_DENIED ("unauthorized error").
    with pytest.raises(OSError, match="unauthorized error, with message: alice may not read"):
        client.get_schema(path(schema, "secret"), options)
    with raises_status("PERMISSION_DENIED"):
        # Whether a table she may not read exists is not revealed.
        client.get_flight_info(path(schema, "no_such_table"), options)

    # A ticket for a table alice may not read, obtained by a token that may: DoGet re-checks.
    etl = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {ETL_TOKEN}".encode())])
    secret_info = client.get_flight_info(path(schema, "secret"), etl)
    with raises_status("PERMISSION_DENIED"):
        client.do_get(secret_info.endpoints[0].ticket, options).read_all()
    assert sorted(read_flight(client, secret_info, options=etl).column("id").to_pylist()) == [1, 2, 3]
    with raises_status("UNAUTHENTICATED"):
        client.get_flight_info(path(schema, "open"))
    with raises_status("UNAUTHENTICATED"):
        client.get_flight_info(path(schema, "open"), flight.FlightCallOptions(headers=[(b"authorization", header[1] + b"x")]))


def test_an_unauthenticated_server_refuses_a_non_loopback_address(testbed, tmp_path):
    config = dict(base_config(testbed), listen_address="0.0.0.0:0")
    config_path = tmp_path / "configuration.json"
    import json

    config_path.write_text(json.dumps(config))
    result = subprocess.run(
        [str(_server_binary()), "--config", str(config_path), "serve"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "refusing to listen on 0.0.0.0:0 without authentication" in result.stderr, result.stderr
    server = start_server(dict(config, insecure="true"), tmp_path / "insecure")
    try:
        assert "every client that reaches this address is accepted" in server.stderr_path.read_text()
    finally:
        assert stop_server(server) is None, server.stderr_tail()
