//! Helpers shared by unit tests.

use arrow::array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

/// `batch` as a Parquet file with `rows_per_group` rows per row group (no dictionaries, so page
/// sizes follow the data).
pub(crate) fn parquet_bytes(batch: &RecordBatch, rows_per_group: usize) -> Vec<u8> {
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(rows_per_group))
        .set_dictionary_enabled(false)
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props))
        .unwrap_or_else(|e| panic!("a Parquet writer: {e}"));
    writer
        .write(batch)
        .unwrap_or_else(|e| panic!("writing a test batch: {e}"));
    writer
        .close()
        .unwrap_or_else(|e| panic!("closing a test file: {e}"));
    out
}
