//! What a plugin costs in each language, for authors choosing one: the
//! example plugins (Rust tenant-guard, C cidr-guard, Python hmac-auth,
//! JavaScript canary-router, Go body-guard), each on a request it lets
//! through.
//!
//! Printed once per language: component size, compile time (cranelift, no
//! cache; the median of 3, or one run for components over 1 MB), cold start (a new instance and its `init`), and the instance's
//! linear memory after 1,000 calls. Criterion then measures the warm call
//! (both phases, sandbox limits on).
//!
//! Needs `cargo xtask plugins` and `cargo xtask examples` (bench/run.sh runs
//! both).

use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse::config::{Limits, OnError, PluginEntry};
use gatehouse::plugin::{
    Chain, ContextRes, EntryPool, LentContext, LentRequest, Outcome, RequestRes, RequestStep,
    ResponseRes, Runtime,
};
use hmac::{KeyInit, Mac};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Example {
    lang: &'static str,
    file: PathBuf,
    config: &'static str,
    /// Headers of a request the plugin lets through.
    headers: fn() -> Vec<(String, String)>,
    /// A JSON body to POST; GET without a body when None.
    post: Option<&'static str>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

const HMAC_SECRET: &str = "bench-secret-0123";

fn signed() -> Vec<(String, String)> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(HMAC_SECRET.as_bytes()).unwrap();
    mac.update(format!("GET\n/orders/42\n{stamp}\n").as_bytes());
    let sig: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    vec![
        ("x-key-id".into(), "bench".into()),
        ("x-timestamp".into(), stamp),
        ("x-signature".into(), sig),
    ]
}

fn examples() -> Vec<Example> {
    let plugins = root().join("target/plugins");
    let examples = root().join("target/examples");
    vec![
        Example {
            lang: "rust (tenant-guard)",
            file: plugins.join("tenant-guard.wasm"),
            config: r#"{"header":"x-tenant","tenants":{"acme":"t-001"}}"#,
            headers: || vec![("x-tenant".into(), "acme".into())],
            post: None,
        },
        Example {
            lang: "c (cidr-guard)",
            file: examples.join("cidr-guard.wasm"),
            config: r#"{"allow":["10.0.0.0/8","127.0.0.0/8"],"deny":["10.66.0.0/16"]}"#,
            headers: Vec::new,
            post: None,
        },
        Example {
            lang: "python (hmac-auth)",
            file: examples.join("hmac-auth.wasm"),
            config: r#"{"keys":{"bench":"bench-secret-0123"}}"#,
            headers: signed,
            post: None,
        },
        Example {
            lang: "js (canary-router)",
            file: examples.join("canary-router.wasm"),
            config: r#"{"percent":10}"#,
            headers: || vec![("cookie".into(), "theme=dark; canary=stable".into())],
            post: None,
        },
        Example {
            lang: "go (body-guard)",
            file: examples.join("body-guard.wasm"),
            config: r#"{"max_body":65536}"#,
            headers: || vec![("content-type".into(), "application/json".into())],
            post: Some(r#"{"item":"book","qty":2,"tags":["gift","paper"]}"#),
        },
    ]
}

fn request(headers: &[(String, String)], post: Option<&'static str>) -> (LentContext, LentRequest) {
    let mut req = http::Request::builder()
        .method(if post.is_some() { "POST" } else { "GET" })
        .uri("/orders/42")
        .header("host", "api.example.com")
        .header("accept", "application/json");
    for (n, v) in headers {
        req = req.header(n, v);
    }
    let (parts, ()) = req.body(()).unwrap().into_parts();
    let ctx = ContextRes::new(
        Arc::from("bench"),
        Arc::from("bench"),
        Arc::from("0123456789abcdef0123456789abcdef"),
        "127.0.0.1:40000".parse().unwrap(),
    );
    let body = Some(bytes::Bytes::from_static(post.unwrap_or("").as_bytes()));
    let req = RequestRes::new(parts, body);
    (Box::new(ctx), Box::new(req))
}

async fn exchange(chain: &Chain, headers: &[(String, String)], post: Option<&'static str>) {
    let (mut ctx, mut req) = request(headers, post);
    let (step, ran) = chain.on_request(&mut ctx, &mut req).await;
    assert!(matches!(step, RequestStep::Upstream), "let through");
    let (parts, ()) = http::Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(())
        .unwrap()
        .into_parts();
    let mut resp = ResponseRes {
        parts,
        body: Some(bytes::Bytes::from_static(b"{}")),
        body_visible: false,
    };
    chain
        .on_response(ran, &mut ctx, &mut req, &mut resp, Outcome::Upstream, |f| {
            panic!("{}: {}", f.plugin, f.error)
        })
        .await;
}

async fn pool(runtime: &Runtime, ex: &Example) -> Arc<EntryPool> {
    let plugin = runtime
        .load("example", &ex.file)
        .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask examples`)", ex.lang));
    let entry = PluginEntry {
        plugin: "example".into(),
        config_json: ex.config.into(),
        on_error: OnError::FailClosed,
        limits: Limits::default(),
        allow_hosts: Vec::new(),
        location: Default::default(),
    };
    EntryPool::new(
        plugin,
        &entry,
        Arc::from("bench"),
        runtime.services.clone(),
        8,
    )
    .await
    .unwrap_or_else(|e| panic!("{}: {e}", ex.lang))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("language");
    println!(
        "{:<22} {:>10} {:>12} {:>12} {:>14}",
        "example", "size", "compile", "cold start", "linear memory"
    );
    for ex in examples() {
        // Compile: a runtime of its own each time, so nothing is cached
        // (once for the large components: each takes seconds).
        let size = std::fs::metadata(&ex.file).unwrap().len();
        let compile = median(
            (0..if size > 1_000_000 { 1 } else { 3 })
                .map(|_| {
                    let runtime = Runtime::new().unwrap();
                    let started = Instant::now();
                    runtime.load("example", &ex.file).unwrap();
                    started.elapsed()
                })
                .collect(),
        );
        let runtime = Runtime::new().unwrap();
        // Cold start: a new instance of the compiled component, and its init.
        let cold = median(
            (0..10)
                .map(|_| {
                    let started = Instant::now();
                    rt.block_on(pool(&runtime, &ex));
                    started.elapsed()
                })
                .collect(),
        );
        let chain = Chain::new(vec![rt.block_on(pool(&runtime, &ex))]);
        let headers = (ex.headers)();
        for _ in 0..1000 {
            rt.block_on(exchange(&chain, &headers, ex.post));
        }
        let memory = chain.entries[0].linear_memory();
        println!(
            "{:<22} {:>10} {:>9.0} ms {:>9.2} ms {:>10.1} MiB",
            ex.lang,
            format!("{} KB", size / 1000),
            compile.as_secs_f64() * 1e3,
            cold.as_secs_f64() * 1e3,
            memory as f64 / (1024.0 * 1024.0)
        );
        group.bench_function(ex.lang, |b| {
            b.to_async(&rt).iter(|| exchange(&chain, &headers, ex.post))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
