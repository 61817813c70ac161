//! The UNLOAD of a run: an UNLOAD slot (FIFO, `max_parallel_workers`, then a cluster slot when
//! `cluster_max_parallel_unloads` is set: [`super::slots`]), the run id taken then, a
//! lease renewed while a long UNLOAD runs, transient failures retried into a fresh prefix,
//! Redshift's count of unloaded rows checked against the manifest, then the footers, the lease
//! and the columns object written together. Redshift is reached through
//! [`crate::warehouse::Warehouse`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::run_state::delete_prefix;
use super::{
    ManifestEntry, StageError, StagedRun, Stager, columns, data_prefix, layout, manifest,
    new_run_id,
};
use crate::plan::Plan;
use crate::redshift::RedshiftError;
use crate::sql::Sql;
use crate::store::{StoreError, error_chain};

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

impl Stager {
    /// The UNLOAD statement for `plan` into the run prefix `run_prefix` (its `data/` folder).
    pub fn unload_sql(&self, plan: &Plan, run_prefix: &str) -> Result<Sql, StageError> {
        let destination = format!("s3://{}/{}", self.settings.bucket, data_prefix(run_prefix));
        plan.unload_sql(&destination, &self.settings.unload)
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
        self.warehouse
            .max_key(&sql)
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
        let (permit, slot) = {
            let _waiting = GaugeGuard::new(&self.metrics.unloads_waiting);
            let permit = self.permits.acquire().await;
            // Then one of the cluster's slots, if UNLOADs are limited over all replicas.
            (permit, self.cluster_slot(&table).await)
        };
        let _running = GaugeGuard::new(&self.metrics.unloads_running);
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
        drop((permit, slot));
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
        let run_columns = Arc::new(
            columns::RunColumns::new(&plan.columns, &plan.table.primary_key)
                .with_relations(&plan.relations)
                .with_kind(plan.table.kind),
        );
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
        let unload = self.warehouse.unload(sql);
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
}

enum ManifestRead {
    Store(StoreError),
    Invalid(manifest::ManifestError),
}

/// Counts one in a gauge while it lives (an UNLOAD waiting or running), also when the future
/// holding it is dropped.
struct GaugeGuard(prometheus_client::metrics::gauge::Gauge);

impl GaugeGuard {
    fn new(gauge: &prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
