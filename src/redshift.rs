//! Connections to Redshift. Every statement redshift-flight sends (catalog queries, `SELECT MAX`,
//! `UNLOAD`) goes through the simple query protocol, outside any transaction, as Redshift requires
//! for UNLOAD and recommends for its leader-node catalog tables.
//!
//! The catalog shares one long-lived connection (re-opened when it breaks); each UNLOAD gets its
//! own connection, because an UNLOAD holds its connection for its whole duration.

use std::fmt;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::config::Config;
use crate::plan::sql::Sql;

/// How a statement sent to Redshift failed.
#[derive(Debug, thiserror::Error)]
pub enum RedshiftError {
    /// No connection could be made (refused, reset, DNS, timeout, or Redshift shutting down).
    #[error("cannot reach Redshift at {address}: {message}")]
    Unreachable {
        /// `host:port`.
        address: String,
        /// The cause.
        message: String,
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
    /// Redshift ran the statement and reported an error.
    #[error("Redshift error {code}: {message}")]
    Sql {
        /// SQLSTATE.
        code: String,
        /// Redshift's message (and detail, if any).
        message: String,
    },
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
                    message,
                },
                _ => Self::Sql { code, message },
            };
        }
        let mut message = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Self::Unreachable {
            address: address.to_string(),
            message,
        }
    }
}

/// One row of a simple-query result: text values, `None` for NULL.
pub type TextRow = Vec<Option<String>>;

/// Opens connections to Redshift and runs simple queries.
pub struct Redshift {
    pg_config: tokio_postgres::Config,
    address: String,
    user: String,
    shared: Mutex<Option<Client>>,
}

impl fmt::Debug for Redshift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redshift")
            .field("address", &self.address)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Redshift {
    /// Connection settings from the configuration (nothing is opened yet).
    pub fn new(config: &Config) -> Self {
        let mut pg_config = tokio_postgres::Config::new();
        pg_config
            .host(&config.redshift_host)
            .port(config.redshift_port)
            .dbname(&config.redshift_database)
            .user(&config.redshift_user)
            .password(config.redshift_password.expose_secret())
            .application_name("redshift-flight")
            .connect_timeout(Duration::from_secs(10))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(60));
        Self {
            pg_config,
            address: format!("{}:{}", config.redshift_host, config.redshift_port),
            user: config.redshift_user.clone(),
            shared: Mutex::new(None),
        }
    }

    /// `host:port`, for messages.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Opens a new connection; its driver task ends when the returned client is dropped.
    pub async fn connect(&self) -> Result<Client, RedshiftError> {
        let (client, connection) = self
            .pg_config
            .connect(NoTls)
            .await
            .map_err(|e| RedshiftError::from_pg(e, &self.address, &self.user))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "Redshift connection ended");
            }
        });
        Ok(client)
    }

    /// Runs one statement on a new connection (used for UNLOAD), returning its rows.
    pub async fn execute_dedicated(&self, sql: &Sql) -> Result<Vec<TextRow>, RedshiftError> {
        let client = self.connect().await?;
        self.run(&client, sql).await
    }

    /// Runs one statement on the shared connection (catalog queries), reconnecting once if the
    /// shared connection had broken.
    pub async fn query(&self, sql: &Sql) -> Result<Vec<TextRow>, RedshiftError> {
        let mut shared = self.shared.lock().await;
        if let Some(client) = shared.as_ref().filter(|c| !c.is_closed()) {
            match self.run(client, sql).await {
                Err(RedshiftError::Unreachable { .. }) => {}
                other => return other,
            }
        }
        let client = self.connect().await?;
        let result = self.run(&client, sql).await;
        *shared = Some(client);
        result
    }

    async fn run(&self, client: &Client, sql: &Sql) -> Result<Vec<TextRow>, RedshiftError> {
        let messages = client
            .simple_query(sql.as_str())
            .await
            .map_err(|e| RedshiftError::from_pg(e, &self.address, &self.user))?;
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
}
