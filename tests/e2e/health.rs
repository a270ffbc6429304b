//! Upstream health: active checks take a failing target out of the
//! balancer and bring it back; passive checks eject a target after
//! consecutive failures; no healthy target is a 503 in the JSON shape.

use gatehouse_tests::*;
use std::time::Duration;

/// Which service answered: the echo names itself, the JSON service does not.
async fn served_by(c: &TestClient, url: &str) -> String {
    let seen = c.get(url).await;
    assert_eq!(seen.status, 200, "{}", String::from_utf8_lossy(&seen.body));
    seen.json()["service"]
        .as_str()
        .unwrap_or("flaky")
        .to_owned()
}

async fn until(what: &str, mut ok: impl AsyncFnMut() -> bool) {
    for _ in 0..300 {
        if ok().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never: {what}");
}

#[tokio::test]
async fn active_checks_take_a_failing_target_out_and_bring_it_back() {
    let flaky = JsonService::start("{\"ok\":true}").await;
    let steady = Echo::bind("steady", "127.0.0.1:0").await.unwrap();
    let toml = format!(
        "{SERVER}\n[upstreams.up]\ntargets = [\"{}\", \"{}\"]\n\
         health = {{ path = \"/health\", interval = \"20ms\", timeout = \"200ms\", unhealthy_after = 2, healthy_after = 2 }}\n\
         [[routes]]\nname = \"checked\"\npath = \"/*\"\nupstream = \"up\"\n",
        flaky.addr, steady.addr
    );
    let gw = TestGateway::start(&toml).await;
    let c = TestClient::default();
    let url = gw.url("/x");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        seen.insert(served_by(&c, &url).await);
    }
    assert_eq!(seen.len(), 2, "both targets serve while healthy: {seen:?}");

    flaky.set_status(503);
    // Health checks see the 503s; then only the steady target serves.
    until("the flaky target leaves", async || {
        let mut all_steady = true;
        for _ in 0..4 {
            let seen = c.get(&url).await;
            all_steady &= seen.status == 200 && seen.json()["service"] == "steady";
        }
        all_steady
    })
    .await;
    for _ in 0..10 {
        assert_eq!(served_by(&c, &url).await, "steady");
    }

    flaky.set_status(200);
    // Round robin: of any two requests, one goes to the flaky target once it is back.
    until("the flaky target comes back", async || {
        for _ in 0..2 {
            if served_by(&c, &url).await == "flaky" {
                return true;
            }
        }
        false
    })
    .await;
}

#[tokio::test]
async fn no_healthy_target_is_a_503() {
    let flaky = JsonService::start("{}").await;
    flaky.set_status(500);
    let toml = format!(
        "{SERVER}\n[upstreams.up]\ntargets = [\"{}\"]\n\
         health = {{ path = \"/health\", interval = \"20ms\", unhealthy_after = 1 }}\n\
         [[routes]]\nname = \"none-healthy\"\npath = \"/*\"\nupstream = \"up\"\n",
        flaky.addr
    );
    let gw = TestGateway::start(&toml).await;
    let c = TestClient::default();
    until("the only target is marked down", async || {
        c.get(&gw.url("/x")).await.status == 503
    })
    .await;
    let seen = c.get(&gw.url("/x")).await;
    assert_error_body(&seen, 503);
    assert_eq!(seen.json()["error"], "no healthy upstream target");
}

#[tokio::test]
async fn passive_checks_eject_a_target_after_consecutive_failures() {
    // A port nothing listens on: every request to it is a connect error.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let live = Echo::bind("live", "127.0.0.1:0").await.unwrap();
    let toml = format!(
        "{SERVER}\n[upstreams.up]\ntargets = [\"{dead}\", \"{}\"]\n\
         outlier = {{ consecutive_failures = 2, eject_for = \"1h\" }}\n\
         [[routes]]\nname = \"ejecting\"\npath = \"/*\"\nupstream = \"up\"\n",
        live.addr
    );
    let gw = TestGateway::start(&toml).await;
    let c = TestClient::default();
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(c.get(&gw.url("/x")).await.status.as_u16());
    }
    let failures = statuses.iter().filter(|s| **s == 502).count();
    assert_eq!(
        failures, 2,
        "two connect errors, then the target is ejected: {statuses:?}"
    );
    assert!(
        statuses[statuses.len() - 6..].iter().all(|s| *s == 200),
        "{statuses:?}"
    );
}
