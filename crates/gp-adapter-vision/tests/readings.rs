#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Reading details through the adapter, against the real Vision simulator on
//! 127.0.0.1:0: each element Vision claims to hold (date alone, interpretations, body
//! site, the clinician who took it) is written with `create_observation` and read back
//! by `search` as it was sent; vital signs coded in SNOMED CT alone are written and read.

use gp_adapter::harness::sim;
use gp_adapter::{
    Adapter, CallContext, ClinicalType, Coded, CreateObservationRequest, Measurement,
    NewObservation, PractitionerRequest, ReadingDetails, ReadingSupport, SearchRequest,
    UtcDateTime,
};
use gp_adapter_vision::{VisionAdapter, VisionConfig};
use gp_fhir::date::DateRange;
use gp_fhir::model::{Observation, Reference, Resource};
use gp_fhir::{NhsNumber, OdsCode};
use gp_sim::{SimHandle, SystemKind};

const INTERPRETATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
const SNOMED: &str = "http://snomed.info/sct";

struct Practice {
    _sim: SimHandle,
    adapter: VisionAdapter,
    nhs: NhsNumber,
    ods: OdsCode,
    /// A clinician's id as `read_practitioner` answers it.
    staff: String,
}

async fn practice() -> Practice {
    let population = sim::population();
    let fx = sim::fixture(&population, SystemKind::Vision);
    let (nhs, ods) = fx.patients[0].clone();
    let staff = population
        .practices
        .iter()
        .find(|p| p.ods == ods.as_str())
        .unwrap()
        .clinicians[0]
        .id
        .to_ascii_lowercase();
    let sim = sim::start(SystemKind::Vision, population).await;
    let adapter = VisionAdapter::new(VisionConfig::new(sim.base_url())).unwrap();
    Practice {
        _sim: sim,
        adapter,
        nhs,
        ods,
        staff,
    }
}

fn code(system: &str, code: &str, display: &str) -> Coded {
    Coded {
        system: system.into(),
        code: code.into(),
        display: Some(display.into()),
    }
}

fn at(day: u8, hour: u8) -> UtcDateTime {
    UtcDateTime {
        year: 2026,
        month: 7,
        day,
        hour,
        minute: 15,
        second: 9,
    }
}

fn measurement(snomed: &str, display: &str, value: f64, unit: &str) -> Measurement {
    Measurement {
        snomed: snomed.into(),
        display: display.into(),
        value,
        unit: unit.into(),
        interpretation: None,
    }
}

fn single(
    key: &str,
    m: Measurement,
    effective: UtcDateTime,
    details: ReadingDetails,
) -> NewObservation {
    NewObservation {
        key: key.into(),
        identifier: Some(("https://supplier.example/obs".into(), key.into())),
        snomed: m.snomed.clone(),
        display: m.display.clone(),
        effective,
        measurements: vec![m],
        details,
    }
}

impl Practice {
    /// Writes `obs`, then reads back the one Observation the write's id names.
    async fn round_trip(&self, obs: NewObservation) -> Observation {
        let created = self
            .adapter
            .create_observation(&CreateObservationRequest {
                nhs_number: self.nhs,
                practice: self.ods.clone(),
                observation: obs,
                context: CallContext::new("readings-test"),
            })
            .await
            .unwrap();
        assert!(created.created);
        let page = self
            .adapter
            .search(&SearchRequest {
                nhs_number: self.nhs,
                practice: self.ods.clone(),
                resource_type: ClinicalType::Observation,
                date: DateRange::default(),
                count: u32::MAX,
                offset: 0,
                context: CallContext::new("readings-test"),
            })
            .await
            .unwrap();
        let mut found = page.resources.into_iter().filter_map(|r| match r {
            Resource::Observation(o) if created.ids.contains(&o.id) => Some(o),
            _ => None,
        });
        let o = found.next().expect("the written observation is read back");
        assert!(found.next().is_none(), "one Observation per write");
        o
    }
}

#[tokio::test]
async fn vision_claims_what_it_holds() {
    let p = practice().await;
    assert_eq!(
        p.adapter.reading_support(),
        ReadingSupport {
            date_only: true,
            interpretation: true,
            body_site: true,
            performer: true,
            original_codings: false,
            method: false,
            device: false,
        }
    );
}

#[tokio::test]
async fn a_blood_pressure_keeps_each_interpretation_its_body_site_and_performer() {
    let p = practice().await;
    let mut sys = measurement("271649006", "Systolic blood pressure", 152.0, "mm[Hg]");
    sys.interpretation = Some(code(INTERPRETATION, "H", "High"));
    let mut dia = measurement("271650006", "Diastolic blood pressure", 84.0, "mm[Hg]");
    dia.interpretation = Some(code(INTERPRETATION, "N", "Normal"));
    let panel = code(INTERPRETATION, "A", "Abnormal");
    let site = code(SNOMED, "368209003", "Right upper arm");
    let o = p
        .round_trip(NewObservation {
            key: "bp-details".into(),
            identifier: None,
            snomed: "75367002".into(),
            display: "Blood pressure".into(),
            effective: at(14, 7),
            measurements: vec![sys, dia],
            details: ReadingDetails {
                interpretation: Some(panel.clone()),
                body_site: Some(site.clone()),
                performer: Some(p.staff.clone()),
                ..ReadingDetails::default()
            },
        })
        .await;
    assert_eq!(o.interpretation, vec![panel.concept()]);
    assert_eq!(o.component.len(), 2);
    assert_eq!(
        o.component[0].interpretation,
        vec![code(INTERPRETATION, "H", "High").concept()]
    );
    assert_eq!(
        o.component[1].interpretation,
        vec![code(INTERPRETATION, "N", "Normal").concept()]
    );
    assert_eq!(o.body_site, Some(site.concept()));
    assert_eq!(o.performer, vec![Reference::to("Practitioner", &p.staff)]);
    // The performer is the clinician read_practitioner answers for that id.
    let practitioner = p
        .adapter
        .read_practitioner(&PractitionerRequest {
            id: p.staff.clone(),
            practice: p.ods.clone(),
            context: CallContext::new("readings-test"),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(practitioner.id, p.staff);
    assert_eq!(
        o.effective_date_time.as_deref(),
        Some("2026-07-14T08:15:09+01:00")
    );
}

#[tokio::test]
async fn a_date_only_reading_reads_back_as_the_date() {
    let p = practice().await;
    let weight = measurement("27113001", "Body weight", 72.4, "kg");
    // The date at 00:00: in July that instant is 01:00 BST, but the date is what was meant.
    let o = p
        .round_trip(single(
            "weight-date-only",
            weight,
            at(3, 0),
            ReadingDetails {
                date_only: true,
                ..ReadingDetails::default()
            },
        ))
        .await;
    assert_eq!(o.effective_date_time.as_deref(), Some("2026-07-03"));
    assert_eq!(o.value_quantity.unwrap().value.0, 72.4);
}

#[tokio::test]
async fn vital_signs_coded_in_snomed_ct_alone_are_written_and_read() {
    let p = practice().await;
    let mut spo2 = measurement("431314004", "Peripheral oxygen saturation", 97.0, "%");
    spo2.interpretation = Some(code(INTERPRETATION, "N", "Normal"));
    let site = code(SNOMED, "7569003", "Finger structure");
    let o = p
        .round_trip(single(
            "spo2",
            spo2,
            at(14, 9),
            ReadingDetails {
                body_site: Some(site.clone()),
                performer: Some(p.staff.clone()),
                ..ReadingDetails::default()
            },
        ))
        .await;
    assert_eq!(o.code.code_in(gp_fhir::model::SNOMED), Some("431314004"));
    assert_eq!(o.code.coding.len(), 1, "no Read v2 coding: {:?}", o.code);
    let q = o.value_quantity.unwrap();
    assert_eq!((q.value.0, q.code.as_deref()), (97.0, Some("%")));
    assert_eq!(
        o.interpretation,
        vec![code(INTERPRETATION, "N", "Normal").concept()]
    );
    assert_eq!(o.body_site, Some(site.concept()));
    assert_eq!(o.performer, vec![Reference::to("Practitioner", &p.staff)]);
    let temperature = measurement("386725007", "Body temperature", 37.2, "Cel");
    let o = p
        .round_trip(single(
            "temperature",
            temperature,
            at(14, 10),
            ReadingDetails::default(),
        ))
        .await;
    assert_eq!(o.code.code_in(gp_fhir::model::SNOMED), Some("386725007"));
    let q = o.value_quantity.unwrap();
    assert_eq!((q.value.0, q.code.as_deref()), (37.2, Some("Cel")));
    assert!(o.interpretation.is_empty() && o.body_site.is_none() && o.performer.is_empty());
}
