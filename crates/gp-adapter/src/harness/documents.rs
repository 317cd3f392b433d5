//! Document checks (`ADP-DOC-*`, the `documents` group of the shared suite): a patient's
//! documents list with sound metadata, their content reads back as listed, content
//! uploaded and filed reads back byte for byte with the supplier's identifier, a retried
//! filing files once, and unknowns are typed errors. An adapter that answers
//! `NotSupported` for documents has them all reported as skipped.
//!
//! The checks file into the record of `fixture.patients[0]`: point them at a simulator
//! (or a vendor test system), never at a live one.

use bytes::Bytes;
use gp_fhir::{NhsNumber, OdsCode};

use super::appointments::{from_unix_seconds, now};
use super::{HarnessFixture, HarnessReport, ctx};
use crate::documents::{CONTENT_TYPES, DocumentMeta};
use crate::{
    Adapter, AdapterError, ContentRequest, DocumentSearchRequest, FileDocumentRequest, NewDocument,
    UploadContentRequest,
};

/// The identifier space documents are filed with, as a supplier's.
pub const DOCUMENTS_SYSTEM: &str = "https://harness.example/documents";

/// The ODS code documents are filed by (a supplier's).
pub const FILED_BY: &str = "Y90002";

const CHECKS: &[(&str, &str)] = &[
    (
        "ADP-DOC-01",
        "a patient's documents list with sound metadata, newest first",
    ),
    (
        "ADP-DOC-02",
        "listed content reads back as listed (type, size, hash, patient)",
    ),
    (
        "ADP-DOC-03",
        "uploaded and filed content reads back byte for byte, with the supplier's identifier, awaiting review",
    ),
    (
        "ADP-DOC-04",
        "a retried filing (same key) files nothing and answers the same document",
    ),
    (
        "ADP-DOC-05",
        "a 6 MB PDF uploads and reads back byte for byte",
    ),
    (
        "ADP-DOC-06",
        "unknown content is None; filing it is NotFound; content filed twice under another key is refused",
    ),
    ("ADP-DOC-07", "an unknown patient is PatientNotFound"),
];

struct Scene<'a> {
    adapter: &'a dyn Adapter,
    patient: NhsNumber,
    practice: OdsCode,
    run: i64,
}

impl Scene<'_> {
    async fn list(&self, nhs: NhsNumber) -> Result<Vec<DocumentMeta>, AdapterError> {
        self.adapter
            .search_documents(&DocumentSearchRequest {
                nhs_number: nhs,
                practice: self.practice.clone(),
                context: ctx(),
            })
            .await
    }

    async fn content(&self, id: &str) -> Result<Option<crate::DocumentContent>, AdapterError> {
        self.adapter
            .read_content(&ContentRequest {
                practice: self.practice.clone(),
                content_id: id.to_owned(),
                context: ctx(),
            })
            .await
    }

    async fn upload(
        &self,
        content_type: &str,
        bytes: Bytes,
    ) -> Result<crate::Uploaded, AdapterError> {
        self.adapter
            .upload_content(&UploadContentRequest {
                nhs_number: self.patient,
                practice: self.practice.clone(),
                content_type: content_type.to_owned(),
                bytes,
                context: ctx(),
            })
            .await
    }

    fn document(&self, key: &str, content_id: &str) -> NewDocument {
        NewDocument {
            key: key.to_owned(),
            identifier: Some((DOCUMENTS_SYSTEM.to_owned(), key.to_owned())),
            content_id: content_id.to_owned(),
            type_snomed: "371530004".into(),
            type_display: "Clinical consultation report".into(),
            title: "Online consultation summary".into(),
            created: from_unix_seconds(self.run - 600),
            author_ods: FILED_BY.into(),
            author_name: Some("Harness Online Consultations Ltd".into()),
        }
    }

    async fn file(&self, document: NewDocument) -> Result<crate::Filed, AdapterError> {
        self.adapter
            .file_document(&FileDocumentRequest {
                nhs_number: self.patient,
                practice: self.practice.clone(),
                document,
                context: ctx(),
            })
            .await
    }
}

/// SHA-1 is not in this crate: compare sizes and bytes instead, and hashes only between
/// two answers of the adapter.
fn metadata_failures(d: &DocumentMeta, patient: NhsNumber) -> Vec<String> {
    let mut out = Vec::new();
    let id_ok = |s: &str| {
        (1..=56).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    };
    if !id_ok(&d.id) || !id_ok(&d.content_id) {
        out.push(format!(
            "document ids must be [A-Za-z0-9.-]{{1,56}}: {:?} / {:?}",
            d.id, d.content_id
        ));
    }
    if d.nhs_number != patient {
        out.push(format!(
            "document {} belongs to {}, not the patient asked for",
            d.id, d.nhs_number
        ));
    }
    if !CONTENT_TYPES.contains(&d.content_type.as_str()) {
        out.push(format!(
            "document {} has content type {:?}",
            d.id, d.content_type
        ));
    }
    if d.size == 0 || d.title.trim().is_empty() || d.type_snomed.is_empty() {
        out.push(format!("document {} lacks a size, title or type", d.id));
    }
    if !matches!(d.workflow.as_str(), "awaiting-review" | "filed") {
        out.push(format!("document {} has workflow {:?}", d.id, d.workflow));
    }
    out
}

/// Runs the document checks against `fixture.patients[0]`.
pub async fn run_documents(adapter: &dyn Adapter, fixture: &HarnessFixture) -> HarnessReport {
    let mut report = HarnessReport::default();
    let Some((patient, practice)) = fixture.patients.first().cloned() else {
        report.add(
            "ADP-DOC-00",
            "the fixture names a patient to file for",
            vec!["fixture.patients is empty".into()],
        );
        return report;
    };
    let scene = Scene {
        adapter,
        patient,
        practice,
        run: now(),
    };
    let listed = scene.list(patient).await;
    let unsupported = matches!(listed, Err(AdapterError::NotSupported { .. }));
    if unsupported == adapter.manages_documents() {
        report.add(
            "ADP-DOC-00",
            "manages_documents() agrees with what the document methods do",
            vec![format!(
                "manages_documents() is {} but search_documents answered {}",
                adapter.manages_documents(),
                if unsupported {
                    "NotSupported"
                } else {
                    "as an implemented method"
                }
            )],
        );
        return report;
    }
    if let Err(AdapterError::NotSupported { what, .. }) = &listed {
        let why = format!("the adapter does not support {what}");
        for (id, what) in CHECKS {
            report.skip(id, what, &why);
        }
        return report;
    }
    report.add(
        "ADP-DOC-00",
        "manages_documents() agrees with what the document methods do",
        Vec::new(),
    );

    // 01: the list.
    let listed = match listed {
        Ok(l) => l,
        Err(e) => {
            report.add(
                CHECKS[0].0,
                CHECKS[0].1,
                vec![format!("search_documents failed: {e}")],
            );
            return report;
        }
    };
    let mut failures: Vec<String> = listed
        .iter()
        .flat_map(|d| metadata_failures(d, patient))
        .collect();
    if listed.windows(2).any(|w| w[0].created < w[1].created) {
        failures.push("documents are not newest first".into());
    }
    report.add(CHECKS[0].0, CHECKS[0].1, failures);

    // 02: content of the smallest few reads back as listed.
    let mut small: Vec<&DocumentMeta> = listed.iter().collect();
    small.sort_by_key(|d| d.size);
    let mut failures = Vec::new();
    for d in small.into_iter().take(3) {
        match scene.content(&d.content_id).await {
            Ok(Some(c)) => {
                if c.content_type != d.content_type
                    || c.bytes.len() as u64 != d.size
                    || c.nhs_number != patient
                {
                    failures.push(format!(
                        "content {} reads back as {} bytes of {} for {}, listed as {} bytes of {}",
                        d.content_id,
                        c.bytes.len(),
                        c.content_type,
                        c.nhs_number,
                        d.size,
                        d.content_type
                    ));
                }
            }
            Ok(None) => failures.push(format!("listed content {} reads as unknown", d.content_id)),
            Err(e) => failures.push(format!("content {}: {e}", d.content_id)),
        }
    }
    report.add(CHECKS[1].0, CHECKS[1].1, failures);

    // 03 and 04: upload, file, list, read back; retry.
    let key = format!("harness-doc-{}", scene.run);
    let text = Bytes::from(format!(
        "Online consultation summary {}\nNo red flags.\n",
        scene.run
    ));
    let mut failures = Vec::new();
    let mut filed_id = None;
    let mut uploaded_id = None;
    match scene.upload("text/plain", text.clone()).await {
        Err(e) => failures.push(format!("upload_content failed: {e}")),
        Ok(up) => {
            uploaded_id = Some(up.content_id.clone());
            if up.size != text.len() as u64 {
                failures.push(format!(
                    "the upload recorded {} bytes, not {}",
                    up.size,
                    text.len()
                ));
            }
            match scene.file(scene.document(&key, &up.content_id)).await {
                Err(e) => failures.push(format!("file_document failed: {e}")),
                Ok(f) => {
                    let d = &f.document;
                    filed_id = Some(d.id.clone());
                    if !f.created {
                        failures.push("a first filing answered created: false".into());
                    }
                    if d.identifier != Some((DOCUMENTS_SYSTEM.to_owned(), key.clone())) {
                        failures.push(format!(
                            "the filed document has identifier {:?}",
                            d.identifier
                        ));
                    }
                    if d.workflow != "awaiting-review" || d.author_ods.as_deref() != Some(FILED_BY)
                    {
                        failures.push(format!(
                            "the filed document is {:?} by {:?}, not awaiting-review by {FILED_BY}",
                            d.workflow, d.author_ods
                        ));
                    }
                    failures.extend(metadata_failures(d, patient));
                    match scene.list(patient).await {
                        Ok(l) if l.iter().filter(|x| x.id == d.id).count() == 1 => {}
                        Ok(_) => failures.push(format!("document {} is not listed once", d.id)),
                        Err(e) => failures.push(format!("listing after filing failed: {e}")),
                    }
                    match scene.content(&d.content_id).await {
                        Ok(Some(c)) if c.bytes == text && c.content_type == "text/plain" => {}
                        Ok(other) => failures.push(format!(
                            "the filed content reads back as {:?}",
                            other.map(|c| (c.content_type, c.bytes.len()))
                        )),
                        Err(e) => failures.push(format!("reading the filed content failed: {e}")),
                    }
                }
            }
        }
    }
    report.add(CHECKS[2].0, CHECKS[2].1, failures);
    let mut failures = Vec::new();
    match (&uploaded_id, &filed_id) {
        (Some(up), Some(id)) => match scene.file(scene.document(&key, up)).await {
            Ok(f) if !f.created && f.document.id == *id => {}
            Ok(f) => failures.push(format!(
                "the retry answered created: {} and document {} (first: {id})",
                f.created, f.document.id
            )),
            Err(e) => failures.push(format!("the retry failed: {e}")),
        },
        _ => failures.push("nothing was filed to retry".into()),
    }
    report.add(CHECKS[3].0, CHECKS[3].1, failures);

    // 05: a large PDF.
    let mut pdf = b"%PDF-1.4\n".to_vec();
    pdf.resize(6 * 1024 * 1024, b'%');
    pdf.extend_from_slice(b"\n%%EOF\n");
    let pdf = Bytes::from(pdf);
    let mut failures = Vec::new();
    match scene.upload("application/pdf", pdf.clone()).await {
        Ok(up) => match scene.content(&up.content_id).await {
            Ok(Some(c)) if c.bytes == pdf => {}
            Ok(other) => failures.push(format!(
                "the 6 MB PDF reads back as {:?} bytes",
                other.map(|c| c.bytes.len())
            )),
            Err(e) => failures.push(format!("reading the 6 MB PDF failed: {e}")),
        },
        Err(e) => failures.push(format!("uploading a 6 MB PDF failed: {e}")),
    }
    report.add(CHECKS[4].0, CHECKS[4].1, failures);

    // 06: unknowns and refusals.
    let mut failures = Vec::new();
    match scene.content("0000000000").await {
        Ok(None) => {}
        other => failures.push(format!("unknown content answered {other:?}")),
    }
    match scene
        .file(scene.document(&format!("{key}-x"), "0000000000"))
        .await
    {
        Err(AdapterError::NotFound { .. }) => {}
        other => failures.push(format!("filing unknown content answered {other:?}")),
    }
    if let Some(up) = &uploaded_id {
        match scene
            .file(scene.document(&format!("{key}-again"), up))
            .await
        {
            Err(AdapterError::Unprocessable { .. }) => {}
            other => failures.push(format!(
                "filing content already filed, under another key, answered {other:?}"
            )),
        }
    }
    report.add(CHECKS[5].0, CHECKS[5].1, failures);

    // 07: unknown patient.
    let (unknown, at) = fixture.unknown.clone();
    let answer = adapter
        .search_documents(&DocumentSearchRequest {
            nhs_number: unknown,
            practice: at,
            context: ctx(),
        })
        .await;
    let failures = match answer {
        Err(AdapterError::PatientNotFound) => Vec::new(),
        other => vec![format!("an unknown patient's documents answered {other:?}")],
    };
    report.add(CHECKS[6].0, CHECKS[6].1, failures);
    report
}
