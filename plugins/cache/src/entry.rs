//! A stored response: status, stored-at time, headers and body, as bytes.

use gatehouse_sdk::Reply;

/// Headers that describe one exchange and must not be replayed.
const NOT_STORED: &[&str] = &[
    "x-request-id",
    "date",
    "x-cache",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "age",
];

pub fn encode(status: u16, headers: &[(String, String)], body: &[u8], now_ms: u64) -> Vec<u8> {
    let mut head = format!("{status} {now_ms}\n");
    for (n, v) in headers
        .iter()
        .filter(|(n, _)| !NOT_STORED.contains(&n.as_str()))
    {
        head.push_str(n);
        head.push_str(": ");
        head.push_str(v);
        head.push('\n');
    }
    head.push('\n');
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// The stored response as a reply, with `X-Cache: HIT` and its `Age`.
pub fn decode(stored: &[u8], now_ms: u64) -> Option<Reply> {
    let end = stored.windows(2).position(|w| w == b"\n\n")?;
    let head = std::str::from_utf8(&stored[..end]).ok()?;
    let mut lines = head.lines();
    let (status, at) = lines.next()?.split_once(' ')?;
    let mut reply = Reply::new(status.parse().ok()?);
    for line in lines {
        let (n, v) = line.split_once(": ")?;
        reply = reply.header(n, v);
    }
    let age = now_ms.saturating_sub(at.parse().ok()?) / 1000;
    Some(
        reply
            .header("x-cache", "HIT")
            .header("age", age.to_string())
            .body(stored[end + 2..].to_vec()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_without_per_exchange_headers() {
        let headers = vec![
            ("content-type".into(), "application/json".into()),
            ("x-request-id".into(), "abc".into()),
        ];
        let bytes = encode(200, &headers, b"{\"a\":1}\n\nx", 1_000);
        let r = decode(&bytes, 3_500).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"{\"a\":1}\n\nx");
        assert!(
            r.headers
                .contains(&("content-type".into(), "application/json".into()))
        );
        assert!(r.headers.contains(&("age".into(), "2".into())));
        assert!(!r.headers.iter().any(|(n, _)| n == "x-request-id"));
    }
}
