//! Start-up: builds every part from the configuration, checks that Redshift and the bucket answer,
//! binds the listener (so callers and tests can read the real port before serving), then serves
//! until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use object_store::ObjectStore;
use object_store::path::Path;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::auth::BearerAuth;
use crate::catalog::spec::{SpecError, TableSpec};
use crate::catalog::{Catalog, RedshiftCatalog};
use crate::config::Config;
use crate::flight::{RedshiftFlightService, Service};
use crate::redshift::{Redshift, RedshiftError};
use crate::stage::{StageSettings, Stager};
use crate::store::{StoreError, build_s3, error_chain};
use crate::ticket::TicketCodec;
use secrecy::ExposeSecret;

/// Largest gRPC message accepted from clients (descriptors and tickets are small).
const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Redshift did not answer.
    #[error("start-up check failed: {0}")]
    Redshift(#[from] RedshiftError),
    /// The bucket did not answer.
    #[error("start-up check failed: cannot list s3://{bucket}/{prefix}/: {message}")]
    Bucket {
        /// Bucket.
        bucket: String,
        /// Staging prefix.
        prefix: String,
        /// Cause.
        message: String,
    },
    /// The S3 client could not be built.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The table spec is unusable.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The listen address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// Address.
        address: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("server error: {0}")]
    Serve(#[from] tonic::transport::Error),
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
}

impl Parts {
    /// Builds every part; opens no connection.
    pub fn build(config: &Config) -> Result<Self, StartError> {
        let redshift = Arc::new(Redshift::new(config));
        let spec = if config.auto_schema_detection {
            None
        } else {
            config
                .table_spec_file
                .as_deref()
                .map(TableSpec::from_file)
                .transpose()?
        };
        let catalog: Arc<dyn Catalog> = Arc::new(RedshiftCatalog::new(
            Arc::clone(&redshift),
            config.redshift_schema.clone(),
            config.catalog_ttl,
            spec,
        ));
        let store = build_s3(config)?;
        let stager = Arc::new(Stager::new(
            Arc::clone(&redshift) as _,
            Arc::clone(&store),
            StageSettings {
                bucket: config.s3_bucket.clone(),
                prefix: config.s3_prefix.clone(),
                iam_role: config.iam_role.clone(),
                max_file_size_mb: config.unload_max_file_size_mb,
                ttl: config.staging_ttl,
                max_parallel: config.max_parallel_workers,
            },
        ));
        Ok(Self {
            redshift,
            catalog,
            stager,
            store,
        })
    }

    /// Checks that Redshift answers a query and that the bucket can be listed.
    pub async fn check_reachable(&self, config: &Config) -> Result<(), StartError> {
        self.redshift
            .query(&crate::plan::sql::Sql::new("SELECT 1".to_string()))
            .await?;
        let prefix = Path::from(config.s3_prefix.as_str());
        self.store
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(|e| StartError::Bucket {
                bucket: config.s3_bucket.clone(),
                prefix: config.s3_prefix.clone(),
                message: error_chain(&e),
            })?;
        Ok(())
    }
}

/// A bound, ready-to-serve Flight server.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    service: RedshiftFlightService,
}

impl Application {
    /// Builds the service, checks Redshift and the bucket, and binds the listen address.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let parts = Parts::build(&config)?;
        parts.check_reachable(&config).await?;
        let tickets = match &config.ticket_secret {
            Some(secret) => TicketCodec::new(secret.expose_secret().as_bytes().to_vec()),
            None => {
                tracing::warn!(
                    "no ticket_secret configured: using a random key, so tickets are only valid on this process (replicas cannot share them)"
                );
                TicketCodec::random()
            }
        };
        let auth = if config.auth_tokens.is_empty() {
            tracing::warn!("no auth_tokens configured: every client is accepted");
            None
        } else {
            Some(Arc::new(BearerAuth::new(config.auth_tokens.clone())))
        };
        let service = Arc::new(Service {
            catalog: parts.catalog,
            stager: parts.stager,
            store: parts.store,
            tickets: Arc::new(tickets),
            auth,
            settings: crate::plan::PlanSettings {
                complete_resync: config.enable_complete_resync,
            },
        });
        let listener = TcpListener::bind(config.listen_address)
            .await
            .map_err(|source| StartError::Bind {
                address: config.listen_address,
                source,
            })?;
        Ok(Self {
            listener,
            service: RedshiftFlightService::new(service),
        })
    }

    /// The address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then lets in-flight calls finish.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), StartError> {
        let service = FlightServiceServer::new(self.service)
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(usize::MAX);
        Server::builder()
            .tcp_nodelay(true)
            .add_service(service)
            .serve_with_incoming_shutdown(TcpIncoming::from(self.listener), shutdown)
            .await?;
        Ok(())
    }
}
