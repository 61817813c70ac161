"""Many concurrent clients against one server: every result exact, no error, and the server's peak
RSS. Each client runs GetFlightInfo (so UNLOADs queue behind max_parallel_workers) and reads every
endpoint; half read the same table, half spread over the others. Run with the test bed up:

    source target/testbed/env && $TESTBED_PYTHON bench/concurrent_clients.py [--clients 50]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as b  # noqa: E402  (the server wrapper and RSS sampler)

TABLES = 5


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--rows", type=int, default=200_000, help="rows per table")
    p.add_argument("--server-bin", type=Path, default=b.ROOT / "target/release/redshift-flight")
    args = p.parse_args()
    with psycopg.connect(b.env("TESTBED_PG_URL"), autocommit=True) as pg:
        pg.execute("CREATE SCHEMA IF NOT EXISTS bench")
        for t in range(TABLES):
            name = f"bench.concurrent_{t}"
            exists = pg.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0]
            if exists is None or pg.execute(f"SELECT count(*) FROM {name}").fetchone()[0] != args.rows + t:
                pg.execute(f"DROP TABLE IF EXISTS {name}")
                pg.execute(
                    f"CREATE TABLE {name} AS SELECT g::bigint AS id, md5(g::text) AS v, "
                    f"now() - g * interval '1 second' AS at FROM generate_series(1, {args.rows + t}) g"
                )
    with tempfile.TemporaryDirectory() as tmp:
        server = b.Server(args.server_bin, Path(tmp), "concurrent")
        server.start()
        sampler = b.RssSampler(server.pid)
        sampler.start()
        started = time.monotonic()

        def one(i: int) -> tuple[int, int]:
            t = 0 if i % 2 == 0 else 1 + i % (TABLES - 1)
            client = server.client()
            info = client.get_flight_info(b.flight.FlightDescriptor.for_path("bench", f"concurrent_{t}"))
            rows, id_sum = 0, 0
            for e in info.endpoints:
                table = client.do_get(e.ticket).read_all()
                rows += table.num_rows
                id_sum += b.pc.sum(table.column("id")).as_py() or 0
            return t, rows, id_sum

        errors = 0
        with cf.ThreadPoolExecutor(max_workers=args.clients) as pool:
            for future in cf.as_completed([pool.submit(one, i) for i in range(args.clients)]):
                try:
                    t, rows, id_sum = future.result()
                    n = args.rows + t
                    if rows != n or id_sum != n * (n + 1) // 2:
                        errors += 1
                        print(f"table {t}: {rows} rows, sum(id) {id_sum}; expected {n} and {n * (n + 1) // 2}", file=sys.stderr)
                except Exception as e:  # noqa: BLE001 - every failure is counted and shown
                    errors += 1
                    print(f"client failed: {e}", file=sys.stderr)
        elapsed = time.monotonic() - started
        peak_sampled = sampler.stop()
        hwm = b.proc_status_kb(server.pid, "VmHWM")
        server.stop()
    print(
        f"{args.clients} concurrent clients, {TABLES} tables of ~{args.rows:,} rows: {errors} errors, "
        f"{elapsed:.1f} s, server VmHWM {hwm / 1024:.0f} MB (sampled max RSS {peak_sampled / 1024:.0f} MB)"
    )
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
