#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The appointment book through the adapter, against the real Vision simulator on
//! 127.0.0.1:0: slots, booking, reading, listing, amending and cancelling, Vision's SEQ
//! concurrency and its refusals. Expectations come from the simulator's store (the
//! practice's book as held), never from the adapter's own mapping.

use std::sync::Arc;

use gp_adapter::appointments::{
    AppointmentChange, AppointmentStatus, DeliveryChannel, NewAppointment, SlotStatus,
};
use gp_adapter::harness::sim;
use gp_adapter::{
    Adapter, AdapterError, AppointmentRequest, BookRequest, CallContext, ChangeAppointmentRequest,
    PatientAppointmentsRequest, SlotSearchRequest, UtcDateTime,
};
use gp_adapter_vision::{VisionAdapter, VisionConfig};
use gp_fhir::{NhsNumber, OdsCode};
use gp_sim::appointments::{self as book, BookView, Instant, NewBooking, Slot, SlotState};
use gp_sim::{Fault, SimHandle, SimStore, SystemKind};

struct Practice {
    sim: SimHandle,
    store: SimStore,
    adapter: Arc<VisionAdapter>,
    ods: OdsCode,
    /// Patients registered there.
    patients: Vec<NhsNumber>,
}

async fn practice() -> Practice {
    let population = sim::population();
    let ods = population
        .practices
        .iter()
        .find(|p| p.system == SystemKind::Vision)
        .expect("a Vision practice")
        .ods
        .clone();
    let patients = population
        .patients
        .iter()
        .filter(|p| p.practice == ods)
        .take(3)
        .map(|p| NhsNumber::parse(&p.nhs_number).unwrap())
        .collect();
    let store = SimStore::new(population);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = gp_sim::start(SystemKind::Vision, store.clone(), listener)
        .await
        .unwrap();
    let adapter = Arc::new(VisionAdapter::new(VisionConfig::new(sim.base_url())).unwrap());
    Practice {
        sim,
        store,
        adapter,
        ods: OdsCode::parse(&ods).unwrap(),
        patients,
    }
}

fn ctx() -> CallContext {
    CallContext::new("appointments-test")
}

/// A store instant as the UTC date-time the adapter must answer (the store's own
/// conversion, independent of the adapter's local-time reading).
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

impl Practice {
    fn view(&self, from: Instant, to: Instant) -> BookView {
        self.store
            .book_view(SystemKind::Vision, self.ods.as_str(), from, to)
            .unwrap()
    }

    /// Future slots in `state` (from a day ahead, so none starts while the test runs).
    fn future(&self, state: SlotState) -> Vec<Slot> {
        let now = book::now();
        self.view(now + 86_400, now + 27 * 86_400)
            .slots
            .into_iter()
            .filter(|s| s.state == state)
            .collect()
    }

    fn slot(&self, id: &str) -> Slot {
        self.store
            .with_book(SystemKind::Vision, self.ods.as_str(), |_, b| {
                b.slot(id).cloned()
            })
            .unwrap()
            .unwrap()
    }

    fn booking(&self, key: &str, slots: &[&Slot]) -> BookRequest {
        BookRequest {
            practice: self.ods.clone(),
            appointment: NewAppointment {
                key: key.to_owned(),
                identifier: Some(("https://supplier.example/booking".into(), key.to_owned())),
                nhs_number: self.patients[0],
                slots: slots.iter().map(|s| s.number.to_string()).collect(),
                description: Some("Review of asthma".into()),
                comment: None,
                booked_by: OdsCode::parse("X26").unwrap(),
                booked_by_name: "Demo Booking Ltd".into(),
            },
            context: ctx(),
        }
    }

    async fn search(&self, from: Instant, to: Instant) -> gp_adapter::AppointmentBook {
        self.adapter
            .search_slots(&SlotSearchRequest {
                practice: self.ods.clone(),
                start: utc(from),
                end: utc(to),
                context: ctx(),
            })
            .await
            .unwrap()
    }

    async fn change(
        &self,
        id: &str,
        version: &str,
        change: AppointmentChange,
    ) -> Result<gp_adapter::BookedAppointment, AdapterError> {
        self.adapter
            .change_appointment(&ChangeAppointmentRequest {
                practice: self.ods.clone(),
                id: id.to_owned(),
                expected_version: version.to_owned(),
                change,
                context: ctx(),
            })
            .await
    }

    async fn list(&self, nhs: NhsNumber) -> Vec<gp_adapter::BookedAppointment> {
        let now = book::now();
        self.adapter
            .search_appointments(&PatientAppointmentsRequest {
                practice: self.ods.clone(),
                nhs_number: nhs,
                start: utc(now - 8 * 86_400),
                end: utc(now + 29 * 86_400),
                context: ctx(),
            })
            .await
            .unwrap()
    }
}

fn amend(description: &str) -> AppointmentChange {
    AppointmentChange::Amend {
        description: Some(description.to_owned()),
        comment: Some("Patient prefers mornings".into()),
    }
}

fn cancel() -> AppointmentChange {
    AppointmentChange::Cancel {
        reason: "Patient no longer needs it".into(),
    }
}

#[tokio::test]
async fn slots_come_in_every_state_with_their_sessions_clinicians_and_sites() {
    let p = practice().await;
    let now = book::now();
    let (from, to) = (now + 86_400, now + 8 * 86_400);
    let got = p.search(from, to).await;
    let held = p.view(from, to);
    assert_eq!(got.slots.len(), held.slots.len());
    for (slot, want) in got.slots.iter().zip(&held.slots) {
        assert_eq!(slot.id, want.number.to_string());
        assert_eq!((slot.start, slot.end), (utc(want.start), utc(want.end)));
        assert_eq!(slot.slot_type, want.slot_type);
        let status = match want.state {
            SlotState::Free => SlotStatus::Free,
            SlotState::Booked => SlotStatus::Busy,
            SlotState::Embargoed | SlotState::PracticeOnly => SlotStatus::Unavailable,
        };
        assert_eq!(slot.status, status, "slot {}", slot.id);
        assert_eq!(slot.channel.code(), want.channel.code());
        let session = got
            .sessions
            .iter()
            .find(|s| s.id == slot.session)
            .expect("every slot's session is answered");
        let held_session = held.sessions.iter().find(|s| s.id == want.session).unwrap();
        assert_eq!(session.id, held_session.number.to_string());
        assert_eq!(
            (session.start, session.end),
            (utc(held_session.start), utc(held_session.end))
        );
        let clinician = got
            .clinicians
            .iter()
            .find(|c| Some(&c.id) == session.clinician.as_ref())
            .expect("every session's clinician is answered");
        assert_eq!(clinician.id, held_session.clinician.to_ascii_lowercase());
        let practice = p.store.practice(p.ods.as_str()).unwrap();
        let person = practice.clinician(&held_session.clinician).unwrap();
        let (code, display) = book::job_role(&practice, person);
        let role = clinician.role.as_ref().expect("a job role");
        assert_eq!((role.code.as_str(), role.display.as_str()), (code, display));
        assert_eq!(clinician.family, person.family);
        assert!(clinician.gender.is_some());
        let site = got
            .locations
            .iter()
            .find(|l| l.id == session.location)
            .expect("every session's site is answered");
        let held_site = held
            .sites
            .iter()
            .find(|s| s.id == held_session.site)
            .unwrap();
        assert_eq!(site.name, held_site.name);
        assert_eq!(site.postcode.as_deref(), Some(held_site.postcode.as_str()));
    }
    for status in [SlotStatus::Free, SlotStatus::Busy, SlotStatus::Unavailable] {
        assert!(
            got.slots.iter().any(|s| s.status == status),
            "no {status:?} slot"
        );
    }
    assert!(
        got.slots
            .iter()
            .any(|s| s.channel == DeliveryChannel::Telephone)
    );
    // Nothing outside the range, nothing unreferenced.
    assert!(
        got.sessions
            .iter()
            .all(|x| got.slots.iter().any(|s| s.session == x.id))
    );
}

#[tokio::test]
async fn an_appointment_is_booked_read_listed_amended_and_cancelled() {
    let p = practice().await;
    let slot = p.future(SlotState::Free)[0].clone();
    let mut req = p.booking("life-1", &[&slot]);
    req.appointment.comment = Some("Wheelchair access | ramp, please\r\nSecond line".into());
    let booked = p.adapter.book_appointment(&req).await.unwrap();
    assert!(booked.created);
    let a = booked.appointment;
    assert_eq!(a.status, AppointmentStatus::Booked);
    assert_eq!(a.slots, [slot.number.to_string()]);
    assert_eq!((a.start, a.end), (utc(slot.start), utc(slot.end)));
    assert_eq!(a.booked_by.as_ref().map(OdsCode::as_str), Some("X26"));
    assert_eq!(
        a.identifier,
        Some(("https://supplier.example/booking".into(), "life-1".into()))
    );
    assert_eq!(
        a.comment, req.appointment.comment,
        "| and line breaks survive"
    );
    assert_eq!(a.channel.map(|c| c.code()), Some(slot.channel.code()));
    assert!(a.id.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(p.slot(&slot.id).state, SlotState::Booked);

    let read = p
        .adapter
        .read_appointment(&AppointmentRequest {
            practice: p.ods.clone(),
            id: a.id.clone(),
            context: ctx(),
        })
        .await
        .unwrap();
    assert_eq!(read.as_ref(), Some(&a));
    assert!(p.list(p.patients[0]).await.contains(&a));

    let amended = p
        .change(&a.id, &a.version, amend("Asthma | review"))
        .await
        .unwrap();
    assert_eq!(amended.description.as_deref(), Some("Asthma | review"));
    assert_ne!(amended.version, a.version);
    let stale = p.change(&a.id, &a.version, amend("Too late")).await;
    assert!(
        matches!(stale, Err(AdapterError::VersionConflict { .. })),
        "{stale:?}"
    );

    let cancelled = p.change(&a.id, &amended.version, cancel()).await.unwrap();
    assert_eq!(cancelled.status, AppointmentStatus::Cancelled);
    assert_eq!(
        cancelled.cancellation_reason.as_deref(),
        Some("Patient no longer needs it")
    );
    let now = book::now();
    let slots = p.search(slot.start - 60, slot.start + 60).await;
    let freed = slots.slots.iter().find(|s| s.id == slot.number.to_string());
    assert_eq!(freed.map(|s| s.status), Some(SlotStatus::Free));
    assert!(slot.start > now);

    let after = p.change(&a.id, &cancelled.version, amend("Again")).await;
    assert!(
        matches!(after, Err(AdapterError::Unprocessable { .. })),
        "{after:?}"
    );
    let listed = p.list(p.patients[0]).await;
    let still = listed
        .iter()
        .find(|x| x.id == a.id)
        .expect("cancelled ones are listed");
    assert_eq!(still.status, AppointmentStatus::Cancelled);
}

#[tokio::test]
async fn the_same_key_books_once() {
    let p = practice().await;
    let slot = p.future(SlotState::Free)[0].clone();
    let req = p.booking("same-key", &[&slot]);
    let first = p.adapter.book_appointment(&req).await.unwrap();
    let again = p.adapter.book_appointment(&req).await.unwrap();
    assert!(first.created);
    assert!(!again.created);
    assert_eq!(again.appointment.id, first.appointment.id);
    let held = p
        .store
        .appointments_of(
            SystemKind::Vision,
            p.ods.as_str(),
            &p.patients[0].to_string(),
            slot.start,
            slot.end,
        )
        .unwrap();
    assert_eq!(
        held.iter().filter(|a| a.slots == [slot.id.clone()]).count(),
        1
    );
}

#[tokio::test]
async fn twenty_racing_bookings_of_one_slot_book_it_once() {
    let p = practice().await;
    let slot = p.future(SlotState::Free)[0].clone();
    let mut tasks = Vec::new();
    for n in 0..20 {
        let (adapter, req) = (p.adapter.clone(), p.booking(&format!("race-{n}"), &[&slot]));
        tasks.push(tokio::spawn(
            async move { adapter.book_appointment(&req).await },
        ));
    }
    let (mut booked, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(b) if b.created => booked += 1,
            Err(AdapterError::SlotUnavailable { .. }) => refused += 1,
            other => panic!("unexpected answer: {other:?}"),
        }
    }
    assert_eq!((booked, refused), (1, 19));
    let held = p
        .store
        .with_book(SystemKind::Vision, p.ods.as_str(), |_, b| {
            b.appointments
                .iter()
                .filter(|a| a.slots.contains(&slot.id))
                .count()
        })
        .unwrap();
    assert_eq!(held, 1);
}

#[tokio::test]
async fn an_appointment_booked_at_the_practice_is_listed_and_can_be_cancelled() {
    let p = practice().await;
    let slot = p.future(SlotState::Free)[1].clone();
    let nhs = p.patients[1];
    let (at_practice, _) = p
        .store
        .book_appointment(
            SystemKind::Vision,
            p.ods.as_str(),
            NewBooking {
                key: None,
                nhs: nhs.to_string(),
                slots: vec![slot.id.clone()],
                slot_versions: None,
                description: Some("Dressing change".into()),
                comment: None,
                booked_by: None,
                external_id: None,
            },
        )
        .unwrap();
    let listed = p.list(nhs).await;
    let a = listed
        .iter()
        .find(|a| a.id == at_practice.number.to_string())
        .expect("the practice's booking is listed");
    assert_eq!(a.booked_by, None);
    assert_eq!(a.identifier, None);
    assert_eq!(a.description.as_deref(), Some("Dressing change"));
    let cancelled = p.change(&a.id, &a.version, cancel()).await.unwrap();
    assert_eq!(cancelled.status, AppointmentStatus::Cancelled);
    assert_eq!(p.slot(&slot.id).state, SlotState::Free);
}

#[tokio::test]
async fn kept_past_apart_and_overlong_bookings_are_unprocessable() {
    let p = practice().await;
    let mut cases: Vec<(&str, BookRequest)> = Vec::new();
    for state in [SlotState::Embargoed, SlotState::PracticeOnly] {
        let kept = p.future(state)[0].clone();
        cases.push(("SLOT_NOT_BOOKABLE", p.booking("kept", &[&kept])));
    }
    let now = book::now();
    let past = p
        .view(now - 7 * 86_400, now - 3600)
        .slots
        .into_iter()
        .find(|s| s.state == SlotState::Free)
        .expect("a free slot in the past week");
    cases.push(("SLOT_IN_PAST", p.booking("past", &[&past])));
    let free = p.future(SlotState::Free);
    let apart = free.iter().find(|s| s.session != free[0].session).unwrap();
    cases.push(("SLOTS_NOT_ADJACENT", p.booking("apart", &[&free[0], apart])));
    let mut long = p.booking("long", &[&free[0]]);
    long.appointment.description = Some("x".repeat(101));
    cases.push(("DESCRIPTION is longer than 100", long));
    for (why, req) in cases {
        match p.adapter.book_appointment(&req).await {
            Err(AdapterError::Unprocessable { detail, .. }) => {
                assert!(detail.contains(why), "{why}: {detail}")
            }
            other => panic!("{why}: {other:?}"),
        }
    }
    assert_eq!(p.slot(&free[0].id).state, SlotState::Free, "nothing booked");
}

#[tokio::test]
async fn unknown_practices_patients_and_appointments() {
    let p = practice().await;
    let now = book::now();
    let nowhere = OdsCode::parse("Q99999").unwrap();
    let e = p
        .adapter
        .search_slots(&SlotSearchRequest {
            practice: nowhere.clone(),
            start: utc(now),
            end: utc(now + 86_400),
            context: ctx(),
        })
        .await;
    assert!(matches!(e, Err(AdapterError::NotFound { .. })), "{e:?}");
    let stranger = (0..)
        .filter_map(|stem| NhsNumber::from_stem(999_999_000 + stem))
        .find(|n| p.store.patient_by_nhs(&n.to_string()).is_none())
        .unwrap();
    let e = p
        .adapter
        .search_appointments(&PatientAppointmentsRequest {
            practice: p.ods.clone(),
            nhs_number: stranger,
            start: utc(now),
            end: utc(now + 86_400),
            context: ctx(),
        })
        .await;
    assert_eq!(e, Err(AdapterError::PatientNotFound));
    let slot = p.future(SlotState::Free)[0].clone();
    let mut req = p.booking("stranger", &[&slot]);
    req.appointment.nhs_number = stranger;
    assert_eq!(
        p.adapter.book_appointment(&req).await,
        Err(AdapterError::PatientNotFound)
    );
    for id in ["999999999", "not-a-number", "1_2"] {
        let read = p
            .adapter
            .read_appointment(&AppointmentRequest {
                practice: p.ods.clone(),
                id: id.into(),
                context: ctx(),
            })
            .await;
        assert_eq!(read, Ok(None), "{id}");
        let e = p.change(id, "1", cancel()).await;
        assert!(
            matches!(e, Err(AdapterError::NotFound { .. })),
            "{id}: {e:?}"
        );
    }
}

#[tokio::test]
async fn native_faults_never_answer_appointment_data() {
    let p = practice().await;
    let slot = p.future(SlotState::Free)[0].clone();
    let booked = p
        .adapter
        .book_appointment(&p.booking("faults", &[&slot]))
        .await
        .unwrap()
        .appointment;
    let read = AppointmentRequest {
        practice: p.ods.clone(),
        id: booked.id.clone(),
        context: ctx(),
    };
    for (fault, unavailable) in [
        (Fault::Status(500), true),
        (Fault::Garbage, false),
        (Fault::Truncated, false),
        (Fault::MisEncoded, false),
        (Fault::MissingNhsNumber, false),
    ] {
        p.sim.set_fault(fault);
        let e = p.adapter.read_appointment(&read).await;
        let ok = if unavailable {
            matches!(e, Err(AdapterError::Unavailable { .. }))
        } else {
            matches!(e, Err(AdapterError::InvalidNativeData { .. }))
        };
        assert!(ok, "{fault:?}: {e:?}");
        let now = book::now();
        let e = p
            .adapter
            .search_slots(&SlotSearchRequest {
                practice: p.ods.clone(),
                start: utc(now + 86_400),
                end: utc(now + 2 * 86_400),
                context: ctx(),
            })
            .await;
        assert!(e.is_err() || fault == Fault::MissingNhsNumber, "{fault:?}");
    }
    p.sim.set_fault(Fault::None);
    assert_eq!(p.adapter.read_appointment(&read).await, Ok(Some(booked)));
}

#[tokio::test]
async fn two_adjacent_slots_book_as_one_appointment_and_free_together() {
    let p = practice().await;
    let free = p.future(SlotState::Free);
    let (first, second) = free
        .windows(2)
        .find_map(|w| {
            let (a, b) = (&w[0], &w[1]);
            let adjacent = a.end == b.start
                && a.session == b.session
                && a.channel == b.channel
                && a.slot_type == b.slot_type;
            adjacent.then(|| (a.clone(), b.clone()))
        })
        .expect("two adjacent free slots");
    let booked = p
        .adapter
        .book_appointment(&p.booking("pair", &[&first, &second]))
        .await
        .unwrap()
        .appointment;
    assert_eq!(
        booked.slots,
        [first.number.to_string(), second.number.to_string()]
    );
    assert_eq!(
        (booked.start, booked.end),
        (utc(first.start), utc(second.end))
    );
    assert_eq!(p.slot(&second.id).state, SlotState::Booked);
    p.change(&booked.id, &booked.version, cancel())
        .await
        .unwrap();
    for s in [&first, &second] {
        assert_eq!(p.slot(&s.id).state, SlotState::Free);
    }
}
