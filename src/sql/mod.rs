//! The one quoting module: every piece of SQL that redshift-flight sends to Redshift is an [`Sql`]
//! value, and an [`Sql`] can only be assembled from `&'static str` fragments written in this
//! program, quoted identifiers, quoted literals and integers. Its constructor is private, so SQL
//! built elsewhere by `format!` (pasting user text) does not compile.
//!
//! An identifier is wrapped in `"` with embedded `"` doubled (backslashes are ordinary characters
//! in identifiers). A string literal is wrapped in `'` with embedded `'` doubled *and* embedded `\`
//! doubled: Redshift string literals process backslash escapes (like PostgreSQL before 9.1 or with
//! `standard_conforming_strings = off`), so an undoubled backslash could escape the closing quote.
//! `UNLOAD ('...')` takes its SELECT as a string literal, so the finished SELECT is quoted once
//! more with [`Sql::quoted`]. NUL cannot be represented in either form and is rejected.
//!
//! This module is a leaf: it imports nothing from the crate. Typed literals and select expressions
//! (which know Redshift types) live in `crate::plan`; catalog queries in `crate::catalog::queries`.

pub mod query;

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
    /// Text offered as a number is not a plain decimal number.
    #[error("{text:?} is not a plain decimal number")]
    NotANumber {
        /// The text.
        text: String,
    },
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

/// SQL text assembled only from static fragments, quoted identifiers and literals, and integers.
/// Its `Display` is the SQL.
///
/// Logging a [`Sql`] is safe: it holds catalog identifiers and typed values, never credentials
/// (the IAM role ARN is not a secret).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sql(String);

/// What may be appended to an [`Sql`]: a `&'static str` fragment written in this program, or
/// another [`Sql`].
pub trait Fragment {
    /// Appends the fragment's text to `out`.
    fn append_to(self, out: &mut String);
}

impl Fragment for &'static str {
    fn append_to(self, out: &mut String) {
        out.push_str(self);
    }
}

impl Fragment for &Sql {
    fn append_to(self, out: &mut String) {
        out.push_str(&self.0);
    }
}

impl Fragment for Sql {
    fn append_to(self, out: &mut String) {
        out.push_str(&self.0);
    }
}

impl From<&'static str> for Sql {
    fn from(fragment: &'static str) -> Self {
        Self(fragment.to_string())
    }
}

impl Sql {
    /// A quoted identifier.
    pub fn ident(name: &str) -> Result<Self, QuoteError> {
        ident(name).map(Self)
    }

    /// A quoted string literal.
    pub fn literal(value: &str) -> Result<Self, QuoteError> {
        literal(value).map(Self)
    }

    /// A quoted schema-qualified name.
    pub fn qualified(schema: &str, table: &str) -> Result<Self, QuoteError> {
        qualified(schema, table).map(Self)
    }

    /// An integer, as its decimal digits (integers need no quoting).
    pub fn int(value: impl Into<i128>) -> Self {
        Self(value.into().to_string())
    }

    /// A plain decimal number (`-12.50`: an optional sign, digits, an optional fraction), as is.
    pub fn decimal(text: &str) -> Result<Self, QuoteError> {
        let digits = text.strip_prefix('-').unwrap_or(text);
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let is_digit = |b: u8| b.is_ascii_digit();
        if !int.is_empty() && int.bytes().all(is_digit) && frac.bytes().all(is_digit) {
            Ok(Self(text.to_string()))
        } else {
            Err(QuoteError::NotANumber {
                text: text.to_string(),
            })
        }
    }

    /// This SQL as one string literal: what `UNLOAD ('...')` takes as its query.
    pub fn quoted(&self) -> Result<Self, QuoteError> {
        Self::literal(&self.0)
    }

    /// Appends `fragment`.
    pub fn push(&mut self, fragment: impl Fragment) -> &mut Self {
        fragment.append_to(&mut self.0);
        self
    }

    /// `self` followed by `fragment`.
    pub fn then(mut self, fragment: impl Fragment) -> Self {
        self.push(fragment);
        self
    }

    /// `parts` separated by `separator`.
    pub fn join(parts: impl IntoIterator<Item = Sql>, separator: &'static str) -> Self {
        let mut out = Self::default();
        for (i, part) in parts.into_iter().enumerate() {
            if i > 0 {
                out.push(separator);
            }
            out.push(part);
        }
        out
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

/// Concatenates fragments (`&'static str`, [`Sql`] or `&Sql`) into one [`Sql`]:
/// `sql!("SELECT MAX(", &column, ") FROM ", &table)`.
macro_rules! sql {
    ($($fragment:expr),* $(,)?) => {{
        let mut out = $crate::sql::Sql::default();
        $( out.push($fragment); )*
        out
    }};
}
pub(crate) use sql;

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
    fn fragments_identifiers_and_literals_concatenate() {
        let column = Sql::ident("O'x").unwrap();
        let select = sql!(
            "SELECT ",
            &column,
            " FROM t WHERE c = ",
            Sql::literal("it's").unwrap(),
            " LIMIT ",
            Sql::int(5u8)
        );
        assert_eq!(
            select.as_str(),
            r#"SELECT "O'x" FROM t WHERE c = 'it''s' LIMIT 5"#
        );
        assert_eq!(
            Sql::join([Sql::from("a"), Sql::int(-1i64), column], ", ").as_str(),
            r#"a, -1, "O'x""#
        );
    }

    #[test]
    fn only_plain_decimals_are_numbers() {
        for good in ["0", "12", "-1.50", "0.000001", "1."] {
            assert_eq!(Sql::decimal(good).unwrap().as_str(), good);
        }
        for bad in ["", "-", ".5", "1e5", "1 OR 1=1", "1;", "--1", "1.2.3"] {
            assert!(Sql::decimal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_select_quoted_for_unload_is_quoted_twice() {
        let select = sql!(
            "SELECT ",
            Sql::ident("O'x").unwrap(),
            " FROM t WHERE c = ",
            Sql::literal("it's").unwrap()
        );
        assert_eq!(
            select.quoted().unwrap().as_str(),
            r#"'SELECT "O''x" FROM t WHERE c = ''it''''s'''"#
        );
    }
}
