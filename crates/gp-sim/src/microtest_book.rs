//! Evolution's appointment book (`docs/native-formats/microtest.md`, "Appointment book"):
//! slot pages with cursors, booking under an `Idempotency-Key`, and amend/cancel against
//! the appointment's numeric `version`, all over the shared store's atomic book.
//!
//! A child of [`super`] so it speaks the same dialect: problem+json errors, date objects
//! in UK local time, snake_case, the same cursor check.

use serde_json::{Map, Value, json};

use super::{
    Microtest, check_nhs, cursor_check, date, invalid_body, json_content, json_object,
    missing_parameter, ok, parse_datetime, problem, problem_with, query_param, render_clinician,
    unprocessable,
};
use crate::appointments::{
    self, Appointment, AppointmentState, BookError, BookingOrganisation, Change, Channel,
    MAX_COMMENT, MAX_DESCRIPTION, NewBooking, Session, Slot, SlotState,
};
use crate::model::{ExternalId, SystemKind};
use crate::server::Reply;

/// Most slots in one page of `…/slots`.
pub const SLOT_PAGE_SIZE: usize = 500;
/// The widest range one slot search may cover.
pub const MAX_RANGE_DAYS: i64 = 31;
/// Most slots one appointment may hold.
pub const MAX_SLOTS: usize = 10;

/// A date object of an instant, as Evolution writes date-times: UK local time.
fn instant(t: appointments::Instant) -> Value {
    date(appointments::local_date_time(t))
}

fn channel(c: Channel) -> &'static str {
    match c {
        Channel::InPerson => "in_person",
        Channel::Telephone => "telephone",
        Channel::Video => "video",
    }
}

fn state(s: SlotState) -> &'static str {
    match s {
        SlotState::Free => "free",
        SlotState::Booked => "booked",
        SlotState::Embargoed => "embargoed",
        SlotState::PracticeOnly => "practice_only",
    }
}

/// `from`/`to` query values: UK local date-times, `to` after `from`, at most `max_days`
/// apart when given (a slot search; a patient's few appointments need no bound).
fn range(
    query: Option<&str>,
    max_days: Option<i64>,
) -> Result<(appointments::Instant, appointments::Instant), Reply> {
    let mut ends = [0; 2];
    for (i, name) in ["from", "to"].into_iter().enumerate() {
        let raw = query_param(query, name).ok_or_else(|| missing_parameter(name))?;
        let local = parse_datetime(raw).ok_or_else(|| {
            problem(
                400,
                "INVALID_DATE",
                "Invalid date",
                &format!(
                    "{name} must be a UK local date-time YYYY-MM-DDThh:mm:ss, not '{}'",
                    raw.chars().take(40).collect::<String>()
                ),
            )
        })?;
        ends[i] = appointments::from_local(local);
    }
    let [from, to] = ends;
    let too_wide = max_days.is_some_and(|days| to - from > days * 86_400);
    if to <= from || too_wide {
        let limit = max_days.map_or(String::new(), |d| format!(", at most {d} days later"));
        return Err(problem(
            400,
            "INVALID_RANGE",
            "Invalid range",
            &format!("to must be after from{limit}"),
        ));
    }
    Ok((from, to))
}

/// The store's refusal in Evolution's format.
fn book_error(e: BookError) -> Reply {
    let detail = e.to_string();
    match e {
        BookError::PracticeNotFound(ods) => problem(
            404,
            "SITE_NOT_FOUND",
            "Site not found",
            &format!("No Evolution site with ODS code {ods}"),
        ),
        BookError::PatientNotFound(_) => {
            problem(404, "PATIENT_NOT_FOUND", "Patient not found", &detail)
        }
        BookError::SlotNotFound(_) => problem(404, "SLOT_NOT_FOUND", "Slot not found", &detail),
        BookError::AppointmentNotFound(_) => problem(
            404,
            "APPOINTMENT_NOT_FOUND",
            "Appointment not found",
            &detail,
        ),
        // No slot versions are taken here, so a changed slot can only be a taken one.
        BookError::SlotTaken(_) | BookError::SlotChanged(_) => {
            problem(409, "SLOT_UNAVAILABLE", "Slot unavailable", &detail)
        }
        BookError::Conflict(current) => problem_with(
            409,
            "RECORD_MODIFIED",
            "Record modified",
            &detail,
            // The version to re-read against, as a contact conflict carries its own.
            Map::from_iter([("current_version".to_owned(), json!(current))]),
        ),
        BookError::NotBookable(_) => {
            unprocessable("SLOT_NOT_BOOKABLE", "Slot not bookable", &detail)
        }
        BookError::InPast(_) => unprocessable("SLOT_IN_PAST", "Slot in the past", &detail),
        BookError::NotAdjacent => {
            unprocessable("SLOTS_NOT_ADJACENT", "Slots not adjacent", &detail)
        }
        BookError::Cancelled => {
            unprocessable("APPOINTMENT_CANCELLED", "Appointment cancelled", &detail)
        }
        BookError::Invalid(reason) => {
            unprocessable("INVALID_APPOINTMENT", "Invalid appointment", &reason)
        }
    }
}

/// A nullable text field of a booking or amend, at most `max` characters.
fn text(m: &Map<String, Value>, field: &str, max: usize) -> Result<Option<String>, Reply> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Err(invalid_body(&format!(
            "{field} is blank; send null when there is none"
        ))),
        Some(Value::String(s)) if s.chars().count() > max => Err(unprocessable(
            "TEXT_TOO_LONG",
            "Text too long",
            &format!(
                "{field} has {} characters; Evolution holds at most {max}",
                s.chars().count()
            ),
        )),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid_body(&format!("{field} must be a string or null"))),
    }
}

/// The `version` an amend or cancel is made against.
fn version(m: &Map<String, Value>) -> Result<u64, Reply> {
    m.get("version").and_then(Value::as_u64).ok_or_else(|| {
        invalid_body("version is required: the appointment's version, a whole number")
    })
}

impl Microtest {
    /// `GET …/slots?from=…&to=…[&cursor=…]`: one page of the slots starting in the range,
    /// with the sessions, clinicians and locations that page's slots refer to.
    pub(super) fn slots(&self, ods: &str, query: Option<&str>) -> Reply {
        let practice = match self.site(ods) {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        let (from, to) = match range(query, Some(MAX_RANGE_DAYS)) {
            Ok(r) => r,
            Err(reply) => return reply,
        };
        let view = match self.store.book_view(SystemKind::Microtest, ods, from, to) {
            Ok(v) => v,
            Err(e) => return book_error(e),
        };
        // Bound to the site and the range as asked, so a cursor cannot page another search.
        let scope = format!(
            "slots|{}|{}",
            query_param(query, "from").unwrap_or(""),
            query_param(query, "to").unwrap_or("")
        );
        let start = match query_param(query, "cursor") {
            None => 0,
            Some(c) => match decode(ods, &scope, c).filter(|s| *s < view.slots.len()) {
                Some(s) => s,
                None => {
                    return problem(
                        400,
                        "INVALID_CURSOR",
                        "Invalid cursor",
                        "The cursor is not one this server issued for this search",
                    );
                }
            },
        };
        let end = (start + SLOT_PAGE_SIZE).min(view.slots.len());
        let page = &view.slots[start..end];
        let sessions: Vec<&Session> = view
            .sessions
            .iter()
            .filter(|s| page.iter().any(|slot| slot.session == s.id))
            .collect();
        let locations: Vec<Value> = view
            .sites
            .iter()
            .filter(|site| sessions.iter().any(|s| s.site == site.id))
            .map(|site| {
                json!({
                    "location_id": site.id,
                    "name": site.name,
                    "address": { "lines": site.lines, "town": site.town, "postcode": site.postcode },
                })
            })
            .collect();
        let clinicians: Vec<Value> = view
            .clinicians
            .iter()
            .filter(|c| sessions.iter().any(|s| s.clinician == c.id))
            .map(|c| {
                let (code, term) = appointments::job_role(&practice, c);
                let mut doc = render_clinician(c);
                if let Value::Object(m) = &mut doc {
                    m.insert("job_role".into(), json!({ "code": code, "term": term }));
                }
                doc
            })
            .collect();
        let next = (end < view.slots.len())
            .then(|| format!("c{end:x}.{:08x}", cursor_check(ods, &scope, end)));
        ok(&json!({
            "slots": page.iter().map(render_slot).collect::<Vec<_>>(),
            "sessions": sessions.iter().map(|s| render_session(s)).collect::<Vec<_>>(),
            "clinicians": clinicians,
            "locations": locations,
            "total": view.slots.len(),
            "next_cursor": next,
        }))
    }

    /// `GET …/appointments/{id}`: one appointment, booked or cancelled.
    pub(super) fn appointment(&self, ods: &str, id: &str) -> Reply {
        if let Err(reply) = self.site(ods) {
            return reply;
        }
        match self.store.appointment(SystemKind::Microtest, ods, id) {
            // Evolution addresses appointments by GUID, never by the book's number.
            Ok(Some(a)) if a.id.eq_ignore_ascii_case(id) => self.render_one(ods, &a),
            Ok(_) => book_error(BookError::AppointmentNotFound(id.to_owned())),
            Err(e) => book_error(e),
        }
    }

    /// `GET …/patients/{id}/appointments?from=…&to=…`: the patient's appointments
    /// overlapping the range, booked and cancelled, however they were booked.
    pub(super) fn patient_appointments(&self, ods: &str, id: &str, query: Option<&str>) -> Reply {
        let nhs = match self.patient_nhs(ods, id) {
            Ok(nhs) => nhs,
            Err(reply) => return reply,
        };
        let (from, to) = match range(query, None) {
            Ok(r) => r,
            Err(reply) => return reply,
        };
        let list = match self
            .store
            .appointments_of(SystemKind::Microtest, ods, &nhs, from, to)
        {
            Ok(list) => list,
            Err(e) => return book_error(e),
        };
        match self.render_appointments(ods, &list) {
            Ok(rendered) => ok(&json!({ "appointments": rendered })),
            Err(e) => book_error(e),
        }
    }

    /// `POST …/patients/{id}/appointments` under the `Idempotency-Key`: books adjacent
    /// slots. `201` booked now; `200` the key was seen and its appointment is answered.
    pub(super) fn book(
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
            let slots = match m.get("slot_ids") {
                Some(Value::Array(ids)) if (1..=MAX_SLOTS).contains(&ids.len()) => ids
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .filter(|s| !s.trim().is_empty())
                            .map(str::to_owned)
                    })
                    .collect::<Option<Vec<String>>>()
                    .ok_or_else(|| invalid_body("slot_ids must all be non-blank strings"))?,
                _ => {
                    return Err(invalid_body(&format!(
                        "slot_ids is required: 1 to {MAX_SLOTS} slot ids"
                    )));
                }
            };
            let org = match m.get("booking_organisation") {
                Some(Value::Object(o)) => {
                    let part = |k: &str| {
                        o.get(k)
                            .and_then(Value::as_str)
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .ok_or_else(|| {
                                invalid_body(&format!("booking_organisation.{k} is required"))
                            })
                    };
                    BookingOrganisation {
                        ods: part("ods_code")?,
                        name: part("name")?,
                    }
                }
                _ => {
                    return Err(invalid_body(
                        "booking_organisation is required: {\"ods_code\":…,\"name\":…}",
                    ));
                }
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
            Ok(NewBooking {
                key: Some(key.to_owned()),
                nhs: nhs.clone(),
                slots,
                slot_versions: None,
                description: text(&m, "description", MAX_DESCRIPTION)?,
                comment: text(&m, "comment", MAX_COMMENT)?,
                booked_by: Some(org),
                external_id,
            })
        });
        let booking = match parsed {
            Ok(b) => b,
            Err(reply) => return reply,
        };
        match self
            .store
            .book_appointment(SystemKind::Microtest, ods, booking)
        {
            // A key is the booker's for one patient: never answer another patient's booking.
            Ok((a, false)) if a.nhs != nhs => unprocessable(
                "IDEMPOTENCY_KEY_REUSED",
                "Idempotency key reused",
                "This Idempotency-Key was used to book for another patient",
            ),
            Ok((a, created)) => {
                let mut reply = self.render_one(ods, &a);
                if created && reply.status == 200 {
                    reply.status = 201;
                }
                reply
            }
            Err(e) => book_error(e),
        }
    }

    /// `PATCH …/appointments/{id}` (`cancel: false`) or `POST …/appointments/{id}/cancel`:
    /// amends the description and comment, or cancels, only at the body's `version`.
    pub(super) fn change(
        &self,
        ods: &str,
        id: &str,
        cancel: bool,
        headers: &hyper::HeaderMap,
        body: &[u8],
    ) -> Reply {
        if let Err(reply) = json_content(headers) {
            return reply;
        }
        if let Err(reply) = self.site(ods) {
            return reply;
        }
        // By GUID only, as for a read (the book would also take its number).
        match self.store.appointment(SystemKind::Microtest, ods, id) {
            Ok(Some(a)) if a.id.eq_ignore_ascii_case(id) => {}
            Ok(_) => return book_error(BookError::AppointmentNotFound(id.to_owned())),
            Err(e) => return book_error(e),
        }
        let parsed = json_object(body).and_then(|m| {
            let expected = version(&m)?;
            let change = if cancel {
                let reason = m
                    .get("reason")
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .ok_or_else(|| invalid_body("reason is required"))?;
                if reason.chars().count() > MAX_COMMENT {
                    return Err(unprocessable(
                        "TEXT_TOO_LONG",
                        "Text too long",
                        &format!("reason is longer than {MAX_COMMENT} characters"),
                    ));
                }
                Change::Cancel {
                    reason: reason.to_owned(),
                }
            } else {
                for field in ["description", "comment"] {
                    if !m.contains_key(field) {
                        return Err(invalid_body(&format!(
                            "{field} is required (null when there is none)"
                        )));
                    }
                }
                Change::Amend {
                    description: text(&m, "description", MAX_DESCRIPTION)?,
                    comment: text(&m, "comment", MAX_COMMENT)?,
                }
            };
            Ok((expected, change))
        });
        let (expected, change) = match parsed {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        match self
            .store
            .change_appointment(SystemKind::Microtest, ods, id, Some(expected), change)
        {
            Ok(a) => self.render_one(ods, &a),
            Err(e) => book_error(e),
        }
    }

    fn render_one(&self, ods: &str, a: &Appointment) -> Reply {
        match self.render_appointments(ods, std::slice::from_ref(a)) {
            Ok(mut list) => ok(&list.pop().unwrap_or(Value::Null)),
            Err(e) => book_error(e),
        }
    }

    /// Appointment documents, with their session's location and clinician and their
    /// first slot's type and channel, read under the book's lock.
    fn render_appointments(
        &self,
        ods: &str,
        list: &[Appointment],
    ) -> Result<Vec<Value>, BookError> {
        self.store.with_book(SystemKind::Microtest, ods, |_, book| {
            list.iter()
                .map(|a| {
                    let session = book.sessions.iter().find(|s| s.id == a.session);
                    let slot = a.slots.first().and_then(|id| book.slot(id));
                    render_appointment(a, session, slot)
                })
                .collect()
        })
    }
}

fn decode(ods: &str, scope: &str, cursor: &str) -> Option<usize> {
    let (offset, check) = cursor.strip_prefix('c')?.split_once('.')?;
    let offset = usize::from_str_radix(offset, 16).ok()?;
    let check = u32::from_str_radix(check, 16).ok()?;
    (check == cursor_check(ods, scope, offset)).then_some(offset)
}

fn render_slot(s: &Slot) -> Value {
    json!({
        "slot_id": s.id,
        "session_id": s.session,
        "start": instant(s.start),
        "end": instant(s.end),
        "duration_minutes": ((s.end - s.start) / 60).to_string(),
        "slot_type": s.slot_type,
        "delivery_channel": channel(s.channel),
        "state": state(s.state),
    })
}

fn render_session(s: &Session) -> Value {
    json!({
        "session_id": s.id,
        "name": s.name,
        "clinician_id": s.clinician,
        "location_id": s.site,
        "service": s.service,
        "start": instant(s.start),
        "end": instant(s.end),
    })
}

fn render_appointment(a: &Appointment, session: Option<&Session>, slot: Option<&Slot>) -> Value {
    json!({
        "appointment_id": a.id,
        "version": a.version,
        "nhs_number": a.nhs,
        "status": match a.state {
            AppointmentState::Booked => "booked",
            AppointmentState::Cancelled => "cancelled",
        },
        "slot_ids": a.slots,
        "session_id": a.session,
        "location_id": session.map(|s| s.site.clone()),
        "clinician_id": session.map(|s| s.clinician.clone()),
        "start": instant(a.start),
        "end": instant(a.end),
        "slot_type": slot.map(|s| s.slot_type.clone()),
        "delivery_channel": slot.map(|s| channel(s.channel)),
        "description": a.description,
        "comment": a.comment,
        "cancellation_reason": a.cancellation_reason,
        "booked_at": instant(a.created),
        "booking_organisation": a.booked_by.as_ref().map(|o| json!({ "ods_code": o.ods, "name": o.name })),
        "external_identifier": a.external_id.as_ref().map(|e| json!({ "system": e.system, "value": e.value })),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn slot_cursors_are_bound_to_the_site_and_search() {
        let scope = "slots|2026-01-05T00:00:00|2026-01-19T00:00:00";
        let c = format!("c1f4.{:08x}", cursor_check("M85001", scope, 500));
        assert_eq!(decode("M85001", scope, &c), Some(500));
        assert_eq!(decode("M85002", scope, &c), None);
        assert_eq!(decode("M85001", "slots|x|y", &c), None);
    }

    #[test]
    fn a_stale_version_is_the_record_modified_conflict() {
        let reply = book_error(BookError::Conflict(3));
        assert_eq!(reply.status, 409);
        let doc: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(doc["code"], "RECORD_MODIFIED");
        assert_eq!(doc["current_version"], 3);
        let taken: Value =
            serde_json::from_slice(&book_error(BookError::SlotTaken("s".into())).body).unwrap();
        assert_eq!(taken["code"], "SLOT_UNAVAILABLE");
    }
}
