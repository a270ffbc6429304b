//! `server.trusted_proxies`: who the client is when the gateway sits behind
//! a load balancer.

use gatehouse_tests::*;

/// A route whose testkit copies the client's IP as plugins see it into
/// `x-ctx-client-ip`, then rate-limits by IP, one request per client.
async fn behind(trusted: &str, route: &str) -> (TestGateway, Echo) {
    let up = Echo::bind("up", "127.0.0.1:0").await.unwrap();
    let toml = format!(
        "{SERVER}\n{trusted}\n[upstreams.up]\ntargets = [\"{}\"]\n\
         [[routes]]\nname = \"{route}\"\npath = \"/*\"\nupstream = \"up\"\n\
         [[routes.plugins]]\nplugin = \"testkit\"\nconfig = {{ mode = \"context\" }}\n\
         [[routes.plugins]]\nplugin = \"rate-limit\"\nconfig = {{ limit = 1, window = \"1h\", key = \"ip\" }}\n",
        up.addr
    );
    (TestGateway::start(&toml).await, up)
}

async fn from(gw: &TestGateway, xff: &str) -> Seen {
    TestClient::default()
        .get_with(&gw.url("/"), &[("x-forwarded-for", xff)])
        .await
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_client_is_the_nearest_untrusted_hop() {
    // The test client connects from 127.0.0.1: it plays the load balancer.
    let (gw, _up) = behind(
        "trusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]",
        "behind-trusted-lb",
    )
    .await;
    let seen = from(&gw, "203.0.113.7").await;
    assert_eq!(seen.status, 200);
    assert_eq!(
        seen.upstream_header("x-ctx-client-ip").unwrap(),
        "203.0.113.7"
    );
    // The upstream still gets the whole chain, with the peer appended.
    assert_eq!(
        seen.upstream_header("x-forwarded-for").unwrap(),
        "203.0.113.7, 127.0.0.1"
    );
    // A second client behind the same proxy has its own quota ...
    let seen = from(&gw, "198.51.100.2, 10.1.1.1").await;
    assert_eq!(seen.status, 200);
    assert_eq!(
        seen.upstream_header("x-ctx-client-ip").unwrap(),
        "198.51.100.2"
    );
    // ... and the first one has spent its own, whatever it puts in front.
    assert_eq!(from(&gw, "1.2.3.4, 203.0.113.7").await.status, 429);
}

#[tokio::test]
async fn without_trusted_proxies_forwarded_for_is_never_believed() {
    let (gw, _up) = behind("", "no-trusted-lb").await;
    let seen = from(&gw, "203.0.113.7").await;
    assert_eq!(
        seen.upstream_header("x-ctx-client-ip").unwrap(),
        "127.0.0.1"
    );
    assert_eq!(from(&gw, "198.51.100.2").await.status, 429);

    // A proxy list that does not include the peer changes nothing either.
    let (gw, _up) = behind("trusted_proxies = [\"10.0.0.0/8\"]", "other-trusted-lb").await;
    let seen = from(&gw, "203.0.113.7").await;
    assert_eq!(
        seen.upstream_header("x-ctx-client-ip").unwrap(),
        "127.0.0.1"
    );
}
