#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The shared adapter suite, run against the real Microtest Evolution simulator from
//! gp-sim on 127.0.0.1:0, and the checks only Evolution has (authorless written
//! readings, its refusals, one reading for two Observations, its error wording).

use gp_adapter::harness::{self, Backend, HarnessFixture, SuiteTarget, sim};
use gp_adapter::{Adapter, AdapterError, CallContext, ClinicalType, PatientRequest, SearchRequest};
use gp_adapter_microtest::{MicrotestAdapter, MicrotestConfig};
use gp_fhir::date::DateRange;
use gp_fhir::{NhsNumber, OdsCode};
use gp_sim::{Fault, Population, SimHandle, SystemKind};

struct Microtest;

#[async_trait::async_trait]
impl SuiteTarget for Microtest {
    fn adapter(&self, base_url: &str, request_timeout_ms: u64) -> Box<dyn Adapter> {
        Box::new(microtest(base_url, request_timeout_ms))
    }

    async fn start(&self) -> Backend {
        sim::backend(SystemKind::Microtest).await
    }
}

gp_adapter::adapter_suite!(Microtest);

fn microtest(base_url: &str, request_timeout_ms: u64) -> MicrotestAdapter {
    let mut config = MicrotestConfig::new(base_url.to_owned());
    config.request_timeout_ms = request_timeout_ms;
    config.connect_timeout_ms = config.connect_timeout_ms.min(request_timeout_ms);
    MicrotestAdapter::new(config).unwrap()
}

async fn start() -> (SimHandle, Population) {
    let population = sim::population();
    (
        sim::start(SystemKind::Microtest, population.clone()).await,
        population,
    )
}

fn adapter(sim: &SimHandle, request_timeout_ms: u64) -> MicrotestAdapter {
    microtest(&sim.base_url(), request_timeout_ms)
}

fn fixture(population: &Population) -> HarnessFixture {
    sim::fixture(population, SystemKind::Microtest)
}

fn read_req((nhs, ods): &(NhsNumber, OdsCode)) -> PatientRequest {
    PatientRequest {
        nhs_number: *nhs,
        practice: ods.clone(),
        context: CallContext::new("t"),
    }
}

/// A written reading has no author: the Observation has no performer, and the rest of
/// the record still reads (and still passes the read harness).
#[tokio::test]
async fn written_readings_read_back_without_a_performer() {
    let (sim, population) = start().await;
    let adapter = adapter(&sim, 5000);
    let fx = fixture(&population);
    let (nhs, ods) = fx.patients[0].clone();
    let created = adapter
        .create_observation(&gp_adapter::CreateObservationRequest {
            nhs_number: nhs,
            practice: ods.clone(),
            observation: harness::blood_pressure("performer-check"),
            context: CallContext::new("t"),
        })
        .await
        .unwrap();
    assert!(created.created);
    assert_eq!(created.ids.len(), 2, "a systolic and a diastolic entry");
    let page = adapter
        .search(&SearchRequest {
            nhs_number: nhs,
            practice: ods,
            resource_type: ClinicalType::Observation,
            date: DateRange::default(),
            count: u32::MAX,
            offset: 0,
            context: CallContext::new("t"),
        })
        .await
        .unwrap();
    let written: Vec<&gp_fhir::model::Observation> = page
        .resources
        .iter()
        .filter_map(|r| match r {
            gp_fhir::model::Resource::Observation(o) if created.ids.contains(&o.id) => Some(o),
            _ => None,
        })
        .collect();
    assert_eq!(written.len(), 1, "one blood pressure panel");
    assert_eq!(
        written[0].id, created.ids[0],
        "the panel has the first entry's id"
    );
    assert_eq!(written[0].component.len(), 2);
    assert_eq!(
        written[0].identifier[0].value.as_deref(),
        Some("performer-check"),
        "the supplier's identifier is kept"
    );
    for o in &written {
        assert!(o.performer.is_empty(), "{o:?}");
        assert!(o.encounter.is_none(), "{o:?}");
        assert_eq!(
            o.effective_date_time.as_deref(),
            Some("2026-07-14T08:32:05+01:00"),
            "recorded in UK local time (BST)"
        );
    }
    // The write grew the record past the canonical one: parity is not for it.
    let written = HarnessFixture {
        canonical: None,
        ..fx
    };
    harness::run(&adapter, &written).await.assert_passed();
    sim.shutdown().await;
}

#[tokio::test]
async fn preferred_language_is_patient_communication() {
    let (sim, population) = start().await;
    let adapter = adapter(&sim, 5000);
    let fx = fixture(&population);
    for pair in &fx.patients {
        let held = population
            .patient_by_nhs(&pair.0.to_string())
            .unwrap()
            .language
            .clone();
        let read = adapter.read_patient(&read_req(pair)).await.unwrap();
        assert_eq!(read.patient.preferred_language(), held.as_deref());
        assert_eq!(
            read.patient.communication.first().map(|c| c.preferred),
            held.as_ref().map(|_| Some(true))
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn refused_writes_are_typed_errors() {
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
    // A concept Evolution does not record: its own 422, Unprocessable.
    let mut o = harness::body_weight("unknown-concept");
    o.measurements[0].snomed = "123456789".into();
    let err = adapter.create_observation(&create(o)).await.unwrap_err();
    assert!(
        matches!(&err, AdapterError::Unprocessable { detail, .. } if detail.contains("UNKNOWN_CODE") && detail.contains("123456789")),
        "{err}"
    );
    // A unit the concept is not recorded in.
    let mut o = harness::body_weight("wrong-unit");
    o.measurements[0].unit = "[lb_av]".into();
    let err = adapter.create_observation(&create(o)).await.unwrap_err();
    assert!(
        matches!(&err, AdapterError::Unprocessable { detail, .. } if detail.contains("INVALID_UNIT")),
        "{err}"
    );
    // Four address lines: refused before any call.
    let before = sim.requests();
    let read = adapter
        .read_patient(&read_req(&fx.patients[0]))
        .await
        .unwrap();
    let mut details = gp_adapter::ContactDetails {
        address: Some(gp_adapter::HomeAddress {
            lines: vec!["1".into(), "2".into(), "3".into(), "4".into()],
            town: "Leeds".into(),
            county: String::new(),
            postcode: "LS1 4AP".into(),
        }),
        ..Default::default()
    };
    let update =
        |details: gp_adapter::ContactDetails, version: &str| gp_adapter::UpdateContactRequest {
            nhs_number: nhs,
            practice: ods.clone(),
            expected_version: version.to_owned(),
            details,
            context: CallContext::new("t"),
        };
    let reads = sim.requests() - before;
    let err = adapter
        .update_contact(&update(details.clone(), &read.version))
        .await
        .unwrap_err();
    assert!(matches!(err, AdapterError::Unprocessable { .. }), "{err}");
    assert_eq!(sim.requests() - before, reads, "no call for a bad address");
    // A language Evolution does not record.
    details.address = None;
    details.language = Some("xx".into());
    let err = adapter
        .update_contact(&update(details.clone(), &read.version))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AdapterError::Unprocessable { detail, .. } if detail.contains("INVALID_LANGUAGE")),
        "{err}"
    );
    // A version that is not one: a conflict, not a crash.
    details.language = None;
    let err = adapter
        .update_contact(&update(details, "W/\"3\""))
        .await
        .unwrap_err();
    assert!(matches!(err, AdapterError::VersionConflict { .. }), "{err}");
    // None of it changed the record.
    let after = adapter
        .read_patient(&read_req(&fx.patients[0]))
        .await
        .unwrap();
    assert_eq!(after, read);
    // A 5xx from Evolution on a write is Unavailable.
    sim.set_fault(Fault::Status(503));
    let err = adapter
        .create_observation(&create(harness::body_weight("fault")))
        .await
        .unwrap_err();
    assert!(matches!(err, AdapterError::Unavailable { .. }), "{err}");
    sim.set_fault(Fault::None);
    sim.shutdown().await;
}

#[tokio::test]
async fn blood_pressure_is_one_panel_with_both_readings_like_every_system() {
    let (sim, population) = start().await;
    let adapter = adapter(&sim, 5000);
    let (nhs, ods) = fixture(&population).patients[0].clone();
    let page = adapter
        .search(&SearchRequest {
            nhs_number: nhs,
            practice: ods,
            resource_type: ClinicalType::Observation,
            date: DateRange::default(),
            count: u32::MAX,
            offset: 0,
            context: CallContext::new("t"),
        })
        .await
        .unwrap();
    let observations: Vec<&gp_fhir::model::Observation> = page
        .resources
        .iter()
        .filter_map(|r| match r {
            gp_fhir::model::Resource::Observation(o) => Some(o),
            _ => None,
        })
        .collect();
    let panels: Vec<_> = observations
        .iter()
        .filter(|o| o.code.code_in(gp_fhir::model::SNOMED) == Some("75367002"))
        .collect();
    assert!(!panels.is_empty());
    for p in &panels {
        let parts: Vec<_> = p
            .component
            .iter()
            .map(|c| c.code.code_in(gp_fhir::model::SNOMED))
            .collect();
        assert_eq!(parts, [Some("271649006"), Some("271650006")], "{p:?}");
        assert_eq!(p.value_quantity, None);
    }
    assert!(
        observations
            .iter()
            .all(|o| o.code.code_in(gp_fhir::model::SNOMED) != Some("271650006")),
        "no diastolic reading stands alone"
    );
    // The demo patient's observations as the population holds them, a pair once.
    let held = &population
        .patient_by_nhs("9912003888")
        .unwrap()
        .observations;
    let expected = held.len() - gp_sim::blood_pressure_pairs(held).len();
    assert_eq!(page.total as usize, expected);
    assert_eq!(observations.len(), expected);
}

/// The usual GP is read with the patient.
#[tokio::test]
async fn the_usual_gp_is_read() {
    let (sim, population) = start().await;
    let adapter = adapter(&sim, 5000);
    let fx = fixture(&population);
    let demo = adapter
        .read_patient(&read_req(&fx.patients[0]))
        .await
        .unwrap();
    assert!(demo.practitioner.is_some(), "the usual GP is read too");
}

#[tokio::test]
async fn invalid_data_errors_name_microtest_and_the_field() {
    let (sim, population) = start().await;
    let fx = fixture(&population);
    let adapter = adapter(&sim, 5000);
    let req = read_req(&fx.patients[0]);
    sim.set_fault(Fault::MissingNhsNumber);
    let err = adapter.read_patient(&req).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "Microtest Evolution returned data that cannot be read: patients[0].nhs_number is missing"
    );
    sim.set_fault(Fault::Truncated);
    let err = adapter.read_patient(&req).await.unwrap_err();
    assert!(
        err.to_string().starts_with("Microtest Evolution returned data that cannot be read: the patient index is not valid Evolution JSON"),
        "{err}"
    );
    sim.set_fault(Fault::None);
}

/// The change feed through the simulator: a change without its NHS number is bad data
/// naming the field, and a cursor whose changes are no longer kept is Unprocessable.
#[tokio::test]
async fn change_feed_refusals_and_bad_pages() {
    let population = sim::population();
    let fx = fixture(&population);
    let store = gp_sim::SimStore::new(population);
    let sim = sim::start_over(SystemKind::Microtest, store.clone()).await;
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
                SystemKind::Microtest,
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
        "Microtest Evolution returned data that cannot be read: changes[0].nhs_number is missing"
    );
    sim.set_fault(Fault::Truncated);
    let err = adapter
        .changes_since(&req(Some(start.clone())))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AdapterError::InvalidNativeData { .. }),
        "{err}"
    );
    sim.set_fault(Fault::None);
    for _ in 0..gp_sim::changes::KEPT {
        nurse();
    }
    let err = adapter.changes_since(&req(Some(start))).await.unwrap_err();
    assert!(
        matches!(&err, AdapterError::Unprocessable { detail, .. } if detail.starts_with("CURSOR_EXPIRED: ")),
        "{err:?}"
    );
}
