//! Shared by the integration tests: the test bed's settings (the environment, else
//! target/testbed/env), a redshift-flight server process per test (the binary from
//! REDSHIFT_FLIGHT_BIN, else target/debug/redshift-flight; listening on port 0, the port read
//! from its stdout with a deadline, stopped with SIGTERM so it cleans its staged runs), password
//! hashes for access files (its `hash-password` command), and PostgreSQL (the data behind the
//! Redshift emulator) through tokio-postgres.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redshift_flight_client::Client;

const KEYS: [&str; 12] = [
    "TESTBED_PG_URL",
    "TESTBED_REDSHIFT_HOST",
    "TESTBED_REDSHIFT_PORT",
    "TESTBED_REDSHIFT_USER",
    "TESTBED_REDSHIFT_PASSWORD",
    "TESTBED_REDSHIFT_DATABASE",
    "TESTBED_S3_ENDPOINT",
    "TESTBED_S3_BUCKET",
    "TESTBED_S3_REGION",
    "TESTBED_IAM_ROLE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
];
const STARTUP: Duration = Duration::from_secs(60);

/// The repository root (clients/rust/../..).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The test bed's settings.
pub fn testbed() -> BTreeMap<String, String> {
    if KEYS
        .iter()
        .all(|k| std::env::var(k).is_ok_and(|v| !v.is_empty()))
    {
        return KEYS
            .iter()
            .map(|k| (k.to_string(), std::env::var(k).unwrap()))
            .collect();
    }
    let path = root().join("target/testbed/env");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("no test bed: set the TESTBED_* variables or run tests/testbed/up ({path:?}: {e})")
    });
    let mut values = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim().trim_start_matches("export ").trim();
        if let Some((key, value)) = line.split_once('=') {
            values.insert(key.to_string(), value.trim_matches('\'').to_string());
        }
    }
    for key in KEYS {
        assert!(values.contains_key(key), "{path:?} lacks {key}");
    }
    values
}

/// A name no other test uses: `prefix` + a per-process counter + time.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000
    )
}

/// A tokio-postgres connection to the test bed's PostgreSQL (session zone UTC).
pub async fn pg() -> tokio_postgres::Client {
    let url = &testbed()["TESTBED_PG_URL"];
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test bed's PostgreSQL");
    tokio::spawn(connection);
    client.batch_execute("SET TIME ZONE 'UTC'").await.unwrap();
    client
}

/// A schema dropped (with everything in it) when the guard goes, also when the test fails.
pub struct SchemaGuard {
    pub name: String,
}

impl SchemaGuard {
    /// Creates schema `prefix_...` and runs `sql` (with `{s}` standing for the quoted schema).
    pub async fn create(pg: &tokio_postgres::Client, prefix: &str, sql: &str) -> Self {
        let name = unique(prefix);
        let guard = Self { name };
        let quoted = format!("\"{}\"", guard.name);
        pg.batch_execute(&format!("CREATE SCHEMA {quoted}"))
            .await
            .unwrap();
        pg.batch_execute(&sql.replace("{s}", &quoted))
            .await
            .unwrap();
        guard
    }

    /// `"schema"`.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.name)
    }
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let name = self.name.clone();
        // A runtime of its own: the test's may be gone or blocked.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let pg = pg().await;
                let _ = pg
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                    .await;
            });
        })
        .join();
    }
}

/// The redshift-flight binary: REDSHIFT_FLIGHT_BIN, else target/debug/redshift-flight.
pub fn binary() -> PathBuf {
    let binary = std::env::var_os("REDSHIFT_FLIGHT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/debug/redshift-flight"));
    assert!(
        binary.is_file(),
        "redshift-flight not found at {binary:?}: run `cargo test --workspace --no-run` in the \
         repository root or set REDSHIFT_FLIGHT_BIN"
    );
    binary
}

/// `password`'s hash for an access file (`auth_file`), from `redshift-flight hash-password`.
pub fn hash_password(password: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(binary())
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start redshift-flight hash-password");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{password}\n").as_bytes()).unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "hash-password failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// A running redshift-flight process.
pub struct Server {
    child: Child,
    pub uri: String,
    pub stderr_path: PathBuf,
    pub dir: PathBuf,
}

impl Server {
    /// Starts a server on the test bed serving `schema` by default, with `extra` settings.
    pub fn start(schema: &str, extra: &[(&str, &str)]) -> Self {
        let bed = testbed();
        let mut config = serde_json::Map::new();
        let mut set = |k: &str, v: &str| {
            config.insert(k.to_string(), serde_json::Value::String(v.to_string()));
        };
        set("redshift_host", &bed["TESTBED_REDSHIFT_HOST"]);
        set("redshift_port", &bed["TESTBED_REDSHIFT_PORT"]);
        set("redshift_database", &bed["TESTBED_REDSHIFT_DATABASE"]);
        set("redshift_user", &bed["TESTBED_REDSHIFT_USER"]);
        set("redshift_password", &bed["TESTBED_REDSHIFT_PASSWORD"]);
        set("redshift_schema", schema);
        set("s3_bucket", &bed["TESTBED_S3_BUCKET"]);
        set("s3_region", &bed["TESTBED_S3_REGION"]);
        set("s3_prefix", &unique("rsf-rust"));
        set("iam_role", &bed["TESTBED_IAM_ROLE"]);
        set("aws_access_key_id", &bed["AWS_ACCESS_KEY_ID"]);
        set("aws_secret_access_key", &bed["AWS_SECRET_ACCESS_KEY"]);
        set("auto_schema_detection", "true");
        set("enable_complete_resync", "false");
        set("max_parallel_workers", "4");
        set("s3_endpoint", &bed["TESTBED_S3_ENDPOINT"]);
        set("listen_address", "127.0.0.1:0");
        set("ticket_secret", &format!("{:0>64}", unique("secret")));
        for (k, v) in extra {
            set(k, v);
        }
        let dir = std::env::temp_dir().join(unique("rsf-rust-server"));
        std::fs::create_dir_all(&dir).unwrap();
        let config_path = dir.join("configuration.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let stderr_path = dir.join("server.stderr.log");
        let mut command = Command::new(binary());
        command
            .arg("--config")
            .arg(&config_path)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .env("REDSHIFT_FLIGHT_LOG", "info");
        for (key, _) in std::env::vars() {
            if key.starts_with("REDSHIFT_FLIGHT_") && key != "REDSHIFT_FLIGHT_LOG" {
                command.env_remove(key);
            }
        }
        let mut child = command.spawn().expect("start redshift-flight");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = std::time::Instant::now() + STARTUP;
        let uri = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(address) = line.strip_prefix("redshift-flight listening on ") {
                        break format!("grpc://{}", address.trim());
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "redshift-flight did not start; stderr:\n{}",
                        std::fs::read_to_string(&stderr_path).unwrap_or_default()
                    );
                }
            }
        };
        Self {
            child,
            uri,
            stderr_path,
            dir,
        }
    }

    /// The server's URI with TLS (`grpc+tls://`), for a server started with `tls_cert`.
    pub fn tls_uri(&self) -> String {
        self.uri.replacen("grpc://", "grpc+tls://", 1)
    }

    /// A client without credentials.
    pub async fn client(&self) -> Client {
        Client::connect(&self.uri)
            .await
            .expect("connect to redshift-flight")
    }

    /// What the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every value of `batches` as text (NULL as `None`), row by row, in the column order given,
/// with arrow's display formatting.
pub fn rows_as_text(batches: &[arrow::array::RecordBatch]) -> Vec<Vec<Option<String>>> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let options = FormatOptions::default();
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            rows.push(
                batch
                    .columns()
                    .iter()
                    .zip(&formatters)
                    .map(|(c, f)| (!c.is_null(row)).then(|| f.value(row).to_string()))
                    .collect(),
            );
        }
    }
    rows
}
