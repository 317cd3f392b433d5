//! The native client's transport security and credentials, end to end through the
//! endpoint settings an adapter's config gives: HTTPS verified against the operator's CA
//! bundle, mutual TLS, an API key header, and OAuth 2.0 client credentials against a stub
//! token endpoint. Every server is on 127.0.0.1:0; certificates are made by rcgen for
//! each test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gp_adapter::endpoint::{AuthConfig, Endpoint};
use gp_adapter::native::NativeClient;
use gp_adapter::{AdapterError, CallContext, GpSystem};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const SYSTEM: GpSystem = GpSystem::new("emis", "EMIS Web");

/// A request as the stub saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: http::HeaderMap,
    body: String,
    /// Whether the client presented a certificate on the TLS handshake.
    client_cert: bool,
}

type Handler = Arc<dyn Fn(&Seen) -> (u16, String) + Send + Sync>;

/// A stub on 127.0.0.1:0 answering with `handler`, over TLS when `tls` is given; the
/// requests it saw are in `seen`.
struct Stub {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Stub {
    async fn start(
        tls: Option<Arc<rustls::ServerConfig>>,
        handler: impl Fn(&Seen) -> (u16, String) + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let acceptor = tls.map(TlsAcceptor::from);
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (handler, log, acceptor) = (handler.clone(), log.clone(), acceptor.clone());
                tokio::spawn(async move {
                    match acceptor {
                        None => serve_conn(tcp, false, handler, log).await,
                        Some(a) => {
                            // A refused handshake (no client certificate) ends here.
                            let Ok(stream) = a.accept(tcp).await else {
                                return;
                            };
                            let cert = stream.get_ref().1.peer_certificates().is_some();
                            serve_conn(stream, cert, handler, log).await;
                        }
                    }
                });
            }
        });
        Self {
            url: format!("{scheme}://{addr}"),
            seen,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve_conn<S>(stream: S, client_cert: bool, handler: Handler, log: Arc<Mutex<Vec<Seen>>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req: http::Request<Incoming>| {
        let (handler, log) = (handler.clone(), log.clone());
        async move {
            let (parts, body) = req.into_parts();
            // The stub reads what the client under test sent: a token form or nothing.
            #[allow(clippy::disallowed_methods)]
            let body = http_body_util::Limited::new(body, 64 * 1024)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let seen = Seen {
                path: parts.uri.path().to_owned(),
                headers: parts.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
                client_cert,
            };
            let (status, answer) = handler(&seen);
            log.lock().unwrap().push(seen);
            let response = hyper::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(answer)))
                .unwrap();
            Ok::<_, Infallible>(response)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

/// A test CA, a server certificate for 127.0.0.1 and a client certificate it issued, as
/// PEM files in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    server: Arc<rustls::ServerConfig>,
    mtls_server: Arc<rustls::ServerConfig>,
}

impl Pki {
    fn new() -> Self {
        let ca = ca("gp-adapter test CA");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(
            dir.path().join("other-ca.pem"),
            self::ca("another CA").pem(),
        )
        .unwrap();
        let (server_cert, server_key) =
            issue(&ca, "127.0.0.1", ExtendedKeyUsagePurpose::ServerAuth);
        let (client_cert, client_key) =
            issue(&ca, "gateway.test", ExtendedKeyUsagePurpose::ClientAuth);
        std::fs::write(dir.path().join("client.pem"), &client_cert).unwrap();
        std::fs::write(dir.path().join("client.key"), &client_key).unwrap();
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(server_cert.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_slice(server_key.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key.clone_key())
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca.pem().as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .unwrap();
        let mtls_server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
        Self {
            dir,
            server: Arc::new(server),
            mtls_server: Arc::new(mtls_server),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A certificate for `name` (an IP address or DNS name) issued by `ca`: (cert PEM, key PEM).
fn issue(
    ca: &CertifiedIssuer<'static, KeyPair>,
    name: &str,
    purpose: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.extended_key_usages = vec![purpose];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn endpoint<'a>(
    url: &'a str,
    ca_file: Option<&'a Path>,
    auth: Option<&'a AuthConfig>,
) -> Endpoint<'a> {
    Endpoint {
        system: SYSTEM,
        base_url: url,
        connect_timeout_ms: 1000,
        request_timeout_ms: 5000,
        max_record_bytes: 64 * 1024,
        ca_file,
        auth,
    }
}

fn ctx() -> CallContext {
    CallContext::new("req-1")
}

async fn get(client: &NativeClient) -> Result<(u16, String), AdapterError> {
    let r = client.get("/x", &ctx()).await?;
    Ok((r.status, String::from_utf8_lossy(&r.body).into_owned()))
}

#[tokio::test]
async fn https_is_verified_against_the_operator_ca_bundle() {
    let pki = Pki::new();
    let stub = Stub::start(Some(pki.server.clone()), |_| (200, "{}".into())).await;
    let ca = pki.path("ca.pem");
    let client = endpoint(&stub.url, Some(&ca), None).client().unwrap();
    assert_eq!(get(&client).await.unwrap(), (200, "{}".to_owned()));
    assert_eq!(stub.seen()[0].headers["x-correlation-id"], "req-1");

    // A system whose certificate does not chain to the bundle is not spoken to.
    let other = pki.path("other-ca.pem");
    let client = endpoint(&stub.url, Some(&other), None).client().unwrap();
    match get(&client).await {
        Err(AdapterError::Unavailable { system, detail }) => {
            assert_eq!(system, SYSTEM);
            assert!(
                detail.contains("cannot connect") && detail.contains("certificate"),
                "{detail}"
            );
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(
        stub.seen().len(),
        1,
        "no request reached the system over the untrusted connection"
    );
}

#[tokio::test]
async fn mutual_tls_presents_the_client_certificate() {
    let pki = Pki::new();
    let stub = Stub::start(Some(pki.mtls_server.clone()), |_| (200, "ok".into())).await;
    let ca = pki.path("ca.pem");
    // Without the certificate the server refuses the connection.
    let client = endpoint(&stub.url, Some(&ca), None).client().unwrap();
    assert!(
        matches!(get(&client).await, Err(AdapterError::Unavailable { .. })),
        "a client without a certificate is refused"
    );
    assert!(stub.seen().is_empty());

    let auth = AuthConfig::MutualTls {
        cert_file: pki.path("client.pem"),
        key_file: pki.path("client.key"),
    };
    let client = endpoint(&stub.url, Some(&ca), Some(&auth))
        .client()
        .unwrap();
    assert_eq!(get(&client).await.unwrap(), (200, "ok".to_owned()));
    assert!(stub.seen()[0].client_cert);

    // A key file that is not a key is named when the client is built.
    let bad = AuthConfig::MutualTls {
        cert_file: pki.path("client.pem"),
        key_file: pki.path("ca.pem"),
    };
    let err = endpoint(&stub.url, Some(&ca), Some(&bad))
        .client()
        .unwrap_err();
    assert!(err.to_string().starts_with("emis.auth.key_file: "), "{err}");
}

#[tokio::test]
async fn an_api_key_arrives_in_its_header_and_is_never_shown() {
    let stub = Stub::start(None, |_| (200, "{}".into())).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "s3cret-key\n").unwrap();
    let auth = AuthConfig::ApiKey {
        header: "X-API-Key".into(),
        key_file: Some(key_file),
        key_env: None,
    };
    let client = endpoint(&stub.url, None, Some(&auth)).client().unwrap();
    get(&client).await.unwrap();
    get(&client).await.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.headers["x-api-key"] == "s3cret-key"));
    assert!(!format!("{client:?}").contains("s3cret"), "{client:?}");
    assert!(!format!("{auth:?}").contains("s3cret"));

    let unset = AuthConfig::ApiKey {
        header: "X-API-Key".into(),
        key_file: None,
        key_env: Some("GP_ADAPTER_TEST_KEY_THAT_IS_NOT_SET".into()),
    };
    assert_eq!(
        endpoint(&stub.url, None, Some(&unset))
            .client()
            .unwrap_err()
            .to_string(),
        "emis.auth.key_env: environment variable GP_ADAPTER_TEST_KEY_THAT_IS_NOT_SET is not set or not UTF-8"
    );
}

/// A stub token endpoint issuing `tok-1`, `tok-2`, … valid for `expires_in` seconds, and
/// a native API accepting only the latest token; the secret file for `client-1`.
struct OAuthWorld {
    token: Stub,
    api: Stub,
    issued: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
    auth: AuthConfig,
}

impl OAuthWorld {
    async fn start(expires_in: Option<u64>, token_status: u16) -> Self {
        let issued = Arc::new(AtomicUsize::new(0));
        let count = issued.clone();
        let token = Stub::start(None, move |_| {
            if token_status != 200 {
                return (
                    token_status,
                    r#"{"error":"invalid_client","error_description":"unknown client"}"#.into(),
                );
            }
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            let expiry = expires_in
                .map(|s| format!(r#","expires_in":{s}"#))
                .unwrap_or_default();
            (
                200,
                format!(r#"{{"access_token":"tok-{n}","token_type":"Bearer"{expiry}}}"#),
            )
        })
        .await;
        let latest = issued.clone();
        let api = Stub::start(None, move |s| {
            let want = format!("Bearer tok-{}", latest.load(Ordering::SeqCst));
            if s.headers.get("authorization").is_some_and(|h| *h == want) {
                (200, "{}".into())
            } else {
                (401, "{}".into())
            }
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "pa:ss wörd\n").unwrap();
        let auth = AuthConfig::OauthClientCredentials {
            token_url: format!("{}/oauth2/token", token.url),
            client_id: "client-1".into(),
            client_secret_file: Some(secret),
            client_secret_env: None,
            scope: Some("patient/*.read system/Observation.write".into()),
        };
        Self {
            token,
            api,
            issued,
            _dir: dir,
            auth,
        }
    }

    fn client(&self) -> NativeClient {
        endpoint(&self.api.url, None, Some(&self.auth))
            .client()
            .unwrap()
    }
}

#[tokio::test]
async fn one_token_serves_many_calls() {
    let w = OAuthWorld::start(Some(3600), 200).await;
    let client = w.client();
    // Concurrent first calls wait for one fetch rather than each fetching.
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let client = client.clone();
        calls.spawn(async move { get(&client).await });
    }
    for result in calls.join_all().await {
        assert_eq!(result.unwrap().0, 200);
    }
    assert_eq!(get(&client).await.unwrap().0, 200);
    assert_eq!(
        w.issued.load(Ordering::SeqCst),
        1,
        "one token fetch for every call"
    );
    let request = &w.token.seen()[0];
    assert_eq!(request.path, "/oauth2/token");
    assert_eq!(
        request.body,
        "grant_type=client_credentials&scope=patient%2F%2A.read%20system%2FObservation.write"
    );
    // RFC 6749 §2.3.1: id and secret form-encoded, then Basic.
    let basic = request.headers["authorization"].to_str().unwrap();
    let decoded = base64_decode(basic.strip_prefix("Basic ").unwrap());
    assert_eq!(decoded, "client-1:pa%3Ass%20w%C3%B6rd");
    assert!(!format!("{client:?}").contains("pa:ss"));
}

#[tokio::test]
async fn an_expired_token_is_fetched_again() {
    let w = OAuthWorld::start(Some(1), 200).await;
    let client = w.client();
    assert_eq!(get(&client).await.unwrap().0, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&client).await.unwrap().0, 200);
    assert_eq!(w.issued.load(Ordering::SeqCst), 2);
    assert_eq!(w.api.seen().len(), 2, "no call was refused");
}

#[tokio::test]
async fn a_refused_token_is_replaced_once() {
    let w = OAuthWorld::start(None, 200).await;
    let client = w.client();
    assert_eq!(get(&client).await.unwrap().0, 200);
    // The system stops accepting tok-1 (the stub accepts only a newer token).
    w.issued.fetch_add(1, Ordering::SeqCst);
    assert_eq!(get(&client).await.unwrap().0, 200);
    assert_eq!(
        w.issued.load(Ordering::SeqCst),
        3,
        "tok-3 fetched after the 401"
    );
    let auths: Vec<String> = w
        .api
        .seen()
        .iter()
        .map(|s| s.headers["authorization"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(auths, ["Bearer tok-1", "Bearer tok-1", "Bearer tok-3"]);

    // A system that refuses even a fresh token answers 401 after one renewal.
    let refusing = Stub::start(None, |_| (401, "{}".into())).await;
    let client = endpoint(&refusing.url, None, Some(&w.auth))
        .client()
        .unwrap();
    assert_eq!(get(&client).await.unwrap().0, 401);
    assert_eq!(refusing.seen().len(), 2);
}

#[tokio::test]
async fn a_failing_token_endpoint_fails_the_call_before_the_system_is_called() {
    let w = OAuthWorld::start(Some(3600), 401).await;
    match get(&w.client()).await {
        Err(AdapterError::Rejected { system, detail }) => {
            assert_eq!(system, SYSTEM);
            assert_eq!(
                detail,
                "cannot get an access token: the token endpoint answered HTTP 401 invalid_client: unknown client"
            );
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    let w = OAuthWorld::start(Some(3600), 503).await;
    assert!(matches!(
        get(&w.client()).await,
        Err(AdapterError::Unavailable { detail, .. }) if detail.contains("token endpoint answered HTTP 503")
    ));
    assert!(w.api.seen().is_empty(), "no native call without a token");

    // Nothing listening at the token URL.
    let w = OAuthWorld::start(Some(3600), 200).await;
    let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", gone.local_addr().unwrap());
    drop(gone);
    let AuthConfig::OauthClientCredentials {
        client_id,
        client_secret_file,
        ..
    } = &w.auth
    else {
        unreachable!()
    };
    let auth = AuthConfig::OauthClientCredentials {
        token_url: url,
        client_id: client_id.clone(),
        client_secret_file: client_secret_file.clone(),
        client_secret_env: None,
        scope: None,
    };
    let client = endpoint(&w.api.url, None, Some(&auth)).client().unwrap();
    assert!(matches!(
        get(&client).await,
        Err(AdapterError::Unavailable { detail, .. })
            if detail.starts_with("cannot get an access token: the token endpoint: cannot connect")
    ));
    assert!(w.api.seen().is_empty());
}

#[tokio::test]
async fn a_token_answer_without_a_bearer_token_is_invalid_data() {
    let token = Stub::start(None, |_| (200, r#"{"token_type":"Bearer"}"#.into())).await;
    let api = Stub::start(None, |_| (200, "{}".into())).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s"), "x").unwrap();
    let auth = AuthConfig::OauthClientCredentials {
        token_url: token.url.clone(),
        client_id: "c".into(),
        client_secret_file: Some(dir.path().join("s")),
        client_secret_env: None,
        scope: None,
    };
    let client = endpoint(&api.url, None, Some(&auth)).client().unwrap();
    assert_eq!(
        get(&client).await.unwrap_err(),
        AdapterError::InvalidNativeData {
            system: SYSTEM,
            detail: "the token endpoint's answer: access_token is missing".into()
        }
    );
    assert!(api.seen().is_empty());
}

fn base64_decode(s: &str) -> String {
    use base64::Engine;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(s).unwrap()).unwrap()
}
