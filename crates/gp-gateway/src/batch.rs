//! `batch` Bundles (FHIR §3.1.0.11; issue 22 §8): reading the request Bundle into the
//! reads and searches it asks for, and writing the `batch-response`. Each entry is
//! served by the pipeline as a request of its own (routed, authorised, rate-limited and
//! audited like one); this module only knows the Bundle shapes, so it imports nothing
//! of the layers that serve entries.

use gp_auth::{RateDecision, RateLimitExceeded};
use gp_fhir::{FhirError, IssueType, OperationOutcome, SpineCode};
use http::StatusCode;
use serde_json::{Value, json};

/// Most entries one batch may hold: each is a request to a GP system, served in turn.
pub const MAX_ENTRIES: usize = 100;

/// A batch the gateway refuses whole (no entry is served).
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("the request body is not a FHIR JSON Bundle: {0}")]
    NotABundle(String),
    #[error(
        "transaction Bundles are not supported: this gateway serves batches of reads and searches only (Bundle.type = batch, every entry a GET)"
    )]
    Transaction,
    #[error(
        "Bundle.type must be 'batch' (reads and searches, each entry answered on its own), not '{0}'"
    )]
    NotABatch(String),
    #[error(
        "a batch holds at most {MAX_ENTRIES} entries; this one has {0}: split it into several batches"
    )]
    TooManyEntries(usize),
    #[error(
        "this batch has {entries} entries, each one request of your rate limit, which lets at most {fits} through at once beside the batch itself (a burst of {burst}): split it into batches of {fits} or fewer"
    )]
    OverBurst { entries: u32, fits: u32, burst: u32 },
}

impl FhirError for BatchError {
    fn status(&self) -> u16 {
        match self {
            Self::NotABundle(_) => 400,
            Self::Transaction | Self::NotABatch(_) => 422,
            Self::TooManyEntries(_) | Self::OverBurst { .. } => 413,
        }
    }
    fn spine_code(&self) -> SpineCode {
        match self {
            Self::NotABundle(_) | Self::Transaction | Self::NotABatch(_) => {
                SpineCode::InvalidResource
            }
            Self::TooManyEntries(_) | Self::OverBurst { .. } => SpineCode::PayloadTooLarge,
        }
    }
    fn issue_type(&self) -> IssueType {
        match self {
            Self::NotABundle(_) => IssueType::Structure,
            Self::Transaction | Self::NotABatch(_) => IssueType::NotSupported,
            Self::TooManyEntries(_) | Self::OverBurst { .. } => IssueType::TooCostly,
        }
    }
}

/// An entry the gateway refuses without serving it; the rest of the batch goes on.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("batch entry {0} has no request (request.method and request.url)")]
    NoRequest(usize),
    #[error(
        "batch entry {index}: {method} is not served in a batch, which holds reads and searches only (GET); nothing was recorded. Send a write as a request of its own"
    )]
    NotARead { index: usize, method: String },
    #[error(
        "batch entry {index}: request.url '{url}' is not on this server: give it relative to the base (Patient/9000000009, Observation?patient=…) or as {base}/…"
    )]
    ElsewhereUrl {
        index: usize,
        url: String,
        base: String,
    },
    #[error(
        "batch entry {index}: request.{field} is not supported in a batch of reads and searches"
    )]
    Unsupported { index: usize, field: &'static str },
}

impl FhirError for EntryError {
    fn status(&self) -> u16 {
        match self {
            Self::NotARead { .. } => 422,
            _ => 400,
        }
    }
    fn spine_code(&self) -> SpineCode {
        match self {
            Self::NoRequest(_) => SpineCode::MissingValue,
            Self::NotARead { .. } => SpineCode::InvalidResource,
            Self::ElsewhereUrl { .. } | Self::Unsupported { .. } => SpineCode::InvalidValue,
        }
    }
    fn issue_type(&self) -> IssueType {
        match self {
            Self::NoRequest(_) => IssueType::Required,
            Self::NotARead { .. } | Self::Unsupported { .. } => IssueType::NotSupported,
            Self::ElsewhereUrl { .. } => IssueType::Invalid,
        }
    }
}

/// Checks, before any entry is served, that the supplier's rate limit has room for
/// `entries` more requests now (`after_batch`: its state once the batch itself was
/// charged). A batch that does not fit is refused whole, so a client retries it whole:
/// 429 with the seconds until it fits, or 413 when it never can at once.
pub fn within_budget(
    client_id: &str,
    entries: u32,
    after_batch: &RateDecision,
) -> Result<(), crate::error::Rescue> {
    let burst = after_batch.limit;
    let fits = burst.saturating_sub(1);
    if entries > fits {
        return Err(BatchError::OverBurst {
            entries,
            fits,
            burst,
        }
        .into());
    }
    if entries <= after_batch.remaining {
        return Ok(());
    }
    let missing = u64::from(entries - after_batch.remaining);
    let window = after_batch.window_secs.max(1);
    let refused = RateDecision {
        allowed: false,
        retry_after_secs: (missing * window).div_ceil(u64::from(burst.max(1))),
        ..*after_batch
    };
    Err(RateLimitExceeded::new(
        format!(
            "supplier {client_id}: a batch of {entries} entries needs {entries} requests, {} left",
            after_batch.remaining
        ),
        &refused,
    )
    .into())
}

/// One entry's read or search: the path below the FHIR base (`Patient/9000000009`), its
/// query string, and the `If-None-Match` it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRead {
    pub path: String,
    pub query: String,
    pub if_none_match: Option<String>,
}

/// Reads a batch Bundle: each entry is a read or search to serve, or a refusal.
/// `base_url` is this server's FHIR base, which an absolute entry URL must start with.
pub fn parse(
    body: &[u8],
    base_url: &str,
) -> Result<Vec<Result<EntryRead, EntryError>>, BatchError> {
    let bundle: Value = serde_json::from_slice(body)
        .map_err(|e| BatchError::NotABundle(gp_fhir::text::shown(&e.to_string())))?;
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(BatchError::NotABundle(
            "resourceType must be 'Bundle'".into(),
        ));
    }
    match bundle.get("type").and_then(Value::as_str) {
        Some("batch") => {}
        Some("transaction") => return Err(BatchError::Transaction),
        Some(other) => return Err(BatchError::NotABatch(gp_fhir::text::shown(other))),
        None => return Err(BatchError::NotABatch("(none)".into())),
    }
    let entries = match bundle.get("entry") {
        None => return Ok(Vec::new()),
        Some(Value::Array(entries)) => entries,
        Some(_) => {
            return Err(BatchError::NotABundle(
                "Bundle.entry must be an array".into(),
            ));
        }
    };
    if entries.len() > MAX_ENTRIES {
        return Err(BatchError::TooManyEntries(entries.len()));
    }
    Ok(entries
        .iter()
        .enumerate()
        .map(|(index, entry)| entry_read(index, entry, base_url))
        .collect())
}

fn entry_read(index: usize, entry: &Value, base_url: &str) -> Result<EntryRead, EntryError> {
    let request = entry.get("request").ok_or(EntryError::NoRequest(index))?;
    let text = |field: &str| request.get(field).and_then(Value::as_str);
    let (Some(method), Some(url)) = (text("method"), text("url")) else {
        return Err(EntryError::NoRequest(index));
    };
    if method != "GET" {
        return Err(EntryError::NotARead {
            index,
            method: gp_fhir::text::shown(method),
        });
    }
    for field in ["ifModifiedSince", "ifMatch", "ifNoneExist"] {
        if request.get(field).is_some() {
            return Err(EntryError::Unsupported { index, field });
        }
    }
    let base = base_url.trim_end_matches('/');
    let relative = if url.contains("://") {
        url.strip_prefix(base)
            .filter(|rest| rest.is_empty() || rest.starts_with(['/', '?']))
            .ok_or_else(|| EntryError::ElsewhereUrl {
                index,
                url: gp_fhir::text::shown(url),
                base: base.to_owned(),
            })?
    } else {
        url
    };
    let relative = relative.trim_start_matches('/');
    let (path, query) = relative.split_once('?').unwrap_or((relative, ""));
    Ok(EntryRead {
        path: path.to_owned(),
        query: query.to_owned(),
        if_none_match: text("ifNoneMatch").map(str::to_owned),
    })
}

/// What one entry was answered: the status, the headers a batch-response repeats, and
/// the body (a resource, a searchset, or an OperationOutcome).
pub struct EntryAnswer {
    pub status: StatusCode,
    pub etag: Option<String>,
    pub location: Option<String>,
    pub last_modified: Option<String>,
    pub body: Vec<u8>,
}

/// The `batch-response` Bundle for `answers`, in the request's order: a success
/// carries its resource, a refusal its OperationOutcome in `response.outcome`.
pub fn response(id: &str, last_updated: &str, answers: Vec<EntryAnswer>) -> Value {
    let entries: Vec<Value> = answers.into_iter().map(entry_response).collect();
    let mut bundle = json!({
        "resourceType": "Bundle",
        "id": id,
        "meta": { "lastUpdated": last_updated },
        "type": "batch-response",
    });
    if !entries.is_empty() {
        bundle["entry"] = Value::Array(entries);
    }
    bundle
}

fn entry_response(answer: EntryAnswer) -> Value {
    let status = answer.status;
    let mut response = json!({
        "status": format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("")).trim_end().to_owned(),
    });
    for (field, value) in [
        ("etag", answer.etag),
        ("location", answer.location),
        ("lastModified", answer.last_modified),
    ] {
        if let Some(value) = value {
            response[field] = Value::String(value);
        }
    }
    let body: Option<Value> = serde_json::from_slice(&answer.body).ok();
    let mut entry = json!({});
    match body {
        Some(outcome) if !status.is_success() => response["outcome"] = outcome,
        Some(resource) if status.is_success() => entry["resource"] = resource,
        _ => {}
    }
    entry["response"] = response;
    entry
}

/// The answer of an entry refused before it was served.
pub fn refused(error: &EntryError, request_id: &str) -> EntryAnswer {
    let outcome = OperationOutcome::from_error(error).with_id(request_id);
    EntryAnswer {
        status: StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_REQUEST),
        etag: None,
        location: None,
        last_modified: None,
        body: outcome.to_json(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://gw.example/FHIR/R4";

    fn bundle(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn entries_become_reads_and_searches_relative_to_the_base() {
        let body = bundle(json!({
            "resourceType": "Bundle", "type": "batch",
            "entry": [
                { "request": { "method": "GET", "url": "Patient/9000000009" } },
                { "request": { "method": "GET", "url": "/Observation?patient=9000000009&code=x" } },
                { "request": { "method": "GET", "url": format!("{BASE}/Condition?patient=9000000009") } },
                { "request": { "method": "GET", "url": "Patient/9000000009", "ifNoneMatch": "W/\"3\"" } },
            ]
        }));
        let entries = parse(&body, BASE).unwrap();
        let reads: Vec<EntryRead> = entries.into_iter().map(Result::unwrap).collect();
        assert_eq!(reads[0].path, "Patient/9000000009");
        assert_eq!(reads[0].query, "");
        assert_eq!(reads[1].path, "Observation");
        assert_eq!(reads[1].query, "patient=9000000009&code=x");
        assert_eq!(reads[2].path, "Condition");
        assert_eq!(reads[3].if_none_match.as_deref(), Some("W/\"3\""));
    }

    #[test]
    fn a_write_or_foreign_url_fails_its_entry_and_a_transaction_the_whole() {
        let body = bundle(json!({
            "resourceType": "Bundle", "type": "batch",
            "entry": [
                { "request": { "method": "POST", "url": "Observation" }, "resource": {} },
                { "request": { "method": "GET", "url": "https://elsewhere.example/fhir/Patient/9000000009" } },
                { "request": { "method": "GET", "url": "Patient/9000000009", "ifMatch": "W/\"1\"" } },
                { "fullUrl": "urn:uuid:1" },
                { "request": { "method": "GET", "url": "Patient/9000000009" } },
            ]
        }));
        let entries = parse(&body, BASE).unwrap();
        assert!(matches!(entries[0], Err(EntryError::NotARead { .. })));
        assert!(matches!(entries[1], Err(EntryError::ElsewhereUrl { .. })));
        assert!(matches!(
            entries[2],
            Err(EntryError::Unsupported {
                field: "ifMatch",
                ..
            })
        ));
        assert!(matches!(entries[3], Err(EntryError::NoRequest(3))));
        assert!(entries[4].is_ok(), "the rest of the batch goes on");
        let refusal = |v: Value| parse(&bundle(v), BASE).unwrap_err();
        let e = refusal(json!({ "resourceType": "Bundle", "type": "transaction" }));
        assert_eq!(e.status(), 422);
        assert!(e.to_string().contains("reads and searches only"), "{e}");
        assert_eq!(
            refusal(json!({ "resourceType": "Bundle", "type": "collection" })).status(),
            422
        );
        assert_eq!(refusal(json!({ "resourceType": "Patient" })).status(), 400);
        let many: Vec<Value> = (0..=MAX_ENTRIES)
            .map(|_| json!({ "request": { "method": "GET", "url": "metadata" } }))
            .collect();
        let e = refusal(json!({ "resourceType": "Bundle", "type": "batch", "entry": many }));
        assert_eq!(e.status(), 413);
        assert!(e.to_string().contains("at most 100"), "{e}");
        assert!(parse(b"{", BASE).is_err());
    }

    #[test]
    fn a_batch_that_does_not_fit_the_rate_limit_is_refused_whole() {
        let left = |remaining| RateDecision {
            allowed: true,
            limit: 10,
            remaining,
            reset_after_secs: 2,
            retry_after_secs: 0,
            window_secs: 2,
        };
        assert!(within_budget("demo", 9, &left(9)).is_ok());
        assert!(within_budget("demo", 0, &left(0)).is_ok());
        let now = within_budget("demo", 9, &left(4)).unwrap_err();
        assert_eq!(now.error.status(), 429);
        // Five more requests at 10 per 2 s: one second.
        assert!(
            now.error
                .headers()
                .contains(&("retry-after", "1".to_owned()))
        );
        let never = within_budget("demo", 10, &left(9)).unwrap_err();
        assert_eq!(never.error.status(), 413);
        assert!(
            never.error.to_string().contains("at most 9"),
            "{}",
            never.error
        );
    }

    #[test]
    fn the_response_carries_resources_and_outcomes_per_entry() {
        let ok = EntryAnswer {
            status: StatusCode::OK,
            etag: Some("W/\"2\"".into()),
            location: None,
            last_modified: None,
            body: br#"{"resourceType":"Patient","id":"9000000009"}"#.to_vec(),
        };
        let refused = refused(
            &EntryError::NotARead {
                index: 1,
                method: "DELETE".into(),
            },
            "req-1",
        );
        let b = response("req-1", "2026-01-01T00:00:00Z", vec![ok, refused]);
        assert_eq!(b["type"], "batch-response");
        assert_eq!(b["entry"][0]["response"]["status"], "200 OK");
        assert_eq!(b["entry"][0]["response"]["etag"], "W/\"2\"");
        assert_eq!(b["entry"][0]["resource"]["id"], "9000000009");
        assert_eq!(
            b["entry"][1]["response"]["status"],
            "422 Unprocessable Entity"
        );
        assert_eq!(
            b["entry"][1]["response"]["outcome"]["resourceType"],
            "OperationOutcome"
        );
        assert!(b["entry"][1].get("resource").is_none());
    }
}
