//! Redshift's Query-protocol API (`Version=2012-12-01`): the parameters come form-encoded in the
//! body of a POST (or in the query string), the answer is XML.
//!
//! `GetClusterCredentials`: `ClusterIdentifier` (or `CustomDomainName`), `DbUser` (required),
//! `DbName`, `DurationSeconds` (900..3600, default 900), `AutoCreate` (`true`/`false`, default
//! false), `DbGroups.member.N`. Answers
//!
//! ```xml
//! <GetClusterCredentialsResponse xmlns="http://redshift.amazonaws.com/doc/2012-12-01/">
//!   <GetClusterCredentialsResult>
//!     <DbUser>IAM:alice</DbUser><DbPassword>...</DbPassword>
//!     <Expiration>2026-12-03T08:15:00.000Z</Expiration>
//!   </GetClusterCredentialsResult>
//!   <ResponseMetadata><RequestId>uuid</RequestId></ResponseMetadata>
//! </GetClusterCredentialsResponse>
//! ```
//!
//! with `IAM:<DbUser>`, or `IAMA:<DbUser>` when `AutoCreate` is true (as AWS documents).
//! `GetClusterCredentialsWithIAM`: `ClusterIdentifier` (or `CustomDomainName`), `DbName`,
//! `DurationSeconds`; answers `<GetClusterCredentialsWithIAMResponse>` with `DbUser`,
//! `DbPassword`, `Expiration`, `NextRefreshTime`. AWS maps the caller's IAM identity to the
//! user; the double cannot know the caller (it does not verify signatures), so the user is always
//! `IAM:<the emulator's configured user>`.
//!
//! Errors are `<ErrorResponse><Error><Type>Sender</Type><Code>..</Code><Message>..</Message>
//! </Error><RequestId>..</RequestId></ErrorResponse>`: `ClusterNotFound` (404),
//! `InvalidParameterValue` (400; also a missing `DbUser`), `MissingAction` / `InvalidAction`
//! (400), `MissingAuthenticationToken` (403), `IncompleteSignature` (400) and
//! `SignatureDoesNotMatch` (403), as AWS's common errors list them.
//!
//! May import: `super`, `crate::users`.

use std::time::SystemTime;

use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;

use super::sigv4::{self, AuthProblem};
use super::{Answer, MAX_DURATION, MIN_DURATION, iso8601, lifetime};
use crate::session::Shared;
use crate::users::IssueRequest;

const XMLNS: &str = "http://redshift.amazonaws.com/doc/2012-12-01/";
const XML: &str = "text/xml";

/// A Query-protocol error.
#[derive(Debug, Clone, PartialEq, Eq)]
struct QueryError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> QueryError {
    QueryError {
        status,
        code,
        message: message.into(),
    }
}

fn invalid(message: impl Into<String>) -> QueryError {
    error(StatusCode::BAD_REQUEST, "InvalidParameterValue", message)
}

impl From<AuthProblem> for QueryError {
    fn from(p: AuthProblem) -> Self {
        match p {
            AuthProblem::Missing => error(
                StatusCode::FORBIDDEN,
                "MissingAuthenticationToken",
                "Request is missing Authentication Token",
            ),
            AuthProblem::Incomplete(m) => error(StatusCode::BAD_REQUEST, "IncompleteSignature", m),
            AuthProblem::Mismatch(m) => error(StatusCode::FORBIDDEN, "SignatureDoesNotMatch", m),
        }
    }
}

#[derive(Serialize)]
struct ErrorResponse<'a> {
    #[serde(rename = "@xmlns")]
    xmlns: &'static str,
    #[serde(rename = "Error")]
    error: ErrorBody<'a>,
    #[serde(rename = "RequestId")]
    request_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorBody<'a> {
    #[serde(rename = "Type")]
    kind: &'static str,
    code: &'static str,
    message: &'a str,
}

#[derive(Serialize)]
struct ResponseMetadata<'a> {
    #[serde(rename = "RequestId")]
    request_id: &'a str,
}

#[derive(Serialize)]
struct ClusterCredentialsResponse<'a> {
    #[serde(rename = "@xmlns")]
    xmlns: &'static str,
    #[serde(rename = "GetClusterCredentialsResult")]
    result: Credentials<'a>,
    #[serde(rename = "ResponseMetadata")]
    metadata: ResponseMetadata<'a>,
}

#[derive(Serialize)]
struct IamCredentialsResponse<'a> {
    #[serde(rename = "@xmlns")]
    xmlns: &'static str,
    #[serde(rename = "GetClusterCredentialsWithIAMResult")]
    result: Credentials<'a>,
    #[serde(rename = "ResponseMetadata")]
    metadata: ResponseMetadata<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Credentials<'a> {
    db_user: &'a str,
    db_password: &'a str,
    expiration: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_refresh_time: Option<String>,
}

/// The request's parameters, body first, then the query string.
#[derive(Debug, Default)]
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: Option<&str>, body: &[u8]) -> Self {
        let mut all: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
        if let Some(q) = query {
            all.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
        }
        Self(all)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// `Name.member.1`, `Name.member.2`, ... in order.
    fn members(&self, name: &str) -> Vec<String> {
        let prefix = format!("{name}.member.");
        let mut members: Vec<(u32, String)> = self
            .0
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.parse().ok()?, v.clone())))
            .collect();
        members.sort_by_key(|(i, _)| *i);
        members.into_iter().map(|(_, v)| v).collect()
    }
}

/// Answers one Query-protocol request.
pub(super) fn handle(
    shared: &Shared,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    request_id: &str,
) -> Answer {
    match answer(shared, query, headers, body, request_id, SystemTime::now()) {
        Ok(xml) => (StatusCode::OK, XML, xml),
        Err(e) => {
            tracing::info!(code = e.code, message = %e.message, "Redshift API error");
            let xml = quick_xml::se::to_string_with_root(
                "ErrorResponse",
                &ErrorResponse {
                    xmlns: XMLNS,
                    error: ErrorBody {
                        kind: "Sender",
                        code: e.code,
                        message: &e.message,
                    },
                    request_id,
                },
            )
            .unwrap_or_default();
            (e.status, XML, xml)
        }
    }
}

fn answer(
    shared: &Shared,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    request_id: &str,
    now: SystemTime,
) -> Result<String, QueryError> {
    let config = &shared.config;
    sigv4::check(headers, "redshift", &config.region)?;
    let params = Params::parse(query, body);
    let with_iam = match params.get("Action") {
        None => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "MissingAction",
                "Missing Action",
            ));
        }
        Some("GetClusterCredentials") => false,
        Some("GetClusterCredentialsWithIAM") => true,
        Some(other) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "InvalidAction",
                format!("The action {other} is not valid for this web service."),
            ));
        }
    };
    match (
        params.get("ClusterIdentifier"),
        params.get("CustomDomainName"),
    ) {
        (Some(id), _) if id == config.cluster_id => {}
        (Some(id), _) => {
            return Err(error(
                StatusCode::NOT_FOUND,
                "ClusterNotFound",
                format!("Cluster {id} not found."),
            ));
        }
        (None, Some(domain)) if config.custom_domain_name.as_deref() == Some(domain) => {}
        (None, Some(domain)) => {
            return Err(error(
                StatusCode::NOT_FOUND,
                "CustomDomainAssociationNotFoundFault",
                format!("Custom domain {domain} is not associated with a cluster."),
            ));
        }
        (None, None) => {
            return Err(invalid(
                "Either ClusterIdentifier or CustomDomainName must be specified.",
            ));
        }
    }
    let duration = match params.get("DurationSeconds") {
        None => MIN_DURATION,
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|d| (MIN_DURATION..=MAX_DURATION).contains(d))
            .ok_or_else(|| {
                invalid(format!(
                    "The DurationSeconds value {v} is not valid: it must be between {MIN_DURATION} and {MAX_DURATION} seconds."
                ))
            })?,
    };
    let database = params.get("DbName").map(str::to_owned);
    let (prefix, db_user, auto_create, groups) = if with_iam {
        ("IAM", config.user.clone(), true, Vec::new())
    } else {
        let user = params
            .get("DbUser")
            .ok_or_else(|| invalid("The parameter DbUser must be specified."))?;
        check_db_user(user)?;
        let auto_create = match params.get("AutoCreate").map(str::to_ascii_lowercase) {
            None => false,
            Some(v) if v == "true" => true,
            Some(v) if v == "false" => false,
            Some(v) => {
                return Err(invalid(format!(
                    "Invalid value '{v}' for AutoCreate: it must be true or false."
                )));
            }
        };
        let prefix = if auto_create { "IAMA" } else { "IAM" };
        (
            prefix,
            user.to_owned(),
            auto_create,
            params.members("DbGroups"),
        )
    };
    let issued = shared.users.issue(
        &IssueRequest {
            prefix,
            db_user: &db_user,
            auto_create,
            groups,
            database,
            lifetime: lifetime(shared, duration),
            request_id: request_id.to_owned(),
        },
        now,
    );
    tracing::info!(user = %issued.user, expires = %iso8601(issued.expires), "issued temporary credentials");
    let result = Credentials {
        db_user: &issued.user,
        db_password: issued.password.expose(),
        expiration: iso8601(issued.expires),
        next_refresh_time: with_iam.then(|| iso8601(issued.expires)),
    };
    let metadata = ResponseMetadata { request_id };
    let xml = if with_iam {
        quick_xml::se::to_string_with_root(
            "GetClusterCredentialsWithIAMResponse",
            &IamCredentialsResponse {
                xmlns: XMLNS,
                result,
                metadata,
            },
        )
    } else {
        quick_xml::se::to_string_with_root(
            "GetClusterCredentialsResponse",
            &ClusterCredentialsResponse {
                xmlns: XMLNS,
                result,
                metadata,
            },
        )
    };
    xml.map_err(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalFailure",
            e.to_string(),
        )
    })
}

/// AWS's constraints on `DbUser`: 1 to 64 characters, letters, digits, `_ + . @ -`, starting
/// with a letter, not `PUBLIC` (which also rules out `:` and `/`).
fn check_db_user(user: &str) -> Result<(), QueryError> {
    let ok = (1..=64).contains(&user.len())
        && user.starts_with(|c: char| c.is_ascii_alphabetic())
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+.@-".contains(c))
        && !user.eq_ignore_ascii_case("public");
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "The DbUser value {user} is not valid: it must be 1 to 64 letters, digits or _ + . @ -, start with a letter and not be PUBLIC."
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_in_order() {
        let p = Params::parse(
            Some("DbGroups.member.2=b"),
            b"Action=GetClusterCredentials&DbGroups.member.10=c&DbGroups.member.1=a&DbUser=",
        );
        assert_eq!(p.members("DbGroups"), vec!["a", "b", "c"]);
        assert_eq!(p.get("Action"), Some("GetClusterCredentials"));
        assert_eq!(p.get("DbUser"), None);
    }

    #[test]
    fn db_user_constraints() {
        assert!(check_db_user("alice.o-k+1@x_y").is_ok());
        for bad in ["", "1abc", "IAM:alice", "a/b", "public", &"a".repeat(65)] {
            assert_eq!(
                check_db_user(bad).unwrap_err().code,
                "InvalidParameterValue",
                "{bad}"
            );
        }
    }

    #[test]
    fn answers_serialize_like_aws() {
        let xml = quick_xml::se::to_string_with_root(
            "GetClusterCredentialsResponse",
            &ClusterCredentialsResponse {
                xmlns: XMLNS,
                result: Credentials {
                    db_user: "IAM:alice",
                    db_password: "p<&>w",
                    expiration: "2026-12-03T08:15:00.000Z".into(),
                    next_refresh_time: None,
                },
                metadata: ResponseMetadata { request_id: "rid" },
            },
        )
        .unwrap();
        assert_eq!(
            xml,
            "<GetClusterCredentialsResponse xmlns=\"http://redshift.amazonaws.com/doc/2012-12-01/\">\
             <GetClusterCredentialsResult><DbUser>IAM:alice</DbUser><DbPassword>p&lt;&amp;&gt;w</DbPassword>\
             <Expiration>2026-12-03T08:15:00.000Z</Expiration></GetClusterCredentialsResult>\
             <ResponseMetadata><RequestId>rid</RequestId></ResponseMetadata></GetClusterCredentialsResponse>"
        );
        let xml = quick_xml::se::to_string_with_root(
            "ErrorResponse",
            &ErrorResponse {
                xmlns: XMLNS,
                error: ErrorBody {
                    kind: "Sender",
                    code: "ClusterNotFound",
                    message: "Cluster x not found.",
                },
                request_id: "rid",
            },
        )
        .unwrap();
        assert_eq!(
            xml,
            "<ErrorResponse xmlns=\"http://redshift.amazonaws.com/doc/2012-12-01/\"><Error>\
             <Type>Sender</Type><Code>ClusterNotFound</Code><Message>Cluster x not found.</Message>\
             </Error><RequestId>rid</RequestId></ErrorResponse>"
        );
    }
}
