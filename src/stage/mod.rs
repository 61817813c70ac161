//! Staging: runs the plan's UNLOAD into a fresh prefix (one per attempt), reads back the
//! manifest, and gives every run a life: deleted shortly after all its endpoints were streamed, at
//! once on cancel, and by the sweeper once expired (also runs left by a crashed server).
//! Redshift is reached through [`crate::warehouse::Warehouse`], so staging can be tested without
//! a network.
//!
//! One file per concern, all `impl Stager`:
//! - [`run_id`]: run and reader ids, and where a run's objects live;
//! - [`unload`]: the UNLOAD itself (slot, lease while it runs, retries into fresh prefixes, the
//!   row-count check against the manifest, footers, columns object);
//! - [`run_state`]: the on-S3 protocol of a run's life (lease, `consumed/`, `readers/`), shared by
//!   every replica;
//! - [`sweeper`]: deleting expired runs;
//! - [`jobs`]: the on-S3 state of long Flight SQL queries answered through PollFlightInfo (in
//!   folders named like runs, so the sweeper deletes them too), and their UNLOAD's progress;
//! - [`manifest`], [`layout`], [`columns`]: the objects UNLOAD and staging write, parsed.
//!
//! May import: config (settings types), plan (the plan to unload), warehouse (the seam UNLOADs run
//! through) and redshift (its error type), sql, store (errors), clock, metrics. Nothing outside
//! `s3_prefix` is ever deleted.

pub mod claim;
pub mod columns;
pub mod flights;
pub mod jobs;
pub mod layout;
pub mod manifest;
pub mod run_id;
pub mod run_state;
pub mod slots;
pub mod sweeper;
pub mod unload;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use object_store::ObjectStore;

use crate::metrics::Metrics;
use crate::plan::UnloadOptions;
use crate::redshift::{RedshiftError, RetrySettings};
use crate::sql::QuoteError;
use crate::store::StoreError;
use crate::warehouse::Warehouse;
pub use layout::{FileLayout, LayoutError, Part};
pub use manifest::ManifestEntry;
pub use run_id::{data_prefix, new_reader_id, new_run_id, run_created_at};
use run_state::PendingDelete;

/// Why staging failed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The UNLOAD failed.
    #[error("UNLOAD of {table} failed: {source}{}", cross_region_hint(.source))]
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
    /// A staged file's footer could not be read or disagrees with the manifest.
    #[error("staged files of {table}: {source}")]
    Layout {
        /// The table.
        table: String,
        /// What is wrong.
        source: LayoutError,
    },
    /// Redshift's count of unloaded rows disagrees with the manifest: a manifest lost or cut
    /// short must never pass for fewer rows, so the run is deleted and the request fails.
    #[error(
        "UNLOAD of {table} wrote {unloaded} rows (pg_last_unload_count) but its manifest lists {listed}: the staged run is incomplete, so it was deleted and nothing was served (the cursor does not move; try again)"
    )]
    RowCount {
        /// The table.
        table: String,
        /// Rows Redshift says it unloaded.
        unloaded: u64,
        /// Rows the manifest lists (0 when there is no manifest).
        listed: u64,
    },
    /// A run id that is not one of ours.
    #[error("invalid run id {0:?}")]
    RunId(String),
    /// Writing run state (lease, markers) failed.
    #[error("updating staged run {run_id}: {source}")]
    RunState {
        /// The run.
        run_id: String,
        /// The S3 error.
        source: StoreError,
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
    /// Each file's footer, in `files` order.
    pub layouts: Vec<FileLayout>,
    /// The endpoints: row-group ranges of the files.
    pub parts: Vec<Part>,
    /// When the run and its tickets stop being valid.
    pub expires_at: SystemTime,
    /// The promised columns, as stored in the run's columns object.
    pub columns: Arc<columns::RunColumns>,
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
    /// Role, file size, encryption and region of every UNLOAD.
    pub unload: UnloadOptions,
    /// Lifetime of a run.
    pub ttl: Duration,
    /// How long a fully streamed run stays, so a client retrying a failed stream still succeeds.
    pub grace: Duration,
    /// UNLOADs at once, server-wide.
    pub max_parallel: usize,
    /// Retries of transient UNLOAD failures.
    pub retry: RetrySettings,
    /// A file with more rows is split into several endpoints by row-group ranges (0: never).
    pub endpoint_rows: u64,
    /// How long after staging a run may be shared by identical requests (snapshot reuse).
    pub share_window: Duration,
    /// What replicas agree on through S3.
    pub cluster: ClusterOptions,
}

/// What replicas agree on through S3 (claims, see [`claim`]).
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// How long a claim holds unless renewed: a dead replica's claims pass within it.
    pub lease: Duration,
    /// UNLOADs at once over all replicas (0: no cluster-wide limit).
    pub max_parallel_unloads: usize,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(20),
            max_parallel_unloads: 0,
        }
    }
}

/// Whether Redshift's UNLOAD error says the bucket is in another region than the cluster (S3
/// answers such a request with a 301 `PermanentRedirect`, which Redshift reports as an
/// `S3ServiceException`).
pub fn is_cross_region(error: &RedshiftError) -> bool {
    let RedshiftError::Sql { message, .. } = error else {
        return false;
    };
    message.contains("PermanentRedirect")
        || message.contains("must be addressed using the specified endpoint")
        || (message.contains("S3ServiceException") && message.contains("Status 301"))
}

/// The fix for a cross-region UNLOAD failure, to append to its message.
fn cross_region_hint(error: &RedshiftError) -> &'static str {
    if is_cross_region(error) {
        " (the bucket is in another region than the Redshift cluster: set unload_region to the bucket's region)"
    } else {
        ""
    }
}

/// Stages plans with UNLOAD, reads their manifests, and deletes runs when their life ends.
#[derive(Debug)]
pub struct Stager {
    warehouse: Arc<dyn Warehouse>,
    store: Arc<dyn ObjectStore>,
    settings: StageSettings,
    permits: tokio::sync::Semaphore,
    claims: claim::Claims,
    metrics: Arc<Metrics>,
    /// Consumed runs waiting out their grace period (deleted at once on shutdown).
    pending: std::sync::Mutex<Vec<PendingDelete>>,
}

impl Stager {
    /// A stager writing under `settings.prefix` of `settings.bucket`.
    pub fn new(
        warehouse: Arc<dyn Warehouse>,
        store: Arc<dyn ObjectStore>,
        settings: StageSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let permits = tokio::sync::Semaphore::new(settings.max_parallel.max(1));
        Self {
            warehouse,
            claims: claim::Claims::new(Arc::clone(&store)),
            store,
            settings,
            permits,
            metrics,
            pending: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The warehouse UNLOADs run on (Flight SQL also describes queries there).
    pub fn warehouse(&self) -> &Arc<dyn Warehouse> {
        &self.warehouse
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.settings.bucket
    }

    /// The lifetime of a run (and of a renewal).
    pub fn ttl(&self) -> Duration {
        self.settings.ttl
    }

    /// The key prefix of a run, checking that `run_id` is a run id (so it cannot point elsewhere).
    pub fn run_prefix(&self, run_id: &str) -> Result<String, StageError> {
        if run_created_at(run_id).is_none() {
            return Err(StageError::RunId(run_id.to_string()));
        }
        Ok(format!("{}/{run_id}/", self.settings.prefix))
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod cluster_tests;
