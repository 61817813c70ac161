//! Lookback: an incremental read may re-read a window below its cursor, `(lower - lookback,
//! upper]`, to pick up rows that commit late with an older key. Consumers upsert on the primary
//! key, so the overlap is harmless.
//!
//! Time keys take an interval: `"2 hours"`, `"90s"`, `"1 day"`, or a JSON number of seconds.
//! Numeric keys take a non-negative number (an integer for integer keys).

use serde_json::Value;

use super::PlanError;
use crate::catalog::{ColumnInfo, RedshiftType};
use crate::sql::{QuoteError, Sql, sql};

/// Longest lookback accepted for time keys: ten years.
const MAX_SECONDS: u64 = 10 * 366 * 24 * 3600;

/// A validated lookback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookback {
    /// For TIMESTAMP, TIMESTAMPTZ and DATE keys.
    Seconds(u64),
    /// For integer and DECIMAL keys: the decimal text of a non-negative number.
    Amount(String),
}

fn bad(message: impl Into<String>) -> PlanError {
    PlanError::Lookback(message.into())
}

fn parse_interval(text: &str) -> Result<u64, PlanError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| {
        bad(format!(
            "{text:?}: expected a whole number and a unit, like \"2 hours\" or \"90s\""
        ))
    })?;
    let unit_seconds = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 7 * 86_400,
        other => {
            return Err(bad(format!(
                "unknown unit {other:?} (use seconds, minutes, hours, days or weeks)"
            )));
        }
    };
    n.checked_mul(unit_seconds)
        .filter(|s| *s <= MAX_SECONDS)
        .ok_or_else(|| bad(format!("{text:?} is longer than ten years")))
}

fn is_plain_decimal(text: &str, allow_fraction: bool) -> bool {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    !int.is_empty()
        && int.len() <= 38
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.len() <= 38
        && frac.bytes().all(|b| b.is_ascii_digit())
        && (allow_fraction || !text.contains('.'))
}

impl Lookback {
    /// Validates `value` for a key column.
    pub fn try_new(value: &Value, key: &ColumnInfo) -> Result<Self, PlanError> {
        match &key.redshift_type {
            RedshiftType::Timestamp | RedshiftType::TimestampTz | RedshiftType::Date => match value
            {
                Value::String(text) => Ok(Self::Seconds(parse_interval(text)?)),
                Value::Number(n) => n
                    .as_u64()
                    .filter(|s| *s <= MAX_SECONDS)
                    .map(Self::Seconds)
                    .ok_or_else(|| {
                        bad(format!(
                            "{n}: expected a whole, non-negative number of seconds"
                        ))
                    }),
                _ => Err(bad(
                    "expected an interval like \"2 hours\" or a number of seconds",
                )),
            },
            RedshiftType::SmallInt
            | RedshiftType::Integer
            | RedshiftType::BigInt
            | RedshiftType::Decimal { .. } => {
                let allow_fraction = matches!(key.redshift_type, RedshiftType::Decimal { .. });
                let text = match value {
                    Value::String(s) => s.trim().to_string(),
                    Value::Number(n) => n.to_string(),
                    _ => return Err(bad("expected a non-negative number")),
                };
                if is_plain_decimal(&text, allow_fraction) {
                    Ok(Self::Amount(text))
                } else {
                    Err(bad(format!(
                        "{text:?}: expected a non-negative {} for key {:?}",
                        if allow_fraction {
                            "number"
                        } else {
                            "whole number"
                        },
                        key.name
                    )))
                }
            }
            _ => Err(bad(format!(
                "key {:?} ({}) does not support a lookback",
                key.name, key.catalog_type
            ))),
        }
    }

    /// SQL for `lower` moved down by the lookback.
    pub fn below(&self, lower_sql: Sql) -> Result<Sql, QuoteError> {
        Ok(match self {
            Self::Seconds(s) => sql!("(", lower_sql, " - INTERVAL '", Sql::int(*s), " seconds')"),
            Self::Amount(a) => sql!("(", lower_sql, " - ", Sql::decimal(a)?, ")"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn col(ty: &str) -> ColumnInfo {
        ColumnInfo::new("k", ty, true)
    }

    #[test]
    fn intervals_for_time_keys() {
        let ts = col("timestamp without time zone");
        assert_eq!(
            Lookback::try_new(&json!("2 hours"), &ts).unwrap(),
            Lookback::Seconds(7200)
        );
        assert_eq!(
            Lookback::try_new(&json!("90s"), &ts).unwrap(),
            Lookback::Seconds(90)
        );
        assert_eq!(
            Lookback::try_new(&json!("1 day"), &col("date")).unwrap(),
            Lookback::Seconds(86_400)
        );
        assert_eq!(
            Lookback::try_new(&json!(30), &ts).unwrap(),
            Lookback::Seconds(30)
        );
        for bad in [
            json!("2 fortnights"),
            json!("-1 hour"),
            json!("1 hour'; drop"),
            json!(1.5),
            json!(-3),
            json!(null),
            json!("999999999 weeks"),
        ] {
            assert!(Lookback::try_new(&bad, &ts).is_err(), "{bad}");
        }
        assert_eq!(
            Lookback::Seconds(90)
                .below(Sql::from("CAST('x' AS TIMESTAMP)"))
                .unwrap()
                .as_str(),
            "(CAST('x' AS TIMESTAMP) - INTERVAL '90 seconds')"
        );
    }

    #[test]
    fn amounts_for_numeric_keys() {
        assert_eq!(
            Lookback::try_new(&json!(100), &col("bigint")).unwrap(),
            Lookback::Amount("100".into())
        );
        assert_eq!(
            Lookback::try_new(&json!("0.25"), &col("numeric(10,2)")).unwrap(),
            Lookback::Amount("0.25".into())
        );
        for bad in [json!(1.5), json!("-1"), json!("1e3"), json!("1 OR 1=1")] {
            assert!(Lookback::try_new(&bad, &col("integer")).is_err(), "{bad}");
        }
        assert!(Lookback::try_new(&json!(1), &col("character varying(5)")).is_err());
    }
}
