#!/usr/bin/env python3
"""The Python half of bench/compare.sh: reads a table through redshift-flight with pyarrow (every
endpoint in parallel), then runs the same query as bench_query.rs with DataFusion's Python
bindings on the Arrow table. Also times pyarrow alone with the filter sent as the command's
"where" (server-side, like the Rust provider's pushdown). Prints one JSON line per variant.

    python bench/python_query.py grpc://127.0.0.1:8815 demo.orders 3
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import datafusion
import pyarrow as pa
import pyarrow.flight as flight

QUERY = (
    "SELECT status, count(*) AS n, sum(amount) AS total, avg(amount) AS mean "
    "FROM t WHERE amount > 500 GROUP BY status ORDER BY status"
)


def read(client: flight.FlightClient, command: dict) -> pa.Table:
    info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(command).encode()))
    with ThreadPoolExecutor(max_workers=8) as pool:
        parts = list(pool.map(lambda e: client.do_get(e.ticket).read_all(), info.endpoints))
    return pa.concat_tables(parts) if parts else info.schema.empty_table()


def main() -> None:
    location, table, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 3
    client = flight.FlightClient(location)
    variants = {
        "pyarrow+datafusion-python": {"table": table, "mode": "full", "columns": ["status", "amount"]},
        "pyarrow+datafusion-python-where": {
            "table": table, "mode": "full", "columns": ["status", "amount"], "where": "amount > 500",
        },
    }
    for variant, command in variants.items():
        seconds, rows = [], 0
        for _ in range(runs):
            started = time.monotonic()
            data = read(client, command)
            ctx = datafusion.SessionContext()
            ctx.register_record_batches("t", [data.to_batches()])
            result = ctx.sql(QUERY).to_arrow_table()
            seconds.append(time.monotonic() - started)
            rows = result.num_rows
        print(json.dumps({"variant": variant, "seconds": seconds, "rows": rows}), flush=True)


if __name__ == "__main__":
    main()
