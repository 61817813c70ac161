//! Row filters of plain Flight reads (the command's `"where"`): one SQL expression over one
//! table's columns, checked by the same walk, literal checks and second pass as whole queries
//! (`walk.rs`, `expr.rs`, `lexical.rs`, the `Guard`), plus what a filter may not do: read another
//! relation (subqueries, EXISTS, IN (SELECT ...)), aggregate, use a window, name anything but a
//! column of the table, or hide text in a comment. What goes to Redshift is rendered from the
//! AST, never the client's text, and wrapped in parentheses so it composes with other conditions.
//! Imports only external crates and `super::` items, like the rest of the validator.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, Function, FunctionArgumentClause, FunctionArguments, InTarget, ObjectName,
    ObjectNamePart, Query, Statement, Visit, Visitor,
};
use sqlparser::dialect::RedshiftSqlDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

use super::{Guard, QueryError, QueryPolicy, fold, on_validator_thread, unsupported, walk};

/// Aggregate and window functions (on the default allowlist or not): refused in a filter, which
/// is a condition on one row.
const AGGREGATES_AND_WINDOWS: &[&str] = &[
    "any_value",
    "approximate_percentile_disc",
    "avg",
    "bit_and",
    "bit_or",
    "bool_and",
    "bool_or",
    "count",
    "cume_dist",
    "dense_rank",
    "first_value",
    "grouping",
    "lag",
    "last_value",
    "lead",
    "listagg",
    "max",
    "median",
    "min",
    "nth_value",
    "ntile",
    "percent_rank",
    "percentile_cont",
    "percentile_disc",
    "rank",
    "ratio_to_report",
    "row_number",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "string_agg",
    "sum",
    "var_pop",
    "var_samp",
    "variance",
];

/// Parses `text` as one SQL expression over `columns` (a table's column names, exactly as the
/// catalog has them) and returns it rendered from the AST in parentheses, ready to be ANDed into
/// a WHERE clause. Unquoted identifiers fold to lower case, quoted ones stay exact; either must
/// then equal a column's name. Functions must be on `policy`'s allowlist and not be aggregates
/// or window functions; subqueries, relations, qualified names, comments and placeholders are
/// refused; literals follow the rules of [`validate`](super::validate), as do the size limit and
/// the nesting limit (the work runs on the validator's big-stack thread).
pub fn validate_predicate(
    text: &str,
    columns: &[&str],
    policy: &QueryPolicy,
) -> Result<super::super::Sql, QueryError> {
    if text.len() > policy.max_bytes {
        return Err(QueryError::TooLong {
            bytes: text.len(),
            limit: policy.max_bytes,
        });
    }
    let sql = on_validator_thread(text, || predicate_here(text, columns, policy))?;
    Ok(super::super::Sql(format!("({sql})")))
}

/// [`validate_predicate`] on the current thread, whose stack must be large enough for `text`.
fn predicate_here(
    text: &str,
    columns: &[&str],
    policy: &QueryPolicy,
) -> Result<String, QueryError> {
    refuse_comments(text)?;
    let expr = parse_one_expr(text)?;
    // The walk bounds the depth first; only then may the recursive visitors and Display run.
    walk::Walker::new(policy).expr(&expr)?;
    let mut filter = Filter {
        policy,
        columns,
        error: None,
    };
    if expr.visit(&mut filter).is_break() {
        return Err(filter
            .error
            .unwrap_or_else(|| unsupported("a node the validator did not classify")));
    }
    // The whole-query pass too: literals, identifiers and function names everywhere (no
    // relation is known, so any relation is refused here as well).
    let (no_relations, no_ctes) = (BTreeSet::new(), BTreeSet::new());
    let mut guard = Guard {
        policy,
        relations: &no_relations,
        ctes: &no_ctes,
        statements: 0,
        error: None,
    };
    if expr.visit(&mut guard).is_break() {
        return Err(guard
            .error
            .unwrap_or_else(|| unsupported("a node the validator did not classify")));
    }
    let sql = expr.to_string();
    match parse_one_expr(&sql) {
        Ok(again) if again == expr => Ok(sql),
        _ => Err(unsupported(
            "a filter that does not read back the same after rendering (please report it)",
        )),
    }
}

fn parse_error(e: ParserError) -> QueryError {
    QueryError::Parse {
        message: match e {
            ParserError::RecursionLimitExceeded => "the filter is nested too deeply".to_string(),
            ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
        },
    }
}

/// Exactly one expression and then the end of the text (a `;` or a second clause is refused).
fn parse_one_expr(text: &str) -> Result<Expr, QueryError> {
    let dialect = RedshiftSqlDialect {};
    let mut parser = Parser::new(&dialect)
        .try_with_sql(text)
        .map_err(parse_error)?;
    let expr = parser.parse_expr().map_err(parse_error)?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(QueryError::Parse {
            message: format!(
                "expected one expression; found {} after it (at {})",
                next.token, next.span.start
            ),
        });
    }
    Ok(expr)
}

/// A filter is a short expression: a comment in it can only be an attempt to hide something.
fn refuse_comments(text: &str) -> Result<(), QueryError> {
    let tokens = Tokenizer::new(&RedshiftSqlDialect {}, text)
        .tokenize()
        .map_err(|e| QueryError::Parse {
            message: e.to_string(),
        })?;
    let comment = tokens.iter().any(|t| {
        matches!(
            t,
            Token::Whitespace(
                Whitespace::SingleLineComment { .. } | Whitespace::MultiLineComment(_)
            )
        )
    });
    if comment {
        return Err(unsupported("comments in a filter"));
    }
    Ok(())
}

/// What a filter may not contain beyond what a query may not: see the module doc.
struct Filter<'a> {
    policy: &'a QueryPolicy,
    columns: &'a [&'a str],
    error: Option<QueryError>,
}

impl Filter<'_> {
    fn refuse(&mut self, error: QueryError) -> ControlFlow<()> {
        self.error = Some(error);
        ControlFlow::Break(())
    }

    fn function(&self, function: &Function) -> Result<(), QueryError> {
        super::lexical::check_function_name(self.policy, &function.name)?;
        let name = last_part(&function.name);
        let clauses = match &function.args {
            FunctionArguments::List(list) => list
                .clauses
                .iter()
                .any(|c| !matches!(c, FunctionArgumentClause::IgnoreOrRespectNulls(_))),
            FunctionArguments::None | FunctionArguments::Subquery(_) => false,
        };
        if function.over.is_some()
            || function.filter.is_some()
            || !function.within_group.is_empty()
            || clauses
            || name.is_some_and(|n| AGGREGATES_AND_WINDOWS.contains(&n.as_str()))
        {
            return Err(unsupported(format!(
                "aggregate and window functions in a filter ({}): a filter is a condition on \
                 one row",
                function.name
            )));
        }
        Ok(())
    }
}

fn last_part(name: &ObjectName) -> Option<String> {
    match name.0.last()? {
        ObjectNamePart::Identifier(ident) => Some(fold(ident).to_lowercase()),
        ObjectNamePart::Function(_) => None,
    }
}

const NO_SUBQUERIES: &str =
    "subqueries in a filter (SELECT, EXISTS, IN (SELECT ...)): a filter reads only its own table";

impl Visitor for Filter<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.refuse(unsupported(NO_SUBQUERIES))
    }

    fn pre_visit_statement(&mut self, _statement: &Statement) -> ControlFlow<()> {
        self.refuse(unsupported(NO_SUBQUERIES))
    }

    fn pre_visit_relation(&mut self, name: &ObjectName) -> ControlFlow<()> {
        self.refuse(unsupported(format!(
            "table references in a filter ({name}): a filter reads only its own table"
        )))
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        let result = match expr {
            Expr::Identifier(ident) => {
                let name = fold(ident);
                if self.columns.contains(&name.as_str()) {
                    Ok(())
                } else {
                    Err(unsupported(format!(
                        "{ident} in a filter: the table has no column {name:?} (unquoted names \
                         fold to lower case; quote a name to keep its case)"
                    )))
                }
            }
            Expr::CompoundIdentifier(idents) => Err(unsupported(format!(
                "qualified names in a filter ({}); name the table's columns alone",
                Expr::CompoundIdentifier(idents.clone())
            ))),
            Expr::CompoundFieldAccess { .. } => Err(unsupported(
                "field access in a filter; write column[index] or column.field on a SUPER column",
            )),
            Expr::Subquery(_)
            | Expr::Exists { .. }
            | Expr::In {
                target: InTarget::Subquery(_),
                ..
            } => Err(unsupported(NO_SUBQUERIES)),
            Expr::GroupingSets(_) | Expr::Cube(_) | Expr::Rollup(_) => {
                Err(unsupported("GROUPING SETS, CUBE and ROLLUP in a filter"))
            }
            Expr::Function(function) => self.function(function),
            _ => Ok(()),
        };
        match result {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => self.refuse(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: &[&str] = &["id", "name", "Mixed", "at"];

    fn check(text: &str) -> Result<String, QueryError> {
        validate_predicate(text, COLUMNS, &QueryPolicy::default()).map(|s| s.as_str().to_string())
    }

    #[test]
    fn accepted_filters_render_from_the_ast() {
        for (text, rendered) in [
            ("id = 1", "(id = 1)"),
            ("ID > 1 and name like 'a%'", "(ID > 1 AND name LIKE 'a%')"),
            (r#""Mixed" IS NOT NULL"#, r#"("Mixed" IS NOT NULL)"#),
            ("lower(name) IN ('a', 'b')", "(lower(name) IN ('a', 'b'))"),
            (
                "at >= '2024-01-01'::timestamp  OR  id BETWEEN 1 AND 9",
                "(at >= '2024-01-01'::TIMESTAMP OR id BETWEEN 1 AND 9)",
            ),
            ("(id % 2 = 0)", "((id % 2 = 0))"),
            (
                "EXTRACT(YEAR FROM at) = 2024",
                "(EXTRACT(YEAR FROM at) = 2024)",
            ),
            ("name SIMILAR TO 'a%'", "(name SIMILAR TO 'a%')"),
            (
                "coalesce(name, 'it''s') ILIKE 'a%'",
                "(coalesce(name, 'it''s') ILIKE 'a%')",
            ),
            ("at < DATE '2024-01-01'", "(at < DATE '2024-01-01')"),
            ("id = -1.5e3", "(id = -1.5e3)"),
            ("name[0] = 1", "(name[0] = 1)"),
            (
                "CASE WHEN id > 1 THEN true ELSE false END",
                "(CASE WHEN id > 1 THEN true ELSE false END)",
            ),
        ] {
            assert_eq!(check(text).as_deref(), Ok(rendered), "{text}");
        }
    }

    #[test]
    fn refuses_what_a_filter_may_not_do() {
        let deep_chain = format!("id = 1{}", " AND id = 1".repeat(2_000));
        let deep_parens = format!("{}id = 1{}", "(".repeat(500), ")".repeat(500));
        for text in [
            "id IN (SELECT id FROM t)",
            "EXISTS (SELECT 1)",
            "(SELECT max(id) FROM t) = 1",
            "1=1; DROP TABLE t",
            "id = 1 --",
            "id = 1 /* x */",
            "id = 1 id",
            "nope = 1",
            "mixed = 1",
            "\"ID\" = 1",
            "t.id = 1",
            "count(*) > 1",
            "max(id) = 1",
            "row_number() OVER () = 1",
            "pg_sleep(1) IS NULL",
            "pg_catalog.pg_sleep(1) IS NULL",
            r"name = 'a\'",
            "name = 'a\0'",
            "name = E'x'",
            "id = $1",
            "id = ?",
            "name = $$x$$",
            "name = X'00'",
            "id = 1;",
            "id.x = 1",
            "nope[0] = 1",
            "",
            &deep_chain,
            &deep_parens,
        ] {
            assert!(check(text).is_err(), "accepted {text:?}: {:?}", check(text));
        }
        let limited = QueryPolicy::default().with_max_bytes(10);
        assert!(matches!(
            validate_predicate("id = 1 OR id = 2", COLUMNS, &limited),
            Err(QueryError::TooLong { .. })
        ));
        assert!(matches!(
            check("pg_sleep(1) IS NULL"),
            Err(QueryError::Function { .. })
        ));
    }
}
