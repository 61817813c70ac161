//! A Redshift emulator for tests: the PostgreSQL wire protocol in front of a real PostgreSQL,
//! behaving like Amazon Redshift for what the redshift-flight server uses.
//!
//! * **Connections**: MD5 password authentication against the emulator's users and the temporary
//!   credentials its AWS API issued (a wrong password gets SQLSTATE 28P01, an expired temporary
//!   one 28P01 `IAM Authentication token has expired`), one configured database (others get
//!   3D000). Each client session has its own backend PostgreSQL connection, so transactions and
//!   session settings behave. Sessions idle longer than `idle_session_seconds` are closed.
//! * **Users** ([`users`]): the configured user is a superuser; `CREATE USER` / `ALTER USER ...
//!   PASSWORD` are run by the emulator (a password rotation changes new logins only).
//! * **The AWS API double** (`--aws-api-listen`): Redshift `GetClusterCredentials` /
//!   `GetClusterCredentialsWithIAM` (Query protocol, XML) and Redshift Serverless
//!   `GetCredentials` (JSON 1.1), with AWS's errors and SigV4 header checks (signatures are not
//!   verified). Their passwords log in as `IAM:<user>`, `IAMA:<user>` or `IAMR:<user>` until they
//!   expire.
//! * **`stl_connection_log`** records every login attempt (`authenticated` /
//!   `authentication failure` with its `reason`, `authmethod` `password` or `IAM`) and every
//!   disconnection, never a password.
//! * **Ordinary statements** are relayed to PostgreSQL message by message, simple and extended
//!   protocol alike, so rows, types, formats, command tags and errors (with their SQLSTATE) come
//!   back unchanged. `version()` reports a Redshift version string.
//! * **`UNLOAD ('select ...') TO 's3://bucket/prefix' ... FORMAT AS PARQUET`** runs the SELECT
//!   through a server-side cursor and writes SNAPPY Parquet to S3 with Redshift's file layout,
//!   MANIFEST [VERBOSE], MAXFILESIZE splits and Redshift's rejections (see [`unload`]), SSE-S3
//!   by default and SSE-KMS with `KMS_KEY_ID ... ENCRYPTED`; a bucket in another region than the
//!   UNLOAD's (`REGION`, else the cluster's) fails with Redshift's `PermanentRedirect` error.
//! * **`pg_last_unload_count()`** returns the rows the session's last UNLOAD unloaded, as on
//!   Redshift.
//! * **Compatibility objects** (`super`, `varbyte`, `geometry`, `hllsketch` domains, a few
//!   functions, `svv_table_info`) are created in the backend at start-up (see [`compat`]).
//! * **`sys_query_history` / `sys_unload_history`** show every UNLOAD while it runs, its
//!   `unloaded_rows` growing as it writes, and how it ended, as Redshift's monitoring views do
//!   (see [`history`]).
//!
//! # Fault knobs
//!
//! Global to one emulator, set at start-up ([`EmulatorConfig::faults`], flags, environment) and
//! at run time through the emulator itself:
//!
//! | knob | statement | effect |
//! |---|---|---|
//! | `unload_delay_ms` | `EMULATOR SET unload_delay_ms = 500` | sleep before each UNLOAD (a CancelRequest interrupts it) |
//! | `fetch_delay_ms` | `EMULATOR SET fetch_delay_ms = 200` | sleep after each FETCH of `fetch_rows` rows an UNLOAD writes: a slow, progressive UNLOAD (a CancelRequest interrupts it) |
//! | `fail_after_files` | `EMULATOR SET fail_after_files = 2` | fail each UNLOAD with XX000 once that many data files are written; the files stay, no manifest (`none` disables) |
//! | `drop_connection_on_unload` | `EMULATOR SET drop_connection_on_unload = true` | close the client's TCP connection when an UNLOAD starts (after the delay) |
//! | `skip_manifest` | `EMULATOR SET skip_manifest = true` | write the data files but no manifest, report success |
//! | `delete_manifest` | `EMULATOR SET delete_manifest = true` | write the manifest, delete it, report success |
//! | `int96_timestamps` | `EMULATOR SET int96_timestamps = true` | write TIMESTAMP / TIMESTAMPTZ columns as Parquet INT96 |
//! | `iam_credential_seconds` | `EMULATOR SET iam_credential_seconds = 5` | temporary credentials issued from now on live 5 s, whatever DurationSeconds asked (`none`: as asked) |
//! | `idle_session_seconds` | `EMULATOR SET idle_session_seconds = 2` | close sessions idle for 2 s (`none`: never) |
//!
//! `EMULATOR RESET [knob]` restores the start-up values.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), redshift_emulator::Error> {
//! let config = redshift_emulator::EmulatorConfig::new("postgres://postgres@127.0.0.1:55432/dev", "secret")
//!     .with_listen("127.0.0.1:0")
//!     .with_s3_endpoint("http://127.0.0.1:59000");
//! let emulator = redshift_emulator::start(config).await?;
//! println!("listening on {}", emulator.local_addr());
//! emulator.shutdown().await;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod activity;
mod auth;
mod awsapi;
mod backend;
mod catalog_sql;
pub mod compat;
pub mod compat_catalog;
mod config;
mod connlog;
mod control;
mod error;
pub mod history;
mod session;
mod sql;
pub mod unload;
mod user_sql;
pub mod users;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{EmulatorConfig, FaultKnobs, FaultSettings, Secret};
pub use error::{Error, StatementError};
pub use sql::REDSHIFT_VERSION;
pub use users::{AuthMethod, IssuedCredential};

use backend::BackendTarget;
use session::{CancelRegistry, Canceller, Session, SessionHandlers, Shared};

/// A running emulator. Dropping it does not stop it; call [`RunningEmulator::shutdown`].
#[derive(Debug)]
pub struct RunningEmulator {
    local_addr: SocketAddr,
    aws_api_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    api_task: Option<JoinHandle<()>>,
}

/// Counts UNLOADs, so tests can observe how many a client ran at once.
#[derive(Debug, Default)]
pub struct UnloadStats {
    running: std::sync::atomic::AtomicUsize,
    max_running: std::sync::atomic::AtomicUsize,
    started: std::sync::atomic::AtomicUsize,
    statements: std::sync::Mutex<Vec<String>>,
}

/// Marks one UNLOAD as running until dropped.
#[derive(Debug)]
pub(crate) struct RunningUnload<'a>(&'a UnloadStats);

impl UnloadStats {
    pub(crate) fn enter(&self, statement: &str) -> RunningUnload<'_> {
        use std::sync::atomic::Ordering::SeqCst;
        self.statements
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(statement.to_owned());
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.max_running.fetch_max(now, SeqCst);
        self.started.fetch_add(1, SeqCst);
        RunningUnload(self)
    }

    /// The most UNLOADs that ran at the same time so far.
    pub fn max_concurrent(&self) -> usize {
        self.max_running.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// UNLOADs running now (a cancelled one stops counting once it has stopped).
    pub fn running(&self) -> usize {
        self.running.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// UNLOADs started so far.
    pub fn started(&self) -> usize {
        self.started.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The text of every UNLOAD started so far, in order (tests read destinations from them).
    pub fn statements(&self) -> Vec<String> {
        self.statements
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Drop for RunningUnload<'_> {
    fn drop(&mut self) {
        self.0
            .running
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl RunningEmulator {
    /// UNLOAD counters of this emulator.
    pub fn unload_stats(&self) -> &UnloadStats {
        &self.shared.unloads
    }

    /// The address the emulator listens on (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the AWS API double (`None` unless [`EmulatorConfig::aws_api_listen`]).
    pub fn aws_api_addr(&self) -> Option<SocketAddr> {
        self.aws_api_addr
    }

    /// The fault knobs, for tests that change them without SQL.
    pub fn knobs(&self) -> &FaultKnobs {
        &self.shared.knobs
    }

    /// The temporary credentials the AWS API issued (and has not forgotten), without passwords.
    pub fn issued_credentials(&self) -> Vec<IssuedCredential> {
        self.shared.users.issued()
    }

    /// True if the database user `name` exists (the configured user, `CREATE USER`,
    /// `AutoCreate`).
    pub fn user_exists(&self, name: &str) -> bool {
        self.shared.users.exists(name)
    }

    /// Stops accepting connections, closes the open ones, stops the AWS API and waits for both.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        if let Some(api) = self.api_task {
            let _ = api.await;
        }
    }

    /// Waits until the accept loop ends (it only ends after [`RunningEmulator::shutdown`] or
    /// an accept error).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Starts an emulator: creates the compatibility objects, binds the listener and serves
/// connections in the background. Returns once the listener is bound.
pub async fn start(config: EmulatorConfig) -> Result<RunningEmulator, Error> {
    let target = BackendTarget::parse(config.pg_url.expose()).map_err(Error::Config)?;
    if config.slices == 0 {
        return Err(Error::Config("--slices must be at least 1".to_owned()));
    }
    if config.fetch_rows == 0 {
        return Err(Error::Config("fetch_rows must be at least 1".to_owned()));
    }
    compat::install(config.pg_url.expose()).await?;
    let api_listener = match &config.aws_api_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind {
                    addr: addr.clone(),
                    source,
                })?,
        ),
        None => None,
    };
    let aws_api_addr = match &api_listener {
        Some(l) => Some(l.local_addr().map_err(|source| Error::Bind {
            addr: config.aws_api_listen.clone().unwrap_or_default(),
            source,
        })?),
        None => None,
    };

    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.listen.clone(),
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: config.listen.clone(),
        source,
    })?;
    let shared = Arc::new(Shared {
        knobs: FaultKnobs::new(config.faults.clone()),
        history: history::History::new(config.pg_url.clone()),
        users: users::Users::new(&config.user, &config.password),
        config,
        target,
        cancels: CancelRegistry::default(),
        unloads: UnloadStats::default(),
    });
    let (shutdown, shutdown_rx) = watch::channel(false);
    let api_task = api_listener.map(|l| awsapi::serve(l, Arc::clone(&shared), shutdown_rx.clone()));
    if let Some(addr) = aws_api_addr {
        tracing::info!(%addr, "AWS API double listening");
    }
    let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), shutdown_rx));
    tracing::info!(%local_addr, "redshift emulator listening");
    Ok(RunningEmulator {
        local_addr,
        aws_api_addr,
        shared,
        shutdown,
        task,
        api_task,
    })
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let canceller = Arc::new(Canceller {
        shared: Arc::clone(&shared),
    });
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let (socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let session = Arc::new(Session::new(Arc::clone(&shared)));
        let handlers = Arc::new(SessionHandlers {
            session: Arc::clone(&session),
            canceller: Arc::clone(&canceller),
        });
        let mut shutdown = shutdown.clone();
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            tracing::debug!(%peer, "client connected");
            tokio::select! {
                result = pgwire::tokio::process_socket(socket, None, handlers) => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "client connection ended with an error");
                    }
                }
                _ = session.dropped.notified() => {
                    tracing::info!(%peer, "client connection dropped by the emulator");
                }
                _ = activity::closed_when_idle(&session.activity, &shared.knobs) => {
                    tracing::info!(%peer, "closing an idle session (idle_session_seconds)");
                }
                _ = shutdown.changed() => {}
            }
            session.log_end().await;
        });
    }
}
