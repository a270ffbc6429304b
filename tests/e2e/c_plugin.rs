//! A plugin written in C with the C SDK (`examples/c-plugin`, cidr-guard),
//! built by `gatehouse plugin build` and served by the real gateway; and the
//! SDK's list calls and declared edits, through
//! `tests/fixtures/c-set-headers`.

use gatehouse_tests::*;
use std::sync::LazyLock;

/// The example, built once for this test binary.
static BUILT: LazyLock<BuiltExample> =
    LazyLock::new(|| BuiltExample::build("c-plugin", "cidr-guard"));

#[tokio::test]
async fn an_allowed_network_passes_and_others_get_403() {
    let (gw, _up) = BUILT
        .gateway("", r#"{ allow = ["127.0.0.0/8", "::1/128"] }"#)
        .await
        .unwrap();
    let seen = TestClient::default().get(&gw.url("/reports")).await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.json()["service"], "up");

    let (gw, _up) = BUILT
        .gateway("", r#"{ allow = ["10.0.0.0/8"] }"#)
        .await
        .unwrap();
    let seen = TestClient::default().get(&gw.url("/reports")).await;
    assert_error_body(&seen, 403);
    assert_eq!(seen.json()["error"], "client address not allowed");
}

#[tokio::test]
async fn the_deny_list_wins_over_the_allow_list() {
    let (gw, _up) = BUILT
        .gateway(
            "",
            r#"{ allow = ["127.0.0.0/8"], deny = ["127.0.0.1/32"] }"#,
        )
        .await
        .unwrap();
    let seen = TestClient::default().get(&gw.url("/")).await;
    assert_error_body(&seen, 403);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_checked() {
    // The test client connects from 127.0.0.1, the trusted load balancer.
    let (gw, _up) = BUILT
        .gateway(
            r#"trusted_proxies = ["127.0.0.1"]"#,
            r#"{ allow = ["10.0.0.0/8", "2001:db8::/32"] }"#,
        )
        .await
        .unwrap();
    let from = |xff: &'static str| {
        let url = gw.url("/");
        async move {
            TestClient::default()
                .get_with(&url, &[("x-forwarded-for", xff)])
                .await
                .status
        }
    };
    assert_eq!(from("10.20.30.40").await, 200);
    assert_eq!(from("2001:db8::7").await, 200);
    assert_eq!(from("192.168.1.1").await, 403);
    assert_eq!(from("2001:db9::7").await, 403);
}

#[test]
fn config_strings_are_read_as_json_with_escapes() {
    // "\u002f" is "/", "\ud83d\ude00" one emoji: the SDK's JSON reader
    // unescapes both (the emoji then fails as a block, and is named).
    let wasm = BUILT.wasm.to_str().unwrap();
    let run = |config: &str, client: &str| {
        gatehouse_cli(&[
            "plugin", "run", wasm, "--config", config, "--client", client,
        ])
    };
    let out = run(r#"{"allow":["127.0.0.1\u002f32"]}"#, "127.0.0.1:1000");
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let out = run(r#"{"allow":["127.0.0.1\u002f32"]}"#, "127.0.0.2:1000");
    assert_eq!(out.code, Some(3), "{}{}", out.stdout, out.stderr);
    let out = run(r#"{ "allow" : [ "\ud83d\ude00/8" ] }"#, "127.0.0.1:1000");
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("`allow[0]`: \u{1F600}/8 is not"),
        "{}",
        out.stderr
    );
    // Not JSON at all (the gateway always sends JSON; `plugin run` may not).
    let out = run(r#"{"allow":["10.0.0.0/8"]"#, "127.0.0.1:1000");
    assert!(
        out.stderr.contains("the config must be a table"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn a_bad_block_is_refused_naming_route_plugin_and_field() {
    let err = BUILT
        .gateway("", r#"{ allow = ["127.0.0.1/8", "10.0.0.0/33"] }"#)
        .await
        .err()
        .expect("refused");
    assert!(
        err.contains("route \"cidr-guard\", plugin \"cidr-guard\": init failed: `allow[1]`: 10.0.0.0/33 is not a CIDR block"),
        "{err}"
    );
    let err = BUILT
        .gateway("", r#"{ deny = "10.0.0.0/8" }"#)
        .await
        .err()
        .expect("refused");
    assert!(
        err.contains("`deny` must be a list of CIDR blocks"),
        "{err}"
    );
}

#[test]
fn a_compile_error_is_reported_and_the_previous_component_kept() {
    let project = tempfile::tempdir().unwrap();
    let out = project.path().join("broken.wasm");
    std::fs::write(&out, b"previous").unwrap();
    std::fs::write(
        project.path().join("broken.c"),
        "#include \"gatehouse.h\"\nint x = missing;\n",
    )
    .unwrap();
    let run = gatehouse_cli(&[
        "plugin",
        "build",
        project.path().to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("missing"), "{}", run.stderr);
    assert!(
        run.stderr.contains("the C compiler failed"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"previous");

    let empty = tempfile::tempdir().unwrap();
    let run = gatehouse_cli(&["plugin", "build", empty.path().to_str().unwrap()]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .contains("no Cargo.toml, app.py, app.js, main.go or .c files"),
        "{}",
        run.stderr
    );
}

static SET_HEADERS: LazyLock<BuiltExample> =
    LazyLock::new(|| BuiltExample::fixture("c-set-headers", "set-headers-c"));

#[tokio::test]
async fn declared_edits_are_made_before_the_hook_and_checked_at_init() {
    assert_declared_edits(&SET_HEADERS).await;
}

#[tokio::test]
async fn list_calls_set_several_headers_all_or_nothing() {
    // The fixture reads `context`, a table, with gh_json_next_member.
    assert_list_calls(&SET_HEADERS).await;
}
