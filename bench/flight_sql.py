"""The Flight SQL phase of the benchmark suite (issue 13), run by `bench/suite.py` unless
`--skip-flight-sql`: queries through ADBC (`adbc_driver_flightsql.dbapi`, `cursor.execute` +
`fetch_arrow_table`), the way a Flight SQL user reads.

- **1-row aggregate, direct vs UNLOAD.** `SELECT count(*) AS n, sum(l_quantity) AS q FROM
  bench.lineitem_sf1` (and the same shape on `bench.plan_small`, where the query itself costs
  nothing) on a server with the default `direct_max_rows` (Redshift's EXPLAIN estimates 1 row, so
  DoGet runs the query on the connection through a cursor) and on one with `direct_max_rows` 0
  (always UNLOAD). The path is checked from the FlightInfo's app_metadata (`"direct": true` /
  a `run_id`) before the rounds and from the UNLOAD histogram in every round; both answers must
  equal PostgreSQL's. psycopg on PostgreSQL directly is the floor (the scan itself), also through a
  server-side cursor (no parallel workers), as both paths run it (the server DECLAREs a cursor for the
  direct path, the emulator one for an UNLOAD).
- **`SELECT *` through ADBC vs the plain Flight read.** `SELECT * FROM bench.lineitem_sf1` via ADBC
  (estimated 6M rows: staged by UNLOAD) against the suite's plain end-to-end read of the same table
  (GetFlightInfo on a PATH descriptor + every DoGet in parallel, `Suite.flight_e2e`), on the same
  server; rows and sum(l_orderkey) checked against PostgreSQL as for every read.

Imports: benchlib (servers, S3, tables, CPU accounting), pyarrow.flight, adbc_driver_flightsql,
psycopg; the suite object it is given (`bench/suite.py`) for its servers, checks and cleanup.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from decimal import Decimal

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight

import benchlib as b
from benchlib import CALL, S3_PREFIX, CpuMeter, Table, log

SQL_COMMAND = "type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
AGGREGATE = "SELECT count(*) AS n, sum({column}) AS q FROM {table}"
QUEUE_SIZE = "adbc.rpc.result_queue_size"  # batches the Go driver buffers per endpoint (default 5)


def med(values):
    values = list(values)
    return statistics.median(values) if values else float("nan")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(tag: int, data: bytes) -> bytes:
    return _varint(tag << 3 | 2) + _varint(len(data)) + data


def statement(query: str) -> flight.FlightDescriptor:
    """A Flight SQL CommandStatementQuery descriptor (a protobuf Any), encoded by hand."""
    inner = _field(1, query.encode())
    return flight.FlightDescriptor.for_command(_field(1, SQL_COMMAND.encode()) + _field(2, inner))


def adbc_read(uri: str, query: str, options: dict[str, str] | None = None) -> tuple[pa.Table, float, float]:
    """(result, seconds of connect + execute, seconds of fetch_arrow_table) of one ADBC query on a
    new connection. The Go driver starts every endpoint's DoGet at the end of execute and returns
    batches endpoint by endpoint, buffering `adbc.rpc.result_queue_size` batches per endpoint."""
    from adbc_driver_flightsql import dbapi

    t0 = time.perf_counter()
    with dbapi.connect(uri, autocommit=True) as conn, conn.cursor() as cur:
        if options:
            cur.adbc_statement.set_options(**options)
        cur.execute(query)
        t1 = time.perf_counter()
        table = cur.fetch_arrow_table()
        t2 = time.perf_counter()
    return table, t1 - t0, t2 - t1


def plain_values(table: pa.Table) -> list[tuple]:
    """Rows as tuples; text answers of NUMERIC without precision become Decimal, for comparison."""
    return [tuple(Decimal(v) if isinstance(v, str) else v for v in row.values()) for row in table.to_pylist()]


@dataclass
class Run:
    seconds: float
    execute_seconds: float = 0.0
    fetch_seconds: float = 0.0
    gfi_seconds: float = 0.0
    unloads: int = 0
    unload_seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)


class FlightSqlPhase:
    def __init__(self, suite):
        self.suite, self.args, self.s3 = suite, suite.args, suite.s3

    # -- staged runs that ADBC leaves behind (it does not show the FlightInfo's run id) ----------

    def run_prefixes(self) -> set[str]:
        out = set()
        for page in self.s3.boto.get_paginator("list_objects_v2").paginate(
                Bucket=self.s3.bucket, Prefix=f"{S3_PREFIX}/", Delimiter="/"):
            out.update(p["Prefix"] for p in page.get("CommonPrefixes", []))
        return out

    def forget_new_runs(self, before: set[str]) -> int:
        """Deletes the runs staged since `before` (moto keeps every object in memory)."""
        new = self.run_prefixes() - before
        for prefix in new:
            self.suite.forget_run(prefix[len(S3_PREFIX) + 1:].rstrip("/"))
        return len(new)

    def path_of(self, server: b.Server, query: str) -> dict:
        """The app_metadata of a GetFlightInfo of `query` as a Flight SQL statement (its run deleted)."""
        client = server.client()
        try:
            info = client.get_flight_info(statement(query), options=CALL)
        finally:
            client.close()
        meta = json.loads(info.app_metadata or b"{}")
        self.suite.note_run(meta)
        self.suite.forget_run(meta.get("run_id"))
        return meta

    def adbc_round(self, server: b.Server, query: str, meter: CpuMeter, want_unloads: int,
                   options: dict[str, str] | None = None) -> tuple[Run, pa.Table]:
        before_runs = self.run_prefixes() if want_unloads else set()
        u0, c0 = server.unload_totals()
        snap = meter.snapshot()
        t0 = time.perf_counter()
        result, execute, fetch = adbc_read(server.uri, query, options)
        seconds = time.perf_counter() - t0
        cpu = CpuMeter.diff(snap, meter.snapshot())
        u1, c1 = server.unload_totals()
        if c1 - c0 != want_unloads:
            raise AssertionError(f"{query!r} on server {server.name}: {c1 - c0} UNLOADs, expected {want_unloads} "
                                 f"({'the UNLOAD path' if want_unloads else 'the direct path'})")
        if want_unloads:
            self.forget_new_runs(before_runs)
        return Run(seconds, execute, fetch, unloads=c1 - c0, unload_seconds=u1 - u0, cpu=cpu), result

    # -- 1. the 1-row aggregate -----------------------------------------------------------------

    def aggregate(self, direct: b.Server, unload: b.Server, table: Table, column: str, rounds: int) -> dict:
        query = AGGREGATE.format(column=column, table=table.qualified)
        meta_direct, meta_unload = self.path_of(direct, query), self.path_of(unload, query)
        if meta_direct.get("direct") is not True:
            raise AssertionError(f"{query!r}: the default server did not answer directly: {meta_direct}")
        if not meta_unload.get("run_id") or meta_unload.get("direct"):
            raise AssertionError(f"{query!r}: the direct_max_rows 0 server did not stage it: {meta_unload}")
        with psycopg.connect(self.suite.pg_url) as conn:
            want = [tuple(conn.execute(query).fetchone())]
        meter = self.suite.meter(None)
        meter_direct, meter_unload = self.suite.meter(direct), self.suite.meter(unload)
        runs: dict[str, list[Run]] = {"direct": [], "unload": [], "postgres": [], "postgres-cursor": []}

        def pg(cursor: bool) -> Run:
            """The query on PostgreSQL directly; with `cursor`, through a server-side cursor, as the
            direct path's query and the emulator's UNLOAD run (PostgreSQL plans a cursor's query without
            parallel workers)."""
            t0 = time.perf_counter()
            with psycopg.connect(self.suite.pg_url) as conn:
                if cursor:
                    with conn.cursor("bench_aggregate") as cur:
                        cur.execute(query)
                        got = cur.fetchall()
                else:
                    got = conn.execute(query).fetchall()
            if [tuple(r) for r in got] != want:
                raise AssertionError(f"{query!r} on PostgreSQL: {got} then {want}")
            return Run(time.perf_counter() - t0)

        fns = {
            "direct": lambda: self.adbc_round(direct, query, meter_direct, 0),
            "unload": lambda: self.adbc_round(unload, query, meter_unload, 1),
        }
        log(f"Flight SQL aggregate {query!r}: direct path {meta_direct}, UNLOAD path run {meta_unload['run_id']}; "
            f"PostgreSQL says {want}")
        for name in ("direct", "unload"):  # a warm-up each (connections, catalog, PostgreSQL's cache)
            fns[name]()
        results = {}
        for i in range(rounds):
            order = list(runs) if i % 2 == 0 else list(reversed(runs))
            for mode in order:
                if mode.startswith("postgres"):
                    snap = meter.snapshot()
                    run = pg(cursor=mode == "postgres-cursor")
                    run.cpu = CpuMeter.diff(snap, meter.snapshot())
                else:
                    run, result = fns[mode]()
                    got = plain_values(result)
                    if got != want:
                        raise AssertionError(f"{query!r} via ADBC, {mode} path: {got}; PostgreSQL: {want}")
                    if mode in results and not results[mode].equals(result):
                        raise AssertionError(f"{query!r}: {mode} path answered differently between rounds")
                    results[mode] = result
                runs[mode].append(run)
            log(f"  round {i + 1}/{rounds}: direct {runs['direct'][-1].seconds * 1e3:.0f} ms, UNLOAD "
                f"{runs['unload'][-1].seconds * 1e3:.0f} ms (of which UNLOAD {runs['unload'][-1].unload_seconds * 1e3:.0f}"
                f" ms), PostgreSQL {runs['postgres'][-1].seconds * 1e3:.0f} ms (through a cursor "
                f"{runs['postgres-cursor'][-1].seconds * 1e3:.0f} ms)")
        if not results["direct"].schema.equals(results["unload"].schema):
            raise AssertionError(f"{query!r}: schemas differ:\n{results['direct'].schema}\nvs\n{results['unload'].schema}")
        return {"table": table, "query": query, "runs": runs, "estimated_rows": meta_direct.get("estimated_rows"),
                "schema": results["direct"].schema, "answer": want[0]}

    # -- 2. SELECT * through ADBC vs the plain Flight read ----------------------------------------

    def select_all(self, server: b.Server, table: Table) -> dict:
        query = f"SELECT * FROM {table.qualified}"
        meter = self.suite.meter(server)
        seen: set[str] = set()
        runs: dict[str, list[Run]] = {"adbc": [], "plain": []}
        if self.args.fsql_queue_size:
            runs["adbc-queue"] = []
        queue = {QUEUE_SIZE: str(self.args.fsql_queue_size)}
        for i in range(self.args.repeats):
            order = list(runs) if i % 2 == 0 else list(reversed(runs))
            log(f"Flight SQL SELECT * round {i + 1}/{self.args.repeats}: {', '.join(order)}")
            for mode in order:
                if mode == "plain":
                    snap = meter.snapshot()
                    t0 = time.perf_counter()
                    e2e, result = self.suite.flight_e2e(server, table, seen)
                    run = Run(time.perf_counter() - t0, gfi_seconds=e2e.gfi_seconds, unloads=1,
                              unload_seconds=e2e.unload_seconds, cpu=CpuMeter.diff(snap, meter.snapshot()))
                    run.fetch_seconds = e2e.seconds - e2e.gfi_seconds
                    self.suite.forget_run(e2e.run_id)
                else:
                    run, result = self.adbc_round(server, query, meter, 1, queue if mode == "adbc-queue" else None)
                key_sum = pc.sum(result.column(table.key)).as_py() or 0
                self.suite.check(f"Flight SQL {mode}", result.num_rows, key_sum, table)
                runs[mode].append(run)
                log(f"  {mode:10s} {result.num_rows:>11,} rows {run.seconds:7.2f}s "
                    f"{result.num_rows / run.seconds / 1e6:6.2f} Mrows/s (UNLOAD {run.unload_seconds:.2f}s, "
                    + (f"GetFlightInfo {run.gfi_seconds:.2f}s, DoGet {run.fetch_seconds:.2f}s) " if mode == "plain" else
                       f"execute {run.execute_seconds:.2f}s, fetch_arrow_table {run.fetch_seconds:.2f}s) ")
                    + " ".join(f"{k}={v:.1f}s" for k, v in run.cpu.items()))
                del result
        return {"table": table, "runs": runs}

    def run(self, sf1: Table, small: Table | None) -> dict:
        direct = self.suite.server("fsql", metrics=True)
        unload = self.suite.server("fsql-unload", metrics=True, extra={"direct_max_rows": "0"})
        out: dict = {"aggregates": []}
        try:
            rounds = self.args.agg_repeats
            out["aggregates"].append(self.aggregate(direct, unload, sf1, "l_quantity", rounds))
            if small:
                out["aggregates"].append(self.aggregate(direct, unload, small, small.key, rounds))
        finally:
            unload.stop()
        try:
            out["select_all"] = self.select_all(direct, sf1)
        finally:
            direct.stop()
        return out


# ------------------------------------------------------------------------------------------------
# Report


def report(rep, res: dict | None, args) -> None:
    """Section 5 of the report and its summary rows (`rep` is the suite's Report)."""
    if not res:
        return
    rep.add("## 5. Flight SQL through ADBC\n",
            "ADBC's Python DB-API (`adbc_driver_flightsql.dbapi`, Go driver): a new connection per query, "
            "`cursor.execute` (GetFlightInfo of a `CommandStatementQuery`) + `fetch_arrow_table` (DoGet of every "
            "endpoint). Every answer is checked against PostgreSQL.\n")
    aggs = res.get("aggregates", [])
    if aggs:
        rep.add("### 1-row aggregate: on the connection vs staged by UNLOAD\n",
                "Two servers of the same binary: the default `direct_max_rows` (100000; Redshift's EXPLAIN estimates "
                "1 row, so the FlightInfo's one endpoint runs the query through a cursor at DoGet: app_metadata "
                "`\"direct\": true`, no UNLOAD in the histogram) and `direct_max_rows` 0 (always UNLOAD: a `run_id`, "
                "one UNLOAD per query). One warm-up query on each first; rounds alternate the order. PostgreSQL "
                "directly (psycopg, a new connection) is the floor: the scan itself; through a server-side cursor, "
                "as both paths run it (the server DECLAREs one for the direct path, the emulator one for an UNLOAD), "
                "PostgreSQL plans it without parallel workers (Redshift has no such difference).\n",
                "| query | path | median ms | of which UNLOAD ms | execute ms | fetch ms | CPU s server | "
                "CPU s emulator | CPU s S3 | UNLOAD / direct | per round |",
                "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for agg in aggs:
            runs = agg["runs"]
            per = [u.seconds / d.seconds for d, u in zip(runs["direct"], runs["unload"])]
            agg["ratio"] = med(per)
            for mode, label in [("direct", "direct (cursor at DoGet)"), ("unload", "UNLOAD (`direct_max_rows` 0)"),
                                ("postgres", "PostgreSQL directly (psycopg)"),
                                ("postgres-cursor", "PostgreSQL directly, server-side cursor")]:
                rs = runs[mode]
                adbc = not mode.startswith("postgres")
                rep.add(f"| `{agg['query']}` | {label} | {med(x.seconds for x in rs) * 1e3:.0f} | "
                        + (f"{med(x.unload_seconds for x in rs) * 1e3:.0f}" if mode == "unload" else "") + " | "
                        + (f"{med(x.execute_seconds for x in rs) * 1e3:.0f} | {med(x.fetch_seconds for x in rs) * 1e3:.0f}"
                           if adbc else " | ")
                        + f" | {med(x.cpu.get('server', 0) for x in rs):.2f} | {med(x.cpu.get('emulator', 0) for x in rs):.2f} | "
                        f"{med(x.cpu.get('s3', 0) for x in rs):.2f} | "
                        + (f"**{agg['ratio']:.2f}x** | {', '.join(f'{p:.2f}' for p in per)} |" if mode == "unload" else " | |"))
        rep.add("")
        for agg in aggs:
            rep.add(f"- `{agg['query']}`: EXPLAIN estimated {agg['estimated_rows']} row(s); answer "
                    f"{', '.join(f'{f.name} = {v} ({f.type})' for f, v in zip(agg['schema'], agg['answer']))}, "
                    "equal on both paths and to PostgreSQL's")
        rep.add("")
    sa = res.get("select_all")
    if sa:
        t, runs = sa["table"], sa["runs"]
        rep.add(f"### `SELECT * FROM {t.qualified}`: ADBC vs the plain Flight read\n",
                f"The same server (default `direct_max_rows`; EXPLAIN estimates {t.rows:,} rows, so the query is staged "
                "by UNLOAD: one UNLOAD per read in the histogram). ADBC: `cursor.execute` + `fetch_arrow_table`; the Go "
                "driver opens every endpoint's DoGet at once but hands batches over endpoint by endpoint, buffering "
                "`adbc.rpc.result_queue_size` (default 5) batches per endpoint, so the later endpoints wait for the "
                "earlier ones to be consumed. Plain Flight: the end-to-end phase's read (GetFlightInfo on a PATH "
                "descriptor, which also runs `SELECT MAX(l_shipdate)` for the cursor, + every DoGet in parallel, "
                "`read_all` + `concat_tables`). Both UNLOAD afresh every round; rows and sum(l_orderkey) checked.\n",
                "| read | median s | M rows/s | UNLOAD s | GetFlightInfo / execute s | DoGet / fetch s | CPU s client | "
                "CPU s server | CPU s S3 | / plain | per round |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        plain = runs["plain"]
        labels = [("adbc", "ADBC `fetch_arrow_table`"),
                  ("adbc-queue", f"ADBC, `{QUEUE_SIZE}` {args.fsql_queue_size}"),
                  ("plain", "plain Flight (GetFlightInfo + parallel DoGet)")]
        for mode, label in labels:
            if mode not in runs:
                continue
            rs = runs[mode]
            per = [x.seconds / p.seconds for x, p in zip(rs, plain)]
            sa.setdefault("ratios", {})[mode] = med(per)
            first = med((x.gfi_seconds if mode == "plain" else x.execute_seconds) for x in rs)
            rep.add(f"| {label} | {med(x.seconds for x in rs):.2f} | {t.rows / med(x.seconds for x in rs) / 1e6:.2f} | "
                    f"{med(x.unload_seconds for x in rs):.2f} | {first:.2f} | {med(x.fetch_seconds for x in rs):.2f} | "
                    f"{med(x.cpu.get('client', 0) for x in rs):.1f} | {med(x.cpu.get('server', 0) for x in rs):.1f} | "
                    f"{med(x.cpu.get('s3', 0) for x in rs):.1f} | "
                    + (" |" if mode == "plain" else f"**{med(per):.2f}x** | {', '.join(f'{p:.2f}' for p in per)}") + " |")
        adbc_rest = med(x.seconds - x.unload_seconds for x in runs["adbc"])
        plain_rest = med(x.seconds - x.unload_seconds for x in plain)
        sa["rest_ratio"] = med((a.seconds - a.unload_seconds) / (p.seconds - p.unload_seconds)
                               for a, p in zip(runs["adbc"], plain))
        rep.add("", f"Without the UNLOAD (the emulator's part): ADBC {adbc_rest:.2f} s, plain Flight {plain_rest:.2f} s, "
                f"{sa['rest_ratio']:.2f}x.\n")
    for agg in aggs:
        goal = agg["table"].name == "lineitem_sf1"
        runs = agg["runs"]
        rep.target(f"Flight SQL 1-row aggregate, direct vs UNLOAD (ADBC, `{agg['table'].name}`)",
                   f"{agg['ratio']:.2f}x faster ({med(x.seconds for x in runs['direct']) * 1e3:.0f} ms vs "
                   f"{med(x.seconds for x in runs['unload']) * 1e3:.0f} ms)",
                   ">= 5x" if goal else "as it comes", agg["ratio"] >= 5 if goal else None)
    if sa:
        r = sa["ratios"]["adbc"]
        rep.target(f"ADBC `SELECT *` vs plain Flight read (`{sa['table'].name}`)",
                   f"{r:.2f}x ({med(x.seconds for x in sa['runs']['adbc']):.2f} s vs "
                   f"{med(x.seconds for x in sa['runs']['plain']):.2f} s)", "<= 1.25x", r <= 1.25)
        rep.target(f"ADBC `SELECT *` vs plain Flight read minus the UNLOAD (`{sa['table'].name}`)",
                   f"{sa['rest_ratio']:.2f}x", "as it comes", None)
        if "adbc-queue" in sa["ratios"]:
            rep.target(f"ADBC with `{QUEUE_SIZE}` {args.fsql_queue_size} vs plain Flight read (`{sa['table'].name}`)",
                       f"{sa['ratios']['adbc-queue']:.2f}x", "as it comes", None)
