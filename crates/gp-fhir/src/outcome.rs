//! OperationOutcome and the NHS Spine R4 error codes.
//!
//! Every crate's error type implements [`FhirError`]; the gateway's edge turns it into
//! an [`OperationOutcome`] exactly once.

use serde::{Deserialize, Serialize};

/// The CodeSystem of NHS Spine R4 error and warning codes.
pub const SPINE_ERROR_SYSTEM: &str = "https://fhir.nhs.uk/R4/CodeSystem/Spine-ErrorOrWarningCode";

/// NHS Spine R4 error codes (`Spine-ErrorOrWarningCode`), with the HTTP status each is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SpineCode {
    InvalidResourceId,
    InvalidValue,
    MissingValue,
    InvalidSearchData,
    InvalidParameter,
    AdditionalProperties,
    UnsupportedService,
    UnsupportedMediaType,
    NotAcceptable,
    AccessDenied,
    NoPatientConsent,
    ResourceNotFound,
    InvalidatedResource,
    MethodNotAllowed,
    UnableToCallService,
    DuplicateRejected,
    VersionConflict,
    PreconditionFailed,
    InvalidResource,
    PayloadTooLarge,
    TooManyRequests,
    InternalServerError,
    NotImplemented,
    ServiceUnavailable,
}

impl SpineCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidResourceId => "INVALID_RESOURCE_ID",
            Self::InvalidValue => "INVALID_VALUE",
            Self::MissingValue => "MISSING_VALUE",
            Self::InvalidSearchData => "INVALID_SEARCH_DATA",
            Self::InvalidParameter => "INVALID_PARAMETER",
            Self::AdditionalProperties => "ADDITIONAL_PROPERTIES",
            Self::UnsupportedService => "UNSUPPORTED_SERVICE",
            Self::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Self::NotAcceptable => "NOT_ACCEPTABLE",
            Self::AccessDenied => "ACCESS_DENIED",
            Self::NoPatientConsent => "NO_PATIENT_CONSENT",
            Self::ResourceNotFound => "RESOURCE_NOT_FOUND",
            Self::InvalidatedResource => "INVALIDATED_RESOURCE",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::UnableToCallService => "UNABLE_TO_CALL_SERVICE",
            Self::DuplicateRejected => "DUPLICATE_REJECTED",
            Self::VersionConflict => "VERSION_CONFLICT",
            Self::PreconditionFailed => "PRECONDITION_FAILED",
            Self::InvalidResource => "INVALID_RESOURCE",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::TooManyRequests => "TOO_MANY_REQUESTS",
            Self::InternalServerError => "INTERNAL_SERVER_ERROR",
            Self::NotImplemented => "NOT_IMPLEMENTED",
            Self::ServiceUnavailable => "SERVICE_UNAVAILABLE",
        }
    }

    /// The human-readable display of the code.
    pub fn display(self) -> &'static str {
        match self {
            Self::InvalidResourceId => "Invalid resource ID",
            Self::InvalidValue => "Invalid value",
            Self::MissingValue => "Missing value",
            Self::InvalidSearchData => "Invalid search data",
            Self::InvalidParameter => "Invalid parameter",
            Self::AdditionalProperties => "Additional properties",
            Self::UnsupportedService => "Unsupported service",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::NotAcceptable => "Not acceptable",
            Self::AccessDenied => "Access denied",
            Self::NoPatientConsent => "No patient consent",
            Self::ResourceNotFound => "Resource not found",
            Self::InvalidatedResource => "Invalidated resource",
            Self::MethodNotAllowed => "Method not allowed",
            Self::UnableToCallService => "Unable to call service",
            Self::DuplicateRejected => "Duplicate rejected",
            Self::VersionConflict => "Version conflict",
            Self::PreconditionFailed => "Precondition failed",
            Self::InvalidResource => "Invalid resource",
            Self::PayloadTooLarge => "Payload too large",
            Self::TooManyRequests => "Too many requests",
            Self::InternalServerError => "Internal server error",
            Self::NotImplemented => "Not implemented",
            Self::ServiceUnavailable => "Service unavailable",
        }
    }
}

/// FHIR `IssueType` codes (`http://hl7.org/fhir/issue-type`) the gateway uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IssueType {
    Invalid,
    Structure,
    Required,
    Value,
    Security,
    Login,
    Forbidden,
    Processing,
    NotSupported,
    Duplicate,
    NotFound,
    Conflict,
    TooCostly,
    Throttled,
    Transient,
    Timeout,
    Exception,
}

/// FHIR `IssueSeverity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssueSeverity {
    Fatal,
    Error,
    Warning,
    Information,
}

/// Who caused an error: decides whether it is logged as a fault of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The caller sent something wrong (4xx).
    Client,
    /// A GP system or other upstream failed.
    Upstream,
    /// The gateway itself failed: always logged.
    Gateway,
}

/// An error that knows how a FHIR client should see it.
///
/// Implemented by every crate's error enum; rendered once, at the edge, by
/// [`OperationOutcome::from_error`].
pub trait FhirError: std::error::Error {
    /// HTTP status code.
    fn status(&self) -> u16;
    /// NHS Spine error code.
    fn spine_code(&self) -> SpineCode;
    /// FHIR issue type.
    fn issue_type(&self) -> IssueType;
    /// Who is to blame.
    fn blame(&self) -> Blame {
        if self.status() < 500 {
            Blame::Client
        } else {
            Blame::Gateway
        }
    }
    /// Text for `issue.diagnostics`: must say exactly what was wrong, and must never
    /// contain tokens, keys or another patient's data. Defaults to the `Display` text.
    fn diagnostics(&self) -> String {
        self.to_string()
    }
    /// FHIRPath expressions of the elements at fault, when known.
    fn expression(&self) -> Vec<String> {
        Vec::new()
    }
    /// Response headers the refusal needs (`WWW-Authenticate` on a 401, `Allow` on a
    /// 405, `Retry-After` on a 429 or 503), as (name, value): the error knows them, so
    /// no call site has to remember to add them.
    fn headers(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

/// `CodeableConcept` restricted to what `OperationOutcome.issue.details` needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssueDetails {
    pub coding: Vec<IssueCoding>,
}

/// A Spine error coding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssueCoding {
    pub system: String,
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

/// One `OperationOutcome.issue`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Issue {
    pub severity: IssueSeverity,
    pub code: IssueType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<IssueDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expression: Vec<String>,
}

/// A FHIR R4 OperationOutcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "resourceType", rename = "OperationOutcome")]
pub struct OperationOutcome {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub issue: Vec<Issue>,
}

impl OperationOutcome {
    /// One error issue with a Spine code and diagnostics.
    pub fn error(code: SpineCode, issue_type: IssueType, diagnostics: impl Into<String>) -> Self {
        Self {
            id: None,
            issue: vec![Issue {
                severity: IssueSeverity::Error,
                code: issue_type,
                details: Some(IssueDetails {
                    coding: vec![IssueCoding {
                        system: SPINE_ERROR_SYSTEM.to_owned(),
                        code: code.as_str().to_owned(),
                        display: Some(code.display().to_owned()),
                    }],
                }),
                diagnostics: Some(diagnostics.into()),
                expression: Vec::new(),
            }],
        }
    }

    /// Render any [`FhirError`].
    pub fn from_error(err: &(impl FhirError + ?Sized)) -> Self {
        let mut outcome = Self::error(err.spine_code(), err.issue_type(), err.diagnostics());
        if let Some(issue) = outcome.issue.first_mut() {
            issue.expression = err.expression();
        }
        outcome
    }

    /// Sets `id` (the gateway uses the request id, so a supplier can quote it).
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The Spine code of the first issue, if any.
    pub fn spine_code(&self) -> Option<&str> {
        self.issue
            .first()
            .and_then(|i| i.details.as_ref())
            .and_then(|d| d.coding.first())
            .map(|c| c.code.as_str())
    }

    /// Serialises to FHIR JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain owned strings and enums cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("NHS number '123' has 3 digits; it must have 10")]
    struct Bad;
    impl FhirError for Bad {
        fn status(&self) -> u16 {
            400
        }
        fn spine_code(&self) -> SpineCode {
            SpineCode::InvalidResourceId
        }
        fn issue_type(&self) -> IssueType {
            IssueType::Value
        }
    }

    #[test]
    fn renders_spine_coding_and_diagnostics() {
        let json: serde_json::Value =
            serde_json::from_slice(&OperationOutcome::from_error(&Bad).to_json()).unwrap();
        assert_eq!(json["resourceType"], "OperationOutcome");
        assert_eq!(json["issue"][0]["severity"], "error");
        assert_eq!(json["issue"][0]["code"], "value");
        assert_eq!(
            json["issue"][0]["details"]["coding"][0]["system"],
            SPINE_ERROR_SYSTEM
        );
        assert_eq!(
            json["issue"][0]["details"]["coding"][0]["code"],
            "INVALID_RESOURCE_ID"
        );
        assert_eq!(
            json["issue"][0]["diagnostics"],
            "NHS number '123' has 3 digits; it must have 10"
        );
    }
}
