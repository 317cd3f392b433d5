#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! SystmOne's patient documents through the adapter, against the real simulator on
//! 127.0.0.1:0. Expectations come from the simulator's shared document store, which
//! knows nothing of the adapter's mapping.

use std::sync::Arc;

use bytes::Bytes;
use gp_adapter::documents::{
    ContentRequest, DocumentSearchRequest, FileDocumentRequest, NewDocument, UploadContentRequest,
};
use gp_adapter::time::UtcDateTime;
use gp_adapter::{Adapter, AdapterError, CallContext};
use gp_adapter_tpp::{TppAdapter, TppConfig};
use gp_fhir::{NhsNumber, OdsCode};
use gp_sim::documents::LARGE_DOCUMENT;
use gp_sim::{SimHandle, SimStore, SystemKind};

struct Env {
    _sim: SimHandle,
    store: SimStore,
    adapter: Arc<TppAdapter>,
    ods: OdsCode,
    patients: Vec<NhsNumber>,
}

async fn env() -> Env {
    env_at(|_, _| true).await
}

/// The first SystmOne practice `pick` accepts (given the store and the ODS code).
async fn env_at(pick: impl Fn(&SimStore, &str) -> bool) -> Env {
    let population = gp_adapter::harness::sim::population();
    let store = SimStore::new(population.clone());
    let practice = population
        .practices
        .iter()
        .find(|p| p.system == SystemKind::Tpp && pick(&store, &p.ods))
        .expect("a SystmOne practice as the test needs")
        .clone();
    let patients = population
        .patients
        .iter()
        .filter(|p| p.practice == practice.ods)
        .map(|p| NhsNumber::parse(&p.nhs_number).unwrap())
        .collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = gp_sim::start(SystemKind::Tpp, store.clone(), listener)
        .await
        .unwrap();
    let adapter = Arc::new(TppAdapter::new(TppConfig::new(sim.base_url())).unwrap());
    Env {
        _sim: sim,
        store,
        adapter,
        ods: OdsCode::parse(&practice.ods).unwrap(),
        patients,
    }
}

/// True when a patient of practice `ods` has a large scanned document.
fn has_large(store: &SimStore, ods: &str) -> bool {
    let patients: Vec<String> = store.read(|p| {
        p.patients
            .iter()
            .filter(|x| x.practice == ods)
            .map(|x| x.nhs_number.clone())
            .collect()
    });
    patients.iter().any(|nhs| {
        store
            .documents_of(SystemKind::Tpp, ods, nhs)
            .unwrap()
            .iter()
            .any(|d| d.size == LARGE_DOCUMENT)
    })
}

fn ctx() -> CallContext {
    CallContext::new("t")
}

impl Env {
    fn held(&self, nhs: NhsNumber) -> Vec<gp_sim::documents::SimDocument> {
        self.store
            .documents_of(SystemKind::Tpp, self.ods.as_str(), &nhs.to_string())
            .unwrap()
    }

    async fn list(&self, nhs: NhsNumber) -> Vec<gp_adapter::documents::DocumentMeta> {
        self.adapter
            .search_documents(&DocumentSearchRequest {
                nhs_number: nhs,
                practice: self.ods.clone(),
                context: ctx(),
            })
            .await
            .unwrap()
    }

    async fn read(&self, id: &str) -> Option<gp_adapter::documents::DocumentContent> {
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

    async fn file(
        &self,
        nhs: NhsNumber,
        key: &str,
        content_id: &str,
    ) -> Result<gp_adapter::documents::Filed, AdapterError> {
        self.adapter
            .file_document(&FileDocumentRequest {
                nhs_number: nhs,
                practice: self.ods.clone(),
                document: new_document(key, content_id),
                context: ctx(),
            })
            .await
    }
}

fn new_document(key: &str, content_id: &str) -> NewDocument {
    NewDocument {
        key: key.into(),
        identifier: Some(("https://supplier.example/consultations".into(), key.into())),
        content_id: content_id.into(),
        type_snomed: "371530004".into(),
        type_display: "Clinical consultation report".into(),
        title: "Online consultation: sore throat".into(),
        created: UtcDateTime {
            year: 2026,
            month: 11,
            day: 30,
            hour: 16,
            minute: 5,
            second: 9,
        },
        author_ods: "X26".into(),
        author_name: Some("Example Online Consultations Ltd".into()),
    }
}

#[tokio::test]
async fn the_list_is_the_store_documents_in_its_order() {
    let env = env().await;
    let nhs = env.patients[0];
    let held = env.held(nhs);
    assert!(!held.is_empty());
    let listed = env.list(nhs).await;
    assert_eq!(listed.len(), held.len());
    for (meta, doc) in listed.iter().zip(&held) {
        assert_eq!(meta.id, doc.number.to_string());
        assert_eq!(meta.content_id, doc.content_number.to_string());
        assert_eq!(meta.nhs_number, nhs);
        assert_eq!(meta.title, doc.title);
        assert_eq!(meta.type_snomed, doc.type_snomed);
        assert_eq!(meta.type_display, doc.type_term);
        assert_eq!(meta.content_type, doc.content_type);
        assert_eq!(meta.size, doc.size);
        assert_eq!(meta.sha1, Some(doc.sha1));
        assert_eq!(meta.author_ods, doc.author_ods);
        assert_eq!(meta.author_name, doc.author_name);
        assert_eq!(meta.confidential, doc.confidential);
        assert_eq!(meta.workflow, doc.workflow.code());
        let created = doc.created;
        assert_eq!(
            (meta.created.year, meta.created.month, meta.created.day),
            (created.year, created.month.unwrap(), created.day.unwrap())
        );
        assert_eq!(
            Some((meta.created.hour, meta.created.minute, meta.created.second)),
            created.time
        );
    }
}

#[tokio::test]
async fn content_is_byte_identical_even_when_large() {
    // A practice holding a large scanned document, when the population has one.
    let probe = SimStore::new(gp_adapter::harness::sim::population());
    let tpp: Vec<String> = probe.read(|p| {
        p.practices
            .iter()
            .filter(|x| x.system == SystemKind::Tpp)
            .map(|x| x.ods.clone())
            .collect()
    });
    let any_large = tpp.iter().any(|ods| has_large(&probe, ods));
    let env = if any_large {
        env_at(has_large).await
    } else {
        env().await
    };

    // A 6 MB upload (over the simulator's usual 256 KiB body limit) comes back as sent.
    let nhs = env.patients[0];
    let large = Bytes::from(gp_sim::documents::pdf(
        &["Scanned upload"],
        Some(LARGE_DOCUMENT),
    ));
    assert_eq!(large.len() as u64, LARGE_DOCUMENT);
    let uploaded = env
        .adapter
        .upload_content(&UploadContentRequest {
            nhs_number: nhs,
            practice: env.ods.clone(),
            content_type: "application/pdf".into(),
            bytes: large.clone(),
            context: ctx(),
        })
        .await
        .unwrap();
    assert_eq!(uploaded.size, LARGE_DOCUMENT);
    let got = env.read(&uploaded.content_id).await.unwrap();
    assert!(got.bytes == large, "uploaded content differs");
    assert_eq!(got.content_type, "application/pdf");
    assert_eq!(got.nhs_number, nhs);

    // Every document the practice holds is served byte for byte.
    let mut large_held = 0;
    for nhs in env.patients.clone() {
        for doc in env.held(nhs) {
            let want = env
                .store
                .document_content(SystemKind::Tpp, env.ods.as_str(), &doc.content_id)
                .unwrap()
                .unwrap();
            let got = env.read(&doc.content_number.to_string()).await.unwrap();
            assert!(
                got.bytes == want.bytes,
                "content {} differs",
                doc.content_number
            );
            assert_eq!(got.bytes.len() as u64, doc.size);
            assert_eq!(got.nhs_number, nhs);
            assert_eq!(got.content_type, doc.content_type);
            assert_eq!(got.confidential, doc.confidential);
            if doc.size == LARGE_DOCUMENT {
                large_held += 1;
            }
        }
    }
    assert_eq!(large_held > 0, any_large);
}

#[tokio::test]
async fn unknown_content_is_none() {
    let env = env().await;
    assert_eq!(env.read("987654321").await, None);
    // Not a SystmOne ContentID at all: no such content either.
    assert_eq!(env.read("not-a-number").await, None);
}

#[tokio::test]
async fn an_upload_filed_is_listed_awaiting_review_and_a_retry_files_nothing() {
    let env = env().await;
    let nhs = env.patients[0];
    let before = env.list(nhs).await.len();
    let content_id = env.upload(nhs, b"Sore throat for three days.").await;
    let read = env.read(&content_id).await.unwrap();
    assert_eq!(
        read.bytes,
        Bytes::from_static(b"Sore throat for three days.")
    );
    assert_eq!(read.nhs_number, nhs);

    let filed = env.file(nhs, "key-1", &content_id).await.unwrap();
    assert!(filed.created);
    assert_eq!(filed.document.workflow, "awaiting-review");
    assert_eq!(filed.document.content_id, content_id);
    let listed = env.list(nhs).await;
    assert_eq!(listed.len(), before + 1);
    let mine = listed.iter().find(|d| d.id == filed.document.id).unwrap();
    assert_eq!(
        mine.identifier,
        Some((
            "https://supplier.example/consultations".into(),
            "key-1".into()
        ))
    );
    assert_eq!(mine.workflow, "awaiting-review");
    assert_eq!(mine.title, "Online consultation: sore throat");
    assert_eq!(mine.created, new_document("key-1", "1").created);
    assert_eq!(mine.author_ods.as_deref(), Some("X26"));

    let again = env.file(nhs, "key-1", &content_id).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.document.id, filed.document.id);
    assert_eq!(env.list(nhs).await.len(), before + 1);

    // Filed already, under another key.
    assert!(matches!(
        env.file(nhs, "key-2", &content_id).await,
        Err(AdapterError::Unprocessable { .. })
    ));
}

#[tokio::test]
async fn another_patients_content_and_unknown_content_are_refused() {
    let env = env().await;
    let (a, b) = (env.patients[0], env.patients[1]);
    let theirs = env.upload(b, b"Someone else's letter.").await;
    let refused = env.file(a, "key-x", &theirs).await;
    assert!(
        matches!(&refused, Err(AdapterError::Unprocessable { detail, .. }) if detail.contains("another patient")),
        "{refused:?}"
    );
    assert!(matches!(
        env.file(a, "key-y", "987654321").await,
        Err(AdapterError::NotFound { .. })
    ));
    assert!(matches!(
        env.file(a, "key-z", "abc").await,
        Err(AdapterError::NotFound { .. })
    ));
    assert_eq!(
        env.list(a)
            .await
            .iter()
            .filter(|d| d.identifier.is_some())
            .count(),
        0,
        "nothing was filed"
    );
}

#[tokio::test]
async fn an_unknown_patient_is_patient_not_found() {
    let env = env().await;
    let outsider = env.store.read(|p| {
        p.patients
            .iter()
            .find(|x| x.practice != env.ods.as_str())
            .unwrap()
            .nhs_number
            .clone()
    });
    let err = env
        .adapter
        .search_documents(&DocumentSearchRequest {
            nhs_number: NhsNumber::parse(&outsider).unwrap(),
            practice: env.ods.clone(),
            context: ctx(),
        })
        .await
        .unwrap_err();
    assert_eq!(err, AdapterError::PatientNotFound);
}

#[test]
fn malformed_native_answers_are_refused_whole() {
    use gp_adapter_tpp::documents::{map_documents, map_upload_response};
    let nhs = NhsNumber::parse("9434765919").unwrap();
    let ods = OdsCode::parse("A81001").unwrap();
    let good = format!(
        "<PatientDocuments><OrganisationID>A81001</OrganisationID><NHSNumber>{nhs}</NHSNumber>\
         <Document DocumentID=\"12\" Confidential=\"false\">\
         <Content ContentID=\"7\" MimeType=\"application/pdf\" Size=\"100\"/>\
         <DocumentType><Code Scheme=\"Snomed\">371530004</Code><Rubric>Report</Rubric></DocumentType>\
         <Title>T</Title><DateCreated>2026-01-02T03:04:05Z</DateCreated>\
         <DateReceived>2026-01-02T04:04:05Z</DateReceived><WorkflowStatus>Filed</WorkflowStatus>\
         </Document></PatientDocuments>"
    );
    let docs = map_documents(good.as_bytes(), nhs, &ods).unwrap();
    assert_eq!(docs.len(), 1);
    assert_eq!(
        (docs[0].id.as_str(), docs[0].content_id.as_str()),
        ("12", "7")
    );
    for (from, to) in [
        ("DocumentID=\"12\"", "DocumentID=\"12x\""),
        ("Size=\"100\"", "Size=\"-1\""),
        ("application/pdf", "image/png"),
        ("2026-01-02T03:04:05Z", "2026-01-02 03:04"),
        ("<WorkflowStatus>Filed", "<WorkflowStatus>Lost"),
        ("<Title>T</Title>", ""),
        ("Scheme=\"Snomed\"", "Scheme=\"CTV3\""),
        ("A81001</OrganisationID>", "B82002</OrganisationID>"),
        ("</PatientDocuments>", ""),
    ] {
        let bad = good.replace(from, to);
        let err = map_documents(bad.as_bytes(), nhs, &ods).unwrap_err();
        assert!(
            matches!(
                AdapterError::from(err),
                AdapterError::InvalidNativeData { .. }
            ),
            "{from} -> {to}"
        );
    }
    assert!(map_upload_response(b"<UploadContentResponse><ContentID>x</ContentID><Size>1</Size></UploadContentResponse>").is_err());
    assert!(
        map_upload_response(
            b"<UploadContentResponse><ContentID>5</ContentID></UploadContentResponse>"
        )
        .is_err()
    );
    assert_eq!(
        map_upload_response(b"<UploadContentResponse><ContentID>5</ContentID><Size>3</Size></UploadContentResponse>")
            .unwrap()
            .content_id,
        "5"
    );
}
