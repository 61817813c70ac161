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
//! ```toml
//! # auth_file (TOML or JSON)
//! [[users]]
//! name = "alice"
//! password_hash = "$argon2id$v=19$..."   # redshift-flight hash-password
//! tables = ["demo.*"]                    # optional: all tables when absent
//!
//! [[tokens]]
//! name = "nightly-etl"
//! token = "a-long-random-string"
//! tables = ["demo.orders"]
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use argon2::Argon2;
use argon2::password_hash::PasswordVerifier;
use argon2::password_hash::phc::PasswordHash;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;

use crate::keys::{KEY_ID_LEN, Keyring, Purpose};

/// Prefix of tokens issued by the Handshake: `rsfb2.<key id, hex>.<claims>.<signature>`.
const ISSUED_PREFIX: &str = "rsfb2.";

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

/// Tables a principal may read.
#[derive(Debug, Clone)]
enum Tables {
    All,
    Patterns(Vec<glob::Pattern>),
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    name: String,
    tables: Tables,
}

impl Principal {
    /// The caller when authentication is off: may read everything.
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".into(),
            tables: Tables::All,
        }
    }

    /// The principal's name (for logs).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the principal may read `schema.table`.
    pub fn may_read(&self, schema: &str, table: &str) -> bool {
        match &self.tables {
            Tables::All => true,
            Tables::Patterns(patterns) => {
                let name = format!("{schema}.{table}");
                let options = glob::MatchOptions {
                    case_sensitive: true,
                    require_literal_separator: false,
                    require_literal_leading_dot: false,
                };
                patterns.iter().any(|p| p.matches_with(&name, options))
            }
        }
    }

    /// [`Principal::may_read`] as a result.
    pub fn check(&self, schema: &str, table: &str) -> Result<(), AuthError> {
        if self.may_read(schema, table) {
            Ok(())
        } else {
            Err(AuthError::Forbidden {
                principal: self.name.clone(),
                table: format!("{schema}.{table}"),
            })
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessFile {
    #[serde(default)]
    users: Vec<UserEntry>,
    #[serde(default)]
    tokens: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    name: String,
    password_hash: String,
    #[serde(default)]
    tables: Option<Vec<String>>,
}

impl fmt::Debug for UserEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserEntry")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    token: String,
    #[serde(default)]
    tables: Option<Vec<String>>,
}

impl fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEntry")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

struct User {
    password_hash: String,
    principal: Principal,
}

#[derive(Serialize, Deserialize)]
struct IssuedClaims {
    /// User name.
    u: String,
    /// Expiry, Unix milliseconds.
    e: u64,
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
struct HashLimiter {
    limits: HashLimits,
    permits: Arc<tokio::sync::Semaphore>,
    waiting: AtomicUsize,
}

/// Decrements the waiting count when a waiter leaves (got its turn, timed out, or was dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl HashLimiter {
    fn new(limits: HashLimits) -> Self {
        Self {
            limits,
            permits: Arc::new(tokio::sync::Semaphore::new(limits.concurrent.max(1))),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Whether `password` matches the PHC string `hash`, verified on the blocking pool.
    async fn verify(&self, hash: String, password: SecretString) -> Result<bool, AuthError> {
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

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("tokens", &self.tokens.len())
            .field("users", &self.users.len())
            .field("token_ttl", &self.token_ttl)
            .finish_non_exhaustive()
    }
}

fn patterns(tables: Option<Vec<String>>, whose: &str) -> Result<Tables, String> {
    match tables {
        None => Ok(Tables::All),
        Some(list) => list
            .iter()
            .map(|p| {
                glob::Pattern::new(p).map_err(|e| format!("{whose}: table pattern {p:?}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Tables::Patterns),
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
            .map(|(i, t)| {
                (
                    t,
                    Principal {
                        name: format!("auth_tokens[{i}]"),
                        tables: Tables::All,
                    },
                )
            })
            .collect();
        let mut users = HashMap::new();
        if let Some(path) = access_file {
            let err = |message: String| AuthError::File {
                path: path.display().to_string(),
                message,
            };
            let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
            let file: AccessFile = match path.extension().and_then(|e| e.to_str()) {
                Some("json") => serde_json::from_str(&text).map_err(|e| err(e.to_string()))?,
                Some("toml") => toml::from_str(&text).map_err(|e| err(e.to_string()))?,
                _ => return Err(err("the file name must end in .toml or .json".into())),
            };
            for user in file.users {
                PasswordHash::new(&user.password_hash)
                    .map_err(|_| err(format!("user {:?}: password_hash is not a PHC string (use redshift-flight hash-password)", user.name)))?;
                let tables =
                    patterns(user.tables, &format!("user {:?}", user.name)).map_err(err)?;
                let principal = Principal {
                    name: user.name.clone(),
                    tables,
                };
                if users
                    .insert(
                        user.name.clone(),
                        User {
                            password_hash: user.password_hash,
                            principal,
                        },
                    )
                    .is_some()
                {
                    return Err(err(format!("user {:?} is listed twice", user.name)));
                }
            }
            for token in file.tokens {
                if token.token.len() < 16 {
                    return Err(err(format!(
                        "token {:?} is shorter than 16 characters",
                        token.name
                    )));
                }
                let tables =
                    patterns(token.tables, &format!("token {:?}", token.name)).map_err(err)?;
                tokens.push((
                    SecretString::from(token.token),
                    Principal {
                        name: token.name,
                        tables,
                    },
                ));
            }
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

    fn mac(key: &[u8], signed_part: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(signed_part.as_bytes());
        mac
    }

    /// Issues a signed token for `user`, valid for the token TTL from `now`:
    /// `rsfb2.<key id>.<claims>.<HMAC-SHA256(token key, everything before the last dot)>`.
    pub fn issue(&self, user: &str, now: SystemTime) -> String {
        let expiry = now + self.token_ttl;
        let claims = IssuedClaims {
            u: user.to_string(),
            e: crate::ticket::unix_ms(expiry).max(0) as u64,
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let (key_id, key) = self.keys.signing(Purpose::Token);
        let signed_part = format!("{ISSUED_PREFIX}{}.{payload}", hex::encode(key_id));
        let signature =
            URL_SAFE_NO_PAD.encode(Self::mac(key, &signed_part).finalize().into_bytes());
        format!("{signed_part}.{signature}")
    }

    fn verify_issued(&self, token: &str, now: SystemTime) -> Result<Principal, AuthError> {
        let (signed_part, signature) = token.rsplit_once('.').ok_or(AuthError::Invalid)?;
        let body = signed_part
            .strip_prefix(ISSUED_PREFIX)
            .ok_or(AuthError::Invalid)?;
        let (key_id, payload) = body.split_once('.').ok_or(AuthError::Invalid)?;
        let key_id = hex::decode(key_id).map_err(|_| AuthError::Invalid)?;
        if key_id.len() != KEY_ID_LEN {
            return Err(AuthError::Invalid);
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| AuthError::Invalid)?;
        let verified = self
            .keys
            .verifying(&key_id, Purpose::Token)
            .any(|key| Self::mac(key, signed_part).verify_slice(&signature).is_ok());
        if !verified {
            return Err(AuthError::Invalid);
        }
        let claims: IssuedClaims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(AuthError::Invalid)?;
        if crate::ticket::unix_ms(now).max(0) as u64 >= claims.e {
            return Err(AuthError::Expired);
        }
        // The user must still exist: removing a user revokes their tokens.
        self.users
            .get(&claims.u)
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
        if presented.starts_with(ISSUED_PREFIX) {
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
        let decoded = STANDARD
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

/// Hashes a password for the access file (the `hash-password` command).
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::PasswordHasher;
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(value: Option<&str>) -> MetadataMap {
        let mut map = MetadataMap::new();
        if let Some(v) = value {
            map.insert("authorization", v.parse().unwrap());
        }
        map
    }

    fn basic(user: &str, password: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
    }

    fn authenticator(ttl: Duration) -> Authenticator {
        let hash = hash_password("s3cret-pw").unwrap();
        let dir = std::env::temp_dir().join(format!("rsf-auth-{:x}.toml", rand::random::<u64>()));
        std::fs::write(
            &dir,
            format!(
                "[[users]]\nname = \"alice\"\npassword_hash = \"{hash}\"\ntables = [\"demo.*\"]\n\n\
                 [[tokens]]\nname = \"etl\"\ntoken = \"etl-token-0123456789\"\ntables = [\"demo.orders\", \"x?.t\"]\n"
            ),
        )
        .unwrap();
        let auth = Authenticator::new(
            vec![SecretString::from("alpha-token")],
            Some(&dir),
            keys(&["key"]),
            ttl,
        )
        .unwrap();
        std::fs::remove_file(dir).unwrap();
        auth
    }

    fn keys(secrets: &[&str]) -> Arc<Keyring> {
        Arc::new(Keyring::new(secrets))
    }

    /// The same users and tokens with other signing keys (a replica configured otherwise).
    fn with_keys(auth: &Authenticator, secrets: &[&str]) -> Authenticator {
        Authenticator {
            tokens: auth.tokens.clone(),
            users: auth
                .users
                .iter()
                .map(|(name, user)| {
                    (
                        name.clone(),
                        User {
                            password_hash: user.password_hash.clone(),
                            principal: user.principal.clone(),
                        },
                    )
                })
                .collect(),
            dummy_hash: auth.dummy_hash.clone(),
            keys: keys(secrets),
            token_ttl: auth.token_ttl,
            hashing: HashLimiter::new(HashLimits::default()),
        }
    }

    #[test]
    fn bearer_tokens_and_their_tables() {
        let auth = authenticator(Duration::from_secs(60));
        let now = SystemTime::now();
        let all = auth
            .authenticate(&metadata(Some("Bearer alpha-token")), now)
            .unwrap();
        assert!(all.may_read("any", "thing"));
        let etl = auth
            .authenticate(&metadata(Some("Bearer etl-token-0123456789")), now)
            .unwrap();
        assert!(etl.may_read("demo", "orders") && etl.may_read("x1", "t"));
        assert!(!etl.may_read("demo", "customers") && !etl.may_read("Demo", "orders"));
        assert!(matches!(
            etl.check("demo", "secret"),
            Err(AuthError::Forbidden { .. })
        ));
        for bad in [
            Some("Bearer gamma"),
            Some("Basic YWxwaGE="),
            Some("Bearer "),
            Some("alpha-token"),
        ] {
            assert_eq!(
                auth.authenticate(&metadata(bad), now).unwrap_err(),
                AuthError::Invalid,
                "{bad:?}"
            );
        }
        assert_eq!(
            auth.authenticate(&metadata(None), now).unwrap_err(),
            AuthError::Missing
        );
        let debug = format!("{auth:?}");
        assert!(
            !debug.contains("alpha-token")
                && !debug.contains("etl-token")
                && !debug.contains("argon2")
        );
    }

    #[tokio::test]
    async fn handshake_issues_expiring_signed_tokens() {
        let auth = authenticator(Duration::from_secs(60));
        let now = SystemTime::now();
        let token = auth
            .handshake(&metadata(Some(&basic("alice", "s3cret-pw"))), now)
            .await
            .unwrap()
            .unwrap();
        let principal = auth
            .authenticate(&metadata(Some(&format!("Bearer {token}"))), now)
            .unwrap();
        assert_eq!(principal.name(), "alice");
        assert!(principal.may_read("demo", "t") && !principal.may_read("other", "t"));
        assert_eq!(
            auth.authenticate(
                &metadata(Some(&format!("Bearer {token}"))),
                now + Duration::from_secs(61)
            )
            .unwrap_err(),
            AuthError::Expired
        );
        let mut forged = token.clone();
        forged.pop();
        forged.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(
            auth.authenticate(&metadata(Some(&format!("Bearer {forged}"))), now)
                .unwrap_err(),
            AuthError::Invalid
        );
        let other_key = Authenticator::new(
            vec![SecretString::from("x")],
            None,
            keys(&["other"]),
            Duration::from_secs(60),
        )
        .unwrap();
        assert!(
            other_key
                .authenticate(&metadata(Some(&format!("Bearer {token}"))), now)
                .is_err()
        );
        for bad in [
            basic("alice", "wrong"),
            basic("mallory", "s3cret-pw"),
            "Basic !!!".into(),
            basic("alice", ""),
        ] {
            assert_eq!(
                auth.handshake(&metadata(Some(&bad)), now)
                    .await
                    .unwrap_err(),
                AuthError::Invalid
            );
        }
    }

    /// Rotation: a token signed with key A is accepted where A is still configured (after B),
    /// not where it is gone; the key that signs tickets does not sign tokens.
    #[tokio::test]
    async fn issued_tokens_verify_by_key_id_across_rotation() {
        let a = authenticator(Duration::from_secs(60));
        let now = SystemTime::now();
        let token = a.issue("alice", now);
        assert!(token.starts_with("rsfb2."), "{token}");
        let bearer = |t: &str| metadata(Some(&format!("Bearer {t}")));
        let rotated = with_keys(&a, &["b-key", "key"]);
        assert_eq!(
            rotated.authenticate(&bearer(&token), now).unwrap().name(),
            "alice"
        );
        let retired = with_keys(&a, &["b-key"]);
        assert_eq!(
            retired.authenticate(&bearer(&token), now).unwrap_err(),
            AuthError::Invalid
        );
        let fresh = rotated.issue("alice", now);
        assert_eq!(
            retired.authenticate(&bearer(&fresh), now).unwrap().name(),
            "alice"
        );
        // Another key id in front of a genuine signature does not verify.
        let parts: Vec<&str> = token.splitn(3, '.').collect();
        let other_id = hex::encode(Keyring::new(&["b-key"]).signing(Purpose::Token).0);
        let swapped = format!("rsfb2.{other_id}.{}", parts[2]);
        assert_eq!(
            rotated.authenticate(&bearer(&swapped), now).unwrap_err(),
            AuthError::Invalid
        );
        // A ticket signature made with the same secret is not a token signature.
        let ring = Keyring::new(&["key"]);
        let (_, ticket_key) = ring.signing(Purpose::Ticket);
        let (signed_part, _) = token.rsplit_once('.').unwrap();
        let forged = format!(
            "{signed_part}.{}",
            URL_SAFE_NO_PAD.encode(
                Authenticator::mac(ticket_key, signed_part)
                    .finalize()
                    .into_bytes()
            )
        );
        assert_eq!(
            a.authenticate(&bearer(&forged), now).unwrap_err(),
            AuthError::Invalid
        );
    }

    /// Password checks beyond the queue bound fail at once with `Busy`, and every caller gets
    /// an answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn handshake_floods_are_bounded() {
        let auth = Arc::new(
            authenticator(Duration::from_secs(60)).with_hash_limits(HashLimits {
                concurrent: 1,
                queued: 2,
                max_wait: Duration::from_secs(60),
            }),
        );
        let now = SystemTime::now();
        let calls: Vec<_> = (0..12)
            .map(|i| {
                let auth = Arc::clone(&auth);
                tokio::spawn(async move {
                    let user = if i % 2 == 0 { "alice" } else { "nobody" };
                    auth.handshake(&metadata(Some(&basic(user, "wrong"))), now)
                        .await
                })
            })
            .collect();
        let mut busy = 0;
        for call in calls {
            match call.await.unwrap() {
                Err(AuthError::Busy) => busy += 1,
                Err(AuthError::Invalid) => {}
                other => panic!("{other:?}"),
            }
        }
        assert!(busy >= 6, "{busy} of 12 were refused at once");
        assert_eq!(auth.hashing.waiting.load(Ordering::SeqCst), 0);
        // Once the flood has passed, the right password works again.
        assert!(
            auth.handshake(&metadata(Some(&basic("alice", "s3cret-pw"))), now)
                .await
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn bad_access_files_are_refused() {
        for text in [
            "[[users]]\nname = \"a\"\npassword_hash = \"plain\"\n",
            "[[tokens]]\nname = \"t\"\ntoken = \"short\"\n",
            "[[tokens]]\nname = \"t\"\ntoken = \"0123456789abcdefg\"\ntables = [\"[\"]\n",
            "[[users]]\nname = \"a\"\npasword_hash = \"x\"\n",
        ] {
            let path =
                std::env::temp_dir().join(format!("rsf-auth-bad-{:x}.toml", rand::random::<u64>()));
            std::fs::write(&path, text).unwrap();
            let result =
                Authenticator::new(vec![], Some(&path), keys(&["k"]), Duration::from_secs(1));
            std::fs::remove_file(&path).unwrap();
            let error = result.unwrap_err().to_string();
            assert!(!error.contains("0123456789abcdefg"), "{error}");
        }
    }
}
