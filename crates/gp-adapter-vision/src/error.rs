//! What can be wrong with Vision extract data, each naming the extract, row and column
//! at fault. They all reach the gateway as [`AdapterError::InvalidNativeData`].

use gp_adapter::AdapterError;

/// Why a Vision extract (or a chain of journal pages) cannot be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VisionDataError {
    /// The body is not UTF-8 (the reference format is always UTF-8; real extracts are
    /// often Windows-1252, which must be converted before they reach the adapter).
    #[error("the {extract} is not valid UTF-8 (first bad byte at offset {offset})")]
    NotUtf8 {
        extract: &'static str,
        offset: usize,
    },
    /// The bytes do not follow the delimited format (quotes, line endings, header).
    #[error("the {extract} is malformed at row {row}: {reason}")]
    Malformed {
        extract: &'static str,
        row: usize,
        reason: String,
    },
    /// A row has a different number of fields from the header.
    #[error("the {extract} row {row} has {found} fields, the header has {expected}")]
    Ragged {
        extract: &'static str,
        row: usize,
        found: usize,
        expected: usize,
    },
    /// The `EOF|{rows}` trailer is missing or disagrees: the body was cut short.
    #[error("the {extract} is truncated: {reason}")]
    Truncated {
        extract: &'static str,
        reason: String,
    },
    /// The header lacks a column the adapter needs.
    #[error("the {extract} header has no {column} column")]
    MissingColumn {
        extract: &'static str,
        column: &'static str,
    },
    /// A required field is empty.
    #[error("{extract} row {row} {column} is missing")]
    Missing {
        extract: &'static str,
        row: usize,
        column: &'static str,
    },
    /// A field holds a value the format does not allow.
    #[error("{extract} row {row} {column} is invalid: {reason}")]
    Invalid {
        extract: &'static str,
        row: usize,
        column: &'static str,
        reason: String,
    },
    /// The extract has the wrong number of data rows (e.g. a patient extract that is not one row).
    #[error("the {extract} has {found} data rows, expected {expected}")]
    RowCount {
        extract: &'static str,
        found: usize,
        expected: &'static str,
    },
    /// The journal's continuation tokens cannot be followed to the end.
    #[error("the journal continuation is broken: {0}")]
    Continuation(String),
}

impl From<VisionDataError> for AdapterError {
    fn from(e: VisionDataError) -> Self {
        AdapterError::InvalidNativeData {
            system: crate::SYSTEM,
            detail: e.to_string(),
        }
    }
}
