//! The ticket: a versioned, signed, expiring wire format carrying everything DoGet needs, so any
//! replica sharing the signing key can serve any ticket without shared state.
//!
//! # Wire format (version 2) — do not change without the clients
//!
//! ```text
//! ticket  = "RSF2" || SignedTicket           (protobuf, prost)
//! SignedTicket { bytes payload = 1; bytes mac = 2; bytes key_id = 3; }
//! mac     = HMAC-SHA256(ticket key, "RSF2" || key_id || payload)
//! key_id  = 8 bytes naming the secret that signed (see `crate::keys`: the ticket key and the key
//!           id are derived from `ticket_secret` with HKDF-SHA256; the verifier picks the key by id)
//! payload = TicketPayload {
//!   uint32 version = 1;            // 2
//!   string schema = 2; string table = 3;
//!   string run_id = 4;             // staged run
//!   string key = 5;                // object key of the Parquet file
//!   uint64 file_size = 6;          // bytes, from the manifest (no HEAD request needed)
//!   uint64 rows = 7;               // rows in the file, from the manifest
//!   //    8: version 1's column list, now in the run's columns object (see columns_sha256)
//!   int64 expires_at_ms = 9;       // Unix milliseconds
//!   //   10: version 1's primary key, now in the run's columns object
//!   uint32 run_endpoints = 11;     // endpoints of the whole run (to know when all were streamed)
//!   uint32 row_group_start = 12;   // this endpoint's row groups: start..end of the file's;
//!   uint32 row_group_end = 13;     //   end = 0 means the whole file
//!   uint64 footer_len = 14;        // Parquet metadata + 8-byte tail (0: unknown): one ranged GET
//!   string reader = 15;            // the FlightInfo this ticket belongs to (runs may be shared)
//!   bool dictionary = 16;          // CHAR/VARCHAR as dictionary<int32, utf8>
//!   bytes columns_sha256 = 17;     // SHA-256 of the run's `<run prefix>columns.json`: the
//!                                  //   promised schema, stored once per run
//!   bool ewkb = 18;                // GEOMETRY as EWKB (SRID kept) instead of ISO WKB
//! }
//! ```
//!
//! A ticket's size does not depend on the table's width: it stays under 1 KiB for names up to
//! Redshift's 127 bytes. Anything that does not decode, does not verify (a flipped bit,
//! truncation, another key) or has expired is rejected before any I/O. Version 1 tickets
//! (`RSF1...`) are refused as malformed, with "call GetFlightInfo again".
//!
//! Imports: `crate::keys` (the signing keys) and `crate::clock`; a leaf otherwise.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prost::Message;

use crate::keys::{Keyring, Purpose};
use crate::sealed::{Expiring, OpenError, Seal};

/// Re-exported from [`crate::clock`], where it lives, for the ticket's users.
pub use crate::clock::unix_ms;

/// Magic prefix and version of the ticket format.
pub const TICKET_MAGIC: &[u8; 4] = b"RSF2";
/// Payload version this build writes and reads.
pub const TICKET_VERSION: u32 = 2;
/// Largest ticket accepted, in bytes (issued tickets stay under 1 KiB).
pub const MAX_TICKET_BYTES: usize = 8 * 1024;

/// The sealed format of tickets (`crate::sealed`).
const SEAL: Seal = Seal {
    purpose: Purpose::Ticket,
    magic: TICKET_MAGIC,
    version: TICKET_VERSION,
    max_bytes: MAX_TICKET_BYTES,
    what: "ticket",
};

impl Expiring for TicketPayload {
    fn version(&self) -> u32 {
        self.version
    }
    fn expires_at_ms(&self) -> i64 {
        self.expires_at_ms
    }
}

impl From<OpenError> for TicketError {
    fn from(error: OpenError) -> Self {
        match error {
            OpenError::Malformed(message) => Self::Malformed(message),
            OpenError::BadSignature => Self::BadSignature,
            OpenError::Expired(past) => Self::Expired(past),
        }
    }
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
    /// Expiry, Unix milliseconds.
    #[prost(int64, tag = "9")]
    pub expires_at_ms: i64,
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
    /// SHA-256 of the run's columns object (the promised schema, see `crate::stage::columns`).
    #[prost(bytes = "vec", tag = "17")]
    pub columns_sha256: Vec<u8>,
    /// GEOMETRY columns as EWKB (with their SRID) instead of ISO WKB.
    #[prost(bool, tag = "18")]
    pub ewkb: bool,
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

/// Signs tickets with the keyring's first key and verifies them with whichever key they name.
pub struct TicketCodec {
    keys: Arc<Keyring>,
}

impl fmt::Debug for TicketCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketCodec")
            .field("keys", &self.keys)
            .finish()
    }
}

impl TicketCodec {
    /// A codec over one secret (its derived ticket key signs and verifies).
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self::with_keys(Arc::new(Keyring::new(&[secret.into()])))
    }

    /// A codec over a keyring: the first key signs, every key verifies.
    pub fn with_keys(keys: Arc<Keyring>) -> Self {
        Self { keys }
    }

    /// A codec with a random 256-bit key (tickets then only work on this process).
    pub fn random() -> Self {
        Self::with_keys(Arc::new(Keyring::random()))
    }

    /// The keyring the codec signs with (shared with other signed formats, each under a key of
    /// its own purpose).
    pub fn keys(&self) -> &Arc<Keyring> {
        &self.keys
    }

    /// Encodes and signs a payload.
    pub fn encode(&self, payload: &TicketPayload) -> Vec<u8> {
        self.sign_payload_bytes(&payload.encode_to_vec())
    }

    /// A ticket whose payload is `payload` verbatim, signed with the signing key (what
    /// [`TicketCodec::encode`] does after encoding; public for fuzzing and tests).
    pub fn sign_payload_bytes(&self, payload: &[u8]) -> Vec<u8> {
        SEAL.seal(&self.keys, payload)
    }

    /// Verifies and decodes a ticket, checking its expiry against `now`.
    pub fn decode(&self, ticket: &[u8], now: SystemTime) -> Result<TicketPayload, TicketError> {
        if ticket.starts_with(b"RSF1") {
            return Err(TicketError::Malformed(
                "a version 1 ticket, from an older server version; call GetFlightInfo again".into(),
            ));
        }
        Ok(SEAL.open(&self.keys, ticket, now)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::Sha256;
    use std::time::UNIX_EPOCH;

    fn payload() -> TicketPayload {
        TicketPayload {
            version: TICKET_VERSION,
            schema: "public".into(),
            table: "orders".into(),
            run_id: "20261125T121700Z-00000000000000ff".into(),
            key: "redshift-flight/20261125T121700Z-00000000000000ff/0000_part_00.parquet".into(),
            file_size: 1234,
            rows: 10,
            expires_at_ms: 1_900_000_000_000,
            run_endpoints: 3,
            row_group_start: 2,
            row_group_end: 5,
            footer_len: 777,
            reader: "0123456789abcdef".into(),
            dictionary: true,
            columns_sha256: vec![0xab; 32],
            ewkb: true,
        }
    }

    fn at(ms: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    }

    fn ring(secrets: &[&str]) -> TicketCodec {
        TicketCodec::with_keys(Arc::new(Keyring::new(secrets)))
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
            version: 2,
            schema: "s".into(),
            table: "t".into(),
            run_id: "r".into(),
            key: "k".into(),
            file_size: 2,
            rows: 3,
            expires_at_ms: 4,
            columns_sha256: vec![0x11; 32],
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

    const GOLDEN_HEX: &str = "525346320a3708021201731a01742201722a016b3002380348048a01201111111111111111111111111111111111111111111111111111111111111111122096f1b05b2abfe2d809ca2abf17f751128c1ebddf3b1fc1c8f77adecec9a69a241a08af6528a1f4cc1be1";

    /// Rotation: a ticket signed by key A verifies where A is still listed (after B), not where
    /// it is gone; and the server signs with the first key.
    #[test]
    fn rotated_keys_verify_by_key_id() {
        let a = ring(&["key-a"]);
        let ticket = a.encode(&payload());
        let now = at(0);
        assert_eq!(
            ring(&["key-b", "key-a"]).decode(&ticket, now),
            Ok(payload())
        );
        assert_eq!(
            ring(&["key-b"]).decode(&ticket, now),
            Err(TicketError::BadSignature)
        );
        let rotated = ring(&["key-b", "key-a"]).encode(&payload());
        assert_eq!(ring(&["key-b"]).decode(&rotated, now), Ok(payload()));
        assert_eq!(a.decode(&rotated, now), Err(TicketError::BadSignature));
        // The raw secret is not the HMAC key: the derived ticket key is.
        let (signed_payload, mac, key_id) = crate::sealed::envelope_parts(&ticket);
        let mut raw = <Hmac<Sha256> as KeyInit>::new_from_slice(b"key-a").unwrap();
        raw.update(TICKET_MAGIC);
        raw.update(&key_id);
        raw.update(&signed_payload);
        assert!(raw.verify_slice(&mac).is_err());
    }

    /// A ticket's size does not grow with the table: under 1 KiB with Redshift's longest names
    /// (127 bytes) and a long staging prefix.
    #[test]
    fn tickets_stay_under_one_kibibyte() {
        let mut long = payload();
        long.schema = "s".repeat(127);
        long.table = "t".repeat(127);
        long.key = format!(
            "{}/{}/0127_part_99_000.parquet",
            "p".repeat(120),
            long.run_id
        );
        long.file_size = u64::MAX;
        long.rows = u64::MAX;
        long.expires_at_ms = i64::MAX;
        long.run_endpoints = u32::MAX;
        long.row_group_start = u32::MAX;
        long.row_group_end = u32::MAX;
        long.footer_len = u64::MAX;
        let ticket = TicketCodec::new(b"k".to_vec()).encode(&long);
        assert!(ticket.len() < 1024, "{} bytes", ticket.len());
    }

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
    fn other_key_expired_old_and_oversized_are_rejected() {
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
        // Version 1 (the golden ticket of that format) asks for a new FlightInfo.
        let v1 = hex::decode("525346310a2408011201731a01742201722a016b30023803420e0a01631207696e7465676572180148041220ae5756c28432ff842a1d440772527f0dded6e316ac47be9779b6b29e99b1fca6").unwrap();
        let error = codec.decode(&v1, at(0)).unwrap_err().to_string();
        assert!(error.contains("call GetFlightInfo again"), "{error}");
    }
}
