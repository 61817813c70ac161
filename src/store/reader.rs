//! [`ObjectReader`]: parquet's `AsyncFileReader` over one object of an `ObjectStore` whose size
//! is known. The footer costs one ranged GET (its length, once known, travels in the ticket);
//! each row group's column chunks are one `get_ranges` call, holding their share of the
//! [`MemoryBudget`] while decoded; the next row group is fetched while the current one is
//! decoded (a spawned task, aborted when the reader is dropped).
//!
//! Imports: the sibling [`MemoryBudget`] only.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryFutureExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{FooterTail, ParquetMetaData, ParquetMetaDataReader};

use super::MemoryBudget;

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
    /// Bytes the stream holds besides row groups (decoded batches, encoded messages), taken
    /// from the budget with its first row group and held to the end.
    working_bytes: u64,
    working: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The budget share of each read-ahead group, if not the bytes this reader fetches of it
    /// (when other readers fetch the rest of the row group's columns without a budget).
    shares: Option<Vec<u64>>,
    /// The column-chunk ranges of each row group to read, in reading order.
    read_ahead: Vec<Vec<Range<u64>>>,
    /// The next row group, being fetched while the current one is decoded.
    pending: Option<Pending>,
    /// Readers of one stream that each fetch some of a row group's columns, one of them holding
    /// the whole row group's share: the others fetch a row group only once it holds that share.
    gate: Gate,
}

/// A reader's part in sharing one budget share per row group among several readers.
#[derive(Debug)]
enum Gate {
    /// It reserves its own row groups.
    Alone,
    /// It reserves whole row groups for the others, and tells them how many it has reserved so
    /// far (group N is reserved once the count passes N).
    Lead(tokio::sync::watch::Sender<usize>),
    /// It fetches row group N once the lead's count passes N, without a budget of its own.
    Follow(tokio::sync::watch::Receiver<usize>),
}

/// What the readers following a lead reader wait on ([`ObjectReader::leading`]).
#[derive(Clone, Debug)]
pub struct ReadGate(tokio::sync::watch::Receiver<usize>);

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
            working_bytes: 0,
            working: None,
            shares: None,
            read_ahead: Vec::new(),
            pending: None,
            gate: Gate::Alone,
        }
    }

    /// Makes this reader take each row group's share of the budget for the readers that follow
    /// the returned gate ([`ObjectReader::following`]): they fetch their columns of a row group,
    /// ahead or not, only once this reader has reserved it. Without that, they would fetch
    /// (and hold) row groups the budget has no room for.
    pub fn leading(mut self) -> (Self, ReadGate) {
        let (tx, rx) = tokio::sync::watch::channel(0);
        self.gate = Gate::Lead(tx);
        (self, ReadGate(rx))
    }

    /// Makes this reader fetch a row group only once the lead reader of `gate` reserved it.
    pub fn following(mut self, gate: ReadGate) -> Self {
        self.gate = Gate::Follow(gate.0);
        self
    }

    /// A lead reader tells its followers that row group `group` is reserved.
    fn reserved(&self, group: usize) {
        if let Gate::Lead(tx) = &self.gate {
            tx.send_if_modified(|count| {
                let grew = *count <= group;
                *count = (*count).max(group + 1);
                grew
            });
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
        // A follower's fetch waits, on its own task, until the lead holds the row group's share.
        let gate = match &self.gate {
            Gate::Follow(rx) => Some(rx.clone()),
            _ => None,
        };
        let permit = match &self.budget {
            Some(budget) => {
                let bytes = self.share(Some(group), &ranges);
                match budget.try_reserve(bytes) {
                    Some(permit) => Some(permit),
                    None => return,
                }
            }
            None => None,
        };
        self.reserved(group);
        let store = Arc::clone(&self.store);
        let path = self.path.clone();
        let task = tokio::spawn(async move {
            if let Some(mut gate) = gate {
                // An error: the lead is gone, and with it the stream.
                let _ = gate.wait_for(|count| *count > group).await;
            }
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

    /// Counts `bytes` of the stream's own (decoded batches, encoded messages) in the budget too,
    /// taken with the first row group.
    pub fn with_working_bytes(mut self, bytes: u64) -> Self {
        self.working_bytes = bytes;
        self
    }

    /// Makes the fetch of read-ahead group N take `shares[N]` bytes from the budget, whatever
    /// this reader fetches of it: the whole row group's share, when other readers (without a
    /// budget) fetch its other columns.
    pub fn with_shares(mut self, shares: Vec<u64>) -> Self {
        self.shares = Some(shares);
        self
    }

    /// The budget share of read-ahead group `group`, fetching `ranges` of it.
    fn share(&self, group: Option<usize>, ranges: &[Range<u64>]) -> u64 {
        let own = || ranges.iter().map(|r| r.end.saturating_sub(r.start)).sum();
        match (&self.shares, group) {
            (Some(shares), Some(group)) => shares.get(group).copied().unwrap_or_else(own),
            _ => own(),
        }
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

    /// Reads and decodes the footer with one ranged GET when it fits the last 64 KiB of the file
    /// (two otherwise); returns the metadata and the footer's length (metadata plus the 8-byte
    /// tail).
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
pub(super) const FOOTER_PREFETCH: usize = 64 * 1024;

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
                        let bytes = self.share(group, &ranges);
                        let working = match self.working {
                            Some(_) => 0,
                            None => self.working_bytes,
                        };
                        let (held, working) = budget.reserve_with(bytes, working).await;
                        self.held = Some(held);
                        if self.working.is_none() {
                            self.working = working;
                        }
                    }
                    if let Some(group) = group {
                        self.reserved(group);
                        if let Gate::Follow(rx) = &mut self.gate {
                            // An error: the lead is gone, and with it the stream.
                            let _ = rx.wait_for(|count| *count > group).await;
                        }
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
