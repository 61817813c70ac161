//! Client authentication: pgwire's MD5 handshake, checked against the emulator's users and
//! issued temporary credentials ([`crate::users`]), and the connection-log rows of each login
//! ([`crate::connlog`]).
//!
//! MD5 because every client the project uses speaks it (tokio-postgres, psycopg, the Redshift
//! drivers) and because the emulator can check an MD5 answer against several candidate passwords
//! without ever holding one in clear: each user keeps `md5(password || user)`. A fresh random
//! salt is drawn per connection.
//!
//! May import: `crate::session` (the shared state), `crate::users`, `crate::connlog`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use pgwire::api::ClientInfo;
use pgwire::api::auth::mechanism::{AuthMechanism, AuthMechanismFactory, AuthState};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::{Authentication, PasswordMessageFamily};
use tokio::time::Instant;

use crate::connlog::{self, ConnectionEvent};
use crate::session::Shared;
use crate::users::{AuthMethod, Login, temporary_user};

/// Creates an MD5 handshake per connection.
#[derive(Debug)]
pub(crate) struct Md5Login {
    pub(crate) shared: Arc<Shared>,
}

impl AuthMechanismFactory<Login> for Md5Login {
    fn create(&self) -> Box<dyn AuthMechanism<Login>> {
        Box::new(Md5Handshake {
            shared: Arc::clone(&self.shared),
            salt: rand::random(),
        })
    }
}

struct Md5Handshake {
    shared: Arc<Shared>,
    salt: [u8; 4],
}

#[async_trait]
impl AuthMechanism<Login> for Md5Handshake {
    async fn begin(
        &mut self,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> PgWireResult<AuthState<Login>> {
        Ok(AuthState::InProgress(Authentication::MD5Password(
            self.salt.to_vec(),
        )))
    }

    async fn next(
        &mut self,
        client: &(dyn ClientInfo + Send + Sync),
        message: PasswordMessageFamily,
    ) -> PgWireResult<AuthState<Login>> {
        let answer = message.into_password()?.password;
        let metadata = client.metadata();
        let user = metadata.get("user").map(String::as_str).unwrap_or_default();
        let database = metadata.get("database").map(String::as_str).unwrap_or(user);
        Ok(
            match self
                .shared
                .users
                .verify(user, database, &self.salt, &answer, SystemTime::now())
            {
                Ok(login) => AuthState::Ok {
                    final_message: None,
                    identity: Some(login),
                },
                Err(failure) => AuthState::Failed(PgWireError::UserError(Box::new(
                    ErrorInfo::new("FATAL".to_owned(), failure.code.to_owned(), failure.message),
                ))),
            },
        )
    }
}

/// What a client said about itself at start-up.
#[derive(Debug, Clone, Default)]
pub(crate) struct Client {
    /// Its address.
    pub(crate) peer: Option<SocketAddr>,
    /// The user name.
    pub(crate) user: String,
    /// The database.
    pub(crate) database: String,
    /// `application_name`.
    pub(crate) application_name: Option<String>,
}

impl Client {
    /// Reads the start-up parameters pgwire saved.
    pub(crate) fn of(client: &(impl ClientInfo + ?Sized)) -> Self {
        let metadata = client.metadata();
        let user = metadata.get("user").cloned().unwrap_or_default();
        Self {
            peer: Some(client.socket_addr()),
            database: metadata.get("database").cloned().unwrap_or(user.clone()),
            user,
            application_name: metadata.get("application_name").cloned(),
        }
    }
}

/// A logged-in session, for its connection-log rows and its privileges.
#[derive(Debug, Clone)]
pub(crate) struct LoggedIn {
    pub(crate) login: Login,
    pub(crate) client: Client,
    /// The backend process id.
    pub(crate) pid: i32,
    pub(crate) since: Instant,
}

/// Records a refused login.
pub(crate) async fn log_failure(
    shared: &Shared,
    client: &Client,
    session_id: &str,
    error: &PgWireError,
) {
    let reason = match error {
        PgWireError::UserError(info) => info.message.clone(),
        other => other.to_string(),
    };
    let method = if temporary_user(&client.user).is_some() {
        AuthMethod::Iam
    } else {
        AuthMethod::Password
    };
    tracing::info!(user = %client.user, %reason, "login refused");
    connlog::record(
        &shared.history,
        &ConnectionEvent {
            event: connlog::AUTHENTICATION_FAILURE,
            peer: client.peer,
            database: &client.database,
            user: &client.user,
            method,
            pid: None,
            duration_micros: None,
            iam_request_id: None,
            application_name: client.application_name.as_deref(),
            session_id,
            reason: Some(&reason),
            groups: &[],
        },
    )
    .await;
}

/// Records a login (`authenticated`) or the end of a session (`disconnecting session`).
pub(crate) async fn log_session(shared: &Shared, s: &LoggedIn, session_id: &str, ending: bool) {
    connlog::record(
        &shared.history,
        &ConnectionEvent {
            event: if ending {
                connlog::DISCONNECTING
            } else {
                connlog::AUTHENTICATED
            },
            peer: s.client.peer,
            database: &s.client.database,
            user: &s.client.user,
            method: s.login.method,
            pid: Some(s.pid),
            duration_micros: ending
                .then(|| s.since.elapsed().as_micros().min(i64::MAX as u128) as i64),
            iam_request_id: s.login.request_id.as_deref(),
            application_name: s.client.application_name.as_deref(),
            session_id,
            reason: None,
            groups: &s.login.groups,
        },
    )
    .await;
}
