//! What can be wrong with an EMIS Web MedicalRecord, each naming the element at fault.
//! They all reach the gateway as [`AdapterError::InvalidNativeData`].

use gp_adapter::AdapterError;

/// Why an EMIS MedicalRecord (or error document) cannot be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmisDataError {
    /// The body is not UTF-8 (the format is always UTF-8).
    #[error("the record is not valid UTF-8 (first bad byte at offset {offset})")]
    NotUtf8 { offset: usize },
    /// The body is not well-formed XML, e.g. truncated.
    #[error("the record is not well-formed XML (truncated or malformed): {0}")]
    MalformedXml(String),
    /// The document element is not `MedicalRecord` in the EMIS Open namespace.
    #[error(
        "the root element is <{found}>, expected <MedicalRecord> in namespace {}",
        crate::NS
    )]
    WrongRoot { found: String },
    /// A required element is absent or empty.
    #[error("{path} is missing")]
    Missing { path: String },
    /// An element holds a value the format does not allow.
    #[error("{path} is invalid: {reason}")]
    Invalid { path: String, reason: String },
}

impl From<EmisDataError> for AdapterError {
    fn from(e: EmisDataError) -> Self {
        AdapterError::InvalidNativeData {
            system: crate::SYSTEM,
            detail: e.to_string(),
        }
    }
}
