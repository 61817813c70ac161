//! Authentication and authorisation of Flight calls.
//!
//! Callers authenticate with a bearer token in the `authorization` header: one of the configured
//! `auth_tokens` (all tables), a token of the access file (`auth_file`, limited to table patterns),
//! or a token issued by the Flight Handshake in exchange for Basic credentials of an access-file user
//! (what pyarrow's `authenticate_basic_token` and ADBC do). Issued tokens are signed with the
//! server's key and expire (`auth_token_ttl_seconds`), so any replica sharing the key accepts them.
//! Every comparison of a secret is constant-time; no error says which part of a credential was
//! wrong, and none echoes it.
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
use std::time::{Duration, SystemTime};

use argon2::Argon2;
use argon2::password_hash::PasswordVerifier;
use argon2::password_hash::phc::PasswordHash;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;

/// Prefix of tokens issued by the Handshake.
const ISSUED_PREFIX: &str = "rsfb1.";

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
    key: SecretSlice<u8>,
    token_ttl: Duration,
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
    /// tokens; `key` signs issued tokens.
    pub fn new(
        static_tokens: Vec<SecretString>,
        access_file: Option<&Path>,
        key: Vec<u8>,
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
            key: SecretSlice::from(key),
            token_ttl,
        })
    }

    /// Whether any credential is configured (otherwise every caller is anonymous).
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty() || !self.users.is_empty()
    }

    fn mac(&self) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.key.expose_secret())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(ISSUED_PREFIX.as_bytes());
        mac
    }

    /// Issues a signed token for `user`, valid for the token TTL from `now`.
    pub fn issue(&self, user: &str, now: SystemTime) -> String {
        let expiry = now + self.token_ttl;
        let claims = IssuedClaims {
            u: user.to_string(),
            e: crate::ticket::unix_ms(expiry).max(0) as u64,
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{ISSUED_PREFIX}{payload}.{signature}")
    }

    fn verify_issued(&self, token: &str, now: SystemTime) -> Result<Principal, AuthError> {
        let body = token
            .strip_prefix(ISSUED_PREFIX)
            .ok_or(AuthError::Invalid)?;
        let (payload, signature) = body.split_once('.').ok_or(AuthError::Invalid)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| AuthError::Invalid)?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| AuthError::Invalid)?;
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
    pub fn handshake(
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
            Some(u) => (u.password_hash.as_str(), true),
            None if !self.dummy_hash.is_empty() => (self.dummy_hash.as_str(), false),
            None => return Err(AuthError::Invalid),
        };
        let parsed = PasswordHash::new(hash).map_err(|_| AuthError::Invalid)?;
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
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
            b"key".to_vec(),
            ttl,
        )
        .unwrap();
        std::fs::remove_file(dir).unwrap();
        auth
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

    #[test]
    fn handshake_issues_expiring_signed_tokens() {
        let auth = authenticator(Duration::from_secs(60));
        let now = SystemTime::now();
        let token = auth
            .handshake(&metadata(Some(&basic("alice", "s3cret-pw"))), now)
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
            b"other".to_vec(),
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
                auth.handshake(&metadata(Some(&bad)), now).unwrap_err(),
                AuthError::Invalid
            );
        }
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
                Authenticator::new(vec![], Some(&path), b"k".to_vec(), Duration::from_secs(1));
            std::fs::remove_file(&path).unwrap();
            let error = result.unwrap_err().to_string();
            assert!(!error.contains("0123456789abcdefg"), "{error}");
        }
    }
}
