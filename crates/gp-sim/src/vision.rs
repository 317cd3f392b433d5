//! Vision (INPS/Cegedim) simulator: serves exactly `docs/native-formats/vision.md`
//! (pipe-delimited extract rows) for patients of practices whose system is Vision.

use std::sync::Arc;

use hyper::Method;
use tokio::net::TcpListener;

use crate::concepts::Concept;
use crate::date::SimDate;
use crate::model::*;
use crate::server::{self, Reply, Routed, SimHandle, Simulator};
use crate::store::{ContactUpdate, NewReading, ReadingsWrite, SimStore, WriteError};

#[path = "vision_book.rs"]
pub mod book;
#[path = "vision_changes.rs"]
pub mod changes;
#[path = "vision_documents.rs"]
pub mod documents;

/// Content type of every Vision extract and error body.
pub const CONTENT_TYPE: &str = "text/plain; charset=utf-8";
/// Response header naming the next journal page's token.
pub const CONTINUATION_HEADER: &str = "x-vision-continuation";
/// Most journal rows one call returns.
pub const PAGE_ROWS: usize = 500;

/// Patient extract columns, in the order the simulator writes them.
pub const PATIENT_COLUMNS: [&str; 26] = [
    "PID",
    "NHS_NUMBER",
    "SURNAME",
    "FORENAME",
    "DATE_OF_BIRTH",
    "SEX",
    "POSTCODE",
    "GP_USUAL",
    "ACTIVE",
    "TITLE",
    "MIDDLE_NAMES",
    "ADDRESS1",
    "ADDRESS2",
    "ADDRESS3",
    "TOWN",
    "COUNTY",
    "HOME_PHONE",
    "MOBILE_PHONE",
    "EMAIL",
    "MAIN_LANGUAGE",
    "NHS_NUMBER_STATUS",
    "DATE_OF_DEATH",
    "REGISTERED_DATE",
    "SENSITIVE",
    "DISSENT",
    "LAST_MODIFIED",
];

/// Journal extract columns, in the order the simulator writes them.
pub const JOURNAL_COLUMNS: [&str; 38] = [
    "PID",
    "ID",
    "DATE",
    "CODE",
    "SNOMED_CODE",
    "DMD_CODE",
    "RUBRIC",
    "VALUE1",
    "VALUE2",
    "END_DATE",
    "SEVERITY",
    "TIME",
    "TYPE",
    "STATUS",
    "UNITS",
    "CATEGORY",
    "AUTHOR",
    "CONSULTATION_ID",
    "CONFIDENTIAL",
    "DOSAGE",
    "QUANTITY",
    "QUANTITY_UNITS",
    "PRESCRIPTION_TYPE",
    "BATCH",
    "DOSE_NO",
    "REACTION_CODE",
    "REACTION_SNOMED",
    "REACTION_RUBRIC",
    "EXT_SYSTEM",
    "EXT_ID",
    "INTERPRETATION",
    "INTERPRETATION_TERM",
    "INTERPRETATION1",
    "INTERPRETATION1_TERM",
    "INTERPRETATION2",
    "INTERPRETATION2_TERM",
    "BODY_SITE",
    "BODY_SITE_RUBRIC",
];

/// Staff extract columns.
pub const STAFF_COLUMNS: [&str; 8] = [
    "STAFF_ID",
    "TITLE",
    "FORENAME",
    "SURNAME",
    "SEX",
    "ROLE",
    "SDS_USER_ID",
    "GMC_NUMBER",
];

/// Practice extract columns.
pub const PRACTICE_COLUMNS: [&str; 10] = [
    "ODS_CODE",
    "PRACTICE_ID",
    "NAME",
    "ADDRESS1",
    "ADDRESS2",
    "ADDRESS3",
    "TOWN",
    "COUNTY",
    "POSTCODE",
    "PHONE",
];

/// Read v2 code of the one-row blood pressure reading (systolic in VALUE1, diastolic in VALUE2).
pub const BP_READ_CODE: &str = "246..";
const BP_SNOMED: &str = "75367002";
const BP_RUBRIC: &str = "O/E - blood pressure reading";

/// Request header carrying a journal write's idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "x-vision-idempotency-key";
/// Columns a journal write may carry (`RUBRIC` and `VALUE2` may be left out; `RUBRIC`
/// is not stored: Vision shows its own term for the code).
pub const WRITE_COLUMNS: [&str; 8] = [
    "TYPE", "DATE", "TIME", "CODE", "RUBRIC", "VALUE1", "VALUE2", "UNITS",
];
/// Columns a journal write may add: the supplier's identifier of the observation
/// (its identifier space and value), kept with the rows.
pub const WRITE_IDENTIFIER_COLUMNS: [&str; 2] = ["EXT_SYSTEM", "EXT_ID"];
/// Columns a journal write may add for what a reading carries beyond its value: its
/// SNOMED CT code (with `CODE` empty, for concepts without a Read v2 code), the
/// clinician who took it (`STAFF_ID`), the interpretation of the row (a BP row: the
/// panel's) and of `VALUE1` and `VALUE2` (v3 ObservationInterpretation code and term),
/// and the body site (SNOMED CT id and rubric).
pub const WRITE_DETAIL_COLUMNS: [&str; 10] = [
    "SNOMED_CODE",
    "AUTHOR",
    "INTERPRETATION",
    "INTERPRETATION_TERM",
    "INTERPRETATION1",
    "INTERPRETATION1_TERM",
    "INTERPRETATION2",
    "INTERPRETATION2_TERM",
    "BODY_SITE",
    "BODY_SITE_RUBRIC",
];
/// Most rows one journal write carries.
pub const MAX_WRITE_ROWS: usize = 16;
/// Columns of a contact update (all required).
pub const CONTACT_COLUMNS: [&str; 11] = [
    "HOME_PHONE",
    "MOBILE_PHONE",
    "EMAIL",
    "ADDRESS1",
    "ADDRESS2",
    "ADDRESS3",
    "TOWN",
    "COUNTY",
    "POSTCODE",
    "MAIN_LANGUAGE",
    "LAST_MODIFIED",
];
/// Columns of the answer to a contact update.
pub const CONTACT_ANSWER_COLUMNS: [&str; 3] = ["PID", "NHS_NUMBER", "LAST_MODIFIED"];
/// Longest contact field accepted, in characters.
pub const MAX_FIELD_CHARS: usize = 255;

/// Starts the Vision simulator on `listener` (bind it to `127.0.0.1:0` in tests).
pub async fn start_vision(store: SimStore, listener: TcpListener) -> std::io::Result<SimHandle> {
    server::serve(Arc::new(Vision { store }), listener)
}

struct Vision {
    store: SimStore,
}

fn not_record(reply: Reply) -> Routed {
    Routed {
        reply,
        record: false,
    }
}

impl Simulator for Vision {
    fn name(&self) -> &'static str {
        "vision"
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
        let get = method == Method::GET;
        let routed = match segments.as_slice() {
            ["", "vision", "health"] if get => not_record(health()),
            ["", "vision", "practices", ods] if get => not_record(self.practice(ods)),
            ["", "vision", "practices", ods, "staff"] if get => not_record(self.staff(ods)),
            ["", "vision", "practices", ods, "patients", nhs] if get => Routed {
                reply: self.patient(ods, nhs),
                record: true,
            },
            ["", "vision", "practices", ods, "slots"] if get => Routed {
                reply: self.slots(ods, query),
                record: true,
            },
            ["", "vision", "practices", ods, "appointments", id] if get => Routed {
                reply: self.appointment(ods, id),
                record: true,
            },
            [
                "",
                "vision",
                "practices",
                ods,
                "patients",
                nhs,
                "appointments",
            ] if get => Routed {
                reply: self.patient_appointments(ods, nhs, query),
                record: true,
            },
            ["", "vision", "practices", ods, "patients", nhs, "documents"] if get => Routed {
                reply: self.documents(ods, nhs),
                record: true,
            },
            ["", "vision", "practices", ods, "content", id] if get => {
                let (reply, headers) = self.content(ods, id);
                return (
                    Routed {
                        reply,
                        record: true,
                    },
                    headers,
                );
            }
            ["", "vision", "practices", ods, "changes"] if get => {
                let (reply, headers) = self.changes(ods, query);
                return (
                    Routed {
                        reply,
                        record: true,
                    },
                    headers,
                );
            }
            ["", "vision", "practices", ods, "patients", nhs, "journal"] if get => {
                let continuation = query
                    .unwrap_or_default()
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("continuation="));
                let (reply, next) = self.journal(ods, nhs, continuation);
                let headers = next
                    .map(|t| vec![(CONTINUATION_HEADER, t)])
                    .unwrap_or_default();
                return (
                    Routed {
                        reply,
                        record: true,
                    },
                    headers,
                );
            }
            ["", "vision", ..] if !get => not_record(error(
                405,
                "METHOD_NOT_ALLOWED",
                "Only GET, and the journal POST, contact PUT, document and appointment book writes, are supported",
            )),
            _ => not_record(error(404, "NOT_FOUND", &format!("No endpoint at {path}"))),
        };
        (routed, Vec::new())
    }

    fn error_reply(&self, status: u16) -> Reply {
        let code = match status {
            400 => "INVALID_NHS_NUMBER",
            404 => "PATIENT_NOT_FOUND",
            409 => "RECORD_MODIFIED",
            413 => "BODY_TOO_LARGE",
            422 => "INVALID_VALUE",
            503 => "SERVICE_UNAVAILABLE",
            _ => "INTERNAL_ERROR",
        };
        error(status, code, "Injected fault")
    }

    fn garbage(&self) -> Vec<u8> {
        // What a misconfigured proxy in front of a practice server answers with a 200.
        b"<html><head><title>Service</title></head><body>Please log in</body></html>".to_vec()
    }

    fn mis_encode(&self, body: &[u8]) -> Vec<u8> {
        // 0xE9 is "é" in Windows-1252, the classic Vision extract encoding slip: invalid
        // UTF-8, placed inside the first data row's third field.
        let Some(row) = find(body, b"\r\n").map(|i| i + 2) else {
            return [body, b"\xE9"].concat();
        };
        let mut at = row;
        for _ in 0..2 {
            match body[at..].iter().position(|b| *b == b'|') {
                Some(i) => at += i + 1,
                None => return [body, b"\xE9"].concat(),
            }
        }
        [&body[..at], b"\xE9", &body[at..]].concat()
    }

    fn drop_nhs_number(&self, body: &[u8]) -> Vec<u8> {
        // The patient extract carries the NHS number in its second column, the
        // appointment and change extracts in their third: blanked in the first data row.
        let skip = if body.starts_with(b"PID|NHS_NUMBER|") {
            1
        } else if body.starts_with(b"APPT_ID|SEQ|NHS_NUMBER|")
            || body.starts_with(b"SEQ|CHANGED|NHS_NUMBER|")
        {
            2
        } else {
            return body.to_vec();
        };
        let Some(row) = find(body, b"\r\n").map(|i| i + 2) else {
            return body.to_vec();
        };
        let mut start = row;
        for _ in 0..skip {
            match body[start..].iter().position(|b| *b == b'|') {
                Some(i) => start += i + 1,
                None => return body.to_vec(),
            }
        }
        let end = body[start..]
            .iter()
            .position(|b| *b == b'|')
            .map_or(body.len(), |i| start + i);
        [&body[..start], &body[end..]].concat()
    }

    fn max_write_body(&self, method: &Method, path: &str) -> usize {
        let upload = method == Method::POST
            && path.starts_with("/vision/practices/")
            && path.trim_end_matches('/').ends_with("/content");
        if upload {
            documents::UPLOAD_BODY_LIMIT
        } else {
            server::MAX_WRITE_BODY
        }
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
            ["", "vision", "practices", ods, "patients", nhs, "journal"]
                if method == Method::POST =>
            {
                let key = headers
                    .get(IDEMPOTENCY_HEADER)
                    .map(|v| v.to_str().unwrap_or_default());
                self.record(ods, nhs, key, body)
            }
            ["", "vision", "practices", ods, "patients", nhs, "contact"]
                if method == Method::PUT =>
            {
                self.update_contact(ods, nhs, body)
            }
            ["", "vision", "practices", ods, "appointments"] if method == Method::POST => {
                self.book(ods, body)
            }
            ["", "vision", "practices", ods, "patients", nhs, "content"]
                if method == Method::POST =>
            {
                let content_type = headers
                    .get(hyper::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok());
                self.upload(ods, nhs, content_type, body)
            }
            ["", "vision", "practices", ods, "patients", nhs, "documents"]
                if method == Method::POST =>
            {
                self.file(ods, nhs, body)
            }
            ["", "vision", "practices", ods, "appointments", id] if method == Method::PUT => {
                self.change(ods, id, false, body)
            }
            ["", "vision", "practices", ods, "appointments", id, "cancel"]
                if method == Method::POST =>
            {
                self.change(ods, id, true, body)
            }
            _ => return None,
        };
        Some(Routed {
            reply,
            record: true,
        })
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Vision {
    fn vision_practice(&self, ods: &str) -> Result<Practice, Reply> {
        match self.store.practice(ods) {
            Some(p) if p.system == SystemKind::Vision => Ok(p),
            _ => Err(error(
                404,
                "PRACTICE_NOT_FOUND",
                &format!("No Vision practice with ODS code {ods}"),
            )),
        }
    }

    fn vision_patient(&self, ods: &str, nhs: &str) -> Result<(Practice, SimPatient), Reply> {
        self.vision_practice(ods)?;
        if !crate::nhs::is_valid(nhs) {
            return Err(error(
                400,
                "INVALID_NHS_NUMBER",
                &format!("{nhs} is not a valid NHS number"),
            ));
        }
        self.store.patient(ods, nhs).ok_or_else(|| {
            error(
                404,
                "PATIENT_NOT_FOUND",
                &format!("No patient with that NHS number is registered at {ods}"),
            )
        })
    }

    fn practice(&self, ods: &str) -> Reply {
        match self.vision_practice(ods) {
            Ok(p) => ok(render_practice(&p)),
            Err(e) => e,
        }
    }

    fn staff(&self, ods: &str) -> Reply {
        match self.vision_practice(ods) {
            Ok(p) => ok(render_staff(&p)),
            Err(e) => e,
        }
    }

    fn patient(&self, ods: &str, nhs: &str) -> Reply {
        match self.vision_patient(ods, nhs) {
            Ok((_, p)) => ok(render_patient(&p)),
            Err(e) => e,
        }
    }

    fn journal(&self, ods: &str, nhs: &str, continuation: Option<&str>) -> (Reply, Option<String>) {
        let p = match self.vision_patient(ods, nhs) {
            Ok((_, p)) => p,
            Err(e) => return (e, None),
        };
        let offset = match continuation {
            None => 0,
            Some(token) => match parse_token(nhs, token) {
                Some(offset) => offset,
                None => {
                    return (
                        error(
                            400,
                            "INVALID_CONTINUATION",
                            "The continuation token is not one this server issued for this patient",
                        ),
                        None,
                    );
                }
            },
        };
        let rows = journal_rows(&p);
        if offset > rows.len() {
            return (
                error(
                    400,
                    "INVALID_CONTINUATION",
                    "The continuation token is past the end of the journal",
                ),
                None,
            );
        }
        let end = (offset + PAGE_ROWS).min(rows.len());
        let next = (end < rows.len()).then(|| token(nhs, end));
        let mut w = Writer::new(&JOURNAL_COLUMNS);
        for r in &rows[offset..end] {
            w.row(r);
        }
        (ok(w.finish()), next)
    }
}

impl Vision {
    /// The practice, NHS number and patient checks every write starts with (no copy of
    /// the record is made).
    fn writable_patient(&self, ods: &str, nhs: &str) -> Result<(), Reply> {
        self.vision_practice(ods)?;
        if !crate::nhs::is_valid(nhs) {
            return Err(error(
                400,
                "INVALID_NHS_NUMBER",
                &format!("{nhs} is not a valid NHS number"),
            ));
        }
        if !self.store.read(|p| p.patient(ods, nhs).is_some()) {
            return Err(error(
                404,
                "PATIENT_NOT_FOUND",
                &format!("No patient with that NHS number is registered at {ods}"),
            ));
        }
        Ok(())
    }

    /// `POST …/journal`: records the rows of a write extract under the request's
    /// idempotency key; answers the journal rows holding them (201, or 200 when the key
    /// had been seen and nothing new was recorded).
    fn record(&self, ods: &str, nhs: &str, key: Option<&str>, body: &[u8]) -> Reply {
        if let Err(e) = self.writable_patient(ods, nhs) {
            return e;
        }
        let Some(key) = key.filter(|k| valid_key(k)) else {
            return error(
                400,
                "INVALID_IDEMPOTENCY_KEY",
                "X-Vision-Idempotency-Key must be 1 to 64 letters, digits or hyphens",
            );
        };
        let sent = match readings(body) {
            Ok(r) => r,
            Err(e) => return e,
        };
        // AUTHOR names a member of the practice's staff (its STAFF_ID, in any case).
        let author = match &sent.author {
            None => None,
            Some(a) => match self
                .store
                .practice(ods)
                .and_then(|p| p.clinician(a).map(|c| c.id.clone()))
            {
                Some(id) => Some(id),
                None => {
                    return error(
                        422,
                        "UNKNOWN_STAFF",
                        &format!("AUTHOR '{a}' is not a STAFF_ID of the practice"),
                    );
                }
            },
        };
        let write = ReadingsWrite {
            key,
            date: sent.when,
            readings: &sent.readings,
            external_id: sent.external_id.as_ref(),
            details: &sent.details,
            author: author.as_deref(),
        };
        let recorded = match self
            .store
            .record_readings(SystemKind::Vision, ods, nhs, write)
        {
            Ok(r) => r,
            Err(e) => return write_error(&e),
        };
        // Written entries never change, so their rows are the same whenever they are read.
        let rows = self.store.read(|pop| {
            pop.patient(ods, nhs)
                .map(|p| {
                    journal_rows(p)
                        .into_iter()
                        .filter(|r| recorded.ids.contains(&r[ID]))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        });
        let mut w = Writer::new(&JOURNAL_COLUMNS);
        for r in &rows {
            w.row(r);
        }
        Reply {
            status: if recorded.created { 201 } else { 200 },
            ..ok(w.finish())
        }
    }

    /// `PUT …/contact`: replaces the contact details if the record is still at the
    /// row's `LAST_MODIFIED`; answers the new `LAST_MODIFIED`.
    fn update_contact(&self, ods: &str, nhs: &str, body: &[u8]) -> Reply {
        if let Err(e) = self.writable_patient(ods, nhs) {
            return e;
        }
        let (expected, update) = match contact(body) {
            Ok(c) => c,
            Err(e) => return e,
        };
        match self
            .store
            .update_contact(SystemKind::Vision, ods, nhs, expected, update)
        {
            Ok(now) => {
                let pid = self
                    .store
                    .read(|pop| pop.patient(ods, nhs).map(|p| p.id.clone()))
                    .unwrap_or_default();
                let mut w = Writer::new(&CONTACT_ANSWER_COLUMNS);
                w.row(&[pid, nhs.to_owned(), timestamp(now)]);
                ok(w.finish())
            }
            Err(e) => write_error(&e),
        }
    }
}

/// A store refusal as Vision's error line.
fn write_error(e: &WriteError) -> Reply {
    match e {
        WriteError::PracticeNotFound(ods) => error(
            404,
            "PRACTICE_NOT_FOUND",
            &format!("No Vision practice with ODS code {ods}"),
        ),
        WriteError::PatientNotFound(ods) => error(
            404,
            "PATIENT_NOT_FOUND",
            &format!("No patient with that NHS number is registered at {ods}"),
        ),
        WriteError::Conflict(now) => error(
            409,
            "RECORD_MODIFIED",
            &format!(
                "The record was modified since the LAST_MODIFIED given; it is now {}",
                timestamp(*now)
            ),
        ),
        WriteError::Invalid(why) => error(422, "INVALID_VALUE", why),
    }
}

fn valid_key(key: &str) -> bool {
    (1..=64).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn bad_extract(why: impl std::fmt::Display) -> Reply {
    error(400, "INVALID_EXTRACT", &why.to_string())
}

/// What a journal write extract carries: when, the readings, the supplier's identifier,
/// the whole reading's details and the clinician who took it.
struct Readings {
    when: SimDate,
    readings: Vec<NewReading>,
    external_id: Option<ExternalId>,
    details: Qualifiers,
    author: Option<String>,
}

/// v3 ObservationInterpretation: the code system of Vision's interpretation columns.
pub const INTERPRETATION_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
const SNOMED_SYSTEM: &str = "http://snomed.info/sct";

/// A code column and its term column of row `n` (`None` when the code is empty): the
/// code 1 to 20 characters without spaces or control characters, the term at most 255.
fn sent_code(
    row: &[String],
    n: usize,
    (code, term): (Option<usize>, Option<usize>),
    (name, system): (&str, &str),
) -> Result<Option<Code>, Reply> {
    let field = |c: Option<usize>| c.map_or("", |c| row[c].as_str());
    let (value, display) = (field(code), field(term));
    if value.is_empty() {
        if !display.is_empty() {
            return Err(error(
                422,
                "INVALID_FIELD",
                &format!("row {n}: {name}'s term without a {name} code"),
            ));
        }
        return Ok(None);
    }
    let code_ok =
        value.chars().count() <= 20 && !value.chars().any(|c| c.is_control() || c.is_whitespace());
    let snomed_ok = system != SNOMED_SYSTEM
        || ((6..=18).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit()));
    let term_ok =
        display.chars().count() <= MAX_FIELD_CHARS && !display.chars().any(char::is_control);
    if !(code_ok && snomed_ok && term_ok) {
        return Err(error(
            422,
            "INVALID_FIELD",
            &format!("row {n}: {name} '{value}' or its term is not one Vision holds"),
        ));
    }
    Ok(Some(Code {
        system: system.to_owned(),
        code: value.to_owned(),
        display: Some(display.to_owned()).filter(|d| !d.is_empty()),
    }))
}

/// Reads a journal write extract: one observation's rows, all taken at one time (a
/// `DATE` with an empty `TIME`: the date alone).
fn readings(body: &[u8]) -> Result<Readings, Reply> {
    let sent = Sent::parse(body).map_err(bad_extract)?;
    let mut allowed = WRITE_COLUMNS.to_vec();
    allowed.extend(WRITE_IDENTIFIER_COLUMNS);
    allowed.extend(WRITE_DETAIL_COLUMNS);
    sent.only(&allowed)?;
    let [kind, day, at, code, value1, units] =
        ["TYPE", "DATE", "TIME", "CODE", "VALUE1", "UNITS"].map(|c| sent.column(c));
    let (kind, day, at, code, value1, units) = (kind?, day?, at?, code?, value1?, units?);
    let optional = |c: &str| sent.column(c).ok();
    let value2 = optional("VALUE2");
    let (ext_system, ext_id) = (optional("EXT_SYSTEM"), optional("EXT_ID"));
    let snomed = optional("SNOMED_CODE");
    let author_col = optional("AUTHOR");
    let interpretation = (optional("INTERPRETATION"), optional("INTERPRETATION_TERM"));
    let interpretation1 = (
        optional("INTERPRETATION1"),
        optional("INTERPRETATION1_TERM"),
    );
    let interpretation2 = (
        optional("INTERPRETATION2"),
        optional("INTERPRETATION2_TERM"),
    );
    let body_site = (optional("BODY_SITE"), optional("BODY_SITE_RUBRIC"));
    let mut external_id: Option<ExternalId> = None;
    let mut details = Qualifiers::default();
    let mut author: Option<String> = None;
    if sent.rows.is_empty() || sent.rows.len() > MAX_WRITE_ROWS {
        return Err(bad_extract(format!(
            "a write carries 1 to {MAX_WRITE_ROWS} rows, not {}",
            sent.rows.len()
        )));
    }
    let part = |key: &str| {
        crate::concepts::get(key).ok_or_else(|| {
            error(
                500,
                "INTERNAL_ERROR",
                "The blood pressure concepts are missing",
            )
        })
    };
    let mut when: Option<SimDate> = None;
    let mut readings = Vec::new();
    for (i, row) in sent.rows.iter().enumerate() {
        let n = i + 2;
        if row[kind] != "OBSERVATION" {
            return Err(error(
                422,
                "INVALID_VALUE",
                &format!("row {n}: only OBSERVATION rows can be written"),
            ));
        }
        let taken = if row[at].is_empty() {
            parse_day(&row[day])
        } else {
            parse_when(&row[day], &row[at])
        };
        let taken = taken.ok_or_else(|| {
            bad_extract(format!(
                "row {n}: '{}' '{}' is not a YYYYMMDD DATE with an HHMM or HHMMSS TIME (or none)",
                row[day], row[at]
            ))
        })?;
        if when.is_some_and(|w| w != taken) {
            return Err(error(
                422,
                "INVALID_VALUE",
                &format!("row {n}: the rows of one write are taken at one DATE and TIME"),
            ));
        }
        when = Some(taken);
        // The supplier's identifier, the clinician and the body site: the same on every
        // row, or none.
        let field = |c: Option<usize>| c.map_or("", |c| row[c].as_str());
        let ext = match (field(ext_system), field(ext_id)) {
            ("", "") => None,
            (system, value) => Some(ExternalId::new(system, value).map_err(|m| {
                error(
                    422,
                    "INVALID_FIELD",
                    &format!("row {n}: EXT_SYSTEM/EXT_ID: {m}"),
                )
            })?),
        };
        let staff = Some(field(author_col).to_owned()).filter(|a| !a.is_empty());
        let site = sent_code(row, n, body_site, ("BODY_SITE", SNOMED_SYSTEM))?;
        if i > 0 && (ext != external_id || staff != author || site != details.body_site) {
            return Err(error(
                422,
                "INVALID_FIELD",
                &format!(
                    "row {n}: the rows of one write carry one EXT_SYSTEM and EXT_ID, AUTHOR and BODY_SITE"
                ),
            ));
        }
        external_id = ext;
        author = staff;
        details.body_site = site;
        let own = sent_code(
            row,
            n,
            interpretation1,
            ("INTERPRETATION1", INTERPRETATION_SYSTEM),
        )?;
        let second_own = sent_code(
            row,
            n,
            interpretation2,
            ("INTERPRETATION2", INTERPRETATION_SYSTEM),
        )?;
        let panel = sent_code(
            row,
            n,
            interpretation,
            ("INTERPRETATION", INTERPRETATION_SYSTEM),
        )?;
        let number = |c: usize| {
            row[c]
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    bad_extract(format!(
                        "row {n}: {} '{}' is not a number",
                        sent.header[c], row[c]
                    ))
                })
        };
        let first = number(value1)?;
        let second = match value2 {
            Some(c) if !row[c].is_empty() => Some(number(c)?),
            _ => None,
        };
        let read = row[code].as_str();
        let sct = field(snomed);
        let unit_error = |term: &str, want: &str| {
            error(
                422,
                "INVALID_UNITS",
                &format!(
                    "row {n}: {term} is recorded in {want}, not '{}'",
                    row[units]
                ),
            )
        };
        let is_bp = read == BP_READ_CODE || (read.is_empty() && sct == BP_SNOMED);
        if is_bp {
            let Some(diastolic) = second else {
                return Err(error(
                    422,
                    "INVALID_VALUE",
                    &format!(
                        "row {n}: a blood pressure (246..) row needs the diastolic reading in VALUE2"
                    ),
                ));
            };
            let (sys, dia) = (part("systolic-bp")?, part("diastolic-bp")?);
            if Some(row[units].as_str()) != sys.units {
                return Err(unit_error("blood pressure", sys.units.unwrap_or_default()));
            }
            if panel.is_some() && details.panel_interpretation.is_some() {
                return Err(error(
                    422,
                    "INVALID_FIELD",
                    &format!("row {n}: one write holds one panel INTERPRETATION"),
                ));
            }
            if panel.is_some() {
                details.panel_interpretation = panel;
            }
            readings.push(NewReading {
                concept: sys,
                value: first,
                interpretation: own,
            });
            readings.push(NewReading {
                concept: dia,
                value: diastolic,
                interpretation: second_own,
            });
            continue;
        }
        let concept = if read.is_empty() {
            crate::concepts::measurement_by_snomed(sct).filter(|c| c.units.is_some())
        } else {
            crate::concepts::measurement_by_read2(read)
        };
        let Some(concept) = concept else {
            let what = if read.is_empty() {
                format!("SNOMED_CODE '{sct}' is not a SNOMED CT concept Vision records a value for")
            } else {
                format!("'{read}' is not a Read v2 code Vision records a value for")
            };
            return Err(error(422, "UNKNOWN_CODE", &format!("row {n}: {what}")));
        };
        if second.is_some() || second_own.is_some() || panel.is_some() {
            return Err(error(
                422,
                "INVALID_VALUE",
                &format!(
                    "row {n}: VALUE2, INTERPRETATION2 and INTERPRETATION are only used by blood pressure (246..) rows"
                ),
            ));
        }
        if Some(row[units].as_str()) != concept.units {
            return Err(unit_error(concept.term, concept.units.unwrap_or_default()));
        }
        readings.push(NewReading {
            concept,
            value: first,
            interpretation: own,
        });
    }
    let when = when.ok_or_else(|| bad_extract("no rows"))?;
    Ok(Readings {
        when,
        readings,
        external_id,
        details,
        author,
    })
}

/// Reads a contact update extract: the new details and the `LAST_MODIFIED` they were
/// made against.
fn contact(body: &[u8]) -> Result<(SimDate, ContactUpdate), Reply> {
    let sent = Sent::parse(body).map_err(bad_extract)?;
    sent.only(&CONTACT_COLUMNS)?;
    for name in CONTACT_COLUMNS {
        sent.column(name)?;
    }
    let [row] = sent.rows.as_slice() else {
        return Err(bad_extract(format!(
            "a contact update is exactly 1 row, not {}",
            sent.rows.len()
        )));
    };
    let field = |name: &str| -> Result<String, Reply> {
        let v = row[sent.column(name)?].clone();
        if v.chars().count() > MAX_FIELD_CHARS || v.chars().any(char::is_control) {
            return Err(error(
                422,
                "INVALID_FIELD",
                &format!(
                    "{name} must be at most {MAX_FIELD_CHARS} characters without control characters"
                ),
            ));
        }
        Ok(v)
    };
    let opt = |name: &str| field(name).map(|v| Some(v).filter(|v| !v.is_empty()));
    let stamp = field("LAST_MODIFIED")?;
    let expected = parse_timestamp(&stamp)
        .ok_or_else(|| bad_extract(format!("LAST_MODIFIED '{stamp}' is not YYYYMMDDHHMMSS")))?;
    let language = match opt("MAIN_LANGUAGE")? {
        None => None,
        Some(code)
            if (2..=8).contains(&code.len())
                && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            Some(code.to_ascii_lowercase())
        }
        Some(code) => {
            return Err(error(
                422,
                "INVALID_FIELD",
                &format!("MAIN_LANGUAGE '{code}' is not a language code"),
            ));
        }
    };
    let update = ContactUpdate {
        home_phone: opt("HOME_PHONE")?,
        mobile: opt("MOBILE_PHONE")?,
        email: opt("EMAIL")?,
        address: Address {
            house: field("ADDRESS1")?,
            street: field("ADDRESS2")?,
            village: field("ADDRESS3")?,
            town: field("TOWN")?,
            county: field("COUNTY")?,
            postcode: field("POSTCODE")?,
        },
        language,
    };
    Ok((expected, update))
}

fn digits(s: &str) -> Option<u32> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// A full `YYYYMMDD` date.
fn parse_day(s: &str) -> Option<SimDate> {
    if s.len() != 8 {
        return None;
    }
    let y = i32::try_from(digits(s.get(0..4)?)?).ok()?;
    let m = u8::try_from(digits(s.get(4..6)?)?).ok()?;
    let d = u8::try_from(digits(s.get(6..8)?)?).ok()?;
    let ok = y >= 1 && (1..=12).contains(&m) && d >= 1 && d <= crate::date::days_in_month(y, m);
    ok.then(|| SimDate::ymd(y, m, d))
}

/// `HHMM` or `HHMMSS`.
fn parse_time(s: &str) -> Option<(u8, u8, u8)> {
    if s.len() != 4 && s.len() != 6 {
        return None;
    }
    let part = |r: std::ops::Range<usize>| u8::try_from(digits(s.get(r)?)?).ok();
    let (h, m) = (part(0..2)?, part(2..4)?);
    let sec = if s.len() == 6 { part(4..6)? } else { 0 };
    (h < 24 && m < 60 && sec < 60).then_some((h, m, sec))
}

fn parse_when(day: &str, time: &str) -> Option<SimDate> {
    let (h, m, s) = parse_time(time)?;
    Some(parse_day(day)?.at(h, m, s))
}

/// `YYYYMMDDHHMMSS`.
fn parse_timestamp(s: &str) -> Option<SimDate> {
    if s.len() != 14 {
        return None;
    }
    let (h, m, sec) = parse_time(s.get(8..14)?)?;
    Some(parse_day(s.get(0..8)?)?.at(h, m, sec))
}

/// A delimited body a client sent, read as strictly as Vision's readers read extracts:
/// a header, rows as wide as the header, an `EOF|{rows}` trailer, CRLF after every row,
/// quoting as [`quote_into`] writes it. Fields are trimmed.
struct Sent {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Sent {
    fn parse(body: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(body).map_err(|e| {
            format!(
                "the body is not UTF-8 (first bad byte at offset {})",
                e.valid_up_to()
            )
        })?;
        let mut records = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let (fields, after) =
                record(rest).map_err(|why| format!("row {}: {why}", records.len() + 1))?;
            records.push(fields);
            rest = after;
        }
        let mut records = records.into_iter();
        let header = records.next().ok_or("the body is empty")?;
        if header.iter().any(String::is_empty) {
            return Err("the header has an empty column name".into());
        }
        for (i, h) in header.iter().enumerate() {
            if header[..i].contains(h) {
                return Err(format!("the header names {h} twice"));
            }
        }
        let mut rows: Vec<Vec<String>> = records.collect();
        let trailer = rows.pop().ok_or("no EOF trailer")?;
        if trailer.len() != 2 || trailer[0] != "EOF" || trailer[1] != rows.len().to_string() {
            return Err(format!(
                "the last row must be the trailer EOF|{}",
                rows.len()
            ));
        }
        for (i, r) in rows.iter().enumerate() {
            if r.len() != header.len() {
                return Err(format!(
                    "row {} has {} fields, the header has {}",
                    i + 2,
                    r.len(),
                    header.len()
                ));
            }
        }
        Ok(Self { header, rows })
    }

    fn column(&self, name: &str) -> Result<usize, Reply> {
        self.header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| bad_extract(format!("the header has no {name} column")))
    }

    /// Refuses columns a write does not take, so nothing sent is silently dropped.
    fn only(&self, allowed: &[&str]) -> Result<(), Reply> {
        match self.header.iter().find(|h| !allowed.contains(&h.as_str())) {
            Some(h) => Err(bad_extract(format!(
                "{h} is not a column this write takes ({})",
                allowed.join(", ")
            ))),
            None => Ok(()),
        }
    }
}

/// One row from the start of `text`: its (trimmed) fields and the text after its CRLF.
fn record(text: &str) -> Result<(Vec<String>, &str), &'static str> {
    let b = text.as_bytes();
    let mut fields = Vec::new();
    let mut i = 0;
    loop {
        let value = if b.get(i) == Some(&b'"') {
            let mut v = String::new();
            let mut j = i + 1;
            loop {
                let close = text[j..]
                    .find('"')
                    .map(|k| j + k)
                    .ok_or("a quote is never closed")?;
                v.push_str(&text[j..close]);
                if b.get(close + 1) == Some(&b'"') {
                    v.push('"');
                    j = close + 2;
                } else {
                    i = close + 1;
                    break;
                }
            }
            v
        } else {
            let end = text[i..]
                .find(['|', '\r', '\n', '"'])
                .map_or(text.len(), |k| i + k);
            if b.get(end) == Some(&b'"') {
                return Err("a quote inside an unquoted field");
            }
            let v = text[i..end].to_owned();
            i = end;
            v
        };
        fields.push(value.trim().to_owned());
        match (b.get(i), b.get(i + 1)) {
            (Some(b'|'), _) => i += 1,
            (Some(b'\r'), Some(b'\n')) => return Ok((fields, &text[i + 2..])),
            (None, _) => return Err("the row does not end in CRLF"),
            _ => return Err("a bare CR or LF, or text after a closing quote"),
        }
    }
}

/// `{offset hex}-{check hex}`: opaque to clients, checked so a forged or foreign token is refused.
fn token(nhs: &str, offset: usize) -> String {
    format!("{offset:x}-{:08x}", check(nhs, offset))
}

fn parse_token(nhs: &str, token: &str) -> Option<usize> {
    let (offset, sum) = token.split_once('-')?;
    let offset = usize::from_str_radix(offset, 16).ok()?;
    (u32::from_str_radix(sum, 16).ok()? == check(nhs, offset)).then_some(offset)
}

/// FNV-1a over the NHS number and offset.
fn check(nhs: &str, offset: usize) -> u32 {
    format!("{nhs}:{offset}")
        .bytes()
        .fold(0x811c_9dc5u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        })
}

fn ok(body: String) -> Reply {
    Reply {
        status: 200,
        content_type: CONTENT_TYPE,
        body: body.into_bytes(),
    }
}

fn health() -> Reply {
    let mut w = Writer::new(&["STATUS"]);
    w.row(&["OK".to_owned()]);
    ok(w.finish())
}

/// The one-line `ERROR|CODE|message` body (CRLF-terminated).
fn error(status: u16, code: &str, message: &str) -> Reply {
    Reply {
        status,
        content_type: CONTENT_TYPE,
        body: format!(
            "ERROR|{code}|{}\r\n",
            message.replace(['|', '\r', '\n'], " ")
        )
        .into_bytes(),
    }
}

/// Writes a delimited extract: header row, rows, `EOF|{rows}` trailer, CRLF line ends.
struct Writer {
    out: String,
    rows: usize,
}

impl Writer {
    fn new(columns: &[&str]) -> Self {
        let mut out = columns.join("|");
        out.push_str("\r\n");
        Self { out, rows: 0 }
    }

    fn row(&mut self, fields: &[String]) {
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                self.out.push('|');
            }
            quote_into(&mut self.out, f);
        }
        self.out.push_str("\r\n");
        self.rows += 1;
    }

    fn finish(mut self) -> String {
        self.out.push_str(&format!("EOF|{}\r\n", self.rows));
        self.out
    }
}

/// Appends `field`, quoted with `"` (inner quotes doubled) when it holds `|`, `"`, CR or LF.
pub fn quote_into(out: &mut String, field: &str) {
    if field.contains(['|', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

/// `YYYYMMDD`, unknown parts padded with zeros (`19980000`, `19980300`).
pub fn date(d: SimDate) -> String {
    format!(
        "{:04}{:02}{:02}",
        d.year,
        d.month.unwrap_or(0),
        d.day.unwrap_or(0)
    )
}

fn opt_date(d: Option<SimDate>) -> String {
    d.map(date).unwrap_or_default()
}

/// `HHMM` (`HHMMSS` when the seconds are known and not zero, as on entries written
/// through the API), or empty when the date has no time.
fn time(d: SimDate) -> String {
    match d.time {
        None => String::new(),
        Some((h, m, 0)) => format!("{h:02}{m:02}"),
        Some((h, m, s)) => format!("{h:02}{m:02}{s:02}"),
    }
}

/// `YYYYMMDDHHMMSS` (`LAST_MODIFIED`); a date without a time is taken at midnight.
pub fn timestamp(d: SimDate) -> String {
    let (h, m, s) = d.time.unwrap_or((0, 0, 0));
    format!("{}{h:02}{m:02}{s:02}", date(d))
}

/// `MAIN_LANGUAGE`: Vision keeps the ISO 639-1 code in upper case (`EN`, `PL`, `CY`).
fn language(code: Option<&str>) -> String {
    code.map(str::to_ascii_uppercase).unwrap_or_default()
}

/// Vision sex codes: `1` male, `2` female, `0` not known, `9` indeterminate.
pub fn sex(s: Sex) -> &'static str {
    match s {
        Sex::Male => "1",
        Sex::Female => "2",
        Sex::Unknown => "0",
        Sex::Indeterminate => "9",
    }
}

fn yn(b: bool) -> String {
    if b { "Y" } else { "N" }.to_owned()
}

/// Renders a patient's demographics as a patient extract (one data row).
pub fn render_patient(p: &SimPatient) -> String {
    let row = [
        p.id.clone(),
        p.nhs_number.clone(),
        p.family.clone(),
        p.given.first().cloned().unwrap_or_default(),
        date(p.birth_date),
        sex(p.sex).to_owned(),
        p.address.postcode.clone(),
        p.usual_gp.clone(),
        "Y".to_owned(),
        p.title.clone(),
        p.given.get(1..).map(|g| g.join(" ")).unwrap_or_default(),
        p.address.house.clone(),
        p.address.street.clone(),
        p.address.village.clone(),
        p.address.town.clone(),
        p.address.county.clone(),
        p.home_phone.clone().unwrap_or_default(),
        p.mobile.clone().unwrap_or_default(),
        p.email.clone().unwrap_or_default(),
        language(p.language.as_deref()),
        p.nhs_status.clone(),
        opt_date(p.deceased_on),
        date(p.registered_on),
        yn(p.flags.sensitive),
        yn(p.flags.dissent),
        timestamp(p.last_modified),
    ];
    let mut w = Writer::new(&PATIENT_COLUMNS);
    w.row(&row);
    w.finish()
}

/// Renders a practice's staff extract.
pub fn render_staff(practice: &Practice) -> String {
    let mut w = Writer::new(&STAFF_COLUMNS);
    for c in &practice.clinicians {
        w.row(&[
            c.id.clone(),
            c.title.clone(),
            c.given.clone(),
            c.family.clone(),
            sex(c.sex).to_owned(),
            c.role.clone(),
            c.sds_user_id.clone(),
            // Vision keeps the bare 7-digit GMC number.
            c.gmc
                .as_deref()
                .map(|g| g.trim_start_matches('G').to_owned())
                .unwrap_or_default(),
        ]);
    }
    w.finish()
}

/// Renders the practice extract (one data row).
pub fn render_practice(p: &Practice) -> String {
    let mut w = Writer::new(&PRACTICE_COLUMNS);
    w.row(&[
        p.ods.clone(),
        p.guid.clone(),
        p.name.clone(),
        p.address.house.clone(),
        p.address.street.clone(),
        p.address.village.clone(),
        p.address.town.clone(),
        p.address.county.clone(),
        p.address.postcode.clone(),
        p.phone.clone(),
    ]);
    w.finish()
}

/// Renders a whole journal (every page) as one extract; the endpoint pages it.
pub fn render_journal(p: &SimPatient) -> String {
    let mut w = Writer::new(&JOURNAL_COLUMNS);
    for r in journal_rows(p) {
        w.row(&r);
    }
    w.finish()
}

type Row = [String; 38];

// Column positions in JOURNAL_COLUMNS.
const PID: usize = 0;
const ID: usize = 1;
const DATE: usize = 2;
const CODE: usize = 3;
const SNOMED: usize = 4;
const DMD: usize = 5;
const RUBRIC: usize = 6;
const VALUE1: usize = 7;
const VALUE2: usize = 8;
const END_DATE: usize = 9;
const SEVERITY: usize = 10;
const TIME: usize = 11;
const TYPE: usize = 12;
const STATUS: usize = 13;
const UNITS: usize = 14;
const CATEGORY: usize = 15;
const AUTHOR: usize = 16;
const CONSULTATION_ID: usize = 17;
const CONFIDENTIAL: usize = 18;
const DOSAGE: usize = 19;
const QUANTITY: usize = 20;
const QUANTITY_UNITS: usize = 21;
const PRESCRIPTION_TYPE: usize = 22;
const BATCH: usize = 23;
const DOSE_NO: usize = 24;
const REACTION_CODE: usize = 25;
const REACTION_SNOMED: usize = 26;
const REACTION_RUBRIC: usize = 27;
const EXT_SYSTEM: usize = 28;
const EXT_ID: usize = 29;
const INTERPRETATION: usize = 30;
const INTERPRETATION_TERM: usize = 31;
const INTERPRETATION1: usize = 32;
const INTERPRETATION1_TERM: usize = 33;
const INTERPRETATION2: usize = 34;
const INTERPRETATION2_TERM: usize = 35;
const BODY_SITE: usize = 36;
const BODY_SITE_RUBRIC: usize = 37;

/// Fills a code column and its term column.
fn put_code(r: &mut Row, code: Option<&Code>, (at, term): (usize, usize)) {
    if let Some(c) = code {
        r[at] = c.code.clone();
        r[term] = c.display.clone().unwrap_or_default();
    }
}

/// Fills the qualifier columns of a reading's row: its (VALUE1's) interpretation, the
/// panel's, and the body site.
fn qualify(r: &mut Row, q: Option<&Qualifiers>) {
    let Some(q) = q else { return };
    put_code(
        r,
        q.interpretation.as_ref(),
        (INTERPRETATION1, INTERPRETATION1_TERM),
    );
    put_code(
        r,
        q.panel_interpretation.as_ref(),
        (INTERPRETATION, INTERPRETATION_TERM),
    );
    put_code(r, q.body_site.as_ref(), (BODY_SITE, BODY_SITE_RUBRIC));
}

fn base(p: &SimPatient, kind: &str, meta: &EntryMeta) -> Row {
    let mut r: Row = std::array::from_fn(|_| String::new());
    r[PID] = p.id.clone();
    r[ID] = meta.id.clone();
    r[DATE] = date(meta.date);
    r[TIME] = time(meta.date);
    r[TYPE] = kind.to_owned();
    r[AUTHOR] = meta.author.clone();
    r[CONSULTATION_ID] = meta.consultation.clone().unwrap_or_default();
    r[CONFIDENTIAL] = yn(meta.confidential);
    if let Some(ext) = &meta.external_id {
        r[EXT_SYSTEM] = ext.system.clone();
        r[EXT_ID] = ext.value.clone();
    }
    r
}

/// Fills CODE / SNOMED_CODE / DMD_CODE / RUBRIC: drugs by dm+d only (Read v2 drug codes
/// are left blank), otherwise Read v2 when the concept has one, with SNOMED CT beside it.
fn code(r: &mut Row, c: &Concept) {
    if let Some(dmd) = c.dmd {
        r[DMD] = dmd.to_owned();
    } else {
        r[CODE] = c.read2.unwrap_or_default().to_owned();
        r[SNOMED] = c.snomed.to_owned();
    }
    r[RUBRIC] = c.term.to_owned();
}

fn value(v: f64) -> String {
    v.to_string()
}

/// Every journal row of a patient, in a stable order.
pub fn journal_rows(p: &SimPatient) -> Vec<Row> {
    let mut rows = Vec::new();
    for c in &p.consultations {
        let mut r = base(p, "CONSULTATION", &c.meta);
        code(&mut r, c.kind);
        r[AUTHOR] = c.clinician.clone();
        r[VALUE1] = c.duration_minutes.to_string();
        r[UNITS] = "min".to_owned();
        rows.push(r);
    }
    for x in &p.problems {
        let mut r = base(p, "PROBLEM", &x.meta);
        code(&mut r, x.concept);
        r[STATUS] = match x.status {
            ProblemStatus::Active => "ACTIVE",
            ProblemStatus::Past => "PAST",
        }
        .to_owned();
        r[SEVERITY] = match x.significance {
            Significance::Major => "MAJOR",
            Significance::Minor => "MINOR",
        }
        .to_owned();
        r[END_DATE] = opt_date(x.end_date);
        rows.push(r);
    }
    // A systolic reading and its diastolic partner (same time, author, consultation,
    // confidentiality and write) are one Vision BP row, written where the systolic falls.
    let pairs = blood_pressure_pairs(&p.observations);
    for (i, x) in p.observations.iter().enumerate() {
        if pairs.iter().any(|(_, d)| *d == i) {
            continue;
        }
        let pair = pairs.iter().find(|(s, _)| *s == i).map(|(_, d)| *d);
        if let (Some(j), Some(sys)) = (pair, x.value) {
            let dia = p.observations[j].value.unwrap_or_default();
            let mut r = base(p, "OBSERVATION", &x.meta);
            r[CODE] = BP_READ_CODE.to_owned();
            r[SNOMED] = BP_SNOMED.to_owned();
            r[RUBRIC] = BP_RUBRIC.to_owned();
            r[VALUE1] = value(sys);
            r[VALUE2] = value(dia);
            r[UNITS] = "mm[Hg]".to_owned();
            qualify(&mut r, x.qualifiers.as_deref());
            let dia_interpretation = p.observations[j]
                .qualifiers
                .as_deref()
                .and_then(|q| q.interpretation.as_ref());
            put_code(
                &mut r,
                dia_interpretation,
                (INTERPRETATION2, INTERPRETATION2_TERM),
            );
            rows.push(r);
            continue;
        }
        let mut r = base(p, "OBSERVATION", &x.meta);
        code(&mut r, x.concept);
        if let Some(v) = x.value {
            r[VALUE1] = value(v);
            r[UNITS] = x.units.unwrap_or_default().to_owned();
        }
        qualify(&mut r, x.qualifiers.as_deref());
        rows.push(r);
    }
    for x in &p.immunisations {
        let mut r = base(p, "IMMUNISATION", &x.meta);
        code(&mut r, x.concept);
        r[BATCH] = x.batch.clone();
        r[DOSE_NO] = x.dose_sequence.to_string();
        rows.push(r);
    }
    for a in &p.allergies {
        let mut r = base(p, "ALLERGY", &a.meta);
        code(&mut r, a.concept);
        r[CATEGORY] = match a.category {
            AllergyCategory::Drug => "DRUG",
            AllergyCategory::Food => "FOOD",
            AllergyCategory::Environment => "ENVIRONMENT",
        }
        .to_owned();
        r[STATUS] = match a.status {
            AllergyStatus::Active => "ACTIVE",
            AllergyStatus::Resolved => "RESOLVED",
        }
        .to_owned();
        r[END_DATE] = opt_date(a.end_date);
        if let Some(reaction) = a.reaction {
            r[REACTION_CODE] = reaction.read2.unwrap_or_default().to_owned();
            r[REACTION_SNOMED] = reaction.snomed.to_owned();
            r[REACTION_RUBRIC] = reaction.term.to_owned();
        }
        r[SEVERITY] = match a.severity {
            Severity::Mild => "MILD",
            Severity::Moderate => "MODERATE",
            Severity::Severe => "SEVERE",
        }
        .to_owned();
        rows.push(r);
    }
    for m in &p.medications {
        let mut r = base(p, "THERAPY", &m.meta);
        code(&mut r, m.drug);
        r[DOSAGE] = m.dosage.clone();
        r[QUANTITY] = m.quantity.to_string();
        r[QUANTITY_UNITS] = m.quantity_units.clone();
        r[PRESCRIPTION_TYPE] = match m.kind {
            MedicationKind::Acute => "ACUTE",
            MedicationKind::Repeat => "REPEAT",
        }
        .to_owned();
        r[STATUS] = match m.status {
            MedicationStatus::Active => "ACTIVE",
            MedicationStatus::Completed => "COMPLETED",
            MedicationStatus::Cancelled => "CANCELLED",
        }
        .to_owned();
        r[END_DATE] = opt_date(m.end_date);
        rows.push(r);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::date::Precision;

    #[test]
    fn quirky_formats() {
        let d = SimDate::ymd(1998, 3, 2);
        assert_eq!(date(d), "19980302");
        assert_eq!(date(d.truncate(Precision::YM)), "19980300");
        assert_eq!(date(d.truncate(Precision::Y)), "19980000");
        assert_eq!(time(d.at(9, 5, 0)), "0905");
        let mut s = String::new();
        quote_into(&mut s, r#"a|b "c""#);
        assert_eq!(s, r#""a|b ""c""""#);
    }

    #[test]
    fn sent_bodies_are_read_strictly() {
        let ok = Sent::parse(b"A|B\r\n\" x|\"\"y\"\" \"| z \r\nEOF|1\r\n").unwrap();
        assert_eq!(ok.header, ["A", "B"]);
        assert_eq!(ok.rows, [[r#"x|"y""#, "z"]]);
        for bad in [
            &b""[..],
            b"A|B\r\nx|y\r\n",
            b"A|B\r\nx|y\r\nEOF|2\r\n",
            b"A|B\r\nx\r\nEOF|1\r\n",
            b"A|A\r\nx|y\r\nEOF|1\r\n",
            b"A|B\r\nx\"|y\r\nEOF|1\r\n",
            b"A|B\r\n\"x\"z|y\r\nEOF|1\r\n",
            b"A|B\r\n\"x|y\r\nEOF|1\r\n",
            b"A|B\nx|y\nEOF|1\n",
            b"A|B\r\nx|\xE9\r\nEOF|1\r\n",
        ] {
            assert!(
                Sent::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            parse_when("20260714", "083205"),
            Some(SimDate::ymd(2026, 7, 14).at(8, 32, 5))
        );
        assert_eq!(
            parse_when("20260714", "0832"),
            Some(SimDate::ymd(2026, 7, 14).at(8, 32, 0))
        );
        for (d, t) in [
            ("20260230", "0832"),
            ("20260714", "2400"),
            ("2026071", "0832"),
            ("20260714", "08320"),
        ] {
            assert_eq!(parse_when(d, t), None, "{d} {t}");
        }
        let at = SimDate::ymd(2024, 6, 15).at(10, 30, 0);
        assert_eq!(parse_timestamp(&timestamp(at)), Some(at));
        assert_eq!(time(at), "1030");
        assert_eq!(time(at.plus_seconds(5)), "103005");
    }

    fn write_extract(header: &str, rows: &[&str]) -> Vec<u8> {
        let mut out = format!("{header}\r\n");
        for r in rows {
            out.push_str(r);
            out.push_str("\r\n");
        }
        out.push_str(&format!("EOF|{}\r\n", rows.len()));
        out.into_bytes()
    }

    const DETAIL_HEADER: &str = "TYPE|DATE|TIME|CODE|SNOMED_CODE|VALUE1|VALUE2|UNITS|AUTHOR|INTERPRETATION|INTERPRETATION_TERM|INTERPRETATION1|INTERPRETATION1_TERM|INTERPRETATION2|INTERPRETATION2_TERM|BODY_SITE|BODY_SITE_RUBRIC";

    #[test]
    fn writes_carry_interpretations_body_site_author_and_date_alone() {
        let body = write_extract(
            DETAIL_HEADER,
            &[
                "OBSERVATION|20260714||246..||150|95|mm[Hg]|abc|H|High|H|High|N|Normal|368209003|Right upper arm",
            ],
        );
        let r = readings(&body).unwrap();
        assert_eq!(r.when, SimDate::ymd(2026, 7, 14));
        assert_eq!(r.author.as_deref(), Some("abc"));
        let code = |system: &str, code: &str, display: &str| Code {
            system: system.into(),
            code: code.into(),
            display: Some(display.into()),
        };
        assert_eq!(
            r.details.panel_interpretation,
            Some(code(INTERPRETATION_SYSTEM, "H", "High"))
        );
        assert_eq!(
            r.details.body_site,
            Some(code(SNOMED_SYSTEM, "368209003", "Right upper arm"))
        );
        assert_eq!(
            r.readings
                .iter()
                .map(|x| (x.concept.key, x.value, x.interpretation.clone()))
                .collect::<Vec<_>>(),
            [
                (
                    "systolic-bp",
                    150.0,
                    Some(code(INTERPRETATION_SYSTEM, "H", "High"))
                ),
                (
                    "diastolic-bp",
                    95.0,
                    Some(code(INTERPRETATION_SYSTEM, "N", "Normal"))
                ),
            ]
        );
        // A concept without a Read v2 code is written by its SNOMED CT id alone.
        let spo2 = write_extract(
            DETAIL_HEADER,
            &["OBSERVATION|20260714|0930||431314004|97||%||||L|Low||||"],
        );
        let r = readings(&spo2).unwrap();
        assert_eq!(r.readings[0].concept.key, "oxygen-saturation");
        assert_eq!(r.when, SimDate::ymd(2026, 7, 14).at(9, 30, 0));
        for (row, code) in [
            (
                "OBSERVATION|20260714|0930||999999999|97||%|||||||||",
                "UNKNOWN_CODE",
            ),
            (
                "OBSERVATION|20260714|0930||431314004|97||%||||||N|Normal||",
                "INVALID_VALUE",
            ),
            (
                "OBSERVATION|20260714|0930||431314004|97||%||||||||RIGHT ARM|",
                "INVALID_FIELD",
            ),
            (
                "OBSERVATION|20260714|0930||431314004|97||%|||||||||Right arm",
                "INVALID_FIELD",
            ),
            (
                "OBSERVATION|20260714|0930||431314004|97||%|||High||||||",
                "INVALID_FIELD",
            ),
        ] {
            let Err(reply) = readings(&write_extract(DETAIL_HEADER, &[row])) else {
                panic!("{row} was accepted");
            };
            let text = String::from_utf8(reply.body).unwrap();
            assert!(text.starts_with(&format!("ERROR|{code}|")), "{row}: {text}");
        }
    }

    #[test]
    fn written_details_are_served_back_on_the_journal_row() {
        let store = SimStore::new(crate::Population::generate(
            1,
            &crate::PopulationSpec::sandbox(),
        ));
        let v = Vision {
            store: store.clone(),
        };
        let (practice, nhs) = store.read(|pop| {
            let p = pop
                .practices
                .iter()
                .find(|p| p.system == SystemKind::Vision)
                .unwrap()
                .clone();
            let nhs = pop
                .patients
                .iter()
                .find(|x| x.practice == p.ods)
                .unwrap()
                .nhs_number
                .clone();
            (p, nhs)
        });
        let staff = practice.clinicians[0].id.to_ascii_lowercase();
        let row = format!(
            "OBSERVATION|20260714||246..||150|95|mm[Hg]|{staff}|H|High|H|High|N|Normal|368209003|Right upper arm"
        );
        let reply = v.record(
            &practice.ods,
            &nhs,
            Some("k-details"),
            &write_extract(DETAIL_HEADER, &[&row]),
        );
        assert_eq!(
            reply.status,
            201,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let answer = String::from_utf8(reply.body).unwrap();
        assert!(
            answer.contains(&format!(
                "|20260714|246..|75367002||O/E - blood pressure reading|150|95||||OBSERVATION||mm[Hg]||{}||N|"
                , practice.clinicians[0].id
            )),
            "{answer}"
        );
        assert!(
            answer.ends_with("|H|High|H|High|N|Normal|368209003|Right upper arm\r\nEOF|1\r\n"),
            "{answer}"
        );
        let unknown = v.record(
            &practice.ods,
            &nhs,
            Some("k-unknown-staff"),
            &write_extract(DETAIL_HEADER, &[&row.replace(&staff, "nobody")]),
        );
        assert_eq!(unknown.status, 422);
        assert!(
            String::from_utf8(unknown.body)
                .unwrap()
                .starts_with("ERROR|UNKNOWN_STAFF|")
        );
    }

    #[test]
    fn tokens_are_checked() {
        let t = token("9658218865", 500);
        assert_eq!(parse_token("9658218865", &t), Some(500));
        assert_eq!(parse_token("9000000009", &t), None);
        assert_eq!(parse_token("9658218865", "1f4-00000000"), None);
        assert_eq!(parse_token("9658218865", "nonsense"), None);
    }

    #[test]
    fn faults_corrupt_the_right_field() {
        let v = Vision {
            store: SimStore::new(crate::Population::generate(
                1,
                &crate::PopulationSpec::sandbox(),
            )),
        };
        let body = b"PID|NHS_NUMBER|SURNAME\r\nabc|9658218865|Smith\r\nEOF|1\r\n";
        assert_eq!(
            v.drop_nhs_number(body),
            b"PID|NHS_NUMBER|SURNAME\r\nabc||Smith\r\nEOF|1\r\n"
        );
        assert_eq!(
            v.mis_encode(body),
            b"PID|NHS_NUMBER|SURNAME\r\nabc|9658218865|\xE9Smith\r\nEOF|1\r\n"
        );
        let changes = b"SEQ|CHANGED|NHS_NUMBER|CHANGE_TYPE\r\n7|20261207101500|9658218865|REGISTERED\r\nEOF|1\r\n";
        assert_eq!(
            v.drop_nhs_number(changes),
            b"SEQ|CHANGED|NHS_NUMBER|CHANGE_TYPE\r\n7|20261207101500||REGISTERED\r\nEOF|1\r\n"
        );
    }
}
