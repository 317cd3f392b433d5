//! Documents in a patient's record (letters, discharge summaries, consultation reports
//! an online-consultation supplier files), in a vendor-neutral shape. An adapter lists a
//! patient's documents as [`DocumentMeta`], serves their content as bytes, and files new
//! ones in two native steps: the content is uploaded ([`crate::Adapter::upload_content`],
//! FHIR `POST /Binary`), then a document naming it is filed
//! ([`crate::Adapter::file_document`], FHIR `POST /DocumentReference`) into the practice's
//! document workflow. The gateway maps them to FHIR R4 DocumentReference and Binary in
//! one place, checks content types, sizes and active content before anything is sent,
//! and applies its release rules to the patient a document belongs to.
//!
//! Ids are the native ones (`[A-Za-z0-9.-]`, at most 56 characters): the gateway prefixes
//! them with the practice's ODS code to make FHIR ids it can route. Content travels as
//! [`Bytes`]: an adapter sends it to the GP system without copying it.

pub mod fhir;

use bytes::Bytes;
use gp_fhir::{NhsNumber, OdsCode};

use crate::CallContext;
use crate::time::UtcDateTime;

/// Content types a document may have.
pub const CONTENT_TYPES: &[&str] = &["application/pdf", "text/plain", "text/html"];

/// One document in a patient's record, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentMeta {
    /// The document's native id.
    pub id: String,
    /// The native id of its content (what [`crate::Adapter::read_content`] takes).
    pub content_id: String,
    /// The patient it belongs to.
    pub nhs_number: NhsNumber,
    /// When the document was created (for a filed one, when the supplier says it was).
    pub created: UtcDateTime,
    /// When the practice received it (filed, scanned, received electronically).
    pub indexed: UtcDateTime,
    /// Record artifact type, SNOMED CT (e.g. 371530004 clinical consultation report).
    pub type_snomed: String,
    pub type_display: String,
    /// Title, as the practice or the supplier gave it.
    pub title: String,
    /// MIME type of the content (one of [`CONTENT_TYPES`]).
    pub content_type: String,
    /// Content size in bytes.
    pub size: u64,
    /// SHA-1 of the content, when the system records one (FHIR `attachment.hash`).
    pub sha1: Option<[u8; 20]>,
    /// ODS code of the organisation that authored it (a supplier, a hospital, the practice).
    pub author_ods: Option<String>,
    /// The author organisation's name, when the system records it.
    pub author_name: Option<String>,
    /// The supplier's identifier of a document it filed (`system`, `value`).
    pub identifier: Option<(String, String)>,
    /// Where the document is in the practice's workflow (`awaiting-review`, `filed`).
    pub workflow: String,
    /// Marked confidential by the practice (withheld from third parties).
    pub confidential: bool,
}

/// `search` a patient's documents.
#[derive(Debug, Clone)]
pub struct DocumentSearchRequest {
    pub nhs_number: NhsNumber,
    pub practice: OdsCode,
    pub context: CallContext,
}

/// `read` one document's content.
#[derive(Debug, Clone)]
pub struct ContentRequest {
    pub practice: OdsCode,
    /// Native content id.
    pub content_id: String,
    pub context: CallContext,
}

/// A document's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentContent {
    /// The patient it belongs to.
    pub nhs_number: NhsNumber,
    pub content_type: String,
    pub bytes: Bytes,
    /// The practice marked the document confidential.
    pub confidential: bool,
}

/// `upload` content, unfiled, into a patient's record.
#[derive(Debug, Clone)]
pub struct UploadContentRequest {
    pub nhs_number: NhsNumber,
    pub practice: OdsCode,
    /// One of [`CONTENT_TYPES`], checked against the bytes by the gateway.
    pub content_type: String,
    pub bytes: Bytes,
    pub context: CallContext,
}

/// What an upload gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// Native content id.
    pub content_id: String,
    /// Size the system recorded, in bytes.
    pub size: u64,
}

/// A document a supplier files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDocument {
    /// Opaque idempotency key (as [`crate::NewObservation::key`]).
    pub key: String,
    /// The supplier's identifier of the document, kept with it.
    pub identifier: Option<(String, String)>,
    /// The uploaded content it files.
    pub content_id: String,
    pub type_snomed: String,
    pub type_display: String,
    pub title: String,
    pub created: UtcDateTime,
    /// The supplier's ODS code (the author organisation).
    pub author_ods: String,
    pub author_name: Option<String>,
}

/// `file` a document.
#[derive(Debug, Clone)]
pub struct FileDocumentRequest {
    pub nhs_number: NhsNumber,
    pub practice: OdsCode,
    pub document: NewDocument,
    pub context: CallContext,
}

/// What filing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filed {
    /// The document as the system now holds it.
    pub document: DocumentMeta,
    /// False when the key had been seen and nothing new was filed.
    pub created: bool,
}
