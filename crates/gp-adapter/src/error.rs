//! Errors an adapter returns; each renders itself as the OperationOutcome a supplier sees.

use gp_fhir::{Blame, FhirError, IssueType, SpineCode};

use crate::GpSystem;

/// What went wrong talking to a GP system.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdapterError {
    /// The system holds no such patient at that practice.
    #[error("patient not found")]
    PatientNotFound,
    /// The system cannot do what was asked (e.g. a clinical area it does not record).
    #[error("{system} does not support {what}")]
    NotSupported { system: GpSystem, what: String },
    /// The system could not be reached, refused the connection or answered with a server error.
    #[error("{system} is unavailable: {detail}")]
    Unavailable { system: GpSystem, detail: String },
    /// The system did not answer in time.
    #[error("{system} did not answer within {after_ms} ms")]
    Timeout { system: GpSystem, after_ms: u64 },
    /// The system answered, but with data that cannot be mapped: malformed, truncated,
    /// mis-encoded or missing required fields. Never a half-mapped resource.
    #[error("{system} returned data that cannot be read: {detail}")]
    InvalidNativeData { system: GpSystem, detail: String },
    /// The system refused the request (a native 4xx other than not-found).
    #[error("{system} refused the request: {detail}")]
    Rejected { system: GpSystem, detail: String },
    /// A write was refused because the record changed since the version it was made against.
    #[error("{system} holds a newer version of the record: {detail}")]
    VersionConflict { system: GpSystem, detail: String },
    /// A booking was refused because a slot it asked for is already booked.
    #[error("{system} refused the booking: {detail}")]
    SlotUnavailable { system: GpSystem, detail: String },
    /// The system holds no such thing (an appointment, a practice) other than a patient.
    #[error("{system} holds no {what}")]
    NotFound { system: GpSystem, what: String },
    /// A write was refused because the GP system cannot hold what was sent (a code it
    /// has no native code for, a value out of its range).
    #[error("{system} cannot record this: {detail}")]
    Unprocessable { system: GpSystem, detail: String },
}

impl FhirError for AdapterError {
    fn status(&self) -> u16 {
        match self {
            Self::PatientNotFound | Self::NotFound { .. } => 404,
            Self::SlotUnavailable { .. } => 409,
            Self::NotSupported { .. } => 501,
            Self::VersionConflict { .. } => 412,
            Self::Unprocessable { .. } => 422,
            Self::Timeout { .. } => 504,
            Self::Unavailable { .. } | Self::InvalidNativeData { .. } | Self::Rejected { .. } => {
                502
            }
        }
    }
    fn spine_code(&self) -> SpineCode {
        match self {
            Self::PatientNotFound | Self::NotFound { .. } => SpineCode::ResourceNotFound,
            Self::SlotUnavailable { .. } => SpineCode::DuplicateRejected,
            Self::NotSupported { .. } => SpineCode::NotImplemented,
            Self::VersionConflict { .. } => SpineCode::PreconditionFailed,
            Self::Unprocessable { .. } => SpineCode::InvalidResource,
            Self::Timeout { .. }
            | Self::Unavailable { .. }
            | Self::InvalidNativeData { .. }
            | Self::Rejected { .. } => SpineCode::UnableToCallService,
        }
    }
    fn issue_type(&self) -> IssueType {
        match self {
            Self::PatientNotFound | Self::NotFound { .. } => IssueType::NotFound,
            Self::SlotUnavailable { .. } => IssueType::Duplicate,
            Self::NotSupported { .. } => IssueType::NotSupported,
            Self::VersionConflict { .. } => IssueType::Conflict,
            Self::Unprocessable { .. } => IssueType::Processing,
            Self::Timeout { .. } => IssueType::Timeout,
            Self::Unavailable { .. } => IssueType::Transient,
            Self::InvalidNativeData { .. } | Self::Rejected { .. } => IssueType::Exception,
        }
    }
    fn blame(&self) -> Blame {
        match self {
            Self::PatientNotFound
            | Self::NotFound { .. }
            | Self::SlotUnavailable { .. }
            | Self::VersionConflict { .. }
            | Self::Unprocessable { .. } => Blame::Client,
            _ => Blame::Upstream,
        }
    }
}

impl AdapterError {
    /// Whether retrying an idempotent read might succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Timeout { .. })
    }
}
