//! A plugin written in JavaScript with the JavaScript SDK
//! (`examples/js-plugin`, canary-router), built by `gatehouse plugin build`
//! (componentize-js) and served by the real gateway; and the SDK's list
//! calls and declared edits, through `tests/fixtures/js-set-headers`.

use gatehouse_tests::*;
use std::collections::HashMap;
use std::sync::LazyLock;

static BUILT: LazyLock<BuiltExample> =
    LazyLock::new(|| BuiltExample::build("js-plugin", "canary-router"));

static SET_HEADERS: LazyLock<BuiltExample> =
    LazyLock::new(|| BuiltExample::fixture("js-set-headers", "set-headers-js"));

async fn get(gw: &TestGateway, headers: &[(&str, &str)]) -> Seen {
    TestClient::default().get_with(&gw.url("/"), headers).await
}

#[tokio::test]
async fn a_new_client_is_given_a_side_and_a_cookie_to_keep_it() {
    let (gw, _up) = BUILT.gateway("", "{ percent = 100 }").await.unwrap();
    let seen = get(&gw, &[]).await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.upstream_header("x-canary").as_deref(), Some("canary"));
    assert_eq!(
        seen.header("set-cookie"),
        Some("canary=canary; Path=/; Max-Age=86400; HttpOnly")
    );

    let (gw, _up) = BUILT.gateway("", "{ percent = 0 }").await.unwrap();
    let seen = get(&gw, &[]).await;
    assert_eq!(seen.upstream_header("x-canary").as_deref(), Some("stable"));
    assert_eq!(
        seen.header("set-cookie"),
        Some("canary=stable; Path=/; Max-Age=86400; HttpOnly")
    );
}

#[tokio::test]
async fn the_cookie_keeps_a_client_on_its_side_and_the_header_overrides_it() {
    let (gw, _up) = BUILT.gateway("", "{ percent = 0 }").await.unwrap();
    // Sticky: a canary client stays on the canary while percent is 0.
    let seen = get(&gw, &[("cookie", "theme=dark; canary=canary")]).await;
    assert_eq!(seen.upstream_header("x-canary").as_deref(), Some("canary"));
    assert_eq!(
        seen.header("set-cookie"),
        None,
        "the cookie already says so"
    );
    // A tester forces a side; the cookie follows the forced side.
    let seen = get(&gw, &[("cookie", "canary=canary"), ("x-canary", "never")]).await;
    assert_eq!(seen.upstream_header("x-canary").as_deref(), Some("stable"));
    assert_eq!(
        seen.header("set-cookie"),
        Some("canary=stable; Path=/; Max-Age=86400; HttpOnly")
    );
}

#[tokio::test]
async fn clients_are_spread_by_address_and_each_keeps_its_side() {
    // The test client plays a trusted load balancer naming 200 clients.
    let (gw, _up) = BUILT
        .gateway(r#"trusted_proxies = ["127.0.0.1"]"#, "{ percent = 50 }")
        .await
        .unwrap();
    let mut sides = HashMap::new();
    for i in 0..200 {
        let ip = format!("10.0.{}.{}", i / 250, i % 250 + 1);
        let seen = get(&gw, &[("x-forwarded-for", &ip)]).await;
        let side = seen.upstream_header("x-canary").expect("a side");
        sides.insert(ip, side);
    }
    let canary = sides.values().filter(|s| *s == "canary").count();
    assert!(
        (60..=140).contains(&canary),
        "{canary} of 200 on the canary at 50 %"
    );
    for (ip, side) in sides.iter().take(20) {
        let again = get(&gw, &[("x-forwarded-for", ip)]).await;
        assert_eq!(
            again.upstream_header("x-canary").as_ref(),
            Some(side),
            "{ip}"
        );
    }
}

#[tokio::test]
async fn a_bad_config_is_refused_naming_route_plugin_and_field() {
    let err = BUILT
        .gateway("", "{ percent = 150 }")
        .await
        .err()
        .expect("refused");
    assert!(
        err.contains("route \"canary-router\", plugin \"canary-router\": init failed: `percent` must be a whole number from 0 to 100"),
        "{err}"
    );
    let err = BUILT
        .gateway("", r#"{ cookie = "a b" }"#)
        .await
        .err()
        .expect("refused");
    assert!(
        err.contains("`cookie` must be a plain cookie name"),
        "{err}"
    );
}

#[tokio::test]
async fn set_headers_takes_pairs_or_a_table_and_refuses_a_bad_list_whole() {
    assert_list_calls(&SET_HEADERS).await;
}

#[tokio::test]
async fn declared_edits_are_made_before_the_hooks_and_checked_at_init() {
    assert_declared_edits(&SET_HEADERS).await;
}
