//! DoGet: verify the ticket, then stream its row groups of one staged Parquet file (all of them,
//! or the range the ticket names) as Arrow record batches, normalised to the promised schema.
//! Nothing collects the file: the footer costs one ranged GET (its length is in the ticket), the
//! Parquet stream reads one row group's column chunks at a time (the next one is fetched while the
//! current one is decoded, when the memory budget has room), and reading, decoding and IPC
//! encoding run on the decode runtime (see `crate::decode`), at most [`PREFETCH_MESSAGES`]
//! messages ahead of the gRPC stream. The messages keep the decoded Arrow buffers as they are
//! ([`super::wire`]): nothing copies them on their way to the socket. The gRPC stream pulling the
//! messages is the backpressure; a server-wide memory budget (`stream_memory_mb`) bounds what all
//! streams hold (row groups plus [`WORKING_BYTES`] each), and a client that stops reading for
//! `stream_stall_seconds` loses its stream. A client that goes away drops the stream, which aborts
//! its tasks.
//! While the file is slow to arrive, empty keep-alive batches stop proxies from cutting the stream.
//! Once the file has been streamed to the end, the run is told (see `Stager::file_consumed`).
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow_flight::Ticket;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaData;
use tonic::Status;

use super::read_columns::{Batches, ReadPlan, column_groups, read};
use super::wire::{IpcEncoder, MAX_MESSAGE_BYTES, Message};
use super::{Service, ServiceError};
use crate::auth::Principal;
use crate::catalog::{ColumnInfo, RedshiftType, TableRef, with_dictionary_strings};
use crate::normalize::{normalize_batch, reader_schema};
use crate::store::{ObjectReader, ParquetReadError};

/// Arrow bytes a record batch aims at: one gRPC message each (the encoder splits batches above
/// 2 MiB, re-encoding their slices), and little held per stream beyond its row group.
const TARGET_BATCH_BYTES: u64 = 1 << 20;
/// Bounds of the rows per batch.
const MIN_BATCH_ROWS: usize = 256;
const MAX_BATCH_ROWS: usize = 64 * 1024;

/// Rows per batch for the row groups read: [`TARGET_BATCH_BYTES`] over the bytes a row takes,
/// estimated from the footer (uncompressed size per row) and, as a floor, from the schema's
/// fixed widths (dictionary-encoded pages understate decoded strings).
fn batch_rows(metadata: &ParquetMetaData, groups: Option<&Range<usize>>, schema: &Schema) -> usize {
    let (rows, bytes) = metadata
        .row_groups()
        .iter()
        .enumerate()
        .filter(|(i, _)| groups.is_none_or(|g| g.contains(i)))
        .fold((0u64, 0u64), |(rows, bytes), (_, rg)| {
            (
                rows + rg.num_rows().max(0) as u64,
                bytes + rg.total_byte_size().max(0) as u64,
            )
        });
    let fixed: u64 = schema
        .fields()
        .iter()
        .map(|f| f.data_type().primitive_width().map_or(4, |w| w as u64))
        .sum();
    let per_row = (bytes / rows.max(1)).max(fixed).max(1);
    ((TARGET_BATCH_BYTES / per_row) as usize).clamp(MIN_BATCH_ROWS, MAX_BATCH_ROWS)
}

/// What a stream holds besides its row group, counted in the memory budget: the batch being
/// decoded, the messages queued ahead ([`PREFETCH_MESSAGES`]) and the one being sent, each at
/// most [`MAX_MESSAGE_BYTES`].
const WORKING_BYTES: u64 = ((PREFETCH_MESSAGES + 2) * MAX_MESSAGE_BYTES) as u64;

/// Encoded messages buffered ahead of the gRPC stream: while one is sent, the next batches are
/// fetched, decoded and encoded. Bounds memory to a few batches per stream.
const PREFETCH_MESSAGES: usize = 2;

/// Aborts the decoding task when the response stream is dropped (client gone or cancelled).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Yields an empty batch of `schema` whenever `batches` has nothing for `every`, so that proxies
/// do not cut a stream whose data is slow to arrive.
fn with_keepalive(
    batches: impl Stream<Item = Result<RecordBatch, Status>> + Send + 'static,
    schema: SchemaRef,
    every: Duration,
) -> impl Stream<Item = Result<RecordBatch, Status>> + Send + 'static {
    futures::stream::unfold(Box::pin(batches), move |mut batches| {
        let schema = Arc::clone(&schema);
        async move {
            // `next` is cancel-safe: a timed-out poll loses nothing.
            match tokio::time::timeout(every, batches.next()).await {
                Ok(Some(item)) => Some((item, batches)),
                Ok(None) => None,
                Err(_) => {
                    tracing::debug!("keep-alive batch");
                    Some((Ok(RecordBatch::new_empty(schema)), batches))
                }
            }
        }
    })
}

/// The stream's messages: the schema at once, then each batch's (dictionaries as they change,
/// once per row group and column, not expanded), encoded without copying their buffers.
fn encode(
    schema: &Schema,
    batches: impl Stream<Item = Result<RecordBatch, Status>> + Send + 'static,
) -> Result<impl Stream<Item = Result<Message, Status>> + Send + 'static, ServiceError> {
    let mut encoder = IpcEncoder::new(schema).map_err(ServiceError::Arrow)?;
    let first = futures::stream::iter([Ok(encoder.schema_message())]);
    let rest = batches
        .map(move |batch| {
            let messages = batch.and_then(|batch| {
                encoder
                    .encode(&batch)
                    .map_err(|e| Status::from(ServiceError::Arrow(e)))
            });
            futures::stream::iter(match messages {
                Ok(messages) => messages.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(status) => vec![Err(status)],
            })
        })
        .flatten();
    Ok(first.chain(rest))
}

/// Runs `items` on the decode runtime, at most [`PREFETCH_MESSAGES`] ahead of the consumer; stops
/// after the first error. A panic there becomes a final `INTERNAL` item: without that, the task's
/// end would close the channel and the stream would look complete. A consumer that takes nothing
/// for `stall` while an item waits (a client that stopped reading without disconnecting) ends
/// the task, which gives back what it holds (its row group, its share of the memory budget);
/// the consumer then gets the items already queued and `RESOURCE_EXHAUSTED`.
fn run_ahead<T>(
    decoder: &tokio::runtime::Handle,
    items: impl Stream<Item = Result<T, Status>> + Send + 'static,
    stall: Duration,
) -> impl Stream<Item = Result<T, Status>> + Send + 'static
where
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(PREFETCH_MESSAGES);
    let items = crate::panics::catch_stream_panics(items, "DoGet decode task");
    let stalled = Arc::new(AtomicBool::new(false));
    let stalled_flag = Arc::clone(&stalled);
    let task = decoder.spawn(async move {
        let mut items = std::pin::pin!(items);
        while let Some(item) = items.next().await {
            let failed = item.is_err();
            match tokio::time::timeout(stall, tx.send(item)).await {
                Ok(Ok(())) if !failed => {}
                Ok(_) => break,
                Err(_) => {
                    tracing::warn!(
                        stall_seconds = stall.as_secs(),
                        "the client read nothing for stream_stall_seconds: ending the stream"
                    );
                    stalled_flag.store(true, Ordering::Relaxed);
                    break;
                }
            }
        }
    });
    futures::stream::unfold(
        Some((rx, AbortOnDrop(task), stalled)),
        move |state| async move {
            let (mut rx, guard, stalled) = state?;
            match rx.recv().await {
                Some(item) => Some((item, Some((rx, guard, stalled)))),
                None if stalled.load(Ordering::Relaxed) => Some((
                    Err(Status::resource_exhausted(format!(
                        "the client read nothing for {} s (stream_stall_seconds) while data \
                         waited: the stream was ended to give its memory back; read the \
                         endpoint again to resume",
                        stall.as_secs()
                    ))),
                    None,
                )),
                None => None,
            }
        },
    )
}

/// The footer's metadata with the reader asked for the types [`reader_schema`] chooses (INT96
/// timestamps in the promised unit; with `dictionary`, strings promised as dictionaries kept as
/// dictionaries). If the dictionary part is refused, the file still streams (normalisation casts);
/// the timestamp part is always accepted by the reader.
fn hinted_metadata(
    metadata: ArrowReaderMetadata,
    promised: &SchemaRef,
    types: &[RedshiftType],
    dictionary: bool,
) -> Result<ArrowReaderMetadata, ParquetError> {
    let file = Arc::clone(metadata.schema());
    let parquet = metadata.metadata().file_metadata().schema_descr();
    let mut last = None;
    for dictionary in [dictionary, false] {
        let hint = reader_schema(&file, parquet, promised, types, dictionary);
        if hint == file {
            return Ok(metadata);
        }
        let options = ArrowReaderOptions::new().with_schema(hint);
        match ArrowReaderMetadata::try_new(Arc::clone(metadata.metadata()), options) {
            Ok(hinted) => return Ok(hinted),
            Err(error) => {
                tracing::debug!(%error, dictionary, "the Parquet reader refused a type hint");
                last = Some(error);
            }
        }
    }
    Err(last.unwrap_or_else(|| ParquetError::General("no type hint applied".to_owned())))
}

fn read_error(error: ParquetError, bucket: &str, key: &str) -> ServiceError {
    match ParquetReadError::classify(error, bucket, key) {
        ParquetReadError::Store(e) => ServiceError::Store(e),
        ParquetReadError::Corrupt(message) => ServiceError::Corrupt {
            key: key.to_string(),
            message,
        },
    }
}

pub(super) async fn do_get(
    service: Arc<Service>,
    principal: &Principal,
    ticket: Ticket,
    span: tracing::Span,
) -> Result<BoxStream<'static, Result<Message, Status>>, ServiceError> {
    if let Some(command) = super::sql::decode(&ticket.ticket) {
        let messages = super::sql::do_get(&service, principal, command?).await?;
        return Ok(messages.map_ok(Message::from).boxed());
    }
    let payload = service.tickets.decode(&ticket.ticket, SystemTime::now())?;
    // The ticket is genuine; the caller must still be allowed to read its table now. A Flight SQL
    // query's ticket has no schema: the relations its query reads are in the run's columns
    // object, checked once that is read.
    let query = payload.schema.is_empty();
    if !query {
        principal.check(&payload.schema, &payload.table)?;
    }
    let table = TableRef::new(payload.schema.clone(), payload.table.clone());
    span.record("table", tracing::field::display(&table));
    span.record("run_id", payload.run_id.as_str());

    // The promised schema is stored once per run; the ticket carries its fingerprint.
    let stored = service.run_columns(&payload).await?;
    for [schema, table] in &stored.relations {
        principal.check(schema, table)?;
    }
    let columns: Vec<ColumnInfo> = stored.column_infos();
    let types: Vec<RedshiftType> = columns.iter().map(|c| c.redshift_type.clone()).collect();
    let mut schema = stored.promised_schema(&table, &columns);
    if payload.dictionary {
        schema = with_dictionary_strings(&schema, &types);
    }
    if payload.ewkb {
        schema = crate::catalog::with_ewkb_geometry(&schema, &types);
    }

    let bucket = service.stager.bucket().to_string();
    let key = payload.key.clone();
    let mut reader = ObjectReader::new(
        Arc::clone(&service.store),
        Path::from(key.as_str()),
        payload.file_size,
    )
    .with_footer_len((payload.footer_len > 0).then_some(payload.footer_len))
    .with_budget(service.stream_memory.clone())
    .with_working_bytes(WORKING_BYTES);
    let metadata = ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::new())
        .await
        .map_err(|e| read_error(e, &bucket, &key))?;
    let metadata = hinted_metadata(metadata, &schema, &types, payload.dictionary)
        .map_err(|e| read_error(e, &bucket, &key))?;
    let groups = metadata.metadata().num_row_groups();
    let selected = payload.row_groups().unwrap_or(0..groups);
    if selected.start > selected.end || selected.end > groups {
        return Err(ServiceError::Corrupt {
            key,
            message: format!("the ticket asks for row groups {selected:?} of {groups}"),
        });
    }
    let rows = batch_rows(metadata.metadata(), Some(&selected), &schema);
    // Wide files: the columns are decoded by several tasks at once (see `read_columns`).
    let groups = column_groups(metadata.metadata(), &selected, service.decoder.threads());
    let plan = ReadPlan {
        metadata,
        row_groups: selected,
        batch_rows: rows,
    };
    let (store, path, size) = (
        Arc::clone(&service.store),
        Path::from(key.as_str()),
        payload.file_size,
    );
    let others = move || ObjectReader::new(Arc::clone(&store), path.clone(), size);
    let (decoder, stall) = (service.decoder.handle(), service.stream_stall);
    let spawn = move |batches: Batches| run_ahead(&decoder, batches, stall).boxed();
    let (status_bucket, status_key) = (bucket.clone(), key.clone());
    let to_status = move |e: ParquetError| Status::from(read_error(e, &status_bucket, &status_key));
    let stream = read(plan, groups, reader, others, spawn, to_status)
        .map_err(|e| read_error(e, &bucket, &key))?;

    let batch_schema = Arc::clone(&schema);
    let batches = stream.and_then(move |batch| {
        let result = normalize_batch(&batch, &batch_schema, &types)
            .map_err(|e| Status::from(ServiceError::Normalize(e)));
        futures::future::ready(result)
    });

    let metrics = Arc::clone(&service.metrics);
    let rows_span = span.clone();
    let mut rows_sent: u64 = 0;
    let batches =
        with_keepalive(batches, Arc::clone(&schema), service.keepalive).inspect(move |batch| {
            if let Ok(batch) = batch {
                rows_sent += batch.num_rows() as u64;
                metrics.rows_sent.inc_by(batch.num_rows() as u64);
                rows_span.record("rows_sent", rows_sent);
            }
        });
    let encoded = encode(&schema, batches)?;

    let failed = Arc::new(AtomicBool::new(false));
    let failed_flag = Arc::clone(&failed);
    let metrics = Arc::clone(&service.metrics);
    let encoded =
        run_ahead(&service.decoder.handle(), encoded, service.stream_stall).inspect(move |item| {
            match item {
                Ok(data) => {
                    metrics.bytes_sent.inc_by(data.payload_len() as u64);
                }
                Err(_) => failed_flag.store(true, Ordering::Relaxed),
            }
        });
    // After the last message: the file was streamed to the end; tell the run before the stream
    // closes, so a client that has read everything knows the run has recorded it.
    let completion = futures::stream::once(async move {
        if !failed.load(Ordering::Relaxed)
            && let Err(error) = service
                .stager
                .file_consumed(
                    &payload.run_id,
                    &payload.endpoint_name(),
                    payload.run_endpoints,
                    &payload.reader,
                )
                .await
        {
            tracing::warn!(%error, "could not record a streamed file");
        }
        None
    })
    .filter_map(futures::future::ready);
    Ok(encoded.chain(completion).boxed())
}

#[cfg(test)]
mod tests {
    use arrow::array::{ArrayRef, Int32Array, StringArray};
    use parquet::file::reader::FileReader;
    use parquet::file::serialized_reader::SerializedFileReader;

    use super::*;
    use crate::decode::Decoder;

    /// A panic on the decode runtime ends the stream with INTERNAL; before, the task's end
    /// closed the channel and the stream looked complete.
    #[tokio::test]
    async fn a_panic_on_the_decode_runtime_ends_the_stream_with_internal() {
        let decoder = Decoder::new(1).unwrap();
        let items = futures::stream::iter([1, 2, 3]).map(|i| {
            assert!(i < 2, "panic while producing item {i}");
            Ok::<_, Status>(i)
        });
        let got: Vec<_> = run_ahead(&decoder.handle(), items, Duration::from_secs(60))
            .map(|item| item.map_err(|status| status.code()))
            .collect()
            .await;
        assert_eq!(got, vec![Ok(1), Err(tonic::Code::Internal)]);
    }

    /// Sets its flag when dropped: tells that the decode task let go of what it held.
    struct Released(Arc<AtomicBool>);

    impl Drop for Released {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }

    /// A consumer that stops taking items: after `stall`, the producer's stream is dropped (its
    /// row group and budget share with it); the consumer gets what was queued, then
    /// RESOURCE_EXHAUSTED. A consumer reading slowly but steadily is never cut.
    #[tokio::test]
    async fn a_stalled_consumer_ends_the_stream_and_frees_what_it_held() {
        let decoder = Decoder::new(1).unwrap();
        let released = Arc::new(AtomicBool::new(false));
        let guard = Released(Arc::clone(&released));
        let items = futures::stream::iter(0..1000).map(move |i| {
            let _held = &guard;
            Ok::<_, Status>(i)
        });
        let mut stream = Box::pin(run_ahead(
            &decoder.handle(),
            items,
            Duration::from_millis(200),
        ));
        assert_eq!(stream.next().await.unwrap().unwrap(), 0);
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(released.load(Ordering::Relaxed), "the producer let go");
        let rest: Vec<_> = stream.collect().await;
        let codes: Vec<_> = rest
            .iter()
            .map(|r| r.as_ref().map_err(|s| s.code()).copied())
            .collect();
        assert!(codes.len() <= PREFETCH_MESSAGES + 2, "{codes:?}");
        assert_eq!(codes.last(), Some(&Err(tonic::Code::ResourceExhausted)));
        assert!(
            codes[..codes.len() - 1].iter().all(Result::is_ok),
            "{codes:?}"
        );

        let items = futures::stream::iter(0..20).map(Ok::<_, Status>);
        let mut slow = Box::pin(run_ahead(
            &decoder.handle(),
            items,
            Duration::from_millis(300),
        ));
        let mut got = Vec::new();
        while let Some(item) = slow.next().await {
            got.push(item.unwrap());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(got, (0..20).collect::<Vec<_>>());
    }

    fn metadata(batch: &RecordBatch, rows_per_group: usize) -> ParquetMetaData {
        let bytes = crate::testing::parquet_bytes(batch, rows_per_group);
        SerializedFileReader::new(bytes::Bytes::from(bytes))
            .unwrap()
            .metadata()
            .clone()
    }

    #[test]
    fn batches_aim_at_one_megabyte_within_bounds() {
        let ints: ArrayRef = Arc::new(Int32Array::from_iter_values(0..20_000));
        let narrow = RecordBatch::try_from_iter([("i", ints)]).unwrap();
        let meta = metadata(&narrow, 10_000);
        assert_eq!(batch_rows(&meta, None, &narrow.schema()), MAX_BATCH_ROWS);

        // 40 columns of 100-byte strings: about 4 KB a row, so about 256 rows a megabyte.
        let text: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..2000).map(|i| format!("{i:0>100}")),
        ));
        let wide =
            RecordBatch::try_from_iter((0..40).map(|c| (format!("c{c}"), Arc::clone(&text))))
                .unwrap();
        let meta = metadata(&wide, 1000);
        let rows = batch_rows(&meta, None, &wide.schema());
        assert!((MIN_BATCH_ROWS..=300).contains(&rows), "{rows}");
        assert_eq!(batch_rows(&meta, Some(&(1..2)), &wide.schema()), rows);

        // The schema's fixed widths are a floor: 600 Int64 columns are 4.8 KB a row.
        let wide_ints: Vec<arrow::datatypes::Field> = (0..600)
            .map(|c| {
                arrow::datatypes::Field::new(
                    format!("c{c}"),
                    arrow::datatypes::DataType::Int64,
                    true,
                )
            })
            .collect();
        let schema = Schema::new(wide_ints);
        assert_eq!(
            batch_rows(&metadata(&narrow, 10_000), None, &schema),
            MIN_BATCH_ROWS
        );
    }
}
