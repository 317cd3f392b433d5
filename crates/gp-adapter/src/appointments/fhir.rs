//! The one mapping from the vendor-neutral appointment book to FHIR R4 (UK Core Slot,
//! Schedule, Location, PractitionerRole, Practitioner, Appointment), so the four GP
//! systems answer identical FHIR. Ids are `{ODS}-{native id}` (Practitioner ids stay
//! the native ones, as `Practitioner/{id}` reads them), so the gateway routes an id to
//! its practice without keeping state.

use gp_fhir::OdsCode;
use gp_fhir::model::{
    Address, Appointment, AppointmentParticipant, CodeableConcept, Extension, HumanName,
    Identifier, Location, Meta, Organization, Period, Practitioner, PractitionerRole, Reference,
    Resource, Schedule, Slot,
};

use super::{
    AppointmentBook, AppointmentStatus, BookClinician, BookLocation, BookSession, BookSlot,
    BookedAppointment, DeliveryChannel, SlotStatus,
};
use crate::time::UtcDateTime;

/// GP Connect's delivery channel extension (`valueCode`: `In-person`, `Telephone`, `Video`).
pub const DELIVERY_CHANNEL_EXTENSION: &str =
    "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-GPConnect-DeliveryChannel-2";
/// GP Connect's booking organisation extension (`valueReference` to a contained Organization).
pub const BOOKING_ORGANISATION_EXTENSION: &str =
    "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-GPConnect-BookingOrganisation-1";
/// SDS job roles, as `PractitionerRole.code` carries them.
pub const SDS_JOB_ROLE_SYSTEM: &str = "https://fhir.hl7.org.uk/CodeSystem/UKCore-SDSJobRoleName";
/// SDS user ids, as `Practitioner.identifier` carries them.
pub const SDS_USER_ID_SYSTEM: &str = "https://fhir.nhs.uk/Id/sds-user-id";
/// The id of the contained booking organisation.
pub const BOOKING_ORGANISATION_ID: &str = "booking-organisation";

pub use crate::practice_ids::{fhir_id, split_id};

/// An instant as a FHIR instant with the UK offset (`2026-06-12T09:40:00+01:00`), as
/// every other time the gateway gives.
pub fn instant(t: UtcDateTime) -> String {
    crate::time::uk_local_from_utc(t.year, t.month, t.day, t.hour, t.minute, t.second)
}

/// A FHIR instant (any offset) as UTC; `None` when it is not an instant.
pub fn parse_instant(s: &str) -> Option<UtcDateTime> {
    let (year, month, day, hour, minute, second) = gp_fhir::date::parse_instant_utc(s).ok()?;
    Some(UtcDateTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
    })
}

fn channel_extension(channel: DeliveryChannel) -> Extension {
    Extension {
        url: DELIVERY_CHANNEL_EXTENSION.to_owned(),
        value_code: Some(channel.code().to_owned()),
        ..Extension::default()
    }
}

fn text(t: &str) -> CodeableConcept {
    CodeableConcept {
        coding: Vec::new(),
        text: Some(t.to_owned()),
    }
}

/// A slot of `practice`'s book.
pub fn slot(practice: &OdsCode, s: &BookSlot) -> Slot {
    Slot {
        id: fhir_id(practice, &s.id),
        meta: Some(Meta::uk_core("Slot")),
        extension: vec![channel_extension(s.channel)],
        service_type: vec![text(&s.slot_type)],
        schedule: Reference::to("Schedule", &fhir_id(practice, &s.session)),
        status: match s.status {
            SlotStatus::Free => "free",
            SlotStatus::Busy => "busy",
            SlotStatus::Unavailable => "busy-unavailable",
        }
        .to_owned(),
        start: instant(s.start),
        end: instant(s.end),
    }
}

/// A session of `practice`'s book: its actors are the clinician, their role (when the
/// system records one) and the site.
pub fn schedule(
    practice: &OdsCode,
    s: &BookSession,
    clinician: Option<&BookClinician>,
) -> Schedule {
    let mut actor = Vec::with_capacity(3);
    if let Some(c) = clinician {
        actor.push(Reference::to("Practitioner", &c.id));
        if c.role.is_some() {
            actor.push(Reference::to("PractitionerRole", &fhir_id(practice, &c.id)));
        }
    }
    actor.push(Reference::to("Location", &fhir_id(practice, &s.location)));
    Schedule {
        id: fhir_id(practice, &s.id),
        meta: Some(Meta::uk_core("Schedule")),
        service_category: s.service.as_deref().map(text).into_iter().collect(),
        actor,
        planning_horizon: Some(Period {
            start: Some(instant(s.start)),
            end: Some(instant(s.end)),
        }),
        comment: Some(s.name.clone()),
    }
}

/// A clinician of the book, as `Practitioner/{id}` reads them.
pub fn practitioner(c: &BookClinician) -> Practitioner {
    Practitioner {
        id: c.id.clone(),
        meta: Some(Meta::uk_core("Practitioner")),
        identifier: c
            .sds_user_id
            .iter()
            .map(|id| Identifier::new(SDS_USER_ID_SYSTEM, id))
            .collect(),
        name: vec![HumanName {
            use_: Some("official".into()),
            family: Some(c.family.clone()),
            given: vec![c.given.clone()],
            prefix: c.prefix.iter().cloned().collect(),
        }],
        gender: c.gender.clone(),
    }
}

/// A clinician's SDS job role at `practice`, when the system records one.
pub fn practitioner_role(practice: &OdsCode, c: &BookClinician) -> Option<PractitionerRole> {
    let role = c.role.as_ref()?;
    Some(PractitionerRole {
        id: fhir_id(practice, &c.id),
        meta: Some(Meta::uk_core("PractitionerRole")),
        practitioner: Some(Reference::to("Practitioner", &c.id)),
        organization: Some(Reference::to("Organization", practice.as_str())),
        code: vec![CodeableConcept::coded(
            SDS_JOB_ROLE_SYSTEM,
            &role.code,
            &role.display,
        )],
    })
}

/// A site of `practice`, managed by the practice's Organization.
pub fn location(practice: &OdsCode, l: &BookLocation) -> Location {
    Location {
        id: fhir_id(practice, &l.id),
        meta: Some(Meta::uk_core("Location")),
        status: Some("active".into()),
        name: Some(l.name.clone()),
        address: Some(Address {
            line: l.lines.clone(),
            city: l.town.clone(),
            postal_code: l.postcode.clone(),
            ..Address::default()
        }),
        managing_organization: Some(Reference::to("Organization", practice.as_str())),
    }
}

/// An appointment of `practice`'s book, `meta.versionId` its native version.
pub fn appointment(
    practice: &OdsCode,
    a: &BookedAppointment,
    patient_display: Option<&str>,
) -> Appointment {
    let mut contained = Vec::new();
    let mut extension = Vec::new();
    if let Some(booker) = &a.booked_by {
        contained.push(Resource::Organization(Organization {
            id: BOOKING_ORGANISATION_ID.into(),
            identifier: vec![Identifier::ods(booker)],
            ..Organization::default()
        }));
        extension.push(Extension {
            url: BOOKING_ORGANISATION_EXTENSION.to_owned(),
            value_reference: Some(Reference {
                reference: Some(format!("#{BOOKING_ORGANISATION_ID}")),
                ..Reference::default()
            }),
            ..Extension::default()
        });
    }
    extension.extend(a.channel.map(channel_extension));
    let mut patient = Reference::to("Patient", &a.nhs_number.to_string());
    patient.display = patient_display.map(str::to_owned);
    let mut participant = vec![AppointmentParticipant {
        actor: patient,
        status: "accepted".into(),
    }];
    participant.extend(a.location.iter().map(|l| AppointmentParticipant {
        actor: Reference::to("Location", &fhir_id(practice, l)),
        status: "accepted".into(),
    }));
    participant.extend(a.clinician.iter().map(|c| AppointmentParticipant {
        actor: Reference::to("Practitioner", c),
        status: "accepted".into(),
    }));
    let mut meta = Meta::uk_core("Appointment");
    meta.version_id = Some(gp_fhir::ids::version_id(&a.version));
    Appointment {
        id: fhir_id(practice, &a.id),
        meta: Some(meta),
        contained,
        extension,
        identifier: a
            .identifier
            .iter()
            .map(|(system, value)| Identifier::new(system, value))
            .collect(),
        status: match a.status {
            AppointmentStatus::Booked => "booked",
            AppointmentStatus::Cancelled => "cancelled",
        }
        .into(),
        cancelation_reason: a.cancellation_reason.as_deref().map(text),
        service_type: a.slot_type.as_deref().map(text).into_iter().collect(),
        description: a.description.clone(),
        start: instant(a.start),
        end: instant(a.end),
        slot: a
            .slots
            .iter()
            .map(|s| Reference::to("Slot", &fhir_id(practice, s)))
            .collect(),
        created: instant(a.created),
        comment: a.comment.clone(),
        participant,
    }
}

/// Which free slots a search keeps.
#[derive(Debug, Clone, Default)]
pub struct SlotFilter {
    pub channel: Option<DeliveryChannel>,
    /// Matches the slot type, ignoring case.
    pub service_type: Option<String>,
    /// Slots starting before this are left out (they cannot be booked).
    pub not_before: Option<UtcDateTime>,
}

/// What a free-slot search includes besides the slots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotIncludes {
    pub schedule: bool,
    pub practitioner: bool,
    pub practitioner_role: bool,
    pub location: bool,
}

/// A practice's free slots as FHIR: the matches, and what the includes ask for of the
/// sessions, clinicians and sites they refer to (each once, in book order).
#[derive(Debug, Clone, Default)]
pub struct FreeSlots {
    pub slots: Vec<Resource>,
    pub included: Vec<Resource>,
}

/// The free, third-party-bookable slots of `book` that `filter` keeps, mapped.
pub fn free_slots(
    practice: &OdsCode,
    book: &AppointmentBook,
    filter: &SlotFilter,
    includes: SlotIncludes,
) -> FreeSlots {
    let kept: Vec<&BookSlot> = book
        .slots
        .iter()
        .filter(|s| s.status == SlotStatus::Free)
        .filter(|s| filter.channel.is_none_or(|c| s.channel == c))
        .filter(|s| {
            filter
                .service_type
                .as_deref()
                .is_none_or(|t| s.slot_type.eq_ignore_ascii_case(t))
        })
        .filter(|s| filter.not_before.is_none_or(|t| s.start >= t))
        .collect();
    let sessions: Vec<&BookSession> = book
        .sessions
        .iter()
        .filter(|session| kept.iter().any(|s| s.session == session.id))
        .collect();
    let clinician_of = |s: &BookSession| {
        s.clinician
            .as_deref()
            .and_then(|id| book.clinicians.iter().find(|c| c.id == id))
    };
    let mut included = Vec::new();
    if includes.schedule {
        included.extend(
            sessions
                .iter()
                .map(|s| Resource::Schedule(schedule(practice, s, clinician_of(s)))),
        );
    }
    let mut clinicians: Vec<&BookClinician> = Vec::new();
    for c in sessions.iter().filter_map(|s| clinician_of(s)) {
        if !clinicians.iter().any(|k| k.id == c.id) {
            clinicians.push(c);
        }
    }
    if includes.practitioner {
        included.extend(
            clinicians
                .iter()
                .map(|c| Resource::Practitioner(practitioner(c))),
        );
    }
    if includes.practitioner_role {
        included.extend(
            clinicians
                .iter()
                .filter_map(|c| practitioner_role(practice, c))
                .map(Resource::PractitionerRole),
        );
    }
    if includes.location {
        included.extend(
            book.locations
                .iter()
                .filter(|l| sessions.iter().any(|s| s.location == l.id))
                .map(|l| Resource::Location(location(practice, l))),
        );
    }
    FreeSlots {
        slots: kept
            .into_iter()
            .map(|s| Resource::Slot(slot(practice, s)))
            .collect(),
        included,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: u8, hour: u8, minute: u8) -> UtcDateTime {
        UtcDateTime {
            year: 2026,
            month: 6,
            day,
            hour,
            minute,
            second: 0,
        }
    }

    fn book() -> AppointmentBook {
        let slot = |id: &str, status, channel| BookSlot {
            id: id.into(),
            session: "S1".into(),
            start: at(15, 8, 0),
            end: at(15, 8, 10),
            slot_type: "GP consultation".into(),
            channel,
            status,
        };
        AppointmentBook {
            slots: vec![
                slot("1", SlotStatus::Free, DeliveryChannel::InPerson),
                slot("2", SlotStatus::Busy, DeliveryChannel::InPerson),
                slot("3", SlotStatus::Unavailable, DeliveryChannel::InPerson),
                slot("4", SlotStatus::Free, DeliveryChannel::Telephone),
            ],
            sessions: vec![BookSession {
                id: "S1".into(),
                name: "Morning surgery".into(),
                clinician: Some("G1".into()),
                location: "L1".into(),
                service: Some("GP consultation".into()),
                start: at(15, 8, 0),
                end: at(15, 12, 0),
            }],
            clinicians: vec![BookClinician {
                id: "G1".into(),
                prefix: Some("Dr".into()),
                given: "Amir".into(),
                family: "Khan".into(),
                gender: Some("male".into()),
                sds_user_id: None,
                role: Some(super::super::JobRole {
                    code: "R0260".into(),
                    display: "General Medical Practitioner".into(),
                }),
            }],
            locations: vec![BookLocation {
                id: "L1".into(),
                name: "Main surgery".into(),
                lines: vec!["1 High Street".into()],
                town: Some("Leeds".into()),
                postcode: Some("LS1 1AA".into()),
            }],
        }
    }

    #[test]
    fn ids_carry_their_practice() {
        let ods = OdsCode::parse("B82617").unwrap();
        assert_eq!(fhir_id(&ods, "S-1.2"), "B82617-S-1.2");
        let (p, native) = split_id("B82617-S-1.2").unwrap();
        assert_eq!((p.as_str(), native), ("B82617", "S-1.2"));
        assert!(split_id("B82617-").is_none());
        assert!(split_id("nohyphen").is_none());
    }

    #[test]
    fn only_free_bookable_slots_are_offered_with_what_they_refer_to() {
        let ods = OdsCode::parse("B82617").unwrap();
        let all = SlotIncludes {
            schedule: true,
            practitioner: true,
            practitioner_role: true,
            location: true,
        };
        let found = free_slots(&ods, &book(), &SlotFilter::default(), all);
        let ids: Vec<&str> = found.slots.iter().map(Resource::id).collect();
        assert_eq!(ids, ["B82617-1", "B82617-4"]);
        let included: Vec<String> = found
            .included
            .iter()
            .map(|r| format!("{}/{}", r.resource_type(), r.id()))
            .collect();
        assert_eq!(
            included,
            [
                "Schedule/B82617-S1",
                "Practitioner/G1",
                "PractitionerRole/B82617-G1",
                "Location/B82617-L1"
            ]
        );
        let phone = SlotFilter {
            channel: Some(DeliveryChannel::Telephone),
            ..SlotFilter::default()
        };
        let found = free_slots(&ods, &book(), &phone, SlotIncludes::default());
        assert_eq!(found.slots.len(), 1);
        assert!(found.included.is_empty());
        let json = String::from_utf8(found.slots[0].to_json()).unwrap();
        assert!(json.contains(r#""valueCode":"Telephone""#), "{json}");
        assert!(
            json.contains(r#""start":"2026-06-15T09:00:00+01:00""#),
            "{json}"
        );
    }
}
