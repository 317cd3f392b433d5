//! Appointment management: a practice's appointment book in a vendor-neutral shape.
//! An adapter renders its GP system's native book (sessions, slots, appointments) into
//! these types and turns bookings, amends and cancels into native writes with the
//! system's own concurrency control; the gateway maps them to FHIR R4 (Slot, Schedule,
//! Appointment, …) in one place, so every GP system answers the same FHIR.
//!
//! Ids are the native ones (`[A-Za-z0-9.-]`, at most 56 characters): the gateway prefixes
//! them with the practice's ODS code to make FHIR ids it can route. Times are UTC
//! instants ([`UtcDateTime`]); an adapter converts from the system's local time.

pub mod fhir;

use gp_fhir::{NhsNumber, OdsCode};

use crate::CallContext;
use crate::time::UtcDateTime;

/// How the patient and clinician meet (GP Connect's delivery channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeliveryChannel {
    InPerson,
    Telephone,
    Video,
}

impl DeliveryChannel {
    /// Every channel.
    pub const ALL: [DeliveryChannel; 3] = [Self::InPerson, Self::Telephone, Self::Video];

    /// GP Connect's code: `In-person`, `Telephone`, `Video`.
    pub fn code(self) -> &'static str {
        match self {
            Self::InPerson => "In-person",
            Self::Telephone => "Telephone",
            Self::Video => "Video",
        }
    }

    /// From [`DeliveryChannel::code`].
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }
}

/// Whether a slot may be offered to a third-party supplier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotStatus {
    /// Free, and open to third parties.
    Free,
    /// Held by an appointment.
    Busy,
    /// Free, but kept from third parties: embargoed, or for the practice's own use.
    Unavailable,
}

/// An SDS job role (code and display), e.g. `R0260` General Medical Practitioner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRole {
    pub code: String,
    pub display: String,
}

/// A clinician whose sessions the book holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookClinician {
    /// The id [`crate::Adapter::read_practitioner`] answers for them.
    pub id: String,
    /// `Dr`, `Mrs`, …
    pub prefix: Option<String>,
    pub given: String,
    pub family: String,
    /// FHIR administrative gender (`male`, `female`, `other`, `unknown`).
    pub gender: Option<String>,
    /// 12-digit SDS user id.
    pub sds_user_id: Option<String>,
    /// Their SDS job role, when the system records one.
    pub role: Option<JobRole>,
}

/// A site of the practice where sessions run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookLocation {
    pub id: String,
    pub name: String,
    /// Address lines, then town and postcode.
    pub lines: Vec<String>,
    pub town: Option<String>,
    pub postcode: Option<String>,
}

/// A clinician's session at a site (GP Connect's Schedule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookSession {
    pub id: String,
    /// The session's name (`Morning surgery`).
    pub name: String,
    /// [`BookClinician::id`], when one clinician runs it.
    pub clinician: Option<String>,
    /// [`BookLocation::id`].
    pub location: String,
    /// The service it offers (`GP consultation`): GP Connect's service category.
    pub service: Option<String>,
    pub start: UtcDateTime,
    pub end: UtcDateTime,
}

/// One slot of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookSlot {
    pub id: String,
    /// [`BookSession::id`].
    pub session: String,
    pub start: UtcDateTime,
    pub end: UtcDateTime,
    /// The slot type (`GP consultation`, `Blood test`): GP Connect's service type text.
    pub slot_type: String,
    pub channel: DeliveryChannel,
    pub status: SlotStatus,
}

/// A part of a practice's book: the slots starting in a range, the sessions they belong
/// to, and the clinicians and sites those sessions name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppointmentBook {
    pub slots: Vec<BookSlot>,
    pub sessions: Vec<BookSession>,
    pub clinicians: Vec<BookClinician>,
    pub locations: Vec<BookLocation>,
}

/// Read the slots of one practice starting in `[start, end)`.
#[derive(Debug, Clone)]
pub struct SlotSearchRequest {
    pub practice: OdsCode,
    pub start: UtcDateTime,
    pub end: UtcDateTime,
    pub context: CallContext,
}

/// Whether an appointment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppointmentStatus {
    Booked,
    Cancelled,
}

/// An appointment in a practice's book, however it was booked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookedAppointment {
    pub id: String,
    /// The native version: changes on every amend or cancel (the ETag; the version a
    /// change must be made against).
    pub version: String,
    pub nhs_number: NhsNumber,
    pub status: AppointmentStatus,
    /// Its slots' ids, in time order.
    pub slots: Vec<String>,
    /// [`BookSession::id`].
    pub session: String,
    /// [`BookLocation::id`] of the session's site.
    pub location: Option<String>,
    /// [`BookClinician::id`] of the session's clinician.
    pub clinician: Option<String>,
    pub start: UtcDateTime,
    pub end: UtcDateTime,
    pub slot_type: Option<String>,
    pub channel: Option<DeliveryChannel>,
    pub description: Option<String>,
    pub comment: Option<String>,
    pub cancellation_reason: Option<String>,
    /// When it was booked.
    pub created: UtcDateTime,
    /// ODS code of the third party that booked it; `None`: booked at the practice.
    pub booked_by: Option<OdsCode>,
    /// The booker's own identifier of the booking (`system`, `value`).
    pub identifier: Option<(String, String)>,
}

/// A booking a supplier asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAppointment {
    /// Opaque idempotency key (1 to 64 ASCII letters, digits or hyphens; the gateway
    /// sends 64 hex digits): a retried booking with the same key books nothing and
    /// answers the existing appointment with `created: false`.
    pub key: String,
    /// The supplier's own identifier of the booking, kept with it.
    pub identifier: Option<(String, String)>,
    pub nhs_number: NhsNumber,
    /// Slot ids: adjacent, one session, one channel and type.
    pub slots: Vec<String>,
    /// ≤ 100 characters.
    pub description: Option<String>,
    /// ≤ 500 characters.
    pub comment: Option<String>,
    /// The booking organisation: the supplier's ODS code and name.
    pub booked_by: OdsCode,
    pub booked_by_name: String,
}

/// `book` an appointment.
#[derive(Debug, Clone)]
pub struct BookRequest {
    pub practice: OdsCode,
    pub appointment: NewAppointment,
    pub context: CallContext,
}

/// What the GP system did with a booking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Booked {
    pub appointment: BookedAppointment,
    /// False when the key had been seen and the existing appointment was answered.
    pub created: bool,
}

/// Read one appointment.
#[derive(Debug, Clone)]
pub struct AppointmentRequest {
    pub practice: OdsCode,
    pub id: String,
    pub context: CallContext,
}

/// A patient's appointments overlapping `[start, end)`, booked and cancelled.
#[derive(Debug, Clone)]
pub struct PatientAppointmentsRequest {
    pub practice: OdsCode,
    pub nhs_number: NhsNumber,
    pub start: UtcDateTime,
    pub end: UtcDateTime,
    pub context: CallContext,
}

/// What may change in a booked appointment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppointmentChange {
    /// The complete new description and comment.
    Amend {
        description: Option<String>,
        comment: Option<String>,
    },
    /// Cancel it, freeing its slots.
    Cancel { reason: String },
}

/// Amend or cancel an appointment, only if it is still at `expected_version`.
#[derive(Debug, Clone)]
pub struct ChangeAppointmentRequest {
    pub practice: OdsCode,
    pub id: String,
    pub expected_version: String,
    pub change: AppointmentChange,
    pub context: CallContext,
}
