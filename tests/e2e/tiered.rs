//! Tiered compilation: a plugin in no cache serves at once on baseline code,
//! inside the same sandbox limits, and moves to optimised code when the
//! background compile is done, its entries' counts carried over.

use gatehouse::Runtime;
use gatehouse_tests::*;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The admin API's list of loaded plugins.
async fn plugins(gw: &TestGateway) -> Value {
    let url = format!("http://{}/admin/plugins", gw.admin.expect("admin listener"));
    TestClient::default().get(&url).await.json()
}

/// `compiled_by` of each plugin, by name, from the admin API.
async fn compiled_by(gw: &TestGateway) -> Vec<(String, String)> {
    let seen = plugins(gw).await;
    let mut out: Vec<(String, String)> = seen["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .map(|p| {
            let name = p["name"].as_str().unwrap_or_default().to_owned();
            (
                name,
                p["compiled_by"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The admin API's view of the entry of `plugin` on `route`.
async fn entry(gw: &TestGateway, plugin: &str, route: &str) -> Value {
    let seen = plugins(gw).await;
    let entry = seen["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == plugin)
        .flat_map(|p| p["entries"].as_array().cloned().unwrap_or_default())
        .find(|e| e["route"] == route)
        .unwrap_or(Value::Null);
    assert!(entry.is_object(), "no entry of {plugin} on {route}: {seen}");
    entry
}

#[tokio::test]
async fn baseline_code_serves_inside_the_limits_until_optimised_code_takes_over() {
    let runtime = Arc::new(Runtime::tiered().expect("a tiered runtime"));
    runtime.hold_optimiser(true);
    let up = Echo::bind("up", "127.0.0.1:0").await.unwrap();
    let routes = r#"
[[routes]]
name = "spin"
path = "/spin/*"
upstream = "up"
[[routes.plugins]]
plugin = "testkit"
limits = { timeout = "50ms" }
config = { mode = "spin" }

[[routes]]
name = "bomb"
path = "/bomb/*"
upstream = "up"
[[routes.plugins]]
plugin = "testkit"
limits = { memory = "8MiB" }
config = { mode = "memory-bomb" }

[[routes]]
name = "healthy"
path = "/healthy/*"
upstream = "up"
[[routes.plugins]]
plugin = "add-header"
config = { name = "x-tier", value = "1" }
"#;
    let toml = echo_config(&up, "admin_listen = \"127.0.0.1:0\"", routes);
    let gw = TestGateway::start_on(&toml, &runtime).await;
    let baseline = vec![
        ("add-header".to_owned(), "baseline".to_owned()),
        ("testkit".to_owned(), "baseline".to_owned()),
    ];
    assert_eq!(compiled_by(&gw).await, baseline);

    // Baseline code is held to the same CPU deadline and memory cap.
    let c = TestClient::default();
    let started = Instant::now();
    assert_error_body(&c.get(&gw.url("/spin/x")).await, 503);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_error_body(&c.get(&gw.url("/bomb/x")).await, 503);
    for _ in 0..3 {
        let ok = c.get(&gw.url("/healthy/x")).await;
        assert_eq!(ok.status, 200);
        assert_eq!(ok.upstream_header("x-tier").as_deref(), Some("1"));
    }
    assert_eq!(compiled_by(&gw).await, baseline, "held: still baseline");

    assert_eq!(
        entry(&gw, "add-header", "healthy").await["warm_instances"],
        1
    );
    runtime.hold_optimiser(false);
    // Optimised, and the idle baseline instance dropped without waiting
    // for traffic.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now = compiled_by(&gw).await;
        let idle = entry(&gw, "add-header", "healthy").await["warm_instances"].clone();
        if now.iter().all(|(_, by)| by == "compiler") && idle == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never optimised: {now:?}, {idle} idle"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The same entries go on, now on optimised code, their counts kept.
    let ok = c.get(&gw.url("/healthy/x")).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.upstream_header("x-tier").as_deref(), Some("1"));
    let healthy = entry(&gw, "add-header", "healthy").await;
    assert_eq!(healthy["stats"]["calls"], 4);
    assert_eq!(healthy["warm_instances"], 1);
    let started = Instant::now();
    assert_error_body(&c.get(&gw.url("/spin/x")).await, 503);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_error_body(&c.get(&gw.url("/bomb/x")).await, 503);
    assert_eq!(up.requests(), 4);
}
