//! The contract's `outbound` interface: requests a plugin makes through the
//! host, only to allowed hosts, bounded in time and size.

use gatehouse_tests::*;
use serde_json::Value;

/// A gateway whose route answers with what the testkit's outbound request
/// to `target` got back; `entry` adds to the plugin entry (allow_hosts,
/// limits) and `fetch` to the testkit's config.
async fn fetching(target: &str, entry: &str, fetch: &str) -> TestGateway {
    let toml = format!(
        "{SERVER}\n[upstreams.up]\ntargets = [\"127.0.0.1:9\"]\n\
         [[routes]]\nname = \"fetch\"\npath = \"/*\"\nupstream = \"up\"\n\
         [[routes.plugins]]\nplugin = \"testkit\"\n{entry}\n\
         [routes.plugins.config]\nmode = \"fetch\"\nmethod = \"POST\"\nurl = \"{target}\"\n{fetch}\n"
    );
    TestGateway::start(&toml).await
}

async fn answer(gw: &TestGateway) -> Value {
    let seen = TestClient::default().get(&gw.url("/from/client")).await;
    assert_eq!(seen.status, 200, "{}", String::from_utf8_lossy(&seen.body));
    seen.json()
}

#[tokio::test]
async fn an_allowed_host_is_reached_with_the_plugins_request() {
    let svc = Echo::bind("svc", "127.0.0.1:0").await.unwrap();
    let gw = fetching(
        &format!("http://{}/check?x=1", svc.addr),
        &format!("allow_hosts = [\"{}\"]", svc.addr),
        "headers = { \"x-echo-header\" = \"x-test: yes\" }",
    )
    .await;
    let got = answer(&gw).await;
    assert_eq!(got["status"], 200, "{got}");
    assert_eq!(got["x-test"], "yes", "response headers reach the plugin");
    let echoed: Value = serde_json::from_str(got["body"].as_str().unwrap()).unwrap();
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["path"], "/check");
    assert_eq!(echoed["query"], "x=1");
    assert_eq!(echoed["body"], "/from/client");
    assert_eq!(echoed["headers"]["x-from-plugin"], "testkit");
    assert_eq!(svc.requests(), 1);
}

#[tokio::test]
async fn hosts_not_allowed_are_denied_without_a_connection() {
    let svc = Echo::bind("svc", "127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", svc.addr);
    let other_port = format!("allow_hosts = [\"127.0.0.1:{}\"]", svc.addr.port() + 1);
    for entry in [
        "",
        "allow_hosts = []",
        "allow_hosts = [\"localhost\"]",
        &other_port,
    ] {
        let gw = fetching(&url, entry, "").await;
        let got = answer(&gw).await;
        let err = got["error"].as_str().unwrap_or_default();
        assert!(
            err.starts_with("not allowed: ") && err.contains("allow_hosts"),
            "{entry}: {got}"
        );
    }
    assert_eq!(svc.requests(), 0);
}

#[tokio::test]
async fn refused_connections_and_unsupported_urls_are_errors_for_the_plugin() {
    // A port nothing listens on: bind one, then close it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let allow = format!("allow_hosts = [\"{closed}\"]");
    let got = answer(&fetching(&format!("http://{closed}/"), &allow, "").await).await;
    assert!(
        got["error"]
            .as_str()
            .unwrap()
            .starts_with("cannot connect: "),
        "{got}"
    );

    let got = answer(&fetching("ftp://127.0.0.1/x", &allow, "").await).await;
    assert!(
        got["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid request: "),
        "{got}"
    );
}

#[tokio::test]
async fn a_slow_service_times_out_at_the_shorter_of_the_plugins_and_the_entrys_timeout() {
    let svc = Echo::bind("svc", "127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", svc.addr);
    let allow = format!("allow_hosts = [\"{}\"]", svc.addr);
    let slow = "headers = { \"x-echo-delay-ms\" = \"2000\" }";

    let gw = fetching(&url, &allow, &format!("{slow}\ntimeout_ms = 100")).await;
    let started = std::time::Instant::now();
    let got = answer(&gw).await;
    assert_eq!(got["error"], "timed out", "{got}");
    assert!(started.elapsed() < std::time::Duration::from_millis(1500));

    let entry = format!("{allow}\nlimits = {{ fetch_timeout = \"100ms\" }}");
    let gw = fetching(&url, &entry, &format!("{slow}\ntimeout_ms = 60000")).await;
    let started = std::time::Instant::now();
    let got = answer(&gw).await;
    assert_eq!(got["error"], "timed out", "{got}");
    assert!(started.elapsed() < std::time::Duration::from_millis(1500));
}

#[tokio::test]
async fn waiting_on_a_fetch_does_not_count_against_the_cpu_deadline() {
    let svc = Echo::bind("svc", "127.0.0.1:0").await.unwrap();
    // The call's CPU deadline is 5 ms; the service takes 150 ms to answer.
    let entry = format!(
        "allow_hosts = [\"{}\"]\nlimits = {{ timeout = \"5ms\" }}",
        svc.addr
    );
    let gw = fetching(
        &format!("http://{}/", svc.addr),
        &entry,
        "headers = { \"x-echo-delay-ms\" = \"150\" }",
    )
    .await;
    for _ in 0..3 {
        assert_eq!(answer(&gw).await["status"], 200);
    }
}

#[tokio::test]
async fn a_response_body_over_the_cap_is_refused() {
    let svc = Echo::bind("svc", "127.0.0.1:0").await.unwrap();
    let allow = format!("allow_hosts = [\"{}\"]", svc.addr);
    // The echo service repeats the body it got, so its answer is larger still.
    let size = gatehouse::plugin::MAX_FETCH_BODY + 1;
    let gw = fetching(
        &format!("http://{}/", svc.addr),
        &format!("{allow}\nlimits = {{ memory = \"64MiB\" }}"),
        &format!("body_size = {size}"),
    )
    .await;
    let got = answer(&gw).await;
    assert_eq!(got["error"], "response body too large", "{got}");
}
