//! A small HTTP/1.1 client for GP systems' native APIs, shared by every adapter so each
//! gets the same timeouts, body cap, correlation headers, transport security and error
//! mapping.
//!
//! `http://` for loopback simulators and operators' TLS-terminating tunnels; `https://`
//! with rustls, trusting only the operator's CA bundle and optionally presenting a client
//! certificate ([`NativeTls`]); credentials on every call from a [`NativeAuth`] (an API
//! key, OAuth 2.0 client credentials, or a vendor's own).

mod auth;
mod tls;

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_TYPE, HeaderName};
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri};

/// The HTTP method of a native call (re-exported so adapters need no `http` dependency).
pub use http::Method;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub use auth::{ApiKey, NativeAuth, OAuthClientCredentials};
pub use tls::{NativeTls, TlsError, TlsInput};

use crate::{AdapterError, CallContext, GpSystem};

/// Why a [`NativeClient`] could not be built (a configuration mistake, found before any call).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NativeClientError {
    /// The base URL does not parse as an absolute `http(s)://host[:port][/path]` URL.
    #[error("base URL '{url}' is not valid: {reason}")]
    InvalidBaseUrl { url: String, reason: String },
    /// An `https://` base URL without TLS settings to verify the system with.
    #[error("base URL '{url}' is https:// but no CA bundle was given to verify the system with")]
    NoTrustRoots { url: String },
}

/// A native system's answer: status, the whole (capped) body, its content type and
/// every response header (some APIs page through one, e.g. `X-Vision-Continuation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeResponse {
    pub status: u16,
    pub body: Bytes,
    pub content_type: Option<String>,
    pub headers: HeaderMap,
}

impl NativeResponse {
    /// The value of header `name`, when present (bytes that are not UTF-8 replaced).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    /// The body of a `200` answer; any other answer is the error `refused` maps it to
    /// (each adapter's native error mapping).
    pub fn ok_body(
        self,
        refused: impl FnOnce(&NativeResponse) -> AdapterError,
    ) -> Result<Bytes, AdapterError> {
        if self.status == 200 {
            Ok(self.body)
        } else {
            Err(refused(&self))
        }
    }

    /// The answer to a create made under an idempotency key, as every GP system gives
    /// it: `(true, body)` for `201` (created now), `(false, body)` for `200` (the key had
    /// been seen; the body describes the first creation); any other answer is the error
    /// `refused` maps it to.
    pub fn created_body(
        self,
        refused: impl FnOnce(&NativeResponse) -> AdapterError,
    ) -> Result<(bool, Bytes), AdapterError> {
        match self.status {
            201 => Ok((true, self.body)),
            200 => Ok((false, self.body)),
            _ => Err(refused(&self)),
        }
    }
}

/// HTTP client for one GP system's native API. Cheap to clone; connections are pooled.
#[derive(Clone)]
pub struct NativeClient {
    system: GpSystem,
    /// Base URL without a trailing slash, so `get("/x")` concatenates cleanly.
    base: String,
    request_timeout: Duration,
    max_body_bytes: usize,
    client: Client<tls::Connector, Full<Bytes>>,
    auth: Option<Arc<dyn NativeAuth>>,
}

impl std::fmt::Debug for NativeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeClient")
            .field("system", &self.system)
            .field("base", &self.base)
            .field("request_timeout", &self.request_timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("authenticated", &self.auth.is_some())
            .finish_non_exhaustive()
    }
}

/// Checks a base URL is absolute `http://` or `https://` with a host; returns it without
/// a trailing slash.
pub fn check_base_url(url: &str) -> Result<String, NativeClientError> {
    let bad = |reason: &str| NativeClientError::InvalidBaseUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: Uri = url.parse().map_err(|_| bad("it does not parse as a URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(_) => return Err(bad("only http:// and https:// are supported")),
        None => {
            return Err(bad(
                "it must be absolute, starting with http:// or https://",
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("it has no host"));
    }
    if uri.query().is_some() {
        return Err(bad("it must not have a query string"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// True for an `https://` URL.
pub fn is_https(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

/// How much a native connection reads at a time.
const NATIVE_READ_BUFFER: usize = 8 * 1024;

impl NativeClient {
    /// A client for `system` at `base_url`. `connect_timeout` bounds the TCP connect,
    /// `request_timeout` the whole call (credentials, TLS handshake, headers and body);
    /// bodies larger than `max_body_bytes` are refused. An `https://` base URL needs
    /// `tls`; calls carry no credentials until [`NativeClient::with_auth`].
    pub fn new(
        system: GpSystem,
        base_url: &str,
        connect_timeout: Duration,
        request_timeout: Duration,
        max_body_bytes: usize,
        tls: Option<&NativeTls>,
    ) -> Result<Self, NativeClientError> {
        let base = check_base_url(base_url)?;
        if is_https(&base) && tls.is_none() {
            return Err(NativeClientError::NoTrustRoots { url: base });
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            // Each connection reads into a buffer of its own, kept while it is open: read
            // in 8 KiB steps it stays 8 KiB, where hyper's adaptive reads grow it to fit
            // the largest record read (and keep that) on every one of the hundreds of
            // connections a busy gateway holds to its GP systems.
            .http1_read_buf_exact_size(NATIVE_READ_BUFFER)
            .build(tls::Connector::new(connector, tls));
        Ok(Self {
            system,
            base,
            request_timeout,
            max_body_bytes,
            client,
            auth: None,
        })
    }

    /// The same client presenting `auth`'s credentials on every call (in place of any it
    /// had): a vendor's own [`NativeAuth`], or a built-in one.
    pub fn with_auth(self, auth: Arc<dyn NativeAuth>) -> Self {
        Self {
            auth: Some(auth),
            ..self
        }
    }

    /// The system this client speaks to.
    pub fn system(&self) -> GpSystem {
        self.system
    }

    /// `GET {base}{path}`, sending the request id as `X-Correlation-Id` and the
    /// `traceparent` when set. Any status is returned as a response; only transport
    /// failures are errors: refused/reset → `Unavailable`, too slow → `Timeout`, body
    /// over the cap → `InvalidNativeData`.
    pub async fn get(&self, path: &str, ctx: &CallContext) -> Result<NativeResponse, AdapterError> {
        self.send(Method::GET, path, None, &[], ctx).await
    }

    /// Like [`NativeClient::get`] for any method, with an optional `(content type, body)`
    /// and extra request headers (a native version precondition, say). Writes are never
    /// retried here (whether a retry is safe is the caller's decision), except once after
    /// a `401` when the [`NativeAuth`] has fresh credentials: the system did not act on it.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        headers: &[(&str, String)],
        ctx: &CallContext,
    ) -> Result<NativeResponse, AdapterError> {
        let body = body.map(|(content_type, bytes)| (content_type, Bytes::from(bytes)));
        self.send_bytes(method, path, body, headers, ctx).await
    }

    /// [`NativeClient::send`] with a body already in [`Bytes`] (document content): it is
    /// sent as it is, never copied, however large.
    pub async fn send_bytes(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Bytes)>,
        headers: &[(&str, String)],
        ctx: &CallContext,
    ) -> Result<NativeResponse, AdapterError> {
        let mut extra = HeaderMap::with_capacity(headers.len());
        for (name, value) in headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| e.to_string())
                .and_then(|n| Ok((n, HeaderValue::from_str(value).map_err(|e| e.to_string())?)));
            let (name, value) = header.map_err(|e| self.unbuildable(&e))?;
            extra.append(name, value);
        }
        self.call(method, path, body, extra, ctx, true).await
    }

    /// [`NativeClient::send`] without the client's [`NativeAuth`] (a token endpoint's
    /// own call), with typed headers so sensitive values stay marked as such.
    pub(crate) async fn send_unauthenticated(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        headers: HeaderMap,
        ctx: &CallContext,
    ) -> Result<NativeResponse, AdapterError> {
        let body = body.map(|(content_type, bytes)| (content_type, Bytes::from(bytes)));
        self.call(method, path, body, headers, ctx, false).await
    }

    fn unbuildable(&self, error: &str) -> AdapterError {
        tracing::error!(system = %self.system, base = %self.base, %error, "cannot build native request");
        AdapterError::Rejected {
            system: self.system,
            detail: format!("cannot build the request: {error}"),
        }
    }

    /// One call under the request timeout: credentials, the exchange, and (after a `401`
    /// the credentials can be renewed for) the exchange once more.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Bytes)>,
        mut headers: HeaderMap,
        ctx: &CallContext,
        authenticate: bool,
    ) -> Result<NativeResponse, AdapterError> {
        let system = self.system;
        let url = format!("{}{path}", self.base);
        // A request id or traceparent that is not a valid header value is not sent rather
        // than failing the call: correlation is best effort.
        if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
            headers.insert("x-correlation-id", v);
        }
        if let Some(tp) = ctx
            .traceparent
            .as_deref()
            .and_then(|t| HeaderValue::from_str(t).ok())
        {
            headers.insert("traceparent", tp);
        }
        let payload = match body {
            Some((content_type, bytes)) => {
                let content_type = HeaderValue::from_str(content_type)
                    .map_err(|e| self.unbuildable(&e.to_string()))?;
                headers.insert(CONTENT_TYPE, content_type);
                bytes
            }
            None => Bytes::new(),
        };
        let auth = self.auth.as_deref().filter(|_| authenticate);
        let attempts = async {
            let mut renewed = false;
            loop {
                let mut sent = headers.clone();
                if let Some(auth) = auth {
                    auth.authorise(&mut sent, ctx).await?;
                }
                let mut request = Request::builder()
                    .method(method.clone())
                    .uri(&url)
                    .body(Full::new(payload.clone()))
                    .map_err(|e| self.unbuildable(&e.to_string()))?;
                *request.headers_mut() = sent.clone();
                let response = self.exchange(request).await?;
                match auth {
                    Some(auth)
                        if response.status == 401 && !renewed && auth.refused(&sent).await =>
                    {
                        tracing::debug!(system = %system, "credentials refused; renewing them once");
                        renewed = true;
                    }
                    _ => return Ok(response),
                }
            }
        };
        let after_ms = u64::try_from(self.request_timeout.as_millis()).unwrap_or(u64::MAX);
        match tokio::time::timeout(self.request_timeout, attempts).await {
            Ok(result) => result,
            Err(_) => Err(AdapterError::Timeout { system, after_ms }),
        }
    }

    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<NativeResponse, AdapterError> {
        let system = self.system;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let too_big = |n: u64| AdapterError::InvalidNativeData {
            system,
            detail: format!(
                "response body of {n} bytes or more exceeds the {} byte limit",
                self.max_body_bytes
            ),
        };
        // Refuse early when the server announces an oversized body.
        let declared = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(n) = declared.filter(|n| *n > self.max_body_bytes as u64) {
            return Err(too_big(n));
        }
        let (parts, mut body) = response.into_parts();
        let mut buf = BytesMut::with_capacity(declared.map_or(8 * 1024, |n| n as usize));
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| AdapterError::Unavailable {
                system,
                detail: format!(
                    "connection failed while reading the response body: {}",
                    root_cause(&e)
                ),
            })?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > self.max_body_bytes {
                    return Err(too_big((buf.len() + data.len()) as u64));
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(NativeResponse {
            status: status_u16(status),
            body: buf.freeze(),
            content_type,
            headers: parts.headers,
        })
    }

    fn transport_error(&self, e: &hyper_util::client::legacy::Error) -> AdapterError {
        let system = self.system;
        // A connect timeout surfaces as an io::Error of kind TimedOut somewhere in the chain.
        let mut source: Option<&(dyn StdError + 'static)> = e.source();
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::TimedOut
            {
                let after_ms = u64::try_from(self.request_timeout.as_millis()).unwrap_or(u64::MAX);
                return AdapterError::Timeout { system, after_ms };
            }
            source = s.source();
        }
        let what = if e.is_connect() {
            "cannot connect"
        } else {
            "connection failed"
        };
        AdapterError::Unavailable {
            system,
            // The address stays in our logs: suppliers see the GP system's name, never
            // an internal endpoint.
            detail: {
                tracing::warn!(system = %system, base = %self.base, error = %root_cause(e), "{what}");
                format!("{what}: {}", root_cause(e))
            },
        }
    }
}

/// Whether a native call read or wrote: a refusal means something else for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Read,
    Write,
}

/// Maps a GP system's refusal of a call by its HTTP status: the one table every adapter
/// shares, so the same native answer means the same thing whichever system gave it.
///
/// - `404` whose native error names an unknown patient or practice (`not_found`) →
///   [`AdapterError::PatientNotFound`]; a bare `404` is a wrong URL, so `Rejected`;
/// - on a write, `409` (the record changed since the version the write was made
///   against) → [`AdapterError::VersionConflict`] and `422` (a code, unit or value the
///   system cannot hold) → [`AdapterError::Unprocessable`]; a read is never refused for
///   those, so on a read they are `Rejected`;
/// - any other 4xx (a request the adapter should not have built) → [`AdapterError::Rejected`];
/// - 5xx and anything else → [`AdapterError::Unavailable`].
///
/// `detail` carries the native code and message (see [`refusal_detail`]). Answers an
/// adapter does not trust as the system's own (a `409` without the native code, say)
/// it maps itself before calling this.
pub fn status_error(
    system: GpSystem,
    call: Call,
    status: u16,
    not_found: bool,
    detail: String,
) -> AdapterError {
    match (call, status) {
        (_, 404) if not_found => AdapterError::PatientNotFound,
        (Call::Write, 409) => AdapterError::VersionConflict { system, detail },
        (Call::Write, 422) => AdapterError::Unprocessable { system, detail },
        (_, 400..=499) => AdapterError::Rejected { system, detail },
        _ => AdapterError::Unavailable { system, detail },
    }
}

/// `HTTP {status} {code}: {message}` (without `: {message}` when it is empty), or
/// `HTTP {status} without {document}` when the body is not the system's error document
/// (`document` says what was expected, e.g. "an EMIS error document").
pub fn refusal_detail(status: u16, native: Option<(&str, &str)>, document: &str) -> String {
    match native {
        Some((code, "")) => format!("HTTP {status} {code}"),
        Some((code, message)) => format!("HTTP {status} {code}: {message}"),
        None => format!("HTTP {status} without {document}"),
    }
}

/// [`crate::Adapter::read_practitioner`] as every adapter does it: `id` must be a FHIR
/// id (`A-Z a-z 0-9 - .`, at most 64, not only dots: anything else names nobody, and
/// no call is made, so it is safe in a native URL path), `fetch` makes the one native call for it and maps the answer (`None`: the
/// answer lists staff, none of them this person); a native "no such person or
/// practice" (a `404` the shared status table reports as
/// [`AdapterError::PatientNotFound`]) is `None` too, and an answer about anyone else is
/// refused as [`AdapterError::InvalidNativeData`].
pub async fn read_staff<F, Fut>(
    system: GpSystem,
    id: &str,
    fetch: F,
) -> Result<Option<gp_fhir::model::Practitioner>, AdapterError>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<Option<gp_fhir::model::Practitioner>, AdapterError>>,
{
    let fhir_id = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    // `.` and `..` are FHIR ids, but path segments a URL resolves away.
    if !fhir_id || id.bytes().all(|b| b == b'.') {
        return Ok(None);
    }
    match fetch(id.to_owned()).await {
        Err(AdapterError::PatientNotFound) | Ok(None) => Ok(None),
        Err(e) => Err(e),
        Ok(Some(p)) if p.id == id => Ok(Some(p)),
        Ok(Some(p)) => Err(AdapterError::InvalidNativeData {
            system,
            detail: format!(
                "asked for staff member {id}, the answer is about {}",
                gp_fhir::text::shown(&p.id)
            ),
        }),
    }
}

fn status_u16(s: StatusCode) -> u16 {
    s.as_u16()
}

/// The innermost error message, which names the real cause ("Connection refused").
fn root_cause(e: &(dyn StdError + 'static)) -> String {
    let mut last: &(dyn StdError + 'static) = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    /// Serves `handler` on 127.0.0.1:0 until the test ends; returns the base URL.
    async fn serve<F>(handler: F) -> String
    where
        F: Fn(Request<Incoming>) -> hyper::Response<Full<Bytes>> + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handler = Arc::new(handler);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let handler = handler.clone();
                        async move { Ok::<_, Infallible>(handler(req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        format!("http://{addr}")
    }

    fn client(base: &str, timeout_ms: u64, cap: usize) -> NativeClient {
        NativeClient::new(
            crate::test_systems::EMIS,
            base,
            Duration::from_millis(500),
            Duration::from_millis(timeout_ms),
            cap,
            None,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn sends_correlation_headers_and_returns_the_body() {
        let saw = Arc::new(AtomicBool::new(false));
        let saw2 = saw.clone();
        let base = serve(move |req| {
            let h = req.headers();
            let ok = h.get("x-correlation-id").map(|v| v.as_bytes()) == Some(b"req-1")
                && h.get("traceparent").is_some()
                && req.uri().path() == "/emis/health";
            saw2.store(ok, Ordering::SeqCst);
            hyper::Response::builder()
                .header("content-type", "application/xml")
                .body(Full::new(Bytes::from_static(b"<Health/>")))
                .unwrap()
        })
        .await;
        let ctx = CallContext {
            request_id: "req-1".into(),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        };
        let r = client(&format!("{base}/"), 2000, 1024)
            .get("/emis/health", &ctx)
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(&r.body[..], b"<Health/>");
        assert_eq!(r.content_type.as_deref(), Some("application/xml"));
        assert!(
            saw.load(Ordering::SeqCst),
            "headers and path reached the server"
        );
    }

    /// A vendor's own credentials: a header computed per call.
    struct Signed;

    #[async_trait::async_trait]
    impl NativeAuth for Signed {
        async fn authorise(
            &self,
            headers: &mut HeaderMap,
            ctx: &CallContext,
        ) -> Result<(), AdapterError> {
            let signature =
                HeaderValue::from_str(&format!("sig-{}", ctx.request_id)).map_err(|e| {
                    AdapterError::Rejected {
                        system: crate::test_systems::EMIS,
                        detail: e.to_string(),
                    }
                })?;
            headers.insert("x-vendor-signature", signature);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_vendors_own_auth_signs_every_call_and_a_401_is_the_answer() {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = calls.clone();
        let base = serve(move |req| {
            seen.fetch_add(1, Ordering::SeqCst);
            let signed = req
                .headers()
                .get("x-vendor-signature")
                .map(|v| v.as_bytes())
                == Some(b"sig-req-7");
            hyper::Response::builder()
                .status(if signed { 401 } else { 400 })
                .body(Full::new(Bytes::new()))
                .unwrap()
        })
        .await;
        let client = client(&base, 2000, 1024).with_auth(Arc::new(Signed));
        let r = client.get("/x", &CallContext::new("req-7")).await.unwrap();
        // The default `refused` does not renew: the 401 is answered as it is, once.
        assert_eq!(r.status, 401);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn refused_connection_is_unavailable() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = client(&format!("http://{addr}"), 2000, 1024)
            .get("/x", &CallContext::new("r"))
            .await
            .unwrap_err();
        match err {
            AdapterError::Unavailable { system, detail } => {
                assert_eq!(system, crate::test_systems::EMIS);
                assert!(detail.contains("cannot connect"), "{detail}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_hung_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accept and hold connections, never answering.
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let started = std::time::Instant::now();
        let err = client(&format!("http://{addr}"), 150, 1024)
            .get("/x", &CallContext::new("r"))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            AdapterError::Timeout {
                system: crate::test_systems::EMIS,
                after_ms: 150
            }
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn oversized_bodies_are_refused() {
        let base = serve(|_| hyper::Response::new(Full::new(Bytes::from(vec![b'x'; 4096])))).await;
        let err = client(&base, 2000, 1000)
            .get("/big", &CallContext::new("r"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, AdapterError::InvalidNativeData { detail, .. } if detail.contains("1000 byte limit")),
            "{err:?}"
        );
        // Exactly at the cap is fine.
        let ok = client(&base, 2000, 4096)
            .get("/big", &CallContext::new("r"))
            .await
            .unwrap();
        assert_eq!(ok.body.len(), 4096);
    }

    #[test]
    fn answers_are_split_by_status() {
        let answer = |status| NativeResponse {
            status,
            body: Bytes::from_static(b"b"),
            content_type: None,
            headers: HeaderMap::new(),
        };
        let refused = |r: &NativeResponse| AdapterError::Rejected {
            system: crate::test_systems::EMIS,
            detail: r.status.to_string(),
        };
        assert_eq!(answer(200).ok_body(refused), Ok(Bytes::from_static(b"b")));
        assert!(
            matches!(answer(201).ok_body(refused), Err(AdapterError::Rejected { detail, .. }) if detail == "201")
        );
        assert_eq!(
            answer(201).created_body(refused),
            Ok((true, Bytes::from_static(b"b")))
        );
        assert_eq!(
            answer(200).created_body(refused),
            Ok((false, Bytes::from_static(b"b")))
        );
        assert!(
            matches!(answer(409).created_body(refused), Err(AdapterError::Rejected { detail, .. }) if detail == "409")
        );
    }

    #[test]
    fn refusals_map_by_status() {
        let sys = crate::test_systems::TPP;
        let d = || "HTTP 4xx X: y".to_owned();
        let rejected = AdapterError::Rejected {
            system: sys,
            detail: d(),
        };
        for call in [Call::Read, Call::Write] {
            assert_eq!(
                status_error(sys, call, 404, true, d()),
                AdapterError::PatientNotFound
            );
            assert_eq!(status_error(sys, call, 404, false, d()), rejected);
            for status in [400, 401, 403, 405, 413, 415, 499] {
                assert_eq!(
                    status_error(sys, call, status, true, d()),
                    rejected,
                    "{status}"
                );
            }
            for status in [500, 502, 503, 302, 200] {
                assert_eq!(
                    status_error(sys, call, status, false, d()),
                    AdapterError::Unavailable {
                        system: sys,
                        detail: d()
                    },
                    "{status}"
                );
            }
        }
        assert_eq!(
            status_error(sys, Call::Write, 409, false, d()),
            AdapterError::VersionConflict {
                system: sys,
                detail: d()
            }
        );
        assert_eq!(
            status_error(sys, Call::Write, 422, false, d()),
            AdapterError::Unprocessable {
                system: sys,
                detail: d()
            }
        );
        // A read is never refused for a stale version or a value it cannot hold.
        for status in [409, 422] {
            assert_eq!(status_error(sys, Call::Read, status, false, d()), rejected);
        }
    }

    #[test]
    fn refusal_details_name_the_native_code() {
        assert_eq!(
            refusal_detail(409, Some(("RECORD_MODIFIED", "it is now x")), "a doc"),
            "HTTP 409 RECORD_MODIFIED: it is now x"
        );
        assert_eq!(
            refusal_detail(404, Some(("NOT_FOUND", "")), "a doc"),
            "HTTP 404 NOT_FOUND"
        );
        assert_eq!(refusal_detail(500, None, "a doc"), "HTTP 500 without a doc");
    }

    #[test]
    fn base_urls_are_checked() {
        assert_eq!(
            check_base_url("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            check_base_url("https://emis.example/api/").unwrap(),
            "https://emis.example/api"
        );
        assert!(is_https("HTTPS://emis.example") && !is_https("http://emis.example"));
        // https:// needs trust roots to verify the system with.
        assert_eq!(
            NativeClient::new(
                crate::test_systems::EMIS,
                "https://emis.example",
                Duration::from_secs(1),
                Duration::from_secs(1),
                1024,
                None
            )
            .unwrap_err()
            .to_string(),
            "base URL 'https://emis.example' is https:// but no CA bundle was given to verify the system with"
        );
        for bad in ["", "127.0.0.1:80", "ftp://x", "http://h/?q=1", "not a url"] {
            assert!(check_base_url(bad).is_err(), "{bad}");
        }
    }
}
