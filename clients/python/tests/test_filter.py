"""Row filters (the command's "where", proto-docs/README.md): through pyarrow.flight a filtered read
equals PostgreSQL's rows for the same WHERE and a refused filter is INVALID_ARGUMENT; the sync
client sends each table's filter, composes it with its cursor (only new matching rows move), and
reads a full snapshot again when the filter changes."""

from __future__ import annotations

import datetime as dt
import json
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from psycopg import sql

from support import command, raises_status, sync

CLIENT_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CLIENT_DIR))
import redshift_flight_sync  # noqa: E402

OPEN = "status = 'open' AND amount > 10"
CLOSED = "status = 'closed'"


@pytest.fixture
def orders(pg, make_schema):
    schema = make_schema("filt")
    pg.execute(
        sql.SQL(
            "CREATE TABLE {}.orders (id bigint PRIMARY KEY, status varchar(10), amount numeric(12,2), "
            "updated_at timestamp)"
        ).format(sql.Identifier(schema))
    )
    insert(pg, schema, range(1, 101), dt.datetime(2024, 1, 1))
    return schema


def insert(pg, schema: str, ids, at: dt.datetime) -> None:
    statuses = ("open", "closed", "void")
    with pg.cursor() as cur:
        cur.executemany(
            sql.SQL("INSERT INTO {}.orders VALUES (%s, %s, %s, %s)").format(sql.Identifier(schema)),
            [(i, statuses[i % 3], Decimal(i % 20) + Decimal("0.25"), at + dt.timedelta(seconds=i)) for i in ids],
        )


def postgres(pg, schema: str, predicate: str) -> list[tuple]:
    query = sql.SQL("SELECT * FROM {}.orders WHERE " + predicate + " ORDER BY id").format(sql.Identifier(schema))
    return pg.execute(query).fetchall()


def test_filtered_reads_equal_postgres_and_bad_filters_are_refused(client, pg, orders):
    table = f"{orders}.orders"
    for predicate in (OPEN, CLOSED, "id IN (1, 2, 3) OR updated_at > '2024-01-01 00:01:30'::timestamp"):
        got = sync(client, table, mode="full", where=predicate)
        rows = sorted(tuple(r.values()) for r in got.rows)
        assert rows == postgres(pg, orders, predicate), predicate
        assert rows, predicate
    for bad in ("1=1; DROP TABLE orders", "id = 1 --", "nope = 1", "pg_sleep(1) IS NULL", "count(*) > 1"):
        with raises_status("INVALID_ARGUMENT", match="filter"):
            client.get_flight_info(command(table=table, where=bad))
    assert pg.execute(sql.SQL("SELECT count(*) FROM {}.orders").format(sql.Identifier(orders))).fetchone() == (100,)


def test_sync_client_sends_each_tables_filter(flight_server, pg, orders, tmp_path):
    table = f"{orders}.orders"
    state, out = tmp_path / "state.json", tmp_path / "data"
    kwargs = dict(location=flight_server.location, state=state, out=out, format="parquet")

    def output() -> list[tuple]:
        got = redshift_flight_sync.read_parquet_output(out, table).sort_by("id")
        return [tuple(r.values()) for r in got.to_pylist()]

    [first] = redshift_flight_sync.sync_tables([table], where={table: OPEN}, **kwargs)
    assert first.ok, first.error
    assert output() == postgres(pg, orders, OPEN)
    assert json.loads(state.read_text())["tables"][table]["where"] == OPEN

    # New rows above the cursor, matching and not: exactly the new matching ones move.
    insert(pg, orders, range(101, 131), dt.datetime(2024, 2, 1))
    [second] = redshift_flight_sync.sync_tables([table], where={table: OPEN}, **kwargs)
    assert second.ok, second.error
    assert second.mode == "incremental"
    assert second.rows == len(postgres(pg, orders, OPEN + " AND id > 100")) > 0
    assert output() == postgres(pg, orders, OPEN)

    # The CLI with another filter: the stored cursor is ignored, a full snapshot replaces the output.
    status = redshift_flight_sync.main(
        ["--location", flight_server.location, "--state", str(state), "--out", str(out), "--where", table, CLOSED, table]
    )
    assert status == 0
    assert output() == postgres(pg, orders, CLOSED)
    entry = json.loads(state.read_text())["tables"][table]
    assert (entry["mode"], entry["where"]) == ("full", CLOSED)
