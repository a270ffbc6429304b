//! Proxy header semantics: hop-by-hop headers (RFC 9110 §7.6.1) and the
//! `X-Forwarded-*` family.

use crate::timer::LazyTimer;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use smallvec::SmallVec;
use std::net::SocketAddr;

static HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Whether `name` is one of [`HOP_BY_HOP`]; matched by length first, so
/// most names are ruled out without comparing bytes.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Removes the headers meant for one connection only, including every
/// header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names finds that, where
    // removing each candidate would hash it. Most others carry only
    // `Connection: keep-alive` (nginx answers with it): only the names
    // present are looked up again to be removed.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let present: SmallVec<[HeaderName; 2]> = headers
        .keys()
        .filter(|n| is_hop_by_hop(n))
        .cloned()
        .collect();
    // What `Connection` names besides the standard ones, which are gone
    // with `present` when there.
    let named: SmallVec<[HeaderName; 2]> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|n| {
            !HOP_BY_HOP
                .iter()
                .any(|h| h.as_str().eq_ignore_ascii_case(n))
        })
        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .collect();
    for n in present.iter().chain(&named) {
        headers.remove(n);
    }
}

/// A connection's client: its address, its IP as an `X-Forwarded-For`
/// entry, written once for all the requests the connection carries, and the
/// connection's timer, which its requests wait for their upstream on.
#[derive(Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    forwarded_for: HeaderValue,
    pub timer: LazyTimer,
}

impl Peer {
    pub fn new(addr: SocketAddr, timer: LazyTimer) -> Peer {
        let ip = addr.ip().to_string();
        Peer {
            addr,
            forwarded_for: HeaderValue::try_from(ip).expect("an IP address is a header value"), // ok: digits, hex, dots and colons only
            timer,
        }
    }
}

/// Appends the client to `X-Forwarded-For` and records the original host
/// and scheme, for the upstream to see who asked and how.
pub fn add_forwarded(headers: &mut HeaderMap, client: &Peer) {
    static XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
    static XFH: HeaderName = HeaderName::from_static("x-forwarded-host");
    static XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
    let ip = &client.forwarded_for;
    let xff = match headers.get(&XFF).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => {
            let mut v = Vec::with_capacity(prev.len() + 2 + ip.len());
            v.extend_from_slice(prev.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(ip.as_bytes());
            HeaderValue::from_bytes(&v).ok()
        }
        _ => Some(ip.clone()),
    };
    if let Some(v) = xff {
        headers.insert(XFF.clone(), v);
    }
    if let Some(host) = headers.get(header::HOST).cloned() {
        headers.insert(XFH.clone(), host);
    }
    headers.insert(XFP.clone(), HeaderValue::from_static("http"));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header map of these pairs, in order (a repeated name keeps each value).
    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, value.parse().unwrap());
        }
        h
    }

    #[test]
    fn strips_standard_and_connection_named_headers() {
        let mut h = headers(&[
            ("connection", "close, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn connection_names_are_matched_in_any_case() {
        let mut h = headers(&[
            ("connection", "Keep-Alive, X-Secret , Upgrade"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("upgrade", "websocket"),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().collect::<Vec<_>>(), ["x-kept"]);
    }

    #[test]
    fn a_keep_alive_response_loses_only_its_connection_header() {
        let mut h = headers(&[
            ("server", "nginx"),
            ("content-length", "80"),
            ("connection", "keep-alive"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().collect::<Vec<_>>(), ["server", "content-length"]);
    }

    #[test]
    fn appends_to_forwarded_for() {
        let mut h = headers(&[("x-forwarded-for", "10.0.0.1"), ("host", "api.example.com")]);
        add_forwarded(
            &mut h,
            &Peer::new("127.0.0.1:5000".parse().unwrap(), LazyTimer::default()),
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-host"], "api.example.com");
        assert_eq!(h["x-forwarded-proto"], "http");

        let mut h = HeaderMap::new();
        add_forwarded(
            &mut h,
            &Peer::new("[2001:db8::7]:5000".parse().unwrap(), LazyTimer::default()),
        );
        assert_eq!(h["x-forwarded-for"], "2001:db8::7");
    }

    #[test]
    fn the_quick_check_knows_every_hop_by_hop_name() {
        assert!(HOP_BY_HOP.iter().all(is_hop_by_hop));
        assert!(!is_hop_by_hop(&header::HOST));
        assert!(!is_hop_by_hop(&HeaderName::from_static("x-upgrade")));
    }

    #[test]
    fn a_message_without_hop_by_hop_headers_keeps_them_all() {
        let mut h = headers(&[
            ("host", "api.example.com"),
            ("x-kept", "1"),
            ("x-kept", "2"),
        ]);
        let before = h.clone();
        strip_hop_by_hop(&mut h);
        assert_eq!(h, before);
    }
}
