//! House rules the code itself can be held to: no source file of a shipped crate over 500
//! lines (STYLE.md), each beside a twin that shows the count is real.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The files of `files` over 500 lines, with their counts.
fn over_500(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).ok()?.lines().count();
            (n > 500).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect()
}

#[test]
fn no_source_file_of_a_shipped_crate_is_over_500_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for krate in std::fs::read_dir(root.join("crates")).unwrap().flatten() {
        rust_files(&krate.path().join("src"), &mut files);
    }
    assert!(
        files.len() > 100,
        "the walk found the sources: {}",
        files.len()
    );
    let long = over_500(&files);
    assert!(long.is_empty(), "split these: {long:?}");
}

/// The twin: the count flags a 501-line file and passes a 500-line one.
#[test]
fn the_count_flags_a_file_one_line_too_long() {
    let dir = crate::harness::TempDir::new("house");
    let (ok, long) = (dir.path().join("ok.rs"), dir.path().join("long.rs"));
    std::fs::write(&ok, "//\n".repeat(500)).unwrap();
    std::fs::write(&long, "//\n".repeat(501)).unwrap();
    let flagged = over_500(&[ok, long]);
    assert_eq!(flagged.len(), 1, "{flagged:?}");
    assert!(flagged[0].contains("long.rs (501 lines)"), "{flagged:?}");
}
