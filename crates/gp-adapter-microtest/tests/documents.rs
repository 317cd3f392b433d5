#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Documents against the real Microtest Evolution simulator on 127.0.0.1:0: the list
//! is the store's own, content arrives byte for byte (a 6 MB scanned document too),
//! upload and filing round-trip with the supplier's identifier, a retried key files
//! nothing new, and the refusals. Expected values come from the simulator's store.

use bytes::Bytes;
use gp_adapter::documents::{
    ContentRequest, DocumentSearchRequest, FileDocumentRequest, NewDocument, UploadContentRequest,
};
use gp_adapter::harness::sim;
use gp_adapter::{Adapter, AdapterError, CallContext, UtcDateTime};
use gp_adapter_microtest::{MicrotestAdapter, MicrotestConfig};
use gp_fhir::{NhsNumber, OdsCode};
use gp_sim::documents::LARGE_DOCUMENT;
use gp_sim::{Fault, SimHandle, SimStore, SystemKind};

struct Fixture {
    sim: SimHandle,
    store: SimStore,
    adapter: MicrotestAdapter,
    ods: OdsCode,
    patients: Vec<NhsNumber>,
}

async fn start() -> Fixture {
    let population = sim::population();
    let practice = population
        .practices
        .iter()
        .find(|p| p.system == SystemKind::Microtest)
        .expect("a Microtest practice")
        .ods
        .clone();
    let patients = population
        .patients
        .iter()
        .filter(|p| p.practice == practice)
        .map(|p| NhsNumber::parse(&p.nhs_number).unwrap())
        .collect();
    let store = SimStore::new(population);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = gp_sim::start(SystemKind::Microtest, store.clone(), listener)
        .await
        .unwrap();
    let adapter = MicrotestAdapter::new(MicrotestConfig::new(sim.base_url())).unwrap();
    Fixture {
        sim,
        store,
        adapter,
        ods: OdsCode::parse(&practice).unwrap(),
        patients,
    }
}

fn ctx() -> CallContext {
    CallContext::new("documents-test")
}

impl Fixture {
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
            content_id: id.into(),
            context: ctx(),
        }
    }

    fn held(&self, nhs: NhsNumber) -> Vec<gp_sim::documents::SimDocument> {
        self.store
            .documents_of(SystemKind::Microtest, self.ods.as_str(), &nhs.to_string())
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
                identifier: Some(("https://supplier.example/documents".into(), key.into())),
                content_id: content_id.into(),
                type_snomed: "371530004".into(),
                type_display: "Clinical consultation report".into(),
                title: "Online consultation".into(),
                // 08:15 UTC in July: Evolution holds 09:15 BST.
                created: UtcDateTime {
                    year: 2026,
                    month: 7,
                    day: 14,
                    hour: 8,
                    minute: 15,
                    second: 0,
                },
                author_ods: "Y90002".into(),
                author_name: Some("Example Online Consultations".into()),
            },
            context: ctx(),
        }
    }
}

#[tokio::test]
async fn the_list_is_the_stores_documents_newest_first() {
    let fx = start().await;
    assert!(fx.adapter.manages_documents());
    let mut listed_any = false;
    for nhs in fx.patients.iter().take(15) {
        let listed = fx.adapter.search_documents(&fx.search(*nhs)).await.unwrap();
        let held = fx.held(*nhs);
        assert_eq!(listed.len(), held.len());
        for (l, h) in listed.iter().zip(&held) {
            assert_eq!((&l.id, &l.content_id), (&h.id, &h.content_id));
            assert_eq!(l.nhs_number, *nhs);
            assert_eq!((l.size, l.sha1), (h.size, Some(h.sha1)));
            assert_eq!((&l.type_snomed, &l.title), (&h.type_snomed, &h.title));
            assert_eq!(l.author_ods, h.author_ods);
            assert_eq!(l.confidential, h.confidential);
            assert_eq!(l.workflow, "filed");
            // Evolution sends UK local time; the store holds UTC.
            let c = h.created;
            assert_eq!(
                l.created.to_rfc3339()[..10],
                format!(
                    "{:04}-{:02}-{:02}",
                    c.year,
                    c.month.unwrap(),
                    c.day.unwrap()
                )[..10]
            );
            listed_any = true;
        }
    }
    assert!(listed_any, "some patient has documents");
    let unknown = NhsNumber::parse("9000000009").unwrap();
    assert_eq!(
        fx.adapter.search_documents(&fx.search(unknown)).await,
        Err(AdapterError::PatientNotFound)
    );
}

#[tokio::test]
async fn content_is_byte_identical_including_a_large_scan() {
    let fx = start().await;
    // A 6 MB scan uploaded through the adapter (over the simulator's usual body limit)…
    let scan = Bytes::from(gp_sim::documents::pdf(
        &["Scanned records"],
        Some(LARGE_DOCUMENT),
    ));
    let uploaded = fx
        .adapter
        .upload_content(&UploadContentRequest {
            nhs_number: fx.patients[0],
            practice: fx.ods.clone(),
            content_type: "application/pdf".into(),
            bytes: scan.clone(),
            context: ctx(),
        })
        .await
        .unwrap();
    assert_eq!(uploaded.size, LARGE_DOCUMENT);
    let mut ids = vec![uploaded.content_id];
    // …and any the practice holds already.
    ids.extend(
        fx.patients
            .iter()
            .flat_map(|n| fx.held(*n))
            .filter(|d| d.size == LARGE_DOCUMENT)
            .map(|d| d.content_id),
    );
    for id in ids {
        let content = fx
            .adapter
            .read_content(&fx.content(&id))
            .await
            .unwrap()
            .unwrap();
        let expected = fx
            .store
            .document_content(SystemKind::Microtest, fx.ods.as_str(), &id)
            .unwrap()
            .unwrap();
        assert_eq!(content.bytes.len() as u64, LARGE_DOCUMENT);
        assert!(content.bytes == expected.bytes, "bytes of {id} differ");
        assert_eq!(content.nhs_number.to_string(), expected.nhs);
        assert_eq!(content.content_type, "application/pdf");
        assert_eq!(content.confidential, expected.confidential);
    }
    assert_eq!(
        fx.adapter
            .read_content(&fx.content("no-such-content"))
            .await,
        Ok(None)
    );
    assert_eq!(
        fx.adapter.read_content(&fx.content("../etc")).await,
        Ok(None)
    );
}

#[tokio::test]
async fn upload_and_filing_round_trip_and_a_retry_files_nothing_new() {
    let fx = start().await;
    let nhs = fx.patients[0];
    let content_id = fx.upload(nhs, b"Consultation notes").await;
    let filed = fx
        .adapter
        .file_document(&fx.filing(nhs, "doc-key-1", &content_id))
        .await
        .unwrap();
    assert!(filed.created);
    assert_eq!(filed.document.content_id, content_id);
    assert_eq!(filed.document.workflow, "awaiting-review");
    assert_eq!(filed.document.created.to_rfc3339(), "2026-07-14T08:15:00Z");
    let listed = fx.adapter.search_documents(&fx.search(nhs)).await.unwrap();
    let mine = listed
        .iter()
        .find(|d| d.id == filed.document.id)
        .expect("the filed document is listed");
    assert_eq!(
        mine.identifier,
        Some((
            "https://supplier.example/documents".into(),
            "doc-key-1".into()
        ))
    );
    assert_eq!((mine.size, mine.workflow.as_str()), (18, "awaiting-review"));
    let read = fx
        .adapter
        .read_content(&fx.content(&content_id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&read.bytes[..], b"Consultation notes");

    let again = fx
        .adapter
        .file_document(&fx.filing(nhs, "doc-key-1", &content_id))
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.document.id, filed.document.id);
    assert_eq!(
        fx.adapter
            .search_documents(&fx.search(nhs))
            .await
            .unwrap()
            .len(),
        listed.len()
    );
}

#[tokio::test]
async fn refusals_are_the_documented_errors() {
    let fx = start().await;
    let (a, b) = (fx.patients[0], fx.patients[1]);
    let content_id = fx.upload(a, b"for patient a").await;
    let other = fx
        .adapter
        .file_document(&fx.filing(b, "doc-key-2", &content_id))
        .await;
    assert!(
        matches!(&other, Err(AdapterError::Unprocessable { detail, .. }) if detail.starts_with("CONTENT_OF_ANOTHER_PATIENT")),
        "{other:?}"
    );
    let unknown = fx
        .adapter
        .file_document(&fx.filing(a, "doc-key-3", "no-such-content"))
        .await;
    assert!(
        matches!(unknown, Err(AdapterError::NotFound { .. })),
        "{unknown:?}"
    );
    let nobody = fx
        .adapter
        .upload_content(&UploadContentRequest {
            nhs_number: NhsNumber::parse("9000000009").unwrap(),
            practice: fx.ods.clone(),
            content_type: "text/plain".into(),
            bytes: Bytes::from_static(b"x"),
            context: ctx(),
        })
        .await;
    assert_eq!(nobody, Err(AdapterError::PatientNotFound));
}

#[tokio::test]
async fn malformed_answers_are_invalid_native_data() {
    let fx = start().await;
    let nhs = fx.patients[0];
    let content_id = fx.upload(nhs, b"some words").await;
    for fault in [Fault::Garbage, Fault::Truncated] {
        fx.sim.set_fault(fault);
        let listed = fx.adapter.search_documents(&fx.search(nhs)).await;
        assert!(
            matches!(listed, Err(AdapterError::InvalidNativeData { .. })),
            "{fault:?}: {listed:?}"
        );
        // Raw content cut short is caught by its size header.
        let read = fx.adapter.read_content(&fx.content(&content_id)).await;
        if fault == Fault::Truncated {
            assert!(
                matches!(read, Err(AdapterError::InvalidNativeData { .. })),
                "{read:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_long_list_is_followed_across_pages() {
    let fx = start().await;
    let nhs = fx.patients[2];
    let page = gp_sim::microtest::DOCUMENT_PAGE_SIZE;
    for i in 0..page + 5 {
        let content_id = fx.upload(nhs, b"a page of notes").await;
        let key = format!("page-key-{i}");
        fx.adapter
            .file_document(&fx.filing(nhs, &key, &content_id))
            .await
            .unwrap();
    }
    let held = fx.held(nhs);
    assert!(held.len() > page);
    let listed = fx.adapter.search_documents(&fx.search(nhs)).await.unwrap();
    let listed: Vec<&str> = listed.iter().map(|d| d.id.as_str()).collect();
    let held: Vec<&str> = held.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(listed, held);
}
