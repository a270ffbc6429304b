//! The admin API, on its own listener (`server.admin_listen`, off unless
//! set): liveness and readiness, what the gateway is running, Prometheus
//! metrics, and reload. JSON answers (`/metrics` excepted);
//! `server.admin_token`, when set, is required as a bearer token.

use crate::error::{Body, full};
use crate::gateway::Gateway;
use crate::live::{Live, ReloadError};
use http::{Method, Request, Response, StatusCode, header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

/// Answers one admin request.
pub async fn handle<B>(live: &Live, req: Request<B>) -> Response<Body> {
    let gw = live.gateway();
    let gw = &*gw;
    if let Some(token) = &gw.server.admin_token
        && !bearer_matches(&req, token)
    {
        let mut resp = json_response(
            StatusCode::UNAUTHORIZED,
            &json!({ "error": "the admin API needs its bearer token", "status": 401 }),
        );
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return resp;
    }
    let path = req.uri().path();
    let known = matches!(
        path,
        "/healthz"
            | "/readyz"
            | "/metrics"
            | "/admin/reload"
            | "/admin/routes"
            | "/admin/plugins"
            | "/admin/upstreams"
    );
    if !known {
        let msg = format!("no admin endpoint {path}");
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({ "error": msg, "status": 404 }),
        );
    }
    if path == "/admin/reload" {
        return reload(live, req.method()).await;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({ "error": format!("{path} answers GET"), "status": 405 }),
        );
        resp.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    match path {
        "/healthz" => json_response(StatusCode::OK, &json!({ "status": "ok" })),
        "/readyz" if live.is_draining() => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "status": "shutting down" }),
        ),
        "/readyz" => json_response(StatusCode::OK, &json!({ "status": "ready" })),
        "/metrics" => metrics(gw),
        "/admin/routes" => json_response(StatusCode::OK, &routes(gw)),
        "/admin/plugins" => {
            let mut v = plugins(gw);
            v["last_reload"] = json!(live.last_reload());
            json_response(StatusCode::OK, &v)
        }
        _ => json_response(StatusCode::OK, &upstreams(gw)),
    }
}

/// `POST /admin/reload`: the new config is checked completely first; when
/// refused, every error is returned and the running config stays.
async fn reload(live: &Live, method: &Method) -> Response<Body> {
    if method != Method::POST {
        let mut resp = json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({ "error": "/admin/reload answers POST", "status": 405 }),
        );
        resp.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return resp;
    }
    match live.reload().await {
        Ok(routes) => json_response(
            StatusCode::OK,
            &json!({ "status": "reloaded", "routes": routes }),
        ),
        Err(e) => {
            let errors: Vec<String> = match &e {
                ReloadError::Invalid(errs) => errs.0.iter().map(|e| e.to_string()).collect(),
                other => vec![other.to_string()],
            };
            json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({
                    "error": "the new configuration was refused; the running one stays",
                    "status": 422,
                    "errors": errors,
                }),
            )
        }
    }
}

/// The Prometheus scrape: instance gauges are read now, the rest is kept
/// as requests happen.
fn metrics(gw: &Gateway) -> Response<Body> {
    let mut warm: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &gw.routes {
        for e in &r.chain.entries {
            *warm.entry(&e.plugin.name).or_default() += e.idle_count();
        }
    }
    for (plugin, n) in warm {
        gw.metrics.set_instances(plugin, n);
    }
    for r in &gw.routes {
        for t in &r.upstream.targets {
            let up = t.is_healthy() && !t.is_ejected();
            gw.metrics
                .set_target_health(&r.upstream.name, t.authority.as_str(), up);
        }
    }
    let mut resp = Response::new(full(gw.metrics.encode()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    resp
}

/// Compares digests, so the time taken says nothing about the token.
fn bearer_matches<B>(req: &Request<B>, token: &str) -> bool {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    Sha256::digest(given.trim().as_bytes()) == Sha256::digest(token.as_bytes())
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut resp = Response::new(full(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

/// The compiled routes, in file order, with their chains.
fn routes(gw: &Gateway) -> Value {
    let routes: Vec<Value> = gw
        .config
        .routes
        .iter()
        .map(|r| {
            let chain: Vec<Value> = r
                .plugins
                .iter()
                .map(|e| {
                    json!({
                        "plugin": e.plugin,
                        "on_error": e.on_error.as_str(),
                        "limits": {
                            "memory_bytes": e.limits.memory,
                            "timeout_ms": e.limits.timeout.as_millis() as u64,
                            "instances": e.limits.instances,
                            "fetch_timeout_ms": e.limits.fetch_timeout.as_millis() as u64,
                        },
                        "config": serde_json::from_str::<Value>(&e.config_json).unwrap_or(Value::Null),
                    })
                })
                .collect();
            let headers: BTreeMap<&str, &str> = r
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.to_str().unwrap_or("")))
                .collect();
            json!({
                "name": r.name,
                "path": r.path,
                "methods": r.methods.as_ref().map(|m| m.iter().map(|m| m.as_str()).collect::<Vec<_>>()),
                "host": r.host,
                "headers": headers,
                "upstream": r.upstream,
                "strip_prefix": r.strip_prefix,
                "plugins": chain,
            })
        })
        .collect();
    json!({ "routes": routes })
}

/// Each loaded plugin: its file, and each entry using it with its counters.
fn plugins(gw: &Gateway) -> Value {
    let plugins: Vec<Value> = gw
        .plugins
        .values()
        .map(|p| {
            let entries: Vec<Value> = gw
                .routes
                .iter()
                .flat_map(|r| r.chain.entries.iter().map(move |e| (r, e)))
                .filter(|(_, e)| e.plugin.name == p.name)
                .map(|(r, e)| {
                    json!({
                        "route": &*r.name,
                        "warm_instances": e.idle_count(),
                        "stats": e.stats.snapshot(),
                    })
                })
                .collect();
            let loaded_at = p
                .loaded_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            json!({
                "name": &*p.name,
                "file": p.path.display().to_string(),
                "sha256": p.sha256,
                "size_bytes": p.size,
                "contract": p.contract,
                "loaded_at_ms": loaded_at,
                "compiled_by": p.compiled().as_str(),
                "entries": entries,
            })
        })
        .collect();
    json!({ "plugins": plugins })
}

/// Each upstream's targets and requests in flight.
fn upstreams(gw: &Gateway) -> Value {
    let mut seen = BTreeMap::new();
    for r in &gw.routes {
        let u = &r.upstream;
        seen.entry(u.name.to_string()).or_insert_with(|| {
            let targets: Vec<Value> = u
                .targets
                .iter()
                .map(|t| {
                    json!({
                        "target": t.authority.as_str(),
                        "in_flight": t.in_flight(),
                        "healthy": t.is_healthy(),
                        "ejected": t.is_ejected(),
                    })
                })
                .collect();
            // As the circuit-breaker plugin last reported it (if one runs).
            let circuit = gw
                .metrics
                .plugin_gauge_value("circuit_state", &[("upstream", &u.name)])
                .map(|code| match code {
                    0 => "closed",
                    1 => "open",
                    _ => "half-open",
                });
            json!({ "name": &*u.name, "targets": targets, "circuit": circuit })
        });
    }
    json!({ "upstreams": seen.into_values().collect::<Vec<_>>() })
}
