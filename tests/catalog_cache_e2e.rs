//! The catalog cache is bounded (issue 11): GetSchema calls naming schemas a client made up leave
//! the server's memory flat and cost at most one catalog query every couple of seconds, however
//! many there are. One test in this file, so the process's RSS is this test's alone; for the same
//! reason it is a test binary of its own, not a module of `tests/it/`.

mod common;

use std::time::Instant;

use arrow_flight::FlightDescriptor;
use arrow_flight::flight_service_client::FlightServiceClient;
use common::{TestServer, pg, unique};
use futures::StreamExt;
use rand::Rng;
use tonic::Code;

/// Resident set size of this process (the server runs in it), in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

/// The value of one sample in a Prometheus text exposition (0 when absent).
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map(|value| value.trim().parse().expect("a number"))
        .unwrap_or(0.0)
}

async fn scrape(server: &TestServer) -> String {
    let addr = server.metrics_addr.expect("metrics are served");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text
}

/// A schema name of `len` random lower-case letters.
fn random_name(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect()
}

/// GetSchema on `<schema>.t` for each name, `concurrency` at a time on one connection; every
/// answer must be NOT_FOUND.
async fn get_schemas(server: &TestServer, names: impl Iterator<Item = String>, concurrency: usize) {
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let client = FlightServiceClient::new(channel);
    futures::stream::iter(names)
        .map(|name| {
            let mut client = client.clone();
            async move {
                let status = client
                    .get_schema(FlightDescriptor::new_path(vec![name, "t".into()]))
                    .await
                    .expect_err("no such schema");
                assert_eq!(status.code(), Code::NotFound, "{}", status.message());
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<()>>()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_schema_names_leave_memory_flat_and_queries_bounded() {
    let schema = unique("cachebound");
    pg().await
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (id int primary key);"
        ))
        .await
        .unwrap();
    let server = TestServer::start(&[("metrics_address", "127.0.0.1:0")]).await;
    let mut client = server.client().await;
    client
        .get_schema(FlightDescriptor::new_path(vec![schema.clone(), "t".into()]))
        .await
        .expect("a real table");

    // Warm up the allocator and connection buffers with the same kind of calls.
    get_schemas(&server, (0..500).map(|_| random_name(19_000)), 16).await;
    let before = rss_bytes();
    let started = Instant::now();
    // Names are made one at a time, so the test itself holds none of them.
    get_schemas(&server, (0..10_000).map(|_| random_name(19_000)), 16).await;
    let elapsed = started.elapsed();
    let after = rss_bytes();
    let metrics = scrape(&server).await;
    let cached = sample(&metrics, "redshift_flight_catalog_cached_schemas");
    let schema_queries = sample(
        &metrics,
        "redshift_flight_catalog_queries_total{query=\"schemas\"}",
    );
    let table_queries = sample(
        &metrics,
        "redshift_flight_catalog_queries_total{query=\"tables\"}",
    );
    println!(
        "10,000 GetSchema with random 19 KB schema names in {elapsed:?}: RSS {} -> {} MB; \
         cached schemas {cached}; catalog queries: schemas {schema_queries}, tables {table_queries}",
        before / (1 << 20),
        after / (1 << 20)
    );
    // Before the fix every name stayed cached: 10,000 x 19 KB is 190 MB.
    assert!(
        after < before + 24 * (1 << 20),
        "RSS grew from {before} to {after} bytes"
    );
    assert!(
        (1.0..=redshift_flight::warehouse::catalog::SCHEMA_CACHE_ENTRIES as f64).contains(&cached),
        "cached schemas: {cached}"
    );
    // Unknown names cost no table query; each new one re-reads the list of schema names at most
    // once (concurrent ones share a read), so a schema created a moment ago is found.
    assert_eq!(table_queries, 1.0, "only the real schema was loaded");
    assert!(
        schema_queries <= 10_500.0 + 1.0,
        "{schema_queries} schema-name queries for 10,500 names"
    );

    // The same unknown name over and over: remembered as unknown for two seconds at a time.
    let before_repeat = schema_queries;
    let started = Instant::now();
    get_schemas(
        &server,
        std::iter::repeat_n("no_such_schema".to_string(), 2_000),
        8,
    )
    .await;
    let repeat_queries = sample(
        &scrape(&server).await,
        "redshift_flight_catalog_queries_total{query=\"schemas\"}",
    ) - before_repeat;
    assert!(
        repeat_queries <= started.elapsed().as_secs_f64() / 2.0 + 1.0,
        "{repeat_queries} queries for 2,000 lookups of one unknown schema"
    );

    // A schema created after the list of names was read is found at once.
    let late = format!("{schema}_late");
    pg().await
        .batch_execute(&format!(
            "CREATE SCHEMA {late}; CREATE TABLE {late}.t (id int);"
        ))
        .await
        .unwrap();
    client
        .get_schema(FlightDescriptor::new_path(vec![late, "t".into()]))
        .await
        .expect("a schema created a moment ago");
    server.stop().await;
}
