#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! SystmOne's appointment book through the adapter, against the real simulator on
//! 127.0.0.1:0. Expectations come from the simulator's store (its instants, states and
//! numbers), which knows nothing of the adapter's mapping.

use std::sync::Arc;

use gp_adapter::appointments::{
    AppointmentStatus, DeliveryChannel, NewAppointment, SlotSearchRequest, SlotStatus,
};
use gp_adapter::time::UtcDateTime;
use gp_adapter::{
    Adapter, AdapterError, AppointmentChange, AppointmentRequest, BookRequest, CallContext,
    ChangeAppointmentRequest, PatientAppointmentsRequest, PractitionerRequest,
};
use gp_adapter_tpp::{TppAdapter, TppConfig};
use gp_fhir::{NhsNumber, OdsCode};
use gp_sim::appointments::{self as native, AppointmentState, Book, Channel, Instant, SlotState};
use gp_sim::{Fault, SimHandle, SimStore, SystemKind};

struct Env {
    sim: SimHandle,
    store: SimStore,
    adapter: Arc<TppAdapter>,
    ods: OdsCode,
    patients: Vec<NhsNumber>,
}

async fn env() -> Env {
    let population = gp_adapter::harness::sim::population();
    let practice = population
        .practices
        .iter()
        .find(|p| p.system == SystemKind::Tpp)
        .unwrap()
        .clone();
    let patients = population
        .patients
        .iter()
        .filter(|p| p.practice == practice.ods)
        .map(|p| NhsNumber::parse(&p.nhs_number).unwrap())
        .collect();
    let store = SimStore::new(population);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = gp_sim::start(SystemKind::Tpp, store.clone(), listener)
        .await
        .unwrap();
    let adapter = Arc::new(TppAdapter::new(TppConfig::new(sim.base_url())).unwrap());
    Env {
        sim,
        store,
        adapter,
        ods: OdsCode::parse(&practice.ods).unwrap(),
        patients,
    }
}

impl Env {
    /// A copy of the practice's book as the simulator holds it now.
    fn book(&self) -> Book {
        self.store
            .with_book(SystemKind::Tpp, self.ods.as_str(), |_, b| b.clone())
            .unwrap()
    }

    /// A free slot starting at least an hour from now, not among `skip` (numbers).
    fn free_slot(&self, skip: &[u64]) -> native::Slot {
        let now = native::now();
        self.book()
            .slots
            .into_iter()
            .find(|s| {
                s.state == SlotState::Free && s.start > now + 3600 && !skip.contains(&s.number)
            })
            .unwrap()
    }

    fn booking(&self, key: &str, slots: &[u64], nhs: NhsNumber) -> BookRequest {
        BookRequest {
            practice: self.ods.clone(),
            appointment: NewAppointment {
                key: key.into(),
                identifier: Some(("https://booking.example/id".into(), format!("b-{key}"))),
                nhs_number: nhs,
                slots: slots.iter().map(u64::to_string).collect(),
                description: Some("Sore throat for a week".into()),
                comment: Some("Prefers a morning call".into()),
                booked_by: OdsCode::parse("X26").unwrap(),
                booked_by_name: "Demo Booking App".into(),
            },
            context: CallContext::new("t"),
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
            id: id.into(),
            expected_version: version.into(),
            change,
            context: CallContext::new("t"),
        }
    }

    async fn search(
        &self,
        from: Instant,
        to: Instant,
    ) -> Result<gp_adapter::AppointmentBook, AdapterError> {
        self.adapter
            .search_slots(&SlotSearchRequest {
                practice: self.ods.clone(),
                start: utc(from),
                end: utc(to),
                context: CallContext::new("t"),
            })
            .await
    }
}

/// An instant as the store's own calendar gives it.
fn utc(t: Instant) -> UtcDateTime {
    let d = native::utc_date_time(t);
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

fn amend(description: &str) -> AppointmentChange {
    AppointmentChange::Amend {
        description: Some(description.into()),
        comment: None,
    }
}

fn cancel() -> AppointmentChange {
    AppointmentChange::Cancel {
        reason: "Patient feels better".into(),
    }
}

#[tokio::test]
async fn slot_search_shows_the_book_as_the_practice_keeps_it() {
    let env = env().await;
    let now = native::now();
    let (from, to) = (now, now + 7 * 86_400);
    let found = env.search(from, to).await.unwrap();
    let book = env.book();
    let expected: Vec<&native::Slot> = book
        .slots
        .iter()
        .filter(|s| s.start >= from && s.start < to)
        .collect();
    assert_eq!(found.slots.len(), expected.len());
    for s in expected {
        let got = found
            .slots
            .iter()
            .find(|x| x.id == s.number.to_string())
            .unwrap_or_else(|| panic!("slot {} missing", s.number));
        assert_eq!(
            (got.start, got.end),
            (utc(s.start), utc(s.end)),
            "slot {}",
            s.number
        );
        assert_eq!(got.slot_type, s.slot_type);
        let channel = match s.channel {
            Channel::InPerson => DeliveryChannel::InPerson,
            Channel::Telephone => DeliveryChannel::Telephone,
            Channel::Video => DeliveryChannel::Video,
        };
        assert_eq!(got.channel, channel);
        let status = match s.state {
            SlotState::Free => SlotStatus::Free,
            SlotState::Booked => SlotStatus::Busy,
            SlotState::Embargoed | SlotState::PracticeOnly => SlotStatus::Unavailable,
        };
        assert_eq!(got.status, status, "slot {}", s.number);
        let session = book.sessions.iter().find(|x| x.id == s.session).unwrap();
        assert_eq!(got.session, session.number.to_string());
    }
    for status in [SlotStatus::Free, SlotStatus::Busy, SlotStatus::Unavailable] {
        assert!(found.slots.iter().any(|s| s.status == status), "{status:?}");
    }
    for slot in &found.slots {
        let session = found
            .sessions
            .iter()
            .find(|s| s.id == slot.session)
            .unwrap();
        assert!(session.start <= slot.start && slot.end <= session.end);
        let clinician = session.clinician.as_deref().unwrap();
        assert!(found.clinicians.iter().any(|c| c.id == clinician));
        assert!(found.locations.iter().any(|l| l.id == session.location));
    }
    // Each clinician is the one the staff read answers, with their SDS job role.
    let practice = env.store.practice(env.ods.as_str()).unwrap();
    for c in &found.clinicians {
        let native = practice.clinician(&c.id).unwrap();
        let (code, _) = native::job_role(&practice, native);
        assert_eq!(c.role.as_ref().unwrap().code, code);
        assert_eq!(c.family, native.family);
        let read = env
            .adapter
            .read_practitioner(&PractitionerRequest {
                practice: env.ods.clone(),
                id: c.id.clone(),
                context: CallContext::new("t"),
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read.id, c.id);
    }
    assert!(
        found
            .clinicians
            .iter()
            .any(|c| c.role.as_ref().unwrap().code == "R0260")
    );
}

#[tokio::test]
async fn an_unknown_practice_and_broken_answers_are_refused() {
    let env = env().await;
    let now = native::now();
    let other = gp_adapter::harness::sim::population()
        .practices
        .iter()
        .find(|p| p.system != SystemKind::Tpp)
        .unwrap()
        .ods
        .clone();
    let err = env
        .adapter
        .search_slots(&SlotSearchRequest {
            practice: OdsCode::parse(&other).unwrap(),
            start: utc(now),
            end: utc(now + 86_400),
            context: CallContext::new("t"),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, AdapterError::NotFound { .. }), "{err:?}");
    for (fault, broken) in [
        (Fault::Garbage, true),
        (Fault::Truncated, true),
        (Fault::MisEncoded, true),
        (Fault::Status(503), false),
    ] {
        env.sim.set_fault(fault);
        let err = env.search(now, now + 86_400).await.unwrap_err();
        if broken {
            assert!(
                matches!(err, AdapterError::InvalidNativeData { .. }),
                "{fault:?}: {err:?}"
            );
        } else {
            assert!(
                matches!(err, AdapterError::Unavailable { .. }),
                "{fault:?}: {err:?}"
            );
        }
    }
    env.sim.set_fault(Fault::None);
    // An appointment whose NHS number went missing is never half-read.
    let booked = env
        .adapter
        .book_appointment(&env.booking("fault-1", &[env.free_slot(&[]).number], env.patients[0]))
        .await
        .unwrap();
    env.sim.set_fault(Fault::MissingNhsNumber);
    let err = env
        .adapter
        .read_appointment(&AppointmentRequest {
            practice: env.ods.clone(),
            id: booked.appointment.id.clone(),
            context: CallContext::new("t"),
        })
        .await
        .unwrap_err();
    env.sim.set_fault(Fault::None);
    assert!(
        matches!(&err, AdapterError::InvalidNativeData { detail, .. } if detail.contains("NHSNumber")),
        "{err:?}"
    );
}

#[tokio::test]
async fn book_read_list_amend_and_cancel() {
    let env = env().await;
    let nhs = env.patients[1];
    let slot = env.free_slot(&[]);
    let booked = env
        .adapter
        .book_appointment(&env.booking("life-1", &[slot.number], nhs))
        .await
        .unwrap();
    assert!(booked.created);
    let a = booked.appointment;
    assert_eq!(a.status, AppointmentStatus::Booked);
    assert_eq!(a.slots, [slot.number.to_string()]);
    assert_eq!((a.start, a.end), (utc(slot.start), utc(slot.end)));
    assert_eq!(a.nhs_number, nhs);
    assert_eq!(a.booked_by.as_ref().map(OdsCode::as_str), Some("X26"));
    assert_eq!(
        a.identifier,
        Some(("https://booking.example/id".into(), "b-life-1".into()))
    );
    assert_eq!(a.description.as_deref(), Some("Sore throat for a week"));
    for id in [&a.id, &a.version, &a.session] {
        assert!(id.bytes().all(|b| b.is_ascii_digit()), "{id}");
    }
    assert_eq!(
        env.book()
            .slots
            .iter()
            .find(|s| s.number == slot.number)
            .unwrap()
            .state,
        SlotState::Booked
    );

    let read = env
        .adapter
        .read_appointment(&AppointmentRequest {
            practice: env.ods.clone(),
            id: a.id.clone(),
            context: CallContext::new("t"),
        })
        .await
        .unwrap();
    assert_eq!(read.as_ref(), Some(&a));

    let listed = env
        .adapter
        .search_appointments(&PatientAppointmentsRequest {
            practice: env.ods.clone(),
            nhs_number: nhs,
            start: utc(slot.start - 3600),
            end: utc(slot.end + 3600),
            context: CallContext::new("t"),
        })
        .await
        .unwrap();
    assert!(listed.contains(&a), "{listed:?}");

    let amended = env
        .adapter
        .change_appointment(&env.change(&a.id, &a.version, amend("Sore throat, now a fever")))
        .await
        .unwrap();
    assert_eq!(
        amended.description.as_deref(),
        Some("Sore throat, now a fever")
    );
    assert_eq!(amended.comment, None);
    assert_ne!(amended.version, a.version);

    let stale = env
        .adapter
        .change_appointment(&env.change(&a.id, &a.version, amend("Too late")))
        .await
        .unwrap_err();
    assert!(
        matches!(stale, AdapterError::VersionConflict { .. }),
        "{stale:?}"
    );

    let cancelled = env
        .adapter
        .change_appointment(&env.change(&a.id, &amended.version, cancel()))
        .await
        .unwrap();
    assert_eq!(cancelled.status, AppointmentStatus::Cancelled);
    assert_eq!(
        cancelled.cancellation_reason.as_deref(),
        Some("Patient feels better")
    );
    let after = env.search(slot.start, slot.start + 1).await.unwrap();
    let freed = after
        .slots
        .iter()
        .find(|s| s.id == slot.number.to_string())
        .unwrap();
    assert_eq!(freed.status, SlotStatus::Free);

    let late = env
        .adapter
        .change_appointment(&env.change(&a.id, &cancelled.version, amend("Again")))
        .await
        .unwrap_err();
    assert!(
        matches!(late, AdapterError::Unprocessable { .. }),
        "{late:?}"
    );

    // Unknown appointments: none to read, none to change.
    let none = env
        .adapter
        .read_appointment(&AppointmentRequest {
            practice: env.ods.clone(),
            id: "987654321".into(),
            context: CallContext::new("t"),
        })
        .await
        .unwrap();
    assert_eq!(none, None);
    let err = env
        .adapter
        .change_appointment(&env.change("987654321", "1", cancel()))
        .await
        .unwrap_err();
    assert!(matches!(err, AdapterError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn the_same_key_books_once() {
    let env = env().await;
    let slot = env.free_slot(&[]);
    let req = env.booking("same-key-1", &[slot.number], env.patients[0]);
    let first = env.adapter.book_appointment(&req).await.unwrap();
    let again = env.adapter.book_appointment(&req).await.unwrap();
    assert!(first.created);
    assert!(!again.created);
    assert_eq!(again.appointment.id, first.appointment.id);
    let held = env
        .book()
        .appointments
        .iter()
        .filter(|a| a.external_key.as_deref() == Some("same-key-1"))
        .count();
    assert_eq!(held, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_racing_bookings_of_one_slot_book_it_once() {
    let env = env().await;
    let slot = env.free_slot(&[]);
    let mut racing = tokio::task::JoinSet::new();
    for i in 0..20 {
        let adapter = env.adapter.clone();
        let req = env.booking(
            &format!("race-{i}"),
            &[slot.number],
            env.patients[i % env.patients.len()],
        );
        racing.spawn(async move { adapter.book_appointment(&req).await });
    }
    let (mut booked, mut refused) = (0, 0);
    while let Some(done) = racing.join_next().await {
        match done.unwrap() {
            Ok(b) => {
                assert!(b.created);
                booked += 1;
            }
            Err(AdapterError::SlotUnavailable { .. }) => refused += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((booked, refused), (1, 19));
    let holding = env
        .book()
        .appointments
        .iter()
        .filter(|a| a.slots.contains(&slot.id) && a.state == AppointmentState::Booked)
        .count();
    assert_eq!(holding, 1);
}

#[tokio::test]
async fn an_appointment_booked_at_the_practice_is_listed_and_can_be_cancelled() {
    let env = env().await;
    let now = native::now();
    let at_practice = env
        .store
        .practice_booking(SystemKind::Tpp, env.ods.as_str(), now + 3600)
        .expect("a future appointment booked at the practice for a registered patient");
    let nhs = NhsNumber::parse(&at_practice.nhs).unwrap();
    let listed = env
        .adapter
        .search_appointments(&PatientAppointmentsRequest {
            practice: env.ods.clone(),
            nhs_number: nhs,
            start: utc(now),
            end: utc(now + 28 * 86_400),
            context: CallContext::new("t"),
        })
        .await
        .unwrap();
    let mine = listed
        .iter()
        .find(|a| a.id == at_practice.number.to_string())
        .unwrap();
    assert_eq!(mine.booked_by, None);
    assert_eq!(mine.identifier, None);
    assert_eq!(
        (mine.start, mine.end),
        (utc(at_practice.start), utc(at_practice.end))
    );
    assert!(listed.windows(2).all(|w| w[0].start <= w[1].start));
    let cancelled = env
        .adapter
        .change_appointment(&env.change(&mine.id, &mine.version, cancel()))
        .await
        .unwrap();
    assert_eq!(cancelled.status, AppointmentStatus::Cancelled);
    let held = env.book();
    let stored = held
        .appointments
        .iter()
        .find(|a| a.number == at_practice.number)
        .unwrap();
    assert_eq!(stored.state, AppointmentState::Cancelled);
}

#[tokio::test]
async fn bookings_the_book_cannot_take_are_refused_with_the_reason() {
    let env = env().await;
    let now = native::now();
    let book = env.book();
    let nhs = env.patients[0];
    let unprocessable = |err: AdapterError, why: &str| match err {
        AdapterError::Unprocessable { detail, .. } => {
            assert!(detail.contains(why), "{detail} should say {why}")
        }
        other => panic!("expected Unprocessable ({why}), got {other:?}"),
    };
    for (state, why) in [
        (SlotState::Embargoed, "SLOT_NOT_BOOKABLE"),
        (SlotState::PracticeOnly, "SLOT_NOT_BOOKABLE"),
    ] {
        let slot = book
            .slots
            .iter()
            .find(|s| s.state == state && s.start > now)
            .unwrap();
        let err = env
            .adapter
            .book_appointment(&env.booking(&format!("kept-{}", slot.number), &[slot.number], nhs))
            .await
            .unwrap_err();
        unprocessable(err, why);
    }
    if let Some(past) = book
        .slots
        .iter()
        .find(|s| s.state == SlotState::Free && s.start < now)
    {
        let err = env
            .adapter
            .book_appointment(&env.booking("past-1", &[past.number], nhs))
            .await
            .unwrap_err();
        unprocessable(err, "SLOT_IN_PAST");
    }
    let a = env.free_slot(&[]);
    let far = book
        .slots
        .iter()
        .find(|s| s.state == SlotState::Free && s.start > now && s.session != a.session)
        .unwrap();
    let err = env
        .adapter
        .book_appointment(&env.booking("apart-1", &[a.number, far.number], nhs))
        .await
        .unwrap_err();
    unprocessable(err, "SLOTS_NOT_ADJACENT");
    let err = env
        .adapter
        .book_appointment(&env.booking("twice-1", &[a.number, a.number], nhs))
        .await
        .unwrap_err();
    unprocessable(err, "SLOTS_NOT_ADJACENT");
    let mut long = env.booking("long-1", &[a.number], nhs);
    long.appointment.description = Some("x".repeat(101));
    unprocessable(
        env.adapter.book_appointment(&long).await.unwrap_err(),
        "Description",
    );
    let err = env
        .adapter
        .book_appointment(&env.booking("not-ours", &[0], nhs))
        .await
        .unwrap_err();
    assert!(matches!(err, AdapterError::Unprocessable { .. }), "{err:?}");
    // A slot someone holds already is taken, not unprocessable.
    env.adapter
        .book_appointment(&env.booking("first-1", &[a.number], nhs))
        .await
        .unwrap();
    let err = env
        .adapter
        .book_appointment(&env.booking("second-1", &[a.number], env.patients[1]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AdapterError::SlotUnavailable { .. }),
        "{err:?}"
    );
    // A patient the practice does not hold.
    let stranger =
        gp_adapter::harness::sim::fixture(&gp_adapter::harness::sim::population(), SystemKind::Tpp)
            .unknown
            .0;
    let other = env.free_slot(&[a.number]);
    let err = env
        .adapter
        .book_appointment(&env.booking("stranger-1", &[other.number], stranger))
        .await
        .unwrap_err();
    assert_eq!(err, AdapterError::PatientNotFound);
}

#[tokio::test]
async fn the_native_api_refuses_stale_slot_versions_and_changes_without_if_match() {
    let env = env().await;
    let http = TppConfig::new(env.sim.base_url())
        .endpoint()
        .client()
        .unwrap();
    let ctx = CallContext::new("t");
    let slot = env.free_slot(&[]);
    let nhs = env.patients[0].to_string();
    // Booked and cancelled at the practice since it was read: free again, but changed.
    let (held, _) = env
        .store
        .book_appointment(
            SystemKind::Tpp,
            env.ods.as_str(),
            native::NewBooking {
                key: None,
                nhs: nhs.clone(),
                slots: vec![slot.id.clone()],
                slot_versions: None,
                description: None,
                comment: None,
                booked_by: None,
                external_id: None,
            },
        )
        .unwrap();
    env.store
        .change_appointment(
            SystemKind::Tpp,
            env.ods.as_str(),
            &held.id,
            None,
            native::Change::Cancel {
                reason: "Rebooked".into(),
            },
        )
        .unwrap();
    let body = format!(
        "<BookAppointmentRequest ExternalReference=\"stale-1\"><Slot SlotID=\"{}\" Version=\"{}\"/>\
         <BookingOrganisation ODSCode=\"X26\">Demo Booking App</BookingOrganisation></BookAppointmentRequest>",
        slot.number, slot.version
    );
    let path = format!(
        "/systmone/api/v1/organisations/{}/patients/{nhs}/appointments",
        env.ods
    );
    let answer = http
        .send(
            gp_adapter::native::Method::POST,
            &path,
            Some(("application/xml", body.into_bytes())),
            &[],
            &ctx,
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 409);
    assert!(String::from_utf8_lossy(&answer.body).contains("<ErrorCode>SLOT_CHANGED</ErrorCode>"));
    let path = format!(
        "/systmone/api/v1/organisations/{}/appointments/{}",
        env.ods, held.number
    );
    let answer = http
        .send(
            gp_adapter::native::Method::PUT,
            &path,
            Some(("application/xml", b"<AmendAppointmentRequest/>".to_vec())),
            &[],
            &ctx,
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 400);
    assert!(String::from_utf8_lossy(&answer.body).contains("If-Match"));
    // Through the adapter the slot is read afresh, so it books.
    let booked = env
        .adapter
        .book_appointment(&env.booking("fresh-1", &[slot.number], env.patients[0]))
        .await
        .unwrap();
    assert!(booked.created);
}
