//! Rewrites requests on their way upstream and responses on their way back.
//!
//! ```toml
//! [[routes.plugins]]
//! plugin = "transform"
//! [routes.plugins.config.request]
//! set_headers = { "x-internal-request" = "true" }
//! remove_headers = ["cookie"]
//! rename_headers = { "x-old" = "x-new" }
//! rewrite_path = { from = "^/api/v1/(.*)$", to = "/$1" }
//! add_query = { source = "gateway" }
//! remove_query = ["debug"]
//! [routes.plugins.config.response]
//! set_headers = { "x-served-by" = "gatehouse" }
//! remove_headers = ["server", "x-powered-by"]
//! remove_json_fields = ["internal", "meta.secret"]   # dotted paths (through arrays of objects too)
//! rename_json_fields = { "fullName" = "name" }
//! keep_json_fields = ["id", "name", "email"]         # allow-list: everything else is dropped
//! ```
//!
//! JSON edits apply only to JSON bodies (a `json` content type that parses);
//! other bodies pass untouched. The response body is buffered only when a
//! JSON rule is configured.

mod json;

use gatehouse_sdk::{
    Action, Context, Edits, Error, Hooks, Outcome, Plugin, Request, Response, Result, export,
};
use regex::Regex;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    request: RequestRules,
    #[serde(default)]
    response: ResponseRules,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RequestRules {
    #[serde(default)]
    set_headers: BTreeMap<String, String>,
    #[serde(default)]
    remove_headers: Vec<String>,
    #[serde(default)]
    rename_headers: BTreeMap<String, String>,
    rewrite_path: Option<Rewrite>,
    #[serde(default)]
    add_query: BTreeMap<String, String>,
    #[serde(default)]
    remove_query: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rewrite {
    from: String,
    to: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResponseRules {
    #[serde(default)]
    set_headers: BTreeMap<String, String>,
    #[serde(default)]
    remove_headers: Vec<String>,
    #[serde(default)]
    remove_json_fields: Vec<String>,
    #[serde(default)]
    rename_json_fields: BTreeMap<String, String>,
    keep_json_fields: Option<Vec<String>>,
}

struct Transform {
    config: Config,
    rewrite: Option<(Regex, String)>,
    /// `response.remove_json_fields` and `response.rename_json_fields`,
    /// their paths split once here rather than per response.
    remove_json: Vec<json::Path>,
    rename_json: Vec<(json::Path, String)>,
}

impl RequestRules {
    /// Whether the header rules can be edits the gateway makes itself
    /// (`Plugin::edits`): removals then sets, with no rename between them
    /// (a rename reads the request).
    fn headers_declared(&self) -> bool {
        self.rename_headers.is_empty()
    }

    /// Whether anything is left for `on_request` to do.
    fn needs_call(&self) -> bool {
        !self.headers_declared()
            || self.rewrite_path.is_some()
            || !self.add_query.is_empty()
            || !self.remove_query.is_empty()
    }
}

impl ResponseRules {
    fn has_json_rules(&self) -> bool {
        !self.remove_json_fields.is_empty()
            || !self.rename_json_fields.is_empty()
            || self.keep_json_fields.is_some()
    }
}

impl Plugin for Transform {
    type Config = Config;

    fn new(config: Config) -> Result<Self> {
        let rewrite = match &config.request.rewrite_path {
            Some(r) => {
                let re = Regex::new(&r.from)
                    .map_err(|e| Error::msg(format!("`request.rewrite_path.from`: {e}")))?;
                if !r.to.starts_with('/') {
                    return Err(Error::msg("`request.rewrite_path.to` must start with '/'"));
                }
                Some((re, r.to.clone()))
            }
            None => None,
        };
        let remove_json = (config.response.remove_json_fields.iter())
            .map(|p| json::Path::new(p))
            .collect();
        let rename_json = (config.response.rename_json_fields.iter())
            .map(|(from, to)| (json::Path::new(from), to.clone()))
            .collect();
        Ok(Transform {
            config,
            rewrite,
            remove_json,
            rename_json,
        })
    }

    fn hooks(&self) -> Hooks {
        let resp = &self.config.response;
        Hooks {
            on_request: self.config.request.needs_call(),
            // Header rules are edits the gateway makes: only JSON rules
            // need a call.
            on_response: resp.has_json_rules(),
            response_body: resp.has_json_rules(),
            ..Hooks::of::<Self>()
        }
    }

    fn edits(&self) -> Edits {
        let (req, resp) = (&self.config.request, &self.config.response);
        let mut edits = Edits::new();
        if req.headers_declared() {
            for name in &req.remove_headers {
                edits = edits.remove_request_header(name);
            }
            for (name, value) in &req.set_headers {
                edits = edits.set_request_header(name, value);
            }
        }
        // Made before `on_response`, whose JSON rules come after them.
        for name in &resp.remove_headers {
            edits = edits.remove_response_header(name);
        }
        for (name, value) in &resp.set_headers {
            edits = edits.set_response_header(name, value);
        }
        edits
    }

    fn on_request(&mut self, _ctx: &Context, req: &mut Request) -> Result<Action> {
        let rules = &self.config.request;
        if !rules.headers_declared() {
            for name in &rules.remove_headers {
                req.remove_header(name)?;
            }
            for (from, to) in &rules.rename_headers {
                let values = req.header_all(from);
                if !values.is_empty() {
                    req.remove_header(from)?;
                    req.remove_header(to)?;
                    for v in values {
                        req.append_header(to, &v)?;
                    }
                }
            }
            for (name, value) in &rules.set_headers {
                req.set_header(name, value)?;
            }
        }
        if let Some((re, to)) = &self.rewrite {
            let path = req.path();
            if re.is_match(&path) {
                let new = re.replace(&path, to.as_str()).into_owned();
                req.set_path(&new)?;
            }
        }
        if !rules.add_query.is_empty() || !rules.remove_query.is_empty() {
            let query = req.query().unwrap_or_default();
            let mut pairs: Vec<String> = query
                .split('&')
                .filter(|p| !p.is_empty())
                .filter(|p| {
                    let key = p.split_once('=').map_or(*p, |(k, _)| k);
                    !rules.remove_query.iter().any(|r| r == key)
                        && !rules.add_query.contains_key(key)
                })
                .map(str::to_owned)
                .collect();
            pairs.extend(
                rules
                    .add_query
                    .iter()
                    .map(|(k, v)| format!("{}={}", encode(k), encode(v))),
            );
            let joined = pairs.join("&");
            req.set_query(Some(joined.as_str()).filter(|q| !q.is_empty()))?;
        }
        Ok(Action::Continue)
    }

    fn on_response(
        &mut self,
        _ctx: &Context,
        _req: &Request,
        resp: &mut Response,
        _: Outcome,
    ) -> Result<()> {
        let rules = &self.config.response;
        if rules.has_json_rules() {
            let is_json = resp
                .header("content-type")
                .is_some_and(|ct| names_json(&ct));
            if let (true, Some(body)) = (is_json, resp.body())
                && let Some(mut doc) = json::Node::parse(&body)
            {
                for path in &self.remove_json {
                    json::remove(&mut doc, path);
                }
                for (from, to) in &self.rename_json {
                    json::rename(&mut doc, from, to);
                }
                if let Some(keep) = &rules.keep_json_fields {
                    json::keep(&mut doc, keep);
                }
                resp.set_body(doc.to_vec(body.len()))?;
            }
        }
        Ok(())
    }
}

/// Whether a content type is a JSON one (`application/json`,
/// `application/problem+json`, …), in any case.
fn names_json(content_type: &str) -> bool {
    (content_type.as_bytes().windows(4)).any(|w| w.eq_ignore_ascii_case(b"json"))
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

export!(Transform);

#[cfg(test)]
mod tests {
    use super::names_json;

    #[test]
    fn json_content_types_are_known_in_any_case() {
        for ct in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/problem+json",
        ] {
            assert!(names_json(ct), "{ct}");
        }
        for ct in ["text/plain", "", "jso", "application/x-www-form-urlencoded"] {
            assert!(!names_json(ct), "{ct}");
        }
    }
}
