//! The validated configuration, one section per consumer: each part of the server takes only the
//! section it needs ([`RedshiftSettings`] for the connection pool, [`S3Settings`] for the bucket
//! client, and so on). Every field is documented with the configuration key it comes from.
//! Secrets are [`SecretString`]s, so `Debug` of any section never shows them.
//!
//! May import: nothing from the crate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

/// The IAM role clause of UNLOAD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IamRole {
    /// `IAM_ROLE default`: the role associated with the cluster as its default.
    Default,
    /// One ARN or a comma-separated chain of ARNs.
    Arn(String),
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

/// The Redshift cluster, its login and the connection pool.
#[derive(Debug, Clone)]
pub struct RedshiftSettings {
    /// Host (`redshift_host`).
    pub host: String,
    /// Port (`redshift_port`).
    pub port: u16,
    /// Database (`redshift_database`).
    pub database: String,
    /// How the server logs in (`redshift_auth` and the keys of its mode).
    pub login: RedshiftLogin,
    /// Default schema, served when a descriptor names none (`redshift_schema`).
    pub schema: String,
    /// Consumer (datashare) databases also served, by three-part names (`redshift_databases`).
    pub databases: Vec<String>,
    /// TLS to Redshift (`redshift_sslmode`; default verify-full, prefer on loopback).
    pub sslmode: SslMode,
    /// Extra CA for verify-full (`redshift_ssl_root_cert`).
    pub ssl_root_cert: Option<PathBuf>,
    /// Connections at most (`redshift_pool_size`; 0: the pool picks `max_parallel_workers + 4`).
    pub pool_size: usize,
    /// Longest wait for a free connection (`redshift_pool_timeout_seconds`).
    pub pool_timeout: Duration,
}

/// How the server logs in to Redshift (`redshift_auth`).
#[derive(Debug, Clone)]
pub enum RedshiftLogin {
    /// `password` (the default): a stored user and password.
    Password {
        /// `redshift_user`.
        user: String,
        /// `redshift_password`.
        password: SecretString,
    },
    /// `iam`: temporary database credentials from Redshift's API, refreshed before they expire.
    Iam(IamLogin),
    /// `secret`: user and password read from Secrets Manager, re-read when a login is refused.
    Secret {
        /// `redshift_secret_arn`.
        arn: String,
    },
}

impl RedshiftLogin {
    /// The user name the configuration names, for messages (none for a secret, or an IAM login
    /// whose user Redshift derives from the caller's identity).
    pub fn configured_user(&self) -> Option<&str> {
        match self {
            Self::Password { user, .. } => Some(user),
            Self::Iam(iam) => iam.db_user.as_deref(),
            Self::Secret { .. } => None,
        }
    }
}

/// Where `redshift_auth = iam` asks for temporary credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IamTarget {
    /// A provisioned cluster (`redshift_cluster_id`): `GetClusterCredentials`.
    Cluster(String),
    /// A Redshift Serverless workgroup (`redshift_workgroup`): `GetCredentials`.
    Workgroup(String),
}

/// `redshift_auth = iam`.
#[derive(Debug, Clone)]
pub struct IamLogin {
    /// The cluster or workgroup.
    pub target: IamTarget,
    /// `redshift_user`: the database user (`DbUser`); `None` on a cluster asks
    /// `GetClusterCredentialsWithIAM`, which derives the user from the server's IAM identity.
    pub db_user: Option<String>,
    /// Create the user on first login (`redshift_auto_create`).
    pub auto_create: bool,
    /// Groups the user joins for the session (`redshift_db_groups`).
    pub db_groups: Vec<String>,
    /// Lifetime asked for (`redshift_iam_duration_seconds`, 900 to 3600).
    pub duration: Duration,
}

/// A role the server assumes (STS AssumeRole) to read and delete staged files (`s3_role_arn`).
#[derive(Debug, Clone)]
pub struct AssumedRole {
    /// `s3_role_arn`.
    pub arn: String,
    /// `s3_role_external_id` (a shared secret with the role's owner: redacted in `Debug`).
    pub external_id: Option<SecretString>,
    /// `s3_role_session_name` (default `redshift-flight`).
    pub session_name: String,
}

/// The staging bucket and how the server's S3 client reaches it.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// Bucket (`s3_bucket`).
    pub bucket: String,
    /// The bucket's region (`s3_region`); `None`: the AWS profile's or environment's region.
    pub region: Option<String>,
    /// Prefix for staged runs, without leading or trailing `/` (`s3_prefix`).
    pub prefix: String,
    /// S3-compatible endpoint URL, path-style addressing (`s3_endpoint`).
    pub endpoint: Option<String>,
    /// Static AWS access key (`aws_access_key_id`; given together with the secret key).
    pub access_key_id: Option<String>,
    /// Static AWS secret key (`aws_secret_access_key`).
    pub secret_access_key: Option<SecretString>,
    /// A role to assume for S3 (`s3_role_arn`).
    pub role: Option<AssumedRole>,
    /// Retries of a failed request (`s3_max_retries`).
    pub max_retries: usize,
    /// Time within which retries must succeed (`s3_retry_timeout_seconds`).
    pub retry_timeout: Duration,
}

/// How tables are UNLOADed and how long staged runs live.
#[derive(Debug, Clone)]
pub struct StagingSettings {
    /// Role UNLOAD uses (`iam_role`).
    pub iam_role: IamRole,
    /// UNLOAD MAXFILESIZE in MB (`unload_max_file_size_mb`).
    pub unload_max_file_size_mb: u32,
    /// UNLOAD `KMS_KEY_ID '...' ENCRYPTED` (`unload_kms_key_id`).
    pub unload_kms_key_id: Option<String>,
    /// UNLOAD `REGION '...'`: the bucket's region when it is not the cluster's (`unload_region`).
    pub unload_region: Option<String>,
    /// Staged run lifetime (`staging_ttl_seconds`).
    pub ttl: Duration,
    /// How long a fully streamed run is kept (`staging_grace_seconds`).
    pub grace: Duration,
    /// Time between sweeps for expired runs (`sweep_interval_seconds`).
    pub sweep_interval: Duration,
    /// Rows above which a file is split into several endpoints, 0: never (`endpoint_rows`).
    pub endpoint_rows: u64,
    /// How long after staging identical requests still share a run, `None`: never shared
    /// (`snapshot_reuse_seconds`).
    pub snapshot_reuse: Option<Duration>,
    /// Identical requests reaching different replicas share a run too (`snapshot_reuse_scope`
    /// `cluster`, the default; `replica`: within one process).
    pub share_across_replicas: bool,
    /// How long a replica's claims in S3 hold unless renewed (`cluster_lease_seconds`).
    pub cluster_lease: Duration,
    /// UNLOADs at once over all replicas, 0: no cluster-wide limit
    /// (`cluster_max_parallel_unloads`).
    pub cluster_max_parallel_unloads: usize,
}

/// Which tables are served and how they are discovered.
#[derive(Debug, Clone)]
pub struct CatalogSettings {
    /// Serve every table of the schema, else those of the table spec (`auto_schema_detection`).
    pub auto_schema_detection: bool,
    /// Table-spec file, present when `auto_schema_detection` is off (`table_spec_file`).
    pub table_spec_file: Option<PathBuf>,
    /// Lifetime of cached table metadata (`catalog_ttl_seconds`).
    pub ttl: Duration,
    /// Serve every request as a full snapshot (`enable_complete_resync`).
    pub enable_complete_resync: bool,
}

/// The listeners: Flight (with its TLS), metrics, keep-alive and shutdown.
#[derive(Debug, Clone)]
pub struct ListenSettings {
    /// Flight listen address (`listen_address`).
    pub address: SocketAddr,
    /// URIs every endpoint names as its locations, so clients spread DoGets over replicas
    /// themselves; empty: endpoints name none (`advertise_locations`).
    pub advertise_locations: Vec<String>,
    /// Prometheus `/metrics` address, `None`: disabled (`metrics_address`).
    pub metrics_address: Option<SocketAddr>,
    /// Server TLS: (certificate chain, key) PEM files (`tls_cert`, `tls_key`).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Client CA for mutual TLS, only with `tls` (`tls_client_ca`).
    pub tls_client_ca: Option<PathBuf>,
    /// Allow an unauthenticated non-loopback listener (`insecure`).
    pub insecure: bool,
    /// DoGet keep-alive interval (`keepalive_seconds`).
    pub keepalive: Duration,
    /// How long in-flight streams may finish after a shutdown signal (`shutdown_grace_seconds`).
    pub shutdown_grace: Duration,
}

/// Authentication of clients and the keys that sign tickets and issued tokens.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Accepted bearer tokens (`auth_tokens`).
    pub tokens: Vec<SecretString>,
    /// Access file of users and tokens (`auth_file`).
    pub file: Option<PathBuf>,
    /// Lifetime of tokens issued by the Handshake (`auth_token_ttl_seconds`).
    pub token_ttl: Duration,
    /// Signing secrets for tickets and issued tokens: the first signs, all verify; empty: a
    /// random key per process (`ticket_secret` or `ticket_secret_file`).
    pub ticket_secrets: Vec<SecretString>,
}

/// Concurrency and memory bounds.
#[derive(Debug, Clone)]
pub struct PerformanceSettings {
    /// UNLOADs at once, server-wide (`max_parallel_workers`).
    pub max_parallel_workers: usize,
    /// Parquet decoding threads, 0: one per CPU (`decode_threads`).
    pub decode_threads: usize,
    /// Bytes DoGet streams may hold at once, `None`: unbounded (`stream_memory_mb`).
    pub stream_memory: Option<u64>,
    /// How long a DoGet client may read nothing while data waits (`stream_stall_seconds`).
    pub stream_stall: Duration,
}

/// Flight SQL.
#[derive(Debug, Clone, Default)]
pub struct FlightSqlSettings {
    /// Functions queries may call besides the built-in read-only list (`flight_sql_functions`).
    pub extra_functions: Vec<String>,
    /// A query Redshift estimates (EXPLAIN) at fewer rows is answered on the connection, not by
    /// UNLOAD; 0: always UNLOAD (`direct_max_rows`).
    pub direct_max_rows: u64,
    /// How long PollFlightInfo waits for a query before answering with its progress
    /// (`flight_sql_poll_wait_ms`).
    pub poll_wait: std::time::Duration,
}
