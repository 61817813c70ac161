//! The client against the real server on the test bed: parallel reads (ordered and not),
//! errors told apart by reason, bearer tokens, incremental sync steps that move the cursor only
//! after the sink committed, a stale cursor as its own error, and an expired run planned again
//! transparently (by `Client::read_flight` and by a DataFusion scan).

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Int64Array, RecordBatch};
use async_trait::async_trait;
use futures::TryStreamExt;
use redshift_flight_client::{
    BatchSink, Client, CursorStore, Error, FileCursorStore, Flight, Mode, ReadOptions, Sync,
    TableRequest,
};

use common::{SchemaGuard, Server, pg, unique};

const SETUP: &str = r#"
CREATE TABLE {s}.events (id bigint PRIMARY KEY, kind varchar(20), updated_at timestamp NOT NULL);
INSERT INTO {s}.events
  SELECT g, 'kind ' || (g % 7), timestamp '2024-01-01' + g * interval '1 second'
  FROM generate_series(1, 20000) g;
"#;

fn ids(batches: &[RecordBatch]) -> Vec<i64> {
    let mut ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            let column = b.column_by_name("id").unwrap();
            column
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect();
    ids.sort_unstable();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_every_endpoint_in_parallel_ordered_or_not() {
    let pg = pg().await;
    let schema = SchemaGuard::create(&pg, "rust_read", SETUP).await;
    let server = Server::start(&schema.name, &[("endpoint_rows", "2000")]);
    let client = server.client().await;
    let request = TableRequest::new(format!("{}.events", schema.name)).mode(Mode::Full);
    for ordered in [false, true] {
        let options = ReadOptions {
            parallelism: 3,
            ordered,
            ..ReadOptions::default()
        };
        let mut stream = client.read_with(request.clone(), options);
        let mut batches = Vec::new();
        while let Some(batch) = stream.try_next().await.unwrap() {
            batches.push(batch);
        }
        let flight = stream.flight().unwrap();
        assert!(flight.endpoints().len() > 1, "{:?}", flight.metadata);
        assert_eq!(ids(&batches), (1..=20_000).collect::<Vec<_>>());
        assert_eq!(flight.total_records(), Some(20_000));
        assert_eq!(flight.metadata.mode, "full");
        assert_eq!(
            flight.metadata.replication_key.as_deref(),
            Some("updated_at")
        );
    }
    // The schema and table list.
    let schema_ref = client
        .schema(&format!("{}.events", schema.name))
        .await
        .unwrap();
    assert_eq!(schema_ref.fields().len(), 3);
    let tables = client.tables(&schema.name).await.unwrap();
    assert_eq!(
        tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["events"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_told_apart_and_tokens_are_sent() {
    let pg = pg().await;
    let schema = SchemaGuard::create(&pg, "rust_errors", SETUP).await;
    let token = "a-test-token-of-32-characters-xyz";
    let server = Server::start(&schema.name, &[("auth_tokens", token)]);

    let anonymous = server.client().await;
    let events = TableRequest::new(format!("{}.events", schema.name));
    match anonymous.plan(&events).await {
        Err(Error::Unauthenticated(e)) => assert_eq!(e.reason.as_deref(), Some("UNAUTHENTICATED")),
        other => panic!("expected Unauthenticated, got {other:?}"),
    }

    let client = Client::builder(&server.uri)
        .bearer_token(token)
        .connect()
        .await
        .unwrap();
    assert!(
        !format!("{client:?}").contains(token),
        "Debug must not show the token"
    );
    match client
        .plan(&TableRequest::new(format!("{}.nope", schema.name)))
        .await
    {
        Err(e @ Error::NotFound(_)) => assert_eq!(e.reason(), Some("TABLE_NOT_FOUND")),
        other => panic!("expected NotFound, got {other:?}"),
    }
    match client
        .plan(&events.clone().filter("pg_sleep(1) IS NULL"))
        .await
    {
        Err(e @ Error::InvalidRequest(_)) => assert_eq!(e.reason(), Some("INVALID_FILTER")),
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
    match client
        .plan(&events.clone().cursor(Some("rsfc1.garbage")))
        .await
    {
        Err(e @ Error::InvalidRequest(_)) => assert_eq!(e.reason(), Some("INVALID_CURSOR")),
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
    let batches: Vec<RecordBatch> = client
        .read(events.filter("id <= 10").mode(Mode::Full))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(ids(&batches), (1..=10).collect::<Vec<_>>());
}

/// Keeps what it is given; `fail_commit` makes the next commit fail.
#[derive(Default)]
struct MemorySink {
    pending: Vec<RecordBatch>,
    committed: Vec<(String, Vec<RecordBatch>)>,
    fail_commit: bool,
}

#[async_trait]
impl BatchSink for MemorySink {
    async fn begin(&mut self, _flight: &Flight) -> redshift_flight_client::Result<()> {
        self.pending.clear();
        Ok(())
    }

    async fn write(&mut self, batch: RecordBatch) -> redshift_flight_client::Result<()> {
        self.pending.push(batch);
        Ok(())
    }

    async fn commit(&mut self, flight: &Flight) -> redshift_flight_client::Result<()> {
        if std::mem::take(&mut self.fail_commit) {
            return Err(Error::external("the sink's disk is full"));
        }
        let batches = std::mem::take(&mut self.pending);
        self.committed.push((flight.metadata.mode.clone(), batches));
        Ok(())
    }

    async fn abort(&mut self) {
        self.pending.clear();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_steps_store_the_cursor_only_after_the_sink_committed() {
    let pg = pg().await;
    let schema = SchemaGuard::create(&pg, "rust_sync", SETUP).await;
    // catalog_ttl_seconds 0: the server sees the column change below at once.
    let server = Server::start(&schema.name, &[("catalog_ttl_seconds", "0")]);
    let client = server.client().await;
    let dir = std::env::temp_dir().join(unique("rsf-rust-sync"));
    let sync = Sync::new(client, FileCursorStore::new(dir.join("cursors.json")));
    let request = TableRequest::new(format!("{}.events", schema.name));
    let mut sink = MemorySink::default();

    let first = sync.step(&request, &mut sink).await.unwrap();
    assert_eq!((first.mode(), first.rows), ("incremental", 20_000));
    assert!(first.cursor_before.is_none() && first.cursor_after.is_some());
    let stored = sync.store().load(&request.table).await.unwrap().unwrap();
    assert_eq!(stored.cursor, first.cursor_after);

    // Nothing new: no rows, the cursor stays byte for byte.
    let again = sync.step(&request, &mut sink).await.unwrap();
    assert_eq!((again.rows, &again.cursor_after), (0, &first.cursor_after));

    let table = format!("{}.events", schema.quoted());
    pg.batch_execute(&format!(
        "INSERT INTO {table} SELECT g, 'new', timestamp '2025-01-01' + g * interval '1 second' \
         FROM generate_series(20001, 20100) g"
    ))
    .await
    .unwrap();
    // A sink that fails to commit: the cursor must not move.
    sink.fail_commit = true;
    let failed = sync.step(&request, &mut sink).await;
    assert!(matches!(failed, Err(Error::External(_))), "{failed:?}");
    let stored = sync.store().load(&request.table).await.unwrap().unwrap();
    assert_eq!(stored.cursor, first.cursor_after);
    // The same window again, committed this time.
    let second = sync.step(&request, &mut sink).await.unwrap();
    assert_eq!(second.rows, 100);
    let (mode, batches) = sink.committed.last().unwrap();
    assert_eq!(
        (mode.as_str(), ids(batches)),
        ("incremental", (20_001..=20_100).collect())
    );
    assert_ne!(second.cursor_after, first.cursor_after);

    // The key column changes type: the stored cursor is stale, reported as such.
    pg.batch_execute(&format!(
        "ALTER TABLE {table} ALTER COLUMN updated_at TYPE timestamptz"
    ))
    .await
    .unwrap();
    match sync.step(&request, &mut sink).await {
        Err(e @ Error::StaleCursor(_)) => assert_eq!(e.reason(), Some("STALE_CURSOR")),
        other => panic!("expected StaleCursor, got {other:?}"),
    }
    // A full step starts over and continues from its cursor.
    let full = sync
        .step(&request.clone().mode(Mode::Full), &mut sink)
        .await
        .unwrap();
    assert_eq!((full.mode(), full.rows), ("full", 20_100));
    let next = sync.step(&request, &mut sink).await.unwrap();
    assert_eq!((next.mode(), next.rows), ("incremental", 0));
    std::fs::remove_dir_all(dir).unwrap();
}

/// Waits until `flight`'s tickets have expired.
async fn wait_for_expiry(flight: &Flight) {
    let expires = flight.metadata.expires_at.as_deref().expect("a staged run");
    let expires = chrono::DateTime::parse_from_rfc3339(expires).unwrap();
    let left = expires.signed_duration_since(chrono::Utc::now());
    let left = left.to_std().unwrap_or_default() + Duration::from_millis(300);
    assert!(
        left < Duration::from_secs(10),
        "staging_ttl_seconds is not short"
    );
    tokio::time::sleep(left).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_run_is_planned_again_transparently() {
    let pg = pg().await;
    let schema = SchemaGuard::create(&pg, "rust_expiry", SETUP).await;
    let server = Server::start(
        &schema.name,
        &[
            ("staging_ttl_seconds", "2"),
            ("sweep_interval_seconds", "1"),
            ("endpoint_rows", "5000"),
        ],
    );
    let client = server.client().await;
    let request = TableRequest::new(format!("{}.events", schema.name)).mode(Mode::Full);
    let flight = client.plan(&request).await.unwrap();
    let first_run = flight.metadata.run_id.clone();
    wait_for_expiry(&flight).await;
    let mut stream = client.read_flight(flight, ReadOptions::default());
    let mut batches = Vec::new();
    while let Some(batch) = stream.try_next().await.unwrap() {
        batches.push(batch);
    }
    assert_eq!(ids(&batches).len(), 20_000);
    let replanned = stream.flight().unwrap();
    assert_ne!(
        replanned.metadata.run_id, first_run,
        "the read was not planned again"
    );

    // The same for a DataFusion scan planned before the run expired.
    use datafusion::prelude::SessionContext;
    use redshift_flight_client::datafusion::RedshiftFlightTable;
    let table = RedshiftFlightTable::try_new(client.clone(), &format!("{}.events", schema.name))
        .await
        .unwrap();
    let ctx = SessionContext::new();
    ctx.register_table("events", Arc::new(table)).unwrap();
    let frame = ctx
        .sql("SELECT count(*), count(DISTINCT kind) FROM events WHERE id > 100")
        .await
        .unwrap();
    let plan = frame.create_physical_plan().await.unwrap();
    let mut runs = BTreeSet::new();
    let mut scans = vec![Arc::clone(&plan)];
    let mut scan = None;
    while let Some(node) = scans.pop() {
        if let Some(exec) =
            node.downcast_ref::<redshift_flight_client::datafusion::RedshiftFlightExec>()
        {
            let flight = exec.flight().await;
            runs.insert(flight.metadata.run_id.clone());
            wait_for_expiry(&flight).await;
            scan = Some(Arc::clone(&node));
        }
        scans.extend(node.children().into_iter().cloned());
    }
    let batches = datafusion::physical_plan::collect(plan, ctx.task_ctx())
        .await
        .unwrap();
    assert_eq!(
        common::rows_as_text(&batches),
        vec![vec![Some("19900".to_string()), Some("7".to_string())]]
    );
    let scan = scan.expect("a RedshiftFlightExec");
    let exec = scan
        .downcast_ref::<redshift_flight_client::datafusion::RedshiftFlightExec>()
        .unwrap();
    assert!(
        runs.insert(exec.flight().await.metadata.run_id.clone()),
        "the scan was not planned again"
    );
}
