//! The catalog queries: the SQL that discovers a schema's relations on Redshift and the assembly
//! of their answers into [`TableInfo`]s. Running them is the warehouse's job
//! (`crate::warehouse`); this file only says what to ask and how to read the rows.
//!
//! `pg_attribute` describes tables, views and materialized views. What Redshift keeps elsewhere
//! has its own query: late-binding views (`pg_get_late_binding_view_cols()`), Spectrum external
//! tables (`svv_external_schemas`, `svv_external_tables`, `svv_external_columns`), and which
//! views are materialized (`svv_mv_info`).
//! Imports: `crate::sql`, the catalog model, and `crate::redshift::TextRow` (the row shape).

use std::collections::{HashMap, HashSet};

use super::types::external_catalog_type;
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

/// The columns of the late-binding views of `schema`: view name, column name, type (as
/// `format_type` prints it) and column number, in view and column order.
/// `pg_get_late_binding_view_cols()` returns records, typed by the column definition list.
pub fn late_binding_view_columns(schema: &str) -> Result<Sql, QuoteError> {
    Ok(sql!(
        "SELECT view_name, col_name, col_type, col_num \
         FROM pg_get_late_binding_view_cols() \
         cols(view_schema name, view_name name, col_name name, col_type varchar, col_num int) \
         WHERE view_schema = ",
        Sql::literal(schema)?,
        " ORDER BY view_name, col_num"
    ))
}

/// The materialized views of `schema` (their columns are in `pg_attribute`; this says which
/// views are materialized). `svv_mv_info` pads its names (CHAR(128)).
pub fn materialized_views(schema: &str) -> Result<Sql, QuoteError> {
    Ok(sql!(
        "SELECT TRIM(name) FROM svv_mv_info WHERE TRIM(schema_name) = ",
        Sql::literal(schema)?
    ))
}

/// The columns of the Spectrum external tables of `schema` when it is an external schema: table
/// name, column name, external (Hive) type, column number and nullability (`true`, `false`, or
/// empty for unknown), in table and column order.
pub fn external_columns(schema: &str) -> Result<Sql, QuoteError> {
    Ok(sql!(
        "SELECT c.tablename, c.columnname, c.external_type, c.columnnum, c.is_nullable \
         FROM svv_external_columns c \
         JOIN svv_external_tables t \
         ON t.schemaname = c.schemaname AND t.tablename = c.tablename \
         JOIN svv_external_schemas s ON s.schemaname = c.schemaname \
         WHERE c.schemaname = ",
        Sql::literal(schema)?,
        " ORDER BY c.tablename, c.columnnum"
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

/// The answers to the catalog queries of one schema.
#[derive(Debug, Default)]
pub struct CatalogRows {
    /// [`columns`].
    pub columns: Vec<TextRow>,
    /// [`primary_keys`].
    pub keys: Vec<TextRow>,
    /// [`row_estimates`].
    pub estimates: Vec<TextRow>,
    /// [`late_binding_view_columns`].
    pub late_binding: Vec<TextRow>,
    /// [`materialized_views`].
    pub materialized: Vec<TextRow>,
    /// [`external_columns`].
    pub external: Vec<TextRow>,
}

/// The relations of `schema` from the answers to the catalog queries, sorted by name. A name
/// that both `pg_attribute` and a late-binding or external description list is taken from the
/// latter (which is where Redshift keeps it).
pub fn assemble(schema: &str, rows: CatalogRows) -> Result<Vec<TableInfo>, CatalogError> {
    let mut primary_keys: HashMap<String, Vec<String>> = HashMap::new();
    for row in &rows.keys {
        primary_keys
            .entry(text(row, 0, schema)?)
            .or_default()
            .push(text(row, 1, schema)?);
    }
    let mut row_estimates: HashMap<String, i64> = HashMap::new();
    for row in &rows.estimates {
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
    let materialized: HashSet<String> = rows
        .materialized
        .iter()
        .map(|row| text(row, 0, schema))
        .collect::<Result<_, _>>()?;
    let mut tables: Vec<TableInfo> = Vec::new();
    let mut push =
        |tables: &mut Vec<TableInfo>, name: String, kind, column: ColumnInfo| match tables
            .last_mut()
        {
            Some(last) if last.table.table == name && last.kind == kind => {
                last.columns.push(column)
            }
            _ => {
                let keyed = matches!(kind, TableKind::Table);
                tables.push(TableInfo {
                    table: TableRef::new(schema, name.clone()),
                    kind,
                    columns: vec![column],
                    primary_key: if keyed {
                        primary_keys.remove(&name).unwrap_or_default()
                    } else {
                        Vec::new()
                    },
                    row_estimate: row_estimates.get(&name).copied(),
                    replication_key: None,
                    strategy: None,
                })
            }
        };
    let mut described: Vec<TableInfo> = Vec::new();
    for row in &rows.columns {
        let name = text(row, 0, schema)?;
        let kind = match text(row, 1, schema)?.as_str() {
            _ if materialized.contains(&name) => TableKind::MaterializedView,
            "r" | "p" => TableKind::Table,
            "m" => TableKind::MaterializedView,
            _ => TableKind::View,
        };
        let column = ColumnInfo::new(
            text(row, 2, schema)?,
            text(row, 3, schema)?,
            text(row, 4, schema)? != "t",
        );
        push(&mut described, name, kind, column);
    }
    // Late-binding views and external tables: Redshift says nothing of NOT NULL for the former;
    // the latter say `false` when a column cannot be NULL.
    for row in &rows.late_binding {
        let column = ColumnInfo::new(text(row, 1, schema)?, text(row, 2, schema)?, true);
        push(
            &mut tables,
            text(row, 0, schema)?,
            TableKind::LateBindingView,
            column,
        );
    }
    for row in &rows.external {
        let nullable = row.get(4).cloned().flatten().as_deref() != Some("false");
        let catalog_type = external_catalog_type(&text(row, 2, schema)?);
        let column = ColumnInfo::new(text(row, 1, schema)?, catalog_type, nullable);
        push(
            &mut tables,
            text(row, 0, schema)?,
            TableKind::External,
            column,
        );
    }
    let elsewhere: HashSet<String> = tables.iter().map(|t| t.table.table.clone()).collect();
    tables.extend(
        described
            .into_iter()
            .filter(|t| !elsewhere.contains(&t.table.table)),
    );
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
        let tables = assemble(
            "s",
            CatalogRows {
                columns,
                keys,
                estimates,
                ..CatalogRows::default()
            },
        )
        .unwrap();
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

    #[test]
    fn assembles_late_binding_views_external_tables_and_materialized_views() {
        let rows = CatalogRows {
            columns: vec![
                row(&["mv", "v", "day", "date", "f"]),
                row(&["mv", "v", "total", "bigint", "f"]),
                row(&["pgmv", "m", "n", "integer", "t"]),
                row(&["t", "r", "id", "integer", "t"]),
                row(&["ext", "r", "shadow", "integer", "t"]),
            ],
            keys: vec![row(&["t", "id"]), row(&["ext", "shadow"])],
            estimates: vec![row(&["t", "7"])],
            late_binding: vec![
                row(&["lbv", "id", "integer", "1"]),
                row(&["lbv", "amount", "numeric(8,2)", "2"]),
                row(&["lbv", "at", "timestamp without time zone", "3"]),
            ],
            materialized: vec![row(&["mv"])],
            external: vec![
                TextRow::from(vec![
                    Some("ext".to_string()),
                    Some("id".to_string()),
                    Some("int".to_string()),
                    Some("1".to_string()),
                    Some("false".to_string()),
                ]),
                row(&["ext", "name", "string", "2", ""]),
                row(&["ext", "tags", "array<string>", "3", "true"]),
                row(&["ext", "updated", "timestamp", "4", "true"]),
            ],
        };
        let tables = assemble("s", rows).unwrap();
        let by_name: HashMap<&str, &TableInfo> =
            tables.iter().map(|t| (t.table.table.as_str(), t)).collect();
        let names: Vec<&str> = tables.iter().map(|t| t.table.table.as_str()).collect();
        assert_eq!(names, ["ext", "lbv", "mv", "pgmv", "t"]);

        let lbv = by_name["lbv"];
        assert_eq!(lbv.kind, TableKind::LateBindingView);
        assert!(lbv.columns.iter().all(|c| c.nullable));
        assert_eq!(
            lbv.columns[1].redshift_type,
            RedshiftType::Decimal {
                precision: 8,
                scale: 2
            }
        );
        assert_eq!(lbv.inferred_replication_key().unwrap().name, "at");

        let ext = by_name["ext"];
        assert_eq!(ext.kind, TableKind::External);
        assert!(ext.primary_key.is_empty(), "external tables have no keys");
        let types: Vec<&str> = ext
            .columns
            .iter()
            .map(|c| c.catalog_type.as_str())
            .collect();
        assert_eq!(
            types,
            [
                "integer",
                "character varying",
                "array<string>",
                "timestamp without time zone"
            ]
        );
        let nullable: Vec<bool> = ext.columns.iter().map(|c| c.nullable).collect();
        assert_eq!(nullable, [false, true, true, true]);
        assert_eq!(ext.inferred_replication_key().unwrap().name, "updated");

        assert_eq!(by_name["mv"].kind, TableKind::MaterializedView);
        assert_eq!(by_name["pgmv"].kind, TableKind::MaterializedView);
        assert_eq!(by_name["t"].kind, TableKind::Table);
        assert_eq!(by_name["t"].primary_key, ["id"]);
        assert_eq!(by_name["t"].row_estimate, Some(7));
        assert_eq!(
            by_name["mv"].arrow_schema().metadata()[crate::catalog::META_KIND],
            "materialized_view"
        );
        assert!(
            !by_name["t"]
                .arrow_schema()
                .metadata()
                .contains_key(crate::catalog::META_KIND)
        );
    }

    #[test]
    fn new_catalog_queries_quote_the_schema() {
        let lbv = late_binding_view_columns("it's").unwrap().to_string();
        assert!(lbv.contains("pg_get_late_binding_view_cols() cols(view_schema name, view_name name, col_name name, col_type varchar, col_num int)"), "{lbv}");
        assert!(lbv.contains("WHERE view_schema = 'it''s'"), "{lbv}");
        let ext = external_columns("it's").unwrap().to_string();
        assert!(ext.contains("FROM svv_external_columns c"), "{ext}");
        assert!(ext.contains("WHERE c.schemaname = 'it''s'"), "{ext}");
        let mv = materialized_views("it's").unwrap().to_string();
        assert!(
            mv.contains("FROM svv_mv_info WHERE TRIM(schema_name) = 'it''s'"),
            "{mv}"
        );
    }
}
