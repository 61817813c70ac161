//! DoGet: verify the ticket, then stream one staged Parquet file as Arrow record batches,
//! one row group at a time, normalised to the promised schema. Nothing collects the file: the
//! Parquet stream reads one row group's column chunks with ranged GETs on its own task, at most
//! [`PREFETCH_BATCHES`] batches ahead of the gRPC stream, and tonic pulling the encoded stream is
//! the backpressure. A client that goes away drops the stream, which aborts the reading task.
//! While the file is slow to arrive, empty keep-alive batches stop proxies from cutting the stream.
//! Once the file has been streamed to the end, the run is told (see `Stager::file_consumed`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::{FlightData, Ticket};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::errors::ParquetError;
use tonic::Status;

use super::{Service, ServiceError};
use crate::auth::Principal;
use crate::catalog::{ColumnInfo, RedshiftType, TableRef, promised_schema};
use crate::normalize::normalize_batch;
use crate::store::{ObjectReader, StoreError};

/// Rows per record batch read from Parquet: small enough that a batch fits one gRPC message and
/// a stream holds little beyond its row group (64k-row batches doubled peak RSS in bench/run).
const BATCH_ROWS: usize = 8 * 1024;

/// Decoded batches buffered ahead of the gRPC stream: while one batch is encoded and sent, the
/// next row group is fetched and decoded. Bounds memory to a few batches per stream.
const PREFETCH_BATCHES: usize = 2;

/// Aborts the prefetch task when the response stream is dropped (client gone or cancelled).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `batches` on its own task, at most [`PREFETCH_BATCHES`] ahead of the consumer; when
/// nothing arrives for `keepalive`, yields an empty batch of `schema` instead.
fn prefetch(
    batches: impl Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static,
    schema: SchemaRef,
    keepalive: Duration,
) -> impl Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel(PREFETCH_BATCHES);
    let task = tokio::spawn(async move {
        let mut batches = std::pin::pin!(batches);
        while let Some(item) = batches.next().await {
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    futures::stream::unfold((rx, AbortOnDrop(task)), move |(mut rx, guard)| {
        let schema = Arc::clone(&schema);
        async move {
            let item = match tokio::time::timeout(keepalive, rx.recv()).await {
                Ok(item) => item?,
                Err(_) => {
                    tracing::debug!("keep-alive batch");
                    Ok(RecordBatch::new_empty(schema))
                }
            };
            Some((item, (rx, guard)))
        }
    })
}

fn read_error(error: ParquetError, bucket: &str, key: &str) -> ServiceError {
    match error {
        ParquetError::External(source) => match source.downcast::<object_store::Error>() {
            Ok(e) => ServiceError::Store(StoreError::from_object_store(*e, bucket, key)),
            Err(other) => ServiceError::Corrupt {
                key: key.to_string(),
                message: other.to_string(),
            },
        },
        other => ServiceError::Corrupt {
            key: key.to_string(),
            message: other.to_string(),
        },
    }
}

pub(super) async fn do_get(
    service: Arc<Service>,
    principal: &Principal,
    ticket: Ticket,
    span: tracing::Span,
) -> Result<BoxStream<'static, Result<FlightData, Status>>, ServiceError> {
    let payload = service.tickets.decode(&ticket.ticket, SystemTime::now())?;
    // The ticket is genuine; the caller must still be allowed to read its table now.
    principal.check(&payload.schema, &payload.table)?;
    let table = TableRef::new(payload.schema.clone(), payload.table.clone());
    span.record("table", tracing::field::display(&table));
    span.record("run_id", payload.run_id.as_str());

    let columns: Vec<ColumnInfo> = payload
        .columns
        .iter()
        .map(|c| ColumnInfo::new(c.name.clone(), c.catalog_type.clone(), c.nullable))
        .collect();
    let schema = promised_schema(&table, &payload.primary_key, &columns);
    let types: Vec<RedshiftType> = columns.into_iter().map(|c| c.redshift_type).collect();

    let bucket = service.stager.bucket().to_string();
    let key = payload.key.clone();
    let reader = ObjectReader::new(
        Arc::clone(&service.store),
        Path::from(key.as_str()),
        payload.file_size,
    );
    let stream = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| read_error(e, &bucket, &key))?
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| read_error(e, &bucket, &key))?;

    let batch_schema = Arc::clone(&schema);
    let read_key = key.clone();
    let batches = stream
        .map_err(move |e| {
            FlightError::Tonic(Box::new(Status::from(read_error(e, &bucket, &read_key))))
        })
        .and_then(move |batch| {
            let result = normalize_batch(&batch, &batch_schema, &types).map_err(|e| {
                FlightError::Tonic(Box::new(Status::from(ServiceError::Normalize(e))))
            });
            futures::future::ready(result)
        });

    let metrics = Arc::clone(&service.metrics);
    let rows_span = span.clone();
    let mut rows_sent: u64 = 0;
    let batches = prefetch(batches, Arc::clone(&schema), service.keepalive).inspect(move |batch| {
        if let Ok(batch) = batch {
            rows_sent += batch.num_rows() as u64;
            metrics.rows_sent.inc_by(batch.num_rows() as u64);
            rows_span.record("rows_sent", rows_sent);
        }
    });

    let failed = Arc::new(AtomicBool::new(false));
    let failed_flag = Arc::clone(&failed);
    let metrics = Arc::clone(&service.metrics);
    let encoded = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(batches)
        .map_err(Status::from)
        .inspect(move |item| match item {
            Ok(data) => {
                metrics
                    .bytes_sent
                    .inc_by((data.data_header.len() + data.data_body.len()) as u64);
            }
            Err(_) => failed_flag.store(true, Ordering::Relaxed),
        });
    // After the last message: the file was streamed to the end; tell the run before the stream
    // closes, so a client that has read everything knows the run has recorded it.
    let completion = futures::stream::once(async move {
        if !failed.load(Ordering::Relaxed)
            && let Err(error) = service
                .stager
                .file_consumed(&payload.run_id, &payload.key, payload.run_files)
                .await
        {
            tracing::warn!(%error, "could not record a streamed file");
        }
        None
    })
    .filter_map(futures::future::ready);
    Ok(encoded.chain(completion).boxed())
}
