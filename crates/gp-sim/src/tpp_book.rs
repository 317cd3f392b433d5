//! TPP SystmOne's appointment book, as `docs/native-formats/tpp.md` ("Appointment book")
//! describes it: slot searches, booking, reading, listing, amending and cancelling over
//! the practice's book in [`crate::SimStore`], in SystmOne's XML with UTC times and its
//! own numeric ids. A booking names the version of each slot it books, and an amend or
//! cancel the appointment's version (`If-Match`), so two bookers racing never both win.

use std::collections::BTreeSet;

use hyper::HeaderMap;

use super::{Refusal, XML, error, malformed};
use crate::appointments::{
    self, Appointment, AppointmentState, Book, BookError, BookView, BookingOrganisation, Change,
    Channel, Instant, NewBooking, Slot, SlotState,
};
use crate::model::{ExternalId, Practice, SystemKind};
use crate::server::Reply;
use crate::store::SimStore;
use crate::xml::{Element, XmlWriter};

/// The longest range one slot search may span.
pub const MAX_SEARCH_DAYS: i64 = 31;
/// The most slots one booking (or one read of slots by id) may name.
pub const MAX_SLOTS: usize = 8;
/// The longest cancellation reason kept.
pub const MAX_REASON: usize = 500;
/// The longest booking organisation name kept.
const MAX_ORGANISATION_NAME: usize = 200;

// ---- reads ---------------------------------------------------------------------------

/// What a slot search asks for.
enum SlotQuery {
    /// Slots starting in `[from, to)`.
    Range(Instant, Instant),
    /// These slots (numbers), whatever their time.
    Ids(Vec<u64>),
}

/// `GET …/organisations/{ODS}/slots?from=…&to=…` or `?slotIds=1,2`.
pub(crate) fn slots(store: &SimStore, ods: &str, query: Option<&str>) -> Reply {
    let wanted = match slot_query(query) {
        Ok(q) => q,
        Err(why) => return error(400, "INVALID_PARAMETER", &why),
    };
    let practice = match store.practice(ods) {
        Some(p) if p.system == SystemKind::Tpp => p,
        _ => return super::organisation_not_found(ods),
    };
    let view = match wanted {
        SlotQuery::Range(from, to) => store.book_view(SystemKind::Tpp, ods, from, to),
        SlotQuery::Ids(ids) => store
            .with_book(SystemKind::Tpp, ods, |practice, book| {
                view_of(practice, book, &ids)
            })
            .and_then(|v| v),
    };
    match view {
        Ok(view) => ok(200, render_slots(&practice, &view)),
        Err(e) => book_error(&e),
    }
}

/// The slots numbered `ids`, with their sessions and sites, as a search shows them.
fn view_of(practice: &Practice, book: &Book, ids: &[u64]) -> Result<BookView, BookError> {
    let mut slots = Vec::with_capacity(ids.len());
    for id in ids {
        let slot = book
            .slots
            .iter()
            .find(|s| s.number == *id)
            .ok_or_else(|| BookError::SlotNotFound(id.to_string()))?;
        slots.push(slot.clone());
    }
    let sessions: Vec<_> = book
        .sessions
        .iter()
        .filter(|s| slots.iter().any(|slot| slot.session == s.id))
        .cloned()
        .collect();
    let sites = book
        .sites
        .iter()
        .filter(|site| sessions.iter().any(|s| s.site == site.id))
        .cloned()
        .collect();
    Ok(BookView {
        sites,
        sessions,
        slots,
        clinicians: practice.clinicians.clone(),
    })
}

/// `GET …/organisations/{ODS}/appointments/{AppointmentID}`.
pub(crate) fn appointment(store: &SimStore, ods: &str, id: &str) -> Reply {
    let Some(number) = appointment_number(id) else {
        return book_error(&BookError::AppointmentNotFound(id.to_owned()));
    };
    let rendered = store.with_book(SystemKind::Tpp, ods, |_, book| {
        let a = book.appointments.iter().find(|a| a.number == number)?;
        let mut w = XmlWriter::new();
        appointment_xml(&mut w, book, a);
        Some(w.finish())
    });
    match rendered {
        Ok(Some(body)) => ok(200, body),
        Ok(None) => book_error(&BookError::AppointmentNotFound(id.to_owned())),
        Err(e) => book_error(&e),
    }
}

/// `GET …/organisations/{ODS}/patients/{NHS}/appointments?from=…&to=…`: booked and
/// cancelled, however booked.
pub(crate) fn patient_appointments(
    store: &SimStore,
    ods: &str,
    nhs: &str,
    query: Option<&str>,
) -> Reply {
    // A patient's list may span any range: only slot searches are bounded.
    let (from, to) = match range(query, None) {
        Ok(r) => r,
        Err(why) => return error(400, "INVALID_PARAMETER", &why),
    };
    if let Err(reply) = nhs_ok(nhs) {
        return reply;
    }
    let found = store
        .appointments_of(SystemKind::Tpp, ods, nhs, from, to)
        .and_then(|list| {
            store.with_book(SystemKind::Tpp, ods, |_, book| {
                let mut w = XmlWriter::new();
                w.open_with(
                    "PatientAppointments",
                    &[("From", &utc(from)), ("To", &utc(to))],
                );
                w.text("NHSNumber", nhs);
                for a in &list {
                    appointment_xml(&mut w, book, a);
                }
                w.close("PatientAppointments");
                w.finish()
            })
        });
    match found {
        Ok(body) => ok(200, body),
        Err(e) => book_error(&e),
    }
}

// ---- writes --------------------------------------------------------------------------

/// `POST …/organisations/{ODS}/patients/{NHS}/appointments`: books, once per
/// `ExternalReference`; `201` booked now, `200` the reference was seen before.
pub(crate) fn book(
    store: &SimStore,
    ods: &str,
    nhs: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Reply {
    if let Err(reply) = organisation(store, ods)
        .and_then(|()| nhs_ok(nhs))
        .and_then(|()| super::xml_body(headers))
    {
        return reply;
    }
    let booking = match parse_booking(nhs, body) {
        Ok(b) => b,
        Err(refusal) => return refusal.reply(),
    };
    let key = booking.key.clone().unwrap_or_default();
    let booked = store
        .book_appointment(SystemKind::Tpp, ods, booking)
        .and_then(|(a, created)| {
            store.with_book(SystemKind::Tpp, ods, |_, book| {
                let mut w = XmlWriter::new();
                w.open_with(
                    "BookAppointmentResponse",
                    &[
                        ("ExternalReference", key.as_str()),
                        ("Created", super::bool_text(created)),
                    ],
                );
                appointment_xml(&mut w, book, &a);
                w.close("BookAppointmentResponse");
                (created, w.finish())
            })
        });
    match booked {
        Ok((created, body)) => ok(if created { 201 } else { 200 }, body),
        Err(e) => book_error(&e),
    }
}

/// `PUT …/organisations/{ODS}/appointments/{AppointmentID}`: new description and
/// comment, if the appointment is still at the `If-Match` version.
pub(crate) fn amend(
    store: &SimStore,
    ods: &str,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Reply {
    change(store, ods, id, headers, body, parse_amend)
}

/// `POST …/organisations/{ODS}/appointments/{AppointmentID}/cancel`: cancels, freeing
/// the slots, if the appointment is still at the `If-Match` version.
pub(crate) fn cancel(
    store: &SimStore,
    ods: &str,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Reply {
    change(store, ods, id, headers, body, parse_cancel)
}

fn change(
    store: &SimStore,
    ods: &str,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
    parse: fn(&[u8]) -> Result<Change, Refusal>,
) -> Reply {
    if let Err(reply) = organisation(store, ods) {
        return reply;
    }
    let Some(number) = appointment_number(id) else {
        return book_error(&BookError::AppointmentNotFound(id.to_owned()));
    };
    if let Err(reply) = super::xml_body(headers) {
        return reply;
    }
    let version = match if_match(headers) {
        Ok(v) => v,
        Err(refusal) => return refusal.reply(),
    };
    let change = match parse(body) {
        Ok(c) => c,
        Err(refusal) => return refusal.reply(),
    };
    let changed = store
        .change_appointment(
            SystemKind::Tpp,
            ods,
            &number.to_string(),
            Some(version),
            change,
        )
        .and_then(|a| {
            store.with_book(SystemKind::Tpp, ods, |_, book| {
                let mut w = XmlWriter::new();
                appointment_xml(&mut w, book, &a);
                w.finish()
            })
        });
    match changed {
        Ok(body) => ok(200, body),
        Err(e) => book_error(&e),
    }
}

/// The `If-Match` header: the appointment's `Version`, quoted or not (`W/` ignored).
fn if_match(headers: &HeaderMap) -> Result<u64, Refusal> {
    let raw = headers
        .get(hyper::header::IF_MATCH)
        .ok_or_else(|| malformed("If-Match (the appointment's Version) is required"))?;
    let value = raw.to_str().unwrap_or("").trim();
    let value = value.strip_prefix("W/").unwrap_or(value).trim_matches('"');
    value
        .parse()
        .map_err(|_| malformed(format!("If-Match '{value}' is not an appointment Version")))
}

// ---- request bodies ------------------------------------------------------------------

fn root_named<'a, 'i>(
    doc: &'a crate::xml::RequestDoc<'i>,
    name: &str,
) -> Result<Element<'a, 'i>, Refusal> {
    let root = doc.root();
    if root.name() != name {
        return Err(malformed(format!(
            "the root element is <{}>, expected <{name}>",
            root.name()
        )));
    }
    Ok(root)
}

/// Optional free text no longer than `max` characters (longer: `422 INVALID_VALUE`).
fn text(parent: Element, name: &str, max: usize) -> Result<Option<String>, Refusal> {
    match parent.child_text(name) {
        Some(t) if t.chars().count() > max => Err(Refusal::Unprocessable(
            "INVALID_VALUE",
            format!("{name} must be at most {max} characters"),
        )),
        t => Ok(t.map(|t| t.into_owned())),
    }
}

fn parse_booking(nhs: &str, body: &[u8]) -> Result<NewBooking, Refusal> {
    let doc = super::parse_xml(body)?;
    let root = root_named(&doc, "BookAppointmentRequest")?;
    let key = root
        .attr("ExternalReference")
        .ok_or_else(|| malformed("BookAppointmentRequest/@ExternalReference is missing"))?;
    if key.len() > 64 || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(malformed(
            "ExternalReference must be 1 to 64 letters, digits or hyphens",
        ));
    }
    let named: Vec<Element> = root.children_named("Slot").collect();
    if named.is_empty() || named.len() > MAX_SLOTS {
        return Err(malformed(format!(
            "a booking names 1 to {MAX_SLOTS} Slot elements, not {}",
            named.len()
        )));
    }
    let mut slots = Vec::with_capacity(named.len());
    let mut versions = Vec::with_capacity(named.len());
    for (i, slot) in named.into_iter().enumerate() {
        let at = format!("Slot[{}]", i + 1);
        let id = slot
            .attr("SlotID")
            .filter(|v| number(v).is_some())
            .ok_or_else(|| malformed(format!("{at}/@SlotID must be a SlotID (digits)")))?;
        let version = slot
            .attr("Version")
            .and_then(number)
            .ok_or_else(|| malformed(format!("{at}/@Version must be the slot's Version")))?;
        slots.push(id.to_owned());
        versions.push(version);
    }
    let organisation = root
        .child("BookingOrganisation")
        .ok_or_else(|| malformed("BookingOrganisation is missing"))?;
    let ods = organisation
        .attr("ODSCode")
        .filter(|c| (3..=10).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_alphanumeric()))
        .ok_or_else(|| malformed("BookingOrganisation/@ODSCode must be an ODS code"))?;
    let name = organisation.text();
    if name.is_empty() || name.chars().count() > MAX_ORGANISATION_NAME {
        return Err(malformed(format!(
            "BookingOrganisation must hold the organisation's name (1 to {MAX_ORGANISATION_NAME} characters)"
        )));
    }
    let external_id = match root.child("ExternalIdentifier") {
        None => None,
        Some(e) => Some(
            ExternalId::new(e.attr("System").unwrap_or(""), &e.text())
                .map_err(|m| malformed(format!("ExternalIdentifier: {m}")))?,
        ),
    };
    Ok(NewBooking {
        key: Some(key.to_owned()),
        nhs: nhs.to_owned(),
        slots,
        slot_versions: Some(versions),
        description: text(root, "Description", appointments::MAX_DESCRIPTION)?,
        comment: text(root, "Comment", appointments::MAX_COMMENT)?,
        booked_by: Some(BookingOrganisation {
            ods: ods.to_ascii_uppercase(),
            name: name.into_owned(),
        }),
        external_id,
    })
}

fn parse_amend(body: &[u8]) -> Result<Change, Refusal> {
    let doc = super::parse_xml(body)?;
    let root = root_named(&doc, "AmendAppointmentRequest")?;
    Ok(Change::Amend {
        description: text(root, "Description", appointments::MAX_DESCRIPTION)?,
        comment: text(root, "Comment", appointments::MAX_COMMENT)?,
    })
}

fn parse_cancel(body: &[u8]) -> Result<Change, Refusal> {
    let doc = super::parse_xml(body)?;
    let root = root_named(&doc, "CancelAppointmentRequest")?;
    let reason = text(root, "Reason", MAX_REASON)?
        .ok_or_else(|| malformed("CancelAppointmentRequest/Reason is missing"))?;
    Ok(Change::Cancel { reason })
}

// ---- query strings -------------------------------------------------------------------

/// `%XX` decoded (a `+` stays a `+`: times carry none).
fn decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn params(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// `from` and `to`, both required UTC date-times, `from` before `to`, at most
/// `max_days` apart when given.
fn range(query: Option<&str>, max_days: Option<i64>) -> Result<(Instant, Instant), String> {
    let all = params(query);
    let get = |name: &str| -> Result<Instant, String> {
        let v = all
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| format!("{name} is required"))?;
        super::parse_utc(v)
            .map(appointments::instant)
            .ok_or_else(|| format!("{name} '{v}' is not a YYYY-MM-DDTHH:MM:SSZ date-time"))
    };
    let (from, to) = (get("from")?, get("to")?);
    if to <= from {
        return Err("to must be later than from".into());
    }
    if let Some(days) = max_days
        && to - from > days * 86_400
    {
        return Err(format!("from and to may be at most {days} days apart"));
    }
    Ok((from, to))
}

fn slot_query(query: Option<&str>) -> Result<SlotQuery, String> {
    let all = params(query);
    let Some((_, ids)) = all.iter().find(|(k, _)| k == "slotIds") else {
        let (from, to) = range(query, Some(MAX_SEARCH_DAYS))?;
        return Ok(SlotQuery::Range(from, to));
    };
    if all.iter().any(|(k, _)| k == "from" || k == "to") {
        return Err("slotIds cannot be combined with from and to".into());
    }
    let ids: Vec<u64> = ids
        .split(',')
        .map(|id| number(id).ok_or_else(|| format!("slotIds: '{id}' is not a SlotID")))
        .collect::<Result<_, _>>()?;
    if ids.is_empty() || ids.len() > MAX_SLOTS {
        return Err(format!("slotIds names 1 to {MAX_SLOTS} slots"));
    }
    Ok(SlotQuery::Ids(ids))
}

// ---- rendering -----------------------------------------------------------------------

/// A SystmOne number: 1 to 18 digits.
fn number(v: &str) -> Option<u64> {
    ((1..=18).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit()))
        .then(|| v.parse().ok())
        .flatten()
}

fn appointment_number(id: &str) -> Option<u64> {
    number(id)
}

/// An instant as SystmOne writes it: `YYYY-MM-DDTHH:MM:SSZ`.
pub(super) fn utc(t: Instant) -> String {
    let d = appointments::utc_date_time(t);
    let (h, m, s) = d.time.unwrap_or((0, 0, 0));
    format!(
        "{:04}-{:02}-{:02}T{h:02}:{m:02}:{s:02}Z",
        d.year,
        d.month.unwrap_or(1),
        d.day.unwrap_or(1)
    )
}

/// A length in whole minutes (every session and slot starts and ends on a minute).
fn minutes(from: Instant, to: Instant) -> String {
    ((to - from) / 60).to_string()
}

fn channel(c: Channel) -> &'static str {
    match c {
        Channel::InPerson => "FaceToFace",
        Channel::Telephone => "Telephone",
        Channel::Video => "Video",
    }
}

fn slot_status(s: SlotState) -> &'static str {
    match s {
        SlotState::Free => "Available",
        SlotState::Booked => "Booked",
        SlotState::Embargoed => "Embargoed",
        SlotState::PracticeOnly => "PracticeOnly",
    }
}

fn render_slots(practice: &Practice, view: &BookView) -> String {
    let mut w = XmlWriter::new();
    w.open_with("SlotSearchResponse", &[("OrganisationID", &practice.ods)]);
    w.open("Sites");
    for site in &view.sites {
        w.open_with("Site", &[("SiteUID", &site.id)]);
        w.text("Name", &site.name);
        w.open("Address");
        for (i, name) in ["AddressLine1", "AddressLine2", "AddressLine3"]
            .iter()
            .enumerate()
        {
            w.text(name, site.lines.get(i).map_or("", String::as_str));
        }
        w.text("AddressLine4", &site.town);
        w.text("PostCode", &site.postcode);
        w.close("Address");
        w.close("Site");
    }
    w.close("Sites");
    // Only the staff whose sessions are shown, each with their SDS job role.
    let running: BTreeSet<&str> = view.sessions.iter().map(|s| s.clinician.as_str()).collect();
    w.open("Staff");
    for c in view
        .clinicians
        .iter()
        .filter(|c| running.contains(c.id.as_str()))
    {
        let role = appointments::job_role(practice, c);
        super::staff_member(&mut w, c, Some(role));
    }
    w.close("Staff");
    w.open("Sessions");
    for s in &view.sessions {
        w.open_with(
            "Session",
            &[
                ("SessionID", &s.number.to_string()),
                ("StaffUID", &s.clinician),
                ("SiteUID", &s.site),
            ],
        );
        w.text("Name", &s.name);
        w.text("Service", &s.service);
        w.text("StartDateTime", &utc(s.start));
        w.text("EndDateTime", &utc(s.end));
        w.close("Session");
    }
    w.close("Sessions");
    w.open("Slots");
    for slot in &view.slots {
        let session = view
            .sessions
            .iter()
            .find(|s| s.id == slot.session)
            .map_or(0, |s| s.number);
        slot_xml(&mut w, slot, session);
    }
    w.close("Slots");
    w.close("SlotSearchResponse");
    w.finish()
}

fn slot_xml(w: &mut XmlWriter, slot: &Slot, session: u64) {
    w.open_with(
        "Slot",
        &[
            ("SlotID", &slot.number.to_string()),
            ("SessionID", &session.to_string()),
            ("Version", &slot.version.to_string()),
        ],
    );
    w.text("StartDateTime", &utc(slot.start));
    w.text("Duration", &minutes(slot.start, slot.end));
    w.text("SlotType", &slot.slot_type);
    w.text("DeliveryChannel", channel(slot.channel));
    w.text("Status", slot_status(slot.state));
    w.close("Slot");
}

/// An `<Appointment>`, with what its session and slots say about it.
fn appointment_xml(w: &mut XmlWriter, book: &Book, a: &Appointment) {
    let session = book.sessions.iter().find(|s| s.id == a.session);
    let slots: Vec<&Slot> = a.slots.iter().filter_map(|id| book.slot(id)).collect();
    w.open_with(
        "Appointment",
        &[
            ("AppointmentID", &a.number.to_string()),
            ("Version", &a.version.to_string()),
        ],
    );
    w.text("NHSNumber", &a.nhs);
    w.text(
        "Status",
        match a.state {
            AppointmentState::Booked => "Booked",
            AppointmentState::Cancelled => "Cancelled",
        },
    );
    if let Some(s) = session {
        w.text_with(
            "Session",
            &[
                ("SessionID", &s.number.to_string()),
                ("StaffUID", &s.clinician),
                ("SiteUID", &s.site),
            ],
            "",
        );
    }
    w.open("Slots");
    for slot in &slots {
        w.text_with("Slot", &[("SlotID", &slot.number.to_string())], "");
    }
    w.close("Slots");
    w.text("StartDateTime", &utc(a.start));
    w.text("Duration", &minutes(a.start, a.end));
    if let Some(first) = slots.first() {
        w.text("SlotType", &first.slot_type);
        w.text("DeliveryChannel", channel(first.channel));
    }
    w.opt("Description", a.description.as_deref());
    w.opt("Comment", a.comment.as_deref());
    w.opt("CancellationReason", a.cancellation_reason.as_deref());
    w.text("BookedDateTime", &utc(a.created));
    if let Some(org) = &a.booked_by {
        w.text_with("BookingOrganisation", &[("ODSCode", &org.ods)], &org.name);
    }
    if let Some(ext) = &a.external_id {
        w.text_with("ExternalIdentifier", &[("System", &ext.system)], &ext.value);
    }
    w.close("Appointment");
}

// ---- answers -------------------------------------------------------------------------

fn ok(status: u16, body: String) -> Reply {
    Reply {
        status,
        content_type: XML,
        body: body.into_bytes(),
    }
}

fn organisation(store: &SimStore, ods: &str) -> Result<(), Reply> {
    match store.practice(ods) {
        Some(p) if p.system == SystemKind::Tpp => Ok(()),
        _ => Err(super::organisation_not_found(ods)),
    }
}

fn nhs_ok(nhs: &str) -> Result<(), Reply> {
    if crate::nhs::is_valid(nhs) {
        Ok(())
    } else {
        Err(error(
            400,
            "INVALID_NHS_NUMBER",
            &format!("{nhs} is not a valid NHS number"),
        ))
    }
}

/// A refusal of the book as a SystmOne `ErrorResponse`.
fn book_error(e: &BookError) -> Reply {
    match e {
        BookError::PracticeNotFound(ods) => super::organisation_not_found(ods),
        BookError::PatientNotFound(ods) => error(
            404,
            "PATIENT_NOT_FOUND",
            &format!("No patient with that NHS number is registered at {ods}"),
        ),
        BookError::SlotNotFound(id) => error(
            404,
            "SLOT_NOT_FOUND",
            &format!("No slot {id} in this organisation's appointment book"),
        ),
        BookError::AppointmentNotFound(id) => error(
            404,
            "APPOINTMENT_NOT_FOUND",
            &format!("No appointment {id} in this organisation's appointment book"),
        ),
        BookError::SlotTaken(id) => error(
            409,
            "SLOT_UNAVAILABLE",
            &format!("Slot {id} is already booked"),
        ),
        BookError::SlotChanged(id) => error(
            409,
            "SLOT_CHANGED",
            &format!("Slot {id} has changed since the Version given"),
        ),
        BookError::Conflict(now) => error(
            409,
            "RECORD_MODIFIED",
            &format!(
                "The appointment was modified since the Version given; it is now at Version {now}"
            ),
        ),
        BookError::NotBookable(id) => error(
            422,
            "SLOT_NOT_BOOKABLE",
            &format!("Slot {id} is embargoed or kept for the practice's own use"),
        ),
        BookError::InPast(id) => error(
            422,
            "SLOT_IN_PAST",
            &format!("Slot {id} has started already"),
        ),
        BookError::NotAdjacent => error(
            422,
            "SLOTS_NOT_ADJACENT",
            "The slots must follow one another in one session, with one slot type and delivery channel",
        ),
        BookError::Cancelled => error(
            422,
            "APPOINTMENT_CANCELLED",
            "The appointment is cancelled and cannot be changed",
        ),
        BookError::Invalid(why) => error(422, "INVALID_VALUE", why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings() {
        assert_eq!(
            range(
                Some("from=2026-12-07T09%3A00%3A00Z&to=2026-12-08T09:00:00Z"),
                Some(31)
            ),
            Ok((1_796_634_000, 1_796_720_400))
        );
        assert!(range(Some("from=2026-12-07T09:00:00Z"), None).is_err());
        assert!(
            range(
                Some("from=2026-12-08T09:00:00Z&to=2026-12-07T09:00:00Z"),
                None
            )
            .is_err()
        );
        let months = Some("from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z");
        assert!(range(months, Some(31)).is_err());
        assert!(range(months, None).is_ok());
        assert!(
            matches!(slot_query(Some("slotIds=12,13")), Ok(SlotQuery::Ids(ids)) if ids == [12, 13])
        );
        assert!(slot_query(Some("slotIds=12,x")).is_err());
        assert!(slot_query(Some("slotIds=1&from=2026-12-07T09:00:00Z")).is_err());
        assert_eq!(utc(1_796_634_000), "2026-12-07T09:00:00Z");
    }
}
