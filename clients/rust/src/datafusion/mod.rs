//! DataFusion integration (feature `datafusion`): [`RedshiftFlightTable`] (a `TableProvider`
//! with projection, filter and limit pushdown, one partition per endpoint) and
//! [`RedshiftCatalog`] / [`RedshiftSchema`] exposing every served table. Imports external
//! crates and the crate's client modules.

mod catalog;
mod exec;
mod filter;
mod table;

pub use catalog::{RedshiftCatalog, RedshiftSchema};
pub use exec::RedshiftFlightExec;
pub use table::{RedshiftFlightTable, ScanOptions};
