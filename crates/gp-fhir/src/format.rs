//! Content negotiation: FHIR JSON only, and a clear 406/415 for anything else.

use crate::outcome::{FhirError, IssueType, SpineCode};

/// The media type of every response body.
pub const FHIR_JSON: &str = "application/fhir+json; fhirVersion=4.0; charset=utf-8";

/// A format the gateway cannot produce or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error(
        "cannot produce '{0}': this server answers in application/fhir+json only (XML is not supported)"
    )]
    NotAcceptable(String),
    #[error("request body type '{0}' is not supported: send application/fhir+json")]
    UnsupportedMediaType(String),
    #[error(
        "PATCH body type '{0}' is not supported: send a JSON Patch as application/json-patch+json, a JSON Merge Patch as application/merge-patch+json, or a partial resource (merge patch) or a FHIRPath Patch Parameters as application/fhir+json or application/json"
    )]
    UnsupportedPatchType(String),
    #[error(
        "POST _search body type '{0}' is not supported: send the search parameters as application/x-www-form-urlencoded"
    )]
    UnsupportedSearchType(String),
}

impl FhirError for FormatError {
    fn status(&self) -> u16 {
        match self {
            Self::NotAcceptable(_) => 406,
            Self::UnsupportedMediaType(_)
            | Self::UnsupportedPatchType(_)
            | Self::UnsupportedSearchType(_) => 415,
        }
    }
    fn spine_code(&self) -> SpineCode {
        match self {
            Self::NotAcceptable(_) => SpineCode::NotAcceptable,
            Self::UnsupportedMediaType(_)
            | Self::UnsupportedPatchType(_)
            | Self::UnsupportedSearchType(_) => SpineCode::UnsupportedMediaType,
        }
    }
    fn issue_type(&self) -> IssueType {
        IssueType::NotSupported
    }
}

fn is_json(media: &str) -> bool {
    matches!(
        media,
        "application/fhir+json"
            | "application/json"
            | "application/json+fhir"
            | "json"
            | "*/*"
            | "application/*"
    )
}

use crate::text::shown;

/// Decides the response format from `_format` (which wins) and `Accept`.
pub fn negotiate(format_param: Option<&str>, accept: Option<&str>) -> Result<(), FormatError> {
    if let Some(f) = format_param {
        let media = f
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        return if is_json(&media) {
            Ok(())
        } else {
            Err(FormatError::NotAcceptable(shown(f)))
        };
    }
    let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
        return Ok(());
    };
    let acceptable = accept.split(',').any(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let refused = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
        });
        is_json(&media) && !refused
    });
    if acceptable {
        Ok(())
    } else {
        Err(FormatError::NotAcceptable(shown(accept)))
    }
}

/// Checks a `POST [type]/_search` body's `Content-Type`: a form, as FHIR asks.
pub fn check_form_content_type(content_type: Option<&str>) -> Result<(), FormatError> {
    let raw = content_type.unwrap_or("");
    let media = raw.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Ok(())
    } else {
        Err(FormatError::UnsupportedSearchType(shown(
            if raw.is_empty() { "(none)" } else { raw },
        )))
    }
}

/// Checks a request body's `Content-Type`.
pub fn check_content_type(
    content_type: Option<&str>,
    also_allowed: &[&str],
) -> Result<(), FormatError> {
    let raw = content_type.unwrap_or("");
    let media = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if matches!(media.as_str(), "application/fhir+json" | "application/json")
        || also_allowed.contains(&media.as_str())
    {
        Ok(())
    } else {
        Err(FormatError::UnsupportedMediaType(shown(
            if raw.is_empty() { "(none)" } else { raw },
        )))
    }
}

/// What a PATCH body is, by its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchFormat {
    /// `application/json-patch+json`: a JSON Patch (RFC 6902).
    JsonPatch,
    /// `application/merge-patch+json`: a JSON Merge Patch (RFC 7386).
    MergePatch,
    /// `application/fhir+json` or `application/json`: a FHIRPath Patch (a `Parameters`
    /// resource) or a partial resource, read as a JSON Merge Patch.
    Fhir,
}

/// Reads a PATCH body's `Content-Type`.
pub fn patch_format(content_type: Option<&str>) -> Result<PatchFormat, FormatError> {
    let raw = content_type.unwrap_or("");
    let media = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/json-patch+json" => Ok(PatchFormat::JsonPatch),
        "application/merge-patch+json" => Ok(PatchFormat::MergePatch),
        "application/fhir+json" | "application/json" => Ok(PatchFormat::Fhir),
        _ => Err(FormatError::UnsupportedPatchType(shown(
            if raw.is_empty() { "(none)" } else { raw },
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_served_xml_is_refused_clearly() {
        assert!(negotiate(None, None).is_ok());
        assert!(negotiate(None, Some("application/fhir+json")).is_ok());
        assert!(negotiate(None, Some("text/html, */*;q=0.8")).is_ok());
        assert!(
            negotiate(Some("json"), Some("application/fhir+xml")).is_ok(),
            "_format overrides Accept"
        );
        assert_eq!(
            negotiate(None, Some("application/fhir+xml")),
            Err(FormatError::NotAcceptable("application/fhir+xml".into()))
        );
        assert!(negotiate(Some("xml"), None).is_err());
        assert!(negotiate(None, Some("application/fhir+json;q=0")).is_err());
        assert!(check_content_type(Some("application/fhir+json; charset=utf-8"), &[]).is_ok());
        assert!(check_content_type(Some("text/plain"), &[]).is_err());
    }

    #[test]
    fn patch_formats_are_told_by_content_type() {
        for (ct, format) in [
            ("application/json-patch+json", PatchFormat::JsonPatch),
            ("Application/Merge-Patch+JSON", PatchFormat::MergePatch),
            ("application/fhir+json; charset=utf-8", PatchFormat::Fhir),
            ("application/json", PatchFormat::Fhir),
        ] {
            assert_eq!(patch_format(Some(ct)), Ok(format), "{ct}");
        }
        for ct in [None, Some("text/plain"), Some("application/xml-patch+xml")] {
            let e = patch_format(ct).unwrap_err();
            assert_eq!(e.status(), 415);
            assert!(
                e.to_string().contains("application/merge-patch+json"),
                "{e}"
            );
        }
    }
}
