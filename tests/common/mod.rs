//! Shared fixtures of the end-to-end tests: the test bed's addresses (from the environment, or
//! from `target/testbed/env` written by `tests/testbed/up`), a direct PostgreSQL connection, a
//! redshift-flight server started in-process on port 0, and a Flight client.
#![allow(dead_code, unreachable_pub)]

pub mod canon;
pub mod proxy;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::OnceLock;

use arrow_flight::FlightClient;
use redshift_flight::config::{Config, RawConfig};
use redshift_flight::server::Application;
use tokio::sync::oneshot;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// The test bed's settings.
pub fn testbed() -> &'static HashMap<String, String> {
    static ENV: OnceLock<HashMap<String, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut vars: HashMap<String, String> = HashMap::new();
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/target/testbed/env");
        if let Ok(text) = std::fs::read_to_string(file) {
            for line in text.lines() {
                let Some(rest) = line.strip_prefix("export ") else {
                    continue;
                };
                if let Some((k, v)) = rest.split_once('=') {
                    let v = v.trim_matches(|c| c == '\'' || c == '"');
                    vars.insert(k.to_string(), v.to_string());
                }
            }
        }
        for (k, v) in std::env::vars() {
            if k.starts_with("TESTBED_") || k.starts_with("AWS_") {
                vars.insert(k, v);
            }
        }
        assert!(
            vars.contains_key("TESTBED_PG_URL"),
            "the test bed is not up: run tests/testbed/up (or the README's test command, tests/run)"
        );
        vars
    })
}

/// One test-bed setting.
pub fn tb(key: &str) -> String {
    testbed()
        .get(key)
        .cloned()
        .unwrap_or_else(|| panic!("{key} missing from the test bed env"))
}

/// A direct connection to the test bed's PostgreSQL (not through the emulator).
pub async fn pg() -> Client {
    let (client, connection) = tokio_postgres::connect(&tb("TESTBED_PG_URL"), NoTls)
        .await
        .expect("connect to the test bed's PostgreSQL");
    tokio::spawn(connection);
    client.batch_execute("SET TimeZone = 'UTC'").await.unwrap();
    client
}

/// Runs a simple query and returns its rows as text.
pub async fn pg_rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(String::from))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// A unique name for this test's objects.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{:08x}", rand::random::<u32>())
}

/// The configuration of a server pointed at the test bed, with `extra` keys on top.
pub fn raw_config(extra: &[(&str, &str)]) -> RawConfig {
    serde_json::from_value(config_json(extra)).expect("valid test configuration")
}

/// The same configuration as a `configuration.json` document.
pub fn config_json(extra: &[(&str, &str)]) -> serde_json::Value {
    let mut json = serde_json::json!({
        "redshift_host": tb("TESTBED_REDSHIFT_HOST"),
        "redshift_port": tb("TESTBED_REDSHIFT_PORT"),
        "redshift_database": tb("TESTBED_REDSHIFT_DATABASE"),
        "redshift_user": tb("TESTBED_REDSHIFT_USER"),
        "redshift_password": tb("TESTBED_REDSHIFT_PASSWORD"),
        "redshift_schema": "public",
        "s3_bucket": tb("TESTBED_S3_BUCKET"),
        "s3_region": tb("TESTBED_S3_REGION"),
        "s3_prefix": "redshift-flight-tests",
        "iam_role": tb("TESTBED_IAM_ROLE"),
        "aws_access_key_id": tb("AWS_ACCESS_KEY_ID"),
        "aws_secret_access_key": tb("AWS_SECRET_ACCESS_KEY"),
        "auto_schema_detection": "true",
        "enable_complete_resync": "false",
        "max_parallel_workers": "4",
        "s3_endpoint": tb("TESTBED_S3_ENDPOINT"),
        "listen_address": "127.0.0.1:0",
        "ticket_secret": "test-ticket-secret-0123456789abcdef",
    });
    for (k, v) in extra {
        json[*k] = serde_json::Value::String(v.to_string());
    }
    json
}

/// A server running in-process; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server with the test-bed configuration plus `extra`.
    pub async fn start(extra: &[(&str, &str)]) -> Self {
        let config = Config::try_from_raw(raw_config(extra)).expect("valid config");
        let app = Application::build(config).await.expect("server starts");
        let addr = app.local_addr().unwrap();
        let metrics_addr = app.metrics_addr();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            app.run_until(async {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
        Self {
            addr,
            metrics_addr,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// A Flight client connected to this server.
    pub async fn client(&self) -> FlightClient {
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .expect("connect to the Flight server");
        FlightClient::new(channel)
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Starts an emulator of the test's own in front of the test bed's PostgreSQL, writing to
/// `s3_endpoint` (default: the test bed's S3 server).
pub async fn own_emulator(
    row_group_rows: usize,
    slices: usize,
    faults: redshift_emulator::FaultSettings,
) -> redshift_emulator::RunningEmulator {
    own_emulator_on("127.0.0.1:0", row_group_rows, slices, faults).await
}

/// [`own_emulator`] on a given address (to restart one on the same port).
pub async fn own_emulator_on(
    listen: &str,
    row_group_rows: usize,
    slices: usize,
    faults: redshift_emulator::FaultSettings,
) -> redshift_emulator::RunningEmulator {
    let config = redshift_emulator::EmulatorConfig::new(
        tb("TESTBED_PG_URL"),
        tb("TESTBED_REDSHIFT_PASSWORD"),
    )
    .with_listen(listen)
    .with_user(tb("TESTBED_REDSHIFT_USER"))
    .with_database(tb("TESTBED_REDSHIFT_DATABASE"))
    .with_s3_endpoint(tb("TESTBED_S3_ENDPOINT"))
    .with_s3_region(tb("TESTBED_S3_REGION"))
    .with_s3_credentials(tb("AWS_ACCESS_KEY_ID"), tb("AWS_SECRET_ACCESS_KEY"))
    .with_slices(slices)
    .with_row_group_rows(row_group_rows)
    .with_faults(faults);
    redshift_emulator::start(config)
        .await
        .expect("emulator starts")
}

/// The test bed's bucket, as the server sees it.
pub fn bucket() -> std::sync::Arc<dyn object_store::ObjectStore> {
    let config = Config::try_from_raw(raw_config(&[])).unwrap();
    redshift_flight::store::build_s3(&config.s3, config.s3.region.as_deref().unwrap(), None)
        .unwrap()
}

/// Every key under `prefix` in the test bed's bucket but the claims replicas agree through.
pub async fn keys_under(prefix: &str) -> Vec<String> {
    use futures::TryStreamExt;
    let prefix = object_store::path::Path::from(prefix);
    let mut keys: Vec<String> = bucket()
        .list(Some(&prefix))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    // The claims replicas agree through (single flight, cluster UNLOAD slots) hold no data.
    keys.retain(|key| !key.contains("/flights/") && !key.contains("/slots/"));
    keys.sort();
    keys
}

/// Polls `condition` every 100 ms until it holds or `deadline` passes.
pub async fn eventually<F, Fut>(deadline: std::time::Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = std::time::Instant::now() + deadline;
    loop {
        if condition().await {
            return true;
        }
        if std::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Polls `condition` every 100 ms until `duration` has passed; false as soon as it fails once.
/// Only for waits where the passing of time is itself what is tested ("not deleted before the
/// TTL"): the negative is asserted all along instead of once after a blind sleep. To wait for
/// something to happen, use [`eventually`].
pub async fn holds_for<F, Fut>(duration: std::time::Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = std::time::Instant::now() + duration;
    loop {
        if !condition().await {
            return false;
        }
        if std::time::Instant::now() >= until {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Cancels a FlightInfo's staged run through the CancelFlightInfo action.
pub async fn cancel(client: &mut FlightClient, info: &arrow_flight::FlightInfo) {
    let request = arrow_flight::CancelFlightInfoRequest {
        info: Some(info.clone()),
    };
    let result = client
        .cancel_flight_info(request)
        .await
        .expect("CancelFlightInfo");
    assert_eq!(result.status, arrow_flight::CancelStatus::Cancelled as i32);
}

/// The gRPC status of a call that must have failed, as (code, message).
pub fn status<T: std::fmt::Debug>(
    result: Result<T, arrow_flight::error::FlightError>,
) -> (tonic::Code, String) {
    match result {
        Err(arrow_flight::error::FlightError::Tonic(status)) => {
            (status.code(), status.message().to_string())
        }
        other => panic!("expected a status, got {other:?}"),
    }
}

/// Why a server with the test-bed configuration plus `extra` fails to start.
pub async fn start_error(extra: &[(&str, &str)]) -> String {
    let config = Config::try_from_raw(raw_config(extra)).expect("valid config");
    Application::build(config)
        .await
        .expect_err("start-up must fail")
        .to_string()
}
