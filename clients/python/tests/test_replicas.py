"""Several replicas behind a real gRPC load balancer (Debian's nginx, started by
tests/testbed/balancer: round robin per call, HTTP/2 on both sides). Any replica redeems the
tickets and prepared-statement handles of another (a shared ticket_secret); a replica killed with
SIGKILL in the middle of a DoGet or of an UNLOAD costs the client one retry, not a row; and the
dead replica's runs are swept by the others. Every result is compared with PostgreSQL."""

from __future__ import annotations

import re
import threading
import time

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from psycopg import sql

from conftest import FlightServer, own_emulator
from replicas_support import boto_client, kill, replicas, rows_sent
from support import path, read_flight, unique

# Wide enough (about 20 MB of Arrow) that a DoGet is still streaming when its replica is killed:
# HTTP/2 flow control keeps a server at most a few MB ahead of its reader.
ROWS = 200_000
# Errors a client sees when the replica serving its call dies (nginx resets the stream).
REPLICA_GONE = (flight.FlightUnavailableError, flight.FlightInternalError, pa.ArrowIOError)


@pytest.fixture(scope="module")
def wide(pg):
    schema = unique("replicas")
    pg.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    pg.execute(
        sql.SQL("CREATE TABLE {}.t (id bigint PRIMARY KEY, label varchar(120), amount numeric(12,2))").format(sql.Identifier(schema))
    )
    pg.execute(
        sql.SQL(
            "INSERT INTO {}.t SELECT g, CASE WHEN g %% 17 = 0 THEN NULL ELSE repeat(md5(g::text), 3) END, "
            "(g * 3.17)::numeric(12,2) FROM generate_series(1, %s) g"
        ).format(sql.Identifier(schema)),
        [ROWS],
    )
    yield schema
    pg.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def postgres(pg, schema: str) -> pa.Table:
    rows = pg.execute(sql.SQL("SELECT id, label, amount FROM {}.t ORDER BY id").format(sql.Identifier(schema))).fetchall()
    return pa.table({"id": [r[0] for r in rows], "label": [r[1] for r in rows], "amount": [r[2] for r in rows]})


def same_rows(got: pa.Table, want: pa.Table) -> None:
    got = got.select(["id", "label", "amount"]).sort_by("id")
    assert got.num_rows == want.num_rows
    assert got.column("id").to_pylist() == want.column("id").to_pylist()
    assert got.column("label").to_pylist() == want.column("label").to_pylist()
    assert got.column("amount").to_pylist() == want.column("amount").to_pylist()


def read_with_retry(client: flight.FlightClient, endpoint: flight.FlightEndpoint, attempts: list[int], before_rest=None) -> pa.Table:
    """What a client should do (README, "Deploying"): a DoGet that fails because its replica went
    away is read again, whole, with the same ticket; the balancer sends it to a live replica."""
    for attempt in range(1, 4):
        try:
            reader = client.do_get(endpoint.ticket)
            first = reader.read_chunk().data
            if before_rest is not None and attempt == 1:
                before_rest()
            rest = reader.read_all()
            attempts.append(attempt)
            return pa.Table.from_batches([first, *rest.to_batches()], schema=rest.schema)
        except REPLICA_GONE:
            if attempt == 3:
                raise
    raise AssertionError("unreachable")


def test_any_replica_redeems_any_ticket_and_handle(testbed, pg, wide, tmp_path):
    want = postgres(pg, wide)
    with replicas(testbed, tmp_path, redshift_schema=wide) as cluster:
        client = cluster.client()
        for _ in range(3):
            same_rows(read_flight(client, client.get_flight_info(path(wide, "t"))), want)
        # The same ticket, redeemed by each replica directly.
        info = client.get_flight_info(path(wide, "t"))
        for server in cluster.servers:
            direct = server.connect()
            same_rows(pa.concat_tables(direct.do_get(e.ticket).read_all() for e in info.endpoints), want)
        # Flight SQL: prepare (DoAction), bind (DoPut), plan (GetFlightInfo) and read (DoGet) land on
        # different replicas in turn.
        with flight_sql.connect(cluster.location, autocommit=True) as conn, conn.cursor() as cur:
            for bound in (10, 5000, 123_456):
                cur.execute('SELECT id, label, amount FROM "t" WHERE id <= ? ORDER BY id', (bound,))
                got = cur.fetch_arrow_table()
                expected = want.slice(0, bound)
                same_rows(got, expected)
        infos = cluster.upstreams("GetFlightInfo")
        gets = cluster.upstreams("DoGet")
        actions = cluster.upstreams("DoAction")
    assert len(set(infos)) == 3 and len(set(gets)) == 3, (infos, gets)
    assert len(set(actions)) >= 2, actions


def test_advertised_locations_let_clients_spread_doGets(testbed, pg, wide, tmp_path):
    want = postgres(pg, wide)
    with replicas(testbed, tmp_path, advertise=True, redshift_schema=wide, endpoint_rows="20000") as cluster:
        info = cluster.client().get_flight_info(path(wide, "t"))
        replicas_uris = [s.location for s in cluster.servers]
        assert len(info.endpoints) >= 3
        tables = []
        for i, endpoint in enumerate(info.endpoints):
            assert [loc.uri.decode() if isinstance(loc.uri, bytes) else loc.uri for loc in endpoint.locations] == replicas_uris
            # A client spreads its reads over the locations itself, round robin here.
            location = endpoint.locations[i % len(endpoint.locations)]
            tables.append(flight.FlightClient(location).do_get(endpoint.ticket).read_all())
        same_rows(pa.concat_tables(tables), want)
        for server in cluster.servers:
            assert rows_sent(server) > 0, "every replica served some of the endpoints"


def test_replica_killed_mid_doget_costs_one_retry(testbed, pg, wide, tmp_path):
    want = postgres(pg, wide)
    # One slice: one file, one endpoint of about 20 MB.
    with own_emulator(testbed, tmp_path / "emulator", "--slices", "1") as one_file, replicas(
        one_file, tmp_path, redshift_schema=wide
    ) as cluster:
        client = cluster.client()
        info = client.get_flight_info(path(wide, "t"))
        killed: list[FlightServer] = []

        def kill_the_streaming_replica() -> None:
            streaming = [s for s in cluster.servers if rows_sent(s) > 0]
            assert len(streaming) == 1, "one replica streams the first endpoint"
            kill(streaming[0])
            killed.append(streaming[0])

        attempts: list[int] = []
        tables = [read_with_retry(client, info.endpoints[0], attempts, kill_the_streaming_replica)]
        tables += [read_with_retry(client, e, attempts) for e in info.endpoints[1:]]
        same_rows(pa.concat_tables(tables), want)
        assert killed and attempts[0] == 2, f"the first read failed once and was retried: {attempts}"
        # The balancer no longer sends anything to the dead replica.
        same_rows(read_flight(client, client.get_flight_info(path(wide, "t"))), want)


def test_replica_killed_during_unload_is_retried_and_its_run_swept(testbed, pg, wide, tmp_path):
    want = postgres(pg, wide)
    with own_emulator(testbed, tmp_path / "emulator", "--unload-delay-ms", "2500") as slow:
        with replicas(
            slow, tmp_path, redshift_schema=wide, staging_ttl_seconds="15", sweep_interval_seconds="1",
            snapshot_reuse_seconds="off",
        ) as cluster:
            client = cluster.client()
            result: dict = {}

            def plan() -> None:
                try:
                    result["info"] = client.get_flight_info(path(wide, "t"))
                except REPLICA_GONE as e:
                    result["error"] = e

            caller = threading.Thread(target=plan)
            caller.start()
            deadline = time.monotonic() + 30
            unloading, run_id = None, None
            while unloading is None and time.monotonic() < deadline:
                for server in cluster.servers:
                    match = re.search(r"UNLOAD started.*run_id=(\S+)", server.stderr_path.read_text(errors="replace"))
                    if match:
                        unloading, run_id = server, match.group(1).strip('"')
                time.sleep(0.05)
            assert unloading is not None, "some replica started the UNLOAD"
            kill(unloading)
            caller.join(timeout=60)
            assert "error" in result, "the GetFlightInfo of the killed replica failed"
            # The client retries; a live replica stages the table again.
            info = client.get_flight_info(path(wide, "t"))
            same_rows(read_flight(client, info), want)
            # The dead replica's run (whatever its UNLOAD and lease left) is deleted by the survivors
            # once its life ends.
            s3 = boto_client(testbed)
            prefix = f"{cluster.servers[0].config['s3_prefix']}/{run_id}/"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                left = s3.list_objects_v2(Bucket=testbed["TESTBED_S3_BUCKET"], Prefix=prefix).get("KeyCount", 0)
                if left == 0:
                    break
                time.sleep(1)
            assert left == 0, f"{left} objects of the dead replica's run {run_id} are left"

