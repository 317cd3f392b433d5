//! The public origin a response's links are written with: the configured
//! `public_base_url`, or what a trusted reverse proxy says the client called
//! (`Forwarded`, else `X-Forwarded-Proto` / `X-Forwarded-Host`). Headers from anyone
//! else are ignored, so a caller cannot make the gateway write links to a host of its
//! choosing. The same rule gives the client address per-address limits are charged to.

use std::net::IpAddr;

use http::HeaderMap;

/// An IP network, e.g. `10.0.0.0/8` or `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDR/PREFIX` (or a bare address, meaning one host).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("'{s}' is not an IP address or network"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("'{s}': prefix must be 0 to {max}"))?,
        };
        Ok(Self { network, prefix })
    }

    /// Whether `ip` is inside the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

fn valid_proto(p: &str) -> bool {
    p == "https" || p == "http"
}

/// `proto` and `host` from the first element of a `Forwarded` header (RFC 7239).
fn from_forwarded(value: &str) -> (Option<String>, Option<String>) {
    let first = value.split(',').next().unwrap_or("");
    let (mut proto, mut host) = (None, None);
    for pair in first.split(';') {
        if let Some((k, v)) = pair.trim().split_once('=') {
            let v = v.trim().trim_matches('"').to_owned();
            match k.trim().to_ascii_lowercase().as_str() {
                "proto" => proto = Some(v.to_ascii_lowercase()),
                "host" => host = Some(v),
                _ => {}
            }
        }
    }
    (proto, host)
}

/// The origin (`scheme://host[:port]`) to write links with.
pub fn public_origin(
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    trusted: &[Cidr],
    configured: &str,
) -> String {
    if !peer.is_some_and(|p| trusted.iter().any(|c| c.contains(p))) {
        return configured.to_owned();
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (proto, host) = match header("forwarded") {
        Some(f) => from_forwarded(f),
        None => (
            header("x-forwarded-proto").map(|p| {
                p.split(',')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            }),
            header("x-forwarded-host").map(|h| h.split(',').next().unwrap_or("").trim().to_owned()),
        ),
    };
    match (proto, host) {
        (Some(p), Some(h)) if valid_proto(&p) && valid_host(&h) => format!("{p}://{h}"),
        (None, Some(h)) if valid_host(&h) => {
            let scheme = configured.split("://").next().unwrap_or("https");
            format!("{scheme}://{h}")
        }
        _ => configured.to_owned(),
    }
}

/// One `for=` value (RFC 7239 §6) or `X-Forwarded-For` entry as an address: quotes,
/// brackets and a port are dropped; obfuscated identifiers and `unknown` are `None`.
fn node_address(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    node.rsplit_once(':')?.0.parse().ok()
}

/// The address of the client a request came from, for per-address limits: the peer,
/// unless the peer is a trusted proxy, in which case the nearest address in the
/// proxies' chain (`Forwarded: for=`, else `X-Forwarded-For`) that is not itself a
/// trusted proxy. Entries further left were written by the caller and are not believed.
pub fn client_address(
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    trusted: &[Cidr],
) -> Option<IpAddr> {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    let peer = peer?;
    if !is_trusted(peer) {
        return Some(peer);
    }
    let values = |name: &str| -> Vec<&str> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect()
    };
    let forwarded = values("forwarded");
    let chain: Vec<Option<IpAddr>> = if forwarded.is_empty() {
        values("x-forwarded-for")
            .into_iter()
            .map(node_address)
            .collect()
    } else {
        forwarded
            .into_iter()
            .map(|element| {
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.trim().split_once('=')?;
                    k.trim().eq_ignore_ascii_case("for").then_some(v)
                })
            })
            .map(|v| v.and_then(node_address))
            .collect()
    };
    for hop in chain.into_iter().rev() {
        match hop {
            Some(ip) if is_trusted(ip) => continue,
            Some(ip) => return Some(ip),
            // An entry we cannot read: the chain is not to be trusted beyond it.
            None => break,
        }
    }
    Some(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    const CONFIGURED: &str = "https://gw.example.nhs.uk";

    #[test]
    fn cidrs() {
        let net = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(
            net.contains("::ffff:10.0.0.1".parse().unwrap()),
            "IPv4-mapped IPv6"
        );
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("proxy.local").is_err());
    }

    #[test]
    fn only_trusted_proxies_are_believed() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        let h = headers(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "api.example.org"),
        ]);
        assert_eq!(
            public_origin(&h, Some("10.0.0.5".parse().unwrap()), &trusted, CONFIGURED),
            "https://api.example.org"
        );
        assert_eq!(
            public_origin(&h, Some("192.0.2.7".parse().unwrap()), &trusted, CONFIGURED),
            CONFIGURED
        );
        assert_eq!(public_origin(&h, None, &trusted, CONFIGURED), CONFIGURED);
        let f = headers(&[(
            "forwarded",
            "for=192.0.2.60;proto=https;host=\"gp.example.org:8443\", for=10.0.0.1",
        )]);
        assert_eq!(
            public_origin(&f, Some("10.9.9.9".parse().unwrap()), &trusted, CONFIGURED),
            "https://gp.example.org:8443"
        );
    }

    #[test]
    fn client_address_believes_only_the_trusted_part_of_the_chain() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        let proxy = Some("10.0.0.5".parse().unwrap());
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // Straight from the client: its own address, whatever it claims.
        let spoof = headers(&[("x-forwarded-for", "198.51.100.1")]);
        assert_eq!(
            client_address(&spoof, ip("192.0.2.7"), &trusted),
            ip("192.0.2.7")
        );
        // Through the proxy: the nearest untrusted hop; the caller's own entries ignored.
        let xff = headers(&[("x-forwarded-for", "198.51.100.1, 192.0.2.7, 10.0.0.9")]);
        assert_eq!(client_address(&xff, proxy, &trusted), ip("192.0.2.7"));
        let f = headers(&[(
            "forwarded",
            "for=198.51.100.1, for=\"[2001:db8::1]:4711\";proto=https, for=10.0.0.9",
        )]);
        assert_eq!(client_address(&f, proxy, &trusted), ip("2001:db8::1"));
        let port = headers(&[("forwarded", "for=\"192.0.2.8:1234\"")]);
        assert_eq!(client_address(&port, proxy, &trusted), ip("192.0.2.8"));
        // Nothing usable: the proxy itself.
        for h in [
            headers(&[]),
            headers(&[("forwarded", "for=unknown")]),
            headers(&[("x-forwarded-for", "10.0.0.9")]),
        ] {
            assert_eq!(client_address(&h, proxy, &trusted), proxy);
        }
        assert_eq!(client_address(&xff, None, &trusted), None);
    }

    #[test]
    fn malformed_forwarded_values_fall_back() {
        let trusted = [Cidr::parse("127.0.0.1").unwrap()];
        let peer = Some("127.0.0.1".parse().unwrap());
        for bad in [
            headers(&[
                ("x-forwarded-proto", "javascript"),
                ("x-forwarded-host", "a.example"),
            ]),
            headers(&[
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "a.example/evil?x="),
            ]),
            headers(&[("forwarded", "proto=https;host=\"a b\"")]),
        ] {
            assert_eq!(public_origin(&bad, peer, &trusted, CONFIGURED), CONFIGURED);
        }
    }
}
