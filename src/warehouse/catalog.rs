//! The catalog as the Flight service sees it: [`CachedCatalog`], the [`Catalog`] implementation
//! that describes schemas through a [`Warehouse`] and caches each one for the catalog TTL, with a
//! negative cache so that names clients make up cost no queries. The schemas of consumer
//! (datashare) databases are served as the namespaces `database.schema`.
//! Imports: `crate::catalog` (the model and trait), `crate::metrics`, the warehouse trait.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::Warehouse;
use crate::catalog::{Catalog, CatalogError, TableInfo, find_by_name, spec, split_namespace};
use crate::metrics::Metrics;

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
pub struct CachedCatalog {
    warehouse: Arc<dyn Warehouse>,
    default_schema: String,
    ttl: Duration,
    spec: Option<spec::TableSpec>,
    /// Consumer (datashare) databases served besides the connected one (`redshift_databases`).
    databases: Vec<String>,
    cache: moka::future::Cache<String, Arc<CachedSchema>>,
    names: Mutex<Option<SchemaNames>>,
    unknown: moka::future::Cache<String, ()>,
    metrics: Arc<Metrics>,
}

impl fmt::Debug for CachedCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedCatalog")
            .field("default_schema", &self.default_schema)
            .field("ttl", &self.ttl)
            .field("spec", &self.spec.is_some())
            .finish_non_exhaustive()
    }
}

impl CachedCatalog {
    /// A catalog reading through `warehouse`; `spec` limits and shapes what is served.
    pub fn new(
        warehouse: Arc<dyn Warehouse>,
        default_schema: String,
        ttl: Duration,
        spec: Option<spec::TableSpec>,
    ) -> Self {
        Self {
            warehouse,
            default_schema,
            ttl,
            spec,
            databases: Vec::new(),
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

    /// Also serves the tables of the consumer (datashare) databases `databases`: their schemas
    /// are the namespaces `database.schema` (see [`split_namespace`]), cached like any other.
    pub fn with_databases(mut self, databases: Vec<String>) -> Self {
        self.databases = databases;
        self
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
        let mut names =
            self.warehouse
                .schema_names()
                .await
                .map_err(|source| CatalogError::Redshift {
                    schema: "(schema names)".to_string(),
                    source,
                })?;
        if !self.databases.is_empty() {
            // A consumer database that cannot be described leaves the rest served.
            match self.warehouse.shared_schema_names(&self.databases).await {
                Ok(shared) => names.extend(
                    shared
                        .into_iter()
                        .map(|(database, schema)| format!("{database}.{schema}")),
                ),
                Err(error) => {
                    tracing::warn!(%error, "cannot list the schemas of redshift_databases")
                }
            }
        }
        let names: Arc<Vec<String>> = Arc::new(names);
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
        self.metrics.catalog_query("tables");
        let mut tables = match split_namespace(schema, &self.databases) {
            Some((database, shared)) => self.warehouse.describe_shared(database, shared).await?,
            None => self.warehouse.describe(schema).await?,
        };
        if let Some(spec) = &self.spec {
            tables = spec.apply(schema, &self.default_schema, tables);
        }
        Ok(tables.into_iter().map(Arc::new).collect())
    }
}

impl CachedCatalog {
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
impl Catalog for CachedCatalog {
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

    async fn schemas(&self) -> Result<Vec<String>, CatalogError> {
        // A listing cannot tell a missing schema from a new one, so it reads the names afresh
        // (one cheap query; callers waiting meanwhile share it). Their tables stay cached.
        // Consumer databases' namespaces are not schemas of the connected database's metadata.
        Ok(self
            .schema_names(Some(Instant::now()))
            .await?
            .iter()
            .filter(|name| split_namespace(name, &self.databases).is_none())
            .cloned()
            .collect())
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
