//! Limits how many requests a key may make in a window. Counting is done in
//! the host, atomically across every instance and worker, so 300 concurrent
//! requests against a limit of 100 let exactly 100 through.
//!
//! ```toml
//! [[routes.plugins]]
//! plugin = "rate-limit"
//! [routes.plugins.config]
//! limit = 100
//! window = "1h"
//! algorithm = "sliding-window"   # fixed-window | sliding-window | token-bucket
//! key = "ip"                     # ip | consumer | header:NAME | route | global
//! ```
//!
//! Keys: `ip` is the client's IP: the socket peer, or, when the peer is one
//! of the gateway's `server.trusted_proxies`, the client that proxy named in
//! `X-Forwarded-For` (a client-sent one is never believed otherwise); `consumer` is what an auth plugin earlier in the chain
//! named (the client ip when none did); `header:NAME` a request header's value
//! (the client ip when absent); `route` and `global` one counter for all
//! callers. Counters belong to the route, so two routes never share one.
//!
//! Over the limit: 429 in the gateway's JSON shape with `Retry-After`.
//! Responses that passed carry `RateLimit-Limit`, `RateLimit-Remaining` and
//! `RateLimit-Reset` (seconds).

mod algorithm;

use algorithm::Algorithm;
use gatehouse_sdk::config::Duration;
use gatehouse_sdk::{Action, Context, Error, Plugin, Reply, Request, Result, export, log, metrics};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    limit: u64,
    window: Duration,
    #[serde(default)]
    algorithm: Algorithm,
    #[serde(default = "default_key")]
    key: String,
}

fn default_key() -> String {
    "ip".into()
}

enum Key {
    Ip,
    Consumer,
    Header(String),
    Route,
}

struct RateLimit {
    limit: u64,
    /// `limit` as the `RateLimit-Limit` header writes it.
    limit_text: String,
    window_ms: u64,
    algorithm: Algorithm,
    key: Key,
}

impl Plugin for RateLimit {
    type Config = Config;
    // The counts go on the response from the request phase.
    const ON_RESPONSE: bool = false;

    fn new(c: Config) -> Result<Self> {
        if c.limit == 0 {
            return Err(Error::msg("`limit` must be at least 1"));
        }
        let window_ms = u64::try_from(c.window.as_millis()).unwrap_or(u64::MAX);
        if window_ms == 0 {
            return Err(Error::msg("`window` must be at least 1ms"));
        }
        let key = match c.key.as_str() {
            "ip" => Key::Ip,
            "consumer" => Key::Consumer,
            "route" | "global" => Key::Route,
            other => match other.strip_prefix("header:") {
                Some(h) if !h.is_empty() => Key::Header(h.to_ascii_lowercase()),
                _ => {
                    return Err(Error::msg(format!(
                        "`key`: \"{other}\" is not one of ip, consumer, header:NAME, route, global"
                    )));
                }
            },
        };
        Ok(RateLimit {
            limit: c.limit,
            limit_text: c.limit.to_string(),
            window_ms,
            algorithm: c.algorithm,
            key,
        })
    }

    fn on_request(&mut self, ctx: &Context, req: &mut Request) -> Result<Action> {
        // ROUTE|WHO, written into one string sized for the usual key, so
        // it is allocated once.
        let mut key = String::with_capacity(64);
        key.push_str(&ctx.route());
        key.push('|');
        let by_ip = |key: &mut String| {
            key.push_str("ip:");
            key.push_str(&ctx.client_ip());
        };
        match &self.key {
            Key::Ip => key.push_str(&ctx.client_ip()),
            Key::Consumer => match ctx.get("consumer") {
                Some(c) => {
                    key.push_str("consumer:");
                    key.push_str(&c);
                }
                None => by_ip(&mut key),
            },
            Key::Header(h) => match req.header(h) {
                Some(v) => {
                    key.push_str("header:");
                    key.push_str(&v);
                }
                None => by_ip(&mut key),
            },
            Key::Route => {}
        }
        let d = self.algorithm.decide(&key, self.limit, self.window_ms);
        let (mut remaining, mut reset) = (itoa::Buffer::new(), itoa::Buffer::new());
        let headers = [
            ("ratelimit-limit", self.limit_text.as_str()),
            ("ratelimit-remaining", remaining.format(d.remaining)),
            ("ratelimit-reset", reset.format(d.reset_secs)),
        ];
        if !d.allowed {
            let route = ctx.route();
            if let Err(e) = metrics::counter_add("ratelimit_rejected", &[("route", &route)], 1) {
                log::warn(&format!("ratelimit_rejected not counted: {e}"));
            }
            let mut reply = Reply::error(ctx, 429, "rate limit exceeded")
                .header("retry-after", d.retry_after_secs.to_string());
            for (n, v) in headers {
                reply = reply.header(n, v);
            }
            return Ok(Action::Respond(reply));
        }
        ctx.set_response_headers(&headers)?;
        Ok(Action::Continue)
    }
}

export!(RateLimit);
