//! Where deliveries may go: a supplier's `https://` endpoint that resolves to public
//! addresses only — never the gateway's own network (no server-side request forgery).
//! The name is resolved and checked at every delivery, and the connection is made to
//! the very address checked (a name re-pointed at a private address after the
//! subscription was made gains nothing). The sandbox alone may allow `http://` and
//! loopback receivers (`[notifications] allow_loopback`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use super::NotificationsConfig;

/// Longest endpoint URL accepted.
pub const MAX_URL: usize = 2_048;

/// How long resolving an endpoint's name may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// A parsed endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub https: bool,
    /// The host as written (a name, or an IP literal without brackets).
    pub host: String,
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
    /// `host[:port]` for the Host header.
    pub authority: String,
}

/// What deliveries are allowed to reach, and the trust roots of `https://` ones.
#[derive(Clone)]
pub struct EndpointPolicy {
    pub allow_loopback: bool,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl std::fmt::Debug for EndpointPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointPolicy")
            .field("allow_loopback", &self.allow_loopback)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl EndpointPolicy {
    /// Reads `ca_file` (relative to `dir`). Without it, a sandbox (loopback allowed)
    /// delivers to `http://` receivers only; a gateway that is not a sandbox refuses to start.
    pub fn new(config: &NotificationsConfig, dir: &Path) -> Result<Self, String> {
        let path = dir.join(&config.ca_file);
        let tls = match std::fs::read(&path) {
            Ok(pem) => Some(connector(&pem).map_err(|e| format!("{}: {e}", path.display()))?),
            Err(_) if config.allow_loopback => None,
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(Self {
            allow_loopback: config.allow_loopback,
            tls,
        })
    }

    /// A policy trusting the PEM roots given (tests).
    pub fn with_roots(allow_loopback: bool, pem: &[u8]) -> Result<Self, String> {
        Ok(Self {
            allow_loopback,
            tls: Some(connector(pem)?),
        })
    }

    /// Checks an endpoint's URL as a supplier gives it (not its addresses).
    pub fn parse(&self, url: &str) -> Result<Endpoint, String> {
        parse(url, self.allow_loopback)
    }

    /// Resolves `e` and answers the addresses to connect to, in the resolver's order:
    /// every address it resolves to must be allowed (public; loopback too where allowed),
    /// so a name cannot smuggle a private address in among public ones.
    pub async fn resolve(&self, e: &Endpoint) -> Result<Vec<SocketAddr>, String> {
        let addrs: Vec<SocketAddr> = match e.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, e.port)],
            Err(_) => {
                let found = tokio::time::timeout(
                    RESOLVE_TIMEOUT,
                    tokio::net::lookup_host((e.host.as_str(), e.port)),
                )
                .await
                .map_err(|_| format!("{} did not resolve in time", e.host))?
                .map_err(|_| format!("{} does not resolve", e.host))?;
                found.collect()
            }
        };
        if addrs.is_empty() {
            return Err(format!("{} resolves to no address", e.host));
        }
        for a in &addrs {
            let ip = a.ip();
            let allowed = is_public(ip) || (self.allow_loopback && ip.is_loopback());
            if !allowed {
                return Err(format!(
                    "{} resolves to {ip}, which is not a public address",
                    e.host
                ));
            }
            if !e.https && !ip.is_loopback() {
                return Err(format!(
                    "http:// is allowed for loopback receivers only ({} is {ip})",
                    e.host
                ));
            }
        }
        Ok(addrs)
    }

    /// Opens a connection to `e` at the first of `addrs` (from
    /// [`EndpointPolicy::resolve`]) that answers, TLS for `https://`.
    pub async fn connect(&self, e: &Endpoint, addrs: &[SocketAddr]) -> Result<Conn, String> {
        let mut last = None;
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(t) => {
                    tcp = Some(t);
                    break;
                }
                Err(err) => last = Some(err.kind()),
            }
        }
        let tcp = tcp.ok_or_else(|| match last {
            Some(kind) => format!("cannot connect: {kind}"),
            None => "cannot connect: no address".to_owned(),
        })?;
        let _ = tcp.set_nodelay(true);
        if !e.https {
            return Ok(Conn::Plain(tcp));
        }
        let tls = self
            .tls
            .as_ref()
            .ok_or("no trust roots for https:// receivers ([notifications] ca_file)")?;
        let name = ServerName::try_from(e.host.clone())
            .map_err(|_| format!("{} is not a TLS server name", e.host))?;
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|err| format!("TLS handshake failed: {err}"))?;
        Ok(Conn::Tls(Box::new(stream)))
    }
}

/// A connection to a receiver.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

fn connector(pem: &[u8]) -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("not PEM: {e}"))?;
        // A bundle may hold a certificate rustls cannot use as a root: skip it.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err("holds no usable PEM certificate".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Parses an endpoint URL: `https://host[:port][/path][?query]` (or `http://` when
/// loopback receivers are allowed), no user info, no fragment.
pub fn parse(url: &str, allow_http: bool) -> Result<Endpoint, String> {
    if url.len() > MAX_URL {
        return Err(format!("is longer than {MAX_URL} characters"));
    }
    if url
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'#')
    {
        return Err("must not hold spaces, control characters or a fragment".into());
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|_| "is not an absolute URL".to_owned())?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") if allow_http => false,
        Some("http") => return Err("must be https://".into()),
        _ => return Err("must be an https:// URL".into()),
    };
    let authority = uri.authority().ok_or("has no host")?;
    if authority.as_str().contains('@') {
        return Err("must not carry user information (user:password@)".into());
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if host.is_empty() {
        return Err("has no host".into());
    }
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    if port == 0 {
        return Err("has port 0".into());
    }
    let path = uri
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        path
    };
    Ok(Endpoint {
        https,
        host,
        port,
        path,
        authority: authority.as_str().to_owned(),
    })
}

/// True for an address on the public internet: not private, loopback, link-local,
/// shared (CGNAT), multicast, documentation, benchmarking, reserved or unspecified,
/// and not an IPv4 address in IPv6 clothing that is one of those.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            is_public_v6(v6)
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    let in_net = |net: [u8; 4], bits: u32| {
        let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
        (u32::from(ip) & mask) == (u32::from_be_bytes(net) & mask)
    };
    !(o[0] == 0
        || ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || in_net([100, 64, 0, 0], 10)
        || in_net([192, 0, 0, 0], 24)
        || in_net([192, 88, 99, 0], 24)
        || in_net([198, 18, 0, 0], 15)
        || in_net([240, 0, 0, 0], 4))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // fc00::/7 unique local, fe80::/10 link-local, fec0::/10 site-local
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xffc0) == 0xfec0
        // 64:ff9b::/96 NAT64 and 2002::/16 6to4 carry IPv4 addresses; 100::/64 discard;
        // 2001::/23 IETF protocol assignments (Teredo, documentation 2001:db8::/32 …)
        || (s[0] == 0x0064 && s[1] == 0xff9b)
        || s[0] == 0x2002
        || (s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0)
        || (s[0] == 0x2001 && s[1] < 0x0200)
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        // ::/96 IPv4-compatible (deprecated)
        || (s[0..6] == [0; 6]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "127.0.0.1",
            "0.0.0.0",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00::1",
            "2001:db8::1",
            "::10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn endpoint_urls_must_be_https_without_credentials_or_fragments() {
        let e = parse("https://Hooks.Example.com:8443/in/gp?x=1", false).unwrap();
        assert_eq!(
            (e.https, e.host.as_str(), e.port, e.path.as_str()),
            (true, "hooks.example.com", 8443, "/in/gp?x=1")
        );
        assert_eq!(parse("https://hooks.example.com", false).unwrap().path, "/");
        for (url, why) in [
            ("http://hooks.example.com/in", "https"),
            ("ftp://hooks.example.com/", "https"),
            ("hooks.example.com/in", "URL"),
            ("https://user:pw@hooks.example.com/", "user"),
            ("https://hooks.example.com/#frag", "fragment"),
            ("https://hooks.example.com/a b", "spaces"),
        ] {
            let err = parse(url, false).unwrap_err();
            assert!(err.contains(why), "{url}: {err}");
        }
        assert!(
            parse("http://127.0.0.1:9000/", true).is_ok(),
            "the sandbox's receivers"
        );
        let v6 = parse("https://[2606:4700::1111]/", false).unwrap();
        assert_eq!(v6.host, "2606:4700::1111");
    }

    #[tokio::test]
    async fn a_name_or_literal_resolving_to_a_private_address_is_refused() {
        let strict = EndpointPolicy {
            allow_loopback: false,
            tls: None,
        };
        for url in [
            "https://127.0.0.1/",
            "https://localhost:8443/",
            "https://10.0.0.1/",
            "https://[::1]/",
            "https://169.254.169.254/latest/meta-data",
        ] {
            let e = strict.parse(url).unwrap();
            let err = strict.resolve(&e).await.unwrap_err();
            assert!(err.contains("not a public address"), "{url}: {err}");
        }
        let sandbox = EndpointPolicy {
            allow_loopback: true,
            tls: None,
        };
        let e = sandbox.parse("http://127.0.0.1:9/hook").unwrap();
        assert_eq!(sandbox.resolve(&e).await.unwrap()[0].port(), 9);
        let private = sandbox.parse("http://10.0.0.1/hook").unwrap();
        assert!(
            sandbox.resolve(&private).await.is_err(),
            "loopback only, never the LAN"
        );
        let public_http = sandbox.parse("http://8.8.8.8/hook").unwrap();
        let err = sandbox.resolve(&public_http).await.unwrap_err();
        assert!(err.contains("loopback receivers only"), "{err}");
    }
}
