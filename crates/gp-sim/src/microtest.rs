//! Microtest Evolution simulator: serves exactly `docs/native-formats/microtest.md` (the
//! Evolution v2 JSON API, our design: Microtest publishes no format) for patients of
//! practices whose system is Microtest.

use std::sync::Arc;

use hyper::Method;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

use crate::concepts::{self, Concept};
use crate::date::{Precision, SimDate};
use crate::model::*;
use crate::server::{self, Reply, Routed, SimHandle, Simulator};
use crate::store::{ContactUpdate, NewReading, ReadingsWrite, SimStore, WriteError};

// The appointment book's endpoints, in the same dialect (a child, so it shares the helpers).
#[path = "microtest_book.rs"]
mod book;
pub use book::{MAX_RANGE_DAYS, MAX_SLOTS, SLOT_PAGE_SIZE};
// Documents, likewise.
#[path = "microtest_documents.rs"]
mod documents;
pub use documents::{CONFIDENTIAL_HEADER, DOCUMENT_PAGE_SIZE, NHS_HEADER, SIZE_HEADER};
// The change feed, likewise.
#[path = "microtest_changes.rs"]
mod changes;
pub use changes::{CHANGE_PAGE_SIZE, MAX_CHANGE_PAGE, change_cursor, change_type};

/// Path prefix of every Evolution v2 endpoint.
pub const PREFIX: &str = "/evolution/v2";
/// Most entries in one page of `…/entries?type=…`.
pub const PAGE_SIZE: usize = 200;
/// The entry types `…/entries?type=…` serves.
pub const ENTRY_TYPES: [&str; 6] = [
    "allergy",
    "medication",
    "problem",
    "observation",
    "immunisation",
    "consultation",
];
const JSON: &str = "application/json";
const PROBLEM_JSON: &str = "application/problem+json";

/// Starts the Microtest Evolution simulator on `listener` (bind it to `127.0.0.1:0` in tests).
pub async fn start_microtest(store: SimStore, listener: TcpListener) -> std::io::Result<SimHandle> {
    server::serve(Arc::new(Microtest { store }), listener)
}

struct Microtest {
    store: SimStore,
}

impl Simulator for Microtest {
    fn name(&self) -> &'static str {
        "microtest"
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
        // Content is raw bytes: its patient and confidentiality travel in headers.
        if method == Method::GET
            && let Some(rest) = path.strip_prefix(PREFIX)
            && let ["", "sites", ods, "document-contents", id] = rest
                .trim_end_matches('/')
                .split('/')
                .collect::<Vec<_>>()
                .as_slice()
        {
            let (reply, headers) = self.content(ods, id);
            return (
                Routed {
                    reply,
                    record: true,
                },
                headers,
            );
        }
        (self.answer(method, path, query), Vec::new())
    }

    fn max_write_body(&self, method: &Method, path: &str) -> usize {
        let upload = method == Method::POST
            && path
                .strip_prefix(PREFIX)
                .and_then(|rest| rest.trim_end_matches('/').strip_prefix("/sites/"))
                .and_then(|rest| rest.split_once('/'))
                .is_some_and(|(_, tail)| tail == "document-contents");
        if upload {
            crate::documents::MAX_UPLOAD
        } else {
            server::MAX_WRITE_BODY
        }
    }

    fn error_reply(&self, status: u16) -> Reply {
        let (code, title) = match status {
            400 => ("INVALID_REQUEST", "Bad request"),
            404 => ("PATIENT_NOT_FOUND", "Patient not found"),
            503 => ("SERVICE_UNAVAILABLE", "Service unavailable"),
            409 => ("RECORD_MODIFIED", "Record modified"),
            413 => ("PAYLOAD_TOO_LARGE", "Payload too large"),
            422 => ("UNPROCESSABLE", "Unprocessable entry"),
            _ => ("INTERNAL_ERROR", "Internal error"),
        };
        problem(status, code, title, "Injected fault")
    }

    fn route_write(
        &self,
        method: &Method,
        path: &str,
        headers: &hyper::HeaderMap,
        body: &[u8],
    ) -> Option<Routed> {
        let rest = path.strip_prefix(PREFIX)?;
        let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        let reply = match segments.as_slice() {
            ["", "sites", ods, "patients", id, "entries"] => {
                if method == Method::POST {
                    self.record_entries(ods, id, headers, body)
                } else {
                    method_not_allowed("GET and POST")
                }
            }
            ["", "sites", ods, "patients", id, "contact"] => {
                if method == Method::PUT {
                    self.update_contact(ods, id, headers, body)
                } else {
                    method_not_allowed("PUT")
                }
            }
            ["", "sites", ods, "patients", id, "appointments"] => {
                if method == Method::POST {
                    self.book(ods, id, headers, body)
                } else {
                    method_not_allowed("GET and POST")
                }
            }
            ["", "sites", ods, "appointments", id] => {
                if method == Method::PATCH {
                    self.change(ods, id, false, headers, body)
                } else {
                    method_not_allowed("GET and PATCH")
                }
            }
            ["", "sites", ods, "document-contents"] => {
                if method == Method::POST {
                    self.upload(ods, headers, body)
                } else {
                    method_not_allowed("POST")
                }
            }
            ["", "sites", ods, "documents"] => {
                if method == Method::POST {
                    self.file(ods, headers, body)
                } else {
                    method_not_allowed("GET and POST")
                }
            }
            ["", "sites", ods, "appointments", id, "cancel"] => {
                if method == Method::POST {
                    self.change(ods, id, true, headers, body)
                } else {
                    method_not_allowed("POST")
                }
            }
            _ => return None,
        };
        Some(Routed {
            reply,
            record: true,
        })
    }

    fn garbage(&self) -> Vec<u8> {
        b"\x00\x01<html>this is not JSON at all }{ ][".to_vec()
    }

    fn mis_encode(&self, body: &[u8]) -> Vec<u8> {
        // 0xC3 0x28 is an invalid two-byte UTF-8 sequence, placed inside a string value.
        insert_after(body, b"\"family_name\":\"", b"\xC3\x28")
            .or_else(|| insert_after(body, b"\":\"", b"\xC3\x28"))
            .unwrap_or_else(|| [body, b"\xC3\x28"].concat())
    }

    fn drop_nhs_number(&self, body: &[u8]) -> Vec<u8> {
        match serde_json::from_slice::<Value>(body) {
            Ok(mut v) => {
                remove_key(&mut v, "nhs_number");
                serde_json::to_vec(&v).unwrap_or_else(|_| body.to_vec())
            }
            Err(_) => body.to_vec(),
        }
    }
}

/// The value of `name` in a query string (values are URL-safe: no percent-decoding).
fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn missing_parameter(name: &str) -> Reply {
    problem(
        400,
        "MISSING_PARAMETER",
        "Missing parameter",
        &format!("The query parameter {name} is required"),
    )
}

fn method_not_allowed(allowed: &str) -> Reply {
    problem(
        405,
        "METHOD_NOT_ALLOWED",
        "Method not allowed",
        &format!("This endpoint accepts {allowed} only"),
    )
}

fn not_record(reply: Reply) -> Routed {
    Routed {
        reply,
        record: false,
    }
}

impl Microtest {
    fn answer(&self, method: &Method, path: &str, query: Option<&str>) -> Routed {
        let Some(rest) = path.strip_prefix(PREFIX) else {
            return not_record(not_found(path));
        };
        let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        if method != Method::GET {
            return not_record(problem(
                405,
                "METHOD_NOT_ALLOWED",
                "Method not allowed",
                "Only GET is supported here",
            ));
        }
        let record = |reply| Routed {
            reply,
            record: true,
        };
        let param = |name: &str| query_param(query, name);
        match segments.as_slice() {
            ["", "health"] => not_record(ok(&json!({"status": "ok", "version": "2.14.3"}))),
            ["", "sites", ods, "patients"] => record(match param("nhs_number") {
                Some(nhs) => self.patient_index(ods, nhs),
                None => missing_parameter("nhs_number"),
            }),
            ["", "sites", ods, "patients", id] => record(self.patient(ods, id)),
            ["", "sites", ods, "patients", id, "entries"] => record(match param("type") {
                Some(kind) => self.entries(ods, id, kind, param("cursor")),
                None => missing_parameter("type"),
            }),
            ["", "sites", ods, "clinicians", id] => record(self.clinician(ods, id)),
            ["", "sites", ods, "slots"] => record(self.slots(ods, query)),
            ["", "sites", ods, "patients", id, "appointments"] => {
                record(self.patient_appointments(ods, id, query))
            }
            ["", "sites", ods, "appointments", id] => record(self.appointment(ods, id)),
            ["", "sites", ods, "documents"] => record(self.documents(ods, query)),
            ["", "sites", ods, "changes"] => record(self.changes(ods, query)),
            _ => not_record(not_found(path)),
        }
    }

    fn site(&self, ods: &str) -> Result<Practice, Reply> {
        match self.store.practice(ods) {
            Some(p) if p.system == SystemKind::Microtest => Ok(p),
            _ => Err(problem(
                404,
                "SITE_NOT_FOUND",
                "Site not found",
                &format!("No Evolution site with ODS code {ods}"),
            )),
        }
    }

    fn find_patient(&self, ods: &str, id: &str) -> Result<(Practice, SimPatient), Reply> {
        let site = self.site(ods)?;
        self.store
            .read(|p| {
                p.patients
                    .iter()
                    .find(|x| x.practice == ods && x.id == id)
                    .cloned()
            })
            .map(|patient| (site, patient))
            .ok_or_else(|| {
                problem(
                    404,
                    "PATIENT_NOT_FOUND",
                    "Patient not found",
                    &format!("No patient {id} at site {ods}"),
                )
            })
    }

    /// The NHS number of patient `id` at site `ods` (without copying the record).
    fn patient_nhs(&self, ods: &str, id: &str) -> Result<String, Reply> {
        self.site(ods)?;
        self.store
            .read(|p| {
                p.patients
                    .iter()
                    .find(|x| x.practice == ods && x.id == id)
                    .map(|x| x.nhs_number.clone())
            })
            .ok_or_else(|| {
                problem(
                    404,
                    "PATIENT_NOT_FOUND",
                    "Patient not found",
                    &format!("No patient {id} at site {ods}"),
                )
            })
    }

    fn patient_index(&self, ods: &str, nhs: &str) -> Reply {
        if let Err(reply) = self.site(ods) {
            return reply;
        }
        if !crate::nhs::is_valid(nhs) {
            return problem(
                400,
                "INVALID_NHS_NUMBER",
                "Invalid NHS number",
                &format!("{nhs} is not a valid NHS number"),
            );
        }
        let matches: Vec<Value> = self.store.read(|p| {
            p.patients
                .iter()
                .filter(|x| x.practice == ods && x.nhs_number == nhs)
                .map(summary)
                .collect()
        });
        ok(&json!({ "patients": matches }))
    }

    fn patient(&self, ods: &str, id: &str) -> Reply {
        match self.find_patient(ods, id) {
            Ok((site, p)) => ok(&render_patient(&site, &p)),
            Err(reply) => reply,
        }
    }

    fn clinician(&self, ods: &str, id: &str) -> Reply {
        let site = match self.site(ods) {
            Ok(s) => s,
            Err(reply) => return reply,
        };
        match site.clinicians.iter().find(|c| c.id == id) {
            Some(c) => ok(&render_clinician(c)),
            None => problem(
                404,
                "CLINICIAN_NOT_FOUND",
                "Clinician not found",
                &format!("No clinician {id} at site {ods}"),
            ),
        }
    }

    fn entries(&self, ods: &str, id: &str, kind: &str, cursor: Option<&str>) -> Reply {
        let (_, p) = match self.find_patient(ods, id) {
            Ok(found) => found,
            Err(reply) => return reply,
        };
        if !ENTRY_TYPES.contains(&kind) {
            return problem(
                400,
                "INVALID_ENTRY_TYPE",
                "Invalid entry type",
                &format!("'{kind}' is not one of {}", ENTRY_TYPES.join(", ")),
            );
        }
        let all = render_entries(&p, kind);
        let start = match cursor {
            None => 0,
            Some(c) => match decode_cursor(&p.id, kind, c).filter(|s| *s < all.len()) {
                Some(s) => s,
                None => {
                    return problem(
                        400,
                        "INVALID_CURSOR",
                        "Invalid cursor",
                        "The cursor is not one this server issued for these entries",
                    );
                }
            },
        };
        let end = (start + PAGE_SIZE).min(all.len());
        let next = (end < all.len()).then(|| encode_cursor(&p.id, kind, end));
        let total = all.len();
        let page: Vec<Value> = all.into_iter().skip(start).take(end - start).collect();
        ok(&json!({ "entries": page, "total": total, "next_cursor": next }))
    }
}

// ---- write-back ----------------------------------------------------------------------

/// Most readings one `POST …/entries` may carry.
pub const MAX_READINGS: usize = 10;

fn invalid_body(detail: &str) -> Reply {
    problem(400, "INVALID_BODY", "Invalid body", detail)
}

fn unprocessable(code: &str, title: &str, detail: &str) -> Reply {
    problem(422, code, title, detail)
}

/// Writes take `application/json` (parameters such as `charset` allowed).
fn json_content(headers: &hyper::HeaderMap) -> Result<(), Reply> {
    let ct = headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case(JSON) {
        Ok(())
    } else {
        Err(problem(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            "Unsupported media type",
            &format!("Writes take {JSON}, not '{ct}'"),
        ))
    }
}

/// The body as a JSON object.
fn json_object(body: &[u8]) -> Result<Map<String, Value>, Reply> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(invalid_body("The body is not a JSON object")),
        Err(e) => Err(invalid_body(&format!("The body is not valid JSON: {e}"))),
    }
}

/// A required string field (non-blank).
fn req_str<'b>(m: &'b Map<String, Value>, field: &str) -> Result<&'b str, Reply> {
    match m.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            Err(invalid_body(&format!("{field} is required")))
        }
        Some(_) => Err(invalid_body(&format!("{field} must be a string"))),
    }
}

/// The body's `nhs_number`, which must be the patient's: a guard against writing to
/// the wrong record when a patient id is mixed up.
fn check_nhs(m: &Map<String, Value>, patient_nhs: &str) -> Result<(), Reply> {
    let nhs = req_str(m, "nhs_number")?;
    if !crate::nhs::is_valid(nhs) {
        return Err(problem(
            400,
            "INVALID_NHS_NUMBER",
            "Invalid NHS number",
            &format!("{nhs} is not a valid NHS number"),
        ));
    }
    if nhs != patient_nhs {
        return Err(unprocessable(
            "NHS_NUMBER_MISMATCH",
            "NHS number mismatch",
            &format!("nhs_number {nhs} is not the NHS number of this patient"),
        ));
    }
    Ok(())
}

/// `YYYY-MM-DDThh:mm:ss` (UK local time) as a date-time.
fn parse_datetime(v: &str) -> Option<SimDate> {
    let b = v.as_bytes();
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = v.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    let year = i32::try_from(num(0..4)?).ok()?;
    let [month, day, hour, minute, second] =
        [5..7, 8..10, 11..13, 14..16, 17..19].map(|r| num(r).and_then(|n| u8::try_from(n).ok()));
    let (month, day, hour, minute, second) = (month?, day?, hour?, minute?, second?);
    let valid = year >= 1900
        && (1..=12).contains(&month)
        && day >= 1
        && day <= crate::date::days_in_month(year, month)
        && hour < 24
        && minute < 60
        && second < 60;
    valid.then(|| SimDate::ymd(year, month, day).at(hour, minute, second))
}

/// A required date object of precision `datetime`.
fn req_datetime(m: &Map<String, Value>, field: &str) -> Result<SimDate, Reply> {
    let d = match m.get(field) {
        Some(Value::Object(d)) => d,
        None | Some(Value::Null) => return Err(invalid_body(&format!("{field} is required"))),
        Some(_) => {
            return Err(invalid_body(&format!(
                "{field} must be a date object {{\"value\":…,\"precision\":\"datetime\"}}"
            )));
        }
    };
    let value = d.get("value").and_then(Value::as_str).unwrap_or("");
    let precision = d.get("precision").and_then(Value::as_str).unwrap_or("");
    match (precision, parse_datetime(value)) {
        ("datetime", Some(date)) => Ok(date),
        _ => Err(problem(
            400,
            "INVALID_DATE",
            "Invalid date",
            &format!(
                "{field} must have precision datetime and a value YYYY-MM-DDThh:mm:ss, not '{}' / '{}'",
                value.chars().take(40).collect::<String>(),
                precision.chars().take(20).collect::<String>()
            ),
        )),
    }
}

/// One reading of a `POST …/entries` body: `{"code":{"snomed":…},"value":"72.4","unit":"kg"}`.
fn reading(i: usize, r: &Value) -> Result<NewReading, Reply> {
    let at = format!("readings[{i}]");
    let Value::Object(r) = r else {
        return Err(invalid_body(&format!("{at} is not an object")));
    };
    let Some(Value::Object(code)) = r.get("code") else {
        return Err(invalid_body(&format!("{at}.code is required")));
    };
    let snomed = match code.get("snomed") {
        Some(Value::String(s)) => s.as_str(),
        _ => {
            return Err(unprocessable(
                "UNKNOWN_CODE",
                "Unknown code",
                &format!("{at}.code: written readings are coded in SNOMED CT ({{\"snomed\":…}})"),
            ));
        }
    };
    let concept = concepts::measurement_by_snomed(snomed).ok_or_else(|| {
        unprocessable(
            "UNKNOWN_CODE",
            "Unknown code",
            &format!(
                "{at}.code: SNOMED CT {} is not a measurement Evolution records",
                snomed.chars().take(20).collect::<String>()
            ),
        )
    })?;
    let raw = req_str(r, "value")
        .map_err(|_| invalid_body(&format!("{at}.value is required, a number as a string")))?;
    let value = raw
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| invalid_body(&format!("{at}.value '{raw}' is not a number")))?;
    let unit = r.get("unit").and_then(Value::as_str).unwrap_or("");
    if concept.units != Some(unit) {
        return Err(unprocessable(
            "INVALID_UNIT",
            "Invalid unit",
            &format!(
                "{at}.unit: {} is recorded in {}, not '{}'",
                concept.term,
                concept.units.unwrap_or("no unit"),
                unit.chars().take(20).collect::<String>()
            ),
        ));
    }
    Ok(NewReading {
        concept,
        value,
        interpretation: coding(r, "interpretation", &at)?,
    })
}

/// An optional coding object `{"system": uri, "code": …, "term": …}` at `field` of `m`
/// (`at` names `m` in errors): how readings carry codes from outside Evolution's own
/// schemes (interpretations, body sites, methods, a supplier's LOINC codes).
fn coding(m: &Map<String, Value>, field: &str, at: &str) -> Result<Option<Code>, Reply> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => coding_value(v, &format!("{at}.{field}")).map(Some),
    }
}

fn coding_value(v: &Value, at: &str) -> Result<Code, Reply> {
    let Value::Object(c) = v else {
        return Err(invalid_body(&format!(
            "{at} must be a coding object {{\"system\":…,\"code\":…,\"term\":…}}"
        )));
    };
    let part = |k: &str, max: usize| -> Result<Option<String>, Reply> {
        match c.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s))
                if !s.trim().is_empty()
                    && s.chars().count() <= max
                    && !s.chars().any(char::is_control) =>
            {
                Ok(Some(s.clone()))
            }
            Some(_) => Err(invalid_body(&format!(
                "{at}.{k} must be 1 to {max} characters without control characters"
            ))),
        }
    };
    let system = part("system", 255)?.filter(|s| s.contains(':'));
    let (Some(system), Some(code)) = (system, part("code", 64)?) else {
        return Err(invalid_body(&format!(
            "{at} needs a system (a URI) and a code"
        )));
    };
    Ok(Code {
        system,
        code,
        display: part("term", 255)?,
    })
}

/// The details of a `POST …/entries` body beyond its readings: the panel's
/// `interpretation`, `body_site`, `method`, `device` and the supplier's `original_codes`.
fn qualifiers(m: &Map<String, Value>) -> Result<Qualifiers, Reply> {
    let device = match m.get("device") {
        None | Some(Value::Null) => None,
        Some(Value::String(d))
            if !d.trim().is_empty()
                && d.chars().count() <= 255
                && !d.chars().any(char::is_control) =>
        {
            Some(d.clone())
        }
        Some(_) => {
            return Err(invalid_body(
                "device must be 1 to 255 characters without control characters",
            ));
        }
    };
    let original_codings = match m.get("original_codes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) if list.len() <= 10 => list
            .iter()
            .enumerate()
            .map(|(i, c)| coding_value(c, &format!("original_codes[{i}]")))
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(invalid_body(
                "original_codes must be a list of 0 to 10 codings",
            ));
        }
    };
    Ok(Qualifiers {
        interpretation: None,
        panel_interpretation: coding(m, "interpretation", "body")?,
        body_site: coding(m, "body_site", "body")?,
        method: coding(m, "method", "body")?,
        device,
        original_codings,
    })
}

/// The `date` of readings: a `datetime` (UK local time) or a `day` when only the date
/// was taken down.
fn reading_date(m: &Map<String, Value>) -> Result<SimDate, Reply> {
    if let Some(Value::Object(d)) = m.get("date")
        && d.get("precision").and_then(Value::as_str) == Some("day")
    {
        let value = d.get("value").and_then(Value::as_str).unwrap_or("");
        return parse_datetime(&format!("{value}T00:00:00"))
            .filter(|_| value.len() == 10)
            .map(|d| d.truncate(Precision::YMD))
            .ok_or_else(|| {
                problem(
                    400,
                    "INVALID_DATE",
                    "Invalid date",
                    &format!(
                        "date of precision day must have a value YYYY-MM-DD, not '{}'",
                        value.chars().take(40).collect::<String>()
                    ),
                )
            });
    }
    req_datetime(m, "date")
}

/// The store's refusal in Evolution's format.
fn write_error(e: WriteError) -> Reply {
    match &e {
        WriteError::PracticeNotFound(ods) => problem(
            404,
            "SITE_NOT_FOUND",
            "Site not found",
            &format!("No Evolution site with ODS code {ods}"),
        ),
        WriteError::PatientNotFound(_) => problem(
            404,
            "PATIENT_NOT_FOUND",
            "Patient not found",
            &e.to_string(),
        ),
        WriteError::Conflict(current) => problem_with(
            409,
            "RECORD_MODIFIED",
            "Record modified",
            &format!(
                "The record was modified since the last_modified given; it is now at {current}"
            ),
            // The version to re-read against.
            Map::from_iter([("current_last_modified".to_owned(), date(*current))]),
        ),
        WriteError::Invalid(reason) => unprocessable("INVALID_READING", "Invalid reading", reason),
    }
}

/// A nullable string field that must be present (`null` = none).
fn nullable_str<'b>(m: &'b Map<String, Value>, field: &str) -> Result<Option<&'b str>, Reply> {
    match m.get(field) {
        None => Err(invalid_body(&format!(
            "{field} is required (null when the patient has none)"
        ))),
        Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim())),
        Some(Value::String(_)) => Err(invalid_body(&format!(
            "{field} is blank; send null when the patient has none"
        ))),
        Some(_) => Err(invalid_body(&format!("{field} must be a string or null"))),
    }
}

fn valid_phone(v: &str) -> bool {
    let digits = v.bytes().filter(u8::is_ascii_digit).count();
    (6..=15).contains(&digits)
        && v.len() <= 35
        && v.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b' ' | b'+' | b'(' | b')' | b'-'))
}

fn valid_email(v: &str) -> bool {
    v.len() <= 254
        && !v.chars().any(char::is_whitespace)
        && v.split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
}

/// The `address` of a contact update: `null`, or 1-3 lines, town, county, postcode.
fn contact_address(m: &Map<String, Value>) -> Result<Address, Reply> {
    let bad = |detail: &str| unprocessable("INVALID_ADDRESS", "Invalid address", detail);
    let a = match m.get("address") {
        None => {
            return Err(invalid_body(
                "address is required (null when the patient has none)",
            ));
        }
        Some(Value::Null) => {
            return Ok(Address {
                house: String::new(),
                street: String::new(),
                village: String::new(),
                town: String::new(),
                county: String::new(),
                postcode: String::new(),
            });
        }
        Some(Value::Object(a)) => a,
        Some(_) => return Err(invalid_body("address must be an object or null")),
    };
    let lines: Vec<&str> = match a.get("lines") {
        Some(Value::Array(lines)) => lines
            .iter()
            .map(|l| l.as_str().map(str::trim).filter(|l| !l.is_empty()))
            .collect::<Option<Vec<&str>>>()
            .ok_or_else(|| bad("address.lines must all be non-blank strings"))?,
        _ => return Err(bad("address.lines is required, 1 to 3 lines")),
    };
    if !(1..=3).contains(&lines.len()) {
        return Err(bad(&format!(
            "address.lines has {} lines; Evolution holds 1 to 3",
            lines.len()
        )));
    }
    let part = |field: &str, required: bool| -> Result<String, Reply> {
        match a.get(field) {
            Some(Value::String(s)) if !required || !s.trim().is_empty() => Ok(s.trim().to_owned()),
            None | Some(Value::Null) if !required => Ok(String::new()),
            _ => Err(bad(&format!("address.{field} is required"))),
        }
    };
    let line = |i: usize| lines.get(i).map_or_else(String::new, |l| (*l).to_owned());
    Ok(Address {
        house: line(0),
        street: line(1),
        village: line(2),
        town: part("town", true)?,
        county: part("county", false)?,
        postcode: part("postcode", true)?,
    })
}

/// The `preferred_language` of a contact update: `null` or `{"code": "cy"}`.
fn contact_language(m: &Map<String, Value>) -> Result<Option<String>, Reply> {
    match m.get("preferred_language") {
        None => Err(invalid_body(
            "preferred_language is required (null when none is recorded)",
        )),
        Some(Value::Null) => Ok(None),
        Some(Value::Object(l)) => {
            let code = l.get("code").and_then(Value::as_str).unwrap_or("");
            if crate::languages::name(code).is_some() {
                Ok(Some(code.to_owned()))
            } else {
                Err(unprocessable(
                    "INVALID_LANGUAGE",
                    "Invalid language",
                    &format!(
                        "preferred_language.code '{}' is not a language Evolution records",
                        code.chars().take(20).collect::<String>()
                    ),
                ))
            }
        }
        Some(_) => Err(invalid_body("preferred_language must be an object or null")),
    }
}

/// The `Idempotency-Key` header: 1 to 64 letters, digits or hyphens.
fn idempotency_key(headers: &hyper::HeaderMap) -> Result<&str, Reply> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let key_ok = (1..=64).contains(&key.len())
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if key_ok {
        Ok(key)
    } else {
        Err(problem(
            400,
            "INVALID_IDEMPOTENCY_KEY",
            "Invalid idempotency key",
            "The Idempotency-Key header is required: 1 to 64 letters, digits or hyphens",
        ))
    }
}

impl Microtest {
    /// What every keyed write checks first: a JSON body, the patient `id` at practice
    /// `ods` (their NHS number), and an `Idempotency-Key` of 1 to 64 letters, digits or
    /// hyphens (the key).
    fn keyed_write<'h>(
        &self,
        ods: &str,
        id: &str,
        headers: &'h hyper::HeaderMap,
    ) -> Result<(String, &'h str), Reply> {
        json_content(headers)?;
        let nhs = self.patient_nhs(ods, id)?;
        Ok((nhs, idempotency_key(headers)?))
    }

    /// `POST …/patients/{id}/entries`: records readings under the `Idempotency-Key`.
    fn record_entries(
        &self,
        ods: &str,
        id: &str,
        headers: &hyper::HeaderMap,
        body: &[u8],
    ) -> Reply {
        let (nhs, key) = match self.keyed_write(ods, id, headers) {
            Ok(checked) => checked,
            Err(reply) => return reply,
        };
        let parsed = json_object(body).and_then(|m| {
            check_nhs(&m, &nhs)?;
            match req_str(&m, "type")? {
                "observation" => {}
                other => {
                    return Err(unprocessable(
                        "UNSUPPORTED_ENTRY_TYPE",
                        "Unsupported entry type",
                        &format!(
                            "Only observation entries may be written, not '{}'",
                            other.chars().take(20).collect::<String>()
                        ),
                    ));
                }
            }
            let date = reading_date(&m)?;
            let details = qualifiers(&m)?;
            let author = match m.get("clinician_id") {
                None | Some(Value::Null) => None,
                Some(Value::String(c)) if !c.trim().is_empty() => Some(c.clone()),
                Some(_) => return Err(invalid_body("clinician_id must be a clinician's id")),
            };
            let readings = match m.get("readings") {
                Some(Value::Array(r)) if (1..=MAX_READINGS).contains(&r.len()) => r,
                _ => {
                    return Err(invalid_body(&format!(
                        "readings is required: 1 to {MAX_READINGS} readings"
                    )));
                }
            };
            let readings = readings
                .iter()
                .enumerate()
                .map(|(i, r)| reading(i, r))
                .collect::<Result<Vec<_>, _>>()?;
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
            Ok((date, readings, external_id, details, author))
        });
        let (date, readings, external_id, details, author) = match parsed {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        let write = ReadingsWrite {
            key,
            date,
            readings: &readings,
            external_id: external_id.as_ref(),
            details: &details,
            author: author.as_deref(),
        };
        match self
            .store
            .record_readings(SystemKind::Microtest, ods, &nhs, write)
        {
            Ok(recorded) => {
                let mut reply = ok(&json!({ "entry_ids": recorded.ids }));
                if recorded.created {
                    reply.status = 201;
                }
                reply
            }
            Err(e) => write_error(e),
        }
    }

    /// `PUT …/patients/{id}/contact`: replaces the contact details if the record is
    /// still at the body's `last_modified`.
    fn update_contact(
        &self,
        ods: &str,
        id: &str,
        headers: &hyper::HeaderMap,
        body: &[u8],
    ) -> Reply {
        if let Err(reply) = json_content(headers) {
            return reply;
        }
        let nhs = match self.patient_nhs(ods, id) {
            Ok(nhs) => nhs,
            Err(reply) => return reply,
        };
        let parsed = json_object(body).and_then(|m| {
            check_nhs(&m, &nhs)?;
            let expected = req_datetime(&m, "last_modified")?;
            let home_phone = nullable_str(&m, "home_phone")?;
            let mobile = nullable_str(&m, "mobile_phone")?;
            for (field, phone) in [("home_phone", home_phone), ("mobile_phone", mobile)] {
                if let Some(p) = phone.filter(|p| !valid_phone(p)) {
                    return Err(unprocessable(
                        "INVALID_PHONE",
                        "Invalid phone number",
                        &format!(
                            "{field} '{}' is not a UK phone number",
                            p.chars().take(40).collect::<String>()
                        ),
                    ));
                }
            }
            let email = nullable_str(&m, "email")?;
            if let Some(e) = email.filter(|e| !valid_email(e)) {
                return Err(unprocessable(
                    "INVALID_EMAIL",
                    "Invalid email",
                    &format!(
                        "email '{}' is not an email address",
                        e.chars().take(40).collect::<String>()
                    ),
                ));
            }
            let update = ContactUpdate {
                home_phone: home_phone.map(str::to_owned),
                mobile: mobile.map(str::to_owned),
                email: email.map(str::to_owned),
                address: contact_address(&m)?,
                language: contact_language(&m)?,
            };
            Ok((expected, update))
        });
        let (expected, update) = match parsed {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        match self
            .store
            .update_contact(SystemKind::Microtest, ods, &nhs, expected, update)
        {
            Ok(now) => ok(&json!({ "patient_id": id, "last_modified": date(now) })),
            Err(e) => write_error(e),
        }
    }
}

// ---- cursors -------------------------------------------------------------------------

/// A short keyed check so a cursor is only valid for the patient and type it was made for.
fn cursor_check(patient: &str, kind: &str, offset: usize) -> u32 {
    // FNV-1a: deterministic across runs, no dependency.
    let mut h: u32 = 0x811c_9dc5;
    for b in patient
        .bytes()
        .chain(kind.bytes())
        .chain(offset.to_le_bytes())
    {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// An opaque cursor for the page starting at `offset`: `c{offset:x}.{check:08x}`.
pub fn encode_cursor(patient: &str, kind: &str, offset: usize) -> String {
    format!("c{offset:x}.{:08x}", cursor_check(patient, kind, offset))
}

fn decode_cursor(patient: &str, kind: &str, cursor: &str) -> Option<usize> {
    let (offset, check) = cursor.strip_prefix('c')?.split_once('.')?;
    let offset = usize::from_str_radix(offset, 16).ok()?;
    let check = u32::from_str_radix(check, 16).ok()?;
    (check == cursor_check(patient, kind, offset)).then_some(offset)
}

// ---- rendering -----------------------------------------------------------------------

fn ok(v: &Value) -> Reply {
    Reply {
        status: 200,
        content_type: JSON,
        body: serde_json::to_vec(v).unwrap_or_default(),
    }
}

/// An RFC 9457 problem+json document with Evolution's `code`.
fn problem(status: u16, code: &str, title: &str, detail: &str) -> Reply {
    problem_with(status, code, title, detail, Map::new())
}

/// [`problem`] with RFC 9457 extension members.
fn problem_with(
    status: u16,
    code: &str,
    title: &str,
    detail: &str,
    extensions: Map<String, Value>,
) -> Reply {
    let mut doc = json!({
        "type": format!("https://evolution.microtest.co.uk/problems/{}", code.to_ascii_lowercase().replace('_', "-")),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    });
    if let Value::Object(m) = &mut doc {
        m.extend(extensions);
    }
    Reply {
        status,
        content_type: PROBLEM_JSON,
        body: serde_json::to_vec(&doc).unwrap_or_default(),
    }
}

fn not_found(path: &str) -> Reply {
    problem(
        404,
        "NOT_FOUND",
        "Not found",
        &format!("No endpoint at {path}"),
    )
}

/// `{"value": "2019-03", "precision": "month"}`.
fn date(d: SimDate) -> Value {
    let precision = match d.precision() {
        Precision::Y => "year",
        Precision::YM => "month",
        Precision::YMD => "day",
        Precision::YMDT => "datetime",
    };
    json!({ "value": d.to_string(), "precision": precision })
}

fn opt_date(d: Option<SimDate>) -> Value {
    d.map_or(Value::Null, date)
}

fn sex(s: Sex) -> &'static str {
    match s {
        Sex::Male => "M",
        Sex::Female => "F",
        Sex::Indeterminate => "X",
        Sex::Unknown => "U",
    }
}

fn address(a: &Address) -> Value {
    let lines: Vec<&str> = [&a.house, &a.street, &a.village]
        .into_iter()
        .map(String::as_str)
        .filter(|l| !l.is_empty())
        .collect();
    json!({ "lines": lines, "town": a.town, "county": a.county, "postcode": a.postcode })
}

/// Evolution codes clinical items in Read v2 where the concept has one, else SNOMED CT.
fn code(c: &Concept) -> Value {
    match c.read2 {
        Some(read) => json!({ "read": read, "term": c.term }),
        None => json!({ "snomed": c.snomed, "term": c.term }),
    }
}

/// A number as Evolution sends it: a string (`"120"`, `"72.5"`).
fn number(v: f64) -> String {
    v.to_string()
}

fn summary(p: &SimPatient) -> Value {
    json!({
        "patient_id": p.id,
        "nhs_number": p.nhs_number,
        "family_name": p.family,
        "given_names": p.given,
        "date_of_birth": date(p.birth_date),
    })
}

/// A patient's demographics document, with the site it is registered at.
pub fn render_patient(site: &Practice, p: &SimPatient) -> Value {
    json!({
        "patient_id": p.id,
        "family_name": p.family,
        "given_names": p.given,
        "title": p.title,
        "nhs_number": p.nhs_number,
        "nhs_number_status": p.nhs_status,
        "sex": sex(p.sex),
        "date_of_birth": date(p.birth_date),
        "date_of_death": opt_date(p.deceased_on),
        "address": address(&p.address),
        "home_phone": p.home_phone,
        "mobile_phone": p.mobile,
        "email": p.email,
        "usual_clinician_id": p.usual_gp,
        "registration_date": date(p.registered_on),
        "restricted": p.flags.sensitive,
        "sharing_dissent": p.flags.dissent,
        "preferred_language": p.language.as_deref().map(|code| json!({
            "code": code,
            "term": crate::languages::name(code).unwrap_or(code),
        })),
        "last_modified": date(p.last_modified),
        "site": {
            "site_id": site.guid,
            "ods_code": site.ods,
            "name": site.name,
            "address": address(&site.address),
            "phone": site.phone,
        },
    })
}

fn render_clinician(c: &Clinician) -> Value {
    json!({
        "clinician_id": c.id,
        "title": c.title,
        "given_name": c.given,
        "family_name": c.family,
        "sex": sex(c.sex),
        "role": c.role,
        "sds_user_id": c.sds_user_id,
        "gmc_number": c.gmc,
    })
}

/// The fields every entry has.
fn head(kind: &str, m: &EntryMeta) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("id".into(), json!(m.id));
    o.insert("type".into(), json!(kind));
    o.insert("date".into(), date(m.date));
    if !m.author.is_empty() {
        o.insert("clinician_id".into(), json!(m.author));
    }
    if let Some(c) = &m.consultation {
        o.insert("consultation_id".into(), json!(c));
    }
    if m.confidential {
        o.insert("confidential".into(), json!(true));
    }
    if let Some(ext) = &m.external_id {
        o.insert(
            "external_identifier".into(),
            json!({ "system": ext.system, "value": ext.value }),
        );
    }
    o
}

fn with(mut o: Map<String, Value>, fields: Value) -> Value {
    if let Value::Object(extra) = fields {
        o.extend(extra);
    }
    Value::Object(o)
}

fn lower<T: std::fmt::Debug>(v: T) -> String {
    format!("{v:?}").to_ascii_lowercase()
}

/// Every entry of `kind` in the patient's record, in record order.
pub fn render_entries(p: &SimPatient, kind: &str) -> Vec<Value> {
    match kind {
        "allergy" => p
            .allergies
            .iter()
            .map(|a| {
                with(
                    head(kind, &a.meta),
                    json!({
                        "code": code(a.concept),
                        "category": lower(a.category),
                        "status": lower(a.status),
                        "end_date": opt_date(a.end_date),
                        "reaction": a.reaction.map(code),
                        "severity": lower(a.severity),
                    }),
                )
            })
            .collect(),
        "medication" => p
            .medications
            .iter()
            .map(|m| {
                with(
                    head(kind, &m.meta),
                    json!({
                        "drug": { "dmd": m.drug.dmd.unwrap_or(m.drug.snomed), "term": m.drug.term },
                        "dosage": m.dosage,
                        "quantity": m.quantity.to_string(),
                        "quantity_unit": m.quantity_units,
                        "prescription_type": lower(m.kind),
                        "status": lower(m.status),
                        "end_date": opt_date(m.end_date),
                    }),
                )
            })
            .collect(),
        "problem" => p
            .problems
            .iter()
            .map(|x| {
                with(
                    head(kind, &x.meta),
                    json!({
                        "code": code(x.concept),
                        "status": lower(x.status),
                        "significance": lower(x.significance),
                        "end_date": opt_date(x.end_date),
                    }),
                )
            })
            .collect(),
        "observation" => observations(&p.observations),
        "immunisation" => p
            .immunisations
            .iter()
            .map(|x| {
                with(
                    head(kind, &x.meta),
                    json!({
                        "code": code(x.concept),
                        "batch": x.batch,
                        "dose": x.dose_sequence.to_string(),
                    }),
                )
            })
            .collect(),
        "consultation" => p
            .consultations
            .iter()
            .map(|c| {
                let mut meta = c.meta.clone();
                meta.author = c.clinician.clone();
                with(
                    head(kind, &meta),
                    json!({
                        "code": code(c.kind),
                        "duration_minutes": c.duration_minutes.to_string(),
                    }),
                )
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Observations, with each systolic reading followed by its diastolic partner (same
/// date, consultation, clinician and confidentiality) folded into one BP entry, as
/// Evolution records blood pressure. The entry's id is the systolic reading's.
fn observations(list: &[Observation]) -> Vec<Value> {
    let mut out = Vec::with_capacity(list.len());
    let mut i = 0;
    while let Some(o) = list.get(i) {
        let partner = list.get(i + 1).filter(|d| {
            o.concept.key == "systolic-bp"
                && d.concept.key == "diastolic-bp"
                && d.meta.date == o.meta.date
                && d.meta.consultation == o.meta.consultation
                && d.meta.author == o.meta.author
                && d.meta.confidential == o.meta.confidential
                && o.value.is_some()
                && d.value.is_some()
        });
        let mut entry = head("observation", &o.meta);
        let q = o.qualifiers.as_deref();
        match partner {
            Some(d) => {
                let reading = |x: &Observation, id: Option<&str>| {
                    let mut r = json!({
                        "value": number(x.value.unwrap_or_default()),
                        "unit": x.units.unwrap_or("mm[Hg]"),
                    });
                    if let Value::Object(m) = &mut r {
                        if let Some(id) = id {
                            m.insert("id".into(), json!(id));
                        }
                        if let Some(i) = x
                            .qualifiers
                            .as_deref()
                            .and_then(|q| q.interpretation.as_ref())
                        {
                            m.insert("interpretation".into(), render_coding(i));
                        }
                    }
                    r
                };
                if let Some(i) = q.and_then(|q| q.panel_interpretation.as_ref()) {
                    entry.insert("interpretation".into(), render_coding(i));
                }
                entry.insert(
                    "code".into(),
                    json!({ "read": "246..", "term": "O/E - blood pressure reading" }),
                );
                entry.insert("systolic".into(), reading(o, None));
                entry.insert("diastolic".into(), reading(d, Some(&d.meta.id)));
                i += 2;
            }
            None => {
                entry.insert("code".into(), code(o.concept));
                if let Some(v) = o.value {
                    entry.insert("value".into(), json!(number(v)));
                    if let Some(u) = o.units {
                        entry.insert("unit".into(), json!(u));
                    }
                }
                if let Some(i) = q.and_then(|q| {
                    q.interpretation
                        .as_ref()
                        .or(q.panel_interpretation.as_ref())
                }) {
                    entry.insert("interpretation".into(), render_coding(i));
                }
                i += 1;
            }
        }
        if let Some(q) = q {
            render_qualifiers(q, &mut entry);
        }
        out.push(Value::Object(entry));
    }
    out
}

/// A coding object: `{"system": uri, "code": …, "term": …}` (`term` when known).
fn render_coding(c: &Code) -> Value {
    let mut v = json!({ "system": c.system, "code": c.code });
    if let (Some(t), Value::Object(m)) = (&c.display, &mut v) {
        m.insert("term".into(), json!(t));
    }
    v
}

/// A written reading's body site, method, device and original codes on its entry.
fn render_qualifiers(q: &Qualifiers, entry: &mut Map<String, Value>) {
    if let Some(b) = &q.body_site {
        entry.insert("body_site".into(), render_coding(b));
    }
    if let Some(m) = &q.method {
        entry.insert("method".into(), render_coding(m));
    }
    if let Some(d) = &q.device {
        entry.insert("device".into(), json!(d));
    }
    if !q.original_codings.is_empty() {
        entry.insert(
            "original_codes".into(),
            q.original_codings.iter().map(render_coding).collect(),
        );
    }
}

// ---- faults --------------------------------------------------------------------------

fn insert_after(body: &[u8], marker: &[u8], insert: &[u8]) -> Option<Vec<u8>> {
    let at = body.windows(marker.len()).position(|w| w == marker)? + marker.len();
    Some([&body[..at], insert, &body[at..]].concat())
}

/// Removes `key` from every object in `v`.
fn remove_key(v: &mut Value, key: &str) {
    match v {
        Value::Object(m) => {
            m.remove(key);
            m.values_mut().for_each(|x| remove_key(x, key));
        }
        Value::Array(a) => a.iter_mut().for_each(|x| remove_key(x, key)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cursors_round_trip_and_are_bound_to_patient_and_type() {
        let c = encode_cursor("p1", "observation", 200);
        assert_eq!(decode_cursor("p1", "observation", &c), Some(200));
        assert_eq!(decode_cursor("p2", "observation", &c), None);
        assert_eq!(decode_cursor("p1", "allergy", &c), None);
        assert_eq!(decode_cursor("p1", "observation", "c1.0"), None);
        assert_eq!(decode_cursor("p1", "observation", "garbage"), None);
    }

    #[test]
    fn dates_carry_their_precision() {
        let d = SimDate::ymd(2019, 3, 2);
        assert_eq!(
            date(d.truncate(Precision::YM)),
            json!({"value": "2019-03", "precision": "month"})
        );
        assert_eq!(date(d.truncate(Precision::Y))["precision"], "year");
        assert_eq!(
            date(d.at(9, 40, 0)),
            json!({"value": "2019-03-02T09:40:00", "precision": "datetime"})
        );
    }

    #[test]
    fn reading_details_are_recorded_and_served_back() {
        use crate::population::{Population, PopulationSpec};
        let pop = Population::generate(5, &PopulationSpec::sandbox());
        let practice = pop
            .practices
            .iter()
            .find(|p| p.system == SystemKind::Microtest)
            .unwrap()
            .clone();
        let patient = pop
            .patients
            .iter()
            .find(|p| p.practice == practice.ods)
            .unwrap()
            .clone();
        let sim = Microtest {
            store: SimStore::new(pop),
        };
        let clinician = practice.clinicians[0].id.clone();
        let v3 = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
        let body = json!({
            "nhs_number": patient.nhs_number,
            "type": "observation",
            "date": {"value": "2026-03-09", "precision": "day"},
            "clinician_id": clinician,
            "readings": [
                {"code": {"snomed": "271649006"}, "value": "150", "unit": "mm[Hg]",
                 "interpretation": {"system": v3, "code": "H", "term": "High"}},
                {"code": {"snomed": "271650006"}, "value": "80", "unit": "mm[Hg]",
                 "interpretation": {"system": v3, "code": "N"}},
            ],
            "interpretation": {"system": v3, "code": "H", "term": "High"},
            "body_site": {"system": "http://snomed.info/sct", "code": "368209003", "term": "Right arm"},
            "method": {"system": "http://snomed.info/sct", "code": "37931006"},
            "device": "Omron M3",
            "original_codes": [{"system": "http://loinc.org", "code": "85354-9"}],
        });
        let mut headers = hyper::HeaderMap::new();
        headers.insert("content-type", JSON.parse().unwrap());
        headers.insert("idempotency-key", "k-details".parse().unwrap());
        let path = format!(
            "{PREFIX}/sites/{}/patients/{}/entries",
            practice.ods, patient.id
        );
        let post = |b: &Value| {
            sim.route_write(
                &Method::POST,
                &path,
                &headers,
                &serde_json::to_vec(b).unwrap(),
            )
            .unwrap()
            .reply
        };
        assert_eq!(post(&body).status, 201);
        let patient = sim.find_patient(&practice.ods, &patient.id).unwrap().1;
        let entries = render_entries(&patient, "observation");
        let e = entries.last().unwrap();
        assert_eq!(
            e["date"],
            json!({"value": "2026-03-09", "precision": "day"})
        );
        assert_eq!(e["clinician_id"], clinician.as_str());
        assert_eq!(e["systolic"]["interpretation"]["code"], "H");
        assert_eq!(
            e["diastolic"]["interpretation"],
            json!({"system": v3, "code": "N"})
        );
        assert_eq!(e["interpretation"]["term"], "High");
        assert_eq!(e["body_site"]["code"], "368209003");
        assert_eq!(e["method"]["code"], "37931006");
        assert_eq!(e["device"], "Omron M3");
        assert_eq!(e["original_codes"][0]["code"], "85354-9");
        // Refusals: a coding without a system, a date of precision day with a time.
        let mut bad = body.clone();
        bad["body_site"] = json!({"code": "368209003"});
        assert_eq!(post(&bad).status, 400);
        let mut bad = body.clone();
        bad["date"] = json!({"value": "2026-03-09T10:00:00", "precision": "day"});
        assert_eq!(post(&bad).status, 400);
        let mut bad = body;
        bad["clinician_id"] = json!("nobody");
        let reply = post(&bad);
        assert_eq!(
            reply.status,
            422,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
    }
}
