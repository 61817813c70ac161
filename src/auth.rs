//! Authentication of Flight calls: bearer tokens from `auth_tokens`, sent by clients in the
//! `authorization: Bearer <token>` header, compared in constant time.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;

/// Why a call was not authenticated. The message never echoes the presented credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `authorization` header.
    #[error("missing credentials: send the header 'authorization: Bearer <token>'")]
    Missing,
    /// A header that is not `Bearer <token>`, or a token that is not accepted.
    #[error("invalid credentials")]
    Invalid,
}

/// Checks bearer tokens.
pub struct BearerAuth {
    tokens: Vec<SecretString>,
}

impl fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuth")
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

impl BearerAuth {
    /// Accepts exactly `tokens`.
    pub fn new(tokens: Vec<SecretString>) -> Self {
        Self { tokens }
    }

    /// Checks a call's metadata.
    pub fn check(&self, metadata: &MetadataMap) -> Result<(), AuthError> {
        let header = metadata.get("authorization").ok_or(AuthError::Missing)?;
        let value = header.to_str().map_err(|_| AuthError::Invalid)?;
        let presented = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or(AuthError::Invalid)?
            .trim();
        // Compare against every token, without stopping early, in constant time per token.
        let mut ok = subtle::Choice::from(0u8);
        for token in &self.tokens {
            ok |= token.expose_secret().as_bytes().ct_eq(presented.as_bytes());
        }
        if bool::from(ok) {
            Ok(())
        } else {
            Err(AuthError::Invalid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(value: Option<&str>) -> MetadataMap {
        let mut map = MetadataMap::new();
        if let Some(v) = value {
            map.insert("authorization", v.parse().unwrap());
        }
        map
    }

    #[test]
    fn accepts_only_configured_tokens() {
        let auth = BearerAuth::new(vec![
            SecretString::from("alpha"),
            SecretString::from("beta"),
        ]);
        assert_eq!(auth.check(&metadata(Some("Bearer beta"))), Ok(()));
        assert_eq!(
            auth.check(&metadata(Some("Bearer gamma"))),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            auth.check(&metadata(Some("Basic YWxwaGE="))),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            auth.check(&metadata(Some("Bearer "))),
            Err(AuthError::Invalid)
        );
        assert_eq!(auth.check(&metadata(None)), Err(AuthError::Missing));
        assert!(!format!("{auth:?}").contains("alpha"));
    }
}
