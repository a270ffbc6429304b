//! Router matching with 1,000 routes.

use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse::router::{Match, Pattern, Predicates, Router};
use http::{HeaderMap, Method};

fn bench(c: &mut Criterion) {
    let mut routes = Vec::new();
    for i in 0..1000 {
        let path = match i % 3 {
            0 => format!("/api/v{}/service{i}/items/{{id}}", i % 5),
            1 => format!("/api/v{}/service{i}/*", i % 5),
            _ => format!("/static/service{i}/health"),
        };
        let predicates = Predicates {
            methods: None,
            host: None,
            headers: vec![],
        };
        routes.push((Pattern::parse(&path).expect("pattern"), predicates));
    }
    let router = Router::new(routes);
    let headers = HeaderMap::new();
    c.bench_function("router/1000_routes/param_match", |b| {
        b.iter(|| {
            let m = router.route(&Method::GET, None, &headers, "/api/v3/service498/items/42");
            assert!(matches!(m, Match::Found { .. }));
        })
    });
    c.bench_function("router/1000_routes/miss", |b| {
        b.iter(|| router.route(&Method::GET, None, &headers, "/nothing/here/at/all"))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
