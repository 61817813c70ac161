//! DataFusion over redshift-flight: a `SELECT ... WHERE ... GROUP BY` joining two tables equals
//! the same query on PostgreSQL, with the pushed-down filter in the UNLOAD Redshift ran
//! (`sys_query_history`); one partition per endpoint, read in parallel; LIMIT and count(*);
//! the catalog exposing the served schemas.

mod common;

use std::sync::Arc;

use datafusion::physical_plan::{
    ExecutionPlan, ExecutionPlanProperties, collect, collect_partitioned,
};
use datafusion::prelude::SessionContext;
use redshift_flight_client::Client;
use redshift_flight_client::datafusion::{RedshiftCatalog, RedshiftFlightExec};

use common::{SchemaGuard, Server, pg, rows_as_text};

const ORDERS: i64 = 30_000;

const SETUP: &str = r#"
CREATE TABLE {s}.customers (id integer PRIMARY KEY, name varchar(40) NOT NULL, region char(4));
INSERT INTO {s}.customers
  SELECT g, 'customer ' || g, (ARRAY['east', 'west', 'nort', 'sout', NULL])[1 + g % 5]
  FROM generate_series(1, 200) g;
CREATE TABLE {s}.orders (id bigint PRIMARY KEY, customer_id integer, amount numeric(12,2),
  status varchar(10), created date, updated_at timestamp);
INSERT INTO {s}.orders
  SELECT g, 1 + g % 211, CASE WHEN g % 17 = 0 THEN NULL ELSE (g % 1000) * 1.25 END,
         (ARRAY['open', 'shipped', 'closed', 'open '])[1 + g % 4],
         date '2024-01-01' + (g % 200), timestamp '2024-01-01' + g * interval '1 minute'
  FROM generate_series(1, 30000) g;
"#;

/// The query, `{o}`/`{c}` standing for the two tables.
const QUERY: &str = "SELECT c.region, o.status, count(*) AS n, sum(o.amount) AS total, \
    min(o.created) AS first FROM {o} o JOIN {c} c ON o.customer_id = c.id \
    WHERE o.amount > 100 AND o.created >= DATE '2024-03-01' AND o.status IN ('open', 'shipped') \
    AND c.region IS NOT NULL GROUP BY c.region, o.status ORDER BY c.region, o.status";

async fn context(client: &Client, schema: &str) -> SessionContext {
    let ctx = SessionContext::new();
    let catalog = RedshiftCatalog::with_schemas(client.clone(), &[schema])
        .await
        .unwrap();
    ctx.register_catalog("redshift", Arc::new(catalog));
    ctx
}

fn find_scans(plan: &Arc<dyn ExecutionPlan>, found: &mut Vec<Arc<dyn ExecutionPlan>>) {
    if plan.downcast_ref::<RedshiftFlightExec>().is_some() {
        found.push(Arc::clone(plan));
    }
    for child in plan.children() {
        find_scans(child, found);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_by_over_a_join_equals_postgres_with_the_filter_in_the_unload() {
    let pg = pg().await;
    let schema = SchemaGuard::create(&pg, "rust_df", SETUP).await;
    let server = Server::start(&schema.name, &[("endpoint_rows", "2000")]);
    let client = server.client().await;
    let ctx = context(&client, &schema.name).await;

    let sql = QUERY
        .replace("{o}", &format!("redshift.{}.orders", schema.name))
        .replace("{c}", &format!("redshift.{}.customers", schema.name));
    let frame = ctx.sql(&sql).await.unwrap();
    let plan = frame.create_physical_plan().await.unwrap();
    let text = datafusion::physical_plan::displayable(plan.as_ref())
        .indent(true)
        .to_string();
    for pushed in [
        r#""amount" > 100"#,
        r#"("created" >= DATE '2024-03-01')"#,
        "'shipped'",
    ] {
        assert!(text.contains(pushed), "{pushed} not pushed down:\n{text}");
    }
    assert!(text.contains(r#"where=("region" IS NOT NULL)"#), "{text}");
    // The plan inspected is the one run (an unexecuted plan leaves its staged run to expire).
    let batches = collect(plan, ctx.task_ctx()).await.unwrap();
    let got = rows_as_text(&batches);

    let pg_sql = QUERY
        .replace("{o}", &format!("{}.orders", schema.quoted()))
        .replace("{c}", &format!("{}.customers", schema.quoted()));
    let pg_sql =
        format!("SELECT region::text, status, n::text, total::text, first::text FROM ({pg_sql}) q");
    let want: Vec<Vec<Option<String>>> = pg
        .query(&pg_sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (0..5).map(|i| r.get::<_, Option<String>>(i)).collect())
        .collect();
    assert!(!want.is_empty());
    // PostgreSQL's `region::text` drops CHAR padding; the values are all four letters.
    assert_eq!(got, want);

    // The filters reached Redshift: they are in the UNLOAD it ran.
    let unloads: Vec<String> = pg
        .query(
            "SELECT query_text FROM public.sys_query_history WHERE query_type = 'UNLOAD' \
             AND strpos(query_text, $1) > 0",
            &[&schema.name],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        unloads.iter().any(|q| q.contains(r#""amount" > 100"#)
            && q.contains("''shipped''")
            && q.contains("DATE ''2024-03-01''")),
        "{unloads:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_partition_per_endpoint_read_in_parallel() {
    let pg = pg().await;
    let schema = SchemaGuard::create(&pg, "rust_df_parts", SETUP).await;
    let server = Server::start(&schema.name, &[("endpoint_rows", "2000")]);
    let client = server.client().await;
    let ctx = context(&client, &schema.name).await;

    let frame = ctx
        .sql(&format!(
            "SELECT id, amount FROM redshift.{}.orders",
            schema.name
        ))
        .await
        .unwrap();
    let plan = frame.create_physical_plan().await.unwrap();
    let mut scans = Vec::new();
    find_scans(&plan, &mut scans);
    let scan = scans.pop().expect("a RedshiftFlightExec");
    let exec = scan.downcast_ref::<RedshiftFlightExec>().unwrap();
    let endpoints = exec.flight().await.endpoints().len();
    assert!(endpoints > 1, "expected several endpoints, got {endpoints}");
    assert_eq!(scan.output_partitioning().partition_count(), endpoints);

    let partitions = collect_partitioned(Arc::clone(&scan), ctx.task_ctx())
        .await
        .unwrap();
    assert_eq!(partitions.len(), endpoints);
    assert!(
        partitions
            .iter()
            .all(|p| p.iter().map(|b| b.num_rows()).sum::<usize>() > 0)
    );
    let mut ids: Vec<i64> = partitions
        .iter()
        .flatten()
        .flat_map(|b| {
            let ids = b
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .unwrap();
            ids.values().to_vec()
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=ORDERS).collect::<Vec<_>>());
    // The server streamed the endpoints concurrently: its log shows DoGets overlapping.
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_and_count_star() {
    let pg = pg().await;
    let schema = SchemaGuard::create(&pg, "rust_df_limit", SETUP).await;
    let server = Server::start(&schema.name, &[("endpoint_rows", "2000")]);
    let client = server.client().await;
    let ctx = context(&client, &schema.name).await;
    let orders = format!("redshift.{}.orders", schema.name);

    let frame = ctx
        .sql(&format!("SELECT id FROM {orders} LIMIT 7"))
        .await
        .unwrap();
    let plan = frame.create_physical_plan().await.unwrap();
    let text = datafusion::physical_plan::displayable(plan.as_ref())
        .indent(true)
        .to_string();
    assert!(
        text.contains("limit=7") && text.contains("partitions=1"),
        "{text}"
    );
    let batches = collect(plan, ctx.task_ctx()).await.unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 7);

    let sql = format!(
        "SELECT count(*) FROM {orders} WHERE amount > 100 AND customer_id BETWEEN 5 AND 50"
    );
    let got = rows_as_text(&ctx.sql(&sql).await.unwrap().collect().await.unwrap());
    let want: i64 = pg
        .query_one(
            &format!(
                "SELECT count(*) FROM {}.orders WHERE amount > 100 AND customer_id BETWEEN 5 AND 50",
                schema.quoted()
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(got, vec![vec![Some(want.to_string())]]);

    // A string comparison the server cannot evaluate exactly stays in DataFusion too: 'open '
    // (trailing blank) must not match 'open'.
    let sql = format!("SELECT count(*) FROM {orders} WHERE status = 'open'");
    let got = rows_as_text(&ctx.sql(&sql).await.unwrap().collect().await.unwrap());
    let want: i64 = pg
        .query_one(
            &format!(
                "SELECT count(*) FROM {}.orders WHERE status = 'open'",
                schema.quoted()
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(got, vec![vec![Some(want.to_string())]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_lists_every_served_schema() {
    let pg = pg().await;
    let schema = SchemaGuard::create(&pg, "rust_df_catalog", SETUP).await;
    let server = Server::start(&schema.name, &[]);
    let client = server.client().await;
    let names = client.schemas().await.unwrap();
    assert!(names.contains(&schema.name), "{names:?}");
    let tables: Vec<String> = client
        .tables(&schema.name)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(tables, ["customers", "orders"]);
    let catalog = RedshiftCatalog::with_schemas(client, &[&schema.name])
        .await
        .unwrap();
    use datafusion::catalog::CatalogProvider;
    let provider = catalog.schema(&schema.name).unwrap();
    assert_eq!(provider.table_names(), ["customers", "orders"]);
    assert!(provider.table("ORDERS").await.unwrap().is_some());
}
