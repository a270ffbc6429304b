//! Proxy header semantics: hop-by-hop headers (RFC 9110 §7.6.1) and the
//! `X-Forwarded-*` family.

use crate::timer::LazyTimer;
use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};
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

/// The bit of `name` in a mask of [`HOP_BY_HOP`] (bit `i` for its `i`th
/// name), or 0 for any other name; matched by length first, so most names
/// are ruled out without comparing bytes.
fn hop_bit(name: &HeaderName) -> u8 {
    match name.as_str() {
        "connection" => 1,
        "keep-alive" => 1 << 1,
        "proxy-connection" => 1 << 2,
        "te" => 1 << 3,
        "trailer" => 1 << 4,
        "transfer-encoding" => 1 << 5,
        "upgrade" => 1 << 6,
        _ => 0,
    }
}

/// Removes the headers meant for one connection only, including every
/// header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names finds which are present: most messages carry
    // none, and most others only `Connection: keep-alive` (nginx answers
    // with it), so each present name is then removed once, by its bit,
    // rather than every candidate looked up.
    let present = headers.keys().fold(0u8, |mask, n| mask | hop_bit(n));
    if present == 0 {
        return;
    }
    // What `Connection` names besides the standard ones, which go by their
    // bits when present.
    let mut named: SmallVec<[HeaderName; 2]> = SmallVec::new();
    if present & 1 != 0
        && let Entry::Occupied(connection) = headers.entry(header::CONNECTION)
    {
        for value in connection.remove_entry_mult().1 {
            let tokens = value
                .as_bytes()
                .split(|b| *b == b',')
                .map(<[u8]>::trim_ascii);
            for token in tokens {
                let standard = HOP_BY_HOP
                    .iter()
                    .any(|h| h.as_str().as_bytes().eq_ignore_ascii_case(token));
                if !standard && let Ok(name) = HeaderName::from_bytes(token) {
                    named.push(name);
                }
            }
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate().skip(1) {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    for name in &named {
        headers.remove(name);
    }
}

/// A connection's client: its address, its IP as text (the connection's
/// `X-Forwarded-For` entry, and the plugins' `client-addr`), written once
/// for all the requests the connection carries, and the connection's timer,
/// which its requests wait for their upstream on.
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

    /// The client's IP as text, as `IpAddr` writes it.
    pub fn ip_text(&self) -> &HeaderValue {
        &self.forwarded_for
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
    fn every_connection_header_and_what_each_names_goes() {
        let mut h = headers(&[
            ("connection", "keep-alive"),
            ("x-a", "1"),
            ("connection", " , x-a,,X-B "),
            ("x-b", "1"),
            ("te", "trailers"),
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
    fn each_hop_by_hop_name_has_its_own_bit() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_bit(name), 1 << i, "{name}");
        }
        assert_eq!(hop_bit(&header::HOST), 0);
        assert_eq!(hop_bit(&HeaderName::from_static("x-upgrade")), 0);
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
