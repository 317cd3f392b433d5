//! Strict structural validation of FHIR R4 JSON with fhirbolt, kept safe.
//!
//! fhirbolt's typed parser is the only maintained R4 model, but it is slow, panics on
//! some inputs and mis-parses concrete types (see shared/DEPENDENCIES.md). So: size,
//! syntax and nesting depth are checked first, it parses only into `Resource`, its
//! panics are contained, and it sits behind these two non-generic functions so only
//! this crate pays for its code generation. The strict check is behind the `strict`
//! feature (tests and the adapter harness): the gateway itself needs only the prechecks.

#[cfg(feature = "strict")]
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
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde::de::Deserializer::deserialize_any(&mut de, UniqueKeys)
        .and_then(|()| de.end())
        .map_err(|e| StructureError::Json(e.to_string()))?;
    serde_json::from_slice(bytes).map_err(|e| StructureError::Json(e.to_string()))
}

/// Walks a JSON text refusing any object that repeats a key. serde_json keeps the last
/// of two equal keys; for a clinical write that silently drops what the sender may have
/// meant, so a body naming a key twice is refused instead. (A separate pass rather than
/// a custom `Value` builder, so serde_json's own number handling is kept as it is.)
struct UniqueKeys;

impl<'de> serde::de::DeserializeSeed<'de> for UniqueKeys {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for UniqueKeys {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(UniqueKeys)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if !seen.insert(key.clone()) {
                let shown: String = key.chars().filter(|c| !c.is_control()).take(60).collect();
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate key '{shown}' in an object"
                )));
            }
            map.next_value_seed(UniqueKeys)?;
        }
        Ok(())
    }
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

#[cfg(feature = "strict")]
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

    #[test]
    fn refuses_duplicate_keys_at_any_depth() {
        let top = br#"{"resourceType":"Observation","status":"final","status":"entered-in-error"}"#;
        match precheck(top) {
            Err(StructureError::Json(m)) => assert!(m.contains("duplicate key 'status'"), "{m}"),
            other => panic!("{other:?}"),
        }
        let nested = br#"[{"op":"replace","path":"/telecom","path":"/name","value":[]}]"#;
        assert!(matches!(
            precheck_json(nested),
            Err(StructureError::Json(_))
        ));
        // Equal keys in different objects are fine, and values are kept exactly.
        let ok = br#"{"resourceType":"Patient","a":{"x":1},"b":{"x":-2.5e3},"c":[null,true,"s"]}"#;
        let v = precheck(ok).unwrap();
        assert_eq!(v, serde_json::from_slice::<serde_json::Value>(ok).unwrap());
        assert!(matches!(
            precheck_json(b"{} trailing"),
            Err(StructureError::Json(_))
        ));
        // Out-of-range numbers: whether they parse depends on serde_json's
        // `arbitrary_precision` (on in this workspace, via feature unification); the
        // resource validators refuse them either way (tests/tests/hostile.rs).
        let _ = precheck_json(b"[1e400]");
    }
}
