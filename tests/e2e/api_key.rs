//! The api-key plugin.

use gatehouse_tests::*;

async fn with_api_key(config: &str) -> (TestGateway, Echo) {
    gateway_to_echo(&format!(
        r#"
[[routes]]
name = "orders"
path = "/orders/*"
upstream = "up"
[[routes.plugins]]
plugin = "api-key"
[routes.plugins.config]
{config}
[[routes.plugins]]
plugin = "testkit"
config = {{ mode = "context" }}
"#
    ))
    .await
}

const KEYS: &str = r#"[routes.plugins.config.keys]
"k-abc123" = "mobile-app"
"sha256:85dbe15d75ef9308c7ae0f33c7a324cc6f4bf519a2ed2f3027bd33c140a4f9aa" = "partner""#;

#[tokio::test]
async fn a_known_key_passes_and_names_the_consumer() {
    let (gw, _up) = with_api_key(KEYS).await;
    let c = TestClient::default();
    let seen = c
        .get_with(&gw.url("/orders/1"), &[("x-api-key", "k-abc123")])
        .await;
    assert_eq!(seen.status, 200);
    assert_eq!(
        seen.upstream_header("x-ctx-consumer").as_deref(),
        Some("mobile-app")
    );
    assert_eq!(
        seen.upstream_header("x-api-key").as_deref(),
        Some("k-abc123"),
        "kept unless hidden"
    );

    // A key configured only by its SHA-256 digest.
    let seen = c
        .get_with(&gw.url("/orders/1"), &[("x-api-key", "secret-key")])
        .await;
    assert_eq!(seen.status, 200);
    assert_eq!(
        seen.upstream_header("x-ctx-consumer").as_deref(),
        Some("partner")
    );
}

#[tokio::test]
async fn missing_and_unknown_keys_get_401_and_never_reach_the_upstream() {
    let (gw, up) = with_api_key(KEYS).await;
    let c = TestClient::default();
    let missing = c.get(&gw.url("/orders/1")).await;
    assert_error_body(&missing, 401);
    assert_eq!(missing.json()["error"], "missing API key");
    let unknown = c
        .get_with(&gw.url("/orders/1"), &[("x-api-key", "k-abc124")])
        .await;
    assert_error_body(&unknown, 401);
    assert_eq!(unknown.json()["error"], "invalid API key");
    // The digest itself is not a key.
    let digest = "85dbe15d75ef9308c7ae0f33c7a324cc6f4bf519a2ed2f3027bd33c140a4f9aa";
    assert_eq!(
        c.get_with(&gw.url("/orders/1"), &[("x-api-key", digest)])
            .await
            .status,
        401
    );
    assert_eq!(up.requests(), 0);
}

#[tokio::test]
async fn a_query_key_can_be_hidden_from_the_upstream() {
    let config = format!("query = \"api_key\"\nhide_credentials = true\n{KEYS}");
    let (gw, _up) = with_api_key(&config).await;
    let c = TestClient::default();
    let seen = c
        .get(&gw.url("/orders/1?page=2&api_key=k-abc123&sort=asc"))
        .await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.json()["query"], "page=2&sort=asc");
    assert_eq!(
        seen.upstream_header("x-ctx-consumer").as_deref(),
        Some("mobile-app")
    );
    assert_eq!(c.get(&gw.url("/orders/1?api_key=nope")).await.status, 401);
}

#[tokio::test]
async fn a_bad_api_key_config_is_refused_naming_route_plugin_and_field() {
    for (config, expected) in [
        (
            "header = \"x-key\"\nquery = \"k\"\nkeys = { a = \"b\" }",
            "set `header` or `query`, not both",
        ),
        ("keys = {}", "`keys` must hold at least one key"),
        (
            "keys = { \"sha256:abc\" = \"x\" }",
            "\"sha256:abc\" is not sha256: and 64 hex digits",
        ),
        (
            "keys = { a = 1 }",
            "invalid config at `keys.a`: invalid type: integer `1`, expected a string",
        ),
    ] {
        let err = refusal(
            "orders",
            "api-key",
            &format!("[routes.plugins.config]\n{config}"),
        )
        .await;
        assert!(err.contains(expected), "{err}");
    }
}
