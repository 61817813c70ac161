//! A panic while serving one call must cost that call only. Without this, a panic in a handler
//! unwinds through hyper's connection task and resets the client's whole HTTP/2 connection (every
//! call multiplexed on it), and a panic inside a DoGet stream ends the stream without an error, so
//! the client may take a cut-short stream for a complete one.
//!
//! Two guards, both turning the panic into `INTERNAL` for the call and logging it at error level
//! with the panic's message (which never goes to the client):
//! - [`layer`] wraps every RPC's handler (tower-http's `CatchPanicLayer`, answering with a gRPC
//!   status in the response headers);
//! - [`catch_stream_panics`] wraps a response stream, whose items are produced after the handler
//!   returned, so a panic there ends the stream with a final `INTERNAL` status.
//!
//! Imports: [`crate::status`] only (the `ErrorInfo` every status carries), so the Flight layer
//! that installs these guards is not imported back.

use std::any::Any;
use std::panic::AssertUnwindSafe;

use futures::{Stream, StreamExt};
use tonic::Status;
use tower_http::catch_panic::{CatchPanicLayer, ResponseForPanic};

use crate::status::{new_request_id, with_error_info};

/// The message clients get for a panic: nothing of the panic itself, which may quote server
/// internals.
pub const PANIC_MESSAGE: &str =
    "internal error: the server failed while handling this call (the server log has the details)";

/// The text of a panic payload (`panic!` with a literal or a formatted message).
fn panic_text(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&'static str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "a panic without a message"
    }
}

/// Logs a caught panic and returns the status the call ends with.
pub fn status_for_panic(payload: &(dyn Any + Send), place: &str) -> Status {
    let request_id = new_request_id();
    tracing::error!(
        panic = panic_text(payload),
        place,
        request_id,
        "a call panicked; it ends with INTERNAL"
    );
    with_error_info(tonic::Code::Internal, PANIC_MESSAGE, "INTERNAL", request_id)
}

/// Answers a panicked handler with a trailers-only gRPC response carrying `INTERNAL`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PanicToStatus;

impl ResponseForPanic for PanicToStatus {
    type ResponseBody = tonic::body::Body;

    fn response_for_panic(
        &mut self,
        payload: Box<dyn Any + Send + 'static>,
    ) -> tonic::codegen::http::Response<Self::ResponseBody> {
        status_for_panic(payload.as_ref(), "handler").into_http()
    }
}

/// The layer that turns a panicking handler into an `INTERNAL` status for that call.
pub fn layer() -> CatchPanicLayer<PanicToStatus> {
    CatchPanicLayer::custom(PanicToStatus)
}

/// `stream` with a panic while producing an item turned into a final `INTERNAL` item (after
/// which the stream ends).
pub fn catch_stream_panics<T, S>(
    stream: S,
    place: &'static str,
) -> impl Stream<Item = Result<T, Status>> + Send + 'static
where
    S: Stream<Item = Result<T, Status>> + Send + 'static,
    T: Send + 'static,
{
    AssertUnwindSafe(stream)
        .catch_unwind()
        .map(move |item| item.unwrap_or_else(|payload| Err(status_for_panic(&*payload, place))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_stream_ends_with_internal() {
        let stream = futures::stream::iter([1, 2, 3]).map(|i| {
            assert!(i < 3, "boom at {i}");
            Ok::<_, Status>(i)
        });
        let items: Vec<_> = catch_stream_panics(stream, "test")
            .map(|item| item.map_err(|s| (s.code(), s.message().to_string())))
            .collect()
            .await;
        assert_eq!(
            items,
            vec![
                Ok(1),
                Ok(2),
                Err((tonic::Code::Internal, PANIC_MESSAGE.to_string()))
            ]
        );
    }

    #[test]
    fn panic_text_reads_both_payload_kinds() {
        let literal: Box<dyn Any + Send> = Box::new("static");
        let formatted: Box<dyn Any + Send> = Box::new(format!("at {}", 1));
        assert_eq!(panic_text(literal.as_ref()), "static");
        assert_eq!(panic_text(formatted.as_ref()), "at 1");
        assert_eq!(
            panic_text(Box::new(7u8).as_ref()),
            "a panic without a message"
        );
    }
}
