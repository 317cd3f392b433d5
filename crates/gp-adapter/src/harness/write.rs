//! Write-back checks (`ADP-WRI-*`): what a supplier writes through an adapter is in the
//! GP system's record on the next read, a retried or concurrent create never records
//! twice, and a stale update is refused without changing anything.
//!
//! ```ignore
//! let report = gp_adapter::harness::run_writes(&adapter, &fixture).await;
//! report.assert_passed();
//! ```
//!
//! The checks write to the record of `fixture.patients[0]`: point them at a simulator
//! (or a vendor test system), never at a live one.

use gp_fhir::model::{Observation, Resource};
use gp_fhir::{NhsNumber, OdsCode};

use super::{HarnessFixture, HarnessReport, ctx, search_req};
use crate::write::BLOOD_PRESSURE_PANEL;
use crate::{
    Adapter, AdapterError, ClinicalType, ContactDetails, CreateObservationRequest, HomeAddress,
    Measurement, NewObservation, PatientRequest, UpdateContactRequest, UtcDateTime,
};

/// A measured instant in BST, so local-time systems must convert it.
const TAKEN: UtcDateTime = UtcDateTime {
    year: 2026,
    month: 7,
    day: 14,
    hour: 7,
    minute: 32,
    second: 5,
};

fn measurement(snomed: &str, display: &str, value: f64, unit: &str) -> Measurement {
    Measurement {
        snomed: snomed.into(),
        display: display.into(),
        value,
        unit: unit.into(),
        interpretation: None,
    }
}

/// The identifier space the harness's readings are written with, as a supplier's.
pub const READINGS_SYSTEM: &str = "https://harness.example/readings";

/// A home blood pressure reading, 131/84 mm[Hg], identified as `READINGS_SYSTEM|key`.
pub fn blood_pressure(key: &str) -> NewObservation {
    NewObservation {
        key: key.into(),
        identifier: Some((READINGS_SYSTEM.into(), key.into())),
        snomed: BLOOD_PRESSURE_PANEL.into(),
        display: "Blood pressure".into(),
        effective: TAKEN,
        measurements: vec![
            measurement("271649006", "Systolic blood pressure", 131.0, "mm[Hg]"),
            measurement("271650006", "Diastolic blood pressure", 84.0, "mm[Hg]"),
        ],
        details: Default::default(),
    }
}

/// A body weight, 72.4 kg, identified as `READINGS_SYSTEM|key`.
pub fn body_weight(key: &str) -> NewObservation {
    NewObservation {
        key: key.into(),
        identifier: Some((READINGS_SYSTEM.into(), key.into())),
        snomed: "27113001".into(),
        display: "Body weight".into(),
        effective: TAKEN,
        measurements: vec![measurement("27113001", "Body weight", 72.4, "kg")],
        details: Default::default(),
    }
}

fn create(patient: &(NhsNumber, OdsCode), observation: NewObservation) -> CreateObservationRequest {
    CreateObservationRequest {
        nhs_number: patient.0,
        practice: patient.1.clone(),
        observation,
        context: ctx(),
    }
}

async fn observations(
    adapter: &dyn Adapter,
    patient: &(NhsNumber, OdsCode),
) -> Result<Vec<Observation>, AdapterError> {
    let page = adapter
        .search(&search_req(
            patient.0,
            &patient.1,
            ClinicalType::Observation,
            gp_fhir::date::DateRange::default(),
            10_000,
            0,
        ))
        .await?;
    Ok(page
        .resources
        .into_iter()
        .filter_map(|r| match r {
            Resource::Observation(o) => Some(o),
            _ => None,
        })
        .collect())
}

/// Every (SNOMED CT code, value, unit) an observation holds, components included.
fn values(o: &Observation) -> Vec<(String, f64, String)> {
    let snomed = |cc: &gp_fhir::model::CodeableConcept| {
        cc.coding
            .iter()
            .find(|c| c.system.as_deref() == Some(gp_fhir::model::SNOMED))
            .and_then(|c| c.code.clone())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    if let Some(q) = &o.value_quantity {
        out.push((
            snomed(&o.code),
            q.value.0,
            q.code.clone().unwrap_or_default(),
        ));
    }
    for c in &o.component {
        if let Some(q) = &c.value_quantity {
            out.push((
                snomed(&c.code),
                q.value.0,
                q.code.clone().unwrap_or_default(),
            ));
        }
    }
    out
}

/// Checks the written observation's entries are in `held`: every measurement's value
/// and unit, on entries dated at the measured instant.
fn find_written(held: &[Observation], created: &[String], written: &NewObservation) -> Vec<String> {
    let mut failures = Vec::new();
    let entries: Vec<&Observation> = held.iter().filter(|o| created.contains(&o.id)).collect();
    if entries.is_empty() {
        failures.push(format!(
            "none of the created ids {created:?} is in the next Observation search"
        ));
        return failures;
    }
    let found: Vec<(String, f64, String)> = entries.iter().flat_map(|o| values(o)).collect();
    for m in &written.measurements {
        let hit = found.iter().any(|(code, v, unit)| {
            *code == m.snomed && (v - m.value).abs() < 1e-9 && *unit == m.unit
        });
        if !hit {
            failures.push(format!(
                "written {} {} {} is not in the created entries (they hold {found:?})",
                m.display, m.value, m.unit
            ));
        }
    }
    for o in &entries {
        let when = o.effective_date_time.as_deref().unwrap_or("");
        let instant = gp_fhir::date::parse_instant_utc(when).ok();
        let e = written.effective;
        let want = written.effective.to_rfc3339();
        if instant != Some((e.year, e.month, e.day, e.hour, e.minute, e.second)) {
            failures.push(format!(
                "Observation/{}.effectiveDateTime is {when:?}, not the measured instant {want}",
                o.id
            ));
        }
    }
    failures
}

/// Checks a created reading reads back as written: ONE Observation with the create's
/// first id (a blood pressure is one panel, whatever entries the system holds it in),
/// the panel's code, one component per measurement, the supplier's identifier and the
/// `vital-signs` category; no other entry holds a part of it.
fn read_back(held: &[Observation], created: &[String], written: &NewObservation) -> Vec<String> {
    let mut failures = Vec::new();
    let Some(id) = created.first() else {
        return vec!["the create answered no id".into()];
    };
    let others: Vec<&String> = held
        .iter()
        .filter(|o| created.contains(&o.id) && o.id != *id)
        .map(|o| &o.id)
        .collect();
    if !others.is_empty() {
        failures.push(format!(
            "the reading reads back as several Observations ({id} and {others:?}), not one"
        ));
    }
    let Some(o) = held.iter().find(|o| o.id == *id) else {
        failures.push(format!(
            "Observation/{id} (the create's first id) is not in the next search"
        ));
        return failures;
    };
    let code = o
        .code
        .coding
        .iter()
        .find(|c| c.system.as_deref() == Some(gp_fhir::model::SNOMED))
        .and_then(|c| c.code.as_deref());
    if code != Some(written.snomed.as_str()) {
        failures.push(format!(
            "Observation/{id}.code is {code:?}, not the written {}",
            written.snomed
        ));
    }
    if written.measurements.len() > 1 {
        let parts: Vec<String> = values(o).into_iter().map(|(c, _, _)| c).collect();
        let want: Vec<&str> = written
            .measurements
            .iter()
            .map(|m| m.snomed.as_str())
            .collect();
        if o.value_quantity.is_some() || parts != want {
            failures.push(format!(
                "Observation/{id} holds {parts:?} (valueQuantity {:?}), not one component per written part {want:?}",
                o.value_quantity.as_ref().map(|q| q.value.0)
            ));
        }
    }
    if let Some((system, value)) = &written.identifier {
        let kept = o
            .identifier
            .iter()
            .any(|i| i.system.as_deref() == Some(system) && i.value.as_deref() == Some(value));
        if !kept {
            failures.push(format!(
                "Observation/{id}.identifier lacks the supplier's {system}|{value}: {:?}",
                o.identifier
            ));
        }
    }
    let vital = o.category.iter().flat_map(|c| &c.coding).any(|c| {
        c.system.as_deref() == Some(crate::vital_signs::CATEGORY_SYSTEM)
            && c.code.as_deref() == Some("vital-signs")
    });
    if !vital {
        failures.push(format!(
            "Observation/{id}.category is {:?}, not vital-signs",
            o.category
        ));
    }
    failures
}

/// Runs the write-back checks against `fixture.patients[0]`'s record.
pub async fn run_writes(adapter: &dyn Adapter, fixture: &HarnessFixture) -> HarnessReport {
    let mut report = HarnessReport::default();
    let Some(patient) = fixture.patients.first() else {
        report.add(
            "ADP-WRI-00",
            "the fixture names a patient to write to",
            vec!["fixture.patients is empty".into()],
        );
        return report;
    };
    let system = adapter.system().id();
    let key = |n: &str| format!("harness-{system}-{}-{n}", patient.0);

    // ADP-WRI-01: a blood pressure reading is in the next search.
    let bp = blood_pressure(&key("bp"));
    let mut failures = Vec::new();
    let before = observations(adapter, patient).await;
    let first = adapter
        .create_observation(&create(patient, bp.clone()))
        .await;
    if let Err(AdapterError::NotSupported { what, .. }) = &first {
        let why = format!("the adapter does not support {what}");
        for id in [
            "ADP-WRI-01",
            "ADP-WRI-02",
            "ADP-WRI-03",
            "ADP-WRI-06",
            "ADP-WRI-07",
        ] {
            report.skip(id, "observation write-back", &why);
        }
        contact_checks(&mut report, adapter, patient).await;
        return report;
    }
    let mut read_back_failures = Vec::new();
    match (&before, &first) {
        (Ok(_), Ok(created)) => {
            if !created.created {
                failures.push("a first create answered created: false".into());
            }
            match observations(adapter, patient).await {
                Ok(after) => {
                    failures.extend(find_written(&after, &created.ids, &bp));
                    read_back_failures = read_back(&after, &created.ids, &bp);
                }
                Err(e) => failures.push(format!("search after create failed: {e}")),
            }
        }
        (Err(e), _) => failures.push(format!("search before create failed: {e}")),
        (_, Err(e)) => failures.push(format!("create failed: {e}")),
    }
    if !failures.is_empty() && read_back_failures.is_empty() {
        read_back_failures.push("not run: ADP-WRI-01 failed".into());
    }
    report.add(
        "ADP-WRI-01",
        "a created blood pressure reading is in the next Observation search, values, units and instant intact",
        failures,
    );
    report.add(
        "ADP-WRI-07",
        "a created blood pressure reads back as one panel Observation with the create's id, both components, the supplier's identifier and the vital-signs category",
        read_back_failures,
    );

    // ADP-WRI-02: a retried create records nothing new.
    let mut failures = Vec::new();
    if let Ok(created) = &first {
        let count = observations(adapter, patient).await.map(|o| o.len());
        match adapter
            .create_observation(&create(patient, bp.clone()))
            .await
        {
            Ok(again) => {
                if again.created {
                    failures.push("a retry with the same key answered created: true".into());
                }
                if again.ids != created.ids {
                    failures.push(format!(
                        "a retry answered ids {:?}, not the first create's {:?}",
                        again.ids, created.ids
                    ));
                }
            }
            Err(e) => failures.push(format!("retried create failed: {e}")),
        }
        let after = observations(adapter, patient).await.map(|o| o.len());
        if count.is_ok() && count != after {
            failures.push(format!(
                "a retry changed the number of observations from {count:?} to {after:?}"
            ));
        }
    } else {
        failures.push("not run: ADP-WRI-01's create failed".into());
    }
    report.add(
        "ADP-WRI-02",
        "a retried create (same key) records nothing and answers the first create's ids",
        failures,
    );

    // ADP-WRI-03: concurrent creates with one key record once.
    let mut failures = Vec::new();
    let weight = body_weight(&key("weight"));
    let count = observations(adapter, patient).await.map(|o| o.len());
    let req = create(patient, weight.clone());
    let results = futures_join(adapter, &req, 8).await;
    let created_count = results
        .iter()
        .filter(|r| matches!(r, Ok(c) if c.created))
        .count();
    if created_count != 1 {
        failures.push(format!(
            "8 concurrent creates with one key answered created: true {created_count} times, not once"
        ));
    }
    let errors: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(ToString::to_string))
        .collect();
    if !errors.is_empty() {
        failures.push(format!("concurrent creates failed: {}", errors.join("; ")));
    }
    let ids: Vec<&Vec<String>> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|c| &c.ids)
        .collect();
    if ids.windows(2).any(|w| w[0] != w[1]) {
        failures.push("concurrent creates with one key answered different ids".into());
    }
    match (count, observations(adapter, patient).await) {
        (Ok(n), Ok(after)) => {
            if after.len() != n + 1 {
                failures.push(format!(
                    "8 concurrent creates of one body weight took the record from {n} to {} observations, not {}",
                    after.len(),
                    n + 1
                ));
            }
            if let Some(Ok(c)) = results.first() {
                failures.extend(find_written(&after, &c.ids, &weight));
                failures.extend(read_back(&after, &c.ids, &weight));
            }
        }
        (Err(e), _) | (_, Err(e)) => failures.push(format!("search failed: {e}")),
    }
    report.add(
        "ADP-WRI-03",
        "concurrent creates with one key record the observation exactly once",
        failures,
    );

    contact_checks(&mut report, adapter, patient).await;

    // ADP-WRI-06: writes for a patient the system does not hold.
    let mut failures = Vec::new();
    match adapter
        .create_observation(&create(&fixture.unknown, blood_pressure(&key("unknown"))))
        .await
    {
        Err(AdapterError::PatientNotFound) => {}
        other => failures.push(format!(
            "a create for an unknown patient answered {other:?}, not PatientNotFound"
        )),
    }
    report.add(
        "ADP-WRI-06",
        "a create for a patient the system does not hold is PatientNotFound",
        failures,
    );
    report
}

/// ADP-WRI-04 / 05: a contact update at the current version, then a stale one; both
/// skipped for an adapter that does not update contact details.
async fn contact_checks(
    report: &mut HarnessReport,
    adapter: &dyn Adapter,
    patient: &(NhsNumber, OdsCode),
) {
    let mut failures = Vec::new();
    let read = PatientRequest {
        nhs_number: patient.0,
        practice: patient.1.clone(),
        context: ctx(),
    };
    let details = ContactDetails {
        home_phone: Some("01632 960123".into()),
        mobile: Some("07700 900456".into()),
        email: Some("harness.writes@example.com".into()),
        address: Some(HomeAddress {
            lines: vec!["12 Harness Row".into(), "Testville".into()],
            town: "Leeds".into(),
            county: "West Yorkshire".into(),
            postcode: "LS1 4AP".into(),
        }),
        language: Some("cy".into()),
    };
    let mut stale = None;
    match adapter.read_patient(&read).await {
        Ok(before) => {
            let update = UpdateContactRequest {
                nhs_number: patient.0,
                practice: patient.1.clone(),
                expected_version: before.version.clone(),
                details: details.clone(),
                context: ctx(),
            };
            match adapter.update_contact(&update).await {
                Ok(version) => {
                    if version == before.version {
                        failures.push(format!("the version did not change from {version}"));
                    }
                    match adapter.read_patient(&read).await {
                        Ok(after) => {
                            if after.version != version {
                                failures.push(format!(
                                    "update answered version {version}, the next read has {}",
                                    after.version
                                ));
                            }
                            failures.extend(contact_differences(&after.patient, &details));
                        }
                        Err(e) => failures.push(format!("read after update failed: {e}")),
                    }
                    stale = Some(update);
                }
                Err(AdapterError::NotSupported { what, .. }) => {
                    let why = format!("the adapter does not support {what}");
                    report.skip("ADP-WRI-04", "contact details write-back", &why);
                    report.skip("ADP-WRI-05", "stale contact updates", &why);
                    return;
                }
                Err(e) => failures.push(format!("update failed: {e}")),
            }
        }
        Err(e) => failures.push(format!("read before update failed: {e}")),
    }
    report.add(
        "ADP-WRI-04",
        "contact details updated at the current version are in the next read, with a new version",
        failures,
    );

    let mut failures = Vec::new();
    match stale {
        Some(mut update) => {
            let current = adapter.read_patient(&read).await.map(|r| r.patient);
            update.details.mobile = Some("07700 900999".into());
            match adapter.update_contact(&update).await {
                Err(AdapterError::VersionConflict { .. }) => {}
                Err(e) => failures.push(format!(
                    "a stale update failed with {e}, not VersionConflict"
                )),
                Ok(v) => failures.push(format!("a stale update was accepted (version {v})")),
            }
            let after = adapter.read_patient(&read).await.map(|r| r.patient);
            if current.is_ok() && current != after {
                failures.push("a refused stale update changed the record".into());
            }
        }
        None => failures.push("not run: ADP-WRI-04's update failed".into()),
    }
    report.add(
        "ADP-WRI-05",
        "an update made against an old version is refused as VersionConflict and changes nothing",
        failures,
    );
}

async fn futures_join(
    adapter: &dyn Adapter,
    req: &CreateObservationRequest,
    n: usize,
) -> Vec<Result<crate::Created, AdapterError>> {
    let mut set = Vec::with_capacity(n);
    for _ in 0..n {
        set.push(adapter.create_observation(req));
    }
    join_all(set).await
}

/// Polls every future to completion concurrently (no extra dependency for one join).
pub(super) async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in pinned.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// How the read-back Patient differs from the contact details written.
fn contact_differences(p: &gp_fhir::model::Patient, want: &ContactDetails) -> Vec<String> {
    let mut out = Vec::new();
    let telecom = |system: &str, use_: Option<&str>| {
        p.telecom
            .iter()
            .find(|t| {
                t.system.as_deref() == Some(system) && (use_.is_none() || t.use_.as_deref() == use_)
            })
            .and_then(|t| t.value.clone())
    };
    for (what, got, expected) in [
        (
            "Patient.telecom (home phone)",
            telecom("phone", Some("home")),
            &want.home_phone,
        ),
        (
            "Patient.telecom (mobile)",
            telecom("phone", Some("mobile")),
            &want.mobile,
        ),
        (
            "Patient.telecom (email)",
            telecom("email", None),
            &want.email,
        ),
    ] {
        if got.as_ref() != expected.as_ref() {
            out.push(format!("{what} is {got:?} after writing {expected:?}"));
        }
    }
    if let Some(a) = &want.address {
        match p.address.first() {
            None => out.push("Patient.address is empty after writing an address".into()),
            Some(got) => {
                if got.line != a.lines {
                    out.push(format!(
                        "Patient.address.line is {:?} after writing {:?}",
                        got.line, a.lines
                    ));
                }
                if got.city.as_deref() != Some(a.town.as_str()) {
                    out.push(format!(
                        "Patient.address.city is {:?} after writing {:?}",
                        got.city, a.town
                    ));
                }
                if got.postal_code.as_deref() != Some(a.postcode.as_str()) {
                    out.push(format!(
                        "Patient.address.postalCode is {:?} after writing {:?}",
                        got.postal_code, a.postcode
                    ));
                }
                // County: only systems that hold one must give it back.
                if got.district.as_deref().is_some_and(|d| d != a.county) {
                    out.push(format!(
                        "Patient.address.district is {:?} after writing {:?}",
                        got.district, a.county
                    ));
                }
            }
        }
    }
    if p.preferred_language() != want.language.as_deref() {
        out.push(format!(
            "Patient.communication language is {:?} after writing {:?}",
            p.preferred_language(),
            want.language
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;

    use super::*;
    use crate::harness::Outcome;
    use crate::{GpSystem, PatientRecord, SearchPage, SearchRequest};

    /// An adapter that reads (nothing) and does not write.
    struct ReadOnly;

    #[async_trait]
    impl Adapter for ReadOnly {
        fn system(&self) -> GpSystem {
            crate::test_systems::EMIS
        }
        async fn read_patient(&self, _: &PatientRequest) -> Result<PatientRecord, AdapterError> {
            Ok(PatientRecord {
                patient: gp_fhir::model::Patient::default(),
                organization: None,
                practitioner: None,
                version: "1".into(),
                flags: crate::PatientFlags::default(),
            })
        }
        async fn search(&self, _: &SearchRequest) -> Result<SearchPage, AdapterError> {
            Ok(SearchPage {
                resources: Vec::new(),
                total: 0,
            })
        }
    }

    #[tokio::test]
    async fn write_back_is_skipped_for_an_adapter_that_does_not_write() {
        let patient = (
            NhsNumber::parse("9690937278").unwrap(),
            OdsCode::parse("B82617").unwrap(),
        );
        let fixture = HarnessFixture {
            patients: vec![patient.clone()],
            unknown: patient,
            restricted: Vec::new(),
            dissenting: Vec::new(),
            confidential: None,
            canonical: None,
        };
        let report = run_writes(&ReadOnly, &fixture).await;
        assert!(report.passed(), "{report}");
        let skipped: Vec<&str> = report.skipped().map(|c| c.id).collect();
        assert_eq!(
            skipped,
            [
                "ADP-WRI-01",
                "ADP-WRI-02",
                "ADP-WRI-03",
                "ADP-WRI-06",
                "ADP-WRI-07",
                "ADP-WRI-04",
                "ADP-WRI-05"
            ]
        );
        assert!(
            report
                .checks
                .iter()
                .all(|c| matches!(c.outcome, Outcome::Skipped(_)))
        );
    }
}
