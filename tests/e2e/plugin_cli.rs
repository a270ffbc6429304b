//! `gatehouse plugin run`: one plugin on one request, offline, through the
//! real binary and the plugins built from this repository.

use gatehouse_tests::{CliRun, gatehouse_cli, gatehouse_cli_with, plugins_dir};
use std::path::Path;

/// HS256 with `quickstart-secret`: sub alice, role user, expires in 2100.
const TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsInJvbGUiOiJ1c2VyIiwiaXNzIjoiaHR0cHM6Ly9hdXRoLmdhdGVob3VzZS5leGFtcGxlIiwiZXhwIjo0MTAyNDQ0ODAwfQ.rF7a7xnCYJkFG0vOgyx4OrLZvO4-YjhTvaO-1KnM6sM";

fn run(plugin: &str, args: &[&str]) -> CliRun {
    let wasm = plugins_dir().join(format!("{plugin}.wasm"));
    let wasm = wasm.to_str().expect("UTF-8 path");
    let mut all = vec!["plugin", "run", wasm];
    all.extend_from_slice(args);
    gatehouse_cli(&all)
}

fn lines(out: &str) -> Vec<&str> {
    out.lines().collect()
}

#[test]
fn a_request_let_through_is_shown_as_it_goes_upstream() {
    let auth = format!("authorization: Bearer {TOKEN}");
    let out = run(
        "jwt-auth",
        &[
            "--config",
            r#"{"secret":"quickstart-secret","forward_claims":{"sub":"x-user-id"},"consumer_claim":"sub"}"#,
            "--request",
            "GET /users/42?expand=orders",
            "-H",
            &auth,
            "-H",
            "x-user-id: mallory",
        ],
    );
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let l = lines(&out.stdout);
    assert!(l[0].starts_with("plugin    jwt-auth ("), "{}", out.stdout);
    assert!(l.contains(&"init      ok in") || l[1].starts_with("init      ok in"));
    assert!(l[1].ends_with("(hooks: on-request)"), "{}", l[1]);
    assert!(l[2].starts_with("on-request  continue in "), "{}", l[2]);
    assert!(
        l.contains(&"> GET /users/42?expand=orders"),
        "{}",
        out.stdout
    );
    // The forged header is replaced by the verified claim.
    assert!(l.contains(&"> x-user-id: alice"), "{}", out.stdout);
    assert!(!out.stdout.contains("mallory"), "{}", out.stdout);
    assert!(l.contains(&"context   consumer = alice"), "{}", out.stdout);
}

#[test]
fn a_reply_is_shown_with_its_status_headers_and_body() {
    let out = run("jwt-auth", &["--config", r#"{"secret":"s"}"#]);
    assert_eq!(out.code, Some(3), "{}{}", out.stdout, out.stderr);
    let l = lines(&out.stdout);
    assert!(
        l[2].starts_with("on-request  respond 401 in "),
        "{}",
        out.stdout
    );
    assert!(l.contains(&"< 401 Unauthorized"), "{}", out.stdout);
    assert!(l.contains(&"< www-authenticate: Bearer"), "{}", out.stdout);
    let body = l
        .iter()
        .find_map(|l| l.strip_prefix("< {"))
        .map(|rest| format!("{{{rest}"))
        .expect("a body line");
    let body: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(body["error"], "missing bearer token");
}

#[test]
fn repeated_requests_share_the_hosts_state() {
    let out = run(
        "rate-limit",
        &["--config", r#"{"limit":2,"window":"1m"}"#, "--repeat", "3"],
    );
    assert_eq!(out.code, Some(3), "{}{}", out.stdout, out.stderr);
    let decisions: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("on-request"))
        .map(|l| l.split(" in ").next().unwrap_or(l))
        .collect();
    assert_eq!(
        decisions,
        [
            "on-request  continue",
            "on-request  continue",
            "on-request  respond 429"
        ]
    );
    assert!(
        out.stdout.contains("< ratelimit-remaining: 0"),
        "{}",
        out.stdout
    );
}

#[test]
fn the_response_phase_runs_on_the_stand_in_upstreams_answer() {
    let out = run(
        "transform",
        &[
            "--config",
            r#"{"response":{"set_headers":{"x-served-by":"gatehouse"},"remove_json_fields":["secret"]}}"#,
            "--upstream-header",
            "content-type: application/json",
            "--upstream-body",
            r#"{"id":7,"secret":"s3cr3t"}"#,
        ],
    );
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let l = lines(&out.stdout);
    assert!(
        l.iter().any(|l| l.starts_with("on-response done in ")),
        "{}",
        out.stdout
    );
    assert!(l.contains(&"< 200 OK"), "{}", out.stdout);
    assert!(l.contains(&"< x-served-by: gatehouse"), "{}", out.stdout);
    assert!(l.contains(&r#"< {"id":7}"#), "{}", out.stdout);
    assert!(l.contains(&"< content-length: 8"), "{}", out.stdout);
}

#[test]
fn declared_edits_are_listed_and_made_without_hooks() {
    let out = run(
        "transform",
        &[
            "--config",
            r#"{"request":{"set_headers":{"x-internal":"1"}},"response":{"set_headers":{"x-served-by":"gatehouse"},"remove_headers":["server"]}}"#,
            "--upstream-header",
            "server: upstream/1.0",
        ],
    );
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let l = lines(&out.stdout);
    assert!(
        l[1].ends_with("(hooks: none; declared edits: 1 request, 2 response)"),
        "{}",
        l[1]
    );
    assert!(l.contains(&"> x-internal: 1"), "{}", out.stdout);
    assert!(l.contains(&"< x-served-by: gatehouse"), "{}", out.stdout);
    assert!(!out.stdout.contains("upstream/1.0"), "{}", out.stdout);
}

#[test]
fn a_config_init_refuses_is_reported_with_exit_status_1() {
    let out = run("rate-limit", &["--config", r#"{"limit":0,"window":"1m"}"#]);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("`limit` must be at least 1"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_trap_fails_the_run_and_says_why() {
    let out = run(
        "testkit",
        &["--config", r#"{"mode":"panic-on","path_contains":"/"}"#],
    );
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("on-request  failed in "),
        "{}",
        out.stdout
    );
}

#[test]
fn bad_input_is_refused_before_anything_runs() {
    let out = run("add-header", &["--request", "GET users"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("must start with '/'"), "{}", out.stderr);

    let out = run("add-header", &["-H", "no colon"]);
    assert!(
        out.stderr.contains("expected \"name: value\""),
        "{}",
        out.stderr
    );

    let out = run("not-a-plugin", &[]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("not a plugin of the"), "{}", out.stderr);

    let out = gatehouse_cli(&["plugin", "run", "/nonexistent/x.wasm"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("/nonexistent/x.wasm"), "{}", out.stderr);
}

/// `plugin new`, then `plugin build`, then `plugin run` with and without
/// the header the template requires.
fn scaffold_build_run(lang: &str, env: &[(&str, &Path)]) {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().to_str().unwrap();
    let name = format!("{lang}-guard");
    let out = gatehouse_cli(&["plugin", "new", "--lang", lang, &name, "--dir", dir]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let project = parent.path().join(&name);
    let out = gatehouse_cli_with(&["plugin", "build", project.to_str().unwrap()], env);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let wasm = project.join(format!("{name}.wasm"));
    assert_eq!(out.stdout.trim(), wasm.to_str().unwrap());

    let config = r#"{"header":"x-api-version"}"#;
    let wasm = wasm.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["plugin", "run", wasm, "--config", config];
        args.extend_from_slice(extra);
        gatehouse_cli(&args)
    };
    let out = run(&["-H", "x-api-version: 2"]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let marked = format!("< x-checked-by: {name}");
    assert!(out.stdout.lines().any(|l| l == marked), "{}", out.stdout);
    // Set from on_request with set-response-header, in every SDK.
    let early = "< x-checked-header: x-api-version";
    assert!(out.stdout.lines().any(|l| l == early), "{}", out.stdout);
    let out = run(&[]);
    assert_eq!(out.code, Some(3), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("< 400 Bad Request"), "{}", out.stdout);
    let out = gatehouse_cli(&["plugin", "run", wasm, "--config", "{}"]);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
}

#[test]
fn a_new_c_project_builds_and_runs_as_it_is() {
    scaffold_build_run("c", &[]);
}

#[test]
fn a_new_go_project_builds_and_runs_as_it_is() {
    scaffold_build_run("go", &[]);
}

#[test]
fn a_new_js_project_builds_and_runs_as_it_is() {
    scaffold_build_run("js", &[]);
}

#[test]
fn a_new_python_project_builds_and_runs_as_it_is() {
    scaffold_build_run("python", &[]);
}

#[test]
fn a_new_rust_project_builds_and_runs_as_it_is() {
    // Its own target folder, kept between runs (the workspace's is locked
    // by the cargo running these tests).
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/scaffolded");
    scaffold_build_run("rust", &[("CARGO_TARGET_DIR", &target)]);
}

#[test]
fn new_refuses_bad_names_and_existing_folders() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().to_str().unwrap();
    for bad in ["My_Guard", "9lives", "guard-", "a/b"] {
        let out = gatehouse_cli(&["plugin", "new", "--lang", "c", bad, "--dir", dir]);
        assert_eq!(out.code, Some(1), "{bad}");
        assert!(
            out.stderr.contains("is not a plugin name"),
            "{}",
            out.stderr
        );
    }
    std::fs::create_dir(parent.path().join("taken")).unwrap();
    let out = gatehouse_cli(&["plugin", "new", "--lang", "rust", "taken", "--dir", dir]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("already exists: nothing was written"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_dir(parent.path().join("taken"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn a_plugin_built_against_an_older_contract_is_named_so_and_served() {
    // Built from the first contract's WIT; this gateway serves a later 0.1.
    let out = run("contract-0-1-0", &["--config", "{}"]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(", gatehouse:plugin@0.1.0, "),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("on-request  continue"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("> x-contract: 0.1.0"), "{}", out.stdout);
}
