//! What can be wrong with a Microtest Evolution document, each naming the field at fault.
//! They all reach the gateway as [`AdapterError::InvalidNativeData`].

use gp_adapter::AdapterError;
use gp_adapter::json::FieldError;

/// Why an Evolution document (patient index, patient, clinician or page of entries)
/// cannot be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MicrotestDataError {
    /// The body is not UTF-8 (JSON on the wire always is).
    #[error("the {document} is not valid UTF-8 (first bad byte at offset {offset})")]
    NotUtf8 {
        document: &'static str,
        offset: usize,
    },
    /// The body is not JSON: malformed or truncated. (A field of the wrong JSON type is
    /// [`MicrotestDataError::Invalid`], naming the field.)
    #[error("the {document} is not valid Evolution JSON (truncated or malformed): {reason}")]
    MalformedJson {
        document: &'static str,
        reason: String,
    },
    /// A required field is absent, `null` or empty.
    #[error("{path} is missing")]
    Missing { path: String },
    /// A field holds a value the format does not allow.
    #[error("{path} is invalid: {reason}")]
    Invalid { path: String, reason: String },
    /// The patient index lists more than one patient for one NHS number.
    #[error(
        "the patient index lists {count} patients with NHS number {nhs_number} at {site}; expected at most one"
    )]
    AmbiguousNhsNumber {
        nhs_number: String,
        site: String,
        count: usize,
    },
    /// Paging through entries went wrong: a cursor repeated, malformed or refused by the
    /// system that issued it, or pages that disagree with their `total`.
    #[error("broken cursor paging {what} entries: {reason}")]
    BrokenCursor { what: String, reason: String },
}

impl From<FieldError> for MicrotestDataError {
    fn from(e: FieldError) -> Self {
        match e {
            FieldError::Missing { path } => Self::Missing { path },
            FieldError::Invalid { path, reason } => Self::Invalid { path, reason },
        }
    }
}

impl From<MicrotestDataError> for AdapterError {
    fn from(e: MicrotestDataError) -> Self {
        AdapterError::InvalidNativeData {
            system: crate::SYSTEM,
            detail: e.to_string(),
        }
    }
}
