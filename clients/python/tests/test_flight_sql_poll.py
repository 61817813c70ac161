"""Long Flight SQL queries through ADBC's incremental execution (`adbc.statement.exec.incremental`):
the driver polls PollFlightInfo, which answers with progress and a poll token while the UNLOAD runs
and with the endpoints once it is staged. The result must equal PostgreSQL's, and the server must
really have answered "running" first (its log says so).

The server runs in front of an emulator of its own whose UNLOADs write 500 rows every 300 ms, with
`direct_max_rows` 0 (so the query is staged by UNLOAD) and `flight_sql_poll_wait_ms` 100."""

from __future__ import annotations

import threading
import time

import adbc_driver_flightsql.dbapi as flight_sql
import pytest
from psycopg import sql

from conftest import base_config, own_emulator, start_server, stop_server

ROWS = 3000


@pytest.fixture(scope="module")
def polling_server(testbed, tmp_path_factory):
    """A redshift-flight server polling with a 100 ms wait, in front of a slow, progressive
    emulator of its own."""
    workdir = tmp_path_factory.mktemp("poll")
    flags = ("--slices", "2", "--fetch-rows", "500", "--fetch-delay-ms", "300")
    with own_emulator(testbed, workdir, *flags) as slow:
        config = base_config(slow)
        config["direct_max_rows"] = "0"
        config["flight_sql_poll_wait_ms"] = "100"
        server = start_server(config, workdir / "server")
        try:
            yield server
        finally:
            stop_server(server)


def test_incremental_execution_reads_a_slow_query(polling_server, pg, make_schema):
    schema = make_schema("fsqlpoll")
    t = sql.Identifier(schema, "t")
    pg.execute(sql.SQL("CREATE TABLE {} (id integer PRIMARY KEY, v text)").format(t))
    pg.execute(sql.SQL("INSERT INTO {} SELECT g, 'v' || g FROM generate_series(1, %s) g").format(t), [ROWS])
    pg.execute(sql.SQL("ANALYZE {}").format(t))
    query = f'SELECT id, v FROM "{schema}".t WHERE id % 3 <> 0'

    with flight_sql.connect(polling_server.location, autocommit=True) as conn, conn.cursor() as cur:
        cur.adbc_statement.set_options(**{"adbc.statement.exec.incremental": "true"})
        partitions = []
        schema_seen = None
        started = time.monotonic()
        # Each call returns the partitions that are new since the last one; none means the query
        # is complete.
        while True:
            assert time.monotonic() - started < 120, "the query never completed"
            new, result_schema = cur.adbc_execute_partitions(query)
            if result_schema is not None:
                schema_seen = result_schema
            if not new:
                break
            partitions.extend(new)
        assert partitions, "the query's result has endpoints"
        assert schema_seen is not None and schema_seen.names == ["id", "v"]

        rows = []
        for partition in partitions:
            cur.adbc_read_partition(partition)
            table = cur.fetch_arrow_table()
            assert table.schema.names == ["id", "v"]
            rows.extend(zip(table.column("id").to_pylist(), table.column("v").to_pylist()))

    want = pg.execute(sql.SQL("SELECT id, v FROM {} WHERE id % 3 <> 0").format(t)).fetchall()
    assert sorted(rows) == sorted(want)
    assert len(rows) == 2000
    # The server answered "running" (with a poll token) before the result was staged.
    log = polling_server.stderr_path.read_text(errors="replace")
    assert "query answered as running" in log, polling_server.stderr_tail()


def test_adbc_cancel_stops_the_unload_on_redshift(polling_server, pg, make_schema):
    """ADBC's `cancel` during a long execute: the call fails as cancelled, and the UNLOAD it
    started is stopped on Redshift (the emulator records it aborted in SYS_UNLOAD_HISTORY) long
    before it would have finished (30,000 rows at 500 per 300 ms take about 9 s per slice)."""
    schema = make_schema("fsqlcancel")
    t = sql.Identifier(schema, "t")
    pg.execute(sql.SQL("CREATE TABLE {} (id integer PRIMARY KEY, v text)").format(t))
    pg.execute(sql.SQL("INSERT INTO {} SELECT g, 'v' || g FROM generate_series(1, 30000) g").format(t))
    pg.execute(sql.SQL("ANALYZE {}").format(t))
    query = f'SELECT id, v FROM "{schema}".t'
    marker = f'"{schema}"'

    with flight_sql.connect(polling_server.location, autocommit=True) as conn, conn.cursor() as cur:
        outcome: dict[str, BaseException | None] = {}

        def execute() -> None:
            try:
                cur.execute(query)
                cur.fetch_arrow_table()
                outcome["error"] = None
            except BaseException as error:  # noqa: BLE001 - the cancellation is the point
                outcome["error"] = error

        worker = threading.Thread(target=execute)
        started = time.monotonic()
        worker.start()
        # Wait until the UNLOAD runs, then cancel.
        while time.monotonic() - started < 30:
            running = pg.execute(
                "SELECT count(*) FROM public.sys_unload_history WHERE status = 'running' "
                "AND query_id IN (SELECT query_id FROM public.sys_query_history WHERE query_text LIKE %s)",
                [f"%{marker}%"],
            ).fetchone()[0]
            if running:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the UNLOAD never started")
        cur.adbc_cancel()
        worker.join(timeout=30)
        assert not worker.is_alive(), "execute did not return after cancel"
        assert outcome["error"] is not None, "the cancelled execute succeeded"
        assert "cancel" in str(outcome["error"]).lower(), outcome["error"]

    deadline = time.monotonic() + 20
    while True:
        states = [
            r[0]
            for r in pg.execute(
                "SELECT u.status FROM public.sys_unload_history u JOIN public.sys_query_history q "
                "USING (query_id) WHERE q.query_text LIKE %s",
                [f"%{marker}%"],
            ).fetchall()
        ]
        if states and "running" not in states:
            break
        assert time.monotonic() < deadline, f"the UNLOAD still runs: {states}"
        time.sleep(0.2)
    assert all(state != "completed" for state in states), states
    assert time.monotonic() - started < 25, "cancelled long before the UNLOAD would have finished"
