//! The layout of a staged run: each file's footer (its length and its row groups), read once at
//! planning, and the run's division into endpoints. A file with more rows than the endpoint target
//! is split by row-group ranges, so a client can fetch one large file with several streams; the
//! footer's length goes into the ticket, so DoGet reads the metadata with exactly one ranged GET.

use std::ops::Range;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::path::Path;
use parquet::errors::ParquetError;

use super::ManifestEntry;
use crate::store::{ObjectReader, ParquetReadError, StoreError};

/// Footers read at once while planning.
const FOOTER_READS: usize = 16;

/// What a staged file's footer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLayout {
    /// Footer length: Thrift metadata plus the 8-byte tail.
    pub footer_len: u64,
    /// Rows of each row group, in file order.
    pub row_group_rows: Vec<u64>,
}

impl FileLayout {
    /// Rows in the whole file.
    pub fn rows(&self) -> u64 {
        self.row_group_rows.iter().sum()
    }
}

/// One endpoint: a range of row groups of one staged file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Index of the file in the run's files.
    pub file: usize,
    /// Row groups, `start..end`.
    pub row_groups: Range<u32>,
    /// Rows in these row groups.
    pub rows: u64,
}

/// Why a staged file's layout could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// S3 failed.
    #[error(transparent)]
    Store(StoreError),
    /// The footer is not Parquet.
    #[error("s3://{bucket}/{key} is not a readable Parquet file: {message}")]
    Corrupt {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Parquet's complaint.
        message: String,
    },
    /// The footer and the manifest disagree on the row count.
    #[error("s3://{bucket}/{key} holds {footer} rows but the manifest lists {manifest}")]
    Rows {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Rows the footer counts.
        footer: u64,
        /// Rows the manifest lists.
        manifest: u64,
    },
}

impl LayoutError {
    fn read(error: ParquetError, bucket: &str, key: &str) -> Self {
        match ParquetReadError::classify(error, bucket, key) {
            ParquetReadError::Store(e) => Self::Store(e),
            ParquetReadError::Corrupt(message) => Self::Corrupt {
                bucket: bucket.to_string(),
                key: key.to_string(),
                message,
            },
        }
    }
}

/// Reads the footers of `files` (at most [`FOOTER_READS`] at once), checking each file's row count
/// against the manifest. Returns the layouts in `files` order, or the first failure.
pub async fn read_layouts(
    store: &Arc<dyn ObjectStore>,
    bucket: &str,
    files: &[ManifestEntry],
) -> Result<Vec<FileLayout>, LayoutError> {
    let reads: Vec<_> = files
        .iter()
        .map(|file| read_layout(Arc::clone(store), bucket.to_string(), file.clone()))
        .collect();
    futures::stream::iter(reads)
        .buffered(FOOTER_READS)
        .try_collect()
        .await
}

async fn read_layout(
    store: Arc<dyn ObjectStore>,
    bucket: String,
    file: ManifestEntry,
) -> Result<FileLayout, LayoutError> {
    let reader = ObjectReader::new(store, Path::from(file.key.as_str()), file.size);
    let (metadata, footer_len) = reader
        .read_footer()
        .await
        .map_err(|e| LayoutError::read(e, &bucket, &file.key))?;
    let layout = FileLayout {
        footer_len,
        row_group_rows: metadata
            .row_groups()
            .iter()
            .map(|rg| rg.num_rows().max(0) as u64)
            .collect(),
    };
    if layout.rows() != file.rows {
        return Err(LayoutError::Rows {
            bucket,
            key: file.key,
            footer: layout.rows(),
            manifest: file.rows,
        });
    }
    Ok(layout)
}

/// Divides files into endpoints: consecutive whole row groups of one file, each part closed once it
/// holds `target_rows` rows or more (0: one endpoint per file). A file of one row group, or with
/// no more than `target_rows` rows, stays one endpoint; files without row groups get none.
pub fn split(layouts: &[FileLayout], target_rows: u64) -> Vec<Part> {
    let mut parts = Vec::new();
    for (file, layout) in layouts.iter().enumerate() {
        let groups = layout.row_group_rows.len() as u32;
        if groups == 0 {
            continue;
        }
        if target_rows == 0 || layout.rows() <= target_rows {
            parts.push(Part {
                file,
                row_groups: 0..groups,
                rows: layout.rows(),
            });
            continue;
        }
        let mut start = 0u32;
        let mut rows = 0u64;
        for (index, &group_rows) in layout.row_group_rows.iter().enumerate() {
            rows += group_rows;
            let end = index as u32 + 1;
            if rows >= target_rows || end == groups {
                parts.push(Part {
                    file,
                    row_groups: start..end,
                    rows,
                });
                start = end;
                rows = 0;
            }
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(rows: &[u64]) -> FileLayout {
        FileLayout {
            footer_len: 100,
            row_group_rows: rows.to_vec(),
        }
    }

    fn ranges(parts: &[Part]) -> Vec<(usize, Range<u32>, u64)> {
        parts
            .iter()
            .map(|p| (p.file, p.row_groups.clone(), p.rows))
            .collect()
    }

    #[test]
    fn small_files_stay_whole_and_large_ones_split_on_row_groups() {
        let layouts = [
            layout(&[10, 10]),
            layout(&[60, 60, 60, 5]),
            layout(&[]),
            layout(&[500]),
        ];
        assert_eq!(
            ranges(&split(&layouts, 100)),
            vec![(0, 0..2, 20), (1, 0..2, 120), (1, 2..4, 65), (3, 0..1, 500),]
        );
        assert_eq!(
            ranges(&split(&layouts, 0)),
            vec![(0, 0..2, 20), (1, 0..4, 185), (3, 0..1, 500)]
        );
        assert_eq!(
            ranges(&split(&layouts, 60)),
            vec![
                (0, 0..2, 20),
                (1, 0..1, 60),
                (1, 1..2, 60),
                (1, 2..3, 60),
                (1, 3..4, 5),
                (3, 0..1, 500),
            ]
        );
    }

    #[test]
    fn every_row_group_lands_in_exactly_one_part() {
        for target in [0, 1, 7, 50, 1000] {
            let layouts = [layout(&[3, 9, 27, 1, 1, 1, 40]), layout(&[8; 9])];
            let parts = split(&layouts, target);
            for (file, layout) in layouts.iter().enumerate() {
                let mine: Vec<_> = parts.iter().filter(|p| p.file == file).collect();
                let mut next = 0;
                for part in &mine {
                    assert_eq!(part.row_groups.start, next, "contiguous, target {target}");
                    assert!(part.row_groups.end > part.row_groups.start);
                    next = part.row_groups.end;
                }
                assert_eq!(next as usize, layout.row_group_rows.len());
                assert_eq!(mine.iter().map(|p| p.rows).sum::<u64>(), layout.rows());
            }
        }
    }
}
