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
                    external_id: None,
                },
                concept: pulse,
                value: Some(70.0),
                units: Some("/min"),
                qualifiers: None,
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

// ---- write-back ----------------------------------------------------------------------

/// Sends one request with a body and reads the whole answer.
async fn send(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: buf[split + 4..].to_vec(),
    }
}

fn json_of(a: &Answer) -> Value {
    serde_json::from_slice(&a.body).unwrap()
}

/// The first Microtest site, its demo patient's id, and another patient there (id, NHS number).
fn demo(store: &gp_sim::SimStore) -> (String, String, (String, String)) {
    let ods = first_microtest_ods(store);
    store.read(|p| {
        let at_site = |nhs_is_demo: bool| {
            p.patients
                .iter()
                .find(|x| x.practice == ods && (x.nhs_number == DEMO) == nhs_is_demo)
                .unwrap()
        };
        let other = at_site(false);
        (
            ods.clone(),
            at_site(true).id.clone(),
            (other.id.clone(), other.nhs_number.clone()),
        )
    })
}

fn readings_body(readings: Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "nhs_number": DEMO,
        "type": "observation",
        "date": {"value": "2026-07-14T08:32:05", "precision": "datetime"},
        "readings": readings,
    }))
    .unwrap()
}

fn bp_readings() -> Value {
    serde_json::json!([
        {"code": {"snomed": "271649006", "term": "Systolic blood pressure"}, "value": "131", "unit": "mm[Hg]"},
        {"code": {"snomed": "271650006", "term": "Diastolic blood pressure"}, "value": "84", "unit": "mm[Hg]"},
    ])
}

const JSON_CT: (&str, &str) = ("Content-Type", "application/json");

async fn all_observations(addr: std::net::SocketAddr, ods: &str, id: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let (s, _, v) = get_json(
            addr,
            &format!("/evolution/v2/sites/{ods}/patients/{id}/entries?type=observation{cursor}"),
        )
        .await;
        assert_eq!(s, 200);
        out.extend(v["entries"].as_array().unwrap().iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

#[tokio::test]
async fn records_readings_once_per_idempotency_key() {
    let store = store();
    let (ods, id, _) = demo(&store);
    let sim = start_microtest(store.clone(), loopback().await)
        .await
        .unwrap();
    let path = format!("/evolution/v2/sites/{ods}/patients/{id}/entries");
    let before = all_observations(sim.addr, &ods, &id).await.len();
    let headers = [JSON_CT, ("Idempotency-Key", "supplier-bp-1")];
    let first = send(
        sim.addr,
        "POST",
        &path,
        &headers,
        &readings_body(bp_readings()),
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.text());
    assert_eq!(first.header("content-type"), Some("application/json"));
    let ids = json_of(&first)["entry_ids"].clone();
    assert_eq!(ids.as_array().unwrap().len(), 2);

    // Evolution shows the pair as one BP entry, without a clinician or consultation.
    let after = all_observations(sim.addr, &ods, &id).await;
    assert_eq!(after.len(), before + 1);
    let bp = after.last().unwrap();
    assert_eq!(bp["id"], ids[0]);
    assert_eq!(bp["diastolic"]["id"], ids[1]);
    assert_eq!(bp["systolic"]["value"], "131");
    assert_eq!(bp["diastolic"]["value"], "84");
    assert_eq!(bp["diastolic"]["unit"], "mm[Hg]");
    assert_eq!(
        bp["date"],
        serde_json::json!({"value": "2026-07-14T08:32:05", "precision": "datetime"})
    );
    assert!(bp.get("clinician_id").is_none(), "{bp}");
    assert!(bp.get("consultation_id").is_none(), "{bp}");

    // A retry answers the same ids with 200 and records nothing.
    let again = send(
        sim.addr,
        "POST",
        &path,
        &headers,
        &readings_body(bp_readings()),
    )
    .await;
    assert_eq!(again.status, 200);
    assert_eq!(json_of(&again)["entry_ids"], ids);
    assert_eq!(
        all_observations(sim.addr, &ods, &id).await.len(),
        before + 1
    );

    // A single reading is an ordinary observation entry.
    let weight = serde_json::json!([
        {"code": {"snomed": "27113001", "term": "Body weight"}, "value": "72.4", "unit": "kg"}
    ]);
    let w = send(
        sim.addr,
        "POST",
        &path,
        &[JSON_CT, ("Idempotency-Key", "supplier-weight-1")],
        &readings_body(weight),
    )
    .await;
    assert_eq!(w.status, 201, "{}", w.text());
    let entry = all_observations(sim.addr, &ods, &id).await.pop().unwrap();
    assert_eq!(entry["id"], json_of(&w)["entry_ids"][0]);
    assert_eq!(
        entry["code"],
        serde_json::json!({"read": "22A..", "term": "Body weight"})
    );
    assert_eq!(
        (entry["value"].as_str(), entry["unit"].as_str()),
        (Some("72.4"), Some("kg"))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn concurrent_creates_with_one_key_record_once() {
    let store = store();
    let (ods, id, _) = demo(&store);
    let sim = start_microtest(store.clone(), loopback().await)
        .await
        .unwrap();
    let before = all_observations(sim.addr, &ods, &id).await.len();
    let path = format!("/evolution/v2/sites/{ods}/patients/{id}/entries");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (addr, path) = (sim.addr, path.clone());
        tasks.push(tokio::spawn(async move {
            let a = send(
                addr,
                "POST",
                &path,
                &[JSON_CT, ("Idempotency-Key", "concurrent-1")],
                &readings_body(bp_readings()),
            )
            .await;
            (a.status, json_of(&a)["entry_ids"].clone())
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    assert_eq!(answers.iter().filter(|(s, _)| *s == 201).count(), 1);
    assert_eq!(answers.iter().filter(|(s, _)| *s == 200).count(), 7);
    assert!(answers.windows(2).all(|w| w[0].1 == w[1].1));
    assert_eq!(
        all_observations(sim.addr, &ods, &id).await.len(),
        before + 1
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_lost_answer_is_safe_to_retry() {
    let store = store();
    let (ods, id, _) = demo(&store);
    let sim = start_microtest(store.clone(), loopback().await)
        .await
        .unwrap();
    let path = format!("/evolution/v2/sites/{ods}/patients/{id}/entries");
    let headers = [JSON_CT, ("Idempotency-Key", "lost-1")];
    sim.set_fault(Fault::Status(503));
    let lost = send(
        sim.addr,
        "POST",
        &path,
        &headers,
        &readings_body(bp_readings()),
    )
    .await;
    assert_eq!(lost.status, 503);
    assert_eq!(json_of(&lost)["code"], "SERVICE_UNAVAILABLE");
    sim.set_fault(Fault::None);
    let retry = send(
        sim.addr,
        "POST",
        &path,
        &headers,
        &readings_body(bp_readings()),
    )
    .await;
    assert_eq!(retry.status, 200, "the first attempt was recorded");
    assert_eq!(json_of(&retry)["entry_ids"].as_array().unwrap().len(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn refused_readings_change_nothing() {
    let store = store();
    let (ods, id, (_, other_nhs)) = demo(&store);
    let emis_ods = store.read(|p| {
        p.practices
            .iter()
            .find(|pr| pr.system == SystemKind::Emis)
            .unwrap()
            .ods
            .clone()
    });
    let snapshot = store.read(|p| p.patients.clone());
    let sim = start_microtest(store.clone(), loopback().await)
        .await
        .unwrap();
    let path = format!("/evolution/v2/sites/{ods}/patients/{id}/entries");
    let key = ("Idempotency-Key", "refused-1");
    let reading = |snomed: &str, value: &str, unit: &str| serde_json::json!({"code": {"snomed": snomed}, "value": value, "unit": unit});
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v: Value = serde_json::from_slice(&readings_body(bp_readings())).unwrap();
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    };
    // (path, headers, body, status, code)
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            path.clone(),
            vec![JSON_CT, key],
            // Asthma is a problem, not a measurement.
            readings_body(serde_json::json!([reading("195967001", "1", "mm[Hg]")])),
            422,
            "UNKNOWN_CODE",
        ),
        (
            path.clone(),
            vec![JSON_CT, key],
            readings_body(
                serde_json::json!([{"code": {"read": "22A.."}, "value": "72", "unit": "kg"}]),
            ),
            422,
            "UNKNOWN_CODE",
        ),
        (
            path.clone(),
            vec![JSON_CT, key],
            readings_body(serde_json::json!([reading("27113001", "160", "[lb_av]")])),
            422,
            "INVALID_UNIT",
        ),
        (
            // One bad reading refuses the whole write.
            path.clone(),
            vec![JSON_CT, key],
            readings_body(serde_json::json!([
                reading("271649006", "131", "mm[Hg]"),
                reading("271650006", "84", "cm"),
            ])),
            422,
            "INVALID_UNIT",
        ),
        (
            path.clone(),
            vec![JSON_CT, key],
            readings_body(serde_json::json!([reading("27113001", "-3", "kg")])),
            422,
            "INVALID_READING",
        ),
        (
            path.clone(),
            vec![JSON_CT, key],
            readings_body(serde_json::json!([reading("27113001", "heavy", "kg")])),
            400,
            "INVALID_BODY",
        ),
        (
            path.clone(),
            vec![JSON_CT, key],
            readings_body(serde_json::json!([])),
            400,
            "INVALID_BODY",
        ),
        (
            path.clone(),
            vec![JSON_CT, key],
            with(&|v| v["date"] = serde_json::json!({"value": "2026-07-14", "precision": "month"})),
            400,
            "INVALID_DATE",
        ),
        (
            path.clone(),
            vec![JSON_CT, key],
            with(&|v| v["date"]["value"] = "2026-02-30T08:00:00".into()),
            400,
            "INVALID_DATE",
        ),
        (
            path.clone(),
            vec![JSON_CT, key],
            with(&|v| v["type"] = "allergy".into()),
            422,
            "UNSUPPORTED_ENTRY_TYPE",
        ),
        (
            path.clone(),
            vec![JSON_CT, key],
            with(&|v| v["nhs_number"] = "1234567890".into()),
            400,
            "INVALID_NHS_NUMBER",
        ),
        (
            path.clone(),
            vec![JSON_CT, key],
            with(&|v| v["nhs_number"] = other_nhs.clone().into()),
            422,
            "NHS_NUMBER_MISMATCH",
        ),
        (
            path.clone(),
            vec![JSON_CT],
            readings_body(bp_readings()),
            400,
            "INVALID_IDEMPOTENCY_KEY",
        ),
        (
            path.clone(),
            vec![JSON_CT, ("Idempotency-Key", "not a key")],
            readings_body(bp_readings()),
            400,
            "INVALID_IDEMPOTENCY_KEY",
        ),
        (
            path.clone(),
            vec![JSON_CT, key],
            b"{not json".to_vec(),
            400,
            "INVALID_BODY",
        ),
        (
            path.clone(),
            vec![("Content-Type", "application/xml"), key],
            readings_body(bp_readings()),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            format!("/evolution/v2/sites/{ods}/patients/nobody/entries"),
            vec![JSON_CT, key],
            readings_body(bp_readings()),
            404,
            "PATIENT_NOT_FOUND",
        ),
        (
            format!("/evolution/v2/sites/{emis_ods}/patients/{id}/entries"),
            vec![JSON_CT, key],
            readings_body(bp_readings()),
            404,
            "SITE_NOT_FOUND",
        ),
    ];
    for (path, headers, body, status, code) in cases {
        let a = send(sim.addr, "POST", &path, &headers, &body).await;
        assert_eq!(
            (a.status, a.header("content-type")),
            (status, Some("application/problem+json")),
            "{code}: {}",
            a.text()
        );
        let v = json_of(&a);
        assert_eq!(v["code"], code, "{}", a.text());
        assert_eq!(v["status"], status);
    }
    // Wrong methods on the write paths.
    let a = send(
        sim.addr,
        "PATCH",
        &format!("/evolution/v2/sites/{ods}/patients/{id}/contact"),
        &[JSON_CT],
        b"{}",
    )
    .await;
    assert_eq!(
        (a.status, json_of(&a)["code"].as_str()),
        (405, Some("METHOD_NOT_ALLOWED"))
    );
    let a = send(sim.addr, "PUT", &path, &[JSON_CT], b"{}").await;
    assert_eq!(a.status, 405);
    assert_eq!(
        store.read(|p| p.patients.clone()),
        snapshot,
        "nothing changed"
    );
    // The key of a refused write is still free.
    let ok = send(
        sim.addr,
        "POST",
        &path,
        &[JSON_CT, key],
        &readings_body(bp_readings()),
    )
    .await;
    assert_eq!(ok.status, 201);
    sim.shutdown().await;
}

fn contact_body(last_modified: &Value) -> Value {
    serde_json::json!({
        "nhs_number": DEMO,
        "last_modified": last_modified,
        "home_phone": "01632 960123",
        "mobile_phone": null,
        "email": "jane.new@example.com",
        "address": {"lines": ["12 Harness Row", "Testville"], "town": "Leeds", "county": "West Yorkshire", "postcode": "LS1 4AP"},
        "preferred_language": {"code": "cy"},
    })
}

#[tokio::test]
async fn renders_the_preferred_language() {
    let store = store();
    let (ods, id, _) = demo(&store);
    let held = store.patient_by_nhs(DEMO).unwrap().language;
    let sim = start_microtest(store, loopback().await).await.unwrap();
    let (_, _, p) = get_json(
        sim.addr,
        &format!("/evolution/v2/sites/{ods}/patients/{id}"),
    )
    .await;
    let code = held.as_deref().unwrap();
    assert_eq!(p["preferred_language"]["code"], code);
    // Spelt out here rather than read from the simulators' table, so the table is tested.
    let name = match code {
        "en" => "English",
        "cy" => "Welsh",
        "pl" => "Polish",
        other => panic!("the population records en, cy and pl, not {other}"),
    };
    assert_eq!(p["preferred_language"]["term"], name);
    sim.shutdown().await;
}

#[tokio::test]
async fn updates_contact_details_at_the_current_version() {
    let store = store();
    let (ods, id, _) = demo(&store);
    let sim = start_microtest(store.clone(), loopback().await)
        .await
        .unwrap();
    let patient = format!("/evolution/v2/sites/{ods}/patients/{id}");
    let contact = format!("{patient}/contact");
    let (_, _, before) = get_json(sim.addr, &patient).await;
    let version = before["last_modified"].clone();
    let body = serde_json::to_vec(&contact_body(&version)).unwrap();
    let a = send(sim.addr, "PUT", &contact, &[JSON_CT], &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let answer = json_of(&a);
    assert_eq!(answer["patient_id"], id.as_str());
    assert_eq!(answer["last_modified"]["precision"], "datetime");
    assert_ne!(answer["last_modified"], version);

    let (_, _, after) = get_json(sim.addr, &patient).await;
    assert_eq!(after["last_modified"], answer["last_modified"]);
    assert_eq!(after["home_phone"], "01632 960123");
    assert_eq!(after["mobile_phone"], Value::Null);
    assert_eq!(after["email"], "jane.new@example.com");
    assert_eq!(
        after["address"],
        serde_json::json!({"lines": ["12 Harness Row", "Testville"], "town": "Leeds", "county": "West Yorkshire", "postcode": "LS1 4AP"})
    );
    assert_eq!(
        after["preferred_language"],
        serde_json::json!({"code": "cy", "term": "Welsh"})
    );
    // Everything else is as it was.
    for field in [
        "family_name",
        "given_names",
        "date_of_birth",
        "usual_clinician_id",
        "site",
    ] {
        assert_eq!(after[field], before[field], "{field}");
    }

    // The old version is stale now: 409, and nothing changes.
    let snapshot = store.patient_by_nhs(DEMO).unwrap();
    let mut stale = contact_body(&version);
    stale["mobile_phone"] = "07700 900999".into();
    let a = send(
        sim.addr,
        "PUT",
        &contact,
        &[JSON_CT],
        &serde_json::to_vec(&stale).unwrap(),
    )
    .await;
    assert_eq!(a.status, 409);
    let v = json_of(&a);
    assert_eq!(v["code"], "RECORD_MODIFIED");
    assert_eq!(v["current_last_modified"], answer["last_modified"]);
    assert_eq!(store.patient_by_nhs(DEMO).unwrap(), snapshot);

    // Nulls clear: no address, no language.
    let mut clear = contact_body(&answer["last_modified"]);
    clear["address"] = Value::Null;
    clear["preferred_language"] = Value::Null;
    let a = send(
        sim.addr,
        "PUT",
        &contact,
        &[JSON_CT],
        &serde_json::to_vec(&clear).unwrap(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let (_, _, cleared) = get_json(sim.addr, &patient).await;
    assert_eq!(cleared["address"]["lines"], serde_json::json!([]));
    assert_eq!(cleared["address"]["postcode"], "");
    assert_eq!(cleared["preferred_language"], Value::Null);
    sim.shutdown().await;
}

#[tokio::test]
async fn refused_contact_updates_change_nothing() {
    let store = store();
    let (ods, id, (_, other_nhs)) = demo(&store);
    let snapshot = store.patient_by_nhs(DEMO).unwrap();
    let sim = start_microtest(store.clone(), loopback().await)
        .await
        .unwrap();
    let patient = format!("/evolution/v2/sites/{ods}/patients/{id}");
    let (_, _, doc) = get_json(sim.addr, &patient).await;
    let version = doc["last_modified"].clone();
    let edit = |f: &dyn Fn(&mut Map)| {
        let mut v = contact_body(&version);
        f(v.as_object_mut().unwrap());
        serde_json::to_vec(&v).unwrap()
    };
    type Map = serde_json::Map<String, Value>;
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (
            edit(&|m| {
                m.remove("email");
            }),
            400,
            "INVALID_BODY",
        ),
        (
            edit(&|m| {
                m.remove("last_modified");
            }),
            400,
            "INVALID_BODY",
        ),
        (
            edit(&|m| {
                m.insert("home_phone".into(), " ".into());
            }),
            400,
            "INVALID_BODY",
        ),
        (
            edit(&|m| {
                m.insert("home_phone".into(), "call me".into());
            }),
            422,
            "INVALID_PHONE",
        ),
        (
            edit(&|m| {
                m.insert("email".into(), "jane at example".into());
            }),
            422,
            "INVALID_EMAIL",
        ),
        (
            edit(&|m| {
                m.insert("address".into(), serde_json::json!({"lines": ["1", "2", "3", "4"], "town": "Leeds", "county": "", "postcode": "LS1 4AP"}));
            }),
            422,
            "INVALID_ADDRESS",
        ),
        (
            edit(&|m| {
                m.insert(
                    "address".into(),
                    serde_json::json!({"lines": ["1 Road"], "county": "", "postcode": "LS1 4AP"}),
                );
            }),
            422,
            "INVALID_ADDRESS",
        ),
        (
            edit(&|m| {
                m.insert(
                    "preferred_language".into(),
                    serde_json::json!({"code": "xx"}),
                );
            }),
            422,
            "INVALID_LANGUAGE",
        ),
        (
            edit(&|m| {
                m.insert(
                    "last_modified".into(),
                    serde_json::json!({"value": "2024-01-15", "precision": "day"}),
                );
            }),
            400,
            "INVALID_DATE",
        ),
        (
            edit(&|m| {
                m.insert(
                    "last_modified".into(),
                    serde_json::json!({"value": "2001-01-01T00:00:00", "precision": "datetime"}),
                );
            }),
            409,
            "RECORD_MODIFIED",
        ),
        (
            edit(&|m| {
                m.insert("nhs_number".into(), other_nhs.clone().into());
            }),
            422,
            "NHS_NUMBER_MISMATCH",
        ),
        (b"[]".to_vec(), 400, "INVALID_BODY"),
    ];
    for (body, status, code) in cases {
        let a = send(
            sim.addr,
            "PUT",
            &format!("{patient}/contact"),
            &[JSON_CT],
            &body,
        )
        .await;
        assert_eq!(
            (a.status, json_of(&a)["code"].as_str()),
            (status, Some(code)),
            "{}",
            a.text()
        );
    }
    let a = send(
        sim.addr,
        "PUT",
        &format!("/evolution/v2/sites/{ods}/patients/nobody/contact"),
        &[JSON_CT],
        &edit(&|_| {}),
    )
    .await;
    assert_eq!(
        (a.status, json_of(&a)["code"].as_str()),
        (404, Some("PATIENT_NOT_FOUND"))
    );
    assert_eq!(store.patient_by_nhs(DEMO).unwrap(), snapshot);
    sim.shutdown().await;
}
