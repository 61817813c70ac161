"""What replicas agree on through S3 (issue 15): identical requests reaching different replicas share
one UNLOAD (single flight across replicas, a conditional write deciding which replica stages), a
replica killed while holding a request is taken over by a waiting one once its lease passes, and
`cluster_max_parallel_unloads` holds over all replicas. Three real server processes sharing one
staging prefix, the pgwire emulator with slowed UNLOADs, moto as S3; every result is compared with
PostgreSQL."""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime

import pyarrow as pa
import pyarrow.flight as flight
import pytest
from psycopg import sql

from conftest import own_emulator
from replicas_support import keys_under, kill, metrics, replicas
from support import app_metadata, command, path, read_flight, unique

ROWS = 5_000


@pytest.fixture(scope="module")
def tables(pg):
    """A schema of three tables t0..t2 with ROWS rows each."""
    schema = unique("cluster")
    pg.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    for i in range(3):
        pg.execute(
            sql.SQL("CREATE TABLE {}.{} (id bigint PRIMARY KEY, label varchar(40), amount numeric(12,2))").format(
                sql.Identifier(schema), sql.Identifier(f"t{i}")
            )
        )
        pg.execute(
            sql.SQL("INSERT INTO {}.{} SELECT g, md5((g + %s)::text), (g * 1.25)::numeric(12,2) FROM generate_series(1, %s) g").format(
                sql.Identifier(schema), sql.Identifier(f"t{i}")
            ),
            [i, ROWS],
        )
    yield schema
    pg.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def postgres(pg, schema: str, table: str) -> pa.Table:
    rows = pg.execute(
        sql.SQL("SELECT id, label, amount FROM {}.{} ORDER BY id").format(sql.Identifier(schema), sql.Identifier(table))
    ).fetchall()
    return pa.table({"id": [r[0] for r in rows], "label": [r[1] for r in rows], "amount": [r[2] for r in rows]})


def same_rows(got: pa.Table, want: pa.Table) -> None:
    got = got.select(["id", "label", "amount"]).sort_by("id")
    assert got.num_rows == want.num_rows
    for column in ("id", "label", "amount"):
        assert got.column(column).to_pylist() == want.column(column).to_pylist(), column


def unloads(server) -> float:
    """UNLOAD statements the replica ran (its unload_duration_seconds histogram's count)."""
    return metrics(server).get("redshift_flight_unload_duration_seconds_count", 0.0)


def in_threads(*calls):
    """Runs each call in a thread of its own, started in order 100 ms apart; returns their results
    (or exceptions) in order."""
    results: list = [None] * len(calls)

    def run(i, call):
        try:
            results[i] = call()
        except Exception as e:  # noqa: BLE001 - the test inspects it
            results[i] = e

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
        time.sleep(0.1)
    for t in threads:
        t.join(timeout=120)
    return results


def test_identical_requests_on_three_replicas_share_one_unload(testbed, pg, tables, tmp_path):
    want = postgres(pg, tables, "t0")
    with own_emulator(testbed, tmp_path / "emulator", "--unload-delay-ms", "1500") as slow, replicas(
        slow, tmp_path, redshift_schema=tables, staging_grace_seconds="1"
    ) as cluster:
        clients = [s.connect() for s in cluster.servers]
        infos = in_threads(*[lambda c=c: c.get_flight_info(path(tables, "t0")) for c in clients])
        for info in infos:
            assert isinstance(info, flight.FlightInfo), info
        meta = [app_metadata(info) for info in infos]
        assert len({m["run_id"] for m in meta}) == 1, meta
        assert sorted(m["snapshot_reused"] for m in meta) == [False, True, True], meta
        assert sum(unloads(s) for s in cluster.servers) == 1, "one UNLOAD for three replicas"
        # Each answer reads exactly, through its own replica, with tickets of its own reader.
        tickets = [{e.ticket.ticket for e in info.endpoints} for info in infos]
        assert not (tickets[0] & tickets[1]) and not (tickets[1] & tickets[2])
        for client, info in zip(clients, infos):
            same_rows(read_flight(client, info), want)
        # Every reader streamed everything: the run goes after the grace period.
        run = f"{cluster.servers[0].config['s3_prefix']}/{meta[0]['run_id']}/"
        deadline = time.monotonic() + 20
        while keys_under(testbed, run) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert keys_under(testbed, run) == [], "the shared run is deleted once all three readers streamed it"


def test_a_replica_killed_while_staging_is_taken_over_by_a_waiting_one(testbed, pg, tables, tmp_path):
    want = postgres(pg, tables, "t1")
    with own_emulator(testbed, tmp_path / "emulator", "--unload-delay-ms", "3000") as slow, replicas(
        slow, tmp_path, redshift_schema=tables, cluster_lease_seconds="2", staging_ttl_seconds="8",
        sweep_interval_seconds="1",
    ) as cluster:
        holder, waiter = cluster.servers[0], cluster.servers[1]
        results: dict = {}

        def ask(name, server):
            try:
                results[name] = server.connect().get_flight_info(path(tables, "t1"))
            except flight.FlightError as e:
                results[name] = e

        first = threading.Thread(target=ask, args=("holder", holder))
        first.start()
        deadline = time.monotonic() + 30
        while "UNLOAD started" not in holder.stderr_path.read_text(errors="replace"):
            assert time.monotonic() < deadline, "the first replica started its UNLOAD"
            time.sleep(0.05)
        second = threading.Thread(target=ask, args=("waiter", waiter))
        second.start()
        deadline = time.monotonic() + 30
        while "being staged by another replica" not in waiter.stderr_path.read_text(errors="replace"):
            assert time.monotonic() < deadline, "the second replica waits for the first"
            time.sleep(0.05)
        killed_at = time.monotonic()
        kill(holder)
        second.join(timeout=60)
        first.join(timeout=60)
        assert isinstance(results["holder"], flight.FlightError), "the killed replica's caller failed"
        info = results["waiter"]
        assert isinstance(info, flight.FlightInfo), info
        took_over = time.monotonic() - killed_at
        log = waiter.stderr_path.read_text(errors="replace")
        assert "taking over" in log
        assert app_metadata(info)["snapshot_reused"] is False
        assert took_over < 15, f"taken over within a lease and an UNLOAD ({took_over:.1f}s)"
        same_rows(read_flight(waiter.connect(), info), want)
        # What the killed replica's UNLOAD wrote is swept by the survivors once its TTL passes.
        dead = re.search(r"UNLOAD started.*run_id=\"?([0-9A-Za-z-]+)", holder.stderr_path.read_text(errors="replace"))
        assert dead, "the killed replica logged its run"
        prefix = f"{holder.config['s3_prefix']}/{dead.group(1)}/"
        deadline = time.monotonic() + 40
        while keys_under(testbed, prefix) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert keys_under(testbed, prefix) == [], "the killed replica's run is swept"


def unload_intervals(server) -> list[tuple[datetime, datetime]]:
    """(start, end) of every UNLOAD in the replica's log, from the timestamps of its lines."""
    stamp = r"^(?:\x1b\[\S+)?(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z)"
    starts, ends = {}, {}
    for line in server.stderr_path.read_text(errors="replace").splitlines():
        time_match = re.match(stamp, line)
        run = re.search(r"run_id=\"?([0-9A-Za-z-]+)", line)
        if not (time_match and run):
            continue
        at = datetime.fromisoformat(time_match.group(1).replace("Z", "+00:00"))
        if "UNLOAD started" in line:
            starts[run.group(1)] = at
        elif "UNLOAD finished" in line:
            ends[run.group(1)] = at
    return [(starts[r], ends[r]) for r in starts if r in ends]


def test_cluster_max_parallel_unloads_holds_over_all_replicas(testbed, pg, tables, tmp_path):
    wants = {f"t{i}": postgres(pg, tables, f"t{i}") for i in range(3)}
    with own_emulator(testbed, tmp_path / "emulator", "--unload-delay-ms", "700") as slow, replicas(
        slow, tmp_path, redshift_schema=tables, cluster_max_parallel_unloads="1", max_parallel_workers="4",
        snapshot_reuse_seconds="off",
    ) as cluster:
        clients = [s.connect() for s in cluster.servers]
        # Six distinct requests, two per replica, all at once.
        asks = [(clients[i % 3], f"t{i % 3}", ["id", "label", "amount"] if i < 3 else ["amount", "label", "id"]) for i in range(6)]
        infos = in_threads(
            *[lambda c=c, t=t, cols=cols: (c, t, c.get_flight_info(command(table=f"{tables}.{t}", columns=cols)))
              for c, t, cols in asks]
        )
        for result in infos:
            assert not isinstance(result, Exception), result
            client, table, info = result
            same_rows(read_flight(client, info), wants[table])
        intervals = sorted(i for s in cluster.servers for i in unload_intervals(s))
        assert len(intervals) == 6, intervals
        for (_, end), (start, _) in zip(intervals, intervals[1:]):
            assert start >= end, f"two UNLOADs ran at once: {intervals}"
