//! The cost of the contract's host calls, by kind: one warm entry of the
//! test kit making 20 calls of a kind in `on-request`, beside the same entry
//! making none. (calls/KIND - calls/none) / 20 is one call's cost; calls/none
//! less request_setup_only is one entry's own cost (checkout, lending the
//! request, entering and leaving the guest, check-in, metrics).

use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse::plugin::{Chain, RequestStep, Runtime};
use gatehouse_bench::{TOKEN, chain, request};

const CALLS: u32 = 20;

async fn request_phase(chain: &Chain) {
    let (mut ctx, mut req) = request(TOKEN);
    let (step, _) = chain.on_request(&mut ctx, &mut req).await;
    assert!(matches!(step, RequestStep::Upstream));
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let runtime = Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("host_calls");
    group.bench_function("request_setup_only", |b| {
        b.to_async(&rt)
            .iter(|| async { std::hint::black_box(request(TOKEN)) })
    });
    for (kind, n) in [
        ("request-id", 0),
        ("request-id", CALLS),
        ("now", CALLS),
        ("header", CALLS),
        ("set-header", CALLS),
        ("state-get", CALLS),
    ] {
        let config = format!(r#"{{"mode":"calls","kind":"{kind}","n":{n}}}"#);
        let entry = rt.block_on(chain(&runtime, &[("testkit", config)]));
        let name = if n == 0 {
            "calls/none".to_owned()
        } else {
            format!("calls/{kind} x{n}")
        };
        group.bench_function(name, |b| b.to_async(&rt).iter(|| request_phase(&entry)));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
