#!/usr/bin/env python3
"""redshift-flight benchmark suite (issue 7): TPC-H lineitem and a 100-column table.

Run it through `bench/run` (which sources target/testbed/env, installs bench/requirements.txt into the
test bed's venv and builds the release server and emulator). See bench/README.md.

Phases (every figure is measured in the same round as its baseline; medians of --repeats rounds)
  data        bench.lineitem_sf1 (tpchgen-cli, COPY), bench.wide100 (generate_series), bench.plan_small;
              bench.lineitem_sf5 with --sf5. Loaded once, reused while their row counts match.
  emulator    the benchmark's own Redshift emulator (release build) on a free port, in front of the
              test bed's PostgreSQL and S3; every server of the suite talks to it
  planning    GetFlightInfo minus the UNLOAD's own time (the server's unload_duration_seconds histogram),
              catalog cached; incremental requests that find nothing new
  end-to-end  GetFlightInfo (UNLOAD) + DoGet of every endpoint in parallel into a pyarrow Table, vs
              psycopg fetch and ConnectorX (read_sql, 2 partitions) from PostgreSQL, on lineitem SF1
  throughput  per table: DoGet (one stream / all endpoints in parallel) vs pyarrow reading the same
              staged Parquet files from the same S3 server and from local disk, and vs pyarrow's reference
              Flight server (bench/ref_flight_server.py) over the local copies; with --big-plan-calls, the
              planning overhead on lineitem too
  memory      peak server RSS, a fresh server per case: SF1 (and SF5) x 1 client / --clients clients
  flight-sql  ADBC (bench/flight_sql.py): a 1-row aggregate answered on the connection vs staged by
              UNLOAD (direct_max_rows 0); SELECT * of lineitem SF1 through ADBC vs the plain Flight read
  report      Markdown on stdout and in bench/results/latest.md, with a summary of every target

S3 (--s3): the test bed's (moto by default), or fast: s3s-fs with faster GETs (bench/hardware.py,
tests/testbed/fast-s3), so that the S3 server does not bound the figures. --hardware (issue 16): throughput and planning on the fast S3 only.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import datetime as dt
import io
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.flight as flight

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as b  # noqa: E402
import flight_sql  # noqa: E402
import hardware  # noqa: E402
from benchlib import CALL, ROOT, SCHEMA, CpuMeter, ReadResult, Staged, Table, log  # noqa: E402


def med(values):
    values = list(values)
    return statistics.median(values) if values else float("nan")


def fmt_cpu(cpu: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.1f}s" for k, v in cpu.items())


# ------------------------------------------------------------------------------------------------
# Baselines of the end-to-end phase: PostgreSQL straight into pyarrow


def pg_arrow_type(col) -> pa.DataType:
    from psycopg.postgres import types as pgtypes

    name = pgtypes.get(col.type_code).name
    simple = {"int2": pa.int16(), "int4": pa.int32(), "int8": pa.int64(), "float4": pa.float32(),
              "float8": pa.float64(), "bool": pa.bool_(), "date": pa.date32(), "bpchar": pa.string(),
              "varchar": pa.string(), "text": pa.string()}
    if name in simple:
        return simple[name]
    if name == "numeric" and col.precision:
        return pa.decimal128(col.precision, col.scale or 0)
    raise TypeError(f"no Arrow type for {col.name} ({name})")


def psycopg_fetch(pg_url: str, query: str, chunk: int = 100_000) -> pa.Table:
    """What an experienced psycopg 3 user writes for a large table: a server-side cursor, fetchmany in
    chunks, columns transposed and turned into Arrow arrays of the declared types. NUMERIC is loaded as
    text and cast to decimal128 by Arrow (10x faster than building Decimal objects); text format, which
    is faster than binary here (its Decimal and date loaders dominate)."""
    from psycopg.types.string import TextLoader

    with psycopg.connect(pg_url) as conn:
        conn.adapters.register_loader("numeric", TextLoader)
        with conn.cursor("bench_fetch") as cur:
            cur.itersize = chunk
            cur.execute(query)
            schema, batches = None, []
            while rows := cur.fetchmany(chunk):
                if schema is None:
                    schema = pa.schema([(c.name, pg_arrow_type(c)) for c in cur.description])
                arrays = []
                for values, f in zip(zip(*rows), schema):
                    if pa.types.is_decimal(f.type):
                        arrays.append(pa.array(values, type=pa.string()).cast(f.type))
                    else:
                        arrays.append(pa.array(values, type=f.type))
                batches.append(pa.RecordBatch.from_arrays(arrays, schema=schema))
    return pa.Table.from_batches(batches, schema)


def psycopg_copy_csv(pg_url: str, table: str) -> pa.Table:
    """psycopg COPY ... TO STDOUT (FORMAT csv) into pyarrow's CSV reader, with the declared types."""
    with psycopg.connect(pg_url) as conn:
        with conn.cursor() as cur:
            cur.execute(f"SELECT * FROM {table} LIMIT 0")
            schema = pa.schema([(c.name, pg_arrow_type(c)) for c in cur.description])
            buf = io.BytesIO()
            with cur.copy(f"COPY {table} TO STDOUT (FORMAT csv)") as copy:
                for data in copy:
                    buf.write(data)
    return pacsv.read_csv(
        pa.py_buffer(buf.getbuffer()),
        read_options=pacsv.ReadOptions(column_names=schema.names, block_size=16 << 20),
        convert_options=pacsv.ConvertOptions(column_types=schema, strings_can_be_null=False),
    )


def connectorx_read(pg_url: str, query: str, key: str, partitions: int) -> pa.Table:
    import connectorx as cx

    return cx.read_sql(pg_url, query, partition_on=key, partition_num=partitions, return_type="arrow")


# ------------------------------------------------------------------------------------------------
# The suite


@dataclass
class E2ERun:
    seconds: float
    gfi_seconds: float = 0.0
    unload_seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None


class Suite:
    def __init__(self, args, s3: b.S3, workdir: Path, emulator: b.Emulator | None):
        self.args, self.s3, self.workdir, self.emulator = args, s3, workdir, emulator
        self.run_prefixes: list[str] = []
        self.s3_pid, self.s3_name = hardware.s3_server_pid(s3.endpoint)
        self.pg_url = b.env("TESTBED_PG_URL")
        self.notes: list[str] = []
        self.results: dict = {}

    # -- helpers --------------------------------------------------------------------------------

    def server(self, name: str, metrics: bool = False, extra: dict[str, str] | None = None) -> b.Server:
        s = b.Server(self.args.server_bin, self.workdir, name,
                     redshift_port=self.emulator.port if self.emulator else None, metrics=metrics,
                     extra=(self.args.server_extra or {}) | (extra or {}))
        s.start()
        return s

    def meter(self, server: b.Server | None) -> CpuMeter:
        emu_pid = self.emulator.pid if self.emulator else b.pid_from_file(ROOT / "target/testbed/emulator.pid")
        return CpuMeter({"server": server.pid if server else None, "s3": self.s3_pid, "emulator": emu_pid})

    def forget_run(self, run_id: str | None) -> None:
        """Deletes a staged run now (moto keeps every object in memory, the fast S3 on disk)."""
        if not run_id or self.args.keep_staged:
            return
        prefix = f"{b.S3_PREFIX}/{run_id}/"
        try:
            self.s3.delete_prefix(prefix)
            if prefix in self.run_prefixes:
                self.run_prefixes.remove(prefix)
        except Exception as e:  # noqa: BLE001 - cleanup() tries again at the end
            log(f"could not delete s3://{self.s3.bucket}/{prefix} yet: {e}")

    def note_run(self, meta: dict) -> None:
        if meta.get("run_id"):
            self.run_prefixes.append(f"{b.S3_PREFIX}/{meta['run_id']}/")

    def stage(self, server: b.Server, table: Table) -> Staged:
        """GetFlightInfo on a PATH descriptor (a full snapshot), checked against the table and manifest."""
        client = server.client()
        meter = self.meter(server)
        before = meter.snapshot()
        t0 = time.perf_counter()
        info = client.get_flight_info(flight.FlightDescriptor.for_path(SCHEMA, table.name), options=CALL)
        seconds = time.perf_counter() - t0
        cpu = CpuMeter.diff(before, meter.snapshot())
        client.close()
        meta = json.loads(info.app_metadata)
        self.note_run(meta)
        files = self.s3.manifest(meta["run_id"])
        staged = Staged(info, meta, files, seconds, cpu)
        staged.row_groups = b.row_groups_of(self.s3.fs, self.s3.bucket, files)
        # endpoints may be files or row-group ranges of files: check totals, not counts
        if not (info.total_records == staged.rows == table.rows):
            raise AssertionError(f"{table.qualified}: total_records {info.total_records}, manifest {staged.rows}, "
                                 f"table {table.rows}")
        if not info.endpoints:
            raise AssertionError(f"{table.qualified}: no endpoints")
        log(f"GetFlightInfo {table.qualified}: {seconds:.1f}s, run {staged.run_id}, {len(info.endpoints)} endpoints, "
            f"{len(files)} files, {staged.rows:,} rows, {staged.parquet_bytes / 1e6:.1f} MB Parquet "
            f"({staged.row_group_summary()}); CPU {fmt_cpu(cpu)}")
        return staged

    def check(self, what: str, rows: int, key_sum: int, table: Table) -> None:
        if rows != table.rows or key_sum != table.key_sum:
            raise AssertionError(f"{what}: {rows:,} rows and sum({table.key}) = {key_sum}; {table.qualified} has "
                                 f"{table.rows:,} rows and sum {table.key_sum}")

    def timed(self, mode: str, fn, meter: CpuMeter, table: Table) -> ReadResult:
        before = meter.snapshot()
        t0 = time.perf_counter()
        result = fn()
        result.seconds = time.perf_counter() - t0
        result.cpu = CpuMeter.diff(before, meter.snapshot())
        self.check(mode, result.rows, result.key_sum, table)
        log(f"  {mode:11s} {result.rows:>11,} rows {result.seconds:7.2f}s {result.rows_per_s / 1e6:6.2f} Mrows/s "
            f"{result.mb_per_s:7.1f} MB/s  {fmt_cpu(result.cpu)}")
        return result

    # -- planning -------------------------------------------------------------------------------

    def gfi_overhead(self, server: b.Server, client: flight.FlightClient, descriptor) -> tuple[float, float, int, dict]:
        """(GetFlightInfo seconds, UNLOAD seconds, UNLOADs run, app_metadata) of one call."""
        u0, c0 = server.unload_totals()
        t0 = time.perf_counter()
        info = client.get_flight_info(descriptor, options=CALL)
        wall = time.perf_counter() - t0
        u1, c1 = server.unload_totals()
        meta = json.loads(info.app_metadata)
        self.note_run(meta)
        return wall, u1 - u0, c1 - c0, meta

    def planning(self, server: b.Server, small: Table) -> dict:
        client = server.client()
        desc = flight.FlightDescriptor.for_path(SCHEMA, small.name)
        self.gfi_overhead(server, client, desc)  # warms the catalog (the whole schema) and the pools
        full = []
        for _ in range(self.args.plan_calls):
            wall, unload, n, meta = self.gfi_overhead(server, client, desc)
            if n != 1:
                raise AssertionError(f"GetFlightInfo {small.qualified} ran {n} UNLOADs")
            full.append((wall, unload))
            self.forget_run(meta["run_id"])
        # incremental, nothing new: a first sync for the cursor, then the same cursor again and again
        cmd = {"table": small.qualified}
        _, _, _, meta = self.gfi_overhead(server, client, flight.FlightDescriptor.for_command(json.dumps(cmd).encode()))
        self.forget_run(meta["run_id"])
        cursor = meta["next_cursor"]
        if not cursor or meta["mode"] != "incremental":
            raise AssertionError(f"{small.qualified}: expected an incremental first sync, got {meta}")
        empty = []
        desc_inc = flight.FlightDescriptor.for_command(json.dumps(cmd | {"cursor": cursor}).encode())
        for _ in range(self.args.plan_calls):
            wall, unload, n, meta = self.gfi_overhead(server, client, desc_inc)
            if n != 0 or meta["run_id"] is not None or meta["next_cursor"] != cursor:
                raise AssertionError(f"incremental GetFlightInfo with nothing new ran {n} UNLOADs: {meta}")
            empty.append(wall)
        # GetSchema: a round trip that needs nothing but the cached catalog (the RPC floor)
        schema_calls = []
        for _ in range(self.args.plan_calls):
            t0 = time.perf_counter()
            client.get_schema(desc, options=CALL)
            schema_calls.append(time.perf_counter() - t0)
        client.close()
        max_small = self.max_query_seconds(small.qualified, "updated_at")
        log(f"planning {small.qualified}: GetFlightInfo {med(w for w, _ in full) * 1e3:.1f} ms, UNLOAD "
            f"{med(u for _, u in full) * 1e3:.1f} ms, overhead {med(w - u for w, u in full) * 1e3:.1f} ms; "
            f"nothing new {med(empty) * 1e3:.1f} ms; MAX(updated_at) {max_small * 1e3:.1f} ms")
        return {"full": full, "empty": empty, "max_small": max_small, "get_schema": schema_calls}

    def max_query_seconds(self, table: str, key: str, where: str = "", times: int = 3) -> float:
        """SELECT MAX(key) through the emulator, as the server plans a read (median of `times`)."""
        port = self.emulator.port if self.emulator else int(b.env("TESTBED_REDSHIFT_PORT"))
        with psycopg.connect(host="127.0.0.1", port=port, user=b.env("TESTBED_REDSHIFT_USER"),
                             password=b.env("TESTBED_REDSHIFT_PASSWORD"), dbname=b.env("TESTBED_REDSHIFT_DATABASE"),
                             sslmode="disable", autocommit=True) as conn:
            conn.execute("SELECT 1")
            out = []
            for _ in range(times):
                t0 = time.perf_counter()
                conn.execute(f"SELECT MAX({key}) FROM {table} {where}").fetchone()
                out.append(time.perf_counter() - t0)
        return med(out)

    # -- end to end -----------------------------------------------------------------------------

    def flight_e2e(self, server: b.Server, table: Table, seen: set[str]) -> tuple[E2ERun, pa.Table]:
        client = server.client()
        u0, c0 = server.unload_totals()
        t0 = time.perf_counter()
        info = client.get_flight_info(flight.FlightDescriptor.for_path(SCHEMA, table.name), options=CALL)
        gfi = time.perf_counter() - t0
        u1, c1 = server.unload_totals()
        t1 = time.perf_counter()
        endpoints = list(info.endpoints)
        workers = min(self.args.max_workers, len(endpoints))
        with b.cf.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            parts = list(pool.map(lambda e: client.do_get(e.ticket, options=CALL).read_all(), endpoints))
        result = pa.concat_tables(parts)
        doget = time.perf_counter() - t1
        client.close()
        meta = json.loads(info.app_metadata)
        self.note_run(meta)
        if c1 - c0 != 1 or meta["run_id"] in seen:
            raise AssertionError(f"GetFlightInfo did not UNLOAD afresh ({c1 - c0} UNLOADs, run {meta['run_id']})")
        seen.add(meta["run_id"])
        if not result.schema.equals(info.schema):
            raise AssertionError("DoGet schema differs from FlightInfo schema")
        return E2ERun(gfi + doget, gfi, u1 - u0, run_id=meta["run_id"]), result

    def end_to_end(self, server: b.Server, table: Table) -> dict:
        meter = self.meter(server)
        query = f"SELECT * FROM {table.qualified}"
        seen: set[str] = set()
        runs: dict[str, list[E2ERun]] = {"flight": [], "psycopg": [], "connectorx": []}
        if not self.args.skip_copy:
            runs["psycopg-copy"] = []
        fns = {
            "flight": lambda: self.flight_e2e(server, table, seen),
            "psycopg": lambda: (None, psycopg_fetch(self.pg_url, query)),
            "connectorx": lambda: (None, connectorx_read(self.pg_url, query, table.key, self.args.cx_partitions)),
            "psycopg-copy": lambda: (None, psycopg_copy_csv(self.pg_url, table.qualified)),
        }
        for i in range(self.args.repeats):
            order = list(runs) if i % 2 == 0 else list(reversed(runs))
            log(f"end-to-end round {i + 1}/{self.args.repeats}: {', '.join(order)}")
            for mode in order:
                before = meter.snapshot()
                t0 = time.perf_counter()
                run, result = fns[mode]()
                seconds = time.perf_counter() - t0
                cpu = CpuMeter.diff(before, meter.snapshot())
                if run is None:
                    run = E2ERun(seconds)
                run.cpu = cpu
                self.check(mode, result.num_rows, pc.sum(result.column(table.key)).as_py() or 0, table)
                log(f"  {mode:12s} {result.num_rows:>11,} rows {run.seconds:7.2f}s "
                    f"{result.num_rows / run.seconds / 1e6:6.2f} Mrows/s "
                    + (f"(GetFlightInfo {run.gfi_seconds:.2f}s, UNLOAD {run.unload_seconds:.2f}s) " if mode == "flight" else "")
                    + fmt_cpu(cpu))
                runs[mode].append(run)
                del result
                if mode == "flight":
                    self.forget_run(run.run_id)
        # incremental request on lineitem that finds nothing new: needs a cursor, from one more full
        # command (its run is read by nobody and deleted)
        inc = self.incremental_nothing_new(server, table)
        return {"runs": runs, "incremental": inc}

    def incremental_nothing_new(self, server: b.Server, table: Table) -> dict | None:
        client = server.client()
        cmd = {"table": table.qualified, "mode": "full", "columns": [table.key]}
        wall, unload, n, full_meta = self.gfi_overhead(server, client, flight.FlightDescriptor.for_command(json.dumps(cmd).encode()))
        self.forget_run(full_meta["run_id"])
        key, cursor = full_meta.get("replication_key"), full_meta.get("next_cursor")
        if not cursor:
            client.close()
            self.notes.append(f"{table.qualified} has no replication key: no incremental figure")
            return None
        cmd = {"table": table.qualified, "mode": "incremental", "cursor": cursor}
        desc = flight.FlightDescriptor.for_command(json.dumps(cmd).encode())
        times = []
        for _ in range(self.args.plan_calls):
            wall, unload, n, meta = self.gfi_overhead(server, client, desc)
            if n != 0 or meta["run_id"] is not None:
                raise AssertionError(f"incremental GetFlightInfo with nothing new ran {n} UNLOADs: {meta}")
            times.append(wall)
        client.close()
        max_full = self.max_query_seconds(table.qualified, key)
        upper = str(full_meta["upper_bound"]).replace("'", "''")
        max_above = self.max_query_seconds(table.qualified, key, where=f"WHERE {key} > '{upper}'")
        log(f"incremental {table.qualified} (key {key}), nothing new: GetFlightInfo {med(times) * 1e3:.1f} ms; "
            f"MAX({key}) through the emulator {max_full * 1e3:.1f} ms")
        return {"key": key, "times": times, "max_seconds": max_full, "max_above_seconds": max_above}

    def snapshot_reuse(self, table: Table) -> dict | None:
        """A second GetFlightInfo within snapshot_reuse_seconds, when the server has that key."""
        probe = b.Server(self.args.server_bin, self.workdir, "probe")
        if "snapshot_reuse_seconds" not in probe.supported_keys():
            return None
        server = self.server("reuse", metrics=True, extra={"snapshot_reuse_seconds": "300"})
        try:
            client = server.client()
            desc = flight.FlightDescriptor.for_path(SCHEMA, table.name)
            first = self.gfi_overhead(server, client, desc)
            second_wall, second_unload, n, meta = self.gfi_overhead(server, client, desc)
            info = client.get_flight_info(desc, options=CALL)  # a third, to read: also within the window
            total = ReadResult()
            for e in info.endpoints:
                total.add(b.doget_one(client, e, info.schema, table.key))
            self.check("reused snapshot", total.rows, total.key_sum, table)
            self.note_run(json.loads(info.app_metadata))
            client.close()
            log(f"snapshot reuse: first GetFlightInfo {first[0]:.2f}s, second {second_wall * 1e3:.1f} ms "
                f"({n} UNLOADs, run {'shared' if meta['run_id'] == first[3]['run_id'] else 'new'})")
            return {"first": first[0], "second": second_wall, "unloads": n,
                    "shared": meta["run_id"] == first[3]["run_id"]}
        finally:
            server.stop()

    # -- throughput -----------------------------------------------------------------------------

    def throughput(self, table: Table, profile: bool) -> dict:
        server = self.server(f"throughput-{table.name}", metrics=True)
        local_dir = Path(tempfile.mkdtemp(prefix=f"bench-{table.name}.", dir=self.args.local_dir))
        staged = ref = None
        try:
            u0 = server.unload_totals()[0]
            staged = self.stage(server, table)  # the server's first GetFlightInfo: it also fills the catalog
            first_plan = (staged.seconds, server.unload_totals()[0] - u0)
            # more UNLOADs of lineitem for the planning overhead (wide100's take about a minute each: not repeated)
            plan = (hardware.plan_calls(self, server, table, self.args.big_plan_calls)
                    if self.args.big_plan_calls and table.name.startswith("lineitem") else [])
            t0 = time.perf_counter()
            paths = self.s3.download(staged.files, local_dir)
            log(f"  downloaded {len(paths)} staged files to {local_dir} in {time.perf_counter() - t0:.1f}s")
            schema, key = staged.info.schema, table.key
            columns = schema.names
            endpoints = list(staged.info.endpoints)
            shared = server.client()
            ep_workers = min(self.args.max_workers, len(endpoints))
            file_workers = min(self.args.max_workers, len(staged.files))
            s3fs, bucket = self.s3.fs, self.s3.bucket

            def seq(tasks):
                total = ReadResult()
                for t in tasks:
                    total.add(t())
                return total

            doget = [lambda e=e: b.doget_one(shared, e, schema, key) for e in endpoints]
            direct = [lambda f=f: b.direct_one(s3fs, bucket, f, columns, key) for f in staged.files]
            local = [lambda p=p, f=f: b.local_one(p, f, columns, key) for p, f in zip(paths, staged.files)]
            fns = {"doget-seq": lambda: seq(doget), "s3-seq": lambda: seq(direct), "local-seq": lambda: seq(local),
                   "doget-par": lambda: b.run_parallel(doget, ep_workers),
                   "s3-par": lambda: b.run_parallel(direct, file_workers),
                   "local-par": lambda: b.run_parallel(local, file_workers)}
            meter = self.meter(server)
            meters = {}
            ref_workers = 0
            if not self.args.skip_reference:
                # pyarrow's reference Flight server over the local copies, read like redshift-flight
                ref = hardware.RefFlight(paths, self.workdir)
                ref.start()
                rc = ref.client()
                ref_info = rc.get_flight_info(flight.FlightDescriptor.for_path("bench", table.name), options=CALL)
                ref_schema, ref_endpoints = ref_info.schema, list(ref_info.endpoints)
                ref_workers = min(self.args.max_workers, len(ref_endpoints))
                refget = [lambda e=e: b.doget_one(rc, e, ref_schema, key) for e in ref_endpoints]
                fns["ref-seq"] = lambda: seq(refget)
                fns["ref-par"] = lambda: b.run_parallel(refget, ref_workers)
                ref_meter = CpuMeter(meter.pids | {"server": ref.pid})
                meters = {"ref-seq": ref_meter, "ref-par": ref_meter}
            dict_workers = 0
            if not self.args.skip_dictionary and table.name.startswith("lineitem"):
                # The same table with {"dictionary": true}: CHAR/VARCHAR as the Parquet's own dictionaries.
                cmd = json.dumps({"table": table.qualified, "mode": "full", "dictionary": True}).encode()
                dc = server.client()
                dict_info = dc.get_flight_info(flight.FlightDescriptor.for_command(cmd), options=CALL)
                dc.close()
                self.note_run(json.loads(dict_info.app_metadata))
                if dict_info.total_records != table.rows:
                    raise AssertionError(f"{table.qualified} with dictionary: total_records {dict_info.total_records}")
                dict_schema, dict_endpoints = dict_info.schema, list(dict_info.endpoints)
                dict_workers = min(self.args.max_workers, len(dict_endpoints))
                dictget = [lambda e=e: b.doget_one(shared, e, dict_schema, key) for e in dict_endpoints]
                fns["dict-seq"] = lambda: seq(dictget)
                fns["dict-par"] = lambda: b.run_parallel(dictget, dict_workers)
            results: dict[str, list[ReadResult]] = {k: [] for k in fns}
            # a warm-up pass of each (first reads pay for pools, connections and page cache)
            for mode in ("local-seq", "s3-seq", "doget-seq", "dict-seq", "ref-seq"):
                if mode in fns:
                    fns[mode]()
            for i in range(self.args.repeats):
                # alternate which side goes first
                groups = [[m for m in (f"doget-{k}", f"dict-{k}", f"ref-{k}", f"s3-{k}", f"local-{k}") if m in fns]
                          for k in ("seq", "par")]
                order = [m for g in groups for m in (g if i % 2 == 0 else list(reversed(g)))]
                log(f"{table.qualified} round {i + 1}/{self.args.repeats}: {', '.join(order)}")
                for mode in order:
                    results[mode].append(self.timed(mode, fns[mode], meters.get(mode, meter), table))
            prof = self.profile(server, fns, meter, table) if profile else None
            shared.close()
            return {"table": table, "staged": staged, "results": results, "profile": prof,
                    "endpoint_workers": ep_workers, "file_workers": file_workers, "dict_workers": dict_workers,
                    "ref_workers": ref_workers, "hwm_kb": b.proc_status_kb(server.pid, "VmHWM"),
                    "first_plan": first_plan, "plan": plan}
        finally:
            if ref:
                ref.stop()
            server.stop()
            shutil.rmtree(local_dir, ignore_errors=True)
            if staged:
                self.forget_run(staged.run_id)

    def profile(self, server: b.Server, fns, meter: CpuMeter, table: Table) -> list[str] | None:
        """One extra doget-seq and doget-par pass under `perf record` (server only); top symbols."""
        perf = shutil.which("perf")
        if not perf:
            self.notes.append("--perf: perf not found, no profile")
            return None
        data = self.workdir / "perf.data"
        rec = subprocess.Popen([perf, "record", "-F", "499", "--call-graph", "dwarf,32768", "-p", str(server.pid),
                                "-o", str(data)], stdout=subprocess.DEVNULL,
                               stderr=open(self.workdir / "perf-record.log", "wb"))
        time.sleep(1.0)
        try:
            self.timed("doget-seq", fns["doget-seq"], meter, table)
            self.timed("doget-par", fns["doget-par"], meter, table)
        finally:
            rec.send_signal(signal.SIGINT)
            rec.wait(60)
        rep = subprocess.run([perf, "report", "-i", str(data), "--no-children", "--sort", "dso,symbol", "--stdio",
                              "--percent-limit", "1.5", "-g", "none"], capture_output=True, text=True)
        lines = [re.sub(r"\s+", " ", re.sub(r"(\s+-)+\s*$", "", line)).strip()
                 for line in rep.stdout.splitlines() if line.strip() and not line.startswith("#")]
        if self.args.perf_out:
            self.args.perf_out.write_text(rep.stdout)
            # Who calls memmove (the copies issue 16 is about), next to the report.
            callers = subprocess.run([perf, "report", "-i", str(data), "--no-children", "--stdio",
                                      "--symbols", "__memmove_avx512_unaligned_erms,__memmove_avx_unaligned_erms",
                                      "-g", "caller,0.5,callee,function,percent", "--percent-limit", "0.5"],
                                     capture_output=True, text=True)
            self.args.perf_out.with_suffix(".memmove.txt").write_text(callers.stdout)
        return lines[:25]

    # -- memory ---------------------------------------------------------------------------------

    def memory(self, table: Table, clients: int) -> dict:
        server = self.server(f"memory-{table.name}-{clients}")
        sampler = b.RssSampler(server.pid)
        sampler.start()
        staged = None
        try:
            time.sleep(0.3)
            idle_kb = b.proc_status_kb(server.pid, "VmRSS")
            staged = self.stage(server, table)
            after_stage_kb = b.proc_status_kb(server.pid, "VmHWM")
            meter = self.meter(server)
            out = {"table": table, "clients": clients, "staged": staged, "idle_kb": idle_kb,
                   "stage_hwm_kb": after_stage_kb}
            if clients == 1:
                client = server.client()
                schema = staged.info.schema

                def seq():
                    total = ReadResult()
                    for e in staged.info.endpoints:
                        total.add(b.doget_one(client, e, schema, table.key))
                    return total

                out["read"] = self.timed("1 client", seq, meter, table)
                out["hwm_kb"] = b.proc_status_kb(server.pid, "VmHWM")
                out["max_rss_kb"] = sampler.max_kb
                par = b.run_parallel([lambda e=e: b.doget_one(client, e, schema, table.key)
                                      for e in staged.info.endpoints], len(staged.info.endpoints))
                self.check("1 client, parallel", par.rows, par.key_sum, table)
                out["hwm_par_kb"] = b.proc_status_kb(server.pid, "VmHWM")
                client.close()
            else:
                out["read"] = self.many_clients(server, staged, table, clients, meter)
                out["hwm_kb"] = b.proc_status_kb(server.pid, "VmHWM")
                out["max_rss_kb"] = sampler.max_kb
            sampler.stop()
            out["samples"] = sampler.samples
            log(f"memory {table.qualified}, {clients} client(s): idle {idle_kb / 1024:.0f} MB, VmHWM after "
                f"GetFlightInfo {after_stage_kb / 1024:.0f} MB, after the reads {out['hwm_kb'] / 1024:.0f} MB "
                f"(max sampled RSS {out['max_rss_kb'] / 1024:.0f} MB, {sampler.samples} samples)"
                + (f"; after one client read every endpoint at once {out['hwm_par_kb'] / 1024:.0f} MB"
                   if "hwm_par_kb" in out else ""))
            return out
        finally:
            sampler.stop()
            server.stop()
            if staged:
                self.forget_run(staged.run_id)

    def many_clients(self, server: b.Server, staged: Staged, table: Table, clients: int, meter: CpuMeter) -> ReadResult:
        job = json.dumps({
            "uri": server.uri, "key": table.key, "parallel": self.args.client_streams == "par",
            "tickets": [base64.b64encode(e.ticket.ticket).decode() for e in staged.info.endpoints],
            "schema": base64.b64encode(staged.info.schema.serialize().to_pybytes()).decode(),
        })
        procs = []
        try:
            for _ in range(clients):
                p = subprocess.Popen([sys.executable, str(Path(__file__).parent / "flight_client.py")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                p.stdin.write(job + "\n")
                p.stdin.flush()
                procs.append(p)
            for p in procs:
                if p.stdout.readline().strip() != "ready":
                    raise AssertionError("a client process did not start")
            before = meter.snapshot()
            t0 = time.perf_counter()
            for p in procs:
                p.stdin.write("go\n")
                p.stdin.flush()
            total = ReadResult()
            slowest = 0.0
            for p in procs:
                line = p.stdout.readline()
                if p.wait() != 0 or not line:
                    raise AssertionError(f"a client process failed (exit {p.returncode})")
                r = json.loads(line)
                self.check("one of the clients", r["rows"], r["key_sum"], table)
                total.add(ReadResult(rows=r["rows"], nbytes=r["nbytes"], key_sum=r["key_sum"]))
                slowest = max(slowest, r["seconds"])
            total.seconds = time.perf_counter() - t0
            total.cpu = CpuMeter.diff(before, meter.snapshot())
            log(f"  {clients} clients {total.rows:>11,} rows {total.seconds:7.2f}s "
                f"{total.rows_per_s / 1e6:6.2f} Mrows/s {total.mb_per_s:7.1f} MB/s  {fmt_cpu(total.cpu)}")
            return total
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()

    def cleanup(self) -> None:
        for prefix in self.run_prefixes:
            try:
                n = self.s3.delete_prefix(prefix)
                if n:
                    log(f"deleted {n} objects under s3://{self.s3.bucket}/{prefix}")
            except Exception as e:  # noqa: BLE001 - best effort, report and go on
                log(f"could not delete s3://{self.s3.bucket}/{prefix}: {e}")


# ------------------------------------------------------------------------------------------------
# Report


def git_describe() -> str:
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src", "Cargo.toml"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return (f"the tree at run time: HEAD {head}"
                + (", uncommitted changes in src/ or Cargo.toml" if dirty else ", src/ clean"))
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


def s3_shown(suite: Suite) -> str:
    feats = suite.results.get("s3_features", {})
    checked = ("; " + ", ".join(f"{k} {v}" for k, v in feats.items())) if feats else ""
    if suite.s3_name == "moto":
        return (f"moto ({suite.s3.endpoint}, one Python process that copies the whole object for every ranged GET"
                f"{checked})")
    return (f"testbed-fast-s3 ({suite.s3.endpoint}, `tests/testbed/fast-s3`: s3s-fs 0.14.1, a Rust S3 server over a "
            "directory on this machine's disk, a ranged GET seeks in the file, with GetObject reading 1 MiB at a time "
            f"instead of s3s-fs's 4 KiB{checked})")


def built(path: Path) -> str:
    t = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M UTC")


class Report:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.targets: list[tuple[str, str, str, bool | None]] = []  # (what, figure, goal, met)

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def target(self, what: str, figure: str, goal: str, met: bool | None) -> None:
        self.targets.append((what, figure, goal, met))

    def text(self) -> str:
        out = list(self.lines)
        out.append("## Summary\n")
        out.append("| target | figure | goal | |")
        out.append("| --- | ---: | --- | --- |")
        for what, figure, goal, met in self.targets:
            verdict = "reported" if met is None else ("met" if met else "**not met**")
            out.append(f"| {what} | {figure} | {goal} | {verdict} |")
        out.append("")
        return "\n".join(out) + "\n"


def ratio_row(label: str, ours: list[ReadResult], base: list[ReadResult]) -> tuple[str, float]:
    ratios = [x.seconds / d.seconds for d, x in zip(ours, base)]
    return f"| {label} | **{med(ratios):.2f}x** | {', '.join(f'{r:.2f}' for r in ratios)} |", med(ratios)


def cores(r: ReadResult, who: str) -> float:
    if who == "bench":  # the processes of the read: server, S3 and the client
        return sum(r.cpu.get(k, 0.0) for k in ("server", "s3", "client")) / r.seconds
    return r.cpu.get(who, 0.0) / r.seconds


def report(args, suite: Suite, started: dt.datetime, elapsed: float) -> str:
    rep = Report()
    res = suite.results
    shown, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
        elif a in ("--server-bin", "--emulator-bin"):
            skip = True
        elif not a.startswith(("--server-bin=", "--emulator-bin=")):
            shown.append(a)
    rep.add("# redshift-flight benchmark suite\n",
            f"- date: {started.strftime('%Y-%m-%d %H:%M UTC')}; the whole run took {elapsed / 60:.1f} min",
            f"- machine: {machine()}",
            f"- command: `{' '.join(['bench/run'] + shown)}`",
            f"- repeats: {args.repeats} rounds; figures are medians, ratios are medians of per-round ratios (both "
            "sides measured back to back in the same round, the order alternating between rounds)",
            f"- server: {args.server_bin_shown}",
            f"- Redshift: {args.emulator_shown}, relaying to the test bed's PostgreSQL "
            f"({suite.pg_version}); S3: {s3_shown(suite)}; all on this machine",
            "- MB = 10^6 bytes of Arrow data (`RecordBatch.nbytes`) delivered to the client; CPU columns are CPU "
            "seconds of each process during the read, cores = CPU seconds / elapsed (\"machine\": every process, "
            "from /proc/stat, including anything else running)",
            "")
    tables = res.get("tables", [])
    if tables:
        rep.add("Tables: " + "; ".join(f"`{t.qualified}` {t.rows:,} rows" for t in tables) + "\n")

    # 1. throughput
    for tp in res.get("throughput", []):
        t, st, r = tp["table"], tp["staged"], tp["results"]
        rep.add(f"## 1. DoGet throughput: `{t.qualified}`, {st.rows:,} rows x {len(st.info.schema)} columns\n",
                f"GetFlightInfo {st.seconds:.1f} s (UNLOAD through the emulator); {len(st.info.endpoints)} endpoints, "
                f"{len(st.files)} files, {st.parquet_bytes / 1e6:.0f} MB Parquet, {st.row_group_summary()}. "
                "Local disk: the same files downloaded to a temporary directory and read warm (in the page cache; "
                "it cannot be dropped here). One warm-up pass of each one-stream read comes before the rounds; "
                "the parallel reads use one thread per endpoint (DoGet, one shared FlightClient) or per file "
                "(pyarrow), and pyarrow's own decoding threads."
                + (" pyarrow's reference Flight server (`bench/ref_flight_server.py`, `FlightServerBase` + "
                   "`ParquetFile.iter_batches`, one endpoint per file, in a process of its own) serves the local "
                   "copies and is read by the same client code as DoGet; its CPU is in the server column."
                   if "ref-seq" in r else "") + "\n",
                f"| read | streams | median s | M rows/s | Arrow MB/s | CPU s server | CPU s S3 ({suite.s3_name}) | "
                "CPU s client | cores server | cores server+S3+client | cores machine |",
                "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for mode, label in [("doget-seq", "DoGet"), ("dict-seq", "DoGet, `dictionary: true`"),
                            ("ref-seq", "pyarrow reference Flight server"),
                            ("s3-seq", "pyarrow from S3"), ("local-seq", "pyarrow from local disk"),
                            ("doget-par", "DoGet"), ("dict-par", "DoGet, `dictionary: true`"),
                            ("ref-par", "pyarrow reference Flight server"),
                            ("s3-par", "pyarrow from S3"), ("local-par", "pyarrow from local disk")]:
            if mode not in r:
                continue
            rs = r[mode]
            streams = "1 at a time" if mode.endswith("seq") else (
                f"{tp['endpoint_workers']} parallel" if mode.startswith("doget") else
                f"{tp['dict_workers']} parallel" if mode.startswith("dict") else
                f"{tp.get('ref_workers', 0)} parallel" if mode.startswith("ref") else f"{tp['file_workers']} parallel")
            rep.add(f"| {label} | {streams} | {med(x.seconds for x in rs):.2f} | {med(x.rows_per_s for x in rs) / 1e6:.2f} | "
                    f"{med(x.mb_per_s for x in rs):.0f} | {med(x.cpu.get('server', 0) for x in rs):.1f} | "
                    f"{med(x.cpu.get('s3', 0) for x in rs):.1f} | {med(x.cpu.get('client', 0) for x in rs):.1f} | "
                    f"{med(cores(x, 'server') for x in rs):.2f} | {med(cores(x, 'bench') for x in rs):.2f} | "
                    f"{med(cores(x, 'machine') for x in rs):.2f} |")
        rep.add("", "| ratio (rows/s) | median | per round |", "| --- | ---: | --- |")
        ratios = {}
        for kind, label in [("seq", "one stream"), ("par", "parallel")]:
            for base, blabel in [("s3", "pyarrow from S3"), ("local", "pyarrow from local disk"),
                                 ("ref", "pyarrow's reference Flight server")]:
                if f"{base}-{kind}" not in r:
                    continue
                row, value = ratio_row(f"DoGet / {blabel}, {label}", r[f"doget-{kind}"], r[f"{base}-{kind}"])
                rep.add(row)
                ratios[(kind, base)] = value
        for kind, label in [("seq", "one stream"), ("par", "parallel")]:
            if f"dict-{kind}" in r:
                row, value = ratio_row(f"DoGet `dictionary: true` / pyarrow from S3, {label}", r[f"dict-{kind}"],
                                       r[f"s3-{kind}"])
                rep.add(row)
                ratios[(kind, "dict")] = value
        rep.add("")
        if tp.get("profile"):
            rep.add("Server profile (`perf record` of one extra one-stream + parallel DoGet pass, self time):\n", "```",
                    *tp["profile"], "```\n")
        for kind, label in [("seq", "one stream"), ("par", "parallel")]:
            rep.target(f"DoGet vs pyarrow from S3, `{t.name}`, {label}", f"{ratios[(kind, 's3')]:.2f}x", ">= 0.9x",
                       ratios[(kind, "s3")] >= 0.9)
        for kind, label in [("seq", "one stream"), ("par", "parallel")]:
            rep.target(f"DoGet vs pyarrow from local disk (the hardware limit), `{t.name}`, {label}",
                       f"{ratios[(kind, 'local')]:.2f}x", ">= 0.8x", ratios[(kind, "local")] >= 0.8)
        for kind, label in [("seq", "one stream"), ("par", "parallel")]:
            if (kind, "ref") in ratios:
                rep.target(f"DoGet vs pyarrow's reference Flight server, `{t.name}`, {label}",
                           f"{ratios[(kind, 'ref')]:.2f}x", ">= 1.3x", ratios[(kind, "ref")] >= 1.3)
        for kind, label in [("seq", "one stream"), ("par", "parallel")]:
            if (kind, "dict") in ratios:
                rep.target(f"DoGet `dictionary: true` vs pyarrow from S3, `{t.name}`, {label}",
                           f"{ratios[(kind, 'dict')]:.2f}x", "as it comes", None)
        par = r["doget-par"]
        srv, busy = med(cores(x, "server") for x in par), med(cores(x, "bench") for x in par)
        mach = med(cores(x, "machine") for x in par)
        speedup = med(sq.seconds / pr.seconds for sq, pr in zip(r["doget-seq"], par))
        ncpu = os.cpu_count() or 1
        rep.add(f"Parallel DoGet: server, client and S3 together kept {busy:.2f} of the {ncpu} cores busy (server "
                f"{srv:.2f}, client {med(cores(x, 'client') for x in par):.2f}, {suite.s3_name} "
                f"{med(cores(x, 's3') for x in par):.2f}; the whole machine {mach:.2f}, other work included); "
                f"{speedup:.2f}x the one-stream rate.\n")
        rep.target(f"parallel DoGet uses both cores, `{t.name}`",
                   f"{busy:.2f} of {ncpu} cores (server {srv:.2f}); {speedup:.2f}x one stream",
                   f">= {0.9 * ncpu:.1f} cores busy", busy >= 0.9 * ncpu)

    # 2. end to end
    e2e = res.get("e2e")
    if e2e:
        t = e2e["table"]
        runs = e2e["runs"]
        fl = runs["flight"]
        rep.add(f"## 2. End to end: `{t.qualified}` ({t.rows:,} rows) into a pyarrow Table\n",
                "- redshift-flight: GetFlightInfo (its UNLOAD through the emulator, afresh every round: a new run id "
                "and one more UNLOAD in the server's histogram) + DoGet of every endpoint in parallel (`read_all`, "
                "`concat_tables`), a new FlightClient per round"
                + ("; `snapshot_reuse_seconds` 0" if e2e.get("reuse_key") else ""),
                "- psycopg fetch (psycopg 3): a server-side cursor, `fetchmany(100000)`, the rows transposed and "
                "turned into Arrow arrays of the declared types, NUMERIC loaded as text and cast to decimal128 by "
                "Arrow (building Decimal objects is 3x slower; the text format beats binary here), from PostgreSQL "
                "directly (not through the emulator, which would only add its relay)",
                f"- ConnectorX {e2e['cx_version']}: `read_sql(url, \"SELECT * FROM {t.qualified}\", "
                f"partition_on=\"{t.key}\", partition_num={args.cx_partitions}, return_type=\"arrow\")` from PostgreSQL directly",
                *(["- psycopg COPY: `COPY ... TO STDOUT (FORMAT csv)` into `pyarrow.csv.read_csv` with the declared "
                   "types, from PostgreSQL directly (for reference)"] if "psycopg-copy" in runs else []),
                "- every result checked: row count and sum(l_orderkey) equal to PostgreSQL's\n",
                "| reader | median s | M rows/s | CPU s client | CPU s server | CPU s emulator | CPU s S3 | "
                "redshift-flight / reader (speed-up) | per round |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        speedups = {}
        for mode, label in [("flight", "redshift-flight (GetFlightInfo + DoGet)"), ("psycopg", "psycopg fetch"),
                            ("connectorx", "ConnectorX"), ("psycopg-copy", "psycopg COPY csv")]:
            if mode not in runs:
                continue
            rs = runs[mode]
            per = [x.seconds / f.seconds for f, x in zip(fl, rs)]
            speedups[mode] = med(per)
            rep.add(f"| {label} | {med(x.seconds for x in rs):.2f} | {t.rows / med(x.seconds for x in rs) / 1e6:.2f} | "
                    f"{med(x.cpu.get('client', 0) for x in rs):.1f} | {med(x.cpu.get('server', 0) for x in rs):.1f} | "
                    f"{med(x.cpu.get('emulator', 0) for x in rs):.1f} | {med(x.cpu.get('s3', 0) for x in rs):.1f} | "
                    + ("" if mode == "flight" else f"**{med(per):.2f}x**") + " | "
                    + ("" if mode == "flight" else ", ".join(f"{p:.2f}" for p in per)) + " |")
        no_unload = [(x.seconds - x.unload_seconds) for x in fl]
        vs_pg_no_unload = med(p.seconds / n for p, n in zip(runs["psycopg"], no_unload))
        rep.add("", f"redshift-flight's time splits into GetFlightInfo {med(x.gfi_seconds for x in fl):.2f} s (of which "
                f"UNLOAD {med(x.unload_seconds for x in fl):.2f} s, the emulator's Parquet writer, at "
                f"{t.rows / med(x.unload_seconds for x in fl) / 1e3:.0f} k rows/s) and DoGet "
                f"{med(x.seconds - x.gfi_seconds for x in fl):.2f} s. Without the UNLOAD (planning + DoGet, "
                f"{med(no_unload):.2f} s) it would be {vs_pg_no_unload:.1f}x faster than psycopg fetch.\n")
        rep.target("end to end vs psycopg fetch (`lineitem_sf1`)", f"{speedups['psycopg']:.2f}x faster", ">= 2x",
                   speedups["psycopg"] >= 2)
        rep.target("end to end minus the UNLOAD vs psycopg fetch (`lineitem_sf1`)", f"{vs_pg_no_unload:.2f}x faster",
                   "as it comes", None)
        rep.target("end to end vs ConnectorX (`lineitem_sf1`)", f"{speedups['connectorx']:.2f}x", "as it comes", None)
        if "psycopg-copy" in speedups:
            rep.target("end to end vs psycopg COPY csv (`lineitem_sf1`)", f"{speedups['psycopg-copy']:.2f}x",
                       "as it comes", None)

    # 3. memory
    mem = res.get("memory", [])
    if mem:
        rep.add("## 3. Peak server RSS (a fresh server process per case)\n",
                f"One client reads every endpoint one at a time over one connection; {args.clients} clients are "
                f"{args.clients} separate processes, each with its own FlightClient (connection), all reading every "
                "endpoint of the same FlightInfo (one UNLOAD), "
                + ("one endpoint at a time each" if args.client_streams == "seq" else "all endpoints at once each")
                + ", started together. VmHWM from /proc/<pid>/status over the server's whole life (GetFlightInfo "
                "included); VmRSS also sampled every 50 ms.\n",
                "| table | rows | clients | streams at once | read s | M rows/s (all clients) | idle RSS MB | "
                "VmHWM MB | max sampled RSS MB | goal |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for m in mem:
            t, st, rd = m["table"], m["staged"], m["read"]
            n_ep = len(st.info.endpoints)
            streams = 1 if m["clients"] == 1 else (m["clients"] if args.client_streams == "seq" else m["clients"] * n_ep)
            # Issue 16's targets: one client < 128 MB at any table size, 16 clients < 512 MB.
            goal_mb = 128 if m["clients"] == 1 else 512
            ok = m["hwm_kb"] / 1024 < goal_mb
            rep.add(f"| `{t.qualified}` | {t.rows:,} | {m['clients']} | {streams} | {rd.seconds:.1f} | "
                    f"{rd.rows_per_s / 1e6:.2f} | {m['idle_kb'] / 1024:.0f} | {m['hwm_kb'] / 1024:.0f} | "
                    f"{m['max_rss_kb'] / 1024:.0f} | < {goal_mb} MB: {'met' if ok else '**not met**'} |")
            rep.target(f"peak RSS, `{t.name}`, {m['clients']} client{'s' if m['clients'] > 1 else ''}",
                       f"{m['hwm_kb'] / 1024:.0f} MB", f"< {goal_mb} MB", ok)
        rep.add("")
        for m in mem:
            st = m["staged"]
            extra = (f"; then the same client reading all {len(st.info.endpoints)} endpoints at once: VmHWM "
                     f"{m['hwm_par_kb'] / 1024:.0f} MB" if "hwm_par_kb" in m else "")
            rep.add(f"- `{m['table'].qualified}`, {m['clients']} client(s): {len(st.info.endpoints)} endpoints, "
                    f"{st.row_group_summary()}; VmHWM after GetFlightInfo {m['stage_hwm_kb'] / 1024:.0f} MB{extra}")
        rep.add("")

    # 4. planning
    pl = res.get("planning")
    if pl:
        small = pl["table"]
        full = pl["full"]
        over_small = med(w - u for w, u in full)
        rep.add("## 4. Planning overhead: GetFlightInfo minus its UNLOAD\n",
                "The UNLOAD's own time is the increase of the server's `redshift_flight_unload_duration_seconds` "
                "histogram sum over the call (the UNLOAD statement, retries included); the rest is planning: catalog "
                "(cached: an earlier call warmed it), `SELECT MAX(key)` for `next_cursor`, building the UNLOAD, reading "
                "the manifest and each staged file's Parquet footer from S3 (" + (
                    "moto copies the whole object for every ranged GET, so footers of large files cost more here "
                    "than on S3" if suite.s3_name == "moto" else f"{suite.s3_name}") + "), signing tickets, and the "
                "gRPC round trip itself. PATH descriptors (full snapshots) unless said otherwise.\n",
                "| request | calls | GetFlightInfo ms | UNLOAD ms | overhead ms | of which MAX(key) through the emulator ms |",
                "| --- | ---: | ---: | ---: | ---: | ---: |")
        rep.add(f"| `{small.qualified}` ({small.rows:,} rows), full | {len(full)} | {med(w for w, _ in full) * 1e3:.1f} | "
                f"{med(u for _, u in full) * 1e3:.1f} | **{over_small * 1e3:.1f}** | {pl['max_small'] * 1e3:.1f} |")
        e2e_fl = e2e["runs"]["flight"] if e2e else []
        inc = e2e.get("incremental") if e2e else None
        over_li = None
        if e2e_fl:
            over_li = med(x.gfi_seconds - x.unload_seconds for x in e2e_fl)
            rep.add(f"| `{e2e['table'].qualified}`, full (the end-to-end rounds) | {len(e2e_fl)} | "
                    f"{med(x.gfi_seconds for x in e2e_fl) * 1e3:.0f} | {med(x.unload_seconds for x in e2e_fl) * 1e3:.0f} | "
                    f"**{over_li * 1e3:.1f}** | {inc['max_seconds'] * 1e3:.1f} |" if inc else
                    f"| `{e2e['table'].qualified}`, full (the end-to-end rounds) | {len(e2e_fl)} | "
                    f"{med(x.gfi_seconds for x in e2e_fl) * 1e3:.0f} | {med(x.unload_seconds for x in e2e_fl) * 1e3:.0f} | "
                    f"**{over_li * 1e3:.1f}** | |")
        big = []
        for tp in res.get("throughput", []):
            bt, calls, (w1, u1) = tp["table"], tp.get("plan", []), tp["first_plan"]
            if calls:
                over = med(w - u for w, u in calls)
                big.append((bt, over))
                rep.add(f"| `{bt.qualified}` ({bt.rows:,} rows x {len(tp['staged'].info.schema)} columns, "
                        f"{len(tp['staged'].files)} files), full (the throughput phase's server) | {len(calls)} | "
                        f"{med(w for w, _ in calls) * 1e3:.0f} | {med(u for _, u in calls) * 1e3:.0f} | "
                        f"**{over * 1e3:.1f}** | |")
            rep.add(f"| `{bt.qualified}`, the server's first GetFlightInfo (catalog not cached yet) | 1 | "
                    f"{w1 * 1e3:.0f} | {u1 * 1e3:.0f} | {(w1 - u1) * 1e3:.1f} | |")
        rep.add(f"| `{small.qualified}`, GetSchema (cached catalog, no Redshift query: the RPC floor) | "
                f"{len(pl['get_schema'])} | {med(pl['get_schema']) * 1e3:.1f} | 0 | {med(pl['get_schema']) * 1e3:.1f} | |")
        rep.add(f"| `{small.qualified}`, incremental, nothing new (no UNLOAD) | {len(pl['empty'])} | "
                f"{med(pl['empty']) * 1e3:.1f} | 0 | {med(pl['empty']) * 1e3:.1f} | |")
        if inc:
            rep.add(f"| `{e2e['table'].qualified}`, incremental on `{inc['key']}`, nothing new (no UNLOAD) | "
                    f"{len(inc['times'])} | {med(inc['times']) * 1e3:.1f} | 0 | {med(inc['times']) * 1e3:.1f} | "
                    f"{inc['max_above_seconds'] * 1e3:.1f} (`MAX` above the cursor) |")
        rep.add("")
        if inc:
            rep.add(f"The replication key of `{e2e['table'].qualified}` is `{inc['key']}` (inferred), so every GetFlightInfo "
                    f"on it runs `SELECT MAX({inc['key']})` first ({inc['max_seconds'] * 1e3:.1f} ms here). Redshift "
                    "answers it from zone maps (block min/max); the suite gives PostgreSQL an index on the key to "
                    "play that part, since a full scan (about 350 ms at SF1) would measure PostgreSQL, not the "
                    "server.\n")
        reuse = res.get("reuse")
        if reuse:
            rep.add(f"Snapshot reuse (`snapshot_reuse_seconds` 300, a separate server): the first GetFlightInfo "
                    f"{reuse['first']:.2f} s; a second one within the window {reuse['second'] * 1e3:.1f} ms, "
                    f"{reuse['unloads']} UNLOAD(s), {'the same run' if reuse['shared'] else 'a new run'}.\n")
        rep.target(f"planning overhead, `{small.name}`", f"{over_small * 1e3:.1f} ms", "< 20 ms", over_small < 0.020)
        if over_li is not None:
            rep.target(f"planning overhead, `{e2e['table'].name}`", f"{over_li * 1e3:.1f} ms", "< 20 ms", over_li < 0.020)
        for bt, over in big:
            rep.target(f"planning overhead, `{bt.name}` (throughput phase)", f"{over * 1e3:.1f} ms", "< 20 ms",
                       over < 0.020)
        rep.target(f"GetFlightInfo, incremental with nothing new, `{small.name}`", f"{med(pl['empty']) * 1e3:.1f} ms",
                   "as it comes", None)
        if inc:
            rep.target(f"GetFlightInfo, incremental with nothing new, `{e2e['table'].name}`",
                       f"{med(inc['times']) * 1e3:.1f} ms", "as it comes", None)
    # 5. Flight SQL
    flight_sql.report(rep, res.get("flight_sql"), args)
    if suite.notes:
        rep.add("## Notes\n", *[f"- {n}" for n in suite.notes], "")
    return rep.text()


# ------------------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hardware", action="store_true",
                   help="issue 16, against the hardware: the throughput phase (DoGet, pyarrow from S3, from local disk, "
                   "pyarrow's reference Flight server) and planning (also on lineitem SF1) on the fast S3; "
                   "= --s3 fast --big-plan-calls 3 --skip-dictionary --skip-e2e --skip-memory --skip-flight-sql")
    p.add_argument("--s3", choices=["testbed", "fast", "moto"], default=None,
                   help="the S3 server: the test bed's (TESTBED_S3_ENDPOINT; the default), fast (testbed-fast-s3, "
                   "s3s-fs with faster GETs: the test bed's with TESTBED_S3=fast, else one of the suite's own; the "
                   "default of --hardware) or moto")
    p.add_argument("--big-plan-calls", type=int, default=None,
                   help="GetFlightInfo calls (each an UNLOAD) for the planning overhead on lineitem in the throughput "
                   "phase (default 0, 3 with --hardware)")
    p.add_argument("--skip-reference", action="store_true",
                   help="no reads from pyarrow's reference Flight server in the throughput phase")
    p.add_argument("--repeats", type=int, default=3, help="rounds of the throughput, end-to-end and Flight SQL SELECT * phases (default 3)")
    p.add_argument("--sf5", action="store_true", help="also lineitem at scale factor 5 in the memory phase "
                   "(30M rows: the first load takes several minutes)")
    p.add_argument("--wide-rows", type=int, default=1_000_000, help="rows of bench.wide100 (default 1,000,000)")
    p.add_argument("--clients", type=int, default=16, help="clients of the many-clients memory case (default 16)")
    p.add_argument("--client-streams", choices=["seq", "par"], default="seq",
                   help="in the many-clients case each client reads its endpoints one at a time (seq, default) or all at once")
    p.add_argument("--max-workers", type=int, default=16, help="threads of the parallel reads (one per endpoint or file, at most this)")
    p.add_argument("--plan-calls", type=int, default=7, help="GetFlightInfo calls per planning figure (default 7)")
    p.add_argument("--cx-partitions", type=int, default=2, help="ConnectorX partition_num (default 2)")
    p.add_argument("--skip-copy", action="store_true", help="no psycopg COPY csv reference line in the end-to-end phase")
    p.add_argument("--skip-wide", action="store_true", help="no bench.wide100")
    p.add_argument("--skip-dictionary", action="store_true",
                   help="no DoGet of lineitem with {\"dictionary\": true} in the throughput phase")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-e2e", action="store_true", help="no end-to-end phase (and no lineitem planning figure)")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--skip-planning", action="store_true")
    p.add_argument("--skip-flight-sql", action="store_true",
                   help="no Flight SQL phase (ADBC: direct vs UNLOAD aggregate, SELECT * vs the plain Flight read)")
    p.add_argument("--agg-repeats", type=int, default=7,
                   help="rounds of the Flight SQL 1-row aggregates (default 7; they take about a second each)")
    p.add_argument("--fsql-queue-size", type=int, default=0,
                   help="also read SELECT * through ADBC with this adbc.rpc.result_queue_size (default: not)")
    p.add_argument("--perf", action="store_true", help="perf-profile the server during one extra DoGet pass on lineitem SF1")
    p.add_argument("--perf-out", type=Path, help="write the full perf report here")
    p.add_argument("--keep-staged", action="store_true", help="do not delete the staged S3 prefixes")
    p.add_argument("--local-dir", type=Path, default=None, help="where the local-disk copies go (default: $TMPDIR)")
    p.add_argument("--results", type=Path, default=ROOT / "bench/results/latest.md")
    p.add_argument("--server-bin", type=Path, default=ROOT / "target/release/redshift-flight")
    p.add_argument("--emulator-bin", default=str(ROOT / "target/release/redshift-emulator"),
                   help="emulator binary the suite starts; 'testbed' uses the test bed's running emulator")
    args = p.parse_args()
    if args.hardware:
        args.s3 = args.s3 or "fast"
        args.big_plan_calls = 3 if args.big_plan_calls is None else args.big_plan_calls
        args.skip_dictionary = args.skip_e2e = args.skip_memory = args.skip_flight_sql = True
    args.s3 = args.s3 or "testbed"
    args.big_plan_calls = args.big_plan_calls or 0
    args.server_extra = {}
    if args.emulator_bin == "testbed" and args.s3 != "testbed":
        p.error("--emulator-bin testbed writes to the test bed's S3: it needs --s3 testbed")
    if args.repeats < 1 or args.clients < 1 or args.plan_calls < 1 or args.agg_repeats < 1:
        p.error("--repeats, --clients, --plan-calls and --agg-repeats must be positive")
    if not args.server_bin.exists():
        sys.exit(f"{args.server_bin} not found: cargo build --release --bin redshift-flight")

    started = dt.datetime.now(dt.timezone.utc)
    t_start = time.perf_counter()
    pg_url = b.env("TESTBED_PG_URL")

    # data
    b.drop_obsolete(pg_url)
    sf1 = b.fill_expected(pg_url, b.ensure_lineitem(pg_url, 1))
    sf5 = b.fill_expected(pg_url, b.ensure_lineitem(pg_url, 5)) if args.sf5 and not args.skip_memory else None
    wide = b.fill_expected(pg_url, b.ensure_wide(pg_url, args.wide_rows)) if not args.skip_wide and not args.skip_throughput else None
    small = (b.fill_expected(pg_url, b.ensure_small(pg_url))
             if not args.skip_planning or not args.skip_flight_sql else None)

    workdir = Path(tempfile.mkdtemp(prefix="redshift-flight-bench."))
    # private copies: other builds sharing target/ must not replace a binary mid-run
    args.server_bin_shown = f"`{args.server_bin}` (release, built {built(args.server_bin)}, {git_describe()})"
    args.server_bin = Path(shutil.copy2(args.server_bin, workdir / "redshift-flight"))
    # The S3 server: every part of the suite (its emulator, servers, S3 client, client processes) reads
    # TESTBED_S3_ENDPOINT.
    fast_s3 = None
    if args.s3 == "fast" and os.environ.get("TESTBED_S3") != "fast":
        fast_s3 = hardware.FastS3(workdir)
        atexit.register(fast_s3.stop)  # also when the start of something else exits the suite
        fast_s3.start()
        os.environ["TESTBED_S3_ENDPOINT"] = fast_s3.endpoint
    elif args.s3 == "moto":
        os.environ["TESTBED_S3_ENDPOINT"] = os.environ.get("TESTBED_MOTO_ENDPOINT") or b.env("TESTBED_S3_ENDPOINT")
    emulator = None
    if args.emulator_bin == "testbed":
        args.emulator_shown = ("the test bed's emulator (a debug build, tests/testbed/up) on port "
                               f"{b.env('TESTBED_REDSHIFT_PORT')}")
    else:
        emu_bin = Path(args.emulator_bin)
        if not emu_bin.exists():
            sys.exit(f"{emu_bin} not found: cargo build --release -p redshift-emulator (or --emulator-bin testbed)")
        profile = "release" if "/release/" in str(emu_bin) else "debug" if "/debug/" in str(emu_bin) else "?"
        args.emulator_shown = (f"the suite's own emulator `{emu_bin}` ({profile} build, built {built(emu_bin)}, "
                               "4 slices, default 32 MB row groups)")
        emulator = b.Emulator(Path(shutil.copy2(emu_bin, workdir / "redshift-emulator")), workdir)
        emulator.start()

    s3 = b.S3()
    suite = Suite(args, s3, workdir, emulator)
    if fast_s3:  # listening on port 0: not found by its command line
        suite.s3_pid, suite.s3_name = fast_s3.pid, "testbed-fast-s3"
    suite.results["s3_features"] = feats = hardware.features(s3)
    if not (feats["PUT If-None-Match: *"] == "ok" and feats["PUT If-Match"] == "ok"):
        # the cluster claims (single flight across replicas) need conditional PUTs
        args.server_extra = {"snapshot_reuse_scope": "replica"}
        suite.notes.append(f"{suite.s3_name} lacks conditional PUTs: servers run with snapshot_reuse_scope replica")
    with psycopg.connect(pg_url) as conn:
        suite.pg_version = "PostgreSQL " + conn.execute("SHOW server_version").fetchone()[0]
    suite.results["tables"] = [t for t in (sf1, sf5, wide, small) if t]
    ok = False
    try:
        if not args.skip_planning or not args.skip_e2e:
            server = suite.server("e2e", metrics=True)
            try:
                if not args.skip_planning:
                    suite.results["planning"] = suite.planning(server, small) | {"table": small}
                if not args.skip_e2e:
                    import connectorx

                    suite.results["e2e"] = suite.end_to_end(server, sf1) | {
                        "table": sf1, "cx_version": connectorx.__version__,
                        "reuse_key": "snapshot_reuse_seconds" in server.supported_keys()}
            finally:
                server.stop()
            if not args.skip_e2e:
                suite.results["reuse"] = suite.snapshot_reuse(sf1)
        if not args.skip_flight_sql:
            suite.results["flight_sql"] = flight_sql.FlightSqlPhase(suite).run(sf1, small)
        if not args.skip_throughput:
            suite.results["throughput"] = [suite.throughput(t, profile=args.perf and t is sf1) for t in (sf1, wide) if t]
        if not args.skip_memory:
            suite.results["memory"] = [suite.memory(t, n) for t in (sf1, sf5) if t for n in (1, args.clients)]
        ok = True
    finally:
        if args.keep_staged:
            log(f"keeping staged runs: {suite.run_prefixes}")
        else:
            suite.cleanup()
        if emulator:
            emulator.stop()
        if fast_s3:
            fast_s3.stop()
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"configuration and logs kept in {workdir}")

    text = report(args, suite, started, time.perf_counter() - t_start)
    print(text)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text)
    log(f"written {args.results}")


if __name__ == "__main__":
    main()
