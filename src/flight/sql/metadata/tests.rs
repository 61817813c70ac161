//! Tests of the metadata answers over a fake catalog: two served schemas (a table with a
//! two-column primary key, a view and a table), an empty one and system schemas, read by an
//! unrestricted and by restricted principals.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use arrow::array::{AsArray, BinaryArray};
use arrow::util::pretty::pretty_format_batches;
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetCrossReference, CommandGetExportedKeys, CommandGetImportedKeys,
    CommandGetSqlInfo, CommandGetXdbcTypeInfo, CommandStatementUpdate, ProstMessageExt,
    XdbcDataType,
};
use tonic::metadata::MetadataMap;

use super::info::bits;
use super::*;
use crate::auth::Authenticator;
use crate::catalog::{CatalogError, ColumnInfo, TableRef};
use crate::keys::Keyring;

#[derive(Debug, Default)]
struct FakeCatalog {
    /// Whether reading schema names fails.
    broken: AtomicBool,
}

fn table(schema: &str, name: &str, kind: TableKind, key: &[&str]) -> Arc<TableInfo> {
    Arc::new(TableInfo {
        table: TableRef::new(schema, name),
        kind,
        columns: vec![
            ColumnInfo::new("id", "integer", false),
            ColumnInfo::new("line", "smallint", false),
            ColumnInfo::new("amount", "numeric(10,2)", true),
        ],
        primary_key: key.iter().map(|k| k.to_string()).collect(),
        row_estimate: None,
        replication_key: None,
        strategy: None,
    })
}

#[async_trait::async_trait]
impl Catalog for FakeCatalog {
    async fn list_tables(&self, schema: &str) -> Result<Vec<Arc<TableInfo>>, CatalogError> {
        Ok(match schema {
            "public" => vec![table("public", "orders", TableKind::Table, &["id", "line"])],
            "sales" => vec![
                table("sales", "region_totals", TableKind::View, &[]),
                table("sales", "secret", TableKind::Table, &[]),
            ],
            "pg_catalog" => vec![table("pg_catalog", "pg_class", TableKind::Table, &[])],
            _ => vec![],
        })
    }

    fn default_schema(&self) -> &str {
        "public"
    }

    async fn schemas(&self) -> Result<Vec<String>, CatalogError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(CatalogError::Unexpected {
                schema: "(schema names)".into(),
                message: "broken".into(),
            });
        }
        let names = [
            "catalog_history",
            "empty",
            "information_schema",
            "pg_catalog",
        ];
        let more = ["pg_temp_1", "pg_toast", "public", "sales"];
        Ok(names.iter().chain(&more).map(|s| s.to_string()).collect())
    }
}

fn source(catalog: &FakeCatalog) -> Source<'_> {
    Source {
        catalog,
        database: "dev",
    }
}

/// A principal that may read `patterns`, authenticated through an access file as a client's
/// would be.
fn restricted(patterns: &[&str]) -> Principal {
    let path = std::env::temp_dir().join(format!("rsf-metadata-{:x}.json", rand::random::<u64>()));
    let file = serde_json::json!({
        "tokens": [{"name": "reader", "token": "metadata-test-token", "tables": patterns}]
    });
    std::fs::write(&path, file.to_string()).unwrap();
    let keys = Arc::new(Keyring::new(&["key"]));
    let auth = Authenticator::new(vec![], Some(&path), keys, Duration::from_secs(60));
    std::fs::remove_file(&path).unwrap();
    let mut metadata = MetadataMap::new();
    metadata.insert(
        "authorization",
        "Bearer metadata-test-token".parse().unwrap(),
    );
    auth.unwrap()
        .authenticate(&metadata, SystemTime::now())
        .unwrap()
}

/// The message as the dispatch hands it over.
fn command(message: impl ProstMessageExt) -> Command {
    Command::try_from(message.as_any()).unwrap()
}

async fn run(principal: &Principal, message: impl ProstMessageExt) -> Vec<String> {
    let catalog = FakeCatalog::default();
    let command = command(message);
    let expected = schema_of(&command).unwrap();
    let batch = answer(source(&catalog), principal, command).await.unwrap();
    assert_eq!(
        batch.schema(),
        expected,
        "the answer has the promised schema"
    );
    lines(&batch)
}

fn lines(batch: &RecordBatch) -> Vec<String> {
    let text = pretty_format_batches(std::slice::from_ref(batch))
        .unwrap()
        .to_string();
    text.lines().map(str::to_string).collect()
}

fn schemas(catalog: Option<&str>, pattern: Option<&str>) -> CommandGetDbSchemas {
    CommandGetDbSchemas {
        catalog: catalog.map(Into::into),
        db_schema_filter_pattern: pattern.map(Into::into),
    }
}

fn tables(schema: Option<&str>, name: Option<&str>, types: &[&str]) -> CommandGetTables {
    CommandGetTables {
        catalog: None,
        db_schema_filter_pattern: schema.map(Into::into),
        table_name_filter_pattern: name.map(Into::into),
        table_types: types.iter().map(|t| t.to_string()).collect(),
        include_schema: false,
    }
}

fn keys(catalog: Option<&str>, schema: Option<&str>, table: &str) -> CommandGetPrimaryKeys {
    CommandGetPrimaryKeys {
        catalog: catalog.map(Into::into),
        db_schema: schema.map(Into::into),
        table: table.into(),
    }
}

/// The `column`th column of a one-column-per-line rendering, without the header.
fn column(lines: &[String], column: usize) -> Vec<String> {
    lines[3..lines.len() - 1]
        .iter()
        .map(|l| l.split('|').nth(column + 1).unwrap().trim().to_string())
        .collect()
}

#[tokio::test]
async fn sql_info_answers_what_clients_ask_and_filters_by_id() {
    let all = run(&Principal::anonymous(), CommandGetSqlInfo { info: vec![] }).await;
    assert!(all.len() > 60, "{all:#?}");
    let lists = [508, 509, 510, 511, 512].map(|id| CommandGetSqlInfo { info: vec![id] });
    for list in lists {
        let text = run(&Principal::anonymous(), list).await.join("\n");
        assert!(
            text.contains("string_list=[") && !text.contains("[]"),
            "{text}"
        );
        assert!(
            !text.contains(", ,") && !text.contains("[,") && !text.contains(", ]"),
            "{text}"
        );
    }
    let asked = CommandGetSqlInfo {
        info: vec![0, 3, 4, 5, 8, 9, 503, 504, 99_999],
    };
    assert_eq!(
        run(&Principal::anonymous(), asked).await,
        [
            "+-----------+--------------------------------+",
            "| info_name | value                          |",
            "+-----------+--------------------------------+",
            "| 0         | {string_value=redshift-flight} |",
            "| 3         | {bool_value=true}              |",
            "| 4         | {bool_value=true}              |",
            "| 5         | {bool_value=false}             |",
            "| 8         | {int32_bitmask=0}              |",
            "| 9         | {bool_value=true}              |",
            "| 503       | {int32_bitmask=3}              |",
            "| 504       | {string_value=\"}               |",
            "+-----------+--------------------------------+",
        ]
    );
}

#[tokio::test]
async fn the_one_catalog_is_the_database() {
    let lines = run(&Principal::anonymous(), CommandGetCatalogs {}).await;
    assert_eq!(column(&lines, 0), ["dev"]);
}

#[tokio::test]
async fn schemas_are_those_the_caller_may_read_in_without_system_ones() {
    let anonymous = Principal::anonymous();
    let all = run(&anonymous, schemas(None, None)).await;
    assert_eq!(column(&all, 1), ["empty", "public", "sales"]);
    assert_eq!(column(&all, 0), ["dev", "dev", "dev"]);
    let only = restricted(&["sales.region_totals"]);
    assert_eq!(column(&run(&only, schemas(None, None)).await, 1), ["sales"]);
    // A whole schema granted is listed even when it serves nothing yet.
    let empty = restricted(&["empty.*", "public.nothing_here"]);
    assert_eq!(
        column(&run(&empty, schemas(None, None)).await, 1),
        ["empty"]
    );
    let nobody = restricted(&["other.*"]);
    assert!(column(&run(&nobody, schemas(None, None)).await, 1).is_empty());
    // Filters: the catalog must be the database; the pattern is LIKE.
    assert_eq!(
        column(&run(&anonymous, schemas(Some("dev"), Some("s%"))).await, 1),
        ["sales"]
    );
    assert_eq!(
        column(&run(&anonymous, schemas(None, Some("publi_"))).await, 1),
        ["public"]
    );
    assert!(column(&run(&anonymous, schemas(Some("other"), None)).await, 1).is_empty());
    assert!(column(&run(&anonymous, schemas(Some(""), None)).await, 1).is_empty());
    assert!(column(&run(&anonymous, schemas(None, Some("pg%"))).await, 1).is_empty());
}

#[tokio::test]
async fn tables_are_those_the_caller_may_read() {
    let anonymous = Principal::anonymous();
    let all = run(&anonymous, tables(None, None, &[])).await;
    assert_eq!(
        all[3..all.len() - 1],
        [
            "| dev          | public         | orders        | TABLE      |",
            "| dev          | sales          | region_totals | VIEW       |",
            "| dev          | sales          | secret        | TABLE      |",
        ]
    );
    let only = restricted(&["sales.region_totals", "pg_catalog.*"]);
    assert_eq!(
        column(&run(&only, tables(None, None, &[])).await, 2),
        ["region_totals"]
    );
    let views = run(&anonymous, tables(None, None, &["VIEW"])).await;
    assert_eq!(column(&views, 2), ["region_totals"]);
    let named = run(
        &anonymous,
        tables(Some("%"), Some("%e_r%"), &["TABLE", "VIEW"]),
    )
    .await;
    assert_eq!(column(&named, 2), ["secret"]);
    let other = CommandGetTables {
        catalog: Some("other".into()),
        ..tables(None, None, &[])
    };
    assert!(column(&run(&anonymous, other).await, 2).is_empty());
}

#[tokio::test]
async fn tables_carry_their_exact_arrow_schemas_when_asked() {
    let catalog = FakeCatalog::default();
    let message = CommandGetTables {
        include_schema: true,
        ..tables(Some("public"), None, &[])
    };
    let command = command(message);
    let expected = schema_of(&command).unwrap();
    let batch = answer(source(&catalog), &Principal::anonymous(), command)
        .await
        .unwrap();
    assert_eq!(batch.schema(), expected);
    assert_eq!(batch.num_rows(), 1);
    let bytes: &BinaryArray = batch.column(4).as_binary();
    let schema = arrow::ipc::convert::try_schema_from_ipc_buffer(bytes.value(0)).unwrap();
    let orders = catalog.list_tables("public").await.unwrap();
    assert_eq!(schema, *orders[0].arrow_schema());
    assert!(
        !schema.metadata().is_empty(),
        "the schema metadata travels too"
    );
}

#[tokio::test]
async fn table_types_are_table_and_view() {
    let lines = run(&Principal::anonymous(), CommandGetTableTypes {}).await;
    assert_eq!(column(&lines, 0), ["TABLE", "VIEW"]);
}

#[tokio::test]
async fn primary_keys_of_a_readable_served_table() {
    let anonymous = Principal::anonymous();
    let found = run(&anonymous, keys(None, Some("public"), "orders")).await;
    assert_eq!(
        found,
        [
            "+--------------+----------------+------------+-------------+----------+--------------+",
            "| catalog_name | db_schema_name | table_name | column_name | key_name | key_sequence |",
            "+--------------+----------------+------------+-------------+----------+--------------+",
            "| dev          | public         | orders     | id          |          | 1            |",
            "| dev          | public         | orders     | line        |          | 2            |",
            "+--------------+----------------+------------+-------------+----------+--------------+",
        ]
    );
    // No schema: the default one; names match case-insensitively as everywhere else.
    assert_eq!(
        run(&anonymous, keys(Some("dev"), None, "ORDERS")).await,
        found
    );
    let nothing = [
        (&anonymous, keys(Some("other"), None, "orders")),
        (&anonymous, keys(None, Some("public"), "missing")),
        (&anonymous, keys(None, Some(""), "")),
        (&anonymous, keys(None, Some("sales"), "secret")),
    ];
    for (principal, command) in nothing {
        assert_eq!(
            column(&run(principal, command).await, 3),
            Vec::<String>::new()
        );
    }
    let forbidden = restricted(&["sales.*"]);
    let lines = run(&forbidden, keys(None, Some("public"), "orders")).await;
    assert!(column(&lines, 3).is_empty());
}

#[tokio::test]
async fn xdbc_type_info_lists_the_redshift_types_and_filters_by_type() {
    let all = run(
        &Principal::anonymous(),
        CommandGetXdbcTypeInfo { data_type: None },
    )
    .await;
    let mut names = column(&all, 0);
    names.sort();
    assert_eq!(
        names,
        [
            "bigint",
            "boolean",
            "char",
            "date",
            "decimal",
            "double precision",
            "geometry",
            "integer",
            "numeric",
            "real",
            "smallint",
            "super",
            "time",
            "timestamp",
            "timestamptz",
            "timetz",
            "varbyte",
            "varchar",
        ]
    );
    let bigint = CommandGetXdbcTypeInfo {
        data_type: Some(XdbcDataType::XdbcBigint as i32),
    };
    assert_eq!(
        column(&run(&Principal::anonymous(), bigint).await, 0),
        ["bigint"]
    );
    let timestamps = CommandGetXdbcTypeInfo {
        data_type: Some(XdbcDataType::XdbcTimestamp as i32),
    };
    let timestamps = run(&Principal::anonymous(), timestamps).await;
    assert_eq!(column(&timestamps, 0), ["timestamp", "timestamptz"]);
    let unknown = CommandGetXdbcTypeInfo {
        data_type: Some(12_345),
    };
    assert!(column(&run(&Principal::anonymous(), unknown).await, 0).is_empty());
}

#[tokio::test]
async fn foreign_keys_are_valid_empty_answers() {
    let anonymous = Principal::anonymous();
    let empty = [
        run(&anonymous, CommandGetImportedKeys::default()).await,
        run(&anonymous, CommandGetExportedKeys::default()).await,
        run(&anonymous, CommandGetCrossReference::default()).await,
    ];
    for lines in empty {
        assert_eq!(lines.len(), 4, "a header and no rows: {lines:#?}");
        assert!(lines[1].contains("pk_table_name") && lines[1].contains("delete_rule"));
    }
}

#[tokio::test]
async fn odd_patterns_and_names_never_panic() {
    let anonymous = Principal::anonymous();
    let odd = [
        "", "%", "_", "\\", "a\\", "\\%", "[", "(", "%%\\%", "*", ".*", "é%", "\0",
    ];
    for pattern in odd {
        run(&anonymous, schemas(None, Some(pattern))).await;
        run(&anonymous, tables(Some(pattern), Some(pattern), &[pattern])).await;
        run(&anonymous, keys(Some(pattern), Some(pattern), pattern)).await;
    }
    // A pattern too large for a regex is refused as the client's mistake.
    let catalog = FakeCatalog::default();
    let huge = "_%".repeat(200_000);
    let huge = command(tables(None, Some(&huge), &[]));
    match answer(source(&catalog), &anonymous, huge).await {
        Err(ServiceError::FlightSql(message)) => assert!(message.contains("table name")),
        other => panic!("expected a refused pattern, got {other:?}"),
    }
}

#[tokio::test]
async fn catalog_failures_are_reported_and_other_commands_are_not_metadata() {
    let catalog = FakeCatalog::default();
    catalog.broken.store(true, Ordering::SeqCst);
    let listing = command(schemas(None, None));
    let result = answer(source(&catalog), &Principal::anonymous(), listing).await;
    assert!(
        matches!(result, Err(ServiceError::Catalog(_))),
        "{result:?}"
    );
    let update = command(CommandStatementUpdate::default());
    assert!(schema_of(&update).is_none());
    let result = answer(source(&catalog), &Principal::anonymous(), update).await;
    assert!(
        matches!(result, Err(ServiceError::Unimplemented(_))),
        "{result:?}"
    );
}

#[test]
fn the_constant_answers_build_with_their_promised_schemas() {
    assert_eq!(*sql_info().unwrap().schema(), *SqlInfoDataBuilder::schema());
    assert_eq!(
        xdbc_info().unwrap().schema(),
        XdbcTypeInfoDataBuilder::new().schema()
    );
    assert_eq!(bits(&[0, 1, 3]), 0b1011);
    assert!(is_system_schema("PG_INTERNAL") && !is_system_schema("pgsales"));
}
