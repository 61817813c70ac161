"""The Prometheus metrics a dashboard needs, checked against what the server did: every metric
the Grafana dashboard (deploy/grafana/redshift-flight.json) queries is exported; rows streamed,
RPC latencies, UNLOADs waiting and running, staged bytes alive and the stream memory budget
have the values the calls imply."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import urllib.request

import pyarrow.flight as flight
from psycopg import sql

from conftest import ROOT, base_config, own_emulator, start_server, stop_server
from support import path, read_flight, unique

DASHBOARD = ROOT / "deploy" / "grafana" / "redshift-flight.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        return response.read().decode()


def value(text: str, name: str, labels: str = "") -> float:
    """The sample `name{labels}` (labels as exported, in order; empty: a sample without labels)."""
    pattern = rf"^{re.escape(name)}{re.escape('{' + labels + '}') if labels else ''}\s+(\S+)$"
    match = re.search(pattern, text, re.M)
    assert match, f"{name}{{{labels}}} not in:\n{text}"
    return float(match.group(1))


def dashboard_metrics() -> set[str]:
    exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]
    return {m for e in exprs for m in re.findall(r"\b(redshift_flight_\w+)", e)}


def test_dashboard_metrics_exist_and_count_what_happened(testbed, pg, make_schema, tmp_path):
    schema = make_schema("metrics")
    for table in ("a", "b"):
        pg.execute(sql.SQL("CREATE TABLE {}.{} (id int PRIMARY KEY, v text)").format(sql.Identifier(schema), sql.Identifier(table)))
        pg.execute(
            sql.SQL("INSERT INTO {}.{} SELECT g, 'v' || g FROM generate_series(1, 5000) g").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
        )
    metrics_address = f"127.0.0.1:{free_port()}"
    with own_emulator(testbed, tmp_path / "emulator", "--unload-delay-ms", "1500") as slow:
        config = base_config(slow) | {
            "metrics_address": metrics_address,
            "max_parallel_workers": "1",
            "sweep_interval_seconds": "1",
            "stream_memory_mb": "64",
            # A fully read run is deleted at once: a deletion to count.
            "staging_grace_seconds": "0",
            # A prefix of its own: the staged bytes are this server's runs only.
            "s3_prefix": unique("rsf-metrics"),
        }
        server = start_server(config, tmp_path / "server")
        try:
            client = server.connect()
            infos: dict[str, flight.FlightInfo] = {}
            callers = [
                threading.Thread(target=lambda t=t: infos.__setitem__(t, client.get_flight_info(path(schema, t))))
                for t in ("a", "b")
            ]
            for caller in callers:
                caller.start()
            # One UNLOAD runs, the other waits for the single slot.
            deadline, seen = time.monotonic() + 20, None
            while time.monotonic() < deadline:
                text = scrape(metrics_address)
                seen = (value(text, "redshift_flight_unloads_running"), value(text, "redshift_flight_unloads_waiting"))
                if seen == (1, 1):
                    break
                time.sleep(0.05)
            assert seen == (1, 1), f"running, waiting = {seen}"
            for caller in callers:
                caller.join(timeout=60)
            time.sleep(1.5)  # a sweep counts the two staged runs' bytes
            staged = value(scrape(metrics_address), "redshift_flight_staged_bytes_alive")
            rows = sum(read_flight(client, infos[t]).num_rows for t in ("a", "b"))
            assert rows == 10_000
            # Both runs are deleted as consumed (after the grace period and the reuse margin of a
            # second), and a sweep then counts what is left: polled, as a busy machine is slow.
            deadline = time.monotonic() + 15
            while True:
                text = scrape(metrics_address)
                if value(text, "redshift_flight_staged_bytes_alive") == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        finally:
            stop_server(server)
    # What is declared (a labelled family appears with its first event; every family the dashboard
    # uses has had one here), in the names PromQL sees: counters end in _total, histograms have
    # _bucket, _sum and _count.
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    exported = {
        name + suffix
        for name, kind in re.findall(r"^# TYPE (redshift_flight_\w+) (\w+)$", text, re.M)
        for suffix in suffixes.get(kind, [""])
    }
    missing = sorted(m for m in dashboard_metrics() if m not in exported)
    assert not missing, f"the dashboard queries metrics the server does not export: {missing}"
    assert value(text, "redshift_flight_rows_sent_total") == 10_000
    assert value(text, "redshift_flight_unloads_running") == 0
    assert value(text, "redshift_flight_unloads_waiting") == 0
    assert value(text, "redshift_flight_unload_duration_seconds_count") == 2
    assert value(text, "redshift_flight_rpc_duration_seconds_count", 'rpc="get_flight_info"') == 2
    assert value(text, "redshift_flight_rpc_duration_seconds_count", 'rpc="do_get"') == sum(
        len(infos[t].endpoints) for t in ("a", "b")
    )
    # Both GetFlightInfo waited for the 1.5 s UNLOAD delay at least.
    assert value(text, "redshift_flight_rpc_duration_seconds_sum", 'rpc="get_flight_info"') >= 3.0
    assert staged > 0
    assert value(text, "redshift_flight_staged_bytes_alive") == 0
    assert value(text, "redshift_flight_staged_run_deletions_total", 'reason="consumed"') == 2
    assert value(text, "redshift_flight_stream_memory_budget_bytes") == 64 * 1024 * 1024
    assert value(text, "redshift_flight_stream_memory_in_use_bytes") == 0
