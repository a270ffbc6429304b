//! Verifies JSON Web Tokens from `Authorization: Bearer`, forwards claims to
//! the upstream as headers, names the consumer, and authorises by claim.
//!
//! ```toml
//! [[routes.plugins]]
//! plugin = "jwt-auth"
//! [routes.plugins.config]
//! algorithms = ["HS256"]             # HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA
//! secret = "change-me"               # HS*; or public_keys = ["-----BEGIN PUBLIC KEY-----…"],
//! # or jwks = { keys = [ … ] }       # an inline JWK set (keys chosen by `kid`)
//! # or jwks_url = "http://127.0.0.1:9100/jwks.json"  # fetched through the host
//! # jwks_refresh = "10m"             # refetch a fetched set this often
//! # jwks_cooldown = "10s"            # the least time between two fetches
//! issuer = "https://auth.example.com"  # checked when set
//! audience = ["orders"]              # checked when set
//! leeway = "30s"
//! forward_claims = { sub = "x-user-id", role = "x-user-role" }  # claim -> upstream header
//! consumer_claim = "sub"             # names the consumer for later plugins
//! [routes.plugins.config.require]    # any listed value passes (RBAC)
//! role = ["admin", "finance"]
//! ```
//!
//! No token, or an `Authorization` that is not `Bearer <token>`: 401 with
//! `WWW-Authenticate: Bearer`. A token that fails (not a JWT, bad signature,
//! an algorithm not listed, expired, not yet valid, wrong issuer or
//! audience, no `exp`): 401 with `error="invalid_token"`. A failed `require`
//! rule: 403. Headers named in `forward_claims` are removed from what the
//! client sent before the claims are set, so they cannot be forged.
//! Verified tokens are remembered (LRU, bounded, never past their `exp`), so a
//! repeated token skips the signature check.
//!
//! A `jwks_url` set is fetched through the host's `outbound` interface, so
//! the entry must allow its host (`allow_hosts = ["127.0.0.1:9100"]`). One
//! copy is shared by every instance (in host state): it is fetched when the
//! first instance starts, again every `jwks_refresh`, and when a token names
//! a `kid` the set lacks (a key rotation), but never more often than once per
//! `jwks_cooldown` across all instances, so a flood of unknown `kid`s cannot
//! hammer the key server. A fetch that fails keeps the keys already known;
//! tokens whose key is unknown get 401, never 500.

mod keys;
mod remote;

use gatehouse_sdk::config::Duration;
use gatehouse_sdk::{Action, Context, Error, Plugin, Reply, Request, Result, export};
use jsonwebtoken::{Algorithm, Validation};
use keys::Keys;
use lru::{DefaultHasher, LruCache};
use remote::RemoteJwks;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::num::NonZeroUsize;
use std::rc::Rc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_algorithms")]
    algorithms: Vec<String>,
    secret: Option<String>,
    #[serde(default)]
    public_keys: Vec<String>,
    jwks: Option<Value>,
    jwks_url: Option<String>,
    jwks_refresh: Option<Duration>,
    jwks_cooldown: Option<Duration>,
    issuer: Option<String>,
    #[serde(default)]
    audience: Vec<String>,
    leeway: Option<Duration>,
    #[serde(default)]
    forward_claims: BTreeMap<String, String>,
    consumer_claim: Option<String>,
    #[serde(default)]
    require: BTreeMap<String, Vec<String>>,
    #[serde(default = "default_cache_size")]
    cache_size: usize,
}

fn default_algorithms() -> Vec<String> {
    vec!["HS256".into()]
}

fn default_cache_size() -> usize {
    1024
}

struct Verified {
    /// The whole token: the cache is keyed by its hash.
    token: Box<str>,
    grant: Rc<Grant>,
    exp: u64,
}

/// What a verified token's claims decide, worked out once per token: the
/// claims and the entry's rules do not change while the token is cached,
/// so a repeated token costs no claim lookups.
struct Grant {
    /// The first `require` rule the claims fail: the 403's message.
    forbidden: Option<String>,
    /// A value for each `forward_claims` header, in its order: `None` for a
    /// claim the token lacks (the header is then removed).
    forward: Vec<Option<String>>,
    /// The consumer named by `consumer_claim`.
    consumer: Option<String>,
}

struct JwtAuth {
    algorithms: Vec<Algorithm>,
    /// The configured keys, plus the fetched set's when there is a `jwks_url`.
    keys: Keys,
    remote: Option<RemoteJwks>,
    validation: Validation,
    forward: Vec<(String, String)>,
    consumer_claim: Option<String>,
    require: BTreeMap<String, Vec<String>>,
    /// Verified tokens by the hash of the token. A hit is compared whole
    /// (`same_token`); two tokens with one hash take turns in the slot.
    cache: LruCache<u64, Verified>,
    hasher: DefaultHasher,
}

impl Plugin for JwtAuth {
    type Config = Config;
    const ON_RESPONSE: bool = false;

    fn new(c: Config) -> Result<Self> {
        let mut algorithms = Vec::new();
        for a in &c.algorithms {
            let alg: Algorithm = a
                .parse()
                .map_err(|_| Error::msg(format!("`algorithms`: unknown algorithm \"{a}\"")))?;
            algorithms.push(alg);
        }
        if algorithms.is_empty() {
            return Err(Error::msg("`algorithms` must list at least one algorithm"));
        }
        let keys = Keys::new(
            &algorithms,
            c.secret.as_deref(),
            &c.public_keys,
            c.jwks.as_ref(),
            c.jwks_url.is_some(),
        )?;
        let remote = match c.jwks_url {
            None => None,
            Some(url) => Some(RemoteJwks::new(
                url,
                &keys,
                c.jwks_refresh.map_or(600_000, |d| d.as_millis() as u64),
                c.jwks_cooldown.map_or(10_000, |d| d.as_millis() as u64),
            )?),
        };
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms.clone();
        validation.leeway = c.leeway.map_or(0, |d| d.as_secs());
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        if let Some(iss) = &c.issuer {
            validation.set_issuer(&[iss]);
        }
        if c.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&c.audience);
        }
        let forward: Vec<(String, String)> = c
            .forward_claims
            .into_iter()
            .map(|(claim, header)| (claim, header.to_ascii_lowercase()))
            .collect();
        let size = NonZeroUsize::new(c.cache_size)
            .ok_or_else(|| Error::msg("`cache_size` must be at least 1"))?;
        let mut plugin = JwtAuth {
            algorithms,
            keys,
            remote,
            validation,
            forward,
            consumer_claim: c.consumer_claim,
            require: c.require,
            cache: LruCache::new(size),
            hasher: DefaultHasher::default(),
        };
        // Have the shared set ready before the first request (and find out
        // now if the entry does not allow the key server's host).
        if let Some(r) = &mut plugin.remote
            && let Some(keys) = r.sync(false)?
        {
            plugin.keys = keys;
        }
        Ok(plugin)
    }

    fn on_request(&mut self, ctx: &Context, req: &mut Request) -> Result<Action> {
        let auth = req.header("authorization").unwrap_or_default();
        let token = match auth.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") && !t.trim().is_empty() => {
                t.trim()
            }
            _ => {
                return Ok(Action::Respond(unauthorized(
                    ctx,
                    "missing bearer token",
                    None,
                )));
            }
        };
        let grant = match self.verify(token) {
            Ok(g) => g,
            Err(why) => {
                return Ok(Action::Respond(unauthorized(
                    ctx,
                    &format!("invalid token: {why}"),
                    Some(&why),
                )));
            }
        };
        if let Some(message) = &grant.forbidden {
            return Ok(Action::Respond(Reply::error(ctx, 403, message)));
        }
        // Only a verified request goes upstream, and every claim header it
        // carries is ours: `set` replaces a client's copy, and a claim the
        // token lacks removes it. (A call per header: for the usual one or
        // two, no dearer than building the list `set_headers` takes.)
        for ((_, header), value) in self.forward.iter().zip(&grant.forward) {
            match value {
                Some(v) => req.set_header(header, v)?,
                None => req.remove_header(header)?,
            }
        }
        if let Some(consumer) = &grant.consumer {
            ctx.set("consumer", consumer);
        }
        Ok(Action::Continue)
    }
}

impl JwtAuth {
    /// What the claims of a verified token decide.
    fn grant(&self, claims: &Map<String, Value>) -> Grant {
        let forbidden = self.require.iter().find_map(|(claim, allowed)| {
            let ok = claim_values(claims.get(claim))
                .iter()
                .any(|v| allowed.contains(v));
            (!ok).then(|| format!("forbidden: claim \"{claim}\" is not one of the allowed values"))
        });
        let forward = self
            .forward
            .iter()
            .map(|(claim, _)| {
                let values = claim_values(claims.get(claim));
                (!values.is_empty()).then(|| values.join(","))
            })
            .collect();
        let consumer = self
            .consumer_claim
            .as_ref()
            .and_then(|name| claim_values(claims.get(name)).into_iter().next());
        Grant {
            forbidden,
            forward,
            consumer,
        }
    }

    fn verify(&mut self, token: &str) -> std::result::Result<Rc<Grant>, String> {
        let now = gatehouse_sdk::clock::now_ms() / 1000;
        let slot = self.hasher.hash_one(token);
        if let Some(hit) = self.cache.get(&slot)
            && same_token(&hit.token, token)
        {
            if now < hit.exp {
                return Ok(hit.grant.clone());
            }
            self.cache.pop(&slot);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| "not a JWT".to_owned())?;
        if !self.algorithms.contains(&header.alg) {
            return Err(format!("algorithm {:?} is not accepted", header.alg));
        }
        if let Some(r) = &mut self.remote {
            let kid_unknown = header
                .kid
                .as_deref()
                .is_some_and(|kid| !self.keys.has_kid(kid));
            // A fetch that was refused by policy was reported at init; here
            // a failed fetch only means the keys stay as they are.
            if let Ok(Some(keys)) = r.sync(kid_unknown) {
                self.keys = keys;
            }
        }
        let mut last = "no key for this token".to_owned();
        for key in self.keys.candidates(header.alg, header.kid.as_deref()) {
            match jsonwebtoken::decode::<Map<String, Value>>(token, key, &self.validation) {
                Ok(data) => {
                    let exp = data.claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
                    let grant = Rc::new(self.grant(&data.claims));
                    self.cache.put(
                        slot,
                        Verified {
                            token: token.into(),
                            grant: grant.clone(),
                            exp,
                        },
                    );
                    return Ok(grant);
                }
                Err(e) => {
                    last = describe(e.kind());
                    // Only a signature mismatch is worth trying the next key for.
                    if !matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) {
                        break;
                    }
                }
            }
        }
        Err(last)
    }
}

/// Whether two tokens are the same, eight bytes at a time and in a time
/// that depends only on their length: no early exit that would tell a
/// prober how much of a remembered token it has guessed. (A slice `==` here
/// compiles to a byte-at-a-time `memcmp`, the costliest step of a hit.)
fn same_token(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let ((words_a, rest_a), (words_b, rest_b)) = (a.as_chunks::<8>(), b.as_chunks::<8>());
    let mut diff = 0u64;
    for (x, y) in words_a.iter().zip(words_b) {
        diff |= u64::from_ne_bytes(*x) ^ u64::from_ne_bytes(*y);
    }
    for (x, y) in rest_a.iter().zip(rest_b) {
        diff |= u64::from(x ^ y);
    }
    diff == 0
}

fn describe(kind: &jsonwebtoken::errors::ErrorKind) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::InvalidSignature => "bad signature".into(),
        K::ExpiredSignature => "expired".into(),
        K::ImmatureSignature => "not yet valid".into(),
        K::InvalidIssuer => "wrong issuer".into(),
        K::InvalidAudience => "wrong audience".into(),
        K::InvalidAlgorithm => "algorithm not accepted for this key".into(),
        K::MissingRequiredClaim(c) => format!("missing claim {c}"),
        K::InvalidClaimFormat(c) => format!("claim {c} is malformed"),
        other => format!("{other:?}").to_ascii_lowercase(),
    }
}

/// A claim as strings: a string or number as one value, an array as many.
fn claim_values(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Number(n)) => vec![n.to_string()],
        Some(Value::Bool(b)) => vec![b.to_string()],
        Some(Value::Array(items)) => items.iter().flat_map(|i| claim_values(Some(i))).collect(),
        _ => Vec::new(),
    }
}

fn unauthorized(ctx: &Context, message: &str, invalid: Option<&str>) -> Reply {
    let challenge = match invalid {
        None => "Bearer".to_owned(),
        Some(why) => format!(
            "Bearer error=\"invalid_token\", error_description=\"{}\"",
            why.replace('"', "'")
        ),
    };
    Reply::error(ctx, 401, message).header("www-authenticate", challenge)
}

export!(JwtAuth);

#[cfg(test)]
mod tests {
    use super::same_token;

    #[test]
    fn tokens_are_the_same_only_when_every_byte_is() {
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
        assert!(same_token(token, token));
        assert!(same_token("", ""));
        // A difference in the first word, the last word and the tail.
        for at in [0, 8, token.len() - 9, token.len() - 1] {
            let mut other = token.as_bytes().to_vec();
            other[at] ^= 1;
            let other = String::from_utf8(other).expect("ascii");
            assert!(!same_token(token, &other), "differs at {at}");
        }
        assert!(!same_token(token, &token[..token.len() - 1]));
        assert!(!same_token("abcdefgh", "abcdefghi"));
    }
}
