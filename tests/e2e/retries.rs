//! Retries on another target: on connect errors and chosen statuses, for
//! idempotent methods unless configured, a bounded number of times.

use gatehouse_tests::*;
use http::Method;

fn dead_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn gateway(targets: &str, retries: &str, route: &str) -> TestGateway {
    let toml = format!(
        "{SERVER}\n[upstreams.up]\ntargets = [{targets}]\nretries = {{ {retries} }}\n\
         [[routes]]\nname = \"{route}\"\npath = \"/*\"\nupstream = \"up\"\n"
    );
    TestGateway::start(&toml).await
}

#[tokio::test]
async fn a_connect_error_is_retried_on_another_target() {
    let live = Echo::bind("live", "127.0.0.1:0").await.unwrap();
    let targets = format!("\"{}\", \"{}\"", dead_addr(), live.addr);
    let gw = gateway(&targets, "attempts = 1", "retry-connect").await;
    let c = TestClient::default();
    for _ in 0..10 {
        let seen = c.get(&gw.url("/x")).await;
        assert_eq!(seen.status, 200);
        assert_eq!(seen.json()["service"], "live");
    }
    assert_eq!(live.requests(), 10);
}

#[tokio::test]
async fn a_listed_status_is_retried_and_others_are_not() {
    let flaky = JsonService::start("{}").await;
    flaky.set_status(503);
    let live = Echo::bind("live", "127.0.0.1:0").await.unwrap();
    let targets = format!("\"{}\", \"{}\"", flaky.addr, live.addr);
    let gw = gateway(&targets, "attempts = 1, on = [\"503\"]", "retry-status").await;
    let c = TestClient::default();
    for _ in 0..6 {
        assert_eq!(c.get(&gw.url("/x")).await.status, 200);
    }
    assert!(
        flaky.hits() >= 3,
        "the failing target was tried: {}",
        flaky.hits()
    );

    // 500 is not in the list: answered as it is.
    flaky.set_status(500);
    let statuses: Vec<u16> = statuses_of(&c, &gw, 6).await;
    assert!(statuses.contains(&500), "{statuses:?}");
}

async fn statuses_of(c: &TestClient, gw: &TestGateway, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(c.get(&gw.url("/x")).await.status.as_u16());
    }
    out
}

#[tokio::test]
async fn post_is_not_retried_unless_configured_and_then_its_body_is_sent_again() {
    let live = Echo::bind("live", "127.0.0.1:0").await.unwrap();
    let targets = format!("\"{}\", \"{}\"", dead_addr(), live.addr);
    let c = TestClient::default();

    let gw = gateway(&targets, "attempts = 1", "retry-no-post").await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            c.send(Method::POST, &gw.url("/x"), &[], "order")
                .await
                .status
                .as_u16(),
        );
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 502).count(),
        2,
        "{statuses:?}"
    );

    let gw = gateway(&targets, "attempts = 1, methods = [\"POST\"]", "retry-post").await;
    for _ in 0..4 {
        let seen = c.send(Method::POST, &gw.url("/x"), &[], "order").await;
        assert_eq!(seen.status, 200);
        assert_eq!(seen.json()["body"], "order", "the body is sent again");
    }
}

#[tokio::test]
async fn attempts_are_bounded() {
    let a = JsonService::start("{}").await;
    let b = JsonService::start("{}").await;
    a.set_status(503);
    b.set_status(503);
    let targets = format!("\"{}\", \"{}\"", a.addr, b.addr);
    let gw = gateway(&targets, "attempts = 3, backoff = \"1ms\"", "retry-bounded").await;
    let seen = TestClient::default().get(&gw.url("/x")).await;
    assert_eq!(seen.status, 503, "the last answer is passed on");
    assert_eq!(a.hits() + b.hits(), 4, "one try and three retries");
}

#[tokio::test]
async fn all_tries_share_the_upstream_timeout() {
    let a = Echo::bind("a", "127.0.0.1:0").await.unwrap();
    let b = Echo::bind("b", "127.0.0.1:0").await.unwrap();
    let toml = format!(
        "{SERVER}\n[upstreams.up]\ntargets = [\"{}\", \"{}\"]\ntimeout = \"300ms\"\n\
         retries = {{ attempts = 5, on = [\"timeout\"], backoff = \"1ms\" }}\n\
         [[routes]]\nname = \"retry-timeout\"\npath = \"/*\"\nupstream = \"up\"\n",
        a.addr, b.addr
    );
    let gw = TestGateway::start(&toml).await;
    let started = std::time::Instant::now();
    let seen = TestClient::default()
        .get_with(&gw.url("/x"), &[("x-echo-delay-ms", "2000")])
        .await;
    assert_error_body(&seen, 504);
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_millis(900),
        "five tries of 300 ms were not cut: {took:?}"
    );
    assert!(
        a.requests() + b.requests() <= 2,
        "no try starts once the time is spent"
    );
}
