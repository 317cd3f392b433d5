//! Compact JWS parsing with precise failure reasons (signature checked by the caller).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// A JWT split and decoded, not yet verified.
pub(crate) struct RawJwt<'a> {
    /// `header.payload`: the signed bytes.
    pub(crate) message: &'a str,
    /// The base64url signature part.
    pub(crate) signature: &'a str,
    pub(crate) header: Map<String, Value>,
    pub(crate) claims: Map<String, Value>,
}

/// Why a string is not a well-formed compact JWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JwtShapeError {
    /// Not three dot-separated parts.
    Parts(usize),
    /// A part is not base64url (no padding).
    Base64(&'static str),
    /// A part is not a JSON object.
    Json(&'static str),
}

impl JwtShapeError {
    pub(crate) fn describe(self) -> String {
        match self {
            Self::Parts(5) => {
                "it has 5 parts (an encrypted JWE); a signed JWS with 3 parts is required".into()
            }
            Self::Parts(n) => format!("it has {n} part(s); a JWT has 3 parts separated by '.'"),
            Self::Base64(part) => format!("the {part} is not valid base64url"),
            Self::Json(part) => format!("the {part} is not a JSON object"),
        }
    }
}

pub(crate) fn parse(token: &str) -> Result<RawJwt<'_>, JwtShapeError> {
    let parts = token.split('.').count();
    if parts != 3 {
        return Err(JwtShapeError::Parts(parts));
    }
    let Some((message, signature)) = token.rsplit_once('.') else {
        return Err(JwtShapeError::Parts(parts));
    };
    let Some((header_b64, claims_b64)) = message.split_once('.') else {
        return Err(JwtShapeError::Parts(parts));
    };
    let header = decode_object(header_b64, "header")?;
    let claims = decode_object(claims_b64, "payload")?;
    if URL_SAFE_NO_PAD.decode(signature).is_err() {
        return Err(JwtShapeError::Base64("signature"));
    }
    Ok(RawJwt {
        message,
        signature,
        header,
        claims,
    })
}

fn decode_object(part: &str, name: &'static str) -> Result<Map<String, Value>, JwtShapeError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtShapeError::Base64(name))?;
    serde_json::from_slice(&bytes).map_err(|_| JwtShapeError::Json(name))
}

pub(crate) use gp_fhir::text::shown;
