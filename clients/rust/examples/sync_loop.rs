//! An incremental sync loop: every few seconds, one step that writes the rows changed since the
//! last step to a new Parquet file and stores the cursor only after the file is durable.
//!
//!     cargo run --example sync_loop -- demo.orders ./sync-out [STEPS] [grpc://127.0.0.1:8815]
//!
//! `./sync-out/cursors.json` holds the cursor; `NNNNNN-<full|incremental>.parquet` the data (a
//! full file replaces the ones before it, incremental files are upserts on the primary key).
//! Kill it at any point: the next run repeats at most the window that was not committed.

use std::fs::File;
use std::path::PathBuf;
use std::time::Duration;

use arrow::array::RecordBatch;
use async_trait::async_trait;
use datafusion::parquet::arrow::ArrowWriter;
use redshift_flight_client::{
    BatchSink, Client, Error, FileCursorStore, Flight, Sync, TableRequest,
};

/// Writes one Parquet file per step: under a temporary name, fsynced and renamed on commit.
struct ParquetSink {
    dir: PathBuf,
    step: u64,
    writer: Option<(PathBuf, ArrowWriter<File>)>,
}

fn io(e: impl std::error::Error + Send + std::marker::Sync + 'static) -> Error {
    Error::external(e)
}

#[async_trait]
impl BatchSink for ParquetSink {
    async fn begin(&mut self, flight: &Flight) -> redshift_flight_client::Result<()> {
        let tmp = self.dir.join(format!(".step-{}.tmp", self.step));
        let writer = ArrowWriter::try_new(
            File::create(&tmp).map_err(io)?,
            std::sync::Arc::clone(&flight.schema),
            None,
        )
        .map_err(io)?;
        self.writer = Some((tmp, writer));
        Ok(())
    }

    async fn write(&mut self, batch: RecordBatch) -> redshift_flight_client::Result<()> {
        let (_, writer) = self.writer.as_mut().expect("begin was called");
        writer.write(&batch).map_err(io)
    }

    async fn commit(&mut self, flight: &Flight) -> redshift_flight_client::Result<()> {
        let (tmp, writer) = self.writer.take().expect("begin was called");
        writer.close().map_err(io)?;
        File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
        self.step += 1;
        let name = format!("{:06}-{}.parquet", self.step, flight.metadata.mode);
        std::fs::rename(&tmp, self.dir.join(name)).map_err(io)
    }

    async fn abort(&mut self) {
        if let Some((tmp, _)) = self.writer.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let table = args.next().unwrap_or_else(|| "demo.orders".to_string());
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "sync-out".to_string()));
    let steps: usize = args.next().map_or(Ok(3), |s| s.parse())?;
    let uri = args
        .next()
        .unwrap_or_else(|| "grpc://127.0.0.1:8815".to_string());
    std::fs::create_dir_all(&dir)?;
    let existing = std::fs::read_dir(&dir)?.filter(|e| {
        e.as_ref()
            .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
    });
    let mut sink = ParquetSink {
        dir: dir.clone(),
        step: existing.count() as u64,
        writer: None,
    };

    let sync = Sync::new(
        Client::connect(&uri).await?,
        FileCursorStore::new(dir.join("cursors.json")),
    );
    let request = TableRequest::new(&table);
    for step in 1..=steps {
        let outcome = match sync.step(&request, &mut sink).await {
            Err(Error::StaleCursor(e)) => {
                eprintln!("stale cursor ({e}); starting over with a full sync");
                sync.step(
                    &request.clone().mode(redshift_flight_client::Mode::Full),
                    &mut sink,
                )
                .await?
            }
            other => other?,
        };
        println!(
            "step {step}: {} rows ({}), cursor {} -> {}",
            outcome.rows,
            outcome.mode(),
            outcome.cursor_before.as_deref().unwrap_or("-"),
            outcome.cursor_after.as_deref().unwrap_or("-"),
        );
        if step < steps {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    Ok(())
}
