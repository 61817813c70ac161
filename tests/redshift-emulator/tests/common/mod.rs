//! Shared fixtures: the test bed's coordinates, an in-process emulator on port 0 per test, a
//! tokio-postgres client, unique names, and S3/Parquet readers.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::record_batch::RecordBatch;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::ParquetMetaData;
use redshift_emulator::{EmulatorConfig, RunningEmulator};
use tokio_postgres::{Client, NoTls};

pub const PASSWORD: &str = "emulator-test-password";

/// Where the test bed's services are (from `TESTBED_*`, or `target/testbed/env`).
#[derive(Debug, Clone)]
pub struct TestBed {
    pub pg_url: String,
    pub s3_endpoint: String,
    pub bucket: String,
    pub region: String,
    pub iam_role: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

fn env_file_value(key: &str) -> Option<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/testbed/env");
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let line = line.trim().strip_prefix("export ").unwrap_or(line.trim());
        let (k, v) = line.split_once('=')?;
        (k == key).then(|| v.trim_matches(|c| c == '"' || c == '\'').to_owned())
    })
}

fn var(key: &str) -> String {
    std::env::var(key)
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| env_file_value(key))
        .unwrap_or_else(|| {
            panic!(
                "{key} is not set: these tests need the test bed (run tests/testbed/up, then \
                 `source target/testbed/env`, or export the TESTBED_* variables)"
            )
        })
}

impl TestBed {
    pub fn from_env() -> Self {
        Self {
            pg_url: var("TESTBED_PG_URL"),
            s3_endpoint: var("TESTBED_S3_ENDPOINT"),
            bucket: var("TESTBED_S3_BUCKET"),
            region: var("TESTBED_S3_REGION"),
            iam_role: var("TESTBED_IAM_ROLE"),
            access_key_id: var("AWS_ACCESS_KEY_ID"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
        }
    }

    /// An emulator configuration for this test bed, listening on a free port.
    pub fn config(&self) -> EmulatorConfig {
        EmulatorConfig::new(self.pg_url.clone(), PASSWORD)
            .with_listen("127.0.0.1:0")
            .with_s3_endpoint(self.s3_endpoint.clone())
            .with_s3_region(self.region.clone())
            .with_s3_credentials(self.access_key_id.clone(), self.secret_access_key.clone())
    }

    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store_for(&self.bucket)
    }

    pub fn store_for(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        Arc::new(
            AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_region(&self.region)
                .with_endpoint(&self.s3_endpoint)
                .with_allow_http(true)
                .with_virtual_hosted_style_request(false)
                .with_access_key_id(&self.access_key_id)
                .with_secret_access_key(&self.secret_access_key)
                .build()
                .expect("S3 client"),
        )
    }

    /// A direct connection to the backend PostgreSQL (bypassing the emulator).
    pub async fn pg(&self) -> Client {
        connect_url(&self.pg_url).await
    }
}

async fn connect_url(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// An emulator of its own for one test.
pub struct Emulator {
    pub bed: TestBed,
    pub running: RunningEmulator,
}

impl Emulator {
    pub async fn start() -> Self {
        Self::start_with(|c| c).await
    }

    pub async fn start_with(f: impl FnOnce(EmulatorConfig) -> EmulatorConfig) -> Self {
        let bed = TestBed::from_env();
        let running = redshift_emulator::start(f(bed.config()))
            .await
            .expect("start the emulator");
        Self { bed, running }
    }

    pub fn conn_config(&self) -> tokio_postgres::Config {
        let addr = self.running.local_addr();
        let mut config = tokio_postgres::Config::new();
        config
            .host(addr.ip().to_string())
            .port(addr.port())
            .user("awsuser")
            .password(PASSWORD)
            .dbname("dev");
        config
    }

    /// A client logged in to the emulator.
    pub async fn client(&self) -> Client {
        let (client, connection) = self
            .conn_config()
            .connect(NoTls)
            .await
            .expect("connect to the emulator");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// `s3://bucket/<prefix>`
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bed.bucket)
    }

    /// An UNLOAD of `select` (quotes doubled here) to `prefix` with `options`.
    pub fn unload(&self, select: &str, prefix: &str, options: &str) -> String {
        format!(
            "UNLOAD ('{}') TO '{}' IAM_ROLE '{}' {options}",
            select.replace('\'', "''"),
            self.url(prefix),
            self.bed.iam_role
        )
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name unique across parallel tests and runs.
pub fn unique(base: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{base}_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000
    )
}

/// Keys (sorted) of the objects whose key starts with `prefix`.
pub async fn list_keys(store: &Arc<dyn ObjectStore>, prefix: &str) -> Vec<String> {
    let dir = prefix.rfind('/').map(|i| &prefix[..i]).unwrap_or("");
    let dir = (!dir.is_empty()).then(|| Path::from(dir));
    let mut keys: Vec<String> = store
        .list(dir.as_ref())
        .try_collect::<Vec<_>>()
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.location.to_string())
        .filter(|k| k.starts_with(prefix))
        .collect();
    keys.sort();
    keys
}

pub async fn object_size(store: &Arc<dyn ObjectStore>, key: &str) -> u64 {
    store.head(&Path::from(key)).await.expect("head").size
}

pub async fn get_json(store: &Arc<dyn ObjectStore>, key: &str) -> serde_json::Value {
    let bytes = store
        .get(&Path::from(key))
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    serde_json::from_slice(&bytes).expect("JSON")
}

pub async fn put(store: &Arc<dyn ObjectStore>, key: &str, body: &'static [u8]) {
    store
        .put(&Path::from(key), PutPayload::from_static(body))
        .await
        .expect("put");
}

/// Reads a Parquet object: its metadata and all batches.
pub async fn read_parquet(
    store: &Arc<dyn ObjectStore>,
    key: &str,
) -> (Arc<ParquetMetaData>, Vec<RecordBatch>) {
    // test files are small: read the whole object
    let bytes = store
        .get(&Path::from(key))
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).expect("parquet footer");
    let metadata = Arc::clone(builder.metadata());
    let batches = builder
        .build()
        .expect("parquet reader")
        .collect::<Result<Vec<_>, _>>()
        .expect("parquet batches");
    (metadata, batches)
}

/// The SQLSTATE and message of a database error.
pub fn db_error(e: &tokio_postgres::Error) -> (String, String) {
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("not a database error: {e:?}"));
    (db.code().code().to_owned(), db.message().to_owned())
}
