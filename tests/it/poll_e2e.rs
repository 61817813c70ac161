//! PollFlightInfo. A plain Flight descriptor is answered complete (the UNLOAD runs within the
//! call, as for GetFlightInfo). A Flight SQL query runs on a task of its own: PollFlightInfo
//! answers with its progress and a signed poll token until the result is staged; any replica
//! sharing the bucket and the secret answers a later poll; forged, altered and expired tokens are
//! refused; CancelFlightInfo of the running poll stops the UNLOAD on Redshift, leaves nothing
//! staged, and later polls answer CANCELLED.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt};
use arrow_flight::{CancelFlightInfoRequest, CancelStatus, FlightDescriptor, PollInfo};
use prost::Message;
use redshift_flight::keys::{Keyring, Purpose};

use crate::common;
use crate::common::canon::{canon_batches, read_all};
use crate::common::{TestServer, eventually, keys_under, pg, pg_rows, unique};

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
    let server = TestServer::start(&[("flight_sql_poll_wait_ms", "10000")]).await;
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

    // A Flight SQL query that finishes within the poll wait is answered complete at once.
    let descriptor = query_descriptor(&format!("SELECT id, v FROM {schema}.t"));
    let poll = client
        .poll_flight_info(descriptor.clone())
        .await
        .expect("PollFlightInfo of a query")
        .into_inner();
    assert_eq!(poll.progress, Some(1.0));
    assert!(poll.flight_descriptor.is_none(), "nothing to poll again");
    let info = poll.info.expect("the finished FlightInfo");
    assert_eq!(info.flight_descriptor, Some(descriptor));
    let mut got = canon_batches(&read_all(&server, &info).await);
    got.sort();
    assert_eq!(got, want);
    pg.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
    server.stop().await;
}

/// The test configuration's `ticket_secret` (tests/common): what the servers sign with.
const SECRET: &str = "test-ticket-secret-0123456789abcdef";

/// An emulator of the test's own whose UNLOADs write 500 rows every `fetch_delay_ms` (or wait
/// `unload_delay_ms` first).
async fn slow_emulator(
    fetch_delay_ms: u64,
    unload_delay_ms: u64,
) -> redshift_emulator::RunningEmulator {
    let config = redshift_emulator::EmulatorConfig::new(
        common::tb("TESTBED_PG_URL"),
        common::tb("TESTBED_REDSHIFT_PASSWORD"),
    )
    .with_listen("127.0.0.1:0")
    .with_user(common::tb("TESTBED_REDSHIFT_USER"))
    .with_database(common::tb("TESTBED_REDSHIFT_DATABASE"))
    .with_s3_endpoint(common::tb("TESTBED_S3_ENDPOINT"))
    .with_s3_region(common::tb("TESTBED_S3_REGION"))
    .with_s3_credentials(
        common::tb("AWS_ACCESS_KEY_ID"),
        common::tb("AWS_SECRET_ACCESS_KEY"),
    )
    .with_slices(2)
    .with_fetch_rows(500)
    .with_faults(redshift_emulator::FaultSettings {
        fetch_delay_ms,
        unload_delay_ms,
        ..Default::default()
    });
    redshift_emulator::start(config)
        .await
        .expect("emulator starts")
}

/// Two replicas in front of `emulator`, sharing the staging prefix and the signing secret,
/// polling with a short wait and always staging by UNLOAD.
async fn replicas(
    emulator: &redshift_emulator::RunningEmulator,
    prefix: &str,
) -> (TestServer, TestServer) {
    let port = emulator.local_addr().port().to_string();
    let extra = [
        ("s3_prefix", prefix),
        ("redshift_port", port.as_str()),
        ("flight_sql_poll_wait_ms", "100"),
        ("direct_max_rows", "0"),
    ];
    (
        TestServer::start(&extra).await,
        TestServer::start(&extra).await,
    )
}

async fn flight_client(server: &TestServer) -> FlightServiceClient<tonic::transport::Channel> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    FlightServiceClient::new(channel)
}

fn query_descriptor(query: &str) -> FlightDescriptor {
    let command = CommandStatementQuery {
        query: query.to_string(),
        transaction_id: None,
    };
    FlightDescriptor::new_cmd(command.as_any().encode_to_vec())
}

async fn poll(
    client: &mut FlightServiceClient<tonic::transport::Channel>,
    descriptor: &FlightDescriptor,
) -> Result<PollInfo, tonic::Status> {
    client
        .poll_flight_info(descriptor.clone())
        .await
        .map(tonic::Response::into_inner)
}

/// The first poll of a slow query: running, with a token to poll again with.
fn assert_running(first: &PollInfo, descriptor: &FlightDescriptor) -> FlightDescriptor {
    let next = first
        .flight_descriptor
        .clone()
        .expect("a running query gives a descriptor to poll again with");
    let progress = first.progress.expect("progress");
    assert!((0.0..1.0).contains(&progress), "{progress}");
    assert!(first.expiration_time.is_some());
    let info = first.info.as_ref().expect("the partial FlightInfo");
    assert!(
        info.endpoint.is_empty(),
        "no endpoints before the result is staged"
    );
    assert_eq!(info.flight_descriptor.as_ref(), Some(descriptor));
    assert!(
        !info.schema.is_empty(),
        "the schema is known before data moves"
    );
    let metadata: serde_json::Value = serde_json::from_slice(&info.app_metadata).unwrap();
    assert_eq!(metadata["state"], "running");
    assert!(metadata["poll_token"].is_string(), "{metadata}");
    next
}

#[tokio::test]
async fn a_slow_query_reports_progress_and_any_replica_answers_its_polls() {
    let pg = pg().await;
    let schema = unique("pollslow");
    pg.batch_execute(&format!(
        "CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (id integer PRIMARY KEY, v text); \
         INSERT INTO {schema}.t SELECT g, 'v' || g FROM generate_series(1, 4000) g; \
         ANALYZE {schema}.t;"
    ))
    .await
    .unwrap();
    // Eight FETCHes of 500 rows, 400 ms apart: about 3 s of UNLOAD.
    let emulator = slow_emulator(400, 0).await;
    let prefix = unique("rsf-poll");
    let (a, b) = replicas(&emulator, &prefix).await;
    let (mut client_a, mut client_b) = (flight_client(&a).await, flight_client(&b).await);
    let descriptor = query_descriptor(&format!("SELECT id, v FROM {schema}.t WHERE id > 0"));

    let first = poll(&mut client_a, &descriptor).await.expect("first poll");
    let mut next = assert_running(&first, &descriptor);

    // A forged or altered token is refused, whichever replica gets it.
    let mut altered = next.cmd.to_vec();
    let at = altered.len() - 20;
    altered[at] ^= 0x01;
    let refused = poll(&mut client_b, &FlightDescriptor::new_cmd(altered))
        .await
        .expect_err("an altered token");
    assert!(
        matches!(
            refused.code(),
            tonic::Code::InvalidArgument | tonic::Code::Unauthenticated
        ),
        "{refused:?}"
    );
    assert!(
        refused.message().contains("poll token"),
        "{}",
        refused.message()
    );

    // Polled through the other replica (which reads the job's state from S3), the query shows
    // progress strictly between 0 and 1 while its UNLOAD writes, then completes.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut partial_progress = None;
    let mut polls = 0;
    let done = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the query never completed"
        );
        let client = if polls % 3 == 2 {
            &mut client_a
        } else {
            &mut client_b
        };
        polls += 1;
        let answer = poll(client, &next).await.expect("a later poll");
        match answer.flight_descriptor.clone() {
            Some(again) => {
                let progress = answer.progress.unwrap();
                assert!((0.0..1.0).contains(&progress), "{progress}");
                if progress > 0.0 {
                    partial_progress = Some(progress);
                }
                next = again;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            None => break answer,
        }
    };
    let progress = partial_progress.expect("a progress strictly between 0 and 1 while running");
    assert!(progress > 0.0 && progress < 1.0);
    assert_eq!(done.progress, Some(1.0));
    let info = done.info.expect("the finished FlightInfo");
    assert!(!info.endpoint.is_empty());
    assert_eq!(info.flight_descriptor, Some(descriptor.clone()));
    assert_eq!(
        info.schema,
        first.info.as_ref().unwrap().schema,
        "the schema promised"
    );
    assert_eq!(info.total_records, 4000);
    let mut got = canon_batches(&read_all(&b, &info).await);
    got.sort();
    let mut want = pg_rows(&pg, &format!("SELECT id::text, v FROM {schema}.t")).await;
    want.sort();
    assert_eq!(got, want);
    // Done, the job answers complete again (from S3, on the replica that did not run it).
    let again = poll(&mut client_b, &next)
        .await
        .expect("a poll after completion");
    assert_eq!(again.progress, Some(1.0));
    assert!(again.flight_descriptor.is_none());

    pg.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
    a.stop().await;
    b.stop().await;
    emulator.shutdown().await;
}

/// The poll token's payload (the documented wire format, version 1), encoded by the test.
#[derive(Clone, PartialEq, prost::Message)]
struct PollPayload {
    #[prost(uint32, tag = "1")]
    version: u32,
    #[prost(string, tag = "2")]
    job_id: String,
    #[prost(int64, tag = "3")]
    expires_at_ms: i64,
    #[prost(message, repeated, tag = "4")]
    relations: Vec<TokenRelation>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TokenRelation {
    #[prost(string, tag = "1")]
    schema: String,
    #[prost(string, tag = "2")]
    table: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SignedToken {
    #[prost(bytes = "vec", tag = "1")]
    payload: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    mac: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    key_id: Vec<u8>,
}

fn token(secret: &str, purpose: Purpose, payload: &PollPayload) -> Vec<u8> {
    let bytes = payload.encode_to_vec();
    let (key_id, mac) = Keyring::new(&[secret]).sign(purpose, b"RSQ1", &bytes);
    let mut out = b"RSQ1".to_vec();
    SignedToken {
        payload: bytes,
        mac,
        key_id: key_id.to_vec(),
    }
    .encode(&mut out)
    .unwrap();
    out
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test]
async fn forged_expired_and_unknown_poll_tokens_are_refused() {
    let server = TestServer::start(&[("flight_sql_poll_wait_ms", "100")]).await;
    let mut client = flight_client(&server).await;
    let payload = |expires: SystemTime| PollPayload {
        version: 1,
        job_id: "20250101T000000Z-00000000000000aa".into(),
        expires_at_ms: unix_ms(expires),
        relations: vec![TokenRelation {
            schema: "public".into(),
            table: "nothing_here".into(),
        }],
    };
    let later = SystemTime::now() + Duration::from_secs(600);
    let cases = [
        (
            token(
                "another-secret-0123456789abcdef",
                Purpose::Poll,
                &payload(later),
            ),
            "signature is invalid",
        ),
        (
            token(SECRET, Purpose::PreparedStatement, &payload(later)),
            "signature is invalid",
        ),
        (
            token(
                SECRET,
                Purpose::Poll,
                &payload(SystemTime::now() - Duration::from_secs(5)),
            ),
            "expired",
        ),
        (b"RSQ1 not a token".to_vec(), "malformed poll token"),
    ];
    for (bytes, expected) in cases {
        let refused = poll(&mut client, &FlightDescriptor::new_cmd(bytes))
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
        assert!(
            refused.message().contains(expected),
            "{}",
            refused.message()
        );
        assert!(
            refused.message().contains("poll token"),
            "{}",
            refused.message()
        );
    }
    // A genuine token naming a job no replica knows: its state is gone.
    let unknown = token(SECRET, Purpose::Poll, &payload(later));
    let gone = poll(&mut client, &FlightDescriptor::new_cmd(unknown))
        .await
        .expect_err("no such job");
    assert_eq!(gone.code(), tonic::Code::NotFound, "{gone:?}");
    assert!(
        gone.message().contains("run the query again"),
        "{}",
        gone.message()
    );
    server.stop().await;
}

async fn cancel_poll(
    client: &mut FlightServiceClient<tonic::transport::Channel>,
    first: &PollInfo,
) -> CancelStatus {
    let request = CancelFlightInfoRequest {
        info: first.info.clone(),
    };
    let action = arrow_flight::Action::new("CancelFlightInfo", request.encode_to_vec());
    let mut results = client
        .do_action(action)
        .await
        .expect("CancelFlightInfo")
        .into_inner();
    let result = results.message().await.unwrap().expect("a result");
    let result = arrow_flight::CancelFlightInfoResult::decode(result.body).unwrap();
    CancelStatus::try_from(result.status).unwrap()
}

/// Only the job's own state objects are left under the prefix: no staged data.
async fn only_job_state_left(prefix: &str) -> bool {
    keys_under(&format!("{prefix}/")).await.iter().all(|key| {
        key.ends_with("/poll.json") || key.ends_with("/lease") || key.ends_with("/cancel")
    })
}

#[tokio::test]
async fn cancelling_a_running_poll_stops_the_unload_and_later_polls_say_cancelled() {
    let pg = pg().await;
    let schema = unique("pollcancel");
    pg.batch_execute(&format!(
        "CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (id integer PRIMARY KEY); \
         INSERT INTO {schema}.t SELECT generate_series(1, 3000);"
    ))
    .await
    .unwrap();
    // Each UNLOAD writes its first 500 rows, then 500 more every 5 s: it runs until cancelled.
    let emulator = slow_emulator(5_000, 0).await;
    let prefix = unique("rsf-pollcancel");
    let (a, b) = replicas(&emulator, &prefix).await;
    let (mut client_a, mut client_b) = (flight_client(&a).await, flight_client(&b).await);

    // Cancelled through the replica that does not run it: that replica asks the running one
    // through S3.
    let descriptor = query_descriptor(&format!("SELECT id FROM {schema}.t WHERE id > 1"));
    let first = poll(&mut client_a, &descriptor).await.expect("first poll");
    let next = assert_running(&first, &descriptor);
    assert!(
        eventually(Duration::from_secs(10), || async {
            emulator.unload_stats().running() == 1
        })
        .await,
        "the UNLOAD runs"
    );
    let status = cancel_poll(&mut client_b, &first).await;
    assert!(
        matches!(status, CancelStatus::Cancelling | CancelStatus::Cancelled),
        "{status:?}"
    );
    let cancelled = poll(&mut client_b, &next).await.expect_err("cancelled");
    assert_eq!(cancelled.code(), tonic::Code::Cancelled, "{cancelled:?}");
    assert!(
        eventually(Duration::from_secs(10), || async {
            emulator.unload_stats().running() == 0
        })
        .await,
        "the UNLOAD still runs on Redshift"
    );
    assert_eq!(emulator.unload_stats().started(), 1);
    let cancelled = poll(&mut client_a, &next).await.expect_err("cancelled");
    assert_eq!(cancelled.code(), tonic::Code::Cancelled, "{cancelled:?}");
    assert!(
        eventually(Duration::from_secs(15), || only_job_state_left(&prefix)).await,
        "left: {:?}",
        keys_under(&format!("{prefix}/")).await
    );

    // Cancelled through the replica running it: at once.
    let descriptor = query_descriptor(&format!("SELECT id FROM {schema}.t WHERE id > 2"));
    let first = poll(&mut client_a, &descriptor).await.expect("first poll");
    let next = assert_running(&first, &descriptor);
    assert!(
        eventually(Duration::from_secs(10), || async {
            emulator.unload_stats().running() == 1
        })
        .await,
        "the second UNLOAD runs"
    );
    assert_eq!(
        cancel_poll(&mut client_a, &first).await,
        CancelStatus::Cancelled
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            emulator.unload_stats().running() == 0
        })
        .await,
        "the second UNLOAD still runs on Redshift"
    );
    for client in [&mut client_a, &mut client_b] {
        let cancelled = poll(client, &next).await.expect_err("cancelled");
        assert_eq!(cancelled.code(), tonic::Code::Cancelled, "{cancelled:?}");
        assert!(
            cancelled.message().contains("cancelled"),
            "{}",
            cancelled.message()
        );
    }
    assert!(
        eventually(Duration::from_secs(15), || only_job_state_left(&prefix)).await,
        "left: {:?}",
        keys_under(&format!("{prefix}/")).await
    );

    pg.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
    a.stop().await;
    b.stop().await;
    emulator.shutdown().await;
}
