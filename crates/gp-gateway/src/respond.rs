//! Response bodies: the one place a response with a status, a media type and a body is
//! built, so every route answers with the same shape.

use bytes::Bytes;
use gp_adapter::PatientRecord;
use gp_fhir::model::Resource;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

/// A response with `status`, `Content-Type: media_type` and `body`.
pub fn with_type(
    status: StatusCode,
    media_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    resp
}

/// A FHIR JSON response.
pub fn fhir(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    with_type(status, gp_fhir::format::FHIR_JSON, body)
}

/// A plain JSON response (OAuth2 endpoints and operational probes speak JSON, not FHIR).
pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    with_type(status, "application/json", body)
}

/// Adds the headers a refusal names (its `headers()`); a value that is not a valid
/// header value is left out rather than failing the answer.
pub fn add_headers(resp: &mut Response<Full<Bytes>>, headers: Vec<(&'static str, String)>) {
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, value);
        }
    }
}

/// A Patient response (its references named: see `people::named_patient`):
/// `meta.versionId` is the record's version as a FHIR id, and the weak `ETag` quotes it (what `If-Match` and `If-None-Match` quote back).
pub fn patient(status: StatusCode, record: &PatientRecord) -> Response<Full<Bytes>> {
    let mut resp = fhir(status, Resource::Patient(patient_as_read(record)).to_json());
    insert_etag(&mut resp, &gp_fhir::ids::version_id(&record.version));
    resp
}

/// The Patient a read answers: the record's, its references named, with
/// `meta.versionId` (what a `PUT` echoes back).
pub fn patient_as_read(record: &PatientRecord) -> gp_fhir::model::Patient {
    let mut patient = crate::people::named_patient(record);
    patient.meta.get_or_insert_with(Default::default).version_id =
        Some(gp_fhir::ids::version_id(&record.version));
    patient
}

/// A record entry (a read, a vread, a create's answer) with its `meta.versionId` as the
/// `ETag` and its `meta.lastUpdated`, when it has one, as `Last-Modified`.
pub fn entry(status: StatusCode, resource: &Resource) -> Response<Full<Bytes>> {
    let mut resp = fhir(status, resource.to_json());
    let meta = resource.meta();
    if let Some(v) = meta.and_then(|m| m.version_id.as_deref()) {
        insert_etag(&mut resp, v);
    }
    let modified = meta
        .and_then(|m| m.last_updated.as_deref())
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .and_then(|t| {
            t.to_offset(time::UtcOffset::UTC)
                .format(&time::format_description::well_known::Rfc2822)
                .ok()
        });
    // HTTP dates are RFC 2822's in GMT: `Sun, 06 Dec 2026 19:57:07 GMT`.
    if let Some(v) = modified.and_then(|m| HeaderValue::from_str(&m.replace("+0000", "GMT")).ok()) {
        resp.headers_mut().insert(header::LAST_MODIFIED, v);
    }
    resp
}

/// `304 Not Modified` with the version's `ETag`, for a read whose `If-None-Match` names
/// the current version (`version_id`: a Patient's record version as a FHIR id, an
/// entry's `meta.versionId`).
pub fn not_modified(version_id: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::NOT_MODIFIED;
    insert_etag(&mut resp, version_id);
    resp
}

/// The weak `ETag` quoting `version_id`.
fn insert_etag(resp: &mut Response<Full<Bytes>>, version_id: &str) {
    if let Ok(etag) = HeaderValue::from_str(&format!("W/\"{version_id}\"")) {
        resp.headers_mut().insert(header::ETAG, etag);
    }
}

/// The value an entity tag quotes, `W/"v"` or `"v"` (weak and strong alike): `v`, when
/// it is not empty and holds no quote.
pub fn entity_tag_value(tag: &str) -> Option<&str> {
    tag.strip_prefix("W/")
        .unwrap_or(tag)
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .filter(|v| !v.is_empty() && !v.contains('"'))
}

/// True when an `If-None-Match` header names version `version_id` (`*`, or one of a
/// list of entity tags, compared weakly).
pub fn unchanged(headers: &http::HeaderMap, version_id: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || entity_tag_value(tag) == Some(version_id))
}
