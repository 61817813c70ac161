#!/usr/bin/env bash
# Times the same DataFusion query over demo.orders: the Rust provider (with and without filter
# pushdown) against pyarrow + DataFusion's Python bindings. Needs a running demo server
# (examples/demo/run, or DEMO_NO_WAIT=0 in another terminal) at $1 (default grpc://127.0.0.1:8815).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
LOCATION="${1:-grpc://127.0.0.1:8815}"
TABLE="${2:-demo.orders}"
RUNS="${3:-3}"
PYTHON="${TESTBED_PYTHON:-$ROOT/target/testbed/venv/bin/python}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/clients-rust"
(cd "$HERE/.." && cargo run --quiet --release --example bench_query -- "$LOCATION" "$TABLE" "$RUNS")
"$PYTHON" "$HERE/python_query.py" "$LOCATION" "$TABLE" "$RUNS"
