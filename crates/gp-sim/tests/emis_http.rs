#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The EMIS simulator over real HTTP, checked with a real XML parser.

mod support;

use std::time::Duration;

use gp_sim::{Fault, SystemKind, start_emis};
use support::*;

const NS: &str = "http://www.e-mis.com/emisopen/MedicalRecord";

fn first_emis_ods(store: &gp_sim::SimStore) -> String {
    store.read(|p| {
        p.practices
            .iter()
            .find(|pr| pr.system == SystemKind::Emis)
            .unwrap()
            .ods
            .clone()
    })
}

fn child_text<'a>(node: roxmltree::Node<'a, 'a>, name: &str) -> Option<&'a str> {
    node.children()
        .find(|n| n.has_tag_name((NS, name)))
        .and_then(|n| n.text())
}

#[tokio::test]
async fn serves_the_demo_record() {
    let store = store();
    let ods = first_emis_ods(&store);
    let sim = start_emis(store, loopback().await).await.unwrap();
    let path = format!("/emis/practices/{ods}/patients/9000000009/medicalrecord");
    let a = get_with(sim.addr, &path, "X-Correlation-Id: corr-1\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n", Duration::from_secs(5)).await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("application/xml"));
    assert_eq!(a.header("x-correlation-id"), Some("corr-1"));
    assert!(a.header("traceparent").is_some());

    let doc = roxmltree::Document::parse(a.text()).unwrap();
    let root = doc.root_element();
    assert!(root.has_tag_name((NS, "MedicalRecord")));
    let reg = root
        .children()
        .find(|n| n.has_tag_name((NS, "Registration")))
        .unwrap();
    assert_eq!(child_text(reg, "NhsNumber"), Some("900 000 0009"));
    assert_eq!(child_text(reg, "Confidential"), Some("false"));
    assert_eq!(child_text(reg, "SharingDissent"), Some("false"));
    let dob = child_text(reg, "DateOfBirth").unwrap();
    assert!(
        dob.len() == 10 && &dob[2..3] == "/" && &dob[5..6] == "/",
        "{dob}"
    );
    assert!(matches!(child_text(reg, "Sex"), Some("M" | "F")));
    let org = root
        .children()
        .find(|n| n.has_tag_name((NS, "Organisation")))
        .unwrap();
    assert_eq!(child_text(org, "OdsCode"), Some(ods.as_str()));

    // The usual GP is one of the people listed.
    let gp = child_text(reg, "UsualGpID").unwrap();
    assert!(
        doc.descendants()
            .filter(|n| n.has_tag_name((NS, "Person")))
            .any(|p| child_text(p, "GUID") == Some(gp))
    );

    let events: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name((NS, "Event")))
        .collect();
    let kinds: Vec<_> = events
        .iter()
        .filter_map(|e| child_text(*e, "EventType"))
        .collect();
    for kind in ["Problem", "Observation", "Immunisation"] {
        assert!(kinds.contains(&kind), "no {kind} event");
    }
    let units: Vec<_> = events
        .iter()
        .filter_map(|e| child_text(*e, "Units"))
        .collect();
    assert!(units.contains(&"mm[Hg]"));
    let schemes: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name((NS, "Scheme")))
        .filter_map(|n| n.text())
        .collect();
    assert!(schemes.contains(&"DMD") && schemes.contains(&"EMISCLINICAL"));
    assert!(
        schemes
            .iter()
            .all(|s| ["READ2", "EMISCLINICAL", "SNOMED", "DMD"].contains(s))
    );
    for part in doc
        .descendants()
        .filter(|n| n.has_tag_name((NS, "DatePart")))
    {
        assert!(["Y", "YM", "YMD", "YMDT"].contains(&part.text().unwrap()));
    }
    assert!(doc.descendants().any(|n| n.has_tag_name((NS, "Allergy"))));
    assert!(
        doc.descendants()
            .any(|n| n.has_tag_name((NS, "Medication")))
    );
    assert!(
        doc.descendants()
            .any(|n| n.has_tag_name((NS, "Consultation")))
    );
    assert_eq!(sim.requests(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn flags_are_rendered() {
    let store = store();
    let ods = first_emis_ods(&store);
    let (sensitive, dissent) = store.read(|p| {
        let ps: Vec<_> = p.patients.iter().filter(|x| x.practice == ods).collect();
        (
            ps[gp_sim::SENSITIVE_INDEX].nhs_number.clone(),
            ps[gp_sim::DISSENT_INDEX].nhs_number.clone(),
        )
    });
    let sim = start_emis(store, loopback().await).await.unwrap();
    let a = get(
        sim.addr,
        &format!("/emis/practices/{ods}/patients/{sensitive}/medicalrecord"),
    )
    .await;
    assert!(a.text().contains("<Confidential>true</Confidential>"));
    let a = get(
        sim.addr,
        &format!("/emis/practices/{ods}/patients/{dissent}/medicalrecord"),
    )
    .await;
    assert!(a.text().contains("<SharingDissent>true</SharingDissent>"));
}

#[tokio::test]
async fn not_found_and_invalid() {
    let store = store();
    let ods = first_emis_ods(&store);
    let (other_emis, tpp_ods) = store.read(|p| {
        let emis: Vec<_> = p
            .practices
            .iter()
            .filter(|x| x.system == SystemKind::Emis)
            .collect();
        let tpp = p
            .practices
            .iter()
            .find(|x| x.system == SystemKind::Tpp)
            .unwrap();
        (emis[1].ods.clone(), tpp.ods.clone())
    });
    let sim = start_emis(store, loopback().await).await.unwrap();
    let code = |a: &Answer| {
        let doc = roxmltree::Document::parse(a.text()).unwrap();
        assert!(doc.root_element().has_tag_name((NS, "Error")));
        child_text(doc.root_element(), "Code").unwrap().to_owned()
    };

    // 9434765919: a valid NHS number nobody in the population has.
    let a = get(
        sim.addr,
        &format!("/emis/practices/{ods}/patients/9434765919/medicalrecord"),
    )
    .await;
    assert_eq!((a.status, code(&a).as_str()), (404, "PATIENT_NOT_FOUND"));
    assert!(a.text().contains(&format!("registered at {ods}")));

    // The demo patient at the wrong (but real EMIS) practice.
    let a = get(
        sim.addr,
        &format!("/emis/practices/{other_emis}/patients/9000000009/medicalrecord"),
    )
    .await;
    assert_eq!((a.status, code(&a).as_str()), (404, "PATIENT_NOT_FOUND"));

    // A TPP practice is unknown to EMIS.
    let a = get(
        sim.addr,
        &format!("/emis/practices/{tpp_ods}/patients/9690937278/medicalrecord"),
    )
    .await;
    assert_eq!((a.status, code(&a).as_str()), (404, "PRACTICE_NOT_FOUND"));

    let a = get(
        sim.addr,
        &format!("/emis/practices/{ods}/patients/9000000001/medicalrecord"),
    )
    .await;
    assert_eq!((a.status, code(&a).as_str()), (400, "INVALID_NHS_NUMBER"));

    let a = get(sim.addr, "/emis/health").await;
    assert_eq!(a.status, 200);
    assert!(a.text().contains("<Status>OK</Status>"));
}

#[tokio::test]
async fn faults_behave_as_described() {
    let store = store();
    let ods = first_emis_ods(&store);
    let sim = start_emis(store, loopback().await).await.unwrap();
    let path = format!("/emis/practices/{ods}/patients/9000000009/medicalrecord");

    sim.set_fault(Fault::Status(503));
    let a = get(sim.addr, &path).await;
    assert_eq!(a.status, 503);
    assert!(a.text().contains("<Code>SERVICE_UNAVAILABLE</Code>"));
    // Health probes are never faulted.
    assert_eq!(get(sim.addr, "/emis/health").await.status, 200);

    sim.set_fault(Fault::Garbage);
    let a = get(sim.addr, &path).await;
    assert_eq!(a.status, 200);
    assert!(roxmltree::Document::parse(&String::from_utf8_lossy(&a.body)).is_err());

    sim.set_fault(Fault::Truncated);
    let a = get(sim.addr, &path).await;
    assert_eq!(a.status, 200);
    assert!(roxmltree::Document::parse(a.text()).is_err());

    sim.set_fault(Fault::MisEncoded);
    let a = get(sim.addr, &path).await;
    assert_eq!(a.status, 200);
    assert!(std::str::from_utf8(&a.body).is_err());

    sim.set_fault(Fault::MissingNhsNumber);
    let a = get(sim.addr, &path).await;
    assert_eq!(a.status, 200);
    let doc = roxmltree::Document::parse(a.text()).unwrap();
    assert!(
        doc.descendants()
            .any(|n| n.has_tag_name((NS, "Registration")))
    );
    assert!(!doc.descendants().any(|n| n.has_tag_name((NS, "NhsNumber"))));

    sim.set_fault(Fault::Reset);
    let r = get_with(sim.addr, &path, "", Duration::from_secs(2)).await;
    assert!(r.is_err(), "expected no answer");
    assert_ne!(r.err().as_deref(), Some("timed out"));

    sim.set_fault(Fault::Hang);
    let r = get_with(sim.addr, &path, "", Duration::from_millis(300)).await;
    assert_eq!(r.err().as_deref(), Some("timed out"));

    sim.set_fault(Fault::None);
    assert_eq!(get(sim.addr, &path).await.status, 200);
    assert_eq!(sim.requests(), 8, "health probes are not counted");

    // Shutdown releases a hung request promptly.
    sim.set_fault(Fault::Hang);
    let addr = sim.addr;
    let p2 = path.clone();
    let hung = tokio::spawn(async move { get_with(addr, &p2, "", Duration::from_secs(5)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokio::time::timeout(Duration::from_secs(3), sim.shutdown())
        .await
        .expect("shutdown hung");
    let r = hung.await.unwrap();
    assert!(r.is_err() && r.err().as_deref() != Some("timed out"));
}
