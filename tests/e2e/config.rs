//! Bad configs and the exact messages they give (snapshots in
//! tests/configs/bad/NAME.err), and `gatehouse check`'s exit codes.
//! Set UPDATE_SNAPSHOTS=1 to rewrite the .err files after a deliberate change.

use gatehouse_tests::*;
use std::path::Path;
use std::process::Command;

#[test]
fn bad_configs_are_refused_with_their_snapshot_messages() {
    plugins_dir();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/bad");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "the snapshot folder has lost files");
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    let mut mismatches = Vec::new();
    for file in files {
        let name = file.file_name().unwrap().to_str().unwrap().to_owned();
        let out = Command::new(gatehouse_bin())
            .args(["check", "--config", &name])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{name} should be refused");
        let stderr = String::from_utf8(out.stderr).unwrap();
        let snapshot = file.with_extension("err");
        if update {
            std::fs::write(&snapshot, &stderr).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&snapshot).unwrap_or_default();
        if stderr != expected {
            mismatches.push(format!(
                "{name}:\n--- expected\n{expected}--- got\n{stderr}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn check_accepts_a_good_config_and_exits_zero() {
    let (dir, parsed) = config(
        r#"
[server]
listen = "127.0.0.1:0"
plugins_dir = "{plugins}"
[upstreams.up]
targets = ["127.0.0.1:9"]
[[routes]]
name = "r"
path = "/*"
upstream = "up"
[[routes.plugins]]
plugin = "add-header"
config = { name = "x-a", value = "1" }
"#,
    );
    parsed.expect("valid");
    let out = Command::new(gatehouse_bin())
        .args(["check", "--config"])
        .arg(dir.path().join("gatehouse.toml"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 routes, 1 plugin entries)"));
}

#[test]
fn check_of_a_missing_file_says_so() {
    let out = Command::new(gatehouse_bin())
        .args(["check", "--config", "/nonexistent/gatehouse.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("/nonexistent/gatehouse.toml: cannot read the config file")
    );
}

#[test]
fn the_issue_config_shape_parses_as_written() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/good/issue-shape.toml"),
    )
    .unwrap();
    let (_dir, parsed) = config(&text);
    let c = parsed.expect("the design's config shape is valid");
    let users = &c.routes[0];
    assert_eq!(users.plugins.len(), 2);
    assert_eq!(users.plugins[1].limits.memory, 16 * 1024 * 1024);
    assert_eq!(users.plugins[1].limits.timeout.as_millis(), 10);
    assert_eq!(
        users.plugins[1].config_json,
        r#"{"name":"x-second","value":"2"}"#
    );
}
