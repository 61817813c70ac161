//! Object storage: the S3 client (object_store, with a custom endpoint and path-style addressing
//! for S3-compatible servers) and [`ObjectReader`], parquet's `AsyncFileReader` over any
//! [`ObjectStore`] with the file size known up front (taken from the manifest and carried in the
//! ticket), so reading a file's footer needs no HEAD request.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryFutureExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{FooterTail, ParquetMetaData, ParquetMetaDataReader};
use secrecy::ExposeSecret;

use crate::config::Config;

/// What went wrong talking to S3, classified for status codes and retries.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist (any more).
    #[error("s3://{bucket}/{path} does not exist")]
    NotFound {
        /// Bucket.
        bucket: String,
        /// Key.
        path: String,
    },
    /// S3 refused our credentials or permissions.
    #[error("S3 denied access to s3://{bucket}/{path}: {message}")]
    Denied {
        /// Bucket.
        bucket: String,
        /// Key.
        path: String,
        /// S3's answer.
        message: String,
    },
    /// S3 could not be reached or failed.
    #[error("cannot read s3://{bucket}/{path}: {message}")]
    Unavailable {
        /// Bucket.
        bucket: String,
        /// Key.
        path: String,
        /// The cause chain.
        message: String,
    },
    /// The S3 client could not be built from the configuration.
    #[error("invalid S3 configuration: {0}")]
    Config(String),
}

impl StoreError {
    /// Classifies an object_store error for `bucket`/`path`.
    pub fn from_object_store(error: object_store::Error, bucket: &str, path: &str) -> Self {
        let (bucket, path) = (bucket.to_string(), path.to_string());
        match error {
            object_store::Error::NotFound { .. } => Self::NotFound { bucket, path },
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => Self::Denied {
                bucket,
                path,
                message: error_chain(&error),
            },
            other => Self::Unavailable {
                bucket,
                path,
                message: error_chain(&other),
            },
        }
    }
}

/// A failed Parquet read, classified: S3 failed, or the bytes are not the Parquet they should be.
#[derive(Debug)]
pub enum ParquetReadError {
    /// S3's error.
    Store(StoreError),
    /// What Parquet said about the bytes.
    Corrupt(String),
}

impl ParquetReadError {
    /// Classifies a Parquet reader's error for object `key` of `bucket`.
    pub fn classify(error: ParquetError, bucket: &str, key: &str) -> Self {
        match error {
            ParquetError::External(source) => match source.downcast::<object_store::Error>() {
                Ok(e) => Self::Store(StoreError::from_object_store(*e, bucket, key)),
                Err(other) => Self::Corrupt(other.to_string()),
            },
            other => Self::Corrupt(other.to_string()),
        }
    }
}

/// Renders an error with its whole `source()` chain.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// Builds the S3 client for the staging bucket. Explicit keys win; otherwise object_store's
/// credential chain (environment, web identity, ECS and instance metadata) is used.
pub fn build_s3(config: &Config) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&config.s3_bucket)
        .with_region(&config.s3_region)
        .with_retry(RetryConfig {
            max_retries: config.s3_max_retries,
            retry_timeout: config.s3_retry_timeout,
            ..RetryConfig::default()
        })
        .with_client_options(
            ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(5))
                .with_timeout(Duration::from_secs(120)),
        );
    if let Some(endpoint) = &config.s3_endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(false)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    if let (Some(key), Some(secret)) = (&config.aws_access_key_id, &config.aws_secret_access_key) {
        builder = builder
            .with_access_key_id(key)
            .with_secret_access_key(secret.expose_secret());
    }
    let store = builder
        .build()
        .map_err(|e| StoreError::Config(error_chain(&e)))?;
    Ok(Arc::new(store))
}

/// A server-wide bound on the row-group bytes DoGet streams hold at once: each stream takes its
/// row group's share before fetching it and gives it back when it moves to the next one (or ends),
/// so many concurrent clients queue for memory instead of exhausting it. A row group larger than
/// the whole budget takes all of it, and runs alone.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    permits: Arc<tokio::sync::Semaphore>,
    total: u32,
}

/// Bytes per permit of a [`MemoryBudget`].
const BUDGET_UNIT: u64 = 64 * 1024;

impl MemoryBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: u64) -> Self {
        let total = (bytes / BUDGET_UNIT).clamp(1, u64::from(u32::MAX >> 4)) as u32;
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(total as usize)),
            total,
        }
    }

    /// Waits until `bytes` are free, and holds them until the permit is dropped.
    pub async fn reserve(&self, bytes: u64) -> tokio::sync::OwnedSemaphorePermit {
        let units = bytes.div_ceil(BUDGET_UNIT).clamp(1, u64::from(self.total)) as u32;
        Arc::clone(&self.permits)
            .acquire_many_owned(units)
            .await
            .unwrap_or_else(|_| unreachable!("the budget's semaphore is never closed"))
    }

    /// Takes `bytes` if they are free right now.
    pub fn try_reserve(&self, bytes: u64) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let units = bytes.div_ceil(BUDGET_UNIT).clamp(1, u64::from(self.total)) as u32;
        Arc::clone(&self.permits).try_acquire_many_owned(units).ok()
    }

    /// Bytes free right now.
    pub fn available(&self) -> u64 {
        self.permits.available_permits() as u64 * BUDGET_UNIT
    }
}

/// Parquet's [`AsyncFileReader`] over one object of an [`ObjectStore`] whose size is known.
#[derive(Debug)]
pub struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    file_size: u64,
    footer_len: Option<u64>,
    budget: Option<MemoryBudget>,
    /// The share of the budget the row group being decoded holds.
    held: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The column-chunk ranges of each row group to read, in reading order.
    read_ahead: Vec<Vec<Range<u64>>>,
    /// The next row group, being fetched while the current one is decoded.
    pending: Option<Pending>,
}

/// A row group fetched ahead: its index in the read-ahead list and the task fetching it.
#[derive(Debug)]
struct Pending {
    group: usize,
    task: tokio::task::JoinHandle<Fetched>,
}

/// What a read-ahead task brings back: the ranges, their bytes (or the error) and the budget share.
type Fetched = (
    Vec<Range<u64>>,
    object_store::Result<Vec<Bytes>>,
    Option<tokio::sync::OwnedSemaphorePermit>,
);

impl Drop for ObjectReader {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            pending.task.abort();
        }
    }
}

impl ObjectReader {
    /// A reader of `path`, `file_size` bytes long.
    pub fn new(store: Arc<dyn ObjectStore>, path: Path, file_size: u64) -> Self {
        Self {
            store,
            path,
            file_size,
            footer_len: None,
            budget: None,
            held: None,
            read_ahead: Vec::new(),
            pending: None,
        }
    }

    /// Fetches row group N+1 of `groups` (each the byte ranges of one row group's column chunks,
    /// in reading order) while N is decoded, when the memory budget has room for it.
    pub fn with_read_ahead(mut self, groups: Vec<Vec<Range<u64>>>) -> Self {
        self.read_ahead = groups;
        self
    }

    /// The read-ahead group holding `offset`.
    fn group_of(&self, offset: u64) -> Option<usize> {
        self.read_ahead
            .iter()
            .position(|group| group.iter().any(|r| r.contains(&offset)))
    }

    /// Starts fetching read-ahead group `group`, if it exists and the budget has room now.
    fn start_read_ahead(&mut self, group: usize) {
        let Some(ranges) = self.read_ahead.get(group).cloned() else {
            return;
        };
        let permit = match &self.budget {
            Some(budget) => {
                let bytes = ranges.iter().map(|r| r.end - r.start).sum();
                match budget.try_reserve(bytes) {
                    Some(permit) => Some(permit),
                    None => return,
                }
            }
            None => None,
        };
        let store = Arc::clone(&self.store);
        let path = self.path.clone();
        let task = tokio::spawn(async move {
            let bytes = store.get_ranges(&path, &ranges).await;
            (ranges, bytes, permit)
        });
        self.pending = Some(Pending { group, task });
    }

    /// Serves `ranges` from a finished read-ahead, if it covers them all.
    fn serve(fetched: &[Range<u64>], bytes: &[Bytes], ranges: &[Range<u64>]) -> Option<Vec<Bytes>> {
        ranges
            .iter()
            .map(|want| {
                let (i, have) = fetched
                    .iter()
                    .enumerate()
                    .find(|(_, have)| have.start <= want.start && want.end <= have.end)?;
                let start = (want.start - have.start) as usize;
                let end = (want.end - have.start) as usize;
                (end <= bytes[i].len()).then(|| bytes[i].slice(start..end))
            })
            .collect()
    }

    /// Makes row-group fetches take their bytes from `budget` first.
    pub fn with_budget(mut self, budget: Option<MemoryBudget>) -> Self {
        self.budget = budget;
        self
    }

    /// Tells the reader the footer's length (metadata plus the 8-byte tail, as
    /// [`ObjectReader::read_footer`] returns it), so the metadata costs exactly one ranged GET.
    pub fn with_footer_len(mut self, footer_len: Option<u64>) -> Self {
        self.footer_len = footer_len.filter(|&len| len >= 8 && len <= self.file_size);
        self
    }

    /// Reads and decodes the footer with one ranged GET when it fits [`FOOTER_PREFETCH`] (two
    /// otherwise); returns the metadata and the footer's length (metadata plus the 8-byte tail).
    pub async fn read_footer(&self) -> parquet::errors::Result<(ParquetMetaData, u64)> {
        const TAIL: u64 = 8;
        let size = self.file_size;
        if size < TAIL + 4 {
            return Err(ParquetError::General(format!(
                "{size} bytes is too short for a Parquet file"
            )));
        }
        let suffix = size.min(FOOTER_PREFETCH as u64);
        let bytes = self
            .store
            .get_range(&self.path, size - suffix..size)
            .await
            .map_err(parquet_error)?;
        if bytes.len() as u64 != suffix {
            return Err(ParquetError::General(format!(
                "asked for the last {suffix} bytes, got {}",
                bytes.len()
            )));
        }
        let tail: [u8; 8] = bytes[bytes.len() - 8..]
            .try_into()
            .map_err(|_| ParquetError::General("short footer".into()))?;
        let metadata_len = FooterTail::try_new(&tail)?.metadata_length() as u64;
        let footer_len = metadata_len + TAIL;
        if footer_len + 4 > size {
            return Err(ParquetError::General(format!(
                "footer of {metadata_len} bytes does not fit a {size}-byte file"
            )));
        }
        let metadata = if footer_len <= suffix {
            let start = (suffix - footer_len) as usize;
            ParquetMetaDataReader::decode_metadata(&bytes[start..bytes.len() - 8])?
        } else {
            let rest = self
                .store
                .get_range(&self.path, size - footer_len..size - TAIL)
                .await
                .map_err(parquet_error)?;
            ParquetMetaDataReader::decode_metadata(&rest)?
        };
        Ok((metadata, footer_len))
    }
}

fn parquet_error(error: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(error))
}

/// Bytes of the file's tail fetched with the footer in one request: most footers fit, so the
/// metadata costs one ranged GET.
const FOOTER_PREFETCH: usize = 64 * 1024;

impl AsyncFileReader for ObjectReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.store
            .get_range(&self.path, range)
            .map_err(parquet_error)
            .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            // The previous row group is decoded once the next one is asked for.
            self.held = None;
            let group = ranges.first().and_then(|r| self.group_of(r.start));
            let mut served = None;
            if let Some(pending) = self.pending.take() {
                if Some(pending.group) == group {
                    let (fetched, bytes, permit) = pending
                        .task
                        .await
                        .map_err(|e| ParquetError::General(format!("reading ahead failed: {e}")))?;
                    let bytes = bytes.map_err(parquet_error)?;
                    served = Self::serve(&fetched, &bytes, &ranges);
                    self.held = permit;
                } else {
                    pending.task.abort();
                }
            }
            let result = match served {
                Some(bytes) => Ok(bytes),
                None => {
                    if self.held.is_none()
                        && let Some(budget) = &self.budget
                    {
                        let bytes = ranges.iter().map(|r| r.end.saturating_sub(r.start)).sum();
                        self.held = Some(budget.reserve(bytes).await);
                    }
                    self.store
                        .get_ranges(&self.path, &ranges)
                        .await
                        .map_err(parquet_error)
                }
            };
            if let Some(group) = group {
                self.start_read_ahead(group + 1);
            }
            result
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let file_size = self.file_size;
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .with_prefetch_hint(Some(
                    self.footer_len.map_or(FOOTER_PREFETCH, |len| len as usize),
                ))
                .load_and_finish(self, file_size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int32Array, RecordBatch};
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};
    use parquet::arrow::async_reader::AsyncFileReader;

    use super::*;

    /// A Parquet file of `columns` Int32 columns and 10 rows in row groups of 4.
    fn file(columns: usize) -> Vec<u8> {
        let arrays: Vec<(String, ArrayRef)> = (0..columns)
            .map(|c| {
                let values: ArrayRef = Arc::new(Int32Array::from_iter_values(0..10));
                (format!("column_with_a_long_name_{c}"), values)
            })
            .collect();
        let batch = RecordBatch::try_from_iter(arrays).unwrap();
        crate::testing::parquet_bytes(&batch, 4)
    }

    async fn reader(bytes: Vec<u8>) -> ObjectReader {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let size = bytes.len() as u64;
        store
            .put(&Path::from("f.parquet"), PutPayload::from(bytes))
            .await
            .unwrap();
        ObjectReader::new(store, Path::from("f.parquet"), size)
    }

    #[tokio::test]
    async fn footers_small_and_larger_than_the_prefetch_are_read_and_measured() {
        for columns in [3, 800] {
            let bytes = file(columns);
            let metadata_len =
                u32::from_le_bytes(bytes[bytes.len() - 8..][..4].try_into().unwrap());
            let mut reader = reader(bytes).await;
            let (metadata, footer_len) = reader.read_footer().await.unwrap();
            assert_eq!(footer_len, u64::from(metadata_len) + 8, "{columns} columns");
            assert_eq!(
                footer_len > FOOTER_PREFETCH as u64,
                columns == 800,
                "both paths are exercised"
            );
            assert_eq!(metadata.num_row_groups(), 3);
            assert_eq!(metadata.file_metadata().num_rows(), 10);
            assert_eq!(
                metadata.file_metadata().schema_descr().num_columns(),
                columns
            );
            // Told the footer's length, the reader fetches exactly it and decodes the same.
            reader = reader.with_footer_len(Some(footer_len));
            let again = reader.get_metadata(None).await.unwrap();
            assert_eq!(again.num_row_groups(), 3);
            assert_eq!(again.file_metadata().num_rows(), 10);
        }
    }

    #[tokio::test]
    async fn row_groups_hold_their_share_of_the_budget_until_the_next_one() {
        let budget = MemoryBudget::new(10 * BUDGET_UNIT);
        let bytes = file(2);
        let mut reader = reader(bytes).await.with_budget(Some(budget.clone()));
        reader
            .get_byte_ranges(vec![0..BUDGET_UNIT, BUDGET_UNIT..3 * BUDGET_UNIT / 2])
            .await
            .err();
        assert_eq!(
            budget.available(),
            8 * BUDGET_UNIT,
            "rounded up to whole units"
        );
        reader.get_byte_ranges(vec![0..10, 20..30]).await.unwrap();
        assert_eq!(
            budget.available(),
            9 * BUDGET_UNIT,
            "the previous share went back"
        );
        // Bigger than the whole budget: takes all of it, so it waits for the others.
        let other = budget.reserve(100 * BUDGET_UNIT);
        tokio::pin!(other);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), &mut other)
                .await
                .is_err(),
            "waits while another stream holds a share"
        );
        drop(reader);
        let all = other.await;
        assert_eq!(budget.available(), 0);
        drop(all);
        assert_eq!(budget.available(), 10 * BUDGET_UNIT);
    }

    #[tokio::test]
    async fn the_next_row_group_is_fetched_while_the_current_one_is_decoded() {
        use futures::TryStreamExt;
        use parquet::arrow::ParquetRecordBatchStreamBuilder;

        let bytes = file(2);
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("f.parquet");
        let size = bytes.len() as u64;
        store.put(&path, PutPayload::from(bytes)).await.unwrap();
        let (metadata, _) = ObjectReader::new(Arc::clone(&store), path.clone(), size)
            .read_footer()
            .await
            .unwrap();
        let groups: Vec<Vec<Range<u64>>> = metadata
            .row_groups()
            .iter()
            .map(|rg| {
                rg.columns()
                    .iter()
                    .map(|c| c.byte_range().0..c.byte_range().0 + c.byte_range().1)
                    .collect()
            })
            .collect();
        let budget = MemoryBudget::new(100 * BUDGET_UNIT);
        let reader = || {
            ObjectReader::new(Arc::clone(&store), path.clone(), size)
                .with_read_ahead(groups.clone())
                .with_budget(Some(budget.clone()))
        };
        // Everything arrives, in order.
        let batches: Vec<_> = ParquetRecordBatchStreamBuilder::new(reader())
            .await
            .unwrap()
            .with_batch_size(4)
            .build()
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let rows: Vec<usize> = batches.iter().map(|b| b.num_rows()).collect();
        assert_eq!(rows, [4, 4, 2]);
        assert_eq!(
            budget.available(),
            100 * BUDGET_UNIT,
            "every share went back"
        );

        // Row group 1 is fetched while row group 0 is read: it survives the file's deletion, and
        // row group 2, fetched only then, does not.
        let mut stream = ParquetRecordBatchStreamBuilder::new(reader())
            .await
            .unwrap()
            .with_batch_size(4)
            .build()
            .unwrap();
        assert_eq!(stream.try_next().await.unwrap().unwrap().num_rows(), 4);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        store.delete(&path).await.unwrap();
        assert_eq!(stream.try_next().await.unwrap().unwrap().num_rows(), 4);
        assert!(stream.try_next().await.is_err(), "row group 2 is gone");
        drop(stream);
        assert_eq!(budget.available(), 100 * BUDGET_UNIT);
    }

    #[tokio::test]
    async fn files_that_are_not_parquet_are_refused() {
        for bytes in [
            b"PAR1".to_vec(),
            b"just some text that is long enough".to_vec(),
            [b"PAR1".as_slice(), &[0xff, 0xff, 0xff, 0x00], b"PAR1"].concat(),
        ] {
            let reader = reader(bytes.clone()).await;
            assert!(reader.read_footer().await.is_err(), "{bytes:?}");
        }
        // A nonsense footer length in the ticket is ignored, not trusted.
        let bytes = file(2);
        let size = bytes.len() as u64;
        let mut reader = reader(bytes).await.with_footer_len(Some(size + 10));
        assert_eq!(reader.get_metadata(None).await.unwrap().num_row_groups(), 3);
    }
}
