//! EMIS Web's appointment book, as `docs/native-formats/emis.md` ("Appointment book")
//! describes it: slot searches, bookings, reads, amends and cancels over the practice's
//! book in [`crate::SimStore`], in EMIS Open XML with UK local date-times (no offset).
//!
//! Concurrency is EMIS's own: a booking names the slot GUIDs it wants and a slot taken
//! meanwhile is `409 SLOT_UNAVAILABLE`; an amend or cancel carries the appointment's
//! `RowVersion` and a stale one is `409 VERSION_CONFLICT`. A booking's `ExternalKey`
//! makes it idempotent. Every endpoint here is a record request for fault injection.

use hyper::{HeaderMap, Method};

use super::{
    NAMESPACE, XML, date_time, error, invalid_request, invalid_value, method_not_allowed,
    parse_date_time, patient_not_found, practice_not_found, sex, spaced_nhs, xml_request,
};
use crate::appointments::{
    self, Appointment, AppointmentState, BookError, BookView, BookingOrganisation, Change, Channel,
    Instant, NewBooking, SlotState,
};
use crate::model::{ExternalId, Practice, SystemKind};
use crate::server::{Reply, Routed};
use crate::store::SimStore;
use crate::xml::{Element, XmlWriter};

/// Answers the book's reads (`GET`), or `None` when `segments` is no book path.
pub(crate) fn route_read(
    store: &SimStore,
    method: &Method,
    segments: &[&str],
    query: Option<&str>,
) -> Option<Routed> {
    let reply = match segments {
        ["", "emis", "practices", ods, "slots"] => {
            if method != Method::GET {
                return Some(not_record(method_not_allowed("GET")));
            }
            search_slots(store, ods, query)
        }
        ["", "emis", "practices", ods, "appointments", guid] if method == Method::GET => {
            read_appointment(store, ods, guid)
        }
        [
            "",
            "emis",
            "practices",
            ods,
            "patients",
            nhs,
            "appointments",
        ] if method == Method::GET => patient_appointments(store, ods, nhs, query),
        _ => return None,
    };
    Some(Routed {
        reply,
        record: true,
    })
}

/// Answers the book's writes, or `None` when `segments` is no book path.
pub(crate) fn route_write(
    store: &SimStore,
    method: &Method,
    segments: &[&str],
    headers: &HeaderMap,
    body: &[u8],
) -> Option<Routed> {
    // A wrong method is not a record request: no fault, not counted.
    let (reply, record) = match segments {
        [
            "",
            "emis",
            "practices",
            ods,
            "patients",
            nhs,
            "appointments",
        ] => {
            if method == Method::POST {
                (book(store, ods, nhs, headers, body), true)
            } else {
                (method_not_allowed("GET, POST"), false)
            }
        }
        ["", "emis", "practices", ods, "appointments", guid] => {
            if method == Method::PUT {
                (amend(store, ods, guid, headers, body), true)
            } else {
                (method_not_allowed("GET, PUT"), false)
            }
        }
        ["", "emis", "practices", ods, "appointments", guid, "cancel"] => {
            if method == Method::POST {
                (cancel(store, ods, guid, headers, body), true)
            } else {
                (method_not_allowed("POST"), false)
            }
        }
        _ => return None,
    };
    Some(Routed { reply, record })
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

/// A GUID as EMIS takes it: braces (also percent-encoded, in a URL) and case ignored.
pub(super) fn bare_guid(raw: &str) -> String {
    let raw = raw.trim();
    let raw = raw
        .strip_prefix("%7B")
        .or_else(|| raw.strip_prefix("%7b"))
        .or_else(|| raw.strip_prefix('{'))
        .unwrap_or(raw);
    let raw = raw
        .strip_suffix("%7D")
        .or_else(|| raw.strip_suffix("%7d"))
        .or_else(|| raw.strip_suffix('}'))
        .unwrap_or(raw);
    raw.to_ascii_lowercase()
}

/// The EMIS practice `ods`, or `404 PRACTICE_NOT_FOUND`.
pub(super) fn emis_practice(store: &SimStore, ods: &str) -> Result<Practice, Reply> {
    match store.practice(ods) {
        Some(p) if p.system == SystemKind::Emis => Ok(p),
        _ => Err(practice_not_found(ods)),
    }
}

/// The practice and a registered patient, checked in the order the record reads check
/// them: practice, NHS number, registration.
pub(super) fn practice_and_patient(
    store: &SimStore,
    ods: &str,
    nhs: &str,
) -> Result<Practice, Reply> {
    let practice = emis_practice(store, ods)?;
    if !crate::nhs::is_valid(nhs) {
        return Err(error(
            400,
            "INVALID_NHS_NUMBER",
            &format!("{nhs} is not a valid NHS number"),
        ));
    }
    if store.patient(ods, nhs).is_none() {
        return Err(patient_not_found(ods));
    }
    Ok(practice)
}

// ---- query strings -------------------------------------------------------------------

/// `%XX` and `+` decoded; `None` when the result is not UTF-8 or an escape is broken.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The `From` and `To` parameters: UK local `dd/mm/yyyy HH:MM:SS`, `From` before `To`.
fn range(query: Option<&str>) -> Result<(Instant, Instant), Reply> {
    let mut from = None;
    let mut to = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value)
            .ok_or_else(|| invalid_request(&format!("{name} is not percent-encoded UTF-8")))?;
        let at = || {
            parse_date_time(value.trim())
                .map(appointments::from_local)
                .ok_or_else(|| invalid_request(&format!("{name} is not dd/mm/yyyy HH:MM:SS")))
        };
        match name {
            "From" => from = Some(at()?),
            "To" => to = Some(at()?),
            _ => {
                return Err(invalid_request(&format!(
                    "Unknown parameter {name}; a search takes From and To"
                )));
            }
        }
    }
    match (from, to) {
        (Some(f), Some(t)) if f <= t => Ok((f, t)),
        (Some(_), Some(_)) => Err(invalid_request("To is before From")),
        _ => Err(invalid_request(
            "From and To (dd/mm/yyyy HH:MM:SS, UK local time) are required",
        )),
    }
}

// ---- reads ---------------------------------------------------------------------------

/// `GET /emis/practices/{ODS}/slots?From=…&To=…`: the slots starting in the range, the
/// sessions they belong to, their sites and clinicians.
fn search_slots(store: &SimStore, ods: &str, query: Option<&str>) -> Reply {
    let practice = match emis_practice(store, ods) {
        Ok(p) => p,
        Err(reply) => return reply,
    };
    let (from, to) = match range(query) {
        Ok(r) => r,
        Err(reply) => return reply,
    };
    match store.book_view(SystemKind::Emis, ods, from, to) {
        Ok(view) => ok(200, render_book(&practice, &view)),
        Err(e) => book_error(e),
    }
}

/// `GET /emis/practices/{ODS}/appointments/{GUID}`: one appointment, whatever its state.
fn read_appointment(store: &SimStore, ods: &str, guid: &str) -> Reply {
    if let Err(reply) = emis_practice(store, ods) {
        return reply;
    }
    let guid = bare_guid(guid);
    match store.appointment(SystemKind::Emis, ods, &guid) {
        // Numbers are the store's own keys; EMIS reads by GUID only.
        Ok(Some(a)) if a.id.eq_ignore_ascii_case(&guid) => match render_one(store, ods, &a) {
            Ok(body) => ok(200, body),
            Err(e) => book_error(e),
        },
        Ok(_) => appointment_not_found(&guid),
        Err(e) => book_error(e),
    }
}

/// `GET /emis/practices/{ODS}/patients/{NHS}/appointments?From=…&To=…`: the patient's
/// appointments overlapping the range, booked and cancelled, however they were booked.
fn patient_appointments(store: &SimStore, ods: &str, nhs: &str, query: Option<&str>) -> Reply {
    if let Err(reply) = practice_and_patient(store, ods, nhs) {
        return reply;
    }
    let (from, to) = match range(query) {
        Ok(r) => r,
        Err(reply) => return reply,
    };
    let list = store
        .appointments_of(SystemKind::Emis, ods, nhs, from, to)
        .and_then(|list| {
            let details = details(store, ods, &list)?;
            let mut w = XmlWriter::new();
            w.open_with("AppointmentList", &[("xmlns", NAMESPACE)]);
            for (a, d) in list.iter().zip(&details) {
                w.open("Appointment");
                appointment(&mut w, a, d);
                w.close("Appointment");
            }
            w.close("AppointmentList");
            Ok(w.finish())
        });
    match list {
        Ok(body) => ok(200, body),
        Err(e) => book_error(e),
    }
}

// ---- writes --------------------------------------------------------------------------

/// `POST /emis/practices/{ODS}/patients/{NHS}/appointments` with a `BookAppointment`:
/// `201` and the appointment, or `200` and the appointment booked before under the same
/// `ExternalKey`.
fn book(store: &SimStore, ods: &str, nhs: &str, headers: &HeaderMap, body: &[u8]) -> Reply {
    if let Err(reply) = practice_and_patient(store, ods, nhs) {
        return reply;
    }
    let doc = match xml_request(headers, body, "BookAppointment") {
        Ok(doc) => doc,
        Err(reply) => return reply,
    };
    let booking = match read_booking(doc.root(), nhs) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let booked = store
        .book_appointment(SystemKind::Emis, ods, booking)
        .and_then(|(a, created)| Ok((render_one(store, ods, &a)?, created)));
    match booked {
        Ok((body, created)) => ok(if created { 201 } else { 200 }, body),
        Err(e) => book_error(e),
    }
}

/// What a `BookAppointment` asks for, or the native error.
fn read_booking(doc: Element<'_, '_>, nhs: &str) -> Result<NewBooking, Reply> {
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
    let slots: Vec<String> = doc
        .child("SlotList")
        .map(|l| {
            l.children_named("SlotID")
                .map(|s| bare_guid(&s.text()))
                .collect()
        })
        .unwrap_or_default();
    if slots.is_empty() || slots.iter().any(String::is_empty) {
        return Err(invalid_request(
            "SlotList must hold one or more non-empty SlotID elements",
        ));
    }
    let org = doc
        .child("BookingOrganisation")
        .ok_or_else(|| invalid_request("BookingOrganisation is missing"))?;
    let ods = org.required_text("OdsCode", || {
        invalid_request("BookingOrganisation/OdsCode is missing")
    })?;
    let name = org.required_text("Name", || {
        invalid_request("BookingOrganisation/Name is missing")
    })?;
    Ok(NewBooking {
        key: Some(key.into_owned()),
        nhs: nhs.to_owned(),
        slots,
        slot_versions: None,
        description: doc.child_text("Description").map(|d| d.into_owned()),
        comment: doc.child_text("Comment").map(|c| c.into_owned()),
        booked_by: Some(BookingOrganisation {
            ods: ods.into_owned(),
            name: name.into_owned(),
        }),
        external_id,
    })
}

/// The `RowVersion` an amend or cancel is made against.
fn row_version(doc: Element<'_, '_>) -> Result<u64, Reply> {
    doc.child_text("RowVersion")
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| invalid_request("RowVersion is missing or not a whole number"))
}

/// `PUT /emis/practices/{ODS}/appointments/{GUID}` with an `AmendAppointment`: new
/// description and comment, if `RowVersion` is current.
fn amend(store: &SimStore, ods: &str, guid: &str, headers: &HeaderMap, body: &[u8]) -> Reply {
    change(store, ods, guid, headers, body, "AmendAppointment", |doc| {
        Ok(Change::Amend {
            description: doc.child_text("Description").map(|d| d.into_owned()),
            comment: doc.child_text("Comment").map(|c| c.into_owned()),
        })
    })
}

/// `POST /emis/practices/{ODS}/appointments/{GUID}/cancel` with a `CancelAppointment`:
/// cancels it, freeing its slots, if `RowVersion` is current.
fn cancel(store: &SimStore, ods: &str, guid: &str, headers: &HeaderMap, body: &[u8]) -> Reply {
    change(
        store,
        ods,
        guid,
        headers,
        body,
        "CancelAppointment",
        |doc| {
            let reason = doc.required_text("CancellationReason", || {
                invalid_request("CancellationReason is missing")
            })?;
            Ok(Change::Cancel {
                reason: reason.into_owned(),
            })
        },
    )
}

fn change(
    store: &SimStore,
    ods: &str,
    guid: &str,
    headers: &HeaderMap,
    body: &[u8],
    root: &str,
    read: impl FnOnce(Element<'_, '_>) -> Result<Change, Reply>,
) -> Reply {
    if let Err(reply) = emis_practice(store, ods) {
        return reply;
    }
    let doc = match xml_request(headers, body, root) {
        Ok(doc) => doc,
        Err(reply) => return reply,
    };
    let (version, change) = match row_version(doc.root()).and_then(|v| Ok((v, read(doc.root())?))) {
        Ok(parts) => parts,
        Err(reply) => return reply,
    };
    let guid = bare_guid(guid);
    // EMIS changes appointments by GUID only; the store also knows them by number.
    match store.appointment(SystemKind::Emis, ods, &guid) {
        Ok(Some(a)) if a.id.eq_ignore_ascii_case(&guid) => {}
        Ok(_) => return appointment_not_found(&guid),
        Err(e) => return book_error(e),
    }
    let changed = store
        .change_appointment(SystemKind::Emis, ods, &guid, Some(version), change)
        .and_then(|a| render_one(store, ods, &a));
    match changed {
        Ok(body) => ok(200, body),
        Err(BookError::Conflict(now)) => error(
            409,
            "VERSION_CONFLICT",
            &format!(
                "The appointment was modified after RowVersion {version}; RowVersion is now {now}"
            ),
        ),
        Err(e) => book_error(e),
    }
}

// ---- rendering -----------------------------------------------------------------------

/// An instant as EMIS writes it: UK local `dd/mm/yyyy HH:MM:SS`, no offset.
fn local(t: Instant) -> String {
    date_time(appointments::local_date_time(t))
}

/// Whole minutes between two instants (every slot is a whole number of minutes).
fn minutes(start: Instant, end: Instant) -> String {
    ((end - start) / 60).to_string()
}

fn status(state: SlotState) -> &'static str {
    match state {
        SlotState::Free => "Free",
        SlotState::Booked => "Booked",
        SlotState::Embargoed => "Embargoed",
        SlotState::PracticeOnly => "PracticeOnly",
    }
}

fn channel(c: Channel) -> &'static str {
    match c {
        Channel::InPerson => "FaceToFace",
        Channel::Telephone => "Telephone",
        Channel::Video => "Video",
    }
}

/// An `AppointmentBook`: sites, the people running the sessions, sessions and slots.
fn render_book(practice: &Practice, view: &BookView) -> String {
    let mut w = XmlWriter::new();
    w.open_with("AppointmentBook", &[("xmlns", NAMESPACE)]);
    w.open("SiteList");
    for s in &view.sites {
        w.open("Site");
        w.text("GUID", &s.id);
        w.text("Name", &s.name);
        w.open("Address");
        let (house, street, village) = match s.lines.as_slice() {
            [street] => ("", street.as_str(), ""),
            [street, village] => ("", street.as_str(), village.as_str()),
            [house, street, village, ..] => (house.as_str(), street.as_str(), village.as_str()),
            [] => ("", "", ""),
        };
        w.text("HouseNameFlat", house);
        w.text("Street", street);
        w.text("Village", village);
        w.text("Town", &s.town);
        w.text("County", "");
        w.text("PostCode", &s.postcode);
        w.close("Address");
        w.close("Site");
    }
    w.close("SiteList");
    w.open("PeopleList");
    for c in view
        .clinicians
        .iter()
        .filter(|c| view.sessions.iter().any(|s| s.clinician == c.id))
    {
        let (code, term) = appointments::job_role(practice, c);
        w.open("Person");
        w.text("GUID", &c.id);
        w.text("Title", &c.title);
        w.text("FirstNames", &c.given);
        w.text("FamilyName", &c.family);
        w.text("Sex", sex(c.sex));
        w.text("Role", &c.role);
        w.text("SdsUserId", &c.sds_user_id);
        w.open("JobRole");
        w.text("Code", code);
        w.text("Term", term);
        w.close("JobRole");
        w.close("Person");
    }
    w.close("PeopleList");
    w.open("SessionList");
    for s in &view.sessions {
        w.open("Session");
        w.text("GUID", &s.id);
        w.text("Name", &s.name);
        w.text("UserID", &s.clinician);
        w.text("SiteID", &s.site);
        w.text("ServiceType", &s.service);
        w.text("StartDateTime", &local(s.start));
        w.text("EndDateTime", &local(s.end));
        w.close("Session");
    }
    w.close("SessionList");
    w.open("SlotList");
    for s in &view.slots {
        w.open("Slot");
        w.text("GUID", &s.id);
        w.text("SessionID", &s.session);
        w.text("StartDateTime", &local(s.start));
        w.text("Duration", &minutes(s.start, s.end));
        w.text("SlotType", &s.slot_type);
        w.text("DeliveryChannel", channel(s.channel));
        w.text("Status", status(s.state));
        w.close("Slot");
    }
    w.close("SlotList");
    w.close("AppointmentBook");
    w.finish()
}

/// What an appointment shows of its session and slots: site, clinician, slot type and
/// delivery channel.
struct Details {
    site: String,
    clinician: String,
    slot_type: String,
    channel: Channel,
}

/// The [`Details`] of each appointment (sessions and slots never change, so reading
/// them after the appointment itself cannot mix two states of the book).
fn details(store: &SimStore, ods: &str, list: &[Appointment]) -> Result<Vec<Details>, BookError> {
    store.with_book(SystemKind::Emis, ods, |_, book| {
        list.iter()
            .map(|a| {
                let session = book.sessions.iter().find(|s| s.id == a.session);
                let slot = a.slots.first().and_then(|id| book.slot(id));
                match (session, slot) {
                    (Some(session), Some(slot)) => Ok(Details {
                        site: session.site.clone(),
                        clinician: session.clinician.clone(),
                        slot_type: slot.slot_type.clone(),
                        channel: slot.channel,
                    }),
                    _ => Err(BookError::AppointmentNotFound(a.id.clone())),
                }
            })
            .collect()
    })?
}

/// One `Appointment` document.
fn render_one(store: &SimStore, ods: &str, a: &Appointment) -> Result<String, BookError> {
    let details = details(store, ods, std::slice::from_ref(a))?;
    let mut w = XmlWriter::new();
    w.open_with("Appointment", &[("xmlns", NAMESPACE)]);
    if let Some(d) = details.first() {
        appointment(&mut w, a, d);
    }
    w.close("Appointment");
    Ok(w.finish())
}

/// An appointment's children.
fn appointment(w: &mut XmlWriter, a: &Appointment, d: &Details) {
    w.text("GUID", &a.id);
    w.text("RowVersion", &a.version.to_string());
    w.text("NhsNumber", &spaced_nhs(&a.nhs));
    w.text(
        "Status",
        match a.state {
            AppointmentState::Booked => "Booked",
            AppointmentState::Cancelled => "Cancelled",
        },
    );
    w.open("SlotList");
    for s in &a.slots {
        w.text("SlotID", s);
    }
    w.close("SlotList");
    w.text("SessionID", &a.session);
    w.text("SiteID", &d.site);
    w.text("UserID", &d.clinician);
    w.text("StartDateTime", &local(a.start));
    w.text("Duration", &minutes(a.start, a.end));
    w.text("SlotType", &d.slot_type);
    w.text("DeliveryChannel", channel(d.channel));
    w.opt("Description", a.description.as_deref());
    w.opt("Comment", a.comment.as_deref());
    w.opt("CancellationReason", a.cancellation_reason.as_deref());
    w.text("DateBooked", &local(a.created));
    if let Some(org) = &a.booked_by {
        w.open("BookingOrganisation");
        w.text("OdsCode", &org.ods);
        w.text("Name", &org.name);
        w.close("BookingOrganisation");
    }
    if let Some(ext) = &a.external_id {
        w.open("ExternalIdentifier");
        w.text("System", &ext.system);
        w.text("Value", &ext.value);
        w.close("ExternalIdentifier");
    }
}

// ---- errors --------------------------------------------------------------------------

fn appointment_not_found(guid: &str) -> Reply {
    error(
        404,
        "APPOINTMENT_NOT_FOUND",
        &format!("No appointment {guid} in this practice's book"),
    )
}

/// A refused book operation in EMIS's error format.
fn book_error(e: BookError) -> Reply {
    let message = e.to_string();
    match e {
        BookError::PracticeNotFound(ods) => practice_not_found(&ods),
        BookError::PatientNotFound(ods) => patient_not_found(&ods),
        BookError::SlotNotFound(_) => error(404, "SLOT_NOT_FOUND", &message),
        BookError::AppointmentNotFound(guid) => appointment_not_found(&guid),
        BookError::SlotTaken(_) | BookError::SlotChanged(_) => {
            error(409, "SLOT_UNAVAILABLE", &message)
        }
        BookError::Conflict(now) => error(
            409,
            "VERSION_CONFLICT",
            &format!("The appointment was modified; RowVersion is now {now}"),
        ),
        BookError::NotBookable(_) => error(422, "SLOT_NOT_BOOKABLE", &message),
        BookError::InPast(_) => error(422, "SLOT_IN_PAST", &message),
        BookError::NotAdjacent => error(422, "SLOTS_NOT_ADJACENT", &message),
        BookError::Cancelled => error(422, "APPOINTMENT_CANCELLED", &message),
        BookError::Invalid(m) => invalid_value(&m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::population::{Population, PopulationSpec};

    /// A store over the sandbox population, its first EMIS practice and demo patient.
    fn store() -> (SimStore, String, String) {
        let pop = Population::generate(42, &PopulationSpec::sandbox());
        let nhs = "9000000009".to_owned();
        let ods = pop.patient_by_nhs(&nhs).unwrap().practice.clone();
        (SimStore::new(pop), ods, nhs)
    }

    fn xml_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/xml"),
        );
        h
    }

    fn write(store: &SimStore, method: Method, path: &str, body: &str) -> Routed {
        let segments: Vec<&str> = path.split('/').collect();
        route_write(store, &method, &segments, &xml_headers(), body.as_bytes()).unwrap()
    }

    fn code(reply: &Reply) -> String {
        let body = String::from_utf8(reply.body.clone()).unwrap();
        body.split("<Code>")
            .nth(1)
            .and_then(|r| r.split("</Code>").next())
            .unwrap_or_default()
            .to_owned()
    }

    fn booking(key: &str, slot: &str) -> String {
        format!(
            "<BookAppointment xmlns=\"{NAMESPACE}\"><ExternalKey>{key}</ExternalKey>\
             <SlotList><SlotID>{slot}</SlotID></SlotList>\
             <BookingOrganisation><OdsCode>X26</OdsCode><Name>Supplier</Name></BookingOrganisation>\
             </BookAppointment>"
        )
    }

    #[test]
    fn a_slot_books_once_and_a_stale_row_version_is_refused_natively() {
        let (store, ods, nhs) = store();
        let now = appointments::now();
        let slot = store
            .with_book(SystemKind::Emis, &ods, |_, b| {
                b.slots
                    .iter()
                    .find(|s| s.state == SlotState::Free && s.start > now + 3600)
                    .unwrap()
                    .id
                    .clone()
            })
            .unwrap();
        let path = format!("/emis/practices/{ods}/patients/{nhs}/appointments");
        // Braces and upper case, as EMIS tolerates them.
        let braced = format!("{{{}}}", slot.to_ascii_uppercase());
        let first = write(&store, Method::POST, &path, &booking("k-1", &braced));
        assert_eq!(first.reply.status, 201);
        assert!(first.record);
        let body = String::from_utf8(first.reply.body.clone()).unwrap();
        assert!(body.contains("<RowVersion>1</RowVersion>"), "{body}");
        let guid = body
            .split("<GUID>")
            .nth(1)
            .and_then(|r| r.split("</GUID>").next())
            .unwrap()
            .to_owned();
        let again = write(&store, Method::POST, &path, &booking("k-1", &slot));
        assert_eq!(
            (again.reply.status, again.reply.body),
            (200, first.reply.body)
        );
        let taken = write(&store, Method::POST, &path, &booking("k-2", &slot));
        assert_eq!(
            (taken.reply.status, code(&taken.reply)),
            (409, "SLOT_UNAVAILABLE".into())
        );

        let amend = |version: u64| {
            format!(
                "<AmendAppointment xmlns=\"{NAMESPACE}\"><RowVersion>{version}</RowVersion>\
                 <Description>New</Description></AmendAppointment>"
            )
        };
        let at = format!("/emis/practices/{ods}/appointments/{{{guid}}}");
        assert_eq!(write(&store, Method::PUT, &at, &amend(1)).reply.status, 200);
        let stale = write(&store, Method::PUT, &at, &amend(1));
        assert_eq!(
            (stale.reply.status, code(&stale.reply)),
            (409, "VERSION_CONFLICT".into())
        );
        let cancel = format!(
            "<CancelAppointment xmlns=\"{NAMESPACE}\"><RowVersion>2</RowVersion>\
             <CancellationReason>No longer needed</CancellationReason></CancelAppointment>"
        );
        let cancelled = write(&store, Method::POST, &format!("{at}/cancel"), &cancel);
        assert_eq!(cancelled.reply.status, 200);
        let late = write(&store, Method::PUT, &at, &amend(3));
        assert_eq!(
            (late.reply.status, code(&late.reply)),
            (422, "APPOINTMENT_CANCELLED".into())
        );
        // The slot is free again: another booking takes it.
        let retaken = write(&store, Method::POST, &path, &booking("k-3", &slot));
        assert_eq!(retaken.reply.status, 201);

        let unknown = format!("/emis/practices/{ods}/appointments/{}", "0".repeat(8));
        let missing = write(&store, Method::PUT, &unknown, &amend(1));
        assert_eq!(
            (missing.reply.status, code(&missing.reply)),
            (404, "APPOINTMENT_NOT_FOUND".into())
        );
        let wrong = write(&store, Method::PATCH, &at, &amend(1));
        assert_eq!((wrong.reply.status, wrong.record), (405, false));
    }

    #[test]
    fn reads_answer_native_errors() {
        let (store, ods, nhs) = store();
        let read = |path: &str, query: Option<&str>| {
            let segments: Vec<&str> = path.split('/').collect();
            route_read(&store, &Method::GET, &segments, query)
                .unwrap()
                .reply
        };
        let day = "From=01/01/2030%2000:00:00&To=02/01/2030%2000:00:00";
        let r = read("/emis/practices/Z99999/slots", Some(day));
        assert_eq!((r.status, code(&r)), (404, "PRACTICE_NOT_FOUND".into()));
        let r = read(&format!("/emis/practices/{ods}/slots"), None);
        assert_eq!((r.status, code(&r)), (400, "INVALID_REQUEST".into()));
        let r = read(&format!("/emis/practices/{ods}/slots"), Some(day));
        assert_eq!(r.status, 200);
        let r = read(
            &format!("/emis/practices/{ods}/patients/9000000017/appointments"),
            Some(day),
        );
        assert_eq!((r.status, code(&r)), (404, "PATIENT_NOT_FOUND".into()));
        let r = read(
            &format!("/emis/practices/{ods}/patients/{nhs}/appointments"),
            Some(day),
        );
        assert_eq!(r.status, 200);
        let r = read(&format!("/emis/practices/{ods}/appointments/1"), None);
        assert_eq!(
            (r.status, code(&r)),
            (404, "APPOINTMENT_NOT_FOUND".into()),
            "not by number"
        );
    }

    #[test]
    fn guids_and_queries_read_as_emis_reads_them() {
        assert_eq!(bare_guid("{AB-12}"), "ab-12");
        assert_eq!(bare_guid("%7BAB-12%7D"), "ab-12");
        assert_eq!(
            percent_decode("07/12/2026%2008:30:00").as_deref(),
            Some("07/12/2026 08:30:00")
        );
        assert_eq!(percent_decode("%ZZ"), None);
        let (from, to) = range(Some("From=15/01/2026+09:00:00&To=15/01/2026%2010:00:00")).unwrap();
        assert_eq!(to - from, 3600);
        // GMT in January: local is UTC.
        assert_eq!(
            from,
            appointments::instant(crate::SimDate::ymd(2026, 1, 15).at(9, 0, 0))
        );
        for bad in [
            None,
            Some("From=15/01/2026 09:00:00"),
            Some("From=15/01/2026%2010:00:00&To=15/01/2026%2009:00:00"),
            Some("From=2026-01-15T09:00:00&To=15/01/2026%2010:00:00"),
            Some("From=15/01/2026%2009:00:00&To=15/01/2026%2010:00:00&Page=2"),
        ] {
            assert!(range(bad).is_err(), "{bad:?}");
        }
    }
}
