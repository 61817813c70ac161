//! The access file (`auth_file`, TOML or JSON): its users, with Argon2 password hashes for the
//! Handshake, and its long-lived bearer tokens, each optionally limited to table patterns. Read
//! and checked once at start-up; every problem is an [`AuthError::File`] that never quotes a
//! secret.
//!
//! ```toml
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
//!
//! Imports: the sibling modules [`super::principal`] and [`super::password`], and the parent's
//! [`AuthError`].

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use secrecy::SecretString;
use serde::Deserialize;

use super::AuthError;
use super::password::is_phc;
use super::principal::{Principal, patterns};

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

/// A user of the access file: who may exchange a password for an issued token.
pub(super) struct User {
    /// The PHC string the Handshake verifies against.
    pub(super) password_hash: String,
    /// Who the user is once authenticated.
    pub(super) principal: Principal,
}

/// What an access file grants: bearer tokens (in file order) and users by name.
pub(super) struct Credentials {
    /// Each token with its principal.
    pub(super) tokens: Vec<(SecretString, Principal)>,
    /// Users by name.
    pub(super) users: HashMap<String, User>,
}

/// Reads and checks the access file at `path`: its name must end in `.toml` or `.json`; every
/// password hash must be a PHC string, every token at least 16 characters, every table pattern a
/// valid glob, and no user may be listed twice.
pub(super) fn load(path: &Path) -> Result<Credentials, AuthError> {
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
    let mut users = HashMap::new();
    for user in file.users {
        if !is_phc(&user.password_hash) {
            return Err(err(format!(
                "user {:?}: password_hash is not a PHC string (use redshift-flight hash-password)",
                user.name
            )));
        }
        let tables = patterns(user.tables, &format!("user {:?}", user.name)).map_err(err)?;
        let principal = Principal::new(user.name.clone(), tables);
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
    let mut tokens = Vec::with_capacity(file.tokens.len());
    for token in file.tokens {
        if token.token.len() < 16 {
            return Err(err(format!(
                "token {:?} is shorter than 16 characters",
                token.name
            )));
        }
        let tables = patterns(token.tables, &format!("token {:?}", token.name)).map_err(err)?;
        tokens.push((
            SecretString::from(token.token),
            Principal::new(token.name, tables),
        ));
    }
    Ok(Credentials { tokens, users })
}
