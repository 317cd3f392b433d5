//! A patient's documents in SystmOne (`docs/native-formats/tpp.md`, "Documents"): the
//! native calls (list, raw content, raw upload, filing) and the native ⇄ vendor-neutral
//! mapping. Ids are SystmOne's numbers (`DocumentID`, `ContentID`), times are UTC. Every
//! answer is mapped whole or refused as [`TppDataError`], never half-mapped.

use bytes::Bytes;
use gp_adapter::documents::{
    CONTENT_TYPES, DocumentContent, DocumentMeta, Filed, NewDocument, Uploaded,
};
use gp_adapter::native::{Method, NativeResponse};
use gp_adapter::xml::Node;
use gp_adapter::{AdapterError, CallContext};
use gp_fhir::text::shown;
use gp_fhir::{NhsNumber, OdsCode};

use crate::TppClient;
use crate::appointments::utc_element;
use crate::client::{XML, refusal, write_error_from};
use crate::error::TppDataError;
use crate::mapping::{At, Result, at_attr, attr, bool_value, child, document, escape, is, opt};

/// Response header naming the patient a content belongs to.
pub const NHS_NUMBER_HEADER: &str = "x-tpp-nhsnumber";
/// Response header: `true` when the document filing the content is confidential.
pub const CONFIDENTIAL_HEADER: &str = "x-tpp-confidential";

/// The longest id the gateway routes.
const MAX_ID: usize = 56;

/// True when `id` can be a SystmOne `DocumentID` or `ContentID` (digits, at most 20).
pub fn is_native_id(id: &str) -> bool {
    (1..=20).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit())
}

// ---- native calls --------------------------------------------------------------------

impl TppClient {
    /// `GET …/organisations/{ODS}/patients/{NHS}/documents`: the `<PatientDocuments>` list.
    pub async fn documents(
        &self,
        ods: &OdsCode,
        nhs: NhsNumber,
        ctx: &CallContext,
    ) -> std::result::Result<Bytes, AdapterError> {
        let path = format!(
            "/systmone/api/v1/organisations/{}/patients/{nhs}/documents",
            ods.as_str()
        );
        self.http
            .get(&path, ctx)
            .await?
            .ok_body(crate::client::error_from)
    }

    /// `GET …/organisations/{ODS}/documents/content/{ContentID}`: the raw content with
    /// its headers; `None` when SystmOne holds no such content (`404 CONTENT_NOT_FOUND`).
    pub async fn content(
        &self,
        ods: &OdsCode,
        id: &str,
        ctx: &CallContext,
    ) -> std::result::Result<Option<NativeResponse>, AdapterError> {
        let path = format!(
            "/systmone/api/v1/organisations/{}/documents/content/{id}",
            ods.as_str()
        );
        let response = self.http.get(&path, ctx).await?;
        match response.status {
            200 => Ok(Some(response)),
            404 if refusal(&response).0.as_deref() == Some(CONTENT_NOT_FOUND) => Ok(None),
            _ => Err(crate::client::error_from(&response)),
        }
    }

    /// `POST …/organisations/{ODS}/patients/{NHS}/documents/content` with the raw
    /// content as the body (the `Bytes` themselves, not a copy): the
    /// `<UploadContentResponse>`. Never retried here.
    pub async fn upload_content(
        &self,
        ods: &OdsCode,
        nhs: NhsNumber,
        content_type: &str,
        bytes: Bytes,
        ctx: &CallContext,
    ) -> std::result::Result<Bytes, AdapterError> {
        let path = format!(
            "/systmone/api/v1/organisations/{}/patients/{nhs}/documents/content",
            ods.as_str()
        );
        let response = self
            .http
            .send_bytes(Method::POST, &path, Some((content_type, bytes)), &[], ctx)
            .await?;
        match response.status {
            201 => Ok(response.body),
            _ => Err(document_write_error(&response)),
        }
    }

    /// `POST …/organisations/{ODS}/patients/{NHS}/documents` with a
    /// `<FileDocumentRequest>`: `(created, body)`. Never retried here.
    pub async fn file_document(
        &self,
        ods: &OdsCode,
        nhs: NhsNumber,
        body: String,
        ctx: &CallContext,
    ) -> std::result::Result<(bool, Bytes), AdapterError> {
        let path = format!(
            "/systmone/api/v1/organisations/{}/patients/{nhs}/documents",
            ods.as_str()
        );
        self.http
            .send(
                Method::POST,
                &path,
                Some((XML, body.into_bytes())),
                &[],
                ctx,
            )
            .await?
            .created_body(document_write_error)
    }
}

/// SystmOne's answer to a ContentID it does not hold.
const CONTENT_NOT_FOUND: &str = "CONTENT_NOT_FOUND";

/// A refused document write: `404 CONTENT_NOT_FOUND` → `NotFound`; otherwise as every
/// write ([`write_error_from`]: `422 INVALID_DOCUMENT`, another patient's content or
/// content filed already, → `Unprocessable`; an unknown patient → `PatientNotFound`).
fn document_write_error(response: &NativeResponse) -> AdapterError {
    let (code, detail) = refusal(response);
    if response.status == 404 && code.as_deref() == Some(CONTENT_NOT_FOUND) {
        return AdapterError::NotFound {
            system: crate::SYSTEM,
            what: format!("such document content ({detail})"),
        };
    }
    write_error_from(response)
}

// ---- native → neutral ----------------------------------------------------------------

/// A `DocumentID` or `ContentID` attribute: digits, at most [`MAX_ID`].
pub(crate) fn id_attr(at: &At, n: Node, name: &str) -> Result<String> {
    let raw = attr(n, name).ok_or_else(|| at.missing(&at_attr(name)))?;
    if !is_native_id(raw) || raw.len() > MAX_ID {
        return Err(at.invalid(
            &at_attr(name),
            format!("'{}' is not a SystmOne id (digits)", shown(raw)),
        ));
    }
    Ok(raw.to_owned())
}

/// Maps one `<Document>` of patient `nhs`.
fn map_document(at: &At, n: Node, nhs: NhsNumber) -> Result<DocumentMeta> {
    let id = id_attr(at, n, "DocumentID")?;
    let confidential =
        bool_value(at, n, "Confidential")?.ok_or_else(|| at.missing("@Confidential"))?;
    let content = at.node(n, "Content")?;
    let content_at = at.under("Content");
    let content_id = id_attr(&content_at, content, "ContentID")?;
    let content_type = attr(content, "MimeType").ok_or_else(|| content_at.missing("@MimeType"))?;
    if !CONTENT_TYPES.contains(&content_type) {
        return Err(content_at.invalid(
            "@MimeType",
            format!("'{}' is not a document content type", shown(content_type)),
        ));
    }
    let raw_size = attr(content, "Size").ok_or_else(|| content_at.missing("@Size"))?;
    let size: u64 = raw_size
        .parse()
        .ok()
        .filter(|_| raw_size.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            content_at.invalid(
                "@Size",
                format!("'{}' is not a byte count", shown(raw_size)),
            )
        })?;
    let sha1 = match attr(content, "SHA1") {
        None => None,
        Some(hex) => Some(sha1_hex(hex).ok_or_else(|| {
            content_at.invalid("@SHA1", format!("'{}' is not 40 hex digits", shown(hex)))
        })?),
    };
    let kind = at.node(n, "DocumentType")?;
    let kind_at = at.under("DocumentType");
    let code = kind_at.node(kind, "Code")?;
    if !attr(code, "Scheme").is_some_and(|s| s.eq_ignore_ascii_case("Snomed")) {
        return Err(kind_at.invalid("Code/@Scheme", "a document type is SNOMED CT (Snomed)"));
    }
    let type_snomed = code.text().unwrap_or_default().trim();
    if type_snomed.is_empty() || !type_snomed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(kind_at.invalid(
            "Code",
            format!("'{}' is not a SNOMED CT id", shown(type_snomed)),
        ));
    }
    let type_display = kind_at.req(kind, "Rubric")?;
    let author = child(n, "Author");
    let identifier = match child(n, "ExternalIdentifier") {
        None => None,
        Some(e) => match (attr(e, "System"), e.text()) {
            (Some(s), Some(v)) if !s.is_empty() && !v.is_empty() => {
                Some((s.to_owned(), v.to_owned()))
            }
            _ => return Err(at.invalid("ExternalIdentifier", "needs a System and a value")),
        },
    };
    let workflow = match at.req(n, "WorkflowStatus")? {
        "AwaitingReview" => "awaiting-review",
        "Filed" => "filed",
        other => {
            return Err(at.invalid(
                "WorkflowStatus",
                format!("'{}' is not AwaitingReview or Filed", shown(other)),
            ));
        }
    };
    Ok(DocumentMeta {
        id,
        content_id,
        nhs_number: nhs,
        created: utc_element(at, n, "DateCreated")?,
        indexed: utc_element(at, n, "DateReceived")?,
        type_snomed: type_snomed.to_owned(),
        type_display: type_display.to_owned(),
        title: at.req(n, "Title")?.to_owned(),
        content_type: content_type.to_owned(),
        size,
        sha1,
        author_ods: author.and_then(|a| opt(a, "ODSCode")).map(str::to_owned),
        author_name: author.and_then(|a| opt(a, "Name")).map(str::to_owned),
        identifier,
        workflow: workflow.to_owned(),
        confidential,
    })
}

fn sha1_hex(hex: &str) -> Option<[u8; 20]> {
    if hex.len() != 40 {
        return None;
    }
    let mut out = [0u8; 20];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The root element of `doc`, checked to be `name`.
fn root<'a, 'i>(doc: &'a gp_adapter::xml::Document<'i>, name: &str) -> Result<Node<'a, 'i>> {
    let root = doc.root_element();
    if root.tag_name().name() == name {
        Ok(root)
    } else {
        Err(TppDataError::Invalid {
            path: root.tag_name().name().to_owned(),
            reason: format!("expected <{name}>"),
        })
    }
}

/// Maps a `<PatientDocuments>` list, which must be patient `nhs`'s at `ods`.
pub fn map_documents(body: &[u8], nhs: NhsNumber, ods: &OdsCode) -> Result<Vec<DocumentMeta>> {
    let doc = document(body)?;
    let root = root(&doc, "PatientDocuments")?;
    let at = At::DOC;
    let listed_nhs = at.req(root, "NHSNumber")?;
    if NhsNumber::parse(listed_nhs).ok() != Some(nhs) {
        return Err(at.invalid(
            "NHSNumber",
            format!(
                "the list is for {}, but {nhs} was asked for",
                shown(listed_nhs)
            ),
        ));
    }
    let listed_ods = at.req(root, "OrganisationID")?;
    if listed_ods != ods.as_str() {
        return Err(at.invalid(
            "OrganisationID",
            format!(
                "the list is from {}, but {ods} was asked for",
                shown(listed_ods)
            ),
        ));
    }
    root.children()
        .filter(|c| is(c, "Document"))
        .enumerate()
        .map(|(i, d)| map_document(&at.nth("Document", i + 1), d, nhs))
        .collect()
}

/// Maps a content answer: the raw bytes, their `Content-Type` (a document content type)
/// and the patient and confidentiality headers.
pub fn map_content(response: NativeResponse) -> Result<DocumentContent> {
    let at = At::DOC;
    let content_type = response
        .content_type
        .as_deref()
        .and_then(|t| t.split(';').next())
        .map(str::trim)
        .ok_or_else(|| at.missing("Content-Type header"))?;
    let content_type = CONTENT_TYPES
        .iter()
        .find(|t| t.eq_ignore_ascii_case(content_type))
        .ok_or_else(|| {
            at.invalid(
                "Content-Type header",
                format!("'{}' is not a document content type", shown(content_type)),
            )
        })?;
    let raw_nhs = response
        .header(NHS_NUMBER_HEADER)
        .ok_or_else(|| at.missing("X-TPP-NHSNumber header"))?;
    let nhs_number = NhsNumber::parse(&raw_nhs).map_err(|_| {
        at.invalid(
            "X-TPP-NHSNumber header",
            format!("'{}' is not an NHS number", shown(&raw_nhs)),
        )
    })?;
    let confidential = match response.header(CONFIDENTIAL_HEADER).as_deref() {
        Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(at.invalid(
                "X-TPP-Confidential header",
                format!("'{}' is not true or false", shown(other)),
            ));
        }
        None => return Err(at.missing("X-TPP-Confidential header")),
    };
    Ok(DocumentContent {
        nhs_number,
        content_type: (*content_type).to_owned(),
        bytes: response.body,
        confidential,
    })
}

/// Reads an `<UploadContentResponse>`: the new `ContentID` and the size SystmOne kept.
pub fn map_upload_response(body: &[u8]) -> Result<Uploaded> {
    let doc = document(body)?;
    let root = root(&doc, "UploadContentResponse")?;
    let at = At::DOC.under("UploadContentResponse");
    let content_id = at.req(root, "ContentID")?;
    if !is_native_id(content_id) {
        return Err(at.invalid(
            "ContentID",
            format!("'{}' is not a SystmOne id (digits)", shown(content_id)),
        ));
    }
    let raw_size = at.req(root, "Size")?;
    let size = raw_size
        .parse()
        .ok()
        .filter(|_| raw_size.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| at.invalid("Size", format!("'{}' is not a byte count", shown(raw_size))))?;
    Ok(Uploaded {
        content_id: content_id.to_owned(),
        size,
    })
}

/// Reads a `<FileDocumentResponse>` that came with `created` (`201`) or not (`200`):
/// the document as filed, which must be patient `nhs`'s and the uploaded content's.
pub fn map_file_response(
    body: &[u8],
    created: bool,
    nhs: NhsNumber,
    doc: &NewDocument,
) -> Result<Filed> {
    let parsed = document(body)?;
    let root = root(&parsed, "FileDocumentResponse")?;
    let at = At::DOC.under("FileDocumentResponse");
    let said = bool_value(&at, root, "Created")?.ok_or_else(|| at.missing("@Created"))?;
    if said != created {
        return Err(at.invalid(
            "@Created",
            format!(
                "Created=\"{said}\" came with HTTP {}",
                if created { 201 } else { 200 }
            ),
        ));
    }
    if attr(root, "ExternalReference") != Some(doc.key.as_str()) {
        return Err(at.invalid(
            "@ExternalReference",
            "is not the key the document was filed with",
        ));
    }
    let document = map_document(&at.under("Document"), at.node(root, "Document")?, nhs)?;
    if document.content_id != doc.content_id {
        return Err(at.invalid(
            "Document/Content/@ContentID",
            format!(
                "content {} was filed, but the answer files {}",
                doc.content_id, document.content_id
            ),
        ));
    }
    Ok(Filed { document, created })
}

// ---- neutral → native ----------------------------------------------------------------

/// The `<FileDocumentRequest>` for `d`, keyed by its idempotency key (`ExternalReference`),
/// the creation time in UTC.
pub fn render_file_request(d: &NewDocument) -> String {
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<FileDocumentRequest ExternalReference=\"{}\">\n  <ContentID>{}</ContentID>\n",
        escape(&d.key),
        escape(&d.content_id)
    );
    if let Some((system, value)) = &d.identifier {
        xml.push_str(&format!(
            "  <ExternalIdentifier System=\"{}\">{}</ExternalIdentifier>\n",
            escape(system),
            escape(value)
        ));
    }
    xml.push_str(&format!(
        "  <DocumentType><Code Scheme=\"Snomed\">{}</Code><Rubric>{}</Rubric></DocumentType>\n  <Title>{}</Title>\n  <DateCreated>{}</DateCreated>\n  <Author><ODSCode>{}</ODSCode>",
        escape(&d.type_snomed),
        escape(&d.type_display),
        escape(&d.title),
        d.created.to_rfc3339(),
        escape(&d.author_ods)
    ));
    if let Some(name) = &d.author_name {
        xml.push_str(&format!("<Name>{}</Name>", escape(name)));
    }
    xml.push_str("</Author>\n</FileDocumentRequest>\n");
    xml
}
