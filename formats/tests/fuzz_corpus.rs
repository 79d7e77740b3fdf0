//! Every input of the fuzz corpus (fuzz/corpus/<target>/) and every saved
//! regression (fuzz/regressions/<target>/) replayed through the checks the
//! fuzz targets run: what fuzzing once found stays a test, on stable Rust.

use std::{fs, path::Path};

use bolt_formats::fuzzing;

fn replay(target: &str, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut seen = 0;
    for folder in ["corpus", "regressions"] {
        let Ok(entries) = fs::read_dir(root.join(folder).join(target)) else { continue };
        let mut files: Vec<_> = entries.map(|e| e.expect("entry").path()).filter(|p| p.is_file()).collect();
        files.sort();
        for file in files {
            let data = fs::read(&file).expect("read input");
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "fuzz input {} breaks the {target} check", file.display());
            seen += 1;
        }
    }
    assert!(seen > 0, "no input for the {target} target under fuzz/corpus or fuzz/regressions");
}

#[test]
fn manifest_corpus() {
    replay("manifest", fuzzing::manifest);
}

#[test]
fn config_corpus() {
    replay("config", fuzzing::config);
}

#[test]
fn args_corpus() {
    replay("args", fuzzing::args);
}

#[test]
fn archive_corpus_and_regressions() {
    replay("archive", fuzzing::archive);
}
