//! The one place where errors become gRPC statuses. The match is exhaustive (no wildcard arm), so
//! a new error variant is a compile error until someone decides its status. User mistakes are
//! logged at info, server faults at warn; messages carry the whole cause chain, truncated.

use tonic::{Code, Status};

use crate::auth::AuthError;
use crate::catalog::CatalogError;
use crate::normalize::NormalizeError;
use crate::plan::PlanError;
use crate::redshift::RedshiftError;
use crate::stage::{LayoutError, StageError};
use crate::store::{StoreError, error_chain};
use crate::ticket::TicketError;

/// Longest status message sent to a client.
const MAX_MESSAGE: usize = 2048;

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
    /// An Arrow encoding failure.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

fn redshift_code(error: &RedshiftError) -> Code {
    match error {
        RedshiftError::Unreachable { .. } => Code::Unavailable,
        // The server's own login failed: an operator problem, not the client's.
        RedshiftError::Authentication { .. } => Code::Unavailable,
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
                | PlanError::Lookback(_),
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
            Self::Stage(StageError::Manifest { .. }) => (Code::Internal, false),
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
            Self::Store(source) => (
                store_code(source),
                matches!(source, StoreError::NotFound { .. }),
            ),
            Self::Corrupt { .. } | Self::Normalize(_) | Self::Arrow(_) => (Code::Internal, false),
            Self::Auth(AuthError::Forbidden { .. }) => (Code::PermissionDenied, true),
            Self::Auth(AuthError::File { .. }) => (Code::Internal, false),
            Self::Auth(AuthError::Missing | AuthError::Invalid | AuthError::Expired) => {
                (Code::Unauthenticated, true)
            }
        }
    }
}

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Self {
        let (code, client_fault) = error.classify();
        let mut message = error_chain(&error);
        if let ServiceError::Store(StoreError::NotFound { .. }) = &error {
            message
                .push_str(": the staged run expired or was cleaned up; call GetFlightInfo again");
        }
        if message.len() > MAX_MESSAGE {
            let mut end = MAX_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        if client_fault {
            tracing::info!(?code, %message, "request rejected");
        } else {
            tracing::warn!(?code, %message, "request failed");
        }
        Status::new(code, message)
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
                        message: "refused".into(),
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
    }
}
