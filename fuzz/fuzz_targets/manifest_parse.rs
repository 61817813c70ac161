//! Fuzz target `manifest_parse`: see `fuzz/harness.rs`, shared with `tests/it/fuzz_corpus.rs`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::manifest_parse(data));
