//! End-to-end test support: a sandbox on 127.0.0.1:0 and a small HTTP client.
//! Shared by every black-box test so they all speak to the gateway the same way.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;

use bytes::Bytes;
use gp_gateway::sandbox::{Manifest, Sandbox};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// An HTTP answer, body parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON (panics with the body text when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The Spine code of an OperationOutcome answer.
    pub fn spine_code(&self) -> String {
        self.json()["issue"][0]["details"]["coding"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The diagnostics of an OperationOutcome answer.
    pub fn diagnostics(&self) -> String {
        self.json()["issue"][0]["diagnostics"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// A running sandbox and a client for it.
pub struct World {
    pub sandbox: Sandbox,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl World {
    /// Starts the sandbox (gateway + simulators) on loopback ephemeral ports.
    pub async fn start() -> Self {
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let sandbox = gp_gateway::sandbox::start(listen, gp_gateway::sandbox::DEFAULT_SEED)
            .await
            .expect("sandbox starts");
        Self {
            sandbox,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Starts the sandbox with its audit trail in `audit`.
    pub async fn start_with_audit(audit: gp_gateway::audit::AuditConfig) -> Self {
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let sandbox = gp_gateway::sandbox::start_with_audit(
            listen,
            gp_gateway::sandbox::DEFAULT_SEED,
            Some(audit),
        )
        .await
        .expect("sandbox starts");
        Self {
            sandbox,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Starts the sandbox with `options`.
    pub async fn start_with(options: gp_gateway::sandbox::Options) -> Self {
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let sandbox =
            gp_gateway::sandbox::start_with(listen, gp_gateway::sandbox::DEFAULT_SEED, options)
                .await
                .expect("sandbox starts");
        Self {
            sandbox,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Starts the sandbox with `layer` between the gateway and every GP system's adapter.
    pub async fn start_layered(layer: gp_gateway::sandbox::AdapterLayer) -> Self {
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let sandbox =
            gp_gateway::sandbox::start_layered(listen, gp_gateway::sandbox::DEFAULT_SEED, layer)
                .await
                .expect("sandbox starts");
        Self {
            sandbox,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub fn manifest(&self) -> &Manifest {
        &self.sandbox.manifest
    }

    /// Sends a request.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        let mut req = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::copy_from_slice(body))).unwrap();
        let resp = self.client.request(req).await.expect("request sent");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        #[allow(clippy::disallowed_methods)] // test client reading test-sized bodies
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body,
        }
    }

    /// GET a FHIR path (relative to the base URL) with a bearer token.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        let url = format!("{}{path}", self.manifest().base_url);
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("accept", "application/fhir+json")];
        if let Some(a) = auth.as_deref() {
            headers.push(("authorization", a));
        }
        self.send("GET", &url, &headers, b"").await
    }

    /// Sends `method` to a FHIR path with a bearer token, the way a well-behaved client
    /// does: on 429 it waits the `Retry-After` seconds and tries again (at most 5 times).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        let url = format!("{}{path}", self.manifest().base_url);
        let auth = format!("Bearer {token}");
        let mut all = vec![
            ("accept", "application/fhir+json"),
            ("authorization", auth.as_str()),
        ];
        all.extend_from_slice(headers);
        let mut answer = self.send(method, &url, &all, body).await;
        for _ in 0..5 {
            if answer.status != 429 {
                break;
            }
            let wait: u64 = answer
                .header("retry-after")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            tokio::time::sleep(std::time::Duration::from_secs(wait.clamp(1, 5))).await;
            answer = self.send(method, &url, &all, body).await;
        }
        answer
    }

    /// An ordinary (unflagged) manifest patient on `system` whom `client_id` is paired with.
    pub fn ordinary_patient(&self, system: &str, client_id: &str) -> String {
        let paired = self.practices_of(client_id);
        self.manifest()
            .patients
            .iter()
            .find(|p| p.system == system && p.flags.is_empty() && paired.contains(&p.practice))
            .map(|p| p.nhs_number.clone())
            .unwrap_or_else(|| panic!("no ordinary {system} patient paired with {client_id}"))
    }

    /// An ordinary (unflagged) manifest patient on `system` whom `client_id` is not
    /// paired with.
    pub fn unpaired_patient(&self, system: &str, client_id: &str) -> String {
        let paired = self.practices_of(client_id);
        self.manifest()
            .patients
            .iter()
            .find(|p| p.system == system && p.flags.is_empty() && !paired.contains(&p.practice))
            .map(|p| p.nhs_number.clone())
            .unwrap_or_else(|| panic!("no ordinary {system} patient unpaired with {client_id}"))
    }

    /// Requests a token for a demo supplier; returns the raw answer.
    pub async fn token_request(&self, client_id: &str, scope: Option<&str>) -> Answer {
        let identity = gp_gateway::sandbox::demo_identity(client_id).unwrap();
        let body = identity
            .token_request_body(&self.manifest().token_url, scope)
            .unwrap();
        self.send(
            "POST",
            &self.manifest().token_url,
            &[("content-type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        )
        .await
    }

    /// An access token for a demo supplier (panics when refused).
    pub async fn token(&self, client_id: &str) -> String {
        let a = self.token_request(client_id, None).await;
        assert_eq!(
            a.status,
            200,
            "token for {client_id}: {}",
            String::from_utf8_lossy(&a.body)
        );
        a.json()["access_token"].as_str().unwrap().to_owned()
    }

    /// A manifest patient at `practice` with `flag` ("" for an ordinary one).
    pub fn patient(&self, practice: &str, flag: &str) -> String {
        self.manifest()
            .patients
            .iter()
            .find(|p| {
                p.practice == practice
                    && (if flag.is_empty() {
                        p.flags.is_empty()
                    } else {
                        p.flags.iter().any(|f| f == flag)
                    })
            })
            .map(|p| p.nhs_number.clone())
            .unwrap_or_else(|| panic!("no patient at {practice} with flag '{flag}'"))
    }

    /// Swaps in the sandbox's supplier registry as `edit` rewrites its TOML text, the way
    /// a reload after an operator edited the file does (panics when it is refused).
    pub fn reload_suppliers(&self, edit: impl FnOnce(String) -> String) {
        let current = gp_gateway::sandbox::current_suppliers(&self.sandbox).unwrap();
        let dir = std::env::temp_dir().join(format!("gp-e2e-suppliers-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("suppliers.toml");
        std::fs::write(&path, edit(current)).unwrap();
        let reloaded = self.sandbox.app.auth.as_ref().unwrap().reload_from(&path);
        std::fs::remove_dir_all(&dir).ok();
        reloaded.unwrap();
    }

    /// The practices a demo supplier is paired with.
    pub fn practices_of(&self, client_id: &str) -> Vec<String> {
        self.manifest()
            .suppliers
            .iter()
            .find(|s| s.client_id == client_id)
            .unwrap()
            .practices
            .clone()
    }

    /// The practice a manifest patient is registered at.
    pub fn practice_of(&self, nhs: &str) -> String {
        self.manifest()
            .patients
            .iter()
            .find(|p| p.nhs_number == nhs)
            .unwrap()
            .practice
            .clone()
    }
}

/// Runs `futures` concurrently (all polled together) and returns their outputs in order:
/// a burst of requests that really overlap.
pub async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut slots: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in pinned.iter_mut().zip(slots.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    slots.into_iter().flatten().collect()
}

/// Every literal reference in a FHIR JSON value (a `reference` member anywhere), with
/// its `display`, in document order.
pub fn references(v: &Value) -> Vec<(String, Option<String>)> {
    fn walk(v: &Value, out: &mut Vec<(String, Option<String>)>) {
        match v {
            Value::Object(fields) => {
                if let Some(r) = fields.get("reference").and_then(Value::as_str) {
                    let display = fields.get("display").and_then(Value::as_str);
                    out.push((r.to_owned(), display.map(str::to_owned)));
                }
                fields.values().for_each(|x| walk(x, out));
            }
            Value::Array(items) => items.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out
}

/// A Bundle's resources, and each one's `Type/id`, in entry order.
pub fn bundle_resources(bundle: &Value) -> (Vec<&Value>, Vec<String>) {
    let resources: Vec<&Value> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .collect();
    let ids = resources
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap_or(""),
                r["id"].as_str().unwrap_or("")
            )
        })
        .collect();
    (resources, ids)
}
