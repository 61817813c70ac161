//! Placeholders of a prepared statement: `?` (numbered in the order they appear) or `$1`, `$2`,
//! ... (not both kinds in one query, every number from 1 to the highest used). They are found
//! in the rendered, validated SQL by the tokenizer (so a `'?'` or `'$1'` inside a string literal
//! or a quoted name is not one), and replaced there by SQL the caller built with the quoting
//! module.

use sqlparser::dialect::RedshiftSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::{QueryError, unsupported};
use crate::sql::Sql;

/// The most parameters a statement may take (PostgreSQL's protocol limit).
const MAX_PARAMETERS: usize = 65_535;

/// Accepts `$n` (`n` from 1 to [`MAX_PARAMETERS`]; `?` was numbered before parsing, see
/// [`number_questions`]); refuses `:name`, `@x` and the like.
pub(super) fn check_placeholder(text: &str) -> Result<(), QueryError> {
    number(text).map(|_| ())
}

/// The number of `$n`.
fn number(text: &str) -> Result<usize, QueryError> {
    match text.strip_prefix('$').map(str::parse::<usize>) {
        Some(Ok(n)) if (1..=MAX_PARAMETERS).contains(&n) => Ok(n),
        _ => Err(unsupported(format!(
            "the placeholder {text}: write ? or $1, $2, ... (up to ${MAX_PARAMETERS})"
        ))),
    }
}

/// Byte ranges of the tokens of `sql` that `pick` keeps, with what it returned, in text order.
fn locate<T>(
    sql: &str,
    mut pick: impl FnMut(&Token) -> Option<T>,
) -> Result<Vec<(std::ops::Range<usize>, T)>, QueryError> {
    let tokens = Tokenizer::new(&RedshiftSqlDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| QueryError::Parse {
            message: e.to_string(),
        })?;
    // Byte offset of each line's start (locations are 1-based lines and character columns).
    let mut line_starts = vec![0];
    line_starts.extend(sql.match_indices('\n').map(|(at, _)| at + 1));
    let offset = |line: u64, column: u64| -> Option<usize> {
        let start = *line_starts.get(usize::try_from(line).ok()?.checked_sub(1)?)?;
        let column = usize::try_from(column).ok()?.checked_sub(1)?;
        sql[start..]
            .char_indices()
            .map(|(at, _)| start + at)
            .chain(std::iter::once(sql.len()))
            .nth(column)
    };
    let mut found = Vec::new();
    for token in tokens {
        let Some(picked) = pick(&token.token) else {
            continue;
        };
        let text = token.token.to_string();
        let start = offset(token.span.start.line, token.span.start.column);
        match start.map(|start| start..start + text.len()) {
            Some(range) if sql.get(range.clone()) == Some(text.as_str()) => {
                found.push((range, picked));
            }
            _ => {
                return Err(unsupported(
                    "a placeholder the validator could not locate (please report it)",
                ));
            }
        }
    }
    Ok(found)
}

/// The client's text with its `?` placeholders numbered `$1`, `$2`, ... in the order they appear
/// (Redshift's dialect reads `?` as an operator); refuses `?` mixed with `$n`.
pub(super) fn number_questions(text: &str) -> Result<String, QueryError> {
    let questions = locate(text, |token| matches!(token, Token::Question).then_some(()))?;
    if questions.is_empty() {
        return Ok(text.to_string());
    }
    let numbered = locate(text, |token| {
        matches!(token, Token::Placeholder(p) if p.starts_with('$')).then_some(())
    })?;
    if !numbered.is_empty() {
        return Err(unsupported(
            "both ? and $n placeholders in one query; use one kind",
        ));
    }
    let mut out = String::with_capacity(text.len() + questions.len() * 4);
    let mut at = 0;
    for (n, (range, ())) in questions.into_iter().enumerate() {
        out.push_str(&text[at..range.start]);
        out.push_str(&format!("${}", n + 1));
        at = range.end;
    }
    out.push_str(&text[at..]);
    Ok(out)
}

/// Byte ranges and numbers of the placeholders of validated SQL, in text order.
fn placeholders(sql: &str) -> Result<Vec<(std::ops::Range<usize>, usize)>, QueryError> {
    locate(sql, |token| match token {
        Token::Placeholder(text) => Some(number(text)),
        _ => None,
    })?
    .into_iter()
    .map(|(range, n)| Ok((range, n?)))
    .collect()
}

/// How many parameters `sql` takes; `$n` placeholders must use every number up to the highest.
pub(super) fn count(sql: &str) -> Result<usize, QueryError> {
    let found = placeholders(sql)?;
    let highest = found.iter().map(|(_, n)| *n).max().unwrap_or(0);
    if let Some(missing) = (1..=highest).find(|n| !found.iter().any(|(_, m)| m == n)) {
        return Err(unsupported(format!(
            "placeholders that skip ${missing}; number them $1, $2, ... without gaps"
        )));
    }
    Ok(highest)
}

/// `sql` with each placeholder replaced by `value(its number)`.
pub(super) fn splice(
    sql: &str,
    mut value: impl FnMut(usize) -> Result<Sql, QueryError>,
) -> Result<Sql, QueryError> {
    let mut out = String::with_capacity(sql.len());
    let mut at = 0;
    for (range, n) in placeholders(sql)? {
        out.push_str(&sql[at..range.start]);
        out.push_str(value(n)?.as_str());
        at = range.end;
    }
    out.push_str(&sql[at..]);
    Ok(Sql(out))
}

#[cfg(test)]
mod tests {
    use super::super::{QueryPolicy, validate};
    use super::*;

    fn policy() -> QueryPolicy {
        QueryPolicy::new().with_parameters(true)
    }

    #[test]
    fn placeholders_are_refused_unless_allowed() {
        assert!(validate("SELECT a FROM t WHERE b = ?", &QueryPolicy::new()).is_err());
        assert!(validate("SELECT a FROM t WHERE b = $1", &QueryPolicy::new()).is_err());
        let q = validate("SELECT a FROM t WHERE b = ? AND c = '?'", &policy()).unwrap();
        assert_eq!(q.parameter_count(), 1);
        assert_eq!(
            q.sql_numbered().unwrap().as_str(),
            "SELECT a FROM t WHERE b = $1 AND c = '?'"
        );
    }

    #[test]
    fn binds_quoted_values_in_order() {
        let q = validate(
            "SELECT a FROM t WHERE b = ? AND c = -?\nAND d = ?",
            &policy(),
        )
        .unwrap();
        assert_eq!(q.parameter_count(), 3);
        let values = [
            Sql::literal("x'; DROP TABLE t; --\\").unwrap(),
            Sql::int(-5),
            Sql::from("NULL"),
        ];
        assert_eq!(
            q.bind(&values).unwrap().as_str(),
            "SELECT a FROM t WHERE b = ('x''; DROP TABLE t; --\\\\') AND c = -(-5) AND d = (NULL)"
        );
        assert!(matches!(
            q.bind(&values[..2]),
            Err(QueryError::Parameters {
                expected: 3,
                bound: 2
            })
        ));
        let numbered = validate("SELECT $2 AS x, $1 AS y, $2 AS z", &policy()).unwrap();
        assert_eq!(numbered.parameter_count(), 2);
        assert_eq!(
            numbered.bind(&[Sql::int(1), Sql::int(2)]).unwrap().as_str(),
            "SELECT (2) AS x, (1) AS y, (2) AS z"
        );
    }

    #[test]
    fn mixed_gapped_and_named_placeholders_are_refused() {
        for text in [
            "SELECT ? AS a, $1 AS b",
            "SELECT $1 AS a, $3 AS b",
            "SELECT $0 AS a",
            "SELECT :name AS a",
        ] {
            assert!(validate(text, &policy()).is_err(), "{text}");
        }
    }
}
