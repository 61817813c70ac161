//! Typed requests and answers of the wire contract (proto-docs/README.md): [`TableRequest`]
//! serialises to the JSON command of a CMD descriptor, [`AppMetadata`] is FlightInfo's
//! `app_metadata`, and [`Flight`] is a planned read (FlightInfo with both decoded). Imports only
//! external crates and `crate::error`.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How a table is read (the command's `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Incremental when the table has a replication key, else full (the server's default).
    #[default]
    Auto,
    /// Every row.
    Full,
    /// Only the window above the cursor; refused for a table without a replication key.
    Incremental,
}

/// One read of one table: the JSON command of a CMD descriptor. Only `table` is required.
///
/// ```
/// use redshift_flight_client::{Mode, TableRequest};
/// let request = TableRequest::new("sales.orders")
///     .columns(["id", "total"])
///     .mode(Mode::Full)
///     .filter("status = 'open'");
/// assert_eq!(
///     request.to_command().unwrap(),
///     r#"{"table":"sales.orders","columns":["id","total"],"mode":"full","where":"status = 'open'"}"#
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableRequest {
    /// `table` or `schema.table` (parts containing dots double-quoted, see
    /// [`TableRequest::qualified`]).
    pub table: String,
    /// A projection, in the order wanted; `None`: every column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    /// The mode; `None` lets the server default to `auto`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// The `next_cursor` of an earlier read of the same table, unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// The column the incremental window is on, overriding the server's choice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication_key: Option<String>,
    /// Re-read this much below the cursor (`"2 hours"`, `100`, ...), as the server parses it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookback: Option<serde_json::Value>,
    /// A row filter: one SQL expression over the table's columns (the command's `where`).
    #[serde(rename = "where", skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// CHAR/VARCHAR columns as `dictionary<int32, utf8>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dictionary: Option<bool>,
    /// GEOMETRY encoding: `"wkb"` (default) or `"ewkb"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geometry: Option<String>,
}

impl TableRequest {
    /// A read of `table` (`table` or `schema.table`), every column, mode `auto`.
    pub fn new(table: impl Into<String>) -> Self {
        Self {
            table: table.into(),
            ..Self::default()
        }
    }

    /// A read of `schema`.`table` given as the catalog spells them: each part is double-quoted
    /// (`"` doubled), so names with dots, quotes or capitals need no care.
    pub fn qualified(schema: &str, table: &str) -> Self {
        Self::new(format!("{}.{}", quote_part(schema), quote_part(table)))
    }

    /// Sets the projection.
    pub fn columns<I, S>(mut self, columns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.columns = Some(columns.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the mode.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Sets the cursor (`None`: a first sync).
    pub fn cursor(mut self, cursor: Option<impl Into<String>>) -> Self {
        self.cursor = cursor.map(Into::into);
        self
    }

    /// Sets the replication key.
    pub fn replication_key(mut self, column: impl Into<String>) -> Self {
        self.replication_key = Some(column.into());
        self
    }

    /// Sets the lookback (`"2 hours"`, `"90s"`, a number of seconds or key units).
    pub fn lookback(mut self, lookback: impl Into<serde_json::Value>) -> Self {
        self.lookback = Some(lookback.into());
        self
    }

    /// Sets the row filter (the command's `where`).
    pub fn filter(mut self, predicate: impl Into<String>) -> Self {
        self.filter = Some(predicate.into());
        self
    }

    /// Asks for CHAR/VARCHAR columns as dictionaries.
    pub fn dictionary(mut self, dictionary: bool) -> Self {
        self.dictionary = Some(dictionary);
        self
    }

    /// The JSON command, as sent in the descriptor's `cmd`.
    pub fn to_command(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| Error::Protocol(format!("encoding command: {e}")))
    }

    /// The CMD descriptor of this request.
    pub fn to_descriptor(&self) -> Result<FlightDescriptor> {
        Ok(FlightDescriptor::new_cmd(self.to_command()?))
    }
}

/// `name` double-quoted for the command's `table` (`"` doubled).
pub fn quote_part(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// FlightInfo's `app_metadata` (UTF-8 JSON). Unknown keys are kept in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppMetadata {
    /// `schema.table` as the catalog spells it.
    pub table: String,
    /// The mode used: `"full"` or `"incremental"`.
    pub mode: String,
    /// Why that mode, for people.
    #[serde(default)]
    pub reason: Option<String>,
    /// The key column, if the table has one.
    #[serde(default)]
    pub replication_key: Option<String>,
    /// Where the key came from (`requested`, `table spec`, `cursor`, `inferred`).
    #[serde(default)]
    pub replication_key_source: Option<String>,
    /// The cursor to send next time; store it only after every endpoint was read.
    #[serde(default)]
    pub next_cursor: Option<String>,
    /// The window's exclusive lower end (the cursor's bound).
    #[serde(default)]
    pub lower_bound: Option<String>,
    /// `MAX(key)` frozen at planning, the window's inclusive upper end.
    #[serde(default)]
    pub upper_bound: Option<String>,
    /// The lookback applied, as given.
    #[serde(default)]
    pub lookback: Option<serde_json::Value>,
    /// The staged run, `None` when no UNLOAD ran.
    #[serde(default)]
    pub run_id: Option<String>,
    /// When the run's tickets expire (RFC 3339).
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Staged files.
    #[serde(default)]
    pub files: Option<u64>,
    /// Whether the run is shared with an identical request.
    #[serde(default)]
    pub snapshot_reused: Option<bool>,
    /// Keys this client does not know yet.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A planned read: the FlightInfo with its schema and `app_metadata` decoded, and the request
/// that produced it (to plan again when the run expires).
#[derive(Debug, Clone)]
pub struct Flight {
    /// The request planned.
    pub request: TableRequest,
    /// The FlightInfo as received.
    pub info: FlightInfo,
    /// The promised schema; every batch has it.
    pub schema: SchemaRef,
    /// The decoded `app_metadata`.
    pub metadata: AppMetadata,
}

impl Flight {
    /// Decodes `info`, the answer to `request`.
    pub fn try_new(request: TableRequest, info: FlightInfo) -> Result<Self> {
        let schema = info
            .clone()
            .try_decode_schema()
            .map_err(|e| Error::Protocol(format!("FlightInfo schema: {e}")))?;
        let metadata = serde_json::from_slice(&info.app_metadata)
            .map_err(|e| Error::Protocol(format!("FlightInfo app_metadata: {e}")))?;
        Ok(Self {
            request,
            info,
            schema: Arc::new(schema),
            metadata,
        })
    }

    /// The endpoints, one per staged file or row-group range; read them in any order.
    pub fn endpoints(&self) -> &[FlightEndpoint] {
        &self.info.endpoint
    }

    /// Rows staged (exact), or `None` when the server did not say.
    pub fn total_records(&self) -> Option<u64> {
        u64::try_from(self.info.total_records).ok()
    }

    /// The cursor to store once every endpoint was read.
    pub fn next_cursor(&self) -> Option<&str> {
        self.metadata.next_cursor.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_carry_only_what_is_set() {
        assert_eq!(
            TableRequest::new("t").to_command().unwrap(),
            r#"{"table":"t"}"#
        );
        let request = TableRequest::qualified("my.schema", "Order \"Items\"")
            .mode(Mode::Incremental)
            .cursor(Some("rsfc1.x"))
            .replication_key("updated_at")
            .lookback("2 hours")
            .dictionary(true);
        let json: serde_json::Value = serde_json::from_str(&request.to_command().unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "table": "\"my.schema\".\"Order \"\"Items\"\"\"",
                "mode": "incremental",
                "cursor": "rsfc1.x",
                "replication_key": "updated_at",
                "lookback": "2 hours",
                "dictionary": true,
            })
        );
    }

    #[test]
    fn app_metadata_decodes_the_documented_example() {
        let text = r#"{"table": "sales_demo.orders", "mode": "incremental",
            "reason": "auto", "replication_key": "updated_at", "replication_key_source": "cursor",
            "next_cursor": "rsfc1.e", "lower_bound": null, "upper_bound": "2026-11-25 12:45:12",
            "lookback": "10 minutes", "run_id": "r", "expires_at": "2026-11-25T13:45:19.227Z",
            "files": 4, "snapshot_reused": false, "new_key": 1}"#;
        let meta: AppMetadata = serde_json::from_str(text).unwrap();
        assert_eq!(meta.next_cursor.as_deref(), Some("rsfc1.e"));
        assert_eq!(meta.files, Some(4));
        assert_eq!(meta.extra.get("new_key"), Some(&serde_json::json!(1)));
    }
}
