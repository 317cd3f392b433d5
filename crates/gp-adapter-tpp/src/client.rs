//! Native calls to TPP SystmOne's API (one record page per call), and its
//! `<ErrorResponse>` documents mapped to [`AdapterError`]s.

use bytes::Bytes;
use gp_adapter::native::{NativeClient, NativeResponse};
use gp_adapter::{AdapterError, CallContext, GpSystem};
use gp_fhir::{NhsNumber, OdsCode};

use crate::config::{TppConfig, TppConfigError};
use crate::mapping::parse_error_document;

/// A SystmOne API client.
#[derive(Debug, Clone)]
pub struct TppClient {
    http: NativeClient,
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
        let response = self.http.get(&path, ctx).await?;
        if response.status == 200 {
            Ok(response.body)
        } else {
            Err(error_from(&response))
        }
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
                system: GpSystem::Tpp,
                detail: format!(
                    "health check answered {} without <Status>OK</Status>",
                    response.status
                ),
            })
        }
    }
}

/// Maps a non-200 answer: not-found codes → `PatientNotFound`, other 4xx → `Rejected`,
/// 5xx (and anything else) → `Unavailable`.
pub fn error_from(response: &NativeResponse) -> AdapterError {
    let system = GpSystem::Tpp;
    let native = parse_error_document(&response.body);
    let detail = match &native {
        Some((code, text)) if text.is_empty() => format!("HTTP {} {code}", response.status),
        Some((code, text)) => format!("HTTP {} {code}: {text}", response.status),
        None => format!("HTTP {} without a SystmOne ErrorResponse", response.status),
    };
    match (response.status, native.as_ref().map(|(c, _)| c.as_str())) {
        (404, Some("PATIENT_NOT_FOUND" | "ORGANISATION_NOT_FOUND")) => {
            AdapterError::PatientNotFound
        }
        (400..=499, _) => AdapterError::Rejected { system, detail },
        _ => AdapterError::Unavailable { system, detail },
    }
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
                system: GpSystem::Tpp,
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
                system: GpSystem::Tpp,
                ..
            }
        ));
    }
}
