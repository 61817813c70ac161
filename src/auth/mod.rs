//! Authentication and authorisation of Flight calls.
//!
//! Callers authenticate with a bearer token in the `authorization` header: one of the configured
//! `auth_tokens` (all tables), a token of the access file (`auth_file`, limited to table patterns),
//! or a token issued by the Flight Handshake in exchange for Basic credentials of an access-file user
//! (what pyarrow's `authenticate_basic_token` and ADBC do). Issued tokens are signed with a key
//! derived from `ticket_secret` for this purpose alone (see [`crate::keys`]), name that key by its
//! id, and expire (`auth_token_ttl_seconds`), so any replica sharing the secret accepts them, also
//! while the secret is being rotated. Every comparison of a secret is constant-time; no error says
//! which part of a credential was wrong, and none echoes it.
//!
//! Argon2 verification is deliberately slow (and unknown user names cost a full verification too,
//! against a dummy hash, so timing does not reveal names). It therefore runs on the blocking pool,
//! at most [`HashLimits::concurrent`] at a time, with a bounded queue: a flood of Handshakes gets
//! UNAVAILABLE quickly instead of piling up, and never holds up the async workers serving other
//! clients.
//!
//! Each principal may be limited to `schema.table` glob patterns (`sales.*`, `public.orders`).
//!
//! # Layout
//!
//! - this file: [`AuthError`] and the [`Authenticator`] (bearer tokens and the Handshake);
//! - `principal.rs`: [`Principal`] and its table patterns;
//! - `access_file.rs`: the access file's users and tokens (format documented there);
//! - `password.rs`: Argon2 hashing ([`hash_password`]) and the bounded verification
//!   ([`HashLimits`]);
//! - `token.rs`: the format, signing and verification of issued tokens.
//!
//! Imports: [`crate::keys`] (token keys) and [`crate::clock`]; nothing else of the crate. The
//! Flight layer maps [`AuthError`] to statuses.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;

use crate::keys::Keyring;

mod access_file;
mod password;
mod principal;
#[cfg(test)]
mod tests;
mod token;

use access_file::User;
use password::HashLimiter;
pub use password::{HashLimits, hash_password};
pub use principal::Principal;
use principal::Tables;

/// Base64 of Basic credentials, padded or not: pyarrow pads, Go's Flight client (ADBC) does not.
const BASIC_CREDENTIALS: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a call was not authenticated or not authorised. Messages never echo a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `authorization` header.
    #[error(
        "missing credentials: send the header 'authorization: Bearer <token>' (or Basic credentials to Handshake)"
    )]
    Missing,
    /// A header that is not understood, or credentials that are not accepted.
    #[error("invalid credentials")]
    Invalid,
    /// An issued token past its expiry.
    #[error("the token has expired: authenticate again (Handshake)")]
    Expired,
    /// The principal may not read this table.
    #[error("{principal} may not read {table}")]
    Forbidden {
        /// Who asked.
        principal: String,
        /// The table.
        table: String,
    },
    /// Too many Handshakes are verifying passwords: try again shortly.
    #[error("too many Handshakes in progress: try again shortly")]
    Busy,
    /// The access file is unusable (start-up only).
    #[error("auth_file {path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Checks credentials and issues tokens.
pub struct Authenticator {
    tokens: Vec<(SecretString, Principal)>,
    users: HashMap<String, User>,
    /// Verified against when the user is unknown, so timing does not reveal user names.
    dummy_hash: String,
    keys: Arc<Keyring>,
    token_ttl: Duration,
    hashing: HashLimiter,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("tokens", &self.tokens.len())
            .field("users", &self.users.len())
            .field("token_ttl", &self.token_ttl)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator accepting `static_tokens` (all tables) and the access file's users and
    /// tokens; `keys` sign issued tokens (with their token keys).
    pub fn new(
        static_tokens: Vec<SecretString>,
        access_file: Option<&Path>,
        keys: Arc<Keyring>,
        token_ttl: Duration,
    ) -> Result<Self, AuthError> {
        let mut tokens: Vec<(SecretString, Principal)> = static_tokens
            .into_iter()
            .enumerate()
            .map(|(i, t)| (t, Principal::new(format!("auth_tokens[{i}]"), Tables::All)))
            .collect();
        let mut users = HashMap::new();
        if let Some(path) = access_file {
            let file = access_file::load(path)?;
            users = file.users;
            tokens.extend(file.tokens);
        }
        let dummy_hash = if users.is_empty() {
            String::new()
        } else {
            hash_password("not a password").map_err(|message| AuthError::File {
                path: String::new(),
                message,
            })?
        };
        Ok(Self {
            tokens,
            users,
            dummy_hash,
            keys,
            token_ttl,
            hashing: HashLimiter::new(HashLimits::default()),
        })
    }

    /// The same authenticator with other bounds on password verification.
    pub fn with_hash_limits(mut self, limits: HashLimits) -> Self {
        self.hashing = HashLimiter::new(limits);
        self
    }

    /// Whether any credential is configured (otherwise every caller is anonymous).
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty() || !self.users.is_empty()
    }

    /// Issues a signed token for `user`, valid for the token TTL from `now`:
    /// `rsfb2.<key id>.<claims>.<HMAC-SHA256(token key, everything before the last dot)>`.
    pub fn issue(&self, user: &str, now: SystemTime) -> String {
        token::issue(&self.keys, user, now + self.token_ttl)
    }

    fn verify_issued(&self, token: &str, now: SystemTime) -> Result<Principal, AuthError> {
        let user = token::verify(&self.keys, token, now)?;
        // The user must still exist: removing a user revokes their tokens.
        self.users
            .get(&user)
            .map(|u| u.principal.clone())
            .ok_or(AuthError::Invalid)
    }

    /// Authenticates a call by its bearer token.
    pub fn authenticate(
        &self,
        metadata: &MetadataMap,
        now: SystemTime,
    ) -> Result<Principal, AuthError> {
        if !self.enabled() {
            return Ok(Principal::anonymous());
        }
        let header = metadata.get("authorization").ok_or(AuthError::Missing)?;
        let value = header.to_str().map_err(|_| AuthError::Invalid)?;
        let presented = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or(AuthError::Invalid)?
            .trim();
        if presented.starts_with(token::ISSUED_PREFIX) {
            return self.verify_issued(presented, now);
        }
        // Compare against every token, without stopping early, in constant time per token.
        let mut found: Option<&Principal> = None;
        for (token, principal) in &self.tokens {
            if bool::from(token.expose_secret().as_bytes().ct_eq(presented.as_bytes())) {
                found = Some(principal);
            }
        }
        found.cloned().ok_or(AuthError::Invalid)
    }

    /// The Handshake: Basic credentials of an access-file user in, a signed bearer token out.
    /// A call that already carries a valid bearer token gets a fresh one for the same principal.
    /// The password is verified on the blocking pool, within the [`HashLimits`]; an unknown user
    /// costs the same verification (against a dummy hash).
    pub async fn handshake(
        &self,
        metadata: &MetadataMap,
        now: SystemTime,
    ) -> Result<Option<String>, AuthError> {
        if !self.enabled() {
            return Ok(None);
        }
        let header = metadata.get("authorization").ok_or(AuthError::Missing)?;
        let value = header.to_str().map_err(|_| AuthError::Invalid)?;
        let Some(basic) = value
            .strip_prefix("Basic ")
            .or_else(|| value.strip_prefix("basic "))
        else {
            let principal = self.authenticate(metadata, now)?;
            return Ok(self
                .users
                .contains_key(principal.name())
                .then(|| self.issue(principal.name(), now)));
        };
        let decoded = BASIC_CREDENTIALS
            .decode(basic.trim())
            .map_err(|_| AuthError::Invalid)?;
        let decoded = String::from_utf8(decoded).map_err(|_| AuthError::Invalid)?;
        let (user, password) = decoded.split_once(':').ok_or(AuthError::Invalid)?;
        let (hash, known) = match self.users.get(user) {
            Some(u) => (u.password_hash.clone(), true),
            None if !self.dummy_hash.is_empty() => (self.dummy_hash.clone(), false),
            None => return Err(AuthError::Invalid),
        };
        let ok = self
            .hashing
            .verify(hash, SecretString::from(password.to_string()))
            .await?;
        if ok && known {
            Ok(Some(self.issue(user, now)))
        } else {
            Err(AuthError::Invalid)
        }
    }
}

/// What the Flight service asks of authentication: who a call is, and the Handshake. The
/// [`Authenticator`] is the implementation; tests and other front ends may bring their own.
#[async_trait::async_trait]
pub trait Authenticate: Send + Sync + fmt::Debug {
    /// The principal a call's metadata authenticates (anonymous when authentication is off).
    fn authenticate(&self, metadata: &MetadataMap, now: SystemTime)
    -> Result<Principal, AuthError>;

    /// The Handshake: a token to hand back, or `None` when authentication is off.
    async fn handshake(
        &self,
        metadata: &MetadataMap,
        now: SystemTime,
    ) -> Result<Option<String>, AuthError>;
}

#[async_trait::async_trait]
impl Authenticate for Authenticator {
    fn authenticate(
        &self,
        metadata: &MetadataMap,
        now: SystemTime,
    ) -> Result<Principal, AuthError> {
        Authenticator::authenticate(self, metadata, now)
    }

    async fn handshake(
        &self,
        metadata: &MetadataMap,
        now: SystemTime,
    ) -> Result<Option<String>, AuthError> {
        Authenticator::handshake(self, metadata, now).await
    }
}
