#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The SystmOne simulator over real HTTP, checked with a real XML parser: the record
//! format, paging, not-found answers and fault injection.

mod support;

use std::time::Duration;

use gp_sim::{Fault, SystemKind, start_tpp};
use support::*;

fn tpp_practices(store: &gp_sim::SimStore) -> Vec<String> {
    store.read(|p| {
        p.practices
            .iter()
            .filter(|pr| pr.system == SystemKind::Tpp)
            .map(|pr| pr.ods.clone())
            .collect()
    })
}

fn record_path(ods: &str, nhs: &str, query: &str) -> String {
    format!("/systmone/api/v1/organisations/{ods}/patients/{nhs}/record{query}")
}

fn child_text<'a>(node: roxmltree::Node<'a, 'a>, name: &str) -> Option<&'a str> {
    node.children()
        .find(|n| n.has_tag_name(name))
        .and_then(|n| n.text())
}

fn paging(doc: &roxmltree::Document) -> (u32, u32, u32) {
    let p = doc
        .descendants()
        .find(|n| n.has_tag_name("Paging"))
        .unwrap();
    let a = |k| p.attribute(k).unwrap().parse().unwrap();
    (a("Page"), a("PageSize"), a("TotalEvents"))
}

/// `EventUID`s of the top-level events on a page.
fn top_events(doc: &roxmltree::Document) -> Vec<String> {
    let clinical = doc
        .descendants()
        .find(|n| n.has_tag_name("Clinical"))
        .unwrap();
    clinical
        .children()
        .filter(|n| n.has_tag_name("Event"))
        .map(|n| n.attribute("EventUID").unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn serves_the_demo_record() {
    let store = store();
    let ods = tpp_practices(&store)[0].clone();
    let sim = start_tpp(store, loopback().await).await.unwrap();
    let a = get_with(
        sim.addr,
        &record_path(&ods, "9690937278", ""),
        "X-Correlation-Id: corr-1\r\n",
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("application/xml"));
    assert_eq!(a.header("x-correlation-id"), Some("corr-1"));

    let doc = roxmltree::Document::parse(a.text()).unwrap();
    let root = doc.root_element();
    assert!(root.has_tag_name("PatientRecord"));
    assert_eq!(child_text(root, "OrganisationID"), Some(ods.as_str()));
    assert!(child_text(root, "PatientUID").is_some());
    let (page, size, total) = paging(&doc);
    assert_eq!((page, size), (1, 100));
    assert_eq!(top_events(&doc).len() as u32, total.min(100));

    let identity = doc
        .descendants()
        .find(|n| n.has_tag_name("Identity"))
        .unwrap();
    assert_eq!(child_text(identity, "NHSNumber"), Some("9690937278"));
    let demo = doc
        .descendants()
        .find(|n| n.has_tag_name("Demographics"))
        .unwrap();
    assert!(child_text(demo, "Surname").is_some());
    assert!(matches!(
        child_text(demo, "Sex"),
        Some("Male" | "Female" | "Unknown" | "Indeterminate")
    ));
    let dob = demo
        .children()
        .find(|n| n.has_tag_name("DateOfBirth"))
        .unwrap();
    assert_eq!(dob.attribute("DatePrecision"), Some("Date"));
    assert!(dob.text().unwrap().ends_with("T00:00:00Z"));
    let updated = child_text(demo, "LastUpdated").unwrap();
    assert!(updated.len() == 20 && updated.ends_with('Z'), "{updated}");
    let flags = doc
        .descendants()
        .find(|n| n.has_tag_name("SharingFlags"))
        .unwrap();
    assert_eq!(flags.attribute("Sensitive"), Some("false"));
    assert_eq!(flags.attribute("ThirdPartyDissent"), Some("false"));

    // Every kind of entry, consultations grouping events, codes mostly CTV3.
    for tag in [
        "Consultation",
        "ClinicalCode",
        "Medication",
        "Vaccination",
        "Problem",
    ] {
        assert!(doc.descendants().any(|n| n.has_tag_name(tag)), "no {tag}");
    }
    assert!(
        doc.descendants()
            .any(|n| n.has_tag_name("ClinicalCode") && n.attribute("IsAllergy") == Some("true"))
    );
    assert!(doc.descendants().any(|n| n.has_tag_name("Event")
        && n.parent().is_some_and(|p| p.has_tag_name("Event"))));
    let schemes: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("Code"))
        .map(|n| n.attribute("Scheme").unwrap())
        .collect();
    assert!(schemes.contains(&"CTV3") && schemes.contains(&"DMD"));
    assert!(
        schemes
            .iter()
            .all(|s| ["CTV3", "Snomed", "DMD"].contains(s))
    );
    for e in doc.descendants().filter(|n| n.has_tag_name("Event")) {
        let when = e.attribute("DateTime").unwrap();
        assert!(when.len() == 20 && when.ends_with('Z'), "{when}");
        assert!(matches!(
            e.attribute("DatePrecision"),
            None | Some("Year" | "Month" | "Date")
        ));
        assert!(matches!(
            e.attribute("Confidential"),
            Some("true" | "false")
        ));
        assert!(e.attribute("EventUID").is_some() && e.attribute("DoneBy").is_some());
    }
    let units: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("Units"))
        .filter_map(|n| n.text())
        .collect();
    assert!(units.contains(&"mm[Hg]"));
    // The usual GP is a member of staff.
    let gp = demo
        .children()
        .find(|n| n.has_tag_name("UsualGP"))
        .unwrap()
        .attribute("StaffUID")
        .unwrap();
    assert!(
        doc.descendants()
            .any(|n| n.has_tag_name("StaffMember") && n.attribute("StaffUID") == Some(gp))
    );
    assert_eq!(sim.requests(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn pages_cover_the_journal_exactly_once() {
    let store = store();
    let ods = tpp_practices(&store)[0].clone();
    let sim = start_tpp(store, loopback().await).await.unwrap();
    let fetch = |page: u32, size: u32| {
        let path = record_path(&ods, "9690937278", &format!("?page={page}&pageSize={size}"));
        async move { get(sim.addr, &path).await }
    };
    let all = fetch(1, 100).await;
    let doc = roxmltree::Document::parse(all.text()).unwrap();
    let (_, _, total) = paging(&doc);
    let everything = top_events(&doc);
    assert!(total >= 4, "the demo journal has several events ({total})");
    assert_eq!(everything.len() as u32, total);

    let mut walked = Vec::new();
    let pages = total.div_ceil(3);
    for page in 1..=pages {
        let a = fetch(page, 3).await;
        assert_eq!(a.status, 200);
        let doc = roxmltree::Document::parse(a.text()).unwrap();
        assert_eq!(paging(&doc), (page, 3, total));
        let events = top_events(&doc);
        assert!(!events.is_empty() && events.len() <= 3);
        // Demographics are on every page.
        assert!(a.text().contains("<NHSNumber>9690937278</NHSNumber>"));
        walked.extend(events);
    }
    assert_eq!(walked, everything, "pages in order, no gaps, no repeats");
    // Past the end: an empty page, still with its paging.
    let past = fetch(pages + 1, 3).await;
    let doc = roxmltree::Document::parse(past.text()).unwrap();
    assert_eq!(paging(&doc), (pages + 1, 3, total));
    assert!(top_events(&doc).is_empty());

    for bad in ["?pageSize=101", "?pageSize=0", "?page=0", "?page=x"] {
        let a = get(sim.addr, &record_path(&ods, "9690937278", bad)).await;
        assert_eq!(a.status, 400, "{bad}");
        assert!(
            a.text()
                .contains("<ErrorCode>INVALID_PARAMETER</ErrorCode>")
        );
    }
}

#[tokio::test]
async fn flags_are_rendered() {
    let store = store();
    let ods = tpp_practices(&store)[0].clone();
    let (sensitive, dissent) = store.read(|p| {
        let ps: Vec<_> = p.patients.iter().filter(|x| x.practice == ods).collect();
        (
            ps[gp_sim::SENSITIVE_INDEX].nhs_number.clone(),
            ps[gp_sim::DISSENT_INDEX].nhs_number.clone(),
        )
    });
    let sim = start_tpp(store, loopback().await).await.unwrap();
    let a = get(sim.addr, &record_path(&ods, &sensitive, "")).await;
    assert!(a.text().contains("Sensitive=\"true\""));
    let a = get(sim.addr, &record_path(&ods, &dissent, "")).await;
    assert!(a.text().contains("ThirdPartyDissent=\"true\""));
}

#[tokio::test]
async fn not_found_and_invalid() {
    let store = store();
    let tpp = tpp_practices(&store);
    let emis_ods = store.read(|p| {
        p.practices
            .iter()
            .find(|x| x.system == SystemKind::Emis)
            .unwrap()
            .ods
            .clone()
    });
    let sim = start_tpp(store, loopback().await).await.unwrap();
    let code = |a: &Answer| {
        let doc = roxmltree::Document::parse(a.text()).unwrap();
        assert!(doc.root_element().has_tag_name("ErrorResponse"));
        assert!(child_text(doc.root_element(), "Description").is_some());
        child_text(doc.root_element(), "ErrorCode")
            .unwrap()
            .to_owned()
    };
    // 9434765919: a valid NHS number nobody in the population has.
    let a = get(sim.addr, &record_path(&tpp[0], "9434765919", "")).await;
    assert_eq!((a.status, code(&a).as_str()), (404, "PATIENT_NOT_FOUND"));
    // The demo patient at another TPP practice.
    let a = get(sim.addr, &record_path(&tpp[1], "9690937278", "")).await;
    assert_eq!((a.status, code(&a).as_str()), (404, "PATIENT_NOT_FOUND"));
    // An EMIS practice is unknown to SystmOne.
    let a = get(sim.addr, &record_path(&emis_ods, "9000000009", "")).await;
    assert_eq!(
        (a.status, code(&a).as_str()),
        (404, "ORGANISATION_NOT_FOUND")
    );
    let a = get(sim.addr, &record_path(&tpp[0], "9000000001", "")).await;
    assert_eq!((a.status, code(&a).as_str()), (400, "INVALID_NHS_NUMBER"));
    let a = get(sim.addr, "/systmone/api/v1/nowhere").await;
    assert_eq!((a.status, code(&a).as_str()), (404, "NOT_FOUND"));

    let a = get(sim.addr, "/systmone/api/v1/health").await;
    assert_eq!(a.status, 200);
    assert!(a.text().contains("<Status>OK</Status>"));
    assert_eq!(sim.requests(), 5, "health probes are not counted");
}

#[tokio::test]
async fn faults_behave_as_described() {
    let store = store();
    let ods = tpp_practices(&store)[0].clone();
    let sim = start_tpp(store, loopback().await).await.unwrap();
    let path = record_path(&ods, "9690937278", "?page=1&pageSize=100");

    sim.set_fault(Fault::Status(503));
    let a = get(sim.addr, &path).await;
    assert_eq!(a.status, 503);
    assert!(
        a.text()
            .contains("<ErrorCode>SERVICE_UNAVAILABLE</ErrorCode>")
    );
    assert_eq!(get(sim.addr, "/systmone/api/v1/health").await.status, 200);

    sim.set_fault(Fault::Garbage);
    let a = get(sim.addr, &path).await;
    assert_eq!(a.status, 200);
    assert!(roxmltree::Document::parse(&String::from_utf8_lossy(&a.body)).is_err());

    sim.set_fault(Fault::Truncated);
    let a = get(sim.addr, &path).await;
    assert!(roxmltree::Document::parse(a.text()).is_err());

    sim.set_fault(Fault::MisEncoded);
    let a = get(sim.addr, &path).await;
    assert!(std::str::from_utf8(&a.body).is_err());

    sim.set_fault(Fault::MissingNhsNumber);
    let a = get(sim.addr, &path).await;
    let doc = roxmltree::Document::parse(a.text()).unwrap();
    assert!(doc.descendants().any(|n| n.has_tag_name("Identity")));
    assert!(!doc.descendants().any(|n| n.has_tag_name("NHSNumber")));

    sim.set_fault(Fault::Reset);
    let r = get_with(sim.addr, &path, "", Duration::from_secs(2)).await;
    assert!(r.is_err() && r.err().as_deref() != Some("timed out"));

    sim.set_fault(Fault::Hang);
    let r = get_with(sim.addr, &path, "", Duration::from_millis(300)).await;
    assert_eq!(r.err().as_deref(), Some("timed out"));

    sim.set_fault(Fault::None);
    assert_eq!(get(sim.addr, &path).await.status, 200);
    sim.shutdown().await;
}
