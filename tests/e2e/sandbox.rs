//! Hostile plugins: each fails only its own requests.

use gatehouse::Runtime;
use gatehouse_tests::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A route whose plugin entry is `{hostile}` and a healthy one beside it.
const HOSTILE_AND_HEALTHY: &str = r#"
[[routes]]
name = "hostile"
path = "/hostile/*"
upstream = "up"
[[routes.plugins]]
plugin = "testkit"
{hostile}

[[routes]]
name = "healthy"
path = "/healthy/*"
upstream = "up"
[[routes.plugins]]
plugin = "add-header"
config = { name = "x-ok", value = "1" }
"#;

async fn two_routes(hostile: &str) -> (TestGateway, Echo) {
    gateway_to_echo(&HOSTILE_AND_HEALTHY.replace("{hostile}", hostile)).await
}

#[tokio::test]
async fn an_infinite_loop_is_stopped_at_its_deadline() {
    let (gw, up) =
        two_routes("limits = { timeout = \"50ms\" }\nconfig = { mode = \"spin\" }").await;
    let c = TestClient::default();
    let start = Instant::now();
    let seen = c.get(&gw.url("/hostile/x")).await;
    let took = start.elapsed();
    assert_error_body(&seen, 503);
    // Never before the deadline, and soon after it.
    assert!(
        took >= Duration::from_millis(50) && took < Duration::from_secs(2),
        "a 50ms deadline took {took:?}"
    );
    // The other route, and the gateway, carry on.
    let ok = c.get(&gw.url("/healthy/x")).await;
    assert_eq!(ok.status, 200);
    assert_eq!(up.requests(), 1);
}

#[tokio::test]
async fn a_deadline_holds_after_the_gateway_has_been_idle() {
    // A runtime of its own, so that no other test's calls keep its deadline
    // ticker awake.
    let runtime = Arc::new(Runtime::new().expect("plugin runtime starts"));
    let up = Echo::bind("up", "127.0.0.1:0").await.expect("bind echo");
    let routes = HOSTILE_AND_HEALTHY.replace(
        "{hostile}",
        "limits = { timeout = \"50ms\" }\nconfig = { mode = \"spin\" }",
    );
    let gw = TestGateway::start_on(&echo_config(&up, "", &routes), &runtime).await;
    // With no call for a while the ticker sleeps ...
    let deadline = Instant::now() + Duration::from_secs(10);
    while !runtime.services.ticker.is_asleep() {
        assert!(Instant::now() < deadline, "the idle ticker never slept");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ... and the next call wakes it: the loop still ends at its deadline.
    // Were it not to end, it would hold this test's thread for good, so a
    // watchdog fails the run instead.
    let stopped = Arc::new(AtomicBool::new(false));
    let watched = stopped.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(30));
        if !watched.load(Ordering::SeqCst) {
            eprintln!(
                "a looping plugin ran on after the gateway's idle time: its deadline was lost"
            );
            std::process::exit(101);
        }
    });
    let start = Instant::now();
    let seen = TestClient::default().get(&gw.url("/hostile/x")).await;
    stopped.store(true, Ordering::SeqCst);
    assert_error_body(&seen, 503);
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "a 50ms deadline took {took:?}"
    );
}

#[tokio::test]
async fn a_memory_bomb_is_refused_at_its_cap() {
    let (gw, _up) =
        two_routes("limits = { memory = \"8MiB\" }\nconfig = { mode = \"memory-bomb\" }").await;
    let c = TestClient::default();
    for _ in 0..3 {
        assert_error_body(&c.get(&gw.url("/hostile/x")).await, 503);
    }
    assert_eq!(c.get(&gw.url("/healthy/x")).await.status, 200);
}

/// Where the address space is limited (`ulimit -v`), the plugin memory
/// pool cannot be reserved: the gateway says so, serves anyway, and a
/// plugin's memory cap still holds.
#[tokio::test]
async fn with_a_limited_address_space_plugins_run_within_their_caps() {
    let up = Echo::bind("up", "127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.toml");
    let toml = format!(
        "{SERVER}\ncompile_cache = \"{}\"\n[upstreams.up]\ntargets = [\"{}\"]\n{}",
        dir.path().join("cache").display(),
        up.addr,
        HOSTILE_AND_HEALTHY.replace(
            "{hostile}",
            "limits = { memory = \"8MiB\" }\nconfig = { mode = \"memory-bomb\" }"
        )
    )
    .replace("{plugins}", &plugins_dir().display().to_string());
    std::fs::write(&path, toml).unwrap();
    // 2 GiB: far more than the gateway uses, far less than the pool reserves.
    let limited = ["sh", "-c", "ulimit -v 2097152 && exec \"$0\" \"$@\""];
    let mut gw = spawn_gatehouse_via(&limited, &path, &["--no-watch"]);
    let said = gw.log.iter().any(|line| {
        line["level"] == "WARN"
            && line["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("address space is limited"))
    });
    assert!(said, "no warning about the limit in {:?}", gw.log);
    let c = TestClient::default();
    for _ in 0..3 {
        assert_error_body(&c.get(&format!("http://{}/hostile/x", gw.addr)).await, 503);
    }
    let ok = c.get(&format!("http://{}/healthy/x", gw.addr)).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["headers"]["x-ok"], "1", "add-header ran");
    let _ = gw.child.kill();
    let _ = gw.child.wait();
}

#[tokio::test]
async fn an_instance_nearing_its_memory_cap_is_replaced_between_requests() {
    // 512 KiB kept per call: without replacement the 8 MiB cap is hit
    // within about fifteen requests and that request fails.
    let (gw, up) = two_routes(
        "limits = { memory = \"8MiB\", instances = 1 }\nconfig = { mode = \"grow\", kib = 512 }",
    )
    .await;
    let c = TestClient::default();
    for i in 0..60 {
        let seen = c.get(&gw.url("/hostile/x")).await;
        assert_eq!(
            seen.status,
            200,
            "request {i}: {}",
            String::from_utf8_lossy(&seen.body)
        );
    }
    assert_eq!(up.requests(), 60);
}

#[tokio::test]
async fn a_panic_fails_only_that_request_and_the_next_one_succeeds() {
    let (gw, up) = two_routes("config = { mode = \"panic-on\", path_contains = \"boom\" }").await;
    let c = TestClient::default();
    assert_error_body(&c.get(&gw.url("/hostile/boom")).await, 503);
    let next = c.get(&gw.url("/hostile/fine")).await;
    assert_eq!(next.status, 200, "a fresh instance serves the next request");
    assert_eq!(c.get(&gw.url("/hostile/boom")).await.status, 503);
    assert_eq!(c.get(&gw.url("/hostile/fine")).await.status, 200);
    assert_eq!(up.requests(), 2);
}

#[tokio::test]
async fn a_core_module_is_refused_at_load_with_its_file_named() {
    let dir = tempfile::tempdir().unwrap();
    // The smallest core wasm module: magic and version 1, no sections.
    std::fs::write(dir.path().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(dir.path().join("junk.wasm"), b"not wasm at all").unwrap();
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"
plugins_dir = "{}"
[upstreams.up]
targets = ["127.0.0.1:9"]
[[routes]]
name = "r"
path = "/*"
upstream = "up"
[[routes.plugins]]
plugin = "core"
[[routes.plugins]]
plugin = "junk"
"#,
        dir.path().display()
    );
    let err = TestGateway::try_start(&toml).await.err().expect("refused");
    assert!(
        err.contains("core.wasm: a core WebAssembly module, not a component"),
        "{err}"
    );
    assert!(err.contains("junk.wasm: not a WebAssembly file"), "{err}");
    assert!(
        err.contains("gatehouse.toml:12:10: route \"r\", plugin \"core\""),
        "{err}"
    );
}

#[tokio::test]
async fn a_plugin_refusing_its_config_is_reported_where_the_entry_stands() {
    let toml = r#"
[server]
listen = "127.0.0.1:0"
plugins_dir = "{plugins}"
[upstreams.up]
targets = ["127.0.0.1:9"]
[[routes]]
name = "r"
path = "/*"
upstream = "up"
[[routes.plugins]]
plugin = "add-header"
config = { name = "x-a" }
[[routes.plugins]]
plugin = "testkit"
config = { mode = "refuse-init", reason = "not today" }
"#;
    let err = TestGateway::try_start(toml).await.err().expect("refused");
    assert!(err.contains("gatehouse.toml:12:10: route \"r\", plugin \"add-header\": init failed: invalid config: missing field `value`"), "{err}");
    assert!(
        err.contains(
            "gatehouse.toml:15:10: route \"r\", plugin \"testkit\": init failed: not today"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_component_of_another_world_is_refused_at_load() {
    let toml = r#"
[server]
listen = "127.0.0.1:0"
plugins_dir = "{plugins}"
[upstreams.up]
targets = ["127.0.0.1:9"]
[[routes]]
name = "r"
path = "/*"
upstream = "up"
[[routes.plugins]]
plugin = "not-a-plugin"
"#;
    let err = TestGateway::try_start(toml).await.err().expect("refused");
    assert!(
        err.contains("not-a-plugin.wasm: not a plugin of the gatehouse:plugin@0.1.5 world"),
        "{err}"
    );
}

#[tokio::test]
async fn requests_wait_for_an_instance_when_the_entry_is_at_its_limit() {
    let (gw, up) = two_routes(
        "limits = { instances = 1, timeout = \"2s\" }\nconfig = { mode = \"busy\", ms = 300 }",
    )
    .await;
    let c = TestClient::default();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let (c, url) = (c.clone(), gw.url("/hostile/x"));
        tasks.push(tokio::spawn(async move { c.get(&url).await }));
    }
    for t in tasks {
        assert_eq!(
            t.await.unwrap().status,
            200,
            "a queued request is served, not failed"
        );
    }
    // One instance, 300 ms each: the three calls ran one after another.
    assert!(
        start.elapsed() >= Duration::from_millis(850),
        "took only {:?}",
        start.elapsed()
    );
    assert_eq!(up.requests(), 3);
}
