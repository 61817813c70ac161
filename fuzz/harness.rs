//! The logic of the fuzz targets, shared by the cargo-fuzz binaries in `fuzz/fuzz_targets/` and by
//! `tests/it/fuzz_corpus.rs`, which replays every corpus file through it on each CI run (so the
//! harness keeps compiling and its properties keep holding without cargo-fuzz or nightly).
//!
//! Each function feeds one untrusted input to a public parser of redshift-flight and asserts that
//! it never panics and that whatever it accepts round-trips. Where a parser sits behind a gate a
//! fuzzer cannot pass by mutation (the ticket HMAC, the cursor's base64), the input is also fed a
//! second time *through* the gate (signed with the fuzz key, base64-encoded), so the code behind it
//! is fuzzed as well.
#![allow(dead_code)]

use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use redshift_flight::catalog::{ColumnInfo, RedshiftType};
use redshift_flight::plan::cursor::{self, CURSOR_PREFIX, Cursor};
use redshift_flight::plan::lookback::Lookback;
use redshift_flight::plan::select::typed_literal;
use redshift_flight::plan::{FlightRequest, MAX_COMMAND_BYTES};
use redshift_flight::sql;
use redshift_flight::sql::query::{QueryPolicy, validate};
use redshift_flight::stage::manifest;
use redshift_flight::ticket::{TICKET_VERSION, TicketCodec, TicketError, unix_ms};

/// The HMAC key of the fuzz targets; the seed tickets in `fuzz/corpus/ticket_decode/` are signed
/// with it.
pub(crate) const FUZZ_KEY: &[u8] = b"fuzz-key";

/// The bucket and run prefix the manifest target parses against.
pub(crate) const MANIFEST_BUCKET: &str = "b";
/// See [`MANIFEST_BUCKET`].
pub(crate) const MANIFEST_RUN_PREFIX: &str = "p/run/";

/// The fuzz targets, by the name of their corpus folder.
pub(crate) const TARGETS: [&str; 4] = [
    "ticket_decode",
    "command_parse",
    "cursor_decode",
    "manifest_parse",
];

/// Runs the target named `target` (a folder name of `fuzz/corpus/`) on `data`.
pub(crate) fn run(target: &str, data: &[u8]) {
    match target {
        "ticket_decode" => ticket_decode(data),
        "command_parse" => command_parse(data),
        "cursor_decode" => cursor_decode(data),
        "manifest_parse" => manifest_parse(data),
        "sql_validate" => sql_validate(data),
        other => panic!("no fuzz target {other:?}"),
    }
}

/// A ticket whose payload is `payload` verbatim, correctly signed with (the ticket key derived
/// from) `key`.
pub(crate) fn sign_raw_payload(key: &[u8], payload: &[u8]) -> Vec<u8> {
    TicketCodec::new(key.to_vec()).sign_payload_bytes(payload)
}

/// `TicketCodec::decode` on the raw input, and on the input signed as a payload.
pub(crate) fn ticket_decode(data: &[u8]) {
    let codec = TicketCodec::new(FUZZ_KEY.to_vec());
    let now = SystemTime::now();
    check_ticket(&codec, data, now, data.len());
    // Behind the HMAC: arbitrary payload bytes with a valid signature.
    check_ticket(&codec, &sign_raw_payload(FUZZ_KEY, data), now, data.len());
}

fn check_ticket(codec: &TicketCodec, ticket: &[u8], now: SystemTime, salt: usize) {
    let payload = match codec.decode(ticket, now) {
        Ok(payload) => payload,
        Err(error) => {
            // Errors render (they become the gRPC status message).
            let _ = error.to_string();
            return;
        }
    };
    assert_eq!(payload.version, TICKET_VERSION, "accepted another version");
    assert!(
        payload.expires_at_ms >= unix_ms(now),
        "accepted an expired ticket: expires_at_ms {} < now {}",
        payload.expires_at_ms,
        unix_ms(now)
    );
    // Re-encoding an accepted payload gives a ticket that decodes to the same payload and is
    // stable from then on (the input itself may be a non-canonical protobuf encoding).
    let again = codec.encode(&payload);
    assert_eq!(
        codec.decode(&again, now).as_ref(),
        Ok(&payload),
        "round trip"
    );
    assert_eq!(
        codec.encode(&codec.decode(&again, now).unwrap()),
        again,
        "re-encoding is not stable"
    );
    // Another key rejects it; so does one flipped bit (at an input-dependent position) and
    // truncation by one byte.
    assert_eq!(
        TicketCodec::new(b"another-key".to_vec()).decode(&again, now),
        Err(TicketError::BadSignature)
    );
    let bit = salt % (again.len() * 8);
    let mut flipped = again.clone();
    flipped[bit / 8] ^= 1 << (bit % 8);
    assert!(
        codec.decode(&flipped, now).is_err(),
        "bit {bit} flipped was accepted"
    );
    assert!(codec.decode(&again[..again.len() - 1], now).is_err());
}

/// The quoted form of a table-name part, as `split_table_name` reads it back.
fn quote_part(part: &str) -> String {
    format!("\"{}\"", part.replace('"', "\"\""))
}

/// The replication-key types a lookback is validated against.
const KEY_TYPES: [&str; 7] = [
    "timestamp without time zone",
    "timestamp with time zone",
    "date",
    "bigint",
    "integer",
    "numeric(12,3)",
    "character varying(20)",
];

/// `FlightRequest::try_from_command`; an accepted command is rebuilt from its parts (table name
/// re-quoted) and must parse to the same request.
pub(crate) fn command_parse(data: &[u8]) {
    let request = match FlightRequest::try_from_command(data) {
        Ok(request) => request,
        Err(error) => {
            let _ = error.to_string();
            return;
        }
    };
    assert!(data.len() <= MAX_COMMAND_BYTES);
    assert!(std::str::from_utf8(data).is_ok(), "accepted invalid UTF-8");
    assert!(!request.table.is_empty(), "accepted an empty table name");
    assert_ne!(
        request.schema.as_deref(),
        Some(""),
        "accepted an empty schema"
    );

    // The quoting module quotes names exactly as the command's table syntax reads them.
    match sql::ident(&request.table) {
        Ok(quoted) => assert_eq!(quoted, quote_part(&request.table)),
        Err(_) => assert!(request.table.contains('\0')),
    }
    let table = match &request.schema {
        Some(schema) => format!("{}.{}", quote_part(schema), quote_part(&request.table)),
        None => quote_part(&request.table),
    };
    let rebuilt = serde_json::json!({
        "table": table,
        "columns": request.columns,
        "mode": request.mode,
        "cursor": request.cursor,
        "replication_key": request.replication_key,
        "lookback": request.lookback,
    });
    let rebuilt = serde_json::to_vec(&rebuilt).expect("JSON of strings serializes");
    if rebuilt.len() <= MAX_COMMAND_BYTES {
        let again = FlightRequest::try_from_command(&rebuilt)
            .unwrap_or_else(|e| panic!("rebuilt command rejected: {e}"));
        // serde_json reads floats without exact round-tripping (no `float_roundtrip` feature),
        // so a float anywhere in the free-form lookback may come back one ulp off.
        let comparable = |r: &FlightRequest| {
            let mut r = r.clone();
            if r.lookback.as_ref().is_some_and(has_float) {
                r.lookback = None;
            }
            r
        };
        assert_eq!(
            comparable(&again),
            comparable(&request),
            "rebuilt command parses differently"
        );
    }

    // What the planner does next with the untrusted parts, short of the catalog.
    if let Some(lookback) = &request.lookback {
        for key_type in KEY_TYPES {
            if let Err(error) = Lookback::try_new(lookback, &ColumnInfo::new("k", key_type, false))
            {
                let _ = error.to_string();
            }
        }
    }
    if let Some(text) = &request.cursor {
        check_cursor(text);
    }
    for name in request.columns.iter().flatten() {
        match sql::ident(name) {
            Ok(quoted) => assert_eq!(quoted, quote_part(name)),
            Err(_) => assert!(name.is_empty() || name.contains('\0')),
        }
    }
}

fn has_float(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Number(n) => n.is_f64(),
        serde_json::Value::Array(items) => items.iter().any(has_float),
        serde_json::Value::Object(map) => map.values().any(has_float),
        _ => false,
    }
}

/// `Cursor::decode` on UTF-8 input, and on the input as the cursor's JSON body (behind the
/// base64 a fuzzer rarely gets through by mutation).
pub(crate) fn cursor_decode(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        check_cursor(text);
    }
    check_cursor(&format!("{CURSOR_PREFIX}{}", URL_SAFE_NO_PAD.encode(data)));
}

fn check_cursor(text: &str) {
    let decoded = match Cursor::decode(text) {
        Ok(decoded) => decoded,
        Err(error) => {
            let _ = error.to_string();
            return;
        }
    };
    // What the server hands out (`encode`) round-trips exactly: same string, same cursor.
    let encoded = decoded.encode();
    assert!(encoded.starts_with(CURSOR_PREFIX));
    let again = Cursor::decode(&encoded)
        .unwrap_or_else(|e| panic!("re-encoded cursor {encoded:?} rejected: {e}"));
    assert_eq!(again, decoded, "cursor round trip");
    assert_eq!(again.encode(), encoded, "cursor re-encoding is not stable");
    // An accepted input is either exactly what `encode` writes, or another JSON spelling of the
    // same object (whitespace, key order, escapes): `Cursor::decode` does not insist on the
    // canonical form. Its body must still be JSON of the same cursor.
    if encoded != text {
        let body = text
            .strip_prefix(CURSOR_PREFIX)
            .and_then(|b| URL_SAFE_NO_PAD.decode(b).ok())
            .expect("an accepted cursor has a base64url body");
        let value: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
        assert_eq!(value, serde_json::to_value(&decoded).unwrap());
    }

    // The bound was validated against its type, so the type can be a replication key and the
    // bound becomes a typed SQL literal.
    let key_type = RedshiftType::from_format_type(&decoded.key_type);
    assert!(
        cursor::key_type_supported(&key_type),
        "accepted a cursor on a {key_type:?} key"
    );
    let literal = typed_literal(&key_type, &decoded.bound)
        .unwrap_or_else(|e| panic!("validated bound {:?} cannot be quoted: {e}", decoded.bound));
    assert!(
        literal
            .as_str()
            .contains(&sql::literal(&decoded.bound).unwrap())
    );
    let _ = key_type.arrow_type();
}

/// `stage::manifest::parse`; every accepted entry lies under the run's prefix, also as the
/// object_store path DoGet will read.
pub(crate) fn manifest_parse(data: &[u8]) {
    let entries = match manifest::parse(data, MANIFEST_BUCKET, MANIFEST_RUN_PREFIX) {
        Ok(entries) => entries,
        Err(error) => {
            let _ = error.to_string();
            return;
        }
    };
    let run = object_store::path::Path::from(MANIFEST_RUN_PREFIX);
    for entry in entries {
        assert!(
            entry.key.starts_with(MANIFEST_RUN_PREFIX),
            "entry {:?} outside the run",
            entry.key
        );
        assert!(!entry.key.contains(".."), "entry {:?} climbs", entry.key);
        let path = object_store::path::Path::from(entry.key.as_str());
        assert!(
            path.prefix_matches(&run),
            "entry {:?} is read as {path}, outside {run}",
            entry.key
        );
    }
}

/// The Flight SQL validator on UTF-8 input: never a panic; and whatever it accepts renders to SQL
/// that it accepts again, reading the same relations and rendering to itself (the SQL sent to
/// Redshift means what was validated).
pub(crate) fn sql_validate(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let policy = QueryPolicy::default();
    let Ok(query) = validate(text, &policy) else {
        return;
    };
    let rendered = query.sql();
    let again = validate(rendered.as_str(), &policy)
        .unwrap_or_else(|e| panic!("rendered SQL {rendered} is refused: {e}"));
    assert_eq!(
        again.relations(),
        query.relations(),
        "relations of {rendered}"
    );
    assert_eq!(again.sql(), rendered, "rendering is not stable");
}
