//! Evolution's documents (`docs/native-formats/microtest.md`, "Documents"): a patient's
//! documents by NHS number in cursor pages, content downloaded and uploaded as raw bytes,
//! and filing under an `Idempotency-Key`, all over the simulators' shared document store.
//!
//! A child of [`super`] so it speaks the same dialect: problem+json errors, date objects
//! in UK local time, numbers as strings, snake_case, the same cursor check.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::{
    Microtest, date, decode_cursor, encode_cursor, idempotency_key, invalid_body, json_content,
    json_object, missing_parameter, ok, parse_datetime, problem, query_param, req_str,
    unprocessable,
};
use crate::appointments;
use crate::date::SimDate;
use crate::documents::{CONTENT_TYPES, DocumentError, NewSimDocument, SimDocument};
use crate::model::{ExternalId, SystemKind};
use crate::server::{HeaderMap, Reply};

/// Most documents in one page of `…/documents?nhs_number=…`.
pub const DOCUMENT_PAGE_SIZE: usize = 20;
/// The header naming the patient of an upload, and of a downloaded content.
pub const NHS_HEADER: &str = "x-evolution-nhs-number";
/// The header saying whether downloaded content's document is confidential.
pub const CONFIDENTIAL_HEADER: &str = "x-evolution-confidential";
/// The header giving downloaded content's size in bytes (a check against truncation).
pub const SIZE_HEADER: &str = "x-evolution-size";

/// A UTC date-time as Evolution writes date-times: UK local time.
fn local(utc: SimDate) -> Value {
    date(appointments::local_date_time(appointments::instant(utc)))
}

/// Lower-case hex of a SHA-1.
fn hex(sha1: &[u8; 20]) -> String {
    sha1.iter().map(|b| format!("{b:02x}")).collect()
}

/// One document as `…/documents` lists it and filing answers it.
pub(super) fn render_document(d: &SimDocument) -> Value {
    let author = match (&d.author_ods, &d.author_name) {
        (None, None) => Value::Null,
        (ods, name) => json!({ "ods_code": ods, "name": name }),
    };
    json!({
        "document_id": d.id,
        "content_id": d.content_id,
        "nhs_number": d.nhs,
        "type": { "snomed": d.type_snomed, "term": d.type_term },
        "title": d.title,
        "created": local(d.created),
        "received": local(d.received),
        "mime_type": d.content_type,
        "size": d.size.to_string(),
        "sha1": hex(&d.sha1),
        "author": author,
        "workflow_state": d.workflow.code(),
        "confidential": d.confidential,
        "external_identifier": d.external_id.as_ref().map(|e| json!({ "system": e.system, "value": e.value })),
    })
}

/// The shared store's refusal in Evolution's format.
fn document_error(e: &DocumentError) -> Reply {
    match e {
        DocumentError::PracticeNotFound(ods) => problem(
            404,
            "SITE_NOT_FOUND",
            "Site not found",
            &format!("No Evolution site with ODS code {ods}"),
        ),
        DocumentError::PatientNotFound(ods) => problem(
            404,
            "PATIENT_NOT_FOUND",
            "Patient not found",
            &format!("No patient with that NHS number is registered at site {ods}"),
        ),
        DocumentError::ContentNotFound(id) => problem(
            404,
            "CONTENT_NOT_FOUND",
            "Content not found",
            &format!(
                "No document content {} at this site",
                id.chars().take(64).collect::<String>()
            ),
        ),
        e @ DocumentError::OtherPatient(_) => unprocessable(
            "CONTENT_OF_ANOTHER_PATIENT",
            "Content of another patient",
            &e.to_string(),
        ),
        e @ DocumentError::AlreadyFiled(_) => unprocessable(
            "CONTENT_ALREADY_FILED",
            "Content already filed",
            &e.to_string(),
        ),
        e @ DocumentError::ContentType(_) => {
            unprocessable("INVALID_DOCUMENT", "Invalid document", &e.to_string())
        }
        DocumentError::Invalid(reason) => {
            unprocessable("INVALID_DOCUMENT", "Invalid document", reason)
        }
    }
}

/// A valid NHS number, or Evolution's `400 INVALID_NHS_NUMBER`.
fn nhs_number(nhs: &str) -> Result<&str, Reply> {
    if crate::nhs::is_valid(nhs) {
        Ok(nhs)
    } else {
        Err(problem(
            400,
            "INVALID_NHS_NUMBER",
            "Invalid NHS number",
            &format!(
                "{} is not a valid NHS number",
                nhs.chars().take(20).collect::<String>()
            ),
        ))
    }
}

/// The media type of a `Content-Type` header, as the static name Evolution holds.
fn media_type(headers: &HeaderMap) -> Result<&'static str, Reply> {
    let ct = headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    CONTENT_TYPES
        .iter()
        .find(|t| t.eq_ignore_ascii_case(media))
        .copied()
        .ok_or_else(|| {
            problem(
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                "Unsupported media type",
                &format!(
                    "Document content is one of {}, not '{}'",
                    CONTENT_TYPES.join(", "),
                    ct.chars().take(60).collect::<String>()
                ),
            )
        })
}

/// A required text field of at most `max` characters without control characters.
fn text<'b>(m: &'b Map<String, Value>, field: &str, max: usize) -> Result<&'b str, Reply> {
    let v = req_str(m, field)?;
    if v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(unprocessable(
            "INVALID_DOCUMENT",
            "Invalid document",
            &format!("{field} must be 1 to {max} characters without control characters"),
        ));
    }
    Ok(v)
}

/// The parsed body of `POST …/documents`, before the store checks the content.
fn parse_document(m: &Map<String, Value>, key: &str) -> Result<NewSimDocument, Reply> {
    let content = text(m, "content_id", 64)?;
    let Some(Value::Object(kind)) = m.get("type") else {
        return Err(invalid_body(
            "type is required: {\"snomed\": …, \"term\": …}",
        ));
    };
    let type_snomed = text(kind, "snomed", 18)?;
    if !type_snomed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(unprocessable(
            "UNKNOWN_CODE",
            "Unknown code",
            &format!(
                "type.snomed '{}' is not a SNOMED CT id",
                type_snomed.chars().take(20).collect::<String>()
            ),
        ));
    }
    let type_term = text(kind, "term", 255)?;
    let title = text(m, "title", 255)?;
    let created = match m.get("created") {
        Some(Value::Object(d)) => {
            let value = d.get("value").and_then(Value::as_str).unwrap_or("");
            let precision = d.get("precision").and_then(Value::as_str).unwrap_or("");
            match (precision, parse_datetime(value)) {
                ("datetime", Some(local)) => {
                    appointments::utc_date_time(appointments::from_local(local))
                }
                _ => {
                    return Err(problem(
                        400,
                        "INVALID_DATE",
                        "Invalid date",
                        "created must have precision datetime and a value YYYY-MM-DDThh:mm:ss",
                    ));
                }
            }
        }
        _ => return Err(invalid_body("created is required, a date object")),
    };
    let Some(Value::Object(author)) = m.get("author") else {
        return Err(invalid_body(
            "author is required: {\"ods_code\": …, \"name\": …}",
        ));
    };
    let author_ods = text(author, "ods_code", 12)?;
    let author_name = match author.get("name") {
        None | Some(Value::Null) => None,
        Some(_) => Some(text(author, "name", 255)?.to_owned()),
    };
    let external_id = match m.get("external_identifier") {
        None | Some(Value::Null) => None,
        Some(Value::Object(e)) => {
            let part = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("");
            Some(
                ExternalId::new(part("system"), part("value"))
                    .map_err(|m| invalid_body(&format!("external_identifier: {m}")))?,
            )
        }
        Some(_) => {
            return Err(invalid_body(
                "external_identifier must be an object with system and value",
            ));
        }
    };
    Ok(NewSimDocument {
        key: key.to_owned(),
        external_id,
        content: content.to_owned(),
        type_snomed: type_snomed.to_owned(),
        type_term: type_term.to_owned(),
        title: title.to_owned(),
        created,
        author_ods: author_ods.to_owned(),
        author_name,
    })
}

impl Microtest {
    /// `GET …/documents?nhs_number={nhs}[&cursor=…]`: one page of the patient's
    /// documents, newest first.
    pub(super) fn documents(&self, ods: &str, query: Option<&str>) -> Reply {
        let Some(nhs) = query_param(query, "nhs_number") else {
            return missing_parameter("nhs_number");
        };
        let nhs = match self.site(ods).and_then(|_| nhs_number(nhs)) {
            Ok(nhs) => nhs,
            Err(reply) => return reply,
        };
        let all = match self.store.documents_of(SystemKind::Microtest, ods, nhs) {
            Ok(all) => all,
            Err(e) => return document_error(&e),
        };
        let start = match query_param(query, "cursor") {
            None => 0,
            Some(c) => match decode_cursor(nhs, "documents", c).filter(|s| *s < all.len()) {
                Some(s) => s,
                None => {
                    return problem(
                        400,
                        "INVALID_CURSOR",
                        "Invalid cursor",
                        "The cursor is not one this server issued for these documents",
                    );
                }
            },
        };
        let end = (start + DOCUMENT_PAGE_SIZE).min(all.len());
        let next = (end < all.len()).then(|| encode_cursor(nhs, "documents", end));
        let page: Vec<Value> = all[start..end].iter().map(render_document).collect();
        ok(&json!({ "documents": page, "total": all.len(), "next_cursor": next }))
    }

    /// `GET …/document-contents/{id}`: the content's raw bytes, its media type as
    /// `Content-Type`, and the patient, confidentiality and size in headers.
    pub(super) fn content(&self, ods: &str, id: &str) -> (Reply, Vec<(&'static str, String)>) {
        let view = match self.store.document_content(SystemKind::Microtest, ods, id) {
            Ok(Some(view)) => view,
            Ok(None) => {
                return (
                    document_error(&DocumentError::ContentNotFound(id.to_owned())),
                    Vec::new(),
                );
            }
            Err(e) => return (document_error(&e), Vec::new()),
        };
        let content_type = CONTENT_TYPES
            .iter()
            .find(|t| **t == view.content_type)
            .copied()
            .unwrap_or("application/octet-stream");
        let headers = vec![
            (NHS_HEADER, view.nhs.clone()),
            (CONFIDENTIAL_HEADER, view.confidential.to_string()),
            (SIZE_HEADER, view.bytes.len().to_string()),
        ];
        let reply = Reply {
            status: 200,
            content_type,
            body: view.bytes.to_vec(),
        };
        (reply, headers)
    }

    /// `POST …/document-contents`: keeps the raw body, unfiled, for the patient the
    /// `X-Evolution-NHS-Number` header names; answers the new content id.
    pub(super) fn upload(&self, ods: &str, headers: &HeaderMap, body: &[u8]) -> Reply {
        let checked = media_type(headers).and_then(|media| {
            let nhs = headers
                .get(NHS_HEADER)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    problem(
                        400,
                        "MISSING_HEADER",
                        "Missing header",
                        "The X-Evolution-NHS-Number header names the patient the content is for",
                    )
                })?;
            self.site(ods)?;
            Ok((media, nhs_number(nhs)?.to_owned()))
        });
        let (media, nhs) = match checked {
            Ok(c) => c,
            Err(reply) => return reply,
        };
        if body.is_empty() {
            return unprocessable("INVALID_CONTENT", "Invalid content", "The content is empty");
        }
        match self.store.upload_content(
            SystemKind::Microtest,
            ods,
            &nhs,
            media,
            Bytes::copy_from_slice(body),
        ) {
            Ok(view) => {
                let mut reply = ok(&json!({
                    "content_id": view.id,
                    "nhs_number": view.nhs,
                    "mime_type": view.content_type,
                    "size": view.bytes.len().to_string(),
                }));
                reply.status = 201;
                reply
            }
            Err(e) => document_error(&e),
        }
    }

    /// `POST …/documents` under an `Idempotency-Key`: files uploaded content as a
    /// document awaiting review; `201` new, `200` the key was seen (the same document).
    pub(super) fn file(&self, ods: &str, headers: &HeaderMap, body: &[u8]) -> Reply {
        let parsed = json_content(headers)
            .and_then(|()| idempotency_key(headers))
            .and_then(|key| {
                let m = json_object(body)?;
                let nhs = nhs_number(req_str(&m, "nhs_number")?)?.to_owned();
                Ok((nhs, parse_document(&m, key)?))
            });
        let (nhs, doc) = match parsed {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        match self
            .store
            .file_document(SystemKind::Microtest, ods, &nhs, doc)
        {
            Ok((filed, created)) => {
                let mut reply = ok(&render_document(&filed));
                if created {
                    reply.status = 201;
                }
                reply
            }
            Err(e) => document_error(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::population::{Population, PopulationSpec};
    use crate::server::{Method, Simulator};
    use crate::store::SimStore;

    struct Fixture {
        sim: Microtest,
        store: SimStore,
        ods: String,
        nhs: Vec<String>,
    }

    fn fixture() -> Fixture {
        let pop = Population::generate(11, &PopulationSpec::sandbox());
        let ods = pop
            .practices
            .iter()
            .find(|p| p.system == SystemKind::Microtest)
            .unwrap()
            .ods
            .clone();
        let nhs = pop
            .patients
            .iter()
            .filter(|p| p.practice == ods)
            .map(|p| p.nhs_number.clone())
            .collect();
        let store = SimStore::new(pop);
        Fixture {
            sim: Microtest {
                store: store.clone(),
            },
            store,
            ods,
            nhs,
        }
    }

    fn doc(reply: &Reply) -> Value {
        serde_json::from_slice(&reply.body).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn get(f: &Fixture, path: &str, query: Option<&str>) -> (Reply, Vec<(&'static str, String)>) {
        let (routed, extra) = f.sim.route_query(&Method::GET, path, query);
        (routed.reply, extra)
    }

    fn post(f: &Fixture, path: &str, h: &HeaderMap, body: &[u8]) -> Reply {
        f.sim
            .route_write(&Method::POST, path, h, body)
            .unwrap()
            .reply
    }

    fn file_body(nhs: &str, content: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "nhs_number": nhs,
            "content_id": content,
            "type": {"snomed": "371530004", "term": "Clinical consultation report"},
            "title": "Online consultation",
            "created": {"value": "2026-07-14T09:15:00", "precision": "datetime"},
            "author": {"ods_code": "Y90002", "name": "Example Online Consultations"},
            "external_identifier": {"system": "https://supplier.example/docs", "value": "d-1"},
        }))
        .unwrap()
    }

    #[test]
    fn lists_every_document_in_pages_in_store_order() {
        let f = fixture();
        let nhs = f
            .nhs
            .iter()
            .max_by_key(|n| {
                f.store
                    .documents_of(SystemKind::Microtest, &f.ods, n)
                    .unwrap()
                    .len()
            })
            .unwrap();
        let expected = f
            .store
            .documents_of(SystemKind::Microtest, &f.ods, nhs)
            .unwrap();
        assert!(!expected.is_empty());
        let path = format!("/evolution/v2/sites/{}/documents", f.ods);
        let query = format!("nhs_number={nhs}");
        let (reply, _) = get(&f, &path, Some(&query));
        assert_eq!(reply.status, 200);
        let page = doc(&reply);
        assert_eq!(page["total"], expected.len());
        let first = &page["documents"][0];
        let d = &expected[0];
        assert_eq!(first["document_id"], d.id.as_str());
        assert_eq!(first["content_id"], d.content_id.as_str());
        assert_eq!(first["size"], d.size.to_string());
        assert_eq!(first["type"]["snomed"], d.type_snomed.as_str());
        assert_eq!(first["created"]["precision"], "datetime");
        assert_eq!(first["workflow_state"], "filed");
        // A cursor of another patient is refused.
        let other = encode_cursor(&f.nhs[0], "documents", 1);
        let q = format!("nhs_number={nhs}&cursor={other}");
        if &f.nhs[0] != nhs {
            assert_eq!(doc(&get(&f, &path, Some(&q)).0)["code"], "INVALID_CURSOR");
        }
    }

    #[test]
    fn document_list_errors_are_native() {
        let f = fixture();
        let path = format!("/evolution/v2/sites/{}/documents", f.ods);
        let (r, _) = get(&f, &path, None);
        assert_eq!(
            (r.status, doc(&r)["code"].clone()),
            (400, json!("MISSING_PARAMETER"))
        );
        let (r, _) = get(&f, &path, Some("nhs_number=123"));
        assert_eq!(doc(&r)["code"], "INVALID_NHS_NUMBER");
        let (r, _) = get(&f, &path, Some("nhs_number=9000000009"));
        assert_eq!(
            (r.status, doc(&r)["code"].clone()),
            (404, json!("PATIENT_NOT_FOUND"))
        );
        let (r, _) = get(
            &f,
            "/evolution/v2/sites/X99999/documents",
            Some("nhs_number=9000000009"),
        );
        assert_eq!(doc(&r)["code"], "SITE_NOT_FOUND");
    }

    #[test]
    fn content_is_raw_bytes_with_its_type_and_patient() {
        let f = fixture();
        let nhs = &f.nhs[0];
        let up = f
            .store
            .upload_content(
                SystemKind::Microtest,
                &f.ods,
                nhs,
                "text/plain",
                Bytes::from_static(b"plain words"),
            )
            .unwrap();
        let path = format!("/evolution/v2/sites/{}/document-contents/{}", f.ods, up.id);
        let (reply, extra) = get(&f, &path, None);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.content_type, "text/plain");
        assert_eq!(reply.body, b"plain words");
        assert!(extra.contains(&(NHS_HEADER, nhs.clone())));
        assert!(extra.contains(&(CONFIDENTIAL_HEADER, "false".into())));
        assert!(extra.contains(&(SIZE_HEADER, "11".into())));
        let missing = format!("/evolution/v2/sites/{}/document-contents/nope", f.ods);
        let (reply, extra) = get(&f, &missing, None);
        assert_eq!(
            (reply.status, doc(&reply)["code"].clone()),
            (404, json!("CONTENT_NOT_FOUND"))
        );
        assert!(extra.is_empty());
    }

    #[test]
    fn upload_takes_a_raw_body_and_answers_the_content_id() {
        let f = fixture();
        let nhs = f.nhs[0].as_str();
        let path = format!("/evolution/v2/sites/{}/document-contents", f.ods);
        let h = headers(&[("content-type", "application/pdf"), (NHS_HEADER, nhs)]);
        let reply = post(&f, &path, &h, b"%PDF-1.4 tiny");
        assert_eq!(reply.status, 201);
        let answer = doc(&reply);
        assert_eq!(answer["size"], "13");
        let id = answer["content_id"].as_str().unwrap();
        let held = f
            .store
            .document_content(SystemKind::Microtest, &f.ods, id)
            .unwrap()
            .unwrap();
        assert_eq!(&held.bytes[..], b"%PDF-1.4 tiny");
        assert_eq!(held.nhs, nhs);
        // Refusals, each native.
        let h = headers(&[("content-type", "image/png"), (NHS_HEADER, nhs)]);
        assert_eq!(post(&f, &path, &h, b"x").status, 415);
        let h = headers(&[("content-type", "text/plain")]);
        assert_eq!(doc(&post(&f, &path, &h, b"x"))["code"], "MISSING_HEADER");
        let h = headers(&[("content-type", "text/plain"), (NHS_HEADER, "9000000009")]);
        assert_eq!(doc(&post(&f, &path, &h, b"x"))["code"], "PATIENT_NOT_FOUND");
        let h = headers(&[("content-type", "text/plain"), (NHS_HEADER, nhs)]);
        assert_eq!(doc(&post(&f, &path, &h, b""))["code"], "INVALID_CONTENT");
        assert_eq!(
            f.sim.max_write_body(&Method::POST, &path),
            crate::documents::MAX_UPLOAD
        );
    }

    #[test]
    fn filing_is_idempotent_and_refusals_are_native() {
        let f = fixture();
        let (a, b) = (f.nhs[0].as_str(), f.nhs[1].as_str());
        let up = f
            .store
            .upload_content(
                SystemKind::Microtest,
                &f.ods,
                a,
                "text/plain",
                Bytes::from_static(b"hi"),
            )
            .unwrap();
        let path = format!("/evolution/v2/sites/{}/documents", f.ods);
        let keyed = |key: &'static str| {
            headers(&[
                ("content-type", "application/json"),
                ("idempotency-key", key),
            ])
        };
        let refused = post(&f, &path, &keyed("k-0"), &file_body(b, &up.id));
        assert_eq!(
            (refused.status, doc(&refused)["code"].clone()),
            (422, json!("CONTENT_OF_ANOTHER_PATIENT"))
        );
        let unknown = post(&f, &path, &keyed("k-0"), &file_body(a, "no-such-content"));
        assert_eq!(
            (unknown.status, doc(&unknown)["code"].clone()),
            (404, json!("CONTENT_NOT_FOUND"))
        );
        let filed = post(&f, &path, &keyed("k-1"), &file_body(a, &up.id));
        assert_eq!(filed.status, 201);
        let d = doc(&filed);
        assert_eq!(d["workflow_state"], "awaiting-review");
        assert_eq!(d["external_identifier"]["value"], "d-1");
        // 09:15 BST on 14 July is 08:15 UTC, and reads back as 09:15 local.
        assert_eq!(d["created"]["value"], "2026-07-14T09:15:00");
        let held = f
            .store
            .document(
                SystemKind::Microtest,
                &f.ods,
                d["document_id"].as_str().unwrap(),
            )
            .unwrap()
            .unwrap();
        assert_eq!(held.created, SimDate::ymd(2026, 7, 14).at(8, 15, 0));
        let again = post(&f, &path, &keyed("k-1"), &file_body(a, &up.id));
        assert_eq!(again.status, 200);
        assert_eq!(doc(&again)["document_id"], d["document_id"]);
        let twice = post(&f, &path, &keyed("k-2"), &file_body(a, &up.id));
        assert_eq!(
            (twice.status, doc(&twice)["code"].clone()),
            (422, json!("CONTENT_ALREADY_FILED"))
        );
        let no_key = headers(&[("content-type", "application/json")]);
        assert_eq!(
            doc(&post(&f, &path, &no_key, &file_body(a, &up.id)))["code"],
            "INVALID_IDEMPOTENCY_KEY"
        );
    }
}
