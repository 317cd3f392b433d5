//! Vision's documents: the patient's document extract (pipe-delimited, UK local
//! date-times, Vision numbers as ids), content served and uploaded as raw bytes, and the
//! filing row that files uploaded content into the practice's document workflow, over
//! the shared document store in [`crate::SimStore`]. `docs/native-formats/vision.md`,
//! "Documents".

use bytes::Bytes;

use crate::clock;
use crate::documents::{
    CONTENT_TYPES, ContentView, DocumentError, MAX_UPLOAD, NewSimDocument, SimDocument, Workflow,
};
use crate::model::{ExternalId, SystemKind};
use crate::server::Reply;

use super::{Writer, error, ok, parse_timestamp, timestamp};

/// Document extract columns, in the order the simulator writes them.
pub const DOCUMENT_COLUMNS: [&str; 19] = [
    "DOC_ID",
    "CONTENT_ID",
    "PID",
    "NHS_NUMBER",
    "TYPE_SNOMED",
    "TYPE_RUBRIC",
    "TITLE",
    "CREATED",
    "RECEIVED",
    "MIME_TYPE",
    "SIZE",
    "SHA1",
    "AUTHOR_ODS",
    "AUTHOR_NAME",
    "WORKFLOW",
    "CONFIDENTIAL",
    "EXT_SYSTEM",
    "EXT_ID",
    "FILING_KEY",
];

/// Columns of a filing row (`POST …/patients/{NHS}/documents`), every one present.
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

/// Columns of the answer to an upload.
pub const UPLOAD_COLUMNS: [&str; 5] = ["CONTENT_ID", "NHS_NUMBER", "MIME_TYPE", "SIZE", "SHA1"];

/// Response header of a content download: the NHS number of the patient it belongs to.
pub const CONTENT_NHS_HEADER: &str = "x-vision-nhs-number";
/// Response header of a content download: `Y` when the document filing it is confidential.
pub const CONTENT_CONFIDENTIAL_HEADER: &str = "x-vision-confidential";

/// `AWAITING_REVIEW` or `FILED`.
fn workflow(w: Workflow) -> &'static str {
    match w {
        Workflow::AwaitingReview => "AWAITING_REVIEW",
        Workflow::Filed => "FILED",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A Vision number: 1 to 18 digits.
fn numeric(id: &str) -> bool {
    (1..=18).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit())
}

/// The static content type a reply carries for `mime`.
fn static_type(mime: &str) -> &'static str {
    CONTENT_TYPES
        .iter()
        .find(|t| **t == mime)
        .copied()
        .unwrap_or("application/octet-stream")
}

/// One document as a document extract row; times are UK local.
fn row(pid: &str, d: &SimDocument) -> Vec<String> {
    let local = |t| timestamp(clock::local_from_utc(t));
    vec![
        d.number.to_string(),
        d.content_number.to_string(),
        pid.to_owned(),
        d.nhs.clone(),
        d.type_snomed.clone(),
        d.type_term.clone(),
        d.title.clone(),
        local(d.created),
        local(d.received),
        d.content_type.clone(),
        d.size.to_string(),
        hex(&d.sha1),
        d.author_ods.clone().unwrap_or_default(),
        d.author_name.clone().unwrap_or_default(),
        workflow(d.workflow).to_owned(),
        if d.confidential { "Y" } else { "N" }.to_owned(),
        d.external_id
            .as_ref()
            .map(|e| e.system.clone())
            .unwrap_or_default(),
        d.external_id
            .as_ref()
            .map(|e| e.value.clone())
            .unwrap_or_default(),
        d.external_key.clone().unwrap_or_default(),
    ]
}

/// A store refusal as Vision's error line.
fn document_error(e: &DocumentError) -> Reply {
    match e {
        DocumentError::PracticeNotFound(ods) => error(
            404,
            "PRACTICE_NOT_FOUND",
            &format!("No Vision practice with ODS code {ods}"),
        ),
        DocumentError::PatientNotFound(ods) => error(
            404,
            "PATIENT_NOT_FOUND",
            &format!("No patient with that NHS number is registered at {ods}"),
        ),
        DocumentError::ContentNotFound(id) => content_not_found(id),
        e @ DocumentError::OtherPatient(_) => {
            error(422, "CONTENT_OF_ANOTHER_PATIENT", &e.to_string())
        }
        e @ DocumentError::AlreadyFiled(_) => error(422, "CONTENT_ALREADY_FILED", &e.to_string()),
        e @ DocumentError::ContentType(_) => error(422, "INVALID_CONTENT_TYPE", &e.to_string()),
        DocumentError::Invalid(why) => error(422, "INVALID_VALUE", why),
    }
}

fn content_not_found(id: &str) -> Reply {
    error(
        404,
        "CONTENT_NOT_FOUND",
        &format!("No content {id} at this practice"),
    )
}

impl super::Vision {
    fn pid(&self, ods: &str, nhs: &str) -> String {
        self.store
            .read(|pop| pop.patient(ods, nhs).map(|p| p.id.clone()))
            .unwrap_or_default()
    }

    /// `GET …/patients/{NHS}/documents`: the patient's document extract, newest first.
    pub(super) fn documents(&self, ods: &str, nhs: &str) -> Reply {
        if let Err(e) = self.writable_patient(ods, nhs) {
            return e;
        }
        match self.store.documents_of(SystemKind::Vision, ods, nhs) {
            Ok(docs) => {
                let pid = self.pid(ods, nhs);
                let mut w = Writer::new(&DOCUMENT_COLUMNS);
                for d in &docs {
                    w.row(&row(&pid, d));
                }
                ok(w.finish())
            }
            Err(e) => document_error(&e),
        }
    }

    /// `GET …/content/{CONTENT_ID}`: the content's raw bytes (`Content-Type` its MIME
    /// type), with the patient's NHS number and the confidential flag in headers.
    pub(super) fn content(&self, ods: &str, id: &str) -> (Reply, Vec<(&'static str, String)>) {
        if let Err(e) = self.vision_practice(ods) {
            return (e, Vec::new());
        }
        if !numeric(id) {
            return (content_not_found(id), Vec::new());
        }
        match self.store.document_content(SystemKind::Vision, ods, id) {
            Ok(Some(ContentView {
                nhs,
                content_type,
                bytes,
                confidential,
                ..
            })) => (
                Reply {
                    status: 200,
                    content_type: static_type(&content_type),
                    body: bytes.to_vec(),
                },
                vec![
                    (CONTENT_NHS_HEADER, nhs),
                    (
                        CONTENT_CONFIDENTIAL_HEADER,
                        if confidential { "Y" } else { "N" }.to_owned(),
                    ),
                ],
            ),
            Ok(None) => (content_not_found(id), Vec::new()),
            Err(e) => (document_error(&e), Vec::new()),
        }
    }

    /// `POST …/patients/{NHS}/content`: keeps the raw body (`Content-Type` its MIME
    /// type), unfiled; answers `201` with the new `CONTENT_ID`.
    pub(super) fn upload(
        &self,
        ods: &str,
        nhs: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Reply {
        if let Err(e) = self.writable_patient(ods, nhs) {
            return e;
        }
        if body.len() > MAX_UPLOAD {
            return error(
                413,
                "BODY_TOO_LARGE",
                &format!(
                    "Content is at most {MAX_UPLOAD} bytes, not {} or more",
                    body.len()
                ),
            );
        }
        // `text/plain; charset=utf-8` is text/plain: the parameters are not kept.
        let mime = content_type
            .and_then(|t| t.split(';').next())
            .map(|t| t.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let uploaded = self.store.upload_content(
            SystemKind::Vision,
            ods,
            nhs,
            &mime,
            Bytes::copy_from_slice(body),
        );
        match uploaded {
            Ok(c) => {
                let mut w = Writer::new(&UPLOAD_COLUMNS);
                w.row(&[
                    c.number.to_string(),
                    c.nhs,
                    c.content_type,
                    c.bytes.len().to_string(),
                    hex(&crate::documents::sha1(&c.bytes)),
                ]);
                Reply {
                    status: 201,
                    ..ok(w.finish())
                }
            }
            Err(e) => document_error(&e),
        }
    }

    /// `POST …/patients/{NHS}/documents`: files uploaded content under the row's
    /// `FILING_KEY`; answers the document's row (`201`, or `200` when the key was seen).
    pub(super) fn file(&self, ods: &str, nhs: &str, body: &[u8]) -> Reply {
        if let Err(e) = self.writable_patient(ods, nhs) {
            return e;
        }
        let doc = match filing(body) {
            Ok(d) => d,
            Err(e) => return e,
        };
        match self.store.file_document(SystemKind::Vision, ods, nhs, doc) {
            Ok((d, created)) => {
                let mut w = Writer::new(&DOCUMENT_COLUMNS);
                w.row(&row(&self.pid(ods, nhs), &d));
                Reply {
                    status: if created { 201 } else { 200 },
                    ..ok(w.finish())
                }
            }
            Err(e) => document_error(&e),
        }
    }
}

/// Reads a filing row: every column of [`FILING_COLUMNS`] present, `CREATED` a UK local
/// `YYYYMMDDHHMMSS`, `CONTENT_ID` a Vision number.
fn filing(body: &[u8]) -> Result<NewSimDocument, Reply> {
    let row = super::book::one_row(body, &FILING_COLUMNS)?;
    let [
        content,
        key,
        type_snomed,
        type_term,
        title,
        created,
        author_ods,
        author_name,
        ext_system,
        ext_id,
    ] = <[String; 10]>::try_from(row).map_err(|_| super::bad_extract("a filing row"))?;
    if key.is_empty()
        || key.len() > 64
        || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(error(
            400,
            "INVALID_FILING_KEY",
            "FILING_KEY must be 1 to 64 letters, digits or hyphens",
        ));
    }
    if !numeric(&content) {
        return Err(content_not_found(&content));
    }
    let created = parse_timestamp(&created)
        .map(clock::utc_from_local)
        .ok_or_else(|| {
            super::bad_extract(format!(
                "CREATED '{created}' is not a local YYYYMMDDHHMMSS date-time"
            ))
        })?;
    let external_id = match (ext_system.as_str(), ext_id.as_str()) {
        ("", "") => None,
        (system, value) => Some(
            ExternalId::new(system, value)
                .map_err(|m| error(422, "INVALID_FIELD", &format!("EXT_SYSTEM/EXT_ID: {m}")))?,
        ),
    };
    Ok(NewSimDocument {
        key,
        external_id,
        content,
        type_snomed,
        type_term,
        title,
        created,
        author_ods,
        author_name: Some(author_name).filter(|n| !n.is_empty()),
    })
}

/// The body cap of the upload route: content up to [`MAX_UPLOAD`], one byte more so an
/// oversized body is answered `413 BODY_TOO_LARGE` with its size.
pub const UPLOAD_BODY_LIMIT: usize = MAX_UPLOAD + 1;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::server::{HeaderMap, Method, Simulator};
    use crate::{Population, PopulationSpec, SimStore};

    struct Fixture {
        vision: super::super::Vision,
        store: SimStore,
        ods: String,
        /// Registered patients; the first has documents.
        patients: Vec<String>,
    }

    fn fixture() -> Fixture {
        let pop = Population::generate(3, &PopulationSpec::sandbox());
        let ods = pop
            .practices
            .iter()
            .find(|p| p.system == SystemKind::Vision)
            .unwrap()
            .ods
            .clone();
        let store = SimStore::new(pop.clone());
        let mut patients: Vec<String> = pop
            .patients
            .iter()
            .filter(|p| p.practice == ods)
            .map(|p| p.nhs_number.clone())
            .collect();
        patients.sort_by_key(|nhs| {
            store
                .documents_of(SystemKind::Vision, &ods, nhs)
                .unwrap()
                .is_empty()
        });
        Fixture {
            vision: super::super::Vision {
                store: store.clone(),
            },
            store,
            ods,
            patients,
        }
    }

    fn text(r: &Reply) -> String {
        String::from_utf8(r.body.clone()).unwrap()
    }

    fn get(f: &Fixture, path: &str) -> (Reply, Vec<(&'static str, String)>) {
        let (routed, headers) = f.vision.route_query(&Method::GET, path, None);
        (routed.reply, headers)
    }

    fn post(f: &Fixture, path: &str, content_type: &str, body: &[u8]) -> Reply {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", content_type.parse().unwrap());
        f.vision
            .route_write(&Method::POST, path, &headers, body)
            .unwrap()
            .reply
    }

    fn filing_row(content: &str, key: &str) -> String {
        format!(
            "{}\r\n{content}|{key}|371530004|Clinical consultation report|\"Online consultation | cough\"|20260714093000|Y90002|Demo Consult Ltd|https://supplier.example/doc|d-1\r\nEOF|1\r\n",
            FILING_COLUMNS.join("|")
        )
    }

    #[test]
    fn the_document_extract_lists_the_stores_documents_in_local_time() {
        let f = fixture();
        let nhs = &f.patients[0];
        let held = f
            .store
            .documents_of(SystemKind::Vision, &f.ods, nhs)
            .unwrap();
        assert!(!held.is_empty());
        let (reply, _) = get(
            &f,
            &format!("/vision/practices/{}/patients/{nhs}/documents", f.ods),
        );
        assert_eq!(reply.status, 200);
        let body = text(&reply);
        assert!(body.starts_with(&DOCUMENT_COLUMNS.join("|")));
        assert!(body.ends_with(&format!("EOF|{}\r\n", held.len())));
        for d in &held {
            let created = timestamp(clock::local_from_utc(d.created));
            assert!(
                body.contains(&format!("{}|{}|", d.number, d.content_number)),
                "{body}"
            );
            assert!(body.contains(&created));
            assert!(body.contains(&hex(&d.sha1)));
        }
        let (unknown, _) = get(
            &f,
            &format!("/vision/practices/{}/patients/9000000009/documents", f.ods),
        );
        assert_eq!(unknown.status, 404);
        assert!(text(&unknown).starts_with("ERROR|PATIENT_NOT_FOUND|"));
        let (bad, _) = get(
            &f,
            &format!("/vision/practices/{}/patients/123/documents", f.ods),
        );
        assert!(text(&bad).starts_with("ERROR|INVALID_NHS_NUMBER|"));
    }

    #[test]
    fn content_is_served_raw_with_its_type_patient_and_confidentiality() {
        let f = fixture();
        let nhs = &f.patients[0];
        let d = &f
            .store
            .documents_of(SystemKind::Vision, &f.ods, nhs)
            .unwrap()[0];
        let (reply, headers) = get(
            &f,
            &format!("/vision/practices/{}/content/{}", f.ods, d.content_number),
        );
        assert_eq!(reply.status, 200);
        assert_eq!(reply.content_type, "application/pdf");
        let held = f
            .store
            .document_content(SystemKind::Vision, &f.ods, &d.content_id)
            .unwrap()
            .unwrap();
        assert_eq!(reply.body, held.bytes.to_vec());
        assert!(headers.contains(&(CONTENT_NHS_HEADER, nhs.clone())));
        let flag = if d.confidential { "Y" } else { "N" };
        assert!(headers.contains(&(CONTENT_CONFIDENTIAL_HEADER, flag.to_owned())));
        for id in ["99999999999", "not-a-number", &d.content_id] {
            let (gone, _) = get(&f, &format!("/vision/practices/{}/content/{id}", f.ods));
            assert_eq!(gone.status, 404, "{id}");
            assert!(text(&gone).starts_with("ERROR|CONTENT_NOT_FOUND|"));
        }
    }

    #[test]
    fn uploads_take_raw_bodies_up_to_16_mib_of_an_allowed_type() {
        let f = fixture();
        let nhs = &f.patients[1];
        let path = format!("/vision/practices/{}/patients/{nhs}/content", f.ods);
        assert_eq!(
            f.vision.max_write_body(&Method::POST, &path),
            MAX_UPLOAD + 1
        );
        assert_eq!(
            f.vision.max_write_body(
                &Method::POST,
                &format!("/vision/practices/{}/patients/{nhs}/journal", f.ods)
            ),
            crate::server::MAX_WRITE_BODY
        );
        let reply = post(&f, &path, "text/plain; charset=utf-8", b"Cough for 3 days");
        assert_eq!(reply.status, 201, "{}", text(&reply));
        let body = text(&reply);
        let row: Vec<&str> = body.lines().nth(1).unwrap().split('|').collect();
        assert_eq!(row[1..4], [nhs.as_str(), "text/plain", "16"]);
        let held = f
            .store
            .document_content(SystemKind::Vision, &f.ods, row[0])
            .unwrap()
            .unwrap();
        assert_eq!(&held.bytes[..], b"Cough for 3 days");
        let refused = post(&f, &path, "image/png", b"x");
        assert_eq!(refused.status, 422);
        assert!(text(&refused).starts_with("ERROR|INVALID_CONTENT_TYPE|"));
        let too_big = post(&f, &path, "text/plain", &vec![b'a'; MAX_UPLOAD + 1]);
        assert_eq!(too_big.status, 413);
        assert!(text(&too_big).starts_with("ERROR|BODY_TOO_LARGE|"));
    }

    #[test]
    fn filing_is_keyed_and_refuses_unknown_foreign_or_filed_content() {
        let f = fixture();
        let (a, b) = (&f.patients[1], &f.patients[2]);
        let upload = |nhs: &str| {
            let r = post(
                &f,
                &format!("/vision/practices/{}/patients/{nhs}/content", f.ods),
                "text/plain",
                b"note",
            );
            text(&r)
                .lines()
                .nth(1)
                .unwrap()
                .split('|')
                .next()
                .unwrap()
                .to_owned()
        };
        let content = upload(a);
        let file = |nhs: &str, body: String| {
            post(
                &f,
                &format!("/vision/practices/{}/patients/{nhs}/documents", f.ods),
                "text/plain",
                body.as_bytes(),
            )
        };
        let foreign = file(b, filing_row(&content, "k-1"));
        assert_eq!(foreign.status, 422);
        assert!(text(&foreign).starts_with("ERROR|CONTENT_OF_ANOTHER_PATIENT|"));
        let first = file(a, filing_row(&content, "k-1"));
        assert_eq!(first.status, 201, "{}", text(&first));
        let body = text(&first);
        assert!(
            body.contains("|AWAITING_REVIEW|N|https://supplier.example/doc|d-1|k-1\r\n"),
            "{body}"
        );
        assert!(
            body.contains("|20260714093000|"),
            "CREATED is kept in local time: {body}"
        );
        let again = file(a, filing_row(&content, "k-1"));
        assert_eq!(again.status, 200);
        assert_eq!(text(&again), body);
        let refiled = file(a, filing_row(&content, "k-2"));
        assert_eq!(refiled.status, 422);
        assert!(text(&refiled).starts_with("ERROR|CONTENT_ALREADY_FILED|"));
        let unknown = file(a, filing_row("99999999999", "k-3"));
        assert_eq!(unknown.status, 404);
        assert!(text(&unknown).starts_with("ERROR|CONTENT_NOT_FOUND|"));
        let bad_key = file(a, filing_row(&content, "not a key"));
        assert_eq!(bad_key.status, 400);
        assert!(text(&bad_key).starts_with("ERROR|INVALID_FILING_KEY|"));
        let listed = f.store.documents_of(SystemKind::Vision, &f.ods, a).unwrap();
        assert_eq!(
            listed
                .iter()
                .filter(|d| d.external_key.as_deref() == Some("k-1"))
                .count(),
            1
        );
    }
}
