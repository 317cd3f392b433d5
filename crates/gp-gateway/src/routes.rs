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

/// One segment of a route's path pattern.
#[derive(Debug, Clone, Copy)]
enum Seg {
    /// Exactly this text.
    Lit(&'static str),
    /// A resource id: not empty, and not an operation name (`$…`).
    Id,
    /// A clinical resource type the adapters serve.
    Clinical,
}

/// One row of the route table: a method, a path pattern below the FHIR base, and the
/// route a matching request makes.
struct Row {
    method: Method,
    path: &'static [Seg],
    make: fn(&[&str]) -> Option<Route>,
}

/// The route table: every FHIR interaction served, in one list. The router matches it,
/// and a path that matches with another method is answered 405 with the `Allow` header
/// listing the methods this table has for it; [`served`] (the CapabilityStatement) reads
/// the same rows.
const ROUTES: &[Row] = &[
    Row {
        method: Method::GET,
        path: &[Seg::Lit("Patient"), Seg::Id],
        make: |s| Some(Route::PatientRead(s[1].to_owned())),
    },
    Row {
        method: Method::GET,
        path: &[Seg::Lit("Patient")],
        make: |_| Some(Route::PatientSearch),
    },
    Row {
        method: Method::PATCH,
        path: &[Seg::Lit("Patient"), Seg::Id],
        make: |s| Some(Route::PatientPatch(s[1].to_owned())),
    },
    Row {
        method: Method::POST,
        path: &[Seg::Lit("Patient"), Seg::Lit(STRUCTURED_RECORD)],
        make: |_| Some(Route::StructuredRecord),
    },
    Row {
        method: Method::GET,
        path: &[Seg::Lit("Patient"), Seg::Id, Seg::Lit(ACCESS_LOG)],
        make: |s| Some(Route::AccessLog(s[1].to_owned())),
    },
    Row {
        method: Method::GET,
        path: &[Seg::Clinical],
        make: |s| ClinicalType::parse(s[0]).map(Route::ClinicalSearch),
    },
    Row {
        method: Method::POST,
        path: &[Seg::Lit("Observation")],
        make: |_| Some(Route::ObservationCreate),
    },
    Row {
        method: Method::GET,
        path: &[Seg::Lit("AuditEvent")],
        make: |_| Some(Route::AuditEventSearch),
    },
    Row {
        method: Method::GET,
        path: &[Seg::Lit("metadata")],
        make: |_| Some(Route::Metadata),
    },
];

fn matches(pattern: &[Seg], segments: &[&str]) -> bool {
    pattern.len() == segments.len()
        && pattern.iter().zip(segments).all(|(p, s)| match p {
            Seg::Lit(l) => l == s,
            Seg::Id => !s.is_empty() && !s.starts_with('$'),
            Seg::Clinical => ClinicalType::parse(s).is_some(),
        })
}

/// Matches a path below the FHIR base (`rest` has no leading base path) and method
/// against [`ROUTES`]. `HEAD` is served wherever `GET` is.
pub fn match_route(method: &Method, rest: &str, base: &str) -> Result<Route, GatewayError> {
    let segments: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    let asked = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    let mut allowed: Vec<&str> = Vec::new();
    for row in ROUTES.iter().filter(|r| matches(r.path, &segments)) {
        if row.method == *asked
            && let Some(route) = (row.make)(&segments)
        {
            return Ok(route);
        }
        if !allowed.contains(&row.method.as_str()) {
            allowed.push(row.method.as_str());
        }
    }
    if allowed.is_empty() {
        return Err(no_route(method, rest, base));
    }
    // GET first, then as the table lists them: `GET, PATCH`, `GET, POST`.
    allowed.sort_by_key(|m| *m != "GET");
    Err(GatewayError::MethodNotAllowed {
        method: shown(method.as_str()),
        path: format!("{base}/{}", shown(rest.trim_start_matches('/'))),
        allowed: allowed.join(", "),
    })
}

fn no_route(method: &Method, rest: &str, base: &str) -> GatewayError {
    GatewayError::NoRoute {
        method: shown(method.as_str()),
        path: format!("{base}/{}", shown(rest.trim_start_matches('/'))),
        base: base.to_owned(),
    }
}

pub use gp_fhir::text::shown;

/// Every resource type and interaction the router serves, for the CapabilityStatement:
/// read from [`ROUTES`] (operations, `$…` paths, are listed as operations instead), with
/// Patient first, then `clinical` in its order, then the rest; within a type, in the
/// table's order.
pub fn served(clinical: &[ClinicalType]) -> Vec<(&'static str, Vec<Interaction>)> {
    let mut pairs: Vec<(&'static str, Interaction)> = Vec::new();
    for row in ROUTES {
        let operation = row
            .path
            .iter()
            .any(|seg| matches!(seg, Seg::Lit(l) if l.starts_with('$')));
        if operation {
            continue;
        }
        // A row with a clinical-type segment serves each type; the others, one route.
        let has_clinical = row.path.iter().any(|seg| matches!(seg, Seg::Clinical));
        let types: Vec<&str> = if has_clinical {
            clinical.iter().map(|t| t.as_str()).collect()
        } else {
            vec![""]
        };
        for t in types {
            let segments: Vec<&str> = row
                .path
                .iter()
                .map(|seg| match seg {
                    Seg::Lit(l) => *l,
                    Seg::Id => "id",
                    Seg::Clinical => t,
                })
                .collect();
            if let Some(pair) = (row.make)(&segments).and_then(|r| r.interaction()) {
                pairs.push(pair);
            }
        }
    }
    let rank = |t: &str| match t {
        "Patient" => 0,
        t => clinical
            .iter()
            .position(|c| c.as_str() == t)
            .map_or(usize::MAX, |i| i + 1),
    };
    let mut out: Vec<(&'static str, Vec<Interaction>)> = Vec::new();
    for (t, i) in pairs {
        match out.iter_mut().find(|(r, _)| *r == t) {
            Some((_, list)) => list.push(i),
            None => out.push((t, vec![i])),
        }
    }
    out.sort_by_key(|(t, _)| rank(t));
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
            Err(GatewayError::MethodNotAllowed { allowed, .. }) if allowed == "GET, PATCH"
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
            Err(GatewayError::MethodNotAllowed { allowed, .. }) if allowed == "GET, POST"
        ));
        assert!(matches!(
            match_route(&Method::POST, "/Condition", b),
            Err(GatewayError::MethodNotAllowed { allowed, .. }) if allowed == "GET"
        ));
    }

    #[test]
    fn allow_lists_the_tables_methods_for_the_path_operations_included() {
        let b = "/FHIR/R4";
        let allowed = |m: Method, path: &str| match match_route(&m, path, b) {
            Err(GatewayError::MethodNotAllowed { allowed, .. }) => allowed,
            other => panic!("{m} {path}: {other:?}"),
        };
        assert_eq!(
            allowed(Method::GET, "/Patient/$gpc.getstructuredrecord"),
            "POST"
        );
        assert_eq!(
            allowed(Method::PATCH, "/Patient/9000000009/$access-log"),
            "GET"
        );
        assert_eq!(allowed(Method::DELETE, "/AuditEvent"), "GET");
        assert_eq!(allowed(Method::POST, "/metadata"), "GET");
        assert_eq!(
            match_route(&Method::HEAD, "/Patient/9000000009", b).unwrap(),
            Route::PatientRead("9000000009".into())
        );
        // An operation name is never read as an id.
        assert!(matches!(
            match_route(&Method::GET, "/Patient/$everything", b),
            Err(GatewayError::NoRoute { .. })
        ));
    }

    #[test]
    fn the_capability_statement_reads_the_same_table() {
        let clinical = [ClinicalType::Condition, ClinicalType::Observation];
        assert_eq!(
            served(&clinical),
            [
                (
                    "Patient",
                    vec![
                        Interaction::Read,
                        Interaction::SearchType,
                        Interaction::Patch
                    ]
                ),
                ("Condition", vec![Interaction::SearchType]),
                (
                    "Observation",
                    vec![Interaction::SearchType, Interaction::Create]
                ),
                ("AuditEvent", vec![Interaction::SearchType]),
            ]
        );
    }
}
