//! Catalog statements that Redshift accepts and PostgreSQL does not, turned into calls of the
//! functions [`crate::compat_catalog`] installs, and the one name Redshift's catalog answers
//! differently for:
//!
//! * `CREATE [OR REPLACE] VIEW name AS select WITH NO SCHEMA BINDING` (a late-binding view) is
//!   parsed and becomes `SELECT redshift_emulator.create_late_binding_view(schema, name, select,
//!   replace)`;
//! * `CREATE EXTERNAL SCHEMA [IF NOT EXISTS] name FROM DATA CATALOG DATABASE 'db' ...` becomes
//!   `SELECT redshift_emulator.create_external_schema(name, db, options)` (the PostgreSQL schema
//!   of that name then holds the external tables);
//! * `CREATE DATABASE name FROM DATASHARE share OF [ACCOUNT 'id'] NAMESPACE 'ns'` (a consumer
//!   database) becomes `SELECT redshift_emulator.create_datashare_database(name, share, ns)`:
//!   the consumer database's schema `s` is the PostgreSQL schema named `name.s` (one name, with
//!   the dot), which Redshift's `svv_redshift_*` views describe under `database_name = name`;
//! * `pg_attribute` / `pg_catalog.pg_attribute` in any other statement reads
//!   `redshift_emulator.pg_attribute`, which has no columns of late-binding views, external
//!   tables or consumer databases (Redshift keeps those elsewhere), and `pg_namespace` reads
//!   `redshift_emulator.pg_namespace`, without the consumer databases' schemas;
//! * a three-part name `db.schema.relation` whose `db` is a consumer database becomes
//!   `"db.schema".relation` (in forwarded statements and in UNLOAD's SELECT).
//!
//! The consumer databases' names are kept in this process ([`remember_datashares`]; read from
//! `redshift_emulator.datashare_databases` at start-up and added to by `CREATE DATABASE ... FROM
//! DATASHARE`): an emulator started before another process created one needs a restart to
//! resolve its three-part names.
//!
//! May import: `crate::sql` (the lexer).

use std::collections::BTreeSet;
use std::sync::RwLock;

use crate::sql::{Token, TokenKind, tokenize};

/// The consumer databases' names, lower case.
static DATASHARES: RwLock<BTreeSet<String>> = RwLock::new(BTreeSet::new());

/// Adds consumer databases' names (their three-part names are rewritten from now on).
pub(crate) fn remember_datashares(names: impl IntoIterator<Item = String>) {
    let mut set = DATASHARES.write().unwrap_or_else(|e| e.into_inner());
    set.extend(names.into_iter().map(|n| n.to_lowercase()));
}

fn is_datashare(name: &str) -> bool {
    DATASHARES
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&name.to_lowercase())
}

/// A statement-level rewrite of `text` (tokens `tokens`), or `None` when it is not one of the
/// statements this module handles.
pub(crate) fn rewrite_statement(text: &str, tokens: &[Token]) -> Option<String> {
    late_binding_view(text, tokens)
        .or_else(|| external_schema(text, tokens))
        .or_else(|| datashare_database(text, tokens))
}

/// `text` with its references to `pg_attribute` and `pg_namespace` pointed at the emulator's
/// views, and its three-part names of consumer databases at their PostgreSQL schemas.
pub(crate) fn rewrite_relations(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let has_datashares = !DATASHARES
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .is_empty();
    if !lower.contains("pg_attribute") && !lower.contains("pg_namespace") && !has_datashares {
        return text.to_owned();
    }
    let Ok(tokens) = tokenize(text) else {
        return text.to_owned();
    };
    let mut out = String::with_capacity(text.len() + 32);
    let mut copied = 0;
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        let after_dot = i >= 1 && tokens[i - 1].kind == TokenKind::Dot;
        let catalog_view = ["pg_attribute", "pg_namespace"]
            .into_iter()
            .find(|name| t.is_word(text, name));
        if let Some(name) = catalog_view {
            // A column of that name (`x.pg_attribute`) stays; `pg_catalog.pg_attribute` is
            // replaced whole.
            let start = if !after_dot {
                Some(t.start)
            } else if i >= 2
                && tokens[i - 2].is_word(text, "pg_catalog")
                && !(i >= 3 && tokens[i - 3].kind == TokenKind::Dot)
            {
                Some(tokens[i - 2].start)
            } else {
                None
            };
            if let Some(start) = start {
                out.push_str(&text[copied..start]);
                out.push_str("redshift_emulator.");
                out.push_str(name);
                copied = t.end;
            }
            i += 1;
            continue;
        }
        // db . schema . relation, not itself qualified
        if has_datashares
            && !after_dot
            && tokens.get(i + 1).map(|d| d.kind) == Some(TokenKind::Dot)
            && tokens.get(i + 3).map(|d| d.kind) == Some(TokenKind::Dot)
            && let (Some(db), Some(schema), Some(relation)) = (
                ident(t, text),
                tokens.get(i + 2).and_then(|x| ident(x, text)),
                tokens.get(i + 4).and_then(|x| ident(x, text)),
            )
            && is_datashare(&db)
        {
            out.push_str(&text[copied..t.start]);
            out.push_str(&quote(&format!("{db}.{schema}")));
            out.push('.');
            out.push_str(&quote(&relation));
            copied = tokens[i + 4].end;
            i += 5;
            continue;
        }
        i += 1;
    }
    out.push_str(&text[copied..]);
    out
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The words of `tokens` up to a trailing `;`, with the index of each.
fn significant(tokens: &[Token]) -> &[Token] {
    let mut end = tokens.len();
    while end > 0 && tokens[end - 1].kind == TokenKind::Semicolon {
        end -= 1;
    }
    &tokens[..end]
}

/// An identifier's value: unquoted words fold to lower case, quoted ones keep their text.
fn ident(token: &Token, text: &str) -> Option<String> {
    match token.kind {
        TokenKind::Word => Some(token.text(text).to_ascii_lowercase()),
        TokenKind::QuotedIdent => {
            let inner = token.text(text);
            Some(inner[1..inner.len() - 1].replace("\"\"", "\""))
        }
        _ => None,
    }
}

/// A string literal's value (`'...'` with `''`); `None` for other tokens.
fn string_value(token: &Token, text: &str) -> Option<String> {
    let raw = token.text(text);
    (token.kind == TokenKind::String && raw.starts_with('\'') && raw.len() >= 2)
        .then(|| raw[1..raw.len() - 1].replace("''", "'"))
}

fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A possibly schema-qualified name starting at `tokens[i]`: (schema, name, next index).
fn qualified_name(
    tokens: &[Token],
    text: &str,
    i: usize,
) -> Option<(Option<String>, String, usize)> {
    let first = ident(tokens.get(i)?, text)?;
    if tokens.get(i + 1).map(|t| t.kind) == Some(TokenKind::Dot) {
        let second = ident(tokens.get(i + 2)?, text)?;
        return Some((Some(first), second, i + 3));
    }
    Some((None, first, i + 1))
}

fn late_binding_view(text: &str, tokens: &[Token]) -> Option<String> {
    let tokens = significant(tokens);
    let n = tokens.len();
    let words = ["with", "no", "schema", "binding"];
    if n < 8
        || !tokens[0].is_word(text, "create")
        || !words
            .iter()
            .enumerate()
            .all(|(k, w)| tokens[n - 4 + k].is_word(text, w))
    {
        return None;
    }
    let (replace, mut i) = if tokens[1].is_word(text, "or") && tokens[2].is_word(text, "replace") {
        (true, 3)
    } else {
        (false, 1)
    };
    if !tokens.get(i)?.is_word(text, "view") {
        return None;
    }
    i += 1;
    let (schema, name, next) = qualified_name(tokens, text, i)?;
    if !tokens.get(next)?.is_word(text, "as") || next + 1 >= n - 4 {
        return None;
    }
    let body = text[tokens[next + 1].start..tokens[n - 4].start].trim();
    Some(format!(
        "SELECT redshift_emulator.create_late_binding_view({}, {}, {}, {replace})",
        schema
            .as_deref()
            .map_or_else(|| "NULL".to_string(), literal),
        literal(&name),
        literal(body),
    ))
}

fn external_schema(text: &str, tokens: &[Token]) -> Option<String> {
    let tokens = significant(tokens);
    if tokens.len() < 4
        || !tokens[0].is_word(text, "create")
        || !tokens[1].is_word(text, "external")
        || !tokens[2].is_word(text, "schema")
    {
        return None;
    }
    let mut i = 3;
    if tokens.get(i)?.is_word(text, "if")
        && tokens.get(i + 1)?.is_word(text, "not")
        && tokens.get(i + 2)?.is_word(text, "exists")
    {
        i += 3;
    }
    let name = ident(tokens.get(i)?, text)?;
    let rest = &tokens[i + 1..];
    // DATABASE 'name' names the Glue database; without one it is the schema's own name.
    let database = rest
        .windows(2)
        .find(|w| w[0].is_word(text, "database"))
        .and_then(|w| string_value(&w[1], text))
        .unwrap_or_else(|| name.clone());
    let options = rest
        .first()
        .map(|t| {
            text[t.start..tokens[tokens.len() - 1].end]
                .trim()
                .to_string()
        })
        .unwrap_or_default();
    Some(format!(
        "SELECT redshift_emulator.create_external_schema({}, {}, {})",
        literal(&name),
        literal(&database),
        literal(&options),
    ))
}

fn datashare_database(text: &str, tokens: &[Token]) -> Option<String> {
    let tokens = significant(tokens);
    if tokens.len() < 6
        || !tokens[0].is_word(text, "create")
        || !tokens[1].is_word(text, "database")
        || !tokens[3].is_word(text, "from")
        || !tokens[4].is_word(text, "datashare")
    {
        return None;
    }
    let name = ident(&tokens[2], text)?;
    let share = ident(&tokens[5], text)?;
    let namespace = tokens
        .windows(2)
        .find(|w| w[0].is_word(text, "namespace"))
        .and_then(|w| string_value(&w[1], text))
        .unwrap_or_default();
    remember_datashares([name.clone()]);
    Some(format!(
        "SELECT redshift_emulator.create_datashare_database({}, {}, {})",
        literal(&name),
        literal(&share),
        literal(&namespace),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(sql: &str) -> Option<String> {
        rewrite_statement(sql, &tokenize(sql).unwrap())
    }

    #[test]
    fn late_binding_views_are_recorded() {
        assert_eq!(
            rewrite("create view Sales.\"My View\" as select id, 'it''s' from sales.t with no schema binding;").unwrap(),
            "SELECT redshift_emulator.create_late_binding_view('sales', 'My View', 'select id, ''it''''s'' from sales.t', false)"
        );
        assert_eq!(
            rewrite("CREATE OR REPLACE VIEW v AS SELECT * FROM s.t WITH NO SCHEMA BINDING")
                .unwrap(),
            "SELECT redshift_emulator.create_late_binding_view(NULL, 'v', 'SELECT * FROM s.t', true)"
        );
        assert_eq!(rewrite("create view v as select 1"), None);
        assert_eq!(rewrite("select 'with no schema binding'"), None);
    }

    #[test]
    fn external_schemas_are_recorded() {
        assert_eq!(
            rewrite("CREATE EXTERNAL SCHEMA IF NOT EXISTS Spectrum FROM DATA CATALOG DATABASE 'glue_db' IAM_ROLE 'arn:aws:iam::1:role/r' CREATE EXTERNAL DATABASE IF NOT EXISTS").unwrap(),
            "SELECT redshift_emulator.create_external_schema('spectrum', 'glue_db', 'FROM DATA CATALOG DATABASE ''glue_db'' IAM_ROLE ''arn:aws:iam::1:role/r'' CREATE EXTERNAL DATABASE IF NOT EXISTS')"
        );
        assert_eq!(rewrite("create schema spectrum"), None);
    }

    #[test]
    fn consumer_databases_are_schemas_with_a_dot() {
        assert_eq!(
            rewrite("CREATE DATABASE Sales_Db FROM DATASHARE sales_share OF ACCOUNT '123456789012' NAMESPACE 'a1b2'").unwrap(),
            "SELECT redshift_emulator.create_datashare_database('sales_db', 'sales_share', 'a1b2')"
        );
        assert_eq!(
            rewrite_relations(
                "SELECT o.id, public.t.c FROM SALES_DB.public.\"Orders\" o JOIN x.sales_db.a.b ON true"
            ),
            "SELECT o.id, public.t.c FROM \"sales_db.public\".\"Orders\" o JOIN x.sales_db.a.b ON true"
        );
        assert_eq!(
            rewrite_relations("select nspname from pg_catalog.pg_namespace"),
            "select nspname from redshift_emulator.pg_namespace"
        );
    }

    #[test]
    fn pg_attribute_reads_the_filtered_view() {
        assert_eq!(
            rewrite_relations(
                "SELECT a.attname FROM pg_catalog.pg_attribute a JOIN PG_ATTRIBUTE b ON 'pg_attribute' = x.pg_attribute"
            ),
            "SELECT a.attname FROM redshift_emulator.pg_attribute a JOIN redshift_emulator.pg_attribute b ON 'pg_attribute' = x.pg_attribute"
        );
        assert_eq!(rewrite_relations("select 1"), "select 1");
    }
}
