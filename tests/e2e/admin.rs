//! The admin API: its own listener, off unless configured, token-guarded.

use gatehouse_tests::*;
use serde_json::Value;

async fn with_admin(extra: &str, routes: &str) -> (TestGateway, Echo) {
    let up = Echo::bind("up", "127.0.0.1:0").await.unwrap();
    let server = format!("admin_listen = \"127.0.0.1:0\"\n{extra}");
    (
        TestGateway::start(&echo_config(&up, &server, routes)).await,
        up,
    )
}

const CHAIN: &str = "[[routes]]\nname = \"admin-seen\"\npath = \"/api/*\"\nupstream = \"up\"\n\
     [[routes.plugins]]\nplugin = \"testkit\"\nconfig = { mode = \"panic-on\", path_contains = \"boom\" }\n\
     [[routes.plugins]]\nplugin = \"add-header\"\nconfig = { name = \"x-a\", value = \"1\" }\n";

async fn admin_get(gw: &TestGateway, path: &str, headers: &[(&str, &str)]) -> Seen {
    let url = format!("http://{}{path}", gw.admin.expect("admin listener"));
    TestClient::default().get_with(&url, headers).await
}

#[tokio::test]
async fn health_routes_plugins_and_upstreams_are_reported() {
    let (gw, up) = with_admin("", CHAIN).await;
    assert_eq!(admin_get(&gw, "/healthz", &[]).await.json()["status"], "ok");
    assert_eq!(
        admin_get(&gw, "/readyz", &[]).await.json()["status"],
        "ready"
    );

    let c = TestClient::default();
    assert_eq!(c.get(&gw.url("/api/fine")).await.status, 200);
    assert_eq!(c.get(&gw.url("/api/fine")).await.status, 200);
    assert_eq!(c.get(&gw.url("/api/boom")).await.status, 503);

    let routes = admin_get(&gw, "/admin/routes", &[]).await.json();
    let route = &routes["routes"][0];
    assert_eq!(route["name"], "admin-seen");
    assert_eq!(route["path"], "/api/*");
    assert_eq!(route["upstream"], "up");
    assert_eq!(route["plugins"][1]["plugin"], "add-header");
    assert_eq!(route["plugins"][1]["config"]["name"], "x-a");
    assert_eq!(route["plugins"][0]["limits"]["timeout_ms"], 50);

    let plugins = admin_get(&gw, "/admin/plugins", &[]).await.json();
    let by_name = |n: &str| -> Value {
        plugins["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("{n} in {plugins}"))
    };
    let kit = by_name("testkit");
    assert_eq!(kit["contract"], "gatehouse:plugin@0.1.5");
    assert_eq!(kit["sha256"].as_str().unwrap().len(), 64);
    let size = std::fs::metadata(plugins_dir().join("testkit.wasm"))
        .unwrap()
        .len();
    assert_eq!(kit["size_bytes"], size);
    let stats = &kit["entries"][0]["stats"];
    // Both phases of the two good requests, and the request phase that panicked.
    assert_eq!(stats["calls"], 5);
    assert_eq!(stats["traps"], 1);
    assert!(
        stats["last_error"]
            .as_str()
            .unwrap()
            .contains("asked to panic")
            || stats["last_error"].as_str().unwrap().contains("trap"),
        "{stats}"
    );
    // The panic stopped the chain: add-header ran for the two good requests.
    assert_eq!(by_name("add-header")["entries"][0]["stats"]["calls"], 2);

    let ups = admin_get(&gw, "/admin/upstreams", &[]).await.json();
    assert_eq!(ups["upstreams"][0]["name"], "up");
    assert_eq!(
        ups["upstreams"][0]["targets"][0]["target"],
        up.addr.to_string()
    );
    assert_eq!(ups["upstreams"][0]["targets"][0]["in_flight"], 0);

    let missing = admin_get(&gw, "/admin/nothing", &[]).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["status"], 404);
}

#[tokio::test]
async fn the_admin_token_is_required_when_set() {
    let (gw, _up) = with_admin("admin_token = \"s3cret\"", "").await;
    let seen = admin_get(&gw, "/healthz", &[]).await;
    assert_eq!(seen.status, 401);
    assert_eq!(seen.header("www-authenticate"), Some("Bearer"));
    let wrong = admin_get(&gw, "/healthz", &[("authorization", "Bearer nope")]).await;
    assert_eq!(wrong.status, 401);
    let right = admin_get(&gw, "/healthz", &[("authorization", "Bearer s3cret")]).await;
    assert_eq!(right.status, 200);
    // The proxy listener knows nothing of the admin paths.
    assert_eq!(
        TestClient::default().get(&gw.url("/healthz")).await.status,
        404
    );
}

#[tokio::test]
async fn readiness_turns_off_while_draining_and_the_api_is_off_by_default() {
    let (gw, _up) = gateway_to_echo("").await;
    assert!(
        gw.admin.is_none(),
        "no admin listener unless admin_listen is set"
    );

    let (gw, up) = with_admin(
        "",
        "[[routes]]\nname = \"drain\"\npath = \"/*\"\nupstream = \"up\"\n",
    )
    .await;
    let admin = gw.admin.unwrap();
    let url = gw.url("/slow");
    let slow = tokio::spawn(async move {
        TestClient::default()
            .get_with(&url, &[("x-echo-delay-ms", "600")])
            .await
    });
    while up.requests() < 1 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let stopping = tokio::spawn(gw.stop());
    let ready_url = format!("http://{admin}/readyz");
    let mut draining = None;
    for _ in 0..50 {
        let seen = TestClient::default().get(&ready_url).await;
        if seen.status == 503 {
            draining = Some(seen);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let draining = draining.expect("/readyz answered 503 while draining");
    assert_eq!(draining.json()["status"], "shutting down");
    assert_eq!(slow.await.unwrap().status, 200);
    stopping.await.unwrap();
    // Stopped: the admin listener is gone too.
    assert!(tokio::net::TcpStream::connect(admin).await.is_err());
}

#[tokio::test]
async fn a_non_loopback_admin_listener_needs_a_token() {
    let toml = format!(
        "{SERVER}\nadmin_listen = \"0.0.0.0:0\"\n[upstreams.up]\ntargets = [\"127.0.0.1:9\"]\n"
    );
    let err = TestGateway::try_start(&toml).await.err().expect("refused");
    assert!(
        err.contains(
            "admin_listen \"0.0.0.0:0\" is not a loopback address: set server.admin_token"
        ),
        "{err}"
    );
}

/// The value of the sample `series` (name and labels exactly) in a scrape.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    })
}

#[tokio::test]
async fn metrics_count_requests_upstream_time_plugin_calls_and_traps() {
    let chain = CHAIN.replace("admin-seen", "metrics-seen");
    let (gw, _up) = with_admin("", &chain).await;
    let c = TestClient::default();
    assert_eq!(c.get(&gw.url("/api/fine")).await.status, 200);
    assert_eq!(c.get(&gw.url("/api/fine")).await.status, 200);
    assert_eq!(c.get(&gw.url("/api/boom")).await.status, 503);
    assert_eq!(c.get(&gw.url("/nowhere")).await.status, 404);

    let seen = admin_get(&gw, "/metrics", &[]).await;
    assert_eq!(seen.status, 200);
    assert!(
        seen.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = String::from_utf8(seen.body.to_vec()).unwrap();
    let get =
        |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series} in:\n{text}"));
    // This route's series are this test's alone (the runtime is shared).
    assert_eq!(
        get(r#"gatehouse_requests_total{route="metrics-seen",method="GET",status="200"}"#),
        2.0
    );
    assert_eq!(
        get(r#"gatehouse_requests_total{route="metrics-seen",method="GET",status="503"}"#),
        1.0
    );
    assert_eq!(
        get(r#"gatehouse_request_duration_seconds_count{route="metrics-seen"}"#),
        3.0
    );
    assert!(get(r#"gatehouse_requests_total{route="",method="GET",status="404"}"#) >= 1.0);
    // Plugin and upstream series are shared with other tests: at least ours.
    assert!(get(r#"gatehouse_upstream_duration_seconds_count{upstream="up"}"#) >= 2.0);
    assert!(
        get(r#"gatehouse_plugin_duration_seconds_count{plugin="add-header",phase="request"}"#)
            >= 2.0
    );
    assert!(
        get(r#"gatehouse_plugin_duration_seconds_count{plugin="testkit",phase="response"}"#) >= 2.0
    );
    assert!(get(r#"gatehouse_plugin_traps_total{plugin="testkit",reason="trap"}"#) >= 1.0);
    assert!(get(r#"gatehouse_plugin_instances{plugin="add-header"}"#) >= 1.0);
    assert!(text.trim_end().ends_with("# EOF"));
}

#[tokio::test]
async fn plugins_report_breaker_state_and_rate_limit_refusals() {
    let up = Echo::bind("up", "127.0.0.1:0").await.unwrap();
    let toml = format!(
        "{SERVER}\nadmin_listen = \"127.0.0.1:0\"\n[upstreams.reported-up]\ntargets = [\"{}\"]\n\
         [[routes]]\nname = \"reported\"\npath = \"/*\"\nupstream = \"reported-up\"\n\
         [[routes.plugins]]\nplugin = \"rate-limit\"\nconfig = {{ limit = 4, window = \"1h\", key = \"route\" }}\n\
         [[routes.plugins]]\nplugin = \"circuit-breaker\"\nconfig = {{ failure_threshold = 2, open_for = \"1h\" }}\n",
        up.addr
    );
    let gw = TestGateway::start(&toml).await;
    let c = TestClient::default();
    let fail = [("x-echo-status", "500")];
    assert_eq!(c.get_with(&gw.url("/x"), &fail).await.status, 500);
    assert_eq!(c.get_with(&gw.url("/x"), &fail).await.status, 500);
    assert_eq!(
        c.get(&gw.url("/x")).await.status,
        503,
        "the breaker is open"
    );
    assert_eq!(c.get(&gw.url("/x")).await.status, 503);
    assert_eq!(
        c.get(&gw.url("/x")).await.status,
        429,
        "the limit of 4 is spent"
    );

    let ups = admin_get(&gw, "/admin/upstreams", &[]).await.json();
    assert_eq!(ups["upstreams"][0]["circuit"], "open", "{ups}");
    let text = String::from_utf8(admin_get(&gw, "/metrics", &[]).await.body.to_vec()).unwrap();
    assert_eq!(
        sample(&text, r#"gatehouse_circuit_state{upstream="reported-up"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"gatehouse_ratelimit_rejected_total{route="reported"}"#
        ),
        Some(1.0),
        "{text}"
    );
}
