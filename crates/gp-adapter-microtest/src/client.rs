//! Native calls to Microtest Evolution's v2 JSON API, and its problem+json errors mapped
//! to [`AdapterError`]s.

use bytes::Bytes;
use gp_adapter::json::Document;
use gp_adapter::native::{
    Call, Method, NativeClient, NativeResponse, refusal_detail, status_error,
};
use gp_adapter::{AdapterError, CallContext};
use gp_fhir::{NhsNumber, OdsCode};

use crate::config::{MicrotestConfig, MicrotestConfigError};
use crate::error::MicrotestDataError;
use crate::mapping::{EntryType, parse_problem};

/// Path prefix of every Evolution v2 endpoint.
pub const PREFIX: &str = "/evolution/v2";
/// The content type of write bodies.
pub(crate) const JSON: &str = "application/json";

/// An Evolution v2 API client.
#[derive(Debug, Clone)]
pub struct MicrotestClient {
    pub(crate) http: NativeClient,
}

impl MicrotestClient {
    /// Builds the client from a config (validated first).
    pub fn new(config: &MicrotestConfig) -> Result<Self, MicrotestConfigError> {
        let http = config.endpoint(crate::SYSTEM).client()?;
        Ok(Self { http })
    }

    pub(crate) async fn get(
        &self,
        path: &str,
        ctx: &CallContext,
    ) -> Result<Result<Bytes, NativeResponse>, AdapterError> {
        let response = self.http.get(path, ctx).await?;
        Ok(if response.status == 200 {
            Ok(response.body)
        } else {
            Err(response)
        })
    }

    /// `GET /sites/{ODS}/patients?nhs_number={NHS}`: the patient index (a list).
    pub async fn patient_index(
        &self,
        ods: &OdsCode,
        nhs: NhsNumber,
        ctx: &CallContext,
    ) -> Result<Bytes, AdapterError> {
        let path = format!("{PREFIX}/sites/{}/patients?nhs_number={nhs}", ods.as_str());
        self.get(&path, ctx).await?.map_err(|r| error_from(&r))
    }

    /// `GET /sites/{ODS}/patients/{id}`: demographics and the registered site.
    /// `patient_id` has been checked to be URL-safe (a FHIR id).
    pub async fn patient(
        &self,
        ods: &OdsCode,
        patient_id: &str,
        ctx: &CallContext,
    ) -> Result<Bytes, AdapterError> {
        let path = format!("{PREFIX}/sites/{}/patients/{patient_id}", ods.as_str());
        self.get(&path, ctx).await?.map_err(|r| error_from(&r))
    }

    /// `GET /sites/{ODS}/clinicians/{id}`: the clinician document, or `None` when the
    /// site has no such clinician (`404 CLINICIAN_NOT_FOUND`). `clinician_id` has been
    /// checked to be URL-safe (a FHIR id).
    pub async fn clinician(
        &self,
        ods: &OdsCode,
        clinician_id: &str,
        ctx: &CallContext,
    ) -> Result<Option<Bytes>, AdapterError> {
        let path = format!("{PREFIX}/sites/{}/clinicians/{clinician_id}", ods.as_str());
        match self.get(&path, ctx).await? {
            Ok(body) => Ok(Some(body)),
            Err(r) => match (r.status, parse_problem(&r.body)) {
                (404, Some(p)) if p.code == "CLINICIAN_NOT_FOUND" => Ok(None),
                _ => Err(error_from(&r)),
            },
        }
    }

    /// `GET /sites/{ODS}/patients/{id}/entries?type={type}[&cursor={cursor}]`: one page.
    /// A cursor the system issued and then refuses is a broken cursor (bad native data).
    pub async fn entries(
        &self,
        ods: &OdsCode,
        patient_id: &str,
        kind: EntryType,
        cursor: Option<&str>,
        ctx: &CallContext,
    ) -> Result<Bytes, AdapterError> {
        let mut path = format!(
            "{PREFIX}/sites/{}/patients/{patient_id}/entries?type={}",
            ods.as_str(),
            kind.as_str()
        );
        if let Some(c) = cursor {
            path.push_str("&cursor=");
            path.push_str(c);
        }
        self.get(&path, ctx)
            .await?
            .map_err(|r| match (r.status, parse_problem(&r.body), cursor) {
                (400, Some(p), Some(c)) if p.code == "INVALID_CURSOR" => {
                    MicrotestDataError::BrokenCursor {
                        what: kind.as_str().to_owned(),
                        reason: format!("Evolution refused its own next_cursor '{c}'"),
                    }
                    .into()
                }
                _ => error_from(&r),
            })
    }

    /// `POST /sites/{ODS}/patients/{id}/entries` with `Idempotency-Key: {key}`: records
    /// readings. `Ok((created, body))`: `201` created, `200` the key was seen before.
    pub async fn record_entries(
        &self,
        ods: &OdsCode,
        patient_id: &str,
        key: &str,
        body: Vec<u8>,
        ctx: &CallContext,
    ) -> Result<(bool, Bytes), AdapterError> {
        let path = format!(
            "{PREFIX}/sites/{}/patients/{patient_id}/entries",
            ods.as_str()
        );
        self.http
            .send(
                Method::POST,
                &path,
                Some((JSON, body)),
                &[("idempotency-key", key.to_owned())],
                ctx,
            )
            .await?
            .created_body(write_error_from)
    }

    /// `PUT /sites/{ODS}/patients/{id}/contact`: replaces the contact details if the
    /// record is still at the body's `last_modified`.
    pub async fn update_contact(
        &self,
        ods: &OdsCode,
        patient_id: &str,
        body: Vec<u8>,
        ctx: &CallContext,
    ) -> Result<Bytes, AdapterError> {
        let path = format!(
            "{PREFIX}/sites/{}/patients/{patient_id}/contact",
            ods.as_str()
        );
        self.http
            .send(Method::PUT, &path, Some((JSON, body)), &[], ctx)
            .await?
            .ok_body(write_error_from)
    }

    /// `GET /health`: ready when it answers 200 with `"status": "ok"`.
    pub async fn health(&self, ctx: &CallContext) -> Result<(), AdapterError> {
        let response = self.http.get(&format!("{PREFIX}/health"), ctx).await?;
        let ok = response.status == 200
            && Document::parse(&response.body)
                .is_ok_and(|d| d.get("status").opt_str() == Ok(Some("ok")));
        if ok {
            Ok(())
        } else {
            Err(AdapterError::Unavailable {
                system: crate::SYSTEM,
                detail: format!(
                    "health check answered {} without \"status\": \"ok\"",
                    response.status
                ),
            })
        }
    }
}

/// Maps a non-200 read answer by the shared status table ([`status_error`]):
/// `PATIENT_NOT_FOUND`/`SITE_NOT_FOUND` on a `404` → `PatientNotFound`, other 4xx →
/// `Rejected`, 5xx (and anything else) → `Unavailable`.
pub fn error_from(response: &NativeResponse) -> AdapterError {
    let (not_found, detail) = refusal(response);
    status_error(
        crate::SYSTEM,
        Call::Read,
        response.status,
        not_found,
        detail,
    )
}

/// Maps a refused write by the shared status table ([`status_error`]): `409
/// RECORD_MODIFIED` → `VersionConflict`, `422` (Evolution cannot hold what was sent) →
/// `Unprocessable`, both with the native message alone (`{code}: {detail}`); the rest
/// as [`error_from`] (a `400` means this adapter sent a bad request: `Rejected`).
pub fn write_error_from(response: &NativeResponse) -> AdapterError {
    let (not_found, detail) = refusal(response);
    let detail = match response.status {
        409 | 422 => match parse_problem(&response.body) {
            Some(p) if p.detail.is_empty() => p.code,
            Some(p) => format!("{}: {}", p.code, p.detail),
            None => format!("HTTP {}", response.status),
        },
        _ => detail,
    };
    status_error(
        crate::SYSTEM,
        Call::Write,
        response.status,
        not_found,
        detail,
    )
}

/// Whether a problem document names an unknown patient or site, and the detail every
/// mapped error carries: `HTTP {status} {code}: {detail}`.
fn refusal(response: &NativeResponse) -> (bool, String) {
    let native = parse_problem(&response.body);
    let not_found = native
        .as_ref()
        .is_some_and(|p| matches!(p.code.as_str(), "PATIENT_NOT_FOUND" | "SITE_NOT_FOUND"));
    let detail = refusal_detail(
        response.status,
        native
            .as_ref()
            .map(|p| (p.code.as_str(), p.detail.as_str())),
        "an Evolution problem document",
    );
    (not_found, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, body: &'static str) -> NativeResponse {
        NativeResponse {
            status,
            body: Bytes::from_static(body.as_bytes()),
            content_type: Some("application/problem+json".into()),
            headers: Default::default(),
        }
    }

    #[test]
    fn maps_problem_documents() {
        let nf = r#"{"type":"about:blank","title":"Patient not found","status":404,"detail":"No patient","code":"PATIENT_NOT_FOUND"}"#;
        assert_eq!(error_from(&resp(404, nf)), AdapterError::PatientNotFound);
        assert_eq!(
            error_from(&resp(404, r#"{"status":404,"code":"SITE_NOT_FOUND"}"#)),
            AdapterError::PatientNotFound
        );
        assert_eq!(
            error_from(&resp(
                400,
                r#"{"status":400,"code":"INVALID_NHS_NUMBER","detail":"bad"}"#
            )),
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
    }

    #[test]
    fn maps_refused_writes() {
        let stale = r#"{"status":409,"code":"RECORD_MODIFIED","detail":"it is now at 2024-01-15T10:30:01"}"#;
        assert_eq!(
            write_error_from(&resp(409, stale)),
            AdapterError::VersionConflict {
                system: crate::SYSTEM,
                detail: "RECORD_MODIFIED: it is now at 2024-01-15T10:30:01".into()
            }
        );
        let unit = r#"{"status":422,"code":"INVALID_UNIT","detail":"readings[0].unit: Body weight is recorded in kg, not 'lb'"}"#;
        assert_eq!(
            write_error_from(&resp(422, unit)),
            AdapterError::Unprocessable {
                system: crate::SYSTEM,
                detail: "INVALID_UNIT: readings[0].unit: Body weight is recorded in kg, not 'lb'"
                    .into()
            }
        );
        assert_eq!(
            write_error_from(&resp(404, r#"{"status":404,"code":"PATIENT_NOT_FOUND"}"#)),
            AdapterError::PatientNotFound
        );
        assert!(matches!(
            write_error_from(&resp(400, r#"{"status":400,"code":"INVALID_BODY","detail":"x"}"#)),
            AdapterError::Rejected { detail, .. } if detail == "HTTP 400 INVALID_BODY: x"
        ));
        assert!(matches!(
            write_error_from(&resp(503, "")),
            AdapterError::Unavailable { .. }
        ));
        assert!(matches!(
            error_from(&resp(503, r#"{"code":"SERVICE_UNAVAILABLE"}"#)),
            AdapterError::Unavailable { .. }
        ));
    }
}
