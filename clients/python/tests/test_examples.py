"""The examples in clients/python/examples run against the server and print what they promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from psycopg import sql

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def example_table(pg, make_schema):
    schema = make_schema("examples")
    pg.execute(sql.SQL("CREATE TABLE {}.orders (id integer PRIMARY KEY, total numeric(10,2), note text)").format(
        sql.Identifier(schema)))
    pg.execute(sql.SQL("INSERT INTO {}.orders SELECT g, g * 1.25, 'order ' || g FROM generate_series(1, 2500) g").format(
        sql.Identifier(schema)))
    return schema


def run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{script} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_read_table_example(flight_server, example_table):
    out = run("read_table.py", f"{example_table}.orders", "--location", flight_server.location, "--rows", "3")
    assert f"{example_table}.orders" in out  # listed
    assert "2500 rows, 3 columns" in out
    out = run("read_table.py", f"{example_table}.orders", "--location", flight_server.location, "--columns", "id")
    assert "2500 rows, 1 columns" in out


def test_polars_read_example(flight_server, example_table):
    out = run("polars_read.py", f"{example_table}.orders", "--location", flight_server.location,
              "--columns", "id,total")
    assert "2500 rows x 2 columns" in out
    assert "Decimal(precision=10, scale=2)" in out
