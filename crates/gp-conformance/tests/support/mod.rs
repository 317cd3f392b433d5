//! Shared test helpers: the in-process sandbox, manifest files, and a bare HTTP client
//! that sends exactly what it is told (no X-Request-ID unless asked, no retries), to
//! play a supplier's application against the sandbox.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use gp_conformance::RunOptions;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("gp-conformance-{name}-{}", uuid::Uuid::new_v4()))
}

/// Writes a manifest (as served at /_sandbox/manifest, or edited) to `dir/manifest.json`.
pub fn manifest_file(manifest: &impl serde::Serialize, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("manifest.json");
    std::fs::write(&path, serde_json::to_vec(manifest).unwrap()).unwrap();
    path
}

/// The sandbox, in-process on 127.0.0.1:0.
pub async fn sandbox() -> gp_gateway::sandbox::Sandbox {
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    gp_gateway::sandbox::start(listen, gp_gateway::sandbox::DEFAULT_SEED)
        .await
        .expect("sandbox starts")
}

/// The sandbox's origin (what `--target` takes).
pub fn origin(sandbox: &gp_gateway::sandbox::Sandbox) -> String {
    sandbox
        .manifest
        .base_url
        .split("/FHIR")
        .next()
        .unwrap()
        .to_owned()
}

/// Options for `suites` against `target`, reading the manifest from the target.
pub fn options(target: &str, suites: &[&str]) -> RunOptions {
    RunOptions {
        target: target.to_owned(),
        suites: suites.iter().map(|s| (*s).to_owned()).collect(),
        ..RunOptions::default()
    }
}

/// Runs the kit within `secs`.
pub async fn run(opts: &RunOptions, secs: u64) -> gp_conformance::Report {
    tokio::time::timeout(Duration::from_secs(secs), gp_conformance::run(opts))
        .await
        .expect("the run finishes")
        .expect("the run starts")
}

/// A manifest patient with no flags at one of `client_id`'s practices.
pub fn ordinary_patient(sandbox: &gp_gateway::sandbox::Sandbox, client_id: &str) -> String {
    let sup = sandbox
        .manifest
        .suppliers
        .iter()
        .find(|s| s.client_id == client_id)
        .unwrap();
    sandbox
        .manifest
        .patients
        .iter()
        .find(|p| p.flags.is_empty() && sup.practices.contains(&p.practice))
        .unwrap()
        .nhs_number
        .clone()
}

/// A supplier's application, as bare as HTTP gets.
pub struct App {
    client: Client<HttpConnector, Full<Bytes>>,
    pub base_url: String,
    pub token_url: String,
    identity: gp_auth::ClientAssertion,
}

/// What the application saw.
pub struct Seen {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub body: Vec<u8>,
}

impl App {
    pub fn new(sandbox: &gp_gateway::sandbox::Sandbox, client_id: &str) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base_url: sandbox.manifest.base_url.clone(),
            token_url: sandbox.manifest.token_url.clone(),
            identity: gp_gateway::sandbox::demo_identity(client_id).unwrap(),
        }
    }

    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Seen {
        let mut req = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .client
            .request(req.body(Full::new(Bytes::copy_from_slice(body))).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let mut body = resp.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                bytes.extend_from_slice(&data);
            }
        }
        Seen {
            status,
            retry_after,
            body: bytes,
        }
    }

    /// A fresh access token (the token request carries `extra` headers).
    pub async fn token(&self, extra: &[(&str, &str)]) -> String {
        let form = self
            .identity
            .token_request_body(&self.token_url, None)
            .unwrap();
        let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
        headers.extend_from_slice(extra);
        let seen = self
            .send("POST", &self.token_url, &headers, form.as_bytes())
            .await;
        assert_eq!(seen.status, 200, "{}", String::from_utf8_lossy(&seen.body));
        let v: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
        v["access_token"].as_str().unwrap().to_owned()
    }

    /// `GET {base_url}/{path}` with a token, and an X-Request-ID when `request_id`.
    pub async fn get(&self, path: &str, token: &str, request_id: bool) -> Seen {
        let auth = format!("Bearer {token}");
        let id = uuid::Uuid::new_v4().to_string();
        let mut headers = vec![
            ("accept", "application/fhir+json"),
            ("authorization", auth.as_str()),
        ];
        if request_id {
            headers.push(("x-request-id", id.as_str()));
        }
        self.send("GET", &format!("{}/{path}", self.base_url), &headers, b"")
            .await
    }
}

/// A well-behaved application: one token reused, an X-Request-ID on every call, valid
/// NHS numbers, within its scopes; driven into its rate limit, it waits Retry-After.
pub async fn well_behaved(app: &App, nhs: &str) {
    let id = uuid::Uuid::new_v4().to_string();
    let token = app.token(&[("x-request-id", &id)]).await;
    let read = format!("Patient/{nhs}");
    let mut limited = false;
    for _ in 0..60 {
        let seen = app.get(&read, &token, true).await;
        if seen.status == 429 {
            let wait = seen.retry_after.expect("a 429 says how long to wait");
            tokio::time::sleep(Duration::from_secs(wait)).await;
            limited = true;
            break;
        }
        assert_eq!(seen.status, 200);
    }
    assert!(limited, "the sandbox's rate limit was reached");
    for _ in 0..2 {
        assert_eq!(app.get(&read, &token, true).await.status, 200);
    }
}

/// A badly-behaved application: a new token for each call, no X-Request-ID, an NHS
/// number it never checked, a search outside its scopes, and a retry 100 ms after a 429
/// whatever Retry-After said.
pub async fn badly_behaved(app: &App, nhs: &str, out_of_scope: &str) {
    let read = format!("Patient/{nhs}");
    let mut token = String::new();
    for _ in 0..4 {
        token = app.token(&[]).await;
        assert_eq!(app.get(&read, &token, false).await.status, 200);
    }
    assert_eq!(
        app.get("Patient/9000000008", &token, false).await.status,
        400
    );
    let search = format!("{out_of_scope}?patient={nhs}");
    assert_eq!(app.get(&search, &token, false).await.status, 403);
    let mut limited = false;
    for _ in 0..60 {
        if app.get(&read, &token, false).await.status == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited, "the sandbox's rate limit was reached");
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.get(&read, &token, false).await;
}

/// A broken adapter, as the kit sees it: a proxy on 127.0.0.1:0 in front of `origin`
/// that drops every `next` link from Bundles and recodes every SNOMED CT coding as
/// Read v2. Returns the proxy's origin.
pub async fn breaking_proxy(origin: String) -> String {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let client = client.clone();
            let origin = origin.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let client = client.clone();
                    let origin = origin.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let mut bytes = Vec::new();
                        let mut body = body;
                        while let Some(frame) = body.frame().await {
                            if let Ok(data) = frame.unwrap().into_data() {
                                bytes.extend_from_slice(&data);
                            }
                        }
                        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                        let mut out = http::Request::builder()
                            .method(parts.method.clone())
                            .uri(format!("{origin}{path}"));
                        for (k, v) in &parts.headers {
                            if k != http::header::HOST {
                                out = out.header(k, v);
                            }
                        }
                        let resp = client
                            .request(out.body(Full::new(Bytes::from(bytes))).unwrap())
                            .await
                            .unwrap();
                        let (mut parts, mut body) = resp.into_parts();
                        let mut bytes = Vec::new();
                        while let Some(frame) = body.frame().await {
                            if let Ok(data) = frame.unwrap().into_data() {
                                bytes.extend_from_slice(&data);
                            }
                        }
                        let bytes = match serde_json::from_slice::<serde_json::Value>(&bytes) {
                            Ok(mut v) if v["resourceType"] == "Bundle" => {
                                break_bundle(&mut v);
                                serde_json::to_vec(&v).unwrap()
                            }
                            _ => bytes,
                        };
                        parts.headers.remove(http::header::CONTENT_LENGTH);
                        Ok::<_, std::convert::Infallible>(hyper::Response::from_parts(
                            parts,
                            Full::new(Bytes::from(bytes)),
                        ))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

fn break_bundle(v: &mut serde_json::Value) {
    if let Some(links) = v["link"].as_array_mut() {
        links.retain(|l| l["relation"] != "next");
    }
    for e in v["entry"].as_array_mut().into_iter().flatten() {
        for element in ["code", "vaccineCode"] {
            for c in e["resource"][element]["coding"]
                .as_array_mut()
                .into_iter()
                .flatten()
            {
                if c["system"] == "http://snomed.info/sct" {
                    c["system"] = "http://read.info/readv2".into();
                }
            }
        }
    }
}
