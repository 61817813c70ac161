//! Parquet files whose TIMESTAMP and TIMESTAMPTZ columns are INT96, as some writers (older
//! Redshift releases, Spark, Hive, Impala) still produce them, so the Flight server's reading of
//! such files is tested against the real physical type (knob `int96_timestamps`).
//!
//! parquet's Arrow writer cannot write INT96, so this writer assembles each row group itself:
//! every other column goes through parquet's own Arrow column writers (`ArrowRowGroupWriterFactory`,
//! whose encoded chunks are appended to the row group), and the timestamp columns through the
//! typed INT96 column writer, as (Julian day, nanoseconds of the day). Each finished row group is
//! moved to the S3 upload at once, like `AsyncArrowWriter` does; the rows of the row group being
//! assembled are held as Arrow arrays.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, SchemaRef, TimestampMicrosecondType};
use bytes::Bytes;
use object_store::buffered::BufWriter;
use parquet::arrow::ArrowSchemaConverter;
use parquet::arrow::arrow_writer::{ArrowRowGroupWriterFactory, compute_leaves};
use parquet::arrow::async_writer::AsyncFileWriter;
use parquet::basic::{Repetition, Type as PhysicalType};
use parquet::data_type::{Int96, Int96Type};
use parquet::errors::{ParquetError, Result};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;

/// The Julian day number of 1970-01-01.
const JULIAN_DAY_OF_EPOCH: i64 = 2_440_588;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The INT96 encoding of a timestamp in microseconds since the epoch: nanoseconds of the day
/// (little end first) and the Julian day, exact for every year Redshift accepts (1 to 294276).
pub(crate) fn int96_from_micros(micros: i64) -> Int96 {
    let day = micros.div_euclid(MICROS_PER_DAY) + JULIAN_DAY_OF_EPOCH;
    let nanos = micros.rem_euclid(MICROS_PER_DAY) * 1000;
    let mut value = Int96::new();
    value.set_data(nanos as u32, (nanos >> 32) as u32, day as u32);
    value
}

fn is_timestamp(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Timestamp(..))
}

/// When a row group is complete.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RowGroupLimit {
    /// Every this many rows.
    Rows(usize),
    /// Once the Arrow data held reaches this many bytes.
    Bytes(usize),
}

/// Writes one Parquet file with INT96 timestamps into an S3 upload.
pub(crate) struct Int96Writer {
    file: SerializedFileWriter<Vec<u8>>,
    factory: ArrowRowGroupWriterFactory,
    sink: BufWriter,
    schema: SchemaRef,
    limit: RowGroupLimit,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    pending_bytes: usize,
    row_groups: usize,
}

impl Int96Writer {
    /// A writer of `schema` (timestamps as Arrow timestamps in microseconds) into `sink`.
    pub(crate) fn try_new(
        sink: BufWriter,
        schema: SchemaRef,
        props: WriterProperties,
        limit: RowGroupLimit,
    ) -> Result<Self> {
        let descriptor = ArrowSchemaConverter::new().convert(&schema)?;
        let root = descriptor.root_schema();
        let mut fields = Vec::with_capacity(schema.fields().len());
        for (field, leaf) in schema.fields().iter().zip(root.get_fields()) {
            if is_timestamp(field.data_type()) {
                let int96 = Type::primitive_type_builder(field.name(), PhysicalType::INT96)
                    .with_repetition(Repetition::OPTIONAL)
                    .build()?;
                fields.push(Arc::new(int96));
            } else {
                fields.push(Arc::clone(leaf));
            }
        }
        let root = Type::group_type_builder(root.name())
            .with_fields(fields)
            .build()?;
        let file = SerializedFileWriter::new(Vec::new(), Arc::new(root), Arc::new(props))?;
        let factory = ArrowRowGroupWriterFactory::new(&file, Arc::clone(&schema));
        Ok(Self {
            file,
            factory,
            sink,
            schema,
            limit,
            pending: Vec::new(),
            pending_rows: 0,
            pending_bytes: 0,
            row_groups: 0,
        })
    }

    /// Bytes of finished row groups (and the header) handed to the upload.
    pub(crate) fn bytes_written(&self) -> usize {
        self.file.bytes_written()
    }

    /// Arrow bytes of the row group being assembled.
    pub(crate) fn in_progress_size(&self) -> usize {
        self.pending_bytes
    }

    /// Adds `batch`, finishing row groups as they fill.
    pub(crate) async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match self.limit {
            RowGroupLimit::Rows(max) => {
                let max = max.max(1);
                let mut offset = 0;
                while offset < batch.num_rows() {
                    let take = (max - self.pending_rows).min(batch.num_rows() - offset);
                    self.push(batch.slice(offset, take));
                    offset += take;
                    if self.pending_rows >= max {
                        self.flush().await?;
                    }
                }
            }
            RowGroupLimit::Bytes(max) => {
                self.push(batch.clone());
                if self.pending_bytes >= max {
                    self.flush().await?;
                }
            }
        }
        Ok(())
    }

    fn push(&mut self, batch: RecordBatch) {
        self.pending_rows += batch.num_rows();
        self.pending_bytes += batch.get_array_memory_size();
        self.pending.push(batch);
    }

    /// Writes the rows held as one row group and hands its bytes to the upload.
    async fn flush(&mut self) -> Result<()> {
        if self.pending_rows == 0 {
            return Ok(());
        }
        let batch = concat_batches(&self.schema, &self.pending)?;
        self.pending.clear();
        self.pending_rows = 0;
        self.pending_bytes = 0;
        let writers = self.factory.create_column_writers(self.row_groups)?;
        self.row_groups += 1;
        let mut group = self.file.next_row_group()?;
        for ((field, array), mut writer) in self
            .schema
            .fields()
            .iter()
            .zip(batch.columns())
            .zip(writers)
        {
            if is_timestamp(field.data_type()) {
                let mut column = group
                    .next_column()?
                    .ok_or_else(|| ParquetError::General("no INT96 column left".to_owned()))?;
                let (values, levels) = int96_column(array);
                column
                    .typed::<Int96Type>()
                    .write_batch(&values, Some(&levels), None)?;
                column.close()?;
            } else {
                for leaf in compute_leaves(field, array)? {
                    writer.write(&leaf)?;
                }
                writer.close()?.append_to_row_group(&mut group)?;
            }
        }
        group.close()?;
        self.file.flush()?;
        self.upload().await
    }

    async fn upload(&mut self) -> Result<()> {
        let bytes = std::mem::take(self.file.inner_mut());
        if bytes.is_empty() {
            return Ok(());
        }
        self.sink.write(Bytes::from(bytes)).await
    }

    /// Writes the last row group and the footer and completes the upload.
    pub(crate) async fn close(mut self) -> Result<()> {
        self.flush().await?;
        self.file.finish()?;
        self.upload().await?;
        self.sink.complete().await
    }

    /// The upload, to abort it.
    pub(crate) fn into_inner(self) -> BufWriter {
        self.sink
    }
}

/// The non-null values of a timestamp column as INT96, and its definition levels.
fn int96_column(array: &ArrayRef) -> (Vec<Int96>, Vec<i16>) {
    let micros = array.as_primitive::<TimestampMicrosecondType>();
    let mut values = Vec::with_capacity(micros.len());
    let mut levels = Vec::with_capacity(micros.len());
    for i in 0..micros.len() {
        if micros.is_null(i) {
            levels.push(0);
        } else {
            levels.push(1);
            values.push(int96_from_micros(micros.value(i)));
        }
    }
    (values, levels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int96_round_trips_far_dates_exactly() {
        for text in [
            "0001-01-01 00:00:00",
            "1677-09-21 00:12:43.145224",
            "1969-12-31 23:59:59.999999",
            "1970-01-01 00:00:00",
            "2262-04-11 23:47:16.854776",
            "9999-12-31 23:59:59.999999",
        ] {
            let micros = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
                .unwrap()
                .and_utc()
                .timestamp_micros();
            assert_eq!(int96_from_micros(micros).to_micros(), micros, "{text}");
        }
    }
}
