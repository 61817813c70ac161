//! Flight SQL metadata: what ADBC's `get_info`/`get_objects`, JDBC's `DatabaseMetaData` and BI
//! tools ask before they query. Every answer is one batch built from the catalog cache (never an
//! UNLOAD) and filtered by the caller's table patterns: a schema is listed only when the caller
//! may read something in it, a table only when the caller may read it. System schemas
//! (`pg_*`, `information_schema`, `catalog_history`) are never listed. Foreign keys are not
//! tracked, so imported/exported keys and cross references are valid empty answers.
//!
//! Imports: the parent's `Service` and errors, `crate::catalog`, `crate::auth`.

mod info;
#[cfg(test)]
mod tests;

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, BooleanArray, Int32Array, RecordBatch, StringArray, new_null_array};
use arrow::compute::kernels::comparison::like;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow_flight::error::FlightError;
use arrow_flight::sql::metadata::{
    GetCatalogsBuilder, SqlInfoDataBuilder, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    Command, CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetTableTypes, CommandGetTables,
};
use futures::{StreamExt, TryStreamExt, stream};

use super::super::{Service, ServiceError};
use crate::auth::Principal;
use crate::catalog::{Catalog, TableInfo, TableKind};
use info::{sql_info, xdbc_info};

/// The table types served, as `CommandGetTables` and `CommandGetTableTypes` spell them.
const TABLE: &str = "TABLE";
const VIEW: &str = "VIEW";

/// How many schemas' tables are read from the catalog at once.
const CONCURRENT_SCHEMAS: usize = 8;

/// The Arrow schema of a metadata command's answer; `None` when `command` is not a metadata
/// command this server answers.
pub(super) fn schema(_service: &Service, command: &Command) -> Option<SchemaRef> {
    schema_of(command)
}

/// The answer to a metadata command, for `principal`.
pub(super) async fn batch(
    service: &Service,
    principal: &Principal,
    command: Command,
) -> Result<RecordBatch, ServiceError> {
    let source = Source {
        catalog: service.catalog.as_ref(),
        database: &service.database,
    };
    answer(source, principal, command).await
}

/// What the answers are computed from: the catalog and the name of the database it describes
/// (the one Flight SQL catalog).
#[derive(Debug, Clone, Copy)]
struct Source<'a> {
    catalog: &'a dyn Catalog,
    database: &'a str,
}

fn schema_of(command: &Command) -> Option<SchemaRef> {
    Some(match command {
        Command::CommandGetSqlInfo(_) => Arc::new(SqlInfoDataBuilder::schema().clone()),
        Command::CommandGetCatalogs(_) => GetCatalogsBuilder::new().schema(),
        Command::CommandGetDbSchemas(_) => CommandGetDbSchemas::default().into_builder().schema(),
        Command::CommandGetTables(tables) => CommandGetTables {
            include_schema: tables.include_schema,
            ..Default::default()
        }
        .into_builder()
        .schema(),
        Command::CommandGetTableTypes(_) => CommandGetTableTypes {}.into_builder().schema(),
        Command::CommandGetPrimaryKeys(_) => Arc::clone(&PRIMARY_KEYS_SCHEMA),
        Command::CommandGetXdbcTypeInfo(_) => XdbcTypeInfoDataBuilder::new().schema(),
        Command::CommandGetImportedKeys(_)
        | Command::CommandGetExportedKeys(_)
        | Command::CommandGetCrossReference(_) => Arc::clone(&FOREIGN_KEYS_SCHEMA),
        _ => return None,
    })
}

async fn answer(
    source: Source<'_>,
    principal: &Principal,
    command: Command,
) -> Result<RecordBatch, ServiceError> {
    match command {
        Command::CommandGetSqlInfo(info) => {
            sql_info()?.record_batch(info.info).map_err(flight_error)
        }
        Command::CommandGetCatalogs(_) => {
            let mut builder = GetCatalogsBuilder::new();
            builder.append(source.database);
            builder.build().map_err(flight_error)
        }
        Command::CommandGetDbSchemas(command) => db_schemas(source, principal, command).await,
        Command::CommandGetTables(command) => tables(source, principal, command).await,
        Command::CommandGetTableTypes(command) => {
            let mut builder = command.into_builder();
            builder.append(TABLE);
            builder.append(VIEW);
            builder.build().map_err(flight_error)
        }
        Command::CommandGetPrimaryKeys(command) => primary_keys(source, principal, command).await,
        Command::CommandGetXdbcTypeInfo(command) => xdbc_info()?
            .record_batch(command.data_type)
            .map_err(flight_error),
        Command::CommandGetImportedKeys(_)
        | Command::CommandGetExportedKeys(_)
        | Command::CommandGetCrossReference(_) => {
            Ok(RecordBatch::new_empty(Arc::clone(&FOREIGN_KEYS_SCHEMA)))
        }
        command => Err(super::unimplemented(&command)),
    }
}

/// The builders fail only on Arrow errors; anything else is kept as the cause.
fn flight_error(error: FlightError) -> ServiceError {
    match error {
        FlightError::Arrow(error) => ServiceError::Arrow(error),
        other => ServiceError::Arrow(ArrowError::ExternalError(Box::new(other))),
    }
}

/// Whether a request's catalog filter admits the served database (no filter admits it).
fn catalog_matches(source: Source<'_>, catalog: Option<&str>) -> bool {
    catalog.is_none_or(|catalog| catalog == source.database)
}

/// Redshift's own schemas: PostgreSQL reserves the `pg_` prefix (`pg_catalog`, `pg_internal`,
/// `pg_toast`, `pg_temp_1`, `pg_automv`...), plus `information_schema` and `catalog_history`.
fn is_system_schema(schema: &str) -> bool {
    let lower = schema.to_ascii_lowercase();
    lower.starts_with("pg_") || lower == "information_schema" || lower == "catalog_history"
}

/// Which of `names` match the LIKE `pattern` (`%`, `_`, `\` escapes, as the arrow-flight builders
/// match them); all of them when there is no pattern. A pattern Arrow cannot compile (too large)
/// is the client's mistake.
fn like_mask(names: &[&str], pattern: Option<&str>, what: &str) -> Result<Vec<bool>, ServiceError> {
    let Some(pattern) = pattern else {
        return Ok(vec![true; names.len()]);
    };
    let array = StringArray::from_iter_values(names);
    let mask: BooleanArray = like(&array, &StringArray::new_scalar(pattern)).map_err(|e| {
        let shown: String = pattern.chars().take(80).collect();
        ServiceError::FlightSql(format!("{what} filter pattern {shown:?}: {e}"))
    })?;
    Ok(mask.iter().map(|m| m == Some(true)).collect())
}

/// Whether `principal` may read every table of `schema`, whatever it is named (all tables, or a
/// pattern such as `sales.*`): probed with two names no table pattern lists by accident, the
/// empty name and one of control characters.
fn may_read_whole_schema(principal: &Principal, schema: &str) -> bool {
    principal.may_read(schema, "") && principal.may_read(schema, "\u{1}\u{2}any table\u{3}")
}

/// The non-system schemas whose names match `pattern`.
async fn candidate_schemas(
    source: Source<'_>,
    pattern: Option<&str>,
) -> Result<Vec<String>, ServiceError> {
    let mut names = source.catalog.schemas().await?;
    names.retain(|s| !is_system_schema(s));
    let mask = like_mask(
        &names.iter().map(String::as_str).collect::<Vec<_>>(),
        pattern,
        "schema",
    )?;
    Ok(names
        .into_iter()
        .zip(mask)
        .filter(|(_, m)| *m)
        .map(|(s, _)| s)
        .collect())
}

/// The served tables of each of `schemas` that `principal` may read.
async fn readable_tables(
    source: Source<'_>,
    principal: &Principal,
    schemas: Vec<String>,
) -> Result<Vec<(String, Vec<Arc<TableInfo>>)>, ServiceError> {
    stream::iter(schemas)
        .map(|schema| async move {
            let mut tables = source.catalog.list_tables(&schema).await?;
            tables.retain(|t| principal.may_read(&t.table.namespace(), &t.table.table));
            Ok::<_, ServiceError>((schema, tables))
        })
        .buffered(CONCURRENT_SCHEMAS)
        .try_collect()
        .await
}

/// `CommandGetDbSchemas`: the schemas the principal may read something in. One it may read
/// wholly is listed without reading its tables (so an unrestricted caller sees every schema,
/// even one serving nothing yet); otherwise it must hold at least one served table it may read.
async fn db_schemas(
    source: Source<'_>,
    principal: &Principal,
    command: CommandGetDbSchemas,
) -> Result<RecordBatch, ServiceError> {
    if !catalog_matches(source, command.catalog.as_deref()) {
        let schema = CommandGetDbSchemas::default().into_builder().schema();
        return Ok(RecordBatch::new_empty(schema));
    }
    let candidates = candidate_schemas(source, command.db_schema_filter_pattern.as_deref()).await?;
    let (mut listed, to_check): (Vec<String>, Vec<String>) = candidates
        .into_iter()
        .partition(|s| may_read_whole_schema(principal, s));
    for (schema, tables) in readable_tables(source, principal, to_check).await? {
        if !tables.is_empty() {
            listed.push(schema);
        }
    }
    let mut builder = command.into_builder();
    for schema in listed {
        builder.append(source.database, schema);
    }
    builder.build().map_err(flight_error)
}

/// `CommandGetTables`: every served table and view of the matching schemas the principal may
/// read, with its exact Arrow schema when asked.
async fn tables(
    source: Source<'_>,
    principal: &Principal,
    command: CommandGetTables,
) -> Result<RecordBatch, ServiceError> {
    if !catalog_matches(source, command.catalog.as_deref()) {
        return Ok(RecordBatch::new_empty(
            CommandGetTables {
                include_schema: command.include_schema,
                ..Default::default()
            }
            .into_builder()
            .schema(),
        ));
    }
    let schemas = candidate_schemas(source, command.db_schema_filter_pattern.as_deref()).await?;
    let tables: Vec<Arc<TableInfo>> = readable_tables(source, principal, schemas)
        .await?
        .into_iter()
        .flat_map(|(_, tables)| tables)
        .collect();
    let names: Vec<&str> = tables.iter().map(|t| t.table.table.as_str()).collect();
    let mask = like_mask(
        &names,
        command.table_name_filter_pattern.as_deref(),
        "table name",
    )?;
    let types = command.table_types.clone();
    let mut builder = command.into_builder();
    for (table, _) in tables.iter().zip(mask).filter(|(_, m)| *m) {
        let table_type = match table.kind {
            // GetTableTypes names two types: an external table is read like a table, a
            // materialized or late-binding view is a view (the schema's kind says which).
            TableKind::Table | TableKind::External => TABLE,
            TableKind::View | TableKind::LateBindingView | TableKind::MaterializedView => VIEW,
        };
        // The builder filters too; filtering first spares encoding the schemas of the others.
        if !types.is_empty() && !types.iter().any(|t| t == table_type) {
            continue;
        }
        builder
            .append(
                source.database,
                &table.table.schema,
                &table.table.table,
                table_type,
                &table.arrow_schema(),
            )
            .map_err(flight_error)?;
    }
    builder.build().map_err(flight_error)
}

/// The schema of a `CommandGetPrimaryKeys` answer, per FlightSql.proto.
static PRIMARY_KEYS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
});

/// The schema of imported keys, exported keys and cross references, per FlightSql.proto
/// (arrow-flight has no constant for it).
static FOREIGN_KEYS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        text("pk_catalog_name", true),
        text("pk_db_schema_name", true),
        text("pk_table_name", false),
        text("pk_column_name", false),
        text("fk_catalog_name", true),
        text("fk_db_schema_name", true),
        text("fk_table_name", false),
        text("fk_column_name", false),
        Field::new("key_sequence", DataType::Int32, false),
        text("fk_key_name", true),
        text("pk_key_name", true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
});

/// `CommandGetPrimaryKeys`: the key columns of one table, in key order. Without a schema the
/// catalog's default schema is meant (as in plain Flight paths); a table that is not served or
/// that the principal may not read has no key.
async fn primary_keys(
    source: Source<'_>,
    principal: &Principal,
    command: CommandGetPrimaryKeys,
) -> Result<RecordBatch, ServiceError> {
    let schema = Arc::clone(&PRIMARY_KEYS_SCHEMA);
    if !catalog_matches(source, command.catalog.as_deref()) {
        return Ok(RecordBatch::new_empty(schema));
    }
    let db_schema = command
        .db_schema
        .as_deref()
        .unwrap_or(source.catalog.default_schema());
    let Some(table) = source.catalog.table(db_schema, &command.table).await? else {
        return Ok(RecordBatch::new_empty(schema));
    };
    if !principal.may_read(&table.table.schema, &table.table.table) {
        return Ok(RecordBatch::new_empty(schema));
    }
    let rows = table.primary_key.len();
    let repeat = |value: &str| Arc::new(StringArray::from(vec![value; rows])) as ArrayRef;
    let sequence = (1..).take(rows).collect::<Vec<i32>>();
    let columns = vec![
        repeat(source.database),
        repeat(&table.table.schema),
        repeat(&table.table.table),
        Arc::new(StringArray::from_iter_values(&table.primary_key)) as ArrayRef,
        new_null_array(&DataType::Utf8, rows),
        Arc::new(Int32Array::from(sequence)) as ArrayRef,
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}
