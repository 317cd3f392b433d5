//! The kit's HTTP client. Every request a test sends is kept as evidence, redacted as it
//! is recorded: `Authorization` headers, assertions, access tokens (any JWT) and NHS
//! numbers never reach a report.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::model::Verdict;

/// Larger answers are cut: the kit judges APIs, not bulk downloads.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Evidence keeps at most this much of each body.
const EVIDENCE_BODY_CHARS: usize = 8 * 1024;
/// One request may take this long before it is an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// A shared HTTP/1 client.
#[derive(Clone)]
pub struct Client {
    inner: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Default for Client {
    fn default() -> Self {
        Self {
            inner: HyperClient::builder(TokioExecutor::new()).build_http(),
        }
    }
}

/// An answer, as the test sees it (unredacted).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON, or a failure quoting what came instead.
    pub fn json(&self) -> Result<Value, Verdict> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Verdict::Fail(format!(
                "HTTP {}: body is not JSON ({e}): {}",
                self.status,
                redact_text(&String::from_utf8_lossy(
                    &self.body[..self.body.len().min(200)]
                ))
            ))
        })
    }

    /// `issue[0].details.coding[0]` code and system of an OperationOutcome.
    pub fn spine_code(&self) -> Option<(String, String)> {
        let v = self.json().ok()?;
        let coding = v.pointer("/issue/0/details/coding/0")?;
        Some((
            coding["system"].as_str()?.to_owned(),
            coding["code"].as_str()?.to_owned(),
        ))
    }
}

pub use crate::model::Exchange;

/// A test's view of the target: sends requests and keeps the evidence.
pub struct Probe {
    client: Client,
    pub evidence: Vec<Exchange>,
    /// Audit-trail rows a judgement rests on (supplier assessment).
    pub audit_rows: Vec<crate::model::AuditRow>,
}

impl Probe {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            evidence: Vec::new(),
            audit_rows: Vec::new(),
        }
    }

    /// Sends a request; a transport failure is a test error.
    pub async fn send(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Answer, Verdict> {
        let request_id = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("x-request-id"))
            .map(|(_, v)| (*v).to_owned())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut exchange = Exchange {
            method: method.to_owned(),
            url: redact_text(url),
            request_headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), redact_header(k, v)))
                .collect(),
            request_body: redact_body(body),
            status: 0,
            response_headers: Vec::new(),
            response_body: String::new(),
            elapsed_ms: 0,
            request_id: request_id.clone(),
            transport_error: None,
        };
        let started = Instant::now();
        let result = tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.exchange(method, url, headers, &request_id, body),
        )
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {}s", REQUEST_TIMEOUT.as_secs())));
        exchange.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match result {
            Ok(answer) => {
                exchange.status = answer.status;
                exchange.response_headers = answer
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        let v = String::from_utf8_lossy(v.as_bytes());
                        (k.as_str().to_owned(), redact_header(k.as_str(), &v))
                    })
                    .collect();
                exchange.response_body = redact_body(&answer.body);
                self.evidence.push(exchange);
                Ok(answer)
            }
            Err(e) => {
                let message = format!("{method} {}: {e}", redact_text(url));
                exchange.transport_error = Some(e);
                self.evidence.push(exchange);
                Err(Verdict::Error(message))
            }
        }
    }

    async fn exchange(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        request_id: &str,
        body: &[u8],
    ) -> Result<Answer, String> {
        let mut req = http::Request::builder().method(method).uri(url);
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("x-request-id"))
        {
            req = req.header("x-request-id", request_id);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| format!("bad request: {e}"))?;
        let resp = self
            .client
            .inner
            .request(req)
            .await
            .map_err(|e| format!("request failed: {e:?}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let mut body = resp.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("reading the body: {e}"))?;
            if let Ok(data) = frame.into_data() {
                if bytes.len() + data.len() > MAX_BODY_BYTES {
                    return Err(format!("body larger than {MAX_BODY_BYTES} bytes"));
                }
                bytes.extend_from_slice(&data);
            }
        }
        Ok(Answer {
            status,
            headers,
            body: Bytes::from(bytes),
        })
    }

    /// GET with a bearer token, waiting out `429` the way a well-behaved client does
    /// (`Retry-After`, at most 5 times); every attempt stays in the evidence.
    pub async fn get(&mut self, url: &str, token: Option<&str>) -> Result<Answer, Verdict> {
        self.get_with(url, token, &[]).await
    }

    /// [`Probe::get`] with extra headers.
    pub async fn get_with(
        &mut self,
        url: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Result<Answer, Verdict> {
        self.call("GET", url, token, extra, b"").await
    }

    /// A FHIR request (`Accept: application/fhir+json`, the bearer token, `extra`
    /// headers), waiting out `429` (`Retry-After`, at most 5 times).
    pub async fn call(
        &mut self,
        method: &str,
        url: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Answer, Verdict> {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("accept", "application/fhir+json")];
        if let Some(a) = auth.as_deref() {
            headers.push(("authorization", a));
        }
        headers.extend_from_slice(extra);
        self.patiently(method, url, &headers, body).await
    }

    /// POSTs a form to the token endpoint, waiting out `429` (at most 5 times).
    pub async fn post_form(&mut self, url: &str, body: &str) -> Result<Answer, Verdict> {
        let headers = [("content-type", "application/x-www-form-urlencoded")];
        self.patiently("POST", url, &headers, body.as_bytes()).await
    }

    /// [`Probe::send`], then again after each `429`'s `Retry-After` (at most 5 times).
    async fn patiently(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Answer, Verdict> {
        let mut answer = self.send(method, url, headers, body).await?;
        for _ in 0..5 {
            if answer.status != 429 {
                break;
            }
            tokio::time::sleep(retry_after(&answer)).await;
            answer = self.send(method, url, headers, body).await?;
        }
        Ok(answer)
    }
}

/// How long a `429` asks the client to wait (`Retry-After` seconds, 1 to 5).
pub fn retry_after(answer: &Answer) -> Duration {
    let secs: u64 = answer
        .header("retry-after")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1);
    Duration::from_secs(secs.clamp(1, 5))
}

pub(crate) fn redact_header(name: &str, value: &str) -> String {
    if name.eq_ignore_ascii_case("authorization") || name.eq_ignore_ascii_case("cookie") {
        match value.split_once(' ') {
            Some((scheme, _)) => format!("{scheme} [REDACTED]"),
            None => "[REDACTED]".to_owned(),
        }
    } else {
        redact_text(value)
    }
}

pub(crate) fn redact_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out = redact_text(&text);
    if out.len() > EVIDENCE_BODY_CHARS {
        let mut cut = EVIDENCE_BODY_CHARS;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("…[truncated]");
    }
    out
}

/// Redacts what must never reach a report: JWTs (assertions, access tokens), the values
/// of `client_assertion`/`access_token` fields, and NHS numbers (any ten-digit run that
/// passes the modulus 11 check).
pub fn redact_text(text: &str) -> String {
    let text = redact_fields(text);
    let text = redact_jwts(&text);
    redact_nhs_numbers(&text)
}

fn redact_fields(text: &str) -> String {
    let mut out = text.to_owned();
    for field in [
        "client_assertion=",
        "access_token=",
        "\"access_token\":\"",
        "\"client_assertion\":\"",
    ] {
        let mut from = 0;
        while let Some(pos) = out[from..].find(field) {
            let start = from + pos + field.len();
            let end = out[start..]
                .find(['&', '"', ' ', '\n'])
                .map_or(out.len(), |e| start + e);
            if end > start {
                out.replace_range(start..end, "[REDACTED]");
            }
            from = start + "[REDACTED]".len().min(out.len() - start);
        }
    }
    out
}

fn is_b64url(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

fn redact_jwts(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("eyJ") {
        out.push_str(&rest[..pos]);
        let candidate = &rest[pos..];
        let len = candidate
            .find(|c: char| !(is_b64url(c) || c == '.'))
            .unwrap_or(candidate.len());
        let token = &candidate[..len];
        if token.matches('.').count() >= 1 {
            out.push_str("[REDACTED-JWT]");
        } else {
            out.push_str(token);
        }
        rest = &candidate[len..];
    }
    out.push_str(rest);
    out
}

/// Whether ten digits pass the NHS number modulus 11 check.
pub fn is_nhs_number(digits: &[u8]) -> bool {
    if digits.len() != 10 || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = digits[..9]
        .iter()
        .zip((2..=10).rev())
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    let check = (11 - sum % 11) % 11;
    check != 10 && check == u32::from(digits[9] - b'0')
}

fn redact_nhs_numbers(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut last = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if is_nhs_number(&bytes[start..i]) {
                out.push_str(&text[last..start]);
                out.push_str("[NHS-NUMBER]");
                last = i;
            }
        } else {
            i += 1;
        }
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_tokens_assertions_and_nhs_numbers() {
        let body = "grant_type=client_credentials&client_assertion=eyJhbGciOi.eyJpc3Mi.sig&scope=x";
        let r = redact_text(body);
        assert!(!r.contains("eyJ"), "{r}");
        assert!(r.contains("grant_type=client_credentials"));
        let json = r#"{"access_token":"abc.def.ghi","token_type":"Bearer"}"#;
        assert!(!redact_text(json).contains("abc.def"));
        let url = "http://h/FHIR/R4/Patient/9000000009?x=1234567890";
        let r = redact_text(url);
        assert!(r.contains("Patient/[NHS-NUMBER]"), "{r}");
        assert!(r.contains("1234567890"), "not an NHS number: {r}");
        assert_eq!(
            redact_header("Authorization", "Bearer eyJ.x.y"),
            "Bearer [REDACTED]"
        );
    }

    #[test]
    fn nhs_number_check() {
        assert!(is_nhs_number(b"9000000009"));
        assert!(!is_nhs_number(b"9000000008"));
        assert!(is_nhs_number(b"9434765919"));
    }
}
