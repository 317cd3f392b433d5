//! The HTTP server: HTTP/1.1 and HTTP/2 (ALPN over TLS, prior knowledge in clear),
//! optional TLS with rustls (modern suites only, certificate reload without restart,
//! optional mutual TLS), request-head size limits, connection caps and idle closing
//! (see `connections`), the admin listener, and graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use gp_auth::CertThumbprint;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use rustls::crypto::CryptoProvider;
use rustls::crypto::ring::cipher_suite as suite;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, SupportedCipherSuite};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::app::App;
use crate::config::{ClientAuth, ServerConfig, TlsConfig};
use crate::connections::{AcceptBackoff, Activity, IdleLimits, Limits};
use crate::context::ClientCertificate;

/// The only cipher suites offered: TLS 1.3's three AEAD suites, and for TLS 1.2 only
/// ECDHE key exchange (forward secrecy) with an AEAD cipher. No CBC, no RC4, no static
/// RSA key exchange; with TLS 1.0 and 1.1 off (see [`tls_acceptor`]). Listed here rather
/// than taken from the provider's defaults so a dependency upgrade cannot widen it.
pub static CIPHER_SUITES: &[SupportedCipherSuite] = &[
    suite::TLS13_AES_256_GCM_SHA384,
    suite::TLS13_AES_128_GCM_SHA256,
    suite::TLS13_CHACHA20_POLY1305_SHA256,
    suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// Why TLS could not be set up, or a certificate reload was refused. Messages name files
/// and what is wrong with them, never key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("TLS configuration rejected: {0}")]
    Rustls(String),
}

fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = CIPHER_SUITES.to_vec();
    Arc::new(provider)
}

/// Serves the current certificate and key to every handshake; [`ServerTls::reload`]
/// swaps in a new pair, which new connections get at once (open ones keep theirs).
#[derive(Debug)]
pub struct CertResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertResolver {
    fn current(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn replace(&self, key: CertifiedKey) {
        let new = Arc::new(key);
        match self.current.write() {
            Ok(mut guard) => *guard = new,
            // A writer never panics while holding the lock; recover the guard regardless.
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The server's TLS set-up: the acceptor and the certificate it can reload.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
    resolver: Arc<CertResolver>,
    provider: Arc<CryptoProvider>,
    cert_path: PathBuf,
    key_path: PathBuf,
    reload_interval: Option<Duration>,
    /// The files' stamp when the served pair was first read.
    loaded: FileStamp,
}

/// Both files' modification times and sizes: a rotated pair changes at least one.
type FileStamp = [Option<(SystemTime, u64)>; 2];

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("reload_interval", &self.reload_interval)
            .finish()
    }
}

impl ServerTls {
    /// The acceptor TCP connections go through.
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Loads the certificate and key files again and, when they form a valid pair,
    /// serves them to new connections. On any error the running pair keeps serving.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = load_pair(&self.cert_path, &self.key_path, &self.provider)?;
        self.resolver.replace(key);
        Ok(())
    }

    /// The certificate being served (its leaf first), for operators and tests.
    pub fn current_certificate(&self) -> Vec<CertificateDer<'static>> {
        self.resolver.current().cert.clone()
    }

    /// What the reload watcher compares between polls.
    fn stamp(&self) -> FileStamp {
        stamp(&self.cert_path, &self.key_path)
    }
}

fn stamp(cert_path: &Path, key_path: &Path) -> FileStamp {
    let of = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| Ok((m.modified()?, m.len())))
            .ok()
    };
    [of(cert_path), of(key_path)]
}

fn file_err(path: &Path, e: &dyn std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(path, &e))?;
    if certs.is_empty() {
        return Err(file_err(path, &"no certificate found"));
    }
    Ok(certs)
}

/// Reads a certificate chain and its private key and checks they belong together.
fn load_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let certs = read_certs(cert_path)?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| file_err(key_path, &e))?;
    CertifiedKey::from_der(certs, key, provider).map_err(|e| {
        file_err(
            key_path,
            &format_args!("not a usable private key for {}: {e}", cert_path.display()),
        )
    })
}

/// Builds the server's TLS: TLS 1.2 and 1.3 only, [`CIPHER_SUITES`] only, ALPN h2 and
/// http/1.1, the certificate behind a reloadable resolver, and client certificates
/// verified against `client_ca_file` when one is configured.
pub fn tls_acceptor(tls: &TlsConfig, dir: &Path) -> Result<ServerTls, TlsError> {
    // Two crypto providers may be compiled in through feature unification; choose one
    // for anything not built with an explicit provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let provider = provider();
    let cert_path = dir.join(&tls.cert_file);
    let key_path = dir.join(&tls.key_file);
    // Taken before reading, so a change made while reading is seen by the next poll.
    let loaded = stamp(&cert_path, &key_path);
    let resolver = Arc::new(CertResolver {
        current: RwLock::new(Arc::new(load_pair(&cert_path, &key_path, &provider)?)),
    });
    let verifier = match &tls.client_ca_file {
        None => WebPkiClientVerifier::no_client_auth(),
        Some(file) => {
            let ca_path = dir.join(file);
            let mut roots = RootCertStore::empty();
            for ca in read_certs(&ca_path)? {
                roots.add(ca).map_err(|e| file_err(&ca_path, &e))?;
            }
            let builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let builder = match tls.client_auth.unwrap_or_default() {
                // Suppliers without a certificate binding may still connect; bound ones
                // are refused later, per request, by gp-auth.
                ClientAuth::Optional => builder.allow_unauthenticated(),
                ClientAuth::Required => builder,
            };
            builder
                .build()
                .map_err(|e| TlsError::Rustls(e.to_string()))?
        }
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(ServerTls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        resolver,
        provider,
        cert_path,
        key_path,
        reload_interval: (tls.reload_interval_secs > 0)
            .then(|| Duration::from_secs(tls.reload_interval_secs)),
        loaded,
    })
}

/// Reloads the certificate on SIGHUP and whenever its files change (polled), until
/// `stop` fires. A pair that fails to load is logged and the running one kept.
fn spawn_cert_reload(tls: ServerTls, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut last = tls.loaded;
        let mut hangups = crate::signals::Hangups::listen();
        loop {
            let signalled = hangups.next();
            let polled = async {
                match tls.reload_interval {
                    Some(every) => tokio::time::sleep(every).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = stop.changed() => return,
                _ = signalled => {}
                _ = polled => {
                    if tls.stamp() == last { continue; }
                }
            }
            last = tls.stamp();
            match tls.reload() {
                Ok(()) => {
                    tracing::info!(cert = %tls.cert_path.display(), "TLS certificate reloaded")
                }
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificate NOT reloaded; the running one keeps serving")
                }
            }
        }
    });
}

/// hyper's own head limit: twice `max_header_bytes`, so a head over the limit (but
/// not absurdly so) still reaches the pipeline and is refused with an OperationOutcome
/// by [`crate::head::check_head`]; beyond this, hyper answers a bare 431 and closes.
fn transport_head_limit(max_header_bytes: usize) -> usize {
    max_header_bytes.saturating_mul(2).max(8192)
}

/// Which endpoints a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoints {
    /// The suppliers' port: the whole pipeline.
    Main,
    /// The operators' port (`[admin] listen`): `/metrics` and the probes only.
    Admin,
}

impl Endpoints {
    fn label(self) -> &'static str {
        match self {
            Self::Main => "main",
            Self::Admin => "admin",
        }
    }
}

/// The service for one connection: every request goes to the pipeline (or the admin
/// endpoints), carrying the connection's client certificate (mutual TLS) as an
/// extension, and counts as activity on the connection while it is in flight.
fn connection_service(
    app: Arc<App>,
    peer: SocketAddr,
    client_cert: Option<CertThumbprint>,
    endpoints: Endpoints,
    activity: Arc<Activity>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ 'static {
    service_fn(move |mut req: Request<Incoming>| {
        let app = app.clone();
        let busy = activity.begin();
        if let Some(cert) = client_cert {
            req.extensions_mut().insert(ClientCertificate(cert));
        }
        async move {
            let resp = match endpoints {
                Endpoints::Main => crate::pipeline::handle(app, req, Some(peer.ip())).await,
                Endpoints::Admin => crate::pipeline::admin(app, req).await,
            };
            drop(busy);
            Ok::<_, Infallible>(resp)
        }
    })
}

/// How often an HTTP/2 connection is pinged, and how long an answer may take, so a
/// peer that vanished mid-request frees its connection without waiting for the idle
/// timer. Pings do not count as activity (see [`Activity::idle_for`]).
const H2_PING_EVERY: Duration = Duration::from_secs(20);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a TLS handshake may take before the connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Caps of the admin listener: its own, so a flood on the main port never blocks a
/// scrape or a probe (it is loopback by default; these bound a misconfigured exposure).
const ADMIN_MAX_CONNECTIONS: usize = 64;

/// One accepted connection, and what serving it needs.
struct Conn {
    app: Arc<App>,
    peer: SocketAddr,
    endpoints: Endpoints,
    idle: IdleLimits,
    /// How long requests in flight may finish once the connection is being closed.
    grace: Duration,
    stop: watch::Receiver<bool>,
}

impl Conn {
    /// Serves HTTP over `io` (after any TLS handshake, so the time to the first request
    /// counts from here) until the connection ends, closing it gracefully (HTTP/1.1:
    /// after the request in flight; HTTP/2: GOAWAY, then the open streams finish) once
    /// it has been idle past `idle` or the server stops; still open `grace` later, it is
    /// dropped.
    async fn serve<I>(
        self,
        builder: &Builder<TokioExecutor>,
        io: I,
        client_cert: Option<CertThumbprint>,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Self {
            app,
            peer,
            endpoints,
            idle,
            grace,
            mut stop,
        } = self;
        let activity = Arc::new(Activity::default());
        let service = connection_service(app, peer, client_cert, endpoints, activity.clone());
        let conn = builder.serve_connection(TokioIo::new(io), service);
        let mut conn = std::pin::pin!(conn);
        let ended = tokio::select! {
            ended = conn.as_mut() => Some(ended),
            () = activity.idle_for(idle) => {
                tracing::debug!(%peer, "closing an idle connection");
                None
            }
            _ = stop.wait_for(|stopping| *stopping) => None,
        };
        let ended = match ended {
            Some(ended) => ended,
            None => {
                conn.as_mut().graceful_shutdown();
                match tokio::time::timeout(grace, conn).await {
                    Ok(ended) => ended,
                    Err(_) => {
                        tracing::debug!(%peer, "connection dropped: still open after its grace period");
                        return;
                    }
                }
            }
        };
        if let Err(e) = ended {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}

/// A running server.
pub struct ServerHandle {
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    /// Tasks beside the listener (notification deliveries, change polling) that stop
    /// with it: awaited on shutdown, so none holds the gateway (its audit trail) after.
    background: Vec<JoinHandle<()>>,
}

impl ServerHandle {
    /// Stops accepting, marks readiness false, and waits for in-flight requests
    /// (at most `deadline`).
    pub async fn shutdown(self, deadline: Duration) {
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(deadline + Duration::from_secs(1), self.task).await;
        for mut task in self.background {
            if tokio::time::timeout(deadline, &mut task).await.is_err() {
                // Cut short, and awaited until what it held is dropped.
                task.abort();
                let _ = task.await;
            }
        }
    }

    /// Waits until the server stops on its own (it does not, short of a shutdown).
    pub async fn wait(self) {
        let _ = self.task.await;
    }

    /// A sender that triggers shutdown, for signal handlers.
    pub fn shutdown_trigger(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }

    /// A receiver that changes when the server starts shutting down, for tasks that
    /// run beside it and stop with it.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}

/// Starts serving `app` to suppliers on `listener`.
pub fn start(
    app: Arc<App>,
    listener: TcpListener,
    server: &ServerConfig,
    tls: Option<ServerTls>,
) -> std::io::Result<ServerHandle> {
    let limits = Limits::new(
        Endpoints::Main.label(),
        server.max_connections,
        server.max_connections_per_peer,
        app.trusted_proxies.clone(),
        app.metrics.clone(),
    );
    let handle = serve(app.clone(), listener, server, tls, Endpoints::Main, limits)?;
    // Notification deliveries and change polling run beside the main listener, off the
    // request path, and stop with it.
    let mut handle = handle;
    handle.background.extend(crate::delivery::worker::spawn(
        app.clone(),
        handle.shutdown.subscribe(),
    ));
    handle.background.extend(crate::delivery::poller::spawn(
        app,
        handle.shutdown.subscribe(),
    ));
    Ok(handle)
}

/// Starts the admin listener (`[admin] listen`): `/metrics`, `/_health` and `/_ready`,
/// in clear (it is for the host or the pod, not the network). Its shutdown does not
/// mark the gateway draining: stop it after the main listener.
pub fn start_admin(
    app: Arc<App>,
    listener: TcpListener,
    server: &ServerConfig,
) -> std::io::Result<ServerHandle> {
    let limits = Limits::new(
        Endpoints::Admin.label(),
        ADMIN_MAX_CONNECTIONS,
        ADMIN_MAX_CONNECTIONS,
        Vec::new(),
        app.metrics.clone(),
    );
    serve(app, listener, server, None, Endpoints::Admin, limits)
}

fn serve(
    app: Arc<App>,
    listener: TcpListener,
    server: &ServerConfig,
    tls: Option<ServerTls>,
    endpoints: Endpoints,
    limits: Arc<Limits>,
) -> std::io::Result<ServerHandle> {
    let addr = listener.local_addr()?;
    let (tx, mut rx) = watch::channel(false);
    if let Some(tls) = &tls {
        spawn_cert_reload(tls.clone(), tx.subscribe());
    }
    let head_limit = transport_head_limit(server.max_header_bytes);
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(server.header_read_timeout_ms))
        .max_buf_size(head_limit);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_EVERY)
        .keep_alive_timeout(H2_PING_TIMEOUT)
        .max_header_list_size(u32::try_from(head_limit).unwrap_or(u32::MAX));
    let builder = Arc::new(builder);
    let idle = IdleLimits::new(
        Duration::from_millis(server.idle_timeout_ms),
        Duration::from_millis(server.header_read_timeout_ms),
    );
    let drain = Duration::from_millis(server.request_timeout_ms);
    let task = tokio::spawn(async move {
        let mut backoff = AcceptBackoff::default();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(s) => {
                            backoff.reset();
                            s
                        }
                        Err(e) => {
                            backoff.failed(endpoints.label(), &e).await;
                            continue;
                        }
                    };
                    // Over a cap: dropped (closed) here, before TLS or HTTP spend anything on it.
                    let Ok(slot) = limits.admit(peer.ip()) else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let conn = Conn {
                        app: app.clone(),
                        peer,
                        endpoints,
                        idle,
                        grace: drain,
                        stop: rx.clone(),
                    };
                    let builder = builder.clone();
                    let acceptor = tls.as_ref().map(|t| t.acceptor().clone());
                    tokio::spawn(async move {
                        let _slot = slot;
                        let Some(acceptor) = acceptor else {
                            return conn.serve(&builder, stream, None).await;
                        };
                        let tls_stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => { tracing::debug!(%peer, error = %e, "TLS handshake failed"); return; }
                            Err(_) => { tracing::debug!(%peer, "TLS handshake timed out"); return; }
                        };
                        let client_cert = tls_stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|chain| chain.first())
                            .map(|leaf| CertThumbprint::of_der(leaf.as_ref()));
                        conn.serve(&builder, tls_stream, client_cert).await;
                    });
                }
                _ = rx.changed() => break,
            }
        }
        if endpoints == Endpoints::Main {
            app.stop_accepting();
        }
        drop(listener);
        if tokio::time::timeout(drain, limits.drained()).await.is_err() {
            tracing::warn!(
                listener = endpoints.label(),
                open = limits.open(),
                "shutdown deadline passed with requests still in flight"
            );
        }
    });
    Ok(ServerHandle {
        background: Vec::new(),
        addr,
        shutdown: tx,
        task,
    })
}
