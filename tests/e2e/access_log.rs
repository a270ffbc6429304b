//! The access log: one line per request, JSON or text, with the route,
//! target, status, timings, each plugin's time, and who answered.

use gatehouse::access_log::{AccessLog, Format};
use gatehouse_tests::*;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const ROUTES: &str = "[[routes]]\nname = \"logged\"\npath = \"/api/*\"\nupstream = \"up\"\n\
     [[routes.plugins]]\nplugin = \"add-header\"\nconfig = { name = \"x-a\", value = \"1\" }\n\
     [[routes.plugins]]\nplugin = \"testkit\"\nconfig = { mode = \"trace\", label = \"t\" }\n\
     [[routes]]\nname = \"answered\"\npath = \"/teapot\"\nupstream = \"up\"\n\
     [[routes.plugins]]\nplugin = \"testkit\"\nconfig = { mode = \"respond\", status = 418, body = \"no\" }\n";

async fn logged(format: Format, file: &Path) -> (TestGateway, Echo) {
    let up = Echo::bind("up", "127.0.0.1:0").await.unwrap();
    let toml = format!(
        "{SERVER}\n[upstreams.up]\ntargets = [\"{}\"]\n{ROUTES}",
        up.addr
    );
    let log = AccessLog::open(file.to_str().unwrap(), format).unwrap();
    (TestGateway::start_logged(&toml, log).await, up)
}

/// The file's lines once it has `n` (the writer is its own thread).
async fn lines(file: &Path, n: usize) -> Vec<String> {
    for _ in 0..200 {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("fewer than {n} lines in {}", file.display());
}

#[tokio::test]
async fn json_lines_carry_route_target_status_timings_and_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("access.log");
    let (gw, up) = logged(Format::Json, &file).await;
    let c = TestClient::default();
    let ok = c
        .get_with(&gw.url("/api/users?x=1"), &[("x-request-id", "req-one")])
        .await;
    assert_eq!(ok.status, 200);
    assert_eq!(c.get(&gw.url("/teapot")).await.status, 418);
    assert_eq!(c.get(&gw.url("/nowhere")).await.status, 404);

    let lines = lines(&file, 3).await;
    let v: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first = &v[0];
    assert_eq!(first["request_id"], "req-one");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/api/users");
    assert_eq!(first["route"], "logged");
    assert_eq!(first["target"], up.addr.to_string());
    assert_eq!(first["status"], 200);
    assert_eq!(first["bytes"], ok.body.len());
    assert!(first["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    assert!(first["upstream_us"].as_u64().unwrap() <= first["total_us"].as_u64().unwrap());
    let calls: Vec<(String, String)> = first["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["plugin"].as_str().unwrap().to_owned(),
                p["phase"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("add-header", "request"),
        ("testkit", "request"),
        ("testkit", "response"),
    ]
    .map(|(p, s)| (p.to_owned(), s.to_owned()));
    assert_eq!(calls, expected, "calls in order, response phase in reverse");
    assert!(first["answered_by"].is_null());

    let teapot = &v[1];
    assert_eq!(teapot["status"], 418);
    assert_eq!(teapot["answered_by"], "testkit");
    assert!(teapot["target"].is_null() && teapot["upstream_us"].is_null());

    let missing = &v[2];
    assert_eq!(missing["status"], 404);
    assert!(missing["route"].is_null());
    assert_eq!(up.requests(), 1);
}

#[tokio::test]
async fn text_lines_are_one_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("access.log");
    let (gw, up) = logged(Format::Text, &file).await;
    let c = TestClient::default();
    c.get_with(&gw.url("/api/a"), &[("x-request-id", "req-text")])
        .await;
    c.get(&gw.url("/teapot")).await;
    let lines = lines(&file, 2).await;
    let first = &lines[0];
    assert!(first.contains(" req-text 127.0.0.1:"), "{first}");
    assert!(first.contains("\"GET /api/a\" 200 route=logged"), "{first}");
    assert!(first.contains(&format!("target={}", up.addr)), "{first}");
    assert!(first.contains("plugins=add-header:request:"), "{first}");
    assert!(first.ends_with("answered_by=-"), "{first}");
    assert!(
        lines[1].contains("\"GET /teapot\" 418 route=answered target=- "),
        "{}",
        lines[1]
    );
    assert!(lines[1].ends_with("answered_by=testkit"), "{}", lines[1]);
}
