//! `POST /Patient/$gpc.getstructuredrecord` end to end, on every GP system.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gp_e2e::World;
use serde_json::{Value, json};

fn params(nhs: &str, extra: Value) -> Vec<u8> {
    let mut p = vec![
        json!({ "name": "patientNHSNumber", "valueIdentifier": { "system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs } }),
    ];
    p.extend(extra.as_array().cloned().unwrap_or_default());
    serde_json::to_vec(&json!({ "resourceType": "Parameters", "parameter": p })).unwrap()
}

fn everything() -> Value {
    json!([
        { "name": "includeAllergies", "part": [{ "name": "includeResolvedAllergies", "valueBoolean": true }] },
        { "name": "includeMedication" },
        { "name": "includeConsultations", "part": [{ "name": "includeNumberOfMostRecent", "valuePositiveInt": 3 }] },
        { "name": "includeProblems" },
        { "name": "includeImmunisations" },
        { "name": "includeInvestigations" }
    ])
}

async fn post(w: &World, token: &str, body: &[u8], content_type: &str) -> gp_e2e::Answer {
    let url = format!("{}/Patient/$gpc.getstructuredrecord", w.manifest().base_url);
    let auth = format!("Bearer {token}");
    w.send(
        "POST",
        &url,
        &[("authorization", &auth), ("content-type", content_type)],
        body,
    )
    .await
}

#[tokio::test]
async fn the_whole_record_from_each_gp_system_as_one_collection_bundle() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    for nhs in ["9000000009", "9690937278", "9658218865", "9912003888"] {
        let a = post(
            &w,
            &token,
            &params(nhs, everything()),
            "application/fhir+json",
        )
        .await;
        assert_eq!(a.status, 200, "{nhs}: {}", String::from_utf8_lossy(&a.body));
        let b = a.json();
        assert_eq!(b["type"], "collection");
        let entries = b["entry"].as_array().unwrap();
        let resources: Vec<&Value> = entries.iter().map(|e| &e["resource"]).collect();
        let of_type = |t: &str| resources.iter().filter(|r| r["resourceType"] == t).count();
        assert_eq!(of_type("Patient"), 1, "{nhs}");
        assert_eq!(of_type("Organization"), 1, "{nhs}");
        assert_eq!(of_type("List"), 6, "{nhs}: one List per area asked for");
        assert!(
            of_type("Encounter") <= 3,
            "{nhs}: includeNumberOfMostRecent 3"
        );
        // Every List entry resolves inside the Bundle; nothing confidential is released.
        let ids: Vec<String> = resources
            .iter()
            .map(|r| {
                format!(
                    "{}/{}",
                    r["resourceType"].as_str().unwrap(),
                    r["id"].as_str().unwrap()
                )
            })
            .collect();
        for list in resources.iter().filter(|r| r["resourceType"] == "List") {
            assert_eq!(list["subject"]["reference"], format!("Patient/{nhs}"));
            for item in list["entry"].as_array().into_iter().flatten() {
                let reference = item["item"]["reference"].as_str().unwrap();
                assert!(
                    ids.iter().any(|i| i == reference),
                    "{nhs}: {reference} does not resolve"
                );
            }
        }
        for r in &resources {
            let restricted = r["meta"]["security"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["code"] == "R");
            assert!(
                !restricted,
                "{nhs}: a confidential entry was released: {}",
                r["id"]
            );
        }
        for e in entries {
            assert!(
                e["fullUrl"]
                    .as_str()
                    .unwrap()
                    .starts_with(&w.manifest().base_url)
            );
        }
    }
    w.sandbox.shutdown().await;
}

/// Every reference in the Bundle resolves, on every GP system: inside the Bundle (the
/// Patient, the practice, every person the record names, the Lists' entries) or by a
/// read through the gateway with the same token (an entry the options left out, such
/// as an older consultation). Authors besides the usual GP are in the Bundle, and
/// references to people display their names.
#[tokio::test]
async fn every_reference_in_the_structured_record_resolves() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    for nhs in ["9000000009", "9690937278", "9658218865", "9912003888"] {
        let a = post(
            &w,
            &token,
            &params(nhs, everything()),
            "application/fhir+json",
        )
        .await;
        assert_eq!(a.status, 200, "{nhs}: {}", String::from_utf8_lossy(&a.body));
        let b = a.json();
        let (resources, local) = gp_e2e::bundle_resources(&b);
        let refs = gp_e2e::references(&b);
        let people = resources
            .iter()
            .filter(|r| r["resourceType"] == "Practitioner")
            .count();
        assert!(
            people >= 2,
            "{nhs}: the usual GP and the other authors are in the Bundle"
        );
        let mut outside: Vec<&str> = Vec::new();
        for (reference, display) in &refs {
            if reference.starts_with("Practitioner/") {
                assert!(
                    local.contains(reference),
                    "{nhs}: {reference} is in the Bundle"
                );
                assert!(
                    display.as_deref().is_some_and(|d| !d.is_empty()),
                    "{nhs}: {reference} is named"
                );
            }
            if !local.contains(reference) && !outside.contains(&reference.as_str()) {
                outside.push(reference);
            }
        }
        for reference in outside {
            let read = w.get(&format!("/{reference}"), Some(&token)).await;
            assert_eq!(
                read.status,
                200,
                "{nhs}: {reference} dangles: {}",
                String::from_utf8_lossy(&read.body)
            );
            let got = read.json();
            let (kind, id) = reference.split_once('/').unwrap();
            assert_eq!(
                (got["resourceType"].as_str(), got["id"].as_str()),
                (Some(kind), Some(id))
            );
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
    }
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn only_areas_within_the_tokens_scopes() {
    let w = World::start().await;
    let token = w.token("demo-monitoring").await; // Patient.rs, Observation.crs
    let ok = post(
        &w,
        &token,
        &params("9000000009", json!([{ "name": "includeInvestigations" }])),
        "application/fhir+json",
    )
    .await;
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    let refused = post(
        &w,
        &token,
        &params("9000000009", everything()),
        "application/fhir+json",
    )
    .await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.spine_code(), "ACCESS_DENIED");
    assert!(
        refused.diagnostics().contains("system/AllergyIntolerance"),
        "{}",
        refused.diagnostics()
    );
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn bad_requests_are_refused_precisely() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    let conflicting = json!([{ "name": "includeConsultations", "part": [
        { "name": "includeNumberOfMostRecent", "valuePositiveInt": 3 },
        { "name": "consultationSearchPeriod", "valuePeriod": { "start": "2020-01-01" } }] }]);
    let a = post(
        &w,
        &token,
        &params("9000000009", conflicting),
        "application/fhir+json",
    )
    .await;
    assert_eq!(a.status, 422);
    assert_eq!(a.spine_code(), "INVALID_PARAMETER");
    assert!(
        a.diagnostics().contains("includeConsultations"),
        "{}",
        a.diagnostics()
    );
    let a = post(&w, &token, b"{\"resourceType\":", "application/fhir+json").await;
    assert_eq!(a.status, 400);
    let a = post(
        &w,
        &token,
        &params("9000000008", json!([])),
        "application/fhir+json",
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.spine_code(), "INVALID_RESOURCE_ID");
    let a = post(&w, &token, &params("9000000009", json!([])), "text/plain").await;
    assert_eq!(a.status, 415);
    let url = format!("{}/Patient/$gpc.getstructuredrecord", w.manifest().base_url);
    let a = w
        .send(
            "GET",
            &url,
            &[("authorization", &format!("Bearer {token}"))],
            b"",
        )
        .await;
    assert_eq!(a.status, 405);
    assert_eq!(a.header("allow"), Some("POST"));
    // Sensitive and dissenting patients, as for reads.
    let practice = w.practice_of("9000000009");
    let a = post(
        &w,
        &token,
        &params(&w.patient(&practice, "sensitive"), everything()),
        "application/fhir+json",
    )
    .await;
    assert_eq!(a.status, 404);
    let a = post(
        &w,
        &token,
        &params(&w.patient(&practice, "dissent"), everything()),
        "application/fhir+json",
    )
    .await;
    assert_eq!(a.status, 403);
    assert_eq!(a.spine_code(), "NO_PATIENT_CONSENT");
    w.sandbox.shutdown().await;
}

/// The Bundle and each List the structured record answers read back by their ids, on
/// every GP system: the same request answered again (same ids, same entries). A
/// supplier not paired with the patient's practice finds neither (404, like an id never
/// answered); a token without an area's scope is refused (403); an unknown id is 404.
#[tokio::test]
async fn the_bundle_and_its_lists_read_back_by_id() {
    let w = World::start().await;
    let consult = w.token("demo-consult").await;
    let monitoring = w.token("demo-monitoring").await; // Patient.rs, Observation.crs
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(250));
    for system in ["emis", "tpp", "vision", "microtest"] {
        let nhs = w.unpaired_patient(system, "demo-monitoring");
        let a = post(
            &w,
            &consult,
            &params(&nhs, everything()),
            "application/fhir+json",
        )
        .await;
        assert_eq!(a.status, 200, "{nhs}: {}", String::from_utf8_lossy(&a.body));
        let answered = a.json();
        let id = answered["id"].as_str().unwrap();
        let full_urls = |b: &Value| -> Vec<String> {
            b["entry"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["fullUrl"].as_str().unwrap().to_owned())
                .collect()
        };
        pause().await;
        let read = w.get(&format!("/Bundle/{id}"), Some(&consult)).await;
        assert_eq!(
            read.status,
            200,
            "{system}: {}",
            String::from_utf8_lossy(&read.body)
        );
        let again = read.json();
        assert_eq!(again["id"], answered["id"], "{system}");
        assert_eq!(again["type"], "collection");
        assert_eq!(full_urls(&again), full_urls(&answered), "{system}");
        let lists: Vec<&Value> = answered["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["resource"])
            .filter(|r| r["resourceType"] == "List")
            .collect();
        assert_eq!(lists.len(), 6, "{system}");
        for list in &lists {
            let list_id = list["id"].as_str().unwrap();
            pause().await;
            let read = w.get(&format!("/List/{list_id}"), Some(&consult)).await;
            assert_eq!(
                read.status,
                200,
                "{system}: List/{list_id}: {}",
                String::from_utf8_lossy(&read.body)
            );
            let got = read.json();
            assert_eq!(got["id"], list["id"], "{system}");
            assert_eq!(got["code"], list["code"], "{system}");
            assert_eq!(got["subject"], list["subject"], "{system}");
            assert_eq!(got["entry"], list["entry"], "{system}: List/{list_id}");
            assert_eq!(got["emptyReason"], list["emptyReason"], "{system}");
        }
        // Another supplier, not paired with the practice: as if never answered.
        let investigations = lists
            .iter()
            .find(|l| l["code"]["coding"][0]["code"] == "887191000000108")
            .unwrap()["id"]
            .as_str()
            .unwrap();
        pause().await;
        let refused = w
            .get(&format!("/List/{investigations}"), Some(&monitoring))
            .await;
        assert_eq!(refused.status, 404, "{system}: unpaired looks like unknown");
        assert_eq!(refused.spine_code(), "RESOURCE_NOT_FOUND");
        assert!(
            !refused.diagnostics().contains(&nhs),
            "{system}: the patient is not named: {}",
            refused.diagnostics()
        );
        // Without the scope of every area the Bundle holds: refused.
        pause().await;
        let no_scope = w.get(&format!("/Bundle/{id}"), Some(&monitoring)).await;
        assert_eq!(no_scope.status, 403, "{system}");
        assert_eq!(no_scope.spine_code(), "ACCESS_DENIED");
        pause().await;
    }
    for unknown in ["/Bundle/no-such-bundle", "/List/no-such-list"] {
        let a = w.get(unknown, Some(&consult)).await;
        assert_eq!(a.status, 404, "{unknown}");
        assert_eq!(a.spine_code(), "RESOURCE_NOT_FOUND");
    }
    w.sandbox.shutdown().await;
}
