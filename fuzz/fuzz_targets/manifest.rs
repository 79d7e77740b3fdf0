//! pack.toml text: parsing, then every check that needs no files.
#![no_main]

use std::path::Path;

use bolt_agent::packs::PackManifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(manifest) = PackManifest::parse(text) {
        // Entrypoints are reported missing; everything else is checked.
        let _ = manifest.problems(Path::new("/nonexistent-bolt-fuzz"));
    }
});
