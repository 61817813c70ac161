//! Reading a planned flight: every endpoint through its own task (DoGet, decoding), at most
//! `parallelism` at a time, batches handed out in endpoint order or as they come. A stream that
//! fails transiently is opened again and resumes after the rows it had already handed out (a
//! ticket always reads the same file, row groups in order). When the staged run expired before
//! any batch was handed out, the read is planned again. Imports external crates and
//! `crate::{client, error, request}`.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::{FlightEndpoint, Ticket};
use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::client::{Client, same_fields};
use crate::error::{Error, Result};
use crate::request::{Flight, TableRequest};

/// How [`Client::read`] reads endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// Endpoints read at once (default 4).
    pub parallelism: usize,
    /// `true`: batches in endpoint order (endpoint 0's first), still fetched in parallel;
    /// `false` (default): as they arrive.
    pub ordered: bool,
    /// Batches buffered per endpoint ahead of the consumer (default 2).
    pub prefetch: usize,
    /// New plans after the staged run expired before the first batch (default 2).
    pub max_replans: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            parallelism: 4,
            ordered: false,
            prefetch: 2,
            max_replans: 2,
        }
    }
}

/// Aborts a task when dropped, so that nothing reads on after its consumer went away.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The batches of one endpoint, read by a task of its own.
#[derive(Debug)]
pub(crate) struct EndpointStream {
    rx: mpsc::Receiver<Result<RecordBatch>>,
    _task: AbortOnDrop,
}

impl Stream for EndpointStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// Starts reading `endpoint` on a task of its own; batches are checked against `schema`.
pub(crate) fn spawn_endpoint(
    client: &Client,
    endpoint: &FlightEndpoint,
    schema: &SchemaRef,
    prefetch: usize,
) -> EndpointStream {
    let (tx, rx) = mpsc::channel(prefetch.max(1));
    let (client, schema) = (client.clone(), Arc::clone(schema));
    let ticket = endpoint.ticket.clone();
    let task = tokio::spawn(async move {
        let Some(ticket) = ticket else {
            let _ = tx
                .send(Err(Error::Protocol("an endpoint without a ticket".into())))
                .await;
            return;
        };
        pump_endpoint(client, ticket, schema, tx).await;
    });
    EndpointStream {
        rx,
        _task: AbortOnDrop(task),
    }
}

/// Sends one endpoint's batches to `tx`, opening the stream again after transient failures
/// and skipping the rows already sent.
async fn pump_endpoint(
    client: Client,
    ticket: Ticket,
    schema: SchemaRef,
    tx: mpsc::Sender<Result<RecordBatch>>,
) {
    let mut delays = client.retry_policy().delays();
    let mut sent = 0usize;
    loop {
        match stream_once(&client, &ticket, &schema, &mut sent, &tx).await {
            Ok(()) => return,
            Err(e) if e.is_retryable() => match delays.next() {
                Some(delay) => {
                    tracing::debug!(error = %e, ?delay, sent, "endpoint stream failed; resuming");
                    tokio::time::sleep(delay).await;
                }
                None => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            },
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
    }
}

/// One DoGet: sends the batches past the first `sent` rows, counting them into `sent`.
/// Zero-row batches (keep-alives) are dropped.
async fn stream_once(
    client: &Client,
    ticket: &Ticket,
    schema: &SchemaRef,
    sent: &mut usize,
    tx: &mpsc::Sender<Result<RecordBatch>>,
) -> Result<()> {
    let mut stream = client.do_get(ticket.clone()).await?;
    let mut seen = 0usize;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        if !same_fields(&batch.schema(), schema) {
            return Err(Error::Protocol(format!(
                "a DoGet stream's schema {} differs from the promised {}",
                batch.schema(),
                schema
            )));
        }
        let rows = batch.num_rows();
        let skip = sent.saturating_sub(seen).min(rows);
        seen += rows;
        if skip == rows {
            continue;
        }
        let batch = batch.slice(skip, rows - skip);
        // Batches carry the promised schema, metadata included.
        let batch = RecordBatch::try_new(Arc::clone(schema), batch.columns().to_vec())?;
        *sent += batch.num_rows();
        if tx.send(Ok(batch)).await.is_err() {
            return Ok(()); // the consumer went away
        }
    }
    Ok(())
}

/// Every endpoint of `flight`, read with `options`' parallelism and order; ends after the first
/// error.
pub(crate) fn read_endpoints(
    client: &Client,
    flight: &Flight,
    options: &ReadOptions,
) -> BoxStream<'static, Result<RecordBatch>> {
    let parallelism = options.parallelism.max(1);
    let (client, schema, prefetch) = (client.clone(), Arc::clone(&flight.schema), options.prefetch);
    let endpoints = flight.info.endpoint.clone();
    let batches = if options.ordered {
        // `buffered` starts up to `parallelism` readers ahead; `flatten` drains them in order.
        stream::iter(endpoints)
            .map(move |e| {
                let stream = spawn_endpoint(&client, &e, &schema, prefetch);
                async move { stream }
            })
            .buffered(parallelism.saturating_sub(1).max(1))
            .flatten()
            .boxed()
    } else {
        stream::iter(endpoints)
            .map(move |e| {
                let (client, schema) = (client.clone(), Arc::clone(&schema));
                stream::once(async move { spawn_endpoint(&client, &e, &schema, prefetch) })
                    .flatten()
                    .boxed()
            })
            .flatten_unordered(parallelism)
            .boxed()
    };
    // Stop at the first error: the other endpoints' tasks are aborted with the stream.
    batches
        .scan(false, |failed, item| {
            let next = (!*failed).then(|| {
                *failed = item.is_err();
                item
            });
            async move { next }
        })
        .boxed()
}

/// The record batches of a read, from [`Client::read`] or [`Client::read_flight`].
///
/// The read runs on a task of its own; dropping the stream stops it (and cancels the staged run
/// when endpoints were left unread). [`BatchStream::flight`] is the plan the batches come from
/// (after a re-plan, the new one: its `next_cursor` is the one to store).
pub struct BatchStream {
    rx: mpsc::Receiver<Result<RecordBatch>>,
    flight: Arc<Mutex<Option<Flight>>>,
}

impl std::fmt::Debug for BatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchStream").finish_non_exhaustive()
    }
}

impl BatchStream {
    /// The plan being read, once planned.
    pub fn flight(&self) -> Option<Flight> {
        self.flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The promised schema, once planned.
    pub fn schema(&self) -> Option<SchemaRef> {
        self.flight().map(|f| f.schema)
    }
}

impl Stream for BatchStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

enum Source {
    Request(TableRequest),
    Planned(Box<Flight>),
}

impl Client {
    /// Plans `request` and reads every endpoint (see [`ReadOptions::default`]).
    ///
    /// ```no_run
    /// # async fn run() -> redshift_flight_client::Result<()> {
    /// use futures::TryStreamExt;
    /// use redshift_flight_client::{Client, TableRequest};
    /// let client = Client::connect("grpc://127.0.0.1:8815").await?;
    /// let batches: Vec<_> = client.read(TableRequest::new("demo.orders")).try_collect().await?;
    /// # Ok(()) }
    /// ```
    pub fn read(&self, request: TableRequest) -> BatchStream {
        self.read_with(request, ReadOptions::default())
    }

    /// Plans `request` and reads every endpoint with `options`.
    pub fn read_with(&self, request: TableRequest, options: ReadOptions) -> BatchStream {
        self.start(Source::Request(request), options)
    }

    /// Reads a flight planned with [`Client::plan`]; planned again if its run expired before
    /// the first batch.
    pub fn read_flight(&self, flight: Flight, options: ReadOptions) -> BatchStream {
        self.start(Source::Planned(Box::new(flight)), options)
    }

    fn start(&self, source: Source, options: ReadOptions) -> BatchStream {
        let (tx, rx) = mpsc::channel(options.prefetch.max(1));
        let current = Arc::new(Mutex::new(None));
        let driver = Driver {
            client: self.clone(),
            options,
            tx,
            current: Arc::clone(&current),
        };
        // Not aborted on drop: it notices the consumer is gone and cancels the staged run.
        tokio::spawn(driver.run(source));
        BatchStream {
            rx,
            flight: current,
        }
    }
}

struct Driver {
    client: Client,
    options: ReadOptions,
    tx: mpsc::Sender<Result<RecordBatch>>,
    current: Arc<Mutex<Option<Flight>>>,
}

impl Driver {
    fn set_current(&self, flight: &Flight) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(flight.clone());
    }

    async fn plan(&self, request: &TableRequest) -> Option<Flight> {
        let planned = tokio::select! {
            planned = self.client.plan(request) => planned,
            () = self.tx.closed() => return None,
        };
        match planned {
            Ok(flight) => Some(flight),
            Err(e) => {
                let _ = self.tx.send(Err(e)).await;
                None
            }
        }
    }

    async fn run(self, source: Source) {
        let mut flight = match source {
            Source::Planned(flight) => *flight,
            Source::Request(request) => match self.plan(&request).await {
                Some(flight) => flight,
                None => return,
            },
        };
        let mut replans = 0;
        loop {
            self.set_current(&flight);
            let mut handed_out = false;
            let mut batches = read_endpoints(&self.client, &flight, &self.options);
            let failure = loop {
                let item = tokio::select! {
                    item = batches.next() => item,
                    () = self.tx.closed() => {
                        drop(batches);
                        self.cancel(&flight).await;
                        return;
                    }
                };
                match item {
                    None => return,
                    Some(Ok(batch)) => {
                        handed_out = true;
                        if self.tx.send(Ok(batch)).await.is_err() {
                            drop(batches);
                            self.cancel(&flight).await;
                            return;
                        }
                    }
                    Some(Err(e)) => break e,
                }
            };
            drop(batches);
            if failure.is_run_expired() && !handed_out && replans < self.options.max_replans {
                replans += 1;
                tracing::info!(error = %failure, "the staged run expired; planning the read again");
                flight = match self.plan(&flight.request).await {
                    Some(flight) => flight,
                    None => return,
                };
                continue;
            }
            if !failure.is_run_expired() {
                self.cancel(&flight).await;
            }
            let _ = self.tx.send(Err(failure)).await;
            return;
        }
    }

    async fn cancel(&self, flight: &Flight) {
        if let Err(e) = self.client.cancel(flight).await {
            tracing::debug!(error = %e, "cancelling an unfinished read failed");
        }
    }
}
