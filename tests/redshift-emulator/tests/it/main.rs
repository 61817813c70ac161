//! The emulator's integration tests, linked into one test binary. Each module is what was a test
//! binary of its own, `tests/<module>.rs`, under the same name and with the same module doc, so
//! `cargo test -p redshift-emulator --test it <module>::` runs what `--test <module>` ran. One
//! binary because each links arrow, parquet and object_store on its own; add new test files here
//! as modules rather than as `tests/<name>.rs`.
//!
//! Every test starts its own emulator in-process on port 0 and uses unique names, so the tests of
//! all modules run side by side in this process; none sets an environment variable, a panic hook
//! or a global subscriber.
//!
//! What the modules may import: `redshift_emulator`, the crate's dependencies and dev-dependencies,
//! and the shared fixtures in `common` (`tests/common/`).

#[path = "../common/mod.rs"]
mod common;

mod aws_api;
mod protocol;
mod unload;
mod unload_options;
