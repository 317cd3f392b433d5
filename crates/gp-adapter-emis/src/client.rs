//! Native calls to EMIS Web's EMIS Open API, and its `<Error>` documents mapped to
//! [`AdapterError`]s.

use bytes::Bytes;
use gp_adapter::native::Method;
use gp_adapter::native::{NativeClient, NativeResponse};
use gp_adapter::{AdapterError, CallContext, GpSystem};
use gp_fhir::{NhsNumber, OdsCode};

use crate::config::EmisConfig;
use crate::config::EmisConfigError;
use crate::mapping::{XML, parse_error_document};

/// An EMIS Open API client.
#[derive(Debug, Clone)]
pub struct EmisClient {
    http: NativeClient,
}

impl EmisClient {
    /// Builds the client from a config (validated first).
    pub fn new(config: &EmisConfig) -> Result<Self, EmisConfigError> {
        let http = config.endpoint().client()?;
        Ok(Self { http })
    }

    /// `GET /emis/practices/{ODS}/patients/{NHS}/medicalrecord`: the whole record's XML.
    pub async fn medical_record(
        &self,
        ods: &OdsCode,
        nhs: NhsNumber,
        ctx: &CallContext,
    ) -> Result<Bytes, AdapterError> {
        let path = format!(
            "/emis/practices/{}/patients/{nhs}/medicalrecord",
            ods.as_str()
        );
        let response = self.http.get(&path, ctx).await?;
        if response.status == 200 {
            Ok(response.body)
        } else {
            Err(error_from(&response))
        }
    }

    /// `POST /emis/practices/{ODS}/patients/{NHS}/observations` with an `ObservationBatch`:
    /// the answer body and whether the batch was filed now (`201`) rather than seen
    /// before under its key (`200`).
    pub async fn file_observations(
        &self,
        ods: &OdsCode,
        nhs: NhsNumber,
        batch: String,
        ctx: &CallContext,
    ) -> Result<(Bytes, bool), AdapterError> {
        let path = format!(
            "/emis/practices/{}/patients/{nhs}/observations",
            ods.as_str()
        );
        let response = self
            .http
            .send(
                Method::POST,
                &path,
                Some((XML, batch.into_bytes())),
                &[],
                ctx,
            )
            .await?;
        match response.status {
            201 => Ok((response.body, true)),
            200 => Ok((response.body, false)),
            _ => Err(error_from(&response)),
        }
    }

    /// `PUT /emis/practices/{ODS}/patients/{NHS}/contactdetails` with an
    /// `UpdateContactDetails`: the `ContactDetailsResult` body.
    pub async fn update_contact_details(
        &self,
        ods: &OdsCode,
        nhs: NhsNumber,
        update: String,
        ctx: &CallContext,
    ) -> Result<Bytes, AdapterError> {
        let path = format!(
            "/emis/practices/{}/patients/{nhs}/contactdetails",
            ods.as_str()
        );
        let response = self
            .http
            .send(
                Method::PUT,
                &path,
                Some((XML, update.into_bytes())),
                &[],
                ctx,
            )
            .await?;
        if response.status == 200 {
            Ok(response.body)
        } else {
            Err(error_from(&response))
        }
    }

    /// `GET /emis/health`: ready when it answers 200 with `<Status>OK</Status>`.
    pub async fn health(&self, ctx: &CallContext) -> Result<(), AdapterError> {
        let response = self.http.get("/emis/health", ctx).await?;
        let ok = response.status == 200
            && std::str::from_utf8(&response.body).is_ok_and(|b| b.contains("<Status>OK</Status>"));
        if ok {
            Ok(())
        } else {
            Err(AdapterError::Unavailable {
                system: GpSystem::Emis,
                detail: format!(
                    "health check answered {} without <Status>OK</Status>",
                    response.status
                ),
            })
        }
    }
}

/// Maps a non-success answer: not-found codes → `PatientNotFound`, `409` (a stale
/// `LastModified`) → `VersionConflict`, `422` (a value EMIS cannot file) →
/// `Unprocessable`, other 4xx → `Rejected`, 5xx (and anything else) → `Unavailable`.
pub fn error_from(response: &NativeResponse) -> AdapterError {
    let system = GpSystem::Emis;
    let native = parse_error_document(&response.body);
    let detail = match &native {
        Some((code, message)) if message.is_empty() => format!("HTTP {} {code}", response.status),
        Some((code, message)) => format!("HTTP {} {code}: {message}", response.status),
        None => format!("HTTP {} without an EMIS error document", response.status),
    };
    match (response.status, native.as_ref().map(|(c, _)| c.as_str())) {
        (404, Some("PATIENT_NOT_FOUND" | "PRACTICE_NOT_FOUND")) => AdapterError::PatientNotFound,
        (409, _) => AdapterError::VersionConflict { system, detail },
        (422, _) => AdapterError::Unprocessable { system, detail },
        (400..=499, _) => AdapterError::Rejected { system, detail },
        _ => AdapterError::Unavailable { system, detail },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, body: &'static str) -> NativeResponse {
        NativeResponse {
            status,
            body: Bytes::from_static(body.as_bytes()),
            content_type: None,
            headers: Default::default(),
        }
    }

    const NS: &str = r#"xmlns="http://www.e-mis.com/emisopen/MedicalRecord""#;

    #[test]
    fn maps_native_error_documents() {
        let nf = format!(
            "<Error {NS}><Code>PATIENT_NOT_FOUND</Code><Message>No patient</Message></Error>"
        );
        let nf = NativeResponse {
            status: 404,
            body: Bytes::from(nf),
            content_type: None,
            headers: Default::default(),
        };
        assert_eq!(error_from(&nf), AdapterError::PatientNotFound);
        let pnf = NativeResponse {
            status: 404,
            body: Bytes::from(format!(
                "<Error {NS}><Code>PRACTICE_NOT_FOUND</Code></Error>"
            )),
            content_type: None,
            headers: Default::default(),
        };
        assert_eq!(error_from(&pnf), AdapterError::PatientNotFound);
        let bad = NativeResponse {
            status: 400,
            body: Bytes::from(format!(
                "<Error {NS}><Code>INVALID_NHS_NUMBER</Code><Message>bad</Message></Error>"
            )),
            content_type: None,
            headers: Default::default(),
        };
        assert_eq!(
            error_from(&bad),
            AdapterError::Rejected {
                system: GpSystem::Emis,
                detail: "HTTP 400 INVALID_NHS_NUMBER: bad".into()
            }
        );
        assert!(matches!(
            error_from(&resp(404, "not found")),
            AdapterError::Rejected { .. }
        ));
        assert!(
            matches!(error_from(&resp(500, "")), AdapterError::Unavailable { detail, .. } if detail.contains("HTTP 500"))
        );
        let stale = NativeResponse {
            status: 409,
            body: Bytes::from(format!(
                "<Error {NS}><Code>VERSION_CONFLICT</Code><Message>modified</Message></Error>"
            )),
            content_type: None,
            headers: Default::default(),
        };
        assert_eq!(
            error_from(&stale),
            AdapterError::VersionConflict {
                system: GpSystem::Emis,
                detail: "HTTP 409 VERSION_CONFLICT: modified".into()
            }
        );
        let unknown_code = NativeResponse {
            status: 422,
            body: Bytes::from(format!(
                "<Error {NS}><Code>UNKNOWN_CODE</Code><Message>no such code</Message></Error>"
            )),
            content_type: None,
            headers: Default::default(),
        };
        assert_eq!(
            error_from(&unknown_code),
            AdapterError::Unprocessable {
                system: GpSystem::Emis,
                detail: "HTTP 422 UNKNOWN_CODE: no such code".into()
            }
        );
        assert!(matches!(
            error_from(&resp(415, "")),
            AdapterError::Rejected { .. }
        ));
        assert!(matches!(
            error_from(&resp(
                503,
                "<Error><Code>SERVICE_UNAVAILABLE</Code></Error>"
            )),
            AdapterError::Unavailable { .. }
        ));
    }
}
