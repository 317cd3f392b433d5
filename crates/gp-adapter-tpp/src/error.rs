//! What can be wrong with a TPP SystmOne record page (or the pages together), each
//! naming the element at fault. They all reach the gateway as
//! [`AdapterError::InvalidNativeData`].

use gp_adapter::AdapterError;

/// Why a SystmOne PatientRecord cannot be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TppDataError {
    /// The body is not UTF-8 (the format is always UTF-8).
    #[error("the record is not valid UTF-8 (first bad byte at offset {offset})")]
    NotUtf8 { offset: usize },
    /// The body is not well-formed XML, e.g. truncated.
    #[error("the record is not well-formed XML (truncated or malformed): {0}")]
    MalformedXml(String),
    /// The document element is not `PatientRecord`.
    #[error("the root element is <{found}>, expected <PatientRecord>")]
    WrongRoot { found: String },
    /// A required element or attribute is absent or empty.
    #[error("{path} is missing")]
    Missing { path: String },
    /// An element or attribute holds a value the format does not allow.
    #[error("{path} is invalid: {reason}")]
    Invalid { path: String, reason: String },
    /// The pages do not add up to one record (wrong page, changed totals, a page
    /// for another patient, repeated events).
    #[error("the record's pages are inconsistent: {0}")]
    Paging(String),
    /// Something wrong on one page of a multi-page record.
    #[error("page {page}: {error}")]
    OnPage { page: u32, error: Box<TppDataError> },
}

impl TppDataError {
    /// This error, located on page `page` of the record.
    pub fn on_page(self, page: u32) -> Self {
        match self {
            e @ (Self::OnPage { .. } | Self::Paging(_)) => e,
            e => Self::OnPage {
                page,
                error: Box::new(e),
            },
        }
    }
}

impl From<TppDataError> for AdapterError {
    fn from(e: TppDataError) -> Self {
        AdapterError::InvalidNativeData {
            system: crate::SYSTEM,
            detail: e.to_string(),
        }
    }
}
