//! Vision's appointment book: the native calls (slot and appointment extracts, the
//! booking, amend and cancel writes) and the mapping between Vision's rows and the
//! vendor-neutral [`gp_adapter::appointments`] types.
//!
//! Vision records UK local wall-clock time and numbers its slots, sessions, sites and
//! appointments; every slot and appointment row carries a `SEQ`, Vision's optimistic
//! concurrency token: a booking sends each slot's `SEQ`, an amend or cancel the
//! appointment's. An extract is mapped whole or not at all (`InvalidNativeData`).

use std::collections::BTreeMap;

use bytes::Bytes;
use gp_adapter::appointments::{
    AppointmentBook, AppointmentChange, AppointmentStatus, BookClinician, BookLocation,
    BookSession, BookSlot, BookedAppointment, DeliveryChannel, JobRole, NewAppointment, SlotStatus,
};
use gp_adapter::native::{Call, Method, NativeResponse, refusal_detail, status_error};
use gp_adapter::{AdapterError, CallContext, UtcDateTime};
use gp_fhir::date::{day_after, day_before, is_bst_local};
use gp_fhir::text::shown;
use gp_fhir::{NhsNumber, OdsCode};

use crate::client::VisionClient;
use crate::error::VisionDataError;
use crate::extract::{self, Extract, Row};
use crate::mapping::{
    Col, check_calendar, col, digits, gender, id, invalid, opt, parse_error_body, req, ymd,
};

type Result<T> = std::result::Result<T, VisionDataError>;

const SYSTEM: gp_adapter::GpSystem = crate::SYSTEM;
/// Content type of every body sent to Vision.
const CONTENT_TYPE: &str = "text/plain; charset=utf-8";
/// Columns of a booking (one row).
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
/// Columns of an amend (one row).
pub const AMEND_COLUMNS: [&str; 3] = ["SEQ", "DESCRIPTION", "COMMENT"];
/// Columns of a cancel (one row).
pub const CANCEL_COLUMNS: [&str; 2] = ["SEQ", "CANCEL_REASON"];
/// Most slots one booking names (Vision's limit).
pub const MAX_SLOTS: usize = 16;

// ---- time ----------------------------------------------------------------------------

/// A UK local wall-clock time as the UTC instant it names. The hour skipped in spring is
/// read as BST and the hour repeated in autumn as its first (BST) occurrence, as
/// [`is_bst_local`] reads them.
pub fn utc_from_local(y: i32, m: u8, d: u8, (h, mi, s): (u8, u8, u8)) -> UtcDateTime {
    let (year, month, day, hour) = match (is_bst_local(y, m, d, h), h) {
        (false, _) => (y, m, d, h),
        (true, 0) => {
            let (y, m, d) = day_before((y, m, d));
            (y, m, d, 23)
        }
        (true, h) => (y, m, d, h - 1),
    };
    UtcDateTime {
        year,
        month,
        day,
        hour,
        minute: mi,
        second: s,
    }
}

/// `YYYYMMDDHHMMSS`, UK local time: how Vision is asked for a range.
pub fn native_local(at: UtcDateTime) -> String {
    let l = at.uk_local();
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        l.year, l.month, l.day, l.hour, l.minute, l.second
    )
}

/// One hour before `at` ([`hour_later`]: after): a local range read this much wider, then filtered in
/// UTC, cannot miss what falls in the autumn's repeated hour.
pub fn hour_earlier(at: UtcDateTime) -> UtcDateTime {
    match at.hour {
        0 => {
            let (year, month, day) = day_before((at.year, at.month, at.day));
            UtcDateTime {
                year,
                month,
                day,
                hour: 23,
                ..at
            }
        }
        h => UtcDateTime { hour: h - 1, ..at },
    }
}

pub fn hour_later(at: UtcDateTime) -> UtcDateTime {
    match at.hour {
        23 => {
            let (year, month, day) = day_after((at.year, at.month, at.day));
            UtcDateTime {
                year,
                month,
                day,
                hour: 0,
                ..at
            }
        }
        h => UtcDateTime { hour: h + 1, ..at },
    }
}

/// `HHMM` or `HHMMSS`.
fn hms(t: &str) -> Option<(u8, u8, u8)> {
    let part = |r: std::ops::Range<usize>| t.get(r).and_then(digits);
    let (h, mi, s) = match t.len() {
        4 => (part(0..2)?, part(2..4)?, 0),
        6 => (part(0..2)?, part(2..4)?, part(4..6)?),
        _ => return None,
    };
    (h < 24 && mi < 60 && s < 60).then_some((h as u8, mi as u8, s as u8))
}

/// A full `YYYYMMDD` date.
fn day(row: &Row, c: Col) -> Result<(i32, u8, u8)> {
    let raw = req(row, c)?;
    ymd(raw)
        .filter(|&(y, m, d)| check_calendar(y, m, d))
        .ok_or_else(|| invalid(row, c, format!("'{}' is not a YYYYMMDD date", shown(raw))))
}

/// The local `time` column on `date` as a UTC instant.
fn at(row: &Row, date: (i32, u8, u8), c: Col) -> Result<UtcDateTime> {
    let raw = req(row, c)?;
    let t = hms(raw)
        .ok_or_else(|| invalid(row, c, format!("'{}' is not HHMM or HHMMSS", shown(raw))))?;
    Ok(utc_from_local(date.0, date.1, date.2, t))
}

/// `YYYYMMDDHHMMSS` (UK local) as a UTC instant.
pub(crate) fn stamp(row: &Row, c: Col) -> Result<UtcDateTime> {
    let raw = req(row, c)?;
    let bad = || invalid(row, c, format!("'{}' is not YYYYMMDDHHMMSS", shown(raw)));
    let (y, m, d) = raw
        .get(0..8)
        .and_then(ymd)
        .filter(|&(y, m, d)| check_calendar(y, m, d) && raw.len() == 14)
        .ok_or_else(bad)?;
    let t = raw.get(8..14).and_then(hms).ok_or_else(bad)?;
    Ok(utc_from_local(y, m, d, t))
}

// ---- field helpers -------------------------------------------------------------------

/// A Vision number (slot, session, site, appointment, `SEQ`): 1 to 18 digits.
pub fn is_number(raw: &str) -> bool {
    (1..=18).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit())
}

fn number(row: &Row, c: Col) -> Result<String> {
    let raw = req(row, c)?;
    if is_number(raw) {
        Ok(raw.to_owned())
    } else {
        Err(invalid(
            row,
            c,
            format!("'{}' is not a Vision number", shown(raw)),
        ))
    }
}

fn opt_number(row: &Row, c: Col) -> Result<Option<String>> {
    match opt(row, c) {
        None => Ok(None),
        Some(_) => number(row, c).map(Some),
    }
}

fn seq(row: &Row, c: Col) -> Result<u64> {
    let raw = number(row, c)?;
    raw.parse()
        .map_err(|_| invalid(row, c, format!("'{raw}' is not a SEQ")))
}

fn text(row: &Row, c: Col) -> Option<String> {
    opt(row, c).map(str::to_owned)
}

fn channel(row: &Row, c: Col) -> Result<DeliveryChannel> {
    match req(row, c)? {
        "FACE_TO_FACE" => Ok(DeliveryChannel::InPerson),
        "TELEPHONE" => Ok(DeliveryChannel::Telephone),
        "VIDEO" => Ok(DeliveryChannel::Video),
        v => Err(invalid(
            row,
            c,
            format!("'{}' is not FACE_TO_FACE, TELEPHONE or VIDEO", shown(v)),
        )),
    }
}

fn status(row: &Row, c: Col) -> Result<SlotStatus> {
    match req(row, c)? {
        "FREE" => Ok(SlotStatus::Free),
        "BOOKED" => Ok(SlotStatus::Busy),
        // Free, but kept from other organisations.
        "EMBARGOED" | "PRACTICE_ONLY" => Ok(SlotStatus::Unavailable),
        v => Err(invalid(
            row,
            c,
            format!(
                "'{}' is not FREE, BOOKED, EMBARGOED or PRACTICE_ONLY",
                shown(v)
            ),
        )),
    }
}

/// Adds `value` under `key`, or checks it matches the value an earlier row gave: a
/// denormalised extract that disagrees with itself is not mapped.
fn once<T: PartialEq>(
    seen: &mut BTreeMap<String, T>,
    key: &str,
    value: T,
    row: &Row,
    c: Col,
) -> Result<()> {
    match seen.get(key) {
        None => {
            seen.insert(key.to_owned(), value);
            Ok(())
        }
        Some(v) if *v == value => Ok(()),
        Some(_) => Err(invalid(
            row,
            c,
            format!("{key} is described differently by an earlier row"),
        )),
    }
}

// ---- the slot extract ----------------------------------------------------------------

/// A mapped slot extract: the book, and each slot's `SEQ` (in the order of `book.slots`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedSlots {
    pub book: AppointmentBook,
    pub seqs: Vec<u64>,
}

/// Maps a slot extract (rows in any order). Every session, clinician and site a slot
/// names is in the answer, once.
pub fn map_slots(body: &[u8]) -> Result<MappedSlots> {
    let ex = Extract::parse("slot extract", body)?;
    let c = |name| col(&ex, name);
    let (slot_id, seq_col, session_id, date, start, end, length, slot_type, channel_col, state) = (
        c("SLOT_ID")?,
        c("SEQ")?,
        c("SESSION_ID")?,
        c("DATE")?,
        c("START_TIME")?,
        c("END_TIME")?,
        c("LENGTH")?,
        c("SLOT_TYPE")?,
        c("CHANNEL")?,
        c("STATE")?,
    );
    let (session_name, service, session_start, session_end) = (
        c("SESSION_NAME")?,
        c("SERVICE")?,
        c("SESSION_START")?,
        c("SESSION_END")?,
    );
    let (staff_id, title, forename, surname, sex, role_code, role, sds) = (
        c("STAFF_ID")?,
        c("STAFF_TITLE")?,
        c("STAFF_FORENAME")?,
        c("STAFF_SURNAME")?,
        c("STAFF_SEX")?,
        c("JOB_ROLE_CODE")?,
        c("JOB_ROLE")?,
        c("SDS_USER_ID")?,
    );
    let (site_id, site_name, address1, address2, town, postcode) = (
        c("SITE_ID")?,
        c("SITE_NAME")?,
        c("SITE_ADDRESS1")?,
        c("SITE_ADDRESS2")?,
        c("SITE_TOWN")?,
        c("SITE_POSTCODE")?,
    );
    let mut slots = Vec::with_capacity(ex.rows());
    let mut seqs = Vec::with_capacity(ex.rows());
    let mut sessions: BTreeMap<String, BookSession> = BTreeMap::new();
    let mut clinicians: BTreeMap<String, BookClinician> = BTreeMap::new();
    let mut locations: BTreeMap<String, BookLocation> = BTreeMap::new();
    for row in ex.iter() {
        let on = day(&row, date)?;
        let (from, to) = (at(&row, on, start)?, at(&row, on, end)?);
        if to <= from {
            return Err(invalid(&row, end, "the slot ends before it starts"));
        }
        let minutes = req(&row, length)?;
        let local_minutes = |t: &str| hms(t).map(|(h, m, _)| i64::from(h) * 60 + i64::from(m));
        let expected = local_minutes(req(&row, end)?)
            .zip(local_minutes(req(&row, start)?))
            .map(|(e, s)| e - s);
        if minutes.parse::<i64>().ok() != expected {
            return Err(invalid(
                &row,
                length,
                format!(
                    "'{}' minutes disagrees with START_TIME and END_TIME",
                    shown(minutes)
                ),
            ));
        }
        let session = number(&row, session_id)?;
        let clinician = id(&row, staff_id)?;
        let location = number(&row, site_id)?;
        let (session_from, session_to) = (at(&row, on, session_start)?, at(&row, on, session_end)?);
        once(
            &mut sessions,
            &session,
            BookSession {
                id: session.clone(),
                name: req(&row, session_name)?.to_owned(),
                clinician: Some(clinician.clone()),
                location: location.clone(),
                service: text(&row, service),
                start: session_from,
                end: session_to,
            },
            &row,
            session_id,
        )?;
        let job_role = match (opt(&row, role_code), opt(&row, role)) {
            (Some(code), Some(display)) => Some(JobRole {
                code: code.to_owned(),
                display: display.to_owned(),
            }),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    &row,
                    role_code,
                    "JOB_ROLE_CODE and JOB_ROLE come together",
                ));
            }
        };
        once(
            &mut clinicians,
            &clinician,
            BookClinician {
                id: clinician.clone(),
                prefix: text(&row, title),
                given: req(&row, forename)?.to_owned(),
                family: req(&row, surname)?.to_owned(),
                gender: gender(&row, sex)?,
                sds_user_id: text(&row, sds),
                role: job_role,
            },
            &row,
            staff_id,
        )?;
        once(
            &mut locations,
            &location,
            BookLocation {
                id: location.clone(),
                name: req(&row, site_name)?.to_owned(),
                lines: [address1, address2]
                    .iter()
                    .filter_map(|c| text(&row, *c))
                    .collect(),
                town: text(&row, town),
                postcode: text(&row, postcode),
            },
            &row,
            site_id,
        )?;
        slots.push(BookSlot {
            id: number(&row, slot_id)?,
            session,
            start: from,
            end: to,
            slot_type: req(&row, slot_type)?.to_owned(),
            channel: channel(&row, channel_col)?,
            status: status(&row, state)?,
        });
        seqs.push(seq(&row, seq_col)?);
    }
    Ok(MappedSlots {
        book: AppointmentBook {
            slots,
            sessions: sessions.into_values().collect(),
            clinicians: clinicians.into_values().collect(),
            locations: locations.into_values().collect(),
        },
        seqs,
    })
}

/// Keeps the slots starting in `[start, end)` and what they name.
pub fn keep_range(
    mut book: AppointmentBook,
    start: UtcDateTime,
    end: UtcDateTime,
) -> AppointmentBook {
    book.slots.retain(|s| s.start >= start && s.start < end);
    book.sessions
        .retain(|x| book.slots.iter().any(|s| s.session == x.id));
    book.clinicians.retain(|c| {
        book.sessions
            .iter()
            .any(|x| x.clinician.as_deref() == Some(c.id.as_str()))
    });
    book.locations
        .retain(|l| book.sessions.iter().any(|x| x.location == l.id));
    book
}

// ---- the appointment extract ---------------------------------------------------------

/// Maps an appointment extract (any number of rows).
pub fn map_appointments(body: &[u8], extract: &'static str) -> Result<Vec<BookedAppointment>> {
    let ex = Extract::parse(extract, body)?;
    let c = |name| col(&ex, name);
    let cols = [
        c("APPT_ID")?,
        c("SEQ")?,
        c("NHS_NUMBER")?,
        c("STATUS")?,
        c("SLOT_IDS")?,
        c("SESSION_ID")?,
        c("STAFF_ID")?,
        c("SITE_ID")?,
        c("DATE")?,
        c("START_TIME")?,
        c("END_TIME")?,
        c("SLOT_TYPE")?,
        c("CHANNEL")?,
        c("DESCRIPTION")?,
        c("COMMENT")?,
        c("CANCEL_REASON")?,
        c("CREATED")?,
        c("BOOKED_BY_ODS")?,
        c("EXT_SYSTEM")?,
        c("EXT_ID")?,
    ];
    ex.iter().map(|row| appointment(&row, &cols)).collect()
}

fn appointment(row: &Row, cols: &[Col; 20]) -> Result<BookedAppointment> {
    let [
        appt_id,
        seq_col,
        nhs,
        state,
        slot_ids,
        session,
        staff,
        site,
        date,
        start,
        end,
        slot_type,
        channel_col,
        description,
        comment,
        reason,
        created,
        booked_by,
        ext_system,
        ext_id,
    ] = *cols;
    let raw_nhs = req(row, nhs)?;
    let nhs_number = NhsNumber::parse(raw_nhs).map_err(|_| {
        invalid(
            row,
            nhs,
            format!("'{}' is not an NHS number", shown(raw_nhs)),
        )
    })?;
    let status = match req(row, state)? {
        "BOOKED" => AppointmentStatus::Booked,
        "CANCELLED" => AppointmentStatus::Cancelled,
        v => {
            return Err(invalid(
                row,
                state,
                format!("'{}' is not BOOKED or CANCELLED", shown(v)),
            ));
        }
    };
    let slots: Vec<String> = req(row, slot_ids)?.split(';').map(str::to_owned).collect();
    if !slots.iter().all(|s| is_number(s)) {
        return Err(invalid(row, slot_ids, "not slot numbers separated by ';'"));
    }
    let on = day(row, date)?;
    let (from, to) = (at(row, on, start)?, at(row, on, end)?);
    if to <= from {
        return Err(invalid(row, end, "the appointment ends before it starts"));
    }
    let booked_by = match opt(row, booked_by) {
        None => None,
        Some(raw) => Some(OdsCode::parse(raw).map_err(|_| {
            invalid(
                row,
                booked_by,
                format!("'{}' is not an ODS code", shown(raw)),
            )
        })?),
    };
    let identifier = match (text(row, ext_system), text(row, ext_id)) {
        (Some(system), Some(value)) => Some((system, value)),
        (None, None) => None,
        _ => return Err(invalid(row, ext_id, "EXT_SYSTEM and EXT_ID come together")),
    };
    Ok(BookedAppointment {
        id: number(row, appt_id)?,
        version: seq(row, seq_col)?.to_string(),
        nhs_number,
        status,
        slots,
        session: number(row, session)?,
        location: opt_number(row, site)?,
        clinician: match opt(row, staff) {
            None => None,
            Some(_) => Some(id(row, staff)?),
        },
        start: from,
        end: to,
        slot_type: text(row, slot_type),
        channel: match opt(row, channel_col) {
            None => None,
            Some(_) => Some(channel(row, channel_col)?),
        },
        description: text(row, description),
        comment: text(row, comment),
        cancellation_reason: text(row, reason),
        created: stamp(row, created)?,
        booked_by,
        identifier,
    })
}

/// The one appointment a read, booking or change answers.
pub fn map_one_appointment(body: &[u8], extract: &'static str) -> Result<BookedAppointment> {
    let mut all = map_appointments(body, extract)?;
    match (all.pop(), all.len()) {
        (Some(a), 0) => Ok(a),
        (last, before) => Err(VisionDataError::RowCount {
            extract,
            found: before + usize::from(last.is_some()),
            expected: "exactly 1",
        }),
    }
}

// ---- writes --------------------------------------------------------------------------

/// Free text as Vision keeps it: trimmed (Vision trims every field it reads), empty as
/// nothing.
fn free_text(v: &Option<String>) -> String {
    v.as_deref().map(str::trim).unwrap_or_default().to_owned()
}

/// Renders a booking of `slots` at their `seqs`: one row.
pub fn render_booking(a: &NewAppointment, seqs: &[u64]) -> String {
    let (ext_system, ext_id) = a.identifier.clone().unwrap_or_default();
    let row = vec![
        a.slots.join(";"),
        seqs.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(";"),
        a.nhs_number.to_string(),
        a.key.clone(),
        a.booked_by.as_str().to_owned(),
        a.booked_by_name.trim().to_owned(),
        free_text(&a.description),
        free_text(&a.comment),
        ext_system,
        ext_id,
    ];
    extract::write(&BOOKING_COLUMNS, &[row])
}

/// Renders an amend or a cancel made against `seq`: `(path suffix, method, body)`.
pub fn render_change(change: &AppointmentChange, seq: u64) -> (&'static str, Method, String) {
    match change {
        AppointmentChange::Amend {
            description,
            comment,
        } => (
            "",
            Method::PUT,
            extract::write(
                &AMEND_COLUMNS,
                &[vec![
                    seq.to_string(),
                    free_text(description),
                    free_text(comment),
                ]],
            ),
        ),
        AppointmentChange::Cancel { reason } => (
            "/cancel",
            Method::POST,
            extract::write(
                &CANCEL_COLUMNS,
                &[vec![seq.to_string(), reason.trim().to_owned()]],
            ),
        ),
    }
}

// ---- native calls --------------------------------------------------------------------

/// Which appointment call was refused: the same native refusal means different things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Slot search or slot read.
    Slots,
    /// Appointment read or list.
    Read,
    Book,
    Change,
}

/// Maps a refused appointment call. Vision's codes decide first (`SLOT_BOOKED` and
/// `SEQ_MISMATCH` on a booking → `SlotUnavailable`; on a change `SEQ_MISMATCH` →
/// `VersionConflict`; `422` → `Unprocessable`; unknown practice, appointment or slot →
/// `NotFound`, unknown patient → `PatientNotFound`); anything else as every read and
/// write maps it ([`status_error`]).
pub fn refused(response: &NativeResponse, op: Op) -> AdapterError {
    let native = parse_error_body(&response.body);
    let code = native.as_ref().map(|(c, _)| c.as_str());
    let message = native.as_ref().map(|(_, m)| m.clone()).unwrap_or_default();
    let detail = refusal_detail(
        response.status,
        native.as_ref().map(|(c, m)| (c.as_str(), m.as_str())),
        "a Vision ERROR line",
    );
    let not_found = |what: &str| AdapterError::NotFound {
        system: SYSTEM,
        what: format!("{what} ({message})"),
    };
    match (response.status, code, op) {
        (404, Some("PATIENT_NOT_FOUND"), _) => AdapterError::PatientNotFound,
        (404, Some("PRACTICE_NOT_FOUND"), _) => not_found("such practice"),
        (404, Some("APPOINTMENT_NOT_FOUND"), _) => not_found("such appointment"),
        (404, Some("SLOT_NOT_FOUND"), Op::Book) => AdapterError::Unprocessable {
            system: SYSTEM,
            detail,
        },
        (404, Some("SLOT_NOT_FOUND"), _) => not_found("such slot"),
        (409, _, Op::Book) => AdapterError::SlotUnavailable {
            system: SYSTEM,
            detail,
        },
        (422, _, Op::Book | Op::Change) => AdapterError::Unprocessable {
            system: SYSTEM,
            detail,
        },
        (status, _, Op::Book | Op::Change) => {
            status_error(SYSTEM, Call::Write, status, false, detail)
        }
        (status, _, Op::Slots | Op::Read) => {
            status_error(SYSTEM, Call::Read, status, false, detail)
        }
    }
}

impl VisionClient {
    async fn book_call(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        ctx: &CallContext,
    ) -> Outcome<NativeResponse> {
        self.http
            .send(
                method,
                path,
                body.map(|b| (CONTENT_TYPE, b.into_bytes())),
                &[],
                ctx,
            )
            .await
    }

    /// `GET /vision/practices/{ODS}/slots?from=…&to=…` (local `YYYYMMDDHHMMSS`).
    pub async fn slots(
        &self,
        ods: &OdsCode,
        from: &str,
        to: &str,
        ctx: &CallContext,
    ) -> Outcome<Bytes> {
        let path = format!(
            "/vision/practices/{}/slots?from={from}&to={to}",
            ods.as_str()
        );
        self.book_call(Method::GET, &path, None, ctx)
            .await?
            .ok_body(|r| refused(r, Op::Slots))
    }

    /// `GET /vision/practices/{ODS}/slots?ids=…`: the slots named (each a Vision number).
    pub async fn slots_by_id(
        &self,
        ods: &OdsCode,
        ids: &[String],
        op: Op,
        ctx: &CallContext,
    ) -> Outcome<Bytes> {
        let path = format!(
            "/vision/practices/{}/slots?ids={}",
            ods.as_str(),
            ids.join(",")
        );
        self.book_call(Method::GET, &path, None, ctx)
            .await?
            .ok_body(|r| refused(r, op))
    }

    /// `GET /vision/practices/{ODS}/appointments/{APPT_ID}`; `None` when Vision holds no
    /// such appointment (or practice).
    pub async fn appointment(
        &self,
        ods: &OdsCode,
        id: &str,
        ctx: &CallContext,
    ) -> Outcome<Option<Bytes>> {
        let path = format!("/vision/practices/{}/appointments/{id}", ods.as_str());
        match self
            .book_call(Method::GET, &path, None, ctx)
            .await?
            .ok_body(|r| refused(r, Op::Read))
        {
            Ok(body) => Ok(Some(body)),
            Err(AdapterError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /vision/practices/{ODS}/patients/{NHS}/appointments?from=…&to=…`.
    pub async fn patient_appointments(
        &self,
        ods: &OdsCode,
        nhs: NhsNumber,
        from: &str,
        to: &str,
        ctx: &CallContext,
    ) -> Outcome<Bytes> {
        let path = format!(
            "/vision/practices/{}/patients/{nhs}/appointments?from={from}&to={to}",
            ods.as_str()
        );
        match self
            .book_call(Method::GET, &path, None, ctx)
            .await?
            .ok_body(|r| refused(r, Op::Read))
        {
            // An unknown practice holds no such patient either.
            Err(AdapterError::NotFound { .. }) => Err(AdapterError::PatientNotFound),
            other => other,
        }
    }

    /// `POST /vision/practices/{ODS}/appointments` with a booking row: `(created, answer)`
    /// (`201` booked now; `200` the key had been seen).
    pub async fn book(
        &self,
        ods: &OdsCode,
        body: String,
        ctx: &CallContext,
    ) -> Outcome<(bool, Bytes)> {
        let path = format!("/vision/practices/{}/appointments", ods.as_str());
        self.book_call(Method::POST, &path, Some(body), ctx)
            .await?
            .created_body(|r| refused(r, Op::Book))
    }

    /// `PUT /vision/practices/{ODS}/appointments/{APPT_ID}` (amend) or `POST …/cancel`.
    pub async fn change(
        &self,
        ods: &OdsCode,
        id: &str,
        change: &AppointmentChange,
        seq: u64,
        ctx: &CallContext,
    ) -> Outcome<Bytes> {
        let (suffix, method, body) = render_change(change, seq);
        let path = format!(
            "/vision/practices/{}/appointments/{id}{suffix}",
            ods.as_str()
        );
        self.book_call(method, &path, Some(body), ctx)
            .await?
            .ok_body(|r| refused(r, Op::Change))
    }
}

type Outcome<T> = std::result::Result<T, AdapterError>;

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
    fn local_times_become_utc_in_summer_and_winter() {
        // BST: 09:30 on the wall is 08:30 UTC.
        assert_eq!(
            utc_from_local(2026, 7, 14, (9, 30, 0)),
            utc(2026, 7, 14, 8, 30)
        );
        // GMT: the wall clock is UTC.
        assert_eq!(
            utc_from_local(2026, 1, 14, (9, 30, 0)),
            utc(2026, 1, 14, 9, 30)
        );
        // Just after midnight in summer is the previous day in UTC.
        assert_eq!(
            utc_from_local(2026, 7, 1, (0, 15, 0)),
            utc(2026, 6, 30, 23, 15)
        );
        for at in [
            utc(2026, 7, 14, 8, 30),
            utc(2026, 1, 14, 9, 30),
            utc(2026, 6, 30, 23, 15),
        ] {
            let local = native_local(at);
            let back = utc_from_local(
                local[0..4].parse().unwrap_or_default(),
                local[4..6].parse().unwrap_or_default(),
                local[6..8].parse().unwrap_or_default(),
                (
                    local[8..10].parse().unwrap_or_default(),
                    local[10..12].parse().unwrap_or_default(),
                    0,
                ),
            );
            assert_eq!(back, at, "{local}");
        }
        assert_eq!(native_local(utc(2026, 7, 14, 8, 30)), "20260714093000");
        assert_eq!(native_local(utc(2026, 1, 14, 9, 30)), "20260114093000");
        assert_eq!(hour_earlier(utc(2026, 3, 1, 0, 5)), utc(2026, 2, 28, 23, 5));
        assert_eq!(hour_later(utc(2026, 12, 31, 23, 5)), utc(2027, 1, 1, 0, 5));
    }

    fn resp(status: u16, body: &'static str) -> NativeResponse {
        NativeResponse {
            status,
            body: Bytes::from_static(body.as_bytes()),
            content_type: None,
            headers: Default::default(),
        }
    }

    #[test]
    fn refusals_map_by_code_and_call() {
        let taken = resp(409, "ERROR|SLOT_BOOKED|Slot 12 is already booked\r\n");
        assert!(matches!(
            refused(&taken, Op::Book),
            AdapterError::SlotUnavailable { .. }
        ));
        let stale = resp(409, "ERROR|SEQ_MISMATCH|now SEQ 3\r\n");
        assert!(matches!(
            refused(&stale, Op::Book),
            AdapterError::SlotUnavailable { .. }
        ));
        assert!(matches!(
            refused(&stale, Op::Change),
            AdapterError::VersionConflict { .. }
        ));
        let kept = resp(422, "ERROR|SLOT_NOT_BOOKABLE|Slot 12 is not released\r\n");
        assert!(matches!(
            refused(&kept, Op::Book),
            AdapterError::Unprocessable { detail, .. } if detail.contains("SLOT_NOT_BOOKABLE")
        ));
        let gone = resp(404, "ERROR|APPOINTMENT_NOT_FOUND|No appointment 9\r\n");
        assert!(matches!(
            refused(&gone, Op::Change),
            AdapterError::NotFound { .. }
        ));
        let practice = resp(404, "ERROR|PRACTICE_NOT_FOUND|No Vision practice\r\n");
        assert!(matches!(
            refused(&practice, Op::Slots),
            AdapterError::NotFound { .. }
        ));
        let patient = resp(404, "ERROR|PATIENT_NOT_FOUND|No patient\r\n");
        assert_eq!(refused(&patient, Op::Read), AdapterError::PatientNotFound);
        assert!(matches!(
            refused(&resp(503, ""), Op::Book),
            AdapterError::Unavailable { .. }
        ));
        assert!(matches!(
            refused(&resp(400, "ERROR|INVALID_RANGE|bad\r\n"), Op::Slots),
            AdapterError::Rejected { .. }
        ));
    }
}
