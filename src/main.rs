//! The `redshift-flight` command: `serve`, `tables`, `plan`, `check`, `hash-password`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use redshift_flight::catalog::TableRef;
use redshift_flight::config::{Config, RawConfig};
use redshift_flight::plan::{FlightRequest, Plan, PlanSettings, split_table_name};
use redshift_flight::server::{Application, Parts};
use redshift_flight::stage::new_run_id;
use redshift_flight::store::error_chain;

/// Apache Arrow Flight server for Amazon Redshift tables (UNLOAD to Parquet on S3, streamed back).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file: the seed connector's configuration.json plus redshift-flight's keys.
    #[arg(long, global = true, env = "REDSHIFT_FLIGHT_CONFIG")]
    config: Option<PathBuf>,

    #[command(flatten)]
    overrides: RawConfig,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Flight server.
    Serve,
    /// List the tables the server would serve.
    Tables {
        /// Schema to list (default: redshift_schema).
        #[arg(long)]
        schema: Option<String>,
    },
    /// Print the UNLOAD the server would run for a table, without running it.
    Plan {
        /// `table` or `schema.table`.
        table: String,
    },
    /// Read a password from standard input and print its hash for the access file (`auth_file`).
    HashPassword,
    /// Try each credential and permission the server needs (Redshift login, SELECT 1, a tiny
    /// UNLOAD into the prefix, S3 read and delete of it) and print what works and what does not,
    /// with the fix. Exits non-zero if anything fails.
    Check,
}

fn load_config(cli: &Cli) -> Result<Config, String> {
    let file = match &cli.config {
        Some(path) => RawConfig::from_file(path).map_err(|e| error_chain(&e))?,
        None => RawConfig::default(),
    };
    Config::try_from_raw(file.overlay(cli.overrides.clone())).map_err(|e| error_chain(&e))
}

async fn run(cli: Cli) -> Result<(), String> {
    if let Command::HashPassword = cli.command {
        let mut password = String::new();
        std::io::stdin()
            .read_line(&mut password)
            .map_err(|e| error_chain(&e))?;
        let password = password.trim_end_matches(['\r', '\n']);
        if password.is_empty() {
            return Err("hash-password: no password on standard input".into());
        }
        println!("{}", redshift_flight::auth::hash_password(password)?);
        return Ok(());
    }
    let config = load_config(&cli)?;
    match cli.command {
        Command::Serve => {
            let app = Application::build(config)
                .await
                .map_err(|e| error_chain(&e))?;
            let addr = app.local_addr().map_err(|e| error_chain(&e))?;
            tracing::info!(%addr, "redshift-flight listening");
            println!("redshift-flight listening on {addr}");
            app.run_until(shutdown_signal())
                .await
                .map_err(|e| error_chain(&e))
        }
        Command::Tables { schema } => {
            let parts = Parts::build(&config).await.map_err(|e| error_chain(&e))?;
            let schema = schema.unwrap_or_else(|| config.redshift.schema.clone());
            let tables = parts
                .catalog
                .list_tables(&schema)
                .await
                .map_err(|e| error_chain(&e))?;
            for table in tables {
                let estimate = table
                    .row_estimate
                    .map_or("-".to_string(), |n| n.to_string());
                println!(
                    "{}\t{} columns\t{} rows (estimate)\tprimary key {:?}",
                    table.table,
                    table.columns.len(),
                    estimate,
                    table.primary_key
                );
            }
            Ok(())
        }
        Command::HashPassword => Ok(()),
        Command::Check => {
            let report = redshift_flight::check::run(&config).await;
            print!("{}", report.render());
            if report.passed() {
                println!("all checks passed");
                Ok(())
            } else {
                Err("some checks failed (see above)".into())
            }
        }
        Command::Plan { table } => {
            let parts = Parts::build(&config).await.map_err(|e| error_chain(&e))?;
            let (schema, name) = split_table_name(&table).map_err(|e| error_chain(&e))?;
            let schema = schema.unwrap_or_else(|| config.redshift.schema.clone());
            let info = parts
                .catalog
                .table(&schema, &name)
                .await
                .map_err(|e| error_chain(&e))?
                .ok_or_else(|| format!("table {} not found", TableRef::new(schema, name)))?;
            let request = FlightRequest {
                schema: None,
                table: info.table.table.clone(),
                columns: None,
                mode: redshift_flight::plan::Mode::Full,
                cursor: None,
                replication_key: None,
                lookback: None,
                dictionary: false,
                geometry: redshift_flight::plan::GeometryEncoding::Wkb,
                filter: None,
            };
            let plan = Plan::try_new(
                info,
                &request,
                PlanSettings {
                    complete_resync: true,
                },
            )
            .map_err(|e| error_chain(&e))?;
            let prefix = format!(
                "{}/{}/",
                config.s3.prefix,
                new_run_id(std::time::SystemTime::now())
            );
            let sql = parts
                .stager
                .unload_sql(&plan, &prefix)
                .map_err(|e| error_chain(&e))?;
            println!("{sql};");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

/// glibc's allocator, tuned so that the process holds about what the memory budget counts
/// (`stream_memory_mb`): left alone, it raises its mmap threshold to 32 MB as buffers are freed,
/// after which freed row groups and batches stay in up to 8 arenas per core instead of going
/// back to the system (16 DoGet streams: 491 MB resident with these defaults, 345 MB tuned;
/// `bench/run --skip-throughput ...`, bench/results/memory.md). Two arenas; buffers of 4 MiB and
/// more (row groups' column chunks) mapped and unmapped on their own; the heap trimmed above
/// 4 MiB free. When `GLIBC_TUNABLES` sets any `glibc.malloc` tunable, the operator's settings
/// are all there is.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune_allocator() {
    const MIB4: libc::c_int = 4 << 20;
    if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.")) {
        return;
    }
    for (option, value) in [
        (libc::M_ARENA_MAX, 2),
        (libc::M_MMAP_THRESHOLD, MIB4),
        (libc::M_TRIM_THRESHOLD, MIB4),
    ] {
        // SAFETY: mallopt only sets allocator parameters (under the allocator's own lock); it
        // is called first thing in `main`, before any other thread exists.
        unsafe { libc::mallopt(option, value) };
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() -> ExitCode {
    tune_allocator();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(serve_main()),
        Err(error) => {
            eprintln!("redshift-flight: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve_main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("REDSHIFT_FLIGHT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: log files, journald and container logs get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("redshift-flight: {message}");
            ExitCode::FAILURE
        }
    }
}
