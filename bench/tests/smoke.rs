//! The harness runs end to end in seconds (`--smoke`): every row is
//! measured, printed and written, and no request of any measurement failed.
//! This is CI's smoke run; the full run is `bench/run`.

use std::process::Command;

/// A smoke run starts and stops everything it uses and reports every row of
/// the issue, with no failed request anywhere.
#[test]
fn smoke_run_reports_every_row_without_errors() {
    let out = tempfile::tempdir().expect("temporary directory");
    let output = Command::new(env!("CARGO_BIN_EXE_token-bench"))
        .arg("--smoke")
        .arg("--out")
        .arg(out.path())
        .arg("--authority")
        .arg(env!("CARGO_BIN_EXE_token-bench-authority"))
        .output()
        .expect("running token-bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "token-bench failed:\n{stderr}");
    let markdown = std::fs::read_to_string(out.path().join("latest.md")).expect("latest.md");
    for row in [
        "1a", "1b", "1c", "2a", "2b", "3a", "3b", "3c", "4", "5a", "5b", "5c", "5d", "6", "7a",
        "7b",
    ] {
        assert!(
            markdown.contains(&format!("\n| {row} | ")),
            "row {row} missing:\n{markdown}"
        );
    }
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        markdown.trim(),
        "the table printed is the table written"
    );
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("latest.json")).expect("latest.json"),
    )
    .expect("valid JSON");
    // Rows H (the HTTP path against nginx) need nginx and the example
    // service's binary (built by `cargo build --all-targets`, as CI does);
    // without them the report says why they were skipped.
    let bench = std::path::Path::new(env!("CARGO_BIN_EXE_token-bench"));
    let example = bench.with_file_name("examples").join("protected_service");
    let nginx = std::path::Path::new("/usr/sbin/nginx").is_file()
        || std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| dir.join("nginx").is_file())
        });
    if nginx && example.is_file() {
        for row in ["H1", "H2", "H3", "H4"] {
            assert!(
                markdown.contains(&format!("\n| {row} | ")),
                "row {row} missing:\n{markdown}"
            );
        }
    } else {
        assert!(
            markdown.contains("HTTP path (H1–H4) skipped"),
            "rows H neither measured nor reported as skipped:\n{markdown}"
        );
    }
    let figures = json["figures"].as_array().expect("figures");
    assert!(!figures.is_empty());
    for figure in figures {
        assert_eq!(
            figure["errors"], 0,
            "{} had failed requests: {}",
            figure["name"], figure["first_error"]
        );
    }
}
