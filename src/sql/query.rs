//! The validator of client SQL (Flight SQL, issue 13): a query text from a client reaches Redshift
//! only as an [`Sql`](super::Sql) rendered from a parsed and checked AST, never pasted.
//!
//! [`validate`] accepts exactly one read-only query — SELECT, WITH ... SELECT, VALUES, and
//! UNION / INTERSECT / EXCEPT / MINUS of those, with ORDER BY / LIMIT / OFFSET / FETCH — parsed by
//! `sqlparser` with its Redshift dialect. The walk over the AST (`walk.rs`, `expr.rs`,
//! `lexical.rs`) is an allowlist: every struct is destructured field by field and every enum
//! matched, so a node it does not explicitly accept is refused, and a new field in a newer
//! `sqlparser` is a compile error here. Functions must be on the [`QueryPolicy`]'s allowlist. A
//! second, independent pass with `sqlparser`'s exhaustive `Visitor` re-checks every identifier,
//! literal, relation, function and nested statement; finally the rendered SQL is parsed again and
//! must give back the same AST.
//!
//! Rendering is `sqlparser`'s `Display`, which does not double backslashes and reads runs of quotes
//! inside a value as already escaped. So a string literal containing a backslash (Redshift reads it
//! as an escape) or two quotes in a row, an identifier containing `""` or `\"`, and every literal
//! form other than `'...'` strings, plain numbers, booleans and NULL are refused.
//!
//! A chain such as `1+1+...+1` or `SELECT 1 UNION SELECT 1 ...` makes an AST as deep as the chain
//! is long, and sqlparser's recursion limit does not bound it (the chain is parsed in a loop).
//! Parsing, walking and dropping such an AST recurses once per level, so [`validate`] runs on its
//! own thread whose stack grows with the text's length; the AST never leaves that thread, and what
//! it returns (the rendered SQL, the relations) is flat. Expressions nested deeper than
//! [`MAX_NESTING`] levels are refused.
//!
//! [`validate_predicate`] (`predicate.rs`) checks a plain Flight read's row filter the same way:
//! one expression over one table's columns, with no subqueries, aggregates or windows.
//!
//! This module imports only external crates and `super::` items: the quoting module stays a leaf.

mod expr;
mod functions;
mod lexical;
mod params;
mod predicate;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_hostile;
mod walk;

use std::collections::{BTreeSet, HashSet};
use std::ops::ControlFlow;

use sqlparser::ast::{Expr, Ident, ObjectName, Query, SetExpr, Statement, ValueWithSpan};
use sqlparser::ast::{Visit, Visitor};
use sqlparser::dialect::RedshiftSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, Tokenizer};

pub use predicate::validate_predicate;

/// The deepest nesting of expressions and queries accepted: a chain of 1,000 `AND`s or `+`s is
/// 1,000 levels deep (a long `IN (...)` list is not deep).
pub const MAX_NESTING: usize = 1_000;

/// The validator thread's stack: a base for the checks of an AST [`MAX_NESTING`] deep, plus room
/// to drop the deepest AST a text of that length can make. Measured in a debug build: the checks
/// need under 8 MiB, dropping `1+1+...` about 40 bytes of stack per byte of text. Only touched
/// pages cost memory; 160 MiB of address space for a 1 MiB text.
const STACK_BASE: usize = 32 << 20;
const STACK_PER_BYTE: usize = 128;

/// Settings of the validator.
#[derive(Debug, Clone)]
pub struct QueryPolicy {
    functions: HashSet<String>,
    max_bytes: usize,
    parameters: bool,
}

impl QueryPolicy {
    /// The default allowlist of functions (aggregates, window functions, math, string, date/time,
    /// conditional, casts, JSON/SUPER accessors, hashing, spatial, ... a generous list of
    /// Redshift's read-only functions, none with side effects) and a limit of 1 MiB of text.
    pub fn new() -> Self {
        Self {
            functions: functions::DEFAULT_FUNCTIONS
                .iter()
                .map(|name| name.to_string())
                .collect(),
            max_bytes: 1 << 20,
            parameters: false,
        }
    }

    /// Replace the function allowlist (lower-case names). An unquoted function name in a query is
    /// compared after folding it to lower case, a quoted one exactly; `pg_catalog.f` is accepted
    /// when `f` is. Syntax forms of the grammar (CAST, EXTRACT, SUBSTRING ... FROM, TRIM, POSITION,
    /// CEIL, FLOOR, CONVERT, CASE, AT TIME ZONE) are not functions and need no entry.
    pub fn with_functions(mut self, names: impl IntoIterator<Item = String>) -> Self {
        self.functions = names.into_iter().map(|n| n.to_lowercase()).collect();
        self
    }

    /// Adds functions (lower-case names) to the allowlist: the operator's own extensions
    /// (`flight_sql_functions`).
    pub fn allow_functions(mut self, names: impl IntoIterator<Item = String>) -> Self {
        self.functions
            .extend(names.into_iter().map(|n| n.to_lowercase()));
        self
    }

    /// Largest query text accepted in bytes (default 1 MiB).
    pub fn with_max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Accept placeholders (`?`, or `$1`, `$2`, ... but not both kinds in one query): a prepared
    /// statement's parameters, bound later with [`ValidatedQuery::bind`]. Refused by default.
    pub fn with_parameters(mut self, parameters: bool) -> Self {
        self.parameters = parameters;
        self
    }

    fn allows_function(&self, name: &str) -> bool {
        self.functions.contains(name)
    }
}

impl Default for QueryPolicy {
    fn default() -> Self {
        Self::new()
    }
}

/// A relation a query reads: schema as written (None when unqualified), name as written
/// (unquoted identifiers folded to lower case as Redshift does; quoted ones exact).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Relation {
    /// The schema, when the query names one.
    pub schema: Option<String>,
    /// The table or view.
    pub name: String,
}

/// Name prefixes of Redshift's and PostgreSQL's system tables and views.
const SYSTEM_PREFIXES: [&str; 8] = [
    "pg_", "stl_", "stv_", "svv_", "svl_", "sys_", "svcs_", "stcs_",
];

impl Relation {
    /// Whether this is a system relation: a name starting with `pg_`, `stv_`, `stl_`, `svv_`,
    /// `svl_`, `sys_`, `svcs_` or `stcs_` (in any schema, unqualified too: the search path ends in
    /// `pg_catalog`), or any relation of `information_schema`, `pg_catalog` or another `pg_*`
    /// schema. Compared without regard to case, so a quoted `"PG_CLASS"` counts too.
    pub fn is_system(&self) -> bool {
        let name = self.name.to_lowercase();
        let schema = self.schema.as_deref().map(str::to_lowercase);
        SYSTEM_PREFIXES.iter().any(|p| name.starts_with(p))
            || schema.is_some_and(|s| s == "information_schema" || s.starts_with("pg_"))
    }
}

/// One read-only query, parsed and checked. Only [`validate`] makes one.
///
/// It keeps the SQL rendered from the checked AST rather than the AST: cloning, dropping or
/// displaying an AST recurses once per level, and a flat value is safe on any thread's stack.
#[derive(Debug, Clone)]
pub struct ValidatedQuery {
    sql: String,
    relations: Vec<Relation>,
    has_outer_limit: bool,
    parameters: usize,
}

impl ValidatedQuery {
    /// Every relation the query reads (joins, subqueries, CTE bodies, set operations, IN/EXISTS
    /// subqueries, lateral/derived tables), deduplicated and sorted; CTE names are not relations.
    pub fn relations(&self) -> &[Relation] {
        &self.relations
    }

    /// The query as SQL for Redshift, rendered from the AST (not the client's text).
    pub fn sql(&self) -> super::Sql {
        super::Sql(self.sql.clone())
    }

    /// Whether the outermost query has LIMIT/OFFSET/FETCH, TOP or ORDER BY (UNLOAD needs wrapping).
    pub fn has_outer_limit(&self) -> bool {
        self.has_outer_limit
    }

    /// How many parameters the query takes (its placeholders; `$n` counts as `n` of them).
    pub fn parameter_count(&self) -> usize {
        self.parameters
    }

    /// The query with its placeholders as `$1`, `$2`, ... (what Redshift's extended protocol
    /// describes); the SQL as is when it has none.
    pub fn sql_numbered(&self) -> Result<super::Sql, QueryError> {
        params::splice(&self.sql, |n| Ok(super::Sql(format!("${n}"))))
    }

    /// The query with placeholder `$n` (or the `n`-th `?`) replaced by `values[n - 1]`, each in
    /// parentheses (so that `-$1` cannot become a comment): values are [`Sql`](super::Sql), built
    /// by the quoting module, never text. There must be exactly one value per parameter.
    pub fn bind(&self, values: &[super::Sql]) -> Result<super::Sql, QueryError> {
        if values.len() != self.parameters {
            return Err(QueryError::Parameters {
                expected: self.parameters,
                bound: values.len(),
            });
        }
        params::splice(&self.sql, |n| {
            Ok(super::Sql(format!("({})", values[n - 1].as_str())))
        })
    }
}

/// Why a query text was refused. Every variant is the client's mistake (INVALID_ARGUMENT).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The text is longer than [`QueryPolicy::with_max_bytes`]; checked before parsing.
    #[error("the query is {bytes} bytes long; the limit is {limit} bytes")]
    TooLong {
        /// Length of the text.
        bytes: usize,
        /// The policy's limit.
        limit: usize,
    },
    /// The text is not SQL that the Redshift dialect of the parser reads.
    #[error("cannot parse the query: {message}")]
    Parse {
        /// The parser's message, with the line and column.
        message: String,
    },
    /// The text holds no statement or several (counted after parsing: a comment hides nothing).
    #[error("expected exactly one SQL statement, found {count}")]
    NotOneStatement {
        /// How many statements the text holds.
        count: usize,
    },
    /// A statement that is not a read-only query, at the top or nested (a DELETE in a CTE).
    #[error(
        "only read-only queries are accepted (SELECT, WITH ... SELECT, VALUES and their \
         UNION/INTERSECT/EXCEPT); found {statement}"
    )]
    NotReadOnly {
        /// What was found: "DELETE", "CREATE TABLE", "SELECT ... INTO", "SELECT ... FOR UPDATE".
        statement: String,
    },
    /// A function that is not on the allowlist.
    #[error("function {name} is not allowed: it is not on this server's function allowlist")]
    Function {
        /// The function's name as written (schema-qualified if it was).
        name: String,
    },
    /// A prepared statement run with a number of bound values other than its parameters'.
    #[error(
        "the statement takes {expected} parameters but {bound} values are bound (bind them with \
         DoPut, one row with one column per parameter)"
    )]
    Parameters {
        /// Parameters of the query.
        expected: usize,
        /// Values bound.
        bound: usize,
    },
    /// Syntax the validator does not accept or cannot classify.
    #[error("not supported: {what}")]
    Unsupported {
        /// What was refused, and what to write instead where there is a way.
        what: String,
    },
}

fn unsupported(what: impl Into<String>) -> QueryError {
    QueryError::Unsupported { what: what.into() }
}

/// Parses `text` and accepts it only if it is one read-only query whose every function is on
/// `policy`'s allowlist. Runs on a helper thread with a large stack (see the module doc) and
/// blocks the caller until it is done (CPU-bound: well under a second for a 1 MiB text).
pub fn validate(text: &str, policy: &QueryPolicy) -> Result<ValidatedQuery, QueryError> {
    if text.len() > policy.max_bytes {
        return Err(QueryError::TooLong {
            bytes: text.len(),
            limit: policy.max_bytes,
        });
    }
    let numbered;
    let text = if policy.parameters {
        numbered = params::number_questions(text)?;
        numbered.as_str()
    } else {
        text
    };
    on_validator_thread(text, || validate_here(text, policy))
}

/// Runs `check` of `text` on a helper thread whose stack grows with the text's length (see the
/// module doc) and waits for it. What `check` returns must be flat: the AST stays on the thread.
fn on_validator_thread<T: Send>(text: &str, check: impl FnOnce() -> T + Send) -> T {
    let stack = STACK_BASE.saturating_add(text.len().saturating_mul(STACK_PER_BYTE));
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("sql-validate".to_string())
            .stack_size(stack)
            .spawn_scoped(scope, check)
            // As `std::thread::spawn` does: the OS refused a thread, a server fault.
            .expect("cannot start the SQL validator's thread");
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// [`validate`] on the current thread, whose stack must be large enough for `text`.
fn validate_here(text: &str, policy: &QueryPolicy) -> Result<ValidatedQuery, QueryError> {
    let mut statements = parse(text)?;
    if statements.len() != 1 {
        return Err(QueryError::NotOneStatement {
            count: statements.len(),
        });
    }
    let statement = statements.remove(0);
    let Statement::Query(query) = &statement else {
        return Err(QueryError::NotReadOnly {
            statement: leading_keywords(text),
        });
    };
    let mut walker = walk::Walker::new(policy);
    walker.query(query)?;
    let (relations, ctes) = walker.finish();
    // Only now, with the depth bounded, may the recursive visitor and Display run.
    let mut guard = Guard {
        policy,
        relations: &relations,
        ctes: &ctes,
        statements: 0,
        error: None,
    };
    if statement.visit(&mut guard).is_break() {
        return Err(guard
            .error
            .unwrap_or_else(|| unsupported("a node the validator did not classify")));
    }
    let sql = statement.to_string();
    match parse(&sql) {
        Ok(again) if again.len() == 1 && again[0] == statement => {}
        _ => {
            return Err(unsupported(
                "a query that does not read back the same after rendering (please report it)",
            ));
        }
    }
    let parameters = params::count(&sql)?;
    Ok(ValidatedQuery {
        sql,
        relations: relations.into_iter().collect(),
        has_outer_limit: outer_limit(query),
        parameters,
    })
}

fn parse(text: &str) -> Result<Vec<Statement>, QueryError> {
    Parser::parse_sql(&RedshiftSqlDialect {}, text).map_err(|e| QueryError::Parse {
        message: match e {
            ParserError::RecursionLimitExceeded => "the query is nested too deeply".to_string(),
            ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
        },
    })
}

/// Names a refused top-level statement by its leading keywords ("DELETE", "CREATE TABLE"), read
/// from the tokens (comments skipped) rather than by displaying a possibly very deep AST.
fn leading_keywords(text: &str) -> String {
    let tokens = Tokenizer::new(&RedshiftSqlDialect {}, text)
        .tokenize()
        .unwrap_or_default();
    let mut words = tokens.iter().filter_map(|token| match token {
        Token::Whitespace(_) => None,
        Token::Word(w) if w.quote_style.is_none() && w.keyword != Keyword::NoKeyword => {
            Some(Some(w.value.to_uppercase()))
        }
        _ => Some(None),
    });
    let Some(Some(first)) = words.next() else {
        return "a statement that is not a query".to_string();
    };
    let mut name = first.clone();
    if matches!(first.as_str(), "CREATE" | "DROP" | "ALTER") {
        for word in words.map_while(|w| w).take(3) {
            name.push(' ');
            name.push_str(&word);
        }
    }
    name
}

/// Whether the outermost query limits or orders its rows (looking through parentheses).
fn outer_limit(query: &Query) -> bool {
    query.order_by.is_some()
        || query.limit_clause.is_some()
        || query.fetch.is_some()
        || match query.body.as_ref() {
            SetExpr::Select(select) => select.top.is_some(),
            SetExpr::Query(inner) => outer_limit(inner),
            _ => false,
        }
}

/// The unquoted name folded to lower case, as Redshift does; a quoted name as written.
fn fold(ident: &Ident) -> String {
    match ident.quote_style {
        None => ident.value.to_lowercase(),
        Some(_) => ident.value.clone(),
    }
}

/// The second pass: `sqlparser`'s derived visitor reaches every node, whatever the walk in
/// `walk.rs` accepted, and re-checks what must hold everywhere.
struct Guard<'a> {
    policy: &'a QueryPolicy,
    relations: &'a BTreeSet<Relation>,
    ctes: &'a BTreeSet<String>,
    statements: usize,
    error: Option<QueryError>,
}

impl Guard<'_> {
    fn check(&mut self, result: Result<(), QueryError>) -> ControlFlow<()> {
        match result {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                self.error = Some(e);
                ControlFlow::Break(())
            }
        }
    }
}

impl Visitor for Guard<'_> {
    type Break = ();

    fn pre_visit_statement(&mut self, _statement: &Statement) -> ControlFlow<()> {
        self.statements += 1;
        let nested = self.statements > 1;
        self.check(if nested {
            Err(QueryError::NotReadOnly {
                statement: "a statement nested in the query".to_string(),
            })
        } else {
            Ok(())
        })
    }

    fn pre_visit_relation(&mut self, name: &ObjectName) -> ControlFlow<()> {
        let known = match walk::relation_of(name) {
            Ok(relation) => {
                self.relations.contains(&relation)
                    || (relation.schema.is_none() && self.ctes.contains(&relation.name))
            }
            Err(_) => false,
        };
        self.check(if known {
            Ok(())
        } else {
            Err(unsupported(
                "a table reference the validator did not classify",
            ))
        })
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        let result = match expr {
            Expr::Function(f) => lexical::check_function_name(self.policy, &f.name),
            _ => Ok(()),
        };
        self.check(result)
    }

    fn pre_visit_value(&mut self, value: &ValueWithSpan) -> ControlFlow<()> {
        self.check(lexical::check_value_in(self.policy, &value.value))
    }

    fn pre_visit_ident(&mut self, ident: &Ident) -> ControlFlow<()> {
        self.check(lexical::check_ident(ident))
    }
}
