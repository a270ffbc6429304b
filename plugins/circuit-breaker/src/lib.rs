//! A circuit breaker per upstream: closed → open (after too many failures;
//! the upstream is not called) → half-open (after `open_for`, a few trial
//! requests) → closed again, or open again if a trial fails.
//!
//! ```toml
//! [[routes.plugins]]
//! plugin = "circuit-breaker"
//! [routes.plugins.config]
//! failure_threshold = 5          # consecutive failures that open it; or a rate:
//! # failure_rate = 0.5, min_calls = 20, window = "10s"
//! open_for = "30s"
//! half_open_requests = 1         # trial requests let through once open_for has passed
//! failure_statuses = [500, 502, 503, 504]   # connect errors and timeouts always count
//! slow_call = "2s"               # optional: slower calls count as failures
//! fallback = "error"             # error (503 + Retry-After) | cached (last good GET body for the path)
//! ```
//!
//! The state is kept in the host per upstream, so every instance and every
//! route in front of the same upstream sees the same breaker. Transitions
//! are made with compare-and-swap and logged.

mod breaker;

use breaker::{Admit, Breaker};
use gatehouse_sdk::config::Duration;
use gatehouse_sdk::{
    Action, Context, Error, Hooks, Outcome, Plugin, Reply, Request, Response, Result, clock,
    export, state,
};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    failure_threshold: Option<u32>,
    failure_rate: Option<f64>,
    min_calls: Option<u32>,
    window: Option<Duration>,
    open_for: Duration,
    #[serde(default = "one")]
    half_open_requests: u32,
    #[serde(default = "default_statuses")]
    failure_statuses: Vec<u16>,
    slow_call: Option<Duration>,
    #[serde(default)]
    fallback: Fallback,
}

fn one() -> u32 {
    1
}

fn default_statuses() -> Vec<u16> {
    vec![500, 502, 503, 504]
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Fallback {
    #[default]
    Error,
    Cached,
}

struct CircuitBreaker {
    breaker: Breaker,
    failure_statuses: Vec<u16>,
    slow_call_ms: Option<u64>,
    fallback: Fallback,
}

/// What the request phase leaves for the response phase, set only when
/// there is something to say: "trial" when the request is a half-open
/// trial, then " START_MS" when slow calls are timed.
const NOTE_KEY: &str = "circuit-breaker.request";

impl Plugin for CircuitBreaker {
    type Config = Config;

    fn new(c: Config) -> Result<Self> {
        let trip = match (c.failure_threshold, c.failure_rate) {
            (Some(_), Some(_)) => {
                return Err(Error::msg(
                    "set `failure_threshold` or `failure_rate`, not both",
                ));
            }
            (Some(0), None) => return Err(Error::msg("`failure_threshold` must be at least 1")),
            (Some(n), None) => breaker::Trip::Consecutive(n),
            (None, Some(rate)) => {
                if !(rate > 0.0 && rate <= 1.0) {
                    return Err(Error::msg(
                        "`failure_rate` must be more than 0 and at most 1",
                    ));
                }
                let window = c
                    .window
                    .ok_or_else(|| Error::msg("`failure_rate` needs a `window`"))?;
                breaker::Trip::Rate {
                    rate,
                    min_calls: c.min_calls.unwrap_or(20).max(1),
                    window: *window,
                }
            }
            (None, None) => breaker::Trip::Consecutive(5),
        };
        if c.open_for.is_zero() {
            return Err(Error::msg("`open_for` must be more than 0"));
        }
        if c.half_open_requests == 0 {
            return Err(Error::msg("`half_open_requests` must be at least 1"));
        }
        Ok(CircuitBreaker {
            breaker: Breaker {
                trip,
                open_for_ms: c.open_for.as_millis() as u64,
                half_open: c.half_open_requests,
            },
            failure_statuses: c.failure_statuses,
            slow_call_ms: c.slow_call.map(|d| d.as_millis() as u64),
            fallback: c.fallback,
        })
    }

    fn hooks(&self) -> Hooks {
        Hooks {
            response_body: self.fallback == Fallback::Cached,
            ..Hooks::of::<Self>()
        }
    }

    fn on_request(&mut self, ctx: &Context, req: &mut Request) -> Result<Action> {
        let upstream = ctx.upstream();
        // Read once, and only when needed: to judge an open breaker or to
        // time a slow call.
        let read = std::cell::OnceCell::new();
        let now = || *read.get_or_init(clock::now_ms);
        let trial = match self.breaker.admit(&upstream, now) {
            Admit::Closed => false,
            Admit::Trial => true,
            Admit::Refuse { retry_after_ms } => {
                if self.fallback == Fallback::Cached
                    && req.method() == "GET"
                    && let Some(cached) = state::get(&cache_key(&upstream, &req.path()))
                {
                    return Ok(Action::Respond(cached_reply(cached)));
                }
                let reply = Reply::error(ctx, 503, "circuit breaker open").header(
                    "retry-after",
                    retry_after_ms.div_ceil(1000).max(1).to_string(),
                );
                return Ok(Action::Respond(reply));
            }
        };
        let note = match (trial, self.slow_call_ms) {
            (false, None) => return Ok(Action::Continue),
            (true, None) => "trial".to_owned(),
            (trial, Some(_)) => format!("{} {}", if trial { "trial" } else { "-" }, now()),
        };
        ctx.set(NOTE_KEY, &note);
        Ok(Action::Continue)
    }

    fn on_response(
        &mut self,
        ctx: &Context,
        req: &Request,
        resp: &mut Response,
        outcome: Outcome,
    ) -> Result<()> {
        // The upstream was not called: nothing to learn about it.
        if matches!(outcome, Outcome::Plugin | Outcome::Gateway) {
            return Ok(());
        }
        // The request phase's note, read only when the answer needs it.
        let note = std::cell::OnceCell::new();
        let note = || note.get_or_init(|| ctx.get(NOTE_KEY).unwrap_or_default());
        let mark = |i: usize| note().split(' ').nth(i).unwrap_or_default();
        let trial = || mark(0) == "trial";
        let mut failed = match outcome {
            Outcome::Upstream => self.failure_statuses.contains(&resp.status()),
            _ => true,
        };
        // The clock is read only when it can matter: to time a slow call,
        // or to date the opening a failure may cause.
        let now = if failed || self.slow_call_ms.is_some() {
            clock::now_ms()
        } else {
            0
        };
        if let (false, Some(limit)) = (failed, self.slow_call_ms)
            && let Ok(start) = mark(1).parse::<u64>()
        {
            failed = now.saturating_sub(start) > limit;
        }
        let upstream = ctx.upstream();
        self.breaker.record(&upstream, trial, failed, now);
        if !failed
            && self.fallback == Fallback::Cached
            && req.method() == "GET"
            && resp.status() < 300
            && let Some(body) = resp.body()
        {
            let ct = resp.header("content-type").unwrap_or_default();
            state::set(
                &cache_key(&upstream, &req.path()),
                &encode_cached(&ct, &body),
                None,
            );
        }
        Ok(())
    }
}

fn cache_key(upstream: &str, path: &str) -> String {
    format!("cache|{upstream}|{path}")
}

/// A cached body is stored as `content-type \n body`.
fn encode_cached(content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(content_type.len() + 1 + body.len());
    v.extend_from_slice(content_type.as_bytes());
    v.push(b'\n');
    v.extend_from_slice(body);
    v
}

fn cached_reply(stored: Vec<u8>) -> Reply {
    let split = stored.iter().position(|&b| b == b'\n').unwrap_or(0);
    let ct = String::from_utf8_lossy(&stored[..split]).into_owned();
    let body = stored.get(split + 1..).unwrap_or_default().to_vec();
    let mut reply = Reply::new(200)
        .header("x-circuit-breaker", "open; cached response")
        .body(body);
    if !ct.is_empty() {
        reply = reply.header("content-type", ct);
    }
    reply
}

export!(CircuitBreaker);
