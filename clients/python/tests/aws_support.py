"""Helpers of the AWS credential tests (test_aws_credentials.py, test_redshift_login.py): a server
environment with nothing of the machine's AWS set-up in it, a moto server of the test's own that
enforces IAM (users, roles, trust policies with an external id), a table compared row by row with
PostgreSQL, the emulator's `stl_connection_log`, and `redshift-flight check`.

Imports conftest (server and emulator start-up) and support (reading a flight) only."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import psycopg
import pyarrow as pa
from psycopg import sql

from conftest import STARTUP_DEADLINE_S, _server_binary, _with_overrides, start_server, stop_server
from support import path, read_flight

ACCOUNT = "123456789012"  # moto's default account
IAM_BUCKET = "rsf-iam-bucket"
IAM_PREFIX = "rsf-iam-tests"
REGION = "us-east-1"


def aws_env(home: Path, **extra: str | None) -> dict[str, str | None]:
    """Environment overrides for a server that must find its AWS credentials only where the test
    puts them: every AWS_* variable of the test's own environment removed, profile files pointed
    at `home` (absent unless the test writes them), instance metadata off, then `extra`."""
    for name in ("config", "credentials"):
        (home / name).touch()  # empty unless the test writes them (the SDK warns about missing ones)
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("AWS_")}
    env.update(
        AWS_CONFIG_FILE=str(home / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        HOME=str(home),
    )
    env.update(extra)
    return env


@contextlib.contextmanager
def running(config: dict[str, str], workdir: Path, env: dict[str, str | None] | None = None):
    """A redshift-flight server for the block; fails if it died during it."""
    server = start_server(config, workdir, env)
    try:
        yield server
    finally:
        died = stop_server(server)
        assert died is None, f"redshift-flight died (status {died}):\n{server.stderr_tail()}"


def run_command(config: dict[str, str], workdir: Path, env: dict[str, str | None], *args: str,
                timeout: float = 120) -> subprocess.CompletedProcess:
    """`redshift-flight --config <config> <args>` with the same environment rules as a server."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "configuration.json"
    config_path.write_text(json.dumps(config, indent=2))
    config_path.chmod(0o600)
    base = {k: v for k, v in os.environ.items() if not k.startswith("REDSHIFT_FLIGHT_") or k == "REDSHIFT_FLIGHT_LOG"}
    base.setdefault("REDSHIFT_FLIGHT_LOG", "info")
    return subprocess.run(
        [str(_server_binary()), "--config", str(config_path), *args],
        env=_with_overrides(base, env), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
    )


def start_failure(config: dict[str, str], workdir: Path, env: dict[str, str | None]) -> str | None:
    """The stderr of a server that exits before it listens; None if it starts (then stopped)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "configuration.json"
    config_path.write_text(json.dumps(config, indent=2))
    base = {k: v for k, v in os.environ.items() if not k.startswith("REDSHIFT_FLIGHT_") or k == "REDSHIFT_FLIGHT_LOG"}
    process = subprocess.Popen(
        [str(_server_binary()), "--config", str(config_path), "serve"],
        env=_with_overrides(base, env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            process.wait(timeout=10)
            return process.stderr.read()
        if line.startswith("redshift-flight listening on "):
            process.terminate()
            process.wait(timeout=15)
            return None
    process.kill()
    raise AssertionError("the server neither listened nor exited")


# --------------------------------------------------------------------------------------------------
# Data: one table of several types, compared value by value with PostgreSQL


def make_table(pg: psycopg.Connection, schema: str, name: str = "t", rows: int = 3000) -> str:
    """Creates `schema.name` with `rows` rows of mixed types (some NULLs); returns the name."""
    pg.execute(sql.SQL(
        "CREATE TABLE {}.{} (id integer PRIMARY KEY, big bigint, amount numeric(12,2), ratio double precision,"
        " name varchar(40), flag boolean, day date, created timestamp, seen timestamptz)"
    ).format(sql.Identifier(schema), sql.Identifier(name)))
    pg.execute(sql.SQL(
        "INSERT INTO {}.{} SELECT i, i::bigint * 1000003, (i * 7 %% 100000) / 100.0, i / 7.0,"
        " CASE WHEN i %% 11 = 0 THEN NULL ELSE 'name ' || i || ' ü' END, i %% 2 = 0,"
        " date '2024-01-01' + i %% 400, timestamp '2024-01-01 00:00:00' + i * interval '1 minute 1.000001 second',"
        " CASE WHEN i %% 13 = 0 THEN NULL ELSE timestamptz '2024-06-01 12:00:00+00' + i * interval '1 hour' END"
        " FROM generate_series(1, %s) AS i"
    ).format(sql.Identifier(schema), sql.Identifier(name)), (rows,))
    return name


def read_table(client, schema: str, name: str) -> pa.Table:
    """The whole table through GetFlightInfo and every DoGet."""
    info = client.get_flight_info(path(schema, name))
    table = read_flight(client, info)
    assert table.num_rows == info.total_records
    return table


def assert_same_as_postgres(pg: psycopg.Connection, schema: str, name: str, table: pa.Table) -> None:
    """Every row and column of `table` equals PostgreSQL's (rows matched by id)."""
    cur = pg.execute(sql.SQL("SELECT * FROM {}.{} ORDER BY id").format(sql.Identifier(schema), sql.Identifier(name)))
    columns = [d.name for d in cur.description]
    expected = [dict(zip(columns, row)) for row in cur.fetchall()]
    assert table.column_names == columns
    got = sorted(table.to_pylist(), key=lambda r: r["id"])
    assert len(got) == len(expected) and len(got) > 0
    for want, have in zip(expected, got):
        assert have == want, (want, have)


# --------------------------------------------------------------------------------------------------
# The emulator's login log


def connection_log(testbed: dict[str, str], since=None) -> list[dict]:
    """`stl_connection_log` rows as dicts (read through the emulator of `testbed` as its master user)."""
    with psycopg.connect(
        host=testbed["TESTBED_REDSHIFT_HOST"], port=int(testbed["TESTBED_REDSHIFT_PORT"]),
        user=testbed["TESTBED_REDSHIFT_USER"], password=testbed["TESTBED_REDSHIFT_PASSWORD"],
        dbname=testbed["TESTBED_REDSHIFT_DATABASE"], autocommit=True,
    ) as conn:
        cur = conn.execute("SELECT * FROM stl_connection_log ORDER BY recordtime")
        columns = [d.name for d in cur.description]
        rows = [dict(zip(columns, row)) for row in cur.fetchall()]
    return [r for r in rows if since is None or r["recordtime"] >= since]


def emulator_sql(testbed: dict[str, str], statement: str) -> None:
    """Runs one statement on the emulator of `testbed` as its master user."""
    with psycopg.connect(
        host=testbed["TESTBED_REDSHIFT_HOST"], port=int(testbed["TESTBED_REDSHIFT_PORT"]),
        user=testbed["TESTBED_REDSHIFT_USER"], password=testbed["TESTBED_REDSHIFT_PASSWORD"],
        dbname=testbed["TESTBED_REDSHIFT_DATABASE"], autocommit=True,
    ) as conn:
        conn.execute(statement)


# --------------------------------------------------------------------------------------------------
# A moto server of the test's own that enforces IAM


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(actions: list[str], resources: list[str]) -> dict:
    return {"Effect": "Allow", "Action": actions, "Resource": resources}


def server_policy(delete: bool = True) -> str:
    """What the server needs on the bucket: read, write and delete its prefix's objects, and list
    the bucket. moto checks a bulk DeleteObjects (object_store's delete_stream) against the bucket
    ARN rather than each key as AWS does, so s3:DeleteObject is also granted on the bucket here
    (meaningless on AWS, where the README's policy names the prefix only)."""
    objects = ["s3:GetObject", "s3:PutObject"] + (["s3:DeleteObject"] if delete else [])
    statements = [
        allow(objects, [f"arn:aws:s3:::{IAM_BUCKET}/{IAM_PREFIX}/*"]),
        allow(["s3:ListBucket"], [f"arn:aws:s3:::{IAM_BUCKET}"]),
    ]
    if delete:
        statements.append(allow(["s3:DeleteObject"], [f"arn:aws:s3:::{IAM_BUCKET}"]))
    return policy(*statements)


@dataclass
class Keys:
    access_key_id: str
    secret_access_key: str
    arn: str


@dataclass
class IamMoto:
    """moto_server on a port of its own. Set-up runs unauthenticated; `enforce()` then turns on
    moto's IAM checks (POST /moto-api/reset-auth with 0: every later request is signature-checked
    and authorised against the caller's policies, sts:AssumeRole also against the role's trust
    policy and its sts:ExternalId condition)."""

    url: str
    process: subprocess.Popen
    users: dict[str, Keys] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)

    def client(self, service: str, keys: Keys | None = None):
        key, secret = (keys.access_key_id, keys.secret_access_key) if keys else ("setup", "setup")
        return boto3.client(service, endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id=key, aws_secret_access_key=secret)

    def add_user(self, name: str, permissions: str) -> Keys:
        iam = self.client("iam")
        arn = iam.create_user(UserName=name)["User"]["Arn"]
        iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=permissions)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        self.users[name] = Keys(key["AccessKeyId"], key["SecretAccessKey"], arn)
        return self.users[name]

    def add_role(self, name: str, trusted: str, permissions: str, external_id: str | None = None) -> str:
        statement = {"Effect": "Allow", "Principal": {"AWS": trusted}, "Action": "sts:AssumeRole"}
        if external_id is not None:
            statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
        iam = self.client("iam")
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=policy(statement))["Role"]["Arn"]
        iam.put_role_policy(RoleName=name, PolicyName=f"{name}-policy", PolicyDocument=permissions)
        self.roles[name] = arn
        return arn

    def enforce(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset-auth", data=b"0", method="POST",
                                         headers={"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200


@contextlib.contextmanager
def iam_moto(workdir: Path):
    """An IamMoto for the block (stopped afterwards)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    moto = Path(sys.executable).with_name("moto_server")
    log = open(workdir / "moto.log", "wb")
    process = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        while True:
            try:
                with urllib.request.urlopen(url + "/", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert process.poll() is None, (workdir / "moto.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "moto_server did not start"
            time.sleep(0.2)
        yield IamMoto(url, process)
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()


@contextlib.contextmanager
def api_emulator(testbed: dict[str, str], workdir: Path, *flags: str):
    """An emulator of the test's own that also serves the AWS API double (Redshift
    GetClusterCredentials[WithIAM], Serverless GetCredentials); yields (testbed settings pointing
    at it, the API's URL for AWS_ENDPOINT_URL_REDSHIFT[_SERVERLESS])."""
    from conftest import own_emulator

    port = free_port()
    with own_emulator(testbed, workdir, "--aws-api-listen", f"127.0.0.1:{port}", *flags) as emulator:
        yield emulator, f"http://127.0.0.1:{port}"


def assert_no_secret(texts: dict[str, str], secrets: list[str]) -> None:
    """None of `secrets` (nor a long part of one) occurs in any of `texts` (name -> text)."""
    for secret in secrets:
        assert len(secret) >= 8, secret
        probes = {secret, secret[: len(secret) // 2 + 4], secret[len(secret) // 2 - 4 :]}
        for name, text in texts.items():
            for probe in probes:
                assert probe not in text, f"a secret ({len(secret)} characters) appears in {name}"
