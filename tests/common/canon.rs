//! Whole-result comparison: every value of a Flight result and of PostgreSQL rendered to one
//! canonical text, so tables compare row by row and column by column.

use std::collections::HashMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    Time64MicrosecondType, TimeUnit, TimestampMicrosecondType,
};
use arrow::util::display::array_value_to_string;
use arrow_flight::FlightInfo;
use futures::TryStreamExt;

use super::{TestServer, pg, pg_rows};

/// How a column is compared: the SQL that renders PostgreSQL's value canonically, and the kind of
/// Arrow value it is compared with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Text,
    Float32,
    Float64,
    Epoch,
    Days,
    Hex,
    Geometry,
}

pub struct Col {
    pub name: &'static str,
    pub ddl: &'static str,
    pub kind: Kind,
    pub arrow: DataType,
}

impl Col {
    /// A column compared as `kind`, for tables the test creates itself (no DDL needed).
    pub fn new(name: &'static str, kind: Kind, arrow: DataType) -> Self {
        Self {
            name,
            ddl: "",
            kind,
            arrow,
        }
    }
}

pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub fn canon_sql(col: &Col) -> String {
    let c = quote(col.name);
    match col.kind {
        Kind::Text if col.ddl.starts_with("char") => c,
        Kind::Text | Kind::Float32 | Kind::Float64 => format!("{c}::text"),
        Kind::Epoch => format!("(EXTRACT(EPOCH FROM {c}) * 1000000)::numeric(30,0)::text"),
        Kind::Days => format!("({c} - DATE '1970-01-01')::text"),
        Kind::Hex | Kind::Geometry => format!("encode({c}, 'hex')"),
    }
}

pub fn float_canon32(v: f32) -> String {
    if v.is_nan() {
        "NaN".into()
    } else {
        format!("{:08x}", v.to_bits())
    }
}

pub fn float_canon64(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else {
        format!("{:016x}", v.to_bits())
    }
}

/// Geometry values inserted by the test (EWKB hex) and the ISO WKB the server must return.
pub fn wkb_expectations() -> HashMap<String, String> {
    HashMap::from([
        (
            // SRID=4326;POINT(1 2)
            "0101000020e6100000000000000000f03f0000000000000040".to_string(),
            "0101000000000000000000f03f0000000000000040".to_string(),
        ),
        (
            // LINESTRING(0 0, 1 1), no SRID
            "01020000000200000000000000000000000000000000000000000000000000f03f000000000000f03f"
                .to_string(),
            "01020000000200000000000000000000000000000000000000000000000000f03f000000000000f03f"
                .to_string(),
        ),
    ])
}

pub fn pg_canon(col: &Col, value: Option<String>) -> Option<String> {
    let v = value?;
    Some(match col.kind {
        Kind::Float32 => float_canon32(v.parse::<f32>().unwrap_or_else(|_| panic!("float4 {v}"))),
        Kind::Float64 => float_canon64(v.parse::<f64>().unwrap_or_else(|_| panic!("float8 {v}"))),
        Kind::Geometry => wkb_expectations()
            .get(&v)
            .cloned()
            .unwrap_or_else(|| panic!("unexpected geometry {v}")),
        _ => v,
    })
}

pub fn arrow_canon(array: &dyn Array, row: usize) -> Option<String> {
    if array.is_null(row) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).to_string(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).to_string(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::Float32 => float_canon32(array.as_primitive::<Float32Type>().value(row)),
        DataType::Float64 => float_canon64(array.as_primitive::<Float64Type>().value(row)),
        DataType::Date32 => array.as_primitive::<Date32Type>().value(row).to_string(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => array
            .as_primitive::<TimestampMicrosecondType>()
            .value(row)
            .to_string(),
        DataType::Time64(TimeUnit::Microsecond) => array
            .as_primitive::<Time64MicrosecondType>()
            .value(row)
            .to_string(),
        DataType::Binary => hex::encode(array.as_binary::<i32>().value(row)),
        DataType::Utf8 => array.as_string::<i32>().value(row).to_string(),
        DataType::Boolean | DataType::Decimal128(_, _) => {
            array_value_to_string(array, row).unwrap()
        }
        other => panic!("unexpected Arrow type {other}"),
    })
}

/// Every row of every batch, canonicalised, sorted by the first column (an integer key).
pub fn canon_batches(batches: &[RecordBatch]) -> Vec<Vec<Option<String>>> {
    let mut rows = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            rows.push(
                batch
                    .columns()
                    .iter()
                    .map(|c| arrow_canon(c.as_ref(), row))
                    .collect::<Vec<_>>(),
            );
        }
    }
    rows.sort_by_key(|r: &Vec<Option<String>>| r[0].as_ref().map(|k| k.parse::<i64>().unwrap()));
    rows
}

pub async fn pg_canon_rows(table_sql: &str, cols: &[&Col]) -> Vec<Vec<Option<String>>> {
    let client = pg().await;
    let list = cols
        .iter()
        .map(|c| canon_sql(c))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = pg_rows(
        &client,
        &format!("SELECT {list} FROM {table_sql} ORDER BY 1"),
    )
    .await;
    let mut rows: Vec<Vec<Option<String>>> = rows
        .into_iter()
        .map(|r| {
            r.into_iter()
                .zip(cols)
                .map(|(v, c)| pg_canon(c, v))
                .collect()
        })
        .collect();
    rows.sort_by_key(|r| r[0].as_ref().map(|k| k.parse::<i64>().unwrap()));
    rows
}

pub async fn read_all(server: &TestServer, info: &FlightInfo) -> Vec<RecordBatch> {
    let mut batches = Vec::new();
    for endpoint in &info.endpoint {
        let mut client = server.client().await;
        let ticket = endpoint.ticket.clone().expect("endpoint has a ticket");
        let stream = client.do_get(ticket).await.expect("DoGet");
        let got: Vec<RecordBatch> = stream.try_collect().await.expect("stream");
        batches.extend(got);
    }
    batches
}
