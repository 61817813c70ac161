//! The integration tests of redshift-flight, linked into one test binary. Each module is what was
//! a test binary of its own, `tests/<module>.rs`, under the same name and with the same module
//! doc, so `cargo test --test it <module>::` runs what `cargo test --test <module>` ran.
//!
//! Why one binary: each test binary links arrow, parquet, the AWS and gRPC stacks on its own, and
//! compiles the generic code it uses from them (tonic, arrow-flight, tokio) again; with twenty of
//! them that was most of the test build. Add new test files here as modules: a new
//! `tests/<name>.rs` is another binary to compile and link.
//!
//! The tests of every module run side by side in this one process (libtest runs as many at once
//! as there are CPUs, as it did within each former binary). Nothing here depends on having the
//! process to itself: every test starts its own server on port 0, uses unique schema, table and
//! prefix names, and touches no environment variable or panic hook. The one process-wide setting
//! is `staging_e2e`'s tracing subscriber, installed by its request-id test the first time that
//! test runs: from then on the info logs of every in-process server go to its buffer, where it
//! finds its own lines by their request id. The tests that measure the process itself (its
//! RSS, its latency under load) cannot share it and stay binaries of their own:
//! `tests/catalog_cache_e2e.rs` and `tests/handshake_e2e.rs`.
//!
//! What the modules may import: the crate under test, `redshift_emulator`, their dev-dependencies,
//! the shared fixtures in `common` (`tests/common/`, also used by the two binaries above), and,
//! for `fuzz_corpus` only, `fuzz/harness.rs`.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod endpoints_e2e;
mod filter_e2e;
mod flight_e2e;
mod flight_sql_cancel_e2e;
mod flight_sql_e2e;
mod fuzz_corpus;
mod incremental_e2e;
mod lifecycle_e2e;
mod panic_e2e;
mod poll_e2e;
mod pool_e2e;
mod quoting_props;
mod redshift_tls_e2e;
mod secrets_e2e;
mod staging_e2e;
mod tickets_e2e;
mod types_limits_e2e;
