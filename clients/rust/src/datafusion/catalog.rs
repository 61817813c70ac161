//! DataFusion catalog and schema providers over a redshift-flight server, so that
//! `ctx.register_catalog("redshift", Arc::new(catalog))` exposes every table the caller may
//! read as `redshift.<schema>.<table>`. The table lists are read once, when the catalog is
//! built (DataFusion asks for names synchronously); [`RedshiftCatalog::refresh`]-style
//! rebuilding is up to the caller. Imports external crates, `crate::{client, error}` and
//! `super::table`.

use std::collections::BTreeMap;
use std::sync::Arc;

use ::datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use ::datafusion::common::DataFusionError;
use async_trait::async_trait;

use super::table::{RedshiftFlightTable, ScanOptions};
use crate::client::{Client, TableInfo};
use crate::error::Result;

/// Every served schema (or the ones named), each a [`RedshiftSchema`].
#[derive(Debug, Clone)]
pub struct RedshiftCatalog {
    schemas: BTreeMap<String, Arc<RedshiftSchema>>,
}

impl RedshiftCatalog {
    /// Every schema in which the caller may read something (Flight SQL `GetDbSchemas`), with
    /// its tables (ListFlights).
    pub async fn try_new(client: Client) -> Result<Self> {
        let names = client.schemas().await?;
        Self::with_schemas(client, names.as_slice()).await
    }

    /// The schemas named, with their tables.
    pub async fn with_schemas(client: Client, schemas: &[impl AsRef<str>]) -> Result<Self> {
        Self::with_options(client, schemas, ScanOptions::default()).await
    }

    /// The schemas named, every table scanned with `options`.
    pub async fn with_options(
        client: Client,
        schemas: &[impl AsRef<str>],
        options: ScanOptions,
    ) -> Result<Self> {
        let mut map = BTreeMap::new();
        for name in schemas {
            let schema = RedshiftSchema::try_new(client.clone(), name.as_ref(), options).await?;
            map.insert(name.as_ref().to_string(), Arc::new(schema));
        }
        Ok(Self { schemas: map })
    }
}

impl CatalogProvider for RedshiftCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.schemas.keys().cloned().collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        let schema = self
            .schemas
            .get(name)
            .or_else(|| unique_fold(&self.schemas, name))?;
        Some(Arc::clone(schema) as Arc<dyn SchemaProvider>)
    }
}

/// The tables of one schema.
#[derive(Debug, Clone)]
pub struct RedshiftSchema {
    client: Client,
    tables: BTreeMap<String, TableInfo>,
    options: ScanOptions,
}

impl RedshiftSchema {
    /// The tables of `schema` the caller may read.
    pub async fn try_new(client: Client, schema: &str, options: ScanOptions) -> Result<Self> {
        let tables = client
            .tables(schema)
            .await?
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect();
        Ok(Self {
            client,
            tables,
            options,
        })
    }
}

/// The only entry whose key equals `name` case-insensitively (DataFusion folds unquoted names
/// to lower case; Redshift's are usually lower case already).
fn unique_fold<'a, T>(map: &'a BTreeMap<String, T>, name: &str) -> Option<&'a T> {
    let mut matches = map.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name));
    let (_, first) = matches.next()?;
    matches.next().is_none().then_some(first)
}

#[async_trait]
impl SchemaProvider for RedshiftSchema {
    fn table_names(&self) -> Vec<String> {
        self.tables.keys().cloned().collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        let Some(info) = self
            .tables
            .get(name)
            .or_else(|| unique_fold(&self.tables, name))
        else {
            return Ok(None);
        };
        let table = RedshiftFlightTable::new(
            self.client.clone(),
            info.request(),
            Arc::clone(&info.schema),
        )
        .with_options(self.options)
        .with_estimated_rows(info.estimated_rows);
        Ok(Some(Arc::new(table)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.contains_key(name) || unique_fold(&self.tables, name).is_some()
    }
}
