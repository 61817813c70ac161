//! Replays every file of `fuzz/corpus/<target>/` through the fuzz targets' own logic
//! (`fuzz/harness.rs`), so each CI run checks that no input the fuzzer has kept panics a parser and
//! that the round-trip properties still hold, without cargo-fuzz or a nightly toolchain.
//!
//! `cargo test --test it -- --ignored fuzz_corpus::write_seed_corpus` (re)writes the seed inputs.

#[path = "../../fuzz/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redshift_flight::plan::cursor::Cursor;
use redshift_flight::ticket::{TICKET_VERSION, TicketCodec, TicketPayload};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn corpus_files(target: &str) -> Vec<PathBuf> {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str) {
    let files = corpus_files(target);
    // A handful of seeds at least: an empty folder would make this test pass vacuously.
    assert!(
        files.len() >= 5,
        "fuzz/corpus/{target}/ has {} files; expected its seeds at least",
        files.len()
    );
    for path in files {
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| harness::run(target, &data));
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!(
                "{target}: {} failed: {message}\ninput: {:?}",
                path.display(),
                String::from_utf8_lossy(&data)
            );
        }
    }
}

#[test]
fn ticket_decode_corpus() {
    replay("ticket_decode");
}

#[test]
fn command_parse_corpus() {
    replay("command_parse");
}

#[test]
fn cursor_decode_corpus() {
    replay("cursor_decode");
}

#[test]
fn manifest_parse_corpus() {
    replay("manifest_parse");
}

#[test]
fn sql_validate_corpus() {
    replay("sql_validate");
}

/// The corpora hold inputs that reach the accepting paths, not only rejections: a corpus of
/// garbage would let the round-trip assertions go unexercised.
#[test]
fn corpora_contain_accepted_inputs() {
    let now = SystemTime::now();
    let codec = TicketCodec::new(harness::FUZZ_KEY.to_vec());
    let read = |target: &str| -> Vec<Vec<u8>> {
        corpus_files(target)
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect()
    };
    assert!(
        read("ticket_decode")
            .iter()
            .any(|t| codec.decode(t, now).is_ok()),
        "no valid ticket in the ticket_decode corpus"
    );
    assert!(
        read("command_parse")
            .iter()
            .any(|c| redshift_flight::plan::FlightRequest::try_from_command(c).is_ok())
    );
    assert!(read("cursor_decode").iter().any(|c| {
        std::str::from_utf8(c)
            .ok()
            .is_some_and(|t| Cursor::decode(t).is_ok())
    }));
    assert!(read("manifest_parse").iter().any(|m| {
        redshift_flight::stage::manifest::parse(
            m,
            harness::MANIFEST_BUCKET,
            harness::MANIFEST_RUN_PREFIX,
        )
        .is_ok_and(|entries| !entries.is_empty())
    }));
}

/// Far in the future, so seed tickets stay valid: 2100-01-01.
const SEED_EXPIRY_MS: i64 = 4_102_444_800_000;

fn seed_payload() -> TicketPayload {
    TicketPayload {
        version: TICKET_VERSION,
        schema: "public".into(),
        table: "orders".into(),
        run_id: "20261125T121700Z-00000000000000ff".into(),
        key: "redshift-flight/20261125T121700Z-00000000000000ff/0000_part_00.parquet".into(),
        file_size: 1234,
        rows: 10,
        expires_at_ms: SEED_EXPIRY_MS,
        run_endpoints: 3,
        row_group_start: 1,
        row_group_end: 2,
        footer_len: 512,
        reader: "00000000000000ff".into(),
        dictionary: true,
        columns_sha256: vec![0x5a; 32],
        ewkb: false,
    }
}

fn cursor(key_type: &str, bound: &str) -> Cursor {
    Cursor {
        schema: "public".into(),
        table: "Orders".into(),
        key: "updated_at".into(),
        key_type: key_type.into(),
        bound: bound.into(),
    }
}

/// Writes the seed inputs of every target (valid and near-valid ones, from the unit tests of
/// src/). Run by hand; the fuzzer's and `cargo fuzz cmin`'s files sit beside them.
#[test]
#[ignore = "writes fuzz/corpus/*/seed-*; run by hand"]
fn write_seed_corpus() {
    let write = |target: &str, name: &str, data: &[u8]| {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
    };

    // Tickets: valid ones signed with the fuzz key, an expired one, one signed with another key,
    // the unit tests' golden ticket, damaged ones; and raw payloads (the harness also signs its
    // input as a payload).
    let codec = TicketCodec::new(harness::FUZZ_KEY.to_vec());
    let valid = codec.encode(&seed_payload());
    write("ticket_decode", "valid", &valid);
    let minimal = TicketPayload {
        version: TICKET_VERSION,
        schema: "s".into(),
        table: "t".into(),
        run_id: "r".into(),
        key: "k".into(),
        file_size: 2,
        rows: 3,
        expires_at_ms: SEED_EXPIRY_MS,
        columns_sha256: vec![0x11; 32],
        ..TicketPayload::default()
    };
    write("ticket_decode", "valid-minimal", &codec.encode(&minimal));
    let mut expired = seed_payload();
    expired.expires_at_ms = 1_000;
    write("ticket_decode", "expired", &codec.encode(&expired));
    write(
        "ticket_decode",
        "other-key",
        &TicketCodec::new(b"other".to_vec()).encode(&seed_payload()),
    );
    write(
        "ticket_decode",
        "golden",
        &hex::decode("525346320a3708021201731a01742201722a016b3002380348048a01201111111111111111111111111111111111111111111111111111111111111111122096f1b05b2abfe2d809ca2abf17f751128c1ebddf3b1fc1c8f77adecec9a69a241a08af6528a1f4cc1be1").unwrap(),
    );
    write("ticket_decode", "truncated", &valid[..valid.len() - 7]);
    let mut flipped = valid.clone();
    flipped[20] ^= 0x10;
    write("ticket_decode", "flipped", &flipped);
    write("ticket_decode", "garbage", b"garbage");
    use prost::Message;
    write(
        "ticket_decode",
        "payload-valid",
        &seed_payload().encode_to_vec(),
    );
    let mut other_version = minimal.clone();
    other_version.version = TICKET_VERSION + 1;
    write(
        "ticket_decode",
        "payload-other-version",
        &other_version.encode_to_vec(),
    );
    write("ticket_decode", "payload-expired", &expired.encode_to_vec());

    // Commands (from src/plan/mod.rs's tests and the Flight contract).
    for (name, command) in [
        (
            "quoted",
            r#"{"table":"\"a.b\".\"T\"\"x\"","columns":["id"],"mode":"full"}"#,
        ),
        ("plain", r#"{"table":"orders"}"#),
        ("schema-table", r#"{"table":"public.orders","mode":"auto"}"#),
        (
            "incremental",
            &format!(
                r#"{{"table":"public.Orders","mode":"incremental","replication_key":"updated_at","cursor":"{}","lookback":"2 hours"}}"#,
                cursor("timestamp without time zone", "2024-01-01 00:00:00.5").encode()
            ),
        ),
        (
            "lookback-number",
            r#"{"table":"t","mode":"incremental","lookback":90}"#,
        ),
        ("lookback-decimal", r#"{"table":"t","lookback":"1.5"}"#),
        (
            "injection",
            r#"{"table":"x'); drop table t; --","columns":["a\"b","O'Brien"]}"#,
        ),
        ("typo", r#"{"table":"t","colums":["x"]}"#),
        ("empty-table", r#"{"table":""}"#),
        ("three-parts", r#"{"table":"a.b.c"}"#),
        ("bad-mode", r#"{"table":"t","mode":"sometimes"}"#),
        ("not-json", "not json"),
        ("unterminated", r#"{"table":"\"abc"}"#),
    ] {
        write("command_parse", name, command.as_bytes());
    }
    write("command_parse", "invalid-utf8", &[b'{', 0xff, 0xfe, b'}']);

    // Cursors (from src/plan/cursor.rs's tests), and raw JSON bodies for the harness's second
    // path.
    for (i, (ty, bound)) in [
        ("timestamp without time zone", "2024-01-01 12:34:56.123456"),
        (
            "timestamp with time zone",
            "2024-01-01 12:34:56.000001+05:30",
        ),
        ("timestamp with time zone", "0001-01-01 00:00:00+00"),
        ("date", "9999-12-31"),
        ("bigint", "-9223372036854775808"),
        ("numeric(38,10)", "9999999999999999999999999999.9999999999"),
        ("character varying(10)", "O'Brien \"quoted\" ünïcode"),
    ]
    .into_iter()
    .enumerate()
    {
        let c = cursor(ty, bound);
        write(
            "cursor_decode",
            &format!("valid-{i}"),
            c.encode().as_bytes(),
        );
        write(
            "cursor_decode",
            &format!("json-{i}"),
            &serde_json::to_vec(&c).unwrap(),
        );
    }
    // Accepted although not what `encode` writes: JSON whitespace and another key order.
    let spaced =
        r#"{ "t": "Orders", "s": "public", "k": "updated_at", "y": "date", "b": "2024-01-01" }"#;
    write(
        "cursor_decode",
        "noncanonical",
        format!(
            "{}{}",
            redshift_flight::plan::cursor::CURSOR_PREFIX,
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, spaced)
        )
        .as_bytes(),
    );
    for (i, bad) in [
        "garbage".to_string(),
        "rsfc1.!!!".to_string(),
        "rsfc2.e30".to_string(),
        cursor(
            "timestamp without time zone",
            "2024-01-01'; drop table t; --",
        )
        .encode(),
        cursor("bigint", "1 OR 1=1").encode(),
        cursor("numeric(10,2)", "1e5").encode(),
        cursor("double precision", "1.5").encode(),
        cursor("date", "2024-13-01").encode(),
    ]
    .into_iter()
    .enumerate()
    {
        write("cursor_decode", &format!("bad-{i}"), bad.as_bytes());
    }
    write_multibyte_seeds();

    // Manifests (from src/stage/manifest.rs's tests, on the harness's bucket and prefix).
    let verbose = r#"{
      "entries": [
        {"url":"s3://b/p/run/0000_part_00.parquet", "meta": { "content_length": 5956875, "record_count": 100 }},
        {"url":"s3://b/p/run/0001_part_00.parquet", "meta": { "content_length": 5997091, "record_count": 200 }}
      ],
      "schema": {"elements": [{"name": "venueid", "type": {"base": "integer"}}]},
      "meta": {"content_length": 11953966, "record_count": 300},
      "author": {"name": "Amazon Redshift", "version": "1.0.0"}
    }"#;
    write("manifest_parse", "verbose", verbose.as_bytes());
    write(
        "manifest_parse",
        "foreign-run",
        verbose.replace("p/run/", "p/run2/").as_bytes(),
    );
    write(
        "manifest_parse",
        "foreign-bucket",
        verbose.replace("s3://b/", "s3://other/").as_bytes(),
    );
    write(
        "manifest_parse",
        "plain",
        br#"{"entries":[{"url":"s3://b/p/run/0000_part_00.parquet"}]}"#,
    );
    write(
        "manifest_parse",
        "escape",
        br#"{"entries":[{"url":"s3://b/p/run/../x","meta":{"content_length":1,"record_count":1}}]}"#,
    );
    write("manifest_parse", "empty-object", b"{}");
    write("manifest_parse", "no-entries", br#"{"entries":[]}"#);
}

#[test]
fn seed_expiry_is_in_the_future() {
    // The seed tickets expire in 2100; this fails long before they silently stop being valid.
    assert!(UNIX_EPOCH + Duration::from_millis(SEED_EXPIRY_MS as u64) > SystemTime::now());
}

/// Multi-byte characters where the parsers expect ASCII digits, signs and separators (issue 11: a
/// TIMESTAMPTZ bound ending `+1é1` panicked in `is_offset`, which sliced by byte index).
fn multibyte_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let bounds = [
        ("timestamp with time zone", "2024-01-01 00:00:00+1é1"),
        ("timestamp with time zone", "2024-01-01 00:00:00+1é"),
        ("timestamp with time zone", "2024-01-01 00:00:00+é:00"),
        ("timestamp with time zone", "2024-01-01 00:00:00-05:3€"),
        ("timestamp with time zone", "2024-01-01 00:00:00+𝟙𝟙"),
        ("timestamp with time zone", "2024-01-01 0é:00:00+00"),
        ("timestamp without time zone", "2024-01-01 00:00:00.é"),
        ("timestamp without time zone", "2024-01-01 12:34:5६"),
        ("date", "2é24-01-01"),
        ("date", "２０２４-01-01"),
        ("numeric(12,3)", "1é.5"),
        ("bigint", "١٢"),
        ("character varying(20)", "ünïcode ✓"),
    ];
    for (i, (ty, bound)) in bounds.into_iter().enumerate() {
        let c = cursor(ty, bound);
        seeds.push((
            "cursor_decode",
            format!("multibyte-{i}"),
            c.encode().into_bytes(),
        ));
        seeds.push((
            "cursor_decode",
            format!("multibyte-json-{i}"),
            serde_json::to_vec(&c).unwrap(),
        ));
        seeds.push((
            "command_parse",
            format!("multibyte-cursor-{i}"),
            serde_json::json!({"table": "public.Orders", "mode": "incremental", "cursor": c.encode()})
                .to_string()
                .into_bytes(),
        ));
    }
    for (i, lookback) in ["2 hé", "２ hours", "2é", "é", "1.é", "90ｓ"]
        .into_iter()
        .enumerate()
    {
        seeds.push((
            "command_parse",
            format!("multibyte-lookback-{i}"),
            serde_json::json!({"table": "t", "mode": "incremental", "lookback": lookback})
                .to_string()
                .into_bytes(),
        ));
    }
    for (i, table) in ["\"sché\".\"tä\"\"b\"", "é.é", "\"é", "ü.\"\""]
        .into_iter()
        .enumerate()
    {
        seeds.push((
            "command_parse",
            format!("multibyte-table-{i}"),
            serde_json::json!({"table": table, "columns": ["ñ", "\"é"]})
                .to_string()
                .into_bytes(),
        ));
    }
    for (i, url) in [
        "s3://b/p/run/é.parquet",
        "s3://b/p/ruñ/0000_part_00.parquet",
        "s3://bé/p/run/x",
        "s3://b/p/run/../é",
        "s3://é",
    ]
    .into_iter()
    .enumerate()
    {
        seeds.push((
            "manifest_parse",
            format!("multibyte-{i}"),
            serde_json::json!({"entries": [{"url": url, "meta": {"content_length": 1, "record_count": 1}}]})
                .to_string()
                .into_bytes(),
        ));
    }
    seeds
}

fn write_multibyte_seeds() {
    for (target, name, data) in multibyte_seeds() {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
    }
}

/// Writes only the multi-byte seeds (`write_seed_corpus` writes them too).
#[test]
#[ignore = "writes fuzz/corpus/*/seed-multibyte-*; run by hand"]
fn write_multibyte_seed_corpus() {
    write_multibyte_seeds();
}

/// The multi-byte seeds are in the corpora as generated (so the fuzzers start from them and
/// `cargo test` replays them), and the parsers reject every cursor among them.
#[test]
fn multibyte_seeds_are_kept_and_rejected() {
    for (target, name, data) in multibyte_seeds() {
        let path = corpus_dir(target).join(format!("seed-{name}"));
        let kept = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(kept, data, "{} differs from its generator", path.display());
        harness::run(target, &data);
        if name.starts_with("multibyte-") && target == "cursor_decode" && !name.contains("json") {
            let text = std::str::from_utf8(&data).unwrap();
            let accepted = Cursor::decode(text).is_ok();
            // Only the VARCHAR bound is valid text for its type.
            assert_eq!(accepted, name == "multibyte-12", "{name}");
        }
    }
}
