//! AWS as the server itself: the credentials it reads staged files with, and the three AWS API
//! calls behind Redshift logins without a stored password.
//!
//! Credentials come from `aws-config`'s default chain (environment, `AWS_PROFILE` with
//! `~/.aws/config` and `~/.aws/credentials`, `role_arn` + `source_profile` chains,
//! `credential_process`, IAM Identity Center, web identity, ECS, IMDSv2), optionally through an
//! STS AssumeRole (`s3_role_arn`), and are cached and refreshed before they expire
//! ([`refresh::Refreshing`]). Static keys in the configuration win over the chain.
//!
//! # Layout
//!
//! - this file: [`Aws`] (the SDK configuration, loaded once), [`AwsError`], [`CachedCredentials`];
//! - `refresh.rs`: [`Refreshing`], the cache of expiring values;
//! - `s3.rs`: [`S3Credentials`], the chain as object_store's `CredentialProvider`;
//! - `api.rs`: [`AwsApi`]: Redshift `GetClusterCredentials[WithIAM]`, Redshift Serverless
//!   `GetCredentials` and Secrets Manager `GetSecretValue`, signed with `aws-sigv4`;
//! - `login.rs`: [`DbLogins`], the Redshift user and password of `redshift_auth`.
//!
//! Why three calls are signed here rather than made through `aws-sdk-redshift`,
//! `aws-sdk-redshiftserverless` and `aws-sdk-secretsmanager`: those crates are generated for
//! every operation of their service (Redshift has more than a hundred) and would add minutes to
//! every build on the project's two-core machines, for one request each. The signing is the SDK's
//! own (`aws-sigv4`), credentials are the SDK's (`aws-config`), and the wire shapes are the
//! documented Query and JSON 1.1 protocols.
//!
//! May import: `crate::config` and `crate::store::error_chain`.

use std::sync::Arc;
use std::time::SystemTime;

use aws_config::meta::region::RegionProviderChain;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use secrecy::ExposeSecret;

mod api;
mod login;
mod refresh;
mod s3;

pub use api::{AwsApi, Service};
pub use login::{DbLogin, DbLogins};
pub use refresh::{Fetched, Refreshing};
pub use s3::S3Credentials;

use crate::config::AssumedRole;
use crate::store::error_chain;

/// What went wrong getting credentials or calling AWS. Never holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// No credentials could be had from the chain (or the role could not be assumed).
    #[error("no AWS credentials: {0}")]
    Credentials(String),
    /// No region is configured anywhere.
    #[error("no AWS region: set s3_region, AWS_REGION, or region in the AWS profile (AWS_PROFILE)")]
    NoRegion,
    /// The service could not be reached.
    #[error("cannot reach {service} at {endpoint}: {message}")]
    Unreachable {
        /// The service.
        service: Service,
        /// The URL.
        endpoint: String,
        /// Why (the HTTP client's error chain).
        message: String,
    },
    /// The service answered with an error.
    #[error("{service} {operation} failed: {code}: {message} (HTTP {status})")]
    Api {
        /// The service.
        service: Service,
        /// The operation.
        operation: &'static str,
        /// HTTP status.
        status: u16,
        /// AWS's error code (`AccessDenied`, `ClusterNotFound`, ...).
        code: String,
        /// AWS's message.
        message: String,
    },
    /// The answer is not what the operation returns.
    #[error("{service} {operation} returned an answer that cannot be read: {message}")]
    BadAnswer {
        /// The service.
        service: Service,
        /// The operation.
        operation: &'static str,
        /// What is wrong (never the answer's secret parts).
        message: String,
    },
}

impl AwsError {
    /// Whether trying again may succeed: the service was unreachable, failed (5xx) or throttled.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Api { status, code, .. } => {
                *status >= 500 || code.contains("Throttl") || code == "TooManyRequestsException"
            }
            Self::Credentials(_) | Self::NoRegion | Self::BadAnswer { .. } => false,
        }
    }
}

/// The SDK configuration: region and credential chain, loaded once at start-up.
#[derive(Debug, Clone)]
pub struct Aws {
    sdk: SdkConfig,
}

impl Aws {
    /// Loads the region (environment, then the profile, then `fallback_region`, then instance
    /// metadata) and the default credential chain. Nothing is fetched yet.
    pub async fn load(fallback_region: Option<&str>) -> Self {
        let env = aws_config::environment::EnvironmentVariableRegionProvider::new();
        let profile = aws_config::profile::ProfileFileRegionProvider::new();
        let mut region = RegionProviderChain::first_try(env).or_else(profile);
        if let Some(fallback) = fallback_region {
            region = region.or_else(Region::new(fallback.to_string()));
        }
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(region.or_default_provider())
            .load()
            .await;
        Self { sdk }
    }

    /// The region of the environment or profile (else the fallback given to [`Aws::load`]).
    pub fn region(&self) -> Option<&str> {
        self.sdk.region().map(Region::as_ref)
    }

    /// The SDK configuration.
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.sdk
    }

    /// The credentials the server acts with: `static_keys` if given, else the default chain;
    /// through `role` (STS AssumeRole) if given. Cached and refreshed before expiry.
    pub async fn credentials(
        &self,
        static_keys: Option<Credentials>,
        role: Option<&AssumedRole>,
    ) -> Result<Arc<CachedCredentials>, AwsError> {
        let mut source = match static_keys {
            Some(_) => "the configured keys (aws_access_key_id)".to_string(),
            None => "the AWS credential chain".to_string(),
        };
        let base = match static_keys {
            Some(keys) => SharedCredentialsProvider::new(keys),
            None => self.sdk.credentials_provider().ok_or_else(|| {
                AwsError::Credentials("the AWS SDK found no credential provider".into())
            })?,
        };
        let provider = match role {
            None => base,
            Some(role) => {
                source = format!("assuming role {} (s3_role_arn) with {source}", role.arn);
                let mut builder = aws_config::sts::AssumeRoleProvider::builder(&role.arn)
                    .session_name(&role.session_name)
                    .configure(&self.sdk);
                if let Some(id) = &role.external_id {
                    builder = builder.external_id(id.expose_secret());
                }
                SharedCredentialsProvider::new(builder.build_from_provider(base).await)
            }
        };
        Ok(Arc::new(CachedCredentials::new(provider, source)))
    }
}

/// A credential provider with [`Refreshing`] in front, so that profiles with
/// `credential_process`, STS and instance metadata are asked only when the credentials near
/// their expiry.
#[derive(Debug)]
pub struct CachedCredentials {
    provider: SharedCredentialsProvider,
    source: String,
    cache: Refreshing<Credentials>,
}

impl CachedCredentials {
    /// Caches `provider`; `source` says where its credentials come from, for errors.
    pub fn new(provider: SharedCredentialsProvider, source: String) -> Self {
        Self {
            provider,
            source,
            cache: Refreshing::default(),
        }
    }

    /// Current credentials, fetched when none are held or they are about to expire.
    pub async fn get(&self) -> Result<Credentials, AwsError> {
        self.cache
            .get(|| async {
                let credentials = self.provider.provide_credentials().await.map_err(|e| {
                    AwsError::Credentials(format!("{}: {}", self.source, error_chain(&e)))
                })?;
                let expiry: Option<SystemTime> = credentials.expiry();
                Ok::<_, AwsError>((credentials, expiry))
            })
            .await
            .map(|fetched| fetched.value)
    }
}
