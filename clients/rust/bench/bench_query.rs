//! Times one DataFusion query over a redshift-flight table, with and without filter pushdown
//! (the Rust half of bench/compare.sh; the Python half is bench/python_query.py).
//!
//!     cargo run --release --example bench_query -- grpc://127.0.0.1:8815 demo.orders 3
//!
//! Prints one JSON line per variant: `{"variant": ..., "seconds": [...], "rows": ...}`.

use std::sync::Arc;
use std::time::Instant;

use datafusion::prelude::SessionContext;
use redshift_flight_client::Client;
use redshift_flight_client::datafusion::{RedshiftFlightTable, ScanOptions};

/// The query both halves run (`t` is the table).
const QUERY: &str = "SELECT status, count(*) AS n, sum(amount) AS total, avg(amount) AS mean \
                     FROM t WHERE amount > 500 GROUP BY status ORDER BY status";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let uri = args
        .next()
        .unwrap_or_else(|| "grpc://127.0.0.1:8815".to_string());
    let table = args.next().unwrap_or_else(|| "demo.orders".to_string());
    let runs: usize = args.next().map_or(Ok(3), |s| s.parse())?;
    let client = Client::connect(&uri).await?;
    for (variant, push_filters) in [
        ("rust-datafusion-pushdown", true),
        ("rust-datafusion-no-pushdown", false),
    ] {
        let options = ScanOptions {
            push_filters,
            ..ScanOptions::default()
        };
        let provider = RedshiftFlightTable::try_new(client.clone(), &table)
            .await?
            .with_options(options);
        let ctx = SessionContext::new();
        ctx.register_table("t", Arc::new(provider))?;
        let mut seconds = Vec::new();
        let mut rows = 0;
        for _ in 0..runs {
            let started = Instant::now();
            let batches = ctx.sql(QUERY).await?.collect().await?;
            seconds.push(started.elapsed().as_secs_f64());
            rows = batches.iter().map(|b| b.num_rows()).sum::<usize>();
        }
        println!(
            "{}",
            serde_json::json!({"variant": variant, "seconds": seconds, "rows": rows, "query": QUERY})
        );
    }
    Ok(())
}
