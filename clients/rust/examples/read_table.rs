//! Reads one table into record batches and prints a summary.
//!
//!     cargo run --example read_table -- demo.orders [grpc://127.0.0.1:8815] [TOKEN]
//!
//! Plans the read (the server UNLOADs the table to S3 as Parquet), then streams every endpoint,
//! four at a time, retrying broken streams and re-planning if the staged run expired.

use std::time::Instant;

use futures::TryStreamExt;
use redshift_flight_client::{Client, Mode, TableRequest};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let table = args.next().unwrap_or_else(|| "demo.orders".to_string());
    let uri = args
        .next()
        .unwrap_or_else(|| "grpc://127.0.0.1:8815".to_string());
    let mut builder = Client::builder(&uri);
    if let Some(token) = args
        .next()
        .or_else(|| std::env::var("REDSHIFT_FLIGHT_TOKEN").ok())
    {
        builder = builder.bearer_token(token);
    }
    let client = builder.connect().await?;

    let started = Instant::now();
    let mut stream = client.read(TableRequest::new(&table).mode(Mode::Full));
    let (mut rows, mut batches) = (0, Vec::new());
    while let Some(batch) = stream.try_next().await? {
        rows += batch.num_rows();
        if batches.is_empty() {
            batches.push(batch.slice(0, batch.num_rows().min(5)));
        }
    }
    let flight = stream.flight().expect("planned");
    println!(
        "{table}: {rows} rows from {} endpoints in {:.2?} (run {}, next_cursor {})",
        flight.endpoints().len(),
        started.elapsed(),
        flight.metadata.run_id.as_deref().unwrap_or("-"),
        flight.next_cursor().unwrap_or("-"),
    );
    println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
    Ok(())
}
