#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The EMIS adapter's documents against the real EMIS simulator on 127.0.0.1:0.
//! Expectations come from the simulator's store (gp_sim), never from the adapter's own
//! mapping, so a wrong time conversion or a mixed-up id cannot cancel itself out.

use std::sync::Arc;

use bytes::Bytes;
use gp_adapter::harness::sim;
use gp_adapter::{
    Adapter, AdapterError, CallContext, ContentRequest, DocumentSearchRequest, FileDocumentRequest,
    NewDocument, UploadContentRequest, UtcDateTime,
};
use gp_adapter_emis::{EmisAdapter, EmisConfig};
use gp_fhir::{NhsNumber, OdsCode};
use gp_sim::documents::{LARGE_DOCUMENT, SimDocument};
use gp_sim::{Fault, SimHandle, SimStore, SystemKind};

struct Setup {
    store: SimStore,
    sim: SimHandle,
    adapter: Arc<EmisAdapter>,
    ods: OdsCode,
    nhs: NhsNumber,
    other: NhsNumber,
    /// A patient of the practice with generated documents (not every patient has some).
    with_documents: NhsNumber,
}

async fn setup() -> Setup {
    let population = sim::population();
    let patients = sim::fixture(&population, SystemKind::Emis).patients;
    let (nhs, ods) = patients[0].clone();
    let other = population
        .patients
        .iter()
        .find(|p| p.practice == ods.as_str() && p.nhs_number != nhs.to_string())
        .map(|p| NhsNumber::parse(&p.nhs_number).unwrap())
        .expect("a second patient at the practice");
    let neighbours: Vec<String> = population
        .patients
        .iter()
        .filter(|p| p.practice == ods.as_str())
        .map(|p| p.nhs_number.clone())
        .collect();
    let store = SimStore::new(population);
    let with_documents = neighbours
        .iter()
        .find(|n| {
            !store
                .documents_of(SystemKind::Emis, ods.as_str(), n)
                .unwrap()
                .is_empty()
        })
        .map(|n| NhsNumber::parse(n).unwrap())
        .expect("a patient with documents at the practice");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = gp_sim::start(SystemKind::Emis, store.clone(), listener)
        .await
        .unwrap();
    let adapter = Arc::new(EmisAdapter::new(EmisConfig::new(sim.base_url())).unwrap());
    Setup {
        store,
        sim,
        adapter,
        ods,
        nhs,
        other,
        with_documents,
    }
}

fn ctx() -> CallContext {
    CallContext::new("documents-test")
}

/// A store date-time (UTC) as the neutral UTC date-time.
fn utc(d: gp_sim::SimDate) -> UtcDateTime {
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

impl Setup {
    fn search(&self, nhs: NhsNumber) -> DocumentSearchRequest {
        DocumentSearchRequest {
            nhs_number: nhs,
            practice: self.ods.clone(),
            context: ctx(),
        }
    }

    fn content(&self, id: &str) -> ContentRequest {
        ContentRequest {
            practice: self.ods.clone(),
            content_id: id.to_owned(),
            context: ctx(),
        }
    }

    fn stored(&self, nhs: NhsNumber) -> Vec<SimDocument> {
        self.store
            .documents_of(SystemKind::Emis, self.ods.as_str(), &nhs.to_string())
            .unwrap()
    }

    async fn upload(&self, nhs: NhsNumber, bytes: &'static [u8]) -> String {
        self.adapter
            .upload_content(&UploadContentRequest {
                nhs_number: nhs,
                practice: self.ods.clone(),
                content_type: "text/plain".into(),
                bytes: Bytes::from_static(bytes),
                context: ctx(),
            })
            .await
            .unwrap()
            .content_id
    }

    fn filing(&self, nhs: NhsNumber, key: &str, content_id: &str) -> FileDocumentRequest {
        FileDocumentRequest {
            nhs_number: nhs,
            practice: self.ods.clone(),
            document: NewDocument {
                key: key.into(),
                identifier: Some(("https://supplier.example/docs".into(), key.into())),
                content_id: content_id.into(),
                type_snomed: "371530004".into(),
                type_display: "Clinical consultation report".into(),
                title: "Online consultation: sore throat".into(),
                // 08:30Z in July is 09:30 BST: EMIS must get (and give back) the instant.
                created: UtcDateTime {
                    year: 2026,
                    month: 7,
                    day: 14,
                    hour: 8,
                    minute: 30,
                    second: 0,
                },
                author_ods: "Y90002".into(),
                author_name: Some("Example Consult Ltd".into()),
            },
            context: ctx(),
        }
    }
}

#[tokio::test]
async fn the_list_is_the_stores_documents_newest_first() {
    let s = setup().await;
    assert!(s.adapter.manages_documents());
    let listed = s
        .adapter
        .search_documents(&s.search(s.with_documents))
        .await
        .unwrap();
    let stored = s.stored(s.with_documents);
    assert!(!stored.is_empty());
    assert_eq!(listed.len(), stored.len());
    for (l, d) in listed.iter().zip(&stored) {
        assert_eq!(l.id, d.id);
        assert_eq!(l.content_id, d.content_id);
        assert_eq!(l.nhs_number, s.with_documents);
        assert_eq!(l.created, utc(d.created), "{}", d.id);
        assert_eq!(l.indexed, utc(d.received), "{}", d.id);
        assert_eq!(
            (l.type_snomed.as_str(), l.type_display.as_str()),
            (d.type_snomed.as_str(), d.type_term.as_str())
        );
        assert_eq!(l.title, d.title);
        assert_eq!(l.content_type, d.content_type);
        assert_eq!(l.size, d.size);
        assert_eq!(l.sha1, Some(d.sha1));
        assert_eq!(l.author_ods, d.author_ods);
        assert_eq!(l.author_name, d.author_name);
        assert_eq!(l.workflow, d.workflow.code());
        assert_eq!(l.confidential, d.confidential);
    }
    let unknown = NhsNumber::parse("9000000017").unwrap();
    assert_eq!(
        s.adapter.search_documents(&s.search(unknown)).await,
        Err(AdapterError::PatientNotFound)
    );
}

#[tokio::test]
async fn content_is_byte_identical_even_when_large() {
    let s = setup().await;
    // One patient in twenty has a large scanned document: a larger population than the
    // sandbox's has some at an EMIS practice.
    let population = gp_sim::Population::generate(
        sim::SEED,
        &gp_sim::PopulationSpec {
            patients_per_practice: 80,
            ..gp_sim::PopulationSpec::sandbox()
        },
    );
    let big_store = SimStore::new(population.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let big_sim = gp_sim::start(SystemKind::Emis, big_store.clone(), listener)
        .await
        .unwrap();
    let big = EmisAdapter::new(EmisConfig::new(big_sim.base_url())).unwrap();
    let (large_ods, large) = population
        .patients
        .iter()
        .filter(|p| {
            population
                .practice(&p.practice)
                .is_some_and(|pr| pr.system == SystemKind::Emis)
        })
        .flat_map(|p| {
            big_store
                .documents_of(SystemKind::Emis, &p.practice, &p.nhs_number)
                .unwrap()
                .into_iter()
                .map(|d| (p.practice.clone(), d))
        })
        .find(|(_, d)| d.size == LARGE_DOCUMENT)
        .expect("a large scanned document at an EMIS practice");
    let want = big_store
        .document_content(SystemKind::Emis, &large_ods, &large.content_id)
        .unwrap()
        .unwrap();
    let got = big
        .read_content(&ContentRequest {
            practice: OdsCode::parse(&large_ods).unwrap(),
            content_id: large.content_id.clone(),
            context: ctx(),
        })
        .await
        .unwrap()
        .expect("the large content");
    assert_eq!(got.bytes.len() as u64, LARGE_DOCUMENT);
    assert!(got.bytes == want.bytes, "byte-identical large content");
    assert_eq!(got.content_type, "application/pdf");

    let small = s.stored(s.with_documents)[0].clone();
    {
        let (ods, d) = (s.ods.as_str().to_owned(), small);
        let want = s
            .store
            .document_content(SystemKind::Emis, &ods, &d.content_id)
            .unwrap()
            .unwrap();
        let got = s
            .adapter
            .read_content(&ContentRequest {
                practice: OdsCode::parse(&ods).unwrap(),
                content_id: d.content_id.clone(),
                context: ctx(),
            })
            .await
            .unwrap()
            .expect("the content");
        assert_eq!(got.bytes.len(), want.bytes.len());
        assert!(
            got.bytes == want.bytes,
            "byte-identical content of {}",
            d.id
        );
        assert_eq!(got.content_type, d.content_type);
        assert_eq!(got.nhs_number.to_string(), d.nhs);
        assert_eq!(got.confidential, d.confidential);
    }
    assert_eq!(
        s.adapter
            .read_content(&s.content("00000000-0000-4000-8000-000000000000"))
            .await,
        Ok(None),
        "unknown content"
    );
    assert_eq!(
        s.adapter.read_content(&s.content("../../x")).await,
        Ok(None),
        "an id never given out names nothing"
    );
}

#[tokio::test]
async fn an_upload_files_once_and_lists_awaiting_review() {
    let s = setup().await;
    let content_id = s.upload(s.nhs, b"Sore throat for a week.").await;
    let req = s.filing(s.nhs, "doc-key-1", &content_id);
    let filed = s.adapter.file_document(&req).await.unwrap();
    assert!(filed.created);
    assert_eq!(filed.document.content_id, content_id);
    assert_eq!(filed.document.workflow, "awaiting-review");
    assert_eq!(filed.document.created, req.document.created);
    assert_eq!(filed.document.size, 23);

    let stored = s.stored(s.nhs);
    let d = stored.iter().find(|d| d.id == filed.document.id).unwrap();
    assert_eq!(
        d.external_id.as_ref().map(|e| e.value.as_str()),
        Some("doc-key-1")
    );
    let listed = s.adapter.search_documents(&s.search(s.nhs)).await.unwrap();
    let l = listed.iter().find(|l| l.id == filed.document.id).unwrap();
    assert_eq!(
        l.identifier,
        Some(("https://supplier.example/docs".into(), "doc-key-1".into()))
    );
    assert_eq!(l.workflow, "awaiting-review");
    assert_eq!(
        l.created, req.document.created,
        "UK local time read back as UTC"
    );
    assert_eq!(l.author_ods.as_deref(), Some("Y90002"));

    let again = s.adapter.file_document(&req).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.document.id, filed.document.id);
    assert_eq!(s.stored(s.nhs).len(), stored.len(), "filed once");

    let got = s
        .adapter
        .read_content(&s.content(&content_id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got.bytes[..], b"Sore throat for a week.");

    // Filed already, under another key.
    match s
        .adapter
        .file_document(&s.filing(s.nhs, "doc-key-2", &content_id))
        .await
    {
        Err(AdapterError::Unprocessable { detail, .. }) => {
            assert!(detail.contains("ATTACHMENT_ALREADY_FILED"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn another_patients_or_unknown_content_is_refused() {
    let s = setup().await;
    let theirs = s.upload(s.other, b"Someone else's letter").await;
    match s
        .adapter
        .file_document(&s.filing(s.nhs, "doc-key-3", &theirs))
        .await
    {
        Err(AdapterError::Unprocessable { detail, .. }) => {
            assert!(detail.contains("ATTACHMENT_PATIENT_MISMATCH"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        !s.stored(s.nhs)
            .iter()
            .any(|d| d.external_key.as_deref() == Some("doc-key-3"))
    );
    assert!(matches!(
        s.adapter
            .file_document(&s.filing(s.nhs, "doc-key-4", "00000000-0000-4000-8000-000000000000"))
            .await,
        Err(AdapterError::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_large_upload_goes_through_whole() {
    let s = setup().await;
    let big: Vec<u8> = (0..6 * 1024 * 1024 + 7).map(|i| (i % 251) as u8).collect();
    let bytes = Bytes::from(big);
    let up = s
        .adapter
        .upload_content(&UploadContentRequest {
            nhs_number: s.nhs,
            practice: s.ods.clone(),
            content_type: "application/pdf".into(),
            bytes: bytes.clone(),
            context: ctx(),
        })
        .await
        .unwrap();
    assert_eq!(up.size, bytes.len() as u64);
    let stored = s
        .store
        .document_content(SystemKind::Emis, s.ods.as_str(), &up.content_id)
        .unwrap()
        .unwrap();
    assert!(stored.bytes == bytes);
}

#[tokio::test]
async fn a_garbled_answer_is_invalid_native_data() {
    let s = setup().await;
    s.sim.set_fault(Fault::Truncated);
    assert!(matches!(
        s.adapter.search_documents(&s.search(s.nhs)).await,
        Err(AdapterError::InvalidNativeData { .. })
    ));
    s.sim.set_fault(Fault::Garbage);
    assert!(matches!(
        s.adapter.search_documents(&s.search(s.nhs)).await,
        Err(AdapterError::InvalidNativeData { .. })
    ));
    s.sim.set_fault(Fault::None);
}
