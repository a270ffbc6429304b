//! Graceful shutdown of the real binary on SIGTERM: requests in flight
//! finish, new connections are refused, idle keep-alive connections do not
//! hold it up, and `server.shutdown_timeout` bounds the wait.

use gatehouse_tests::*;
use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The gatehouse binary serving `server_extra` + a route to `up`, and the
/// address it reported when ready.
pub(crate) fn spawn(up: &Echo, server_extra: &str) -> (Child, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.toml");
    let toml = format!(
        "{SERVER}\n{server_extra}\n[upstreams.up]\ntargets = [\"{}\"]\n\
         [[routes]]\nname = \"all\"\npath = \"/*\"\nupstream = \"up\"\n",
        up.addr
    )
    .replace("{plugins}", &plugins_dir().display().to_string());
    std::fs::write(&path, toml).unwrap();
    let Spawned { child, addr, .. } = spawn_gatehouse(&path, &[]);
    (child, addr, dir)
}

fn sigterm(child: &Child) {
    signal(child, "-TERM");
}

/// Sends a signal (`-TERM`, `-HUP`) to the gateway process.
pub(crate) fn signal(child: &Child, which: &str) {
    let ok = Command::new("kill")
        .args([which, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {which}");
}

/// Waits for the process to exit, at most `limit`.
fn exit_within(child: &mut Child, limit: Duration) -> (i32, Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code().unwrap_or(-1), started.elapsed());
        }
        assert!(started.elapsed() < limit, "still running after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn sigterm_lets_the_request_in_flight_finish_and_refuses_new_connections() {
    let up = Echo::bind("up", "127.0.0.1:0").await.unwrap();
    let (mut child, addr, _dir) = spawn(&up, "");
    let url = format!("http://{addr}/slow");

    // An idle keep-alive connection must not hold the shutdown up.
    let idle = TestClient::default();
    assert_eq!(idle.get(&url).await.status, 200);

    let slow = tokio::spawn(async move {
        TestClient::default()
            .get_with(&url, &[("x-echo-delay-ms", "800")])
            .await
    });
    while up.requests() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sigterm(&child);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(
        refused.is_err(),
        "a new connection was accepted during shutdown"
    );

    let seen = slow.await.unwrap();
    assert_eq!(seen.status, 200, "the request in flight finished");
    let (code, _) = exit_within(&mut child, Duration::from_secs(10));
    assert_eq!(code, 0);
}

#[tokio::test]
async fn the_shutdown_timeout_bounds_the_wait_for_slow_requests() {
    let up = Echo::bind("up", "127.0.0.1:0").await.unwrap();
    let (mut child, addr, _dir) = spawn(&up, "shutdown_timeout = \"300ms\"");
    let url = format!("http://{addr}/slow");
    let slow = tokio::spawn(async move {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<bytes::Bytes>>();
        let req = http::Request::get(url.as_str())
            .header("x-echo-delay-ms", "5000")
            .body(http_body_util::Empty::new())
            .unwrap();
        client.request(req).await.map(|r| r.status())
    });
    while up.requests() < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sigterm(&child);
    let (code, took) = exit_within(&mut child, Duration::from_secs(4));
    assert_eq!(code, 0);
    assert!(
        took < Duration::from_secs(2),
        "waited {took:?} for a 300ms timeout"
    );
    assert!(slow.await.unwrap().is_err(), "the slow request was cut off");
}
