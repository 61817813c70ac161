//! Property tests of the one quoting module (`plan::sql`, correctness rule 5): whatever text it
//! quotes, a real PostgreSQL parsing the result *the way Redshift parses literals* (backslash
//! escapes processed: `standard_conforming_strings = off`) gets exactly that text back, as a value,
//! as a column name, and through the double quoting of `UNLOAD ('...')`. NUL is rejected.
//!
//! One connection to the test bed's PostgreSQL serves every case; queries go through the simple
//! query protocol, as UNLOAD does. 256 cases per property keep the run to a few seconds.

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use redshift_flight::catalog::RedshiftType;
use redshift_flight::plan::cursor::validate_bound;
use redshift_flight::plan::select::typed_literal;
use redshift_flight::sql::{self, QuoteError};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::common;

const CASES: u32 = 256;

/// PostgreSQL truncates identifiers to NAMEDATALEN - 1 = 63 bytes.
const MAX_IDENT_BYTES: usize = 63;

/// A PostgreSQL session that parses string literals as Redshift does.
struct Pg {
    runtime: tokio::runtime::Runtime,
    client: Client,
}

impl Pg {
    fn connect() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = runtime.block_on(async {
            let client = common::pg().await;
            client
                .batch_execute(
                    "SET standard_conforming_strings = off; SET escape_string_warning = off;",
                )
                .await
                .unwrap();
            client
        });
        Self { runtime, client }
    }

    /// Runs `sql` (simple protocol) and returns the first row's column names and text values.
    fn row(&self, sql: &str) -> Result<(Vec<String>, Vec<Option<String>>), String> {
        let messages = self
            .runtime
            .block_on(self.client.simple_query(sql))
            .map_err(|e| format!("{sql}: {e}"))?;
        messages
            .into_iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some((
                    row.columns().iter().map(|c| c.name().to_string()).collect(),
                    (0..row.len())
                        .map(|i| row.get(i).map(String::from))
                        .collect(),
                )),
                _ => None,
            })
            .ok_or_else(|| format!("{sql}: no row"))
    }

    /// The single text value `SELECT {expr}` returns.
    fn value(&self, expr: &str) -> Result<String, TestCaseError> {
        let (_, values) = self
            .row(&format!("SELECT {expr}"))
            .map_err(TestCaseError::fail)?;
        values
            .into_iter()
            .next()
            .flatten()
            .ok_or_else(|| TestCaseError::fail(format!("SELECT {expr}: NULL")))
    }
}

fn runner() -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    })
}

/// Runs one property, panicking with proptest's minimal failing case.
fn check<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    if let Err(e) = runner().run(&strategy, test) {
        panic!("{name}: {e}");
    }
}

/// Characters that matter to SQL quoting, weighted up, among arbitrary ones (no NUL).
fn sql_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::sample::select(vec![
            '\'', '"', '\\', '\n', '\r', '\t', '$', ';', '-', '/', '*', 'E', 'e', 'U', '&', ' ', '?',
            '\u{7f}', '\u{a0}', '\u{2028}', '\u{feff}',
        ]),
        2 => prop::char::range('a', 'z'),
        1 => prop::char::range('\u{1}', '\u{1f}'),
        1 => prop::char::range('\u{80}', '\u{7ff}'),
        1 => prop::char::range('\u{800}', '\u{ffff}'),
        1 => prop::char::range('\u{10000}', '\u{10ffff}'),
        2 => any::<char>(),
    ]
    .prop_filter("NUL cannot be quoted", |c| *c != '\0')
}

/// Arbitrary text without NUL, including the empty string.
fn text(max_chars: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(sql_char(), 0..=max_chars).prop_map(|chars| chars.into_iter().collect())
}

/// A non-empty identifier under PostgreSQL's 63-byte limit.
fn identifier() -> impl Strategy<Value = String> {
    prop::collection::vec(sql_char(), 1..=40).prop_map(|chars| {
        let mut name = String::new();
        for c in chars {
            if name.len() + c.len_utf8() > MAX_IDENT_BYTES {
                break;
            }
            name.push(c);
        }
        name
    })
}

/// Text containing at least one NUL.
fn text_with_nul() -> impl Strategy<Value = String> {
    (text(20), text(20)).prop_map(|(a, b)| format!("{a}\0{b}"))
}

#[test]
fn literals_round_trip_through_postgres() {
    let pg = Pg::connect();
    check("literal", text(64), |s| {
        let quoted = sql::literal(&s).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(pg.value(&quoted)?, s);
        Ok(())
    });
}

#[test]
fn identifiers_round_trip_as_column_names() {
    let pg = Pg::connect();
    check("ident", identifier(), |name| {
        let quoted = sql::ident(&name).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (columns, values) = pg
            .row(&format!("SELECT 1 AS {quoted}"))
            .map_err(TestCaseError::fail)?;
        prop_assert_eq!(columns, vec![name]);
        prop_assert_eq!(values, vec![Some("1".to_string())]);
        Ok(())
    });
}

#[test]
fn qualified_names_round_trip_through_the_catalog_syntax() {
    // `qualified` is `ident.ident`: PostgreSQL's parse_ident splits it back into the two names.
    let pg = Pg::connect();
    check(
        "qualified",
        (identifier(), identifier()),
        |(schema, table)| {
            let quoted =
                sql::qualified(&schema, &table).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let (_, values) = pg
            .row(&format!(
                "SELECT (parse_ident({0}))[1], (parse_ident({0}))[2], array_length(parse_ident({0}), 1)",
                sql::literal(&quoted).unwrap()
            ))
            .map_err(TestCaseError::fail)?;
            prop_assert_eq!(
                values,
                vec![Some(schema), Some(table), Some("2".to_string())]
            );
            Ok(())
        },
    );
}

#[test]
fn unload_double_quoting_round_trips() {
    // UNLOAD ('<select>') receives the SELECT as a literal: evaluating the outer literal must give
    // the SELECT text back unchanged, and running that SELECT must give the value and the name.
    let pg = Pg::connect();
    check("unload", (text(40), identifier()), |(value, name)| {
        let inner = format!(
            "SELECT {} AS {}",
            sql::literal(&value).unwrap(),
            sql::ident(&name).unwrap()
        );
        let outer = sql::literal(&inner).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&pg.value(&outer)?, &inner);
        let (columns, values) = pg.row(&inner).map_err(TestCaseError::fail)?;
        prop_assert_eq!(columns, vec![name]);
        prop_assert_eq!(values, vec![Some(value)]);
        Ok(())
    });
}

#[test]
fn nul_is_rejected() {
    check("nul", (text_with_nul(), identifier()), |(s, name)| {
        prop_assert_eq!(sql::literal(&s), Err(QuoteError::Nul { what: "literal" }));
        prop_assert_eq!(sql::ident(&s), Err(QuoteError::Nul { what: "identifier" }));
        prop_assert!(sql::qualified(&name, &s).is_err());
        prop_assert!(sql::qualified(&s, &name).is_err());
        for rtype in key_types() {
            prop_assert!(typed_literal(&rtype, &s).is_err());
        }
        Ok(())
    });
    assert_eq!(sql::ident(""), Err(QuoteError::EmptyIdentifier));
    assert_eq!(sql::literal("").unwrap(), "''");
}

fn key_types() -> Vec<RedshiftType> {
    vec![
        RedshiftType::SmallInt,
        RedshiftType::Integer,
        RedshiftType::BigInt,
        RedshiftType::Decimal {
            precision: 38,
            scale: 10,
        },
        RedshiftType::Char,
        RedshiftType::Varchar,
        RedshiftType::Date,
        RedshiftType::Timestamp,
        RedshiftType::TimestampTz,
    ]
}

/// Checks one replication-key value in Redshift's text form: the cursor validator accepts it,
/// and `typed_literal` evaluated by PostgreSQL gives the same text back.
fn typed_round_trip(pg: &Pg, rtype: &RedshiftType, text: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        validate_bound(rtype, text).is_ok(),
        "validate_bound rejects {:?} as {:?}",
        text,
        rtype
    );
    let expr = typed_literal(rtype, text).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(pg.value(expr.as_str())?, text, "{}", expr);
    Ok(())
}

#[test]
fn typed_literals_round_trip_integers() {
    let pg = Pg::connect();
    check("bigint", any::<i64>(), |n| {
        typed_round_trip(&pg, &RedshiftType::BigInt, &n.to_string())
    });
    check("integer", any::<i32>(), |n| {
        typed_round_trip(&pg, &RedshiftType::Integer, &n.to_string())
    });
    check("smallint", any::<i16>(), |n| {
        typed_round_trip(&pg, &RedshiftType::SmallInt, &n.to_string())
    });
}

/// A DECIMAL(p,s) and a value of it as Redshift prints it: exactly `s` fraction digits, no
/// leading zeros, no negative zero.
fn decimal() -> impl Strategy<Value = (u8, i8, String)> {
    (1u8..=38)
        .prop_flat_map(|p| (Just(p), 0..=p))
        .prop_flat_map(|(p, s)| {
            (
                Just(p),
                Just(s),
                any::<bool>(),
                prop::collection::vec(0u8..10, (p - s) as usize),
                prop::collection::vec(0u8..10, s as usize),
            )
        })
        .prop_map(|(p, s, negative, int, frac)| {
            let digits = |d: &[u8]| d.iter().map(|d| char::from(b'0' + d)).collect::<String>();
            let int = digits(&int).trim_start_matches('0').to_string();
            let int = if int.is_empty() { "0".to_string() } else { int };
            let frac = digits(&frac);
            let zero = int == "0" && frac.bytes().all(|b| b == b'0');
            let sign = if negative && !zero { "-" } else { "" };
            let text = if s == 0 {
                format!("{sign}{int}")
            } else {
                format!("{sign}{int}.{frac}")
            };
            (p, s as i8, text)
        })
}

#[test]
fn typed_literals_round_trip_decimals() {
    let pg = Pg::connect();
    check("decimal", decimal(), |(precision, scale, text)| {
        typed_round_trip(&pg, &RedshiftType::Decimal { precision, scale }, &text)
    });
}

fn date() -> impl Strategy<Value = NaiveDate> {
    let first = NaiveDate::from_ymd_opt(1, 1, 1).unwrap();
    let last = NaiveDate::from_ymd_opt(9999, 12, 31).unwrap();
    (0..=(last - first).num_days()).prop_map(move |d| first + Duration::days(d))
}

/// Seconds with Redshift's fraction: up to six digits, trailing zeros dropped.
fn time_text(t: NaiveTime) -> String {
    let micros = t.format("%6f").to_string();
    let micros = micros.trim_end_matches('0');
    if micros.is_empty() {
        t.format("%H:%M:%S").to_string()
    } else {
        format!("{}.{micros}", t.format("%H:%M:%S"))
    }
}

fn timestamp() -> impl Strategy<Value = NaiveDateTime> {
    (date(), 0u32..86_400, 0u32..1_000_000, any::<bool>()).prop_map(
        |(date, secs, micros, whole)| {
            let micros = if whole { 0 } else { micros };
            date.and_time(
                NaiveTime::from_num_seconds_from_midnight_opt(secs, micros * 1000).unwrap(),
            )
        },
    )
}

#[test]
fn typed_literals_round_trip_dates_and_timestamps() {
    let pg = Pg::connect();
    check("date", date(), |d| {
        typed_round_trip(&pg, &RedshiftType::Date, &d.format("%Y-%m-%d").to_string())
    });
    check("timestamp", timestamp(), |t| {
        let text = format!("{} {}", t.date().format("%Y-%m-%d"), time_text(t.time()));
        typed_round_trip(&pg, &RedshiftType::Timestamp, &text)
    });
}

#[test]
fn typed_literals_round_trip_timestamptz() {
    // Redshift prints TIMESTAMPTZ in UTC as `... +00`; a bound with another offset denotes the
    // same instant, which PostgreSQL (TimeZone UTC) prints in UTC.
    let pg = Pg::connect();
    let strategy = (timestamp(), -(14 * 60)..=(14 * 60i32)).prop_filter(
        "years 1000-9998 keep every offset within four-digit AD years",
        |(t, _)| (1000..9999).contains(&t.date().year()),
    );
    check("timestamptz", strategy, |(utc, offset_minutes)| {
        let utc_text = format!(
            "{} {}+00",
            utc.date().format("%Y-%m-%d"),
            time_text(utc.time())
        );
        typed_round_trip(&pg, &RedshiftType::TimestampTz, &utc_text)?;
        let offset = FixedOffset::east_opt(offset_minutes * 60).unwrap();
        let local: DateTime<FixedOffset> =
            DateTime::<Utc>::from_naive_utc_and_offset(utc, Utc).with_timezone(&offset);
        let local_text = format!(
            "{} {}{}",
            local.date_naive().format("%Y-%m-%d"),
            time_text(local.time()),
            local.format("%:z")
        );
        prop_assert!(validate_bound(&RedshiftType::TimestampTz, &local_text).is_ok());
        let expr = typed_literal(&RedshiftType::TimestampTz, &local_text).unwrap();
        prop_assert_eq!(pg.value(expr.as_str())?, utc_text);
        Ok(())
    });
}

#[test]
fn typed_literals_round_trip_text_keys() {
    let pg = Pg::connect();
    check("varchar", text(40), |s| {
        typed_round_trip(&pg, &RedshiftType::Varchar, &s)
    });
}

#[test]
fn typed_literals_cannot_escape_whatever_the_bound() {
    // Even a bound that never passed validation stays one quoted value: the cast succeeds or
    // fails with a data exception, and the statement is never anything but the one SELECT.
    let pg = Pg::connect();
    check("hostile bound", text(40), |s| {
        for rtype in key_types() {
            let expr = typed_literal(&rtype, &s).unwrap();
            let sql = format!("SELECT {expr} IS NULL AS is_null, 1 AS marker");
            match pg.runtime.block_on(pg.client.simple_query(&sql)) {
                Ok(_) => {
                    let (columns, values) = pg.row(&sql).map_err(TestCaseError::fail)?;
                    prop_assert_eq!(columns, vec!["is_null".to_string(), "marker".to_string()]);
                    prop_assert_eq!(values, vec![Some("f".to_string()), Some("1".to_string())]);
                }
                // A value that is not of the type: SQLSTATE class 22 (data exception), never a
                // syntax error (class 42), which would mean the text left its quotes.
                Err(e) => {
                    let code = e.code().map(|c| c.code().to_string()).unwrap_or_default();
                    prop_assert!(code.starts_with("22"), "{}: {} ({})", sql, e, code);
                }
            }
        }
        Ok(())
    });
}

#[test]
fn the_session_parses_backslash_escapes_like_redshift() {
    // Guards the properties above: were the session standard-conforming, a literal that forgot to
    // double backslashes would pass them too. Here the naive quoting (quotes doubled only) of
    // `a\` leaves `\'` escaping the closing quote, while `literal` round-trips.
    let pg = Pg::connect();
    let naive = |s: &str| format!("'{}'", s.replace('\'', "''"));
    assert!(pg.row(&format!("SELECT {}", naive("a\\"))).is_err());
    assert_eq!(
        pg.row(&format!("SELECT {}", naive("a\\nb"))).unwrap().1,
        vec![Some("a\nb".to_string())]
    );
    assert_eq!(
        pg.row(&format!("SELECT {}", sql::literal("a\\nb\\").unwrap()))
            .unwrap()
            .1,
        vec![Some("a\\nb\\".to_string())]
    );
}

#[test]
fn validated_bounds_are_accepted_by_the_database() {
    // A cursor bound that passes `validate_bound` must also be a value the database casts: else a
    // hand-edited cursor gets past validation (INVALID_ARGUMENT) and fails later inside Redshift.
    let pg = Pg::connect();
    let date_like = "[+-]?[0-9]{1,6}-[0-9]{1,2}-[0-9]{1,2}";
    let strategy = (
        prop::sample::select(vec![
            RedshiftType::Date,
            RedshiftType::Timestamp,
            RedshiftType::TimestampTz,
            RedshiftType::BigInt,
            RedshiftType::Decimal {
                precision: 10,
                scale: 2,
            },
        ]),
        prop::string::string_regex(date_like).unwrap(),
        prop::string::string_regex("( [0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\\.[0-9]{1,9})?)?").unwrap(),
        prop::string::string_regex("([+-][0-9]{1,2}(:?[0-9]{2})?)?").unwrap(),
        prop::string::string_regex("[+-]?[0-9]{1,40}(\\.[0-9]{0,40})?").unwrap(),
    );
    check(
        "validated bounds",
        strategy,
        |(rtype, date, time, zone, number)| {
            let bound = match rtype {
                RedshiftType::Date => date,
                RedshiftType::Timestamp => format!("{date}{time}"),
                RedshiftType::TimestampTz => format!("{date}{time}{zone}"),
                _ => number,
            };
            if validate_bound(&rtype, &bound).is_ok() {
                let expr = typed_literal(&rtype, &bound).unwrap();
                pg.value(expr.as_str())?;
            }
            Ok(())
        },
    );
}
