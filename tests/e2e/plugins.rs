use gatehouse_tests::*;
use http::Method;

/// A gateway with one catch-all route whose chain is `chain` (TOML entries).
async fn with_chain(chain: &str) -> (TestGateway, Echo) {
    let up = Echo::bind("up", "127.0.0.1:0").await.unwrap();
    let toml = format!(
        r#"
{SERVER}
max_body_size = "1KiB"

[upstreams.up]
targets = ["{}"]

[[routes]]
name = "main"
path = "/items/{{id}}"
upstream = "up"
{chain}
"#,
        up.addr
    );
    (TestGateway::start(&toml).await, up)
}

fn trace(label: &str) -> String {
    format!(
        "[[routes.plugins]]\nplugin = \"testkit\"\nconfig = {{ mode = \"trace\", label = \"{label}\" }}\n"
    )
}

#[tokio::test]
async fn the_chain_runs_in_order_on_requests_and_in_reverse_on_responses() {
    let (gw, _up) = with_chain(&[trace("a"), trace("b"), trace("c")].concat()).await;
    let seen = TestClient::default().get(&gw.url("/items/1")).await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.upstream_header("x-chain").as_deref(), Some("a, b, c"));
    let back: Vec<&str> = seen
        .headers
        .get_all("x-chain-response")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(back, vec!["c", "b", "a"]);
}

#[tokio::test]
async fn the_add_header_plugin_sets_its_configured_header() {
    let chain = r#"
[[routes.plugins]]
plugin = "add-header"
config = { name = "x-gateway", value = "gatehouse" }
"#;
    let (gw, _up) = with_chain(chain).await;
    let seen = TestClient::default().get(&gw.url("/items/1")).await;
    assert_eq!(
        seen.upstream_header("x-gateway").as_deref(),
        Some("gatehouse")
    );
}

#[tokio::test]
async fn a_plugin_that_answers_skips_the_rest_and_the_upstream() {
    let chain = [
        trace("a"),
        "[[routes.plugins]]\nplugin = \"testkit\"\nconfig = { mode = \"respond\", status = 418, body = \"teapot\" }\n".into(),
        trace("never"),
    ]
    .concat();
    let (gw, up) = with_chain(&chain).await;
    let seen = TestClient::default().get(&gw.url("/items/1")).await;
    assert_eq!(seen.status, 418);
    assert_eq!(&seen.body[..], b"teapot");
    let back: Vec<&str> = seen
        .headers
        .get_all("x-chain-response")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        back,
        vec!["a"],
        "only the plugins before the answer see the response"
    );
    assert_eq!(up.requests(), 0, "the upstream was never called");
    assert!(seen.header("x-request-id").is_some());
}

#[tokio::test]
async fn a_failing_plugin_fails_closed_with_503_by_default() {
    let chain = "[[routes.plugins]]\nplugin = \"testkit\"\nconfig = { mode = \"fail\", message = \"no\" }\n";
    let (gw, up) = with_chain(chain).await;
    let seen = TestClient::default().get(&gw.url("/items/1")).await;
    assert_error_body(&seen, 503);
    assert!(seen.json()["error"].as_str().unwrap().contains("testkit"));
    assert_eq!(up.requests(), 0);
}

#[tokio::test]
async fn a_fail_open_plugin_is_skipped_when_it_fails() {
    let chain = [
        "[[routes.plugins]]\nplugin = \"testkit\"\non_error = \"fail-open\"\nconfig = { mode = \"fail\", message = \"no\" }\n".to_string(),
        trace("after"),
    ]
    .concat();
    let (gw, up) = with_chain(&chain).await;
    let seen = TestClient::default().get(&gw.url("/items/1")).await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.upstream_header("x-chain").as_deref(), Some("after"));
    assert_eq!(up.requests(), 1);
}

#[tokio::test]
async fn plugins_see_the_request_context() {
    let chain = "[[routes.plugins]]\nplugin = \"testkit\"\nconfig = { mode = \"context\" }\n";
    let (gw, _up) = with_chain(chain).await;
    let seen = TestClient::default()
        .get_with(&gw.url("/items/77"), &[("x-request-id", "ctx-1")])
        .await;
    assert_eq!(seen.upstream_header("x-ctx-route").as_deref(), Some("main"));
    assert_eq!(
        seen.upstream_header("x-ctx-upstream").as_deref(),
        Some("up")
    );
    assert_eq!(
        seen.upstream_header("x-ctx-request-id").as_deref(),
        Some("ctx-1")
    );
    assert_eq!(
        seen.upstream_header("x-ctx-client-ip").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        seen.upstream_header("x-ctx-param-id").as_deref(),
        Some("77")
    );
}

#[tokio::test]
async fn shared_counters_are_exact_across_concurrent_instances() {
    let chain = "[[routes.plugins]]\nplugin = \"testkit\"\nconfig = { mode = \"count\", window = \"3600s\" }\n";
    let (gw, _up) = with_chain(chain).await;
    let c = TestClient::default();
    let url = gw.url("/items/1");
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let (c, url) = (c.clone(), url.clone());
        tasks.push(tokio::spawn(async move { c.get(&url).await }));
    }
    let mut counts = Vec::new();
    for t in tasks {
        let seen = t.await.unwrap();
        counts.push(seen.header("x-count").unwrap().parse::<i64>().unwrap());
    }
    counts.sort();
    // The window may roll over during the test only once an hour; every
    // count from 1 to 40 appears exactly once.
    assert_eq!(counts, (1..=40).collect::<Vec<_>>());
}

#[tokio::test]
async fn buffered_bodies_reach_plugins_and_are_capped() {
    let chain = "[[routes.plugins]]\nplugin = \"testkit\"\nconfig = { mode = \"bodies\" }\n";
    let (gw, up) = with_chain(chain).await;
    let c = TestClient::default();
    let seen = c
        .send(Method::POST, &gw.url("/items/1"), &[], "hello")
        .await;
    assert_eq!(seen.status, 200);
    let echoed = String::from_utf8_lossy(&seen.body).to_string();
    assert!(
        echoed.contains("\"X-BODY-LENGTH\":\"5\""),
        "response body upper-cased by the plugin: {echoed}"
    );
    assert_eq!(seen.header("x-outcome"), Some("Upstream"));
    assert_eq!(
        seen.header("content-length")
            .map(|v| v.parse::<usize>().unwrap()),
        Some(seen.body.len())
    );

    let big = "x".repeat(2048);
    let refused = c.send(Method::POST, &gw.url("/items/1"), &[], &big).await;
    assert_error_body(&refused, 413);
    assert_eq!(up.requests(), 1);
}

#[tokio::test]
async fn the_response_phase_sees_connect_errors() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let toml = format!(
        r#"
{SERVER}
[upstreams.gone]
targets = ["{dead}"]
[[routes]]
name = "gone"
path = "/*"
upstream = "gone"
[[routes.plugins]]
plugin = "testkit"
config = {{ mode = "bodies" }}
"#
    );
    let gw = TestGateway::start(&toml).await;
    let seen = TestClient::default().get(&gw.url("/x")).await;
    assert_eq!(seen.status, 502);
    assert_eq!(seen.header("x-outcome"), Some("ConnectError"));
}

#[tokio::test]
async fn the_rust_example_plugin_guards_tenants() {
    let chain = r#"
[[routes.plugins]]
plugin = "tenant-guard"
config = { tenants = { acme = "t-001" } }
"#;
    let (gw, up) = with_chain(chain).await;
    let c = TestClient::default();
    let ok = c
        .get_with(&gw.url("/items/1"), &[("x-tenant", "acme")])
        .await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.upstream_header("x-tenant-id").as_deref(), Some("t-001"));
    let unknown = c
        .get_with(&gw.url("/items/1"), &[("x-tenant", "initech")])
        .await;
    assert_eq!(unknown.status, 403);
    assert_eq!(unknown.json()["error"], "unknown tenant");
    assert_eq!(c.get(&gw.url("/items/1")).await.status, 400);
    assert_eq!(up.requests(), 1);
}

#[tokio::test]
async fn many_headers_are_set_in_one_call() {
    let chain = r#"
[[routes.plugins]]
plugin = "testkit"
[routes.plugins.config]
mode = "set-headers"
request = [["x-user-id", "42"], ["x-user-role", "admin"], ["x-twice", "1"], ["x-twice", "2"]]
context = [["ratelimit-limit", "60"], ["ratelimit-remaining", "59"]]
response = [["x-served-by", "gatehouse"], ["x-cache", "miss"]]
"#;
    let (gw, _up) = with_chain(chain).await;
    let seen = TestClient::default()
        .get_with(&gw.url("/items/1"), &[("x-user-role", "guest")])
        .await;
    assert_eq!(seen.status, 200);
    // Each pair replaces the client's copy; a name given twice ends with its last value.
    assert_eq!(seen.upstream_header("x-user-id").as_deref(), Some("42"));
    assert_eq!(
        seen.upstream_header("x-user-role").as_deref(),
        Some("admin")
    );
    assert_eq!(seen.upstream_header("x-twice").as_deref(), Some("2"));
    for (name, value) in [
        ("ratelimit-limit", "60"),
        ("ratelimit-remaining", "59"),
        ("x-served-by", "gatehouse"),
        ("x-cache", "miss"),
    ] {
        assert_eq!(seen.header(name), Some(value), "{name} on the response");
    }
    for refused in [
        "x-request-refused",
        "x-context-refused",
        "x-response-refused",
    ] {
        assert_eq!(seen.header(refused), None, "{refused}");
    }
}

#[tokio::test]
async fn a_bad_pair_sets_none_of_the_headers() {
    let chain = r#"
[[routes.plugins]]
plugin = "testkit"
[routes.plugins.config]
mode = "set-headers"
request = [["x-good", "1"], ["bad name", "2"]]
context = [["x-good-context", "1"], ["x-bad-value", "a\nb"]]
response = [["x-good-response", "1"], ["", "no name"]]
"#;
    let (gw, _up) = with_chain(chain).await;
    let seen = TestClient::default().get(&gw.url("/items/1")).await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.upstream_header("x-good"), None);
    assert_eq!(
        seen.upstream_header("x-request-refused").as_deref(),
        Some("invalid header name \"bad name\"")
    );
    assert_eq!(seen.header("x-good-context"), None);
    assert_eq!(
        seen.header("x-context-refused"),
        Some("invalid value for header \"x-bad-value\"")
    );
    assert_eq!(seen.header("x-good-response"), None);
    assert_eq!(
        seen.header("x-response-refused"),
        Some("invalid header name \"\"")
    );
}

/// A transform entry whose only rules set `x-a` on the request and
/// `x-chain-response` on the response: edits the gateway makes itself.
fn declaring(value: &str) -> String {
    format!(
        "[[routes.plugins]]\nplugin = \"transform\"\n\
         [routes.plugins.config.request]\nset_headers = {{ \"x-a\" = \"{value}\" }}\n\
         [routes.plugins.config.response]\nset_headers = {{ \"x-chain-response\" = \"{value}\" }}\n"
    )
}

#[tokio::test]
async fn declared_edits_are_made_at_the_plugins_place_in_the_chain() {
    // testkit's trace appends to `x-chain-response` in the response phase,
    // which runs in reverse: a declared set before it in the chain comes
    // after it on the way back, and replaces what it appended.
    for (chain, back) in [
        ([declaring("d"), trace("kit")], vec!["d"]),
        ([trace("kit"), declaring("d")], vec!["d", "kit"]),
    ] {
        let (gw, _up) = with_chain(&chain.concat()).await;
        let seen = TestClient::default().get(&gw.url("/items/1")).await;
        assert_eq!(seen.status, 200);
        assert_eq!(seen.upstream_header("x-a").as_deref(), Some("d"));
        assert_eq!(seen.upstream_header("x-chain").as_deref(), Some("kit"));
        let got: Vec<&str> = (seen.headers.get_all("x-chain-response").iter())
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(got, back, "{}", chain.concat());
    }
    // The same request header from a plugin's own hook: the later entry
    // wins, whichever way round.
    let hook = "[[routes.plugins]]\nplugin = \"add-header\"\nconfig = { name = \"x-a\", value = \"hook\" }\n";
    for (chain, expected) in [
        ([declaring("d"), hook.to_owned()], "hook"),
        ([hook.to_owned(), declaring("d")], "d"),
    ] {
        let (gw, _up) = with_chain(&chain.concat()).await;
        let seen = TestClient::default().get(&gw.url("/items/1")).await;
        assert_eq!(seen.upstream_header("x-a").as_deref(), Some(expected));
    }
}

#[tokio::test]
async fn edits_declared_after_init_are_refused() {
    let (gw, up) = with_chain(
        "[[routes.plugins]]\nplugin = \"testkit\"\nconfig = { mode = \"declare-late\" }\n",
    )
    .await;
    let seen = TestClient::default().get(&gw.url("/items/1")).await;
    assert_eq!(seen.status, 200);
    assert_eq!(
        String::from_utf8_lossy(&seen.body),
        "header edits are declared in `init` only"
    );
    assert_eq!(up.requests(), 0);
}

#[tokio::test]
async fn a_plugin_built_against_the_first_contract_runs_beside_newer_ones() {
    // contract-0-1-0 is built from gatehouse:plugin@0.1.0's WIT; transform
    // beside it declares edits, which came in 0.1.5.
    let first = "[[routes.plugins]]\nplugin = \"contract-0-1-0\"\n";
    let (gw, _up) = with_chain(&format!("{first}{}", declaring("d"))).await;
    let seen = TestClient::default().get(&gw.url("/items/1")).await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.upstream_header("x-contract").as_deref(), Some("0.1.0"));
    assert_eq!(
        seen.upstream_header("x-method-seen").as_deref(),
        Some("GET")
    );
    assert_eq!(seen.header("x-status-seen"), Some("200"));
    assert_eq!(seen.upstream_header("x-a").as_deref(), Some("d"));
    assert_eq!(seen.header("x-chain-response"), Some("d"));
}
