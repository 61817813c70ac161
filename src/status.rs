//! What every gRPC status this server sends carries besides its code and message: a
//! `google.rpc.ErrorInfo` detail with a stable reason, the domain [`ERROR_DOMAIN`] and a
//! `request_id` that the server's log shows beside the failure. Both the error mapping
//! (`flight::error`) and the panic guards ([`crate::panics`]) build their statuses here, so neither
//! imports the other.
//!
//! A leaf: it imports nothing from the crate.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// `ErrorInfo.domain` of every status this server sends.
pub const ERROR_DOMAIN: &str = "redshift-flight";

/// A fresh request id: 64 random bits in hex, logged with the error and sent to the client.
pub fn new_request_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// A status of `code` and `message` with an `ErrorInfo` detail: `reason`, the domain
/// [`ERROR_DOMAIN`] and the metadata `request_id`.
pub fn with_error_info(
    code: Code,
    message: impl Into<String>,
    reason: &str,
    request_id: String,
) -> Status {
    let details = ErrorDetails::with_error_info(
        reason,
        ERROR_DOMAIN,
        [("request_id".to_string(), request_id)],
    );
    Status::with_error_details(code, message, details)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_reason_domain_and_request_id() {
        let id = new_request_id();
        assert_eq!(id.len(), 16);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        let status = with_error_info(Code::NotFound, "gone", "RUN_EXPIRED", id.clone());
        assert_eq!((status.code(), status.message()), (Code::NotFound, "gone"));
        let info = status
            .get_details_error_info()
            .expect("an ErrorInfo detail");
        assert_eq!(info.reason, "RUN_EXPIRED");
        assert_eq!(info.domain, ERROR_DOMAIN);
        assert_eq!(info.metadata.get("request_id"), Some(&id));
    }
}
