//! The table spec: with `auto_schema_detection = false`, this file (the seed's `table_spec.py`,
//! as TOML or JSON) says which tables are served, their primary keys, sync strategy, replication
//! key and the columns to include or exclude. Column types still come from Redshift's catalog.
//!
//! ```toml
//! [[tables]]
//! schema = "public"              # optional, default: redshift_schema ("db.schema": a consumer database)
//! name = "orders"
//! primary_keys = ["id"]          # optional, default: the catalog's
//! strategy = "incremental"       # "incremental" or "full", optional
//! replication_key = "updated_at" # optional
//! include_columns = ["id", "amount", "updated_at"]  # optional
//! exclude_columns = ["secret"]   # optional
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{TableInfo, find_by_name};

/// How a spec'd table is synchronised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Only changed rows, by replication key.
    #[serde(alias = "INCREMENTAL")]
    Incremental,
    /// Always a full snapshot.
    #[serde(alias = "FULL")]
    Full,
}

/// One table of the spec.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableEntry {
    /// Schema; `redshift_schema` when absent.
    pub schema: Option<String>,
    /// Table name.
    pub name: String,
    /// Primary-key columns overriding the catalog's.
    #[serde(default)]
    pub primary_keys: Option<Vec<String>>,
    /// Sync strategy.
    #[serde(default)]
    pub strategy: Option<Strategy>,
    /// Replication key column.
    #[serde(default)]
    pub replication_key: Option<String>,
    /// Only these columns are served.
    #[serde(default)]
    pub include_columns: Option<Vec<String>>,
    /// These columns are never served.
    #[serde(default)]
    pub exclude_columns: Vec<String>,
}

/// The whole spec.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// The served tables.
    pub tables: Vec<TableEntry>,
}

/// A spec file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("table spec {path}: {message}")]
pub struct SpecError {
    path: PathBuf,
    message: String,
}

impl TableSpec {
    /// Reads a `.toml` or `.json` spec.
    pub fn from_file(path: &Path) -> Result<Self, SpecError> {
        let err = |message: String| SpecError {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let spec: Self = match path.extension().and_then(|e| e.to_str()) {
            Some("json") => serde_json::from_str(&text).map_err(|e| err(e.to_string()))?,
            Some("toml") => toml::from_str(&text).map_err(|e| err(e.to_string()))?,
            _ => return Err(err("the file name must end in .toml or .json".into())),
        };
        if spec.tables.is_empty() {
            return Err(err("it lists no tables".into()));
        }
        Ok(spec)
    }

    /// Keeps the tables of `schema` that the spec lists, shaped by their entries.
    pub(crate) fn apply(
        &self,
        schema: &str,
        default_schema: &str,
        tables: Vec<TableInfo>,
    ) -> Vec<TableInfo> {
        let mut served = Vec::new();
        for entry in &self.tables {
            if entry.schema.as_deref().unwrap_or(default_schema) != schema {
                continue;
            }
            let Some(table) = find_by_name(&tables, &entry.name, |t| &t.table.table) else {
                tracing::warn!(schema, table = %entry.name, "table spec names a table the catalog does not have");
                continue;
            };
            let mut table = table.clone();
            if let Some(include) = &entry.include_columns {
                table
                    .columns
                    .retain(|c| include.iter().any(|i| i.eq_ignore_ascii_case(&c.name)));
            }
            table.columns.retain(|c| {
                !entry
                    .exclude_columns
                    .iter()
                    .any(|e| e.eq_ignore_ascii_case(&c.name))
            });
            if let Some(keys) = &entry.primary_keys {
                table.primary_key = keys.clone();
            }
            table.replication_key = entry.replication_key.clone();
            table.strategy = entry.strategy;
            if !table.columns.is_empty() {
                served.push(table);
            }
        }
        served.sort_by(|a, b| a.table.cmp(&b.table));
        served
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{ColumnInfo, TableKind, TableRef};

    fn table(name: &str) -> TableInfo {
        TableInfo {
            table: TableRef::new("public", name),
            kind: TableKind::Table,
            columns: vec![
                ColumnInfo::new("id", "integer", false),
                ColumnInfo::new("secret", "character varying(10)", true),
                ColumnInfo::new("updated_at", "timestamp without time zone", true),
            ],
            primary_key: vec![],
            row_estimate: None,
            replication_key: None,
            strategy: None,
        }
    }

    #[test]
    fn spec_filters_tables_and_columns() {
        let spec: TableSpec = toml::from_str(
            r#"
            [[tables]]
            name = "orders"
            primary_keys = ["id"]
            strategy = "incremental"
            replication_key = "updated_at"
            exclude_columns = ["SECRET"]
            "#,
        )
        .unwrap();
        let served = spec.apply("public", "public", vec![table("orders"), table("other")]);
        assert_eq!(served.len(), 1);
        let orders = &served[0];
        assert_eq!(orders.primary_key, vec!["id".to_string()]);
        assert_eq!(orders.replication_key.as_deref(), Some("updated_at"));
        assert_eq!(orders.strategy, Some(Strategy::Incremental));
        let names: Vec<_> = orders.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "updated_at"]);
        assert!(
            spec.apply("other_schema", "public", vec![table("orders")])
                .is_empty()
        );
    }

    #[test]
    fn spec_names_consumer_database_tables_and_other_kinds() {
        let spec: TableSpec = toml::from_str(
            r#"
            [[tables]]
            schema = "sales_db.public"
            name = "orders"
            replication_key = "updated_at"

            [[tables]]
            name = "lbv"
            "#,
        )
        .unwrap();
        let mut shared = table("orders");
        shared.table = TableRef::in_database("sales_db", "public", "orders");
        let served = spec.apply("sales_db.public", "public", vec![shared]);
        assert_eq!(served.len(), 1);
        assert_eq!(served[0].table.to_string(), "sales_db.public.orders");
        let mut lbv = table("lbv");
        lbv.kind = TableKind::LateBindingView;
        let served = spec.apply("public", "public", vec![lbv, table("orders")]);
        assert_eq!(served.len(), 1);
        assert_eq!(served[0].kind, TableKind::LateBindingView);
    }

    #[test]
    fn json_spec_with_seed_style_strategy() {
        let spec: TableSpec = serde_json::from_str(
            r#"{"tables":[{"name":"t","strategy":"FULL","include_columns":["id"]}]}"#,
        )
        .unwrap();
        let served = spec.apply("public", "public", vec![table("t")]);
        assert_eq!(served[0].strategy, Some(Strategy::Full));
        assert_eq!(served[0].columns.len(), 1);
    }
}
