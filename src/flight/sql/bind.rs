//! A prepared statement's parameters: their Arrow fields (the parameter schema), the values DoPut
//! binds, and those values as SQL.
//!
//! DoPut keeps row 0 of each parameter column as a typed [`BoundValue`], whatever Arrow type the
//! client sent (ADBC's Python DB-API sends what pyarrow infers from the Python values, not the
//! parameter schema's types). When the statement runs, each value becomes SQL only through
//! `crate::sql`, cast to its parameter's type as Redshift describes it ([`Target`]): a string
//! bound to a DATE parameter is `CAST('2024-01-01' AS DATE)`, an integer bound to a SMALLINT one
//! `CAST(5 AS SMALLINT)`, so comparisons and result types stay what the prepared statement
//! described. A value that cannot be its parameter's type is INVALID_ARGUMENT.
//!
//! Imports: the handle's value model ([`super::handle`]), `crate::sql`, `crate::catalog::types`.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Field, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::super::ServiceError;
use super::handle::{BoundValue, Kind};
use crate::catalog::types::{MAX_DECIMAL_PRECISION, META_REDSHIFT_TYPE, RedshiftType};
use crate::sql::{QuoteError, Sql, sql};

fn bad(message: String) -> ServiceError {
    ServiceError::FlightSql(message)
}

/// The parameter schema's field for parameter `$n` of catalog type `catalog_type` (`None`: not
/// described, any value binds, type Null). The Arrow type is the type table's, with the
/// catalog type in the field metadata; an `unknown` parameter (or a NUMERIC one: the protocol
/// gives no precision) is Utf8, as text is what Redshift reads it from. VARBYTE and GEOMETRY
/// parameters are Utf8 too: binary values do not bind, a string does (as an untyped literal).
pub(super) fn parameter_field(n: usize, catalog_type: Option<&str>) -> Field {
    let name = format!("${n}");
    let Some(catalog_type) = catalog_type else {
        return Field::new(name, DataType::Null, true);
    };
    match RedshiftType::from_format_type(catalog_type) {
        RedshiftType::Varbyte | RedshiftType::Geometry => Field::new(name, DataType::Utf8, true)
            .with_metadata(HashMap::from([(
                META_REDSHIFT_TYPE.to_string(),
                catalog_type.to_string(),
            )])),
        other => other.arrow_field(&name, true, catalog_type),
    }
}

/// What a parameter's described type makes of the value bound to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    /// Not described, `unknown`, text-like, or a type cast nowhere here (SUPER, VARBYTE,
    /// INTERVAL, ...): the value as its own kind, a string as an untyped literal whose type
    /// comes from where it is used.
    Untyped,
    /// SMALLINT, INTEGER or BIGINT: an integer in its range.
    Integer {
        /// The SQL type.
        name: &'static str,
        /// Smallest value.
        min: i128,
        /// Largest value.
        max: i128,
    },
    /// NUMERIC without precision (what the protocol describes): the exact number, cast to the
    /// DECIMAL(p, s) it needs (a bare NUMERIC is NUMERIC(18, 0) on Redshift: it would round).
    Numeric,
    /// DECIMAL(p, s).
    Decimal {
        /// Precision.
        precision: u8,
        /// Scale.
        scale: i8,
    },
    /// REAL or DOUBLE PRECISION: a finite number.
    Float(&'static str),
    /// BOOLEAN.
    Boolean,
    /// DATE, TIMESTAMP or TIMESTAMPTZ: a date, a timestamp, or a string Redshift reads as one.
    DateTime(&'static str),
    /// TIME or TIMETZ: a string Redshift reads as one.
    Time(&'static str),
}

impl Target {
    /// The target of a parameter of catalog type `catalog_type` (`None`: not described).
    pub(super) fn of(catalog_type: Option<&str>) -> Self {
        let Some(catalog_type) = catalog_type else {
            return Self::Untyped;
        };
        let integer = |name, min: i64, max: i64| Self::Integer {
            name,
            min: min.into(),
            max: max.into(),
        };
        match RedshiftType::from_format_type(catalog_type) {
            RedshiftType::SmallInt => integer("SMALLINT", i16::MIN.into(), i16::MAX.into()),
            RedshiftType::Integer => integer("INTEGER", i32::MIN.into(), i32::MAX.into()),
            RedshiftType::BigInt => integer("BIGINT", i64::MIN, i64::MAX),
            RedshiftType::Decimal { precision, scale } => Self::Decimal { precision, scale },
            RedshiftType::Real => Self::Float("REAL"),
            RedshiftType::Double => Self::Float("DOUBLE PRECISION"),
            RedshiftType::Boolean => Self::Boolean,
            RedshiftType::Date => Self::DateTime("DATE"),
            RedshiftType::Timestamp => Self::DateTime("TIMESTAMP"),
            RedshiftType::TimestampTz => Self::DateTime("TIMESTAMPTZ"),
            RedshiftType::Time => Self::Time("TIME"),
            RedshiftType::TimeTz => Self::Time("TIMETZ"),
            RedshiftType::Other(name)
                if matches!(name.trim().to_ascii_lowercase().as_str(), "numeric" | "decimal") =>
            {
                Self::Numeric
            }
            RedshiftType::Char
            | RedshiftType::Varchar
            | RedshiftType::Varbyte
            | RedshiftType::Super
            | RedshiftType::Geometry
            | RedshiftType::HllSketch
            | RedshiftType::Other(_) => Self::Untyped,
        }
    }

    /// How error messages name the type.
    fn describe(&self) -> String {
        match self {
            Self::Untyped => "of any type".into(),
            Self::Integer { name, .. } | Self::Float(name) => name.to_string(),
            Self::DateTime(name) | Self::Time(name) => name.to_string(),
            Self::Numeric => "NUMERIC".into(),
            Self::Decimal { precision, scale } => format!("DECIMAL({precision}, {scale})"),
            Self::Boolean => "BOOLEAN".into(),
        }
    }
}

/// Row 0 of `array` as a typed value.
pub(super) fn bound_value(array: &ArrayRef, name: &str) -> Result<BoundValue, ServiceError> {
    let value = |kind: Kind, text: String| BoundValue {
        kind: kind as i32,
        text,
        precision: 0,
        scale: 0,
    };
    if array.is_null(0) {
        return Ok(value(Kind::Null, String::new()));
    }
    let formatted = || -> Result<String, ServiceError> {
        Ok(
            ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default())?
                .value(0)
                .to_string(),
        )
    };
    let float = |v: f64| -> Result<BoundValue, ServiceError> {
        if v.is_finite() {
            Ok(value(Kind::Float, v.to_string()))
        } else {
            Err(bad(format!(
                "parameter {name}: {v} cannot be bound (Redshift has no NaN or infinity)"
            )))
        }
    };
    let int = |text: String| value(Kind::Int, text);
    Ok(match array.data_type() {
        DataType::Null => value(Kind::Null, String::new()),
        DataType::Boolean => value(Kind::Bool, array.as_boolean().value(0).to_string()),
        DataType::Int8 => int(array.as_primitive::<Int8Type>().value(0).to_string()),
        DataType::Int16 => int(array.as_primitive::<Int16Type>().value(0).to_string()),
        DataType::Int32 => int(array.as_primitive::<Int32Type>().value(0).to_string()),
        DataType::Int64 => int(array.as_primitive::<Int64Type>().value(0).to_string()),
        DataType::UInt8 => int(array.as_primitive::<UInt8Type>().value(0).to_string()),
        DataType::UInt16 => int(array.as_primitive::<UInt16Type>().value(0).to_string()),
        DataType::UInt32 => int(array.as_primitive::<UInt32Type>().value(0).to_string()),
        DataType::UInt64 => int(array.as_primitive::<UInt64Type>().value(0).to_string()),
        DataType::Float32 => float(f64::from(array.as_primitive::<Float32Type>().value(0)))?,
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(0))?,
        DataType::Decimal128(precision, scale) | DataType::Decimal256(precision, scale) => {
            BoundValue {
                kind: Kind::Decimal as i32,
                text: formatted()?,
                precision: u32::from(*precision),
                scale: i32::from(*scale),
            }
        }
        DataType::Utf8 => value(Kind::Text, array.as_string::<i32>().value(0).to_string()),
        DataType::LargeUtf8 => value(Kind::Text, array.as_string::<i64>().value(0).to_string()),
        DataType::Utf8View => value(Kind::Text, array.as_string_view().value(0).to_string()),
        DataType::Date32 | DataType::Date64 => value(Kind::Date, formatted()?),
        DataType::Timestamp(_, None) => value(Kind::Timestamp, formatted()?),
        DataType::Timestamp(_, Some(_)) => value(Kind::TimestampTz, formatted()?),
        // A time of day is its ISO text (`10:00:00.000001`): Redshift reads it as a TIME
        // parameter, or as the type of where it is used.
        DataType::Time32(_) | DataType::Time64(_) => value(Kind::Text, formatted()?),
        other => {
            return Err(bad(format!(
                "parameter {name}: Arrow type {other} cannot be bound (bind integers, floats, \
                 decimals, booleans, strings, dates, times or timestamps)"
            )));
        }
    })
}

fn kind_of(value: &BoundValue) -> Kind {
    Kind::try_from(value.kind).unwrap_or(Kind::Unspecified)
}

fn quote_error(e: QuoteError) -> ServiceError {
    bad(format!("a bound value cannot be quoted: {e}"))
}

/// A bound value as SQL by its own kind, only through the quoting module: a number as digits, a
/// date or timestamp as a quoted literal cast to its type, a string as an untyped literal (its
/// type comes from where it is used, as a text parameter's does on PostgreSQL; a CAST to VARCHAR
/// would be VARCHAR(256) on Redshift).
pub(super) fn value_sql(value: &BoundValue) -> Result<Sql, ServiceError> {
    let literal = || Sql::literal(&value.text).map_err(quote_error);
    Ok(match kind_of(value) {
        Kind::Null => Sql::from("NULL"),
        Kind::Bool if value.text == "true" => Sql::from("TRUE"),
        Kind::Bool => Sql::from("FALSE"),
        Kind::Int => Sql::int(
            value
                .text
                .parse::<i128>()
                .map_err(|e| bad(format!("a bound integer is invalid: {e}")))?,
        ),
        Kind::Float => sql!(
            "CAST(",
            Sql::decimal(&value.text).map_err(quote_error)?,
            " AS DOUBLE PRECISION)"
        ),
        Kind::Decimal => sql!(
            "CAST(",
            Sql::decimal(&value.text).map_err(quote_error)?,
            " AS DECIMAL(",
            Sql::int(value.precision),
            ", ",
            Sql::int(value.scale.max(0)),
            "))"
        ),
        Kind::Text => literal()?,
        Kind::Date => sql!("CAST(", literal()?, " AS DATE)"),
        Kind::Timestamp => sql!("CAST(", literal()?, " AS TIMESTAMP)"),
        Kind::TimestampTz => sql!("CAST(", literal()?, " AS TIMESTAMPTZ)"),
        Kind::Unspecified => return Err(bad("a bound value has no kind".into())),
    })
}

/// How error messages name a value's kind.
fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Null => "NULL",
        Kind::Int => "an integer",
        Kind::Decimal => "a decimal",
        Kind::Float => "a float",
        Kind::Text => "a string",
        Kind::Date => "a date",
        Kind::Timestamp | Kind::TimestampTz => "a timestamp",
        Kind::Bool => "a boolean",
        Kind::Unspecified => "a value without a kind",
    }
}

/// A plain decimal number (`-12.50`, `+3`, `.5`, surrounding blanks) as digits the quoting module
/// accepts, with the precision and scale it needs; `None` when `text` is not one.
fn plain_decimal(text: &str) -> Option<(Sql, u32, u32)> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let int = if int.is_empty() { "0" } else { int };
    let normalized = format!(
        "{}{int}{}{frac}",
        if negative { "-" } else { "" },
        if frac.is_empty() { "" } else { "." }
    );
    let sql = Sql::decimal(&normalized).ok()?;
    let scale = frac.len() as u32;
    let significant = int.trim_start_matches('0').len() as u32;
    Some((sql, (significant + scale).max(1), scale))
}

/// `value`, bound to parameter `$n` of type `target`, as SQL cast to that type.
pub(super) fn typed_sql(value: &BoundValue, target: Target, n: usize) -> Result<Sql, ServiceError> {
    let kind = kind_of(value);
    let refuse = |why: String| bad(format!("parameter ${n} is {}: {why}", target.describe()));
    let mismatch = || refuse(format!("{} cannot be bound to it", kind_name(kind)));
    let number_kind = matches!(kind, Kind::Int | Kind::Decimal | Kind::Float | Kind::Text);
    let cast = |inner: Sql, name: &'static str| sql!("CAST(", inner, " AS ", name, ")");
    let decimal = |inner: Sql, precision: u32, scale: u32| {
        sql!(
            "CAST(",
            inner,
            " AS DECIMAL(",
            Sql::int(precision),
            ", ",
            Sql::int(scale),
            "))"
        )
    };
    if kind == Kind::Null {
        // A typed NULL keeps the described result types (a bare NUMERIC would be (18, 0)).
        return Ok(match target {
            Target::Untyped | Target::Numeric => Sql::from("NULL"),
            Target::Integer { name, .. }
            | Target::Float(name)
            | Target::DateTime(name)
            | Target::Time(name) => cast(Sql::from("NULL"), name),
            Target::Boolean => cast(Sql::from("NULL"), "BOOLEAN"),
            Target::Decimal { precision, scale } => decimal(
                Sql::from("NULL"),
                precision.into(),
                scale.max(0).unsigned_abs().into(),
            ),
        });
    }
    Ok(match target {
        Target::Untyped => value_sql(value)?,
        Target::Decimal { .. } | Target::Numeric | Target::Integer { .. } | Target::Float(_)
            if !number_kind =>
        {
            return Err(mismatch());
        }
        Target::Integer { name, min, max } => {
            let text = value.text.trim();
            let (int, frac) = text.split_once('.').unwrap_or((text, ""));
            let unsigned = int.strip_prefix(['-', '+']).unwrap_or(int);
            if unsigned.is_empty()
                || !unsigned.bytes().all(|b| b.is_ascii_digit())
                || !frac.bytes().all(|b| b == b'0')
            {
                return Err(refuse(format!("{:?} is not an integer", value.text)));
            }
            match int.parse::<i128>() {
                Ok(v) if (min..=max).contains(&v) => cast(Sql::int(v), name),
                _ => return Err(refuse(format!("{} is out of its range", value.text))),
            }
        }
        Target::Numeric | Target::Decimal { .. } => {
            let (digits, precision, scale) = plain_decimal(&value.text).ok_or_else(|| {
                refuse(format!(
                    "{:?} is not a plain decimal number (digits, an optional sign and point)",
                    value.text
                ))
            })?;
            match target {
                Target::Decimal { precision, scale } => decimal(
                    digits,
                    precision.into(),
                    scale.max(0).unsigned_abs().into(),
                ),
                // A decimal keeps the precision and scale it was sent with.
                _ if kind == Kind::Decimal => value_sql(value)?,
                _ if precision > u32::from(MAX_DECIMAL_PRECISION) => {
                    return Err(refuse(format!(
                        "{} has more than the {MAX_DECIMAL_PRECISION} digits a Redshift DECIMAL \
                         holds",
                        value.text
                    )));
                }
                _ => decimal(digits, precision, scale),
            }
        }
        Target::Float(name) => {
            let number = match kind {
                Kind::Text => match value.text.trim().parse::<f64>() {
                    Ok(v) if v.is_finite() => v.to_string(),
                    _ => {
                        return Err(refuse(format!(
                            "{:?} is not a finite number",
                            value.text
                        )));
                    }
                },
                _ => value.text.clone(),
            };
            cast(Sql::decimal(&number).map_err(quote_error)?, name)
        }
        Target::Boolean => {
            let word = value.text.trim().to_ascii_lowercase();
            match (kind, word.as_str()) {
                (Kind::Bool, "true") => Sql::from("TRUE"),
                (Kind::Bool, _) => Sql::from("FALSE"),
                (Kind::Text, "t" | "true" | "y" | "yes" | "on" | "1") => Sql::from("TRUE"),
                (Kind::Text, "f" | "false" | "n" | "no" | "off" | "0") => Sql::from("FALSE"),
                (Kind::Text, _) => {
                    return Err(refuse(format!("{:?} is not a boolean", value.text)));
                }
                _ => return Err(mismatch()),
            }
        }
        Target::DateTime(name) => match kind {
            Kind::Text => cast(Sql::literal(&value.text).map_err(quote_error)?, name),
            Kind::Date if name == "DATE" => value_sql(value)?,
            Kind::Timestamp if name == "TIMESTAMP" => value_sql(value)?,
            Kind::TimestampTz if name == "TIMESTAMPTZ" => value_sql(value)?,
            // Redshift converts between them (a TIMESTAMPTZ in the session's time zone).
            Kind::Date | Kind::Timestamp | Kind::TimestampTz => cast(value_sql(value)?, name),
            _ => return Err(mismatch()),
        },
        Target::Time(name) => match kind {
            Kind::Text => cast(Sql::literal(&value.text).map_err(quote_error)?, name),
            _ => return Err(mismatch()),
        },
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use arrow::array::{
        BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array, Int64Array,
        NullArray, StringArray, Time64MicrosecondArray, TimestampMicrosecondArray,
    };
    use arrow::datatypes::TimeUnit;

    fn render(array: ArrayRef) -> Result<String, ServiceError> {
        Ok(value_sql(&bound_value(&array, "p")?)?.to_string())
    }

    fn typed(array: ArrayRef, catalog_type: &str) -> Result<String, String> {
        let value = bound_value(&array, "p").map_err(|e| e.to_string())?;
        typed_sql(&value, Target::of(Some(catalog_type)), 1)
            .map(|sql| sql.to_string())
            .map_err(|e| e.to_string())
    }

    fn text(value: &str) -> ArrayRef {
        Arc::new(StringArray::from(vec![value]))
    }

    fn int(value: i64) -> ArrayRef {
        Arc::new(Int64Array::from(vec![value]))
    }

    fn decimal(value: i128, precision: u8, scale: i8) -> ArrayRef {
        Arc::new(
            Decimal128Array::from(vec![value])
                .with_precision_and_scale(precision, scale)
                .unwrap(),
        )
    }

    #[test]
    fn values_become_typed_literals() {
        let cases: Vec<(ArrayRef, &str)> = vec![
            (int(-5), "-5"),
            (Arc::new(BooleanArray::from(vec![true])), "TRUE"),
            (Arc::new(NullArray::new(1)), "NULL"),
            (Arc::new(Int64Array::from(vec![None])), "NULL"),
            (text("x'; DROP TABLE t; --\\"), r"'x''; DROP TABLE t; --\\'"),
            (
                Arc::new(Float64Array::from(vec![-0.25])),
                "CAST(-0.25 AS DOUBLE PRECISION)",
            ),
            (decimal(-1050, 10, 2), "CAST(-10.50 AS DECIMAL(10, 2))"),
            (
                Arc::new(Date32Array::from(vec![19723])),
                "CAST('2024-01-01' AS DATE)",
            ),
            (
                Arc::new(TimestampMicrosecondArray::from(vec![1_704_103_200_000_001])),
                "CAST('2024-01-01T10:00:00.000001' AS TIMESTAMP)",
            ),
            (
                Arc::new(Time64MicrosecondArray::from(vec![36_000_000_001])),
                "'10:00:00.000001'",
            ),
        ];
        for (array, expected) in cases {
            assert_eq!(render(array).unwrap(), expected);
        }
        assert!(render(Arc::new(Float64Array::from(vec![f64::NAN]))).is_err());
        assert!(render(text("a\0b")).is_err());
        assert!(
            render(Arc::new(arrow::array::BinaryArray::from(vec![
                b"x".as_slice()
            ])))
            .is_err()
        );
    }

    #[test]
    fn values_are_cast_to_their_parameter_type() {
        let tz = |us: i64| -> ArrayRef {
            Arc::new(TimestampMicrosecondArray::from(vec![us]).with_timezone("UTC"))
        };
        let cases: Vec<(ArrayRef, &str, &str)> = vec![
            (int(5), "smallint", "CAST(5 AS SMALLINT)"),
            (text(" -7 "), "integer", "CAST(-7 AS INTEGER)"),
            (decimal(1000, 10, 2), "bigint", "CAST(10 AS BIGINT)"),
            (int(10), "numeric", "CAST(10 AS DECIMAL(2, 0))"),
            (text("-0012.340"), "numeric", "CAST(-0012.340 AS DECIMAL(5, 3))"),
            (text(".5"), "numeric", "CAST(0.5 AS DECIMAL(1, 1))"),
            (decimal(-1050, 10, 2), "numeric", "CAST(-10.50 AS DECIMAL(10, 2))"),
            (
                Arc::new(Float64Array::from(vec![2.5])),
                "numeric",
                "CAST(2.5 AS DECIMAL(2, 1))",
            ),
            (text("1.005"), "numeric(10,2)", "CAST(1.005 AS DECIMAL(10, 2))"),
            (
                Arc::new(Float32Array::from(vec![0.5])),
                "real",
                "CAST(0.5 AS REAL)",
            ),
            (text("1e3"), "double precision", "CAST(1000 AS DOUBLE PRECISION)"),
            (int(3), "double precision", "CAST(3 AS DOUBLE PRECISION)"),
            (text("Yes"), "boolean", "TRUE"),
            (
                text("2024-01-01"),
                "date",
                "CAST('2024-01-01' AS DATE)",
            ),
            (
                Arc::new(Date32Array::from(vec![19723])),
                "date",
                "CAST('2024-01-01' AS DATE)",
            ),
            (
                Arc::new(Date32Array::from(vec![19723])),
                "timestamp without time zone",
                "CAST(CAST('2024-01-01' AS DATE) AS TIMESTAMP)",
            ),
            (
                tz(0),
                "timestamp without time zone",
                "CAST(CAST('1970-01-01T00:00:00Z' AS TIMESTAMPTZ) AS TIMESTAMP)",
            ),
            (
                text("x'; DROP TABLE t; --"),
                "timestamp with time zone",
                "CAST('x''; DROP TABLE t; --' AS TIMESTAMPTZ)",
            ),
            (
                Arc::new(Time64MicrosecondArray::from(vec![36_000_000_000])),
                "time without time zone",
                "CAST('10:00:00' AS TIME)",
            ),
            (Arc::new(NullArray::new(1)), "date", "CAST(NULL AS DATE)"),
            (Arc::new(NullArray::new(1)), "numeric", "NULL"),
            // Strings keep their own type where the parameter is text, unknown or uncast.
            (text("it's"), "character varying", "'it''s'"),
            (text("x"), "unknown", "'x'"),
            (int(5), "character varying", "5"),
            (text("{}"), "super", "'{}'"),
        ];
        for (array, catalog_type, expected) in cases {
            assert_eq!(
                typed(array, catalog_type).as_deref(),
                Ok(expected),
                "{catalog_type}"
            );
        }
    }

    #[test]
    fn values_that_cannot_be_their_parameter_type_are_refused() {
        let cases: Vec<(ArrayRef, &str, &str)> = vec![
            (int(40_000), "smallint", "out of its range"),
            (text("1.5"), "integer", "is not an integer"),
            (text("1; DROP TABLE t"), "integer", "is not an integer"),
            (text(""), "bigint", "is not an integer"),
            (
                Arc::new(BooleanArray::from(vec![true])),
                "integer",
                "a boolean cannot be bound",
            ),
            (text("NaN"), "numeric", "not a plain decimal number"),
            (text("1e5"), "numeric", "not a plain decimal number"),
            (text(&"9".repeat(39)), "numeric", "more than the 38 digits"),
            (text("inf"), "real", "not a finite number"),
            (text("maybe"), "boolean", "not a boolean"),
            (int(1), "boolean", "an integer cannot be bound"),
            (int(20240101), "date", "an integer cannot be bound"),
            (
                Arc::new(Date32Array::from(vec![1])),
                "time without time zone",
                "a date cannot be bound",
            ),
        ];
        for (array, catalog_type, expected) in cases {
            let error = typed(array, catalog_type).unwrap_err();
            assert!(error.contains(expected), "{catalog_type}: {error}");
            assert!(error.contains("parameter $1 is"), "{error}");
        }
    }

    #[test]
    fn parameter_fields_follow_the_type_table() {
        let field = |catalog_type| parameter_field(2, catalog_type);
        assert_eq!(field(None), Field::new("$2", DataType::Null, true));
        let cases = [
            ("integer", DataType::Int32),
            ("bigint", DataType::Int64),
            ("date", DataType::Date32),
            (
                "timestamp without time zone",
                DataType::Timestamp(TimeUnit::Microsecond, None),
            ),
            (
                "timestamp with time zone",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ),
            ("numeric(10,2)", DataType::Decimal128(10, 2)),
            ("numeric", DataType::Utf8),
            ("character varying", DataType::Utf8),
            ("unknown", DataType::Utf8),
            ("varbyte", DataType::Utf8),
            ("boolean", DataType::Boolean),
        ];
        for (catalog_type, arrow_type) in cases {
            let f = field(Some(catalog_type));
            assert_eq!(f.name(), "$2");
            assert_eq!(f.data_type(), &arrow_type, "{catalog_type}");
            assert!(f.is_nullable());
            assert_eq!(
                f.metadata().get(META_REDSHIFT_TYPE).map(String::as_str),
                Some(catalog_type)
            );
        }
    }
}
