//! The life of a staged run, as objects in S3 beside its data, so that any replica can serve,
//! renew, cancel or sweep any run. The protocol (golden-tested in `super::tests`):
//!
//! ```text
//! <s3_prefix>/<run id>/data/...            UNLOAD's Parquet files and manifest
//! <s3_prefix>/<run id>/columns.json        the promised columns (tickets carry its SHA-256)
//! <s3_prefix>/<run id>/lease               expiry, Unix milliseconds as decimal text: renewed while
//!                                          the UNLOAD runs, then end of UNLOAD + TTL, extended by
//!                                          RenewFlightEndpoint; the sweeper keeps a run until then
//! <s3_prefix>/<run id>/readers/<reader>    empty; one per FlightInfo sharing the run (snapshot
//!                                          reuse); absent when only the ticket's reader reads it
//! <s3_prefix>/<run id>/consumed/<reader>/<endpoint>
//!                                          empty; written when `reader` streamed `endpoint` to the end
//! <s3_prefix>/<run id>/cancelled           empty; written when one reader of a shared run cancelled
//!                                          it: no further request may join the run
//! ```
//!
//! A run is complete when every reader (those under `readers/`, else the ticket's own) has a
//! `consumed/` marker for each of the run's `run_endpoints` endpoints; it is then deleted after
//! the grace period, checked once more first. A reader id is 1 to 32 hex digits (`_` for none).

use std::sync::Arc;
use std::time::SystemTime;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::run_id::reader_name;
use super::{StageError, Stager, data_prefix, run_created_at};
use crate::clock::unix_ms;
use crate::store::StoreError;

/// A consumed run waiting out its grace period.
#[derive(Debug, Clone)]
pub(super) struct PendingDelete {
    run_id: String,
    prefix: String,
    run_endpoints: u32,
    reader: String,
}

/// Deletes every object under `prefix`; returns how many. Objects another replica deleted
/// meanwhile (two sweepers at once) are no error.
pub(super) async fn delete_prefix(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
) -> Result<usize, object_store::Error> {
    let prefix = Path::from(prefix);
    let locations = store.list(Some(&prefix)).map_ok(|m| m.location).boxed();
    let mut results = store.delete_stream(locations);
    let mut deleted = 0;
    while let Some(result) = results.next().await {
        match result {
            Ok(_) => deleted += 1,
            Err(object_store::Error::NotFound { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(deleted)
}

impl Stager {
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
    /// when all the readers listed have streamed it, or cancelled it. `false` when the run can
    /// no longer be shared: deleted, or cancelled by one of its readers.
    pub async fn add_readers(&self, run_id: &str, readers: &[&str]) -> Result<bool, StageError> {
        let prefix = self.run_prefix(run_id)?;
        let names = readers
            .iter()
            .map(|reader| reader_name(reader))
            .collect::<Result<Vec<_>, _>>()?;
        // Checked before (so a cancelled run gets no reader back) and after (a run cancelled or
        // deleted meanwhile cannot be shared).
        if !self.shareable(run_id, &prefix).await? {
            return Ok(false);
        }
        for reader in names {
            let path = Path::from(format!("{prefix}readers/{reader}"));
            self.store
                .put(&path, PutPayload::from_static(b""))
                .await
                .map_err(|e| self.state_error(run_id, e, &path))?;
        }
        self.shareable(run_id, &prefix).await
    }

    /// Whether a run is still there and none of its readers cancelled it.
    async fn shareable(&self, run_id: &str, prefix: &str) -> Result<bool, StageError> {
        let manifest = Path::from(format!("{}manifest", data_prefix(prefix)));
        let cancelled = Path::from(format!("{prefix}cancelled"));
        let (manifest_there, cancelled_there) =
            tokio::join!(self.store.head(&manifest), self.store.head(&cancelled));
        let exists = |result: Result<_, object_store::Error>, path: &Path| match result {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.state_error(run_id, e, path)),
        };
        Ok(exists(manifest_there, &manifest)? && !exists(cancelled_there, &cancelled)?)
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
            // No request may join a cancelled run any more, on any replica.
            let marker = Path::from(format!("{prefix}cancelled"));
            self.store
                .put(&marker, PutPayload::from_static(b""))
                .await
                .map_err(|e| self.state_error(run_id, e, &marker))?;
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
}
