//! Configuration: the seed connector's `configuration.json` (all fifteen keys, string values such
//! as `"true"` and `"4"`) plus redshift-flight's own keys, each of which can also come from the
//! environment (`REDSHIFT_FLIGHT_<KEY>`) and from a CLI flag (`--<key-with-dashes>`).
//!
//! Precedence: flag, then environment, then file. [`RawConfig`] holds the merged strings;
//! [`Config::try_from_raw`] validates every key and names the one at fault.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

/// A configuration key that is missing or malformed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration file is not the expected JSON object.
    #[error("configuration file {path} is not valid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What serde said (never contains values of secret keys: serde reports positions).
        message: String,
    },
    /// A required key has no value.
    #[error("{key} is required (config file key \"{key}\", env {env}, or flag --{flag})")]
    Missing {
        /// The key.
        key: &'static str,
        /// Its environment variable.
        env: String,
        /// Its flag.
        flag: String,
    },
    /// A key has a value of the wrong form.
    #[error("{key} must be {expected}, got '{got}'")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What it must be.
        expected: &'static str,
        /// What it was (redacted for secret keys).
        got: String,
    },
}

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

            fn env_name(key: &str) -> String {
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
    /// MB of Parquet row groups all DoGet streams may hold at once; further streams wait their turn (default 512; 0: unbounded).
    stream_memory_mb: "REDSHIFT_FLIGHT_STREAM_MEMORY_MB", secret = false;
    /// Threads decoding Parquet for DoGet, apart from the gRPC runtime (default 0: one per CPU).
    decode_threads: "REDSHIFT_FLIGHT_DECODE_THREADS", secret = false;
    /// Redshift connections the server holds at most: UNLOADs, catalog reads and MAX() queries share them (default 0: max_parallel_workers + 4).
    redshift_pool_size: "REDSHIFT_FLIGHT_REDSHIFT_POOL_SIZE", secret = false;
    /// Seconds a request waits for a free Redshift connection before it fails with UNAVAILABLE (default 30).
    redshift_pool_timeout_seconds: "REDSHIFT_FLIGHT_REDSHIFT_POOL_TIMEOUT_SECONDS", secret = false;
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

/// The IAM role clause of UNLOAD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IamRole {
    /// `IAM_ROLE default`: the role associated with the cluster as its default.
    Default,
    /// One ARN or a comma-separated chain of ARNs.
    Arn(String),
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Redshift host.
    pub redshift_host: String,
    /// Redshift port.
    pub redshift_port: u16,
    /// Redshift database.
    pub redshift_database: String,
    /// Redshift user.
    pub redshift_user: String,
    /// Redshift password.
    pub redshift_password: SecretString,
    /// Default schema.
    pub redshift_schema: String,
    /// Staging bucket.
    pub s3_bucket: String,
    /// Staging bucket's region.
    pub s3_region: String,
    /// Prefix for staged runs, without leading or trailing `/`.
    pub s3_prefix: String,
    /// Role UNLOAD uses.
    pub iam_role: IamRole,
    /// Static AWS access key, if given.
    pub aws_access_key_id: Option<String>,
    /// Static AWS secret key, if given.
    pub aws_secret_access_key: Option<SecretString>,
    /// Serve every table of the schema (else the table spec).
    pub auto_schema_detection: bool,
    /// Force full snapshots.
    pub enable_complete_resync: bool,
    /// UNLOADs at once.
    pub max_parallel_workers: usize,
    /// S3-compatible endpoint.
    pub s3_endpoint: Option<String>,
    /// Listen address.
    pub listen_address: SocketAddr,
    /// Accepted bearer tokens.
    pub auth_tokens: Vec<SecretString>,
    /// Table-spec file.
    pub table_spec_file: Option<PathBuf>,
    /// Catalog cache lifetime.
    pub catalog_ttl: Duration,
    /// Staged run lifetime.
    pub staging_ttl: Duration,
    /// UNLOAD MAXFILESIZE in MB.
    pub unload_max_file_size_mb: u32,
    /// Signing secrets for tickets and issued tokens: the first signs, all verify (empty: a
    /// random key per process).
    pub ticket_secrets: Vec<SecretString>,
    /// Grace period of consumed runs.
    pub staging_grace: Duration,
    /// Sweeper interval.
    pub sweep_interval: Duration,
    /// Metrics endpoint.
    pub metrics_address: Option<SocketAddr>,
    /// Shutdown bound.
    pub shutdown_grace: Duration,
    /// DoGet keep-alive interval.
    pub keepalive: Duration,
    /// S3 retries.
    pub s3_max_retries: usize,
    /// S3 retry budget.
    pub s3_retry_timeout: Duration,
    /// Access file.
    pub auth_file: Option<PathBuf>,
    /// Lifetime of issued tokens.
    pub auth_token_ttl: Duration,
    /// Server TLS: (certificate chain, key) PEM files.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Client CA for mutual TLS.
    pub tls_client_ca: Option<PathBuf>,
    /// TLS to Redshift.
    pub redshift_sslmode: SslMode,
    /// Extra CA for verify-full.
    pub redshift_ssl_root_cert: Option<PathBuf>,
    /// Rows above which a file is split into several endpoints (0: never).
    pub endpoint_rows: u64,
    /// How long after staging identical requests still share a run (`None`: never shared).
    pub snapshot_reuse: Option<Duration>,
    /// Row-group bytes DoGet streams may hold at once (`None`: unbounded).
    pub stream_memory: Option<u64>,
    /// Parquet decoding threads (0: one per CPU).
    pub decode_threads: usize,
    /// Redshift connections at most.
    pub redshift_pool_size: usize,
    /// Longest wait for a free Redshift connection.
    pub redshift_pool_timeout: Duration,
    /// Allow an unauthenticated non-loopback listener.
    pub insecure: bool,
}

/// How the connection to Redshift uses TLS (libpq's meanings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never.
    Disable,
    /// If the server offers it, without verifying its certificate.
    Prefer,
    /// Always, without verifying the certificate (encryption only).
    Require,
    /// Always, verifying the certificate chain and the host name.
    VerifyFull,
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn flag_name(key: &str) -> String {
    key.replace('_', "-")
}

fn required(value: Option<String>, key: &'static str) -> Result<String, ConfigError> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(ConfigError::Missing {
            key,
            env: RawConfig::env_name(key),
            flag: flag_name(key),
        }),
    }
}

fn optional(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

fn parse_bool(
    value: Option<String>,
    key: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match optional(value) {
        None => Ok(default),
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::Invalid {
                key,
                expected: "true or false",
                got: v,
            }),
        },
    }
}

fn parse_number<T: std::str::FromStr + PartialOrd + fmt::Display + Copy>(
    value: Option<String>,
    key: &'static str,
    expected: &'static str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError> {
    match optional(value) {
        None => Ok(default),
        Some(v) => match v.trim().parse::<T>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(ConfigError::Invalid {
                key,
                expected,
                got: v,
            }),
        },
    }
}

fn is_valid_role_arn(arn: &str) -> bool {
    // arn:aws:iam::<12 digits>:role/<name> (partitions aws, aws-cn, aws-us-gov).
    let Some(rest) = ["arn:aws:iam::", "arn:aws-cn:iam::", "arn:aws-us-gov:iam::"]
        .iter()
        .find_map(|p| arn.strip_prefix(p))
    else {
        return false;
    };
    let Some((account, role)) = rest.split_once(":role/") else {
        return false;
    };
    account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !role.is_empty()
        && role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b))
}

/// Shortest signing secret accepted, in bytes (HMAC-SHA256 keys of fewer bytes are guessable).
pub const MIN_SECRET_BYTES: usize = 32;

/// The signing secrets of `ticket_secret` (comma-separated) or `ticket_secret_file` (one per
/// line), the signing one first; each must have [`MIN_SECRET_BYTES`]. Errors never show a secret.
fn ticket_secrets(
    inline: Option<String>,
    file: Option<String>,
) -> Result<Vec<SecretString>, ConfigError> {
    let (key, secrets, got) = match (optional(inline), optional(file)) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Invalid {
                key: "ticket_secret_file",
                expected: "left out when ticket_secret is given",
                got: "<set>".into(),
            });
        }
        (Some(text), None) => {
            let secrets: Vec<String> = text
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            ("ticket_secret", secrets, String::new())
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: PathBuf::from(&path),
                source,
            })?;
            let secrets: Vec<String> = text
                .lines()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            ("ticket_secret_file", secrets, path)
        }
        (None, None) => return Ok(Vec::new()),
    };
    let redacted = |what: String| {
        if got.is_empty() {
            what
        } else {
            format!("{got}: {what}")
        }
    };
    if secrets.is_empty() {
        return Err(ConfigError::Invalid {
            key,
            expected: "at least one secret of at least 32 bytes",
            got: redacted("<empty>".into()),
        });
    }
    if let Some(i) = secrets.iter().position(|s| s.len() < MIN_SECRET_BYTES) {
        return Err(ConfigError::Invalid {
            key,
            expected: "secrets of at least 32 bytes each (e.g. openssl rand -hex 32)",
            got: redacted(format!(
                "secret {} of {} is {} bytes long",
                i + 1,
                secrets.len(),
                secrets[i].len()
            )),
        });
    }
    Ok(secrets.into_iter().map(SecretString::from).collect())
}

impl Config {
    /// Validates every key, naming the first one at fault.
    pub fn try_from_raw(raw: RawConfig) -> Result<Self, ConfigError> {
        let redshift_port_text = required(raw.redshift_port, "redshift_port")?;
        let redshift_port = match redshift_port_text.trim().parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                return Err(ConfigError::Invalid {
                    key: "redshift_port",
                    expected: "a port number",
                    got: redshift_port_text,
                });
            }
        };
        let iam_role_text = required(raw.iam_role, "iam_role")?;
        let iam_role = if iam_role_text.trim().eq_ignore_ascii_case("default") {
            IamRole::Default
        } else if iam_role_text
            .split(',')
            .all(|arn| is_valid_role_arn(arn.trim()))
        {
            IamRole::Arn(
                iam_role_text
                    .split(',')
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(","),
            )
        } else {
            return Err(ConfigError::Invalid {
                key: "iam_role",
                expected: "'default' or an IAM role ARN like arn:aws:iam::123456789012:role/name (comma-separated to chain)",
                got: iam_role_text,
            });
        };
        let listen_text =
            optional(raw.listen_address).unwrap_or_else(|| "127.0.0.1:8815".to_string());
        let listen_address = listen_text
            .trim()
            .parse()
            .map_err(|_| ConfigError::Invalid {
                key: "listen_address",
                expected: "an address like 127.0.0.1:8815",
                got: listen_text.clone(),
            })?;
        let s3_endpoint = optional(raw.s3_endpoint);
        if let Some(endpoint) = &s3_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(ConfigError::Invalid {
                key: "s3_endpoint",
                expected: "an http:// or https:// URL",
                got: endpoint.clone(),
            });
        }
        let aws_access_key_id = optional(raw.aws_access_key_id);
        let aws_secret_access_key = optional(raw.aws_secret_access_key).map(SecretString::from);
        if aws_access_key_id.is_some() != aws_secret_access_key.is_some() {
            return Err(ConfigError::Invalid {
                key: "aws_secret_access_key",
                expected: "given together with aws_access_key_id (or both left out to use the AWS credential chain)",
                got: if aws_secret_access_key.is_some() {
                    "<set>"
                } else {
                    "<missing>"
                }
                .to_string(),
            });
        }
        let auto_schema_detection =
            parse_bool(raw.auto_schema_detection, "auto_schema_detection", true)?;
        let table_spec_file = optional(raw.table_spec_file).map(PathBuf::from);
        if !auto_schema_detection && table_spec_file.is_none() {
            return Err(ConfigError::Missing {
                key: "table_spec_file",
                env: RawConfig::env_name("table_spec_file"),
                flag: flag_name("table_spec_file"),
            });
        }
        let s3_prefix = optional(raw.s3_prefix)
            .unwrap_or_else(|| "redshift-flight".to_string())
            .trim_matches('/')
            .to_string();
        if s3_prefix.is_empty() || s3_prefix.contains("//") || s3_prefix.contains('\0') {
            return Err(ConfigError::Invalid {
                key: "s3_prefix",
                expected: "a non-empty key prefix such as redshift-flight/staging",
                got: s3_prefix,
            });
        }
        let redshift_host = required(raw.redshift_host, "redshift_host")?;
        let redshift_sslmode = match optional(raw.redshift_sslmode) {
            None if is_loopback_host(&redshift_host) => SslMode::Prefer,
            // Redshift's certificates chain to public roots: verify them unless told otherwise.
            None => SslMode::VerifyFull,
            Some(mode) => match mode.trim().to_ascii_lowercase().as_str() {
                "disable" => SslMode::Disable,
                "prefer" => SslMode::Prefer,
                "require" => SslMode::Require,
                "verify-full" | "verify_full" => SslMode::VerifyFull,
                _ => {
                    return Err(ConfigError::Invalid {
                        key: "redshift_sslmode",
                        expected: "disable, prefer, require or verify-full",
                        got: mode,
                    });
                }
            },
        };
        let tls = match (optional(raw.tls_cert), optional(raw.tls_key)) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            (cert, _) => {
                return Err(ConfigError::Missing {
                    key: if cert.is_some() {
                        "tls_key"
                    } else {
                        "tls_cert"
                    },
                    env: RawConfig::env_name(if cert.is_some() {
                        "tls_key"
                    } else {
                        "tls_cert"
                    }),
                    flag: flag_name(if cert.is_some() {
                        "tls_key"
                    } else {
                        "tls_cert"
                    }),
                });
            }
        };
        let tls_client_ca = optional(raw.tls_client_ca).map(PathBuf::from);
        if tls_client_ca.is_some() && tls.is_none() {
            return Err(ConfigError::Missing {
                key: "tls_cert",
                env: RawConfig::env_name("tls_cert"),
                flag: flag_name("tls_cert"),
            });
        }
        let ticket_secrets = ticket_secrets(raw.ticket_secret, raw.ticket_secret_file)?;
        Ok(Self {
            auth_file: optional(raw.auth_file).map(PathBuf::from),
            auth_token_ttl: Duration::from_secs(parse_number(
                raw.auth_token_ttl_seconds,
                "auth_token_ttl_seconds",
                "a number of seconds from 60 to 604800",
                3600,
                60..=604_800,
            )?),
            tls,
            tls_client_ca,
            redshift_sslmode,
            redshift_ssl_root_cert: optional(raw.redshift_ssl_root_cert).map(PathBuf::from),
            insecure: parse_bool(raw.insecure, "insecure", false)?,
            redshift_host,
            redshift_port,
            redshift_database: required(raw.redshift_database, "redshift_database")?,
            redshift_user: required(raw.redshift_user, "redshift_user")?,
            redshift_password: SecretString::from(required(
                raw.redshift_password,
                "redshift_password",
            )?),
            redshift_schema: required(raw.redshift_schema, "redshift_schema")?,
            s3_bucket: required(raw.s3_bucket, "s3_bucket")?,
            s3_region: required(raw.s3_region, "s3_region")?,
            s3_prefix,
            iam_role,
            aws_access_key_id,
            aws_secret_access_key,
            auto_schema_detection,
            enable_complete_resync: parse_bool(
                raw.enable_complete_resync,
                "enable_complete_resync",
                false,
            )?,
            max_parallel_workers: parse_number(
                raw.max_parallel_workers,
                "max_parallel_workers",
                "a whole number from 1 to 256",
                4,
                1..=256,
            )?,
            s3_endpoint,
            listen_address,
            auth_tokens: optional(raw.auth_tokens)
                .map(|t| {
                    t.split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(|t| SecretString::from(t.to_string()))
                        .collect()
                })
                .unwrap_or_default(),
            table_spec_file,
            catalog_ttl: Duration::from_secs(parse_number(
                raw.catalog_ttl_seconds,
                "catalog_ttl_seconds",
                "a number of seconds from 0 to 86400",
                60,
                0..=86_400,
            )?),
            staging_ttl: Duration::from_secs(parse_number(
                raw.staging_ttl_seconds,
                "staging_ttl_seconds",
                "a number of seconds from 1 to 604800",
                3600,
                1..=604_800,
            )?),
            unload_max_file_size_mb: parse_number(
                raw.unload_max_file_size_mb,
                "unload_max_file_size_mb",
                "a number of MB from 5 to 6200",
                256,
                5..=6200,
            )?,
            ticket_secrets,
            staging_grace: Duration::from_secs(parse_number(
                raw.staging_grace_seconds,
                "staging_grace_seconds",
                "a number of seconds from 0 to 86400",
                60,
                0..=86_400,
            )?),
            sweep_interval: Duration::from_secs(parse_number(
                raw.sweep_interval_seconds,
                "sweep_interval_seconds",
                "a number of seconds from 1 to 86400",
                300,
                1..=86_400,
            )?),
            metrics_address: match optional(raw.metrics_address) {
                None => None,
                Some(text) => Some(text.trim().parse().map_err(|_| ConfigError::Invalid {
                    key: "metrics_address",
                    expected: "an address like 127.0.0.1:9464",
                    got: text.clone(),
                })?),
            },
            shutdown_grace: Duration::from_secs(parse_number(
                raw.shutdown_grace_seconds,
                "shutdown_grace_seconds",
                "a number of seconds from 0 to 3600",
                30,
                0..=3600,
            )?),
            endpoint_rows: parse_number(
                raw.endpoint_rows,
                "endpoint_rows",
                "a number of rows from 0 to 1000000000000",
                1 << 20,
                0..=1_000_000_000_000,
            )?,
            snapshot_reuse: match optional(raw.snapshot_reuse_seconds) {
                Some(off) if off.trim().eq_ignore_ascii_case("off") => None,
                other => Some(Duration::from_secs(parse_number(
                    other,
                    "snapshot_reuse_seconds",
                    "a number of seconds from 0 to 3600, or off",
                    0,
                    0..=3600,
                )?)),
            },
            stream_memory: match parse_number(
                raw.stream_memory_mb,
                "stream_memory_mb",
                "a number of MB from 0 to 1048576",
                512u64,
                0..=1_048_576,
            )? {
                0 => None,
                mb => Some(mb * 1024 * 1024),
            },
            decode_threads: parse_number(
                raw.decode_threads,
                "decode_threads",
                "a number of threads from 0 to 256",
                0,
                0..=256,
            )?,
            redshift_pool_size: parse_number(
                raw.redshift_pool_size,
                "redshift_pool_size",
                "a number of connections from 0 (max_parallel_workers + 4) to 1024",
                0,
                0..=1024,
            )?,
            redshift_pool_timeout: Duration::from_secs(parse_number(
                raw.redshift_pool_timeout_seconds,
                "redshift_pool_timeout_seconds",
                "a number of seconds from 1 to 3600",
                30,
                1..=3600,
            )?),
            keepalive: Duration::from_secs(parse_number(
                raw.keepalive_seconds,
                "keepalive_seconds",
                "a number of seconds from 1 to 3600",
                5,
                1..=3600,
            )?),
            s3_max_retries: parse_number(
                raw.s3_max_retries,
                "s3_max_retries",
                "a number from 0 to 20",
                4,
                0..=20,
            )?,
            s3_retry_timeout: Duration::from_secs(parse_number(
                raw.s3_retry_timeout_seconds,
                "s3_retry_timeout_seconds",
                "a number of seconds from 1 to 3600",
                30,
                1..=3600,
            )?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed_json() -> serde_json::Value {
        serde_json::json!({
            "redshift_host": "example.redshift.amazonaws.com",
            "redshift_port": "5439",
            "redshift_database": "dev",
            "redshift_user": "awsuser",
            "redshift_password": "hunter2-password",
            "redshift_schema": "public",
            "s3_bucket": "b",
            "s3_region": "us-east-1",
            "s3_prefix": "fivetran-unload",
            "iam_role": "arn:aws:iam::123456789012:role/unload",
            "aws_access_key_id": "AKIAEXAMPLE",
            "aws_secret_access_key": "secret-key-value",
            "auto_schema_detection": "true",
            "enable_complete_resync": "false",
            "max_parallel_workers": "4"
        })
    }

    fn parse(value: serde_json::Value) -> Result<Config, ConfigError> {
        let raw: RawConfig = serde_json::from_value(value).unwrap();
        Config::try_from_raw(raw)
    }

    #[test]
    fn seed_configuration_works_unchanged() {
        let config = parse(seed_json()).unwrap();
        assert_eq!(config.redshift_port, 5439);
        assert_eq!(config.max_parallel_workers, 4);
        assert!(config.auto_schema_detection);
        assert!(!config.enable_complete_resync);
        assert_eq!(config.s3_prefix, "fivetran-unload");
        assert_eq!(config.listen_address, "127.0.0.1:8815".parse().unwrap());
        assert_eq!(
            config.redshift_sslmode,
            SslMode::VerifyFull,
            "certificates are verified for non-loopback hosts"
        );
        assert!(!config.insecure);
        assert_eq!(config.redshift_pool_size, 0, "max_parallel_workers + 4");
        assert_eq!(config.redshift_pool_timeout, Duration::from_secs(30));
        assert_eq!(RawConfig::KEYS.len(), 45);
    }

    #[test]
    fn errors_name_the_key() {
        let mut json = seed_json();
        json["redshift_port"] = "abc".into();
        assert_eq!(
            parse(json).unwrap_err().to_string(),
            "redshift_port must be a port number, got 'abc'"
        );
        let mut json = seed_json();
        json["iam_role"] = "arn:aws:iam::12:role/x".into();
        assert!(
            parse(json)
                .unwrap_err()
                .to_string()
                .starts_with("iam_role must be")
        );
        let mut json = seed_json();
        json.as_object_mut().unwrap().remove("s3_bucket");
        assert!(
            parse(json)
                .unwrap_err()
                .to_string()
                .starts_with("s3_bucket is required")
        );
        let mut json = seed_json();
        json["max_parallel_workers"] = "0".into();
        assert!(parse(json).is_err());
        let mut json = seed_json();
        json["redshift_sslmode"] = "sometimes".into();
        assert!(
            parse(json)
                .unwrap_err()
                .to_string()
                .starts_with("redshift_sslmode must be")
        );
        let mut json = seed_json();
        json["tls_cert"] = "cert.pem".into();
        assert!(
            parse(json)
                .unwrap_err()
                .to_string()
                .starts_with("tls_key is required")
        );
    }

    #[test]
    fn performance_keys_have_defaults_and_bounds() {
        let config = parse(seed_json()).unwrap();
        assert_eq!(config.endpoint_rows, 1 << 20);
        assert_eq!(config.snapshot_reuse, Some(Duration::ZERO));
        assert_eq!(config.decode_threads, 0);
        assert_eq!(config.stream_memory, Some(512 << 20));
        for (value, want) in [
            ("off", None),
            ("OFF", None),
            ("0", Some(Duration::ZERO)),
            ("30", Some(Duration::from_secs(30))),
        ] {
            let mut json = seed_json();
            json["snapshot_reuse_seconds"] = value.into();
            assert_eq!(parse(json).unwrap().snapshot_reuse, want, "{value}");
        }
        for (key, bad) in [
            ("snapshot_reuse_seconds", "-1"),
            ("snapshot_reuse_seconds", "never"),
            ("endpoint_rows", "many"),
            ("decode_threads", "1000"),
            ("stream_memory_mb", "-5"),
        ] {
            let mut json = seed_json();
            json[key] = bad.into();
            let error = parse(json).unwrap_err().to_string();
            assert!(error.starts_with(key), "{error}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let mut json = seed_json();
        json["redshfit_host"] = "typo".into();
        assert!(serde_json::from_value::<RawConfig>(json).is_err());
    }

    #[test]
    fn ticket_secrets_are_long_lists_in_every_form() {
        use secrecy::ExposeSecret;
        let a = "a".repeat(32);
        let b = "b".repeat(40);
        let secrets = |config: Config| -> Vec<String> {
            config
                .ticket_secrets
                .iter()
                .map(|s| s.expose_secret().to_string())
                .collect()
        };
        let mut json = seed_json();
        json["ticket_secret"] = format!(" {b} , {a} ").into();
        assert_eq!(secrets(parse(json).unwrap()), [b.clone(), a.clone()]);
        let mut json = seed_json();
        json["ticket_secret"] = serde_json::json!([b, a]);
        assert_eq!(secrets(parse(json).unwrap()), [b.clone(), a.clone()]);
        let mut json = seed_json();
        json["ticket_secret"] = serde_json::json!([b, "x,y"]);
        assert!(serde_json::from_value::<RawConfig>(json).is_err());
        assert!(secrets(parse(seed_json()).unwrap()).is_empty());

        let file = std::env::temp_dir().join(format!("rsf-secrets-{:x}", rand::random::<u64>()));
        std::fs::write(&file, format!("{b}\n\n{a}\n")).unwrap();
        let mut json = seed_json();
        json["ticket_secret_file"] = file.to_string_lossy().into_owned().into();
        assert_eq!(secrets(parse(json).unwrap()), [b.clone(), a.clone()]);

        // Short secrets are refused in every form, without showing them.
        let short = "short-secret-0123456789abcdef"; // 29 bytes
        for (key, value) in [
            ("ticket_secret", serde_json::json!(short)),
            ("ticket_secret", serde_json::json!(format!("{a},{short}"))),
            ("ticket_secret", serde_json::json!([a, short])),
            ("ticket_secret", serde_json::json!(",")),
        ] {
            let mut json = seed_json();
            json[key] = value.clone();
            let error = parse(json).unwrap_err().to_string();
            assert!(error.starts_with("ticket_secret must be"), "{error}");
            assert!(!error.contains(short) && !error.contains(&a), "{error}");
        }
        std::fs::write(&file, format!("{a}\n{short}\n")).unwrap();
        let mut json = seed_json();
        json["ticket_secret_file"] = file.to_string_lossy().into_owned().into();
        let error = parse(json).unwrap_err().to_string();
        assert!(error.starts_with("ticket_secret_file must be"), "{error}");
        assert!(error.contains("secret 2 of 2 is 29 bytes"), "{error}");
        assert!(!error.contains(short), "{error}");
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn sslmode_defaults_to_verify_full_except_on_loopback() {
        for (host, mode, want) in [
            ("example.redshift.amazonaws.com", None, SslMode::VerifyFull),
            ("10.0.0.5", None, SslMode::VerifyFull),
            ("localhost", None, SslMode::Prefer),
            ("127.0.0.1", None, SslMode::Prefer),
            ("::1", None, SslMode::Prefer),
            (
                "example.redshift.amazonaws.com",
                Some("require"),
                SslMode::Require,
            ),
            (
                "example.redshift.amazonaws.com",
                Some("disable"),
                SslMode::Disable,
            ),
            ("localhost", Some("verify-full"), SslMode::VerifyFull),
        ] {
            let mut json = seed_json();
            json["redshift_host"] = host.into();
            if let Some(mode) = mode {
                json["redshift_sslmode"] = mode.into();
            }
            assert_eq!(
                parse(json).unwrap().redshift_sslmode,
                want,
                "{host} {mode:?}"
            );
        }
    }

    #[test]
    fn default_role_and_numbers_as_json_numbers() {
        let mut json = seed_json();
        json["iam_role"] = "default".into();
        json["redshift_port"] = 5439.into();
        json["auto_schema_detection"] = true.into();
        let config = parse(json).unwrap();
        assert_eq!(config.iam_role, IamRole::Default);
    }

    #[test]
    fn overlay_prefers_top() {
        let file = RawConfig {
            redshift_host: Some("file".into()),
            ..Default::default()
        };
        let flags = RawConfig {
            redshift_host: Some("flag".into()),
            ..Default::default()
        };
        assert_eq!(file.overlay(flags).redshift_host.as_deref(), Some("flag"));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let raw: RawConfig = serde_json::from_value(seed_json()).unwrap();
        let text = format!("{raw:?}");
        assert!(!text.contains("hunter2-password"));
        assert!(!text.contains("secret-key-value"));
        let config = Config::try_from_raw(raw).unwrap();
        let text = format!("{config:?}");
        assert!(!text.contains("hunter2-password"));
        assert!(!text.contains("secret-key-value"));
    }
}
