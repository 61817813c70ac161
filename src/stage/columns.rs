//! The run's columns object: the promised schema (column names, Redshift types, nullability, and
//! the primary key), stored once per staged run as `<run prefix>columns.json` instead of in every
//! ticket, so that a ticket's size does not grow with the table's width (a 300-column table made
//! 15 KB tickets, and a FlightInfo of a few hundred endpoints outgrew gRPC's 4 MiB).
//!
//! GetFlightInfo writes the object after staging; each ticket carries the SHA-256 of its bytes
//! (the fingerprint), and DoGet reads it, checks the fingerprint and keeps it in a small in-process
//! cache keyed by run id and fingerprint, so that the endpoints of one run usually cost one GET on
//! each replica (none on the replica that staged it). The object lives and dies with its run.
//!
//! ```json
//! {"version":1,"columns":[{"name":"id","catalog_type":"integer","nullable":false}],"primary_key":["id"]}
//! ```
//!
//! A run of a relation whose schema names its kind (a materialized view, a late-binding view, an
//! external table) keeps it (`"kind":"external_table"`), so DoGet's schema carries it too.
//!
//! The run of a Flight SQL query also lists the relations the query reads
//! (`"relations":[["public","orders"]]`), which DoGet checks against the caller.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::{ColumnInfo, TableKind, TableRef, promised_schema_of_kind};
use crate::store::StoreError;

/// Name of the columns object inside a run's prefix.
pub const COLUMNS_OBJECT: &str = "columns.json";

/// Version of the columns object this build writes and reads.
const COLUMNS_VERSION: u32 = 1;

/// Largest columns object read (Redshift allows 1,600 columns of 127-byte names).
const MAX_COLUMNS_BYTES: usize = 4 << 20;

/// Runs whose columns one [`ColumnsCache`] keeps.
pub const DEFAULT_CACHE_RUNS: usize = 1024;

/// One column of the promised schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredColumn {
    /// Name, exactly as in the catalog.
    pub name: String,
    /// Redshift type as `format_type` prints it.
    pub catalog_type: String,
    /// Nullability.
    pub nullable: bool,
}

/// The promised schema of a run, as stored in its columns object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunColumns {
    version: u32,
    /// The columns, in the order of the schema.
    pub columns: Vec<StoredColumn>,
    /// Primary-key columns (schema metadata).
    pub primary_key: Vec<String>,
    /// For a Flight SQL query's run: every relation the query reads, as `[schema, name]`.
    /// DoGet checks the caller may read each of them (a table read checks the ticket's table).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relations: Vec<[String; 2]>,
    /// The relation's kind (`crate::catalog::META_KIND`) when its schema names one
    /// (`"kind":"materialized_view"`); absent for tables, views and queries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

impl RunColumns {
    /// The columns object of a plan's columns and its table's primary key.
    pub fn new(columns: &[ColumnInfo], primary_key: &[String]) -> Self {
        Self {
            version: COLUMNS_VERSION,
            columns: columns
                .iter()
                .map(|c| StoredColumn {
                    name: c.name.clone(),
                    catalog_type: c.catalog_type.clone(),
                    nullable: c.nullable,
                })
                .collect(),
            primary_key: primary_key.to_vec(),
            relations: Vec::new(),
            kind: None,
        }
    }

    /// The same columns object, naming the relation's kind.
    pub fn with_kind(mut self, kind: TableKind) -> Self {
        self.kind = kind.metadata_name().map(str::to_string);
        self
    }

    /// The schema promised for `columns` (these columns, as [`RunColumns::column_infos`] gives
    /// them) of `table`: its primary key and kind in the metadata.
    pub fn promised_schema(&self, table: &TableRef, columns: &[ColumnInfo]) -> SchemaRef {
        promised_schema_of_kind(table, self.kind.as_deref(), &self.primary_key, columns)
    }

    /// The same columns object, naming the relations a query read.
    pub fn with_relations(mut self, relations: &[TableRef]) -> Self {
        self.relations = relations
            .iter()
            .map(|r| [r.schema.clone(), r.table.clone()])
            .collect();
        self
    }

    /// The canonical bytes: compact JSON, fields in declaration order.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|_| unreachable!("plain structs serialize"))
    }

    /// The SHA-256 of the canonical bytes (what tickets carry).
    pub fn fingerprint(&self) -> [u8; 32] {
        Sha256::digest(self.to_bytes()).into()
    }

    /// The columns as the catalog describes them.
    pub fn column_infos(&self) -> Vec<ColumnInfo> {
        self.columns
            .iter()
            .map(|c| ColumnInfo::new(c.name.clone(), c.catalog_type.clone(), c.nullable))
            .collect()
    }
}

/// Why a run's columns object cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ColumnsError {
    /// Reading or writing the object failed (`NotFound`: the run is gone or never had one).
    #[error(transparent)]
    Store(StoreError),
    /// The object is not what the ticket was issued for, or not a columns object.
    #[error("the columns object s3://{bucket}/{key} of the staged run {message}")]
    Invalid {
        /// Bucket.
        bucket: String,
        /// Object key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

fn object_path(run_prefix: &str) -> Path {
    Path::from(format!("{run_prefix}{COLUMNS_OBJECT}"))
}

/// Writes the columns object of the run under `run_prefix` (ending in `/`).
pub async fn write(
    store: &Arc<dyn ObjectStore>,
    bucket: &str,
    run_prefix: &str,
    columns: &RunColumns,
) -> Result<(), StoreError> {
    let path = object_path(run_prefix);
    store
        .put(&path, PutPayload::from(columns.to_bytes()))
        .await
        .map(drop)
        .map_err(|e| StoreError::from_object_store(e, bucket, path.as_ref()))
}

/// Reads the columns object of the run under `run_prefix` and checks it has `fingerprint`.
pub async fn read(
    store: &Arc<dyn ObjectStore>,
    bucket: &str,
    run_prefix: &str,
    fingerprint: &[u8],
) -> Result<RunColumns, ColumnsError> {
    let path = object_path(run_prefix);
    let store_error =
        |e| ColumnsError::Store(StoreError::from_object_store(e, bucket, path.as_ref()));
    let invalid = |message: String| ColumnsError::Invalid {
        bucket: bucket.to_string(),
        key: path.to_string(),
        message,
    };
    let result = store.get(&path).await.map_err(store_error)?;
    if result.meta.size > MAX_COLUMNS_BYTES as u64 {
        return Err(invalid(format!("has {} bytes", result.meta.size)));
    }
    let bytes = result.bytes().await.map_err(store_error)?;
    if Sha256::digest(&bytes).as_slice() != fingerprint {
        return Err(invalid(
            "does not match the ticket's fingerprint; call GetFlightInfo again".into(),
        ));
    }
    let columns: RunColumns =
        serde_json::from_slice(&bytes).map_err(|e| invalid(format!("is not valid: {e}")))?;
    if columns.version != COLUMNS_VERSION {
        return Err(invalid(format!("has version {}", columns.version)));
    }
    Ok(columns)
}

/// Columns objects already read or written, by run id and fingerprint (bounded).
pub struct ColumnsCache {
    cache: quick_cache::sync::Cache<(String, [u8; 32]), Arc<RunColumns>>,
}

impl std::fmt::Debug for ColumnsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColumnsCache")
            .field("runs", &self.cache.len())
            .finish()
    }
}

impl Default for ColumnsCache {
    fn default() -> Self {
        Self::new(DEFAULT_CACHE_RUNS)
    }
}

impl ColumnsCache {
    /// A cache of at most `runs` runs' columns.
    pub fn new(runs: usize) -> Self {
        Self {
            cache: quick_cache::sync::Cache::new(runs.max(1)),
        }
    }

    /// Remembers what was written for `run_id`.
    pub fn insert(&self, run_id: &str, columns: Arc<RunColumns>) {
        self.cache
            .insert((run_id.to_string(), columns.fingerprint()), columns);
    }

    /// The columns of `run_id` with `fingerprint`: from the cache, else read (and cached).
    pub async fn get_or_read(
        &self,
        store: &Arc<dyn ObjectStore>,
        bucket: &str,
        run_id: &str,
        run_prefix: &str,
        fingerprint: &[u8],
    ) -> Result<Arc<RunColumns>, ColumnsError> {
        let Ok(fingerprint_array) = <[u8; 32]>::try_from(fingerprint) else {
            return Err(ColumnsError::Invalid {
                bucket: bucket.to_string(),
                key: object_path(run_prefix).to_string(),
                message: format!(
                    "cannot be checked: the ticket's fingerprint has {} bytes, not 32",
                    fingerprint.len()
                ),
            });
        };
        let key = (run_id.to_string(), fingerprint_array);
        self.cache
            .get_or_insert_async(&key, async {
                read(store, bucket, run_prefix, fingerprint)
                    .await
                    .map(Arc::new)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    #[tokio::test]
    async fn written_columns_read_back_by_fingerprint_and_are_cached() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let columns = RunColumns::new(
            &[
                ColumnInfo::new("id", "integer", false),
                ColumnInfo::new("O'Brien \"x\"", "numeric(38,10)", true),
            ],
            &["id".to_string()],
        );
        assert_eq!(
            String::from_utf8(columns.to_bytes()).unwrap(),
            r#"{"version":1,"columns":[{"name":"id","catalog_type":"integer","nullable":false},{"name":"O'Brien \"x\"","catalog_type":"numeric(38,10)","nullable":true}],"primary_key":["id"]}"#
        );
        let fingerprint = columns.fingerprint();
        write(&store, "b", "p/run/", &columns).await.unwrap();
        assert_eq!(
            read(&store, "b", "p/run/", &fingerprint).await.unwrap(),
            columns
        );
        assert!(matches!(
            read(&store, "b", "p/run/", &[0; 32]).await,
            Err(ColumnsError::Invalid { .. })
        ));
        assert!(matches!(
            read(&store, "b", "p/other/", &fingerprint).await,
            Err(ColumnsError::Store(StoreError::NotFound { .. }))
        ));

        let cache = ColumnsCache::new(4);
        let got = cache
            .get_or_read(&store, "b", "run", "p/run/", &fingerprint)
            .await
            .unwrap();
        assert_eq!(*got, columns);
        // Cached: found even once the object is gone.
        store.delete(&object_path("p/run/")).await.unwrap();
        assert!(
            cache
                .get_or_read(&store, "b", "run", "p/run/", &fingerprint)
                .await
                .is_ok()
        );
        assert!(
            cache
                .get_or_read(&store, "b", "run", "p/run/", &[1; 31])
                .await
                .is_err()
        );
    }
}
