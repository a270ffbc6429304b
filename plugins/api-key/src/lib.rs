//! Authenticates requests by API key, from a header or a query parameter.
//! A known key names the request's consumer (`consumer` in the context,
//! for later plugins such as a rate limit keyed on it); a missing or unknown
//! key is answered 401 and never reaches the upstream.
//!
//! ```toml
//! [[routes.plugins]]
//! plugin = "api-key"
//! [routes.plugins.config]
//! header = "x-api-key"            # or query = "api_key"
//! hide_credentials = true         # do not pass the key upstream (default false)
//! [routes.plugins.config.keys]    # key -> consumer
//! "k-abc123" = "mobile-app"
//! # so the config need not hold the raw key: its SHA-256 in hex (here of "secret-key")
//! "sha256:85dbe15d75ef9308c7ae0f33c7a324cc6f4bf519a2ed2f3027bd33c140a4f9aa" = "partner"
//! ```
//!
//! Every presented key is hashed and compared with every configured digest
//! in constant time, so timing tells nothing about how close a guess was.

use gatehouse_sdk::{Action, Context, Error, Plugin, Reply, Request, Result, export};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use subtle::ConstantTimeEq;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    header: Option<String>,
    query: Option<String>,
    keys: BTreeMap<String, String>,
    #[serde(default)]
    hide_credentials: bool,
}

enum Source {
    Header(String),
    Query(String),
}

struct ApiKey {
    source: Source,
    /// (SHA-256 of the key, consumer)
    keys: Vec<([u8; 32], String)>,
    hide: bool,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl Plugin for ApiKey {
    type Config = Config;
    const ON_RESPONSE: bool = false;

    fn new(config: Config) -> Result<Self> {
        let source = match (config.header, config.query) {
            (Some(h), None) => Source::Header(h.to_ascii_lowercase()),
            (None, Some(q)) => Source::Query(q),
            (None, None) => Source::Header("x-api-key".into()),
            (Some(_), Some(_)) => return Err(Error::msg("set `header` or `query`, not both")),
        };
        if config.keys.is_empty() {
            return Err(Error::msg("`keys` must hold at least one key"));
        }
        let mut keys = Vec::new();
        for (key, consumer) in config.keys {
            let d = match key.strip_prefix("sha256:") {
                Some(h) => {
                    let bytes = hex::decode(h).ok().filter(|b| b.len() == 32);
                    let bytes = bytes.ok_or_else(|| {
                        Error::msg(format!(
                            "`keys`: \"{key}\" is not sha256: and 64 hex digits"
                        ))
                    })?;
                    let mut d = [0u8; 32];
                    d.copy_from_slice(&bytes);
                    d
                }
                None => digest(&key),
            };
            keys.push((d, consumer));
        }
        Ok(ApiKey {
            source,
            keys,
            hide: config.hide_credentials,
        })
    }

    fn on_request(&mut self, ctx: &Context, req: &mut Request) -> Result<Action> {
        let presented = match &self.source {
            Source::Header(h) => req.header(h),
            Source::Query(q) => req.query().and_then(|qs| query_value(&qs, q)),
        };
        let Some(presented) = presented.filter(|k| !k.is_empty()) else {
            return Ok(Action::Respond(Reply::error(ctx, 401, "missing API key")));
        };
        let d = digest(&presented);
        // Look at every key, whatever matched, so the time taken does not depend on which.
        let mut found: Option<&str> = None;
        for (k, consumer) in &self.keys {
            if bool::from(k.ct_eq(&d)) {
                found = Some(consumer);
            }
        }
        let Some(consumer) = found else {
            return Ok(Action::Respond(Reply::error(ctx, 401, "invalid API key")));
        };
        ctx.set("consumer", consumer);
        if self.hide {
            match &self.source {
                Source::Header(h) => req.remove_header(h)?,
                Source::Query(q) => {
                    let rest = req.query().map(|qs| without_param(&qs, q));
                    req.set_query(rest.as_deref().filter(|r| !r.is_empty()))?;
                }
            }
        }
        Ok(Action::Continue)
    }
}

fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| v.to_owned())
    })
}

fn without_param(query: &str, name: &str) -> String {
    query
        .split('&')
        .filter(|pair| pair.split_once('=').map_or(*pair, |(k, _)| k) != name)
        .collect::<Vec<_>>()
        .join("&")
}

export!(ApiKey);
