//! A plugin written in Python with the Python SDK (`examples/python-plugin`,
//! hmac-auth), built by `gatehouse plugin build` (componentize-py) and
//! served by the real gateway; and the SDK's list calls and declared edits,
//! through `tests/fixtures/python-set-headers`.

use gatehouse_tests::*;
use hmac::{KeyInit, Mac};
use http::Method;
use std::sync::LazyLock;

static BUILT: LazyLock<BuiltExample> =
    LazyLock::new(|| BuiltExample::build("python-plugin", "hmac-auth"));

static SET_HEADERS: LazyLock<BuiltExample> =
    LazyLock::new(|| BuiltExample::fixture("python-set-headers", "set-headers-py"));

const KEYS: &str = r#"{ keys = { "partner-a" = "s3cret-partner-a" } }"#;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The signature a client computes: HMAC-SHA256 over method, target,
/// timestamp and body, hex.
fn sign(secret: &str, method: &str, target: &str, stamp: u64, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{method}\n{target}\n{stamp}\n").as_bytes());
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn send(gw: &TestGateway, key: &str, stamp: u64, signature: &str, body: &str) -> Seen {
    let stamp = stamp.to_string();
    TestClient::default()
        .send(
            Method::POST,
            &gw.url("/orders?priority=high"),
            &[
                ("x-key-id", key),
                ("x-timestamp", &stamp),
                ("x-signature", signature),
            ],
            body,
        )
        .await
}

#[tokio::test]
async fn a_signed_request_passes_with_its_body() {
    let (gw, _up) = BUILT.gateway("", KEYS).await.unwrap();
    let body = r#"{"item":"book","qty":2}"#;
    let t = now();
    let sig = sign(
        "s3cret-partner-a",
        "POST",
        "/orders?priority=high",
        t,
        body.as_bytes(),
    );
    let seen = send(&gw, "partner-a", t, &sig, body).await;
    assert_eq!(seen.status, 200, "{}", String::from_utf8_lossy(&seen.body));
    assert_eq!(seen.json()["method"], "POST");
    assert_eq!(seen.json()["body"], body);
}

#[tokio::test]
async fn bad_stale_unknown_and_missing_signatures_get_401() {
    let (gw, _up) = BUILT.gateway("", KEYS).await.unwrap();
    let body = "{}";
    let t = now();
    let good = sign(
        "s3cret-partner-a",
        "POST",
        "/orders?priority=high",
        t,
        body.as_bytes(),
    );
    // The body changed after signing.
    let seen = send(&gw, "partner-a", t, &good, r#"{"qty":200}"#).await;
    assert_error_body(&seen, 401);
    assert_eq!(seen.json()["error"], "invalid signature");
    // Signed with another secret, or by a key the gateway does not know.
    let forged = sign(
        "guessed-secret",
        "POST",
        "/orders?priority=high",
        t,
        body.as_bytes(),
    );
    assert_eq!(
        send(&gw, "partner-a", t, &forged, body).await.json()["error"],
        "invalid signature"
    );
    assert_eq!(send(&gw, "partner-z", t, &good, body).await.status, 401);
    // A signature replayed ten minutes later.
    let old = t - 600;
    let sig = sign(
        "s3cret-partner-a",
        "POST",
        "/orders?priority=high",
        old,
        body.as_bytes(),
    );
    let seen = send(&gw, "partner-a", old, &sig, body).await;
    assert_error_body(&seen, 401);
    assert_eq!(seen.json()["error"], "stale or future x-timestamp");
    // No signature at all.
    let seen = TestClient::default().get(&gw.url("/orders")).await;
    assert_error_body(&seen, 401);
}

#[tokio::test]
async fn a_bad_config_is_refused_naming_route_plugin_and_field() {
    let err = BUILT
        .gateway("", r#"{ keys = { "partner-a" = "short" } }"#)
        .await
        .err()
        .expect("refused");
    assert!(
        err.contains("route \"hmac-auth\", plugin \"hmac-auth\": init failed: `keys.partner-a`: the secret must be a string of at least 8 characters"),
        "{err}"
    );
    let err = BUILT.gateway("", "{}").await.err().expect("refused");
    assert!(err.contains("`keys` must map at least one key id"), "{err}");
}

#[tokio::test]
async fn a_memory_cap_below_what_python_needs_is_named_at_load() {
    // The interpreter's linear memory starts at about 12.6 MiB.
    let up = Echo::bind("up", "127.0.0.1:0").await.unwrap();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nplugins_dir = \"{}\"\n[upstreams.up]\ntargets = [\"{}\"]\n[[routes]]\nname = \"small\"\npath = \"/*\"\nupstream = \"up\"\n[[routes.plugins]]\nplugin = \"hmac-auth\"\nlimits = {{ memory = \"4MiB\" }}\nconfig = {KEYS}\n",
        BUILT.plugins.path().display(),
        up.addr
    );
    let err = TestGateway::try_start(&toml).await.err().expect("refused");
    assert!(
        err.contains(
            "of linear memory to start, over the entry's limit of 4.0 MiB: raise `limits.memory`"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn set_headers_takes_pairs_or_a_table_and_refuses_a_bad_list_whole() {
    assert_list_calls(&SET_HEADERS).await;
}

#[tokio::test]
async fn declared_edits_are_made_before_the_hooks_and_checked_at_init() {
    assert_declared_edits(&SET_HEADERS).await;
}
