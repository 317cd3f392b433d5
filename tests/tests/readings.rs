//! Readings as device platforms and FHIR libraries send them: the official HL7 R4
//! vital-signs examples (LOINC-coded, US units, date-only times, interpretation, body
//! site, a performer), changed only in `subject` and `identifier`, are recorded on every
//! GP system, read back as recorded, and found by another supplier by their identifier.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gp_e2e::World;
use serde_json::{Value, json};

const SYSTEMS: [&str; 4] = ["emis", "tpp", "vision", "microtest"];
const SNOMED: &str = "http://snomed.info/sct";
const FHIR_JSON: (&str, &str) = ("content-type", "application/fhir+json");

fn example(name: &str) -> Value {
    let path = format!(
        "{}/../crates/gp-gateway/tests/fixtures/hl7-r4-vital-signs/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `example`, for patient `nhs`, identified as `https://example.org/hl7-examples|{value}`.
fn for_patient(mut v: Value, nhs: &str, value: &str) -> Value {
    v["subject"] = json!({"reference": format!("Patient/{nhs}")});
    v["identifier"] = json!([{"system": "https://example.org/hl7-examples", "value": value}]);
    v
}

fn snomed_code(cc: &Value) -> String {
    cc["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["system"] == SNOMED)
        .and_then(|c| c["code"].as_str())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn the_official_hl7_vital_signs_examples_are_recorded_and_found_by_another_supplier() {
    let w = World::start().await;
    let a = w.token("demo-consult").await;
    let b = w.token("demo-monitoring").await;
    // (file, SNOMED CT recorded, value as recorded, unit as recorded)
    let cases = [
        ("Observation-heart-rate", "364075005", 44.0, "/min"),
        ("Observation-body-height", "50373000", 169.9, "cm"),
        ("Observation-bmi", "60621009", 16.2, "kg/m2"),
        ("Observation-example", "27113001", 83.91, "kg"),
    ];
    for system in SYSTEMS {
        let nhs = w.ordinary_patient(system, "demo-monitoring");
        let run = uuid::Uuid::new_v4().simple().to_string();
        for (name, code, value, unit) in cases {
            let reading_id = format!("{name}-{system}-{run}");
            let body = for_patient(example(name), &nhs, &reading_id);
            let created = w
                .call(
                    "POST",
                    "/Observation",
                    &a,
                    &[FHIR_JSON],
                    &serde_json::to_vec(&body).unwrap(),
                )
                .await;
            assert_eq!(
                created.status,
                201,
                "{system} {name}: {}",
                created.diagnostics()
            );
            let r = created.json();
            assert_eq!(snomed_code(&r["code"]), code, "{system} {name}: {r}");
            assert_eq!(
                r["valueQuantity"]["value"].as_f64(),
                Some(value),
                "{system} {name}: {r}"
            );
            assert_eq!(r["valueQuantity"]["code"], unit, "{system} {name}: {r}");
            assert_eq!(
                r["effectiveDateTime"].as_str().map(str::len),
                Some(10),
                "{system} {name}: a date-only reading reads back as the date: {r}"
            );
            let location = created.header("location").unwrap().to_owned();
            assert!(
                location.contains(&format!("/Observation/{}", r["id"].as_str().unwrap())),
                "{location}"
            );
            // Another supplier finds it by the identifier.
            let found = w
                .call(
                    "GET",
                    &format!(
                        "/Observation?patient={nhs}&identifier=https://example.org/hl7-examples|{reading_id}"
                    ),
                    &b,
                    &[],
                    b"",
                )
                .await;
            assert_eq!(
                found.status,
                200,
                "{system} {name}: {}",
                found.diagnostics()
            );
            let bundle = found.json();
            let ids: Vec<&str> = bundle["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["search"]["mode"] == "match")
                .filter_map(|e| e["resource"]["id"].as_str())
                .collect();
            assert_eq!(
                ids,
                [r["id"].as_str().unwrap()],
                "{system} {name}: {bundle}"
            );
        }

        // The blood pressure names a practitioner the GP system does not know: refused,
        // naming the element; without it, recorded with its interpretations and body site.
        let bp_id = format!("bp-{system}-{run}");
        let bp = for_patient(example("Observation-blood-pressure"), &nhs, &bp_id);
        let refused = w
            .call(
                "POST",
                "/Observation",
                &a,
                &[FHIR_JSON],
                &serde_json::to_vec(&bp).unwrap(),
            )
            .await;
        assert_eq!(refused.status, 422, "{system}: {}", refused.diagnostics());
        let outcome = refused.json();
        assert_eq!(
            outcome["issue"][0]["expression"][0], "Observation.performer[0].reference",
            "{system}: {outcome}"
        );
        let mut bp = bp;
        bp.as_object_mut().unwrap().remove("performer");
        let created = w
            .call(
                "POST",
                "/Observation",
                &a,
                &[FHIR_JSON],
                &serde_json::to_vec(&bp).unwrap(),
            )
            .await;
        assert_eq!(created.status, 201, "{system}: {}", created.diagnostics());
        let r = created.json();
        assert_eq!(snomed_code(&r["code"]), "75367002", "{system}: {r}");
        assert_eq!(
            r["interpretation"][0]["coding"][0]["code"], "L",
            "{system}: {r}"
        );
        assert_eq!(snomed_code(&r["bodySite"]), "368209003", "{system}: {r}");
        let parts: Vec<(String, Option<f64>, Value)> = r["component"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    snomed_code(&c["code"]),
                    c["valueQuantity"]["value"].as_f64(),
                    c["interpretation"][0]["coding"][0]["code"].clone(),
                )
            })
            .collect();
        assert_eq!(
            parts,
            [
                ("271649006".to_owned(), Some(107.0), json!("N")),
                ("271650006".to_owned(), Some(60.0), json!("L"))
            ],
            "{system}: {r}"
        );
    }
}

#[tokio::test]
async fn a_detail_only_some_gp_systems_hold_is_refused_by_name_on_the_others() {
    let w = World::start().await;
    let a = w.token("demo-consult").await;
    for system in SYSTEMS {
        let nhs = w.ordinary_patient(system, "demo-monitoring");
        let mut v = for_patient(
            example("Observation-heart-rate"),
            &nhs,
            &format!("device-{system}-{}", uuid::Uuid::new_v4().simple()),
        );
        v["device"] = json!({"display": "Home pulse oximeter PO-80"});
        let answer = w
            .call(
                "POST",
                "/Observation",
                &a,
                &[FHIR_JSON],
                &serde_json::to_vec(&v).unwrap(),
            )
            .await;
        if system == "microtest" {
            assert_eq!(answer.status, 201, "{system}: {}", answer.diagnostics());
            assert_eq!(
                answer.json()["device"]["display"],
                "Home pulse oximeter PO-80"
            );
        } else {
            assert_eq!(answer.status, 422, "{system}: {}", answer.diagnostics());
            let outcome = answer.json();
            assert_eq!(
                outcome["issue"][0]["expression"][0], "Observation.device",
                "{outcome}"
            );
        }
    }
}
