//! Native calls to EMIS Web's EMIS Open API, and its `<Error>` documents mapped to
//! [`AdapterError`]s.

use bytes::Bytes;
use gp_adapter::native::{
    Call, Method, NativeClient, NativeResponse, refusal_detail, status_error,
};
use gp_adapter::{AdapterError, CallContext};
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
        let http = config.endpoint(crate::SYSTEM).client()?;
        Ok(Self { http })
    }

    /// The HTTP client underneath, for the appointment book's calls
    /// ([`crate::appointments`]), which map EMIS's answers themselves.
    pub(crate) fn native(&self) -> &NativeClient {
        &self.http
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
        self.http.get(&path, ctx).await?.ok_body(error_from)
    }

    /// `GET /emis/practices/{ODS}/people/{GUID}`: one member of the practice's staff, a
    /// `<Person>` document.
    pub async fn person(
        &self,
        ods: &OdsCode,
        guid: &str,
        ctx: &CallContext,
    ) -> Result<Bytes, AdapterError> {
        let path = format!("/emis/practices/{}/people/{guid}", ods.as_str());
        self.http.get(&path, ctx).await?.ok_body(error_from)
    }

    /// `POST /emis/practices/{ODS}/patients/{NHS}/observations` with an `ObservationBatch`:
    /// whether the batch was filed now (`201`) rather than seen before under its key
    /// (`200`), and the answer body.
    pub async fn file_observations(
        &self,
        ods: &OdsCode,
        nhs: NhsNumber,
        batch: String,
        ctx: &CallContext,
    ) -> Result<(bool, Bytes), AdapterError> {
        let path = format!(
            "/emis/practices/{}/patients/{nhs}/observations",
            ods.as_str()
        );
        self.http
            .send(
                Method::POST,
                &path,
                Some((XML, batch.into_bytes())),
                &[],
                ctx,
            )
            .await?
            .created_body(write_error_from)
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
        self.http
            .send(
                Method::PUT,
                &path,
                Some((XML, update.into_bytes())),
                &[],
                ctx,
            )
            .await?
            .ok_body(write_error_from)
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
                system: crate::SYSTEM,
                detail: format!(
                    "health check answered {} without <Status>OK</Status>",
                    response.status
                ),
            })
        }
    }
}

/// Maps a non-200 read answer by the shared status table ([`status_error`]):
/// `PATIENT_NOT_FOUND`/`PRACTICE_NOT_FOUND`/`PERSON_NOT_FOUND` on a `404` → `PatientNotFound`, other 4xx →
/// `Rejected`, 5xx → `Unavailable`.
pub fn error_from(response: &NativeResponse) -> AdapterError {
    refused(Call::Read, response)
}

/// Maps a refused write by the shared status table: as [`error_from`], and `409` (a
/// stale `LastModified`) → `VersionConflict`, `422` (a value EMIS cannot file) →
/// `Unprocessable`.
pub fn write_error_from(response: &NativeResponse) -> AdapterError {
    refused(Call::Write, response)
}

fn refused(call: Call, response: &NativeResponse) -> AdapterError {
    let native = parse_error_document(&response.body);
    let native = native.as_ref().map(|(c, m)| (c.as_str(), m.as_str()));
    let not_found = matches!(
        native,
        Some((
            "PATIENT_NOT_FOUND" | "PRACTICE_NOT_FOUND" | "PERSON_NOT_FOUND",
            _
        ))
    );
    let detail = refusal_detail(response.status, native, "an EMIS error document");
    status_error(crate::SYSTEM, call, response.status, not_found, detail)
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
                system: crate::SYSTEM,
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
        // A read is never refused for a stale version: that is a request gone wrong.
        assert!(matches!(
            error_from(&stale),
            AdapterError::Rejected { detail, .. } if detail == "HTTP 409 VERSION_CONFLICT: modified"
        ));
        assert_eq!(
            write_error_from(&stale),
            AdapterError::VersionConflict {
                system: crate::SYSTEM,
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
        assert!(matches!(
            error_from(&unknown_code),
            AdapterError::Rejected { .. }
        ));
        assert_eq!(
            write_error_from(&unknown_code),
            AdapterError::Unprocessable {
                system: crate::SYSTEM,
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
