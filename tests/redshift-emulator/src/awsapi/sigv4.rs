//! The shape of an AWS Signature Version 4 `Authorization` header:
//!
//! ```text
//! AWS4-HMAC-SHA256 Credential=<key id>/<yyyymmdd>/<region>/<service>/aws4_request,
//!     SignedHeaders=host;x-amz-date[;...], Signature=<64 hex digits>
//! ```
//!
//! plus an `X-Amz-Date` (or `Date`) header whose day matches the scope. The service and region in
//! the credential scope must be the ones the endpoint serves, as AWS checks them, with AWS's
//! messages. The signature itself is **not** verified: the keys come from moto's STS (or
//! anywhere), and the emulator does not know their secrets; any well-formed signature passes.
//!
//! May import: nothing of the crate.

use axum::http::HeaderMap;

/// What is wrong with a request's authentication, in AWS's three classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthProblem {
    /// No `Authorization` header.
    Missing,
    /// The header is not a complete SigV4 header (`IncompleteSignature`).
    Incomplete(String),
    /// The header is complete but scoped or built wrongly (`SignatureDoesNotMatch` /
    /// `InvalidSignatureException`).
    Mismatch(String),
}

/// A well-formed signature's credential scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scope {
    /// The access key id.
    pub(crate) access_key_id: String,
    /// `yyyymmdd`.
    pub(crate) date: String,
    /// The region.
    pub(crate) region: String,
    /// The signing name.
    pub(crate) service: String,
}

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Checks the `Authorization` header of a request to `service` in `region`.
pub(crate) fn check(
    headers: &HeaderMap,
    service: &str,
    region: &str,
) -> Result<Scope, AuthProblem> {
    let Some(value) = headers.get("authorization") else {
        return Err(AuthProblem::Missing);
    };
    let value = value
        .to_str()
        .map_err(|_| AuthProblem::Incomplete("Authorization header is not ASCII.".to_owned()))?;
    let rest = value
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with(' '))
        .ok_or_else(|| {
            AuthProblem::Incomplete(format!(
                "Authorization header requires the {ALGORITHM} algorithm."
            ))
        })?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let Some((key, val)) = part.trim().split_once('=') else {
            continue;
        };
        match key {
            "Credential" => credential = Some(val),
            "SignedHeaders" => signed_headers = Some(val),
            "Signature" => signature = Some(val),
            _ => {}
        }
    }
    let mut missing = String::new();
    for (name, present) in [
        ("Credential", credential.is_some()),
        ("Signature", signature.is_some()),
        ("SignedHeaders", signed_headers.is_some()),
    ] {
        if !present {
            missing.push_str(&format!(
                "Authorization header requires '{name}' parameter. "
            ));
        }
    }
    let date_header = headers
        .get("x-amz-date")
        .or_else(|| headers.get("date"))
        .and_then(|v| v.to_str().ok());
    if date_header.is_none() {
        missing.push_str(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ",
        );
    }
    let (Some(credential), Some(signed_headers), Some(signature), Some(date_header)) =
        (credential, signed_headers, signature, date_header)
    else {
        return Err(AuthProblem::Incomplete(missing.trim_end().to_owned()));
    };
    let parts: Vec<&str> = credential.split('/').collect();
    let [key, date, scope_region, scope_service, terminator] = parts[..] else {
        return Err(AuthProblem::Incomplete(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{credential}'"
        )));
    };
    if key.is_empty() || signature.is_empty() {
        return Err(AuthProblem::Incomplete(
            "Authorization header requires 'Credential' and 'Signature' values.".to_owned(),
        ));
    }
    if terminator != "aws4_request" {
        return Err(AuthProblem::Mismatch(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'. "
        )));
    }
    if scope_service != service {
        return Err(AuthProblem::Mismatch(format!(
            "Credential should be scoped to correct service: '{service}'. "
        )));
    }
    if scope_region != region {
        return Err(AuthProblem::Mismatch(format!(
            "Credential should be scoped to a valid region, not '{scope_region}'. "
        )));
    }
    // X-Amz-Date is yyyymmddThhmmssZ; a Date header would be RFC 1123 (not checked further)
    if headers.contains_key("x-amz-date") && !date_header.starts_with(date) {
        return Err(AuthProblem::Mismatch(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{date}' != '{}', from 'x-amz-date'.",
            date_header.get(..8).unwrap_or(date_header)
        )));
    }
    if !signed_headers.split(';').any(|h| h == "host") {
        return Err(AuthProblem::Mismatch(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".to_owned(),
        ));
    }
    Ok(Scope {
        access_key_id: key.to_owned(),
        date: date.to_owned(),
        region: scope_region.to_owned(),
        service: scope_service.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>, date: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert("authorization", a.parse().unwrap());
        }
        if let Some(d) = date {
            h.insert("x-amz-date", d.parse().unwrap());
        }
        h
    }

    const GOOD: &str = "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/20261203/us-east-1/redshift/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn accepts_a_well_formed_header() {
        let scope = check(
            &headers(Some(GOOD), Some("20261203T081500Z")),
            "redshift",
            "us-east-1",
        )
        .unwrap();
        assert_eq!(
            scope,
            Scope {
                access_key_id: "ASIAEXAMPLE".into(),
                date: "20261203".into(),
                region: "us-east-1".into(),
                service: "redshift".into(),
            }
        );
    }

    #[test]
    fn classifies_problems_like_aws() {
        let date = Some("20261203T081500Z");
        assert_eq!(
            check(&headers(None, date), "redshift", "us-east-1"),
            Err(AuthProblem::Missing)
        );
        let Err(AuthProblem::Incomplete(m)) = check(
            &headers(
                Some("AWS4-HMAC-SHA256 Credential=a/b/c/d/aws4_request"),
                date,
            ),
            "redshift",
            "us-east-1",
        ) else {
            panic!()
        };
        assert!(
            m.contains("requires 'Signature'") && m.contains("requires 'SignedHeaders'"),
            "{m}"
        );
        assert!(matches!(
            check(&headers(Some("Bearer xyz"), date), "redshift", "us-east-1"),
            Err(AuthProblem::Incomplete(_))
        ));
        let Err(AuthProblem::Incomplete(m)) =
            check(&headers(Some(GOOD), None), "redshift", "us-east-1")
        else {
            panic!()
        };
        assert!(m.contains("X-Amz-Date"), "{m}");
        assert_eq!(
            check(
                &headers(Some(GOOD), date),
                "redshift-serverless",
                "us-east-1"
            ),
            Err(AuthProblem::Mismatch(
                "Credential should be scoped to correct service: 'redshift-serverless'. ".into()
            ))
        );
        assert_eq!(
            check(&headers(Some(GOOD), date), "redshift", "eu-west-1"),
            Err(AuthProblem::Mismatch(
                "Credential should be scoped to a valid region, not 'us-east-1'. ".into()
            ))
        );
        assert!(matches!(
            check(&headers(Some(GOOD), Some("20261204T000000Z")), "redshift", "us-east-1"),
            Err(AuthProblem::Mismatch(m)) if m.contains("'20261203' != '20261204'")
        ));
        let no_host = GOOD.replace("content-type;host;", "content-type;");
        assert!(matches!(
            check(&headers(Some(&no_host), date), "redshift", "us-east-1"),
            Err(AuthProblem::Mismatch(m)) if m.contains("'Host'")
        ));
        let four = GOOD.replace("/aws4_request", "");
        assert!(matches!(
            check(&headers(Some(&four), date), "redshift", "us-east-1"),
            Err(AuthProblem::Incomplete(m)) if m.contains("exactly 5")
        ));
    }
}
