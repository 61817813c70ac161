//! End-to-end row filters (the command's `"where"`): a filtered read equals PostgreSQL's rows for
//! the same WHERE, a filter composes with the incremental cursor window (nothing skipped, nothing
//! twice), and refused filters are INVALID_ARGUMENT / INVALID_FILTER with nothing staged.

use arrow::datatypes::{DataType, TimeUnit};
use arrow_flight::{FlightDescriptor, FlightInfo};
use tonic::Code;
use tonic_types::StatusExt;

use crate::common::canon::{Col, Kind, canon_batches, pg_canon_rows, read_all};
use crate::common::{TestServer, keys_under, pg, pg_rows, unique};

fn app(info: &FlightInfo) -> serde_json::Value {
    serde_json::from_slice(&info.app_metadata).expect("app_metadata is JSON")
}

fn command(value: serde_json::Value) -> FlightDescriptor {
    FlightDescriptor::new_cmd(value.to_string())
}

fn columns() -> [Col; 5] {
    [
        Col::new("id", Kind::Text, DataType::Int32),
        Col::new("v", Kind::Text, DataType::Utf8),
        Col::new("Kind", Kind::Text, DataType::Utf8),
        Col::new(
            "updated_at",
            Kind::Epoch,
            DataType::Timestamp(TimeUnit::Microsecond, None),
        ),
        Col::new("created", Kind::Days, DataType::Date32),
    ]
}

async fn table(prefix: &str) -> String {
    let schema = unique(prefix);
    pg().await
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; \
             CREATE TABLE {schema}.t (id int primary key, v varchar(20), \"Kind\" varchar(5), \
               updated_at timestamp, created date); \
             INSERT INTO {schema}.t SELECT g, CASE WHEN g % 7 = 0 THEN NULL ELSE 'v' || g END, \
               CASE WHEN g % 3 = 0 THEN 'a' ELSE 'b' END, \
               TIMESTAMP '2024-01-01' + g * INTERVAL '1 second', DATE '2020-01-01' + g \
               FROM generate_series(1, 500) g;"
        ))
        .await
        .unwrap();
    schema
}

#[tokio::test]
async fn a_filtered_read_equals_postgres_rows_for_the_same_where() {
    let schema = table("filter_full").await;
    let server = TestServer::start(&[]).await;
    let mut flight = server.client().await;
    let cols = columns();
    let col_refs: Vec<&Col> = cols.iter().collect();
    for predicate in [
        r#""Kind" = 'a' AND (v IS NULL OR id BETWEEN 100 AND 300)"#,
        "lower(v) LIKE 'v1%' OR created < DATE '2020-01-10'",
        "id IN (1, 2, 3) OR updated_at >= '2024-01-01 00:08:00'::timestamp",
        "id < 0",
    ] {
        let info = flight
            .get_flight_info(command(serde_json::json!({
                "table": format!("{schema}.t"),
                "mode": "full",
                "where": predicate,
            })))
            .await
            .unwrap_or_else(|e| panic!("{predicate}: {e}"));
        let got = canon_batches(&read_all(&server, &info).await);
        let want = pg_canon_rows(&format!("{schema}.t WHERE {predicate}"), &col_refs).await;
        assert_eq!(got, want, "{predicate}");
        assert_eq!(info.total_records, want.len() as i64, "{predicate}");
    }
    // A filter on a column outside the projection.
    let info = flight
        .get_flight_info(command(serde_json::json!({
            "table": format!("{schema}.t"),
            "mode": "full",
            "columns": ["id"],
            "where": "\"Kind\" = 'a' AND id <= 9",
        })))
        .await
        .unwrap();
    let ids: Vec<Vec<Option<String>>> = canon_batches(&read_all(&server, &info).await);
    assert_eq!(
        ids,
        [["3"], ["6"], ["9"]].map(|r| r.map(|v| Some(v.to_string())).to_vec())
    );
    server.stop().await;
}

#[tokio::test]
async fn a_filter_composes_with_the_incremental_window() {
    let schema = table("filter_inc").await;
    let pg = pg().await;
    let server = TestServer::start(&[]).await;
    let mut flight = server.client().await;
    let cols = columns();
    let col_refs: Vec<&Col> = cols.iter().collect();
    let table = format!("{schema}.t");
    let predicate = r#""Kind" = 'a'"#;

    let info = flight
        .get_flight_info(command(
            serde_json::json!({"table": table, "where": predicate}),
        ))
        .await
        .unwrap();
    let meta = app(&info);
    assert_eq!(meta["mode"], "incremental");
    assert_eq!(meta["replication_key"], "updated_at");
    // The window's upper end is the table's MAX(key), not the filtered rows' (row 500 is 'b').
    assert_eq!(meta["upper_bound"], "2024-01-01 00:08:20");
    let first = canon_batches(&read_all(&server, &info).await);
    assert_eq!(
        first,
        pg_canon_rows(&format!("{table} WHERE {predicate}"), &col_refs).await
    );
    let cursor = meta["next_cursor"].as_str().unwrap().to_string();

    // New matching and non-matching rows; a non-matching row that starts matching as its key
    // moves forward; a matching row that stops matching.
    pg.batch_execute(&format!(
        "INSERT INTO {table} VALUES \
           (501, 'new a', 'a', TIMESTAMP '2024-02-01', NULL), \
           (502, 'new b', 'b', TIMESTAMP '2024-02-01', NULL), \
           (503, 'new a', 'a', TIMESTAMP '2024-02-02', NULL), \
           (504, 'new b', 'b', TIMESTAMP '2024-02-03', NULL); \
         UPDATE {table} SET \"Kind\" = 'a', updated_at = TIMESTAMP '2024-02-01 12:00' WHERE id = 4; \
         UPDATE {table} SET \"Kind\" = 'b', updated_at = TIMESTAMP '2024-02-01 12:00' WHERE id = 6;"
    ))
    .await
    .unwrap();
    let info = flight
        .get_flight_info(command(
            serde_json::json!({"table": table, "where": predicate, "cursor": cursor}),
        ))
        .await
        .unwrap();
    let meta = app(&info);
    assert_eq!(meta["lower_bound"], "2024-01-01 00:08:20");
    assert_eq!(meta["upper_bound"], "2024-02-03 00:00:00");
    let second = canon_batches(&read_all(&server, &info).await);
    let ids: Vec<&str> = second.iter().map(|r| r[0].as_deref().unwrap()).collect();
    assert_eq!(ids, ["4", "501", "503"], "exactly the new matching rows");
    assert_eq!(
        second,
        pg_canon_rows(
            &format!(
                "{table} WHERE ({predicate}) AND updated_at > TIMESTAMP '2024-01-01 00:08:20'"
            ),
            &col_refs
        )
        .await
    );

    // The next window starts at the table's MAX, so nothing comes twice.
    let cursor = meta["next_cursor"].as_str().unwrap().to_string();
    let info = flight
        .get_flight_info(command(
            serde_json::json!({"table": table, "where": predicate, "cursor": cursor}),
        ))
        .await
        .unwrap();
    assert!(info.endpoint.is_empty());
    assert_eq!(info.total_records, 0);
    server.stop().await;
}

#[tokio::test]
async fn refused_filters_are_invalid_argument_and_stage_nothing() {
    let schema = table("filter_bad").await;
    let pg = pg().await;
    let prefix = unique("rsf-filter-bad");
    let server = TestServer::start(&[("s3_prefix", &prefix)]).await;
    let mut flight = server.client().await;
    for predicate in [
        "1=1; DROP TABLE t",
        "id = 1 --",
        "nope = 1",
        "count(*) > 0",
        "pg_sleep(1) IS NULL",
        &format!("id IN (SELECT id FROM {schema}.t)"),
        "v = 'a\\'",
        "",
    ] {
        let result = flight
            .get_flight_info(command(serde_json::json!({
                "table": format!("{schema}.t"),
                "where": predicate,
            })))
            .await;
        let status = match result {
            Err(arrow_flight::error::FlightError::Tonic(status)) => status,
            other => panic!("{predicate:?} was not refused: {other:?}"),
        };
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{predicate:?}: {}",
            status.message()
        );
        let reason = status.get_details_error_info().expect("ErrorInfo").reason;
        assert_eq!(reason, "INVALID_FILTER", "{predicate:?}");
    }
    assert!(
        keys_under(&format!("{prefix}/")).await.is_empty(),
        "no staged run"
    );
    let count = pg_rows(&pg, &format!("SELECT count(*) FROM {schema}.t")).await;
    assert_eq!(count, [[Some("500".to_string())]]);
    server.stop().await;
}
