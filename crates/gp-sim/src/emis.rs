//! EMIS Web simulator: serves exactly `docs/native-formats/emis.md` (MedicalRecord XML)
//! for patients of practices whose system is EMIS, files the write-back requests
//! (`ObservationBatch`, `UpdateContactDetails`) that document describes, and serves the
//! appointment book (`emis_book.rs`), the patients' documents (`emis_documents.rs`) and
//! the practice's change log (`emis_changes.rs`).

use std::borrow::Cow;
use std::sync::Arc;

use hyper::Method;
use tokio::net::TcpListener;

use crate::concepts::{self, Concept};
use crate::date::{Precision, SimDate};
use crate::model::*;
use crate::server::{self, Reply, Routed, SimHandle, Simulator};
use crate::store::{ContactUpdate, NewReading, ReadingsWrite, SimStore, WriteError};
use crate::xml::{Element, ReadRules, RequestDoc, XmlWriter, insert_after, remove_element};

#[path = "emis_book.rs"]
mod book;
#[path = "emis_changes.rs"]
mod changes;
#[path = "emis_documents.rs"]
mod documents;

/// Default namespace of every EMIS Open document.
pub const NAMESPACE: &str = "http://www.e-mis.com/emisopen/MedicalRecord";
pub(crate) const XML: &str = "application/xml";

/// Starts the EMIS simulator on `listener` (bind it to `127.0.0.1:0` in tests).
pub async fn start_emis(store: SimStore, listener: TcpListener) -> std::io::Result<SimHandle> {
    server::serve(Arc::new(Emis { store }), listener)
}

struct Emis {
    store: SimStore,
}

impl Simulator for Emis {
    fn name(&self) -> &'static str {
        "emis"
    }

    fn route(&self, method: &Method, path: &str) -> Routed {
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        let not_record = |reply| Routed {
            reply,
            record: false,
        };
        match segments.as_slice() {
            ["", "emis", "health"] if method == Method::GET => not_record(health()),
            [
                "",
                "emis",
                "practices",
                ods,
                "patients",
                nhs,
                "medicalrecord",
            ] if method == Method::GET => Routed {
                reply: self.medical_record(ods, nhs),
                record: true,
            },
            ["", "emis", "practices", ods, "people", guid] if method == Method::GET => {
                not_record(self.person(ods, guid))
            }
            ["", "emis", "practices", _, "patients", _, "observations"] => {
                not_record(method_not_allowed("POST"))
            }
            ["", "emis", "practices", _, "patients", _, "contactdetails"] => {
                not_record(method_not_allowed("PUT"))
            }
            ["", "emis", "practices", _, "appointments", _, "cancel"] => {
                not_record(method_not_allowed("POST"))
            }
            ["", "emis", "practices", _, "appointments", _] => {
                not_record(method_not_allowed("GET, PUT"))
            }
            ["", "emis", "practices", _, "patients", _, "appointments"] => {
                not_record(method_not_allowed("GET, POST"))
            }
            ["", "emis", ..] if method != Method::GET => not_record(method_not_allowed("GET")),
            _ => not_record(error(404, "NOT_FOUND", &format!("No endpoint at {path}"))),
        }
    }

    fn error_reply(&self, status: u16) -> Reply {
        let code = match status {
            400 => "INVALID_NHS_NUMBER",
            404 => "PATIENT_NOT_FOUND",
            409 => "VERSION_CONFLICT",
            413 => "REQUEST_TOO_LARGE",
            422 => "INVALID_VALUE",
            503 => "SERVICE_UNAVAILABLE",
            _ => "INTERNAL_ERROR",
        };
        error(status, code, "Injected fault")
    }

    fn route_query(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
    ) -> (Routed, Vec<(&'static str, String)>) {
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        if let Some(answer) = documents::route_read(&self.store, method, &segments) {
            return answer;
        }
        let routed = book::route_read(&self.store, method, &segments, query)
            .or_else(|| changes::route_read(&self.store, method, &segments, query))
            .unwrap_or_else(|| self.route(method, path));
        (routed, Vec::new())
    }

    fn max_write_body(&self, _method: &Method, path: &str) -> usize {
        if documents::is_upload(path) {
            crate::documents::MAX_UPLOAD
        } else {
            server::MAX_WRITE_BODY
        }
    }

    fn garbage(&self) -> Vec<u8> {
        b"\x00\x01PK this is not XML at all }{ ][".to_vec()
    }

    fn mis_encode(&self, body: &[u8]) -> Vec<u8> {
        // 0xC3 0x28 is an invalid two-byte UTF-8 sequence, placed inside an element's text.
        insert_after(body, b"<FamilyName>", b"\xC3\x28")
            .or_else(|| insert_after(body, b"<Message>", b"\xC3\x28"))
            .unwrap_or_else(|| [body, b"\xC3\x28"].concat())
    }

    fn drop_nhs_number(&self, body: &[u8]) -> Vec<u8> {
        remove_element(body, "NhsNumber")
    }

    fn route_write(
        &self,
        method: &Method,
        path: &str,
        headers: &hyper::HeaderMap,
        body: &[u8],
    ) -> Option<Routed> {
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        // A wrong method is not a record request: no fault, not counted.
        let (reply, record) = match segments.as_slice() {
            [
                "",
                "emis",
                "practices",
                ods,
                "patients",
                nhs,
                "observations",
            ] => {
                if method == Method::POST {
                    (self.file_observations(ods, nhs, headers, body), true)
                } else {
                    (method_not_allowed("POST"), false)
                }
            }
            [
                "",
                "emis",
                "practices",
                ods,
                "patients",
                nhs,
                "contactdetails",
            ] => {
                if method == Method::PUT {
                    (self.update_contact_details(ods, nhs, headers, body), true)
                } else {
                    (method_not_allowed("PUT"), false)
                }
            }
            _ => {
                return documents::route_write(&self.store, method, &segments, headers, body)
                    .or_else(|| book::route_write(&self.store, method, &segments, headers, body));
            }
        };
        Some(Routed { reply, record })
    }
}

impl Emis {
    /// The EMIS practice `ods` and a checked NHS number, or the native error to answer.
    fn practice_and_nhs(&self, ods: &str, nhs: &str) -> Result<Practice, Reply> {
        let practice = match self.store.practice(ods) {
            Some(p) if p.system == SystemKind::Emis => p,
            _ => return Err(practice_not_found(ods)),
        };
        if !crate::nhs::is_valid(nhs) {
            return Err(error(
                400,
                "INVALID_NHS_NUMBER",
                &format!("{nhs} is not a valid NHS number"),
            ));
        }
        Ok(practice)
    }

    /// `GET /emis/practices/{ODS}/people/{GUID}`: one member of the practice's staff
    /// (braces and case in the GUID do not matter, as elsewhere in EMIS).
    fn person(&self, ods: &str, guid: &str) -> Reply {
        let practice = match self.store.practice(ods) {
            Some(p) if p.system == SystemKind::Emis => p,
            _ => return practice_not_found(ods),
        };
        match practice.clinician(guid) {
            Some(c) => {
                let mut w = XmlWriter::new();
                w.open_with("Person", &[("xmlns", NAMESPACE)]);
                person(&mut w, c);
                w.close("Person");
                Reply {
                    status: 200,
                    content_type: XML,
                    body: w.finish().into_bytes(),
                }
            }
            None => error(
                404,
                "PERSON_NOT_FOUND",
                &format!("No person with that GUID works at {ods}"),
            ),
        }
    }

    fn medical_record(&self, ods: &str, nhs: &str) -> Reply {
        let practice = match self.practice_and_nhs(ods, nhs) {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        match self.store.patient(ods, nhs) {
            Some((_, patient)) => Reply {
                status: 200,
                content_type: XML,
                body: render_record(&practice, &patient).into_bytes(),
            },
            None => patient_not_found(ods),
        }
    }

    /// Checks shared by both writes: the practice, the NHS number, that the patient is
    /// registered there, and an XML body whose root is `root` in the EMIS namespace.
    fn write_preflight<'b>(
        &self,
        ods: &str,
        nhs: &str,
        headers: &hyper::HeaderMap,
        body: &'b [u8],
        root: &str,
    ) -> Result<RequestDoc<'b>, Reply> {
        self.practice_and_nhs(ods, nhs)?;
        if self.store.patient(ods, nhs).is_none() {
            return Err(patient_not_found(ods));
        }
        xml_request(headers, body, root)
    }
}

/// An EMIS Open request body: `application/xml` (or `text/xml`), well-formed as EMIS
/// reads it, its document element `root` in the EMIS namespace; or the native error.
pub(crate) fn xml_request<'b>(
    headers: &hyper::HeaderMap,
    body: &'b [u8],
    root: &str,
) -> Result<RequestDoc<'b>, Reply> {
    let xml_body = headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| v == XML || v == "text/xml");
    if !xml_body {
        return Err(error(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            "The request body must be application/xml",
        ));
    }
    let doc = parse_request(body)?;
    let top = doc.root();
    if top.name() != root || top.namespace() != Some(NAMESPACE) {
        return Err(invalid_request(&format!(
            "The document element must be <{root}> in namespace {NAMESPACE}"
        )));
    }
    Ok(doc)
}

impl Emis {
    /// `POST …/observations`: files an `ObservationBatch`, at most once per `ExternalKey`.
    fn file_observations(
        &self,
        ods: &str,
        nhs: &str,
        headers: &hyper::HeaderMap,
        body: &[u8],
    ) -> Reply {
        let doc = match self.write_preflight(ods, nhs, headers, body, "ObservationBatch") {
            Ok(doc) => doc,
            Err(reply) => return reply,
        };
        let batch = match read_batch(doc.root()) {
            Ok(batch) => batch,
            Err(reply) => return reply,
        };
        let author = match batch.author.as_deref() {
            None => None,
            Some(guid) => match self
                .store
                .practice(ods)
                .and_then(|p| p.clinician(guid).map(|c| c.id.clone()))
            {
                Some(id) => Some(id),
                None => {
                    return invalid_value(&format!(
                        "AuthorID {guid} is not a person who works at {ods}"
                    ));
                }
            },
        };
        let write = ReadingsWrite {
            key: &batch.key,
            date: batch.date,
            readings: &batch.readings,
            external_id: batch.external_id.as_ref(),
            details: &batch.details,
            author: author.as_deref(),
        };
        match self
            .store
            .record_readings(SystemKind::Emis, ods, nhs, write)
        {
            Ok(recorded) => {
                let mut w = XmlWriter::new();
                w.open_with("ObservationBatchResult", &[("xmlns", NAMESPACE)]);
                w.text(
                    "Outcome",
                    if recorded.created {
                        "Created"
                    } else {
                        "AlreadyFiled"
                    },
                );
                for id in &recorded.ids {
                    w.text("EventGUID", id);
                }
                w.close("ObservationBatchResult");
                Reply {
                    status: if recorded.created { 201 } else { 200 },
                    content_type: XML,
                    body: w.finish().into_bytes(),
                }
            }
            Err(e) => write_error(e),
        }
    }

    /// `PUT …/contactdetails`: replaces the contact details if `LastModified` is current.
    fn update_contact_details(
        &self,
        ods: &str,
        nhs: &str,
        headers: &hyper::HeaderMap,
        body: &[u8],
    ) -> Reply {
        let doc = match self.write_preflight(ods, nhs, headers, body, "UpdateContactDetails") {
            Ok(doc) => doc,
            Err(reply) => return reply,
        };
        let (expected, update) = match read_contact_details(doc.root()) {
            Ok(parts) => parts,
            Err(reply) => return reply,
        };
        match self
            .store
            .update_contact(SystemKind::Emis, ods, nhs, expected, update)
        {
            Ok(now) => {
                let mut w = XmlWriter::new();
                w.open_with("ContactDetailsResult", &[("xmlns", NAMESPACE)]);
                w.text("LastModified", &date_time(now));
                w.close("ContactDetailsResult");
                Reply {
                    status: 200,
                    content_type: XML,
                    body: w.finish().into_bytes(),
                }
            }
            Err(WriteError::Conflict(now)) => error(
                409,
                "VERSION_CONFLICT",
                &format!(
                    "The registration was modified after {}; LastModified is now {}",
                    date_time(expected),
                    date_time(now)
                ),
            ),
            Err(e) => write_error(e),
        }
    }
}

/// Most readings one `ObservationBatch` may hold.
pub const MAX_BATCH_OBSERVATIONS: usize = 10;
/// Longest contact detail (phone, email, address part) EMIS Web holds.
pub const MAX_CONTACT_FIELD: usize = 100;

/// The key, date and readings of an `ObservationBatch`, or the native error.
fn read_batch(doc: Element<'_, '_>) -> Result<Batch, Reply> {
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
    let day = doc
        .child_text("AssignedDate")
        .and_then(|d| parse_date(&d))
        .ok_or_else(|| invalid_request("AssignedDate is not a dd/mm/yyyy date"))?;
    let date = match doc.child_text("DatePart").as_deref() {
        Some("YMDT") => {
            let (h, m, s) = doc
                .child_text("AssignedTime")
                .and_then(|t| parse_time(&t))
                .ok_or_else(|| invalid_request("AssignedTime is not HH:MM:SS"))?;
            day.at(h, m, s)
        }
        Some("YMD") if doc.child("AssignedTime").is_none() => day,
        Some("YMD") => {
            return Err(invalid_request(
                "AssignedTime is given with DatePart YMD; a date-only reading has no time",
            ));
        }
        other => {
            return Err(invalid_request(&format!(
                "DatePart is {:?}; readings are filed with DatePart YMDT or YMD",
                other.unwrap_or("")
            )));
        }
    };
    let author = doc.child_text("AuthorID").map(Cow::into_owned);
    let details = Qualifiers {
        panel_interpretation: read_code(doc, "Interpretation", INTERPRETATION_SCHEMES)?,
        body_site: read_code(doc, "BodySite", &["SNOMED"])?,
        ..Qualifiers::default()
    };
    let items: Vec<Element> = doc.children_named("Observation").collect();
    if items.is_empty() || items.len() > MAX_BATCH_OBSERVATIONS {
        return Err(invalid_request(&format!(
            "An ObservationBatch holds 1 to {MAX_BATCH_OBSERVATIONS} Observation elements, not {}",
            items.len()
        )));
    }
    let mut readings = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let at = format!("Observation[{}]", i + 1);
        let code = item
            .child("Code")
            .ok_or_else(|| invalid_request(&format!("{at}/Code is missing")))?;
        let value = code.required_text("Value", || {
            invalid_request(&format!("{at}/Code/Value is missing"))
        })?;
        let scheme = code.child_text("Scheme").unwrap_or_default();
        let concept = match &*scheme {
            "READ2" => concepts::measurement_by_read2(&value),
            "SNOMED" => concepts::measurement_by_snomed(&value),
            _ => {
                return Err(error(
                    422,
                    "UNKNOWN_CODE",
                    &format!(
                        "{at}/Code/Scheme is {scheme:?}; readings are filed with READ2 or SNOMED codes"
                    ),
                ));
            }
        }
        .ok_or_else(|| {
            error(
                422,
                "UNKNOWN_CODE",
                &format!("{scheme} code {value} is not a measurement EMIS Web files with a value"),
            )
        })?;
        let number = item
            .child_text("NumericValue")
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite())
            .ok_or_else(|| invalid_request(&format!("{at}/NumericValue is not a number")))?;
        let units = item.required_text("Units", || {
            invalid_request(&format!("{at}/Units is missing"))
        })?;
        if Some(&*units) != concept.units {
            return Err(error(
                422,
                "UNITS_MISMATCH",
                &format!(
                    "{} ({value}) is recorded in {}, not {units}",
                    concept.term,
                    concept.units.unwrap_or("")
                ),
            ));
        }
        readings.push(NewReading {
            concept,
            value: number,
            interpretation: read_code(item, "Interpretation", INTERPRETATION_SCHEMES)?,
        });
    }
    Ok(Batch {
        key: key.into_owned(),
        date,
        readings,
        external_id,
        author,
        details,
    })
}

/// Schemes an interpretation is coded in: HL7 v3 ObservationInterpretation (`H`, `L`,
/// `N`, …) or SNOMED CT.
const INTERPRETATION_SCHEMES: &[&str] = &["HL7V3", "SNOMED"];

/// An optional coded element (`<Interpretation>`, `<BodySite>`: `Value`, `Scheme`,
/// `Term`) in one of `schemes`, kept with its native scheme; or the native error.
fn read_code(parent: Element<'_, '_>, name: &str, schemes: &[&str]) -> Result<Option<Code>, Reply> {
    let Some(e) = parent.child(name) else {
        return Ok(None);
    };
    let value = e.required_text("Value", || {
        invalid_request(&format!("{name}/Value is missing"))
    })?;
    let scheme = e.child_text("Scheme").unwrap_or_default();
    if !schemes.contains(&&*scheme) {
        return Err(error(
            422,
            "UNKNOWN_CODE",
            &format!(
                "{name}/Scheme is {scheme:?}; EMIS Web holds a {name} coded in {}",
                schemes.join(" or ")
            ),
        ));
    }
    Ok(Some(Code {
        system: scheme.into_owned(),
        code: value.into_owned(),
        display: e.child_text("Term").map(Cow::into_owned),
    }))
}

/// What an `ObservationBatch` asks EMIS Web to file.
struct Batch {
    key: String,
    date: SimDate,
    readings: Vec<NewReading>,
    external_id: Option<ExternalId>,
    /// `AuthorID`: the practice clinician who took the readings.
    author: Option<String>,
    /// The batch's `Interpretation` (a panel's own) and `BodySite`.
    details: Qualifiers,
}

/// The expected `LastModified` and the new details of an `UpdateContactDetails`.
fn read_contact_details(doc: Element<'_, '_>) -> Result<(SimDate, ContactUpdate), Reply> {
    let expected = doc
        .child_text("LastModified")
        .and_then(|t| parse_date_time(&t))
        .ok_or_else(|| invalid_request("LastModified is not dd/mm/yyyy HH:MM:SS"))?;
    let field = |e: Option<Element>, name: &str| -> Result<String, Reply> {
        let v = e.and_then(|e| e.child_text(name)).unwrap_or_default();
        if v.chars().count() > MAX_CONTACT_FIELD {
            return Err(invalid_value(&format!(
                "{name} is longer than {MAX_CONTACT_FIELD} characters"
            )));
        }
        Ok(v.into_owned())
    };
    let optional = |name: &str| -> Result<Option<String>, Reply> {
        let v = field(Some(doc), name)?;
        Ok((!v.is_empty()).then_some(v))
    };
    let a = doc.child("Address");
    let address = Address {
        house: field(a, "HouseNameFlat")?,
        street: field(a, "Street")?,
        village: field(a, "Village")?,
        town: field(a, "Town")?,
        county: field(a, "County")?,
        postcode: field(a, "PostCode")?,
    };
    let home_phone = optional("HomeTelephone")?;
    let mobile = optional("MobileTelephone")?;
    for (name, phone) in [("HomeTelephone", &home_phone), ("MobileTelephone", &mobile)] {
        let ok = phone.as_deref().is_none_or(|p| {
            p.bytes().any(|b| b.is_ascii_digit())
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || b" +()-".contains(&b))
        });
        if !ok {
            return Err(invalid_value(&format!(
                "{name} may hold only digits, spaces and + ( ) -"
            )));
        }
    }
    let email = optional("Email")?;
    let email_ok = email.as_deref().is_none_or(|e| {
        e.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.contains('@')
        }) && !e.contains(char::is_whitespace)
    });
    if !email_ok {
        return Err(invalid_value("Email is not an email address"));
    }
    let language = doc
        .child("MainSpokenLanguage")
        .and_then(|l| l.child_text("Value"))
        .map(Cow::into_owned);
    if let Some(code) = language.as_deref().filter(|c| !language_code_ok(c)) {
        return Err(invalid_value(&format!(
            "MainSpokenLanguage/Value {code:?} is not a language code"
        )));
    }
    Ok((
        expected,
        ContactUpdate {
            home_phone,
            mobile,
            email,
            address,
            language,
        },
    ))
}

/// A UK Core HumanLanguage code: `cy`, `pl`, `q4`, `en-GB`.
fn language_code_ok(code: &str) -> bool {
    let (base, region) = match code.split_once('-') {
        Some((b, r)) => (b, Some(r)),
        None => (code, None),
    };
    (2..=3).contains(&base.len())
        && base
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && region.is_none_or(|r| {
            (2..=8).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

/// `dd/mm/yyyy`, a real calendar date.
fn parse_date(s: &str) -> Option<SimDate> {
    let b = s.as_bytes();
    if b.len() != 10 || b[2] != b'/' || b[5] != b'/' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| {
        s.get(r)
            .filter(|p| p.bytes().all(|c| c.is_ascii_digit()))?
            .parse::<u16>()
            .ok()
    };
    let (d, m, y) = (num(0..2)?, num(3..5)?, num(6..10)?);
    let (d, m) = (u8::try_from(d).ok()?, u8::try_from(m).ok()?);
    let y = i32::from(y);
    let days_in_month = crate::date::days_in_month(y, m.clamp(1, 12));
    ((1..=12).contains(&m) && d >= 1 && d <= days_in_month && y >= 1).then(|| SimDate::ymd(y, m, d))
}

/// `HH:MM:SS`.
fn parse_time(s: &str) -> Option<(u8, u8, u8)> {
    let b = s.as_bytes();
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| {
        s.get(r)
            .filter(|p| p.bytes().all(|c| c.is_ascii_digit()))?
            .parse::<u8>()
            .ok()
    };
    let (h, m, sec) = (num(0..2)?, num(3..5)?, num(6..8)?);
    (h < 24 && m < 60 && sec < 60).then_some((h, m, sec))
}

/// `dd/mm/yyyy HH:MM:SS`, as `LastModified` is rendered.
pub(crate) fn parse_date_time(s: &str) -> Option<SimDate> {
    let (date, time) = s.split_once(' ')?;
    let (h, m, sec) = parse_time(time)?;
    Some(parse_date(date)?.at(h, m, sec))
}

/// How EMIS Open reads a request: no DTDs, CDATA, processing instructions or prefixed
/// names, children only in their parent's namespace, at most 16 levels deep.
const READ_RULES: ReadRules = ReadRules {
    max_depth: 16,
    plain: true,
};

/// Parses a write body as EMIS reads it; anything else is `400 INVALID_REQUEST`.
pub(crate) fn parse_request(body: &[u8]) -> Result<RequestDoc<'_>, Reply> {
    RequestDoc::parse(body, READ_RULES)
        .map_err(|e| invalid_request(&format!("The body is not an EMIS Open request: {e}")))
}

/// A refused store write in the native error format.
fn write_error(e: WriteError) -> Reply {
    match e {
        WriteError::PracticeNotFound(ods) => practice_not_found(&ods),
        WriteError::PatientNotFound(ods) => patient_not_found(&ods),
        WriteError::Conflict(now) => error(
            409,
            "VERSION_CONFLICT",
            &format!(
                "The registration was modified; LastModified is now {}",
                date_time(now)
            ),
        ),
        WriteError::Invalid(message) => invalid_value(&message),
    }
}

pub(crate) fn practice_not_found(ods: &str) -> Reply {
    error(
        404,
        "PRACTICE_NOT_FOUND",
        &format!("No EMIS Web practice with ODS code {ods}"),
    )
}

pub(crate) fn patient_not_found(ods: &str) -> Reply {
    error(
        404,
        "PATIENT_NOT_FOUND",
        &format!("No patient with that NHS number is registered at {ods}"),
    )
}

pub(crate) fn invalid_request(message: &str) -> Reply {
    error(400, "INVALID_REQUEST", message)
}

pub(crate) fn invalid_value(message: &str) -> Reply {
    error(422, "INVALID_VALUE", message)
}

pub(crate) fn method_not_allowed(allowed: &str) -> Reply {
    error(
        405,
        "METHOD_NOT_ALLOWED",
        &format!("Only {allowed} is supported here"),
    )
}

fn health() -> Reply {
    let mut w = XmlWriter::new();
    w.open("Health");
    w.text("Status", "OK");
    w.close("Health");
    Reply {
        status: 200,
        content_type: XML,
        body: w.finish().into_bytes(),
    }
}

pub(crate) fn error(status: u16, code: &str, message: &str) -> Reply {
    let mut w = XmlWriter::new();
    w.open_with("Error", &[("xmlns", NAMESPACE)]);
    w.text("Code", code);
    w.text("Message", message);
    w.close("Error");
    Reply {
        status,
        content_type: XML,
        body: w.finish().into_bytes(),
    }
}

/// Renders a patient's whole record as an EMIS MedicalRecord document.
pub fn render_record(practice: &Practice, p: &SimPatient) -> String {
    let mut w = XmlWriter::new();
    w.open_with("MedicalRecord", &[("xmlns", NAMESPACE)]);

    w.open("Registration");
    w.text("GUID", &p.id);
    w.text("Title", &p.title);
    w.text("FirstNames", &p.given.join(" "));
    w.text("FamilyName", &p.family);
    w.text("DateOfBirth", &date(p.birth_date));
    w.text("Sex", sex(p.sex));
    w.text("NhsNumber", &spaced_nhs(&p.nhs_number));
    w.text("NhsNumberStatus", &p.nhs_status);
    address(&mut w, &p.address);
    w.opt("HomeTelephone", p.home_phone.as_deref());
    w.opt("MobileTelephone", p.mobile.as_deref());
    w.opt("Email", p.email.as_deref());
    if let Some(code) = p.language.as_deref() {
        w.open("MainSpokenLanguage");
        w.text("Value", code);
        w.opt("Term", crate::languages::name(code));
        w.close("MainSpokenLanguage");
    }
    w.text("UsualGpID", &p.usual_gp);
    w.text("DateOfRegistration", &date(p.registered_on));
    w.text("DateOfDeath", &p.deceased_on.map(date).unwrap_or_default());
    w.text("Confidential", bool_text(p.flags.sensitive));
    w.text("SharingDissent", bool_text(p.flags.dissent));
    w.text("LastModified", &date_time(p.last_modified));
    w.close("Registration");

    w.open("Organisation");
    w.text("GUID", &practice.guid);
    w.text("Name", &practice.name);
    w.text("OdsCode", &practice.ods);
    address(&mut w, &practice.address);
    w.text("Telephone", &practice.phone);
    w.close("Organisation");

    w.open("PeopleList");
    for c in &practice.clinicians {
        w.open("Person");
        person(&mut w, c);
        w.close("Person");
    }
    w.close("PeopleList");

    w.open("ConsultationList");
    for c in &p.consultations {
        w.open("Consultation");
        w.text("GUID", &c.meta.id);
        assigned(&mut w, c.meta.date, true);
        w.text("UserID", &c.clinician);
        w.open("Type");
        coded(&mut w, "Code", c.kind, &c.meta);
        w.close("Type");
        w.text("Duration", &c.duration_minutes.to_string());
        w.close("Consultation");
    }
    w.close("ConsultationList");

    w.open("EventList");
    for x in &p.problems {
        event_head(&mut w, "Problem", &x.meta, x.concept);
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
        w.text("EndDate", &x.end_date.map(date).unwrap_or_default());
        w.close("Problem");
        event_tail(&mut w, &x.meta);
    }
    // A diastolic reading names the systolic one it was taken with (EMIS's parent link).
    let parents: Vec<(usize, usize)> = crate::model::blood_pressure_pairs(&p.observations);
    for (i, x) in p.observations.iter().enumerate() {
        event_head(&mut w, "Observation", &x.meta, x.concept);
        if let Some(v) = x.value {
            w.text("NumericValue", &v.to_string());
            w.text("Units", x.units.unwrap_or(""));
        }
        if let Some((s, _)) = parents.iter().find(|(_, d)| *d == i) {
            w.text("ParentGUID", &p.observations[*s].meta.id);
        }
        if let Some(ext) = &x.meta.external_id {
            external_identifier(&mut w, ext);
        }
        // What EMIS holds of a written reading's details: interpretations and body site
        // (method, device and other codings have nowhere to go in EMIS Web).
        if let Some(q) = &x.qualifiers {
            qualifier(&mut w, "Interpretation", q.interpretation.as_ref());
            qualifier(
                &mut w,
                "PanelInterpretation",
                q.panel_interpretation.as_ref(),
            );
            qualifier(&mut w, "BodySite", q.body_site.as_ref());
        }
        event_tail(&mut w, &x.meta);
    }
    for x in &p.immunisations {
        event_head(&mut w, "Immunisation", &x.meta, x.concept);
        w.text("Batch", &x.batch);
        w.text("DoseSequence", &x.dose_sequence.to_string());
        event_tail(&mut w, &x.meta);
    }
    w.close("EventList");

    w.open("AllergyList");
    for a in &p.allergies {
        w.open("Allergy");
        w.text("GUID", &a.meta.id);
        assigned(&mut w, a.meta.date, true);
        w.text("AuthorID", &a.meta.author);
        coded(&mut w, "Code", a.concept, &a.meta);
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
        w.text("EndDate", &a.end_date.map(date).unwrap_or_default());
        if let Some(r) = a.reaction {
            coded(&mut w, "Reaction", r, &a.meta);
        }
        w.text(
            "Severity",
            match a.severity {
                Severity::Mild => "Mild",
                Severity::Moderate => "Moderate",
                Severity::Severe => "Severe",
            },
        );
        w.text("Confidential", bool_text(a.meta.confidential));
        w.close("Allergy");
    }
    w.close("AllergyList");

    w.open("MedicationList");
    for m in &p.medications {
        w.open("Medication");
        w.text("GUID", &m.meta.id);
        // DatePart is left out for full dates here: the doc makes YMD the default, and
        // readers must handle its absence.
        assigned(&mut w, m.meta.date, false);
        w.text("AuthorID", &m.meta.author);
        w.open("Drug");
        coded(&mut w, "Code", m.drug, &m.meta);
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
        w.text("EndDate", &m.end_date.map(date).unwrap_or_default());
        w.text("Confidential", bool_text(m.meta.confidential));
        w.close("Medication");
    }
    w.close("MedicationList");

    w.close("MedicalRecord");
    w.finish()
}

/// A `Person`'s children, in the record's `PeopleList` and in a people read alike.
fn person(w: &mut XmlWriter, c: &Clinician) {
    w.text("GUID", &c.id);
    w.text("Title", &c.title);
    w.text("FirstNames", &c.given);
    w.text("FamilyName", &c.family);
    w.text("Sex", sex(c.sex));
    w.text("Role", &c.role);
    w.text("SdsUserId", &c.sds_user_id);
    w.text("GmcCode", c.gmc.as_deref().unwrap_or(""));
}

fn event_head(w: &mut XmlWriter, kind: &str, meta: &EntryMeta, concept: &Concept) {
    w.open("Event");
    w.text("GUID", &meta.id);
    w.text("EventType", kind);
    assigned(w, meta.date, true);
    // Entries a third-party supplier filed have no practice author: no AuthorID at all.
    w.opt(
        "AuthorID",
        Some(meta.author.as_str()).filter(|a| !a.is_empty()),
    );
    w.opt("ConsultationID", meta.consultation.as_deref());
    coded(w, "Code", concept, meta);
}

/// A written reading's coded detail, as filed: `Value`, `Scheme`, `Term`.
fn qualifier(w: &mut XmlWriter, tag: &str, code: Option<&Code>) {
    if let Some(c) = code {
        w.open(tag);
        w.text("Value", &c.code);
        w.text("Scheme", &c.system);
        w.opt("Term", c.display.as_deref());
        w.close(tag);
    }
}

/// `<ExternalIdentifier>`: the supplier's identifier of a reading it filed.
fn external_identifier(w: &mut XmlWriter, ext: &ExternalId) {
    w.open("ExternalIdentifier");
    w.text("System", &ext.system);
    w.text("Value", &ext.value);
    w.close("ExternalIdentifier");
}

fn event_tail(w: &mut XmlWriter, meta: &EntryMeta) {
    w.text("Confidential", bool_text(meta.confidential));
    w.close("Event");
}

/// `AssignedDate`, `DatePart` and (for YMDT) `AssignedTime`.
fn assigned(w: &mut XmlWriter, d: SimDate, always_date_part: bool) {
    w.text("AssignedDate", &date(d));
    let part = match d.precision() {
        Precision::Y => "Y",
        Precision::YM => "YM",
        Precision::YMD => "YMD",
        Precision::YMDT => "YMDT",
    };
    if always_date_part || d.precision() != Precision::YMD {
        w.text("DatePart", part);
    }
    if let Some((h, m, s)) = d.time {
        w.text("AssignedTime", &format!("{h:02}:{m:02}:{s:02}"));
    }
}

/// Writes a coded item inside `<tag>`. Which scheme EMIS would use: dm+d for drugs,
/// its local code where it has one, SNOMED for concepts without Read v2 and for some
/// recent entries (EMIS moved to SNOMED CT in 2018), Read v2 otherwise. Which entries
/// carry a SNOMED `MapCode` depends on the entry GUID, so output stays deterministic.
fn coded(w: &mut XmlWriter, tag: &str, c: &Concept, meta: &EntryMeta) {
    let odd = meta.id.bytes().last().is_some_and(|b| b % 2 == 1);
    let (value, scheme, map) = if let Some(dmd) = c.dmd {
        (dmd, "DMD", false)
    } else if let Some(local) = c.emis {
        (local, "EMISCLINICAL", true)
    } else if let (Some(read2), Some(_)) = (c.read2, &meta.external_key) {
        // Filed through the write API: shown with the code it was filed with.
        (read2, "READ2", false)
    } else {
        match c.read2 {
            Some(read2) if !(meta.date.year >= 2023 && odd) => (read2, "READ2", !odd),
            _ => (c.snomed, "SNOMED", false),
        }
    };
    w.open(tag);
    w.text("Value", value);
    w.text("Scheme", scheme);
    w.text("Term", c.term);
    if map {
        w.text("MapCode", c.snomed);
        w.text("MapScheme", "SNOMED");
    }
    w.close(tag);
}

fn address(w: &mut XmlWriter, a: &Address) {
    w.open("Address");
    w.text("HouseNameFlat", &a.house);
    w.text("Street", &a.street);
    w.text("Village", &a.village);
    w.text("Town", &a.town);
    w.text("County", &a.county);
    w.text("PostCode", &a.postcode);
    w.close("Address");
}

/// `dd/mm/yyyy` with `00` for unknown parts.
fn date(d: SimDate) -> String {
    format!(
        "{:02}/{:02}/{:04}",
        d.day.unwrap_or(0),
        d.month.unwrap_or(0),
        d.year
    )
}

pub(crate) fn date_time(d: SimDate) -> String {
    let (h, m, s) = d.time.unwrap_or((0, 0, 0));
    format!("{} {h:02}:{m:02}:{s:02}", date(d))
}

pub(crate) fn sex(s: Sex) -> &'static str {
    match s {
        Sex::Male => "M",
        Sex::Female => "F",
        Sex::Indeterminate => "I",
        Sex::Unknown => "U",
    }
}

fn bool_text(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// `9690937278` → `969 093 7278`.
pub(crate) fn spaced_nhs(n: &str) -> String {
    match (n.get(0..3), n.get(3..6), n.get(6..)) {
        (Some(a), Some(b), Some(c)) => format!("{a} {b} {c}"),
        _ => n.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quirky_formats() {
        assert_eq!(spaced_nhs("9690937278"), "969 093 7278");
        assert_eq!(
            date(SimDate::ymd(1998, 3, 2).truncate(Precision::Y)),
            "00/00/1998"
        );
        assert_eq!(
            date(SimDate::ymd(1998, 3, 2).truncate(Precision::YM)),
            "00/03/1998"
        );
        assert_eq!(
            date_time(SimDate::ymd(2024, 1, 15).at(10, 30, 0)),
            "15/01/2024 10:30:00"
        );
        assert_eq!(
            remove_element(b"<a>\n  <NhsNumber>1</NhsNumber>\n  <b/></a>", "NhsNumber"),
            b"<a>\n  <b/></a>"
        );
    }

    #[test]
    fn request_parser_reads_what_writers_send() {
        let body = "\u{feff}<?xml version=\"1.0\"?>\n<!-- c --><A xmlns='urn:a' x=\"1\">\
             <B>x &amp; &lt;y&gt; &#65;&#x42; &quot;&apos;</B><C/><!-- c --><D><E> t </E></D>\
             <F xmlns=\"urn:other\">no</F><G>a<!-- <![CDATA[ -->b</G></A>\n";
        let parsed = RequestDoc::parse(body.as_bytes(), READ_RULES).unwrap();
        let doc = parsed.root();
        assert_eq!((doc.name(), doc.namespace()), ("A", Some("urn:a")));
        assert_eq!(doc.child_text("B").as_deref(), Some("x & <y> AB \"'"));
        assert_eq!(doc.child_text("C"), None, "empty is absent");
        assert_eq!(
            doc.child("D").and_then(|d| d.child_text("E")).as_deref(),
            Some("t")
        );
        assert_eq!(doc.child_text("F"), None, "another namespace is not ours");
        assert_eq!(
            doc.child_text("G").as_deref(),
            Some("ab"),
            "text around a comment"
        );
        for bad in [
            "",
            "<A>",
            "<A></B>",
            "<A><B></A>",
            "<A x=1/>",
            "<A>&bogus;</A>",
            "<A/><B/>",
            "<!DOCTYPE A><A/>",
            "<a:A xmlns:a='urn:a'/>",
            "<A><a:B xmlns:a='urn:a'/></A>",
            "<A xmlns:a='urn:a' a:x='1'/>",
            "<A><![CDATA[x]]></A>",
            "<A><?pi x?></A>",
        ] {
            assert!(parse_request(bad.as_bytes()).is_err(), "{bad}");
        }
        let deep = format!("{}{}", "<A>".repeat(40), "</A>".repeat(40));
        assert!(parse_request(deep.as_bytes()).is_err());
        let limit = format!("{}{}", "<A>".repeat(16), "</A>".repeat(16));
        assert!(parse_request(limit.as_bytes()).is_ok());
        let over = format!("{}{}", "<A>".repeat(17), "</A>".repeat(17));
        assert!(parse_request(over.as_bytes()).is_err());
        assert!(parse_request(b"<A>\xC3\x28</A>").is_err());
    }

    fn batch(inner: &str) -> Result<Batch, Reply> {
        let body = format!(
            "<ObservationBatch xmlns=\"{NAMESPACE}\"><ExternalKey>k-1</ExternalKey>{inner}</ObservationBatch>"
        );
        let doc = parse_request(body.as_bytes())?;
        read_batch(doc.root())
    }

    fn refused_code(r: Result<Batch, Reply>) -> (u16, String) {
        let reply = r.err().expect("refused");
        let text = String::from_utf8(reply.body).unwrap();
        let code = text
            .split("<Code>")
            .nth(1)
            .unwrap()
            .split('<')
            .next()
            .unwrap();
        (reply.status, code.to_owned())
    }

    #[test]
    fn a_batch_carries_date_only_snomed_codes_interpretations_body_site_and_author() {
        let b = batch(
            "<AssignedDate>14/07/2026</AssignedDate><DatePart>YMD</DatePart>\
             <AuthorID>{ABC}</AuthorID>\
             <Interpretation><Value>H</Value><Scheme>HL7V3</Scheme><Term>High</Term></Interpretation>\
             <BodySite><Value>368209003</Value><Scheme>SNOMED</Scheme><Term>Right arm</Term></BodySite>\
             <Observation><Code><Value>431314004</Value><Scheme>SNOMED</Scheme></Code>\
             <NumericValue>97</NumericValue><Units>%</Units>\
             <Interpretation><Value>N</Value><Scheme>HL7V3</Scheme></Interpretation></Observation>",
        )
        .ok()
        .unwrap();
        assert_eq!(b.date, SimDate::ymd(2026, 7, 14), "a date alone");
        assert_eq!(b.author.as_deref(), Some("{ABC}"));
        assert_eq!(b.readings[0].concept.snomed, "431314004");
        assert_eq!(
            b.readings[0]
                .interpretation
                .as_ref()
                .map(|c| c.code.as_str()),
            Some("N")
        );
        assert_eq!(
            b.details
                .panel_interpretation
                .as_ref()
                .map(|c| (c.system.as_str(), c.code.as_str())),
            Some(("HL7V3", "H"))
        );
        assert_eq!(
            b.details
                .body_site
                .as_ref()
                .and_then(|c| c.display.as_deref()),
            Some("Right arm")
        );

        let reading = "<Observation><Code><Value>22A..</Value><Scheme>READ2</Scheme></Code>\
                       <NumericValue>70</NumericValue><Units>kg</Units></Observation>";
        let ymd_with_time = format!(
            "<AssignedDate>14/07/2026</AssignedDate><DatePart>YMD</DatePart><AssignedTime>08:00:00</AssignedTime>{reading}"
        );
        assert_eq!(
            refused_code(batch(&ymd_with_time)),
            (400, "INVALID_REQUEST".into())
        );
        let site_in_v3 = format!(
            "<AssignedDate>14/07/2026</AssignedDate><DatePart>YMD</DatePart>\
             <BodySite><Value>H</Value><Scheme>HL7V3</Scheme></BodySite>{reading}"
        );
        assert_eq!(
            refused_code(batch(&site_in_v3)),
            (422, "UNKNOWN_CODE".into())
        );
        let unknown_snomed = "<AssignedDate>14/07/2026</AssignedDate><DatePart>YMD</DatePart>\
             <Observation><Code><Value>38341003</Value><Scheme>SNOMED</Scheme></Code>\
             <NumericValue>1</NumericValue><Units>kg</Units></Observation>";
        assert_eq!(
            refused_code(batch(unknown_snomed)),
            (422, "UNKNOWN_CODE".into())
        );
    }

    #[test]
    fn write_values_are_checked() {
        assert_eq!(parse_date("29/02/2024"), Some(SimDate::ymd(2024, 2, 29)));
        assert_eq!(parse_date("29/02/2023"), None);
        assert_eq!(parse_date("00/00/2023"), None);
        assert_eq!(
            parse_date_time("15/01/2024 10:30:00"),
            Some(SimDate::ymd(2024, 1, 15).at(10, 30, 0))
        );
        assert_eq!(parse_date_time("15/01/2024 24:00:00"), None);
        for ok in ["en", "cy", "q4", "en-GB", "zh-Hant"] {
            assert!(language_code_ok(ok), "{ok}");
        }
        for bad in ["", "e", "English", "EN", "en-", "en GB"] {
            assert!(!language_code_ok(bad), "{bad}");
        }
    }
}
