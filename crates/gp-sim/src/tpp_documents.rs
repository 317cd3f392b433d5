//! TPP SystmOne's patient documents, as `docs/native-formats/tpp.md` ("Documents")
//! describes them: a patient's document list, one content's raw bytes, an upload of raw
//! content and the filing of a document naming it, over the shared document store in
//! [`crate::SimStore`], in SystmOne's XML with UTC times and its own numeric ids
//! (`DocumentID`, `ContentID`). Filing is idempotent on the `ExternalReference`.

use hyper::HeaderMap;

use super::{Refusal, XML, bool_text, error, malformed, organisation_not_found, parse_utc};
use crate::date::SimDate;
use crate::documents::{CONTENT_TYPES, DocumentError, NewSimDocument, SimDocument, Workflow};
use crate::model::{ExternalId, SystemKind};
use crate::server::Reply;
use crate::store::SimStore;
use crate::xml::XmlWriter;

/// Response header naming the patient a content belongs to.
pub const NHS_NUMBER_HEADER: &str = "x-tpp-nhsnumber";
/// Response header: `true` when the document filing the content is confidential.
pub const CONFIDENTIAL_HEADER: &str = "x-tpp-confidential";

/// A store refusal as a SystmOne `ErrorResponse`.
fn document_error(ods: &str, e: &DocumentError) -> Reply {
    match e {
        DocumentError::PracticeNotFound(ods) => organisation_not_found(ods),
        DocumentError::PatientNotFound(ods) => error(
            404,
            "PATIENT_NOT_FOUND",
            &format!("No patient with that NHS number is registered at {ods}"),
        ),
        DocumentError::ContentNotFound(id) => content_not_found(ods, id),
        DocumentError::Invalid(why) => error(422, "INVALID_DOCUMENT", why),
        e @ (DocumentError::OtherPatient(_)
        | DocumentError::AlreadyFiled(_)
        | DocumentError::ContentType(_)) => error(422, "INVALID_DOCUMENT", &e.to_string()),
    }
}

fn content_not_found(ods: &str, id: &str) -> Reply {
    error(
        404,
        "CONTENT_NOT_FOUND",
        &format!("No document content with ContentID {id} at {ods}"),
    )
}

fn invalid_nhs(nhs: &str) -> Option<Reply> {
    (!crate::nhs::is_valid(nhs)).then(|| {
        error(
            400,
            "INVALID_NHS_NUMBER",
            &format!("{nhs} is not a valid NHS number"),
        )
    })
}

/// A UTC date-time of the document store as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc(d: SimDate) -> String {
    let (h, mi, s) = d.time.unwrap_or((0, 0, 0));
    format!(
        "{:04}-{:02}-{:02}T{h:02}:{mi:02}:{s:02}Z",
        d.year,
        d.month.unwrap_or(1),
        d.day.unwrap_or(1)
    )
}

/// One `<Document>`, as listed and as a filing answers it.
fn document(w: &mut XmlWriter, d: &SimDocument) {
    w.open_with(
        "Document",
        &[
            ("DocumentID", &d.number.to_string()),
            ("Confidential", bool_text(d.confidential)),
        ],
    );
    let sha1: String = d.sha1.iter().map(|b| format!("{b:02x}")).collect();
    w.text_with(
        "Content",
        &[
            ("ContentID", &d.content_number.to_string()),
            ("MimeType", &d.content_type),
            ("Size", &d.size.to_string()),
            ("SHA1", &sha1),
        ],
        "",
    );
    w.open("DocumentType");
    w.text_with("Code", &[("Scheme", "Snomed")], &d.type_snomed);
    w.text("Rubric", &d.type_term);
    w.close("DocumentType");
    w.text("Title", &d.title);
    w.text("DateCreated", &utc(d.created));
    w.text("DateReceived", &utc(d.received));
    if d.author_ods.is_some() || d.author_name.is_some() {
        w.open("Author");
        w.opt("ODSCode", d.author_ods.as_deref());
        w.opt("Name", d.author_name.as_deref());
        w.close("Author");
    }
    if let Some(ext) = &d.external_id {
        w.text_with("ExternalIdentifier", &[("System", &ext.system)], &ext.value);
    }
    w.opt("ExternalReference", d.external_key.as_deref());
    w.text(
        "WorkflowStatus",
        match d.workflow {
            Workflow::AwaitingReview => "AwaitingReview",
            Workflow::Filed => "Filed",
        },
    );
    w.close("Document");
}

fn xml_reply(status: u16, body: String) -> Reply {
    Reply {
        status,
        content_type: XML,
        body: body.into_bytes(),
    }
}

/// `GET …/organisations/{ODS}/patients/{NHS}/documents`: the patient's documents,
/// newest first, as a `<PatientDocuments>` list.
pub(super) fn list(store: &SimStore, ods: &str, nhs: &str) -> Reply {
    if let Some(reply) = invalid_nhs(nhs) {
        return reply;
    }
    match store.documents_of(SystemKind::Tpp, ods, nhs) {
        Ok(documents) => {
            let mut w = XmlWriter::new();
            w.open("PatientDocuments");
            w.text("OrganisationID", ods);
            w.text("NHSNumber", nhs);
            for d in &documents {
                document(&mut w, d);
            }
            w.close("PatientDocuments");
            xml_reply(200, w.finish())
        }
        Err(e) => document_error(ods, &e),
    }
}

/// `GET …/organisations/{ODS}/documents/content/{ContentID}`: the content's raw bytes,
/// `Content-Type` its MIME type, with the patient's NHS number and the document's
/// confidentiality in headers.
pub(super) fn content(
    store: &SimStore,
    ods: &str,
    id: &str,
) -> (Reply, Vec<(&'static str, String)>) {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return (content_not_found(ods, id), Vec::new());
    }
    match store.document_content(SystemKind::Tpp, ods, id) {
        Ok(Some(view)) => {
            let content_type = CONTENT_TYPES
                .iter()
                .copied()
                .find(|t| *t == view.content_type)
                .unwrap_or("application/octet-stream");
            let headers = vec![
                (NHS_NUMBER_HEADER, view.nhs.clone()),
                (CONFIDENTIAL_HEADER, bool_text(view.confidential).to_owned()),
            ];
            let reply = Reply {
                status: 200,
                content_type,
                body: view.bytes.to_vec(),
            };
            (reply, headers)
        }
        Ok(None) => (content_not_found(ods, id), Vec::new()),
        Err(e) => (document_error(ods, &e), Vec::new()),
    }
}

/// `POST …/organisations/{ODS}/patients/{NHS}/documents/content` with the raw content
/// (`Content-Type` its MIME type): keeps it, unfiled, and answers `201` with an
/// `<UploadContentResponse>` naming the new `ContentID`.
pub(super) fn upload(
    store: &SimStore,
    ods: &str,
    nhs: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Reply {
    if let Some(reply) = invalid_nhs(nhs) {
        return reply;
    }
    let media = headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if !CONTENT_TYPES.contains(&media.as_str()) {
        return error(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            &format!(
                "Document content must be one of {}, not '{media}'",
                CONTENT_TYPES.join(", ")
            ),
        );
    }
    let bytes = bytes::Bytes::copy_from_slice(body);
    match store.upload_content(SystemKind::Tpp, ods, nhs, &media, bytes) {
        Ok(view) => {
            let mut w = XmlWriter::new();
            w.open("UploadContentResponse");
            w.text("ContentID", &view.number.to_string());
            w.text("MimeType", &view.content_type);
            w.text("Size", &view.bytes.len().to_string());
            w.close("UploadContentResponse");
            xml_reply(201, w.finish())
        }
        Err(e) => document_error(ods, &e),
    }
}

/// `POST …/organisations/{ODS}/patients/{NHS}/documents` with a `<FileDocumentRequest>`:
/// files the uploaded content as a document awaiting review. `201` filed now, `200` the
/// `ExternalReference` was seen before (the first filing answered), each with a
/// `<FileDocumentResponse>` holding the `<Document>`.
pub(super) fn file(
    store: &SimStore,
    ods: &str,
    nhs: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Reply {
    if store
        .practice(ods)
        .is_none_or(|p| p.system != SystemKind::Tpp)
    {
        return organisation_not_found(ods);
    }
    if let Some(reply) = invalid_nhs(nhs) {
        return reply;
    }
    if let Err(reply) = super::xml_body(headers) {
        return reply;
    }
    let doc = match parse_file_request(body) {
        Ok(d) => d,
        Err(refusal) => return refusal.reply(),
    };
    let key = doc.key.clone();
    match store.file_document(SystemKind::Tpp, ods, nhs, doc) {
        Ok((d, created)) => {
            let mut w = XmlWriter::new();
            w.open_with(
                "FileDocumentResponse",
                &[
                    ("ExternalReference", key.as_str()),
                    ("Created", bool_text(created)),
                ],
            );
            document(&mut w, &d);
            w.close("FileDocumentResponse");
            xml_reply(if created { 201 } else { 200 }, w.finish())
        }
        Err(e) => document_error(ods, &e),
    }
}

/// A `<FileDocumentRequest>` as the store takes it; a request that is not that shape is
/// `400 INVALID_REQUEST`.
fn parse_file_request(body: &[u8]) -> Result<NewSimDocument, Refusal> {
    let doc = super::parse_xml(body)?;
    let root = doc.root();
    if root.name() != "FileDocumentRequest" {
        return Err(malformed(format!(
            "the root element is <{}>, expected <FileDocumentRequest>",
            root.name()
        )));
    }
    let key = root
        .attr("ExternalReference")
        .ok_or_else(|| malformed("FileDocumentRequest/@ExternalReference is missing"))?;
    let content = root.required_text("ContentID", || {
        malformed("FileDocumentRequest/ContentID is missing")
    })?;
    if !content.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(format!(
            "ContentID '{content}' is not a SystmOne ContentID"
        )));
    }
    let kind = root
        .child("DocumentType")
        .ok_or_else(|| malformed("FileDocumentRequest/DocumentType is missing"))?;
    let code = kind
        .child("Code")
        .ok_or_else(|| malformed("DocumentType/Code is missing"))?;
    if !code
        .attr("Scheme")
        .is_some_and(|s| s.eq_ignore_ascii_case("Snomed"))
    {
        return Err(Refusal::Unprocessable(
            "INVALID_DOCUMENT",
            "DocumentType/Code must be a SNOMED CT record artifact (Scheme=\"Snomed\")".into(),
        ));
    }
    let type_term = kind.required_text("Rubric", || malformed("DocumentType/Rubric is missing"))?;
    let title = root.required_text("Title", || {
        malformed("FileDocumentRequest/Title is missing")
    })?;
    let raw_created = root.required_text("DateCreated", || {
        malformed("FileDocumentRequest/DateCreated is missing")
    })?;
    let created = parse_utc(&raw_created).ok_or_else(|| {
        malformed(format!(
            "DateCreated '{raw_created}' is not a YYYY-MM-DDTHH:MM:SSZ date-time"
        ))
    })?;
    let author = root
        .child("Author")
        .ok_or_else(|| malformed("FileDocumentRequest/Author is missing"))?;
    let author_ods = author.required_text("ODSCode", || malformed("Author/ODSCode is missing"))?;
    let external_id = match root.child("ExternalIdentifier") {
        None => None,
        Some(e) => Some(
            ExternalId::new(e.attr("System").unwrap_or(""), &e.text())
                .map_err(|m| malformed(format!("ExternalIdentifier: {m}")))?,
        ),
    };
    Ok(NewSimDocument {
        key: key.to_owned(),
        external_id,
        content: content.into_owned(),
        type_snomed: code.text().into_owned(),
        type_term: type_term.into_owned(),
        title: title.into_owned(),
        created,
        author_ods: author_ods.into_owned(),
        author_name: author.child_text("Name").map(|n| n.into_owned()),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::population::{Population, PopulationSpec};

    /// A store, a SystmOne practice and two of its patients.
    fn setup() -> (SimStore, String, String, String) {
        let pop = Population::generate(11, &PopulationSpec::sandbox());
        let ods = pop
            .practices
            .iter()
            .find(|p| p.system == SystemKind::Tpp)
            .unwrap()
            .ods
            .clone();
        let mut patients = pop.patients.iter().filter(|p| p.practice == ods);
        let a = patients.next().unwrap().nhs_number.clone();
        let b = patients.next().unwrap().nhs_number.clone();
        (SimStore::new(pop), ods, a, b)
    }

    fn headers(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(hyper::header::CONTENT_TYPE, content_type.parse().unwrap());
        h
    }

    fn body(r: &Reply) -> String {
        String::from_utf8(r.body.clone()).unwrap()
    }

    fn error_code(r: &Reply) -> String {
        let b = body(r);
        let start = b.find("<ErrorCode>").unwrap() + "<ErrorCode>".len();
        let end = b.find("</ErrorCode>").unwrap();
        b[start..end].to_owned()
    }

    fn tag<'a>(b: &'a str, name: &str) -> &'a str {
        let open = format!("<{name}>");
        let start = b.find(&open).unwrap() + open.len();
        let end = b[start..].find(&format!("</{name}>")).unwrap();
        &b[start..start + end]
    }

    fn filing(key: &str, content: &str) -> String {
        format!(
            "<FileDocumentRequest ExternalReference=\"{key}\"><ContentID>{content}</ContentID>\
             <ExternalIdentifier System=\"https://supplier.example/letters\">L-1</ExternalIdentifier>\
             <DocumentType><Code Scheme=\"Snomed\">371530004</Code><Rubric>Clinical consultation report</Rubric></DocumentType>\
             <Title>Online consultation</Title><DateCreated>2026-12-01T10:15:00Z</DateCreated>\
             <Author><ODSCode>X26</ODSCode><Name>Example Supplier</Name></Author></FileDocumentRequest>"
        )
    }

    fn upload_text(store: &SimStore, ods: &str, nhs: &str, text: &str) -> String {
        let r = upload(store, ods, nhs, &headers("text/plain"), text.as_bytes());
        assert_eq!(r.status, 201, "{}", body(&r));
        tag(&body(&r), "ContentID").to_owned()
    }

    #[test]
    fn lists_the_store_documents_with_numeric_ids_and_utc_times() {
        let (store, ods, a, _) = setup();
        let held = store.documents_of(SystemKind::Tpp, &ods, &a).unwrap();
        let r = list(&store, &ods, &a);
        assert_eq!(r.status, 200);
        let b = body(&r);
        assert_eq!(b.matches("<Document ").count(), held.len());
        let first = &held[0];
        assert!(b.contains(&format!("DocumentID=\"{}\"", first.number)));
        assert!(b.contains(&format!("ContentID=\"{}\"", first.content_number)));
        assert!(b.contains(&format!(
            "<DateCreated>{}</DateCreated>",
            utc(first.created)
        )));
        assert!(b.contains(&format!(
            "<Code Scheme=\"Snomed\">{}</Code>",
            first.type_snomed
        )));

        let unknown = list(&store, &ods, "1234567890");
        assert_eq!(unknown.status, 400);
        let r = list(&store, "ZZZ99", &a);
        assert_eq!(
            (r.status, error_code(&r)),
            (404, "ORGANISATION_NOT_FOUND".into())
        );
    }

    #[test]
    fn content_is_served_raw_with_its_patient() {
        let (store, ods, a, _) = setup();
        let d = &store.documents_of(SystemKind::Tpp, &ods, &a).unwrap()[0];
        let (r, headers) = content(&store, &ods, &d.content_number.to_string());
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, d.content_type);
        assert_eq!(r.body.len() as u64, d.size);
        assert!(headers.contains(&(NHS_NUMBER_HEADER, a.clone())));
        for id in ["999999", &d.content_id, ""] {
            let (r, _) = content(&store, &ods, id);
            assert_eq!(
                (r.status, error_code(&r)),
                (404, "CONTENT_NOT_FOUND".into()),
                "{id}"
            );
        }
    }

    #[test]
    fn uploads_take_raw_content_of_a_document_type() {
        let (store, ods, a, _) = setup();
        let id = upload_text(&store, &ods, &a, "hello");
        let (r, _) = content(&store, &ods, &id);
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        let r = upload(&store, &ods, &a, &headers("image/png"), b"png");
        assert_eq!(
            (r.status, error_code(&r)),
            (415, "UNSUPPORTED_MEDIA_TYPE".into())
        );
        let r = upload(&store, &ods, &a, &headers("text/plain"), b"");
        assert_eq!((r.status, error_code(&r)), (422, "INVALID_DOCUMENT".into()));
        let outsider = store.read(|p| {
            p.patients
                .iter()
                .find(|x| x.practice != ods)
                .unwrap()
                .nhs_number
                .clone()
        });
        let r = upload(&store, &ods, &outsider, &headers("text/plain"), b"x");
        assert_eq!(r.status, 404, "{}", body(&r));
    }

    #[test]
    fn filing_is_idempotent_and_refuses_what_it_cannot_file() {
        let (store, ods, a, b) = setup();
        let id = upload_text(&store, &ods, &a, "letter");
        let xml = headers(XML);
        let first = file(&store, &ods, &a, &xml, filing("k-1", &id).as_bytes());
        assert_eq!(first.status, 201, "{}", body(&first));
        let fb = body(&first);
        assert!(fb.contains("Created=\"true\""));
        assert!(fb.contains("<WorkflowStatus>AwaitingReview</WorkflowStatus>"));
        assert!(fb.contains("<ExternalReference>k-1</ExternalReference>"));
        let again = file(&store, &ods, &a, &xml, filing("k-1", &id).as_bytes());
        assert_eq!(again.status, 200);
        assert!(body(&again).contains("Created=\"false\""));
        assert_eq!(tag(&fb, "Title"), tag(&body(&again), "Title"));

        let r = file(&store, &ods, &a, &xml, filing("k-2", &id).as_bytes());
        assert_eq!(
            (r.status, error_code(&r)),
            (422, "INVALID_DOCUMENT".into()),
            "filed already"
        );
        let other = upload_text(&store, &ods, &b, "theirs");
        let r = file(&store, &ods, &a, &xml, filing("k-3", &other).as_bytes());
        assert_eq!(
            (r.status, error_code(&r)),
            (422, "INVALID_DOCUMENT".into()),
            "another patient's"
        );
        let r = file(&store, &ods, &a, &xml, filing("k-4", "987654").as_bytes());
        assert_eq!(
            (r.status, error_code(&r)),
            (404, "CONTENT_NOT_FOUND".into())
        );
        let r = file(&store, &ods, &a, &xml, b"<Other/>");
        assert_eq!((r.status, error_code(&r)), (400, "INVALID_REQUEST".into()));
        let r = file(
            &store,
            &ods,
            &a,
            &headers("application/json"),
            filing("k-5", &id).as_bytes(),
        );
        assert_eq!(r.status, 415);
    }
}
