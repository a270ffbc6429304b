//! The cors plugin, and preflights reaching it on routes without OPTIONS.

use gatehouse_tests::*;
use http::Method;

async fn with_cors(config: &str) -> (TestGateway, Echo) {
    gateway_to_echo(&format!(
        r#"
[[routes]]
name = "orders"
path = "/orders/*"
methods = ["GET", "POST"]
upstream = "up"
[[routes.plugins]]
plugin = "cors"
[routes.plugins.config]
{config}

[[routes]]
name = "plain"
path = "/plain/*"
methods = ["GET"]
upstream = "up"
"#
    ))
    .await
}

const APP: &str = "https://app.example.com";
const CONFIG: &str = r#"origins = ["https://app.example.com"]
headers = ["authorization", "content-type"]
expose_headers = ["x-request-id"]
credentials = true
max_age = "1h""#;

async fn preflight(
    gw: &TestGateway,
    path: &str,
    origin: &str,
    method: &str,
    headers: &str,
) -> Seen {
    TestClient::default()
        .send(
            Method::OPTIONS,
            &gw.url(path),
            &[
                ("origin", origin),
                ("access-control-request-method", method),
                ("access-control-request-headers", headers),
            ],
            "",
        )
        .await
}

#[tokio::test]
async fn a_preflight_is_answered_at_the_gateway_even_without_options_in_methods() {
    let (gw, up) = with_cors(CONFIG).await;
    let seen = preflight(&gw, "/orders/1", APP, "POST", "content-type").await;
    assert_eq!(seen.status, 204);
    assert_eq!(seen.header("access-control-allow-origin"), Some(APP));
    assert_eq!(
        seen.header("access-control-allow-methods"),
        Some("GET, HEAD, POST, PUT, PATCH, DELETE")
    );
    assert_eq!(
        seen.header("access-control-allow-headers"),
        Some("authorization, content-type")
    );
    assert_eq!(
        seen.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(seen.header("access-control-max-age"), Some("3600"));
    assert_eq!(up.requests(), 0, "preflights never reach the upstream");
}

#[tokio::test]
async fn a_disallowed_origin_method_or_header_gets_no_cors_headers() {
    let (gw, up) = with_cors(CONFIG).await;
    for (origin, method, headers) in [
        ("https://evil.example.com", "POST", ""),
        (APP, "POST", "x-secret-header"),
    ] {
        let seen = preflight(&gw, "/orders/1", origin, method, headers).await;
        assert_eq!(seen.status, 204);
        assert_eq!(
            seen.header("access-control-allow-origin"),
            None,
            "{origin} {method} {headers}"
        );
    }
    // A method the route does not take at all: no route for the preflight.
    assert_eq!(
        preflight(&gw, "/orders/1", APP, "TRACE", "").await.status,
        405
    );
    let evil = TestClient::default()
        .get_with(
            &gw.url("/orders/1"),
            &[("origin", "https://evil.example.com")],
        )
        .await;
    assert_eq!(evil.status, 200);
    assert_eq!(evil.header("access-control-allow-origin"), None);
    assert_eq!(up.requests(), 1);
}

#[tokio::test]
async fn a_method_outside_the_cors_list_is_not_allowed_by_the_preflight() {
    let (gw, _up) = with_cors("methods = [\"GET\"]").await;
    let seen = preflight(&gw, "/orders/1", APP, "POST", "").await;
    assert_eq!(seen.status, 204);
    assert_eq!(seen.header("access-control-allow-origin"), None);
    let ok = preflight(&gw, "/orders/1", APP, "GET", "").await;
    assert_eq!(ok.header("access-control-allow-methods"), Some("GET"));
}

#[tokio::test]
async fn actual_responses_carry_the_cors_headers() {
    let (gw, _up) = with_cors(CONFIG).await;
    let seen = TestClient::default()
        .get_with(&gw.url("/orders/1"), &[("origin", APP)])
        .await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.header("access-control-allow-origin"), Some(APP));
    assert_eq!(
        seen.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        seen.header("access-control-expose-headers"),
        Some("x-request-id")
    );
    assert_eq!(seen.header("vary"), Some("Origin"));
    let no_origin = TestClient::default().get(&gw.url("/orders/1")).await;
    assert_eq!(no_origin.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn any_origin_is_a_star_unless_credentials_are_allowed() {
    let (gw, _up) = with_cors("origins = [\"*\"]").await;
    let seen = TestClient::default()
        .get_with(&gw.url("/orders/1"), &[("origin", APP)])
        .await;
    assert_eq!(seen.header("access-control-allow-origin"), Some("*"));
    let pre = preflight(&gw, "/orders/1", APP, "GET", "x-anything").await;
    assert_eq!(
        pre.header("access-control-allow-headers"),
        Some("x-anything"),
        "requested headers reflected"
    );

    let (gw, _up) = with_cors("origins = [\"*\"]\ncredentials = true").await;
    let seen = TestClient::default()
        .get_with(&gw.url("/orders/1"), &[("origin", APP)])
        .await;
    assert_eq!(
        seen.header("access-control-allow-origin"),
        Some(APP),
        "never * with credentials"
    );
}

#[tokio::test]
async fn a_preflight_on_a_route_without_cors_is_405() {
    let (gw, up) = with_cors(CONFIG).await;
    let seen = preflight(&gw, "/plain/1", APP, "GET", "").await;
    assert_error_body(&seen, 405);
    assert_eq!(seen.header("allow"), Some("GET"));
    assert_eq!(up.requests(), 0);
}

#[tokio::test]
async fn a_bad_cors_config_is_refused() {
    let err = refusal(
        "orders",
        "cors",
        "config = { origins = [\"app.example.com\"] }",
    )
    .await;
    assert!(
        err.contains("route \"orders\", plugin \"cors\": init failed: `origins`: \"app.example.com\" is not \"*\" or scheme://host[:port]"),
        "{err}"
    );
}
