//! HTTP requests to other services, made by the host for the plugin: fetch
//! a key set, ask an authorisation service, call a webhook.
//!
//! Only hosts listed in the plugin entry's `allow_hosts` can be reached; an
//! entry that lists none can reach nothing ([`FetchError::Denied`]). Each
//! request is bounded by the entry's `limits.fetch_timeout` (2 s unless set),
//! and the time spent waiting does not count against the plugin's CPU
//! deadline. The whole response is returned at once (at most 4 MiB);
//! redirects are not followed.
//!
//! ```toml
//! [[routes.plugins]]
//! plugin = "my-plugin"
//! allow_hosts = ["auth.internal:8080"]   # host, host:port or *.domain
//! limits = { fetch_timeout = "500ms" }
//! ```
//!
//! ```no_run
//! use gatehouse_sdk::outbound::{self, FetchError};
//!
//! match outbound::get("http://auth.internal:8080/keys") {
//!     Ok(resp) if resp.status == 200 => { /* use resp.body */ }
//!     Ok(resp) => gatehouse_sdk::log::warn(&format!("key server answered {}", resp.status)),
//!     Err(FetchError::Timeout) => { /* keep what was cached */ }
//!     Err(e) => gatehouse_sdk::log::warn(&format!("key fetch failed: {e}")),
//! }
//! ```

use crate::__bindings::gatehouse::plugin::outbound as wit;
use std::time::Duration;

/// Why an outbound request got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The URL's host and port are not in the entry's `allow_hosts`.
    Denied(String),
    /// The request is malformed (URL, method or header).
    Invalid(String),
    /// No connection could be made (refused, DNS, TLS ...).
    Connect(String),
    /// No complete answer within the timeout.
    Timeout,
    /// The response body is larger than the host accepts.
    TooLarge,
    /// The connection failed during the exchange.
    Failed(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Denied(m) => write!(f, "not allowed: {m}"),
            FetchError::Invalid(m) => write!(f, "invalid request: {m}"),
            FetchError::Connect(m) => write!(f, "cannot connect: {m}"),
            FetchError::Timeout => f.write_str("timed out"),
            FetchError::TooLarge => f.write_str("response body too large"),
            FetchError::Failed(m) => write!(f, "failed: {m}"),
        }
    }
}

impl std::error::Error for FetchError {}

/// A complete response.
#[derive(Debug, Clone)]
pub struct FetchResponse {
    /// The status code.
    pub status: u16,
    /// Header pairs in order; names are lower-case.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl FetchResponse {
    /// The first value of a header (`name` in any case).
    ///
    /// ```no_run
    /// # fn f(r: &gatehouse_sdk::outbound::FetchResponse) {
    /// let kind = r.header("content-type").unwrap_or("");
    /// # }
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An outbound request, built up and then sent.
///
/// ```no_run
/// use gatehouse_sdk::outbound::FetchRequest;
/// let resp = FetchRequest::new("POST", "http://authz.internal/check")
///     .header("content-type", "application/json")
///     .body(br#"{"user":"alice"}"#.to_vec())
///     .timeout(std::time::Duration::from_millis(200))
///     .send();
/// ```
#[derive(Debug, Clone)]
pub struct FetchRequest {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout: Option<Duration>,
}

impl FetchRequest {
    /// A request with no headers and an empty body.
    pub fn new(method: &str, url: &str) -> FetchRequest {
        FetchRequest {
            method: method.to_owned(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> FetchRequest {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: Vec<u8>) -> FetchRequest {
        self.body = body;
        self
    }

    /// A shorter timeout than the entry's `limits.fetch_timeout` (a longer
    /// one is cut to the limit).
    pub fn timeout(mut self, timeout: Duration) -> FetchRequest {
        self.timeout = Some(timeout);
        self
    }

    /// Sends the request and waits for the whole response.
    pub fn send(self) -> Result<FetchResponse, FetchError> {
        let headers: Vec<(&str, &str)> = (self.headers.iter())
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let request = wit::FetchRequest {
            method: &self.method,
            url: &self.url,
            headers: &headers,
            body: &self.body,
            timeout_ms: self
                .timeout
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        };
        match wit::fetch(request) {
            Ok(r) => Ok(FetchResponse {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
            Err(e) => Err(match e {
                wit::FetchError::Denied(m) => FetchError::Denied(m),
                wit::FetchError::Invalid(m) => FetchError::Invalid(m),
                wit::FetchError::Connect(m) => FetchError::Connect(m),
                wit::FetchError::Timeout => FetchError::Timeout,
                wit::FetchError::TooLarge => FetchError::TooLarge,
                wit::FetchError::Failed(m) => FetchError::Failed(m),
            }),
        }
    }
}

/// `GET url`.
///
/// ```no_run
/// let resp = gatehouse_sdk::outbound::get("http://127.0.0.1:9100/jwks.json");
/// ```
pub fn get(url: &str) -> Result<FetchResponse, FetchError> {
    FetchRequest::new("GET", url).send()
}
