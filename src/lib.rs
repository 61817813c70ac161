//! redshift-flight: an Apache Arrow Flight server that serves Amazon Redshift tables as Arrow
//! streams. `GetFlightInfo` plans a Redshift `UNLOAD ... FORMAT AS PARQUET` into S3 and returns one
//! endpoint per staged file; `DoGet` streams that file's row groups from S3 as record batches.
//!
//! The modules follow the data flow: [`config`] -> [`catalog`] (the model and its queries) and
//! [`warehouse`] (Redshift, cached discovery) -> [`plan`] (SQL, built only through the quoting
//! module [`sql`]) -> [`stage`] (UNLOAD and the runs' life on S3) -> [`ticket`] -> [`flight`] (the
//! RPCs) reading through [`store`] and [`normalize`]. `docs/architecture.md` draws it, with the
//! file that holds each step and what each module may import (no module imports in a circle).
#![warn(missing_docs)]

pub mod auth;
pub mod aws;
pub mod catalog;
pub mod check;
pub mod clock;
pub mod config;
pub mod decode;
pub mod direct;
pub mod flight;
pub mod keys;
pub mod metrics;
pub mod normalize;
pub mod panics;
pub mod plan;
pub mod redshift;
pub mod sealed;
pub mod server;
pub mod sql;
pub mod stage;
pub mod status;
pub mod store;
pub mod ticket;
pub mod warehouse;

#[cfg(test)]
mod testing;
