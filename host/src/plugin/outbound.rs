//! The host side of the contract's `outbound` interface: HTTP requests made
//! for a plugin, only to the hosts its entry allows, bounded in time and size.

use super::bindings::{FetchError, FetchRequest, FetchResponse};
use super::exchange::header_list;
use crate::config::AllowedHost;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// The largest response body handed to a plugin.
pub const MAX_FETCH_BODY: usize = 4 * 1024 * 1024;

/// What one plugin entry may reach.
#[derive(Debug, Default)]
pub struct FetchPolicy {
    pub allow: Vec<AllowedHost>,
    pub timeout: Duration,
}

/// The client every entry's outbound requests share (its connection pool too).
pub struct Outbound {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Outbound {
    fn default() -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(8)
            .build(http);
        Outbound { client }
    }
}

impl Outbound {
    pub async fn fetch(
        &self,
        policy: &FetchPolicy,
        req: FetchRequest,
    ) -> Result<FetchResponse, FetchError> {
        let timeout = req.timeout_ms.map_or(policy.timeout, |ms| {
            Duration::from_millis(ms).min(policy.timeout)
        });
        let request = build(policy, req)?;
        let exchange = async {
            let resp = self.client.request(request).await.map_err(|e| {
                let why = error_chain(&e);
                if e.is_connect() {
                    FetchError::Connect(why)
                } else {
                    FetchError::Failed(why)
                }
            })?;
            let (parts, body) = resp.into_parts();
            let declared = parts
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|n| n > MAX_FETCH_BODY as u64) {
                return Err(FetchError::TooLarge);
            }
            let body = Limited::new(body, MAX_FETCH_BODY)
                .collect()
                .await
                .map_err(|e| match e.downcast_ref::<LengthLimitError>() {
                    Some(_) => FetchError::TooLarge,
                    None => FetchError::Failed(format!("reading the response: {e}")),
                })?
                .to_bytes();
            Ok(FetchResponse {
                status: parts.status.as_u16(),
                headers: header_list(&parts.headers),
                body: body.to_vec(),
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| FetchError::Timeout)?
    }
}

/// Checks the request against the entry's policy and builds it.
fn build(policy: &FetchPolicy, req: FetchRequest) -> Result<Request<Full<Bytes>>, FetchError> {
    let uri: Uri = req
        .url
        .parse()
        .map_err(|e| FetchError::Invalid(format!("invalid URL \"{}\": {e}", req.url)))?;
    let default_port = match uri.scheme_str() {
        Some("http") => 80,
        Some("https") => {
            return Err(FetchError::Connect(
                "https is not supported by this gateway build".into(),
            ));
        }
        _ => {
            return Err(FetchError::Invalid(format!(
                "invalid URL \"{}\": expected an absolute http:// URL",
                req.url
            )));
        }
    };
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(default_port);
    if !policy
        .allow
        .iter()
        .any(|a| a.allows(&host, port, default_port))
    {
        return Err(FetchError::Denied(format!(
            "{host}:{port} is not in this plugin entry's allow_hosts"
        )));
    }
    let method = Method::from_bytes(req.method.as_bytes())
        .map_err(|_| FetchError::Invalid(format!("invalid method \"{}\"", req.method)))?;
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in &req.headers {
        let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            return Err(FetchError::Invalid(format!("invalid header \"{name}\"")));
        };
        builder = builder.header(n, v);
    }
    builder
        .body(Full::new(Bytes::from(req.body)))
        .map_err(|e| FetchError::Invalid(e.to_string()))
}

/// An error and its causes on one line ("client error (Connect): tcp
/// connect error: Connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
