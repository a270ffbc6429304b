//! The jwt-auth plugin.

use gatehouse_tests::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

fn key_file(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/keys")
            .join(name),
    )
    .unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256(claims: Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn rs256(claims: Value, key: &str, kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(key_file(key).as_bytes()).unwrap(),
    )
    .unwrap()
}

/// A route behind jwt-auth with `config`, then a plugin that copies the
/// context (consumer) into headers for the upstream to echo.
async fn with_jwt(config: &str) -> (TestGateway, Echo) {
    gateway_to_echo(&format!(
        "[[routes]]\nname = \"users\"\npath = \"/*\"\nupstream = \"up\"\n\
         [[routes.plugins]]\nplugin = \"jwt-auth\"\n[routes.plugins.config]\n{config}\n\
         [[routes.plugins]]\nplugin = \"testkit\"\nconfig = {{ mode = \"context\" }}\n"
    ))
    .await
}

const HS: &str = r#"secret = "change-me"
issuer = "https://auth.example.com"
audience = ["orders"]
forward_claims = { sub = "x-user-id", role = "x-user-role" }
consumer_claim = "sub""#;

fn good_claims() -> Value {
    json!({ "sub": "alice", "role": "finance", "iss": "https://auth.example.com", "aud": "orders", "exp": now() + 600 })
}

async fn bearer(gw: &TestGateway, token: &str, extra: &[(&str, &str)]) -> Seen {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    TestClient::default()
        .get_with(&gw.url("/me"), &headers)
        .await
}

#[tokio::test]
async fn a_valid_token_passes_with_its_claims_forwarded_and_forgeries_removed() {
    let (gw, _up) = with_jwt(HS).await;
    let token = hs256(good_claims(), "change-me");
    let seen = bearer(
        &gw,
        &token,
        &[("x-user-id", "admin"), ("x-user-role", "admin")],
    )
    .await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.upstream_header("x-user-id").as_deref(), Some("alice"));
    assert_eq!(
        seen.upstream_header("x-user-role").as_deref(),
        Some("finance")
    );
    assert_eq!(
        seen.upstream_header("x-ctx-consumer").as_deref(),
        Some("alice")
    );
    // Served again from the verified-token cache, same result.
    assert_eq!(
        bearer(&gw, &token, &[])
            .await
            .upstream_header("x-user-id")
            .as_deref(),
        Some("alice")
    );
    // A token without the claim: the forged header is still removed.
    let mut no_role = good_claims();
    no_role.as_object_mut().unwrap().remove("role");
    let seen = bearer(
        &gw,
        &hs256(no_role, "change-me"),
        &[("x-user-role", "admin")],
    )
    .await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.upstream_header("x-user-role"), None);
}

#[tokio::test]
async fn missing_or_non_bearer_credentials_get_a_plain_bearer_challenge() {
    let (gw, up) = with_jwt(HS).await;
    let c = TestClient::default();
    for headers in [
        vec![],
        vec![("authorization", "Basic YWxpY2U6c2VjcmV0")],
        vec![("authorization", "Bearer ")],
    ] {
        let seen = c.get_with(&gw.url("/me"), &headers).await;
        assert_error_body(&seen, 401);
        assert_eq!(seen.header("www-authenticate"), Some("Bearer"));
    }
    assert_eq!(up.requests(), 0);
}

async fn assert_invalid(gw: &TestGateway, token: &str, why: &str) {
    let seen = bearer(gw, token, &[]).await;
    assert_error_body(&seen, 401);
    let challenge = seen.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{why}: {challenge}"
    );
    let message = seen.json()["error"].as_str().unwrap().to_owned();
    assert!(message.contains(why), "expected {why:?} in {message:?}");
}

#[tokio::test]
async fn bad_tokens_get_invalid_token() {
    let (gw, up) = with_jwt(HS).await;
    let claims = good_claims();
    let with = |k: &str, v: Value| {
        let mut c = claims.clone();
        c[k] = v;
        c
    };
    assert_invalid(&gw, &hs256(claims.clone(), "wrong-secret"), "bad signature").await;
    assert_invalid(
        &gw,
        &hs256(with("exp", json!(now() - 120)), "change-me"),
        "expired",
    )
    .await;
    assert_invalid(
        &gw,
        &hs256(with("nbf", json!(now() + 600)), "change-me"),
        "not yet valid",
    )
    .await;
    assert_invalid(
        &gw,
        &hs256(with("iss", json!("https://evil.example.com")), "change-me"),
        "wrong issuer",
    )
    .await;
    assert_invalid(
        &gw,
        &hs256(with("aud", json!("billing")), "change-me"),
        "wrong audience",
    )
    .await;
    assert_invalid(
        &gw,
        &hs256(with("exp", json!("tomorrow")), "change-me"),
        "exp", // an `exp` that is not a number does not count as one
    )
    .await;
    let mut no_exp = claims.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_invalid(&gw, &hs256(no_exp, "change-me"), "missing claim exp").await;
    assert_invalid(&gw, "not.a.jwt", "not a JWT").await;
    // alg "none", unsigned.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(serde_json::to_string(&claims).unwrap().as_bytes())
    );
    assert_invalid(&gw, &none, "not a JWT").await;
    assert_eq!(up.requests(), 0);
}

fn b64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn the_rfc_7515_example_token_is_refused_as_expired() {
    // RFC 7515 A.1: an HS256 JWS whose key is this JWK; it expired in 2011.
    let config = r#"jwks = { keys = [{ kty = "oct", k = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow" }] }"#;
    let (gw, _up) = with_jwt(config).await;
    let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    assert_invalid(&gw, token, "expired").await;
}

#[tokio::test]
async fn an_hs256_token_signed_with_the_rsa_public_key_is_refused() {
    let pem = key_file("rsa-a.pub.pem");
    let config = format!("algorithms = [\"RS256\"]\npublic_keys = [\"\"\"\n{pem}\"\"\"]");
    let (gw, _up) = with_jwt(&config).await;
    // The classic key-confusion attack: HMAC keyed with the public key's PEM.
    let forged = hs256(good_claims(), &pem);
    assert_invalid(&gw, &forged, "not accepted").await;
    // The real RS256 token passes.
    assert_eq!(
        bearer(&gw, &rs256(good_claims(), "rsa-a.key.pem", None), &[])
            .await
            .status,
        200
    );
    assert_invalid(
        &gw,
        &rs256(good_claims(), "rsa-b.key.pem", None),
        "bad signature",
    )
    .await;
}

#[tokio::test]
async fn jwks_keys_are_chosen_by_kid_so_keys_can_rotate() {
    let jwks = key_file("jwks.json");
    let (gw, _up) = with_jwt(&format!(
        "algorithms = [\"RS256\"]\njwks = {}",
        toml_inline(&jwks)
    ))
    .await;
    for kid in ["rsa-a", "rsa-b"] {
        let token = rs256(good_claims(), &format!("{kid}.key.pem"), Some(kid));
        assert_eq!(bearer(&gw, &token, &[]).await.status, 200, "{kid}");
    }
    // Signed by a, claiming to be b.
    assert_invalid(
        &gw,
        &rs256(good_claims(), "rsa-a.key.pem", Some("rsa-b")),
        "bad signature",
    )
    .await;
    assert_invalid(
        &gw,
        &rs256(good_claims(), "rsa-a.key.pem", Some("rsa-c")),
        "no key for this token",
    )
    .await;
}

/// A JSON object as a TOML inline table (JSON strings and arrays are TOML too).
fn toml_inline(json: &str) -> String {
    let v: Value = serde_json::from_str(json).unwrap();
    fn render(v: &Value) -> String {
        match v {
            Value::Object(m) => {
                let fields: Vec<String> = m
                    .iter()
                    .map(|(k, v)| format!("{k} = {}", render(v)))
                    .collect();
                format!("{{ {} }}", fields.join(", "))
            }
            Value::Array(items) => format!(
                "[{}]",
                items.iter().map(render).collect::<Vec<_>>().join(", ")
            ),
            other => other.to_string(),
        }
    }
    render(&v)
}

#[tokio::test]
async fn a_require_rule_answers_403_when_no_value_matches() {
    let config = format!("{HS}\n[routes.plugins.config.require]\nrole = [\"admin\", \"finance\"]");
    let (gw, up) = with_jwt(&config).await;
    assert_eq!(
        bearer(&gw, &hs256(good_claims(), "change-me"), &[])
            .await
            .status,
        200
    );
    let mut user = good_claims();
    user["role"] = json!("user");
    let refused = hs256(user, "change-me");
    assert_error_body(&bearer(&gw, &refused, &[]).await, 403);
    // Again, now from the verified-token cache: still refused.
    assert_error_body(&bearer(&gw, &refused, &[]).await, 403);
    let mut roles = good_claims();
    roles["role"] = json!(["user", "admin"]);
    assert_eq!(
        bearer(&gw, &hs256(roles, "change-me"), &[]).await.status,
        200,
        "any listed value passes"
    );
    assert_eq!(up.requests(), 2);
}

#[tokio::test]
async fn a_bad_jwt_config_is_refused() {
    for (config, expected) in [
        (
            "algorithms = [\"HS256\"]",
            "an HS* algorithm is listed: set `secret`",
        ),
        (
            "algorithms = [\"RS256\"]",
            "a public-key algorithm is listed: set `public_keys`, `jwks` or `jwks_url`",
        ),
        (
            "algorithms = [\"XX999\"]\nsecret = \"s\"",
            "`algorithms`: unknown algorithm \"XX999\"",
        ),
        (
            "algorithms = [\"RS256\"]\npublic_keys = [\"nope\"]",
            "`public_keys[0]` is not an RSA, EC or Ed25519 public key in PEM",
        ),
        (
            "algorithms = [\"RS256\"]\njwks_url = \"http://127.0.0.1:9/jwks.json\"",
            "`jwks_url` cannot be fetched: 127.0.0.1:9 is not in this plugin entry's allow_hosts (add the key server's host:port there)",
        ),
        (
            "algorithms = [\"RS256\"]\njwks_url = \"file:///etc/keys.json\"",
            "`jwks_url`: \"file:///etc/keys.json\" is not an http:// or https:// URL",
        ),
        (
            "algorithms = [\"RS256\"]\njwks_url = \"http://127.0.0.1:9/k\"\njwks_refresh = \"1s\"\njwks_cooldown = \"5s\"",
            "`jwks_cooldown` must be more than 0 and at most `jwks_refresh`",
        ),
        (
            "secret = \"s\"\nleeway = \"soon\"",
            "invalid config at `leeway`",
        ),
    ] {
        let err = refusal(
            "users",
            "jwt-auth",
            &format!("[routes.plugins.config]\n{config}"),
        )
        .await;
        assert!(err.contains(expected), "{config}: {err}");
    }
}

/// The fixture JWK set with only the keys named.
fn jwks_with(kids: &[&str]) -> String {
    let mut set: Value = serde_json::from_str(&key_file("jwks.json")).unwrap();
    set["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|k| kids.contains(&k["kid"].as_str().unwrap()));
    set.to_string()
}

/// A gateway whose jwt-auth fetches its keys from `keys`, refetching at most
/// every 300 ms.
async fn with_key_server(keys: std::net::SocketAddr) -> (TestGateway, Echo) {
    let up = Echo::bind("up", "127.0.0.1:0").await.unwrap();
    let toml = format!(
        "{SERVER}\n[upstreams.up]\ntargets = [\"{}\"]\n\
         [[routes]]\nname = \"remote-keys\"\npath = \"/*\"\nupstream = \"up\"\n\
         [[routes.plugins]]\nplugin = \"jwt-auth\"\nallow_hosts = [\"{addr}\"]\n\
         [routes.plugins.config]\nalgorithms = [\"RS256\"]\n\
         jwks_url = \"http://{addr}/.well-known/jwks.json\"\njwks_cooldown = \"300ms\"\n",
        up.addr,
        addr = keys
    );
    (TestGateway::start(&toml).await, up)
}

fn signed_by(kid: &str) -> String {
    rs256(good_claims(), &format!("{kid}.key.pem"), Some(kid))
}

async fn wait_out_cooldown() {
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
}

#[tokio::test]
async fn jwks_url_keys_are_fetched_once_then_refetched_for_a_rotated_kid() {
    let keys = JsonService::start(&jwks_with(&["rsa-a"])).await;
    let (gw, up) = with_key_server(keys.addr).await;
    assert_eq!(keys.hits(), 1, "fetched when the first instance started");
    for _ in 0..5 {
        assert_eq!(bearer(&gw, &signed_by("rsa-a"), &[]).await.status, 200);
    }
    assert_eq!(keys.hits(), 1, "every instance shares the one fetched set");

    // The issuer rotates to key b (publishing both while tokens signed by a live on).
    keys.set(&jwks_with(&["rsa-a", "rsa-b"]));
    wait_out_cooldown().await;
    assert_eq!(bearer(&gw, &signed_by("rsa-b"), &[]).await.status, 200);
    assert_eq!(keys.hits(), 2, "an unknown kid refetched the set");
    assert_eq!(bearer(&gw, &signed_by("rsa-a"), &[]).await.status, 200);
    assert_eq!(up.requests(), 7);
}

#[tokio::test]
async fn a_flood_of_unknown_kids_fetches_at_most_once_per_cooldown() {
    let keys = JsonService::start(&jwks_with(&["rsa-a"])).await;
    let (gw, up) = with_key_server(keys.addr).await;
    wait_out_cooldown().await;
    // Signed by b, whose key the server does not publish.
    let unknown = signed_by("rsa-b");
    for _ in 0..20 {
        assert_invalid(&gw, &unknown, "no key for this token").await;
    }
    assert_eq!(keys.hits(), 2, "one refetch for the whole flood");
    assert_eq!(up.requests(), 0);
}

#[tokio::test]
async fn a_key_server_that_goes_down_keeps_the_known_keys_and_unknown_kids_get_401() {
    let keys = JsonService::start(&jwks_with(&["rsa-a"])).await;
    let (gw, _up) = with_key_server(keys.addr).await;
    drop(keys);
    wait_out_cooldown().await;
    for _ in 0..3 {
        // The refetch for the unknown kid fails: 401, not a gateway error.
        assert_invalid(&gw, &signed_by("rsa-b"), "no key for this token").await;
        assert_eq!(bearer(&gw, &signed_by("rsa-a"), &[]).await.status, 200);
    }
}

#[tokio::test]
async fn a_key_server_down_at_start_does_not_stop_the_gateway() {
    // An address nothing listens on yet.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (gw, up) = with_key_server(addr).await;
    // No keys yet: every token is refused with 401.
    assert_invalid(&gw, &signed_by("rsa-a"), "no key for this token").await;
    // The server comes up; the next fetch (after the cooldown) takes its keys.
    let keys = JsonService::start_on(addr, &jwks_with(&["rsa-a"])).await;
    wait_out_cooldown().await;
    assert_eq!(bearer(&gw, &signed_by("rsa-a"), &[]).await.status, 200);
    assert_eq!(keys.hits(), 1);
    assert_eq!(up.requests(), 1);
}

#[tokio::test]
async fn a_key_server_answering_garbage_keeps_the_known_keys() {
    let keys = JsonService::start(&jwks_with(&["rsa-a"])).await;
    let (gw, _up) = with_key_server(keys.addr).await;
    keys.set("{ \"keys\": [] }");
    wait_out_cooldown().await;
    assert_invalid(&gw, &signed_by("rsa-b"), "no key for this token").await;
    keys.set("<html>maintenance</html>");
    wait_out_cooldown().await;
    assert_invalid(&gw, &signed_by("rsa-b"), "no key for this token").await;
    assert_eq!(keys.hits(), 3);
    assert_eq!(bearer(&gw, &signed_by("rsa-a"), &[]).await.status, 200);
}
