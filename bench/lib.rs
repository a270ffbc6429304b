//! Shared set-up for the micro-benchmarks.

use gatehouse::config::{Limits, OnError, PluginEntry};
use gatehouse::plugin::{Chain, ContextRes, EntryPool, RequestRes, Runtime};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The folder `cargo xtask plugins` fills.
pub fn plugins_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins");
    assert!(
        dir.join("add-header.wasm").is_file(),
        "run `cargo xtask plugins` first"
    );
    dir
}

/// A chain of `n` add-header entries, with the default sandbox limits on.
pub async fn add_header_chain(runtime: &Runtime, n: usize) -> Chain {
    let plugin = runtime
        .load("add-header", &plugins_dir().join("add-header.wasm"))
        .expect("add-header loads");
    let mut entries = Vec::new();
    for i in 0..n {
        let entry = PluginEntry {
            plugin: "add-header".into(),
            config_json: format!(r#"{{"name":"x-bench-{i}","value":"1"}}"#),
            on_error: OnError::FailClosed,
            limits: Limits::default(),
            allow_hosts: Vec::new(),
            location: Default::default(),
        };
        let pool = EntryPool::new(
            plugin.clone(),
            &entry,
            Arc::from("bench"),
            runtime.services.clone(),
            8,
        )
        .await
        .expect("init");
        entries.push(Arc::new(pool));
    }
    Chain::new(entries)
}

/// A typical request: a dozen headers.
pub fn request() -> (ContextRes, RequestRes) {
    let mut req = http::Request::builder()
        .method("GET")
        .uri("/api/v1/users/42?expand=orders");
    for (n, v) in [
        ("host", "api.example.com"),
        ("user-agent", "bench/1.0"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, br"),
        (
            "authorization",
            "Bearer eyJhbGciOiJIUzI1NiJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx_Zmeo",
        ),
        ("x-request-id", "0123456789abcdef0123456789abcdef"),
        ("x-forwarded-for", "203.0.113.7"),
        ("cookie", "session=abc; theme=dark"),
        ("cache-control", "no-cache"),
        ("accept-language", "en-GB,en;q=0.9"),
    ] {
        req = req.header(n, v);
    }
    let (parts, ()) = req.body(()).expect("valid request").into_parts();
    let ctx = ContextRes {
        route: Arc::from("bench"),
        upstream: Arc::from("bench"),
        request_id: Arc::from("0123456789abcdef0123456789abcdef"),
        client: "127.0.0.1:40000".parse().expect("addr"),
        forwarded_client: None,
        bag: HashMap::new(),
    };
    (
        ctx,
        RequestRes {
            parts,
            body: None,
            body_visible: false,
            writable: true,
        },
    )
}
