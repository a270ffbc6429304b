//! The cost of warm plugin calls through the contract, with the CPU deadline
//! and memory cap armed: checkout, handle set-up, the guest's work and
//! check-in, for each plugin of the quickstart's users route alone (both
//! phases, as the gateway runs them), for the whole four-plugin chain, and
//! for chains of one and four add-header entries (request phase only).

use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse::plugin::{RequestStep, Runtime};
use gatehouse_bench::{TOKEN, USERS_CHAIN, add_header_chain, chain, exchange, request};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let runtime = Runtime::new().expect("runtime");

    let mut group = c.benchmark_group("plugin");
    for (name, config) in USERS_CHAIN {
        let one = rt.block_on(chain(&runtime, &[(name, config)]));
        group.bench_function(name, |b| b.to_async(&rt).iter(|| exchange(&one, TOKEN)));
    }
    // The signature check itself: a verified-token cache of one entry and
    // two tokens taking turns, so every call verifies.
    let config = USERS_CHAIN[0].1;
    let uncached = format!(r#"{},"cache_size":1}}"#, &config[..config.len() - 1]);
    let jwt = rt.block_on(chain(&runtime, &[("jwt-auth", uncached)]));
    let other = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJib2IiLCJyb2xlIjoidXNlciIsImlzcyI6Imh0dHBzOi8vYXV0aC5nYXRlaG91c2UuZXhhbXBsZSIsImV4cCI6NDEwMjQ0NDgwMH0.OD5TdxukolIygsYDGi5PB1NqcUuHAgzPUqKb8Xut1EI";
    let mut turn = false;
    group.bench_function("jwt-auth (verify every call)", |b| {
        b.to_async(&rt).iter(|| {
            turn = !turn;
            exchange(&jwt, if turn { TOKEN } else { other })
        })
    });
    group.finish();

    let mut group = c.benchmark_group("chain");
    let users = rt.block_on(chain(&runtime, &USERS_CHAIN));
    group.bench_function("users route (4 plugins)", |b| {
        b.to_async(&rt).iter(|| exchange(&users, TOKEN))
    });
    for n in [1usize, 4] {
        let chain = rt.block_on(add_header_chain(&runtime, n));
        group.bench_function(format!("on_request/{n}_add_header"), |b| {
            b.to_async(&rt).iter(|| async {
                let (mut ctx, mut req) = request(TOKEN);
                let (step, _) = chain.on_request(&mut ctx, &mut req).await;
                assert!(matches!(step, RequestStep::Upstream));
            })
        });
    }
    group.bench_function("request_setup_only", |b| b.iter(|| request(TOKEN)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
