//! The kit's own notification receiver and Standard Webhooks verification. The
//! `notifications` suite subscribes with a receiver of its own on loopback (never the
//! sandbox's demo one: the kit judges what arrives, so it must see it arrive), keeps
//! every delivery exactly as it came (headers, raw body, arrival time), and checks
//! signatures itself with the key the gateway publishes in its JWKS.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use ring::signature::{ED25519, UnparsedPublicKey};
use serde_json::Value;

use crate::model::Exchange;

/// Largest delivery kept (bytes); a larger one is answered 413 and kept without its body.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The `method` of a delivery in a report's evidence: a POST the kit received.
pub const RECEIVED: &str = "POST (received)";

/// One delivery as it arrived.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Its place in arrival order, from 1.
    pub seq: u64,
    /// The request path (the suite gives each subscription a path of its own).
    pub path: String,
    /// Every header, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The body, byte for byte.
    pub body: Bytes,
    /// When it arrived, Unix seconds by the kit's clock.
    pub arrived: i64,
}

impl Delivery {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    /// The delivery as report evidence: an inbound POST the kit answered.
    pub fn evidence(&self, origin: &str) -> Exchange {
        Exchange {
            method: RECEIVED.to_owned(),
            url: format!("{origin}{}", self.path),
            request_headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), crate::http::redact_header(k, v)))
                .collect(),
            request_body: crate::http::redact_body(&self.body),
            status: 204,
            response_headers: Vec::new(),
            response_body: String::new(),
            elapsed_ms: 0,
            request_id: self.header("webhook-id").unwrap_or_default().to_owned(),
            transport_error: None,
        }
    }
}

#[derive(Default)]
struct State {
    inbox: Mutex<Vec<Delivery>>,
    seq: AtomicU64,
    arrived: tokio::sync::Notify,
}

/// A running receiver on `127.0.0.1`; it stops when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<State>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Receiver {
    /// Listens on `127.0.0.1:0`, answering every `POST` `204` once its body is kept.
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
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
                                async move { Ok::<_, std::convert::Infallible>(answer(&state, req).await) }
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

    /// `http://127.0.0.1:{port}`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The endpoint URL for deliveries to `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    /// Everything that arrived so far, oldest first.
    pub fn received(&self) -> Vec<Delivery> {
        self.state
            .inbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until `pred` holds of what arrived, at most `timeout`; answers what arrived.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&[Delivery]) -> bool,
    ) -> Vec<Delivery> {
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
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn answer(state: &State, req: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
    let respond = |status: u16| {
        let mut r = hyper::Response::new(Full::new(Bytes::new()));
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
        r
    };
    if req.method() != http::Method::POST {
        return respond(405);
    }
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = req.into_body();
    let mut bytes = Vec::new();
    let mut too_large = false;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return respond(400);
        };
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > MAX_BODY {
                too_large = true;
                break;
            }
            bytes.extend_from_slice(&data);
        }
    }
    if too_large {
        bytes.clear();
    }
    let seq = state.seq.fetch_add(1, Ordering::SeqCst) + 1;
    state
        .inbox
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Delivery {
            seq,
            path,
            headers,
            body: Bytes::from(bytes),
            arrived: now_unix(),
        });
    state.arrived.notify_waiters();
    respond(if too_large { 413 } else { 204 })
}

/// Now, Unix seconds.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Whether `header` (a `webhook-signature`: space-separated `v1a,<base64>` entries; any
/// one verifying is enough, as during a key rotation) is an Ed25519 signature by
/// `public_key` over `{id}.{timestamp}.{body}` (Standard Webhooks, asymmetric scheme).
pub fn verify(public_key: &[u8], id: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let content = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body].concat();
    let key = UnparsedPublicKey::new(&ED25519, public_key);
    header.split(' ').any(|entry| {
        entry
            .strip_prefix("v1a,")
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .is_some_and(|sig| key.verify(&content, &sig).is_ok())
    })
}

/// A delivery-signing key from a JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryKey {
    pub kid: String,
    /// The raw 32-byte Ed25519 public key (the JWK's `x`).
    pub public_key: Vec<u8>,
}

/// The JWKS's `OKP`/`Ed25519` keys other than `token_kid` (the access-token key): those
/// deliveries may be signed with.
pub fn delivery_keys(jwks: &Value, token_kid: Option<&str>) -> Vec<DeliveryKey> {
    jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|k| k["kty"] == "OKP" && k["crv"] == "Ed25519")
        .filter(|k| token_kid.is_none_or(|t| k["kid"] != t))
        .filter_map(|k| {
            let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(k["x"].as_str()?.trim_end_matches('='))
                .ok()?;
            (x.len() == 32).then(|| DeliveryKey {
                kid: k["kid"].as_str().unwrap_or_default().to_owned(),
                public_key: x,
            })
        })
        .collect()
}

/// The `kid` in a JWT's header (the access token's signing key), if it names one.
pub fn jwt_kid(jwt: &str) -> Option<String> {
    let header = jwt.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v["kid"].as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    fn key() -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).unwrap()
    }

    fn sign(k: &Ed25519KeyPair, id: &str, ts: &str, body: &[u8]) -> String {
        let content = [id.as_bytes(), b".", ts.as_bytes(), b".", body].concat();
        format!(
            "v1a,{}",
            base64::engine::general_purpose::STANDARD.encode(k.sign(&content).as_ref())
        )
    }

    #[test]
    fn a_signature_verifies_for_its_message_only() {
        let k = key();
        let public = k.public_key().as_ref();
        let sig = sign(&k, "msg_1", "1765000000", b"{}");
        assert!(verify(public, "msg_1", "1765000000", b"{}", &sig));
        assert!(!verify(public, "msg_2", "1765000000", b"{}", &sig));
        assert!(!verify(public, "msg_1", "1765000001", b"{}", &sig));
        assert!(!verify(public, "msg_1", "1765000000", b"{ }", &sig));
        assert!(!verify(
            public,
            "msg_1",
            "1765000000",
            b"{}",
            &sig.replace("v1a,", "v1,")
        ));
        assert!(verify(
            public,
            "msg_1",
            "1765000000",
            b"{}",
            &format!("v1a,AAAA {sig}")
        ));
        assert!(!verify(public, "msg_1", "1765000000", b"{}", ""));
    }

    #[test]
    fn delivery_keys_are_the_ed25519_keys_but_the_token_key() {
        let k = key();
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k.public_key());
        let jwks = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "gw-1", "n": "x", "e": "AQAB"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "hook-1", "x": x},
            {"kty": "OKP", "crv": "Ed25519", "kid": "tok-ed", "x": x},
            {"kty": "OKP", "crv": "X25519", "kid": "dh", "x": x},
            {"kty": "OKP", "crv": "Ed25519", "kid": "short", "x": "AAAA"}
        ]});
        let keys = delivery_keys(&jwks, Some("tok-ed"));
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid, "hook-1");
        assert_eq!(keys[0].public_key, k.public_key().as_ref());
    }

    #[test]
    fn the_kid_of_a_jwt_header() {
        let h = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"alg":"RS512","kid":"gw-2025"}"#);
        assert_eq!(jwt_kid(&format!("{h}.e30.sig")).as_deref(), Some("gw-2025"));
        assert_eq!(jwt_kid("not a jwt"), None);
    }

    #[tokio::test]
    async fn the_receiver_keeps_each_post_as_it_came() {
        let r = Receiver::start().await.unwrap();
        let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let req = http::Request::post(r.url("/n/a"))
            .header("webhook-id", "msg_1")
            .body(Full::new(Bytes::from_static(b"{\"a\":1}")))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), 204);
        let got = r.wait_for(Duration::from_secs(5), |d| !d.is_empty()).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].path, "/n/a");
        assert_eq!(got[0].header("webhook-id"), Some("msg_1"));
        assert_eq!(got[0].json()["a"], 1);
        assert_eq!(got[0].seq, 1);
    }
}
