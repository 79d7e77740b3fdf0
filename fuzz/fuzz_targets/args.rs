//! Call arguments checked against a fixed set of declared parameters and
//! bound to argv/env, with the invariants `params::bind` guarantees.
//! The checks are bolt_formats::fuzzing::args, which `cargo test` also
//! replays over the corpus and the saved regressions.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bolt_formats::fuzzing::args(data));
