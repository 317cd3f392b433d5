#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The EMIS adapter's appointment book against the real EMIS simulator on 127.0.0.1:0.
//! Expectations come from the simulator's store (gp_sim), never from the adapter's own
//! mapping, so a wrong time conversion or status mapping cannot cancel itself out.

use std::sync::Arc;

use gp_adapter::appointments::{
    AppointmentChange, AppointmentStatus, DeliveryChannel, NewAppointment, SlotStatus,
};
use gp_adapter::harness::sim;
use gp_adapter::{
    Adapter, AdapterError, AppointmentRequest, BookRequest, CallContext, ChangeAppointmentRequest,
    PatientAppointmentsRequest, PractitionerRequest, SlotSearchRequest, UtcDateTime,
};
use gp_adapter_emis::appointments::{local_text, parse_local};
use gp_adapter_emis::{EmisAdapter, EmisConfig};
use gp_fhir::{NhsNumber, OdsCode};
use gp_sim::appointments::{self as book, Channel, Instant, Slot, SlotState};
use gp_sim::{Fault, SimHandle, SimStore, SystemKind};

const DAY: Instant = 86_400;

struct Setup {
    store: SimStore,
    sim: SimHandle,
    adapter: Arc<EmisAdapter>,
    ods: OdsCode,
    nhs: NhsNumber,
}

async fn setup() -> Setup {
    let population = sim::population();
    let (nhs, ods) = sim::fixture(&population, SystemKind::Emis).patients[0].clone();
    let store = SimStore::new(population);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = gp_sim::start(SystemKind::Emis, store.clone(), listener)
        .await
        .unwrap();
    let adapter = Arc::new(EmisAdapter::new(EmisConfig::new(sim.base_url())).unwrap());
    Setup {
        store,
        sim,
        adapter,
        ods,
        nhs,
    }
}

fn ctx() -> CallContext {
    CallContext::new("appointments-test")
}

/// A store instant as the neutral UTC date-time, by the simulator's own calendar.
fn utc(t: Instant) -> UtcDateTime {
    let d = book::utc_date_time(t);
    let (hour, minute, second) = d.time.unwrap();
    UtcDateTime {
        year: d.year,
        month: d.month.unwrap(),
        day: d.day.unwrap(),
        hour,
        minute,
        second,
    }
}

fn supplier() -> OdsCode {
    OdsCode::parse("X26").unwrap()
}

impl Setup {
    /// Every slot of the practice's book, as the store holds it.
    fn slots(&self) -> Vec<Slot> {
        self.store
            .with_book(SystemKind::Emis, self.ods.as_str(), |_, b| b.slots.clone())
            .unwrap()
    }

    /// The `n`th free slot starting more than an hour from now.
    fn free_slot(&self, n: usize) -> Slot {
        let now = book::now();
        self.slots()
            .into_iter()
            .filter(|s| s.state == SlotState::Free && s.start > now + 3600)
            .nth(n)
            .expect("a future free slot")
    }

    fn slot_state(&self, id: &str) -> SlotState {
        self.store
            .with_book(SystemKind::Emis, self.ods.as_str(), |_, b| {
                b.slot(id).unwrap().state
            })
            .unwrap()
    }

    fn booking(&self, key: &str, slots: &[&Slot]) -> BookRequest {
        BookRequest {
            practice: self.ods.clone(),
            appointment: NewAppointment {
                key: key.to_owned(),
                identifier: Some(("https://supplier.example/bookings".into(), key.to_owned())),
                nhs_number: self.nhs,
                slots: slots.iter().map(|s| s.id.clone()).collect(),
                description: Some("Sore throat for a week".into()),
                comment: Some("Prefers a morning call back".into()),
                booked_by: supplier(),
                booked_by_name: "Example Booking Ltd".into(),
            },
            context: ctx(),
        }
    }

    fn change(
        &self,
        id: &str,
        version: &str,
        change: AppointmentChange,
    ) -> ChangeAppointmentRequest {
        ChangeAppointmentRequest {
            practice: self.ods.clone(),
            id: id.to_owned(),
            expected_version: version.to_owned(),
            change,
            context: ctx(),
        }
    }

    fn slot_search(&self, start: Instant, end: Instant) -> SlotSearchRequest {
        SlotSearchRequest {
            practice: self.ods.clone(),
            start: utc(start),
            end: utc(end),
            context: ctx(),
        }
    }
}

fn amend(description: &str) -> AppointmentChange {
    AppointmentChange::Amend {
        description: Some(description.into()),
        comment: None,
    }
}

fn cancel() -> AppointmentChange {
    AppointmentChange::Cancel {
        reason: "Patient no longer needs it".into(),
    }
}

#[tokio::test]
async fn slot_search_answers_the_book_at_the_stores_instants() {
    let s = setup().await;
    let (from, to) = (book::now() - DAY, book::now() + 14 * DAY);
    let answer = s
        .adapter
        .search_slots(&s.slot_search(from, to))
        .await
        .unwrap();
    let view = s
        .store
        .book_view(SystemKind::Emis, s.ods.as_str(), from, to)
        .unwrap();
    let practice = s.store.practice(s.ods.as_str()).unwrap();

    assert_eq!(answer.slots.len(), view.slots.len());
    for (got, want) in answer.slots.iter().zip(&view.slots) {
        assert_eq!(got.id, want.id);
        assert_eq!(
            (got.start, got.end),
            (utc(want.start), utc(want.end)),
            "{}",
            want.id
        );
        assert_eq!(got.session, want.session);
        assert_eq!(got.slot_type, want.slot_type);
        let channel = match want.channel {
            Channel::InPerson => DeliveryChannel::InPerson,
            Channel::Telephone => DeliveryChannel::Telephone,
            Channel::Video => DeliveryChannel::Video,
        };
        assert_eq!(got.channel, channel);
        let status = match want.state {
            SlotState::Free => SlotStatus::Free,
            SlotState::Booked => SlotStatus::Busy,
            SlotState::Embargoed | SlotState::PracticeOnly => SlotStatus::Unavailable,
        };
        assert_eq!(got.status, status, "{}", want.id);
    }
    for status in [SlotStatus::Free, SlotStatus::Busy, SlotStatus::Unavailable] {
        assert!(
            answer.slots.iter().any(|x| x.status == status),
            "{status:?}"
        );
    }
    // Every reference resolves, and nothing unreferenced is answered.
    for slot in &answer.slots {
        assert!(answer.sessions.iter().any(|x| x.id == slot.session));
    }
    assert_eq!(answer.sessions.len(), view.sessions.len());
    for session in &answer.sessions {
        let want = view.sessions.iter().find(|x| x.id == session.id).unwrap();
        assert_eq!(
            (session.start, session.end),
            (utc(want.start), utc(want.end))
        );
        assert_eq!(session.location, want.site);
        assert_eq!(session.clinician.as_deref(), Some(want.clinician.as_str()));
        assert!(answer.locations.iter().any(|l| l.id == session.location));
        assert!(
            answer
                .clinicians
                .iter()
                .any(|c| Some(&c.id) == session.clinician.as_ref())
        );
    }
    for location in &answer.locations {
        let site = view.sites.iter().find(|x| x.id == location.id).unwrap();
        assert_eq!(location.name, site.name);
        assert_eq!(location.lines, site.lines);
        assert_eq!(location.postcode.as_deref(), Some(site.postcode.as_str()));
    }
    for clinician in &answer.clinicians {
        let c = practice.clinician(&clinician.id).unwrap();
        let (code, display) = book::job_role(&practice, c);
        let role = clinician.role.as_ref().unwrap();
        assert_eq!((role.code.as_str(), role.display.as_str()), (code, display));
        assert_eq!(clinician.family, c.family);
        assert!(clinician.gender.is_some());
        // The same id the staff read answers for them.
        let person = s
            .adapter
            .read_practitioner(&PractitionerRequest {
                practice: s.ods.clone(),
                id: clinician.id.clone(),
                context: ctx(),
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(person.id, clinician.id);
    }
    for id in answer
        .slots
        .iter()
        .map(|x| &x.id)
        .chain(answer.sessions.iter().map(|x| &x.id))
        .chain(answer.locations.iter().map(|x| &x.id))
        .chain(answer.clinicians.iter().map(|x| &x.id))
    {
        assert!(
            id.len() <= 56
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'),
            "{id}"
        );
    }
}

#[tokio::test]
async fn slot_search_cuts_the_range_to_the_instant() {
    let s = setup().await;
    let slot = s.free_slot(0);
    // From the slot's start to one second later: exactly that slot.
    let answer = s
        .adapter
        .search_slots(&s.slot_search(slot.start, slot.start + 1))
        .await
        .unwrap();
    // Exactly the slots starting at that instant (sessions of several clinicians can open
    // at once), each with its session.
    let mut ids: Vec<&str> = answer.slots.iter().map(|x| x.id.as_str()).collect();
    ids.sort_unstable();
    let mut want: Vec<String> = s
        .store
        .with_book(SystemKind::Emis, s.ods.as_str(), |_, b| {
            b.slots
                .iter()
                .filter(|x| x.start == slot.start)
                .map(|x| x.id.clone())
                .collect()
        })
        .unwrap();
    want.sort_unstable();
    assert_eq!(ids, want);
    assert!(ids.contains(&slot.id.as_str()));
    assert_eq!(answer.sessions.len(), want.len());
    // Ending at its start: nothing.
    let none = s
        .adapter
        .search_slots(&s.slot_search(slot.start - 60, slot.start))
        .await
        .unwrap();
    assert!(none.slots.iter().all(|x| x.id != slot.id));
}

#[tokio::test]
async fn book_read_list_amend_cancel() {
    let s = setup().await;
    let slot = s.free_slot(0);
    let booked = s
        .adapter
        .book_appointment(&s.booking("key-lifecycle", &[&slot]))
        .await
        .unwrap();
    assert!(booked.created);
    let a = booked.appointment;
    assert_eq!(a.status, AppointmentStatus::Booked);
    assert_eq!(a.slots, std::slice::from_ref(&slot.id));
    assert_eq!((a.start, a.end), (utc(slot.start), utc(slot.end)));
    assert_eq!(a.booked_by, Some(supplier()));
    assert_eq!(
        a.identifier,
        Some((
            "https://supplier.example/bookings".into(),
            "key-lifecycle".into()
        ))
    );
    assert_eq!(a.description.as_deref(), Some("Sore throat for a week"));
    assert_eq!(a.slot_type.as_deref(), Some(slot.slot_type.as_str()));
    assert_eq!(s.slot_state(&slot.id), SlotState::Booked);
    let stored = s
        .store
        .appointment(SystemKind::Emis, s.ods.as_str(), &a.id)
        .unwrap()
        .unwrap();
    assert_eq!(a.created, utc(stored.created));
    assert_eq!(a.version, stored.version.to_string());

    let read = s
        .adapter
        .read_appointment(&AppointmentRequest {
            practice: s.ods.clone(),
            id: a.id.clone(),
            context: ctx(),
        })
        .await
        .unwrap();
    assert_eq!(read.as_ref(), Some(&a));

    let listed = s
        .adapter
        .search_appointments(&PatientAppointmentsRequest {
            practice: s.ods.clone(),
            nhs_number: s.nhs,
            start: utc(book::now()),
            end: utc(book::now() + 30 * DAY),
            context: ctx(),
        })
        .await
        .unwrap();
    assert!(listed.contains(&a), "{listed:?}");
    assert!(listed.windows(2).all(|w| w[0].start <= w[1].start));

    let amended = s
        .adapter
        .change_appointment(&s.change(&a.id, &a.version, amend("Sore throat, now a cough")))
        .await
        .unwrap();
    assert_ne!(amended.version, a.version);
    assert_eq!(
        amended.description.as_deref(),
        Some("Sore throat, now a cough")
    );
    assert_eq!(amended.comment, None);

    let stale = s
        .adapter
        .change_appointment(&s.change(&a.id, &a.version, amend("Too late")))
        .await
        .unwrap_err();
    assert!(
        matches!(stale, AdapterError::VersionConflict { .. }),
        "{stale:?}"
    );

    let cancelled = s
        .adapter
        .change_appointment(&s.change(&a.id, &amended.version, cancel()))
        .await
        .unwrap();
    assert_eq!(cancelled.status, AppointmentStatus::Cancelled);
    assert_eq!(
        cancelled.cancellation_reason.as_deref(),
        Some("Patient no longer needs it")
    );
    let again = s
        .adapter
        .search_slots(&s.slot_search(slot.start, slot.end))
        .await
        .unwrap();
    let freed = again.slots.iter().find(|x| x.id == slot.id).unwrap();
    assert_eq!(freed.status, SlotStatus::Free);

    let refused = s
        .adapter
        .change_appointment(&s.change(&a.id, &cancelled.version, amend("After the cancel")))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, AdapterError::Unprocessable { detail, .. } if detail.contains("APPOINTMENT_CANCELLED")),
        "{refused:?}"
    );
    // A cancelled appointment is still read and listed.
    let read = s
        .adapter
        .read_appointment(&AppointmentRequest {
            practice: s.ods.clone(),
            id: a.id.clone(),
            context: ctx(),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.status, AppointmentStatus::Cancelled);
}

#[tokio::test]
async fn the_same_key_books_once() {
    let s = setup().await;
    let slot = s.free_slot(1);
    let first = s
        .adapter
        .book_appointment(&s.booking("key-twice", &[&slot]))
        .await
        .unwrap();
    let second = s
        .adapter
        .book_appointment(&s.booking("key-twice", &[&slot]))
        .await
        .unwrap();
    assert!(first.created);
    assert!(!second.created);
    assert_eq!(second.appointment, first.appointment);
    // The same key for another patient answers nothing about the first one.
    let other = sim::fixture(&sim::population(), SystemKind::Emis).patients[1].0;
    let mut reused = s.booking("key-twice", &[&slot]);
    reused.appointment.nhs_number = other;
    let e = s.adapter.book_appointment(&reused).await.unwrap_err();
    assert!(
        matches!(&e, AdapterError::Unprocessable { detail, .. } if detail.contains("another patient")),
        "{e:?}"
    );
    let held = s
        .store
        .appointments_of(
            SystemKind::Emis,
            s.ods.as_str(),
            s.nhs.as_string().as_str(),
            slot.start,
            slot.end,
        )
        .unwrap();
    assert_eq!(
        held.iter().filter(|a| a.slots == [slot.id.clone()]).count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_racing_bookings_of_one_slot_book_it_once() {
    let s = setup().await;
    let slot = s.free_slot(2);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let adapter = s.adapter.clone();
        let req = s.booking(&format!("race-{i}"), &[&slot]);
        tasks.spawn(async move { adapter.book_appointment(&req).await });
    }
    let (mut booked, mut taken) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(b) => {
                assert!(b.created);
                booked += 1;
            }
            Err(AdapterError::SlotUnavailable { .. }) => taken += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((booked, taken), (1, 19));
}

#[tokio::test]
async fn an_appointment_booked_at_the_practice_is_listed_and_cancellable() {
    let s = setup().await;
    let now = book::now();
    let at_practice = s
        .store
        .practice_booking(SystemKind::Emis, s.ods.as_str(), now)
        .expect("an appointment booked at the practice for a registered patient");
    let nhs = NhsNumber::parse(&at_practice.nhs).unwrap();
    let listed = s
        .adapter
        .search_appointments(&PatientAppointmentsRequest {
            practice: s.ods.clone(),
            nhs_number: nhs,
            start: utc(at_practice.start),
            end: utc(at_practice.end),
            context: ctx(),
        })
        .await
        .unwrap();
    let found = listed.iter().find(|a| a.id == at_practice.id).unwrap();
    assert_eq!(found.booked_by, None);
    assert_eq!(found.identifier, None);
    assert_eq!(found.start, utc(at_practice.start));
    let cancelled = s
        .adapter
        .change_appointment(&s.change(&found.id, &found.version, cancel()))
        .await
        .unwrap();
    assert_eq!(cancelled.status, AppointmentStatus::Cancelled);
    assert_eq!(s.slot_state(&at_practice.slots[0]), SlotState::Free);
}

#[tokio::test]
async fn slots_kept_from_suppliers_past_or_apart_are_unprocessable() {
    let s = setup().await;
    let now = book::now();
    let slots = s.slots();
    let unprocessable = |e: AdapterError, code: &str| {
        assert!(
            matches!(&e, AdapterError::Unprocessable { detail, .. } if detail.contains(code)),
            "{code}: {e:?}"
        );
    };
    for (state, key) in [
        (SlotState::Embargoed, "kept-1"),
        (SlotState::PracticeOnly, "kept-2"),
    ] {
        let kept = slots
            .iter()
            .find(|x| x.state == state && x.start > now)
            .unwrap();
        let e = s
            .adapter
            .book_appointment(&s.booking(key, &[kept]))
            .await
            .unwrap_err();
        unprocessable(e, "SLOT_NOT_BOOKABLE");
        assert_eq!(s.slot_state(&kept.id), state);
    }
    let past = slots
        .iter()
        .find(|x| x.state == SlotState::Free && x.start < now)
        .unwrap();
    let e = s
        .adapter
        .book_appointment(&s.booking("past-1", &[past]))
        .await
        .unwrap_err();
    unprocessable(e, "SLOT_IN_PAST");
    let (a, b) = (s.free_slot(3), s.free_slot(4));
    let apart = if a.end == b.start { s.free_slot(10) } else { b };
    let e = s
        .adapter
        .book_appointment(&s.booking("apart-1", &[&a, &apart]))
        .await
        .unwrap_err();
    unprocessable(e, "SLOTS_NOT_ADJACENT");
    let mut long = s.booking("long-1", &[&a]);
    long.appointment.description = Some("x".repeat(101));
    let e = s.adapter.book_appointment(&long).await.unwrap_err();
    unprocessable(e, "description");
    assert_eq!(s.slot_state(&a.id), SlotState::Free);
}

#[tokio::test]
async fn two_adjacent_slots_book_as_one_appointment() {
    let s = setup().await;
    let now = book::now();
    let slots = s.slots();
    let pair = slots
        .windows(2)
        .find(|w| {
            w.iter()
                .all(|x| x.state == SlotState::Free && x.start > now + 3600)
                && w[0].end == w[1].start
                && w[0].session == w[1].session
                && w[0].channel == w[1].channel
                && w[0].slot_type == w[1].slot_type
        })
        .expect("two adjacent free slots");
    let booked = s
        .adapter
        .book_appointment(&s.booking("pair-1", &[&pair[0], &pair[1]]))
        .await
        .unwrap();
    let a = booked.appointment;
    assert_eq!(a.slots, [pair[0].id.clone(), pair[1].id.clone()]);
    assert_eq!((a.start, a.end), (utc(pair[0].start), utc(pair[1].end)));
}

#[tokio::test]
async fn unknown_things_answer_as_the_contract_says() {
    let s = setup().await;
    let nowhere = OdsCode::parse("Y99999").unwrap();
    let mut search = s.slot_search(book::now(), book::now() + DAY);
    search.practice = nowhere.clone();
    assert!(matches!(
        s.adapter.search_slots(&search).await.unwrap_err(),
        AdapterError::NotFound { .. }
    ));
    for id in [
        "00000000-0000-4000-8000-000000000000",
        "not_an_id",
        "..",
        "a/b",
    ] {
        let read = s
            .adapter
            .read_appointment(&AppointmentRequest {
                practice: s.ods.clone(),
                id: id.into(),
                context: ctx(),
            })
            .await
            .unwrap();
        assert_eq!(read, None, "{id}");
        let change = s
            .adapter
            .change_appointment(&s.change(id, "1", cancel()))
            .await
            .unwrap_err();
        assert!(
            matches!(change, AdapterError::NotFound { .. }),
            "{id}: {change:?}"
        );
    }
    let unknown = sim::fixture(&sim::population(), SystemKind::Emis).unknown.0;
    let mut req = s.booking("unknown-1", &[&s.free_slot(5)]);
    req.appointment.nhs_number = unknown;
    assert_eq!(
        s.adapter.book_appointment(&req).await.unwrap_err(),
        AdapterError::PatientNotFound
    );
    let list = s
        .adapter
        .search_appointments(&PatientAppointmentsRequest {
            practice: s.ods.clone(),
            nhs_number: unknown,
            start: utc(book::now()),
            end: utc(book::now() + DAY),
            context: ctx(),
        })
        .await
        .unwrap_err();
    assert_eq!(list, AdapterError::PatientNotFound);
    let mut ghost = s.booking("ghost-1", &[&s.free_slot(5)]);
    ghost.appointment.slots = vec!["00000000-0000-4000-8000-000000000000".into()];
    assert!(matches!(
        s.adapter.book_appointment(&ghost).await.unwrap_err(),
        AdapterError::Unprocessable { .. }
    ));
}

#[tokio::test]
async fn faults_map_as_for_the_record_reads() {
    let s = setup().await;
    let slot = s.free_slot(6);
    let booked = s
        .adapter
        .book_appointment(&s.booking("fault-1", &[&slot]))
        .await
        .unwrap()
        .appointment;
    let read = AppointmentRequest {
        practice: s.ods.clone(),
        id: booked.id.clone(),
        context: ctx(),
    };
    let search = s.slot_search(book::now(), book::now() + 3 * DAY);
    for (fault, invalid) in [
        (Fault::Garbage, true),
        (Fault::Truncated, true),
        (Fault::MisEncoded, true),
        (Fault::Status(503), false),
    ] {
        s.sim.set_fault(fault);
        let e = s.adapter.search_slots(&search).await.unwrap_err();
        assert_eq!(
            matches!(e, AdapterError::InvalidNativeData { .. }),
            invalid,
            "{fault:?}: {e:?}"
        );
        let e = s.adapter.read_appointment(&read).await.unwrap_err();
        assert_eq!(
            matches!(e, AdapterError::InvalidNativeData { .. }),
            invalid,
            "{fault:?}: {e:?}"
        );
        if !invalid {
            assert!(e.is_transient(), "{e:?}");
        }
    }
    s.sim.set_fault(Fault::MissingNhsNumber);
    let e = s.adapter.read_appointment(&read).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "EMIS Web returned data that cannot be read: Appointment/NhsNumber is missing"
    );
    s.sim.set_fault(Fault::None);
    assert!(s.adapter.read_appointment(&read).await.unwrap().is_some());
}

#[test]
fn emis_local_times_convert_in_summer_and_winter() {
    let at = |year, month, day, hour, minute| UtcDateTime {
        year,
        month,
        day,
        hour,
        minute,
        second: 0,
    };
    // BST: 10:15 on the wall is 09:15 UTC.
    assert_eq!(
        parse_local("14/07/2026 10:15:00"),
        Some(at(2026, 7, 14, 9, 15))
    );
    assert_eq!(local_text(at(2026, 7, 14, 9, 15)), "14/07/2026 10:15:00");
    // GMT: the wall clock is UTC.
    assert_eq!(
        parse_local("12/01/2027 10:15:00"),
        Some(at(2027, 1, 12, 10, 15))
    );
    assert_eq!(local_text(at(2027, 1, 12, 10, 15)), "12/01/2027 10:15:00");
    // The day the clocks go back (25 October 2026): 00:30 UTC is 01:30 BST, 01:30 UTC
    // is 01:30 GMT; the repeated local hour reads as its first (BST) occurrence.
    assert_eq!(local_text(at(2026, 10, 25, 0, 30)), "25/10/2026 01:30:00");
    assert_eq!(local_text(at(2026, 10, 25, 1, 30)), "25/10/2026 01:30:00");
    assert_eq!(
        parse_local("25/10/2026 01:30:00"),
        Some(at(2026, 10, 25, 0, 30))
    );
}
