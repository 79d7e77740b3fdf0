//! Pack archives from the network: extracted into a fresh folder, nothing
//! may exist outside it and no link under it may resolve outside it.
//! The checks are bolt_formats::fuzzing::archive, which `cargo test` also
//! replays over the corpus and the saved regressions.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bolt_formats::fuzzing::archive(data));
