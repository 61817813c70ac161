//! Snapshot reuse (single flight): identical GetFlightInfo requests share one staged run instead of
//! running UNLOAD twice. A request that finds an identical one being planned waits for it; one
//! that arrives within the reuse window (`snapshot_reuse_seconds`, default 0) after it was staged
//! gets the same answer, re-signed for a reader of its own. Within a process this is
//! [`SingleFlight`]; across replicas sharing the staging prefix (`snapshot_reuse_scope`
//! `cluster`), a claim in S3 decides which replica stages ([`crate::stage::flights`]). Readers of
//! a shared run are recorded in the run (see `Stager::add_readers`), so the run is deleted only
//! once all of them have streamed it, on any replica.
//!
//! Requests are identical when they resolve to the same table and ask the same columns, mode,
//! cursor, replication key and lookback; who asks does not matter (each caller was authorised for
//! the table before it gets here). A failed or abandoned attempt is not shared: the next waiter
//! plans afresh.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_flight::FlightInfo;
use prost::Message;
use tokio::sync::OnceCell;

use crate::catalog::TableRef;
use crate::plan::FlightRequest;
use crate::stage::flights::SharedFlight;

/// What identical requests share: the answer of the request that staged it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Its FlightInfo (tickets for `first_reader`, the descriptor of the request that staged it).
    pub info: FlightInfo,
    /// The reader id its tickets carry.
    pub first_reader: String,
    /// The staged run and its number of endpoints (`None`: nothing new since the cursor).
    pub run: Option<(String, u32)>,
}

impl Snapshot {
    /// As published to the other replicas.
    pub fn to_shared(&self) -> SharedFlight {
        SharedFlight {
            flight_info: self.info.encode_to_vec(),
            first_reader: self.first_reader.clone(),
            run: self.run.clone(),
        }
    }

    /// As another replica published it (`None`: not a FlightInfo).
    pub fn from_shared(shared: SharedFlight) -> Option<Self> {
        Some(Self {
            info: FlightInfo::decode(shared.flight_info.as_slice()).ok()?,
            first_reader: shared.first_reader,
            run: shared.run,
        })
    }
}

/// The identity of a request, for sharing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SnapshotKey(String);

impl SnapshotKey {
    /// The key of `request` once its table resolved to `table`.
    pub fn new(table: &TableRef, request: &FlightRequest) -> Self {
        let key = serde_json::json!([
            table.namespace(),
            table.table,
            request.columns,
            request.mode,
            request.cursor,
            request.replication_key,
            request.lookback,
            request.dictionary,
            request.geometry,
            // Different filters are different reads: they never share a staged run.
            request.filter,
        ]);
        Self(key.to_string())
    }

    /// The key as text (hashed to name its record in S3).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The registry of shareable snapshots.
pub type Snapshots = SingleFlight<SnapshotKey, Snapshot>;

impl Snapshots {
    /// Stops sharing a run (cancelled).
    pub fn forget_run(&self, run_id: &str) {
        self.forget(|s| s.run.as_ref().is_some_and(|(id, _)| id == run_id));
    }
}

/// A value being computed, or computed and when it was ready.
type Slot<V> = OnceCell<(V, Instant)>;

/// Single flight with a reuse window: one computation per key at a time, its result shared with
/// every caller that asks while it runs or within `window` after it finished.
#[derive(Debug)]
pub struct SingleFlight<K, V> {
    window: Option<Duration>,
    entries: Mutex<HashMap<K, Arc<Slot<V>>>>,
}

impl<K: Eq + Hash + Clone, V: Clone> SingleFlight<K, V> {
    /// Shares results while they are computed and for `window` after they are ready (`None`:
    /// never shares).
    pub fn new(window: Option<Duration>) -> Self {
        Self {
            window,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Whether anything is shared at all.
    pub fn enabled(&self) -> bool {
        self.window.is_some()
    }

    /// How long after it is ready a value is shared.
    pub fn window(&self) -> Duration {
        self.window.unwrap_or_default()
    }

    fn fresh(&self, cell: &Slot<V>, now: Instant) -> bool {
        let window = self.window.unwrap_or_default();
        cell.get()
            .is_none_or(|(_, ready_at)| now.duration_since(*ready_at) < window)
    }

    /// The value for `key`: the one being computed or computed within the window, else the one
    /// `compute` makes. The boolean is true when another caller computed it. Failures are not
    /// shared: the next caller computes afresh (as does one waiting when the computation fails or
    /// its caller goes away).
    pub async fn get_or_compute<F, Fut, E>(&self, key: K, compute: F) -> Result<(V, bool), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let cell = {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            entries.retain(|_, cell| self.fresh(cell, now));
            Arc::clone(entries.entry(key.clone()).or_default())
        };
        let mut computed_here = false;
        let result = cell
            .get_or_try_init(|| {
                computed_here = true;
                async { compute().await.map(|value| (value, Instant::now())) }
            })
            .await
            .map(|(value, _)| value.clone());
        if result.is_err() {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            if entries.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                entries.remove(&key);
            }
        }
        result.map(|value| (value, !computed_here))
    }

    /// Stops sharing the values `matches` picks.
    pub fn forget(&self, matches: impl Fn(&V) -> bool) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, cell| cell.get().is_none_or(|(value, _)| !matches(value)));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn concurrent_and_recent_callers_share_one_computation() {
        let flight = Arc::new(SingleFlight::<&str, usize>::new(Some(
            Duration::from_millis(300),
        )));
        let calls = Arc::new(AtomicUsize::new(0));
        let compute = |calls: Arc<AtomicUsize>| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, String>(calls.fetch_add(1, Ordering::SeqCst) + 1)
        };
        let (a, b) = tokio::join!(
            flight.get_or_compute("t", || compute(Arc::clone(&calls))),
            flight.get_or_compute("t", || compute(Arc::clone(&calls)))
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!((a.0, b.0), (1, 1), "one computation");
        assert!(a.1 != b.1, "exactly one of them computed it");
        let c = flight
            .get_or_compute("t", || compute(Arc::clone(&calls)))
            .await
            .unwrap();
        assert_eq!(c, (1, true), "within the window");
        let other = flight
            .get_or_compute("u", || compute(Arc::clone(&calls)))
            .await
            .unwrap();
        assert_eq!(other, (2, false), "another key computes its own");
        tokio::time::sleep(Duration::from_millis(350)).await;
        let d = flight
            .get_or_compute("t", || compute(Arc::clone(&calls)))
            .await
            .unwrap();
        assert_eq!(d, (3, false), "past the window");
        flight.forget(|v| *v == 3);
        let e = flight
            .get_or_compute("t", || compute(Arc::clone(&calls)))
            .await
            .unwrap();
        assert_eq!(e, (4, false), "forgotten");
    }

    #[tokio::test]
    async fn failures_and_abandoned_computations_are_not_shared() {
        let flight = Arc::new(SingleFlight::<&str, u32>::new(Some(Duration::from_secs(
            60,
        ))));
        let failed = flight
            .get_or_compute("t", || async { Err::<u32, _>("boom") })
            .await;
        assert_eq!(failed, Err("boom"));
        let ok = flight
            .get_or_compute("t", || async { Ok::<_, &str>(7) })
            .await;
        assert_eq!(ok, Ok((7, false)));

        // The first caller goes away mid-computation: a waiting caller computes instead.
        let first = {
            let flight = Arc::clone(&flight);
            tokio::spawn(async move {
                flight
                    .get_or_compute("v", || async {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        Ok::<_, &str>(1)
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = {
            let flight = Arc::clone(&flight);
            tokio::spawn(async move {
                flight
                    .get_or_compute("v", || async { Ok::<_, &str>(2) })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        first.abort();
        assert_eq!(second.await.unwrap(), Ok((2, false)));
        let disabled = SingleFlight::<&str, u32>::new(None);
        assert!(!disabled.enabled());
        // Window zero: shared while computing only.
        let inflight = Arc::new(SingleFlight::<&str, u32>::new(Some(Duration::ZERO)));
        let slow = || async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, &str>(1)
        };
        let (a, b) = tokio::join!(
            inflight.get_or_compute("t", slow),
            inflight.get_or_compute("t", || async { Ok::<_, &str>(2) })
        );
        assert_eq!((a.unwrap().0, b.unwrap().0), (1, 1));
        let c = inflight
            .get_or_compute("t", || async { Ok::<_, &str>(3) })
            .await;
        assert_eq!(c, Ok((3, false)), "finished: not shared any more");
    }
}
