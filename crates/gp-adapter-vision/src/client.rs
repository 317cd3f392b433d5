//! Native calls to Vision's extract API, its `ERROR|CODE|message` bodies mapped to
//! [`AdapterError`]s, the journal's continuation tokens (the `X-Vision-Continuation`
//! response header) followed to the end, and the two writes (journal rows, contact details).

use std::collections::HashSet;

use bytes::Bytes;
use gp_adapter::native::{
    Call, Method, NativeClient, NativeResponse, refusal_detail, status_error,
};
use gp_adapter::{AdapterError, CallContext, GpSystem};
use gp_fhir::{NhsNumber, OdsCode};

use crate::config::{VisionConfig, VisionConfigError};
use crate::error::VisionDataError;
use crate::mapping::parse_error_body;

const SYSTEM: GpSystem = crate::SYSTEM;
/// The request header carrying a journal write's idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "x-vision-idempotency-key";
/// Content type of every body sent to Vision.
const CONTENT_TYPE: &str = "text/plain; charset=utf-8";
/// The response header naming the next journal page.
pub const CONTINUATION_HEADER: &str = "x-vision-continuation";
/// Most journal pages followed for one record (500 rows each): a guard against a
/// server that never stops issuing tokens.
pub const MAX_JOURNAL_PAGES: usize = 2000;

/// A Vision extract API client. Cheap to clone; connections are pooled.
#[derive(Debug, Clone)]
pub struct VisionClient {
    pub(crate) http: NativeClient,
    /// The body cap, applied to each answer and to a whole journal's pages together.
    max_body_bytes: usize,
}

impl VisionClient {
    /// Builds the client from a config (validated first; no I/O).
    pub fn new(config: &VisionConfig) -> Result<Self, VisionConfigError> {
        Ok(Self {
            http: config.endpoint(crate::SYSTEM).client()?,
            max_body_bytes: config.max_record_bytes,
        })
    }

    /// `GET /vision/practices/{ODS}/patients/{NHS}`: the patient extract.
    pub async fn patient(
        &self,
        ods: &OdsCode,
        nhs: NhsNumber,
        ctx: &CallContext,
    ) -> Result<Bytes, AdapterError> {
        self.extract(
            &format!("/vision/practices/{}/patients/{nhs}", ods.as_str()),
            ctx,
        )
        .await
    }

    /// `GET /vision/practices/{ODS}`: the practice extract.
    pub async fn practice(&self, ods: &OdsCode, ctx: &CallContext) -> Result<Bytes, AdapterError> {
        self.extract(&format!("/vision/practices/{}", ods.as_str()), ctx)
            .await
    }

    /// `GET /vision/practices/{ODS}/staff`: the staff extract.
    pub async fn staff(&self, ods: &OdsCode, ctx: &CallContext) -> Result<Bytes, AdapterError> {
        self.extract(&format!("/vision/practices/{}/staff", ods.as_str()), ctx)
            .await
    }

    /// `GET /vision/practices/{ODS}/patients/{NHS}/journal`, following
    /// `X-Vision-Continuation` until a page comes without one: every page's body.
    /// The pages together are held to the body cap; a token that is malformed, repeats,
    /// or is refused by the server that issued it breaks the chain (`InvalidNativeData`).
    pub async fn journal(
        &self,
        ods: &OdsCode,
        nhs: NhsNumber,
        ctx: &CallContext,
    ) -> Result<Vec<Bytes>, AdapterError> {
        let path = format!("/vision/practices/{}/patients/{nhs}/journal", ods.as_str());
        let mut pages = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut token: Option<String> = None;
        let mut total = 0usize;
        for _ in 0..MAX_JOURNAL_PAGES {
            let url = match &token {
                None => path.clone(),
                Some(t) => format!("{path}?continuation={t}"),
            };
            let response = self.http.get(&url, ctx).await?;
            if response.status != 200 {
                let refused_token = token.is_some()
                    && parse_error_body(&response.body)
                        .is_some_and(|(code, _)| code == "INVALID_CONTINUATION");
                if refused_token {
                    return Err(VisionDataError::Continuation(format!(
                        "the server refused the token it issued ({})",
                        refusal(&response).1
                    ))
                    .into());
                }
                return Err(error_from(&response));
            }
            total += response.body.len();
            if total > self.max_body_bytes {
                return Err(AdapterError::InvalidNativeData {
                    system: SYSTEM,
                    detail: format!(
                        "the journal pages together exceed the {} byte limit",
                        self.max_body_bytes
                    ),
                });
            }
            let continuation = response.header(CONTINUATION_HEADER);
            pages.push(response.body);
            match continuation {
                None => return Ok(pages),
                Some(next) => {
                    check_token(&next)?;
                    if !seen.insert(next.clone()) {
                        return Err(VisionDataError::Continuation(format!(
                            "token '{next}' was issued twice"
                        ))
                        .into());
                    }
                    token = Some(next);
                }
            }
        }
        Err(
            VisionDataError::Continuation(format!("still more pages after {MAX_JOURNAL_PAGES}"))
                .into(),
        )
    }

    /// `POST /vision/practices/{ODS}/patients/{NHS}/journal` with a write extract under
    /// idempotency key `key`: `(created, answer)`, the answer being the journal rows
    /// holding the entries (201 created them; 200 means the key had been seen).
    pub async fn record(
        &self,
        ods: &OdsCode,
        nhs: NhsNumber,
        key: &str,
        body: String,
        ctx: &CallContext,
    ) -> Result<(bool, Bytes), AdapterError> {
        let path = format!("/vision/practices/{}/patients/{nhs}/journal", ods.as_str());
        self.http
            .send(
                Method::POST,
                &path,
                Some((CONTENT_TYPE, body.into_bytes())),
                &[(IDEMPOTENCY_HEADER, key.to_owned())],
                ctx,
            )
            .await?
            .created_body(write_error_from)
    }

    /// `PUT /vision/practices/{ODS}/patients/{NHS}/contact` with a contact update
    /// extract: the answer (`PID|NHS_NUMBER|LAST_MODIFIED`).
    pub async fn update_contact(
        &self,
        ods: &OdsCode,
        nhs: NhsNumber,
        body: String,
        ctx: &CallContext,
    ) -> Result<Bytes, AdapterError> {
        let path = format!("/vision/practices/{}/patients/{nhs}/contact", ods.as_str());
        self.http
            .send(
                Method::PUT,
                &path,
                Some((CONTENT_TYPE, body.into_bytes())),
                &[],
                ctx,
            )
            .await?
            .ok_body(write_error_from)
    }

    /// `GET /vision/health`: ready when it answers 200 with an `OK` status row.
    pub async fn health(&self, ctx: &CallContext) -> Result<(), AdapterError> {
        let response = self.http.get("/vision/health", ctx).await?;
        let ok = response.status == 200
            && std::str::from_utf8(&response.body).is_ok_and(|b| b.contains("\r\nOK\r\n"));
        if ok {
            Ok(())
        } else {
            Err(AdapterError::Unavailable {
                system: SYSTEM,
                detail: format!(
                    "health check answered {} without an OK row",
                    response.status
                ),
            })
        }
    }

    async fn extract(&self, path: &str, ctx: &CallContext) -> Result<Bytes, AdapterError> {
        self.http.get(path, ctx).await?.ok_body(error_from)
    }
}

/// A token is opaque but must be safe to put back in a query string unescaped:
/// 1 to 256 of `A-Z a-z 0-9 - . _ ~`.
pub fn check_token(token: &str) -> Result<(), VisionDataError> {
    let ok = (1..=256).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if ok {
        Ok(())
    } else {
        Err(VisionDataError::Continuation(format!(
            "token '{}' is not 1 to 256 URL-safe characters",
            token
                .chars()
                .take(40)
                .filter(|c| !c.is_control())
                .collect::<String>()
        )))
    }
}

/// Whether Vision's ERROR line names an unknown patient or practice, and the detail every
/// mapped error carries: `HTTP {status} {CODE}: {message}`.
fn refusal(response: &NativeResponse) -> (bool, String) {
    let native = parse_error_body(&response.body);
    let not_found = native.as_ref().is_some_and(|(code, _)| {
        matches!(code.as_str(), "PATIENT_NOT_FOUND" | "PRACTICE_NOT_FOUND")
    });
    let detail = refusal_detail(
        response.status,
        native.as_ref().map(|(c, m)| (c.as_str(), m.as_str())),
        "a Vision ERROR line",
    );
    (not_found, detail)
}

/// Maps a non-200 read answer by the shared status table ([`status_error`]): not-found
/// codes on a `404` → `PatientNotFound`, other 4xx → `Rejected`, 5xx (and anything
/// else) → `Unavailable`.
pub fn error_from(response: &NativeResponse) -> AdapterError {
    let (not_found, detail) = refusal(response);
    status_error(SYSTEM, Call::Read, response.status, not_found, detail)
}

/// Maps a write's non-success answer by the shared status table ([`status_error`]):
/// not-found codes on a `404` → `PatientNotFound`, `409 RECORD_MODIFIED` →
/// `VersionConflict`, 422 (a code, unit or value Vision cannot hold) → `Unprocessable`,
/// other 4xx (a request the adapter should not have built) → `Rejected`, 5xx →
/// `Unavailable`; each with Vision's message.
pub fn write_error_from(response: &NativeResponse) -> AdapterError {
    let (not_found, detail) = refusal(response);
    status_error(SYSTEM, Call::Write, response.status, not_found, detail)
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

    #[test]
    fn maps_native_error_lines() {
        assert_eq!(
            error_from(&resp(404, "ERROR|PATIENT_NOT_FOUND|No patient\r\n")),
            AdapterError::PatientNotFound
        );
        assert_eq!(
            error_from(&resp(404, "ERROR|PRACTICE_NOT_FOUND|x\r\n")),
            AdapterError::PatientNotFound
        );
        assert_eq!(
            error_from(&resp(400, "ERROR|INVALID_NHS_NUMBER|bad\r\n")),
            AdapterError::Rejected {
                system: crate::SYSTEM,
                detail: "HTTP 400 INVALID_NHS_NUMBER: bad".into()
            }
        );
        assert!(matches!(
            error_from(&resp(404, "not found")),
            AdapterError::Rejected { .. }
        ));
        assert!(matches!(
            error_from(&resp(500, "")),
            AdapterError::Unavailable { detail, .. } if detail.contains("HTTP 500")
        ));
        assert!(matches!(
            error_from(&resp(503, "ERROR|SERVICE_UNAVAILABLE|down\r\n")),
            AdapterError::Unavailable { .. }
        ));
    }

    #[test]
    fn maps_native_write_errors() {
        assert_eq!(
            write_error_from(&resp(
                409,
                "ERROR|RECORD_MODIFIED|The record was modified since the LAST_MODIFIED given; it is now 20240112093016\r\n"
            )),
            AdapterError::VersionConflict {
                system: crate::SYSTEM,
                detail: "HTTP 409 RECORD_MODIFIED: The record was modified since the LAST_MODIFIED given; it is now 20240112093016".into()
            }
        );
        assert_eq!(
            write_error_from(&resp(
                422,
                "ERROR|UNKNOWN_CODE|row 2: 'XXXX.' is not a Read v2 code\r\n"
            )),
            AdapterError::Unprocessable {
                system: crate::SYSTEM,
                detail: "HTTP 422 UNKNOWN_CODE: row 2: 'XXXX.' is not a Read v2 code".into()
            }
        );
        assert_eq!(
            write_error_from(&resp(404, "ERROR|PATIENT_NOT_FOUND|No patient\r\n")),
            AdapterError::PatientNotFound
        );
        assert!(matches!(
            write_error_from(&resp(400, "ERROR|INVALID_EXTRACT|row 2: bad\r\n")),
            AdapterError::Rejected { detail, .. } if detail == "HTTP 400 INVALID_EXTRACT: row 2: bad"
        ));
        assert!(matches!(
            write_error_from(&resp(503, "ERROR|SERVICE_UNAVAILABLE|down\r\n")),
            AdapterError::Unavailable { .. }
        ));
    }

    #[test]
    fn tokens_must_be_url_safe() {
        assert!(check_token("1f4-0a1b2c3d").is_ok());
        for bad in ["", "a b", "a&b=c", "x\u{fffd}", &"a".repeat(257)] {
            assert!(check_token(bad).is_err(), "{bad}");
        }
    }
}
