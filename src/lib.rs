//! redshift-flight: an Apache Arrow Flight server that serves Amazon Redshift tables as Arrow
//! streams. `GetFlightInfo` plans a Redshift `UNLOAD ... FORMAT AS PARQUET` into S3 and returns one
//! endpoint per staged file; `DoGet` streams that file's row groups from S3 as record batches.
//!
//! The modules follow the data flow: [`config`] -> [`catalog`] (discovery) -> [`plan`] (SQL, via
//! the one quoting module [`plan::sql`]) -> [`stage`] (UNLOAD and manifest) -> [`ticket`] ->
//! [`flight`] (the RPCs) reading through [`store`] and [`normalize`].
#![warn(missing_docs)]

pub mod auth;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod decode;
pub mod flight;
pub mod keys;
pub mod metrics;
pub mod normalize;
pub mod panics;
pub mod plan;
pub mod redshift;
pub mod server;
pub mod sql;
pub mod stage;
pub mod status;
pub mod store;
pub mod warehouse;
pub mod ticket;

#[cfg(test)]
mod testing;
