//! Connections to Redshift. Every statement redshift-flight sends (catalog queries, `SELECT MAX`,
//! `UNLOAD`) goes through the simple query protocol, outside any transaction, as Redshift requires
//! for UNLOAD and recommends for its leader-node catalog tables.
//!
//! Connections come from a pool that checks each one before handing it out. Transient failures
//! (refused or reset connections, admin shutdown 57P01, too many connections 53300, serialization
//! failure 40001) are retried with exponential backoff and jitter; SQL errors are not retried and
//! come back with Redshift's message. A statement whose caller goes away (client cancelled, deadline
//! passed) is cancelled on Redshift too.
//!
//! Each new connection logs in with the current login of [`DbLogins`] (`redshift_auth`: a stored
//! password, IAM credentials refreshed before they expire, or a secret); a login Redshift refuses
//! that can change is fetched again and the connection tried once more. TLS is in `tls.rs`.
//!
//! Imports: `crate::config` (its settings), `crate::aws` (the logins), `crate::sql` (statements
//! are `Sql`) and `crate::store::error_chain`; the catalog and the stager reach Redshift through
//! `crate::warehouse`, never the other way round.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use deadpool_postgres::{
    Hook, HookError, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use futures::future::BoxFuture;
use secrecy::ExposeSecret;
use tokio_postgres::{CancelToken, SimpleQueryMessage};
use tokio_postgres_rustls::MakeRustlsConnect;

mod cursor;
mod tls;

pub use cursor::{RowCursor, TextBatch};
pub use tls::{TlsSetupError, tls_connector};

use crate::aws::{AwsError, DbLogins};
use crate::config::{RedshiftSettings, SslMode};
use crate::sql::{Sql, sql};

/// How a statement sent to Redshift failed.
#[derive(Debug, thiserror::Error)]
pub enum RedshiftError {
    /// No connection could be made (refused, reset, DNS, timeout, or Redshift shutting down).
    #[error("cannot reach Redshift at {address}: {source}")]
    Unreachable {
        /// `host:port`.
        address: String,
        /// The cause, kept whole.
        source: ConnectError,
    },
    /// The credentials to log in with could not be had from AWS (`redshift_auth` iam or
    /// secret).
    #[error("cannot get {what} for Redshift at {address}: {source}")]
    Credentials {
        /// `host:port`.
        address: String,
        /// Where the login comes from ("IAM credentials of cluster x").
        what: String,
        /// AWS's answer.
        source: Box<AwsError>,
    },
    /// Redshift refused the credentials.
    #[error("Redshift at {address} rejected the login of user {user}: {message}")]
    Authentication {
        /// `host:port`.
        address: String,
        /// The user.
        user: String,
        /// Redshift's message.
        message: String,
    },
    /// Every pooled connection stayed busy for the whole wait (`redshift_pool_timeout_seconds`).
    #[error(
        "all {size} Redshift connections stayed busy for {waited:?} (redshift_pool_timeout_seconds); try again later, or raise redshift_pool_size"
    )]
    PoolTimeout {
        /// `redshift_pool_size` in effect.
        size: usize,
        /// How long the request waited.
        waited: Duration,
    },
    /// Redshift ran the statement and reported an error.
    #[error("Redshift error {code}: {message}")]
    Sql {
        /// SQLSTATE.
        code: String,
        /// Redshift's message (and detail, if any).
        message: String,
    },
}

/// Why no connection to Redshift could be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The driver's error (refused, reset, DNS, timeout, TLS), with its own cause chain.
    #[error("{}", crate::store::error_chain(.0))]
    Driver(#[source] tokio_postgres::Error),
    /// Redshift answered that it cannot take the session now (shutting down, too many
    /// connections): its SQLSTATE and message.
    #[error("{message} (SQLSTATE {code})")]
    Refused {
        /// SQLSTATE.
        code: String,
        /// Redshift's message.
        message: String,
    },
    /// The connection pool is closed or misconfigured.
    #[error("connection pool: {0}")]
    Pool(#[source] PoolError),
    /// Something else said the connection is unusable (tests, fakes).
    #[error("{0}")]
    Other(&'static str),
}

impl RedshiftError {
    fn from_pg(error: tokio_postgres::Error, address: &str, user: &str) -> Self {
        if let Some(db) = error.as_db_error() {
            let code = db.code().code().to_string();
            let mut message = db.message().to_string();
            if let Some(detail) = db.detail() {
                message.push_str(": ");
                message.push_str(detail);
            }
            return match code.as_str() {
                "28P01" | "28000" => Self::Authentication {
                    address: address.to_string(),
                    user: user.to_string(),
                    message,
                },
                // admin shutdown, crash shutdown, cannot connect now, too many connections
                "57P01" | "57P02" | "57P03" | "53300" => Self::Unreachable {
                    address: address.to_string(),
                    source: ConnectError::Refused { code, message },
                },
                _ => Self::Sql { code, message },
            };
        }
        Self::Unreachable {
            address: address.to_string(),
            source: ConnectError::Driver(error),
        }
    }

    /// Whether trying again may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            // A TLS mismatch (no TLS on the server, an untrusted certificate) will not heal.
            Self::Unreachable { source, .. } => {
                let message = source.to_string();
                !(message.contains("TLS") || message.to_ascii_lowercase().contains("certificate"))
            }
            Self::Sql { code, .. } => code == "40001",
            Self::Credentials { source, .. } => source.is_transient(),
            // Waiting again would hold the caller for several timeouts; it fails fast instead.
            Self::Authentication { .. } | Self::PoolTimeout { .. } => false,
        }
    }
}

/// A result column as the extended protocol describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedColumn {
    /// Its name.
    pub name: String,
    /// The type's OID.
    pub type_oid: u32,
    /// The type modifier (length, precision and scale), -1 when none.
    pub type_modifier: i32,
    /// The type's name.
    pub type_name: String,
    /// The table the column comes straight from, if it does (`pg_attribute.attrelid`).
    pub table_oid: Option<u32>,
    /// Its position in that table (`pg_attribute.attnum`).
    pub column_id: Option<i16>,
}

/// A parameter (`$1`, `$2`, ...) as the extended protocol describes it: the type Redshift infers
/// from where it is used. The protocol carries no type modifier, so a NUMERIC parameter has no
/// precision or scale, and a parameter Redshift cannot place is `unknown` (OID 705).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedParameter {
    /// The type's OID.
    pub type_oid: u32,
    /// The type's name.
    pub type_name: String,
}

/// One row of a simple-query result: text values, `None` for NULL.
pub type TextRow = Vec<Option<String>>;

/// Retry settings for transient Redshift failures.
#[derive(Debug, Clone, Copy)]
pub struct RetrySettings {
    /// Attempts after the first.
    pub max_retries: usize,
    /// First backoff.
    pub min_delay: Duration,
    /// Longest backoff.
    pub max_delay: Duration,
}

impl Default for RetrySettings {
    /// Four retries, 200 ms doubling to at most 5 s, with jitter.
    fn default() -> Self {
        Self {
            max_retries: 4,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// Opens pooled connections to Redshift and runs simple queries.
pub struct Redshift {
    tls: MakeRustlsConnect,
    pool: Pool,
    pool_timeout: Duration,
    address: String,
    logins: Arc<DbLogins>,
    retry: RetrySettings,
}

impl fmt::Debug for Redshift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redshift")
            .field("address", &self.address)
            .field("login", &self.logins.describe())
            .finish_non_exhaustive()
    }
}

/// Cancels the statement running on a connection if the future running it is dropped first.
struct CancelOnDrop {
    token: Option<CancelToken>,
    tls: MakeRustlsConnect,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            let tls = self.tls.clone();
            tokio::spawn(async move {
                match token.cancel_query(tls).await {
                    Ok(()) => tracing::info!("cancelled an abandoned Redshift statement"),
                    Err(error) => {
                        tracing::warn!(%error, "could not cancel an abandoned Redshift statement")
                    }
                }
            });
        }
    }
}

/// Opens each new pooled connection with the current login: the user and password of
/// [`DbLogins::latest`], which [`Redshift::connection`] has just made current.
struct LoginConnect {
    tls: MakeRustlsConnect,
    logins: Arc<DbLogins>,
}

impl deadpool_postgres::Connect for LoginConnect {
    fn connect(
        &self,
        pg_config: &tokio_postgres::Config,
    ) -> BoxFuture<
        '_,
        Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>,
    > {
        let mut config = pg_config.clone();
        if let Some(login) = self.logins.latest() {
            config
                .user(&login.user)
                .password(login.password.expose_secret());
        }
        let tls = self.tls.clone();
        Box::pin(async move {
            let (client, connection) = config.connect(tls).await?;
            let task = tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::warn!(%error, "Redshift connection ended with an error");
                }
            });
            Ok((client, task))
        })
    }
}

impl Redshift {
    /// A pool from the Redshift section (nothing is opened yet) whose connections log in with
    /// `logins`. `max_parallel_workers` sizes the pool when `settings.pool_size` is 0.
    pub fn new(
        settings: &RedshiftSettings,
        max_parallel_workers: usize,
        logins: Arc<DbLogins>,
    ) -> Result<Self, TlsSetupError> {
        let tls = tls_connector(settings.sslmode, settings.ssl_root_cert.as_deref())?;
        let mut pg_config = tokio_postgres::Config::new();
        pg_config.ssl_mode(match settings.sslmode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
        });
        pg_config
            .host(&settings.host)
            .port(settings.port)
            .dbname(&settings.database)
            .application_name("redshift-flight")
            .connect_timeout(Duration::from_secs(10))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(60));
        let manager = Manager::from_connect(
            pg_config,
            LoginConnect {
                tls: tls.clone(),
                logins: Arc::clone(&logins),
            },
            ManagerConfig {
                recycling_method: RecyclingMethod::Verified,
            },
        );
        // By default one connection per concurrent UNLOAD plus a few for catalog and MAX queries.
        // Whoever finds them all busy waits at most `redshift_pool_timeout_seconds`.
        let size = match settings.pool_size {
            0 => max_parallel_workers + 4,
            size => size,
        };
        // Unqualified names in a Flight SQL query resolve in the default schema first: the schema
        // they are authorised in (Redshift's own default, `$user, public`, could differ). Flight
        // SQL authorises only names found there exactly, so `public` after it (where the emulator
        // keeps its compatibility functions) never decides which relation is read.
        let search_path = Sql::ident(&settings.schema)
            .map(|schema| sql!("SET search_path TO ", schema, ", public"))
            .ok();
        let pool = Pool::builder(manager)
            .post_create(Hook::async_fn(move |client, _| {
                let search_path = search_path.clone();
                Box::pin(async move {
                    if let Some(search_path) = search_path {
                        client
                            .simple_query(search_path.as_str())
                            .await
                            .map_err(HookError::Backend)?;
                    }
                    Ok(())
                })
            }))
            .max_size(size)
            .wait_timeout(Some(settings.pool_timeout))
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(Duration::from_secs(15)))
            .recycle_timeout(Some(Duration::from_secs(15)))
            .build()
            .unwrap_or_else(|_| unreachable!("a runtime is configured"));
        Ok(Self {
            tls,
            pool,
            pool_timeout: settings.pool_timeout,
            address: format!("{}:{}", settings.host, settings.port),
            logins,
            retry: RetrySettings::default(),
        })
    }

    /// Overrides the retry settings.
    pub fn with_retry(mut self, retry: RetrySettings) -> Self {
        self.retry = retry;
        self
    }

    /// `host:port`, for messages.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Where logins come from and the user of the last one, for messages.
    pub fn login_description(&self) -> String {
        match self.logins.latest() {
            Some(login) => format!("{} (user {})", self.logins.describe(), login.user),
            None => self.logins.describe(),
        }
    }

    /// The user new connections log in as (for messages).
    fn user(&self) -> String {
        self.logins
            .latest()
            .map_or_else(|| self.logins.describe(), |login| login.user)
    }

    /// A pooled connection. A new one logs in with the current login, fetched first if it is
    /// due; if Redshift refuses a login that can change (IAM credentials, a rotated secret), it
    /// is fetched again and the connection tried once more.
    async fn connection(&self) -> Result<Object, RedshiftError> {
        let login = self.current_login().await?;
        match self.pooled().await {
            Err(RedshiftError::Authentication { .. }) if self.logins.rejected(login.generation) => {
                tracing::warn!(
                    source = %self.logins.describe(),
                    "Redshift refused the login; fetching it again"
                );
                self.current_login().await?;
                self.pooled().await
            }
            other => other,
        }
    }

    async fn current_login(
        &self,
    ) -> Result<crate::aws::Fetched<crate::aws::DbLogin>, RedshiftError> {
        self.logins
            .current()
            .await
            .map_err(|source| RedshiftError::Credentials {
                address: self.address.clone(),
                what: self.logins.describe(),
                source: Box::new(source),
            })
    }

    async fn pooled(&self) -> Result<Object, RedshiftError> {
        self.pool.get().await.map_err(|e| match e {
            PoolError::Backend(e) | PoolError::PostCreateHook(HookError::Backend(e)) => {
                RedshiftError::from_pg(e, &self.address, &self.user())
            }
            PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) => {
                RedshiftError::PoolTimeout {
                    size: self.pool.status().max_size,
                    waited: self.pool_timeout,
                }
            }
            other => RedshiftError::Unreachable {
                address: self.address.clone(),
                source: ConnectError::Pool(other),
            },
        })
    }

    async fn run_once(&self, sql: &Sql) -> Result<Vec<TextRow>, RedshiftError> {
        let client = self.connection().await?;
        let mut guard = CancelOnDrop {
            token: Some(client.cancel_token()),
            tls: self.tls.clone(),
        };
        let result = client.simple_query(sql.as_str()).await;
        guard.token = None;
        let messages =
            result.map_err(|e| RedshiftError::from_pg(e, &self.address, &self.user()))?;
        Ok(messages
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_string))
                        .collect(),
                ),
                _ => None,
            })
            .collect())
    }

    /// Retries `operation` while it fails transiently.
    pub async fn with_retries<T, F, Fut>(
        &self,
        what: &str,
        operation: F,
    ) -> Result<T, RedshiftError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RedshiftError>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.retry.min_delay)
            .with_max_delay(self.retry.max_delay)
            .with_max_times(self.retry.max_retries)
            .with_jitter();
        operation
            .retry(backoff)
            .when(RedshiftError::is_transient)
            .notify(|error, delay| tracing::warn!(%error, ?delay, what, "transient Redshift failure, retrying"))
            .await
    }

    /// Runs one statement, retrying transient failures, and returns its rows as text.
    pub async fn query(&self, sql: &Sql) -> Result<Vec<TextRow>, RedshiftError> {
        self.with_retries("query", || self.run_once(sql)).await
    }

    /// Prepares `sql` without running it (the extended protocol's Parse and Describe), retrying
    /// transient failures; the statement is closed when dropped.
    async fn prepare(&self, sql: &Sql) -> Result<tokio_postgres::Statement, RedshiftError> {
        self.with_retries("describe", || async {
            let client = self.connection().await?;
            client
                .prepare(sql.as_str())
                .await
                .map_err(|e| RedshiftError::from_pg(e, &self.address, &self.user()))
        })
        .await
    }

    /// The result columns of `sql` without running it: name, type OID, type modifier and type
    /// name of each.
    pub async fn describe_columns(&self, sql: &Sql) -> Result<Vec<DescribedColumn>, RedshiftError> {
        Ok(self
            .prepare(sql)
            .await?
            .columns()
            .iter()
            .map(|c| DescribedColumn {
                name: c.name().to_string(),
                type_oid: c.type_().oid(),
                type_modifier: c.type_modifier(),
                type_name: c.type_().name().to_string(),
                table_oid: c.table_oid().filter(|oid| *oid != 0),
                column_id: c.column_id().filter(|id| *id > 0),
            })
            .collect())
    }

    /// The parameters of `sql` (`$1` first) without running it: the type Redshift infers for
    /// each from where it is used.
    pub async fn describe_parameters(
        &self,
        sql: &Sql,
    ) -> Result<Vec<DescribedParameter>, RedshiftError> {
        Ok(self
            .prepare(sql)
            .await?
            .params()
            .iter()
            .map(|t| DescribedParameter {
                type_oid: t.oid(),
                type_name: t.name().to_string(),
            })
            .collect())
    }

    /// Runs one statement once (no retry): for statements whose retry needs cleanup first.
    pub async fn execute_once(&self, sql: &Sql) -> Result<Vec<TextRow>, RedshiftError> {
        self.run_once(sql).await
    }

    /// Runs an UNLOAD once (no retry) and then, on the same session, `SELECT
    /// pg_last_unload_count()`: the rows Redshift says that UNLOAD wrote, checked by the stager
    /// against the manifest so that a lost manifest is never taken for zero rows.
    pub async fn unload_counted(&self, unload: &Sql) -> Result<u64, RedshiftError> {
        let client = self.connection().await?;
        let mut guard = CancelOnDrop {
            token: Some(client.cancel_token()),
            tls: self.tls.clone(),
        };
        let pg = |e| RedshiftError::from_pg(e, &self.address, &self.user());
        client.simple_query(unload.as_str()).await.map_err(pg)?;
        let messages = client
            .simple_query("SELECT pg_last_unload_count()")
            .await
            .map_err(pg)?;
        guard.token = None;
        let count = messages.iter().find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        });
        count
            .as_deref()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .ok_or_else(|| RedshiftError::Sql {
                code: "XX000".into(),
                message: format!("pg_last_unload_count() returned {count:?}, not a row count"),
            })
    }
}
