//! Errors of the emulator and how they reach a client.
//!
//! [`Error`] is what starting the emulator can fail with. [`StatementError`] is what a statement
//! the emulator runs itself (UNLOAD, EMULATOR ...) can fail with; [`StatementError::into_error_info`]
//! is the one place that turns it into a PostgreSQL `ErrorResponse` with a SQLSTATE.

use pgwire::error::{ErrorInfo, PgWireError};

/// SQLSTATE for a syntax error.
pub(crate) const SQLSTATE_SYNTAX_ERROR: &str = "42601";
/// SQLSTATE Redshift uses for internal errors (most UNLOAD failures).
pub(crate) const SQLSTATE_INTERNAL_ERROR: &str = "XX000";
/// SQLSTATE for a cancelled statement.
pub(crate) const SQLSTATE_QUERY_CANCELED: &str = "57014";
/// SQLSTATE for a connection failure.
pub(crate) const SQLSTATE_CONNECTION_FAILURE: &str = "08006";

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The backend PostgreSQL is unreachable or refused the emulator.
    #[error("cannot connect to the backend PostgreSQL: {0}")]
    Backend(#[from] tokio_postgres::Error),
    /// Creating the Redshift compatibility objects failed.
    #[error("cannot create the Redshift compatibility objects in the backend PostgreSQL: {0}")]
    Compat(tokio_postgres::Error),
}

/// A failure of a statement the emulator executes itself.
#[derive(Debug, thiserror::Error)]
pub enum StatementError {
    /// The statement does not parse (42601).
    #[error("{0}")]
    Syntax(String),
    /// Redshift would reject the statement or its data (XX000).
    #[error("{0}")]
    Rejected(String),
    /// PostgreSQL returned an error running the SELECT; passed on unchanged.
    #[error("{}", .0.message)]
    Backend(Box<ErrorInfo>),
    /// Writing to or listing S3 failed (XX000).
    #[error("S3ServiceException:{0}")]
    S3(String),
    /// Writing Parquet failed (XX000).
    #[error("error writing Parquet: {0}")]
    Parquet(String),
    /// The statement was cancelled by a CancelRequest (57014).
    #[error("canceling statement due to user request")]
    Cancelled,
    /// An error the emulator raises with a SQLSTATE of its own (`CREATE USER` / `ALTER USER`).
    #[error("{}", .0.message)]
    Coded(Box<ErrorInfo>),
    /// The backend connection failed; the session cannot continue (08006, fatal).
    #[error("lost the connection to the backend PostgreSQL: {0}")]
    BackendLost(String),
}

impl StatementError {
    /// An ERROR with `code` and `message`.
    pub(crate) fn coded(code: &str, message: impl Into<String>) -> Self {
        Self::Coded(Box::new(ErrorInfo::new(
            "ERROR".to_owned(),
            code.to_owned(),
            message.into(),
        )))
    }

    /// True if the session must end after reporting this error.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::BackendLost(_))
    }

    /// The PostgreSQL error to send to the client.
    pub fn into_error_info(self) -> ErrorInfo {
        let (severity, code) = match &self {
            Self::Syntax(_) => ("ERROR", SQLSTATE_SYNTAX_ERROR),
            Self::Rejected(_) | Self::S3(_) | Self::Parquet(_) => {
                ("ERROR", SQLSTATE_INTERNAL_ERROR)
            }
            Self::Cancelled => ("ERROR", SQLSTATE_QUERY_CANCELED),
            Self::BackendLost(_) => ("FATAL", SQLSTATE_CONNECTION_FAILURE),
            Self::Backend(_) | Self::Coded(_) => ("", ""),
        };
        match self {
            Self::Backend(info) | Self::Coded(info) => *info,
            other => ErrorInfo::new(severity.to_owned(), code.to_owned(), other.to_string()),
        }
    }
}

impl From<StatementError> for PgWireError {
    fn from(e: StatementError) -> Self {
        PgWireError::UserError(Box::new(e.into_error_info()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates() {
        let cases = [
            (StatementError::Syntax("x".into()), "42601", "ERROR"),
            (StatementError::Rejected("x".into()), "XX000", "ERROR"),
            (StatementError::S3("x".into()), "XX000", "ERROR"),
            (StatementError::Cancelled, "57014", "ERROR"),
            (StatementError::BackendLost("x".into()), "08006", "FATAL"),
        ];
        for (err, code, severity) in cases {
            let info = err.into_error_info();
            assert_eq!(
                (info.code.as_str(), info.severity.as_str()),
                (code, severity)
            );
        }
    }

    #[test]
    fn statement_error_stays_small() {
        assert!(std::mem::size_of::<StatementError>() <= 32);
    }
}
