//! The one place where errors become gRPC statuses. The matches are exhaustive (no wildcard arm),
//! so a new error variant is a compile error until someone decides its status and reason.
//!
//! Every status carries a `google.rpc.ErrorInfo` detail (`grpc-status-details-bin`) with a stable
//! reason code (`TABLE_NOT_FOUND`, `STALE_CURSOR`, `RUN_EXPIRED`, `UNLOAD_FAILED`, ...), the domain
//! `redshift-flight` and a `request_id`. A client's own mistake gets the whole explanation in the
//! message. A server fault gets a stable message that names the table and the reason but nothing
//! of the infrastructure (no host:port, bucket or key, no Redshift detail text); its whole cause
//! chain goes to the log (warn) under the same request id, which the message also shows, so an
//! operator can find it. User mistakes are logged at info.

use tonic::{Code, Status};

use crate::auth::AuthError;
use crate::catalog::CatalogError;
use crate::flight::sql::handle::HandleError;
use crate::normalize::NormalizeError;
use crate::plan::PlanError;
use crate::redshift::RedshiftError;
use crate::sql::query::QueryError;
use crate::stage::{LayoutError, StageError, is_cross_region};
use crate::status::with_error_info;
use crate::store::{StoreError, error_chain};
use crate::ticket::TicketError;

/// Longest status message sent to a client.
const MAX_MESSAGE: usize = 2048;

/// The `ErrorInfo` domain and request ids, kept in the leaf [`crate::status`] (which the panic
/// guards share) and re-exported here where the error contract is documented.
pub use crate::status::{ERROR_DOMAIN, new_request_id};

/// Everything an RPC can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Bad descriptor, command or projection.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The table is not served.
    #[error("table {0} not found (or not served by this server)")]
    TableNotFound(String),
    /// Discovery failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// UNLOAD or manifest failed.
    #[error(transparent)]
    Stage(#[from] StageError),
    /// The ticket was rejected.
    #[error(transparent)]
    Ticket(#[from] TicketError),
    /// The prepared statement handle was rejected.
    #[error(transparent)]
    Handle(#[from] crate::flight::sql::handle::HandleError),
    /// Reading a staged file failed.
    #[error("{0}")]
    Store(StoreError),
    /// A staged file is not valid Parquet.
    #[error("staged file {key} cannot be read: {message}")]
    Corrupt {
        /// The object key.
        key: String,
        /// The Parquet error.
        message: String,
    },
    /// A staged file does not match the promised schema.
    #[error(transparent)]
    Normalize(#[from] NormalizeError),
    /// No or wrong credentials.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The FlightInfo would exceed gRPC's default 4 MiB message limit (too many endpoints).
    #[error(
        "the FlightInfo would be {bytes} bytes with {endpoints} endpoints, over gRPC's default 4 MiB message limit: the staged run was dropped; raise endpoint_rows or unload_max_file_size_mb on the server so that fewer endpoints are needed, or read fewer columns or rows"
    )]
    FlightInfoTooLarge {
        /// Encoded size.
        bytes: usize,
        /// Endpoints.
        endpoints: usize,
    },
    /// An Arrow encoding failure.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A Flight SQL request this read-only server does not support (updates, DoPut of data,
    /// transactions, Substrait plans).
    #[error("{0}")]
    Unimplemented(String),
    /// A Flight SQL query that is not one read-only query, or uses what is not allowed.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// A Flight SQL message that does not decode.
    #[error("invalid Flight SQL request: {0}")]
    FlightSql(String),
    /// Redshift could not describe (prepare) or run a client's query.
    #[error("the query failed on Redshift: {source}")]
    QueryFailed {
        /// Redshift's error.
        source: RedshiftError,
    },
    /// A late-binding view that no longer resolves: a table or column it reads was dropped,
    /// renamed or changed type since it was created.
    #[error(
        "late-binding view {view} no longer resolves (a table or column it reads was dropped, renamed or changed type): recreate the view or restore what it reads ({source})"
    )]
    ViewUnresolved {
        /// The view, `schema.view`.
        view: String,
        /// Redshift's error.
        source: RedshiftError,
    },
}

impl ServiceError {
    /// A run's columns object that cannot be read or used.
    pub(crate) fn from_columns(error: crate::stage::columns::ColumnsError) -> Self {
        match error {
            crate::stage::columns::ColumnsError::Store(source) => Self::Store(source),
            crate::stage::columns::ColumnsError::Invalid { key, message, .. } => {
                Self::Corrupt { key, message }
            }
        }
    }
}

/// Whether Redshift's error about a client's own query is the client's doing (bad SQL, an
/// unknown column, no privilege), as opposed to the warehouse failing.
pub(super) fn query_fault_is_clients(error: &RedshiftError) -> bool {
    matches!(error, RedshiftError::Sql { code, .. } if code != "57014" && !code.starts_with("XX") && !code.starts_with("53"))
}

fn redshift_code(error: &RedshiftError) -> Code {
    match error {
        RedshiftError::Unreachable { .. } => Code::Unavailable,
        RedshiftError::PoolTimeout { .. } => Code::Unavailable,
        // The server's own login failed: an operator problem, not the client's.
        RedshiftError::Authentication { .. } | RedshiftError::Credentials { .. } => {
            Code::Unavailable
        }
        RedshiftError::Sql { code, .. } => match code.as_str() {
            "42501" => Code::PermissionDenied,
            "42P01" | "3F000" => Code::NotFound,
            // The table changed under a cached plan (a column was dropped or renamed).
            "42703" => Code::FailedPrecondition,
            "57014" => Code::Cancelled,
            _ => Code::Internal,
        },
    }
}

fn store_code(error: &StoreError) -> Code {
    match error {
        StoreError::NotFound { .. } => Code::NotFound,
        StoreError::Denied { .. } => Code::PermissionDenied,
        StoreError::Unavailable { .. } => Code::Unavailable,
        StoreError::Config(_) => Code::Internal,
    }
}

impl ServiceError {
    /// The status code and whether the fault is the client's.
    fn classify(&self) -> (Code, bool) {
        match self {
            Self::Plan(PlanError::Unsupported(_)) => (Code::Unimplemented, true),
            Self::Plan(
                PlanError::Descriptor(_)
                | PlanError::UnknownColumn { .. }
                | PlanError::Columns(_)
                | PlanError::Name(_)
                | PlanError::Cursor(_)
                | PlanError::CursorMismatch { .. }
                | PlanError::NoReplicationKey { .. }
                | PlanError::KeyType { .. }
                | PlanError::Lookback(_)
                | PlanError::Filter(_),
            ) => (Code::InvalidArgument, true),
            Self::Plan(PlanError::CursorStale { .. }) => (Code::FailedPrecondition, true),
            Self::Plan(PlanError::BadMax { .. }) => (Code::Internal, false),
            Self::Stage(StageError::Max { source, .. }) => (redshift_code(source), false),
            Self::TableNotFound(_) => (Code::NotFound, true),
            Self::Catalog(CatalogError::Name(_)) => (Code::InvalidArgument, true),
            Self::Catalog(CatalogError::Redshift { source, .. }) => (redshift_code(source), false),
            Self::Catalog(CatalogError::Unexpected { .. }) => (Code::Internal, false),
            Self::Stage(StageError::Unload { source, .. }) => (redshift_code(source), false),
            Self::Stage(StageError::Store { source, .. }) => (store_code(source), false),
            Self::Stage(StageError::Manifest { .. } | StageError::RowCount { .. }) => {
                (Code::Internal, false)
            }
            Self::Stage(StageError::Layout {
                source: LayoutError::Store(source),
                ..
            }) => (store_code(source), false),
            Self::Stage(StageError::Layout { .. }) => (Code::Internal, false),
            Self::Stage(StageError::Sql { .. }) => (Code::InvalidArgument, true),
            Self::Stage(StageError::RunId(_)) => (Code::InvalidArgument, true),
            Self::Stage(StageError::RunState { source, .. }) => (store_code(source), false),
            Self::Ticket(TicketError::Malformed(_)) => (Code::InvalidArgument, true),
            Self::Ticket(TicketError::BadSignature) => (Code::PermissionDenied, true),
            Self::Ticket(TicketError::Expired(_)) => (Code::FailedPrecondition, true),
            Self::Handle(HandleError::Malformed(_)) => (Code::InvalidArgument, true),
            Self::Handle(HandleError::BadSignature) => (Code::PermissionDenied, true),
            Self::Handle(HandleError::Expired(_) | HandleError::Changed) => {
                (Code::FailedPrecondition, true)
            }
            Self::Store(source) => (
                store_code(source),
                matches!(source, StoreError::NotFound { .. }),
            ),
            Self::Corrupt { .. } | Self::Normalize(_) | Self::Arrow(_) => (Code::Internal, false),
            Self::Auth(AuthError::Forbidden { .. }) => (Code::PermissionDenied, true),
            Self::Auth(AuthError::File { .. }) => (Code::Internal, false),
            Self::Auth(AuthError::Busy) => (Code::Unavailable, true),
            Self::FlightInfoTooLarge { .. } => (Code::ResourceExhausted, true),
            Self::Auth(AuthError::Missing | AuthError::Invalid | AuthError::Expired) => {
                (Code::Unauthenticated, true)
            }
            Self::Unimplemented(_) => (Code::Unimplemented, true),
            Self::FlightSql(_) | Self::Query(_) => (Code::InvalidArgument, true),
            Self::QueryFailed { source } if query_fault_is_clients(source) => match source {
                RedshiftError::Sql { code, .. } if code == "42501" => {
                    (Code::PermissionDenied, true)
                }
                _ => (Code::InvalidArgument, true),
            },
            Self::QueryFailed { source } => (redshift_code(source), false),
            Self::ViewUnresolved { .. } => (Code::FailedPrecondition, true),
        }
    }
}

impl ServiceError {
    /// The stable reason code sent in `ErrorInfo.reason` (documented in proto-docs/).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Plan(PlanError::Unsupported(_)) => "UNSUPPORTED",
            Self::Plan(PlanError::Descriptor(_) | PlanError::Name(_)) => "INVALID_REQUEST",
            Self::Plan(PlanError::UnknownColumn { .. } | PlanError::Columns(_)) => {
                "INVALID_COLUMNS"
            }
            Self::Plan(PlanError::Cursor(_) | PlanError::CursorMismatch { .. }) => "INVALID_CURSOR",
            Self::Plan(PlanError::CursorStale { .. }) => "STALE_CURSOR",
            Self::Plan(PlanError::NoReplicationKey { .. } | PlanError::KeyType { .. }) => {
                "INVALID_REPLICATION_KEY"
            }
            Self::Plan(PlanError::Lookback(_)) => "INVALID_LOOKBACK",
            Self::Plan(PlanError::Filter(_)) => "INVALID_FILTER",
            Self::Plan(PlanError::BadMax { .. }) => "MAX_QUERY_FAILED",
            Self::TableNotFound(_) => "TABLE_NOT_FOUND",
            Self::Catalog(CatalogError::Name(_)) => "INVALID_REQUEST",
            Self::Catalog(CatalogError::Redshift { source, .. }) => {
                redshift_reason(source, "CATALOG_FAILED")
            }
            Self::Catalog(CatalogError::Unexpected { .. }) => "CATALOG_FAILED",
            Self::Stage(StageError::Max { source, .. }) => {
                redshift_reason(source, "MAX_QUERY_FAILED")
            }
            Self::Stage(StageError::Unload { source, .. }) => {
                redshift_reason(source, "UNLOAD_FAILED")
            }
            Self::Stage(StageError::RowCount { .. }) => "STAGING_INCOMPLETE",
            Self::Stage(
                StageError::Store { .. }
                | StageError::Manifest { .. }
                | StageError::Layout { .. }
                | StageError::RunState { .. },
            ) => "STAGING_FAILED",
            Self::Stage(StageError::Sql { .. }) => "INVALID_REQUEST",
            Self::Stage(StageError::RunId(_)) => "INVALID_TICKET",
            Self::Ticket(TicketError::Malformed(_)) => "INVALID_TICKET",
            Self::Ticket(TicketError::BadSignature) => "BAD_TICKET_SIGNATURE",
            Self::Ticket(TicketError::Expired(_)) => "TICKET_EXPIRED",
            Self::Handle(HandleError::Malformed(_)) => "INVALID_HANDLE",
            Self::Handle(HandleError::BadSignature) => "BAD_HANDLE_SIGNATURE",
            Self::Handle(HandleError::Expired(_)) => "HANDLE_EXPIRED",
            Self::Handle(HandleError::Changed) => "RESULT_CHANGED",
            Self::Store(StoreError::NotFound { .. }) => "RUN_EXPIRED",
            Self::Store(StoreError::Unavailable { .. }) => "STORAGE_UNAVAILABLE",
            Self::Store(StoreError::Denied { .. } | StoreError::Config(_)) => "STORAGE_FAILED",
            Self::Corrupt { .. } | Self::Arrow(_) => "STAGED_FILE_INVALID",
            Self::Normalize(_) => "VALUE_NOT_REPRESENTABLE",
            Self::Auth(AuthError::Forbidden { .. }) => "PERMISSION_DENIED",
            Self::Auth(AuthError::Missing | AuthError::Invalid) => "UNAUTHENTICATED",
            Self::Auth(AuthError::Expired) => "TOKEN_EXPIRED",
            Self::Auth(AuthError::File { .. }) => "INTERNAL",
            Self::Auth(AuthError::Busy) => "HANDSHAKE_BUSY",
            Self::FlightInfoTooLarge { .. } => "FLIGHT_INFO_TOO_LARGE",
            Self::Unimplemented(_) => "UNIMPLEMENTED",
            Self::FlightSql(_) => "INVALID_REQUEST",
            Self::Query(_) => "QUERY_REFUSED",
            Self::QueryFailed { source } => redshift_reason(source, "QUERY_INVALID"),
            Self::ViewUnresolved { .. } => "VIEW_UNRESOLVED",
        }
    }

    /// What a client is told of a server fault: stable, naming the table where there is one and
    /// what failed, never the infrastructure (addresses, buckets, keys, Redshift's detail text).
    fn public_message(&self) -> String {
        let redshift = |what: String, source: &RedshiftError| match source {
            RedshiftError::Unreachable { .. } => format!("{what}: Redshift is unreachable"),
            RedshiftError::Authentication { .. } => {
                format!("{what}: the server's Redshift login was refused")
            }
            RedshiftError::Credentials { .. } => {
                format!("{what}: the server could not get its Redshift credentials from AWS")
            }
            RedshiftError::Sql { code, .. } => format!("{what}: Redshift reported error {code}"),
            // Names the setting and nothing of the infrastructure.
            RedshiftError::PoolTimeout { .. } => format!("{what}: {source}"),
        };
        match self {
            Self::Catalog(CatalogError::Redshift { schema, source }) => redshift(
                format!("reading the catalog of schema {schema} failed"),
                source,
            ),
            Self::Catalog(CatalogError::Unexpected { .. }) => {
                "reading the catalog failed: Redshift answered unexpectedly".into()
            }
            Self::Stage(StageError::Max { table, source }) => redshift(
                format!("SELECT MAX of the replication key of {table} failed"),
                source,
            ),
            Self::Stage(StageError::Unload { table, source }) if is_cross_region(source) => {
                format!(
                    "UNLOAD of {table} failed: the staging bucket is in another region than the Redshift cluster (server setting unload_region)"
                )
            }
            Self::Stage(StageError::Unload { table, source }) => {
                redshift(format!("UNLOAD of {table} failed"), source)
            }
            Self::Stage(StageError::Store { table, source })
            | Self::Stage(StageError::Layout {
                table,
                source: LayoutError::Store(source),
            }) => format!("staging {table} failed: {}", store_summary(source)),
            Self::Stage(StageError::Manifest { table, .. } | StageError::Layout { table, .. }) => {
                format!("staging {table} failed: the staged files are not what UNLOAD should write")
            }
            Self::Stage(StageError::RunState { source, .. }) => {
                format!("updating a staged run failed: {}", store_summary(source))
            }
            Self::Store(source) => format!("reading staged data failed: {}", store_summary(source)),
            Self::Corrupt { .. } | Self::Arrow(_) => {
                "a staged file of the run cannot be decoded".into()
            }
            Self::QueryFailed { source } => {
                redshift("describing or running the query failed".into(), source)
            }
            Self::ViewUnresolved { view, source } => redshift(
                format!(
                    "late-binding view {view} no longer resolves (a table or column it reads was dropped, renamed or changed type): recreate the view or restore what it reads"
                ),
                source,
            ),
            // Everything else is either the client's own doing or says nothing of the
            // infrastructure (row counts, column names and values the caller may read).
            other => error_chain(other),
        }
    }
}

/// What an S3 failure was, without bucket or key.
fn store_summary(error: &StoreError) -> &'static str {
    match error {
        StoreError::NotFound { .. } => "a staged object does not exist",
        StoreError::Denied { .. } => "S3 denied access",
        StoreError::Unavailable { .. } => "S3 is unavailable",
        StoreError::Config(_) => "the S3 configuration is invalid",
    }
}

/// The reason of a Redshift failure: unreachable (or our login refused) is
/// `WAREHOUSE_UNAVAILABLE`, a column or table gone is `TABLE_CHANGED`, else `otherwise`.
fn redshift_reason(error: &RedshiftError, otherwise: &'static str) -> &'static str {
    match error {
        RedshiftError::Unreachable { .. }
        | RedshiftError::Authentication { .. }
        | RedshiftError::Credentials { .. } => "WAREHOUSE_UNAVAILABLE",
        RedshiftError::PoolTimeout { .. } => "WAREHOUSE_BUSY",
        RedshiftError::Sql { code, .. } => match code.as_str() {
            "42703" | "42P01" | "3F000" => "TABLE_CHANGED",
            "42501" => "WAREHOUSE_PERMISSION_DENIED",
            "57014" => "CANCELLED",
            _ => otherwise,
        },
    }
}

fn truncate(message: &mut String) {
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
}

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Self {
        let (code, client_fault) = error.classify();
        let reason = error.reason();
        let request_id = new_request_id();
        let chain = error_chain(&error);
        let mut message = if client_fault {
            match &error {
                ServiceError::Store(StoreError::NotFound { .. }) => {
                    "the staged run expired or was cleaned up; call GetFlightInfo again".into()
                }
                _ => chain.clone(),
            }
        } else {
            format!(
                "{} (request id {request_id}: the server's log has the details)",
                error.public_message()
            )
        };
        truncate(&mut message);
        if client_fault {
            tracing::info!(?code, reason, request_id, message = %chain, "request rejected");
        } else {
            tracing::warn!(?code, reason, request_id, error = %chain, "request failed");
        }
        with_error_info(code, message, reason, request_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_size_stays_small() {
        assert!(
            std::mem::size_of::<ServiceError>() <= 128,
            "{}",
            std::mem::size_of::<ServiceError>()
        );
    }

    #[test]
    fn statuses_follow_the_contract() {
        let cases: Vec<(ServiceError, Code)> = vec![
            (ServiceError::TableNotFound("s.t".into()), Code::NotFound),
            (
                ServiceError::Ticket(TicketError::Malformed("x".into())),
                Code::InvalidArgument,
            ),
            (
                ServiceError::Ticket(TicketError::BadSignature),
                Code::PermissionDenied,
            ),
            (
                ServiceError::Ticket(TicketError::Expired(std::time::Duration::from_secs(1))),
                Code::FailedPrecondition,
            ),
            (
                ServiceError::Auth(AuthError::Missing),
                Code::Unauthenticated,
            ),
            (
                ServiceError::Catalog(CatalogError::Redshift {
                    schema: "s".into(),
                    source: RedshiftError::Unreachable {
                        address: "h:1".into(),
                        source: crate::redshift::ConnectError::Other("refused"),
                    },
                }),
                Code::Unavailable,
            ),
            (
                ServiceError::Store(StoreError::NotFound {
                    bucket: "b".into(),
                    path: "p".into(),
                }),
                Code::NotFound,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(Status::from(error).code(), code);
        }
        let status = Status::from(ServiceError::Store(StoreError::NotFound {
            bucket: "b".into(),
            path: "p".into(),
        }));
        assert!(status.message().contains("call GetFlightInfo again"));
        let status = Status::from(ServiceError::ViewUnresolved {
            view: "s.lbv".into(),
            source: RedshiftError::Sql {
                code: "42P01".into(),
                message: "relation \"s.t\" does not exist".into(),
            },
        });
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(
            status
                .message()
                .contains("late-binding view s.lbv no longer resolves"),
            "{}",
            status.message()
        );
    }
}
