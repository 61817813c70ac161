//! The catalog model: which tables are served, their columns with Redshift types and nullability,
//! primary keys and row estimates, and the Arrow schemas promised for them. [`Catalog`] is the
//! trait the Flight service depends on; its implementation over Redshift, cached per schema, is
//! `crate::warehouse::catalog::CachedCatalog`. With `auto_schema_detection = false` a
//! [`spec::TableSpec`] filters and shapes what is served.
//!
//! Owns: the model ([`TableInfo`], [`ColumnInfo`]), the type table ([`types`]), the table spec
//! ([`spec`]) and the catalog queries ([`queries`], and [`shared`] for consumer databases). Imports: `crate::sql` and
//! `crate::redshift` (the error and row types only); never the plan, the stager or the service.

pub mod queries;
pub mod shared;
pub mod spec;
pub mod types;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef};

use crate::redshift::RedshiftError;
use crate::sql::QuoteError;
pub use types::RedshiftType;

/// Column names preferred as replication keys, in order of preference.
pub const PREFERRED_REPLICATION_KEYS: [&str; 9] = [
    "updated_at",
    "last_updated",
    "last_update",
    "last_modified",
    "modified_at",
    "modified_on",
    "updated_on",
    "update_time",
    "updated",
];

/// Schema metadata key listing the primary-key columns as a JSON array.
pub const META_PRIMARY_KEY: &str = "redshift_flight.primary_key";
/// Field metadata key saying how a GEOMETRY column is encoded when it is not ISO WKB (`ewkb`).
pub const META_GEOMETRY_ENCODING: &str = "redshift_flight.geometry_encoding";

/// `schema` with its GEOMETRY columns (`types`, in order) as EWKB: Redshift's own encoding, which
/// keeps each value's SRID. Such fields carry `redshift_flight.geometry_encoding = ewkb` instead
/// of the `geoarrow.wkb` extension (which is ISO WKB).
pub fn with_ewkb_geometry(schema: &SchemaRef, types: &[RedshiftType]) -> SchemaRef {
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .zip(types)
        .map(|(field, rtype)| match rtype {
            RedshiftType::Geometry => {
                let mut metadata = field.metadata().clone();
                metadata.remove(types::META_EXTENSION_NAME);
                metadata.remove(types::META_EXTENSION_METADATA);
                metadata.insert(META_GEOMETRY_ENCODING.to_string(), "ewkb".to_string());
                Arc::new(field.as_ref().clone().with_metadata(metadata))
            }
            _ => Arc::clone(field),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Schema metadata key naming the table (`schema.table`).
pub const META_TABLE: &str = "redshift_flight.table";

/// A schema-qualified table name, exactly as the catalog spells it; for a table of a consumer
/// (datashare) database, database-qualified too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableRef {
    /// The consumer database (`redshift_databases`) for a table read through a datashare;
    /// `None` for the connected database.
    pub database: Option<String>,
    /// Schema name.
    pub schema: String,
    /// Table name.
    pub table: String,
}

impl TableRef {
    /// A table of the connected database.
    pub fn new(schema: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            database: None,
            schema: schema.into(),
            table: table.into(),
        }
    }

    /// A table of the consumer database `database`.
    pub fn in_database(
        database: impl Into<String>,
        schema: impl Into<String>,
        table: impl Into<String>,
    ) -> Self {
        Self {
            database: Some(database.into()),
            ..Self::new(schema, table)
        }
    }

    /// What the catalog, tickets, cursors and table patterns call the table's schema: the schema,
    /// or `database.schema` for a consumer database (see [`split_namespace`]).
    pub fn namespace(&self) -> String {
        match &self.database {
            Some(database) => format!("{database}.{}", self.schema),
            None => self.schema.clone(),
        }
    }

    /// The table as SQL names it: `"schema"."table"`, or the three-part
    /// `"database"."schema"."table"` of a consumer database.
    pub fn sql_name(&self) -> Result<crate::sql::Sql, QuoteError> {
        let qualified = crate::sql::Sql::qualified(&self.schema, &self.table)?;
        Ok(match &self.database {
            Some(database) => crate::sql::sql!(crate::sql::Sql::ident(database)?, ".", qualified),
            None => qualified,
        })
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.namespace(), self.table)
    }
}

/// The consumer database and schema a namespace stands for: `database.schema` whose first part
/// (up to the first dot) is one of `databases` (exactly, or case-insensitively when that is
/// unambiguous); `None` for a schema of the connected database. Database names hold no dots
/// (the configuration refuses them), so a consumer schema's name may.
pub fn split_namespace<'a>(
    namespace: &'a str,
    databases: &'a [String],
) -> Option<(&'a str, &'a str)> {
    let (database, schema) = namespace.split_once('.')?;
    let configured = find_by_name(databases, database, |d| d)?;
    (!schema.is_empty()).then_some((configured.as_str(), schema))
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    /// Name, exactly as in the catalog.
    pub name: String,
    /// The type as `format_type` printed it (kept for metadata and tickets).
    pub catalog_type: String,
    /// Parsed type.
    pub redshift_type: RedshiftType,
    /// Whether NULL is allowed.
    pub nullable: bool,
}

impl ColumnInfo {
    /// A column from its catalog description.
    pub fn new(name: impl Into<String>, catalog_type: impl Into<String>, nullable: bool) -> Self {
        let catalog_type = catalog_type.into();
        Self {
            name: name.into(),
            redshift_type: RedshiftType::from_format_type(&catalog_type),
            catalog_type,
            nullable,
        }
    }

    /// The Arrow field clients receive.
    pub fn arrow_field(&self) -> arrow::datatypes::Field {
        self.redshift_type
            .arrow_field(&self.name, self.nullable, &self.catalog_type)
    }
}

/// What kind of relation a served name is. Every kind is read the same way (an UNLOAD of a
/// SELECT from it); the kind decides where discovery finds its columns and whether it can have
/// primary keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// An ordinary table.
    Table,
    /// A view (its columns are in `pg_attribute`).
    View,
    /// A late-binding view (`WITH NO SCHEMA BINDING`): its columns come from
    /// `pg_get_late_binding_view_cols()`, and it may stop resolving when its tables change.
    LateBindingView,
    /// A materialized view (listed in `svv_mv_info`).
    MaterializedView,
    /// A Spectrum external table (`svv_external_tables`): no primary key.
    External,
}

impl TableKind {
    /// The value of [`META_KIND`] for this kind, `None` for ordinary tables and views (whose
    /// schemas carry no kind, as before the other kinds were served).
    pub fn metadata_name(self) -> Option<&'static str> {
        match self {
            Self::Table | Self::View => None,
            Self::LateBindingView => Some("late_binding_view"),
            Self::MaterializedView => Some("materialized_view"),
            Self::External => Some("external_table"),
        }
    }
}

/// Schema metadata key naming the kind of relation (see [`TableKind::metadata_name`]).
pub const META_KIND: &str = "redshift_flight.kind";

/// Everything the server knows about one table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableInfo {
    /// Its name.
    pub table: TableRef,
    /// Table or view.
    pub kind: TableKind,
    /// Columns in table order.
    pub columns: Vec<ColumnInfo>,
    /// Primary-key columns in key order (empty if none).
    pub primary_key: Vec<String>,
    /// Row estimate, if Redshift has one.
    pub row_estimate: Option<i64>,
    /// Replication key named by the table spec, if any.
    pub replication_key: Option<String>,
    /// Sync strategy named by the table spec, if any.
    pub strategy: Option<spec::Strategy>,
}

impl TableInfo {
    /// The Arrow schema for a projection of this table.
    pub fn arrow_schema_of(&self, columns: &[ColumnInfo]) -> SchemaRef {
        promised_schema_of_kind(
            &self.table,
            self.kind.metadata_name(),
            &self.primary_key,
            columns,
        )
    }

    /// The Arrow schema of the whole table.
    pub fn arrow_schema(&self) -> SchemaRef {
        self.arrow_schema_of(&self.columns)
    }

    /// The replication key the seed's connector would infer: among TIMESTAMP, TIMESTAMPTZ and DATE
    /// columns, the first preferred name (see [`PREFERRED_REPLICATION_KEYS`], case-insensitive),
    /// else the first such column in table order; `None` when there is none.
    pub fn inferred_replication_key(&self) -> Option<&ColumnInfo> {
        let candidates: Vec<&ColumnInfo> = self
            .columns
            .iter()
            .filter(|c| {
                matches!(
                    c.redshift_type,
                    RedshiftType::Timestamp | RedshiftType::TimestampTz | RedshiftType::Date
                )
            })
            .collect();
        PREFERRED_REPLICATION_KEYS
            .iter()
            .find_map(|name| {
                candidates
                    .iter()
                    .find(|c| c.name.eq_ignore_ascii_case(name))
            })
            .or_else(|| candidates.first())
            .copied()
    }

    /// Finds a column: the exact name, else the only case-insensitive match.
    pub fn column(&self, name: &str) -> Option<&ColumnInfo> {
        find_by_name(&self.columns, name, |c| &c.name)
    }
}

/// The Arrow schema clients are promised for `columns` of `table`: fields from the type table,
/// the table name and primary key in the schema metadata.
pub fn promised_schema(
    table: &TableRef,
    primary_key: &[String],
    columns: &[ColumnInfo],
) -> SchemaRef {
    promised_schema_of_kind(table, None, primary_key, columns)
}

/// [`promised_schema`] with the relation's kind ([`TableKind::metadata_name`]) in [`META_KIND`]
/// when it has one.
pub fn promised_schema_of_kind(
    table: &TableRef,
    kind: Option<&str>,
    primary_key: &[String],
    columns: &[ColumnInfo],
) -> SchemaRef {
    let fields: Vec<_> = columns.iter().map(ColumnInfo::arrow_field).collect();
    let mut metadata = HashMap::from([
        (META_TABLE.to_string(), table.to_string()),
        (
            META_PRIMARY_KEY.to_string(),
            serde_json::to_string(primary_key).unwrap_or_else(|_| "[]".into()),
        ),
    ]);
    if let Some(kind) = kind {
        metadata.insert(META_KIND.to_string(), kind.to_string());
    }
    Arc::new(Schema::new_with_metadata(fields, metadata))
}

/// The type CHAR and VARCHAR columns take when a client asks for dictionary-encoded strings.
pub fn dictionary_string_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// `schema` with its CHAR and VARCHAR columns (`types`, in order) as dictionary-encoded strings:
/// the dictionaries Redshift wrote into the Parquet files are kept, not expanded.
pub fn with_dictionary_strings(schema: &SchemaRef, types: &[RedshiftType]) -> SchemaRef {
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .zip(types)
        .map(|(field, rtype)| match rtype {
            RedshiftType::Char | RedshiftType::Varchar => Arc::new(
                field
                    .as_ref()
                    .clone()
                    .with_data_type(dictionary_string_type()),
            ),
            _ => Arc::clone(field),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Exact match first, else a unique case-insensitive match (Redshift folds unquoted names to
/// lower case, so users often type `Orders` for `orders`).
pub(crate) fn find_by_name<'a, T>(
    items: &'a [T],
    name: &str,
    key: impl Fn(&T) -> &str,
) -> Option<&'a T> {
    if let Some(found) = items.iter().find(|i| key(i) == name) {
        return Some(found);
    }
    let mut matches = items.iter().filter(|i| key(i).eq_ignore_ascii_case(name));
    match (matches.next(), matches.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}

/// Why discovery failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Redshift could not be asked.
    #[error("cannot read the catalog of schema {schema}: {source}")]
    Redshift {
        /// The schema being read.
        schema: String,
        /// The cause.
        source: RedshiftError,
    },
    /// A name could not be quoted.
    #[error("invalid name: {0}")]
    Name(#[from] QuoteError),
    /// Redshift answered something unexpected.
    #[error("unexpected catalog answer for schema {schema}: {message}")]
    Unexpected {
        /// The schema being read.
        schema: String,
        /// What was wrong.
        message: String,
    },
}

/// Source of table metadata.
#[async_trait::async_trait]
pub trait Catalog: Send + Sync + fmt::Debug {
    /// The tables served in `schema`, sorted by name.
    async fn list_tables(&self, schema: &str) -> Result<Vec<Arc<TableInfo>>, CatalogError>;

    /// One table, or `None` if it is not served. Names match exactly, else case-insensitively
    /// when that is unambiguous.
    async fn table(
        &self,
        schema: &str,
        table: &str,
    ) -> Result<Option<Arc<TableInfo>>, CatalogError> {
        let tables = self.list_tables(schema).await?;
        Ok(find_by_name(&tables, table, |t| &t.table.table).cloned())
    }

    /// The schema used when a request names none.
    fn default_schema(&self) -> &str;

    /// Every schema name, sorted (for metadata listings).
    async fn schemas(&self) -> Result<Vec<String>, CatalogError> {
        Ok(vec![self.default_schema().to_string()])
    }

    /// Forgets what is cached for `schema` (after Redshift said a column or table is gone).
    async fn invalidate(&self, _schema: &str) {}

    /// Schema names, for matching a requested schema case-insensitively.
    async fn resolve_schema(&self, schema: &str) -> Result<String, CatalogError> {
        Ok(schema.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_with(columns: &[(&str, &str)]) -> TableInfo {
        TableInfo {
            table: TableRef::new("s", "t"),
            kind: TableKind::Table,
            columns: columns
                .iter()
                .map(|(n, t)| ColumnInfo::new(*n, *t, true))
                .collect(),
            primary_key: vec![],
            row_estimate: None,
            replication_key: None,
            strategy: None,
        }
    }

    #[test]
    fn replication_key_inference_follows_the_seed() {
        let t = table_with(&[
            ("id", "integer"),
            ("created", "date"),
            ("Modified_At", "timestamp without time zone"),
            ("LAST_UPDATED", "timestamp with time zone"),
            ("updated_at", "character varying(20)"),
        ]);
        assert_eq!(t.inferred_replication_key().unwrap().name, "LAST_UPDATED");
        let t = table_with(&[
            ("id", "integer"),
            ("created", "date"),
            ("at", "timestamp without time zone"),
        ]);
        assert_eq!(t.inferred_replication_key().unwrap().name, "created");
        let t = table_with(&[("id", "integer"), ("n", "numeric(10,2)")]);
        assert!(t.inferred_replication_key().is_none());
    }

    #[test]
    fn consumer_database_tables_have_three_part_names() {
        let databases = vec!["sales_db".to_string()];
        assert_eq!(
            split_namespace("sales_db.public", &databases),
            Some(("sales_db", "public"))
        );
        assert_eq!(
            split_namespace("SALES_DB.a.b", &databases),
            Some(("sales_db", "a.b"))
        );
        assert_eq!(split_namespace("public", &databases), None);
        assert_eq!(split_namespace("other.public", &databases), None);
        assert_eq!(split_namespace("sales_db.", &databases), None);
        let t = TableRef::in_database("sales_db", "pub\"lic", "o'rders");
        assert_eq!(t.namespace(), "sales_db.pub\"lic");
        assert_eq!(t.to_string(), "sales_db.pub\"lic.o'rders");
        assert_eq!(
            t.sql_name().unwrap().to_string(),
            r#""sales_db"."pub""lic"."o'rders""#
        );
        let local = TableRef::new("s", "t");
        assert_eq!(local.namespace(), "s");
        assert_eq!(local.sql_name().unwrap().to_string(), r#""s"."t""#);
    }

    #[test]
    fn names_match_exactly_then_case_insensitively() {
        let names = vec![
            "Orders".to_string(),
            "orders".to_string(),
            "Items".to_string(),
        ];
        assert_eq!(find_by_name(&names, "orders", |n| n).unwrap(), "orders");
        assert_eq!(find_by_name(&names, "ORDERS", |n| n), None, "ambiguous");
        assert_eq!(find_by_name(&names, "items", |n| n).unwrap(), "Items");
    }
}
