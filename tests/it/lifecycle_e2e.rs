//! Staged runs have a life, and faults do not hang or leak: cleanup after consumption, cancel,
//! renew, the sweeper (also after SIGKILL), failed UNLOADs, S3 and Redshift outages, cancelled
//! streams, graceful shutdown, metrics and health.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow_flight::error::FlightError;
use arrow_flight::{FlightDescriptor, FlightInfo, RenewFlightEndpointRequest};
use futures::TryStreamExt;
use redshift_emulator::FaultSettings;
use tonic::Code;

use crate::common;
use crate::common::canon::read_all;
use crate::common::proxy::Proxy;
use crate::common::{
    TestServer, cancel, eventually, holds_for, keys_under, own_emulator, pg, pg_rows, unique,
};

fn run_id(info: &FlightInfo) -> String {
    let app: serde_json::Value = serde_json::from_slice(&info.app_metadata).unwrap();
    app["run_id"].as_str().expect("a staged run").to_string()
}

async fn table_with_rows(rows: u32) -> String {
    let schema = unique("life");
    pg().await
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (id int primary key, v varchar(30)); \
             INSERT INTO {schema}.t SELECT g, 'value ' || g FROM generate_series(1, {rows}) g;"
        ))
        .await
        .unwrap();
    schema
}

fn stream_status(result: Result<Vec<RecordBatch>, FlightError>) -> tonic::Status {
    match result {
        Err(FlightError::Tonic(status)) => *status,
        other => panic!("expected an error status, got {other:?}"),
    }
}

async fn read_endpoint(
    server: &TestServer,
    info: &FlightInfo,
    i: usize,
) -> Result<Vec<RecordBatch>, FlightError> {
    let mut client = server.client().await;
    let stream = client
        .do_get(info.endpoint[i].ticket.clone().unwrap())
        .await?;
    stream.try_collect().await
}

#[tokio::test]
async fn consumed_runs_are_deleted_after_the_grace_period() {
    let schema = table_with_rows(5000).await;
    let prefix = unique("rsf-life-consumed");
    let server = TestServer::start(&[("s3_prefix", &prefix), ("staging_grace_seconds", "2")]).await;
    let mut flight = server.client().await;
    let info = flight
        .get_flight_info(FlightDescriptor::new_path(vec![schema.clone(), "t".into()]))
        .await
        .unwrap();
    assert!(info.endpoint.len() > 1);
    let run = run_id(&info);
    let batches = read_all(&server, &info).await;
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 5000);
    // Within the grace period a client retrying a stream still succeeds.
    let again = read_endpoint(&server, &info, 0)
        .await
        .expect("retry within the grace period");
    assert!(!again.is_empty());
    let gone = eventually(Duration::from_secs(15), || async {
        keys_under(&format!("{prefix}/{run}/")).await.is_empty()
    })
    .await;
    assert!(
        gone,
        "the consumed run is deleted, manifest and markers included"
    );
    let status = stream_status(read_endpoint(&server, &info, 0).await);
    assert_eq!(status.code(), Code::NotFound, "{}", status.message());
    assert!(status.message().contains("call GetFlightInfo again"));
    server.stop().await;
    assert!(keys_under(&prefix).await.is_empty());
}

#[tokio::test]
async fn cancel_deletes_at_once_and_renew_extends() {
    let schema = table_with_rows(100).await;
    let prefix = unique("rsf-life-renew");
    let server = TestServer::start(&[
        ("s3_prefix", &prefix),
        ("staging_ttl_seconds", "8"),
        ("sweep_interval_seconds", "1"),
    ])
    .await;
    let mut flight = server.client().await;
    let descriptor = FlightDescriptor::new_path(vec![schema.clone(), "t".into()]);

    let cancelled = flight.get_flight_info(descriptor.clone()).await.unwrap();
    assert!(
        !keys_under(&format!("{prefix}/{}/", run_id(&cancelled)))
            .await
            .is_empty()
    );
    cancel(&mut flight, &cancelled).await;
    assert!(
        keys_under(&format!("{prefix}/{}/", run_id(&cancelled)))
            .await
            .is_empty()
    );
    let status = stream_status(read_endpoint(&server, &cancelled, 0).await);
    assert_eq!(status.code(), Code::NotFound);

    let renewed = flight.get_flight_info(descriptor.clone()).await.unwrap();
    let expiring = flight.get_flight_info(descriptor.clone()).await.unwrap();
    // Time passing is what this part tests: the renewal must come late enough in the TTL to
    // outlive the run that is not renewed. Meanwhile the sweeper (every second) keeps both runs,
    // whose TTL has not passed: asserted all along, not once after a sleep.
    // The later the renewal, the longer its ticket outlives the other run's sweep (which a busy
    // machine delays): 6.5 s of an 8 s TTL leaves the final read about 6 s.
    let kept = holds_for(Duration::from_millis(6500), || async {
        for info in [&renewed, &expiring] {
            if keys_under(&format!("{prefix}/{}/", run_id(info)))
                .await
                .is_empty()
            {
                return false;
            }
        }
        true
    })
    .await;
    assert!(kept, "the sweeper deleted a run before its TTL");
    let endpoint = flight
        .renew_flight_endpoint(RenewFlightEndpointRequest {
            endpoint: Some(renewed.endpoint[0].clone()),
        })
        .await
        .expect("RenewFlightEndpoint");
    assert!(
        endpoint.expiration_time.unwrap().seconds
            >= renewed.endpoint[0].expiration_time.unwrap().seconds
    );
    // Past the original TTL: the sweeper removes the run that was not renewed (staged after the
    // renewed one, so by then the renewed one's old ticket has expired too), and the renewed one
    // still serves with its new ticket.
    let swept = eventually(Duration::from_secs(15), || async {
        keys_under(&format!("{prefix}/{}/", run_id(&expiring)))
            .await
            .is_empty()
    })
    .await;
    assert!(swept, "the sweeper deletes expired runs");
    let status = stream_status(read_endpoint(&server, &renewed, 0).await);
    assert_eq!(
        status.code(),
        Code::FailedPrecondition,
        "{}",
        status.message()
    );
    assert!(status.message().contains("GetFlightInfo again"));
    let mut client = server.client().await;
    let rows: Vec<RecordBatch> = client
        .do_get(endpoint.ticket.unwrap())
        .await
        .expect("the renewed ticket works")
        .try_collect()
        .await
        .unwrap();
    assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 100);
    server.stop().await;
}

#[tokio::test]
async fn a_failed_unload_names_table_and_cause_and_leaves_nothing() {
    let schema = table_with_rows(5000).await;
    let prefix = unique("rsf-life-failed");
    let emulator = own_emulator(
        0,
        4,
        FaultSettings {
            fail_after_files: Some(1),
            ..Default::default()
        },
    )
    .await;
    let port = emulator.local_addr().port().to_string();
    let server = TestServer::start(&[("s3_prefix", &prefix), ("redshift_port", &port)]).await;
    let mut flight = server.client().await;
    let result = flight
        .get_flight_info(FlightDescriptor::new_path(vec![schema.clone(), "t".into()]))
        .await;
    let status = match result {
        Err(FlightError::Tonic(status)) => *status,
        other => panic!("expected an error, got {other:?}"),
    };
    assert!(
        status.message().contains(&format!("{schema}.t")),
        "{}",
        status.message()
    );
    assert!(status.message().contains("UNLOAD"), "{}", status.message());
    assert!(
        keys_under(&prefix).await.is_empty(),
        "the files the failed UNLOAD wrote are gone"
    );
    server.stop().await;
    emulator.shutdown().await;
}

#[tokio::test]
async fn s3_down_during_do_get_is_unavailable_and_the_ticket_works_once_it_is_back() {
    let schema = table_with_rows(20_000).await;
    let prefix = unique("rsf-life-s3");
    let s3: std::net::SocketAddr = common::tb("TESTBED_S3_ENDPOINT")
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let mut proxy = Proxy::start(s3).await;
    let endpoint = format!("http://{}", proxy.addr());
    let emulator = own_emulator(500, 1, FaultSettings::default()).await;
    let port = emulator.local_addr().port().to_string();
    let server = TestServer::start(&[
        ("s3_prefix", &prefix),
        ("s3_endpoint", &endpoint),
        ("redshift_port", &port),
        ("s3_max_retries", "1"),
        ("s3_retry_timeout_seconds", "2"),
    ])
    .await;
    let mut flight = server.client().await;
    let info = flight
        .get_flight_info(FlightDescriptor::new_path(vec![schema.clone(), "t".into()]))
        .await
        .unwrap();
    assert_eq!(info.endpoint.len(), 1);
    let ticket = info.endpoint[0].ticket.clone().unwrap();

    let mut stream = flight.do_get(ticket.clone()).await.unwrap();
    let first = stream.try_next().await.unwrap().unwrap();
    assert!(first.num_rows() > 0);
    proxy.down();
    let started = Instant::now();
    let rest: Result<Vec<RecordBatch>, FlightError> = stream.try_collect().await;
    let status = stream_status(rest);
    assert_eq!(status.code(), Code::Unavailable, "{}", status.message());
    assert!(started.elapsed() < Duration::from_secs(60), "no hang");
    let status = stream_status(read_endpoint(&server, &info, 0).await);
    assert_eq!(status.code(), Code::Unavailable, "{}", status.message());

    proxy.up().await;
    let batches = read_endpoint(&server, &info, 0)
        .await
        .expect("the same ticket works once S3 is back");
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 20_000);
    server.stop().await;
    emulator.shutdown().await;
}

#[tokio::test]
async fn redshift_restarted_between_requests_is_transparent() {
    let schema = table_with_rows(10).await;
    let prefix = unique("rsf-life-restart");
    let emulator = own_emulator(0, 4, FaultSettings::default()).await;
    let addr = emulator.local_addr();
    let port = addr.port().to_string();
    let server = TestServer::start(&[("s3_prefix", &prefix), ("redshift_port", &port)]).await;
    let mut flight = server.client().await;
    let descriptor = FlightDescriptor::new_path(vec![schema.clone(), "t".into()]);
    let info = flight.get_flight_info(descriptor.clone()).await.unwrap();
    cancel(&mut flight, &info).await;
    emulator.shutdown().await;
    let emulator = common::own_emulator_on(&addr.to_string(), 0, 4, FaultSettings::default()).await;
    let info = flight
        .get_flight_info(descriptor.clone())
        .await
        .expect("the next request succeeds");
    assert_eq!(info.total_records, 10);
    assert_eq!(
        read_all(&server, &info)
            .await
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>(),
        10
    );
    server.stop().await;
    emulator.shutdown().await;
    assert!(keys_under(&prefix).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_cancelled_streams_leave_no_task_behind() {
    let schema = table_with_rows(50_000).await;
    let prefix = unique("rsf-life-cancel");
    let emulator = own_emulator(1000, 1, FaultSettings::default()).await;
    let port = emulator.local_addr().port().to_string();
    let server = TestServer::start(&[("s3_prefix", &prefix), ("redshift_port", &port)]).await;
    let mut flight = server.client().await;
    let info = flight
        .get_flight_info(FlightDescriptor::new_path(vec![schema.clone(), "t".into()]))
        .await
        .unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let metrics = tokio::runtime::Handle::current().metrics();
    // Warm up the connection pools, then take the baseline once the warm-up's tasks have wound
    // down: the count of alive tasks is the same for three polls in a row.
    let _ = read_endpoint(&server, &info, 0).await.unwrap();
    let mut last = [usize::MAX; 3];
    let quiet = eventually(Duration::from_secs(10), || {
        last.rotate_left(1);
        last[2] = metrics.num_alive_tasks();
        std::future::ready(last[0] == last[2] && last[1] == last[2])
    })
    .await;
    assert!(quiet, "tasks alive after the warm-up: {last:?}");
    let baseline = metrics.num_alive_tasks();
    for _ in 0..100 {
        let mut stream = flight.do_get(ticket.clone()).await.unwrap();
        let _ = stream.try_next().await.unwrap();
        drop(stream);
    }
    let settled = eventually(Duration::from_secs(10), || async {
        metrics.num_alive_tasks() <= baseline + 2
    })
    .await;
    assert!(
        settled,
        "tasks alive: {} (baseline {baseline})",
        metrics.num_alive_tasks()
    );
    cancel(&mut flight, &info).await;
    server.stop().await;
    emulator.shutdown().await;
}

#[tokio::test]
async fn fifty_concurrent_clients_get_exact_results() {
    let schema = unique("life_many");
    let pg = pg().await;
    let mut ddl = format!("CREATE SCHEMA {schema};");
    for t in 0..5 {
        ddl.push_str(&format!(
            "CREATE TABLE {schema}.t{t} (id int primary key, v varchar(30)); \
             INSERT INTO {schema}.t{t} SELECT g, 't{t} ' || g FROM generate_series(1, {}) g;",
            2000 + t * 100
        ));
    }
    pg.batch_execute(&ddl).await.unwrap();
    let prefix = unique("rsf-life-many");
    let server = std::sync::Arc::new(
        TestServer::start(&[("s3_prefix", &prefix), ("staging_grace_seconds", "0")]).await,
    );
    let mut tasks = Vec::new();
    for i in 0..50 {
        let server = std::sync::Arc::clone(&server);
        let schema = schema.clone();
        tasks.push(tokio::spawn(async move {
            let t = i % 5;
            let mut client = server.client().await;
            let info = client
                .get_flight_info(FlightDescriptor::new_path(vec![schema, format!("t{t}")]))
                .await
                .expect("GetFlightInfo under load");
            let mut ids: Vec<i32> = Vec::new();
            for batch in read_all(&server, &info).await {
                let col = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::Int32Array>()
                    .unwrap();
                ids.extend(col.values().iter());
            }
            ids.sort();
            (t, ids)
        }));
    }
    for task in tasks {
        let (t, ids) = task.await.unwrap();
        let want: Vec<i32> = (1..=(2000 + t * 100)).collect();
        assert_eq!(ids, want, "table t{t}");
    }
    let count = pg_rows(&pg, &format!("SELECT count(*) FROM {schema}.t0")).await;
    assert_eq!(count[0][0].as_deref(), Some("2000"));
    let server = std::sync::Arc::try_unwrap(server)
        .ok()
        .expect("no other owner");
    server.stop().await;
    assert!(
        keys_under(&prefix).await.is_empty(),
        "every consumed run is gone"
    );
}

#[tokio::test]
async fn metrics_and_health_are_served() {
    let schema = table_with_rows(10).await;
    let prefix = unique("rsf-life-metrics");
    let server =
        TestServer::start(&[("s3_prefix", &prefix), ("metrics_address", "127.0.0.1:0")]).await;
    let mut flight = server.client().await;
    let info = flight
        .get_flight_info(FlightDescriptor::new_path(vec![schema.clone(), "t".into()]))
        .await
        .unwrap();
    read_all(&server, &info).await;
    let _ = flight
        .get_flight_info(FlightDescriptor::new_path(vec![
            schema.clone(),
            "nope".into(),
        ]))
        .await;
    let addr = server.metrics_addr.expect("metrics are served");
    let text = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        text
    };
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("redshift_flight_requests_total{rpc=\"get_flight_info\",code=\"Ok\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "redshift_flight_requests_total{rpc=\"get_flight_info\",code=\"NotFound\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("redshift_flight_rows_sent_total 10"),
        "{text}"
    );
    assert!(
        text.contains("redshift_flight_unload_duration_seconds_count 1"),
        "{text}"
    );

    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let response = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "arrow.flight.protocol.FlightService".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        response.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    server.stop().await;
}

fn write_config(extra: &[(&str, &str)]) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("rsf-life-{:016x}.json", rand::random::<u64>()));
    std::fs::write(&path, common::config_json(extra).to_string()).unwrap();
    path
}

fn spawn_server(config: &std::path::Path) -> (std::process::Child, std::net::SocketAddr) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_redshift-flight"))
        .arg("--config")
        .arg(config)
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("{line}"));
    (child, addr)
}

#[tokio::test]
async fn after_sigkill_the_next_server_sweeps_the_orphaned_run_and_sigterm_exits_cleanly() {
    let schema = table_with_rows(100).await;
    let prefix = unique("rsf-life-kill");
    let config = write_config(&[("s3_prefix", &prefix), ("staging_ttl_seconds", "2")]);
    let (mut child, addr) = spawn_server(&config);
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut flight = arrow_flight::FlightClient::new(channel);
    let info = flight
        .get_flight_info(FlightDescriptor::new_path(vec![schema.clone(), "t".into()]))
        .await
        .unwrap();
    let run = run_id(&info);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !keys_under(&format!("{prefix}/{run}/")).await.is_empty(),
        "the crash left the run behind"
    );
    // The start-up sweep can remove the run only once its life has ended: wait until its lease
    // (the expiry the sweeper reads) has passed, the run staying all along with no server up.
    use object_store::ObjectStoreExt;
    let lease = object_store::path::Path::from(format!("{prefix}/{run}/lease"));
    let lease = common::bucket()
        .get(&lease)
        .await
        .expect("the run's lease")
        .bytes()
        .await
        .unwrap();
    let lease_ms: u64 = std::str::from_utf8(&lease).unwrap().trim().parse().unwrap();
    let until = std::time::UNIX_EPOCH + Duration::from_millis(lease_ms + 100);
    let wait = until
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    let stayed = holds_for(wait, || async {
        !keys_under(&format!("{prefix}/{run}/")).await.is_empty()
    })
    .await;
    assert!(stayed, "the orphaned run stays until a server sweeps it");

    let (mut child, _) = spawn_server(&config);
    let swept = eventually(Duration::from_secs(15), || async {
        keys_under(&prefix).await.is_empty()
    })
    .await;
    assert!(swept, "the start-up sweep removes the orphaned run");
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exited = eventually(Duration::from_secs(20), || {
        std::future::ready(child.try_wait().unwrap().is_some())
    })
    .await;
    assert!(exited, "SIGTERM did not stop the server");
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    let _ = std::fs::remove_file(config);
}
