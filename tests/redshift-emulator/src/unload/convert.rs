//! From PostgreSQL's text output to Arrow arrays, the way Redshift types Parquet columns.
//!
//! The UNLOAD cursor is read with the simple query protocol, so every value arrives as
//! PostgreSQL's text output. Parsing that text is exact for every supported type: integers and
//! decimals are parsed digit by digit into integers (no floating point on the way), floats use
//! PostgreSQL 12+'s shortest round-trip output (`extra_float_digits = 1`), and date/time values
//! are read in `DateStyle = ISO` with their UTC offset.
//!
//! | PostgreSQL | Arrow / Parquet | manifest `base` |
//! |---|---|---|
//! | int2 / int4 / int8 | Int16 / Int32 / Int64 | smallint / integer / bigint |
//! | numeric(p,s), p <= 38 | Decimal128(p, s) | numeric (+ precision, scale) |
//! | numeric (no typmod) | Decimal128(38, 10) (values that do not fit exactly are an error) | numeric |
//! | float4 / float8 | Float32 / Float64 | real / double precision |
//! | bool | Boolean | boolean |
//! | char(n) | Utf8, padding kept | character (+ max_length) |
//! | varchar(n) / text / name | Utf8 | character varying (+ max_length) |
//! | date | Date32 | date |
//! | timestamp | Timestamp(µs, none) | timestamp without time zone |
//! | timestamptz | Timestamp(µs, none) holding UTC | timestamp with time zone |
//! | json / jsonb (SUPER) | Utf8 JSON text | super |
//!
//! TIME, TIMETZ, VARBYTE (bytea) and GEOMETRY are rejected with Redshift's wording; any other
//! type is rejected with a clear message.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder,
    Int16Builder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use pgwire::messages::data::FieldDescription;
use serde_json::{Value, json};

use crate::error::StatementError;

/// Precision used for `numeric` without a type modifier.
pub const UNCONSTRAINED_NUMERIC_PRECISION: u8 = 38;
/// Scale used for `numeric` without a type modifier.
pub const UNCONSTRAINED_NUMERIC_SCALE: i8 = 10;

mod oid {
    pub(super) const BOOL: u32 = 16;
    pub(super) const BYTEA: u32 = 17;
    pub(super) const CHAR: u32 = 18;
    pub(super) const NAME: u32 = 19;
    pub(super) const INT8: u32 = 20;
    pub(super) const INT2: u32 = 21;
    pub(super) const INT4: u32 = 23;
    pub(super) const TEXT: u32 = 25;
    pub(super) const JSON: u32 = 114;
    pub(super) const FLOAT4: u32 = 700;
    pub(super) const FLOAT8: u32 = 701;
    pub(super) const UNKNOWN: u32 = 705;
    pub(super) const BPCHAR: u32 = 1042;
    pub(super) const VARCHAR: u32 = 1043;
    pub(super) const DATE: u32 = 1082;
    pub(super) const TIME: u32 = 1083;
    pub(super) const TIMESTAMP: u32 = 1114;
    pub(super) const TIMESTAMPTZ: u32 = 1184;
    pub(super) const TIMETZ: u32 = 1266;
    pub(super) const NUMERIC: u32 = 1700;
    pub(super) const JSONB: u32 = 3802;
}

/// The OID of `bytea`, which VARBYTE and GEOMETRY map to in the backend.
pub(crate) const BYTEA_OID: u32 = oid::BYTEA;

/// A column type the emulator can unload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnType {
    Int16,
    Int32,
    Int64,
    Decimal {
        precision: u8,
        scale: i8,
        declared: bool,
    },
    Float32,
    Float64,
    Boolean,
    /// `char(n)`
    Char(Option<u32>),
    /// `varchar(n)`, `text`, `name`
    Varchar(Option<u32>),
    Date,
    Timestamp,
    TimestampTz,
    /// json / jsonb: Redshift SUPER
    Super,
}

/// One output column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Column {
    pub(crate) name: String,
    pub(crate) ty: ColumnType,
}

fn reject_text_only(kind: &str, name: &str) -> StatementError {
    StatementError::Rejected(format!(
        "UNLOAD {kind} column \"{name}\" is only supported for TEXT/CSV."
    ))
}

/// Maps a RowDescription field to a column type; `bytea_kind` names what a bytea column is
/// in Redshift (`varbyte` or `geometry`, from the source column's domain).
pub(crate) fn column_from_field(
    field: &FieldDescription,
    bytea_kind: Option<&str>,
) -> Result<Column, StatementError> {
    let name = field.name.clone();
    let typmod = field.type_modifier;
    let len = (typmod >= 4).then(|| (typmod - 4) as u32);
    let ty = match field.type_id {
        oid::INT2 => ColumnType::Int16,
        oid::INT4 => ColumnType::Int32,
        oid::INT8 => ColumnType::Int64,
        oid::NUMERIC => {
            if typmod >= 4 {
                let t = typmod - 4;
                let precision = ((t >> 16) & 0xffff) as u32;
                // PostgreSQL 15 stores the scale as an 11-bit signed number
                let raw_scale = t & 0x7ff;
                let scale = if raw_scale & 0x400 != 0 {
                    raw_scale - 0x800
                } else {
                    raw_scale
                };
                if precision > 38 || !(0..=38).contains(&scale) {
                    return Err(StatementError::Rejected(format!(
                        "UNLOAD column \"{name}\" has type numeric({precision},{scale}); Redshift supports precision up to 38 and scale 0..precision"
                    )));
                }
                ColumnType::Decimal {
                    precision: precision as u8,
                    scale: scale as i8,
                    declared: true,
                }
            } else {
                ColumnType::Decimal {
                    precision: UNCONSTRAINED_NUMERIC_PRECISION,
                    scale: UNCONSTRAINED_NUMERIC_SCALE,
                    declared: false,
                }
            }
        }
        oid::FLOAT4 => ColumnType::Float32,
        oid::FLOAT8 => ColumnType::Float64,
        oid::BOOL => ColumnType::Boolean,
        oid::BPCHAR => ColumnType::Char(len),
        oid::VARCHAR => ColumnType::Varchar(len),
        oid::TEXT | oid::NAME | oid::CHAR | oid::UNKNOWN => ColumnType::Varchar(None),
        oid::DATE => ColumnType::Date,
        oid::TIMESTAMP => ColumnType::Timestamp,
        oid::TIMESTAMPTZ => ColumnType::TimestampTz,
        oid::JSON | oid::JSONB => ColumnType::Super,
        oid::TIME => return Err(reject_text_only("time without time zone", &name)),
        oid::TIMETZ => return Err(reject_text_only("time with time zone", &name)),
        oid::BYTEA => {
            return Err(reject_text_only(bytea_kind.unwrap_or("varbyte"), &name));
        }
        other => {
            return Err(StatementError::Rejected(format!(
                "UNLOAD column \"{name}\" has a type (oid {other}) the Redshift emulator cannot write to Parquet; cast it to a Redshift type in the SELECT"
            )));
        }
    };
    Ok(Column { name, ty })
}

impl ColumnType {
    fn data_type(&self) -> DataType {
        match self {
            Self::Int16 => DataType::Int16,
            Self::Int32 => DataType::Int32,
            Self::Int64 => DataType::Int64,
            Self::Decimal {
                precision, scale, ..
            } => DataType::Decimal128(*precision, *scale),
            Self::Float32 => DataType::Float32,
            Self::Float64 => DataType::Float64,
            Self::Boolean => DataType::Boolean,
            Self::Char(_) | Self::Varchar(_) | Self::Super => DataType::Utf8,
            Self::Date => DataType::Date32,
            Self::Timestamp | Self::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, None),
        }
    }

    /// The `type` object of a MANIFEST VERBOSE schema element.
    pub(crate) fn manifest_type(&self) -> Value {
        match self {
            Self::Int16 => json!({"base": "smallint"}),
            Self::Int32 => json!({"base": "integer"}),
            Self::Int64 => json!({"base": "bigint"}),
            Self::Decimal {
                precision, scale, ..
            } => json!({"base": "numeric", "precision": precision, "scale": scale}),
            Self::Float32 => json!({"base": "real"}),
            Self::Float64 => json!({"base": "double precision"}),
            Self::Boolean => json!({"base": "boolean"}),
            Self::Char(Some(n)) => json!({"base": "character", "max_length": n}),
            Self::Char(None) => json!({"base": "character"}),
            Self::Varchar(Some(n)) => json!({"base": "character varying", "max_length": n}),
            Self::Varchar(None) => json!({"base": "character varying"}),
            Self::Date => json!({"base": "date"}),
            Self::Timestamp => json!({"base": "timestamp without time zone"}),
            Self::TimestampTz => json!({"base": "timestamp with time zone"}),
            Self::Super => json!({"base": "super"}),
        }
    }
}

/// The Arrow schema for `columns`: every field nullable, names exactly as PostgreSQL reports.
pub(crate) fn arrow_schema(columns: &[Column]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, c.ty.data_type(), true))
            .collect::<Vec<_>>(),
    ))
}

/// Redshift's longest VARCHAR, in bytes.
pub const MAX_VARCHAR_BYTES: usize = 65_535;

/// A CHAR / VARCHAR value: Redshift cannot hold more than [`MAX_VARCHAR_BYTES`] in one (the
/// backend's `text` can), so a longer one fails the UNLOAD.
fn varchar_value(s: &str) -> Result<&str, String> {
    if s.len() > MAX_VARCHAR_BYTES {
        return Err(format!(
            "Value too long for character type: {} bytes, VARCHAR holds at most {MAX_VARCHAR_BYTES}",
            s.len()
        ));
    }
    text_value(s)
}

/// Builds one record batch from text rows.
pub(crate) fn rows_to_batch(
    schema: &SchemaRef,
    columns: &[Column],
    rows: &[Vec<Option<String>>],
) -> Result<RecordBatch, StatementError> {
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for (i, col) in columns.iter().enumerate() {
        let values = rows.iter().map(|r| r.get(i).and_then(|v| v.as_deref()));
        let bad = |v: &str, why: String| {
            // a rejected value may be megabytes long: show its start only
            let shown: String = v.chars().take(64).collect();
            let more = if shown.len() < v.len() { "..." } else { "" };
            StatementError::Rejected(format!(
                "cannot convert value '{shown}{more}' of column \"{}\": {why}",
                col.name
            ))
        };
        macro_rules! build {
            ($builder:expr, $parse:expr) => {{
                let mut b = $builder;
                for v in values {
                    match v {
                        None => b.append_null(),
                        Some(s) => b.append_value($parse(s).map_err(|why: String| bad(s, why))?),
                    }
                }
                Arc::new(b.finish()) as ArrayRef
            }};
        }
        let array = match col.ty {
            ColumnType::Int16 => build!(Int16Builder::with_capacity(rows.len()), |s: &str| s
                .parse::<i16>()
                .map_err(|e| e.to_string())),
            ColumnType::Int32 => build!(Int32Builder::with_capacity(rows.len()), |s: &str| s
                .parse::<i32>()
                .map_err(|e| e.to_string())),
            ColumnType::Int64 => build!(Int64Builder::with_capacity(rows.len()), |s: &str| s
                .parse::<i64>()
                .map_err(|e| e.to_string())),
            ColumnType::Decimal {
                precision, scale, ..
            } => build!(
                Decimal128Builder::with_capacity(rows.len())
                    .with_precision_and_scale(precision, scale)
                    .map_err(|e| StatementError::Rejected(e.to_string()))?,
                |s: &str| parse_decimal(s, precision, scale)
            ),
            ColumnType::Float32 => build!(Float32Builder::with_capacity(rows.len()), parse_f32),
            ColumnType::Float64 => build!(Float64Builder::with_capacity(rows.len()), parse_f64),
            ColumnType::Boolean => build!(BooleanBuilder::with_capacity(rows.len()), |s: &str| {
                match s {
                    "t" => Ok(true),
                    "f" => Ok(false),
                    _ => Err("not a boolean".to_owned()),
                }
            }),
            ColumnType::Char(_) | ColumnType::Varchar(_) => build!(
                StringBuilder::with_capacity(rows.len(), 16 * rows.len()),
                varchar_value
            ),
            // SUPER goes to Parquet as JSON text, bounded by SUPER's own size limit only
            ColumnType::Super => build!(
                StringBuilder::with_capacity(rows.len(), 16 * rows.len()),
                text_value
            ),
            ColumnType::Date => build!(Date32Builder::with_capacity(rows.len()), parse_date),
            ColumnType::Timestamp => build!(
                TimestampMicrosecondBuilder::with_capacity(rows.len()),
                |s: &str| parse_timestamp(s, false)
            ),
            ColumnType::TimestampTz => build!(
                TimestampMicrosecondBuilder::with_capacity(rows.len()),
                |s: &str| parse_timestamp(s, true)
            ),
        };
        arrays.push(array);
    }
    RecordBatch::try_new(Arc::clone(schema), arrays)
        .map_err(|e| StatementError::Rejected(format!("cannot build a record batch: {e}")))
}

/// Parses PostgreSQL's numeric text output into a Decimal128 value with `scale` digits after
/// the point, exactly. Fails if the value has more significant fractional digits than `scale`
/// or more than `precision` digits in total.
pub(crate) fn parse_decimal(s: &str, precision: u8, scale: i8) -> Result<i128, String> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if matches!(body, "NaN" | "Infinity") {
        return Err("Redshift DECIMAL has no NaN or Infinity".to_owned());
    }
    let (int_part, frac_part) = body.split_once('.').unwrap_or((body, ""));
    if int_part.is_empty() && frac_part.is_empty()
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return Err("not a decimal number".to_owned());
    }
    let scale = scale.max(0) as usize;
    let frac_digits = frac_part.trim_end_matches('0');
    if frac_digits.len() > scale {
        return Err(format!(
            "it has more than {scale} digits after the decimal point (Decimal128({precision}, {scale})); cast the column to numeric(p,s) in the SELECT"
        ));
    }
    let mut digits = String::with_capacity(int_part.len() + scale);
    digits.push_str(int_part.trim_start_matches('0'));
    digits.push_str(frac_digits);
    digits.extend(std::iter::repeat_n('0', scale - frac_digits.len()));
    let significant = digits.trim_start_matches('0');
    if significant.len() > precision as usize {
        return Err(format!("it does not fit Decimal128({precision}, {scale})"));
    }
    let magnitude: i128 = if significant.is_empty() {
        0
    } else {
        significant.parse().map_err(|e| format!("{e}"))?
    };
    Ok(if neg { -magnitude } else { magnitude })
}

fn text_value(s: &str) -> Result<&str, String> {
    Ok(s)
}

fn parse_f64(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "Infinity" => Ok(f64::INFINITY),
        "-Infinity" => Ok(f64::NEG_INFINITY),
        _ => s.parse::<f64>().map_err(|e| e.to_string()),
    }
}

fn parse_f32(s: &str) -> Result<f32, String> {
    match s {
        "NaN" => Ok(f32::NAN),
        "Infinity" => Ok(f32::INFINITY),
        "-Infinity" => Ok(f32::NEG_INFINITY),
        _ => s.parse::<f32>().map_err(|e| e.to_string()),
    }
}

const UNIX_EPOCH_DAYS_FROM_CE: i64 = 719_163;
const MICROS_PER_DAY: i64 = 86_400_000_000;

fn parse_num<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad {what}"));
    }
    s.parse().map_err(|_| format!("bad {what}"))
}

/// `YYYY-MM-DD` to days since 1970-01-01.
fn days_from_iso_date(s: &str) -> Result<i64, String> {
    if s.ends_with(" BC") || s.contains("infinity") {
        return Err("Redshift does not support BC or infinite dates".to_owned());
    }
    let mut parts = s.splitn(3, '-');
    let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("not an ISO date".to_owned());
    };
    let date = chrono::NaiveDate::from_ymd_opt(
        parse_num(y, "year")?,
        parse_num(m, "month")?,
        parse_num(d, "day")?,
    )
    .ok_or_else(|| "invalid date".to_owned())?;
    use chrono::Datelike;
    Ok(i64::from(date.num_days_from_ce()) - UNIX_EPOCH_DAYS_FROM_CE)
}

fn parse_date(s: &str) -> Result<i32, String> {
    let days = days_from_iso_date(s)?;
    i32::try_from(days).map_err(|_| "date out of range".to_owned())
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff][+HH[:MM[:SS]]]` to microseconds since the epoch (UTC when an
/// offset is present).
pub(crate) fn parse_timestamp(s: &str, with_zone: bool) -> Result<i64, String> {
    if s.ends_with(" BC") || s.contains("infinity") {
        return Err("Redshift does not support BC or infinite timestamps".to_owned());
    }
    let (date, rest) = s.split_once(' ').ok_or("not an ISO timestamp")?;
    let days = days_from_iso_date(date)?;
    // split off the zone offset
    let (time, offset_secs) = if with_zone {
        let pos = rest
            .rfind(['+', '-'])
            .ok_or("timestamp with time zone has no UTC offset")?;
        let sign = if &rest[pos..pos + 1] == "-" { -1 } else { 1 };
        let mut secs = 0i64;
        for (i, part) in rest[pos + 1..].split(':').enumerate() {
            let n: i64 = parse_num(part, "UTC offset")?;
            secs += n * [3600, 60, 1].get(i).copied().ok_or("bad UTC offset")?;
        }
        (&rest[..pos], sign * secs)
    } else {
        (rest, 0)
    };
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut hms_parts = hms.split(':');
    let (Some(h), Some(m), Some(sec), None) = (
        hms_parts.next(),
        hms_parts.next(),
        hms_parts.next(),
        hms_parts.next(),
    ) else {
        return Err("bad time of day".to_owned());
    };
    let (h, m, sec): (i64, i64, i64) = (
        parse_num(h, "hour")?,
        parse_num(m, "minute")?,
        parse_num(sec, "second")?,
    );
    if h > 24 || m > 59 || sec > 60 || frac.len() > 6 {
        return Err("bad time of day".to_owned());
    }
    let micros_frac: i64 = if frac.is_empty() {
        0
    } else {
        parse_num::<i64>(frac, "fraction")? * 10i64.pow(6 - frac.len() as u32)
    };
    Ok(days * MICROS_PER_DAY + ((h * 60 + m) * 60 + sec - offset_secs) * 1_000_000 + micros_frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact() {
        assert_eq!(parse_decimal("123.45", 10, 2), Ok(12345));
        assert_eq!(parse_decimal("-0.01", 10, 2), Ok(-1));
        assert_eq!(parse_decimal("7", 10, 3), Ok(7000));
        assert_eq!(parse_decimal("1.500", 10, 1), Ok(15));
        assert_eq!(parse_decimal("0", 38, 0), Ok(0));
        let max = "9".repeat(38);
        assert_eq!(parse_decimal(&max, 38, 0), Ok(max.parse::<i128>().unwrap()));
        let frac = format!("-0.{}", "9".repeat(38));
        assert_eq!(
            parse_decimal(&frac, 38, 38),
            Ok(-"9".repeat(38).parse::<i128>().unwrap())
        );
        assert!(parse_decimal(&format!("1{max}"), 38, 0).is_err());
        assert!(parse_decimal("1.234", 10, 2).is_err());
        assert!(parse_decimal("NaN", 10, 2).is_err());
        assert!(parse_decimal("1e5", 10, 2).is_err());
    }

    #[test]
    fn floats_keep_specials() {
        assert!(parse_f64("NaN").unwrap().is_nan());
        assert_eq!(parse_f64("-Infinity"), Ok(f64::NEG_INFINITY));
        assert!(parse_f64("-0").unwrap().is_sign_negative());
        assert_eq!(parse_f64("1.7976931348623157e+308"), Ok(f64::MAX));
        assert_eq!(parse_f32("3.4028235e+38"), Ok(f32::MAX));
        assert_eq!(parse_f64("5e-324"), Ok(5e-324));
    }

    #[test]
    fn dates_and_timestamps() {
        assert_eq!(parse_date("1970-01-01"), Ok(0));
        assert_eq!(parse_date("0001-01-01"), Ok(-719_162));
        assert_eq!(parse_date("9999-12-31"), Ok(2_932_896));
        assert!(parse_date("0044-03-15 BC").is_err());
        assert!(parse_date("infinity").is_err());
        assert_eq!(
            parse_timestamp("1970-01-01 00:00:01.5", false),
            Ok(1_500_000)
        );
        assert_eq!(
            parse_timestamp("9999-12-31 23:59:59.999999", false),
            Ok(2_932_897 * MICROS_PER_DAY - 1)
        );
        assert_eq!(
            parse_timestamp("0001-01-01 00:00:00.000001", false),
            Ok(-719_162 * MICROS_PER_DAY + 1)
        );
        assert_eq!(parse_timestamp("1970-01-01 05:30:00+05:30", true), Ok(0));
        assert_eq!(parse_timestamp("1969-12-31 23:00:00-01", true), Ok(0));
        assert_eq!(parse_timestamp("1970-01-01 00:53:28+00:53:28", true), Ok(0));
        assert_eq!(
            parse_timestamp("2000-01-01 00:00:00+00", true),
            Ok(946_684_800_000_000)
        );
    }

    #[test]
    fn numeric_typmods() {
        let f = |type_id, typmod| FieldDescription::new("c".into(), 0, 0, type_id, -1, typmod, 0);
        let col = column_from_field(&f(oid::NUMERIC, (38 << 16 | 10) + 4), None).unwrap();
        assert_eq!(
            col.ty,
            ColumnType::Decimal {
                precision: 38,
                scale: 10,
                declared: true
            }
        );
        let col = column_from_field(&f(oid::NUMERIC, -1), None).unwrap();
        assert!(matches!(
            col.ty,
            ColumnType::Decimal {
                declared: false,
                ..
            }
        ));
        assert!(column_from_field(&f(oid::NUMERIC, (39 << 16) + 4), None).is_err());
        let col = column_from_field(&f(oid::VARCHAR, 14), None).unwrap();
        assert_eq!(col.ty, ColumnType::Varchar(Some(10)));
    }

    #[test]
    fn rejections_use_redshift_wording() {
        let f = |type_id| FieldDescription::new("c".into(), 0, 0, type_id, -1, -1, 0);
        let msg = |e: StatementError| e.to_string();
        assert_eq!(
            msg(column_from_field(&f(oid::TIME), None).unwrap_err()),
            "UNLOAD time without time zone column \"c\" is only supported for TEXT/CSV."
        );
        assert_eq!(
            msg(column_from_field(&f(oid::BYTEA), Some("geometry")).unwrap_err()),
            "UNLOAD geometry column \"c\" is only supported for TEXT/CSV."
        );
        assert!(msg(column_from_field(&f(2950), None).unwrap_err()).contains("cannot write"));
    }
}
