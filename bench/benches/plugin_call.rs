//! The cost of a warm plugin call through the contract: one `on-request` on
//! a pooled instance, with the CPU deadline and memory cap armed, minus
//! nothing (the figure includes checkout, handle set-up and check-in).

use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse::plugin::{RequestStep, Runtime};
use gatehouse_bench::{add_header_chain, request};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let runtime = Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("chain");
    for n in [1usize, 4] {
        let chain = rt.block_on(add_header_chain(&runtime, n));
        group.bench_function(format!("on_request/{n}_add_header"), |b| {
            b.to_async(&rt).iter(|| async {
                let (mut ctx, req) = request();
                let (_req, step, _) = chain.on_request(&mut ctx, req).await;
                assert!(matches!(step, RequestStep::Upstream));
            })
        });
    }
    group.bench_function("request_setup_only", |b| b.iter(request));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
