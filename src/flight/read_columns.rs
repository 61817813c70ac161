//! DoGet's Parquet decoding spread over the decode threads for wide files: the columns are cut
//! into groups of about equal compressed size, each group is read (its own column chunks, its own
//! share of the memory budget) and decoded by a task of its own, and the groups' batches, which
//! end on the same rows because every group uses the same batch size and row groups, are put back
//! side by side into whole batches. One stream of a 100-column table then keeps every decode thread
//! busy, as a Parquet reader that decodes columns in parallel (pyarrow's) does.
//!
//! Imports: the store's reader and the crate's decoder, nothing of the Flight layer but its
//! run-ahead helper.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaData;
use tonic::Status;

use crate::store::ObjectReader;

/// Columns a decoding task takes at least: narrower groups cost more in per-task overhead and
/// S3 requests than they gain.
const MIN_COLUMNS_PER_GROUP: usize = 8;

/// The top-level columns (by index) of each decoding group: `tasks` groups at most, contiguous,
/// of about equal compressed bytes over `row_groups`; one group when the file is narrow.
pub(super) fn column_groups(
    metadata: &ParquetMetaData,
    row_groups: &Range<usize>,
    tasks: usize,
) -> Vec<Vec<usize>> {
    let schema = metadata.file_metadata().schema_descr();
    let roots = schema.root_schema().get_fields().len();
    let groups = tasks.min(roots / MIN_COLUMNS_PER_GROUP).max(1);
    if groups == 1 {
        return vec![(0..roots).collect()];
    }
    let mut bytes = vec![0u64; roots];
    for rg in &metadata.row_groups()[row_groups.clone()] {
        for (leaf, chunk) in rg.columns().iter().enumerate() {
            bytes[schema.get_column_root_idx(leaf)] += chunk.compressed_size().max(0) as u64;
        }
    }
    let total: u64 = bytes.iter().sum::<u64>().max(1);
    let mut cut = vec![Vec::new()];
    let mut sum = 0u64;
    for (root, size) in bytes.iter().enumerate() {
        let current = cut.len() as u64;
        if !cut[cut.len() - 1].is_empty()
            && cut.len() < groups
            && sum >= total * current / groups as u64
            && roots - root >= groups - cut.len()
        {
            cut.push(Vec::new());
        }
        cut.last_mut().expect("one group at least").push(root);
        sum += size;
    }
    cut
}

/// The byte ranges of the column chunks of `columns` (top-level indexes) in each row group of
/// `groups`, for reading ahead.
fn chunk_ranges(
    metadata: &ParquetMetaData,
    groups: &Range<usize>,
    columns: &[usize],
) -> Vec<Vec<Range<u64>>> {
    let schema = metadata.file_metadata().schema_descr();
    metadata.row_groups()[groups.clone()]
        .iter()
        .map(|rg| {
            rg.columns()
                .iter()
                .enumerate()
                .filter(|(leaf, _)| columns.contains(&schema.get_column_root_idx(*leaf)))
                .map(|(_, c)| {
                    let (start, len) = c.byte_range();
                    start..start + len
                })
                .collect()
        })
        .collect()
}

/// Bytes decoding one column chunk holds besides its compressed bytes: the decompressed page
/// being decoded and the decoded dictionary (Parquet writers cut pages and dictionaries at about
/// 1 MiB), at most the chunk's uncompressed size.
const DECODE_BYTES_PER_COLUMN: u64 = 1 << 20;

/// Each row group's share of the memory budget (`groups`, in reading order): what a stream holds
/// while decoding it, its compressed column chunks plus each chunk's decoding state
/// ([`DECODE_BYTES_PER_COLUMN`]).
pub(super) fn row_group_shares(metadata: &ParquetMetaData, groups: &Range<usize>) -> Vec<u64> {
    metadata.row_groups()[groups.clone()]
        .iter()
        .map(|rg| {
            rg.columns()
                .iter()
                .map(|c| {
                    let decoding =
                        (c.uncompressed_size().max(0) as u64).min(DECODE_BYTES_PER_COLUMN);
                    c.byte_range().1 + decoding
                })
                .sum()
        })
        .collect()
}

/// What DoGet reads of one file: its metadata (with the type hints), the row groups, the rows
/// per batch.
pub(super) struct ReadPlan {
    pub(super) metadata: ArrowReaderMetadata,
    pub(super) row_groups: Range<usize>,
    pub(super) batch_rows: usize,
}

/// A stream of batches, errors already statuses.
pub(super) type Batches = BoxStream<'static, Result<RecordBatch, Status>>;

/// The batches of `plan`, decoded by one task per group of [`column_groups`]: `first` reads the
/// first group (it read the footer and holds the stream's share of the budget: its working bytes
/// and each row group whole), `reader()` makes the others' readers, without a budget; `spawn` runs a group's stream on the decode threads;
/// `to_status` turns reading errors into statuses. Fails if the Parquet reader refuses the plan.
pub(super) fn read(
    plan: ReadPlan,
    groups: Vec<Vec<usize>>,
    first: ObjectReader,
    reader: impl Fn() -> ObjectReader,
    spawn: impl Fn(Batches) -> Batches,
    to_status: impl Fn(ParquetError) -> Status + Clone + Send + Sync + 'static,
) -> Result<Batches, ParquetError> {
    let ReadPlan {
        metadata,
        row_groups,
        batch_rows,
    } = plan;
    let whole = |reader: ObjectReader, mask: Option<ProjectionMask>| {
        let mut builder =
            ParquetRecordBatchStreamBuilder::new_with_metadata(reader, metadata.clone())
                .with_batch_size(batch_rows)
                .with_row_groups(row_groups.clone().collect());
        if let Some(mask) = mask {
            builder = builder.with_projection(mask);
        }
        let to_status = to_status.clone();
        builder
            .build()
            .map(|stream| stream.map_err(to_status).boxed())
    };
    // The first group's reader takes each row group's whole share of the memory budget, the
    // others none: one reservation per stream, so streams never hold part of a row group while
    // waiting for the rest (which could deadlock them all).
    let first = first.with_shares(row_group_shares(metadata.metadata(), &row_groups));
    if groups.len() <= 1 {
        let all: Vec<usize> = (0..metadata.schema().fields().len()).collect();
        let first = first.with_read_ahead(chunk_ranges(metadata.metadata(), &row_groups, &all));
        return whole(first, None);
    }
    let schema = Arc::clone(metadata.schema());
    let descr = metadata.metadata().file_metadata().schema_descr_ptr();
    let mut streams = Vec::with_capacity(groups.len());
    // The others fetch a row group only once the first holds its share.
    let (first, gate) = first.leading();
    let mut first = Some(first);
    for columns in &groups {
        let reader = first
            .take()
            .unwrap_or_else(|| reader().following(gate.clone()))
            .with_read_ahead(chunk_ranges(metadata.metadata(), &row_groups, columns));
        let mask = ProjectionMask::roots(&descr, columns.iter().copied());
        streams.push(spawn(whole(reader, Some(mask))?));
    }
    let width = schema.fields().len();
    let zipped = futures::stream::unfold(Some(streams), move |state| {
        let groups = groups.clone();
        let schema = Arc::clone(&schema);
        async move {
            let mut streams = state?;
            let parts = futures::future::join_all(streams.iter_mut().map(|s| s.next())).await;
            if parts.iter().all(Option::is_none) {
                return None;
            }
            let mut columns: Vec<Option<ArrayRef>> = vec![None; width];
            let mut rows = None;
            for (part, group) in parts.into_iter().zip(&groups) {
                let batch = match part {
                    Some(Ok(batch)) => batch,
                    Some(Err(status)) => return Some((Err(status), None)),
                    None => return Some((Err(uneven("a column group ended early")), None)),
                };
                if *rows.get_or_insert(batch.num_rows()) != batch.num_rows() {
                    return Some((Err(uneven("column groups cut batches apart")), None));
                }
                for (array, &root) in batch.columns().iter().zip(group) {
                    columns[root] = Some(Arc::clone(array));
                }
            }
            let columns: Option<Vec<ArrayRef>> = columns.into_iter().collect();
            let batch = columns
                .ok_or_else(|| uneven("a column group lacks a column"))
                .and_then(|columns| {
                    RecordBatch::try_new(schema, columns)
                        .map_err(|e| Status::internal(format!("parallel decoding: {e}")))
                });
            Some((batch, Some(streams)))
        }
    });
    Ok(zipped.boxed())
}

fn uneven(what: &str) -> Status {
    Status::internal(format!("parallel decoding: {what}"))
}

#[cfg(test)]
#[path = "read_columns_tests.rs"]
mod tests;
