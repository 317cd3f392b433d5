//! Documents in a patient's record: listing them (`GET /DocumentReference`), reading one
//! (`GET /DocumentReference/{id}`) and its content (`GET /Binary/{id}`), and filing new
//! ones (`POST /Binary`, `POST /DocumentReference`).
//!
//! Ids are `{ODS}-{native content id}` (`gp_adapter::practice_ids`), a document's and its
//! content's alike, so a read by id learns the patient from the content before the
//! release rules (`release`) decide whether to answer; an id naming a practice the
//! supplier is not paired with reads exactly as an unknown one. Content is checked
//! (`document_content`) before anything is sent to a GP system, and inline content is
//! decoded in the body's own buffer (`inline_data`), so filing a 5 MB PDF costs about
//! one copy of its base64.

use bytes::{Bytes, BytesMut};
use gp_adapter::documents::fhir as map;
use gp_adapter::practice_ids::{fhir_id, split_id};
use gp_adapter::time::UtcDateTime;
use gp_adapter::{
    ContentRequest, DocumentContent, DocumentMeta, DocumentSearchRequest, FileDocumentRequest,
    NewDocument, UploadContentRequest,
};
use gp_fhir::bundle::Searchset;
use gp_fhir::model::{Resource, SNOMED};
use gp_fhir::search::{Paging, SearchError};
use gp_fhir::{FhirError, IssueType, NhsNumber, OdsCode, SpineCode};
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::access::Caller;
use crate::app::App;
use crate::appointments::{date_bound, epoch, practice_of, unknown};
use crate::context::RequestIds;
use crate::document_content::{self as content, Refused};
use crate::error::{GatewayError, Rescue};
use crate::inline_data::{Inline, Text};
use crate::release::released_patient;
use crate::write_body::Invalid;

/// What a JSON `POST /DocumentReference` body may hold besides the content itself.
pub const JSON_OVERHEAD: usize = 64 * 1024;
/// The header naming the patient a raw `POST /Binary` is for (FHIR R4 http.html).
pub const SECURITY_CONTEXT: &str = "x-security-context";
/// Record artifact codes (SNOMED CT) with their displays, for a type sent without one.
const KNOWN_TYPES: &[(&str, &str)] = &[
    ("371530004", "Clinical consultation report"),
    ("823691000000103", "Clinical letter"),
    ("373942005", "Discharge summary"),
    ("4241000179101", "Laboratory report"),
];

/// The largest body `POST /DocumentReference` (JSON, base64 content) and `POST /Binary`
/// take: the base64 of the largest content plus the rest of the resource.
pub fn upload_body_limit(max_upload: usize) -> usize {
    crate::inline_data::encoded_len(max_upload) + JSON_OVERHEAD
}

/// Refusals particular to documents.
#[derive(Debug, thiserror::Error)]
pub enum DocumentRefusal {
    /// Content over `[documents] max_inline_bytes`.
    #[error(
        "Binary/{id} is {size} bytes, more than this API transfers ({limit} bytes): please contact the practice for a copy"
    )]
    TooLarge { id: String, size: u64, limit: u64 },
    /// `Accept` names nothing the content can be given as.
    #[error(
        "cannot answer Binary as '{0}': accept the content's own type ({1}) or */* for its bytes, or application/fhir+json for a FHIR Binary"
    )]
    NotAcceptable(String, String),
    /// A raw `POST /Binary` of a type that is not filed.
    #[error("{0}")]
    UnsupportedType(String),
}

impl FhirError for DocumentRefusal {
    fn status(&self) -> u16 {
        match self {
            Self::TooLarge { .. } => 403,
            Self::NotAcceptable(..) => 406,
            Self::UnsupportedType(_) => 415,
        }
    }
    fn spine_code(&self) -> SpineCode {
        match self {
            Self::TooLarge { .. } => SpineCode::AccessDenied,
            Self::NotAcceptable(..) => SpineCode::NotAcceptable,
            Self::UnsupportedType(_) => SpineCode::UnsupportedMediaType,
        }
    }
    fn issue_type(&self) -> IssueType {
        match self {
            Self::TooLarge { .. } => IssueType::TooCostly,
            Self::NotAcceptable(..) | Self::UnsupportedType(_) => IssueType::NotSupported,
        }
    }
}

fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn now_utc() -> UtcDateTime {
    let t = time::OffsetDateTime::now_utc();
    UtcDateTime {
        year: t.year(),
        month: u8::from(t.month()),
        day: t.day(),
        hour: t.hour(),
        minute: t.minute(),
        second: t.second(),
    }
}

/// 422 INVALID_PARAMETER naming a search parameter.
fn bad_parameter(name: &str, why: impl std::fmt::Display) -> Invalid {
    Invalid {
        status: 422,
        code: SpineCode::InvalidParameter,
        issue: IssueType::Invalid,
        path: name.to_owned(),
        message: format!("search parameter '{name}': {why}"),
    }
}

/// A content refusal as a 422 naming the element at fault.
fn refused_at(r: Refused, type_path: &str, data_path: &str) -> Invalid {
    let path = match r {
        Refused::ActiveContent(_) => data_path,
        Refused::UnsupportedType(_) | Refused::Mismatch(_) => type_path,
    };
    Invalid::resource(path, r.to_string())
}

// ---------------------------------------------------------------------------------------
// GET /DocumentReference

/// A document search, as parsed.
#[derive(Debug, Default)]
struct DocumentSearch {
    nhs: Option<NhsNumber>,
    /// `(parameter, prefix, bound in seconds, a dateTime)`.
    dates: Vec<(&'static str, String, i64, bool)>,
    types: Vec<String>,
    authors: Vec<String>,
    paging: Option<Paging>,
}

fn parse_search(
    query: &[(String, String)],
    limits: gp_fhir::search::PagingLimits,
) -> Result<DocumentSearch, Rescue> {
    const KNOWN: &[&str] = &[
        "patient",
        "patient:identifier",
        "subject",
        "date",
        "created",
        "type",
        "author",
        "author:identifier",
        "_count",
        "_offset",
        "_format",
    ];
    if let Some((k, _)) = query.iter().find(|(k, _)| !KNOWN.contains(&k.as_str())) {
        return Err(
            SearchError::UnknownParameter(crate::routes::shown(k), KNOWN.join(", ")).into(),
        );
    }
    let mut s = DocumentSearch::default();
    let patients: Vec<&str> = query
        .iter()
        .filter(|(k, _)| matches!(k.as_str(), "patient" | "patient:identifier" | "subject"))
        .map(|(_, v)| v.as_str())
        .collect();
    let raw = match patients.as_slice() {
        [one] => *one,
        [] => return Err(SearchError::Missing("patient").into()),
        _ => return Err(SearchError::Repeated("patient".into()).into()),
    };
    let nhs_text = raw
        .strip_prefix("Patient/")
        .or_else(|| raw.strip_prefix(&format!("{}|", gp_fhir::ids::NHS_NUMBER_SYSTEM)))
        .unwrap_or(raw);
    s.nhs = Some(NhsNumber::parse(nhs_text).map_err(SearchError::from)?);
    for (k, v) in query {
        match k.as_str() {
            "date" | "created" => {
                let name = if k == "date" { "date" } else { "created" };
                let (prefix, value) = match v.split_at_checked(2) {
                    Some((p @ ("ge" | "gt" | "le" | "lt"), d)) => (p, d),
                    _ => {
                        return Err(bad_parameter(
                            name,
                            "give a bound as ge{date}, gt{date}, le{date} or lt{date} (a date, or a dateTime with its offset)",
                        )
                        .into());
                    }
                };
                let instant = value.contains('T');
                // ge and lt bound at a day's start, gt and le at its end.
                let day_end = matches!(prefix, "gt" | "le");
                let bound = date_bound(value, day_end).ok_or_else(|| {
                    bad_parameter(
                        name,
                        format!(
                            "'{}' is not a full date (yyyy-mm-dd) or a dateTime with its offset",
                            crate::routes::shown(value)
                        ),
                    )
                })?;
                s.dates.push((name, prefix.to_owned(), bound, instant));
            }
            "type" => {
                for t in v.split(',') {
                    let code = match t.split_once('|') {
                        Some((SNOMED, code)) | Some(("", code)) => code,
                        Some(_) => {
                            return Err(bad_parameter(
                                "type",
                                format!("a document type is a SNOMED CT code: {SNOMED}|{{code}} or {{code}}"),
                            )
                            .into());
                        }
                        None => t,
                    };
                    if code.is_empty() || !code.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(bad_parameter("type", "a SNOMED CT code is digits").into());
                    }
                    s.types.push(code.to_owned());
                }
            }
            "author" | "author:identifier" => {
                for a in v.split(',') {
                    let ods = if k == "author" {
                        a.strip_prefix("Organization/").unwrap_or(a)
                    } else {
                        a.strip_prefix(gp_fhir::ids::ODS_CODE_SYSTEM)
                            .and_then(|r| r.strip_prefix('|'))
                            .ok_or_else(|| {
                                bad_parameter(
                                    "author:identifier",
                                    format!("give {}|{{ODS code}}", gp_fhir::ids::ODS_CODE_SYSTEM),
                                )
                            })?
                    };
                    if ods.is_empty() || !ods.bytes().all(|b| b.is_ascii_alphanumeric()) {
                        return Err(bad_parameter(k, "an ODS code is letters and digits").into());
                    }
                    s.authors.push(ods.to_ascii_uppercase());
                }
            }
            _ => {}
        }
    }
    let mut paging = Paging {
        count: limits.default_count,
        offset: 0,
    };
    for (k, v) in query {
        let n = || {
            v.parse::<u32>()
                .map_err(|_| bad_parameter(k, "expected a non-negative whole number"))
        };
        match k.as_str() {
            "_count" => paging.count = n()?.min(limits.max_count),
            "_offset" => paging.offset = n()?,
            _ => {}
        }
    }
    s.paging = Some(paging);
    Ok(s)
}

impl DocumentSearch {
    fn keeps(&self, d: &DocumentMeta) -> bool {
        let dates_ok = self.dates.iter().all(|(name, prefix, bound, instant)| {
            let t = epoch(if *name == "date" {
                d.indexed
            } else {
                d.created
            });
            match (prefix.as_str(), instant) {
                ("ge", _) => t >= *bound,
                ("gt", true) => t > *bound,
                ("gt", false) => t >= *bound,
                ("le", true) => t <= *bound,
                ("le", false) | ("lt", _) => t < *bound,
                _ => false,
            }
        });
        let type_ok = self.types.is_empty() || self.types.contains(&d.type_snomed);
        let author_ok = self.authors.is_empty()
            || d.author_ods
                .as_deref()
                .is_some_and(|a| self.authors.iter().any(|x| x.eq_ignore_ascii_case(a)));
        dates_ok && type_ok && author_ok
    }
}

/// `GET /DocumentReference?patient=…`: the patient's documents the supplier may see,
/// filtered, newest first, paged.
pub(crate) async fn search(
    app: &App,
    query: &[(String, String)],
    ids: &RequestIds,
    caller: &Caller,
) -> Result<Response<Full<Bytes>>, Rescue> {
    let search = parse_search(query, app.paging)?;
    let (Some(nhs), Some(paging)) = (search.nhs, search.paging) else {
        return Err(SearchError::Missing("patient").into());
    };
    let released = released_patient(app, nhs, ids, caller).await?;
    let mut found = released
        .adapter
        .search_documents(&DocumentSearchRequest {
            nhs_number: nhs,
            practice: released.practice.clone(),
            context: ids.call_context(),
        })
        .await
        .map_err(GatewayError::Adapter)?;
    // Confidential documents are withheld as confidential entries are.
    found.retain(|d| d.nhs_number == nhs && !d.confidential && search.keeps(d));
    found.sort_by_key(|d| std::cmp::Reverse(epoch(d.indexed)));
    let total = found.len() as u32;
    let page: Vec<Resource> = found
        .iter()
        .skip(paging.offset as usize)
        .take(paging.count as usize)
        .map(|d| {
            Resource::DocumentReference(map::document_reference(
                &released.practice,
                d,
                app.documents.max_inline_bytes,
            ))
        })
        .collect();
    let params: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "_count" | "_offset"))
        .cloned()
        .collect();
    let last_updated = rfc3339_now();
    let bundle = Searchset {
        base_url: &ids.base_url,
        resource_type: "DocumentReference",
        params: &params,
        paging,
        total,
        id: &ids.request_id,
        last_updated: &last_updated,
    }
    .build(page);
    Ok(crate::respond::fhir(StatusCode::OK, bundle.to_json()))
}

// ---------------------------------------------------------------------------------------
// GET /DocumentReference/{id}, GET /Binary/{id}

/// The content an id names, when the caller may see it: the practice paired, the
/// patient released, the document not confidential. Anything else is "unknown".
async fn released_content(
    app: &App,
    resource_type: &str,
    id: &str,
    ids: &RequestIds,
    caller: &Caller,
) -> Result<(OdsCode, String, DocumentContent, crate::release::Released), Rescue> {
    let (ods, native, adapter) =
        practice_of(app, id, caller).ok_or_else(|| unknown(resource_type, id))?;
    let content = adapter
        .read_content(&ContentRequest {
            practice: ods.clone(),
            content_id: native.to_owned(),
            context: ids.call_context(),
        })
        .await
        .map_err(GatewayError::Adapter)?
        .ok_or_else(|| unknown(resource_type, id))?;
    // The release rules of the patient the content belongs to, before anything of it.
    let released = released_patient(app, content.nhs_number, ids, caller).await?;
    if released.practice != ods || content.confidential {
        tracing::debug!(reason = "confidential-or-elsewhere", "document withheld");
        return Err(unknown(resource_type, id).into());
    }
    Ok((ods, native.to_owned(), content, released))
}

/// `GET /DocumentReference/{id}`.
pub(crate) async fn read(
    app: &App,
    id: &str,
    ids: &RequestIds,
    caller: &Caller,
) -> Result<Response<Full<Bytes>>, Rescue> {
    let (ods, native, content, released) =
        released_content(app, "DocumentReference", id, ids, caller).await?;
    let nhs = content.nhs_number;
    drop(content);
    let documents = released
        .adapter
        .search_documents(&DocumentSearchRequest {
            nhs_number: nhs,
            practice: ods.clone(),
            context: ids.call_context(),
        })
        .await
        .map_err(GatewayError::Adapter)?;
    let d = documents
        .iter()
        .find(|d| d.content_id == native && !d.confidential)
        .ok_or_else(|| unknown("DocumentReference", id))?;
    let resource = Resource::DocumentReference(map::document_reference(
        &ods,
        d,
        app.documents.max_inline_bytes,
    ));
    Ok(crate::respond::entry(StatusCode::OK, &resource))
}

/// How a Binary read is answered.
#[derive(Debug, PartialEq, Eq)]
enum BinaryAs {
    Raw,
    Fhir,
}

/// The first of `Accept`'s ranges (in the order given) that the content's bytes or a FHIR
/// Binary can answer; `_format` asks for FHIR JSON. No `Accept` at all: the bytes.
fn binary_as(
    query: &[(String, String)],
    headers: &HeaderMap,
    content_type: &str,
) -> Result<BinaryAs, DocumentRefusal> {
    if let Some((_, f)) = query.iter().find(|(k, _)| k == "_format") {
        return match f.as_str() {
            "json" | "application/json" | "application/fhir+json" => Ok(BinaryAs::Fhir),
            other => Err(DocumentRefusal::NotAcceptable(
                crate::routes::shown(other),
                content_type.to_owned(),
            )),
        };
    }
    let Some(accept) = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|a| !a.is_empty())
    else {
        return Ok(BinaryAs::Raw);
    };
    let (major, _) = content_type.split_once('/').unwrap_or((content_type, ""));
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let refused = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
        });
        if refused {
            continue;
        }
        if media == content_type || media == "*/*" || media == format!("{major}/*") {
            return Ok(BinaryAs::Raw);
        }
        if matches!(media.as_str(), "application/fhir+json" | "application/json") {
            return Ok(BinaryAs::Fhir);
        }
    }
    Err(DocumentRefusal::NotAcceptable(
        crate::routes::shown(accept),
        content_type.to_owned(),
    ))
}

/// `GET /Binary/{id}`: the content's bytes, or a FHIR Binary with them in base64.
pub(crate) async fn read_binary(
    app: &App,
    id: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
    ids: &RequestIds,
    caller: &Caller,
) -> Result<Response<Full<Bytes>>, Rescue> {
    if let Some((k, _)) = query.iter().find(|(k, _)| k != "_format") {
        return Err(
            SearchError::UnknownParameter(crate::routes::shown(k), "_format".into()).into(),
        );
    }
    let (_, _, content, _) = released_content(app, "Binary", id, ids, caller).await?;
    let size = content.bytes.len() as u64;
    if size > app.documents.max_inline_bytes {
        return Err(DocumentRefusal::TooLarge {
            id: crate::routes::shown(id),
            size,
            limit: app.documents.max_inline_bytes,
        }
        .into());
    }
    let media = content::media_type(&content.content_type).unwrap_or("application/octet-stream");
    match binary_as(query, headers, media)? {
        BinaryAs::Raw => Ok(crate::respond::with_type(
            StatusCode::OK,
            media,
            content.bytes,
        )),
        BinaryAs::Fhir => {
            use base64::Engine as _;
            let body = json!({
                "resourceType": "Binary",
                "id": id,
                "contentType": media,
                "securityContext": { "reference": format!("Patient/{}", content.nhs_number) },
                "data": base64::engine::general_purpose::STANDARD.encode(&content.bytes),
            });
            Ok(crate::respond::fhir(
                StatusCode::OK,
                serde_json::to_vec(&body).unwrap_or_default(),
            ))
        }
    }
}

// ---------------------------------------------------------------------------------------
// POST /Binary

/// A FHIR JSON Binary, its data borrowed from the body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IncomingBinary<'a> {
    resource_type: Option<String>,
    content_type: Option<String>,
    security_context: Option<Value>,
    #[serde(borrow)]
    data: Option<Text<'a>>,
}

/// `POST /Binary`: content staged in the patient's record, unfiled, for a
/// `POST /DocumentReference` to name.
pub(crate) async fn create_binary(
    app: &App,
    query: &[(String, String)],
    headers: &HeaderMap,
    ids: &RequestIds,
    caller: &Caller,
    body: BytesMut,
) -> Result<Response<Full<Bytes>>, Rescue> {
    if let Some((k, _)) = query.iter().find(|(k, _)| k != "_format") {
        return Err(
            SearchError::UnknownParameter(crate::routes::shown(k), "_format".into()).into(),
        );
    }
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = declared
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let (nhs, media, bytes) = if matches!(
        essence.as_str(),
        "application/fhir+json" | "application/json"
    ) {
        let parsed: IncomingBinary<'_> = serde_json::from_slice(&body)
            .map_err(|e| Invalid::request(format!("the body is not a FHIR JSON Binary: {e}")))?;
        if parsed.resource_type.as_deref() != Some("Binary") {
            return Err(Invalid::request("the body's resourceType must be Binary").into());
        }
        let media = content::media_type(parsed.content_type.as_deref().unwrap_or(""))
            .map_err(|r| Invalid::resource("Binary.contentType", r.to_string()))?;
        let context = parsed.security_context.as_ref().ok_or_else(|| {
            Invalid::resource(
                "Binary.securityContext",
                "is required: Patient/{NHS number}, the patient whose record the content is for",
            )
        })?;
        let nhs = crate::write_body::subject_nhs_number(context, "Binary.securityContext")?;
        let data = parsed
            .data
            .ok_or_else(|| Invalid::resource("Binary.data", "is required (base64)"))?;
        let at = Inline::of(&body, data.0);
        let bytes = at
            .decode(body)
            .map_err(|e| Invalid::resource("Binary.data", e.to_string()))?;
        (nhs, media, bytes)
    } else {
        let media = content::media_type(declared)
            .map_err(|r| DocumentRefusal::UnsupportedType(r.to_string()))?;
        let context = headers
            .get(SECURITY_CONTEXT)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Invalid::request(
                    "a raw Binary needs the header X-Security-Context: Patient/{NHS number}, the patient whose record the content is for",
                )
            })?;
        let nhs = context
            .trim()
            .strip_prefix("Patient/")
            .and_then(|n| NhsNumber::parse(n).ok())
            .ok_or_else(|| {
                Invalid::request(format!(
                    "X-Security-Context '{}' must be Patient/{{NHS number}}",
                    crate::routes::shown(context)
                ))
            })?;
        (nhs, media, body.freeze())
    };
    if bytes.len() > app.documents.max_upload_bytes {
        return Err(
            GatewayError::BodyTooLarge(bytes.len() as u64, app.documents.max_upload_bytes).into(),
        );
    }
    content::check(media, &bytes)
        .map_err(|r| refused_at(r, "Binary.contentType", "Binary.data"))?;
    let released = released_patient(app, nhs, ids, caller).await?;
    let uploaded = released
        .adapter
        .upload_content(&UploadContentRequest {
            nhs_number: nhs,
            practice: released.practice.clone(),
            content_type: media.to_owned(),
            bytes,
            context: ids.call_context(),
        })
        .await
        .map_err(GatewayError::Adapter)?;
    tracing::info!(supplier = caller.client_id().unwrap_or("-"), practice = %released.practice, size = uploaded.size, "document content staged");
    let id = fhir_id(&released.practice, &uploaded.content_id);
    let body = json!({
        "resourceType": "Binary",
        "id": id,
        "contentType": media,
        "securityContext": { "reference": format!("Patient/{nhs}") },
    });
    let mut resp = crate::respond::fhir(
        StatusCode::CREATED,
        serde_json::to_vec(&body).unwrap_or_default(),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("{}/Binary/{id}", ids.base_url)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

// ---------------------------------------------------------------------------------------
// POST /DocumentReference

/// A DocumentReference as filed: small elements as JSON values (checked one by one),
/// the content's base64 borrowed from the body, never copied into a JSON tree.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IncomingDocument<'a> {
    resource_type: Option<String>,
    identifier: Option<Value>,
    status: Option<Value>,
    #[serde(rename = "type")]
    type_: Option<Value>,
    subject: Option<Value>,
    date: Option<Value>,
    author: Option<Value>,
    description: Option<Value>,
    #[serde(borrow)]
    content: Option<Vec<IncomingContent<'a>>>,
}

#[derive(Deserialize)]
struct IncomingContent<'a> {
    #[serde(borrow)]
    attachment: Option<IncomingAttachment<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IncomingAttachment<'a> {
    content_type: Option<String>,
    #[serde(borrow)]
    data: Option<Text<'a>>,
    url: Option<String>,
    title: Option<String>,
    creation: Option<String>,
}

/// Where a filed document's content is.
enum ContentSource {
    Inline(Inline),
    /// Staged by `POST /Binary`: its practice and native id.
    Staged(OdsCode, String),
}

/// What a `POST /DocumentReference` body says, checked.
struct Filing {
    identifier: Option<(String, String)>,
    nhs: NhsNumber,
    type_snomed: String,
    type_display: String,
    title: String,
    created: UtcDateTime,
    author: Option<OdsCode>,
    media: &'static str,
    source: ContentSource,
}

fn text_value<'v>(
    v: Option<&'v Value>,
    path: &str,
    max: usize,
) -> Result<Option<&'v str>, Invalid> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= max => Ok(Some(s)),
        Some(_) => Err(Invalid::resource(
            path,
            format!("must be a string of 1 to {max} characters"),
        )),
    }
}

fn instant_value(v: Option<&str>, path: &str) -> Result<Option<UtcDateTime>, Invalid> {
    v.map(|s| {
        gp_adapter::appointments::fhir::parse_instant(s).ok_or_else(|| {
            Invalid::resource(
                path,
                "must be a dateTime with its time zone (e.g. 2026-07-01T09:30:00+01:00)",
            )
        })
    })
    .transpose()
}

/// The element names of a DocumentReference body, read without their values.
#[derive(Deserialize)]
struct Shape {
    #[serde(default)]
    content: Vec<ContentShape>,
    #[serde(flatten)]
    top: std::collections::BTreeMap<String, serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct ContentShape {
    #[serde(default)]
    attachment: Option<std::collections::BTreeMap<String, serde::de::IgnoredAny>>,
    #[serde(flatten)]
    other: std::collections::BTreeMap<String, serde::de::IgnoredAny>,
}

/// Refuses an element a GP system does not record (`category`, `context`, `format`, …),
/// naming it: it is refused, never dropped.
fn elements_recorded(body: &[u8]) -> Result<(), Invalid> {
    let shape: Shape = serde_json::from_slice(body).map_err(|e| {
        Invalid::request(format!(
            "the body is not a FHIR JSON DocumentReference: {e}"
        ))
    })?;
    let mut known: Vec<&str> = vec![
        "masterIdentifier",
        "docStatus",
        "category",
        "authenticator",
        "custodian",
        "relatesTo",
        "securityLabel",
        "context",
    ];
    known.extend_from_slice(crate::write_body::RESOURCE_ELEMENTS);
    crate::write_body::only_keys(
        shape.top.keys().map(String::as_str),
        "DocumentReference",
        &[
            "resourceType",
            "id",
            "meta",
            "identifier",
            "status",
            "type",
            "subject",
            "date",
            "author",
            "description",
        ],
        &known,
    )?;
    for (i, c) in shape.content.iter().enumerate() {
        let at = format!("DocumentReference.content[{i}]");
        crate::write_body::only_keys(
            c.other.keys().map(String::as_str),
            &at,
            &["attachment"],
            &["format", "id", "extension", "modifierExtension"],
        )?;
        if let Some(a) = &c.attachment {
            crate::write_body::only_keys(
                a.keys().map(String::as_str),
                &format!("{at}.attachment"),
                &["contentType", "data", "url", "title", "creation"],
                &["language", "size", "hash", "id", "extension"],
            )?;
        }
    }
    Ok(())
}

fn parse_document(body: &[u8]) -> Result<Filing, Rescue> {
    if body.is_empty() {
        return Err(Invalid::request("the request has no body").into());
    }
    let doc: IncomingDocument<'_> = serde_json::from_slice(body).map_err(|e| {
        Invalid::request(format!(
            "the body is not a FHIR JSON DocumentReference: {e}"
        ))
    })?;
    if doc.resource_type.as_deref() != Some("DocumentReference") {
        return Err(Invalid::request("the body's resourceType must be DocumentReference").into());
    }
    elements_recorded(body)?;
    let identifier = match &doc.identifier {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) if !list.is_empty() => {
            let first = &list[0];
            let field = |k: &str| first.get(k).and_then(Value::as_str).map(str::to_owned);
            match (field("system"), field("value")) {
                (Some(s), Some(v)) => Some((s, v)),
                _ => {
                    return Err(Invalid::resource(
                        "DocumentReference.identifier[0]",
                        "needs a system and a value",
                    )
                    .into());
                }
            }
        }
        Some(_) => {
            return Err(Invalid::resource(
                "DocumentReference.identifier",
                "must be a list of identifiers",
            )
            .into());
        }
    };
    match doc.status.as_ref().and_then(Value::as_str) {
        Some("current") => {}
        _ => {
            return Err(Invalid::resource(
                "DocumentReference.status",
                "is required and must be current",
            )
            .into());
        }
    }
    let subject = doc.subject.as_ref().ok_or_else(|| {
        Invalid::resource(
            "DocumentReference.subject",
            "is required: Patient/{NHS number}",
        )
    })?;
    let nhs = crate::write_body::subject_nhs_number(subject, "DocumentReference.subject")?;
    let (type_snomed, type_display) = document_type(doc.type_.as_ref())?;
    let author = match &doc.author {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) if list.len() == 1 => Some(author_ods(&list[0])?),
        Some(_) => {
            return Err(Invalid::resource(
                "DocumentReference.author",
                "names one author: your organisation (https://fhir.nhs.uk/Id/ods-organization-code|{your ODS code})",
            )
            .into());
        }
    };
    let [content] = doc.content.unwrap_or_default().try_into().map_err(|_| {
        Invalid::resource(
            "DocumentReference.content",
            "must hold exactly one attachment",
        )
    })?;
    let attachment = content.attachment.ok_or_else(|| {
        Invalid::resource("DocumentReference.content[0].attachment", "is required")
    })?;
    const AT: &str = "DocumentReference.content[0].attachment";
    let media = content::media_type(attachment.content_type.as_deref().unwrap_or(""))
        .map_err(|r| Invalid::resource(format!("{AT}.contentType"), r.to_string()))?;
    let description = text_value(
        doc.description.as_ref(),
        "DocumentReference.description",
        500,
    )?;
    let title = description
        .map(str::to_owned)
        .or_else(|| attachment.title.clone().filter(|t| !t.trim().is_empty()))
        .ok_or_else(|| {
            Invalid::resource(
                "DocumentReference.description",
                "a title is required: give description or content[0].attachment.title",
            )
        })?;
    if title.chars().count() > 500 {
        return Err(Invalid::resource(format!("{AT}.title"), "is at most 500 characters").into());
    }
    let date = instant_value(
        text_value(doc.date.as_ref(), "DocumentReference.date", 40)?,
        "DocumentReference.date",
    )?;
    let creation = instant_value(attachment.creation.as_deref(), &format!("{AT}.creation"))?;
    let created = creation.or(date).unwrap_or_else(now_utc);
    let source = match (attachment.data, attachment.url.as_deref()) {
        (Some(data), None) => ContentSource::Inline(Inline::of(body, data.0)),
        (None, Some(url)) => {
            let id = url
                .rsplit_once("Binary/")
                .map(|(_, id)| id)
                .filter(|_| url.starts_with("Binary/") || url.contains("/Binary/"));
            let (ods, native) = id.and_then(split_id).ok_or_else(|| {
                Invalid::resource(
                    format!("{AT}.url"),
                    "must be Binary/{id}, as POST /Binary answered",
                )
            })?;
            ContentSource::Staged(ods, native.to_owned())
        }
        _ => {
            return Err(Invalid::resource(
                AT,
                "needs either data (the content, base64) or url (Binary/{id} from POST /Binary), not both",
            )
            .into());
        }
    };
    Ok(Filing {
        identifier,
        nhs,
        type_snomed,
        type_display,
        title,
        created,
        author,
        media,
        source,
    })
}

/// The SNOMED CT record artifact type of a DocumentReference.
fn document_type(v: Option<&Value>) -> Result<(String, String), Invalid> {
    const PATH: &str = "DocumentReference.type";
    let v = v.ok_or_else(|| {
        Invalid::resource(
            PATH,
            format!("is required: a SNOMED CT record artifact ({SNOMED}), e.g. 371530004 clinical consultation report or 823691000000103 clinical letter"),
        )
    })?;
    let coding = v
        .get("coding")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c.get("system").and_then(Value::as_str) == Some(SNOMED))
        .ok_or_else(|| {
            Invalid::resource(format!("{PATH}.coding"), format!("needs a {SNOMED} coding"))
        })?;
    let code = coding
        .get("code")
        .and_then(Value::as_str)
        .filter(|c| (6..=18).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            Invalid::resource(
                format!("{PATH}.coding.code"),
                "must be a SNOMED CT concept id",
            )
        })?;
    let display = coding
        .get("display")
        .and_then(Value::as_str)
        .or_else(|| v.get("text").and_then(Value::as_str))
        .map(str::to_owned)
        .or_else(|| {
            KNOWN_TYPES
                .iter()
                .find(|(c, _)| *c == code)
                .map(|(_, d)| (*d).to_owned())
        })
        .ok_or_else(|| {
            Invalid::resource(
                format!("{PATH}.coding.display"),
                "is required for this code",
            )
        })?;
    Ok((code.to_owned(), display))
}

/// The ODS code an author reference names (`identifier` with the ODS system, or
/// `Organization/{ODS}`).
fn author_ods(v: &Value) -> Result<OdsCode, Invalid> {
    const PATH: &str = "DocumentReference.author[0]";
    let from_identifier = v
        .get("identifier")
        .filter(|i| i.get("system").and_then(Value::as_str) == Some(gp_fhir::ids::ODS_CODE_SYSTEM))
        .and_then(|i| i.get("value").and_then(Value::as_str));
    let from_reference = v
        .get("reference")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("Organization/"));
    from_identifier
        .or(from_reference)
        .and_then(|ods| OdsCode::parse(ods).ok())
        .ok_or_else(|| {
            Invalid::resource(
                PATH,
                format!(
                    "must name your organisation by its ODS code ({}|{{ODS}})",
                    gp_fhir::ids::ODS_CODE_SYSTEM
                ),
            )
        })
}

/// `POST /DocumentReference`: files a document (its content inline, or staged by
/// `POST /Binary`) into the patient's record; idempotent on its identifier.
pub(crate) async fn create_document(
    app: &App,
    query: &[(String, String)],
    headers: &HeaderMap,
    ids: &RequestIds,
    caller: &Caller,
    body: BytesMut,
) -> Result<Response<Full<Bytes>>, Rescue> {
    let conditional = crate::writes::create_condition(headers, query)?;
    let filing = parse_document(&body)?;
    let identifier = match (conditional, filing.identifier.clone()) {
        (Some(h), Some(b)) if h != b => {
            return Err(Invalid::request(format!(
                "the condition (If-None-Exist or identifier parameter) names identifier {}|{} but the DocumentReference's identifier[0] is {}|{}",
                crate::routes::shown(&h.0),
                crate::routes::shown(&h.1),
                crate::routes::shown(&b.0),
                crate::routes::shown(&b.1)
            ))
            .into());
        }
        (Some(i), _) | (None, Some(i)) => i,
        (None, None) => {
            return Err(Invalid::resource(
                "DocumentReference.identifier",
                "is required (or an If-None-Exist: identifier=<system>|<value> header): it is how a retried filing is recognised, so a document is never filed twice",
            )
            .into());
        }
    };
    crate::writes::keepable_as(&identifier, "DocumentReference", "the document")?;
    let (author, author_name) = match (caller.booking_organisation(), filing.author.clone()) {
        (Some(Ok((ours, name))), asked) => match asked {
            Some(given) if given != ours => {
                return Err(Invalid::resource(
                    "DocumentReference.author[0]",
                    format!(
                        "the author organisation {given} is not yours ({ours}, as the supplier registry holds it): a supplier files documents as itself"
                    ),
                )
                .into());
            }
            _ => (ours, Some(name)),
        },
        (Some(Err(client)), _) => {
            return Err(crate::appointments::NoBookingOrganisation(client).into());
        }
        (None, Some(given)) => (given, None),
        (None, None) => {
            return Err(Invalid::resource(
                "DocumentReference.author",
                "without a supplier (open sandbox mode) the author organisation must be given",
            )
            .into());
        }
    };
    // The content, decoded where it lies and checked, before any GP system is asked.
    let media = filing.media;
    let nhs = filing.nhs;
    let new = filing_doc(&filing, &identifier, author, author_name, caller);
    let inline = match filing.source {
        ContentSource::Inline(at) => {
            let bytes = at.decode(body).map_err(|e| {
                Invalid::resource(
                    "DocumentReference.content[0].attachment.data",
                    e.to_string(),
                )
            })?;
            if bytes.len() > app.documents.max_upload_bytes {
                return Err(GatewayError::BodyTooLarge(
                    bytes.len() as u64,
                    app.documents.max_upload_bytes,
                )
                .into());
            }
            content::check(media, &bytes).map_err(|r| {
                refused_at(
                    r,
                    "DocumentReference.content[0].attachment.contentType",
                    "DocumentReference.content[0].attachment.data",
                )
            })?;
            Some(bytes)
        }
        ContentSource::Staged(ods, native) => {
            drop(body);
            let released = released_patient(app, nhs, ids, caller).await?;
            if ods != released.practice {
                return Err(Invalid::resource(
                    "DocumentReference.content[0].attachment.url",
                    "names content staged at another practice than the patient's",
                )
                .into());
            }
            return file(app, ids, caller, &new, released, nhs, native).await;
        }
    };
    let released = released_patient(app, nhs, ids, caller).await?;
    // A retry of a document already filed answers it without sending the content again.
    if let Some(previous) = filed_before(&released, nhs, &new, ids).await? {
        return Ok(filed_response(
            app,
            ids,
            &released.practice,
            &previous,
            false,
        ));
    }
    let Some(bytes) = inline else {
        return Err(GatewayError::Internal("inline content went missing".into()).into());
    };
    let uploaded = released
        .adapter
        .upload_content(&UploadContentRequest {
            nhs_number: nhs,
            practice: released.practice.clone(),
            content_type: media.to_owned(),
            bytes,
            context: ids.call_context(),
        })
        .await
        .map_err(GatewayError::Adapter)?;
    file(app, ids, caller, &new, released, nhs, uploaded.content_id).await
}

/// The neutral document a filing asks for (its content id filled in by [`file`]).
fn filing_doc(
    filing: &Filing,
    identifier: &(String, String),
    author: OdsCode,
    author_name: Option<String>,
    caller: &Caller,
) -> NewDocument {
    NewDocument {
        key: crate::writes::idempotency_key(caller.client_id().unwrap_or("-"), identifier),
        identifier: Some(identifier.clone()),
        content_id: String::new(),
        type_snomed: filing.type_snomed.clone(),
        type_display: filing.type_display.clone(),
        title: filing.title.clone(),
        created: filing.created,
        author_ods: author.to_string(),
        author_name,
    }
}

/// The document this supplier filed under the same identifier, when there is one.
async fn filed_before(
    released: &crate::release::Released,
    nhs: NhsNumber,
    new: &NewDocument,
    ids: &RequestIds,
) -> Result<Option<DocumentMeta>, Rescue> {
    let documents = released
        .adapter
        .search_documents(&DocumentSearchRequest {
            nhs_number: nhs,
            practice: released.practice.clone(),
            context: ids.call_context(),
        })
        .await
        .map_err(GatewayError::Adapter)?;
    Ok(documents.into_iter().find(|d| {
        d.identifier == new.identifier
            && d.author_ods.as_deref() == Some(new.author_ods.as_str())
            && !d.confidential
    }))
}

async fn file(
    app: &App,
    ids: &RequestIds,
    caller: &Caller,
    new: &NewDocument,
    released: crate::release::Released,
    nhs: NhsNumber,
    content_id: String,
) -> Result<Response<Full<Bytes>>, Rescue> {
    let mut document = new.clone();
    document.content_id = content_id;
    let filed = released
        .adapter
        .file_document(&FileDocumentRequest {
            nhs_number: nhs,
            practice: released.practice.clone(),
            document,
            context: ids.call_context(),
        })
        .await
        .map_err(GatewayError::Adapter)?;
    tracing::info!(
        supplier = caller.client_id().unwrap_or("-"),
        practice = %released.practice,
        created = filed.created,
        identifier_system = %new.identifier.as_ref().map(|i| crate::routes::shown(&i.0)).unwrap_or_default(),
        "document filed"
    );
    Ok(filed_response(
        app,
        ids,
        &released.practice,
        &filed.document,
        filed.created,
    ))
}

fn filed_response(
    app: &App,
    ids: &RequestIds,
    practice: &OdsCode,
    d: &DocumentMeta,
    created: bool,
) -> Response<Full<Bytes>> {
    let document = map::document_reference(practice, d, app.documents.max_inline_bytes);
    let location = format!("{}/DocumentReference/{}", ids.base_url, document.id);
    let status = if created {
        ids.facts.changed(
            gp_adapter::ChangeKind::DocumentFiled,
            Some(document.id.clone()),
        );
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut resp = crate::respond::entry(status, &Resource::DocumentReference(document));
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_a_gp_system_does_not_record_are_refused_by_name() {
        let body = |extra: &str| {
            format!(
                r#"{{"resourceType":"DocumentReference","status":"current",{extra}"content":[{{"attachment":{{"contentType":"text/plain","data":"aGk="}}}}]}}"#
            )
        };
        assert!(elements_recorded(body("").as_bytes()).is_ok());
        for (extra, path) in [
            (r#""category":[],"#, "DocumentReference.category"),
            (r#""context":{},"#, "DocumentReference.context"),
            (r#""flavour":"x","#, "DocumentReference.flavour"),
        ] {
            let e = elements_recorded(body(extra).as_bytes()).unwrap_err();
            assert_eq!(e.path, path, "{e}");
            assert_eq!(e.status, 422);
        }
        let e = elements_recorded(
            br#"{"resourceType":"DocumentReference","content":[{"format":{},"attachment":{}}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.path, "DocumentReference.content[0].format");
        let e = elements_recorded(
            br#"{"resourceType":"DocumentReference","content":[{"attachment":{"size":3,"data":"aGk="}}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.path, "DocumentReference.content[0].attachment.size");
    }

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn binary_answers_what_accept_asks_for_first() {
        let h = |accept: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
            m
        };
        let pdf = "application/pdf";
        assert_eq!(
            binary_as(&[], &HeaderMap::new(), pdf).unwrap(),
            BinaryAs::Raw
        );
        assert_eq!(
            binary_as(&[], &h("application/pdf"), pdf).unwrap(),
            BinaryAs::Raw
        );
        assert_eq!(binary_as(&[], &h("*/*"), pdf).unwrap(), BinaryAs::Raw);
        assert_eq!(
            binary_as(&[], &h("application/fhir+json"), pdf).unwrap(),
            BinaryAs::Fhir
        );
        assert_eq!(
            binary_as(&[], &h("application/fhir+json, */*"), pdf).unwrap(),
            BinaryAs::Fhir
        );
        assert_eq!(
            binary_as(&q(&[("_format", "json")]), &h("*/*"), pdf).unwrap(),
            BinaryAs::Fhir
        );
        assert!(binary_as(&[], &h("text/html"), pdf).is_err());
        assert!(binary_as(&[], &h("application/pdf;q=0"), pdf).is_err());
    }

    #[test]
    fn searches_are_refused_naming_the_parameter() {
        let limits = gp_fhir::search::PagingLimits::default();
        let bad = |pairs: &[(&str, &str)]| {
            parse_search(&q(pairs), limits)
                .err()
                .unwrap()
                .error
                .expression()
        };
        assert_eq!(
            bad(&[("patient", "9000000009"), ("date", "eq2026-01-01")]),
            ["date"]
        );
        assert_eq!(
            bad(&[("patient", "9000000009"), ("created", "ge2026")]),
            ["created"]
        );
        assert_eq!(
            bad(&[("patient", "9000000009"), ("type", "http://loinc.org|1")]),
            ["type"]
        );
        assert_eq!(
            bad(&[("patient", "9000000009"), ("author:identifier", "X|A1")]),
            ["author:identifier"]
        );
        let s = parse_search(
            &q(&[
                ("patient", "Patient/9000000009"),
                ("type", "http://snomed.info/sct|371530004,823691000000103"),
                (
                    "author:identifier",
                    "https://fhir.nhs.uk/Id/ods-organization-code|y90003",
                ),
                ("_count", "1000"),
            ]),
            limits,
        )
        .unwrap();
        assert_eq!(s.types, ["371530004", "823691000000103"]);
        assert_eq!(s.authors, ["Y90003"]);
        assert_eq!(s.paging.unwrap().count, limits.max_count);
    }
}
