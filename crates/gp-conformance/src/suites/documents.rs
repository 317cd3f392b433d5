//! `documents`: filing and reading documents as an online-consultation supplier does,
//! acting as the manifest's supplier holding `system/DocumentReference.c` and
//! `system/Binary.r` paired with the most practices. Per GP system, for an unflagged test
//! patient of a paired practice: a PDF filed inline, plain text staged by `POST /Binary`
//! then filed, an HTML consultation summary filed inline; the patient's documents listed;
//! each read back byte-identical through `GET /Binary/{id}`; a retry filing nothing
//! again; and the refusals (content not of its type, active HTML, a body over the
//! limit, a patient of a practice the supplier is not paired with). The suite files
//! documents: point it only at a sandbox or a test environment.

use base64::Engine as _;
use serde_json::{Value, json};

use super::{Ctx, Recorder};
use crate::http::{Answer, Probe};
use crate::manifest::Supplier;
use crate::model::{Check, TestDef, Verdict, ensure};
use crate::run_test;

pub const CATALOGUE: &[TestDef] = &[
    TestDef::required(
        "DOC-FILE-01",
        "filing",
        "POST /DocumentReference with a PDF inline (base64 attachment.data) answers 201 with Location [base]/DocumentReference/{id} and the DocumentReference as held: subject, type, the supplier as author, attachment.url Binary/{id}",
        "REQ-DOC-04",
    ),
    TestDef::required(
        "DOC-FILE-02",
        "filing",
        "plain text staged by POST /Binary (X-Security-Context: Patient/{nhs}) answers 201 with Location [base]/Binary/{id}; a POST /DocumentReference naming it (attachment.url) answers 201",
        "REQ-DOC-05",
    ),
    TestDef::required(
        "DOC-FILE-03",
        "filing",
        "an HTML consultation summary filed inline answers 201",
        "REQ-DOC-04",
    ),
    TestDef::required(
        "DOC-LIST-01",
        "reading",
        "GET /DocumentReference?patient={nhs} lists the documents filed (following next links), and type= narrows to the type filed",
        "REQ-DOC-01",
    ),
    TestDef::required(
        "DOC-READ-01",
        "reading",
        "GET /Binary/{id} of each document filed answers its bytes, identical, with its Content-Type; GET /DocumentReference/{id} answers it as filed",
        "REQ-DOC-02",
    ),
    TestDef::required(
        "DOC-IDEM-01",
        "filing",
        "the same filing again (same identifier) answers 200 with the same DocumentReference id",
        "REQ-DOC-06",
    ),
    TestDef::required(
        "DOC-REF-01",
        "refusals",
        "content that is not its contentType (text sent as application/pdf) is refused 422 naming DocumentReference.content[0].attachment.contentType",
        "REQ-DOC-07",
    ),
    TestDef::required(
        "DOC-REF-02",
        "refusals",
        "HTML with active content (<img src=x onerror=…>, <ScRiPt>, a javascript: URL) is refused 422 naming DocumentReference.content[0].attachment.data",
        "REQ-DOC-07",
    ),
    TestDef::required(
        "DOC-REF-03",
        "refusals",
        "a POST /Binary body over the upload limit (10 MiB by default) is refused 413",
        "REQ-DOC-08",
    ),
    TestDef::required(
        "DOC-REF-04",
        "refusals",
        "filing for a patient of a practice the supplier is not paired with answers 404, as for an unknown patient",
        "REQ-DOC-09",
    ),
];

const KIT_DOCUMENTS: &str = "https://gp-conformance.invalid/Id/document";
const CONSULTATION_REPORT: &str = "371530004";
/// Pages of a document search followed at most.
const MAX_PAGES: usize = 20;
/// The default upload limit (`[documents] max_upload_bytes`).
const DEFAULT_MAX_UPLOAD: usize = 10 * 1024 * 1024;

/// The supplier the kit files documents as: the active one holding DocumentReference
/// create and Binary read scopes paired with the most practices.
fn filer(ctx: &Ctx) -> Option<&Supplier> {
    ctx.manifest
        .active()
        .filter(|s| {
            !s.practices.is_empty()
                && s.has_scope("DocumentReference", 'c')
                && s.has_scope("DocumentReference", 's')
                && s.has_scope("Binary", 'r')
        })
        .max_by_key(|s| s.practices.len())
}

pub async fn run(ctx: &Ctx, rec: &mut Recorder) {
    let Some(sup) = filer(ctx).cloned() else {
        rec.close_rest(Verdict::Skip(
            "the manifest names no supplier with system/DocumentReference.crs and system/Binary.r paired with a practice".into(),
        ));
        return;
    };
    let mut p = rec.probe();
    let token = super::security::token(ctx, &sup, &mut p.0).await;
    rec.setup_request_ids
        .extend(p.0.evidence.iter().map(|e| e.request_id.clone()));
    let token = match token {
        Ok(t) => t,
        Err(e) => {
            rec.omit_rest(&format!("no access token for {}: {e}", sup.client_id));
            return;
        }
    };
    let on = On {
        ctx,
        sup: &sup,
        token: &token,
    };
    run_test!(rec, "DOC-REF-04", None, unpaired(&on));
    for system in ctx.manifest.systems() {
        let sys = Some(system.as_str());
        let mut flow = Flow {
            patient: ctx
                .manifest
                .patients
                .iter()
                .find(|p| {
                    p.system == system && p.flags.is_empty() && sup.practices.contains(&p.practice)
                })
                .map(|p| p.nhs_number.clone()),
            ..Flow::default()
        };
        run_test!(rec, "DOC-FILE-01", sys, file_pdf(&on, &mut flow));
        run_test!(rec, "DOC-FILE-02", sys, file_staged_text(&on, &mut flow));
        run_test!(rec, "DOC-FILE-03", sys, file_html(&on, &mut flow));
        run_test!(rec, "DOC-LIST-01", sys, list(&on, &flow));
        run_test!(rec, "DOC-READ-01", sys, read_back(&on, &flow));
        run_test!(rec, "DOC-IDEM-01", sys, retry(&on, &flow));
        run_test!(rec, "DOC-REF-01", sys, wrong_type(&on, &flow));
        run_test!(rec, "DOC-REF-02", sys, active_html(&on, &flow));
        run_test!(rec, "DOC-REF-03", sys, oversize(&on, &flow));
    }
}

struct On<'a> {
    ctx: &'a Ctx,
    sup: &'a Supplier,
    token: &'a str,
}

/// A document the kit filed: its id, type, bytes and the body that filed it.
#[derive(Debug, Clone)]
struct Filed {
    id: String,
    content_type: &'static str,
    bytes: Vec<u8>,
    body: Value,
}

#[derive(Debug, Default)]
struct Flow {
    patient: Option<String>,
    filed: Vec<Filed>,
}

fn need(flow: &Flow) -> Result<&str, Verdict> {
    flow.patient.as_deref().ok_or_else(|| {
        Verdict::Omit(
            "the manifest has no unflagged patient on this GP system at a practice the supplier is paired with".into(),
        )
    })
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A small PDF with nothing active in it.
fn pdf() -> Vec<u8> {
    b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n".to_vec()
}

fn document(nhs: &str, attachment: Value) -> Value {
    json!({
        "resourceType": "DocumentReference",
        "identifier": [{ "system": KIT_DOCUMENTS, "value": uuid::Uuid::new_v4().to_string() }],
        "status": "current",
        "type": { "coding": [{ "system": "http://snomed.info/sct", "code": CONSULTATION_REPORT, "display": "Clinical consultation report" }] },
        "subject": { "reference": format!("Patient/{nhs}") },
        "description": "Conformance kit: online consultation summary",
        "content": [{ "attachment": attachment }]
    })
}

fn status(a: &Answer, want: u16, what: &str) -> Check {
    ensure(a.status == want, || {
        format!(
            "{what} answered HTTP {}{}, expected HTTP {want}",
            a.status,
            a.spine_code()
                .map(|(_, c)| format!(" ({c})"))
                .unwrap_or_default()
        )
    })
}

async fn post(
    on: &On<'_>,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    p: &mut Probe,
) -> Result<Answer, Verdict> {
    let mut h = vec![("content-type", "application/fhir+json")];
    h.retain(|(k, _)| !headers.iter().any(|(x, _)| x == k));
    h.extend_from_slice(headers);
    p.call(
        "POST",
        &format!("{}/{path}", on.ctx.manifest.base_url),
        Some(on.token),
        &h,
        body,
    )
    .await
}

/// Files `body`, checking the 201 and the answer; records what was filed.
async fn file(
    on: &On<'_>,
    flow: &mut Flow,
    body: Value,
    content_type: &'static str,
    bytes: Vec<u8>,
    p: &mut Probe,
) -> Check {
    let nhs = need(flow)?.to_owned();
    let a = post(
        on,
        "DocumentReference",
        &[],
        &serde_json::to_vec(&body).unwrap_or_default(),
        p,
    )
    .await?;
    status(&a, 201, "POST /DocumentReference")?;
    let v = a.json()?;
    let id = v["id"].as_str().unwrap_or_default().to_owned();
    let location = format!("{}/DocumentReference/{id}", on.ctx.manifest.base_url);
    ensure(a.header("location") == Some(location.as_str()), || {
        format!(
            "the 201's Location is {:?}, expected {location}",
            a.header("location")
        )
    })?;
    ensure(
        v["subject"]["reference"] == format!("Patient/{nhs}"),
        || {
            format!(
                "DocumentReference.subject is {}, not Patient/{nhs}",
                v["subject"]
            )
        },
    )?;
    ensure(
        v["type"]["coding"][0]["code"] == CONSULTATION_REPORT,
        || format!("DocumentReference.type is {}", v["type"]),
    )?;
    ensure(
        v["author"][0]["identifier"]["system"] == "https://fhir.nhs.uk/Id/ods-organization-code",
        || {
            format!(
                "DocumentReference.author is {}, not the supplier's organisation by its ODS code",
                v["author"]
            )
        },
    )?;
    ensure(
        v["content"][0]["attachment"]["url"] == format!("Binary/{id}"),
        || {
            format!(
                "attachment.url is {}, expected Binary/{id}",
                v["content"][0]["attachment"]["url"]
            )
        },
    )?;
    flow.filed.push(Filed {
        id,
        content_type,
        bytes,
        body,
    });
    Ok(())
}

async fn file_pdf(on: &On<'_>, flow: &mut Flow, p: &mut Probe) -> Check {
    let nhs = need(flow)?.to_owned();
    let bytes = pdf();
    let body = document(
        &nhs,
        json!({ "contentType": "application/pdf", "data": b64(&bytes) }),
    );
    file(on, flow, body, "application/pdf", bytes, p).await
}

async fn file_staged_text(on: &On<'_>, flow: &mut Flow, p: &mut Probe) -> Check {
    let nhs = need(flow)?.to_owned();
    let bytes = b"Conformance kit: seen today, advice given. Review in two weeks.".to_vec();
    let security = format!("Patient/{nhs}");
    let a = post(
        on,
        "Binary",
        &[
            ("content-type", "text/plain"),
            ("x-security-context", &security),
        ],
        &bytes,
        p,
    )
    .await?;
    status(&a, 201, "POST /Binary")?;
    let location = a.header("location").unwrap_or_default().to_owned();
    let id = location
        .strip_prefix(&format!("{}/Binary/", on.ctx.manifest.base_url))
        .ok_or_else(|| {
            Verdict::Fail(format!(
                "the 201's Location {location:?} is not [base]/Binary/{{id}}"
            ))
        })?
        .to_owned();
    let body = document(
        &nhs,
        json!({ "contentType": "text/plain", "url": format!("Binary/{id}") }),
    );
    file(on, flow, body, "text/plain", bytes, p).await
}

async fn file_html(on: &On<'_>, flow: &mut Flow, p: &mut Probe) -> Check {
    let nhs = need(flow)?.to_owned();
    let bytes = b"<!DOCTYPE html><html><head><title>Summary</title></head><body><h1>Consultation summary</h1><p>Conformance kit.</p></body></html>".to_vec();
    let body = document(
        &nhs,
        json!({ "contentType": "text/html", "data": b64(&bytes) }),
    );
    file(on, flow, body, "text/html", bytes, p).await
}

fn need_filed(flow: &Flow) -> Result<&[Filed], Verdict> {
    if flow.filed.is_empty() {
        return Err(Verdict::Omit("not run: no document was filed".into()));
    }
    Ok(&flow.filed)
}

async fn list(on: &On<'_>, flow: &Flow, p: &mut Probe) -> Check {
    let nhs = need(flow)?;
    let filed = need_filed(flow)?;
    let mut url = format!(
        "{}/DocumentReference?patient={nhs}&_count=50",
        on.ctx.manifest.base_url
    );
    let mut seen = Vec::new();
    for _ in 0..MAX_PAGES {
        let a = p.get(&url, Some(on.token)).await?;
        status(&a, 200, "GET /DocumentReference")?;
        let v = a.json()?;
        seen.extend(
            v["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["resource"]["id"].as_str().map(str::to_owned)),
        );
        match v["link"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["relation"] == "next")
            .and_then(|l| l["url"].as_str())
        {
            Some(next) => url = next.to_owned(),
            None => break,
        }
    }
    for f in filed {
        ensure(seen.contains(&f.id), || {
            format!(
                "DocumentReference/{} is not in the patient's documents",
                f.id
            )
        })?;
    }
    let a = p
        .get(
            &format!(
                "{}/DocumentReference?patient={nhs}&type=http://snomed.info/sct|{CONSULTATION_REPORT}&_count=250",
                on.ctx.manifest.base_url
            ),
            Some(on.token),
        )
        .await?;
    status(&a, 200, "GET /DocumentReference with type")?;
    let v = a.json()?;
    let wrong = v["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["resource"]["type"]["coding"][0]["code"] != CONSULTATION_REPORT);
    ensure(wrong.is_none(), || {
        format!(
            "type={CONSULTATION_REPORT} answered another type: {}",
            wrong
                .map(|e| e["resource"]["type"].to_string())
                .unwrap_or_default()
        )
    })
}

async fn read_back(on: &On<'_>, flow: &Flow, p: &mut Probe) -> Check {
    let base = &on.ctx.manifest.base_url;
    for f in need_filed(flow)? {
        let auth = format!("Bearer {}", on.token);
        let a = p
            .send(
                "GET",
                &format!("{base}/Binary/{}", f.id),
                &[("accept", f.content_type), ("authorization", &auth)],
                b"",
            )
            .await?;
        status(&a, 200, "GET /Binary/{id}")?;
        ensure(
            a.header("content-type")
                .is_some_and(|t| t.starts_with(f.content_type)),
            || {
                format!(
                    "Binary/{} answered Content-Type {:?}, not {}",
                    f.id,
                    a.header("content-type"),
                    f.content_type
                )
            },
        )?;
        ensure(a.body[..] == f.bytes[..], || {
            format!(
                "Binary/{} answered {} bytes that differ from the {} filed",
                f.id,
                a.body.len(),
                f.bytes.len()
            )
        })?;
        let a = p
            .get(
                &format!("{base}/DocumentReference/{}", f.id),
                Some(on.token),
            )
            .await?;
        status(&a, 200, "GET /DocumentReference/{id}")?;
    }
    Ok(())
}

async fn retry(on: &On<'_>, flow: &Flow, p: &mut Probe) -> Check {
    let first = need_filed(flow)?
        .first()
        .ok_or_else(|| Verdict::Omit("not run: nothing filed".into()))?;
    let a = post(
        on,
        "DocumentReference",
        &[],
        &serde_json::to_vec(&first.body).unwrap_or_default(),
        p,
    )
    .await?;
    status(&a, 200, "the same POST /DocumentReference again")?;
    let v = a.json()?;
    ensure(v["id"] == first.id.as_str(), || {
        format!(
            "the retry answered DocumentReference/{}, not {}",
            v["id"], first.id
        )
    })
}

async fn refused(on: &On<'_>, body: Value, element: &str, p: &mut Probe) -> Check {
    let a = post(
        on,
        "DocumentReference",
        &[],
        &serde_json::to_vec(&body).unwrap_or_default(),
        p,
    )
    .await?;
    status(&a, 422, "the refused POST /DocumentReference")?;
    let v = a.json()?;
    ensure(v["issue"][0]["expression"][0] == element, || {
        format!(
            "issue[0].expression is {}, expected [{element}]",
            v["issue"][0]["expression"]
        )
    })
}

async fn wrong_type(on: &On<'_>, flow: &Flow, p: &mut Probe) -> Check {
    let nhs = need(flow)?;
    let body = document(
        nhs,
        json!({ "contentType": "application/pdf", "data": b64(b"not a PDF at all") }),
    );
    refused(
        on,
        body,
        "DocumentReference.content[0].attachment.contentType",
        p,
    )
    .await
}

async fn active_html(on: &On<'_>, flow: &Flow, p: &mut Probe) -> Check {
    let nhs = need(flow)?;
    for html in [
        "<p>Summary<img src=x onerror=alert(1)></p>",
        "<html><body><ScRiPt>alert(1)</sCrIpT></body></html>",
        "<p><a href=\"jav&#x61;script:alert(1)\">leaflet</a></p>",
    ] {
        let body = document(
            nhs,
            json!({ "contentType": "text/html", "data": b64(html.as_bytes()) }),
        );
        refused(on, body, "DocumentReference.content[0].attachment.data", p).await?;
    }
    Ok(())
}

async fn oversize(on: &On<'_>, flow: &Flow, p: &mut Probe) -> Check {
    let nhs = need(flow)?;
    let security = format!("Patient/{nhs}");
    let body = vec![b'a'; DEFAULT_MAX_UPLOAD + 1];
    let a = post(
        on,
        "Binary",
        &[
            ("content-type", "text/plain"),
            ("x-security-context", &security),
        ],
        &body,
        p,
    )
    .await?;
    status(&a, 413, "POST /Binary over the limit")
}

async fn unpaired(on: &On<'_>, p: &mut Probe) -> Check {
    let Some(patient) = on
        .ctx
        .manifest
        .patients
        .iter()
        .find(|x| x.flags.is_empty() && !on.sup.practices.contains(&x.practice))
    else {
        return Err(Verdict::Skip(format!(
            "{} is paired with every practice in the manifest",
            on.sup.client_id
        )));
    };
    let body = document(
        &patient.nhs_number,
        json!({ "contentType": "text/plain", "data": b64(b"Conformance kit") }),
    );
    let a = post(
        on,
        "DocumentReference",
        &[],
        &serde_json::to_vec(&body).unwrap_or_default(),
        p,
    )
    .await?;
    status(
        &a,
        404,
        "POST /DocumentReference for an unpaired practice's patient",
    )
}
