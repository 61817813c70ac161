//! Cursors: the opaque, versioned strings that carry an incremental sync's position from one
//! GetFlightInfo to the next (`next_cursor` in, `cursor` back).
//!
//! # Format (version 1) — do not change without the clients
//!
//! `rsfc1.` followed by unpadded base64url of the JSON object
//! `{"s": schema, "t": table, "k": key column, "y": key type as the catalog prints it,
//!   "b": upper bound as Redshift printed MAX(key)}`.
//!
//! The bound keeps Redshift's own text (microseconds, every DECIMAL digit, the UTC offset of a
//! TIMESTAMPTZ), so it round-trips exactly; it is validated against its type when decoded and only
//! ever reaches SQL as a quoted, typed literal. Cursors are not signed: they must outlive restarts
//! and key rotations, and a hand-made cursor can only choose which rows of an allowed table to
//! read.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::catalog::RedshiftType;

/// Prefix of version-1 cursors.
pub const CURSOR_PREFIX: &str = "rsfc1.";
/// Longest cursor accepted.
pub const MAX_CURSOR_BYTES: usize = 8 * 1024;

/// A decoded cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    /// Schema of the table.
    #[serde(rename = "s")]
    pub schema: String,
    /// Table.
    #[serde(rename = "t")]
    pub table: String,
    /// Replication key column.
    #[serde(rename = "k")]
    pub key: String,
    /// The key's type when the cursor was made (`format_type` text).
    #[serde(rename = "y")]
    pub key_type: String,
    /// The window's upper bound: every row with `key <= bound` has been delivered.
    #[serde(rename = "b")]
    pub bound: String,
}

/// A cursor that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cursor: {0}")]
pub struct CursorError(pub String);

impl Cursor {
    /// The opaque string form.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("{CURSOR_PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
    }

    /// Parses and validates a cursor string.
    pub fn decode(text: &str) -> Result<Self, CursorError> {
        if text.len() > MAX_CURSOR_BYTES {
            return Err(CursorError(format!(
                "{} bytes is more than the {MAX_CURSOR_BYTES} allowed",
                text.len()
            )));
        }
        let body = text.strip_prefix(CURSOR_PREFIX).ok_or_else(|| {
            CursorError("not a redshift-flight cursor (pass next_cursor from an earlier FlightInfo unchanged)".into())
        })?;
        let json = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| CursorError("not valid base64url".into()))?;
        let cursor: Self =
            serde_json::from_slice(&json).map_err(|e| CursorError(format!("damaged: {e}")))?;
        let key_type = RedshiftType::from_format_type(&cursor.key_type);
        validate_bound(&key_type, &cursor.bound).map_err(|why| {
            CursorError(format!(
                "bound {:?} is not a valid {}: {why}",
                cursor.bound, cursor.key_type
            ))
        })?;
        Ok(cursor)
    }
}

/// Whether a column of this type can be a replication key: its values have an exact text form
/// and a total order Redshift can compare.
pub fn key_type_supported(rtype: &RedshiftType) -> bool {
    matches!(
        rtype,
        RedshiftType::SmallInt
            | RedshiftType::Integer
            | RedshiftType::BigInt
            | RedshiftType::Decimal { .. }
            | RedshiftType::Char
            | RedshiftType::Varchar
            | RedshiftType::Date
            | RedshiftType::Timestamp
            | RedshiftType::TimestampTz
    )
}

/// Whether `text` is `d` ASCII digits.
fn digits(text: &str, n: usize) -> bool {
    text.len() == n && text.bytes().all(|b| b.is_ascii_digit())
}

/// `YYYY-MM-DD` with a real calendar date in years 1 to 9999.
fn is_date(text: &str) -> bool {
    let mut parts = text.split('-');
    matches!((parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(y), Some(m), Some(d), None) if digits(y, 4) && digits(m, 2) && digits(d, 2))
        && y_nonzero(text)
        && chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok()
}

fn y_nonzero(text: &str) -> bool {
    !text.starts_with("0000")
}

/// `HH:MM:SS[.f{1,6}]`.
fn is_time(text: &str) -> bool {
    let (hms, fraction) = text.split_once('.').unwrap_or((text, ""));
    let mut parts = hms.split(':');
    let ok = matches!((parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(h), Some(m), Some(s), None) if digits(h, 2) && digits(m, 2) && digits(s, 2));
    ok && (fraction.is_empty() && !text.ends_with('.')
        || (fraction.len() <= 6
            && fraction.bytes().all(|b| b.is_ascii_digit())
            && !fraction.is_empty()))
}

/// `[+-]HH[[:]MM]` within PostgreSQL's and Redshift's range (15:59).
fn is_offset(text: &str) -> bool {
    let Some(rest) = text.strip_prefix('+').or_else(|| text.strip_prefix('-')) else {
        return false;
    };
    // `str::get` rather than indexing: the text is the client's, and a multi-byte character
    // where a digit belongs must be rejected, not panic.
    let (h, m) = match rest.split_once(':') {
        Some(parts) => parts,
        None if rest.len() == 2 => (rest, "00"),
        None => match (rest.get(..2), rest.get(2..)) {
            (Some(h), Some(m)) => (h, m),
            _ => return false,
        },
    };
    digits(h, 2) && digits(m, 2) && h <= "15" && m <= "59"
}

/// Checks that `bound` is Redshift's text form of a value of `rtype`, strictly: a bound that
/// passes is one Redshift casts to the key's type without error or rounding.
pub fn validate_bound(rtype: &RedshiftType, bound: &str) -> Result<(), String> {
    let ok = match rtype {
        RedshiftType::SmallInt | RedshiftType::Integer | RedshiftType::BigInt => {
            bound.parse::<i64>().is_ok()
        }
        RedshiftType::Decimal { precision, scale } => {
            let digits_part = bound.strip_prefix('-').unwrap_or(bound);
            let (int, frac) = digits_part.split_once('.').unwrap_or((digits_part, ""));
            let significant = int.trim_start_matches('0').len();
            !int.is_empty()
                && int.bytes().all(|b| b.is_ascii_digit())
                && frac.bytes().all(|b| b.is_ascii_digit())
                && !(digits_part.contains('.') && frac.is_empty())
                && frac.len() <= *scale as usize
                && significant <= (*precision as usize).saturating_sub(*scale as usize)
        }
        RedshiftType::Char | RedshiftType::Varchar => !bound.contains('\0'),
        RedshiftType::Date => is_date(bound),
        RedshiftType::Timestamp => match bound.split_once(' ') {
            Some((date, time)) => is_date(date) && is_time(time),
            None => false,
        },
        RedshiftType::TimestampTz => match bound.split_once(' ') {
            Some((date, rest)) => {
                let split = rest.find(['+', '-']).unwrap_or(rest.len());
                let (time, offset) = rest.split_at(split);
                is_date(date) && is_time(time) && is_offset(offset)
            }
            None => false,
        },
        _ => return Err("this type cannot be a replication key".into()),
    };
    if ok {
        Ok(())
    } else {
        Err("unexpected text".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(key_type: &str, bound: &str) -> Cursor {
        Cursor {
            schema: "public".into(),
            table: "Orders".into(),
            key: "updated_at".into(),
            key_type: key_type.into(),
            bound: bound.into(),
        }
    }

    #[test]
    fn round_trips_exactly() {
        for (ty, bound) in [
            ("timestamp without time zone", "2024-01-01 12:34:56.123456"),
            (
                "timestamp with time zone",
                "2024-01-01 12:34:56.000001+05:30",
            ),
            ("timestamp with time zone", "0001-01-01 00:00:00+00"),
            ("date", "9999-12-31"),
            ("bigint", "-9223372036854775808"),
            ("numeric(38,10)", "9999999999999999999999999999.9999999999"),
            ("character varying(10)", "O'Brien \"quoted\" ünïcode"),
        ] {
            let c = cursor(ty, bound);
            let text = c.encode();
            assert!(text.starts_with(CURSOR_PREFIX));
            assert_eq!(Cursor::decode(&text).unwrap(), c, "{ty}");
        }
    }

    /// Golden string: cursors live in clients' state files across upgrades.
    #[test]
    fn golden_cursor() {
        let c = cursor("timestamp without time zone", "2024-01-01 00:00:00.5");
        assert_eq!(
            c.encode(),
            "rsfc1.eyJzIjoicHVibGljIiwidCI6Ik9yZGVycyIsImsiOiJ1cGRhdGVkX2F0IiwieSI6InRpbWVzdGFtcCB3aXRob3V0IHRpbWUgem9uZSIsImIiOiIyMDI0LTAxLTAxIDAwOjAwOjAwLjUifQ"
        );
    }

    #[test]
    fn rejects_damaged_and_hostile_cursors() {
        for bad in [
            "",
            "garbage",
            "rsfc1.!!!",
            "rsfc2.e30",
            &format!("{CURSOR_PREFIX}{}", URL_SAFE_NO_PAD.encode("{}")),
            &cursor(
                "timestamp without time zone",
                "2024-01-01'; drop table t; --",
            )
            .encode(),
            &cursor("bigint", "1 OR 1=1").encode(),
            &cursor("numeric(10,2)", "1e5").encode(),
            &cursor("double precision", "1.5").encode(),
            &cursor("date", "2024-13-01").encode(),
            &cursor("date", "13-1-1").encode(),
            &cursor("date", "+10000-01-01").encode(),
            &cursor("timestamp with time zone", "2024-01-01 00:00:00+16").encode(),
            &cursor("timestamp without time zone", "2024-01-01 00:00:00.1234567").encode(),
            &cursor("numeric(10,2)", "123456789.5").encode(),
            &cursor("numeric(10,2)", "1.234").encode(),
        ] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
        assert!(Cursor::decode(&"x".repeat(MAX_CURSOR_BYTES + 1)).is_err());
    }

    /// Valid bounds of every key type, with one character replaced by a multi-byte one at each
    /// position: rejected, never a panic (issue 11: `+1é1` panicked in `is_offset`).
    #[test]
    fn multi_byte_characters_anywhere_are_rejected() {
        let valid = [
            (
                "timestamp with time zone",
                "2024-01-01 12:34:56.000001+05:30",
            ),
            ("timestamp with time zone", "2024-01-01 12:34:56+0530"),
            ("timestamp with time zone", "2024-01-01 12:34:56-05"),
            ("timestamp without time zone", "2024-01-01 12:34:56.123456"),
            ("date", "2024-01-01"),
            ("bigint", "-9223372036854775808"),
            ("numeric(38,10)", "12345.6789"),
        ];
        for (ty, bound) in valid {
            assert!(validate_bound(&RedshiftType::from_format_type(ty), bound).is_ok());
            for (i, _) in bound.char_indices() {
                for wide in ['é', '€', '𝟙', '\u{0661}'] {
                    let mut text = String::from(&bound[..i]);
                    text.push(wide);
                    text.push_str(&bound[i + 1..]);
                    let c = cursor(ty, &text);
                    assert!(Cursor::decode(&c.encode()).is_err(), "{ty} {text:?}");
                }
            }
        }
        assert!(
            Cursor::decode(&cursor("timestamp with time zone", "2024-01-01 00:00:00+1é1").encode())
                .is_err()
        );
    }

    proptest::proptest! {
        /// Any text as a bound of any key type: an answer, never a panic.
        #[test]
        fn validate_bound_never_panics(bound in "\\PC{0,40}", ty in 0usize..9) {
            let types = [
                "timestamp with time zone", "timestamp without time zone", "date", "bigint",
                "integer", "smallint", "numeric(12,3)", "character varying(9)", "character(3)",
            ];
            let _ = validate_bound(&RedshiftType::from_format_type(types[ty]), &bound);
        }
    }
}
