//! Signing keys. The configured `ticket_secret` may hold several secrets so that replicas can
//! rotate the key without failing tickets and tokens in flight: the first secret signs, every one
//! verifies. No secret is used directly: each one yields, with HKDF-SHA256 (RFC 5869, no salt), a
//! separate key per purpose (tickets, Handshake-issued tokens, prepared statement handles, poll
//! tokens of long Flight SQL queries), so that a value signed for one
//! purpose never verifies for another, and a public key id that signed values carry, so that the
//! verifier picks the key by id instead of trying them all.
//!
//! ```text
//! ticket key = HKDF-SHA256(ikm = secret, info = "redshift-flight ticket v1", L = 32)
//! token key  = HKDF-SHA256(ikm = secret, info = "redshift-flight token v1",  L = 32)
//! handle key = HKDF-SHA256(ikm = secret, info = "redshift-flight prepared statement v1", L = 32)
//! poll key   = HKDF-SHA256(ikm = secret, info = "redshift-flight poll v1", L = 32)
//! direct key = HKDF-SHA256(ikm = secret, info = "redshift-flight direct query v1", L = 32)
//! key id     = HKDF-SHA256(ikm = secret, info = "redshift-flight key id v1", L = 8)
//! ```
//!
//! The key id reveals nothing about the secret (it is one more HKDF output) and is not secret.
//!
//! A leaf: it imports nothing from the crate.

use std::fmt;

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;

/// Bytes of a key id.
pub const KEY_ID_LEN: usize = 8;

/// A public key id, carried by signed values.
pub type KeyId = [u8; KEY_ID_LEN];

/// What a derived key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// DoGet tickets.
    Ticket,
    /// Bearer tokens issued by the Handshake.
    Token,
    /// Flight SQL prepared statement handles.
    PreparedStatement,
    /// PollFlightInfo tokens of long Flight SQL queries.
    Poll,
    /// Tickets of Flight SQL queries answered on the connection (no UNLOAD).
    DirectQuery,
}

impl Purpose {
    fn info(self) -> &'static [u8] {
        match self {
            Self::Ticket => b"redshift-flight ticket v1",
            Self::Token => b"redshift-flight token v1",
            Self::PreparedStatement => b"redshift-flight prepared statement v1",
            Self::DirectQuery => b"redshift-flight direct query v1",
            Self::Poll => b"redshift-flight poll v1",
        }
    }
}

/// The keys derived from one secret.
struct DerivedKeys {
    id: KeyId,
    ticket: SecretSlice<u8>,
    token: SecretSlice<u8>,
    prepared: SecretSlice<u8>,
    poll: SecretSlice<u8>,
    direct: SecretSlice<u8>,
}

impl DerivedKeys {
    fn new(secret: &[u8]) -> Self {
        let hkdf = Hkdf::<Sha256>::new(None, secret);
        let derive = |info: &[u8], out: &mut [u8]| {
            hkdf.expand(info, out)
                .unwrap_or_else(|_| unreachable!("8 and 32 bytes are valid HKDF-SHA256 lengths"));
        };
        let mut id = [0u8; KEY_ID_LEN];
        derive(b"redshift-flight key id v1", &mut id);
        let key = |purpose: Purpose| {
            let mut out = vec![0u8; 32];
            derive(purpose.info(), &mut out);
            SecretSlice::from(out)
        };
        Self {
            id,
            ticket: key(Purpose::Ticket),
            token: key(Purpose::Token),
            prepared: key(Purpose::PreparedStatement),
            poll: key(Purpose::Poll),
            direct: key(Purpose::DirectQuery),
        }
    }

    fn key(&self, purpose: Purpose) -> &[u8] {
        match purpose {
            Purpose::Ticket => self.ticket.expose_secret(),
            Purpose::Token => self.token.expose_secret(),
            Purpose::PreparedStatement => self.prepared.expose_secret(),
            Purpose::Poll => self.poll.expose_secret(),
            Purpose::DirectQuery => self.direct.expose_secret(),
        }
    }
}

/// The server's signing keys: the first secret's keys sign, all verify.
pub struct Keyring {
    keys: Vec<DerivedKeys>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<String> = self.keys.iter().map(|k| hex::encode(k.id)).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish()
    }
}

impl Keyring {
    /// A keyring over `secrets`, the first of which signs. Panics on an empty list (the
    /// configuration refuses one; use [`Keyring::random`]).
    pub fn new<S: AsRef<[u8]>>(secrets: &[S]) -> Self {
        assert!(!secrets.is_empty(), "a keyring needs at least one secret");
        Self {
            keys: secrets
                .iter()
                .map(|s| DerivedKeys::new(s.as_ref()))
                .collect(),
        }
    }

    /// A keyring over one random 256-bit secret (signed values then only verify on this process).
    pub fn random() -> Self {
        Self::new(&[rand::random::<[u8; 32]>()])
    }

    /// The id and key that sign for `purpose`.
    pub fn signing(&self, purpose: Purpose) -> (KeyId, &[u8]) {
        let first = &self.keys[0];
        (first.id, first.key(purpose))
    }

    /// The keys for `purpose` whose id is `id` (normally one; none for an unknown id).
    pub fn verifying<'a>(
        &'a self,
        id: &'a [u8],
        purpose: Purpose,
    ) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.keys
            .iter()
            .filter(move |k| k.id.as_slice() == id)
            .map(move |k| k.key(purpose))
    }

    /// Signs `payload` for `purpose` with the signing key: its id and HMAC-SHA256 over
    /// `magic`, the key id and the payload (the signature of tickets and prepared-statement
    /// handles, each with its own magic and purpose).
    pub fn sign(&self, purpose: Purpose, magic: &[u8], payload: &[u8]) -> (KeyId, Vec<u8>) {
        let (key_id, key) = self.signing(purpose);
        let mut mac = keyed_mac(key, magic, &key_id);
        mac.update(payload);
        (key_id, mac.finalize().into_bytes().to_vec())
    }

    /// Whether `mac` is what [`Keyring::sign`] gives for `payload` with the key `key_id` names
    /// (compared in constant time). An unknown key id verifies with no key: the same answer as a
    /// wrong signature.
    pub fn verify(
        &self,
        purpose: Purpose,
        magic: &[u8],
        key_id: &[u8],
        payload: &[u8],
        mac: &[u8],
    ) -> bool {
        self.verifying(key_id, purpose).any(|key| {
            let mut expected = keyed_mac(key, magic, key_id);
            expected.update(payload);
            expected.verify_slice(mac).is_ok()
        })
    }

    /// The key ids, signing key first (for logs: they are not secret).
    pub fn key_ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| hex::encode(k.id)).collect()
    }
}

/// HMAC-SHA256 keyed with `key`, fed `magic` and `key_id` first.
fn keyed_mac(key: &[u8], magic: &[u8], key_id: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(magic);
    mac.update(key_id);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_separate_per_purpose_and_ids_are_stable() {
        let ring = Keyring::new(&[
            b"secret-a-0123456789abcdef0123456789",
            b"secret-b-0123456789abcdef0123456789",
        ]);
        let (id, ticket) = ring.signing(Purpose::Ticket);
        let (id2, token) = ring.signing(Purpose::Token);
        assert_eq!(id, id2);
        assert_ne!(ticket, token);
        let (_, handle) = ring.signing(Purpose::PreparedStatement);
        let (_, poll) = ring.signing(Purpose::Poll);
        assert!(poll != ticket && poll != token && poll != handle);
        assert_ne!(ticket, b"secret-a-0123456789abcdef0123456789".as_slice());
        // The same secret gives the same id and keys on every replica.
        let again = Keyring::new(&[b"secret-a-0123456789abcdef0123456789"]);
        assert_eq!(again.signing(Purpose::Ticket), (id, ticket));
        let ids = ring.key_ids();
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[0], ids[1]);
        let second = hex::decode(&ids[1]).unwrap();
        assert_eq!(ring.verifying(&second, Purpose::Ticket).count(), 1);
        assert_eq!(ring.verifying(b"unknown!", Purpose::Ticket).count(), 0);
        let debug = format!("{ring:?}");
        assert!(
            debug.contains(&ids[0]) && !debug.contains("secret-a"),
            "{debug}"
        );
    }

    /// Golden values: replicas of other builds must derive the same keys (RFC 5869 HKDF-SHA256).
    #[test]
    fn derivation_is_pinned() {
        let ring = Keyring::new(&[b"golden-key"]);
        let (id, ticket) = ring.signing(Purpose::Ticket);
        let (_, token) = ring.signing(Purpose::Token);
        assert_eq!(
            (hex::encode(id), hex::encode(ticket), hex::encode(token)),
            (GOLDEN_ID.into(), GOLDEN_TICKET.into(), GOLDEN_TOKEN.into())
        );
    }

    const GOLDEN_ID: &str = "af6528a1f4cc1be1";
    const GOLDEN_TICKET: &str = "4a33d3ed9adae274d658804fd0b9ffbe6b85e7b7b2add57df93b2ba9eaac93b7";
    const GOLDEN_TOKEN: &str = "cf34680df51bcba0416a2dff8d1420aee8b829c8fb0d84e1fde486f4c0e090ee";
}
