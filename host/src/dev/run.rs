//! `gatehouse plugin run`: one plugin, one request, no server. The plugin is
//! loaded, initialised and called exactly as the gateway would (same
//! runtime, same sandbox limits, same host calls and shared state), and what
//! it decided is printed: the request as it would go upstream, or the reply
//! it answered with, then the response after its `on-response`.

use crate::config::{Limits, OnError, PluginEntry};
use crate::plugin::{
    Chain, ContextRes, EntryPool, Outcome, Reply, RequestRes, RequestStep, ResponseRes, Runtime,
};
use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to run and on what.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub wasm: PathBuf,
    /// The entry's config as JSON (what `[routes.plugins.config]` becomes).
    pub config_json: String,
    /// `METHOD /path?query`.
    pub request: String,
    pub headers: Vec<String>,
    pub body: Option<Vec<u8>>,
    pub client: SocketAddr,
    /// Facts set before the plugin runs, as an earlier plugin would (`consumer=alice`).
    pub context: Vec<String>,
    /// What the stand-in upstream answers when the plugin lets the request through.
    pub upstream_status: u16,
    pub upstream_headers: Vec<String>,
    pub upstream_body: Option<Vec<u8>>,
    /// The same request this many times (state such as counters carries over).
    pub repeat: u32,
    pub limits: Limits,
}

/// How the last run ended, for the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    Respond(u16),
    Failed,
}

/// Runs the spec and writes the report to `out`.
pub async fn run(
    runtime: &Runtime,
    spec: &RunSpec,
    out: &mut impl std::io::Write,
) -> anyhow::Result<Verdict> {
    let request = parse_request(spec)?;
    let upstream_headers = parse_headers(&spec.upstream_headers, "--upstream-header")?;
    let bag = parse_context(&spec.context)?;
    let name = plugin_name(&spec.wasm);
    let plugin = runtime
        .load(&name, &spec.wasm)
        .map_err(|e| anyhow!("{e}"))?;
    let entry = PluginEntry {
        plugin: name.clone(),
        config_json: spec.config_json.clone(),
        on_error: OnError::FailClosed,
        limits: spec.limits,
        allow_hosts: Vec::new(),
        location: Default::default(),
    };
    let started = Instant::now();
    let pool = EntryPool::new(
        plugin.clone(),
        &entry,
        Arc::from("plugin-run"),
        runtime.services.clone(),
        1,
    )
    .await
    .map_err(|e| anyhow!("{e}"))?;
    let mut report = String::new();
    let _ = writeln!(
        report,
        "plugin    {name} ({} bytes, sha256 {}…, {}, machine code from the {})",
        plugin.size,
        &plugin.sha256[..12],
        plugin.contract,
        plugin.compiled().as_str()
    );
    let edits = &pool.edits;
    let declared = match (edits.request.len(), edits.response.len()) {
        (0, 0) => String::new(),
        (req, resp) => format!("; declared edits: {req} request, {resp} response"),
    };
    let _ = writeln!(
        report,
        "init      ok in {} (hooks: {}{declared})",
        ms(started.elapsed()),
        hook_names(pool.hooks)
    );
    out.write_all(report.as_bytes())?;
    let chain = Chain::new(vec![pool]);
    let mut verdict = Verdict::Failed;
    for i in 1..=spec.repeat.max(1) {
        let last = i == spec.repeat.max(1);
        let mut report = String::new();
        if spec.repeat > 1 {
            let _ = writeln!(report, "--- run {i} of {}", spec.repeat);
        }
        verdict = once(
            &chain,
            &request,
            &bag,
            spec,
            &upstream_headers,
            last,
            &mut report,
        )
        .await;
        out.write_all(report.as_bytes())?;
    }
    let memory = chain.entries[0].linear_memory();
    writeln!(
        out,
        "memory    {} of linear memory (limit {})",
        bytesize::ByteSize(memory as u64),
        bytesize::ByteSize(spec.limits.memory)
    )?;
    Ok(verdict)
}

/// The parsed request line, headers and body.
struct Request {
    parts: http::request::Parts,
    body: Option<Bytes>,
}

async fn once(
    chain: &Chain,
    request: &Request,
    bag: &HashMap<String, String>,
    spec: &RunSpec,
    upstream_headers: &HeaderMap,
    detail: bool,
    report: &mut String,
) -> Verdict {
    let mut ctx = Box::new(ContextRes {
        bag: bag.clone(),
        ..ContextRes::new(
            Arc::from("plugin-run"),
            Arc::from("upstream"),
            Arc::from(uuid::Uuid::new_v4().simple().to_string()),
            spec.client,
        )
    });
    let mut req = Box::new(RequestRes::new(request.parts.clone(), request.body.clone()));
    let started = Instant::now();
    let (step, ran) = chain.on_request(&mut ctx, &mut req).await;
    let took = ms(started.elapsed());
    match step {
        RequestStep::Failed(f) => {
            let _ = writeln!(report, "on-request  failed in {took}: {}", f.error);
            Verdict::Failed
        }
        RequestStep::Respond(reply) => {
            let _ = writeln!(report, "on-request  respond {} in {took}", reply.status);
            if detail {
                write_reply(report, &reply);
                // Headers set for the client land on the reply too.
                for (n, v) in &ctx.response_headers {
                    let _ = writeln!(report, "< {n}: {}", String::from_utf8_lossy(v.as_bytes()));
                }
                write_bag(report, &ctx.bag, bag);
            }
            Verdict::Respond(reply.status)
        }
        RequestStep::Upstream => {
            let _ = writeln!(report, "on-request  continue in {took}");
            if detail {
                let _ = writeln!(report, "upstream request:");
                let p = &req.parts;
                let _ = writeln!(report, "> {} {}", p.method, p.uri);
                write_headers(report, '>', &p.headers);
                write_body(report, '>', req.body.as_deref());
                write_bag(report, &ctx.bag, bag);
            }
            if !chain.has_response_phase() && ctx.response_headers.is_empty() {
                return Verdict::Continue;
            }
            let mut parts = http::Response::new(()).into_parts().0;
            parts.status =
                http::StatusCode::from_u16(spec.upstream_status).unwrap_or(http::StatusCode::OK);
            parts.headers = upstream_headers.clone();
            let body = spec.upstream_body.clone().map(Bytes::from);
            if let Some(b) = &body
                && !parts.headers.contains_key(http::header::CONTENT_LENGTH)
            {
                parts
                    .headers
                    .insert(http::header::CONTENT_LENGTH, HeaderValue::from(b.len()));
            }
            ctx.apply_response_headers(&mut parts.headers);
            let mut resp = ResponseRes {
                parts,
                body: Some(body.unwrap_or_default()),
                body_visible: false,
            };
            let failed = RefCell::new(None);
            let started = Instant::now();
            chain
                .on_response(ran, &mut ctx, &mut req, &mut resp, Outcome::Upstream, |f| {
                    *failed.borrow_mut() = Some(f.error.to_string());
                    let mut parts = http::Response::new(()).into_parts().0;
                    parts.status = http::StatusCode::BAD_GATEWAY;
                    ResponseRes {
                        parts,
                        body: None,
                        body_visible: false,
                    }
                })
                .await;
            ctx.apply_response_headers(&mut resp.parts.headers);
            let took = ms(started.elapsed());
            if let Some(error) = failed.into_inner() {
                let _ = writeln!(report, "on-response failed in {took}: {error}");
                return Verdict::Failed;
            }
            if chain.has_response_hooks() {
                let _ = writeln!(report, "on-response done in {took}");
            }
            if detail {
                let _ = writeln!(report, "response to the client:");
                let _ = writeln!(report, "< {}", resp.parts.status);
                write_headers(report, '<', &resp.parts.headers);
                write_body(report, '<', resp.body.as_deref());
            }
            Verdict::Continue
        }
    }
}

fn write_reply(report: &mut String, reply: &Reply) {
    let _ = writeln!(report, "reply:");
    let status = http::StatusCode::from_u16(reply.status)
        .map(|s| s.to_string())
        .unwrap_or_else(|_| reply.status.to_string());
    let _ = writeln!(report, "< {status}");
    for (n, v) in &reply.headers {
        let _ = writeln!(report, "< {n}: {v}");
    }
    write_body(report, '<', Some(&reply.body));
}

fn write_headers(report: &mut String, mark: char, headers: &HeaderMap) {
    for (n, v) in headers {
        let _ = writeln!(
            report,
            "{mark} {n}: {}",
            String::from_utf8_lossy(v.as_bytes())
        );
    }
}

fn write_body(report: &mut String, mark: char, body: Option<&[u8]>) {
    let Some(body) = body.filter(|b| !b.is_empty()) else {
        return;
    };
    let _ = writeln!(report, "{mark}");
    match std::str::from_utf8(body) {
        Ok(text) => {
            for line in text.lines() {
                let _ = writeln!(report, "{mark} {line}");
            }
        }
        Err(_) => {
            let _ = writeln!(report, "{mark} ({} bytes, not UTF-8)", body.len());
        }
    }
}

/// Context values the plugin set or changed.
fn write_bag(
    report: &mut String,
    after: &HashMap<String, String>,
    before: &HashMap<String, String>,
) {
    let mut set: Vec<_> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .collect();
    set.sort();
    for (k, v) in set {
        let _ = writeln!(report, "context   {k} = {v}");
    }
}

fn hook_names(hooks: crate::plugin::Hooks) -> String {
    use crate::plugin::Hooks;
    let names: Vec<&str> = [
        (Hooks::ON_REQUEST, "on-request"),
        (Hooks::ON_RESPONSE, "on-response"),
        (Hooks::REQUEST_BODY, "request-body"),
        (Hooks::RESPONSE_BODY, "response-body"),
    ]
    .into_iter()
    .filter(|(h, _)| hooks.contains(*h))
    .map(|(_, n)| n)
    .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// `foo.wasm` → `foo`.
fn plugin_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".into())
}

fn parse_request(spec: &RunSpec) -> anyhow::Result<Request> {
    let line = spec.request.trim();
    let (method, target) = line
        .split_once(char::is_whitespace)
        .ok_or_else(|| anyhow!("--request \"{line}\": expected \"METHOD /path\""))?;
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|_| anyhow!("--request: invalid method \"{method}\""))?;
    let target = target.trim();
    if !target.starts_with('/') {
        bail!("--request: the target \"{target}\" must start with '/'");
    }
    let uri: http::Uri = target
        .parse()
        .with_context(|| format!("--request: invalid path \"{target}\""))?;
    let mut parts = http::Request::new(()).into_parts().0;
    parts.method = method;
    parts.uri = uri;
    parts.headers = parse_headers(&spec.headers, "--header")?;
    if !parts.headers.contains_key(http::header::HOST) {
        parts
            .headers
            .insert(http::header::HOST, HeaderValue::from_static("localhost"));
    }
    let body = spec.body.clone().map(Bytes::from);
    if let Some(b) = &body
        && !parts.headers.contains_key(http::header::CONTENT_LENGTH)
    {
        parts
            .headers
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from(b.len()));
    }
    Ok(Request { parts, body })
}

fn parse_headers(lines: &[String], flag: &str) -> anyhow::Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for line in lines {
        let (n, v) = line
            .split_once(':')
            .ok_or_else(|| anyhow!("{flag} \"{line}\": expected \"name: value\""))?;
        let name = HeaderName::from_bytes(n.trim().as_bytes())
            .map_err(|_| anyhow!("{flag} \"{line}\": invalid header name"))?;
        let value = HeaderValue::from_str(v.trim())
            .map_err(|_| anyhow!("{flag} \"{line}\": invalid header value"))?;
        map.append(name, value);
    }
    Ok(map)
}

fn parse_context(pairs: &[String]) -> anyhow::Result<HashMap<String, String>> {
    pairs
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| anyhow!("--context \"{p}\": expected KEY=VALUE"))
        })
        .collect()
}

/// `@file` reads a file; anything else is the value itself.
pub fn text_or_file(value: &str) -> anyhow::Result<Vec<u8>> {
    match value.strip_prefix('@') {
        Some(path) => std::fs::read(path).with_context(|| format!("cannot read {path}")),
        None => Ok(value.as_bytes().to_vec()),
    }
}
