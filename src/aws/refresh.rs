//! [`Refreshing`]: a value fetched from AWS that expires (temporary credentials, a database
//! login), kept until shortly before it expires and fetched again then, by one caller at a time.
//!
//! The refresh falls due when five minutes, or half the lifetime if that is shorter, are left, so
//! a value is never used in its last moments. If fetching fails while the old value is still
//! valid, the old value is used and the failure logged (AWS's own SDK clients do the same); a
//! value that was refused ([`Refreshing::reject`]) is dropped at once.
//!
//! May import: nothing from the crate.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// How long before expiry a refresh falls due, at most.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// A cached value and the generation it belongs to: [`Refreshing::reject`] takes the generation,
/// so that a refusal seen by a late caller does not drop a newer value.
#[derive(Debug, Clone)]
pub struct Fetched<T> {
    /// The value.
    pub value: T,
    /// Counts fetches, from 1.
    pub generation: u64,
}

#[derive(Debug)]
struct Entry<T> {
    fetched: Fetched<T>,
    expires: Option<SystemTime>,
    refresh_at: Option<SystemTime>,
    /// Refused: fetched anew by the next [`Refreshing::get`], never used as a fallback, but still
    /// [`Refreshing::latest`] until then (so a connection opened meanwhile has a login to try).
    rejected: bool,
}

/// A value fetched on demand and again before it expires.
#[derive(Debug)]
pub struct Refreshing<T> {
    entry: Mutex<Option<Entry<T>>>,
    generations: AtomicU64,
    fetching: tokio::sync::Mutex<()>,
}

impl<T> Default for Refreshing<T> {
    fn default() -> Self {
        Self {
            entry: Mutex::new(None),
            generations: AtomicU64::new(0),
            fetching: tokio::sync::Mutex::new(()),
        }
    }
}

impl<T: Clone> Refreshing<T> {
    /// The value held now, if it is usable and `current` says it is still current.
    fn held(&self, current: impl Fn(&Entry<T>) -> bool) -> Option<Fetched<T>> {
        let entry = self.entry.lock().unwrap_or_else(PoisonError::into_inner);
        entry
            .as_ref()
            .filter(|e| !e.rejected && current(e))
            .map(|e| e.fetched.clone())
    }

    /// The value held now, if it is neither due for refresh nor refused.
    fn fresh(&self, now: SystemTime) -> Option<Fetched<T>> {
        self.held(|e| e.refresh_at.is_none_or(|at| now < at))
    }

    /// The value held now, if it has not expired nor been refused (even if a refresh is due).
    fn valid(&self, now: SystemTime) -> Option<Fetched<T>> {
        self.held(|e| e.expires.is_none_or(|at| now < at))
    }

    /// The last value fetched, whatever its state: for code that cannot wait (and whose caller
    /// has just called [`Refreshing::get`]).
    pub fn latest(&self) -> Option<T> {
        let entry = self.entry.lock().unwrap_or_else(PoisonError::into_inner);
        entry.as_ref().map(|e| e.fetched.value.clone())
    }

    /// The value, fetched with `fetch` (which returns it and its expiry, `None`: never) when none
    /// is held or its refresh is due.
    pub async fn get<F, Fut, E>(&self, fetch: F) -> Result<Fetched<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(T, Option<SystemTime>), E>>,
        E: std::fmt::Display,
    {
        if let Some(fetched) = self.fresh(SystemTime::now()) {
            return Ok(fetched);
        }
        let _one_at_a_time = self.fetching.lock().await;
        // Another caller may have fetched while this one waited.
        if let Some(fetched) = self.fresh(SystemTime::now()) {
            return Ok(fetched);
        }
        match fetch().await {
            Ok((value, expires)) => Ok(self.store(value, expires, SystemTime::now())),
            Err(error) => match self.valid(SystemTime::now()) {
                Some(fetched) => {
                    tracing::warn!(%error, "refresh failed; the current value is still valid and stays in use");
                    Ok(fetched)
                }
                None => Err(error),
            },
        }
    }

    fn store(&self, value: T, expires: Option<SystemTime>, now: SystemTime) -> Fetched<T> {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let refresh_at = expires.map(|at| {
            let left = at.duration_since(now).unwrap_or_default();
            at - REFRESH_MARGIN.min(left / 2)
        });
        let fetched = Fetched { value, generation };
        *self.entry.lock().unwrap_or_else(PoisonError::into_inner) = Some(Entry {
            fetched: fetched.clone(),
            expires,
            refresh_at,
            rejected: false,
        });
        fetched
    }

    /// Marks the value of `generation` refused, so the next [`Refreshing::get`] fetches anew.
    /// Returns whether it was still held (false: a newer value is already there).
    pub fn reject(&self, generation: u64) -> bool {
        let mut entry = self.entry.lock().unwrap_or_else(PoisonError::into_inner);
        match entry.as_mut() {
            Some(e) if e.fetched.generation == generation => {
                e.rejected = true;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;

    async fn fetch_counted(
        calls: &AtomicU32,
        lifetime: Option<Duration>,
    ) -> Result<(u32, Option<SystemTime>), String> {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        Ok((n, lifetime.map(|l| SystemTime::now() + l)))
    }

    #[tokio::test]
    async fn a_long_lived_value_is_fetched_once() {
        let cache = Refreshing::default();
        let calls = AtomicU32::new(0);
        for _ in 0..3 {
            let got = cache
                .get(|| fetch_counted(&calls, Some(Duration::from_secs(3600))))
                .await
                .unwrap();
            assert_eq!((got.value, got.generation), (1, 1));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_value_is_refreshed_when_half_its_short_life_is_gone() {
        let cache = Refreshing::default();
        let calls = AtomicU32::new(0);
        let life = Some(Duration::from_millis(400));
        assert_eq!(
            cache
                .get(|| fetch_counted(&calls, life))
                .await
                .unwrap()
                .value,
            1
        );
        assert_eq!(
            cache
                .get(|| fetch_counted(&calls, life))
                .await
                .unwrap()
                .value,
            1
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        let again = cache.get(|| fetch_counted(&calls, life)).await.unwrap();
        assert_eq!((again.value, again.generation), (2, 2));
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_a_still_valid_value_but_not_an_expired_one() {
        let cache = Refreshing::default();
        let calls = AtomicU32::new(0);
        cache
            .get(|| fetch_counted(&calls, Some(Duration::from_millis(400))))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        let kept = cache
            .get(|| async { Err::<(u32, Option<SystemTime>), _>("STS is down".to_string()) })
            .await
            .unwrap();
        assert_eq!(kept.value, 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let failed = cache
            .get(|| async { Err::<(u32, Option<SystemTime>), _>("STS is down".to_string()) })
            .await;
        assert_eq!(failed.unwrap_err(), "STS is down");
    }

    #[tokio::test]
    async fn reject_drops_only_the_generation_that_was_refused() {
        let cache = Refreshing::default();
        let calls = AtomicU32::new(0);
        let first = cache.get(|| fetch_counted(&calls, None)).await.unwrap();
        assert!(cache.reject(first.generation));
        assert_eq!(
            cache.latest(),
            Some(1),
            "kept for connections opened meanwhile"
        );
        let failed = cache
            .get(|| async { Err::<(u32, Option<SystemTime>), _>("down".to_string()) })
            .await;
        assert!(failed.is_err(), "a refused value is no fallback");
        let second = cache.get(|| fetch_counted(&calls, None)).await.unwrap();
        assert_eq!((second.value, second.generation), (2, 2));
        // A late caller that saw the first value refused must not drop the second.
        assert!(!cache.reject(first.generation));
        assert_eq!(cache.latest(), Some(2));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
