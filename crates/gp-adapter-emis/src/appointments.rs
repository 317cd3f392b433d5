//! EMIS Web's appointment book (`docs/native-formats/emis.md`, "Appointment book"): the
//! native calls and the mapping between EMIS Open XML and the vendor-neutral
//! [`gp_adapter::appointments`] types.
//!
//! EMIS records UK local wall-clock times without an offset; they become UTC instants
//! here, and requests carry UTC instants converted back. Every answer is mapped whole or
//! refused as [`AdapterError::InvalidNativeData`], never half-mapped.

use std::collections::HashSet;

use gp_adapter::appointments::{
    AppointmentBook, AppointmentChange, AppointmentStatus, BookClinician, BookLocation,
    BookSession, BookSlot, BookedAppointment, DeliveryChannel, JobRole, NewAppointment, SlotStatus,
};
use gp_adapter::native::{Call, Method, NativeResponse, refusal_detail, status_error};
use gp_adapter::time::is_bst_local;
use gp_adapter::xml::{Document, Node};
use gp_adapter::{
    AdapterError, AppointmentRequest, BookRequest, Booked, ChangeAppointmentRequest,
    PatientAppointmentsRequest, SlotSearchRequest, UtcDateTime, uk_core,
};
use gp_fhir::text::shown;
use gp_fhir::{NhsNumber, OdsCode};

use crate::client::EmisClient;
use crate::error::EmisDataError;
use crate::mapping::{Doc, XML, document, parse_error_document};
use crate::{NS, SYSTEM};

type Result<T> = std::result::Result<T, AdapterError>;

// ---- UK local time -------------------------------------------------------------------

/// Days from 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm).
fn days_from_civil(y: i32, m: u8, d: u8) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `z` days from 1970-01-01.
fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // Day 1..=31 and month 1..=12 by construction; years stay in range for any date
    // a GP system holds.
    (
        i32::try_from(y).unwrap_or(i32::MAX),
        u8::try_from(m).unwrap_or(1),
        u8::try_from(d).unwrap_or(1),
    )
}

/// Seconds since 1970-01-01 00:00:00 of a date-time.
fn seconds(t: UtcDateTime) -> i64 {
    days_from_civil(t.year, t.month, t.day) * 86_400
        + i64::from(t.hour) * 3600
        + i64::from(t.minute) * 60
        + i64::from(t.second)
}

/// The date-time `s` seconds after 1970-01-01 00:00:00.
fn from_seconds(s: i64) -> UtcDateTime {
    let (year, month, day) = civil_from_days(s.div_euclid(86_400));
    let rest = s.rem_euclid(86_400);
    // Each part is below 60 (or 24) by construction.
    let part = |v: i64| u8::try_from(v).unwrap_or(0);
    UtcDateTime {
        year,
        month,
        day,
        hour: part(rest / 3600),
        minute: part(rest % 3600 / 60),
        second: part(rest % 60),
    }
}

/// The UTC instant of a UK wall-clock time. In the repeated autumn hour the first (BST)
/// reading is taken, and a time in the skipped spring hour is read as BST: the rule of
/// [`is_bst_local`], which EMIS Web follows too.
pub fn utc_from_local(local: UtcDateTime) -> UtcDateTime {
    if is_bst_local(local.year, local.month, local.day, local.hour) {
        from_seconds(seconds(local) - 3600)
    } else {
        local
    }
}

/// An instant as EMIS writes it: UK local `dd/mm/yyyy HH:MM:SS`.
pub fn local_text(utc: UtcDateTime) -> String {
    let l = utc.uk_local();
    format!(
        "{:02}/{:02}/{:04} {:02}:{:02}:{:02}",
        l.day, l.month, l.year, l.hour, l.minute, l.second
    )
}

/// EMIS's UK local `dd/mm/yyyy HH:MM:SS` as a UTC instant; `None` when it is not a real
/// date and time of day.
pub fn parse_local(raw: &str) -> Option<UtcDateTime> {
    let (date, time) = raw.trim().split_once(' ')?;
    let num = |s: &str, width: usize| -> Option<u32> {
        (s.len() == width && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let mut d = date.split('/');
    let (day, month, year) = (num(d.next()?, 2)?, num(d.next()?, 2)?, num(d.next()?, 4)?);
    let mut t = time.trim().split(':');
    let (hour, minute, second) = (num(t.next()?, 2)?, num(t.next()?, 2)?, num(t.next()?, 2)?);
    if d.next().is_some() || t.next().is_some() {
        return None;
    }
    let (year, month, day) = (
        i32::try_from(year).ok()?,
        u8::try_from(month).ok()?,
        u8::try_from(day).ok()?,
    );
    let real = (1..=12).contains(&month)
        && day >= 1
        && day <= gp_fhir::date::days_in_month(year, month)
        && hour < 24
        && minute < 60
        && second < 60;
    real.then(|| {
        utc_from_local(UtcDateTime {
            year,
            month,
            day,
            hour: u8::try_from(hour).unwrap_or(0),
            minute: u8::try_from(minute).unwrap_or(0),
            second: u8::try_from(second).unwrap_or(0),
        })
    })
}

/// `dd/mm/yyyy HH:MM:SS` for a URL query (the space percent-encoded).
fn query_time(t: UtcDateTime) -> String {
    local_text(t).replace(' ', "%20")
}

// ---- ids -----------------------------------------------------------------------------

/// The id the adapter gives an EMIS GUID: braces dropped, lower case, `[a-z0-9.-]`, at
/// most 56 characters (the gateway prefixes it with the practice's ODS code).
pub fn native_id(raw: &str) -> Option<String> {
    uk_core::guid_id(raw).filter(|id| id.len() <= 56 && !id.bytes().all(|b| b == b'.'))
}

/// Whether `id` can be one the adapter gave out (and so is safe in a URL path).
pub(crate) fn is_id(id: &str) -> bool {
    (1..=56).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !id.bytes().all(|b| b == b'.')
}

// ---- native calls --------------------------------------------------------------------

/// Which appointment call was refused: a refusal means something else for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    SearchSlots,
    Book,
    Read,
    List,
    Change,
}

/// Maps a refused appointment call: EMIS's own codes first (`SLOT_UNAVAILABLE` is a
/// taken slot, not a stale version, though both are `409`), then the shared status table.
fn refused(op: Op, what: &str, response: &NativeResponse) -> AdapterError {
    let native = parse_error_document(&response.body);
    let code = native.as_ref().map(|(c, _)| c.as_str());
    let detail = refusal_detail(
        response.status,
        native.as_ref().map(|(c, m)| (c.as_str(), m.as_str())),
        "an EMIS error document",
    );
    let not_found = |what: String| AdapterError::NotFound {
        system: SYSTEM,
        what,
    };
    match (response.status, code, op) {
        (409, Some("SLOT_UNAVAILABLE"), Op::Book) => AdapterError::SlotUnavailable {
            system: SYSTEM,
            detail,
        },
        (404, Some("SLOT_NOT_FOUND"), Op::Book) => AdapterError::Unprocessable {
            system: SYSTEM,
            detail,
        },
        (404, Some("PRACTICE_NOT_FOUND"), Op::SearchSlots | Op::Change) => {
            not_found(format!("practice {what}"))
        }
        (404, Some("APPOINTMENT_NOT_FOUND"), Op::Change | Op::Read) => {
            not_found(format!("appointment {what}"))
        }
        (404, Some("PATIENT_NOT_FOUND" | "PRACTICE_NOT_FOUND"), Op::Book | Op::List) => {
            AdapterError::PatientNotFound
        }
        (status, _, op) => {
            let call = match op {
                Op::Book | Op::Change => Call::Write,
                Op::SearchSlots | Op::Read | Op::List => Call::Read,
            };
            status_error(SYSTEM, call, status, false, detail)
        }
    }
}

fn unprocessable(detail: impl Into<String>) -> AdapterError {
    AdapterError::Unprocessable {
        system: SYSTEM,
        detail: detail.into(),
    }
}

/// `GET /emis/practices/{ODS}/slots?From=…&To=…`, widened by an hour each side (a local
/// time in the repeated autumn hour names two instants) and cut back to the instants
/// asked for here.
pub async fn search_slots(client: &EmisClient, req: &SlotSearchRequest) -> Result<AppointmentBook> {
    let ods = req.practice.as_str();
    let end = req.end.max(req.start);
    let path = format!(
        "/emis/practices/{ods}/slots?From={}&To={}",
        query_time(from_seconds(seconds(req.start) - 3600)),
        query_time(from_seconds(seconds(end) + 3600)),
    );
    let body = client
        .native()
        .get(&path, &req.context)
        .await?
        .ok_body(|r| refused(Op::SearchSlots, ods, r))?;
    map_slot_search(&body, req.start, req.end)
}

/// A slot search's `AppointmentBook` answer: the slots starting in `[start, end)`, with
/// the sessions, people and sites they lead to.
pub fn map_slot_search(
    body: &[u8],
    start: UtcDateTime,
    end: UtcDateTime,
) -> Result<AppointmentBook> {
    Ok(map_book(body)?.within(start, end))
}

/// `POST /emis/practices/{ODS}/patients/{NHS}/appointments` with a `BookAppointment`.
pub async fn book(client: &EmisClient, req: &BookRequest) -> Result<Booked> {
    let a = &req.appointment;
    let request = render_booking(a)?;
    let path = format!(
        "/emis/practices/{}/patients/{}/appointments",
        req.practice.as_str(),
        a.nhs_number
    );
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
        .created_body(|r| refused(Op::Book, req.practice.as_str(), r))?;
    let appointment = map_appointment_document(&body)?;
    if appointment.nhs_number != a.nhs_number && !created {
        // The key is the practice's: one a supplier reused for another patient answers
        // that patient's appointment, which must not be passed on.
        return Err(unprocessable(format!(
            "the idempotency key {} was used for a booking of another patient",
            shown(&a.key)
        )));
    }
    if appointment.nhs_number != a.nhs_number {
        return Err(EmisDataError::Invalid {
            path: "Appointment/NhsNumber".into(),
            reason: format!(
                "the appointment is for {}, but {} was booked",
                appointment.nhs_number, a.nhs_number
            ),
        }
        .into());
    }
    Ok(Booked {
        appointment,
        created,
    })
}

/// `GET /emis/practices/{ODS}/appointments/{GUID}`; `None` for an id EMIS does not hold
/// at the practice (or an unknown practice).
pub async fn read(
    client: &EmisClient,
    req: &AppointmentRequest,
) -> Result<Option<BookedAppointment>> {
    if !is_id(&req.id) {
        return Ok(None);
    }
    let path = format!(
        "/emis/practices/{}/appointments/{}",
        req.practice.as_str(),
        req.id
    );
    let response = client.native().get(&path, &req.context).await?;
    if response.status == 404 {
        let code = parse_error_document(&response.body).map(|(c, _)| c);
        if matches!(
            code.as_deref(),
            Some("APPOINTMENT_NOT_FOUND" | "PRACTICE_NOT_FOUND")
        ) {
            return Ok(None);
        }
    }
    let body = response.ok_body(|r| refused(Op::Read, &req.id, r))?;
    let appointment = map_appointment_document(&body)?;
    same_appointment(&req.id, &appointment)?;
    Ok(Some(appointment))
}

/// `GET /emis/practices/{ODS}/patients/{NHS}/appointments?From=…&To=…`, widened and cut
/// back as the slot search is.
pub async fn list(
    client: &EmisClient,
    req: &PatientAppointmentsRequest,
) -> Result<Vec<BookedAppointment>> {
    let end = req.end.max(req.start);
    let path = format!(
        "/emis/practices/{}/patients/{}/appointments?From={}&To={}",
        req.practice.as_str(),
        req.nhs_number,
        query_time(from_seconds(seconds(req.start) - 3600)),
        query_time(from_seconds(seconds(end) + 3600)),
    );
    let body = client
        .native()
        .get(&path, &req.context)
        .await?
        .ok_body(|r| refused(Op::List, req.practice.as_str(), r))?;
    let mut list = map_appointment_list(&body)?;
    if let Some(other) = list.iter().find(|a| a.nhs_number != req.nhs_number) {
        return Err(EmisDataError::Invalid {
            path: "AppointmentList/Appointment/NhsNumber".into(),
            reason: format!(
                "appointment {} is for {}, but {} was asked for",
                other.id, other.nhs_number, req.nhs_number
            ),
        }
        .into());
    }
    list.retain(|a| a.end > req.start && a.start < req.end);
    list.sort_by(|a, b| a.start.cmp(&b.start).then_with(|| a.id.cmp(&b.id)));
    Ok(list)
}

/// `PUT /emis/practices/{ODS}/appointments/{GUID}` (amend) or `POST …/{GUID}/cancel`,
/// each carrying the `RowVersion` the change is made against.
pub async fn change(
    client: &EmisClient,
    req: &ChangeAppointmentRequest,
) -> Result<BookedAppointment> {
    if !is_id(&req.id) {
        return Err(AdapterError::NotFound {
            system: SYSTEM,
            what: format!("appointment {}", shown(&req.id)),
        });
    }
    let version = parse_row_version(&req.expected_version)?;
    let base = format!(
        "/emis/practices/{}/appointments/{}",
        req.practice.as_str(),
        req.id
    );
    let (method, path, request) = match &req.change {
        AppointmentChange::Amend {
            description,
            comment,
        } => {
            let mut doc = Doc::new("AmendAppointment");
            doc.text("RowVersion", &version.to_string());
            if let Some(d) = description {
                doc.text("Description", d);
            }
            if let Some(c) = comment {
                doc.text("Comment", c);
            }
            (Method::PUT, base, doc.finish("AmendAppointment"))
        }
        AppointmentChange::Cancel { reason } => {
            if reason.trim().is_empty() {
                return Err(unprocessable("a cancellation needs a reason"));
            }
            let mut doc = Doc::new("CancelAppointment");
            doc.text("RowVersion", &version.to_string());
            doc.text("CancellationReason", reason);
            (
                Method::POST,
                format!("{base}/cancel"),
                doc.finish("CancelAppointment"),
            )
        }
    };
    let body = client
        .native()
        .send(
            method,
            &path,
            Some((XML, request.into_bytes())),
            &[],
            &req.context,
        )
        .await?
        .ok_body(|r| refused(Op::Change, &req.id, r))?;
    let appointment = map_appointment_document(&body)?;
    same_appointment(&req.id, &appointment)?;
    Ok(appointment)
}

/// A version this adapter gave out is EMIS's `RowVersion`, a whole number; anything else
/// cannot be the appointment's current version.
fn parse_row_version(version: &str) -> Result<u64> {
    version
        .parse::<u64>()
        .ok()
        .filter(|_| version.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| AdapterError::VersionConflict {
            system: SYSTEM,
            detail: format!("'{}' is not a version EMIS Web issued", shown(version)),
        })
}

/// An answer about another appointment than the one asked for is never passed on.
fn same_appointment(id: &str, a: &BookedAppointment) -> Result<()> {
    if a.id.eq_ignore_ascii_case(id) {
        Ok(())
    } else {
        Err(EmisDataError::Invalid {
            path: "Appointment/GUID".into(),
            reason: format!("asked for appointment {id}, the answer is about {}", a.id),
        }
        .into())
    }
}

// ---- requests ------------------------------------------------------------------------

/// `NewAppointment` → a `BookAppointment`; what EMIS could never accept is refused here,
/// before any call.
pub fn render_booking(a: &NewAppointment) -> Result<String> {
    let key_ok = (1..=64).contains(&a.key.len())
        && a.key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !key_ok {
        return Err(unprocessable(
            "the idempotency key must be 1 to 64 letters, digits or hyphens",
        ));
    }
    if a.slots.is_empty() {
        return Err(unprocessable("a booking names at least one slot"));
    }
    if let Some(bad) = a.slots.iter().find(|s| !is_id(s)) {
        return Err(unprocessable(format!(
            "slot {} is not in the practice's book",
            shown(bad)
        )));
    }
    if a.booked_by_name.trim().is_empty() {
        return Err(unprocessable("the booking organisation has no name"));
    }
    let mut doc = Doc::new("BookAppointment");
    doc.text("ExternalKey", &a.key);
    if let Some((system, value)) = &a.identifier {
        doc.open("ExternalIdentifier");
        doc.text("System", system);
        doc.text("Value", value);
        doc.close("ExternalIdentifier");
    }
    doc.open("SlotList");
    for s in &a.slots {
        doc.text("SlotID", s);
    }
    doc.close("SlotList");
    if let Some(d) = &a.description {
        doc.text("Description", d);
    }
    if let Some(c) = &a.comment {
        doc.text("Comment", c);
    }
    doc.open("BookingOrganisation");
    doc.text("OdsCode", a.booked_by.as_str());
    doc.text("Name", &a.booked_by_name);
    doc.close("BookingOrganisation");
    Ok(doc.finish("BookAppointment"))
}

// ---- answers -------------------------------------------------------------------------

pub(crate) type DataResult<T> = std::result::Result<T, EmisDataError>;

pub(crate) fn root_named<'a, 'i>(doc: &'a Document<'i>, name: &str) -> DataResult<Node<'a, 'i>> {
    let root = doc.root_element();
    if root.has_tag_name(Some(NS), name) {
        Ok(root)
    } else {
        Err(EmisDataError::Invalid {
            path: name.to_owned(),
            reason: format!(
                "the root element is <{}>, expected <{name}> in namespace {NS}",
                root.tag_name().name()
            ),
        })
    }
}

pub(crate) fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| c.has_tag_name(Some(NS), name))
}

fn children<'a, 'i: 'a>(n: Node<'a, 'i>, name: &'a str) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    n.children().filter(move |c| c.has_tag_name(Some(NS), name))
}

/// Where an element sits, for error messages (`SlotList/Slot[3]`).
pub(crate) struct At(pub(crate) String);

impl At {
    pub(crate) fn nth(parent: &str, name: &str, index: usize) -> At {
        At(format!("{parent}/{name}[{index}]"))
    }
    pub(crate) fn missing(&self, element: &str) -> EmisDataError {
        EmisDataError::Missing {
            path: format!("{}/{element}", self.0),
        }
    }
    pub(crate) fn invalid(&self, element: &str, reason: impl Into<String>) -> EmisDataError {
        EmisDataError::Invalid {
            path: format!("{}/{element}", self.0),
            reason: reason.into(),
        }
    }
    pub(crate) fn opt<'a>(&self, n: Node<'a, '_>, element: &str) -> Option<&'a str> {
        child(n, element).and_then(|c| c.trimmed_text())
    }
    pub(crate) fn req<'a>(&self, n: Node<'a, '_>, element: &str) -> DataResult<&'a str> {
        self.opt(n, element).ok_or_else(|| self.missing(element))
    }
    pub(crate) fn owned(&self, n: Node, element: &str) -> Option<String> {
        self.opt(n, element).map(str::to_owned)
    }
    pub(crate) fn id(&self, n: Node, element: &str) -> DataResult<String> {
        let raw = self.req(n, element)?;
        native_id(raw)
            .ok_or_else(|| self.invalid(element, format!("'{}' is not a GUID", shown(raw))))
    }
    pub(crate) fn opt_id(&self, n: Node, element: &str) -> DataResult<Option<String>> {
        match self.opt(n, element) {
            None => Ok(None),
            Some(_) => self.id(n, element).map(Some),
        }
    }
    pub(crate) fn time(&self, n: Node, element: &str) -> DataResult<UtcDateTime> {
        let raw = self.req(n, element)?;
        parse_local(raw).ok_or_else(|| {
            self.invalid(
                element,
                format!("'{}' is not dd/mm/yyyy HH:MM:SS", shown(raw)),
            )
        })
    }
    /// `StartDateTime` and `Duration` (whole minutes, 1 to a day) as start and end.
    pub(crate) fn span(&self, n: Node) -> DataResult<(UtcDateTime, UtcDateTime)> {
        let start = self.time(n, "StartDateTime")?;
        let raw = self.req(n, "Duration")?;
        let minutes = raw
            .parse::<i64>()
            .ok()
            .filter(|m| (1..=1440).contains(m))
            .ok_or_else(|| {
                self.invalid(
                    "Duration",
                    format!("'{}' is not 1 to 1440 minutes", shown(raw)),
                )
            })?;
        Ok((start, from_seconds(seconds(start) + minutes * 60)))
    }
    pub(crate) fn channel(&self, n: Node) -> DataResult<Option<DeliveryChannel>> {
        Ok(match self.opt(n, "DeliveryChannel") {
            None => None,
            Some("FaceToFace") => Some(DeliveryChannel::InPerson),
            Some("Telephone") => Some(DeliveryChannel::Telephone),
            Some("Video") => Some(DeliveryChannel::Video),
            Some(v) => {
                return Err(self.invalid(
                    "DeliveryChannel",
                    format!("'{}' is not FaceToFace, Telephone or Video", shown(v)),
                ));
            }
        })
    }
}

/// A mapped `AppointmentBook`, before it is cut to the range asked for.
struct Mapped(AppointmentBook);

impl Mapped {
    /// The slots starting in `[start, end)`, and only the sessions, clinicians and sites
    /// those slots lead to.
    fn within(self, start: UtcDateTime, end: UtcDateTime) -> AppointmentBook {
        let Mapped(mut book) = self;
        book.slots.retain(|s| s.start >= start && s.start < end);
        // Thousands of slots over a fortnight: look their sessions up, not scan for them.
        let held: HashSet<&str> = book.slots.iter().map(|s| s.session.as_str()).collect();
        book.sessions.retain(|x| held.contains(x.id.as_str()));
        book.clinicians.retain(|c| {
            book.sessions
                .iter()
                .any(|x| x.clinician.as_deref() == Some(c.id.as_str()))
        });
        book.locations
            .retain(|l| book.sessions.iter().any(|x| x.location == l.id));
        book
    }
}

/// An `AppointmentBook` answer, every reference checked: a slot names a session in the
/// answer, a session a site and a person in it.
fn map_book(body: &[u8]) -> DataResult<Mapped> {
    let doc = document(body)?;
    let root = root_named(&doc, "AppointmentBook")?;
    let list = |name: &'static str| -> DataResult<Node> {
        child(root, name).ok_or_else(|| EmisDataError::Missing {
            path: format!("AppointmentBook/{name}"),
        })
    };
    let mut locations = Vec::new();
    for (i, n) in children(list("SiteList")?, "Site").enumerate() {
        let at = At::nth("SiteList", "Site", i + 1);
        let address = child(n, "Address");
        let part = |e: &str| address.and_then(|a| at.owned(a, e));
        locations.push(BookLocation {
            id: at.id(n, "GUID")?,
            name: at.req(n, "Name")?.to_owned(),
            lines: ["HouseNameFlat", "Street", "Village"]
                .into_iter()
                .filter_map(part)
                .collect(),
            town: part("Town"),
            postcode: part("PostCode"),
        });
    }
    let mut clinicians = Vec::new();
    for (i, n) in children(list("PeopleList")?, "Person").enumerate() {
        let at = At::nth("PeopleList", "Person", i + 1);
        let role = match child(n, "JobRole") {
            None => None,
            Some(r) => {
                let at = At(format!("{}/JobRole", at.0));
                Some(JobRole {
                    code: at.req(r, "Code")?.to_owned(),
                    display: at.req(r, "Term")?.to_owned(),
                })
            }
        };
        let gender = match at.opt(n, "Sex") {
            None => None,
            Some("M") => Some("male"),
            Some("F") => Some("female"),
            Some("I") => Some("other"),
            Some("U") => Some("unknown"),
            Some(v) => {
                return Err(at.invalid("Sex", format!("'{}' is not M, F, I or U", shown(v))));
            }
        };
        clinicians.push(BookClinician {
            id: at.id(n, "GUID")?,
            prefix: at.owned(n, "Title"),
            given: at.owned(n, "FirstNames").unwrap_or_default(),
            family: at.req(n, "FamilyName")?.to_owned(),
            gender: gender.map(str::to_owned),
            sds_user_id: at.owned(n, "SdsUserId"),
            role,
        });
    }
    let mut sessions = Vec::new();
    for (i, n) in children(list("SessionList")?, "Session").enumerate() {
        let at = At::nth("SessionList", "Session", i + 1);
        let session = BookSession {
            id: at.id(n, "GUID")?,
            name: at.req(n, "Name")?.to_owned(),
            clinician: at.opt_id(n, "UserID")?,
            location: at.id(n, "SiteID")?,
            service: at.owned(n, "ServiceType"),
            start: at.time(n, "StartDateTime")?,
            end: at.time(n, "EndDateTime")?,
        };
        if !locations.iter().any(|l| l.id == session.location) {
            return Err(at.invalid("SiteID", "names no Site of the SiteList"));
        }
        if let Some(c) = &session.clinician
            && !clinicians.iter().any(|p| &p.id == c)
        {
            return Err(at.invalid("UserID", "names no Person of the PeopleList"));
        }
        sessions.push(session);
    }
    let session_ids: HashSet<&str> = sessions.iter().map(|s| s.id.as_str()).collect();
    let mut slots = Vec::new();
    for (i, n) in children(list("SlotList")?, "Slot").enumerate() {
        let at = At::nth("SlotList", "Slot", i + 1);
        let (start, end) = at.span(n)?;
        let session = at.id(n, "SessionID")?;
        if !session_ids.contains(session.as_str()) {
            return Err(at.invalid("SessionID", "names no Session of the SessionList"));
        }
        let status = match at.req(n, "Status")? {
            "Free" => SlotStatus::Free,
            "Booked" => SlotStatus::Busy,
            "Embargoed" | "PracticeOnly" => SlotStatus::Unavailable,
            v => {
                return Err(at.invalid(
                    "Status",
                    format!(
                        "'{}' is not Free, Booked, Embargoed or PracticeOnly",
                        shown(v)
                    ),
                ));
            }
        };
        slots.push(BookSlot {
            id: at.id(n, "GUID")?,
            session,
            start,
            end,
            slot_type: at.req(n, "SlotType")?.to_owned(),
            channel: at
                .channel(n)?
                .ok_or_else(|| at.missing("DeliveryChannel"))?,
            status,
        });
    }
    Ok(Mapped(AppointmentBook {
        slots,
        sessions,
        clinicians,
        locations,
    }))
}

/// An `Appointment` document (a booking's, read's or change's answer).
pub fn map_appointment_document(body: &[u8]) -> DataResult<BookedAppointment> {
    let doc = document(body)?;
    let root = root_named(&doc, "Appointment")?;
    map_appointment(&At("Appointment".into()), root)
}

/// An `AppointmentList` document.
fn map_appointment_list(body: &[u8]) -> DataResult<Vec<BookedAppointment>> {
    let doc = document(body)?;
    let root = root_named(&doc, "AppointmentList")?;
    children(root, "Appointment")
        .enumerate()
        .map(|(i, n)| map_appointment(&At::nth("AppointmentList", "Appointment", i + 1), n))
        .collect()
}

fn map_appointment(at: &At, n: Node) -> DataResult<BookedAppointment> {
    let id = at.id(n, "GUID")?;
    let version = at.req(n, "RowVersion")?;
    if version.parse::<u64>().is_err() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return Err(at.invalid(
            "RowVersion",
            format!("'{}' is not a whole number", shown(version)),
        ));
    }
    let raw_nhs = at.req(n, "NhsNumber")?;
    // EMIS writes the number spaced 3 3 4.
    let compact: String = raw_nhs.chars().filter(|c| *c != ' ').collect();
    let nhs_number =
        NhsNumber::parse(&compact).map_err(|e| at.invalid("NhsNumber", e.to_string()))?;
    let status = match at.req(n, "Status")? {
        "Booked" => AppointmentStatus::Booked,
        "Cancelled" => AppointmentStatus::Cancelled,
        v => {
            return Err(at.invalid(
                "Status",
                format!("'{}' is not Booked or Cancelled", shown(v)),
            ));
        }
    };
    let slot_list = child(n, "SlotList").ok_or_else(|| at.missing("SlotList"))?;
    let slots = children(slot_list, "SlotID")
        .enumerate()
        .map(|(i, s)| {
            let raw = s.trimmed_text().unwrap_or_default();
            native_id(raw).ok_or_else(|| {
                at.invalid(
                    &format!("SlotList/SlotID[{}]", i + 1),
                    format!("'{}' is not a GUID", shown(raw)),
                )
            })
        })
        .collect::<DataResult<Vec<_>>>()?;
    if slots.is_empty() {
        return Err(at.missing("SlotList/SlotID"));
    }
    let (start, end) = at.span(n)?;
    let booked_by = match child(n, "BookingOrganisation") {
        None => None,
        Some(org) => {
            let raw = at
                .req(org, "OdsCode")
                .map_err(|_| at.missing("BookingOrganisation/OdsCode"))?;
            Some(
                OdsCode::parse(raw)
                    .map_err(|e| at.invalid("BookingOrganisation/OdsCode", e.to_string()))?,
            )
        }
    };
    let identifier = match child(n, "ExternalIdentifier") {
        None => None,
        Some(e) => {
            let part = |name: &str| {
                at.opt(e, name)
                    .map(str::to_owned)
                    .ok_or_else(|| at.missing(&format!("ExternalIdentifier/{name}")))
            };
            Some((part("System")?, part("Value")?))
        }
    };
    Ok(BookedAppointment {
        id,
        version: version.to_owned(),
        nhs_number,
        status,
        slots,
        session: at.id(n, "SessionID")?,
        location: at.opt_id(n, "SiteID")?,
        clinician: at.opt_id(n, "UserID")?,
        start,
        end,
        slot_type: at.owned(n, "SlotType"),
        channel: at.channel(n)?,
        description: at.owned(n, "Description"),
        comment: at.owned(n, "Comment"),
        cancellation_reason: at.owned(n, "CancellationReason"),
        created: at.time(n, "DateBooked")?,
        booked_by,
        identifier,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(year: i32, month: u8, day: u8, hour: u8, minute: u8) -> UtcDateTime {
        UtcDateTime {
            year,
            month,
            day,
            hour,
            minute,
            second: 0,
        }
    }

    #[test]
    fn summer_times_are_an_hour_ahead_of_utc() {
        // 15 July 2026 09:30 BST is 08:30 UTC.
        assert_eq!(
            parse_local("15/07/2026 09:30:00"),
            Some(utc(2026, 7, 15, 8, 30))
        );
        assert_eq!(local_text(utc(2026, 7, 15, 8, 30)), "15/07/2026 09:30:00");
        // Just after midnight BST is the evening before in UTC.
        assert_eq!(
            parse_local("01/07/2026 00:15:00"),
            Some(utc(2026, 6, 30, 23, 15))
        );
    }

    #[test]
    fn winter_times_are_utc() {
        assert_eq!(
            parse_local("15/01/2026 09:30:00"),
            Some(utc(2026, 1, 15, 9, 30))
        );
        assert_eq!(local_text(utc(2026, 1, 15, 9, 30)), "15/01/2026 09:30:00");
        // 1 March 2024 is a leap day's neighbour: 29/02 exists, 30/02 does not.
        assert_eq!(
            parse_local("29/02/2024 23:59:00"),
            Some(utc(2024, 2, 29, 23, 59))
        );
        for bad in [
            "30/02/2024 10:00:00",
            "15/01/2026 24:00:00",
            "2026-01-15T09:30:00",
            "15/01/2026",
            "15/1/2026 09:30:00",
            "15/01/2026 09:30:00:00",
        ] {
            assert_eq!(parse_local(bad), None, "{bad}");
        }
    }

    #[test]
    fn seconds_round_trip_across_years() {
        for s in [
            0,
            59,
            86_399,
            951_782_400,
            1_709_251_199,
            4_102_444_800,
            -86_400,
        ] {
            assert_eq!(seconds(from_seconds(s)), s, "{s}");
        }
        assert_eq!(from_seconds(0), utc(1970, 1, 1, 0, 0));
        assert_eq!(from_seconds(951_782_400), utc(2000, 2, 29, 0, 0));
    }

    #[test]
    fn ids_are_short_lower_case_guids() {
        assert_eq!(
            native_id("{8A2F1C3E-0B1D-4E5F-9A6B-7C8D9E0F1A2B}").as_deref(),
            Some("8a2f1c3e-0b1d-4e5f-9a6b-7c8d9e0f1a2b")
        );
        assert_eq!(native_id(&"a".repeat(57)), None);
        assert_eq!(native_id("a_b"), None);
        assert!(!is_id(".."));
        assert!(!is_id("a/b"));
        assert!(is_id("8a2f1c3e-0b1d-4e5f-9a6b-7c8d9e0f1a2b"));
    }

    #[test]
    fn a_taken_slot_is_not_a_stale_version() {
        let error = |status: u16, code: &str| NativeResponse {
            status,
            body: format!("<Error xmlns=\"{NS}\"><Code>{code}</Code><Message>m</Message></Error>")
                .into(),
            content_type: None,
            headers: Default::default(),
        };
        assert!(matches!(
            refused(Op::Book, "x", &error(409, "SLOT_UNAVAILABLE")),
            AdapterError::SlotUnavailable { .. }
        ));
        assert!(matches!(
            refused(Op::Change, "x", &error(409, "VERSION_CONFLICT")),
            AdapterError::VersionConflict { .. }
        ));
        for code in [
            "SLOT_NOT_BOOKABLE",
            "SLOT_IN_PAST",
            "SLOTS_NOT_ADJACENT",
            "INVALID_VALUE",
        ] {
            assert!(
                matches!(
                    refused(Op::Book, "x", &error(422, code)),
                    AdapterError::Unprocessable { ref detail, .. } if detail.contains(code)
                ),
                "{code}"
            );
        }
        assert_eq!(
            refused(Op::SearchSlots, "A1", &error(404, "PRACTICE_NOT_FOUND")),
            AdapterError::NotFound {
                system: SYSTEM,
                what: "practice A1".into()
            }
        );
        assert_eq!(
            refused(Op::List, "A1", &error(404, "PATIENT_NOT_FOUND")),
            AdapterError::PatientNotFound
        );
        assert!(matches!(
            refused(Op::Change, "x", &error(404, "APPOINTMENT_NOT_FOUND")),
            AdapterError::NotFound { .. }
        ));
        assert!(matches!(
            refused(Op::Read, "x", &error(503, "SERVICE_UNAVAILABLE")),
            AdapterError::Unavailable { .. }
        ));
    }
}
