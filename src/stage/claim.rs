//! Claims: small JSON objects in S3 that at most one replica holds at a time, decided by S3's
//! conditional writes. A claim is created with `PutMode::Create` (`If-None-Match: *`), and taken
//! over, renewed or released with `PutMode::Update` on the version last read or written
//! (`If-Match`), so two replicas never both believe they hold it. Every claim names its holder
//! with a token unique to the acquisition, and holds until `until_ms` (Unix milliseconds): a
//! holder renews it while it works, so a replica that dies loses its claims within a lease.
//! Replicas' clocks are assumed to agree within a small fraction of the lease (NTP).
//!
//! A conditional write whose answer is lost (a timeout, then a retry refused because the first
//! attempt was applied) is told apart from a lost race by reading the claim back: the holder's
//! token says whose it is.
//!
//! Used by single flight across replicas ([`super::flights`]) and the cluster-wide UNLOAD limit
//! ([`super::slots`]).

use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::clock::unix_ms;

/// Version of the claim format this build writes and reads.
pub const CLAIM_VERSION: u32 = 1;

/// This process, as named in the claims it holds (for logs and operators).
pub static REPLICA_ID: LazyLock<String> =
    LazyLock::new(|| format!("{:016x}", rand::random::<u64>()));

/// A claim as stored: who holds it until when, and what the holder says about its work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim<T> {
    /// [`CLAIM_VERSION`].
    pub version: u32,
    /// Unique to one acquisition: a holder tells its own claim from a takeover by it.
    pub token: String,
    /// The replica holding it ([`REPLICA_ID`]).
    pub owner: String,
    /// The claim holds until then, Unix milliseconds; renewed while the holder works.
    pub until_ms: i64,
    /// What the claim is about.
    #[serde(flatten)]
    pub body: T,
}

impl<T> Claim<T> {
    /// A new acquisition by this replica, holding until `until`.
    pub fn new(body: T, until: SystemTime) -> Self {
        Self {
            version: CLAIM_VERSION,
            token: format!("{:032x}", rand::random::<u128>()),
            owner: REPLICA_ID.clone(),
            until_ms: unix_ms(until),
            body,
        }
    }

    /// Whether it still holds at `now`.
    pub fn live(&self, now: SystemTime) -> bool {
        unix_ms(now) < self.until_ms
    }
}

/// What reading a claim found.
#[derive(Debug)]
pub enum Read<T> {
    /// No claim there.
    Missing,
    /// A claim, and the version to update it with.
    Found(Claim<T>, UpdateVersion),
    /// An object that is not a claim of this version: anyone may replace it.
    Unreadable(UpdateVersion),
}

/// Conditional writes of claims to one store.
#[derive(Debug, Clone)]
pub struct Claims {
    store: Arc<dyn ObjectStore>,
}

impl Claims {
    /// Claims in `store`.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    fn body<T: Serialize>(claim: &Claim<T>) -> PutPayload {
        PutPayload::from(serde_json::to_vec(claim).unwrap_or_default())
    }

    /// Creates the claim if there is none: `Some(version)` when this call created it, `None`
    /// when a claim is already there.
    pub async fn create<T: Serialize + DeserializeOwned>(
        &self,
        path: &Path,
        claim: &Claim<T>,
    ) -> Result<Option<UpdateVersion>, object_store::Error> {
        let options = PutOptions::from(PutMode::Create);
        match self.store.put_opts(path, Self::body(claim), options).await {
            Ok(result) => Ok(Some(result.into())),
            Err(object_store::Error::AlreadyExists { .. }) => {
                // Perhaps our own first attempt, applied but unanswered.
                match self.read::<T>(path).await? {
                    Read::Found(found, version) if found.token == claim.token => Ok(Some(version)),
                    _ => Ok(None),
                }
            }
            Err(error) => Err(error),
        }
    }

    /// Replaces the claim whose version is `version`: `Some(new version)` when it was replaced,
    /// `None` when it changed or vanished since (another replica was first).
    pub async fn replace<T: Serialize + DeserializeOwned>(
        &self,
        path: &Path,
        claim: &Claim<T>,
        version: UpdateVersion,
    ) -> Result<Option<UpdateVersion>, object_store::Error> {
        let options = PutOptions::from(PutMode::Update(version));
        match self.store.put_opts(path, Self::body(claim), options).await {
            Ok(result) => Ok(Some(result.into())),
            Err(
                object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. },
            ) => match self.read::<T>(path).await? {
                Read::Found(found, version)
                    if found.token == claim.token && found.until_ms == claim.until_ms =>
                {
                    Ok(Some(version))
                }
                _ => Ok(None),
            },
            Err(error) => Err(error),
        }
    }

    /// The claim at `path`, with its version.
    pub async fn read<T: DeserializeOwned>(
        &self,
        path: &Path,
    ) -> Result<Read<T>, object_store::Error> {
        let result = match self.store.get(path).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(Read::Missing),
            Err(error) => return Err(error),
        };
        let version = UpdateVersion {
            e_tag: result.meta.e_tag.clone(),
            version: result.meta.version.clone(),
        };
        let bytes = result.bytes().await?;
        Ok(match serde_json::from_slice::<Claim<T>>(&bytes) {
            Ok(claim) if claim.version == CLAIM_VERSION => Read::Found(claim, version),
            _ => Read::Unreadable(version),
        })
    }

    /// Holds a claim this replica just won: renews it every `lease` / 4 (to `lease` from then)
    /// until [`Held::finish`], or until dropped, which releases it at once.
    pub fn hold<T>(
        &self,
        path: Path,
        claim: Claim<T>,
        version: UpdateVersion,
        lease: Duration,
    ) -> Held<T>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let state = Arc::new(Mutex::new(HeldState {
            claim,
            version,
            lost: false,
        }));
        let renewer = tokio::spawn(renew(self.clone(), path.clone(), Arc::clone(&state), lease));
        Held {
            claims: self.clone(),
            path,
            state,
            renewer: Some(renewer),
        }
    }
}

#[derive(Debug)]
struct HeldState<T> {
    claim: Claim<T>,
    version: UpdateVersion,
    lost: bool,
}

/// Renews a held claim until it is aborted or the claim is lost.
async fn renew<T>(claims: Claims, path: Path, state: Arc<Mutex<HeldState<T>>>, lease: Duration)
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    let period = (lease / 4).max(Duration::from_millis(50));
    loop {
        tokio::time::sleep(period).await;
        let (mut claim, version) = {
            let state = state.lock().unwrap_or_else(|e| e.into_inner());
            (state.claim.clone(), state.version.clone())
        };
        claim.until_ms = unix_ms(SystemTime::now() + lease);
        match claims.replace(&path, &claim, version).await {
            Ok(Some(version)) => {
                let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
                state.claim = claim;
                state.version = version;
            }
            Ok(None) => {
                tracing::warn!(%path, "lost a claim to another replica while holding it");
                state.lock().unwrap_or_else(|e| e.into_inner()).lost = true;
                return;
            }
            Err(error) => tracing::warn!(%path, %error, "could not renew a claim; retrying"),
        }
    }
}

/// A claim this replica holds, renewed in the background.
#[derive(Debug)]
pub struct Held<T>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    claims: Claims,
    path: Path,
    state: Arc<Mutex<HeldState<T>>>,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl<T> Held<T>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Where the claim lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops renewing and writes the claim's last state: `body`, holding until `until` (now or
    /// earlier: released). Returns whether it was still ours to write.
    pub async fn finish(mut self, body: T, until: SystemTime) -> bool {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
            // An aborted renewal may have been applied unanswered: `replace` reads it back.
            let _ = renewer.await;
        }
        let (mut claim, version, lost) = {
            let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            (state.claim.clone(), state.version.clone(), state.lost)
        };
        if lost {
            return false;
        }
        claim.body = body;
        claim.until_ms = unix_ms(until);
        finish(&self.claims, &self.path, claim, version).await
    }
}

/// Writes a held claim's last state, also when a renewal's answer was lost.
async fn finish<T>(claims: &Claims, path: &Path, claim: Claim<T>, version: UpdateVersion) -> bool
where
    T: Serialize + DeserializeOwned,
{
    match claims.replace(path, &claim, version).await {
        Ok(Some(_)) => true,
        Ok(None) => match claims.read::<T>(path).await {
            // A renewal was applied after we last read: ours still, at a newer version.
            Ok(Read::Found(found, version)) if found.token == claim.token => {
                matches!(claims.replace(path, &claim, version).await, Ok(Some(_)))
            }
            _ => false,
        },
        Err(error) => {
            tracing::warn!(%path, %error, "could not write a claim's last state");
            false
        }
    }
}

impl<T> Drop for Held<T>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Dropped without `finish` (the work was abandoned): released at once so that others need
    /// not wait for the lease to pass.
    fn drop(&mut self) {
        let Some(renewer) = self.renewer.take() else {
            return;
        };
        renewer.abort();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let claims = self.claims.clone();
        let path = self.path.clone();
        let state = Arc::clone(&self.state);
        runtime.spawn(async move {
            let _ = renewer.await;
            let (mut claim, version, lost) = {
                let state = state.lock().unwrap_or_else(|e| e.into_inner());
                (state.claim.clone(), state.version.clone(), state.lost)
            };
            if !lost {
                claim.until_ms = 0;
                finish(&claims, &path, claim, version).await;
            }
        });
    }
}
