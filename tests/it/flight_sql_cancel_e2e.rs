//! A Flight SQL query whose client goes away while its UNLOAD runs (ADBC `cancel`, a timeout, a
//! closed connection) is cancelled on Redshift, and what it staged is deleted.

use std::time::Duration;

use arrow_flight::sql::client::FlightSqlServiceClient;
use redshift_emulator::FaultSettings;

use crate::common::{TestServer, eventually, keys_under, own_emulator, pg, unique};

#[tokio::test]
async fn an_abandoned_query_is_cancelled_on_redshift_and_leaves_nothing() {
    let pg = pg().await;
    let schema = unique("fsqlcancel");
    pg.batch_execute(&format!(
        "CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (id integer PRIMARY KEY); \
         INSERT INTO {schema}.t SELECT generate_series(1, 100);"
    ))
    .await
    .unwrap();
    let prefix = unique("rsf-fsql-cancel");
    let emulator = own_emulator(
        0,
        2,
        FaultSettings {
            unload_delay_ms: 20_000,
            ..Default::default()
        },
    )
    .await;
    let port = emulator.local_addr().port().to_string();
    // The query is small: without direct_max_rows 0 it would be answered without UNLOAD.
    let server = TestServer::start(&[
        ("s3_prefix", &prefix),
        ("redshift_port", &port),
        ("direct_max_rows", "0"),
    ])
    .await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = FlightSqlServiceClient::new(channel);
    let query = format!("SELECT id FROM {schema}.t WHERE id > 10");
    let started = std::time::Instant::now();
    let abandoned = tokio::time::timeout(Duration::from_secs(2), client.execute(query, None)).await;
    assert!(
        abandoned.is_err(),
        "the client gave up while the UNLOAD ran"
    );
    assert_eq!(
        emulator.unload_stats().started(),
        1,
        "the UNLOAD had started"
    );
    // The statement is cancelled on Redshift long before its 20 s would have passed.
    assert!(
        eventually(Duration::from_secs(8), || async {
            emulator.unload_stats().running() == 0
        })
        .await,
        "the UNLOAD still runs"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(
        eventually(Duration::from_secs(15), || async {
            keys_under(&format!("{prefix}/")).await.is_empty()
        })
        .await,
        "left: {:?}",
        keys_under(&format!("{prefix}/")).await
    );
    pg.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
    server.stop().await;
    emulator.shutdown().await;
}
