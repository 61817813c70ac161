//! The emulator's database users and the temporary credentials its AWS API issued, in memory:
//! what every login is checked against.
//!
//! * **Users** have a password (kept as PostgreSQL's `md5(password || user)`, never in clear) or
//!   none (`PASSWORD DISABLE`, or created by `GetClusterCredentials` with `AutoCreate`). The
//!   configured user is the superuser; `CREATE USER ... CREATEUSER` makes more. `ALTER USER x
//!   PASSWORD '...'` (by a superuser, or by `x` itself) changes the password for new logins,
//!   as a Secrets Manager rotation does; sessions already open stay.
//! * **Temporary credentials** are issued for a login name `IAM:<user>`, `IAMA:<user>`
//!   (`AutoCreate` true) or `IAMR:<user>` (Serverless) with a random password, an expiry, the
//!   database they are for (if the call named one) and the `DbGroups` to join. A login with such
//!   a name must present one of its unexpired passwords: an expired one fails with 28P01
//!   `IAM Authentication token has expired` (Redshift's message), an unknown one with 28P01
//!   `password authentication failed for user "..."`; a valid one for a user that does not exist
//!   (`AutoCreate` false) fails with 28000 `user "..." does not exist`. Sessions outlive their
//!   credentials, as on Redshift.
//!
//! Logins use MD5 (what the emulator always offered): the client's answer is checked against
//! every candidate password of the user, so several unexpired credentials work side by side.
//!
//! May import: `crate::config`.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use base64::Engine;

use crate::config::Secret;

/// Login-name prefixes of temporary credentials: `IAM:` (GetClusterCredentials without
/// AutoCreate, GetClusterCredentialsWithIAM), `IAMA:` (with AutoCreate), `IAMR:` (Serverless).
pub const TEMPORARY_PREFIXES: [&str; 3] = ["IAM", "IAMA", "IAMR"];

/// Issued credentials are forgotten this long after they expired (until then a login with one
/// gets the "expired" error rather than the "wrong password" one).
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// SQLSTATE of a wrong or expired password.
pub(crate) const SQLSTATE_INVALID_PASSWORD: &str = "28P01";
/// SQLSTATE of an unknown user (invalid authorization specification).
pub(crate) const SQLSTATE_INVALID_AUTHORIZATION: &str = "28000";

/// How a session authenticated, as `stl_connection_log.authmethod` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// The user's own password.
    Password,
    /// Temporary credentials from the AWS API.
    Iam,
}

impl AuthMethod {
    /// The `authmethod` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Iam => "IAM",
        }
    }
}

/// A successful login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Login {
    /// The name the client logged in with (`IAM:alice`, `awsuser`).
    pub(crate) user: String,
    /// The database user behind it (`alice`, `awsuser`).
    pub(crate) db_user: String,
    /// How.
    pub(crate) method: AuthMethod,
    /// The `DbGroups` of the temporary credentials.
    pub(crate) groups: Vec<String>,
    /// The request id of the API call that issued the temporary credentials.
    pub(crate) request_id: Option<String>,
}

/// A refused login: the SQLSTATE and message of the FATAL error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoginFailure {
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

/// A refused `CREATE USER` / `ALTER USER`: SQLSTATE and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserError {
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

fn user_error(code: &'static str, message: impl Into<String>) -> UserError {
    UserError {
        code,
        message: message.into(),
    }
}

/// A new password, as `PASSWORD { 'clear' | 'md5<hash>' | DISABLE }` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NewPassword {
    /// A password in clear (checked against Redshift's rules).
    Clear(Secret),
    /// `md5` followed by the hex MD5 of password and user name.
    Md5(String),
    /// `DISABLE`: the user can only log in with temporary credentials.
    Disable,
}

#[derive(Debug, Clone)]
struct User {
    /// `md5(password || name)` in hex; `None`: password disabled.
    md5: Option<String>,
    superuser: bool,
}

#[derive(Debug, Clone)]
struct Issued {
    login_user: String,
    db_user: String,
    /// `md5(password || login_user)` in hex.
    md5: String,
    expires: SystemTime,
    database: Option<String>,
    groups: Vec<String>,
    request_id: String,
}

/// Temporary credentials as tests may see them (no password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCredential {
    /// The login name (`IAM:alice`).
    pub user: String,
    /// When the password stops working for new logins.
    pub expires: SystemTime,
    /// The database the call named, if any.
    pub database: Option<String>,
    /// The `DbGroups` the user joins.
    pub groups: Vec<String>,
    /// The request id of the issuing call.
    pub request_id: String,
}

/// What an API call asks to be issued.
#[derive(Debug, Clone)]
pub(crate) struct IssueRequest<'a> {
    /// One of [`TEMPORARY_PREFIXES`].
    pub(crate) prefix: &'static str,
    /// The database user.
    pub(crate) db_user: &'a str,
    /// Create the user (password disabled) if it does not exist.
    pub(crate) auto_create: bool,
    /// Groups to join at log-on.
    pub(crate) groups: Vec<String>,
    /// The database the credentials are for (`None`: any).
    pub(crate) database: Option<String>,
    /// How long they live.
    pub(crate) lifetime: Duration,
    /// The API request id.
    pub(crate) request_id: String,
}

/// Freshly issued credentials, for the API answer.
#[derive(Debug, Clone)]
pub(crate) struct NewCredentials {
    /// The login name.
    pub(crate) user: String,
    /// The password.
    pub(crate) password: Secret,
    /// Expiry.
    pub(crate) expires: SystemTime,
}

#[derive(Debug, Default)]
struct Inner {
    users: HashMap<String, User>,
    issued: Vec<Issued>,
}

/// The users and issued credentials of one emulator.
#[derive(Debug)]
pub struct Users {
    inner: Mutex<Inner>,
}

fn md5_hex(data: impl AsRef<[u8]>) -> String {
    format!("{:x}", md5::compute(data))
}

/// PostgreSQL's stored MD5 form: `md5(password || user)` in hex.
fn stored_md5(user: &str, password: &str) -> String {
    md5_hex(format!("{password}{user}"))
}

/// What the client answers to an MD5 challenge with `salt` for a user whose stored hash is `md5`.
fn md5_answer(md5: &str, salt: &[u8]) -> String {
    let mut data = md5.as_bytes().to_vec();
    data.extend_from_slice(salt);
    format!("md5{}", md5_hex(data))
}

/// Splits `IAM:alice` into its prefix and database user.
pub(crate) fn temporary_user(login: &str) -> Option<(&str, &str)> {
    let (prefix, user) = login.split_once(':')?;
    TEMPORARY_PREFIXES
        .contains(&prefix)
        .then_some((prefix, user))
}

fn password_failed(user: &str) -> LoginFailure {
    LoginFailure {
        code: SQLSTATE_INVALID_PASSWORD,
        message: format!("password authentication failed for user \"{user}\""),
    }
}

/// Redshift's password rules (emulator wording): 8 to 64 ASCII characters 33-126 except `'`,
/// `"`, `\`, `/` and `@`, with an upper-case letter, a lower-case letter and a digit.
fn check_password_rules(password: &str) -> Result<(), UserError> {
    let invalid = |m: &str| Err(user_error("22023", m));
    let len = password.chars().count();
    if !(8..=64).contains(&len) {
        return invalid("Password must be 8 to 64 characters long.");
    }
    if !password
        .chars()
        .all(|c| ('!'..='~').contains(&c) && !"'\"\\/@".contains(c))
    {
        return invalid(
            "Password may only contain printable ASCII characters other than ' \" \\ / @ and space.",
        );
    }
    if !password.chars().any(|c| c.is_ascii_uppercase()) {
        return invalid("Password must contain an uppercase letter.");
    }
    if !password.chars().any(|c| c.is_ascii_lowercase()) {
        return invalid("Password must contain a lowercase letter.");
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        return invalid("Password must contain a number.");
    }
    Ok(())
}

/// A random temporary password: 48 random bytes, base64 (Redshift's look alike).
fn random_password() -> String {
    let bytes: [u8; 48] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Users {
    /// The configured user, a superuser with `password`.
    pub(crate) fn new(superuser: &str, password: &Secret) -> Self {
        let mut inner = Inner::default();
        inner.users.insert(
            superuser.to_owned(),
            User {
                md5: Some(stored_md5(superuser, password.expose())),
                superuser: true,
            },
        );
        Self {
            inner: Mutex::new(inner),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // plain values: a panic elsewhere cannot leave them half-written
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True if the database user `name` exists.
    pub fn exists(&self, name: &str) -> bool {
        self.lock().users.contains_key(name)
    }

    /// The temporary credentials issued and not yet forgotten, oldest first.
    pub fn issued(&self) -> Vec<IssuedCredential> {
        self.lock()
            .issued
            .iter()
            .map(|c| IssuedCredential {
                user: c.login_user.clone(),
                expires: c.expires,
                database: c.database.clone(),
                groups: c.groups.clone(),
                request_id: c.request_id.clone(),
            })
            .collect()
    }

    /// Issues temporary credentials (creating the user first if asked and missing).
    pub(crate) fn issue(&self, request: &IssueRequest<'_>, now: SystemTime) -> NewCredentials {
        let login_user = format!("{}:{}", request.prefix, request.db_user);
        let password = random_password();
        let expires = now + request.lifetime;
        let mut inner = self.lock();
        inner.forget_expired(now);
        if request.auto_create && !inner.users.contains_key(request.db_user) {
            inner.users.insert(
                request.db_user.to_owned(),
                User {
                    md5: None,
                    superuser: false,
                },
            );
        }
        inner.issued.push(Issued {
            md5: stored_md5(&login_user, &password),
            login_user: login_user.clone(),
            db_user: request.db_user.to_owned(),
            expires,
            database: request.database.clone(),
            groups: request.groups.clone(),
            request_id: request.request_id.clone(),
        });
        NewCredentials {
            user: login_user,
            password: Secret::new(password),
            expires,
        }
    }

    /// Checks an MD5 login: `answer` is the client's response to the challenge with `salt`.
    pub(crate) fn verify(
        &self,
        user: &str,
        database: &str,
        salt: &[u8],
        answer: &str,
        now: SystemTime,
    ) -> Result<Login, LoginFailure> {
        let mut inner = self.lock();
        inner.forget_expired(now);
        let Some((_, db_user)) = temporary_user(user) else {
            return match inner.users.get(user) {
                Some(User { md5: Some(md5), .. }) if md5_answer(md5, salt) == answer => Ok(Login {
                    user: user.to_owned(),
                    db_user: user.to_owned(),
                    method: AuthMethod::Password,
                    groups: Vec::new(),
                    request_id: None,
                }),
                _ => Err(password_failed(user)),
            };
        };
        let matching: Vec<&Issued> = inner
            .issued
            .iter()
            .filter(|c| c.login_user == user && md5_answer(&c.md5, salt) == answer)
            .collect();
        let usable = matching
            .iter()
            .rev()
            .find(|c| c.expires > now && c.database.as_ref().is_none_or(|d| d == database));
        let Some(credential) = usable else {
            if matching.iter().any(|c| c.expires <= now) {
                return Err(LoginFailure {
                    code: SQLSTATE_INVALID_PASSWORD,
                    message: "IAM Authentication token has expired".to_owned(),
                });
            }
            return Err(password_failed(user));
        };
        if !inner.users.contains_key(db_user) {
            return Err(LoginFailure {
                code: SQLSTATE_INVALID_AUTHORIZATION,
                message: format!("user \"{db_user}\" does not exist"),
            });
        }
        Ok(Login {
            user: user.to_owned(),
            db_user: credential.db_user.clone(),
            method: AuthMethod::Iam,
            groups: credential.groups.clone(),
            request_id: Some(credential.request_id.clone()),
        })
    }

    /// `CREATE USER name PASSWORD ... [CREATEUSER]`, run by the database user `actor`.
    pub(crate) fn create(
        &self,
        actor: &str,
        name: &str,
        password: &NewPassword,
        superuser: Option<bool>,
    ) -> Result<(), UserError> {
        let mut inner = self.lock();
        if !inner.is_superuser(actor) {
            return Err(user_error("42501", "permission denied to create user"));
        }
        check_name(name)?;
        if inner.users.contains_key(name) {
            return Err(user_error(
                "42710",
                format!("user \"{name}\" already exists"),
            ));
        }
        let md5 = password_md5(name, password)?;
        inner.users.insert(
            name.to_owned(),
            User {
                md5,
                superuser: superuser.unwrap_or(false),
            },
        );
        Ok(())
    }

    /// `ALTER USER name [PASSWORD ...] [CREATEUSER | NOCREATEUSER]`, run by `actor`: a
    /// superuser may change anyone, other users only their own password.
    pub(crate) fn alter(
        &self,
        actor: &str,
        name: &str,
        password: Option<&NewPassword>,
        superuser: Option<bool>,
    ) -> Result<(), UserError> {
        let mut inner = self.lock();
        let actor_is_superuser = inner.is_superuser(actor);
        if !inner.users.contains_key(name) {
            return Err(user_error(
                "42704",
                format!("user \"{name}\" does not exist"),
            ));
        }
        if !actor_is_superuser && (actor != name || superuser.is_some()) {
            return Err(user_error("42501", "permission denied"));
        }
        let md5 = password.map(|p| password_md5(name, p)).transpose()?;
        let Some(user) = inner.users.get_mut(name) else {
            return Err(user_error(
                "42704",
                format!("user \"{name}\" does not exist"),
            ));
        };
        if let Some(md5) = md5 {
            user.md5 = md5;
        }
        if let Some(superuser) = superuser {
            user.superuser = superuser;
        }
        Ok(())
    }
}

impl Inner {
    fn forget_expired(&mut self, now: SystemTime) {
        self.issued.retain(|c| c.expires + FORGET_AFTER > now);
    }

    fn is_superuser(&self, name: &str) -> bool {
        self.users.get(name).is_some_and(|u| u.superuser)
    }
}

fn check_name(name: &str) -> Result<(), UserError> {
    if name.is_empty() || name.len() > 127 || name.eq_ignore_ascii_case("public") {
        return Err(user_error("42939", format!("invalid user name \"{name}\"")));
    }
    if temporary_user(name).is_some() {
        return Err(user_error(
            "42939",
            format!("user names starting with IAM:, IAMA: or IAMR: are reserved: \"{name}\""),
        ));
    }
    Ok(())
}

/// The stored hash of `password` for `name` (`None`: disabled).
fn password_md5(name: &str, password: &NewPassword) -> Result<Option<String>, UserError> {
    match password {
        NewPassword::Disable => Ok(None),
        NewPassword::Md5(hash) => Ok(Some(hash.to_ascii_lowercase())),
        NewPassword::Clear(clear) => {
            check_password_rules(clear.expose())?;
            Ok(Some(stored_md5(name, clear.expose())))
        }
    }
}

#[cfg(test)]
mod tests;
