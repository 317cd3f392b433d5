//! Evolution's appointment book (`docs/native-formats/microtest.md`, "Appointment book"):
//! the native calls, their refusals as [`AdapterError`]s, and native ⇄ neutral mapping.
//!
//! Evolution writes date-times as UK local time; the neutral book is UTC. A search asks
//! Evolution for an hour either side of the range and keeps exactly the slots starting in
//! it, so the repeated October hour (which local time cannot name twice) never loses one.
//! Every document maps whole or not at all: a broken one is
//! [`AdapterError::InvalidNativeData`] naming the field, never half an answer.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use gp_adapter::appointments::{
    AppointmentBook, AppointmentChange, AppointmentStatus, BookClinician, BookLocation,
    BookSession, BookSlot, BookedAppointment, DeliveryChannel, JobRole, NewAppointment, SlotStatus,
};
use gp_adapter::json::{Node, Precision};
use gp_adapter::native::{Method, NativeResponse};
use gp_adapter::{AdapterError, CallContext, UtcDateTime};
use gp_fhir::date::{day_after, day_before, parse_instant_utc};
use gp_fhir::text::shown;
use gp_fhir::{NhsNumber, OdsCode};

use crate::client::{JSON, MicrotestClient, PREFIX, error_from, write_error_from};
use crate::error::MicrotestDataError;
use crate::mapping::{native_datetime, parse, parse_problem};

type Result<T> = std::result::Result<T, MicrotestDataError>;

/// Most slot pages one search follows: 200 pages of 500 is far beyond a practice's 14
/// days, so hitting it means the cursors go round in circles.
pub const MAX_SLOT_PAGES: usize = 200;
/// The longest id handed out: the gateway prefixes ids with the ODS code.
pub const MAX_ID: usize = 56;

// ---- native calls --------------------------------------------------------------------

impl MicrotestClient {
    /// `GET /sites/{ODS}/slots?from=…&to=…[&cursor=…]`: one page of slots. An unknown
    /// site is [`AdapterError::NotFound`]; a cursor Evolution issued and then refuses is
    /// a broken cursor (bad native data).
    pub async fn slots(
        &self,
        ods: &OdsCode,
        (from, to): (&str, &str),
        cursor: Option<&str>,
        ctx: &CallContext,
    ) -> std::result::Result<Bytes, AdapterError> {
        let mut path = format!("{PREFIX}/sites/{}/slots?from={from}&to={to}", ods.as_str());
        if let Some(c) = cursor {
            path.push_str("&cursor=");
            path.push_str(c);
        }
        self.get(&path, ctx)
            .await?
            .map_err(|r| match (code_of(&r), cursor) {
                ((404, Some(code)), _) if code == "SITE_NOT_FOUND" => site_not_found(ods),
                ((400, Some(code)), Some(c)) if code == "INVALID_CURSOR" => {
                    broken(format!("Evolution refused its own next_cursor '{c}'")).into()
                }
                _ => error_from(&r),
            })
    }

    /// `GET /sites/{ODS}/appointments/{id}`; `None` when Evolution has no such appointment.
    /// `id` has been checked to be URL-safe.
    pub async fn appointment(
        &self,
        ods: &OdsCode,
        id: &str,
        ctx: &CallContext,
    ) -> std::result::Result<Option<Bytes>, AdapterError> {
        let path = format!("{PREFIX}/sites/{}/appointments/{id}", ods.as_str());
        match self.get(&path, ctx).await? {
            Ok(body) => Ok(Some(body)),
            Err(r) => match code_of(&r) {
                (404, Some(code)) if code == "APPOINTMENT_NOT_FOUND" => Ok(None),
                (404, Some(code)) if code == "SITE_NOT_FOUND" => Err(site_not_found(ods)),
                _ => Err(error_from(&r)),
            },
        }
    }

    /// `GET /sites/{ODS}/patients/{patient_id}/appointments?from=…&to=…`.
    pub async fn patient_appointments(
        &self,
        ods: &OdsCode,
        patient_id: &str,
        (from, to): (&str, &str),
        ctx: &CallContext,
    ) -> std::result::Result<Bytes, AdapterError> {
        let path = format!(
            "{PREFIX}/sites/{}/patients/{patient_id}/appointments?from={from}&to={to}",
            ods.as_str()
        );
        self.get(&path, ctx).await?.map_err(|r| error_from(&r))
    }

    /// `POST /sites/{ODS}/patients/{patient_id}/appointments` with `Idempotency-Key:
    /// {key}`. `Ok((created, body))`: `201` booked now, `200` the key was seen before.
    pub async fn book(
        &self,
        ods: &OdsCode,
        patient_id: &str,
        key: &str,
        body: Vec<u8>,
        ctx: &CallContext,
    ) -> std::result::Result<(bool, Bytes), AdapterError> {
        let path = format!(
            "{PREFIX}/sites/{}/patients/{patient_id}/appointments",
            ods.as_str()
        );
        self.http
            .send(
                Method::POST,
                &path,
                Some((JSON, body)),
                &[("idempotency-key", key.to_owned())],
                ctx,
            )
            .await?
            .created_body(booking_refused)
    }

    /// `PATCH /sites/{ODS}/appointments/{id}` (amend) or `POST …/{id}/cancel`, the body
    /// carrying the version it is made against. `id` has been checked to be URL-safe.
    pub async fn change_appointment(
        &self,
        ods: &OdsCode,
        id: &str,
        cancel: bool,
        body: Vec<u8>,
        ctx: &CallContext,
    ) -> std::result::Result<Bytes, AdapterError> {
        let (method, path) = if cancel {
            (
                Method::POST,
                format!("{PREFIX}/sites/{}/appointments/{id}/cancel", ods.as_str()),
            )
        } else {
            (
                Method::PATCH,
                format!("{PREFIX}/sites/{}/appointments/{id}", ods.as_str()),
            )
        };
        self.http
            .send(method, &path, Some((JSON, body)), &[], ctx)
            .await?
            .ok_body(|r| match code_of(r) {
                (404, Some(code)) if code == "APPOINTMENT_NOT_FOUND" => AdapterError::NotFound {
                    system: crate::SYSTEM,
                    what: format!("appointment {id} at {ods}"),
                },
                (404, Some(code)) if code == "SITE_NOT_FOUND" => site_not_found(ods),
                _ => write_error_from(r),
            })
    }
}

/// The status and native code of a refusal.
fn code_of(r: &NativeResponse) -> (u16, Option<String>) {
    (r.status, parse_problem(&r.body).map(|p| p.code))
}

pub(crate) fn site_not_found(ods: &OdsCode) -> AdapterError {
    AdapterError::NotFound {
        system: crate::SYSTEM,
        what: format!("site {ods}"),
    }
}

/// A refused booking: a taken slot is `SlotUnavailable`, a slot Evolution does not hold
/// cannot be booked (`Unprocessable`), the rest as any refused write. A `409` without
/// Evolution's `SLOT_UNAVAILABLE` is not a version conflict (a booking names no version):
/// it is an answer this adapter does not understand.
fn booking_refused(r: &NativeResponse) -> AdapterError {
    let native = parse_problem(&r.body);
    let detail = || match &native {
        Some(p) if p.detail.is_empty() => p.code.clone(),
        Some(p) => format!("{}: {}", p.code, p.detail),
        None => format!("HTTP {}", r.status),
    };
    match (r.status, native.as_ref().map(|p| p.code.as_str())) {
        (409, Some("SLOT_UNAVAILABLE")) => AdapterError::SlotUnavailable {
            system: crate::SYSTEM,
            detail: detail(),
        },
        (409, _) => AdapterError::Rejected {
            system: crate::SYSTEM,
            detail: format!("HTTP 409 {}", detail()),
        },
        (404, Some("SLOT_NOT_FOUND")) => AdapterError::Unprocessable {
            system: crate::SYSTEM,
            detail: detail(),
        },
        _ => write_error_from(r),
    }
}

/// The checks every walk of Evolution's cursor pages makes of a page's `next_cursor`:
/// an empty page must not promise more, and a cursor must not lead back to a page
/// already read (a loop). `what` names the list (`slot`, `document`) in the error.
pub(crate) fn follow_cursor(
    seen: &mut HashSet<String>,
    next: String,
    empty_page: bool,
    what: &str,
) -> std::result::Result<String, MicrotestDataError> {
    let broken = |reason: String| MicrotestDataError::BrokenCursor {
        what: what.into(),
        reason,
    };
    if empty_page {
        return Err(broken("an empty page has a next_cursor".into()));
    }
    if !seen.insert(next.clone()) {
        return Err(broken(format!(
            "next_cursor '{next}' repeats a page already read"
        )));
    }
    Ok(next)
}

fn broken(reason: String) -> MicrotestDataError {
    MicrotestDataError::BrokenCursor {
        what: "slot".into(),
        reason,
    }
}

// ---- times and ids -------------------------------------------------------------------

/// A date object of precision `datetime` (UK local time) as a UTC instant.
pub(crate) fn utc(n: Node) -> Result<UtcDateTime> {
    let d = n.object()?;
    let precision = d.get("precision");
    if precision.str()? != "datetime" {
        return Err(precision.invalid("expected datetime").into());
    }
    let value = d.get("value");
    let fhir = value.date_at(Precision::DateTime)?;
    let (year, month, day, hour, minute, second) =
        parse_instant_utc(&fhir).map_err(|e| value.invalid(e.to_string()))?;
    Ok(UtcDateTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
    })
}

/// `t` an hour earlier (`-1`) or later (`1`).
fn shift_hour(t: UtcDateTime, by: i8) -> UtcDateTime {
    match (by, t.hour) {
        (-1, 0) => {
            let (year, month, day) = day_before((t.year, t.month, t.day));
            UtcDateTime {
                year,
                month,
                day,
                hour: 23,
                ..t
            }
        }
        (-1, h) => UtcDateTime { hour: h - 1, ..t },
        (_, 23) => {
            let (year, month, day) = day_after((t.year, t.month, t.day));
            UtcDateTime {
                year,
                month,
                day,
                hour: 0,
                ..t
            }
        }
        (_, h) => UtcDateTime { hour: h + 1, ..t },
    }
}

/// The native range asked for `[start, end)`: an hour wider each side, in local time.
fn native_range(start: UtcDateTime, end: UtcDateTime) -> (String, String) {
    (
        native_datetime(shift_hour(start, -1)),
        native_datetime(shift_hour(end, 1)),
    )
}

/// Whether `id` can be handed out (and put in a URL path): 1 to [`MAX_ID`] of
/// `A-Z a-z 0-9 - .`, not only dots.
pub fn valid_book_id(id: &str) -> bool {
    (1..=MAX_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !id.bytes().all(|b| b == b'.')
}

fn book_id(n: Node) -> Result<String> {
    let raw = n.str()?;
    if valid_book_id(raw) {
        Ok(raw.to_owned())
    } else {
        Err(n
            .invalid(format!(
                "'{}' is not an id (1 to {MAX_ID} of A-Z a-z 0-9 - .)",
                shown(raw)
            ))
            .into())
    }
}

fn opt_book_id(n: Node) -> Result<Option<String>> {
    match n.opt_str()? {
        None => Ok(None),
        Some(_) => book_id(n).map(Some),
    }
}

fn owned(n: Node) -> Result<Option<String>> {
    Ok(n.opt_str()?.map(str::to_owned))
}

const CHANNELS: [(&str, DeliveryChannel); 3] = [
    ("in_person", DeliveryChannel::InPerson),
    ("telephone", DeliveryChannel::Telephone),
    ("video", DeliveryChannel::Video),
];

// ---- slot pages ----------------------------------------------------------------------

/// One mapped page of `…/slots`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotPage {
    /// The page's slots and what they refer to.
    pub book: AppointmentBook,
    /// Slots across all pages, when the page says.
    pub total: Option<u64>,
    /// The cursor of the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

/// Maps one page of `GET …/slots`.
pub fn map_slot_page(body: &[u8]) -> Result<SlotPage> {
    let doc = parse("slot page", body)?;
    let mut book = AppointmentBook::default();
    let slots = doc.get("slots");
    for s in slots.array()? {
        let (start, end) = span(s)?;
        book.slots.push(BookSlot {
            id: book_id(s.get("slot_id"))?,
            session: book_id(s.get("session_id"))?,
            start,
            end,
            slot_type: s.get("slot_type").str()?.to_owned(),
            channel: s.get("delivery_channel").one_of(&CHANNELS)?,
            status: s.get("state").one_of(&[
                ("free", SlotStatus::Free),
                ("booked", SlotStatus::Busy),
                ("embargoed", SlotStatus::Unavailable),
                ("practice_only", SlotStatus::Unavailable),
            ])?,
        });
    }
    let sessions = doc.get("sessions");
    for s in sessions.array()? {
        let (start, end) = span(s)?;
        book.sessions.push(BookSession {
            id: book_id(s.get("session_id"))?,
            name: s.get("name").str()?.to_owned(),
            clinician: opt_book_id(s.get("clinician_id"))?,
            location: book_id(s.get("location_id"))?,
            service: owned(s.get("service"))?,
            start,
            end,
        });
    }
    let clinicians = doc.get("clinicians");
    for c in clinicians.array()? {
        let role = match c.get("job_role").opt_object()? {
            None => None,
            Some(r) => Some(JobRole {
                code: r.get("code").str()?.to_owned(),
                display: r.get("term").str()?.to_owned(),
            }),
        };
        book.clinicians.push(BookClinician {
            id: book_id(c.get("clinician_id"))?,
            prefix: owned(c.get("title"))?,
            given: c.get("given_name").str()?.to_owned(),
            family: c.get("family_name").str()?.to_owned(),
            gender: c
                .get("sex")
                .opt_one_of(&[
                    ("M", "male"),
                    ("F", "female"),
                    ("X", "other"),
                    ("U", "unknown"),
                ])?
                .map(str::to_owned),
            sds_user_id: owned(c.get("sds_user_id"))?,
            role,
        });
    }
    let locations = doc.get("locations");
    for l in locations.array()? {
        let address = l.get("address");
        let lines = address.get("lines");
        let mut line = Vec::new();
        for x in lines.opt_array()?.into_iter().flatten() {
            line.extend(owned(x)?);
        }
        book.locations.push(BookLocation {
            id: book_id(l.get("location_id"))?,
            name: l.get("name").str()?.to_owned(),
            lines: line,
            town: owned(address.get("town"))?,
            postcode: owned(address.get("postcode"))?,
        });
    }
    let cursor = doc.get("next_cursor");
    let next_cursor = match cursor.opt_str()? {
        None => None,
        Some(c) => {
            // Sent back as a query value as it stands, so it must be URL-safe.
            let safe = c.len() <= 512
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
            if !safe {
                return Err(broken(format!(
                    "next_cursor '{}' is too long or not URL-safe",
                    shown(c)
                )));
            }
            Some(c.to_owned())
        }
    };
    let total = doc.get("total");
    let total = match total.opt_integer()? {
        None => None,
        Some(n) => Some(u64::try_from(n).map_err(|_| total.invalid(format!("{n} is negative")))?),
    };
    Ok(SlotPage {
        book,
        total,
        next_cursor,
    })
}

/// `start` and `end`, `end` after `start`.
fn span(n: Node) -> Result<(UtcDateTime, UtcDateTime)> {
    let start = utc(n.get("start"))?;
    let end_node = n.get("end");
    let end = utc(end_node)?;
    if end <= start {
        return Err(end_node.invalid("not after start").into());
    }
    Ok((start, end))
}

/// Adds `items` to `into` by id: one id seen on two pages must be the same thing both
/// times (a session, clinician or location may be named by slots of several pages).
fn merge<T: Clone + PartialEq>(
    into: &mut BTreeMap<String, T>,
    items: Vec<T>,
    id: impl Fn(&T) -> &str,
    what: &str,
) -> Result<()> {
    for item in items {
        let key = id(&item).to_owned();
        match into.get(&key) {
            Some(seen) if *seen != item => {
                return Err(MicrotestDataError::Invalid {
                    path: format!("{what}s"),
                    reason: format!("{what} {key} differs between pages"),
                });
            }
            Some(_) => {}
            None => {
                into.insert(key, item);
            }
        }
    }
    Ok(())
}

/// Whole pages collected, then cut to the slots starting in `[start, end)` and what they
/// refer to; every reference must resolve.
#[derive(Debug, Default)]
pub struct SlotCollector {
    slots: Vec<BookSlot>,
    slot_ids: HashSet<String>,
    sessions: BTreeMap<String, BookSession>,
    clinicians: BTreeMap<String, BookClinician>,
    locations: BTreeMap<String, BookLocation>,
}

impl SlotCollector {
    /// Adds a page; a slot seen on an earlier page is a paging fault.
    pub fn add(&mut self, page: AppointmentBook) -> Result<()> {
        for slot in page.slots {
            if !self.slot_ids.insert(slot.id.clone()) {
                return Err(broken(format!("slot {} is on two pages", slot.id)));
            }
            self.slots.push(slot);
        }
        merge(&mut self.sessions, page.sessions, |s| &s.id, "session")?;
        merge(
            &mut self.clinicians,
            page.clinicians,
            |c| &c.id,
            "clinician",
        )?;
        merge(&mut self.locations, page.locations, |l| &l.id, "location")?;
        Ok(())
    }

    /// Slots collected so far.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no slot was collected.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The book of the slots starting in `[start, end)`, in time order.
    pub fn finish(self, start: UtcDateTime, end: UtcDateTime) -> Result<AppointmentBook> {
        let missing = |what: &str, id: &str, by: &str| MicrotestDataError::Invalid {
            path: format!("{what}s"),
            reason: format!("{what} {id}, named by {by}, is on no page"),
        };
        let mut slots: Vec<BookSlot> = self
            .slots
            .into_iter()
            .filter(|s| s.start >= start && s.start < end)
            .collect();
        slots.sort_by(|a, b| (a.start, &a.id).cmp(&(b.start, &b.id)));
        let mut sessions = Vec::new();
        let mut used: HashSet<&str> = HashSet::new();
        for slot in &slots {
            if used.insert(&slot.session) {
                let session = self.sessions.get(&slot.session).ok_or_else(|| {
                    missing("session", &slot.session, &format!("slot {}", slot.id))
                })?;
                sessions.push(session.clone());
            }
        }
        let mut clinicians = Vec::new();
        let mut locations = Vec::new();
        let (mut seen_c, mut seen_l) = (HashSet::new(), HashSet::new());
        for s in &sessions {
            if let Some(c) = &s.clinician
                && seen_c.insert(c.clone())
            {
                let clinician = self
                    .clinicians
                    .get(c)
                    .ok_or_else(|| missing("clinician", c, &format!("session {}", s.id)))?;
                clinicians.push(clinician.clone());
            }
            if seen_l.insert(s.location.clone()) {
                let location = self.locations.get(&s.location).ok_or_else(|| {
                    missing("location", &s.location, &format!("session {}", s.id))
                })?;
                locations.push(location.clone());
            }
        }
        Ok(AppointmentBook {
            slots,
            sessions,
            clinicians,
            locations,
        })
    }
}

// ---- appointments --------------------------------------------------------------------

fn map_appointment_node(a: Node) -> Result<BookedAppointment> {
    let version = a.get("version");
    let v = version.integer()?;
    if v < 0 {
        return Err(version.invalid(format!("{v} is negative")).into());
    }
    let nhs = a.get("nhs_number");
    let nhs_text = nhs.str()?;
    let nhs_number = NhsNumber::parse(nhs_text)
        .map_err(|_| nhs.invalid(format!("'{}' is not an NHS number", shown(nhs_text))))?;
    let list = a.get("slot_ids");
    let slots = list.array()?.map(book_id).collect::<Result<Vec<_>>>()?;
    if slots.is_empty() {
        return Err(list.missing().into());
    }
    let (start, end) = span(a)?;
    let booked_by = match a.get("booking_organisation").opt_object()? {
        None => None,
        Some(o) => {
            let code = o.get("ods_code");
            let text = code.str()?;
            Some(
                OdsCode::parse(text)
                    .map_err(|_| code.invalid(format!("'{}' is not an ODS code", shown(text))))?,
            )
        }
    };
    let identifier = match a.get("external_identifier").opt_object()? {
        None => None,
        Some(e) => Some((
            e.get("system").str()?.to_owned(),
            e.get("value").str()?.to_owned(),
        )),
    };
    Ok(BookedAppointment {
        id: book_id(a.get("appointment_id"))?,
        version: v.to_string(),
        nhs_number,
        status: a.get("status").one_of(&[
            ("booked", AppointmentStatus::Booked),
            ("cancelled", AppointmentStatus::Cancelled),
        ])?,
        slots,
        session: book_id(a.get("session_id"))?,
        location: opt_book_id(a.get("location_id"))?,
        clinician: opt_book_id(a.get("clinician_id"))?,
        start,
        end,
        slot_type: owned(a.get("slot_type"))?,
        channel: a.get("delivery_channel").opt_one_of(&CHANNELS)?,
        description: owned(a.get("description"))?,
        comment: owned(a.get("comment"))?,
        cancellation_reason: owned(a.get("cancellation_reason"))?,
        created: utc(a.get("booked_at"))?,
        booked_by,
        identifier,
    })
}

/// Maps an appointment document (read, booked, amended or cancelled).
pub fn map_appointment(body: &[u8]) -> Result<BookedAppointment> {
    let doc = parse("appointment", body)?;
    map_appointment_node(doc.root())
}

/// Maps a patient's appointment list (`{"appointments":[…]}`).
pub fn map_appointments(body: &[u8]) -> Result<Vec<BookedAppointment>> {
    let doc = parse("appointment list", body)?;
    let list = doc.get("appointments");
    list.array()?.map(map_appointment_node).collect()
}

/// The body of `POST …/appointments`: blank text is sent as none.
pub fn render_booking(a: &NewAppointment) -> Vec<u8> {
    let text = |t: &Option<String>| {
        t.as_deref()
            .filter(|t| !t.trim().is_empty())
            .map(str::to_owned)
    };
    let body = serde_json::json!({
        "nhs_number": a.nhs_number.to_string(),
        "slot_ids": a.slots,
        "description": text(&a.description),
        "comment": text(&a.comment),
        "booking_organisation": { "ods_code": a.booked_by.as_str(), "name": a.booked_by_name },
        "external_identifier": a.identifier.as_ref().map(|(system, value)| {
            serde_json::json!({ "system": system, "value": value })
        }),
    });
    body.to_string().into_bytes()
}

/// The body of an amend or cancel made against `version`.
pub fn render_change(version: u64, change: &AppointmentChange) -> Vec<u8> {
    let text = |t: &Option<String>| {
        t.as_deref()
            .filter(|t| !t.trim().is_empty())
            .map(str::to_owned)
    };
    let body = match change {
        AppointmentChange::Amend {
            description,
            comment,
        } => serde_json::json!({
            "version": version,
            "description": text(description),
            "comment": text(comment),
        }),
        AppointmentChange::Cancel { reason } => {
            serde_json::json!({ "version": version, "reason": reason.trim() })
        }
    };
    body.to_string().into_bytes()
}

// ---- the adapter's calls -------------------------------------------------------------

impl crate::MicrotestAdapter {
    /// Every page of slots in an hour-wider range, then cut to `[start, end)`.
    pub(crate) async fn book_slots(
        &self,
        ods: &OdsCode,
        start: UtcDateTime,
        end: UtcDateTime,
        ctx: &CallContext,
    ) -> std::result::Result<AppointmentBook, AdapterError> {
        if end <= start {
            return Ok(AppointmentBook::default());
        }
        let (from, to) = native_range(start, end);
        let mut collected = SlotCollector::default();
        let mut cursor: Option<String> = None;
        let mut seen: HashSet<String> = HashSet::new();
        for _ in 0..MAX_SLOT_PAGES {
            let body = self
                .client
                .slots(ods, (&from, &to), cursor.as_deref(), ctx)
                .await?;
            let page = map_slot_page(&body)?;
            let on_page = page.book.slots.len();
            collected.add(page.book)?;
            match page.next_cursor {
                None => {
                    return match page.total {
                        Some(total) if total != collected.len() as u64 => Err(broken(format!(
                            "the pages held {} slots but total says {total}",
                            collected.len()
                        ))
                        .into()),
                        _ => Ok(collected.finish(start, end)?),
                    };
                }
                Some(next) => cursor = Some(follow_cursor(&mut seen, next, on_page == 0, "slot")?),
            }
        }
        Err(broken(format!("still more pages after {MAX_SLOT_PAGES}")).into())
    }

    /// The appointments of `nhs` overlapping `[start, end)`, in time order.
    pub(crate) async fn patient_appointments(
        &self,
        ods: &OdsCode,
        nhs: NhsNumber,
        (start, end): (UtcDateTime, UtcDateTime),
        ctx: &CallContext,
    ) -> std::result::Result<Vec<BookedAppointment>, AdapterError> {
        let patient_id = self.patient_id(nhs, ods, ctx).await?;
        if end <= start {
            return Ok(Vec::new());
        }
        let (from, to) = native_range(start, end);
        let body = self
            .client
            .patient_appointments(ods, &patient_id, (&from, &to), ctx)
            .await?;
        let mut list = map_appointments(&body)?;
        if let Some(other) = list.iter().find(|a| a.nhs_number != nhs) {
            return Err(MicrotestDataError::Invalid {
                path: "appointments".into(),
                reason: format!(
                    "appointment {} is {}'s, in a list for {nhs}",
                    other.id, other.nhs_number
                ),
            }
            .into());
        }
        list.retain(|a| a.end > start && a.start < end);
        list.sort_by(|a, b| (a.start, &a.id).cmp(&(b.start, &b.id)));
        Ok(list)
    }

    /// Books under the key; the answer must be for the patient booked for.
    pub(crate) async fn book(
        &self,
        ods: &OdsCode,
        a: &NewAppointment,
        ctx: &CallContext,
    ) -> std::result::Result<(BookedAppointment, bool), AdapterError> {
        let body = render_booking(a);
        let patient_id = self.patient_id(a.nhs_number, ods, ctx).await?;
        let (created, answer) = self
            .client
            .book(ods, &patient_id, &a.key, body, ctx)
            .await?;
        let booked = map_appointment(&answer)?;
        if booked.nhs_number != a.nhs_number {
            return Err(MicrotestDataError::Invalid {
                path: "nhs_number".into(),
                reason: format!(
                    "the booking answered is {}'s, but {} was booked for",
                    booked.nhs_number, a.nhs_number
                ),
            }
            .into());
        }
        Ok((booked, created))
    }

    /// One appointment; `None` when Evolution has none by that id.
    pub(crate) async fn one_appointment(
        &self,
        ods: &OdsCode,
        id: &str,
        ctx: &CallContext,
    ) -> std::result::Result<Option<BookedAppointment>, AdapterError> {
        // Not an id this adapter hands out, so no appointment (and never a URL path).
        if !valid_book_id(id) {
            return Ok(None);
        }
        let Some(body) = self.client.appointment(ods, id, ctx).await? else {
            return Ok(None);
        };
        Ok(Some(same_appointment(map_appointment(&body)?, id)?))
    }

    /// Amends or cancels at `expected_version`.
    pub(crate) async fn change(
        &self,
        ods: &OdsCode,
        id: &str,
        expected_version: &str,
        change: &AppointmentChange,
        ctx: &CallContext,
    ) -> std::result::Result<BookedAppointment, AdapterError> {
        if !valid_book_id(id) {
            return Err(AdapterError::NotFound {
                system: crate::SYSTEM,
                what: format!("appointment {} at {ods}", shown(id)),
            });
        }
        let Ok(version) = expected_version.parse::<u64>() else {
            // Not a number, so not a version of this appointment: it cannot be current.
            return Err(AdapterError::VersionConflict {
                system: crate::SYSTEM,
                detail: format!(
                    "'{}' is not a Microtest Evolution appointment version",
                    shown(expected_version)
                ),
            });
        };
        let cancel = match change {
            AppointmentChange::Cancel { reason } if reason.trim().is_empty() => {
                return Err(AdapterError::Unprocessable {
                    system: crate::SYSTEM,
                    detail: "a cancellation needs a reason".into(),
                });
            }
            AppointmentChange::Cancel { .. } => true,
            AppointmentChange::Amend { .. } => false,
        };
        let body = render_change(version, change);
        let answer = self
            .client
            .change_appointment(ods, id, cancel, body, ctx)
            .await?;
        Ok(same_appointment(map_appointment(&answer)?, id)?)
    }
}

/// An answer about another appointment than the one asked for is never passed on.
fn same_appointment(a: BookedAppointment, id: &str) -> Result<BookedAppointment> {
    if a.id.eq_ignore_ascii_case(id) {
        Ok(a)
    } else {
        Err(MicrotestDataError::Invalid {
            path: "appointment_id".into(),
            reason: format!(
                "the answer is about {}, but {} was asked for",
                a.id,
                shown(id)
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t(day: u8, hour: u8) -> UtcDateTime {
        UtcDateTime {
            year: 2026,
            month: 1,
            day,
            hour,
            minute: 0,
            second: 0,
        }
    }

    #[test]
    fn hours_shift_across_midnight() {
        assert_eq!(
            shift_hour(t(5, 0), -1),
            UtcDateTime {
                day: 4,
                hour: 23,
                ..t(5, 0)
            }
        );
        assert_eq!(shift_hour(t(5, 23), 1), t(6, 0));
        assert_eq!(shift_hour(t(5, 9), 1), t(5, 10));
    }

    #[test]
    fn ids_are_short_url_safe_and_not_only_dots() {
        assert!(valid_book_id("3f1c0e2a-1b2c-4d5e-8f90-a1b2c3d4e5f6"));
        assert!(!valid_book_id("a_b"));
        assert!(!valid_book_id(".."));
        assert!(!valid_book_id(&"a".repeat(57)));
    }

    #[test]
    fn bookings_and_changes_are_the_documented_bodies() {
        let a = NewAppointment {
            key: "k".into(),
            identifier: Some(("https://booking.example/ids".into(), "b-0001".into())),
            nhs_number: NhsNumber::parse("9912003888").unwrap(),
            slots: vec!["s1".into(), "s2".into()],
            description: Some("Asthma review".into()),
            comment: Some("  ".into()),
            booked_by: OdsCode::parse("X26").unwrap(),
            booked_by_name: "Acme Booking".into(),
        };
        let body: serde_json::Value = serde_json::from_slice(&render_booking(&a)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "nhs_number": "9912003888", "slot_ids": ["s1", "s2"],
                "description": "Asthma review", "comment": null,
                "booking_organisation": {"ods_code": "X26", "name": "Acme Booking"},
                "external_identifier": {"system": "https://booking.example/ids", "value": "b-0001"},
            })
        );
        let cancel = AppointmentChange::Cancel {
            reason: " Not needed ".into(),
        };
        let body: serde_json::Value = serde_json::from_slice(&render_change(2, &cancel)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"version": 2, "reason": "Not needed"})
        );
    }

    #[test]
    fn local_times_become_utc() {
        let doc = br#"{"start":{"value":"2026-07-01T09:30:00","precision":"datetime"},
                       "end":{"value":"2026-07-01T09:40:00","precision":"day"}}"#;
        let d = parse("x", doc).unwrap();
        let start = utc(d.get("start")).unwrap();
        assert_eq!((start.hour, start.minute), (8, 30), "09:30 BST is 08:30Z");
        assert!(
            matches!(utc(d.get("end")), Err(MicrotestDataError::Invalid { path, .. }) if path == "end.precision")
        );
    }
}
