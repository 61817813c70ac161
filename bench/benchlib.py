"""Shared parts of the redshift-flight benchmarks: the test bed environment, process accounting, the
benchmark's own emulator and server processes, staged runs on S3, the readers and the bench tables.

`bench/suite.py` (run through `bench/run`) is the benchmark suite; `bench/concurrent_clients.py` and
`bench/flight_client.py` use this module too.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight
import pyarrow.fs as pafs
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = "bench"
S3_PREFIX = "redshift-flight-bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
BATCH_ROWS = 64 * 1024  # batch size of the direct Parquet reads


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f"{name} is not set: source target/testbed/env (bench/run does)")
    return value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs of the machine spent not idle (from /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLK_TCK


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
    """CPU seconds used by the server, moto, the emulator, this client and the machine during a block."""

    def __init__(self, pids: dict[str, int | None]):
        self.pids = pids

    def snapshot(self) -> dict[str, float]:
        snap = {name: proc_cpu_seconds(pid) for name, pid in self.pids.items()}
        t = os.times()
        snap["client"] = t.user + t.system + t.children_user + t.children_system
        snap["machine"] = machine_busy_seconds()
        return snap

    @staticmethod
    def diff(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
        return {k: b[k] - a[k] for k in a}


class RssSampler(threading.Thread):
    """Highest VmRSS of a process, sampled every `interval` seconds."""

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
# The benchmark's emulator and server


def _wait_for_line(proc: subprocess.Popen, out: Path, err: Path, pattern: re.Pattern, what: str,
                   timeout: float = 120) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = pattern.search(out.read_text(errors="replace"))
        if m:
            return m
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    tail = err.read_text(errors="replace")[-3000:]
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    sys.exit(f"{what} did not start; last log lines:\n{tail}")


def stop_process(proc: subprocess.Popen | None, timeout: float = 15) -> None:
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Emulator:
    """The Redshift emulator, as tests/testbed/up starts it, but from the given (release) binary on a
    free port, in front of the test bed's PostgreSQL and S3."""

    def __init__(self, binary: Path, workdir: Path):
        self.binary, self.workdir = binary, workdir
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None

    def start(self) -> None:
        out, err = self.workdir / "emulator.stdout", self.workdir / "emulator.log"
        args = [str(self.binary), "--listen", "127.0.0.1:0", "--pg-url", env("TESTBED_PG_URL"),
                "--user", env("TESTBED_REDSHIFT_USER"), "--password", env("TESTBED_REDSHIFT_PASSWORD"),
                "--database", env("TESTBED_REDSHIFT_DATABASE"), "--s3-endpoint", env("TESTBED_S3_ENDPOINT"),
                "--s3-region", env("TESTBED_S3_REGION")]
        env_vars = {k: v for k, v in os.environ.items() if not k.startswith("EMULATOR_")}
        env_vars.update(RUST_LOG="warn", NO_COLOR="1")
        with open(out, "wb") as o, open(err, "wb") as e:
            self.proc = subprocess.Popen(args, stdout=o, stderr=e, stdin=subprocess.DEVNULL, env=env_vars)
        m = _wait_for_line(self.proc, out, err, re.compile(r"redshift-emulator listening on 127\.0\.0\.1:(\d+)"),
                           "the benchmark's emulator")
        self.port = int(m.group(1))
        log(f"emulator {self.binary}: pid {self.proc.pid}, port {self.port}")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> None:
        stop_process(self.proc)


class Server:
    """One redshift-flight process (`serve`), configured like the seed connector plus the bench's keys."""

    _keys_cache: dict[str, set[str]] = {}

    def __init__(self, binary: Path, workdir: Path, name: str, redshift_port: int | None = None,
                 metrics: bool = False, extra: dict[str, str] | None = None):
        self.binary, self.workdir, self.name = binary, workdir, name
        self.redshift_port = redshift_port or int(env("TESTBED_REDSHIFT_PORT"))
        self.metrics_port = free_port() if metrics else None
        self.extra = extra or {}
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None

    def supported_keys(self) -> set[str]:
        """Configuration keys this binary knows (its CLI has one flag per key); unknown keys are rejected."""
        key = str(self.binary)
        if key not in Server._keys_cache:
            text = subprocess.run([key, "--help"], capture_output=True, text=True).stdout
            text += subprocess.run([key, "serve", "--help"], capture_output=True, text=True).stdout
            Server._keys_cache[key] = {m.replace("-", "_") for m in re.findall(r"--([a-z0-9-]+)", text)}
        return Server._keys_cache[key]

    def config(self) -> dict[str, str]:
        keys = self.supported_keys()
        extra = {}
        # Consumed runs are deleted after staging_grace_seconds (default 60 s): the bench reads some
        # runs several times, so it keeps them for the length of the run (and deletes them itself).
        if "staging_grace_seconds" in keys:
            extra["staging_grace_seconds"] = "3600"
        # Rounds of the end-to-end phase last minutes: keep the catalog cached across them.
        if "catalog_ttl_seconds" in keys:
            extra["catalog_ttl_seconds"] = "3600"
        # Every GetFlightInfo must UNLOAD afresh unless a measurement asks otherwise.
        if "snapshot_reuse_seconds" in keys:
            extra["snapshot_reuse_seconds"] = "0"
        if self.metrics_port:
            extra["metrics_address"] = f"127.0.0.1:{self.metrics_port}"
        for k in self.extra:
            if k not in keys:
                raise KeyError(f"{self.binary} does not know the configuration key {k}")
        return extra | self.extra | {
            # the seed's fifteen keys, as strings
            "redshift_host": "127.0.0.1",
            "redshift_port": str(self.redshift_port),
            "redshift_database": env("TESTBED_REDSHIFT_DATABASE"),
            "redshift_user": env("TESTBED_REDSHIFT_USER"),
            "redshift_password": env("TESTBED_REDSHIFT_PASSWORD"),
            "redshift_schema": SCHEMA,
            "s3_bucket": env("TESTBED_S3_BUCKET"),
            "s3_region": env("TESTBED_S3_REGION"),
            "s3_prefix": S3_PREFIX,
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
        cfg = self.workdir / f"{self.name}.json"
        cfg.write_text(json.dumps(self.config(), indent=2))
        out, err = self.workdir / f"{self.name}.stdout", self.workdir / f"{self.name}.log"
        env_vars = {k: v for k, v in os.environ.items() if not k.startswith("REDSHIFT_FLIGHT_")}
        env_vars.setdefault("RUST_LOG", "info")
        with open(out, "wb") as o, open(err, "wb") as e:
            self.proc = subprocess.Popen([str(self.binary), "--config", str(cfg), "serve"],
                                         stdout=o, stderr=e, stdin=subprocess.DEVNULL, env=env_vars)
        m = _wait_for_line(self.proc, out, err, re.compile(r"redshift-flight listening on 127\.0\.0\.1:(\d+)"),
                           f"server {self.name}", timeout=60)
        self.port = int(m.group(1))
        if self.metrics_port:  # wait until /metrics answers
            deadline = time.monotonic() + 10
            while True:
                try:
                    self.metrics()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        log(f"server {self.name}: pid {self.proc.pid}, port {self.port}"
            + (f", metrics on {self.metrics_port}" if self.metrics_port else ""))

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def uri(self) -> str:
        return f"grpc+tcp://127.0.0.1:{self.port}"

    def client(self) -> flight.FlightClient:
        return flight.FlightClient(self.uri)

    def metrics(self) -> dict[str, float]:
        """The Prometheus text of /metrics as {name{labels}: value}."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    out[name] = float(value)
                except ValueError:
                    pass
        return out

    def unload_totals(self) -> tuple[float, int]:
        """(sum of UNLOAD seconds, number of UNLOADs) so far, from the unload duration histogram."""
        m = self.metrics()
        sums = [v for k, v in m.items() if re.fullmatch(r"(\w+_)?unload_duration_seconds_sum", k)]
        counts = [v for k, v in m.items() if re.fullmatch(r"(\w+_)?unload_duration_seconds_count", k)]
        if len(sums) != 1 or len(counts) != 1:
            raise KeyError(f"no unload_duration_seconds histogram in /metrics: {sorted(m)[:20]}")
        return sums[0], int(counts[0])

    def stop(self) -> None:
        stop_process(self.proc)


# ------------------------------------------------------------------------------------------------
# Staged runs and reads


@dataclass
class StagedFile:
    key: str
    size: int
    rows: int


@dataclass
class Staged:
    info: flight.FlightInfo
    meta: dict
    files: list[StagedFile]
    seconds: float
    cpu: dict[str, float]
    row_groups: list[tuple[int, int]] = field(default_factory=list)  # (rows, compressed bytes)

    @property
    def run_id(self) -> str:
        return self.meta["run_id"]

    def row_group_summary(self) -> str:
        if not self.row_groups:
            return "?"
        rows = [r for r, _ in self.row_groups]
        size = [b for _, b in self.row_groups]
        return (f"{len(self.row_groups)} row groups of {min(rows):,}-{max(rows):,} rows and "
                f"{min(size) / 1e6:.1f}-{max(size) / 1e6:.1f} MB compressed")

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

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / self.seconds / 1e6


class S3:
    def __init__(self) -> None:
        import boto3

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

    def manifest(self, run_id: str) -> list[StagedFile]:
        """The staged files of a run, from its UNLOAD manifest: `<run>/data/manifest` (the server's
        layout since the run's data went under `data/`), else `<run>/manifest` (older servers)."""
        try:
            obj = self.boto.get_object(Bucket=self.bucket, Key=f"{S3_PREFIX}/{run_id}/data/manifest")
        except self.boto.exceptions.NoSuchKey:
            obj = self.boto.get_object(Bucket=self.bucket, Key=f"{S3_PREFIX}/{run_id}/manifest")
        body = obj["Body"].read()
        files = []
        for entry in json.loads(body)["entries"]:
            url = urlparse(entry["url"])
            assert url.netloc == self.bucket, entry["url"]
            files.append(StagedFile(url.path.lstrip("/"), int(entry["meta"]["content_length"]),
                                    int(entry["meta"]["record_count"])))
        return files

    def download(self, files: list[StagedFile], into: Path) -> list[Path]:
        into.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, f in enumerate(files):
            path = into / f"{i:04d}-{Path(f.key).name}"
            self.boto.download_file(self.bucket, f.key, str(path))
            if path.stat().st_size != f.size:
                raise AssertionError(f"{f.key}: downloaded {path.stat().st_size} bytes, manifest says {f.size}")
            paths.append(path)
        return paths

    def delete_prefix(self, prefix: str) -> int:
        n = 0
        for page in self.boto.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                self.boto.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
                n += len(keys)
        return n


def consume(batches, result: ReadResult, key: str) -> ReadResult:
    """Counts a stream of record batches and sums its key column; the batches are dropped."""
    for batch in batches:
        result.rows += batch.num_rows
        result.nbytes += batch.nbytes
        result.batches += 1
        result.key_sum += pc.sum(batch.column(key)).as_py() or 0
    return result


CALL = flight.FlightCallOptions(timeout=3600)


def doget_one(client: flight.FlightClient, endpoint: flight.FlightEndpoint, schema: pa.Schema, key: str) -> ReadResult:
    reader = client.do_get(endpoint.ticket, options=CALL)
    if not reader.schema.equals(schema):
        raise AssertionError(f"DoGet schema differs from FlightInfo schema:\n{reader.schema}\nvs\n{schema}")
    return consume(reader.to_reader(), ReadResult(), key)


def parquet_one(source, f: StagedFile, columns: list[str], key: str) -> ReadResult:
    """pyarrow reading one staged Parquet file (an S3 input file or a local path)."""
    pf = pq.ParquetFile(source, pre_buffer=True)
    result = consume(pf.iter_batches(batch_size=BATCH_ROWS, columns=columns), ReadResult(), key)
    if result.rows != f.rows:
        raise AssertionError(f"{f.key}: read {result.rows} rows, manifest says {f.rows}")
    return result


def direct_one(fs: pafs.S3FileSystem, bucket: str, f: StagedFile, columns: list[str], key: str) -> ReadResult:
    with fs.open_input_file(f"{bucket}/{f.key}") as src:
        return parquet_one(src, f, columns, key)


def local_one(path: Path, f: StagedFile, columns: list[str], key: str) -> ReadResult:
    return parquet_one(str(path), f, columns, key)


def run_parallel(tasks, workers: int) -> ReadResult:
    total = ReadResult()
    with cf.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for r in pool.map(lambda t: t(), tasks):
            total.add(r)
    return total


def row_groups_of(fs: pafs.S3FileSystem, bucket: str, files: list[StagedFile]) -> list[tuple[int, int]]:
    out = []
    for f in files:
        with fs.open_input_file(f"{bucket}/{f.key}") as src:
            md = pq.ParquetFile(src).metadata
            for i in range(md.num_row_groups):
                rg = md.row_group(i)
                out.append((rg.num_rows, sum(rg.column(c).total_compressed_size for c in range(rg.num_columns))))
    return out


# ------------------------------------------------------------------------------------------------
# The bench tables


@dataclass
class Table:
    name: str          # in the bench schema
    key: str           # a bigint column summed on every read as a content check
    rows: int = 0      # from PostgreSQL
    key_sum: int = 0   # from PostgreSQL

    @property
    def qualified(self) -> str:
        return f"{SCHEMA}.{self.name}"


LINEITEM_DDL = """
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
    l_shipinstruct  char(25)      NOT NULL,
    l_shipmode      char(10)      NOT NULL,
    l_comment       varchar(44)   NOT NULL
)
"""

# lineitem rows at the scale factors the suite uses (TPC-H: 6,001,215 at SF1, 29,999,795 at SF5); others from
# what the generator wrote
LINEITEM_ROWS = {1: 6_001_215, 5: 29_999_795}


def tpchgen_bin() -> str:
    exe = Path(sys.executable).parent / "tpchgen-cli"
    if exe.exists():
        return str(exe)
    found = shutil.which("tpchgen-cli")
    if not found:
        sys.exit("tpchgen-cli not found: pip install -r bench/requirements.txt (bench/run does)")
    return found


def table_comment(conn, table: str) -> str | None:
    row = conn.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", (f"{SCHEMA}.{table}",)).fetchone()
    return row[0] if row else None


def _loaded(conn, table: str, marker: str) -> bool:
    comment = table_comment(conn, table)
    if not comment or not comment.startswith(marker + " rows="):
        return False
    rows = int(comment.split("rows=")[1].split()[0])
    have = conn.execute(f"SELECT count(*) FROM {SCHEMA}.{table}").fetchone()[0]
    return have == rows


def _swap_in(conn, loading: str, table: str, primary_key: str, comment: str) -> None:
    """Gives the freshly loaded `loading` its primary key and statistics, then makes it `table` in one
    transaction; the comment marks it complete, so later runs reuse it."""
    conn.execute(f"ALTER TABLE {SCHEMA}.{loading} ADD PRIMARY KEY ({primary_key})")
    conn.execute(f"ANALYZE {SCHEMA}.{loading}")
    with conn.transaction():
        conn.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{table}")
        conn.execute(f"ALTER TABLE {SCHEMA}.{loading} RENAME TO {table}")
        conn.execute(f"ALTER INDEX {SCHEMA}.{loading}_pkey RENAME TO {table}_pkey")
        conn.execute(f"COMMENT ON TABLE {SCHEMA}.{table} IS '{comment}'")


def _key_index(conn, table: str) -> None:
    """An index on l_shipdate, the replication key the server infers: Redshift answers the planning
    query `SELECT MAX(l_shipdate)` from zone maps (block min/max), PostgreSQL would scan the table."""
    conn.execute(f"CREATE INDEX IF NOT EXISTS {table}_l_shipdate ON {SCHEMA}.{table} (l_shipdate)")


def ensure_lineitem(pg_url: str, sf: int) -> Table:
    """bench.lineitem_sf<sf>: TPC-H lineitem from tpchgen-cli, COPYed in, ANALYZEd, with its primary key.
    Reused when its comment says it was loaded completely with this generator and scale factor."""
    import psycopg

    table = f"lineitem_sf{sf}"
    gen = tpchgen_bin()
    version = subprocess.run([gen, "--version"], capture_output=True, text=True).stdout.strip()
    marker = f"{version} csv -s {sf} -T lineitem"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        if _loaded(conn, table, marker):
            log(f"{SCHEMA}.{table}: present ({table_comment(conn, table)}), not reloaded")
            _key_index(conn, table)
            return Table(table, "l_orderkey")
        log(f"{SCHEMA}.{table}: generating TPC-H lineitem at SF{sf} with {version} and COPYing it in")
        started = time.perf_counter()
        loading = f"{table}_loading"
        conn.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{loading}")
        conn.execute(LINEITEM_DDL.format(schema=SCHEMA, table=loading))
        proc = subprocess.Popen([gen, "csv", "-s", str(sf), "-T", "lineitem", "--stdout", "-q"],
                                stdout=subprocess.PIPE)
        assert proc.stdout is not None
        with conn.cursor() as cur:
            with cur.copy(f"COPY {SCHEMA}.{loading} FROM STDIN (FORMAT csv, HEADER true)") as copy:
                while chunk := proc.stdout.read(1 << 20):
                    copy.write(chunk)
            rows = cur.rowcount
        if proc.wait() != 0:
            sys.exit(f"tpchgen-cli exited with {proc.returncode}")
        if sf in LINEITEM_ROWS and rows != LINEITEM_ROWS[sf]:
            sys.exit(f"tpchgen-cli wrote {rows:,} lineitem rows at SF{sf}, TPC-H has {LINEITEM_ROWS[sf]:,}")
        log(f"  {rows:,} rows copied in {time.perf_counter() - started:.0f}s; primary key and ANALYZE")
        _swap_in(conn, loading, table, "l_orderkey, l_linenumber", f"{marker} rows={rows}")
        _key_index(conn, table)
        log(f"{SCHEMA}.{table}: loaded in {time.perf_counter() - started:.0f}s")
    return Table(table, "l_orderkey")


# The wide table: id + 99 columns cycling through these Redshift types. {g} is the row number
# (bigint), {i} the column number, {a} a per-column odd multiplier; every value is a deterministic
# function of them, and about 1 value in 23 is NULL.
WIDE_TYPES = [
    ("smallint", "(({g} * {a} + {i}) % 32000)::smallint"),
    ("integer", "(({g} * {a}) % 2000000000)::integer"),
    ("bigint", "{g} * {a} + {i}"),
    ("numeric(9,2)", "((({g} * {a}) % 10000000) / 100.0)::numeric(9,2)"),
    ("numeric(18,4)", "((({g} * {a}) % 100000000000000) / 10000.0)::numeric(18,4)"),
    ("numeric(28,6)", "(({g} * {a})::numeric * 1000000000 + {g} / 7.0)::numeric(28,6)"),
    ("numeric(38,10)", "(({g} * {a})::numeric * 1000000000000 + {g} / 3.0)::numeric(38,10)"),
    ("real", "({g} * 0.37 + {i})::real"),
    ("double precision", "({g} * 1.0001 / 3 + {i})::double precision"),
    ("boolean", "({g} + {i}) % 3 = 0"),
    ("char(8)", "substr(md5(({g} * {a})::text), 1, 1 + ({g} % 8)::integer)::char(8)"),
    ("varchar(32)", "left(md5(({g} + {i})::text), ({g} * {a} % 33)::integer)"),
    ("date", "date '1995-01-01' + (({g} * {a}) % 9000)::integer"),
    ("timestamp", "timestamp '2000-01-01' + (({g} * {a}) % 900000000000000) * interval '1 microsecond'"),
    ("timestamptz", "timestamptz '2000-01-01 00:00:00+00' + (({g} * {a}) % 900000000000000) * interval '1 microsecond'"),
    ("time", "time '00:00' + (({g} * {a}) % 86400000000) * interval '1 microsecond'"),
]
WIDE_COLUMNS = 100


def wide_columns() -> list[tuple[str, str, str]]:
    cols = [("id", "bigint NOT NULL", "g")]
    for i in range(1, WIDE_COLUMNS):
        sql_type, expr = WIDE_TYPES[(i - 1) % len(WIDE_TYPES)]
        short = sql_type.split("(")[0].replace(" ", "_")
        a = 2 * (7919 * i % 100003) + 1
        value = expr.format(g="g", i=i, a=a)
        cols.append((f"c{i:02d}_{short}", sql_type, f"CASE WHEN (g + {i}) % 23 = 0 THEN NULL ELSE {value} END"))
    return cols


def _wide_key_index(conn, table: str) -> None:
    """An index on wide100's first DATE/TIMESTAMP column, the replication key the server infers (c13_date): as
    for lineitem (`_key_index`), Redshift answers the planning query `SELECT MAX(key)` from zone maps, PostgreSQL
    would scan the 890 MB table (3 s warm, 94 s once seen with the machine's page cache under pressure)."""
    key = next(n for n, t, _ in wide_columns() if t.split()[0] in ("date", "timestamp", "timestamptz"))
    conn.execute(f"CREATE INDEX IF NOT EXISTS {table}_{key} ON {SCHEMA}.{table} ({key})")


def ensure_wide(pg_url: str, rows: int) -> Table:
    """bench.wide100: 100 columns of mixed types, `rows` rows from generate_series."""
    import psycopg

    table = "wide100"
    cols = wide_columns()
    ddl = f"CREATE TABLE {SCHEMA}.{{table}} (\n" + ",\n".join(f"    {n} {t}" for n, t, _ in cols) + "\n)"
    select = "SELECT " + ",\n       ".join(e for _, _, e in cols) + "\nFROM generate_series({lo}::bigint, {hi}::bigint) AS g"
    import hashlib
    marker = "wide100 " + hashlib.sha256((ddl + select).encode()).hexdigest()[:16]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        if _loaded(conn, table, marker) and conn.execute(f"SELECT count(*) FROM {SCHEMA}.{table}").fetchone()[0] == rows:
            log(f"{SCHEMA}.{table}: present with {rows:,} rows, not reloaded")
            _wide_key_index(conn, table)
            return Table(table, "id")
        log(f"{SCHEMA}.{table}: loading {rows:,} rows x {len(cols)} columns with generate_series")
        started = time.perf_counter()
        loading = f"{table}_loading"
        conn.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{loading}")
        conn.execute(ddl.format(table=loading))
        step = 250_000
        for lo in range(1, rows + 1, step):
            hi = min(rows, lo + step - 1)
            conn.execute(f"INSERT INTO {SCHEMA}.{loading}\n" + select.format(lo=lo, hi=hi))
            log(f"  {hi:,} / {rows:,} rows")
        _swap_in(conn, loading, table, "id", f"{marker} rows={rows}")
        _wide_key_index(conn, table)
        log(f"{SCHEMA}.{table}: loaded in {time.perf_counter() - started:.0f}s")
    return Table(table, "id")


def ensure_small(pg_url: str, rows: int = 10_000) -> Table:
    """bench.plan_small: a small table with an updated_at key, for GetFlightInfo overhead."""
    import psycopg

    table = "plan_small"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        exists = conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.{table}",)).fetchone()[0]
        if exists is None or conn.execute(f"SELECT count(*) FROM {SCHEMA}.{table}").fetchone()[0] != rows:
            conn.execute(f"DROP TABLE IF EXISTS {SCHEMA}.{table}")
            conn.execute(
                f"CREATE TABLE {SCHEMA}.{table} AS SELECT g::bigint AS id, md5(g::text)::varchar(32) AS v, "
                f"timestamp '2026-01-01' + g * interval '1 second' AS updated_at "
                f"FROM generate_series(1, {rows}) g")
            conn.execute(f"ALTER TABLE {SCHEMA}.{table} ADD PRIMARY KEY (id)")
            conn.execute(f"ANALYZE {SCHEMA}.{table}")
    return Table(table, "id")


def drop_obsolete(pg_url: str) -> None:
    """Drops the tables of the previous DoGet benchmark (lineitem-like generate_series data), unused now."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        for table in ("lineitem_like", "lineitem_like_big"):
            if conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.{table}",)).fetchone()[0] is not None:
                log(f"dropping {SCHEMA}.{table} (the previous benchmark's data, unused by the suite)")
                conn.execute(f"DROP TABLE {SCHEMA}.{table}")


def fill_expected(pg_url: str, t: Table) -> Table:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        rows, key_sum = conn.execute(f"SELECT count(*), coalesce(sum({t.key}), 0) FROM {t.qualified}").fetchone()
    t.rows, t.key_sum = int(rows), int(key_sum)
    return t
