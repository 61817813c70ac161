//! [`Client`]: one connection to a redshift-flight server (plain or TLS, bearer token or Basic
//! handshake, timeouts) and the RPCs of the wire contract: plan a read (GetFlightInfo), schemas,
//! table lists, cancel. Reading the planned endpoints is in `read.rs`. Imports external crates
//! and `crate::{error, request}`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use arrow::datatypes::{Schema, SchemaRef};
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::{CommandGetDbSchemas, ProstMessageExt};
use arrow_flight::{CancelFlightInfoRequest, FlightClient, FlightDescriptor, FlightInfo, Ticket};
use backon::BackoffBuilder;
use base64::Engine;
use futures::TryStreamExt;
use prost::Message;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::error::{Error, Result};
use crate::request::{Flight, TableRequest};

/// Largest message accepted from the server (FlightInfos are at most 4 MiB; a batch holding one
/// 16 MB VARBYTE value is larger than gRPC's default).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// How transient failures (`UNAVAILABLE`, a broken connection) are retried: exponential
/// back-off with jitter. The default retries 3 times, 200 ms to 5 s apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0: never retry).
    pub max_retries: usize,
    /// The first delay.
    pub min_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The delays to sleep before each retry.
    pub(crate) fn delays(&self) -> impl Iterator<Item = Duration> + Send + use<> {
        backon::ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries)
            .with_jitter()
            .build()
    }
}

/// TLS settings for `grpc+tls://` (and `https://`) URIs.
#[derive(Clone, Default)]
pub struct TlsOptions {
    /// PEM CA certificate(s) to trust; `None`: the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate and key, for servers that require mutual TLS.
    pub client_identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// The name to verify instead of the URI's host.
    pub domain_name: Option<String>,
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .field(
                "client_identity_pem",
                &self.client_identity_pem.as_ref().map(|_| "<redacted>"),
            )
            .field("domain_name", &self.domain_name)
            .finish()
    }
}

/// Credentials: a bearer token, or an access-file user exchanged for a token by Handshake.
#[derive(Clone)]
enum Credentials {
    None,
    Bearer(String),
    Basic { user: String, password: String },
}

/// Builds a [`Client`]: `Client::builder("grpc://host:8815").bearer_token(t).connect().await`.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    uri: String,
    credentials: CredentialsDebug,
    tls: TlsOptions,
    connect_timeout: Option<Duration>,
    timeout: Option<Duration>,
    retry: RetryPolicy,
}

/// [`Credentials`] with a Debug that never shows a secret.
#[derive(Clone)]
struct CredentialsDebug(Credentials);

impl std::fmt::Debug for CredentialsDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Credentials::None => f.write_str("None"),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Credentials::Basic { user, .. } => write!(f, "Basic({user}, <redacted>)"),
        }
    }
}

impl ClientBuilder {
    /// A builder for `uri`: `grpc://`, `grpc+tcp://`, `http://` (plain) or `grpc+tls://`,
    /// `https://` (TLS).
    pub fn new(uri: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            credentials: CredentialsDebug(Credentials::None),
            tls: TlsOptions::default(),
            connect_timeout: Some(Duration::from_secs(10)),
            timeout: None,
            retry: RetryPolicy::default(),
        }
    }

    /// Sends `authorization: Bearer <token>` on every call (`auth_tokens`, an access-file token).
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.credentials = CredentialsDebug(Credentials::Bearer(token.into()));
        self
    }

    /// Authenticates an access-file user with a Basic Handshake at connect time, and again when
    /// the issued token expires.
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = CredentialsDebug(Credentials::Basic {
            user: user.into(),
            password: password.into(),
        });
        self
    }

    /// TLS settings (a private CA, a client certificate).
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = tls;
        self
    }

    /// How long to wait for the connection (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// A deadline for each call's answer (GetFlightInfo includes the UNLOAD; a DoGet stream's
    /// first message). Default: none.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How transient failures are retried.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Connects (and runs the Handshake for Basic credentials).
    pub async fn connect(self) -> Result<Client> {
        let connect_error = |message: String| Error::Connect {
            uri: self.uri.clone(),
            message,
        };
        let (tls, http_uri) = match self.uri.split_once("://") {
            Some(("grpc" | "grpc+tcp" | "http", rest)) => (false, format!("http://{rest}")),
            Some(("grpc+tls" | "https", rest)) => (true, format!("https://{rest}")),
            _ => {
                return Err(connect_error(
                    "expected grpc://, grpc+tcp://, grpc+tls://, http:// or https://".into(),
                ));
            }
        };
        let mut endpoint =
            Endpoint::from_shared(http_uri).map_err(|e| connect_error(e.to_string()))?;
        if let Some(timeout) = self.connect_timeout {
            endpoint = endpoint.connect_timeout(timeout);
        }
        if let Some(timeout) = self.timeout {
            endpoint = endpoint.timeout(timeout);
        }
        endpoint = endpoint
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        if tls {
            let mut config = ClientTlsConfig::new();
            config = match &self.tls.ca_pem {
                Some(pem) => config.ca_certificate(Certificate::from_pem(pem)),
                None => config.with_native_roots(),
            };
            if let Some((cert, key)) = &self.tls.client_identity_pem {
                config = config.identity(Identity::from_pem(cert, key));
            }
            if let Some(name) = &self.tls.domain_name {
                config = config.domain_name(name);
            }
            endpoint = endpoint
                .tls_config(config)
                .map_err(|e| connect_error(e.to_string()))?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| connect_error(error_chain(&e)))?;
        let inner = FlightServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let client = Client {
            shared: Arc::new(Shared {
                uri: self.uri,
                inner,
                credentials: self.credentials.0,
                token: RwLock::new(None),
                retry: self.retry,
            }),
        };
        if let Credentials::Bearer(token) = &client.shared.credentials {
            client.set_token(Some(token.clone()));
        }
        if matches!(client.shared.credentials, Credentials::Basic { .. }) {
            client.handshake().await?;
        }
        Ok(client)
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

struct Shared {
    uri: String,
    inner: FlightServiceClient<Channel>,
    credentials: Credentials,
    /// The `authorization` value sent on every call.
    token: RwLock<Option<String>>,
    retry: RetryPolicy,
}

/// A connection to redshift-flight. Cheap to clone (one HTTP/2 connection, shared); every call
/// may run concurrently with the others.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("uri", &self.shared.uri)
            .field(
                "credentials",
                &CredentialsDebug(self.shared.credentials.clone()),
            )
            .field("retry", &self.shared.retry)
            .finish_non_exhaustive()
    }
}

/// A table served by the server, as ListFlights describes it.
#[derive(Debug, Clone)]
pub struct TableInfo {
    /// The schema name, as the catalog spells it.
    pub schema_name: String,
    /// The table name, as the catalog spells it.
    pub name: String,
    /// The full Arrow schema a read promises.
    pub schema: SchemaRef,
    /// Redshift's row estimate, if known.
    pub estimated_rows: Option<u64>,
}

impl TableInfo {
    /// A request reading this table (names quoted as needed).
    pub fn request(&self) -> TableRequest {
        TableRequest::qualified(&self.schema_name, &self.name)
    }
}

impl Client {
    /// Connects to `uri` without credentials (see [`Client::builder`] for the rest).
    pub async fn connect(uri: impl Into<String>) -> Result<Self> {
        ClientBuilder::new(uri).connect().await
    }

    /// A builder for credentials, TLS and timeouts.
    pub fn builder(uri: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(uri)
    }

    /// The URI connected to.
    pub fn uri(&self) -> &str {
        &self.shared.uri
    }

    /// The retry policy of this client.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.shared.retry
    }

    fn set_token(&self, token: Option<String>) {
        let value = token.map(|t| format!("Bearer {t}"));
        *self.shared.token.write().unwrap_or_else(|e| e.into_inner()) = value;
    }

    /// A FlightClient for one call, carrying the credentials.
    fn flight(&self) -> Result<FlightClient> {
        let mut client = FlightClient::new_from_inner(self.shared.inner.clone());
        let token = self.shared.token.read().unwrap_or_else(|e| e.into_inner());
        if let Some(value) = token.as_deref() {
            client
                .add_header("authorization", value)
                .map_err(|_| Error::Protocol("the token is not a valid header value".into()))?;
        }
        Ok(client)
    }

    /// Basic credentials for a bearer token (the Handshake RPC).
    async fn handshake(&self) -> Result<()> {
        let Credentials::Basic { user, password } = &self.shared.credentials else {
            return Ok(());
        };
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let mut client = FlightClient::new_from_inner(self.shared.inner.clone());
        client
            .add_header("authorization", &format!("Basic {basic}"))
            .map_err(|_| Error::Protocol("the user name is not a valid header value".into()))?;
        let payload = client.handshake(bytes::Bytes::new()).await?;
        let token = String::from_utf8(payload.to_vec())
            .map_err(|_| Error::Protocol("the Handshake token is not UTF-8".into()))?;
        self.set_token((!token.is_empty()).then_some(token));
        Ok(())
    }

    /// Runs `call` with the retry policy: transient failures are retried after a delay; an
    /// expired issued token is renewed once by a new Handshake.
    pub(crate) async fn with_retries<T, F, Fut>(&self, mut call: F) -> Result<T>
    where
        F: FnMut(FlightClient) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut delays = self.shared.retry.delays();
        let mut renewed = false;
        loop {
            match call(self.flight()?).await {
                Err(Error::Unauthenticated(e))
                    if !renewed && matches!(self.shared.credentials, Credentials::Basic { .. }) =>
                {
                    renewed = true;
                    self.handshake()
                        .await
                        .map_err(|_| Error::Unauthenticated(e))?;
                }
                Err(e) if e.is_retryable() => match delays.next() {
                    Some(delay) => {
                        tracing::debug!(error = %e, ?delay, "transient failure; retrying");
                        tokio::time::sleep(delay).await;
                    }
                    None => return Err(e),
                },
                other => return other,
            }
        }
    }

    /// Plans a read: GetFlightInfo (the server runs the UNLOAD) for `request`.
    pub async fn plan(&self, request: &TableRequest) -> Result<Flight> {
        let descriptor = request.to_descriptor()?;
        let info = self
            .with_retries(|mut c| {
                let descriptor = descriptor.clone();
                async move { Ok(c.get_flight_info(descriptor).await?) }
            })
            .await?;
        Flight::try_new(request.clone(), info)
    }

    /// The schema a read of `table` (`table` or `schema.table`) promises, without an UNLOAD.
    pub async fn schema(&self, table: &str) -> Result<SchemaRef> {
        self.request_schema(&TableRequest::new(table)).await
    }

    /// The schema `request` would be served with (its projection applied), without an UNLOAD.
    pub async fn request_schema(&self, request: &TableRequest) -> Result<SchemaRef> {
        let descriptor = request.to_descriptor()?;
        let schema = self
            .with_retries(|mut c| {
                let descriptor = descriptor.clone();
                async move { Ok(c.get_schema(descriptor).await?) }
            })
            .await?;
        Ok(Arc::new(schema))
    }

    /// The tables and views of `schema` the caller may read (ListFlights), sorted by name.
    pub async fn tables(&self, schema: &str) -> Result<Vec<TableInfo>> {
        let infos: Vec<FlightInfo> = self
            .with_retries(|mut c| {
                let criteria = bytes::Bytes::from(schema.as_bytes().to_vec());
                async move {
                    let stream = c.list_flights(criteria).await?;
                    Ok(stream.try_collect::<Vec<_>>().await?)
                }
            })
            .await?;
        infos.into_iter().map(table_info).collect()
    }

    /// The schemas in which the caller may read something (Flight SQL `CommandGetDbSchemas`).
    pub async fn schemas(&self) -> Result<Vec<String>> {
        let command = CommandGetDbSchemas {
            catalog: None,
            db_schema_filter_pattern: None,
        };
        let descriptor = FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
        let info = self
            .with_retries(|mut c| {
                let descriptor = descriptor.clone();
                async move { Ok(c.get_flight_info(descriptor).await?) }
            })
            .await?;
        let mut names = Vec::new();
        for endpoint in &info.endpoint {
            let ticket = endpoint
                .ticket
                .clone()
                .ok_or_else(|| Error::Protocol("an endpoint without a ticket".into()))?;
            let batches = self.do_get(ticket).await?.try_collect::<Vec<_>>().await?;
            for batch in batches {
                let column = batch
                    .column_by_name("db_schema_name")
                    .and_then(|c| c.as_any().downcast_ref::<arrow::array::StringArray>())
                    .ok_or_else(|| Error::Protocol("GetDbSchemas without db_schema_name".into()))?;
                names.extend(column.iter().flatten().map(str::to_string));
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// DoGet of one ticket, as a stream of record batches (no retry: see `read.rs`).
    pub(crate) async fn do_get(
        &self,
        ticket: Ticket,
    ) -> Result<arrow_flight::decode::FlightRecordBatchStream> {
        self.with_retries(|mut c| {
            let ticket = ticket.clone();
            async move { Ok(c.do_get(ticket).await?) }
        })
        .await
    }

    /// Asks the server to drop a planned read's staged run now (CancelFlightInfo) instead of at
    /// its expiry. Returns whether it was cancelled.
    pub async fn cancel(&self, flight: &Flight) -> Result<bool> {
        if flight.info.endpoint.is_empty() {
            return Ok(false);
        }
        let request = CancelFlightInfoRequest::new(flight.info.clone());
        let result = self
            .flight()?
            .cancel_flight_info(request)
            .await
            .map_err(Error::from)?;
        Ok(result.status == arrow_flight::CancelStatus::Cancelled as i32)
    }
}

fn table_info(info: FlightInfo) -> Result<TableInfo> {
    let path = info
        .flight_descriptor
        .as_ref()
        .map(|d| d.path.clone())
        .unwrap_or_default();
    let [schema_name, name] = <[String; 2]>::try_from(path)
        .map_err(|p| Error::Protocol(format!("ListFlights descriptor path {p:?}")))?;
    let estimated_rows = u64::try_from(info.total_records).ok();
    let schema: Schema = info
        .try_decode_schema()
        .map_err(|e| Error::Protocol(format!("ListFlights schema of {schema_name}.{name}: {e}")))?;
    Ok(TableInfo {
        schema_name,
        name,
        schema: Arc::new(schema),
        estimated_rows,
    })
}

/// Stream helpers shared by the readers: `true` when the stream's schema is the promised one
/// (names, types and nullability; metadata may differ).
pub(crate) fn same_fields(got: &Schema, promised: &Schema) -> bool {
    got.fields().len() == promised.fields().len()
        && got.fields().iter().zip(promised.fields()).all(|(a, b)| {
            a.name() == b.name()
                && a.data_type() == b.data_type()
                && a.is_nullable() == b.is_nullable()
        })
}
