//! The HTTP server: HTTP/1.1 and HTTP/2 (ALPN over TLS, prior knowledge in clear),
//! optional TLS with rustls, connection limits and graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::app::App;
use crate::config::{ServerConfig, TlsConfig};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("TLS configuration rejected: {0}")]
    Rustls(String),
}

/// Builds a rustls acceptor: TLS 1.2 and 1.3 only, ALPN h2 and http/1.1.
pub fn tls_acceptor(tls: &TlsConfig, dir: &Path) -> Result<TlsAcceptor, TlsError> {
    // Two crypto providers may be compiled in through feature unification; choose one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert_path = dir.join(&tls.cert_file);
    let key_path = dir.join(&tls.key_file);
    let file_err = |p: &Path, e: &dyn std::fmt::Display| TlsError::File {
        path: p.display().to_string(),
        message: e.to_string(),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| file_err(&cert_path, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(&cert_path, &e))?;
    if certs.is_empty() {
        return Err(file_err(&cert_path, &"no certificate found"));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| file_err(&key_path, &e))?;
    let mut config = rustls::ServerConfig::builder_with_protocol_versions(&[
        &rustls::version::TLS13,
        &rustls::version::TLS12,
    ])
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| TlsError::Rustls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A running server.
pub struct ServerHandle {
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ServerHandle {
    /// Stops accepting, marks readiness false, and waits for in-flight requests
    /// (at most `deadline`).
    pub async fn shutdown(self, deadline: Duration) {
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(deadline + Duration::from_secs(1), self.task).await;
    }

    /// Waits until the server stops on its own (it does not, short of a shutdown).
    pub async fn wait(self) {
        let _ = self.task.await;
    }

    /// A sender that triggers shutdown, for signal handlers.
    pub fn shutdown_trigger(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Starts serving `app` on `listener`.
pub fn start(
    app: Arc<App>,
    listener: TcpListener,
    server: &ServerConfig,
    tls: Option<TlsAcceptor>,
) -> std::io::Result<ServerHandle> {
    let addr = listener.local_addr()?;
    let (tx, mut rx) = watch::channel(false);
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(server.header_read_timeout_ms))
        .max_buf_size(server.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(server.max_header_bytes).unwrap_or(u32::MAX));
    let drain = Duration::from_millis(server.request_timeout_ms);
    let task = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(s) => s,
                        Err(e) => {
                            // Out of file descriptors and the like: back off rather than spin.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let app = app.clone();
                    let service = service_fn(move |req| {
                        let app = app.clone();
                        async move { Ok::<_, Infallible>(crate::pipeline::handle(app, req, Some(peer.ip())).await) }
                    });
                    match &tls {
                        None => {
                            let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                            let conn = graceful.watch(conn);
                            tokio::spawn(async move {
                                if let Err(e) = conn.await {
                                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                                }
                            });
                        }
                        Some(acceptor) => {
                            let acceptor = acceptor.clone();
                            let builder = builder.clone();
                            let watcher = graceful.watcher();
                            tokio::spawn(async move {
                                let tls_stream = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                                    Ok(Ok(s)) => s,
                                    Ok(Err(e)) => { tracing::debug!(%peer, error = %e, "TLS handshake failed"); return; }
                                    Err(_) => { tracing::debug!(%peer, "TLS handshake timed out"); return; }
                                };
                                let conn = builder.serve_connection(TokioIo::new(tls_stream), service).into_owned();
                                if let Err(e) = watcher.watch(conn).await {
                                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                                }
                            });
                        }
                    }
                }
                _ = rx.changed() => break,
            }
        }
        app.stop_accepting();
        drop(listener);
        if tokio::time::timeout(drain, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("shutdown deadline passed with requests still in flight");
        }
    });
    Ok(ServerHandle {
        addr,
        shutdown: tx,
        task,
    })
}
