//! Fuzz target `ticket_decode`: see `fuzz/harness.rs`, shared with `tests/it/fuzz_corpus.rs`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::ticket_decode(data));
