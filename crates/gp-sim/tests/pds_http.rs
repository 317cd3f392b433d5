#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The PDS simulator over real HTTP.

mod support;

use gp_sim::{Fault, start_pds};
use serde_json::Value;
use support::*;

const PATH: &str = "/personal-demographics/FHIR/R4/Patient";

#[tokio::test]
async fn reads_patients_of_every_system() {
    let store = store();
    let sensitive = store.read(|p| p.patients[gp_sim::SENSITIVE_INDEX].nhs_number.clone());
    let expected: Vec<(String, String)> = store.read(|p| {
        gp_sim::DEMO_NHS_NUMBERS
            .iter()
            .map(|(_, n)| (n.to_string(), p.patient_by_nhs(n).unwrap().practice.clone()))
            .collect()
    });
    let sim = start_pds(store, loopback().await).await.unwrap();
    for (nhs, ods) in expected {
        let a = get(sim.addr, &format!("{PATH}/{nhs}")).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.header("content-type"), Some("application/fhir+json"));
        let v: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(v["resourceType"], "Patient");
        assert_eq!(v["id"], nhs.as_str());
        assert_eq!(
            v["identifier"][0]["system"],
            "https://fhir.nhs.uk/Id/nhs-number"
        );
        assert_eq!(v["identifier"][0]["value"], nhs.as_str());
        assert_eq!(
            v["generalPractitioner"][0]["identifier"]["value"],
            ods.as_str()
        );
        assert_eq!(v["meta"]["security"][0]["code"], "U");
        assert!(v.get("address").is_some());
    }
    let a = get(sim.addr, &format!("{PATH}/{sensitive}")).await;
    let v: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["meta"]["security"][0]["code"], "R");
    assert!(v.get("address").is_none() && v.get("telecom").is_none());
}

#[tokio::test]
async fn not_found_invalid_and_faults() {
    let sim = start_pds(store(), loopback().await).await.unwrap();
    let code = |a: &Answer| {
        let v: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(v["resourceType"], "OperationOutcome");
        v["issue"][0]["details"]["coding"][0]["code"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let a = get(sim.addr, &format!("{PATH}/9434765919")).await;
    assert_eq!((a.status, code(&a).as_str()), (404, "RESOURCE_NOT_FOUND"));
    let a = get(sim.addr, &format!("{PATH}/123")).await;
    assert_eq!((a.status, code(&a).as_str()), (400, "INVALID_RESOURCE_ID"));

    sim.set_fault(Fault::Status(429));
    let a = get(sim.addr, &format!("{PATH}/9000000009")).await;
    assert_eq!((a.status, code(&a).as_str()), (429, "TOO_MANY_REQUESTS"));
    sim.set_fault(Fault::MissingNhsNumber);
    let v: Value =
        serde_json::from_slice(&get(sim.addr, &format!("{PATH}/9000000009")).await.body).unwrap();
    assert!(v.get("identifier").is_none());
    sim.set_fault(Fault::MisEncoded);
    assert!(std::str::from_utf8(&get(sim.addr, &format!("{PATH}/9000000009")).await.body).is_err());
    sim.set_fault(Fault::Garbage);
    assert!(
        serde_json::from_slice::<Value>(&get(sim.addr, &format!("{PATH}/9000000009")).await.body)
            .is_err()
    );
    assert_eq!(sim.requests(), 6);
    sim.shutdown().await;
}
