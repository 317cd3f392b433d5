#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The shared adapter suite, run against the real EMIS simulator from gp-sim on
//! 127.0.0.1:0, and the checks only EMIS has (the wording of its errors).

use gp_adapter::harness::{Backend, SuiteTarget, sim};
use gp_adapter::{Adapter, CallContext, PatientRequest};
use gp_adapter_emis::{EmisAdapter, EmisConfig};
use gp_sim::{Fault, SystemKind};

struct Emis;

#[async_trait::async_trait]
impl SuiteTarget for Emis {
    fn adapter(&self, base_url: &str, request_timeout_ms: u64) -> Box<dyn Adapter> {
        let mut config = EmisConfig::new(base_url.to_owned());
        config.request_timeout_ms = request_timeout_ms;
        config.connect_timeout_ms = config.connect_timeout_ms.min(request_timeout_ms);
        Box::new(EmisAdapter::new(config).unwrap())
    }

    async fn start(&self) -> Backend {
        sim::backend(SystemKind::Emis).await
    }
}

gp_adapter::adapter_suite!(Emis);

#[tokio::test]
async fn invalid_data_errors_name_emis_and_the_element() {
    let population = sim::population();
    let (nhs, ods) = sim::fixture(&population, SystemKind::Emis).patients[0].clone();
    let sim = sim::start(SystemKind::Emis, population).await;
    let adapter = Emis.adapter(&sim.base_url(), 5000);
    let req = PatientRequest {
        nhs_number: nhs,
        practice: ods,
        context: CallContext::new("t"),
    };
    sim.set_fault(Fault::MissingNhsNumber);
    let err = adapter.read_patient(&req).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "EMIS Web returned data that cannot be read: Registration/NhsNumber is missing"
    );
    sim.set_fault(Fault::None);
}
