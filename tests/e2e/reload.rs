//! Config reload: the new config is checked whole before anything changes,
//! requests never fail across a swap, and state outlives it.

use gatehouse::Runtime;
use gatehouse_tests::*;
use std::sync::Arc;

fn config(up: &Echo, routes: &str) -> String {
    echo_config(up, "admin_listen = \"127.0.0.1:0\"", routes)
}

fn route(name: &str, path: &str, header_value: &str) -> String {
    format!(
        "[[routes]]\nname = \"{name}\"\npath = \"{path}\"\nupstream = \"up\"\n\
         [[routes.plugins]]\nplugin = \"add-header\"\nconfig = {{ name = \"x-version\", value = \"{header_value}\" }}\n"
    )
}

#[tokio::test]
async fn a_valid_config_is_swapped_in_and_an_invalid_one_changes_nothing() {
    let up = Echo::bind("up", "127.0.0.1:0").await.unwrap();
    let gw = TestGateway::start(&config(&up, &route("reload-a", "/a/*", "1"))).await;
    let c = TestClient::default();
    assert_eq!(c.get(&gw.url("/b/x")).await.status, 404);

    let two = format!(
        "{}{}",
        route("reload-a", "/a/*", "2"),
        route("reload-b", "/b/*", "2")
    );
    gw.rewrite(&config(&up, &two));
    assert_eq!(gw.reload().await, Ok(2));
    let seen = c.get(&gw.url("/b/x")).await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.upstream_header("x-version").as_deref(), Some("2"));
    assert_eq!(
        c.get(&gw.url("/a/x"))
            .await
            .upstream_header("x-version")
            .as_deref(),
        Some("2")
    );

    // Broken three ways: an unknown upstream, a config the plugin refuses,
    // and a listener change. Each is refused and the running config stays.
    let bad_upstream = two.replace("upstream = \"up\"", "upstream = \"gone\"");
    let bad_plugin = two.replace("name = \"x-version\", ", "");
    let moved =
        config(&up, &two).replace("127.0.0.1:0\"\nplugins_dir", "127.0.0.1:1\"\nplugins_dir");
    for (text, expected) in [
        (config(&up, &bad_upstream), "unknown upstream \"gone\""),
        (
            config(&up, &bad_plugin),
            "plugin \"add-header\": init failed",
        ),
        (moved, "server.listen cannot change without a restart"),
    ] {
        gw.rewrite(&text);
        let err = gw.reload().await.unwrap_err();
        assert!(err.contains(expected), "{expected}: {err}");
        let seen = c.get(&gw.url("/b/x")).await;
        assert_eq!(seen.upstream_header("x-version").as_deref(), Some("2"));
    }
}

#[tokio::test]
async fn twenty_reloads_under_load_fail_no_request() {
    let up = Echo::bind("up", "127.0.0.1:0").await.unwrap();
    let gw = TestGateway::start(&config(&up, &route("under-load", "/*", "0"))).await;
    let url = gw.url("/load");
    let load = Load::start(&url, 8);
    for i in 1..=20 {
        gw.rewrite(&config(&up, &route("under-load", "/*", &i.to_string())));
        assert_eq!(gw.reload().await, Ok(1), "reload {i}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (ok, failed) = load.stop().await;
    assert_eq!(failed, 0);
    assert!(ok > 100, "the load ran: {ok}");
    let last = TestClient::default().get(&url).await;
    assert_eq!(last.upstream_header("x-version").as_deref(), Some("20"));
}

#[tokio::test]
async fn rate_limit_counters_survive_a_reload() {
    let up = Echo::bind("up", "127.0.0.1:0").await.unwrap();
    let limited = "[[routes]]\nname = \"survivor\"\npath = \"/*\"\nupstream = \"up\"\n\
         [[routes.plugins]]\nplugin = \"rate-limit\"\nconfig = { limit = 3, window = \"1h\", key = \"route\" }\n";
    let gw = TestGateway::start(&config(&up, limited)).await;
    let c = TestClient::default();
    for _ in 0..3 {
        assert_eq!(c.get(&gw.url("/x")).await.status, 200);
    }
    let more = format!("{limited}{}", route("survivor-extra", "/extra/*", "1"));
    gw.rewrite(&config(&up, &more));
    assert_eq!(gw.reload().await, Ok(2));
    assert_eq!(c.get(&gw.url("/x")).await.status, 429, "the count went on");
}

#[tokio::test]
async fn the_admin_api_reloads_and_reports_refusals() {
    let up = Echo::bind("up", "127.0.0.1:0").await.unwrap();
    let gw = TestGateway::start(&config(&up, &route("admin-reload", "/*", "1"))).await;
    let admin = format!("http://{}/admin/reload", gw.admin.unwrap());
    let c = TestClient::default();

    gw.rewrite(&config(&up, &route("admin-reload", "/*", "2")));
    let seen = c.send(http::Method::POST, &admin, &[], "").await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.json()["status"], "reloaded");
    assert_eq!(
        c.get(&gw.url("/x"))
            .await
            .upstream_header("x-version")
            .as_deref(),
        Some("2")
    );

    gw.rewrite(&config(
        &up,
        "[[routes]]\nname = \"broken\"\npath = \"no-slash\"\nupstream = \"up\"\n",
    ));
    let seen = c.send(http::Method::POST, &admin, &[], "").await;
    assert_eq!(seen.status, 422);
    let errors = seen.json()["errors"].to_string();
    assert!(errors.contains("invalid path \\\"no-slash\\\""), "{errors}");
    assert_eq!(
        c.get(&gw.url("/x")).await.status,
        200,
        "the old config serves"
    );

    assert_eq!(c.get(&admin).await.status, 405);
    let metrics = c
        .get(&format!("http://{}/metrics", gw.admin.unwrap()))
        .await;
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    assert!(
        text.contains("gatehouse_reloads_total{result=\"success\"}"),
        "{text}"
    );
    assert!(
        text.contains("gatehouse_reloads_total{result=\"failure\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn sighup_reloads_the_running_binary() {
    let up = Echo::bind("up", "127.0.0.1:0").await.unwrap();
    let (mut child, addr, dir) = crate::shutdown::spawn(&up, "");
    let path = dir.path().join("gatehouse.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        format!("{text}[[routes.plugins]]\nplugin = \"add-header\"\nconfig = {{ name = \"x-version\", value = \"hup\" }}\n"),
    )
    .unwrap();
    crate::shutdown::signal(&child, "-HUP");
    let c = TestClient::default();
    let url = format!("http://{addr}/x");
    let mut version = None;
    for _ in 0..200 {
        version = c.get(&url).await.upstream_header("x-version");
        if version.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(version.as_deref(), Some("hup"));
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn an_open_breaker_stays_open_across_a_reload() {
    let up = Echo::bind("up", "127.0.0.1:0").await.unwrap();
    let toml = |extra: &str| {
        format!(
            "{SERVER}\n[upstreams.breaker-reload-up]\ntargets = [\"{}\"]\n\
             [[routes]]\nname = \"breaker-reload\"\npath = \"/*\"\nupstream = \"breaker-reload-up\"\n\
             [[routes.plugins]]\nplugin = \"circuit-breaker\"\nconfig = {{ failure_threshold = 2, open_for = \"1h\" }}\n{extra}",
            up.addr
        )
    };
    let gw = TestGateway::start(&toml("")).await;
    let c = TestClient::default();
    for _ in 0..2 {
        let seen = c.get_with(&gw.url("/x"), &[("x-echo-status", "500")]).await;
        assert_eq!(seen.status, 500);
    }
    assert_eq!(c.get(&gw.url("/x")).await.status, 503);
    let extra = route("breaker-reload-extra", "/extra/*", "1")
        .replace("upstream = \"up\"", "upstream = \"breaker-reload-up\"");
    gw.rewrite(&toml(&extra));
    assert_eq!(gw.reload().await, Ok(2));
    let seen = c.get(&gw.url("/x")).await;
    assert_eq!(seen.status, 503);
    assert_eq!(seen.json()["error"], "circuit breaker open");
    assert_eq!(
        up.requests(),
        2,
        "the upstream was not contacted while open"
    );
}

#[tokio::test]
async fn requests_are_served_while_a_reload_compiles() {
    let up = Echo::bind("up", "127.0.0.1:0").await.unwrap();
    // A runtime of its own: the reload's plugin is in no cache, so it is
    // compiled, on the test's one thread unless the reload hands it off.
    let runtime = Arc::new(Runtime::new().expect("plugin runtime starts"));
    let plain = "[[routes]]\nname = \"plain\"\npath = \"/plain/*\"\nupstream = \"up\"\n";
    let gw = Arc::new(TestGateway::start_on(&config(&up, plain), &runtime).await);
    let guarded = format!(
        "{plain}[[routes]]\nname = \"guarded\"\npath = \"/guarded/*\"\nupstream = \"up\"\n\
         [[routes.plugins]]\nplugin = \"jwt-auth\"\nconfig = {{ secret = \"change-me\", algorithms = [\"HS256\"] }}\n"
    );
    gw.rewrite(&config(&up, &guarded));
    let reload = tokio::spawn({
        let gw = gw.clone();
        async move { gw.reload().await }
    });
    let seen = TestClient::default().get(&gw.url("/plain/x")).await;
    assert_eq!(seen.status, 200);
    assert!(
        !reload.is_finished(),
        "the request was answered only after the reload had compiled jwt-auth"
    );
    assert_eq!(reload.await.expect("reload task"), Ok(2));
    let seen = TestClient::default().get(&gw.url("/guarded/x")).await;
    assert_eq!(seen.status, 401, "jwt-auth now guards the new route");
}
