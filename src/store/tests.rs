//! Tests of [`ObjectReader`] with a [`MemoryBudget`] over an in-memory object store: footers,
//! budget shares, read-ahead and files that are not Parquet.
#![allow(clippy::single_range_in_vec_init)] // one range: one column chunk

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, RecordBatch};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::async_reader::AsyncFileReader;

use super::memory::BUDGET_UNIT;
use super::reader::FOOTER_PREFETCH;
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
        let metadata_len = u32::from_le_bytes(bytes[bytes.len() - 8..][..4].try_into().unwrap());
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

/// A stream's working bytes (decoded batches, encoded messages) are taken together with its first
/// row group and held to the end, while row groups come and go.
#[tokio::test]
async fn the_working_share_is_taken_with_the_first_row_group_and_kept() {
    let budget = MemoryBudget::new(20 * BUDGET_UNIT);
    let mut first = reader(file(2))
        .await
        .with_budget(Some(budget.clone()))
        .with_working_bytes(5 * BUDGET_UNIT);
    first.get_byte_ranges(vec![0..10]).await.unwrap();
    assert_eq!(
        budget.available(),
        14 * BUDGET_UNIT,
        "one unit and the working five"
    );
    first.get_byte_ranges(vec![20..30, 40..50]).await.unwrap();
    assert_eq!(
        budget.available(),
        14 * BUDGET_UNIT,
        "the working share is taken once"
    );
    drop(first);
    assert_eq!(budget.available(), 20 * BUDGET_UNIT);

    // Taken together, in one wait: a stream never holds its working share while it waits for a
    // row group (tokio's semaphore queues one request for both).
    let other = budget.reserve(17 * BUDGET_UNIT).await;
    let mut second = reader(file(2))
        .await
        .with_budget(Some(budget.clone()))
        .with_working_bytes(5 * BUDGET_UNIT);
    {
        let fetch = second.get_byte_ranges(vec![0..10]);
        tokio::pin!(fetch);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), &mut fetch)
                .await
                .is_err()
        );
        drop(other);
        fetch.await.unwrap();
    }
    drop(second);
    assert_eq!(budget.available(), 20 * BUDGET_UNIT);
}

/// With shares, a reader that fetches some columns of a row group takes the whole row group's
/// share (the other columns' readers take none).
#[tokio::test]
async fn a_share_stands_for_the_whole_row_group() {
    let budget = MemoryBudget::new(20 * BUDGET_UNIT);
    let mut reader = reader(file(2))
        .await
        .with_budget(Some(budget.clone()))
        .with_read_ahead(vec![vec![0..10], vec![20..30]])
        .with_shares(vec![6 * BUDGET_UNIT, 3 * BUDGET_UNIT]);
    reader.get_byte_ranges(vec![0..10]).await.unwrap();
    // Group 0's share, and group 1 read ahead with its own.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(budget.available(), 11 * BUDGET_UNIT);
    reader.get_byte_ranges(vec![20..30]).await.unwrap();
    assert_eq!(budget.available(), 17 * BUDGET_UNIT);
    drop(reader);
    assert_eq!(budget.available(), 20 * BUDGET_UNIT);
}

/// `reader`'s bytes of `range`, or an error if they take over 200 ms.
async fn fetch(
    reader: &mut ObjectReader,
    range: Range<u64>,
) -> Result<parquet::errors::Result<Vec<bytes::Bytes>>, tokio::time::error::Elapsed> {
    let wait = std::time::Duration::from_millis(200);
    tokio::time::timeout(wait, reader.get_byte_ranges(vec![range])).await
}

#[tokio::test]
async fn followers_fetch_a_row_group_only_once_the_lead_reserved_it() {
    // Room for one row group's share: the lead cannot read ahead while it holds one.
    let budget = MemoryBudget::new(6 * BUDGET_UNIT);
    let groups = vec![vec![0..10], vec![20..30], vec![40..50]];
    let (lead, gate) = reader(file(2))
        .await
        .with_budget(Some(budget.clone()))
        .with_read_ahead(groups.clone())
        .with_shares(vec![5 * BUDGET_UNIT; 3])
        .leading();
    let mut lead = lead;
    let bytes = file(2);
    let size = bytes.len() as u64;
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let path = Path::from("f.parquet");
    store.put(&path, PutPayload::from(bytes)).await.unwrap();
    let mut follower = ObjectReader::new(Arc::clone(&store), path.clone(), size)
        .with_read_ahead(groups.clone())
        .following(gate);

    // Before the lead reserved row group 0, the follower waits for it.
    assert!(
        fetch(&mut follower, 0..10).await.is_err(),
        "fetched before the lead's reservation"
    );
    lead.get_byte_ranges(vec![0..10]).await.unwrap();
    assert_eq!(
        budget.available(),
        BUDGET_UNIT,
        "the lead holds row group 0's share"
    );
    assert!(fetch(&mut follower, 0..10).await.unwrap().is_ok());
    // The budget had no room for row group 1: the lead could not read it ahead, so the
    // follower's read-ahead waits, and so does the follower.
    assert!(
        fetch(&mut follower, 20..30).await.is_err(),
        "row group 1 without its share"
    );
    lead.get_byte_ranges(vec![20..30]).await.unwrap();
    assert!(fetch(&mut follower, 20..30).await.unwrap().is_ok());

    // The follower's read-ahead of row group 2, started then, fetches it as soon as the lead
    // holds it: the follower has it even once the file is gone.
    lead.get_byte_ranges(vec![40..50]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    store.delete(&path).await.unwrap();
    assert!(fetch(&mut follower, 40..50).await.unwrap().is_ok());
    drop(lead);
    assert_eq!(budget.available(), 6 * BUDGET_UNIT);

    // A lead gone (its stream ended) holds no follower back.
    let (lead, gate) = reader(file(2)).await.leading();
    drop(lead);
    let mut orphan = reader(file(2))
        .await
        .with_read_ahead(groups)
        .following(gate);
    assert!(fetch(&mut orphan, 40..50).await.unwrap().is_ok());
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
