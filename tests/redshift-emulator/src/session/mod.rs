//! One client session: the state a [`Session`] keeps, the handlers pgwire calls, and
//! CancelRequest.
//!
//! pgwire owns the client socket and decodes its messages; a [`Session`] is created per
//! connection and implements pgwire's startup, simple-query and extended-query handlers by
//! overriding their `on_*` entry points, one concern per file:
//!
//! * [`startup`]: database name check (3D000), MD5 password authentication against the
//!   emulator's users and temporary credentials ([`crate::auth`]), then one backend connection
//!   is opened for the session and the login is written to `stl_connection_log`;
//! * [`simple`]: a simple query is forwarded as is (after rewriting `version()`), backend
//!   messages relayed until ReadyForQuery; a query string that contains UNLOAD or EMULATOR
//!   statements is split and run statement by statement, stopping at the first error;
//! * [`extended`]: Parse/Bind/Describe/Execute/Close are forwarded to the backend's prepared
//!   statements and portals of the same names and their responses relayed at Flush/Sync; UNLOAD
//!   and EMULATOR statements become local statements and portals answered by the emulator, in
//!   order (pending backend responses are drained first), honouring "skip until Sync" after an
//!   error;
//! * [`relay`]: passing backend messages on to the client;
//! * [`local`]: the statements the emulator runs itself: UNLOAD, EMULATOR, and `CREATE USER` /
//!   `ALTER USER` against the emulator's users ([`crate::user_sql`]).
//!
//! Every handler marks the session busy while it runs ([`crate::activity`]), for the idle
//! session timeout.
//!
//! May import: `crate::activity`, `crate::auth`, `crate::backend`, `crate::config`,
//! `crate::control`, `crate::error`, `crate::history`, `crate::sql`, `crate::unload`,
//! `crate::user_sql`, `crate::users`.

mod extended;
mod local;
mod relay;
mod simple;
mod startup;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use pgwire::api::PgWireServerHandlers;
use pgwire::api::auth::{AuthDriver, StartupHandler};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::cancel::CancelRequest;
use tokio::sync::Notify;

use crate::activity::Activity;
use crate::auth::{self, LoggedIn, Md5Login};
use crate::backend::{Backend, BackendCancel, BackendError, BackendTarget};
use crate::config::{EmulatorConfig, FaultKnobs};
use crate::error::SQLSTATE_CONNECTION_FAILURE;
use crate::unload::CancelFlag;
use crate::users::{Login, Users};

use self::local::LocalStatement;
use self::startup::SessionParams;

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
}
