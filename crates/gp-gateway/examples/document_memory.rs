//! Memory of filing a document: starts the sandbox gateway in this process with an
//! in-process GP system that consumes each upload's content (reads every byte, keeps
//! nothing), files a PDF of `DOC_BYTES` (5 MB by default) inline over loopback as
//! `demo-consult`, and prints the rise of the process's peak resident memory (VmHWM,
//! reset just before the request) as a ratio of the document's size.
//!
//! The client is a child process (this example run again), so the rise counts the
//! gateway alone: reading the body, decoding the content, the GP system call. Target:
//! below 2.0.
//!
//!   cargo run --release -p gp-gateway --example document_memory
//!   DOC_BYTES=10000000 cargo run --release -p gp-gateway --example document_memory
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use gp_adapter::time::UtcDateTime;
use gp_adapter::{
    Adapter, AdapterError, CallContext, ClinicalType, DocumentMeta, FileDocumentRequest, Filed,
    GpSystem, PatientRecord, PatientRequest, SearchPage, SearchRequest, UploadContentRequest,
    Uploaded,
};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A GP system that takes content and files documents, keeping only their sizes.
struct Consuming {
    inner: Arc<dyn Adapter>,
    checksum: Arc<AtomicU64>,
}

#[async_trait]
impl Adapter for Consuming {
    fn system(&self) -> GpSystem {
        self.inner.system()
    }
    async fn read_patient(&self, req: &PatientRequest) -> Result<PatientRecord, AdapterError> {
        self.inner.read_patient(req).await
    }
    async fn search(&self, req: &SearchRequest) -> Result<SearchPage, AdapterError> {
        self.inner.search(req).await
    }
    fn supported_types(&self) -> &'static [ClinicalType] {
        self.inner.supported_types()
    }
    async fn ready(&self, ctx: &CallContext) -> Result<(), AdapterError> {
        self.inner.ready(ctx).await
    }
    fn manages_documents(&self) -> bool {
        true
    }
    async fn search_documents(
        &self,
        _req: &gp_adapter::DocumentSearchRequest,
    ) -> Result<Vec<DocumentMeta>, AdapterError> {
        Ok(Vec::new())
    }
    async fn upload_content(&self, req: &UploadContentRequest) -> Result<Uploaded, AdapterError> {
        // As a GP system client streaming the bytes out would: every byte read once.
        let sum = req
            .bytes
            .iter()
            .fold(0u64, |a, b| a.wrapping_add(u64::from(*b)));
        self.checksum.fetch_add(sum, Ordering::Relaxed);
        Ok(Uploaded {
            content_id: "C1".into(),
            size: req.bytes.len() as u64,
        })
    }
    async fn file_document(&self, req: &FileDocumentRequest) -> Result<Filed, AdapterError> {
        let t = UtcDateTime {
            year: 2026,
            month: 12,
            day: 7,
            hour: 9,
            minute: 0,
            second: 0,
        };
        Ok(Filed {
            document: DocumentMeta {
                id: "D1".into(),
                content_id: req.document.content_id.clone(),
                nhs_number: req.nhs_number,
                created: t,
                indexed: t,
                type_snomed: req.document.type_snomed.clone(),
                type_display: req.document.type_display.clone(),
                title: req.document.title.clone(),
                content_type: "application/pdf".into(),
                size: 0,
                sha1: None,
                author_ods: Some(req.document.author_ods.clone()),
                author_name: None,
                identifier: req.document.identifier.clone(),
                workflow: "awaiting-review".into(),
                confidential: false,
            },
            created: true,
        })
    }
}

/// A `/proc/self/status` field in bytes.
fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

fn pdf(len: usize) -> Vec<u8> {
    let mut v = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n".to_vec();
    // Incompressible-looking filler, as a scanned page's image stream is.
    let mut x: u32 = 0x1234_5678;
    while v.len() + 8 < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let b = (x % 94) as u8 + 33;
        v.push(if b == b'/' || b == b'%' { b'x' } else { b });
    }
    v.extend_from_slice(b"\n%%EOF\n");
    v
}

fn body(nhs: &str, id: &str, content: &[u8]) -> Bytes {
    let doc = serde_json::json!({
        "resourceType": "DocumentReference",
        "identifier": [{ "system": "https://bench.example/documents", "value": id }],
        "status": "current",
        "type": { "coding": [{ "system": "http://snomed.info/sct", "code": "371530004", "display": "Clinical consultation report" }] },
        "subject": { "reference": format!("Patient/{nhs}") },
        "description": "Benchmark document",
        "content": [{ "attachment": { "contentType": "application/pdf", "data": base64::engine::general_purpose::STANDARD.encode(content) } }]
    });
    Bytes::from(serde_json::to_vec(&doc).unwrap())
}

/// The child: sends one filing and says how it went.
async fn client(spec: &str) {
    let mut parts = spec.split('|');
    let (url, auth, nhs, size) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap().parse::<usize>().unwrap(),
    );
    let big = body(nhs, "measured", &pdf(size));
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::builder()
        .method("POST")
        .uri(url)
        .header("authorization", auth)
        .header("accept", "application/fhir+json")
        .header("content-type", "application/fhir+json")
        .body(Full::new(big.clone()))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    #[allow(clippy::disallowed_methods)] // a small answer from our own gateway
    let answer = resp.into_body().collect().await.unwrap().to_bytes();
    println!("JSON body {} bytes, answered {status}", big.len());
    if status != 201 {
        println!("{}", String::from_utf8_lossy(&answer));
        std::process::exit(1);
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Ok(spec) = std::env::var("DOC_MEMORY_CLIENT") {
        client(&spec).await;
        return;
    }
    let size: usize = std::env::var("DOC_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000_000);
    let checksum = Arc::new(AtomicU64::new(0));
    let sum = checksum.clone();
    let layer: gp_gateway::sandbox::AdapterLayer = Box::new(move |inner| {
        Arc::new(Consuming {
            inner,
            checksum: sum.clone(),
        })
    });
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let sandbox =
        gp_gateway::sandbox::start_layered(listen, gp_gateway::sandbox::DEFAULT_SEED, layer)
            .await
            .unwrap();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let m = &sandbox.manifest;
    let send = |method: &str, url: String, headers: Vec<(&str, String)>, body: Bytes| {
        let mut req = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let fut = client.request(req.body(Full::new(body)).unwrap());
        async move {
            let resp = fut.await.unwrap();
            let status = resp.status().as_u16();
            #[allow(clippy::disallowed_methods)] // a small answer from our own gateway
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, body)
        }
    };
    let assertion = gp_gateway::sandbox::demo_identity("demo-consult")
        .unwrap()
        .token_request_body(&m.token_url, None)
        .unwrap();
    let (status, token) = send(
        "POST",
        m.token_url.clone(),
        vec![("content-type", "application/x-www-form-urlencoded".into())],
        Bytes::from(assertion),
    )
    .await;
    assert_eq!(status, 200);
    let token: serde_json::Value = serde_json::from_slice(&token).unwrap();
    let auth = format!("Bearer {}", token["access_token"].as_str().unwrap());
    let nhs = m
        .patients
        .iter()
        .find(|p| p.flags.is_empty())
        .unwrap()
        .nhs_number
        .clone();
    let url = format!("{}/DocumentReference", m.base_url);
    let headers = || {
        vec![
            ("authorization", auth.clone()),
            ("accept", "application/fhir+json".to_owned()),
            ("content-type", "application/fhir+json".to_owned()),
        ]
    };
    // Warm up: the patient located and cached, every path taken once.
    let (status, answer) = send(
        "POST",
        url.clone(),
        headers(),
        body(&nhs, "warm", &pdf(50_000)),
    )
    .await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&answer));

    // Reset the peak to now, then measure the filing's peak while a child process sends it.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_kb("VmRSS:");
    let spec = format!("{url}|{auth}|{nhs}|{size}");
    let child = tokio::task::spawn_blocking(move || {
        std::process::Command::new(std::env::current_exe().unwrap())
            .env("DOC_MEMORY_CLIENT", spec)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let peak = status_kb("VmHWM:");
    assert!(
        child.status.success(),
        "{}",
        String::from_utf8_lossy(&child.stdout)
    );
    assert_ne!(checksum.load(Ordering::Relaxed), 0);
    let rise = peak.saturating_sub(before);
    println!(
        "document {size} bytes ({}): gateway peak RSS rise {rise} bytes = {:.2} x the document (target < 2.0)",
        String::from_utf8_lossy(&child.stdout).trim(),
        rise as f64 / size as f64
    );
    sandbox.shutdown().await;
}
