//! Object storage: the S3 client (object_store, with a custom endpoint and path-style addressing
//! for S3-compatible servers) and [`ObjectReader`], parquet's `AsyncFileReader` over any
//! [`ObjectStore`] with the file size known up front (taken from the manifest and carried in the
//! ticket), so reading a file's footer needs no HEAD request.
//!
//! # Layout
//!
//! - this file: [`StoreError`] and [`ParquetReadError`] (S3 and Parquet failures, classified
//!   for statuses), [`error_chain`], and [`build_s3`];
//! - `reader.rs`: [`ObjectReader`]: the footer in one ranged GET, row groups as ranged reads, the
//!   next row group fetched ahead;
//! - `memory.rs`: [`MemoryBudget`], the server-wide bound on row-group bytes in flight.
//!
//! Imports: [`crate::config`] (the S3 settings) only; everything else of the crate reads S3
//! through this module.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AwsCredential};
use object_store::{ClientOptions, CredentialProvider, ObjectStore, RetryConfig};
use parquet::errors::ParquetError;
use secrecy::ExposeSecret;

use crate::config::S3Settings;

mod memory;
mod reader;
#[cfg(test)]
mod tests;

pub use memory::MemoryBudget;
pub use reader::{ObjectReader, ReadGate};

/// What went wrong talking to S3, classified for status codes and retries.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist (any more).
    #[error("s3://{bucket}/{path} does not exist")]
    NotFound {
        /// Bucket.
        bucket: String,
        /// Key.
        path: String,
    },
    /// S3 refused our credentials or permissions.
    #[error("S3 denied access to s3://{bucket}/{path}: {source}")]
    Denied {
        /// Bucket.
        bucket: String,
        /// Key.
        path: String,
        /// S3's answer, kept whole.
        source: Box<object_store::Error>,
    },
    /// S3 could not be reached or failed.
    #[error("cannot read s3://{bucket}/{path}: {source}")]
    Unavailable {
        /// Bucket.
        bucket: String,
        /// Key.
        path: String,
        /// The cause, kept whole.
        source: Box<object_store::Error>,
    },
    /// The S3 client could not be built from the configuration.
    #[error("invalid S3 configuration: {0}")]
    Config(#[source] Box<object_store::Error>),
}

impl StoreError {
    /// Classifies an object_store error for `bucket`/`path`.
    pub fn from_object_store(error: object_store::Error, bucket: &str, path: &str) -> Self {
        let (bucket, path) = (bucket.to_string(), path.to_string());
        match error {
            object_store::Error::NotFound { .. } => Self::NotFound { bucket, path },
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => Self::Denied {
                bucket,
                path,
                source: Box::new(error),
            },
            other => Self::Unavailable {
                bucket,
                path,
                source: Box::new(other),
            },
        }
    }
}

/// A failed Parquet read, classified: S3 failed, or the bytes are not the Parquet they should be.
#[derive(Debug)]
pub enum ParquetReadError {
    /// S3's error.
    Store(StoreError),
    /// What Parquet said about the bytes.
    Corrupt(String),
}

impl ParquetReadError {
    /// Classifies a Parquet reader's error for object `key` of `bucket`.
    pub fn classify(error: ParquetError, bucket: &str, key: &str) -> Self {
        match error {
            ParquetError::External(source) => match source.downcast::<object_store::Error>() {
                Ok(e) => Self::Store(StoreError::from_object_store(*e, bucket, key)),
                Err(other) => Self::Corrupt(other.to_string()),
            },
            other => Self::Corrupt(other.to_string()),
        }
    }
}

/// Renders an error with its whole `source()` chain.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// The credentials the S3 client signs with, when they are not static keys.
pub type S3CredentialProvider = Arc<dyn CredentialProvider<Credential = AwsCredential>>;

/// Builds the S3 client for the staging bucket in `region`. `credentials` (the AWS chain, an
/// assumed role) sign its requests if given, else the static keys of `settings`.
pub fn build_s3(
    settings: &S3Settings,
    region: &str,
    credentials: Option<S3CredentialProvider>,
) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&settings.bucket)
        .with_region(region)
        .with_retry(RetryConfig {
            max_retries: settings.max_retries,
            retry_timeout: settings.retry_timeout,
            ..RetryConfig::default()
        })
        .with_client_options(
            ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(5))
                .with_timeout(Duration::from_secs(120)),
        );
    if let Some(endpoint) = &settings.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(false)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    match credentials {
        Some(credentials) => builder = builder.with_credentials(credentials),
        None => {
            if let (Some(key), Some(secret)) =
                (&settings.access_key_id, &settings.secret_access_key)
            {
                builder = builder
                    .with_access_key_id(key)
                    .with_secret_access_key(secret.expose_secret());
            }
        }
    }
    let store = builder
        .build()
        .map_err(|e| StoreError::Config(Box::new(e)))?;
    Ok(Arc::new(store))
}
