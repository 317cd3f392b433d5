//! Vision's appointment book: slot and appointment extracts (pipe-delimited, UK local
//! date-times, numeric ids) over the practice's book in [`crate::SimStore`], and the
//! booking, amend and cancel writes with Vision's row sequence numbers (`SEQ`) as the
//! concurrency token. `docs/native-formats/vision.md`, "Appointment book".

use crate::appointments::{
    self, Appointment, AppointmentState, Book, BookError, BookingOrganisation, Change, Channel,
    Instant, NewBooking, SlotState,
};
use crate::model::{ExternalId, Practice, SystemKind};
use crate::server::Reply;

use super::{Sent, Writer, bad_extract, error, ok, parse_timestamp, sex, time, timestamp};

/// Slot extract columns: one row per slot, its session, clinician and site alongside.
pub const SLOT_COLUMNS: [&str; 28] = [
    "SLOT_ID",
    "SEQ",
    "SESSION_ID",
    "DATE",
    "START_TIME",
    "END_TIME",
    "LENGTH",
    "SLOT_TYPE",
    "CHANNEL",
    "STATE",
    "SESSION_NAME",
    "SERVICE",
    "SESSION_START",
    "SESSION_END",
    "STAFF_ID",
    "STAFF_TITLE",
    "STAFF_FORENAME",
    "STAFF_SURNAME",
    "STAFF_SEX",
    "JOB_ROLE_CODE",
    "JOB_ROLE",
    "SDS_USER_ID",
    "SITE_ID",
    "SITE_NAME",
    "SITE_ADDRESS1",
    "SITE_ADDRESS2",
    "SITE_TOWN",
    "SITE_POSTCODE",
];

/// Appointment extract columns.
pub const APPOINTMENT_COLUMNS: [&str; 22] = [
    "APPT_ID",
    "SEQ",
    "NHS_NUMBER",
    "STATUS",
    "SLOT_IDS",
    "SESSION_ID",
    "STAFF_ID",
    "SITE_ID",
    "DATE",
    "START_TIME",
    "END_TIME",
    "SLOT_TYPE",
    "CHANNEL",
    "DESCRIPTION",
    "COMMENT",
    "CANCEL_REASON",
    "CREATED",
    "BOOKED_BY_ODS",
    "BOOKED_BY_NAME",
    "EXT_SYSTEM",
    "EXT_ID",
    "BOOKING_KEY",
];

/// Columns of a booking (one row; all required, `DESCRIPTION`, `COMMENT`, `EXT_SYSTEM`
/// and `EXT_ID` may be empty).
pub const BOOKING_COLUMNS: [&str; 10] = [
    "SLOT_IDS",
    "SLOT_SEQS",
    "NHS_NUMBER",
    "BOOKING_KEY",
    "BOOKED_BY_ODS",
    "BOOKED_BY_NAME",
    "DESCRIPTION",
    "COMMENT",
    "EXT_SYSTEM",
    "EXT_ID",
];
/// Columns of an amend (one row; the complete new description and comment).
pub const AMEND_COLUMNS: [&str; 3] = ["SEQ", "DESCRIPTION", "COMMENT"];
/// Columns of a cancel (one row).
pub const CANCEL_COLUMNS: [&str; 2] = ["SEQ", "CANCEL_REASON"];

/// Separator of the slot ids (and their `SEQ`s) in one field.
pub const LIST_SEPARATOR: char = ';';
/// Most slots one booking or one `ids=` read names.
pub const MAX_SLOTS: usize = 16;
/// Longest slot search range, in days.
pub const MAX_RANGE_DAYS: i64 = 31;
/// Longest booking organisation name or cancellation reason, in characters.
pub const MAX_NAME_CHARS: usize = 255;

/// Vision's channel codes.
fn channel(c: Channel) -> &'static str {
    match c {
        Channel::InPerson => "FACE_TO_FACE",
        Channel::Telephone => "TELEPHONE",
        Channel::Video => "VIDEO",
    }
}

fn state(s: SlotState) -> &'static str {
    match s {
        SlotState::Free => "FREE",
        SlotState::Booked => "BOOKED",
        SlotState::Embargoed => "EMBARGOED",
        SlotState::PracticeOnly => "PRACTICE_ONLY",
    }
}

/// Vision numbers its sites in the order the practice set them up.
fn site_number(book: &Book, site: &str) -> String {
    book.sites
        .iter()
        .position(|s| s.id == site)
        .map(|i| (i + 1).to_string())
        .unwrap_or_default()
}

/// `YYYYMMDD` of a local date-time.
fn local_day(t: Instant) -> String {
    super::date(appointments::local_date_time(t))
}

fn local_time(t: Instant) -> String {
    time(appointments::local_date_time(t))
}

fn local_stamp(t: Instant) -> String {
    timestamp(appointments::local_date_time(t))
}

/// A numeric Vision id (what the book's `number` fields are), as sent.
fn numeric(id: &str) -> bool {
    (1..=18).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit())
}

/// The slot rows of `slots` (in the order given), from `book`.
fn slot_rows(practice: &Practice, book: &Book, slots: &[&appointments::Slot]) -> String {
    let mut w = Writer::new(&SLOT_COLUMNS);
    for slot in slots {
        let Some(session) = book.sessions.iter().find(|s| s.id == slot.session) else {
            continue;
        };
        let clinician = practice.clinician(&session.clinician);
        let site = book.sites.iter().find(|s| s.id == session.site);
        let (role_code, role) = clinician
            .map(|c| appointments::job_role(practice, c))
            .unwrap_or_default();
        let text = |f: fn(&crate::model::Clinician) -> &str| {
            clinician.map(|c| f(c).to_owned()).unwrap_or_default()
        };
        let line = |i: usize| {
            site.and_then(|s| s.lines.get(i).cloned())
                .unwrap_or_default()
        };
        w.row(&[
            slot.number.to_string(),
            slot.version.to_string(),
            session.number.to_string(),
            local_day(slot.start),
            local_time(slot.start),
            local_time(slot.end),
            ((slot.end - slot.start) / 60).to_string(),
            slot.slot_type.clone(),
            channel(slot.channel).to_owned(),
            state(slot.state).to_owned(),
            session.name.clone(),
            session.service.clone(),
            local_time(session.start),
            local_time(session.end),
            session.clinician.clone(),
            text(|c| &c.title),
            text(|c| &c.given),
            text(|c| &c.family),
            clinician.map(|c| sex(c.sex).to_owned()).unwrap_or_default(),
            role_code.to_owned(),
            role.to_owned(),
            text(|c| &c.sds_user_id),
            site_number(book, &session.site),
            site.map(|s| s.name.clone()).unwrap_or_default(),
            line(0),
            line(1),
            site.map(|s| s.town.clone()).unwrap_or_default(),
            site.map(|s| s.postcode.clone()).unwrap_or_default(),
        ]);
    }
    w.finish()
}

fn appointment_row(book: &Book, a: &Appointment) -> Vec<String> {
    let session = book.sessions.iter().find(|s| s.id == a.session);
    let slots: Vec<&appointments::Slot> = a.slots.iter().filter_map(|id| book.slot(id)).collect();
    let slot_ids: Vec<String> = slots.iter().map(|s| s.number.to_string()).collect();
    let first = slots.first();
    let ext = a.external_id.as_ref();
    vec![
        a.number.to_string(),
        a.version.to_string(),
        a.nhs.clone(),
        match a.state {
            AppointmentState::Booked => "BOOKED",
            AppointmentState::Cancelled => "CANCELLED",
        }
        .to_owned(),
        slot_ids.join(";"),
        session.map(|s| s.number.to_string()).unwrap_or_default(),
        session.map(|s| s.clinician.clone()).unwrap_or_default(),
        session
            .map(|s| site_number(book, &s.site))
            .unwrap_or_default(),
        local_day(a.start),
        local_time(a.start),
        local_time(a.end),
        first.map(|s| s.slot_type.clone()).unwrap_or_default(),
        first
            .map(|s| channel(s.channel).to_owned())
            .unwrap_or_default(),
        a.description.clone().unwrap_or_default(),
        a.comment.clone().unwrap_or_default(),
        a.cancellation_reason.clone().unwrap_or_default(),
        local_stamp(a.created),
        a.booked_by
            .as_ref()
            .map(|b| b.ods.clone())
            .unwrap_or_default(),
        a.booked_by
            .as_ref()
            .map(|b| b.name.clone())
            .unwrap_or_default(),
        ext.map(|e| e.system.clone()).unwrap_or_default(),
        ext.map(|e| e.value.clone()).unwrap_or_default(),
        a.external_key.clone().unwrap_or_default(),
    ]
}

fn appointment_rows(book: &Book, appointments: &[Appointment]) -> String {
    let mut w = Writer::new(&APPOINTMENT_COLUMNS);
    for a in appointments {
        w.row(&appointment_row(book, a));
    }
    w.finish()
}

/// The book's refusals as Vision's error lines.
fn book_error(e: &BookError) -> Reply {
    match e {
        BookError::PracticeNotFound(ods) => error(
            404,
            "PRACTICE_NOT_FOUND",
            &format!("No Vision practice with ODS code {ods}"),
        ),
        BookError::PatientNotFound(ods) => error(
            404,
            "PATIENT_NOT_FOUND",
            &format!("No patient with that NHS number is registered at {ods}"),
        ),
        BookError::SlotNotFound(id) => error(
            404,
            "SLOT_NOT_FOUND",
            &format!("No slot {id} in this practice's appointment book"),
        ),
        BookError::AppointmentNotFound(id) => error(
            404,
            "APPOINTMENT_NOT_FOUND",
            &format!("No appointment {id} in this practice's appointment book"),
        ),
        BookError::SlotTaken(id) => {
            error(409, "SLOT_BOOKED", &format!("Slot {id} is already booked"))
        }
        BookError::SlotChanged(id) => error(
            409,
            "SEQ_MISMATCH",
            &format!("Slot {id} has changed since the SEQ given"),
        ),
        BookError::Conflict(now) => error(
            409,
            "SEQ_MISMATCH",
            &format!("The appointment was modified since the SEQ given; it is now SEQ {now}"),
        ),
        BookError::NotBookable(id) => error(
            422,
            "SLOT_NOT_BOOKABLE",
            &format!("Slot {id} is not released for booking by other organisations"),
        ),
        BookError::InPast(id) => error(
            422,
            "SLOT_IN_PAST",
            &format!("Slot {id} has started already"),
        ),
        BookError::NotAdjacent => error(
            422,
            "SLOTS_NOT_ADJACENT",
            "The slots must follow one another in one session, with one slot type and channel",
        ),
        BookError::Cancelled => error(
            422,
            "APPOINTMENT_CANCELLED",
            "The appointment is cancelled and cannot be changed",
        ),
        BookError::Invalid(why) => error(422, "INVALID_VALUE", why),
    }
}

pub(super) fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// `from` and `to`, local `YYYYMMDDHHMMSS`, as instants.
fn range(query: Option<&str>, max_days: Option<i64>) -> Result<(Instant, Instant), Reply> {
    let at = |name: &str| {
        let raw = query_param(query, name).unwrap_or_default();
        parse_timestamp(raw)
            .map(appointments::from_local)
            .ok_or_else(|| {
                error(
                    400,
                    "INVALID_RANGE",
                    &format!("{name} must be a local YYYYMMDDHHMMSS date-time, not '{raw}'"),
                )
            })
    };
    let (from, to) = (at("from")?, at("to")?);
    if to <= from {
        return Err(error(400, "INVALID_RANGE", "to must be after from"));
    }
    if let Some(days) = max_days
        && to - from > days * 86_400
    {
        return Err(error(
            400,
            "INVALID_RANGE",
            &format!("a slot search covers at most {days} days"),
        ));
    }
    Ok((from, to))
}

/// Fields a client sends: at most `max` characters, no control characters but the line
/// breaks and tabs free text may hold (quoting carries them, and `|`, intact).
fn text_field(
    name: &str,
    value: &str,
    max: usize,
    free_text: bool,
) -> Result<Option<String>, Reply> {
    let allowed = |c: char| free_text && matches!(c, '\r' | '\n' | '\t');
    if value.chars().any(|c| c.is_control() && !allowed(c)) {
        return Err(error(
            422,
            "INVALID_VALUE",
            &format!("{name} holds a control character"),
        ));
    }
    if value.chars().count() > max {
        return Err(error(
            422,
            "INVALID_VALUE",
            &format!("{name} is longer than {max} characters"),
        ));
    }
    Ok(Some(value.to_owned()).filter(|v| !v.is_empty()))
}

/// The one row of a write extract with exactly `columns`.
pub(super) fn one_row(body: &[u8], columns: &[&str]) -> Result<Vec<String>, Reply> {
    let sent = Sent::parse(body).map_err(bad_extract)?;
    sent.only(columns)?;
    let mut positions = Vec::with_capacity(columns.len());
    for c in columns {
        positions.push(sent.column(c)?);
    }
    let [row] = sent.rows.as_slice() else {
        return Err(bad_extract(format!(
            "this write is exactly 1 row, not {}",
            sent.rows.len()
        )));
    };
    Ok(positions.into_iter().map(|i| row[i].clone()).collect())
}

fn seq(raw: &str) -> Result<u64, Reply> {
    raw.parse::<u64>()
        .ok()
        .filter(|_| numeric(raw))
        .ok_or_else(|| bad_extract(format!("SEQ '{raw}' is not a sequence number")))
}

impl super::Vision {
    /// `GET …/slots?from=…&to=…` or `?ids=…`: the slot extract.
    pub(super) fn slots(&self, ods: &str, query: Option<&str>) -> Reply {
        if let Err(e) = self.vision_practice(ods) {
            return e;
        }
        if let Some(ids) = query_param(query, "ids") {
            let ids: Vec<&str> = ids.split(',').collect();
            if ids.len() > MAX_SLOTS || !ids.iter().all(|id| numeric(id)) {
                return error(
                    400,
                    "INVALID_SLOT_IDS",
                    &format!("ids is 1 to {MAX_SLOTS} slot ids separated by commas"),
                );
            }
            let answer = self
                .store
                .with_book(SystemKind::Vision, ods, |practice, book| {
                    let mut slots = Vec::with_capacity(ids.len());
                    for id in &ids {
                        let slot = book.slot(id).ok_or_else(|| {
                            book_error(&BookError::SlotNotFound((*id).to_owned()))
                        })?;
                        slots.push(slot);
                    }
                    Ok(ok(slot_rows(practice, book, &slots)))
                });
            return answer
                .unwrap_or_else(|e| Err(book_error(&e)))
                .unwrap_or_else(|e| e);
        }
        let (from, to) = match range(query, Some(MAX_RANGE_DAYS)) {
            Ok(r) => r,
            Err(e) => return e,
        };
        let rendered = self
            .store
            .with_book(SystemKind::Vision, ods, |practice, book| {
                let slots: Vec<&appointments::Slot> = book
                    .slots
                    .iter()
                    .filter(|s| s.start >= from && s.start < to)
                    .collect();
                slot_rows(practice, book, &slots)
            });
        match rendered {
            Ok(body) => ok(body),
            Err(e) => book_error(&e),
        }
    }

    fn render(&self, ods: &str, appointments: &[Appointment]) -> Reply {
        match self.store.with_book(SystemKind::Vision, ods, |_, book| {
            appointment_rows(book, appointments)
        }) {
            Ok(body) => ok(body),
            Err(e) => book_error(&e),
        }
    }

    /// `GET …/appointments/{APPT_ID}`: the appointment extract (one row).
    pub(super) fn appointment(&self, ods: &str, id: &str) -> Reply {
        if let Err(e) = self.vision_practice(ods) {
            return e;
        }
        let not_found = || book_error(&BookError::AppointmentNotFound(id.to_owned()));
        if !numeric(id) {
            return not_found();
        }
        match self.store.appointment(SystemKind::Vision, ods, id) {
            Ok(Some(a)) => self.render(ods, &[a]),
            Ok(None) => not_found(),
            Err(e) => book_error(&e),
        }
    }

    /// `GET …/patients/{NHS}/appointments?from=…&to=…`: the patient's appointments
    /// overlapping the range, booked and cancelled.
    pub(super) fn patient_appointments(&self, ods: &str, nhs: &str, query: Option<&str>) -> Reply {
        if let Err(e) = self.writable_patient(ods, nhs) {
            return e;
        }
        let (from, to) = match range(query, None) {
            Ok(r) => r,
            Err(e) => return e,
        };
        match self
            .store
            .appointments_of(SystemKind::Vision, ods, nhs, from, to)
        {
            Ok(list) => self.render(ods, &list),
            Err(e) => book_error(&e),
        }
    }

    /// `POST …/appointments`: books the row's slots if each is still at its `SEQ`;
    /// `201` with the appointment, or `200` with the one booked before under the key.
    pub(super) fn book(&self, ods: &str, body: &[u8]) -> Reply {
        if let Err(e) = self.vision_practice(ods) {
            return e;
        }
        let booking = match booking(body) {
            Ok(b) => b,
            Err(e) => return e,
        };
        if let Err(e) = self.writable_patient(ods, &booking.nhs) {
            return e;
        }
        match self
            .store
            .book_appointment(SystemKind::Vision, ods, booking)
        {
            Ok((a, created)) => Reply {
                status: if created { 201 } else { 200 },
                ..self.render(ods, &[a])
            },
            Err(e) => book_error(&e),
        }
    }

    /// `PUT …/appointments/{APPT_ID}` (amend) and `POST …/appointments/{APPT_ID}/cancel`:
    /// the change if the appointment is still at the row's `SEQ`.
    pub(super) fn change(&self, ods: &str, id: &str, cancel: bool, body: &[u8]) -> Reply {
        if let Err(e) = self.vision_practice(ods) {
            return e;
        }
        if !numeric(id) {
            return book_error(&BookError::AppointmentNotFound(id.to_owned()));
        }
        let parsed = if cancel {
            cancellation(body)
        } else {
            amendment(body)
        };
        let (expected, change) = match parsed {
            Ok(c) => c,
            Err(e) => return e,
        };
        match self
            .store
            .change_appointment(SystemKind::Vision, ods, id, Some(expected), change)
        {
            Ok(a) => self.render(ods, &[a]),
            Err(e) => book_error(&e),
        }
    }
}

fn booking(body: &[u8]) -> Result<NewBooking, Reply> {
    let row = one_row(body, &BOOKING_COLUMNS)?;
    let [
        ids,
        seqs,
        nhs,
        key,
        ods,
        name,
        description,
        comment,
        ext_system,
        ext_id,
    ] = <[String; 10]>::try_from(row).map_err(|_| bad_extract("the row is not 10 fields"))?;
    let ids: Vec<String> = ids.split(LIST_SEPARATOR).map(str::to_owned).collect();
    if ids.len() > MAX_SLOTS || !ids.iter().all(|id| numeric(id)) {
        return Err(bad_extract(format!(
            "SLOT_IDS is 1 to {MAX_SLOTS} slot ids separated by '{LIST_SEPARATOR}'"
        )));
    }
    let seqs = seqs
        .split(LIST_SEPARATOR)
        .map(seq)
        .collect::<Result<Vec<u64>, Reply>>()?;
    if seqs.len() != ids.len() {
        return Err(bad_extract("SLOT_SEQS holds one SEQ for each of SLOT_IDS"));
    }
    if !crate::nhs::is_valid(&nhs) {
        return Err(error(
            400,
            "INVALID_NHS_NUMBER",
            &format!("{nhs} is not a valid NHS number"),
        ));
    }
    if !super::valid_key(&key) {
        return Err(error(
            400,
            "INVALID_BOOKING_KEY",
            "BOOKING_KEY must be 1 to 64 letters, digits or hyphens",
        ));
    }
    let ods_ok = (3..=10).contains(&ods.len()) && ods.bytes().all(|b| b.is_ascii_alphanumeric());
    if !ods_ok {
        return Err(error(
            422,
            "INVALID_VALUE",
            "BOOKED_BY_ODS must be the booking organisation's ODS code",
        ));
    }
    let name = text_field("BOOKED_BY_NAME", &name, MAX_NAME_CHARS, false)?
        .ok_or_else(|| error(422, "INVALID_VALUE", "BOOKED_BY_NAME is empty"))?;
    let external_id = match (ext_system.as_str(), ext_id.as_str()) {
        ("", "") => None,
        (system, value) => Some(
            ExternalId::new(system, value)
                .map_err(|m| error(422, "INVALID_VALUE", &format!("EXT_SYSTEM/EXT_ID: {m}")))?,
        ),
    };
    Ok(NewBooking {
        key: Some(key),
        nhs,
        slots: ids,
        slot_versions: Some(seqs),
        description: text_field(
            "DESCRIPTION",
            &description,
            appointments::MAX_DESCRIPTION,
            true,
        )?,
        comment: text_field("COMMENT", &comment, appointments::MAX_COMMENT, true)?,
        booked_by: Some(BookingOrganisation {
            ods: ods.to_ascii_uppercase(),
            name,
        }),
        external_id,
    })
}

fn amendment(body: &[u8]) -> Result<(u64, Change), Reply> {
    let row = one_row(body, &AMEND_COLUMNS)?;
    let [expected, description, comment] =
        <[String; 3]>::try_from(row).map_err(|_| bad_extract("the row is not 3 fields"))?;
    Ok((
        seq(&expected)?,
        Change::Amend {
            description: text_field(
                "DESCRIPTION",
                &description,
                appointments::MAX_DESCRIPTION,
                true,
            )?,
            comment: text_field("COMMENT", &comment, appointments::MAX_COMMENT, true)?,
        },
    ))
}

fn cancellation(body: &[u8]) -> Result<(u64, Change), Reply> {
    let row = one_row(body, &CANCEL_COLUMNS)?;
    let [expected, reason] =
        <[String; 2]>::try_from(row).map_err(|_| bad_extract("the row is not 2 fields"))?;
    let reason = text_field("CANCEL_REASON", &reason, MAX_NAME_CHARS, true)?
        .ok_or_else(|| error(422, "INVALID_VALUE", "CANCEL_REASON is empty"))?;
    Ok((seq(&expected)?, Change::Cancel { reason }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn write_rows_are_read_strictly() {
        let body = "SLOT_IDS|SLOT_SEQS|NHS_NUMBER|BOOKING_KEY|BOOKED_BY_ODS|BOOKED_BY_NAME|DESCRIPTION|COMMENT|EXT_SYSTEM|EXT_ID\r\n\
                    12;13|1;1|9000000009|k-1|X26|Acme|\"a|b\"|\"two\r\nlines\"||\r\nEOF|1\r\n";
        let b = booking(body.as_bytes()).unwrap();
        assert_eq!(b.slots, ["12", "13"]);
        assert_eq!(b.slot_versions, Some(vec![1, 1]));
        assert_eq!(b.description.as_deref(), Some("a|b"));
        assert_eq!(b.comment.as_deref(), Some("two\r\nlines"));
        for bad in [
            body.replace("12;13|1;1", "12;13|1"),
            body.replace("12;13", "12;x"),
            body.replace("k-1", "k_1"),
            body.replace("|Acme|", "||"),
        ] {
            assert!(booking(bad.as_bytes()).is_err(), "{bad}");
        }
        let long = "x".repeat(101);
        let e = booking(body.replace("\"a|b\"", &long).as_bytes()).unwrap_err();
        assert_eq!(e.status, 422);
        assert!(amendment(b"SEQ|DESCRIPTION|COMMENT\r\n2|x|\r\nEOF|1\r\n").is_ok());
        assert!(cancellation(b"SEQ|CANCEL_REASON\r\n2|\r\nEOF|1\r\n").is_err());
    }

    /// A booking sends each slot's SEQ; one changed since it was read is refused
    /// (`409 SEQ_MISMATCH`), a taken slot too (`409 SLOT_BOOKED`), and the same key
    /// answers the first booking (`200`). An amend against an old SEQ is refused.
    #[test]
    fn seqs_guard_bookings_and_changes() {
        let pop = crate::Population::generate(3, &crate::PopulationSpec::sandbox());
        let practice = pop
            .practices
            .iter()
            .find(|p| p.system == SystemKind::Vision)
            .unwrap()
            .clone();
        let nhs = pop
            .patients
            .iter()
            .find(|p| p.practice == practice.ods)
            .unwrap()
            .nhs_number
            .clone();
        let v = super::super::Vision {
            store: crate::SimStore::new(pop),
        };
        let now = appointments::now();
        let view = v
            .store
            .book_view(
                SystemKind::Vision,
                &practice.ods,
                now + 86_400,
                now + 20 * 86_400,
            )
            .unwrap();
        let free: Vec<_> = view
            .slots
            .iter()
            .filter(|s| s.state == SlotState::Free)
            .collect();
        let body = |slot: &appointments::Slot, seq: u64, key: &str| {
            format!(
                "{}\r\n{}|{seq}|{nhs}|{key}|X26|Acme|Review|||\r\nEOF|1\r\n",
                BOOKING_COLUMNS.join("|"),
                slot.number
            )
        };
        let text = |r: &Reply| String::from_utf8(r.body.clone()).unwrap();
        let stale = v.book(
            &practice.ods,
            body(free[0], free[0].version + 1, "k1").as_bytes(),
        );
        assert_eq!(stale.status, 409);
        assert!(text(&stale).starts_with("ERROR|SEQ_MISMATCH|"));
        let booked = v.book(
            &practice.ods,
            body(free[0], free[0].version, "k1").as_bytes(),
        );
        assert_eq!(booked.status, 201, "{}", text(&booked));
        let again = v.book(
            &practice.ods,
            body(free[0], free[0].version, "k1").as_bytes(),
        );
        assert_eq!((again.status, text(&again)), (200, text(&booked)));
        let taken = v.book(
            &practice.ods,
            body(free[0], free[0].version + 1, "k2").as_bytes(),
        );
        assert!(
            text(&taken).starts_with("ERROR|SLOT_BOOKED|"),
            "{}",
            text(&taken)
        );
        let id = text(&booked)
            .lines()
            .nth(1)
            .and_then(|row| row.split('|').next())
            .unwrap()
            .to_owned();
        let old = v.change(
            &practice.ods,
            &id,
            false,
            b"SEQ|DESCRIPTION|COMMENT\r\n7|x|\r\nEOF|1\r\n",
        );
        assert_eq!(old.status, 409);
        assert!(text(&old).contains("it is now SEQ 1"), "{}", text(&old));
        let ok = v.change(
            &practice.ods,
            &id,
            true,
            b"SEQ|CANCEL_REASON\r\n1|Better\r\nEOF|1\r\n",
        );
        assert_eq!(ok.status, 200, "{}", text(&ok));
        assert!(text(&ok).contains("|CANCELLED|"));
    }
}
