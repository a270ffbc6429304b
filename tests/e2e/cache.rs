//! The cache plugin. Entries live in the shared plugin runtime, keyed by
//! route: each test names its route uniquely.

use gatehouse_tests::*;
use http::Method;

async fn with_cache(route: &str, before: &str, config: &str) -> (TestGateway, Echo) {
    gateway_to_echo(&format!(
        "[[routes]]\nname = \"{route}\"\npath = \"/*\"\nupstream = \"up\"\n{before}\n[[routes.plugins]]\nplugin = \"cache\"\nconfig = {{ {config} }}\n"
    ))
    .await
}

#[tokio::test]
async fn a_second_get_is_a_hit_served_without_the_upstream() {
    let (gw, up) = with_cache("hit", "", "ttl = \"1h\"").await;
    let c = TestClient::default();
    let miss = c.get(&gw.url("/items?page=1")).await;
    assert_eq!(miss.header("x-cache"), Some("MISS"));
    let hit = c.get(&gw.url("/items?page=1")).await;
    assert_eq!(hit.status, 200);
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    assert_eq!(hit.body, miss.body);
    assert_eq!(hit.header("content-type"), Some("application/json"));
    assert!(hit.header("age").is_some());
    assert_ne!(
        hit.header("x-request-id"),
        miss.header("x-request-id"),
        "a hit has its own request id"
    );
    assert_eq!(up.requests(), 1);
    // Another query is another entry; HEAD is served from the GET entry.
    assert_eq!(
        c.get(&gw.url("/items?page=2")).await.header("x-cache"),
        Some("MISS")
    );
    let head = c
        .send(Method::HEAD, &gw.url("/items?page=1"), &[], "")
        .await;
    assert_eq!(head.header("x-cache"), Some("HIT"));
    assert_eq!(up.requests(), 2);
    // Other methods pass by.
    let post = c
        .send(Method::POST, &gw.url("/items?page=1"), &[], "{}")
        .await;
    assert_eq!(post.header("x-cache"), None);
    assert_eq!(up.requests(), 3);
}

#[tokio::test]
async fn vary_headers_make_separate_entries() {
    let (gw, up) = with_cache("vary", "", "ttl = \"1h\", vary = [\"accept\"]").await;
    let c = TestClient::default();
    assert_eq!(
        c.get_with(&gw.url("/v"), &[("accept", "application/json")])
            .await
            .header("x-cache"),
        Some("MISS")
    );
    assert_eq!(
        c.get_with(&gw.url("/v"), &[("accept", "text/csv")])
            .await
            .header("x-cache"),
        Some("MISS")
    );
    assert_eq!(
        c.get_with(&gw.url("/v"), &[("accept", "text/csv")])
            .await
            .header("x-cache"),
        Some("HIT")
    );
    assert_eq!(up.requests(), 2);
}

#[tokio::test]
async fn the_upstreams_cache_control_is_honoured() {
    let (gw, up) = with_cache("cc", "", "ttl = \"1h\"").await;
    let c = TestClient::default();
    for directive in ["no-store", "private", "max-age=0"] {
        let h = format!("cache-control: {directive}");
        let path = format!("/cc/{}", directive.replace('=', "-"));
        c.get_with(&gw.url(&path), &[("x-echo-header", &h)]).await;
        let again = c.get_with(&gw.url(&path), &[("x-echo-header", &h)]).await;
        assert_eq!(
            again.header("x-cache"),
            Some("MISS"),
            "{directive} must not be stored"
        );
    }
    assert_eq!(up.requests(), 6);
    // Errors are not stored either.
    c.get_with(&gw.url("/err"), &[("x-echo-status", "500")])
        .await;
    assert_eq!(c.get(&gw.url("/err")).await.status, 200);
}

#[tokio::test]
async fn requests_with_credentials_bypass_the_shared_cache() {
    let (gw, up) = with_cache("creds", "", "ttl = \"1h\"").await;
    let c = TestClient::default();
    for (n, v) in [("authorization", "Bearer a"), ("cookie", "session=1")] {
        assert_eq!(
            c.get_with(&gw.url("/me"), &[(n, v)])
                .await
                .header("x-cache"),
            Some("BYPASS")
        );
        assert_eq!(
            c.get_with(&gw.url("/me"), &[(n, v)])
                .await
                .header("x-cache"),
            Some("BYPASS")
        );
    }
    assert_eq!(up.requests(), 4);
    // Nothing was stored for anonymous callers either.
    assert_eq!(c.get(&gw.url("/me")).await.header("x-cache"), Some("MISS"));
}

#[tokio::test]
async fn per_consumer_entries_never_leak_between_consumers() {
    let auth = "[[routes.plugins]]\nplugin = \"api-key\"\nconfig = { keys = { \"k-ann\" = \"ann\", \"k-bob\" = \"bob\" } }";
    let (gw, up) = with_cache("per-consumer", auth, "ttl = \"1h\", per_consumer = true").await;
    let c = TestClient::default();
    let ann = c.get_with(&gw.url("/me"), &[("x-api-key", "k-ann")]).await;
    assert_eq!(ann.header("x-cache"), Some("MISS"));
    let bob = c.get_with(&gw.url("/me"), &[("x-api-key", "k-bob")]).await;
    assert_eq!(
        bob.header("x-cache"),
        Some("MISS"),
        "bob never gets ann's entry"
    );
    assert_eq!(bob.upstream_header("x-api-key").as_deref(), Some("k-bob"));
    let ann_again = c.get_with(&gw.url("/me"), &[("x-api-key", "k-ann")]).await;
    assert_eq!(ann_again.header("x-cache"), Some("HIT"));
    assert_eq!(
        ann_again.upstream_header("x-api-key").as_deref(),
        Some("k-ann")
    );
    assert_eq!(up.requests(), 2);
}

#[tokio::test]
async fn a_bad_cache_config_is_refused() {
    for (config, expected) in [
        ("ttl = \"0s\"", "`ttl` must be more than 0"),
        (
            "ttl = \"1m\", max_body = \"lots\"",
            "`max_body`: invalid size \"lots\"",
        ),
        ("max_body = \"1MiB\"", "missing field `ttl`"),
    ] {
        let err = refusal("c", "cache", &format!("config = {{ {config} }}")).await;
        assert!(err.contains(expected), "{config}: {err}");
    }
}
