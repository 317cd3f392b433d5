//! Appointment checks (`ADP-APT-*`): a practice's book reads back whole and the same
//! twice, a booking is in the next read, search and slot search, a retried booking books
//! nothing, racing bookings of one slot book it once, slots kept from third parties are
//! refused, a stale amend changes nothing, a cancel frees the slot for booking again, and
//! appointments booked at the practice are visible.
//!
//! ```ignore
//! let report = gp_adapter::harness::run_appointments(&adapter, &fixture).await;
//! report.assert_passed();
//! ```
//!
//! The checks book, amend and cancel in the first practice of the fixture, for
//! `fixture.patients[0]` (neither restricted nor dissenting): point them at a simulator
//! or a vendor test system, never at a live one. An adapter answering `NotSupported` has
//! every check reported as skipped.

use gp_fhir::{NhsNumber, OdsCode};

use super::write::join_all;
use super::{HarnessFixture, HarnessReport, ctx};
use crate::appointments::{
    AppointmentBook, AppointmentChange, AppointmentRequest, AppointmentStatus, BookRequest,
    BookSlot, Booked, BookedAppointment, ChangeAppointmentRequest, NewAppointment,
    PatientAppointmentsRequest, SlotSearchRequest, SlotStatus,
};
use crate::{Adapter, AdapterError, UtcDateTime};

/// Every appointment check, in the order they run (the ids a skip names).
pub const CHECKS: [(&str, &str); 11] = [
    (
        "ADP-APT-01",
        "a 14-day slot search answers slots of every status, each in its session (whose clinician and site are answered), ids [A-Za-z0-9.-]{1,56}, start before end, inside the range; the same search again answers the same",
    ),
    (
        "ADP-APT-02",
        "a booked free slot reads back as booked (slots, times, booking organisation, identifier, description, comment), is in the patient's appointments, and its slot is busy",
    ),
    (
        "ADP-APT-03",
        "a retried booking (same key) answers created: false and the same appointment, and books nothing more",
    ),
    (
        "ADP-APT-04",
        "20 concurrent bookings of one free slot with different keys: exactly one books it, 19 are SlotUnavailable naming the system",
    ),
    (
        "ADP-APT-05",
        "a slot kept from third parties (embargoed, practice only) is refused as Unprocessable and stays unavailable",
    ),
    (
        "ADP-APT-06",
        "an amend at the current version changes description and comment, with a new version",
    ),
    (
        "ADP-APT-07",
        "an amend at a stale version is VersionConflict and changes nothing",
    ),
    (
        "ADP-APT-08",
        "a cancel records the reason, frees the slot in the next slot search, and the slot can be booked again",
    ),
    (
        "ADP-APT-09",
        "amending a cancelled appointment is Unprocessable",
    ),
    (
        "ADP-APT-10",
        "unknowns: an appointment read is None, a change is NotFound, a practice's slot search is NotFound, a patient's appointments are PatientNotFound",
    ),
    (
        "ADP-APT-11",
        "appointments booked at the practice (no booking organisation) are in its patients' appointments and read by id",
    ),
];

/// The identifier space the harness books under, as a supplier's.
pub const BOOKINGS_SYSTEM: &str = "https://harness.example/bookings";

/// The booking organisation the harness books as.
pub const BOOKED_BY: &str = "X9H001";

/// How many bookings race for one slot.
const RACERS: usize = 20;

/// Slots the harness books start at least this long from now.
const LEAD_SECONDS: i64 = 3600;

/// How many days a slot search covers.
const RANGE_DAYS: i64 = 14;

fn description(id: &str) -> &'static str {
    CHECKS
        .iter()
        .find(|(i, _)| *i == id)
        .map_or("", |(_, d)| *d)
}

/// Records check `id` with `failures`.
fn add(report: &mut HarnessReport, id: &'static str, failures: Vec<String>) {
    report.add(id, description(id), failures);
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i32, m: u8, d: u8) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let part = |v: i64| u8::try_from(v).unwrap_or(0);
    (i32::try_from(y).unwrap_or(i32::MAX), part(m), part(d))
}

/// Seconds since 1970-01-01T00:00:00Z of a UTC instant.
pub fn unix_seconds(t: UtcDateTime) -> i64 {
    days_from_civil(t.year, t.month, t.day) * 86_400
        + i64::from(t.hour) * 3600
        + i64::from(t.minute) * 60
        + i64::from(t.second)
}

/// The UTC instant `secs` after 1970-01-01T00:00:00Z.
pub fn from_unix_seconds(secs: i64) -> UtcDateTime {
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    let part = |v: i64| u8::try_from(v).unwrap_or(0);
    UtcDateTime {
        year,
        month,
        day,
        hour: part(s / 3600),
        minute: part(s % 3600 / 60),
        second: part(s % 60),
    }
}

pub(super) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `[A-Za-z0-9.-]{1,56}`: a native id the gateway can prefix with an ODS code.
fn id_ok(id: &str) -> bool {
    (1..=56).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// The practice, range and patient every check works with.
struct Scene<'a> {
    adapter: &'a dyn Adapter,
    practice: OdsCode,
    patient: NhsNumber,
    start: UtcDateTime,
    end: UtcDateTime,
    /// Makes the harness's keys unique to this run.
    run: i64,
    /// [`BOOKED_BY`].
    booked_by: OdsCode,
}

impl Scene<'_> {
    async fn slots(&self) -> Result<AppointmentBook, AdapterError> {
        self.adapter
            .search_slots(&SlotSearchRequest {
                practice: self.practice.clone(),
                start: self.start,
                end: self.end,
                context: ctx(),
            })
            .await
    }

    async fn status_of(&self, slot: &str) -> Result<Option<SlotStatus>, AdapterError> {
        let book = self.slots().await?;
        Ok(book.slots.iter().find(|s| s.id == slot).map(|s| s.status))
    }

    async fn read(&self, id: &str) -> Result<Option<BookedAppointment>, AdapterError> {
        self.adapter
            .read_appointment(&AppointmentRequest {
                practice: self.practice.clone(),
                id: id.to_owned(),
                context: ctx(),
            })
            .await
    }

    async fn appointments_of(
        &self,
        nhs: NhsNumber,
    ) -> Result<Vec<BookedAppointment>, AdapterError> {
        self.adapter
            .search_appointments(&PatientAppointmentsRequest {
                practice: self.practice.clone(),
                nhs_number: nhs,
                start: self.start,
                end: self.end,
                context: ctx(),
            })
            .await
    }

    fn key(&self, n: &str) -> String {
        format!("harness-{}-{n}", self.run)
    }

    fn booking(&self, key: &str, slot: &BookSlot) -> BookRequest {
        BookRequest {
            practice: self.practice.clone(),
            appointment: NewAppointment {
                key: key.to_owned(),
                identifier: Some((BOOKINGS_SYSTEM.to_owned(), key.to_owned())),
                nhs_number: self.patient,
                slots: vec![slot.id.clone()],
                description: Some("Harness review".into()),
                comment: Some("Booked by the adapter conformance harness".into()),
                booked_by: self.booked_by.clone(),
                booked_by_name: "Adapter Harness".into(),
            },
            context: ctx(),
        }
    }

    async fn book(&self, req: &BookRequest) -> Result<Booked, AdapterError> {
        self.adapter.book_appointment(req).await
    }

    async fn change(
        &self,
        id: &str,
        version: &str,
        change: AppointmentChange,
    ) -> Result<BookedAppointment, AdapterError> {
        self.adapter
            .change_appointment(&ChangeAppointmentRequest {
                practice: self.practice.clone(),
                id: id.to_owned(),
                expected_version: version.to_owned(),
                change,
                context: ctx(),
            })
            .await
    }
}

/// Runs the appointment checks in the first practice of `fixture`.
pub async fn run_appointments(adapter: &dyn Adapter, fixture: &HarnessFixture) -> HarnessReport {
    let mut report = HarnessReport::default();
    let Some((patient, practice)) = fixture.patients.first().cloned() else {
        report.add(
            "ADP-APT-00",
            "the fixture names a patient to book for",
            vec!["fixture.patients is empty".into()],
        );
        return report;
    };
    let booked_by = match OdsCode::parse(BOOKED_BY) {
        Ok(ods) => ods,
        Err(e) => {
            report.add(
                "ADP-APT-00",
                "the harness books as a valid ODS code",
                vec![format!("{BOOKED_BY}: {e}")],
            );
            return report;
        }
    };
    let run = now();
    let scene = Scene {
        adapter,
        practice,
        patient,
        start: from_unix_seconds(run),
        end: from_unix_seconds(run + RANGE_DAYS * 86_400),
        run,
        booked_by,
    };
    let answer = scene.slots().await;
    let unsupported = matches!(answer, Err(AdapterError::NotSupported { .. }));
    if unsupported == adapter.manages_appointments() {
        report.add(
            "ADP-APT-00",
            "manages_appointments() agrees with what the appointment methods do",
            vec![format!(
                "manages_appointments() is {} but search_slots answered {}",
                adapter.manages_appointments(),
                if unsupported {
                    "NotSupported"
                } else {
                    "as an implemented method"
                }
            )],
        );
        return report;
    }
    let book = match answer {
        Err(AdapterError::NotSupported { what, .. }) => {
            let why = format!("the adapter does not support {what}");
            for (id, what) in CHECKS {
                report.skip(id, what, &why);
            }
            return report;
        }
        other => other,
    };
    let book = match book {
        Ok(book) => {
            let mut failures = shape(&book, &scene);
            match scene.slots().await {
                Ok(again) if again == book => {}
                Ok(_) => failures.push("a second identical slot search answered otherwise".into()),
                Err(e) => failures.push(format!("a second slot search failed: {e}")),
            }
            add(&mut report, "ADP-APT-01", failures);
            book
        }
        Err(e) => {
            add(
                &mut report,
                "ADP-APT-01",
                vec![format!("search_slots failed: {e}")],
            );
            for (id, what) in CHECKS.iter().skip(1) {
                report.add(id, what, vec!["not run: the slot search failed".into()]);
            }
            return report;
        }
    };

    let lead = scene.run + LEAD_SECONDS;
    let mut free = book
        .slots
        .iter()
        .filter(|s| s.status == SlotStatus::Free && unix_seconds(s.start) > lead);
    let (first, second) = (free.next().cloned(), free.next().cloned());
    match first {
        Some(slot) => lifecycle(&mut report, &scene, &slot).await,
        None => {
            for id in [
                "ADP-APT-02",
                "ADP-APT-03",
                "ADP-APT-06",
                "ADP-APT-07",
                "ADP-APT-08",
                "ADP-APT-09",
            ] {
                add(
                    &mut report,
                    id,
                    vec!["no free slot starting an hour from now or later in 14 days".into()],
                );
            }
        }
    }
    let race = match second {
        Some(slot) => race(&scene, &slot).await,
        None => vec!["no second free slot starting an hour from now or later in 14 days".into()],
    };
    add(&mut report, "ADP-APT-04", race);
    add(&mut report, "ADP-APT-05", kept(&scene, &book).await);
    add(&mut report, "ADP-APT-10", unknowns(&scene, fixture).await);
    add(
        &mut report,
        "ADP-APT-11",
        practice_booked(&scene, fixture).await,
    );
    report
}

/// ADP-APT-01's structural part.
fn shape(book: &AppointmentBook, scene: &Scene<'_>) -> Vec<String> {
    let mut failures = Vec::new();
    for (status, name) in [
        (SlotStatus::Free, "Free"),
        (SlotStatus::Busy, "Busy"),
        (SlotStatus::Unavailable, "Unavailable"),
    ] {
        if !book.slots.iter().any(|s| s.status == status) {
            failures.push(format!(
                "no {name} slot in 14 days at {}: every status must be answered",
                scene.practice
            ));
        }
    }
    let ids = book
        .slots
        .iter()
        .map(|s| ("slot", &s.id))
        .chain(book.sessions.iter().map(|s| ("session", &s.id)))
        .chain(book.clinicians.iter().map(|c| ("clinician", &c.id)))
        .chain(book.locations.iter().map(|l| ("location", &l.id)));
    for (what, id) in ids {
        if !id_ok(id) {
            failures.push(format!("{what} id {id:?} is not [A-Za-z0-9.-]{{1,56}}"));
        }
    }
    for s in &book.slots {
        if s.start >= s.end {
            failures.push(format!(
                "slot {}: start {:?} is not before end",
                s.id, s.start
            ));
        }
        if s.start < scene.start || s.start >= scene.end {
            failures.push(format!(
                "slot {} starts at {}, outside the range searched ({} to {})",
                s.id,
                s.start.to_rfc3339(),
                scene.start.to_rfc3339(),
                scene.end.to_rfc3339()
            ));
        }
        match book.sessions.iter().find(|x| x.id == s.session) {
            None => failures.push(format!(
                "slot {}: its session {} is not answered",
                s.id, s.session
            )),
            Some(x) if s.start < x.start || s.end > x.end => failures.push(format!(
                "slot {} ({} to {}) lies outside its session {} ({} to {})",
                s.id,
                s.start.to_rfc3339(),
                s.end.to_rfc3339(),
                x.id,
                x.start.to_rfc3339(),
                x.end.to_rfc3339()
            )),
            Some(_) => {}
        }
    }
    for x in &book.sessions {
        if let Some(c) = &x.clinician
            && !book.clinicians.iter().any(|k| k.id == *c)
        {
            failures.push(format!(
                "session {}: its clinician {c} is not answered",
                x.id
            ));
        }
        if !book.locations.iter().any(|l| l.id == x.location) {
            failures.push(format!(
                "session {}: its location {} is not answered",
                x.id, x.location
            ));
        }
    }
    failures
}

/// Book, retry, amend, stale amend, cancel, rebook, amend cancelled: ADP-APT-02, 03, 06,
/// 07, 08 and 09 on one slot.
async fn lifecycle(report: &mut HarnessReport, scene: &Scene<'_>, slot: &BookSlot) {
    let req = scene.booking(&scene.key("book"), slot);
    let booked = scene.book(&req).await;
    let mut failures = Vec::new();
    let appointment = match &booked {
        Ok(b) => {
            if !b.created {
                failures.push("a first booking answered created: false".into());
            }
            failures.extend(booked_back(scene, &req, slot, &b.appointment).await);
            Some(b.appointment.clone())
        }
        Err(e) => {
            failures.push(format!("booking free slot {} failed: {e}", slot.id));
            None
        }
    };
    add(report, "ADP-APT-02", failures);
    let Some(appointment) = appointment else {
        for id in [
            "ADP-APT-03",
            "ADP-APT-06",
            "ADP-APT-07",
            "ADP-APT-08",
            "ADP-APT-09",
        ] {
            add(
                report,
                id,
                vec!["not run: ADP-APT-02's booking failed".into()],
            );
        }
        return;
    };

    add(
        report,
        "ADP-APT-03",
        retried(scene, &req, &appointment).await,
    );

    // ADP-APT-06: amend at the current version.
    let mut failures = Vec::new();
    let amend = AppointmentChange::Amend {
        description: Some("Harness review, amended".into()),
        comment: Some("Amended by the adapter conformance harness".into()),
    };
    let current = match scene
        .change(&appointment.id, &appointment.version, amend)
        .await
    {
        Ok(a) => {
            if a.version == appointment.version {
                failures.push(format!("the version did not change from {}", a.version));
            }
            match scene.read(&appointment.id).await {
                Ok(Some(read)) => {
                    if read.description.as_deref() != Some("Harness review, amended")
                        || read.comment.as_deref()
                            != Some("Amended by the adapter conformance harness")
                    {
                        failures.push(format!(
                            "the amend is not in the next read: description {:?}, comment {:?}",
                            read.description, read.comment
                        ));
                    }
                    if read.version != a.version {
                        failures.push(format!(
                            "the amend answered version {}, the next read has {}",
                            a.version, read.version
                        ));
                    }
                }
                Ok(None) => failures.push("the amended appointment no longer reads".into()),
                Err(e) => failures.push(format!("read after the amend failed: {e}")),
            }
            a
        }
        Err(e) => {
            failures.push(format!("amend at the current version failed: {e}"));
            appointment.clone()
        }
    };
    add(report, "ADP-APT-06", failures);

    // ADP-APT-07: amend at the version the booking answered, now stale.
    let mut failures = Vec::new();
    if current.version == appointment.version {
        failures.push("not run: ADP-APT-06's amend did not give a new version".into());
    } else {
        let before = scene.read(&appointment.id).await;
        let stale = AppointmentChange::Amend {
            description: Some("Stale amend".into()),
            comment: None,
        };
        match scene
            .change(&appointment.id, &appointment.version, stale)
            .await
        {
            Err(AdapterError::VersionConflict { .. }) => {}
            Err(e) => failures.push(format!("a stale amend gave {e:?}, not VersionConflict")),
            Ok(a) => failures.push(format!(
                "a stale amend was accepted (version {}, description {:?})",
                a.version, a.description
            )),
        }
        let after = scene.read(&appointment.id).await;
        if before.is_ok() && before != after {
            failures.push("a refused stale amend changed the appointment".into());
        }
    }
    add(report, "ADP-APT-07", failures);

    // ADP-APT-08: cancel frees the slot; it books again.
    let mut failures = Vec::new();
    let reason = "Cancelled by the adapter conformance harness";
    let latest = match scene.read(&appointment.id).await {
        Ok(Some(a)) => a,
        _ => current,
    };
    let cancelled = scene
        .change(
            &appointment.id,
            &latest.version,
            AppointmentChange::Cancel {
                reason: reason.into(),
            },
        )
        .await;
    match &cancelled {
        Ok(a) => {
            if a.status != AppointmentStatus::Cancelled
                || a.cancellation_reason.as_deref() != Some(reason)
            {
                failures.push(format!(
                    "the cancel answered status {:?}, reason {:?}",
                    a.status, a.cancellation_reason
                ));
            }
            match scene.read(&appointment.id).await {
                Ok(Some(r)) if r.status == AppointmentStatus::Cancelled => {}
                other => failures.push(format!(
                    "after the cancel the appointment reads {other:?}, not cancelled"
                )),
            }
            match scene.status_of(&slot.id).await {
                Ok(Some(SlotStatus::Free)) => {
                    let again = scene.booking(&scene.key("rebook"), slot);
                    match scene.book(&again).await {
                        Ok(b) if b.created => {}
                        Ok(_) => {
                            failures.push("rebooking the freed slot answered created: false".into())
                        }
                        Err(e) => failures.push(format!("rebooking the freed slot failed: {e}")),
                    }
                }
                Ok(status) => failures.push(format!(
                    "after the cancel slot {} is {status:?} in the slot search, not Free",
                    slot.id
                )),
                Err(e) => failures.push(format!("slot search after the cancel failed: {e}")),
            }
        }
        Err(e) => failures.push(format!("cancel at the current version failed: {e}")),
    }
    add(report, "ADP-APT-08", failures);

    // ADP-APT-09: a cancelled appointment cannot change.
    let mut failures = Vec::new();
    match &cancelled {
        Ok(c) => {
            let amend = AppointmentChange::Amend {
                description: Some("Amend after cancel".into()),
                comment: None,
            };
            match scene.change(&appointment.id, &c.version, amend).await {
                Err(AdapterError::Unprocessable { .. }) => {}
                Err(e) => failures.push(format!(
                    "amending a cancelled appointment gave {e:?}, not Unprocessable"
                )),
                Ok(a) => failures.push(format!(
                    "amending a cancelled appointment was accepted (status {:?})",
                    a.status
                )),
            }
        }
        Err(_) => failures.push("not run: ADP-APT-08's cancel failed".into()),
    }
    add(report, "ADP-APT-09", failures);
}

/// ADP-APT-02 after the booking: what the booking answered and the next read, search
/// and slot search hold.
async fn booked_back(
    scene: &Scene<'_>,
    req: &BookRequest,
    slot: &BookSlot,
    answered: &BookedAppointment,
) -> Vec<String> {
    let mut failures = Vec::new();
    let read = match scene.read(&answered.id).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            return vec![format!(
                "the booked appointment {} does not read back",
                answered.id
            )];
        }
        Err(e) => return vec![format!("reading the booked appointment failed: {e}")],
    };
    let asked = &req.appointment;
    let checks = [
        (
            read.status == AppointmentStatus::Booked,
            "status",
            format!("{:?}", read.status),
        ),
        (
            read.slots == asked.slots,
            "slots",
            format!("{:?}", read.slots),
        ),
        (read.start == slot.start, "start", read.start.to_rfc3339()),
        (read.end == slot.end, "end", read.end.to_rfc3339()),
        (
            read.nhs_number == asked.nhs_number,
            "patient",
            read.nhs_number.to_string(),
        ),
        (
            read.booked_by.as_ref() == Some(&asked.booked_by),
            "booking organisation",
            format!("{:?}", read.booked_by),
        ),
        (
            read.identifier == asked.identifier,
            "identifier",
            format!("{:?}", read.identifier),
        ),
        (
            read.description == asked.description,
            "description",
            format!("{:?}", read.description),
        ),
        (
            read.comment == asked.comment,
            "comment",
            format!("{:?}", read.comment),
        ),
        (
            read.session == slot.session,
            "session",
            read.session.clone(),
        ),
        (read.id == answered.id, "id", read.id.clone()),
        (
            read.version == answered.version,
            "version (the booking's)",
            read.version.clone(),
        ),
    ];
    for (ok, what, got) in checks {
        if !ok {
            failures.push(format!(
                "appointment {}: {what} reads back as {got}",
                answered.id
            ));
        }
    }
    match scene.appointments_of(scene.patient).await {
        Ok(found) if found.iter().any(|a| a.id == answered.id) => {}
        Ok(found) => failures.push(format!(
            "the patient's appointments ({} in 14 days) do not list the booked {}",
            found.len(),
            answered.id
        )),
        Err(e) => failures.push(format!("search_appointments failed: {e}")),
    }
    match scene.status_of(&slot.id).await {
        Ok(Some(SlotStatus::Busy)) => {}
        Ok(status) => failures.push(format!(
            "after the booking slot {} is {status:?} in the slot search, not Busy",
            slot.id
        )),
        Err(e) => failures.push(format!("slot search after the booking failed: {e}")),
    }
    failures
}

/// ADP-APT-03: the same booking again.
async fn retried(scene: &Scene<'_>, req: &BookRequest, first: &BookedAppointment) -> Vec<String> {
    let mut failures = Vec::new();
    let busy = |b: &AppointmentBook| {
        b.slots
            .iter()
            .filter(|s| s.status == SlotStatus::Busy)
            .count()
    };
    let before = (
        scene.appointments_of(scene.patient).await.map(|a| a.len()),
        scene.slots().await.map(|b| busy(&b)),
    );
    match scene.book(req).await {
        Ok(again) => {
            if again.created {
                failures.push("a retry with the same key answered created: true".into());
            }
            if again.appointment.id != first.id {
                failures.push(format!(
                    "a retry answered appointment {}, not the first booking's {}",
                    again.appointment.id, first.id
                ));
            }
        }
        Err(e) => failures.push(format!("a retried booking failed: {e}")),
    }
    let after = (
        scene.appointments_of(scene.patient).await.map(|a| a.len()),
        scene.slots().await.map(|b| busy(&b)),
    );
    if before != after {
        failures.push(format!(
            "a retry changed (the patient's appointments, busy slots) from {before:?} to {after:?}"
        ));
    }
    failures
}

/// ADP-APT-04: [`RACERS`] bookings of one slot at once.
async fn race(scene: &Scene<'_>, slot: &BookSlot) -> Vec<String> {
    let mut failures = Vec::new();
    let system = scene.adapter.system();
    let reqs: Vec<BookRequest> = (0..RACERS)
        .map(|n| scene.booking(&scene.key(&format!("race-{n}")), slot))
        .collect();
    let results = join_all(reqs.iter().map(|r| scene.book(r)).collect()).await;
    let won: Vec<&Booked> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    if won.len() != 1 {
        failures.push(format!(
            "{RACERS} concurrent bookings of slot {} booked it {} times, not once",
            slot.id,
            won.len()
        ));
    }
    let wrong: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .filter(|e| !matches!(e, AdapterError::SlotUnavailable { system: s, .. } if *s == system))
        .map(|e| format!("{e:?}"))
        .collect();
    if !wrong.is_empty() {
        failures.push(format!(
            "losing bookings answered other than SlotUnavailable from {system}: {}",
            wrong.join("; ")
        ));
    }
    match scene.appointments_of(scene.patient).await {
        Ok(found) => {
            let holding = found
                .iter()
                .filter(|a| a.status == AppointmentStatus::Booked && a.slots.contains(&slot.id))
                .count();
            if holding != 1 {
                failures.push(format!(
                    "after the race {holding} booked appointments hold slot {}, not 1",
                    slot.id
                ));
            }
        }
        Err(e) => failures.push(format!("search_appointments after the race failed: {e}")),
    }
    failures
}

/// ADP-APT-05: a slot kept from third parties.
async fn kept(scene: &Scene<'_>, book: &AppointmentBook) -> Vec<String> {
    let lead = scene.run + LEAD_SECONDS;
    let Some(slot) = book
        .slots
        .iter()
        .find(|s| s.status == SlotStatus::Unavailable && unix_seconds(s.start) > lead)
    else {
        return vec!["no Unavailable slot starting an hour from now or later in 14 days".into()];
    };
    let mut failures = Vec::new();
    match scene.book(&scene.booking(&scene.key("kept"), slot)).await {
        Err(AdapterError::Unprocessable { .. }) => {}
        Err(e) => failures.push(format!(
            "booking Unavailable slot {} gave {e:?}, not Unprocessable",
            slot.id
        )),
        Ok(b) => failures.push(format!(
            "Unavailable slot {} was booked (appointment {})",
            slot.id, b.appointment.id
        )),
    }
    match scene.status_of(&slot.id).await {
        Ok(Some(SlotStatus::Unavailable)) => {}
        other => failures.push(format!(
            "after the refusal slot {} is {other:?}, not Unavailable",
            slot.id
        )),
    }
    failures
}

/// ADP-APT-10: what does not exist.
async fn unknowns(scene: &Scene<'_>, fixture: &HarnessFixture) -> Vec<String> {
    let mut failures = Vec::new();
    let nobody = "00000000-0000-4000-8000-000000000000";
    match scene.read(nobody).await {
        Ok(None) => {}
        other => failures.push(format!(
            "reading unknown appointment {nobody} gave {other:?}, not Ok(None)"
        )),
    }
    let cancel = AppointmentChange::Cancel {
        reason: "Unknown".into(),
    };
    match scene.change(nobody, "1", cancel).await {
        Err(AdapterError::NotFound { .. }) => {}
        other => failures.push(format!(
            "changing unknown appointment {nobody} gave {other:?}, not NotFound"
        )),
    }
    let known: Vec<&OdsCode> = fixture.patients.iter().map(|(_, o)| o).collect();
    let practice = ["Y99999", "Y99998", "Y99997"]
        .into_iter()
        .filter_map(|c| OdsCode::parse(c).ok())
        .find(|c| !known.contains(&c) && *c != fixture.unknown.1);
    if let Some(practice) = practice {
        let req = SlotSearchRequest {
            practice: practice.clone(),
            start: scene.start,
            end: scene.end,
            context: ctx(),
        };
        match scene.adapter.search_slots(&req).await {
            Err(AdapterError::NotFound { .. }) => {}
            other => failures.push(format!(
                "the slot search of unknown practice {practice} gave {:?}, not NotFound",
                other.map(|b| b.slots.len())
            )),
        }
    }
    let (nhs, ods) = &fixture.unknown;
    let req = PatientAppointmentsRequest {
        practice: ods.clone(),
        nhs_number: *nhs,
        start: scene.start,
        end: scene.end,
        context: ctx(),
    };
    match scene.adapter.search_appointments(&req).await {
        Err(AdapterError::PatientNotFound) => {}
        other => failures.push(format!(
            "the appointments of unknown patient {nhs} at {ods} gave {:?}, not PatientNotFound",
            other.map(|a| a.len())
        )),
    }
    failures
}

/// ADP-APT-11: appointments the practice booked itself, across the fixture's patients
/// of the practice.
async fn practice_booked(scene: &Scene<'_>, fixture: &HarnessFixture) -> Vec<String> {
    let mut failures = Vec::new();
    let mut seen = 0;
    for (nhs, ods) in &fixture.patients {
        if *ods != scene.practice {
            continue;
        }
        match scene.appointments_of(*nhs).await {
            Ok(found) => {
                for a in found.iter().filter(|a| a.booked_by.is_none()) {
                    seen += 1;
                    if a.nhs_number != *nhs {
                        failures.push(format!(
                            "appointment {} is among {nhs}'s but names {}",
                            a.id, a.nhs_number
                        ));
                    }
                    match scene.read(&a.id).await {
                        Ok(Some(r))
                            if (r.id.as_str(), r.status, r.start, r.end, r.nhs_number)
                                == (a.id.as_str(), a.status, a.start, a.end, a.nhs_number) => {}
                        Ok(Some(r)) => failures.push(format!(
                            "appointment {} reads as {:?} {} to {} for {}, the patient's search answers {:?} {} to {} for {}",
                            a.id,
                            r.status,
                            r.start.to_rfc3339(),
                            r.end.to_rfc3339(),
                            r.nhs_number,
                            a.status,
                            a.start.to_rfc3339(),
                            a.end.to_rfc3339(),
                            a.nhs_number
                        )),
                        other => failures.push(format!(
                            "appointment {} (booked at the practice) reads as {other:?}",
                            a.id
                        )),
                    }
                }
            }
            Err(e) => failures.push(format!("search_appointments for {nhs} failed: {e}")),
        }
    }
    if seen == 0 && failures.is_empty() {
        failures.push(format!(
            "no appointment booked at the practice for any fixture patient of {} in 14 days, so the check tested nothing",
            scene.practice
        ));
    }
    failures
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use gp_sim::SystemKind;
    use gp_sim::appointments::{
        Appointment, AppointmentState, BookError, BookingOrganisation, Change, NewBooking,
        SlotState,
    };

    use super::*;
    use crate::appointments::{BookClinician, BookLocation, BookSession};
    use crate::harness::{Outcome, sim};
    use crate::{GpSystem, PatientRecord, PatientRequest, SearchPage, SearchRequest};

    const SYSTEM: GpSystem = crate::test_systems::EMIS;

    /// How a fake breaks the contract.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Flaw {
        None,
        /// Books a taken slot again.
        DoubleBooks,
        /// Applies a change whatever version it was made against.
        IgnoresVersion,
        /// Leaves a cancelled appointment's slot busy.
        NeverFrees,
    }

    /// An adapter over gp-sim's appointment books, honest unless `flaw` says otherwise.
    struct Fake {
        store: gp_sim::SimStore,
        flaw: Flaw,
    }

    fn fake(flaw: Flaw) -> (Fake, HarnessFixture) {
        let population = sim::population();
        let fixture = sim::fixture(&population, SystemKind::Emis);
        let store = gp_sim::SimStore::new(population);
        (Fake { store, flaw }, fixture)
    }

    fn refused(e: BookError) -> AdapterError {
        let detail = e.to_string();
        match e {
            BookError::PracticeNotFound(_) => AdapterError::NotFound {
                system: SYSTEM,
                what: "such practice".into(),
            },
            BookError::AppointmentNotFound(_) => AdapterError::NotFound {
                system: SYSTEM,
                what: "such appointment".into(),
            },
            BookError::PatientNotFound(_) => AdapterError::PatientNotFound,
            BookError::SlotTaken(_) | BookError::SlotChanged(_) => AdapterError::SlotUnavailable {
                system: SYSTEM,
                detail,
            },
            BookError::Conflict(_) => AdapterError::VersionConflict {
                system: SYSTEM,
                detail,
            },
            _ => AdapterError::Unprocessable {
                system: SYSTEM,
                detail,
            },
        }
    }

    impl Fake {
        fn ods<'a>(&self, practice: &'a OdsCode) -> &'a str {
            practice.as_str()
        }

        fn appointment(
            &self,
            ods: &str,
            a: Appointment,
        ) -> Result<BookedAppointment, AdapterError> {
            let (site, clinician, slot) = self
                .store
                .with_book(SystemKind::Emis, ods, |_, book| {
                    let session = book.sessions.iter().find(|s| s.id == a.session);
                    let slot = a.slots.first().and_then(|id| book.slot(id)).cloned();
                    (
                        session.map(|s| s.site.clone()),
                        session.map(|s| s.clinician.clone()),
                        slot,
                    )
                })
                .map_err(refused)?;
            Ok(BookedAppointment {
                id: a.id,
                version: a.version.to_string(),
                nhs_number: NhsNumber::parse(&a.nhs).map_err(|e| {
                    AdapterError::InvalidNativeData {
                        system: SYSTEM,
                        detail: e.to_string(),
                    }
                })?,
                status: match a.state {
                    AppointmentState::Booked => AppointmentStatus::Booked,
                    AppointmentState::Cancelled => AppointmentStatus::Cancelled,
                },
                slots: a.slots,
                session: a.session,
                location: site,
                clinician,
                start: from_unix_seconds(a.start),
                end: from_unix_seconds(a.end),
                slot_type: slot.as_ref().map(|s| s.slot_type.clone()),
                channel: slot.and_then(|s| {
                    crate::appointments::DeliveryChannel::from_code(s.channel.code())
                }),
                description: a.description,
                comment: a.comment,
                cancellation_reason: a.cancellation_reason,
                created: from_unix_seconds(a.created),
                booked_by: a.booked_by.and_then(|b| OdsCode::parse(&b.ods).ok()),
                identifier: a.external_id.map(|e| (e.system, e.value)),
            })
        }
    }

    #[async_trait]
    impl Adapter for Fake {
        fn system(&self) -> GpSystem {
            SYSTEM
        }
        fn manages_appointments(&self) -> bool {
            true
        }
        async fn read_patient(&self, _: &PatientRequest) -> Result<PatientRecord, AdapterError> {
            Err(AdapterError::PatientNotFound)
        }
        async fn search(&self, _: &SearchRequest) -> Result<SearchPage, AdapterError> {
            Err(AdapterError::PatientNotFound)
        }

        async fn search_slots(
            &self,
            req: &SlotSearchRequest,
        ) -> Result<AppointmentBook, AdapterError> {
            let view = self
                .store
                .book_view(
                    SystemKind::Emis,
                    self.ods(&req.practice),
                    unix_seconds(req.start),
                    unix_seconds(req.end),
                )
                .map_err(refused)?;
            Ok(AppointmentBook {
                slots: view
                    .slots
                    .into_iter()
                    .map(|s| BookSlot {
                        id: s.id,
                        session: s.session,
                        start: from_unix_seconds(s.start),
                        end: from_unix_seconds(s.end),
                        slot_type: s.slot_type,
                        channel: crate::appointments::DeliveryChannel::InPerson,
                        status: match s.state {
                            SlotState::Free => SlotStatus::Free,
                            SlotState::Booked => SlotStatus::Busy,
                            SlotState::Embargoed | SlotState::PracticeOnly => {
                                SlotStatus::Unavailable
                            }
                        },
                    })
                    .collect(),
                sessions: view
                    .sessions
                    .into_iter()
                    .map(|s| BookSession {
                        id: s.id,
                        name: s.name,
                        clinician: Some(s.clinician),
                        location: s.site,
                        service: Some(s.service),
                        start: from_unix_seconds(s.start),
                        end: from_unix_seconds(s.end),
                    })
                    .collect(),
                clinicians: view
                    .clinicians
                    .into_iter()
                    .map(|c| BookClinician {
                        id: c.id,
                        prefix: Some(c.title),
                        given: c.given,
                        family: c.family,
                        gender: None,
                        sds_user_id: Some(c.sds_user_id),
                        role: None,
                    })
                    .collect(),
                locations: view
                    .sites
                    .into_iter()
                    .map(|s| BookLocation {
                        id: s.id,
                        name: s.name,
                        lines: s.lines,
                        town: Some(s.town),
                        postcode: Some(s.postcode),
                    })
                    .collect(),
            })
        }

        async fn book_appointment(&self, req: &BookRequest) -> Result<Booked, AdapterError> {
            let ods = self.ods(&req.practice);
            let new = &req.appointment;
            let booking = NewBooking {
                key: Some(new.key.clone()),
                nhs: new.nhs_number.to_string(),
                slots: new.slots.clone(),
                slot_versions: None,
                description: new.description.clone(),
                comment: new.comment.clone(),
                booked_by: Some(BookingOrganisation {
                    ods: new.booked_by.to_string(),
                    name: new.booked_by_name.clone(),
                }),
                external_id: new
                    .identifier
                    .clone()
                    .map(|(system, value)| gp_sim::ExternalId { system, value }),
            };
            match self.store.book_appointment(SystemKind::Emis, ods, booking) {
                Ok((a, created)) => Ok(Booked {
                    appointment: self.appointment(ods, a)?,
                    created,
                }),
                Err(BookError::SlotTaken(slot)) if self.flaw == Flaw::DoubleBooks => {
                    // The flaw: a second appointment in a taken slot.
                    let first = self
                        .store
                        .with_book(SystemKind::Emis, ods, |_, book| {
                            book.appointments
                                .iter()
                                .find(|a| a.slots.contains(&slot))
                                .cloned()
                        })
                        .map_err(refused)?
                        .ok_or_else(|| refused(BookError::SlotNotFound(slot)))?;
                    let mut twin = self.appointment(ods, first)?;
                    twin.id = format!("twin-{}", new.key);
                    Ok(Booked {
                        appointment: twin,
                        created: true,
                    })
                }
                Err(e) => Err(refused(e)),
            }
        }

        async fn read_appointment(
            &self,
            req: &AppointmentRequest,
        ) -> Result<Option<BookedAppointment>, AdapterError> {
            let ods = self.ods(&req.practice);
            match self
                .store
                .appointment(SystemKind::Emis, ods, &req.id)
                .map_err(refused)?
            {
                Some(a) => Ok(Some(self.appointment(ods, a)?)),
                None => Ok(None),
            }
        }

        async fn search_appointments(
            &self,
            req: &PatientAppointmentsRequest,
        ) -> Result<Vec<BookedAppointment>, AdapterError> {
            let ods = self.ods(&req.practice);
            let found = self
                .store
                .appointments_of(
                    SystemKind::Emis,
                    ods,
                    &req.nhs_number.to_string(),
                    unix_seconds(req.start),
                    unix_seconds(req.end),
                )
                .map_err(refused)?;
            found
                .into_iter()
                .map(|a| self.appointment(ods, a))
                .collect()
        }

        async fn change_appointment(
            &self,
            req: &ChangeAppointmentRequest,
        ) -> Result<BookedAppointment, AdapterError> {
            let ods = self.ods(&req.practice);
            let expected = match self.flaw {
                Flaw::IgnoresVersion => None,
                _ => Some(req.expected_version.parse().map_err(|_| {
                    AdapterError::VersionConflict {
                        system: SYSTEM,
                        detail: format!("no version {}", req.expected_version),
                    }
                })?),
            };
            let change = match &req.change {
                AppointmentChange::Amend {
                    description,
                    comment,
                } => Change::Amend {
                    description: description.clone(),
                    comment: comment.clone(),
                },
                AppointmentChange::Cancel { reason } => Change::Cancel {
                    reason: reason.clone(),
                },
            };
            let a = self
                .store
                .change_appointment(SystemKind::Emis, ods, &req.id, expected, change)
                .map_err(refused)?;
            if self.flaw == Flaw::NeverFrees && a.state == AppointmentState::Cancelled {
                // The flaw: the slot stays taken after the cancel.
                let held = a.slots.clone();
                self.store
                    .with_book(SystemKind::Emis, ods, |_, book| {
                        for s in book.slots.iter_mut().filter(|s| held.contains(&s.id)) {
                            s.state = SlotState::Booked;
                        }
                    })
                    .map_err(refused)?;
            }
            self.appointment(ods, a)
        }
    }

    /// Reads and writes nothing, and does not manage appointments.
    struct NoBook;

    #[async_trait]
    impl Adapter for NoBook {
        fn system(&self) -> GpSystem {
            SYSTEM
        }
        async fn read_patient(&self, _: &PatientRequest) -> Result<PatientRecord, AdapterError> {
            Err(AdapterError::PatientNotFound)
        }
        async fn search(&self, _: &SearchRequest) -> Result<SearchPage, AdapterError> {
            Err(AdapterError::PatientNotFound)
        }
    }

    fn failed(report: &HarnessReport) -> Vec<&str> {
        report.failures().map(|c| c.id).collect()
    }

    /// Claims appointments but keeps every method's `NotSupported` default.
    struct Claims;

    #[async_trait]
    impl Adapter for Claims {
        fn system(&self) -> GpSystem {
            SYSTEM
        }
        fn manages_appointments(&self) -> bool {
            true
        }
        async fn read_patient(&self, _: &PatientRequest) -> Result<PatientRecord, AdapterError> {
            Err(AdapterError::PatientNotFound)
        }
        async fn search(&self, _: &SearchRequest) -> Result<SearchPage, AdapterError> {
            Err(AdapterError::PatientNotFound)
        }
    }

    /// Books, but says it does not (so the gateway would never offer it).
    struct Hides(Fake);

    #[async_trait]
    impl Adapter for Hides {
        fn system(&self) -> GpSystem {
            SYSTEM
        }
        async fn read_patient(&self, _: &PatientRequest) -> Result<PatientRecord, AdapterError> {
            Err(AdapterError::PatientNotFound)
        }
        async fn search(&self, _: &SearchRequest) -> Result<SearchPage, AdapterError> {
            Err(AdapterError::PatientNotFound)
        }
        async fn search_slots(
            &self,
            req: &SlotSearchRequest,
        ) -> Result<AppointmentBook, AdapterError> {
            self.0.search_slots(req).await
        }
    }

    #[tokio::test]
    async fn the_capability_flag_must_agree_with_the_methods() {
        let (adapter, fixture) = fake(Flaw::None);
        let report = run_appointments(&Claims, &fixture).await;
        assert_eq!(failed(&report), ["ADP-APT-00"], "{report}");
        let report = run_appointments(&Hides(adapter), &fixture).await;
        assert_eq!(failed(&report), ["ADP-APT-00"], "{report}");
    }

    #[tokio::test]
    async fn an_honest_book_passes_every_check() {
        let (adapter, fixture) = fake(Flaw::None);
        let report = run_appointments(&adapter, &fixture).await;
        assert!(report.passed(), "{report}");
        let ran: Vec<&str> = report.checks.iter().map(|c| c.id).collect();
        let mut want: Vec<&str> = CHECKS.iter().map(|(id, _)| *id).collect();
        let mut got = ran.clone();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want);
        assert!(report.skipped().next().is_none(), "{report}");
    }

    #[tokio::test]
    async fn every_check_is_skipped_for_an_adapter_without_appointments() {
        let (_, fixture) = fake(Flaw::None);
        let report = run_appointments(&NoBook, &fixture).await;
        assert!(report.passed(), "{report}");
        assert_eq!(report.checks.len(), CHECKS.len());
        assert!(
            report
                .checks
                .iter()
                .all(|c| matches!(&c.outcome, Outcome::Skipped(why) if why.contains("appointment management"))),
            "{report}"
        );
    }

    #[tokio::test]
    async fn a_double_booking_fails_the_race() {
        let (adapter, fixture) = fake(Flaw::DoubleBooks);
        let report = run_appointments(&adapter, &fixture).await;
        assert_eq!(failed(&report), ["ADP-APT-04"], "{report}");
    }

    #[tokio::test]
    async fn an_amend_that_ignores_the_version_fails_the_stale_check() {
        let (adapter, fixture) = fake(Flaw::IgnoresVersion);
        let report = run_appointments(&adapter, &fixture).await;
        assert_eq!(failed(&report), ["ADP-APT-07"], "{report}");
    }

    #[tokio::test]
    async fn a_cancel_that_never_frees_the_slot_fails_the_cancel_check() {
        let (adapter, fixture) = fake(Flaw::NeverFrees);
        let report = run_appointments(&adapter, &fixture).await;
        assert_eq!(failed(&report), ["ADP-APT-08"], "{report}");
    }
}
