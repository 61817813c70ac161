//! Passwords: Argon2 hashing for the access file (the `hash-password` command) and the bounded
//! verification the Handshake runs.
//!
//! Argon2 verification is deliberately slow. It therefore runs on the blocking pool, at most
//! [`HashLimits::concurrent`] at a time, with a bounded queue: a flood of Handshakes gets
//! UNAVAILABLE ([`AuthError::Busy`]) quickly instead of piling up, and never holds up the async
//! workers serving other clients.
//!
//! Imports: the parent's [`AuthError`] only.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::PasswordVerifier;
use argon2::password_hash::phc::PasswordHash;
use secrecy::{ExposeSecret, SecretString};

use super::AuthError;

/// Bounds on the Argon2 verifications of the Handshake.
#[derive(Debug, Clone, Copy)]
pub struct HashLimits {
    /// Verifications running at once, on the blocking pool.
    pub concurrent: usize,
    /// Handshakes waiting for a turn; more get [`AuthError::Busy`] at once.
    pub queued: usize,
    /// Longest wait for a turn before [`AuthError::Busy`].
    pub max_wait: Duration,
}

impl Default for HashLimits {
    /// Half the CPUs (at least one): the other half keeps serving data while a flood of
    /// Handshakes is verified. At least 32 waiting (16 per running one); at most five seconds'
    /// wait. A verification takes some 10 to 50 ms, so a waiting Handshake is answered in
    /// about a second.
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let concurrent = cpus.div_ceil(2);
        Self {
            concurrent,
            queued: (concurrent * 16).max(32),
            max_wait: Duration::from_secs(5),
        }
    }
}

/// Runs password verifications on the blocking pool within [`HashLimits`].
#[derive(Debug)]
pub(super) struct HashLimiter {
    limits: HashLimits,
    permits: Arc<tokio::sync::Semaphore>,
    pub(super) waiting: AtomicUsize,
}

/// Decrements the waiting count when a waiter leaves (got its turn, timed out, or was dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl HashLimiter {
    pub(super) fn new(limits: HashLimits) -> Self {
        Self {
            limits,
            permits: Arc::new(tokio::sync::Semaphore::new(limits.concurrent.max(1))),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Whether `password` matches the PHC string `hash`, verified on the blocking pool.
    pub(super) async fn verify(
        &self,
        hash: String,
        password: SecretString,
    ) -> Result<bool, AuthError> {
        let permit = {
            let waiting = Waiting(&self.waiting);
            if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.limits.queued {
                return Err(AuthError::Busy);
            }
            let permit = tokio::time::timeout(
                self.limits.max_wait,
                Arc::clone(&self.permits).acquire_owned(),
            )
            .await;
            drop(waiting);
            match permit {
                Ok(Ok(permit)) => permit,
                Ok(Err(_)) | Err(_) => return Err(AuthError::Busy),
            }
        };
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            PasswordHash::new(&hash).is_ok_and(|parsed| {
                Argon2::default()
                    .verify_password(password.expose_secret().as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .await
        .map_err(|_| AuthError::Invalid)
    }
}

/// Whether `hash` is a PHC string (what [`hash_password`] writes).
pub(super) fn is_phc(hash: &str) -> bool {
    PasswordHash::new(hash).is_ok()
}

/// Hashes a password for the access file (the `hash-password` command).
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::PasswordHasher;
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}
