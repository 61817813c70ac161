"""Incremental sync through pyarrow.flight: the closed cursor window, cursors, lookback, the modes,
and writers that keep inserting and updating while a client syncs again and again.

What the contract guarantees, and so what these tests assert (proto-docs/README.md, "Incremental
reads"): every row version that is committed before a GetFlightInfo and still current when it
returns arrives in that sync or an earlier one (no row is skipped); a sync only sends rows inside
its window `(lower - lookback, upper]`; windows without lookback do not overlap, so a row version
arrives at most once; the union of all syncs, upserted on the primary key in sync order, equals
the table. Rows that commit after planning with a key at or below `upper` are only caught by a
later sync with a lookback; rows whose key is NULL come with full syncs only."""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
import random
import threading
import time
from decimal import Decimal

import psycopg
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from psycopg import sql

from conftest import base_config, own_emulator, start_server, stop_server
from support import Sync, app_metadata, assert_nothing_new, command, decode_cursor, encode_cursor, path, raises_status, sync

UTC = dt.timezone.utc


# --------------------------------------------------------------------------------------------------
# Helpers


def ident(*parts: str) -> sql.Composable:
    return sql.SQL(".").join(sql.Identifier(p) for p in parts)


def pg_rows(pg, schema: str, table: str, order: str = "id") -> list[tuple]:
    return pg.execute(sql.SQL("SELECT * FROM {} ORDER BY {}").format(ident(schema, table), sql.Identifier(order))).fetchall()


def upsert(syncs: list[Sync], key: str = "id") -> list[tuple]:
    """The union of the syncs, upserted on `key` in sync order, as tuples sorted by key."""
    merged: dict = {}
    for s in syncs:
        for row in s.rows:
            merged[row[key]] = tuple(row.values())
    return [merged[k] for k in sorted(merged)]


@pytest.fixture
def orders(pg, make_schema):
    """A table shaped like the seed's examples: (schema, "orders")."""
    schema = make_schema("incr")
    pg.execute(
        sql.SQL(
            "CREATE TABLE {}.orders (id bigint PRIMARY KEY, customer varchar(40), amount numeric(12,2), "
            "note text, created_at timestamptz, ship_date date, flag boolean, score double precision, "
            "updated_at timestamp)"
        ).format(sql.Identifier(schema))
    )
    return schema, "orders"


INSERT_ORDER = (
    "INSERT INTO {} (id, customer, amount, note, created_at, ship_date, flag, score, updated_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


def order_row(i: int, updated_at) -> tuple:
    return (
        i,
        f"customer {i % 17}",
        Decimal(i * 37 % 100000) / 100,
        None if i % 9 == 0 else f"n'{i}\\ \"ü\"",
        dt.datetime(2024, 1, 1, tzinfo=UTC) + dt.timedelta(seconds=i, microseconds=i),
        None if i % 7 == 0 else dt.date(2024, 1, 1) + dt.timedelta(days=i % 300),
        i % 2 == 0,
        i / 7,
        updated_at,
    )


# --------------------------------------------------------------------------------------------------
# The basic cycle


def test_first_sync_then_incremental_syncs_move_only_what_changed(client, pg, orders):
    schema, table = orders
    name = f"{schema}.{table}"
    base = dt.datetime(2024, 3, 1, 12, 0, 0)
    q = sql.SQL(INSERT_ORDER).format(ident(schema, table))
    with pg.cursor() as cur:
        cur.executemany(q, [order_row(i, base + dt.timedelta(microseconds=i)) for i in range(1, 41)])

    first = sync(client, name)
    assert first.meta["mode"] == "incremental"
    assert first.meta["replication_key"] == "updated_at"
    assert first.meta["replication_key_source"] == "inferred"
    assert first.meta["lower_bound"] is None and first.meta["lookback"] is None
    assert first.meta["upper_bound"] == "2024-03-01 12:00:00.00004"
    assert first.meta["run_id"] and first.meta["files"] == len(list(first.info.endpoints)) >= 1
    assert decode_cursor(first.cursor) == {
        "s": schema, "t": table, "k": "updated_at", "y": "timestamp without time zone",
        "b": "2024-03-01 12:00:00.00004",
    }
    assert first.ids() == list(range(1, 41))
    assert upsert([first]) == pg_rows(pg, schema, table)

    # One microsecond above the bound is new; updates move updated_at forward.
    pg.execute(q, order_row(41, base + dt.timedelta(microseconds=41)))
    pg.execute(
        sql.SQL("UPDATE {} SET amount = amount + 1, updated_at = %s WHERE id IN (3, 5)").format(ident(schema, table)),
        [base + dt.timedelta(seconds=1)],
    )
    second = sync(client, name, cursor=first.cursor)
    assert second.meta["mode"] == "incremental" and second.meta["replication_key_source"] == "cursor"
    assert second.meta["lower_bound"] == "2024-03-01 12:00:00.00004"
    assert second.meta["upper_bound"] == "2024-03-01 12:00:01"
    assert second.ids() == [3, 5, 41]
    assert decode_cursor(second.cursor)["b"] == "2024-03-01 12:00:01"
    assert upsert([first, second]) == pg_rows(pg, schema, table)

    # The same request twice: nothing new the second time.
    assert_nothing_new(sync(client, name, cursor=second.cursor), second.cursor)
    assert_nothing_new(sync(client, name, cursor=second.cursor, mode="incremental", lookback="1 hour"), second.cursor)


def test_full_sync_starts_an_incremental_chain(client, pg, orders):
    schema, table = orders
    name = f"{schema}.{table}"
    q = sql.SQL(INSERT_ORDER).format(ident(schema, table))
    base = dt.datetime(2024, 3, 1)
    for i in range(1, 11):
        pg.execute(q, order_row(i, base + dt.timedelta(minutes=i)))
    for descriptor in (command(table=name, mode="full"), path(schema, table)):
        full = Sync(client, descriptor)
        assert full.meta["mode"] == "full" and full.meta["replication_key"] == "updated_at"
        assert full.meta["lower_bound"] is None
        assert full.meta["upper_bound"] == "2024-03-01 00:10:00"
        assert full.ids() == list(range(1, 11))
    pg.execute(q, order_row(11, base + dt.timedelta(minutes=11)))
    nxt = sync(client, name, cursor=full.cursor)
    assert nxt.meta["mode"] == "incremental" and nxt.ids() == [11]
    assert upsert([full, nxt]) == pg_rows(pg, schema, table)


# --------------------------------------------------------------------------------------------------
# Writers inserting and updating while the client syncs


class Writers:
    """Threads that insert new orders and update their own existing ones (moving `updated_at`
    forward, microsecond timestamps) through their own autocommit connections, logging every
    version they commit with the monotonic time before the statement and after its commit.

    serialized: each write takes a transaction-level advisory lock and sets
    `updated_at = GREATEST(clock_timestamp(), MAX(updated_at) + 1 µs)`, so keys grow in commit
    order: no row ever commits late (below a bound already handed out), the case a sync without
    lookback handles exactly. Otherwise writers run freely with `now()`: a row's key is its
    transaction's start, and it may commit after a sync froze a larger upper bound."""

    def __init__(self, pg_url: str, schema: str, table: str, n: int, serialized: bool, first_id: int, owned: dict):
        self.pg_url, self.target, self.n, self.serialized = pg_url, ident(schema, table), n, serialized
        self.ids = itertools.count(first_id)
        self.owned = owned  # writer -> ids it may update
        self.lock = threading.Lock()
        self.log: list[tuple[int, dt.datetime, float, float]] = []  # (id, updated_at, started, committed)
        self.inserts = self.updates = 0
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._run, args=(w,), daemon=True) for w in range(n)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in self.threads), "writer hung"
        if self.errors:
            raise self.errors[0]

    def _key_sql(self) -> sql.Composable:
        if self.serialized:
            return sql.SQL(
                "GREATEST(clock_timestamp()::timestamp, (SELECT max(updated_at) FROM {}) + interval '1 microsecond')"
            ).format(self.target)
        return sql.SQL("now()::timestamp")

    def _run(self, w: int) -> None:
        rng = random.Random(w * 7919)
        try:
            with psycopg.connect(self.pg_url, autocommit=True) as conn:
                conn.execute("SET TIME ZONE 'UTC'")
                while not self.stop.is_set():
                    if rng.random() < 0.45 or not self.owned[w]:
                        with self.lock:
                            i = next(self.ids)
                        row = order_row(i, None)
                        statement = sql.SQL(
                            "INSERT INTO {} (id, customer, amount, note, created_at, ship_date, flag, score, updated_at) "
                            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, {}) RETURNING id, updated_at"
                        ).format(self.target, self._key_sql())
                        params = row[:-1]
                    else:
                        i = rng.choice(self.owned[w])
                        statement = sql.SQL(
                            "UPDATE {} SET amount = amount + 1, note = %s, flag = NOT flag, score = score * 2, "
                            "updated_at = {} WHERE id = %s RETURNING id, updated_at"
                        ).format(self.target, self._key_sql())
                        params = (f"update by {w} at {rng.random()}", i)
                    started = time.monotonic()
                    if self.serialized:
                        with conn.transaction():
                            conn.execute("SELECT pg_advisory_xact_lock(424242)")
                            got = conn.execute(statement, params).fetchone()
                    else:
                        got = conn.execute(statement, params).fetchone()
                    committed = time.monotonic()
                    with self.lock:
                        self.log.append((got[0], got[1], started, committed))
                        if i in self.owned[w]:
                            self.updates += 1
                        else:
                            self.owned[w].append(i)
                            self.inserts += 1
                    time.sleep(rng.uniform(0, 0.004))
        except BaseException as error:  # noqa: BLE001 - reported by __exit__
            self.errors.append(error)


@pytest.mark.parametrize("lookback", [None, "2 seconds"], ids=["no-lookback", "lookback"])
def test_syncs_during_concurrent_writes_skip_nothing(client, pg, pg_url, orders, lookback):
    schema, table = orders
    name = f"{schema}.{table}"
    writers_n, initial = 3, 300
    # The initial rows are a day old: outside any lookback window of the syncs below.
    base = dt.datetime.now(UTC).replace(tzinfo=None) - dt.timedelta(days=1)
    initial_rows = [order_row(i, base + dt.timedelta(microseconds=i)) for i in range(1, initial + 1)]
    with pg.cursor() as cur:
        cur.executemany(sql.SQL(INSERT_ORDER).format(ident(schema, table)), initial_rows)
    versions = [(r[0], r[-1], float("-inf"), float("-inf")) for r in initial_rows]
    owned = {w: [i for i in range(1, initial + 1) if i % writers_n == w] for w in range(writers_n)}

    syncs: list[Sync] = []
    cursor = None
    extra = {} if lookback is None else {"lookback": lookback}
    with Writers(pg_url, schema, table, writers_n, serialized=lookback is None, first_id=initial + 1, owned=owned) as writers:
        while len(syncs) < 8 or writers.inserts < 50 or writers.updates < 50:
            assert len(syncs) < 100, "writers made no progress"
            s = sync(client, name, **({"cursor": cursor} if cursor else {}), **extra)
            syncs.append(s)
            cursor = s.cursor  # stored only after every endpoint was read
    if lookback is not None:
        # A lookback re-reads only when something is above the cursor (otherwise no UNLOAD runs
        # and the cursor stays put): one more row makes the final sync re-read the window.
        pg.execute(sql.SQL(INSERT_ORDER).format(ident(schema, table)), order_row(10**9, dt.datetime.now(UTC).replace(tzinfo=None)))
    syncs.append(sync(client, name, cursor=cursor, **extra))
    versions += writers.log
    lookback_us = 0 if lookback is None else 2_000_000

    def as_dt(text: str) -> dt.datetime:
        return dt.datetime.fromisoformat(text)

    # Each sync: incremental, inside its window, each row once, cursors chained.
    delivered: dict[tuple, list[int]] = {}
    previous_upper = None
    for n, s in enumerate(syncs):
        assert s.meta["mode"] == "incremental" and s.meta["replication_key"] == "updated_at"
        ids = [r["id"] for r in s.rows]
        assert len(ids) == len(set(ids)), f"sync {n} sent a row twice"
        assert s.meta["lower_bound"] == (None if n == 0 else decode_cursor(syncs[n - 1].cursor)["b"])
        upper = as_dt(s.meta["upper_bound"]) if s.meta["upper_bound"] else None
        lower = as_dt(s.meta["lower_bound"]) - dt.timedelta(microseconds=lookback_us) if s.meta["lower_bound"] else None
        if upper is None:
            assert_nothing_new(s, syncs[n - 1].cursor)
        else:
            assert previous_upper is None or upper > previous_upper
            previous_upper = upper
        for r in s.rows:
            assert (lower is None or r["updated_at"] > lower) and r["updated_at"] <= upper, (n, r["id"], r["updated_at"])
            delivered.setdefault((r["id"], r["updated_at"]), []).append(n)

    # No row skipped: a version committed before a sync started and not replaced before its
    # GetFlightInfo returned (the UNLOAD had run by then) arrived in that sync or an earlier one.
    next_write: dict[int, list[float]] = {}
    for row_id, _key, started, _committed in versions:
        next_write.setdefault(row_id, []).append(started)
    by_id: dict[int, list] = {}
    for v in sorted(versions, key=lambda v: (v[0], v[2])):
        by_id.setdefault(v[0], []).append(v)
    checked = 0
    for row_id, history in by_id.items():
        for k, (_, key, _started, committed) in enumerate(history):
            replaced = history[k + 1][2] if k + 1 < len(history) else float("inf")
            for n, s in enumerate(syncs):
                if committed < s.started and replaced > s.planned:
                    got = delivered.get((row_id, key), [])
                    assert any(m <= n for m in got), f"row {row_id} version {key} skipped by sync {n} (got in {got})"
                    checked += 1
    assert checked > 1000

    # Duplicates: none without lookback; with it, only inside the lookback window.
    duplicates = {v: ns for v, ns in delivered.items() if len(ns) > 1}
    if lookback is None:
        assert duplicates == {}
    else:
        assert duplicates, "a lookback sync re-read nothing: the test does not exercise lookback"
        for (row_id, key), ns in duplicates.items():
            for n in ns[1:]:
                lower = as_dt(syncs[n].meta["lower_bound"])
                assert lower - dt.timedelta(microseconds=lookback_us) < key <= lower, (row_id, key, n)

    # Writes happened during syncs, not only between them.
    during = sum(1 for _i, _k, started, _c in writers.log for s in syncs if s.started < started < s.planned)
    assert during > 0
    assert writers.inserts >= 50 and writers.updates >= 50
    # The union of all syncs, upserted on the primary key in sync order, is the table.
    assert upsert(syncs) == pg_rows(pg, schema, table)


# --------------------------------------------------------------------------------------------------
# The window's edges


def test_rows_sharing_the_upper_value_and_late_rows(client, pg, make_schema):
    schema = make_schema("edge")
    t = ident(schema, "events")
    pg.execute(sql.SQL("CREATE TABLE {} (id integer PRIMARY KEY, updated_at timestamp, v text)").format(t))
    t1, t2 = "2024-05-01 10:00:00.000001", "2024-05-01 10:00:00.000002"
    t3, t4 = "2024-05-01 10:00:00.000003", "2024-05-01 10:00:05"
    insert = sql.SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(t)
    for i, ts in [(1, t1), (2, t1), (3, t1), (4, t2), (5, t2), (6, t2), (7, t2)]:
        pg.execute(insert, [i, ts, f"v{i}"])
    name = f"{schema}.events"
    first = sync(client, name)
    assert first.meta["upper_bound"] == t2 and first.ids() == [1, 2, 3, 4, 5, 6, 7]

    # Committed after planning: two more rows at exactly the upper value, and one above it.
    pg.execute(insert, [8, t2, "late"])
    pg.execute(insert, [9, t2, "late"])
    pg.execute(insert, [10, t3, "new"])
    plain = sync(client, name, cursor=first.cursor)
    assert plain.meta["upper_bound"] == t3
    assert plain.ids() == [10], "without lookback the window starts above the old upper value"
    caught = sync(client, name, cursor=first.cursor, lookback="1 second")
    assert caught.meta["lookback"] == "1 second" and caught.meta["lower_bound"] == t2
    assert caught.meta["upper_bound"] == t3 and caught.cursor == plain.cursor
    assert caught.ids() == list(range(1, 11)), "the lookback re-reads the upper value and everything within a second below"
    assert upsert([first, caught]) == pg_rows(pg, schema, "events")

    # A late row below the cursor while nothing is above it: no UNLOAD, the cursor stays; the
    # next sync with something new re-reads the lookback window and catches it.
    pg.execute(insert, [11, "2024-05-01 10:00:00.000002", "later still"])
    assert_nothing_new(sync(client, name, cursor=caught.cursor, lookback="1 second"), caught.cursor)
    pg.execute(insert, [12, t4, "newest"])
    after = sync(client, name, cursor=caught.cursor, lookback="10 seconds")
    assert 11 in after.ids() and 12 in after.ids()
    assert upsert([first, caught, after]) == pg_rows(pg, schema, "events")


@pytest.fixture(scope="module")
def slow_unload_server(testbed, tmp_path_factory):
    """A redshift-flight server in front of its own emulator whose UNLOADs start 2 s late, so
    that rows can commit between planning (SELECT MAX) and the UNLOAD."""
    workdir = tmp_path_factory.mktemp("slow-unload")
    with own_emulator(testbed, workdir, "--unload-delay-ms", "2000") as slow:
        server = start_server(base_config(slow), workdir / "server")
        try:
            yield server
        finally:
            stop_server(server)


def test_rows_committed_between_planning_and_unload(slow_unload_server, pg, make_schema):
    """Planning freezes upper; the UNLOAD reads `key <= upper` whenever it runs: a row committed in
    between with key == upper is in this sync, a row with key > upper is in the next one."""
    schema = make_schema("window")
    t = ident(schema, "t")
    pg.execute(sql.SQL("CREATE TABLE {} (id integer PRIMARY KEY, updated_at timestamp NOT NULL)").format(t))
    insert = sql.SQL("INSERT INTO {} VALUES (%s, %s)").format(t)
    for i in range(1, 4):
        pg.execute(insert, [i, f"2024-01-01 00:00:00.00000{i}"])
    client = slow_unload_server.connect()
    name = f"{schema}.t"
    first = sync(client, name)
    assert first.ids() == [1, 2, 3]
    pg.execute(insert, [4, "2024-01-01 00:00:00.000004"])

    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(s=sync(client, name, cursor=first.cursor)))
    worker.start()
    time.sleep(0.5)  # planning (SELECT MAX) is done; the UNLOAD waits 2 s
    pg.execute(insert, [5, "2024-01-01 00:00:00.000004"])  # key == the frozen upper
    pg.execute(insert, [6, "2024-01-01 00:00:00.000005"])  # key > upper
    assert worker.is_alive(), "GetFlightInfo returned before the rows were committed: nothing was tested"
    worker.join(timeout=60)
    second = result["s"]
    assert second.meta["upper_bound"] == "2024-01-01 00:00:00.000004", "SELECT MAX ran after the inserts"
    assert second.ids() == [4, 5]
    third = sync(client, name, cursor=second.cursor)
    assert third.ids() == [6]
    assert upsert([first, second, third]) == pg_rows(pg, schema, "t")
    client.close()


# --------------------------------------------------------------------------------------------------
# Key types


KEY_TYPES = {
    # type: (initial keys, new keys above the bound, a late key equal to the bound, the bound's
    #        text, a lookback, the keys the lookback re-reads below the bound)
    "bigserial": (None, None, None, "5", 2, ["4", "5"]),
    "numeric(20,6)": (
        ["12345678901234.000001", "12345678901234.000002", "-5.5"],
        ["12345678901234.000003", "99999999999999.999999"],
        "12345678901234.000002",
        "12345678901234.000002",
        "0.000001",
        ["12345678901234.000002"],
    ),
    "varchar(30)": (
        ["a'1", "b\\2", "c'\\3"],
        ["c'\\4", "d \"x\" ü"],
        "c'\\3",
        "c'\\3",
        None,
        None,
    ),
    # `date - 1 day` is midnight of the day before, and the window is open below it.
    "date": (["2024-02-28", "2024-02-29", "2024-03-01"], ["2024-03-02", "9999-12-31"], "2024-03-01", "2024-03-01", "1 day", ["2024-03-01"]),
}


def _key_value(pg_type: str, text: str):
    if pg_type.startswith("numeric"):
        return Decimal(text)
    if pg_type == "date":
        return dt.date.fromisoformat(text)
    if pg_type == "bigserial":
        return int(text)
    return text


@pytest.mark.parametrize("pg_type", list(KEY_TYPES), ids=lambda t: t.split("(")[0])
def test_explicit_keys_of_other_types(client, pg, make_schema, pg_type):
    """Integer (a sequence), DECIMAL, VARCHAR and DATE keys named with `replication_key`: the
    bound round-trips exactly, a late row equal to the bound is left to a lookback, new rows come."""
    initial, new, late, bound, lookback, reread = KEY_TYPES[pg_type]
    serial = pg_type == "bigserial"
    schema = make_schema("keys")
    t = ident(schema, "t")
    pg.execute(sql.SQL("CREATE TABLE {} (id serial PRIMARY KEY, k {}, updated_at timestamp, v text)").format(t, sql.SQL(pg_type)))
    if serial:
        insert = sql.SQL("INSERT INTO {} (v, updated_at) VALUES (%s, '2000-01-01')").format(t)
        add = lambda _k, v: pg.execute(insert, [v])  # noqa: E731 - the sequence picks k
    else:
        insert = sql.SQL("INSERT INTO {} (k, v, updated_at) VALUES (%s, %s, '2000-01-01')").format(t)
        add = lambda k, v: pg.execute(insert, [k, v])  # noqa: E731
    for k in initial or range(5):
        add(k, "initial")
    if not serial:
        add(None, "null key")
    name = f"{schema}.t"

    first = sync(client, name, mode="incremental", replication_key="k")
    assert first.meta["replication_key"] == "k" and first.meta["replication_key_source"] == "requested"
    assert first.meta["upper_bound"] == bound
    cursor = decode_cursor(first.cursor)
    assert cursor["k"] == "k" and cursor["b"] == bound
    assert cursor["y"] == pg.execute(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'k'",
        [f'"{schema}".t'],
    ).fetchone()[0]
    assert first.table.num_rows == (5 if serial else len(initial))  # never the NULL key

    # Nothing above the exact bound: it round-trips at full precision.
    assert_nothing_new(sync(client, name, cursor=first.cursor), first.cursor)

    if serial:
        for _ in range(3):
            add(None, "new")
        expected_new = [6, 7, 8]
    else:
        add(late, "late")
        for k in new:
            add(k, "new")
        expected_new = sorted(_key_value(pg_type, k) for k in new)
    nxt = sync(client, name, cursor=first.cursor)  # the cursor brings its key along
    assert nxt.meta["replication_key"] == "k" and nxt.meta["replication_key_source"] == "cursor"
    assert sorted(r["k"] for r in nxt.rows) == expected_new
    again = sync(client, name, cursor=first.cursor, replication_key="k")
    assert again.meta["replication_key_source"] == "requested" and again.ids() == nxt.ids()

    if lookback is None:
        with raises_status("INVALID_ARGUMENT", match="does not support a lookback"):
            client.get_flight_info(command(table=name, cursor=first.cursor, lookback="1"))
        return
    looked = sync(client, name, cursor=first.cursor, lookback=lookback)
    assert looked.meta["lookback"] == lookback
    want = [_key_value(pg_type, k) for k in reread] + ([] if serial else [_key_value(pg_type, late)]) + expected_new
    assert sorted(r["k"] for r in looked.rows) == sorted(want)


def test_timestamptz_keys_across_time_zones(client, pg, testbed, make_schema):
    schema = make_schema("tz")
    t = ident(schema, "t")
    pg.execute(sql.SQL("CREATE TABLE {} (id integer PRIMARY KEY, changed timestamptz, v text)").format(t))
    insert = sql.SQL("INSERT INTO {} VALUES (%s, %s::timestamptz, %s)").format(t)
    with psycopg.connect(testbed["TESTBED_PG_URL"], autocommit=True) as kolkata:
        kolkata.execute("SET TIME ZONE 'Asia/Kolkata'")
        kolkata.execute(insert, [1, "2024-06-01 17:29:59.999999", "a"])  # 11:59:59.999999Z
        kolkata.execute(insert, [2, "2024-06-01 17:30:00.000001", "b"])  # 12:00:00.000001Z
    name = f"{schema}.t"
    first = sync(client, name)
    assert first.meta["replication_key"] == "changed" and first.meta["replication_key_source"] == "inferred"
    bound = dt.datetime.fromisoformat(first.meta["upper_bound"])  # Redshift's text, any offset
    assert bound == dt.datetime(2024, 6, 1, 12, 0, 0, 1, tzinfo=UTC)
    assert decode_cursor(first.cursor)["y"] == "timestamp with time zone"
    assert first.table.schema.field("changed").type == pa.timestamp("us", tz="UTC")
    assert sorted(r["changed"] for r in first.rows)[-1] == bound

    with psycopg.connect(testbed["TESTBED_PG_URL"], autocommit=True) as los_angeles:
        los_angeles.execute("SET TIME ZONE 'America/Los_Angeles'")
        los_angeles.execute(insert, [3, "2024-06-01 05:00:00.000001", "same instant, late"])  # == bound
        los_angeles.execute(insert, [4, "2024-06-01 05:00:00.000002", "one microsecond later"])
        los_angeles.execute(insert, [5, "2024-06-01 04:00:00", "older"])  # 11:00Z
    nxt = sync(client, name, cursor=first.cursor)
    assert nxt.ids() == [4]
    assert nxt.rows[0]["changed"] == dt.datetime(2024, 6, 1, 12, 0, 0, 2, tzinfo=UTC)
    looked = sync(client, name, cursor=first.cursor, lookback=2)
    assert looked.ids() == [1, 2, 3, 4], "a 2-second lookback re-reads 11:59:59.000001Z .. the bound"
    assert upsert([first, looked]) == [r for r in pg_rows(pg, schema, "t") if r[0] != 5]


# --------------------------------------------------------------------------------------------------
# Inference, modes, NULL keys


PREFERRED = ["updated_at", "last_updated", "last_update", "last_modified", "modified_at", "modified_on", "updated_on", "update_time", "updated"]


def test_replication_key_inference(client, pg, make_schema):
    schema = make_schema("infer")
    # (Every table exists before the first request: the catalog caches the schema's tables.)
    for n, _wanted in enumerate(PREFERRED):
        # A timestamp first, then the preferred names from this one on, in reverse order and in
        # capitals: the earliest preferred name wins, case-insensitively, wherever it stands.
        columns = ["created timestamp"] + [f'"{c.upper()}" date' for c in reversed(PREFERRED[n:])] + ['"updated_at_text" varchar(10)']
        pg.execute(sql.SQL("CREATE TABLE {} (id integer, {})").format(ident(schema, f"t{n}"), sql.SQL(", ".join(columns))))
    # No preferred name of a time type: the first TIMESTAMP, TIMESTAMPTZ or DATE column.
    pg.execute(sql.SQL("CREATE TABLE {} (id integer, updated_at varchar(20), b timestamptz, a date, c timestamp)").format(ident(schema, "first")))
    for n, wanted in enumerate(PREFERRED):
        meta = app_metadata(client.get_flight_info(command(table=f"{schema}.t{n}")))
        assert meta["replication_key"] == wanted.upper() and meta["replication_key_source"] == "inferred", (n, meta)
        assert meta["mode"] == "incremental"
    meta = app_metadata(client.get_flight_info(command(table=f"{schema}.first")))
    assert meta["replication_key"] == "b" and meta["replication_key_source"] == "inferred"
    # An explicit key wins over inference (a table spec's key is covered by the Rust tests).
    meta = app_metadata(client.get_flight_info(command(table=f"{schema}.first", replication_key="a")))
    assert meta["replication_key"] == "a" and meta["replication_key_source"] == "requested"


def test_incremental_without_a_key_is_invalid_argument(client, pg, make_schema):
    schema = make_schema("nokey")
    pg.execute(sql.SQL("CREATE TABLE {} (id integer, name varchar(10), amount numeric(10,2), f double precision, b boolean, t time)").format(ident(schema, "plain")))
    pg.execute(sql.SQL("INSERT INTO {} VALUES (1, 'a', 1.5, 0.5, true, '12:00'), (2, 'b', 2.5, 1.5, false, '13:00')").format(ident(schema, "plain")))
    name = f"{schema}.plain"
    with raises_status("INVALID_ARGUMENT", match=f"table {name} has no replication key"):
        client.get_flight_info(command(table=name, mode="incremental"))
    auto = sync(client, name)
    assert auto.meta["mode"] == "full" and "no replication key" in auto.meta["reason"]
    assert auto.meta["replication_key"] is None and auto.meta["next_cursor"] is None
    assert auto.table.num_rows == 2
    for column in ("f", "b", "t"):
        with raises_status("INVALID_ARGUMENT", match="cannot be a replication key"):
            client.get_flight_info(command(table=name, replication_key=column))
    with raises_status("INVALID_ARGUMENT", match="no column"):
        client.get_flight_info(command(table=name, replication_key="nope"))
    explicit = sync(client, name, mode="incremental", replication_key="amount")
    assert explicit.meta["mode"] == "incremental" and explicit.meta["upper_bound"] == "2.50"


def test_null_keys_come_with_full_syncs_only(client, pg, orders):
    schema, table = orders
    name = f"{schema}.{table}"
    q = sql.SQL(INSERT_ORDER).format(ident(schema, table))
    for i in range(1, 7):
        pg.execute(q, order_row(i, None if i % 3 == 0 else dt.datetime(2024, 1, 1, 0, 0, i)))
    first = sync(client, name)
    assert first.meta["mode"] == "incremental" and first.ids() == [1, 2, 4, 5]
    full = sync(client, name, mode="full")
    assert full.ids() == [1, 2, 3, 4, 5, 6]
    assert Sync(client, path(schema, table)).ids() == [1, 2, 3, 4, 5, 6]
    assert full.cursor == first.cursor  # same MAX
    pg.execute(q, order_row(7, None))
    pg.execute(q, order_row(8, dt.datetime(2024, 1, 2)))
    nxt = sync(client, name, cursor=first.cursor, lookback="10 days")
    assert nxt.ids() == [1, 2, 4, 5, 8]
    assert sync(client, name, mode="full", cursor=nxt.cursor).ids() == list(range(1, 9))


def test_lookback_values(client, pg, orders):
    schema, table = orders
    name = f"{schema}.{table}"
    pg.execute(sql.SQL(INSERT_ORDER).format(ident(schema, table)), order_row(1, dt.datetime(2024, 1, 1)))
    cursor = sync(client, name).cursor
    for good in ("2 hours", "90s", 90, "1 day", "3 weeks", "45 minutes"):
        s = sync(client, name, cursor=cursor, lookback=good)
        assert s.meta["lookback"] == good
    for bad in ("2 fortnights", "-1 hour", -5, 1.5, "1 hour'; DROP TABLE x; --", [], {"h": 1}, "99999999999 weeks"):
        with raises_status("INVALID_ARGUMENT", match="invalid lookback"):
            client.get_flight_info(command(table=name, cursor=cursor, lookback=bad))


# --------------------------------------------------------------------------------------------------
# Cursor errors


def test_cursor_errors_are_invalid_argument(client, pg, orders, make_schema):
    schema, table = orders
    name = f"{schema}.{table}"
    pg.execute(sql.SQL(INSERT_ORDER).format(ident(schema, table)), order_row(1, dt.datetime(2024, 1, 1)))
    other = make_schema("other")
    pg.execute(sql.SQL("CREATE TABLE {} (id integer, updated_at timestamp)").format(ident(other, "orders")))
    pg.execute(sql.SQL("INSERT INTO {} VALUES (1, '2030-01-01')").format(ident(other, "orders")))
    cursor = sync(client, name).cursor
    foreign = sync(client, f"{other}.orders").cursor

    with raises_status("INVALID_ARGUMENT", match=f"the cursor is for table {other}.orders"):
        client.get_flight_info(command(table=name, cursor=foreign))
    with raises_status("INVALID_ARGUMENT", match="the cursor is for replication key"):
        client.get_flight_info(command(table=name, cursor=cursor, replication_key="created_at"))
    fields = decode_cursor(cursor)
    damaged = [
        "", "garbage", cursor[len("rsfc1."):], "rsfc2." + cursor[len("rsfc1."):], cursor[:-3], cursor + "!",
        "rsfc1.!!!", encode_cursor({**fields, "x": 1}), encode_cursor({k: v for k, v in fields.items() if k != "b"}),
        encode_cursor({**fields, "b": "2024-01-01'; DROP TABLE orders; --"}), encode_cursor({**fields, "b": "yesterday"}),
        encode_cursor({**fields, "y": "double precision", "b": "1.5"}), "rsfc1." + "A" * 9000,
    ]
    for bad in damaged:
        with raises_status("INVALID_ARGUMENT", match="cursor"):
            client.get_flight_info(command(table=name, cursor=bad))
    # Cursors are opaque but not secret: a well-formed one for this table and key is accepted.
    handmade = encode_cursor({**fields, "b": "2023-12-31 23:59:59.999999"})
    assert sync(client, name, cursor=handmade).ids() == [1]
    assert pg.execute(sql.SQL("SELECT count(*) FROM {}").format(ident(schema, table))).fetchone()[0] == 1


@pytest.fixture(scope="module")
def fresh_catalog_server(testbed, tmp_path_factory):
    """A server that reads the catalog on every request (catalog_ttl_seconds = 0), so that DDL is
    seen at once."""
    server = start_server(dict(base_config(testbed), catalog_ttl_seconds="0"), tmp_path_factory.mktemp("fresh-catalog"))
    yield server
    stop_server(server)


def _keyed_table(pg, make_schema) -> tuple[str, str]:
    schema = make_schema("ddl")
    pg.execute(sql.SQL("CREATE TABLE {} (id integer PRIMARY KEY, updated_at timestamp, created date)").format(ident(schema, "t")))
    pg.execute(sql.SQL("INSERT INTO {} VALUES (1, '2024-01-01 00:00:00.5', '2023-01-01'), (2, NULL, NULL)").format(ident(schema, "t")))
    return schema, f"{schema}.t"


@pytest.mark.parametrize(
    "ddl, why",
    [
        ("ALTER TABLE {} DROP COLUMN updated_at", "no longer exists"),
        ("ALTER TABLE {} ALTER COLUMN updated_at TYPE timestamptz", "changed type"),
        ("ALTER TABLE {} ALTER COLUMN updated_at TYPE date", "changed type"),
    ],
    ids=["dropped", "timestamptz", "date"],
)
def test_cursor_of_a_changed_key_is_failed_precondition(fresh_catalog_server, pg, make_schema, ddl, why):
    client = fresh_catalog_server.connect()
    schema, name = _keyed_table(pg, make_schema)
    cursor = sync(client, name).cursor
    pg.execute(sql.SQL(ddl).format(ident(schema, "t")))
    with raises_status("FAILED_PRECONDITION", match=why) as caught:
        client.get_flight_info(command(table=name, cursor=cursor))
    assert "run a full sync" in str(caught.value) and '"updated_at"' in str(caught.value)
    # The way out: a full sync without the old cursor, then continue from its next_cursor.
    full = sync(client, name, mode="full")
    assert full.ids() == [1, 2]
    assert_nothing_new(sync(client, name, cursor=full.cursor), full.cursor)
    client.close()


def test_cursor_of_a_dropped_key_right_after_the_ddl(client, pg, make_schema):
    schema, name = _keyed_table(pg, make_schema)
    cursor = sync(client, name).cursor
    pg.execute(sql.SQL("ALTER TABLE {} DROP COLUMN updated_at").format(ident(schema, "t")))
    with raises_status("FAILED_PRECONDITION", match="no longer exists"):
        client.get_flight_info(command(table=name, cursor=cursor))


# --------------------------------------------------------------------------------------------------
# enable_complete_resync


@pytest.fixture(scope="module")
def resync_server(testbed, tmp_path_factory):
    config = dict(base_config(testbed), enable_complete_resync="true", catalog_ttl_seconds="0")
    server = start_server(config, tmp_path_factory.mktemp("resync"))
    yield server
    stop_server(server)


def test_complete_resync_serves_full_snapshots(resync_server, client, pg, orders):
    schema, table = orders
    name = f"{schema}.{table}"
    q = sql.SQL(INSERT_ORDER).format(ident(schema, table))
    for i in range(1, 6):
        pg.execute(q, order_row(i, None if i == 5 else dt.datetime(2024, 1, i)))
    cursor = sync(client, name).cursor  # from the ordinary server: cursors work on any server
    pg.execute(q, order_row(6, dt.datetime(2024, 2, 1)))
    resync = resync_server.connect()
    for request in (
        dict(cursor=cursor),
        dict(cursor=cursor, mode="incremental", lookback="1 hour"),
        dict(mode="auto"),
        dict(mode="incremental", replication_key="id"),
    ):
        s = sync(resync, name, **request)
        assert s.meta["mode"] == "full", request
        assert "enable_complete_resync" in s.meta["reason"]
        assert s.meta["lower_bound"] is None and s.meta["lookback"] is None
        assert s.ids() == [1, 2, 3, 4, 5, 6], "a full snapshot, NULL keys included"
        assert upsert([s]) == pg_rows(pg, schema, table)
    s = Sync(resync, path(schema, table))
    assert s.meta["mode"] == "full" and s.ids() == [1, 2, 3, 4, 5, 6]
    # Its next_cursor continues an incremental chain on an ordinary server.
    assert decode_cursor(s.cursor)["b"] == "2024-02-01 00:00:00"
    pg.execute(q, order_row(7, dt.datetime(2024, 3, 1)))
    assert sync(client, name, cursor=s.cursor).ids() == [7]
    resync.close()


def test_complete_resync_ignores_a_stale_cursor(resync_server, pg, make_schema):
    schema, name = _keyed_table(pg, make_schema)
    client = resync_server.connect()
    cursor = sync(client, name).cursor
    pg.execute(sql.SQL("ALTER TABLE {} DROP COLUMN updated_at").format(ident(schema, "t")))
    assert sync(client, name, cursor=cursor).ids() == [1, 2]
