//! `ARCHITECTURE.md` stays true: every path it names from the repository's
//! root exists (a file moved or split without the map following fails
//! here).

use std::path::{Path, PathBuf};

/// The workspace root (this crate lives in `tests/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The top-level directories a path in the map starts with.
const TOP: &[&str] = &[
    "repository/",
    "authority/",
    "client-middleware/",
    "broker/",
    "bearer/",
    "settings/",
    "tests/",
    "bench/",
    "scripts/",
    "docker/",
];

/// `a/{b,c}.rs` → `a/b.rs`, `a/c.rs`; anything else as it is.
fn expand(path: &str) -> Vec<String> {
    match (path.find('{'), path.find('}')) {
        (Some(open), Some(close)) if open < close => path[open + 1..close]
            .split(',')
            .flat_map(|part| expand(&format!("{}{part}{}", &path[..open], &path[close + 1..])))
            .collect(),
        _ => vec![path.to_owned()],
    }
}

/// Every code span of `text` that names a path from the root.
fn paths(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|span| TOP.iter().any(|top| span.starts_with(top)) && !span.contains(' '))
        .flat_map(expand)
        .collect()
}

#[test]
fn every_path_in_the_map_exists() {
    let map = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let named = paths(&map);
    assert!(named.len() > 30, "only {} paths found", named.len());
    let missing: Vec<&String> = named
        .iter()
        .filter(|path| !root().join(path).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names missing paths: {missing:?}"
    );
}

#[test]
fn braces_expand() {
    assert_eq!(
        expand("a/{b,c}.rs"),
        ["a/b.rs".to_owned(), "a/c.rs".to_owned()]
    );
    assert_eq!(
        paths("see `repository/src/x.rs` and `not/a/top`"),
        ["repository/src/x.rs"]
    );
}

/// No crate's modules import each other in a cycle (`scripts/cycles`, as
/// ARCHITECTURE.md promises).
#[test]
fn no_import_cycles() {
    let output = std::process::Command::new("python3")
        .arg(root().join("scripts/cycles"))
        .current_dir(root())
        .output()
        .expect("python3 scripts/cycles");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}");
    assert!(report.contains("no import cycles"), "{report}");
}
