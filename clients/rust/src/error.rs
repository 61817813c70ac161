//! The client's one error type. Every server status is classified from its gRPC code and the
//! `google.rpc.ErrorInfo` reason the server attaches (proto-docs/README.md, "Status codes"), so
//! callers can tell apart what to retry, what needs a new plan, a stale cursor, a permission
//! problem and a missing table without parsing messages. Imports only external crates.

use std::fmt;

use arrow_flight::error::FlightError;
use tonic::Code;
use tonic_types::StatusExt;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failure of a call to redshift-flight, or of this client around it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server or the warehouse is unreachable or busy (`UNAVAILABLE`, a broken connection):
    /// retry later. Reads already retry these a few times before giving up.
    #[error("{0}")]
    Unavailable(ServerError),
    /// The staged run expired or was cleaned up (`TICKET_EXPIRED`, `RUN_EXPIRED`): plan the read
    /// again (GetFlightInfo). Reads do this by themselves when no batch was handed out yet.
    #[error("{0}")]
    RunExpired(ServerError),
    /// The cursor's replication key no longer exists or changed type (`STALE_CURSOR`): run a full
    /// sync (`Mode::Full`) and continue from its `next_cursor`.
    #[error("{0}")]
    StaleCursor(ServerError),
    /// The caller may not read the table, or the server was refused by Redshift or S3
    /// (`PERMISSION_DENIED`).
    #[error("{0}")]
    PermissionDenied(ServerError),
    /// Missing, wrong or expired credentials (`UNAUTHENTICATED`).
    #[error("{0}")]
    Unauthenticated(ServerError),
    /// The table (or schema) is unknown or not served (`TABLE_NOT_FOUND`, `TABLE_CHANGED`), or
    /// it is a late-binding view whose definition no longer resolves (`VIEW_UNRESOLVED`: a
    /// relation it reads was dropped or changed; fix the view in Redshift).
    #[error("{0}")]
    NotFound(ServerError),
    /// The request is wrong: bad command, columns, cursor, filter, replication key
    /// (`INVALID_ARGUMENT`). `reason` says which.
    #[error("{0}")]
    InvalidRequest(ServerError),
    /// Any other server status (`INTERNAL`, `UNIMPLEMENTED`, `CANCELLED`, ...).
    #[error("{0}")]
    Server(ServerError),
    /// The connection could not be set up (bad URI, TLS files, connect failure).
    #[error("cannot connect to {uri}: {message}")]
    Connect {
        /// The URI asked for.
        uri: String,
        /// What failed.
        message: String,
    },
    /// The server answered something that breaks the wire contract (bad app_metadata, a stream
    /// whose schema differs from the promised one, an undecodable message).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Decoding or handling Arrow data failed.
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A local I/O failure (the file cursor store, a sink).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A failure of the caller's code (a sink or cursor store), passed through unchanged.
    #[error("{0}")]
    External(Box<dyn std::error::Error + Send + Sync>),
}

/// A status from the server: its code, message and the `ErrorInfo` details.
#[derive(Debug, Clone)]
pub struct ServerError {
    /// The gRPC code.
    pub code: Code,
    /// The message (for people).
    pub message: String,
    /// The stable reason from `ErrorInfo` (`TABLE_NOT_FOUND`, `STALE_CURSOR`, ...), if sent.
    pub reason: Option<String>,
    /// The request id the server logged the cause under, if sent.
    pub request_id: Option<String>,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.code)?;
        if let Some(reason) = &self.reason {
            write!(f, " ({reason})")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl Error {
    /// Classifies a status by its `ErrorInfo` reason first, then by its code.
    pub fn from_status(status: &tonic::Status) -> Self {
        let info = status.get_details_error_info();
        let server = ServerError {
            code: status.code(),
            message: status.message().to_string(),
            reason: info.as_ref().map(|i| i.reason.clone()),
            request_id: info.and_then(|i| i.metadata.get("request_id").cloned()),
        };
        match (server.reason.as_deref(), server.code) {
            (Some("STALE_CURSOR"), _) => Self::StaleCursor(server),
            (Some("TICKET_EXPIRED" | "RUN_EXPIRED"), _) => Self::RunExpired(server),
            (Some("TABLE_NOT_FOUND" | "TABLE_CHANGED" | "VIEW_UNRESOLVED"), _) => {
                Self::NotFound(server)
            }
            (_, Code::Unavailable) => Self::Unavailable(server),
            // Without details (a proxy, an older server): the documented message says it.
            (None, Code::NotFound | Code::FailedPrecondition)
                if server.message.contains("call GetFlightInfo again") =>
            {
                Self::RunExpired(server)
            }
            (None, Code::FailedPrecondition) if server.message.contains("run a full sync") => {
                Self::StaleCursor(server)
            }
            (_, Code::NotFound) => Self::NotFound(server),
            (_, Code::PermissionDenied) => Self::PermissionDenied(server),
            (_, Code::Unauthenticated) => Self::Unauthenticated(server),
            (_, Code::InvalidArgument) => Self::InvalidRequest(server),
            // A connection reset mid-stream reaches tonic as UNKNOWN without details.
            (None, Code::Unknown) if is_transport_failure(&server.message) => {
                Self::Unavailable(server)
            }
            _ => Self::Server(server),
        }
    }

    /// Whether retrying the same call later may succeed (the server or warehouse was
    /// unavailable or busy, or the connection broke).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// Whether a new plan (GetFlightInfo) is needed: the staged run expired or is gone.
    pub fn is_run_expired(&self) -> bool {
        matches!(self, Self::RunExpired(_))
    }

    /// The server's status, when this error is one.
    pub fn server_error(&self) -> Option<&ServerError> {
        match self {
            Self::Unavailable(e)
            | Self::RunExpired(e)
            | Self::StaleCursor(e)
            | Self::PermissionDenied(e)
            | Self::Unauthenticated(e)
            | Self::NotFound(e)
            | Self::InvalidRequest(e)
            | Self::Server(e) => Some(e),
            _ => None,
        }
    }

    /// The `ErrorInfo` reason, when the server sent one.
    pub fn reason(&self) -> Option<&str> {
        self.server_error().and_then(|e| e.reason.as_deref())
    }

    /// Wraps an error of the caller's code (sinks, cursor stores).
    pub fn external(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::External(error.into())
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

fn is_transport_failure(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "transport error",
        "connection",
        "broken pipe",
        "h2 protocol error",
        "stream closed",
    ]
    .iter()
    .any(|m| message.contains(m))
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        Self::from_status(&status)
    }
}

impl From<FlightError> for Error {
    fn from(error: FlightError) -> Self {
        match error {
            FlightError::Tonic(status) => Self::from_status(&status),
            FlightError::Arrow(e) => Self::Arrow(e),
            FlightError::ExternalError(e) => match e.downcast::<tonic::Status>() {
                Ok(status) => Self::from_status(&status),
                Err(e) => Self::External(e),
            },
            other => Self::Protocol(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, StatusExt};

    fn status(code: Code, message: &str, reason: Option<&str>) -> tonic::Status {
        match reason {
            Some(reason) => tonic::Status::with_error_details(
                code,
                message,
                ErrorDetails::with_error_info(
                    reason,
                    "redshift-flight",
                    [("request_id".to_string(), "0123456789abcdef".to_string())],
                ),
            ),
            None => tonic::Status::new(code, message),
        }
    }

    #[test]
    fn classifies_by_reason_then_code() {
        let cases = [
            (
                Code::FailedPrecondition,
                Some("STALE_CURSOR"),
                "StaleCursor",
            ),
            (
                Code::FailedPrecondition,
                Some("TICKET_EXPIRED"),
                "RunExpired",
            ),
            (Code::NotFound, Some("RUN_EXPIRED"), "RunExpired"),
            (Code::NotFound, Some("TABLE_NOT_FOUND"), "NotFound"),
            (Code::FailedPrecondition, Some("TABLE_CHANGED"), "NotFound"),
            (
                Code::FailedPrecondition,
                Some("VIEW_UNRESOLVED"),
                "NotFound",
            ),
            (Code::Unavailable, Some("WAREHOUSE_BUSY"), "Unavailable"),
            (
                Code::PermissionDenied,
                Some("PERMISSION_DENIED"),
                "PermissionDenied",
            ),
            (
                Code::Unauthenticated,
                Some("TOKEN_EXPIRED"),
                "Unauthenticated",
            ),
            (
                Code::InvalidArgument,
                Some("INVALID_FILTER"),
                "InvalidRequest",
            ),
            (Code::Internal, Some("UNLOAD_FAILED"), "Server"),
            (Code::Unavailable, None, "Unavailable"),
        ];
        for (code, reason, want) in cases {
            let error = Error::from_status(&status(code, "m", reason));
            let got = format!("{error:?}");
            assert!(got.starts_with(want), "{code:?} {reason:?}: {got}");
            assert_eq!(error.reason(), reason);
        }
        let error = Error::from_status(&status(Code::NotFound, "m", Some("RUN_EXPIRED")));
        assert_eq!(
            error.server_error().unwrap().request_id.as_deref(),
            Some("0123456789abcdef")
        );
        assert!(error.is_run_expired() && !error.is_retryable());
    }

    #[test]
    fn without_details_the_documented_messages_decide() {
        let expired = status(
            Code::NotFound,
            "the staged run expired or was cleaned up; call GetFlightInfo again",
            None,
        );
        assert!(Error::from_status(&expired).is_run_expired());
        let stale = status(
            Code::FailedPrecondition,
            "the cursor's replication key \"k\" no longer exists; run a full sync",
            None,
        );
        assert!(matches!(Error::from_status(&stale), Error::StaleCursor(_)));
        let reset = status(Code::Unknown, "transport error", None);
        assert!(Error::from_status(&reset).is_retryable());
        assert!(matches!(
            Error::from_status(&status(Code::NotFound, "table s.t not found", None)),
            Error::NotFound(_)
        ));
    }
}
