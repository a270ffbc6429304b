//! The circuit-breaker plugin. Breaker state is per upstream in the shared
//! plugin runtime, so each test names its upstream uniquely.

use gatehouse_tests::*;
use std::time::Duration;

/// Two routes in front of one upstream, both behind the breaker.
async fn with_breaker(upstream: &str, target: &str, config: &str) -> TestGateway {
    let entry =
        format!("[[routes.plugins]]\nplugin = \"circuit-breaker\"\nconfig = {{ {config} }}\n");
    let toml = format!(
        "{SERVER}\n[upstreams.{upstream}]\ntargets = [\"{target}\"]\n\
         [[routes]]\nname = \"a\"\npath = \"/a/*\"\nupstream = \"{upstream}\"\n{entry}\
         [[routes]]\nname = \"b\"\npath = \"/b/*\"\nupstream = \"{upstream}\"\n{entry}"
    );
    TestGateway::start(&toml).await
}

const FAIL: (&str, &str) = ("x-echo-status", "500");

#[tokio::test]
async fn the_breaker_opens_half_opens_and_closes() {
    let up = Echo::bind("up", "127.0.0.1:0").await.unwrap();
    let gw = with_breaker(
        "cycle",
        &up.addr.to_string(),
        "failure_threshold = 3, open_for = \"1s\"",
    )
    .await;
    let c = TestClient::default();
    for _ in 0..3 {
        assert_eq!(c.get_with(&gw.url("/a/x"), &[FAIL]).await.status, 500);
    }
    let open = c.get(&gw.url("/a/x")).await;
    assert_error_body(&open, 503);
    assert_eq!(open.json()["error"], "circuit breaker open");
    assert_eq!(open.header("retry-after"), Some("1"));
    assert_eq!(up.requests(), 3, "while open the upstream is not contacted");
    // The state is per upstream: the other route is open too.
    assert_eq!(c.get(&gw.url("/b/x")).await.status, 503);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        c.get(&gw.url("/a/x")).await.status,
        200,
        "the trial request goes through"
    );
    assert_eq!(
        c.get(&gw.url("/b/x")).await.status,
        200,
        "and closed the breaker"
    );
    assert_eq!(up.requests(), 5);
}

#[tokio::test]
async fn a_failed_trial_reopens_the_breaker() {
    let up = Echo::bind("up", "127.0.0.1:0").await.unwrap();
    let gw = with_breaker(
        "retrial",
        &up.addr.to_string(),
        "failure_threshold = 2, open_for = \"1s\"",
    )
    .await;
    let c = TestClient::default();
    for _ in 0..2 {
        c.get_with(&gw.url("/a/x"), &[FAIL]).await;
    }
    assert_eq!(c.get(&gw.url("/a/x")).await.status, 503);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        c.get_with(&gw.url("/a/x"), &[FAIL]).await.status,
        500,
        "the trial fails"
    );
    assert_eq!(
        c.get(&gw.url("/a/x")).await.status,
        503,
        "open again at once"
    );
    assert_eq!(up.requests(), 3);
}

#[tokio::test]
async fn connect_errors_count_as_failures() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = with_breaker(
        "dead",
        &dead.to_string(),
        "failure_threshold = 2, open_for = \"30s\"",
    )
    .await;
    let c = TestClient::default();
    assert_eq!(c.get(&gw.url("/a/x")).await.status, 502);
    assert_eq!(c.get(&gw.url("/a/x")).await.status, 502);
    let open = c.get(&gw.url("/a/x")).await;
    assert_eq!(open.status, 503);
    assert_eq!(open.header("retry-after"), Some("30"));
}

#[tokio::test]
async fn successes_reset_the_consecutive_count() {
    let up = Echo::bind("up", "127.0.0.1:0").await.unwrap();
    let gw = with_breaker(
        "flaky",
        &up.addr.to_string(),
        "failure_threshold = 2, open_for = \"30s\"",
    )
    .await;
    let c = TestClient::default();
    for _ in 0..3 {
        assert_eq!(c.get_with(&gw.url("/a/x"), &[FAIL]).await.status, 500);
        assert_eq!(c.get(&gw.url("/a/x")).await.status, 200);
    }
}

#[tokio::test]
async fn slow_calls_count_as_failures_and_fast_ones_reset_the_count() {
    let up = Echo::bind("up", "127.0.0.1:0").await.unwrap();
    let gw = with_breaker(
        "slow",
        &up.addr.to_string(),
        "failure_threshold = 2, open_for = \"30s\", slow_call = \"150ms\"",
    )
    .await;
    let c = TestClient::default();
    let slow = ("x-echo-delay-ms", "300");
    // A slow answer still reaches the client, but counts against the upstream.
    assert_eq!(c.get_with(&gw.url("/a/x"), &[slow]).await.status, 200);
    assert_eq!(
        c.get(&gw.url("/a/x")).await.status,
        200,
        "fast: count reset"
    );
    assert_eq!(c.get_with(&gw.url("/a/x"), &[slow]).await.status, 200);
    assert_eq!(c.get_with(&gw.url("/b/x"), &[slow]).await.status, 200);
    let open = c.get(&gw.url("/a/x")).await;
    assert_error_body(&open, 503);
    assert_eq!(up.requests(), 4, "two slow calls in a row opened it");
}

#[tokio::test]
async fn the_cached_fallback_serves_the_last_good_body() {
    let up = Echo::bind("up", "127.0.0.1:0").await.unwrap();
    let gw = with_breaker(
        "cached",
        &up.addr.to_string(),
        "failure_threshold = 1, open_for = \"30s\", fallback = \"cached\"",
    )
    .await;
    let c = TestClient::default();
    let good = c.get(&gw.url("/a/report")).await;
    assert_eq!(good.status, 200);
    assert_eq!(c.get_with(&gw.url("/a/report"), &[FAIL]).await.status, 500);
    let served = c.get(&gw.url("/a/report")).await;
    assert_eq!(served.status, 200);
    assert_eq!(served.body, good.body, "the last good body for the path");
    assert_eq!(
        served.header("x-circuit-breaker"),
        Some("open; cached response")
    );
    assert_eq!(served.header("content-type"), Some("application/json"));
    assert_eq!(c.get(&gw.url("/a/never-seen")).await.status, 503);
}

#[tokio::test]
async fn a_bad_breaker_config_is_refused() {
    for (config, expected) in [
        (
            "failure_threshold = 3, failure_rate = 0.5, open_for = \"1s\"",
            "set `failure_threshold` or `failure_rate`, not both",
        ),
        (
            "failure_rate = 2.0, window = \"10s\", open_for = \"1s\"",
            "`failure_rate` must be more than 0 and at most 1",
        ),
        (
            "failure_rate = 0.5, open_for = \"1s\"",
            "`failure_rate` needs a `window`",
        ),
        ("failure_threshold = 3", "missing field `open_for`"),
    ] {
        let err = refusal("a", "circuit-breaker", &format!("config = {{ {config} }}")).await;
        assert!(err.contains(expected), "{config}: {err}");
    }
}

#[tokio::test]
async fn a_failure_rate_opens_the_breaker_after_min_calls() {
    let up = Echo::bind("up", "127.0.0.1:0").await.unwrap();
    let config = "failure_rate = 0.5, min_calls = 4, window = \"1h\", open_for = \"30s\"";
    let gw = with_breaker("rate", &up.addr.to_string(), config).await;
    let c = TestClient::default();
    assert_eq!(c.get(&gw.url("/a/x")).await.status, 200);
    assert_eq!(c.get_with(&gw.url("/a/x"), &[FAIL]).await.status, 500);
    assert_eq!(
        c.get_with(&gw.url("/a/x"), &[FAIL]).await.status,
        500,
        "3 calls: under min_calls"
    );
    assert_eq!(
        c.get(&gw.url("/a/x")).await.status,
        200,
        "2 of 4 failed, but this call succeeded"
    );
    assert_eq!(
        c.get_with(&gw.url("/a/x"), &[FAIL]).await.status,
        500,
        "3 of 5 failed: opens"
    );
    assert_eq!(c.get(&gw.url("/a/x")).await.status, 503);
    assert_eq!(up.requests(), 5);
}
