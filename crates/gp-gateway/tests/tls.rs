//! TLS with rustls and HTTP/2: a client negotiating h2 or http/1.1 over TLS, and h2c
//! with prior knowledge in clear, all reach the same pipeline. Only modern suites are
//! offered, the certificate reloads without a restart, and suppliers bound to a client
//! certificate can only call over mutual TLS presenting it. Certificates are generated
//! with rcgen for each test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gp_auth::CertThumbprint;
use gp_gateway::config::{ClientAuth, TlsConfig};
use gp_gateway::sandbox::Sandbox;
use gp_gateway::server::{ServerHandle, ServerTls};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A server certificate for `localhost` and its key, as PEM.
struct Pem {
    cert: String,
    key: String,
    der: Vec<u8>,
}

fn server_cert() -> Pem {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    Pem {
        cert: c.cert.pem(),
        key: c.signing_key.serialize_pem(),
        der: c.cert.der().to_vec(),
    }
}

fn write_pair(dir: &Path, pem: &Pem) {
    std::fs::write(dir.join("cert.pem"), &pem.cert).unwrap();
    std::fs::write(dir.join("key.pem"), &pem.key).unwrap();
}

async fn sandbox() -> Sandbox {
    gp_gateway::sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        gp_gateway::sandbox::DEFAULT_SEED,
    )
    .await
    .unwrap()
}

/// A TLS server in front of a fresh sandbox's pipeline, its certificate in a temp dir.
struct TlsWorld {
    sb: Sandbox,
    server: ServerHandle,
    tls: ServerTls,
    ca: Vec<u8>,
    dir: tempfile::TempDir,
}

impl TlsWorld {
    async fn start(configure: impl FnOnce(&mut TlsConfig, &Path)) -> Self {
        let sb = sandbox().await;
        let dir = tempfile::tempdir().unwrap();
        let pem = server_cert();
        write_pair(dir.path(), &pem);
        let mut config = TlsConfig::new("cert.pem", "key.pem");
        configure(&mut config, dir.path());
        let tls = gp_gateway::server::tls_acceptor(&config, dir.path()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = gp_gateway::server::start(
            sb.app.clone(),
            listener,
            &sb.config.gateway.server,
            Some(tls.clone()),
        )
        .unwrap();
        Self {
            sb,
            server,
            tls,
            ca: pem.der,
            dir,
        }
    }

    async fn stop(self) {
        self.server.shutdown(Duration::from_secs(2)).await;
        self.sb.shutdown().await;
    }

    fn client(&self) -> rustls::ClientConfig {
        rustls::ClientConfig::builder()
            .with_root_certificates(roots(&self.ca))
            .with_no_client_auth()
    }
}

fn roots(ca: &[u8]) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.to_vec())).unwrap();
    roots
}

async fn handshake(
    addr: std::net::SocketAddr,
    mut config: rustls::ClientConfig,
    alpn: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    tokio::time::timeout(
        Duration::from_secs(10),
        connector.connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await
    .map_err(|_| std::io::Error::other("handshake timed out"))?
}

fn request(path: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(format!("https://localhost{path}"))
        .body(Empty::new())
        .unwrap()
}

#[tokio::test]
async fn serves_http2_and_http1_over_tls() {
    let w = TlsWorld::start(|_, _| {}).await;

    let tls = handshake(w.server.addr, w.client(), b"h2").await.unwrap();
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

    let tls = handshake(w.server.addr, w.client(), b"http/1.1")
        .await
        .unwrap();
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = h1
        .send_request(request("/FHIR/R4/Patient/9000000009"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "TLS does not bypass authentication");
    w.stop().await;
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_gets_nothing() {
    let w = TlsWorld::start(|_, _| {}).await;
    let other = server_cert();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots(&other.der))
        .with_no_client_auth();
    assert!(handshake(w.server.addr, config, b"h2").await.is_err());
    w.stop().await;
}

#[tokio::test]
async fn cleartext_http2_with_prior_knowledge() {
    let sb = sandbox().await;
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
    let tls = TlsConfig::new("/nonexistent/cert.pem", "/nonexistent/key.pem");
    let err = gp_gateway::server::tls_acceptor(&tls, Path::new("/"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("/nonexistent/cert.pem"), "{err}");
}

// ---- cipher suites and protocol versions -------------------------------------------

#[tokio::test]
async fn a_tls12_only_client_gets_an_ecdhe_aead_suite() {
    let w = TlsWorld::start(|_, _| {}).await;
    let config = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
        .with_root_certificates(roots(&w.ca))
        .with_no_client_auth();
    let tls = handshake(w.server.addr, config, b"http/1.1").await.unwrap();
    let conn = tls.get_ref().1;
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let suite = conn.negotiated_cipher_suite().unwrap();
    assert!(
        gp_gateway::server::CIPHER_SUITES.contains(&suite),
        "{suite:?}"
    );
    let name = format!("{:?}", suite.suite());
    assert!(
        name.starts_with("TLS_ECDHE_") && (name.contains("_GCM_") || name.contains("CHACHA20")),
        "ECDHE with an AEAD cipher: {name}"
    );
    // And the connection serves requests.
    let (mut h1, c) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(c);
    let resp = h1.send_request(request("/_health")).await.unwrap();
    assert_eq!(resp.status(), 200);
    w.stop().await;
}

#[test]
fn only_tls13_and_ecdhe_aead_tls12_suites_are_offered() {
    for suite in gp_gateway::server::CIPHER_SUITES {
        let name = format!("{:?}", suite.suite());
        let tls13 = name.starts_with("TLS13_");
        let tls12_ecdhe_aead = name.starts_with("TLS_ECDHE_")
            && (name.ends_with("_GCM_SHA256")
                || name.ends_with("_GCM_SHA384")
                || name.ends_with("_CHACHA20_POLY1305_SHA256"));
        assert!(tls13 || tls12_ecdhe_aead, "{name}");
    }
}

/// A hand-made ClientHello: rustls' client cannot be made to offer TLS 1.1 or CBC
/// suites, so the refusals are checked with raw bytes (and a good hello as control).
fn client_hello(version: u16, suites: &[u16]) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    body.extend([7u8; 32]); // random
    body.push(0); // no session id
    body.extend(u16::try_from(suites.len() * 2).unwrap().to_be_bytes());
    for s in suites {
        body.extend(s.to_be_bytes());
    }
    body.extend([1, 0]); // compression: null only
    let mut ext = Vec::new();
    // supported_groups: x25519, secp256r1
    ext.extend([0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]);
    // ec_point_formats: uncompressed
    ext.extend([0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
    ext.extend([
        0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01,
    ]);
    body.extend(u16::try_from(ext.len()).unwrap().to_be_bytes());
    body.extend(ext);
    let mut handshake = vec![0x01];
    handshake.extend(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend(u16::try_from(handshake.len()).unwrap().to_be_bytes());
    record.extend(handshake);
    record
}

/// Sends `hello` and returns the first bytes the server answers with.
async fn first_answer(addr: std::net::SocketAddr, hello: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(hello).await.unwrap();
    let mut buf = vec![0u8; 7];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut buf))
        .await
        .expect("the server answers the hello")
        .unwrap();
    buf
}

#[tokio::test]
async fn legacy_protocol_versions_and_non_aead_suites_are_refused() {
    let w = TlsWorld::start(|_, _| {}).await;
    const ECDHE_ECDSA_AES128_GCM: u16 = 0xc02b;
    const CBC: [u16; 5] = [0xc009, 0xc00a, 0xc023, 0x002f, 0x0035];
    // Control: the same hand-made hello with an AEAD suite gets a ServerHello.
    let ok = first_answer(
        w.server.addr,
        &client_hello(0x0303, &[ECDHE_ECDSA_AES128_GCM]),
    )
    .await;
    assert_eq!(ok[0], 0x16, "handshake record: {ok:?}");
    // TLS 1.2 offering only CBC suites (and static-RSA key exchange): handshake_failure.
    let cbc = first_answer(w.server.addr, &client_hello(0x0303, &CBC)).await;
    assert_eq!(
        (cbc[0], cbc[5], cbc[6]),
        (0x15, 2, 40),
        "fatal handshake_failure alert: {cbc:?}"
    );
    // TLS 1.1 and 1.0 clients: protocol_version, even with an AEAD suite offered.
    for version in [0x0302u16, 0x0301] {
        let old = first_answer(
            w.server.addr,
            &client_hello(version, &[ECDHE_ECDSA_AES128_GCM, 0xc009]),
        )
        .await;
        assert_eq!(
            (old[0], old[5], old[6]),
            (0x15, 2, 70),
            "fatal protocol_version alert for {version:#06x}: {old:?}"
        );
    }
    w.stop().await;
}

// ---- certificate reload --------------------------------------------------------------

async fn served_certificate(w: &TlsWorld, trust: &[u8]) -> std::io::Result<Vec<u8>> {
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots(trust))
        .with_no_client_auth();
    let tls = handshake(w.server.addr, config, b"http/1.1").await?;
    Ok(tls.get_ref().1.peer_certificates().unwrap()[0].to_vec())
}

#[tokio::test]
async fn a_new_certificate_is_served_after_reload_and_a_broken_pair_is_refused() {
    // Polling off: reloads happen only when asked.
    let w = TlsWorld::start(|c, _| c.reload_interval_secs = 0).await;
    let a = w.ca.clone();
    assert_eq!(served_certificate(&w, &a).await.unwrap(), a);

    let b = server_cert();
    write_pair(w.dir.path(), &b);
    w.tls.reload().unwrap();
    assert_eq!(
        served_certificate(&w, &b.der).await.unwrap(),
        b.der,
        "new connections see B"
    );

    // A key that is not the certificate's: refused, B keeps serving.
    let c = server_cert();
    std::fs::write(w.dir.path().join("cert.pem"), &c.cert).unwrap();
    let err = w.tls.reload().unwrap_err().to_string();
    assert!(err.contains("key.pem"), "{err}");
    assert!(!err.contains("PRIVATE KEY"), "no key material: {err}");
    // Garbage in the key file: refused too.
    write_pair(w.dir.path(), &b);
    std::fs::write(w.dir.path().join("key.pem"), "not a key").unwrap();
    assert!(w.tls.reload().is_err());
    assert_eq!(served_certificate(&w, &b.der).await.unwrap(), b.der);
    assert_eq!(w.tls.current_certificate()[0].to_vec(), b.der);
    w.stop().await;
}

#[tokio::test]
async fn changed_certificate_files_are_picked_up_by_polling() {
    let w = TlsWorld::start(|c, _| c.reload_interval_secs = 1).await;
    let b = server_cert();
    write_pair(w.dir.path(), &b);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if served_certificate(&w, &b.der).await.ok().as_deref() == Some(&b.der[..]) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "certificate B never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    w.stop().await;
}

// ---- mutual TLS, per supplier ----------------------------------------------------------

/// A CA and client certificates it issues.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A client certificate with its key.
struct ClientCert {
    der: Vec<u8>,
    key: Vec<u8>,
}

impl ClientCert {
    fn thumbprint(&self) -> CertThumbprint {
        CertThumbprint::of_der(&self.der)
    }
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        Self {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn issue(&self, name: &str, expired: bool) -> ClientCert {
        let mut params = CertificateParams::new(vec![format!("{name}.supplier.example")]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        ClientCert {
            der: cert.der().to_vec(),
            key: key.serialize_der(),
        }
    }
}

/// A TLS server with mutual TLS against `ca`, and the suppliers in `bindings` bound to
/// their certificates in the registry.
async fn mtls_world(
    ca: &Ca,
    client_auth: ClientAuth,
    bindings: &[(&str, &ClientCert)],
) -> TlsWorld {
    let ca_pem = ca.pem();
    let w = TlsWorld::start(move |c, dir| {
        std::fs::write(dir.join("clients-ca.pem"), ca_pem).unwrap();
        c.client_ca_file = Some("clients-ca.pem".into());
        c.client_auth = Some(client_auth);
    })
    .await;
    let mut suppliers = w.sb.config.suppliers.clone();
    for s in &mut suppliers.suppliers {
        if let Some((_, cert)) = bindings.iter().find(|(id, _)| *id == s.client_id) {
            s.client_cert_sha256 = Some(cert.thumbprint().to_string());
        }
    }
    let set = gp_auth::SupplierSet::build(&suppliers, &w.sb.config.dir).unwrap();
    w.sb.app.auth.as_ref().unwrap().registry.replace(set);
    w
}

/// One HTTP/1.1 exchange over a fresh TLS connection presenting `cert` (if any).
/// `Err` when the connection is refused (handshake, or the alert after it in TLS 1.3).
async fn exchange(
    w: &TlsWorld,
    cert: Option<&ClientCert>,
    req: http::Request<Full<Bytes>>,
) -> Result<(u16, String), String> {
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots(&w.ca));
    let config = match cert {
        None => builder.with_no_client_auth(),
        Some(c) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(c.der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.key.clone())),
            )
            .unwrap(),
    };
    let tls = handshake(w.server.addr, config, b"http/1.1")
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("http: {e}"))?;
    tokio::spawn(conn);
    let resp = tokio::time::timeout(Duration::from_secs(10), h1.send_request(req))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    #[allow(clippy::disallowed_methods)]
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn token_request(w: &TlsWorld, client_id: &str) -> http::Request<Full<Bytes>> {
    let body = gp_gateway::sandbox::demo_identity(client_id)
        .unwrap()
        .token_request_body(&w.sb.manifest.token_url, None)
        .unwrap();
    http::Request::post("https://localhost/oauth2/token")
        .header("host", "localhost")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn patient_read(w: &TlsWorld, token: &str) -> http::Request<Full<Bytes>> {
    let nhs = &w
        .sb
        .manifest
        .patients
        .iter()
        .find(|p| p.flags.is_empty())
        .unwrap()
        .nhs_number;
    http::Request::get(format!("https://localhost/FHIR/R4/Patient/{nhs}"))
        .header("host", "localhost")
        .header("accept", "application/fhir+json")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

async fn token(w: &TlsWorld, client_id: &str, cert: Option<&ClientCert>) -> String {
    let (status, body) = exchange(w, cert, token_request(w, client_id))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    json["access_token"].as_str().unwrap().to_owned()
}

fn spine_code(body: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    json["issue"][0]["details"]["coding"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_bound_supplier_calls_with_its_certificate_and_only_with_it() {
    let ca = Ca::new("Supplier CA");
    let consult = ca.issue("demo-consult", false);
    let booking = ca.issue("demo-booking", false);
    let w = mtls_world(&ca, ClientAuth::Optional, &[("demo-booking", &booking)]).await;

    // The bound supplier, over mutual TLS with its certificate: token, then a read.
    let token_b = token(&w, "demo-booking", Some(&booking)).await;
    let (status, body) = exchange(&w, Some(&booking), patient_read(&w, &token_b))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");

    // Its token request without a client certificate: invalid_client.
    let (status, body) = exchange(&w, None, token_request(&w, "demo-booking"))
        .await
        .unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains(r#""error":"invalid_client""#), "{body}");
    assert!(body.contains("client certificate"), "{body}");
    // ... or with another supplier's certificate (same CA, so the handshake succeeds).
    let (status, body) = exchange(&w, Some(&consult), token_request(&w, "demo-booking"))
        .await
        .unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains(r#""error":"invalid_client""#), "{body}");

    // Its (valid) token used over a connection without the certificate, or with another.
    for (row, cert) in [
        ("no certificate", None),
        ("another supplier's", Some(&consult)),
    ] {
        let (status, body) = exchange(&w, cert, patient_read(&w, &token_b))
            .await
            .unwrap();
        assert_eq!(status, 401, "{row}: {body}");
        assert_eq!(spine_code(&body), "ACCESS_DENIED", "{row}: {body}");
        assert!(body.contains("demo-booking"), "{row}: {body}");
    }

    // An unbound supplier still connects without a certificate (client_auth optional).
    let token_c = token(&w, "demo-consult", None).await;
    let (status, body) = exchange(&w, None, patient_read(&w, &token_c))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    w.stop().await;
}

#[tokio::test]
async fn certificates_from_another_ca_or_expired_are_refused_in_the_handshake() {
    let ca = Ca::new("Supplier CA");
    let rogue = Ca::new("Rogue CA");
    let good = ca.issue("demo-booking", false);
    let expired = ca.issue("demo-booking", true);
    let foreign = rogue.issue("demo-booking", false);
    let w = mtls_world(&ca, ClientAuth::Optional, &[("demo-booking", &good)]).await;
    for (row, cert) in [("wrong CA", &foreign), ("expired", &expired)] {
        let result = exchange(&w, Some(cert), token_request(&w, "demo-booking")).await;
        assert!(result.is_err(), "{row}: refused, got {result:?}");
    }
    // The right certificate still works on the same server.
    token(&w, "demo-booking", Some(&good)).await;
    w.stop().await;
}

#[tokio::test]
async fn required_client_auth_refuses_connections_without_a_certificate() {
    let ca = Ca::new("Supplier CA");
    let booking = ca.issue("demo-booking", false);
    let w = mtls_world(&ca, ClientAuth::Required, &[]).await;
    let result = exchange(&w, None, token_request(&w, "demo-consult")).await;
    assert!(result.is_err(), "refused: {result:?}");
    // Any valid certificate from the CA gets in; unbound suppliers are not checked further.
    token(&w, "demo-consult", Some(&booking)).await;
    w.stop().await;
}

#[test]
fn client_auth_needs_a_client_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    write_pair(dir.path(), &server_cert());
    let mut config = TlsConfig::new("cert.pem", "key.pem");
    config.client_ca_file = Some("missing-ca.pem".into());
    let err = gp_gateway::server::tls_acceptor(&config, dir.path())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("missing-ca.pem"), "{err}");
}

// ---- secrets never in answers or logs --------------------------------------------------

/// Log lines written by the gateway while a test runs (every level).
#[derive(Clone, Default)]
struct CapturedLogs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// A base64url signature with its first character changed (still valid base64url).
fn tamper(signature: &str) -> String {
    let first = if signature.starts_with('A') { 'B' } else { 'A' };
    format!("{first}{}", &signature[1..])
}

/// One HTTP/1.1 request over a fresh cleartext connection; the whole answer as text.
async fn plain(addr: std::net::SocketAddr, head: &str, body: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{head}\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

// Current-thread runtime: the server's tasks run on this thread, so the thread-local
// subscriber sees their events.
#[tokio::test(flavor = "current_thread")]
async fn assertions_tokens_and_keys_never_reach_answers_or_logs() {
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let sb = sandbox().await;
    let identity = gp_gateway::sandbox::demo_identity("demo-booking").unwrap();
    let token_url = sb.manifest.token_url.clone();
    let form = |assertion: &str| {
        format!(
            "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={assertion}"
        )
    };
    let token_post =
        "POST /oauth2/token HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded";
    let mut secrets = Vec::new();

    // A forged signature, and an authentic assertion for the wrong audience.
    let good = identity.sign(&token_url, 240).unwrap();
    let (message, signature) = good.rsplit_once('.').unwrap();
    let forged = format!("{message}.{}", tamper(signature));
    let wrong_aud = identity
        .sign("https://elsewhere.example/token", 240)
        .unwrap();
    for (row, assertion, error) in [
        ("forged", &forged, "invalid_client"),
        ("wrong aud", &wrong_aud, "invalid_grant"),
    ] {
        let answer = plain(sb.server.addr, token_post, &form(assertion)).await;
        assert!(answer.contains(error), "{row}: {answer}");
        let (_, sig) = assertion.rsplit_once('.').unwrap();
        assert!(!answer.contains(sig), "{row}: assertion echoed: {answer}");
        secrets.push((row, sig.to_owned()));
        secrets.push((row, assertion.to_string()));
    }

    // A token issued, then used tampered and used for a route it has no scope for.
    let answer = plain(sb.server.addr, token_post, &form(&good)).await;
    let json = answer.split("\r\n\r\n").nth(1).unwrap();
    let token: serde_json::Value = serde_json::from_str(json).unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let (token_message, token_sig) = token.rsplit_once('.').unwrap();
    let tampered = format!("{token_message}.{}", tamper(token_sig));
    for (row, bearer, status) in [
        ("tampered token", &tampered, " 401"),
        ("token without the scope", &token, " 403"),
    ] {
        let answer = plain(
            sb.server.addr,
            &format!("GET /FHIR/R4/Condition?patient=9000000009 HTTP/1.1\r\nAuthorization: Bearer {bearer}"),
            "",
        )
        .await;
        assert!(
            answer.lines().next().unwrap().contains(status),
            "{row}: {answer}"
        );
        assert!(!answer.contains(token_sig), "{row}: token echoed: {answer}");
    }
    secrets.push(("access token", token.clone()));
    secrets.push(("access token signature", token_sig.to_owned()));

    // The supplier's private key (the gateway never holds it, but a careless echo might).
    let pem = String::from_utf8(identity.private_key_pem.clone()).unwrap();
    let key_line = pem.lines().nth(1).unwrap().to_owned();
    secrets.push(("supplier private key", key_line));

    sb.shutdown().await;
    let logged = logs.text();
    assert!(
        logged.contains("token request refused"),
        "logs captured: {logged}"
    );
    for (row, secret) in &secrets {
        assert!(
            !logged.contains(secret.as_str()),
            "{row} appears in the logs"
        );
    }
}
