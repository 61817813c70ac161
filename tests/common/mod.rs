//! Shared fixtures of the end-to-end tests: the test bed's addresses (from the environment, or
//! from `target/testbed/env` written by `tests/testbed/up`), a direct PostgreSQL connection, a
//! redshift-flight server started in-process on port 0, and a Flight client.
#![allow(dead_code, unreachable_pub)]

pub mod canon;

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
        "ticket_secret": "test-ticket-secret",
    });
    for (k, v) in extra {
        json[*k] = serde_json::Value::String(v.to_string());
    }
    json
}

/// A server running in-process; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server with the test-bed configuration plus `extra`.
    pub async fn start(extra: &[(&str, &str)]) -> Self {
        let config = Config::try_from_raw(raw_config(extra)).expect("valid config");
        let app = Application::build(config).await.expect("server starts");
        let addr = app.local_addr().unwrap();
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
