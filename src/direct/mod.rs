//! Small Flight SQL results without UNLOAD: the query's rows, read on the connection through a
//! cursor (`crate::warehouse::Rows`), become Arrow batches of the promised schema, with the same
//! values the UNLOAD path delivers.
//!
//! The cursor runs the plan's own SELECT (each column as UNLOAD would write it: TIME as text,
//! VARBYTE and GEOMETRY as hex chunks), so a text batch has the staged columns a Parquet file
//! would. Each staged column is built as the type UNLOAD writes (the promised type, or text for
//! the converted ones, [`text`] parsing exactly), and the batch then goes through the same
//! [`normalize_batch`] as a staged file's: one conversion for both paths.
//!
//! Imports: `crate::catalog` (types), `crate::normalize`, `crate::redshift` (text batches).

pub mod text;

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder,
    Int16Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::catalog::RedshiftType;
use crate::normalize::{NormalizeError, normalize_batch, staged_groups};
use crate::redshift::{TextBatch, TextRow};

/// How many rows one FETCH asks for, given Redshift's estimate of a row's width in bytes: about
/// 4 MiB of text per fetch, between 64 and 8,192 rows.
pub fn fetch_rows(width: u64) -> usize {
    let rows = (4u64 << 20) / width.max(1);
    rows.clamp(64, 8192) as usize
}

/// Converts one batch of rows read on the connection into a batch of the promised `schema`, whose
/// columns have the Redshift `types`.
pub fn to_record_batch(
    batch: &TextBatch,
    schema: &SchemaRef,
    types: &[RedshiftType],
) -> Result<RecordBatch, NormalizeError> {
    let names: Vec<Field> = batch
        .columns
        .iter()
        .map(|name| Field::new(name, DataType::Utf8, true))
        .collect();
    let groups = staged_groups(&Schema::new(names), types)?;
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.columns.len());
    let mut fields = Vec::with_capacity(batch.columns.len());
    for ((group, rtype), promised) in groups.into_iter().zip(types).zip(schema.fields()) {
        for (k, index) in group.enumerate() {
            let staged = if k == 0 {
                staged_type(rtype, promised.data_type())
            } else {
                DataType::Utf8
            };
            let array =
                build(&batch.rows, index, &staged, rtype).map_err(|message| NormalizeError {
                    column: promised.name().clone(),
                    message,
                })?;
            fields.push(Field::new(&batch.columns[index], staged, true));
            columns.push(array);
        }
    }
    let staged = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| {
        NormalizeError {
            column: String::new(),
            message: e.to_string(),
        }
    })?;
    normalize_batch(&staged, schema, types)
}

/// The type a staged column of `rtype` has in UNLOAD's Parquet: text for what the SELECT
/// converts, the promised type otherwise (strings plain, timestamps without a zone).
fn staged_type(rtype: &RedshiftType, promised: &DataType) -> DataType {
    match rtype {
        RedshiftType::Time
        | RedshiftType::TimeTz
        | RedshiftType::HllSketch
        | RedshiftType::Nested(_)
        | RedshiftType::Other(_)
        | RedshiftType::Varbyte
        | RedshiftType::Geometry
        | RedshiftType::Super
        | RedshiftType::Char
        | RedshiftType::Varchar => DataType::Utf8,
        RedshiftType::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, None),
        _ => promised.clone(),
    }
}

/// Column `index` of `rows`, parsed as `staged`.
fn build(
    rows: &[TextRow],
    index: usize,
    staged: &DataType,
    rtype: &RedshiftType,
) -> Result<ArrayRef, String> {
    let values = rows
        .iter()
        .map(|row| row.get(index).and_then(Option::as_deref));
    macro_rules! parsed {
        ($builder:expr, $parse:expr) => {{
            let mut builder = $builder;
            for value in values {
                match value {
                    None => builder.append_null(),
                    Some(text) => builder.append_value($parse(text)?),
                }
            }
            Arc::new(builder.finish()) as ArrayRef
        }};
    }
    let n = rows.len();
    let parse_int = |what: &'static str| {
        move |text: &str| {
            text.parse::<i64>()
                .map_err(|_| format!("not {what}: {text:?}"))
        }
    };
    Ok(match staged {
        DataType::Utf8 => parsed!(StringBuilder::with_capacity(n, 0), |t: &str| {
            Ok::<_, String>(t.to_string())
        }),
        DataType::Int16 => parsed!(Int16Builder::with_capacity(n), |t: &str| {
            parse_int("a SMALLINT")(t).and_then(|v| i16::try_from(v).map_err(|e| e.to_string()))
        }),
        DataType::Int32 => parsed!(Int32Builder::with_capacity(n), |t: &str| {
            parse_int("an INTEGER")(t).and_then(|v| i32::try_from(v).map_err(|e| e.to_string()))
        }),
        DataType::Int64 => parsed!(Int64Builder::with_capacity(n), parse_int("a BIGINT")),
        DataType::Float32 => parsed!(Float32Builder::with_capacity(n), text::parse_float::<f32>),
        DataType::Float64 => parsed!(Float64Builder::with_capacity(n), text::parse_float::<f64>),
        DataType::Boolean => parsed!(BooleanBuilder::with_capacity(n), text::parse_bool),
        DataType::Date32 => parsed!(Date32Builder::with_capacity(n), text::parse_date),
        DataType::Decimal128(precision, scale) => {
            let builder = Decimal128Builder::with_capacity(n)
                .with_precision_and_scale(*precision, *scale)
                .map_err(|e| e.to_string())?;
            parsed!(builder, |t: &str| text::parse_decimal(t, *scale))
        }
        DataType::Timestamp(TimeUnit::Microsecond, None) => {
            let zoned = matches!(rtype, RedshiftType::TimestampTz);
            parsed!(TimestampMicrosecondBuilder::with_capacity(n), |t: &str| {
                text::parse_timestamp(t, zoned)
            })
        }
        other => return Err(format!("no text conversion to {other}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ColumnInfo;
    use arrow::array::AsArray;

    fn text(columns: &[&str], rows: &[&[Option<&str>]]) -> TextBatch {
        TextBatch {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: rows
                .iter()
                .map(|r| r.iter().map(|v| v.map(str::to_string)).collect())
                .collect(),
        }
    }

    #[test]
    fn rows_become_the_promised_schema() {
        let columns: Vec<ColumnInfo> = [
            ("i", "integer"),
            ("d", "numeric(10,2)"),
            ("ts", "timestamp with time zone"),
            ("t", "time without time zone"),
            ("b", "varbyte(10)"),
            ("s", "character varying(10)"),
        ]
        .into_iter()
        .map(|(n, t)| ColumnInfo::new(n, t, true))
        .collect();
        let types: Vec<RedshiftType> = columns.iter().map(|c| c.redshift_type.clone()).collect();
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|c| c.redshift_type.arrow_field(&c.name, true, &c.catalog_type))
                .collect::<Vec<_>>(),
        ));
        let batch = text(
            &["i", "d", "ts", "t", "b", "s"],
            &[
                &[
                    Some("-7"),
                    Some("12.50"),
                    Some("2024-01-02 03:04:05.000006+00"),
                    Some("23:59:59.5"),
                    Some("00ff"),
                    Some("é"),
                ],
                &[None, None, None, None, None, None],
            ],
        );
        let out = to_record_batch(&batch, &schema, &types).unwrap();
        assert_eq!(out.schema(), schema);
        assert_eq!(out.num_rows(), 2);
        assert_eq!(
            out.column(0)
                .as_primitive::<arrow::datatypes::Int32Type>()
                .value(0),
            -7
        );
        assert_eq!(
            out.column(1)
                .as_primitive::<arrow::datatypes::Decimal128Type>()
                .value(0),
            1250
        );
        assert_eq!(
            out.column(2)
                .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                .value(0),
            1_704_164_645_000_006
        );
        assert_eq!(
            out.column(3)
                .as_primitive::<arrow::datatypes::Time64MicrosecondType>()
                .value(0),
            86_399_500_000
        );
        assert_eq!(out.column(4).as_binary::<i32>().value(0), &[0u8, 255]);
        assert_eq!(out.column(5).as_string::<i32>().value(0), "é");
        assert!((0..6).all(|c| out.column(c).is_null(1)));
    }

    #[test]
    fn a_value_that_does_not_parse_names_its_column() {
        let columns = [ColumnInfo::new("n", "integer", true)];
        let types = vec![columns[0].redshift_type.clone()];
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int32, true)]));
        let error = to_record_batch(&text(&["n"], &[&[Some("x")]]), &schema, &types).unwrap_err();
        assert_eq!(error.column, "n");
        assert!(error.message.contains("\"x\""), "{error}");
    }

    #[test]
    fn fetches_hold_a_few_mebibytes() {
        assert_eq!(fetch_rows(0), 8192);
        assert_eq!(fetch_rows(100), 8192);
        assert_eq!(fetch_rows(4096), 1024);
        assert_eq!(fetch_rows(1 << 30), 64);
    }
}
