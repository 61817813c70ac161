//! Endpoint splitting and snapshot reuse, end to end: large files become several endpoints by
//! row-group ranges (every row arrives exactly once, fetched in parallel), and identical requests
//! share one UNLOAD whose run lives until every reader is done.

use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int32Type;
use arrow_flight::{FlightDescriptor, FlightInfo};
use futures::TryStreamExt;
use redshift_emulator::FaultSettings;

use crate::common::{
    TestServer, cancel, eventually, keys_under, own_emulator, pg, pg_rows, unique,
};

fn app(info: &FlightInfo) -> serde_json::Value {
    serde_json::from_slice(&info.app_metadata).unwrap()
}

fn run_id(info: &FlightInfo) -> String {
    app(info)["run_id"]
        .as_str()
        .expect("a staged run")
        .to_string()
}

async fn table(rows: u32) -> String {
    let schema = unique("ep");
    pg().await
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (id int primary key, v varchar(40)); \
             INSERT INTO {schema}.t SELECT g, CASE WHEN g % 97 = 0 THEN NULL ELSE 'row ' || g END \
             FROM generate_series(1, {rows}) g;"
        ))
        .await
        .unwrap();
    schema
}

async fn read_endpoint(server: &TestServer, info: &FlightInfo, i: usize) -> Vec<RecordBatch> {
    let mut client = server.client().await;
    let stream = client
        .do_get(info.endpoint[i].ticket.clone().unwrap())
        .await
        .expect("DoGet");
    stream.try_collect().await.expect("stream")
}

/// Every endpoint at once, each on its own connection; the rows of each endpoint.
async fn read_parallel(server: &TestServer, info: &FlightInfo) -> Vec<Vec<(i32, Option<String>)>> {
    let reads = (0..info.endpoint.len()).map(|i| async move {
        let batches = read_endpoint(server, info, i).await;
        let mut rows = Vec::new();
        for batch in &batches {
            let ids = batch.column(0).as_primitive::<Int32Type>();
            let values = batch.column(1).as_string::<i32>();
            for row in 0..batch.num_rows() {
                let value = (!values.is_null(row)).then(|| values.value(row).to_string());
                rows.push((ids.value(row), value));
            }
        }
        rows
    });
    futures::future::join_all(reads).await
}

/// The table's rows, as PostgreSQL holds them, sorted by id.
async fn expected(schema: &str) -> Vec<(i32, Option<String>)> {
    let mut rows: Vec<(i32, Option<String>)> =
        pg_rows(&pg().await, &format!("SELECT id::text, v FROM {schema}.t"))
            .await
            .into_iter()
            .map(|r| (r[0].as_deref().unwrap().parse().unwrap(), r[1].clone()))
            .collect();
    rows.sort();
    rows
}

/// Every row of every endpoint, sorted, equals `want`; the first difference is reported.
fn assert_rows(got: Vec<Vec<(i32, Option<String>)>>, want: &[(i32, Option<String>)], what: &str) {
    let mut got: Vec<_> = got.into_iter().flatten().collect();
    got.sort();
    let first_difference = got.iter().zip(want).position(|(g, w)| g != w);
    assert!(
        got.len() == want.len() && first_difference.is_none(),
        "{what}: {} rows against {}; first difference at {first_difference:?}",
        got.len(),
        want.len()
    );
}

/// A table of `rows` rows staged by an emulator of the test's own that writes `slices` files with a
/// row group every `rows_per_group` rows, served with `extra` settings; its FlightInfo.
struct Staged {
    _emulator: redshift_emulator::RunningEmulator,
    server: TestServer,
    schema: String,
    prefix: String,
    info: FlightInfo,
}

async fn staged(rows: u32, rows_per_group: usize, slices: usize, extra: &[(&str, &str)]) -> Staged {
    let schema = table(rows).await;
    let emulator = own_emulator(rows_per_group, slices, FaultSettings::default()).await;
    let port = emulator.local_addr().port().to_string();
    let prefix = unique("rsf-ep");
    let mut settings = vec![
        ("redshift_port", port.as_str()),
        ("s3_prefix", prefix.as_str()),
        ("snapshot_reuse_seconds", "off"),
    ];
    settings.extend_from_slice(extra);
    let server = TestServer::start(&settings).await;
    let info = server
        .client()
        .await
        .get_flight_info(FlightDescriptor::new_path(vec![schema.clone(), "t".into()]))
        .await
        .unwrap();
    Staged {
        _emulator: emulator,
        server,
        schema,
        prefix,
        info,
    }
}

#[tokio::test]
async fn large_files_split_into_row_group_endpoints_and_every_row_arrives_once() {
    // Two slices, a row group every 1,000 rows: two files of ten row groups each.
    let Staged {
        server,
        schema,
        prefix,
        info,
        ..
    } = staged(
        20_000,
        1000,
        2,
        &[("endpoint_rows", "2500"), ("staging_grace_seconds", "0")],
    )
    .await;
    let files = app(&info)["files"].as_u64().unwrap() as usize;
    assert_eq!(files, 2, "{:?}", app(&info));
    // 10 row groups of 1,000 rows per file, closed at 3,000 rows: 3 + 3 + 3 + 1 per file.
    assert_eq!(info.endpoint.len(), 8, "row-group ranges of 2 files");
    assert_eq!(info.total_records, 20_000);

    let run = run_id(&info);
    let per_endpoint = read_parallel(&server, &info).await;
    let sizes: Vec<usize> = per_endpoint.iter().map(Vec::len).collect();
    assert_eq!(sizes.iter().filter(|&&n| n == 3000).count(), 6, "{sizes:?}");
    assert_eq!(sizes.iter().filter(|&&n| n == 1000).count(), 2, "{sizes:?}");
    assert_rows(
        per_endpoint,
        &expected(&schema).await,
        "every row once, exactly",
    );

    let gone = eventually(Duration::from_secs(15), || async {
        keys_under(&format!("{prefix}/{run}/")).await.is_empty()
    })
    .await;
    assert!(gone, "deleted once every endpoint was streamed");
    server.stop().await;
}

#[tokio::test]
async fn a_run_is_kept_until_every_endpoint_was_streamed() {
    // The emulator stays up for the control run below.
    let Staged {
        _emulator,
        server,
        schema,
        prefix,
        info,
    } = staged(
        6_000,
        1000,
        1,
        &[("endpoint_rows", "1000"), ("staging_grace_seconds", "0")],
    )
    .await;
    assert_eq!(
        info.endpoint.len(),
        6,
        "one endpoint per row group of one file"
    );
    let run = run_id(&info);
    let mut total = 0;
    for i in 0..5 {
        total += read_endpoint(&server, &info, i)
            .await
            .iter()
            .map(RecordBatch::num_rows)
            .sum::<usize>();
    }
    // The same endpoint streamed twice does not count as another one.
    read_endpoint(&server, &info, 0).await;
    // Had the run been taken for complete, its deletion (no grace period, no share window) would
    // have been scheduled by now. A control run of the same table, streamed to the end only now,
    // is deleted the same way: once it is gone, this one would have been too.
    let control = server
        .client()
        .await
        .get_flight_info(FlightDescriptor::new_path(vec![schema.clone(), "t".into()]))
        .await
        .unwrap();
    let control_run = run_id(&control);
    assert_ne!(control_run, run);
    for i in 0..control.endpoint.len() {
        read_endpoint(&server, &control, i).await;
    }
    let control_gone = eventually(Duration::from_secs(15), || async {
        keys_under(&format!("{prefix}/{control_run}/"))
            .await
            .is_empty()
    })
    .await;
    assert!(control_gone, "the fully streamed control run is deleted");
    assert!(
        !keys_under(&format!("{prefix}/{run}/")).await.is_empty(),
        "one endpoint of the file is still unread"
    );
    total += read_endpoint(&server, &info, 5)
        .await
        .iter()
        .map(RecordBatch::num_rows)
        .sum::<usize>();
    assert_eq!(total, 6000);
    let gone = eventually(Duration::from_secs(15), || async {
        keys_under(&format!("{prefix}/{run}/")).await.is_empty()
    })
    .await;
    assert!(gone, "deleted once the last endpoint was streamed");
    server.stop().await;
}

#[tokio::test]
async fn identical_requests_share_one_unload_and_the_run_lives_until_every_reader_is_done() {
    let schema = table(3_000).await;
    let emulator = own_emulator(
        0,
        2,
        FaultSettings {
            unload_delay_ms: 800,
            ..Default::default()
        },
    )
    .await;
    let port = emulator.local_addr().port().to_string();
    let prefix = unique("rsf-ep-share");
    let server = TestServer::start(&[
        ("redshift_port", &port),
        ("s3_prefix", &prefix),
        ("staging_grace_seconds", "0"),
        ("snapshot_reuse_seconds", "2"),
    ])
    .await;
    let descriptor = FlightDescriptor::new_path(vec![schema.clone(), "t".into()]);
    let get = |d: FlightDescriptor| {
        let server = &server;
        async move { server.client().await.get_flight_info(d).await.unwrap() }
    };
    // Two at once: the second waits for the first's UNLOAD instead of running its own.
    let (a, b) = tokio::join!(get(descriptor.clone()), get(descriptor.clone()));
    // One within the window after it was staged.
    let c = get(descriptor.clone()).await;
    assert_eq!(
        emulator.unload_stats().started(),
        1,
        "one UNLOAD for three requests"
    );
    let run = run_id(&a);
    assert_eq!((run_id(&b), run_id(&c)), (run.clone(), run.clone()));
    let reused: Vec<bool> = [&a, &b, &c]
        .iter()
        .map(|i| app(i)["snapshot_reused"].as_bool().unwrap())
        .collect();
    assert_eq!(reused.iter().filter(|r| **r).count(), 2, "{reused:?}");
    assert_eq!(app(&a)["next_cursor"], app(&c)["next_cursor"]);

    // Another projection is another request.
    let projected = FlightDescriptor::new_cmd(
        serde_json::json!({"table": format!("{schema}.t"), "columns": ["id"]}).to_string(),
    );
    let other = get(projected).await;
    let other_run = run_id(&other);
    assert_ne!(other_run, run);
    assert_eq!(emulator.unload_stats().started(), 2);

    // A and B read everything; C has not yet: the run stays.
    let want = expected(&schema).await;
    for info in [&a, &b] {
        assert_rows(read_parallel(&server, info).await, &want, "A and B");
    }
    // Had A and B been taken for every reader, the run's deletion would have been scheduled, to
    // run after the grace period and the share window. The other projection's run, streamed to
    // the end by its one reader only now, is deleted after the same delay: once it is gone, this
    // one would have been too.
    let mut other_rows = 0;
    for i in 0..other.endpoint.len() {
        other_rows += read_endpoint(&server, &other, i)
            .await
            .iter()
            .map(RecordBatch::num_rows)
            .sum::<usize>();
    }
    assert_eq!(other_rows, 3_000);
    let other_gone = eventually(Duration::from_secs(15), || async {
        keys_under(&format!("{prefix}/{other_run}/"))
            .await
            .is_empty()
    })
    .await;
    assert!(
        other_gone,
        "the other projection's run is deleted once streamed"
    );
    assert!(
        !keys_under(&format!("{prefix}/{run}/")).await.is_empty(),
        "reader C has not streamed the run yet"
    );
    assert_rows(read_parallel(&server, &c).await, &want, "C");
    let gone = eventually(Duration::from_secs(15), || async {
        keys_under(&format!("{prefix}/{run}/")).await.is_empty()
    })
    .await;
    assert!(gone, "deleted once every reader streamed it");

    // Past the window, the same request stages afresh.
    let d = get(descriptor.clone()).await;
    assert_ne!(run_id(&d), run);
    assert!(!app(&d)["snapshot_reused"].as_bool().unwrap());
    assert_eq!(emulator.unload_stats().started(), 3);
    cancel(&mut server.client().await, &d).await;
    server.stop().await;
}

#[tokio::test]
async fn a_reader_that_cancels_a_shared_run_leaves_it_to_the_others() {
    let schema = table(2_000).await;
    let prefix = unique("rsf-ep-cancel");
    let server = TestServer::start(&[
        ("s3_prefix", &prefix),
        ("staging_grace_seconds", "0"),
        ("snapshot_reuse_seconds", "30"),
    ])
    .await;
    let descriptor = FlightDescriptor::new_path(vec![schema.clone(), "t".into()]);
    let mut flight = server.client().await;
    let a = flight.get_flight_info(descriptor.clone()).await.unwrap();
    let b = flight.get_flight_info(descriptor.clone()).await.unwrap();
    let run = run_id(&a);
    assert_eq!(run_id(&b), run);
    cancel(&mut flight, &a).await;
    assert_rows(
        read_parallel(&server, &b).await,
        &expected(&schema).await,
        "B still reads the whole run",
    );
    // A cancelled run is not shared any more.
    let c = flight.get_flight_info(descriptor.clone()).await.unwrap();
    assert_ne!(run_id(&c), run);
    cancel(&mut flight, &c).await;
    // B cancels too: nobody needs the run.
    cancel(&mut flight, &b).await;
    assert!(keys_under(&format!("{prefix}/{run}/")).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn streams_beyond_the_memory_budget_take_turns_and_every_row_arrives() {
    let Staged {
        server,
        schema,
        info,
        ..
    } = staged(
        40_000,
        2000,
        4,
        &[
            ("endpoint_rows", "2000"),
            // 1 MB is 16 shares of 64 KiB and each row group takes at least one: of the 20
            // streams below, some must wait for others to finish.
            ("stream_memory_mb", "1"),
        ],
    )
    .await;
    assert_eq!(info.endpoint.len(), 20);
    let per_endpoint = tokio::time::timeout(Duration::from_secs(60), read_parallel(&server, &info))
        .await
        .expect("no stream starves");
    assert_rows(
        per_endpoint,
        &expected(&schema).await,
        "all rows, budget in turns",
    );
    server.stop().await;
}
