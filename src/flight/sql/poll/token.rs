//! The poll token: what a long query's PollInfo gives the client to poll again with (as the
//! command of its `flight_descriptor`, and in the partial FlightInfo's `app_metadata` so that
//! CancelFlightInfo finds the job). A versioned, signed, expiring token that names the job and
//! the relations its query reads, so that any replica sharing the signing secret can answer it
//! and re-check the caller's permission without Redshift.
//!
//! # Wire format (version 1) — do not change without the clients
//!
//! ```text
//! token   = "RSQ1" || SignedToken               (protobuf, prost)
//! SignedToken { bytes payload = 1; bytes mac = 2; bytes key_id = 3; }
//! mac     = HMAC-SHA256(poll key, "RSQ1" || key_id || payload)
//! key_id  = 8 bytes naming the secret that signed (`crate::keys`; the poll key is derived for
//!           its own purpose, so a ticket, a token or a handle never verifies as a poll token)
//! payload = PollPayload {
//!   uint32 version = 1;                 // 1
//!   string job_id = 2;                  // the job (a run id: its state is under
//!                                       // <s3_prefix>/<job id>/, see crate::stage::jobs)
//!   int64 expires_at_ms = 3;            // Unix milliseconds
//!   repeated Relation relations = 4;    // what the query reads, checked at every poll
//! }
//! Relation { string schema = 1; string table = 2; }
//! ```
//!
//! A token is not a permission: whoever presents it must still be allowed to read every relation.
//!
//! Imports: `crate::keys`, `crate::clock`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prost::Message;

use crate::clock::unix_ms;
use crate::keys::{Keyring, Purpose};
use crate::sealed::{Expiring, OpenError, Seal};

/// Magic prefix and version of the token format.
pub(super) const TOKEN_MAGIC: &[u8; 4] = b"RSQ1";
/// Payload version this build writes and reads.
const TOKEN_VERSION: u32 = 1;
/// Largest token accepted (a query reads at most a few hundred relations).
const MAX_TOKEN_BYTES: usize = 1 << 20;

/// A relation the query reads.
#[derive(Clone, PartialEq, Eq, Message)]
pub(super) struct Relation {
    /// Its schema.
    #[prost(string, tag = "1")]
    pub(super) schema: String,
    /// Its name.
    #[prost(string, tag = "2")]
    pub(super) table: String,
}

/// What a token carries.
#[derive(Clone, PartialEq, Eq, Message)]
pub(super) struct PollPayload {
    /// Format version.
    #[prost(uint32, tag = "1")]
    pub(super) version: u32,
    /// The job.
    #[prost(string, tag = "2")]
    pub(super) job_id: String,
    /// Expiry, Unix milliseconds.
    #[prost(int64, tag = "3")]
    pub(super) expires_at_ms: i64,
    /// The relations the query reads.
    #[prost(message, repeated, tag = "4")]
    pub(super) relations: Vec<Relation>,
}

impl PollPayload {
    /// A payload for `job_id` reading `relations`, expiring at `expires`.
    pub(super) fn new(job_id: String, relations: Vec<Relation>, expires: SystemTime) -> Self {
        Self {
            version: TOKEN_VERSION,
            job_id,
            expires_at_ms: unix_ms(expires),
            relations,
        }
    }
}

/// A poll token the server cannot accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum TokenError {
    /// Not a redshift-flight poll token, or damaged.
    #[error("malformed poll token: {0}")]
    Malformed(String),
    /// The signature does not match: altered, forged, or signed by another key.
    #[error(
        "poll token signature is invalid (altered, forged, or issued by a server with another \
         ticket_secret)"
    )]
    BadSignature,
    /// Past its expiry.
    #[error("poll token expired {0:?} ago; run the query again")]
    Expired(Duration),
}

/// Whether `bytes` (a descriptor's command) is a poll token (valid or not).
pub(super) fn is_token(bytes: &[u8]) -> bool {
    bytes.starts_with(TOKEN_MAGIC)
}

/// Signs tokens with the keyring's first key and verifies them with whichever key they name.
#[derive(Debug)]
pub(super) struct TokenCodec {
    keys: Arc<Keyring>,
}

/// The sealed format of poll tokens (`crate::sealed`).
const SEAL: Seal = Seal {
    purpose: Purpose::Poll,
    magic: TOKEN_MAGIC,
    version: TOKEN_VERSION,
    max_bytes: MAX_TOKEN_BYTES,
    what: "poll token",
};

impl TokenCodec {
    /// A codec over the server's keyring (the poll key is derived for its own purpose).
    pub(super) fn new(keys: Arc<Keyring>) -> Self {
        Self { keys }
    }

    /// Encodes and signs a payload.
    pub(super) fn encode(&self, payload: &PollPayload) -> Vec<u8> {
        SEAL.seal(&self.keys, &payload.encode_to_vec())
    }

    /// Verifies and decodes a token that has not expired at `now`.
    pub(super) fn decode(&self, token: &[u8], now: SystemTime) -> Result<PollPayload, TokenError> {
        Ok(SEAL.open(&self.keys, token, now)?)
    }
}

impl Expiring for PollPayload {
    fn version(&self) -> u32 {
        self.version
    }
    fn expires_at_ms(&self) -> i64 {
        self.expires_at_ms
    }
}

impl From<OpenError> for TokenError {
    fn from(error: OpenError) -> Self {
        match error {
            OpenError::Malformed(message) => Self::Malformed(message),
            OpenError::BadSignature => Self::BadSignature,
            OpenError::Expired(past) => Self::Expired(past),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn codec(secret: &str) -> TokenCodec {
        TokenCodec::new(Arc::new(Keyring::new(&[secret])))
    }

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    fn payload() -> PollPayload {
        PollPayload::new(
            "20260101T000000Z-00000000000000ab".into(),
            vec![Relation {
                schema: "public".into(),
                table: "orders".into(),
            }],
            at(1_800_000_060_000),
        )
    }

    #[test]
    fn round_trips_until_it_expires() {
        let codec = codec("k");
        let token = codec.encode(&payload());
        assert!(is_token(&token));
        assert_eq!(codec.decode(&token, at(1_800_000_000_000)), Ok(payload()));
        assert_eq!(codec.decode(&token, at(1_800_000_060_000)), Ok(payload()));
        assert!(matches!(
            codec.decode(&token, at(1_800_000_061_000)),
            Err(TokenError::Expired(_))
        ));
    }

    #[test]
    fn forged_altered_and_foreign_tokens_are_refused() {
        let codec = codec("k");
        let mut token = codec.encode(&payload());
        let now = at(1_800_000_000_000);
        assert_eq!(
            self::codec("other").decode(&token, now),
            Err(TokenError::BadSignature)
        );
        let last = token.len() - 12;
        token[last] ^= 1;
        assert!(codec.decode(&token, now).is_err());
        assert!(matches!(
            codec.decode(b"RSQ1garbage", now),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(
            codec.decode(b"{\"table\": \"t\"}", now),
            Err(TokenError::Malformed(_))
        ));
        // Signed for another purpose (a prepared statement handle), it never verifies.
        let keys = Arc::new(Keyring::new(&["k"]));
        let other = Seal {
            purpose: Purpose::PreparedStatement,
            ..SEAL
        };
        let forged = other.seal(&keys, &payload().encode_to_vec());
        assert_eq!(codec.decode(&forged, now), Err(TokenError::BadSignature));
    }

    /// Golden bytes: other builds (and the e2e test's own encoder) must read this version.
    #[test]
    fn wire_format_is_pinned() {
        let payload = PollPayload {
            version: 1,
            job_id: "j".into(),
            expires_at_ms: 5,
            relations: vec![Relation {
                schema: "s".into(),
                table: "t".into(),
            }],
        };
        assert_eq!(
            hex::encode(payload.encode_to_vec()),
            "080112016a18052206 0a01731201 74".replace(' ', "")
        );
    }
}
