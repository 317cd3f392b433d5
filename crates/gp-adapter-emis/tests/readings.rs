#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! What EMIS Web holds with a reading, end to end against the real EMIS simulator on
//! 127.0.0.1:0: each detail the adapter claims (`reading_support`) is written through
//! the adapter, read back through the adapter's search, and found as it was sent.

use gp_adapter::harness::{blood_pressure, body_weight, sim};
use gp_adapter::{
    Adapter, CallContext, ClinicalType, Coded, CreateObservationRequest, Measurement,
    NewObservation, ReadingSupport, SearchRequest, UtcDateTime,
};
use gp_adapter_emis::mapping::V3_INTERPRETATION;
use gp_adapter_emis::{EmisAdapter, EmisConfig};
use gp_fhir::model::{CodeableConcept, Observation, Reference, Resource, SNOMED};
use gp_fhir::{NhsNumber, OdsCode};
use gp_sim::{SimHandle, SimStore, SystemKind};

struct Setup {
    store: SimStore,
    _sim: SimHandle,
    adapter: EmisAdapter,
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
    let adapter = EmisAdapter::new(EmisConfig::new(sim.base_url())).unwrap();
    Setup {
        store,
        _sim: sim,
        adapter,
        ods,
        nhs,
    }
}

fn coded(system: &str, code: &str, display: &str) -> Coded {
    Coded {
        system: system.into(),
        code: code.into(),
        display: Some(display.into()),
    }
}

fn concept(c: &Coded) -> CodeableConcept {
    c.concept()
}

impl Setup {
    /// Writes `o` and reads back the Observation its first id names.
    async fn round_trip(&self, o: NewObservation) -> Observation {
        let created = self
            .adapter
            .create_observation(&CreateObservationRequest {
                nhs_number: self.nhs,
                practice: self.ods.clone(),
                observation: o,
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
                date: Default::default(),
                count: 10_000,
                offset: 0,
                context: CallContext::new("readings-test"),
            })
            .await
            .unwrap();
        page.resources
            .into_iter()
            .find_map(|r| match r {
                Resource::Observation(o) if o.id == created.ids[0] => Some(o),
                _ => None,
            })
            .expect("the written reading is read back")
    }

    fn clinician(&self) -> String {
        self.store.practice(self.ods.as_str()).unwrap().clinicians[0]
            .id
            .clone()
    }
}

#[tokio::test]
async fn emis_claims_what_it_holds() {
    let s = setup().await;
    assert_eq!(
        s.adapter.reading_support(),
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
async fn a_blood_pressures_interpretations_body_site_and_performer_read_back() {
    let s = setup().await;
    let high = coded(V3_INTERPRETATION, "H", "High");
    let normal = coded(V3_INTERPRETATION, "N", "Normal");
    let arm = coded(SNOMED, "368209003", "Right arm");
    let performer = s.clinician();
    let mut bp = blood_pressure("read-bp-1");
    bp.measurements[0].interpretation = Some(high.clone());
    bp.measurements[1].interpretation = Some(normal.clone());
    bp.details.interpretation = Some(high.clone());
    bp.details.body_site = Some(arm.clone());
    bp.details.performer = Some(performer.clone());
    let o = s.round_trip(bp).await;
    assert_eq!(o.component.len(), 2, "one panel");
    assert_eq!(o.component[0].interpretation, vec![concept(&high)]);
    assert_eq!(o.component[1].interpretation, vec![concept(&normal)]);
    assert_eq!(o.interpretation, vec![concept(&high)], "the panel's own");
    assert_eq!(o.body_site, Some(concept(&arm)));
    assert_eq!(o.performer, vec![Reference::to("Practitioner", &performer)]);
    assert_eq!(
        o.effective_date_time.as_deref(),
        Some("2026-07-14T08:32:05+01:00")
    );
}

#[tokio::test]
async fn a_single_readings_interpretation_is_its_own() {
    let s = setup().await;
    let low = coded(V3_INTERPRETATION, "L", "Low");
    let mut w = body_weight("read-w-1");
    w.measurements[0].interpretation = Some(low.clone());
    let o = s.round_trip(w).await;
    assert_eq!(o.interpretation, vec![concept(&low)]);
    assert!(o.body_site.is_none() && o.performer.is_empty());
}

#[tokio::test]
async fn a_date_only_reading_reads_back_as_the_date() {
    let s = setup().await;
    let mut w = body_weight("read-date-1");
    w.details.date_only = true;
    w.effective = UtcDateTime {
        year: 2026,
        month: 7,
        day: 14,
        hour: 0,
        minute: 0,
        second: 0,
    };
    let o = s.round_trip(w).await;
    assert_eq!(o.effective_date_time.as_deref(), Some("2026-07-14"));
}

#[tokio::test]
async fn snomed_only_vital_signs_are_written_and_read_by_their_snomed_ct_id() {
    let s = setup().await;
    for (key, snomed, display, value, unit) in [
        (
            "read-spo2-1",
            "431314004",
            "Peripheral oxygen saturation",
            97.0,
            "%",
        ),
        ("read-temp-1", "386725007", "Body temperature", 37.2, "Cel"),
    ] {
        let o = NewObservation {
            key: key.into(),
            identifier: None,
            snomed: snomed.into(),
            display: display.into(),
            measurements: vec![Measurement {
                snomed: snomed.into(),
                display: display.into(),
                value,
                unit: unit.into(),
                interpretation: None,
            }],
            ..body_weight(key)
        };
        let read = s.round_trip(o).await;
        let coding = &read.code.coding[0];
        assert_eq!(
            (coding.system.as_deref(), coding.code.as_deref()),
            (Some(SNOMED), Some(snomed)),
            "{display}"
        );
        let q = read.value_quantity.unwrap();
        assert_eq!((q.value.0, q.code.as_deref()), (value, Some(unit)));
    }
}
