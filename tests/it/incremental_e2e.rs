//! End-to-end incremental sync: the closed cursor window, cursors, lookback, full resync and the
//! bound on concurrent UNLOADs, against the test bed with arrow-flight's `FlightClient`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arrow::datatypes::{DataType, TimeUnit};
use arrow_flight::{FlightDescriptor, FlightInfo};
use tonic::Code;

use crate::common;
use crate::common::canon::{Col, Kind, canon_batches, pg_canon_rows, read_all};
use crate::common::{TestServer, cancel, eventually, pg, status, unique};

fn app(info: &FlightInfo) -> serde_json::Value {
    serde_json::from_slice(&info.app_metadata).expect("app_metadata is JSON")
}

fn command(value: serde_json::Value) -> FlightDescriptor {
    FlightDescriptor::new_cmd(value.to_string())
}

fn columns() -> [Col; 4] {
    [
        Col::new("id", Kind::Text, DataType::Int32),
        Col::new("v", Kind::Text, DataType::Utf8),
        Col::new(
            "updated_at",
            Kind::Epoch,
            DataType::Timestamp(TimeUnit::Microsecond, None),
        ),
        Col::new("created", Kind::Days, DataType::Date32),
    ]
}

/// Upserts canonical rows on their first column (the primary key).
fn upsert(into: &mut BTreeMap<i64, Vec<Option<String>>>, rows: Vec<Vec<Option<String>>>) {
    for row in rows {
        let key = row[0].as_ref().unwrap().parse().unwrap();
        into.insert(key, row);
    }
}

#[tokio::test]
async fn incremental_syncs_move_only_what_changed_and_skip_nothing() {
    let schema = unique("inc");
    let pg = pg().await;
    pg.batch_execute(&format!(
        "CREATE SCHEMA {schema}; \
         CREATE TABLE {schema}.t (id int primary key, v varchar(20), updated_at timestamp, created date); \
         INSERT INTO {schema}.t SELECT g, 'v' || g, TIMESTAMP '2024-01-01' + g * INTERVAL '1 microsecond', DATE '2020-01-01' \
           FROM generate_series(1, 1000) g; \
         INSERT INTO {schema}.t VALUES (0, 'null key', NULL, NULL);"
    ))
    .await
    .unwrap();
    let server = TestServer::start(&[]).await;
    let mut flight = server.client().await;
    let table = format!("{schema}.t");
    let cols = columns();
    let col_refs: Vec<&Col> = cols.iter().collect();

    // First sync: auto picks updated_at (preferred over the first DATE column), no lower bound.
    let info = flight
        .get_flight_info(command(serde_json::json!({"table": table})))
        .await
        .unwrap();
    let meta = app(&info);
    assert_eq!(meta["mode"], "incremental");
    assert_eq!(meta["replication_key"], "updated_at");
    assert_eq!(meta["replication_key_source"], "inferred");
    assert_eq!(meta["upper_bound"], "2024-01-01 00:00:00.001");
    assert_eq!(
        info.total_records, 1000,
        "the NULL-key row comes with full syncs only"
    );
    let mut synced = BTreeMap::new();
    let first = canon_batches(&read_all(&server, &info).await);
    assert_eq!(first.len(), 1000);
    upsert(&mut synced, first);
    let mut cursor = meta["next_cursor"].as_str().unwrap().to_string();

    // Writes: new rows, updates moving the key forward, several rows sharing the new maximum.
    pg.batch_execute(&format!(
        "INSERT INTO {schema}.t SELECT g, 'new' || g, TIMESTAMP '2024-02-01 00:00:00.000007', NULL \
           FROM generate_series(1001, 1003) g; \
         UPDATE {schema}.t SET v = 'changed', updated_at = TIMESTAMP '2024-02-01 00:00:00.000007' WHERE id IN (5, 6); \
         UPDATE {schema}.t SET v = 'moved back' WHERE id = 7;"
    ))
    .await
    .unwrap();
    let info = flight
        .get_flight_info(command(
            serde_json::json!({"table": table, "cursor": cursor}),
        ))
        .await
        .unwrap();
    let meta = app(&info);
    assert_eq!(meta["mode"], "incremental");
    assert_eq!(meta["replication_key_source"], "cursor");
    assert_eq!(meta["lower_bound"], "2024-01-01 00:00:00.001");
    assert_eq!(meta["upper_bound"], "2024-02-01 00:00:00.000007");
    let second = canon_batches(&read_all(&server, &info).await);
    let ids: Vec<&str> = second.iter().map(|r| r[0].as_deref().unwrap()).collect();
    assert_eq!(
        ids,
        ["5", "6", "1001", "1002", "1003"],
        "only rows above the cursor"
    );
    upsert(&mut synced, second);
    cursor = meta["next_cursor"].as_str().unwrap().to_string();

    // Nothing new: no endpoints, no UNLOAD, the same cursor back byte for byte.
    let info = flight
        .get_flight_info(command(
            serde_json::json!({"table": table, "cursor": cursor}),
        ))
        .await
        .unwrap();
    let meta = app(&info);
    assert!(info.endpoint.is_empty());
    assert_eq!(info.total_records, 0);
    assert!(meta["run_id"].is_null(), "no UNLOAD ran");
    assert_eq!(meta["next_cursor"].as_str().unwrap(), cursor);

    // id 7 changed without moving its key: a lookback window re-reads it.
    let info = flight
        .get_flight_info(command(
            serde_json::json!({"table": table, "cursor": cursor, "lookback": "1 day"}),
        ))
        .await
        .unwrap();
    assert!(
        info.endpoint.is_empty(),
        "a lookback alone does not trigger an UNLOAD when nothing is new"
    );
    pg.batch_execute(&format!(
        "INSERT INTO {schema}.t VALUES (1004, 'late', TIMESTAMP '2024-02-01 00:00:00.000008', NULL);"
    ))
    .await
    .unwrap();
    let info = flight
        .get_flight_info(command(
            serde_json::json!({"table": table, "cursor": cursor, "lookback": 3600 * 24 * 40}),
        ))
        .await
        .unwrap();
    let meta = app(&info);
    assert_eq!(meta["lookback"], 3600 * 24 * 40);
    let third = canon_batches(&read_all(&server, &info).await);
    let ids: Vec<&str> = third.iter().map(|r| r[0].as_deref().unwrap()).collect();
    assert!(
        ids.contains(&"7") && ids.contains(&"1004") && ids.contains(&"5"),
        "{ids:?}"
    );
    upsert(&mut synced, third);

    // The union of the syncs, upserted on the key, equals the table (rows with a key).
    let want = pg_canon_rows(
        &format!("{schema}.t WHERE updated_at IS NOT NULL"),
        &col_refs,
    )
    .await;
    let got: Vec<Vec<Option<String>>> = synced.into_values().collect();
    let differences: Vec<_> = got
        .iter()
        .zip(&want)
        .filter(|(g, w)| g != w)
        .take(5)
        .collect();
    assert!(
        got.len() == want.len() && differences.is_empty(),
        "incremental syncs reproduce the table: {} vs {} rows, {differences:?}",
        got.len(),
        want.len()
    );

    // A full sync brings the NULL-key row and still hands out a cursor.
    let info = flight
        .get_flight_info(command(serde_json::json!({"table": table, "mode": "full"})))
        .await
        .unwrap();
    let meta = app(&info);
    assert_eq!(meta["mode"], "full");
    assert_eq!(info.total_records, 1005);
    assert_eq!(meta["upper_bound"], "2024-02-01 00:00:00.000008");
    assert!(meta["next_cursor"].is_string());
    cancel(&mut flight, &info).await;
    server.stop().await;
}

#[tokio::test]
async fn explicit_keys_of_every_supported_type_round_trip_their_cursor() {
    let schema = unique("inc_keys");
    let pg = pg().await;
    pg.batch_execute(&format!(
        "CREATE SCHEMA {schema}; \
         CREATE TABLE {schema}.t (id bigint primary key, amount numeric(38,10), code varchar(10), day date, at timestamptz); \
         INSERT INTO {schema}.t VALUES \
           (1, 1.0000000001, 'a''1', '2024-01-01', '2024-01-01 10:00:00.000001+02'), \
           (2, 99999999999999999999999999.9999999999, 'b\\2', '2024-01-02', '2024-01-01 10:00:00.000002+02');"
    ))
    .await
    .unwrap();
    let server = TestServer::start(&[]).await;
    let mut flight = server.client().await;
    for key in ["id", "amount", "code", "day", "at"] {
        let table = format!("{schema}.t");
        let info = flight
            .get_flight_info(command(
                serde_json::json!({"table": table, "replication_key": key, "mode": "incremental"}),
            ))
            .await
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        let meta = app(&info);
        assert_eq!(meta["replication_key_source"], "requested");
        assert_eq!(info.total_records, 2, "{key}");
        let cursor = meta["next_cursor"].as_str().unwrap().to_string();
        cancel(&mut flight, &info).await;
        pg.batch_execute(&format!(
            "INSERT INTO {schema}.t VALUES (3, 100000000000000000000000000.0000000000, 'c', '2024-01-03', '2024-01-01 08:00:00.000003+00')"
        ))
        .await
        .unwrap();
        let info = flight
            .get_flight_info(command(
                serde_json::json!({"table": table, "replication_key": key, "cursor": cursor}),
            ))
            .await
            .unwrap();
        let rows = canon_batches(&read_all(&server, &info).await);
        assert_eq!(
            rows.len(),
            1,
            "{key}: exactly the new row, no float rounding of the bound"
        );
        assert_eq!(rows[0][0].as_deref(), Some("3"));
        pg.batch_execute(&format!("DELETE FROM {schema}.t WHERE id = 3"))
            .await
            .unwrap();
    }
    server.stop().await;
}

#[tokio::test]
async fn cursor_and_mode_errors_are_clear() {
    let schema = unique("inc_err");
    let pg = pg().await;
    pg.batch_execute(&format!(
        "CREATE SCHEMA {schema}; \
         CREATE TABLE {schema}.a (id int, updated_at timestamp); INSERT INTO {schema}.a VALUES (1, now()); \
         CREATE TABLE {schema}.b (id int, updated_at timestamp); INSERT INTO {schema}.b VALUES (1, now()); \
         CREATE TABLE {schema}.nokey (id int, f double precision); INSERT INTO {schema}.nokey VALUES (1, 1.5);"
    ))
    .await
    .unwrap();
    let server = TestServer::start(&[]).await;
    let mut flight = server.client().await;
    let a = format!("{schema}.a");
    let info = flight
        .get_flight_info(command(serde_json::json!({"table": a})))
        .await
        .unwrap();
    let cursor_a = app(&info)["next_cursor"].as_str().unwrap().to_string();
    cancel(&mut flight, &info).await;

    let (code, message) = status(
        flight
            .get_flight_info(command(
                serde_json::json!({"table": format!("{schema}.b"), "cursor": cursor_a}),
            ))
            .await,
    );
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(message.contains("cursor is for table"), "{message}");
    let (code, message) = status(
        flight
            .get_flight_info(command(
                serde_json::json!({"table": a, "cursor": cursor_a, "replication_key": "id"}),
            ))
            .await,
    );
    assert_eq!(code, Code::InvalidArgument, "{message}");
    let (code, _) = status(
        flight
            .get_flight_info(command(
                serde_json::json!({"table": a, "cursor": "rsfc1.garbage"}),
            ))
            .await,
    );
    assert_eq!(code, Code::InvalidArgument);
    let (code, _) = status(
        flight
            .get_flight_info(command(
                serde_json::json!({"table": a, "cursor": cursor_a, "lookback": "1 fortnight"}),
            ))
            .await,
    );
    assert_eq!(code, Code::InvalidArgument);
    let (code, message) = status(
        flight
            .get_flight_info(command(
                serde_json::json!({"table": format!("{schema}.nokey"), "mode": "incremental"}),
            ))
            .await,
    );
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(message.contains(&format!("{schema}.nokey")), "{message}");
    let (code, message) = status(
        flight
            .get_flight_info(command(
                serde_json::json!({"table": format!("{schema}.nokey"), "mode": "incremental", "replication_key": "f"}),
            ))
            .await,
    );
    assert_eq!(code, Code::InvalidArgument, "{message}");
    let info = flight
        .get_flight_info(command(
            serde_json::json!({"table": format!("{schema}.nokey")}),
        ))
        .await
        .unwrap();
    cancel(&mut flight, &info).await;
    assert_eq!(
        app(&info)["mode"],
        "full",
        "auto without a key falls back to full"
    );
    assert!(app(&info)["next_cursor"].is_null());

    // The key changes type, then disappears: the cursor's position means nothing any more.
    pg.batch_execute(&format!(
        "ALTER TABLE {schema}.a ALTER COLUMN updated_at TYPE date"
    ))
    .await
    .unwrap();
    let server2 = TestServer::start(&[]).await;
    let mut flight2 = server2.client().await;
    let (code, message) = status(
        flight2
            .get_flight_info(command(serde_json::json!({"table": a, "cursor": cursor_a})))
            .await,
    );
    assert_eq!(code, Code::FailedPrecondition, "{message}");
    assert!(message.contains("changed type"), "{message}");
    pg.batch_execute(&format!("ALTER TABLE {schema}.a DROP COLUMN updated_at"))
        .await
        .unwrap();
    let server3 = TestServer::start(&[]).await;
    let mut flight3 = server3.client().await;
    let (code, message) = status(
        flight3
            .get_flight_info(command(serde_json::json!({"table": a, "cursor": cursor_a})))
            .await,
    );
    assert_eq!(code, Code::FailedPrecondition, "{message}");
    assert!(message.contains("no longer exists"), "{message}");
    server.stop().await;
    server2.stop().await;
    server3.stop().await;
}

#[tokio::test]
async fn complete_resync_forces_full_snapshots() {
    let schema = unique("inc_resync");
    let pg = pg().await;
    pg.batch_execute(&format!(
        "CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (id int, updated_at timestamp); \
         INSERT INTO {schema}.t VALUES (1, '2024-01-01'), (2, NULL);"
    ))
    .await
    .unwrap();
    let server = TestServer::start(&[("enable_complete_resync", "true")]).await;
    let mut flight = server.client().await;
    let info = flight
        .get_flight_info(command(
            serde_json::json!({"table": format!("{schema}.t"), "mode": "incremental"}),
        ))
        .await
        .unwrap();
    let meta = app(&info);
    assert_eq!(meta["mode"], "full");
    assert!(
        meta["reason"]
            .as_str()
            .unwrap()
            .contains("enable_complete_resync")
    );
    assert_eq!(info.total_records, 2);
    cancel(&mut flight, &info).await;
    server.stop().await;
}

#[tokio::test]
async fn unloads_beyond_max_parallel_workers_queue_and_honour_deadlines() {
    let schema = unique("inc_queue");
    let pg = pg().await;
    pg.batch_execute(&format!(
        "CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (id int); INSERT INTO {schema}.t VALUES (1);"
    ))
    .await
    .unwrap();
    let emulator = common::own_emulator(
        0,
        4,
        redshift_emulator::FaultSettings {
            unload_delay_ms: 1500,
            ..Default::default()
        },
    )
    .await;
    let port = emulator.local_addr().port().to_string();
    let server = TestServer::start(&[
        ("redshift_port", &port),
        ("max_parallel_workers", "1"),
        // Identical requests would otherwise share one UNLOAD.
        ("snapshot_reuse_seconds", "off"),
    ])
    .await;
    let descriptor = FlightDescriptor::new_path(vec![schema.clone(), "t".into()]);

    let started = Instant::now();
    let mut a = server.client().await;
    let first = tokio::spawn({
        let d = descriptor.clone();
        async move { a.get_flight_info(d).await }
    });
    // The first request holds the one worker once its UNLOAD has started.
    let running = eventually(Duration::from_secs(10), || {
        std::future::ready(emulator.unload_stats().started() == 1)
    })
    .await;
    assert!(running, "the first UNLOAD started");
    // Queued behind the first UNLOAD, this one's deadline passes: it gives up its place.
    let mut impatient = server.client().await;
    impatient.add_header("grpc-timeout", "400m").unwrap();
    let (code, message) = status(impatient.get_flight_info(descriptor.clone()).await);
    // tonic's server reports an expired grpc-timeout as CANCELLED ("Timeout expired").
    assert!(
        matches!(code, Code::DeadlineExceeded | Code::Cancelled),
        "{code:?} {message}"
    );
    let mut c = server.client().await;
    let second = c
        .get_flight_info(descriptor.clone())
        .await
        .expect("a queued request is served, not failed");
    let first = first.await.unwrap().expect("first request");
    assert_eq!((first.total_records, second.total_records), (1, 1));
    cancel(&mut c, &first).await;
    cancel(&mut c, &second).await;
    assert!(
        started.elapsed() >= Duration::from_millis(3000),
        "with max_parallel_workers = 1 the two 1.5 s UNLOADs ran one after the other ({:?})",
        started.elapsed()
    );
    server.stop().await;
    emulator.shutdown().await;
}

#[tokio::test]
async fn two_workers_run_eight_requested_tables_two_at_a_time() {
    let schema = unique("inc_workers");
    let pg = pg().await;
    let mut ddl = format!("CREATE SCHEMA {schema};");
    for t in 0..8 {
        ddl.push_str(&format!(
            "CREATE TABLE {schema}.t{t} (id int); INSERT INTO {schema}.t{t} VALUES ({t});"
        ));
    }
    pg.batch_execute(&ddl).await.unwrap();
    let emulator = common::own_emulator(
        0,
        4,
        redshift_emulator::FaultSettings {
            unload_delay_ms: 300,
            ..Default::default()
        },
    )
    .await;
    let port = emulator.local_addr().port().to_string();
    let server = std::sync::Arc::new(
        TestServer::start(&[("redshift_port", &port), ("max_parallel_workers", "2")]).await,
    );
    let mut requests = Vec::new();
    for t in 0..8 {
        let server = std::sync::Arc::clone(&server);
        let schema = schema.clone();
        requests.push(tokio::spawn(async move {
            let mut client = server.client().await;
            let info = client
                .get_flight_info(FlightDescriptor::new_path(vec![schema, format!("t{t}")]))
                .await
                .expect("every request completes");
            let rows = canon_batches(&read_all(&server, &info).await);
            assert_eq!(rows, vec![vec![Some(t.to_string())]]);
        }));
    }
    for request in requests {
        request.await.unwrap();
    }
    let stats = emulator.unload_stats();
    assert_eq!(stats.started(), 8);
    assert_eq!(
        stats.max_concurrent(),
        2,
        "never more than max_parallel_workers UNLOADs at once"
    );
    std::sync::Arc::try_unwrap(server)
        .ok()
        .expect("sole owner")
        .stop()
        .await;
    emulator.shutdown().await;
}
