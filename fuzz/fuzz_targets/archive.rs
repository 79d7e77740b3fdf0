//! Pack archives from the network: `archive::extract` into a fresh folder
//! `root/pack`, then nothing may exist outside it and no link under it may
//! resolve outside it, whether the extraction succeeded or not.
#![no_main]

use std::{fs, path::Path};

use bolt_agent::packs::archive::{extract, Limits};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits { max_archive_bytes: 1 << 20, max_unpacked_bytes: 64 << 10, max_files: 64 };

fuzz_target!(|data: &[u8]| {
    let root = tempfile::tempdir().expect("tempdir");
    let dest = root.path().join("pack");
    fs::create_dir(&dest).expect("mkdir");
    let _ = extract(data, &dest, &LIMITS);

    let names: Vec<_> =
        fs::read_dir(root.path()).expect("read root").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(names, ["pack"], "the extraction wrote outside its folder");
    let meta = fs::symlink_metadata(&dest).expect("pack");
    assert!(meta.is_dir(), "the folder itself was replaced");
    let inside = dest.canonicalize().expect("canonical pack");
    check_links(&dest, &inside);
});

/// Every link under `dir` either dangles or resolves inside `inside`.
fn check_links(dir: &Path, inside: &Path) {
    for entry in fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        let meta = fs::symlink_metadata(&path).expect("lstat");
        if meta.file_type().is_symlink() {
            if let Ok(resolved) = path.canonicalize() {
                assert!(
                    resolved.starts_with(inside),
                    "{} resolves to {} outside the pack",
                    path.display(),
                    resolved.display()
                );
            }
        } else if meta.is_dir() {
            check_links(&path, inside);
        }
    }
}
