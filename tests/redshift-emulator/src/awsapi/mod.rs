//! The AWS API double: Redshift's control-plane calls that issue temporary database
//! credentials, served over plain HTTP/1 on `--aws-api-listen`, with AWS's wire protocols, so a
//! client built on an AWS SDK (or the SigV4 signer) talks to it as to AWS:
//!
//! * Redshift, Query protocol, signing name `redshift` ([`redshift`]):
//!   `Action=GetClusterCredentials` and `Action=GetClusterCredentialsWithIAM`, XML answers and
//!   `<ErrorResponse>` errors;
//! * Redshift Serverless, JSON 1.1 protocol, signing name `redshift-serverless`
//!   ([`serverless`]): `X-Amz-Target: RedshiftServerless.GetCredentials`, JSON answers and
//!   `{"__type": ..., "message": ...}` errors.
//!
//! Both live on one endpoint, any path: a request with `X-Amz-Target` is JSON, any other Query.
//! Every request must carry a well-formed SigV4 `Authorization` header scoped to the right service
//! and to the cluster's region (`--region`); signatures are not verified (see [`sigv4`]). Every
//! answer has an `x-amzn-RequestId` header.
//!
//! The passwords issued are recorded in [`crate::users`], where logins check them. Their lifetime
//! is the call's `DurationSeconds` (900..3600, default 900), unless the knob
//! `iam_credential_seconds` overrides it.
//!
//! May import: `crate::session` (the shared state), `crate::users`, `crate::config`,
//! `crate::error`.

mod redshift;
mod serverless;
pub(crate) mod sigv4;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::session::Shared;

/// Shortest and longest `DurationSeconds`, and the default.
pub(crate) const MIN_DURATION: u64 = 900;
/// See [`MIN_DURATION`].
pub(crate) const MAX_DURATION: u64 = 3600;

/// A new AWS request id (a random UUID).
pub(crate) fn new_request_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

/// How long credentials asked for `asked` seconds live: the knob `iam_credential_seconds`, if
/// set, else `asked`.
pub(crate) fn lifetime(shared: &Shared, asked: u64) -> Duration {
    Duration::from_secs(shared.knobs.get().iam_credential_seconds.unwrap_or(asked))
}

/// `2026-12-03T08:15:00.000Z`, as the Query protocol writes timestamps.
pub(crate) fn iso8601(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Seconds since the epoch with milliseconds, as the JSON protocol writes timestamps.
pub(crate) fn epoch_seconds(t: SystemTime) -> f64 {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    (d.as_millis() as f64) / 1000.0
}

/// Serves the API on `listener` until `shutdown` turns true.
pub(crate) fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let app = Router::new().fallback(handle).with_state(shared);
    tokio::spawn(async move {
        let stop = async move {
            while !*shutdown.borrow_and_update() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::warn!(error = %e, "the AWS API server stopped");
        }
    })
}

/// One API request.
async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = new_request_id();
    let (status, content_type, body) = match headers.get("x-amz-target") {
        Some(target) => serverless::handle(&shared, target, &headers, &body, &request_id),
        None => redshift::handle(&shared, uri.query(), &headers, &body, &request_id),
    };
    tracing::info!(%method, %uri, status = status.as_u16(), %request_id, "AWS API request");
    let mut response = (status, body).into_response();
    let out = response.headers_mut();
    out.insert("content-type", HeaderValue::from_static(content_type));
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        out.insert("x-amzn-requestid", id);
    }
    response
}

/// A protocol handler's answer: status, content type, body.
pub(crate) type Answer = (StatusCode, &'static str, String);
