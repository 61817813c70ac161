//! Single flight across replicas: identical GetFlightInfo requests reaching different replicas
//! share one UNLOAD. A claim in S3 on the request's hash decides which replica stages it; the
//! others wait for it and join its run, or take over if its holder dies. The protocol (every
//! replica of every version must agree; golden-tested below):
//!
//! ```text
//! <s3_prefix>/flights/<SHA-256 of the key: the request and its frozen window, hex>.json
//!     a claim (super::claim): version, token, owner, until_ms, and
//!     state          "running" while the holder stages (until_ms: its lease, renewed),
//!                    "done" once staged (until_ms: end of the reuse window),
//!                    "failed" when staging failed or was abandoned (until_ms: 0)
//!     flight_info    when done: the holder's FlightInfo, protobuf, base64 (tickets for
//!                    first_reader; a joiner re-signs them for its own reader id)
//!     first_reader   when done: the reader id the holder's tickets carry
//!     run_id, run_endpoints   when done and something was staged
//! ```
//!
//! A request finding a claim that is running and live waits (polling it, at most every second)
//! for as long as its holder renews it; one that is done joins while the reuse window lasts, or
//! at any time if it was the claim it waited for; anything else (failed, expired, unreadable) it
//! takes over with a conditional write, so only one of several waiters does. When S3 cannot
//! decide (an error, a store without conditional writes), the request is staged without sharing:
//! sharing saves work, it never decides what is served. The sweeper deletes records untouched for
//! longer than the reuse window plus two leases (see [`Stager::sweep_flights`]).

use std::future::Future;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Stager;
use super::claim::{Claim, Read};

/// Where a shared request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlightState {
    /// Being staged by the claim's owner.
    Running,
    /// Staged: the record carries the answer.
    Done,
    /// Failed or abandoned: the next request stages afresh.
    Failed,
}

/// The body of a flight claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlightRecord {
    /// Where the request is.
    pub state: FlightState,
    /// When done: the FlightInfo, protobuf, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flight_info: Option<String>,
    /// When done: the reader id its tickets carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_reader: Option<String>,
    /// When done and staged: the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// When done and staged: the run's endpoints.
    #[serde(default)]
    pub run_endpoints: u32,
}

impl FlightRecord {
    fn running() -> Self {
        Self {
            state: FlightState::Running,
            flight_info: None,
            first_reader: None,
            run_id: None,
            run_endpoints: 0,
        }
    }

    fn failed() -> Self {
        Self {
            state: FlightState::Failed,
            ..Self::running()
        }
    }
}

/// What identical requests share: the answer of the one that staged it.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedFlight {
    /// The FlightInfo, protobuf.
    pub flight_info: Vec<u8>,
    /// The reader id its tickets carry.
    pub first_reader: String,
    /// The staged run and its endpoints (`None`: nothing was staged).
    pub run: Option<(String, u32)>,
}

impl SharedFlight {
    fn record(&self) -> FlightRecord {
        FlightRecord {
            state: FlightState::Done,
            flight_info: Some(STANDARD.encode(&self.flight_info)),
            first_reader: Some(self.first_reader.clone()),
            run_id: self.run.as_ref().map(|(id, _)| id.clone()),
            run_endpoints: self.run.as_ref().map_or(0, |(_, n)| *n),
        }
    }

    fn from_record(record: &FlightRecord) -> Option<Self> {
        Some(Self {
            flight_info: STANDARD.decode(record.flight_info.as_deref()?).ok()?,
            first_reader: record.first_reader.clone()?,
            run: record.run_id.clone().map(|id| (id, record.run_endpoints)),
        })
    }
}

/// What to do about a claim found on a request's record.
enum Next {
    Join(SharedFlight),
    Wait(String),
    TakeOver,
}

/// Longest pause between two reads of a claim being waited for.
const MAX_POLL: Duration = Duration::from_secs(1);

impl Stager {
    pub(super) fn flight_path(&self, key: &str) -> Path {
        let hash = hex::encode(Sha256::digest(key.as_bytes()));
        Path::from(format!("{}/flights/{hash}.json", self.settings.prefix))
    }

    /// The answer to the request identified by `key`: the one staged by any replica for an
    /// identical request still running, or finished within `window`, else the one `compute`
    /// makes here (and shares). The caller knows it joined when the answer's `first_reader` is
    /// not its own.
    pub async fn single_flight<F, Fut, E>(
        &self,
        key: &str,
        window: Duration,
        compute: F,
    ) -> Result<SharedFlight, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<SharedFlight, E>>,
    {
        let path = self.flight_path(key);
        let lease = self.settings.cluster.lease;
        let mut waited_for: Option<String> = None;
        let mut pause = Duration::from_millis(50);
        let mut claim = Claim::new(FlightRecord::running(), SystemTime::now() + lease);
        let mut found = match self.claims.create(&path, &claim).await {
            Ok(Some(version)) => {
                return self
                    .stage_shared(path, claim, version, window, compute)
                    .await;
            }
            Ok(None) => self.claims.read::<FlightRecord>(&path).await,
            Err(error) => Err(error),
        };
        loop {
            let read = match found {
                Ok(read) => read,
                Err(error) => {
                    tracing::warn!(%error, %path, "cannot share this request across replicas (S3); staging it here");
                    return compute().await;
                }
            };
            claim.until_ms = crate::clock::unix_ms(SystemTime::now() + lease);
            let won = match read {
                Read::Missing => self.claims.create(&path, &claim).await,
                Read::Unreadable(version) => self.claims.replace(&path, &claim, version).await,
                Read::Found(other, version) => match next(&other, waited_for.as_deref()) {
                    Next::Join(shared) => return Ok(shared),
                    Next::Wait(token) => {
                        if waited_for.as_ref() != Some(&token) {
                            tracing::info!(
                                owner = other.owner,
                                "an identical request is being staged by another replica; waiting for it"
                            );
                            waited_for = Some(token);
                        }
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(MAX_POLL);
                        found = self.claims.read(&path).await;
                        continue;
                    }
                    Next::TakeOver => {
                        if other.body.state == FlightState::Running {
                            tracing::warn!(
                                owner = other.owner,
                                "the replica staging an identical request stopped renewing its claim; taking over"
                            );
                        }
                        self.claims.replace(&path, &claim, version).await
                    }
                },
            };
            match won {
                Ok(Some(version)) => {
                    return self
                        .stage_shared(path, claim, version, window, compute)
                        .await;
                }
                // Another replica was first: see what it wrote.
                Ok(None) => found = self.claims.read(&path).await,
                Err(error) => found = Err(error),
            }
        }
    }

    /// Stages under a claim this replica won, then publishes the answer (or the failure).
    async fn stage_shared<F, Fut, E>(
        &self,
        path: Path,
        claim: Claim<FlightRecord>,
        version: object_store::UpdateVersion,
        window: Duration,
        compute: F,
    ) -> Result<SharedFlight, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<SharedFlight, E>>,
    {
        let lease = self.settings.cluster.lease;
        let held = self.claims.hold(path, claim, version, lease);
        let result = compute().await;
        let (record, until) = match &result {
            Ok(shared) => (shared.record(), SystemTime::now() + window),
            Err(_) => (FlightRecord::failed(), SystemTime::UNIX_EPOCH),
        };
        // Waiters poll the record: publishing need not delay this answer.
        tokio::spawn(async move {
            let path = held.path().clone();
            if !held.finish(record, until).await {
                tracing::warn!(%path, "could not publish a staged request to the other replicas");
            }
        });
        result
    }

    /// Deletes flight records nobody touched for longer than the reuse window plus two leases
    /// (they can no longer be joined, and a live holder renews its claim). Returns how many.
    pub async fn sweep_flights(&self, now: SystemTime) -> Result<usize, object_store::Error> {
        let dir = Path::from(format!("{}/flights/", self.settings.prefix));
        let idle = self.settings.share_window + 2 * self.settings.cluster.lease;
        let stale: Vec<Path> = self
            .store
            .list(Some(&dir))
            .try_filter_map(|meta| async move {
                let modified: SystemTime = meta.last_modified.into();
                Ok((modified + idle < now).then_some(meta.location))
            })
            .try_collect()
            .await?;
        let mut deleted = 0;
        for path in stale {
            match self.store.delete(&path).await {
                Ok(()) => deleted += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(deleted)
    }
}

/// What a request does about `claim`, having waited for the claim `waited_for` (its token) if any.
fn next(claim: &Claim<FlightRecord>, waited_for: Option<&str>) -> Next {
    let now = SystemTime::now();
    match claim.body.state {
        FlightState::Done if claim.live(now) || waited_for == Some(claim.token.as_str()) => {
            match SharedFlight::from_record(&claim.body) {
                Some(shared) => Next::Join(shared),
                None => Next::TakeOver,
            }
        }
        FlightState::Running if claim.live(now) => Next::Wait(claim.token.clone()),
        _ => Next::TakeOver,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replicas of other versions read and write this: do not change without a new version.
    #[test]
    fn the_flight_record_format_is_pinned() {
        let mut claim = Claim::new(
            SharedFlight {
                flight_info: vec![1, 2, 3],
                first_reader: "ab".into(),
                run: Some(("0000018c-00".into(), 4)),
            }
            .record(),
            SystemTime::UNIX_EPOCH + Duration::from_millis(5),
        );
        claim.token = "t".into();
        claim.owner = "o".into();
        let json = serde_json::to_value(&claim).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "version": 1, "token": "t", "owner": "o", "until_ms": 5, "state": "done",
                "flight_info": "AQID", "first_reader": "ab", "run_id": "0000018c-00",
                "run_endpoints": 4
            })
        );
        let back: Claim<FlightRecord> = serde_json::from_value(json).unwrap();
        assert_eq!(back, claim);
        let running = serde_json::to_value(Claim {
            body: FlightRecord::running(),
            ..claim.clone()
        })
        .unwrap();
        assert_eq!(
            running,
            serde_json::json!({
                "version": 1, "token": "t", "owner": "o", "until_ms": 5, "state": "running",
                "run_endpoints": 0
            })
        );
    }

    #[test]
    fn a_done_claim_is_joined_within_its_window_or_by_whoever_waited_for_it() {
        let shared = SharedFlight {
            flight_info: vec![7],
            first_reader: "a".into(),
            run: None,
        };
        let live = SystemTime::now() + Duration::from_secs(60);
        let past = SystemTime::now() - Duration::from_secs(1);
        let done = |until| Claim::new(shared.record(), until);
        assert!(matches!(next(&done(live), None), Next::Join(s) if s == shared));
        let expired = done(past);
        assert!(matches!(next(&expired, None), Next::TakeOver));
        assert!(matches!(
            next(&expired, Some(&expired.token)),
            Next::Join(_)
        ));
        let running = Claim::new(FlightRecord::running(), live);
        assert!(matches!(next(&running, None), Next::Wait(t) if t == running.token));
        let dead = Claim::new(FlightRecord::running(), past);
        assert!(matches!(next(&dead, Some(&dead.token)), Next::TakeOver));
        let failed = Claim::new(FlightRecord::failed(), live);
        assert!(matches!(next(&failed, None), Next::TakeOver));
    }
}
