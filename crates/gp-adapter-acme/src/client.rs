//! Acme's native calls, and its error documents mapped to [`AdapterError`]s by the
//! shared status table ([`status_error`]).

use gp_adapter::endpoint::EndpointError;
use gp_adapter::native::{Call, NativeClient, NativeResponse, refusal_detail, status_error};
use gp_adapter::{AdapterError, CallContext};
use gp_fhir::{NhsNumber, OdsCode};
use serde::Deserialize;

use crate::config::AcmeConfig;
use crate::mapping::List;

/// Path prefix of every Acme endpoint.
pub const PREFIX: &str = "/acme/v1";

/// A client of Acme's native API. Cheap to clone; connections are pooled.
#[derive(Debug, Clone)]
pub struct AcmeClient {
    http: NativeClient,
}

impl AcmeClient {
    /// Builds the client from a config (validated first).
    pub fn new(config: &AcmeConfig) -> Result<Self, EndpointError> {
        Ok(Self {
            http: config.endpoint(crate::SYSTEM).client()?,
        })
    }

    /// `GET /practices/{ods}/patients/{nhs}`: demographics, practice and usual GP in
    /// one document, so a Patient read is one native call.
    pub async fn patient(
        &self,
        ods: &OdsCode,
        nhs: NhsNumber,
        ctx: &CallContext,
    ) -> Result<bytes::Bytes, AdapterError> {
        self.get(&format!("{PREFIX}/practices/{ods}/patients/{nhs}"), ctx)
            .await
    }

    /// `GET /practices/{ods}/patients/{nhs}/{list}`: every entry of one list (Acme does
    /// not page; the adapter cuts the page).
    pub async fn list(
        &self,
        ods: &OdsCode,
        nhs: NhsNumber,
        list: List,
        ctx: &CallContext,
    ) -> Result<bytes::Bytes, AdapterError> {
        let path = format!("{PREFIX}/practices/{ods}/patients/{nhs}/{}", list.segment());
        self.get(&path, ctx).await
    }

    /// `GET /health`: ready when it answers `200`.
    /// `GET /practices/{ods}/clinicians/{id}`: one of the practice's clinicians.
    /// `id` has been checked to be URL-safe (a FHIR id).
    pub async fn clinician(
        &self,
        ods: &OdsCode,
        id: &str,
        ctx: &CallContext,
    ) -> Result<bytes::Bytes, AdapterError> {
        self.get(&format!("{PREFIX}/practices/{ods}/clinicians/{id}"), ctx)
            .await
    }

    pub async fn health(&self, ctx: &CallContext) -> Result<(), AdapterError> {
        self.get(&format!("{PREFIX}/health"), ctx).await.map(drop)
    }

    async fn get(&self, path: &str, ctx: &CallContext) -> Result<bytes::Bytes, AdapterError> {
        self.http.get(path, ctx).await?.ok_body(refused)
    }
}

/// Acme's error document: `{"error": {"code": "PATIENT_NOT_FOUND", "message": "…"}}`.
#[derive(Debug, Deserialize)]
struct ErrorDocument {
    error: NativeError,
}

#[derive(Debug, Deserialize)]
struct NativeError {
    code: String,
    #[serde(default)]
    message: String,
}

/// Maps an answer other than `200`: `PATIENT_NOT_FOUND`, `PRACTICE_NOT_FOUND` or
/// `CLINICIAN_NOT_FOUND` on a `404` → `PatientNotFound` (not found); the rest by the shared status table, except that Acme is
/// only read, and a read is never in conflict: a `409` or `422` is a refused request.
pub fn refused(response: &NativeResponse) -> AdapterError {
    let native = serde_json::from_slice::<ErrorDocument>(&response.body)
        .ok()
        .map(|d| d.error);
    let not_found = native.as_ref().is_some_and(|e| {
        matches!(
            e.code.as_str(),
            "PATIENT_NOT_FOUND" | "PRACTICE_NOT_FOUND" | "CLINICIAN_NOT_FOUND"
        )
    });
    let detail = refusal_detail(
        response.status,
        native
            .as_ref()
            .map(|e| (e.code.as_str(), e.message.as_str())),
        "an Acme error document",
    );
    // Acme is read-only: every refusal it answers is to a read.
    status_error(
        crate::SYSTEM,
        Call::Read,
        response.status,
        not_found,
        detail,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &'static str) -> NativeResponse {
        NativeResponse {
            status,
            body: bytes::Bytes::from_static(body.as_bytes()),
            content_type: Some("application/json".into()),
            headers: Default::default(),
        }
    }

    #[test]
    fn error_documents_map_to_typed_errors() {
        let gone = r#"{"error":{"code":"PATIENT_NOT_FOUND","message":"no such patient"}}"#;
        assert_eq!(refused(&answer(404, gone)), AdapterError::PatientNotFound);
        let wrong_url = r#"{"error":{"code":"NOT_FOUND","message":"no such endpoint"}}"#;
        assert_eq!(
            refused(&answer(404, wrong_url)),
            AdapterError::Rejected {
                system: crate::SYSTEM,
                detail: "HTTP 404 NOT_FOUND: no such endpoint".into()
            }
        );
        assert!(matches!(
            refused(&answer(409, r#"{"error":{"code":"BUSY"}}"#)),
            AdapterError::Rejected { detail, .. } if detail == "HTTP 409 BUSY"
        ));
        assert!(matches!(
            refused(&answer(503, "<html>down</html>")),
            AdapterError::Unavailable { detail, .. } if detail == "HTTP 503 without an Acme error document"
        ));
    }
}
