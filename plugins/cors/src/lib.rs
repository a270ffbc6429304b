//! Cross-Origin Resource Sharing. Answers preflight `OPTIONS` requests
//! itself (204; the gateway routes a preflight to the route its
//! `Access-Control-Request-Method` would reach, even when the route's
//! `methods` omit OPTIONS) and adds the CORS headers to actual responses.
//! A disallowed origin gets no CORS headers at all, which browsers refuse.
//!
//! ```toml
//! [[routes.plugins]]
//! plugin = "cors"
//! [routes.plugins.config]
//! origins = ["https://app.example.com"]     # or ["*"]
//! methods = ["GET", "POST"]                 # default: GET, HEAD, POST, PUT, PATCH, DELETE
//! headers = ["authorization", "content-type"]  # default: whatever the preflight asks for
//! expose_headers = ["x-request-id"]
//! credentials = true
//! max_age = "1h"
//! ```

use gatehouse_sdk::config::Duration;
use gatehouse_sdk::{
    Action, Context, Error, Outcome, Plugin, Reply, Request, Response, Result, export,
};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "any_origin")]
    origins: Vec<String>,
    #[serde(default = "default_methods")]
    methods: Vec<String>,
    headers: Option<Vec<String>>,
    #[serde(default)]
    expose_headers: Vec<String>,
    #[serde(default)]
    credentials: bool,
    max_age: Option<Duration>,
}

fn any_origin() -> Vec<String> {
    vec!["*".into()]
}

fn default_methods() -> Vec<String> {
    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
        .map(String::from)
        .to_vec()
}

struct Cors {
    any_origin: bool,
    origins: Vec<String>,
    methods: Vec<String>,
    headers: Option<Vec<String>>,
    expose: String,
    credentials: bool,
    max_age: Option<u64>,
}

/// Where the request phase leaves the admitted origin for the response phase.
const ORIGIN_KEY: &str = "cors.origin";

impl Plugin for Cors {
    type Config = Config;

    fn new(c: Config) -> Result<Self> {
        if c.origins.is_empty() {
            return Err(Error::msg(
                "`origins` must list at least one origin, or \"*\"",
            ));
        }
        for o in &c.origins {
            let ok = o == "*"
                || ((o.starts_with("http://") || o.starts_with("https://")) && !o.ends_with('/'));
            if !ok {
                return Err(Error::msg(format!(
                    "`origins`: \"{o}\" is not \"*\" or scheme://host[:port]"
                )));
            }
        }
        Ok(Cors {
            any_origin: c.origins.iter().any(|o| o == "*"),
            origins: c.origins.iter().map(|o| o.to_ascii_lowercase()).collect(),
            methods: c.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
            headers: c
                .headers
                .map(|hs| hs.iter().map(|h| h.to_ascii_lowercase()).collect()),
            expose: c.expose_headers.join(", "),
            credentials: c.credentials,
            max_age: c.max_age.map(|d| d.as_secs()),
        })
    }

    fn on_request(&mut self, ctx: &Context, req: &mut Request) -> Result<Action> {
        let Some(origin) = req.header("origin") else {
            return Ok(Action::Continue);
        };
        let allowed = self.allows(&origin);
        let requested = req.header("access-control-request-method");
        match (req.method().as_str(), requested) {
            ("OPTIONS", Some(method)) => Ok(Action::Respond(
                self.preflight(&origin, allowed, &method, req),
            )),
            _ => {
                if allowed {
                    ctx.set(ORIGIN_KEY, &origin);
                }
                Ok(Action::Continue)
            }
        }
    }

    fn on_response(
        &mut self,
        ctx: &Context,
        _req: &Request,
        resp: &mut Response,
        _: Outcome,
    ) -> Result<()> {
        let Some(origin) = ctx.get(ORIGIN_KEY) else {
            return Ok(());
        };
        resp.set_header(
            "access-control-allow-origin",
            self.allow_origin_value(&origin),
        )?;
        if !self.any_origin || self.credentials {
            resp.append_header("vary", "Origin")?;
        }
        if self.credentials {
            resp.set_header("access-control-allow-credentials", "true")?;
        }
        if !self.expose.is_empty() {
            resp.set_header("access-control-expose-headers", &self.expose)?;
        }
        Ok(())
    }
}

impl Cors {
    fn allows(&self, origin: &str) -> bool {
        self.any_origin || self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }

    /// `*` cannot go with credentials: then the origin itself is echoed.
    fn allow_origin_value<'a>(&self, origin: &'a str) -> &'a str {
        if self.any_origin && !self.credentials {
            "*"
        } else {
            origin
        }
    }

    fn preflight(&self, origin: &str, allowed: bool, method: &str, req: &Request) -> Reply {
        let mut reply = Reply::new(204).header(
            "vary",
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        );
        let requested_headers = req
            .header("access-control-request-headers")
            .unwrap_or_default();
        let headers_ok = match &self.headers {
            None => true,
            Some(list) => requested_headers
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .all(|h| list.contains(&h)),
        };
        if !allowed || !headers_ok || !self.methods.iter().any(|m| m.eq_ignore_ascii_case(method)) {
            return reply;
        }
        reply = reply
            .header(
                "access-control-allow-origin",
                self.allow_origin_value(origin),
            )
            .header("access-control-allow-methods", self.methods.join(", "));
        let allow_headers = match &self.headers {
            Some(list) => list.join(", "),
            None => requested_headers,
        };
        if !allow_headers.is_empty() {
            reply = reply.header("access-control-allow-headers", allow_headers);
        }
        if self.credentials {
            reply = reply.header("access-control-allow-credentials", "true");
        }
        if let Some(secs) = self.max_age {
            reply = reply.header("access-control-max-age", secs.to_string());
        }
        reply
    }
}

export!(Cors);
