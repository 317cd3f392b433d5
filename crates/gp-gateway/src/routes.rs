//! The FHIR route table: the single list the router matches against and the
//! CapabilityStatement is generated from, so the two cannot disagree.

use gp_adapter::ClinicalType;
use http::Method;

use crate::error::GatewayError;

/// What a matched request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /metadata`.
    Metadata,
    /// `GET /Patient/{nhsNumber}`.
    PatientRead(String),
    /// `GET /Patient?identifier=…`.
    PatientSearch,
    /// `GET /{ClinicalType}?patient=…`.
    ClinicalSearch(ClinicalType),
    /// `POST /Patient/$gpc.getstructuredrecord`.
    StructuredRecord,
    /// `POST /Observation`: write a reading back to the patient's GP record.
    ObservationCreate,
    /// `PATCH /Patient/{nhsNumber}`: change contact details (JSON Patch).
    PatientPatch(String),
    /// `GET /AuditEvent?…`: the audit trail.
    AuditEventSearch,
    /// `GET /Patient/{nhsNumber}/$access-log`: who accessed a patient's record, for the patient.
    AccessLog(String),
}

/// The patient-facing access log operation's name.
pub const ACCESS_LOG: &str = "$access-log";

/// The structured record operation's name.
pub const STRUCTURED_RECORD: &str = "$gpc.getstructuredrecord";

/// FHIR interactions, as the CapabilityStatement names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    Read,
    SearchType,
    /// A type-level operation (reads what its parameters name).
    Operation,
    Create,
    Patch,
}

impl Interaction {
    /// The CapabilityStatement code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::SearchType => "search-type",
            Self::Operation => "operation",
            Self::Create => "create",
            Self::Patch => "patch",
        }
    }
}

impl Route {
    /// The resource type and interaction a route serves (`None` for `metadata`).
    pub fn interaction(&self) -> Option<(&'static str, Interaction)> {
        match self {
            Self::Metadata => None,
            Self::PatientRead(_) => Some(("Patient", Interaction::Read)),
            Self::PatientSearch => Some(("Patient", Interaction::SearchType)),
            Self::ClinicalSearch(t) => Some((t.as_str(), Interaction::SearchType)),
            Self::StructuredRecord => Some(("Patient", Interaction::Operation)),
            Self::ObservationCreate => Some(("Observation", Interaction::Create)),
            Self::PatientPatch(_) => Some(("Patient", Interaction::Patch)),
            Self::AuditEventSearch => Some(("AuditEvent", Interaction::SearchType)),
            Self::AccessLog(_) => Some(("AuditEvent", Interaction::Read)),
        }
    }
}

/// Matches a path below the FHIR base (`rest` has no leading base path) and method.
pub fn match_route(method: &Method, rest: &str, base: &str) -> Result<Route, GatewayError> {
    let segments: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    if segments.as_slice() == ["Patient", STRUCTURED_RECORD] {
        if method != Method::POST {
            return Err(GatewayError::MethodNotAllowed {
                method: shown(method.as_str()),
                path: format!("{base}/Patient/{STRUCTURED_RECORD}"),
                allowed: "POST",
            });
        }
        return Ok(Route::StructuredRecord);
    }
    let not_allowed = |allowed: &'static str| GatewayError::MethodNotAllowed {
        method: shown(method.as_str()),
        path: format!("{base}/{}", shown(rest.trim_start_matches('/'))),
        allowed,
    };
    match (segments.as_slice(), method) {
        (["Patient", id, op], m) if *op == ACCESS_LOG && !id.is_empty() => {
            if m != Method::GET && m != Method::HEAD {
                return Err(not_allowed("GET"));
            }
            return Ok(Route::AccessLog((*id).to_owned()));
        }
        (["Observation"], &Method::POST) => return Ok(Route::ObservationCreate),
        (["Observation"], m) if m != Method::GET && m != Method::HEAD => {
            return Err(not_allowed("GET, POST"));
        }
        (["Patient", id], &Method::PATCH) if !id.is_empty() => {
            return Ok(Route::PatientPatch((*id).to_owned()));
        }
        (["Patient", id], m) if !id.is_empty() && m != Method::GET && m != Method::HEAD => {
            return Err(not_allowed("GET, PATCH"));
        }
        _ => {}
    }
    let route = match segments.as_slice() {
        ["metadata"] => Route::Metadata,
        ["Patient"] => Route::PatientSearch,
        ["AuditEvent"] => Route::AuditEventSearch,
        ["Patient", id] if !id.is_empty() => Route::PatientRead((*id).to_owned()),
        [t] => match ClinicalType::parse(t) {
            Some(ct) => Route::ClinicalSearch(ct),
            None => return Err(no_route(method, rest, base)),
        },
        _ => return Err(no_route(method, rest, base)),
    };
    if method != Method::GET && method != Method::HEAD {
        return Err(not_allowed("GET"));
    }
    Ok(route)
}

fn no_route(method: &Method, rest: &str, base: &str) -> GatewayError {
    GatewayError::NoRoute {
        method: shown(method.as_str()),
        path: format!("{base}/{}", shown(rest.trim_start_matches('/'))),
        base: base.to_owned(),
    }
}

pub use gp_fhir::text::shown;

/// Every resource type and interaction the router serves, for the CapabilityStatement.
pub fn served(clinical: &[ClinicalType]) -> Vec<(&'static str, Vec<Interaction>)> {
    let mut out = vec![(
        "Patient",
        vec![
            Interaction::Read,
            Interaction::SearchType,
            Interaction::Patch,
        ],
    )];
    out.extend(clinical.iter().map(|t| {
        let mut interactions = vec![Interaction::SearchType];
        if *t == ClinicalType::Observation {
            interactions.push(Interaction::Create);
        }
        (t.as_str(), interactions)
    }));
    out.push(("AuditEvent", vec![Interaction::SearchType]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_refusals() {
        let b = "/FHIR/R4";
        assert_eq!(
            match_route(&Method::GET, "/metadata", b).unwrap(),
            Route::Metadata
        );
        assert_eq!(
            match_route(&Method::GET, "/Patient/9000000009", b).unwrap(),
            Route::PatientRead("9000000009".into())
        );
        assert_eq!(
            match_route(&Method::GET, "/Observation", b).unwrap(),
            Route::ClinicalSearch(ClinicalType::Observation)
        );
        assert!(matches!(
            match_route(&Method::GET, "/Foo", b),
            Err(GatewayError::NoRoute { .. })
        ));
        assert!(matches!(
            match_route(&Method::GET, "/Patient/1/2", b),
            Err(GatewayError::NoRoute { .. })
        ));
        assert!(matches!(
            match_route(&Method::DELETE, "/Patient/9000000009", b),
            Err(GatewayError::MethodNotAllowed {
                allowed: "GET, PATCH",
                ..
            })
        ));
        assert_eq!(
            match_route(&Method::POST, "/Observation", b).unwrap(),
            Route::ObservationCreate
        );
        assert_eq!(
            match_route(&Method::PATCH, "/Patient/9000000009", b).unwrap(),
            Route::PatientPatch("9000000009".into())
        );
        assert!(matches!(
            match_route(&Method::PUT, "/Observation", b),
            Err(GatewayError::MethodNotAllowed {
                allowed: "GET, POST",
                ..
            })
        ));
        assert!(matches!(
            match_route(&Method::POST, "/Condition", b),
            Err(GatewayError::MethodNotAllowed { allowed: "GET", .. })
        ));
    }
}
