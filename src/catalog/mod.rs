//! Discovery: which tables are served, their columns with Redshift types and nullability, primary
//! keys and row estimates. [`Catalog`] is the trait the Flight service depends on;
//! [`RedshiftCatalog`] reads Redshift's catalog through `crate::redshift` and caches each schema
//! for a TTL; with `auto_schema_detection = false` a [`spec::TableSpec`] filters and shapes it.

pub mod spec;
pub mod types;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::{DataType, Schema, SchemaRef};
use tokio::sync::Mutex;

use crate::metrics::Metrics;

use crate::plan::sql::{self, QuoteError, Sql};
use crate::redshift::{Redshift, RedshiftError, TextRow};
pub use types::RedshiftType;

/// Column names preferred as replication keys, in order of preference.
pub const PREFERRED_REPLICATION_KEYS: [&str; 9] = [
    "updated_at",
    "last_updated",
    "last_update",
    "last_modified",
    "modified_at",
    "modified_on",
    "updated_on",
    "update_time",
    "updated",
];

/// Schema metadata key listing the primary-key columns as a JSON array.
pub const META_PRIMARY_KEY: &str = "redshift_flight.primary_key";
/// Field metadata key saying how a GEOMETRY column is encoded when it is not ISO WKB (`ewkb`).
pub const META_GEOMETRY_ENCODING: &str = "redshift_flight.geometry_encoding";

/// `schema` with its GEOMETRY columns (`types`, in order) as EWKB: Redshift's own encoding, which
/// keeps each value's SRID. Such fields carry `redshift_flight.geometry_encoding = ewkb` instead
/// of the `geoarrow.wkb` extension (which is ISO WKB).
pub fn with_ewkb_geometry(schema: &SchemaRef, types: &[RedshiftType]) -> SchemaRef {
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .zip(types)
        .map(|(field, rtype)| match rtype {
            RedshiftType::Geometry => {
                let mut metadata = field.metadata().clone();
                metadata.remove(types::META_EXTENSION_NAME);
                metadata.remove(types::META_EXTENSION_METADATA);
                metadata.insert(META_GEOMETRY_ENCODING.to_string(), "ewkb".to_string());
                Arc::new(field.as_ref().clone().with_metadata(metadata))
            }
            _ => Arc::clone(field),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Schema metadata key naming the table (`schema.table`).
pub const META_TABLE: &str = "redshift_flight.table";

/// A schema-qualified table name, exactly as the catalog spells it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableRef {
    /// Schema name.
    pub schema: String,
    /// Table name.
    pub table: String,
}

impl TableRef {
    /// A table reference.
    pub fn new(schema: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            schema: schema.into(),
            table: table.into(),
        }
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    /// Name, exactly as in the catalog.
    pub name: String,
    /// The type as `format_type` printed it (kept for metadata and tickets).
    pub catalog_type: String,
    /// Parsed type.
    pub redshift_type: RedshiftType,
    /// Whether NULL is allowed.
    pub nullable: bool,
}

impl ColumnInfo {
    /// A column from its catalog description.
    pub fn new(name: impl Into<String>, catalog_type: impl Into<String>, nullable: bool) -> Self {
        let catalog_type = catalog_type.into();
        Self {
            name: name.into(),
            redshift_type: RedshiftType::from_format_type(&catalog_type),
            catalog_type,
            nullable,
        }
    }

    /// The Arrow field clients receive.
    pub fn arrow_field(&self) -> arrow::datatypes::Field {
        self.redshift_type
            .arrow_field(&self.name, self.nullable, &self.catalog_type)
    }
}

/// Whether a relation is a table or a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// An ordinary table.
    Table,
    /// A view or materialized view.
    View,
}

/// Everything the server knows about one table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableInfo {
    /// Its name.
    pub table: TableRef,
    /// Table or view.
    pub kind: TableKind,
    /// Columns in table order.
    pub columns: Vec<ColumnInfo>,
    /// Primary-key columns in key order (empty if none).
    pub primary_key: Vec<String>,
    /// Row estimate, if Redshift has one.
    pub row_estimate: Option<i64>,
    /// Replication key named by the table spec, if any.
    pub replication_key: Option<String>,
    /// Sync strategy named by the table spec, if any.
    pub strategy: Option<spec::Strategy>,
}

impl TableInfo {
    /// The Arrow schema for a projection of this table.
    pub fn arrow_schema_of(&self, columns: &[ColumnInfo]) -> SchemaRef {
        promised_schema(&self.table, &self.primary_key, columns)
    }

    /// The Arrow schema of the whole table.
    pub fn arrow_schema(&self) -> SchemaRef {
        self.arrow_schema_of(&self.columns)
    }

    /// The replication key the seed's connector would infer: among TIMESTAMP, TIMESTAMPTZ and DATE
    /// columns, the first preferred name (see [`PREFERRED_REPLICATION_KEYS`], case-insensitive),
    /// else the first such column in table order; `None` when there is none.
    pub fn inferred_replication_key(&self) -> Option<&ColumnInfo> {
        let candidates: Vec<&ColumnInfo> = self
            .columns
            .iter()
            .filter(|c| {
                matches!(
                    c.redshift_type,
                    RedshiftType::Timestamp | RedshiftType::TimestampTz | RedshiftType::Date
                )
            })
            .collect();
        PREFERRED_REPLICATION_KEYS
            .iter()
            .find_map(|name| {
                candidates
                    .iter()
                    .find(|c| c.name.eq_ignore_ascii_case(name))
            })
            .or_else(|| candidates.first())
            .copied()
    }

    /// Finds a column: the exact name, else the only case-insensitive match.
    pub fn column(&self, name: &str) -> Option<&ColumnInfo> {
        find_by_name(&self.columns, name, |c| &c.name)
    }
}

/// The Arrow schema clients are promised for `columns` of `table`: fields from the type table,
/// the table name and primary key in the schema metadata.
pub fn promised_schema(
    table: &TableRef,
    primary_key: &[String],
    columns: &[ColumnInfo],
) -> SchemaRef {
    let fields: Vec<_> = columns.iter().map(ColumnInfo::arrow_field).collect();
    let metadata = HashMap::from([
        (META_TABLE.to_string(), table.to_string()),
        (
            META_PRIMARY_KEY.to_string(),
            serde_json::to_string(primary_key).unwrap_or_else(|_| "[]".into()),
        ),
    ]);
    Arc::new(Schema::new_with_metadata(fields, metadata))
}

/// The type CHAR and VARCHAR columns take when a client asks for dictionary-encoded strings.
pub fn dictionary_string_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// `schema` with its CHAR and VARCHAR columns (`types`, in order) as dictionary-encoded strings:
/// the dictionaries Redshift wrote into the Parquet files are kept, not expanded.
pub fn with_dictionary_strings(schema: &SchemaRef, types: &[RedshiftType]) -> SchemaRef {
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .zip(types)
        .map(|(field, rtype)| match rtype {
            RedshiftType::Char | RedshiftType::Varchar => Arc::new(
                field
                    .as_ref()
                    .clone()
                    .with_data_type(dictionary_string_type()),
            ),
            _ => Arc::clone(field),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Exact match first, else a unique case-insensitive match (Redshift folds unquoted names to
/// lower case, so users often type `Orders` for `orders`).
pub(crate) fn find_by_name<'a, T>(
    items: &'a [T],
    name: &str,
    key: impl Fn(&T) -> &str,
) -> Option<&'a T> {
    if let Some(found) = items.iter().find(|i| key(i) == name) {
        return Some(found);
    }
    let mut matches = items.iter().filter(|i| key(i).eq_ignore_ascii_case(name));
    match (matches.next(), matches.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}

/// Why discovery failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Redshift could not be asked.
    #[error("cannot read the catalog of schema {schema}: {source}")]
    Redshift {
        /// The schema being read.
        schema: String,
        /// The cause.
        source: RedshiftError,
    },
    /// A name could not be quoted.
    #[error("invalid name: {0}")]
    Name(#[from] QuoteError),
    /// Redshift answered something unexpected.
    #[error("unexpected catalog answer for schema {schema}: {message}")]
    Unexpected {
        /// The schema being read.
        schema: String,
        /// What was wrong.
        message: String,
    },
}

/// Source of table metadata.
#[async_trait::async_trait]
pub trait Catalog: Send + Sync + fmt::Debug {
    /// The tables served in `schema`, sorted by name.
    async fn list_tables(&self, schema: &str) -> Result<Vec<Arc<TableInfo>>, CatalogError>;

    /// One table, or `None` if it is not served. Names match exactly, else case-insensitively
    /// when that is unambiguous.
    async fn table(
        &self,
        schema: &str,
        table: &str,
    ) -> Result<Option<Arc<TableInfo>>, CatalogError> {
        let tables = self.list_tables(schema).await?;
        Ok(find_by_name(&tables, table, |t| &t.table.table).cloned())
    }

    /// The schema used when a request names none.
    fn default_schema(&self) -> &str;

    /// Forgets what is cached for `schema` (after Redshift said a column or table is gone).
    async fn invalidate(&self, _schema: &str) {}

    /// Schema names, for matching a requested schema case-insensitively.
    async fn resolve_schema(&self, schema: &str) -> Result<String, CatalogError> {
        Ok(schema.to_string())
    }
}

struct CachedSchema {
    loaded: Instant,
    tables: Vec<Arc<TableInfo>>,
}

/// The schema names Redshift has, as last read.
struct SchemaNames {
    loaded: Instant,
    names: Arc<Vec<String>>,
}

/// Most schemas the catalog cache holds at once, least recently used evicted first. Only schemas
/// that exist are cached: a name a client makes up is answered from the list of schema names.
pub const SCHEMA_CACHE_ENTRIES: u64 = 256;

/// Bytes of schema names remembered as unknown (each for [`MISS_RELOAD_INTERVAL`]).
const UNKNOWN_NAMES_BYTES: u64 = 4 << 20;

/// A lookup that misses the cache reloads the schema at most this often, so a table created a
/// moment ago is found at once, while a stream of requests for unknown tables cannot turn into a
/// stream of catalog queries.
const MISS_RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// Discovery against Redshift's catalog, cached per schema (at most [`SCHEMA_CACHE_ENTRIES`],
/// each for the catalog TTL). Which schemas exist is cached too, for the TTL; a name not on that
/// list re-reads it once (so a schema created a moment ago is found) and is then remembered as
/// unknown for [`MISS_RELOAD_INTERVAL`] (bounded by [`UNKNOWN_NAMES_BYTES`]), so repeating it
/// costs no query. Nothing is ever cached per table or schema that does not exist.
pub struct RedshiftCatalog {
    redshift: Arc<Redshift>,
    default_schema: String,
    ttl: Duration,
    spec: Option<spec::TableSpec>,
    cache: moka::future::Cache<String, Arc<CachedSchema>>,
    names: Mutex<Option<SchemaNames>>,
    unknown: moka::future::Cache<String, ()>,
    metrics: Arc<Metrics>,
}

impl fmt::Debug for RedshiftCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedshiftCatalog")
            .field("default_schema", &self.default_schema)
            .field("ttl", &self.ttl)
            .field("spec", &self.spec.is_some())
            .finish_non_exhaustive()
    }
}

impl RedshiftCatalog {
    /// A catalog reading through `redshift`; `spec` limits and shapes what is served.
    pub fn new(
        redshift: Arc<Redshift>,
        default_schema: String,
        ttl: Duration,
        spec: Option<spec::TableSpec>,
    ) -> Self {
        Self {
            redshift,
            default_schema,
            ttl,
            spec,
            cache: moka::future::Cache::builder()
                .max_capacity(SCHEMA_CACHE_ENTRIES)
                .time_to_live(ttl)
                .build(),
            names: Mutex::new(None),
            unknown: moka::future::Cache::builder()
                .weigher(|name: &String, _| u32::try_from(name.len() + 64).unwrap_or(u32::MAX))
                .max_capacity(UNKNOWN_NAMES_BYTES)
                .time_to_live(MISS_RELOAD_INTERVAL)
                .build(),
            metrics: Metrics::new(),
        }
    }

    /// Counts catalog queries and cached schemas in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Schemas in the cache now.
    pub async fn cached_schemas(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.entry_count()
    }

    /// Redshift's schema names, read again unless the list was read after `fresh_after`. The
    /// lock is held while reading, so callers waiting meanwhile share that one query.
    async fn schema_names(
        &self,
        fresh_after: Option<Instant>,
    ) -> Result<Arc<Vec<String>>, CatalogError> {
        let mut cached = self.names.lock().await;
        if let Some(names) = cached.as_ref()
            && fresh_after.is_none_or(|after| names.loaded > after)
        {
            return Ok(Arc::clone(&names.names));
        }
        self.metrics.catalog_query("schemas");
        let rows = self
            .redshift
            .query(&Sql::new(
                "SELECT nspname FROM pg_catalog.pg_namespace ORDER BY nspname".to_string(),
            ))
            .await
            .map_err(|source| CatalogError::Redshift {
                schema: "(schema names)".to_string(),
                source,
            })?;
        let names: Arc<Vec<String>> = Arc::new(
            rows.into_iter()
                .filter_map(|r| r.into_iter().next().flatten())
                .collect(),
        );
        *cached = Some(SchemaNames {
            loaded: Instant::now(),
            names: Arc::clone(&names),
        });
        Ok(names)
    }

    /// The schema name `schema` stands for (exactly, or else case-insensitively when `exact` is
    /// false), or `None` if Redshift has no such schema. The list of names is trusted for the
    /// catalog TTL; a name not on it re-reads the list once and is then remembered as unknown
    /// for [`MISS_RELOAD_INTERVAL`].
    async fn find_schema(&self, schema: &str, exact: bool) -> Result<Option<String>, CatalogError> {
        if self.unknown.contains_key(schema) {
            return Ok(None);
        }
        let find = |names: &[String]| {
            if exact {
                names.iter().find(|n| *n == schema).cloned()
            } else {
                find_by_name(names, schema, |n| n).cloned()
            }
        };
        let asked = Instant::now();
        let names = self.schema_names(asked.checked_sub(self.ttl)).await?;
        if let Some(found) = find(&names) {
            return Ok(Some(found));
        }
        if find_by_name(&names, schema, |n| n).is_some() {
            // Only spelled differently: `resolve_schema` finds it without another query.
            return Ok(None);
        }
        // A list read after this request began is as fresh as one it would read itself.
        let names = self.schema_names(Some(asked)).await?;
        if find_by_name(&names, schema, |n| n).is_none() {
            self.unknown.insert(schema.to_string(), ()).await;
        }
        Ok(find(&names))
    }

    async fn load(&self, schema: &str) -> Result<Vec<Arc<TableInfo>>, CatalogError> {
        let redshift_err = |source| CatalogError::Redshift {
            schema: schema.to_string(),
            source,
        };
        let schema_literal = sql::literal(schema)?;
        self.metrics.catalog_query("tables");
        let columns = self
            .redshift
            .query(&Sql::new(format!(
                "SELECT c.relname, c.relkind, a.attname, \
                 pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull \
                 FROM pg_catalog.pg_attribute a \
                 JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = {schema_literal} AND c.relkind IN ('r', 'v', 'm', 'p') \
                 AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY c.relname, a.attnum"
            )))
            .await
            .map_err(redshift_err)?;
        let keys = self
            .redshift
            .query(&Sql::new(format!(
                "SELECT kcu.table_name, kcu.column_name \
                 FROM information_schema.table_constraints tc \
                 JOIN information_schema.key_column_usage kcu \
                 ON tc.constraint_name = kcu.constraint_name \
                 AND tc.table_schema = kcu.table_schema AND tc.table_name = kcu.table_name \
                 WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = {schema_literal} \
                 ORDER BY kcu.table_name, kcu.ordinal_position"
            )))
            .await
            .map_err(redshift_err)?;
        // Row estimates are a nicety: a cluster without svv_table_info access still serves.
        let estimates = match self
            .redshift
            .query(&Sql::new(format!(
                "SELECT \"table\", tbl_rows FROM svv_table_info WHERE \"schema\" = {schema_literal}"
            )))
            .await
        {
            Ok(rows) => rows,
            Err(error) => {
                tracing::debug!(%error, schema, "no row estimates");
                Vec::new()
            }
        };
        let mut tables = assemble(schema, columns, keys, estimates)?;
        if let Some(spec) = &self.spec {
            tables = spec.apply(schema, &self.default_schema, tables);
        }
        Ok(tables.into_iter().map(Arc::new).collect())
    }
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

fn assemble(
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

impl RedshiftCatalog {
    /// The cached tables of `schema` if younger than `max_age`, else freshly loaded ones.
    async fn tables_younger_than(
        &self,
        schema: &str,
        max_age: Duration,
    ) -> Result<Vec<Arc<TableInfo>>, CatalogError> {
        if let Some(cached) = self.cache.get(schema).await
            && cached.loaded.elapsed() < max_age
        {
            return Ok(cached.tables.clone());
        }
        // An unknown schema serves no tables; nothing is cached under a name a client made up.
        if self.find_schema(schema, true).await?.is_none() {
            return Ok(Vec::new());
        }
        // Two concurrent misses may both load; the later one wins.
        let tables = self.load(schema).await?;
        self.cache
            .insert(
                schema.to_string(),
                Arc::new(CachedSchema {
                    loaded: Instant::now(),
                    tables: tables.clone(),
                }),
            )
            .await;
        let cached = self.cached_schemas().await;
        self.metrics
            .catalog_cached_schemas
            .set(i64::try_from(cached).unwrap_or(i64::MAX));
        Ok(tables)
    }
}

#[async_trait::async_trait]
impl Catalog for RedshiftCatalog {
    async fn list_tables(&self, schema: &str) -> Result<Vec<Arc<TableInfo>>, CatalogError> {
        self.tables_younger_than(schema, self.ttl).await
    }

    async fn table(
        &self,
        schema: &str,
        table: &str,
    ) -> Result<Option<Arc<TableInfo>>, CatalogError> {
        let tables = self.list_tables(schema).await?;
        if let Some(found) = find_by_name(&tables, table, |t| &t.table.table) {
            return Ok(Some(Arc::clone(found)));
        }
        let tables = self
            .tables_younger_than(schema, MISS_RELOAD_INTERVAL.min(self.ttl))
            .await?;
        Ok(find_by_name(&tables, table, |t| &t.table.table).cloned())
    }

    fn default_schema(&self) -> &str {
        &self.default_schema
    }

    async fn invalidate(&self, schema: &str) {
        self.cache.invalidate(schema).await;
    }

    async fn resolve_schema(&self, schema: &str) -> Result<String, CatalogError> {
        Ok(self
            .find_schema(schema, false)
            .await?
            .unwrap_or_else(|| schema.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn table_with(columns: &[(&str, &str)]) -> TableInfo {
        TableInfo {
            table: TableRef::new("s", "t"),
            kind: TableKind::Table,
            columns: columns
                .iter()
                .map(|(n, t)| ColumnInfo::new(*n, *t, true))
                .collect(),
            primary_key: vec![],
            row_estimate: None,
            replication_key: None,
            strategy: None,
        }
    }

    #[test]
    fn replication_key_inference_follows_the_seed() {
        let t = table_with(&[
            ("id", "integer"),
            ("created", "date"),
            ("Modified_At", "timestamp without time zone"),
            ("LAST_UPDATED", "timestamp with time zone"),
            ("updated_at", "character varying(20)"),
        ]);
        assert_eq!(t.inferred_replication_key().unwrap().name, "LAST_UPDATED");
        let t = table_with(&[
            ("id", "integer"),
            ("created", "date"),
            ("at", "timestamp without time zone"),
        ]);
        assert_eq!(t.inferred_replication_key().unwrap().name, "created");
        let t = table_with(&[("id", "integer"), ("n", "numeric(10,2)")]);
        assert!(t.inferred_replication_key().is_none());
    }

    #[test]
    fn names_match_exactly_then_case_insensitively() {
        let names = vec![
            "Orders".to_string(),
            "orders".to_string(),
            "Items".to_string(),
        ];
        assert_eq!(find_by_name(&names, "orders", |n| n).unwrap(), "orders");
        assert_eq!(find_by_name(&names, "ORDERS", |n| n), None, "ambiguous");
        assert_eq!(find_by_name(&names, "items", |n| n).unwrap(), "Items");
    }
}
