"""One Flight client process of the memory phase's many-clients case (bench/suite.py starts them).

Reads one JSON line on stdin: {"uri", "tickets": [base64], "schema": base64 IPC schema, "key", "parallel"};
connects, prints "ready", waits for a line "go", reads every ticket (one at a time, or all at once when
"parallel"), checking the schema and counting rows, Arrow bytes and sum(key), and prints one JSON line
with the totals and its elapsed seconds.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as b  # noqa: E402

import pyarrow as pa  # noqa: E402
import pyarrow.flight as flight  # noqa: E402


def main() -> None:
    job = json.loads(sys.stdin.readline())
    client = flight.FlightClient(job["uri"])
    client.wait_for_available(timeout=30)
    schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(job["schema"])))
    endpoints = [flight.FlightEndpoint(flight.Ticket(base64.b64decode(t)), []) for t in job["tickets"]]
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        sys.exit("no go")
    t0 = time.perf_counter()
    tasks = [lambda e=e: b.doget_one(client, e, schema, job["key"]) for e in endpoints]
    if job["parallel"]:
        total = b.run_parallel(tasks, len(tasks))
    else:
        total = b.ReadResult()
        for task in tasks:
            total.add(task())
    seconds = time.perf_counter() - t0
    client.close()
    print(json.dumps({"rows": total.rows, "nbytes": total.nbytes, "key_sum": total.key_sum,
                      "seconds": seconds}), flush=True)


if __name__ == "__main__":
    main()
