//! Evolution's documents (`docs/native-formats/microtest.md`, "Documents"): a patient's
//! documents by NHS number in cursor pages, content downloaded and uploaded as raw
//! bytes, and filing under an `Idempotency-Key` — the native calls, and the strict
//! mapping of their answers to the neutral document types (whole or not at all).

use std::collections::HashSet;

use bytes::Bytes;
use gp_adapter::documents::{
    CONTENT_TYPES, DocumentContent, DocumentMeta, FileDocumentRequest, Filed, NewDocument, Uploaded,
};
use gp_adapter::json::Node;
use gp_adapter::native::{Method, NativeResponse};
use gp_adapter::{AdapterError, CallContext};
use gp_fhir::text::shown;
use gp_fhir::{NhsNumber, OdsCode};

use crate::appointments::utc;
use crate::client::{JSON, MicrotestClient, PREFIX, error_from, write_error_from};
use crate::error::MicrotestDataError;
use crate::mapping::{native_datetime, parse, parse_problem};
use crate::{MAX_PAGES, MicrotestAdapter};

type Result<T> = std::result::Result<T, MicrotestDataError>;

/// The header naming the patient of an upload, and of downloaded content.
pub const NHS_HEADER: &str = "x-evolution-nhs-number";
/// The header saying whether downloaded content's document is confidential.
pub const CONFIDENTIAL_HEADER: &str = "x-evolution-confidential";
/// The header giving downloaded content's size in bytes.
pub const SIZE_HEADER: &str = "x-evolution-size";

/// A document or content id as the gateway routes it: 1 to 56 of `A-Z a-z 0-9 - .`.
pub fn valid_document_id(v: &str) -> bool {
    (1..=56).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn document_id(n: Node) -> Result<String> {
    let raw = n.str()?;
    if valid_document_id(raw) {
        Ok(raw.to_owned())
    } else {
        Err(n
            .invalid(format!(
                "'{}' is not an id of 1 to 56 letters, digits, '-' or '.'",
                shown(raw)
            ))
            .into())
    }
}

fn nhs_of(n: Node) -> Result<NhsNumber> {
    NhsNumber::parse(n.str()?).map_err(|e| n.invalid(e.to_string()).into())
}

/// The patient a document or content answer is about must be the one asked for.
fn same_patient(n: Node, nhs: NhsNumber) -> Result<()> {
    let listed = nhs_of(n)?;
    if listed == nhs {
        Ok(())
    } else {
        Err(n
            .invalid(format!(
                "the answer is for {listed}, but {nhs} was asked for"
            ))
            .into())
    }
}

/// A size, sent as a string of digits (`"48213"`).
fn size(n: Node) -> Result<u64> {
    let raw = n.str()?;
    raw.parse::<u64>()
        .ok()
        .filter(|_| raw.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            n.invalid(format!("'{}' is not a size in bytes", shown(raw)))
                .into()
        })
}

fn sha1(n: Node) -> Result<Option<[u8; 20]>> {
    let Some(raw) = n.opt_str()? else {
        return Ok(None);
    };
    let bad = || n.invalid(format!("'{}' is not 40 hex digits", shown(raw)));
    if raw.len() != 40 {
        return Err(bad().into());
    }
    let mut out = [0u8; 20];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = raw
            .get(2 * i..2 * i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or_else(bad)?;
    }
    Ok(Some(out))
}

fn content_type(n: Node) -> Result<String> {
    let raw = n.str()?;
    CONTENT_TYPES
        .iter()
        .find(|t| **t == raw)
        .map(|t| (*t).to_owned())
        .ok_or_else(|| {
            n.invalid(format!(
                "'{}' is not one of {}",
                shown(raw),
                CONTENT_TYPES.join(", ")
            ))
            .into()
        })
}

/// Non-blank text.
fn text(n: Node) -> Result<String> {
    let raw = n.str()?;
    if raw.trim().is_empty() {
        return Err(n.invalid("is blank").into());
    }
    Ok(raw.to_owned())
}

/// One Evolution document object for patient `nhs`.
fn map_document(d: Node, nhs: NhsNumber) -> Result<DocumentMeta> {
    let d = d.object()?;
    same_patient(d.get("nhs_number"), nhs)?;
    let kind = d.get("type").object()?;
    let snomed = kind.get("snomed");
    let type_snomed = snomed.str()?;
    let sctid = (6..=18).contains(&type_snomed.len())
        && !type_snomed.starts_with('0')
        && type_snomed.bytes().all(|b| b.is_ascii_digit());
    if !sctid {
        return Err(snomed
            .invalid(format!("'{}' is not a SNOMED CT id", shown(type_snomed)))
            .into());
    }
    let author = d.get("author");
    let (author_ods, author_name) = match author.opt_object()? {
        None => (None, None),
        Some(a) => (
            a.get("ods_code").opt_str()?.map(str::to_owned),
            a.get("name").opt_str()?.map(str::to_owned),
        ),
    };
    let ext = d.get("external_identifier");
    let identifier = match ext.opt_object()? {
        None => None,
        Some(x) => Some((text(x.get("system"))?, text(x.get("value"))?)),
    };
    let workflow = d
        .get("workflow_state")
        .one_of(&[("awaiting-review", "awaiting-review"), ("filed", "filed")])?;
    Ok(DocumentMeta {
        id: document_id(d.get("document_id"))?,
        content_id: document_id(d.get("content_id"))?,
        nhs_number: nhs,
        created: utc(d.get("created"))?,
        indexed: utc(d.get("received"))?,
        type_snomed: type_snomed.to_owned(),
        type_display: text(kind.get("term"))?,
        title: text(d.get("title"))?,
        content_type: content_type(d.get("mime_type"))?,
        size: size(d.get("size"))?,
        sha1: sha1(d.get("sha1"))?,
        author_ods,
        author_name,
        identifier,
        workflow: workflow.to_owned(),
        confidential: d.get("confidential").bool()?,
    })
}

/// One mapped page of `GET …/documents?nhs_number=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentPage {
    pub documents: Vec<DocumentMeta>,
    /// Documents across all pages, when Evolution says.
    pub total: Option<u64>,
    pub next_cursor: Option<String>,
}

/// Maps one page of the documents of patient `nhs`.
pub fn map_documents(body: &[u8], nhs: NhsNumber) -> Result<DocumentPage> {
    let doc = parse("documents page", body)?;
    let list = doc.get("documents");
    let documents = list
        .array()?
        .map(|d| map_document(d, nhs))
        .collect::<Result<Vec<_>>>()?;
    let cursor = doc.get("next_cursor");
    let next_cursor = match cursor.opt_str()? {
        None => None,
        Some(c)
            if (1..=512).contains(&c.len())
                && c.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
                }) =>
        {
            Some(c.to_owned())
        }
        Some(c) => {
            return Err(broken(format!(
                "next_cursor '{}' is empty, too long or not URL-safe",
                shown(c)
            )));
        }
    };
    let total = doc.get("total");
    let total = match total.opt_integer()? {
        None => None,
        Some(n) => Some(u64::try_from(n).map_err(|_| total.invalid(format!("{n} is negative")))?),
    };
    Ok(DocumentPage {
        documents,
        total,
        next_cursor,
    })
}

fn broken(reason: String) -> MicrotestDataError {
    MicrotestDataError::BrokenCursor {
        what: "document".into(),
        reason,
    }
}

fn bad_header(name: &str, reason: String) -> MicrotestDataError {
    MicrotestDataError::Invalid {
        path: format!("{name} header"),
        reason,
    }
}

/// Maps a `200` answer of `GET …/document-contents/{id}`: the raw body, its
/// `Content-Type`, and the patient, confidentiality and size headers (a body shorter
/// than the size header says was cut off on the way).
pub fn map_content(response: NativeResponse) -> Result<DocumentContent> {
    let header = |name: &str| {
        response
            .header(name)
            .ok_or_else(|| bad_header(name, "is missing".into()))
    };
    let nhs = header(NHS_HEADER)?;
    let nhs_number = NhsNumber::parse(&nhs).map_err(|e| bad_header(NHS_HEADER, e.to_string()))?;
    let confidential = match header(CONFIDENTIAL_HEADER)?.as_str() {
        "true" => true,
        "false" => false,
        other => {
            return Err(bad_header(
                CONFIDENTIAL_HEADER,
                format!("'{}' is not true or false", shown(other)),
            ));
        }
    };
    let declared = header(SIZE_HEADER)?;
    let size = declared
        .parse::<usize>()
        .map_err(|_| bad_header(SIZE_HEADER, format!("'{}' is not a size", shown(&declared))))?;
    if size != response.body.len() {
        return Err(bad_header(
            SIZE_HEADER,
            format!("says {size} bytes, but {} arrived", response.body.len()),
        ));
    }
    let raw = response.content_type.clone().unwrap_or_default();
    let media = raw.split(';').next().unwrap_or("").trim();
    let content_type = CONTENT_TYPES
        .iter()
        .find(|t| t.eq_ignore_ascii_case(media))
        .ok_or_else(|| {
            bad_header(
                "Content-Type",
                format!(
                    "'{}' is not one of {}",
                    shown(&raw),
                    CONTENT_TYPES.join(", ")
                ),
            )
        })?;
    Ok(DocumentContent {
        nhs_number,
        content_type: (*content_type).to_owned(),
        bytes: response.body,
        confidential,
    })
}

/// Reads the answer to `POST …/document-contents` for patient `nhs`.
pub fn parse_uploaded(body: &[u8], nhs: NhsNumber) -> Result<Uploaded> {
    let doc = parse("upload answer", body)?;
    let root = doc.root();
    same_patient(root.get("nhs_number"), nhs)?;
    Ok(Uploaded {
        content_id: document_id(root.get("content_id"))?,
        size: size(root.get("size"))?,
    })
}

/// Reads the answer to `POST …/documents` (the document as filed) for patient `nhs`.
pub fn parse_filed(body: &[u8], nhs: NhsNumber) -> Result<DocumentMeta> {
    let doc = parse("filed document", body)?;
    map_document(doc.root(), nhs)
}

/// The body of `POST …/documents` filing `d` for patient `nhs`: the created time in UK
/// local time, as Evolution records date-times.
pub fn render_document_request(nhs: NhsNumber, d: &NewDocument) -> Vec<u8> {
    let body = serde_json::json!({
        "nhs_number": nhs.to_string(),
        "content_id": d.content_id,
        "type": { "snomed": d.type_snomed, "term": d.type_display },
        "title": d.title,
        "created": { "value": native_datetime(d.created), "precision": "datetime" },
        "author": { "ods_code": d.author_ods, "name": d.author_name },
        "external_identifier": d.identifier.as_ref().map(|(system, value)| {
            serde_json::json!({ "system": system, "value": value })
        }),
    });
    // A `Value` always serialises.
    serde_json::to_vec(&body).unwrap_or_default()
}

impl MicrotestClient {
    /// `GET /sites/{ODS}/documents?nhs_number={NHS}[&cursor=…]`: one page.
    pub async fn documents(
        &self,
        ods: &OdsCode,
        nhs: NhsNumber,
        cursor: Option<&str>,
        ctx: &CallContext,
    ) -> std::result::Result<Bytes, AdapterError> {
        let mut path = format!("{PREFIX}/sites/{}/documents?nhs_number={nhs}", ods.as_str());
        if let Some(c) = cursor {
            path.push_str("&cursor=");
            path.push_str(c);
        }
        self.get(&path, ctx)
            .await?
            .map_err(|r| match (r.status, parse_problem(&r.body), cursor) {
                (400, Some(p), Some(c)) if p.code == "INVALID_CURSOR" => {
                    broken(format!("Evolution refused its own next_cursor '{c}'")).into()
                }
                _ => error_from(&r),
            })
    }

    /// `GET /sites/{ODS}/document-contents/{id}`: the raw answer, or `None` for `404
    /// CONTENT_NOT_FOUND`. `id` has been checked to be URL-safe.
    pub async fn content(
        &self,
        ods: &OdsCode,
        id: &str,
        ctx: &CallContext,
    ) -> std::result::Result<Option<NativeResponse>, AdapterError> {
        let path = format!("{PREFIX}/sites/{}/document-contents/{id}", ods.as_str());
        let response = self.http.get(&path, ctx).await?;
        match (response.status, parse_problem(&response.body)) {
            (200, _) => Ok(Some(response)),
            (404, Some(p)) if p.code == "CONTENT_NOT_FOUND" => Ok(None),
            _ => Err(error_from(&response)),
        }
    }

    /// `POST /sites/{ODS}/document-contents` with the bytes as the raw body (sent as
    /// they are, not copied) and the patient in `X-Evolution-NHS-Number`.
    pub async fn upload_content(
        &self,
        ods: &OdsCode,
        nhs: NhsNumber,
        content_type: &str,
        bytes: &Bytes,
        ctx: &CallContext,
    ) -> std::result::Result<Bytes, AdapterError> {
        let path = format!("{PREFIX}/sites/{}/document-contents", ods.as_str());
        let response = self
            .http
            .send_bytes(
                Method::POST,
                &path,
                Some((content_type, bytes.clone())),
                &[(NHS_HEADER, nhs.to_string())],
                ctx,
            )
            .await?;
        if response.status == 201 {
            Ok(response.body)
        } else {
            Err(write_error_from(&response))
        }
    }

    /// `POST /sites/{ODS}/documents` with `Idempotency-Key: {key}`: `(true, body)` filed
    /// now, `(false, body)` the key was seen. `404 CONTENT_NOT_FOUND` is `NotFound`.
    pub async fn file_document(
        &self,
        ods: &OdsCode,
        key: &str,
        body: Vec<u8>,
        ctx: &CallContext,
    ) -> std::result::Result<(bool, Bytes), AdapterError> {
        let path = format!("{PREFIX}/sites/{}/documents", ods.as_str());
        self.http
            .send(
                Method::POST,
                &path,
                Some((JSON, body)),
                &[("idempotency-key", key.to_owned())],
                ctx,
            )
            .await?
            .created_body(|r| match (r.status, parse_problem(&r.body)) {
                (404, Some(p)) if p.code == "CONTENT_NOT_FOUND" => AdapterError::NotFound {
                    system: crate::SYSTEM,
                    what: format!("document content: {}", p.detail),
                },
                _ => write_error_from(r),
            })
    }
}

impl MicrotestAdapter {
    /// Every page of the patient's documents, following `next_cursor` to the end.
    pub(crate) async fn all_documents(
        &self,
        ods: &OdsCode,
        nhs: NhsNumber,
        ctx: &CallContext,
    ) -> std::result::Result<Vec<DocumentMeta>, AdapterError> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        let mut seen: HashSet<String> = HashSet::new();
        for _ in 0..MAX_PAGES {
            let body = self
                .client
                .documents(ods, nhs, cursor.as_deref(), ctx)
                .await?;
            let page = map_documents(&body, nhs)?;
            let empty = page.documents.is_empty();
            out.extend(page.documents);
            match page.next_cursor {
                None => {
                    return match page.total {
                        Some(total) if total != out.len() as u64 => Err(broken(format!(
                            "the pages held {} documents but total says {total}",
                            out.len()
                        ))
                        .into()),
                        _ => Ok(out),
                    };
                }
                Some(next) => {
                    cursor = Some(crate::appointments::follow_cursor(
                        &mut seen, next, empty, "document",
                    )?);
                }
            }
        }
        Err(broken(format!("still more pages after {MAX_PAGES}")).into())
    }

    /// One `GET …/document-contents/{id}`; an id Evolution could not have issued names
    /// no content, so no call is made for it.
    pub(crate) async fn one_content(
        &self,
        ods: &OdsCode,
        id: &str,
        ctx: &CallContext,
    ) -> std::result::Result<Option<DocumentContent>, AdapterError> {
        if !valid_document_id(id) {
            return Ok(None);
        }
        match self.client.content(ods, id, ctx).await? {
            Some(response) => Ok(Some(map_content(response)?)),
            None => Ok(None),
        }
    }

    /// One `POST …/documents`.
    pub(crate) async fn file(
        &self,
        req: &FileDocumentRequest,
    ) -> std::result::Result<Filed, AdapterError> {
        let body = render_document_request(req.nhs_number, &req.document);
        let (created, answer) = self
            .client
            .file_document(&req.practice, &req.document.key, body, &req.context)
            .await?;
        Ok(Filed {
            document: parse_filed(&answer, req.nhs_number)?,
            created,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn nhs() -> NhsNumber {
        NhsNumber::parse("9912003888").unwrap()
    }

    fn good() -> serde_json::Value {
        serde_json::json!({
            "document_id": "0b6f1c2e-1d5a-4b7e-9a0f-2c3d4e5f6a7b",
            "content_id": "7000002",
            "nhs_number": "9912003888",
            "type": {"snomed": "371530004", "term": "Clinical consultation report"},
            "title": "Online consultation",
            "created": {"value": "2026-07-14T09:15:00", "precision": "datetime"},
            "received": {"value": "2026-01-14T09:15:00", "precision": "datetime"},
            "mime_type": "application/pdf",
            "size": "1234",
            "sha1": "00112233445566778899aabbccddeeff00112233",
            "author": {"ods_code": "Y90002", "name": "Example"},
            "workflow_state": "awaiting-review",
            "confidential": false,
            "external_identifier": {"system": "https://s.example/d", "value": "d-1"},
        })
    }

    fn page(doc: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(
            &serde_json::json!({"documents": [doc], "total": 1, "next_cursor": null}),
        )
        .unwrap()
    }

    #[test]
    fn a_document_maps_with_utc_times_and_its_hash() {
        let p = map_documents(&page(good()), nhs()).unwrap();
        let d = &p.documents[0];
        // 09:15 BST is 08:15 UTC; 09:15 GMT is 09:15 UTC.
        assert_eq!(d.created.to_rfc3339(), "2026-07-14T08:15:00Z");
        assert_eq!(d.indexed.to_rfc3339(), "2026-01-14T09:15:00Z");
        assert_eq!(d.size, 1234);
        assert_eq!(d.sha1.unwrap()[1], 0x11);
        assert_eq!(
            d.identifier,
            Some(("https://s.example/d".into(), "d-1".into()))
        );
        assert_eq!(d.workflow, "awaiting-review");
    }

    #[test]
    fn malformed_documents_are_refused_naming_the_field() {
        for (field, value, path) in [
            ("size", serde_json::json!(1234), "documents[0].size"),
            ("size", serde_json::json!("12kB"), "documents[0].size"),
            ("sha1", serde_json::json!("abc"), "documents[0].sha1"),
            (
                "mime_type",
                serde_json::json!("image/gif"),
                "documents[0].mime_type",
            ),
            (
                "workflow_state",
                serde_json::json!("lost"),
                "documents[0].workflow_state",
            ),
            (
                "nhs_number",
                serde_json::json!("9000000009"),
                "documents[0].nhs_number",
            ),
            (
                "document_id",
                serde_json::json!("a/b"),
                "documents[0].document_id",
            ),
            (
                "content_id",
                serde_json::json!("x".repeat(57)),
                "documents[0].content_id",
            ),
            (
                "created",
                serde_json::json!({"value": "2026-07-14", "precision": "day"}),
                "documents[0].created.precision",
            ),
        ] {
            let mut d = good();
            d[field] = value;
            match map_documents(&page(d), nhs()).unwrap_err() {
                MicrotestDataError::Invalid { path: p, .. } => assert_eq!(p, path, "{field}"),
                other => panic!("{field}: {other:?}"),
            }
        }
        let mut d = good();
        d.as_object_mut().unwrap().remove("title");
        assert!(matches!(
            map_documents(&page(d), nhs()).unwrap_err(),
            MicrotestDataError::Missing { path } if path == "documents[0].title"
        ));
    }

    fn response(body: &'static [u8], headers: &[(&'static str, &str)]) -> NativeResponse {
        let mut r = NativeResponse {
            status: 200,
            body: Bytes::from_static(body),
            content_type: Some("text/plain".into()),
            headers: Default::default(),
        };
        for (k, v) in headers {
            r.headers.insert(*k, v.parse().unwrap());
        }
        r
    }

    #[test]
    fn content_needs_its_patient_and_whole_body() {
        let ok = [
            (NHS_HEADER, "9912003888"),
            (CONFIDENTIAL_HEADER, "true"),
            (SIZE_HEADER, "5"),
        ];
        let c = map_content(response(b"hello", &ok)).unwrap();
        assert_eq!(
            (c.nhs_number, c.confidential, &c.bytes[..]),
            (nhs(), true, &b"hello"[..])
        );
        let cut = map_content(response(b"hel", &ok)).unwrap_err();
        assert!(
            cut.to_string().contains("says 5 bytes, but 3 arrived"),
            "{cut}"
        );
        let anonymous = map_content(response(b"hello", &ok[1..])).unwrap_err();
        assert!(anonymous.to_string().contains(NHS_HEADER), "{anonymous}");
    }
}
