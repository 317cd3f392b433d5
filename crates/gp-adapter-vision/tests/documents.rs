#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Documents through the adapter, against the real Vision simulator on 127.0.0.1:0: the
//! document list, raw content (a 6 MB scan included), upload and filing with Vision's
//! FILING_KEY, and its refusals. Expectations come from the simulator's store (the
//! documents as held), never from the adapter's own mapping.

use bytes::Bytes;
use gp_adapter::harness::sim;
use gp_adapter::{
    Adapter, AdapterError, CallContext, ContentRequest, DocumentSearchRequest, FileDocumentRequest,
    NewDocument, UploadContentRequest, UtcDateTime,
};
use gp_adapter_vision::documents::map_documents;
use gp_adapter_vision::{VisionAdapter, VisionConfig};
use gp_fhir::{NhsNumber, OdsCode};
use gp_sim::date::SimDate;
use gp_sim::documents::{LARGE_DOCUMENT, SimDocument};
use gp_sim::{Fault, SimHandle, SimStore, SystemKind};

struct Practice {
    sim: SimHandle,
    store: SimStore,
    adapter: VisionAdapter,
    ods: OdsCode,
    /// Registered patients, those with a large scanned document first.
    patients: Vec<NhsNumber>,
}

/// A Vision practice where some patient has a large scanned document.
async fn practice() -> Practice {
    let population = sim::population();
    let store = SimStore::new(population.clone());
    let mut chosen = None;
    for p in population
        .practices
        .iter()
        .filter(|p| p.system == SystemKind::Vision)
    {
        let mut patients: Vec<String> = population
            .patients
            .iter()
            .filter(|x| x.practice == p.ods)
            .map(|x| x.nhs_number.clone())
            .collect();
        let large = |nhs: &String| {
            store
                .documents_of(SystemKind::Vision, &p.ods, nhs)
                .unwrap()
                .iter()
                .any(|d| d.size == LARGE_DOCUMENT)
        };
        patients.sort_by_key(|nhs| !large(nhs));
        if patients.first().is_some_and(large) {
            chosen = Some((p.ods.clone(), patients));
            break;
        }
    }
    let (ods, patients) = chosen.expect("a Vision practice with a large scanned document");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = gp_sim::start(SystemKind::Vision, store.clone(), listener)
        .await
        .unwrap();
    let adapter = VisionAdapter::new(VisionConfig::new(sim.base_url())).unwrap();
    Practice {
        sim,
        store,
        adapter,
        ods: OdsCode::parse(&ods).unwrap(),
        patients: patients
            .iter()
            .map(|n| NhsNumber::parse(n).unwrap())
            .collect(),
    }
}

fn ctx() -> CallContext {
    CallContext::new("documents-test")
}

/// A store UTC date-time as the adapter's.
fn utc(d: SimDate) -> UtcDateTime {
    let (hour, minute, second) = d.time.unwrap();
    UtcDateTime {
        year: d.year,
        month: d.month.unwrap(),
        day: d.day.unwrap(),
        hour,
        minute,
        second,
    }
}

impl Practice {
    fn held(&self, nhs: NhsNumber) -> Vec<SimDocument> {
        self.store
            .documents_of(SystemKind::Vision, self.ods.as_str(), &nhs.to_string())
            .unwrap()
    }

    async fn list(&self, nhs: NhsNumber) -> Result<Vec<gp_adapter::DocumentMeta>, AdapterError> {
        self.adapter
            .search_documents(&DocumentSearchRequest {
                nhs_number: nhs,
                practice: self.ods.clone(),
                context: ctx(),
            })
            .await
    }

    async fn content(&self, id: &str) -> Option<gp_adapter::DocumentContent> {
        self.adapter
            .read_content(&ContentRequest {
                practice: self.ods.clone(),
                content_id: id.into(),
                context: ctx(),
            })
            .await
            .unwrap()
    }

    async fn upload(&self, nhs: NhsNumber, bytes: &'static [u8]) -> String {
        let up = self
            .adapter
            .upload_content(&UploadContentRequest {
                nhs_number: nhs,
                practice: self.ods.clone(),
                content_type: "text/plain".into(),
                bytes: Bytes::from_static(bytes),
                context: ctx(),
            })
            .await
            .unwrap();
        assert_eq!(up.size, bytes.len() as u64);
        up.content_id
    }

    async fn file(
        &self,
        nhs: NhsNumber,
        content_id: &str,
        key: &str,
    ) -> Result<gp_adapter::Filed, AdapterError> {
        self.adapter
            .file_document(&FileDocumentRequest {
                nhs_number: nhs,
                practice: self.ods.clone(),
                document: NewDocument {
                    key: key.into(),
                    identifier: Some(("https://supplier.example/doc".into(), "oc-42".into())),
                    content_id: content_id.into(),
                    type_snomed: "371530004".into(),
                    type_display: "Clinical consultation report".into(),
                    title: "Online consultation | cough".into(),
                    created: UtcDateTime {
                        year: 2026,
                        month: 7,
                        day: 14,
                        hour: 8,
                        minute: 30,
                        second: 5,
                    },
                    author_ods: "Y90002".into(),
                    author_name: Some("Demo Consult Ltd".into()),
                },
                context: ctx(),
            })
            .await
    }
}

#[tokio::test]
async fn the_list_is_the_stores_documents_with_utc_times() {
    let p = practice().await;
    for &nhs in p.patients.iter().take(4) {
        let listed = p.list(nhs).await.unwrap();
        let held = p.held(nhs);
        assert_eq!(listed.len(), held.len());
        for (l, h) in listed.iter().zip(&held) {
            assert_eq!(l.id, h.number.to_string());
            assert_eq!(l.content_id, h.content_number.to_string());
            assert_eq!(l.nhs_number, nhs);
            assert_eq!(l.created, utc(h.created), "{}", h.title);
            assert_eq!(l.indexed, utc(h.received));
            assert_eq!(
                (l.type_snomed.as_str(), l.type_display.as_str()),
                (h.type_snomed.as_str(), h.type_term.as_str())
            );
            assert_eq!(l.title, h.title);
            assert_eq!(l.content_type, h.content_type);
            assert_eq!((l.size, l.sha1), (h.size, Some(h.sha1)));
            assert_eq!(l.author_ods, h.author_ods);
            assert_eq!(l.author_name, h.author_name);
            assert_eq!(l.workflow, h.workflow.code());
            assert_eq!(l.confidential, h.confidential);
            assert_eq!(l.identifier, None);
        }
    }
    let stranger = NhsNumber::parse("9000000009").unwrap();
    assert!(!p.patients.contains(&stranger));
    assert_eq!(p.list(stranger).await, Err(AdapterError::PatientNotFound));
}

#[tokio::test]
async fn content_is_byte_identical_including_a_6_mb_scan() {
    let p = practice().await;
    let nhs = p.patients[0];
    let listed = p.list(nhs).await.unwrap();
    assert!(listed.iter().any(|d| d.size == LARGE_DOCUMENT));
    for d in &listed {
        let got = p.content(&d.content_id).await.unwrap();
        let held = p
            .store
            .document_content(SystemKind::Vision, p.ods.as_str(), &d.content_id)
            .unwrap()
            .unwrap();
        assert_eq!(got.bytes.len() as u64, d.size);
        assert!(got.bytes == held.bytes, "content {} differs", d.content_id);
        assert_eq!(got.content_type, "application/pdf");
        assert_eq!(got.nhs_number, nhs);
        assert_eq!(got.confidential, d.confidential);
    }
    // Unknown content, and an id that is not a Vision number, are no content.
    assert_eq!(p.content("99999999999").await, None);
    assert_eq!(p.content("../patients").await, None);
}

#[tokio::test]
async fn upload_and_file_round_trip_and_a_retried_key_files_nothing_new() {
    let p = practice().await;
    let nhs = p.patients[1];
    let content = p.upload(nhs, b"Cough for three days; no fever.").await;
    let back = p.content(&content).await.unwrap();
    assert_eq!(&back.bytes[..], b"Cough for three days; no fever.");
    assert_eq!(back.content_type, "text/plain");
    let first = p.file(nhs, &content, "key-1").await.unwrap();
    assert!(first.created);
    let doc = &first.document;
    assert_eq!(doc.workflow, "awaiting-review");
    assert_eq!(
        doc.identifier,
        Some(("https://supplier.example/doc".into(), "oc-42".into()))
    );
    assert_eq!(doc.content_id, content);
    assert_eq!(doc.title, "Online consultation | cough");
    assert_eq!(
        doc.created.hour, 8,
        "the UTC time is kept through Vision's local time"
    );
    assert_eq!(doc.size, 31);
    let listed = p.list(nhs).await.unwrap();
    let found = listed.iter().find(|d| d.id == doc.id).unwrap();
    assert_eq!(found, doc);
    let again = p.file(nhs, &content, "key-1").await.unwrap();
    assert!(!again.created);
    assert_eq!(again.document.id, doc.id);
    assert_eq!(p.list(nhs).await.unwrap().len(), listed.len());
}

#[tokio::test]
async fn another_patients_or_unknown_content_is_refused() {
    let p = practice().await;
    let (a, b) = (p.patients[1], p.patients[2]);
    let content = p.upload(a, b"For patient A only").await;
    match p.file(b, &content, "key-b").await {
        Err(AdapterError::Unprocessable { detail, .. }) => {
            assert!(detail.contains("CONTENT_OF_ANOTHER_PATIENT"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    p.file(a, &content, "key-a").await.unwrap();
    match p.file(a, &content, "key-a2").await {
        Err(AdapterError::Unprocessable { detail, .. }) => {
            assert!(detail.contains("CONTENT_ALREADY_FILED"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    for unknown in ["99999999999", "not-a-number"] {
        assert!(
            matches!(
                p.file(a, unknown, "key-u").await,
                Err(AdapterError::NotFound { .. })
            ),
            "{unknown}"
        );
    }
    assert!(p.held(b).iter().all(|d| d.external_key.is_none()));
}

#[tokio::test]
async fn malformed_answers_are_invalid_native_data() {
    let p = practice().await;
    let nhs = p.patients[0];
    for fault in [Fault::Garbage, Fault::Truncated, Fault::MisEncoded] {
        p.sim.set_fault(fault);
        assert!(
            matches!(
                p.list(nhs).await,
                Err(AdapterError::InvalidNativeData { .. })
            ),
            "{fault:?}"
        );
    }
    p.sim.set_fault(Fault::None);
    // A row for another patient, or with a value the format does not allow, fails the
    // whole extract rather than giving part of it.
    let header = "DOC_ID|CONTENT_ID|PID|NHS_NUMBER|TYPE_SNOMED|TYPE_RUBRIC|TITLE|CREATED|RECEIVED|MIME_TYPE|SIZE|SHA1|AUTHOR_ODS|AUTHOR_NAME|WORKFLOW|CONFIDENTIAL|EXT_SYSTEM|EXT_ID|FILING_KEY";
    let good = format!(
        "7000001|7000002|P1|{nhs}|371530004|Clinical consultation report|Letter|20260714093000|20260714100000|application/pdf|12||||FILED|N|||"
    );
    let body = |rows: &[&str]| {
        let mut b = format!("{header}\r\n");
        for r in rows {
            b.push_str(r);
            b.push_str("\r\n");
        }
        b.push_str(&format!("EOF|{}\r\n", rows.len()));
        b
    };
    let listed = map_documents(body(&[&good]).as_bytes(), "document extract", nhs).unwrap();
    assert_eq!(listed[0].created.hour, 8, "14 July 09:30 BST is 08:30 UTC");
    for bad in [
        good.replace(&nhs.to_string(), "9000000009"),
        good.replace("|FILED|", "|LOST|"),
        good.replace("20260714093000", "2026-07-14"),
        good.replace("application/pdf", "image/png"),
        good.replace("7000001|", "abc|"),
        good.replace("|N|||", "|N|https://x.example||"),
        good.replace("|12|", "|twelve|"),
    ] {
        let err =
            map_documents(body(&[&good, &bad]).as_bytes(), "document extract", nhs).unwrap_err();
        assert!(
            matches!(
                AdapterError::from(err),
                AdapterError::InvalidNativeData { .. }
            ),
            "{bad}"
        );
    }
}
