#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The adapter conformance harness and the backend-fault checks, run against the real
//! Vision simulator from gp-sim on 127.0.0.1:0.

use gp_adapter::harness::{self, ExpectedFailure, HarnessFixture};
use gp_adapter::{Adapter, AdapterError, CallContext, ClinicalType, PatientRequest, SearchRequest};
use gp_adapter_vision::{VisionAdapter, VisionConfig};
use gp_fhir::date::DateRange;
use gp_fhir::model::Resource;
use gp_fhir::{NhsNumber, OdsCode};
use gp_sim::{Fault, Population, PopulationSpec, SimHandle, SimStore, SystemKind};
use tokio::net::TcpListener;

async fn start_with(population: Population) -> SimHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    gp_sim::start_vision(SimStore::new(population), listener)
        .await
        .unwrap()
}

async fn start() -> (SimHandle, Population) {
    let population = Population::generate(42, &PopulationSpec::sandbox());
    (start_with(population.clone()).await, population)
}

fn adapter(sim: &SimHandle, request_timeout_ms: u64) -> VisionAdapter {
    let mut config = VisionConfig::new(sim.base_url());
    config.request_timeout_ms = request_timeout_ms;
    config.connect_timeout_ms = config.connect_timeout_ms.min(request_timeout_ms);
    VisionAdapter::new(config).unwrap()
}

fn first_vision_ods(population: &Population) -> String {
    population
        .practices
        .iter()
        .find(|p| p.system == SystemKind::Vision)
        .unwrap()
        .ods
        .clone()
}

/// The demo patient plus more of the first Vision practice, and an unknown patient.
fn fixture(population: &Population) -> HarnessFixture {
    let first = first_vision_ods(population);
    let ods = OdsCode::parse(&first).unwrap();
    let patients: Vec<(NhsNumber, OdsCode)> = population
        .patients
        .iter()
        .filter(|p| p.practice == first)
        .take(6)
        .map(|p| (NhsNumber::parse(&p.nhs_number).unwrap(), ods.clone()))
        .collect();
    assert_eq!(
        patients[0].0.to_string(),
        "9658218865",
        "the demo patient leads the first Vision practice"
    );
    let unknown = (0..)
        .filter_map(|stem| NhsNumber::from_stem(999_999_000 + stem))
        .find(|n| population.patient_by_nhs(&n.to_string()).is_none())
        .unwrap();
    HarnessFixture {
        patients,
        unknown: (unknown, ods),
    }
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

#[tokio::test]
async fn vision_adapter_passes_the_conformance_harness() {
    let (sim, population) = start().await;
    let adapter = adapter(&sim, 5000);
    let report = harness::run(&adapter, &fixture(&population)).await;
    println!("{report}");
    report.assert_passed();
}

/// Write-back through the native journal POST and contact PUT, on a simulator of its
/// own; the read harness must still pass afterwards, with the written (authorless,
/// consultation-less) entries in the record.
#[tokio::test]
async fn vision_adapter_passes_the_write_harness() {
    let (sim, population) = start().await;
    let adapter = adapter(&sim, 5000);
    let fx = fixture(&population);
    let report = harness::run_writes(&adapter, &fx).await;
    println!("{report}");
    report.assert_passed();
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
        3,
        "the BP row's two Observations and the weight, none with a performer"
    );
    assert!(written.iter().all(|o| o.encounter.is_none()));
    harness::run(&adapter, &fx).await.assert_passed();
}

#[tokio::test]
async fn sensitive_and_dissenting_patients_are_flagged() {
    let (sim, population) = start().await;
    let adapter = adapter(&sim, 5000);
    let fx = fixture(&population);
    let read = |i: usize| {
        let (nhs, ods) = fx.patients[i].clone();
        let adapter = &adapter;
        async move {
            adapter
                .read_patient(&PatientRequest {
                    nhs_number: nhs,
                    practice: ods,
                    context: CallContext::new("t"),
                })
                .await
                .unwrap()
        }
    };
    let sensitive = read(gp_sim::SENSITIVE_INDEX).await;
    assert!(sensitive.flags.restricted && sensitive.patient.is_restricted());
    let dissent = read(gp_sim::DISSENT_INDEX).await;
    assert!(dissent.flags.dissent && !dissent.flags.restricted);
    let demo = read(0).await;
    assert!(!demo.flags.restricted && !demo.flags.dissent);
    assert_eq!(demo.organization.unwrap().id, fx.patients[0].1.as_str());
    assert!(
        demo.practitioner.is_some(),
        "the usual GP comes from the staff extract"
    );
}

/// Blood pressure is one Vision row but two Observations, exactly as many as the
/// population (and so the EMIS adapter) has.
#[tokio::test]
async fn blood_pressure_rows_split_like_emis() {
    let (sim, population) = start().await;
    let adapter = adapter(&sim, 5000);
    let fx = fixture(&population);
    let (nhs, ods) = fx.patients[0].clone();
    let page = adapter
        .search(&search(nhs, &ods, ClinicalType::Observation))
        .await
        .unwrap();
    let sim_patient = population.patient_by_nhs("9658218865").unwrap();
    assert_eq!(page.resources.len(), sim_patient.observations.len());
    let count = |code: &str| {
        page.resources
            .iter()
            .filter(|r| match r {
                Resource::Observation(o) => o.code.code_in(gp_fhir::model::SNOMED) == Some(code),
                _ => false,
            })
            .count()
    };
    let systolic = count("271649006");
    assert!(systolic > 0);
    assert_eq!(systolic, count("271650006"));
}

/// A record longer than one 500-row page is fetched whole by following the token.
#[tokio::test]
async fn long_journals_follow_continuation_tokens() {
    let mut population = Population::generate(42, &PopulationSpec::sandbox());
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
    let expected = demo.observations.len();
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
async fn backend_faults_become_typed_errors() {
    let (sim, population) = start().await;
    let fx = fixture(&population);
    let demo = fx.patients[0].clone();
    let cases = [
        (Fault::Status(500), ExpectedFailure::Unavailable),
        (Fault::Status(503), ExpectedFailure::Unavailable),
        (Fault::Reset, ExpectedFailure::Unavailable),
        (Fault::Garbage, ExpectedFailure::InvalidNativeData),
        (Fault::Truncated, ExpectedFailure::InvalidNativeData),
        (Fault::MisEncoded, ExpectedFailure::InvalidNativeData),
        (Fault::MissingNhsNumber, ExpectedFailure::InvalidNativeData),
    ];
    let adapter = adapter(&sim, 5000);
    for (fault, expected) in cases {
        sim.set_fault(fault);
        let report = harness::check_backend_failure(&adapter, &demo, expected).await;
        assert!(report.passed(), "{fault:?}:\n{report}");
    }
    sim.set_fault(Fault::Hang);
    let quick = self::adapter(&sim, 200);
    harness::check_backend_failure(&quick, &demo, ExpectedFailure::Timeout)
        .await
        .assert_passed();
    sim.set_fault(Fault::None);
    sim.shutdown().await;
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
    sim.set_fault(Fault::MisEncoded);
    let err = adapter.read_patient(&req).await.unwrap_err();
    assert!(
        matches!(&err, AdapterError::InvalidNativeData { detail, .. } if detail.contains("not valid UTF-8")),
        "{err}"
    );
    sim.set_fault(Fault::Garbage);
    let err = adapter.read_patient(&req).await.unwrap_err();
    assert!(err.to_string().starts_with("Vision returned data"), "{err}");
    sim.set_fault(Fault::None);
}

#[tokio::test]
async fn ready_follows_the_health_endpoint() {
    let (sim, _) = start().await;
    let adapter = adapter(&sim, 5000);
    adapter.ready(&CallContext::new("t")).await.unwrap();
    let base = sim.base_url();
    sim.shutdown().await;
    let gone = VisionAdapter::new(VisionConfig::new(base)).unwrap();
    assert!(matches!(
        gone.ready(&CallContext::new("t")).await,
        Err(AdapterError::Unavailable { .. })
    ));
}
