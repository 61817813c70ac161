//! Redshift Serverless's JSON 1.1 API: `POST` with `X-Amz-Target: RedshiftServerless.<Operation>`
//! and `Content-Type: application/x-amz-json-1.1`; only `GetCredentials` is served.
//!
//! Request `{"workgroupName": "..", "dbName": "..", "durationSeconds": 900}` (or
//! `customDomainName` instead of `workgroupName`; `durationSeconds` 900..3600, default 900).
//! Answer `{"dbUser": "IAMR:<configured user>", "dbPassword": "..", "expiration": <epoch
//! seconds>, "nextRefreshTime": <epoch seconds>}`: AWS derives the user from the caller's IAM
//! identity, which the double cannot know, so it is always the configured user (a role:
//! `IAMR:`), created if missing.
//!
//! Errors are HTTP 400 with `{"__type": "<code>", "message": ".."}`: `ResourceNotFoundException`
//! (unknown workgroup: `Serverless workgroup x not found.`), `ValidationException`,
//! `UnknownOperationException`, `SerializationException`, `MissingAuthenticationTokenException`,
//! `IncompleteSignatureException`, `InvalidSignatureException`.
//!
//! May import: `super`, `crate::users`.

use std::time::SystemTime;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};

use super::sigv4::{self, AuthProblem};
use super::{Answer, MAX_DURATION, MIN_DURATION, epoch_seconds, lifetime};
use crate::session::Shared;
use crate::users::IssueRequest;

const JSON: &str = "application/x-amz-json-1.1";
const TARGET: &str = "RedshiftServerless.GetCredentials";

#[derive(Debug, Clone, PartialEq, Eq)]
struct JsonError {
    kind: &'static str,
    message: String,
}

fn error(kind: &'static str, message: impl Into<String>) -> JsonError {
    JsonError {
        kind,
        message: message.into(),
    }
}

impl From<AuthProblem> for JsonError {
    fn from(p: AuthProblem) -> Self {
        match p {
            AuthProblem::Missing => error(
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            ),
            AuthProblem::Incomplete(m) => error("IncompleteSignatureException", m),
            AuthProblem::Mismatch(m) => error("InvalidSignatureException", m),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    #[serde(rename = "__type")]
    kind: &'a str,
    message: &'a str,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetCredentialsRequest {
    workgroup_name: Option<String>,
    custom_domain_name: Option<String>,
    db_name: Option<String>,
    duration_seconds: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GetCredentialsResponse<'a> {
    db_user: &'a str,
    db_password: &'a str,
    expiration: f64,
    next_refresh_time: f64,
}

/// Answers one JSON-protocol request.
pub(super) fn handle(
    shared: &Shared,
    target: &HeaderValue,
    headers: &HeaderMap,
    body: &[u8],
    request_id: &str,
) -> Answer {
    match answer(shared, target, headers, body, request_id, SystemTime::now()) {
        Ok(json) => (StatusCode::OK, JSON, json),
        Err(e) => {
            tracing::info!(code = e.kind, message = %e.message, "Redshift Serverless API error");
            let body = serde_json::to_string(&ErrorBody {
                kind: e.kind,
                message: &e.message,
            })
            .unwrap_or_default();
            (StatusCode::BAD_REQUEST, JSON, body)
        }
    }
}

fn answer(
    shared: &Shared,
    target: &HeaderValue,
    headers: &HeaderMap,
    body: &[u8],
    request_id: &str,
    now: SystemTime,
) -> Result<String, JsonError> {
    let config = &shared.config;
    sigv4::check(headers, "redshift-serverless", &config.region)?;
    if target.to_str().ok() != Some(TARGET) {
        return Err(error(
            "UnknownOperationException",
            format!("Unknown operation {}", target.to_str().unwrap_or_default()),
        ));
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/x-amz-json-1.") {
        return Err(error(
            "SerializationException",
            format!("Content-Type must be {JSON}, not '{content_type}'"),
        ));
    }
    let request: GetCredentialsRequest = if body.is_empty() {
        GetCredentialsRequest::default()
    } else {
        serde_json::from_slice(body).map_err(|e| {
            error(
                "SerializationException",
                format!("cannot read the request: {e}"),
            )
        })?
    };
    match (&request.workgroup_name, &request.custom_domain_name) {
        (Some(w), None) if *w == config.workgroup => {}
        (Some(w), None) => {
            return Err(error(
                "ResourceNotFoundException",
                format!("Serverless workgroup {w} not found."),
            ));
        }
        (None, Some(d)) if config.custom_domain_name.as_deref() == Some(d.as_str()) => {}
        (None, Some(d)) => {
            return Err(error(
                "ResourceNotFoundException",
                format!("Custom domain {d} not found."),
            ));
        }
        _ => {
            return Err(error(
                "ValidationException",
                "Exactly one of workgroupName or customDomainName must be given.",
            ));
        }
    }
    let duration = match request.duration_seconds {
        None => MIN_DURATION,
        Some(d) if d < MIN_DURATION as i64 => {
            return Err(error(
                "ValidationException",
                format!(
                    "1 validation error detected: Value '{d}' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to {MIN_DURATION}"
                ),
            ));
        }
        Some(d) if d > MAX_DURATION as i64 => {
            return Err(error(
                "ValidationException",
                format!(
                    "1 validation error detected: Value '{d}' at 'durationSeconds' failed to satisfy constraint: Member must have value less than or equal to {MAX_DURATION}"
                ),
            ));
        }
        Some(d) => d as u64,
    };
    let issued = shared.users.issue(
        &IssueRequest {
            prefix: "IAMR",
            db_user: &config.user,
            auto_create: true,
            groups: Vec::new(),
            database: request.db_name,
            lifetime: lifetime(shared, duration),
            request_id: request_id.to_owned(),
        },
        now,
    );
    tracing::info!(user = %issued.user, "issued temporary credentials (Serverless)");
    let expires = epoch_seconds(issued.expires);
    serde_json::to_string(&GetCredentialsResponse {
        db_user: &issued.user,
        db_password: issued.password.expose(),
        expiration: expires,
        next_refresh_time: expires,
    })
    .map_err(|e| error("InternalServerException", e.to_string()))
}
