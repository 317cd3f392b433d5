//! The documents in each patient's record, shared by the four simulators: letters and
//! reports the practice holds (generated per practice on first use, some of them larger
//! than a third party may be sent), content a supplier uploaded and not yet filed, and
//! documents suppliers filed into the practice's document workflow. Each simulator
//! serves them in its own native style; every operation here is atomic under one lock,
//! so a key files at most once however requests race.
//!
//! Content is kept as [`Bytes`] as it arrived (never copied); a generated document's
//! content is produced on read from its seed, so a large one costs nothing until read.

use std::collections::HashMap;

use bytes::Bytes;

use crate::date::SimDate;
use crate::model::{ExternalId, Practice};
use crate::rng::Rng;

/// Content types documents may have.
pub const CONTENT_TYPES: &[&str] = &["application/pdf", "text/plain", "text/html"];

/// Largest content a simulator accepts in one upload (the gateway's own limit is lower).
pub const MAX_UPLOAD: usize = 16 * 1024 * 1024;

/// Size of the large scanned documents some patients have (over the 5 MB a third party
/// may be sent inline).
pub const LARGE_DOCUMENT: u64 = 6 * 1024 * 1024 + 123;

/// Where a document is in the practice's workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workflow {
    /// Filed by a third party, waiting for a clinician to review it.
    AwaitingReview,
    /// Reviewed and filed in the record.
    Filed,
}

impl Workflow {
    /// `awaiting-review` or `filed`.
    pub fn code(self) -> &'static str {
        match self {
            Self::AwaitingReview => "awaiting-review",
            Self::Filed => "filed",
        }
    }
}

/// One document in a patient's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimDocument {
    /// GUID.
    pub id: String,
    /// Numeric id, for the systems that number documents (SystmOne, Vision).
    pub number: u64,
    /// GUID of its content.
    pub content_id: String,
    /// Numeric id of its content.
    pub content_number: u64,
    /// NHS number of the patient.
    pub nhs: String,
    /// When the document was created (UTC date-time).
    pub created: SimDate,
    /// When the practice received it (UTC date-time).
    pub received: SimDate,
    /// Record artifact type, SNOMED CT.
    pub type_snomed: String,
    pub type_term: String,
    pub title: String,
    pub content_type: String,
    pub size: u64,
    /// SHA-1 of the content.
    pub sha1: [u8; 20],
    /// Author organisation ODS code and name.
    pub author_ods: Option<String>,
    pub author_name: Option<String>,
    /// The idempotency key a supplier filed it with.
    pub external_key: Option<String>,
    /// The supplier's identifier of it.
    pub external_id: Option<ExternalId>,
    pub workflow: Workflow,
    /// Marked confidential by the practice.
    pub confidential: bool,
}

/// Content as held.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    /// Uploaded bytes.
    Stored(Bytes),
    /// A generated PDF of `size` bytes with this title, produced on read.
    Generated { title: String, size: u64 },
}

/// Content in a patient's record.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Content {
    id: String,
    number: u64,
    nhs: String,
    content_type: String,
    body: Body,
    /// The document that files it, once filed.
    filed_as: Option<String>,
}

/// Content, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentView {
    pub id: String,
    pub number: u64,
    /// NHS number of the patient it belongs to.
    pub nhs: String,
    pub content_type: String,
    pub bytes: Bytes,
    /// The document filing it is confidential.
    pub confidential: bool,
}

/// A document a supplier files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSimDocument {
    /// Idempotency key (1 to 64 letters, digits or hyphens).
    pub key: String,
    pub external_id: Option<ExternalId>,
    /// The uploaded content it files: its GUID or number.
    pub content: String,
    pub type_snomed: String,
    pub type_term: String,
    pub title: String,
    /// UTC date-time.
    pub created: SimDate,
    pub author_ods: String,
    pub author_name: Option<String>,
}

/// Why a document operation was refused. Each simulator renders it natively.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("no practice with ODS code {0} on this system")]
    PracticeNotFound(String),
    #[error("no patient with that NHS number is registered at {0}")]
    PatientNotFound(String),
    #[error("no content {0} at this practice")]
    ContentNotFound(String),
    /// The content belongs to another patient's record.
    #[error("content {0} belongs to another patient")]
    OtherPatient(String),
    /// The content is filed already, as another document (under another key).
    #[error("content {0} is filed already as another document")]
    AlreadyFiled(String),
    /// The content type is not one documents may have.
    #[error("content type {0} is not one of application/pdf, text/plain, text/html")]
    ContentType(String),
    /// The write is not acceptable (bad key, type, size, another patient's content,
    /// content filed already under another key).
    #[error("{0}")]
    Invalid(String),
}

/// The documents of one practice.
#[derive(Debug, Clone, Default)]
pub struct PracticeDocuments {
    documents: Vec<SimDocument>,
    contents: Vec<Content>,
    next_number: u64,
}

/// Every practice's documents, generated on first use.
#[derive(Debug, Default)]
pub struct Documents {
    by_practice: HashMap<String, PracticeDocuments>,
}

/// Letter kinds the generator files: SNOMED CT record artifact, term, title, author.
const KINDS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "823691000000103",
        "Clinical letter",
        "Outpatient clinic letter - cardiology",
        "RXH",
        "Brighton and Sussex University Hospitals NHS Trust",
    ),
    (
        "373942005",
        "Discharge summary",
        "Inpatient discharge summary",
        "RTP",
        "Surrey and Sussex Healthcare NHS Trust",
    ),
    (
        "4201000179104",
        "Imaging report",
        "Chest X-ray report",
        "RXH",
        "Brighton and Sussex University Hospitals NHS Trust",
    ),
    (
        "371530004",
        "Clinical consultation report",
        "Community physiotherapy assessment",
        "RDR",
        "Sussex Community NHS Foundation Trust",
    ),
];

/// A minimal, valid one-page PDF with `lines` of text, padded with a comment stream to
/// `size` bytes when larger (a scanned document's weight).
pub fn pdf(lines: &[&str], size: Option<u64>) -> Vec<u8> {
    let mut text = String::from("BT /F1 11 Tf 50 780 Td 14 TL\n");
    for l in lines {
        let esc: String = l
            .chars()
            .map(|c| match c {
                '(' | ')' | '\\' => format!("\\{c}"),
                c if c.is_ascii() && !c.is_control() => c.to_string(),
                _ => "?".into(),
            })
            .collect();
        text.push_str(&format!("({esc}) Tj T*\n"));
    }
    text.push_str("ET\n");
    let mut objects = vec![
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_owned(),
        format!("<< /Length {} >>\nstream\n{text}endstream", text.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let base_len = 400 + objects.iter().map(String::len).sum::<usize>();
    if let Some(size) = size.and_then(|s| usize::try_from(s).ok())
        && size > base_len + 64
    {
        // An unreferenced stream object: viewers ignore it, the size is what is asked.
        let pad = size - base_len - 64;
        objects.push(format!(
            "<< /Length {pad} >>\nstream\n{}\nendstream",
            "%".repeat(pad)
        ));
    }
    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for off in offsets {
        out.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    if let Some(size) = size.and_then(|s| usize::try_from(s).ok())
        && out.len() < size
    {
        // Trailing whitespace after %%EOF is allowed: exact size.
        out.resize(size, b'\n');
    }
    out
}

/// SHA-1 of `bytes`.
pub fn sha1(bytes: &[u8]) -> [u8; 20] {
    use sha1::{Digest, Sha1};
    Sha1::digest(bytes).into()
}

impl Body {
    fn bytes(&self) -> Bytes {
        match self {
            Self::Stored(b) => b.clone(),
            Self::Generated { title, size } => {
                Bytes::from(pdf(&[title.as_str(), "Synthetic document"], Some(*size)))
            }
        }
    }
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 64
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl PracticeDocuments {
    /// The practice's documents, with a history for each patient: none to three letters
    /// and reports from local trusts over the last years, one patient in twenty with a
    /// large scanned document, one document in fifteen confidential.
    pub fn generate(seed: u64, practice: &Practice, patients: &[(String, SimDate)]) -> Self {
        let salt = practice.ods.bytes().fold(0xD0C5_u64, |h, b| {
            h.wrapping_mul(31).wrapping_add(u64::from(b))
        });
        let mut r = Rng::fork(seed, salt);
        let mut out = Self {
            next_number: 7_000_001,
            ..Self::default()
        };
        let today = crate::appointments::now().div_euclid(86_400);
        for (nhs, birth) in patients {
            let n = r.below(4);
            let large = r.chance(5);
            for i in 0..n + u64::from(large) {
                let kind = r.pick(KINDS);
                let earliest = birth.days().max(today - 3 * 365);
                let day = r.range(earliest, today - 1);
                let created = SimDate::from_days(day).at(
                    u8::try_from(r.range(8, 17)).unwrap_or(9),
                    u8::try_from(r.range(0, 59)).unwrap_or(0),
                    0,
                );
                let received = created.plus_seconds(r.range(3600, 5 * 86_400));
                let is_large = large && i == n;
                let title = if is_large {
                    "Scanned hospital records".to_owned()
                } else {
                    kind.2.to_owned()
                };
                let size = if is_large {
                    LARGE_DOCUMENT
                } else {
                    u64::try_from(pdf(&[&title, "Synthetic document"], None).len()).unwrap_or(0)
                };
                let body = Body::Generated {
                    title: title.clone(),
                    size,
                };
                let bytes = body.bytes();
                let (number, content_number) = (out.next_number, out.next_number + 1);
                out.next_number += 2;
                let content_id = r.guid();
                let id = r.guid();
                out.contents.push(Content {
                    id: content_id.clone(),
                    number: content_number,
                    nhs: nhs.clone(),
                    content_type: "application/pdf".into(),
                    body,
                    filed_as: Some(id.clone()),
                });
                out.documents.push(SimDocument {
                    id,
                    number,
                    content_id,
                    content_number,
                    nhs: nhs.clone(),
                    created,
                    received,
                    type_snomed: kind.0.into(),
                    type_term: kind.1.into(),
                    title,
                    content_type: "application/pdf".into(),
                    size: u64::try_from(bytes.len()).unwrap_or(size),
                    sha1: sha1(&bytes),
                    author_ods: Some(kind.3.into()),
                    author_name: Some(kind.4.into()),
                    external_key: None,
                    external_id: None,
                    workflow: Workflow::Filed,
                    confidential: r.chance(7),
                });
            }
        }
        out
    }

    fn content_index(&self, id: &str) -> Option<usize> {
        self.contents
            .iter()
            .position(|c| c.id == id || c.number.to_string() == id)
    }

    /// Patient `nhs`'s documents, newest (created) first.
    pub fn of_patient(&self, nhs: &str) -> Vec<SimDocument> {
        let mut out: Vec<SimDocument> = self
            .documents
            .iter()
            .filter(|d| d.nhs == nhs)
            .cloned()
            .collect();
        out.sort_by(|a, b| b.created.cmp(&a.created).then(b.number.cmp(&a.number)));
        out
    }

    /// Document `id` (GUID or number).
    pub fn document(&self, id: &str) -> Option<&SimDocument> {
        self.documents
            .iter()
            .find(|d| d.id == id || d.number.to_string() == id)
    }

    /// Content `id` (GUID or number).
    pub fn content(&self, id: &str) -> Option<ContentView> {
        let c = &self.contents[self.content_index(id)?];
        let confidential = c
            .filed_as
            .as_deref()
            .and_then(|d| self.document(d))
            .is_some_and(|d| d.confidential);
        Some(ContentView {
            id: c.id.clone(),
            number: c.number,
            nhs: c.nhs.clone(),
            content_type: c.content_type.clone(),
            bytes: c.body.bytes(),
            confidential,
        })
    }

    /// Keeps `bytes` of `content_type` for patient `nhs`, unfiled, under a new id
    /// (`guid`). The bytes are kept as given, not copied.
    pub fn upload(
        &mut self,
        nhs: &str,
        content_type: &str,
        bytes: Bytes,
        guid: String,
    ) -> Result<ContentView, DocumentError> {
        if !CONTENT_TYPES.contains(&content_type) {
            return Err(DocumentError::ContentType(content_type.to_owned()));
        }
        if bytes.is_empty() || bytes.len() > MAX_UPLOAD {
            return Err(DocumentError::Invalid(format!(
                "content must be 1 to {MAX_UPLOAD} bytes, not {}",
                bytes.len()
            )));
        }
        let number = self.next_number;
        self.next_number += 1;
        self.contents.push(Content {
            id: guid.clone(),
            number,
            nhs: nhs.to_owned(),
            content_type: content_type.to_owned(),
            body: Body::Stored(bytes.clone()),
            filed_as: None,
        });
        Ok(ContentView {
            id: guid,
            number,
            nhs: nhs.to_owned(),
            content_type: content_type.to_owned(),
            bytes,
            confidential: false,
        })
    }

    /// Files `doc` for patient `nhs` at `now` (UTC), into the workflow as awaiting
    /// review. A key seen before answers its document with `false`; content of another
    /// patient, or filed already under another key, is refused.
    pub fn file(
        &mut self,
        nhs: &str,
        doc: NewSimDocument,
        now: SimDate,
        guid: String,
    ) -> Result<(SimDocument, bool), DocumentError> {
        if !valid_key(&doc.key) {
            return Err(DocumentError::Invalid(
                "the idempotency key must be 1 to 64 letters, digits or hyphens".into(),
            ));
        }
        if let Some(d) = self
            .documents
            .iter()
            .find(|d| d.nhs == nhs && d.external_key.as_deref() == Some(doc.key.as_str()))
        {
            return Ok((d.clone(), false));
        }
        for (what, v, max) in [
            ("type", &doc.type_snomed, 18),
            ("type term", &doc.type_term, 255),
            ("title", &doc.title, 255),
            ("author ODS code", &doc.author_ods, 12),
        ] {
            if v.trim().is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
                return Err(DocumentError::Invalid(format!(
                    "the document's {what} must be 1 to {max} characters without control characters"
                )));
            }
        }
        if doc.created.time.is_none() {
            return Err(DocumentError::Invalid(
                "the document's creation time must have a time of day".into(),
            ));
        }
        let i = self
            .content_index(&doc.content)
            .ok_or_else(|| DocumentError::ContentNotFound(doc.content.clone()))?;
        if self.contents[i].nhs != nhs {
            return Err(DocumentError::OtherPatient(doc.content));
        }
        if self.contents[i].filed_as.is_some() {
            return Err(DocumentError::AlreadyFiled(doc.content));
        }
        let bytes = self.contents[i].body.bytes();
        let number = self.next_number;
        self.next_number += 1;
        self.contents[i].filed_as = Some(guid.clone());
        let document = SimDocument {
            id: guid,
            number,
            content_id: self.contents[i].id.clone(),
            content_number: self.contents[i].number,
            nhs: nhs.to_owned(),
            created: doc.created,
            received: now,
            type_snomed: doc.type_snomed,
            type_term: doc.type_term,
            title: doc.title,
            content_type: self.contents[i].content_type.clone(),
            size: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
            sha1: sha1(&bytes),
            author_ods: Some(doc.author_ods),
            author_name: doc.author_name,
            external_key: Some(doc.key),
            external_id: doc.external_id,
            workflow: Workflow::AwaitingReview,
            confidential: false,
        };
        self.documents.push(document.clone());
        Ok((document, true))
    }
}

impl Documents {
    /// The documents of `practice`, generated on first use.
    pub fn of(
        &mut self,
        seed: u64,
        practice: &Practice,
        patients: &[(String, SimDate)],
    ) -> &mut PracticeDocuments {
        self.by_practice
            .entry(practice.ods.clone())
            .or_insert_with(|| PracticeDocuments::generate(seed, practice, patients))
    }
}

/// The current UTC time as a date-time.
pub fn now() -> SimDate {
    let secs = crate::appointments::now();
    SimDate::from_days(secs.div_euclid(86_400)).plus_seconds(secs.rem_euclid(86_400))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::population::{Population, PopulationSpec};

    fn docs() -> (Practice, Vec<(String, SimDate)>, PracticeDocuments) {
        let pop = Population::generate(7, &PopulationSpec::sandbox());
        let practice = pop.practices[0].clone();
        let patients: Vec<(String, SimDate)> = pop
            .patients
            .iter()
            .filter(|p| p.practice == practice.ods)
            .map(|p| (p.nhs_number.clone(), p.birth_date))
            .collect();
        let d = PracticeDocuments::generate(7, &practice, &patients);
        (practice, patients, d)
    }

    #[test]
    fn generated_documents_are_valid_pdfs_of_their_recorded_size_and_hash() {
        let (_, _, d) = docs();
        assert!(!d.documents.is_empty());
        let mut large = 0;
        for doc in &d.documents {
            let c = d.content(&doc.content_id).unwrap();
            assert!(c.bytes.starts_with(b"%PDF-1.4"));
            assert!(c.bytes.windows(5).any(|w| w == b"%%EOF"));
            assert_eq!(c.bytes.len() as u64, doc.size);
            assert_eq!(sha1(&c.bytes), doc.sha1);
            assert_eq!(c.nhs, doc.nhs);
            if doc.size == LARGE_DOCUMENT {
                large += 1;
            }
        }
        assert!(large > 0, "some patient has a large scanned document");
    }

    #[test]
    fn filing_is_idempotent_by_key_and_refuses_another_patients_content() {
        let (_, patients, mut d) = docs();
        let (a, b) = (&patients[0].0, &patients[1].0);
        let up = d
            .upload(a, "text/plain", Bytes::from_static(b"hello"), "c-1".into())
            .unwrap();
        let new = |key: &str| NewSimDocument {
            key: key.into(),
            external_id: None,
            content: up.id.clone(),
            type_snomed: "371530004".into(),
            type_term: "Clinical consultation report".into(),
            title: "Online consultation".into(),
            created: SimDate::ymd(2026, 7, 14).at(8, 0, 0),
            author_ods: "Y90002".into(),
            author_name: None,
        };
        assert!(matches!(
            d.file(b, new("k1"), now(), "d-0".into()),
            Err(DocumentError::OtherPatient(_))
        ));
        let (doc, created) = d.file(a, new("k1"), now(), "d-1".into()).unwrap();
        assert!(created);
        assert_eq!(doc.workflow, Workflow::AwaitingReview);
        assert_eq!(doc.size, 5);
        let (again, created) = d.file(a, new("k1"), now(), "d-2".into()).unwrap();
        assert!(!created);
        assert_eq!(again.id, "d-1");
        assert!(matches!(
            d.file(a, new("k2"), now(), "d-3".into()),
            Err(DocumentError::AlreadyFiled(_))
        ));
        assert!(d.of_patient(a).iter().any(|x| x.id == "d-1"));
        assert!(!d.of_patient(b).iter().any(|x| x.id == "d-1"));
        assert_eq!(&d.content("c-1").unwrap().bytes[..], b"hello");
    }
}
