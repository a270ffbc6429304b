//! Shared set-up for the micro-benchmarks.

use bytes::Bytes;
use gatehouse::config::{Limits, OnError, PluginEntry};
use gatehouse::plugin::{
    Chain, ContextRes, EntryPool, LentContext, LentRequest, Outcome, RequestRes, RequestStep,
    ResponseRes, Runtime,
};
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
    let entries: Vec<(&str, String)> = (0..n)
        .map(|i| {
            (
                "add-header",
                format!(r#"{{"name":"x-bench-{i}","value":"1"}}"#),
            )
        })
        .collect();
    chain(runtime, &entries).await
}

/// The quickstart's users route: jwt-auth (HS256), rate-limit (a limit that
/// never triggers), transform (headers and response JSON), circuit-breaker.
pub const USERS_CHAIN: [(&str, &str); 4] = [
    (
        "jwt-auth",
        r#"{"secret":"quickstart-secret","issuer":"https://auth.gatehouse.example","forward_claims":{"sub":"x-user-id","role":"x-user-role"},"consumer_claim":"sub"}"#,
    ),
    (
        "rate-limit",
        r#"{"limit":1000000000,"window":"1m","key":"consumer"}"#,
    ),
    (
        "transform",
        r#"{"request":{"set_headers":{"x-internal-request":"true"}},"response":{"set_headers":{"x-served-by":"gatehouse"},"remove_headers":["x-powered-by"],"remove_json_fields":["headers.user-agent","body"],"rename_json_fields":{"service":"served_by"}}}"#,
    ),
    (
        "circuit-breaker",
        r#"{"failure_threshold":3,"open_for":"15s"}"#,
    ),
];

/// The quickstart's demo token (HS256, `quickstart-secret`, expires in 2100).
pub const TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsInJvbGUiOiJ1c2VyIiwiaXNzIjoiaHR0cHM6Ly9hdXRoLmdhdGVob3VzZS5leGFtcGxlIiwiZXhwIjo0MTAyNDQ0ODAwfQ.rF7a7xnCYJkFG0vOgyx4OrLZvO4-YjhTvaO-1KnM6sM";

/// A chain of (plugin, config JSON) entries with the default sandbox limits.
pub async fn chain<S: AsRef<str>>(runtime: &Runtime, entries: &[(&str, S)]) -> Chain {
    let mut pools = Vec::new();
    for (name, config) in entries {
        let plugin = runtime
            .load(name, &plugins_dir().join(format!("{name}.wasm")))
            .unwrap_or_else(|e| panic!("{name} loads: {e}"));
        let entry = PluginEntry {
            plugin: (*name).into(),
            config_json: config.as_ref().to_owned(),
            on_error: OnError::FailClosed,
            limits: Limits::default(),
            allow_hosts: Vec::new(),
            location: Default::default(),
        };
        let pool = EntryPool::new(
            plugin,
            &entry,
            Arc::from("bench"),
            runtime.services.clone(),
            8,
        )
        .await
        .unwrap_or_else(|e| panic!("{name} init: {e}"));
        pools.push(pool);
    }
    Chain::new(pools)
}

/// One request through both phases of `chain`, with an upstream-like JSON
/// response in between, as the gateway runs it.
pub async fn exchange(chain: &Chain, token: &str) {
    let (mut ctx, mut req) = request(token);
    let (step, ran) = chain.on_request(&mut ctx, &mut req).await;
    assert!(
        matches!(step, RequestStep::Upstream),
        "the chain let it through"
    );
    let mut resp = response();
    chain
        .on_response(ran, &mut ctx, &mut req, &mut resp, Outcome::Upstream, |f| {
            panic!("{}: {}", f.plugin, f.error)
        })
        .await;
    assert_eq!(resp.parts.status, 200);
}

/// What the echo service answers: a 200 with a small JSON body.
pub fn response() -> ResponseRes {
    let body = r#"{"service":"users","method":"GET","path":"/users/42","query":"expand=orders","headers":{"host":"api.example.com","user-agent":"bench/1.0","accept":"application/json","x-user-id":"alice"},"body_length":0,"body":""}"#;
    let (parts, ()) = http::Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .header("x-powered-by", "demo-services")
        .body(())
        .expect("valid response")
        .into_parts();
    ResponseRes {
        parts,
        body: Some(Bytes::from_static(body.as_bytes())),
        body_visible: false,
    }
}

/// A typical request: a dozen headers, `token` as its bearer token.
pub fn request(token: &str) -> (LentContext, LentRequest) {
    let auth = format!("Bearer {token}");
    let mut req = http::Request::builder()
        .method("GET")
        .uri("/api/v1/users/42?expand=orders");
    for (n, v) in [
        ("host", "api.example.com"),
        ("user-agent", "bench/1.0"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, br"),
        ("authorization", auth.as_str()),
        ("x-request-id", "0123456789abcdef0123456789abcdef"),
        ("x-forwarded-for", "203.0.113.7"),
        ("cookie", "session=abc; theme=dark"),
        ("cache-control", "no-cache"),
        ("accept-language", "en-GB,en;q=0.9"),
    ] {
        req = req.header(n, v);
    }
    let (parts, ()) = req.body(()).expect("valid request").into_parts();
    let ctx = ContextRes::new(
        Arc::from("bench"),
        Arc::from("bench"),
        Arc::from("0123456789abcdef0123456789abcdef"),
        "127.0.0.1:40000".parse().expect("addr"),
    );
    (Box::new(ctx), Box::new(RequestRes::new(parts, None)))
}
