//! Every type of the type table, at its limits, read with `Client::read` and compared value by
//! value with what PostgreSQL (the data behind the Redshift emulator) holds. Names with capitals,
//! spaces and quotes travel through the command unchanged.

mod common;

use arrow::array::{Array, Float32Array, Float64Array, RecordBatch};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::TryStreamExt;
use redshift_flight_client::{Mode, TableRequest};

use common::{SchemaGuard, Server, pg};

/// (column, PostgreSQL type, Arrow type, how PostgreSQL prints it comparably)
const COLUMNS: &[(&str, &str, &str)] = &[
    ("id", "integer NOT NULL PRIMARY KEY", "{c}::text"),
    ("Small Int", "smallint", "{c}::text"),
    ("int\"q\"", "integer", "{c}::text"),
    ("BigInt", "bigint", "{c}::text"),
    ("n 38,10", "numeric(38,10)", "{c}::text"),
    ("n5", "numeric(5,2)", "{c}::text"),
    ("Real", "real", "encode(float4send({c}), 'hex')"),
    (
        "double",
        "double precision",
        "encode(float8send({c}), 'hex')",
    ),
    ("flag", "boolean", "{c}::text"),
    (
        "Char5",
        "char(5)",
        "CASE WHEN {c} IS NULL THEN NULL ELSE format('%s', {c}) END",
    ),
    ("Var Char", "varchar(100)", "{c}::text"),
    ("day", "date", "{c}::text"),
    (
        "TS",
        "timestamp",
        "to_char({c}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US')",
    ),
    (
        "TS TZ",
        "timestamptz",
        "to_char({c}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')",
    ),
    (
        "time",
        "time",
        "to_char(date '2000-01-01' + {c}, 'HH24:MI:SS.US')",
    ),
    ("TimeTZ", "timetz", "{c}::text"),
    ("Bytes", "varbyte", "encode({c}, 'hex')"),
    ("Super", "super", "{c}::text"),
    ("geo", "geometry", "encode({c}, 'hex')"),
];

const POINT_SRID_EWKB: &str = "0101000020e6100000000000000000f03f0000000000000040";
const POINT_WKB: &str = "0101000000000000000000f03f0000000000000040";
const POINT_Z_EWKB: &str = "0101000080000000000000f03f00000000000000400000000000000840";
const POINT_Z_WKB: &str = "01e9030000000000000000f03f00000000000000400000000000000840";

/// Rows as PostgreSQL literals (`None`: NULL), in COLUMNS order.
fn rows() -> Vec<Vec<Option<String>>> {
    let raw: Vec<Vec<Option<&str>>> = vec![
        vec![
            Some("1"),
            Some("1"),
            Some("42"),
            Some("-7"),
            Some("12345.6789012345"),
            Some("1.5"),
            Some("3.14"),
            Some("2.718281828459045"),
            Some("true"),
            Some("ab"),
            Some("hello"),
            Some("2024-02-29"),
            Some("2024-02-29 12:34:56.789012"),
            Some("2024-07-04 09:15:00.000001-04"),
            Some("12:34:56.789"),
            Some("12:34:56.789+05:30"),
            Some("\\xdeadbeef"),
            Some(r#"{"a": [1, 2.5, "x"], "b": null, "ü": true}"#),
            Some(POINT_SRID_EWKB),
        ],
        vec![
            Some("2"),
            Some("32767"),
            Some("2147483647"),
            Some("9223372036854775807"),
            Some("9999999999999999999999999999.9999999999"),
            Some("999.99"),
            Some("Infinity"),
            Some("NaN"),
            Some("false"),
            Some("abcde"),
            Some("Grüße 👋 日本語 ñ — ∑"),
            Some("9999-12-31"),
            Some("9999-12-31 23:59:59.999999"),
            Some("9999-12-30 23:59:59.999999+00"),
            Some("23:59:59.999999"),
            Some("23:59:59.999999-12"),
            Some("\\x00ff00"),
            Some(r#"[1, "two", {"three": [3.0]}]"#),
            Some(POINT_Z_EWKB),
        ],
        vec![
            Some("3"),
            Some("-32768"),
            Some("-2147483648"),
            Some("-9223372036854775808"),
            Some("-9999999999999999999999999999.9999999999"),
            Some("-999.99"),
            Some("-Infinity"),
            Some("-0"),
            Some("false"),
            Some("a"),
            Some(""),
            Some("0001-01-01"),
            Some("0001-01-01 00:00:00.000001"),
            Some("0001-01-02 00:00:00.000001+00"),
            Some("00:00:00"),
            Some("00:00:00+14"),
            Some("\\x"),
            Some(r#""just a string""#),
            Some(POINT_SRID_EWKB),
        ],
        vec![
            Some("4"),
            Some("0"),
            Some("0"),
            Some("0"),
            Some("0.0000000001"),
            Some("0.01"),
            Some("-0"),
            Some("5e-324"),
            Some("true"),
            Some("  x"),
            Some("it's \"quoted\" \\ back\nslash\ttab"),
            Some("1970-01-01"),
            Some("1969-12-31 23:59:59.999999"),
            Some("1999-12-31 19:00:00.5-05"),
            Some("00:00:00.000001"),
            Some("00:00:00-00:30"),
            Some("\\x00"),
            Some("null"),
            Some(POINT_Z_EWKB),
        ],
        std::iter::once(Some("5"))
            .chain(std::iter::repeat_n(None, 18))
            .collect(),
    ];
    raw.into_iter()
        .map(|r| r.into_iter().map(|v| v.map(str::to_string)).collect())
        .collect()
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// PostgreSQL's values in comparable text, ordered by id.
async fn postgres_rows(pg: &tokio_postgres::Client, table: &str) -> Vec<Vec<Option<String>>> {
    let select: Vec<String> = COLUMNS
        .iter()
        .map(|(name, _, expr)| expr.replace("{c}", &quote(name)))
        .collect();
    let sql = format!("SELECT {} FROM {table} ORDER BY id", select.join(", "));
    let rows = pg.query(&sql, &[]).await.unwrap();
    rows.iter()
        .map(|row| {
            (0..COLUMNS.len())
                .map(|i| {
                    let value: Option<String> = row.get(i);
                    value.map(|v| match COLUMNS[i].0 {
                        "geo" => match v.as_str() {
                            POINT_SRID_EWKB => POINT_WKB.to_string(),
                            POINT_Z_EWKB => POINT_Z_WKB.to_string(),
                            other => other.to_string(),
                        },
                        _ => v,
                    })
                })
                .collect()
        })
        .collect()
}

/// The batches' values in the same text forms.
fn arrow_rows(batches: &[RecordBatch]) -> Vec<Vec<Option<String>>> {
    let options = FormatOptions::default()
        .with_timestamp_format(Some("%Y-%m-%dT%H:%M:%S%.6f"))
        .with_timestamp_tz_format(Some("%Y-%m-%dT%H:%M:%S%.6f%:z"))
        .with_time_format(Some("%H:%M:%S%.6f"));
    let mut rows = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let values = batch
                .columns()
                .iter()
                .map(|column| {
                    if column.is_null(row) {
                        return None;
                    }
                    Some(match column.data_type() {
                        DataType::Float32 => {
                            let v = column
                                .as_any()
                                .downcast_ref::<Float32Array>()
                                .unwrap()
                                .value(row);
                            hex_be(&v.to_bits().to_be_bytes())
                        }
                        DataType::Float64 => {
                            let v = column
                                .as_any()
                                .downcast_ref::<Float64Array>()
                                .unwrap()
                                .value(row);
                            hex_be(&v.to_bits().to_be_bytes())
                        }
                        _ => ArrayFormatter::try_new(column.as_ref(), &options)
                            .unwrap()
                            .value(row)
                            .to_string(),
                    })
                })
                .collect();
            rows.push(values);
        }
    }
    rows.sort_by_key(|r: &Vec<Option<String>>| r[0].as_ref().map(|id| id.parse::<i32>().unwrap()));
    rows
}

fn hex_be(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// NaN has many bit patterns; both sides call it NaN.
fn normalise(kind: &str, value: Option<String>) -> Option<String> {
    let value = value?;
    Some(match kind {
        "Real" if f32::from_bits(u32::from_str_radix(&value, 16).unwrap()).is_nan() => "NaN".into(),
        "double" if f64::from_bits(u64::from_str_radix(&value, 16).unwrap()).is_nan() => {
            "NaN".into()
        }
        "Super" => serde_json::from_str::<serde_json::Value>(&value)
            .unwrap()
            .to_string(),
        _ => value,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_equals_postgres() {
    let pg = pg().await;
    let table = "All Types \"T\"";
    let columns: Vec<String> = COLUMNS
        .iter()
        .map(|(name, pg_type, _)| format!("{} {pg_type}", quote(name)))
        .collect();
    let schema = SchemaGuard::create(
        &pg,
        "rust_Types",
        &format!(
            "CREATE TABLE {{s}}.{} ({})",
            quote(table),
            columns.join(", ")
        ),
    )
    .await;
    let qualified = format!("{}.{}", schema.quoted(), quote(table));
    // Literals are read in a zone other than UTC, as a client would write them.
    pg.batch_execute("SET TIME ZONE 'America/New_York'")
        .await
        .unwrap();
    for row in rows() {
        let values: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, v)| match (COLUMNS[i].0, v) {
                (_, None) => "NULL".to_string(),
                ("geo", Some(hex)) => format!("decode('{hex}', 'hex')"),
                (_, Some(v)) if v.contains('\\') && !v.starts_with("\\x") => {
                    format!("E'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
                }
                (_, Some(v)) => format!("'{}'", v.replace('\'', "''")),
            })
            .collect();
        pg.batch_execute(&format!(
            "INSERT INTO {qualified} VALUES ({})",
            values.join(", ")
        ))
        .await
        .unwrap();
    }
    pg.batch_execute("SET TIME ZONE 'UTC'").await.unwrap();

    let server = Server::start("public", &[]);
    let client = server.client().await;
    let request = TableRequest::qualified(&schema.name, table).mode(Mode::Full);
    let mut stream = client.read(request);
    let mut batches = Vec::new();
    while let Some(batch) = stream.try_next().await.unwrap() {
        batches.push(batch);
    }
    let flight = stream.flight().expect("planned");
    assert_eq!(flight.total_records(), Some(5));
    let names: Vec<&str> = flight
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, COLUMNS.iter().map(|c| c.0).collect::<Vec<_>>());
    let types: Vec<&DataType> = flight
        .schema
        .fields()
        .iter()
        .map(|f| f.data_type())
        .collect();
    assert_eq!(types[12], &DataType::Timestamp(TimeUnit::Microsecond, None));
    assert_eq!(
        types[13],
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    assert_eq!(types[14], &DataType::Time64(TimeUnit::Microsecond));

    let want = postgres_rows(&pg, &qualified).await;
    let got = arrow_rows(&batches);
    assert_eq!(got.len(), want.len());
    for (want_row, got_row) in want.into_iter().zip(got) {
        for ((name, _, _), (want, got)) in COLUMNS.iter().zip(want_row.into_iter().zip(got_row)) {
            assert_eq!(
                normalise(name, got),
                normalise(name, want),
                "column {name:?}: redshift-flight (left) differs from PostgreSQL (right)"
            );
        }
    }
}
