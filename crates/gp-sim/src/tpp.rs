//! TPP SystmOne simulator: serves exactly `docs/native-formats/tpp.md` (PatientRecord
//! XML, clinical events in pages) for patients of practices whose system is TPP, and
//! takes its two writes: recording measurements and replacing contact details. The
//! appointment book's endpoints are routed here and served by [`book`], the patient
//! documents' by [`documents`], the organisation's change log by [`changes`].

use std::collections::HashMap;
use std::sync::Arc;

use hyper::Method;
use tokio::net::TcpListener;

use crate::clock;
use crate::concepts::Concept;
use crate::date::{Precision, SimDate};
use crate::model::*;
use crate::server::{self, Reply, Routed, SimHandle, Simulator};
use crate::store::{ContactUpdate, NewReading, ReadingsWrite, SimStore, WriteError};
use crate::xml::{Element, ReadRules, RequestDoc, XmlWriter, insert_after, remove_element};

#[path = "tpp_book.rs"]
mod book;
#[path = "tpp_changes.rs"]
mod changes;
#[path = "tpp_documents.rs"]
mod documents;

/// Largest `pageSize` the API accepts.
pub const MAX_PAGE_SIZE: usize = 100;
/// `pageSize` when the request gives none.
pub const DEFAULT_PAGE_SIZE: usize = 100;
pub(crate) const XML: &str = "application/xml";

/// Starts the SystmOne simulator on `listener` (bind it to `127.0.0.1:0` in tests).
pub async fn start_tpp(store: SimStore, listener: TcpListener) -> std::io::Result<SimHandle> {
    server::serve(Arc::new(Tpp { store }), listener)
}

struct Tpp {
    store: SimStore,
}

impl Simulator for Tpp {
    fn name(&self) -> &'static str {
        "tpp"
    }

    fn route(&self, method: &Method, path: &str) -> Routed {
        self.route_query(method, path, None).0
    }

    fn route_query(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
    ) -> (Routed, Vec<(&'static str, String)>) {
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        let not_record = |reply| Routed {
            reply,
            record: false,
        };
        let routed = match segments.as_slice() {
            ["", "systmone", "api", "v1", "health"] if method == Method::GET => {
                not_record(health())
            }
            [
                "",
                "systmone",
                "api",
                "v1",
                "organisations",
                ods,
                "patients",
                nhs,
                "record",
            ] if method == Method::GET => Routed {
                reply: self.record(ods, nhs, query),
                record: true,
            },
            [
                "",
                "systmone",
                "api",
                "v1",
                "organisations",
                ods,
                "staff",
                uid,
            ] if method == Method::GET => not_record(self.staff(ods, uid)),
            ["", "systmone", "api", "v1", "organisations", ods, "slots"]
                if method == Method::GET =>
            {
                Routed {
                    reply: book::slots(&self.store, ods, query),
                    record: true,
                }
            }
            ["", "systmone", "api", "v1", "organisations", ods, "changes"]
                if method == Method::GET =>
            {
                Routed {
                    reply: changes::changes(&self.store, ods, query),
                    record: true,
                }
            }
            [
                "",
                "systmone",
                "api",
                "v1",
                "organisations",
                ods,
                "appointments",
                id,
            ] if method == Method::GET => Routed {
                reply: book::appointment(&self.store, ods, id),
                record: true,
            },
            [
                "",
                "systmone",
                "api",
                "v1",
                "organisations",
                ods,
                "patients",
                nhs,
                "appointments",
            ] if method == Method::GET => Routed {
                reply: book::patient_appointments(&self.store, ods, nhs, query),
                record: true,
            },
            [
                "",
                "systmone",
                "api",
                "v1",
                "organisations",
                ods,
                "patients",
                nhs,
                "documents",
            ] if method == Method::GET => Routed {
                reply: documents::list(&self.store, ods, nhs),
                record: true,
            },
            [
                "",
                "systmone",
                "api",
                "v1",
                "organisations",
                ods,
                "documents",
                "content",
                id,
            ] if method == Method::GET => {
                let (reply, headers) = documents::content(&self.store, ods, id);
                return (
                    Routed {
                        reply,
                        record: true,
                    },
                    headers,
                );
            }
            [
                "",
                "systmone",
                "api",
                "v1",
                "organisations",
                _,
                "patients",
                _,
                "documents",
            ] => not_record(error(
                405,
                "METHOD_NOT_ALLOWED",
                "Only GET and POST are supported here",
            )),
            [
                "",
                "systmone",
                "api",
                "v1",
                "organisations",
                _,
                "patients",
                _,
                "documents",
                "content",
            ] => not_record(error(
                405,
                "METHOD_NOT_ALLOWED",
                "Only POST is supported here",
            )),
            [
                "",
                "systmone",
                "api",
                "v1",
                "organisations",
                _,
                "patients",
                _,
                "appointments",
            ] => not_record(error(
                405,
                "METHOD_NOT_ALLOWED",
                "Only GET and POST are supported here",
            )),
            [
                "",
                "systmone",
                "api",
                "v1",
                "organisations",
                _,
                "appointments",
                _,
            ] => not_record(error(
                405,
                "METHOD_NOT_ALLOWED",
                "Only GET and PUT are supported here",
            )),
            [
                "",
                "systmone",
                "api",
                "v1",
                "organisations",
                _,
                "appointments",
                _,
                "cancel",
            ] => not_record(error(
                405,
                "METHOD_NOT_ALLOWED",
                "Only POST is supported here",
            )),
            [
                "",
                "systmone",
                "api",
                "v1",
                "organisations",
                _,
                "patients",
                _,
                "events",
            ] => not_record(error(
                405,
                "METHOD_NOT_ALLOWED",
                "Only POST is supported here",
            )),
            [
                "",
                "systmone",
                "api",
                "v1",
                "organisations",
                _,
                "patients",
                _,
                "demographics",
                "contact",
            ] => not_record(error(
                405,
                "METHOD_NOT_ALLOWED",
                "Only PUT is supported here",
            )),
            ["", "systmone", ..] if method != Method::GET => not_record(error(
                405,
                "METHOD_NOT_ALLOWED",
                "Only GET is supported here",
            )),
            _ => not_record(error(404, "NOT_FOUND", &format!("No endpoint at {path}"))),
        };
        (routed, Vec::new())
    }

    fn route_write(
        &self,
        method: &Method,
        path: &str,
        headers: &hyper::HeaderMap,
        body: &[u8],
    ) -> Option<Routed> {
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        let reply = match segments.as_slice() {
            [
                "",
                "systmone",
                "api",
                "v1",
                "organisations",
                ods,
                "patients",
                nhs,
                "events",
            ] if method == Method::POST => self.record_events(ods, nhs, headers, body),
            [
                "",
                "systmone",
                "api",
                "v1",
                "organisations",
                ods,
                "patients",
                nhs,
                "demographics",
                "contact",
            ] if method == Method::PUT => self.update_contact(ods, nhs, headers, body),
            [
                "",
                "systmone",
                "api",
                "v1",
                "organisations",
                ods,
                "patients",
                nhs,
                "appointments",
            ] if method == Method::POST => book::book(&self.store, ods, nhs, headers, body),
            [
                "",
                "systmone",
                "api",
                "v1",
                "organisations",
                ods,
                "patients",
                nhs,
                "documents",
            ] if method == Method::POST => documents::file(&self.store, ods, nhs, headers, body),
            [
                "",
                "systmone",
                "api",
                "v1",
                "organisations",
                ods,
                "patients",
                nhs,
                "documents",
                "content",
            ] if method == Method::POST => documents::upload(&self.store, ods, nhs, headers, body),
            [
                "",
                "systmone",
                "api",
                "v1",
                "organisations",
                ods,
                "appointments",
                id,
            ] if method == Method::PUT => book::amend(&self.store, ods, id, headers, body),
            [
                "",
                "systmone",
                "api",
                "v1",
                "organisations",
                ods,
                "appointments",
                id,
                "cancel",
            ] if method == Method::POST => book::cancel(&self.store, ods, id, headers, body),
            _ => return None,
        };
        Some(Routed {
            reply,
            record: true,
        })
    }

    /// Document content may be up to 16 MiB; every other write body 256 KiB.
    fn max_write_body(&self, method: &Method, path: &str) -> usize {
        let upload = method == Method::POST
            && path.starts_with("/systmone/api/v1/organisations/")
            && path.trim_end_matches('/').ends_with("/documents/content");
        if upload {
            crate::documents::MAX_UPLOAD
        } else {
            server::MAX_WRITE_BODY
        }
    }

    fn error_reply(&self, status: u16) -> Reply {
        // 413 is the server's answer to an oversized write body, not an injected fault.
        if status == 413 {
            return error(
                413,
                "REQUEST_TOO_LARGE",
                "The request body is larger than the endpoint accepts (256 KiB; 16 MiB for document content)",
            );
        }
        let code = match status {
            400 => "INVALID_NHS_NUMBER",
            404 => "PATIENT_NOT_FOUND",
            503 => "SERVICE_UNAVAILABLE",
            _ => "INTERNAL_ERROR",
        };
        error(status, code, "Injected fault")
    }

    fn garbage(&self) -> Vec<u8> {
        b"\x00\x02SystmOne }{ not XML ][ \xff".to_vec()
    }

    fn mis_encode(&self, body: &[u8]) -> Vec<u8> {
        // 0xC3 0x28 is an invalid two-byte UTF-8 sequence, placed inside an element's text.
        insert_after(body, b"<Surname>", b"\xC3\x28")
            .or_else(|| insert_after(body, b"<Description>", b"\xC3\x28"))
            .unwrap_or_else(|| [body, b"\xC3\x28"].concat())
    }

    fn drop_nhs_number(&self, body: &[u8]) -> Vec<u8> {
        remove_element(body, "NHSNumber")
    }
}

/// `page` and `pageSize` from the query string; other parameters are ignored.
fn paging_params(query: Option<&str>) -> Result<(usize, usize), String> {
    let (mut page, mut size) = (1, DEFAULT_PAGE_SIZE);
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let target = match k {
            "page" => &mut page,
            "pageSize" => &mut size,
            _ => continue,
        };
        *target = v
            .parse()
            .map_err(|_| format!("{k} '{v}' is not a whole number"))?;
    }
    if page < 1 {
        return Err("page must be 1 or more".into());
    }
    if !(1..=MAX_PAGE_SIZE).contains(&size) {
        return Err(format!("pageSize must be between 1 and {MAX_PAGE_SIZE}"));
    }
    Ok((page, size))
}

impl Tpp {
    /// `GET …/organisations/{ODS}/staff/{StaffUID}`: one member of the organisation's
    /// staff (braces and case in the UID do not matter).
    fn staff(&self, ods: &str, uid: &str) -> Reply {
        let practice = match self.organisation(ods) {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        match practice.clinician(uid) {
            Some(c) => {
                let mut w = XmlWriter::new();
                staff_member(&mut w, c, None);
                Reply {
                    status: 200,
                    content_type: XML,
                    body: w.finish().into_bytes(),
                }
            }
            None => error(
                404,
                "STAFF_NOT_FOUND",
                &format!("No staff member with that StaffUID at {ods}"),
            ),
        }
    }

    fn record(&self, ods: &str, nhs: &str, query: Option<&str>) -> Reply {
        let (page, size) = match paging_params(query) {
            Ok(p) => p,
            Err(why) => return error(400, "INVALID_PARAMETER", &why),
        };
        let practice = match self.organisation(ods) {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        if !crate::nhs::is_valid(nhs) {
            return error(
                400,
                "INVALID_NHS_NUMBER",
                &format!("{nhs} is not a valid NHS number"),
            );
        }
        // Render under the read lock: no patient copy is needed.
        let body = self.store.read(|pop| {
            pop.patient(ods, nhs)
                .map(|p| render_page(&practice, p, page, size))
        });
        match body {
            Some(body) => Reply {
                status: 200,
                content_type: XML,
                body: body.into_bytes(),
            },
            None => error(
                404,
                "PATIENT_NOT_FOUND",
                &format!("No patient with that NHS number is registered at {ods}"),
            ),
        }
    }
}

// ---- writes ----------------------------------------------------------------------------

/// Most measurements one `RecordEventsRequest` may carry.
pub const MAX_EVENTS_PER_REQUEST: usize = 10;
/// Longest contact-detail value accepted (characters).
const MAX_CONTACT_CHARS: usize = 100;

impl Tpp {
    /// The SystmOne organisation `ods`, or the `404 ORGANISATION_NOT_FOUND` to answer.
    fn organisation(&self, ods: &str) -> Result<Practice, Reply> {
        match self.store.practice(ods) {
            Some(p) if p.system == SystemKind::Tpp => Ok(p),
            _ => Err(organisation_not_found(ods)),
        }
    }

    /// What every write checks before reading its body: the organisation runs
    /// SystmOne, the NHS number is valid and the body is XML.
    fn write_target(&self, ods: &str, nhs: &str, headers: &hyper::HeaderMap) -> Result<(), Reply> {
        self.organisation(ods)?;
        if !crate::nhs::is_valid(nhs) {
            return Err(error(
                400,
                "INVALID_NHS_NUMBER",
                &format!("{nhs} is not a valid NHS number"),
            ));
        }
        xml_body(headers)
    }

    /// `POST …/patients/{NHS}/events`: records measurements, once per `ExternalReference`.
    fn record_events(
        &self,
        ods: &str,
        nhs: &str,
        headers: &hyper::HeaderMap,
        body: &[u8],
    ) -> Reply {
        if let Err(reply) = self.write_target(ods, nhs, headers) {
            return reply;
        }
        let request = match parse_record_events(body) {
            Ok(r) => r,
            Err(refusal) => return refusal.reply(),
        };
        // DoneBy names a member of the organisation's staff, kept as the staff list has it.
        let author = match &request.done_by {
            None => None,
            Some(uid) => match self.organisation(ods) {
                Ok(p) => match p.clinician(uid) {
                    Some(c) => Some(c.id.clone()),
                    None => {
                        return error(
                            422,
                            "INVALID_EVENT",
                            &format!("DoneBy {uid} is not a member of staff at {ods}"),
                        );
                    }
                },
                Err(reply) => return reply,
            },
        };
        let write = ReadingsWrite {
            key: &request.key,
            date: request.date,
            readings: &request.readings,
            external_id: request.external_id.as_ref(),
            details: &request.details,
            author: author.as_deref(),
        };
        match self.store.record_readings(SystemKind::Tpp, ods, nhs, write) {
            Ok(recorded) => {
                let mut w = XmlWriter::new();
                w.open_with(
                    "RecordEventsResponse",
                    &[
                        ("ExternalReference", request.key.as_str()),
                        ("Created", bool_text(recorded.created)),
                    ],
                );
                for id in &recorded.ids {
                    w.text_with("Event", &[("EventUID", id)], "");
                }
                w.close("RecordEventsResponse");
                Reply {
                    status: if recorded.created { 201 } else { 200 },
                    content_type: XML,
                    body: w.finish().into_bytes(),
                }
            }
            Err(e) => write_error(&e),
        }
    }

    /// `PUT …/patients/{NHS}/demographics/contact`: replaces the contact details if
    /// `LastUpdated` is still the one the record shows.
    fn update_contact(
        &self,
        ods: &str,
        nhs: &str,
        headers: &hyper::HeaderMap,
        body: &[u8],
    ) -> Reply {
        if let Err(reply) = self.write_target(ods, nhs, headers) {
            return reply;
        }
        let (expected, update) = match parse_contact_update(body) {
            Ok(r) => r,
            Err(refusal) => return refusal.reply(),
        };
        // The precondition is the rendered value, so compare it as rendered; the store
        // then checks the underlying version again under its lock.
        let Some(current) = self
            .store
            .read(|pop| pop.patient(ods, nhs).map(|p| p.last_modified))
        else {
            return write_error(&WriteError::PatientNotFound(ods.to_owned()));
        };
        if utc_date_time(current) != expected {
            return write_error(&WriteError::Conflict(current));
        }
        match self
            .store
            .update_contact(SystemKind::Tpp, ods, nhs, current, update)
        {
            Ok(now) => {
                let mut w = XmlWriter::new();
                w.open("ContactDetailsUpdateResponse");
                w.text("LastUpdated", &utc_date_time(now));
                w.close("ContactDetailsUpdateResponse");
                Reply {
                    status: 200,
                    content_type: XML,
                    body: w.finish().into_bytes(),
                }
            }
            Err(e) => write_error(&e),
        }
    }
}

/// `415 UNSUPPORTED_MEDIA_TYPE` unless the request body is `application/xml`.
pub(crate) fn xml_body(headers: &hyper::HeaderMap) -> Result<(), Reply> {
    let content_type = headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case(XML) {
        return Err(error(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            "The request body must be application/xml",
        ));
    }
    Ok(())
}

pub(crate) fn organisation_not_found(ods: &str) -> Reply {
    error(
        404,
        "ORGANISATION_NOT_FOUND",
        &format!("No SystmOne organisation with ODS code {ods}"),
    )
}

/// A store refusal as a SystmOne `ErrorResponse`.
fn write_error(e: &WriteError) -> Reply {
    match e {
        WriteError::PracticeNotFound(ods) => organisation_not_found(ods),
        WriteError::PatientNotFound(ods) => error(
            404,
            "PATIENT_NOT_FOUND",
            &format!("No patient with that NHS number is registered at {ods}"),
        ),
        WriteError::Conflict(now) => error(
            409,
            "RECORD_MODIFIED",
            &format!(
                "The record was modified since the LastUpdated given; it is now {}",
                utc_date_time(*now)
            ),
        ),
        WriteError::Invalid(why) => error(422, "INVALID_EVENT", why),
    }
}

/// Why a write body was refused before reaching the store.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// `400 INVALID_REQUEST`: not the documented request shape.
    Malformed(String),
    /// `422` with this ErrorCode: well-formed, but not something SystmOne records.
    Unprocessable(&'static str, String),
}

impl Refusal {
    pub(crate) fn reply(&self) -> Reply {
        match self {
            Refusal::Malformed(why) => error(400, "INVALID_REQUEST", why),
            Refusal::Unprocessable(code, why) => error(422, code, why),
        }
    }
}

pub(crate) fn malformed(why: impl Into<String>) -> Refusal {
    Refusal::Malformed(why.into())
}

/// A parsed `RecordEventsRequest`.
#[derive(Debug)]
struct RecordEvents {
    key: String,
    /// UK local time (the store's clock), converted from the request's UTC; a date alone
    /// (precision YMD) for `DatePrecision="Date"`.
    date: SimDate,
    readings: Vec<NewReading>,
    /// The supplier's identifier of the reading (`ExternalIdentifier`).
    external_id: Option<ExternalId>,
    /// The whole reading's `PanelInterpretation`, `BodySite` and `Method`.
    details: Qualifiers,
    /// `DoneBy`: the StaffUID of the clinician who took it.
    done_by: Option<String>,
}

/// A coded qualifier as written: `<BodySite><Code Scheme="Snomed">…</Code><Rubric>…`.
fn snomed_qualifier(parent: Element, name: &str) -> Result<Option<Code>, Refusal> {
    let Some(q) = parent.child(name) else {
        return Ok(None);
    };
    let code = q
        .child("Code")
        .ok_or_else(|| malformed(format!("{name}/Code is missing")))?;
    if !code
        .attr("Scheme")
        .is_some_and(|s| s.eq_ignore_ascii_case("Snomed"))
    {
        return Err(Refusal::Unprocessable(
            "INVALID_CODE",
            format!("{name} is recorded with a SNOMED CT code (Scheme=\"Snomed\")"),
        ));
    }
    let value = code.text();
    if value.is_empty() || value.len() > 18 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refusal::Unprocessable(
            "INVALID_CODE",
            format!("{name}: '{value}' is not a SNOMED CT id"),
        ));
    }
    Ok(Some(Code {
        system: SNOMED_SYSTEM.to_owned(),
        code: value.into_owned(),
        display: q.child_text("Rubric").map(|r| r.into_owned()),
    }))
}

/// An interpretation as written: `<Interpretation System="…" Code="…">display</…>`.
fn interpretation(parent: Element, name: &str) -> Result<Option<Code>, Refusal> {
    let Some(i) = parent.child(name) else {
        return Ok(None);
    };
    let system = i.attr("System").unwrap_or("");
    let code = i.attr("Code").unwrap_or("");
    let ok = |v: &str| !v.is_empty() && v.len() <= 200 && !v.chars().any(char::is_control);
    if !ok(system) || !ok(code) {
        return Err(malformed(format!(
            "{name} needs a System and a Code of 1 to 200 characters"
        )));
    }
    let display = i.text();
    Ok(Some(Code {
        system: system.to_owned(),
        code: code.to_owned(),
        display: (!display.is_empty()).then(|| display.into_owned()),
    }))
}

/// The SNOMED CT code system URI, as qualifiers are stored.
const SNOMED_SYSTEM: &str = "http://snomed.info/sct";

fn parse_record_events(body: &[u8]) -> Result<RecordEvents, Refusal> {
    let doc = parse_xml(body)?;
    let root = doc.root();
    if root.name() != "RecordEventsRequest" {
        return Err(malformed(format!(
            "the root element is <{}>, expected <RecordEventsRequest>",
            root.name()
        )));
    }
    let key = root
        .attr("ExternalReference")
        .ok_or_else(|| malformed("RecordEventsRequest/@ExternalReference is missing"))?;
    if key.len() > 64 || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(malformed(
            "ExternalReference must be 1 to 64 letters, digits or hyphens",
        ));
    }
    let raw_date = root
        .attr("DateTime")
        .ok_or_else(|| malformed("RecordEventsRequest/@DateTime is missing"))?;
    let date = match root.attr("DatePrecision") {
        None | Some("DateTime") => local_from_utc(raw_date).ok_or_else(|| {
            malformed(format!(
                "DateTime '{raw_date}' is not a YYYY-MM-DDTHH:MM:SSZ date-time"
            ))
        })?,
        // A date alone: its first instant, not shifted to local time (as records show it).
        Some("Date") => parse_utc(raw_date)
            .filter(|d| d.time == Some((0, 0, 0)))
            .map(|d| d.truncate(Precision::YMD))
            .ok_or_else(|| {
                malformed(format!(
                    "DateTime '{raw_date}' is not a YYYY-MM-DDT00:00:00Z date (DatePrecision=\"Date\")"
                ))
            })?,
        Some(other) => {
            return Err(malformed(format!(
                "DatePrecision '{other}' is not Date or DateTime"
            )));
        }
    };
    let done_by = root.attr("DoneBy").map(str::to_owned);
    let codes: Vec<Element> = root.children_named("ClinicalCode").collect();
    if codes.is_empty() || codes.len() > MAX_EVENTS_PER_REQUEST {
        return Err(malformed(format!(
            "a request holds 1 to {MAX_EVENTS_PER_REQUEST} ClinicalCode elements, not {}",
            codes.len()
        )));
    }
    let mut readings = Vec::with_capacity(codes.len());
    for (i, c) in codes.into_iter().enumerate() {
        let at = format!("ClinicalCode[{}]", i + 1);
        if c.attr("IsAllergy").is_some_and(|v| v != "false") {
            return Err(Refusal::Unprocessable(
                "INVALID_CODE",
                format!("{at}: only measurements can be recorded, not allergies"),
            ));
        }
        let code = c
            .child("Code")
            .ok_or_else(|| malformed(format!("{at}/Code is missing")))?;
        let scheme = code.attr("Scheme").unwrap_or("");
        let value = code.text();
        // CTV3, or SNOMED CT (every concept since SystmOne moved to SNOMED CT in 2020).
        let concept = if scheme.eq_ignore_ascii_case("CTV3") {
            crate::concepts::measurement_by_ctv3(&value)
        } else if scheme.eq_ignore_ascii_case("Snomed") {
            crate::concepts::measurement_by_snomed(&value)
        } else {
            return Err(Refusal::Unprocessable(
                "INVALID_CODE",
                format!(
                    "{at}: measurements are recorded with CTV3 or Snomed codes, not Scheme '{scheme}'"
                ),
            ));
        };
        let concept = concept.ok_or_else(|| {
            Refusal::Unprocessable(
                "INVALID_CODE",
                format!(
                    "{at}: {scheme} code '{value}' is not a measurement SystmOne records with a value"
                ),
            )
        })?;
        let raw_value = c.required_text("Value", || malformed(format!("{at}/Value is missing")))?;
        let value: f64 = raw_value
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| malformed(format!("{at}/Value '{raw_value}' is not a number")))?;
        let units = c.required_text("Units", || malformed(format!("{at}/Units is missing")))?;
        if Some(&*units) != concept.units {
            return Err(Refusal::Unprocessable(
                "INVALID_UNITS",
                format!(
                    "{at}: {} is recorded in {}, not {units}",
                    concept.term,
                    concept.units.unwrap_or("no units")
                ),
            ));
        }
        readings.push(NewReading {
            concept,
            value,
            interpretation: interpretation(c, "Interpretation")?,
        });
    }
    let external_id = match root.child("ExternalIdentifier") {
        None => None,
        Some(e) => Some(
            ExternalId::new(e.attr("System").unwrap_or(""), &e.text())
                .map_err(|m| malformed(format!("ExternalIdentifier: {m}")))?,
        ),
    };
    let details = Qualifiers {
        panel_interpretation: interpretation(root, "PanelInterpretation")?,
        body_site: snomed_qualifier(root, "BodySite")?,
        method: snomed_qualifier(root, "Method")?,
        ..Qualifiers::default()
    };
    Ok(RecordEvents {
        key: key.to_owned(),
        date,
        readings,
        external_id,
        details,
        done_by,
    })
}

/// A parsed `ContactDetailsUpdate`: the `LastUpdated` precondition and the new details.
fn parse_contact_update(body: &[u8]) -> Result<(String, ContactUpdate), Refusal> {
    let doc = parse_xml(body)?;
    let root = doc.root();
    if root.name() != "ContactDetailsUpdate" {
        return Err(malformed(format!(
            "the root element is <{}>, expected <ContactDetailsUpdate>",
            root.name()
        )));
    }
    let expected = root.required_text("LastUpdated", || {
        malformed("ContactDetailsUpdate/LastUpdated (the record's current LastUpdated) is missing")
    })?;
    if local_from_utc(&expected).is_none() {
        return Err(malformed(format!(
            "LastUpdated '{expected}' is not a YYYY-MM-DDTHH:MM:SSZ date-time"
        )));
    }
    let value = |parent: Element, name: &str| -> Result<String, Refusal> {
        let v = parent.child_text(name).unwrap_or_default();
        if v.chars().count() > MAX_CONTACT_CHARS || v.chars().any(char::is_control) {
            return Err(Refusal::Unprocessable(
                "INVALID_VALUE",
                format!("{name} must be at most {MAX_CONTACT_CHARS} characters on one line"),
            ));
        }
        Ok(v.into_owned())
    };
    let optional = |name: &str| -> Result<Option<String>, Refusal> {
        Ok(Some(value(root, name)?).filter(|v| !v.is_empty()))
    };
    let address = match root.child("Address") {
        Some(a) => Address {
            house: value(a, "AddressLine1")?,
            street: value(a, "AddressLine2")?,
            village: value(a, "AddressLine3")?,
            town: value(a, "AddressLine4")?,
            // SystmOne keeps no county: a new address has none.
            county: String::new(),
            postcode: value(a, "PostCode")?,
        },
        None => Address {
            house: String::new(),
            street: String::new(),
            village: String::new(),
            town: String::new(),
            county: String::new(),
            postcode: String::new(),
        },
    };
    let email = optional("Email")?;
    if email.as_deref().is_some_and(|e| !e.contains('@')) {
        return Err(Refusal::Unprocessable(
            "INVALID_VALUE",
            "Email is not an email address".into(),
        ));
    }
    let language = match root.child("MainSpokenLanguage") {
        None => None,
        Some(l) => {
            let code = l.attr("Code").unwrap_or("");
            let ok = (2..=8).contains(&code.len())
                && code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                return Err(Refusal::Unprocessable(
                    "INVALID_VALUE",
                    format!("MainSpokenLanguage/@Code '{code}' is not a language code"),
                ));
            }
            Some(code.to_owned())
        }
    };
    Ok((
        expected.into_owned(),
        ContactUpdate {
            home_phone: optional("HomeTelephone")?,
            mobile: optional("MobileTelephone")?,
            email,
            address,
            language,
        },
    ))
}

/// `YYYY-MM-DDTHH:MM:SSZ` → the UK local date-time it denotes (the store's clock).
fn local_from_utc(s: &str) -> Option<SimDate> {
    parse_utc(s).map(clock::local_from_utc)
}

/// `YYYY-MM-DDTHH:MM:SSZ` → that UTC date-time, calendar and clock checked.
pub(crate) fn parse_utc(s: &str) -> Option<SimDate> {
    let b = s.as_bytes();
    let shape = b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
    if !shape {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|p| p.parse::<u8>().ok());
    let year: i32 = s.get(0..4)?.parse().ok()?;
    let (month, day, hour, minute, second) = (
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    let valid = (1..=12).contains(&month)
        && day >= 1
        && day <= crate::date::days_in_month(year, month)
        && hour < 24
        && minute < 60
        && second < 60;
    if !valid {
        return None;
    }
    Some(SimDate::ymd(year, month, day).at(hour, minute, second))
}

// ---- request XML -----------------------------------------------------------------------

/// How SystmOne reads a request: no DTDs; comments, CDATA and processing instructions
/// are read past, prefixes dropped (elements match by local name), at most 17 levels.
const READ_RULES: ReadRules = ReadRules {
    max_depth: 17,
    plain: false,
};

/// Parses a write body as SystmOne reads it; anything else is `400 INVALID_REQUEST`.
pub(crate) fn parse_xml(body: &[u8]) -> Result<RequestDoc<'_>, Refusal> {
    RequestDoc::parse(body, READ_RULES).map_err(|e| malformed(e.to_string()))
}

fn health() -> Reply {
    let mut w = XmlWriter::new();
    w.open("HealthCheck");
    w.text("Status", "OK");
    w.close("HealthCheck");
    Reply {
        status: 200,
        content_type: XML,
        body: w.finish().into_bytes(),
    }
}

/// A `StaffMember`, in the record's `Organisation/Staff` and in a staff read alike.
/// `job_role`: the SDS job role (code, display), which the appointment book adds.
pub(crate) fn staff_member(w: &mut XmlWriter, c: &Clinician, job_role: Option<(&str, &str)>) {
    w.open_with("StaffMember", &[("StaffUID", &c.id)]);
    w.text("Title", &c.title);
    w.text("Forename", &c.given);
    w.text("Surname", &c.family);
    w.text("Sex", sex(c.sex));
    w.text("Role", &c.role);
    w.text("SmartcardID", &c.sds_user_id);
    w.opt("GmcNumber", c.gmc.as_deref());
    if let Some((code, display)) = job_role {
        w.text_with("JobRole", &[("Code", code)], display);
    }
    w.close("StaffMember");
}

pub(crate) fn error(status: u16, code: &str, description: &str) -> Reply {
    let mut w = XmlWriter::new();
    w.open("ErrorResponse");
    w.text("ErrorCode", code);
    w.text("Description", description);
    w.close("ErrorResponse");
    Reply {
        status,
        content_type: XML,
        body: w.finish().into_bytes(),
    }
}

/// One clinical entry of the model, whatever its kind.
#[derive(Clone, Copy)]
enum Entry<'a> {
    Problem(&'a Problem),
    Observation(&'a Observation),
    Immunisation(&'a Immunisation),
    Allergy(&'a Allergy),
    Medication(&'a Medication),
}

impl Entry<'_> {
    fn meta(&self) -> &EntryMeta {
        match self {
            Entry::Problem(x) => &x.meta,
            Entry::Observation(x) => &x.meta,
            Entry::Immunisation(x) => &x.meta,
            Entry::Allergy(x) => &x.meta,
            Entry::Medication(x) => &x.meta,
        }
    }
}

/// A top-level journal event: a consultation grouping the entries recorded in it, or
/// an entry recorded outside any consultation.
enum TopEvent<'a> {
    Consultation(&'a Consultation, Vec<Entry<'a>>),
    Entry(Entry<'a>),
}

impl TopEvent<'_> {
    fn meta(&self) -> &EntryMeta {
        match self {
            TopEvent::Consultation(c, _) => &c.meta,
            TopEvent::Entry(e) => e.meta(),
        }
    }
}

/// The patient's journal, oldest first (ties by UID), as SystmOne pages it.
fn journal(p: &SimPatient) -> Vec<TopEvent<'_>> {
    let mut events: Vec<TopEvent> = p
        .consultations
        .iter()
        .map(|c| TopEvent::Consultation(c, Vec::new()))
        .collect();
    let index: HashMap<&str, usize> = p
        .consultations
        .iter()
        .enumerate()
        .map(|(i, c)| (c.meta.id.as_str(), i))
        .collect();
    let entries = p
        .problems
        .iter()
        .map(Entry::Problem)
        .chain(p.observations.iter().map(Entry::Observation))
        .chain(p.immunisations.iter().map(Entry::Immunisation))
        .chain(p.allergies.iter().map(Entry::Allergy))
        .chain(p.medications.iter().map(Entry::Medication));
    for e in entries {
        let group = e.meta().consultation.as_deref().and_then(|c| index.get(c));
        match group.and_then(|&i| events.get_mut(i)) {
            Some(TopEvent::Consultation(_, inner)) => inner.push(e),
            _ => events.push(TopEvent::Entry(e)),
        }
    }
    for e in &mut events {
        if let TopEvent::Consultation(_, inner) = e {
            inner.sort_by(|a, b| order(a.meta(), b.meta()));
        }
    }
    events.sort_by(|a, b| order(a.meta(), b.meta()));
    events
}

fn order(a: &EntryMeta, b: &EntryMeta) -> std::cmp::Ordering {
    a.date.cmp(&b.date).then_with(|| a.id.cmp(&b.id))
}

/// Renders page `page` (1-based) of `size` events of a patient's record.
pub fn render_page(practice: &Practice, p: &SimPatient, page: usize, size: usize) -> String {
    let events = journal(p);
    let start = page.saturating_sub(1).saturating_mul(size);
    let on_page = events.get(start..).unwrap_or_default();
    let on_page = &on_page[..on_page.len().min(size)];

    let mut w = XmlWriter::new();
    w.open("PatientRecord");
    w.text("PatientUID", &p.id);
    w.text("OrganisationID", &practice.ods);
    w.text_with(
        "Paging",
        &[
            ("Page", &page.to_string()),
            ("PageSize", &size.to_string()),
            ("TotalEvents", &events.len().to_string()),
        ],
        "",
    );

    w.open_with("Organisation", &[("OrganisationUID", &practice.guid)]);
    w.text("Name", &practice.name);
    address(&mut w, &practice.address);
    w.text("Telephone", &practice.phone);
    w.open("Staff");
    for c in &practice.clinicians {
        staff_member(&mut w, c, None);
    }
    w.close("Staff");
    w.close("Organisation");

    w.open("Patient");
    w.open("Identity");
    w.text("NHSNumber", &p.nhs_number);
    w.text("NHSNumberStatus", &p.nhs_status);
    w.close("Identity");
    w.open("Demographics");
    w.text("Title", &p.title);
    w.text("Forename", p.given.first().map_or("", String::as_str));
    w.text(
        "MiddleNames",
        &p.given.get(1..).unwrap_or_default().join(" "),
    );
    w.text("Surname", &p.family);
    dated(&mut w, "DateOfBirth", p.birth_date);
    w.text("Sex", sex(p.sex));
    address(&mut w, &p.address);
    w.opt("HomeTelephone", p.home_phone.as_deref());
    w.opt("MobileTelephone", p.mobile.as_deref());
    w.opt("Email", p.email.as_deref());
    if let Some(code) = p.language.as_deref() {
        // SystmOne's "main spoken language": the code, and its name as the text.
        w.text_with(
            "MainSpokenLanguage",
            &[("Code", code)],
            crate::languages::name(code).unwrap_or(""),
        );
    }
    w.text_with("UsualGP", &[("StaffUID", &p.usual_gp)], "");
    dated(&mut w, "RegistrationDate", p.registered_on);
    if let Some(d) = p.deceased_on {
        dated(&mut w, "DateOfDeath", d);
    }
    w.text("LastUpdated", &utc_date_time(p.last_modified));
    w.close("Demographics");
    w.text_with(
        "SharingFlags",
        &[
            ("Sensitive", bool_text(p.flags.sensitive)),
            ("ThirdPartyDissent", bool_text(p.flags.dissent)),
        ],
        "",
    );

    // A diastolic reading names the systolic one it was taken with (ParentEventUID).
    let parents: HashMap<&str, &str> = crate::model::blood_pressure_pairs(&p.observations)
        .into_iter()
        .map(|(s, d)| {
            (
                p.observations[d].meta.id.as_str(),
                p.observations[s].meta.id.as_str(),
            )
        })
        .collect();
    w.open("Clinical");
    for e in on_page {
        match e {
            TopEvent::Consultation(c, inner) => {
                open_event(&mut w, &c.meta, &c.clinician, None);
                w.open("Consultation");
                code(&mut w, c.kind, &c.meta);
                w.text("Duration", &c.duration_minutes.to_string());
                w.close("Consultation");
                for x in inner {
                    entry_event(&mut w, *x, &parents);
                }
                w.close("Event");
            }
            TopEvent::Entry(x) => entry_event(&mut w, *x, &parents),
        }
    }
    w.close("Clinical");
    w.close("Patient");
    w.close("PatientRecord");
    w.finish()
}

/// `<Event EventUID DateTime DatePrecision DoneBy Confidential>`, left open.
fn open_event(w: &mut XmlWriter, meta: &EntryMeta, done_by: &str, parent: Option<&str>) {
    let (when, precision) = date_time_attr(meta.date);
    let mut attrs = vec![("EventUID", meta.id.as_str()), ("DateTime", when.as_str())];
    // SystmOne leaves the attribute out for full date-times (the documented default).
    if precision != "DateTime" {
        attrs.push(("DatePrecision", precision));
    }
    // An entry a third-party supplier wrote has no practice author: no DoneBy at all.
    if !done_by.is_empty() {
        attrs.push(("DoneBy", done_by));
    }
    attrs.push(("Confidential", bool_text(meta.confidential)));
    if let Some(parent) = parent {
        attrs.push(("ParentEventUID", parent));
    }
    w.open_with("Event", &attrs);
}

fn entry_event(w: &mut XmlWriter, e: Entry, parents: &HashMap<&str, &str>) {
    let meta = e.meta();
    open_event(
        w,
        meta,
        &meta.author,
        parents.get(meta.id.as_str()).copied(),
    );
    // The supplier's identifier of a reading it recorded, beside the entry.
    if let Some(ext) = &meta.external_id {
        w.text_with("ExternalIdentifier", &[("System", &ext.system)], &ext.value);
    }
    match e {
        Entry::Observation(x) => {
            w.open_with("ClinicalCode", &[("IsAllergy", "false")]);
            code(w, x.concept, meta);
            if let Some(v) = x.value {
                w.text("Value", &v.to_string());
                w.text("Units", x.units.unwrap_or(""));
            }
            if let Some(q) = &x.qualifiers {
                qualifiers(w, q);
            }
            w.close("ClinicalCode");
        }
        Entry::Problem(x) => {
            w.open_with("ClinicalCode", &[("IsAllergy", "false")]);
            code(w, x.concept, meta);
            w.open("Problem");
            w.text(
                "Status",
                match x.status {
                    ProblemStatus::Active => "Active",
                    ProblemStatus::Past => "Past",
                },
            );
            w.text(
                "Significance",
                match x.significance {
                    Significance::Major => "Major",
                    Significance::Minor => "Minor",
                },
            );
            if let Some(d) = x.end_date {
                dated(w, "EndDate", d);
            }
            w.close("Problem");
            w.close("ClinicalCode");
        }
        Entry::Allergy(a) => {
            w.open_with("ClinicalCode", &[("IsAllergy", "true")]);
            code(w, a.concept, meta);
            w.open("Allergy");
            w.text(
                "Category",
                match a.category {
                    AllergyCategory::Drug => "Drug",
                    AllergyCategory::Food => "Food",
                    AllergyCategory::Environment => "Environment",
                },
            );
            w.text(
                "Status",
                match a.status {
                    AllergyStatus::Active => "Active",
                    AllergyStatus::Resolved => "Resolved",
                },
            );
            if let Some(r) = a.reaction {
                w.open("Reaction");
                code(w, r, meta);
                w.close("Reaction");
            }
            w.text(
                "Severity",
                match a.severity {
                    Severity::Mild => "Mild",
                    Severity::Moderate => "Moderate",
                    Severity::Severe => "Severe",
                },
            );
            if let Some(d) = a.end_date {
                dated(w, "EndDate", d);
            }
            w.close("Allergy");
            w.close("ClinicalCode");
        }
        Entry::Immunisation(x) => {
            w.open("Vaccination");
            code(w, x.concept, meta);
            w.text("Batch", &x.batch);
            w.text("DoseSequence", &x.dose_sequence.to_string());
            w.close("Vaccination");
        }
        Entry::Medication(m) => {
            w.open("Medication");
            w.open("Drug");
            code(w, m.drug, meta);
            w.close("Drug");
            w.text("Dosage", &m.dosage);
            w.text("Quantity", &m.quantity.to_string());
            w.text("QuantityUnits", &m.quantity_units);
            w.text(
                "PrescriptionType",
                match m.kind {
                    MedicationKind::Acute => "Acute",
                    MedicationKind::Repeat => "Repeat",
                },
            );
            w.text(
                "Status",
                match m.status {
                    MedicationStatus::Active => "Active",
                    MedicationStatus::Completed => "Completed",
                    MedicationStatus::Cancelled => "Cancelled",
                },
            );
            if let Some(d) = m.end_date {
                dated(w, "EndDate", d);
            }
            w.close("Medication");
        }
    }
    w.close("Event");
}

/// What SystmOne holds with a reading beyond its value: its interpretation, and on the
/// first (systolic) event of a reading the whole reading's interpretation, body site
/// and method. A device or other codings are not held, so never shown.
fn qualifiers(w: &mut XmlWriter, q: &Qualifiers) {
    for (name, i) in [
        ("Interpretation", &q.interpretation),
        ("PanelInterpretation", &q.panel_interpretation),
    ] {
        if let Some(i) = i {
            w.text_with(
                name,
                &[("System", &i.system), ("Code", &i.code)],
                i.display.as_deref().unwrap_or(""),
            );
        }
    }
    for (name, c) in [("BodySite", &q.body_site), ("Method", &q.method)] {
        if let Some(c) = c.as_ref().filter(|c| c.system == SNOMED_SYSTEM) {
            w.open(name);
            w.text_with("Code", &[("Scheme", "Snomed")], &c.code);
            w.text("Rubric", c.display.as_deref().unwrap_or(""));
            w.close(name);
        }
    }
}

/// `<Code Scheme=…>` and `<Rubric>`. Which scheme SystmOne would use: dm+d for drugs;
/// CTV3 where the concept has a CTV3 code, except that some entries from 2020 on (when
/// SystmOne moved to SNOMED CT) are SNOMED, chosen by the entry UID so output stays
/// deterministic; SNOMED CT otherwise.
fn code(w: &mut XmlWriter, c: &Concept, meta: &EntryMeta) {
    // Entries written through the API keep the CTV3 code they were written with.
    let odd = meta.external_key.is_none() && meta.id.bytes().last().is_some_and(|b| b % 2 == 1);
    let (value, scheme) = if let Some(dmd) = c.dmd {
        (dmd, "DMD")
    } else {
        match c.ctv3 {
            Some(ctv3) if !(meta.date.year >= 2020 && odd) => (ctv3, "CTV3"),
            _ => (c.snomed, "Snomed"),
        }
    };
    w.text_with("Code", &[("Scheme", scheme)], value);
    w.text("Rubric", c.term);
}

fn address(w: &mut XmlWriter, a: &Address) {
    // SystmOne keeps four free lines and the postcode; the county is not recorded.
    w.open("Address");
    w.text("AddressLine1", &a.house);
    w.text("AddressLine2", &a.street);
    w.text("AddressLine3", &a.village);
    w.text("AddressLine4", &a.town);
    w.text("PostCode", &a.postcode);
    w.close("Address");
}

/// A date element: `<name DatePrecision=…>ISO-8601 UTC</name>`.
fn dated(w: &mut XmlWriter, name: &str, d: SimDate) {
    let (when, precision) = date_time_attr(d);
    w.text_with(name, &[("DatePrecision", precision)], &when);
}

/// The `DateTime` value and `DatePrecision` of a date: partial dates are written as the
/// first instant they can denote (`1998-01-01T00:00:00Z` for 1998) and are not
/// shifted to UTC; full date-times are UK local time converted to UTC.
fn date_time_attr(d: SimDate) -> (String, &'static str) {
    let precision = match d.precision() {
        Precision::Y => "Year",
        Precision::YM => "Month",
        Precision::YMD => "Date",
        Precision::YMDT => "DateTime",
    };
    let when = if d.time.is_some() {
        utc_date_time(d)
    } else {
        format!(
            "{:04}-{:02}-{:02}T00:00:00Z",
            d.year,
            d.month.unwrap_or(1),
            d.day.unwrap_or(1)
        )
    };
    (when, precision)
}

/// UK local date-time → `YYYY-MM-DDTHH:MM:SSZ`, by the simulators' UK clock
/// ([`clock`]): the skipped spring hour and the repeated autumn hour are read as BST,
/// as EMIS readers do.
pub fn utc_date_time(d: SimDate) -> String {
    let utc = clock::utc_from_local(d);
    let (hour, mi, s) = utc.time.unwrap_or((0, 0, 0));
    format!(
        "{:04}-{:02}-{:02}T{hour:02}:{mi:02}:{s:02}Z",
        utc.year,
        utc.month.unwrap_or(1),
        utc.day.unwrap_or(1)
    )
}

pub(crate) fn sex(s: Sex) -> &'static str {
    match s {
        Sex::Male => "Male",
        Sex::Female => "Female",
        Sex::Indeterminate => "Indeterminate",
        Sex::Unknown => "Unknown",
    }
}

pub(crate) fn bool_text(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_times_become_utc() {
        assert_eq!(
            utc_date_time(SimDate::ymd(2024, 1, 12).at(9, 40, 0)),
            "2024-01-12T09:40:00Z"
        );
        assert_eq!(
            utc_date_time(SimDate::ymd(2024, 6, 12).at(9, 40, 0)),
            "2024-06-12T08:40:00Z"
        );
        assert_eq!(
            utc_date_time(SimDate::ymd(2024, 6, 1).at(0, 30, 0)),
            "2024-05-31T23:30:00Z"
        );
        assert_eq!(
            date_time_attr(SimDate::ymd(1998, 3, 2).truncate(Precision::Y)),
            ("1998-01-01T00:00:00Z".to_owned(), "Year")
        );
        assert_eq!(
            date_time_attr(SimDate::ymd(1998, 3, 2).truncate(Precision::YM)),
            ("1998-03-01T00:00:00Z".to_owned(), "Month")
        );
    }

    #[test]
    fn request_xml_is_read_strictly() {
        let body = "\u{feff}<?xml version=\"1.0\"?><!-- c --><s:A xmlns:s=\"urn:x\" k='1 &amp; 2'>\
             <B>x &lt;y&gt; &#233;&#xE9;<![CDATA[<z>]]></B><C/><s:D>d</s:D></s:A>\n";
        let parsed = parse_xml(body.as_bytes()).unwrap();
        let doc = parsed.root();
        assert_eq!(doc.name(), "A");
        assert_eq!(doc.attr("k"), Some("1 & 2"));
        assert_eq!(doc.child_text("B").as_deref(), Some("x <y> éé<z>"));
        assert_eq!(doc.child_text("C"), None);
        assert_eq!(
            doc.child_text("D").as_deref(),
            Some("d"),
            "local names match"
        );
        for bad in [
            "",
            "text",
            "<A>",
            "<A></B>",
            "<A k=1/>",
            "<A>&bogus;</A>",
            "<!DOCTYPE A><A/>",
            "<A/><B/>",
            "<A>\u{0}",
        ] {
            assert!(parse_xml(bad.as_bytes()).is_err(), "{bad:?}");
        }
        let deep = "<A>".repeat(40) + &"</A>".repeat(40);
        assert!(parse_xml(deep.as_bytes()).is_err());
        let limit = "<A>".repeat(17) + &"</A>".repeat(17);
        assert!(parse_xml(limit.as_bytes()).is_ok());
        assert!(parse_xml(b"<A>\xff</A>").is_err());
    }

    #[test]
    fn utc_becomes_local_and_back() {
        for utc in [
            "2024-01-12T09:40:00Z",
            "2024-06-12T08:40:00Z",
            "2024-05-31T23:30:00Z",
            "2024-03-31T01:00:00Z",
            "2024-10-27T00:59:59Z",
            "2024-12-31T23:59:59Z",
        ] {
            let local = local_from_utc(utc).unwrap();
            assert_eq!(utc_date_time(local), utc);
        }
        assert_eq!(
            local_from_utc("2024-05-31T23:30:00Z"),
            Some(SimDate::ymd(2024, 6, 1).at(0, 30, 0))
        );
        for bad in [
            "2024-02-30T00:00:00Z",
            "2024-01-12T09:40:00",
            "2024-01-12T24:00:00Z",
            "2024-01-12T09:40:00+01:00",
        ] {
            assert_eq!(local_from_utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn reading_details_are_parsed() {
        let body = r#"<RecordEventsRequest ExternalReference="k-1" DateTime="2026-07-14T00:00:00Z" DatePrecision="Date" DoneBy="{ABC}">
            <ClinicalCode><Code Scheme="Snomed">431314004</Code><Value>97</Value><Units>%</Units>
              <Interpretation System="urn:v3" Code="N">Normal</Interpretation></ClinicalCode>
            <PanelInterpretation System="urn:v3" Code="A">Abnormal</PanelInterpretation>
            <BodySite><Code Scheme="Snomed">368209003</Code><Rubric>Right arm</Rubric></BodySite>
            <Method><Code Scheme="Snomed">37931006</Code></Method>
          </RecordEventsRequest>"#;
        let r = parse_record_events(body.as_bytes()).unwrap();
        assert_eq!(
            r.date,
            SimDate::ymd(2026, 7, 14),
            "a date alone, not shifted"
        );
        assert_eq!(r.done_by.as_deref(), Some("{ABC}"));
        assert_eq!(r.readings[0].concept.snomed, "431314004");
        let code = |system: &str, code: &str, display: Option<&str>| Code {
            system: system.into(),
            code: code.into(),
            display: display.map(Into::into),
        };
        assert_eq!(
            r.readings[0].interpretation,
            Some(code("urn:v3", "N", Some("Normal")))
        );
        assert_eq!(
            r.details.panel_interpretation,
            Some(code("urn:v3", "A", Some("Abnormal")))
        );
        assert_eq!(
            r.details.body_site,
            Some(code(SNOMED_SYSTEM, "368209003", Some("Right arm")))
        );
        assert_eq!(
            r.details.method,
            Some(code(SNOMED_SYSTEM, "37931006", None))
        );

        for (bad, status) in [
            (
                body.replace("T00:00:00Z\" DatePrecision", "T10:00:00Z\" DatePrecision"),
                400,
            ),
            (
                body.replace("DatePrecision=\"Date\"", "DatePrecision=\"Month\""),
                400,
            ),
            (
                body.replace(
                    "<Method><Code Scheme=\"Snomed\">",
                    "<Method><Code Scheme=\"CTV3\">",
                ),
                422,
            ),
            (body.replace(" Code=\"N\"", ""), 400),
            (body.replace("431314004", "999999999"), 422),
        ] {
            let refusal = parse_record_events(bad.as_bytes()).unwrap_err();
            assert_eq!(refusal.reply().status, status, "{bad}");
        }
    }

    #[test]
    fn reading_details_are_rendered_on_the_event() {
        let mut w = XmlWriter::new();
        qualifiers(
            &mut w,
            &Qualifiers {
                interpretation: Some(Code {
                    system: "urn:v3".into(),
                    code: "H".into(),
                    display: Some("High".into()),
                }),
                body_site: Some(Code {
                    system: SNOMED_SYSTEM.into(),
                    code: "368209003".into(),
                    display: Some("Right arm".into()),
                }),
                device: Some("Not held".into()),
                ..Qualifiers::default()
            },
        );
        let xml = w.finish();
        assert!(
            xml.contains(r#"<Interpretation System="urn:v3" Code="H">High</Interpretation>"#),
            "{xml}"
        );
        // The writer indents: compare without the layout.
        let flat: String = xml.lines().map(str::trim).collect();
        assert!(
            flat.contains(r#"<BodySite><Code Scheme="Snomed">368209003</Code><Rubric>Right arm</Rubric></BodySite>"#),
            "{xml}"
        );
        assert!(!xml.contains("Not held"), "SystmOne holds no device: {xml}");
    }

    #[test]
    fn paging_parameters() {
        assert_eq!(paging_params(None), Ok((1, 100)));
        assert_eq!(paging_params(Some("page=3&pageSize=10&x=y")), Ok((3, 10)));
        assert!(paging_params(Some("page=0")).is_err());
        assert!(paging_params(Some("pageSize=101")).is_err());
        assert!(paging_params(Some("pageSize=abc")).is_err());
    }
}
