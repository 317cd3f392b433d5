//! EMIS Web's documents (`docs/native-formats/emis.md`, "Documents"): the native calls
//! and the mapping between EMIS Open XML and the vendor-neutral
//! [`gp_adapter::documents`] types. A patient's `DocumentList`, an attachment's raw
//! bytes, an upload of raw bytes, and a `FileDocument` naming the uploaded attachment.
//!
//! Times are UK local wall-clock times without an offset, read as UTC instants here
//! (as the appointment book reads them); ids are EMIS GUIDs, lower case. Every answer is
//! mapped whole or refused as [`AdapterError::InvalidNativeData`], never half-mapped.

use gp_adapter::documents::CONTENT_TYPES;
use gp_adapter::native::{Call, Method, NativeResponse, refusal_detail, status_error};
use gp_adapter::xml::Node;
use gp_adapter::{
    AdapterError, ContentRequest, DocumentContent, DocumentMeta, DocumentSearchRequest,
    FileDocumentRequest, Filed, NewDocument, UploadContentRequest, Uploaded,
};
use gp_fhir::NhsNumber;
use gp_fhir::text::shown;

use crate::SYSTEM;
use crate::appointments::{At, DataResult, child, is_id, local_text, root_named};
use crate::client::EmisClient;
use crate::error::EmisDataError;
use crate::mapping::{Doc, XML, document, parse_error_document};

type Result<T> = std::result::Result<T, AdapterError>;

/// Response header naming the patient an attachment belongs to (NHS number).
pub const PATIENT_HEADER: &str = "x-emis-nhs-number";
/// Response header saying whether the document filing an attachment is confidential.
pub const CONFIDENTIAL_HEADER: &str = "x-emis-confidential";

/// Which document call was refused: a refusal means something else for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    List,
    Download,
    Upload,
    File,
}

/// Maps a refused document call: EMIS's own codes first, then the shared status table.
fn refused(op: Op, what: &str, response: &NativeResponse) -> AdapterError {
    let native = parse_error_document(&response.body);
    let code = native.as_ref().map(|(c, _)| c.as_str());
    let detail = refusal_detail(
        response.status,
        native.as_ref().map(|(c, m)| (c.as_str(), m.as_str())),
        "an EMIS error document",
    );
    let unprocessable = |detail| AdapterError::Unprocessable {
        system: SYSTEM,
        detail,
    };
    match (response.status, code, op) {
        (
            404,
            Some("PATIENT_NOT_FOUND" | "PRACTICE_NOT_FOUND"),
            Op::List | Op::Upload | Op::File,
        ) => AdapterError::PatientNotFound,
        (404, Some("ATTACHMENT_NOT_FOUND"), Op::File) => AdapterError::NotFound {
            system: SYSTEM,
            what: format!("content {what}"),
        },
        // Another patient's attachment, or one filed already: not this filing's to make.
        (409 | 422, _, Op::File) => unprocessable(detail),
        // Too large, or a type EMIS Web does not keep.
        (413 | 415 | 422, _, Op::Upload) => unprocessable(detail),
        (status, _, op) => {
            let call = match op {
                Op::Upload | Op::File => Call::Write,
                Op::List | Op::Download => Call::Read,
            };
            status_error(SYSTEM, call, status, false, detail)
        }
    }
}

fn base(ods: &gp_fhir::OdsCode, nhs: NhsNumber) -> String {
    format!("/emis/practices/{}/patients/{nhs}", ods.as_str())
}

/// `GET …/patients/{NHS}/documents`: the patient's documents, as EMIS lists them
/// (newest first).
pub async fn search(client: &EmisClient, req: &DocumentSearchRequest) -> Result<Vec<DocumentMeta>> {
    let path = format!("{}/documents", base(&req.practice, req.nhs_number));
    let body = client
        .native()
        .get(&path, &req.context)
        .await?
        .ok_body(|r| refused(Op::List, "", r))?;
    Ok(map_document_list(&body, req.nhs_number)?)
}

/// `GET /emis/practices/{ODS}/attachments/{GUID}`: the content's bytes as EMIS sends
/// them (no copy), `None` when the practice has no such attachment.
pub async fn read_content(
    client: &EmisClient,
    req: &ContentRequest,
) -> Result<Option<DocumentContent>> {
    // An id this adapter never gave out names no attachment (and stays out of the URL).
    if !is_id(&req.content_id) {
        return Ok(None);
    }
    let path = format!(
        "/emis/practices/{}/attachments/{}",
        req.practice.as_str(),
        req.content_id
    );
    let response = client.native().get(&path, &req.context).await?;
    if response.status == 404 {
        let native = parse_error_document(&response.body);
        if matches!(
            native.as_ref().map(|(c, _)| c.as_str()),
            Some("ATTACHMENT_NOT_FOUND" | "PRACTICE_NOT_FOUND")
        ) {
            return Ok(None);
        }
    }
    if response.status != 200 {
        return Err(refused(Op::Download, &req.content_id, &response));
    }
    Ok(Some(map_content(response)?))
}

/// An attachment download: its MIME type, patient and confidentiality from the headers,
/// the body as it came.
pub fn map_content(response: NativeResponse) -> DataResult<DocumentContent> {
    let at = At("attachment".into());
    let content_type = response
        .content_type
        .as_deref()
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .ok_or_else(|| at.missing("Content-Type"))?;
    if !CONTENT_TYPES.contains(&content_type.as_str()) {
        return Err(at.invalid(
            "Content-Type",
            format!(
                "'{}' is not one of {}",
                shown(&content_type),
                CONTENT_TYPES.join(", ")
            ),
        ));
    }
    let raw_nhs = response
        .header(PATIENT_HEADER)
        .ok_or_else(|| at.missing(PATIENT_HEADER))?;
    let nhs_number = NhsNumber::parse(&raw_nhs.replace(' ', ""))
        .map_err(|e| at.invalid(PATIENT_HEADER, e.to_string()))?;
    let confidential = match response.header(CONFIDENTIAL_HEADER).as_deref() {
        Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(at.invalid(
                CONFIDENTIAL_HEADER,
                format!("'{}' is not true or false", shown(other)),
            ));
        }
        None => return Err(at.missing(CONFIDENTIAL_HEADER)),
    };
    Ok(DocumentContent {
        nhs_number,
        content_type,
        bytes: response.body,
        confidential,
    })
}

/// `POST …/patients/{NHS}/attachments` with the bytes as the body (`Content-Type` the
/// MIME type): the new attachment's GUID and size.
pub async fn upload(client: &EmisClient, req: &UploadContentRequest) -> Result<Uploaded> {
    let path = format!("{}/attachments", base(&req.practice, req.nhs_number));
    // A refcount clone: the bytes themselves are not copied.
    let body = Some((req.content_type.as_str(), req.bytes.clone()));
    let response = client
        .native()
        .send_bytes(Method::POST, &path, body, &[], &req.context)
        .await?;
    if response.status != 201 {
        return Err(refused(Op::Upload, "", &response));
    }
    let uploaded = map_upload_result(&response.body)?;
    if uploaded.size != req.bytes.len() as u64 {
        return Err(EmisDataError::Invalid {
            path: "AttachmentResult/SizeInBytes".into(),
            reason: format!(
                "EMIS recorded {} bytes, but {} were sent",
                uploaded.size,
                req.bytes.len()
            ),
        }
        .into());
    }
    Ok(uploaded)
}

/// An `AttachmentResult`: the new attachment's GUID and recorded size.
pub fn map_upload_result(body: &[u8]) -> DataResult<Uploaded> {
    let doc = document(body)?;
    let root = root_named(&doc, "AttachmentResult")?;
    let at = At("AttachmentResult".into());
    Ok(Uploaded {
        content_id: at.id(root, "AttachmentGUID")?,
        size: size(&at, root)?,
    })
}

/// `POST …/patients/{NHS}/documents` with a `FileDocument`: the document as EMIS now
/// holds it, created now (`201`) or under the same key before (`200`).
pub async fn file(client: &EmisClient, req: &FileDocumentRequest) -> Result<Filed> {
    let request = render_file_document(&req.document)?;
    let path = format!("{}/documents", base(&req.practice, req.nhs_number));
    let content_id = req.document.content_id.clone();
    let (created, body) = client
        .native()
        .send(
            Method::POST,
            &path,
            Some((XML, request.into_bytes())),
            &[],
            &req.context,
        )
        .await?
        .created_body(|r| refused(Op::File, &content_id, r))?;
    Ok(Filed {
        document: map_document_result(&body, req.nhs_number)?,
        created,
    })
}

/// A `NewDocument` as a `FileDocument`; the creation time in UK local time. Content
/// ids not of this adapter's making are `NotFound` (no call is made).
pub fn render_file_document(d: &NewDocument) -> Result<String> {
    if !is_id(&d.content_id) {
        return Err(AdapterError::NotFound {
            system: SYSTEM,
            what: format!("content {}", shown(&d.content_id)),
        });
    }
    let mut doc = Doc::new("FileDocument");
    doc.text("ExternalKey", &d.key);
    if let Some((system, value)) = &d.identifier {
        doc.open("ExternalIdentifier");
        doc.text("System", system);
        doc.text("Value", value);
        doc.close("ExternalIdentifier");
    }
    doc.text("AttachmentGUID", &d.content_id);
    doc.open("Type");
    doc.open("Code");
    doc.text("Value", &d.type_snomed);
    doc.text("Scheme", "SNOMED");
    doc.text("Term", &d.type_display);
    doc.close("Code");
    doc.close("Type");
    doc.text("Title", &d.title);
    doc.text("CreatedDateTime", &local_text(d.created));
    doc.open("AuthorOrganisation");
    doc.text("OdsCode", &d.author_ods);
    if let Some(name) = &d.author_name {
        doc.text("Name", name);
    }
    doc.close("AuthorOrganisation");
    Ok(doc.finish("FileDocument"))
}

/// A `DocumentResult`'s `Document`, which must be patient `nhs`'s.
pub fn map_document_result(body: &[u8], nhs: NhsNumber) -> DataResult<DocumentMeta> {
    let doc = document(body)?;
    let root = root_named(&doc, "DocumentResult")?;
    let at = At("DocumentResult".into());
    let n = child(root, "Document").ok_or_else(|| at.missing("Document"))?;
    map_document(&At("DocumentResult/Document".into()), n, nhs)
}

/// A `DocumentList`, every `Document` of which must be patient `nhs`'s.
pub fn map_document_list(body: &[u8], nhs: NhsNumber) -> DataResult<Vec<DocumentMeta>> {
    let doc = document(body)?;
    let root = root_named(&doc, "DocumentList")?;
    root.children()
        .filter(|c| c.has_tag_name(Some(crate::NS), "Document"))
        .enumerate()
        .map(|(i, n)| map_document(&At::nth("DocumentList", "Document", i + 1), n, nhs))
        .collect()
}

fn size(at: &At, n: Node) -> DataResult<u64> {
    let raw = at.req(n, "SizeInBytes")?;
    raw.parse::<u64>().map_err(|_| {
        at.invalid(
            "SizeInBytes",
            format!("'{}' is not a whole number of bytes", shown(raw)),
        )
    })
}

fn map_document(at: &At, n: Node, nhs: NhsNumber) -> DataResult<DocumentMeta> {
    let raw_nhs = at.req(n, "NhsNumber")?;
    let nhs_number = NhsNumber::parse(&raw_nhs.replace(' ', ""))
        .map_err(|e| at.invalid("NhsNumber", e.to_string()))?;
    // A document of someone else must never be answered as this patient's.
    if nhs_number != nhs {
        return Err(at.invalid(
            "NhsNumber",
            format!("the document is {nhs_number}'s, but {nhs}'s were asked for"),
        ));
    }
    let type_at = At(format!("{}/Type/Code", at.0));
    let code = child(n, "Type")
        .and_then(|t| child(t, "Code"))
        .ok_or_else(|| at.missing("Type/Code"))?;
    match type_at.req(code, "Scheme")? {
        "SNOMED" => {}
        other => {
            return Err(type_at.invalid("Scheme", format!("'{}' is not SNOMED", shown(other))));
        }
    }
    let type_snomed = type_at.req(code, "Value")?;
    if !type_snomed.bytes().all(|b| b.is_ascii_digit()) || type_snomed.len() > 18 {
        return Err(type_at.invalid(
            "Value",
            format!("'{}' is not a SNOMED CT id", shown(type_snomed)),
        ));
    }
    let content_type = at.req(n, "MimeType")?;
    if !CONTENT_TYPES.contains(&content_type) {
        return Err(at.invalid(
            "MimeType",
            format!(
                "'{}' is not one of {}",
                shown(content_type),
                CONTENT_TYPES.join(", ")
            ),
        ));
    }
    let sha1 =
        match at.opt(n, "Sha1") {
            None => None,
            Some(raw) => Some(hex20(raw).ok_or_else(|| {
                at.invalid("Sha1", format!("'{}' is not 40 hex digits", shown(raw)))
            })?),
        };
    let (author_ods, author_name) = match child(n, "AuthorOrganisation") {
        None => (None, None),
        Some(org) => {
            let org_at = At(format!("{}/AuthorOrganisation", at.0));
            (org_at.owned(org, "OdsCode"), org_at.owned(org, "Name"))
        }
    };
    let identifier = match child(n, "ExternalIdentifier") {
        None => None,
        Some(e) => {
            let e_at = At(format!("{}/ExternalIdentifier", at.0));
            Some((
                e_at.req(e, "System")?.to_owned(),
                e_at.req(e, "Value")?.to_owned(),
            ))
        }
    };
    let workflow = match at.req(n, "WorkflowState")? {
        "AwaitingReview" => "awaiting-review",
        "Filed" => "filed",
        other => {
            return Err(at.invalid(
                "WorkflowState",
                format!("'{}' is not AwaitingReview or Filed", shown(other)),
            ));
        }
    };
    let confidential = match at.req(n, "Confidential")? {
        "true" => true,
        "false" => false,
        other => {
            return Err(at.invalid(
                "Confidential",
                format!("'{}' is not true or false", shown(other)),
            ));
        }
    };
    Ok(DocumentMeta {
        id: at.id(n, "GUID")?,
        content_id: at.id(n, "AttachmentGUID")?,
        nhs_number,
        created: at.time(n, "CreatedDateTime")?,
        indexed: at.time(n, "ReceivedDateTime")?,
        type_snomed: type_snomed.to_owned(),
        type_display: type_at.req(code, "Term")?.to_owned(),
        title: at.req(n, "Title")?.to_owned(),
        content_type: content_type.to_owned(),
        size: size(at, n)?,
        sha1,
        author_ods,
        author_name,
        identifier,
        workflow: workflow.to_owned(),
        confidential,
    })
}

/// 40 hex digits as 20 bytes.
fn hex20(raw: &str) -> Option<[u8; 20]> {
    if raw.len() != 40 {
        return None;
    }
    let mut out = [0u8; 20];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(raw.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const NHS: &str = "9000000009";

    fn nhs() -> NhsNumber {
        NhsNumber::parse(NHS).unwrap()
    }

    fn list(document: &str) -> String {
        format!(
            "<DocumentList xmlns=\"{}\">{document}</DocumentList>",
            crate::NS
        )
    }

    fn good() -> String {
        "<Document><GUID>0b9c1c2e-5a4d-4c55-9e0f-1a2b3c4d5e6f</GUID>\
         <AttachmentGUID>{1B9C1C2E-5A4D-4C55-9E0F-1A2B3C4D5E6F}</AttachmentGUID>\
         <NhsNumber>900 000 0009</NhsNumber>\
         <Type><Code><Value>371530004</Value><Scheme>SNOMED</Scheme><Term>Clinical consultation report</Term></Code></Type>\
         <Title>Online consultation</Title>\
         <CreatedDateTime>15/07/2026 09:30:00</CreatedDateTime>\
         <ReceivedDateTime>15/01/2026 09:30:00</ReceivedDateTime>\
         <MimeType>application/pdf</MimeType><SizeInBytes>1234</SizeInBytes>\
         <Sha1>00112233445566778899aabbccddeeff00112233</Sha1>\
         <AuthorOrganisation><OdsCode>Y90002</OdsCode><Name>Example Consult Ltd</Name></AuthorOrganisation>\
         <ExternalIdentifier><System>https://supplier.example/docs</System><Value>d-1</Value></ExternalIdentifier>\
         <WorkflowState>AwaitingReview</WorkflowState><Confidential>false</Confidential></Document>"
            .into()
    }

    #[test]
    fn a_document_maps_whole_with_uk_local_times_in_utc() {
        let docs = map_document_list(list(&good()).as_bytes(), nhs()).unwrap();
        let d = &docs[0];
        assert_eq!(d.id, "0b9c1c2e-5a4d-4c55-9e0f-1a2b3c4d5e6f");
        assert_eq!(d.content_id, "1b9c1c2e-5a4d-4c55-9e0f-1a2b3c4d5e6f");
        assert_eq!((d.created.hour, d.created.minute), (8, 30), "BST is UTC+1");
        assert_eq!((d.indexed.hour, d.indexed.minute), (9, 30), "GMT is UTC");
        assert_eq!(d.sha1.unwrap()[1], 0x11);
        assert_eq!(d.workflow, "awaiting-review");
        assert_eq!(
            d.identifier,
            Some(("https://supplier.example/docs".into(), "d-1".into()))
        );
        assert_eq!(d.author_ods.as_deref(), Some("Y90002"));
        assert_eq!(d.size, 1234);
    }

    #[test]
    fn a_malformed_document_is_invalid_native_data_naming_the_element() {
        for (from, to, element) in [
            (
                "<MimeType>application/pdf",
                "<MimeType>image/png",
                "MimeType",
            ),
            ("<SizeInBytes>1234", "<SizeInBytes>12x", "SizeInBytes"),
            ("<Sha1>0011", "<Sha1>zz11", "Sha1"),
            ("AwaitingReview", "Pending", "WorkflowState"),
            (
                "15/07/2026 09:30:00",
                "31/02/2026 09:30:00",
                "CreatedDateTime",
            ),
            ("900 000 0009", "900 000 0017", "NhsNumber"),
            (
                "<Scheme>SNOMED</Scheme>",
                "<Scheme>READ2</Scheme>",
                "Type/Code/Scheme",
            ),
            ("<Title>Online consultation</Title>", "", "Title"),
            ("<Confidential>false", "<Confidential>no", "Confidential"),
        ] {
            let bad = good().replacen(from, to, 1);
            assert_ne!(bad, good(), "{from}");
            let err = map_document_list(list(&bad).as_bytes(), nhs()).unwrap_err();
            assert!(err.to_string().contains(element), "{element}: {err}");
            let adapter: AdapterError = err.into();
            assert!(matches!(adapter, AdapterError::InvalidNativeData { .. }));
        }
        assert!(map_document_list(b"<DocumentList>", nhs()).is_err());
        assert!(
            map_document_list(list("").as_bytes(), nhs())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_download_without_its_patient_or_type_is_refused() {
        let mut headers = hyper::HeaderMap::new();
        headers.insert(PATIENT_HEADER, NHS.parse().unwrap());
        headers.insert(CONFIDENTIAL_HEADER, "true".parse().unwrap());
        let ok = NativeResponse {
            status: 200,
            body: bytes::Bytes::from_static(b"hello"),
            content_type: Some("text/plain; charset=utf-8".into()),
            headers: headers.clone(),
        };
        let c = map_content(ok.clone()).unwrap();
        assert_eq!(
            (c.content_type.as_str(), c.confidential),
            ("text/plain", true)
        );
        assert_eq!(&c.bytes[..], b"hello");
        let no_type = NativeResponse {
            content_type: Some("application/zip".into()),
            ..ok.clone()
        };
        assert!(map_content(no_type).is_err());
        let mut no_patient = ok;
        no_patient.headers.remove(PATIENT_HEADER);
        assert!(
            map_content(no_patient)
                .unwrap_err()
                .to_string()
                .contains(PATIENT_HEADER)
        );
    }

    #[test]
    fn filing_refusals_map_as_the_trait_says() {
        let resp = |status: u16, code: &str| NativeResponse {
            status,
            body: bytes::Bytes::from(format!(
                "<Error xmlns=\"{}\"><Code>{code}</Code><Message>m</Message></Error>",
                crate::NS
            )),
            content_type: None,
            headers: Default::default(),
        };
        assert!(matches!(
            refused(Op::File, "c", &resp(404, "ATTACHMENT_NOT_FOUND")),
            AdapterError::NotFound { .. }
        ));
        assert!(matches!(
            refused(Op::File, "c", &resp(409, "ATTACHMENT_ALREADY_FILED")),
            AdapterError::Unprocessable { .. }
        ));
        assert!(matches!(
            refused(Op::File, "c", &resp(422, "ATTACHMENT_PATIENT_MISMATCH")),
            AdapterError::Unprocessable { .. }
        ));
        assert_eq!(
            refused(Op::List, "", &resp(404, "PATIENT_NOT_FOUND")),
            AdapterError::PatientNotFound
        );
        assert!(matches!(
            refused(Op::Upload, "", &resp(413, "REQUEST_TOO_LARGE")),
            AdapterError::Unprocessable { .. }
        ));
        assert!(matches!(
            refused(Op::Download, "", &resp(503, "SERVICE_UNAVAILABLE")),
            AdapterError::Unavailable { .. }
        ));
    }

    #[test]
    fn content_ids_not_of_this_adapter_are_not_found() {
        let d = NewDocument {
            key: "k".into(),
            identifier: None,
            content_id: "../x".into(),
            type_snomed: "371530004".into(),
            type_display: "Clinical consultation report".into(),
            title: "t".into(),
            created: gp_adapter::UtcDateTime {
                year: 2026,
                month: 7,
                day: 15,
                hour: 8,
                minute: 30,
                second: 0,
            },
            author_ods: "Y90002".into(),
            author_name: None,
        };
        assert!(matches!(
            render_file_document(&d),
            Err(AdapterError::NotFound { .. })
        ));
        let d = NewDocument {
            content_id: "1b9c1c2e-5a4d-4c55-9e0f-1a2b3c4d5e6f".into(),
            ..d
        };
        let xml = render_file_document(&d).unwrap();
        assert!(xml.contains("<CreatedDateTime>15/07/2026 09:30:00</CreatedDateTime>"));
    }
}
