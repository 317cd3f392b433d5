#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The Microtest Evolution simulator over real HTTP, checked with a real JSON parser.

mod support;

use std::time::Duration;

use gp_sim::concepts;
use gp_sim::{EntryMeta, Fault, Observation, SimDate, SystemKind, start_microtest};
use serde_json::Value;
use support::*;

const DEMO: &str = "9912003888";

fn first_microtest_ods(store: &gp_sim::SimStore) -> String {
    store.read(|p| {
        p.practices
            .iter()
            .find(|pr| pr.system == SystemKind::Microtest)
            .unwrap()
            .ods
            .clone()
    })
}

async fn get_json(addr: std::net::SocketAddr, path: &str) -> (u16, Option<String>, Value) {
    let a = get_with(addr, path, "", Duration::from_secs(5))
        .await
        .unwrap();
    let ct = a.header("content-type").map(str::to_owned);
    (a.status, ct, serde_json::from_slice(&a.body).unwrap())
}

async fn demo_id(addr: std::net::SocketAddr, ods: &str) -> String {
    let (s, _, v) = get_json(
        addr,
        &format!("/evolution/v2/sites/{ods}/patients?nhs_number={DEMO}"),
    )
    .await;
    assert_eq!(s, 200);
    v["patients"][0]["patient_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn serves_the_demo_patient() {
    let store = store();
    let ods = first_microtest_ods(&store);
    let sim = start_microtest(store, loopback().await).await.unwrap();
    let a = get_with(
        sim.addr,
        "/evolution/v2/health",
        "X-Correlation-Id: corr-1\r\n",
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-correlation-id"), Some("corr-1"));

    let (status, ct, index) = get_json(
        sim.addr,
        &format!("/evolution/v2/sites/{ods}/patients?nhs_number={DEMO}"),
    )
    .await;
    assert_eq!((status, ct.as_deref()), (200, Some("application/json")));
    assert_eq!(index["patients"].as_array().unwrap().len(), 1);
    assert_eq!(index["patients"][0]["nhs_number"], DEMO);
    let id = index["patients"][0]["patient_id"].as_str().unwrap();

    let (status, _, p) = get_json(
        sim.addr,
        &format!("/evolution/v2/sites/{ods}/patients/{id}"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(p["nhs_number"], DEMO);
    assert_eq!(p["site"]["ods_code"], ods.as_str());
    assert_eq!(p["restricted"], false);
    assert_eq!(p["sharing_dissent"], false);
    assert_eq!(p["date_of_birth"]["precision"], "day");
    assert_eq!(p["last_modified"]["precision"], "datetime");
    assert!(matches!(p["sex"].as_str(), Some("M" | "F")));
    let gp = p["usual_clinician_id"].as_str().unwrap();
    let (status, _, c) = get_json(
        sim.addr,
        &format!("/evolution/v2/sites/{ods}/clinicians/{gp}"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(c["clinician_id"], gp);

    // Every entry type answers; codes are Read v2 or SNOMED CT, numbers are strings, and
    // blood pressure is one entry with both readings.
    let mut saw_bp = false;
    for kind in gp_sim::microtest::ENTRY_TYPES {
        let (status, _, page) = get_json(
            sim.addr,
            &format!("/evolution/v2/sites/{ods}/patients/{id}/entries?type={kind}"),
        )
        .await;
        assert_eq!(status, 200, "{kind}");
        let entries = page["entries"].as_array().unwrap();
        assert!(!entries.is_empty(), "the demo patient has {kind} entries");
        assert_eq!(page["total"], entries.len());
        assert!(page["next_cursor"].is_null());
        for e in entries {
            assert_eq!(e["type"], kind);
            let code = if kind == "medication" {
                &e["drug"]
            } else {
                &e["code"]
            };
            assert!(
                code["read"].is_string() || code["snomed"].is_string() || code["dmd"].is_string(),
                "{e}"
            );
            if let Some(v) = e.get("value") {
                assert!(v.is_string(), "numbers are strings: {e}");
            }
            if e.get("systolic").is_some() {
                saw_bp = true;
                assert_eq!(e["code"]["read"], "246..");
                assert!(e["systolic"]["value"].is_string());
                assert!(e["diastolic"]["id"].is_string());
            }
        }
    }
    assert!(saw_bp, "the demo patient has a blood pressure entry");
}

#[tokio::test]
async fn pages_with_cursors_of_at_most_200() {
    let store = store();
    let ods = first_microtest_ods(&store);
    // Give the demo patient 450 more (single-value) observations.
    let pulse = concepts::get("pulse-rate").unwrap();
    store.write(|p| {
        let patient = p
            .patients
            .iter_mut()
            .find(|x| x.nhs_number == DEMO)
            .unwrap();
        for i in 0..450u32 {
            patient.observations.push(Observation {
                meta: EntryMeta {
                    id: format!("00000000-0000-4000-8000-{i:012}"),
                    date: SimDate::ymd(2020, 1, 1 + (i % 28) as u8),
                    author: String::new(),
                    consultation: None,
                    confidential: false,
                    external_key: None,
                },
                concept: pulse,
                value: Some(70.0),
                units: Some("/min"),
            });
        }
    });
    let sim = start_microtest(store, loopback().await).await.unwrap();
    let id = demo_id(sim.addr, &ods).await;
    let base = format!("/evolution/v2/sites/{ods}/patients/{id}/entries?type=observation");
    let mut path = base.clone();
    let mut ids = std::collections::BTreeSet::new();
    let mut pages = 0;
    let total = loop {
        let (status, _, page) = get_json(sim.addr, &path).await;
        assert_eq!(status, 200);
        let entries = page["entries"].as_array().unwrap();
        assert!(entries.len() <= 200);
        for e in entries {
            assert!(
                ids.insert(e["id"].as_str().unwrap().to_owned()),
                "no repeats"
            );
        }
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("{base}&cursor={c}"),
            None => break page["total"].as_u64().unwrap(),
        }
    };
    assert_eq!(ids.len() as u64, total);
    assert!(
        total > 450 && pages == total.div_ceil(200),
        "{total} in {pages} pages"
    );

    // A cursor this server did not issue is refused.
    let (status, ct, problem) = get_json(sim.addr, &format!("{base}&cursor=c5.00000000")).await;
    assert_eq!(status, 400);
    assert_eq!(ct.as_deref(), Some("application/problem+json"));
    assert_eq!(problem["code"], "INVALID_CURSOR");
}

#[tokio::test]
async fn not_found_and_bad_requests_are_problem_documents() {
    let store = store();
    let ods = first_microtest_ods(&store);
    let emis_ods = store.read(|p| {
        p.practices
            .iter()
            .find(|pr| pr.system == SystemKind::Emis)
            .unwrap()
            .ods
            .clone()
    });
    let sim = start_microtest(store, loopback().await).await.unwrap();
    // An unknown NHS number is an empty index, not an error.
    let (s, _, v) = get_json(
        sim.addr,
        &format!("/evolution/v2/sites/{ods}/patients?nhs_number=1234567890"),
    )
    .await;
    assert_eq!(s, 400, "1234567890 fails the modulus 11 check");
    assert_eq!(v["code"], "INVALID_NHS_NUMBER");
    let (s, _, v) = get_json(
        sim.addr,
        &format!("/evolution/v2/sites/{ods}/patients?nhs_number=9000000009"),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["patients"], serde_json::json!([]));
    for (path, status, code) in [
        (
            format!("/evolution/v2/sites/{ods}/patients/nobody"),
            404,
            "PATIENT_NOT_FOUND",
        ),
        (
            format!("/evolution/v2/sites/{emis_ods}/patients?nhs_number={DEMO}"),
            404,
            "SITE_NOT_FOUND",
        ),
        (
            format!("/evolution/v2/sites/{ods}/clinicians/nobody"),
            404,
            "CLINICIAN_NOT_FOUND",
        ),
        (
            format!("/evolution/v2/sites/{ods}/patients"),
            400,
            "MISSING_PARAMETER",
        ),
        ("/evolution/v2/nowhere".to_owned(), 404, "NOT_FOUND"),
    ] {
        let (s, ct, v) = get_json(sim.addr, &path).await;
        assert_eq!(
            (s, ct.as_deref()),
            (status, Some("application/problem+json")),
            "{path}"
        );
        assert_eq!(v["code"], code, "{path}");
        assert_eq!(v["status"], status);
        assert!(v["title"].is_string() && v["type"].is_string() && v["detail"].is_string());
    }
    let id = demo_id(sim.addr, &ods).await;
    let (s, _, v) = get_json(
        sim.addr,
        &format!("/evolution/v2/sites/{ods}/patients/{id}/entries?type=letters"),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("INVALID_ENTRY_TYPE")));
}

#[tokio::test]
async fn faults_corrupt_json_and_spare_health() {
    let store = store();
    let ods = first_microtest_ods(&store);
    let sim = start_microtest(store, loopback().await).await.unwrap();
    let index = format!("/evolution/v2/sites/{ods}/patients?nhs_number={DEMO}");
    let fetch =
        |path: String| async move { get_with(sim.addr, &path, "", Duration::from_secs(5)).await };

    sim.set_fault(Fault::Status(500));
    let a = fetch(index.clone()).await.unwrap();
    assert_eq!(a.status, 500);
    let v: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["code"], "INTERNAL_ERROR");
    assert_eq!(
        fetch("/evolution/v2/health".into()).await.unwrap().status,
        200
    );

    sim.set_fault(Fault::Garbage);
    let a = fetch(index.clone()).await.unwrap();
    assert!(serde_json::from_slice::<Value>(&a.body).is_err());

    sim.set_fault(Fault::Truncated);
    let a = fetch(index.clone()).await.unwrap();
    assert!(serde_json::from_slice::<Value>(&a.body).is_err());

    sim.set_fault(Fault::MisEncoded);
    let a = fetch(index.clone()).await.unwrap();
    assert!(std::str::from_utf8(&a.body).is_err());

    sim.set_fault(Fault::MissingNhsNumber);
    let a = fetch(index.clone()).await.unwrap();
    let v: Value = serde_json::from_slice(&a.body).unwrap();
    assert!(v["patients"][0].get("nhs_number").is_none());
    assert!(v["patients"][0]["patient_id"].is_string());

    sim.set_fault(Fault::Hang);
    let hung = get_with(sim.addr, &index, "", Duration::from_millis(300)).await;
    assert!(hung.is_err());

    sim.set_fault(Fault::Reset);
    assert!(fetch(index.clone()).await.is_err());

    sim.set_fault(Fault::None);
    assert_eq!(fetch(index).await.unwrap().status, 200);
    sim.shutdown().await;
}
