//! The quickstart config, as shipped, against echo services: every chain
//! of built-in plugins working together.

use gatehouse_tests::*;
use http::Method;
use std::path::Path;

const USER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsInJvbGUiOiJ1c2VyIiwiaXNzIjoiaHR0cHM6Ly9hdXRoLmdhdGVob3VzZS5leGFtcGxlIiwiZXhwIjo0MTAyNDQ0ODAwfQ.rF7a7xnCYJkFG0vOgyx4OrLZvO4-YjhTvaO-1KnM6sM";
const FINANCE: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJmaW9uYSIsInJvbGUiOiJmaW5hbmNlIiwiaXNzIjoiaHR0cHM6Ly9hdXRoLmdhdGVob3VzZS5leGFtcGxlIiwiZXhwIjo0MTAyNDQ0ODAwfQ.AZIGDmhQ3eDeCWtpMV4r1Nc38fVuIMGvaAHL-UIcu5E";

async fn quickstart() -> (TestGateway, Vec<Echo>) {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart/gatehouse.toml"),
    )
    .unwrap();
    let ups = echoes("qs", 4).await;
    let mut text = text
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"")
        .replace("plugins_dir = \"plugins\"", "plugins_dir = \"{plugins}\"");
    for (i, up) in ups.iter().enumerate() {
        text = text.replace(&format!("127.0.0.1:900{}", i + 1), &up.addr.to_string());
    }
    // Rate-limit counters and cache entries are keyed by route name in the
    // shared runtime: only this module's tests use the quickstart's routes.
    (TestGateway::start(&text).await, ups)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn the_users_route_runs_all_four_plugins() {
    let (gw, _ups) = quickstart().await;
    let c = TestClient::default();
    let auth = bearer(USER);
    let seen = c
        .get_with(&gw.url("/api/v1/users/42"), &[("authorization", &auth)])
        .await;
    assert_eq!(seen.status, 200);
    let j = seen.json();
    assert!(
        j["served_by"].as_str().unwrap().starts_with("qs-"),
        "renamed by transform: {j}"
    );
    assert_eq!(j["path"], "/users/42");
    assert_eq!(j["headers"]["x-user-id"], "alice");
    assert_eq!(j["headers"]["x-internal-request"], "true");
    assert!(j["headers"].get("user-agent").is_none());
    assert_eq!(seen.header("x-served-by"), Some("gatehouse"));
    assert_eq!(seen.header("ratelimit-limit"), Some("5"));
    assert_eq!(c.get(&gw.url("/api/v1/users/42")).await.status, 401);
}

#[tokio::test]
async fn payments_need_the_finance_role() {
    let (gw, _ups) = quickstart().await;
    let c = TestClient::default();
    let user = c
        .send(
            Method::POST,
            &gw.url("/api/payments"),
            &[("authorization", &bearer(USER))],
            "{}",
        )
        .await;
    assert_error_body(&user, 403);
    let finance = c
        .send(
            Method::POST,
            &gw.url("/api/payments"),
            &[("authorization", &bearer(FINANCE))],
            "{}",
        )
        .await;
    assert_eq!(finance.status, 200);
}

#[tokio::test]
async fn orders_need_a_key_and_are_cached_per_consumer() {
    let (gw, ups) = quickstart().await;
    let c = TestClient::default();
    assert_eq!(c.get(&gw.url("/api/orders/7")).await.status, 401);
    let key = [("x-api-key", "k-demo-123")];
    assert_eq!(
        c.get_with(&gw.url("/api/orders/7"), &key)
            .await
            .header("x-cache"),
        Some("MISS")
    );
    assert_eq!(
        c.get_with(&gw.url("/api/orders/7"), &key)
            .await
            .header("x-cache"),
        Some("HIT")
    );
    assert_eq!(ups[2].requests(), 1);
    let pre = c
        .send(
            Method::OPTIONS,
            &gw.url("/api/orders/7"),
            &[
                ("origin", "https://app.example.com"),
                ("access-control-request-method", "POST"),
            ],
            "",
        )
        .await;
    assert_eq!(pre.status, 204);
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
}
