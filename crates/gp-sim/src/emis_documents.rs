//! EMIS Web's documents, as `docs/native-formats/emis.md` ("Documents") describes them:
//! a patient's document list, attachment downloads and uploads as raw bytes, and
//! filing a document that names an uploaded attachment, over the shared store
//! ([`crate::SimStore::documents_of`] and the rest). Times are UK local
//! `dd/mm/yyyy HH:MM:SS` (no offset), as everywhere in EMIS Open; ids are lower-case
//! GUIDs (braces and case ignored on the way in). Every endpoint here is a record
//! request for fault injection.

use bytes::Bytes;
use hyper::{HeaderMap, Method};

use super::book::{bare_guid, emis_practice, practice_and_patient};
use super::{
    NAMESPACE, XML, date_time, error, invalid_request, invalid_value, method_not_allowed,
    parse_date_time, patient_not_found, practice_not_found, spaced_nhs, xml_request,
};
use crate::appointments;
use crate::documents::{CONTENT_TYPES, DocumentError, NewSimDocument, SimDocument, Workflow};
use crate::model::{ExternalId, SystemKind};
use crate::server::{Reply, Routed};
use crate::store::SimStore;
use crate::xml::{Element, XmlWriter};

/// Response header naming the patient an attachment belongs to (NHS number, unspaced).
pub const PATIENT_HEADER: &str = "x-emis-nhs-number";
/// Response header saying whether the document filing an attachment is confidential.
pub const CONFIDENTIAL_HEADER: &str = "x-emis-confidential";

/// Whether a write to `path` is an attachment upload (whose body may be up to
/// [`crate::documents::MAX_UPLOAD`] bytes, not the usual write limit).
pub(crate) fn is_upload(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    matches!(
        segments.as_slice(),
        ["", "emis", "practices", _, "patients", _, "attachments"]
    )
}

/// Answers the document reads (`GET`), with extra response headers, or `None` when
/// `segments` is no document path.
pub(crate) fn route_read(
    store: &SimStore,
    method: &Method,
    segments: &[&str],
) -> Option<(Routed, Vec<(&'static str, String)>)> {
    match segments {
        ["", "emis", "practices", ods, "patients", nhs, "documents"] if method == Method::GET => {
            Some((record(list(store, ods, nhs)), Vec::new()))
        }
        ["", "emis", "practices", ods, "attachments", guid] => {
            if method != Method::GET {
                return Some((not_record(method_not_allowed("GET")), Vec::new()));
            }
            let (reply, headers) = download(store, ods, guid);
            Some((record(reply), headers))
        }
        _ => None,
    }
}

/// Answers the document writes, or `None` when `segments` is no document path.
pub(crate) fn route_write(
    store: &SimStore,
    method: &Method,
    segments: &[&str],
    headers: &HeaderMap,
    body: &[u8],
) -> Option<Routed> {
    // A wrong method is not a record request: no fault, not counted.
    let routed = match segments {
        ["", "emis", "practices", ods, "patients", nhs, "documents"] => {
            if method == Method::POST {
                record(file(store, ods, nhs, headers, body))
            } else {
                not_record(method_not_allowed("GET, POST"))
            }
        }
        ["", "emis", "practices", ods, "patients", nhs, "attachments"] => {
            if method == Method::POST {
                record(upload(store, ods, nhs, headers, body))
            } else {
                not_record(method_not_allowed("POST"))
            }
        }
        ["", "emis", "practices", _, "attachments", _] => not_record(method_not_allowed("GET")),
        _ => return None,
    };
    Some(routed)
}

fn record(reply: Reply) -> Routed {
    Routed {
        reply,
        record: true,
    }
}

fn not_record(reply: Reply) -> Routed {
    Routed {
        reply,
        record: false,
    }
}

fn ok(status: u16, body: String) -> Reply {
    Reply {
        status,
        content_type: XML,
        body: body.into_bytes(),
    }
}

// ---- reads ---------------------------------------------------------------------------

/// `GET /emis/practices/{ODS}/patients/{NHS}/documents`: the patient's `DocumentList`,
/// newest first.
fn list(store: &SimStore, ods: &str, nhs: &str) -> Reply {
    if let Err(reply) = practice_and_patient(store, ods, nhs) {
        return reply;
    }
    match store.documents_of(SystemKind::Emis, ods, nhs) {
        Ok(docs) => {
            let mut w = XmlWriter::new();
            w.open_with("DocumentList", &[("xmlns", NAMESPACE)]);
            for d in &docs {
                document(&mut w, d);
            }
            w.close("DocumentList");
            ok(200, w.finish())
        }
        Err(e) => document_error(e),
    }
}

/// `GET /emis/practices/{ODS}/attachments/{GUID}`: the attachment's bytes as stored,
/// `Content-Type` its MIME type, with the patient's NHS number and the confidential flag
/// in [`PATIENT_HEADER`] and [`CONFIDENTIAL_HEADER`].
fn download(store: &SimStore, ods: &str, guid: &str) -> (Reply, Vec<(&'static str, String)>) {
    if let Err(reply) = emis_practice(store, ods) {
        return (reply, Vec::new());
    }
    let guid = bare_guid(guid);
    // EMIS names attachments by GUID only; the store also knows them by number.
    match store.document_content(SystemKind::Emis, ods, &guid) {
        Ok(Some(c)) if c.id == guid => {
            let content_type = CONTENT_TYPES
                .iter()
                .find(|t| **t == c.content_type)
                .copied()
                .unwrap_or("application/octet-stream");
            let headers = vec![
                (PATIENT_HEADER, c.nhs.clone()),
                (CONFIDENTIAL_HEADER, super::bool_text(c.confidential).into()),
            ];
            (
                Reply {
                    status: 200,
                    content_type,
                    body: c.bytes.to_vec(),
                },
                headers,
            )
        }
        Ok(_) => (attachment_not_found(&guid), Vec::new()),
        Err(e) => (document_error(e), Vec::new()),
    }
}

// ---- writes --------------------------------------------------------------------------

/// `POST /emis/practices/{ODS}/patients/{NHS}/attachments`: keeps the raw body, of the
/// MIME type its `Content-Type` names, unfiled in the patient's record; `201` and an
/// `AttachmentResult`.
fn upload(store: &SimStore, ods: &str, nhs: &str, headers: &HeaderMap, body: &[u8]) -> Reply {
    if let Err(reply) = practice_and_patient(store, ods, nhs) {
        return reply;
    }
    let content_type = headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if !CONTENT_TYPES.contains(&content_type.as_str()) {
        return error(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            &format!(
                "An attachment's Content-Type must be one of {}, not {content_type:?}",
                CONTENT_TYPES.join(", ")
            ),
        );
    }
    if body.is_empty() {
        return invalid_request("The attachment is empty");
    }
    let bytes = Bytes::copy_from_slice(body);
    match store.upload_content(SystemKind::Emis, ods, nhs, &content_type, bytes) {
        Ok(c) => {
            let mut w = XmlWriter::new();
            w.open_with("AttachmentResult", &[("xmlns", NAMESPACE)]);
            w.text("AttachmentGUID", &c.id);
            w.text("MimeType", &c.content_type);
            w.text("SizeInBytes", &c.bytes.len().to_string());
            w.close("AttachmentResult");
            ok(201, w.finish())
        }
        Err(e) => document_error(e),
    }
}

/// `POST /emis/practices/{ODS}/patients/{NHS}/documents` with a `FileDocument`: `201`
/// and a `DocumentResult` (`Outcome` `Created`), or `200` and the document filed before
/// under the same `ExternalKey` (`AlreadyFiled`).
fn file(store: &SimStore, ods: &str, nhs: &str, headers: &HeaderMap, body: &[u8]) -> Reply {
    if let Err(reply) = practice_and_patient(store, ods, nhs) {
        return reply;
    }
    let doc = match xml_request(headers, body, "FileDocument") {
        Ok(doc) => doc,
        Err(reply) => return reply,
    };
    let new = match read_file_document(doc.root()) {
        Ok(new) => new,
        Err(reply) => return reply,
    };
    // Another patient's attachment is refused before the key is looked at: a key is
    // never a way to learn about someone else's record.
    match store.document_content(SystemKind::Emis, ods, &new.content) {
        Ok(Some(c)) if c.id == new.content && c.nhs != nhs => {
            return error(
                422,
                "ATTACHMENT_PATIENT_MISMATCH",
                &format!(
                    "Attachment {} belongs to another patient's record",
                    new.content
                ),
            );
        }
        Ok(Some(c)) if c.id == new.content => {}
        Ok(_) => return attachment_not_found(&new.content),
        Err(e) => return document_error(e),
    }
    match store.file_document(SystemKind::Emis, ods, nhs, new) {
        Ok((d, created)) => {
            let mut w = XmlWriter::new();
            w.open_with("DocumentResult", &[("xmlns", NAMESPACE)]);
            w.text("Outcome", if created { "Created" } else { "AlreadyFiled" });
            document(&mut w, &d);
            w.close("DocumentResult");
            ok(if created { 201 } else { 200 }, w.finish())
        }
        Err(e) => document_error(e),
    }
}

/// What a `FileDocument` asks EMIS Web to file, or the native error.
fn read_file_document(doc: Element<'_, '_>) -> Result<NewSimDocument, Reply> {
    let key = doc.required_text("ExternalKey", || invalid_request("ExternalKey is missing"))?;
    let key_ok = key.len() <= 64 && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !key_ok {
        return Err(invalid_request(
            "ExternalKey must be 1 to 64 letters, digits or hyphens",
        ));
    }
    let external_id = match doc.child("ExternalIdentifier") {
        None => None,
        Some(e) => {
            let part = |name: &str| e.child_text(name).unwrap_or_default();
            Some(
                ExternalId::new(&part("System"), &part("Value"))
                    .map_err(|m| invalid_request(&format!("ExternalIdentifier: {m}")))?,
            )
        }
    };
    let attachment = doc.required_text("AttachmentGUID", || {
        invalid_request("AttachmentGUID is missing")
    })?;
    let code = doc
        .child("Type")
        .and_then(|t| t.child("Code"))
        .ok_or_else(|| invalid_request("Type/Code is missing"))?;
    let scheme = code.child_text("Scheme").unwrap_or_default();
    if scheme != "SNOMED" {
        return Err(invalid_value(&format!(
            "Type/Code/Scheme is {scheme:?}; documents are typed with SNOMED codes"
        )));
    }
    let type_snomed =
        code.required_text("Value", || invalid_request("Type/Code/Value is missing"))?;
    let type_term = code.required_text("Term", || invalid_request("Type/Code/Term is missing"))?;
    let title = doc.required_text("Title", || invalid_request("Title is missing"))?;
    let created = doc
        .child_text("CreatedDateTime")
        .and_then(|t| parse_date_time(&t))
        .map(|local| appointments::utc_date_time(appointments::from_local(local)))
        .ok_or_else(|| invalid_request("CreatedDateTime is not dd/mm/yyyy HH:MM:SS"))?;
    let org = doc
        .child("AuthorOrganisation")
        .ok_or_else(|| invalid_request("AuthorOrganisation is missing"))?;
    let author_ods = org.required_text("OdsCode", || {
        invalid_request("AuthorOrganisation/OdsCode is missing")
    })?;
    Ok(NewSimDocument {
        key: key.into_owned(),
        external_id,
        content: bare_guid(&attachment),
        type_snomed: type_snomed.into_owned(),
        type_term: type_term.into_owned(),
        title: title.into_owned(),
        created,
        author_ods: author_ods.into_owned(),
        author_name: org.child_text("Name").map(|n| n.into_owned()),
    })
}

// ---- rendering -----------------------------------------------------------------------

/// A UTC date-time of the store as EMIS writes it: UK local `dd/mm/yyyy HH:MM:SS`.
fn local(utc: crate::date::SimDate) -> String {
    date_time(appointments::local_date_time(appointments::instant(utc)))
}

/// One `<Document>`, in a list and in a `DocumentResult` alike.
fn document(w: &mut XmlWriter, d: &SimDocument) {
    w.open("Document");
    w.text("GUID", &d.id);
    w.text("AttachmentGUID", &d.content_id);
    w.text("NhsNumber", &spaced_nhs(&d.nhs));
    w.open("Type");
    w.open("Code");
    w.text("Value", &d.type_snomed);
    w.text("Scheme", "SNOMED");
    w.text("Term", &d.type_term);
    w.close("Code");
    w.close("Type");
    w.text("Title", &d.title);
    w.text("CreatedDateTime", &local(d.created));
    w.text("ReceivedDateTime", &local(d.received));
    w.text("MimeType", &d.content_type);
    w.text("SizeInBytes", &d.size.to_string());
    let sha1: String = d.sha1.iter().map(|b| format!("{b:02x}")).collect();
    w.text("Sha1", &sha1);
    if d.author_ods.is_some() || d.author_name.is_some() {
        w.open("AuthorOrganisation");
        w.opt("OdsCode", d.author_ods.as_deref());
        w.opt("Name", d.author_name.as_deref());
        w.close("AuthorOrganisation");
    }
    if let Some(ext) = &d.external_id {
        w.open("ExternalIdentifier");
        w.text("System", &ext.system);
        w.text("Value", &ext.value);
        w.close("ExternalIdentifier");
    }
    w.text(
        "WorkflowState",
        match d.workflow {
            Workflow::AwaitingReview => "AwaitingReview",
            Workflow::Filed => "Filed",
        },
    );
    w.text("Confidential", super::bool_text(d.confidential));
    w.close("Document");
}

// ---- errors --------------------------------------------------------------------------

fn attachment_not_found(guid: &str) -> Reply {
    error(
        404,
        "ATTACHMENT_NOT_FOUND",
        &format!("No attachment {guid} at this practice"),
    )
}

/// A refused document operation in EMIS's error format.
fn document_error(e: DocumentError) -> Reply {
    match e {
        DocumentError::PracticeNotFound(ods) => practice_not_found(&ods),
        DocumentError::PatientNotFound(ods) => patient_not_found(&ods),
        DocumentError::ContentNotFound(guid) => attachment_not_found(&guid),
        e @ DocumentError::AlreadyFiled(_) => {
            error(409, "ATTACHMENT_ALREADY_FILED", &e.to_string())
        }
        e @ DocumentError::OtherPatient(_) => {
            error(422, "ATTACHMENT_PATIENT_MISMATCH", &e.to_string())
        }
        e @ DocumentError::ContentType(_) => error(415, "UNSUPPORTED_MEDIA_TYPE", &e.to_string()),
        DocumentError::Invalid(m) => invalid_value(&m),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::population::{Population, PopulationSpec};

    /// A store over the sandbox population, its first EMIS practice, the demo patient
    /// and another patient there.
    fn store() -> (SimStore, String, String, String) {
        let pop = Population::generate(42, &PopulationSpec::sandbox());
        let nhs = "9000000009".to_owned();
        let ods = pop.patient_by_nhs(&nhs).unwrap().practice.clone();
        let other = pop
            .patients
            .iter()
            .find(|p| p.practice == ods && p.nhs_number != nhs)
            .unwrap()
            .nhs_number
            .clone();
        (SimStore::new(pop), ods, nhs, other)
    }

    fn headers(content_type: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(content_type),
        );
        h
    }

    fn write(store: &SimStore, path: &str, content_type: &'static str, body: &[u8]) -> Reply {
        let segments: Vec<&str> = path.split('/').collect();
        route_write(
            store,
            &Method::POST,
            &segments,
            &headers(content_type),
            body,
        )
        .unwrap()
        .reply
    }

    fn read(store: &SimStore, path: &str) -> (Reply, Vec<(&'static str, String)>) {
        let segments: Vec<&str> = path.split('/').collect();
        let (routed, headers) = route_read(store, &Method::GET, &segments).unwrap();
        (routed.reply, headers)
    }

    fn text(reply: &Reply) -> String {
        String::from_utf8(reply.body.clone()).unwrap()
    }

    fn code(reply: &Reply) -> String {
        let t = text(reply);
        let start = t.find("<Code>").map(|i| i + 6).unwrap_or(0);
        let end = t.find("</Code>").unwrap_or(0);
        t[start..end].to_owned()
    }

    fn between(t: &str, tag: &str) -> String {
        let open = format!("<{tag}>");
        let start = t.find(&open).unwrap() + open.len();
        let end = t[start..].find(&format!("</{tag}>")).unwrap() + start;
        t[start..end].to_owned()
    }

    fn filing(key: &str, attachment: &str) -> String {
        format!(
            "<FileDocument xmlns=\"{NAMESPACE}\"><ExternalKey>{key}</ExternalKey>\
             <ExternalIdentifier><System>https://supplier.example/docs</System><Value>{key}</Value></ExternalIdentifier>\
             <AttachmentGUID>{{{}}}</AttachmentGUID>\
             <Type><Code><Value>371530004</Value><Scheme>SNOMED</Scheme><Term>Clinical consultation report</Term></Code></Type>\
             <Title>Online consultation</Title><CreatedDateTime>15/07/2026 09:30:00</CreatedDateTime>\
             <AuthorOrganisation><OdsCode>Y90002</OdsCode><Name>Example Consult Ltd</Name></AuthorOrganisation></FileDocument>",
            attachment.to_ascii_uppercase()
        )
    }

    #[test]
    fn the_list_holds_the_stores_documents_in_uk_local_time() {
        let (store, ods, nhs, _) = store();
        let docs = store.documents_of(SystemKind::Emis, &ods, &nhs).unwrap();
        let (reply, _) = read(
            &store,
            &format!("/emis/practices/{ods}/patients/{nhs}/documents"),
        );
        assert_eq!(reply.status, 200);
        let t = text(&reply);
        assert_eq!(t.matches("<Document>").count(), docs.len());
        for d in &docs {
            assert!(t.contains(&format!("<GUID>{}</GUID>", d.id)));
            assert!(t.contains(&format!(
                "<AttachmentGUID>{}</AttachmentGUID>",
                d.content_id
            )));
        }
        let (bad, _) = read(
            &store,
            &format!("/emis/practices/{ods}/patients/9000000017/documents"),
        );
        assert_eq!((bad.status, code(&bad)), (404, "PATIENT_NOT_FOUND".into()));
        let (bad, _) = read(
            &store,
            &format!("/emis/practices/{ods}/patients/123/documents"),
        );
        assert_eq!((bad.status, code(&bad)), (400, "INVALID_NHS_NUMBER".into()));
        let (bad, _) = read(
            &store,
            &format!("/emis/practices/Z99/patients/{nhs}/documents"),
        );
        assert_eq!((bad.status, code(&bad)), (404, "PRACTICE_NOT_FOUND".into()));
    }

    #[test]
    fn upload_download_and_file_round_trip_with_native_errors() {
        let (store, ods, nhs, other) = store();
        let base = format!("/emis/practices/{ods}/patients/{nhs}");
        let refused = write(&store, &format!("{base}/attachments"), "image/png", b"x");
        assert_eq!(
            (refused.status, code(&refused)),
            (415, "UNSUPPORTED_MEDIA_TYPE".into())
        );
        let up = write(
            &store,
            &format!("{base}/attachments"),
            "text/plain",
            b"hello doc",
        );
        assert_eq!(up.status, 201, "{}", text(&up));
        let guid = between(&text(&up), "AttachmentGUID");
        assert_eq!(between(&text(&up), "SizeInBytes"), "9");

        let (got, headers) = read(
            &store,
            &format!("/emis/practices/{ods}/attachments/{{{guid}}}"),
        );
        assert_eq!((got.status, got.content_type), (200, "text/plain"));
        assert_eq!(got.body, b"hello doc");
        assert!(headers.contains(&(PATIENT_HEADER, nhs.clone())));
        let (missing, _) = read(
            &store,
            &format!("/emis/practices/{ods}/attachments/00000000-0000-4000-8000-000000000000"),
        );
        assert_eq!(
            (missing.status, code(&missing)),
            (404, "ATTACHMENT_NOT_FOUND".into())
        );

        let other_base = format!("/emis/practices/{ods}/patients/{other}");
        let mismatch = write(
            &store,
            &format!("{other_base}/documents"),
            XML,
            filing("k-other", &guid).as_bytes(),
        );
        assert_eq!(
            (mismatch.status, code(&mismatch)),
            (422, "ATTACHMENT_PATIENT_MISMATCH".into())
        );
        let unknown = write(
            &store,
            &format!("{base}/documents"),
            XML,
            filing("k-0", "00000000-0000-4000-8000-000000000000").as_bytes(),
        );
        assert_eq!(
            (unknown.status, code(&unknown)),
            (404, "ATTACHMENT_NOT_FOUND".into())
        );

        let filed = write(
            &store,
            &format!("{base}/documents"),
            XML,
            filing("k-1", &guid).as_bytes(),
        );
        assert_eq!(filed.status, 201, "{}", text(&filed));
        let t = text(&filed);
        assert_eq!(between(&t, "Outcome"), "Created");
        assert_eq!(between(&t, "WorkflowState"), "AwaitingReview");
        assert_eq!(
            between(&t, "CreatedDateTime"),
            "15/07/2026 09:30:00",
            "UK local in, UK local out"
        );
        let stored = store
            .document(SystemKind::Emis, &ods, &between(&t, "GUID"))
            .unwrap()
            .unwrap();
        assert_eq!(
            stored.created,
            crate::date::SimDate::ymd(2026, 7, 15).at(8, 30, 0),
            "stored in UTC"
        );
        let again = write(
            &store,
            &format!("{base}/documents"),
            XML,
            filing("k-1", &guid).as_bytes(),
        );
        assert_eq!(again.status, 200);
        assert_eq!(between(&text(&again), "Outcome"), "AlreadyFiled");
        assert_eq!(between(&text(&again), "GUID"), between(&t, "GUID"));
        let twice = write(
            &store,
            &format!("{base}/documents"),
            XML,
            filing("k-2", &guid).as_bytes(),
        );
        assert_eq!(
            (twice.status, code(&twice)),
            (409, "ATTACHMENT_ALREADY_FILED".into())
        );
        let bad = write(
            &store,
            &format!("{base}/documents"),
            XML,
            b"<FileDocument xmlns=\"http://www.e-mis.com/emisopen/MedicalRecord\"/>",
        );
        assert_eq!((bad.status, code(&bad)), (400, "INVALID_REQUEST".into()));

        let (list, _) = read(&store, &format!("{base}/documents"));
        assert!(
            text(&list).contains("<Value>k-1</Value>"),
            "the supplier's identifier is listed"
        );
    }

    #[test]
    fn uploads_may_be_large_and_only_uploads() {
        assert!(is_upload(
            "/emis/practices/A1/patients/9000000009/attachments"
        ));
        assert!(!is_upload(
            "/emis/practices/A1/patients/9000000009/documents"
        ));
        assert!(!is_upload("/emis/practices/A1/attachments/x"));
    }
}
