//! Tickets that stay small and keys that rotate.
//!
//! - A 300-column table: every ticket is under 1 KiB (the column list is stored once, in the
//!   run's `columns.json`, and tickets carry its fingerprint), and its data arrives exactly.
//! - A run whose columns object is gone gets NOT_FOUND "call GetFlightInfo again" from a replica
//!   that has not cached it.
//! - Replicas rotating `ticket_secret`: tickets and Handshake tokens signed with key A are accepted
//!   by a replica configured with [B, A], refused by one with [B] only.

use arrow::array::RecordBatch;
use arrow::util::display::array_value_to_string;
use arrow_flight::{FlightDescriptor, FlightInfo, Ticket};
use base64::Engine;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;

use crate::common;
use crate::common::canon::read_all;
use crate::common::{TestServer, pg, pg_rows, unique};

const KEY_A: &str = "replica-key-a-0123456789abcdef0123456789";
const KEY_B: &str = "replica-key-b-0123456789abcdef0123456789";
const TOKEN: &str = "tickets-e2e-bearer-token-0123456789";

/// Every row of `batches` as text (NULL as `None`), sorted.
fn rows(batches: &[RecordBatch]) -> Vec<Vec<Option<String>>> {
    let mut rows = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            rows.push(
                batch
                    .columns()
                    .iter()
                    .map(|c| (!c.is_null(row)).then(|| array_value_to_string(c, row).unwrap()))
                    .collect(),
            );
        }
    }
    rows.sort();
    rows
}

/// A 300-column table (`id` plus 299 integer and text columns) of 40 rows.
async fn wide_table(schema: &str) -> usize {
    let mut columns = vec!["id int PRIMARY KEY".to_string()];
    let mut values = vec!["g".to_string()];
    for c in 1..300 {
        if c % 2 == 0 {
            columns.push(format!("column_with_a_longish_name_{c:03} int"));
            values.push(format!(
                "CASE WHEN g % 7 = {} THEN NULL ELSE g * {c} END",
                c % 7
            ));
        } else {
            columns.push(format!("column_with_a_longish_name_{c:03} varchar(20)"));
            values.push(format!("'v' || g || '-{c}'"));
        }
    }
    pg().await
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; CREATE TABLE {schema}.wide ({}); \
             INSERT INTO {schema}.wide SELECT {} FROM generate_series(1, 40) g;",
            columns.join(", "),
            values.join(", ")
        ))
        .await
        .unwrap();
    columns.len()
}

async fn get_flight_info(server: &TestServer, path: &[&str]) -> FlightInfo {
    let mut client = server.client().await;
    client
        .get_flight_info(FlightDescriptor::new_path(
            path.iter().map(|s| s.to_string()).collect(),
        ))
        .await
        .expect("GetFlightInfo")
}

#[tokio::test]
async fn wide_table_tickets_stay_small_and_its_data_arrives_exactly() {
    let schema = unique("wide");
    let width = wide_table(&schema).await;
    let emulator = common::own_emulator(8, 2, redshift_emulator::FaultSettings::default()).await;
    let port = emulator.local_addr().port().to_string();
    let server = TestServer::start(&[
        ("redshift_port", &port),
        ("endpoint_rows", "8"),
        ("snapshot_reuse_seconds", "off"),
    ])
    .await;
    let info = get_flight_info(&server, &[&schema, "wide"]).await;
    assert!(
        info.endpoint.len() >= 4,
        "{} endpoints",
        info.endpoint.len()
    );
    for endpoint in &info.endpoint {
        let ticket = &endpoint.ticket.as_ref().unwrap().ticket;
        assert!(
            ticket.len() < 1024,
            "a ticket of a {width}-column table has {} bytes",
            ticket.len()
        );
    }
    let batches = read_all(&server, &info).await;
    assert_eq!(batches[0].num_columns(), width);
    let expected = {
        let mut rows = pg_rows(&pg().await, &format!("SELECT * FROM {schema}.wide")).await;
        rows.sort();
        rows
    };
    assert_eq!(rows(&batches), expected);
    server.stop().await;
}

#[tokio::test]
async fn a_run_without_its_columns_object_asks_for_a_new_flight_info() {
    let schema = unique("nocols");
    pg().await
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (id int, name text); \
             INSERT INTO {schema}.t VALUES (1, 'a'), (2, NULL);"
        ))
        .await
        .unwrap();
    let prefix = unique("rsf-cols");
    let settings = [
        ("s3_prefix", prefix.as_str()),
        ("snapshot_reuse_seconds", "off"),
        ("staging_grace_seconds", "600"),
    ];
    let stager = TestServer::start(&settings).await;
    let replica = TestServer::start(&settings).await;
    let info = get_flight_info(&stager, &[&schema, "t"]).await;
    let meta: serde_json::Value = serde_json::from_slice(&info.app_metadata).unwrap();
    let run_id = meta["run_id"].as_str().unwrap();
    let columns_key = format!("{prefix}/{run_id}/columns.json");
    assert!(common::keys_under(&prefix).await.contains(&columns_key));

    common::bucket()
        .delete(&object_store::path::Path::from(columns_key.as_str()))
        .await
        .unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut client = replica.client().await;
    let (code, message) = common::status(match client.do_get(ticket.clone()).await {
        Ok(stream) => stream.try_collect::<Vec<_>>().await,
        Err(error) => Err(error),
    });
    assert_eq!(code, tonic::Code::NotFound, "{message}");
    assert!(message.contains("call GetFlightInfo again"), "{message}");
    // The replica that staged the run wrote the object and still knows it: no GET needed.
    assert_eq!(
        rows(&read_all(&stager, &info).await),
        [
            vec![Some("1".to_string()), Some("a".to_string())],
            vec![Some("2".to_string()), None],
        ]
    );
    stager.stop().await;
    replica.stop().await;
}

/// Handshake on `server` as alice.
async fn handshake(server: &TestServer) -> String {
    let mut client = server.client().await;
    let basic = base64::engine::general_purpose::STANDARD.encode("alice:alice-password");
    client
        .add_header("authorization", &format!("Basic {basic}"))
        .unwrap();
    let token = client
        .handshake(bytes::Bytes::new())
        .await
        .expect("Handshake");
    String::from_utf8(token.to_vec()).unwrap()
}

/// The gRPC code of DoGet of `ticket` on `server` (read to the end).
async fn do_get(server: &TestServer, ticket: &Ticket) -> Result<usize, tonic::Code> {
    let mut client = server.client().await;
    client
        .add_header("authorization", &format!("Bearer {TOKEN}"))
        .unwrap();
    let result = match client.do_get(ticket.clone()).await {
        Ok(stream) => stream.try_collect::<Vec<RecordBatch>>().await,
        Err(error) => Err(error),
    };
    match result {
        Ok(batches) => Ok(batches.iter().map(|b| b.num_rows()).sum()),
        Err(error) => Err(common::status::<()>(Err(error)).0),
    }
}

/// GetSchema with an issued token: `Ok` or the gRPC code.
async fn get_schema(server: &TestServer, token: &str, path: &[&str]) -> Result<(), tonic::Code> {
    let mut client = server.client().await;
    client
        .add_header("authorization", &format!("Bearer {token}"))
        .unwrap();
    client
        .get_schema(FlightDescriptor::new_path(
            path.iter().map(|s| s.to_string()).collect(),
        ))
        .await
        .map(drop)
        .map_err(|e| common::status::<()>(Err(e)).0)
}

#[tokio::test]
async fn replicas_rotating_the_key_accept_tickets_and_tokens_in_flight() {
    let schema = unique("rotate");
    pg().await
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (id int); \
             INSERT INTO {schema}.t SELECT generate_series(1, 25);"
        ))
        .await
        .unwrap();
    let hash = redshift_flight::auth::hash_password("alice-password").unwrap();
    let auth_file = std::env::temp_dir().join(format!("{schema}-access.toml"));
    std::fs::write(
        &auth_file,
        format!("[[users]]\nname = \"alice\"\npassword_hash = \"{hash}\"\n"),
    )
    .unwrap();
    let auth_file = auth_file.to_str().unwrap().to_string();
    let rotated = format!("{KEY_B},{KEY_A}");
    let replica = |secret: String| {
        let auth_file = auth_file.clone();
        async move {
            TestServer::start(&[
                ("ticket_secret", &secret),
                ("auth_file", &auth_file),
                ("auth_tokens", TOKEN),
                ("snapshot_reuse_seconds", "off"),
                ("staging_grace_seconds", "600"),
            ])
            .await
        }
    };
    let old = replica(KEY_A.to_string()).await; // not rotated yet: signs with A
    let mid = replica(rotated).await; // rotating: signs with B, accepts A and B
    let new = replica(KEY_B.to_string()).await; // A retired

    // A ticket signed with A: served by [B, A], refused by [B].
    let mut client = old.client().await;
    client
        .add_header("authorization", &format!("Bearer {TOKEN}"))
        .unwrap();
    let info = client
        .get_flight_info(FlightDescriptor::new_path(vec![schema.clone(), "t".into()]))
        .await
        .unwrap();
    let rows: i64 = info.total_records;
    assert_eq!(rows, 25);
    let mut served = 0;
    for endpoint in &info.endpoint {
        let ticket = endpoint.ticket.clone().unwrap();
        assert_eq!(
            do_get(&new, &ticket).await,
            Err(tonic::Code::PermissionDenied)
        );
        served += do_get(&mid, &ticket)
            .await
            .expect("the rotating replica serves A's ticket");
    }
    assert_eq!(served as i64, rows);

    // A ticket signed by the rotating replica (with B): served by [B], refused by [A].
    let mut client = mid.client().await;
    client
        .add_header("authorization", &format!("Bearer {TOKEN}"))
        .unwrap();
    let info = client
        .get_flight_info(FlightDescriptor::new_path(vec![schema.clone(), "t".into()]))
        .await
        .unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    assert_eq!(
        do_get(&old, &ticket).await,
        Err(tonic::Code::PermissionDenied)
    );
    assert!(do_get(&new, &ticket).await.is_ok());

    // Tokens likewise.
    let path = [schema.as_str(), "t"];
    let token_a = handshake(&old).await;
    assert_eq!(get_schema(&mid, &token_a, &path).await, Ok(()));
    assert_eq!(
        get_schema(&new, &token_a, &path).await,
        Err(tonic::Code::Unauthenticated)
    );
    let token_b = handshake(&mid).await;
    assert_eq!(get_schema(&new, &token_b, &path).await, Ok(()));
    assert_eq!(
        get_schema(&old, &token_b, &path).await,
        Err(tonic::Code::Unauthenticated)
    );

    old.stop().await;
    mid.stop().await;
    new.stop().await;
    let _ = std::fs::remove_file(auth_file);
}

/// A FlightInfo over gRPC's default 4 MiB limit is never sent: the client gets
/// RESOURCE_EXHAUSTED naming the settings that fix it, and the run is deleted at once. One row
/// per row group and per endpoint: 15,000 endpoints of some 300 bytes each.
#[tokio::test]
async fn a_flight_info_over_four_mebibytes_is_refused_and_its_run_dropped() {
    let schema = unique("huge");
    pg().await
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (id int); \
             INSERT INTO {schema}.t SELECT generate_series(1, 15000);"
        ))
        .await
        .unwrap();
    let emulator = common::own_emulator(1, 1, redshift_emulator::FaultSettings::default()).await;
    let port = emulator.local_addr().port().to_string();
    let prefix = unique("rsf-huge");
    let server = TestServer::start(&[
        ("redshift_port", &port),
        ("s3_prefix", &prefix),
        ("endpoint_rows", "1"),
        ("snapshot_reuse_seconds", "off"),
    ])
    .await;
    let mut client = server.client().await;
    let (code, message) = common::status(
        client
            .get_flight_info(FlightDescriptor::new_path(vec![schema.clone(), "t".into()]))
            .await,
    );
    assert_eq!(code, tonic::Code::ResourceExhausted, "{message}");
    assert!(
        message.contains("4 MiB")
            && message.contains("endpoint_rows")
            && message.contains("unload_max_file_size_mb"),
        "{message}"
    );
    assert!(
        common::eventually(std::time::Duration::from_secs(30), || async {
            common::keys_under(&prefix).await.is_empty()
        })
        .await,
        "the run of the refused FlightInfo is left: {:?}",
        common::keys_under(&prefix).await
    );
    server.stop().await;
}
