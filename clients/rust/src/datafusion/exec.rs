//! [`RedshiftFlightExec`]: the physical scan of a planned read. One DataFusion partition per
//! endpoint (up to a cap; beyond it partitions take endpoints round-robin), so DataFusion's
//! executor streams endpoints in parallel; with a pushed-down LIMIT, one partition that stops
//! once it has the rows and cancels the staged run. When the run expired before any partition
//! handed out a batch or finished, the first partition to notice plans the read again and every
//! partition reads its share of the new plan (all partitions always read the same snapshot).
//! Imports external crates and `crate::{client, error, read, request}`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ::datafusion::common::stats::Precision;
use ::datafusion::common::tree_node::TreeNodeRecursion;
use ::datafusion::common::{DataFusionError, Statistics};
use ::datafusion::execution::{SendableRecordBatchStream, TaskContext};
use ::datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use ::datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use ::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use ::datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties, StatisticsArgs,
};
use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;
use futures::StreamExt;
use tokio::sync::{Mutex, mpsc};

use crate::client::Client;
use crate::error::Error;
use crate::read::{AbortOnDrop, spawn_endpoint};
use crate::request::Flight;

/// New plans one scan may make after its run expired.
const MAX_REPLANS: usize = 2;

/// The plan the partitions read, replaced when its run expired before anything was consumed.
#[derive(Debug)]
struct Current {
    generation: u64,
    flight: Flight,
    /// A partition handed out a batch of this generation, or finished reading its share.
    consumed: bool,
    replans: usize,
}

#[derive(Debug)]
struct Shared {
    client: Client,
    current: Mutex<Current>,
    started: AtomicBool,
    prefetch: usize,
}

impl Shared {
    async fn snapshot(&self) -> (u64, Flight) {
        let current = self.current.lock().await;
        (current.generation, current.flight.clone())
    }

    /// Marks `generation` consumed; `false` when it was replaced meanwhile.
    async fn consume(&self, generation: u64) -> bool {
        let mut current = self.current.lock().await;
        current.consumed |= current.generation == generation;
        current.generation == generation
    }

    /// Plans again after `generation`'s run expired (unless another partition already did).
    async fn replan(&self, generation: u64, expired: Error) -> Result<(), Error> {
        let mut current = self.current.lock().await;
        if current.generation != generation {
            return Ok(());
        }
        if current.consumed || current.replans >= MAX_REPLANS {
            return Err(expired);
        }
        tracing::info!(error = %expired, "the staged run expired before the scan read it; planning again");
        current.flight = self.client.plan(&current.flight.request).await?;
        current.generation += 1;
        current.replans += 1;
        Ok(())
    }
}

impl Drop for Shared {
    /// A plan that was never executed (EXPLAIN, an abandoned query) releases its staged run.
    fn drop(&mut self) {
        if self.started.load(Ordering::Relaxed) {
            return;
        }
        let (client, flight) = (self.client.clone(), self.current.get_mut().flight.clone());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = client.cancel(&flight).await;
            });
        }
    }
}

/// Scans a planned redshift-flight read.
#[derive(Debug)]
pub struct RedshiftFlightExec {
    shared: Arc<Shared>,
    /// The projected schema (may have no columns, for `count(*)`).
    schema: SchemaRef,
    partitions: usize,
    limit: Option<usize>,
    statistics: Arc<Statistics>,
    properties: Arc<PlanProperties>,
}

impl RedshiftFlightExec {
    /// A scan of `flight`, whose batches become `schema` (the projection; the flight's columns
    /// are exactly these, or one column when `schema` has none), with at most `max_partitions`
    /// partitions (`limit`: one).
    pub(crate) fn new(
        client: Client,
        flight: Flight,
        schema: SchemaRef,
        limit: Option<usize>,
        max_partitions: usize,
        prefetch: usize,
    ) -> Self {
        let endpoints = flight.endpoints().len();
        let partitions = match limit {
            Some(_) => 1,
            None => endpoints.clamp(1, max_partitions.max(1)),
        };
        let rows = match (flight.total_records(), limit) {
            (Some(total), Some(limit)) => Precision::Exact(total.min(limit as u64) as usize),
            (Some(total), None) => Precision::Exact(total as usize),
            (None, _) => Precision::Absent,
        };
        let statistics = Arc::new(Statistics::new_unknown(&schema).with_num_rows(rows));
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            shared: Arc::new(Shared {
                client,
                current: Mutex::new(Current {
                    generation: 0,
                    flight,
                    consumed: false,
                    replans: 0,
                }),
                started: AtomicBool::new(false),
                prefetch,
            }),
            schema,
            partitions,
            limit,
            statistics,
            properties,
        }
    }

    /// The flight currently read (after a re-plan, the new one).
    pub async fn flight(&self) -> Flight {
        self.shared.snapshot().await.1
    }
}

impl DisplayAs for RedshiftFlightExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.shared.current.try_lock();
        let Ok(current) = current else {
            return write!(f, "RedshiftFlightExec: partitions={}", self.partitions);
        };
        let request = &current.flight.request;
        match t {
            DisplayFormatType::TreeRender => write!(f, "table={}", request.table),
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(f, "RedshiftFlightExec: table={}", request.table)?;
                if let Some(columns) = &request.columns {
                    write!(f, ", columns=[{}]", columns.join(", "))?;
                }
                if let Some(filter) = &request.filter {
                    write!(f, ", where={filter}")?;
                }
                if let Some(limit) = self.limit {
                    write!(f, ", limit={limit}")?;
                }
                write!(
                    f,
                    ", endpoints={}, partitions={}",
                    current.flight.endpoints().len(),
                    self.partitions
                )
            }
        }
    }
}

impl ExecutionPlan for RedshiftFlightExec {
    fn name(&self) -> &'static str {
        "RedshiftFlightExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(
            &Arc<dyn PhysicalExpr>,
        ) -> ::datafusion::common::Result<TreeNodeRecursion>,
    ) -> ::datafusion::common::Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> ::datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> ::datafusion::common::Result<SendableRecordBatchStream> {
        if partition >= self.partitions {
            return Err(DataFusionError::Internal(format!(
                "RedshiftFlightExec has {} partitions, not {}",
                self.partitions,
                partition + 1
            )));
        }
        self.shared.started.store(true, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.shared.prefetch.max(1));
        let reader = PartitionReader {
            shared: Arc::clone(&self.shared),
            schema: Arc::clone(&self.schema),
            partition,
            partitions: self.partitions,
            limit: self.limit,
            tx,
        };
        let task = AbortOnDrop(tokio::spawn(reader.run()));
        let stream = futures::stream::unfold((rx, task), |(mut rx, task)| async move {
            rx.recv().await.map(|item| (item, (rx, task)))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            stream,
        )))
    }

    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> ::datafusion::common::Result<Arc<Statistics>> {
        Ok(match args.partition() {
            None => Arc::clone(&self.statistics),
            Some(_) => Arc::new(Statistics::new_unknown(&self.schema)),
        })
    }

    fn partition_statistics(
        &self,
        partition: Option<usize>,
    ) -> ::datafusion::common::Result<Arc<Statistics>> {
        Ok(match partition {
            None => Arc::clone(&self.statistics),
            Some(_) => Arc::new(Statistics::new_unknown(&self.schema)),
        })
    }
}

/// Reads one partition's endpoints into a channel.
struct PartitionReader {
    shared: Arc<Shared>,
    schema: SchemaRef,
    partition: usize,
    partitions: usize,
    limit: Option<usize>,
    tx: mpsc::Sender<::datafusion::common::Result<RecordBatch>>,
}

/// How reading one generation ended.
enum Outcome {
    Done,
    /// The consumer went away, or the limit was reached.
    Stop,
    Failed(Error),
    /// The plan was replaced before this partition consumed anything: read the new one.
    Replaced,
}

impl PartitionReader {
    async fn run(self) {
        loop {
            let (generation, flight) = self.shared.snapshot().await;
            match self.read(generation, &flight).await {
                Outcome::Done | Outcome::Stop => return,
                Outcome::Replaced => continue,
                Outcome::Failed(e) if e.is_run_expired() => {
                    if let Err(e) = self.shared.replan(generation, e).await {
                        self.fail(e).await;
                        return;
                    }
                }
                Outcome::Failed(e) => {
                    self.fail(e).await;
                    return;
                }
            }
        }
    }

    async fn fail(&self, error: Error) {
        let _ = self
            .tx
            .send(Err(DataFusionError::External(Box::new(error))))
            .await;
    }

    async fn read(&self, generation: u64, flight: &Flight) -> Outcome {
        let mut consumed = false;
        let mut remaining = self.limit;
        let mine = flight
            .endpoints()
            .iter()
            .enumerate()
            .filter(|(i, _)| i % self.partitions == self.partition);
        for (_, endpoint) in mine {
            let mut batches = spawn_endpoint(
                &self.shared.client,
                endpoint,
                &flight.schema,
                self.shared.prefetch,
            );
            while let Some(batch) = batches.next().await {
                let batch = match batch {
                    Ok(batch) => batch,
                    Err(e) => return Outcome::Failed(e),
                };
                if !consumed {
                    if !self.shared.consume(generation).await {
                        return Outcome::Replaced;
                    }
                    consumed = true;
                }
                let mut batch = match self.project(&batch) {
                    Ok(batch) => batch,
                    Err(e) => return Outcome::Failed(e),
                };
                if let Some(left) = remaining.as_mut() {
                    batch = batch.slice(0, batch.num_rows().min(*left));
                    *left -= batch.num_rows();
                }
                if remaining == Some(0) {
                    // Release the staged run before the last batch: once it has its rows the
                    // consumer drops this stream (and aborts this task).
                    drop(batches);
                    let _ = self.shared.client.cancel(flight).await;
                    let _ = self.tx.send(Ok(batch)).await;
                    return Outcome::Stop;
                }
                if self.tx.send(Ok(batch)).await.is_err() {
                    return Outcome::Stop;
                }
            }
        }
        if !consumed && !self.shared.consume(generation).await {
            return Outcome::Replaced;
        }
        Outcome::Done
    }

    /// The batch in the projected schema (no columns: only its row count).
    fn project(&self, batch: &RecordBatch) -> Result<RecordBatch, Error> {
        let columns = if self.schema.fields().is_empty() {
            vec![]
        } else {
            batch.columns().to_vec()
        };
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        Ok(RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            columns,
            &options,
        )?)
    }
}
