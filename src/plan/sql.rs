//! The one quoting module: every piece of SQL that redshift-flight sends to Redshift is built here
//! from catalog identifiers and typed values, never by pasting user text.
//!
//! An identifier is wrapped in `"` with embedded `"` doubled (backslashes are ordinary characters
//! in identifiers). A string literal is wrapped in `'` with embedded `'` doubled *and* embedded `\`
//! doubled: Redshift string literals process backslash escapes (like PostgreSQL before 9.1 or with
//! `standard_conforming_strings = off`), so an undoubled backslash could escape the closing quote.
//! `UNLOAD ('...')` takes its SELECT as a string literal, so the finished SELECT is quoted once
//! more with [`literal`]. NUL cannot be represented in either form and is rejected.

use std::fmt;

/// Text that cannot be quoted for SQL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    /// PostgreSQL and Redshift cannot represent NUL inside identifiers or literals.
    #[error("{what} contains a NUL character, which SQL cannot represent")]
    Nul {
        /// What was being quoted ("identifier", "literal").
        what: &'static str,
    },
    /// Empty identifiers are not valid SQL.
    #[error("empty identifier")]
    EmptyIdentifier,
}

/// Quotes an identifier: `a"b` becomes `"a""b"`.
pub fn ident(name: &str) -> Result<String, QuoteError> {
    if name.is_empty() {
        return Err(QuoteError::EmptyIdentifier);
    }
    if name.contains('\0') {
        return Err(QuoteError::Nul { what: "identifier" });
    }
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    Ok(out)
}

/// Quotes a string literal for Redshift: `O'Brien` becomes `'O''Brien'`, `a\b` becomes `'a\\b'`.
pub fn literal(value: &str) -> Result<String, QuoteError> {
    if value.contains('\0') {
        return Err(QuoteError::Nul { what: "literal" });
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    Ok(out)
}

/// A schema-qualified table name, quoted: `"my schema"."Orders"`.
pub fn qualified(schema: &str, table: &str) -> Result<String, QuoteError> {
    Ok(format!("{}.{}", ident(schema)?, ident(table)?))
}

/// A typed literal for a replication-key bound: `CAST('2024-01-01 00:00:00' AS TIMESTAMP)`.
/// The caller has validated `value` against `rtype` (see `plan::cursor::validate_bound`); this
/// function still quotes it as a literal, so even an unvalidated value could not escape.
pub fn typed_literal(
    rtype: &crate::catalog::RedshiftType,
    value: &str,
) -> Result<String, QuoteError> {
    use crate::catalog::RedshiftType as T;
    let text = literal(value)?;
    Ok(match rtype {
        T::SmallInt | T::Integer | T::BigInt => format!("CAST({text} AS BIGINT)"),
        T::Decimal { precision, scale } => format!("CAST({text} AS DECIMAL({precision},{scale}))"),
        T::Date => format!("CAST({text} AS DATE)"),
        T::Timestamp => format!("CAST({text} AS TIMESTAMP)"),
        T::TimestampTz => format!("CAST({text} AS TIMESTAMPTZ)"),
        _ => text,
    })
}

/// A SQL fragment that was assembled only from this module's output; its `Display` is the SQL.
///
/// Logging a [`Sql`] is safe: it holds catalog identifiers and typed values, never credentials
/// (the IAM role ARN is not a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sql(String);

impl Sql {
    /// Wraps SQL text built by this module's functions.
    pub(crate) fn new(text: String) -> Self {
        Self(text)
    }

    /// The SQL text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sql {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_double_quotes() {
        assert_eq!(ident("plain").unwrap(), r#""plain""#);
        assert_eq!(ident(r#"a"b"#).unwrap(), r#""a""b""#);
        assert_eq!(
            ident("x'); drop table t; --").unwrap(),
            r#""x'); drop table t; --""#
        );
        assert_eq!(ident("Ünïcode name").unwrap(), "\"Ünïcode name\"");
        assert_eq!(ident(""), Err(QuoteError::EmptyIdentifier));
        assert!(ident("a\0b").is_err());
    }

    #[test]
    fn literals_double_single_quotes() {
        assert_eq!(literal("O'Brien").unwrap(), "'O''Brien'");
        assert_eq!(literal(r"back\slash").unwrap(), r"'back\\slash'");
        assert_eq!(
            literal(r"x\'; drop table t; --").unwrap(),
            r"'x\\''; drop table t; --'"
        );
        assert_eq!(literal("").unwrap(), "''");
        assert!(literal("\0").is_err());
    }

    #[test]
    fn typed_literals_cast_quoted_text() {
        use crate::catalog::RedshiftType as T;
        assert_eq!(
            typed_literal(&T::Timestamp, "2024-01-01 00:00:00.5").unwrap(),
            "CAST('2024-01-01 00:00:00.5' AS TIMESTAMP)"
        );
        assert_eq!(
            typed_literal(
                &T::Decimal {
                    precision: 38,
                    scale: 2
                },
                "-1.50"
            )
            .unwrap(),
            "CAST('-1.50' AS DECIMAL(38,2))"
        );
        assert_eq!(typed_literal(&T::Varchar, "it's").unwrap(), "'it''s'");
        assert_eq!(
            typed_literal(&T::BigInt, "1' OR '1").unwrap(),
            "CAST('1'' OR ''1' AS BIGINT)"
        );
    }

    #[test]
    fn literal_of_a_select_quotes_twice() {
        let select = format!(
            "SELECT {} FROM t WHERE c = {}",
            ident("O'x").unwrap(),
            literal("it's").unwrap()
        );
        assert_eq!(
            literal(&select).unwrap(),
            r#"'SELECT "O''x" FROM t WHERE c = ''it''''s'''"#
        );
    }
}
