//! FHIR R4 building blocks shared by every gp-gateway crate: NHS identifiers, the
//! OperationOutcome every error becomes, the UK Core resource model the adapters emit,
//! searchset Bundles, search-parameter parsing and content negotiation.
//!
//! It knows nothing of HTTP servers, auth or GP system vendors.

pub mod bundle;
pub mod date;
pub mod format;
pub mod ids;
pub mod include;
pub mod json;
pub mod model;
pub mod outcome;
pub mod search;
pub mod subset;
pub mod text;
pub mod validate;

pub use ids::{NhsNumber, NhsNumberError, OdsCode, OdsCodeError};
pub use outcome::{Blame, FhirError, IssueSeverity, IssueType, OperationOutcome, SpineCode};
