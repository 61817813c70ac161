//! From a Flight request to a plan: which table, which columns, which rows, and the SELECT and
//! UNLOAD statements that stage them.
//!
//! Owns: the request's wire format ([`request`]), cursors ([`cursor`]), lookback ([`lookback`]),
//! the SQL of a read ([`select`], built only through the quoting module `crate::sql`) and the
//! chunking of long binary values ([`chunks`]). Imports: `crate::catalog` (the model and type
//! table), `crate::sql` and `crate::config::IamRole`; nothing that talks to Redshift or S3.

pub mod chunks;
pub mod cursor;
pub mod lookback;
pub mod request;
pub mod select;

use std::sync::Arc;

use arrow::datatypes::SchemaRef;

use crate::catalog::{ColumnInfo, RedshiftType, TableInfo};
use crate::sql::query::{QueryError, QueryPolicy, validate_predicate};
use crate::sql::{QuoteError, Sql, sql};
pub use request::{
    Command, FlightRequest, GeometryEncoding, MAX_COMMAND_BYTES, Mode, split_table_name,
};
pub use select::{UnloadOptions, unload_sql};

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
    /// The row filter (`where`) is refused by the validator.
    #[error("invalid filter (\"where\"): {0}")]
    Filter(QueryError),
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
    /// The row filter, validated and rendered from its AST (in parentheses); ANDed with the
    /// cursor window in the SELECT, never in [`Plan::max_sql`].
    pub filter: Option<Sql>,
    /// The SELECT that UNLOAD runs (its WHERE is set by [`Plan::close_window`]).
    pub select: Sql,
    /// For a Flight SQL query: the relations it reads (a table read: empty).
    pub relations: Vec<crate::catalog::TableRef>,
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
            && (c.schema != table.table.namespace() || c.table != table.table.table)
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
        let filter = match &request.filter {
            None => None,
            Some(text) => {
                let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
                Some(
                    validate_predicate(text, &names, &QueryPolicy::default())
                        .map_err(PlanError::Filter)?,
                )
            }
        };
        let select = select::select_sql(&table.table, &columns, filter.as_ref(), None)?;
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
            filter,
            select,
            relations: Vec::new(),
        })
    }

    /// Plans a Flight SQL query: `query` (validated and rendered by `crate::sql::query`) read
    /// whole, its `columns` as Redshift described them, staged as `label` (a name for logs and the
    /// schema metadata). The UNLOAD's SELECT wraps the query, so each column is converted as a
    /// table's column of the same type would be and the query's own LIMIT or ORDER BY stays
    /// inside (UNLOAD refuses a LIMIT in its outer SELECT).
    pub fn try_for_query(
        label: crate::catalog::TableRef,
        columns: Vec<ColumnInfo>,
        query: &Sql,
        relations: Vec<crate::catalog::TableRef>,
    ) -> Result<Self, PlanError> {
        if columns.is_empty() {
            return Err(PlanError::Columns("the query returns no columns".into()));
        }
        for (i, column) in columns.iter().enumerate() {
            if columns[..i].iter().any(|c| c.name == column.name) {
                return Err(PlanError::Columns(format!(
                    "the query returns two columns named {:?}; give them different names with AS",
                    column.name
                )));
            }
        }
        let select = select::query_select(&columns, query)?;
        let table = Arc::new(TableInfo {
            table: label,
            kind: crate::catalog::TableKind::View,
            columns: columns.clone(),
            primary_key: Vec::new(),
            row_estimate: None,
            replication_key: None,
            strategy: None,
        });
        Ok(Self {
            schema: table.arrow_schema(),
            dictionary: false,
            geometry: GeometryEncoding::Wkb,
            table,
            columns,
            mode: Mode::Full,
            reason: "Flight SQL query".into(),
            key: None,
            lower: None,
            lookback: None,
            request_cursor: None,
            upper: None,
            filter: None,
            select,
            relations,
        })
    }

    /// `SELECT MAX(key)`, above the cursor when there is one; `None` when the table has no key.
    ///
    /// Without the row filter, on purpose: the window's upper end is the table's MAX(key), so a
    /// row that matches the filter only later (updated, or inserted below a filtered-out row's
    /// key) is still bounded by the cursor, and the next window starts where this one ended.
    pub fn max_sql(&self) -> Result<Option<Sql>, QuoteError> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        let column = Sql::ident(&key.column.name)?;
        let mut max = sql!("SELECT MAX(", &column, ") FROM ", self.table_sql()?);
        if let Some(lower) = &self.lower {
            let bound = select::typed_literal(&key.column.redshift_type, &lower.bound)?;
            max.push(" WHERE ").push(&column).push(" > ").push(bound);
        }
        Ok(Some(max))
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
        let column = Sql::ident(&key.column.name)?;
        let rtype = &key.column.redshift_type;
        let mut condition = sql!(&column, " <= ", select::typed_literal(rtype, upper)?);
        if let Some(lower) = &self.lower {
            let lower_sql = select::typed_literal(rtype, &lower.bound)?;
            let lower_sql = match &self.lookback {
                Some(lookback) => lookback.below(lower_sql)?,
                None => lower_sql,
            };
            condition = sql!(&column, " > ", lower_sql, " AND ", condition);
        }
        self.select = select::select_sql(
            &self.table.table,
            &self.columns,
            self.filter.as_ref(),
            Some(&condition),
        )?;
        Ok(Window::Read)
    }

    /// The cursor to store once every endpoint has been read: the frozen upper bound; the
    /// request's own cursor when nothing was new; `None` for a table without a key.
    pub fn next_cursor(&self) -> Option<String> {
        let key = self.key.as_ref()?;
        match &self.upper {
            Some(upper) => Some(
                cursor::Cursor {
                    schema: self.table.table.namespace(),
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

    fn table_sql(&self) -> Result<Sql, QuoteError> {
        self.table.table.sql_name()
    }

    /// The UNLOAD that stages this plan's rows under `destination` (an `s3://bucket/prefix/` URL).
    pub fn unload_sql(
        &self,
        destination: &str,
        options: &UnloadOptions,
    ) -> Result<Sql, QuoteError> {
        select::unload_sql(&self.select, destination, options)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{TableKind, TableRef};
    use crate::config::IamRole;

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
            filter: None,
        }
    }

    #[test]
    fn builds_select_and_unload_through_the_quoting_module() {
        let plan = Plan::try_new(table(), &request(None), PlanSettings::default()).unwrap();
        assert_eq!(
            plan.select.as_str(),
            r#"SELECT "id", CAST("at" AS VARCHAR) AS "at", "x'); drop table t; --" FROM "my schema"."O'Brien ""t""""#
        );
        let mut options = UnloadOptions {
            iam_role: IamRole::Arn("arn:aws:iam::123456789012:role/r".into()),
            max_file_size_mb: 256,
            kms_key_id: None,
            region: None,
        };
        let unload = plan.unload_sql("s3://b/p/run/", &options).unwrap();
        assert_eq!(
            unload.as_str(),
            r#"UNLOAD ('SELECT "id", CAST("at" AS VARCHAR) AS "at", "x''); drop table t; --" FROM "my schema"."O''Brien ""t"""') TO 's3://b/p/run/' IAM_ROLE 'arn:aws:iam::123456789012:role/r' FORMAT AS PARQUET MANIFEST VERBOSE PARALLEL ON MAXFILESIZE 256 MB"#
        );
        options.kms_key_id = Some("alias/o'k".into());
        options.region = Some("eu-west-1".into());
        let unload = plan.unload_sql("s3://b/p/run/", &options).unwrap();
        assert!(
            unload.as_str().ends_with(
                r#" MAXFILESIZE 256 MB KMS_KEY_ID 'alias/o''k' ENCRYPTED REGION 'eu-west-1'"#
            ),
            "{}",
            unload.as_str()
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
}
