//! agent.toml text: parsing and validation.
//! The checks are bolt_formats::fuzzing::config, which `cargo test` also
//! replays over the corpus and the saved regressions.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bolt_formats::fuzzing::config(data));
