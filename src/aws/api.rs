//! [`AwsApi`]: the three AWS calls behind Redshift logins without a stored password, signed with
//! the SDK's SigV4 signer and sent with the HTTP client object_store already uses.
//!
//! - Redshift `GetClusterCredentials` / `GetClusterCredentialsWithIAM` (the Query protocol: a
//!   form-encoded POST, an XML answer);
//! - Redshift Serverless `GetCredentials` and Secrets Manager `GetSecretValue` (the JSON 1.1
//!   protocol: a JSON POST naming the operation in `X-Amz-Target`).
//!
//! Endpoints follow the SDK's rules: `AWS_ENDPOINT_URL_<SERVICE>`, then `AWS_ENDPOINT_URL`, then
//! the profile's `services` section and `endpoint_url`, else the service's regional endpoint.
//!
//! May import: `super` and `crate::store::error_chain`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_types::service_config::ServiceConfigKey;
use secrecy::SecretString;
use serde::Deserialize;

use super::{Aws, AwsError, CachedCredentials};
use crate::store::error_chain;

/// An AWS service the server calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Amazon Redshift (provisioned clusters).
    Redshift,
    /// Amazon Redshift Serverless.
    RedshiftServerless,
    /// AWS Secrets Manager.
    SecretsManager,
}

impl Service {
    /// The SDK's service id (the environment and profile names derive from it).
    fn id(self) -> &'static str {
        match self {
            Self::Redshift => "Redshift",
            Self::RedshiftServerless => "Redshift Serverless",
            Self::SecretsManager => "Secrets Manager",
        }
    }

    /// The name requests are signed for.
    fn signing_name(self) -> &'static str {
        match self {
            Self::Redshift => "redshift",
            Self::RedshiftServerless => "redshift-serverless",
            Self::SecretsManager => "secretsmanager",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// Temporary (or rotated) database credentials: the user to log in as, its password, and when
/// they expire (`None`: when rotated).
#[derive(Clone)]
pub struct DbCredentials {
    /// The user to log in as (`IAM:name` for GetClusterCredentials).
    pub user: String,
    /// Its password.
    pub password: SecretString,
    /// Expiry.
    pub expires: Option<SystemTime>,
}

impl fmt::Debug for DbCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbCredentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("expires", &self.expires)
            .finish()
    }
}

/// What `GetClusterCredentials` is asked for.
#[derive(Debug, Clone)]
pub struct ClusterCredentialsRequest<'a> {
    /// `ClusterIdentifier`.
    pub cluster: &'a str,
    /// `DbUser`; `None`: `GetClusterCredentialsWithIAM`.
    pub db_user: Option<&'a str>,
    /// `DbName`.
    pub database: &'a str,
    /// `DurationSeconds`.
    pub duration: Duration,
    /// `AutoCreate`.
    pub auto_create: bool,
    /// `DbGroups`.
    pub db_groups: &'a [String],
}

/// Signed calls to Redshift, Redshift Serverless and Secrets Manager.
#[derive(Debug, Clone)]
pub struct AwsApi {
    aws: Aws,
    credentials: Arc<CachedCredentials>,
    region: String,
    http: reqwest::Client,
}

impl AwsApi {
    /// Calls signed with `credentials` for `aws`'s region.
    pub fn new(aws: &Aws, credentials: Arc<CachedCredentials>) -> Result<Self, AwsError> {
        let region = aws.region().ok_or(AwsError::NoRegion)?.to_string();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| AwsError::Credentials(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            aws: aws.clone(),
            credentials,
            region,
            http,
        })
    }

    /// The endpoint of `service`.
    fn endpoint(&self, service: Service) -> String {
        let configured = self.aws.sdk_config().service_config().and_then(|config| {
            let key = ServiceConfigKey::builder()
                .service_id(service.id())
                .env("AWS_ENDPOINT_URL")
                .profile("endpoint_url")
                .build()
                .ok()?;
            config.load_config(key)
        });
        configured
            .or_else(|| self.aws.sdk_config().endpoint_url().map(str::to_string))
            .unwrap_or_else(|| {
                let host = match service {
                    Service::Redshift => "redshift",
                    Service::RedshiftServerless => "redshift-serverless",
                    Service::SecretsManager => "secretsmanager",
                };
                let suffix = if self.region.starts_with("cn-") {
                    "amazonaws.com.cn"
                } else {
                    "amazonaws.com"
                };
                format!("https://{host}.{}.{suffix}", self.region)
            })
    }

    /// POSTs `body` to `service`, signed; returns the answer's status and body.
    async fn post(
        &self,
        service: Service,
        operation: &'static str,
        content_type: &str,
        target: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>), AwsError> {
        let endpoint = self.endpoint(service);
        let url = format!("{}/", endpoint.trim_end_matches('/'));
        let credentials = self.credentials.get().await?;
        let identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(service.signing_name())
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| AwsError::Credentials(format!("cannot sign: {e}")))?
            .into();
        let mut headers = vec![("content-type", content_type)];
        if let Some(target) = target {
            headers.push(("x-amz-target", target));
        }
        let mut request = http::Request::builder().method("POST").uri(&url);
        for (name, value) in &headers {
            request = request.header(*name, *value);
        }
        let signable = SignableRequest::new(
            "POST",
            url.as_str(),
            headers.iter().copied(),
            SignableBody::Bytes(&body),
        )
        .map_err(|e| AwsError::Credentials(format!("cannot sign: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| AwsError::Credentials(format!("cannot sign: {e}")))?
            .into_parts();
        let mut request = request
            .body(body.clone())
            .map_err(|e| AwsError::Unreachable {
                service,
                endpoint: endpoint.clone(),
                message: e.to_string(),
            })?;
        instructions.apply_to_request_http1x(&mut request);
        let unreachable = |e: reqwest::Error| AwsError::Unreachable {
            service,
            endpoint: endpoint.clone(),
            message: error_chain(&e),
        };
        let request = reqwest::Request::try_from(request).map_err(unreachable)?;
        let response = self.http.execute(request).await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(unreachable)?;
        tracing::debug!(%service, operation, status, "AWS call");
        Ok((status, bytes.to_vec()))
    }

    /// Redshift `GetClusterCredentials` (or `GetClusterCredentialsWithIAM` without a user).
    pub async fn cluster_credentials(
        &self,
        request: &ClusterCredentialsRequest<'_>,
    ) -> Result<DbCredentials, AwsError> {
        let operation = match request.db_user {
            Some(_) => "GetClusterCredentials",
            None => "GetClusterCredentialsWithIAM",
        };
        let form = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("Action", operation)
                .append_pair("Version", "2012-12-01")
                .append_pair("ClusterIdentifier", request.cluster)
                .append_pair("DbName", request.database)
                .append_pair("DurationSeconds", &request.duration.as_secs().to_string());
            if let Some(user) = request.db_user {
                form.append_pair("DbUser", user).append_pair(
                    "AutoCreate",
                    if request.auto_create { "true" } else { "false" },
                );
                for (i, group) in request.db_groups.iter().enumerate() {
                    form.append_pair(&format!("DbGroups.member.{}", i + 1), group);
                }
            }
            form.finish()
        };
        let (status, body) = self
            .post(
                Service::Redshift,
                operation,
                "application/x-www-form-urlencoded; charset=utf-8",
                None,
                form.into_bytes(),
            )
            .await?;
        let text = String::from_utf8_lossy(&body);
        if !(200..300).contains(&status) {
            let error: QueryErrorResponse = quick_xml::de::from_str(&text).unwrap_or_default();
            return Err(AwsError::Api {
                service: Service::Redshift,
                operation,
                status,
                code: error.error.code,
                message: error.error.message,
            });
        }
        let answer: ClusterCredentialsResponse =
            quick_xml::de::from_str(&text).map_err(|e| AwsError::BadAnswer {
                service: Service::Redshift,
                operation,
                message: e.to_string(),
            })?;
        let result = answer.result;
        let expires = chrono::DateTime::parse_from_rfc3339(&result.expiration).map_err(|e| {
            AwsError::BadAnswer {
                service: Service::Redshift,
                operation,
                message: format!("Expiration {:?}: {e}", result.expiration),
            }
        })?;
        Ok(DbCredentials {
            user: result.db_user,
            password: SecretString::from(result.db_password),
            expires: Some(SystemTime::from(expires)),
        })
    }

    /// Sends a JSON 1.1 request and returns the answer's JSON; errors are AWS's `__type` and
    /// message.
    async fn json(
        &self,
        service: Service,
        operation: &'static str,
        target: &str,
        body: serde_json::Value,
    ) -> Result<Vec<u8>, AwsError> {
        let (status, answer) = self
            .post(
                service,
                operation,
                "application/x-amz-json-1.1",
                Some(target),
                body.to_string().into_bytes(),
            )
            .await?;
        if (200..300).contains(&status) {
            return Ok(answer);
        }
        let error: JsonError = serde_json::from_slice(&answer).unwrap_or_default();
        Err(AwsError::Api {
            service,
            operation,
            status,
            // `__type` may carry a namespace: `com.amazonaws...#ResourceNotFoundException`.
            code: error
                .kind
                .rsplit('#')
                .next()
                .unwrap_or_default()
                .to_string(),
            message: error.message,
        })
    }

    /// Redshift Serverless `GetCredentials` for `workgroup`.
    pub async fn serverless_credentials(
        &self,
        workgroup: &str,
        database: &str,
        duration: Duration,
    ) -> Result<DbCredentials, AwsError> {
        let operation = "GetCredentials";
        let answer = self
            .json(
                Service::RedshiftServerless,
                operation,
                "RedshiftServerless.GetCredentials",
                serde_json::json!({
                    "workgroupName": workgroup,
                    "dbName": database,
                    "durationSeconds": duration.as_secs(),
                }),
            )
            .await?;
        let answer: ServerlessCredentials =
            serde_json::from_slice(&answer).map_err(|e| AwsError::BadAnswer {
                service: Service::RedshiftServerless,
                operation,
                message: e.to_string(),
            })?;
        let expires = answer
            .expiration
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(s));
        Ok(DbCredentials {
            user: answer.db_user,
            password: SecretString::from(answer.db_password),
            expires,
        })
    }

    /// Secrets Manager `GetSecretValue` of `secret`, read as `{"username": .., "password": ..}`.
    pub async fn secret_login(&self, secret: &str) -> Result<DbCredentials, AwsError> {
        let operation = "GetSecretValue";
        let bad = |message: String| AwsError::BadAnswer {
            service: Service::SecretsManager,
            operation,
            message,
        };
        let answer = self
            .json(
                Service::SecretsManager,
                operation,
                "secretsmanager.GetSecretValue",
                serde_json::json!({ "SecretId": secret }),
            )
            .await?;
        // Neither the answer nor serde's messages about it may reach an error: they could
        // quote the secret.
        let answer: SecretValue = serde_json::from_slice(&answer)
            .map_err(|_| bad("not the JSON of GetSecretValue".into()))?;
        let text = answer
            .secret_string
            .ok_or_else(|| bad("the secret has no SecretString (a binary secret?)".into()))?;
        let login: SecretLogin = serde_json::from_str(&text).map_err(|_| {
            bad(format!(
                "secret {secret} is not a JSON object with \"username\" and \"password\" strings"
            ))
        })?;
        Ok(DbCredentials {
            user: login.username,
            password: SecretString::from(login.password),
            expires: None,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
struct QueryErrorResponse {
    #[serde(rename = "Error", default)]
    error: QueryError,
}

#[derive(Debug, Default, Deserialize)]
struct QueryError {
    #[serde(rename = "Code", default)]
    code: String,
    #[serde(rename = "Message", default)]
    message: String,
}

#[derive(Deserialize)]
struct ClusterCredentialsResponse {
    #[serde(
        rename = "GetClusterCredentialsResult",
        alias = "GetClusterCredentialsWithIAMResult"
    )]
    result: ClusterCredentialsResult,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ClusterCredentialsResult {
    db_user: String,
    db_password: String,
    expiration: String,
}

#[derive(Debug, Default, Deserialize)]
struct JsonError {
    #[serde(rename = "__type", default)]
    kind: String,
    #[serde(alias = "Message", default)]
    message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServerlessCredentials {
    db_user: String,
    db_password: String,
    expiration: Option<f64>,
}

#[derive(Deserialize)]
struct SecretValue {
    #[serde(rename = "SecretString")]
    secret_string: Option<String>,
}

#[derive(Deserialize)]
struct SecretLogin {
    username: String,
    password: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_credentials_are_read_from_either_answer() {
        for (root, result) in [
            (
                "GetClusterCredentialsResponse",
                "GetClusterCredentialsResult",
            ),
            (
                "GetClusterCredentialsWithIAMResponse",
                "GetClusterCredentialsWithIAMResult",
            ),
        ] {
            let xml = format!(
                "<{root} xmlns=\"http://redshift.amazonaws.com/doc/2012-12-01/\"><{result}>\
                 <DbUser>IAM:alice</DbUser><DbPassword>pw</DbPassword>\
                 <Expiration>2026-12-03T08:15:00.000Z</Expiration></{result}>\
                 <ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></{root}>"
            );
            let answer: ClusterCredentialsResponse = quick_xml::de::from_str(&xml).unwrap();
            assert_eq!(answer.result.db_user, "IAM:alice");
            assert_eq!(answer.result.db_password, "pw");
            assert_eq!(answer.result.expiration, "2026-12-03T08:15:00.000Z");
        }
    }

    #[test]
    fn query_errors_give_code_and_message() {
        let xml = "<ErrorResponse xmlns=\"http://redshift.amazonaws.com/doc/2012-12-01/\">\
                   <Error><Type>Sender</Type><Code>ClusterNotFound</Code>\
                   <Message>Cluster nope not found.</Message></Error>\
                   <RequestId>1</RequestId></ErrorResponse>";
        let error: QueryErrorResponse = quick_xml::de::from_str(xml).unwrap();
        assert_eq!(error.error.code, "ClusterNotFound");
        assert_eq!(error.error.message, "Cluster nope not found.");
    }

    #[test]
    fn json_errors_give_type_and_message_in_either_case() {
        let a: JsonError =
            serde_json::from_str(r#"{"__type":"ResourceNotFoundException","message":"m"}"#)
                .unwrap();
        let b: JsonError =
            serde_json::from_str(r#"{"__type":"x#AccessDeniedException","Message":"n"}"#).unwrap();
        assert_eq!(
            (a.kind.as_str(), a.message.as_str()),
            ("ResourceNotFoundException", "m")
        );
        assert_eq!(
            (b.kind.as_str(), b.message.as_str()),
            ("x#AccessDeniedException", "n")
        );
    }

    #[test]
    fn db_credentials_debug_hides_the_password() {
        let credentials = DbCredentials {
            user: "IAM:alice".into(),
            password: SecretString::from("hunter2-secret"),
            expires: None,
        };
        let debug = format!("{credentials:?}");
        assert!(
            debug.contains("IAM:alice") && !debug.contains("hunter2"),
            "{debug}"
        );
    }
}
