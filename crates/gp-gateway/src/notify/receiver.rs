//! A demo notification receiver: what `gp-gateway sandbox` starts on loopback so a
//! developer sees notifications arrive, and what tests point subscriptions at (the
//! conformance kit runs a receiver of its own). It accepts any `POST`, checks its Standard Webhooks signature
//! against the keys it was given, keeps the last [`KEPT`] notifications (newest last)
//! and answers them as JSON at `GET /` (`?since=N` for those after the Nth). It can be
//! told to refuse (`set_status`) or to hang (`set_delay`), to play a failing receiver.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;

/// Notifications kept.
pub const KEPT: usize = 1_000;

/// Largest notification accepted (bytes).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// One notification as it arrived.
#[derive(Debug, Clone, Serialize)]
pub struct Received {
    /// Its place in arrival order, from 1.
    pub seq: u64,
    /// `webhook-id`.
    pub id: String,
    /// `webhook-timestamp`.
    pub timestamp: String,
    /// True when `webhook-signature` verified against one of the keys.
    pub verified: bool,
    /// Every header, as received (names lower-case).
    pub headers: Vec<(String, String)>,
    /// The body, parsed (`null` when it is not JSON).
    pub body: serde_json::Value,
    /// The raw body's length.
    pub bytes: usize,
    /// When it arrived (Unix ms).
    pub at_ms: i64,
}

#[derive(Debug, Default)]
struct State {
    inbox: Mutex<VecDeque<Received>>,
    seq: AtomicU64,
    status: AtomicU16,
    delay_ms: AtomicU64,
    keys: Mutex<Vec<Vec<u8>>>,
    arrived: tokio::sync::Notify,
}

/// A running receiver.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<State>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Receiver {
    /// Serves on `listener`, verifying with the Ed25519 public keys given.
    pub fn start(listener: TcpListener, keys: Vec<Vec<u8>>, log: bool) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            status: AtomicU16::new(204),
            keys: Mutex::new(keys),
            ..State::default()
        });
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let served = state.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let state = served.clone();
                        tokio::spawn(async move {
                            let service = hyper::service::service_fn(move |req| {
                                let state = state.clone();
                                async move { Ok::<_, std::convert::Infallible>(answer(&state, req, log).await) }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                    _ = stopped.changed() => break,
                }
            }
        });
        Ok(Self { addr, state, stop })
    }

    /// The URL to subscribe with.
    pub fn url(&self) -> String {
        format!("http://{}/notifications", self.addr)
    }

    /// What arrived so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.state
            .inbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// Waits until `pred` holds of what arrived, at most `timeout`; answers what arrived.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.state.arrived.notified();
            let now = self.received();
            if pred(&now) || tokio::time::Instant::now() >= deadline {
                return now;
            }
            let _ = tokio::time::timeout_at(deadline, arrived).await;
        }
    }

    /// Answers every later POST with `status` (204 to accept again).
    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    /// Waits this long before answering each POST (0: at once).
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.state.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Stops accepting connections.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

async fn answer(state: &State, req: Request<Incoming>, log: bool) -> Response<Full<Bytes>> {
    let respond = |status: StatusCode, body: Vec<u8>| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        r
    };
    if req.method() == Method::GET {
        let since: u64 = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("since="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let list: Vec<Received> = state
            .inbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|r| r.seq > since)
            .cloned()
            .collect();
        return respond(
            StatusCode::OK,
            serde_json::to_vec(&list).unwrap_or_default(),
        );
    }
    if req.method() != Method::POST {
        return respond(StatusCode::METHOD_NOT_ALLOWED, Vec::new());
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let Ok(body) = crate::body::read_capped(req.into_body(), None, MAX_BODY).await else {
        return respond(StatusCode::PAYLOAD_TOO_LARGE, Vec::new());
    };
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = state.status.load(Ordering::SeqCst);
    if !(200..300).contains(&status) {
        return respond(
            StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            Vec::new(),
        );
    }
    let verified = state
        .keys
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .any(|k| super::sign::verify(k, &id, &timestamp, &body, &signature));
    let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let seq = state.seq.fetch_add(1, Ordering::SeqCst) + 1;
    if log {
        let status = parsed
            .pointer("/entry/0/resource/parameter")
            .and_then(serde_json::Value::as_array)
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| {
                        let name = p.get("name")?.as_str()?;
                        let value = p
                            .get("valueCode")
                            .or_else(|| p.get("valueString"))
                            .and_then(serde_json::Value::as_str)?;
                        Some(format!("{name}={value}"))
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        tracing::info!(target: "gp_gateway::receiver", id = %id, verified, "notification received: {status}");
    }
    let mut inbox = state.inbox.lock().unwrap_or_else(PoisonError::into_inner);
    inbox.push_back(Received {
        seq,
        id,
        timestamp,
        verified,
        headers,
        body: parsed,
        bytes: body.len(),
        at_ms: super::now_ms(),
    });
    while inbox.len() > KEPT {
        inbox.pop_front();
    }
    drop(inbox);
    state.arrived.notify_waiters();
    respond(
        StatusCode::from_u16(status).unwrap_or(StatusCode::NO_CONTENT),
        Vec::new(),
    )
}
