//! A Rust client for [redshift-flight](../../proto-docs/README.md), the Arrow Flight server in
//! front of Amazon Redshift. It implements the wire contract as a client should use it:
//!
//! - [`Client`]: connect (TLS, bearer token or Basic handshake, timeouts), plan a read
//!   ([`Client::plan`]), read every endpoint with bounded parallelism ([`Client::read`]),
//!   retrying broken streams where they stopped and planning again when a staged run expired;
//!   schemas and table lists.
//! - [`TableRequest`] / [`AppMetadata`]: the JSON command and FlightInfo's `app_metadata`, typed.
//! - [`Sync`]: one incremental step against a [`CursorStore`] ([`FileCursorStore`] included)
//!   that stores the new cursor only after the [`BatchSink`] committed every batch.
//! - [`Error`]: retryable, expired run, stale cursor, permission, not found, ... told apart by
//!   the status code and the `ErrorInfo` reason.
//! - With the `datafusion` feature (default): [`datafusion::RedshiftFlightTable`], a
//!   `TableProvider` pushing projection, filters and limits down, and
//!   [`datafusion::RedshiftCatalog`].
//!
//! It depends on the wire contract only, not on the server crate.

#![warn(missing_docs)]

mod client;
mod error;
mod read;
mod request;
mod sync;

#[cfg(feature = "datafusion")]
pub mod datafusion;

pub use client::{Client, ClientBuilder, RetryPolicy, TableInfo, TlsOptions};
pub use error::{Error, Result, ServerError};
pub use read::{BatchStream, ReadOptions};
pub use request::{AppMetadata, Flight, Mode, TableRequest, quote_part};
pub use sync::{BatchSink, CursorState, CursorStore, FileCursorStore, Sync, SyncOutcome};
