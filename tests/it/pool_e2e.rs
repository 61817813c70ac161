//! When every pooled Redshift connection is busy (issue 11), the server stays responsive: what it
//! can answer from its caches (GetSchema, health) it answers at once, and a request that needs
//! Redshift fails after `redshift_pool_timeout_seconds` with UNAVAILABLE naming that setting,
//! instead of hanging until a connection frees up.

use std::time::{Duration, Instant};

use arrow_flight::FlightDescriptor;
use redshift_emulator::FaultSettings;
use tonic::Code;

use crate::common::{TestServer, cancel, eventually, own_emulator, pg, status, unique};

#[tokio::test]
async fn a_busy_pool_fails_fast_with_unavailable_and_the_server_stays_responsive() {
    let schema = unique("pool");
    pg().await
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; \
             CREATE TABLE {schema}.busy (id int primary key); \
             CREATE TABLE {schema}.other (id int primary key, updated_at timestamp); \
             INSERT INTO {schema}.busy VALUES (1); \
             INSERT INTO {schema}.other VALUES (2, TIMESTAMP '2024-01-01 00:00:00'); \
             CREATE SCHEMA {schema}_uncached; CREATE TABLE {schema}_uncached.t (id int);"
        ))
        .await
        .unwrap();
    let emulator = own_emulator(0, 1, FaultSettings::default()).await;
    let port = emulator.local_addr().port().to_string();
    let prefix = unique("rsf-pool");
    let server = TestServer::start(&[
        ("redshift_port", port.as_str()),
        ("s3_prefix", prefix.as_str()),
        ("redshift_pool_size", "1"),
        ("max_parallel_workers", "1"),
        ("redshift_pool_timeout_seconds", "1"),
        ("snapshot_reuse_seconds", "off"),
    ])
    .await;
    let mut client = server.client().await;
    let path = |table: &str| FlightDescriptor::new_path(vec![schema.clone(), table.into()]);
    // The catalog of the schema is cached from here on.
    client.get_schema(path("other")).await.unwrap();

    // The only connection is taken by a slow UNLOAD.
    emulator.knobs().update(|f| f.unload_delay_ms = 6_000);
    let busy = {
        let mut client = server.client().await;
        let descriptor = path("busy");
        tokio::spawn(async move { client.get_flight_info(descriptor).await })
    };
    assert!(
        eventually(Duration::from_secs(20), || async {
            emulator.unload_stats().started() >= 1
        })
        .await,
        "the UNLOAD did not start"
    );

    // Answers from the cache come at once.
    let started = Instant::now();
    let schema_result = client.get_schema(path("other")).await.unwrap();
    assert_eq!(schema_result.fields().len(), 2);
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: "arrow.flight.protocol.FlightService".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        health.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "cached answers took {:?}",
        started.elapsed()
    );

    // What needs Redshift gives up after the pool timeout: the MAX() of an incremental read's
    // planning, and the catalog of a schema not cached yet.
    let started = Instant::now();
    let max = client.get_flight_info(path("other")).await.map(|_| ());
    let max_waited = started.elapsed();
    let started = Instant::now();
    let catalog = client
        .get_schema(FlightDescriptor::new_path(vec![
            format!("{schema}_uncached"),
            "t".into(),
        ]))
        .await
        .map(|_| ());
    let catalog_waited = started.elapsed();
    for (what, result, waited) in [
        ("GetFlightInfo", max, max_waited),
        ("GetSchema", catalog, catalog_waited),
    ] {
        let (code, message) = status(result);
        assert_eq!(code, Code::Unavailable, "{what}: {message}");
        assert!(
            message.contains("stayed busy") && message.contains("redshift_pool_timeout_seconds"),
            "{what}: {message}"
        );
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
            "{what} failed after {waited:?}, not after the 1 s pool timeout"
        );
    }
    assert!(
        !busy.is_finished(),
        "the slow UNLOAD was still running when the pool timed out"
    );

    // The slow request itself completes once its UNLOAD does.
    emulator.knobs().reset();
    let info = busy.await.unwrap().expect("the slow request completes");
    assert_eq!(info.total_records, 1);
    cancel(&mut client, &info).await;
    server.stop().await;
}
