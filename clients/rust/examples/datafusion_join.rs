//! DataFusion SQL joining two Redshift tables (through redshift-flight) with a local Parquet file.
//!
//!     cargo run --example datafusion_join -- [grpc://127.0.0.1:8815] [SCHEMA]
//!
//! Registers every served table of SCHEMA (default `demo`) as `redshift.<schema>.<table>`, writes
//! a small Parquet file of country names, and runs one query. Filters on Redshift columns go to
//! the server as the UNLOAD's WHERE (see the `RedshiftFlightExec` line of the plan), only the
//! columns used are unloaded, and every endpoint is a DataFusion partition read in parallel.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use redshift_flight_client::Client;
use redshift_flight_client::datafusion::RedshiftCatalog;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let uri = args
        .next()
        .unwrap_or_else(|| "grpc://127.0.0.1:8815".to_string());
    let schema = args.next().unwrap_or_else(|| "demo".to_string());

    let ctx = SessionContext::new();
    let catalog = RedshiftCatalog::with_schemas(Client::connect(&uri).await?, &[&schema]).await?;
    ctx.register_catalog("redshift", Arc::new(catalog));

    // The local side: country codes and names, as a Parquet file.
    let path = std::env::temp_dir().join("redshift-flight-countries.parquet");
    let countries = Arc::new(Schema::new(vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("country", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&countries),
        vec![
            Arc::new(StringArray::from(vec!["DE", "FR", "US", "JP", "BR"])),
            Arc::new(StringArray::from(vec![
                "Germany",
                "France",
                "United States",
                "Japan",
                "Brazil",
            ])),
        ],
    )?;
    let mut writer = ArrowWriter::try_new(std::fs::File::create(&path)?, countries, None)?;
    writer.write(&batch)?;
    writer.close()?;
    ctx.register_parquet(
        "countries",
        path.to_str().expect("UTF-8 path"),
        ParquetReadOptions::default(),
    )
    .await?;

    let sql = format!(
        "SELECT k.country, o.status, count(*) AS orders, sum(o.amount) AS revenue \
         FROM redshift.{schema}.orders o \
         JOIN redshift.{schema}.customers c ON o.customer_id = c.id \
         JOIN countries k ON k.code = c.country \
         WHERE o.amount > 100 AND o.ordered_at >= TIMESTAMP '2024-02-01 00:00:00' \
         GROUP BY k.country, o.status ORDER BY revenue DESC LIMIT 10"
    );
    let started = Instant::now();
    let frame = ctx.sql(&sql).await?;
    let plan = frame.create_physical_plan().await?;
    for line in datafusion::physical_plan::displayable(plan.as_ref())
        .indent(true)
        .to_string()
        .lines()
    {
        if line.contains("RedshiftFlightExec") {
            println!("{}", line.trim());
        }
    }
    let batches = datafusion::physical_plan::collect(plan, ctx.task_ctx()).await?;
    println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
    println!("query took {:.2?}", started.elapsed());
    Ok(())
}
