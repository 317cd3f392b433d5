//! One delivery: a signed POST of a notification Bundle to a receiver, within a time
//! limit, answered by its status. The receiver's own answer body is never read beyond
//! its status line (nothing of it is logged or kept).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request};
use http_body_util::Full;
use hyper_util::rt::TokioIo;

use super::endpoint::{Conn, Endpoint, EndpointPolicy};
use super::sign::Signed;

/// Headers the gateway sets itself: a subscription's `channel.header` may not name them.
pub const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Delivered(u16),
    /// Any other answer, or none: why, in words fit for the supplier's `$status` and the
    /// logs (no patient data: the body is the gateway's own).
    Failed(String),
}

/// Parses a `channel.header` entry (`Name: value`): a valid header, not one the gateway
/// sets itself.
pub fn parse_header(line: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| "must be `Name: value`".to_owned())?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("`{}` is not a header name", name.trim()))?;
    if RESERVED_HEADERS.contains(&name.as_str()) {
        return Err(format!("`{name}` is set by the gateway itself"));
    }
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("the value of `{name}` is not a valid header value"))?;
    Ok((name, value))
}

/// POSTs `body`, signed as `signed`, to `endpoint`, adding `headers`, within `timeout`
/// (resolution, connection, TLS, request and the answer's status line).
pub async fn post(
    policy: &EndpointPolicy,
    endpoint: &Endpoint,
    headers: &[(HeaderName, HeaderValue)],
    signed: &Signed,
    body: Bytes,
    timeout: Duration,
) -> Outcome {
    match tokio::time::timeout(timeout, exchange(policy, endpoint, headers, signed, body)).await {
        Ok(Ok(status)) if (200..300).contains(&status) => Outcome::Delivered(status),
        Ok(Ok(status)) => Outcome::Failed(format!("the receiver answered {status}")),
        Ok(Err(e)) => Outcome::Failed(e),
        Err(_) => Outcome::Failed(format!("no answer within {} ms", timeout.as_millis())),
    }
}

async fn exchange(
    policy: &EndpointPolicy,
    endpoint: &Endpoint,
    headers: &[(HeaderName, HeaderValue)],
    signed: &Signed,
    body: Bytes,
) -> Result<u16, String> {
    let addrs = policy.resolve(endpoint).await?;
    let conn = policy.connect(endpoint, &addrs).await?;
    let mut req = Request::post(endpoint.path.as_str())
        .header(http::header::HOST, endpoint.authority.as_str())
        .header(http::header::CONTENT_TYPE, "application/fhir+json")
        .header(http::header::USER_AGENT, "gp-gateway-notifications")
        .header("webhook-id", signed.id.as_str())
        .header("webhook-timestamp", signed.timestamp.to_string())
        .header("webhook-signature", signed.signature.as_str())
        .body(Full::new(body))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    for (name, value) in headers {
        req.headers_mut().append(name.clone(), value.clone());
    }
    let status = match conn {
        Conn::Plain(tcp) => send(TokioIo::new(tcp), req).await?,
        Conn::Tls(tls) => send(TokioIo::new(*tls), req).await?,
    };
    Ok(status)
}

async fn send<T>(io: T, req: Request<Full<Bytes>>) -> Result<u16, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let answer = sender.send_request(req).await;
    // The status line is all a delivery needs: the connection closes, its body unread.
    driver.abort();
    let resp = answer.map_err(|e| format!("the receiver did not answer: {e}"))?;
    Ok(resp.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_headers_are_checked_and_cannot_override_the_signature() {
        let (n, v) = parse_header("Authorization: Bearer abc").unwrap();
        assert_eq!(
            (n.as_str(), v.to_str().unwrap()),
            ("authorization", "Bearer abc")
        );
        for bad in [
            "no colon",
            "Bad Name: x",
            "webhook-signature: v1a,forged",
            "Content-Type: text/plain",
            "X-Ok: line\nbreak",
        ] {
            assert!(parse_header(bad).is_err(), "{bad}");
        }
    }
}
