"""Dictionary-encoded strings on request: `{"dictionary": true}` keeps the dictionaries of the staged
Parquet for CHAR and VARCHAR columns. Every value still equals PostgreSQL's, and pyarrow, Polars and
DuckDB read the stream as they read any other."""

from __future__ import annotations

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from support import command, raises_status, read_flight

DICT = pa.dictionary(pa.int32(), pa.string())


def test_strings_come_as_dictionaries_with_exactly_the_values_postgres_holds(client, pg, make_schema):
    schema = make_schema("dict")
    t = sql.Identifier(schema, "t")
    pg.execute(
        sql.SQL(
            "CREATE TABLE {} (id integer PRIMARY KEY, flag char(1), mode varchar(10), note varchar(200), "
            "padded char(8), amount numeric(12,2), shipped date)"
        ).format(t)
    )
    # Low-cardinality columns (dictionary pages), a high-cardinality one, NULLs, empty and non-ASCII
    # strings, CHAR padding, enough rows for several batches and row groups.
    pg.execute(
        sql.SQL(
            "INSERT INTO {} SELECT g, (ARRAY['A','N','R'])[1 + g % 3], "
            "CASE WHEN g % 50 = 0 THEN NULL ELSE (ARRAY['AIR','MAIL','SHIP','TRUCK','ÉCLAIR ✈'])[1 + g % 5] END, "
            "CASE WHEN g % 7 = 0 THEN '' ELSE 'note ' || md5(g::text) END, "
            "(ARRAY['ab','c',''])[1 + g % 3], g * 1.25, date '2024-01-01' + g % 400 "
            "FROM generate_series(1, 60000) g"
        ).format(t)
    )
    plain = read_flight(client, client.get_flight_info(command(table=f"{schema}.t", mode="full")))
    info = client.get_flight_info(command(table=f"{schema}.t", mode="full", dictionary=True))
    got = read_flight(client, info)

    types = {f.name: f.type for f in info.schema}
    assert {n: types[n] for n in ("flag", "mode", "note", "padded")} == dict.fromkeys(
        ("flag", "mode", "note", "padded"), DICT
    )
    assert types["id"] == pa.int32() and types["amount"] == pa.decimal128(12, 2) and types["shipped"] == pa.date32()
    assert got.schema == info.schema
    assert got.column("mode").chunk(0).type == DICT

    # Decoded, every value equals the plain read and PostgreSQL.
    decoded = got.cast(plain.schema).sort_by("id")
    assert decoded.equals(plain.sort_by("id"))
    want = pg.execute(sql.SQL("SELECT id, flag, mode, note, padded FROM {} ORDER BY id").format(t)).fetchall()
    rows = list(zip(*(decoded.column(c).to_pylist() for c in ("id", "flag", "mode", "note", "padded"))))
    assert rows == want

    # Low-cardinality dictionaries stay small: they are the file's, not one entry per row.
    for chunk in got.column("mode").chunks:
        assert len(chunk.dictionary) <= 6, len(chunk.dictionary)
    assert pc.count_distinct(got.column("mode").cast(pa.string())).as_py() == 5

    # Other engines read it as usual.
    df = pl.from_arrow(got)
    assert df.schema["mode"] in (pl.Categorical, pl.Enum) or df.schema["mode"] == pl.Categorical()
    assert df.filter(pl.col("mode") == "ÉCLAIR ✈").height == plain.filter(pc.equal(plain["mode"], "ÉCLAIR ✈")).num_rows
    assert duckdb.sql("SELECT count(*), count(DISTINCT mode) FROM got").fetchall() == [(60000, 5)]


def test_dictionary_must_be_a_boolean(client, make_schema, pg):
    schema = make_schema("dictbad")
    pg.execute(sql.SQL("CREATE TABLE {} (id integer)").format(sql.Identifier(schema, "t")))
    with raises_status("INVALID_ARGUMENT", match="expected a boolean"):
        client.get_flight_info(command(table=f"{schema}.t", dictionary="yes"))
