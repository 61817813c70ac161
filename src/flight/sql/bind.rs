//! A prepared statement's parameters: their Arrow fields (the parameter schema) and the values
//! DoPut bound as SQL.
//!
//! DoPut keeps each value as a typed [`BoundValue`], whatever Arrow type the client sent (ADBC's
//! Python DB-API sends what pyarrow infers from the Python values, not the parameter schema's
//! types). When the statement runs, each value becomes SQL only through
//! `crate::sql`, cast to its parameter's type as Redshift describes it ([`Target`]): a string
//! bound to a DATE parameter is `CAST('2024-01-01' AS DATE)`, an integer bound to a SMALLINT one
//! `CAST(5 AS SMALLINT)`, so comparisons and result types stay what the prepared statement
//! described. A value that cannot be its parameter's type is INVALID_ARGUMENT.
//!
//! Imports: the handle's value model ([`super::handle`]), `crate::sql`, `crate::catalog::types`.

use std::collections::HashMap;

use arrow::datatypes::{DataType, Field};

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
    /// SMALLINT, INTEGER or BIGINT (the SQL type and its bits): an integer in its range.
    Integer(&'static str, u32),
    /// NUMERIC without precision (what the protocol describes): the exact number, cast to the
    /// DECIMAL(p, s) it needs (a bare NUMERIC is NUMERIC(18, 0) on Redshift: it would round).
    Numeric,
    /// DECIMAL(precision, scale).
    Decimal(u8, i8),
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
        match RedshiftType::from_format_type(catalog_type) {
            RedshiftType::SmallInt => Self::Integer("SMALLINT", 16),
            RedshiftType::Integer => Self::Integer("INTEGER", 32),
            RedshiftType::BigInt => Self::Integer("BIGINT", 64),
            RedshiftType::Decimal { precision, scale } => Self::Decimal(precision, scale),
            RedshiftType::Real => Self::Float("REAL"),
            RedshiftType::Double => Self::Float("DOUBLE PRECISION"),
            RedshiftType::Boolean => Self::Boolean,
            RedshiftType::Date => Self::DateTime("DATE"),
            RedshiftType::Timestamp => Self::DateTime("TIMESTAMP"),
            RedshiftType::TimestampTz => Self::DateTime("TIMESTAMPTZ"),
            RedshiftType::Time => Self::Time("TIME"),
            RedshiftType::TimeTz => Self::Time("TIMETZ"),
            RedshiftType::Other(name) if name.eq_ignore_ascii_case("numeric") => Self::Numeric,
            RedshiftType::Char
            | RedshiftType::Varchar
            | RedshiftType::Varbyte
            | RedshiftType::Super
            | RedshiftType::Geometry
            | RedshiftType::HllSketch
            | RedshiftType::Nested(_)
            | RedshiftType::Other(_) => Self::Untyped,
        }
    }

    /// How error messages name the type.
    fn describe(&self) -> String {
        match self {
            Self::Integer(name, _) | Self::Float(name) => name.to_string(),
            Self::DateTime(name) | Self::Time(name) => name.to_string(),
            Self::Decimal(precision, scale) => format!("DECIMAL({precision}, {scale})"),
            Self::Numeric => "NUMERIC".into(),
            Self::Boolean => "BOOLEAN".into(),
            Self::Untyped => "of any type".into(),
        }
    }
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
    let decimal = |inner: Sql, p: u32, s: u32| {
        sql!(
            "CAST(",
            inner,
            " AS DECIMAL(",
            Sql::int(p),
            ", ",
            Sql::int(s),
            "))"
        )
    };
    if kind == Kind::Null {
        // A typed NULL keeps the described result types (a bare NUMERIC would be (18, 0)).
        return Ok(match target {
            Target::Untyped | Target::Numeric => Sql::from("NULL"),
            Target::Integer(name, _)
            | Target::Float(name)
            | Target::DateTime(name)
            | Target::Time(name) => cast(Sql::from("NULL"), name),
            Target::Boolean => cast(Sql::from("NULL"), "BOOLEAN"),
            Target::Decimal(p, s) => decimal(Sql::from("NULL"), p.into(), s.unsigned_abs().into()),
        });
    }
    Ok(match target {
        Target::Untyped => value_sql(value)?,
        Target::Decimal(..) | Target::Numeric | Target::Integer(..) | Target::Float(_)
            if !number_kind =>
        {
            return Err(mismatch());
        }
        Target::Integer(name, bits) => {
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
                Ok(v) if (-(1 << (bits - 1))..1 << (bits - 1)).contains(&v) => {
                    cast(Sql::int(v), name)
                }
                _ => return Err(refuse(format!("{} is out of its range", value.text))),
            }
        }
        Target::Numeric | Target::Decimal(..) => {
            let (digits, precision, scale) = plain_decimal(&value.text).ok_or_else(|| {
                refuse(format!(
                    "{:?} is not a plain decimal number (digits, an optional sign and point)",
                    value.text
                ))
            })?;
            match target {
                Target::Decimal(p, s) => decimal(digits, p.into(), s.unsigned_abs().into()),
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
                        return Err(refuse(format!("{:?} is not a finite number", value.text)));
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
    use super::*;
    use arrow::datatypes::TimeUnit;

    fn v(kind: Kind, text: &str) -> BoundValue {
        BoundValue {
            kind: kind as i32,
            text: text.into(),
            precision: 0,
            scale: 0,
        }
    }

    fn decimal(text: &str, precision: u32, scale: i32) -> BoundValue {
        BoundValue {
            precision,
            scale,
            ..v(Kind::Decimal, text)
        }
    }

    fn typed(value: BoundValue, catalog_type: &str) -> Result<String, String> {
        typed_sql(&value, Target::of(Some(catalog_type)), 1)
            .map(|sql| sql.to_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn values_are_cast_to_their_parameter_type() {
        use Kind::*;
        let cases = [
            (v(Int, "5"), "smallint", "CAST(5 AS SMALLINT)"),
            (v(Text, " -7 "), "integer", "CAST(-7 AS INTEGER)"),
            (decimal("10.00", 10, 2), "bigint", "CAST(10 AS BIGINT)"),
            (v(Float, "5"), "bigint", "CAST(5 AS BIGINT)"),
            (v(Int, "10"), "numeric", "CAST(10 AS DECIMAL(2, 0))"),
            (
                v(Text, "-0012.340"),
                "numeric",
                "CAST(-0012.340 AS DECIMAL(5, 3))",
            ),
            (v(Text, ".5"), "numeric", "CAST(0.5 AS DECIMAL(1, 1))"),
            (
                decimal("-10.50", 10, 2),
                "numeric",
                "CAST(-10.50 AS DECIMAL(10, 2))",
            ),
            (v(Float, "2.5"), "numeric", "CAST(2.5 AS DECIMAL(2, 1))"),
            (
                v(Text, "1.005"),
                "numeric(10,2)",
                "CAST(1.005 AS DECIMAL(10, 2))",
            ),
            (v(Float, "0.5"), "real", "CAST(0.5 AS REAL)"),
            (v(Text, "1e3"), "float8", "CAST(1000 AS DOUBLE PRECISION)"),
            (v(Int, "3"), "float8", "CAST(3 AS DOUBLE PRECISION)"),
            (v(Text, "Yes"), "boolean", "TRUE"),
            (v(Bool, "false"), "boolean", "FALSE"),
            (v(Text, "2024-01-01"), "date", "CAST('2024-01-01' AS DATE)"),
            (v(Date, "2024-01-01"), "date", "CAST('2024-01-01' AS DATE)"),
            (
                v(Date, "2024-01-01"),
                "timestamp",
                "CAST(CAST('2024-01-01' AS DATE) AS TIMESTAMP)",
            ),
            (
                v(TimestampTz, "1970-01-01T00:00:00+00:00"),
                "timestamp",
                "CAST(CAST('1970-01-01T00:00:00+00:00' AS TIMESTAMPTZ) AS TIMESTAMP)",
            ),
            (
                v(Text, "x'; --"),
                "timestamptz",
                "CAST('x''; --' AS TIMESTAMPTZ)",
            ),
            (v(Text, "10:00:00"), "time", "CAST('10:00:00' AS TIME)"),
            (v(Null, ""), "date", "CAST(NULL AS DATE)"),
            (v(Null, ""), "numeric(5,1)", "CAST(NULL AS DECIMAL(5, 1))"),
            (v(Null, ""), "numeric", "NULL"),
            // Values keep their own type where the parameter is text, unknown or uncast.
            (v(Text, "it's"), "character varying", "'it''s'"),
            (v(Text, "x"), "unknown", "'x'"),
            (v(Int, "5"), "character varying", "5"),
            (v(Text, "{}"), "super", "'{}'"),
        ];
        for (value, catalog_type, expected) in cases {
            let got = typed(value, catalog_type);
            assert_eq!(got.as_deref(), Ok(expected), "{catalog_type}");
        }
    }

    #[test]
    fn values_that_cannot_be_their_parameter_type_are_refused() {
        use Kind::*;
        let nines = "9".repeat(39);
        let cases = [
            (v(Int, "40000"), "smallint", "out of its range"),
            (v(Int, "9223372036854775808"), "bigint", "out of its range"),
            (v(Text, "1.5"), "integer", "is not an integer"),
            (v(Text, "1; DROP TABLE t"), "integer", "is not an integer"),
            (v(Text, ""), "bigint", "is not an integer"),
            (v(Bool, "true"), "integer", "a boolean cannot be bound"),
            (v(Text, "NaN"), "numeric", "not a plain decimal number"),
            (v(Text, "1e5"), "numeric", "not a plain decimal number"),
            (v(Text, &nines), "numeric", "more than the 38 digits"),
            (v(Text, "inf"), "real", "not a finite number"),
            (v(Text, "maybe"), "boolean", "not a boolean"),
            (v(Int, "1"), "boolean", "an integer cannot be bound"),
            (v(Int, "20240101"), "date", "an integer cannot be bound"),
            (v(Date, "2024-01-01"), "time", "a date cannot be bound"),
            (v(Unspecified, ""), "date", "a value without a kind"),
        ];
        for (value, catalog_type, expected) in cases {
            let error = typed(value, catalog_type).unwrap_err();
            assert!(error.contains(expected), "{catalog_type}: {error}");
            assert!(error.contains("parameter $1 is"), "{error}");
        }
    }

    #[test]
    fn parameter_fields_follow_the_type_table() {
        assert_eq!(
            parameter_field(2, None),
            Field::new("$2", DataType::Null, true)
        );
        let utc = Some("UTC".into());
        let cases = [
            ("integer", DataType::Int32),
            ("bigint", DataType::Int64),
            ("date", DataType::Date32),
            (
                "timestamp",
                DataType::Timestamp(TimeUnit::Microsecond, None),
            ),
            (
                "timestamptz",
                DataType::Timestamp(TimeUnit::Microsecond, utc),
            ),
            ("numeric(10,2)", DataType::Decimal128(10, 2)),
            ("numeric", DataType::Utf8),
            ("character varying", DataType::Utf8),
            ("unknown", DataType::Utf8),
            ("varbyte", DataType::Utf8),
            ("boolean", DataType::Boolean),
        ];
        for (catalog_type, arrow_type) in cases {
            let field = parameter_field(2, Some(catalog_type));
            assert_eq!(field.name(), "$2");
            assert_eq!(field.data_type(), &arrow_type, "{catalog_type}");
            assert!(field.is_nullable());
            let recorded = field.metadata().get(META_REDSHIFT_TYPE);
            assert_eq!(recorded.map(String::as_str), Some(catalog_type));
        }
    }
}
