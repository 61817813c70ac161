//! Staging: runs the plan's UNLOAD into a fresh prefix (one per run), reads back the manifest, and
//! gives every run a life: deleted shortly after all its files were streamed, at once on cancel,
//! and by the sweeper once expired (also runs left by a crashed server). [`Unloader`] is the seam
//! to Redshift so that staging can be tested without a network.
//!
//! A run lives under `<s3_prefix>/<run id>/`; the run id starts with its creation time
//! (`20261125T121700Z-<random>`, taken when an UNLOAD slot is free), so the sweeper can tell
//! expired runs from their names alone. UNLOAD writes the data files and the manifest under
//! `data/`; beside it a run holds `lease` (its expiry, Unix milliseconds: renewed while a long
//! UNLOAD runs, then the end of the UNLOAD plus the TTL, extended by renewals),
//! `consumed/<reader>/<endpoint>` markers (one per endpoint streamed to the end) and
//! `readers/<reader>` (when several FlightInfos share the run). All this state
//! lives in S3, so any replica can serve, renew, cancel or sweep any run. Nothing outside
//! `s3_prefix` is ever deleted.

pub mod columns;
pub mod layout;
pub mod manifest;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::config::IamRole;
use crate::metrics::Metrics;
use crate::plan::Plan;
use crate::plan::sql::{QuoteError, Sql};
use crate::redshift::{Redshift, RedshiftError, RetrySettings};
use crate::store::{StoreError, error_chain};
use crate::ticket::unix_ms;
pub use layout::{FileLayout, LayoutError, Part};
pub use manifest::ManifestEntry;

/// Runs the statements staging needs on Redshift.
#[async_trait::async_trait]
pub trait Unloader: Send + Sync + fmt::Debug {
    /// Runs one UNLOAD to completion, once (the stager retries, into a fresh prefix), and returns
    /// the rows it wrote as Redshift counts them on the same session (`pg_last_unload_count()`).
    async fn unload(&self, sql: &Sql) -> Result<u64, RedshiftError>;

    /// Runs a query returning one value (`SELECT MAX(key) ...`) as Redshift's text; NULL is `None`.
    async fn query_value(&self, sql: &Sql) -> Result<Option<String>, RedshiftError>;
}

#[async_trait::async_trait]
impl Unloader for Redshift {
    async fn unload(&self, sql: &Sql) -> Result<u64, RedshiftError> {
        self.unload_counted(sql).await
    }

    async fn query_value(&self, sql: &Sql) -> Result<Option<String>, RedshiftError> {
        let rows = self.query(sql).await?;
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
    /// Role for UNLOAD.
    pub iam_role: IamRole,
    /// MAXFILESIZE in MB.
    pub max_file_size_mb: u32,
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
}

/// Stages plans with UNLOAD, reads their manifests, and deletes runs when their life ends.
#[derive(Debug)]
pub struct Stager {
    unloader: Arc<dyn Unloader>,
    store: Arc<dyn ObjectStore>,
    settings: StageSettings,
    permits: tokio::sync::Semaphore,
    metrics: Arc<Metrics>,
    /// Consumed runs waiting out their grace period (deleted at once on shutdown).
    pending: std::sync::Mutex<Vec<PendingDelete>>,
}

/// A consumed run waiting out its grace period.
#[derive(Debug, Clone)]
struct PendingDelete {
    run_id: String,
    prefix: String,
    run_endpoints: u32,
    reader: String,
}

/// Where UNLOAD writes a run's data files and manifest: `data/` inside the run prefix, so that
/// the run's own state (`lease`, `consumed/`, `readers/`) never makes Redshift find the UNLOAD's
/// destination "not empty", even when the lease is written while the UNLOAD waits in a queue.
pub fn data_prefix(run_prefix: &str) -> String {
    format!("{run_prefix}data/")
}

/// A reader id as a path component: 1 to 32 hex digits; empty (tickets without one) is `_`.
fn reader_name(reader: &str) -> Result<String, StageError> {
    if reader.is_empty() {
        return Ok("_".into());
    }
    if reader.len() <= 32 && reader.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(reader.to_ascii_lowercase())
    } else {
        Err(StageError::RunId(format!("reader {reader:?}")))
    }
}

/// A fresh reader id (one per FlightInfo): 64 random bits in hex.
pub fn new_reader_id() -> String {
    format!("{:016x}", rand::random::<u64>())
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

/// The creation time encoded in a run id, or `None` if it is not a run id.
pub fn run_created_at(run_id: &str) -> Option<SystemTime> {
    let (time, random) = run_id.split_once('-')?;
    if random.len() != 16 || !random.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let time = chrono::NaiveDateTime::parse_from_str(time, "%Y%m%dT%H%M%SZ").ok()?;
    Some(SystemTime::from(time.and_utc()))
}

/// Deletes a staged run when dropped while armed: an UNLOAD abandoned by its caller (client gone,
/// deadline passed) must not leave files behind. Redshift is told to cancel the statement by the
/// connection layer; this removes whatever it wrote before that.
struct DeleteRunOnDrop {
    store: Arc<dyn ObjectStore>,
    prefix: Option<String>,
}

impl Drop for DeleteRunOnDrop {
    fn drop(&mut self) {
        if let Some(prefix) = self.prefix.take() {
            let store = Arc::clone(&self.store);
            tokio::spawn(async move {
                // Give the cancelled UNLOAD a moment to stop writing, then delete.
                tokio::time::sleep(Duration::from_secs(2)).await;
                if let Err(error) = delete_prefix(&store, &prefix).await {
                    tracing::warn!(prefix, %error, "could not delete an abandoned run");
                }
            });
        }
    }
}

async fn delete_prefix(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
) -> Result<usize, object_store::Error> {
    let prefix = Path::from(prefix);
    let locations = store.list(Some(&prefix)).map_ok(|m| m.location).boxed();
    let deleted: Vec<Path> = store.delete_stream(locations).try_collect().await?;
    Ok(deleted.len())
}

impl Stager {
    /// A stager writing under `settings.prefix` of `settings.bucket`.
    pub fn new(
        unloader: Arc<dyn Unloader>,
        store: Arc<dyn ObjectStore>,
        settings: StageSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let permits = tokio::sync::Semaphore::new(settings.max_parallel.max(1));
        Self {
            unloader,
            store,
            settings,
            permits,
            metrics,
            pending: std::sync::Mutex::new(Vec::new()),
        }
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

    /// The UNLOAD statement for `plan` into the run prefix `run_prefix` (its `data/` folder).
    pub fn unload_sql(&self, plan: &Plan, run_prefix: &str) -> Result<Sql, StageError> {
        let destination = format!("s3://{}/{}", self.settings.bucket, data_prefix(run_prefix));
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

    /// Runs the plan's UNLOAD into a fresh prefix and returns the staged files.
    ///
    /// The run's clock starts when the UNLOAD has finished: the run id (which carries a creation
    /// time the sweeper reads) is taken only once an UNLOAD slot is free, a lease is renewed while
    /// a long UNLOAD runs, and the finished run gets a lease of `ttl` from its end, which is also
    /// when its tickets expire. Every attempt writes to a prefix of its own: a transient failure
    /// (a reset connection, say) may leave the first statement running on Redshift, so its prefix
    /// is deleted and nothing renews it; whatever it writes later is swept. Redshift's count of
    /// unloaded rows must match the manifest (a missing manifest is zero rows only if Redshift
    /// unloaded none). When UNLOAD fails for good, or the caller gives up, whatever it wrote is
    /// deleted.
    pub async fn stage(&self, plan: &Plan) -> Result<StagedRun, StageError> {
        let table = plan.table.table.to_string();
        // Bounded, FIFO: further requests queue here instead of failing, without ageing a run.
        let permit = self.permits.acquire().await;
        let started = std::time::Instant::now();
        let mut guard = DeleteRunOnDrop {
            store: Arc::clone(&self.store),
            prefix: None,
        };
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.settings.retry.min_delay)
            .with_max_delay(self.settings.retry.max_delay)
            .with_max_times(self.settings.retry.max_retries)
            .with_jitter()
            .build();
        let (run_id, prefix, unloaded) = loop {
            let run_id = new_run_id(SystemTime::now());
            let prefix = format!("{}/{run_id}/", self.settings.prefix);
            let sql = self.unload_sql(plan, &prefix)?;
            guard.prefix = Some(prefix.clone());
            tracing::info!(%table, run_id, "UNLOAD started");
            match self.unload_leased(&sql, &run_id).await {
                Ok(unloaded) => break (run_id, prefix, unloaded),
                Err(error) => {
                    guard.prefix = None;
                    self.delete_run(&prefix, "failed").await;
                    match backoff.next() {
                        Some(delay) if error.is_transient() => {
                            tracing::warn!(%error, ?delay, run_id, "transient UNLOAD failure; retrying into a fresh prefix");
                            tokio::time::sleep(delay).await;
                        }
                        _ => {
                            self.metrics
                                .unload_seconds
                                .observe(started.elapsed().as_secs_f64());
                            return Err(StageError::Unload {
                                table,
                                source: error,
                            });
                        }
                    }
                }
            }
        };
        drop(permit);
        let expires_at = SystemTime::now() + self.settings.ttl;
        self.metrics
            .unload_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::info!(%table, run_id, unloaded, elapsed_ms = started.elapsed().as_millis() as u64, "UNLOAD finished");

        let files = match self.read_manifest(&prefix).await {
            Ok(files) => files,
            Err(ManifestRead::Store(source)) => {
                guard.prefix = None;
                return self
                    .abandon(&prefix, StageError::Store { table, source })
                    .await;
            }
            Err(ManifestRead::Invalid(source)) => {
                guard.prefix = None;
                return self
                    .abandon(&prefix, StageError::Manifest { table, source })
                    .await;
            }
        };
        let listed: u64 = files.iter().map(|f| f.rows).sum();
        if listed != unloaded {
            guard.prefix = None;
            return self
                .abandon(
                    &prefix,
                    StageError::RowCount {
                        table,
                        unloaded,
                        listed,
                    },
                )
                .await;
        }
        let run_columns = Arc::new(columns::RunColumns::new(
            &plan.columns,
            &plan.table.primary_key,
        ));
        let layouts = if files.is_empty() {
            Vec::new()
        } else {
            // The lease makes the sweeper keep the run as long as its tickets live; the columns
            // object is the promised schema DoGet reads (tickets carry only its fingerprint).
            let (layouts, lease, columns_written) = tokio::join!(
                layout::read_layouts(&self.store, &self.settings.bucket, &files),
                self.renew_run(&run_id, expires_at),
                columns::write(&self.store, &self.settings.bucket, &prefix, &run_columns)
            );
            if let Err(error) = lease {
                guard.prefix = None;
                return self.abandon(&prefix, error).await;
            }
            if let Err(source) = columns_written {
                guard.prefix = None;
                let error = StageError::RunState {
                    run_id: run_id.clone(),
                    source,
                };
                return self.abandon(&prefix, error).await;
            }
            match layouts {
                Ok(layouts) => layouts,
                Err(source) => {
                    guard.prefix = None;
                    return self
                        .abandon(&prefix, StageError::Layout { table, source })
                        .await;
                }
            }
        };
        let parts = layout::split(&layouts, self.settings.endpoint_rows);
        guard.prefix = None;
        if !files.is_empty() {
            self.metrics.runs_alive.inc();
        }
        Ok(StagedRun {
            run_id,
            prefix,
            files,
            layouts,
            parts,
            expires_at,
            columns: run_columns,
        })
    }

    /// Deletes a run whose staging failed after its UNLOAD, and returns the error.
    async fn abandon<T>(&self, prefix: &str, error: StageError) -> Result<T, StageError> {
        self.delete_run(prefix, "failed").await;
        Err(error)
    }

    /// Runs one UNLOAD attempt; while it runs longer than a quarter of the TTL, the run's lease is renewed
    /// so that the sweeper does not delete a run that is still being written.
    async fn unload_leased(&self, sql: &Sql, run_id: &str) -> Result<u64, RedshiftError> {
        let ttl = self.settings.ttl;
        let unload = self.unloader.unload(sql);
        tokio::pin!(unload);
        let period = (ttl / 4).max(Duration::from_millis(50));
        // From a quarter of the TTL on: the run id's creation time is rounded down to the second.
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                result = &mut unload => return result,
                _ = renew.tick() => {
                    if let Err(error) = self.renew_run(run_id, SystemTime::now() + ttl).await {
                        tracing::warn!(run_id, error = %error_chain(&error), "could not renew the lease of a run being written");
                    }
                }
            }
        }
    }

    async fn read_manifest(&self, prefix: &str) -> Result<Vec<ManifestEntry>, ManifestRead> {
        let prefix = data_prefix(prefix);
        let prefix = prefix.as_str();
        let manifest_path = Path::from(format!("{prefix}manifest"));
        match self.store.get(&manifest_path).await {
            Ok(result) => {
                let bytes = result.bytes().await.map_err(|e| {
                    ManifestRead::Store(StoreError::from_object_store(
                        e,
                        &self.settings.bucket,
                        manifest_path.as_ref(),
                    ))
                })?;
                manifest::parse(&bytes, &self.settings.bucket, prefix)
                    .map_err(ManifestRead::Invalid)
            }
            // A successful UNLOAD of zero rows writes neither files nor a manifest.
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(ManifestRead::Store(StoreError::from_object_store(
                e,
                &self.settings.bucket,
                manifest_path.as_ref(),
            ))),
        }
    }

    /// Deletes every object under a run prefix. Refuses anything outside `s3_prefix`.
    pub async fn delete_run(&self, run_prefix: &str, reason: &'static str) {
        let inside = run_prefix
            .strip_prefix(&format!("{}/", self.settings.prefix))
            .and_then(|rest| rest.strip_suffix('/'))
            .is_some_and(|run_id| run_created_at(run_id).is_some());
        if !inside {
            tracing::error!(
                run_prefix,
                "refusing to delete: not a staged run under the staging prefix"
            );
            return;
        }
        match delete_prefix(&self.store, run_prefix).await {
            Ok(0) => {}
            Ok(objects) => {
                tracing::info!(run_prefix, objects, reason, "deleted staged run");
                self.metrics.deleted(reason);
                if reason != "failed" {
                    self.metrics.runs_alive.dec();
                }
            }
            Err(error) => tracing::warn!(run_prefix, %error, "could not delete staged run"),
        }
    }

    fn state_error(&self, run_id: &str, error: object_store::Error, path: &Path) -> StageError {
        StageError::RunState {
            run_id: run_id.to_string(),
            source: StoreError::from_object_store(error, &self.settings.bucket, path.as_ref()),
        }
    }

    async fn list_names(&self, run_id: &str, dir: &Path) -> Result<Vec<String>, StageError> {
        let objects: Vec<_> = self
            .store
            .list(Some(dir))
            .try_collect()
            .await
            .map_err(|e| self.state_error(run_id, e, dir))?;
        let base = dir.parts().count();
        Ok(objects
            .into_iter()
            .map(|o| {
                o.location
                    .parts()
                    .skip(base)
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect())
    }

    /// Whether every reader of a run has streamed all `run_endpoints` of its endpoints. The readers
    /// are those listed under `readers/` (written when a run is shared), else `reader` alone.
    async fn run_complete(
        &self,
        run_id: &str,
        prefix: &str,
        run_endpoints: u32,
        reader: &str,
    ) -> Result<bool, StageError> {
        if run_endpoints == 0 {
            return Ok(false);
        }
        // One listing of the run holds both the markers and the readers.
        let names = self.list_names(run_id, &Path::from(prefix)).await?;
        let consumed: Vec<&str> = names
            .iter()
            .filter_map(|n| n.strip_prefix("consumed/"))
            .collect();
        let mut readers: Vec<&str> = names
            .iter()
            .filter_map(|n| n.strip_prefix("readers/"))
            .collect();
        if readers.is_empty() {
            readers.push(reader);
        }
        Ok(readers.iter().all(|r| {
            let mine = format!("{r}/");
            consumed.iter().filter(|c| c.starts_with(&mine)).count() >= run_endpoints as usize
        }))
    }

    /// Records that `endpoint` of a run was streamed to the end by `reader`; once every reader has
    /// streamed every one of the run's `run_endpoints` endpoints, the run is deleted after the
    /// grace period (plus the snapshot-reuse window, during which another reader may still join;
    /// the run is checked again before it goes).
    pub async fn file_consumed(
        self: &Arc<Self>,
        run_id: &str,
        endpoint: &str,
        run_endpoints: u32,
        reader: &str,
    ) -> Result<(), StageError> {
        let prefix = self.run_prefix(run_id)?;
        let reader = reader_name(reader)?;
        let marker = Path::from(format!("{prefix}consumed/{reader}/{endpoint}"));
        self.store
            .put(&marker, PutPayload::from_static(b""))
            .await
            .map_err(|e| self.state_error(run_id, e, &marker))?;
        if !self
            .run_complete(run_id, &prefix, run_endpoints, &reader)
            .await?
        {
            return Ok(());
        }
        let delay = self.settings.grace + self.settings.share_window;
        tracing::info!(
            run_id,
            ?delay,
            "every endpoint of the run was streamed; deleting after the grace period"
        );
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.iter().any(|p| p.prefix == prefix) {
                return Ok(());
            }
            pending.push(PendingDelete {
                run_id: run_id.to_string(),
                prefix: prefix.clone(),
                run_endpoints,
                reader: reader.clone(),
            });
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let entry = this
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .find(|p| p.prefix == prefix)
                .cloned();
            // Stays listed while it is deleted, so a shutdown flush waits for it too.
            if let Some(entry) = entry {
                this.delete_if_complete(&entry).await;
                this.pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|p| p.prefix != prefix);
            }
        });
        Ok(())
    }

    /// Deletes a consumed run unless a reader joined since and is still streaming it.
    async fn delete_if_complete(&self, entry: &PendingDelete) {
        match self
            .run_complete(
                &entry.run_id,
                &entry.prefix,
                entry.run_endpoints,
                &entry.reader,
            )
            .await
        {
            Ok(true) => self.delete_run(&entry.prefix, "consumed").await,
            Ok(false) => tracing::info!(
                run_id = entry.run_id,
                "another reader is still streaming the run; kept"
            ),
            Err(error) => {
                tracing::warn!(%error, "could not check a consumed run; the sweeper will delete it")
            }
        }
    }

    /// Deletes at once the consumed runs still waiting out their grace period (on shutdown, so
    /// that a stopping server leaves nothing behind).
    pub async fn flush_pending(&self) {
        let entries = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        for entry in entries {
            self.delete_if_complete(&entry).await;
        }
    }

    /// Marks that a run has several readers (snapshot reuse): from now on it is deleted only
    /// when all the readers listed have streamed it, or cancelled it.
    pub async fn add_readers(&self, run_id: &str, readers: &[&str]) -> Result<(), StageError> {
        let prefix = self.run_prefix(run_id)?;
        for reader in readers {
            let reader = reader_name(reader)?;
            let path = Path::from(format!("{prefix}readers/{reader}"));
            self.store
                .put(&path, PutPayload::from_static(b""))
                .await
                .map_err(|e| self.state_error(run_id, e, &path))?;
        }
        // A run cancelled or deleted meanwhile cannot be shared.
        let manifest = Path::from(format!("{}manifest", data_prefix(&prefix)));
        self.store
            .head(&manifest)
            .await
            .map_err(|e| self.state_error(run_id, e, &manifest))?;
        Ok(())
    }

    /// CancelFlightInfo from `reader`: the run is deleted at once, unless it is shared and another
    /// reader has not streamed all its `run_endpoints` endpoints yet; then only this reader leaves.
    pub async fn cancel_run(
        &self,
        run_id: &str,
        reader: &str,
        run_endpoints: u32,
    ) -> Result<(), StageError> {
        let prefix = self.run_prefix(run_id)?;
        let reader = reader_name(reader)?;
        let readers = self
            .list_names(run_id, &Path::from(format!("{prefix}readers/")))
            .await?;
        let others = readers.iter().filter(|r| **r != reader).count();
        if others > 0 {
            let path = Path::from(format!("{prefix}readers/{reader}"));
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.state_error(run_id, e, &path)),
            }
            let other = readers.iter().find(|r| **r != reader).cloned();
            let done = match other {
                Some(other) => {
                    self.run_complete(run_id, &prefix, run_endpoints, &other)
                        .await?
                }
                None => false,
            };
            if !done {
                tracing::info!(
                    run_id,
                    others,
                    "cancelled by one reader; kept for the others"
                );
                return Ok(());
            }
        }
        self.delete_run(&prefix, "cancelled").await;
        Ok(())
    }

    /// Extends a run's life to `until` (RenewFlightEndpoint): the sweeper honours its lease.
    pub async fn renew_run(&self, run_id: &str, until: SystemTime) -> Result<(), StageError> {
        let prefix = self.run_prefix(run_id)?;
        let lease = Path::from(format!("{prefix}lease"));
        self.store
            .put(
                &lease,
                PutPayload::from(unix_ms(until).to_string().into_bytes()),
            )
            .await
            .map_err(|e| StageError::RunState {
                run_id: run_id.to_string(),
                source: StoreError::from_object_store(e, &self.settings.bucket, lease.as_ref()),
            })?;
        Ok(())
    }

    /// Whether a run's data may still be served at `now` (creation + TTL, or its lease).
    async fn lease_until(&self, prefix: &str) -> Option<SystemTime> {
        let lease = Path::from(format!("{prefix}lease"));
        let bytes = self.store.get(&lease).await.ok()?.bytes().await.ok()?;
        let ms: u64 = std::str::from_utf8(&bytes).ok()?.trim().parse().ok()?;
        Some(SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
    }

    /// Deletes every run under the staging prefix whose life ended before `now` (TTL from its
    /// creation time, or its renewed lease). Returns how many runs were deleted.
    pub async fn sweep(&self, now: SystemTime) -> Result<usize, StoreError> {
        let root = Path::from(format!("{}/", self.settings.prefix));
        let listing = self
            .store
            .list_with_delimiter(Some(&root))
            .await
            .map_err(|e| StoreError::from_object_store(e, &self.settings.bucket, root.as_ref()))?;
        let mut deleted = 0;
        let mut alive = 0;
        for dir in listing.common_prefixes {
            let Some(run_id) = dir.filename() else {
                continue;
            };
            let Some(created) = run_created_at(run_id) else {
                tracing::debug!(%dir, "not a staged run; left alone");
                continue;
            };
            let prefix = format!("{}/{run_id}/", self.settings.prefix);
            let mut until = created + self.settings.ttl;
            if until <= now
                && let Some(lease) = self.lease_until(&prefix).await
            {
                until = until.max(lease);
            }
            if until <= now {
                self.delete_run(&prefix, "expired").await;
                deleted += 1;
            } else {
                alive += 1;
            }
        }
        self.metrics.runs_alive.set(alive);
        Ok(deleted)
    }

    /// Sweeps now and then every `interval` until the returned task is aborted.
    pub fn spawn_sweeper(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                match this.sweep(SystemTime::now()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(runs = n, "sweeper deleted expired runs"),
                    Err(error) => tracing::warn!(error = %error_chain(&error), "sweep failed"),
                }
                tokio::time::sleep(interval).await;
            }
        })
    }
}

enum ManifestRead {
    Store(StoreError),
    Invalid(manifest::ManifestError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn run_ids_carry_their_creation_time() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_073_020);
        let id = new_run_id(t);
        assert!(id.starts_with("20251125T121700Z-"), "{id}");
        assert_eq!(id.len(), "20251125T121700Z-".len() + 16);
        assert_ne!(new_run_id(t), new_run_id(t));
        assert_eq!(run_created_at(&id), Some(t));
        for bad in [
            "",
            "x",
            "20251125T121700Z-zz",
            "../20251125T121700Z-0000000000000000",
            "20251125T121700Z",
        ] {
            assert_eq!(run_created_at(bad), None, "{bad}");
        }
    }

    /// A Parquet file of one Int64 column holding `values`, `rows_per_group` rows per row group.
    fn parquet_file(values: &[i64], rows_per_group: usize) -> Vec<u8> {
        use arrow::array::{ArrayRef, Int64Array, RecordBatch};
        let column: ArrayRef = Arc::new(Int64Array::from(values.to_vec()));
        let batch = RecordBatch::try_from_iter([("v", column)]).unwrap();
        crate::testing::parquet_bytes(&batch, rows_per_group)
    }

    /// An unloader that writes what UNLOAD would, or fails as told.
    #[derive(Debug)]
    struct FakeUnloader {
        store: Arc<dyn ObjectStore>,
        failures: Mutex<Vec<RedshiftError>>,
        calls: AtomicUsize,
        /// Destination prefix of every call.
        prefixes: Mutex<Vec<String>>,
        /// How long each UNLOAD takes.
        delay: Duration,
        /// Write the data but no manifest (a lost manifest), still reporting the rows.
        lose_manifest: bool,
    }

    #[async_trait::async_trait]
    impl Unloader for FakeUnloader {
        async fn unload(&self, sql: &Sql) -> Result<u64, RedshiftError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let text = sql.as_str();
            let start = text.find("TO 's3://b/").unwrap() + "TO 's3://b/".len();
            let prefix = &text[start..start + text[start..].find('\'').unwrap()];
            self.prefixes.lock().unwrap().push(prefix.to_string());
            tokio::time::sleep(self.delay).await;
            let data = Path::from(format!("{prefix}0000_part_00.parquet"));
            let bytes = parquet_file(&[1], 1);
            let size = bytes.len();
            self.store
                .put(&data, PutPayload::from(bytes))
                .await
                .unwrap();
            if let Some(error) = self.failures.lock().unwrap().pop() {
                return Err(error);
            }
            if self.lose_manifest {
                return Ok(1);
            }
            let manifest = format!(
                r#"{{"entries":[{{"url":"s3://b/{data}","meta":{{"content_length":{size},"record_count":1}}}}]}}"#
            );
            self.store
                .put(
                    &Path::from(format!("{prefix}manifest")),
                    PutPayload::from(manifest.into_bytes()),
                )
                .await
                .unwrap();
            Ok(1)
        }

        async fn query_value(&self, _sql: &Sql) -> Result<Option<String>, RedshiftError> {
            Ok(None)
        }
    }

    fn fixture(
        failures: Vec<RedshiftError>,
    ) -> (Arc<Stager>, Arc<dyn ObjectStore>, Arc<FakeUnloader>) {
        fixture_with(failures, Duration::ZERO, false, Duration::from_secs(60))
    }

    fn fixture_with(
        failures: Vec<RedshiftError>,
        delay: Duration,
        lose_manifest: bool,
        ttl: Duration,
    ) -> (Arc<Stager>, Arc<dyn ObjectStore>, Arc<FakeUnloader>) {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let unloader = Arc::new(FakeUnloader {
            store: Arc::clone(&store),
            failures: Mutex::new(failures),
            calls: AtomicUsize::new(0),
            prefixes: Mutex::new(Vec::new()),
            delay,
            lose_manifest,
        });
        let settings = StageSettings {
            bucket: "b".into(),
            prefix: "stage".into(),
            iam_role: IamRole::Default,
            max_file_size_mb: 256,
            ttl,
            grace: Duration::from_millis(10),
            max_parallel: 2,
            endpoint_rows: 0,
            share_window: Duration::ZERO,
            retry: RetrySettings {
                max_retries: 2,
                min_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(2),
            },
        };
        let stager = Arc::new(Stager::new(
            Arc::clone(&unloader) as _,
            Arc::clone(&store),
            settings,
            Metrics::new(),
        ));
        (stager, store, unloader)
    }

    fn plan() -> Plan {
        use crate::catalog::{ColumnInfo, TableInfo, TableKind, TableRef};
        let table = Arc::new(TableInfo {
            table: TableRef::new("s", "t"),
            kind: TableKind::Table,
            columns: vec![ColumnInfo::new("id", "integer", false)],
            primary_key: vec![],
            row_estimate: None,
            replication_key: None,
            strategy: None,
        });
        let request =
            crate::plan::FlightRequest::try_from_command(br#"{"table":"s.t","mode":"full"}"#)
                .unwrap();
        Plan::try_new(table, &request, crate::plan::PlanSettings::default()).unwrap()
    }

    async fn keys(store: &Arc<dyn ObjectStore>) -> Vec<String> {
        let mut keys: Vec<String> = store
            .list(None)
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        keys.sort();
        keys
    }

    #[tokio::test]
    async fn transient_failures_are_retried_after_cleanup_and_sql_errors_are_not() {
        let transient = RedshiftError::Unreachable {
            address: "h:1".into(),
            message: "reset".into(),
        };
        let (stager, store, unloader) = fixture(vec![transient]);
        let run = stager.stage(&plan()).await.unwrap();
        assert_eq!(unloader.calls.load(Ordering::SeqCst), 2);
        assert_eq!(run.files.len(), 1);
        let prefixes = unloader.prefixes.lock().unwrap().clone();
        assert_eq!(prefixes.len(), 2);
        assert_ne!(
            prefixes[0], prefixes[1],
            "every attempt writes to a fresh prefix"
        );
        assert_eq!(prefixes[1], data_prefix(&run.prefix));
        assert_eq!(
            keys(&store).await,
            vec![
                format!("{}columns.json", run.prefix),
                format!("{}data/0000_part_00.parquet", run.prefix),
                format!("{}data/manifest", run.prefix),
                format!("{}lease", run.prefix),
            ],
            "the successful attempt's files and lease only: the abandoned prefix is gone"
        );

        let sql_error = RedshiftError::Sql {
            code: "XX000".into(),
            message: "S3 ServiceException".into(),
        };
        let (stager, store, unloader) = fixture(vec![sql_error]);
        let error = stager.stage(&plan()).await.unwrap_err();
        assert!(matches!(error, StageError::Unload { .. }));
        assert_eq!(
            unloader.calls.load(Ordering::SeqCst),
            1,
            "SQL errors are not retried"
        );
        assert!(
            keys(&store).await.is_empty(),
            "a failed UNLOAD leaves nothing behind"
        );
    }

    #[tokio::test]
    async fn consumed_runs_are_deleted_after_grace_and_the_sweeper_honours_leases() {
        let (stager, store, _) = fixture(vec![]);
        let run = stager.stage(&plan()).await.unwrap();
        stager
            .file_consumed(&run.run_id, "0000_part_00.parquet", 1, "ab")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(keys(&store).await.is_empty(), "consumed run deleted");

        let a = stager.stage(&plan()).await.unwrap();
        let b = stager.stage(&plan()).await.unwrap();
        let outside = Path::from("other/keep.txt");
        store
            .put(&outside, PutPayload::from_static(b"x"))
            .await
            .unwrap();
        store
            .put(
                &Path::from("stage/not-a-run/x"),
                PutPayload::from_static(b"x"),
            )
            .await
            .unwrap();
        let later = SystemTime::now() + Duration::from_secs(120);
        stager
            .renew_run(&b.run_id, later + Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(stager.sweep(later).await.unwrap(), 1);
        let left = keys(&store).await;
        assert!(
            left.iter().all(|k| !k.contains(&a.run_id)),
            "expired run swept"
        );
        assert!(
            left.iter().any(|k| k.contains(&b.run_id)),
            "renewed run kept"
        );
        assert!(
            left.contains(&"other/keep.txt".to_string()),
            "nothing outside the prefix is touched"
        );
        assert!(
            left.contains(&"stage/not-a-run/x".to_string()),
            "foreign folders are left alone"
        );
        stager.cancel_run(&b.run_id, "ab", 1).await.unwrap();
        assert!(keys(&store).await.iter().all(|k| !k.contains(&b.run_id)));
        assert!(stager.cancel_run("../other", "ab", 1).await.is_err());
        stager.delete_run("other/", "cancelled").await;
        stager.delete_run("stage/../other/", "cancelled").await;
        assert!(keys(&store).await.contains(&"other/keep.txt".to_string()));
    }

    #[tokio::test]
    async fn a_lost_manifest_is_not_zero_rows() {
        let (stager, store, _) =
            fixture_with(vec![], Duration::ZERO, true, Duration::from_secs(60));
        let error = stager.stage(&plan()).await.unwrap_err();
        assert!(
            matches!(
                error,
                StageError::RowCount {
                    unloaded: 1,
                    listed: 0,
                    ..
                }
            ),
            "{error}"
        );
        assert!(
            keys(&store).await.is_empty(),
            "the incomplete run is deleted"
        );
    }

    #[tokio::test]
    async fn the_clock_starts_when_the_unload_finishes_and_a_long_unload_is_not_swept() {
        let ttl = Duration::from_millis(400);
        let (stager, store, _) = fixture_with(vec![], Duration::from_millis(1200), false, ttl);
        let staging = tokio::spawn({
            let stager = Arc::clone(&stager);
            async move { stager.stage(&plan()).await }
        });
        // Sweep while the UNLOAD runs three TTLs long: its lease keeps it.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(1100);
        while tokio::time::Instant::now() < deadline {
            assert_eq!(stager.sweep(SystemTime::now()).await.unwrap(), 0);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let run = staging.await.unwrap().unwrap();
        let finished = SystemTime::now();
        assert!(
            run.expires_at + Duration::from_millis(100) >= finished + ttl,
            "tickets live a full TTL after the UNLOAD finished"
        );
        assert_eq!(stager.sweep(SystemTime::now()).await.unwrap(), 0);
        assert!(!keys(&store).await.is_empty());
        assert_eq!(
            stager
                .sweep(run.expires_at + Duration::from_millis(1))
                .await
                .unwrap(),
            1
        );
        assert!(keys(&store).await.is_empty());
    }
}
