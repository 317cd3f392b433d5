#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! What SystmOne holds with a reading, through the adapter against the real simulator on
//! 127.0.0.1:0: every element `reading_support()` claims is written natively and read
//! back (date-only, interpretations, body site, method, performer), and readings of
//! concepts coded in SNOMED CT alone.

use gp_adapter::harness::{blood_pressure, body_weight};
use gp_adapter::write::{Coded, Measurement, NewObservation, ReadingSupport};
use gp_adapter::{
    Adapter, AdapterError, CallContext, ClinicalType, CreateObservationRequest, SearchRequest,
};
use gp_adapter_tpp::{TppAdapter, TppConfig};
use gp_fhir::date::DateRange;
use gp_fhir::model::{Observation, Resource, SNOMED};
use gp_fhir::{NhsNumber, OdsCode};
use gp_sim::{SimHandle, SystemKind};

const INTERPRETATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";

struct Env {
    _sim: SimHandle,
    adapter: TppAdapter,
    ods: OdsCode,
    nhs: NhsNumber,
    /// A practice clinician's id, as the adapter's references give it.
    clinician: String,
}

async fn env() -> Env {
    let population = gp_adapter::harness::sim::population();
    let practice = population
        .practices
        .iter()
        .find(|p| p.system == SystemKind::Tpp)
        .unwrap()
        .clone();
    let nhs = population
        .patients
        .iter()
        .find(|p| p.practice == practice.ods)
        .map(|p| NhsNumber::parse(&p.nhs_number).unwrap())
        .unwrap();
    let sim = gp_adapter::harness::sim::start(SystemKind::Tpp, population).await;
    Env {
        adapter: TppAdapter::new(TppConfig::new(sim.base_url())).unwrap(),
        _sim: sim,
        ods: OdsCode::parse(&practice.ods).unwrap(),
        nhs,
        clinician: gp_adapter::uk_core::guid_id(&practice.clinicians[0].id).unwrap(),
    }
}

fn coded(system: &str, code: &str, display: &str) -> Coded {
    Coded {
        system: system.into(),
        code: code.into(),
        display: Some(display.into()),
    }
}

impl Env {
    async fn write(&self, o: NewObservation) -> Result<String, AdapterError> {
        let created = self
            .adapter
            .create_observation(&CreateObservationRequest {
                nhs_number: self.nhs,
                practice: self.ods.clone(),
                observation: o,
                context: CallContext::new("t"),
            })
            .await?;
        Ok(created.ids[0].clone())
    }

    /// The Observation the adapter's search gives with id `id`.
    async fn read(&self, id: &str) -> Observation {
        let page = self
            .adapter
            .search(&SearchRequest {
                nhs_number: self.nhs,
                practice: self.ods.clone(),
                resource_type: ClinicalType::Observation,
                date: DateRange::default(),
                count: u32::MAX,
                offset: 0,
                context: CallContext::new("t"),
            })
            .await
            .unwrap();
        page.resources
            .into_iter()
            .find_map(|r| match r {
                Resource::Observation(o) if o.id == id => Some(o),
                _ => None,
            })
            .unwrap()
    }
}

#[test]
fn the_claimed_support_is_what_systmone_holds() {
    let adapter = TppAdapter::new(TppConfig::new("http://127.0.0.1:1")).unwrap();
    assert_eq!(
        adapter.reading_support(),
        ReadingSupport {
            date_only: true,
            interpretation: true,
            body_site: true,
            method: true,
            performer: true,
            original_codings: false,
            device: false,
        }
    );
}

#[tokio::test]
async fn a_blood_pressure_keeps_each_interpretation_body_site_method_and_performer() {
    let env = env().await;
    let mut bp = blood_pressure("bp-details-1");
    let high = coded(INTERPRETATION, "H", "High");
    let normal = coded(INTERPRETATION, "N", "Normal");
    let site = coded(SNOMED, "368209003", "Right upper arm structure");
    let method = coded(SNOMED, "37931006", "Auscultation");
    bp.measurements[0].interpretation = Some(high.clone());
    bp.measurements[1].interpretation = Some(normal.clone());
    bp.details.interpretation = Some(high.clone());
    bp.details.body_site = Some(site.clone());
    bp.details.method = Some(method.clone());
    bp.details.performer = Some(env.clinician.clone());
    let id = env.write(bp).await.unwrap();
    let o = env.read(&id).await;
    assert_eq!(o.component.len(), 2, "one panel");
    assert_eq!(o.component[0].interpretation, vec![high.concept()]);
    assert_eq!(o.component[1].interpretation, vec![normal.concept()]);
    assert_eq!(o.interpretation, vec![high.concept()], "the panel's own");
    assert_eq!(o.body_site, Some(site.concept()));
    assert_eq!(o.method, Some(method.concept()));
    assert_eq!(o.device, None);
    let performer: Vec<_> = o.performer.iter().map(|r| r.reference.clone()).collect();
    assert_eq!(
        performer,
        vec![Some(format!("Practitioner/{}", env.clinician))]
    );
    assert!(
        o.effective_date_time
            .as_deref()
            .unwrap()
            .starts_with("2026-07-14T08:32:05"),
        "{:?}",
        o.effective_date_time
    );
}

#[tokio::test]
async fn a_single_reading_keeps_its_interpretation() {
    let env = env().await;
    let mut w = body_weight("weight-interp-1");
    let low = coded(INTERPRETATION, "L", "Low");
    w.measurements[0].interpretation = Some(low.clone());
    let id = env.write(w).await.unwrap();
    let o = env.read(&id).await;
    assert_eq!(o.interpretation, vec![low.concept()]);
    assert!(o.component.is_empty());
    assert!(
        o.performer.is_empty(),
        "the supplier took it, no practice performer"
    );
}

#[tokio::test]
async fn a_date_only_reading_reads_back_as_the_date() {
    let env = env().await;
    let mut w = body_weight("weight-date-1");
    w.effective = gp_adapter::time::UtcDateTime {
        hour: 0,
        minute: 0,
        second: 0,
        ..w.effective
    };
    w.details.date_only = true;
    let id = env.write(w).await.unwrap();
    let o = env.read(&id).await;
    assert_eq!(o.effective_date_time.as_deref(), Some("2026-07-14"));
}

#[tokio::test]
async fn concepts_coded_in_snomed_ct_alone_are_written_and_read() {
    let env = env().await;
    for (key, snomed, display, value, unit) in [
        (
            "spo2-1",
            "431314004",
            "Peripheral oxygen saturation",
            97.0,
            "%",
        ),
        ("temp-1", "386725007", "Body temperature", 37.2, "Cel"),
    ] {
        let o = NewObservation {
            key: key.into(),
            identifier: None,
            snomed: snomed.into(),
            display: display.into(),
            effective: body_weight("x").effective,
            measurements: vec![Measurement {
                snomed: snomed.into(),
                display: display.into(),
                value,
                unit: unit.into(),
                interpretation: None,
            }],
            details: Default::default(),
        };
        let id = env.write(o).await.unwrap();
        let read = env.read(&id).await;
        let codes: Vec<_> = read
            .code
            .coding
            .iter()
            .filter(|c| c.system.as_deref() == Some(SNOMED))
            .map(|c| c.code.clone().unwrap())
            .collect();
        assert_eq!(codes, vec![snomed.to_owned()], "{key}");
        let q = read.value_quantity.unwrap();
        assert_eq!(q.value.0, value, "{key}");
        assert_eq!(q.code.as_deref(), Some(unit), "{key}");
        assert!(
            read.category
                .iter()
                .flat_map(|c| &c.coding)
                .any(|c| c.code.as_deref() == Some("vital-signs")),
            "{key} is a vital sign"
        );
    }
}

#[tokio::test]
async fn what_systmone_cannot_hold_is_refused_not_dropped() {
    let env = env().await;
    let mut w = body_weight("weight-device-1");
    w.details.device = Some("Acme scales".into());
    assert!(matches!(
        env.write(w).await,
        Err(AdapterError::Unprocessable { .. })
    ));
    let mut w = body_weight("weight-site-1");
    w.details.body_site = Some(coded("http://example.org/sites", "R", "Right"));
    assert!(matches!(
        env.write(w).await,
        Err(AdapterError::Unprocessable { .. })
    ));
    let mut w = body_weight("weight-performer-1");
    w.details.performer = Some("0badc0de-0000-4000-8000-000000000000".into());
    assert!(matches!(
        env.write(w).await,
        Err(AdapterError::Unprocessable { .. })
    ));
}
