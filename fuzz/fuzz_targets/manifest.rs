//! pack.toml text: parsing, then every check that needs no files.
//! The checks are bolt_formats::fuzzing::manifest, which `cargo test` also
//! replays over the corpus and the saved regressions.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bolt_formats::fuzzing::manifest(data));
