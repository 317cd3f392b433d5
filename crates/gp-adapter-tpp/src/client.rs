//! Native calls to TPP SystmOne's API (one record page per call, and the two writes),
//! and its `<ErrorResponse>` documents mapped to [`AdapterError`]s.

use bytes::Bytes;
use gp_adapter::native::{
    Call, Method, NativeClient, NativeResponse, refusal_detail, status_error,
};
use gp_adapter::{AdapterError, CallContext};
use gp_fhir::{NhsNumber, OdsCode};

use crate::config::{TppConfig, TppConfigError};
use crate::mapping::parse_error_document;

/// A SystmOne API client.
#[derive(Debug, Clone)]
pub struct TppClient {
    pub(crate) http: NativeClient,
    page_size: u32,
}

impl TppClient {
    /// Builds the client from a config (validated first).
    pub fn new(config: &TppConfig) -> Result<Self, TppConfigError> {
        config.validate()?;
        let http = config.endpoint().client()?;
        Ok(Self {
            http,
            page_size: config.page_size,
        })
    }

    /// The `pageSize` every page is requested with.
    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    /// `GET /systmone/api/v1/organisations/{ODS}/patients/{NHS}/record?page=&pageSize=`:
    /// one page of the record's XML.
    pub async fn record_page(
        &self,
        ods: &OdsCode,
        nhs: NhsNumber,
        page: u32,
        ctx: &CallContext,
    ) -> Result<Bytes, AdapterError> {
        let path = format!(
            "/systmone/api/v1/organisations/{}/patients/{nhs}/record?page={page}&pageSize={}",
            ods.as_str(),
            self.page_size
        );
        self.http.get(&path, ctx).await?.ok_body(error_from)
    }

    /// `GET /systmone/api/v1/organisations/{ODS}/staff/{StaffUID}`: one member of the
    /// organisation's staff, a `<StaffMember>` document.
    pub async fn staff_member(
        &self,
        ods: &OdsCode,
        uid: &str,
        ctx: &CallContext,
    ) -> Result<Bytes, AdapterError> {
        let path = format!(
            "/systmone/api/v1/organisations/{}/staff/{uid}",
            ods.as_str()
        );
        self.http.get(&path, ctx).await?.ok_body(error_from)
    }

    /// `POST /systmone/api/v1/organisations/{ODS}/patients/{NHS}/events` with a
    /// `RecordEventsRequest`: answers the status (`201` created, `200` key seen before)
    /// and the `RecordEventsResponse` body. Never retried here.
    pub async fn record_events(
        &self,
        ods: &OdsCode,
        nhs: NhsNumber,
        body: String,
        ctx: &CallContext,
    ) -> Result<(u16, Bytes), AdapterError> {
        let path = format!(
            "/systmone/api/v1/organisations/{}/patients/{nhs}/events",
            ods.as_str()
        );
        let response = self
            .http
            .send(
                Method::POST,
                &path,
                Some((XML, body.into_bytes())),
                &[],
                ctx,
            )
            .await?;
        match response.status {
            200 | 201 => Ok((response.status, response.body)),
            _ => Err(write_error_from(&response)),
        }
    }

    /// `PUT /systmone/api/v1/organisations/{ODS}/patients/{NHS}/demographics/contact`
    /// with a `ContactDetailsUpdate`: the `ContactDetailsUpdateResponse` body.
    pub async fn update_contact(
        &self,
        ods: &OdsCode,
        nhs: NhsNumber,
        body: String,
        ctx: &CallContext,
    ) -> Result<Bytes, AdapterError> {
        let path = format!(
            "/systmone/api/v1/organisations/{}/patients/{nhs}/demographics/contact",
            ods.as_str()
        );
        self.http
            .send(Method::PUT, &path, Some((XML, body.into_bytes())), &[], ctx)
            .await?
            .ok_body(write_error_from)
    }

    /// `GET /systmone/api/v1/health`: ready when it answers 200 with `<Status>OK</Status>`.
    pub async fn health(&self, ctx: &CallContext) -> Result<(), AdapterError> {
        let response = self.http.get("/systmone/api/v1/health", ctx).await?;
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

/// Content type of every request body the API takes.
pub(crate) const XML: &str = "application/xml";

/// The native error code (if the body is a SystmOne ErrorResponse) and the detail
/// every mapped error carries: `HTTP {status} {ErrorCode}: {Description}`.
pub(crate) fn refusal(response: &NativeResponse) -> (Option<String>, String) {
    let native = parse_error_document(&response.body);
    let detail = refusal_detail(
        response.status,
        native.as_ref().map(|(c, d)| (c.as_str(), d.as_str())),
        "a SystmOne ErrorResponse",
    );
    (native.map(|(code, _)| code), detail)
}

fn is_not_found(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("PATIENT_NOT_FOUND" | "ORGANISATION_NOT_FOUND" | "STAFF_NOT_FOUND")
    )
}

/// Maps a refused write by the shared status table ([`status_error`]): `409
/// RECORD_MODIFIED` → `VersionConflict`, not-found codes on a `404` → `PatientNotFound`,
/// `422` (a code, unit or value SystmOne cannot hold) → `Unprocessable`, other 4xx (a
/// request this adapter built wrongly) → `Rejected`, 5xx → `Unavailable`; each keeps the
/// native message. A `409` or `422` that is not SystmOne's own answer is `Rejected`.
pub fn write_error_from(response: &NativeResponse) -> AdapterError {
    let system = crate::SYSTEM;
    let (code, detail) = refusal(response);
    let trusted = match response.status {
        409 => code.as_deref() == Some("RECORD_MODIFIED"),
        422 => code.is_some(),
        _ => true,
    };
    if !trusted {
        return AdapterError::Rejected { system, detail };
    }
    status_error(
        system,
        Call::Write,
        response.status,
        is_not_found(code.as_deref()),
        detail,
    )
}

/// Maps a non-200 read answer by the shared status table ([`status_error`]): not-found
/// codes on a `404` → `PatientNotFound`, other 4xx → `Rejected`, 5xx (and anything
/// else) → `Unavailable`.
pub fn error_from(response: &NativeResponse) -> AdapterError {
    let (code, detail) = refusal(response);
    let not_found = is_not_found(code.as_deref());
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

    fn resp(status: u16, body: &str) -> NativeResponse {
        NativeResponse {
            status,
            body: Bytes::from(body.to_owned()),
            content_type: None,
            headers: Default::default(),
        }
    }

    fn doc(code: &str, text: &str) -> String {
        format!(
            "<ErrorResponse><ErrorCode>{code}</ErrorCode><Description>{text}</Description></ErrorResponse>"
        )
    }

    #[test]
    fn maps_native_error_documents() {
        assert_eq!(
            error_from(&resp(404, &doc("PATIENT_NOT_FOUND", "No patient"))),
            AdapterError::PatientNotFound
        );
        assert_eq!(
            error_from(&resp(404, &doc("ORGANISATION_NOT_FOUND", ""))),
            AdapterError::PatientNotFound
        );
        assert_eq!(
            error_from(&resp(400, &doc("INVALID_NHS_NUMBER", "bad"))),
            AdapterError::Rejected {
                system: crate::SYSTEM,
                detail: "HTTP 400 INVALID_NHS_NUMBER: bad".into()
            }
        );
        // A 404 without the native document is a wrong URL, not an unknown patient.
        assert!(matches!(
            error_from(&resp(404, "not found")),
            AdapterError::Rejected { .. }
        ));
        assert!(matches!(
            error_from(&resp(500, "")),
            AdapterError::Unavailable { detail, .. } if detail.contains("HTTP 500")
        ));
        assert!(matches!(
            error_from(&resp(503, &doc("SERVICE_UNAVAILABLE", ""))),
            AdapterError::Unavailable {
                system: crate::SYSTEM,
                ..
            }
        ));
    }

    #[test]
    fn maps_refused_writes() {
        assert!(matches!(
            write_error_from(&resp(409, &doc("RECORD_MODIFIED", "it is now 2024-07-15T09:30:01Z"))),
            AdapterError::VersionConflict { system: crate::SYSTEM, detail }
                if detail == "HTTP 409 RECORD_MODIFIED: it is now 2024-07-15T09:30:01Z"
        ));
        assert_eq!(
            write_error_from(&resp(404, &doc("PATIENT_NOT_FOUND", "No patient"))),
            AdapterError::PatientNotFound
        );
        assert!(matches!(
            write_error_from(&resp(422, &doc("INVALID_UNITS", "Body weight is recorded in kg, not g"))),
            AdapterError::Unprocessable { detail, .. } if detail.ends_with("recorded in kg, not g")
        ));
        assert!(matches!(
            write_error_from(&resp(400, &doc("INVALID_REQUEST", "DateTime is missing"))),
            AdapterError::Rejected { detail, .. } if detail.contains("INVALID_REQUEST")
        ));
        // A 409 or 422 that is not SystmOne's own answer is not trusted as one.
        assert!(matches!(
            write_error_from(&resp(409, "conflict")),
            AdapterError::Rejected { .. }
        ));
        assert!(matches!(
            write_error_from(&resp(422, "")),
            AdapterError::Rejected { .. }
        ));
        assert!(matches!(
            write_error_from(&resp(503, &doc("SERVICE_UNAVAILABLE", ""))),
            AdapterError::Unavailable { .. }
        ));
    }
}
