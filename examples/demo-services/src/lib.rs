//! An echo service: answers every request with JSON describing what reached
//! it (service name, method, path, query, headers, body length). It counts
//! TCP connections and requests so tests can check pooling and balancing.
//! A request header `x-echo-delay-ms` delays the answer, `x-echo-status`
//! sets its status, and each `x-echo-header: NAME: VALUE` adds a response header.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::TcpListener;

/// A running echo service.
pub struct Echo {
    pub name: String,
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    /// Connections open now.
    pub open: Arc<AtomicUsize>,
    pub requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Echo {
    /// Serves on `listener` until dropped.
    pub fn serve(name: &str, listener: TcpListener) -> Echo {
        let addr = listener
            .local_addr()
            .expect("bound listener has an address");
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (conns, now_open, reqs, svc_name) = (
            connections.clone(),
            open.clone(),
            requests.clone(),
            Arc::<str>::from(name),
        );
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                conns.fetch_add(1, Ordering::SeqCst);
                now_open.fetch_add(1, Ordering::SeqCst);
                let (reqs, svc_name, now_open) = (reqs.clone(), svc_name.clone(), now_open.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        reqs.fetch_add(1, Ordering::SeqCst);
                        echo(svc_name.clone(), req)
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                    now_open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Echo {
            name: name.to_owned(),
            addr,
            connections,
            open,
            requests,
            task,
        }
    }

    /// Binds `addr` (port 0 for any) and serves.
    pub async fn bind(name: &str, addr: &str) -> std::io::Result<Echo> {
        Ok(Echo::serve(name, TcpListener::bind(addr).await?))
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Connections open now (closed ones are counted once the server has
    /// seen them close).
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo(
    name: Arc<str>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let header = |n: &str| {
        parts
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if let Some(ms) = header("x-echo-delay-ms").and_then(|v| v.parse::<u64>().ok()) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    let status = header("x-echo-status")
        .and_then(|v| v.parse::<u16>().ok())
        .unwrap_or(200);
    // Repeated headers are combined as HTTP allows: values joined by ", ".
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .keys()
        .map(|n| {
            let values: Vec<&str> = parts
                .headers
                .get_all(n)
                .iter()
                .map(|v| v.to_str().unwrap_or(""))
                .collect();
            (
                n.as_str().to_owned(),
                serde_json::Value::String(values.join(", ")),
            )
        })
        .collect();
    let json = serde_json::json!({
        "service": &*name,
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body_length": body.len(),
        "body": String::from_utf8_lossy(&body),
    });
    let mut resp = Response::new(Full::new(Bytes::from(json.to_string())));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    resp.headers_mut().insert(
        "content-type",
        "application/json".parse().expect("static value"),
    );
    resp.headers_mut().insert(
        "x-powered-by",
        "demo-services".parse().expect("static value"),
    );
    let mut seen: Vec<hyper::header::HeaderName> = Vec::new();
    for wanted in parts
        .headers
        .get_all("x-echo-header")
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        let Some((n, v)) = wanted.split_once(':') else {
            continue;
        };
        if let (Ok(n), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(n.trim().as_bytes()),
            hyper::header::HeaderValue::from_str(v.trim()),
        ) {
            // The first mention of a name replaces the service's own header.
            if seen.contains(&n) {
                resp.headers_mut().append(n, v);
            } else {
                seen.push(n.clone());
                resp.headers_mut().insert(n, v);
            }
        }
    }
    Ok(resp)
}
