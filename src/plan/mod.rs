//! From a Flight request to a plan: which table, which columns, which rows, and the SELECT and
//! UNLOAD statements that stage them. All SQL is built through [`sql`], the one quoting module.

pub mod sql;

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow_flight::FlightDescriptor;
use arrow_flight::flight_descriptor::DescriptorType;
use serde::{Deserialize, Serialize};

use crate::catalog::{ColumnInfo, TableInfo};
use crate::config::IamRole;
use sql::{QuoteError, Sql};

/// Largest descriptor command accepted, in bytes.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;

/// How rows are selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Incremental when the table has a replication key, else full.
    #[default]
    Auto,
    /// Every row.
    Full,
    /// Only rows past the cursor.
    Incremental,
}

/// A request that cannot be served as asked.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The descriptor is not of a form the server understands.
    #[error("invalid flight descriptor: {0}")]
    Descriptor(String),
    /// The command names a column twice or a column the table does not have.
    #[error("table {table} has no column {column:?}")]
    UnknownColumn {
        /// The table.
        table: String,
        /// The column asked for.
        column: String,
    },
    /// Bad projection.
    #[error("invalid column list: {0}")]
    Columns(String),
    /// What the request asks for is not built yet.
    #[error("{0}")]
    Unsupported(String),
    /// A name cannot be quoted (NUL, empty).
    #[error("invalid name: {0}")]
    Name(#[from] QuoteError),
}

/// The JSON command of a `CMD` descriptor. Every key but `table` is optional; unknown keys are
/// rejected so that typos do not silently change what is read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// `table`, `schema.table`, or with double-quoted parts: `"my.schema"."Table"`.
    pub table: String,
    /// Columns to read (a projection); all when absent.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// `auto`, `full` or `incremental`.
    #[serde(default)]
    pub mode: Mode,
    /// `next_cursor` from an earlier FlightInfo.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Replication key overriding the inferred one.
    #[serde(default)]
    pub replication_key: Option<String>,
}

/// What a client asked for, whichever descriptor form it used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlightRequest {
    /// Schema, if named.
    pub schema: Option<String>,
    /// Table.
    pub table: String,
    /// Projection.
    pub columns: Option<Vec<String>>,
    /// Mode.
    pub mode: Mode,
    /// Cursor.
    pub cursor: Option<String>,
    /// Replication key.
    pub replication_key: Option<String>,
}

/// Splits `schema.table` at the first dot outside double quotes; quoted parts keep their text
/// exactly (with `""` meaning `"`).
pub fn split_table_name(name: &str) -> Result<(Option<String>, String), PlanError> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = name.chars().peekable();
    let mut quoted_part = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if current.is_empty() && !quoted_part => {
                quoted_part = true;
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            current.push('"');
                        }
                        Some('"') => break,
                        Some(other) => current.push(other),
                        None => {
                            return Err(PlanError::Descriptor(format!(
                                "unterminated quote in table name {name:?}"
                            )));
                        }
                    }
                }
            }
            '.' => {
                parts.push(std::mem::take(&mut current));
                quoted_part = false;
            }
            _ if quoted_part => {
                return Err(PlanError::Descriptor(format!(
                    "unexpected text after a quoted part in table name {name:?}"
                )));
            }
            other => current.push(other),
        }
    }
    parts.push(current);
    let bad = |why: &str| PlanError::Descriptor(format!("table name {name:?} {why}"));
    match parts.as_slice() {
        [table] if !table.is_empty() => Ok((None, table.clone())),
        [schema, table] if !schema.is_empty() && !table.is_empty() => {
            Ok((Some(schema.clone()), table.clone()))
        }
        [_] | [_, _] => Err(bad("has an empty part")),
        _ => Err(bad(
            "must be table or schema.table (quote names containing dots)",
        )),
    }
}

impl FlightRequest {
    /// Interprets a descriptor: `PATH ["schema", "table"]` or `["table"]`, or a JSON `CMD`.
    pub fn try_from_descriptor(descriptor: &FlightDescriptor) -> Result<Self, PlanError> {
        match DescriptorType::try_from(descriptor.r#type) {
            Ok(DescriptorType::Path) => {
                let path = &descriptor.path;
                let (schema, table) = match path.as_slice() {
                    [table] => (None, table.clone()),
                    [schema, table] => (Some(schema.clone()), table.clone()),
                    _ => {
                        return Err(PlanError::Descriptor(format!(
                            "path must be [\"schema\", \"table\"] or [\"table\"], got {} elements",
                            path.len()
                        )));
                    }
                };
                if table.is_empty() || schema.as_deref() == Some("") {
                    return Err(PlanError::Descriptor(
                        "path elements must not be empty".into(),
                    ));
                }
                Ok(Self {
                    schema,
                    table,
                    columns: None,
                    mode: Mode::Full,
                    cursor: None,
                    replication_key: None,
                })
            }
            Ok(DescriptorType::Cmd) => Self::try_from_command(&descriptor.cmd),
            _ => Err(PlanError::Descriptor(
                "descriptor type must be PATH or CMD".into(),
            )),
        }
    }

    /// Parses the JSON command.
    pub fn try_from_command(cmd: &[u8]) -> Result<Self, PlanError> {
        if cmd.len() > MAX_COMMAND_BYTES {
            return Err(PlanError::Descriptor(format!(
                "command is {} bytes; the limit is {MAX_COMMAND_BYTES}",
                cmd.len()
            )));
        }
        let text = std::str::from_utf8(cmd)
            .map_err(|_| PlanError::Descriptor("command is not valid UTF-8".into()))?;
        let command: Command = serde_json::from_str(text).map_err(|e| {
            PlanError::Descriptor(format!(
                "command must be JSON like {{\"table\": \"schema.table\"}}: {e}"
            ))
        })?;
        let (schema, table) = split_table_name(&command.table)?;
        Ok(Self {
            schema,
            table,
            columns: command.columns,
            mode: command.mode,
            cursor: command.cursor,
            replication_key: command.replication_key,
        })
    }
}

/// A planned read of one table.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The table.
    pub table: Arc<TableInfo>,
    /// The columns read, in order.
    pub columns: Vec<ColumnInfo>,
    /// The Arrow schema promised to the client.
    pub schema: SchemaRef,
    /// The mode actually used.
    pub mode: Mode,
    /// Why that mode.
    pub reason: String,
    /// The SELECT that UNLOAD runs.
    pub select: Sql,
}

impl Plan {
    /// Plans a read of `table` for `request`.
    pub fn try_new(table: Arc<TableInfo>, request: &FlightRequest) -> Result<Self, PlanError> {
        let columns = match &request.columns {
            None => table.columns.clone(),
            Some(names) if names.is_empty() => {
                return Err(PlanError::Columns(
                    "columns must not be empty; leave it out to read every column".into(),
                ));
            }
            Some(names) => {
                let mut picked: Vec<ColumnInfo> = Vec::with_capacity(names.len());
                for name in names {
                    let column = table.column(name).ok_or_else(|| PlanError::UnknownColumn {
                        table: table.table.to_string(),
                        column: name.clone(),
                    })?;
                    if picked.iter().any(|c| c.name == column.name) {
                        return Err(PlanError::Columns(format!(
                            "column {:?} is listed twice",
                            column.name
                        )));
                    }
                    picked.push(column.clone());
                }
                picked
            }
        };
        let (mode, reason) = match request.mode {
            Mode::Full => (Mode::Full, "full snapshot requested".to_string()),
            Mode::Auto if request.cursor.is_none() && request.replication_key.is_none() => (
                Mode::Full,
                "auto: incremental sync is not available in this version, serving a full snapshot"
                    .to_string(),
            ),
            Mode::Auto | Mode::Incremental => {
                return Err(PlanError::Unsupported(
                    "incremental sync (cursor, replication_key, mode \"incremental\") is not available in this version; use mode \"full\"".into(),
                ));
            }
        };
        let select = select_sql(&table, &columns)?;
        Ok(Self {
            schema: table.arrow_schema_of(&columns),
            table,
            columns,
            mode,
            reason,
            select,
        })
    }

    /// The UNLOAD that stages this plan's rows under `destination` (an `s3://bucket/prefix/` URL).
    pub fn unload_sql(
        &self,
        destination: &str,
        iam_role: &IamRole,
        max_file_size_mb: u32,
    ) -> Result<Sql, QuoteError> {
        let role = match iam_role {
            IamRole::Default => "default".to_string(),
            IamRole::Arn(arn) => sql::literal(arn)?,
        };
        Ok(Sql::new(format!(
            "UNLOAD ({}) TO {} IAM_ROLE {role} FORMAT AS PARQUET MANIFEST VERBOSE PARALLEL ON MAXFILESIZE {max_file_size_mb} MB",
            sql::literal(self.select.as_str())?,
            sql::literal(destination)?,
        )))
    }
}

fn select_sql(table: &TableInfo, columns: &[ColumnInfo]) -> Result<Sql, QuoteError> {
    let list = columns
        .iter()
        .map(|c| c.redshift_type.select_expr(&c.name))
        .collect::<Result<Vec<_>, _>>()?
        .join(", ");
    Ok(Sql::new(format!(
        "SELECT {list} FROM {}",
        sql::qualified(&table.table.schema, &table.table.table)?
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{TableKind, TableRef};

    fn table() -> Arc<TableInfo> {
        Arc::new(TableInfo {
            table: TableRef::new("my schema", "O'Brien \"t\""),
            kind: TableKind::Table,
            columns: vec![
                ColumnInfo::new("id", "integer", false),
                ColumnInfo::new("at", "time without time zone", true),
                ColumnInfo::new("x'); drop table t; --", "character varying(10)", true),
            ],
            primary_key: vec!["id".into()],
            row_estimate: None,
            replication_key: None,
            strategy: None,
        })
    }

    fn request(columns: Option<Vec<&str>>) -> FlightRequest {
        FlightRequest {
            schema: None,
            table: "t".into(),
            columns: columns.map(|c| c.into_iter().map(String::from).collect()),
            mode: Mode::Full,
            cursor: None,
            replication_key: None,
        }
    }

    #[test]
    fn builds_select_and_unload_through_the_quoting_module() {
        let plan = Plan::try_new(table(), &request(None)).unwrap();
        assert_eq!(
            plan.select.as_str(),
            r#"SELECT "id", CAST("at" AS VARCHAR) AS "at", "x'); drop table t; --" FROM "my schema"."O'Brien ""t""""#
        );
        let unload = plan
            .unload_sql(
                "s3://b/p/run/",
                &IamRole::Arn("arn:aws:iam::123456789012:role/r".into()),
                256,
            )
            .unwrap();
        assert_eq!(
            unload.as_str(),
            r#"UNLOAD ('SELECT "id", CAST("at" AS VARCHAR) AS "at", "x''); drop table t; --" FROM "my schema"."O''Brien ""t"""') TO 's3://b/p/run/' IAM_ROLE 'arn:aws:iam::123456789012:role/r' FORMAT AS PARQUET MANIFEST VERBOSE PARALLEL ON MAXFILESIZE 256 MB"#
        );
    }

    #[test]
    fn projection_checks_columns() {
        let plan = Plan::try_new(table(), &request(Some(vec!["ID"]))).unwrap();
        assert_eq!(plan.schema.fields().len(), 1);
        assert!(matches!(
            Plan::try_new(table(), &request(Some(vec!["nope"]))),
            Err(PlanError::UnknownColumn { .. })
        ));
        assert!(Plan::try_new(table(), &request(Some(vec!["id", "id"]))).is_err());
        assert!(Plan::try_new(table(), &request(Some(vec![]))).is_err());
    }

    #[test]
    fn parses_descriptors() {
        let path = FlightDescriptor::new_path(vec!["s".into(), "t".into()]);
        let req = FlightRequest::try_from_descriptor(&path).unwrap();
        assert_eq!(
            (req.schema.as_deref(), req.table.as_str()),
            (Some("s"), "t")
        );
        let cmd = FlightDescriptor::new_cmd(
            r#"{"table":"\"a.b\".\"T\"\"x\"","columns":["id"],"mode":"full"}"#,
        );
        let req = FlightRequest::try_from_descriptor(&cmd).unwrap();
        assert_eq!(
            (req.schema.as_deref(), req.table.as_str()),
            (Some("a.b"), "T\"x")
        );
        assert_eq!(req.columns, Some(vec!["id".to_string()]));
        for bad in [
            r#"{"table":"t","colums":["x"]}"#,
            r#"{"table":""}"#,
            r#"{"table":"a.b.c"}"#,
            r#"{"table":"t","mode":"sometimes"}"#,
            "not json",
        ] {
            assert!(
                FlightRequest::try_from_command(bad.as_bytes()).is_err(),
                "{bad}"
            );
        }
        assert!(FlightRequest::try_from_command(&[0xff, 0xfe]).is_err());
        assert!(FlightRequest::try_from_command(&vec![b' '; MAX_COMMAND_BYTES + 1]).is_err());
        let too_long = FlightDescriptor::new_path(vec!["a".into(), "b".into(), "c".into()]);
        assert!(FlightRequest::try_from_descriptor(&too_long).is_err());
    }
}
