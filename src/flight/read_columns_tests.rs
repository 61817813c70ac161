//! Tests of [`super`]: the column groups, and that decoding by groups gives the very batches one
//! reader gives.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::ArrowReaderOptions;

use super::*;

/// `width` columns, every third a string (wider), `rows` rows in groups of `per_group`.
fn wide(width: usize, rows: i64) -> RecordBatch {
    RecordBatch::try_from_iter((0..width).map(|c| {
        let array: ArrayRef = if c % 3 == 0 {
            Arc::new(StringArray::from_iter(
                (0..rows).map(|i| (i % 11 != 0).then(|| format!("row {i} column {c}"))),
            ))
        } else {
            Arc::new(Int64Array::from_iter_values(
                (0..rows).map(|i| i * c as i64),
            ))
        };
        (format!("c{c}"), array)
    }))
    .unwrap()
}

async fn staged(batch: &RecordBatch, per_group: usize) -> (Arc<dyn ObjectStore>, u64) {
    let bytes = crate::testing::parquet_bytes(batch, per_group);
    let size = bytes.len() as u64;
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    store
        .put(&Path::from("f.parquet"), PutPayload::from(bytes))
        .await
        .unwrap();
    (store, size)
}

/// The metadata of `batch` staged in row groups of `per_group` rows.
async fn metadata_of(batch: &RecordBatch, per_group: usize) -> ArrowReaderMetadata {
    let (store, size) = staged(batch, per_group).await;
    let mut reader = ObjectReader::new(store, Path::from("f.parquet"), size);
    ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::new())
        .await
        .unwrap()
}

#[tokio::test]
async fn groups_are_contiguous_balanced_and_only_for_wide_files() {
    let metadata = metadata_of(&wide(40, 1000), 300).await;
    let meta = metadata.metadata();
    for tasks in [1, 2, 3, 5] {
        let groups = column_groups(meta, &(0..4), tasks);
        assert_eq!(groups.len(), tasks, "{groups:?}");
        assert_eq!(
            groups.concat(),
            (0..40).collect::<Vec<_>>(),
            "every column once, in order"
        );
        assert!(groups.iter().all(|g| g.len() >= 2), "{groups:?}");
    }
    // No group under MIN_COLUMNS_PER_GROUP columns: 40 columns make 5 groups at most.
    assert_eq!(column_groups(meta, &(0..4), 16).len(), 5);

    let narrow = metadata_of(&wide(10, 100), 50).await;
    assert_eq!(
        column_groups(narrow.metadata(), &(0..2), 4),
        vec![(0..10).collect::<Vec<_>>()]
    );
}

#[tokio::test]
async fn a_row_groups_share_counts_its_chunks_and_their_decoding() {
    let metadata = metadata_of(&wide(12, 3000), 1000).await;
    let meta = metadata.metadata();
    let shares = row_group_shares(meta, &(1..3));
    assert_eq!(shares.len(), 2, "one share per row group read");
    for (share, rg) in shares.iter().zip(&meta.row_groups()[1..3]) {
        // Small chunks: their whole uncompressed size is the decoding state.
        let compressed: u64 = rg.columns().iter().map(|c| c.byte_range().1).sum();
        let uncompressed: u64 = rg
            .columns()
            .iter()
            .map(|c| c.uncompressed_size() as u64)
            .sum();
        assert!(uncompressed > 0 && uncompressed < DECODE_BYTES_PER_COLUMN);
        assert_eq!(*share, compressed + uncompressed);
    }

    // A chunk bigger than a page counts one page's worth of decoding, not its whole size.
    let big = wide(1, 200_000);
    let metadata = metadata_of(&big, 200_000).await;
    let chunk = &metadata.metadata().row_groups()[0].columns()[0];
    assert!(chunk.uncompressed_size() as u64 > DECODE_BYTES_PER_COLUMN);
    assert_eq!(
        row_group_shares(metadata.metadata(), &(0..1)),
        vec![chunk.byte_range().1 + DECODE_BYTES_PER_COLUMN]
    );
}

async fn read_all(batch: &RecordBatch, tasks: usize, row_groups: Range<usize>) -> Vec<RecordBatch> {
    let (store, size) = staged(batch, 700).await;
    let path = Path::from("f.parquet");
    let mut first = ObjectReader::new(Arc::clone(&store), path.clone(), size);
    let metadata = ArrowReaderMetadata::load_async(&mut first, ArrowReaderOptions::new())
        .await
        .unwrap();
    let groups = column_groups(metadata.metadata(), &row_groups, tasks);
    assert_eq!(groups.len(), tasks);
    let plan = ReadPlan {
        metadata,
        row_groups,
        batch_rows: 256,
    };
    let others = move || ObjectReader::new(Arc::clone(&store), path.clone(), size);
    // Spawned on Tokio's own runtime: the groups decode at once.
    let spawn = |batches: Batches| {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tokio::spawn(async move {
            let mut batches = batches;
            while let Some(batch) = batches.next().await {
                if tx.send(batch).await.is_err() {
                    break;
                }
            }
        });
        tokio_stream_of(rx)
    };
    read(plan, groups, first, others, spawn, |e| {
        Status::internal(e.to_string())
    })
    .unwrap()
    .try_collect()
    .await
    .unwrap()
}

fn tokio_stream_of(rx: tokio::sync::mpsc::Receiver<Result<RecordBatch, Status>>) -> Batches {
    futures::stream::unfold(rx, |mut rx| async move { Some((rx.recv().await?, rx)) }).boxed()
}

#[tokio::test]
async fn decoding_by_column_groups_gives_the_same_batches() {
    let batch = wide(50, 3000);
    let one = read_all(&batch, 1, 0..5).await;
    let three = read_all(&batch, 3, 0..5).await;
    assert_eq!(three, one);
    let whole = arrow::compute::concat_batches(&one[0].schema(), &one).unwrap();
    assert_eq!(whole, batch);
    // A range of row groups, as an endpoint's ticket names.
    let part = read_all(&batch, 4, 1..3).await;
    let rows: usize = part.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 1400);
    let part = arrow::compute::concat_batches(&part[0].schema(), &part).unwrap();
    assert_eq!(part, batch.slice(700, 1400));
}
