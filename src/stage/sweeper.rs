//! The sweeper: deletes every run whose life ended (TTL from its creation time, or its lease),
//! also runs left by a crashed server, at start-up and every `sweep_interval_seconds`. It only
//! looks at folders under `s3_prefix` whose names are run ids, and at the records of single
//! flight across replicas (`flights/`).
//!
//! Every replica sweeps, so it is safe for several at once: a run is deleted only once its lease
//! has passed (a replica writing a run renews its lease while the UNLOAD runs, and a lease that
//! cannot be read because S3 failed keeps the run for the next sweep), and deleting what another
//! sweeper deleted first is no error.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::{Stager, run_created_at};
use crate::store::{StoreError, error_chain};

impl Stager {
    /// A run's lease: `None` when it has none (or an unreadable one), an error when S3 failed.
    async fn lease_until(&self, prefix: &str) -> Result<Option<SystemTime>, object_store::Error> {
        let lease = Path::from(format!("{prefix}lease"));
        let bytes = match self.store.get(&lease).await {
            Ok(result) => result.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(error),
        };
        let ms = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok());
        Ok(ms.map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms)))
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
            if until <= now {
                match self.lease_until(&prefix).await {
                    Ok(Some(lease)) => until = until.max(lease),
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(run_id, %error, "cannot read the lease of a run; kept until the next sweep");
                        alive += 1;
                        continue;
                    }
                }
            }
            if until <= now {
                self.delete_run(&prefix, "expired").await;
                deleted += 1;
            } else {
                alive += 1;
            }
        }
        match self.sweep_flights(now).await {
            Ok(0) => {}
            Ok(records) => tracing::debug!(records, "deleted stale single-flight records"),
            Err(error) => tracing::warn!(%error, "could not sweep single-flight records"),
        }
        self.metrics.runs_alive.set(alive);
        self.metrics
            .staged_bytes_alive
            .set(self.staged_bytes(&root).await);
        Ok(deleted)
    }

    /// Bytes of every staged run's objects under the staging prefix (one listing; 0 if it
    /// fails). The claims replicas agree through (`flights/`, `slots/`) are not staged data.
    async fn staged_bytes(&self, root: &Path) -> i64 {
        let depth = root.parts().count();
        let sizes = self
            .store
            .list(Some(root))
            .map_ok(move |meta| {
                let folder = meta.location.parts().nth(depth);
                let claim =
                    folder.is_some_and(|f| f.as_ref() == "flights" || f.as_ref() == "slots");
                if claim { 0 } else { meta.size }
            })
            .try_fold(0u64, |sum, size| async move { Ok(sum + size) })
            .await;
        match sizes {
            Ok(bytes) => i64::try_from(bytes).unwrap_or(i64::MAX),
            Err(error) => {
                tracing::debug!(%error, "cannot list the staging prefix for its size");
                0
            }
        }
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
