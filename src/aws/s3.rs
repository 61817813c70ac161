//! [`S3Credentials`]: [`CachedCredentials`] as object_store's `CredentialProvider`, so the S3
//! client signs with whatever the AWS chain (or the assumed role) provides, refreshed before it
//! expires.
//!
//! May import: `super` only.

use std::sync::Arc;

use object_store::aws::AwsCredential;

use super::CachedCredentials;

/// The server's AWS credentials for object_store's S3 client.
#[derive(Debug)]
pub struct S3Credentials(pub Arc<CachedCredentials>);

#[async_trait::async_trait]
impl object_store::CredentialProvider for S3Credentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let credentials = self
            .0
            .get()
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            })?;
        Ok(Arc::new(AwsCredential {
            key_id: credentials.access_key_id().to_string(),
            secret_key: credentials.secret_access_key().to_string(),
            token: credentials.session_token().map(str::to_string),
        }))
    }
}
