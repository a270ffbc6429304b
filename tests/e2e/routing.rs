use gatehouse_tests::*;
use http::Method;

async fn gateway_with_routes() -> (TestGateway, Vec<Echo>) {
    let ups = echoes("svc", 5).await;
    let toml = format!(
        r#"
{SERVER}

[upstreams.health]
targets = ["{}"]
[upstreams.user]
targets = ["{}"]
[upstreams.users]
targets = ["{}"]
[upstreams.orders]
targets = ["{}"]
[upstreams.orders2]
targets = ["{}"]

[[routes]]
name = "health"
path = "/health"
upstream = "health"

[[routes]]
name = "user"
path = "/api/v1/users/{{id}}"
methods = ["GET", "PUT"]
upstream = "user"

[[routes]]
name = "users"
path = "/api/v1/users/*"
methods = ["GET", "POST"]
upstream = "users"
strip_prefix = "/api/v1"

[[routes]]
name = "orders"
path = "/api/orders/*"
upstream = "orders"

[[routes]]
name = "orders-v2"
path = "/api/orders/*"
headers = {{ "accept-version" = "2" }}
upstream = "orders2"
"#,
        ups[0].addr, ups[1].addr, ups[2].addr, ups[3].addr, ups[4].addr
    );
    (TestGateway::start(&toml).await, ups)
}

#[tokio::test]
async fn routes_by_exact_param_and_wildcard_paths() {
    let (gw, _ups) = gateway_with_routes().await;
    let c = TestClient::default();

    let health = c.get(&gw.url("/health")).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["service"], "svc-0");

    let user = c.get(&gw.url("/api/v1/users/42?full=1")).await;
    assert_eq!(
        user.json()["service"],
        "svc-1",
        "a {{param}} beats the tail wildcard"
    );
    assert_eq!(user.json()["path"], "/api/v1/users/42");
    assert_eq!(user.json()["query"], "full=1");

    let nested = c.get(&gw.url("/api/v1/users/42/orders")).await;
    assert_eq!(nested.json()["service"], "svc-2");
    assert_eq!(
        nested.json()["path"],
        "/users/42/orders",
        "strip_prefix removed /api/v1"
    );
}

#[tokio::test]
async fn a_header_match_selects_the_versioned_route() {
    let (gw, _ups) = gateway_with_routes().await;
    let c = TestClient::default();
    assert_eq!(
        c.get(&gw.url("/api/orders/1")).await.json()["service"],
        "svc-3"
    );
    let v2 = c
        .get_with(&gw.url("/api/orders/1"), &[("accept-version", "2")])
        .await;
    assert_eq!(v2.json()["service"], "svc-4");
}

#[tokio::test]
async fn method_falls_back_to_a_less_specific_route_then_405_with_allow() {
    let (gw, _ups) = gateway_with_routes().await;
    let c = TestClient::default();
    // POST is not allowed on /users/{id} but is on /users/*.
    let post = c
        .send(Method::POST, &gw.url("/api/v1/users/42"), &[], "{}")
        .await;
    assert_eq!(post.json()["service"], "svc-2");

    let del = c
        .send(Method::DELETE, &gw.url("/api/v1/users/42"), &[], "")
        .await;
    assert_error_body(&del, 405);
    assert_eq!(del.header("allow"), Some("GET, POST, PUT"));
}

#[tokio::test]
async fn unknown_paths_get_a_404_json_body() {
    let (gw, ups) = gateway_with_routes().await;
    let seen = TestClient::default().get(&gw.url("/nowhere")).await;
    assert_error_body(&seen, 404);
    assert!(
        ups.iter().all(|u| u.requests() == 0),
        "no upstream was called"
    );
}
