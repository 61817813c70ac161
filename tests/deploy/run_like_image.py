"""Runs the server binary the way the container image and deploy/kubernetes run it, and checks
what they rely on. Run by tests/deploy/check as `run_like_image.py BINARY` with the tools venv's
Python; there is no Docker engine here, so this is the image's behaviour without the image.

The environment is the Dockerfile's runtime ENV, the ConfigMap's data and the Secret's keys, and
nothing else (no configuration file); as root the binary runs as the image's user (65532) in a
folder it cannot write. Only the addresses change: free ports for the two listeners (still on
0.0.0.0), and the test bed in place of AWS (start-up logs in to Redshift and lists the bucket):
the emulator's GetClusterCredentials for the ConfigMap's IAM login, moto for S3, the test bed's
keys in the environment in place of IRSA's web identity.
 1. With the Secret as committed, the server refuses to start, names ticket_secret, and prints
    no secret value.
 2. With generated secrets, it starts; the gRPC health service on the Flight port answers
    SERVING for "" (the liveness probe) and for the Flight service (the readiness probe); a
    Flight call without the bearer token, or with a wrong one, is UNAUTHENTICATED, and with the
    Secret's token it lists the tables (logged in to Redshift with IAM); /metrics answers.
 3. SIGTERM: it exits 0 within shutdown_grace_seconds.

May import: the standard library, PyYAML, grpcio and grpcio-health-checking.
"""

import base64
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
IMAGE_UID = 65532
FLIGHT_SERVICE = "arrow.flight.protocol.FlightService"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def manifests():
    docs = {}
    for name in ("configmap.yaml", "secret.yaml", "deployment.yaml"):
        with open(os.path.join(ROOT, "deploy", "kubernetes", name), encoding="utf-8") as f:
            doc = yaml.safe_load(f)
            docs[doc["kind"]] = doc
    return docs


def image_env():
    """The runtime stage's ENV of the Dockerfile."""
    with open(os.path.join(ROOT, "Dockerfile"), encoding="utf-8") as f:
        text = re.sub(r"\\\n", " ", f.read())
    runtime = text.split("\nFROM ")[-1]
    env = {}
    for line in runtime.splitlines():
        if line.startswith("ENV "):
            for item in line[4:].split():
                key, _, value = item.partition("=")
                env[key] = value
    return env


def testbed():
    """The test bed's settings (target/testbed/env, written by tests/testbed/up)."""
    found = {}
    with open(os.path.join(ROOT, "target", "testbed", "env"), encoding="utf-8") as f:
        for line in f:
            m = re.match(r"export (\w+)='(.*)'$", line.strip())
            if m:
                found[m.group(1)] = m.group(2)
    return found


def environment(docs, secret_values, bed):
    """The pod's environment, with the test bed in place of AWS: the same login mode (iam, through
    the emulator's GetClusterCredentials) and keys in the environment in place of IRSA's."""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_CONFIG_FILE": "/nonexistent/config", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials"}
    env.update(image_env())
    env.update(docs["ConfigMap"]["data"])
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    for e in container.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        env[e["name"]] = secret_values[ref["key"]] if ref else e["value"]
    grpc_port, metrics_port = free_port(), free_port()
    env.update({
        "REDSHIFT_FLIGHT_LISTEN_ADDRESS": f"0.0.0.0:{grpc_port}",
        "REDSHIFT_FLIGHT_METRICS_ADDRESS": f"0.0.0.0:{metrics_port}",
        "REDSHIFT_FLIGHT_REDSHIFT_HOST": bed["TESTBED_REDSHIFT_HOST"],
        "REDSHIFT_FLIGHT_REDSHIFT_PORT": bed["TESTBED_REDSHIFT_PORT"],
        "REDSHIFT_FLIGHT_REDSHIFT_DATABASE": bed["TESTBED_REDSHIFT_DATABASE"],
        "REDSHIFT_FLIGHT_REDSHIFT_CLUSTER_ID": bed["TESTBED_REDSHIFT_CLUSTER_ID"],
        "REDSHIFT_FLIGHT_REDSHIFT_USER": bed["TESTBED_REDSHIFT_USER"],
        "REDSHIFT_FLIGHT_S3_BUCKET": bed["TESTBED_S3_BUCKET"],
        "REDSHIFT_FLIGHT_S3_REGION": bed["TESTBED_S3_REGION"],
        "REDSHIFT_FLIGHT_S3_ENDPOINT": bed["TESTBED_S3_ENDPOINT"],
        "REDSHIFT_FLIGHT_S3_PREFIX": f"deploy-check-{secrets.token_hex(4)}",
        "REDSHIFT_FLIGHT_IAM_ROLE": bed["TESTBED_IAM_ROLE"],
        "AWS_ENDPOINT_URL_REDSHIFT": bed["TESTBED_REDSHIFT_API_URL"],
        "AWS_ACCESS_KEY_ID": bed["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": bed["AWS_SECRET_ACCESS_KEY"],
        "AWS_REGION": bed["AWS_REGION"],
    })
    return env, grpc_port, metrics_port


class Server:
    """The binary started with `env` in `workdir`; its output goes to a file (a pipe nobody
    reads could fill and stall it)."""

    def __init__(self, binary, env, workdir):
        command = [binary, "serve"]
        if os.geteuid() == 0:
            command = ["setpriv", f"--reuid={IMAGE_UID}", f"--regid={IMAGE_UID}", "--clear-groups"] + command
        self.log = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(command, env=env, cwd=workdir, stdin=subprocess.DEVNULL,
                                        stdout=self.log, stderr=subprocess.STDOUT)

    def wait(self, seconds):
        """Exit code, or None if still running after `seconds`."""
        try:
            return self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return None

    def output(self):
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def wait_port(port, server, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def refuses_placeholders(binary, docs, committed, bed, workdir, failures):
    """1. The committed Secret: refused, named, not shown."""
    env, _, _ = environment(docs, committed, bed)
    server = Server(binary, env, workdir)
    code = server.wait(30)
    server.stop()
    out = server.output()
    if code is None:
        failures.append("with the committed Secret the server started (placeholders must be refused)")
    elif code == 0 or "ticket_secret" not in out:
        failures.append(f"with the committed Secret: exit {code}, output: {out.strip()[-400:]}")
    else:
        print("ok   the committed placeholder Secret is refused, naming ticket_secret")
    if any(v in out for v in committed.values() if v):
        failures.append("the server printed a secret value")


def probe(channel, token, failures):
    """The kubelet's probes, and a Flight call without, with a wrong and with the Secret's
    bearer token (listing the tables logs in to Redshift with IAM credentials)."""
    health = health_pb2_grpc.HealthStub(channel)
    for service, kind in (("", "liveness"), (FLIGHT_SERVICE, "readiness")):
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
        name = service or '""'
        if status == health_pb2.HealthCheckResponse.SERVING:
            print(f"ok   grpc.health.v1.Health/Check {name}: SERVING ({kind} probe)")
        else:
            failures.append(f"health of {name}: {status}")
    list_flights = channel.unary_stream(f"/{FLIGHT_SERVICE}/ListFlights",
                                        request_serializer=lambda b: b,
                                        response_deserializer=lambda b: b)
    for metadata, what in ((None, "without a token"),
                           ([("authorization", "Bearer wrong")], "with a wrong token")):
        try:
            list(list_flights(b"", metadata=metadata, timeout=10))
            failures.append(f"ListFlights {what} was served")
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.UNAUTHENTICATED:
                print(f"ok   ListFlights {what}: UNAUTHENTICATED")
            else:
                failures.append(f"ListFlights {what}: {e.code()}, not UNAUTHENTICATED")
    try:
        flights = list(list_flights(b"", metadata=[("authorization", f"Bearer {token}")], timeout=30))
        print(f"ok   ListFlights with the Secret's token: {len(flights)} tables (IAM login to Redshift)")
    except grpc.RpcError as e:
        failures.append(f"ListFlights with the Secret's token: {e.code()}: {e.details()}")


def serves_and_stops(binary, docs, committed, bed, workdir, failures):
    """2. and 3.: serving with generated secrets, then SIGTERM."""
    values = dict(committed, ticket_secret=secrets.token_hex(32), auth_tokens=secrets.token_hex(24))
    env, grpc_port, metrics_port = environment(docs, values, bed)
    server = Server(binary, env, workdir)
    try:
        if not wait_port(grpc_port, server, 30):
            server.stop()
            failures.append(f"the server did not listen: {server.output().strip()[-600:]}")
            return
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            probe(channel, values["auth_tokens"], failures)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
            body = r.read().decode()
            if r.status == 200 and "# EOF" in body:
                print(f"ok   /metrics on the metrics port ({len(body.splitlines())} lines)")
            else:
                failures.append(f"/metrics: HTTP {r.status}")
        grace = int(env.get("REDSHIFT_FLIGHT_SHUTDOWN_GRACE_SECONDS", "30"))
        began = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = server.wait(grace + 5)
        if code is None:
            failures.append(f"SIGTERM: still running after {grace + 5} s")
        elif code != 0:
            failures.append(f"SIGTERM: exit {code}: {server.output().strip()[-400:]}")
        else:
            took = time.monotonic() - began
            print(f"ok   SIGTERM: exit 0 after {took:.1f} s (shutdown_grace_seconds {grace})")
    finally:
        server.stop()
    out = server.output()
    if any(v in out for v in (values["ticket_secret"], values["auth_tokens"], env["AWS_SECRET_ACCESS_KEY"])):
        failures.append("the server printed a secret value")


def main():
    binary = sys.argv[1]
    failures = []
    docs = manifests()
    bed = testbed()
    committed = {k: base64.b64decode(v or "").decode() for k, v in docs["Secret"]["data"].items()}
    workdir = tempfile.mkdtemp(prefix="rsf-image-")
    os.chmod(workdir, 0o755)
    try:
        # The image's user must be able to run it: a copy outside the checkout.
        copy = os.path.join(workdir, "redshift-flight")
        shutil.copy2(binary, copy)
        os.chmod(copy, 0o755)
        user = f"uid {IMAGE_UID}" if os.geteuid() == 0 else f"uid {os.geteuid()} (not root: no setpriv)"
        print(f"run-like-image: {binary} as {user}, environment only, cwd not writable")
        refuses_placeholders(copy, docs, committed, bed, workdir, failures)
        serves_and_stops(copy, docs, committed, bed, workdir, failures)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return report(failures)


def report(failures):
    for f in failures:
        print(f"FAIL {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
