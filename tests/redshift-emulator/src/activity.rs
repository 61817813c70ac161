//! Idle sessions: Redshift closes a session that has been idle longer than its session timeout;
//! the emulator does the same when the knob `idle_session_seconds` is set, so tests can make a
//! client's connection pool open new connections.
//!
//! A session is busy while one of its protocol handlers runs (a statement, a relayed query, an
//! UNLOAD); it is idle from the moment the last one returned. [`closed_when_idle`] resolves once
//! the session has been idle for the knob's current value; the connection task then drops the
//! client's socket (the client sees the connection close, with no error message).
//!
//! May import: `crate::config`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::FaultKnobs;

/// When a session last did something, and whether it is doing something now.
#[derive(Debug)]
pub(crate) struct Activity {
    busy: AtomicUsize,
    last: Mutex<Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            busy: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        }
    }
}

/// Marks the session busy until dropped.
#[derive(Debug)]
pub(crate) struct Busy<'a>(&'a Activity);

impl Activity {
    fn touch(&self) {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    /// The session starts handling a message.
    pub(crate) fn enter(&self) -> Busy<'_> {
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.touch();
        Busy(self)
    }

    /// How long the session has been idle; `None` while busy.
    fn idle_for(&self) -> Option<Duration> {
        if self.busy.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(
            self.last
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .elapsed(),
        )
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Longest sleep between checks, so that a changed knob is seen soon.
const CHECK_EVERY: Duration = Duration::from_millis(500);

/// Resolves once the session has been idle for `idle_session_seconds` (never while unset).
pub(crate) async fn closed_when_idle(activity: &Activity, knobs: &FaultKnobs) {
    loop {
        let wait = match knobs.get().idle_session_seconds {
            None => CHECK_EVERY,
            Some(limit) => {
                let limit = Duration::from_secs(limit);
                match activity.idle_for() {
                    Some(idle) if idle >= limit => return,
                    Some(idle) => (limit - idle).min(CHECK_EVERY),
                    None => CHECK_EVERY.min(limit.max(Duration::from_millis(50))),
                }
            }
        };
        tokio::time::sleep(wait.max(Duration::from_millis(20))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FaultSettings;

    #[tokio::test]
    async fn idle_only_counts_without_a_running_handler() {
        let knobs = FaultKnobs::new(FaultSettings {
            idle_session_seconds: Some(1),
            ..FaultSettings::default()
        });
        let activity = Activity::default();
        let busy = activity.enter();
        let watcher = closed_when_idle(&activity, &knobs);
        tokio::pin!(watcher);
        // busy for longer than the limit: not closed
        tokio::select! {
            _ = &mut watcher => panic!("closed while busy"),
            _ = tokio::time::sleep(Duration::from_millis(1500)) => {}
        }
        drop(busy);
        let idle_from = Instant::now();
        (&mut watcher).await;
        let waited = idle_from.elapsed();
        assert!(waited >= Duration::from_millis(950), "{waited:?}");
        assert!(waited < Duration::from_millis(1900), "{waited:?}");
    }
}
