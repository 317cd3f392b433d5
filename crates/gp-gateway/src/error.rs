//! The gateway's own errors, and the one rescue at the edge that turns any error into
//! an OperationOutcome response.

use bytes::Bytes;
use gp_fhir::{Blame, FhirError, IssueType, OperationOutcome, SpineCode};
use http::{Response, StatusCode};
use http_body_util::Full;

/// Errors raised by the gateway itself (routing, limits, locating records).
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(
        "no route for {method} {path}; the supported interactions are listed at {base}/metadata"
    )]
    NoRoute {
        method: String,
        path: String,
        base: String,
    },
    #[error(
        "{method} {path} is not supported: this gateway serves {resource_type} only as its CapabilityStatement at {base}/metadata lists"
    )]
    NotSupported {
        method: String,
        path: String,
        resource_type: &'static str,
        base: String,
    },
    #[error("{method} is not allowed on {path}; allowed: {allowed}")]
    MethodNotAllowed {
        method: String,
        path: String,
        allowed: String,
    },
    #[error("request body of {0} bytes exceeds the limit of {1} bytes")]
    BodyTooLarge(u64, usize),
    #[error("request body could not be read: {0}")]
    BodyRead(String),
    #[error("X-Request-ID must be a UUID, not '{0}'")]
    BadRequestId(String),
    #[error("{0} must be printable ASCII of at most 200 characters")]
    BadHeader(&'static str),
    #[error("{0}")]
    NotFound(String),
    #[error("patient has dissented from sharing their record with third-party suppliers")]
    NoConsent,
    #[error("the record locator is unavailable: {0}")]
    LocatorUnavailable(String),
    #[error("practice {0} is registered to {1}, which this gateway has no adapter for")]
    NoAdapter(String, String),
    #[error("the gateway is shutting down; retry on another replica")]
    ShuttingDown,
    #[error("the request was not completed within {0} ms")]
    Timeout(u64),
    #[error("internal error (quote the request id to the service desk)")]
    Internal(String),
    #[error(transparent)]
    Adapter(#[from] gp_adapter::AdapterError),
}

impl FhirError for GatewayError {
    fn status(&self) -> u16 {
        match self {
            Self::Adapter(e) => e.status(),
            Self::NoRoute { .. } | Self::NotFound(_) => 404,
            Self::NotSupported { .. } => 501,
            Self::MethodNotAllowed { .. } => 405,
            Self::BodyTooLarge(..) => 413,
            Self::BodyRead(_) | Self::BadRequestId(_) | Self::BadHeader(_) => 400,
            Self::NoConsent => 403,
            Self::LocatorUnavailable(_) | Self::NoAdapter(..) => 502,
            Self::ShuttingDown => 503,
            Self::Timeout(_) => 504,
            Self::Internal(_) => 500,
        }
    }
    fn spine_code(&self) -> SpineCode {
        match self {
            Self::Adapter(e) => e.spine_code(),
            Self::NoRoute { .. } => SpineCode::UnsupportedService,
            Self::NotSupported { .. } => SpineCode::NotImplemented,
            Self::NotFound(_) => SpineCode::ResourceNotFound,
            Self::MethodNotAllowed { .. } => SpineCode::MethodNotAllowed,
            Self::BodyTooLarge(..) => SpineCode::PayloadTooLarge,
            Self::BodyRead(_) | Self::BadRequestId(_) | Self::BadHeader(_) => {
                SpineCode::InvalidValue
            }
            Self::NoConsent => SpineCode::NoPatientConsent,
            Self::LocatorUnavailable(_) | Self::NoAdapter(..) => SpineCode::UnableToCallService,
            Self::ShuttingDown => SpineCode::ServiceUnavailable,
            Self::Timeout(_) => SpineCode::UnableToCallService,
            Self::Internal(_) => SpineCode::InternalServerError,
        }
    }
    fn issue_type(&self) -> IssueType {
        match self {
            Self::Adapter(e) => e.issue_type(),
            Self::NoRoute { .. } | Self::NotSupported { .. } | Self::MethodNotAllowed { .. } => {
                IssueType::NotSupported
            }
            Self::NotFound(_) => IssueType::NotFound,
            Self::BodyTooLarge(..) => IssueType::TooCostly,
            Self::BodyRead(_) | Self::BadRequestId(_) | Self::BadHeader(_) => IssueType::Invalid,
            Self::NoConsent => IssueType::Forbidden,
            Self::LocatorUnavailable(_) | Self::NoAdapter(..) | Self::ShuttingDown => {
                IssueType::Transient
            }
            Self::Timeout(_) => IssueType::Timeout,
            Self::Internal(_) => IssueType::Exception,
        }
    }
    fn blame(&self) -> Blame {
        match self {
            Self::Adapter(e) => e.blame(),
            Self::LocatorUnavailable(_) => Blame::Upstream,
            Self::NoAdapter(..) | Self::Internal(_) => Blame::Gateway,
            // The caller asked for what the gateway never offered.
            Self::NotSupported { .. } => Blame::Client,
            _ if self.status() < 500 => Blame::Client,
            _ => Blame::Gateway,
        }
    }
    fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Adapter(e) => e.headers(),
            Self::MethodNotAllowed { allowed, .. } => vec![("allow", allowed.clone())],
            _ => Vec::new(),
        }
    }
    fn diagnostics(&self) -> String {
        match self {
            // The detail of an internal error goes to the log, never to the caller.
            Self::Internal(_) => "internal error (quote the request id to the service desk)".into(),
            other => other.to_string(),
        }
    }
}

/// Any error on its way to becoming a response.
pub type BoxError = Box<dyn FhirError + Send + Sync>;

/// The single place errors become OperationOutcome responses, with the headers the
/// error says it needs ([`FhirError::headers`]: `Allow`, `Retry-After`,
/// `WWW-Authenticate`): no call site adds any.
pub struct Rescue {
    pub error: BoxError,
}

impl<E: FhirError + Send + Sync + 'static> From<E> for Rescue {
    fn from(e: E) -> Self {
        Self { error: Box::new(e) }
    }
}

impl std::fmt::Debug for Rescue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rescue({})", self.error)
    }
}

impl Rescue {
    /// Renders the OperationOutcome, logging what is not the caller's fault.
    pub fn into_response(self, request_id: &str) -> Response<Full<Bytes>> {
        let err = &self.error;
        let (status, code) = (err.status(), err.spine_code().as_str());
        // Messages may name the patient a request was about: masked in logs.
        let logged = crate::redact::nhs_numbers(&err.to_string());
        match err.blame() {
            Blame::Client => tracing::debug!(status, code, error = %logged, "request refused"),
            Blame::Upstream => tracing::warn!(status, code, error = %logged, "upstream failure"),
            Blame::Gateway => tracing::error!(status, code, error = %logged, "gateway failure"),
        }
        let outcome = OperationOutcome::from_error(err.as_ref()).with_id(request_id);
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = crate::respond::fhir(status, outcome.to_json());
        crate::respond::add_headers(&mut resp, err.headers());
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(e: impl FhirError + Send + Sync + 'static, name: &str) -> Option<String> {
        Rescue::from(e)
            .into_response("req")
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    #[test]
    fn refusals_carry_the_headers_their_error_names_with_no_call_site_adding_them() {
        let not_allowed = GatewayError::MethodNotAllowed {
            method: "DELETE".into(),
            path: "/Patient/9000000009".into(),
            allowed: "GET, PATCH".into(),
        };
        assert_eq!(header(not_allowed, "allow").as_deref(), Some("GET, PATCH"));
        assert_eq!(
            header(
                gp_auth::AccessError::MissingAuthorization,
                "www-authenticate"
            )
            .as_deref(),
            Some("Bearer error=\"invalid_token\"")
        );
        assert_eq!(header(GatewayError::NoConsent, "www-authenticate"), None);
        assert_eq!(
            header(
                gp_auth::ClientCertError::Missing("demo-consult".into()),
                "www-authenticate"
            )
            .as_deref(),
            Some("Bearer error=\"invalid_token\"")
        );
        let refused = gp_auth::RateDecision {
            allowed: false,
            limit: 5,
            remaining: 0,
            reset_after_secs: 4,
            retry_after_secs: 2,
            window_secs: 5,
        };
        let limited = || gp_auth::RateLimitExceeded::new("supplier demo-booking", &refused);
        assert_eq!(header(limited(), "retry-after").as_deref(), Some("2"));
        assert!(header(limited(), "ratelimit").is_some_and(|v| v.contains("r=0")));
        assert!(header(limited(), "ratelimit-policy").is_some());
    }
}
