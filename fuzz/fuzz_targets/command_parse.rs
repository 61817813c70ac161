//! Fuzz target `command_parse`: see `fuzz/harness.rs`, shared with `tests/it/fuzz_corpus.rs`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::command_parse(data));
