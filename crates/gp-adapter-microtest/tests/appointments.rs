#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The appointment book against the real Microtest Evolution simulator on 127.0.0.1:0:
//! slot pages followed to the end, book → read → list → amend → cancel with Evolution's
//! version, idempotency, a race for one slot, appointments booked at the practice, and
//! the refusals. Expected values come from the simulator's store, not from the mapping.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gp_adapter::appointments::{
    AppointmentChange, AppointmentStatus, DeliveryChannel, NewAppointment, SlotStatus,
};
use gp_adapter::harness::sim;
use gp_adapter::{
    Adapter, AdapterError, AppointmentRequest, BookRequest, CallContext, ChangeAppointmentRequest,
    PatientAppointmentsRequest, SlotSearchRequest, UtcDateTime,
};
use gp_adapter_microtest::{MicrotestAdapter, MicrotestConfig};
use gp_fhir::{NhsNumber, OdsCode};
use gp_sim::appointments::{self, Instant, SlotState};
use gp_sim::{Fault, SimHandle, SimStore, SystemKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Fixture {
    sim: SimHandle,
    store: SimStore,
    adapter: MicrotestAdapter,
    ods: OdsCode,
    /// Patients registered at the practice.
    patients: Vec<NhsNumber>,
}

async fn start() -> Fixture {
    let population = sim::population();
    let practice = population
        .practices
        .iter()
        .find(|p| p.system == SystemKind::Microtest)
        .expect("a Microtest practice")
        .ods
        .clone();
    let patients = population
        .patients
        .iter()
        .filter(|p| p.practice == practice)
        .map(|p| NhsNumber::parse(&p.nhs_number).unwrap())
        .collect();
    let store = SimStore::new(population);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = gp_sim::start(SystemKind::Microtest, store.clone(), listener)
        .await
        .unwrap();
    let adapter = MicrotestAdapter::new(MicrotestConfig::new(sim.base_url())).unwrap();
    Fixture {
        sim,
        store,
        adapter,
        ods: OdsCode::parse(&practice).unwrap(),
        patients,
    }
}

fn ctx() -> CallContext {
    CallContext::new("appointments-test")
}

/// The store's instant as the neutral type, computed by the simulator's own calendar.
fn utc(t: Instant) -> UtcDateTime {
    let d = appointments::utc_date_time(t);
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

impl Fixture {
    fn view(&self, from: Instant, to: Instant) -> appointments::BookView {
        self.store
            .book_view(SystemKind::Microtest, self.ods.as_str(), from, to)
            .unwrap()
    }

    /// Free slots starting at least an hour from now, in the store's order.
    fn future_free(&self) -> Vec<appointments::Slot> {
        let now = appointments::now();
        self.view(now + 3600, now + 20 * 86_400)
            .slots
            .into_iter()
            .filter(|s| s.state == SlotState::Free)
            .collect()
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

    async fn book(&self, key: &str, slots: &[&str]) -> Result<gp_adapter::Booked, AdapterError> {
        self.book_for(key, slots, self.patients[0], Some("Asthma review"))
            .await
    }

    async fn book_for(
        &self,
        key: &str,
        slots: &[&str],
        nhs: NhsNumber,
        description: Option<&str>,
    ) -> Result<gp_adapter::Booked, AdapterError> {
        self.adapter
            .book_appointment(&BookRequest {
                practice: self.ods.clone(),
                appointment: NewAppointment {
                    key: key.into(),
                    identifier: Some(("https://booking.example/ids".into(), key.into())),
                    nhs_number: nhs,
                    slots: slots.iter().map(|s| (*s).to_owned()).collect(),
                    description: description.map(str::to_owned),
                    comment: None,
                    booked_by: OdsCode::parse("X26").unwrap(),
                    booked_by_name: "Acme Booking".into(),
                },
                context: ctx(),
            })
            .await
    }

    async fn read(&self, id: &str) -> Option<gp_adapter::BookedAppointment> {
        self.adapter
            .read_appointment(&AppointmentRequest {
                practice: self.ods.clone(),
                id: id.into(),
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
                id: id.into(),
                expected_version: version.into(),
                change,
                context: ctx(),
            })
            .await
    }

    async fn list(
        &self,
        nhs: NhsNumber,
        from: Instant,
        to: Instant,
    ) -> Result<Vec<gp_adapter::BookedAppointment>, AdapterError> {
        self.adapter
            .search_appointments(&PatientAppointmentsRequest {
                practice: self.ods.clone(),
                nhs_number: nhs,
                start: utc(from),
                end: utc(to),
                context: ctx(),
            })
            .await
    }

    fn slot_state(&self, id: &str) -> SlotState {
        self.store
            .with_book(SystemKind::Microtest, self.ods.as_str(), |_, b| {
                b.slot(id).unwrap().state
            })
            .unwrap()
    }
}

fn amend(description: &str) -> AppointmentChange {
    AppointmentChange::Amend {
        description: Some(description.into()),
        comment: Some("Please call on arrival".into()),
    }
}

fn cancel() -> AppointmentChange {
    AppointmentChange::Cancel {
        reason: "Patient no longer needs it".into(),
    }
}

#[tokio::test]
async fn fourteen_days_of_slots_come_whole_over_several_cursor_pages() {
    let fx = start().await;
    let now = appointments::now();
    let (from, to) = (now, now + 14 * 86_400);
    let expected = fx.view(from, to);
    assert!(expected.slots.len() > 500, "{} slots", expected.slots.len());
    let book = fx.search(from, to).await;
    assert!(fx.sim.requests() >= 2, "more than one page was read");

    assert_eq!(book.slots.len(), expected.slots.len());
    for native in &expected.slots {
        let slot = book
            .slots
            .iter()
            .find(|s| s.id == native.id)
            .unwrap_or_else(|| panic!("slot {} missing", native.id));
        assert_eq!((slot.start, slot.end), (utc(native.start), utc(native.end)));
        assert_eq!(slot.session, native.session);
        assert_eq!(slot.slot_type, native.slot_type);
        assert_eq!(slot.channel.code(), native.channel.code());
        let status = match native.state {
            SlotState::Free => SlotStatus::Free,
            SlotState::Booked => SlotStatus::Busy,
            SlotState::Embargoed | SlotState::PracticeOnly => SlotStatus::Unavailable,
        };
        assert_eq!(slot.status, status, "slot {}", native.id);
    }
    for status in [SlotStatus::Free, SlotStatus::Busy, SlotStatus::Unavailable] {
        assert!(book.slots.iter().any(|s| s.status == status), "{status:?}");
    }
    assert!(book.slots.windows(2).all(|w| w[0].start <= w[1].start));

    let practice = fx.store.practice(fx.ods.as_str()).unwrap();
    for slot in &book.slots {
        let session = book
            .sessions
            .iter()
            .find(|s| s.id == slot.session)
            .unwrap_or_else(|| panic!("session of slot {} missing", slot.id));
        let native = expected
            .sessions
            .iter()
            .find(|s| s.id == session.id)
            .unwrap();
        assert_eq!(
            (session.start, session.end),
            (utc(native.start), utc(native.end))
        );
        assert_eq!(session.location, native.site);
        let clinician_id = session.clinician.as_deref().unwrap();
        assert_eq!(clinician_id, native.clinician);
        let clinician = book
            .clinicians
            .iter()
            .find(|c| c.id == clinician_id)
            .unwrap_or_else(|| panic!("clinician {clinician_id} missing"));
        let sim_clinician = practice
            .clinicians
            .iter()
            .find(|c| c.id == clinician_id)
            .unwrap();
        assert_eq!(clinician.family, sim_clinician.family);
        let (code, _) = appointments::job_role(&practice, sim_clinician);
        assert_eq!(clinician.role.as_ref().unwrap().code, code);
        assert!(clinician.gender.is_some());
        let location = book
            .locations
            .iter()
            .find(|l| l.id == session.location)
            .unwrap_or_else(|| panic!("location {} missing", session.location));
        let site = expected.sites.iter().find(|s| s.id == location.id).unwrap();
        assert_eq!(location.name, site.name);
        assert_eq!(location.postcode.as_deref(), Some(site.postcode.as_str()));
    }
    // Only what the slots refer to.
    assert!(book.sessions.len() <= expected.sessions.len());
}

#[tokio::test]
async fn book_read_list_amend_cancel_with_the_native_version() {
    let fx = start().await;
    let slot = fx.future_free()[0].clone();
    let nhs = fx.patients[0];
    let booked = fx.book("lifecycle-1", &[&slot.id]).await.unwrap();
    assert!(booked.created);
    let a = booked.appointment;
    assert_eq!(a.status, AppointmentStatus::Booked);
    assert_eq!(a.nhs_number, nhs);
    assert_eq!(a.slots, vec![slot.id.clone()]);
    assert_eq!((a.start, a.end), (utc(slot.start), utc(slot.end)));
    assert_eq!(a.session, slot.session);
    assert_eq!(a.slot_type.as_deref(), Some(slot.slot_type.as_str()));
    assert_eq!(
        a.channel.map(DeliveryChannel::code),
        Some(slot.channel.code())
    );
    assert_eq!(a.booked_by.as_ref().map(OdsCode::as_str), Some("X26"));
    assert_eq!(
        a.identifier,
        Some(("https://booking.example/ids".into(), "lifecycle-1".into()))
    );
    assert_eq!(a.description.as_deref(), Some("Asthma review"));
    assert!(a.id.len() <= 56 && !a.id.contains('_'));
    assert_eq!(fx.slot_state(&slot.id), SlotState::Booked);

    assert_eq!(fx.read(&a.id).await, Some(a.clone()));
    let listed = fx
        .list(nhs, slot.start - 86_400, slot.start + 86_400)
        .await
        .unwrap();
    assert!(listed.contains(&a), "{listed:?}");

    let amended = fx
        .change(&a.id, &a.version, amend("Inhaler review"))
        .await
        .unwrap();
    assert_ne!(amended.version, a.version);
    assert_eq!(amended.description.as_deref(), Some("Inhaler review"));
    assert_eq!(amended.comment.as_deref(), Some("Please call on arrival"));

    let not_a_version = fx.change(&a.id, "W/\"2\"", amend("Odd")).await;
    assert!(
        matches!(not_a_version, Err(AdapterError::VersionConflict { .. })),
        "{not_a_version:?}"
    );
    let stale = fx.change(&a.id, &a.version, amend("Too late")).await;
    assert!(
        matches!(stale, Err(AdapterError::VersionConflict { .. })),
        "{stale:?}"
    );
    assert_eq!(
        fx.read(&a.id).await.unwrap().description.as_deref(),
        Some("Inhaler review"),
        "a stale amend changes nothing"
    );

    let cancelled = fx.change(&a.id, &amended.version, cancel()).await.unwrap();
    assert_eq!(cancelled.status, AppointmentStatus::Cancelled);
    assert_eq!(
        cancelled.cancellation_reason.as_deref(),
        Some("Patient no longer needs it")
    );
    let around = fx.search(slot.start - 60, slot.end).await;
    let freed = around.slots.iter().find(|s| s.id == slot.id).unwrap();
    assert_eq!(freed.status, SlotStatus::Free);
    let listed = fx
        .list(nhs, slot.start - 86_400, slot.start + 86_400)
        .await
        .unwrap();
    assert!(
        listed
            .iter()
            .any(|x| x.id == a.id && x.status == AppointmentStatus::Cancelled),
        "cancelled appointments are listed"
    );

    let again = fx.change(&a.id, &cancelled.version, amend("After")).await;
    assert!(
        matches!(&again, Err(AdapterError::Unprocessable { detail, .. }) if detail.contains("APPOINTMENT_CANCELLED")),
        "{again:?}"
    );
}

#[tokio::test]
async fn the_same_key_books_once() {
    let fx = start().await;
    let slot = fx.future_free()[0].clone();
    let first = fx.book("same-key", &[&slot.id]).await.unwrap();
    let second = fx.book("same-key", &[&slot.id]).await.unwrap();
    assert!(first.created);
    assert!(!second.created);
    assert_eq!(second.appointment.id, first.appointment.id);
    // A key books for one patient: it never answers another patient's appointment.
    let other = fx
        .book_for("same-key", &[&slot.id], fx.patients[1], None)
        .await;
    assert!(
        matches!(&other, Err(AdapterError::Unprocessable { detail, .. }) if detail.contains("IDEMPOTENCY_KEY_REUSED")),
        "{other:?}"
    );
    // A patient's appointments over a year are one search.
    let year = fx
        .list(
            fx.patients[0],
            slot.start - 86_400,
            slot.start + 365 * 86_400,
        )
        .await
        .unwrap();
    assert!(year.iter().any(|a| a.id == first.appointment.id));
    let all = fx
        .list(fx.patients[0], slot.start - 60, slot.end + 60)
        .await
        .unwrap();
    assert_eq!(all.iter().filter(|a| a.slots.contains(&slot.id)).count(), 1);
}

#[tokio::test]
async fn twenty_bookings_racing_for_one_slot_book_it_once() {
    let fx = Arc::new(start().await);
    let slot = fx.future_free()[0].id.clone();
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..20 {
        let (fx, slot) = (fx.clone(), slot.clone());
        racers.spawn(async move { fx.book(&format!("race-{i}"), &[&slot]).await });
    }
    let (mut booked, mut refused) = (0, 0);
    while let Some(result) = racers.join_next().await {
        match result.unwrap() {
            Ok(b) => {
                assert!(b.created);
                booked += 1;
            }
            Err(AdapterError::SlotUnavailable { .. }) => refused += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((booked, refused), (1, 19));
}

#[tokio::test]
async fn an_appointment_booked_at_the_practice_is_listed_and_cancellable() {
    let fx = start().await;
    let now = appointments::now();
    let at_practice = fx
        .store
        .practice_booking(SystemKind::Microtest, fx.ods.as_str(), now + 3600)
        .expect("a future appointment booked at the practice for a registered patient");
    let nhs = NhsNumber::parse(&at_practice.nhs).unwrap();
    let listed = fx
        .list(nhs, at_practice.start - 60, at_practice.end + 60)
        .await
        .unwrap();
    let a = listed
        .iter()
        .find(|a| a.id == at_practice.id)
        .expect("listed")
        .clone();
    assert_eq!(a.booked_by, None);
    assert_eq!(a.identifier, None);
    assert_eq!(a.created, utc(at_practice.created));
    let cancelled = fx.change(&a.id, &a.version, cancel()).await.unwrap();
    assert_eq!(cancelled.status, AppointmentStatus::Cancelled);
    assert_eq!(fx.slot_state(&at_practice.slots[0]), SlotState::Free);
}

#[tokio::test]
async fn kept_past_apart_and_too_long_bookings_are_unprocessable() {
    let fx = start().await;
    let now = appointments::now();
    let book = fx.view(now - 7 * 86_400, now + 20 * 86_400);
    let unprocessable = |r: Result<gp_adapter::Booked, AdapterError>, code: &str| match r {
        Err(AdapterError::Unprocessable { detail, .. }) => {
            assert!(detail.contains(code), "{detail} should name {code}");
        }
        other => panic!("expected Unprocessable {code}, got {other:?}"),
    };
    for state in [SlotState::Embargoed, SlotState::PracticeOnly] {
        let kept = book
            .slots
            .iter()
            .find(|s| s.state == state && s.start > now)
            .unwrap();
        unprocessable(
            fx.book(&format!("kept-{state:?}"), &[&kept.id]).await,
            "SLOT_NOT_BOOKABLE",
        );
    }
    if let Some(past) = book
        .slots
        .iter()
        .find(|s| s.state == SlotState::Free && s.start < now)
    {
        unprocessable(fx.book("past", &[&past.id]).await, "SLOT_IN_PAST");
    }
    let free = fx.future_free();
    let apart = free.iter().find(|s| s.session != free[0].session).unwrap();
    unprocessable(
        fx.book("apart", &[&free[0].id, &apart.id]).await,
        "SLOTS_NOT_ADJACENT",
    );
    let long = "x".repeat(101);
    unprocessable(
        fx.book_for("long", &[&free[0].id], fx.patients[0], Some(&long))
            .await,
        "TEXT_TOO_LONG",
    );
    unprocessable(
        fx.book("no-such-slot", &["no-such-slot"]).await,
        "SLOT_NOT_FOUND",
    );
    assert_eq!(
        fx.slot_state(&free[0].id),
        SlotState::Free,
        "nothing was booked"
    );
}

#[tokio::test]
async fn unknown_things_are_named_as_the_trait_says() {
    let fx = start().await;
    let now = appointments::now();
    assert_eq!(fx.read("0f0f0f0f-0000-4000-8000-000000000000").await, None);
    assert_eq!(
        fx.read("bad_id").await,
        None,
        "not an id: no call, no appointment"
    );
    let change = fx
        .change("0f0f0f0f-0000-4000-8000-000000000000", "1", cancel())
        .await;
    assert!(
        matches!(change, Err(AdapterError::NotFound { .. })),
        "{change:?}"
    );

    let unknown_site = fx
        .adapter
        .search_slots(&SlotSearchRequest {
            practice: OdsCode::parse("Z99999").unwrap(),
            start: utc(now),
            end: utc(now + 86_400),
            context: ctx(),
        })
        .await;
    assert!(
        matches!(unknown_site, Err(AdapterError::NotFound { .. })),
        "{unknown_site:?}"
    );

    let nobody = (0..)
        .filter_map(|stem| NhsNumber::from_stem(999_999_000 + stem))
        .find(|n| !fx.patients.contains(n))
        .unwrap();
    let listed = fx.list(nobody, now, now + 86_400).await;
    assert_eq!(listed, Err(AdapterError::PatientNotFound));
    let slot = fx.future_free()[0].id.clone();
    let booked = fx.book_for("nobody", &[&slot], nobody, None).await;
    assert_eq!(
        booked.map(|b| b.created),
        Err(AdapterError::PatientNotFound)
    );
}

#[tokio::test]
async fn native_faults_are_typed_errors_never_data() {
    let fx = start().await;
    let now = appointments::now();
    let slot = fx.future_free()[0].clone();
    let a = fx.book("faults", &[&slot.id]).await.unwrap().appointment;
    let search = SlotSearchRequest {
        practice: fx.ods.clone(),
        start: utc(now),
        end: utc(now + 86_400),
        context: ctx(),
    };
    for fault in [Fault::Garbage, Fault::Truncated, Fault::MisEncoded] {
        fx.sim.set_fault(fault);
        let r = fx.adapter.search_slots(&search).await;
        assert!(
            matches!(r, Err(AdapterError::InvalidNativeData { .. })),
            "{fault:?}: {r:?}"
        );
    }
    fx.sim.set_fault(Fault::MissingNhsNumber);
    let read = fx
        .adapter
        .read_appointment(&AppointmentRequest {
            practice: fx.ods.clone(),
            id: a.id.clone(),
            context: ctx(),
        })
        .await;
    assert!(
        matches!(read, Err(AdapterError::InvalidNativeData { .. })),
        "{read:?}"
    );
    fx.sim.set_fault(Fault::Status(503));
    let r = fx.adapter.search_slots(&search).await;
    assert!(matches!(r, Err(AdapterError::Unavailable { .. })), "{r:?}");
    fx.sim.set_fault(Fault::None);
}

/// A tiny Evolution that answers every slot search with one new slot and the same
/// `next_cursor`, forever; or (`refuse_cursor`) refuses that cursor as not its own.
async fn looping_stub(refuse_cursor: bool) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => request.extend_from_slice(&buf[..k]),
                }
            }
            let at = |t: &str| format!(r#"{{"value":"2026-01-05T{t}","precision":"datetime"}}"#);
            let body = format!(
                r#"{{"slots":[{{"slot_id":"slot-{n}","session_id":"s1","start":{},"end":{},
                "slot_type":"GP consultation","delivery_channel":"in_person","state":"free"}}],
                "sessions":[{{"session_id":"s1","name":"Morning surgery","clinician_id":"c1",
                "location_id":"l1","service":"GP consultation","start":{},"end":{}}}],
                "clinicians":[{{"clinician_id":"c1","title":"Dr","given_name":"Ann","family_name":"Lee","sex":"F"}}],
                "locations":[{{"location_id":"l1","name":"Main surgery"}}],
                "next_cursor":"c1f4.loop"}}"#,
                at("09:00:00"),
                at("09:10:00"),
                at("08:30:00"),
                at("12:00:00")
            );
            let (status, body) = if refuse_cursor && n > 0 {
                (
                    "400 Bad Request",
                    r#"{"status":400,"code":"INVALID_CURSOR","detail":"not ours"}"#.to_owned(),
                )
            } else {
                ("200 OK", body)
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    (format!("http://{addr}"), served)
}

#[tokio::test]
async fn a_cursor_that_goes_round_in_circles_is_bad_native_data_not_a_hang() {
    let (base, served) = looping_stub(false).await;
    let adapter = MicrotestAdapter::new(MicrotestConfig::new(base)).unwrap();
    let start = UtcDateTime {
        year: 2026,
        month: 1,
        day: 5,
        hour: 0,
        minute: 0,
        second: 0,
    };
    let req = SlotSearchRequest {
        practice: OdsCode::parse("M85001").unwrap(),
        start,
        end: UtcDateTime { day: 6, ..start },
        context: ctx(),
    };
    let search = adapter.search_slots(&req);
    let result = tokio::time::timeout(Duration::from_secs(10), search)
        .await
        .expect("the search ends");
    assert!(
        matches!(&result, Err(AdapterError::InvalidNativeData { detail, .. }) if detail.contains("repeats")),
        "{result:?}"
    );
    assert_eq!(
        served.load(Ordering::SeqCst),
        2,
        "stops at the first repeat"
    );
}

#[tokio::test]
async fn a_cursor_evolution_refuses_is_bad_native_data() {
    let (base, _) = looping_stub(true).await;
    let adapter = MicrotestAdapter::new(MicrotestConfig::new(base)).unwrap();
    let start = UtcDateTime {
        year: 2026,
        month: 1,
        day: 5,
        hour: 0,
        minute: 0,
        second: 0,
    };
    let req = SlotSearchRequest {
        practice: OdsCode::parse("M85001").unwrap(),
        start,
        end: UtcDateTime { day: 6, ..start },
        context: ctx(),
    };
    let result = adapter.search_slots(&req).await;
    assert!(
        matches!(&result, Err(AdapterError::InvalidNativeData { detail, .. }) if detail.contains("refused its own next_cursor")),
        "{result:?}"
    );
}
