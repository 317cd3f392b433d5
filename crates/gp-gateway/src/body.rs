//! Capped request-body reads: the only way the gateway reads a body.

use bytes::{Bytes, BytesMut};
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

/// Reads a whole body into one buffer the caller may change in place (a document's
/// content is decoded over its base64), refusing it once it passes `limit` bytes: a
/// declared length over the limit before a byte is read, a body streaming past it as soon
/// as it does. The buffer is sized from the declared length, so it is filled without
/// growing.
pub async fn read_capped_mut(
    mut body: Incoming,
    declared: Option<u64>,
    limit: usize,
) -> Result<BytesMut, GatewayError> {
    if let Some(len) = declared.filter(|l| *l > limit as u64) {
        return Err(GatewayError::BodyTooLarge(len, limit));
    }
    let mut buf = BytesMut::with_capacity(declared.map_or(0, |l| l as usize));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| GatewayError::BodyRead(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(GatewayError::BodyTooLarge(
                    declared.unwrap_or((buf.len() + data.len()) as u64),
                    limit,
                ));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf)
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
