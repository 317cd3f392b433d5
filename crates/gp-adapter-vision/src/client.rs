//! Native calls to Vision's extract API, its `ERROR|CODE|message` bodies mapped to
//! [`AdapterError`]s, and the journal's continuation tokens followed to the end.
//!
//! Vision needs a response header (`X-Vision-Continuation`) that
//! `gp_adapter::native::NativeClient` does not return, so this crate carries its own
//! small transport with the same timeouts, body cap, correlation headers and error
//! mapping. It can move onto `NativeClient` once that exposes response headers.

use std::collections::HashSet;
use std::error::Error as StdError;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gp_adapter::{AdapterError, CallContext, GpSystem};
use gp_fhir::{NhsNumber, OdsCode};
use http::{HeaderValue, Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::{VisionConfig, VisionConfigError};
use crate::error::VisionDataError;
use crate::mapping::parse_error_body;

const SYSTEM: GpSystem = GpSystem::Vision;
/// The response header naming the next journal page.
pub const CONTINUATION_HEADER: &str = "x-vision-continuation";
/// Most journal pages followed for one record (500 rows each): a guard against a
/// server that never stops issuing tokens.
pub const MAX_JOURNAL_PAGES: usize = 2000;

/// A Vision answer: status, the whole (capped) body and the continuation token, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisionResponse {
    pub status: u16,
    pub body: Bytes,
    /// `X-Vision-Continuation`, when present (not yet validated).
    pub continuation: Option<String>,
}

/// A Vision extract API client. Cheap to clone; connections are pooled.
#[derive(Clone)]
pub struct VisionClient {
    base: String,
    request_timeout: Duration,
    max_body_bytes: usize,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl std::fmt::Debug for VisionClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VisionClient")
            .field("base", &self.base)
            .field("request_timeout", &self.request_timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl VisionClient {
    /// Builds the client from a config (validated first; no I/O).
    pub fn new(config: &VisionConfig) -> Result<Self, VisionConfigError> {
        config.validate()?;
        let base = gp_adapter::native::check_base_url(&config.base_url)?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_millis(config.connect_timeout_ms)));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Self {
            base,
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            max_body_bytes: config.max_record_bytes,
            client,
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
            let response = self.get(&url, ctx).await?;
            if response.status != 200 {
                let refused_token = token.is_some()
                    && parse_error_body(&response.body)
                        .is_some_and(|(code, _)| code == "INVALID_CONTINUATION");
                if refused_token {
                    return Err(VisionDataError::Continuation(format!(
                        "the server refused the token it issued ({})",
                        detail(&response)
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
            pages.push(response.body);
            match response.continuation {
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

    /// `GET /vision/health`: ready when it answers 200 with an `OK` status row.
    pub async fn health(&self, ctx: &CallContext) -> Result<(), AdapterError> {
        let response = self.get("/vision/health", ctx).await?;
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
        let response = self.get(path, ctx).await?;
        if response.status == 200 {
            Ok(response.body)
        } else {
            Err(error_from(&response))
        }
    }

    /// `GET {base}{path}` with the request id as `X-Correlation-Id` and the `traceparent`.
    /// Transport failures: refused/reset → `Unavailable`, too slow → `Timeout`, body
    /// over the cap → `InvalidNativeData`.
    pub async fn get(&self, path: &str, ctx: &CallContext) -> Result<VisionResponse, AdapterError> {
        let url = format!("{}{path}", self.base);
        let mut builder = Request::builder().method(Method::GET).uri(&url);
        if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
            builder = builder.header("x-correlation-id", v);
        }
        if let Some(tp) = ctx
            .traceparent
            .as_deref()
            .and_then(|t| HeaderValue::from_str(t).ok())
        {
            builder = builder.header("traceparent", tp);
        }
        let request = builder
            .body(Empty::<Bytes>::new())
            .map_err(|e| AdapterError::Rejected {
                system: SYSTEM,
                detail: format!("cannot build request for {url}: {e}"),
            })?;
        match tokio::time::timeout(self.request_timeout, self.exchange(request)).await {
            Ok(result) => result,
            Err(_) => Err(self.timeout()),
        }
    }

    fn timeout(&self) -> AdapterError {
        AdapterError::Timeout {
            system: SYSTEM,
            after_ms: u64::try_from(self.request_timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }

    async fn exchange(
        &self,
        request: Request<Empty<Bytes>>,
    ) -> Result<VisionResponse, AdapterError> {
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = response.status().as_u16();
        let continuation = response
            .headers()
            .get(CONTINUATION_HEADER)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let too_big = |n: u64| AdapterError::InvalidNativeData {
            system: SYSTEM,
            detail: format!(
                "response body of {n} bytes or more exceeds the {} byte limit",
                self.max_body_bytes
            ),
        };
        let declared = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(n) = declared.filter(|n| *n > self.max_body_bytes as u64) {
            return Err(too_big(n));
        }
        let mut body = response.into_body();
        let mut buf = BytesMut::with_capacity(declared.map_or(8 * 1024, |n| n as usize));
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| AdapterError::Unavailable {
                system: SYSTEM,
                detail: format!(
                    "connection failed while reading the response body: {}",
                    root_cause(&e)
                ),
            })?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > self.max_body_bytes {
                    return Err(too_big((buf.len() + data.len()) as u64));
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(VisionResponse {
            status,
            body: buf.freeze(),
            continuation,
        })
    }

    fn transport_error(&self, e: &hyper_util::client::legacy::Error) -> AdapterError {
        let mut source: Option<&(dyn StdError + 'static)> = e.source();
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::TimedOut
            {
                return self.timeout();
            }
            source = s.source();
        }
        let what = if e.is_connect() {
            "cannot connect"
        } else {
            "connection failed"
        };
        AdapterError::Unavailable {
            system: SYSTEM,
            detail: format!("{what} to {}: {}", self.base, root_cause(e)),
        }
    }
}

fn root_cause(e: &(dyn StdError + 'static)) -> String {
    let mut last: &(dyn StdError + 'static) = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
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

fn detail(response: &VisionResponse) -> String {
    match parse_error_body(&response.body) {
        Some((code, message)) if message.is_empty() => format!("HTTP {} {code}", response.status),
        Some((code, message)) => format!("HTTP {} {code}: {message}", response.status),
        None => format!("HTTP {} without a Vision ERROR line", response.status),
    }
}

/// Maps a non-200 answer: not-found codes → `PatientNotFound`, other 4xx → `Rejected`,
/// 5xx (and anything else) → `Unavailable`.
pub fn error_from(response: &VisionResponse) -> AdapterError {
    let code = parse_error_body(&response.body).map(|(c, _)| c);
    match (response.status, code.as_deref()) {
        (404, Some("PATIENT_NOT_FOUND" | "PRACTICE_NOT_FOUND")) => AdapterError::PatientNotFound,
        (400..=499, _) => AdapterError::Rejected {
            system: SYSTEM,
            detail: detail(response),
        },
        _ => AdapterError::Unavailable {
            system: SYSTEM,
            detail: detail(response),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, body: &'static str) -> VisionResponse {
        VisionResponse {
            status,
            body: Bytes::from_static(body.as_bytes()),
            continuation: None,
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
                system: GpSystem::Vision,
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
    fn tokens_must_be_url_safe() {
        assert!(check_token("1f4-0a1b2c3d").is_ok());
        for bad in ["", "a b", "a&b=c", "x\u{fffd}", &"a".repeat(257)] {
            assert!(check_token(bad).is_err(), "{bad}");
        }
    }
}
