//! The rate-limit plugin. Counters live in the plugin runtime, which all
//! tests of this binary share (as a gateway shares it across reloads): each
//! test names its route uniquely so their counters stay apart.

use gatehouse_tests::*;
use std::time::Duration;

async fn with_limit(route: &str, config: &str) -> (TestGateway, Echo) {
    gateway_to_echo(&format!(
        r#"
[[routes]]
name = "{route}"
path = "/api/*"
upstream = "up"
[[routes.plugins]]
plugin = "rate-limit"
config = {{ {config} }}
"#
    ))
    .await
}

#[tokio::test]
async fn exactly_the_limit_passes_under_300_concurrent_requests() {
    for algorithm in ["fixed-window", "sliding-window", "token-bucket"] {
        let config = format!("limit = 100, window = \"1h\", algorithm = \"{algorithm}\"");
        let (gw, up) = with_limit(&format!("exact-{algorithm}"), &config).await;
        let c = TestClient::default();
        let mut tasks = Vec::new();
        for _ in 0..300 {
            let (c, url) = (c.clone(), gw.url("/api/x"));
            tasks.push(tokio::spawn(
                async move { c.get(&url).await.status.as_u16() },
            ));
        }
        let mut ok = 0;
        let mut limited = 0;
        for t in tasks {
            match t.await.unwrap() {
                200 => ok += 1,
                429 => limited += 1,
                other => panic!("{algorithm}: unexpected status {other}"),
            }
        }
        assert_eq!((ok, limited), (100, 200), "{algorithm}");
        assert_eq!(
            up.requests(),
            100,
            "{algorithm}: refused requests never reach the upstream"
        );
    }
}

#[tokio::test]
async fn responses_carry_ratelimit_headers_and_refusals_a_retry_after() {
    let (gw, _up) = with_limit(
        "headers",
        "limit = 3, window = \"1h\", algorithm = \"fixed-window\"",
    )
    .await;
    let c = TestClient::default();
    for remaining in ["2", "1", "0"] {
        let seen = c.get(&gw.url("/api/x")).await;
        assert_eq!(seen.status, 200);
        assert_eq!(seen.header("ratelimit-limit"), Some("3"));
        assert_eq!(seen.header("ratelimit-remaining"), Some(remaining));
        let reset: u64 = seen.header("ratelimit-reset").unwrap().parse().unwrap();
        assert!((1..=3600).contains(&reset));
    }
    let refused = c.get(&gw.url("/api/x")).await;
    assert_error_body(&refused, 429);
    assert_eq!(refused.json()["error"], "rate limit exceeded");
    assert_eq!(refused.header("ratelimit-remaining"), Some("0"));
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry));
}

#[tokio::test]
async fn the_counts_go_on_any_answer_including_a_response_phase_failure() {
    // Set from the request phase (contract 0.1.3), the headers land on a
    // later plugin's reply too, and a later plugin's on-response sees them.
    let (gw, up) = gateway_to_echo(
        r#"
[[routes]]
name = "counts-reply"
path = "/reply/*"
upstream = "up"
[[routes.plugins]]
plugin = "rate-limit"
config = { limit = 5, window = "1h" }
[[routes.plugins]]
plugin = "testkit"
config = { mode = "respond", status = 418, body = "teapot" }

[[routes]]
name = "counts-shaped"
path = "/shaped/*"
upstream = "up"
[[routes.plugins]]
plugin = "rate-limit"
config = { limit = 5, window = "1h" }
[[routes.plugins]]
plugin = "transform"
config = { response = { remove_headers = ["ratelimit-reset"] } }

[[routes]]
name = "counts-failed"
path = "/failed/*"
upstream = "up"
[[routes.plugins]]
plugin = "rate-limit"
config = { limit = 5, window = "1h" }
[[routes.plugins]]
plugin = "testkit"
config = { mode = "fail-response", message = "broken" }
"#,
    )
    .await;
    let c = TestClient::default();
    let reply = c.get(&gw.url("/reply/x")).await;
    assert_eq!(reply.status, 418);
    assert_eq!(reply.header("ratelimit-limit"), Some("5"));
    assert_eq!(reply.header("ratelimit-remaining"), Some("4"));
    assert_eq!(up.requests(), 0);
    let shaped = c.get(&gw.url("/shaped/x")).await;
    assert_eq!(shaped.status, 200);
    assert_eq!(shaped.header("ratelimit-remaining"), Some("4"));
    assert_eq!(
        shaped.header("ratelimit-reset"),
        None,
        "transform removed it"
    );
    // A plugin failing in the response phase: the gateway's error replaces
    // the upstream's answer, and the counts are on it too.
    let failed = c.get(&gw.url("/failed/x")).await;
    assert_error_body(&failed, 503);
    assert_eq!(failed.header("ratelimit-remaining"), Some("4"));
}

#[tokio::test]
async fn the_quota_comes_back_when_the_window_resets() {
    let (gw, _up) = with_limit(
        "reset",
        "limit = 2, window = \"1s\", algorithm = \"fixed-window\"",
    )
    .await;
    let c = TestClient::default();
    // Start at a window's beginning would need a clock; instead keep going
    // until refused, then wait the time the gateway says.
    let mut refused = None;
    for _ in 0..3 {
        let seen = c.get(&gw.url("/api/x")).await;
        if seen.status == 429 {
            refused = Some(seen);
            break;
        }
    }
    let refused = refused.expect("the third request in a second is refused");
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert_eq!(retry, 1);
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert_eq!(c.get(&gw.url("/api/x")).await.status, 200);
}

#[tokio::test]
async fn a_header_key_gives_each_caller_its_own_quota() {
    let (gw, _up) = with_limit(
        "by-header",
        "limit = 1, window = \"1h\", key = \"header:x-user\"",
    )
    .await;
    let c = TestClient::default();
    assert_eq!(
        c.get_with(&gw.url("/api/x"), &[("x-user", "ann")])
            .await
            .status,
        200
    );
    assert_eq!(
        c.get_with(&gw.url("/api/x"), &[("x-user", "ann")])
            .await
            .status,
        429
    );
    assert_eq!(
        c.get_with(&gw.url("/api/x"), &[("x-user", "bob")])
            .await
            .status,
        200
    );
    // X-Forwarded-For does not make a new client.
    let (gw, _up) = with_limit("by-ip", "limit = 1, window = \"1h\"").await;
    assert_eq!(
        c.get_with(&gw.url("/api/x"), &[("x-forwarded-for", "1.1.1.1")])
            .await
            .status,
        200
    );
    assert_eq!(
        c.get_with(&gw.url("/api/x"), &[("x-forwarded-for", "2.2.2.2")])
            .await
            .status,
        429
    );
}

#[tokio::test]
async fn an_invalid_rate_limit_config_is_refused() {
    for (config, expected) in [
        ("limit = 0, window = \"1h\"", "`limit` must be at least 1"),
        (
            "limit = 5, window = \"0s\"",
            "`window` must be at least 1ms",
        ),
        (
            "limit = 5, window = \"1h\", key = \"cookie\"",
            "`key`: \"cookie\" is not one of",
        ),
        (
            "limit = 5, window = \"soon\"",
            "invalid config at `window`: invalid duration \"soon\"",
        ),
        (
            "limit = 5, window = \"1h\", algorithm = \"leaky\"",
            "invalid config at `algorithm`: unknown variant `leaky`",
        ),
    ] {
        let err = refusal("api", "rate-limit", &format!("config = {{ {config} }}")).await;
        assert!(err.contains(expected), "{config}: {err}");
    }
}
