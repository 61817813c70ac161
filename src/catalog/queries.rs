//! The catalog queries: the SQL that discovers a schema's relations on Redshift and the assembly
//! of their answers into [`TableInfo`]s. Running them is the warehouse's job
//! (`crate::warehouse`); this file only says what to ask and how to read the rows.
//! Imports: `crate::sql`, the catalog model, and `crate::redshift::TextRow` (the row shape).

use std::collections::HashMap;

use super::{CatalogError, ColumnInfo, TableInfo, TableKind, TableRef};
use crate::redshift::TextRow;
use crate::sql::{QuoteError, Sql, sql};

/// Every schema name, sorted.
pub fn schema_names() -> Sql {
    Sql::from("SELECT nspname FROM pg_catalog.pg_namespace ORDER BY nspname")
}

/// The columns of every table, view and materialized view in `schema`: relation name, relkind,
/// column name, `format_type` and NOT NULL, in table and column order.
pub fn columns(schema: &str) -> Result<Sql, QuoteError> {
    Ok(sql!(
        "SELECT c.relname, c.relkind, a.attname, \
         pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull \
         FROM pg_catalog.pg_attribute a \
         JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = ",
        Sql::literal(schema)?,
        " AND c.relkind IN ('r', 'v', 'm', 'p') \
         AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY c.relname, a.attnum"
    ))
}

/// The primary-key columns of the tables in `schema`: table name and column name, in key order.
pub fn primary_keys(schema: &str) -> Result<Sql, QuoteError> {
    Ok(sql!(
        "SELECT kcu.table_name, kcu.column_name \
         FROM information_schema.table_constraints tc \
         JOIN information_schema.key_column_usage kcu \
         ON tc.constraint_name = kcu.constraint_name \
         AND tc.table_schema = kcu.table_schema AND tc.table_name = kcu.table_name \
         WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = ",
        Sql::literal(schema)?,
        " ORDER BY kcu.table_name, kcu.ordinal_position"
    ))
}

/// Row estimates of the tables in `schema` (`svv_table_info`, which not every user may read).
pub fn row_estimates(schema: &str) -> Result<Sql, QuoteError> {
    Ok(sql!(
        "SELECT \"table\", tbl_rows FROM svv_table_info WHERE \"schema\" = ",
        Sql::literal(schema)?
    ))
}

fn text(row: &TextRow, i: usize, schema: &str) -> Result<String, CatalogError> {
    row.get(i)
        .cloned()
        .flatten()
        .ok_or_else(|| CatalogError::Unexpected {
            schema: schema.to_string(),
            message: format!("column {i} missing or NULL"),
        })
}

/// The catalog types of table columns, by table OID and column number: `attrelid`, `attnum`,
/// `format_type`. For the result columns of a query that come straight from a table.
pub fn column_types(columns: &[(u32, i16)]) -> Sql {
    let conditions = columns.iter().map(|(oid, attnum)| {
        sql!(
            "(attrelid = ",
            Sql::int(*oid),
            " AND attnum = ",
            Sql::int(*attnum),
            ")"
        )
    });
    sql!(
        "SELECT attrelid, attnum, pg_catalog.format_type(atttypid, atttypmod) \
         FROM pg_catalog.pg_attribute WHERE ",
        Sql::join(conditions, " OR ")
    )
}

/// The tables of `schema` from the answers to [`columns`], [`primary_keys`] and
/// [`row_estimates`], sorted by name.
pub fn assemble(
    schema: &str,
    columns: Vec<TextRow>,
    keys: Vec<TextRow>,
    estimates: Vec<TextRow>,
) -> Result<Vec<TableInfo>, CatalogError> {
    let mut primary_keys: HashMap<String, Vec<String>> = HashMap::new();
    for row in &keys {
        primary_keys
            .entry(text(row, 0, schema)?)
            .or_default()
            .push(text(row, 1, schema)?);
    }
    let mut row_estimates: HashMap<String, i64> = HashMap::new();
    for row in &estimates {
        let name = text(row, 0, schema)?;
        if let Some(n) = row
            .get(1)
            .cloned()
            .flatten()
            .and_then(|n| n.parse::<f64>().ok())
        {
            row_estimates.insert(name, n as i64);
        }
    }
    let mut tables: Vec<TableInfo> = Vec::new();
    for row in &columns {
        let name = text(row, 0, schema)?;
        let kind = if text(row, 1, schema)? == "r" || text(row, 1, schema)? == "p" {
            TableKind::Table
        } else {
            TableKind::View
        };
        let column = ColumnInfo::new(
            text(row, 2, schema)?,
            text(row, 3, schema)?,
            text(row, 4, schema)? != "t",
        );
        match tables.last_mut() {
            Some(last) if last.table.table == name => last.columns.push(column),
            _ => tables.push(TableInfo {
                table: TableRef::new(schema, name.clone()),
                kind,
                columns: vec![column],
                primary_key: primary_keys.remove(&name).unwrap_or_default(),
                row_estimate: row_estimates.get(&name).copied(),
                replication_key: None,
                strategy: None,
            }),
        }
    }
    tables.sort_by(|a, b| a.table.cmp(&b.table));
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::RedshiftType;

    fn row(values: &[&str]) -> TextRow {
        values.iter().map(|v| Some(v.to_string())).collect()
    }

    #[test]
    fn assembles_tables_from_catalog_rows() {
        let columns = vec![
            row(&["Orders", "r", "id", "integer", "t"]),
            row(&["Orders", "r", "note", "character varying(20)", "f"]),
            row(&["v", "v", "x", "numeric(10,2)", "f"]),
        ];
        let keys = vec![row(&["Orders", "id"])];
        let estimates = vec![row(&["Orders", "42"])];
        let tables = assemble("s", columns, keys, estimates).unwrap();
        assert_eq!(tables.len(), 2);
        assert_eq!(tables[0].table, TableRef::new("s", "Orders"));
        assert_eq!(tables[0].primary_key, vec!["id".to_string()]);
        assert_eq!(tables[0].row_estimate, Some(42));
        assert!(!tables[0].columns[0].nullable);
        assert!(tables[0].columns[1].nullable);
        assert_eq!(tables[1].kind, TableKind::View);
        assert_eq!(tables[1].row_estimate, None);
        assert_eq!(
            tables[1].columns[0].redshift_type,
            RedshiftType::Decimal {
                precision: 10,
                scale: 2
            }
        );
    }
}
