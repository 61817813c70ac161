//! One client session: authentication, relaying to the backend, and the statements the
//! emulator runs itself.
//!
//! pgwire owns the client socket and decodes its messages; a [`Session`] is created per
//! connection and implements pgwire's startup, simple-query and extended-query handlers by
//! overriding their `on_*` entry points:
//!
//! * start-up: database name check (3D000), MD5 password authentication against the emulator's
//!   users and temporary credentials ([`crate::auth`]), then one backend connection is opened
//!   for the session and the login is written to `stl_connection_log`;
//! * simple query: forwarded as is (after rewriting `version()`), backend messages relayed until
//!   ReadyForQuery; a query string that contains UNLOAD or EMULATOR statements is split and run
//!   statement by statement, stopping at the first error;
//! * extended query: Parse/Bind/Describe/Execute/Close are forwarded to the backend's prepared
//!   statements and portals of the same names and their responses relayed at Flush/Sync; UNLOAD
//!   and EMULATOR statements become local statements and portals answered by the emulator, in
//!   order (pending backend responses are drained first), honouring "skip until Sync" after an
//!   error;
//! * `CREATE USER` / `ALTER USER` run against the emulator's users ([`crate::user_sql`]).
//!
//! Every handler marks the session busy while it runs ([`crate::activity`]), for the idle
//! session timeout.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Sink, SinkExt};
use pgwire::api::auth::mechanism::AuthMechanismFactory;
use pgwire::api::auth::{
    AuthDriver, AuthOutcome, ServerParameterProvider, StartupHandler, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::portal::Portal;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::Response;
use pgwire::api::stmt::NoopQueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::copy::CopyFail;
use pgwire::messages::data::{NoData, ParameterDescription};
use pgwire::messages::extendedquery::{
    Bind, BindComplete, Close, CloseComplete, Describe, Execute, Flush, Parse, ParseComplete,
    Sync as PgSync, TARGET_TYPE_BYTE_STATEMENT,
};
use pgwire::messages::response::{CommandComplete, ReadyForQuery};
use pgwire::messages::simplequery::Query;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::sync::Notify;

use crate::activity::Activity;
use crate::auth::{self, LoggedIn, Md5Login};
use crate::backend::{Backend, BackendCancel, BackendError, BackendTarget};
use crate::config::{EmulatorConfig, FaultKnobs};
use crate::control;
use crate::error::{SQLSTATE_CONNECTION_FAILURE, StatementError};
use crate::history::{UnloadProgress, UnloadStart};
use crate::sql::{StatementClass, classify, split_statements};
use crate::unload::{self, CancelFlag, UnloadEnv};
use crate::user_sql;
use crate::users::{Login, Users};

/// State shared by all sessions of one emulator.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: EmulatorConfig,
    pub(crate) target: BackendTarget,
    pub(crate) knobs: FaultKnobs,
    pub(crate) cancels: CancelRegistry,
    pub(crate) unloads: crate::UnloadStats,
    /// Writes `sys_query_history` / `sys_unload_history` (and `stl_connection_log`).
    pub(crate) history: crate::history::History,
    /// The users and the temporary credentials issued.
    pub(crate) users: Users,
}

/// Sessions by the (pid, secret key) the emulator gave their clients, for CancelRequest.
#[derive(Debug, Default)]
pub(crate) struct CancelRegistry {
    map: Mutex<HashMap<(i32, Bytes), Weak<CancelTarget>>>,
}

impl CancelRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(i32, Bytes), Weak<CancelTarget>>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a CancelRequest acts on: the running UNLOAD and the backend connection.
#[derive(Debug, Default)]
pub(crate) struct CancelTarget {
    flag: CancelFlag,
    backend: Mutex<Option<BackendCancel>>,
}

/// The pgwire cancel handler: finds the session and cancels it.
#[derive(Debug)]
pub(crate) struct Canceller {
    pub(crate) shared: Arc<Shared>,
}

#[async_trait]
impl CancelHandler for Canceller {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let key = (request.pid, request.secret_key.to_bytes());
        let target = self.shared.cancels.lock().get(&key).and_then(Weak::upgrade);
        if let Some(target) = target {
            target.flag.cancel();
            let backend = target
                .backend
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            if let Some(backend) = backend {
                backend.cancel().await;
            }
        }
    }
}

/// A statement or portal the emulator answers itself.
#[derive(Debug, Clone)]
enum LocalStatement {
    Unload(String),
    Control(String),
    User(String),
}

#[derive(Debug, Default)]
struct SessionState {
    backend: Option<Backend>,
    local_statements: HashMap<String, LocalStatement>,
    local_portals: HashMap<String, LocalStatement>,
    /// forwarded extended-protocol messages whose responses have not been relayed yet
    pending: usize,
    /// after an error in the extended protocol: ignore everything until Sync
    skipping: bool,
}

/// Server parameters reported at start-up: the backend's, with Redshift's server version.
#[derive(Debug, Clone, Default)]
struct SessionParams(Arc<Mutex<BTreeMap<String, String>>>);

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

/// One client connection.
pub(crate) struct Session {
    shared: Arc<Shared>,
    state: tokio::sync::Mutex<SessionState>,
    params: SessionParams,
    driver: AuthDriver<SessionParams, Login>,
    md5: Md5Login,
    cancel: Arc<CancelTarget>,
    cancel_key: Mutex<Option<(i32, Bytes)>>,
    /// notified to make the connection task drop the client socket
    pub(crate) dropped: Notify,
    /// Busy or idle since when (the idle session timeout).
    pub(crate) activity: Activity,
    /// The login, once authenticated.
    logged_in: Mutex<Option<LoggedIn>>,
    /// The session's id in `stl_connection_log.sessionid`.
    session_id: String,
}

impl Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let key = self
            .cancel_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(key) = key {
            self.shared.cancels.lock().remove(&key);
        }
    }
}

/// The handlers pgwire uses for one connection.
#[derive(Debug)]
pub(crate) struct SessionHandlers {
    pub(crate) session: Arc<Session>,
    pub(crate) canceller: Arc<Canceller>,
}

impl PgWireServerHandlers for SessionHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.session)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.session)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.session)
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::clone(&self.canceller)
    }
}

fn fatal(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_owned(),
        code.to_owned(),
        message.into(),
    )))
}

fn backend_lost(e: BackendError) -> PgWireError {
    fatal(
        SQLSTATE_CONNECTION_FAILURE,
        format!("lost the connection to the backend PostgreSQL: {e}"),
    )
}

fn no_backend() -> PgWireError {
    fatal(
        SQLSTATE_CONNECTION_FAILURE,
        "the session has no backend connection",
    )
}

/// How far to relay backend messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    /// up to and including ReadyForQuery (`forward_ready` says whether to pass it on)
    Ready { forward_ready: bool },
    /// until every pending extended-protocol message has its response
    PendingDone,
}

impl Session {
    /// A new session of the emulator `shared`.
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let params = SessionParams::default();
        Self {
            driver: AuthDriver::new(params.clone()),
            md5: Md5Login {
                shared: Arc::clone(&shared),
            },
            shared,
            state: tokio::sync::Mutex::new(SessionState::default()),
            params,
            cancel: Arc::new(CancelTarget::default()),
            cancel_key: Mutex::new(None),
            dropped: Notify::new(),
            activity: Activity::default(),
            logged_in: Mutex::new(None),
            session_id: crate::awsapi::new_request_id(),
        }
    }

    /// Writes the end of an authenticated session to `stl_connection_log`.
    pub(crate) async fn log_end(&self) {
        let logged_in = self
            .logged_in
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(logged_in) = logged_in {
            auth::log_session(&self.shared, &logged_in, &self.session_id, true).await;
        }
    }

    /// The database user of the session (the configured user before authentication).
    fn db_user(&self) -> String {
        self.logged_in
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or_else(
                || self.shared.config.user.clone(),
                |l| l.login.db_user.clone(),
            )
    }

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

    /// Relays backend messages to the client. Returns true if an ErrorResponse was relayed.
    async fn relay<C>(client: &mut C, state: &mut SessionState, until: Until) -> PgWireResult<bool>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let backend = state.backend.as_mut().ok_or_else(no_backend)?;
        let mut saw_error = false;
        loop {
            if until == Until::PendingDone && state.pending == 0 {
                return Ok(saw_error);
            }
            let msg = backend.recv().await.map_err(backend_lost)?;
            match msg {
                PgWireBackendMessage::ReadyForQuery(r) => {
                    backend.status = r.status;
                    client.set_transaction_status(r.status);
                    state.pending = 0;
                    if let Until::Ready {
                        forward_ready: true,
                    } = until
                    {
                        client.feed(PgWireBackendMessage::ReadyForQuery(r)).await?;
                    }
                    return Ok(saw_error);
                }
                PgWireBackendMessage::CopyInResponse(_)
                | PgWireBackendMessage::CopyBothResponse(_) => {
                    // Redshift has no COPY FROM STDIN; make the backend fail the COPY
                    backend
                        .send(PgWireFrontendMessage::CopyFail(CopyFail::new(
                            "COPY FROM STDIN is not supported by the Redshift emulator".to_owned(),
                        )))
                        .await
                        .map_err(backend_lost)?;
                }
                PgWireBackendMessage::ErrorResponse(e) => {
                    saw_error = true;
                    if until == Until::PendingDone {
                        state.pending = 0;
                        state.skipping = true;
                    }
                    client.feed(PgWireBackendMessage::ErrorResponse(e)).await?;
                }
                other => {
                    let terminal = matches!(
                        other,
                        PgWireBackendMessage::ParseComplete(_)
                            | PgWireBackendMessage::BindComplete(_)
                            | PgWireBackendMessage::CloseComplete(_)
                            | PgWireBackendMessage::NoData(_)
                            | PgWireBackendMessage::RowDescription(_)
                            | PgWireBackendMessage::CommandComplete(_)
                            | PgWireBackendMessage::EmptyQueryResponse(_)
                            | PgWireBackendMessage::PortalSuspended(_)
                    );
                    if terminal && until == Until::PendingDone {
                        state.pending = state.pending.saturating_sub(1);
                    }
                    client.feed(other).await?;
                }
            }
        }
    }

    /// Relays the responses to every forwarded extended-protocol message, so the emulator can
    /// answer a local message in order.
    async fn drain<C>(client: &mut C, state: &mut SessionState) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if state.pending == 0 || state.skipping {
            return Ok(());
        }
        let backend = state.backend.as_mut().ok_or_else(no_backend)?;
        backend
            .send(PgWireFrontendMessage::Flush(Flush::new()))
            .await
            .map_err(backend_lost)?;
        Self::relay(client, state, Until::PendingDone).await?;
        Ok(())
    }

    /// Forwards one extended-protocol message whose response is relayed later.
    async fn forward(state: &mut SessionState, msg: PgWireFrontendMessage) -> PgWireResult<()> {
        let backend = state.backend.as_mut().ok_or_else(no_backend)?;
        backend.feed(msg).await.map_err(backend_lost)?;
        state.pending += 1;
        Ok(())
    }

    /// Runs an UNLOAD or EMULATOR statement; returns the command tag.
    async fn run_local(
        &self,
        state: &mut SessionState,
        stmt: &LocalStatement,
    ) -> Result<&'static str, StatementError> {
        match stmt {
            LocalStatement::User(text) => {
                let statement = user_sql::parse_user_statement(text)?;
                let actor = self.db_user();
                let users = &self.shared.users;
                let done = if statement.create {
                    users.create(
                        &actor,
                        &statement.name,
                        statement
                            .password
                            .as_ref()
                            .unwrap_or(&crate::users::NewPassword::Disable),
                        statement.superuser,
                    )
                } else {
                    users.alter(
                        &actor,
                        &statement.name,
                        statement.password.as_ref(),
                        statement.superuser,
                    )
                };
                done.map_err(|e| StatementError::coded(e.code, e.message))?;
                tracing::info!(user = %statement.name, by = %actor, "{}", statement.tag());
                Ok(statement.tag())
            }
            LocalStatement::Control(text) => {
                let control = control::parse_control(text)?;
                control::apply(&control, &self.shared.knobs, &self.shared.config.faults);
                tracing::info!(?control, "emulator knobs changed");
                Ok("EMULATOR")
            }
            LocalStatement::Unload(text) => {
                let _running = self.shared.unloads.enter(text);
                let faults = self.shared.knobs.get();
                self.cancel.flag.reset();
                if faults.unload_delay_ms > 0 {
                    self.cancel
                        .flag
                        .sleep(std::time::Duration::from_millis(faults.unload_delay_ms))
                        .await?;
                }
                if faults.drop_connection_on_unload {
                    tracing::info!(
                        "dropping the client connection during UNLOAD (drop_connection_on_unload)"
                    );
                    self.dropped.notify_one();
                    // the connection task drops this future together with the socket
                    std::future::pending::<()>().await;
                }
                let backend = state.backend.as_mut().ok_or_else(|| {
                    StatementError::BackendLost("no backend connection".to_owned())
                })?;
                let progress = Arc::new(UnloadProgress::default());
                let env = UnloadEnv {
                    config: &self.shared.config,
                    faults,
                    cancel: &self.cancel.flag,
                    progress: Arc::clone(&progress),
                };
                // a syntax error leaves pg_last_unload_count() as it was (and is not recorded)
                let prepared = unload::prepare(text)?;
                let location = prepared.location();
                let start = UnloadStart {
                    text,
                    location: &location,
                    file_format: prepared.file_format(),
                    database: &self.shared.config.database,
                    session_id: backend.process_id(),
                };
                let record = self.shared.history.begin(&start, progress).await;
                let result = unload::execute(backend, &prepared, &env).await;
                if let Some(record) = record {
                    record.finish(&result).await;
                }
                if let Some(rows) = unload::count_after(&result) {
                    unload::record_count(backend, rows).await?;
                }
                result.map(|_| "UNLOAD")
            }
        }
    }

    /// Sends the result of a local statement: CommandComplete, or ErrorResponse. Returns false
    /// on error (fatal errors end the session).
    async fn report<C>(
        client: &mut C,
        result: Result<&'static str, StatementError>,
    ) -> PgWireResult<bool>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match result {
            Ok(tag) => {
                client
                    .feed(PgWireBackendMessage::CommandComplete(CommandComplete::new(
                        tag.to_owned(),
                    )))
                    .await?;
                Ok(true)
            }
            Err(e) if e.is_fatal() => Err(e.into()),
            Err(e) => {
                tracing::info!(error = %e, "statement failed");
                client
                    .feed(PgWireBackendMessage::ErrorResponse(
                        e.into_error_info().into(),
                    ))
                    .await?;
                Ok(false)
            }
        }
    }
}

fn local_statement(class: StatementClass, text: &str) -> Result<LocalStatement, String> {
    match class {
        StatementClass::Unload => Ok(LocalStatement::Unload(text.to_owned())),
        StatementClass::Control => Ok(LocalStatement::Control(text.to_owned())),
        StatementClass::User => Ok(LocalStatement::User(text.to_owned())),
        StatementClass::Forward(sql) => Err(sql),
    }
}

impl Session {
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

#[async_trait]
impl SimpleQueryHandler for Session {
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _busy = self.activity.enter();
        let mut guard = self.state.lock().await;
        let state = &mut *guard;
        let text = query.query;
        let statements = split_statements(&text).ok();
        let classes: Option<Vec<StatementClass>> = statements
            .as_ref()
            .map(|s| s.iter().map(|st| classify(&st.text)).collect());

        let has_local = classes
            .as_ref()
            .is_some_and(|c| c.iter().any(|c| !matches!(c, StatementClass::Forward(_))));
        if !has_local {
            // forward the whole string, rewritten only if a version() call was found
            let rewritten = match (&statements, &classes) {
                (Some(stmts), Some(classes))
                    if stmts
                        .iter()
                        .zip(classes)
                        .any(|(s, c)| matches!(c, StatementClass::Forward(t) if *t != s.text)) =>
                {
                    classes
                        .iter()
                        .filter_map(|c| match c {
                            StatementClass::Forward(t) => Some(t.as_str()),
                            _ => None,
                        })
                        .collect::<Vec<_>>()
                        .join(";\n")
                }
                _ => text,
            };
            let backend = state.backend.as_mut().ok_or_else(no_backend)?;
            backend
                .send(PgWireFrontendMessage::Query(Query::new(rewritten)))
                .await
                .map_err(backend_lost)?;
            Self::relay(
                client,
                state,
                Until::Ready {
                    forward_ready: true,
                },
            )
            .await?;
            client.flush().await?;
            return Ok(());
        }

        let (Some(statements), Some(classes)) = (statements, classes) else {
            return Ok(());
        };
        for (stmt, class) in statements.iter().zip(classes) {
            match local_statement(class, &stmt.text) {
                Err(sql) => {
                    let backend = state.backend.as_mut().ok_or_else(no_backend)?;
                    backend
                        .send(PgWireFrontendMessage::Query(Query::new(sql)))
                        .await
                        .map_err(backend_lost)?;
                    if Self::relay(
                        client,
                        state,
                        Until::Ready {
                            forward_ready: false,
                        },
                    )
                    .await?
                    {
                        break;
                    }
                }
                Ok(local) => {
                    let result = self.run_local(state, &local).await;
                    if !Self::report(client, result).await? {
                        break;
                    }
                }
            }
        }
        let status = state.backend.as_ref().ok_or_else(no_backend)?.status;
        client.set_transaction_status(status);
        client
            .feed(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                status,
            )))
            .await?;
        client.flush().await?;
        Ok(())
    }

    async fn do_query<C>(&self, _client: &mut C, _query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // on_query is overridden: queries never reach pgwire's own execution path
        Err(PgWireError::NotReadyForQuery)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Session {
    type Statement = String;
    type QueryParser = NoopQueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::new(NoopQueryParser)
    }

    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _busy = self.activity.enter();
        let mut guard = self.state.lock().await;
        let state = &mut *guard;
        if state.skipping {
            return Ok(());
        }
        let name = message.name.clone().unwrap_or_default();
        match local_statement(classify(&message.query), &message.query) {
            Err(sql) => {
                state.local_statements.remove(&name);
                let parse = Parse::new(message.name, sql, message.type_oids);
                Self::forward(state, PgWireFrontendMessage::Parse(parse)).await
            }
            Ok(local) => {
                Self::drain(client, state).await?;
                if state.skipping {
                    return Ok(());
                }
                state.local_statements.insert(name, local);
                client
                    .feed(PgWireBackendMessage::ParseComplete(ParseComplete::new()))
                    .await?;
                Ok(())
            }
        }
    }

    async fn on_bind<C>(&self, client: &mut C, message: Bind) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _busy = self.activity.enter();
        let mut guard = self.state.lock().await;
        let state = &mut *guard;
        if state.skipping {
            return Ok(());
        }
        let statement = message.statement_name.clone().unwrap_or_default();
        let portal = message.portal_name.clone().unwrap_or_default();
        match state.local_statements.get(&statement).cloned() {
            None => {
                state.local_portals.remove(&portal);
                Self::forward(state, PgWireFrontendMessage::Bind(message)).await
            }
            Some(local) => {
                Self::drain(client, state).await?;
                if state.skipping {
                    return Ok(());
                }
                state.local_portals.insert(portal, local);
                client
                    .feed(PgWireBackendMessage::BindComplete(BindComplete::new()))
                    .await?;
                Ok(())
            }
        }
    }

    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _busy = self.activity.enter();
        let mut guard = self.state.lock().await;
        let state = &mut *guard;
        if state.skipping {
            return Ok(());
        }
        let name = message.name.clone().unwrap_or_default();
        let is_statement = message.target_type == TARGET_TYPE_BYTE_STATEMENT;
        let local = if is_statement {
            state.local_statements.contains_key(&name)
        } else {
            state.local_portals.contains_key(&name)
        };
        if !local {
            return Self::forward(state, PgWireFrontendMessage::Describe(message)).await;
        }
        Self::drain(client, state).await?;
        if state.skipping {
            return Ok(());
        }
        if is_statement {
            client
                .feed(PgWireBackendMessage::ParameterDescription(
                    ParameterDescription::new(vec![]),
                ))
                .await?;
        }
        client
            .feed(PgWireBackendMessage::NoData(NoData::new()))
            .await?;
        Ok(())
    }

    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _busy = self.activity.enter();
        let mut guard = self.state.lock().await;
        let state = &mut *guard;
        if state.skipping {
            return Ok(());
        }
        let portal = message.name.clone().unwrap_or_default();
        let Some(local) = state.local_portals.get(&portal).cloned() else {
            return Self::forward(state, PgWireFrontendMessage::Execute(message)).await;
        };
        Self::drain(client, state).await?;
        if state.skipping {
            return Ok(());
        }
        let result = self.run_local(state, &local).await;
        if !Self::report(client, result).await? {
            state.skipping = true;
        }
        Ok(())
    }

    async fn on_close<C>(&self, client: &mut C, message: Close) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _busy = self.activity.enter();
        let mut guard = self.state.lock().await;
        let state = &mut *guard;
        if state.skipping {
            return Ok(());
        }
        let name = message.name.clone().unwrap_or_default();
        let removed = if message.target_type == TARGET_TYPE_BYTE_STATEMENT {
            state.local_statements.remove(&name)
        } else {
            state.local_portals.remove(&name)
        };
        if removed.is_none() {
            return Self::forward(state, PgWireFrontendMessage::Close(message)).await;
        }
        Self::drain(client, state).await?;
        if state.skipping {
            return Ok(());
        }
        client
            .feed(PgWireBackendMessage::CloseComplete(CloseComplete::new()))
            .await?;
        Ok(())
    }

    async fn on_flush<C>(&self, client: &mut C, _message: Flush) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _busy = self.activity.enter();
        let mut guard = self.state.lock().await;
        Self::drain(client, &mut guard).await?;
        client.flush().await?;
        Ok(())
    }

    async fn on_sync<C>(&self, client: &mut C, _message: PgSync) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _busy = self.activity.enter();
        let mut guard = self.state.lock().await;
        let state = &mut *guard;
        let backend = state.backend.as_mut().ok_or_else(no_backend)?;
        backend
            .send(PgWireFrontendMessage::Sync(PgSync::new()))
            .await
            .map_err(backend_lost)?;
        Self::relay(
            client,
            state,
            Until::Ready {
                forward_ready: true,
            },
        )
        .await?;
        state.pending = 0;
        state.skipping = false;
        // the unnamed portal ends with the transaction-less sync
        state.local_portals.remove("");
        client.flush().await?;
        Ok(())
    }

    async fn do_query<C>(
        &self,
        _client: &mut C,
        _portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // on_execute is overridden: portals never reach pgwire's own execution path
        Err(PgWireError::NotReadyForQuery)
    }
}
