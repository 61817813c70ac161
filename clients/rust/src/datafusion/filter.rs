//! DataFusion filters -> the command's `where` (one SQL expression the server's validator
//! accepts, see proto-docs/README.md "Row filters"), with an honest verdict per filter:
//!
//! - `Exact`: Redshift evaluates the rendered SQL to the same true/false/NULL as DataFusion
//!   does, so DataFusion drops its own filter. Comparisons, `IN`, `BETWEEN`, `IS [NOT] NULL`
//!   and `NOT` over integer, DECIMAL, DATE, TIMESTAMP[TZ] and BOOLEAN columns and literals, and
//!   `AND`/`OR`/`NOT` of such. Literals are rendered exactly (every decimal digit, microsecond
//!   timestamps as typed literals, dates as `DATE '...'`).
//! - `Inexact`: the server keeps a superset of the rows, DataFusion filters again. String
//!   equality and `IN` on CHAR/VARCHAR (Redshift ignores trailing blanks when comparing strings,
//!   and a column may have a case-insensitive collation), and an `AND` of which only one side
//!   could be pushed.
//! - `Unsupported`: not sent. Floating point (NaN, -0 and REAL rounding differ), string ordering
//!   and `<>` (collations), LIKE, functions, arithmetic, casts that are not plain widenings, and
//!   literals the validator refuses (a backslash, NUL or `''` in a string, years outside
//!   1..9999).
//!
//! Column names are always double-quoted (the validator matches quoted names exactly). Imports
//! external crates only.

use ::datafusion::common::ScalarValue;
use ::datafusion::logical_expr::expr::InList;
use ::datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use chrono::Datelike;

/// The field metadata key holding the Redshift type (`character varying(100)`, ...).
const REDSHIFT_TYPE: &str = "redshift_flight.type";

/// A filter rendered for the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pushed {
    /// The SQL, parenthesised where it combines others.
    pub(crate) sql: String,
    /// Whether the server's result equals DataFusion's (else it is a superset).
    pub(crate) exact: bool,
}

/// What a column's values are, for deciding what can be compared exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Integer(u8),
    Decimal,
    Date,
    Timestamp { utc: bool },
    Boolean,
    Text,
    Other,
}

impl Class {
    fn orderable(self) -> bool {
        matches!(
            self,
            Self::Integer(_) | Self::Decimal | Self::Date | Self::Timestamp { .. } | Self::Boolean
        )
    }
}

fn class_of(field: &Field) -> Class {
    let redshift = field
        .metadata()
        .get(REDSHIFT_TYPE)
        .map(|t| t.to_ascii_lowercase());
    match field.data_type() {
        DataType::Int16 => Class::Integer(5),
        DataType::Int32 => Class::Integer(10),
        DataType::Int64 => Class::Integer(19),
        DataType::Decimal128(_, scale) if *scale >= 0 => Class::Decimal,
        DataType::Date32 => Class::Date,
        DataType::Timestamp(TimeUnit::Microsecond, None) => Class::Timestamp { utc: false },
        DataType::Timestamp(TimeUnit::Microsecond, Some(tz))
            if matches!(tz.as_ref(), "UTC" | "+00:00" | "Z") =>
        {
            Class::Timestamp { utc: true }
        }
        DataType::Boolean => Class::Boolean,
        // Only CHAR/VARCHAR: SUPER, TIMETZ and other types served as text compare otherwise.
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(_, _)
            if redshift.as_deref().is_some_and(|t| {
                t.starts_with("character") || t.starts_with("char") || t == "text"
            }) =>
        {
            Class::Text
        }
        _ => Class::Other,
    }
}

/// `expr` as a column of `schema` (through casts that only widen), with its class.
fn column<'a>(expr: &Expr, schema: &'a Schema) -> Option<(&'a Field, Class)> {
    match expr {
        Expr::Column(column) => {
            let field = schema.field_with_name(&column.name).ok()?;
            Some((field, class_of(field)))
        }
        Expr::Cast(cast) => widening(column(&cast.expr, schema)?, cast.field.data_type()),
        Expr::TryCast(cast) => widening(column(&cast.expr, schema)?, cast.field.data_type()),
        _ => None,
    }
}

fn widening<'a>((field, class): (&'a Field, Class), to: &DataType) -> Option<(&'a Field, Class)> {
    let ok = match (class, to) {
        (Class::Integer(digits), DataType::Int16) => digits <= 5,
        (Class::Integer(digits), DataType::Int32) => digits <= 10,
        (Class::Integer(_), DataType::Int64) => true,
        (Class::Integer(digits), DataType::Decimal128(p, s)) => {
            *s >= 0 && i32::from(*p) - i32::from(*s) >= i32::from(digits)
        }
        (Class::Decimal, DataType::Decimal128(p, s)) => match field.data_type() {
            DataType::Decimal128(p0, s0) => {
                s >= s0 && i32::from(*p) - i32::from(*s) >= i32::from(*p0) - i32::from(*s0)
            }
            _ => false,
        },
        (Class::Timestamp { utc }, DataType::Timestamp(_, tz)) => tz.is_some() == utc,
        (Class::Text, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) => true,
        _ => false,
    };
    ok.then_some((field, class))
}

/// `"name"`, or `None` when the validator would refuse the quoted name.
fn identifier(field: &Field) -> Option<String> {
    let name = field.name();
    (!name.contains('"') && !name.contains('\0')).then(|| format!("\"{name}\""))
}

/// A literal of `value` comparable with a column of `class`, in SQL.
fn literal(value: &ScalarValue, class: Class) -> Option<String> {
    use ScalarValue as V;
    match (class, value) {
        (Class::Integer(_) | Class::Decimal, V::Int8(Some(v))) => Some(v.to_string()),
        (Class::Integer(_) | Class::Decimal, V::Int16(Some(v))) => Some(v.to_string()),
        (Class::Integer(_) | Class::Decimal, V::Int32(Some(v))) => Some(v.to_string()),
        (Class::Integer(_) | Class::Decimal, V::Int64(Some(v))) => Some(v.to_string()),
        (Class::Integer(_) | Class::Decimal, V::UInt8(Some(v))) => Some(v.to_string()),
        (Class::Integer(_) | Class::Decimal, V::UInt16(Some(v))) => Some(v.to_string()),
        (Class::Integer(_) | Class::Decimal, V::UInt32(Some(v))) => Some(v.to_string()),
        (Class::Integer(_) | Class::Decimal, V::UInt64(Some(v))) => Some(v.to_string()),
        (Class::Integer(_) | Class::Decimal, V::Decimal128(Some(v), _, scale)) => {
            decimal(*v, *scale)
        }
        (Class::Date, V::Date32(Some(days))) => {
            let date = arrow::temporal_conversions::date32_to_datetime(*days)?.date();
            (1..=9999)
                .contains(&date.year())
                .then(|| format!("DATE '{}'", date.format("%Y-%m-%d")))
        }
        (Class::Timestamp { utc }, V::TimestampSecond(Some(v), tz)) if tz.is_some() == utc => {
            timestamp(v.checked_mul(1_000_000)?, utc)
        }
        (Class::Timestamp { utc }, V::TimestampMillisecond(Some(v), tz)) if tz.is_some() == utc => {
            timestamp(v.checked_mul(1_000)?, utc)
        }
        (Class::Timestamp { utc }, V::TimestampMicrosecond(Some(v), tz)) if tz.is_some() == utc => {
            timestamp(*v, utc)
        }
        (Class::Timestamp { utc }, V::TimestampNanosecond(Some(v), tz)) if tz.is_some() == utc => {
            (v % 1_000 == 0)
                .then(|| timestamp(v / 1_000, utc))
                .flatten()
        }
        (Class::Boolean, V::Boolean(Some(b))) => Some(b.to_string()),
        (Class::Text, V::Utf8(Some(s)) | V::LargeUtf8(Some(s)) | V::Utf8View(Some(s))) => string(s),
        (_, V::Dictionary(_, inner)) => literal(inner, class),
        _ => None,
    }
}

fn decimal(value: i128, scale: i8) -> Option<String> {
    let scale = usize::try_from(scale).ok()?;
    let digits = value.unsigned_abs().to_string();
    let sign = if value < 0 { "-" } else { "" };
    if scale == 0 {
        return Some(format!("{sign}{digits}"));
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    Some(format!("{sign}{int}.{frac}"))
}

fn timestamp(micros: i64, utc: bool) -> Option<String> {
    let at = arrow::temporal_conversions::timestamp_us_to_datetime(micros)?;
    if !(1..=9999).contains(&at.year()) {
        return None;
    }
    let text = at.format("%Y-%m-%d %H:%M:%S%.6f");
    Some(if utc {
        format!("CAST('{text}+00:00' AS TIMESTAMPTZ)")
    } else {
        format!("CAST('{text}' AS TIMESTAMP)")
    })
}

/// A string literal the validator accepts (no backslash, NUL, or two quotes in a row).
fn string(s: &str) -> Option<String> {
    (!s.contains(['\\', '\0']) && !s.contains("''")).then(|| format!("'{}'", s.replace('\'', "''")))
}

fn literal_value(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(value, _) if !value.is_null() => Some(value),
        _ => None,
    }
}

/// `expr` for the server, or `None` when it cannot be sent.
pub(crate) fn translate(expr: &Expr, schema: &Schema) -> Option<Pushed> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And => {
                match (translate(left, schema), translate(right, schema)) {
                    (Some(l), Some(r)) => Some(Pushed {
                        sql: format!("({} AND {})", l.sql, r.sql),
                        exact: l.exact && r.exact,
                    }),
                    // A AND B keeps fewer rows than A: the server's superset is still right.
                    (Some(one), None) | (None, Some(one)) => Some(Pushed {
                        exact: false,
                        ..one
                    }),
                    (None, None) => None,
                }
            }
            Operator::Or => {
                let (l, r) = (translate(left, schema)?, translate(right, schema)?);
                Some(Pushed {
                    sql: format!("({} OR {})", l.sql, r.sql),
                    exact: l.exact && r.exact,
                })
            }
            Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq => comparison(left, *op, right, schema),
            _ => None,
        },
        // NOT flips a superset into a subset: only exact operands.
        Expr::Not(inner) => {
            let inner = translate(inner, schema).filter(|p| p.exact)?;
            Some(Pushed {
                sql: format!("(NOT {})", inner.sql),
                exact: true,
            })
        }
        Expr::IsNull(inner) | Expr::IsNotNull(inner) => {
            let (field, _) = column(inner, schema)?;
            let test = if matches!(expr, Expr::IsNull(_)) {
                "IS NULL"
            } else {
                "IS NOT NULL"
            };
            Some(Pushed {
                sql: format!("({} {test})", identifier(field)?),
                exact: true,
            })
        }
        Expr::Column(_) => {
            let (field, class) = column(expr, schema)?;
            (class == Class::Boolean).then_some(Pushed {
                sql: identifier(field)?,
                exact: true,
            })
        }
        Expr::Between(Between {
            expr,
            negated,
            low,
            high,
        }) => {
            let (field, class) = column(expr, schema)?;
            if !class.orderable() {
                return None;
            }
            let low = literal(literal_value(low)?, class)?;
            let high = literal(literal_value(high)?, class)?;
            let not = if *negated { "NOT " } else { "" };
            Some(Pushed {
                sql: format!("({} {not}BETWEEN {low} AND {high})", identifier(field)?),
                exact: true,
            })
        }
        Expr::InList(InList {
            expr,
            list,
            negated,
        }) => {
            let (field, class) = column(expr, schema)?;
            // NOT IN on strings would keep fewer rows than DataFusion (trailing blanks).
            let exact = class.orderable();
            if list.is_empty() || class == Class::Other || (*negated && !exact) {
                return None;
            }
            let values = list
                .iter()
                .map(|e| literal(literal_value(e)?, class))
                .collect::<Option<Vec<_>>>()?;
            let not = if *negated { "NOT " } else { "" };
            Some(Pushed {
                sql: format!("({} {not}IN ({}))", identifier(field)?, values.join(", ")),
                exact,
            })
        }
        _ => None,
    }
}

fn flip(op: Operator) -> Operator {
    match op {
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        other => other,
    }
}

fn comparison(left: &Expr, op: Operator, right: &Expr, schema: &Schema) -> Option<Pushed> {
    let symbol = match op {
        Operator::Eq => "=",
        Operator::NotEq => "<>",
        Operator::Lt => "<",
        Operator::LtEq => "<=",
        Operator::Gt => ">",
        Operator::GtEq => ">=",
        _ => return None,
    };
    if let (Some((a, ca)), Some((b, cb))) = (column(left, schema), column(right, schema)) {
        // Two columns: only classes compared the same way on both sides.
        let same = ca == cb || matches!((ca, cb), (Class::Integer(_), Class::Integer(_)));
        if !(same && ca.orderable()) {
            return None;
        }
        return Some(Pushed {
            sql: format!("({} {symbol} {})", identifier(a)?, identifier(b)?),
            exact: true,
        });
    }
    let (field, class, value, op) = match (column(left, schema), column(right, schema)) {
        (Some((field, class)), None) => (field, class, literal_value(right)?, op),
        (None, Some((field, class))) => (field, class, literal_value(left)?, flip(op)),
        _ => return None,
    };
    let exact = match class {
        _ if class.orderable() => true,
        // Redshift's string equality is a superset of DataFusion's; nothing else is.
        Class::Text if op == Operator::Eq => false,
        _ => return None,
    };
    let symbol = match op {
        Operator::Lt => "<",
        Operator::LtEq => "<=",
        Operator::Gt => ">",
        Operator::GtEq => ">=",
        _ => symbol,
    };
    Some(Pushed {
        sql: format!(
            "({} {symbol} {})",
            identifier(field)?,
            literal(value, class)?
        ),
        exact,
    })
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
