//! Configuration: the seed connector's `configuration.json` (all fifteen keys, string values such
//! as `"true"` and `"4"`) plus redshift-flight's own keys, each of which can also come from the
//! environment (`REDSHIFT_FLIGHT_<KEY>`) and from a CLI flag (`--<key-with-dashes>`).
//!
//! Precedence: flag, then environment, then file. [`RawConfig`] (in `raw.rs`) holds the merged
//! strings; [`Config::try_from_raw`] validates every key (with the parsers of `validate.rs`) and
//! names the one at fault. The result is one typed section per consumer (`sections.rs`): the
//! Redshift pool takes [`RedshiftSettings`], the bucket client [`S3Settings`], and so on.
//!
//! May import: nothing from the crate (every other module may import this one).

mod aws;
mod raw;
mod sections;
mod validate;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use raw::RawConfig;
pub use sections::{
    AssumedRole, AuthSettings, CatalogSettings, FlightSqlSettings, IamLogin, IamRole, IamTarget,
    ListenSettings, PerformanceSettings, RedshiftLogin, RedshiftSettings, S3Settings, SslMode,
    StagingSettings,
};
pub use validate::MIN_SECRET_BYTES;

use validate::{missing, optional, parse_bool, parse_number, parse_seconds, required};

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

/// Validated configuration, one section per part of the server.
#[derive(Debug, Clone)]
pub struct Config {
    /// The cluster, its login and the connection pool.
    pub redshift: RedshiftSettings,
    /// The staging bucket.
    pub s3: S3Settings,
    /// UNLOAD and the lifetime of staged runs.
    pub staging: StagingSettings,
    /// Which tables are served.
    pub catalog: CatalogSettings,
    /// The listeners.
    pub listen: ListenSettings,
    /// Client authentication and signing keys.
    pub auth: AuthSettings,
    /// Concurrency and memory bounds.
    pub performance: PerformanceSettings,
    /// Flight SQL.
    pub flight_sql: FlightSqlSettings,
}

impl Config {
    /// Validates every key, naming the first one at fault.
    pub fn try_from_raw(raw: RawConfig) -> Result<Self, ConfigError> {
        // The keys are checked in the order of the single function this replaced (not section by
        // section), so that a configuration with several faults still reports the same one.
        let port = validate::port(raw.redshift_port)?;
        let iam_role = validate::iam_role(raw.iam_role)?;
        let address = validate::listen_address(raw.listen_address)?;
        let advertise_locations = validate::advertise_locations(raw.advertise_locations)?;
        let endpoint = validate::s3_endpoint(raw.s3_endpoint)?;
        let (access_key_id, secret_access_key) =
            validate::aws_keys(raw.aws_access_key_id, raw.aws_secret_access_key)?;
        let auto_schema_detection =
            parse_bool(raw.auto_schema_detection, "auto_schema_detection", true)?;
        let table_spec_file = optional(raw.table_spec_file).map(PathBuf::from);
        if !auto_schema_detection && table_spec_file.is_none() {
            return Err(missing("table_spec_file"));
        }
        let prefix = validate::s3_prefix(raw.s3_prefix)?;
        let host = required(raw.redshift_host, "redshift_host")?;
        let sslmode = validate::sslmode(raw.redshift_sslmode, &host)?;
        let tls = validate::tls(raw.tls_cert, raw.tls_key)?;
        let tls_client_ca = optional(raw.tls_client_ca).map(PathBuf::from);
        if tls_client_ca.is_some() && tls.is_none() {
            return Err(missing("tls_cert"));
        }
        let ticket_secrets = validate::ticket_secrets(raw.ticket_secret, raw.ticket_secret_file)?;
        let token_ttl = parse_seconds(
            raw.auth_token_ttl_seconds,
            "auth_token_ttl_seconds",
            "a number of seconds from 60 to 604800",
            3600,
            60..=604_800,
        )?;
        let insecure = parse_bool(raw.insecure, "insecure", false)?;
        let database = required(raw.redshift_database, "redshift_database")?;
        let login = aws::redshift_login(aws::LoginKeys {
            auth: raw.redshift_auth,
            user: raw.redshift_user,
            password: raw.redshift_password,
            cluster_id: raw.redshift_cluster_id,
            workgroup: raw.redshift_workgroup,
            auto_create: raw.redshift_auto_create,
            db_groups: raw.redshift_db_groups,
            duration: raw.redshift_iam_duration_seconds,
            secret_arn: raw.redshift_secret_arn,
        })?;
        let schema = required(raw.redshift_schema, "redshift_schema")?;
        let databases = validate::databases(raw.redshift_databases, &database)?;
        let bucket = required(raw.s3_bucket, "s3_bucket")?;
        let region = aws::region("s3_region", raw.s3_region)?;
        let role = aws::s3_role(
            raw.s3_role_arn,
            raw.s3_role_external_id,
            raw.s3_role_session_name,
        )?;
        let unload_kms_key_id = aws::kms_key_id(raw.unload_kms_key_id)?;
        let unload_region = aws::region("unload_region", raw.unload_region)?;
        let enable_complete_resync =
            parse_bool(raw.enable_complete_resync, "enable_complete_resync", false)?;
        let max_parallel_workers = parse_number(
            raw.max_parallel_workers,
            "max_parallel_workers",
            "a whole number from 1 to 256",
            4,
            1..=256,
        )?;
        let catalog_ttl = parse_seconds(
            raw.catalog_ttl_seconds,
            "catalog_ttl_seconds",
            "a number of seconds from 0 to 86400",
            60,
            0..=86_400,
        )?;
        let staging_ttl = parse_seconds(
            raw.staging_ttl_seconds,
            "staging_ttl_seconds",
            "a number of seconds from 1 to 604800",
            3600,
            1..=604_800,
        )?;
        let unload_max_file_size_mb = parse_number(
            raw.unload_max_file_size_mb,
            "unload_max_file_size_mb",
            "a number of MB from 5 to 6200",
            256,
            5..=6200,
        )?;
        let grace = parse_seconds(
            raw.staging_grace_seconds,
            "staging_grace_seconds",
            "a number of seconds from 0 to 86400",
            60,
            0..=86_400,
        )?;
        let sweep_interval = parse_seconds(
            raw.sweep_interval_seconds,
            "sweep_interval_seconds",
            "a number of seconds from 1 to 86400",
            300,
            1..=86_400,
        )?;
        let metrics_address = validate::metrics_address(raw.metrics_address)?;
        let shutdown_grace = parse_seconds(
            raw.shutdown_grace_seconds,
            "shutdown_grace_seconds",
            "a number of seconds from 0 to 3600",
            30,
            0..=3600,
        )?;
        let endpoint_rows = parse_number(
            raw.endpoint_rows,
            "endpoint_rows",
            "a number of rows from 0 to 1000000000000",
            1 << 20,
            0..=1_000_000_000_000,
        )?;
        let snapshot_reuse = validate::snapshot_reuse(raw.snapshot_reuse_seconds)?;
        let share_across_replicas = validate::reuse_scope(raw.snapshot_reuse_scope)?;
        let cluster_lease = parse_seconds(
            raw.cluster_lease_seconds,
            "cluster_lease_seconds",
            "a number of seconds from 2 to 600",
            20,
            2..=600,
        )?;
        let cluster_max_parallel_unloads = parse_number(
            raw.cluster_max_parallel_unloads,
            "cluster_max_parallel_unloads",
            "a number of UNLOADs from 0 (no cluster-wide limit) to 1000",
            0,
            0..=1000,
        )?;
        let stream_memory = validate::stream_memory(raw.stream_memory_mb)?;
        let decode_threads = parse_number(
            raw.decode_threads,
            "decode_threads",
            "a number of threads from 0 to 256",
            0,
            0..=256,
        )?;
        let pool_size = parse_number(
            raw.redshift_pool_size,
            "redshift_pool_size",
            "a number of connections from 0 (max_parallel_workers + 4) to 1024",
            0,
            0..=1024,
        )?;
        let pool_timeout = parse_seconds(
            raw.redshift_pool_timeout_seconds,
            "redshift_pool_timeout_seconds",
            "a number of seconds from 1 to 3600",
            30,
            1..=3600,
        )?;
        let keepalive = parse_seconds(
            raw.keepalive_seconds,
            "keepalive_seconds",
            "a number of seconds from 1 to 3600",
            5,
            1..=3600,
        )?;
        let stream_stall = parse_seconds(
            raw.stream_stall_seconds,
            "stream_stall_seconds",
            "a number of seconds from 1 to 86400",
            120,
            1..=86400,
        )?;
        let max_retries = parse_number(
            raw.s3_max_retries,
            "s3_max_retries",
            "a number from 0 to 20",
            4,
            0..=20,
        )?;
        let extra_functions = validate::function_names(raw.flight_sql_functions)?;
        let direct_max_rows = parse_number(
            raw.direct_max_rows,
            "direct_max_rows",
            "a number of rows from 0 (always UNLOAD) to 100000000",
            100_000,
            0..=100_000_000,
        )?;
        let poll_wait = std::time::Duration::from_millis(parse_number(
            raw.flight_sql_poll_wait_ms,
            "flight_sql_poll_wait_ms",
            "a number of milliseconds from 0 to 60000",
            1000,
            0..=60_000,
        )?);
        let retry_timeout = parse_seconds(
            raw.s3_retry_timeout_seconds,
            "s3_retry_timeout_seconds",
            "a number of seconds from 1 to 3600",
            30,
            1..=3600,
        )?;
        Ok(Self {
            redshift: RedshiftSettings {
                host,
                port,
                database,
                login,
                schema,
                databases,
                sslmode,
                ssl_root_cert: optional(raw.redshift_ssl_root_cert).map(PathBuf::from),
                pool_size,
                pool_timeout,
            },
            s3: S3Settings {
                bucket,
                region,
                prefix,
                endpoint,
                access_key_id,
                secret_access_key,
                role,
                max_retries,
                retry_timeout,
            },
            staging: StagingSettings {
                iam_role,
                unload_max_file_size_mb,
                unload_kms_key_id,
                unload_region,
                ttl: staging_ttl,
                grace,
                sweep_interval,
                endpoint_rows,
                snapshot_reuse,
                share_across_replicas,
                cluster_lease,
                cluster_max_parallel_unloads,
            },
            catalog: CatalogSettings {
                auto_schema_detection,
                table_spec_file,
                ttl: catalog_ttl,
                enable_complete_resync,
            },
            listen: ListenSettings {
                address,
                advertise_locations,
                metrics_address,
                tls,
                tls_client_ca,
                insecure,
                keepalive,
                shutdown_grace,
            },
            auth: AuthSettings {
                tokens: validate::auth_tokens(raw.auth_tokens),
                file: optional(raw.auth_file).map(PathBuf::from),
                token_ttl,
                ticket_secrets,
            },
            performance: PerformanceSettings {
                max_parallel_workers,
                decode_threads,
                stream_memory,
                stream_stall,
            },
            flight_sql: FlightSqlSettings {
                extra_functions,
                direct_max_rows,
                poll_wait,
            },
        })
    }
}
