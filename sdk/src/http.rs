//! The request, response and context a plugin sees. Each call goes to the
//! host, which owns the message: nothing is copied that is not asked for.

use crate::__bindings::gatehouse::plugin::types as wit;
use crate::{Error, Result};
use std::sync::OnceLock;

/// Facts about the request beyond the HTTP message, and a per-request bag
/// for handing facts to later plugins (an auth plugin sets `consumer`; a
/// rate limiter keys on it).
///
/// An instance serves one route entry for its whole life (the host keeps a
/// pool of instances per route and entry), so the route's name and its
/// upstream's are asked of the host once and remembered.
pub struct Context<'a>(&'a wit::Context);

impl<'a> Context<'a> {
    pub(crate) fn new(inner: &'a wit::Context) -> Self {
        Context(inner)
    }

    /// The route's name from the config.
    ///
    /// ```no_run
    /// # fn f(ctx: &gatehouse_sdk::Context) {
    /// if ctx.route() == "payments" { /* … */ }
    /// # }
    /// ```
    pub fn route(&self) -> String {
        static ROUTE: OnceLock<String> = OnceLock::new();
        ROUTE.get_or_init(|| self.0.route()).clone()
    }

    /// The name of the route's upstream: key shared state about the
    /// upstream (a circuit breaker's, say) on it.
    ///
    /// ```no_run
    /// # fn f(ctx: &gatehouse_sdk::Context) {
    /// let key = format!("failures:{}", ctx.upstream());
    /// # }
    /// ```
    pub fn upstream(&self) -> String {
        static UPSTREAM: OnceLock<String> = OnceLock::new();
        UPSTREAM.get_or_init(|| self.0.upstream()).clone()
    }

    /// The request id, as the client and the upstream see it in `x-request-id`.
    ///
    /// ```no_run
    /// # fn f(ctx: &gatehouse_sdk::Context) {
    /// gatehouse_sdk::log::info(&format!("handling {}", ctx.request_id()));
    /// # }
    /// ```
    pub fn request_id(&self) -> String {
        self.0.request_id()
    }

    /// The client's socket address, `ip:port` (the TCP peer); behind one of
    /// the gateway's `server.trusted_proxies`, the client's IP alone, as the
    /// proxy's `X-Forwarded-For` names it. [`Context::client_ip`] reads both.
    ///
    /// ```no_run
    /// # fn f(ctx: &gatehouse_sdk::Context) {
    /// let ip = ctx.client_ip();
    /// # }
    /// ```
    pub fn client_addr(&self) -> String {
        self.0.client_addr()
    }

    /// The client's IP address, without the port.
    ///
    /// ```no_run
    /// # fn f(ctx: &gatehouse_sdk::Context) {
    /// let key = format!("ip:{}", ctx.client_ip());
    /// # }
    /// ```
    pub fn client_ip(&self) -> String {
        let addr = self.client_addr();
        match addr.parse::<std::net::SocketAddr>() {
            Ok(a) => a.ip().to_string(),
            Err(_) => addr,
        }
    }

    /// A value set earlier for this request, or a path parameter:
    /// `param.NAME` for each `{NAME}` in the route's path and `param.*` for
    /// a `*` tail (a value a plugin set under the same key wins).
    ///
    /// ```no_run
    /// # fn f(ctx: &gatehouse_sdk::Context) {
    /// let consumer = ctx.get("consumer").unwrap_or_else(|| "anonymous".into());
    /// # }
    /// ```
    pub fn get(&self, key: &str) -> Option<String> {
        self.0.get(key)
    }

    /// Sets a value for later plugins of this request.
    ///
    /// ```no_run
    /// # fn f(ctx: &gatehouse_sdk::Context) {
    /// ctx.set("consumer", "mobile-app");
    /// # }
    /// ```
    pub fn set(&self, key: &str, value: &str) {
        self.0.set(key, value)
    }

    /// Sets a header (replacing any of that name) on the response the
    /// client gets for this request, whoever answers it: the upstream, a
    /// plugin's reply or the gateway. Set in `on_request`, it is applied
    /// before the response phase, so a plugin whose only response work is
    /// headers it decided here can leave `on_response` out
    /// (`ON_RESPONSE = false`) and save the gateway a call into it.
    ///
    /// ```no_run
    /// # fn f(ctx: &gatehouse_sdk::Context) -> gatehouse_sdk::Result<()> {
    /// ctx.set_response_header("ratelimit-remaining", "41")?;
    /// # Ok(()) }
    /// ```
    pub fn set_response_header(&self, name: &str, value: &str) -> Result<()> {
        self.0.set_response_header(name, value).map_err(Error)
    }

    /// [`set_response_header`](Self::set_response_header) for each pair, in
    /// order, in one call to the gateway: all or nothing, a bad name or
    /// value sets none of them.
    ///
    /// ```no_run
    /// # fn f(ctx: &gatehouse_sdk::Context) -> gatehouse_sdk::Result<()> {
    /// ctx.set_response_headers(&[("ratelimit-limit", "60"), ("ratelimit-remaining", "41")])?;
    /// # Ok(()) }
    /// ```
    pub fn set_response_headers(&self, headers: &[(&str, &str)]) -> Result<()> {
        self.0.set_response_headers(headers).map_err(Error)
    }
}

/// The request on its way upstream (read-only in the response phase).
pub struct Request<'a>(&'a wit::Request);

/// The response on its way to the client.
pub struct Response<'a>(&'a wit::Response);

/// Where the response in [`Plugin::on_response`](crate::Plugin::on_response) came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered (any status).
    Upstream,
    /// A plugin of the chain answered.
    Plugin,
    /// No connection to the upstream could be made (the gateway answered 502).
    ConnectError,
    /// The upstream did not answer in time (the gateway answered 504).
    Timeout,
    /// The gateway answered for another reason.
    Gateway,
}

impl From<wit::Outcome> for Outcome {
    fn from(o: wit::Outcome) -> Outcome {
        match o {
            wit::Outcome::Upstream => Outcome::Upstream,
            wit::Outcome::Plugin => Outcome::Plugin,
            wit::Outcome::ConnectError => Outcome::ConnectError,
            wit::Outcome::Timeout => Outcome::Timeout,
            wit::Outcome::Gateway => Outcome::Gateway,
        }
    }
}

/// Header access shared by [`Request`] and [`Response`]; the doc examples
/// use a request, and a response reads the same.
macro_rules! header_methods {
    () => {
        /// The first value of a header (names are case-insensitive).
        ///
        /// ```no_run
        /// # fn f(req: &gatehouse_sdk::Request) {
        /// let token = req.header("authorization");
        /// # }
        /// ```
        pub fn header(&self, name: &str) -> Option<String> {
            self.0.header(&name.to_ascii_lowercase())
        }

        /// Every value of a header, in order.
        ///
        /// ```no_run
        /// # fn f(req: &gatehouse_sdk::Request) {
        /// let all = req.header_all("accept");
        /// # }
        /// ```
        pub fn header_all(&self, name: &str) -> Vec<String> {
            self.0.header_all(&name.to_ascii_lowercase())
        }

        /// Every header, names in lower case.
        ///
        /// ```no_run
        /// # fn f(req: &gatehouse_sdk::Request) {
        /// for (name, value) in req.headers() { /* … */ }
        /// # }
        /// ```
        pub fn headers(&self) -> Vec<(String, String)> {
            self.0.headers()
        }

        /// Replaces every value of a header with `value`.
        ///
        /// ```no_run
        /// # fn f(req: &mut gatehouse_sdk::Request) -> gatehouse_sdk::Result<()> {
        /// req.set_header("x-gateway", "gatehouse")?;
        /// # Ok(()) }
        /// ```
        pub fn set_header(&mut self, name: &str, value: &str) -> Result<()> {
            self.0.set_header(name, value).map_err(Error)
        }

        /// [`set_header`](Self::set_header) for each pair, in order, in one
        /// call to the gateway: all or nothing, a bad name or value changes
        /// no header. From three headers on it costs less than a call each;
        /// for one or two, about the same (the list is built here first).
        ///
        /// ```no_run
        /// # fn f(req: &mut gatehouse_sdk::Request) -> gatehouse_sdk::Result<()> {
        /// req.set_headers(&[("x-user-id", "42"), ("x-user-role", "admin")])?;
        /// # Ok(()) }
        /// ```
        pub fn set_headers(&mut self, headers: &[(&str, &str)]) -> Result<()> {
            self.0.set_headers(headers).map_err(Error)
        }

        /// Adds a value to a header, keeping those it has.
        ///
        /// ```no_run
        /// # fn f(req: &mut gatehouse_sdk::Request) -> gatehouse_sdk::Result<()> {
        /// req.append_header("via", "1.1 gatehouse")?;
        /// # Ok(()) }
        /// ```
        pub fn append_header(&mut self, name: &str, value: &str) -> Result<()> {
            self.0.append_header(name, value).map_err(Error)
        }

        /// Removes a header.
        ///
        /// ```no_run
        /// # fn f(req: &mut gatehouse_sdk::Request) -> gatehouse_sdk::Result<()> {
        /// req.remove_header("cookie")?;
        /// # Ok(()) }
        /// ```
        pub fn remove_header(&mut self, name: &str) -> Result<()> {
            self.0.remove_header(name).map_err(Error)
        }

        /// The body, when the plugin set the matching `*_BODY` constant of
        /// [`Plugin`](crate::Plugin); `None` otherwise.
        ///
        /// ```no_run
        /// # fn f(req: &gatehouse_sdk::Request) {
        /// let size = req.body().map_or(0, |b| b.len());
        /// # }
        /// ```
        pub fn body(&self) -> Option<Vec<u8>> {
            self.0.body()
        }

        /// Replaces the body (needs the matching `*_BODY` constant);
        /// `content-length` follows.
        ///
        /// ```no_run
        /// # fn f(req: &mut gatehouse_sdk::Request) -> gatehouse_sdk::Result<()> {
        /// req.set_body(b"{}".to_vec())?;
        /// # Ok(()) }
        /// ```
        pub fn set_body(&mut self, body: Vec<u8>) -> Result<()> {
            self.0.set_body(&body).map_err(Error)
        }
    };
}

impl<'a> Request<'a> {
    pub(crate) fn new(inner: &'a wit::Request) -> Self {
        Request(inner)
    }

    header_methods!();

    /// The method, e.g. `GET`.
    ///
    /// ```no_run
    /// # fn f(req: &gatehouse_sdk::Request) {
    /// let safe = matches!(req.method().as_str(), "GET" | "HEAD");
    /// # }
    /// ```
    pub fn method(&self) -> String {
        self.0.method()
    }

    /// Changes the method.
    ///
    /// ```no_run
    /// # fn f(req: &mut gatehouse_sdk::Request) -> gatehouse_sdk::Result<()> {
    /// req.set_method("POST")?;
    /// # Ok(()) }
    /// ```
    pub fn set_method(&mut self, method: &str) -> Result<()> {
        self.0.set_method(method).map_err(Error)
    }

    /// The path, without the query (after any `strip_prefix`).
    ///
    /// ```no_run
    /// # fn f(req: &gatehouse_sdk::Request) {
    /// let admin = req.path().starts_with("/admin");
    /// # }
    /// ```
    pub fn path(&self) -> String {
        self.0.path()
    }

    /// Changes the path sent upstream; the query is kept.
    ///
    /// ```no_run
    /// # fn f(req: &mut gatehouse_sdk::Request) -> gatehouse_sdk::Result<()> {
    /// req.set_path("/v2/users")?;
    /// # Ok(()) }
    /// ```
    pub fn set_path(&mut self, path: &str) -> Result<()> {
        self.0.set_path(path).map_err(Error)
    }

    /// The raw query string, without `?`.
    ///
    /// ```no_run
    /// # fn f(req: &gatehouse_sdk::Request) {
    /// let q = req.query().unwrap_or_default();
    /// # }
    /// ```
    pub fn query(&self) -> Option<String> {
        self.0.query()
    }

    /// Replaces the query string (`None` removes it).
    ///
    /// ```no_run
    /// # fn f(req: &mut gatehouse_sdk::Request) -> gatehouse_sdk::Result<()> {
    /// req.set_query(Some("source=gateway"))?;
    /// # Ok(()) }
    /// ```
    pub fn set_query(&mut self, query: Option<&str>) -> Result<()> {
        self.0.set_query(query).map_err(Error)
    }
}

impl<'a> Response<'a> {
    pub(crate) fn new(inner: &'a wit::Response) -> Self {
        Response(inner)
    }

    header_methods!();

    /// The status code.
    ///
    /// ```no_run
    /// # fn f(resp: &gatehouse_sdk::Response) {
    /// let failed = resp.status() >= 500;
    /// # }
    /// ```
    pub fn status(&self) -> u16 {
        self.0.status()
    }

    /// Changes the status code (200 to 999).
    ///
    /// ```no_run
    /// # fn f(resp: &mut gatehouse_sdk::Response) -> gatehouse_sdk::Result<()> {
    /// resp.set_status(200)?;
    /// # Ok(()) }
    /// ```
    pub fn set_status(&mut self, status: u16) -> Result<()> {
        self.0.set_status(status).map_err(Error)
    }
}
