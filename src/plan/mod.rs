//! From a Flight request to a plan: which table, which columns, which rows, and the SELECT and
//! UNLOAD statements that stage them. All SQL is built through [`sql`], the one quoting module.

pub mod chunks;
pub mod cursor;
pub mod lookback;
pub mod sql;

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow_flight::FlightDescriptor;
use arrow_flight::flight_descriptor::DescriptorType;
use serde::{Deserialize, Serialize};

use crate::catalog::{ColumnInfo, RedshiftType, TableInfo};
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
    /// The cursor does not decode.
    #[error(transparent)]
    Cursor(#[from] cursor::CursorError),
    /// The cursor belongs to another table or key.
    #[error(
        "the cursor is for {what}; pass the next_cursor of this table's last sync, or none for a first sync"
    )]
    CursorMismatch {
        /// What the cursor is for.
        what: String,
    },
    /// The cursor's key no longer exists or changed type: its position means nothing now.
    #[error(
        "the cursor's replication key {key:?} {why}; run a full sync (mode \"full\") and continue from its next_cursor"
    )]
    CursorStale {
        /// The key.
        key: String,
        /// What changed.
        why: String,
    },
    /// Incremental mode without a usable key.
    #[error(
        "table {table} has no replication key: name one with \"replication_key\" (a TIMESTAMP, TIMESTAMPTZ, DATE, integer, DECIMAL or VARCHAR column) or use mode \"full\""
    )]
    NoReplicationKey {
        /// The table.
        table: String,
    },
    /// A replication key of a type that cannot be compared exactly.
    #[error(
        "column {column:?} ({catalog_type}) cannot be a replication key: use a TIMESTAMP, TIMESTAMPTZ, DATE, integer, DECIMAL or VARCHAR column"
    )]
    KeyType {
        /// The column.
        column: String,
        /// Its type.
        catalog_type: String,
    },
    /// Bad lookback.
    #[error("invalid lookback: {0}")]
    Lookback(String),
    /// MAX(key) returned something that is not a value of the key's type.
    #[error("Redshift returned {value:?} as MAX({key}), which is not a valid {catalog_type}")]
    BadMax {
        /// The key.
        key: String,
        /// Its type.
        catalog_type: String,
        /// What came back.
        value: String,
    },
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
    /// Re-read this much below the cursor: an interval (`"2 hours"`, `"90s"`, or a number of
    /// seconds) for time keys, a number for numeric keys.
    #[serde(default)]
    pub lookback: Option<serde_json::Value>,
    /// `true`: CHAR and VARCHAR columns come as `dictionary<int32, utf8>`, keeping the
    /// dictionaries of the staged Parquet (less decoding, fewer bytes on the wire).
    #[serde(default)]
    pub dictionary: bool,
    /// How GEOMETRY columns are encoded: `wkb` (ISO WKB, `geoarrow.wkb`) or `ewkb` (Redshift's
    /// EWKB, which keeps each value's SRID).
    #[serde(default)]
    pub geometry: GeometryEncoding,
}

/// How GEOMETRY values are sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GeometryEncoding {
    /// ISO WKB (the SRID is dropped), as the `geoarrow.wkb` extension type.
    #[default]
    Wkb,
    /// EWKB as Redshift stores it: the SRID stays in each value.
    Ewkb,
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
    /// Lookback, as given.
    pub lookback: Option<serde_json::Value>,
    /// Strings as dictionaries.
    pub dictionary: bool,
    /// GEOMETRY encoding.
    pub geometry: GeometryEncoding,
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
                    lookback: None,
                    dictionary: false,
                    geometry: GeometryEncoding::Wkb,
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
            lookback: command.lookback,
            dictionary: command.dictionary,
            geometry: command.geometry,
        })
    }
}

/// Server-wide planning settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanSettings {
    /// `enable_complete_resync`: every request is a full snapshot.
    pub complete_resync: bool,
}

/// The replication key of a plan and where it came from.
#[derive(Debug, Clone)]
pub struct ReplicationKey {
    /// The column.
    pub column: ColumnInfo,
    /// `requested`, `table spec`, `cursor` or `inferred`.
    pub source: &'static str,
}

/// What the closed cursor window says to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Window {
    /// Stage the plan's SELECT.
    Read,
    /// Nothing new since the cursor: no UNLOAD at all.
    NothingNew,
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
    /// CHAR and VARCHAR columns as dictionaries.
    pub dictionary: bool,
    /// GEOMETRY encoding.
    pub geometry: GeometryEncoding,
    /// The mode actually used.
    pub mode: Mode,
    /// Why that mode.
    pub reason: String,
    /// The replication key, if the table has one (full snapshots use it for `next_cursor`).
    pub key: Option<ReplicationKey>,
    /// The position the request continues from (incremental mode only).
    pub lower: Option<cursor::Cursor>,
    /// How far below `lower` to re-read.
    pub lookback: Option<lookback::Lookback>,
    /// The cursor text the request carried, returned unchanged when nothing is new.
    pub request_cursor: Option<String>,
    /// `MAX(key)` frozen at planning; set by [`Plan::close_window`].
    pub upper: Option<String>,
    /// The SELECT that UNLOAD runs (its WHERE is set by [`Plan::close_window`]).
    pub select: Sql,
}

impl Plan {
    /// Plans a read of `table` for `request`: columns, mode, replication key and the lower end of
    /// the window. The upper end needs Redshift: run [`Plan::max_sql`], then
    /// [`Plan::close_window`].
    pub fn try_new(
        table: Arc<TableInfo>,
        request: &FlightRequest,
        settings: PlanSettings,
    ) -> Result<Self, PlanError> {
        let columns = project(&table, request.columns.as_deref())?;
        // A full snapshot starts over: the request's cursor, if any, plays no part (so a stale
        // cursor never stands in the way of the resync it asks for).
        let full = settings.complete_resync || request.mode == Mode::Full;
        let request_cursor = match &request.cursor {
            Some(text) if !full => Some(cursor::Cursor::decode(text)?),
            _ => None,
        };
        if let Some(c) = &request_cursor
            && (c.schema != table.table.schema || c.table != table.table.table)
        {
            return Err(PlanError::CursorMismatch {
                what: format!("table {}.{}, not {}", c.schema, c.table, table.table),
            });
        }
        let key = choose_key(&table, request, request_cursor.as_ref())?;
        let (mode, reason) = match (settings.complete_resync, request.mode, &key) {
            (true, _, _) => (Mode::Full, "enable_complete_resync is true: every request is a full snapshot".to_string()),
            (false, Mode::Full, _) => (Mode::Full, "full snapshot requested".to_string()),
            (false, Mode::Incremental, Some(k)) => {
                (Mode::Incremental, format!("incremental requested; replication key {:?} ({})", k.column.name, k.source))
            }
            (false, Mode::Incremental, None) => {
                return Err(PlanError::NoReplicationKey { table: table.table.to_string() });
            }
            (false, Mode::Auto, _) if table.strategy == Some(crate::catalog::spec::Strategy::Full) => {
                (Mode::Full, "auto: the table spec's strategy is full".to_string())
            }
            (false, Mode::Auto, Some(k)) => {
                (Mode::Incremental, format!("auto: replication key {:?} ({})", k.column.name, k.source))
            }
            (false, Mode::Auto, None) => (
                Mode::Full,
                "auto: no replication key (no TIMESTAMP, TIMESTAMPTZ or DATE column), serving a full snapshot".to_string(),
            ),
        };
        let lower = if mode == Mode::Incremental {
            request_cursor
        } else {
            None
        };
        let lookback = match (&request.lookback, mode, &key) {
            (None, _, _) => None,
            (Some(_), Mode::Incremental, Some(k)) => Some(lookback::Lookback::try_new(
                request
                    .lookback
                    .as_ref()
                    .unwrap_or(&serde_json::Value::Null),
                &k.column,
            )?),
            (Some(_), _, _) => None,
        };
        let select = select_sql(&table, &columns, None)?;
        let mut schema = table.arrow_schema_of(&columns);
        if request.dictionary {
            let types: Vec<_> = columns.iter().map(|c| c.redshift_type.clone()).collect();
            schema = crate::catalog::with_dictionary_strings(&schema, &types);
        }
        if request.geometry == GeometryEncoding::Ewkb {
            let types: Vec<_> = columns.iter().map(|c| c.redshift_type.clone()).collect();
            schema = crate::catalog::with_ewkb_geometry(&schema, &types);
        }
        Ok(Self {
            schema,
            dictionary: request.dictionary,
            geometry: request.geometry,
            table,
            columns,
            mode,
            reason,
            key,
            lower,
            lookback,
            request_cursor: if full { None } else { request.cursor.clone() },
            upper: None,
            select,
        })
    }

    /// `SELECT MAX(key)`, above the cursor when there is one; `None` when the table has no key.
    pub fn max_sql(&self) -> Result<Option<Sql>, QuoteError> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        let column = sql::ident(&key.column.name)?;
        let mut text = format!("SELECT MAX({column}) FROM {}", self.table_sql()?);
        if let Some(lower) = &self.lower {
            text.push_str(&format!(
                " WHERE {column} > {}",
                sql::typed_literal(&key.column.redshift_type, &lower.bound)?
            ));
        }
        Ok(Some(Sql::new(text)))
    }

    /// Freezes the window's upper end at `max` (what [`Plan::max_sql`] returned) and builds the
    /// SELECT's WHERE. Incremental plans with nothing above the cursor need no UNLOAD.
    pub fn close_window(&mut self, max: Option<String>) -> Result<Window, PlanError> {
        if let (Some(key), Some(value)) = (&self.key, &max) {
            cursor::validate_bound(&key.column.redshift_type, value).map_err(|_| {
                PlanError::BadMax {
                    key: key.column.name.clone(),
                    catalog_type: key.column.catalog_type.clone(),
                    value: value.clone(),
                }
            })?;
        }
        self.upper = max;
        if self.mode != Mode::Incremental {
            return Ok(Window::Read);
        }
        let (Some(key), Some(upper)) = (&self.key, &self.upper) else {
            return Ok(Window::NothingNew);
        };
        let column = sql::ident(&key.column.name)?;
        let rtype = &key.column.redshift_type;
        let mut condition = format!("{column} <= {}", sql::typed_literal(rtype, upper)?);
        if let Some(lower) = &self.lower {
            let lower_sql = sql::typed_literal(rtype, &lower.bound)?;
            let lower_sql = match &self.lookback {
                Some(lookback) => lookback.below(&lower_sql),
                None => lower_sql,
            };
            condition = format!("{column} > {lower_sql} AND {condition}");
        }
        self.select = select_sql(&self.table, &self.columns, Some(&condition))?;
        Ok(Window::Read)
    }

    /// The cursor to store once every endpoint has been read: the frozen upper bound; the
    /// request's own cursor when nothing was new; `None` for a table without a key.
    pub fn next_cursor(&self) -> Option<String> {
        let key = self.key.as_ref()?;
        match &self.upper {
            Some(upper) => Some(
                cursor::Cursor {
                    schema: self.table.table.schema.clone(),
                    table: self.table.table.table.clone(),
                    key: key.column.name.clone(),
                    key_type: key.column.catalog_type.clone(),
                    bound: upper.clone(),
                }
                .encode(),
            ),
            None if self.mode == Mode::Incremental => self.request_cursor.clone(),
            None => None,
        }
    }

    fn table_sql(&self) -> Result<String, QuoteError> {
        sql::qualified(&self.table.table.schema, &self.table.table.table)
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

fn project(table: &TableInfo, names: Option<&[String]>) -> Result<Vec<ColumnInfo>, PlanError> {
    let Some(names) = names else {
        return Ok(table.columns.clone());
    };
    if names.is_empty() {
        return Err(PlanError::Columns(
            "columns must not be empty; leave it out to read every column".into(),
        ));
    }
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
    Ok(picked)
}

/// The replication key: the request's, else the table spec's, else the cursor's (so a sync keeps
/// its key even if a preferred column is added later), else the inferred one.
fn choose_key(
    table: &TableInfo,
    request: &FlightRequest,
    cursor: Option<&cursor::Cursor>,
) -> Result<Option<ReplicationKey>, PlanError> {
    let named = request
        .replication_key
        .as_deref()
        .map(|k| (k, "requested"))
        .or_else(|| table.replication_key.as_deref().map(|k| (k, "table spec")));
    if let Some((name, source)) = named {
        let column = table.column(name).ok_or_else(|| PlanError::UnknownColumn {
            table: table.table.to_string(),
            column: name.to_string(),
        })?;
        if !cursor::key_type_supported(&column.redshift_type) {
            return Err(PlanError::KeyType {
                column: column.name.clone(),
                catalog_type: column.catalog_type.clone(),
            });
        }
        if let Some(c) = cursor
            && c.key != column.name
        {
            return Err(PlanError::CursorMismatch {
                what: format!("replication key {:?}, not {:?}", c.key, column.name),
            });
        }
        check_cursor_key(column, cursor)?;
        return Ok(Some(ReplicationKey {
            column: column.clone(),
            source,
        }));
    }
    if let Some(c) = cursor {
        let column = table
            .columns
            .iter()
            .find(|col| col.name == c.key)
            .ok_or_else(|| PlanError::CursorStale {
                key: c.key.clone(),
                why: "no longer exists".into(),
            })?;
        check_cursor_key(column, cursor)?;
        return Ok(Some(ReplicationKey {
            column: column.clone(),
            source: "cursor",
        }));
    }
    Ok(table
        .inferred_replication_key()
        .map(|column| ReplicationKey {
            column: column.clone(),
            source: "inferred",
        }))
}

fn check_cursor_key(column: &ColumnInfo, cursor: Option<&cursor::Cursor>) -> Result<(), PlanError> {
    match cursor {
        Some(c) if RedshiftType::from_format_type(&c.key_type) != column.redshift_type => {
            Err(PlanError::CursorStale {
                key: c.key.clone(),
                why: format!(
                    "changed type from {} to {}",
                    c.key_type, column.catalog_type
                ),
            })
        }
        _ => Ok(()),
    }
}

fn select_sql(
    table: &TableInfo,
    columns: &[ColumnInfo],
    condition: Option<&str>,
) -> Result<Sql, QuoteError> {
    let list = columns
        .iter()
        .enumerate()
        .map(|(i, c)| chunks::select_list(&c.redshift_type, &c.name, &c.catalog_type, i))
        .collect::<Result<Vec<_>, _>>()?
        .join(", ");
    let mut text = format!(
        "SELECT {list} FROM {}",
        sql::qualified(&table.table.schema, &table.table.table)?
    );
    if let Some(condition) = condition {
        text.push_str(" WHERE ");
        text.push_str(condition);
    }
    Ok(Sql::new(text))
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
            lookback: None,
            dictionary: false,
            geometry: GeometryEncoding::Wkb,
        }
    }

    #[test]
    fn builds_select_and_unload_through_the_quoting_module() {
        let plan = Plan::try_new(table(), &request(None), PlanSettings::default()).unwrap();
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
        let plan =
            Plan::try_new(table(), &request(Some(vec!["ID"])), PlanSettings::default()).unwrap();
        assert_eq!(plan.schema.fields().len(), 1);
        assert!(matches!(
            Plan::try_new(
                table(),
                &request(Some(vec!["nope"])),
                PlanSettings::default()
            ),
            Err(PlanError::UnknownColumn { .. })
        ));
        assert!(
            Plan::try_new(
                table(),
                &request(Some(vec!["id", "id"])),
                PlanSettings::default()
            )
            .is_err()
        );
        assert!(Plan::try_new(table(), &request(Some(vec![])), PlanSettings::default()).is_err());
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
