//! Vision's documents: the patient's document extract mapped to [`DocumentMeta`]
//! (Vision numbers as ids, UK local times as UTC), content read and uploaded as raw
//! bytes, and the filing row. `docs/native-formats/vision.md`, "Documents".

use bytes::Bytes;
use gp_adapter::documents::CONTENT_TYPES;
use gp_adapter::native::{Call, Method, NativeResponse, refusal_detail, status_error};
use gp_adapter::{AdapterError, CallContext, DocumentContent, DocumentMeta, NewDocument, Uploaded};
use gp_fhir::text::shown;
use gp_fhir::{NhsNumber, OdsCode};

use crate::appointments::{is_number, native_local, stamp};
use crate::client::{VisionClient, write_error_from};
use crate::error::VisionDataError;
use crate::extract::{self, Extract, Row};
use crate::mapping::{Col, col, exactly_one, invalid, opt, parse_error_body, req, yes_no};

const SYSTEM: gp_adapter::GpSystem = crate::SYSTEM;
/// Content type of the filing row sent.
const CONTENT_TYPE: &str = "text/plain; charset=utf-8";
/// Response header of a content download naming the patient it belongs to.
pub const CONTENT_NHS_HEADER: &str = "x-vision-nhs-number";
/// Response header of a content download: `Y` when its document is confidential.
pub const CONTENT_CONFIDENTIAL_HEADER: &str = "x-vision-confidential";

/// Columns of a filing row, in the order the adapter sends them.
pub const FILING_COLUMNS: [&str; 10] = [
    "CONTENT_ID",
    "FILING_KEY",
    "TYPE_SNOMED",
    "TYPE_RUBRIC",
    "TITLE",
    "CREATED",
    "AUTHOR_ODS",
    "AUTHOR_NAME",
    "EXT_SYSTEM",
    "EXT_ID",
];

type Result<T> = std::result::Result<T, VisionDataError>;
type Outcome<T> = std::result::Result<T, AdapterError>;

/// A Vision number (a document or content id).
fn number(row: &Row, c: Col) -> Result<String> {
    let raw = req(row, c)?;
    if is_number(raw) {
        Ok(raw.to_owned())
    } else {
        Err(invalid(
            row,
            c,
            format!("'{}' is not a Vision number", shown(raw)),
        ))
    }
}

/// The row's `NHS_NUMBER`, which must be `nhs`.
fn patient(row: &Row, c: Col, nhs: NhsNumber) -> Result<()> {
    let raw = req(row, c)?;
    if NhsNumber::parse(raw).ok() == Some(nhs) {
        Ok(())
    } else {
        Err(invalid(
            row,
            c,
            format!("the row is for {}, but {nhs} was asked for", shown(raw)),
        ))
    }
}

fn sha1(row: &Row, c: Col) -> Result<Option<[u8; 20]>> {
    let Some(raw) = opt(row, c) else {
        return Ok(None);
    };
    let mut out = [0u8; 20];
    let ok = raw.len() == 40
        && out.iter_mut().enumerate().all(|(i, b)| {
            raw.get(2 * i..2 * i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .map(|v| *b = v)
                .is_some()
        });
    if ok {
        Ok(Some(out))
    } else {
        Err(invalid(
            row,
            c,
            format!("'{}' is not a hex SHA-1", shown(raw)),
        ))
    }
}

/// A MIME type the gateway serves documents as.
fn mime(row: &Row, c: Col) -> Result<String> {
    let raw = req(row, c)?;
    if CONTENT_TYPES.contains(&raw) {
        Ok(raw.to_owned())
    } else {
        Err(invalid(
            row,
            c,
            format!(
                "'{}' is not one of {}",
                shown(raw),
                CONTENT_TYPES.join(", ")
            ),
        ))
    }
}

/// Maps a document extract (the patient's list, or a filing answer) for patient `nhs`:
/// every row or none. A row for another patient, an id that is not a Vision number, a
/// time that is not local `YYYYMMDDHHMMSS`, an unknown workflow state or MIME type, or an
/// identifier without its system fails the whole extract.
pub fn map_documents(
    body: &[u8],
    extract: &'static str,
    nhs: NhsNumber,
) -> Result<Vec<DocumentMeta>> {
    let ex = Extract::parse(extract, body)?;
    let c = |name| col(&ex, name);
    let [
        doc_id,
        content_id,
        nhs_col,
        type_snomed,
        type_rubric,
        title,
        created,
        received,
    ] = [
        "DOC_ID",
        "CONTENT_ID",
        "NHS_NUMBER",
        "TYPE_SNOMED",
        "TYPE_RUBRIC",
        "TITLE",
        "CREATED",
        "RECEIVED",
    ]
    .map(c);
    let [
        mime_col,
        size,
        sha,
        author_ods,
        author_name,
        workflow,
        confidential,
        ext_system,
        ext_id,
    ] = [
        "MIME_TYPE",
        "SIZE",
        "SHA1",
        "AUTHOR_ODS",
        "AUTHOR_NAME",
        "WORKFLOW",
        "CONFIDENTIAL",
        "EXT_SYSTEM",
        "EXT_ID",
    ]
    .map(c);
    let (doc_id, content_id, nhs_col, type_snomed, type_rubric, title, created, received) = (
        doc_id?,
        content_id?,
        nhs_col?,
        type_snomed?,
        type_rubric?,
        title?,
        created?,
        received?,
    );
    let (mime_col, size, sha, author_ods, author_name, workflow, confidential, ext_system, ext_id) = (
        mime_col?,
        size?,
        sha?,
        author_ods?,
        author_name?,
        workflow?,
        confidential?,
        ext_system?,
        ext_id?,
    );
    ex.iter()
        .map(|row| {
            patient(&row, nhs_col, nhs)?;
            let type_code = req(&row, type_snomed)?;
            if !((6..=18).contains(&type_code.len())
                && type_code.bytes().all(|b| b.is_ascii_digit()))
            {
                return Err(invalid(
                    &row,
                    type_snomed,
                    format!("'{}' is not a SNOMED CT id", shown(type_code)),
                ));
            }
            let size_raw = req(&row, size)?;
            let bytes = size_raw
                .parse::<u64>()
                .ok()
                .filter(|_| size_raw.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    invalid(
                        &row,
                        size,
                        format!("'{}' is not a byte count", shown(size_raw)),
                    )
                })?;
            let workflow = match req(&row, workflow)? {
                "AWAITING_REVIEW" => "awaiting-review",
                "FILED" => "filed",
                other => {
                    return Err(invalid(
                        &row,
                        workflow,
                        format!("'{}' is not AWAITING_REVIEW or FILED", shown(other)),
                    ));
                }
            };
            let identifier = match (opt(&row, ext_system), opt(&row, ext_id)) {
                (None, None) => None,
                (Some(s), Some(v)) => Some((s.to_owned(), v.to_owned())),
                _ => {
                    return Err(invalid(
                        &row,
                        ext_id,
                        "EXT_SYSTEM and EXT_ID come together or not at all",
                    ));
                }
            };
            Ok(DocumentMeta {
                id: number(&row, doc_id)?,
                content_id: number(&row, content_id)?,
                nhs_number: nhs,
                created: stamp(&row, created)?,
                indexed: stamp(&row, received)?,
                type_snomed: type_code.to_owned(),
                type_display: req(&row, type_rubric)?.to_owned(),
                title: req(&row, title)?.to_owned(),
                content_type: mime(&row, mime_col)?,
                size: bytes,
                sha1: sha1(&row, sha)?,
                author_ods: opt(&row, author_ods).map(str::to_owned),
                author_name: opt(&row, author_name).map(str::to_owned),
                identifier,
                workflow: workflow.to_owned(),
                confidential: yes_no(&row, confidential)?,
            })
        })
        .collect()
}

/// Reads an upload's answer (`CONTENT_ID|NHS_NUMBER|MIME_TYPE|SIZE|SHA1`, one row) for
/// `size` bytes of patient `nhs`: the new content id. A size other than the one sent
/// means the content was not kept as sent.
pub fn map_uploaded(body: &[u8], nhs: NhsNumber, size: usize) -> Result<Uploaded> {
    let ex = Extract::parse("upload answer", body)?;
    let row = exactly_one(&ex)?;
    patient(&row, col(&ex, "NHS_NUMBER")?, nhs)?;
    let size_col = col(&ex, "SIZE")?;
    let raw = req(&row, size_col)?;
    if raw != size.to_string() {
        return Err(invalid(
            &row,
            size_col,
            format!("Vision kept {} bytes, {size} were sent", shown(raw)),
        ));
    }
    Ok(Uploaded {
        content_id: number(&row, col(&ex, "CONTENT_ID")?)?,
        size: u64::try_from(size).unwrap_or(u64::MAX),
    })
}

/// A downloaded content's answer: the raw bytes, their MIME type (`Content-Type`), the
/// patient and the confidential flag from Vision's headers; any of them missing or not
/// one the format allows fails it.
pub fn map_content(response: NativeResponse) -> Result<DocumentContent> {
    let fail = |column: &'static str, reason: String| VisionDataError::Invalid {
        extract: "content download",
        row: 1,
        column,
        reason,
    };
    let content_type = response
        .content_type
        .as_deref()
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if !CONTENT_TYPES.contains(&content_type.as_str()) {
        return Err(fail(
            "Content-Type",
            format!(
                "'{}' is not one of {}",
                shown(&content_type),
                CONTENT_TYPES.join(", ")
            ),
        ));
    }
    let nhs = response.header(CONTENT_NHS_HEADER).unwrap_or_default();
    let nhs_number = NhsNumber::parse(&nhs).map_err(|_| {
        fail(
            "X-Vision-NHS-Number",
            format!("'{}' is not an NHS number", shown(&nhs)),
        )
    })?;
    let confidential = match response.header(CONTENT_CONFIDENTIAL_HEADER).as_deref() {
        Some("Y") => true,
        Some("N") => false,
        other => {
            return Err(fail(
                "X-Vision-Confidential",
                format!("'{}' is not Y or N", shown(other.unwrap_or_default())),
            ));
        }
    };
    Ok(DocumentContent {
        nhs_number,
        content_type,
        bytes: response.body,
        confidential,
    })
}

/// Renders a document to file as Vision's filing row: `CREATED` in UK local time, the
/// supplier's identifier in `EXT_SYSTEM`/`EXT_ID`, the key as `FILING_KEY`.
pub fn render_filing(doc: &NewDocument) -> String {
    let (ext_system, ext_id) = doc.identifier.clone().unwrap_or_default();
    let row = vec![
        doc.content_id.clone(),
        doc.key.clone(),
        doc.type_snomed.clone(),
        doc.type_display.trim().to_owned(),
        doc.title.trim().to_owned(),
        native_local(doc.created),
        doc.author_ods.clone(),
        doc.author_name
            .as_deref()
            .map(str::trim)
            .unwrap_or_default()
            .to_owned(),
        ext_system,
        ext_id,
    ];
    extract::write(&FILING_COLUMNS, &[row])
}

/// Maps a refused document call: `CONTENT_NOT_FOUND` → `NotFound`, anything else as
/// every write maps it ([`write_error_from`]: unknown patient → `PatientNotFound`,
/// `422` (another patient's content, filed already, a bad type) → `Unprocessable`).
pub fn refused(response: &NativeResponse) -> AdapterError {
    match parse_error_body(&response.body) {
        Some((code, message)) if response.status == 404 && code == "CONTENT_NOT_FOUND" => {
            AdapterError::NotFound {
                system: SYSTEM,
                what: format!("content ({message})"),
            }
        }
        _ => write_error_from(response),
    }
}

impl VisionClient {
    /// `GET /vision/practices/{ODS}/patients/{NHS}/documents`: the document extract.
    pub async fn documents(
        &self,
        ods: &OdsCode,
        nhs: NhsNumber,
        ctx: &CallContext,
    ) -> Outcome<Bytes> {
        let path = format!(
            "/vision/practices/{}/patients/{nhs}/documents",
            ods.as_str()
        );
        self.http
            .get(&path, ctx)
            .await?
            .ok_body(crate::client::error_from)
    }

    /// `GET /vision/practices/{ODS}/content/{CONTENT_ID}`: the raw answer, `None` for
    /// `CONTENT_NOT_FOUND` or `PRACTICE_NOT_FOUND` (no such content there).
    pub async fn content(
        &self,
        ods: &OdsCode,
        id: &str,
        ctx: &CallContext,
    ) -> Outcome<Option<NativeResponse>> {
        let path = format!("/vision/practices/{}/content/{id}", ods.as_str());
        let response = self.http.get(&path, ctx).await?;
        if response.status == 200 {
            return Ok(Some(response));
        }
        let native = parse_error_body(&response.body);
        let gone = response.status == 404
            && native
                .as_ref()
                .is_some_and(|(c, _)| c == "CONTENT_NOT_FOUND" || c == "PRACTICE_NOT_FOUND");
        if gone {
            return Ok(None);
        }
        let detail = refusal_detail(
            response.status,
            native.as_ref().map(|(c, m)| (c.as_str(), m.as_str())),
            "a Vision ERROR line",
        );
        Err(status_error(
            SYSTEM,
            Call::Read,
            response.status,
            false,
            detail,
        ))
    }

    /// `POST /vision/practices/{ODS}/patients/{NHS}/content` with the raw bytes (sent as
    /// they are, not copied): the upload answer (`201`).
    pub async fn upload(
        &self,
        ods: &OdsCode,
        nhs: NhsNumber,
        content_type: &str,
        bytes: Bytes,
        ctx: &CallContext,
    ) -> Outcome<Bytes> {
        let path = format!("/vision/practices/{}/patients/{nhs}/content", ods.as_str());
        let response = self
            .http
            .send_bytes(Method::POST, &path, Some((content_type, bytes)), &[], ctx)
            .await?;
        if response.status == 201 {
            Ok(response.body)
        } else {
            Err(refused(&response))
        }
    }

    /// `POST /vision/practices/{ODS}/patients/{NHS}/documents` with a filing row:
    /// `(created, answer)` (`201` filed now, `200` the `FILING_KEY` was seen).
    pub async fn file(
        &self,
        ods: &OdsCode,
        nhs: NhsNumber,
        body: String,
        ctx: &CallContext,
    ) -> Outcome<(bool, Bytes)> {
        let path = format!(
            "/vision/practices/{}/patients/{nhs}/documents",
            ods.as_str()
        );
        self.http
            .send(
                Method::POST,
                &path,
                Some((CONTENT_TYPE, body.into_bytes())),
                &[],
                ctx,
            )
            .await?
            .created_body(refused)
    }
}
