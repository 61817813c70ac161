//! Sealed values: the one wire format of everything the server signs for a client to hand back
//! (DoGet tickets, prepared-statement handles, direct query tickets, poll tokens), each under its
//! own magic and its own key purpose (`crate::keys`), so none ever opens as another.
//!
//! ```text
//! sealed  = magic (4 bytes) || Envelope                 (protobuf, prost)
//! Envelope { bytes payload = 1; bytes mac = 2; bytes key_id = 3; }
//! mac     = HMAC-SHA256(key of the purpose, magic || key_id || payload)
//! payload = a protobuf message of the format's own, with `uint32 version = 1` and an expiry in
//!           Unix milliseconds
//! ```
//!
//! Opening checks, before anything else is read: the size limit, the magic, the envelope, the key
//! id's length, the signature (in constant time), then the payload, its version and its expiry.
//!
//! Imports: `crate::keys`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;

use crate::keys::{KEY_ID_LEN, Keyring, Purpose};

/// The signed envelope.
#[derive(Clone, PartialEq, Message)]
struct Envelope {
    #[prost(bytes = "vec", tag = "1")]
    payload: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    mac: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    key_id: Vec<u8>,
}

/// A sealed format's payload: its version and expiry.
pub trait Expiring {
    /// The payload's format version.
    fn version(&self) -> u32;
    /// Its expiry, Unix milliseconds.
    fn expires_at_ms(&self) -> i64;
}

/// Why a sealed value does not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// Not this format, or damaged (the text says how).
    Malformed(String),
    /// The signature does not match: altered, forged, or signed with another secret.
    BadSignature,
    /// Past its expiry by this much.
    Expired(Duration),
}

/// One sealed format.
#[derive(Debug, Clone, Copy)]
pub struct Seal {
    /// Whose key signs it.
    pub purpose: Purpose,
    /// Its first four bytes.
    pub magic: &'static [u8; 4],
    /// The payload version this build writes and reads.
    pub version: u32,
    /// The largest sealed value accepted, in bytes.
    pub max_bytes: usize,
    /// What it is, for messages ("ticket", "poll token", ...).
    pub what: &'static str,
}

impl Seal {
    /// Signs `payload` (an encoded message) with the keyring's signing key.
    pub fn seal(&self, keys: &Keyring, payload: &[u8]) -> Vec<u8> {
        let (key_id, mac) = keys.sign(self.purpose, self.magic, payload);
        let envelope = Envelope {
            payload: payload.to_vec(),
            mac,
            key_id: key_id.to_vec(),
        };
        let mut out = self.magic.to_vec();
        envelope
            .encode(&mut out)
            .unwrap_or_else(|_| unreachable!("Vec grows as needed"));
        out
    }

    /// Verifies `sealed` and decodes its payload, which must not have expired at `now`.
    pub fn open<M: Message + Default + Expiring>(
        &self,
        keys: &Keyring,
        sealed: &[u8],
        now: SystemTime,
    ) -> Result<M, OpenError> {
        let what = self.what;
        if sealed.len() > self.max_bytes {
            return Err(OpenError::Malformed(format!(
                "{} bytes is more than the {} a {what} may have",
                sealed.len(),
                self.max_bytes
            )));
        }
        let body = sealed.strip_prefix(self.magic.as_slice()).ok_or_else(|| {
            OpenError::Malformed(format!("not a redshift-flight {what} (bad magic)"))
        })?;
        let envelope = Envelope::decode(body)
            .map_err(|e| OpenError::Malformed(format!("cannot decode: {e}")))?;
        if envelope.key_id.len() != KEY_ID_LEN {
            return Err(OpenError::Malformed(format!(
                "the key id has {} bytes, not {KEY_ID_LEN}",
                envelope.key_id.len()
            )));
        }
        if !keys.verify(
            self.purpose,
            self.magic,
            &envelope.key_id,
            &envelope.payload,
            &envelope.mac,
        ) {
            return Err(OpenError::BadSignature);
        }
        let payload = M::decode(envelope.payload.as_slice())
            .map_err(|e| OpenError::Malformed(format!("cannot decode payload: {e}")))?;
        if payload.version() != self.version {
            return Err(OpenError::Malformed(format!(
                "version {} is not supported (this server reads version {})",
                payload.version(),
                self.version
            )));
        }
        let expires = UNIX_EPOCH + Duration::from_millis(payload.expires_at_ms().max(0) as u64);
        if let Ok(past) = now.duration_since(expires)
            && !past.is_zero()
        {
            return Err(OpenError::Expired(past));
        }
        Ok(payload)
    }
}

/// The envelope of a sealed value, for tests that tamper with one: (payload, mac, key id).
#[cfg(test)]
pub(crate) fn envelope_parts(sealed: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let envelope = Envelope::decode(&sealed[4..]).expect("an envelope");
    (envelope.payload, envelope.mac, envelope.key_id)
}
