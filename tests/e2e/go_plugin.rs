//! A plugin written in Go with the Go SDK (`examples/go-plugin`,
//! body-guard), built by `gatehouse plugin build` (Go's wasip1 target) and
//! served by the real gateway; and the SDK's declared edits, through
//! `tests/fixtures/go-set-headers`: its list calls, declared edits and
//! optional hooks.

use gatehouse_tests::*;
use http::Method;
use std::sync::LazyLock;

static BUILT: LazyLock<BuiltExample> =
    LazyLock::new(|| BuiltExample::build("go-plugin", "body-guard"));

const CONFIG: &str =
    r#"{ max_body = 64, content_types = ["application/json", "application/problem+json"] }"#;

async fn post(gw: &TestGateway, content_type: &str, body: &str) -> Seen {
    TestClient::default()
        .send(
            Method::POST,
            &gw.url("/orders"),
            &[("content-type", content_type)],
            body,
        )
        .await
}

#[tokio::test]
async fn a_small_json_body_passes_to_the_upstream() {
    let (gw, _up) = BUILT.gateway("", CONFIG).await.unwrap();
    let body = r#"{"item":"book","qty":2}"#;
    let seen = post(&gw, "application/json; charset=utf-8", body).await;
    assert_eq!(seen.status, 200, "{}", String::from_utf8_lossy(&seen.body));
    assert_eq!(seen.json()["body"], body);
    // Methods without a body are not checked.
    assert_eq!(
        TestClient::default().get(&gw.url("/orders")).await.status,
        200
    );
}

#[tokio::test]
async fn wrong_type_oversized_and_malformed_bodies_are_refused() {
    let (gw, up) = BUILT.gateway("", CONFIG).await.unwrap();
    let seen = post(&gw, "text/plain", "hello").await;
    assert_error_body(&seen, 415);
    assert_eq!(
        seen.json()["error"],
        "content type \"text/plain\" is not accepted here"
    );
    let big = format!(r#"{{"note":"{}"}}"#, "x".repeat(100));
    let seen = post(&gw, "application/json", &big).await;
    assert_error_body(&seen, 413);
    let message = format!("body of {} bytes is over the limit of 64", big.len());
    assert_eq!(seen.json()["error"], message.as_str());
    let seen = post(&gw, "application/problem+json", r#"{"title":"#).await;
    assert_error_body(&seen, 400);
    assert_eq!(seen.json()["error"], "the body is not valid JSON");
    assert_eq!(up.requests(), 0, "refused bodies never reach the upstream");
}

#[tokio::test]
async fn garbage_never_fails_a_request_the_instance_is_replaced_instead() {
    // The collector is off (it cannot run inside the ABI's allocator), so
    // each 32 KiB body read stays on the heap: about 10 MiB over these
    // requests against an 8 MiB cap. The gateway replaces the instance
    // between requests when it passes 3/4 of the cap.
    let (gw, up) = BUILT
        .gateway(
            "",
            r#"{ max_body = 65536, content_types = ["application/json"] }
limits = { memory = "8MiB" }"#,
        )
        .await
        .unwrap();
    let body = format!(r#"{{"items":[{}]}}"#, vec!["12345678"; 4000].join(","));
    assert!(body.len() > 32 * 1024);
    for i in 0..300 {
        let seen = post(&gw, "application/json", &body).await;
        assert_eq!(
            seen.status,
            200,
            "request {i}: {}",
            String::from_utf8_lossy(&seen.body)
        );
    }
    assert_eq!(up.requests(), 300);
}

#[tokio::test]
async fn a_bad_config_is_refused_naming_route_plugin_and_field() {
    let err = BUILT
        .gateway("", "{ max_body = 0 }")
        .await
        .err()
        .expect("refused");
    assert!(
        err.contains("route \"body-guard\", plugin \"body-guard\": init failed: `max_body` must be at least 1"),
        "{err}"
    );
    let err = BUILT
        .gateway("", r#"{ content_types = "application/json" }"#)
        .await
        .err()
        .expect("refused");
    assert!(
        err.contains("`content_types` must be a list of strings"),
        "{err}"
    );
}

static SET_HEADERS: LazyLock<BuiltExample> =
    LazyLock::new(|| BuiltExample::fixture("go-set-headers", "set-headers-go"));

#[tokio::test]
async fn declared_edits_are_made_before_the_hook_and_checked_at_init() {
    assert_declared_edits(&SET_HEADERS).await;
}

#[tokio::test]
async fn list_calls_set_several_headers_all_or_nothing() {
    assert_list_calls(&SET_HEADERS).await;
}

#[tokio::test]
async fn a_plugin_without_on_request_is_not_entered_for_requests() {
    let config = r#"{ response_only = true, edits = { set_request = [["x-declared", "yes"]] }, response = [["x-from-response", "1"]] }"#;
    let (gw, _up) = SET_HEADERS
        .gateway("admin_listen = \"127.0.0.1:0\"", config)
        .await
        .expect("the config loads");
    let c = TestClient::default();
    for _ in 0..2 {
        let seen = c.get(&gw.url("/items/1")).await;
        assert_eq!(seen.status, 200);
        assert_eq!(seen.upstream_header("x-declared").as_deref(), Some("yes"));
        assert_eq!(seen.header("x-from-response"), Some("1"));
    }
    let plugins = c
        .get(&format!("http://{}/admin/plugins", gw.admin.unwrap()))
        .await
        .json();
    let entry = &plugins["plugins"][0]["entries"][0];
    assert_eq!(
        entry["stats"]["calls"], 2,
        "one response-phase call a request and no request-phase call: {entry}"
    );
}

#[tokio::test]
async fn a_plugin_with_no_hook_is_refused_with_its_type() {
    let err = SET_HEADERS
        .gateway("", "{ no_hooks = true }")
        .await
        .err()
        .expect("refused");
    assert!(
        err.contains("init failed: the plugin (*main.nothing) has no OnRequest, OnResponse or Edits method with the SDK's signature"),
        "{err}"
    );
}
