#!/usr/bin/env python3
"""Read one Redshift table from a redshift-flight server with pyarrow.

    python read_table.py public.orders
    python read_table.py '"my.schema"."Orders"' --columns id,total --location grpc://host:8815 --token secret

Lists the tables of the schema, asks for the table (the server UNLOADs it to S3 as Parquet), then
reads every endpoint (one per staged file) in parallel and prints the first rows and the totals.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.flight as flight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", help="schema.table (or table, in the server's default schema)")
    parser.add_argument("--location", default="grpc://127.0.0.1:8815", help="server URI (default %(default)s)")
    parser.add_argument("--columns", help="comma-separated projection (default: every column)")
    parser.add_argument("--token", help="bearer token, if the server has auth_tokens")
    parser.add_argument("--workers", type=int, default=8, help="endpoints read at once (default %(default)s)")
    parser.add_argument("--rows", type=int, default=10, help="rows to print (default %(default)s)")
    args = parser.parse_args()

    headers = [(b"authorization", f"Bearer {args.token}".encode())] if args.token else []
    options = flight.FlightCallOptions(headers=headers)
    client = flight.FlightClient(args.location)

    # ListFlights takes a schema name as its criteria (empty: the server's default schema). This
    # simple split is only for the listing; the server itself parses the quoted form below.
    schema = args.table.split(".")[0].strip('"') if "." in args.table else ""
    names = [".".join(p.decode() for p in info.descriptor.path) for info in client.list_flights(schema.encode(), options)]
    print(f"{len(names)} tables in schema {schema or '(default)'}: {', '.join(names[:20])}")

    # The JSON command descriptor; FlightDescriptor.for_path(schema, table) works too (no projection).
    request = {"table": args.table, "mode": "full"}
    if args.columns:
        request["columns"] = args.columns.split(",")
    descriptor = flight.FlightDescriptor.for_command(json.dumps(request).encode())

    started = time.monotonic()
    info = client.get_flight_info(descriptor, options)
    metadata = json.loads(info.app_metadata)
    print(f"staged run {metadata['run_id']}: {len(info.endpoints)} files, {info.total_records} rows, "
          f"{info.total_bytes} bytes, tickets valid until {metadata['expires_at']}")

    def read(endpoint: flight.FlightEndpoint) -> pa.Table:
        # No locations in the endpoint: read it from the server that issued it.
        return client.do_get(endpoint.ticket, options).read_all()

    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        parts = list(pool.map(read, info.endpoints))
    result = pa.concat_tables(parts) if parts else info.schema.empty_table()
    elapsed = time.monotonic() - started

    print(result.schema)
    print(result.slice(0, args.rows).to_pandas() if result.num_rows else "(no rows)")
    print(f"{result.num_rows} rows, {result.num_columns} columns, {result.nbytes / 1e6:.1f} MB in memory, "
          f"{elapsed:.2f}s")
    if result.num_rows != info.total_records:
        raise SystemExit(f"expected {info.total_records} rows, read {result.num_rows}")


if __name__ == "__main__":
    main()
