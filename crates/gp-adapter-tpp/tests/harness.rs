#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The shared adapter suite, run against the real SystmOne simulator from gp-sim on
//! 127.0.0.1:0, and the checks only SystmOne has (native paging, CTV3 write-back, its
//! refusals and error wording).

use gp_adapter::harness::{self, Backend, HarnessFixture, SuiteTarget, sim};
use gp_adapter::{Adapter, AdapterError, CallContext, PatientRequest};
use gp_adapter_tpp::{TppAdapter, TppConfig};
use gp_fhir::{NhsNumber, OdsCode};
use gp_sim::{Fault, Population, SimHandle, SystemKind};

struct Tpp;

#[async_trait::async_trait]
impl SuiteTarget for Tpp {
    fn adapter(&self, base_url: &str, request_timeout_ms: u64) -> Box<dyn Adapter> {
        Box::new(TppAdapter::new(config(base_url, request_timeout_ms, 100)).unwrap())
    }

    async fn start(&self) -> Backend {
        sim::backend(SystemKind::Tpp).await
    }
}

gp_adapter::adapter_suite!(Tpp);

fn config(base_url: &str, request_timeout_ms: u64, page_size: u32) -> TppConfig {
    let mut config = TppConfig::new(base_url.to_owned());
    config.request_timeout_ms = request_timeout_ms;
    config.connect_timeout_ms = config.connect_timeout_ms.min(request_timeout_ms);
    config.page_size = page_size;
    config
}

async fn start() -> (SimHandle, Population) {
    let population = sim::population();
    (
        sim::start(SystemKind::Tpp, population.clone()).await,
        population,
    )
}

fn adapter(sim: &SimHandle, request_timeout_ms: u64) -> TppAdapter {
    TppAdapter::new(config(&sim.base_url(), request_timeout_ms, 100)).unwrap()
}

fn fixture(population: &Population) -> HarnessFixture {
    sim::fixture(population, SystemKind::Tpp)
}

#[tokio::test]
async fn small_pages_give_the_same_record_as_one_big_page() {
    let (sim, population) = start().await;
    let fx = fixture(&population);
    let one = adapter(&sim, 5000);
    let paged = TppAdapter::new(config(&sim.base_url(), 5000, 2)).unwrap();
    // The harness passes with many native pages per record too.
    harness::run(&paged, &fx).await.assert_passed();
    for (nhs, ods) in &fx.patients {
        for &t in gp_adapter::ClinicalType::ALL {
            let req = everything(*nhs, ods.clone(), t);
            assert_eq!(
                one.search(&req).await.unwrap(),
                paged.search(&req).await.unwrap(),
                "{t} for {nhs}"
            );
        }
    }
    let demo = PatientRequest {
        nhs_number: fx.patients[0].0,
        practice: fx.patients[0].1.clone(),
        context: CallContext::new("t"),
    };
    let before = sim.requests();
    paged
        .search(&everything(
            demo.nhs_number,
            demo.practice.clone(),
            gp_adapter::ClinicalType::Observation,
        ))
        .await
        .unwrap();
    assert!(
        sim.requests() - before > 2,
        "the demo record spans several pages of 2"
    );
    // A Patient read fetches the first page only: every page carries the demographics.
    let before = sim.requests();
    assert_eq!(
        paged.read_patient(&demo).await.unwrap(),
        one.read_patient(&demo).await.unwrap()
    );
    assert_eq!(sim.requests() - before, 2, "one page each");
}

#[tokio::test]
async fn invalid_data_errors_name_tpp_and_the_element() {
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
        "TPP SystmOne returned data that cannot be read: page 1: Patient/Identity/NHSNumber is missing"
    );
    sim.set_fault(Fault::None);
}

#[tokio::test]
async fn written_observations_have_no_performer_and_keep_their_ctv3_code() {
    let (sim, population) = start().await;
    let adapter = adapter(&sim, 5000);
    let fx = fixture(&population);
    let (nhs, ods) = fx.patients[0].clone();
    let created = adapter
        .create_observation(&gp_adapter::CreateObservationRequest {
            nhs_number: nhs,
            practice: ods.clone(),
            observation: harness::blood_pressure("written-bp-1"),
            context: CallContext::new("t"),
        })
        .await
        .unwrap();
    assert!(created.created);
    assert_eq!(
        created.ids.len(),
        2,
        "systolic and diastolic are two events"
    );
    let page = adapter
        .search(&everything(nhs, ods, gp_adapter::ClinicalType::Observation))
        .await
        .unwrap();
    let written: Vec<_> = page
        .resources
        .iter()
        .filter_map(|r| match r {
            gp_fhir::model::Resource::Observation(o) if created.ids.contains(&o.id) => Some(o),
            _ => None,
        })
        .collect();
    assert_eq!(written.len(), 1, "the two events read as one panel");
    for o in written {
        assert!(o.performer.is_empty(), "{o:?}");
        assert!(o.encounter.is_none());
        assert_eq!(
            o.id, created.ids[0],
            "the panel has the systolic event's id"
        );
        assert_eq!(o.identifier[0].value.as_deref(), Some("written-bp-1"));
        let codes: Vec<Vec<_>> = o
            .component
            .iter()
            .map(|c| {
                c.code
                    .coding
                    .iter()
                    .filter_map(|c| c.code.as_deref())
                    .collect()
            })
            .collect();
        assert_eq!(
            codes,
            [vec!["271649006", "2469."], vec!["271650006", "246A."]],
            "each component keeps its CTV3 code"
        );
        assert_eq!(
            o.effective_date_time.as_deref(),
            Some("2026-07-14T08:32:05+01:00")
        );
    }
}

#[tokio::test]
async fn refused_writes_become_typed_errors() {
    let (sim, population) = start().await;
    let adapter = adapter(&sim, 5000);
    let fx = fixture(&population);
    let (nhs, ods) = fx.patients[0].clone();
    let create = |observation| gp_adapter::CreateObservationRequest {
        nhs_number: nhs,
        practice: ods.clone(),
        observation,
        context: CallContext::new("t"),
    };
    // No CTV3 code for the concept: sent in SNOMED CT, and SystmOne's refusal of a
    // concept it does not record with a value is kept.
    let before = sim.requests();
    let mut unknown = harness::body_weight("unknown-1");
    unknown.measurements[0].snomed = "1234567000000109".into();
    let err = adapter
        .create_observation(&create(unknown))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AdapterError::Unprocessable { detail, .. } if detail.contains("INVALID_CODE") && detail.contains("1234567000000109")),
        "{err:?}"
    );
    assert_eq!(sim.requests(), before + 1);
    // A unit SystmOne does not record the concept in: the native 422, message kept.
    let mut grams = harness::body_weight("grams-1");
    grams.measurements[0].unit = "g".into();
    let err = adapter
        .create_observation(&create(grams))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AdapterError::Unprocessable { detail, .. } if detail.contains("INVALID_UNITS") && detail.contains("not g")),
        "{err:?}"
    );
    // Server errors are Unavailable.
    sim.set_fault(Fault::Status(503));
    let err = adapter
        .create_observation(&create(harness::body_weight("down-1")))
        .await
        .unwrap_err();
    assert!(matches!(err, AdapterError::Unavailable { .. }), "{err:?}");
    sim.set_fault(Fault::None);
    // A version SystmOne never gave is a conflict, as is a stale one.
    let update = |version: &str| gp_adapter::UpdateContactRequest {
        nhs_number: nhs,
        practice: ods.clone(),
        expected_version: version.into(),
        details: gp_adapter::ContactDetails::default(),
        context: CallContext::new("t"),
    };
    for version in ["W/\"3\"", "2001-01-01T00:00:00Z"] {
        let err = adapter.update_contact(&update(version)).await.unwrap_err();
        assert!(
            matches!(err, AdapterError::VersionConflict { .. }),
            "{version}: {err:?}"
        );
    }
    // An unknown patient.
    let err = adapter
        .update_contact(&gp_adapter::UpdateContactRequest {
            nhs_number: fx.unknown.0,
            ..update("2001-01-01T00:00:00Z")
        })
        .await
        .unwrap_err();
    assert_eq!(err, AdapterError::PatientNotFound);
}

#[tokio::test]
async fn the_preferred_language_is_patient_communication() {
    let (sim, population) = start().await;
    let adapter = adapter(&sim, 5000);
    for p in population
        .patients
        .iter()
        .filter(|p| {
            population
                .practice(&p.practice)
                .is_some_and(|pr| pr.system == SystemKind::Tpp)
        })
        .take(12)
    {
        let record = adapter
            .read_patient(&PatientRequest {
                nhs_number: NhsNumber::parse(&p.nhs_number).unwrap(),
                practice: OdsCode::parse(&p.practice).unwrap(),
                context: CallContext::new("t"),
            })
            .await
            .unwrap();
        assert_eq!(
            record.patient.preferred_language(),
            p.language.as_deref(),
            "{}",
            p.nhs_number
        );
        assert!(
            record
                .patient
                .communication
                .iter()
                .all(|c| c.preferred == Some(true))
        );
    }
}

/// A search of one clinical area asking for every entry at once.
fn everything(
    nhs_number: gp_fhir::NhsNumber,
    practice: gp_fhir::OdsCode,
    resource_type: gp_adapter::ClinicalType,
) -> gp_adapter::SearchRequest {
    gp_adapter::SearchRequest {
        nhs_number,
        practice,
        resource_type,
        date: Default::default(),
        count: u32::MAX,
        offset: 0,
        context: CallContext::new("t"),
    }
}
