#!/usr/bin/env python3
"""pyarrow's reference Flight server (issue 16): what a user writes in ten lines to serve Parquet files
over Arrow Flight with `pyarrow.flight.FlightServerBase` and `pq.ParquetFile.iter_batches`. The suite
(`bench/hardware.py`) runs it in a process of its own and reads it with the same client code as
redshift-flight's DoGet.

    ref_flight_server.py FILE...   serves every FILE: GetFlightInfo (any descriptor) answers one endpoint per
                                   file, whose ticket is the file's path; DoGet streams that file's batches
                                   (64 Ki rows). Prints "ready <port>" on stdout once it listens on 127.0.0.1.

Imports pyarrow only.
"""

import sys

import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq


class ParquetFlightServer(flight.FlightServerBase):
    def __init__(self, files: list[str]):
        super().__init__("grpc+tcp://127.0.0.1:0")
        self.files = files

    def get_flight_info(self, context, descriptor):
        schema = pq.read_schema(self.files[0])
        endpoints = [flight.FlightEndpoint(f.encode(), []) for f in self.files]
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in self.files)
        return flight.FlightInfo(schema, descriptor, endpoints, rows, -1)

    def do_get(self, context, ticket):
        pf = pq.ParquetFile(ticket.ticket.decode(), pre_buffer=True)
        return flight.RecordBatchStream(pa.RecordBatchReader.from_batches(
            pf.schema_arrow, pf.iter_batches(batch_size=64 * 1024)))


if __name__ == "__main__":
    server = ParquetFlightServer(sys.argv[1:])
    print(f"ready {server.port}", flush=True)
    server.serve()
