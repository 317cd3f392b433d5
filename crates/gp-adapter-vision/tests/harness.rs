#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The shared adapter suite, run against the real Vision simulator from gp-sim on
//! 127.0.0.1:0, and the checks only Vision has (one row for two Observations,
//! continuation tokens, authorless written entries, its error wording).

use gp_adapter::harness::{self, Backend, HarnessFixture, SuiteTarget, sim};
use gp_adapter::{Adapter, CallContext, ClinicalType, PatientRequest, SearchRequest};
use gp_adapter_vision::{VisionAdapter, VisionConfig};
use gp_fhir::date::DateRange;
use gp_fhir::model::Resource;
use gp_fhir::{NhsNumber, OdsCode};
use gp_sim::{Fault, Population, SimHandle, SystemKind};

struct Vision;

#[async_trait::async_trait]
impl SuiteTarget for Vision {
    fn adapter(&self, base_url: &str, request_timeout_ms: u64) -> Box<dyn Adapter> {
        let mut config = VisionConfig::new(base_url.to_owned());
        config.request_timeout_ms = request_timeout_ms;
        config.connect_timeout_ms = config.connect_timeout_ms.min(request_timeout_ms);
        Box::new(VisionAdapter::new(config).unwrap())
    }

    async fn start(&self) -> Backend {
        sim::backend(SystemKind::Vision).await
    }
}

gp_adapter::adapter_suite!(Vision);

async fn start_with(population: Population) -> SimHandle {
    sim::start(SystemKind::Vision, population).await
}

async fn start() -> (SimHandle, Population) {
    let population = sim::population();
    (start_with(population.clone()).await, population)
}

fn adapter(sim: &SimHandle, request_timeout_ms: u64) -> Box<dyn Adapter> {
    Vision.adapter(&sim.base_url(), request_timeout_ms)
}

fn fixture(population: &Population) -> HarnessFixture {
    sim::fixture(population, SystemKind::Vision)
}

fn search(nhs: NhsNumber, ods: &OdsCode, t: ClinicalType) -> SearchRequest {
    SearchRequest {
        nhs_number: nhs,
        practice: ods.clone(),
        resource_type: t,
        date: DateRange::default(),
        count: u32::MAX,
        offset: 0,
        context: CallContext::new("t"),
    }
}

/// Write-back through the native journal POST and contact PUT: the written entries are
/// authorless and consultation-less (the suite's `writes` group checks the rest).
#[tokio::test]
async fn written_entries_have_no_performer_or_consultation() {
    let (sim, population) = start().await;
    let adapter = adapter(&sim, 5000);
    let fx = fixture(&population);
    harness::run_writes(adapter.as_ref(), &fx)
        .await
        .assert_passed();
    let (nhs, ods) = fx.patients[0].clone();
    let page = adapter
        .search(&search(nhs, &ods, ClinicalType::Observation))
        .await
        .unwrap();
    let written: Vec<&gp_fhir::model::Observation> = page
        .resources
        .iter()
        .filter_map(|r| match r {
            Resource::Observation(o) if o.performer.is_empty() => Some(o),
            _ => None,
        })
        .collect();
    assert_eq!(
        written.len(),
        2,
        "the BP row's panel and the weight, none with a performer"
    );
    assert!(written.iter().all(|o| o.encounter.is_none()));
}

/// The practice and the usual GP come from the staff extract.
#[tokio::test]
async fn the_practice_and_usual_gp_are_read() {
    let (sim, population) = start().await;
    let adapter = adapter(&sim, 5000);
    let (nhs, ods) = fixture(&population).patients[0].clone();
    let demo = adapter
        .read_patient(&PatientRequest {
            nhs_number: nhs,
            practice: ods.clone(),
            context: CallContext::new("t"),
        })
        .await
        .unwrap();
    assert_eq!(demo.organization.unwrap().id, ods.as_str());
    assert!(
        demo.practitioner.is_some(),
        "the usual GP comes from the staff extract"
    );
}

/// Blood pressure is one Vision row and one panel Observation with both readings as
/// components, exactly as the EMIS adapter recombines the two events it files.
#[tokio::test]
async fn blood_pressure_rows_are_one_panel_like_emis() {
    let (sim, population) = start().await;
    let adapter = adapter(&sim, 5000);
    let fx = fixture(&population);
    let (nhs, ods) = fx.patients[0].clone();
    let page = adapter
        .search(&search(nhs, &ods, ClinicalType::Observation))
        .await
        .unwrap();
    let held = &population
        .patient_by_nhs("9658218865")
        .unwrap()
        .observations;
    let pairs = gp_sim::blood_pressure_pairs(held).len();
    assert_eq!(page.resources.len(), held.len() - pairs);
    let count = |code: &str| {
        page.resources
            .iter()
            .filter(|r| match r {
                Resource::Observation(o) => o.code.code_in(gp_fhir::model::SNOMED) == Some(code),
                _ => false,
            })
            .count()
    };
    assert!(pairs > 0);
    assert_eq!(count("75367002"), pairs);
    assert_eq!(count("271650006"), 0, "no diastolic reading stands alone");
    for r in &page.resources {
        if let Resource::Observation(o) = r
            && o.code.code_in(gp_fhir::model::SNOMED) == Some("75367002")
        {
            assert_eq!(o.component.len(), 2, "{o:?}");
        }
    }
}

/// A record longer than one 500-row page is fetched whole by following the token.
#[tokio::test]
async fn long_journals_follow_continuation_tokens() {
    let mut population = sim::population();
    let demo = population
        .patients
        .iter_mut()
        .find(|p| p.nhs_number == "9658218865")
        .unwrap();
    let template = demo
        .observations
        .iter()
        .find(|o| o.concept.key == "pulse-rate")
        .unwrap()
        .clone();
    for i in 0..1200 {
        let mut o = template.clone();
        o.meta.id = format!("{}-{i}", template.meta.id);
        demo.observations.push(o);
    }
    let expected = demo.observations.len() - gp_sim::blood_pressure_pairs(&demo.observations).len();
    let sim = start_with(population.clone()).await;
    let adapter = adapter(&sim, 5000);
    let (nhs, ods) = fixture(&population).patients[0].clone();
    let before = sim.requests();
    let page = adapter
        .search(&search(nhs, &ods, ClinicalType::Observation))
        .await
        .unwrap();
    assert_eq!(page.total as usize, expected);
    // Patient extract + at least three journal pages.
    assert!(sim.requests() - before >= 4, "{}", sim.requests() - before);
}

#[tokio::test]
async fn invalid_data_errors_name_vision_and_the_field() {
    let (sim, population) = start().await;
    let fx = fixture(&population);
    let (nhs, ods) = fx.patients[0].clone();
    let adapter = adapter(&sim, 5000);
    let req = PatientRequest {
        nhs_number: nhs,
        practice: ods,
        context: CallContext::new("t"),
    };
    sim.set_fault(Fault::MissingNhsNumber);
    let err = adapter.read_patient(&req).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "Vision returned data that cannot be read: patient extract row 2 NHS_NUMBER is missing"
    );
    sim.set_fault(Fault::Garbage);
    let err = adapter.read_patient(&req).await.unwrap_err();
    assert!(err.to_string().starts_with("Vision returned data"), "{err}");
    sim.set_fault(Fault::None);
}

/// The change log through the simulator: a row without its NHS number is bad data naming
/// the column, and a `SEQ` whose changes are no longer kept is Unprocessable.
#[tokio::test]
async fn change_log_refusals_and_bad_rows() {
    let population = sim::population();
    let fx = fixture(&population);
    let store = gp_sim::SimStore::new(population);
    let sim = sim::start_over(SystemKind::Vision, store.clone()).await;
    let adapter = adapter(&sim, 5000);
    let (nhs, ods) = fx.patients[0].clone();
    let req = |cursor: Option<String>| gp_adapter::ChangesRequest {
        practice: ods.clone(),
        cursor,
        context: CallContext::new("t"),
    };
    let start = adapter.changes_since(&req(None)).await.unwrap().cursor;
    let pulse = gp_sim::concepts::measurement_by_snomed("78564009").unwrap();
    let nurse = || {
        store
            .record_reading_at_practice(
                SystemKind::Vision,
                ods.as_str(),
                &nhs.to_string(),
                pulse,
                72.0,
            )
            .unwrap()
    };
    nurse();
    sim.set_fault(Fault::MissingNhsNumber);
    let err = adapter
        .changes_since(&req(Some(start.clone())))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Vision returned data that cannot be read: change extract row 2 NHS_NUMBER is missing"
    );
    sim.set_fault(Fault::Truncated);
    let err = adapter
        .changes_since(&req(Some(start.clone())))
        .await
        .unwrap_err();
    assert!(
        matches!(err, gp_adapter::AdapterError::InvalidNativeData { .. }),
        "{err}"
    );
    sim.set_fault(Fault::None);
    for _ in 0..gp_sim::changes::KEPT {
        nurse();
    }
    let err = adapter.changes_since(&req(Some(start))).await.unwrap_err();
    assert!(
        matches!(&err, gp_adapter::AdapterError::Unprocessable { detail, .. } if detail.starts_with("HTTP 410 CHANGES_EXPIRED: ")),
        "{err:?}"
    );
}
