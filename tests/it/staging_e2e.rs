//! Staging cannot lose or duplicate rows, actions check their caller, and server faults reach the
//! client as a stable message with a reason code and a request id (issue 11). Each test here
//! failed before its fix.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use arrow::array::RecordBatch;
use arrow_flight::error::FlightError;
use arrow_flight::{CancelFlightInfoRequest, FlightClient, FlightDescriptor, FlightInfo};
use futures::TryStreamExt;
use redshift_emulator::FaultSettings;
use tonic::Code;
use tonic_types::StatusExt;

use crate::common;
use crate::common::{TestServer, eventually, keys_under, own_emulator, pg, pg_rows, unique};

async fn table_with_rows(rows: u32) -> String {
    let schema = unique("stg");
    pg().await
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; \
             CREATE TABLE {schema}.t (id int primary key, v varchar(30), updated_at timestamp); \
             INSERT INTO {schema}.t SELECT g, 'value ' || g, timestamp '2024-01-01' + g * interval '1 second' \
             FROM generate_series(1, {rows}) g;"
        ))
        .await
        .unwrap();
    schema
}

fn app(info: &FlightInfo) -> serde_json::Value {
    serde_json::from_slice(&info.app_metadata).unwrap()
}

/// Every id read through all endpoints of `info`, sorted.
async fn read_ids(flight: &mut FlightClient, info: &FlightInfo) -> Vec<i32> {
    let mut ids = Vec::new();
    for endpoint in &info.endpoint {
        let batches: Vec<RecordBatch> = flight
            .do_get(endpoint.ticket.clone().unwrap())
            .await
            .expect("DoGet")
            .try_collect()
            .await
            .expect("stream");
        for batch in batches {
            let column = batch
                .column_by_name("id")
                .unwrap()
                .as_any()
                .downcast_ref::<arrow::array::Int32Array>()
                .unwrap()
                .clone();
            ids.extend(column.values().iter().copied());
        }
    }
    ids.sort_unstable();
    ids
}

fn tonic_status(result: Result<impl std::fmt::Debug, FlightError>) -> tonic::Status {
    match result {
        Err(FlightError::Tonic(status)) => *status,
        other => panic!("expected an error status, got {other:?}"),
    }
}

/// An UNLOAD that runs longer than `staging_ttl_seconds`, and a request that waits for an UNLOAD
/// slot longer than that, are neither swept while being written nor born expired: the run's clock
/// starts when its UNLOAD finished, and a lease covers the UNLOAD while it runs.
#[tokio::test]
async fn long_and_queued_unloads_are_not_swept_and_their_tickets_live_a_full_ttl() {
    let schema = table_with_rows(3000).await;
    let prefix = unique("rsf-stg-ttl");
    let emulator = own_emulator(
        0,
        2,
        FaultSettings {
            unload_delay_ms: 3500,
            ..Default::default()
        },
    )
    .await;
    let port = emulator.local_addr().port().to_string();
    let server = TestServer::start(&[
        ("s3_prefix", &prefix),
        ("redshift_port", &port),
        ("staging_ttl_seconds", "2"),
        ("sweep_interval_seconds", "1"),
        ("max_parallel_workers", "1"),
        ("staging_grace_seconds", "0"),
    ])
    .await;
    let request = || async {
        let mut flight = server.client().await;
        let info = flight
            .get_flight_info(FlightDescriptor::new_path(vec![schema.clone(), "t".into()]))
            .await
            .expect("GetFlightInfo");
        let answered = SystemTime::now();
        let ids = read_ids(&mut flight, &info).await;
        (info, answered, ids)
    };
    // Two at once: the second waits for the only UNLOAD slot for the first one's 3.5 s.
    let ((first, first_at, first_ids), (second, second_at, second_ids)) =
        tokio::join!(request(), request());
    let want: Vec<i32> = (1..=3000).collect();
    assert_eq!(
        first_ids, want,
        "every row of the run that took longer than its TTL"
    );
    assert_eq!(
        second_ids, want,
        "every row of the run that queued longer than its TTL"
    );
    for (info, answered) in [(&first, first_at), (&second, second_at)] {
        let expires: chrono::DateTime<chrono::Utc> =
            app(info)["expires_at"].as_str().unwrap().parse().unwrap();
        let expires = SystemTime::from(expires);
        assert!(
            expires + Duration::from_millis(500) >= answered + Duration::from_secs(2),
            "tickets live a full TTL from the end of the UNLOAD"
        );
    }
    // Once consumed (grace 0) or expired, nothing stays.
    assert!(
        eventually(Duration::from_secs(20), || async {
            keys_under(&format!("{prefix}/")).await.is_empty()
        })
        .await,
        "left: {:?}",
        keys_under(&format!("{prefix}/")).await
    );
    server.stop().await;
    emulator.shutdown().await;
}

/// A manifest lost after a successful UNLOAD is not zero rows: Redshift's own count
/// (`pg_last_unload_count()`) disagrees, so the request fails, the run is deleted and the caller
/// gets no `next_cursor` to store; once the fault is gone, the next sync reads every row.
#[tokio::test]
async fn a_lost_manifest_fails_the_request_and_the_cursor_does_not_move() {
    let schema = table_with_rows(500).await;
    let prefix = unique("rsf-stg-manifest");
    for faults in [
        FaultSettings {
            skip_manifest: true,
            ..Default::default()
        },
        FaultSettings {
            delete_manifest: true,
            ..Default::default()
        },
    ] {
        let emulator = own_emulator(0, 2, faults.clone()).await;
        let port = emulator.local_addr().port().to_string();
        let server = TestServer::start(&[("s3_prefix", &prefix), ("redshift_port", &port)]).await;
        let mut flight = server.client().await;
        let command = serde_json::json!({"table": format!("{schema}.t"), "mode": "incremental"});
        let status = tonic_status(
            flight
                .get_flight_info(FlightDescriptor::new_cmd(command.to_string()))
                .await,
        );
        assert_eq!(
            status.code(),
            Code::Internal,
            "{faults:?}: {}",
            status.message()
        );
        assert!(
            status.message().contains("500 rows"),
            "{}",
            status.message()
        );
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "STAGING_INCOMPLETE");
        assert!(
            keys_under(&format!("{prefix}/")).await.is_empty(),
            "the incomplete run is deleted"
        );
        server.stop().await;
        emulator.shutdown().await;
    }
    // Without the fault the same (first) sync reads everything.
    let server = TestServer::start(&[("s3_prefix", &prefix)]).await;
    let mut flight = server.client().await;
    let command = serde_json::json!({"table": format!("{schema}.t"), "mode": "incremental"});
    let info = flight
        .get_flight_info(FlightDescriptor::new_cmd(command.to_string()))
        .await
        .unwrap();
    assert_eq!(
        read_ids(&mut flight, &info).await,
        (1..=500).collect::<Vec<_>>()
    );
    server.stop().await;
}

/// CancelFlightInfo deletes a run only for a caller who may read its table and holds live
/// tickets; a refused cancel leaves the owner's reads intact.
#[tokio::test]
async fn cancel_checks_the_caller_and_refuses_expired_tickets() {
    let mine = table_with_rows(100).await;
    let other = table_with_rows(10).await;
    let prefix = unique("rsf-stg-cancel");
    let dir = std::env::temp_dir().join(unique("rsf-access"));
    std::fs::create_dir_all(&dir).unwrap();
    let access = dir.join("access.toml");
    std::fs::write(
        &access,
        format!(
            "[[tokens]]\nname = \"owner\"\ntoken = \"owner-token-0123456789\"\ntables = [\"{mine}.*\"]\n\n\
             [[tokens]]\nname = \"stranger\"\ntoken = \"stranger-token-0123456789\"\ntables = [\"{other}.*\"]\n"
        ),
    )
    .unwrap();
    let server = TestServer::start(&[
        ("s3_prefix", &prefix),
        ("auth_file", access.to_str().unwrap()),
        ("staging_ttl_seconds", "3"),
        ("sweep_interval_seconds", "1"),
    ])
    .await;
    let client = |token: &'static str| {
        let server = &server;
        async move {
            let mut client = server.client().await;
            client
                .add_header("authorization", &format!("Bearer {token}"))
                .unwrap();
            client
        }
    };
    let mut owner = client("owner-token-0123456789").await;
    let mut stranger = client("stranger-token-0123456789").await;
    let info = owner
        .get_flight_info(FlightDescriptor::new_path(vec![mine.clone(), "t".into()]))
        .await
        .unwrap();
    let request = CancelFlightInfoRequest {
        info: Some(info.clone()),
    };
    let status = tonic_status(stranger.cancel_flight_info(request.clone()).await);
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "{}",
        status.message()
    );
    assert_eq!(
        read_ids(&mut owner, &info).await,
        (1..=100).collect::<Vec<_>>(),
        "the refused cancel deleted nothing"
    );

    // An expired ticket cancels nothing (the sweeper deletes its run), even for the owner.
    let info = owner
        .get_flight_info(FlightDescriptor::new_path(vec![mine.clone(), "t".into()]))
        .await
        .unwrap();
    let run = app(&info)["run_id"].as_str().unwrap().to_string();
    // The run itself outlives its tickets here (a lease as RenewFlightEndpoint would write), so
    // the sweeper cannot be what removes it while the expired ticket is tried.
    let set_lease = |until: SystemTime| {
        let path = object_store::path::Path::from(format!("{prefix}/{run}/lease"));
        let ms = until
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        async move {
            use object_store::ObjectStoreExt;
            common::bucket()
                .put(&path, ms.to_string().into_bytes().into())
                .await
                .unwrap();
        }
    };
    set_lease(SystemTime::now() + Duration::from_secs(600)).await;
    let expires: chrono::DateTime<chrono::Utc> =
        app(&info)["expires_at"].as_str().unwrap().parse().unwrap();
    let wait = SystemTime::from(expires)
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(200)).await;
    let status = tonic_status(
        owner
            .cancel_flight_info(CancelFlightInfoRequest {
                info: Some(info.clone()),
            })
            .await,
    );
    assert_eq!(
        status.code(),
        Code::FailedPrecondition,
        "{}",
        status.message()
    );
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "TICKET_EXPIRED"
    );
    assert!(
        !keys_under(&format!("{prefix}/{run}/")).await.is_empty(),
        "the expired ticket deleted nothing"
    );
    set_lease(SystemTime::UNIX_EPOCH).await;
    assert!(
        eventually(Duration::from_secs(15), || async {
            keys_under(&format!("{prefix}/{run}/")).await.is_empty()
        })
        .await,
        "the expired run is the sweeper's to delete"
    );
    // The owner's live tickets still cancel.
    let info = owner
        .get_flight_info(FlightDescriptor::new_path(vec![mine.clone(), "t".into()]))
        .await
        .unwrap();
    let run = app(&info)["run_id"].as_str().unwrap().to_string();
    common::cancel(&mut owner, &info).await;
    assert!(keys_under(&format!("{prefix}/{run}/")).await.is_empty());
    server.stop().await;
}

/// Log lines of this test process, for the request-id check.
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let logs = Arc::clone(&logs);
            move || LogWriter(Arc::clone(&logs))
        };
        tracing_subscriber::fmt()
            .with_env_filter("redshift_flight=info")
            .with_ansi(false)
            .with_writer(writer)
            .init();
        logs
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A server fault tells the client what failed (table, reason code, request id) but nothing of
/// the infrastructure: no Redshift host:port or detail text, no bucket or key. The whole cause
/// chain is in the log under the same request id.
#[tokio::test]
async fn server_faults_carry_a_reason_and_request_id_but_no_infrastructure() {
    let logs = captured_logs();
    let schema = table_with_rows(2000).await;
    let prefix = unique("rsf-stg-fault");
    let emulator = own_emulator(
        0,
        4,
        FaultSettings {
            fail_after_files: Some(1),
            ..Default::default()
        },
    )
    .await;
    let address = emulator.local_addr();
    let port = address.port().to_string();
    let server = TestServer::start(&[("s3_prefix", &prefix), ("redshift_port", &port)]).await;
    let mut flight = server.client().await;
    let bucket = common::tb("TESTBED_S3_BUCKET");
    let hidden = |message: &str| {
        for secret in [
            bucket.as_str(),
            &address.to_string(),
            &port,
            "S3ServiceException",
            prefix.as_str(),
        ] {
            assert!(
                !message.contains(secret),
                "{secret:?} leaked in {message:?}"
            );
        }
    };

    let status = tonic_status(
        flight
            .get_flight_info(FlightDescriptor::new_path(vec![schema.clone(), "t".into()]))
            .await,
    );
    hidden(status.message());
    assert!(
        status
            .message()
            .contains(&format!("UNLOAD of {schema}.t failed")),
        "{}",
        status.message()
    );
    let info = status.get_details_error_info().expect("ErrorInfo detail");
    assert_eq!(info.reason, "UNLOAD_FAILED");
    assert_eq!(info.domain, "redshift-flight");
    let request_id = info.metadata.get("request_id").expect("request_id").clone();
    assert_eq!(request_id.len(), 16);
    assert!(
        status.message().contains(&request_id),
        "{}",
        status.message()
    );
    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
    let line = logged
        .lines()
        .find(|l| l.contains(&request_id))
        .expect("the log has the request id");
    assert!(
        line.contains("S3ServiceException"),
        "the log has the cause: {line}"
    );

    // Redshift gone: UNAVAILABLE, WAREHOUSE_UNAVAILABLE, and no host:port.
    emulator.shutdown().await;
    let command = serde_json::json!({"table": format!("{schema}.t"), "mode": "full"});
    let status = tonic_status(
        flight
            .get_flight_info(FlightDescriptor::new_cmd(command.to_string()))
            .await,
    );
    assert_eq!(status.code(), Code::Unavailable, "{}", status.message());
    hidden(status.message());
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "WAREHOUSE_UNAVAILABLE"
    );

    // A client mistake keeps its explanation, with a reason too.
    let status = tonic_status(
        flight
            .get_flight_info(FlightDescriptor::new_cmd(
                serde_json::json!({"table": format!("{schema}.t"), "columns": ["nope"]})
                    .to_string(),
            ))
            .await,
    );
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    assert!(status.message().contains("nope"), "{}", status.message());
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "INVALID_COLUMNS"
    );
    assert_eq!(
        pg_rows(&pg().await, &format!("SELECT count(*) FROM {schema}.t")).await[0][0].as_deref(),
        Some("2000")
    );
    server.stop().await;
}

/// The destination of an UNLOAD statement: the text of `TO '...'`.
fn destination(statement: &str) -> String {
    let start = statement.find("TO 's3://").expect("UNLOAD ... TO") + "TO '".len();
    let end = start + statement[start..].find('\'').unwrap();
    statement[start..end].to_string()
}

/// A connection reset during UNLOAD does not stop the statement on Redshift, so a retry must not
/// write where the first attempt may still be writing: every attempt gets a fresh prefix, and the
/// abandoned ones are deleted.
#[tokio::test]
async fn every_unload_attempt_writes_to_a_fresh_prefix() {
    let schema = table_with_rows(300).await;
    let prefix = unique("rsf-stg-retry");
    let emulator = own_emulator(
        0,
        2,
        FaultSettings {
            drop_connection_on_unload: true,
            ..Default::default()
        },
    )
    .await;
    let port = emulator.local_addr().port().to_string();
    let server = TestServer::start(&[("s3_prefix", &prefix), ("redshift_port", &port)]).await;
    let mut flight = server.client().await;
    let status = tonic_status(
        flight
            .get_flight_info(FlightDescriptor::new_path(vec![schema.clone(), "t".into()]))
            .await,
    );
    assert_eq!(status.code(), Code::Unavailable, "{}", status.message());
    let destinations: Vec<String> = emulator
        .unload_stats()
        .statements()
        .iter()
        .map(|s| destination(s))
        .collect();
    assert!(
        destinations.len() >= 2,
        "the UNLOAD was retried: {destinations:?}"
    );
    let mut unique_destinations = destinations.clone();
    unique_destinations.sort();
    unique_destinations.dedup();
    assert_eq!(
        unique_destinations.len(),
        destinations.len(),
        "each attempt has a prefix of its own: {destinations:?}"
    );
    assert!(keys_under(&format!("{prefix}/")).await.is_empty());

    // Once the connection holds, the next request stages and serves every row.
    emulator
        .knobs()
        .update(|f| f.drop_connection_on_unload = false);
    let info = flight
        .get_flight_info(FlightDescriptor::new_path(vec![schema.clone(), "t".into()]))
        .await
        .unwrap();
    assert_eq!(
        read_ids(&mut flight, &info).await,
        (1..=300).collect::<Vec<_>>()
    );
    server.stop().await;
    emulator.shutdown().await;
}
