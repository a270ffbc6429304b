//! The request, response and context as plugins see them: host-owned
//! resources. Each instance keeps one table entry per kind for its whole
//! life (see `pool::Slots`); a call swaps the request's values in and back.

use crate::router::PathParams;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

/// Facts about the request beyond the HTTP message, and the bag plugins use
/// to hand facts down the chain.
#[derive(Debug, Clone)]
pub struct ContextRes {
    pub route: Arc<str>,
    pub upstream: Arc<str>,
    pub request_id: Arc<str>,
    /// The socket peer.
    pub client: SocketAddr,
    /// The peer's IP as text, written once for its connection (`Peer`):
    /// `client-addr` adds the port to it rather than formatting the
    /// address again on every call.
    pub client_ip: Option<HeaderValue>,
    /// The client named by a trusted proxy's `X-Forwarded-For`, when the
    /// peer is one (`server.trusted_proxies`).
    pub forwarded_client: Option<std::net::IpAddr>,
    /// What plugins set for the ones after them (`context.set`).
    pub bag: HashMap<String, String>,
    /// Read as `param.NAME` where the bag has no such key.
    pub params: PathParams,
    /// Headers plugins set for the client's response (`set-response-header`),
    /// in order; the first `response_headers_applied` are on the response.
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
    pub response_headers_applied: usize,
    /// Each plugin call so far: plugin, phase, time; kept only when an
    /// access log will print them.
    pub timings: Option<Vec<(Arc<str>, &'static str, std::time::Duration)>>,
}

impl ContextRes {
    /// `ip:port` of the peer (as `SocketAddr` writes it), or the IP a
    /// trusted proxy named (no port).
    pub fn client_addr(&self) -> String {
        if let Some(ip) = self.forwarded_client {
            return ip.to_string();
        }
        let text = self.client_ip.as_ref().and_then(|v| v.to_str().ok());
        let (ip, v6) = match (text, self.client) {
            (Some(ip), SocketAddr::V4(_)) => (ip, false),
            // A scoped IPv6 address is written with its scope, which the
            // IP's text lacks.
            (Some(ip), SocketAddr::V6(a)) if a.scope_id() == 0 => (ip, true),
            _ => return self.client.to_string(),
        };
        // Pieces pushed, not `format!`ted: a third of the saving is in that.
        let mut addr = String::with_capacity(ip.len() + 8);
        addr.extend(if v6 { ["[", ip, "]:"] } else { ["", ip, ":"] });
        let _ = write!(addr, "{}", self.client.port());
        addr
    }

    /// A request's context before any plugin ran: no trusted-proxy client,
    /// nothing in the bag, no path parameters, no response headers, and
    /// no timings kept.
    pub fn new(
        route: Arc<str>,
        upstream: Arc<str>,
        request_id: Arc<str>,
        client: SocketAddr,
    ) -> ContextRes {
        ContextRes {
            route,
            upstream,
            request_id,
            client,
            client_ip: None,
            forwarded_client: None,
            bag: HashMap::new(),
            params: PathParams::default(),
            response_headers: Vec::new(),
            response_headers_applied: 0,
            timings: None,
        }
    }

    /// What an instance's context slot holds between calls.
    pub fn vacant() -> ContextRes {
        let none: Arc<str> = Arc::from("");
        ContextRes::new(
            none.clone(),
            none.clone(),
            none,
            SocketAddr::from(([0, 0, 0, 0], 0)),
        )
    }

    /// A value set by a plugin earlier in the chain, else the path
    /// parameter a `param.NAME` key names.
    pub fn get(&self, key: &str) -> Option<String> {
        match self.bag.get(key) {
            Some(v) => Some(v.clone()),
            None => self.params.get(key.strip_prefix("param.")?),
        }
    }

    /// Applies the headers set by `set-response-header` since the last call.
    pub fn apply_response_headers(&mut self, headers: &mut HeaderMap) {
        for (name, value) in &self.response_headers[self.response_headers_applied..] {
            headers.insert(name.clone(), value.clone());
        }
        self.response_headers_applied = self.response_headers.len();
    }

    /// Applies every header set so far, to a response that replaced the one
    /// they were applied to (the gateway's error for a failed plugin).
    pub fn reapply_response_headers(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.response_headers[..self.response_headers_applied] {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// What an instance's table entries for the context and the request hold,
/// and what a request's phases pass down the chain: a box, so lending either
/// to a call swaps a pointer in and back out, not the 200-odd bytes of the
/// value (four swaps each call into the request phase, six into the
/// response phase). The response is lent by value: it is lent only in the
/// response phase, which most entries do not enter.
pub type LentContext = Box<ContextRes>;
pub type LentRequest = Box<RequestRes>;

/// The request on its way upstream.
#[derive(Debug)]
pub struct RequestRes {
    pub parts: http::request::Parts,
    /// The buffered body, when some plugin of the chain asked for it.
    pub body: Option<Bytes>,
    /// Whether the current plugin asked for the body (others see none).
    pub body_visible: bool,
    /// False in the response phase: the request has gone.
    pub writable: bool,
}

/// The response on its way to the client.
#[derive(Debug)]
pub struct ResponseRes {
    pub parts: http::response::Parts,
    pub body: Option<Bytes>,
    pub body_visible: bool,
}

impl RequestRes {
    /// A request as it arrived: writable, its body (if buffered) not yet shown to any plugin.
    pub fn new(parts: http::request::Parts, body: Option<Bytes>) -> RequestRes {
        RequestRes {
            parts,
            body,
            body_visible: false,
            writable: true,
        }
    }

    pub fn check_writable(&self) -> Result<(), String> {
        if self.writable {
            Ok(())
        } else {
            Err("the request is read-only in the response phase".into())
        }
    }

    pub fn path(&self) -> &str {
        self.parts.uri.path()
    }

    pub fn set_path_and_query(&mut self, path: &str, query: Option<&str>) -> Result<(), String> {
        if !path.starts_with('/') {
            return Err(format!("invalid path \"{path}\": must start with '/'"));
        }
        let pq = match query {
            Some(q) if !q.is_empty() => format!("{path}?{q}"),
            _ => path.to_owned(),
        };
        let pq: PathAndQuery = pq
            .parse()
            .map_err(|e| format!("invalid path or query: {e}"))?;
        let mut uri = std::mem::take(&mut self.parts.uri).into_parts();
        uri.path_and_query = Some(pq);
        self.parts.uri = http::Uri::from_parts(uri).map_err(|e| format!("invalid uri: {e}"))?;
        Ok(())
    }
}

/// What requests and responses share, so the host calls serve both alike.
pub trait Message: Send + 'static {
    fn headers(&self) -> &HeaderMap;
    /// The headers to change, or why they cannot be changed now.
    fn headers_mut(&mut self) -> Result<&mut HeaderMap, String>;
    /// The body, if buffered and the current plugin asked for it.
    fn visible_body(&self) -> Option<&Bytes>;
    /// Replaces the body, if the current plugin asked for it.
    fn set_body(&mut self, body: Vec<u8>) -> Result<(), String>;
}

impl Message for RequestRes {
    fn headers(&self) -> &HeaderMap {
        &self.parts.headers
    }
    fn headers_mut(&mut self) -> Result<&mut HeaderMap, String> {
        self.check_writable()?;
        Ok(&mut self.parts.headers)
    }
    fn visible_body(&self) -> Option<&Bytes> {
        self.body.as_ref().filter(|_| self.body_visible)
    }
    fn set_body(&mut self, body: Vec<u8>) -> Result<(), String> {
        if !self.body_visible {
            return Err("set-body needs the request-body hook".into());
        }
        self.check_writable()?;
        replace_body(&mut self.parts.headers, &mut self.body, body);
        Ok(())
    }
}

impl<M: Message> Message for Box<M> {
    fn headers(&self) -> &HeaderMap {
        (**self).headers()
    }
    fn headers_mut(&mut self) -> Result<&mut HeaderMap, String> {
        (**self).headers_mut()
    }
    fn visible_body(&self) -> Option<&Bytes> {
        (**self).visible_body()
    }
    fn set_body(&mut self, body: Vec<u8>) -> Result<(), String> {
        (**self).set_body(body)
    }
}

impl Message for ResponseRes {
    fn headers(&self) -> &HeaderMap {
        &self.parts.headers
    }
    fn headers_mut(&mut self) -> Result<&mut HeaderMap, String> {
        Ok(&mut self.parts.headers)
    }
    fn visible_body(&self) -> Option<&Bytes> {
        self.body.as_ref().filter(|_| self.body_visible)
    }
    fn set_body(&mut self, body: Vec<u8>) -> Result<(), String> {
        if !self.body_visible {
            return Err("set-body needs the response-body hook".into());
        }
        replace_body(&mut self.parts.headers, &mut self.body, body);
        Ok(())
    }
}

/// Header operations shared by requests and responses.
pub fn header_first(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

pub fn header_all(h: &HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect()
}

pub fn header_list(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .filter_map(|(n, v)| {
            v.to_str()
                .ok()
                .map(|v| (n.as_str().to_owned(), v.to_owned()))
        })
        .collect()
}

/// Header names plugins gave, kept parsed, per thread: a chain names the
/// same few headers on every request, and parsing a name that is not a
/// standard one checks it byte by byte and allocates it anew (about 250
/// instructions, seven times a request through the quickstart's users
/// chain). Looked up by the name as given, hashed: a scan of the kept names
/// cost 170 instructions a lookup. Bounded: past `KEPT_NAMES` the least
/// recently used gives way, and names longer than `KEPT_NAME_LEN` are not
/// kept. Plugins choose the names, but a map this small cannot be flooded,
/// so the fast fixed-seed hash is safe here.
const KEPT_NAMES: usize = 32;
const KEPT_NAME_LEN: usize = 64;

type KeptNames = lru::LruCache<Box<str>, HeaderName, foldhash::fast::FixedState>;

thread_local! {
    static KEPT: std::cell::RefCell<KeptNames> = std::cell::RefCell::new(lru::LruCache::with_hasher(
        std::num::NonZeroUsize::new(KEPT_NAMES).expect("a non-zero bound"), // ok: a constant
        foldhash::fast::FixedState::default(),
    ));
}

/// A header name a plugin gave, checked.
pub(super) fn parse_name(name: &str) -> Result<HeaderName, String> {
    KEPT.with_borrow_mut(|kept| {
        if let Some(n) = kept.get(name) {
            return Ok(n.clone());
        }
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name \"{name}\""))?;
        // Only names given as they are written (lower case) are kept, so a
        // plugin that varies the case of a name cannot churn the others out.
        if n.as_str() == name && name.len() <= KEPT_NAME_LEN {
            kept.push(name.into(), n.clone());
        }
        Ok(n)
    })
}

/// A header a plugin named, checked; the value taken as it comes (a
/// `String` without a copy).
pub fn parse_header<V>(name: &str, value: V) -> Result<(HeaderName, HeaderValue), String>
where
    HeaderValue: TryFrom<V>,
{
    let n = parse_name(name)?;
    let v =
        HeaderValue::try_from(value).map_err(|_| format!("invalid value for header \"{name}\""))?;
    Ok((n, v))
}

pub fn header_set(h: &mut HeaderMap, name: &str, value: String) -> Result<(), String> {
    let (n, v) = parse_header(name, value)?;
    h.insert(n, v);
    Ok(())
}

/// Parses every pair before any is used, so a bad one changes nothing.
pub fn parse_headers(
    pairs: Vec<(String, String)>,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    (pairs.into_iter())
        .map(|(name, value)| parse_header(&name, value))
        .collect()
}

/// `header_set` for each pair, in order; all or nothing.
pub fn headers_set(h: &mut HeaderMap, pairs: Vec<(String, String)>) -> Result<(), String> {
    for (n, v) in parse_headers(pairs)? {
        h.insert(n, v);
    }
    Ok(())
}

pub fn header_append(h: &mut HeaderMap, name: &str, value: String) -> Result<(), String> {
    let (n, v) = parse_header(name, value)?;
    h.append(n, v);
    Ok(())
}

pub fn header_remove(h: &mut HeaderMap, name: &str) -> Result<(), String> {
    h.remove(parse_name(name)?);
    Ok(())
}

/// Replaces a message body and keeps its framing headers true to it.
pub fn replace_body(h: &mut HeaderMap, slot: &mut Option<Bytes>, body: Vec<u8>) {
    h.remove(http::header::TRANSFER_ENCODING);
    h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    *slot = Some(Bytes::from(body));
}

impl RequestRes {
    /// What an instance's request slot holds between calls.
    pub fn vacant() -> RequestRes {
        RequestRes {
            parts: http::Request::new(()).into_parts().0,
            body: None,
            body_visible: false,
            writable: false,
        }
    }
}

impl ResponseRes {
    /// What an instance's response slot holds between calls.
    pub fn vacant() -> ResponseRes {
        ResponseRes {
            parts: http::Response::new(()).into_parts().0,
            body: None,
            body_visible: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept() -> Vec<String> {
        KEPT.with_borrow(|k| k.iter().map(|(_, n)| n.as_str().to_owned()).collect())
    }

    #[test]
    fn context_reads_the_bag_then_the_path_parameters() {
        use crate::router::{Pattern, Predicates, Router};
        let router = Router::new(vec![(
            Pattern::parse("/users/{id}/*").unwrap(),
            Predicates {
                methods: None,
                host: None,
                headers: vec![],
            },
        )]);
        let mut ctx = ContextRes::vacant();
        ctx.params = router.params(0, PathAndQuery::from_static("/users/42/a/b?q=1"));
        assert_eq!(ctx.get("param.id").as_deref(), Some("42"));
        assert_eq!(ctx.get("param.*").as_deref(), Some("a/b"));
        assert_eq!(ctx.get("param.other"), None);
        assert_eq!(ctx.get("id"), None);
        // A plugin's own value wins over the path's.
        ctx.bag.insert("param.id".into(), "7".into());
        assert_eq!(ctx.get("param.id").as_deref(), Some("7"));
    }

    #[test]
    fn client_addr_from_the_connections_ip_text_is_the_socket_address() {
        use crate::proxy::Peer;
        use crate::timer::LazyTimer;
        let addrs = [
            "127.0.0.1:5000",
            "203.0.113.250:65535",
            "0.0.0.0:1",
            "[::1]:8080",
            "[2001:db8::1:2]:443",
            "[::ffff:192.0.2.7]:80",
            "[fe80::1%3]:9000",
        ];
        for text in addrs {
            let addr: SocketAddr = text.parse().unwrap();
            let peer = Peer::new(addr, LazyTimer::default());
            let mut ctx = ContextRes::vacant();
            ctx.client = addr;
            ctx.client_ip = Some(peer.ip_text().clone());
            assert_eq!(ctx.client_addr(), addr.to_string(), "{text}");
            assert_eq!(ctx.client_addr(), text);
            // Without the text, the address is written whole.
            ctx.client_ip = None;
            assert_eq!(ctx.client_addr(), text);
        }
        // A client a trusted proxy named: its IP alone.
        let mut ctx = ContextRes::vacant();
        ctx.forwarded_client = Some("198.51.100.9".parse().unwrap());
        assert_eq!(ctx.client_addr(), "198.51.100.9");
    }

    #[test]
    fn header_names_are_kept_parsed_within_bounds() {
        // Whatever an earlier test on this thread left.
        KEPT.with_borrow_mut(KeptNames::clear);
        assert_eq!(parse_name("x-user-id").unwrap(), "x-user-id");
        assert_eq!(parse_name("x-user-id").unwrap(), "x-user-id");
        assert_eq!(kept(), ["x-user-id"]);
        // Another case of a name parses to the same name but is not kept.
        assert_eq!(parse_name("X-Other").unwrap(), "x-other");
        assert_eq!(kept(), ["x-user-id"]);
        assert_eq!(
            parse_name("bad name").unwrap_err(),
            "invalid header name \"bad name\""
        );
        assert_eq!(kept(), ["x-user-id"]);
        let long = "x-".repeat(KEPT_NAME_LEN);
        assert_eq!(parse_name(&long).unwrap(), long.as_str());
        assert_eq!(kept(), ["x-user-id"]);
        // Past the bound, the least recently used give way in turn (a name
        // in use all along stays) and every name still parses to itself.
        for i in 0..2 * KEPT_NAMES {
            let name = format!("x-n{i}");
            assert_eq!(parse_name(&name).unwrap(), name.as_str());
            assert_eq!(parse_name("x-hot").unwrap(), "x-hot");
        }
        let names = kept();
        assert_eq!(names.len(), KEPT_NAMES);
        assert!(!names.contains(&"x-user-id".to_owned()));
        assert!(!names.contains(&"x-n0".to_owned()));
        assert!(names.contains(&"x-hot".to_owned()));
        assert!(names.contains(&format!("x-n{}", 2 * KEPT_NAMES - 1)));
        assert_eq!(parse_name("x-user-id").unwrap(), "x-user-id");
    }
}
