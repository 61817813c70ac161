//! Fuzz target `sql_validate`: see `fuzz/harness.rs`, shared with `tests/it/fuzz_corpus.rs`.
//!
//! Inputs over 64 KiB are skipped here: an instrumented, unoptimised build needs longer than the
//! per-input timeout for the 1 MB seed, and mutating such inputs finds nothing a small one would
//! not. `tests/it/fuzz_corpus.rs` replays every seed, the 1 MB one included, and the validator's unit
//! tests cover both sides of its 1 MiB limit.
#![no_main]

#[path = "../harness.rs"]
mod harness;

/// Longest input the fuzzer runs.
const MAX_INPUT: usize = 64 * 1024;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() <= MAX_INPUT {
        harness::sql_validate(data);
    }
});
