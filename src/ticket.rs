//! The ticket: a versioned, signed, expiring wire format carrying everything DoGet needs, so any
//! replica sharing the signing key can serve any ticket without shared state.
//!
//! # Wire format (version 1) — do not change without the clients
//!
//! ```text
//! ticket  = "RSF1" || SignedTicket           (protobuf, prost)
//! SignedTicket { bytes payload = 1; bytes mac = 2; }
//! mac     = HMAC-SHA256(key, "RSF1" || payload)
//! payload = TicketPayload {
//!   uint32 version = 1;            // 1
//!   string schema = 2; string table = 3;
//!   string run_id = 4;             // staged run
//!   string key = 5;                // object key of the Parquet file
//!   uint64 file_size = 6;          // bytes, from the manifest (no HEAD request needed)
//!   uint64 rows = 7;               // rows in the file, from the manifest
//!   repeated Column columns = 8;   // the promised schema: name, Redshift type, nullability
//!   int64 expires_at_ms = 9;       // Unix milliseconds
//!   repeated string primary_key = 10;
//!   uint32 run_endpoints = 11;     // endpoints of the whole run (to know when all were streamed)
//!   uint32 row_group_start = 12;   // this endpoint's row groups: start..end of the file's;
//!   uint32 row_group_end = 13;     //   end = 0 means the whole file
//!   uint64 footer_len = 14;        // Parquet metadata + 8-byte tail (0: unknown): one ranged GET
//!   string reader = 15;            // the FlightInfo this ticket belongs to (runs may be shared)
//!   bool dictionary = 16;          // CHAR/VARCHAR as dictionary<int32, utf8>
//! }
//! Column { string name = 1; string catalog_type = 2; bool nullable = 3; }
//! ```
//!
//! Anything that does not decode, does not verify (a flipped bit, truncation, another key) or has
//! expired is rejected before any I/O.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use prost::Message;
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;

/// Magic prefix and version of the ticket format.
pub const TICKET_MAGIC: &[u8; 4] = b"RSF1";
/// Payload version this build writes and reads.
pub const TICKET_VERSION: u32 = 1;
/// Largest ticket accepted, in bytes.
pub const MAX_TICKET_BYTES: usize = 256 * 1024;

/// A column of the promised schema.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct TicketColumn {
    /// Column name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Redshift type as `format_type` prints it.
    #[prost(string, tag = "2")]
    pub catalog_type: String,
    /// Nullability.
    #[prost(bool, tag = "3")]
    pub nullable: bool,
}

/// What DoGet needs to stream one staged file.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct TicketPayload {
    /// Format version.
    #[prost(uint32, tag = "1")]
    pub version: u32,
    /// Schema of the table.
    #[prost(string, tag = "2")]
    pub schema: String,
    /// Table.
    #[prost(string, tag = "3")]
    pub table: String,
    /// Staged run.
    #[prost(string, tag = "4")]
    pub run_id: String,
    /// Object key of the file.
    #[prost(string, tag = "5")]
    pub key: String,
    /// File size in bytes.
    #[prost(uint64, tag = "6")]
    pub file_size: u64,
    /// Rows in the file.
    #[prost(uint64, tag = "7")]
    pub rows: u64,
    /// Promised schema.
    #[prost(message, repeated, tag = "8")]
    pub columns: Vec<TicketColumn>,
    /// Expiry, Unix milliseconds.
    #[prost(int64, tag = "9")]
    pub expires_at_ms: i64,
    /// Primary-key columns (schema metadata).
    #[prost(string, repeated, tag = "10")]
    pub primary_key: Vec<String>,
    /// Number of endpoints in the whole run.
    #[prost(uint32, tag = "11")]
    pub run_endpoints: u32,
    /// First row group of this endpoint.
    #[prost(uint32, tag = "12")]
    pub row_group_start: u32,
    /// End (exclusive) of this endpoint's row groups; 0: the whole file.
    #[prost(uint32, tag = "13")]
    pub row_group_end: u32,
    /// Footer length (metadata plus the 8-byte tail); 0: unknown.
    #[prost(uint64, tag = "14")]
    pub footer_len: u64,
    /// Id of the FlightInfo that issued this ticket (several may share a staged run).
    #[prost(string, tag = "15")]
    pub reader: String,
    /// CHAR and VARCHAR columns as dictionaries.
    #[prost(bool, tag = "16")]
    pub dictionary: bool,
}

impl TicketPayload {
    /// The row groups this endpoint streams, or `None` for the whole file.
    pub fn row_groups(&self) -> Option<std::ops::Range<usize>> {
        (self.row_group_end > 0)
            .then_some(self.row_group_start as usize..self.row_group_end as usize)
    }

    /// A name for this endpoint, unique within its run: the file name and its row-group range.
    pub fn endpoint_name(&self) -> String {
        let file = self.key.rsplit('/').next().unwrap_or(&self.key);
        match self.row_groups() {
            Some(range) => format!("{file}.rg{}-{}", range.start, range.end),
            None => file.to_string(),
        }
    }
}

#[derive(Clone, PartialEq, Message)]
struct SignedTicket {
    #[prost(bytes = "vec", tag = "1")]
    payload: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    mac: Vec<u8>,
}

/// A ticket DoGet cannot accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// Not a redshift-flight ticket, or damaged.
    #[error("malformed ticket: {0}")]
    Malformed(String),
    /// The signature does not match: altered, forged, or signed by another key.
    #[error(
        "ticket signature is invalid (altered, forged, or issued by a server with another ticket_secret)"
    )]
    BadSignature,
    /// Past its expiry.
    #[error("ticket expired {0:?} ago; call GetFlightInfo again")]
    Expired(Duration),
}

/// Signs and verifies tickets with one HMAC key.
pub struct TicketCodec {
    key: SecretSlice<u8>,
}

impl fmt::Debug for TicketCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketCodec").finish_non_exhaustive()
    }
}

impl TicketCodec {
    /// A codec with the given key bytes.
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        Self {
            key: SecretSlice::from(key.into()),
        }
    }

    /// A codec with a random 256-bit key (tickets then only work on this process).
    pub fn random() -> Self {
        Self::new(rand::random::<[u8; 32]>().to_vec())
    }

    fn mac(&self) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.key.expose_secret())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(TICKET_MAGIC);
        mac
    }

    /// Encodes and signs a payload.
    pub fn encode(&self, payload: &TicketPayload) -> Vec<u8> {
        let payload = payload.encode_to_vec();
        let mut mac = self.mac();
        mac.update(&payload);
        let signed = SignedTicket {
            payload,
            mac: mac.finalize().into_bytes().to_vec(),
        };
        let mut out = TICKET_MAGIC.to_vec();
        signed
            .encode(&mut out)
            .unwrap_or_else(|_| unreachable!("Vec grows as needed"));
        out
    }

    /// Verifies and decodes a ticket, checking its expiry against `now`.
    pub fn decode(&self, ticket: &[u8], now: SystemTime) -> Result<TicketPayload, TicketError> {
        if ticket.len() > MAX_TICKET_BYTES {
            return Err(TicketError::Malformed(format!(
                "{} bytes is more than the {MAX_TICKET_BYTES} a ticket may have",
                ticket.len()
            )));
        }
        let body = ticket.strip_prefix(TICKET_MAGIC).ok_or_else(|| {
            TicketError::Malformed("not a redshift-flight ticket (bad magic)".into())
        })?;
        let signed = SignedTicket::decode(body)
            .map_err(|e| TicketError::Malformed(format!("cannot decode: {e}")))?;
        let mut mac = self.mac();
        mac.update(&signed.payload);
        mac.verify_slice(&signed.mac)
            .map_err(|_| TicketError::BadSignature)?;
        let payload = TicketPayload::decode(signed.payload.as_slice())
            .map_err(|e| TicketError::Malformed(format!("cannot decode payload: {e}")))?;
        if payload.version != TICKET_VERSION {
            return Err(TicketError::Malformed(format!(
                "version {} is not supported (this server reads version {TICKET_VERSION})",
                payload.version
            )));
        }
        let expires = UNIX_EPOCH + Duration::from_millis(payload.expires_at_ms.max(0) as u64);
        if let Ok(past) = now.duration_since(expires)
            && !past.is_zero()
        {
            return Err(TicketError::Expired(past));
        }
        Ok(payload)
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> TicketPayload {
        TicketPayload {
            version: TICKET_VERSION,
            schema: "public".into(),
            table: "orders".into(),
            run_id: "20261125T121700Z-00000000000000ff".into(),
            key: "redshift-flight/20261125T121700Z-00000000000000ff/0000_part_00.parquet".into(),
            file_size: 1234,
            rows: 10,
            columns: vec![TicketColumn {
                name: "id".into(),
                catalog_type: "integer".into(),
                nullable: false,
            }],
            expires_at_ms: 1_900_000_000_000,
            primary_key: vec!["id".into()],
            run_endpoints: 3,
            row_group_start: 2,
            row_group_end: 5,
            footer_len: 777,
            reader: "0123456789abcdef".into(),
            dictionary: true,
        }
    }

    fn at(ms: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    }

    #[test]
    fn round_trips() {
        let codec = TicketCodec::new(b"k".to_vec());
        let ticket = codec.encode(&payload());
        assert_eq!(
            codec.decode(&ticket, at(1_800_000_000_000)).unwrap(),
            payload()
        );
    }

    /// Golden bytes: the format is a contract with clients and other replicas.
    #[test]
    fn golden_bytes() {
        let codec = TicketCodec::new(b"golden-key".to_vec());
        let minimal = TicketPayload {
            version: 1,
            schema: "s".into(),
            table: "t".into(),
            run_id: "r".into(),
            key: "k".into(),
            file_size: 2,
            rows: 3,
            columns: vec![TicketColumn {
                name: "c".into(),
                catalog_type: "integer".into(),
                nullable: true,
            }],
            expires_at_ms: 4,
            primary_key: vec![],
            ..TicketPayload::default()
        };
        let ticket = codec.encode(&minimal);
        assert_eq!(
            hex::encode(&ticket),
            GOLDEN_HEX,
            "the ticket wire format changed: bump TICKET_MAGIC/TICKET_VERSION and tell the clients"
        );
        assert_eq!(
            codec
                .decode(&hex::decode(GOLDEN_HEX).unwrap(), at(0))
                .unwrap(),
            minimal
        );
    }

    const GOLDEN_HEX: &str = "525346310a2408011201731a01742201722a016b30023803420e0a01631207696e7465676572180148041220ae5756c28432ff842a1d440772527f0dded6e316ac47be9779b6b29e99b1fca6";

    #[test]
    fn every_flipped_bit_is_rejected() {
        let codec = TicketCodec::new(b"k".to_vec());
        let ticket = codec.encode(&payload());
        for i in 0..ticket.len() * 8 {
            let mut bad = ticket.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(
                codec.decode(&bad, at(0)).is_err(),
                "bit {i} flipped was accepted"
            );
        }
        for len in 0..ticket.len() {
            assert!(
                codec.decode(&ticket[..len], at(0)).is_err(),
                "truncated to {len} accepted"
            );
        }
    }

    #[test]
    fn other_key_expired_and_oversized_are_rejected() {
        let ticket = TicketCodec::new(b"a".to_vec()).encode(&payload());
        let codec = TicketCodec::new(b"b".to_vec());
        assert_eq!(codec.decode(&ticket, at(0)), Err(TicketError::BadSignature));
        let codec = TicketCodec::new(b"a".to_vec());
        assert!(matches!(
            codec.decode(&ticket, at(1_900_000_000_001)),
            Err(TicketError::Expired(_))
        ));
        assert!(matches!(
            codec.decode(&vec![0; MAX_TICKET_BYTES + 1], at(0)),
            Err(TicketError::Malformed(_))
        ));
        assert!(matches!(
            codec.decode(b"garbage", at(0)),
            Err(TicketError::Malformed(_))
        ));
    }
}
