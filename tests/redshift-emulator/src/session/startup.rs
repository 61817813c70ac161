//! Session start-up: the database name check, MD5 authentication through pgwire's
//! [`AuthDriver`](pgwire::api::auth::AuthDriver) against the emulator's users and temporary
//! credentials ([`crate::auth`]), then the session's backend connection, the server parameters
//! the client sees (the backend's, with Redshift's `server_version`), the `stl_connection_log`
//! rows of the login, and the session's cancel key.
//!
//! May import: `super`, `crate::auth`, `crate::backend`, `crate::error`, `crate::users`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::ClientInfo;
use pgwire::api::auth::mechanism::AuthMechanismFactory;
use pgwire::api::auth::{
    AuthOutcome, ServerParameterProvider, StartupHandler, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::{Session, fatal};
use crate::auth::{self, LoggedIn};
use crate::backend::{Backend, BackendError};
use crate::error::SQLSTATE_CONNECTION_FAILURE;
use crate::users::Login;

/// Server parameters reported at start-up: the backend's, with Redshift's server version.
#[derive(Debug, Clone, Default)]
pub(super) struct SessionParams(Arc<Mutex<BTreeMap<String, String>>>);

impl ServerParameterProvider for SessionParams {
    fn server_parameters<C>(&self, _client: &C) -> Option<HashMap<String, String>>
    where
        C: ClientInfo,
    {
        let mut params: HashMap<String, String> = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .into_iter()
            .collect();
        params.insert("server_version".to_owned(), "8.0.2".to_owned());
        Some(params)
    }
}

impl Session {
    /// After authentication: connect the backend, then finish the start-up.
    async fn finish_startup<C>(
        &self,
        client: &mut C,
        final_message: Option<pgwire::messages::startup::Authentication>,
        login: Option<Login>,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let forwarded: BTreeMap<String, String> = client
            .metadata()
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "user" | "database" | "replication"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let backend = Backend::connect(&self.shared.target, &forwarded)
            .await
            .map_err(|e| match e {
                BackendError::Server(info) => PgWireError::UserError(info),
                other => fatal(
                    SQLSTATE_CONNECTION_FAILURE,
                    format!(
                        "the Redshift emulator cannot reach its backend PostgreSQL at {}: {other}",
                        self.shared.target.address()
                    ),
                ),
            })?;
        *self.params.0.lock().unwrap_or_else(PoisonError::into_inner) = backend.params.clone();
        *self
            .cancel
            .backend
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = backend.cancel_handle();
        client.set_transaction_status(backend.status);
        let pid = backend.process_id();
        self.state.lock().await.backend = Some(backend);
        if let Some(login) = login {
            let logged_in = LoggedIn {
                login,
                client: auth::Client::of(client),
                pid,
                since: tokio::time::Instant::now(),
            };
            auth::log_session(&self.shared, &logged_in, &self.session_id, false).await;
            *self
                .logged_in
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(logged_in);
        }
        self.driver
            .complete_authentication(client, final_message)
            .await?;
        let (pid, secret) = client.pid_and_secret_key();
        let key = (pid, secret.to_bytes());
        self.shared
            .cancels
            .lock()
            .insert(key.clone(), Arc::downgrade(&self.cancel));
        *self
            .cancel_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(key);
        Ok(())
    }

    /// Continues the start-up after one step of the handshake; a refused login is logged.
    async fn authentication_step<C>(
        &self,
        client: &mut C,
        outcome: PgWireResult<AuthOutcome<Login>>,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match outcome {
            Ok(AuthOutcome::InProgress) => Ok(()),
            Ok(AuthOutcome::Authenticated {
                final_message,
                identity,
            }) => self.finish_startup(client, final_message, identity).await,
            Err(e) => {
                if matches!(e, PgWireError::UserError(_)) {
                    let who = auth::Client::of(client);
                    auth::log_failure(&self.shared, &who, &self.session_id, &e).await;
                }
                Err(e)
            }
        }
    }
}

#[async_trait]
impl StartupHandler for Session {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                let user = client
                    .metadata()
                    .get("user")
                    .cloned()
                    .ok_or(PgWireError::UserNameRequired)?;
                let database = client.metadata().get("database").cloned().unwrap_or(user);
                if database != self.shared.config.database {
                    return Err(fatal(
                        "3D000",
                        format!("database \"{database}\" does not exist"),
                    ));
                }
                let outcome = self
                    .driver
                    .begin_authentication(client, self.md5.create())
                    .await;
                self.authentication_step(client, outcome).await
            }
            PgWireFrontendMessage::PasswordMessageFamily(message) => {
                let outcome = self.driver.advance_authentication(client, message).await;
                self.authentication_step(client, outcome).await
            }
            _ => Ok(()),
        }
    }
}
