#!/usr/bin/env python3
"""Replicas behind a load balancer (issue 15): throughput of 1, 2 and 3 redshift-flight replicas behind
the test bed's nginx (tests/testbed/balancer: grpc_pass, round robin per call), UNLOADs per minute, and
concurrent DoGet streams per replica at the stream memory budget.

Run it through `bench/run --replicas [options]` (which sources target/testbed/env, installs
bench/requirements.txt and builds the release server and emulator), or by hand with the test bed's
Python: `source target/testbed/env && $TESTBED_PYTHON bench/replicas.py`. See bench/README.md.

Phases. One cluster per replica count of --counts (default 1,2,3), all running at once and sharing
one ticket secret and their own staging prefix (idle ones cost nothing), all talking to the
benchmark's release emulator; each figure is taken of every cluster in turn, the order alternating
between rounds, so that drift (other work on the machine) favours none:
  throughput  one GetFlightInfo of bench.lineitem_sf1 (endpoint_rows 1: one endpoint per row group;
              every replica of every cluster redeems its tickets), a warm-up pass, then --repeats
              rounds of every endpoint read at once (--streams threads, one shared client connection
              to the cluster's nginx); rows/s and Arrow MB/s, CPU of replicas, nginx, moto and the
              client, and how the rows spread over the replicas. With one replica, the same reads
              straight from it (no balancer) too, right after.
  unloads     --unload-clients threads, each with its own connection to nginx, send GetFlightInfo
              requests (--unload-seconds per cluster, in --unload-rounds turns), every one distinct
              (a `where` filter of its own on bench.plan_small, about 100 rows, mode full: one UNLOAD
              each, no sharing); UNLOADs per minute (from the replicas' unload_duration_seconds
              histograms) and latencies.
Then, on one replica without the balancer, for each budget of --budgets (MB; default 512, the
server's default, and 128):
  memory      K concurrent DoGets (K in --stream-counts), each of one row-group endpoint of lineitem
              SF1, released together, one client connection each; the replica's
              stream_memory_in_use_bytes sampled every 20 ms, its RSS, and per stream when its first
              rows came. A stream takes its row group's compressed bytes from the budget before
              fetching it and holds them until it ends, so streams can wait for memory only once
              the budget is within one row group of full.
Results: stdout and bench/results/replicas.md (--results).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import itertools
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.flight as flight

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as b  # noqa: E402
from benchlib import CALL, ROOT, SCHEMA, CpuMeter, ReadResult, log  # noqa: E402

BALANCER = ROOT / "tests" / "testbed" / "balancer"
PREFIX = "redshift-flight-bench-replicas"  # the replicas' own staging prefix, deleted after each phase
MB = 1e6


def moto_pid() -> int | None:
    """The moto server answering TESTBED_S3_ENDPOINT (found by its port, so that any test bed works)."""
    port = urlparse(b.env("TESTBED_S3_ENDPOINT")).port
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"moto_server") for a in args) and str(port).encode() in args:
            return int(proc.name)
    return None


def med(values) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def pct(values, q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


class Replica(b.Server):
    """A bench server that shares the cluster's ticket secret and staging prefix."""

    def __init__(self, *args, secret: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.secret = secret

    def config(self) -> dict[str, str]:
        return super().config() | {"ticket_secret": self.secret, "s3_prefix": PREFIX}


@dataclass
class Cluster:
    servers: list[Replica]
    port: int
    location: str = ""
    nginx: list[int] = field(default_factory=list)  # master and worker pids

    def client(self) -> flight.FlightClient:
        return flight.FlightClient(self.location)

    def meter(self, emulator: b.Emulator) -> CpuMeter:
        pids = {f"replica{i}": s.pid for i, s in enumerate(self.servers)}
        pids |= {f"nginx{i}": pid for i, pid in enumerate(self.nginx)}
        pids |= {"moto": moto_pid(), "emulator": emulator.pid}
        return CpuMeter(pids)

    def rows_sent(self) -> list[float]:
        return [sum(v for k, v in s.metrics().items() if k.split("{")[0].endswith(("rows_sent", "rows_sent_total")))
                for s in self.servers]

    def unloads(self) -> int:
        return sum(s.unload_totals()[1] for s in self.servers)


def start_cluster(args, n: int, workdir: Path, emulator: b.Emulator, extra: dict[str, str], secret: str) -> Cluster:
    servers = []
    for i in range(n):
        s = Replica(args.server_bin, workdir, f"replica{n}-{i}", redshift_port=emulator.port, metrics=True,
                    extra=extra, secret=secret)
        s.start()
        servers.append(s)
    cluster = Cluster(servers, b.free_port())
    out = subprocess.run([str(BALANCER), "start", str(cluster.port), *(str(s.port) for s in servers)],
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        stop_cluster(cluster)
        sys.exit(f"balancer did not start: {out.stdout}{out.stderr}")
    cluster.location = f"grpc+tcp://127.0.0.1:{cluster.port}"
    master = b.pid_from_file(ROOT / "target" / "testbed" / f"balancer-{cluster.port}" / "nginx.pid")
    if master:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        cluster.nginx = [master, *map(int, children)]
    log(f"{n} replica(s) behind nginx on {cluster.port} (nginx pids {cluster.nginx})")
    return cluster


def stop_cluster(cluster: Cluster) -> None:
    subprocess.run([str(BALANCER), "stop", str(cluster.port)], capture_output=True, timeout=60)
    for s in cluster.servers:
        s.stop()


def lineitem_info(client: flight.FlightClient, table: b.Table) -> flight.FlightInfo:
    info = client.get_flight_info(flight.FlightDescriptor.for_path(SCHEMA, table.name), options=CALL)
    if info.total_records != table.rows:
        raise AssertionError(f"{table.qualified}: total_records {info.total_records}, table {table.rows}")
    return info


def read_all(client: flight.FlightClient, info: flight.FlightInfo, table: b.Table, workers: int) -> ReadResult:
    tasks = [lambda e=e: b.doget_one(client, e, info.schema, table.key) for e in info.endpoints]
    result = b.run_parallel(tasks, workers)
    if (result.rows, result.key_sum) != (table.rows, table.key_sum):
        raise AssertionError(f"read {result.rows} rows, sum {result.key_sum}; table has {table.rows}, {table.key_sum}")
    return result


# ------------------------------------------------------------------------------------------------
# Phases


def in_turn(counts: list[int], r: int) -> list[int]:
    """The replica counts in round r: the order alternates, so drift favours none."""
    return counts if r % 2 == 0 else counts[::-1]


def timed_read(cluster: Cluster, meter: CpuMeter, client, info, table: b.Table, streams: int) -> ReadResult:
    before = meter.snapshot()
    t0 = time.perf_counter()
    result = read_all(client, info, table, streams)
    result.seconds = time.perf_counter() - t0
    result.cpu = CpuMeter.diff(before, meter.snapshot())
    return result


def throughput(args, clusters: dict[int, Cluster], emulator: b.Emulator, table: b.Table) -> dict:
    """One staged run (every replica of every cluster redeems its tickets: they share the ticket
    secret and prefix), read through each cluster's balancer in turn, round after round."""
    counts = sorted(clusters)
    info = lineitem_info(clusters[counts[0]].client(), table)
    streams = min(args.streams, len(info.endpoints))
    clients = {n: c.client() for n, c in clusters.items()}
    meters = {n: c.meter(emulator) for n, c in clusters.items()}
    direct = clusters[counts[0]].servers[0].client() if counts[0] == 1 else None
    out = {n: {"rounds": [], "spread": [], "endpoints": len(info.endpoints), "streams": streams} for n in counts}
    if direct:
        out[1]["direct"] = []
    for n in counts:  # warm-up
        read_all(clients[n], info, table, streams)
    for r in range(args.repeats):
        for n in in_turn(counts, r):
            sent = clusters[n].rows_sent()
            result = timed_read(clusters[n], meters[n], clients[n], info, table, streams)
            out[n]["rounds"].append(result)
            out[n]["spread"].append([a - z for a, z in zip(clusters[n].rows_sent(), sent)])
            log(f"  round {r + 1}, {n} replica(s): {result.seconds:.2f} s, {result.rows_per_s / 1e6:.2f} M rows/s")
            if direct and n == 1:  # the same reads without the balancer, right after
                out[1]["direct"].append(timed_read(clusters[1], meters[1], direct, info, table, streams))
                log(f"  round {r + 1}, 1 replica, no balancer: {out[1]['direct'][-1].seconds:.2f} s")
    return out


def unload_window(args, cluster: Cluster, meter: CpuMeter, small: b.Table, counter, stats: dict) -> None:
    """--unload-clients clients send distinct small GetFlightInfo requests to `cluster` for
    --unload-seconds / --unload-rounds seconds; adds to `stats`."""
    stop = threading.Event()
    lock = threading.Lock()

    def client_loop() -> None:
        client = cluster.client()
        while not stop.is_set():
            k = next(counter)
            command = {"table": small.qualified, "mode": "full", "where": f"id % 100 = {k % 100} AND {k} >= 0"}
            t0 = time.perf_counter()
            try:
                info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(command).encode()), CALL)
                if not info.endpoints:
                    raise AssertionError(f"no endpoints for {command}")
                with lock:
                    stats["latencies"].append(time.perf_counter() - t0)
            except Exception as e:  # noqa: BLE001 - counted and reported
                with lock:
                    stats["errors"].append(f"{type(e).__name__}: {e}")

    count0, before = cluster.unloads(), meter.snapshot()
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(max_workers=args.unload_clients) as pool:
        futures = [pool.submit(client_loop) for _ in range(args.unload_clients)]
        time.sleep(args.unload_seconds / args.unload_rounds)
        stop.set()
        for f in futures:
            f.result()
    stats["seconds"] += time.perf_counter() - t0
    stats["unloads"] += cluster.unloads() - count0
    for k, v in CpuMeter.diff(before, meter.snapshot()).items():
        stats["cpu"][k] = stats["cpu"].get(k, 0.0) + v


def unloads(args, clusters: dict[int, Cluster], emulator: b.Emulator, small: b.Table) -> dict:
    counts = sorted(clusters)
    counter = itertools.count()
    meters = {n: c.meter(emulator) for n, c in clusters.items()}
    stats = {n: {"unloads": 0, "seconds": 0.0, "latencies": [], "errors": [], "cpu": {}} for n in counts}
    for r in range(args.unload_rounds):
        for n in in_turn(counts, r):
            unload_window(args, clusters[n], meters[n], small, counter, stats[n])
            log(f"  round {r + 1}, {n} replica(s): {stats[n]['unloads']} UNLOADs so far, {len(stats[n]['errors'])} errors")
    for st in stats.values():
        st["p50"], st["p90"] = pct(st["latencies"], 0.5), pct(st["latencies"], 0.9)
    return stats


def row_group_bytes(s3: b.S3, run_id: str) -> list[int]:
    """Compressed bytes of every row group of a run (what a stream takes from the budget)."""
    body = s3.boto.get_object(Bucket=s3.bucket, Key=f"{PREFIX}/{run_id}/data/manifest")["Body"].read()
    files = [b.StagedFile(urlparse(e["url"]).path.lstrip("/"), int(e["meta"]["content_length"]),
                          int(e["meta"]["record_count"])) for e in json.loads(body)["entries"]]
    return [size for _rows, size in b.row_groups_of(s3.fs, s3.bucket, files)]


def memory(args, budget_mb: int, workdir: Path, emulator: b.Emulator, table: b.Table, s3: b.S3) -> dict:
    server = Replica(args.server_bin, workdir, f"memory-{budget_mb}", redshift_port=emulator.port, metrics=True,
                     extra={"endpoint_rows": "1", "stream_memory_mb": str(budget_mb)}, secret=secrets.token_hex(32))
    server.start()
    try:
        info = lineitem_info(server.client(), table)
        groups = row_group_bytes(s3, json.loads(info.app_metadata)["run_id"])
        endpoints = list(info.endpoints)
        budget = next(v for k, v in server.metrics().items() if k.endswith("stream_memory_budget_bytes"))
        cases = []
        for k in args.stream_counts:
            cases.append(memory_case(server, endpoints, k, budget))
            c = cases[-1]
            log(f"  budget {budget_mb} MB, {k} streams: peak in use {c['peak'] / MB:.0f} MB, "
                f"{c['seconds']:.1f} s, RSS {c['rss'] / 1024:.0f} MB")
        return {"budget": budget, "groups": groups, "endpoints": len(endpoints), "cases": cases}
    finally:
        server.stop()


def memory_case(server: Replica, endpoints: list, k: int, budget: float) -> dict:
    barrier = threading.Barrier(k + 1)
    first: list[float] = [0.0] * k
    ended: list[float] = [0.0] * k
    rows: list[int] = [0] * k
    clients = [server.client() for _ in range(k)]

    def stream(i: int) -> None:
        barrier.wait()
        reader = clients[i].do_get(endpoints[i % len(endpoints)].ticket, options=CALL)
        for chunk in reader:
            if chunk.data.num_rows and not first[i]:
                first[i] = time.perf_counter()
            rows[i] += chunk.data.num_rows
        ended[i] = time.perf_counter()

    peak, halt = [0.0], threading.Event()

    def sample() -> None:
        while not halt.is_set():
            used = next(v for key, v in server.metrics().items() if key.endswith("stream_memory_in_use_bytes"))
            peak[0] = max(peak[0], used)
            halt.wait(0.02)

    sampler, rss = threading.Thread(target=sample, daemon=True), b.RssSampler(server.pid)
    sampler.start()
    rss.start()
    try:
        with cf.ThreadPoolExecutor(max_workers=k) as pool:
            futures = [pool.submit(stream, i) for i in range(k)]
            barrier.wait()
            t0 = time.perf_counter()
            for f in futures:
                f.result()
        seconds = time.perf_counter() - t0
    except Exception:
        if server.proc and server.proc.poll() is not None:
            log(f"the replica exited with status {server.proc.returncode} during {k} streams")
        raise
    finally:
        halt.set()
        sampler.join()
        max_rss = rss.stop()
        for c in clients:
            c.close()
    latency = [f - t0 for f in first]
    return {"streams": k, "peak": peak[0], "budget": budget, "seconds": seconds, "rss": max_rss,
            "rows": sum(rows), "first_p50": med(latency), "first_max": max(latency)}


# ------------------------------------------------------------------------------------------------
# Report


def cores(r: ReadResult, prefix: str) -> float:
    return sum(v for k, v in r.cpu.items() if k.startswith(prefix)) / r.seconds


def report(args, results: dict, started: float) -> str:
    lines = []
    add = lines.append
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "?")
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"], capture_output=True, text=True).stdout
    dirty = ", src/ differing from it when the report was written" if dirty else ""
    built = dt.datetime.fromtimestamp(args.server_bin.stat().st_mtime, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    add(f"# Replicas behind a load balancer ({dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC)\n")
    add(f"`{' '.join(['bench/replicas.py', *sys.argv[1:]])}`, {(time.monotonic() - started) / 60:.1f} minutes. "
        f"Machine: {os.cpu_count()} vCPU {cpu}, {mem:.0f} GiB, Linux {platform.release()}. Server: release build of "
        f"{built} (HEAD {head} at run time{dirty}); emulator: release build; "
        "nginx: tests/testbed/balancer (one worker process); PostgreSQL, moto, the emulator, nginx, every replica and "
        f"the clients all share the {os.cpu_count()} cores, which bound every figure below.\n")
    tp = results.get("throughput", {})
    if tp:
        one = med(r.rows_per_s for r in tp[min(tp)]["rounds"])
        add(f"## Parallel DoGet through the balancer: bench.lineitem_sf1 ({tp[min(tp)]['endpoints']} row-group endpoints, "
            f"{tp[min(tp)]['streams']} at once, one client connection to nginx; median of {args.repeats} rounds)\n")
        add("| replicas | median s | M rows/s | Arrow MB/s | vs 1 replica | cores: replicas | nginx | moto | client | machine | rows per replica |")
        add("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for n, t in sorted(tp.items()):
            rs = t["rounds"]
            rps = med(r.rows_per_s for r in rs)
            spread = " / ".join(f"{x / 1e6:.1f}M" for x in t["spread"][-1])
            add(f"| {n} | {med(r.seconds for r in rs):.2f} | {rps / 1e6:.2f} | {med(r.mb_per_s for r in rs):.0f} | "
                f"{rps / one:.2f}x | {med(cores(r, 'replica') for r in rs):.2f} | {med(cores(r, 'nginx') for r in rs):.2f} | "
                f"{med(cores(r, 'moto') for r in rs):.2f} | {med(cores(r, 'client') for r in rs):.2f} | "
                f"{med(cores(r, 'machine') for r in rs):.2f} | {spread} |")
            if "direct" in t:
                ds = t["direct"]
                drps = med(r.rows_per_s for r in ds)
                add(f"| 1, no balancer | {med(r.seconds for r in ds):.2f} | {drps / 1e6:.2f} | {med(r.mb_per_s for r in ds):.0f} | "
                    f"{drps / one:.2f}x | {med(cores(r, 'replica') for r in ds):.2f} | - | {med(cores(r, 'moto') for r in ds):.2f} | "
                    f"{med(cores(r, 'client') for r in ds):.2f} | {med(cores(r, 'machine') for r in ds):.2f} | |")
        add("")
    un = results.get("unloads", {})
    if un:
        add(f"## UNLOADs per minute: distinct small GetFlightInfo requests through the balancer ({args.unload_clients} "
            f"clients for {args.unload_seconds:.0f} s; bench.plan_small, about 100 rows each, `max_parallel_workers` 4 per replica)\n")
        add("| replicas | UNLOADs | per minute | vs 1 replica | GetFlightInfo p50 / p90 ms | errors | cores: replicas | emulator | moto | machine |")
        add("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        base = un[min(un)]["unloads"] / un[min(un)]["seconds"]
        for n, u in sorted(un.items()):
            rate = u["unloads"] / u["seconds"]
            c = {k: v / u["seconds"] for k, v in u["cpu"].items()}
            add(f"| {n} | {u['unloads']} | {rate * 60:.0f} | {rate / base:.2f}x | {u['p50'] * 1e3:.0f} / {u['p90'] * 1e3:.0f} | "
                f"{len(u['errors'])} | {sum(v for k, v in c.items() if k.startswith('replica')):.2f} | "
                f"{c.get('emulator', 0):.2f} | {c.get('moto', 0):.2f} | {c.get('machine', 0):.2f} |")
        add("")
    for budget_mb, m in sorted(results.get("memory", {}).items(), reverse=True):
        g = m["groups"]
        fit = int(m["budget"] // max(g))
        full = [c["streams"] for c in m["cases"] if c["peak"] > m["budget"] - max(g)]
        add(f"## Concurrent DoGet streams on one replica, `stream_memory_mb` {budget_mb} (budget {m['budget'] / MB:.0f} MB)\n")
        add(f"Row groups of bench.lineitem_sf1: {len(g)}, {min(g) / MB:.1f}-{max(g) / MB:.1f} MB compressed (median "
            f"{med(g) / MB:.1f} MB); one endpoint each. The budget holds {fit} of the largest at once: more streams "
            f"than that wait for memory. Here the budget came within one row group of full from "
            f"{min(full) if full else 'no'} concurrent streams on.\n")
        add("| streams | peak in use MB | of budget | budget full | first rows p50 / max s | wall s | M rows/s | peak RSS MB |")
        add("| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
        for c in m["cases"]:
            add(f"| {c['streams']} | {c['peak'] / MB:.0f} | {c['peak'] / c['budget']:.0%} | "
                f"{'yes' if c['peak'] > m['budget'] - max(g) else 'no'} | "
                f"{c['first_p50']:.2f} / {c['first_max']:.2f} | {c['seconds']:.1f} | {c['rows'] / c['seconds'] / 1e6:.2f} | "
                f"{c['rss'] / 1024:.0f} |")
        add("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--counts", default="1,2,3", help="replica counts (default 1,2,3)")
    p.add_argument("--repeats", type=int, default=5, help="rounds of the throughput phase (default 5)")
    p.add_argument("--streams", type=int, default=8, help="DoGets at once in the throughput phase (default 8)")
    p.add_argument("--unload-clients", type=int, default=12, help="clients of the UNLOAD phase (default 12)")
    p.add_argument("--unload-seconds", type=float, default=20, help="seconds of UNLOADs per replica count (default 20)")
    p.add_argument("--unload-rounds", type=int, default=2, help="turns those seconds are split into (default 2)")
    p.add_argument("--budgets", default="512,128", help="stream_memory_mb values of the memory phase (default 512,128)")
    p.add_argument("--stream-counts", default="1,4,8,12,16,24,32", help="concurrent streams of the memory phase")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-unloads", action="store_true")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--results", type=Path, default=ROOT / "bench/results/replicas.md")
    p.add_argument("--server-bin", type=Path, default=ROOT / "target/release/redshift-flight")
    p.add_argument("--emulator-bin", type=Path, default=ROOT / "target/release/redshift-emulator")
    args = p.parse_args()
    args.stream_counts = [int(x) for x in args.stream_counts.split(",")]
    counts = [int(x) for x in args.counts.split(",")]
    started = time.monotonic()
    pg_url = b.env("TESTBED_PG_URL")
    lineitem = b.fill_expected(pg_url, b.ensure_lineitem(pg_url, 1))
    small = b.fill_expected(pg_url, b.ensure_small(pg_url))
    s3 = b.S3()
    results: dict = {"throughput": {}, "unloads": {}, "memory": {}}
    with tempfile.TemporaryDirectory(prefix="rsf-bench-replicas-") as tmp:
        workdir = Path(tmp)
        # Copies, so that a concurrent cargo build cannot swap the binaries mid-run.
        for name in ("server_bin", "emulator_bin"):
            copy = workdir / getattr(args, name).name
            copy.write_bytes(getattr(args, name).read_bytes())
            copy.chmod(0o755)
            setattr(args, name + "_copy", copy)
        emulator = b.Emulator(args.emulator_bin_copy, workdir)
        emulator.start()
        server_bin, args.server_bin = args.server_bin, args.server_bin_copy
        try:
            if not (args.skip_throughput and args.skip_unloads):
                # Every cluster at once (idle ones cost nothing), sharing one ticket secret and
                # prefix: their figures are taken in alternating turns under the same conditions.
                secret, clusters = secrets.token_hex(32), {}
                try:
                    for n in counts:
                        clusters[n] = start_cluster(args, n, workdir, emulator, {"endpoint_rows": "1"}, secret)
                    if not args.skip_throughput:
                        log(f"throughput, {counts} replicas in turn")
                        results["throughput"] = throughput(args, clusters, emulator, lineitem)
                    if not args.skip_unloads:
                        log(f"UNLOADs per minute, {counts} replicas in turn")
                        results["unloads"] = unloads(args, clusters, emulator, small)
                finally:
                    for cluster in clusters.values():
                        stop_cluster(cluster)
                    s3.delete_prefix(PREFIX + "/")
            if not args.skip_memory:
                for budget in (int(x) for x in args.budgets.split(",")):
                    log(f"concurrent streams, stream_memory_mb {budget}")
                    try:
                        results["memory"][budget] = memory(args, budget, workdir, emulator, lineitem, s3)
                    finally:
                        s3.delete_prefix(PREFIX + "/")
        finally:
            emulator.stop()
            s3.delete_prefix(PREFIX + "/")
        args.server_bin = server_bin
        text = report(args, results, started)
    print(text)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text + "\n")
    log(f"wrote {args.results}")


if __name__ == "__main__":
    main()
