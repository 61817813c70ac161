#!/usr/bin/env python3
"""DoGet throughput and server memory benchmark for redshift-flight.

Run it through `bench/run` (which sources target/testbed/env and builds the release server).
See bench/README.md for what is measured and how to read the results.

Phases
  1. load   bench.lineitem_like (--rows) and bench.lineitem_like_big (--rows x --big-factor) into
            the test bed's PostgreSQL, once (skipped when the table exists with the right row count)
  2. speed  one server process; GetFlightInfo on the 1x table (timed: includes the UNLOAD), then
            --repeats rounds, alternating order, of
              doget-seq   every endpoint, one DoGet stream at a time
              doget-par   every endpoint at once (thread pool)
              direct-seq  pyarrow reading the same staged Parquet files from the same S3 server
              direct-par  the same, in parallel
            every read is checked against the manifest (row count) and the table (sum of a key)
  3. memory a fresh server process per table (1x, then big); GetFlightInfo, read every endpoint
            sequentially, then in parallel; VmHWM from /proc/<pid>/status, VmRSS sampled
  4. report Markdown table on stdout and in bench/results/latest.md; staged S3 prefixes deleted
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import json
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import boto3
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight
import pyarrow.fs as pafs
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = "bench"
TABLE = "lineitem_like"
KEY_COLUMN = "l_orderkey"  # summed on every read as a content check
CLK_TCK = os.sysconf("SC_CLK_TCK")
BATCH_ROWS = 64 * 1024


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f"{name} is not set: source target/testbed/env (bench/run does)")
    return value


# ------------------------------------------------------------------------------------------------
# 1. Data

DDL = """
CREATE TABLE {schema}.{table} (
    l_orderkey      bigint        NOT NULL,
    l_partkey       bigint        NOT NULL,
    l_suppkey       bigint        NOT NULL,
    l_linenumber    integer       NOT NULL,
    l_quantity      numeric(15,2) NOT NULL,
    l_extendedprice numeric(15,2) NOT NULL,
    l_discount      numeric(15,2) NOT NULL,
    l_tax           numeric(15,2) NOT NULL,
    l_returnflag    char(1)       NOT NULL,
    l_linestatus    char(1)       NOT NULL,
    l_shipdate      date          NOT NULL,
    l_commitdate    date          NOT NULL,
    l_receiptdate   date          NOT NULL,
    l_shipinstruct  varchar(25)   NOT NULL,
    l_comment       varchar(44)
)
"""

# Deterministic, TPC-H-lineitem-like values from the row number g (no random(): reruns are equal).
# Four lines per order; 1% NULL comments; comments of 10..44 characters.
INSERT = """
INSERT INTO {schema}.{table}
SELECT
    (g - 1) / 4 + 1,
    (g * 7919::bigint) % 2000000 + 1,
    (g * 104729::bigint) % 100000 + 1,
    ((g - 1) % 4 + 1)::int,
    (g % 50 + 1)::numeric(15,2),
    ((g * 7919::bigint) % 10000000 / 100.0 + 900)::numeric(15,2),
    ((g % 11) / 100.0)::numeric(15,2),
    ((g % 9) / 100.0)::numeric(15,2),
    (ARRAY['A','N','R'])[g % 3 + 1],
    (ARRAY['F','O'])[g % 2 + 1],
    date '1992-01-01' + (g * 13 % 2400)::int,
    date '1992-01-01' + (g * 13 % 2400)::int + (g % 30)::int,
    date '1992-01-01' + (g * 13 % 2400)::int + (g % 30)::int + 1 + (g % 7)::int,
    (ARRAY['DELIVER IN PERSON','COLLECT COD','NONE','TAKE BACK RETURN'])[g % 4 + 1],
    CASE WHEN g % 100 = 0 THEN NULL
         ELSE left(md5(g::text) || md5((g + 1)::text), 10 + (g % 35)::int) END
FROM generate_series({lo}::bigint, {hi}::bigint) AS g
"""


def expected_key_sum(rows: int) -> int:
    # sum over g=1..rows of (g-1)//4 + 1
    return sum_floor_div4(rows) + rows


def sum_floor_div4(n: int) -> int:
    # sum_{k=0}^{n-1} k // 4
    q, r = divmod(n, 4)
    return 4 * q * (q - 1) // 2 + r * q


def ensure_table(pg_url: str, table: str, rows: int) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        exists = conn.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
            (SCHEMA, table),
        ).fetchone()
        if exists:
            have = conn.execute(f"SELECT count(*) FROM {SCHEMA}.{table}").fetchone()[0]
            if have == rows:
                log(f"{SCHEMA}.{table}: present with {rows:,} rows, not reloaded")
                return
            log(f"{SCHEMA}.{table}: has {have:,} rows, want {rows:,}: reloading")
            conn.execute(f"DROP TABLE {SCHEMA}.{table}")
        log(f"{SCHEMA}.{table}: loading {rows:,} rows with generate_series")
        started = time.perf_counter()
        conn.execute(DDL.format(schema=SCHEMA, table=table))
        step = 5_000_000
        for lo in range(1, rows + 1, step):
            hi = min(rows, lo + step - 1)
            conn.execute(INSERT.format(schema=SCHEMA, table=table, lo=lo, hi=hi))
            log(f"  {hi:,} / {rows:,} rows")
        conn.execute(f"ANALYZE {SCHEMA}.{table}")
        log(f"{SCHEMA}.{table}: loaded in {time.perf_counter() - started:.1f}s")


# ------------------------------------------------------------------------------------------------
# Process accounting


def proc_cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process (all its threads), in seconds; 0 if unknown."""
    if not pid:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def proc_status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def pid_from_file(path: Path) -> int | None:
    try:
        pid = int(path.read_text().split()[0])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, IndexError):
        return None


class CpuMeter:
    """CPU seconds used by the server, moto, the emulator and this client during a block."""

    def __init__(self, pids: dict[str, int | None]):
        self.pids = pids

    def snapshot(self) -> dict[str, float]:
        snap = {name: proc_cpu_seconds(pid) for name, pid in self.pids.items()}
        t = os.times()
        snap["client"] = t.user + t.system
        return snap

    @staticmethod
    def diff(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
        return {k: b[k] - a[k] for k in a}


class RssSampler(threading.Thread):
    def __init__(self, pid: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.max_kb = 0
        self.samples = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.max_kb = max(self.max_kb, proc_status_kb(self.pid, "VmRSS"))
                self.samples += 1
            except (OSError, KeyError):
                return
            self._halt.wait(self.interval)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return self.max_kb


# ------------------------------------------------------------------------------------------------
# 2. The server


class Server:
    def __init__(self, binary: Path, workdir: Path, name: str):
        self.binary, self.workdir, self.name = binary, workdir, name
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None

    def supported_keys(self) -> set[str]:
        """Configuration keys this binary knows (its CLI has one flag per key); unknown keys are rejected."""
        help_text = subprocess.run([str(self.binary), "--help"], capture_output=True, text=True).stdout
        return {m.replace("-", "_") for m in re.findall(r"--([a-z0-9-]+)", help_text)}

    def config(self) -> dict[str, str]:
        extra = {}
        # Consumed runs are deleted after staging_grace_seconds (default 60 s): the bench reads every
        # run several times, so it keeps them for the length of the run (and deletes them itself).
        if "staging_grace_seconds" in self.supported_keys():
            extra["staging_grace_seconds"] = "3600"
        return extra | {
            # the seed's fifteen keys, as strings
            "redshift_host": env("TESTBED_REDSHIFT_HOST"),
            "redshift_port": env("TESTBED_REDSHIFT_PORT"),
            "redshift_database": env("TESTBED_REDSHIFT_DATABASE"),
            "redshift_user": env("TESTBED_REDSHIFT_USER"),
            "redshift_password": env("TESTBED_REDSHIFT_PASSWORD"),
            "redshift_schema": SCHEMA,
            "s3_bucket": env("TESTBED_S3_BUCKET"),
            "s3_region": env("TESTBED_S3_REGION"),
            "s3_prefix": "redshift-flight-bench",  # also in Bench.stage
            "iam_role": env("TESTBED_IAM_ROLE"),
            "aws_access_key_id": env("AWS_ACCESS_KEY_ID"),
            "aws_secret_access_key": env("AWS_SECRET_ACCESS_KEY"),
            "auto_schema_detection": "true",
            "enable_complete_resync": "false",
            "max_parallel_workers": "4",
            # redshift-flight's own
            "s3_endpoint": env("TESTBED_S3_ENDPOINT"),
            "listen_address": "127.0.0.1:0",
            "ticket_secret": secrets.token_hex(32),
        }

    def start(self) -> None:
        cfg = self.workdir / "configuration.json"
        cfg.write_text(json.dumps(self.config(), indent=2))
        out = self.workdir / f"{self.name}.stdout"
        err = self.workdir / f"{self.name}.log"
        env_vars = {k: v for k, v in os.environ.items() if not k.startswith("REDSHIFT_FLIGHT_")}
        env_vars.setdefault("RUST_LOG", "info")
        with open(out, "wb") as o, open(err, "wb") as e:
            self.proc = subprocess.Popen(
                [str(self.binary), "--config", str(cfg), "serve"],
                stdout=o, stderr=e, stdin=subprocess.DEVNULL, env=env_vars,
            )
        deadline = time.monotonic() + 60
        pattern = re.compile(r"redshift-flight listening on 127\.0\.0\.1:(\d+)")
        while time.monotonic() < deadline:
            m = pattern.search(out.read_text(errors="replace"))
            if m:
                self.port = int(m.group(1))
                log(f"server {self.name}: pid {self.proc.pid}, port {self.port}")
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        tail = err.read_text(errors="replace")[-3000:]
        self.stop()
        sys.exit(f"server did not start; last log lines:\n{tail}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def client(self) -> flight.FlightClient:
        return flight.FlightClient(f"grpc+tcp://127.0.0.1:{self.port}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ------------------------------------------------------------------------------------------------
# 3. Staged runs and reads


@dataclass
class StagedFile:
    key: str
    size: int
    rows: int


@dataclass
class Staged:
    info: flight.FlightInfo
    run_id: str
    files: list[StagedFile]
    seconds: float
    cpu: dict[str, float]
    row_groups: list[tuple[int, int]] = field(default_factory=list)  # (rows, compressed bytes)

    def row_group_summary(self) -> str:
        if not self.row_groups:
            return "?"
        rows = [r for r, _ in self.row_groups]
        size = [b for _, b in self.row_groups]
        return (f"{len(self.row_groups)} row groups, {min(rows):,}-{max(rows):,} rows and "
                f"{min(size) / 1e6:.1f}-{max(size) / 1e6:.1f} MB compressed each")

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def parquet_bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclass
class ReadResult:
    rows: int = 0
    nbytes: int = 0
    key_sum: int = 0
    batches: int = 0
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)

    def add(self, other: "ReadResult") -> None:
        self.rows += other.rows
        self.nbytes += other.nbytes
        self.key_sum += other.key_sum
        self.batches += other.batches


class S3:
    def __init__(self) -> None:
        self.endpoint = env("TESTBED_S3_ENDPOINT")
        self.bucket = env("TESTBED_S3_BUCKET")
        self.boto = boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=env("TESTBED_S3_REGION"),
            aws_access_key_id=env("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=env("AWS_SECRET_ACCESS_KEY"),
        )
        url = urlparse(self.endpoint)
        self.fs = pafs.S3FileSystem(
            endpoint_override=url.netloc, scheme=url.scheme or "http",
            access_key=env("AWS_ACCESS_KEY_ID"), secret_key=env("AWS_SECRET_ACCESS_KEY"),
            region=env("TESTBED_S3_REGION"),
        )

    def manifest(self, prefix: str, run_id: str) -> list[StagedFile]:
        body = self.boto.get_object(Bucket=self.bucket, Key=f"{prefix}/{run_id}/manifest")["Body"].read()
        files = []
        for entry in json.loads(body)["entries"]:
            url = urlparse(entry["url"])
            assert url.netloc == self.bucket, entry["url"]
            files.append(StagedFile(url.path.lstrip("/"), int(entry["meta"]["content_length"]),
                                    int(entry["meta"]["record_count"])))
        return files

    def delete_prefix(self, prefix: str) -> int:
        n = 0
        for page in self.boto.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                self.boto.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
                n += len(keys)
        return n


def consume(batches, result: ReadResult) -> ReadResult:
    for batch in batches:
        result.rows += batch.num_rows
        result.nbytes += batch.nbytes
        result.batches += 1
        s = pc.sum(batch.column(KEY_COLUMN)).as_py()
        result.key_sum += s or 0
    return result


def doget_one(client: flight.FlightClient, endpoint: flight.FlightEndpoint, schema: pa.Schema) -> ReadResult:
    reader = client.do_get(endpoint.ticket, options=flight.FlightCallOptions(timeout=3600))
    if not reader.schema.equals(schema):
        raise AssertionError(f"DoGet schema differs from FlightInfo schema:\n{reader.schema}\nvs\n{schema}")
    return consume(reader.to_reader(), ReadResult())


def direct_one(fs: pafs.S3FileSystem, bucket: str, f: StagedFile, columns: list[str]) -> ReadResult:
    with fs.open_input_file(f"{bucket}/{f.key}") as src:
        pf = pq.ParquetFile(src, pre_buffer=True)
        result = consume(pf.iter_batches(batch_size=BATCH_ROWS, columns=columns), ReadResult())
    if result.rows != f.rows:
        raise AssertionError(f"{f.key}: read {result.rows} rows, manifest says {f.rows}")
    return result


def run_parallel(tasks, workers: int) -> ReadResult:
    total = ReadResult()
    with cf.ThreadPoolExecutor(max_workers=workers) as pool:
        for r in pool.map(lambda t: t(), tasks):
            total.add(r)
    return total


def timed(mode: str, fn, meter: CpuMeter, staged: Staged, expect_sum: int) -> ReadResult:
    before = meter.snapshot()
    t0 = time.perf_counter()
    result = fn()
    result.seconds = time.perf_counter() - t0
    result.cpu = CpuMeter.diff(before, meter.snapshot())
    if result.rows != staged.rows:
        raise AssertionError(f"{mode}: read {result.rows:,} rows, manifest total is {staged.rows:,}")
    if result.key_sum != expect_sum:
        raise AssertionError(f"{mode}: sum({KEY_COLUMN}) = {result.key_sum}, table has {expect_sum}")
    log(f"  {mode:10s} {result.rows:>11,} rows {result.seconds:7.2f}s  "
        f"{result.rows / result.seconds / 1e6:6.2f} Mrows/s  {result.nbytes / result.seconds / 1e6:7.1f} MB/s  "
        + " ".join(f"{k}={v:.1f}s" for k, v in result.cpu.items()))
    return result


class Bench:
    def __init__(self, args, s3: S3, workdir: Path):
        self.args, self.s3, self.workdir = args, s3, workdir
        self.run_prefixes: list[str] = []
        self.moto_pid = pid_from_file(ROOT / "target/testbed/moto.pid")
        self.emulator_pid = pid_from_file(ROOT / "target/testbed/emulator.pid")

    def meter(self, server: Server) -> CpuMeter:
        return CpuMeter({"server": server.pid, "moto": self.moto_pid, "emulator": self.emulator_pid})

    def stage(self, server: Server, table: str) -> Staged:
        client = server.client()
        meter = self.meter(server)
        before = meter.snapshot()
        t0 = time.perf_counter()
        info = client.get_flight_info(flight.FlightDescriptor.for_path(SCHEMA, table),
                                      options=flight.FlightCallOptions(timeout=3600))
        seconds = time.perf_counter() - t0
        cpu = CpuMeter.diff(before, meter.snapshot())
        client.close()
        meta = json.loads(info.app_metadata)
        run_id = meta["run_id"]
        prefix = "redshift-flight-bench"
        self.run_prefixes.append(f"{prefix}/{run_id}/")
        files = self.s3.manifest(prefix, run_id)
        staged = Staged(info, run_id, files, seconds, cpu)
        for f in files:
            with self.s3.fs.open_input_file(f"{self.s3.bucket}/{f.key}") as src:
                md = pq.ParquetFile(src).metadata
                for i in range(md.num_row_groups):
                    rg = md.row_group(i)
                    staged.row_groups.append((rg.num_rows, sum(rg.column(c).total_compressed_size
                                                               for c in range(rg.num_columns))))
        if len(info.endpoints) != len(files):
            raise AssertionError(f"{len(info.endpoints)} endpoints, manifest lists {len(files)} files")
        if info.total_records != staged.rows:
            raise AssertionError(f"total_records {info.total_records}, manifest {staged.rows}")
        log(f"GetFlightInfo {SCHEMA}.{table}: {seconds:.1f}s, run {run_id}, {len(files)} files, "
            f"{staged.rows:,} rows, {staged.parquet_bytes / 1e6:.1f} MB Parquet ({staged.row_group_summary()}); CPU "
            + " ".join(f"{k}={v:.1f}s" for k, v in cpu.items()))
        return staged

    def reader_fns(self, server: Server, staged: Staged):
        schema = staged.info.schema
        columns = schema.names
        workers = min(self.args.max_workers, len(staged.files)) or 1
        shared = server.client()

        def doget_seq():
            total = ReadResult()
            for ep in staged.info.endpoints:
                total.add(doget_one(shared, ep, schema))
            return total

        def doget_par():
            return run_parallel([lambda ep=ep: doget_one(shared, ep, schema) for ep in staged.info.endpoints], workers)

        def direct_seq():
            total = ReadResult()
            for f in staged.files:
                total.add(direct_one(self.s3.fs, self.s3.bucket, f, columns))
            return total

        def direct_par():
            return run_parallel([lambda f=f: direct_one(self.s3.fs, self.s3.bucket, f, columns)
                                 for f in staged.files], workers)

        return {"doget-seq": doget_seq, "doget-par": doget_par,
                "direct-seq": direct_seq, "direct-par": direct_par}, shared

    def speed(self, table: str, rows: int) -> dict:
        server = Server(self.args.server_bin, self.workdir, "speed")
        server.start()
        try:
            staged = self.stage(server, table)
            fns, client = self.reader_fns(server, staged)
            meter = self.meter(server)
            expect = expected_key_sum(rows)
            results: dict[str, list[ReadResult]] = {k: [] for k in fns}
            for i in range(self.args.repeats):
                # alternate which side goes first, so neither always reads a warm moto/page cache
                order = (["doget-seq", "direct-seq", "doget-par", "direct-par"] if i % 2 == 0
                         else ["direct-seq", "doget-seq", "direct-par", "doget-par"])
                log(f"round {i + 1}/{self.args.repeats}: {', '.join(order)}")
                for mode in order:
                    results[mode].append(timed(mode, fns[mode], meter, staged, expect))
            hwm = proc_status_kb(server.pid, "VmHWM")
            profile = None
            if self.args.perf:
                profile = self.profile(server, fns, meter, staged, expect)
            client.close()
            return {"staged": staged, "results": results, "hwm_kb": hwm, "profile": profile}
        finally:
            server.stop()

    def profile(self, server: Server, fns, meter, staged: Staged, expect: int) -> list[str] | None:
        """One extra doget-seq and doget-par pass under `perf record` (server only); top symbols."""
        perf = shutil.which("perf")
        if not perf:
            log("perf not found: no profile")
            return None
        data = self.workdir / "perf.data"
        rec = subprocess.Popen([perf, "record", "-F", "499", "--call-graph", "dwarf,32768", "-p", str(server.pid), "-o", str(data)],
                               stdout=subprocess.DEVNULL, stderr=open(self.workdir / "perf-record.log", "wb"))
        time.sleep(1.0)
        try:
            timed("doget-seq", fns["doget-seq"], meter, staged, expect)
            timed("doget-par", fns["doget-par"], meter, staged, expect)
        finally:
            rec.send_signal(signal.SIGINT)
            rec.wait(60)
        rep = subprocess.run([perf, "report", "-i", str(data), "--no-children", "--sort", "dso,symbol",
                              "--stdio", "--percent-limit", "1.5", "-g", "none"],
                             capture_output=True, text=True)
        lines = [re.sub(r"\s+", " ", re.sub(r"(\s+-)+\s*$", "", l)).strip()
                 for l in rep.stdout.splitlines() if l.strip() and not l.startswith("#")]
        if not lines:
            log(f"perf gave no samples: {(self.workdir / 'perf-record.log').read_text(errors='replace')[-500:]} "
                f"{rep.stderr[-500:]}")
        if self.args.perf_out:
            self.args.perf_out.write_text(rep.stdout)
            shutil.copy2(data, self.args.perf_out.with_name(self.args.perf_out.name + ".data"))
        return lines[:25]

    def memory(self, table: str, rows: int) -> dict:
        server = Server(self.args.server_bin, self.workdir, f"mem-{table}")
        server.start()
        try:
            time.sleep(0.5)
            idle_kb = proc_status_kb(server.pid, "VmRSS")
            sampler = RssSampler(server.pid)
            sampler.start()
            staged = self.stage(server, table)
            after_stage_kb = proc_status_kb(server.pid, "VmHWM")
            fns, client = self.reader_fns(server, staged)
            meter = self.meter(server)
            expect = expected_key_sum(rows)
            seq = timed("doget-seq", fns["doget-seq"], meter, staged, expect)
            hwm_seq = proc_status_kb(server.pid, "VmHWM")
            par = timed("doget-par", fns["doget-par"], meter, staged, expect)
            hwm_all = proc_status_kb(server.pid, "VmHWM")
            client.close()
            max_rss = sampler.stop()
            # the same files read directly (not the server: its memory is measured above), one round
            direct_seq = timed("direct-seq", fns["direct-seq"], meter, staged, expect)
            direct_par = timed("direct-par", fns["direct-par"], meter, staged, expect)
            log(f"memory {table}: idle {idle_kb / 1024:.0f} MB, after GetFlightInfo HWM {after_stage_kb / 1024:.0f} MB, "
                f"HWM after seq {hwm_seq / 1024:.0f} MB, after par {hwm_all / 1024:.0f} MB, "
                f"max sampled RSS {max_rss / 1024:.0f} MB ({sampler.samples} samples)")
            return {"table": table, "staged": staged, "idle_kb": idle_kb, "stage_hwm_kb": after_stage_kb,
                    "hwm_seq_kb": hwm_seq, "hwm_all_kb": hwm_all, "max_rss_kb": max_rss,
                    "seq": seq, "par": par, "direct_seq": direct_seq, "direct_par": direct_par}
        finally:
            server.stop()

    def cleanup(self) -> None:
        for prefix in self.run_prefixes:
            try:
                n = self.s3.delete_prefix(prefix)
                log(f"deleted {n} objects under s3://{self.s3.bucket}/{prefix}"
                    + (" (the server had already deleted the run)" if n == 0 else ""))
            except Exception as e:  # noqa: BLE001 - best effort, report and go on
                log(f"could not delete s3://{self.s3.bucket}/{prefix}: {e}")


# ------------------------------------------------------------------------------------------------
# 4. Report


def git_describe() -> str:
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src", "Cargo.toml"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return f"tree at {head}" + (" with uncommitted changes in src/ or Cargo.toml" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "git state unknown"


def machine() -> str:
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        mem = f"{int(open('/proc/meminfo').readline().split()[1]) / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError):
        pass
    return (f"{os.cpu_count()} CPUs ({model}), {mem} RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, pyarrow {pa.__version__}")


def med(values):
    return statistics.median(values)


def fmt_cpu(results: list[ReadResult], who: str) -> str:
    return f"{med([r.cpu.get(who, 0.0) for r in results]):.1f}"


def report(args, speed: dict | None, mem: list[dict], started: dt.datetime, notes: list[str]) -> str:
    out = []
    out.append("# redshift-flight DoGet benchmark\n")
    out.append(f"- date: {started.strftime('%Y-%m-%d %H:%M UTC')}")
    out.append(f"- machine: {machine()}")
    shown, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
        elif a == "--server-bin":
            skip = True
        elif not a.startswith("--server-bin="):
            shown.append(a)
    out.append(f"- command: `{' '.join(['bench/run'] + shown)}`")
    out.append(f"- repeats: {args.repeats} (figures are medians; ratios are medians of per-round ratios, "
               "both sides read in the same round)")
    out.append(f"- server: {args.server_bin_shown}; S3: the test bed's moto server (one Python process); "
               "Redshift: the test bed's emulator (PostgreSQL behind it); all on this machine")
    out.append("- MB = 10^6 bytes of Arrow data (`RecordBatch.nbytes`) delivered to the client\n")
    if speed:
        st = speed["staged"]
        r = speed["results"]
        out.append(f"## Throughput: `{SCHEMA}.{TABLE}`, {st.rows:,} rows, {len(st.files)} files, "
                   f"{st.parquet_bytes / 1e6:.1f} MB Parquet\n")
        out.append(f"Staged files: {st.row_group_summary()}.\n")
        out.append(f"GetFlightInfo (UNLOAD through the emulator + manifest): **{st.seconds:.1f} s** "
                   f"({st.rows / st.seconds / 1e3:.0f} k rows/s); CPU s: "
                   + ", ".join(f"{k} {v:.1f}" for k, v in st.cpu.items()) + "\n")
        out.append("| read | streams | median s | M rows/s | Arrow MB/s | CPU s server | CPU s moto | CPU s client |")
        out.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        workers = min(args.max_workers, len(st.files))
        for mode, label in [("doget-seq", "DoGet"), ("direct-seq", "pyarrow direct from S3"),
                            ("doget-par", "DoGet"), ("direct-par", "pyarrow direct from S3")]:
            rs = r[mode]
            secs = med([x.seconds for x in rs])
            out.append(f"| {label} | {'1 at a time' if mode.endswith('seq') else f'{workers} parallel'} | "
                       f"{secs:.2f} | {med([x.rows / x.seconds for x in rs]) / 1e6:.2f} | "
                       f"{med([x.nbytes / x.seconds for x in rs]) / 1e6:.0f} | {fmt_cpu(rs, 'server')} | "
                       f"{fmt_cpu(rs, 'moto')} | {fmt_cpu(rs, 'client')} |")
        out.append("")
        out.append("| ratio DoGet / direct (rows/s) | median | per round | goal |")
        out.append("| --- | ---: | --- | --- |")
        for kind in ("seq", "par"):
            ratios = [s.seconds / d.seconds for d, s in zip(r[f"doget-{kind}"], r[f"direct-{kind}"])]
            ok = "met" if med(ratios) >= 0.8 else "**not met**"
            out.append(f"| {'sequential' if kind == 'seq' else 'parallel'} | **{med(ratios):.2f}x** | "
                       f"{', '.join(f'{x:.2f}' for x in ratios)} | >= 0.8x: {ok} |")
        out.append("")
        out.append(f"Speed-run server VmHWM (after GetFlightInfo and all {args.repeats * 2} DoGet passes): "
                   f"{speed['hwm_kb'] / 1024:.0f} MB\n")
        if speed.get("profile"):
            out.append("Server profile (`perf record -F 499 --call-graph dwarf` of one extra sequential + parallel DoGet pass, "
                       "self time, symbols above 1.5 %):\n")
            out.append("```")
            out.extend(speed["profile"])
            out.append("```\n")
    if mem:
        out.append("## Server memory (a fresh server process per table)\n")
        out.append("| table | rows | files | Parquet MB | GetFlightInfo s | idle RSS MB | VmHWM after seq MB | "
                   "VmHWM after par MB | max sampled RSS MB | goal < 300 MB |")
        out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for m in mem:
            st = m["staged"]
            ok = "met" if m["hwm_all_kb"] / 1024 < 300 else "**not met**"
            out.append(f"| `{SCHEMA}.{m['table']}` | {st.rows:,} | {len(st.files)} | {st.parquet_bytes / 1e6:.0f} | "
                       f"{st.seconds:.1f} | {m['idle_kb'] / 1024:.0f} | {m['hwm_seq_kb'] / 1024:.0f} | "
                       f"{m['hwm_all_kb'] / 1024:.0f} | {m['max_rss_kb'] / 1024:.0f} | {ok} |")
        out.append("")
        out.append("The same reads' throughput (one round each, so noisier than the table above; CPU s in brackets):\n")
        out.append("| table | DoGet seq M rows/s | direct seq M rows/s | ratio seq | DoGet par M rows/s | "
                   "direct par M rows/s | ratio par |")
        out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for m in mem:
            def rate(r: ReadResult) -> str:
                return f"{r.rows / r.seconds / 1e6:.2f} (server {r.cpu.get('server', 0):.1f}, moto {r.cpu.get('moto', 0):.1f}, client {r.cpu.get('client', 0):.1f})"
            out.append(f"| `{SCHEMA}.{m['table']}` | {rate(m['seq'])} | {rate(m['direct_seq'])} | "
                       f"{m['direct_seq'].seconds / m['seq'].seconds:.2f}x | {rate(m['par'])} | "
                       f"{rate(m['direct_par'])} | {m['direct_par'].seconds / m['par'].seconds:.2f}x |")
        out.append("")
        for m in mem:
            streams = min(args.max_workers, len(m['staged'].files)) or 1
            out.append(f"- `{SCHEMA}.{m['table']}` files: {m['staged'].row_group_summary()}; "
                       f"VmHWM right after GetFlightInfo {m['stage_hwm_kb'] / 1024:.0f} MB; "
                       f"one stream: {(m['hwm_seq_kb'] - m['idle_kb']) / 1024:.0f} MB above idle; "
                       f"{streams} streams: {(m['hwm_all_kb'] - m['idle_kb']) / 1024 / streams:.0f} MB above idle per stream")
        out.append("")
    if notes:
        out.append("## Notes\n")
        out.extend(f"- {n}" for n in notes)
        out.append("")
    out.append("Every read was checked: row count equal to the manifest's total and sum(l_orderkey) equal to "
               "the table's; the DoGet schema equal to the FlightInfo schema.")
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=2_000_000, help="rows of bench.lineitem_like (default 2,000,000)")
    p.add_argument("--big-factor", type=int, default=10, help="bench.lineitem_like_big has rows x this (default 10)")
    p.add_argument("--skip-big", action="store_true", help="no big table: memory measured on the 1x table only")
    p.add_argument("--repeats", type=int, default=3, help="rounds of the four reads (default 3)")
    p.add_argument("--max-workers", type=int, default=16, help="threads for the parallel reads (default: one per file, at most 16)")
    p.add_argument("--skip-speed", action="store_true", help="only the memory phase")
    p.add_argument("--skip-memory", action="store_true", help="only the throughput phase")
    p.add_argument("--server-bin", type=Path, default=ROOT / "target/release/redshift-flight")
    p.add_argument("--results", type=Path, default=ROOT / "bench/results/latest.md")
    p.add_argument("--perf", action="store_true", help="profile the server with perf during one extra DoGet pass")
    p.add_argument("--perf-out", type=Path, help="write the full perf report here (and perf.data next to it, FILE.data)")
    p.add_argument("--keep-staged", action="store_true", help="do not delete the staged S3 prefixes")
    args = p.parse_args()
    if args.rows < 1 or args.repeats < 1 or args.big_factor < 1:
        p.error("--rows, --repeats and --big-factor must be positive")
    if not args.server_bin.exists():
        sys.exit(f"{args.server_bin} not found: cargo build --release --bin redshift-flight")

    started = dt.datetime.now(dt.timezone.utc)
    pg_url = env("TESTBED_PG_URL")
    big_rows = args.rows * args.big_factor
    tables = [(TABLE, args.rows)]
    if not args.skip_big and not args.skip_memory:
        tables.append((f"{TABLE}_big", big_rows))
    for table, rows in tables:
        ensure_table(pg_url, table, rows)

    s3 = S3()
    workdir = Path(tempfile.mkdtemp(prefix="redshift-flight-bench."))
    # A private copy: other builds sharing target/ must not replace the binary mid-run.
    built = dt.datetime.fromtimestamp(args.server_bin.stat().st_mtime, dt.timezone.utc)
    args.server_bin_shown = f"`{args.server_bin}` (built {built.strftime('%Y-%m-%d %H:%M UTC')}, {git_describe()})"
    args.server_bin = Path(shutil.copy2(args.server_bin, workdir / "redshift-flight"))
    bench = Bench(args, s3, workdir)
    notes: list[str] = []
    if not bench.emulator_pid:
        notes.append("emulator pid not found (target/testbed/emulator.pid): its CPU is not reported")
    speed, mem = None, []
    ok = False
    try:
        if not args.skip_speed:
            speed = bench.speed(TABLE, args.rows)
        if not args.skip_memory:
            for table, rows in tables:
                mem.append(bench.memory(table, rows))
        ok = True
    finally:
        if args.keep_staged:
            log(f"keeping staged runs: {bench.run_prefixes}")
        else:
            bench.cleanup()
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"server configuration and logs kept in {workdir}")

    text = report(args, speed, mem, started, notes)
    print(text)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text)
    log(f"written {args.results}")


if __name__ == "__main__":
    main()
