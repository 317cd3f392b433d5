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

/// A Patient response with its version as a weak `ETag` (what `If-Match` quotes back).
pub fn patient(status: StatusCode, record: &PatientRecord) -> Response<Full<Bytes>> {
    let mut resp = fhir(status, Resource::Patient(record.patient.clone()).to_json());
    if let Ok(etag) = HeaderValue::from_str(&format!("W/\"{}\"", record.version)) {
        resp.headers_mut().insert(header::ETAG, etag);
    }
    resp
}
