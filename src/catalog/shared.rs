//! The catalog of consumer (datashare) databases: a database created `FROM DATASHARE` is not in
//! the connected database's `pg_namespace` or `pg_attribute`; Redshift describes its schemas,
//! relations and columns in `svv_redshift_schemas`, `svv_redshift_tables` and
//! `svv_redshift_columns`, filtered by `database_name`. Its tables are read by three-part names
//! (`"database"."schema"."table"`, see [`super::TableRef::sql_name`]). Which databases are served
//! is the configuration's `redshift_databases`.
//!
//! Like [`super::queries`], this file only says what to ask and how to read the answers.
//! Imports: `crate::sql`, the catalog model, and `crate::redshift::TextRow` (the row shape).

use std::collections::HashMap;

use super::{CatalogError, ColumnInfo, TableInfo, TableKind, TableRef};
use crate::redshift::TextRow;
use crate::sql::{QuoteError, Sql, sql};

/// The schemas of the consumer databases `databases`: database name and schema name, sorted.
pub fn schema_names(databases: &[String]) -> Result<Sql, QuoteError> {
    let names = databases
        .iter()
        .map(|d| Sql::literal(d))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(sql!(
        "SELECT database_name, schema_name FROM svv_redshift_schemas WHERE database_name IN (",
        Sql::join(names, ", "),
        ") ORDER BY database_name, schema_name"
    ))
}

/// The relations of `schema` in the consumer database `database`: name and `table_type`
/// (`TABLE` or `VIEW`).
pub fn tables(database: &str, schema: &str) -> Result<Sql, QuoteError> {
    Ok(sql!(
        "SELECT table_name, table_type FROM svv_redshift_tables WHERE database_name = ",
        Sql::literal(database)?,
        " AND schema_name = ",
        Sql::literal(schema)?
    ))
}

/// The columns of the relations of `schema` in the consumer database `database`: relation name,
/// column name, type (as `format_type` prints it), position and nullability (`YES`/`NO`), in
/// relation and column order.
pub fn columns(database: &str, schema: &str) -> Result<Sql, QuoteError> {
    Ok(sql!(
        "SELECT table_name, column_name, data_type, ordinal_position, is_nullable \
         FROM svv_redshift_columns WHERE database_name = ",
        Sql::literal(database)?,
        " AND schema_name = ",
        Sql::literal(schema)?,
        " ORDER BY table_name, ordinal_position"
    ))
}

/// The (database, schema) pairs of the answer to [`schema_names`].
pub fn read_schema_names(rows: Vec<TextRow>) -> Vec<(String, String)> {
    rows.into_iter()
        .filter_map(|row| match row.as_slice() {
            [Some(database), Some(schema), ..] => Some((database.clone(), schema.clone())),
            _ => None,
        })
        .collect()
}

/// The relations of `schema` in `database` from the answers to [`tables`] and [`columns`],
/// sorted by name. A consumer database shows no constraints: no primary keys.
pub fn assemble(
    database: &str,
    schema: &str,
    tables: Vec<TextRow>,
    columns: Vec<TextRow>,
) -> Result<Vec<TableInfo>, CatalogError> {
    let namespace = format!("{database}.{schema}");
    let text = |row: &TextRow, i: usize| {
        row.get(i)
            .cloned()
            .flatten()
            .ok_or_else(|| CatalogError::Unexpected {
                schema: namespace.clone(),
                message: format!("column {i} missing or NULL"),
            })
    };
    let mut kinds: HashMap<String, TableKind> = HashMap::new();
    for row in &tables {
        let kind = match row.get(1).cloned().flatten().as_deref() {
            Some(t) if t.eq_ignore_ascii_case("view") => TableKind::View,
            _ => TableKind::Table,
        };
        kinds.insert(text(row, 0)?, kind);
    }
    let mut out: Vec<TableInfo> = Vec::new();
    for row in &columns {
        let name = text(row, 0)?;
        let nullable = !row
            .get(4)
            .cloned()
            .flatten()
            .is_some_and(|n| n.trim().eq_ignore_ascii_case("no"));
        let column = ColumnInfo::new(text(row, 1)?, text(row, 2)?, nullable);
        match out.last_mut() {
            Some(last) if last.table.table == name => last.columns.push(column),
            _ => out.push(TableInfo {
                table: TableRef::in_database(database, schema, name.clone()),
                kind: kinds.get(&name).copied().unwrap_or(TableKind::Table),
                columns: vec![column],
                primary_key: Vec::new(),
                row_estimate: None,
                replication_key: None,
                strategy: None,
            }),
        }
    }
    out.sort_by(|a, b| a.table.cmp(&b.table));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::RedshiftType;

    fn row(values: &[&str]) -> TextRow {
        values.iter().map(|v| Some(v.to_string())).collect()
    }

    #[test]
    fn queries_quote_names() {
        let names = schema_names(&["a".into(), "b'c".into()])
            .unwrap()
            .to_string();
        assert!(
            names.contains("WHERE database_name IN ('a', 'b''c')"),
            "{names}"
        );
        let cols = columns("d'b", "s").unwrap().to_string();
        assert!(
            cols.contains(
                "FROM svv_redshift_columns WHERE database_name = 'd''b' AND schema_name = 's'"
            ),
            "{cols}"
        );
        let tabs = tables("db", "s'").unwrap().to_string();
        assert!(
            tabs.contains("svv_redshift_tables WHERE database_name = 'db' AND schema_name = 's'''"),
            "{tabs}"
        );
    }

    #[test]
    fn assembles_consumer_database_relations() {
        let tables = vec![row(&["orders", "TABLE"]), row(&["recent", "VIEW"])];
        let columns = vec![
            row(&["orders", "id", "integer", "1", "NO"]),
            row(&["orders", "total", "numeric(12,2)", "2", "YES"]),
            row(&[
                "orders",
                "updated_at",
                "timestamp without time zone",
                "3",
                "YES",
            ]),
            row(&["recent", "id", "integer", "1", "YES"]),
        ];
        let found = assemble("sales_db", "public", tables, columns).unwrap();
        assert_eq!(found.len(), 2);
        let orders = &found[0];
        assert_eq!(
            orders.table,
            TableRef::in_database("sales_db", "public", "orders")
        );
        assert_eq!(orders.table.to_string(), "sales_db.public.orders");
        assert_eq!(orders.kind, TableKind::Table);
        assert!(orders.primary_key.is_empty());
        assert!(!orders.columns[0].nullable && orders.columns[1].nullable);
        assert_eq!(
            orders.columns[1].redshift_type,
            RedshiftType::Decimal {
                precision: 12,
                scale: 2
            }
        );
        assert_eq!(
            orders.inferred_replication_key().unwrap().name,
            "updated_at"
        );
        assert_eq!(found[1].kind, TableKind::View);
        assert_eq!(
            orders.arrow_schema().metadata()[crate::catalog::META_TABLE],
            "sales_db.public.orders"
        );
        assert_eq!(
            read_schema_names(vec![row(&["sales_db", "public"])]),
            [("sales_db".to_string(), "public".to_string())]
        );
    }
}
