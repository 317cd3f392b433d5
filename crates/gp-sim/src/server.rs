//! The simulator kit: the HTTP/1.1 plumbing every simulator shares (accept loop, fault
//! injection, header echo, graceful shutdown). A native API is a [`Simulator`]: it routes
//! requests to [`Reply`]s and says how each [`Fault`] corrupts its format; [`serve`] runs
//! it on a listener and answers a [`SimHandle`] to switch faults and count requests.
//!
//! ```ignore
//! struct Acme { store: SimStore }
//!
//! impl Simulator for Acme {
//!     fn name(&self) -> &'static str { "acme" }
//!     fn route(&self, method: &Method, path: &str) -> Routed { … }
//!     fn error_reply(&self, status: u16) -> Reply { … }
//!     fn garbage(&self) -> Vec<u8> { b"<html>".to_vec() }
//!     fn mis_encode(&self, body: &[u8]) -> Vec<u8> { … }
//!     fn drop_nhs_number(&self, body: &[u8]) -> Vec<u8> { … }
//! }
//!
//! let sim = gp_sim::serve(Arc::new(Acme { store }), TcpListener::bind("127.0.0.1:0").await?)?;
//! sim.set_fault(Fault::Status(503));
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

/// A failure to inject into a simulator's record responses, for adapter tests.
/// Health probes are never faulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Answer normally.
    #[default]
    None,
    /// The native error document with this status.
    Status(u16),
    /// `200` with bytes that are not the native format.
    Garbage,
    /// `200` with the normal document cut in half.
    Truncated,
    /// `200` with invalid UTF-8 inside an element / string value.
    MisEncoded,
    /// `200` with the patient's NHS number left out.
    MissingNhsNumber,
    /// Accept the request and never answer (until shutdown).
    Hang,
    /// Answer normally, this many milliseconds late (a slow GP system).
    Delay(u64),
    /// Close the connection without answering.
    Reset,
}

/// The request types [`Simulator`] methods take, re-exported so a simulator needs no
/// hyper dependency of its own.
pub use hyper::{HeaderMap, Method};

/// A response before HTTP framing.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The `content-type` header.
    pub content_type: &'static str,
    /// The body, in the native format.
    pub body: Vec<u8>,
}

/// How a simulator answered, and whether faults apply to it.
#[derive(Debug, Clone)]
pub struct Routed {
    /// The answer when no fault is injected.
    pub reply: Reply,
    /// A patient-record request: faults apply to it (health probes and the like: `false`).
    pub record: bool,
}

/// One native API: routing plus how each fault corrupts its format. Implement it for a
/// simulator of your GP system and run it with [`serve`]; the accept loop, fault
/// injection, request counting and shutdown are shared.
pub trait Simulator: Send + Sync + 'static {
    /// Short name for logs.
    fn name(&self) -> &'static str;
    /// Answers a request (reads the store; never blocks on I/O).
    fn route(&self, method: &Method, path: &str) -> Routed;
    /// The native error document for `status`.
    fn error_reply(&self, status: u16) -> Reply;
    /// Bytes that are not this format at all.
    fn garbage(&self) -> Vec<u8>;
    /// `body` with invalid UTF-8 inside an element / string.
    fn mis_encode(&self, body: &[u8]) -> Vec<u8>;
    /// `body` without the patient's NHS number.
    fn drop_nhs_number(&self, body: &[u8]) -> Vec<u8>;
    /// Like [`Simulator::route`], for APIs that read the query string or answer extra
    /// response headers (Vision's continuation token). Default: `route`, no extra headers.
    fn route_query(
        &self,
        method: &Method,
        path: &str,
        _query: Option<&str>,
    ) -> (Routed, Vec<(&'static str, String)>) {
        (self.route(method, path), Vec::new())
    }
    /// Answers a write (`POST`, `PUT`, `PATCH`) with its headers and body (at most
    /// [`Simulator::max_write_body`] bytes). `None` = no write endpoint here: answered by `route`.
    /// Writes are record requests: faults replace the reply after the write happened,
    /// like a GP system whose answer is lost on the way back.
    fn route_write(
        &self,
        _method: &Method,
        _path: &str,
        _headers: &hyper::HeaderMap,
        _body: &[u8],
    ) -> Option<Routed> {
        None
    }
    /// The largest body [`Simulator::route_write`] takes for `method` on `path`.
    /// Default: [`MAX_WRITE_BODY`]; a document upload route answers more. A larger body
    /// is answered [`Simulator::error_reply`] `413`.
    fn max_write_body(&self, _method: &Method, _path: &str) -> usize {
        MAX_WRITE_BODY
    }
}

/// The largest write body a simulator reads (unless its
/// [`Simulator::max_write_body`] says otherwise for a route); a larger one is answered
/// [`Simulator::error_reply`] `413` without reaching [`Simulator::route_write`].
pub const MAX_WRITE_BODY: usize = 256 * 1024;

/// Reads a request body up to `limit` bytes; `None` when larger or broken.
async fn read_body(mut body: Incoming, limit: usize) -> Option<Vec<u8>> {
    use http_body_util::BodyExt;
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.ok()?.into_data() {
            if out.len() + data.len() > limit {
                return None;
            }
            out.extend_from_slice(&data);
        }
    }
    Some(out)
}

#[derive(Debug, Default)]
struct Shared {
    fault: Mutex<Fault>,
    requests: AtomicU64,
    /// Of `requests`, the change-log polls (`…/changes`).
    change_polls: AtomicU64,
}

/// A running simulator. Dropping it stops accepting; [`SimHandle::shutdown`] also
/// waits for open connections (hung ones are released) to finish.
#[derive(Debug)]
pub struct SimHandle {
    /// The bound loopback address.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl SimHandle {
    /// `http://127.0.0.1:PORT`, no trailing slash: append the paths of the native format doc.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Injects `fault` into every following record request (until changed).
    pub fn set_fault(&self, fault: Fault) {
        *self
            .shared
            .fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = fault;
    }

    /// The fault currently injected.
    pub fn fault(&self) -> Fault {
        *self
            .shared
            .fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Requests received so far, health probes excluded (so background probes do
    /// not disturb retry counts in tests).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Requests for records, staff and the rest: [`SimHandle::requests`] without the
    /// change-log polls a gateway makes in the background at its own pace.
    pub fn record_requests(&self) -> u64 {
        self.requests() - self.shared.change_polls.load(Ordering::SeqCst)
    }

    /// Stops accepting, releases hung requests and waits (at most 5 s) for connections to close.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Why a request got no answer (hyper then closes the connection).
#[derive(Debug, thiserror::Error)]
enum NoAnswer {
    #[error("fault injected: connection reset")]
    Reset,
    #[error("fault injected: hung until shutdown")]
    Released,
    #[error("could not build response: {0}")]
    Http(#[from] hyper::http::Error),
}

/// Serves `sim` on `listener` until the handle is shut down or dropped. Must be called
/// inside a Tokio runtime (the accept loop is a spawned task).
pub fn serve(sim: Arc<dyn Simulator>, listener: TcpListener) -> std::io::Result<SimHandle> {
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared::default());
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(accept_loop(sim, listener, shared.clone(), stop_rx));
    Ok(SimHandle {
        addr,
        shared,
        stop,
        task: Some(task),
    })
}

async fn accept_loop(
    sim: Arc<dyn Simulator>,
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let mut stopping = stop.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let (sim, shared, stop) = (sim.clone(), shared.clone(), stop.clone());
                    let svc = service_fn(move |req| handle(sim.clone(), shared.clone(), stop.clone(), req));
                    let conn = graceful.watch(http1::Builder::new().serve_connection(TokioIo::new(stream), svc));
                    tokio::spawn(async move {
                        if let Err(error) = conn.await {
                            debug!(%peer, %error, "connection ended without a response");
                        }
                    });
                }
                Err(error) => {
                    // Usually fd exhaustion: back off instead of spinning.
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            // A send or a dropped handle both mean stop.
            _ = stopping.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            sim = sim.name(),
            "connections still open after 5 s; abandoning them"
        );
    }
}

async fn handle(
    sim: Arc<dyn Simulator>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, NoAnswer> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let is_write = matches!(parts.method, Method::POST | Method::PUT | Method::PATCH);
    let written = if is_write {
        match read_body(body, sim.max_write_body(&parts.method, &path)).await {
            Some(bytes) => sim.route_write(&parts.method, &path, &parts.headers, &bytes),
            None => Some(Routed {
                reply: sim.error_reply(413),
                record: false,
            }),
        }
    } else {
        None
    };
    let (routed, extra_headers) = match written {
        Some(routed) => (routed, Vec::new()),
        None => sim.route_query(&parts.method, &path, parts.uri.query()),
    };
    let is_health = path.ends_with("/health");
    if !is_health {
        if path.ends_with("/changes") {
            shared.change_polls.fetch_add(1, Ordering::SeqCst);
        }
        shared.requests.fetch_add(1, Ordering::SeqCst);
    }
    let mut reply = routed.reply;
    if routed.record {
        let fault = *shared.fault.lock().unwrap_or_else(PoisonError::into_inner);
        match fault {
            Fault::None => {}
            Fault::Status(status) => reply = sim.error_reply(status),
            Fault::Garbage => {
                reply = Reply {
                    status: 200,
                    body: sim.garbage(),
                    ..reply
                }
            }
            Fault::Truncated => {
                reply.body.truncate(reply.body.len() / 2);
                reply.status = 200;
            }
            Fault::MisEncoded => {
                reply = Reply {
                    status: 200,
                    body: sim.mis_encode(&reply.body),
                    ..reply
                }
            }
            Fault::MissingNhsNumber => {
                reply = Reply {
                    status: 200,
                    body: sim.drop_nhs_number(&reply.body),
                    ..reply
                }
            }
            Fault::Hang => {
                while !*stop.borrow_and_update() {
                    if stop.changed().await.is_err() {
                        break;
                    }
                }
                return Err(NoAnswer::Released);
            }
            Fault::Reset => return Err(NoAnswer::Reset),
            Fault::Delay(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        }
        if fault != Fault::None {
            debug!(sim = sim.name(), ?fault, %path, "fault injected");
        }
    }
    debug!(sim = sim.name(), method = %parts.method, %path, status = reply.status, "answered");
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", reply.content_type);
    // Echo tracing headers so callers can check propagation end to end.
    for name in ["x-correlation-id", "x-request-id", "traceparent"] {
        if let Some(v) = parts.headers.get(name).cloned() {
            builder = builder.header(name, v);
        }
    }
    builder = builder.header("cache-control", HeaderValue::from_static("no-store"));
    for (name, value) in extra_headers {
        builder = builder.header(name, value);
    }
    Ok(builder.body(Full::new(Bytes::from(reply.body)))?)
}
