//! The fuzz corpora on the stable toolchain (issue 21): every file of
//! fuzz/corpus/<target> and fuzz/regressions/<target> goes through the
//! same entry function the libFuzzer target calls (fuzz/src/lib.rs, which
//! this test includes), so a parser that panics again on a crasher once
//! fixed fails `cargo test` without cargo-fuzz.

#[path = "../../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod entry;

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.expect("a readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

#[test]
fn every_corpus_and_regression_file_passes_its_target() {
    let mut ran = 0;
    for (name, run) in entry::TARGETS {
        let corpus = files(&fuzz_dir().join("corpus").join(name));
        assert!(!corpus.is_empty(), "fuzz/corpus/{name} has no seed");
        for path in corpus
            .iter()
            .chain(&files(&fuzz_dir().join("regressions").join(name)))
        {
            let data = std::fs::read(path).expect("a readable corpus file");
            if std::panic::catch_unwind(|| run(&data)).is_err() {
                panic!("{name}: {} fails", path.display());
            }
            ran += 1;
        }
    }
    assert!(ran >= entry::TARGETS.len());
}

#[test]
fn every_directory_names_a_target() {
    for kind in ["corpus", "regressions"] {
        let Ok(rd) = std::fs::read_dir(fuzz_dir().join(kind)) else {
            continue;
        };
        for d in rd {
            let name = d.expect("a readable directory entry").file_name();
            let name = name.to_string_lossy();
            assert!(
                entry::TARGETS.iter().any(|(t, _)| *t == name),
                "fuzz/{kind}/{name} is no target of fuzz/src/lib.rs"
            );
        }
    }
}
