//! Redshift's text output, parsed exactly into Arrow values: the same values UNLOAD's Parquet
//! holds. Integers, booleans, decimals (to their declared scale, digit by digit), REAL and DOUBLE
//! PRECISION (printed with every digit, so parsing gives back the same bits), and dates and
//! timestamps over Redshift's whole range (years 4713 BC to 294276 AD, beyond what date crates
//! cover; a timestamp past Arrow's microsecond range, after 294247-01-10, is an error), by civil-date arithmetic.
//!
//! Imports: `crate::normalize` (the time of day, parsed as a TIME column's text is).

use crate::normalize::parse_time_micros;

/// Microseconds in a day.
const DAY_MICROS: i64 = 86_400_000_000;

fn bad(what: &str, text: &str) -> String {
    format!("not {what}: {text:?}")
}

/// `t` or `f` (also `true`/`false`).
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text {
        "t" | "true" => Ok(true),
        "f" | "false" => Ok(false),
        _ => Err(bad("a boolean", text)),
    }
}

/// A decimal number as an integer of `scale` decimal places: `-12.5` at scale 2 is `-1250`.
/// More fractional digits than `scale`, or more digits than 38, is an error (never rounded).
pub fn parse_decimal(text: &str, scale: i8) -> Result<i128, String> {
    let err = || bad(&format!("a decimal of scale {scale}"), text);
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err(err());
    }
    let scale = usize::try_from(scale).map_err(|_| err())?;
    let significant = fraction.trim_end_matches('0');
    if significant.len() > scale {
        return Err(err());
    }
    let mut value: i128 = 0;
    let padded = fraction.bytes().chain(std::iter::repeat(b'0')).take(scale);
    for digit in whole.bytes().chain(padded) {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i128::from(digit - b'0')))
            .ok_or_else(err)?;
    }
    Ok(if negative { -value } else { value })
}

/// REAL or DOUBLE PRECISION text (`1.5`, `-3.4028235e+38`, `Infinity`, `-Infinity`, `NaN`).
pub fn parse_float<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| bad("a floating-point number", text))
}

/// Days from 1970-01-01 to the proleptic Gregorian date `year-month-day` (year 0 is 1 BC).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// `YYYY-MM-DD` (4 or more year digits) with an optional trailing ` BC`, as days since the epoch.
/// Returns the days and the rest of the text after the date (without ` BC`).
fn parse_date_prefix(text: &str) -> Result<(i64, &str, bool), String> {
    let (body, bc) = match text.strip_suffix(" BC") {
        Some(body) => (body, true),
        None => (text, false),
    };
    let err = || bad("a date", text);
    let year_end = body.find('-').ok_or_else(err)?;
    let year: i64 = digits(&body[..year_end]).ok_or_else(err)?;
    let rest = &body[year_end + 1..];
    let month: i64 = rest.get(..2).and_then(digits).ok_or_else(err)?;
    if rest.as_bytes().get(2) != Some(&b'-') {
        return Err(err());
    }
    let day: i64 = rest.get(3..5).and_then(digits).ok_or_else(err)?;
    let year = if bc { 1 - year } else { year };
    let month_days = [
        31,
        if is_leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month) || day < 1 || day > month_days[(month - 1) as usize] {
        return Err(err());
    }
    Ok((days_from_civil(year, month, day), &rest[5..], bc))
}

/// ASCII digits only (at least one), as a number.
fn digits<T: std::str::FromStr>(text: &str) -> Option<T> {
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// A DATE, as days since 1970-01-01.
pub fn parse_date(text: &str) -> Result<i32, String> {
    let (days, rest, _) = parse_date_prefix(text)?;
    if !rest.is_empty() {
        return Err(bad("a date", text));
    }
    i32::try_from(days).map_err(|_| bad("a date in range", text))
}

/// A TIMESTAMP (`YYYY-MM-DD HH:MM:SS[.ffffff][ BC]`) or, with `zoned`, a TIMESTAMPTZ (the same
/// followed by an offset `+HH[:MM[:SS]]`), as microseconds since 1970-01-01 00:00 UTC.
pub fn parse_timestamp(text: &str, zoned: bool) -> Result<i64, String> {
    let err = || {
        bad(
            if zoned {
                "a timestamp with time zone"
            } else {
                "a timestamp"
            },
            text,
        )
    };
    let (days, rest, _) = parse_date_prefix(text)?;
    let rest = rest.strip_prefix(' ').ok_or_else(err)?;
    let (clock, offset) = if zoned {
        let at = rest.rfind(['+', '-']).ok_or_else(err)?;
        (&rest[..at], Some(&rest[at..]))
    } else {
        (rest, None)
    };
    let time = parse_time_micros(clock).map_err(|_| err())?;
    let offset_micros = match offset {
        None => 0,
        Some(offset) => {
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let mut parts = offset[1..].split(':');
            let mut seconds = 0i64;
            for (i, unit) in [3600, 60, 1].into_iter().enumerate() {
                match parts.next() {
                    Some(part) if part.len() == 2 => {
                        seconds += unit * digits::<i64>(part).ok_or_else(err)?
                    }
                    None if i > 0 => break,
                    _ => return Err(err()),
                }
            }
            if parts.next().is_some() {
                return Err(err());
            }
            sign * seconds * 1_000_000
        }
    };
    days.checked_mul(DAY_MICROS)
        .and_then(|d| d.checked_add(time))
        .and_then(|t| t.checked_sub(offset_micros))
        .ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_exactly_or_not_at_all() {
        assert_eq!(parse_decimal("-12.5", 2), Ok(-1250));
        assert_eq!(parse_decimal("0.00", 2), Ok(0));
        assert_eq!(parse_decimal("7", 0), Ok(7));
        assert_eq!(parse_decimal("1.2300", 2), Ok(123));
        assert_eq!(
            parse_decimal("99999999999999999999999999999999999999", 0),
            Ok(99_999_999_999_999_999_999_999_999_999_999_999_999)
        );
        assert_eq!(
            parse_decimal("-0.0000000000000000000000000000000000001", 37),
            Ok(-1)
        );
        for bad in ["", "-", ".", "1.234", "1e5", "NaN", "1.2.3", " 1", "1,5"] {
            assert!(parse_decimal(bad, 2).is_err(), "{bad}");
        }
        assert!(parse_decimal(&"9".repeat(40), 0).is_err());
    }

    #[test]
    fn floats_round_trip_and_name_their_specials() {
        assert_eq!(parse_float::<f32>("3.4028235e+38"), Ok(f32::MAX));
        assert_eq!(parse_float::<f64>("-1.7976931348623157e+308"), Ok(f64::MIN));
        assert_eq!(parse_float::<f64>("Infinity"), Ok(f64::INFINITY));
        assert_eq!(parse_float::<f64>("-Infinity"), Ok(f64::NEG_INFINITY));
        assert!(parse_float::<f64>("NaN").unwrap().is_nan());
        assert_eq!(parse_float::<f64>("0.1"), Ok(0.1));
        assert!(parse_float::<f64>("one").is_err());
    }

    #[test]
    fn dates_cover_redshifts_range() {
        assert_eq!(parse_date("1970-01-01"), Ok(0));
        assert_eq!(parse_date("2000-03-01"), Ok(11_017));
        assert_eq!(parse_date("1969-12-31"), Ok(-1));
        assert_eq!(parse_date("0001-01-01"), Ok(-719_162));
        // 1 BC is year 0 of the proleptic calendar, a leap year.
        assert_eq!(parse_date("0001-12-31 BC"), Ok(-719_163));
        assert_eq!(parse_date("0001-02-29 BC"), Ok(-719_469));
        assert_eq!(parse_date("4713-01-01 BC"), Ok(-2_440_550));
        assert_eq!(parse_date("294276-12-31"), Ok(106_762_939));
        for bad in [
            "",
            "2024-02-30",
            "2023-02-29",
            "2024-13-01",
            "2024-1-01",
            "2024-01-01x",
            "x-01-01",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timestamps_parse_to_utc_microseconds() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00", false), Ok(0));
        assert_eq!(
            parse_timestamp("2024-02-29 12:34:56.789", false),
            Ok(1_709_210_096_789_000)
        );
        assert_eq!(parse_timestamp("1969-12-31 23:59:59.999999", false), Ok(-1));
        assert_eq!(parse_timestamp("1970-01-01 00:00:00+00", true), Ok(0));
        assert_eq!(parse_timestamp("1970-01-01 02:00:00+02", true), Ok(0));
        assert_eq!(parse_timestamp("1969-12-31 19:30:00-04:30", true), Ok(0));
        assert_eq!(
            parse_timestamp("0001-01-01 00:00:00 BC", false),
            Ok(-719_528 * DAY_MICROS)
        );
        // Microseconds since 1970 in an i64 end in year 294247; Redshift's last timestamps
        // (up to 294276-12-31) cannot be Arrow timestamps, on either path: a clear error.
        assert_eq!(
            parse_timestamp("294247-01-10 04:00:54.775807", false),
            Ok(i64::MAX)
        );
        assert!(parse_timestamp("294247-01-10 04:00:54.775808", false).is_err());
        assert!(parse_timestamp("294276-12-31 23:59:59.999999", false).is_err());
        for (bad, zoned) in [
            ("2024-01-01", false),
            ("2024-01-01 25:00:00", false),
            ("2024-01-01 12:00", false),
            ("2024-01-01 12:00:00.1234567", false),
            ("2024-01-01 12:00:00", true),
            ("2024-01-01 12:00:00+1", true),
        ] {
            assert!(parse_timestamp(bad, zoned).is_err(), "{bad}");
        }
    }
}
