//! The cluster-wide UNLOAD limit (`cluster_max_parallel_unloads`): N replicas must not swamp
//! Redshift's WLM queue with N times `max_parallel_workers` UNLOADs. An UNLOAD runs only while
//! its replica holds one of the cluster's slots, claims in S3 (see [`super::claim`]):
//!
//! ```text
//! <s3_prefix>/slots/<n>.json    n from 0 to cluster_max_parallel_unloads - 1: a claim whose
//!                               body names the table being unloaded ("table"); held (renewed)
//!                               while the UNLOAD runs, released (until_ms 0) when it ends
//! ```
//!
//! A replica looking for a slot tries them from a random one on, takes the first that is free
//! (missing, released, or expired: its holder died), and otherwise waits, polling with a growing
//! pause (at most 2 seconds), in no particular order across replicas. When S3 cannot answer, the
//! UNLOAD runs without a slot (logged): the limit protects Redshift, it must not stop serving.

use std::time::{Duration, SystemTime};

use object_store::path::Path;
use serde::{Deserialize, Serialize};

use super::Stager;
use super::claim::{Claim, Held, Read};

/// The body of a slot claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotRecord {
    /// The table being unloaded, for operators.
    pub table: String,
}

/// Longest pause between two rounds of looking for a free slot.
const MAX_PAUSE: Duration = Duration::from_secs(2);

impl Stager {
    pub(super) fn slot_path(&self, slot: usize) -> Path {
        Path::from(format!("{}/slots/{slot}.json", self.settings.prefix))
    }

    /// Waits for a free cluster slot and holds it until the returned claim is dropped; `None`
    /// when there is no cluster limit or S3 cannot answer.
    pub(super) async fn cluster_slot(&self, table: &str) -> Option<Held<SlotRecord>> {
        let slots = self.settings.cluster.max_parallel_unloads;
        if slots == 0 {
            return None;
        }
        let lease = self.settings.cluster.lease;
        let mut pause = Duration::from_millis(100);
        let mut waiting_logged = false;
        loop {
            let first = rand::random_range(0..slots);
            for slot in (0..slots).map(|i| (first + i) % slots) {
                let path = self.slot_path(slot);
                let claim = Claim::new(
                    SlotRecord {
                        table: table.to_string(),
                    },
                    SystemTime::now() + lease,
                );
                match self.try_slot(&path, &claim).await {
                    Ok(Some(version)) => {
                        tracing::debug!(slot, "holding a cluster UNLOAD slot");
                        return Some(self.claims.hold(path, claim, version, lease));
                    }
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(%error, %path, "cannot read the cluster UNLOAD slots (S3); unloading without one");
                        return None;
                    }
                }
            }
            if !waiting_logged {
                tracing::info!(
                    slots,
                    "every cluster UNLOAD slot is taken (cluster_max_parallel_unloads); waiting"
                );
                waiting_logged = true;
            }
            let jitter = Duration::from_millis(rand::random_range(0..50));
            tokio::time::sleep(pause + jitter).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    /// Takes the slot at `path` if it is free: its new version, or `None` when it is held.
    async fn try_slot(
        &self,
        path: &Path,
        claim: &Claim<SlotRecord>,
    ) -> Result<Option<object_store::UpdateVersion>, object_store::Error> {
        if let Some(version) = self.claims.create(path, claim).await? {
            return Ok(Some(version));
        }
        match self.claims.read::<SlotRecord>(path).await? {
            Read::Missing => self.claims.create(path, claim).await,
            Read::Unreadable(version) => self.claims.replace(path, claim, version).await,
            Read::Found(other, version) if !other.live(SystemTime::now()) => {
                self.claims.replace(path, claim, version).await
            }
            Read::Found(..) => Ok(None),
        }
    }
}
