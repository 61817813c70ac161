//! The Flight SQL prepared statement handle: a versioned, signed, expiring token that carries the
//! statement itself (its query text and, once DoPut bound them, its parameter values), so the
//! server keeps no state and any replica sharing the signing secret can serve it.
//!
//! # Wire format (version 1) — do not change without the clients
//!
//! ```text
//! handle  = "RSP1" || SignedHandle            (protobuf, prost)
//! SignedHandle { bytes payload = 1; bytes mac = 2; bytes key_id = 3; }
//! mac     = HMAC-SHA256(handle key, "RSP1" || key_id || payload)
//! key_id  = 8 bytes naming the secret that signed (`crate::keys`; the handle key is derived for
//!           its own purpose, so a ticket or a token never verifies as a handle)
//! payload = HandlePayload {
//!   uint32 version = 1;                // 1
//!   string query = 2;                  // the client's SQL, validated again at every use
//!   int64 expires_at_ms = 3;           // Unix milliseconds
//!   repeated BoundValue parameters = 4; // empty until DoPut binds values
//!   bytes columns_sha256 = 5;          // direct tickets: SHA-256 of the promised columns
//!   uint64 fetch_rows = 6;             // direct tickets: rows per FETCH
//! }
//! BoundValue { Kind kind = 1; string text = 2; uint32 precision = 3; int32 scale = 4; }
//! ```
//!
//! The same format, under its own magic (`RSD1`) and signing key, is the ticket of a query
//! answered on the connection instead of by UNLOAD (see `super::direct`): DoGet runs the query it
//! carries, once, and refuses to stream if the result's columns no longer hash to
//! `columns_sha256` (the table changed since GetFlightInfo).
//!
//! A handle is not a permission: whoever presents it is validated and authorised again. Its
//! values are typed, and become SQL only through `crate::sql` when the statement runs.
//!
//! Imports: `crate::keys`, `crate::clock`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prost::Message;

use crate::clock::unix_ms;
use crate::keys::{Keyring, Purpose};
use crate::sealed::{Expiring, OpenError, Seal};

/// Magic prefix and version of the handle format.
const HANDLE_MAGIC: &[u8; 4] = b"RSP1";
/// Magic prefix of a direct query ticket (same format, its own key).
const DIRECT_MAGIC: &[u8; 4] = b"RSD1";
/// Payload version this build writes and reads.
const HANDLE_VERSION: u32 = 1;
/// How long a handle is accepted after it was issued or bound.
pub(super) const HANDLE_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Largest handle accepted (the query text is at most 1 MiB by default; gRPC's limit is 4 MiB).
const MAX_HANDLE_BYTES: usize = 4 << 20;

/// What a bound value is, hence how it becomes SQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub(super) enum Kind {
    /// Not set (refused).
    Unspecified = 0,
    /// SQL NULL.
    Null = 1,
    /// An integer, `text` its decimal digits.
    Int = 2,
    /// A decimal number with `precision` and `scale`.
    Decimal = 3,
    /// A double, `text` its plain decimal digits.
    Float = 4,
    /// A string.
    Text = 5,
    /// A date, `YYYY-MM-DD`.
    Date = 6,
    /// A timestamp without time zone.
    Timestamp = 7,
    /// A timestamp with time zone.
    TimestampTz = 8,
    /// A boolean, `text` is `true` or `false`.
    Bool = 9,
}

/// One bound parameter value.
#[derive(Clone, PartialEq, Eq, Message)]
pub(super) struct BoundValue {
    /// Its kind.
    #[prost(enumeration = "Kind", tag = "1")]
    pub(super) kind: i32,
    /// Its text (see [`Kind`]).
    #[prost(string, tag = "2")]
    pub(super) text: String,
    /// Decimal precision.
    #[prost(uint32, tag = "3")]
    pub(super) precision: u32,
    /// Decimal scale.
    #[prost(int32, tag = "4")]
    pub(super) scale: i32,
}

/// What a handle carries.
#[derive(Clone, PartialEq, Eq, Message)]
pub(super) struct HandlePayload {
    /// Format version.
    #[prost(uint32, tag = "1")]
    pub(super) version: u32,
    /// The client's SQL text.
    #[prost(string, tag = "2")]
    pub(super) query: String,
    /// Expiry, Unix milliseconds.
    #[prost(int64, tag = "3")]
    pub(super) expires_at_ms: i64,
    /// Bound parameter values, in placeholder order.
    #[prost(message, repeated, tag = "4")]
    pub(super) parameters: Vec<BoundValue>,
    /// Direct tickets: SHA-256 of the promised columns.
    #[prost(bytes = "vec", tag = "5")]
    pub(super) columns_sha256: Vec<u8>,
    /// Direct tickets: rows per FETCH.
    #[prost(uint64, tag = "6")]
    pub(super) fetch_rows: u64,
}

impl HandlePayload {
    /// A payload for `query` with `parameters`, expiring [`HANDLE_TTL`] after `now`.
    pub(super) fn new(query: String, parameters: Vec<BoundValue>, now: SystemTime) -> Self {
        Self {
            version: HANDLE_VERSION,
            query,
            expires_at_ms: unix_ms(now + HANDLE_TTL),
            parameters,
            columns_sha256: Vec::new(),
            fetch_rows: 0,
        }
    }
}

/// A prepared statement handle the server cannot accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// Not a redshift-flight handle, or damaged.
    #[error("malformed Flight SQL handle (a prepared statement or a query ticket): {0}")]
    Malformed(String),
    /// The signature does not match: altered, forged, or signed by another key.
    #[error(
        "Flight SQL handle signature is invalid (altered, forged, or issued by a server \
         with another ticket_secret)"
    )]
    BadSignature,
    /// Past its expiry.
    #[error(
        "Flight SQL handle expired {0:?} ago; prepare the statement or call GetFlightInfo again"
    )]
    Expired(Duration),
    /// A direct query ticket whose query no longer has the columns promised.
    #[error(
        "the query's result columns changed since GetFlightInfo (a table was altered); call \
         GetFlightInfo again"
    )]
    Changed,
}

/// Signs handles with the keyring's first key and verifies them with whichever key they name.
#[derive(Debug)]
pub(super) struct HandleCodec {
    keys: Arc<Keyring>,
    seal: Seal,
}

impl HandleCodec {
    /// A codec over the server's keyring (the handle key is derived for its own purpose).
    pub(super) fn new(keys: Arc<Keyring>) -> Self {
        Self {
            keys,
            seal: Seal {
                purpose: Purpose::PreparedStatement,
                magic: HANDLE_MAGIC,
                version: HANDLE_VERSION,
                max_bytes: MAX_HANDLE_BYTES,
                what: "prepared statement handle",
            },
        }
    }

    /// The codec of direct query tickets: the handle format under its own magic and key.
    pub(super) fn direct(keys: Arc<Keyring>) -> Self {
        Self {
            keys,
            seal: Seal {
                purpose: Purpose::DirectQuery,
                magic: DIRECT_MAGIC,
                version: HANDLE_VERSION,
                max_bytes: MAX_HANDLE_BYTES,
                what: "direct query ticket",
            },
        }
    }

    /// Encodes and signs a payload.
    pub(super) fn encode(&self, payload: &HandlePayload) -> Vec<u8> {
        self.seal.seal(&self.keys, &payload.encode_to_vec())
    }

    /// Verifies and decodes a handle, checking its expiry against `now`.
    pub(super) fn decode(
        &self,
        handle: &[u8],
        now: SystemTime,
    ) -> Result<HandlePayload, HandleError> {
        Ok(self.seal.open(&self.keys, handle, now)?)
    }
}

impl Expiring for HandlePayload {
    fn version(&self) -> u32 {
        self.version
    }
    fn expires_at_ms(&self) -> i64 {
        self.expires_at_ms
    }
}

impl From<OpenError> for HandleError {
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
    use crate::ticket::TicketCodec;
    use std::time::UNIX_EPOCH;

    fn codec(secret: &str) -> HandleCodec {
        HandleCodec::new(Arc::new(Keyring::new(&[secret])))
    }

    fn at(ms: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    }

    fn payload() -> HandlePayload {
        HandlePayload::new(
            "SELECT * FROM t WHERE a = ?".into(),
            vec![BoundValue {
                kind: Kind::Text as i32,
                text: "x'; DROP TABLE t; --\\".into(),
                precision: 0,
                scale: 0,
            }],
            at(1_800_000_000_000),
        )
    }

    #[test]
    fn round_trips_until_it_expires() {
        let codec = codec("k");
        let handle = codec.encode(&payload());
        assert!(handle.starts_with(b"RSP1"));
        assert_eq!(
            codec.decode(&handle, at(1_800_000_000_000)).unwrap(),
            payload()
        );
        let expiry = payload().expires_at_ms;
        assert_eq!(expiry, 1_800_000_000_000 + 24 * 3600 * 1000);
        assert!(codec.decode(&handle, at(expiry)).is_ok());
        assert_eq!(
            codec.decode(&handle, at(expiry + 5)),
            Err(HandleError::Expired(Duration::from_millis(5)))
        );
    }

    #[test]
    fn any_flipped_bit_is_refused() {
        let codec = codec("k");
        let handle = codec.encode(&payload());
        for i in 0..handle.len() {
            let mut bad = handle.clone();
            bad[i] ^= 0x01;
            let result = codec.decode(&bad, at(1_800_000_000_000));
            assert!(
                matches!(
                    result,
                    Err(HandleError::BadSignature | HandleError::Malformed(_))
                ),
                "byte {i}: {result:?}"
            );
        }
        assert!(matches!(
            codec.decode(&handle[..handle.len() - 1], at(0)),
            Err(HandleError::BadSignature | HandleError::Malformed(_))
        ));
    }

    #[test]
    fn other_keys_and_other_purposes_are_refused() {
        let handle = codec("k").encode(&payload());
        assert_eq!(
            codec("other").decode(&handle, at(0)),
            Err(HandleError::BadSignature)
        );
        // Rotation: a keyring that still holds the old secret verifies it.
        let rotated = HandleCodec::new(Arc::new(Keyring::new(&["new", "k"])));
        assert_eq!(rotated.decode(&handle, at(0)).unwrap(), payload());
        // A ticket signed with the same secret is signed with another key.
        let tickets = TicketCodec::new(b"k".to_vec());
        let ticket = tickets.sign_payload_bytes(&payload().encode_to_vec());
        let mut forged = b"RSP1".to_vec();
        forged.extend_from_slice(&ticket[4..]);
        assert_eq!(
            codec("k").decode(&forged, at(0)),
            Err(HandleError::BadSignature)
        );
        assert!(matches!(
            codec("k").decode(&ticket, at(0)),
            Err(HandleError::Malformed(_))
        ));
    }

    /// Golden bytes: handles outlive a server version (clients keep them across upgrades).
    #[test]
    fn golden_bytes() {
        let codec = codec("golden-key");
        let minimal = HandlePayload {
            version: 1,
            query: "SELECT 1".into(),
            expires_at_ms: 4,
            parameters: vec![],
            columns_sha256: vec![],
            fetch_rows: 0,
        };
        let handle = codec.encode(&minimal);
        assert_eq!(hex::encode(&handle), GOLDEN);
        assert_eq!(codec.decode(&handle, at(0)).unwrap(), minimal);
    }

    const GOLDEN: &str = "525350310a0e0801120853454c45435420311804122079848c78d3fa4ace36f0c9237bbf295fcd3d455a4ce11e40f24d4bb07c24fe861a08af6528a1f4cc1be1";
}
