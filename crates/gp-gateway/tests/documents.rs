//! The document routes in process, over a fake GP system: the sandbox with a layer that
//! keeps each practice's documents in memory (and counts the calls it gets) while
//! everything else goes to the simulators. So the routes' own rules (parameters, content
//! checks, limits, ids, idempotency, release rules) are tested whatever each vendor
//! adapter implements yet.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use gp_adapter::time::UtcDateTime;
use gp_adapter::{
    Adapter, AdapterError, CallContext, ClinicalType, ContentRequest, DocumentContent,
    DocumentMeta, DocumentSearchRequest, FileDocumentRequest, Filed, GpSystem, PatientRecord,
    PatientRequest, PractitionerRequest, SearchPage, SearchRequest, UploadContentRequest, Uploaded,
};
use gp_fhir::NhsNumber;
use gp_gateway::sandbox::Sandbox;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------------------
// The fake GP system: documents in memory behind the adapter trait.

struct Stored {
    nhs: NhsNumber,
    content_type: String,
    bytes: Bytes,
    confidential: bool,
}

#[derive(Default)]
struct Store {
    /// (practice, document).
    documents: Vec<(String, DocumentMeta)>,
    /// (practice, content id) → content.
    contents: BTreeMap<(String, String), Stored>,
    /// Idempotency key → (practice, content id) filed.
    keys: BTreeMap<String, (String, String)>,
    next: u32,
}

#[derive(Default)]
struct Calls {
    search: AtomicUsize,
    read: AtomicUsize,
    upload: AtomicUsize,
    file: AtomicUsize,
}

impl Calls {
    fn writes(&self) -> usize {
        self.upload.load(Ordering::SeqCst) + self.file.load(Ordering::SeqCst)
    }
}

struct WithDocuments {
    inner: Arc<dyn Adapter>,
    store: Arc<Mutex<Store>>,
    calls: Arc<Calls>,
}

fn at(year: i32, month: u8, day: u8) -> UtcDateTime {
    UtcDateTime {
        year,
        month,
        day,
        hour: 10,
        minute: 0,
        second: 0,
    }
}

#[async_trait]
impl Adapter for WithDocuments {
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
    async fn read_practitioner(
        &self,
        req: &PractitionerRequest,
    ) -> Result<Option<gp_fhir::model::Practitioner>, AdapterError> {
        self.inner.read_practitioner(req).await
    }
    async fn ready(&self, ctx: &CallContext) -> Result<(), AdapterError> {
        self.inner.ready(ctx).await
    }
    fn manages_documents(&self) -> bool {
        true
    }
    async fn search_documents(
        &self,
        req: &DocumentSearchRequest,
    ) -> Result<Vec<DocumentMeta>, AdapterError> {
        self.calls.search.fetch_add(1, Ordering::SeqCst);
        let store = self.store.lock().unwrap();
        Ok(store
            .documents
            .iter()
            .filter(|(p, d)| p == req.practice.as_str() && d.nhs_number == req.nhs_number)
            .map(|(_, d)| d.clone())
            .collect())
    }
    async fn read_content(
        &self,
        req: &ContentRequest,
    ) -> Result<Option<DocumentContent>, AdapterError> {
        self.calls.read.fetch_add(1, Ordering::SeqCst);
        let store = self.store.lock().unwrap();
        Ok(store
            .contents
            .get(&(req.practice.to_string(), req.content_id.clone()))
            .map(|c| DocumentContent {
                nhs_number: c.nhs,
                content_type: c.content_type.clone(),
                bytes: c.bytes.clone(),
                confidential: c.confidential,
            }))
    }
    async fn upload_content(&self, req: &UploadContentRequest) -> Result<Uploaded, AdapterError> {
        self.calls.upload.fetch_add(1, Ordering::SeqCst);
        let mut store = self.store.lock().unwrap();
        store.next += 1;
        let id = format!("UP.{}", store.next);
        store.contents.insert(
            (req.practice.to_string(), id.clone()),
            Stored {
                nhs: req.nhs_number,
                content_type: req.content_type.clone(),
                bytes: req.bytes.clone(),
                confidential: false,
            },
        );
        Ok(Uploaded {
            content_id: id,
            size: req.bytes.len() as u64,
        })
    }
    async fn file_document(&self, req: &FileDocumentRequest) -> Result<Filed, AdapterError> {
        self.calls.file.fetch_add(1, Ordering::SeqCst);
        let mut store = self.store.lock().unwrap();
        let practice = req.practice.to_string();
        if let Some((p, c)) = store.keys.get(&req.document.key).cloned() {
            let d = store
                .documents
                .iter()
                .find(|(dp, d)| *dp == p && d.content_id == c)
                .map(|(_, d)| d.clone())
                .unwrap();
            return Ok(Filed {
                document: d,
                created: false,
            });
        }
        let content = store
            .contents
            .get(&(practice.clone(), req.document.content_id.clone()))
            .ok_or_else(|| AdapterError::NotFound {
                system: self.inner.system(),
                what: "content".into(),
            })?;
        if content.nhs != req.nhs_number {
            return Err(AdapterError::Unprocessable {
                system: self.inner.system(),
                detail: "content of another patient".into(),
            });
        }
        let d = DocumentMeta {
            id: format!("DOC.{}", req.document.content_id),
            content_id: req.document.content_id.clone(),
            nhs_number: req.nhs_number,
            created: req.document.created,
            indexed: at(2026, 6, 1),
            type_snomed: req.document.type_snomed.clone(),
            type_display: req.document.type_display.clone(),
            title: req.document.title.clone(),
            content_type: content.content_type.clone(),
            size: content.bytes.len() as u64,
            sha1: None,
            author_ods: Some(req.document.author_ods.clone()),
            author_name: req.document.author_name.clone(),
            identifier: req.document.identifier.clone(),
            workflow: "awaiting-review".into(),
            confidential: false,
        };
        store.keys.insert(
            req.document.key.clone(),
            (practice.clone(), d.content_id.clone()),
        );
        store.documents.push((practice, d.clone()));
        Ok(Filed {
            document: d,
            created: true,
        })
    }
}

// ---------------------------------------------------------------------------------------
// A sandbox with the fake, and a client.

struct World {
    sandbox: Sandbox,
    client: Client<HttpConnector, Full<Bytes>>,
    store: Arc<Mutex<Store>>,
    calls: Arc<Calls>,
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn expression(&self) -> Value {
        self.json()["issue"][0]["expression"].clone()
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl World {
    async fn start() -> Self {
        let store: Arc<Mutex<Store>> = Arc::default();
        let calls: Arc<Calls> = Arc::default();
        let (s, c) = (store.clone(), calls.clone());
        let layer: gp_gateway::sandbox::AdapterLayer = Box::new(move |inner| {
            Arc::new(WithDocuments {
                inner,
                store: s.clone(),
                calls: c.clone(),
            })
        });
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let sandbox =
            gp_gateway::sandbox::start_layered(listen, gp_gateway::sandbox::DEFAULT_SEED, layer)
                .await
                .unwrap();
        Self {
            sandbox,
            client: Client::builder(TokioExecutor::new()).build_http(),
            store,
            calls,
        }
    }

    async fn send(&self, method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
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
        let headers = resp.headers().clone();
        #[allow(clippy::disallowed_methods)] // test client reading test-sized bodies
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn token(&self, client_id: &str) -> String {
        let token_url = &self.sandbox.manifest.token_url;
        let body = gp_gateway::sandbox::demo_identity(client_id)
            .unwrap()
            .token_request_body(token_url, None)
            .unwrap();
        let a = self
            .send(
                "POST",
                token_url,
                &[("content-type", "application/x-www-form-urlencoded")],
                body.as_bytes(),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text());
        a.json()["access_token"].as_str().unwrap().to_owned()
    }

    /// A call with `headers` (Accept application/fhir+json and a FHIR Content-Type unless
    /// given).
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        let url = format!("{}{path}", self.sandbox.manifest.base_url);
        let auth = format!("Bearer {token}");
        let mut all = vec![("authorization", auth.as_str())];
        if !headers.iter().any(|(k, _)| *k == "accept") {
            all.push(("accept", "application/fhir+json"));
        }
        if !body.is_empty() && !headers.iter().any(|(k, _)| *k == "content-type") {
            all.push(("content-type", "application/fhir+json"));
        }
        all.extend_from_slice(headers);
        // demo-consult may send 5 requests a second: waited out as a client would.
        loop {
            let a = self.send(method, &url, &all, body).await;
            if a.status != 429 {
                return a;
            }
            let wait = a
                .header("retry-after")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
        }
    }

    fn practices(&self) -> Vec<String> {
        self.sandbox
            .manifest
            .practices
            .iter()
            .map(|p| p.ods.clone())
            .collect()
    }

    /// An ordinary patient of `practice`.
    fn patient(&self, practice: &str) -> String {
        self.sandbox
            .manifest
            .patients
            .iter()
            .find(|p| p.practice == practice && p.flags.is_empty())
            .map(|p| p.nhs_number.clone())
            .unwrap()
    }

    /// Puts a document in the practice's record; returns its FHIR id.
    #[allow(clippy::too_many_arguments)]
    fn seed(
        &self,
        practice: &str,
        nhs: &str,
        content_id: &str,
        indexed: UtcDateTime,
        type_snomed: &str,
        author: &str,
        content_type: &str,
        bytes: Vec<u8>,
        confidential: bool,
    ) -> String {
        let nhs = NhsNumber::parse(nhs).unwrap();
        let mut store = self.store.lock().unwrap();
        let bytes = Bytes::from(bytes);
        store.documents.push((
            practice.to_owned(),
            DocumentMeta {
                id: format!("DOC.{content_id}"),
                content_id: content_id.to_owned(),
                nhs_number: nhs,
                created: indexed,
                indexed,
                type_snomed: type_snomed.to_owned(),
                type_display: "A document".into(),
                title: format!("Document {content_id}"),
                content_type: content_type.to_owned(),
                size: bytes.len() as u64,
                sha1: None,
                author_ods: Some(author.to_owned()),
                author_name: None,
                identifier: None,
                workflow: "filed".into(),
                confidential,
            },
        ));
        store.contents.insert(
            (practice.to_owned(), content_id.to_owned()),
            Stored {
                nhs,
                content_type: content_type.to_owned(),
                bytes,
                confidential,
            },
        );
        format!("{practice}-{content_id}")
    }
}

/// A PDF of about `len` bytes with nothing active in it.
fn pdf(len: usize) -> Vec<u8> {
    let mut v = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n".to_vec();
    while v.len() + 16 < len {
        v.extend_from_slice(b"% 0123456789ab\n");
    }
    v.extend_from_slice(b"trailer\n%%EOF\n");
    v
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

const CLINICAL_LETTER: &str = "823691000000103";
const CONSULTATION_REPORT: &str = "371530004";
const ODS: &str = "https://fhir.nhs.uk/Id/ods-organization-code";

/// A DocumentReference filing `attachment` for `nhs`.
fn document(nhs: &str, identifier: &str, attachment: Value) -> Value {
    json!({
        "resourceType": "DocumentReference",
        "identifier": [{ "system": "https://consult.example/documents", "value": identifier }],
        "status": "current",
        "type": { "coding": [{ "system": "http://snomed.info/sct", "code": CONSULTATION_REPORT, "display": "Clinical consultation report" }] },
        "subject": { "reference": format!("Patient/{nhs}") },
        "description": "Online consultation summary",
        "content": [{ "attachment": attachment }]
    })
}

fn bytes_of(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

fn entries(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .map(|e| e.iter().map(|e| e["resource"].clone()).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn documents_are_listed_filtered_paged_and_read_with_their_content() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    let practice = w.practices()[0].clone();
    let nhs = w.patient(&practice);
    let letter = pdf(3000);
    let d1 = w.seed(
        &practice,
        &nhs,
        "L1",
        at(2026, 1, 10),
        CLINICAL_LETTER,
        "RR8",
        "application/pdf",
        letter.clone(),
        false,
    );
    let d2 = w.seed(
        &practice,
        &nhs,
        "C2",
        at(2026, 3, 5),
        CONSULTATION_REPORT,
        "Y90003",
        "text/plain",
        b"Seen today.".to_vec(),
        false,
    );
    let d3 = w.seed(
        &practice,
        &nhs,
        "S3",
        at(2026, 2, 1),
        CLINICAL_LETTER,
        "RR8",
        "application/pdf",
        pdf(6 * 1024 * 1024),
        false,
    );
    let d4 = w.seed(
        &practice,
        &nhs,
        "X4",
        at(2026, 4, 1),
        CLINICAL_LETTER,
        "RR8",
        "application/pdf",
        pdf(2000),
        true,
    );

    let ids = |a: &Answer| -> Vec<String> {
        entries(&a.json())
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let search = |extra: &str| format!("/DocumentReference?patient={nhs}{extra}");
    let a = w.call("GET", &search(""), &token, &[], b"").await;
    assert_eq!(a.status, 200, "{}", a.text());
    // Newest first; the confidential one withheld.
    assert_eq!(ids(&a), [d2.clone(), d3.clone(), d1.clone()]);
    assert_eq!(a.json()["total"], 3);

    let a = w
        .call(
            "GET",
            &search(&format!("&type=http://snomed.info/sct|{CLINICAL_LETTER}")),
            &token,
            &[],
            b"",
        )
        .await;
    assert_eq!(ids(&a), [d3.clone(), d1.clone()]);
    let a = w
        .call("GET", &search("&author=Y90003"), &token, &[], b"")
        .await;
    assert_eq!(ids(&a), [d2.as_str()]);
    let a = w
        .call(
            "GET",
            &search(&format!("&author:identifier={ODS}|RR8")),
            &token,
            &[],
            b"",
        )
        .await;
    assert_eq!(ids(&a), [d3.clone(), d1.clone()]);
    let a = w
        .call(
            "GET",
            &search("&date=ge2026-02-01&date=lt2026-03-01"),
            &token,
            &[],
            b"",
        )
        .await;
    assert_eq!(ids(&a), [d3.as_str()]);
    let a = w
        .call(
            "GET",
            &search("&created=gt2026-01-10&created=le2026-03-05"),
            &token,
            &[],
            b"",
        )
        .await;
    assert_eq!(ids(&a), [d2.clone(), d3.clone()]);
    let a = w
        .call("GET", &search("&date=eq2026-02-01"), &token, &[], b"")
        .await;
    assert_eq!(a.status, 422);
    assert_eq!(a.expression(), json!(["date"]));

    // Paged: the next link serves the next page.
    let a = w.call("GET", &search("&_count=1"), &token, &[], b"").await;
    assert_eq!(ids(&a), [d2.as_str()]);
    let next = a.json()["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = next.strip_prefix(&w.sandbox.manifest.base_url).unwrap();
    let a = w.call("GET", path, &token, &[], b"").await;
    assert_eq!(ids(&a), [d3.as_str()]);

    // The large one is listed without a URL, with the placeholder title.
    let a = w
        .call("GET", &format!("/DocumentReference/{d3}"), &token, &[], b"")
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let large = a.json();
    assert_eq!(large["content"][0]["attachment"].get("url"), None);
    assert_eq!(
        large["description"],
        gp_adapter::documents::fhir::TOO_LARGE_TITLE
    );
    let a = w
        .call(
            "GET",
            &format!("/Binary/{d3}"),
            &token,
            &[("accept", "*/*")],
            b"",
        )
        .await;
    assert_eq!(a.status, 403, "{}", a.text());
    assert_eq!(a.json()["issue"][0]["code"], "too-costly");

    // One by id, as the search gave it; its content raw and as a FHIR Binary.
    let a = w
        .call("GET", &format!("/DocumentReference/{d1}"), &token, &[], b"")
        .await;
    assert_eq!(a.status, 200);
    let doc = a.json();
    assert_eq!(
        doc["content"][0]["attachment"]["url"],
        format!("Binary/{d1}")
    );
    assert_eq!(doc["custodian"]["identifier"]["value"], practice);
    assert_eq!(doc["author"][0]["identifier"]["value"], "RR8");
    let a = w
        .call(
            "GET",
            &format!("/Binary/{d1}"),
            &token,
            &[("accept", "application/pdf")],
            b"",
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("application/pdf"));
    assert_eq!(&a.body[..], &letter[..]);
    let a = w
        .call("GET", &format!("/Binary/{d1}"), &token, &[], b"")
        .await;
    assert_eq!(a.json()["resourceType"], "Binary");
    assert_eq!(a.json()["data"], b64(&letter));
    assert_eq!(
        a.json()["securityContext"]["reference"],
        format!("Patient/{nhs}")
    );
    let a = w
        .call(
            "GET",
            &format!("/Binary/{d1}"),
            &token,
            &[("accept", "text/html")],
            b"",
        )
        .await;
    assert_eq!(a.status, 406);

    // The confidential one is unknown, by either id.
    for path in [format!("/DocumentReference/{d4}"), format!("/Binary/{d4}")] {
        let a = w
            .call("GET", &path, &token, &[("accept", "*/*")], b"")
            .await;
        assert_eq!(a.status, 404, "{path}: {}", a.text());
    }
}

#[tokio::test]
async fn documents_are_filed_inline_or_staged_and_a_retry_files_nothing_again() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    let practice = w.practices()[0].clone();
    let nhs = w.patient(&practice);

    // A PDF inline.
    let content = pdf(20_000);
    let body = bytes_of(&document(
        &nhs,
        "pdf-1",
        json!({ "contentType": "application/pdf", "data": b64(&content) }),
    ));
    let a = w
        .call("POST", "/DocumentReference", &token, &[], &body)
        .await;
    assert_eq!(a.status, 201, "{}", a.text());
    let filed = a.json();
    let id = filed["id"].as_str().unwrap().to_owned();
    assert_eq!(
        a.header("location").unwrap(),
        format!("{}/DocumentReference/{id}", w.sandbox.manifest.base_url)
    );
    assert_eq!(filed["author"][0]["identifier"]["value"], "Y90003");
    assert_eq!(filed["docStatus"], "preliminary");
    assert_eq!(filed["type"]["coding"][0]["code"], CONSULTATION_REPORT);
    let a = w
        .call("GET", &format!("/DocumentReference/{id}"), &token, &[], b"")
        .await;
    assert_eq!(
        a.json(),
        filed,
        "the filing answers the document as a read gives it"
    );
    let a = w
        .call(
            "GET",
            &format!("/Binary/{id}"),
            &token,
            &[("accept", "application/pdf")],
            b"",
        )
        .await;
    assert_eq!(&a.body[..], &content[..]);

    // The retry: 200, the same document, nothing uploaded or filed again.
    let writes = w.calls.writes();
    let a = w
        .call("POST", "/DocumentReference", &token, &[], &body)
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["id"], id.as_str());
    assert_eq!(w.calls.writes(), writes);

    // Plain text staged first (raw), then filed by its Binary id.
    let text = "Seen today: advice given.\nReview in two weeks.".as_bytes();
    let security = format!("Patient/{nhs}");
    let a = w
        .call(
            "POST",
            "/Binary",
            &token,
            &[
                ("content-type", "text/plain; charset=utf-8"),
                ("x-security-context", &security),
            ],
            text,
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text());
    let location = a.header("location").unwrap().to_owned();
    let binary = location.rsplit_once("/Binary/").unwrap().1.to_owned();
    let body = bytes_of(&document(
        &nhs,
        "txt-1",
        json!({ "contentType": "text/plain", "url": format!("Binary/{binary}"), "title": "Advice" }),
    ));
    let a = w
        .call("POST", "/DocumentReference", &token, &[], &body)
        .await;
    assert_eq!(a.status, 201, "{}", a.text());
    let id = a.json()["id"].as_str().unwrap().to_owned();
    let a = w
        .call(
            "GET",
            &format!("/Binary/{id}"),
            &token,
            &[("accept", "text/plain")],
            b"",
        )
        .await;
    assert_eq!(&a.body[..], text);
    let a = w
        .call("POST", "/DocumentReference", &token, &[], &body)
        .await;
    assert_eq!(a.status, 200, "{}", a.text());

    // An HTML summary staged as a FHIR Binary, filed with If-None-Exist.
    let html = b"<!DOCTYPE html><html><body><h1>Summary</h1><p>Cough, 3 days.</p></body></html>";
    let staged = json!({ "resourceType": "Binary", "contentType": "text/html", "securityContext": { "reference": security }, "data": b64(html) });
    let a = w
        .call("POST", "/Binary", &token, &[], &bytes_of(&staged))
        .await;
    assert_eq!(a.status, 201, "{}", a.text());
    let binary = a.json()["id"].as_str().unwrap().to_owned();
    let mut doc = document(
        &nhs,
        "html-1",
        json!({ "contentType": "text/html", "url": format!("Binary/{binary}") }),
    );
    doc.as_object_mut().unwrap().remove("identifier");
    let a = w
        .call(
            "POST",
            "/DocumentReference",
            &token,
            &[(
                "if-none-exist",
                "identifier=https://consult.example/documents|html-1",
            )],
            &bytes_of(&doc),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text());
    let id = a.json()["id"].as_str().unwrap().to_owned();
    let a = w
        .call(
            "GET",
            &format!("/Binary/{id}"),
            &token,
            &[("accept", "*/*")],
            b"",
        )
        .await;
    assert_eq!(a.header("content-type"), Some("text/html"));
    assert_eq!(&a.body[..], html);
}

#[tokio::test]
async fn refused_documents_never_reach_the_gp_system() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    let practice = w.practices()[0].clone();
    let nhs = w.patient(&practice);
    let inline = |ct: &str, bytes: &[u8]| json!({ "contentType": ct, "data": b64(bytes) });
    let data = "DocumentReference.content[0].attachment.data";
    let content_type = "DocumentReference.content[0].attachment.contentType";
    let mut cases: Vec<(Value, &str)> = Vec::new();
    let mut no_type = document(&nhs, "r-1", inline("text/plain", b"hello"));
    no_type.as_object_mut().unwrap().remove("type");
    cases.push((no_type, "DocumentReference.type"));
    let mut other_author = document(&nhs, "r-2", inline("text/plain", b"hello"));
    other_author["author"] = json!([{ "identifier": { "system": ODS, "value": "Y90001" } }]);
    cases.push((other_author, "DocumentReference.author[0]"));
    let mut no_identifier = document(&nhs, "r-3", inline("text/plain", b"hello"));
    no_identifier.as_object_mut().unwrap().remove("identifier");
    cases.push((no_identifier, "DocumentReference.identifier"));
    cases.push((
        document(&nhs, "r-4", inline("image/png", b"\x89PNG\r\n")),
        content_type,
    ));
    cases.push((
        document(&nhs, "r-5", inline("application/pdf", b"just text")),
        content_type,
    ));
    cases.push((
        document(&nhs, "r-6", inline("text/html", b"plain words, no markup")),
        content_type,
    ));
    for (i, evasion) in [
        "<html><body><ScRiPt>alert(1)</sCrIpT></body></html>",
        "<p><img src=x onerror=alert(1)></p>",
        "<p><a href=\"jav&#x61;script:alert(1)\">x</a></p>",
        "<p><iframe src=\"https://evil.example\"></iframe></p>",
    ]
    .into_iter()
    .enumerate()
    {
        cases.push((
            document(
                &nhs,
                &format!("h-{i}"),
                inline("text/html", evasion.as_bytes()),
            ),
            data,
        ));
    }
    let with_js = String::from_utf8(pdf(2000)).unwrap().replace(
        "/Catalog",
        "/Catalog /OpenAction << /S /J#61vaScript /JS (app.alert(1)) >>",
    );
    cases.push((
        document(&nhs, "p-1", inline("application/pdf", with_js.as_bytes())),
        data,
    ));
    for (body, element) in cases {
        let a = w
            .call("POST", "/DocumentReference", &token, &[], &bytes_of(&body))
            .await;
        assert_eq!(a.status, 422, "{element}: {}", a.text());
        assert_eq!(a.expression(), json!([element]), "{}", a.text());
    }
    let security = format!("Patient/{nhs}");
    let a = w
        .call(
            "POST",
            "/Binary",
            &token,
            &[
                ("content-type", "image/png"),
                ("x-security-context", &security),
            ],
            b"\x89PNG",
        )
        .await;
    assert_eq!(a.status, 415, "{}", a.text());
    let a = w
        .call(
            "POST",
            "/Binary",
            &token,
            &[
                ("content-type", "text/html"),
                ("x-security-context", &security),
            ],
            b"<svg onload=alert(1)>",
        )
        .await;
    assert_eq!(a.status, 422, "{}", a.text());
    let a = w
        .call(
            "POST",
            "/Binary",
            &token,
            &[("content-type", "text/plain")],
            b"hello",
        )
        .await;
    assert_eq!(a.status, 400, "no X-Security-Context: {}", a.text());
    assert_eq!(w.calls.writes(), 0, "nothing refused reaches the GP system");
}

#[tokio::test]
async fn an_oversized_body_is_refused_before_it_is_sent() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    let base = &w.sandbox.manifest.base_url;
    let url: http::Uri = base.parse().unwrap();
    let path = format!("{}/Binary", url.path());
    let mut stream = tokio::net::TcpStream::connect(format!(
        "{}:{}",
        url.host().unwrap(),
        url.port_u16().unwrap()
    ))
    .await
    .unwrap();
    // A gigabyte announced, not a byte of it sent: the answer must come anyway.
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {token}\r\naccept: application/fhir+json\r\ncontent-type: application/pdf\r\nx-security-context: Patient/9000000009\r\ncontent-length: 1073741824\r\n\r\n",
        url.authority().unwrap()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("answered before the body was sent")
        .unwrap();
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    // The document route takes the base64 of 10 MiB plus 64 KiB, no more.
    let big = vec![b'A'; 14 * 1024 * 1024 + 200 * 1024];
    let a = w
        .call("POST", "/DocumentReference", &token, &[], &big)
        .await;
    assert_eq!(a.status, 413, "{}", a.text());
    // A body within the server's ordinary limit would never have been allowed this far.
    let writes = w.calls.writes();
    assert_eq!(writes, 0);
}

#[tokio::test]
async fn a_supplier_needs_the_document_scopes_and_a_paired_practice() {
    let w = World::start().await;
    let practices = w.practices();
    let monitoring = w.token("demo-monitoring").await;
    let nhs = w.patient(&practices[0]);
    let a = w
        .call(
            "GET",
            &format!("/DocumentReference?patient={nhs}"),
            &monitoring,
            &[],
            b"",
        )
        .await;
    assert_eq!(a.status, 403, "{}", a.text());
    assert!(
        a.text().contains("system/DocumentReference.s"),
        "{}",
        a.text()
    );
    let security = format!("Patient/{nhs}");
    let a = w
        .call(
            "POST",
            "/Binary",
            &monitoring,
            &[
                ("content-type", "text/plain"),
                ("x-security-context", &security),
            ],
            b"hi",
        )
        .await;
    assert_eq!(a.status, 403, "{}", a.text());
    assert!(
        a.text().contains("system/DocumentReference.c"),
        "{}",
        a.text()
    );

    // demo-consult, paired now with the north practices only.
    let current = gp_gateway::sandbox::current_suppliers(&w.sandbox).unwrap();
    let north: Vec<String> = w
        .sandbox
        .manifest
        .suppliers
        .iter()
        .find(|s| s.client_id == "demo-monitoring")
        .unwrap()
        .practices
        .clone();
    let south = practices
        .iter()
        .find(|p| !north.contains(p))
        .unwrap()
        .clone();
    let patient = w.patient(&south);
    let theirs = w.seed(
        &south,
        &patient,
        "T1",
        at(2026, 1, 1),
        CLINICAL_LETTER,
        "RR8",
        "text/plain",
        b"private".to_vec(),
        false,
    );
    let mut doc: toml::Value = toml::from_str(&current).unwrap();
    for s in doc["suppliers"].as_array_mut().unwrap() {
        if s["client_id"].as_str() == Some("demo-consult") {
            s["practices"] = toml::Value::Array(
                north
                    .iter()
                    .map(|p| toml::Value::String(p.clone()))
                    .collect(),
            );
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("suppliers.toml");
    std::fs::write(&path, toml::to_string(&doc).unwrap()).unwrap();
    w.sandbox
        .app
        .auth
        .as_ref()
        .unwrap()
        .reload_from(&path)
        .unwrap();
    let consult = w.token("demo-consult").await;
    let body = bytes_of(&document(
        &patient,
        "u-1",
        json!({ "contentType": "text/plain", "data": b64(b"hello") }),
    ));
    let a = w
        .call("POST", "/DocumentReference", &consult, &[], &body)
        .await;
    assert_eq!(a.status, 404, "{}", a.text());
    for path in [
        format!("/Binary/{theirs}"),
        format!("/DocumentReference/{theirs}"),
    ] {
        let a = w
            .call("GET", &path, &consult, &[("accept", "*/*")], b"")
            .await;
        assert_eq!(a.status, 404, "{path}: {}", a.text());
    }
    let a = w
        .call(
            "GET",
            &format!("/DocumentReference?patient={patient}"),
            &consult,
            &[],
            b"",
        )
        .await;
    assert_eq!(a.status, 404, "{}", a.text());
    assert_eq!(w.calls.writes(), 0);
    assert_eq!(
        w.calls.read.load(Ordering::SeqCst),
        0,
        "an unpaired practice's content is never read"
    );
    assert_eq!(w.calls.search.load(Ordering::SeqCst), 0);
}

/// A PDF of exactly `len` bytes.
fn pdf_of(len: usize) -> Vec<u8> {
    let mut v = b"%PDF-1.4\n".to_vec();
    let tail = b"\n%%EOF\n";
    v.resize(len - tail.len(), b'%');
    v.extend_from_slice(tail);
    v
}

#[tokio::test]
async fn limits_hold_to_the_byte_and_unknown_parameters_are_refused() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    let practice = w.practices()[0].clone();
    let nhs = w.patient(&practice);
    // Content of exactly the inline limit (5 MiB) is served; a byte more is not.
    let limit = 5 * 1024 * 1024;
    let at_limit = w.seed(
        &practice,
        &nhs,
        "L1",
        at(2026, 3, 1),
        CLINICAL_LETTER,
        "RR8",
        "application/pdf",
        pdf_of(limit),
        false,
    );
    let over = w.seed(
        &practice,
        &nhs,
        "L2",
        at(2026, 3, 2),
        CLINICAL_LETTER,
        "RR8",
        "application/pdf",
        pdf_of(limit + 1),
        false,
    );
    let a = w
        .call(
            "GET",
            &format!("/Binary/{at_limit}"),
            &token,
            &[("accept", "*/*")],
            b"",
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.body.len(), limit);
    let a = w
        .call(
            "GET",
            &format!("/Binary/{over}"),
            &token,
            &[("accept", "*/*")],
            b"",
        )
        .await;
    assert_eq!(a.status, 403, "{}", a.text());
    // A parameter a Binary read or create does not take is refused, not ignored.
    let a = w
        .call(
            "GET",
            &format!("/Binary/{at_limit}?version=2"),
            &token,
            &[("accept", "*/*")],
            b"",
        )
        .await;
    assert_eq!(a.status, 400, "{}", a.text());
    let security = format!("Patient/{nhs}");
    let raw = [
        ("content-type", "text/plain"),
        ("x-security-context", security.as_str()),
    ];
    let a = w
        .call("POST", "/Binary?version=2", &token, &raw, b"hello")
        .await;
    assert_eq!(a.status, 400, "{}", a.text());
    assert_eq!(w.calls.writes(), 0, "nothing refused reached the GP system");
    // A FHIR Binary's decoded content is held to the upload limit (10 MiB) to the byte.
    let upload = 10 * 1024 * 1024;
    let binary = |len: usize| {
        serde_json::to_vec(&json!({
            "resourceType": "Binary",
            "contentType": "application/pdf",
            "securityContext": {"reference": format!("Patient/{nhs}")},
            "data": b64(&pdf_of(len)),
        }))
        .unwrap()
    };
    let a = w
        .call("POST", "/Binary", &token, &[], &binary(upload + 1))
        .await;
    assert_eq!(a.status, 413, "{}", a.text());
    assert_eq!(w.calls.writes(), 0);
    let a = w
        .call("POST", "/Binary", &token, &[], &binary(upload))
        .await;
    assert_eq!(a.status, 201, "{}", a.text());
}

#[tokio::test]
async fn a_retry_is_only_ever_this_suppliers_own_visible_document() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    let practice = w.practices()[0].clone();
    let nhs = w.patient(&practice);
    let system = "https://consult.example/documents";
    // Another organisation's document under the same identifier, and this supplier's own
    // that the practice has since marked confidential.
    let theirs = w.seed(
        &practice,
        &nhs,
        "T1",
        at(2026, 4, 1),
        CONSULTATION_REPORT,
        "RR8",
        "text/plain",
        b"theirs".to_vec(),
        false,
    );
    let hidden = w.seed(
        &practice,
        &nhs,
        "T2",
        at(2026, 4, 2),
        CONSULTATION_REPORT,
        "Y90003",
        "text/plain",
        b"hidden".to_vec(),
        true,
    );
    {
        let mut store = w.store.lock().unwrap();
        for (i, (_, d)) in store.documents.iter_mut().enumerate() {
            if d.content_id == "T1" || d.content_id == "T2" {
                d.identifier = Some((system.into(), format!("same-{i}")));
            }
        }
    }
    let identifier_of = |content: &str| {
        let store = w.store.lock().unwrap();
        store
            .documents
            .iter()
            .find(|(_, d)| d.content_id == content)
            .and_then(|(_, d)| d.identifier.clone())
            .unwrap()
            .1
    };
    for (seeded, value) in [
        (&theirs, identifier_of("T1")),
        (&hidden, identifier_of("T2")),
    ] {
        let body = document(
            &nhs,
            &value,
            json!({"contentType": "text/plain", "data": b64(b"mine")}),
        );
        let a = w
            .call("POST", "/DocumentReference", &token, &[], &bytes_of(&body))
            .await;
        assert_eq!(a.status, 201, "{}", a.text());
        assert_ne!(
            a.json()["id"].as_str(),
            Some(seeded.as_str()),
            "{}",
            a.text()
        );
    }
}

#[tokio::test]
async fn an_author_and_a_title_must_be_what_they_say() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    let practice = w.practices()[0].clone();
    let nhs = w.patient(&practice);
    // The author's identifier must be an ODS code, not any identifier with the same value.
    let mut body = document(
        &nhs,
        "auth-1",
        json!({"contentType": "text/plain", "data": b64(b"x")}),
    );
    body["author"] =
        json!([{"identifier": {"system": "https://example.org/not-ods", "value": "Y90003"}}]);
    let a = w
        .call("POST", "/DocumentReference", &token, &[], &bytes_of(&body))
        .await;
    assert_eq!(a.status, 422, "{}", a.text());
    assert_eq!(
        a.json()["issue"][0]["expression"][0],
        "DocumentReference.author[0]",
        "{}",
        a.text()
    );
    // A blank attachment title is no title.
    let mut body = document(
        &nhs,
        "title-1",
        json!({"contentType": "text/plain", "data": b64(b"x"), "title": "   "}),
    );
    body.as_object_mut().unwrap().remove("description");
    let a = w
        .call("POST", "/DocumentReference", &token, &[], &bytes_of(&body))
        .await;
    assert_eq!(a.status, 422, "{}", a.text());
    assert_eq!(
        a.json()["issue"][0]["expression"][0],
        "DocumentReference.description",
        "{}",
        a.text()
    );
    assert_eq!(w.calls.writes(), 0);
}
