//! Change-log checks (`ADP-CHG-*`, the `changes` group of the shared suite): what
//! [`Adapter::changes_since`] reports after writes through the adapter and after changes
//! made at the practice. An adapter that does not track changes has them all reported
//! as skipped; checks of changes made at the practice are skipped when the backend
//! cannot make them ([`Backend::practice`](super::Backend)).
//!
//! The checks write to the record of `fixture.patients[0]` and move one patient between
//! practices: point them at a simulator (or a vendor test system), never at a live one.

use async_trait::async_trait;
use bytes::Bytes;
use gp_fhir::{NhsNumber, OdsCode};

use super::appointments::{from_unix_seconds, now, unix_seconds};
use super::write::body_weight;
use super::{HarnessFixture, HarnessReport, ctx};
use crate::appointments::{NewAppointment, SlotStatus};
use crate::{
    Adapter, AdapterError, AppointmentChange, BookRequest, ChangeAppointmentRequest, ChangeKind,
    ChangesPage, ChangesRequest, ContactDetails, CreateObservationRequest, FileDocumentRequest,
    HomeAddress, NewDocument, PatientAppointmentsRequest, PatientRequest, RecordChange,
    SlotSearchRequest, UpdateContactRequest, UploadContentRequest,
};

/// Changes a backend can make at the practice itself, as a receptionist or nurse would:
/// what the `ADP-CHG-04`/`05`/`06` checks need. Implemented for gp-sim's simulators in
/// [`super::sim`]; a vendor implements it against its test system, or leaves
/// [`Backend::practice`](super::Backend) empty.
#[async_trait]
pub trait PracticeSide: Send + Sync {
    /// A practice nurse records a reading (any measured vital sign) in the patient's
    /// record; answers the Observation id the adapter's searches serve for it.
    async fn record_reading(&self, practice: &OdsCode, nhs: NhsNumber) -> Result<String, String>;
    /// The patient's telephone number changes at the reception desk.
    async fn change_contact(&self, practice: &OdsCode, nhs: NhsNumber) -> Result<(), String>;
    /// The practice cancels one of its own bookings (in the future) of a patient
    /// registered there; answers the patient and the appointment's start (Unix seconds).
    async fn cancel_appointment(&self, practice: &OdsCode) -> Result<(NhsNumber, i64), String>;
    /// The patient leaves their practice and registers at `to`.
    async fn transfer(&self, nhs: NhsNumber, to: &OdsCode) -> Result<(), String>;
}

const CHECKS: &[(&str, &str)] = &[
    (
        "ADP-CHG-01",
        "without a cursor: an empty page whose cursor is the log's end (start from now)",
    ),
    (
        "ADP-CHG-02",
        "a reading, a contact change and a filed document written through the adapter are reported once each, in order, with the ids the writes answered, as not the practice's",
    ),
    (
        "ADP-CHG-03",
        "an appointment booked, amended and cancelled through the adapter is reported three times, in order, with its id",
    ),
    (
        "ADP-CHG-04",
        "a reading, a contact change and a cancellation made at the practice are reported as the practice's, with their ids",
    ),
    (
        "ADP-CHG-05",
        "a patient moving practice is reported as leaving one and registering at the other",
    ),
    (
        "ADP-CHG-06",
        "40 changes walked page by page with each cursor come back once each, in order",
    ),
    (
        "ADP-CHG-07",
        "a cursor the system never gave is Unprocessable (never a silent restart)",
    ),
    ("ADP-CHG-08", "an unknown practice is an error"),
];

fn description(id: &str) -> &'static str {
    CHECKS.iter().find(|(c, _)| *c == id).map_or("", |(_, d)| d)
}

fn add(report: &mut HarnessReport, id: &'static str, failures: Vec<String>) {
    report.add(id, description(id), failures);
}

struct Scene<'a> {
    adapter: &'a dyn Adapter,
    patient: NhsNumber,
    practice: OdsCode,
    run: i64,
}

impl Scene<'_> {
    async fn page(
        &self,
        practice: &OdsCode,
        cursor: Option<&str>,
    ) -> Result<ChangesPage, AdapterError> {
        self.adapter
            .changes_since(&ChangesRequest {
                practice: practice.clone(),
                cursor: cursor.map(str::to_owned),
                context: ctx(),
            })
            .await
    }

    /// The log's end now.
    async fn end(&self, practice: &OdsCode) -> Result<String, String> {
        let page = self
            .page(practice, None)
            .await
            .map_err(|e| format!("changes_since without a cursor failed: {e}"))?;
        Ok(page.cursor)
    }

    /// Every change after `cursor`, walking pages (at most 50).
    async fn all_after(
        &self,
        practice: &OdsCode,
        cursor: &str,
    ) -> Result<Vec<RecordChange>, String> {
        let mut cursor = cursor.to_owned();
        let mut out = Vec::new();
        for _ in 0..50 {
            let page = self
                .page(practice, Some(&cursor))
                .await
                .map_err(|e| format!("changes_since({cursor}) failed: {e}"))?;
            out.extend(page.changes);
            if !page.more {
                return Ok(out);
            }
            if page.cursor == cursor {
                return Err(format!(
                    "a page promising more answered the same cursor {cursor}"
                ));
            }
            cursor = page.cursor;
        }
        Err("more than 50 pages".into())
    }

    fn key(&self, n: &str) -> String {
        format!("harness-chg-{}-{n}", self.run)
    }

    /// The id of patient `nhs`'s appointment starting at `start` (Unix seconds), as
    /// the adapter reads it.
    async fn appointment_at(&self, nhs: NhsNumber, start: i64) -> Result<String, String> {
        let found = self
            .adapter
            .search_appointments(&PatientAppointmentsRequest {
                practice: self.practice.clone(),
                nhs_number: nhs,
                start: from_unix_seconds(start),
                end: from_unix_seconds(start + 60),
                context: ctx(),
            })
            .await
            .map_err(|e| format!("listing {nhs}'s appointments failed: {e}"))?;
        found
            .iter()
            .find(|a| unix_seconds(a.start) == start)
            .map(|a| a.id.clone())
            .ok_or_else(|| {
                format!("{nhs} has no appointment starting at {start} to find the id of")
            })
    }
}

/// What a change is, for comparisons and messages.
fn summary(c: &RecordChange) -> (NhsNumber, ChangeKind, Option<String>, bool) {
    (c.nhs_number, c.kind, c.resource_id.clone(), c.by_practice)
}

fn expect_changes(
    got: &[RecordChange],
    want: &[(NhsNumber, ChangeKind, Option<String>, bool)],
) -> Vec<String> {
    let got: Vec<_> = got.iter().map(summary).collect();
    let mut failures = Vec::new();
    if got != want {
        failures.push(format!(
            "expected (patient, kind, id, by practice) {want:?}, got {got:?}"
        ));
    }
    failures
}

fn occurred_ok(changes: &[RecordChange]) -> Vec<String> {
    changes
        .iter()
        .filter(|c| {
            c.occurred.len() != 20
                || !c.occurred.ends_with('Z')
                || c.occurred.as_bytes().get(10) != Some(&b'T')
        })
        .map(|c| {
            format!(
                "occurred {:?} is not RFC 3339 UTC to the second (YYYY-MM-DDThh:mm:ssZ)",
                c.occurred
            )
        })
        .collect()
}

/// Runs the change-log checks in the first practice of `fixture`, making changes at the
/// practice through `practice` when given.
pub async fn run_changes(
    adapter: &dyn Adapter,
    fixture: &HarnessFixture,
    practice: Option<&dyn PracticeSide>,
) -> HarnessReport {
    let mut report = HarnessReport::default();
    if !adapter.tracks_changes() {
        for (id, d) in CHECKS {
            report.skip(
                id,
                d,
                "the adapter does not track changes (tracks_changes() is false)",
            );
        }
        return report;
    }
    let Some((patient, site)) = fixture.patients.first().cloned() else {
        for (id, d) in CHECKS {
            report.skip(id, d, "the fixture holds no patient");
        }
        return report;
    };
    let scene = Scene {
        adapter,
        patient,
        practice: site,
        run: now(),
    };

    // ADP-CHG-01
    let start = match scene.end(&scene.practice).await {
        Ok(c) => c,
        Err(e) => {
            for (id, _) in CHECKS {
                add(&mut report, id, vec![e.clone()]);
            }
            return report;
        }
    };
    let mut failures = Vec::new();
    match scene.page(&scene.practice, None).await {
        Ok(p) if !p.changes.is_empty() || p.more => failures.push(format!(
            "without a cursor: {} changes (more: {}), not an empty page",
            p.changes.len(),
            p.more
        )),
        Ok(_) => {}
        Err(e) => failures.push(e.to_string()),
    }
    match scene.page(&scene.practice, Some(&start)).await {
        Ok(p) if !p.changes.is_empty() || p.more => failures.push(format!(
            "nothing changed, yet the end's cursor answered {} changes (more: {})",
            p.changes.len(),
            p.more
        )),
        Ok(_) => {}
        Err(e) => failures.push(format!("the end's cursor {start} was refused: {e}")),
    }
    if start.is_empty() || start.len() > 256 {
        failures.push(format!("cursor {start:?} is not 1 to 256 characters"));
    }
    add(&mut report, "ADP-CHG-01", failures);

    add(&mut report, "ADP-CHG-02", written(&scene, &start).await);
    add(&mut report, "ADP-CHG-03", booked(&scene).await);
    match practice {
        None => {
            for id in ["ADP-CHG-04", "ADP-CHG-05", "ADP-CHG-06"] {
                report.skip(
                    id,
                    description(id),
                    "the backend cannot make changes at the practice",
                );
            }
        }
        Some(side) => {
            add(&mut report, "ADP-CHG-04", at_practice(&scene, side).await);
            add(
                &mut report,
                "ADP-CHG-05",
                moved(&scene, side, fixture).await,
            );
            add(&mut report, "ADP-CHG-06", walked(&scene, side).await);
        }
    }

    let mut failures = Vec::new();
    for bogus in ["not-a-cursor-this-system-gave", "999999999999"] {
        match scene.page(&scene.practice, Some(bogus)).await {
            Err(AdapterError::Unprocessable { .. }) => {}
            Err(e) => failures.push(format!("cursor {bogus:?}: {e} (not Unprocessable)")),
            Ok(p) => failures.push(format!(
                "cursor {bogus:?} answered a page of {} changes",
                p.changes.len()
            )),
        }
    }
    add(&mut report, "ADP-CHG-07", failures);

    let mut failures = Vec::new();
    let nowhere = OdsCode::parse("Y99999").ok();
    if let Some(nowhere) = nowhere
        && let Ok(p) = scene.page(&nowhere, None).await
    {
        failures.push(format!(
            "practice Y99999, which the system does not have, answered cursor {}",
            p.cursor
        ));
    }
    add(&mut report, "ADP-CHG-08", failures);
    report
}

/// ADP-CHG-02: a reading, a contact change and a filed document through the adapter.
async fn written(scene: &Scene<'_>, start: &str) -> Vec<String> {
    let mut failures = Vec::new();
    let mut want = Vec::new();
    let p = scene.patient;
    match scene
        .adapter
        .create_observation(&CreateObservationRequest {
            nhs_number: p,
            practice: scene.practice.clone(),
            observation: body_weight(&scene.key("weight")),
            context: ctx(),
        })
        .await
    {
        Ok(c) => want.push((
            p,
            ChangeKind::ReadingRecorded,
            c.ids.first().cloned(),
            false,
        )),
        Err(e) => failures.push(format!("writing a reading failed: {e}")),
    }
    let read = PatientRequest {
        nhs_number: p,
        practice: scene.practice.clone(),
        context: ctx(),
    };
    match scene.adapter.read_patient(&read).await {
        Ok(before) => {
            let update = UpdateContactRequest {
                nhs_number: p,
                practice: scene.practice.clone(),
                expected_version: before.version.clone(),
                details: contact("07700 900123"),
                context: ctx(),
            };
            match scene.adapter.update_contact(&update).await {
                Ok(_) => want.push((p, ChangeKind::ContactDetailsChanged, None, false)),
                Err(e) => failures.push(format!("changing contact details failed: {e}")),
            }
        }
        Err(e) => failures.push(format!("reading the patient failed: {e}")),
    }
    let content = Bytes::from_static(b"Harness change-log note\n");
    match scene
        .adapter
        .upload_content(&UploadContentRequest {
            nhs_number: p,
            practice: scene.practice.clone(),
            content_type: "text/plain".into(),
            bytes: content,
            context: ctx(),
        })
        .await
    {
        Ok(up) => {
            let key = scene.key("doc");
            let filed = scene
                .adapter
                .file_document(&FileDocumentRequest {
                    nhs_number: p,
                    practice: scene.practice.clone(),
                    document: NewDocument {
                        key: key.clone(),
                        identifier: Some((super::DOCUMENTS_SYSTEM.into(), key)),
                        content_id: up.content_id,
                        type_snomed: "371530004".into(),
                        type_display: "Clinical consultation report".into(),
                        title: "Change-log check".into(),
                        created: from_unix_seconds(scene.run - 60),
                        author_ods: super::FILED_BY.into(),
                        author_name: Some("Harness Online Consultations Ltd".into()),
                    },
                    context: ctx(),
                })
                .await;
            match filed {
                Ok(f) => want.push((p, ChangeKind::DocumentFiled, Some(f.document.id), false)),
                Err(e) => failures.push(format!("filing a document failed: {e}")),
            }
        }
        Err(AdapterError::NotSupported { .. }) => {}
        Err(e) => failures.push(format!("uploading a document failed: {e}")),
    }
    match scene.all_after(&scene.practice, start).await {
        Ok(got) => {
            failures.extend(expect_changes(&got, &want));
            failures.extend(occurred_ok(&got));
        }
        Err(e) => failures.push(e),
    }
    failures
}

/// Complete contact details, with this mobile number.
pub(super) fn contact(mobile: &str) -> ContactDetails {
    ContactDetails {
        home_phone: Some("01632 960123".into()),
        mobile: Some(mobile.into()),
        email: Some("harness.changes@example.com".into()),
        address: Some(HomeAddress {
            lines: vec!["12 Harness Row".into(), "Testville".into()],
            town: "Leeds".into(),
            county: "West Yorkshire".into(),
            postcode: "LS1 4AP".into(),
        }),
        language: Some("en".into()),
    }
}

/// ADP-CHG-03: book, amend and cancel one appointment through the adapter.
async fn booked(scene: &Scene<'_>) -> Vec<String> {
    if !scene.adapter.manages_appointments() {
        return Vec::new();
    }
    let mut failures = Vec::new();
    let start = match scene.end(&scene.practice).await {
        Ok(c) => c,
        Err(e) => return vec![e],
    };
    let from = from_unix_seconds(scene.run + 2 * 86_400);
    let to = from_unix_seconds(scene.run + 14 * 86_400);
    let book = match scene
        .adapter
        .search_slots(&SlotSearchRequest {
            practice: scene.practice.clone(),
            start: from,
            end: to,
            context: ctx(),
        })
        .await
    {
        Ok(b) => b,
        Err(e) => return vec![format!("searching slots failed: {e}")],
    };
    let Some(slot) = book
        .slots
        .iter()
        .find(|s| s.status == SlotStatus::Free && unix_seconds(s.start) > scene.run + 3_600)
    else {
        return vec!["no free slot bookable by third parties in the next two weeks".into()];
    };
    let key = scene.key("appointment");
    let booked = scene
        .adapter
        .book_appointment(&BookRequest {
            practice: scene.practice.clone(),
            appointment: NewAppointment {
                key: key.clone(),
                identifier: Some((super::BOOKINGS_SYSTEM.into(), key)),
                nhs_number: scene.patient,
                slots: vec![slot.id.clone()],
                description: Some("Change-log check".into()),
                comment: None,
                booked_by: OdsCode::parse(super::BOOKED_BY)
                    .unwrap_or_else(|_| scene.practice.clone()),
                booked_by_name: "Adapter Harness".into(),
            },
            context: ctx(),
        })
        .await;
    let appointment = match booked {
        Ok(b) => b.appointment,
        Err(e) => return vec![format!("booking slot {} failed: {e}", slot.id)],
    };
    let change = |version: String, change: AppointmentChange| ChangeAppointmentRequest {
        practice: scene.practice.clone(),
        id: appointment.id.clone(),
        expected_version: version,
        change,
        context: ctx(),
    };
    let amended = scene
        .adapter
        .change_appointment(&change(
            appointment.version.clone(),
            AppointmentChange::Amend {
                description: Some("Change-log check, amended".into()),
                comment: None,
            },
        ))
        .await;
    match amended {
        Ok(a) => {
            if let Err(e) = scene
                .adapter
                .change_appointment(&change(
                    a.version,
                    AppointmentChange::Cancel {
                        reason: "Change-log check".into(),
                    },
                ))
                .await
            {
                failures.push(format!("cancelling failed: {e}"));
            }
        }
        Err(e) => failures.push(format!("amending failed: {e}")),
    }
    let id = Some(appointment.id.clone());
    let p = scene.patient;
    let want = [
        (p, ChangeKind::AppointmentBooked, id.clone(), false),
        (p, ChangeKind::AppointmentAmended, id.clone(), false),
        (p, ChangeKind::AppointmentCancelled, id, false),
    ];
    match scene.all_after(&scene.practice, &start).await {
        Ok(got) => failures.extend(expect_changes(&got, &want)),
        Err(e) => failures.push(e),
    }
    failures
}

/// ADP-CHG-04: changes made at the practice.
async fn at_practice(scene: &Scene<'_>, side: &dyn PracticeSide) -> Vec<String> {
    let mut failures = Vec::new();
    let start = match scene.end(&scene.practice).await {
        Ok(c) => c,
        Err(e) => return vec![e],
    };
    let p = scene.patient;
    let mut want = Vec::new();
    match side.record_reading(&scene.practice, p).await {
        Ok(id) => want.push((p, ChangeKind::ReadingRecorded, Some(id), true)),
        Err(e) => failures.push(format!("recording a reading at the practice failed: {e}")),
    }
    match side.change_contact(&scene.practice, p).await {
        Ok(()) => want.push((p, ChangeKind::ContactDetailsChanged, None, true)),
        Err(e) => failures.push(format!(
            "changing contact details at the practice failed: {e}"
        )),
    }
    if scene.adapter.manages_appointments() {
        match side.cancel_appointment(&scene.practice).await {
            Ok((who, start)) => match scene.appointment_at(who, start).await {
                Ok(id) => want.push((who, ChangeKind::AppointmentCancelled, Some(id), true)),
                Err(e) => failures.push(e),
            },
            Err(e) => failures.push(format!("cancelling at the practice failed: {e}")),
        }
    }
    match scene.all_after(&scene.practice, &start).await {
        Ok(got) => {
            failures.extend(expect_changes(&got, &want));
            failures.extend(occurred_ok(&got));
        }
        Err(e) => failures.push(e),
    }
    failures
}

/// ADP-CHG-05: the last fixture patient of the first practice moves to the second.
async fn moved(
    scene: &Scene<'_>,
    side: &dyn PracticeSide,
    fixture: &HarnessFixture,
) -> Vec<String> {
    let here: Vec<&(NhsNumber, OdsCode)> = fixture
        .patients
        .iter()
        .filter(|(_, o)| *o == scene.practice)
        .collect();
    let Some(there) = fixture
        .patients
        .iter()
        .map(|(_, o)| o)
        .find(|o| **o != scene.practice)
    else {
        return vec!["the fixture has no patient of a second practice to move to".into()];
    };
    let Some((mover, _)) = here.last().filter(|(n, _)| *n != scene.patient) else {
        return vec!["the fixture has one patient at the first practice, none to move".into()];
    };
    let (from_start, to_start) = match (scene.end(&scene.practice).await, scene.end(there).await) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return vec![e],
    };
    if let Err(e) = side.transfer(*mover, there).await {
        return vec![format!("moving {mover} to {there} failed: {e}")];
    }
    let mut failures = Vec::new();
    match scene.all_after(&scene.practice, &from_start).await {
        Ok(got) => failures.extend(expect_changes(
            &got,
            &[(*mover, ChangeKind::Deregistered, None, true)],
        )),
        Err(e) => failures.push(e),
    }
    match scene.all_after(there, &to_start).await {
        Ok(got) => failures.extend(expect_changes(
            &got,
            &[(*mover, ChangeKind::Registered, None, true)],
        )),
        Err(e) => failures.push(e),
    }
    failures
}

/// ADP-CHG-06: 40 readings at the practice, walked page by page.
async fn walked(scene: &Scene<'_>, side: &dyn PracticeSide) -> Vec<String> {
    let start = match scene.end(&scene.practice).await {
        Ok(c) => c,
        Err(e) => return vec![e],
    };
    let mut want = Vec::new();
    for _ in 0..40 {
        match side.record_reading(&scene.practice, scene.patient).await {
            Ok(id) => want.push((scene.patient, ChangeKind::ReadingRecorded, Some(id), true)),
            Err(e) => return vec![format!("recording a reading at the practice failed: {e}")],
        }
    }
    match scene.all_after(&scene.practice, &start).await {
        Ok(got) => expect_changes(&got, &want),
        Err(e) => vec![e],
    }
}
