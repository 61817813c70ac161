#!/usr/bin/env python3
"""Sync Redshift tables through redshift-flight into local Parquet files or a DuckDB database,
incrementally, without ever skipping a row.

    python redshift_flight_sync.py --location grpc://127.0.0.1:8815 --state state.json --out ./data \\
        [--token T] [--workers 4] [--lookback "1 hour"] [--format parquet|duckdb] \\
        [--where schema.table "status = 'open'" ...] schema.table [...]

For each table (tables in parallel, the endpoints of one table in parallel too):

1. GetFlightInfo with `{"table": ..., "mode": "auto", "cursor": <the stored cursor>}`. The server
   freezes the window's upper end (`SELECT MAX(key)`) and returns `next_cursor` before any data
   moves.
2. Every endpoint is read (DoGet) and its batches are written, streaming, to one new output:
   - Parquet: one file per sync, `<out>/<schema.table>/<seq>-<mode>.parquet`, written under a
     temporary name, fsynced and renamed. A `full` file is a complete snapshot (the files before
     it are deleted once its cursor is stored); the `incremental` files after it are upserts on
     the primary key (`read_parquet_output` applies them).
   - DuckDB: one table per source table, named `"schema.table"`; a full sync replaces it, an
     incremental sync is upserted on the primary key (schema metadata
     `redshift_flight.primary_key`), or appended when the table has none.
3. Only after every endpoint was read, the row count checked against `total_records`, and the
   output made durable, the new cursor is stored in the state file (temp file + fsync + rename,
   under a lock, so parallel tables never clobber each other's progress).

A table may have a row filter (`--where TABLE PREDICATE`, or `where={table: predicate}`): one SQL
expression over the table's columns, sent as the command's `"where"` and ANDed by the server with
the cursor window. The state file remembers each table's filter; when it changes, the stored cursor
is ignored and the table is read again as a full snapshot (rows that match only under the new
filter may lie below the cursor).

A crash anywhere before step 3 leaves the old cursor in place: the next run reads the same window
again, and the upsert on the primary key makes the overlap harmless. A failing table does not
stop the others; the exit status is 1 if any table failed (2 for usage errors).

Only pyarrow and the standard library are needed (DuckDB for `--format duckdb`). Importable:
`sync_tables(...)` runs a sync and returns one `TableResult` per table; `read_parquet_output(...)`
reads a table's Parquet output back, upserted.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight
import pyarrow.parquet as pq

try:  # POSIX: also keep two sync processes sharing a state file from clobbering each other.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

STATE_VERSION = 1
PRIMARY_KEY_METADATA = b"redshift_flight.primary_key"
PARQUET_FILE = re.compile(r"^(\d{6,})-(full|incremental)\.parquet$")
# DoGet answers these when a staged run expired or was cleaned up: the remedy is a new
# GetFlightInfo (the cursor has not moved, so nothing is lost by starting the table again).
RESTAGE_HINT = "call GetFlightInfo again"


class SyncError(Exception):
    """A table could not be synced (the message says why)."""


@dataclass
class TableResult:
    """What happened to one table."""

    table: str  # as given on the command line
    ok: bool
    name: str | None = None  # schema.table as the server resolved it
    mode: str | None = None  # "full" | "incremental"
    replication_key: str | None = None
    rows: int = 0
    endpoints: int = 0
    cursor_before: str | None = None
    cursor_after: str | None = None
    output: str | None = None  # the file or DuckDB table written, if any
    error: str | None = None

    @property
    def cursor_advanced(self) -> bool:
        return self.ok and self.cursor_after != self.cursor_before

    def summary(self) -> str:
        if not self.ok:
            return f"{self.table}: FAILED: {self.error}"
        cursor = "cursor advanced" if self.cursor_advanced else "cursor unchanged"
        if self.cursor_after is None:
            cursor = "no cursor (no replication key)"
        key = f" key={self.replication_key}" if self.replication_key else ""
        return (
            f"{self.table}: mode={self.mode}{key} rows={self.rows} endpoints={self.endpoints} {cursor}"
            + (f" -> {self.output}" if self.output else "")
        )


# --------------------------------------------------------------------------------------------------
# Durable files


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes `data` to `path` so that a crash leaves either the old or the new content."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(path.parent)


class StateFile:
    """The cursors, one entry per table: `{"version": 1, "tables": {"<table>": {"cursor": ...}}}`.

    Every update re-reads the file and replaces it atomically while holding a lock (a thread lock
    for the tables of this process, an advisory file lock for other processes)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _locked(self):
        with self._lock:
            if fcntl is None:
                yield
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path.with_name(self.path.name + ".lock"), "a+b") as lock:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _read(self) -> dict:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {"version": STATE_VERSION, "tables": {}}
        try:
            state = json.loads(raw)
        except ValueError as e:
            # Never start over silently: a lost cursor means a full resync, a wrong one lost rows.
            raise SyncError(f"state file {self.path} is not valid JSON ({e}); fix or remove it") from e
        if not isinstance(state, dict) or not isinstance(state.get("tables"), dict):
            raise SyncError(f"state file {self.path} is not a redshift-flight sync state")
        return state

    def load(self) -> dict:
        """All entries, by table."""
        with self._locked():
            return self._read()["tables"]

    def get(self, table: str) -> dict:
        return self.load().get(table) or {}

    def update(self, table: str, entry: dict) -> None:
        """Replaces one table's entry, keeping every other table's as it is on disk now."""
        with self._locked():
            state = self._read()
            state["version"] = STATE_VERSION
            state["tables"][table] = entry
            data = json.dumps(state, indent=2, sort_keys=True).encode("utf-8") + b"\n"
            _atomic_write_bytes(self.path, data)


# --------------------------------------------------------------------------------------------------
# Outputs


def _dir_name(table: str) -> str:
    """`schema.table` as one safe path component (`%`, `/`, `\\` and NUL percent-encoded)."""
    name = "".join(f"%{ord(c):02X}" if c in "%/\\\0" else c for c in table)
    return name if name.strip(".") else name.replace(".", "%2E")


def _quote_duckdb(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _primary_key(schema: pa.Schema) -> list[str]:
    raw = (schema.metadata or {}).get(PRIMARY_KEY_METADATA)
    if not raw:
        return []
    key = json.loads(raw)
    return [str(c) for c in key] if isinstance(key, list) else []


class _StagedParquet:
    """One Parquet file being written from several endpoint streams at once (a lock serialises
    the batches), under a temporary name until `commit`."""

    def __init__(self, final: Path, schema: pa.Schema):
        self.final = final
        self.tmp = final.with_name(f".{final.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        self.schema = schema
        self._lock = threading.Lock()
        final.parent.mkdir(parents=True, exist_ok=True)
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(self.tmp, schema, compression="zstd")
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        with self._lock:
            assert self._writer is not None, "write after close"
            self._writer.write_batch(batch)
            self.rows += batch.num_rows

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        with open(self.tmp, "rb+") as f:
            os.fsync(f.fileno())

    def commit(self) -> Path:
        self.close()
        os.replace(self.tmp, self.final)
        _fsync_dir(self.final.parent)
        return self.final

    def abort(self) -> None:
        with self._lock:
            if self._writer is not None:
                with contextlib.suppress(Exception):
                    self._writer.close()
                self._writer = None
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


class ParquetSink:
    """`<out>/<schema.table>/<seq>-<full|incremental>.parquet`, one file per sync."""

    def __init__(self, out_dir: str | os.PathLike):
        self.out_dir = Path(out_dir)
        self._lock = threading.Lock()

    def table_dir(self, name: str) -> Path:
        return self.out_dir / _dir_name(name)

    def begin(self, name: str, schema: pa.Schema, mode: str) -> "_ParquetRun":
        directory = self.table_dir(name)
        with self._lock:  # two syncs of one table in one process must not pick the same number
            directory.mkdir(parents=True, exist_ok=True)
            seq = 1 + max((int(m.group(1)) for m in map(PARQUET_FILE.match, os.listdir(directory)) if m), default=0)
            final = directory / f"{seq:06d}-{mode}.parquet"
            staged = _StagedParquet(final, schema)
        return _ParquetRun(staged)

    def superseded(self, name: str, snapshot: str) -> None:
        """Deletes the files a committed full snapshot replaces (those numbered below it). Called
        after the cursor was stored; a crash before it only leaves files the reader ignores."""
        keep = PARQUET_FILE.match(Path(snapshot).name)
        directory = self.table_dir(name)
        for entry in os.listdir(directory):
            m = PARQUET_FILE.match(entry)
            if m and keep and int(m.group(1)) < int(keep.group(1)):
                with contextlib.suppress(FileNotFoundError):
                    (directory / entry).unlink()


class _ParquetRun:
    def __init__(self, staged: _StagedParquet):
        self.staged = staged
        self.write = staged.write

    @property
    def rows(self) -> int:
        return self.staged.rows

    def commit(self) -> str:
        return str(self.staged.commit())

    def abort(self) -> None:
        self.staged.abort()


class DuckDBSink:
    """One DuckDB table per source table, named `"schema.table"`. Each sync is staged to a Parquet
    file first (streaming, bounded memory), then applied in one transaction: a full sync replaces
    the table; an incremental sync deletes the rows whose primary key it carries and inserts its
    rows (append only when the table has no primary key)."""

    def __init__(self, database: str | os.PathLike, staging_dir: str | os.PathLike):
        import duckdb  # optional dependency, only for --format duckdb

        self.database = str(database)
        Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        self.staging_dir = Path(staging_dir)
        self.connection = duckdb.connect(self.database)
        self._lock = threading.Lock()

    def begin(self, name: str, schema: pa.Schema, mode: str) -> "_DuckDBRun":
        final = self.staging_dir / f"{_dir_name(name)}.{uuid.uuid4().hex[:12]}.parquet"
        return _DuckDBRun(self, name, schema, mode, _StagedParquet(final, schema))

    def _apply(self, name: str, schema: pa.Schema, mode: str, parquet: Path) -> None:
        table = _quote_duckdb(name)
        source = "read_parquet(?)"
        pk = _primary_key(schema)
        with self._lock:
            cursor = self.connection.cursor()
            try:
                cursor.execute("BEGIN TRANSACTION")
                exists = cursor.execute(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() "
                    "AND table_name = ?",
                    [name],
                ).fetchone()[0]
                if mode == "full" or not exists:
                    cursor.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM {source}", [str(parquet)])
                else:
                    if pk:
                        match = " AND ".join(
                            f"{table}.{_quote_duckdb(c)} IS NOT DISTINCT FROM s.{_quote_duckdb(c)}" for c in pk
                        )
                        columns = ", ".join(_quote_duckdb(c) for c in pk)
                        cursor.execute(
                            f"DELETE FROM {table} USING (SELECT {columns} FROM {source}) AS s WHERE {match}",
                            [str(parquet)],
                        )
                    cursor.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {source}", [str(parquet)])
                cursor.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    cursor.execute("ROLLBACK")
                raise
            finally:
                cursor.close()
            # Durable before the cursor moves: write the WAL into the database file.
            self.connection.execute("CHECKPOINT")

    def close(self) -> None:
        with self._lock:
            self.connection.close()


class _DuckDBRun:
    def __init__(self, sink: DuckDBSink, name: str, schema: pa.Schema, mode: str, staged: _StagedParquet):
        self.sink, self.name, self.schema, self.mode, self.staged = sink, name, schema, mode, staged
        self.write = staged.write

    @property
    def rows(self) -> int:
        return self.staged.rows

    def commit(self) -> str:
        path = self.staged.commit()
        try:
            self.sink._apply(self.name, self.schema, self.mode, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return f"{self.sink.database}:{_quote_duckdb(self.name)}"

    def abort(self) -> None:
        self.staged.abort()


# --------------------------------------------------------------------------------------------------
# Reading the Parquet output back


def upsert(tables: Iterable[pa.Table], primary_key: list[str]) -> pa.Table:
    """Concatenates `tables` in order and keeps, per primary key, the last row (last write wins).
    Without a primary key the rows are only concatenated."""
    tables = list(tables)
    combined = pa.concat_tables(tables, promote_options="default")
    if not primary_key or combined.num_rows == 0:
        return combined
    position = "__redshift_flight_position"
    numbered = combined.append_column(position, pa.array(range(combined.num_rows), pa.int64()))
    last = numbered.group_by(primary_key, use_threads=False).aggregate([(position, "max")])
    keep = pc.sort_indices(last.column(f"{position}_max"))
    return combined.take(pc.take(last.column(f"{position}_max"), keep))


def parquet_files(out_dir: str | os.PathLike, table: str) -> list[Path]:
    """The files of the current state of `table`: the newest full snapshot and every incremental
    file after it, in sync order."""
    directory = Path(out_dir) / _dir_name(table)
    found = sorted(
        (int(m.group(1)), m.group(2), directory / m.group(0))
        for m in map(PARQUET_FILE.match, os.listdir(directory) if directory.is_dir() else [])
        if m
    )
    start = max((i for i, (_seq, mode, _p) in enumerate(found) if mode == "full"), default=0)
    return [p for _seq, _mode, p in found[start:]]


def read_parquet_output(out_dir: str | os.PathLike, table: str) -> pa.Table:
    """The synced table as of the last sync: its Parquet files upserted on the primary key."""
    files = parquet_files(out_dir, table)
    if not files:
        raise SyncError(f"no Parquet output for {table} under {out_dir}")
    tables = [pq.read_table(f) for f in files]
    return upsert(tables, _primary_key(tables[-1].schema))


# --------------------------------------------------------------------------------------------------
# Syncing


@dataclass
class SyncOptions:
    location: str
    token: str | None = None
    workers: int = 4
    endpoint_workers: int = 4
    lookback: Any = None  # "1 hour", "90", 100: passed to the server as given
    full: bool = False  # ignore stored cursors and read full snapshots
    timeout: float | None = None  # seconds per Flight call
    retries: int = 1  # new GetFlightInfo when a staged run expired mid-read
    where: dict[str, str] | None = None  # table (as given) -> row filter, sent as "where"


def _call_options(options: SyncOptions) -> flight.FlightCallOptions:
    headers = [(b"authorization", f"Bearer {options.token}".encode())] if options.token else []
    return flight.FlightCallOptions(headers=headers, timeout=options.timeout)


def _needs_restage(error: BaseException) -> bool:
    return RESTAGE_HINT in str(error)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def cancel_flight(client: flight.FlightClient, info: flight.FlightInfo, call_options=None) -> bool:
    """Best effort: asks the server to drop a flight's staged files now (the standard
    `CancelFlightInfo` action, body `CancelFlightInfoRequest{info = 1}`) instead of at their
    expiry. Returns whether the server accepted; never raises."""
    raw = info.serialize()
    body = b"\x0a" + _varint(len(raw)) + raw
    try:
        args = (flight.Action("CancelFlightInfo", body),) + ((call_options,) if call_options else ())
        list(client.do_action(*args))
        return True
    except Exception:  # noqa: BLE001 - cleanup must not hide the error that caused it
        return False


def read_endpoint(
    client: flight.FlightClient,
    endpoint: flight.FlightEndpoint,
    call_options: flight.FlightCallOptions,
    write: Callable[[pa.RecordBatch], None],
    schema: pa.Schema,
) -> int:
    """Streams one endpoint into `write`, batch by batch; returns its row count."""
    reader = client.do_get(endpoint.ticket, call_options)
    if not reader.schema.equals(schema, check_metadata=False):
        raise SyncError(f"endpoint schema {reader.schema} differs from the promised {schema}")
    rows = 0
    for chunk in reader:
        write(chunk.data)
        rows += chunk.data.num_rows
    return rows


def _sync_once(client, table: str, state: StateFile, sink, options: SyncOptions, result: TableResult) -> None:
    entry = state.get(table)
    predicate = (options.where or {}).get(table)
    # A new filter may match rows below the stored cursor: read a full snapshot again.
    filter_changed = bool(entry.get("cursor")) and entry.get("where") != predicate
    full = options.full or filter_changed
    cursor = None if full else entry.get("cursor")
    result.cursor_before = entry.get("cursor")
    command: dict[str, Any] = {"table": table, "mode": "full" if full else "auto"}
    if cursor:
        command["cursor"] = cursor
    if predicate is not None:
        command["where"] = predicate
    if options.lookback is not None:
        command["lookback"] = options.lookback
    call_options = _call_options(options)
    descriptor = flight.FlightDescriptor.for_command(json.dumps(command).encode("utf-8"))
    info = client.get_flight_info(descriptor, call_options)
    meta = json.loads(bytes(info.app_metadata).decode("utf-8"))
    result.name, result.mode = meta["table"], meta["mode"]
    result.replication_key = meta.get("replication_key")
    next_cursor = meta.get("next_cursor")
    endpoints = list(info.endpoints)
    result.endpoints = len(endpoints)

    # An incremental sync with no rows changes nothing; a full one with no rows is an empty
    # snapshot, which must replace what was there.
    if endpoints or result.mode == "full":
        run = sink.begin(result.name, info.schema, result.mode)
        try:
            workers = max(1, min(options.endpoint_workers, len(endpoints)))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="endpoint") as pool:
                counts = list(
                    pool.map(lambda e: read_endpoint(client, e, call_options, run.write, info.schema), endpoints)
                )
            rows = sum(counts)
            if info.total_records >= 0 and rows != info.total_records:
                raise SyncError(f"read {rows} rows but the server staged {info.total_records}")
            result.output = run.commit()
            result.rows = rows
        except BaseException:
            run.abort()
            cancel_flight(client, info, call_options)  # the staged run is of no use now
            raise

    # Every endpoint was read and written durably: only now may the cursor move.
    state.update(
        table,
        {
            "cursor": next_cursor,
            "table": result.name,
            "mode": result.mode,
            "replication_key": result.replication_key,
            "upper_bound": meta.get("upper_bound"),
            "rows": result.rows,
            "where": predicate,
            "synced_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
        },
    )
    result.cursor_after = next_cursor
    if result.mode == "full" and result.output and isinstance(sink, ParquetSink):
        sink.superseded(result.name, result.output)


def sync_table(client: flight.FlightClient, table: str, state: StateFile, sink, options: SyncOptions) -> TableResult:
    """Syncs one table; never raises (the error is in the result)."""
    attempts = 1 + max(0, options.retries)
    for attempt in range(attempts):
        result = TableResult(table=table, ok=False)
        try:
            _sync_once(client, table, state, sink, options, result)
            result.ok = True
            return result
        except Exception as error:  # noqa: BLE001 - one table's failure must not stop the others
            result.error = f"{type(error).__name__}: {error}"
            if "precondition failed" in str(error) and "full sync" in str(error):
                result.error += " (rerun this table with --full, which ignores its stored cursor)"
            if attempt + 1 < attempts and _needs_restage(error):
                continue
            return result
    return result  # pragma: no cover


def sync_tables(
    tables: list[str],
    *,
    location: str,
    state: str | os.PathLike,
    out: str | os.PathLike,
    format: str = "parquet",
    duckdb_path: str | os.PathLike | None = None,
    **kwargs,
) -> list[TableResult]:
    """Syncs `tables` in parallel; returns one result per table, in the order given."""
    options = SyncOptions(location=location, **kwargs)
    state_file = StateFile(state)
    state_file.load()  # a damaged state file fails the run before anything moves
    if format == "parquet":
        sink = ParquetSink(out)
    elif format == "duckdb":
        sink = DuckDBSink(duckdb_path or Path(out) / "redshift_flight.duckdb", Path(out) / ".staging")
    else:
        raise ValueError(f"unknown format {format!r}")
    client = flight.FlightClient(location)
    try:
        with ThreadPoolExecutor(max_workers=max(1, options.workers), thread_name_prefix="table") as pool:
            return list(pool.map(lambda t: sync_table(client, t, state_file, sink, options), tables))
    finally:
        client.close()
        if isinstance(sink, DuckDBSink):
            sink.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Sync Redshift tables through redshift-flight into Parquet files or DuckDB, incrementally.",
    )
    parser.add_argument("tables", nargs="+", metavar="schema.table", help="tables to sync (quote parts with dots)")
    parser.add_argument("--location", default="grpc://127.0.0.1:8815", help="the redshift-flight server")
    parser.add_argument("--state", required=True, help="state file with one cursor per table (JSON)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--token", default=os.environ.get("REDSHIFT_FLIGHT_TOKEN"), help="bearer token ($REDSHIFT_FLIGHT_TOKEN)")
    parser.add_argument("--workers", type=int, default=4, help="tables synced at once (default 4)")
    parser.add_argument("--endpoint-workers", type=int, default=4, help="endpoints of one table read at once (default 4)")
    parser.add_argument("--lookback", help='re-read this much below the cursor: "1 hour" (time keys), "100" (numeric keys)')
    parser.add_argument(
        "--where",
        nargs=2,
        action="append",
        default=[],
        metavar=("TABLE", "PREDICATE"),
        help="row filter of one table (as named in the table list): an SQL expression over its columns; repeatable",
    )
    parser.add_argument("--format", choices=("parquet", "duckdb"), default="parquet")
    parser.add_argument("--duckdb-file", help="DuckDB database (default <out>/redshift_flight.duckdb)")
    parser.add_argument("--full", action="store_true", help="ignore the stored cursors: full snapshots, then continue incrementally")
    parser.add_argument("--timeout", type=float, help="seconds per Flight call")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.endpoint_workers < 1:
        parser.error("--workers and --endpoint-workers must be at least 1")
    where = dict(args.where)
    if len(where) != len(args.where) or not set(where) <= set(args.tables):
        parser.error("--where names each table at most once, and only tables in the table list")
    try:
        results = sync_tables(
            args.tables,
            location=args.location,
            state=args.state,
            out=args.out,
            format=args.format,
            duckdb_path=args.duckdb_file,
            token=args.token,
            workers=args.workers,
            endpoint_workers=args.endpoint_workers,
            lookback=args.lookback,  # the server parses it
            full=args.full,
            timeout=args.timeout,
            where=where,
        )
    except (SyncError, OSError, ImportError) as error:
        print(f"redshift_flight_sync: {error}", file=sys.stderr)
        return 1
    for result in results:
        print(result.summary(), flush=True)
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"{len(failed)} of {len(results)} tables failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
