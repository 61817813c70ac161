//! Who a caller is once authenticated, and which tables it may read: [`Principal`] with its
//! `schema.table` glob patterns (`sales.*`, `public.orders`) and the check every RPC makes before
//! touching a table.
//!
//! Imports: the parent's [`AuthError`] only (no credentials, no I/O).

use super::AuthError;

/// Tables a principal may read.
#[derive(Debug, Clone)]
pub(super) enum Tables {
    All,
    Patterns(Vec<glob::Pattern>),
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    name: String,
    tables: Tables,
}

impl Principal {
    /// A principal named `name` (for logs) that may read `tables`.
    pub(super) fn new(name: String, tables: Tables) -> Self {
        Self { name, tables }
    }

    /// The caller when authentication is off: may read everything.
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".into(),
            tables: Tables::All,
        }
    }

    /// The principal's name (for logs).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the principal may read `schema.table`.
    pub fn may_read(&self, schema: &str, table: &str) -> bool {
        match &self.tables {
            Tables::All => true,
            Tables::Patterns(patterns) => {
                let name = format!("{schema}.{table}");
                let options = glob::MatchOptions {
                    case_sensitive: true,
                    require_literal_separator: false,
                    require_literal_leading_dot: false,
                };
                patterns.iter().any(|p| p.matches_with(&name, options))
            }
        }
    }

    /// [`Principal::may_read`] as a result.
    pub fn check(&self, schema: &str, table: &str) -> Result<(), AuthError> {
        if self.may_read(schema, table) {
            Ok(())
        } else {
            Err(AuthError::Forbidden {
                principal: self.name.clone(),
                table: format!("{schema}.{table}"),
            })
        }
    }
}

/// The tables of an access-file entry: all when `tables` is absent, else its glob patterns;
/// `whose` names the entry in the error.
pub(super) fn patterns(tables: Option<Vec<String>>, whose: &str) -> Result<Tables, String> {
    match tables {
        None => Ok(Tables::All),
        Some(list) => list
            .iter()
            .map(|p| {
                glob::Pattern::new(p).map_err(|e| format!("{whose}: table pattern {p:?}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Tables::Patterns),
    }
}
