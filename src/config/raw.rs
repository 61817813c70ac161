//! The raw, seed-compatible layer: every configuration key as an optional string, read from the
//! seed connector's `configuration.json` (string values such as `"true"` and `"4"`, though JSON
//! numbers, booleans and lists of strings are accepted too), from the environment
//! (`REDSHIFT_FLIGHT_<KEY>`) and from CLI flags (`--<key-with-dashes>`), and layered with
//! [`RawConfig::overlay`]. Nothing here interprets a value; [`super::validate`] does.
//!
//! May import: `super::ConfigError` only.

use std::fmt;
use std::path::Path;

use serde::Deserialize;

use super::ConfigError;

// Why hand-written rather than `serde_with` (`PickFirst<(_, DisplayFromStr)>`): the raw layer
// must stay text, because it is overlaid with the environment and flags (clap strings) before
// anything is interpreted, and because a list must be joined into the comma-separated form that
// the environment and flags use, refusing items that contain a comma. `DisplayFromStr` into a
// `String` accepts only JSON strings, not the numbers and booleans that the seed's files may hold.
/// A JSON scalar or list of strings as the text the environment and flags would carry.
fn scalar<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match value {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Bool(b)) => Some(b.to_string()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        // A list (`ticket_secret`, `auth_tokens`): the comma-separated string form.
        Some(serde_json::Value::Array(items)) => {
            let mut parts = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    serde_json::Value::String(s) if !s.contains(',') => parts.push(s),
                    serde_json::Value::String(_) => {
                        return Err(serde::de::Error::custom(
                            "an item of a list may not contain ','",
                        ));
                    }
                    _ => return Err(serde::de::Error::custom("expected a list of strings")),
                }
            }
            Some(parts.join(","))
        }
        Some(other) => {
            return Err(serde::de::Error::custom(format!(
                "expected a string, number, boolean or list of strings, got {}",
                match other {
                    serde_json::Value::Object(_) => "an object",
                    _ => "something else",
                }
            )));
        }
    })
}

macro_rules! raw_config {
    ($( $(#[doc = $doc:literal])* $field:ident: $env:literal, secret = $secret:literal $(, arg($($extra:tt)*))?; )*) => {
        /// Every configuration key as text, before validation. Used for the JSON file (unknown
        /// keys are rejected), the environment and the CLI flags.
        #[derive(Default, Clone, clap::Args, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct RawConfig {
            $(
                $(#[doc = $doc])*
                #[arg(long, global = true, env = $env, hide_env_values = true $(, $($extra)*)?)]
                #[serde(default, deserialize_with = "scalar")]
                pub $field: Option<String>,
            )*
        }

        impl RawConfig {
            /// Every key name, in the file's spelling.
            pub const KEYS: &'static [&'static str] = &[$(stringify!($field)),*];

            /// Values of `top` win over values of `self`.
            pub fn overlay(self, top: RawConfig) -> RawConfig {
                RawConfig { $( $field: top.$field.or(self.$field), )* }
            }

            /// The environment variable of `key`.
            pub(super) fn env_name(key: &str) -> String {
                format!("REDSHIFT_FLIGHT_{}", key.to_ascii_uppercase())
            }
        }

        impl fmt::Debug for RawConfig {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut s = f.debug_struct("RawConfig");
                $(
                    match (&self.$field, $secret) {
                        (None, _) => s.field(stringify!($field), &None::<()>),
                        (Some(_), true) => s.field(stringify!($field), &"<redacted>"),
                        (Some(v), false) => s.field(stringify!($field), v),
                    };
                )*
                s.finish()
            }
        }
    };
}

raw_config! {
    /// Hostname of the Redshift cluster.
    redshift_host: "REDSHIFT_FLIGHT_REDSHIFT_HOST", secret = false;
    /// Port of the Redshift cluster (usually 5439).
    redshift_port: "REDSHIFT_FLIGHT_REDSHIFT_PORT", secret = false;
    /// Database name.
    redshift_database: "REDSHIFT_FLIGHT_REDSHIFT_DATABASE", secret = false;
    /// Database user.
    redshift_user: "REDSHIFT_FLIGHT_REDSHIFT_USER", secret = false;
    /// Database password.
    redshift_password: "REDSHIFT_FLIGHT_REDSHIFT_PASSWORD", secret = true;
    /// Default schema: the one served when a descriptor names no schema.
    redshift_schema: "REDSHIFT_FLIGHT_REDSHIFT_SCHEMA", secret = false;
    /// Consumer (datashare) databases served besides redshift_database, comma-separated: their tables are read as database.schema.table (default: none).
    redshift_databases: "REDSHIFT_FLIGHT_REDSHIFT_DATABASES", secret = false;
    /// Bucket that UNLOAD writes to and DoGet reads from.
    s3_bucket: "REDSHIFT_FLIGHT_S3_BUCKET", secret = false;
    /// Region of the bucket.
    s3_region: "REDSHIFT_FLIGHT_S3_REGION", secret = false;
    /// Prefix inside the bucket under which staged runs live (default `redshift-flight`).
    s3_prefix: "REDSHIFT_FLIGHT_S3_PREFIX", secret = false;
    /// IAM role Redshift assumes to write to S3: an ARN, a comma-separated chain, or `default`.
    iam_role: "REDSHIFT_FLIGHT_IAM_ROLE", secret = false;
    /// AWS access key for reading and deleting staged files (else the AWS credential chain).
    aws_access_key_id: "REDSHIFT_FLIGHT_AWS_ACCESS_KEY_ID", secret = false;
    /// AWS secret key matching `aws_access_key_id`.
    aws_secret_access_key: "REDSHIFT_FLIGHT_AWS_SECRET_ACCESS_KEY", secret = true;
    /// `true`: serve every table of the schema; `false`: serve the tables of `table_spec_file`.
    auto_schema_detection: "REDSHIFT_FLIGHT_AUTO_SCHEMA_DETECTION", secret = false;
    /// `true`: every request is served as a full snapshot.
    enable_complete_resync: "REDSHIFT_FLIGHT_ENABLE_COMPLETE_RESYNC", secret = false;
    /// How many UNLOADs may run at once, server-wide.
    max_parallel_workers: "REDSHIFT_FLIGHT_MAX_PARALLEL_WORKERS", secret = false;
    /// S3-compatible endpoint URL (e.g. `http://127.0.0.1:9000`); path-style addressing.
    s3_endpoint: "REDSHIFT_FLIGHT_S3_ENDPOINT", secret = false;
    /// Address the Flight server listens on (default `127.0.0.1:8815`).
    listen_address: "REDSHIFT_FLIGHT_LISTEN_ADDRESS", secret = false;
    /// Comma-separated bearer tokens accepted on every RPC (none: no authentication).
    auth_tokens: "REDSHIFT_FLIGHT_AUTH_TOKENS", secret = true;
    /// Table-spec file (TOML or JSON), required when `auto_schema_detection` is `false`.
    table_spec_file: "REDSHIFT_FLIGHT_TABLE_SPEC_FILE", secret = false;
    /// How long discovered table metadata is cached, in seconds (default 60).
    catalog_ttl_seconds: "REDSHIFT_FLIGHT_CATALOG_TTL_SECONDS", secret = false;
    /// How long a staged run and its tickets stay valid, in seconds (default 3600).
    staging_ttl_seconds: "REDSHIFT_FLIGHT_STAGING_TTL_SECONDS", secret = false;
    /// UNLOAD's MAXFILESIZE in MB (5 to 6200, default 256): bounds one endpoint's size.
    unload_max_file_size_mb: "REDSHIFT_FLIGHT_UNLOAD_MAX_FILE_SIZE_MB", secret = false;
    /// Secret key(s) for signing tickets and issued tokens, at least 32 bytes each; replicas must share them. A comma-separated list (a JSON array in the file) rotates keys: the first signs, all verify (default: random per process).
    ticket_secret: "REDSHIFT_FLIGHT_TICKET_SECRET", secret = true;
    /// Seconds a fully streamed run is kept, for clients retrying a failed stream (default 60).
    staging_grace_seconds: "REDSHIFT_FLIGHT_STAGING_GRACE_SECONDS", secret = false;
    /// Seconds between sweeps for expired runs (default 300; a sweep also runs at start-up).
    sweep_interval_seconds: "REDSHIFT_FLIGHT_SWEEP_INTERVAL_SECONDS", secret = false;
    /// Address of the Prometheus `/metrics` endpoint (default: none, disabled).
    metrics_address: "REDSHIFT_FLIGHT_METRICS_ADDRESS", secret = false;
    /// Seconds in-flight streams may take to finish after SIGTERM before they are cancelled (default 30).
    shutdown_grace_seconds: "REDSHIFT_FLIGHT_SHUTDOWN_GRACE_SECONDS", secret = false;
    /// Seconds without data after which a DoGet stream sends an empty keep-alive batch (default 5).
    keepalive_seconds: "REDSHIFT_FLIGHT_KEEPALIVE_SECONDS", secret = false;
    /// Retries of a failed S3 request (default 4).
    s3_max_retries: "REDSHIFT_FLIGHT_S3_MAX_RETRIES", secret = false;
    /// Seconds within which S3 retries must succeed (default 30).
    s3_retry_timeout_seconds: "REDSHIFT_FLIGHT_S3_RETRY_TIMEOUT_SECONDS", secret = false;
    /// Access file (TOML or JSON): users with password hashes and tokens, each limited to table patterns.
    auth_file: "REDSHIFT_FLIGHT_AUTH_FILE", secret = false;
    /// Lifetime of tokens issued by the Handshake, in seconds (default 3600).
    auth_token_ttl_seconds: "REDSHIFT_FLIGHT_AUTH_TOKEN_TTL_SECONDS", secret = false;
    /// File holding the ticket signing key(s), one per line, the signing one first (instead of ticket_secret).
    ticket_secret_file: "REDSHIFT_FLIGHT_TICKET_SECRET_FILE", secret = false;
    /// PEM certificate chain for TLS on the Flight port.
    tls_cert: "REDSHIFT_FLIGHT_TLS_CERT", secret = false;
    /// PEM private key for TLS on the Flight port.
    tls_key: "REDSHIFT_FLIGHT_TLS_KEY", secret = false;
    /// PEM CA bundle: when set, clients must present a certificate it signed.
    tls_client_ca: "REDSHIFT_FLIGHT_TLS_CLIENT_CA", secret = false;
    /// TLS to Redshift: disable, prefer, require or verify-full (default: verify-full, prefer on loopback).
    redshift_sslmode: "REDSHIFT_FLIGHT_REDSHIFT_SSLMODE", secret = false;
    /// PEM CA bundle trusted for verify-full (in addition to the public roots).
    redshift_ssl_root_cert: "REDSHIFT_FLIGHT_REDSHIFT_SSL_ROOT_CERT", secret = false;
    /// A staged file with more rows is split into several endpoints by row-group ranges (default 1048576; 0: one endpoint per file).
    endpoint_rows: "REDSHIFT_FLIGHT_ENDPOINT_ROWS", secret = false;
    /// Identical GetFlightInfo requests share one staged run while it is being staged and for this many seconds after (default 0: only while it is being staged; `off`: never).
    snapshot_reuse_seconds: "REDSHIFT_FLIGHT_SNAPSHOT_REUSE_SECONDS", secret = false;
    /// Where identical requests share a run: `cluster` (the default: replicas sharing s3_prefix agree through conditional writes to S3) or `replica` (within one process only).
    snapshot_reuse_scope: "REDSHIFT_FLIGHT_SNAPSHOT_REUSE_SCOPE", secret = false;
    /// UNLOADs at once over all replicas sharing s3_prefix, through leases in S3 (default 0: no cluster-wide limit, only max_parallel_workers per replica).
    cluster_max_parallel_unloads: "REDSHIFT_FLIGHT_CLUSTER_MAX_PARALLEL_UNLOADS", secret = false;
    /// Seconds a replica's claims in S3 (single flight, cluster UNLOAD slots) hold unless renewed: a dead replica's claims pass within this (default 20).
    cluster_lease_seconds: "REDSHIFT_FLIGHT_CLUSTER_LEASE_SECONDS", secret = false;
    /// MB all DoGet streams may hold at once (row groups, decoded batches, encoded messages); further streams wait their turn (default 384; 0: unbounded).
    stream_memory_mb: "REDSHIFT_FLIGHT_STREAM_MEMORY_MB", secret = false;
    /// Seconds a DoGet client may read nothing while its stream has data waiting; then the stream ends with RESOURCE_EXHAUSTED and gives back its memory (default 120).
    stream_stall_seconds: "REDSHIFT_FLIGHT_STREAM_STALL_SECONDS", secret = false;
    /// Threads decoding Parquet for DoGet, apart from the gRPC runtime (default 0: one per CPU).
    decode_threads: "REDSHIFT_FLIGHT_DECODE_THREADS", secret = false;
    /// Redshift connections the server holds at most: UNLOADs, catalog reads and MAX() queries share them (default 0: max_parallel_workers + 4).
    redshift_pool_size: "REDSHIFT_FLIGHT_REDSHIFT_POOL_SIZE", secret = false;
    /// Seconds a request waits for a free Redshift connection before it fails with UNAVAILABLE (default 30).
    redshift_pool_timeout_seconds: "REDSHIFT_FLIGHT_REDSHIFT_POOL_TIMEOUT_SECONDS", secret = false;
    /// Functions Flight SQL queries may call besides the built-in read-only list (comma-separated names).
    flight_sql_functions: "REDSHIFT_FLIGHT_FLIGHT_SQL_FUNCTIONS", secret = false;
    /// Flight SQL queries Redshift estimates at fewer rows run on the connection instead of by UNLOAD (default 100000; 0: always UNLOAD).
    direct_max_rows: "REDSHIFT_FLIGHT_DIRECT_MAX_ROWS", secret = false;
    /// Milliseconds PollFlightInfo waits for a query to finish before it answers with the query's progress (default 1000).
    flight_sql_poll_wait_ms: "REDSHIFT_FLIGHT_FLIGHT_SQL_POLL_WAIT_MS", secret = false;
    /// How the server logs in to Redshift: `password` (redshift_user and redshift_password, the default), `iam` (temporary credentials from redshift_cluster_id or redshift_workgroup) or `secret` (redshift_secret_arn in Secrets Manager).
    redshift_auth: "REDSHIFT_FLIGHT_REDSHIFT_AUTH", secret = false;
    /// Provisioned cluster identifier for `redshift_auth = iam` (GetClusterCredentials).
    redshift_cluster_id: "REDSHIFT_FLIGHT_REDSHIFT_CLUSTER_ID", secret = false;
    /// Redshift Serverless workgroup for `redshift_auth = iam` (GetCredentials).
    redshift_workgroup: "REDSHIFT_FLIGHT_REDSHIFT_WORKGROUP", secret = false;
    /// `true`: GetClusterCredentials creates redshift_user on first login (default false).
    redshift_auto_create: "REDSHIFT_FLIGHT_REDSHIFT_AUTO_CREATE", secret = false;
    /// Comma-separated database groups the IAM user joins for its sessions.
    redshift_db_groups: "REDSHIFT_FLIGHT_REDSHIFT_DB_GROUPS", secret = false;
    /// Lifetime of temporary Redshift credentials, in seconds (900 to 3600, default 900); they are refreshed before they expire.
    redshift_iam_duration_seconds: "REDSHIFT_FLIGHT_REDSHIFT_IAM_DURATION_SECONDS", secret = false;
    /// Secrets Manager secret (ARN or name) holding `{"username": ..., "password": ...}` for `redshift_auth = secret`.
    redshift_secret_arn: "REDSHIFT_FLIGHT_REDSHIFT_SECRET_ARN", secret = false;
    /// IAM role the server assumes (STS AssumeRole) to read and delete staged files.
    s3_role_arn: "REDSHIFT_FLIGHT_S3_ROLE_ARN", secret = false;
    /// External id for assuming s3_role_arn.
    s3_role_external_id: "REDSHIFT_FLIGHT_S3_ROLE_EXTERNAL_ID", secret = true;
    /// Session name for assuming s3_role_arn (default `redshift-flight`).
    s3_role_session_name: "REDSHIFT_FLIGHT_S3_ROLE_SESSION_NAME", secret = false;
    /// KMS key (id, ARN or alias) UNLOAD encrypts staged files with (`KMS_KEY_ID ... ENCRYPTED`).
    unload_kms_key_id: "REDSHIFT_FLIGHT_UNLOAD_KMS_KEY_ID", secret = false;
    /// Region of the bucket when it is not the cluster's (UNLOAD's `REGION`).
    unload_region: "REDSHIFT_FLIGHT_UNLOAD_REGION", secret = false;
    /// Comma-separated Flight URIs (grpc://, grpc+tls://) every endpoint names as its locations, so clients spread DoGets over the replicas themselves (default: none; clients read through the connection they have, e.g. a load balancer).
    advertise_locations: "REDSHIFT_FLIGHT_ADVERTISE_LOCATIONS", secret = false;
    /// `true`: allow listening on a non-loopback address without authentication (a warning is logged).
    insecure: "REDSHIFT_FLIGHT_INSECURE", secret = false, arg(num_args = 0..=1, default_missing_value = "true");
}

impl RawConfig {
    /// Reads a JSON configuration file (the seed's format).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

/// The flag of `key` (without the leading `--`).
pub(super) fn flag_name(key: &str) -> String {
    key.replace('_', "-")
}
