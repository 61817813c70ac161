//! UNLOAD end to end through tokio-postgres: data fidelity, file layout, manifests, splits,
//! row groups, rejections and fault knobs. Needs the test bed (see `common`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    Array, AsArray, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array,
    Int16Array, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatch;
use object_store::ObjectStore;
use parquet::basic::Compression;
use redshift_emulator::FaultSettings;
use tokio_postgres::Client;

use crate::common::{
    Emulator, db_error, get_json, list_keys, object_size, put, read_parquet, unique,
};

fn qi(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// All batches of all files under `prefix`, concatenated, plus the keys.
async fn read_all(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
) -> (Vec<String>, Option<RecordBatch>) {
    let keys: Vec<String> = list_keys(store, prefix)
        .await
        .into_iter()
        .filter(|k| !k.ends_with("manifest"))
        .collect();
    let mut batches = Vec::new();
    for key in &keys {
        let (meta, mut b) = read_parquet(store, key).await;
        for rg in meta.row_groups() {
            for col in rg.columns() {
                assert_eq!(col.compression(), Compression::SNAPPY, "{key}");
            }
        }
        batches.append(&mut b);
    }
    let batch = batches
        .first()
        .map(|b| concat_batches(&b.schema(), &batches).expect("concat"));
    (keys, batch)
}

/// A value for comparing Parquet cells with PostgreSQL cells.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Null,
    Int(i64),
    F32(u32),
    F64(u64),
    Bool(bool),
    Text(String),
    Date(i32),
    Micros(i64),
}

fn f64_val(f: f64) -> Val {
    // every NaN is the same NaN
    Val::F64(if f.is_nan() {
        f64::NAN.to_bits()
    } else {
        f.to_bits()
    })
}

fn f32_val(f: f32) -> Val {
    Val::F32(if f.is_nan() {
        f32::NAN.to_bits()
    } else {
        f.to_bits()
    })
}

fn decimal_text(v: i128, scale: i8) -> String {
    let neg = v < 0;
    let digits = v.unsigned_abs().to_string();
    let scale = scale as usize;
    let s = if scale == 0 {
        digits
    } else {
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (i, f) = padded.split_at(padded.len() - scale);
        format!("{i}.{f}")
    };
    if neg { format!("-{s}") } else { s }
}

fn arrow_val(array: &dyn Array, row: usize) -> Val {
    if array.is_null(row) {
        return Val::Null;
    }
    match array.data_type() {
        DataType::Int16 => Val::Int(
            array
                .as_any()
                .downcast_ref::<Int16Array>()
                .unwrap()
                .value(row)
                .into(),
        ),
        DataType::Int32 => Val::Int(
            array
                .as_any()
                .downcast_ref::<Int32Array>()
                .unwrap()
                .value(row)
                .into(),
        ),
        DataType::Int64 => Val::Int(
            array
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .value(row),
        ),
        DataType::Float32 => f32_val(
            array
                .as_any()
                .downcast_ref::<Float32Array>()
                .unwrap()
                .value(row),
        ),
        DataType::Float64 => f64_val(
            array
                .as_any()
                .downcast_ref::<Float64Array>()
                .unwrap()
                .value(row),
        ),
        DataType::Boolean => Val::Bool(
            array
                .as_any()
                .downcast_ref::<BooleanArray>()
                .unwrap()
                .value(row),
        ),
        DataType::Utf8 => Val::Text(
            array
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .value(row)
                .to_owned(),
        ),
        DataType::Decimal128(_, s) => Val::Text(decimal_text(
            array
                .as_any()
                .downcast_ref::<Decimal128Array>()
                .unwrap()
                .value(row),
            *s,
        )),
        DataType::Date32 => Val::Date(
            array
                .as_any()
                .downcast_ref::<Date32Array>()
                .unwrap()
                .value(row),
        ),
        DataType::Timestamp(TimeUnit::Microsecond, None) => Val::Micros(
            array
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap()
                .value(row),
        ),
        other => panic!("unexpected Arrow type {other}"),
    }
}

const EPOCH: chrono::NaiveDate = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();

fn pg_val(row: &tokio_postgres::Row, i: usize) -> Val {
    use tokio_postgres::types::Type;
    let ty = row.columns()[i].type_().clone();
    macro_rules! get {
        ($t:ty, $f:expr) => {
            match row.get::<_, Option<$t>>(i) {
                None => Val::Null,
                Some(v) => $f(v),
            }
        };
    }
    match ty {
        Type::INT2 => get!(i16, |v: i16| Val::Int(v.into())),
        Type::INT4 => get!(i32, |v: i32| Val::Int(v.into())),
        Type::INT8 => get!(i64, Val::Int),
        Type::FLOAT4 => get!(f32, f32_val),
        Type::FLOAT8 => get!(f64, f64_val),
        Type::BOOL => get!(bool, Val::Bool),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR => get!(String, Val::Text),
        Type::DATE => get!(chrono::NaiveDate, |d: chrono::NaiveDate| Val::Date(
            (d - EPOCH).num_days() as i32
        )),
        Type::TIMESTAMP => get!(chrono::NaiveDateTime, |t: chrono::NaiveDateTime| {
            Val::Micros(t.and_utc().timestamp_micros())
        }),
        Type::TIMESTAMPTZ => get!(chrono::DateTime<chrono::Utc>, |t: chrono::DateTime<
            chrono::Utc,
        >| {
            Val::Micros(t.timestamp_micros())
        }),
        other => panic!("unexpected PostgreSQL type {other} (cast it to text in the query)"),
    }
}

/// Asserts the unloaded batch equals `select` on PostgreSQL, row for row (both sorted by the
/// first column), column for column.
async fn assert_same(pg: &Client, select: &str, batch: &RecordBatch) {
    let rows = pg.query(select, &[]).await.expect("reference query");
    assert_eq!(batch.num_rows(), rows.len(), "row count");
    let mut order: Vec<usize> = (0..batch.num_rows()).collect();
    let key = batch.column(0);
    order.sort_by_key(|&r| match arrow_val(key.as_ref(), r) {
        Val::Int(i) => i,
        other => panic!("first column must be an integer key, got {other:?}"),
    });
    for (pg_row, &arrow_row) in rows.iter().zip(&order) {
        for c in 0..batch.num_columns() {
            assert_eq!(
                arrow_val(batch.column(c).as_ref(), arrow_row),
                pg_val(pg_row, c),
                "column {} ({}) of row with key {:?}",
                c,
                batch.schema().field(c).name(),
                pg_val(pg_row, 0)
            );
        }
    }
}

#[tokio::test]
async fn every_supported_type_round_trips_exactly() {
    let emu = Emulator::start().await;
    let client = emu.client().await;
    let pg = emu.bed.pg().await;
    let schema = unique("Types \"Schema\"");
    let table = format!("{}.{}", qi(&schema), qi("All Types"));
    let weird = "Mixed Case \"Col\" ü";
    client
        .batch_execute(&format!(
            "create schema {s};
             create table {table} (
               id int, i2 smallint, i4 integer, i8 bigint,
               d38_0 numeric(38,0), d38_10 numeric(38,10), d38_38 numeric(38,38), d10_2 decimal(10,2),
               r real, dp double precision, b boolean,
               c char(5), v varchar(20), t text,
               dt date, ts timestamp, tstz timestamptz, j super, {w} varchar(10));
             set timezone = 'America/New_York';
             insert into {table} values
               (1, 32767, 2147483647, 9223372036854775807,
                99999999999999999999999999999999999999, 9999999999999999999999999999.9999999999,
                0.99999999999999999999999999999999999999, 99999999.99,
                3.4028235e38, 1.7976931348623157e308, true,
                'ab', '', 'multi-byte: 日本語 ✓ 😀', '0001-01-01', '0001-01-01 00:00:00.000001',
                '2024-06-01 12:34:56.789012', '{{\"a\": [1, 2, null], \"b\": \"x\"}}', 'x'),
               (2, -32768, -2147483648, -9223372036854775808,
                -99999999999999999999999999999999999999, -9999999999999999999999999999.9999999999,
                -0.99999999999999999999999999999999999999, -99999999.99,
                '-Infinity', '-Infinity', false,
                'abcde', 'x', '', '9999-12-31', '9999-12-31 23:59:59.999999',
                '1999-12-31 23:59:59.999999+05:30', '[]', ''),
               (3, 0, 0, 0, 0, 0.0000000001, 0.00000000000000000000000000000000000001, 0.01,
                'NaN', 'NaN', null, ' ', ' trailing ', 'quote '' and \\ backslash',
                '1970-01-01', '1970-01-01 00:00:00', '1970-01-01 00:00:00+00', 'null', null),
               (4, null, null, null, null, null, null, null,
                '-0', '-0', null, null, null, null, null, null, null, null, null),
               (5, 1, 1, 1, 1, 1, 0.1, 1, 'Infinity', 'Infinity', true, 'é', 'é', 'é',
                '2000-02-29', '2000-02-29 12:00:00.5', '0001-01-02 00:00:00.000001+00', '1.5', 'é'),
               (6, 2, 2, 2, 2, 2, 0.2, 2, 1.17549435e-38, 5e-324, false, 'x', 'x', 'x',
                '1969-12-31', '1969-12-31 23:59:59.999999', '9999-12-31 18:59:59.999999-05', '\"s\"', 'x');
             reset timezone;",
            s = qi(&schema),
            w = qi(weird)
        ))
        .await
        .unwrap();

    let prefix = format!("{}/types/", unique("types"));
    client
        .batch_execute(&emu.unload(
            &format!("select * from {table}"),
            &prefix,
            "FORMAT AS PARQUET",
        ))
        .await
        .unwrap();
    let (keys, batch) = read_all(&emu.bed.store(), &prefix).await;
    assert!(!keys.is_empty());
    let batch = batch.expect("rows");

    // the schema Redshift writes
    let expected = [
        ("id", DataType::Int32),
        ("i2", DataType::Int16),
        ("i4", DataType::Int32),
        ("i8", DataType::Int64),
        ("d38_0", DataType::Decimal128(38, 0)),
        ("d38_10", DataType::Decimal128(38, 10)),
        ("d38_38", DataType::Decimal128(38, 38)),
        ("d10_2", DataType::Decimal128(10, 2)),
        ("r", DataType::Float32),
        ("dp", DataType::Float64),
        ("b", DataType::Boolean),
        ("c", DataType::Utf8),
        ("v", DataType::Utf8),
        ("t", DataType::Utf8),
        ("dt", DataType::Date32),
        ("ts", DataType::Timestamp(TimeUnit::Microsecond, None)),
        ("tstz", DataType::Timestamp(TimeUnit::Microsecond, None)),
        ("j", DataType::Utf8),
        (weird, DataType::Utf8),
    ];
    let schema_ref = batch.schema();
    let got: Vec<(&str, DataType)> = schema_ref
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type().clone()))
        .collect();
    assert_eq!(got, expected.to_vec());
    assert!(schema_ref.fields().iter().all(|f| f.is_nullable()));

    // values: PostgreSQL read in binary (tokio-postgres), decimals and JSON as text
    let reference = format!(
        "select id, i2, i4, i8, d38_0::text, d38_10::text, d38_38::text, d10_2::text, r, dp, b, \
         c, v, t, dt, ts, tstz, j::text, {} from {table} order by id",
        qi(weird)
    );
    assert_same(&pg, &reference, &batch).await;

    // spot checks that do not depend on the comparison helpers
    let c = batch.column(11).as_string::<i32>();
    let ids = batch
        .column(0)
        .as_primitive::<arrow::datatypes::Int32Type>();
    let row_of = |id: i32| (0..batch.num_rows()).find(|&r| ids.value(r) == id).unwrap();
    assert_eq!(c.value(row_of(1)), "ab   ", "char(n) keeps its padding");
    assert_eq!(
        batch.column(12).as_string::<i32>().value(row_of(1)),
        "",
        "empty string is not NULL"
    );
    assert!(batch.column(12).is_null(row_of(4)));
    let tstz = batch
        .column(16)
        .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
    // 2024-06-01 12:34:56.789012 in New York (EDT, -04) is 16:34:56.789012 UTC
    assert_eq!(tstz.value(row_of(1)), 1_717_259_696_789_012);
    let dp = batch
        .column(9)
        .as_primitive::<arrow::datatypes::Float64Type>();
    assert!(dp.value(row_of(4)).is_sign_negative() && dp.value(row_of(4)) == 0.0);
    assert!(dp.value(row_of(3)).is_nan());

    client
        .batch_execute(&format!("drop schema {} cascade", qi(&schema)))
        .await
        .unwrap();
}

async fn numbers_table(client: &Client, rows: usize) -> String {
    let table = unique("numbers");
    client
        .batch_execute(&format!(
            "create table {table} as select g as id, md5(g::text) as s from generate_series(1, {rows}) g"
        ))
        .await
        .unwrap();
    table
}

#[tokio::test]
async fn parallel_on_names_files_per_slice_and_manifest_verbose() {
    let emu = Emulator::start_with(|c| c.with_slices(4).with_fetch_rows(100)).await;
    let client = emu.client().await;
    let table = numbers_table(&client, 1000).await;
    let prefix = format!("{}/venue_", unique("parallel"));
    client
        .batch_execute(&emu.unload(
            &format!("select id, s, id::numeric(12,3) as n, now()::date as d from {table}"),
            &prefix,
            "FORMAT PARQUET MANIFEST VERBOSE",
        ))
        .await
        .unwrap();
    let store = emu.bed.store();
    let keys = list_keys(&store, &prefix).await;
    assert_eq!(
        keys,
        vec![
            format!("{prefix}0000_part_00.parquet"),
            format!("{prefix}0001_part_00.parquet"),
            format!("{prefix}0002_part_00.parquet"),
            format!("{prefix}0003_part_00.parquet"),
            format!("{prefix}manifest"),
        ]
    );
    let manifest = get_json(&store, &format!("{prefix}manifest")).await;
    let entries = manifest["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    let mut total_rows = 0;
    let mut total_bytes = 0;
    for (i, entry) in entries.iter().enumerate() {
        let key = format!("{prefix}000{i}_part_00.parquet");
        assert_eq!(entry["url"], format!("s3://{}/{key}", emu.bed.bucket));
        let size = object_size(&store, &key).await;
        assert_eq!(entry["meta"]["content_length"], size);
        let (meta, _) = read_parquet(&store, &key).await;
        assert_eq!(
            entry["meta"]["record_count"],
            meta.file_metadata().num_rows()
        );
        total_rows += meta.file_metadata().num_rows();
        total_bytes += size;
    }
    assert_eq!(total_rows, 1000);
    assert_eq!(manifest["meta"]["record_count"], 1000);
    assert_eq!(manifest["meta"]["content_length"], total_bytes);
    assert_eq!(
        manifest["schema"],
        serde_json::json!({"elements": [
            {"name": "id", "type": {"base": "integer"}},
            {"name": "s", "type": {"base": "character varying"}},
            {"name": "n", "type": {"base": "numeric", "precision": 12, "scale": 3}},
            {"name": "d", "type": {"base": "date"}},
        ]})
    );
    assert_eq!(
        manifest["author"],
        serde_json::json!({"name": "Amazon Redshift", "version": "1.0.0"})
    );

    // a plain manifest has only URLs
    let prefix2 = format!("{}/plain_", unique("parallel"));
    client
        .batch_execute(&emu.unload(
            &format!("select * from {table}"),
            &prefix2,
            "PARQUET MANIFEST",
        ))
        .await
        .unwrap();
    let manifest = get_json(&store, &format!("{prefix2}manifest")).await;
    assert_eq!(manifest.as_object().unwrap().len(), 1);
    assert_eq!(manifest["entries"][0].as_object().unwrap().len(), 1);
}

#[tokio::test]
async fn parallel_off_writes_one_ordered_stream() {
    let emu = Emulator::start().await;
    let client = emu.client().await;
    let table = numbers_table(&client, 2500).await;
    let prefix = format!("{}/serial_", unique("serial"));
    client
        .batch_execute(&emu.unload(
            &format!("select id, s from {table} order by id desc"),
            &prefix,
            "PARQUET PARALLEL OFF EXTENSION 'pq'",
        ))
        .await
        .unwrap();
    let store = emu.bed.store();
    assert_eq!(
        list_keys(&store, &prefix).await,
        vec![format!("{prefix}000.pq")]
    );
    let (_, batches) = read_parquet(&store, &format!("{prefix}000.pq")).await;
    let ids: Vec<i32> = batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_primitive::<arrow::datatypes::Int32Type>()
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(ids, (1..=2500).rev().collect::<Vec<_>>());
}

#[tokio::test]
async fn zero_rows_write_nothing() {
    let emu = Emulator::start().await;
    let client = emu.client().await;
    let table = numbers_table(&client, 10).await;
    let prefix = format!("{}/empty_", unique("empty"));
    client
        .batch_execute(&emu.unload(
            &format!("select * from {table} where id < 0"),
            &prefix,
            "PARQUET MANIFEST VERBOSE",
        ))
        .await
        .unwrap();
    assert!(list_keys(&emu.bed.store(), &prefix).await.is_empty());
}

#[tokio::test]
async fn maxfilesize_splits_files() {
    let emu = Emulator::start_with(|c| c.with_slices(2)).await;
    let client = emu.client().await;
    // ~15 MB of incompressible text
    let table = unique("big");
    client
        .batch_execute(&format!(
            "create table {table} as select g as id, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text) as s \
             from generate_series(1, 160000) g"
        ))
        .await
        .unwrap();
    let prefix = format!("{}/big_", unique("split"));
    client
        .batch_execute(&emu.unload(
            &format!("select * from {table}"),
            &prefix,
            "PARQUET MAXFILESIZE 5 MB MANIFEST VERBOSE",
        ))
        .await
        .unwrap();
    let store = emu.bed.store();
    let keys = list_keys(&store, &prefix).await;
    assert!(
        keys.contains(&format!("{prefix}0000_part_01.parquet")),
        "{keys:?}"
    );
    assert!(
        keys.contains(&format!("{prefix}0001_part_01.parquet")),
        "{keys:?}"
    );
    let manifest = get_json(&store, &format!("{prefix}manifest")).await;
    assert_eq!(manifest["meta"]["record_count"], 160000);
    assert_eq!(
        manifest["entries"].as_array().unwrap().len(),
        keys.len() - 1
    );
    for key in keys.iter().filter(|k| !k.ends_with("manifest")) {
        let size = object_size(&store, key).await;
        assert!(
            size <= 5 * 1024 * 1024 + 256 * 1024,
            "{key} is {size} bytes"
        );
    }

    // PARALLEL OFF names the pieces 000, 001, ...
    let prefix = format!("{}/serial_", unique("split"));
    client
        .batch_execute(&emu.unload(
            &format!("select * from {table}"),
            &prefix,
            "PARQUET PARALLEL OFF MAXFILESIZE AS 5.0 mb",
        ))
        .await
        .unwrap();
    let keys = list_keys(&store, &prefix).await;
    assert!(keys.len() >= 3, "{keys:?}");
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(key, &format!("{prefix}{i:03}.parquet"));
    }
}

#[tokio::test]
async fn row_group_rows_knob_makes_many_row_groups() {
    let emu = Emulator::start_with(|c| c.with_row_group_rows(100)).await;
    let client = emu.client().await;
    let table = numbers_table(&client, 1000).await;
    let prefix = format!("{}/rg_", unique("rg"));
    client
        .batch_execute(&emu.unload(
            &format!("select * from {table}"),
            &prefix,
            "PARQUET PARALLEL OFF",
        ))
        .await
        .unwrap();
    let (meta, _) = read_parquet(&emu.bed.store(), &format!("{prefix}000.parquet")).await;
    assert_eq!(meta.num_row_groups(), 10);
    assert!(meta.row_groups().iter().all(|rg| rg.num_rows() == 100));
}

#[tokio::test]
async fn quoted_select_and_awkward_names() {
    let emu = Emulator::start().await;
    let client = emu.client().await;
    let schema = unique("My \"Schema\"");
    let table = format!("{}.{}", qi(&schema), qi("Tab le"));
    client
        .batch_execute(&format!(
            "create schema {s}; create table {table} (id int, {c} text);
             insert into {table} values (1, 'it''s'), (2, 'plain');",
            s = qi(&schema),
            c = qi("Col \"Q\" Name")
        ))
        .await
        .unwrap();
    // the SELECT has a string literal: its quotes are doubled inside the UNLOAD literal
    let select = format!(
        "select id, {c}, 'lit''s' as \"Lit\" from {table} where {c} <> 'x'",
        c = qi("Col \"Q\" Name")
    );
    let prefix = format!("{}/q_", unique("quoted"));
    // extended protocol (tokio-postgres execute) works for UNLOAD too
    let n = client
        .execute(&emu.unload(&select, &prefix, "FORMAT AS PARQUET"), &[])
        .await
        .unwrap();
    assert_eq!(n, 0);
    let (_, batch) = read_all(&emu.bed.store(), &prefix).await;
    let batch = batch.unwrap();
    let names: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, vec!["id", "Col \"Q\" Name", "Lit"]);
    assert_same(
        &emu.bed.pg().await,
        &format!("{select} order by id"),
        &batch,
    )
    .await;
    client
        .batch_execute(&format!("drop schema {} cascade", qi(&schema)))
        .await
        .unwrap();
}

async fn unload_error(emu: &Emulator, client: &Client, sql: &str) -> (String, String) {
    let err = client
        .batch_execute(sql)
        .await
        .err()
        .unwrap_or_else(|| panic!("must fail: {sql}"));
    let e = db_error(&err);
    // the session stays usable after a failed UNLOAD
    let _ = emu;
    client.batch_execute("select 1").await.unwrap();
    e
}

#[tokio::test]
async fn redshift_rejections() {
    let emu = Emulator::start().await;
    let client = emu.client().await;
    let table = unique("rej");
    client
        .batch_execute(&format!(
            "create table {table} (id int, t time, tz timetz, vb varbyte, g geometry);
             insert into {table} values (1, '12:00', '12:00+02', decode('00', 'hex'), decode('01', 'hex'))"
        ))
        .await
        .unwrap();
    let p = || format!("{}/x_", unique("rej"));
    let cases = [
        (emu.unload(&format!("select id from {table} limit 1"), &p(), "PARQUET"), "XX000",
         "Limit clause is not supported in the outermost select".to_owned()),
        (emu.unload(&format!("select t from {table}"), &p(), "PARQUET"), "XX000",
         "UNLOAD time without time zone column \"t\" is only supported for TEXT/CSV.".to_owned()),
        (emu.unload(&format!("select tz from {table}"), &p(), "PARQUET"), "XX000",
         "UNLOAD time with time zone column \"tz\" is only supported for TEXT/CSV.".to_owned()),
        (emu.unload(&format!("select vb from {table}"), &p(), "PARQUET"), "XX000",
         "UNLOAD varbyte column \"vb\" is only supported for TEXT/CSV.".to_owned()),
        (emu.unload(&format!("select g from {table}"), &p(), "PARQUET"), "XX000",
         "UNLOAD geometry column \"g\" is only supported for TEXT/CSV.".to_owned()),
        (emu.unload(&format!("select id from {table}"), &p(), "PARQUET ALLOWOVERWRITE CLEANPATH"), "XX000",
         "ALLOWOVERWRITE and CLEANPATH options cannot be used together.".to_owned()),
        (emu.unload(&format!("select id from {table}"), &p(), "PARQUET MAXFILESIZE 4 MB"), "XX000",
         "MAXFILESIZE must be between 5 MB and 6.2 GB.".to_owned()),
        (emu.unload(&format!("select id from {table}"), &p(), "CSV"), "XX000",
         "The Redshift emulator only supports UNLOAD ... FORMAT AS PARQUET; CSV is not supported.".to_owned()),
        (format!("UNLOAD ('select 1') TO '{}' IAM_ROLE 'arn:aws:iam::123:role/x' PARQUET", emu.url(&p())), "XX000",
         "Invalid IAM Role ARN: 'arn:aws:iam::123:role/x' is not a valid IAM role ARN (expected arn:aws:iam::<account-id>:role/<role-name>)".to_owned()),
        (format!("UNLOAD ('select 1') TO '{}' PARQUET", emu.url(&p())), "42601",
         "UNLOAD requires an authorization: IAM_ROLE, ACCESS_KEY_ID/SECRET_ACCESS_KEY or CREDENTIALS".to_owned()),
        (format!("UNLOAD ('select 1') TO '{}' IAM_ROLE default PARQUET BOGUS", emu.url(&p())), "42601",
         "syntax error at or near \"BOGUS\"".to_owned()),
    ];
    for (sql, code, message) in cases {
        assert_eq!(
            unload_error(&emu, &client, &sql).await,
            (code.to_owned(), message),
            "{sql}"
        );
    }
    // errors from the SELECT come from PostgreSQL unchanged
    let (code, _) = unload_error(
        &emu,
        &client,
        &emu.unload("select * from no_such_table_xyz", &p(), "PARQUET"),
    )
    .await;
    assert_eq!(code, "42P01");
    let (code, _) = unload_error(&emu, &client, &emu.unload("select 1/0", &p(), "PARQUET")).await;
    assert_eq!(code, "22012");
    // a missing bucket is an S3 error
    let sql = format!(
        "UNLOAD ('select 1') TO 's3://{}/x' IAM_ROLE default PARQUET",
        unique("no-such-bucket").replace('_', "-")
    );
    let (code, message) = unload_error(&emu, &client, &sql).await;
    assert_eq!(code, "XX000");
    assert!(message.starts_with("S3ServiceException:"), "{message}");
}

#[tokio::test]
async fn destination_rules_allowoverwrite_and_cleanpath() {
    let emu = Emulator::start().await;
    let client = emu.client().await;
    let table = numbers_table(&client, 10).await;
    let store = emu.bed.store();
    let prefix = format!("{}/dest_", unique("dest"));
    put(&store, &format!("{prefix}stale.txt"), b"old").await;
    let select = format!("select * from {table}");

    let (code, message) =
        unload_error(&emu, &client, &emu.unload(&select, &prefix, "PARQUET")).await;
    assert_eq!(code, "XX000");
    assert_eq!(message, redshift_emulator::unload::DESTINATION_NOT_EMPTY);

    client
        .batch_execute(&emu.unload(&select, &prefix, "PARQUET ALLOWOVERWRITE PARALLEL OFF"))
        .await
        .unwrap();
    assert_eq!(
        list_keys(&store, &prefix).await,
        vec![format!("{prefix}000.parquet"), format!("{prefix}stale.txt")]
    );

    client
        .batch_execute(&emu.unload(&select, &prefix, "PARQUET CLEANPATH"))
        .await
        .unwrap();
    assert_eq!(
        list_keys(&store, &prefix).await,
        vec![format!("{prefix}0000_part_00.parquet")]
    );
}

#[tokio::test]
async fn unload_inside_a_client_transaction_sees_its_data() {
    let emu = Emulator::start().await;
    let client = emu.client().await;
    let table = unique("txdata");
    let prefix = format!("{}/tx_", unique("tx"));
    client
        .batch_execute(&format!(
            "begin; create temp table {table} as select 1 as id; set timezone = 'Asia/Tokyo';
             {}; commit;",
            emu.unload(&format!("select id from {table}"), &prefix, "PARQUET")
        ))
        .await
        .unwrap();
    assert_eq!(list_keys(&emu.bed.store(), &prefix).await.len(), 1);
    // the emulator's own settings did not leak into the session
    let row = client.query_one("show timezone", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "Asia/Tokyo");
}

#[tokio::test]
async fn fault_unload_delay() {
    let emu = Emulator::start().await;
    let client = emu.client().await;
    client
        .batch_execute("EMULATOR SET unload_delay_ms = 700")
        .await
        .unwrap();
    let prefix = format!("{}/d_", unique("delay"));
    let started = Instant::now();
    client
        .batch_execute(&emu.unload("select 1 as a", &prefix, "PARQUET"))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(700));
    client.batch_execute("EMULATOR RESET").await.unwrap();
    assert_eq!(emu.running.knobs().get(), FaultSettings::default());
    let err = client
        .batch_execute("EMULATOR SET nope = 1")
        .await
        .unwrap_err();
    assert_eq!(db_error(&err).0, "42601");
}

#[tokio::test]
async fn fault_unload_delay_can_be_cancelled() {
    let emu = Emulator::start_with(|c| {
        c.with_faults(FaultSettings {
            unload_delay_ms: 60_000,
            ..FaultSettings::default()
        })
    })
    .await;
    let client = emu.client().await;
    let token = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let started = Instant::now();
    let err = client
        .batch_execute(&emu.unload(
            "select 1 as a",
            &format!("{}/c_", unique("cancel")),
            "PARQUET",
        ))
        .await
        .unwrap_err();
    assert_eq!(db_error(&err).0, "57014");
    assert!(started.elapsed() < Duration::from_secs(30));
    canceller.await.unwrap().unwrap();
}

#[tokio::test]
async fn fault_fail_after_files() {
    let emu = Emulator::start_with(|c| c.with_slices(4).with_fetch_rows(100)).await;
    let client = emu.client().await;
    let table = numbers_table(&client, 1000).await;
    client
        .batch_execute("EMULATOR SET fail_after_files TO 2")
        .await
        .unwrap();
    let prefix = format!("{}/f_", unique("fail"));
    let (code, message) = unload_error(
        &emu,
        &client,
        &emu.unload(
            &format!("select * from {table}"),
            &prefix,
            "PARQUET MANIFEST",
        ),
    )
    .await;
    assert_eq!(code, "XX000");
    assert!(message.contains("S3ServiceException"), "{message}");
    let keys = list_keys(&emu.bed.store(), &prefix).await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().all(|k| !k.ends_with("manifest")));
}

#[tokio::test]
async fn fault_drop_connection_on_unload() {
    let emu = Emulator::start().await;
    let client = emu.client().await;
    client
        .batch_execute("EMULATOR SET drop_connection_on_unload = true")
        .await
        .unwrap();
    let err = client
        .batch_execute(&emu.unload(
            "select 1 as a",
            &format!("{}/x_", unique("drop")),
            "PARQUET",
        ))
        .await
        .unwrap_err();
    assert!(
        err.as_db_error().is_none(),
        "a dropped connection, not an error response: {err:?}"
    );
    assert!(client.is_closed() || client.batch_execute("select 1").await.is_err());
    // the knob is global: a new session sees it too, until reset
    let other = emu.client().await;
    other
        .batch_execute("EMULATOR RESET drop_connection_on_unload")
        .await
        .unwrap();
    let prefix = format!("{}/y_", unique("drop"));
    other
        .batch_execute(&emu.unload("select 1 as a", &prefix, "PARQUET"))
        .await
        .unwrap();
    assert_eq!(list_keys(&emu.bed.store(), &prefix).await.len(), 1);
}

/// `pg_last_unload_count()` through the extended protocol (tokio-postgres `query_one`).
async fn last_unload_count(client: &Client) -> i64 {
    client
        .query_one("select pg_last_unload_count()", &[])
        .await
        .expect("pg_last_unload_count()")
        .get(0)
}

#[tokio::test]
async fn pg_last_unload_count_follows_redshift() {
    let emu = Emulator::start_with(|c| c.with_slices(3).with_fetch_rows(100)).await;
    let client = emu.client().await;
    let table = numbers_table(&client, 1234).await;
    // 0 before any UNLOAD of the session
    assert_eq!(last_unload_count(&client).await, 0);

    client
        .batch_execute(&emu.unload(
            &format!("select * from {table}"),
            &format!("{}/a_", unique("count")),
            "PARQUET MANIFEST",
        ))
        .await
        .unwrap();
    assert_eq!(last_unload_count(&client).await, 1234);
    // the simple protocol sees it too, with Redshift's column name and type
    let rows = client
        .simple_query("SELECT pg_last_unload_count()")
        .await
        .unwrap();
    let tokio_postgres::SimpleQueryMessage::Row(row) = &rows[1] else {
        panic!("no row: {rows:?}");
    };
    assert_eq!(row.columns()[0].name(), "pg_last_unload_count");
    assert_eq!(row.get(0), Some("1234"));
    // per session: another session has unloaded nothing
    assert_eq!(last_unload_count(&emu.client().await).await, 0);

    // a syntax error or a missing relation keeps the previous count
    unload_error(&emu, &client, "UNLOAD ('select 1') TO").await;
    unload_error(
        &emu,
        &client,
        &emu.unload(
            &format!("select * from {table}_missing"),
            &format!("{}/b_", unique("count")),
            "PARQUET",
        ),
    )
    .await;
    assert_eq!(last_unload_count(&client).await, 1234);

    // a filtered UNLOAD, then one that fails while unloading: 0
    client
        .batch_execute(&emu.unload(
            &format!("select * from {table} where id <= 7"),
            &format!("{}/c_", unique("count")),
            "PARQUET",
        ))
        .await
        .unwrap();
    assert_eq!(last_unload_count(&client).await, 7);
    unload_error(
        &emu,
        &client,
        &emu.unload(
            &format!("select id / (id - 500) from {table}"),
            &format!("{}/d_", unique("count")),
            "PARQUET",
        ),
    )
    .await;
    assert_eq!(last_unload_count(&client).await, 0);

    // zero rows: 0, and inside a client transaction the count is the UNLOAD's
    client
        .batch_execute(&emu.unload(
            &format!("select * from {table} where id < 0"),
            &format!("{}/e_", unique("count")),
            "PARQUET",
        ))
        .await
        .unwrap();
    assert_eq!(last_unload_count(&client).await, 0);
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute(&emu.unload(
            &format!("select * from {table} where id <= 42"),
            &format!("{}/f_", unique("count")),
            "PARQUET",
        ))
        .await
        .unwrap();
    assert_eq!(last_unload_count(&client).await, 42);
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(last_unload_count(&client).await, 42);
}

/// An UNLOAD with MANIFEST VERBOSE under a manifest fault knob: it succeeds, its data files are
/// all there, the manifest is not, and `pg_last_unload_count()` still tells the truth.
async fn unload_loses_its_manifest(knob: &str) {
    let emu = Emulator::start_with(|c| c.with_slices(4).with_fetch_rows(100)).await;
    let client = emu.client().await;
    let table = numbers_table(&client, 1000).await;
    client
        .batch_execute(&format!("EMULATOR SET {knob} = true"))
        .await
        .unwrap();
    let prefix = format!("{}/m_", unique(knob));
    client
        .batch_execute(&emu.unload(
            &format!("select * from {table}"),
            &prefix,
            "PARQUET MANIFEST VERBOSE",
        ))
        .await
        .unwrap();
    let store = emu.bed.store();
    let (keys, batch) = read_all(&store, &prefix).await;
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert_eq!(batch.map(|b| b.num_rows()), Some(1000));
    assert!(
        list_keys(&store, &prefix)
            .await
            .iter()
            .all(|k| !k.ends_with("manifest"))
    );
    assert_eq!(last_unload_count(&client).await, 1000);

    // the knob resets, and the manifest is back
    client
        .batch_execute(&format!("EMULATOR RESET {knob}"))
        .await
        .unwrap();
    assert_eq!(emu.running.knobs().get(), FaultSettings::default());
    let prefix = format!("{}/n_", unique(knob));
    client
        .batch_execute(&emu.unload(
            &format!("select * from {table}"),
            &prefix,
            "PARQUET MANIFEST VERBOSE",
        ))
        .await
        .unwrap();
    let manifest = get_json(&store, &format!("{prefix}manifest")).await;
    assert_eq!(manifest["meta"]["record_count"], 1000);
}

#[tokio::test]
async fn fault_skip_manifest() {
    unload_loses_its_manifest("skip_manifest").await;
}

#[tokio::test]
async fn fault_delete_manifest() {
    unload_loses_its_manifest("delete_manifest").await;
}

#[tokio::test]
async fn varchar_limit_applies_but_not_to_super() {
    let emu = Emulator::start().await;
    let client = emu.client().await;
    // a VARCHAR result above 65,535 bytes fails like on Redshift
    let (code, message) = unload_error(
        &emu,
        &client,
        &emu.unload(
            "select repeat('x', 65536) as v",
            &format!("{}/v_", unique("varchar")),
            "PARQUET",
        ),
    )
    .await;
    assert_eq!(code, "XX000");
    assert!(
        message.contains("Value too long for character type"),
        "{message}"
    );
    assert!(message.len() < 400, "the value is not echoed: {message}");
    // 65,535 bytes are fine, and so is a 1 MB SUPER (Parquet JSON text)
    let prefix = format!("{}/s_", unique("varchar"));
    client
        .batch_execute(&emu.unload(
            "select repeat('x', 65535) as v, jsonb_build_array(repeat('y', 1048576))::super as s",
            &prefix,
            "PARQUET",
        ))
        .await
        .unwrap();
    let (_, batch) = read_all(&emu.bed.store(), &prefix).await;
    let batch = batch.unwrap();
    assert_eq!(batch.column(0).as_string::<i32>().value(0).len(), 65_535);
    assert_eq!(
        batch.column(1).as_string::<i32>().value(0),
        format!("[\"{}\"]", "y".repeat(1_048_576))
    );
    // the text functions of VARBYTE, GEOMETRY and SUPER fail above the limit
    for sql in [
        "select to_hex(decode(repeat('ab', 32768), 'hex'))",
        "select st_ashexewkb(decode(repeat('ab', 32768), 'hex'))",
        "select json_serialize(jsonb_build_array(repeat('y', 65534)))",
    ] {
        let err = client.simple_query(sql).await.unwrap_err();
        assert_eq!(db_error(&err).0, "22001", "{sql}");
    }
    client
        .simple_query("select to_hex(decode(repeat('ab', 32767), 'hex'))")
        .await
        .unwrap();
}

/// The monitoring row of the UNLOAD into `location`: its statuses in `sys_unload_history` and
/// `sys_query_history`, `unloaded_rows`, `unloaded_files_count` and the statement text.
async fn unload_history(
    monitor: &Client,
    location: &str,
) -> Option<(String, String, i64, i64, String)> {
    monitor
        .query_opt(
            "SELECT u.status, q.status, u.unloaded_rows, u.unloaded_files_count, q.query_text \
             FROM sys_unload_history u JOIN sys_query_history q ON q.query_id = u.query_id \
             WHERE u.unloaded_location = $1 AND q.query_type = 'UNLOAD'",
            &[&location],
        )
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
}

#[tokio::test]
async fn sys_unload_history_follows_a_running_unload() {
    let emu = Emulator::start_with(|c| c.with_slices(2).with_fetch_rows(100)).await;
    let client = emu.client().await;
    let monitor = emu.client().await;
    let table = numbers_table(&client, 1000).await;
    client
        .batch_execute("EMULATOR SET fetch_delay_ms = 150")
        .await
        .unwrap();
    let prefix = format!("{}/h_", unique("history"));
    let location = emu.url(&prefix);
    let statement = emu.unload(
        &format!("select * from {table}"),
        &prefix,
        "PARQUET MANIFEST",
    );
    let unload = tokio::spawn({
        let statement = statement.clone();
        async move { client.batch_execute(&statement).await.map(|()| client) }
    });
    // While it runs (ten FETCHes, 150 ms apart), other sessions see it running with the rows
    // written so far.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen_partial = false;
    while Instant::now() < deadline && !seen_partial {
        if let Some((unload_status, query_status, rows, _, text)) =
            unload_history(&monitor, &location).await
        {
            if unload_status == "completed" {
                break;
            }
            assert_eq!(
                (unload_status.as_str(), query_status.as_str()),
                ("running", "running")
            );
            assert_eq!(text, statement);
            seen_partial = rows > 0 && rows < 1000;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seen_partial,
        "no partial unloaded_rows while the UNLOAD ran"
    );
    let client = unload.await.unwrap().unwrap();
    let (unload_status, query_status, rows, files, _) =
        unload_history(&monitor, &location).await.unwrap();
    assert_eq!(
        (unload_status.as_str(), query_status.as_str(), rows, files),
        ("completed", "success", 1000, 2)
    );

    // A cancelled UNLOAD ends aborted, its query canceled.
    let prefix = format!("{}/c_", unique("history"));
    let location = emu.url(&prefix);
    let token = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let err = client
        .batch_execute(&emu.unload(&format!("select * from {table}"), &prefix, "PARQUET"))
        .await
        .unwrap_err();
    assert_eq!(db_error(&err).0, "57014");
    canceller.await.unwrap().unwrap();
    let (unload_status, query_status, _, _, _) = unload_history(&monitor, &location).await.unwrap();
    assert_eq!(
        (unload_status.as_str(), query_status.as_str()),
        ("aborted", "canceled")
    );
}
