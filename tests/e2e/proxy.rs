use gatehouse_tests::*;
use hyper::Method;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn one_route(targets: &str, extra_upstream: &str, extra_server: &str) -> String {
    format!(
        r#"
{SERVER}
{extra_server}

[upstreams.app]
targets = [{targets}]
{extra_upstream}

[[routes]]
name = "app"
path = "/*"
upstream = "app"
"#
    )
}

#[tokio::test]
async fn round_robin_spreads_evenly_over_three_targets() {
    let ups = echoes("rr", 3).await;
    let gw = TestGateway::start(&one_route(&targets(&ups), "", "")).await;
    let c = TestClient::default();
    for _ in 0..30 {
        assert_eq!(c.get(&gw.url("/x")).await.status, 200);
    }
    let counts: Vec<usize> = ups.iter().map(Echo::requests).collect();
    assert_eq!(counts, vec![10, 10, 10]);
}

#[tokio::test]
async fn upstream_connections_are_reused() {
    let ups = echoes("pool", 1).await;
    let gw = TestGateway::start(&one_route(&targets(&ups), "", "")).await;
    let c = TestClient::default();
    for _ in 0..50 {
        assert_eq!(c.get(&gw.url("/x")).await.status, 200);
    }
    assert_eq!(ups[0].requests(), 50);
    assert!(
        ups[0].connections() <= 2,
        "50 sequential requests used {} upstream connections",
        ups[0].connections()
    );
}

/// Waits up to five seconds for `ok`.
async fn eventually(mut ok: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ok()
}

#[tokio::test]
async fn idle_upstream_connections_close_at_the_idle_timeout() {
    let ups = echoes("idle", 1).await;
    let gw = TestGateway::start(&one_route(&targets(&ups), "idle_timeout = \"300ms\"", "")).await;
    let c = TestClient::default();
    assert_eq!(c.get(&gw.url("/x")).await.status, 200);
    let kept_at = Instant::now();
    assert_eq!(ups[0].open_connections(), 1, "kept for the next request");
    assert!(
        eventually(|| ups[0].open_connections() == 0).await,
        "the idle connection is still open {:?} later",
        kept_at.elapsed()
    );
    assert!(
        kept_at.elapsed() >= Duration::from_millis(250),
        "closed after {:?}, before the idle timeout",
        kept_at.elapsed()
    );
    // The next request opens a new connection and is served.
    assert_eq!(c.get(&gw.url("/x")).await.status, 200);
    assert_eq!(ups[0].connections(), 2);
}

#[tokio::test]
async fn no_more_than_max_idle_per_target_connections_are_kept() {
    let ups = echoes("cap", 1).await;
    let gw = TestGateway::start(&one_route(&targets(&ups), "max_idle_per_target = 2", "")).await;
    let c = TestClient::default();
    // Eight at once, each held 200 ms by the upstream: eight connections.
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (c, url) = (c.clone(), gw.url("/x"));
        all.spawn(async move { c.get_with(&url, &[("x-echo-delay-ms", "200")]).await });
    }
    while let Some(seen) = all.join_next().await {
        assert_eq!(seen.expect("request task").status, 200);
    }
    assert_eq!(ups[0].connections(), 8);
    assert!(
        eventually(|| ups[0].open_connections() == 2).await,
        "{} upstream connections open, expected the 2 kept idle",
        ups[0].open_connections()
    );
    // The kept ones serve what comes next.
    for _ in 0..4 {
        assert_eq!(c.get(&gw.url("/x")).await.status, 200);
    }
    assert_eq!(ups[0].connections(), 8);
}

/// A target that answers each connection's first request with keep-alive
/// and then closes the connection (as servers do at their own idle
/// timeout). Counts the connections it accepted.
async fn closing_target() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok",
                    )
                    .await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            });
        }
    });
    (format!("\"{addr}\""), accepted)
}

#[tokio::test]
async fn a_connection_the_target_closed_while_idle_is_not_used() {
    let (target, accepted) = closing_target().await;
    let gw = TestGateway::start(&one_route(&target, "", "")).await;
    let c = TestClient::default();
    for i in 1..=5 {
        let seen = c.get(&gw.url("/x")).await;
        assert_eq!(seen.status, 200, "request {i}: {:?}", seen.body);
        assert_eq!(&seen.body[..], b"ok");
        // The target closes the connection the gateway kept.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn large_bodies_stream_both_ways() {
    let (gw, _up) = gateway_to_echo(
        r#"[[routes]]
name = "app"
path = "/*"
upstream = "up""#,
    )
    .await;
    let c = TestClient::default();
    // 3 MiB up; the echo answers with it inside its JSON, so more comes back.
    let body = "a".repeat(3 * 1024 * 1024);
    for _ in 0..3 {
        let seen = c.send(Method::POST, &gw.url("/upload"), &[], &body).await;
        assert_eq!(seen.status, 200);
        assert!(
            seen.body.len() > body.len(),
            "{} bytes back",
            seen.body.len()
        );
        let json = seen.json();
        assert_eq!(json["body_length"], body.len());
        assert_eq!(json["body"].as_str().map(str::len), Some(body.len()));
    }
}

#[tokio::test]
async fn the_upstream_sees_its_own_authority_as_host() {
    let ups = echoes("host", 1).await;
    let gw = TestGateway::start(&one_route(&targets(&ups), "", "")).await;
    let seen = TestClient::default()
        .get_with(&gw.url("/x"), &[("host", "api.example.com")])
        .await;
    assert_eq!(seen.status, 200);
    assert_eq!(
        seen.upstream_header("host").as_deref(),
        Some(ups[0].addr.to_string().as_str())
    );
    assert_eq!(
        seen.upstream_header("x-forwarded-host").as_deref(),
        Some("api.example.com")
    );
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_and_forwarding_headers_set() {
    let ups = echoes("hop", 1).await;
    let gw = TestGateway::start(&one_route(&targets(&ups), "", "")).await;
    let seen = TestClient::default()
        .get_with(
            &gw.url("/x"),
            &[
                ("connection", "keep-alive, x-private"),
                ("x-private", "secret"),
                ("keep-alive", "timeout=5"),
                ("te", "trailers"),
                ("x-forwarded-for", "203.0.113.7"),
                ("host", "api.example.com"),
                ("x-kept", "yes"),
            ],
        )
        .await;
    let h = &seen.json()["headers"];
    for gone in ["x-private", "keep-alive", "te"] {
        assert!(h.get(gone).is_none(), "{gone} reached the upstream: {h}");
    }
    assert_eq!(h["x-kept"], "yes");
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(h["x-forwarded-host"], "api.example.com");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(
        h["host"],
        ups[0].addr.to_string(),
        "upstream sees its own host"
    );
}

#[tokio::test]
async fn request_ids_are_generated_or_kept_and_returned() {
    let ups = echoes("rid", 1).await;
    let gw = TestGateway::start(&one_route(&targets(&ups), "", "")).await;
    let c = TestClient::default();
    let seen = c.get(&gw.url("/x")).await;
    let id = seen
        .header("x-request-id")
        .expect("generated id returned")
        .to_owned();
    assert_eq!(id.len(), 32);
    assert_eq!(
        seen.upstream_header("x-request-id").as_deref(),
        Some(id.as_str())
    );
    let given = c
        .get_with(&gw.url("/x"), &[("x-request-id", "abc-123")])
        .await;
    assert_eq!(given.header("x-request-id"), Some("abc-123"));
    assert_eq!(
        given.upstream_header("x-request-id").as_deref(),
        Some("abc-123")
    );
}

#[tokio::test]
async fn a_dead_target_answers_502_json() {
    // Bind then drop a listener: nothing listens on that port now.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = TestGateway::start(&one_route(&format!("\"{dead}\""), "", "")).await;
    assert_error_body(&TestClient::default().get(&gw.url("/x")).await, 502);
}

#[tokio::test]
async fn a_slow_upstream_answers_504_json_at_the_timeout() {
    let ups = echoes("slow", 1).await;
    let gw = TestGateway::start(&one_route(&targets(&ups), "timeout = \"200ms\"", "")).await;
    let start = Instant::now();
    let seen = TestClient::default()
        .get_with(&gw.url("/x"), &[("x-echo-delay-ms", "3000")])
        .await;
    assert_error_body(&seen, 504);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let ups = echoes("big", 1).await;
    let gw = TestGateway::start(&one_route(
        &targets(&ups),
        "",
        "max_header_size = \"16KiB\"",
    ))
    .await;
    let huge = "a".repeat(32 * 1024);
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(format!("GET /x HTTP/1.1\r\nhost: a\r\nx-big: {huge}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 431"), "got: {head}");
    assert_eq!(ups[0].requests(), 0);
}

#[tokio::test]
async fn a_client_trickling_headers_is_dropped() {
    let ups = echoes("trickle", 1).await;
    let gw = TestGateway::start(&one_route(
        &targets(&ups),
        "",
        "header_read_timeout = \"300ms\"",
    ))
    .await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nhost: a\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let mut buf = vec![0u8; 1024];
    // The gateway gives up on the head and closes (possibly after a 408).
    let result = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(result.is_ok(), "connection still open after 5s");
    assert!(start.elapsed() >= Duration::from_millis(250));
    assert_eq!(ups[0].requests(), 0);
}

#[tokio::test]
async fn hop_by_hop_headers_from_the_upstream_do_not_reach_the_client() {
    let ups = echoes("hop-back", 1).await;
    let gw = TestGateway::start(&one_route(&targets(&ups), "", "")).await;
    let seen = TestClient::default()
        .get_with(
            &gw.url("/x"),
            &[
                ("x-echo-header", "connection: x-internal"),
                ("x-echo-header", "x-internal: upstream-only"),
                ("x-echo-header", "keep-alive: timeout=99"),
                ("x-echo-header", "x-public: yes"),
            ],
        )
        .await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.header("x-public"), Some("yes"));
    assert_eq!(seen.header("x-internal"), None);
    assert_eq!(seen.header("keep-alive"), None);
}

#[tokio::test]
async fn least_connections_avoids_the_busy_target() {
    let ups = echoes("lc", 2).await;
    let gw = TestGateway::start(&one_route(
        &targets(&ups),
        "balance = \"least-connections\"",
        "",
    ))
    .await;
    let c = TestClient::default();
    let slow = {
        let (c, url) = (c.clone(), gw.url("/slow"));
        tokio::spawn(async move { c.get_with(&url, &[("x-echo-delay-ms", "1500")]).await })
    };
    // Wait until the slow request has reached its target.
    let start = Instant::now();
    while ups.iter().map(Echo::requests).sum::<usize>() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "slow request never arrived"
        );
        tokio::task::yield_now().await;
    }
    let busy = ups.iter().position(|u| u.requests() == 1).unwrap();
    for _ in 0..6 {
        let seen = c.get(&gw.url("/quick")).await;
        assert_ne!(
            seen.json()["service"],
            ups[busy].name.as_str(),
            "went to the busy target"
        );
    }
    assert_eq!(slow.await.unwrap().status, 200);
}
