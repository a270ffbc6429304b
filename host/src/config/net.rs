//! Network rules from the config: which peers are trusted proxies, and which
//! hosts a plugin entry may reach with outbound requests.

use ipnet::IpNet;
use std::net::IpAddr;

/// Proxies in front of the gateway whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> TrustedProxies {
        TrustedProxies(nets)
    }

    /// Parses `10.0.0.0/8`, `192.168.1.10` or `::1` (a bare address is one host).
    pub fn parse_one(s: &str) -> Result<IpNet, String> {
        s.parse::<IpNet>()
            .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
            .map(|n| n.trunc())
            .map_err(|_| {
                format!("invalid trusted proxy \"{s}\": expected an IP address or CIDR block, e.g. \"10.0.0.0/8\"")
            })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client's address as the gateway should see it: the socket peer,
    /// unless the peer is a trusted proxy; then the nearest address in
    /// `X-Forwarded-For` (read from the right) that is not itself a trusted
    /// proxy. Entries left of an untrusted one could be forged by the client,
    /// so they are never believed. `None` means "the socket peer".
    pub fn client_ip<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    ) -> Option<IpAddr> {
        if !self.trusts(peer) {
            return None;
        }
        let mut nearest = None;
        for hop in forwarded_for.rev() {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                // A garbled hop ends what can be believed.
                break;
            };
            nearest = Some(ip);
            if !self.trusts(ip) {
                break;
            }
        }
        nearest
    }
}

/// A host a plugin entry may send outbound requests to: `host` (the scheme's
/// default port only), `host:port`, or `*.domain` / `*.domain:port` for any
/// subdomain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    /// Lower-case; for a wildcard, the suffix after `*.`.
    host: String,
    wildcard: bool,
    port: Option<u16>,
}

impl AllowedHost {
    pub fn parse(s: &str) -> Result<AllowedHost, String> {
        let bad = || {
            format!(
                "invalid allowed host \"{s}\": expected \"host\", \"host:port\" or \"*.domain\" (no scheme or path)"
            )
        };
        if s.contains("://") || s.contains('/') || s.is_empty() {
            return Err(bad());
        }
        let (wildcard, rest) = match s.strip_prefix("*.") {
            Some(r) => (true, r),
            None => (false, s),
        };
        let authority: http::uri::Authority = rest.parse().map_err(|_| bad())?;
        if authority.host().is_empty() || authority.as_str().contains('@') {
            return Err(bad());
        }
        Ok(AllowedHost {
            host: authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase(),
            wildcard,
            port: authority.port_u16(),
        })
    }

    /// Whether `host` (lower-case, IPv6 without brackets) and `port` are
    /// allowed; `default_port` is the URL scheme's.
    pub fn allows(&self, host: &str, port: u16, default_port: u16) -> bool {
        let host_ok = if self.wildcard {
            host.strip_suffix(self.host.as_str())
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'))
        } else {
            host == self.host
        };
        host_ok && port == self.port.unwrap_or(default_port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(v: &str) -> Vec<&str> {
        v.split(',').collect()
    }

    #[test]
    fn the_client_is_the_nearest_untrusted_hop() {
        let nets = ["10.0.0.0/8", "127.0.0.1"].map(|s| TrustedProxies::parse_one(s).unwrap());
        let t = TrustedProxies::new(nets.to_vec());
        assert!(TrustedProxies::parse_one("proxy.example.com").is_err());
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let got = |h: &str| t.client_ip(peer, xff(h).into_iter());
        // The client forged the first entry; the proxy appended what it saw.
        assert_eq!(
            got("6.6.6.6, 203.0.113.7"),
            Some("203.0.113.7".parse().unwrap())
        );
        assert_eq!(
            got("203.0.113.7, 10.1.2.3"),
            Some("203.0.113.7".parse().unwrap())
        );
        // Every hop trusted: the farthest one is the best there is.
        assert_eq!(got("10.9.9.9, 10.1.2.3"), Some("10.9.9.9".parse().unwrap()));
        assert_eq!(got("garbage, 10.1.2.3"), Some("10.1.2.3".parse().unwrap()));
        // An untrusted peer's header is never read.
        let stranger: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(t.client_ip(stranger, xff("1.2.3.4").into_iter()), None);
    }

    #[test]
    fn allowed_hosts_match_host_and_port_exactly() {
        let a = AllowedHost::parse("auth.example.com").unwrap();
        assert!(a.allows("auth.example.com", 443, 443));
        assert!(!a.allows("auth.example.com", 8443, 443));
        assert!(!a.allows("evil-auth.example.com", 443, 443));
        let p = AllowedHost::parse("127.0.0.1:9100").unwrap();
        assert!(p.allows("127.0.0.1", 9100, 80));
        assert!(!p.allows("127.0.0.1", 9101, 80));
        let w = AllowedHost::parse("*.example.com").unwrap();
        assert!(w.allows("a.b.example.com", 443, 443));
        assert!(!w.allows("example.com", 443, 443));
        assert!(!w.allows("badexample.com", 443, 443));
        assert!(AllowedHost::parse("http://x").is_err());
        assert!(AllowedHost::parse("x/y").is_err());
        assert!(AllowedHost::parse("").is_err());
    }
}
