//! The `redshift-emulator` binary: parses flags/environment, starts the emulator and prints
//! `redshift-emulator listening on <addr>` once it accepts connections (preceded, with
//! `--aws-api-listen`, by `redshift-emulator AWS API listening on http://<addr>`).

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use redshift_emulator::{EmulatorConfig, FaultSettings};

/// UNLOAD allocates a String per fetched value on two threads; mimalloc keeps that cheap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A Redshift emulator: PostgreSQL wire protocol in front of PostgreSQL, with UNLOAD to S3.
#[derive(Debug, Parser)]
#[command(name = "redshift-emulator", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "EMULATOR_LISTEN", default_value = "127.0.0.1:5439")]
    listen: String,
    /// The backend PostgreSQL, e.g. postgres://postgres@127.0.0.1:55432/dev
    #[arg(long, env = "EMULATOR_PG_URL", hide_env_values = true)]
    pg_url: String,
    /// The user clients log in as.
    #[arg(long, env = "EMULATOR_USER", default_value = "awsuser")]
    user: String,
    /// That user's password.
    #[arg(long, env = "EMULATOR_PASSWORD", hide_env_values = true)]
    password: String,
    /// The database clients connect to.
    #[arg(long, env = "EMULATOR_DATABASE", default_value = "dev")]
    database: String,
    /// S3 endpoint such as http://127.0.0.1:59000 (path-style, HTTP allowed); AWS if absent.
    /// Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
    #[arg(long, env = "EMULATOR_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// Default S3 region.
    #[arg(long, env = "EMULATOR_S3_REGION", default_value = "us-east-1")]
    s3_region: String,
    /// Number of slices PARALLEL ON spreads rows over.
    #[arg(long, env = "EMULATOR_SLICES", default_value_t = 4)]
    slices: usize,
    /// Flush a Parquet row group every this many rows (0 = by ROWGROUPSIZE).
    #[arg(long, env = "EMULATOR_ROW_GROUP_ROWS", default_value_t = 0)]
    row_group_rows: usize,
    /// Fault: sleep this long before each UNLOAD.
    #[arg(long, env = "EMULATOR_UNLOAD_DELAY_MS", default_value_t = 0)]
    unload_delay_ms: u64,
    /// Fault: sleep this long after each FETCH an UNLOAD writes (a slow, progressive UNLOAD).
    #[arg(long, env = "EMULATOR_FETCH_DELAY_MS", default_value_t = 0)]
    fetch_delay_ms: u64,
    /// Rows per FETCH from the UNLOAD's cursor (also the unit PARALLEL ON deals to slices).
    #[arg(long, env = "EMULATOR_FETCH_ROWS", default_value_t = 1000)]
    fetch_rows: usize,
    /// Fault: fail each UNLOAD after writing this many data files.
    #[arg(long, env = "EMULATOR_FAIL_AFTER_FILES")]
    fail_after_files: Option<u64>,
    /// Fault: drop the client connection when an UNLOAD starts.
    #[arg(long, env = "EMULATOR_DROP_CONNECTION_ON_UNLOAD")]
    drop_connection_on_unload: bool,
    /// Fault: write the data files but no manifest, and report success.
    #[arg(long, env = "EMULATOR_SKIP_MANIFEST")]
    skip_manifest: bool,
    /// Fault: delete the manifest right after writing it, and report success.
    #[arg(long, env = "EMULATOR_DELETE_MANIFEST")]
    delete_manifest: bool,
    /// Write TIMESTAMP / TIMESTAMPTZ columns as Parquet INT96 instead of INT64 microseconds.
    #[arg(long, env = "EMULATOR_INT96_TIMESTAMPS")]
    int96_timestamps: bool,
    /// Serve the AWS API double (Redshift GetClusterCredentials[WithIAM], Serverless
    /// GetCredentials) over HTTP on this address (port 0 picks a free port).
    #[arg(long, env = "EMULATOR_AWS_API_LISTEN")]
    aws_api_listen: Option<String>,
    /// The cluster identifier the Redshift API knows.
    #[arg(long, env = "EMULATOR_CLUSTER_ID", default_value = "testbed")]
    cluster_id: String,
    /// The Redshift Serverless workgroup the API knows.
    #[arg(long, env = "EMULATOR_WORKGROUP", default_value = "testbed-wg")]
    workgroup: String,
    /// A custom domain name the APIs accept instead of the cluster id or workgroup.
    #[arg(long, env = "EMULATOR_CUSTOM_DOMAIN_NAME")]
    custom_domain_name: Option<String>,
    /// The cluster's region: API requests must be signed for it; UNLOAD without REGION
    /// assumes its bucket is there.
    #[arg(long, env = "EMULATOR_REGION", default_value = "us-east-1")]
    region: String,
    /// The region of every bucket (default: --s3-region); an UNLOAD whose region differs fails
    /// like Redshift's cross-region UNLOAD.
    #[arg(long, env = "EMULATOR_BUCKET_REGION")]
    bucket_region: Option<String>,
    /// Temporary credentials live this many seconds, whatever DurationSeconds asked.
    #[arg(long, env = "EMULATOR_IAM_CREDENTIAL_SECONDS")]
    iam_credential_seconds: Option<u64>,
    /// Close client sessions idle this many seconds (Redshift's session timeout).
    #[arg(long, env = "EMULATOR_IDLE_SESSION_SECONDS")]
    idle_session_seconds: Option<u64>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = EmulatorConfig::new(args.pg_url, args.password)
        .with_listen(args.listen)
        .with_user(args.user)
        .with_database(args.database)
        .with_s3_region(args.s3_region)
        .with_slices(args.slices)
        .with_row_group_rows(args.row_group_rows)
        .with_fetch_rows(args.fetch_rows)
        .with_faults(FaultSettings {
            unload_delay_ms: args.unload_delay_ms,
            fetch_delay_ms: args.fetch_delay_ms,
            fail_after_files: args.fail_after_files,
            drop_connection_on_unload: args.drop_connection_on_unload,
            skip_manifest: args.skip_manifest,
            delete_manifest: args.delete_manifest,
            int96_timestamps: args.int96_timestamps,
            iam_credential_seconds: args.iam_credential_seconds,
            idle_session_seconds: args.idle_session_seconds,
        })
        .with_cluster_id(args.cluster_id)
        .with_workgroup(args.workgroup)
        .with_region(args.region);
    let config = match args.aws_api_listen {
        Some(listen) => config.with_aws_api_listen(listen),
        None => config,
    };
    let config = match args.custom_domain_name {
        Some(name) => config.with_custom_domain_name(name),
        None => config,
    };
    let config = match args.bucket_region {
        Some(region) => config.with_bucket_region(region),
        None => config,
    };
    let config = match args.s3_endpoint {
        Some(endpoint) => config.with_s3_endpoint(endpoint),
        None => config,
    };
    let emulator = match redshift_emulator::start(config).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("redshift-emulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    if let Some(api) = emulator.aws_api_addr()
        && writeln!(
            stdout,
            "redshift-emulator AWS API listening on http://{api}"
        )
        .is_err()
    {
        eprintln!("redshift-emulator: cannot write to stdout");
    }
    if writeln!(
        stdout,
        "redshift-emulator listening on {}",
        emulator.local_addr()
    )
    .and_then(|()| stdout.flush())
    .is_err()
    {
        eprintln!("redshift-emulator: cannot write to stdout");
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => emulator.shutdown().await,
        _ = terminate() => emulator.shutdown().await,
    }
    ExitCode::SUCCESS
}

#[cfg(unix)]
async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn terminate() {
    std::future::pending().await
}
