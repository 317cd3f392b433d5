#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Reading details against the real Microtest Evolution simulator: each element written
//! through the adapter (interpretation, body site, method, device, performer, original
//! codings, a date alone) reads back through the adapter's search as FHIR, and the
//! vital signs Evolution holds in SNOMED CT only can be written and read.

use gp_adapter::harness::{blood_pressure, body_weight, sim};
use gp_adapter::{
    Adapter, CallContext, ClinicalType, Coded, CreateObservationRequest, Measurement,
    NewObservation, SearchRequest, UtcDateTime,
};
use gp_adapter_microtest::{MicrotestAdapter, MicrotestConfig};
use gp_fhir::model::{CodeableConcept, Observation, Reference, Resource};
use gp_fhir::{NhsNumber, OdsCode};
use gp_sim::{SimHandle, SimStore, SystemKind};

struct Fixture {
    _sim: SimHandle,
    adapter: MicrotestAdapter,
    ods: OdsCode,
    nhs: NhsNumber,
    clinician: String,
}

async fn start() -> Fixture {
    let population = sim::population();
    let practice = population
        .practices
        .iter()
        .find(|p| p.system == SystemKind::Microtest)
        .expect("a Microtest practice")
        .clone();
    let nhs = population
        .patients
        .iter()
        .find(|p| p.practice == practice.ods)
        .map(|p| NhsNumber::parse(&p.nhs_number).unwrap())
        .unwrap();
    let store = SimStore::new(population);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = gp_sim::start(SystemKind::Microtest, store, listener)
        .await
        .unwrap();
    let adapter = MicrotestAdapter::new(MicrotestConfig::new(sim.base_url())).unwrap();
    Fixture {
        _sim: sim,
        adapter,
        ods: OdsCode::parse(&practice.ods).unwrap(),
        nhs,
        clinician: practice.clinicians[0].id.clone(),
    }
}

fn ctx() -> CallContext {
    CallContext::new("readings-test")
}

fn coded(system: &str, code: &str, display: &str) -> Coded {
    Coded {
        system: system.into(),
        code: code.into(),
        display: Some(display.into()),
    }
}

const V3: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
const SCT: &str = "http://snomed.info/sct";

impl Fixture {
    /// Writes `o`, then finds it by its supplier identifier in a search.
    async fn round_trip(&self, o: NewObservation) -> Observation {
        let key = o.key.clone();
        self.adapter
            .create_observation(&CreateObservationRequest {
                nhs_number: self.nhs,
                practice: self.ods.clone(),
                observation: o,
                context: ctx(),
            })
            .await
            .unwrap();
        let page = self
            .adapter
            .search(&SearchRequest {
                nhs_number: self.nhs,
                practice: self.ods.clone(),
                resource_type: ClinicalType::Observation,
                date: Default::default(),
                count: 10_000,
                offset: 0,
                context: ctx(),
            })
            .await
            .unwrap();
        page.resources
            .into_iter()
            .find_map(|r| match r {
                Resource::Observation(o)
                    if o.identifier
                        .iter()
                        .any(|i| i.value.as_deref() == Some(key.as_str())) =>
                {
                    Some(o)
                }
                _ => None,
            })
            .expect("the written reading is read back")
    }
}

fn concept(c: &Coded) -> Vec<CodeableConcept> {
    vec![c.concept()]
}

#[test]
fn evolution_holds_every_reading_detail() {
    let adapter = MicrotestAdapter::new(MicrotestConfig::new("http://127.0.0.1:1")).unwrap();
    let s = adapter.reading_support();
    assert!(
        s.date_only
            && s.original_codings
            && s.interpretation
            && s.body_site
            && s.method
            && s.device
            && s.performer
    );
}

#[tokio::test]
async fn every_detail_of_a_single_reading_round_trips() {
    let fx = start().await;
    let mut w = body_weight("rd-weight-1");
    let high = coded(V3, "H", "High");
    w.measurements[0].interpretation = Some(high.clone());
    let site = coded(SCT, "368209003", "Right arm");
    let method = coded(SCT, "258104002", "Measured");
    let loinc = coded("http://loinc.org", "29463-7", "Body weight");
    w.details.body_site = Some(site.clone());
    w.details.method = Some(method.clone());
    w.details.device = Some("Seca 813 scales".into());
    w.details.performer = Some(fx.clinician.clone());
    w.details.original_codings = vec![loinc.clone()];
    let o = fx.round_trip(w).await;
    assert_eq!(o.interpretation, concept(&high));
    assert_eq!(o.body_site, Some(site.concept()));
    assert_eq!(o.method, Some(method.concept()));
    assert_eq!(
        o.device,
        Some(Reference {
            reference: None,
            identifier: None,
            display: Some("Seca 813 scales".into()),
        })
    );
    assert_eq!(
        o.performer,
        vec![Reference::to("Practitioner", &fx.clinician)]
    );
    // The supplier's coding comes after Evolution's SNOMED CT coding.
    let codings = &o.code.coding;
    assert_eq!(codings[0].system.as_deref(), Some(SCT));
    assert_eq!(codings.last(), Some(&loinc.coding()));
}

#[tokio::test]
async fn a_blood_pressure_keeps_each_readings_and_the_panels_interpretation() {
    let fx = start().await;
    let mut bp = blood_pressure("rd-bp-1");
    let (high, normal) = (coded(V3, "H", "High"), coded(V3, "N", "Normal"));
    bp.measurements[0].interpretation = Some(high.clone());
    bp.measurements[1].interpretation = Some(normal.clone());
    bp.details.interpretation = Some(high.clone());
    bp.details.original_codings =
        vec![coded("http://loinc.org", "85354-9", "Blood pressure panel")];
    let o = fx.round_trip(bp).await;
    assert_eq!(o.component.len(), 2);
    assert_eq!(o.component[0].interpretation, concept(&high));
    assert_eq!(o.component[1].interpretation, concept(&normal));
    assert_eq!(o.interpretation, concept(&high));
    assert_eq!(
        o.code.coding.last().and_then(|c| c.code.as_deref()),
        Some("85354-9")
    );
}

#[tokio::test]
async fn a_reading_taken_on_a_date_reads_back_as_that_date() {
    let fx = start().await;
    let mut w = body_weight("rd-date-1");
    w.effective = UtcDateTime {
        year: 2026,
        month: 3,
        day: 9,
        hour: 0,
        minute: 0,
        second: 0,
    };
    w.details.date_only = true;
    let o = fx.round_trip(w).await;
    assert_eq!(o.effective_date_time.as_deref(), Some("2026-03-09"));
}

#[tokio::test]
async fn vital_signs_held_in_snomed_ct_only_round_trip() {
    let fx = start().await;
    for (key, snomed, display, value, unit) in [
        ("rd-spo2", "431314004", "SpO2", 97.0, "%"),
        ("rd-temp", "386725007", "Body temperature", 37.2, "Cel"),
        ("rd-pef", "313193002", "Peak flow", 420.0, "L/min"),
        ("rd-hr", "364075005", "Heart rate", 72.0, "/min"),
    ] {
        let mut w = body_weight(key);
        w.snomed = snomed.into();
        w.display = display.into();
        w.measurements = vec![Measurement {
            snomed: snomed.into(),
            display: display.into(),
            value,
            unit: unit.into(),
            interpretation: None,
        }];
        let o = fx.round_trip(w).await;
        assert_eq!(o.code.coding[0].code.as_deref(), Some(snomed), "{key}");
        let q = o.value_quantity.expect("a value");
        assert_eq!((q.value.0, q.code.as_deref()), (value, Some(unit)), "{key}");
    }
}
