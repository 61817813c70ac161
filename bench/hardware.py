"""The hardware side of the benchmark suite (issue 16): measuring DoGet against the machine, not moto.

- `FastS3`: an S3 server that is not the bottleneck, `testbed-fast-s3` (`tests/testbed/fast-s3`: s3s-fs 0.14.1, a
  Rust server over a directory that answers a ranged GET by seeking in the file, with GetObject reading 1 MiB at
  a time instead of 4 KiB), started by the suite on a free port over a directory of its own (or the test bed's,
  when `tests/testbed/up` ran with TESTBED_S3=fast). moto, one Python process that copies the whole object for
  every ranged GET, bounded every S3 figure before.
- `features()`: checks that the S3 server does what redshift-flight needs (ranged GET, ListObjectsV2,
  DeleteObjects, multipart upload, conditional PUT with If-None-Match / If-Match for the cluster claims).
- `RefFlight`: pyarrow's reference Flight server (`bench/ref_flight_server.py`) over the staged files copied to
  local disk, in a process of its own, read by the same client code as redshift-flight.
- `plan_calls()`: planning overhead (GetFlightInfo minus its UNLOAD) on a large table, catalog cached.

Used by `bench/suite.py`; imports `benchlib` only.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.flight as flight

import benchlib as b
from benchlib import ROOT, log

FAST_S3_TOOL = ROOT / "tests/testbed/fast-s3"
REF_SERVER = Path(__file__).resolve().parent / "ref_flight_server.py"


class FastS3:
    """testbed-fast-s3 on a free port over `root`, with the test bed's credentials and bucket."""

    def __init__(self, workdir: Path, root: Path | None = None):
        self.workdir = workdir
        self.root = root or workdir / "s3fs"
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.binary: str | None = None

    @staticmethod
    def install() -> str:
        done = subprocess.run([str(FAST_S3_TOOL), "install"], stdout=subprocess.PIPE, text=True)
        if done.returncode != 0:
            sys.exit("could not build the fast S3: tests/testbed/fast-s3 install")
        return done.stdout.strip()

    def start(self) -> None:
        self.binary = self.install()
        self.root.mkdir(parents=True, exist_ok=True)
        out_path, log_path = self.workdir / "fast-s3.stdout", self.workdir / "fast-s3.log"
        with open(out_path, "wb") as out, open(log_path, "wb") as err:
            self.proc = subprocess.Popen(
                [self.binary, "--host", "127.0.0.1", "--port", "0",
                 "--access-key", b.env("AWS_ACCESS_KEY_ID"), "--secret-key", b.env("AWS_SECRET_ACCESS_KEY"),
                 str(self.root)], stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        m = b._wait_for_line(self.proc, out_path, log_path, re.compile(r"listening on http://127\.0\.0\.1:(\d+)"),
                             "the fast S3", timeout=30)
        self.port = int(m.group(1))
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.endpoint, region_name=b.env("TESTBED_S3_REGION"),
                          aws_access_key_id=b.env("AWS_ACCESS_KEY_ID"),
                          aws_secret_access_key=b.env("AWS_SECRET_ACCESS_KEY"))
        deadline = time.monotonic() + 30
        while True:
            try:
                s3.list_buckets()
                break
            except Exception:  # noqa: BLE001 - not listening yet
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"the fast S3 does not answer: {log_path.read_text(errors='replace')[-2000:]}")
                time.sleep(0.05)
        s3.create_bucket(Bucket=b.env("TESTBED_S3_BUCKET"))
        log(f"fast S3: {self.binary}, pid {self.proc.pid}, {self.endpoint}, over {self.root}")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> None:
        b.stop_process(self.proc)
        shutil.rmtree(self.root, ignore_errors=True)


def s3_server_pid(endpoint: str) -> tuple[int | None, str]:
    """The process serving `endpoint` on this machine (by its port on the command line), and its name."""
    port = str(int(endpoint.rsplit(":", 1)[1].strip("/")))
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        names = [Path(a.decode(errors="replace")).name for a in args[:2]]
        if port.encode() in args and ("moto_server" in names or "testbed-fast-s3" in names):
            return int(pid), "moto" if "moto_server" in names else "testbed-fast-s3"
    return None, "?"


def features(s3: b.S3) -> dict[str, str]:
    """What the S3 server does of what redshift-flight uses, each 'ok' or why not, on a scratch prefix."""
    import botocore.exceptions

    c, bucket, prefix = s3.boto, s3.bucket, f"{b.S3_PREFIX}/feature-check/"
    out: dict[str, str] = {}

    def attempt(name, fn):
        try:
            fn()
            out[name] = "ok"
        except (botocore.exceptions.ClientError, AssertionError) as e:
            out[name] = f"no ({e})"

    body = bytes(range(256)) * 4096  # 1 MiB

    def ranged():
        c.put_object(Bucket=bucket, Key=prefix + "ranged", Body=body)
        got = c.get_object(Bucket=bucket, Key=prefix + "ranged", Range="bytes=1000-1999")["Body"].read()
        assert got == body[1000:2000], "wrong bytes"
        got = c.get_object(Bucket=bucket, Key=prefix + "ranged", Range="bytes=-8")["Body"].read()
        assert got == body[-8:], "wrong suffix bytes"

    def create_only():
        c.put_object(Bucket=bucket, Key=prefix + "claim", Body=b"1", IfNoneMatch="*")
        try:
            c.put_object(Bucket=bucket, Key=prefix + "claim", Body=b"2", IfNoneMatch="*")
        except botocore.exceptions.ClientError as e:
            assert e.response["Error"]["Code"] in ("PreconditionFailed", "412"), e.response["Error"]
            return
        raise AssertionError("a second If-None-Match: * PUT succeeded")

    def if_match():
        etag = c.head_object(Bucket=bucket, Key=prefix + "claim")["ETag"]
        c.put_object(Bucket=bucket, Key=prefix + "claim", Body=b"3", IfMatch=etag)
        try:
            c.put_object(Bucket=bucket, Key=prefix + "claim", Body=b"4", IfMatch=etag)
        except botocore.exceptions.ClientError as e:
            assert e.response["Error"]["Code"] in ("PreconditionFailed", "412"), e.response["Error"]
            return
        raise AssertionError("a PUT with a stale If-Match succeeded")

    def multipart():
        up = c.create_multipart_upload(Bucket=bucket, Key=prefix + "multi")
        part = c.upload_part(Bucket=bucket, Key=prefix + "multi", UploadId=up["UploadId"], PartNumber=1,
                             Body=body * 5)
        c.complete_multipart_upload(Bucket=bucket, Key=prefix + "multi", UploadId=up["UploadId"],
                                    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
        assert c.head_object(Bucket=bucket, Key=prefix + "multi")["ContentLength"] == 5 * len(body)

    def list_and_delete():
        keys = [o["Key"] for o in c.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
        assert len(keys) >= 2, keys
        c.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
        assert not c.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents"), "DeleteObjects left objects"

    attempt("ranged GET", ranged)
    attempt("PUT If-None-Match: *", create_only)
    attempt("PUT If-Match", if_match)
    attempt("multipart upload", multipart)
    attempt("ListObjectsV2 + DeleteObjects", list_and_delete)
    s3.delete_prefix(prefix)
    log("S3 features: " + "; ".join(f"{k}: {v}" for k, v in out.items()))
    return out


class RefFlight:
    """pyarrow's reference Flight server over local files, in a process of its own."""

    def __init__(self, paths: list[Path], workdir: Path):
        self.paths, self.workdir = paths, workdir
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(REF_SERVER), *map(str, self.paths)], stdout=subprocess.PIPE,
                                     stderr=open(self.workdir / "ref-flight.log", "wb"), stdin=subprocess.DEVNULL,
                                     text=True)
        line = self.proc.stdout.readline()
        m = re.fullmatch(r"ready (\d+)\s*", line)
        if not m:
            b.stop_process(self.proc)
            sys.exit(f"the reference Flight server did not start: {line!r}, "
                     f"{(self.workdir / 'ref-flight.log').read_text(errors='replace')[-2000:]}")
        self.port = int(m.group(1))
        log(f"reference Flight server (pyarrow {REF_SERVER.name}): pid {self.proc.pid}, port {self.port}")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def client(self) -> flight.FlightClient:
        return flight.FlightClient(f"grpc+tcp://127.0.0.1:{self.port}")

    def stop(self) -> None:
        b.stop_process(self.proc, timeout=5)


def plan_calls(suite, server: b.Server, table: b.Table, calls: int) -> list[tuple[float, float]]:
    """`calls` GetFlightInfo on a PATH descriptor (each one UNLOAD, run deleted at once) after the server's first
    call (which cached the catalog): (wall seconds at the client, UNLOAD seconds from the server's histogram)."""
    client = server.client()
    desc = flight.FlightDescriptor.for_path(b.SCHEMA, table.name)
    out = []
    for _ in range(calls):
        wall, unload, n, meta = suite.gfi_overhead(server, client, desc)
        suite.forget_run(meta["run_id"])
        if n != 1:
            raise AssertionError(f"GetFlightInfo {table.qualified} ran {n} UNLOADs")
        out.append((wall, unload))
        log(f"  planning {table.qualified}: GetFlightInfo {wall * 1e3:.0f} ms, UNLOAD {unload * 1e3:.0f} ms, "
            f"overhead {(wall - unload) * 1e3:.1f} ms")
    client.close()
    return out
