//! The practices' appointment books: sessions of each clinician at a site, cut into slots
//! of varying length, some free, some booked (at the practice or by a supplier), some
//! kept from third parties (embargoed, or for the practice's own use). One book per
//! practice, kept by [`crate::SimStore`]; each simulator renders it in its own native
//! shape and exposes booking with its own concurrency control, over the atomic
//! operations here (so a slot is booked at most once however the requests race).
//!
//! Times are UTC instants, whole seconds since 1970-01-01 ([`Instant`]); the sessions
//! follow UK wall-clock hours ([`crate::clock`]). A book covers the week before the day
//! it is first opened to four weeks after it, generated deterministically from the
//! population seed, the practice and that day: the real calendar, because booking is
//! about the future and a supplier refuses past slots.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::clock;
use crate::date::SimDate;
use crate::model::{Clinician, ExternalId, Practice};
use crate::rng::Rng;

/// A UTC instant, whole seconds since 1970-01-01 00:00:00Z.
pub type Instant = i64;

/// Days a book covers before the day it is opened.
pub const BOOK_DAYS_BEFORE: i64 = 7;
/// Days a book covers from the day it is opened.
pub const BOOK_DAYS_AFTER: i64 = 28;

/// The longest description and comment a booking may carry (GP Connect's limits).
pub const MAX_DESCRIPTION: usize = 100;
/// See [`MAX_DESCRIPTION`].
pub const MAX_COMMENT: usize = 500;

/// How the patient and clinician meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Channel {
    InPerson,
    Telephone,
    Video,
}

impl Channel {
    /// Every channel.
    pub const ALL: [Channel; 3] = [Self::InPerson, Self::Telephone, Self::Video];

    /// GP Connect's delivery channel code (`In-person`, `Telephone`, `Video`).
    pub fn code(self) -> &'static str {
        match self {
            Self::InPerson => "In-person",
            Self::Telephone => "Telephone",
            Self::Video => "Video",
        }
    }

    /// From [`Channel::code`].
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }
}

/// Whether a slot can be booked, and by whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SlotState {
    /// Open to anyone, third-party suppliers included.
    Free,
    /// Held by an appointment.
    Booked,
    /// Free, but not released for booking yet (an embargo until nearer the day).
    Embargoed,
    /// Free, but only the practice's own staff may book it.
    PracticeOnly,
}

/// A site of the practice where sessions run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Site {
    /// GUID.
    pub id: String,
    /// `Main surgery` or a branch's name.
    pub name: String,
    /// Address lines, town, postcode.
    pub lines: Vec<String>,
    pub town: String,
    pub postcode: String,
}

/// One clinician's session at one site on one day: a diary the practice opens for a
/// kind of appointment (a morning surgery, a nurse's clinic).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    /// GUID.
    pub id: String,
    /// Number unique within the practice (systems that key sessions by number use it).
    pub number: u64,
    /// `Morning surgery`, `Afternoon surgery`, `Nurse clinic`, `Telephone triage`.
    pub name: String,
    /// [`Clinician::id`] of the practice's clinician running it.
    pub clinician: String,
    /// [`Site::id`].
    pub site: String,
    /// The kind of appointment it offers (`GP consultation`, `Blood test`, …).
    pub service: String,
    /// When it runs.
    pub start: Instant,
    pub end: Instant,
}

/// One slot of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Slot {
    /// GUID.
    pub id: String,
    /// Number unique within the practice.
    pub number: u64,
    /// [`Session::id`].
    pub session: String,
    pub start: Instant,
    pub end: Instant,
    /// The slot type (`GP consultation`, `Telephone consultation`, `Blood test`, …).
    pub slot_type: String,
    pub channel: Channel,
    pub state: SlotState,
    /// Changes whenever the slot is booked or freed (optimistic concurrency).
    pub version: u64,
}

/// Whether an appointment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AppointmentState {
    Booked,
    Cancelled,
}

/// Who booked an appointment, when a third party did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BookingOrganisation {
    /// ODS code of the supplier.
    pub ods: String,
    /// Its name.
    pub name: String,
}

/// An appointment in a practice's book.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Appointment {
    /// GUID.
    pub id: String,
    /// Number unique within the practice.
    pub number: u64,
    /// The patient's NHS number.
    pub nhs: String,
    /// The slots it holds, in time order (adjacent, one session).
    pub slots: Vec<String>,
    /// [`Session::id`] of its slots.
    pub session: String,
    pub start: Instant,
    pub end: Instant,
    pub state: AppointmentState,
    /// Why the patient is coming, as the booker wrote it (≤ 100 characters).
    pub description: Option<String>,
    /// A note for the practice (≤ 500 characters).
    pub comment: Option<String>,
    /// Why it was cancelled.
    pub cancellation_reason: Option<String>,
    /// When it was booked.
    pub created: Instant,
    /// The third party that booked it; `None`: booked at the practice.
    pub booked_by: Option<BookingOrganisation>,
    /// The booker's idempotency key.
    pub external_key: Option<String>,
    /// The booker's own identifier of the booking.
    pub external_id: Option<ExternalId>,
    /// Changes on every amend or cancel (optimistic concurrency), from 1.
    pub version: u64,
}

/// A practice's whole book.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Book {
    pub sites: Vec<Site>,
    pub sessions: Vec<Session>,
    /// In time order.
    pub slots: Vec<Slot>,
    pub appointments: Vec<Appointment>,
    /// The next number to give a new appointment.
    next_number: u64,
}

/// What part of a book a native search returns: the slots starting in a range, the
/// sessions they belong to, the sites of those sessions and the practice's clinicians.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BookView {
    pub sites: Vec<Site>,
    pub sessions: Vec<Session>,
    pub slots: Vec<Slot>,
    pub clinicians: Vec<Clinician>,
}

/// A booking a supplier (or the practice) asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct NewBooking {
    /// Idempotency key (1 to 64 letters, digits or hyphens); `None` at the practice.
    pub key: Option<String>,
    pub nhs: String,
    /// Slot ids, adjacent on one session.
    pub slots: Vec<String>,
    /// The slots' versions as the booker saw them, in the same order (systems with
    /// slot-level optimistic concurrency); `None`: book whatever their version.
    pub slot_versions: Option<Vec<u64>>,
    pub description: Option<String>,
    pub comment: Option<String>,
    /// `None`: the practice's own staff book it (practice-only slots allowed).
    pub booked_by: Option<BookingOrganisation>,
    pub external_id: Option<ExternalId>,
}

/// A change to an appointment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// New description and comment (each the complete new value).
    Amend {
        description: Option<String>,
        comment: Option<String>,
    },
    /// Cancel, freeing its slots.
    Cancel { reason: String },
}

/// Why the book refused an operation. Each simulator renders it natively.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    #[error("no practice with ODS code {0} on this system")]
    PracticeNotFound(String),
    #[error("no patient with that NHS number is registered at {0}")]
    PatientNotFound(String),
    #[error("no slot {0} in this practice's book")]
    SlotNotFound(String),
    #[error("slot {0} is already booked")]
    SlotTaken(String),
    #[error("slot {0} is not available for booking by third parties")]
    NotBookable(String),
    #[error("slot {0} has changed since it was read")]
    SlotChanged(String),
    #[error("slot {0} has started already")]
    InPast(String),
    #[error("the slots must be adjacent, in one session")]
    NotAdjacent,
    #[error("no appointment {0} in this practice's book")]
    AppointmentNotFound(String),
    /// The appointment changed since the version given; it is now at this version.
    #[error("the appointment was modified since the version given; it is now at version {0}")]
    Conflict(u64),
    #[error("the appointment is cancelled and cannot be changed")]
    Cancelled,
    #[error("{0}")]
    Invalid(String),
}

/// Seconds now, by the system clock.
pub fn now() -> Instant {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// An instant as a UTC date-time.
pub fn utc_date_time(t: Instant) -> SimDate {
    SimDate::ymd(1970, 1, 1).at(0, 0, 0).plus_seconds(t)
}

/// A UTC date-time as an instant (a date alone: midnight).
pub fn instant(utc: SimDate) -> Instant {
    let (h, m, s) = utc.time.unwrap_or((0, 0, 0));
    utc.days() * 86_400 + i64::from(h) * 3600 + i64::from(m) * 60 + i64::from(s)
}

/// An instant as UK wall-clock time.
pub fn local_date_time(t: Instant) -> SimDate {
    clock::local_from_utc(utc_date_time(t))
}

/// A UK wall-clock time as an instant.
pub fn from_local(local: SimDate) -> Instant {
    instant(clock::utc_from_local(local))
}

/// Monday = 0 … Sunday = 6 of a day counted from 1970-01-01 (a Thursday).
fn weekday(days: i64) -> i64 {
    (days + 3).rem_euclid(7)
}

fn text_ok(value: &Option<String>, max: usize, what: &str) -> Result<(), BookError> {
    match value {
        Some(v) if v.chars().count() > max => Err(BookError::Invalid(format!(
            "the {what} is longer than {max} characters"
        ))),
        Some(v) if v.trim().is_empty() => Err(BookError::Invalid(format!("the {what} is empty"))),
        _ => Ok(()),
    }
}

/// The SDS job role a clinician's role maps to (code, display). The first GP of a
/// practice is its partner (R0260), the others salaried (R0270).
pub fn job_role(practice: &Practice, clinician: &Clinician) -> (&'static str, &'static str) {
    let first_gp = practice.clinicians.iter().find(|c| c.role == "GP");
    match clinician.role.as_str() {
        "GP" if first_gp.is_some_and(|c| c.id == clinician.id) => {
            ("R0260", "General Medical Practitioner")
        }
        "GP" => ("R0270", "Salaried General Practitioner"),
        _ => ("R8001", "Nurse Access Role"),
    }
}

impl Book {
    /// The book of `practice` around `today` (days since 1970-01-01), from `seed`;
    /// `patients` (NHS numbers registered there) hold the appointments booked at the
    /// practice. The same inputs give the same book.
    pub fn generate(seed: u64, practice: &Practice, patients: &[String], today: i64) -> Book {
        let salt = practice.ods.bytes().fold(0xB00C_u64, |h, b| {
            h.wrapping_mul(31).wrapping_add(u64::from(b))
        });
        let mut r = Rng::fork(seed ^ (today as u64).wrapping_mul(0x9E37), salt);
        let main = Site {
            id: r.guid(),
            name: format!("{} (main surgery)", practice.name),
            lines: vec![practice.address.street.clone()],
            town: practice.address.town.clone(),
            postcode: practice.address.postcode.clone(),
        };
        let branch = Site {
            id: r.guid(),
            name: format!("{} branch surgery", practice.address.town),
            lines: vec![format!("{} Health Centre", practice.address.town)],
            town: practice.address.town.clone(),
            postcode: practice.address.postcode.clone(),
        };
        let mut book = Book {
            sites: vec![main, branch],
            sessions: Vec::new(),
            slots: Vec::new(),
            appointments: Vec::new(),
            next_number: 1,
        };
        let mut number = 1u64;
        let now = now();
        for day in today - BOOK_DAYS_BEFORE..today + BOOK_DAYS_AFTER {
            if weekday(day) >= 5 {
                continue;
            }
            let date = SimDate::from_days(day);
            for (ci, clinician) in practice.clinicians.iter().enumerate() {
                let gp = clinician.role == "GP";
                // Mornings at the main site; one afternoon a week at the branch.
                let parts: [(u8, u8, u8, u8, &str); 2] = [
                    (8, 30, 12, 0, "Morning surgery"),
                    (14, 0, 17, 30, "Afternoon surgery"),
                ];
                for (pi, (h0, m0, h1, m1, name)) in parts.into_iter().enumerate() {
                    let telephone = gp && pi == 0 && (day + ci as i64) % 5 == 0;
                    let at_branch = pi == 1 && (day + ci as i64) % 5 == 2;
                    let (session_name, service) = match (gp, telephone) {
                        (true, true) => ("Telephone triage", "Telephone consultation"),
                        (true, false) => (name, "GP consultation"),
                        (false, _) if pi == 0 => ("Nurse clinic", "Nurse appointment"),
                        (false, _) => ("Phlebotomy clinic", "Blood test"),
                    };
                    let start = from_local(date.at(h0, m0, 0));
                    let end = from_local(date.at(h1, m1, 0));
                    let session = Session {
                        id: r.guid(),
                        number,
                        name: session_name.to_owned(),
                        clinician: clinician.id.clone(),
                        site: book.sites[usize::from(at_branch)].id.clone(),
                        service: service.to_owned(),
                        start,
                        end,
                    };
                    number += 1;
                    let mut t = start;
                    while t < end {
                        let minutes: i64 = if gp {
                            *r.pick(&[10, 10, 10, 15, 20])
                        } else {
                            *r.pick(&[15, 15, 20, 30])
                        };
                        let slot_end = (t + minutes * 60).min(end);
                        let channel = if telephone {
                            Channel::Telephone
                        } else if gp && r.chance(10) {
                            Channel::Video
                        } else {
                            Channel::InPerson
                        };
                        let roll = r.below(100);
                        let past = slot_end <= now;
                        let state = match roll {
                            _ if past && roll < 70 => SlotState::Booked,
                            0..=24 => SlotState::Booked,
                            25..=29 => SlotState::Embargoed,
                            30..=34 => SlotState::PracticeOnly,
                            _ => SlotState::Free,
                        };
                        let slot = Slot {
                            id: r.guid(),
                            number,
                            session: session.id.clone(),
                            start: t,
                            end: slot_end,
                            slot_type: service.to_owned(),
                            channel,
                            state,
                            version: 1,
                        };
                        number += 1;
                        if state == SlotState::Booked && !patients.is_empty() {
                            let nhs = booking_patient(&mut r, patients);
                            let created = t - r.range(1, 14) * 86_400;
                            book.appointments.push(Appointment {
                                id: r.guid(),
                                number: 0,
                                nhs,
                                slots: vec![slot.id.clone()],
                                session: session.id.clone(),
                                start: slot.start,
                                end: slot.end,
                                state: AppointmentState::Booked,
                                description: Some((*r.pick(REASONS)).to_owned()),
                                comment: None,
                                cancellation_reason: None,
                                created,
                                booked_by: None,
                                external_key: None,
                                external_id: None,
                                version: 1,
                            });
                        }
                        book.slots.push(slot);
                        t = slot_end;
                    }
                    book.sessions.push(session);
                }
            }
        }
        for a in &mut book.appointments {
            a.number = number;
            number += 1;
        }
        book.next_number = number;
        book
    }

    /// The slots starting in `[from, to)` with their sessions and sites, and the
    /// practice's clinicians.
    pub fn view(&self, practice: &Practice, from: Instant, to: Instant) -> BookView {
        let slots: Vec<Slot> = self
            .slots
            .iter()
            .filter(|s| s.start >= from && s.start < to)
            .cloned()
            .collect();
        let mut session_ids: Vec<&str> = slots.iter().map(|s| s.session.as_str()).collect();
        session_ids.sort_unstable();
        session_ids.dedup();
        let sessions: Vec<Session> = self
            .sessions
            .iter()
            .filter(|s| session_ids.binary_search(&s.id.as_str()).is_ok())
            .cloned()
            .collect();
        let sites = self
            .sites
            .iter()
            .filter(|site| sessions.iter().any(|s| s.site == site.id))
            .cloned()
            .collect();
        BookView {
            sites,
            sessions,
            slots,
            clinicians: practice.clinicians.clone(),
        }
    }

    /// The appointment `id` (its GUID or its number), whatever its state.
    pub fn appointment(&self, id: &str) -> Option<&Appointment> {
        self.appointments
            .iter()
            .find(|a| a.id.eq_ignore_ascii_case(id) || a.number.to_string() == id)
    }

    /// The slot `id` (its GUID or its number).
    pub fn slot(&self, id: &str) -> Option<&Slot> {
        self.slots
            .iter()
            .find(|s| s.id.eq_ignore_ascii_case(id) || s.number.to_string() == id)
    }

    /// The patient's appointments overlapping `[from, to)`, booked and cancelled, in
    /// time order.
    pub fn appointments_of(&self, nhs: &str, from: Instant, to: Instant) -> Vec<Appointment> {
        let mut out: Vec<Appointment> = self
            .appointments
            .iter()
            .filter(|a| a.nhs == nhs && a.end > from && a.start < to)
            .cloned()
            .collect();
        out.sort_by_key(|a| (a.start, a.number));
        out
    }

    /// Books `booking` at `now`, atomically: every slot is checked before any is
    /// taken. A key seen before answers its appointment with `false` (nothing booked),
    /// whatever the slots' state now.
    pub fn book(
        &mut self,
        booking: NewBooking,
        now: Instant,
    ) -> Result<(Appointment, bool), BookError> {
        if let Some(key) = &booking.key {
            if key.is_empty()
                || key.len() > 64
                || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(BookError::Invalid(
                    "the idempotency key must be 1 to 64 letters, digits or hyphens".into(),
                ));
            }
            if let Some(existing) = self
                .appointments
                .iter()
                .find(|a| a.external_key.as_deref() == Some(key.as_str()))
            {
                return Ok((existing.clone(), false));
            }
        }
        text_ok(&booking.description, MAX_DESCRIPTION, "description")?;
        text_ok(&booking.comment, MAX_COMMENT, "comment")?;
        if booking.slots.is_empty() {
            return Err(BookError::Invalid("no slots given".into()));
        }
        if let Some(versions) = &booking.slot_versions
            && versions.len() != booking.slots.len()
        {
            return Err(BookError::Invalid(
                "one version is needed for each slot".into(),
            ));
        }
        let mut indexes = Vec::with_capacity(booking.slots.len());
        for (n, id) in booking.slots.iter().enumerate() {
            let i = self
                .slots
                .iter()
                .position(|s| s.id.eq_ignore_ascii_case(id) || s.number.to_string() == *id)
                .ok_or_else(|| BookError::SlotNotFound(id.clone()))?;
            if indexes.contains(&i) {
                return Err(BookError::NotAdjacent);
            }
            let slot = &self.slots[i];
            if let Some(versions) = &booking.slot_versions
                && versions.get(n) != Some(&slot.version)
            {
                return Err(BookError::SlotChanged(id.clone()));
            }
            match slot.state {
                SlotState::Free => {}
                SlotState::Booked => return Err(BookError::SlotTaken(id.clone())),
                SlotState::PracticeOnly if booking.booked_by.is_none() => {}
                SlotState::Embargoed | SlotState::PracticeOnly => {
                    return Err(BookError::NotBookable(id.clone()));
                }
            }
            if slot.start <= now {
                return Err(BookError::InPast(id.clone()));
            }
            indexes.push(i);
        }
        indexes.sort_unstable();
        let first = &self.slots[indexes[0]];
        for pair in indexes.windows(2) {
            let (a, b) = (&self.slots[pair[0]], &self.slots[pair[1]]);
            if a.end != b.start
                || a.session != b.session
                || a.channel != b.channel
                || a.slot_type != b.slot_type
            {
                return Err(BookError::NotAdjacent);
            }
        }
        let last = &self.slots[indexes[indexes.len() - 1]];
        let mut r = Rng::fork(self.next_number, now as u64);
        let appointment = Appointment {
            id: r.guid(),
            number: self.next_number,
            nhs: booking.nhs,
            slots: indexes.iter().map(|&i| self.slots[i].id.clone()).collect(),
            session: first.session.clone(),
            start: first.start,
            end: last.end,
            state: AppointmentState::Booked,
            description: booking.description,
            comment: booking.comment,
            cancellation_reason: None,
            created: now,
            booked_by: booking.booked_by,
            external_key: booking.key,
            external_id: booking.external_id,
            version: 1,
        };
        self.next_number += 1;
        for &i in &indexes {
            self.slots[i].state = SlotState::Booked;
            self.slots[i].version += 1;
        }
        self.appointments.push(appointment.clone());
        Ok((appointment, true))
    }

    /// Applies `change` to appointment `id` if it is still at `expected_version`
    /// (`None`: whatever its version). A cancel frees its slots.
    pub fn change(
        &mut self,
        id: &str,
        expected_version: Option<u64>,
        change: Change,
    ) -> Result<Appointment, BookError> {
        let a = self
            .appointments
            .iter_mut()
            .find(|a| a.id.eq_ignore_ascii_case(id) || a.number.to_string() == id)
            .ok_or_else(|| BookError::AppointmentNotFound(id.to_owned()))?;
        if let Some(v) = expected_version
            && v != a.version
        {
            return Err(BookError::Conflict(a.version));
        }
        if a.state == AppointmentState::Cancelled {
            return Err(BookError::Cancelled);
        }
        match change {
            Change::Amend {
                description,
                comment,
            } => {
                text_ok(&description, MAX_DESCRIPTION, "description")?;
                text_ok(&comment, MAX_COMMENT, "comment")?;
                a.description = description;
                a.comment = comment;
            }
            Change::Cancel { reason } => {
                if reason.trim().is_empty() {
                    return Err(BookError::Invalid("a cancellation needs a reason".into()));
                }
                a.state = AppointmentState::Cancelled;
                a.cancellation_reason = Some(reason);
                let held = a.slots.clone();
                for slot in self.slots.iter_mut().filter(|s| held.contains(&s.id)) {
                    slot.state = SlotState::Free;
                    slot.version += 1;
                }
            }
        }
        let a = self
            .appointments
            .iter_mut()
            .find(|a| a.id.eq_ignore_ascii_case(id) || a.number.to_string() == id)
            .ok_or_else(|| BookError::AppointmentNotFound(id.to_owned()))?;
        a.version += 1;
        Ok(a.clone())
    }
}

/// Of the slots booked at the practice, the share held by the synthetic population's
/// patients (a dozen of the practice's thousands); the rest hold someone else's.
const POPULATION_BOOKING_PERCENT: u64 = 5;

/// Whose appointment a slot booked at the practice holds: now and then one of the
/// population's `patients`, otherwise a patient the simulator does not hold (a valid
/// NHS number in the 999 test range, none of `patients`), so no synthetic patient has
/// dozens of appointments a month.
fn booking_patient(r: &mut Rng, patients: &[String]) -> String {
    if r.chance(POPULATION_BOOKING_PERCENT) {
        return r.pick(patients).clone();
    }
    loop {
        let stem = 999_000_000 + r.below(1_000_000) as u32;
        if let Some(nhs) = crate::nhs::with_check_digit(stem)
            && !patients.contains(&nhs)
        {
            return nhs;
        }
    }
}

/// Why patients book (what the practice's receptionists write).
const REASONS: &[&str] = &[
    "Medication review",
    "Follow-up of blood test results",
    "Cough for two weeks",
    "Blood pressure check",
    "Asthma review",
    "Back pain",
    "Skin rash",
];

/// Opens books lazily and keeps them: the [`crate::SimStore`] part that holds them.
#[derive(Debug, Default)]
pub struct Books {
    by_practice: BTreeMap<String, Book>,
}

impl Books {
    /// The book of `practice`, generated on first use around today.
    pub fn of(&mut self, seed: u64, practice: &Practice, patients: &[String]) -> &mut Book {
        self.by_practice
            .entry(practice.ods.clone())
            .or_insert_with(|| Book::generate(seed, practice, patients, now().div_euclid(86_400)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::population::{Population, PopulationSpec};

    fn book() -> (Practice, Book) {
        let pop = Population::generate(7, &PopulationSpec::sandbox());
        let practice = pop.practices[0].clone();
        let patients: Vec<String> = pop
            .patients
            .iter()
            .filter(|p| p.practice == practice.ods)
            .map(|p| p.nhs_number.clone())
            .collect();
        let book = Book::generate(7, &practice, &patients, now().div_euclid(86_400));
        (practice, book)
    }

    fn free_future(book: &Book) -> Slot {
        let now = now();
        book.slots
            .iter()
            .find(|s| s.state == SlotState::Free && s.start > now + 3600)
            .unwrap()
            .clone()
    }

    fn booking(key: &str, slot: &Slot) -> NewBooking {
        NewBooking {
            key: Some(key.into()),
            nhs: "9000000009".into(),
            slots: vec![slot.id.clone()],
            slot_versions: None,
            description: Some("Review".into()),
            comment: None,
            booked_by: Some(BookingOrganisation {
                ods: "X26".into(),
                name: "Supplier".into(),
            }),
            external_id: None,
        }
    }

    #[test]
    fn the_same_inputs_give_the_same_book_with_every_kind_of_slot() {
        let (_, a) = book();
        let (_, b) = book();
        assert_eq!(a, b);
        for state in [
            SlotState::Free,
            SlotState::Booked,
            SlotState::Embargoed,
            SlotState::PracticeOnly,
        ] {
            assert!(a.slots.iter().any(|s| s.state == state), "{state:?}");
        }
        for channel in Channel::ALL {
            assert!(a.slots.iter().any(|s| s.channel == channel), "{channel:?}");
        }
        let lengths: std::collections::BTreeSet<i64> =
            a.slots.iter().map(|s| s.end - s.start).collect();
        assert!(lengths.len() >= 3, "{lengths:?}");
        assert!(a.appointments.iter().all(|x| x.booked_by.is_none()));
        assert!(!a.appointments.is_empty());
        // Each population patient holds a few, not dozens; the rest are other patients'.
        let (practice, _) = book();
        let pop = Population::generate(7, &PopulationSpec::sandbox());
        let ours: Vec<&str> = pop
            .patients
            .iter()
            .filter(|p| p.practice == practice.ods)
            .map(|p| p.nhs_number.as_str())
            .collect();
        let held = |nhs: &str| a.appointments.iter().filter(|x| x.nhs == nhs).count();
        assert!(ours.iter().map(|n| held(n)).sum::<usize>() > 0);
        assert!(
            ours.iter().all(|n| held(n) <= 12),
            "{:?}",
            ours.iter().map(|n| held(n)).collect::<Vec<_>>()
        );
        assert!(a.appointments.iter().all(|x| crate::nhs::is_valid(&x.nhs)));
    }

    #[test]
    fn a_slot_books_once_and_a_key_repeats_its_answer() {
        let (_, mut b) = book();
        let slot = free_future(&b);
        let (first, created) = b.book(booking("k1", &slot), now()).unwrap();
        assert!(created);
        let (again, created) = b.book(booking("k1", &slot), now()).unwrap();
        assert!(!created);
        assert_eq!(again.id, first.id);
        assert_eq!(
            b.book(booking("k2", &slot), now()),
            Err(BookError::SlotTaken(slot.id.clone()))
        );
    }

    #[test]
    fn a_cancel_frees_the_slot_and_a_stale_change_is_refused() {
        let (_, mut b) = book();
        let slot = free_future(&b);
        let (a, _) = b.book(booking("k1", &slot), now()).unwrap();
        let amended = b
            .change(
                &a.id,
                Some(1),
                Change::Amend {
                    description: Some("New".into()),
                    comment: None,
                },
            )
            .unwrap();
        assert_eq!(amended.version, 2);
        assert_eq!(
            b.change(&a.id, Some(1), Change::Cancel { reason: "x".into() }),
            Err(BookError::Conflict(2))
        );
        let cancelled = b
            .change(&a.id, Some(2), Change::Cancel { reason: "x".into() })
            .unwrap();
        assert_eq!(cancelled.state, AppointmentState::Cancelled);
        assert_eq!(b.slot(&slot.id).unwrap().state, SlotState::Free);
        assert_eq!(
            b.change(&a.id, None, Change::Cancel { reason: "x".into() }),
            Err(BookError::Cancelled)
        );
        b.book(booking("k2", &slot), now()).unwrap();
    }

    #[test]
    fn third_parties_cannot_book_kept_slots_past_slots_or_gaps() {
        let (_, mut b) = book();
        let now = now();
        for state in [SlotState::Embargoed, SlotState::PracticeOnly] {
            let s = b
                .slots
                .iter()
                .find(|s| s.state == state && s.start > now)
                .unwrap()
                .clone();
            assert_eq!(
                b.book(booking("k", &s), now),
                Err(BookError::NotBookable(s.id.clone()))
            );
        }
        let past = b
            .slots
            .iter()
            .find(|s| s.state == SlotState::Free && s.start < now)
            .cloned();
        if let Some(past) = past {
            assert_eq!(
                b.book(booking("k", &past), now),
                Err(BookError::InPast(past.id.clone()))
            );
        }
        let free: Vec<Slot> = b
            .slots
            .iter()
            .filter(|s| s.state == SlotState::Free && s.start > now)
            .cloned()
            .collect();
        let apart = free
            .iter()
            .find(|s| s.session != free[0].session)
            .unwrap()
            .clone();
        let mut two = booking("k", &free[0]);
        two.slots.push(apart.id);
        assert_eq!(b.book(two, now), Err(BookError::NotAdjacent));
    }
}
