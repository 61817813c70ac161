//! What a client asks for: the descriptor forms (`PATH` and the JSON `CMD`) parsed into a
//! [`FlightRequest`]. Owns the command's wire format; imports only the plan's error type.

use arrow_flight::FlightDescriptor;
use arrow_flight::flight_descriptor::DescriptorType;
use serde::{Deserialize, Serialize};

use super::PlanError;

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

/// The JSON command of a `CMD` descriptor. Every key but `table` is optional; unknown keys are
/// rejected so that typos do not silently change what is read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// `table`, `schema.table`, `database.schema.table` (a table of a consumer database, see
    /// `redshift_databases`), or with double-quoted parts: `"my.schema"."Table"`.
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
    /// A row filter (JSON key `where`): one SQL expression over the table's columns, checked by
    /// `crate::sql::query::validate_predicate` when the read is planned.
    #[serde(default)]
    pub r#where: Option<String>,
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
    /// Schema, if named; `database.schema` for a table of a consumer database (the catalog's
    /// namespace, see `crate::catalog::split_namespace`).
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
    /// The row filter's text as the client sent it (`where`; PATH descriptors have none).
    pub filter: Option<String>,
}

/// Splits `schema.table` at the first dot outside double quotes; quoted parts keep their text
/// exactly (with `""` meaning `"`). A three-part `database.schema.table` gives the namespace
/// `database.schema` as its schema (a database name cannot contain a dot).
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
        [database, schema, table]
            if !database.is_empty()
                && !database.contains('.')
                && !schema.is_empty()
                && !table.is_empty() =>
        {
            Ok((Some(format!("{database}.{schema}")), table.clone()))
        }
        [_] | [_, _] | [_, _, _] => Err(bad("has an empty part (or a database name with a dot)")),
        _ => Err(bad(
            "must be table, schema.table or database.schema.table (quote names containing dots)",
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
                    // A consumer database's table: the namespace `database.schema`.
                    [database, schema, table]
                        if !database.is_empty()
                            && !database.contains('.')
                            && !schema.is_empty() =>
                    {
                        (Some(format!("{database}.{schema}")), table.clone())
                    }
                    _ => {
                        return Err(PlanError::Descriptor(format!(
                            "path must be [\"schema\", \"table\"], [\"table\"] or [\"database\", \"schema\", \"table\"] (no dot in the database name), got {} elements",
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
                    filter: None,
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
            filter: command.r#where,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(req.filter, None);
        let cmd = FlightRequest::try_from_command(br#"{"table":"t","where":"id > 1"}"#).unwrap();
        assert_eq!(cmd.filter.as_deref(), Some("id > 1"));
        for bad in [
            r#"{"table":"t","colums":["x"]}"#,
            r#"{"table":""}"#,
            r#"{"table":"a.b.c.d"}"#,
            r#"{"table":"a..c"}"#,
            r#"{"table":"\"a.b\".c.d"}"#,
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
        let too_long =
            FlightDescriptor::new_path(vec!["a".into(), "b".into(), "c".into(), "d".into()]);
        assert!(FlightRequest::try_from_descriptor(&too_long).is_err());
        // A consumer database's table, by path and by command: the namespace database.schema.
        let three = FlightDescriptor::new_path(vec!["db".into(), "s".into(), "t".into()]);
        let req = FlightRequest::try_from_descriptor(&three).unwrap();
        assert_eq!(
            (req.schema.as_deref(), req.table.as_str()),
            (Some("db.s"), "t")
        );
        let req = FlightRequest::try_from_command(br#"{"table":"db.\"My.Schema\".t"}"#).unwrap();
        assert_eq!(
            (req.schema.as_deref(), req.table.as_str()),
            (Some("db.My.Schema"), "t")
        );
        let dotted = FlightDescriptor::new_path(vec!["d.b".into(), "s".into(), "t".into()]);
        assert!(FlightRequest::try_from_descriptor(&dotted).is_err());
    }
}
