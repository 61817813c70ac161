"""Fixtures for the Python client tests: the test bed, PostgreSQL, and a redshift-flight server.

The suite runs against the real test bed (PostgreSQL behind the Redshift emulator, moto's S3):
`tests/run` sources target/testbed/env and sets REDSHIFT_FLIGHT_BIN. Run by hand with

    tests/testbed/up && cargo build --bin redshift-flight
    target/testbed/venv/bin/python -m pytest -q clients/python/tests

(the environment file is read when the variables are not set, and the binary defaults to
target/debug/redshift-flight).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import secrets
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pyarrow.flight as flight
import pytest
from psycopg import sql

from support import unique

ROOT = Path(__file__).resolve().parents[3]
ENV_FILE = ROOT / "target" / "testbed" / "env"
TESTBED_KEYS = (
    "TESTBED_PG_URL",
    "TESTBED_REDSHIFT_HOST",
    "TESTBED_REDSHIFT_PORT",
    "TESTBED_REDSHIFT_USER",
    "TESTBED_REDSHIFT_PASSWORD",
    "TESTBED_REDSHIFT_DATABASE",
    "TESTBED_S3_ENDPOINT",
    "TESTBED_S3_BUCKET",
    "TESTBED_S3_REGION",
    "TESTBED_IAM_ROLE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)
S3_PREFIX = "redshift-flight-pytests"
STARTUP_DEADLINE_S = 60.0
# A test that takes longer than this is hung: the watchdog kills the server, so that the blocked
# Flight call fails (UNAVAILABLE) instead of hanging the run. The slowest test takes seconds.
TEST_DEADLINE_S = 300.0
LISTENING = re.compile(r"^redshift-flight listening on (\S+):(\d+)\s*$")


def _parse_env_file(path: Path) -> dict[str, str]:
    """Reads `export KEY='value'` lines as the shell would (shlex handles the quoting)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line, comments=True)
        if words and words[0] == "export":
            words = words[1:]
        for word in words:
            key, sep, value = word.partition("=")
            if sep:
                values[key] = value
    return values


@pytest.fixture(scope="session")
def testbed() -> dict[str, str]:
    """The test bed's settings: from the environment, else from target/testbed/env."""
    if all(os.environ.get(k) for k in TESTBED_KEYS):
        return {k: os.environ[k] for k in TESTBED_KEYS}
    if not ENV_FILE.exists():
        pytest.fail(
            f"no test bed: set the TESTBED_* variables or run tests/testbed/up (writes {ENV_FILE})",
            pytrace=False,
        )
    values = _parse_env_file(ENV_FILE)
    missing = [k for k in TESTBED_KEYS if not values.get(k)]
    if missing:
        pytest.fail(f"{ENV_FILE} lacks {', '.join(missing)}", pytrace=False)
    return {k: values[k] for k in TESTBED_KEYS}


@pytest.fixture(scope="session")
def pg(testbed) -> psycopg.Connection:
    """An autocommit psycopg connection to the PostgreSQL behind the emulator (session zone UTC)."""
    with psycopg.connect(testbed["TESTBED_PG_URL"], autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        yield conn


@pytest.fixture(scope="session")
def pg_url(testbed) -> str:
    return testbed["TESTBED_PG_URL"]


@pytest.fixture
def make_schema(pg):
    """Creates uniquely named schemas (name = prefix + random suffix) and drops them afterwards."""
    created: list[str] = []

    def make(prefix: str = "pyt") -> str:
        name = unique(prefix)
        pg.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        created.append(name)
        return name

    yield make
    for name in created:
        pg.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@dataclass
class FlightServer:
    """A running redshift-flight process."""

    process: subprocess.Popen
    location: str
    config: dict[str, str]
    config_path: Path
    stderr_path: Path

    def stderr_tail(self, lines: int = 60) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError as e:
            return f"(cannot read {self.stderr_path}: {e})"
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            pytest.fail(
                f"redshift-flight exited with status {code}; its stderr ends with:\n{self.stderr_tail()}",
                pytrace=False,
            )

    def connect(self) -> flight.FlightClient:
        return flight.FlightClient(self.location)


def _server_binary() -> Path:
    path = Path(os.environ.get("REDSHIFT_FLIGHT_BIN") or ROOT / "target" / "debug" / "redshift-flight")
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"redshift-flight binary not found at {path}: run `cargo build --bin redshift-flight` "
            "or set REDSHIFT_FLIGHT_BIN",
            pytrace=False,
        )
    return path


def base_config(testbed: dict[str, str]) -> dict[str, str]:
    """The seed connector's configuration.json keys (as strings) plus the test bed's extras."""
    return {
        "redshift_host": testbed["TESTBED_REDSHIFT_HOST"],
        "redshift_port": testbed["TESTBED_REDSHIFT_PORT"],
        "redshift_database": testbed["TESTBED_REDSHIFT_DATABASE"],
        "redshift_user": testbed["TESTBED_REDSHIFT_USER"],
        "redshift_password": testbed["TESTBED_REDSHIFT_PASSWORD"],
        "redshift_schema": "public",
        "s3_bucket": testbed["TESTBED_S3_BUCKET"],
        "s3_region": testbed["TESTBED_S3_REGION"],
        "s3_prefix": S3_PREFIX,
        "iam_role": testbed["TESTBED_IAM_ROLE"],
        "aws_access_key_id": testbed["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": testbed["AWS_SECRET_ACCESS_KEY"],
        "auto_schema_detection": "true",
        "enable_complete_resync": "false",
        "max_parallel_workers": "4",
        "s3_endpoint": testbed["TESTBED_S3_ENDPOINT"],
        "listen_address": "127.0.0.1:0",
        "ticket_secret": secrets.token_hex(32),
    }


def start_server(config: dict[str, str], workdir: Path, env: dict[str, str | None] | None = None) -> FlightServer:
    """Writes `config` to workdir/configuration.json, starts `redshift-flight serve` and waits,
    with a deadline, for the line that names the port it listens on. `env`: variables to set
    (None: to remove) in the server's environment, such as AWS_PROFILE or AWS_ENDPOINT_URL_STS."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "configuration.json"
    config_path.write_text(json.dumps(config, indent=2))
    config_path.chmod(0o600)
    stderr_path = workdir / "redshift-flight.stderr.log"
    overrides, env = env, dict(os.environ)
    env.setdefault("REDSHIFT_FLIGHT_LOG", "info")
    # Configuration comes from the file only: a stray REDSHIFT_FLIGHT_* variable must not win.
    for key in list(env):
        if key.startswith("REDSHIFT_FLIGHT_") and key != "REDSHIFT_FLIGHT_LOG":
            del env[key]
    env = _with_overrides(env, overrides)
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            [str(_server_binary()), "--config", str(config_path), "serve"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            text=True,
            bufsize=1,
        )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, name="redshift-flight-stdout", daemon=True).start()
    server = FlightServer(process, "", config, config_path, stderr_path)
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            stop_server(server)
            pytest.fail(
                f"redshift-flight did not print its listening line within {STARTUP_DEADLINE_S}s; "
                f"stderr:\n{server.stderr_tail()}",
                pytrace=False,
            )
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            continue
        if line is None:
            process.wait(timeout=10)
            pytest.fail(
                f"redshift-flight exited with status {process.returncode} before listening; "
                f"stderr:\n{server.stderr_tail()}",
                pytrace=False,
            )
        match = LISTENING.match(line)
        if match:
            server.location = f"grpc://{match.group(1)}:{match.group(2)}"
            return server


def _with_overrides(env: dict[str, str], overrides: dict[str, str | None] | None) -> dict[str, str]:
    """`env` with `overrides` applied: a value replaces, None removes."""
    for key, value in (overrides or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def emulator_binary() -> Path:
    binary = Path(os.environ.get("REDSHIFT_EMULATOR_BIN") or ROOT / "target" / "debug" / "redshift-emulator")
    if not binary.is_file():
        pytest.fail(f"redshift-emulator not found at {binary} (tests/testbed/up builds it)", pytrace=False)
    return binary


@contextlib.contextmanager
def own_emulator(testbed: dict[str, str], workdir: Path, *flags: str):
    """A Redshift emulator of the test's own in front of the test bed's PostgreSQL and S3, started
    with extra `flags` (fault knobs such as --unload-delay-ms); yields the test bed's settings
    pointing at it (TESTBED_REDSHIFT_PORT), for `base_config`. Stopped on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = open(workdir / "emulator.log", "wb")
    env = dict(os.environ, AWS_ACCESS_KEY_ID=testbed["AWS_ACCESS_KEY_ID"], AWS_SECRET_ACCESS_KEY=testbed["AWS_SECRET_ACCESS_KEY"])
    emulator = subprocess.Popen(
        [
            str(emulator_binary()), "--listen", "127.0.0.1:0", "--pg-url", testbed["TESTBED_PG_URL"],
            "--user", testbed["TESTBED_REDSHIFT_USER"], "--password", testbed["TESTBED_REDSHIFT_PASSWORD"],
            "--database", testbed["TESTBED_REDSHIFT_DATABASE"], "--s3-endpoint", testbed["TESTBED_S3_ENDPOINT"],
            "--s3-region", testbed["TESTBED_S3_REGION"], *flags,
        ],
        stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True, env=env,
    )
    try:
        port = None
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        while port is None and time.monotonic() < deadline:
            line = emulator.stdout.readline()
            if not line:
                break
            if line.startswith("redshift-emulator listening on "):
                port = line.rsplit(":", 1)[1].strip()
        # Keep draining stdout so the emulator can never block on a full pipe.
        threading.Thread(target=emulator.stdout.read, daemon=True).start()
        if port is None:
            pytest.fail(f"the emulator did not start: {(workdir / 'emulator.log').read_text()[-2000:]}", pytrace=False)
        yield dict(testbed, TESTBED_REDSHIFT_PORT=port)
    finally:
        emulator.terminate()
        emulator.wait(timeout=15)
        log.close()


def stop_server(server: FlightServer) -> int | None:
    """SIGTERM, then SIGKILL after a grace period. Returns the status if it had died before."""
    died_before = server.process.poll()
    if died_before is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)
    return died_before


@pytest.fixture(scope="session")
def flight_server(testbed, tmp_path_factory) -> FlightServer:
    """One redshift-flight server for the session (no authentication)."""
    server = start_server(base_config(testbed), tmp_path_factory.mktemp("redshift-flight"))
    yield server
    died = stop_server(server)
    if died is not None:
        pytest.fail(
            f"redshift-flight died during the session (status {died}); stderr:\n{server.stderr_tail()}",
            pytrace=False,
        )


@pytest.fixture
def client(flight_server) -> flight.FlightClient:
    """A Flight client of the session server; fails the test if the server died during it, and
    kills the server if the test hangs (see TEST_DEADLINE_S)."""
    flight_server.check_alive()
    watchdog = threading.Timer(TEST_DEADLINE_S, flight_server.process.kill)
    watchdog.daemon = True
    watchdog.start()
    conn = flight_server.connect()
    try:
        yield conn
    finally:
        watchdog.cancel()
        conn.close()
    flight_server.check_alive()
