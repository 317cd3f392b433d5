//! Capped request-body reads: the only way the gateway reads a body.

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::error::GatewayError;

/// Reads a whole body, refusing it once it passes `limit` bytes (so a client
/// announcing nothing and streaming forever is cut off at the cap).
pub async fn read_capped(
    body: Incoming,
    declared: Option<u64>,
    limit: usize,
) -> Result<Bytes, GatewayError> {
    if let Some(len) = declared.filter(|l| *l > limit as u64) {
        return Err(GatewayError::BodyTooLarge(len, limit));
    }
    #[allow(clippy::disallowed_methods)] // this is the capped reader the lint points to
    let collected = Limited::new(body, limit).collect().await;
    match collected {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(GatewayError::BodyTooLarge(
            declared.unwrap_or(limit as u64 + 1),
            limit,
        )),
        Err(e) => Err(GatewayError::BodyRead(e.to_string())),
    }
}

/// The bytes of an answer the gateway built itself (whole in memory already, so there
/// is nothing to cap): a batch entry's answer, copied into the batch-response.
pub async fn answered(body: http_body_util::Full<Bytes>) -> Bytes {
    #[allow(clippy::disallowed_methods)] // built in memory by the gateway, not read from a peer
    match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    }
}
