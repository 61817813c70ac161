#!/usr/bin/env python3
"""Read one Redshift table from a redshift-flight server into a Polars DataFrame.

    python polars_read.py public.orders
    python polars_read.py public.orders --columns id,total --location grpc://host:8815 --token secret

The endpoints (one per staged Parquet file) are read in parallel with pyarrow.flight; Polars takes
the Arrow record batches without copying.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor

import polars as pl
import pyarrow as pa
import pyarrow.flight as flight


def read_polars(location: str, table: str, columns: list[str] | None = None, token: str | None = None,
                workers: int = 8) -> pl.DataFrame:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    options = flight.FlightCallOptions(headers=headers)
    client = flight.FlightClient(location)
    request = {"table": table, "mode": "full", **({"columns": columns} if columns else {})}
    info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(request).encode()), options)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = list(pool.map(lambda e: client.do_get(e.ticket, options).read_all(), info.endpoints))
    arrow_table = pa.concat_tables(parts) if parts else info.schema.empty_table()
    return pl.from_arrow(arrow_table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", help="schema.table (double-quote parts that contain dots)")
    parser.add_argument("--location", default="grpc://127.0.0.1:8815", help="server URI (default %(default)s)")
    parser.add_argument("--columns", help="comma-separated projection (default: every column)")
    parser.add_argument("--token", help="bearer token, if the server has auth_tokens")
    args = parser.parse_args()

    frame = read_polars(args.location, args.table, args.columns.split(",") if args.columns else None, args.token)
    print(frame.schema)
    print(frame.head(10))
    print(f"{frame.height} rows x {frame.width} columns, {frame.estimated_size('mb'):.1f} MB")


if __name__ == "__main__":
    main()
