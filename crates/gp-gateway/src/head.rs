//! Request-head checks made before any other work: the URL and header sizes a request
//! may have. A leaf: the pipeline calls it, the server sizes hyper's own limit by it.

use gp_fhir::{FhirError, IssueType, SpineCode};
use http::Request;

/// Longest request target (path and query) accepted: RFC 9110 §4.1 asks servers to
/// take at least 8000 octets; longer ones get a 414 OperationOutcome.
pub const MAX_URL_BYTES: usize = 8 * 1024;

/// A request head over the limits; refused with an OperationOutcome rather than
/// hyper's bare status line.
#[derive(Debug, thiserror::Error)]
pub enum HeadTooLarge {
    #[error("request headers are {size} bytes; at most {max} bytes are accepted")]
    Headers { size: usize, max: usize },
    #[error("request URL is {size} bytes; at most {max} bytes are accepted")]
    Url { size: usize, max: usize },
}

impl FhirError for HeadTooLarge {
    fn status(&self) -> u16 {
        match self {
            Self::Headers { .. } => 431,
            Self::Url { .. } => 414,
        }
    }
    fn spine_code(&self) -> SpineCode {
        SpineCode::PayloadTooLarge
    }
    fn issue_type(&self) -> IssueType {
        IssueType::TooCostly
    }
}

/// Checks a request head against [`MAX_URL_BYTES`] and `max_header_bytes` (request line
/// plus header lines, as sent in HTTP/1.1).
pub fn check_head<B>(req: &Request<B>, max_header_bytes: usize) -> Result<(), HeadTooLarge> {
    let url = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if url > MAX_URL_BYTES {
        return Err(HeadTooLarge::Url {
            size: url,
            max: MAX_URL_BYTES,
        });
    }
    // "METHOD SP target SP HTTP/1.1 CRLF", then "name: value CRLF" per header.
    let size = req.method().as_str().len()
        + url
        + 11
        + req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>();
    if size > max_header_bytes {
        return Err(HeadTooLarge::Headers {
            size,
            max: max_header_bytes,
        });
    }
    Ok(())
}
