//! Strict structural validation of FHIR R4 JSON with fhirbolt, kept safe.
//!
//! fhirbolt's typed parser is the only maintained R4 model, but it is slow, panics on
//! some inputs and mis-parses concrete types (see shared/DEPENDENCIES.md). So: size,
//! syntax and nesting depth are checked first, it parses only into `Resource`, its
//! panics are contained, and it sits behind these two non-generic functions so only
//! this crate pays for its code generation.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::outcome::{FhirError, IssueType, SpineCode};

/// Deepest JSON nesting accepted (UK Core resources need well under 20 levels).
pub const MAX_DEPTH: usize = 32;
/// Largest resource body validated.
pub const MAX_BYTES: usize = 4 * 1024 * 1024;

/// Why a body is not a valid FHIR R4 resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StructureError {
    #[error("resource body is {0} bytes; the limit is {MAX_BYTES}")]
    TooLarge(usize),
    #[error("resource body is not valid JSON: {0}")]
    Json(String),
    #[error("resource body nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("resource body is not a JSON object with a resourceType")]
    NoResourceType,
    #[error("not a valid FHIR R4 {resource_type}: {message}")]
    Fhir {
        resource_type: String,
        message: String,
    },
}

impl FhirError for StructureError {
    fn status(&self) -> u16 {
        match self {
            Self::TooLarge(_) => 413,
            Self::Fhir { .. } => 422,
            _ => 400,
        }
    }
    fn spine_code(&self) -> SpineCode {
        match self {
            Self::TooLarge(_) => SpineCode::PayloadTooLarge,
            Self::Fhir { .. } => SpineCode::InvalidResource,
            _ => SpineCode::InvalidValue,
        }
    }
    fn issue_type(&self) -> IssueType {
        match self {
            Self::TooLarge(_) => IssueType::TooCostly,
            _ => IssueType::Structure,
        }
    }
}

/// Nesting depth of a JSON text, counted without parsing (strings are skipped).
pub fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Size, depth and syntax checks for any JSON body (a JSON Patch, say). Returns the parsed JSON.
pub fn precheck_json(bytes: &[u8]) -> Result<serde_json::Value, StructureError> {
    if bytes.len() > MAX_BYTES {
        return Err(StructureError::TooLarge(bytes.len()));
    }
    if json_depth(bytes) > MAX_DEPTH {
        return Err(StructureError::TooDeep);
    }
    serde_json::from_slice(bytes).map_err(|e| StructureError::Json(e.to_string()))
}

/// Pre-checks shared by every body the gateway reads: size, depth, syntax, and that
/// it is an object naming a `resourceType`. Returns the parsed JSON.
pub fn precheck(bytes: &[u8]) -> Result<serde_json::Value, StructureError> {
    let value = precheck_json(bytes)?;
    match value.get("resourceType") {
        Some(serde_json::Value::String(_)) => Ok(value),
        _ => Err(StructureError::NoResourceType),
    }
}

/// Validates a FHIR R4 JSON resource strictly: unknown elements, wrong JSON types,
/// two choice types at once and missing required elements are refused. Returns the
/// `resourceType`. Code values, dates and invariants are not checked here.
pub fn check_r4_json(bytes: &[u8]) -> Result<String, StructureError> {
    let value = precheck(bytes)?;
    let resource_type = value
        .get("resourceType")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    let config = fhirbolt::serde::DeserializationConfig {
        mode: fhirbolt::serde::DeserializationMode::Strict,
    };
    let parsed = catch_unwind(AssertUnwindSafe(|| {
        fhirbolt::json::from_slice::<fhirbolt::model::r4::Resource>(bytes, Some(config)).map(|_| ())
    }));
    match parsed {
        Ok(Ok(())) => Ok(resource_type),
        Ok(Err(e)) => Err(StructureError::Fhir {
            resource_type,
            message: e.to_string(),
        }),
        Err(_) => Err(StructureError::Fhir {
            resource_type,
            message: "the resource could not be read (an element is empty or malformed)".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_r4_and_refuses_unknown_elements() {
        let ok =
            br#"{"resourceType":"Patient","id":"a","gender":"female","birthDate":"1970-01-01"}"#;
        assert_eq!(check_r4_json(ok).unwrap(), "Patient");
        let unknown = br#"{"resourceType":"Patient","id":"a","colour":"blue"}"#;
        assert!(matches!(
            check_r4_json(unknown),
            Err(StructureError::Fhir { .. })
        ));
        let wrong_type = br#"{"resourceType":"Patient","active":"yes"}"#;
        assert!(matches!(
            check_r4_json(wrong_type),
            Err(StructureError::Fhir { .. })
        ));
    }

    #[test]
    fn contains_the_known_fhirbolt_panic() {
        let panics = br#"{"resourceType":"Patient","identifier":[]}"#;
        assert!(matches!(
            check_r4_json(panics),
            Err(StructureError::Fhir { .. })
        ));
    }

    #[test]
    fn refuses_deep_and_malformed_json_before_fhirbolt() {
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(check_r4_json(deep.as_bytes()), Err(StructureError::TooDeep));
        assert!(matches!(
            check_r4_json(b"{\"resourceType\":"),
            Err(StructureError::Json(_))
        ));
        assert_eq!(check_r4_json(b"[1]"), Err(StructureError::NoResourceType));
        assert_eq!(json_depth(br#"{"a":"{{{{"}"#), 1);
    }
}
