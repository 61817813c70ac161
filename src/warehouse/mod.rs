//! The warehouse seam: everything redshift-flight asks of Redshift, as one trait, [`Warehouse`]
//! (describe a schema, freeze a replication key's maximum, run an UNLOAD, run a query), with its
//! implementation over pooled connections ([`crate::redshift::Redshift`]). The stager, the cached
//! catalog ([`catalog::CachedCatalog`]) and the Flight service hold an `Arc<dyn Warehouse>`, so
//! each can be tested against a fake.
//!
//! Imports: `crate::redshift` (connections), `crate::catalog` (the model and its queries),
//! `crate::sql`, `crate::metrics`; never the plan, the stager or the service.

pub mod catalog;
pub mod estimate;

use std::fmt;

use crate::catalog::{CatalogError, ColumnInfo, TableInfo, queries, shared, types};
use crate::redshift::{ConnectError, Redshift, RedshiftError, RowCursor, TextBatch, TextRow};
use crate::sql::Sql;
pub use estimate::Estimate;

/// What redshift-flight asks of the warehouse.
#[async_trait::async_trait]
pub trait Warehouse: Send + Sync + fmt::Debug {
    /// Every schema name, sorted.
    async fn schema_names(&self) -> Result<Vec<String>, RedshiftError>;

    /// The tables, views, late-binding views, materialized views and (in an external schema)
    /// Spectrum external tables of `schema` with their columns, primary keys and row estimates,
    /// sorted by name (empty for a schema that does not exist).
    async fn describe(&self, schema: &str) -> Result<Vec<TableInfo>, CatalogError>;

    /// The schemas of the consumer (datashare) databases `databases`, as (database, schema). A
    /// warehouse without consumer databases has none (the default).
    async fn shared_schema_names(
        &self,
        _databases: &[String],
    ) -> Result<Vec<(String, String)>, CatalogError> {
        Ok(Vec::new())
    }

    /// The relations of `schema` in the consumer database `database` (see
    /// [`crate::catalog::shared`]), sorted by name; none by default.
    async fn describe_shared(
        &self,
        _database: &str,
        _schema: &str,
    ) -> Result<Vec<TableInfo>, CatalogError> {
        Ok(Vec::new())
    }

    /// Runs a query returning one value (`SELECT MAX(key) ...`) as Redshift's text; NULL (or no
    /// row) is `None`.
    async fn max_key(&self, sql: &Sql) -> Result<Option<String>, RedshiftError>;

    /// Runs one UNLOAD to completion, once (the stager retries, into a fresh prefix), and returns
    /// the rows it wrote as Redshift counts them on the same session (`pg_last_unload_count()`).
    async fn unload(&self, sql: &Sql) -> Result<u64, RedshiftError>;

    /// Runs one statement, retrying transient failures, and returns its rows as text.
    async fn query(&self, sql: &Sql) -> Result<Vec<TextRow>, RedshiftError>;

    /// The result columns of a query without running it, with the catalog types a table's
    /// columns would have (all nullable: a query's result says nothing of NOT NULL).
    async fn describe_query(&self, sql: &Sql) -> Result<Vec<ColumnInfo>, RedshiftError>;

    /// The catalog type of each parameter of a query (`$1` first) without running it, as
    /// [`types::catalog_type_of`] names it: the type Redshift infers from where the parameter is
    /// used, without a type modifier (a NUMERIC parameter is `numeric`), `unknown` where it
    /// infers none. A warehouse that cannot describe parameters says nothing (the default): every
    /// parameter is then of unknown type.
    async fn describe_parameters(&self, _sql: &Sql) -> Result<Vec<String>, RedshiftError> {
        Ok(Vec::new())
    }

    /// Redshift's estimate of a query's result (`EXPLAIN`), or `None` when the plan names none.
    /// A warehouse that cannot estimate says `None` (the default).
    async fn estimate(&self, _sql: &Sql) -> Result<Option<Estimate>, RedshiftError> {
        Ok(None)
    }

    /// Opens a cursor over `select`, read `fetch_rows` rows at a time (see
    /// `crate::redshift::RowCursor`). A warehouse that cannot (the default) says so.
    async fn open_cursor(
        &self,
        _select: &Sql,
        _fetch_rows: usize,
    ) -> Result<Box<dyn Rows>, RedshiftError> {
        Err(RedshiftError::Unreachable {
            address: String::new(),
            source: ConnectError::Other("this warehouse cannot read rows on the connection"),
        })
    }
}

/// Rows read on the connection, a batch at a time.
#[async_trait::async_trait]
pub trait Rows: Send + fmt::Debug {
    /// The next batch, or `None` when there are no more rows.
    async fn next_batch(&mut self) -> Result<Option<TextBatch>, RedshiftError>;
}

#[async_trait::async_trait]
impl Rows for RowCursor {
    async fn next_batch(&mut self) -> Result<Option<TextBatch>, RedshiftError> {
        RowCursor::next_batch(self).await
    }
}

#[async_trait::async_trait]
impl Warehouse for Redshift {
    async fn schema_names(&self) -> Result<Vec<String>, RedshiftError> {
        let rows = Redshift::query(self, &queries::schema_names()).await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
            .collect())
    }

    async fn describe(&self, schema: &str) -> Result<Vec<TableInfo>, CatalogError> {
        let redshift_err = |source| CatalogError::Redshift {
            schema: schema.to_string(),
            source,
        };
        let columns = Redshift::query(self, &queries::columns(schema)?)
            .await
            .map_err(redshift_err)?;
        let keys = Redshift::query(self, &queries::primary_keys(schema)?)
            .await
            .map_err(redshift_err)?;
        // Row estimates are a nicety: a cluster without svv_table_info access still serves.
        // The other kinds' queries are tolerated the same way (a warehouse that cannot answer
        // them still serves its tables and views), with a warning since relations go missing.
        let optional = |what: &'static str, sql: Sql| async move {
            match Redshift::query(self, &sql).await {
                Ok(rows) => rows,
                Err(error) if what == "row estimates" => {
                    tracing::debug!(%error, schema, "no row estimates");
                    Vec::new()
                }
                Err(error) => {
                    tracing::warn!(%error, schema, "cannot read the {what}; serving the schema without them");
                    Vec::new()
                }
            }
        };
        let estimates = optional("row estimates", queries::row_estimates(schema)?).await;
        let late_binding = optional(
            "late-binding views",
            queries::late_binding_view_columns(schema)?,
        )
        .await;
        let materialized =
            optional("materialized views", queries::materialized_views(schema)?).await;
        let external = optional("external tables", queries::external_columns(schema)?).await;
        queries::assemble(
            schema,
            queries::CatalogRows {
                columns,
                keys,
                estimates,
                late_binding,
                materialized,
                external,
            },
        )
    }

    async fn shared_schema_names(
        &self,
        databases: &[String],
    ) -> Result<Vec<(String, String)>, CatalogError> {
        if databases.is_empty() {
            return Ok(Vec::new());
        }
        let rows = Redshift::query(self, &shared::schema_names(databases)?)
            .await
            .map_err(|source| CatalogError::Redshift {
                schema: "(consumer databases)".to_string(),
                source,
            })?;
        Ok(shared::read_schema_names(rows))
    }

    async fn describe_shared(
        &self,
        database: &str,
        schema: &str,
    ) -> Result<Vec<TableInfo>, CatalogError> {
        let redshift_err = |source| CatalogError::Redshift {
            schema: format!("{database}.{schema}"),
            source,
        };
        let tables = Redshift::query(self, &shared::tables(database, schema)?)
            .await
            .map_err(redshift_err)?;
        let columns = Redshift::query(self, &shared::columns(database, schema)?)
            .await
            .map_err(redshift_err)?;
        shared::assemble(database, schema, tables, columns)
    }

    async fn max_key(&self, sql: &Sql) -> Result<Option<String>, RedshiftError> {
        let rows = Redshift::query(self, sql).await?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next())
            .flatten())
    }

    async fn unload(&self, sql: &Sql) -> Result<u64, RedshiftError> {
        self.unload_counted(sql).await
    }

    async fn query(&self, sql: &Sql) -> Result<Vec<TextRow>, RedshiftError> {
        Redshift::query(self, sql).await
    }

    async fn describe_query(&self, sql: &Sql) -> Result<Vec<ColumnInfo>, RedshiftError> {
        let described = self.describe_columns(sql).await?;
        // A column taken straight from a table gets that column's own catalog type (the
        // protocol describes a domain such as the emulator's GEOMETRY by its base type).
        let direct: Vec<(u32, i16)> = described
            .iter()
            .filter_map(|c| Some((c.table_oid?, c.column_id?)))
            .collect();
        let mut exact = std::collections::HashMap::new();
        if !direct.is_empty() {
            for row in Redshift::query(self, &queries::column_types(&direct)).await? {
                if let [Some(oid), Some(attnum), Some(catalog_type)] = row.as_slice()
                    && let (Ok(oid), Ok(attnum)) = (oid.parse::<u32>(), attnum.parse::<i16>())
                {
                    exact.insert((oid, attnum), catalog_type.clone());
                }
            }
        }
        Ok(described
            .into_iter()
            .map(|c| {
                let catalog_type = c
                    .table_oid
                    .zip(c.column_id)
                    .and_then(|key| exact.get(&key).cloned())
                    .unwrap_or_else(|| {
                        types::catalog_type_of(c.type_oid, c.type_modifier, &c.type_name)
                    });
                ColumnInfo::new(c.name, catalog_type, true)
            })
            .collect())
    }

    async fn describe_parameters(&self, sql: &Sql) -> Result<Vec<String>, RedshiftError> {
        Ok(Redshift::describe_parameters(self, sql)
            .await?
            .into_iter()
            .map(|p| types::catalog_type_of(p.type_oid, -1, &p.type_name))
            .collect())
    }

    async fn estimate(&self, sql: &Sql) -> Result<Option<Estimate>, RedshiftError> {
        let rows = Redshift::query(self, &estimate::explain_sql(sql)).await?;
        Ok(estimate::parse_explain(
            rows.iter()
                .filter_map(|row| row.first().and_then(Option::as_deref)),
        ))
    }

    async fn open_cursor(
        &self,
        select: &Sql,
        fetch_rows: usize,
    ) -> Result<Box<dyn Rows>, RedshiftError> {
        Ok(Box::new(
            Redshift::open_cursor(self, select, fetch_rows).await?,
        ))
    }
}
