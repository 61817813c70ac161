"""Three replicas behind the real gRPC load balancer (Debian's nginx, tests/testbed/balancer), under
load and through a rolling restart; every result is compared with PostgreSQL.

- Concurrent incremental syncs while rows are written: N clients, each the project's sync client
  (clients/python/redshift_flight_sync.py, Parquet output, its own state file, no retries), sync M
  tables through the balancer for several rounds while two writer threads insert rows and update
  others (moving `updated_at`, the replication key, forward). The writers' transactions overlap and
  stay open a few milliseconds after setting their keys, so some rows commit with a key below an
  upper bound a sync already froze: the syncs use a lookback (LOOKBACK) longer than any write
  transaction. When the writers are done, one more row per table (a key above every other), then a
  final round: a lookback re-reads only when something is above the cursor. Then, per client and
  table: every sync's rows lie in its window `(bound - lookback, upper]`; a row version that arrived
  twice arrived the second time inside the lookback window `(bound - lookback, bound]` (nowhere
  else can a duplicate come from); and the client's output, upserted on the primary key in sync
  order (last version wins: what the sync client's `read_parquet_output` does, and what any
  consumer of incremental syncs must do), equals the table in PostgreSQL, every row and column.
  Finally no staged file is left under the replicas' own staging prefix (consumed runs are
  deleted after `staging_grace_seconds`, anything else by the sweepers after a short TTL).
- Rolling restart: clients keep reading through the balancer (GetFlightInfo and DoGet: full,
  incremental, and incremental with nothing new), without any retry, while each replica in turn
  gets SIGTERM while it serves calls, exits within `shutdown_grace_seconds`, is started again on
  the same port and is back in nginx's rotation before the next one goes. Every call must succeed
  with the exact rows.

CI runs a lighter configuration (12 clients x 4 tables, 3 rounds); the issue's full size is

    REPLICA_LOAD_CLIENTS=50 REPLICA_LOAD_TABLES=10 target/testbed/venv/bin/pytest -q \\
        clients/python/tests/test_replicas_load.py

(REPLICA_LOAD_ROUNDS sets the rounds per client; the test bed up and REDSHIFT_FLIGHT_BIN as in
conftest.py).
"""

from __future__ import annotations

import datetime as dt
import os
import random
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
from psycopg import sql

from replicas_support import keys_under, metrics, replicas, server_knows
from support import app_metadata, cancel_flight, command, decode_cursor, path, read_flight

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import redshift_flight_sync  # noqa: E402

CLIENTS = int(os.environ.get("REPLICA_LOAD_CLIENTS", "12"))
TABLES = int(os.environ.get("REPLICA_LOAD_TABLES", "4"))
ROUNDS = int(os.environ.get("REPLICA_LOAD_ROUNDS", "3"))
INITIAL_ROWS = 3000
WRITERS = 2
# The slow writer keeps its transaction open this long after setting its keys, while the other
# commits larger keys: its rows commit late, below upper bounds that syncs froze meanwhile.
HOLD_S = 0.25
PAUSE_S = 0.02  # between a writer's transactions
LOOKBACK = "5 seconds"  # 20 times the longest write transaction
LOOKBACK_DELTA = dt.timedelta(seconds=5)
COLUMNS = ["id", "label", "amount", "flag", "updated_at"]
# A staged run is consumed within seconds of its GetFlightInfo, or within minutes at full size on
# 2 cores (hundreds of syncs queue for the CPU; an expired ticket would fail the sync): anything
# left is swept after this.
STAGING_TTL_S = max(20, CLIENTS * TABLES // 4)
# Seconds a Flight call may take: at full size a round's hundreds of distinct requests queue for
# UNLOAD slots (max_parallel_workers per replica) for minutes on 2 cores.
CALL_TIMEOUT_S = 600
# Claims in S3 (single flight across replicas) are swept once idle for two leases.
CLUSTER_LEASE_S = 5


def cleanup_settings() -> dict[str, str]:
    """Short lifetimes for whatever a replica keeps under its staging prefix: staged runs (deleted
    a second after their last read, swept after STAGING_TTL_S) and, when the server has them, its
    single-flight claims (`flights/`, swept two leases after their last change)."""
    settings = {"staging_grace_seconds": "1", "staging_ttl_seconds": str(STAGING_TTL_S), "sweep_interval_seconds": "1"}
    if server_knows("cluster_lease_seconds"):
        settings["cluster_lease_seconds"] = str(CLUSTER_LEASE_S)
    return settings


def ident(*parts: str) -> sql.Composable:
    return sql.SQL(".").join(sql.Identifier(p) for p in parts)


def create_table(pg, schema: str, table: str, rows: int, start: dt.datetime) -> None:
    pg.execute(
        sql.SQL(
            "CREATE TABLE {} (id bigint PRIMARY KEY, label varchar(64), amount numeric(12,2), flag boolean, "
            "updated_at timestamp NOT NULL)"
        ).format(ident(schema, table))
    )
    insert_rows(pg, schema, table, 1, rows, start)


def insert_rows(pg, schema: str, table: str, first: int, last: int, start: dt.datetime) -> None:
    pg.execute(
        sql.SQL(
            "INSERT INTO {} SELECT g, CASE WHEN g %% 13 = 0 THEN NULL ELSE md5(g::text) END, (g * 1.37)::numeric(12,2), "
            "g %% 3 = 0, %s::timestamp + (g - %s) * interval '1 millisecond' FROM generate_series(%s::bigint, %s::bigint) g"
        ).format(ident(schema, table)),
        [start, first, first, last],
    )


def postgres_rows(pg, schema: str, table: str) -> list[tuple]:
    query = sql.SQL("SELECT {} FROM {} ORDER BY id").format(sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), ident(schema, table))
    return pg.execute(query).fetchall()


def as_rows(table: pa.Table) -> list[tuple]:
    table = table.select(COLUMNS).sort_by("id")
    return list(zip(*(table.column(c).to_pylist() for c in COLUMNS)))


class Writers:
    """Threads writing to every table until stopped. Each transaction inserts rows into one table
    and updates others (new label, amount and flag, `updated_at = clock_timestamp()`: the key moves
    forward). Writer 0 then keeps its transaction open for HOLD_S before COMMIT while writer 1
    commits at once, so writer 0's rows commit late: below keys of writer 1 that a sync may have
    frozen as its upper bound meanwhile. A writer updates only ids it owns (id % WRITERS), so
    writers never wait on each other's locks."""

    def __init__(self, pg_url: str, schema: str, tables: list[str]):
        self.pg_url, self.schema, self.tables = pg_url, schema, tables
        self.next_id = {t: INITIAL_ROWS + 1 for t in tables}
        self.lock = threading.Lock()
        self.transactions = 0
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._run, args=(w,), daemon=True) for w in range(WRITERS)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in self.threads), "a writer hung"
        if self.errors and exc[0] is None:
            raise self.errors[0]

    def _run(self, w: int) -> None:
        rng = random.Random(w * 7919 + 1)
        try:
            with psycopg.connect(self.pg_url, autocommit=True) as conn:
                conn.execute("SET TIME ZONE 'UTC'")
                while not self.stop.is_set():
                    table = rng.choice(self.tables)
                    target = ident(self.schema, table)
                    with self.lock:
                        first = self.next_id[table]
                        self.next_id[table] += 3
                        top = first - 1
                    new = list(range(first, first + 3))
                    mine = sorted({i for i in (rng.randint(1, top) for _ in range(8)) if i % WRITERS == w})
                    with conn.transaction():
                        conn.execute(
                            sql.SQL(
                                "INSERT INTO {} SELECT i, md5(random()::text), (i * 0.5)::numeric(12,2), i %% 2 = 0, "
                                "clock_timestamp() FROM unnest(%s::bigint[]) i"
                            ).format(target),
                            [new],
                        )
                        conn.execute(
                            sql.SQL(
                                "UPDATE {} SET label = left(md5(random()::text), 20), amount = amount + 1.01, "
                                "flag = NOT coalesce(flag, false), updated_at = clock_timestamp() WHERE id = ANY(%s)"
                            ).format(target),
                            [mine],
                        )
                        if w == 0:
                            time.sleep(HOLD_S)
                    with self.lock:
                        self.transactions += 1
                    time.sleep(PAUSE_S)
        except BaseException as error:  # noqa: BLE001 - reported by __exit__
            self.errors.append(error)


def bound(cursor: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(decode_cursor(cursor)["b"]) if cursor else None


def check_client(out: Path, name: str, results: list, want: list[tuple]) -> dict[str, int]:
    """One client's syncs of one table, in order: each inside its window, duplicates only inside
    the lookback window, and the upserted output equal to PostgreSQL's rows."""
    seen: dict[tuple, int] = {}
    stats = {"syncs": len(results), "rows": 0, "again": 0, "late": 0}
    for n, r in enumerate(results):
        assert r.ok, f"{name}: sync {n} failed: {r.error}"
        assert r.mode == "incremental" and r.replication_key == "updated_at", (name, n, r.mode)
        lower, upper = bound(r.cursor_before), bound(r.cursor_after)
        if r.output is None:
            assert r.rows == 0 and r.cursor_after == r.cursor_before, (name, n, r.summary())
            continue
        rows = as_rows(pq.read_table(r.output))
        assert len(rows) == r.rows > 0
        ids = [row[0] for row in rows]
        assert len(ids) == len(set(ids)), f"{name}: sync {n} sent a row twice"
        for row in rows:
            key = row[-1]
            assert (lower is None or key > lower - LOOKBACK_DELTA) and key <= upper, (name, n, row, lower, upper)
            version = (row[0], key)
            if version in seen:
                # Only the lookback window is read again.
                assert lower - LOOKBACK_DELTA < key <= lower, (name, n, row, lower)
                stats["again"] += 1
            elif lower is not None and key <= lower:
                stats["late"] += 1  # committed after an earlier sync froze a bound above it
            seen[version] = n
        stats["rows"] += len(rows)
    got = as_rows(redshift_flight_sync.read_parquet_output(out, name))
    missing = sorted({row[0] for row in want} - {row[0] for row in got})
    assert not missing, f"{name}: {len(missing)} rows never arrived, ids {missing[:10]}"
    synced, rows = len(got), len(want)
    assert synced == rows, f"{name}: {synced} rows synced, PostgreSQL has {rows}"
    wrong = [(g, w) for g, w in zip(got, want) if g != w]
    assert not wrong, f"{name}: {len(wrong)} rows differ from PostgreSQL, e.g. {wrong[:3]}"
    return stats


def assert_nothing_left(testbed, prefix: str) -> float:
    """Waits (with a deadline: the TTL, or two claim leases, plus sweeps) until the replicas'
    staging prefix is empty: every run consumed or expired is deleted, and so is every claim."""
    started = time.monotonic()
    deadline = started + max(STAGING_TTL_S, 2 * CLUSTER_LEASE_S) + 10
    while True:
        left = keys_under(testbed, prefix + "/")
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    folders = sorted({"/".join(k.split("/")[:2]) for k in left})
    assert not left, f"{len(left)} objects left under {prefix}/ in {folders[:10]}, e.g. {left[:5]}"
    return time.monotonic() - started


def test_concurrent_incremental_syncs_under_writes(testbed, pg, pg_url, make_schema, tmp_path):
    schema = make_schema("load")
    tables = [f"t{i}" for i in range(TABLES)]
    names = [f"{schema}.{t}" for t in tables]
    for t in tables:
        # Old keys: outside every lookback window of the syncs below.
        create_table(pg, schema, t, INITIAL_ROWS, dt.datetime(2026, 1, 1))
    prefix = f"rsf-load-{uuid.uuid4().hex[:10]}"
    started = time.monotonic()
    with replicas(testbed, tmp_path, redshift_schema=schema, s3_prefix=prefix, **cleanup_settings()) as cluster:
        outputs = [tmp_path / f"client-{i}" for i in range(CLIENTS)]
        history: list[dict[str, list]] = [{n: [] for n in names} for _ in range(CLIENTS)]

        def sync_round(i: int) -> None:
            results = redshift_flight_sync.sync_tables(
                names, location=cluster.location, state=outputs[i] / "state.json", out=outputs[i] / "data",
                workers=4, lookback=LOOKBACK, retries=0, timeout=CALL_TIMEOUT_S,
            )
            for r in results:
                history[i][r.table].append(r)

        def client(i: int) -> None:
            for _ in range(ROUNDS):
                sync_round(i)

        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            with Writers(pg_url, schema, tables) as writers:
                list(pool.map(client, range(CLIENTS)))
            # Every write has committed: one more row per table with the largest key, so the
            # final round has something above its cursor and re-reads the lookback window.
            for t in tables:
                with writers.lock:
                    last = writers.next_id[t]
                pg.execute(
                    sql.SQL("INSERT INTO {} VALUES (%s, 'last', 0, true, clock_timestamp() AT TIME ZONE 'UTC')").format(ident(schema, t)),
                    [last],
                )
            list(pool.map(sync_round, range(CLIENTS)))
        assert writers.transactions > 20, f"the writers committed only {writers.transactions} transactions"

        totals = {"syncs": 0, "rows": 0, "again": 0, "late": 0}
        for t, name in zip(tables, names):
            want = postgres_rows(pg, schema, t)
            assert len(want) > INITIAL_ROWS
            for i in range(CLIENTS):
                for key, value in check_client(outputs[i] / "data", name, history[i][name], want).items():
                    totals[key] += value
                moved = [r for r in history[i][name][1:ROUNDS] if r.cursor_after != r.cursor_before]
                assert moved or ROUNDS < 2, f"client {i}, {name}: no sync during the writes found new rows after the first"
        for rpc in ("GetFlightInfo", "DoGet"):
            upstreams = {u for u in cluster.upstreams(rpc)}
            assert len(upstreams) == 3, f"{rpc} reached {upstreams}"
        failed = [c for c in cluster.calls() if not c.ok]
        assert not failed, f"{len(failed)} calls failed at the balancer, e.g. {failed[:3]}"
        # Consumed runs go staging_grace_seconds after their last read; nothing may stay.
        emptied = assert_nothing_left(testbed, prefix)
    print(
        f"\n{CLIENTS} clients x {TABLES} tables, {ROUNDS} rounds + 1: {totals['syncs']} syncs, {totals['rows']} rows, "
        f"{totals['again']} versions re-read in the lookback window, {totals['late']} late commits caught by it, "
        f"{writers.transactions} write transactions, {time.monotonic() - started:.1f} s "
        f"(the staging prefix emptied {emptied:.1f} s after the last sync)"
    )


# --------------------------------------------------------------------------------------------------
# Rolling restart

HALF = 20_000
READERS = 6
SHUTDOWN_GRACE_S = 20


def busy(server) -> bool:
    """The replica runs an UNLOAD or streams a row group right now."""
    m = metrics(server)
    running = sum(v for k, v in m.items() if k.startswith(("redshift_flight_unloads_running", "redshift_flight_stream_memory_in_use")))
    return running > 0


def test_rolling_restart_under_load_fails_no_call(testbed, pg, make_schema, tmp_path):
    schema = make_schema("rolling")
    create_table(pg, schema, "t", HALF, dt.datetime(2026, 1, 1))
    name = f"{schema}.t"
    prefix = f"rsf-rolling-{uuid.uuid4().hex[:10]}"
    with replicas(
        testbed, tmp_path, redshift_schema=schema, s3_prefix=prefix, shutdown_grace_seconds=str(SHUTDOWN_GRACE_S),
        **cleanup_settings(),
    ) as cluster:
        client = cluster.client()
        # Two cursors: c1 after the first half, c2 after the second.
        info = client.get_flight_info(command(table=name))
        c1 = app_metadata(info)["next_cursor"]
        cancel_flight(client, info)
        insert_rows(pg, schema, "t", HALF + 1, 2 * HALF, dt.datetime(2026, 2, 1))
        full = read_flight(client, client.get_flight_info(path(schema, "t"))).sort_by("id")
        assert as_rows(full) == postgres_rows(pg, schema, "t")
        info = client.get_flight_info(command(table=name, cursor=c1))
        c2 = app_metadata(info)["next_cursor"]
        second = read_flight(client, info).sort_by("id")
        assert as_rows(second) == postgres_rows(pg, schema, "t")[HALF:]

        stop = threading.Event()
        failures: list[str] = []
        done = {"full": 0, "incremental": 0, "nothing new": 0}
        lock = threading.Lock()

        def reader(i: int) -> None:
            """Reads until stopped, no retries: every failed call is a failure."""
            own = cluster.client()
            ops = ["full", "incremental", "nothing new"]
            n = i
            while not stop.is_set():
                op = ops[n % 3]
                n += 1
                try:
                    if op == "full":
                        got = read_flight(own, own.get_flight_info(path(schema, "t")), workers=2).sort_by("id")
                        ok = got.equals(full)
                    elif op == "incremental":
                        info = own.get_flight_info(command(table=name, cursor=c1))
                        got = read_flight(own, info, workers=2).sort_by("id")
                        ok = got.equals(second) and app_metadata(info)["next_cursor"] == c2
                    else:
                        info = own.get_flight_info(command(table=name, cursor=c2))
                        ok = not list(info.endpoints) and app_metadata(info)["next_cursor"] == c2
                    with lock:
                        done[op] += 1
                        if not ok:
                            failures.append(f"{time.time():.3f} {op}: wrong result")
                except Exception as error:  # noqa: BLE001 - every failed call counts
                    with lock:
                        failures.append(f"{time.time():.3f} {op}: {type(error).__name__}: {error}")

        threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(READERS)]
        for t in threads:
            t.start()
        windows = []
        try:
            time.sleep(1.0)  # load on every replica
            for i in range(3):
                deadline = time.monotonic() + 15
                while not busy(cluster.servers[i]) and time.monotonic() < deadline:
                    time.sleep(0.01)
                old = cluster.servers[i]
                signalled, exited = cluster.restart(i, grace_deadline=SHUTDOWN_GRACE_S + 30)
                log = old.stderr_path.read_text(errors="replace")
                assert "shutting down" in log and "did not finish within the grace period" not in log, old.stderr_tail()
                cluster.wait_in_rotation(i, since=time.time())
                windows.append((cluster.address(i), signalled, exited))
            time.sleep(1.0)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a reader hung"
        calls = cluster.calls()
        summary = f"calls done {done}; restarts (replica, SIGTERM, exit): {windows}"
        assert not failures, f"{len(failures)} client calls failed: {failures[:10]}; {summary}"
        refused = [c for c in calls if not c.ok]
        assert not refused, f"the balancer logged failed calls: {refused[:5]}"
        # The restarts happened under load: every replica finished calls it was serving when it
        # got SIGTERM (during its shutdown grace), and served again after its restart.
        for address, signalled, exited in windows:
            drained = [c for c in calls if c.upstream == address and c.started < signalled < c.ended]
            assert drained, f"replica {address} had no call in flight at SIGTERM; {summary}"
            assert any(c.upstream == address and c.started > exited for c in calls), address
        assert min(done.values()) > 3, summary
        assert_nothing_left(testbed, prefix)
    print(f"\nrolling restart: {summary}")
