//! Snapshot reuse (single flight): identical GetFlightInfo requests share one staged run instead of
//! running UNLOAD twice. A request that finds an identical one being planned waits for it; one
//! that arrives within the reuse window after it was staged gets the same plan and run, as a new
//! reader. Readers of a shared run are recorded in the run (see `Stager::add_readers`), so the run
//! is deleted only once all of them have streamed it, on any replica.
//!
//! Requests are identical when they resolve to the same table and ask the same columns, mode,
//! cursor, replication key and lookback; who asks does not matter (each caller was authorised for
//! the table before it gets here). A failed or abandoned attempt is not shared: the next waiter
//! plans afresh.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use super::ServiceError;
use crate::catalog::TableRef;
use crate::plan::{FlightRequest, Plan};
use crate::stage::StagedRun;

/// What identical requests share.
#[derive(Debug, Clone)]
pub(super) struct Snapshot {
    /// The plan, its window closed.
    pub plan: Plan,
    /// The staged run (`None`: nothing new since the cursor).
    pub run: Option<StagedRun>,
    /// The reader id of the request that staged it.
    pub first_reader: String,
    /// When it was ready.
    ready_at: Instant,
}

impl Snapshot {
    /// A snapshot staged by `first_reader` now.
    pub(super) fn new(plan: Plan, run: Option<StagedRun>, first_reader: String) -> Self {
        Self {
            plan,
            run,
            first_reader,
            ready_at: Instant::now(),
        }
    }
}

/// The identity of a request, for sharing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct SnapshotKey(String);

impl SnapshotKey {
    /// The key of `request` once its table resolved to `table`.
    pub(super) fn new(table: &TableRef, request: &FlightRequest) -> Self {
        let key = serde_json::json!([
            table.schema,
            table.table,
            request.columns,
            request.mode,
            request.cursor,
            request.replication_key,
            request.lookback,
        ]);
        Self(key.to_string())
    }
}

/// The registry of shareable snapshots.
#[derive(Debug)]
pub struct Snapshots {
    window: Duration,
    entries: Mutex<HashMap<SnapshotKey, Arc<OnceCell<Snapshot>>>>,
}

impl Snapshots {
    /// A registry sharing snapshots for `window` after they are staged (zero: never shares).
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Whether requests are shared at all.
    pub fn enabled(&self) -> bool {
        !self.window.is_zero()
    }

    fn fresh(&self, cell: &OnceCell<Snapshot>, now: Instant) -> bool {
        cell.get()
            .is_none_or(|s| now.duration_since(s.ready_at) < self.window)
    }

    /// The snapshot for `key`: the one being staged or staged within the window, else the one
    /// `stage` makes. The boolean is true when the snapshot was made by another request.
    pub(super) async fn get_or_stage<F, Fut>(
        &self,
        key: SnapshotKey,
        stage: F,
    ) -> Result<(Snapshot, bool), ServiceError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Snapshot, ServiceError>>,
    {
        let cell = {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            entries.retain(|_, cell| self.fresh(cell, now));
            Arc::clone(entries.entry(key.clone()).or_default())
        };
        let mut staged_here = false;
        let result = cell
            .get_or_try_init(|| {
                staged_here = true;
                stage()
            })
            .await
            .cloned();
        if result.is_err() {
            // Nothing to share: forget the cell so the next request starts afresh.
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            if entries.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                entries.remove(&key);
            }
        }
        result.map(|snapshot| (snapshot, !staged_here))
    }

    /// Stops sharing a run (cancelled).
    pub fn forget_run(&self, run_id: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, cell| {
                cell.get()
                    .and_then(|s| s.run.as_ref())
                    .is_none_or(|run| run.run_id != run_id)
            });
    }
}
