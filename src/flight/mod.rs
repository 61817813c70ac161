//! The Flight service. The tonic `impl FlightService` is thin: each RPC checks credentials, opens a
//! span and calls a plain async function in its own file; the logic sits behind the [`Catalog`],
//! [`Authenticate`], object-store and (inside the [`Stager`]) warehouse seams, which
//! [`Service::builder`] takes as trait objects, so every RPC can be tested with fakes.
//!
//! Imports: everything below it (catalog, plan, stage, store, ticket, auth, normalize, decode);
//! nothing imports it but `crate::server`. Errors become statuses in one place, [`error`].

mod actions;
mod do_get;
pub mod error;
mod get_flight_info;
mod get_schema;
mod list_flights;
mod read_columns;
mod route;
mod snapshots;
mod sql;
mod wire;

use std::sync::Arc;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo,
    HandshakeRequest, HandshakeResponse, Location, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt, stream};
use object_store::ObjectStore;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use std::time::{Duration, Instant};

use crate::auth::{Authenticate, Principal};
use crate::catalog::{Catalog, TableInfo};
use crate::decode::Decoder;
use crate::metrics::Metrics;
use crate::plan::PlanSettings;
use crate::sql::query::QueryPolicy;
use crate::stage::Stager;
use crate::stage::columns::ColumnsCache;
use crate::store::MemoryBudget;
use crate::ticket::TicketCodec;
pub use error::ServiceError;
pub use route::FlightRoutes;
pub use snapshots::{SingleFlight, Snapshot, SnapshotKey, Snapshots};

/// Everything the RPCs share. Built with [`Service::builder`]; its collaborators are trait
/// objects (catalog, authentication, the object store, and the warehouse behind the stager), so
/// tests and other front ends can swap them. The fields are private to the Flight layer.
#[derive(Debug)]
pub struct Service {
    catalog: Arc<dyn Catalog>,
    stager: Arc<Stager>,
    store: Arc<dyn ObjectStore>,
    tickets: Arc<TicketCodec>,
    auth: Arc<dyn Authenticate>,
    settings: PlanSettings,
    metrics: Arc<Metrics>,
    keepalive: Duration,
    snapshots: snapshots::Snapshots,
    /// Identical requests on different replicas share a run too (`snapshot_reuse_scope`).
    share_across_replicas: bool,
    decoder: Decoder,
    stream_memory: Option<MemoryBudget>,
    /// How long a DoGet client may read nothing while data waits for it.
    stream_stall: Duration,
    columns: ColumnsCache,
    database: String,
    query_policy: QueryPolicy,
    direct_max_rows: u64,
    poll_wait: Duration,
    /// The long Flight SQL queries (PollFlightInfo jobs) this replica runs.
    poll_jobs: sql::poll::Jobs,
    /// Locations every endpoint names (`advertise_locations`).
    locations: Vec<Location>,
}

/// Builds a [`Service`]: the collaborators are required, the tuning has defaults.
#[derive(Debug)]
pub struct ServiceBuilder {
    service: Service,
}

/// DoGet's keep-alive interval unless set: an empty batch this often keeps proxies from
/// resetting a slow stream.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(10);

impl Service {
    /// A builder over the service's collaborators: where tables are described, where runs are
    /// staged (the stager holds the warehouse), the staging bucket, how callers authenticate,
    /// how tickets are signed, and where Parquet is decoded.
    pub fn builder(
        catalog: Arc<dyn Catalog>,
        stager: Arc<Stager>,
        store: Arc<dyn ObjectStore>,
        auth: Arc<dyn Authenticate>,
        tickets: TicketCodec,
        decoder: Decoder,
    ) -> ServiceBuilder {
        ServiceBuilder {
            service: Service {
                catalog,
                stager,
                store,
                tickets: Arc::new(tickets),
                auth,
                settings: PlanSettings::default(),
                metrics: Metrics::new(),
                keepalive: DEFAULT_KEEPALIVE,
                snapshots: Snapshots::new(None),
                share_across_replicas: false,
                decoder,
                stream_memory: None,
                stream_stall: Duration::from_secs(120),
                columns: ColumnsCache::default(),
                database: String::new(),
                query_policy: QueryPolicy::default(),
                direct_max_rows: 0,
                poll_wait: Duration::from_secs(1),
                poll_jobs: sql::poll::Jobs::default(),
                locations: Vec::new(),
            },
        }
    }

    /// The stager: UNLOAD runs and their life on S3.
    pub fn stager(&self) -> &Arc<Stager> {
        &self.stager
    }

    /// Where RPCs, catalog queries and staging are counted.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The metrics, with the gauges read at scrape time (the stream memory in use) brought up
    /// to date, in the Prometheus text format.
    pub fn encode_metrics(&self) -> String {
        if let Some(budget) = &self.stream_memory {
            let total = budget.total();
            let in_use = total.saturating_sub(budget.available());
            self.metrics
                .stream_memory_budget
                .set(i64::try_from(total).unwrap_or(i64::MAX));
            self.metrics
                .stream_memory_in_use
                .set(i64::try_from(in_use).unwrap_or(i64::MAX));
        }
        self.metrics.encode()
    }

    /// An endpoint for `ticket`, naming the advertised locations (none by default: the client
    /// reads through the connection it has, which may go through a load balancer).
    fn endpoint(&self, ticket: Ticket) -> FlightEndpoint {
        FlightEndpoint {
            ticket: Some(ticket),
            location: self.locations.clone(),
            ..FlightEndpoint::default()
        }
    }
}

impl ServiceBuilder {
    /// Locations every endpoint names, so clients spread DoGets over replicas
    /// (`advertise_locations`).
    pub fn with_locations(mut self, uris: &[String]) -> Self {
        self.service.locations = uris
            .iter()
            .map(|uri| Location { uri: uri.clone() })
            .collect();
        self
    }

    /// Planning settings (`enable_complete_resync`).
    pub fn with_plan_settings(mut self, settings: PlanSettings) -> Self {
        self.service.settings = settings;
        self
    }

    /// Where RPCs are counted.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.service.metrics = metrics;
        self
    }

    /// DoGet's keep-alive interval.
    pub fn with_keepalive(mut self, keepalive: Duration) -> Self {
        self.service.keepalive = keepalive;
        self
    }

    /// Share one staged run among identical requests within `window` (`snapshot_reuse`), also
    /// among replicas sharing the staging prefix when `across_replicas` (`snapshot_reuse_scope`).
    pub fn with_snapshot_reuse(mut self, window: Option<Duration>, across_replicas: bool) -> Self {
        self.service.snapshots = Snapshots::new(window);
        self.service.share_across_replicas = across_replicas;
        self
    }

    /// Row-group bytes all DoGet streams may hold at once (`stream_memory`).
    pub fn with_stream_memory(mut self, bytes: Option<u64>) -> Self {
        self.service.stream_memory = bytes.map(MemoryBudget::new);
        self
    }

    /// How long a DoGet client may read nothing while its stream has data waiting; then the
    /// stream ends and gives its share of the memory budget back (`stream_stall`).
    pub fn with_stream_stall(mut self, stall: Duration) -> Self {
        self.service.stream_stall = stall;
        self
    }

    /// The Redshift database served: the Flight SQL catalog name.
    pub fn with_database(mut self, database: impl Into<String>) -> Self {
        self.service.database = database.into();
        self
    }

    /// Flight SQL queries Redshift estimates at fewer rows are answered on the connection
    /// instead of by UNLOAD (`direct_max_rows`; 0, the default here: always UNLOAD).
    pub fn with_direct_max_rows(mut self, rows: u64) -> Self {
        self.service.direct_max_rows = rows;
        self
    }

    /// How long PollFlightInfo waits for a query before answering with its progress.
    pub fn with_poll_wait(mut self, wait: Duration) -> Self {
        self.service.poll_wait = wait;
        self
    }

    /// What Flight SQL queries may do (the function allowlist, the longest query).
    pub fn with_query_policy(mut self, policy: QueryPolicy) -> Self {
        self.service.query_policy = policy;
        self
    }

    /// The service.
    pub fn build(self) -> Service {
        self.service
    }
}

/// A Flight `expiration_time` from Unix milliseconds.
pub(crate) fn timestamp_ms(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

impl Service {
    /// Finds a served table the principal may read; an unknown schema or table is
    /// [`ServiceError::TableNotFound`]. Permission is checked on the name as asked (before the
    /// catalog is consulted, so nothing about it leaks) and on the name as resolved.
    pub(crate) async fn resolve(
        &self,
        principal: &Principal,
        schema: Option<&str>,
        table: &str,
    ) -> Result<Arc<TableInfo>, ServiceError> {
        let schema_name = schema.unwrap_or(self.catalog.default_schema()).to_string();
        let mut found = self.catalog.table(&schema_name, table).await?;
        if found.is_none() && schema.is_some() {
            let resolved = self.catalog.resolve_schema(&schema_name).await?;
            if resolved != schema_name {
                found = self.catalog.table(&resolved, table).await?;
            }
        }
        match found {
            Some(found) => {
                principal.check(&found.table.namespace(), &found.table.table)?;
                Ok(found)
            }
            // Whether a table the caller may not read exists is none of its business.
            None => {
                principal.check(&schema_name, table)?;
                Err(ServiceError::TableNotFound(format!(
                    "{schema_name}.{table}"
                )))
            }
        }
    }

    /// Checks the caller may read what a (genuine) ticket's run holds: its table, or for a
    /// Flight SQL query's run (no schema in the ticket) every relation the query read, as its
    /// columns object lists them.
    pub(crate) async fn check_ticket(
        &self,
        principal: &Principal,
        payload: &crate::ticket::TicketPayload,
    ) -> Result<(), ServiceError> {
        if !payload.schema.is_empty() {
            return Ok(principal.check(&payload.schema, &payload.table)?);
        }
        for [schema, table] in &self.run_columns(payload).await?.relations {
            principal.check(schema, table)?;
        }
        Ok(())
    }

    /// The columns object of a ticket's run (cached; the ticket carries its fingerprint).
    pub(crate) async fn run_columns(
        &self,
        payload: &crate::ticket::TicketPayload,
    ) -> Result<Arc<crate::stage::columns::RunColumns>, ServiceError> {
        let run_prefix = self.stager.run_prefix(&payload.run_id)?;
        self.columns
            .get_or_read(
                &self.store,
                self.stager.bucket(),
                &payload.run_id,
                &run_prefix,
                &payload.columns_sha256,
            )
            .await
            .map_err(ServiceError::from_columns)
    }

    /// Authenticates a call; the principal says which tables it may read.
    fn authenticate<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        self.auth
            .authenticate(request.metadata(), std::time::SystemTime::now())
            .map_err(|e| Status::from(ServiceError::Auth(e)))
    }
}

/// The tonic Flight service over a [`Service`].
#[derive(Debug, Clone)]
pub struct RedshiftFlightService {
    inner: Arc<Service>,
}

impl RedshiftFlightService {
    /// Wraps the shared state.
    pub fn new(inner: Arc<Service>) -> Self {
        Self { inner }
    }
}

type BoxedStream<T> = BoxStream<'static, Result<T, Status>>;

impl RedshiftFlightService {
    /// GetFlightInfo and PollFlightInfo: authenticate, then plan and stage in a span named by
    /// `rpc`.
    async fn flight_info(
        &self,
        rpc: &'static str,
        request: Request<FlightDescriptor>,
    ) -> Result<FlightInfo, Status> {
        let principal = self.inner.authenticate(&request)?;
        let descriptor = request.into_inner();
        let span = tracing::info_span!(
            "get_flight_info",
            rpc,
            principal = principal.name(),
            table = tracing::field::Empty,
            run_id = tracing::field::Empty
        );
        Ok(
            get_flight_info::get_flight_info(&self.inner, &principal, descriptor)
                .instrument(span)
                .await?,
        )
    }

    /// DoGet up to its messages: authenticate, verify the ticket and open the stream (a panic
    /// while it runs ends it with INTERNAL). Shared by tonic's handler and [`FlightRoutes`].
    async fn do_get_messages(
        &self,
        request: Request<Ticket>,
    ) -> Result<BoxedStream<wire::Message>, Status> {
        let started = Instant::now();
        let result = async {
            let principal = self.inner.authenticate(&request)?;
            let ticket = request.into_inner();
            let span = tracing::info_span!(
                "do_get",
                principal = principal.name(),
                table = tracing::field::Empty,
                run_id = tracing::field::Empty,
                rows_sent = tracing::field::Empty
            );
            let stream = do_get::do_get(Arc::clone(&self.inner), &principal, ticket, span.clone())
                .instrument(span)
                .await?;
            // The stream runs after this handler returned, outside the panic layer's reach.
            Ok(crate::panics::catch_stream_panics(stream, "DoGet stream").boxed())
        }
        .await;
        self.observe("do_get", started, result)
    }

    /// Counts a finished RPC by status code, records how long it took since `started`, and
    /// passes its result through.
    fn observe<T>(
        &self,
        rpc: &'static str,
        started: Instant,
        result: Result<T, Status>,
    ) -> Result<T, Status> {
        let code = match &result {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        };
        self.inner
            .metrics
            .observe_rpc_took(rpc, code, started.elapsed());
        result
    }
}

#[tonic::async_trait]
impl FlightService for RedshiftFlightService {
    type HandshakeStream = BoxedStream<HandshakeResponse>;
    type ListFlightsStream = BoxedStream<FlightInfo>;
    type DoGetStream = BoxedStream<FlightData>;
    type DoPutStream = BoxedStream<PutResult>;
    type DoActionStream = BoxedStream<arrow_flight::Result>;
    type ListActionsStream = BoxedStream<ActionType>;
    type DoExchangeStream = BoxedStream<FlightData>;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        let started = Instant::now();
        // The password check runs on the blocking pool, bounded (see `crate::auth`).
        let result = self
            .inner
            .auth
            .handshake(request.metadata(), std::time::SystemTime::now())
            .await
            .map_err(|e| Status::from(ServiceError::Auth(e)))
            .and_then(|token| {
                let payload = token.clone().unwrap_or_default().into_bytes();
                let mut response = Response::new(
                    stream::once(async move {
                        Ok(HandshakeResponse {
                            protocol_version: 0,
                            payload: payload.into(),
                        })
                    })
                    .boxed(),
                );
                if let Some(token) = token {
                    let value = format!("Bearer {token}")
                        .parse()
                        .map_err(|_| Status::internal("issued token is not a valid header"))?;
                    response.metadata_mut().insert("authorization", value);
                }
                Ok(response)
            });
        self.observe("handshake", started, result)
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        let started = Instant::now();
        let result = async {
            let principal = self.inner.authenticate(&request)?;
            let criteria = request.into_inner();
            let span = tracing::info_span!("list_flights", principal = principal.name());
            let infos = list_flights::list_flights(&self.inner, &principal, &criteria)
                .instrument(span)
                .await?;
            Ok(Response::new(
                stream::iter(infos.into_iter().map(Ok)).boxed(),
            ))
        }
        .await;
        self.observe("list_flights", started, result)
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let started = Instant::now();
        let result = self.flight_info("get_flight_info", request).await;
        self.observe("get_flight_info", started, result.map(Response::new))
    }

    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        let started = Instant::now();
        // A Flight SQL query runs on a task of its own: the answer is its progress until it is
        // staged, with a signed token to poll again with (on any replica); see `sql::poll`.
        // Anything else is answered complete, as GetFlightInfo.
        let result = async {
            let principal = self.inner.authenticate(&request)?;
            let descriptor = request.into_inner();
            let span = tracing::info_span!(
                "get_flight_info",
                rpc = "poll_flight_info",
                principal = principal.name(),
                job_id = tracing::field::Empty,
                table = tracing::field::Empty,
                run_id = tracing::field::Empty
            );
            sql::poll::poll_flight_info(&self.inner, &principal, descriptor)
                .instrument(span)
                .await
                .map(Response::new)
        }
        .await;
        self.observe("poll_flight_info", started, result)
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        let started = Instant::now();
        let result = async {
            let principal = self.inner.authenticate(&request)?;
            let descriptor = request.into_inner();
            let span = tracing::info_span!("get_schema", principal = principal.name());
            let schema = get_schema::get_schema(&self.inner, &principal, &descriptor)
                .instrument(span)
                .await?;
            Ok(Response::new(schema))
        }
        .await;
        self.observe("get_schema", started, result)
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        // Served by `FlightRoutes` without copies; this is for servers that mount the service
        // with `FlightServiceServer` directly.
        let messages = self.do_get_messages(request).await?;
        Ok(Response::new(
            messages.map_ok(wire::Message::into_flight_data).boxed(),
        ))
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        let started = Instant::now();
        // Only a prepared statement's parameters are accepted (see `sql::prepared`).
        let result = async {
            let principal = self.inner.authenticate(&request)?;
            let span = tracing::info_span!("do_put", principal = principal.name());
            let results = sql::prepared::do_put(&self.inner, request.into_inner())
                .instrument(span)
                .await?;
            Ok(Response::new(
                stream::iter(results.into_iter().map(Ok)).boxed(),
            ))
        }
        .await;
        self.observe("do_put", started, result)
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let started = Instant::now();
        let result = async {
            let principal = self.inner.authenticate(&request)?;
            let action = request.into_inner();
            let span = tracing::info_span!("do_action", principal = principal.name(), action = %action.r#type);
            let results = actions::do_action(&self.inner, &principal, action).instrument(span).await?;
            Ok(Response::new(stream::iter(results.into_iter().map(Ok)).boxed()))
        }
        .await;
        self.observe("do_action", started, result)
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        self.inner.authenticate(&request)?;
        Ok(Response::new(
            stream::iter(actions::list().into_iter().map(Ok)).boxed(),
        ))
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        self.inner.authenticate(&request)?;
        Err(Status::unimplemented("DoExchange is not supported"))
    }
}
