//! TLS for native calls: the trust roots a [`super::NativeClient`] verifies an `https://`
//! system with, the client certificate it presents for mutual TLS, and the connector that
//! speaks plain TCP or TLS by the URL's scheme.
//!
//! Trust comes only from the operator's CA bundle: no built-in or platform roots, so a
//! native endpoint is trusted because its operator said so, never because some public CA
//! vouches for the name.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Which PEM input a [`TlsError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsInput {
    /// The CA bundle the system's certificate must chain to.
    CaBundle,
    /// The client certificate chain presented for mutual TLS.
    ClientCert,
    /// The client certificate's private key.
    ClientKey,
}

/// Why TLS settings could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct TlsError {
    pub input: TlsInput,
    pub reason: String,
}

/// The TLS settings of a native API's `https://` connections: trust roots and, for
/// mutual TLS, a client certificate. Cheap to clone. TLS 1.2 and 1.3 with rustls's
/// default (ring) suites.
#[derive(Clone)]
pub struct NativeTls {
    config: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for NativeTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeTls")
            .field(
                "client_cert",
                &self.config.client_auth_cert_resolver.has_certs(),
            )
            .finish_non_exhaustive()
    }
}

impl NativeTls {
    /// Trusts the certificates of the PEM `ca_bundle`; presents `client` (certificate
    /// chain PEM, leaf first, and private key PEM) when given.
    pub fn from_pem(ca_bundle: &[u8], client: Option<(&[u8], &[u8])>) -> Result<Self, TlsError> {
        let fail = |input, reason: String| TlsError { input, reason };
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_bundle) {
            let cert = cert.map_err(|e| fail(TlsInput::CaBundle, format!("not PEM: {e}")))?;
            roots.add(cert).map_err(|e| {
                fail(
                    TlsInput::CaBundle,
                    format!("holds a certificate that cannot be a trust root: {e}"),
                )
            })?;
        }
        if roots.is_empty() {
            return Err(fail(
                TlsInput::CaBundle,
                "holds no PEM certificate".to_owned(),
            ));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| fail(TlsInput::CaBundle, e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match client {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => {
                let chain = CertificateDer::pem_slice_iter(chain)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| fail(TlsInput::ClientCert, format!("not PEM: {e}")))?;
                if chain.is_empty() {
                    return Err(fail(
                        TlsInput::ClientCert,
                        "holds no PEM certificate".to_owned(),
                    ));
                }
                let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| {
                    fail(
                        TlsInput::ClientKey,
                        format!("holds no PEM private key: {e}"),
                    )
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| fail(TlsInput::ClientKey, e.to_string()))?
            }
        };
        // The native client speaks HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// As [`NativeTls::from_pem`], reading the PEM files (errors name the file, never
    /// its content).
    pub fn from_files(ca_file: &Path, client: Option<(&Path, &Path)>) -> Result<Self, TlsError> {
        let read = |input, path: &Path| {
            std::fs::read(path).map_err(|e| TlsError {
                input,
                reason: format!("cannot read {}: {e}", path.display()),
            })
        };
        let ca = read(TlsInput::CaBundle, ca_file)?;
        let pems = match client {
            None => None,
            Some((cert, key)) => Some((
                read(TlsInput::ClientCert, cert)?,
                read(TlsInput::ClientKey, key)?,
            )),
        };
        Self::from_pem(&ca, pems.as_ref().map(|(c, k)| (&c[..], &k[..]))).map_err(|e| {
            let path = match (e.input, client) {
                (TlsInput::ClientCert, Some((cert, _))) => cert,
                (TlsInput::ClientKey, Some((_, key))) => key,
                _ => ca_file,
            };
            TlsError {
                reason: format!("{} {}", path.display(), e.reason),
                ..e
            }
        })
    }
}

/// Connects by the URL's scheme: plain TCP for `http://`, TLS over it for `https://`
/// (with the client's [`NativeTls`]; without one, an `https://` URL is refused).
#[derive(Clone)]
pub(crate) struct Connector {
    http: HttpConnector,
    tls: Option<TlsConnector>,
}

impl Connector {
    /// `http` must not enforce the `http` scheme: TLS is layered on what it connects.
    pub(crate) fn new(mut http: HttpConnector, tls: Option<&NativeTls>) -> Self {
        http.enforce_http(false);
        Self {
            http,
            tls: tls.map(|t| TlsConnector::from(t.config.clone())),
        }
    }
}

/// A connection to a native API, in clear or over TLS.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

type BoxError = Box<dyn StdError + Send + Sync>;

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let mut http = self.http.clone();
        let tls = self.tls.clone();
        Box::pin(async move {
            let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
            // The host as TLS names it: an IPv6 literal without its brackets.
            let host = uri
                .host()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let tcp = http.call(uri).await?.into_inner();
            if !https {
                return Ok(TokioIo::new(Stream::Plain(tcp)));
            }
            let tls = tls.ok_or("https:// needs TLS settings (a CA bundle)")?;
            let name = ServerName::try_from(host)?;
            let stream = tls.connect(name, tcp).await?;
            Ok(TokioIo::new(Stream::Tls(Box::new(stream))))
        })
    }
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        match self {
            Self::Plain(tcp) => tcp.connected(),
            Self::Tls(tls) => tls.get_ref().0.connected(),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }
}
