//! One request, start to end: route, request phase, upstream, response
//! phase, and the gateway's own errors in one JSON shape.

use crate::access_log::{Record, Trace};
use crate::error::{Body, BoxError, GatewayError, full};
use crate::gateway::{Gateway, RouteRuntime};
use crate::plugin::{
    ContextRes, Outcome, Reply, RequestRes, RequestStep, ResponseRes, parse_header,
};
use crate::proxy::{self, Peer};
use crate::router::{Match, PathParams};
use crate::timer::LazyTimer;
use crate::upstream::UpstreamBody;
use bytes::Bytes;
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A response on its way out: parts and either a buffered body or the
/// upstream's stream.
struct Outgoing {
    res: ResponseRes,
    stream: Option<UpstreamBody>,
}

impl Outgoing {
    fn error(e: &GatewayError, request_id: &str) -> Outgoing {
        tracing::debug!(request_id, origin = ?e.origin(), status = e.status().as_u16(), "gateway error: {e}");
        let (parts, body) = e.to_response(request_id).into_parts();
        Outgoing {
            res: ResponseRes {
                parts,
                body: Some(body),
                body_visible: false,
            },
            stream: None,
        }
    }

    fn into_response(self) -> Response<Body> {
        let body = match (self.res.body, self.stream) {
            (Some(b), _) => full(b),
            (None, Some(s)) => s.map_err(BoxError::from).boxed_unsync(),
            (None, None) => full(Bytes::new()),
        };
        Response::from_parts(self.res.parts, body)
    }
}

impl Gateway {
    /// Serves one client request.
    pub async fn handle(&self, req: Request<Incoming>, client: Peer) -> Response<Body> {
        let started = std::time::Instant::now();
        let request_id = request_id(req.headers());
        // Made once, shared by the request upstream and the response.
        let id_header = id_header(&request_id);
        let method = req.method().clone();
        let (parts, body) = req.into_parts();
        let host = self
            .router
            .matches_hosts()
            .then(|| host_of(&parts))
            .flatten();
        // Copy the path only when a log line will show it.
        let logged = self.access_log.is_some() || tracing::enabled!(tracing::Level::DEBUG);
        let path = logged.then(|| parts.uri.path().to_owned());
        let mut trace = Trace::default();
        let mut route: Option<&RouteRuntime> = None;
        let routed = match self.router.route(
            &parts.method,
            host.as_deref(),
            &parts.headers,
            parts.uri.path(),
        ) {
            Match::Found { route } => Ok((route, None)),
            Match::MethodNotAllowed { allow } => {
                // A CORS preflight goes to the route its requested method
                // would reach, so a cors plugin there can answer it even
                // though the route's methods omit OPTIONS.
                let requested = preflight_method(&parts);
                let found = requested.map(|m| {
                    self.router
                        .route(&m, host.as_deref(), &parts.headers, parts.uri.path())
                });
                match found {
                    Some(Match::Found { route }) => Ok((route, Some(allow))),
                    _ => Err(GatewayError::MethodNotAllowed { allow }),
                }
            }
            Match::NotFound => Err(GatewayError::NotFound),
        };
        let out = match routed {
            Ok((index, preflight_of)) => {
                let r = &self.routes[index];
                route = Some(r);
                // Path parameters are for plugins to read: no plugins, none read.
                let params = match (r.chain.is_empty(), parts.uri.path_and_query()) {
                    (false, Some(path)) => self.router.params(index, path.clone()),
                    _ => PathParams::default(),
                };
                let routed = Routed {
                    params,
                    preflight_of,
                };
                let routed_req = (parts, body, &client, routed);
                let id = (request_id.clone(), id_header.clone());
                self.proxy(r, routed_req, id, &mut trace).await
            }
            Err(e) => Outgoing::error(&e, &request_id),
        };
        let mut resp = out.into_response();
        if let Some(v) = id_header {
            resp.headers_mut().insert(X_REQUEST_ID.clone(), v);
        }
        let total = started.elapsed();
        match route {
            Some(r) => r.metrics.request(&method, resp.status().as_u16(), total),
            None => self
                .metrics
                .request("", &method, resp.status().as_u16(), total),
        }
        let route_name = route.map(|r| &*r.name);
        if let Some(log) = &self.access_log {
            let bytes = resp
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok());
            log.write(&Record {
                time: std::time::SystemTime::now(),
                request_id: &request_id,
                client: client.addr,
                method: method.as_str(),
                path: path.as_deref().unwrap_or(""),
                route: route_name,
                status: resp.status().as_u16(),
                bytes,
                total,
                trace: &trace,
            });
        }
        tracing::debug!(
            request_id = &*request_id,
            client = %client.addr,
            method = %method,
            path = path.as_deref().unwrap_or(""),
            route = route_name.unwrap_or("-"),
            status = resp.status().as_u16(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "request"
        );
        resp
    }

    /// The client a trusted proxy in front names, if the peer is one.
    fn forwarded_client(&self, peer: SocketAddr, headers: &HeaderMap) -> Option<IpAddr> {
        let trusted = &self.server.trusted_proxies;
        if trusted.is_empty() {
            return None;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        trusted.client_ip(peer.ip(), hops.into_iter())
    }

    async fn proxy(
        &self,
        route: &RouteRuntime,
        (mut parts, body, client, routed): (http::request::Parts, Incoming, &Peer, Routed),
        (request_id, id_header): (Arc<str>, Option<HeaderValue>),
        trace: &mut Trace,
    ) -> Outgoing {
        proxy::strip_hop_by_hop(&mut parts.headers);
        // For plugins (`client-addr`), read before this hop joins the list.
        let forwarded_client = match route.chain.is_empty() {
            true => None,
            false => self.forwarded_client(client.addr, &parts.headers),
        };
        proxy::add_forwarded(&mut parts.headers, client);
        if let Some(v) = id_header {
            parts.headers.insert(X_REQUEST_ID.clone(), v);
        }
        if let Some(prefix) = &route.strip_prefix
            && let Err(e) = strip_prefix(&mut parts.uri, prefix)
        {
            return Outgoing::error(&e, &request_id);
        }

        let max = self.server.max_body_size;
        let (buffered, mut stream) = if route.chain.wants_request_body() {
            match read_limited(body, &parts.headers, max).await {
                Ok(b) => (Some(b), None),
                Err(e) => return Outgoing::error(&e, &request_id),
            }
        } else {
            (None, Some(body))
        };
        if route.chain.is_empty() {
            // Nothing to lend the request to: no context, no boxes.
            let mut req = RequestRes::new(parts, buffered);
            return match routed.preflight_of {
                Some(allow) => {
                    Outgoing::error(&GatewayError::MethodNotAllowed { allow }, &request_id)
                }
                None => {
                    let timer = &client.timer;
                    let forwarded =
                        self.forward(route, &mut req, stream, timer, &request_id, trace);
                    forwarded.await.0
                }
            };
        }

        let mut ctx = Box::new(ContextRes {
            forwarded_client,
            client_ip: Some(client.ip_text().clone()),
            params: routed.params,
            // Each entry records up to two phases: no growth on the way.
            timings: self
                .access_log
                .is_some()
                .then(|| Vec::with_capacity(2 * route.chain.entries.len())),
            ..ContextRes::new(
                route.name.clone(),
                route.upstream.name.clone(),
                request_id.clone(),
                client.addr,
            )
        });
        let mut req = Box::new(RequestRes::new(parts, buffered));
        let (step, ran) = route.chain.on_request(&mut ctx, &mut req).await;

        let (out, outcome) = match step {
            RequestStep::Upstream => match routed.preflight_of {
                // No plugin answered the preflight: the route does not take OPTIONS.
                Some(allow) => (
                    Outgoing::error(&GatewayError::MethodNotAllowed { allow }, &request_id),
                    Outcome::Gateway,
                ),
                None => {
                    let stream = stream.take();
                    let timer = &client.timer;
                    self.forward(route, &mut req, stream, timer, &request_id, trace)
                        .await
                }
            },
            RequestStep::Respond(reply) => match reply_to_response(reply) {
                Ok(res) => {
                    trace.answered_by = Some(route.chain.entries[ran].tag.plugin.clone());
                    (Outgoing { res, stream: None }, Outcome::Plugin)
                }
                Err(why) => {
                    let plugin = route.chain.entries[ran].tag.plugin.clone();
                    tracing::warn!(
                        route = &*route.name,
                        plugin = &*plugin,
                        request_id = &*request_id,
                        "invalid plugin reply: {why}"
                    );
                    (
                        Outgoing::error(&GatewayError::PluginReply(plugin), &request_id),
                        Outcome::Gateway,
                    )
                }
            },
            RequestStep::Failed(f) => (
                Outgoing::error(&GatewayError::Plugin(f.plugin), &request_id),
                Outcome::Gateway,
            ),
        };
        let Outgoing { mut res, stream } = out;
        // Headers plugins set for the client in the request phase, on
        // whatever answer it is, before the response phase sees it.
        ctx.apply_response_headers(&mut res.parts.headers);
        if ran == 0 {
            trace.plugins = ctx.timings.take().unwrap_or_default();
            return Outgoing { res, stream };
        }
        let id = request_id.clone();
        route
            .chain
            .on_response(ran, &mut ctx, &mut req, &mut res, outcome, move |f| {
                Outgoing::error(&GatewayError::Plugin(f.plugin.clone()), &id).res
            })
            .await;
        ctx.apply_response_headers(&mut res.parts.headers);
        trace.plugins = ctx.timings.take().unwrap_or_default();
        Outgoing { res, stream }
    }

    /// Sends the request to a target of the route's upstream, and again to
    /// another as its `retries` allow, all within the upstream's timeout.
    async fn exchange(
        &self,
        route: &RouteRuntime,
        req: &mut RequestRes,
        mut stream: Option<Incoming>,
        timer: &LazyTimer,
        trace: &mut Trace,
    ) -> Result<Response<UpstreamBody>, GatewayError> {
        let upstream = &route.upstream;
        let policy = upstream
            .retries
            .as_ref()
            .filter(|p| p.methods.contains(&req.parts.method));
        if policy.is_some()
            && req.body.is_none()
            && let Some(s) = stream.take()
        {
            // A retry sends the body again, so it is read first.
            req.body = Some(read_limited(s, &req.parts.headers, self.server.max_body_size).await?);
        }
        // Set by the first send: every try fits in the one timeout.
        let mut deadline = None;
        // Shared, not copied: a path and query is a reference-counted buffer.
        let pq = req
            .parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        let mut tried: smallvec::SmallVec<[usize; 4]> = smallvec::SmallVec::new();
        loop {
            let target = upstream
                .pick_avoiding(&tried)
                .ok_or(GatewayError::NoTarget)?;
            tried.push(target.index());
            // The response phase still reads the request, and a retry
            // sends it again, so keep it then; otherwise hand the headers
            // over without a copy.
            let headers = if route.chain.has_response_hooks() || policy.is_some() {
                req.parts.headers.clone()
            } else {
                std::mem::take(&mut req.parts.headers)
            };
            let body = match (&req.body, stream.take()) {
                (Some(b), _) => full(b.clone()),
                (None, Some(s)) => s.map_err(BoxError::from).boxed_unsync(),
                (None, None) => full(Bytes::new()),
            };
            let mut upstream_req = Box::new(Request::new(body));
            *upstream_req.method_mut() = req.parts.method.clone();
            *upstream_req.uri_mut() = Uri::from(pq.clone());
            *upstream_req.headers_mut() = headers;
            // The target's Host is set when it is sent; the client's went
            // to X-Forwarded-Host.

            trace.target = Some(target.authority().clone());
            let sent = std::time::Instant::now();
            let deadline = *deadline.get_or_insert(sent + upstream.timeout());
            let result = target.send(upstream_req, (sent, deadline), timer).await;
            let took = sent.elapsed();
            trace.upstream_time = Some(trace.upstream_time.unwrap_or_default() + took);
            route.metrics.upstream(took);
            target.report(matches!(&result, Ok(r) if !r.status().is_server_error()));

            let retryable = policy.is_some_and(|p| match &result {
                Ok(r) => p.statuses.contains(&r.status().as_u16()),
                Err(GatewayError::UpstreamConnect) => p.on_connect_error,
                Err(GatewayError::UpstreamTimeout) => p.on_timeout,
                Err(_) => false,
            });
            let tries_left = policy.is_some_and(|p| tried.len() <= p.attempts as usize);
            let backoff = policy.map_or(std::time::Duration::ZERO, |p| p.backoff);
            let time_left = deadline.saturating_duration_since(sent + took) > backoff;
            if !(retryable && tries_left && time_left) {
                return result;
            }
            tracing::debug!(
                upstream = %upstream.name,
                target = %target.authority(),
                attempt = tried.len(),
                "retrying on another target"
            );
            drop(target);
            tokio::time::sleep(backoff).await;
        }
    }

    /// Sends the request upstream and prepares the response for the chain.
    async fn forward(
        &self,
        route: &RouteRuntime,
        req: &mut RequestRes,
        stream: Option<Incoming>,
        timer: &LazyTimer,
        request_id: &str,
        trace: &mut Trace,
    ) -> (Outgoing, Outcome) {
        let resp = match self.exchange(route, req, stream, timer, trace).await {
            Ok(r) => r,
            Err(e) => {
                let outcome = match e {
                    GatewayError::UpstreamConnect => Outcome::ConnectError,
                    GatewayError::UpstreamTimeout => Outcome::Timeout,
                    _ => Outcome::Gateway,
                };
                return (Outgoing::error(&e, request_id), outcome);
            }
        };
        let (mut parts, body) = resp.into_parts();
        proxy::strip_hop_by_hop(&mut parts.headers);
        if route.chain.wants_response_body() {
            match read_limited(body, &parts.headers, self.server.max_body_size).await {
                Ok(b) => (
                    Outgoing {
                        res: ResponseRes {
                            parts,
                            body: Some(b),
                            body_visible: false,
                        },
                        stream: None,
                    },
                    Outcome::Upstream,
                ),
                Err(GatewayError::RequestBodyTooLarge) => (
                    Outgoing::error(&GatewayError::ResponseBodyTooLarge, request_id),
                    Outcome::Gateway,
                ),
                Err(e) => (Outgoing::error(&e, request_id), Outcome::Gateway),
            }
        } else {
            (
                Outgoing {
                    res: ResponseRes {
                        parts,
                        body: None,
                        body_visible: false,
                    },
                    stream: Some(body),
                },
                Outcome::Upstream,
            )
        }
    }
}

/// What routing found besides the route.
struct Routed {
    params: PathParams,
    /// Set when a CORS preflight was routed by its requested method: the
    /// methods the path really allows, for the 405 if no plugin answers.
    preflight_of: Option<Vec<http::Method>>,
}

/// The requested method of a CORS preflight (`OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`).
fn preflight_method(parts: &http::request::Parts) -> Option<http::Method> {
    if parts.method != http::Method::OPTIONS || !parts.headers.contains_key(http::header::ORIGIN) {
        return None;
    }
    let m = parts
        .headers
        .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)?;
    http::Method::from_bytes(m.as_bytes()).ok()
}

/// Reads a whole body, refusing one over `max` bytes.
async fn read_limited<B>(
    body: B,
    headers: &http::HeaderMap,
    max: u64,
) -> Result<Bytes, GatewayError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(GatewayError::RequestBodyTooLarge);
    }
    match Limited::new(body, max as usize).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(GatewayError::RequestBodyTooLarge)
        }
        Err(e) => Err(GatewayError::BadRequest(format!(
            "cannot read the body: {e}"
        ))),
    }
}

fn strip_prefix(uri: &mut Uri, prefix: &str) -> Result<(), GatewayError> {
    let path = uri.path();
    let Some(rest) = path.strip_prefix(prefix) else {
        return Ok(());
    };
    if !(rest.is_empty() || rest.starts_with('/')) {
        return Ok(());
    }
    let new_path = if rest.is_empty() { "/" } else { rest };
    let pq = match uri.query() {
        Some(q) => format!("{new_path}?{q}"),
        None => new_path.to_owned(),
    };
    let mut p = std::mem::take(uri).into_parts();
    p.path_and_query = Some(
        pq.parse()
            .map_err(|_| GatewayError::BadRequest("invalid path".into()))?,
    );
    *uri = Uri::from_parts(p).map_err(|_| GatewayError::BadRequest("invalid path".into()))?;
    Ok(())
}

/// The client's request id when it is a sensible token, else a new one.
fn request_id(headers: &http::HeaderMap) -> Arc<str> {
    let given = headers
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()));
    match given {
        Some(s) => Arc::from(s),
        None => Arc::from(
            &*uuid::Uuid::new_v4()
                .simple()
                .encode_lower(&mut uuid::Uuid::encode_buffer()),
        ),
    }
}

/// The request id as a header value over the id's own buffer: the value
/// the upstream request and the response carry is one `Bytes`, and its
/// clone counts a reference. (A value copied from the id is a buffer
/// `Bytes` makes shareable on its first clone, another allocation.)
fn id_header(id: &Arc<str>) -> Option<HeaderValue> {
    struct Id(Arc<str>);
    impl AsRef<[u8]> for Id {
        fn as_ref(&self) -> &[u8] {
            self.0.as_bytes()
        }
    }
    HeaderValue::from_maybe_shared(Bytes::from_owner(Id(id.clone()))).ok()
}

fn host_of(parts: &http::request::Parts) -> Option<String> {
    let raw = parts
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or(parts.uri.host())?;
    let authority: http::uri::Authority = raw.parse().ok()?;
    Some(authority.host().to_ascii_lowercase())
}

fn reply_to_response(reply: Reply) -> Result<ResponseRes, String> {
    let status = StatusCode::from_u16(reply.status)
        .map_err(|_| format!("invalid status {}", reply.status))?;
    if status.as_u16() < 200 {
        return Err(format!(
            "invalid status {}: a reply must be final (200 or more)",
            reply.status
        ));
    }
    let mut resp = Response::new(());
    *resp.status_mut() = status;
    for (n, v) in &reply.headers {
        let (name, value) = parse_header(n, v.as_str())?;
        resp.headers_mut().append(name, value);
    }
    resp.headers_mut().remove(http::header::TRANSFER_ENCODING);
    resp.headers_mut().insert(
        http::header::CONTENT_LENGTH,
        HeaderValue::from(reply.body.len()),
    );
    let (parts, ()) = resp.into_parts();
    Ok(ResponseRes {
        parts,
        body: Some(Bytes::from(reply.body)),
        body_visible: false,
    })
}
