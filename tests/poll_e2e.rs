//! PollFlightInfo: answered complete (the UNLOAD runs within the call, as for GetFlightInfo), so a
//! client that executes incrementally gets the finished FlightInfo at once.

mod common;

use arrow_flight::FlightDescriptor;
use arrow_flight::flight_service_client::FlightServiceClient;
use common::canon::{canon_batches, read_all};
use common::{TestServer, pg, pg_rows, unique};

#[tokio::test]
async fn poll_flight_info_returns_the_finished_flight_info() {
    let pg = pg().await;
    let schema = unique("poll");
    pg.batch_execute(&format!(
        "CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (id integer PRIMARY KEY, v text); \
         INSERT INTO {schema}.t SELECT g, 'v' || g FROM generate_series(1, 50) g;"
    ))
    .await
    .unwrap();
    let server = TestServer::start(&[]).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = FlightServiceClient::new(channel);
    let descriptor = FlightDescriptor::new_path(vec![schema.clone(), "t".into()]);
    let poll = client
        .poll_flight_info(descriptor.clone())
        .await
        .expect("PollFlightInfo")
        .into_inner();
    assert_eq!(poll.progress, Some(1.0));
    assert!(poll.flight_descriptor.is_none(), "nothing to poll again");
    let info = poll.info.expect("the finished FlightInfo");
    assert_eq!(info.flight_descriptor, Some(descriptor));
    assert_eq!(info.total_records, 50);
    assert!(poll.expiration_time.is_some());
    let mut got = canon_batches(&read_all(&server, &info).await);
    got.sort();
    let mut want = pg_rows(&pg, &format!("SELECT id::text, v FROM {schema}.t")).await;
    want.sort();
    assert_eq!(got, want);
    pg.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
    server.stop().await;
}
