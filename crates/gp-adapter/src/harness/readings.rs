//! Reading-detail checks (`ADP-RDG-*`, the `readings` group of the shared suite): every
//! detail an adapter's [`crate::Adapter::reading_support`] claims round-trips (written, then
//! read back by search as the gateway serves it), and every vital sign suppliers may write
//! is recorded and read back in SNOMED CT. A detail the adapter does not claim is reported
//! as skipped: the gateway refuses it before it reaches the adapter.
//!
//! The checks write to the record of `fixture.patients[0]`: point them at a simulator
//! (or a vendor test system), never at a live one.

use gp_fhir::model::{CodeableConcept, Observation, Resource, SNOMED};
use gp_fhir::{NhsNumber, OdsCode};

use super::appointments::{from_unix_seconds, now};
use super::{HarnessFixture, HarnessReport, ctx, search_req};
use crate::write::BLOOD_PRESSURE_PANEL;
use crate::{
    Adapter, ClinicalType, Coded, CreateObservationRequest, Measurement, NewObservation,
    PatientRequest, ReadingDetails,
};

/// The identifier space the readings are written with.
pub const DETAILS_SYSTEM: &str = "https://harness.example/reading-details";

const INTERPRETATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";

/// The vital signs suppliers may write beyond the original five: SNOMED CT, term, value, unit.
pub const MORE_VITALS: &[(&str, &str, f64, &str)] = &[
    ("364075005", "Heart rate", 64.0, "/min"),
    ("86290005", "Respiratory rate", 16.0, "/min"),
    ("386725007", "Body temperature", 37.2, "Cel"),
    ("431314004", "Peripheral oxygen saturation", 97.0, "%"),
    ("363812007", "Head circumference", 51.2, "cm"),
    ("997671000000106", "Blood glucose level", 5.4, "mmol/L"),
    ("313193002", "Peak flow rate", 420.0, "L/min"),
    ("276361009", "Waist circumference", 86.4, "cm"),
];

fn coded(system: &str, code: &str, display: &str) -> Coded {
    Coded {
        system: system.into(),
        code: code.into(),
        display: Some(display.into()),
    }
}

struct Scene<'a> {
    adapter: &'a dyn Adapter,
    patient: NhsNumber,
    practice: OdsCode,
    run: i64,
}

impl Scene<'_> {
    fn reading(
        &self,
        key: &str,
        (snomed, display, value, unit): (&str, &str, f64, &str),
    ) -> NewObservation {
        NewObservation {
            key: key.into(),
            identifier: Some((DETAILS_SYSTEM.into(), key.into())),
            snomed: snomed.into(),
            display: display.into(),
            effective: from_unix_seconds(self.run - 3600),
            measurements: vec![Measurement {
                snomed: snomed.into(),
                display: display.into(),
                value,
                unit: unit.into(),
                interpretation: None,
            }],
            details: ReadingDetails::default(),
        }
    }

    /// Writes `o` and reads back the Observation with the create's first id.
    async fn round_trip(&self, o: NewObservation) -> Result<Observation, String> {
        let created = self
            .adapter
            .create_observation(&CreateObservationRequest {
                nhs_number: self.patient,
                practice: self.practice.clone(),
                observation: o,
                context: ctx(),
            })
            .await
            .map_err(|e| format!("create_observation failed: {e}"))?;
        let id = created
            .ids
            .first()
            .cloned()
            .ok_or("the create answered no id")?;
        let page = self
            .adapter
            .search(&search_req(
                self.patient,
                &self.practice,
                ClinicalType::Observation,
                gp_fhir::date::DateRange::default(),
                1000,
                0,
            ))
            .await
            .map_err(|e| format!("the search after the create failed: {e}"))?;
        page.resources
            .into_iter()
            .find_map(|r| match r {
                Resource::Observation(o) if o.id == id => Some(o),
                _ => None,
            })
            .ok_or_else(|| format!("Observation/{id} is not in the next search"))
    }
}

fn has(cc: &CodeableConcept, system: &str, code: &str) -> bool {
    cc.coding
        .iter()
        .any(|c| c.system.as_deref() == Some(system) && c.code.as_deref() == Some(code))
}

fn first_interpretation(list: &[CodeableConcept]) -> Option<&str> {
    list.first()
        .and_then(|cc| cc.coding.first())
        .and_then(|c| c.code.as_deref())
}

/// Runs the reading-detail checks against `fixture.patients[0]`.
pub async fn run_reading_details(adapter: &dyn Adapter, fixture: &HarnessFixture) -> HarnessReport {
    let mut report = HarnessReport::default();
    let Some((patient, practice)) = fixture.patients.first().cloned() else {
        report.add(
            "ADP-RDG-00",
            "the fixture names a patient to write for",
            vec!["fixture.patients is empty".into()],
        );
        return report;
    };
    let scene = Scene {
        adapter,
        patient,
        practice: practice.clone(),
        run: now(),
    };
    let support = adapter.reading_support();
    let unclaimed = "the adapter's reading_support() does not claim it (the gateway refuses it)";
    let key = |n: &str| format!("harness-rdg-{n}-{}", scene.run);

    // An adapter that records no readings has nothing to check.
    let probe = adapter
        .create_observation(&CreateObservationRequest {
            nhs_number: patient,
            practice: practice.clone(),
            observation: scene.reading(&key("probe"), MORE_VITALS[0]),
            context: ctx(),
        })
        .await;
    if let Err(crate::AdapterError::NotSupported { what, .. }) = probe {
        let why = format!("the adapter does not support {what}");
        for (id, what) in [
            ("ADP-RDG-01", "every vital sign suppliers may write"),
            ("ADP-RDG-02..08", "reading details"),
        ] {
            report.skip(id, what, &why);
        }
        return report;
    }

    // 01: every vital sign suppliers may write, in SNOMED CT.
    let mut failures = Vec::new();
    if let Err(e) = probe {
        failures.push(format!("{}: {e}", MORE_VITALS[0].1));
    }
    for (i, v) in MORE_VITALS.iter().enumerate() {
        match scene
            .round_trip(scene.reading(&key(&format!("v{i}")), *v))
            .await
        {
            Ok(o) => {
                let value = o
                    .value_quantity
                    .as_ref()
                    .map(|q| (q.value.0, q.code.clone()));
                if !has(&o.code, SNOMED, v.0) || value != Some((v.2, Some(v.3.to_owned()))) {
                    failures.push(format!(
                        "{} {} {} reads back as {:?} {:?}",
                        v.1, v.2, v.3, o.code.coding, value
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: {e}", v.1)),
        }
    }
    report.add(
        "ADP-RDG-01",
        "every vital sign suppliers may write is recorded and read back in SNOMED CT",
        failures,
    );

    // 02: a date without a time.
    let (id, what) = (
        "ADP-RDG-02",
        "a reading dated without a time reads back as the date",
    );
    if support.date_only {
        let mut o = scene.reading(&key("date"), MORE_VITALS[0]);
        o.effective = crate::UtcDateTime {
            hour: 0,
            minute: 0,
            second: 0,
            ..from_unix_seconds(scene.run - 2 * 86_400)
        };
        o.details.date_only = true;
        let want = format!(
            "{:04}-{:02}-{:02}",
            o.effective.year, o.effective.month, o.effective.day
        );
        let failures = match scene.round_trip(o).await {
            Ok(r) if r.effective_date_time.as_deref() == Some(want.as_str()) => Vec::new(),
            Ok(r) => vec![format!(
                "effectiveDateTime is {:?}, not {want}",
                r.effective_date_time
            )],
            Err(e) => vec![e],
        };
        report.add(id, what, failures);
    } else {
        report.skip(id, what, unclaimed);
    }

    // 03: interpretation, of a single reading and of a blood pressure and its parts.
    let (id, what) = (
        "ADP-RDG-03",
        "interpretations read back: a reading's, a blood pressure's and each of its components'",
    );
    if support.interpretation {
        let mut failures = Vec::new();
        let mut o = scene.reading(&key("interp"), MORE_VITALS[3]);
        o.measurements[0].interpretation = Some(coded(INTERPRETATION, "L", "Low"));
        match scene.round_trip(o).await {
            Ok(r) if first_interpretation(&r.interpretation) == Some("L") => {}
            Ok(r) => failures.push(format!(
                "a single reading's interpretation is {:?}",
                r.interpretation
            )),
            Err(e) => failures.push(e),
        }
        let mut bp = super::write::blood_pressure(&key("bp"));
        bp.identifier = Some((DETAILS_SYSTEM.into(), key("bp")));
        bp.details.interpretation = Some(coded(INTERPRETATION, "H", "High"));
        bp.measurements[0].interpretation = Some(coded(INTERPRETATION, "H", "High"));
        bp.measurements[1].interpretation = Some(coded(INTERPRETATION, "N", "Normal"));
        match scene.round_trip(bp).await {
            Ok(r) => {
                let parts: Vec<Option<&str>> = r
                    .component
                    .iter()
                    .map(|c| first_interpretation(&c.interpretation))
                    .collect();
                if !has(&r.code, SNOMED, BLOOD_PRESSURE_PANEL)
                    || first_interpretation(&r.interpretation) != Some("H")
                    || parts != [Some("H"), Some("N")]
                {
                    failures.push(format!(
                        "the blood pressure reads back with interpretation {:?} and components {parts:?}",
                        r.interpretation
                    ));
                }
            }
            Err(e) => failures.push(e),
        }
        report.add(id, what, failures);
    } else {
        report.skip(id, what, unclaimed);
    }

    // 04-06: body site, method, device.
    type Detail = (
        &'static str,
        &'static str,
        bool,
        fn(&mut ReadingDetails),
        fn(&Observation) -> bool,
    );
    let details: [Detail; 3] = [
        (
            "ADP-RDG-04",
            "a body site reads back",
            support.body_site,
            |d| d.body_site = Some(coded(SNOMED, "368209003", "Right arm")),
            |o| {
                o.body_site
                    .as_ref()
                    .is_some_and(|b| has(b, SNOMED, "368209003"))
            },
        ),
        (
            "ADP-RDG-05",
            "a method reads back",
            support.method,
            |d| d.method = Some(coded(SNOMED, "258104002", "Measured")),
            |o| {
                o.method
                    .as_ref()
                    .is_some_and(|m| has(m, SNOMED, "258104002"))
            },
        ),
        (
            "ADP-RDG-06",
            "a device (its name) reads back",
            support.device,
            |d| d.device = Some("Home pulse oximeter PO-80".into()),
            |o| {
                o.device.as_ref().and_then(|d| d.display.as_deref())
                    == Some("Home pulse oximeter PO-80")
            },
        ),
    ];
    for (n, (id, what, claimed, set, check)) in details.into_iter().enumerate() {
        if !claimed {
            report.skip(id, what, unclaimed);
            continue;
        }
        let mut o = scene.reading(&key(&format!("d{n}")), MORE_VITALS[3]);
        set(&mut o.details);
        let failures = match scene.round_trip(o).await {
            Ok(r) if check(&r) => Vec::new(),
            Ok(r) => vec![format!(
                "it reads back as bodySite {:?}, method {:?}, device {:?}",
                r.body_site, r.method, r.device
            )],
            Err(e) => vec![e],
        };
        report.add(id, what, failures);
    }

    // 07: performer, a practice clinician (the patient's usual GP).
    let (id, what) = (
        "ADP-RDG-07",
        "a practice clinician as performer reads back as the performer",
    );
    if support.performer {
        let gp = adapter
            .read_patient(&PatientRequest {
                nhs_number: patient,
                practice: practice.clone(),
                context: ctx(),
            })
            .await
            .ok()
            .and_then(|r| r.practitioner)
            .map(|p| p.id);
        let failures = match gp {
            None => vec!["the fixture patient has no usual GP to name as performer".into()],
            Some(gp) => {
                let mut o = scene.reading(&key("perf"), MORE_VITALS[0]);
                o.details.performer = Some(gp.clone());
                let want = format!("Practitioner/{gp}");
                match scene.round_trip(o).await {
                    Ok(r)
                        if r.performer
                            .iter()
                            .any(|p| p.reference.as_deref() == Some(want.as_str())) =>
                    {
                        Vec::new()
                    }
                    Ok(r) => vec![format!("performer is {:?}, not {want}", r.performer)],
                    Err(e) => vec![e],
                }
            }
        };
        report.add(id, what, failures);
    } else {
        report.skip(id, what, unclaimed);
    }

    // 08: the supplier's other codings.
    let (id, what) = (
        "ADP-RDG-08",
        "the supplier's other codings read back after the SNOMED CT coding, in order",
    );
    if support.original_codings {
        let mut o = scene.reading(&key("orig"), MORE_VITALS[0]);
        o.details.original_codings = vec![
            coded("http://loinc.org", "8867-4", "Heart rate"),
            coded("https://device.example/codes", "hr", "Pulse"),
        ];
        let failures = match scene.round_trip(o).await {
            Ok(r) => {
                let codes: Vec<&str> = r
                    .code
                    .coding
                    .iter()
                    .filter_map(|c| c.code.as_deref())
                    .collect();
                let snomed_at = codes.iter().position(|c| *c == "364075005");
                let loinc_at = codes.iter().position(|c| *c == "8867-4");
                let device_at = codes.iter().position(|c| *c == "hr");
                match (snomed_at, loinc_at, device_at) {
                    (Some(s), Some(l), Some(d)) if s < l && l < d => Vec::new(),
                    _ => vec![format!("code.coding is {codes:?}")],
                }
            }
            Err(e) => vec![e],
        };
        report.add(id, what, failures);
    } else {
        report.skip(id, what, unclaimed);
    }
    report
}
