//! What can be wrong with an Acme document, each naming the field at fault. They all
//! reach the gateway as [`AdapterError::InvalidNativeData`].

use gp_adapter::AdapterError;

/// Why an Acme document (a patient, or one of a patient's lists) cannot be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcmeDataError {
    /// The body is not UTF-8 (JSON on the wire always is).
    #[error("the {document} is not valid UTF-8 (first bad byte at offset {offset})")]
    NotUtf8 {
        document: &'static str,
        offset: usize,
    },
    /// The body is not JSON of the documented shape: malformed, truncated, a field
    /// missing or of the wrong JSON type (serde's message names it).
    #[error("the {document} is not Acme JSON of the documented shape: {reason}")]
    Malformed {
        document: &'static str,
        reason: String,
    },
    /// A field holds a value the format does not allow.
    #[error("{path} is invalid: {reason}")]
    Invalid { path: String, reason: String },
}

impl From<AcmeDataError> for AdapterError {
    fn from(e: AcmeDataError) -> Self {
        AdapterError::InvalidNativeData {
            system: crate::SYSTEM,
            detail: e.to_string(),
        }
    }
}
