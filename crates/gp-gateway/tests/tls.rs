//! TLS with rustls and HTTP/2: a client negotiating h2 or http/1.1 over TLS, and h2c
//! with prior knowledge in clear, all reach the same pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use bytes::Bytes;
use gp_gateway::config::TlsConfig;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

async fn tls_server() -> (
    gp_gateway::sandbox::Sandbox,
    gp_gateway::server::ServerHandle,
    Vec<u8>,
    tempfile::TempDir,
) {
    let sb = gp_gateway::sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        gp_gateway::sandbox::DEFAULT_SEED,
    )
    .await
    .unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("key.pem"),
        certified.signing_key.serialize_pem(),
    )
    .unwrap();
    let tls = TlsConfig {
        cert_file: "cert.pem".into(),
        key_file: "key.pem".into(),
    };
    let acceptor = gp_gateway::server::tls_acceptor(&tls, dir.path()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let handle = gp_gateway::server::start(
        sb.app.clone(),
        listener,
        &sb.config.gateway.server,
        Some(acceptor),
    )
    .unwrap();
    (sb, handle, certified.cert.der().to_vec(), dir)
}

async fn connect(
    addr: std::net::SocketAddr,
    ca: &[u8],
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.to_vec())).unwrap();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

fn request(path: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(format!("https://localhost{path}"))
        .body(Empty::new())
        .unwrap()
}

#[tokio::test]
async fn serves_http2_and_http1_over_tls() {
    let (sb, server, ca, _dir) = tls_server().await;

    let tls = connect(server.addr, &ca, b"h2").await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = h2.send_request(request("/FHIR/R4/metadata")).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    #[allow(clippy::disallowed_methods)]
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("CapabilityStatement"));

    let tls = connect(server.addr, &ca, b"http/1.1").await;
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = h1
        .send_request(request("/FHIR/R4/Patient/9000000009"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "TLS does not bypass authentication");

    server.shutdown(std::time::Duration::from_secs(2)).await;
    sb.shutdown().await;
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_gets_nothing() {
    let (sb, server, _ca, _dir) = tls_server().await;
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(other.cert.der().to_vec()))
        .unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    assert!(
        connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .is_err()
    );
    server.shutdown(std::time::Duration::from_secs(2)).await;
    sb.shutdown().await;
}

#[tokio::test]
async fn cleartext_http2_with_prior_knowledge() {
    let sb = gp_gateway::sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        gp_gateway::sandbox::DEFAULT_SEED,
    )
    .await
    .unwrap();
    let tcp = TcpStream::connect(sb.server.addr).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("http://{}/_health", sb.server.addr))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = h2.send_request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    sb.shutdown().await;
}

#[test]
fn a_missing_certificate_file_is_named() {
    let tls = TlsConfig {
        cert_file: "/nonexistent/cert.pem".into(),
        key_file: "/nonexistent/key.pem".into(),
    };
    let err = gp_gateway::server::tls_acceptor(&tls, std::path::Path::new("/"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("/nonexistent/cert.pem"), "{err}");
}
