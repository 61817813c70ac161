//! Bearer tokens issued by the Handshake: their format, signing and verification.
//!
//! ```text
//! rsfb2.<key id, hex>.<claims>.<signature>
//! claims    = base64url(JSON {"u": user name, "e": expiry in Unix milliseconds})
//! signature = base64url(HMAC-SHA256(token key, everything before the last dot))
//! ```
//!
//! The token key is derived from `ticket_secret` for this purpose alone (see [`crate::keys`]) and
//! named by its id, so any replica sharing the secret accepts the token, also while the secret is
//! being rotated. The signature is compared in constant time (`Mac::verify_slice`); every failure
//! is the same [`AuthError::Invalid`], except expiry.
//!
//! Imports: [`crate::keys`], [`crate::clock`] and the parent's [`AuthError`].

use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::AuthError;
use crate::clock::unix_ms;
use crate::keys::{KEY_ID_LEN, Keyring, Purpose};

/// Prefix of tokens issued by the Handshake: `rsfb2.<key id, hex>.<claims>.<signature>`.
pub(super) const ISSUED_PREFIX: &str = "rsfb2.";

#[derive(Serialize, Deserialize)]
struct IssuedClaims {
    /// User name.
    u: String,
    /// Expiry, Unix milliseconds.
    e: u64,
}

/// The HMAC of `signed_part` under `key`, ready to finalize or verify.
pub(super) fn mac(key: &[u8], signed_part: &str) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(signed_part.as_bytes());
    mac
}

/// A token for `user` expiring at `expiry`, signed with the current token key of `keys`.
pub(super) fn issue(keys: &Keyring, user: &str, expiry: SystemTime) -> String {
    let claims = IssuedClaims {
        u: user.to_string(),
        e: unix_ms(expiry).max(0) as u64,
    };
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
    let (key_id, key) = keys.signing(Purpose::Token);
    let signed_part = format!("{ISSUED_PREFIX}{}.{payload}", hex::encode(key_id));
    let signature = URL_SAFE_NO_PAD.encode(mac(key, &signed_part).finalize().into_bytes());
    format!("{signed_part}.{signature}")
}

/// The user name of an issued `token` that verifies under one of `keys`' token keys and has not
/// expired at `now`.
pub(super) fn verify(keys: &Keyring, token: &str, now: SystemTime) -> Result<String, AuthError> {
    let (signed_part, signature) = token.rsplit_once('.').ok_or(AuthError::Invalid)?;
    let body = signed_part
        .strip_prefix(ISSUED_PREFIX)
        .ok_or(AuthError::Invalid)?;
    let (key_id, payload) = body.split_once('.').ok_or(AuthError::Invalid)?;
    let key_id = hex::decode(key_id).map_err(|_| AuthError::Invalid)?;
    if key_id.len() != KEY_ID_LEN {
        return Err(AuthError::Invalid);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| AuthError::Invalid)?;
    let verified = keys
        .verifying(&key_id, Purpose::Token)
        .any(|key| mac(key, signed_part).verify_slice(&signature).is_ok());
    if !verified {
        return Err(AuthError::Invalid);
    }
    let claims: IssuedClaims = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or(AuthError::Invalid)?;
    if unix_ms(now).max(0) as u64 >= claims.e {
        return Err(AuthError::Expired);
    }
    Ok(claims.u)
}
