//! End-to-end through arrow-flight's `FlightSqlServiceClient`: a real PostgreSQL behind the
//! Redshift emulator, a real S3 server and the server in-process. Every answer is compared whole,
//! row by row and column by column, with what PostgreSQL returns for the same question:
//!
//! - a join + aggregate query, staged by UNLOAD, read endpoint by endpoint with DoGet;
//! - a small query and a prepared one answered on the connection (no UNLOAD, one endpoint);
//! - the metadata commands (catalogs, schemas, tables with their exact Arrow schemas, primary
//!   keys, SqlInfo, XDBC type info);
//! - refused SQL (INVALID_ARGUMENT, `QUERY_REFUSED`) and updates (UNIMPLEMENTED) change nothing;
//! - an unknown table is NOT_FOUND, an error only running the query reveals is INVALID_ARGUMENT
//!   with Redshift's explanation.
//!
//! Each test stages under a prefix of its own with no grace period and checks that nothing of it
//! is left once every endpoint was read (or the query failed).

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch, UnionArray};
use arrow::datatypes::{DataType, Int32Type, Schema, TimeUnit, UInt32Type};
use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetTables, CommandGetXdbcTypeInfo, SqlInfo,
    XdbcDataType,
};
use arrow_flight::{FlightDescriptor, FlightInfo, IpcMessage};
use futures::TryStreamExt;
use redshift_emulator::FaultSettings;
use tokio_postgres::Client;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::common::canon::arrow_canon;
use crate::common::{TestServer, eventually, keys_under, own_emulator, pg, pg_rows, tb, unique};

type Rows = Vec<Vec<Option<String>>>;

/// A server staging under `prefix` that deletes a run as soon as its every endpoint was read, and
/// stages every query by UNLOAD (`direct_max_rows` 0; the direct path has tests of its own).
async fn server(prefix: &str) -> TestServer {
    TestServer::start(&[
        ("s3_prefix", prefix),
        ("staging_grace_seconds", "0"),
        ("direct_max_rows", "0"),
    ])
    .await
}

/// A Flight SQL client connected to `server`.
async fn connect(server: &TestServer) -> FlightSqlServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .expect("connect to the Flight SQL server");
    FlightSqlServiceClient::new(channel)
}

/// Two small related tables in a fresh schema: customers (a quote and a non-ASCII letter in the
/// names, a NULL region, one without orders) and orders (a NULL amount and time, a negative
/// amount, a time before 1970).
async fn sales(pg: &Client, schema: &str) {
    pg.batch_execute(&format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.customers (id integer PRIMARY KEY, name varchar(40), region varchar(10));
         CREATE TABLE {schema}.orders (id integer PRIMARY KEY, customer_id integer NOT NULL,
             amount numeric(10,2), placed timestamp);
         INSERT INTO {schema}.customers VALUES
             (1, 'Ann', 'north'), (2, 'Bo''b', 'south'), (3, 'Cé', 'north'), (4, 'Dee', NULL);
         INSERT INTO {schema}.orders VALUES
             (1, 1, 10.50, '2024-01-01 10:00'), (2, 1, 99.99, '2024-01-02 11:00'),
             (3, 2, 5.00, '2024-01-03 12:00'), (4, 3, NULL, NULL),
             (5, 2, 1234.56, '2024-02-29 23:59:59.999999'), (6, 2, -0.01, '1969-12-31 23:59:59');"
    ))
    .await
    .unwrap();
}

/// Every batch of every endpoint of `info`, each endpoint read to its end with DoGet.
async fn read_endpoints(
    client: &mut FlightSqlServiceClient<Channel>,
    info: &FlightInfo,
) -> Vec<RecordBatch> {
    let mut batches = Vec::new();
    for endpoint in &info.endpoint {
        let ticket = endpoint.ticket.clone().expect("an endpoint with a ticket");
        let stream = client.do_get(ticket).await.expect("DoGet");
        let got: Vec<RecordBatch> = stream.try_collect().await.expect("every batch");
        batches.extend(got);
    }
    batches
}

/// A metadata answer: every endpoint read and concatenated under the FlightInfo's schema.
async fn answer(client: &mut FlightSqlServiceClient<Channel>, info: FlightInfo) -> RecordBatch {
    let batches = read_endpoints(client, &info).await;
    let schema = Arc::new(info.try_decode_schema().expect("the FlightInfo's schema"));
    for batch in &batches {
        assert_eq!(batch.schema(), schema, "batches have the promised schema");
    }
    arrow::compute::concat_batches(&schema, &batches).unwrap()
}

/// Every row of `batches` as canonical text (NULL as `None`), in the order received.
fn rows(batches: &[RecordBatch]) -> Rows {
    let mut rows = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            rows.push(
                batch
                    .columns()
                    .iter()
                    .map(|c| arrow_canon(c.as_ref(), row))
                    .collect(),
            );
        }
    }
    rows
}

/// `rows` with the columns at `keep` only.
fn columns(rows: &Rows, keep: &[usize]) -> Rows {
    rows.iter()
        .map(|row| keep.iter().map(|&i| row[i].clone()).collect())
        .collect()
}

fn sorted(mut rows: Rows) -> Rows {
    rows.sort();
    rows
}

/// One text column of a metadata answer, by name.
fn texts(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let column = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"));
    (0..batch.num_rows())
        .map(|row| arrow_canon(column.as_ref(), row))
        .collect()
}

/// A LIKE pattern matching `name` only (`_` and `%` escaped, as Flight SQL filters and
/// PostgreSQL both read a backslash).
fn exactly(name: &str) -> String {
    name.replace('\\', "\\\\")
        .replace('_', "\\_")
        .replace('%', "\\%")
}

/// The status of a call that must have failed.
fn failure<T: std::fmt::Debug>(result: Result<T, FlightError>) -> Status {
    match result {
        Err(FlightError::Tonic(status)) => *status,
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

/// Asserts `status` has `code`, ErrorInfo `reason` and a message containing `needle`.
fn assert_status(status: &Status, code: Code, reason: &str, needle: &str) {
    assert_eq!(status.code(), code, "{}", status.message());
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo on {status:?}"));
    assert_eq!(info.reason, reason, "{}", status.message());
    assert_eq!(info.domain, "redshift-flight");
    assert!(
        status.message().contains(needle),
        "{needle:?} not in {:?}",
        status.message()
    );
}

/// Waits until nothing is staged under `prefix` (runs are deleted once read, or when they fail).
async fn assert_nothing_staged(prefix: &str) {
    let under = format!("{prefix}/");
    assert!(
        eventually(Duration::from_secs(15), || async {
            keys_under(&under).await.is_empty()
        })
        .await,
        "staged objects left: {:?}",
        keys_under(&under).await
    );
}

#[tokio::test]
async fn a_join_and_aggregate_query_matches_postgres_row_for_row() {
    let pg = pg().await;
    let schema = unique("fsql_query");
    sales(&pg, &schema).await;
    let prefix = unique("rsf-fsql-query");
    // An emulator of the test's own writes one row per row group, so the result spans several
    // endpoints that are read one by one and concatenated.
    let emulator = own_emulator(1, 2, FaultSettings::default()).await;
    let port = emulator.local_addr().port().to_string();
    let server = TestServer::start(&[
        ("s3_prefix", &prefix),
        ("staging_grace_seconds", "0"),
        ("redshift_port", &port),
        ("endpoint_rows", "1"),
        ("direct_max_rows", "0"),
    ])
    .await;
    let mut client = connect(&server).await;
    let query = format!(
        "SELECT c.id, c.name, c.region, count(o.id) AS orders, \
         CAST(sum(o.amount) AS numeric(10,2)) AS total, max(o.placed) AS last_placed \
         FROM {schema}.customers c LEFT JOIN {schema}.orders o ON o.customer_id = c.id \
         GROUP BY c.id, c.name, c.region"
    );

    let info = client.execute(query.clone(), None).await.expect("execute");
    assert!(
        info.endpoint.len() > 1,
        "one row per row group: {} endpoints",
        info.endpoint.len()
    );
    let promised = info.clone().try_decode_schema().unwrap();
    let types: Vec<(&str, &DataType)> = promised
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type()))
        .collect();
    assert_eq!(
        types,
        [
            ("id", &DataType::Int32),
            ("name", &DataType::Utf8),
            ("region", &DataType::Utf8),
            ("orders", &DataType::Int64),
            ("total", &DataType::Decimal128(10, 2)),
            (
                "last_placed",
                &DataType::Timestamp(TimeUnit::Microsecond, None)
            ),
        ]
    );
    let batches = read_endpoints(&mut client, &info).await;
    for batch in &batches {
        assert_eq!(batch.schema().fields(), promised.fields());
    }
    let got = sorted(rows(&batches));
    assert_eq!(info.total_records, got.len() as i64);

    // The same SQL on PostgreSQL, each column rendered as `arrow_canon` renders its Arrow value
    // (a timestamp as microseconds since the epoch).
    let want = sorted(
        pg_rows(
            &pg,
            &format!(
                "SELECT id::text, name, region, orders::text, total::text, \
                 (EXTRACT(EPOCH FROM last_placed) * 1000000)::numeric(30,0)::text \
                 FROM ({query}) q"
            ),
        )
        .await,
    );
    assert_eq!(want.len(), 4, "every customer, one without orders");
    assert_eq!(got, want);

    assert_nothing_staged(&prefix).await;
    pg.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
    server.stop().await;
    emulator.shutdown().await;
}

#[tokio::test]
async fn metadata_commands_describe_what_postgres_holds() {
    let pg = pg().await;
    let schema = unique("fsql_meta");
    sales(&pg, &schema).await;
    let other = format!("{schema}_b");
    pg.batch_execute(&format!(
        "CREATE TABLE {schema}.order_lines (order_id integer, line_no integer, sku varchar(20),
             PRIMARY KEY (line_no, order_id));
         CREATE VIEW {schema}.big_orders AS SELECT id, amount FROM {schema}.orders WHERE amount > 50;
         CREATE SCHEMA {other}; CREATE TABLE {other}.t (id integer);"
    ))
    .await
    .unwrap();
    let prefix = unique("rsf-fsql-meta");
    let server = server(&prefix).await;
    let mut client = connect(&server).await;
    let database = tb("TESTBED_REDSHIFT_DATABASE");

    // Catalogs: the one database.
    let info = client.get_catalogs().await.expect("GetCatalogs");
    let catalogs = answer(&mut client, info).await;
    assert_eq!(
        rows(&[catalogs]),
        pg_rows(&pg, "SELECT current_database()").await
    );

    // Schemas: the filter is a LIKE pattern, matched as PostgreSQL matches it.
    for pattern in [exactly(&schema), format!("{}%", exactly(&schema))] {
        let info = client
            .get_db_schemas(CommandGetDbSchemas {
                catalog: None,
                db_schema_filter_pattern: Some(pattern.clone()),
            })
            .await
            .expect("GetDbSchemas");
        let schemas = answer(&mut client, info).await;
        let want = pg_rows(
            &pg,
            &format!(
                "SELECT current_database()::text, schema_name::text FROM information_schema.schemata \
                 WHERE schema_name LIKE '{pattern}' ORDER BY schema_name COLLATE \"C\""
            ),
        )
        .await;
        assert!(!want.is_empty());
        assert_eq!(rows(&[schemas]), want, "schemas LIKE {pattern}");
    }

    // Tables (and the view) of the schema, each with the exact schema plain Flight serves.
    let info = client
        .get_tables(CommandGetTables {
            catalog: Some(database.clone()),
            db_schema_filter_pattern: Some(exactly(&schema)),
            table_name_filter_pattern: None,
            table_types: vec![],
            include_schema: true,
        })
        .await
        .expect("GetTables");
    let tables = answer(&mut client, info).await;
    let want = pg_rows(
        &pg,
        &format!(
            "SELECT table_catalog::text, table_schema::text, table_name::text, \
             CASE table_type WHEN 'BASE TABLE' THEN 'TABLE' ELSE table_type END \
             FROM information_schema.tables WHERE table_schema = '{schema}' \
             ORDER BY table_name COLLATE \"C\""
        ),
    )
    .await;
    assert_eq!(want.len(), 4, "customers, orders, order_lines, big_orders");
    assert_eq!(
        columns(&rows(std::slice::from_ref(&tables)), &[0, 1, 2, 3]),
        want
    );
    let encoded = tables
        .column_by_name("table_schema")
        .expect("include_schema adds table_schema")
        .as_binary::<i32>();
    let mut flight = server.client().await;
    for (row, table) in texts(&tables, "table_name").into_iter().enumerate() {
        let table = table.unwrap();
        let listed = Schema::try_from(IpcMessage(encoded.value(row).to_vec().into()))
            .expect("table_schema is an IPC schema");
        let served = flight
            .get_schema(FlightDescriptor::new_path(vec![
                schema.clone(),
                table.clone(),
            ]))
            .await
            .expect("GetSchema");
        assert_eq!(listed, served, "{table}");
        let names: Vec<Option<String>> = listed
            .fields()
            .iter()
            .map(|f| Some(f.name().clone()))
            .collect();
        let want: Vec<Option<String>> = pg_rows(
            &pg,
            &format!(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = '{schema}' AND table_name = '{table}' \
                 ORDER BY ordinal_position"
            ),
        )
        .await
        .into_iter()
        .map(|mut row| row.remove(0))
        .collect();
        assert_eq!(names, want, "{table}");
    }

    // Only views, and no schemas asked for.
    let info = client
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: Some(exactly(&schema)),
            table_name_filter_pattern: None,
            table_types: vec!["VIEW".into()],
            include_schema: false,
        })
        .await
        .expect("GetTables of views");
    let views = answer(&mut client, info).await;
    assert_eq!(views.num_columns(), 4, "no table_schema column");
    assert_eq!(
        rows(&[views]),
        [[&database, &schema, "big_orders", "VIEW"]
            .map(|s| Some(s.to_string()))
            .to_vec()]
    );

    // Primary keys in key order (not column order); a view has none.
    for table in ["orders", "order_lines", "big_orders"] {
        let info = client
            .get_primary_keys(CommandGetPrimaryKeys {
                catalog: None,
                db_schema: Some(schema.clone()),
                table: table.into(),
            })
            .await
            .expect("GetPrimaryKeys");
        let keys = rows(&[answer(&mut client, info).await]);
        let want = pg_rows(
            &pg,
            &format!(
                "SELECT current_database()::text, kcu.table_schema::text, kcu.table_name::text, \
                 kcu.column_name::text, kcu.constraint_name::text, kcu.ordinal_position::text \
                 FROM information_schema.table_constraints tc \
                 JOIN information_schema.key_column_usage kcu \
                 ON kcu.constraint_schema = tc.constraint_schema \
                 AND kcu.constraint_name = tc.constraint_name \
                 WHERE tc.constraint_type = 'PRIMARY KEY' \
                 AND tc.table_schema = '{schema}' AND tc.table_name = '{table}' \
                 ORDER BY kcu.ordinal_position"
            ),
        )
        .await;
        assert_eq!(
            columns(&keys, &[0, 1, 2, 3, 5]),
            columns(&want, &[0, 1, 2, 3, 5]),
            "{table}"
        );
        // The key's name is optional in Flight SQL; when given it is the constraint's.
        for (got, want) in keys.iter().zip(&want) {
            assert!(got[4].is_none() || got[4] == want[4], "{got:?} vs {want:?}");
        }
    }
    let info = client
        .get_primary_keys(CommandGetPrimaryKeys {
            catalog: None,
            db_schema: Some(schema.clone()),
            table: "order_lines".into(),
        })
        .await
        .unwrap();
    let keys = answer(&mut client, info).await;
    assert_eq!(
        texts(&keys, "column_name"),
        [Some("line_no".to_string()), Some("order_id".to_string())],
        "key order"
    );

    // SqlInfo: the infos asked for, and only those.
    let asked = [
        SqlInfo::FlightSqlServerName,
        SqlInfo::FlightSqlServerVersion,
        SqlInfo::FlightSqlServerArrowVersion,
        SqlInfo::FlightSqlServerReadOnly,
        SqlInfo::FlightSqlServerSql,
        SqlInfo::SqlIdentifierQuoteChar,
    ];
    let info = client
        .get_sql_info(asked.to_vec())
        .await
        .expect("GetSqlInfo");
    let mut infos = sql_infos(&answer(&mut client, info).await);
    infos.sort();
    let mut want = vec![
        (
            SqlInfo::FlightSqlServerName as u32,
            "redshift-flight".into(),
        ),
        (
            SqlInfo::FlightSqlServerVersion as u32,
            env!("CARGO_PKG_VERSION").into(),
        ),
        (
            SqlInfo::FlightSqlServerArrowVersion as u32,
            arrow::ARROW_VERSION.into(),
        ),
        (SqlInfo::FlightSqlServerReadOnly as u32, "true".into()),
        (SqlInfo::FlightSqlServerSql as u32, "true".into()),
        (SqlInfo::SqlIdentifierQuoteChar as u32, "\"".into()),
    ];
    want.sort();
    assert_eq!(infos, want);

    // XDBC type info: every type once, sorted by XDBC type then name, each local name the one
    // PostgreSQL gives the type, and every column type of the test's tables among them.
    let info = client
        .get_xdbc_type_info(CommandGetXdbcTypeInfo { data_type: None })
        .await
        .expect("GetXdbcTypeInfo");
    let types = answer(&mut client, info).await;
    let names: Vec<String> = texts(&types, "type_name")
        .into_iter()
        .map(Option::unwrap)
        .collect();
    let locals: Vec<String> = texts(&types, "local_type_name")
        .into_iter()
        .map(Option::unwrap)
        .collect();
    let codes: Vec<i32> = types
        .column_by_name("data_type")
        .unwrap()
        .as_primitive::<Int32Type>()
        .values()
        .to_vec();
    let order: Vec<(i32, &String)> = codes.iter().copied().zip(&names).collect();
    assert!(order.is_sorted(), "{order:?}");
    assert!(names.len() >= 15, "{names:?}");
    for (name, local) in names.iter().zip(&locals) {
        let pg_name = pg_rows(
            &pg,
            &format!("SELECT pg_typeof(CAST(NULL AS {name}))::text"),
        )
        .await;
        assert_eq!(pg_name, [[Some(local.clone())]], "{name}");
    }
    let used = pg_rows(
        &pg,
        &format!(
            "SELECT DISTINCT format_type(a.atttypid, NULL) FROM pg_attribute a \
             JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = '{schema}' AND a.attnum > 0 AND NOT a.attisdropped"
        ),
    )
    .await;
    assert_eq!(used.len(), 4, "{used:?}");
    for row in used {
        let used = row[0].clone().unwrap();
        assert!(locals.contains(&used), "{used} not in {locals:?}");
    }
    let info = client
        .get_xdbc_type_info(CommandGetXdbcTypeInfo {
            data_type: Some(XdbcDataType::XdbcInteger as i32),
        })
        .await
        .unwrap();
    let integer = answer(&mut client, info).await;
    assert_eq!(texts(&integer, "type_name"), [Some("integer".to_string())]);
    assert_eq!(
        texts(&integer, "local_type_name"),
        [Some("integer".to_string())]
    );

    assert_nothing_staged(&prefix).await;
    pg.batch_execute(&format!(
        "DROP SCHEMA {schema} CASCADE; DROP SCHEMA {other} CASCADE"
    ))
    .await
    .unwrap();
    server.stop().await;
}

/// The (info id, value as text) pairs of a `CommandGetSqlInfo` answer.
fn sql_infos(batch: &RecordBatch) -> Vec<(u32, String)> {
    let ids = batch.column(0).as_primitive::<UInt32Type>();
    let values = batch
        .column(1)
        .as_any()
        .downcast_ref::<UnionArray>()
        .expect("value is a dense union");
    (0..batch.num_rows())
        .map(|row| {
            let value = values.value(row);
            let text = match value.data_type() {
                DataType::Utf8 => value.as_string::<i32>().value(0).to_string(),
                DataType::Boolean => value.as_boolean().value(0).to_string(),
                other => arrow::util::display::array_value_to_string(&value, 0)
                    .unwrap_or_else(|e| panic!("{other}: {e}")),
            };
            (ids.value(row), text)
        })
        .collect()
}

#[tokio::test]
async fn refused_sql_and_updates_change_nothing() {
    let pg = pg().await;
    let schema = unique("fsql_refused");
    sales(&pg, &schema).await;
    let prefix = unique("rsf-fsql-refused");
    let server = server(&prefix).await;
    let mut client = connect(&server).await;
    let everything = |table: &str| format!("SELECT * FROM {schema}.{table}");
    let before = (
        sorted(pg_rows(&pg, &everything("orders")).await),
        sorted(pg_rows(&pg, &everything("customers")).await),
    );
    assert_eq!(before.0.len(), 6);

    let refused = [
        (format!("DELETE FROM {schema}.orders"), "DELETE"),
        (format!("SELECT 1; DELETE FROM {schema}.orders"), "found 2"),
        (
            format!("SELECT id FROM {schema}.orders; -- hidden\nDROP TABLE {schema}.customers"),
            "found 2",
        ),
        (format!("DROP TABLE {schema}.orders"), "DROP"),
    ];
    for (sql, needle) in refused {
        let status = failure(client.execute(sql, None).await);
        assert_status(&status, Code::InvalidArgument, "QUERY_REFUSED", needle);
    }
    for sql in [
        format!("DELETE FROM {schema}.orders"),
        format!("INSERT INTO {schema}.customers VALUES (9, 'Eve', 'east')"),
    ] {
        let status = failure(client.execute_update(sql, None).await);
        assert_status(&status, Code::Unimplemented, "UNIMPLEMENTED", "read-only");
    }

    let after = (
        sorted(pg_rows(&pg, &everything("orders")).await),
        sorted(pg_rows(&pg, &everything("customers")).await),
    );
    assert_eq!(after, before);
    assert_nothing_staged(&prefix).await;
    pg.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn unknown_tables_and_errors_only_redshift_sees_are_clear() {
    let pg = pg().await;
    let schema = unique("fsql_errors");
    sales(&pg, &schema).await;
    let prefix = unique("rsf-fsql-errors");
    let server = server(&prefix).await;
    let mut client = connect(&server).await;

    let status = failure(
        client
            .execute(
                format!("SELECT o.id FROM {schema}.orders o JOIN {schema}.no_such_table n ON n.id = o.id"),
                None,
            )
            .await,
    );
    assert_status(&status, Code::NotFound, "TABLE_NOT_FOUND", "no_such_table");

    // Valid SQL over served tables that fails only when Redshift runs it: the client's mistake,
    // with Redshift's explanation; what the failed UNLOAD staged is deleted.
    for (sql, problem) in [
        ("SELECT 1/0 AS x".to_string(), "division by zero"),
        (
            format!("SELECT id, CAST(name AS integer) AS n FROM {schema}.customers"),
            "invalid input syntax for type integer",
        ),
    ] {
        let want = pg
            .simple_query(&sql)
            .await
            .expect_err("PostgreSQL fails too");
        assert!(want.to_string().contains(problem) || format!("{want:?}").contains(problem));
        let status = failure(client.execute(sql.clone(), None).await);
        assert_status(&status, Code::InvalidArgument, "QUERY_INVALID", problem);
    }

    assert_nothing_staged(&prefix).await;
    pg.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
    server.stop().await;
}

/// With `direct_max_rows` at its default, a small query is answered on the connection: one
/// endpoint whose ticket is a `TicketStatementQuery`, nothing staged, no UNLOAD; the rows equal
/// PostgreSQL's, for a plain statement and for a prepared one with a bound parameter.
#[tokio::test]
async fn a_small_query_is_answered_without_unload() {
    let pg = pg().await;
    let schema = unique("fsql_direct");
    sales(&pg, &schema).await;
    let prefix = unique("rsf-fsql-direct");
    let emulator = own_emulator(0, 2, FaultSettings::default()).await;
    let port = emulator.local_addr().port().to_string();
    let server = TestServer::start(&[("s3_prefix", &prefix), ("redshift_port", &port)]).await;
    let mut client = connect(&server).await;
    let query = format!(
        "SELECT o.id, c.name, o.amount, o.placed FROM {schema}.orders o \
         JOIN {schema}.customers c ON c.id = o.customer_id"
    );
    let info = client.execute(query.clone(), None).await.expect("execute");
    assert_eq!(info.endpoint.len(), 1, "one endpoint");
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let any =
        <arrow_flight::sql::Any as prost::Message>::decode(ticket.ticket.clone()).expect("an Any");
    assert!(
        any.type_url.ends_with("TicketStatementQuery"),
        "{}",
        any.type_url
    );
    let batches = read_endpoints(&mut client, &info).await;
    let want = |filter: &str| {
        format!(
            "SELECT id::text, name, amount::text, \
             (EXTRACT(EPOCH FROM placed) * 1000000)::numeric(30,0)::text FROM ({query}) q {filter}"
        )
    };
    assert_eq!(
        sorted(rows(&batches)),
        sorted(pg_rows(&pg, &want("")).await)
    );

    // A prepared statement with a parameter takes the same path.
    let mut prepared = client
        .prepare(format!("{query} WHERE o.id > ?"), None)
        .await
        .expect("prepare");
    let parameters = RecordBatch::try_new(
        Arc::new(Schema::new(vec![arrow::datatypes::Field::new(
            "$1",
            DataType::Int64,
            true,
        )])),
        vec![Arc::new(arrow::array::Int64Array::from(vec![2]))],
    )
    .unwrap();
    prepared.set_parameters(parameters).expect("parameters");
    let info = prepared
        .execute()
        .await
        .expect("execute the prepared statement");
    assert_eq!(info.endpoint.len(), 1);
    let batches = read_endpoints(&mut client, &info).await;
    assert_eq!(
        sorted(rows(&batches)),
        sorted(pg_rows(&pg, &want("WHERE id > 2")).await)
    );

    assert_eq!(emulator.unload_stats().started(), 0, "no UNLOAD ran");
    assert!(keys_under(&format!("{prefix}/")).await.is_empty());
    pg.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
    server.stop().await;
    emulator.shutdown().await;
}
