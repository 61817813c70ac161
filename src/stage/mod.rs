//! Staging: runs the plan's UNLOAD into a fresh prefix (one per run) and reads back the manifest.
//! [`Unloader`] is the seam to Redshift so that staging can be tested without a network.
//!
//! A run's prefix is `<s3_prefix>/<run id>/`; the run id starts with its creation time
//! (`20261125T121700Z-<random>`), so a sweeper can tell expired runs from their names alone.

pub mod manifest;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::sync::Semaphore;

use crate::config::IamRole;
use crate::plan::Plan;
use crate::plan::sql::{QuoteError, Sql};
use crate::redshift::{Redshift, RedshiftError};
use crate::store::StoreError;
pub use manifest::ManifestEntry;

/// Runs the statements staging needs on Redshift.
#[async_trait::async_trait]
pub trait Unloader: Send + Sync + fmt::Debug {
    /// Runs one UNLOAD to completion.
    async fn unload(&self, sql: &Sql) -> Result<(), RedshiftError>;

    /// Runs a query returning one value (`SELECT MAX(key) ...`) as Redshift's text; NULL is `None`.
    async fn query_value(&self, sql: &Sql) -> Result<Option<String>, RedshiftError>;
}

#[async_trait::async_trait]
impl Unloader for Redshift {
    async fn unload(&self, sql: &Sql) -> Result<(), RedshiftError> {
        self.execute_dedicated(sql).await.map(drop)
    }

    async fn query_value(&self, sql: &Sql) -> Result<Option<String>, RedshiftError> {
        let rows = self.execute_dedicated(sql).await?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next())
            .flatten())
    }
}

/// Why staging failed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The UNLOAD failed.
    #[error("UNLOAD of {table} failed: {source}")]
    Unload {
        /// The table.
        table: String,
        /// Redshift's error.
        source: RedshiftError,
    },
    /// `SELECT MAX(key)` failed.
    #[error("SELECT MAX of the replication key of {table} failed: {source}")]
    Max {
        /// The table.
        table: String,
        /// Redshift's error.
        source: RedshiftError,
    },
    /// Reading the manifest failed.
    #[error("reading the manifest of {table}: {source}")]
    Store {
        /// The table.
        table: String,
        /// The S3 error.
        source: StoreError,
    },
    /// The manifest is unusable.
    #[error("manifest of {table}: {source}")]
    Manifest {
        /// The table.
        table: String,
        /// What is wrong.
        source: manifest::ManifestError,
    },
    /// The statement could not be built.
    #[error("cannot build the UNLOAD of {table}: {source}")]
    Sql {
        /// The table.
        table: String,
        /// The quoting error.
        source: QuoteError,
    },
}

/// One staged run: the files UNLOAD wrote for one plan.
#[derive(Debug, Clone)]
pub struct StagedRun {
    /// The run id (also the last component of its prefix).
    pub run_id: String,
    /// The key prefix, ending in `/`.
    pub prefix: String,
    /// Data files from the manifest (empty for zero rows).
    pub files: Vec<ManifestEntry>,
    /// When the run and its tickets stop being valid.
    pub expires_at: SystemTime,
}

impl StagedRun {
    /// Rows over all files.
    pub fn total_rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }

    /// Bytes over all files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// Settings of [`Stager`].
#[derive(Debug, Clone)]
pub struct StageSettings {
    /// Staging bucket.
    pub bucket: String,
    /// Prefix under which runs live (no trailing `/`).
    pub prefix: String,
    /// Role for UNLOAD.
    pub iam_role: IamRole,
    /// MAXFILESIZE in MB.
    pub max_file_size_mb: u32,
    /// Lifetime of a run.
    pub ttl: Duration,
    /// UNLOADs at once, server-wide.
    pub max_parallel: usize,
}

/// Stages plans with UNLOAD and reads their manifests.
#[derive(Debug)]
pub struct Stager {
    unloader: Arc<dyn Unloader>,
    store: Arc<dyn ObjectStore>,
    settings: StageSettings,
    permits: Semaphore,
}

/// A new run id: creation time, then 64 random bits.
pub fn new_run_id(now: SystemTime) -> String {
    let time: chrono::DateTime<chrono::Utc> = now.into();
    format!(
        "{}-{:016x}",
        time.format("%Y%m%dT%H%M%SZ"),
        rand::random::<u64>()
    )
}

impl Stager {
    /// A stager writing under `settings.prefix` of `settings.bucket`.
    pub fn new(
        unloader: Arc<dyn Unloader>,
        store: Arc<dyn ObjectStore>,
        settings: StageSettings,
    ) -> Self {
        let permits = Semaphore::new(settings.max_parallel.max(1));
        Self {
            unloader,
            store,
            settings,
            permits,
        }
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.settings.bucket
    }

    /// The UNLOAD statement for `plan` into the run prefix `run_prefix`.
    pub fn unload_sql(&self, plan: &Plan, run_prefix: &str) -> Result<Sql, StageError> {
        let destination = format!("s3://{}/{}", self.settings.bucket, run_prefix);
        plan.unload_sql(
            &destination,
            &self.settings.iam_role,
            self.settings.max_file_size_mb,
        )
        .map_err(|source| StageError::Sql {
            table: plan.table.table.to_string(),
            source,
        })
    }

    /// Freezes the upper end of the plan's window: runs its `SELECT MAX(key)`.
    pub async fn max_key(&self, plan: &Plan) -> Result<Option<String>, StageError> {
        let table = plan.table.table.to_string();
        let Some(sql) = plan.max_sql().map_err(|source| StageError::Sql {
            table: table.clone(),
            source,
        })?
        else {
            return Ok(None);
        };
        self.unloader
            .query_value(&sql)
            .await
            .map_err(|source| StageError::Max { table, source })
    }

    /// Runs the plan's UNLOAD into a fresh prefix and returns the staged files. When UNLOAD fails
    /// part way, whatever it wrote is deleted before the error is returned.
    pub async fn stage(&self, plan: &Plan) -> Result<StagedRun, StageError> {
        let table = plan.table.table.to_string();
        let now = SystemTime::now();
        let run_id = new_run_id(now);
        let prefix = format!("{}/{run_id}/", self.settings.prefix);
        let sql = self.unload_sql(plan, &prefix)?;
        {
            // Bounded, FIFO: further requests queue here instead of failing.
            let _permit = self.permits.acquire().await;
            let started = std::time::Instant::now();
            tracing::info!(%table, run_id, "UNLOAD started");
            if let Err(source) = self.unloader.unload(&sql).await {
                self.delete_run(&prefix).await;
                return Err(StageError::Unload { table, source });
            }
            tracing::info!(%table, run_id, elapsed_ms = started.elapsed().as_millis() as u64, "UNLOAD finished");
        }
        let manifest_path = Path::from(format!("{prefix}manifest"));
        let files = match self.store.get(&manifest_path).await {
            Ok(result) => {
                let bytes = result.bytes().await.map_err(|e| StageError::Store {
                    table: table.clone(),
                    source: StoreError::from_object_store(
                        e,
                        &self.settings.bucket,
                        manifest_path.as_ref(),
                    ),
                })?;
                manifest::parse(&bytes, &self.settings.bucket, &prefix).map_err(|source| {
                    StageError::Manifest {
                        table: table.clone(),
                        source,
                    }
                })?
            }
            // A successful UNLOAD of zero rows writes neither files nor a manifest.
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => {
                return Err(StageError::Store {
                    table,
                    source: StoreError::from_object_store(
                        e,
                        &self.settings.bucket,
                        manifest_path.as_ref(),
                    ),
                });
            }
        };
        Ok(StagedRun {
            run_id,
            prefix,
            files,
            expires_at: now + self.settings.ttl,
        })
    }

    /// Deletes every object under a run prefix. Refuses anything outside `s3_prefix`.
    pub async fn delete_run(&self, run_prefix: &str) {
        let inside = run_prefix
            .strip_prefix(&format!("{}/", self.settings.prefix))
            .is_some_and(|rest| !rest.is_empty() && rest.ends_with('/') && !rest.contains(".."));
        if !inside {
            tracing::error!(run_prefix, "refusing to delete outside the staging prefix");
            return;
        }
        let prefix = Path::from(run_prefix);
        let locations = self
            .store
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .boxed();
        let deleted: Result<Vec<Path>, _> = self.store.delete_stream(locations).try_collect().await;
        match deleted {
            Ok(paths) => tracing::info!(run_prefix, objects = paths.len(), "deleted staged run"),
            Err(error) => tracing::warn!(run_prefix, %error, "could not delete staged run"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_carry_their_creation_time() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_073_020);
        let id = new_run_id(t);
        assert!(id.starts_with("20251125T121700Z-"), "{id}");
        assert_eq!(id.len(), "20251125T121700Z-".len() + 16);
        assert_ne!(new_run_id(t), new_run_id(t));
    }
}
