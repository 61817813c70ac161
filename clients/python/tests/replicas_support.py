"""Replicas behind the test bed's real gRPC load balancer, shared by the replica tests
(test_replicas.py, test_replicas_load.py): `replicas(...)` starts N redshift-flight servers sharing
one ticket secret and staging prefix behind one nginx (tests/testbed/balancer: round robin per
call, HTTP/2 on both sides); `Replicas` restarts one on its port, reads nginx's access log and
each replica's /metrics.

Imports: conftest (server start/stop, base configuration) and the standard library."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.flight as flight

from conftest import ROOT, FlightServer, _server_binary, base_config, start_server, stop_server

BALANCER = ROOT / "tests" / "testbed" / "balancer"
# One finished call in the balancer's access log (tests/testbed/balancer, log_format `calls`).
ACCESS_LINE = re.compile(
    r"^\S+ /\S+/(?P<rpc>\w+) status=(?P<status>\d+) grpc=(?P<grpc>\S*) upstream=(?P<upstream>\S+(?:, \S+)*)"
    r" t=(?P<end>[\d.]+) rt=(?P<seconds>[\d.]+) hgrpc=(?P<header_grpc>\S*)"
)


def server_knows(key: str) -> bool:
    """Whether the server binary has the configuration key `key` (each key is a flag of `serve`)."""
    text = subprocess.run([str(_server_binary()), "serve", "--help"], capture_output=True, text=True, timeout=60).stdout
    return f"--{key.replace('_', '-')}" in text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Call:
    """One call as nginx logged it when it finished: its replica(s), HTTP and gRPC status, and
    when it started and ended (epoch seconds, millisecond resolution)."""

    rpc: str
    status: int
    grpc: str  # grpc-status: of the trailers, else of the headers (a trailers-only answer)
    upstream: str
    started: float
    ended: float

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.grpc == "0"


@dataclass
class Replicas:
    servers: list[FlightServer]
    location: str
    access_log: Path
    workdir: Path = field(default_factory=Path)
    restarts: list[int] = field(default_factory=list)

    def client(self) -> flight.FlightClient:
        return flight.FlightClient(self.location)

    def upstreams(self, rpc: str) -> list[str]:
        """The replica (host:port) nginx sent each finished call of `rpc` to, in order."""
        text = self.access_log.read_text() if self.access_log.exists() else ""
        return re.findall(rf"/{rpc} .*upstream=(\S+)", text)

    def calls(self) -> list[Call]:
        """Every finished call in the access log, in the order they finished."""
        text = self.access_log.read_text() if self.access_log.exists() else ""
        calls = []
        for line in text.splitlines():
            m = ACCESS_LINE.match(line)
            assert m, f"unexpected access log line: {line!r}"
            ended = float(m["end"])
            grpc = m["grpc"] if m["grpc"] not in ("", "-") else m["header_grpc"]
            calls.append(Call(m["rpc"], int(m["status"]), grpc, m["upstream"], ended - float(m["seconds"]), ended))
        return calls

    def address(self, i: int) -> str:
        """Replica i's host:port, as nginx names it."""
        return self.servers[i].location.split("://", 1)[1]

    def restart(self, i: int, grace_deadline: float = 60.0) -> tuple[float, float]:
        """SIGTERM to replica i, waits for it to exit (it lets in-flight calls finish for up to
        shutdown_grace_seconds), then starts it again on the same port with the same
        configuration. Returns (when the signal was sent, when it exited), epoch seconds."""
        old = self.servers[i]
        signalled = time.time()
        old.process.send_signal(signal.SIGTERM)
        try:
            code = old.process.wait(timeout=grace_deadline)
        except subprocess.TimeoutExpired:
            old.process.kill()
            raise AssertionError(f"replica {i} did not exit within {grace_deadline}s of SIGTERM:\n{old.stderr_tail()}")
        exited = time.time()
        assert code == 0, f"replica {i} exited with status {code} after SIGTERM:\n{old.stderr_tail()}"
        self.restarts.append(i)
        self.servers[i] = start_server(old.config, self.workdir / f"replica-{i}.{len(self.restarts)}")
        assert self.servers[i].location == old.location, (self.servers[i].location, old.location)
        return signalled, exited

    def wait_in_rotation(self, i: int, since: float, deadline_s: float = 30.0) -> None:
        """Waits until nginx has sent a call to replica i that finished well after `since`
        (epoch seconds): the replica is back in the balancer's rotation."""
        address = self.address(i)
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if any(c.upstream == address and c.ok and c.started > since for c in self.calls()):
                return
            time.sleep(0.1)
        raise AssertionError(f"nginx sent no call to replica {i} ({address}) within {deadline_s}s of its restart")


@contextlib.contextmanager
def replicas(testbed: dict[str, str], workdir: Path, count: int = 3, advertise: bool = False, **overrides: str):
    """`count` servers sharing one ticket secret and staging prefix, behind one nginx; with
    `advertise`, every endpoint names all replicas (advertise_locations)."""
    config = base_config(testbed) | overrides
    listen = [f"127.0.0.1:{free_port()}" for _ in range(count)]
    if advertise:
        config["advertise_locations"] = ",".join(f"grpc://{address}" for address in listen)
    servers: list[FlightServer] = []
    port = free_port()
    try:
        for i in range(count):
            replica = dict(config, listen_address=listen[i], metrics_address=f"127.0.0.1:{free_port()}")
            servers.append(start_server(replica, workdir / f"replica-{i}"))
        ports = [s.location.rsplit(":", 1)[1] for s in servers]
        out = subprocess.run([str(BALANCER), "start", str(port), *ports], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, f"balancer: {out.stdout}\n{out.stderr}"
        assert f"balancer listening on 127.0.0.1:{port}" in out.stdout
        log = ROOT / "target" / "testbed" / f"balancer-{port}" / "access.log"
        yield Replicas(servers, f"grpc://127.0.0.1:{port}", log, workdir)
    finally:
        subprocess.run([str(BALANCER), "stop", str(port)], capture_output=True, timeout=60)
        for server in servers:
            stop_server(server)


def metrics(server: FlightServer) -> dict[str, float]:
    """The replica's /metrics (Prometheus text from its metrics_address) as {name{labels}: value}."""
    with urllib.request.urlopen(f"http://{server.config['metrics_address']}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                values[name] = float(value)
    return values


def rows_sent(server: FlightServer) -> float:
    """The replica's `rows_sent` counter (Prometheus text from its metrics_address)."""
    with urllib.request.urlopen(f"http://{server.config['metrics_address']}/metrics", timeout=5) as response:
        text = response.read().decode()
    match = re.search(r"^\w*rows_sent(?:_total)?\s+(\S+)$", text, re.M)
    assert match, text
    return float(match.group(1))


def kill(server: FlightServer) -> None:
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=10)


def boto_client(testbed):
    import boto3

    return boto3.client(
        "s3", endpoint_url=testbed["TESTBED_S3_ENDPOINT"], region_name=testbed["TESTBED_S3_REGION"],
        aws_access_key_id=testbed["AWS_ACCESS_KEY_ID"], aws_secret_access_key=testbed["AWS_SECRET_ACCESS_KEY"],
    )


def keys_under(testbed, prefix: str) -> list[str]:
    """Every object key in the test bed's bucket under `prefix`."""
    s3 = boto_client(testbed)
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=testbed["TESTBED_S3_BUCKET"], Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys
