//! Caches GET and HEAD responses in the host's shared state, so every
//! instance serves what any instance stored.
//!
//! ```toml
//! [[routes.plugins]]
//! plugin = "cache"
//! [routes.plugins.config]
//! ttl = "30s"
//! max_body = "1MiB"          # larger responses are passed on, not stored
//! vary = ["accept"]          # request headers that make a different entry
//! per_consumer = false       # see below
//! ```
//!
//! Responses say `X-Cache: HIT`, `MISS` or `BYPASS`. Only 200 responses are
//! stored, never one with `Set-Cookie`, and the upstream's `Cache-Control`
//! is honoured: `no-store` and `private` are not stored, `max-age` shortens
//! the TTL. A request with credentials (`Authorization`, a cookie, or a
//! consumer named by an auth plugin) is never served from, nor stored in, a
//! shared entry; with `per_consumer = true` it gets entries keyed on its
//! consumer instead (and, lacking a consumer, still bypasses the cache).
//!
//! The route's responses are buffered for the plugin (up to the server's
//! `max_body_size`).

mod entry;

use gatehouse_sdk::config::{Duration, Size};
use gatehouse_sdk::{
    Action, Context, Error, Outcome, Plugin, Request, Response, Result, clock, export, state,
};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    ttl: Duration,
    #[serde(default = "default_max_body")]
    max_body: Size,
    #[serde(default)]
    vary: Vec<String>,
    #[serde(default)]
    per_consumer: bool,
}

fn default_max_body() -> Size {
    Size(1 << 20)
}

struct Cache {
    ttl_ms: u64,
    max_body: usize,
    vary: Vec<String>,
    per_consumer: bool,
}

const KEY: &str = "cache.key";
const STATUS: &str = "cache.status";

impl Plugin for Cache {
    type Config = Config;
    const RESPONSE_BODY: bool = true;

    fn new(c: Config) -> Result<Self> {
        if c.ttl.is_zero() {
            return Err(Error::msg("`ttl` must be more than 0"));
        }
        Ok(Cache {
            ttl_ms: c.ttl.as_millis() as u64,
            max_body: *c.max_body,
            vary: c.vary.iter().map(|h| h.to_ascii_lowercase()).collect(),
            per_consumer: c.per_consumer,
        })
    }

    fn on_request(&mut self, ctx: &Context, req: &mut Request) -> Result<Action> {
        let method = req.method();
        if method != "GET" && method != "HEAD" {
            return Ok(Action::Continue);
        }
        let credentials = req.header("authorization").is_some() || req.header("cookie").is_some();
        let consumer = ctx.get("consumer");
        let owner = match (
            credentials || consumer.is_some(),
            self.per_consumer,
            consumer,
        ) {
            (false, _, _) => String::new(),
            (true, true, Some(c)) => c,
            _ => {
                ctx.set(STATUS, "BYPASS");
                return Ok(Action::Continue);
            }
        };
        let mut key = format!("{}|{owner}|{}", ctx.route(), req.path());
        if let Some(q) = req.query() {
            key.push('?');
            key.push_str(&q);
        }
        for h in &self.vary {
            key.push('|');
            key.push_str(&req.header(h).unwrap_or_default());
        }
        if let Some(stored) = state::get(&key)
            && let Some(hit) = entry::decode(&stored, clock::now_ms())
        {
            return Ok(Action::Respond(hit));
        }
        ctx.set(KEY, &key);
        ctx.set(STATUS, "MISS");
        Ok(Action::Continue)
    }

    fn on_response(
        &mut self,
        ctx: &Context,
        req: &Request,
        resp: &mut Response,
        outcome: Outcome,
    ) -> Result<()> {
        let Some(status) = ctx.get(STATUS) else {
            return Ok(());
        };
        resp.set_header("x-cache", &status)?;
        let Some(key) = ctx.get(KEY) else {
            return Ok(());
        };
        // A HEAD answer has no body to store; HEAD is served from GET entries.
        let storable =
            outcome == Outcome::Upstream && req.method() == "GET" && resp.status() == 200;
        if !storable || resp.header("set-cookie").is_some() {
            return Ok(());
        }
        let Some(ttl_ms) = self.ttl_for(resp.header("cache-control").as_deref()) else {
            return Ok(());
        };
        let Some(body) = resp.body().filter(|b| b.len() <= self.max_body) else {
            return Ok(());
        };
        let stored = entry::encode(resp.status(), &resp.headers(), &body, clock::now_ms());
        state::set(
            &key,
            &stored,
            Some(std::time::Duration::from_millis(ttl_ms)),
        );
        Ok(())
    }
}

impl Cache {
    /// The TTL the upstream allows, or `None` when it forbids storing.
    fn ttl_for(&self, cache_control: Option<&str>) -> Option<u64> {
        let mut ttl = self.ttl_ms;
        for directive in cache_control
            .unwrap_or("")
            .split(',')
            .map(|d| d.trim().to_ascii_lowercase())
        {
            if directive == "no-store" || directive == "private" || directive == "no-cache" {
                return None;
            }
            if let Some(secs) = directive
                .strip_prefix("max-age=")
                .and_then(|s| s.parse::<u64>().ok())
            {
                ttl = ttl.min(secs.saturating_mul(1000));
            }
        }
        (ttl > 0).then_some(ttl)
    }
}

export!(Cache);
