//! Where a request comes from, for throttling: the peer address of the
//! connection (axum's `ConnectInfo`, which `machi serve` and `machi demo`
//! provide), or — only when that peer is a configured trusted proxy — the
//! address the proxy reports in `X-Forwarded-For`. The header is never
//! believed by default: anyone can send one.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;

/// The reverse proxies whose `X-Forwarded-For` is believed
/// (`MACHI_TRUSTED_PROXIES`: addresses or networks, comma-separated, e.g.
/// `10.0.0.5, 10.1.0.0/16, fd00::/8`). Added to the router as an
/// extension; without it no header is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl TrustedProxies {
    /// Parses a comma-separated list; the error names the bad entry.
    pub fn parse(list: &str) -> Result<TrustedProxies, String> {
        let mut nets = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = || {
                format!(
                    "trusted proxy {entry:?}: give an IP address or network such as 10.0.0.5 or 10.1.0.0/16 / 信頼するプロキシのアドレスが正しくありません"
                )
            };
            let (addr, bits) = match entry.split_once('/') {
                Some((a, b)) => (a, Some(b.parse::<u8>().map_err(|_| bad())?)),
                None => (entry, None),
            };
            let ip = canonical(addr.parse::<IpAddr>().map_err(|_| bad())?);
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = bits.unwrap_or(max);
            if bits > max {
                return Err(bad());
            }
            nets.push((ip, bits));
        }
        Ok(TrustedProxies(nets))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|(net, bits)| match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), *bits),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), *bits),
            _ => false,
        })
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let full = usize::from(bits / 8);
    if a[..full] != b[..full] {
        return false;
    }
    let rest = bits % 8;
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[full] & mask == b[full] & mask
    }
}

/// An address as a proxy writes it in `X-Forwarded-For`: `192.0.2.1`,
/// `192.0.2.1:4711`, `2001:db8::1` or `[2001:db8::1]:4711`.
fn forwarded_addr(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .map(canonical)
}

/// The client address of a request: the connection's peer, or, when the
/// peer is a trusted proxy, the right-most `X-Forwarded-For` entry that is
/// not itself a trusted proxy (for one proxy: the address it appended).
/// `None` when the request did not come over a socket (tests, the CLI).
pub fn client_addr(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: Option<&TrustedProxies>,
) -> Option<IpAddr> {
    let peer = canonical(peer?);
    let Some(trusted) = trusted.filter(|t| t.contains(peer)) else {
        return Some(peer);
    };
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        // A hop the proxy did not write sensibly: stop at what we know.
        let Some(ip) = forwarded_addr(hop) else {
            break;
        };
        client = ip;
        if !trusted.contains(ip) {
            break;
        }
    }
    Some(client)
}

/// The client address of a request as an extractor (never rejects).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let trusted = parts.extensions.get::<TrustedProxies>();
        Ok(ClientAddr(client_addr(peer, &parts.headers, trusted)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(v: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in v {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn the_header_is_ignored_unless_the_peer_is_a_trusted_proxy() {
        let h = xff(&["198.51.100.7"]);
        assert_eq!(client_addr(ip("192.0.2.1"), &h, None), ip("192.0.2.1"));
        let t = TrustedProxies::parse("10.0.0.5").unwrap();
        assert_eq!(client_addr(ip("192.0.2.1"), &h, Some(&t)), ip("192.0.2.1"));
        assert_eq!(
            client_addr(ip("10.0.0.5"), &h, Some(&t)),
            ip("198.51.100.7")
        );
        assert_eq!(client_addr(None, &h, Some(&t)), None);
    }

    #[test]
    fn the_last_untrusted_hop_is_the_client() {
        let t = TrustedProxies::parse(" 10.0.0.0/8 , fd00::/8").unwrap();
        // A forged first entry is not believed: the proxy appended the real one.
        let h = xff(&["203.0.113.1, 198.51.100.7", "10.2.3.4"]);
        assert_eq!(
            client_addr(ip("10.0.0.5"), &h, Some(&t)),
            ip("198.51.100.7")
        );
        let h = xff(&["[2001:db8::1]:4711"]);
        assert_eq!(client_addr(ip("fd00::1"), &h, Some(&t)), ip("2001:db8::1"));
        // Garbage from the proxy: the proxy itself is the source.
        let h = xff(&["unknown"]);
        assert_eq!(client_addr(ip("10.0.0.5"), &h, Some(&t)), ip("10.0.0.5"));
        // No header at all: the proxy.
        assert_eq!(
            client_addr(ip("10.0.0.5"), &HeaderMap::new(), Some(&t)),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn bad_lists_are_refused() {
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy.example").is_err());
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        let t = TrustedProxies::parse("192.0.2.128/25").unwrap();
        assert!(t.contains("192.0.2.200".parse().unwrap()));
        assert!(!t.contains("192.0.2.100".parse().unwrap()));
        assert!(t.contains("::ffff:192.0.2.200".parse().unwrap()));
    }
}
