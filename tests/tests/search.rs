//! The search parameters client libraries send (issue 22 §4), end to end through the
//! gateway and each GP system's simulator: token filters, `_summary`/`_elements`,
//! `_sort`, `_total`, `_pretty`, patient references, POST `_search`, and every refusal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use gp_adapter::{
    Adapter, AdapterError, ClinicalType, GpSystem, PatientRecord, PatientRequest,
    PractitionerRequest, SearchPage, SearchRequest,
};
use gp_e2e::{Answer, World};
use gp_fhir::model::Practitioner;
use gp_fhir::search::percent_encode;
use serde_json::Value;

const SYSTEMS: [&str; 4] = ["emis", "tpp", "vision", "microtest"];

/// GET a search as demo-consult (every clinical scope, every practice), waiting out 429s.
async fn search(w: &World, token: &str, query: &str) -> Answer {
    w.call("GET", query, token, &[], b"").await
}

/// A search that must succeed: its Bundle.
async fn found(w: &World, token: &str, query: &str) -> Value {
    let a = search(w, token, query).await;
    assert_eq!(
        a.status,
        200,
        "{query}: {}",
        String::from_utf8_lossy(&a.body)
    );
    a.json()
}

fn resources(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .map(|e| e.iter().map(|e| e["resource"].clone()).collect())
        .unwrap_or_default()
}

fn ids(bundle: &Value) -> Vec<String> {
    resources(bundle)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The ids among `all` for which `keep` holds, in order.
fn ids_where(all: &[Value], keep: impl Fn(&Value) -> bool) -> Vec<String> {
    all.iter()
        .filter(|r| keep(r))
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

fn has_coding(concepts: &Value, code: &str) -> bool {
    let one = |c: &Value| {
        c["coding"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|x| x["code"] == code))
    };
    match concepts {
        Value::Array(list) => list.iter().any(|c| one(c) || c == code),
        c => one(c),
    }
}

/// Asserts a refusal: 400 INVALID_PARAMETER whose diagnostics name every one of `named`.
fn refused(a: &Answer, what: &str, named: &[&str]) {
    assert_eq!(
        a.status,
        400,
        "{what}: {}",
        String::from_utf8_lossy(&a.body)
    );
    assert_eq!(a.spine_code(), "INVALID_PARAMETER", "{what}");
    let diagnostics = a.diagnostics();
    for n in named {
        assert!(diagnostics.contains(n), "{what}: {diagnostics} names {n}");
    }
}

#[tokio::test]
async fn status_category_clinical_status_and_identifier_filter_on_every_gp_system() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    for system in SYSTEMS {
        let nhs = w.ordinary_patient(system, "demo-consult");
        let all = |t: &'static str| {
            let (w, token) = (&w, &token);
            let nhs = nhs.clone();
            async move { resources(&found(w, token, &format!("/{t}?patient={nhs}&_count=250")).await) }
        };

        let meds = all("MedicationStatement").await;
        assert!(!meds.is_empty(), "{system}: medication statements");
        let active = ids_where(&meds, |r| r["status"] == "active");
        let got = found(
            &w,
            &token,
            &format!("/MedicationStatement?patient={nhs}&status=active&_count=250"),
        )
        .await;
        assert_eq!(ids(&got), active, "{system}: status=active");
        assert_eq!(got["total"], active.len(), "{system}");
        let not_active = found(
            &w,
            &token,
            &format!("/MedicationStatement?patient={nhs}&status:not=active&_count=250"),
        )
        .await;
        assert_eq!(
            ids(&not_active),
            ids_where(&meds, |r| r["status"] != "active"),
            "{system}: status:not=active"
        );

        let conditions = all("Condition").await;
        let problems = ids_where(&conditions, |r| {
            has_coding(&r["category"], "problem-list-item")
        });
        assert!(!problems.is_empty(), "{system}: problems");
        let by_category = found(
            &w,
            &token,
            &format!(
                "/Condition?patient={nhs}&category={}",
                percent_encode(
                    "http://terminology.hl7.org/CodeSystem/condition-category|problem-list-item"
                )
            ),
        )
        .await;
        assert_eq!(ids(&by_category), problems, "{system}: category");
        let active_problems =
            ids_where(&conditions, |r| has_coding(&r["clinicalStatus"], "active"));
        let by_status = found(
            &w,
            &token,
            &format!("/Condition?patient={nhs}&clinical-status=active"),
        )
        .await;
        assert_eq!(
            ids(&by_status),
            active_problems,
            "{system}: clinical-status"
        );
        let none = found(
            &w,
            &token,
            &format!(
                "/Condition?patient={nhs}&clinical-status=resolved,inactive&clinical-status=active"
            ),
        )
        .await;
        assert_eq!(none["total"], 0, "{system}: repeats must all hold");

        let allergies = all("AllergyIntolerance").await;
        let drug = found(
            &w,
            &token,
            &format!("/AllergyIntolerance?patient={nhs}&category=medication"),
        )
        .await;
        assert_eq!(
            ids(&drug),
            ids_where(&allergies, |r| has_coding(&r["category"], "medication")),
            "{system}: AllergyIntolerance category"
        );

        // Each GP system's own identifier finds its entry, with or without the system.
        let observations = all("Observation").await;
        let first = &observations[0];
        let identifier = &first["identifier"][0];
        let (id_system, id_value) = (
            identifier["system"].as_str().unwrap(),
            identifier["value"].as_str().unwrap(),
        );
        for token_value in [format!("{id_system}|{id_value}"), id_value.to_owned()] {
            let by_identifier = found(
                &w,
                &token,
                &format!(
                    "/Observation?patient={nhs}&identifier={}",
                    percent_encode(&token_value)
                ),
            )
            .await;
            // Vision files a blood pressure as two entries of one journal row: both
            // carry its id.
            let holding = ids_where(&observations, |r| {
                r["identifier"].as_array().is_some_and(|i| {
                    i.iter().any(|i| {
                        i["value"] == id_value
                            && (!token_value.contains('|') || i["system"] == id_system)
                    })
                })
            });
            assert!(holding.contains(&first["id"].as_str().unwrap().to_owned()));
            assert_eq!(
                ids(&by_identifier),
                holding,
                "{system}: identifier={token_value}"
            );
        }
        let by_system = found(
            &w,
            &token,
            &format!(
                "/Observation?patient={nhs}&identifier={}&_count=250",
                percent_encode(&format!("{id_system}|"))
            ),
        )
        .await;
        assert_eq!(
            by_system["total"],
            ids_where(&observations, |r| r["identifier"]
                .as_array()
                .is_some_and(|i| i.iter().any(|i| i["system"] == id_system)))
            .len(),
            "{system}: identifier=system|"
        );

        let encounters = found(
            &w,
            &token,
            &format!("/Encounter?patient={nhs}&status=finished,in-progress"),
        )
        .await;
        assert_eq!(
            encounters["total"],
            ids_where(&all("Encounter").await, |r| r["status"] == "finished"
                || r["status"] == "in-progress")
            .len(),
            "{system}: Encounter status"
        );
        let immunizations = found(
            &w,
            &token,
            &format!("/Immunization?patient={nhs}&status=completed"),
        )
        .await;
        assert_eq!(
            immunizations["total"],
            ids_where(&all("Immunization").await, |r| r["status"] == "completed").len(),
            "{system}: Immunization status"
        );
    }
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn a_parameter_or_value_the_gateway_cannot_serve_is_refused_naming_it() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    let nhs = "9000000009";
    let base = w.manifest().base_url.clone();
    // A parameter on a type with no such element.
    for (query, named) in [
        (
            "/Condition?patient=9000000009&status=active",
            ["status", "Condition"],
        ),
        (
            "/AllergyIntolerance?patient=9000000009&status=active",
            ["status", "AllergyIntolerance"],
        ),
        (
            "/Observation?patient=9000000009&clinical-status=active",
            ["clinical-status", "Observation"],
        ),
        (
            "/Immunization?patient=9000000009&category=x",
            ["category", "Immunization"],
        ),
        (
            "/Encounter?patient=9000000009&category=x",
            ["category", "Encounter"],
        ),
        (
            "/MedicationStatement?patient=9000000009&category=x",
            ["category", "MedicationStatement"],
        ),
    ] {
        refused(&search(&w, &token, query).await, query, &named);
    }
    // Values and modifiers FHIR defines that the GP systems cannot serve.
    let other_server = "https://other.example/fhir/Patient/9000000009".to_owned();
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            format!("/Observation?patient={nhs}&_sort=code"),
            vec!["_sort", "code"],
        ),
        (
            format!("/Observation?patient={nhs}&_sort=-_lastUpdated"),
            vec!["_sort", "-_lastUpdated", "GP systems"],
        ),
        (
            format!("/Observation?patient={nhs}&_lastUpdated=ge2024-01-01"),
            vec!["_lastUpdated", "ge2024-01-01", "GP systems"],
        ),
        (
            format!("/Observation?patient={nhs}&_total=exact"),
            vec!["_total", "exact"],
        ),
        (
            format!("/Observation?patient={nhs}&_pretty=yes"),
            vec!["_pretty", "yes"],
        ),
        (
            format!("/Observation?patient={nhs}&_summary=text"),
            vec!["_summary", "text"],
        ),
        (
            format!("/Observation?patient={nhs}&_elements=colour"),
            vec!["_elements", "colour"],
        ),
        (
            format!("/Observation?patient={nhs}&code:text=weight"),
            vec!["code:text", "weight"],
        ),
        (
            format!("/Condition?patient={nhs}&clinical-status:in=x"),
            vec!["clinical-status:in", "x"],
        ),
        (
            format!("/Observation?patient={}", percent_encode(&other_server)),
            vec!["patient", "other.example", "another server"],
        ),
        (
            format!("/Observation?subject={}", percent_encode(&other_server)),
            vec!["subject", "another server"],
        ),
        (
            format!("/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}&_sort=birthdate"),
            vec!["_sort", "birthdate"],
        ),
    ];
    for (query, named) in &cases {
        refused(&search(&w, &token, query).await, query, named);
    }
    // Unknown parameters keep today's message, which lists what is supported.
    let a = search(&w, &token, &format!("/Condition?patient={nhs}&onset=2020")).await;
    refused(
        &a,
        "onset",
        &["unknown search parameter 'onset'", "clinical-status"],
    );
    assert!(
        !a.diagnostics()
            .contains("supported: patient, subject, date, code, category, status,"),
        "Condition has no status: {}",
        a.diagnostics()
    );
    // The own base is accepted.
    let own = found(
        &w,
        &token,
        &format!(
            "/Condition?subject={}",
            percent_encode(&format!("{base}/Patient/{nhs}"))
        ),
    )
    .await;
    assert_eq!(own["resourceType"], "Bundle");
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn summary_elements_and_pretty_shape_each_entry_and_mark_it_subsetted() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    let nhs = "9000000009";
    let whole = found(
        &w,
        &token,
        &format!("/Observation?patient={nhs}&_count=250"),
    )
    .await;
    let is_subsetted = |r: &Value| {
        r["meta"]["tag"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["code"] == "SUBSETTED"))
    };
    assert!(
        resources(&whole).iter().all(|r| !is_subsetted(r)),
        "whole resources are not marked"
    );

    let summary = found(
        &w,
        &token,
        &format!("/Observation?patient={nhs}&_count=250&_summary=true"),
    )
    .await;
    assert_eq!(summary["total"], whole["total"]);
    let allowed = [
        "resourceType",
        "id",
        "meta",
        "implicitRules",
        "identifier",
        "basedOn",
        "partOf",
        "status",
        "code",
        "subject",
        "focus",
        "encounter",
        "effectiveDateTime",
        "effectivePeriod",
        "issued",
        "performer",
        "valueQuantity",
        "valueString",
        "valueCodeableConcept",
        "hasMember",
        "derivedFrom",
        "component",
    ];
    for r in resources(&summary) {
        assert!(is_subsetted(&r), "{r}");
        for key in r.as_object().unwrap().keys() {
            assert!(allowed.contains(&key.as_str()), "_summary=true kept {key}");
        }
    }

    let elements = found(
        &w,
        &token,
        &format!(
            "/Observation?patient={nhs}&_count=250&_elements=effective,valueQuantity,resourceType"
        ),
    )
    .await;
    for (r, full) in resources(&elements).iter().zip(resources(&whole)) {
        assert!(is_subsetted(r));
        let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut expected = vec!["code", "id", "meta", "resourceType", "status"];
        for k in ["effectiveDateTime", "valueQuantity"] {
            if full.get(k).is_some() {
                expected.push(k);
            }
        }
        expected.sort_unstable();
        assert_eq!(
            keys, expected,
            "asked for, plus id, meta and R4's mandatory status and code"
        );
        assert_eq!(
            r["meta"]["profile"], full["meta"]["profile"],
            "meta kept whole"
        );
    }

    let data = found(
        &w,
        &token,
        &format!("/Condition?patient={nhs}&_summary=data"),
    )
    .await;
    let full = found(&w, &token, &format!("/Condition?patient={nhs}")).await;
    for (d, f) in resources(&data).iter().zip(resources(&full)) {
        assert!(is_subsetted(d) && d.get("text").is_none());
        assert_eq!(d["code"], f["code"]);
        assert_eq!(d["clinicalStatus"], f["clinicalStatus"]);
    }

    // The Patient search takes them too.
    let patient = found(
        &w,
        &token,
        &format!("/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}&_elements=birthDate"),
    )
    .await;
    let p = &resources(&patient)[0];
    let mut keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["birthDate", "id", "meta", "resourceType"]);
    assert!(is_subsetted(p));
    let summary = found(&w, &token, &format!("/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}&_summary=true&_total=accurate")).await;
    let p = &resources(&summary)[0];
    assert!(
        p.get("name").is_some()
            && p.get("generalPractitioner").is_none()
            && p.get("communication").is_none(),
        "{p}"
    );
    assert_eq!(summary["total"], 1, "_total=accurate: the total, as always");

    // _pretty indents; the content is the same.
    let pretty = search(
        &w,
        &token,
        &format!("/Condition?patient={nhs}&_pretty=true"),
    )
    .await;
    assert_eq!(pretty.status, 200);
    assert!(String::from_utf8_lossy(&pretty.body).contains("\n  \"resourceType\""));
    assert_eq!(resources(&pretty.json()), resources(&full));
    let plain = search(
        &w,
        &token,
        &format!("/Condition?patient={nhs}&_pretty=false"),
    )
    .await;
    assert!(!String::from_utf8_lossy(&plain.body).contains('\n'));
    w.sandbox.shutdown().await;
}

/// A dateTime or date as a comparable UTC instant.
fn instant(r: &Value, field: &str) -> (i32, u8, u8, u8, u8, u8) {
    let s = r[field].as_str().unwrap();
    gp_fhir::date::parse_instant_utc(s).unwrap_or_else(|_| {
        let (y, m, d) = gp_fhir::date::PartialDate::parse(s).unwrap().first_day();
        (y, m, d, 0, 0, 0)
    })
}

#[tokio::test]
async fn sort_by_date_both_ways_on_every_gp_system_and_pages_keep_the_order() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    for system in SYSTEMS {
        let nhs = w.ordinary_patient(system, "demo-consult");
        let newest = found(
            &w,
            &token,
            &format!("/Observation?patient={nhs}&_sort=-date&_count=250"),
        )
        .await;
        let times: Vec<_> = resources(&newest)
            .iter()
            .map(|r| instant(r, "effectiveDateTime"))
            .collect();
        assert!(times.len() > 2, "{system}");
        assert!(
            times.windows(2).all(|p| p[0] >= p[1]),
            "{system}: -date is newest first: {times:?}"
        );
        let oldest = found(
            &w,
            &token,
            &format!("/Immunization?patient={nhs}&_sort=date&_count=250"),
        )
        .await;
        let times: Vec<_> = resources(&oldest)
            .iter()
            .map(|r| instant(r, "occurrenceDateTime"))
            .collect();
        assert!(
            times.windows(2).all(|p| p[0] <= p[1]),
            "{system}: date is oldest first: {times:?}"
        );

        // Pages of 3 follow the sorted order, each link carrying every parameter.
        let mut paged = Vec::new();
        let mut next = Some(format!(
            "/Observation?patient={nhs}&_sort=-date&_count=3&_elements=code&_total=accurate"
        ));
        while let Some(url) = next.take() {
            let page = found(&w, &token, &url).await;
            for r in resources(&page) {
                assert!(
                    r.get("effectiveDateTime").is_none(),
                    "{system}: _elements carried through"
                );
                paged.push(r["id"].as_str().unwrap().to_owned());
            }
            next = page["link"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["relation"] == "next")
                .map(|l| {
                    let url = l["url"].as_str().unwrap();
                    for p in ["_sort=-date", "_elements=code", "_total=accurate"] {
                        assert!(url.contains(p), "{system}: next link {url} carries {p}");
                    }
                    url.strip_prefix(w.manifest().base_url.as_str())
                        .unwrap()
                        .to_owned()
                });
        }
        assert_eq!(paged, ids(&newest), "{system}: pages keep the sorted order");
    }
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn patient_and_subject_take_every_reference_form() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    let nhs = w.ordinary_patient("vision", "demo-consult");
    let base = w.manifest().base_url.clone();
    let expected = ids(&found(&w, &token, &format!("/Condition?patient={nhs}")).await);
    assert!(!expected.is_empty());
    for (name, value) in [
        ("patient", format!("{base}/Patient/{nhs}")),
        ("subject", format!("Patient/{nhs}")),
        ("subject", format!("{base}/Patient/{nhs}")),
        ("subject", nhs.clone()),
        ("subject:Patient", nhs.clone()),
    ] {
        let got = found(
            &w,
            &token,
            &format!("/Condition?{name}={}", percent_encode(&value)),
        )
        .await;
        assert_eq!(ids(&got), expected, "{name}={value}");
    }
    let both = search(
        &w,
        &token,
        &format!("/Condition?patient={nhs}&subject={nhs}"),
    )
    .await;
    assert_eq!(both.status, 400);
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn post_search_with_a_form_body_answers_as_the_get() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    let form = [("content-type", "application/x-www-form-urlencoded")];
    for system in SYSTEMS {
        let nhs = w.ordinary_patient(system, "demo-consult");
        let get = found(
            &w,
            &token,
            &format!("/Observation?patient={nhs}&_sort=-date&_count=4&_elements=code"),
        )
        .await;
        // Parameters split between the query and the body.
        let post = w
            .call(
                "POST",
                "/Observation/_search?_count=4",
                &token,
                &form,
                format!("patient={nhs}&_sort=-date&_elements=code").as_bytes(),
            )
            .await;
        assert_eq!(
            post.status,
            200,
            "{system}: {}",
            String::from_utf8_lossy(&post.body)
        );
        let post = post.json();
        assert_eq!(ids(&post), ids(&get), "{system}");
        assert_eq!(resources(&post), resources(&get), "{system}");
        assert_eq!(post["total"], get["total"], "{system}");
        let next = post["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .unwrap();
        assert!(
            next["url"]
                .as_str()
                .unwrap()
                .contains(&format!("patient={nhs}")),
            "{system}: the next link is a GET carrying the body's parameters"
        );
    }
    let nhs = "9000000009";
    let patient = w
        .call(
            "POST",
            "/Patient/_search",
            &token,
            &form,
            format!("identifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C{nhs}").as_bytes(),
        )
        .await;
    assert_eq!(
        patient.status,
        200,
        "{}",
        String::from_utf8_lossy(&patient.body)
    );
    assert_eq!(patient.json()["entry"][0]["resource"]["id"], nhs);

    // Refusals: the body's parameters are checked like the query's.
    let unknown = w
        .call(
            "POST",
            "/Condition/_search",
            &token,
            &form,
            format!("patient={nhs}&onset=2020").as_bytes(),
        )
        .await;
    refused(&unknown, "unknown in the body", &["onset"]);
    let json = w
        .call(
            "POST",
            "/Condition/_search",
            &token,
            &[("content-type", "application/fhir+json")],
            br#"{"patient":"9000000009"}"#,
        )
        .await;
    assert_eq!(json.status, 415, "{}", String::from_utf8_lossy(&json.body));
    assert!(
        json.diagnostics()
            .contains("application/x-www-form-urlencoded")
    );
    let missing = w
        .call("POST", "/Condition/_search", &token, &form, b"")
        .await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.spine_code(), "MISSING_VALUE");
    // Scopes apply as to the GET: demo-monitoring may search Observations only.
    let monitoring = w.token("demo-monitoring").await;
    let denied = w
        .call(
            "POST",
            "/Condition/_search",
            &monitoring,
            &form,
            format!("patient={nhs}").as_bytes(),
        )
        .await;
    assert_eq!(
        denied.status,
        403,
        "{}",
        String::from_utf8_lossy(&denied.body)
    );
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn the_capability_statement_lists_each_types_search_parameters_and_batch() {
    let w = World::start().await;
    let metadata = w.get("/metadata", None).await.json();
    let rest = &metadata["rest"][0];
    let names = |t: &str| -> Vec<String> {
        rest["resource"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == t)
            .unwrap()["searchParam"]
            .as_array()
            .map(|p| {
                p.iter()
                    .map(|p| p["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let condition = names("Condition");
    for p in [
        "patient",
        "subject",
        "code",
        "category",
        "clinical-status",
        "identifier",
        "_sort",
        "_summary",
        "_elements",
        "_total",
        "_pretty",
    ] {
        assert!(
            condition.iter().any(|n| n == p),
            "Condition lists {p}: {condition:?}"
        );
    }
    assert!(!condition.iter().any(|n| n == "status"));
    assert!(names("Observation").iter().any(|n| n == "status"));
    assert!(names("Encounter").iter().all(|n| n != "category"));
    assert!(names("Organization").is_empty(), "read only");
    let interactions: Vec<&str> = rest["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert_eq!(interactions, ["batch"]);
    let searches = rest["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Observation")
        .unwrap()["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["code"] == "search-type")
        .count();
    assert_eq!(searches, 1, "GET and POST _search are one search-type");
    w.sandbox.shutdown().await;
}

/// The `Type/id` of each entry of `bundle` in `mode` (`match` or `include`).
fn in_mode(bundle: &Value, mode: &str) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter(|e| e["search"]["mode"] == mode)
                .map(|e| {
                    format!(
                        "{}/{}",
                        e["resource"]["resourceType"].as_str().unwrap(),
                        e["resource"]["id"].as_str().unwrap()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The references `resources` make through `element` (an object or a list of them, each
/// a Reference or holding one in `via`).
fn refs(resources: &[Value], element: &str, via: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in resources {
        let items = match &r[element] {
            Value::Array(list) => list.clone(),
            Value::Null => Vec::new(),
            one => vec![one.clone()],
        };
        for item in items {
            let reference = match via {
                Some(v) => &item[v]["reference"],
                None => &item["reference"],
            };
            if let Some(s) = reference.as_str()
                && !out.iter().any(|o| o == s)
            {
                out.push(s.to_owned());
            }
        }
    }
    out
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn include_and_revinclude_bring_in_what_the_matches_refer_to_on_every_gp_system() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    for system in SYSTEMS {
        let nhs = w.ordinary_patient(system, "demo-consult");
        let observations = resources(
            &found(
                &w,
                &token,
                &format!("/Observation?patient={nhs}&_count=250"),
            )
            .await,
        );
        let encounters =
            resources(&found(&w, &token, &format!("/Encounter?patient={nhs}&_count=250")).await);
        let encounter_ids: Vec<String> = encounters
            .iter()
            .map(|e| format!("Encounter/{}", e["id"].as_str().unwrap()))
            .collect();

        // Forward: the page's encounters and performers, each once, as `include`.
        let got = found(
            &w,
            &token,
            &format!(
                "/Observation?patient={nhs}&_count=250&_include=Observation:encounter&_include=Observation:performer"
            ),
        )
        .await;
        assert_eq!(
            got["total"],
            observations.len(),
            "{system}: total counts matches only"
        );
        let matches = in_mode(&got, "match");
        assert_eq!(matches.len(), observations.len(), "{system}");
        let mut expected: Vec<String> = refs(&observations, "encounter", None)
            .into_iter()
            .filter(|r| encounter_ids.contains(r))
            .collect();
        expected.extend(refs(&observations, "performer", None));
        assert!(
            !expected.is_empty(),
            "{system}: observations refer to someone"
        );
        assert_eq!(
            sorted(in_mode(&got, "include")),
            sorted(expected),
            "{system}: the included are exactly what the matches refer to"
        );
        let included = in_mode(&got, "include");
        let person = included
            .iter()
            .find(|r| r.starts_with("Practitioner/"))
            .unwrap();
        assert_eq!(
            search(&w, &token, &format!("/{person}")).await.status,
            200,
            "{system}: an included person reads by its fullUrl"
        );

        // Paged: a page's includes are its own matches' references; next carries them.
        let page = found(
            &w,
            &token,
            &format!("/Observation?patient={nhs}&_count=1&_include=Observation:performer"),
        )
        .await;
        let first = resources(&page)
            .into_iter()
            .filter(|r| r["resourceType"] == "Observation")
            .collect::<Vec<_>>();
        assert_eq!(
            sorted(in_mode(&page, "include")),
            sorted(refs(&first, "performer", None)),
            "{system}: one page's includes"
        );
        if let Some(next) = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
        {
            assert!(
                next["url"]
                    .as_str()
                    .unwrap()
                    .contains("_include=Observation:performer"),
                "{system}: {next}"
            );
        }
        // `_elements` cuts the matches; what they brought in comes whole.
        let cut = found(
            &w,
            &token,
            &format!("/Observation?patient={nhs}&_elements=code&_include=Observation:performer"),
        )
        .await;
        let entries = cut["entry"].as_array().unwrap();
        assert!(
            entries.iter().any(|e| e["search"]["mode"] == "include")
                && entries
                    .iter()
                    .filter(|e| e["search"]["mode"] == "include")
                    .all(|e| e["resource"]["name"].is_array()),
            "{system}: {cut}"
        );
        assert!(
            entries
                .iter()
                .filter(|e| e["search"]["mode"] == "match")
                .all(|e| e["resource"]["subject"].is_null()),
            "{system}"
        );
        // Counting includes nothing.
        let count = found(
            &w,
            &token,
            &format!("/Observation?patient={nhs}&_count=0&_include=Observation:encounter"),
        )
        .await;
        assert!(count["entry"].is_null(), "{system}: {count}");

        // Reverse: the observations recorded in the page's encounters.
        let got = found(
            &w,
            &token,
            &format!("/Encounter?patient={nhs}&_count=250&_revinclude=Observation:encounter"),
        )
        .await;
        let recorded_in: Vec<String> = observations
            .iter()
            .filter(|o| {
                o["encounter"]["reference"]
                    .as_str()
                    .is_some_and(|r| encounter_ids.iter().any(|e| e == r))
            })
            .map(|o| format!("Observation/{}", o["id"].as_str().unwrap()))
            .collect();
        assert_eq!(
            sorted(in_mode(&got, "include")),
            sorted(recorded_in),
            "{system}: Encounter _revinclude=Observation:encounter"
        );
        assert_eq!(
            sorted(in_mode(&got, "match")),
            sorted(encounter_ids.clone()),
            "{system}"
        );

        // The subject of every match: the patient, once.
        let got = found(
            &w,
            &token,
            &format!("/Condition?patient={nhs}&_include=Condition:subject"),
        )
        .await;
        assert_eq!(
            in_mode(&got, "include"),
            [format!("Patient/{nhs}")],
            "{system}: Condition _include=Condition:subject"
        );

        // The patient: their GP and practice, and their problems; by POST _search too.
        let conditions =
            resources(&found(&w, &token, &format!("/Condition?patient={nhs}&_count=250")).await);
        let post = w
            .call(
                "POST",
                "/Patient/_search",
                &token,
                &[("content-type", "application/x-www-form-urlencoded")],
                format!(
                    "identifier={}&_include=Patient:general-practitioner&_include=Patient:organization&_revinclude=Condition:patient",
                    percent_encode(&format!("https://fhir.nhs.uk/Id/nhs-number|{nhs}"))
                )
                .as_bytes(),
            )
            .await;
        assert_eq!(
            post.status,
            200,
            "{system}: {}",
            String::from_utf8_lossy(&post.body)
        );
        let post = post.json();
        assert_eq!(post["total"], 1, "{system}");
        let patient = resources(&post).into_iter().next().unwrap();
        let mut expected = refs(std::slice::from_ref(&patient), "generalPractitioner", None);
        expected.extend(refs(
            std::slice::from_ref(&patient),
            "managingOrganization",
            None,
        ));
        expected.extend(
            conditions
                .iter()
                .map(|c| format!("Condition/{}", c["id"].as_str().unwrap())),
        );
        assert!(
            expected.iter().any(|r| r.starts_with("Organization/")),
            "{system}"
        );
        assert_eq!(
            sorted(in_mode(&post, "include")),
            sorted(expected),
            "{system}: Patient includes"
        );
    }
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn an_include_outside_the_callers_scopes_is_refused_before_any_data_is_read() {
    let w = World::start().await;
    // demo-monitoring: Patient, Observation, Organization and Practitioner; no Encounter,
    // no Condition.
    let token = w.token("demo-monitoring").await;
    for system in SYSTEMS {
        let nhs = w.ordinary_patient(system, "demo-monitoring");
        for query in [
            format!("/Observation?patient={nhs}&_include=Observation:encounter"),
            format!(
                "/Patient?identifier={}&_revinclude=Condition:patient",
                percent_encode(&format!("https://fhir.nhs.uk/Id/nhs-number|{nhs}"))
            ),
        ] {
            let a = search(&w, &token, &query).await;
            assert_eq!(
                a.status,
                403,
                "{system} {query}: {}",
                String::from_utf8_lossy(&a.body)
            );
            let needed = if query.contains("Condition") {
                "system/Condition.r"
            } else {
                "system/Encounter.r"
            };
            assert!(
                a.diagnostics().contains(needed),
                "{system}: {}",
                a.diagnostics()
            );
        }
        // Within its scopes, the same search includes.
        let got = found(
            &w,
            &token,
            &format!("/Observation?patient={nhs}&_include=Observation:performer&_count=250"),
        )
        .await;
        assert!(
            in_mode(&got, "include")
                .iter()
                .all(|r| r.starts_with("Practitioner/")),
            "{system}"
        );
    }
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn includes_the_gateway_cannot_serve_are_refused_naming_the_value() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    let nhs = w.ordinary_patient("emis", "demo-consult");
    for (query, value) in [
        ("_include=Observation:code", "Observation:code"),
        ("_include=*", "*"),
        (
            "_include:iterate=Observation:encounter",
            "Observation:encounter",
        ),
        ("_include=Encounter:participant", "Encounter:participant"),
        ("_revinclude=Condition:encounter", "Condition:encounter"),
    ] {
        let a = search(&w, &token, &format!("/Observation?patient={nhs}&{query}")).await;
        refused(&a, query, &[value]);
    }
    let a = search(
        &w,
        &token,
        &format!("/Condition?patient={nhs}&_include=Condition:asserter"),
    )
    .await;
    refused(
        &a,
        "Condition:asserter",
        &["Condition:asserter", "recorder"],
    );
    let metadata = w.get("/metadata", None).await.json();
    let observation = metadata["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Observation")
        .unwrap()
        .clone();
    assert_eq!(
        observation["searchInclude"],
        serde_json::json!([
            "Observation:patient",
            "Observation:subject",
            "Observation:encounter",
            "Observation:performer"
        ])
    );
    let encounter = metadata["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Encounter")
        .unwrap()
        .clone();
    assert!(
        encounter["searchRevInclude"]
            .as_array()
            .unwrap()
            .contains(&Value::from("Observation:encounter"))
    );
    w.sandbox.shutdown().await;
}

/// How many requests `system`'s simulator has answered, its change-log polls aside.
fn native_calls(w: &World, system: &str) -> u64 {
    w.sandbox
        .simulators
        .iter()
        .find(|(name, _)| name == system)
        .unwrap()
        .1
        .record_requests()
}

#[tokio::test]
async fn a_search_of_a_record_the_gateway_holds_nothing_of_reads_it_once() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    // EMIS's medical record and SystmOne's pages each hold the demographics and every
    // area: the release check's demographics come with the area searched, at no extra call.
    // Vision's and Evolution's demographics take two calls of their own beside the area's
    // (the practice and staff extracts; the patient document and its clinician), and the
    // patient extract or lookup both need is read once.
    // (Counts only, `_summary=count`: no entry answered, so no staff read to name anyone.)
    for (system, demographics_alone) in [("emis", 0), ("tpp", 0), ("vision", 2), ("microtest", 2)] {
        let nhs = w.ordinary_patient(system, "demo-consult");
        let before = native_calls(&w, system);
        let count = found(
            &w,
            &token,
            &format!("/Observation?patient={nhs}&_summary=count"),
        )
        .await;
        assert!(count["total"].as_u64().unwrap() > 0, "{system}: {count}");
        let first = native_calls(&w, system) - before;

        // The demographics are held now: another area costs its own read only.
        let before = native_calls(&w, system);
        found(
            &w,
            &token,
            &format!("/Condition?patient={nhs}&_summary=count"),
        )
        .await;
        let area_alone = native_calls(&w, system) - before;
        assert!(first >= 1, "{system}: the first search read nothing");
        assert_eq!(
            first,
            area_alone + demographics_alone,
            "{system}: the first search made {first} native call(s), the area alone takes {area_alone}"
        );

        // Both were cached by the one read: neither the Patient nor the search again
        // calls the GP system.
        let before = native_calls(&w, system);
        let a = search(&w, &token, &format!("/Patient/{nhs}")).await;
        assert_eq!(a.status, 200, "{system}");
        assert_eq!(
            native_calls(&w, system),
            before,
            "{system}: the Patient read"
        );
        found(
            &w,
            &token,
            &format!("/Observation?patient={nhs}&_summary=count"),
        )
        .await;
        assert_eq!(native_calls(&w, system), before, "{system}");
    }
}

/// A GP system whose staff reads fail while `staff_down` is set.
struct StaffOutage {
    inner: Arc<dyn Adapter>,
    staff_down: Arc<AtomicBool>,
}

#[async_trait]
impl Adapter for StaffOutage {
    fn system(&self) -> GpSystem {
        self.inner.system()
    }
    fn supported_types(&self) -> &'static [ClinicalType] {
        self.inner.supported_types()
    }
    async fn read_patient(&self, req: &PatientRequest) -> Result<PatientRecord, AdapterError> {
        self.inner.read_patient(req).await
    }
    async fn search(&self, req: &SearchRequest) -> Result<SearchPage, AdapterError> {
        self.inner.search(req).await
    }
    async fn read_patient_and_search(
        &self,
        req: &SearchRequest,
    ) -> Result<(PatientRecord, SearchPage), AdapterError> {
        self.inner.read_patient_and_search(req).await
    }
    async fn read_practitioner(
        &self,
        req: &PractitionerRequest,
    ) -> Result<Option<Practitioner>, AdapterError> {
        if self.staff_down.load(Ordering::SeqCst) {
            // Not a failure of the system (that would open its circuit): unanswered.
            return Err(AdapterError::NotSupported {
                system: self.inner.system(),
                what: "reading practice staff, for now (test)".into(),
            });
        }
        self.inner.read_practitioner(req).await
    }
}

/// The `display` of every Practitioner reference in the matches, by entry.
fn practitioner_displays(bundle: &Value) -> Vec<Option<String>> {
    gp_e2e::references(bundle)
        .into_iter()
        .filter(|(r, _)| r.starts_with("Practitioner/"))
        .map(|(_, display)| display)
        .collect()
}

#[tokio::test]
async fn a_cached_search_answers_what_a_fresh_one_does_and_names_people_once_they_answer() {
    let staff_down = Arc::new(AtomicBool::new(true));
    let down = Arc::clone(&staff_down);
    let w = World::start_layered(Box::new(move |inner| {
        Arc::new(StaffOutage {
            inner,
            staff_down: Arc::clone(&down),
        })
    }))
    .await;
    let token = w.token("demo-consult").await;
    let query = "/Observation?patient=9000000009";

    // The staff directory is down: the entries are answered, their people unnamed.
    let unnamed = found(&w, &token, query).await;
    let displays = practitioner_displays(&unnamed);
    assert!(!displays.is_empty(), "the demo record names no one");
    assert!(displays.iter().all(Option::is_none), "{displays:?}");

    // It is back: the cached entries are named now (what was answered unnamed was not
    // kept), and from then on each hit answers the same entries as the first.
    staff_down.store(false, Ordering::SeqCst);
    let named = found(&w, &token, query).await;
    let displays = practitioner_displays(&named);
    assert!(displays.iter().all(Option::is_some), "{displays:?}");
    let again = found(&w, &token, query).await;
    assert_eq!(resources(&again), resources(&named));

    // The kept JSON is what the typed path writes: the same entries, indented.
    let pretty = found(&w, &token, &format!("{query}&_pretty=true")).await;
    assert_eq!(resources(&pretty), resources(&named));
    assert_eq!(
        pretty["entry"].as_array().unwrap().len(),
        named["entry"].as_array().unwrap().len()
    );
    for (a, b) in pretty["entry"]
        .as_array()
        .unwrap()
        .iter()
        .zip(named["entry"].as_array().unwrap())
    {
        assert_eq!(a["fullUrl"], b["fullUrl"]);
        assert_eq!(a["search"], b["search"]);
    }
    assert_eq!(pretty["total"], named["total"]);
}

#[tokio::test]
async fn a_first_search_names_people_as_the_cached_answers_after_it_do() {
    // The first answer writes its matches with their names as it goes; the second keeps
    // them, named, with the cached area; the third copies what was kept. All alike.
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    for system in SYSTEMS {
        let nhs = w.ordinary_patient(system, "demo-consult");
        for area in ["Observation", "Condition", "MedicationStatement"] {
            let query = format!("/{area}?patient={nhs}&_count=250");
            let first = found(&w, &token, &query).await;
            let displays = practitioner_displays(&first);
            assert!(
                displays.iter().all(Option::is_some),
                "{system} {area}: {displays:?}"
            );
            for _ in 0..2 {
                let again = found(&w, &token, &query).await;
                assert_eq!(resources(&again), resources(&first), "{system} {area}");
            }
        }
    }
    let first = found(&w, &token, "/Observation?patient=9000000009").await;
    assert!(
        !practitioner_displays(&first).is_empty(),
        "the demo record names no one"
    );
}

#[tokio::test]
async fn an_include_on_a_record_read_for_the_first_time_brings_in_what_it_refers_to() {
    // The first search of a patient reads their demographics and the searched area in one
    // call; what `_include` needs of another area is read apart, not taken from that one.
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    let mut included_anywhere = 0;
    for system in SYSTEMS {
        let nhs = w.ordinary_patient(system, "demo-consult");
        let query = format!("/Observation?patient={nhs}&_count=250&_include=Observation:encounter");
        let first = found(&w, &token, &query).await;
        let again = found(&w, &token, &query).await;
        let included = sorted(in_mode(&first, "include"));
        assert!(
            included.iter().all(|r| r.starts_with("Encounter/")),
            "{system}: {included:?}"
        );
        assert_eq!(included, sorted(in_mode(&again, "include")), "{system}");
        included_anywhere += included.len();
    }
    assert!(
        included_anywhere > 0,
        "no observation refers to an encounter"
    );
}
