//! Start-up: builds every part from the configuration, checks that Redshift and the bucket answer,
//! binds the listeners (so callers and tests can read the real ports before serving), then serves
//! until a shutdown signal: the Flight service, the gRPC health service, the sweeper of expired
//! runs and, if configured, the Prometheus `/metrics` endpoint.
//!
//! The wiring: the only module that imports everything (configuration sections to parts, parts
//! to the service); nothing imports it but `main.rs`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use object_store::ObjectStore;
use object_store::path::Path;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tower_http::catch_panic::CatchPanicLayer;
use tower_layer::{Identity, Stack};

use crate::auth::{AuthError, Authenticator};
use crate::aws::{Aws, AwsApi, AwsError, CachedCredentials, DbLogins, S3Credentials};
use crate::catalog::Catalog;
use crate::catalog::spec::{SpecError, TableSpec};
use crate::config::{Config, RedshiftLogin, S3Settings};
use crate::flight::{FlightRoutes, RedshiftFlightService, Service};
use crate::metrics::Metrics;
use crate::panics::PanicToStatus;
use crate::plan::UnloadOptions;
use crate::redshift::{Redshift, RedshiftError, RetrySettings};
use crate::stage::{ClusterOptions, StageSettings, Stager};
use crate::store::{StoreError, build_s3};
use crate::ticket::TicketCodec;
use crate::warehouse::catalog::CachedCatalog;

/// Largest gRPC message accepted from clients (descriptors and tickets are small).
const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Calls served at once on one client connection; more wait (HTTP/2 flow control).
const MAX_CONCURRENT_CALLS_PER_CONNECTION: usize = 64;
/// HTTP/2 keep-alive pings, so idle connections (a long UNLOAD behind GetFlightInfo) stay open
/// through proxies.
const HTTP2_KEEPALIVE: Duration = Duration::from_secs(20);
/// How long the sweep at shutdown may take.
const FINAL_SWEEP: Duration = Duration::from_secs(10);

/// The gRPC server every listener uses: limits per connection, HTTP/2 keep-alive, and the layer
/// that turns a panicking call into `INTERNAL` for that call alone ([`crate::panics`]). Public so
/// tests can serve their own services through the very same stack.
pub fn grpc_server() -> Server<Stack<CatchPanicLayer<PanicToStatus>, Identity>> {
    Server::builder()
        .concurrency_limit_per_connection(MAX_CONCURRENT_CALLS_PER_CONNECTION)
        .max_concurrent_streams(Some(MAX_CONCURRENT_CALLS_PER_CONNECTION as u32))
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE))
        .layer(crate::panics::layer())
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Redshift did not answer.
    #[error("start-up check failed: {0}")]
    Redshift(#[from] RedshiftError),
    /// The bucket did not answer.
    #[error("start-up check failed: cannot list s3://{bucket}/{prefix}/: {source}")]
    Bucket {
        /// Bucket.
        bucket: String,
        /// Staging prefix.
        prefix: String,
        /// S3's error, kept whole.
        source: Box<object_store::Error>,
    },
    /// The S3 client could not be built.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The AWS configuration (region, credential chain) is unusable.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The table spec is unusable.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A listen address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// Address.
        address: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The decode runtime could not be started.
    #[error("cannot start the decode threads: {0}")]
    Decoder(std::io::Error),
    /// The gRPC server failed.
    #[error("server error: {0}")]
    Serve(#[from] tonic::transport::Error),
    /// The Redshift TLS settings are unusable.
    #[error(transparent)]
    RedshiftTls(#[from] crate::redshift::TlsSetupError),
    /// The access file is unusable.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A TLS file could not be read.
    #[error("cannot read {key} file {path}: {source}")]
    TlsFile {
        /// The configuration key.
        key: &'static str,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// No authentication on a listener others can reach.
    #[error(
        "refusing to listen on {address} without authentication: configure auth_tokens or auth_file, listen on a loopback address, or pass --insecure"
    )]
    Insecure {
        /// The listen address.
        address: SocketAddr,
    },
}

/// The parts built from a configuration, before anything listens.
#[derive(Debug)]
pub struct Parts {
    /// Redshift connections.
    pub redshift: Arc<Redshift>,
    /// Discovery.
    pub catalog: Arc<dyn Catalog>,
    /// Staging.
    pub stager: Arc<Stager>,
    /// The staging bucket.
    pub store: Arc<dyn ObjectStore>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

/// The options of every UNLOAD, from the staging section.
pub fn unload_options(config: &Config) -> UnloadOptions {
    UnloadOptions {
        iam_role: config.staging.iam_role.clone(),
        max_file_size_mb: config.staging.unload_max_file_size_mb,
        kms_key_id: config.staging.unload_kms_key_id.clone(),
        region: config.staging.unload_region.clone(),
    }
}

/// The AWS side of the parts: the credentials S3 is read with (`None`: the static keys of the
/// configuration, given to object_store directly), the bucket's region, and the API client of
/// `redshift_auth` iam and secret. Loads the SDK configuration only when something needs it.
struct AwsParts {
    s3_credentials: Option<Arc<CachedCredentials>>,
    s3_region: String,
    api: Option<Arc<AwsApi>>,
}

impl AwsParts {
    async fn build(config: &Config) -> Result<Self, AwsError> {
        let s3 = &config.s3;
        let static_keys = match (&s3.access_key_id, &s3.secret_access_key) {
            (Some(key), Some(secret)) => Some(aws_credential_types::Credentials::new(
                key,
                secret.expose_secret(),
                None,
                None,
                "configuration",
            )),
            _ => None,
        };
        let needs_api = !matches!(config.redshift.login, RedshiftLogin::Password { .. });
        if let Some(region) = &s3.region
            && static_keys.is_some()
            && s3.role.is_none()
            && !needs_api
        {
            // Static keys, a region and a stored password: nothing of the SDK is needed.
            return Ok(Self {
                s3_credentials: None,
                s3_region: region.clone(),
                api: None,
            });
        }
        let aws = Aws::load(s3.region.as_deref()).await;
        let s3_region = s3
            .region
            .clone()
            .or_else(|| aws.region().map(str::to_string))
            .ok_or(AwsError::NoRegion)?;
        // The server's own identity: the static keys if configured, else the chain.
        let own = aws.credentials(static_keys.clone(), None).await?;
        let s3_credentials = match &s3.role {
            Some(role) => Some(aws.credentials(static_keys.clone(), Some(role)).await?),
            None if static_keys.is_some() => None,
            None => Some(Arc::clone(&own)),
        };
        let api = match needs_api {
            true => Some(Arc::new(AwsApi::new(&aws, own)?)),
            false => None,
        };
        Ok(Self {
            s3_credentials,
            s3_region,
            api,
        })
    }
}

impl Parts {
    /// Builds every part from its section of `config`; opens no connection (the AWS SDK's
    /// configuration is loaded if the configuration needs it, which may read profile files).
    pub async fn build(config: &Config) -> Result<Self, StartError> {
        let aws = AwsParts::build(config).await?;
        let logins = DbLogins::new(
            &config.redshift.login,
            &config.redshift.database,
            aws.api.clone(),
        )?;
        let redshift = Arc::new(Redshift::new(
            &config.redshift,
            config.performance.max_parallel_workers,
            Arc::new(logins),
        )?);
        let spec = if config.catalog.auto_schema_detection {
            None
        } else {
            config
                .catalog
                .table_spec_file
                .as_deref()
                .map(TableSpec::from_file)
                .transpose()?
        };
        let metrics = Metrics::new();
        let catalog: Arc<dyn Catalog> = Arc::new(
            CachedCatalog::new(
                Arc::clone(&redshift) as _,
                config.redshift.schema.clone(),
                config.catalog.ttl,
                spec,
            )
            .with_databases(config.redshift.databases.clone())
            .with_metrics(Arc::clone(&metrics)),
        );
        let store = build_s3(
            &config.s3,
            &aws.s3_region,
            aws.s3_credentials
                .map(|credentials| Arc::new(S3Credentials(credentials)) as _),
        )?;
        let stager = Arc::new(Stager::new(
            Arc::clone(&redshift) as _,
            Arc::clone(&store),
            StageSettings {
                bucket: config.s3.bucket.clone(),
                prefix: config.s3.prefix.clone(),
                unload: unload_options(config),
                ttl: config.staging.ttl,
                grace: config.staging.grace,
                max_parallel: config.performance.max_parallel_workers,
                retry: RetrySettings::default(),
                endpoint_rows: config.staging.endpoint_rows,
                // Joining readers register within milliseconds of the run being ready; the margin
                // covers them when a first reader finishes at once.
                share_window: config
                    .staging
                    .snapshot_reuse
                    .map_or(Duration::ZERO, |window| window + Duration::from_secs(1)),
                cluster: ClusterOptions {
                    lease: config.staging.cluster_lease,
                    max_parallel_unloads: config.staging.cluster_max_parallel_unloads,
                },
            },
            Arc::clone(&metrics),
        ));
        Ok(Self {
            redshift,
            catalog,
            stager,
            store,
            metrics,
        })
    }

    /// Checks that Redshift answers a query and that the bucket can be listed under the prefix.
    pub async fn check_reachable(&self, s3: &S3Settings) -> Result<(), StartError> {
        self.redshift
            .query(&crate::sql::Sql::from("SELECT 1"))
            .await?;
        let prefix = Path::from(s3.prefix.as_str());
        self.store
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(|e| StartError::Bucket {
                bucket: s3.bucket.clone(),
                prefix: s3.prefix.clone(),
                source: Box::new(e),
            })?;
        Ok(())
    }
}

/// A bound, ready-to-serve Flight server.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    tls: Option<tonic::transport::ServerTlsConfig>,
    service: Arc<Service>,
    sweep_interval: Duration,
    shutdown_grace: Duration,
}

impl Application {
    /// Builds the service, checks Redshift and the bucket, and binds the listen addresses.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let parts = Parts::build(&config).await?;
        parts.check_reachable(&config.s3).await?;
        let auth_settings = &config.auth;
        let listen = &config.listen;
        let keys = if auth_settings.ticket_secrets.is_empty() {
            tracing::warn!(
                "no ticket_secret configured: using a random key, so tickets and issued tokens are only valid on this process (replicas cannot share them)"
            );
            crate::keys::Keyring::random()
        } else {
            let secrets: Vec<&[u8]> = auth_settings
                .ticket_secrets
                .iter()
                .map(|s| s.expose_secret().as_bytes())
                .collect();
            crate::keys::Keyring::new(&secrets)
        };
        let keys = Arc::new(keys);
        tracing::info!(key_ids = ?keys.key_ids(), "signing keys (the first signs)");
        let tickets = TicketCodec::with_keys(Arc::clone(&keys));
        let auth = Authenticator::new(
            auth_settings.tokens.clone(),
            auth_settings.file.as_deref(),
            keys,
            auth_settings.token_ttl,
        )?;
        if !auth.enabled() {
            if !listen.address.ip().is_loopback() && !listen.insecure {
                return Err(StartError::Insecure {
                    address: listen.address,
                });
            }
            tracing::warn!(
                address = %listen.address,
                "no authentication configured (auth_tokens, auth_file): every client that reaches this address is accepted"
            );
        }
        let tls = match &listen.tls {
            None => None,
            Some((cert, key)) => {
                let read = |key: &'static str, path: &std::path::Path| {
                    std::fs::read(path).map_err(|source| StartError::TlsFile {
                        key,
                        path: path.display().to_string(),
                        source,
                    })
                };
                let mut tls = tonic::transport::ServerTlsConfig::new().identity(
                    tonic::transport::Identity::from_pem(
                        read("tls_cert", cert)?,
                        read("tls_key", key)?,
                    ),
                );
                if let Some(ca) = &listen.tls_client_ca {
                    tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(read(
                        "tls_client_ca",
                        ca,
                    )?));
                }
                Some(tls)
            }
        };
        let decoder = crate::decode::Decoder::new(config.performance.decode_threads)
            .map_err(StartError::Decoder)?;
        let service = Arc::new(
            Service::builder(
                parts.catalog,
                parts.stager,
                parts.store,
                Arc::new(auth),
                tickets,
                decoder,
            )
            .with_plan_settings(crate::plan::PlanSettings {
                complete_resync: config.catalog.enable_complete_resync,
            })
            .with_metrics(parts.metrics)
            .with_keepalive(listen.keepalive)
            .with_snapshot_reuse(
                config.staging.snapshot_reuse,
                config.staging.share_across_replicas,
            )
            .with_stream_memory(config.performance.stream_memory)
            .with_stream_stall(config.performance.stream_stall)
            .with_database(config.redshift.database.clone())
            .with_direct_max_rows(config.flight_sql.direct_max_rows)
            .with_poll_wait(config.flight_sql.poll_wait)
            .with_locations(&config.listen.advertise_locations)
            .with_query_policy(
                crate::sql::query::QueryPolicy::new()
                    .allow_functions(config.flight_sql.extra_functions.clone()),
            )
            .build(),
        );
        let bind = |address: SocketAddr| async move {
            TcpListener::bind(address)
                .await
                .map_err(|source| StartError::Bind { address, source })
        };
        let listener = bind(listen.address).await?;
        let metrics_listener = match listen.metrics_address {
            Some(address) => Some(bind(address).await?),
            None => None,
        };
        Ok(Self {
            listener,
            metrics_listener,
            tls,
            service,
            sweep_interval: config.staging.sweep_interval,
            shutdown_grace: listen.shutdown_grace,
        })
    }

    /// The Flight address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The metrics address actually bound, if metrics are served.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes; then stops accepting, lets in-flight calls finish for
    /// up to `shutdown_grace_seconds`, and cancels what is left.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), StartError> {
        let sweeper = self.service.stager().spawn_sweeper(self.sweep_interval);
        let metrics_task = self.metrics_listener.map(|listener| {
            let service = Arc::clone(&self.service);
            let app = axum::Router::new().route(
                "/metrics",
                axum::routing::get(move || {
                    let service = Arc::clone(&service);
                    async move {
                        (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            service.encode_metrics(),
                        )
                    }
                }),
            );
            tokio::spawn(async move {
                if let Err(error) = axum::serve(listener, app).await {
                    tracing::warn!(%error, "metrics endpoint failed");
                }
            })
        });
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<FlightServiceServer<RedshiftFlightService>>()
            .await;
        // DoGet's answers go out without copies (`FlightRoutes`); the other RPCs through tonic.
        let flight = FlightRoutes::new(
            RedshiftFlightService::new(Arc::clone(&self.service)),
            MAX_REQUEST_BYTES,
        );

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let mut builder = grpc_server();
        if let Some(tls) = self.tls {
            builder = builder.tls_config(tls)?;
        }
        // The builder's tcp_nodelay applies to listeners it binds itself; ours needs it on the
        // incoming stream, or small responses wait out delayed ACKs (~40 ms per unary call).
        let incoming = TcpIncoming::from(self.listener).with_nodelay(Some(true));
        let serve = builder
            .add_service(health_service)
            .add_service(flight)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop_rx.await;
            });
        tokio::pin!(serve);
        let result = tokio::select! {
            result = &mut serve => result,
            () = shutdown => {
                tracing::info!(grace = ?self.shutdown_grace, "shutting down: no new calls; waiting for in-flight streams");
                health_reporter.set_not_serving::<FlightServiceServer<RedshiftFlightService>>().await;
                let _ = stop_tx.send(());
                match tokio::time::timeout(self.shutdown_grace, &mut serve).await {
                    Ok(result) => result,
                    Err(_) => {
                        tracing::warn!("in-flight streams did not finish within the grace period; cancelling them");
                        Ok(())
                    }
                }
            }
        };
        sweeper.abort();
        let stager = self.service.stager();
        stager.flush_pending().await;
        // One last sweep, so that runs whose life ended since the previous one (an expired
        // ticket that was never read) go now rather than with the next replica's sweep. Bounded:
        // a dead S3 must not hold the exit.
        match tokio::time::timeout(FINAL_SWEEP, stager.sweep(std::time::SystemTime::now())).await {
            Ok(Ok(0)) => {}
            Ok(Ok(runs)) => tracing::info!(runs, "final sweep deleted expired runs"),
            Ok(Err(error)) => {
                tracing::warn!(error = %crate::store::error_chain(&error), "final sweep failed")
            }
            Err(_) => {
                tracing::warn!(after = ?FINAL_SWEEP, "final sweep did not finish; left to the next sweeper")
            }
        }
        if let Some(task) = metrics_task {
            task.abort();
        }
        result.map_err(StartError::from)
    }
}
