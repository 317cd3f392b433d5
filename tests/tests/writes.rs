//! Write-back end to end: what one supplier captures through the gateway is in the GP
//! system's record, and every other supplier's next read sees it; bad writes change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gp_e2e::World;
use serde_json::{Value, json};

const SYSTEMS: [&str; 4] = ["emis", "tpp", "vision", "microtest"];
const SNOMED: &str = "http://snomed.info/sct";
const UCUM: &str = "http://unitsofmeasure.org";
const FHIR_JSON: (&str, &str) = ("content-type", "application/fhir+json");
const JSON_PATCH: (&str, &str) = ("content-type", "application/json-patch+json");

/// A home blood pressure reading for `nhs`, with the supplier's own identifier.
fn blood_pressure(nhs: &str, reading_id: &str, systolic: u32, diastolic: u32) -> Value {
    json!({
        "resourceType": "Observation",
        "identifier": [{"system": "https://demo-consult.example/readings", "value": reading_id}],
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": SNOMED, "code": "75367002", "display": "Blood pressure"}]},
        "subject": {"reference": format!("Patient/{nhs}")},
        "effectiveDateTime": "2026-11-20T08:30:00+00:00",
        "component": [
            {"code": {"coding": [{"system": SNOMED, "code": "271649006", "display": "Systolic blood pressure"}]},
             "valueQuantity": {"value": systolic, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
            {"code": {"coding": [{"system": SNOMED, "code": "271650006", "display": "Diastolic blood pressure"}]},
             "valueQuantity": {"value": diastolic, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}}
        ]
    })
}

/// Asserts `r` is the blood pressure `blood_pressure(nhs, reading_id, 131, 84)` wrote,
/// as a reader gets it back: one panel with both readings, the supplier's identifier,
/// the vital-signs category and the measured instant.
fn assert_read_back(system: &str, r: &Value, id: &str, nhs: &str, reading_id: &str) {
    assert_eq!(r["resourceType"], "Observation", "{system}");
    assert_eq!(r["id"], id, "{system}");
    assert_eq!(
        r["subject"]["reference"],
        format!("Patient/{nhs}"),
        "{system}"
    );
    assert_eq!(snomed_code(&r["code"]), "75367002", "{system}: {r}");
    let parts: Vec<(String, Option<f64>)> = r["component"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                snomed_code(&c["code"]),
                c["valueQuantity"]["value"].as_f64(),
            )
        })
        .collect();
    assert_eq!(
        parts,
        [
            ("271649006".to_owned(), Some(131.0)),
            ("271650006".to_owned(), Some(84.0))
        ],
        "{system}: one panel with both readings: {r}"
    );
    assert!(r.get("valueQuantity").is_none(), "{system}: {r}");
    assert!(
        r["identifier"].as_array().unwrap().contains(
            &json!({"system": "https://demo-consult.example/readings", "value": reading_id})
        ),
        "{system}: the supplier's identifier: {}",
        r["identifier"]
    );
    assert_eq!(
        r["category"][0]["coding"][0]["code"], "vital-signs",
        "{system}: {r}"
    );
    assert_eq!(
        r["effectiveDateTime"], "2026-11-20T08:30:00+00:00",
        "{system}: the measured instant"
    );
}

fn address_change() -> Value {
    json!([
        {"op": "replace", "path": "/address", "value": [{
            "use": "home",
            "line": ["Flat 2", "14 Canal Wharf"],
            "city": "Leeds",
            "district": "West Yorkshire",
            "postalCode": "LS11 5PS"
        }]},
        {"op": "add", "path": "/communication", "value": [{
            "language": {"coding": [{"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-HumanLanguage", "code": "pl"}]},
            "preferred": true
        }]}
    ])
}

/// The SNOMED CT code of a CodeableConcept ("" when it has none).
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

/// Every (SNOMED code, value) in an Observation searchset, components included.
fn readings(bundle: &Value) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let code = snomed_code;
    for e in bundle["entry"].as_array().into_iter().flatten() {
        let r = &e["resource"];
        if let Some(v) = r["valueQuantity"]["value"].as_f64() {
            out.push((code(&r["code"]), v));
        }
        for c in r["component"].as_array().into_iter().flatten() {
            if let Some(v) = c["valueQuantity"]["value"].as_f64() {
                out.push((code(&c["code"]), v));
            }
        }
    }
    out
}

#[tokio::test]
async fn supplier_a_writes_and_supplier_b_sees_it_on_every_gp_system() {
    let w = World::start().await;
    let a = w.token("demo-consult").await;
    let b = w.token("demo-monitoring").await;
    for system in SYSTEMS {
        // A patient both suppliers may see ("north" practices).
        let nhs = w.ordinary_patient(system, "demo-monitoring");
        // B reads first, so the gateway has the old record cached.
        let before = w
            .call("GET", &format!("/Patient/{nhs}"), &b, &[], b"")
            .await;
        assert_eq!(before.status, 200, "{system}: {}", before.diagnostics());
        let old_etag = before.header("etag").unwrap().to_owned();
        let old_obs = w
            .call(
                "GET",
                &format!("/Observation?patient={nhs}&date=2026-11-20"),
                &b,
                &[],
                b"",
            )
            .await
            .json();

        // A changes the address and language against the version it read.
        let read = w
            .call("GET", &format!("/Patient/{nhs}"), &a, &[], b"")
            .await;
        let etag = read.header("etag").unwrap().to_owned();
        let patched = w
            .call(
                "PATCH",
                &format!("/Patient/{nhs}"),
                &a,
                &[JSON_PATCH, ("if-match", &etag)],
                &serde_json::to_vec(&address_change()).unwrap(),
            )
            .await;
        assert_eq!(
            patched.status,
            200,
            "{system}: {}",
            String::from_utf8_lossy(&patched.body)
        );
        let new_etag = patched.header("etag").unwrap().to_owned();
        assert_ne!(new_etag, old_etag, "{system}: the version changes");
        assert_eq!(patched.json()["address"][0]["postalCode"], "LS11 5PS");

        // A records a home blood pressure reading.
        let body = blood_pressure(&nhs, &format!("bp-{system}"), 131, 84);
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
            "{system}: {}",
            String::from_utf8_lossy(&created.body)
        );
        let location = created.header("location").unwrap().to_owned();
        let answer = created.json();
        let id = answer["id"].as_str().unwrap().to_owned();
        let vid = answer["meta"]["versionId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(!id.is_empty() && !vid.is_empty(), "{system}: {answer}");
        let base = &w.manifest().base_url;
        assert_eq!(
            location,
            format!("{base}/Observation/{id}/_history/{vid}"),
            "{system}: Location names the version created"
        );
        let etag = format!("W/\"{vid}\"");
        assert_eq!(created.header("etag"), Some(etag.as_str()), "{system}");
        assert!(
            answer["meta"]["lastUpdated"].is_string() && created.header("last-modified").is_some(),
            "{system}: when it was recorded: {answer}"
        );
        // Following it reads the reading back as written, for the writer and for a
        // paired reader: one panel, both readings, the identifier, the category, the time.
        for token in [&a, &b] {
            for path in [
                location.strip_prefix(base.as_str()).unwrap().to_owned(),
                format!("/Observation/{id}"),
            ] {
                let read = w.call("GET", &path, token, &[], b"").await;
                assert_eq!(
                    read.status,
                    200,
                    "{system} {path}: {}",
                    String::from_utf8_lossy(&read.body)
                );
                assert_eq!(read.header("etag"), Some(etag.as_str()), "{system} {path}");
                let r = read.json();
                assert_eq!(r["meta"]["versionId"], vid.as_str(), "{system} {path}");
                assert_read_back(system, &r, &id, &nhs, &format!("bp-{system}"));
            }
        }
        // A search by the panel's code, or by either part's, finds the panel.
        for code in [
            "75367002",
            "271649006",
            "271650006",
            "http://snomed.info/sct|271650006",
        ] {
            let found = w
                .call(
                    "GET",
                    &format!("/Observation?patient={nhs}&code={code}&date=2026-11-20"),
                    &b,
                    &[],
                    b"",
                )
                .await
                .json();
            let ids: Vec<&str> = found["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["resource"]["id"].as_str())
                .collect();
            assert!(ids.contains(&id.as_str()), "{system} code={code}: {ids:?}");
        }
        // Versions the GP system does not keep are not found, saying so.
        let gone = w
            .call(
                "GET",
                &format!("/Observation/{id}/_history/0000000000000000"),
                &a,
                &[],
                b"",
            )
            .await;
        assert_eq!(gone.status, 404, "{system}");
        assert!(
            gone.diagnostics()
                .contains("only an entry's current version"),
            "{system}: {}",
            gone.diagnostics()
        );

        // B's next read sees both, despite its cached copy.
        let after = w
            .call("GET", &format!("/Patient/{nhs}"), &b, &[], b"")
            .await;
        assert_eq!(after.status, 200);
        assert_eq!(after.header("etag"), Some(new_etag.as_str()), "{system}");
        let p = after.json();
        assert_eq!(
            p["address"][0]["line"],
            json!(["Flat 2", "14 Canal Wharf"]),
            "{system}"
        );
        assert_eq!(p["address"][0]["city"], "Leeds", "{system}");
        assert_eq!(p["address"][0]["postalCode"], "LS11 5PS", "{system}");
        assert_eq!(
            p["communication"][0]["language"]["coding"][0]["code"], "pl",
            "{system}"
        );
        let obs = w
            .call(
                "GET",
                &format!("/Observation?patient={nhs}&date=2026-11-20"),
                &b,
                &[],
                b"",
            )
            .await;
        assert_eq!(obs.status, 200);
        let now = readings(&obs.json());
        let was = readings(&old_obs);
        assert!(
            now.contains(&("271649006".into(), 131.0)),
            "{system}: {now:?}"
        );
        assert!(
            now.contains(&("271650006".into(), 84.0)),
            "{system}: {now:?}"
        );
        assert_eq!(
            now.len(),
            was.len() + 2,
            "{system}: exactly the two new readings"
        );

        // The Location answers the reading as recorded: one panel, both readings.
        let path = location.strip_prefix(&w.manifest().base_url).unwrap();
        let located = w.call("GET", path, &a, &[], b"").await.json();
        let found = readings(&json!({ "entry": [{ "resource": located }] }));
        assert_eq!(
            found,
            [
                ("271649006".to_owned(), 131.0),
                ("271650006".to_owned(), 84.0)
            ],
            "{system}: {found:?}"
        );
    }
}

#[tokio::test]
async fn retried_and_concurrent_creates_record_once() {
    let w = World::start().await;
    let token = w.token("demo-monitoring").await;
    let nhs = w.ordinary_patient("tpp", "demo-monitoring");
    let count = |store: &gp_sim::SimStore| {
        store
            .patient_by_nhs(&nhs)
            .map(|p| p.observations.len())
            .unwrap()
    };
    let start = count(&w.sandbox.store);
    let body = serde_json::to_vec(&blood_pressure(&nhs, "retry-1", 140, 90)).unwrap();
    let first = w
        .call("POST", "/Observation", &token, &[FHIR_JSON], &body)
        .await;
    assert_eq!(
        first.status,
        201,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    for _ in 0..2 {
        let again = w
            .call("POST", "/Observation", &token, &[FHIR_JSON], &body)
            .await;
        assert_eq!(again.status, 200, "a retry is answered, not recorded again");
        assert_eq!(again.header("location"), first.header("location"));
    }
    assert_eq!(
        count(&w.sandbox.store),
        start + 2,
        "one BP = two TPP events, once"
    );

    // If-None-Exist carries the identifier when the body has none.
    let mut no_id = blood_pressure(&nhs, "unused", 150, 95);
    no_id.as_object_mut().unwrap().remove("identifier");
    let no_id = serde_json::to_vec(&no_id).unwrap();
    let conditional = (
        "if-none-exist",
        "identifier=https://demo-monitoring.example/r|c-1",
    );
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let a = w
            .call(
                "POST",
                "/Observation",
                &token,
                &[FHIR_JSON, conditional],
                &no_id,
            )
            .await;
        statuses.push(a.status);
    }
    // A truly concurrent burst of one create.
    let burst: Vec<_> = (0..6)
        .map(|_| {
            let body = serde_json::to_vec(&blood_pressure(&nhs, "burst-1", 120, 80)).unwrap();
            let w = &w;
            let token = token.clone();
            async move {
                w.call("POST", "/Observation", &token, &[FHIR_JSON], &body)
                    .await
                    .status
            }
        })
        .collect();
    let burst_statuses = gp_e2e::join_all(burst).await;
    assert_eq!(statuses, [201, 200, 200]);
    assert_eq!(
        burst_statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{burst_statuses:?}"
    );
    assert!(
        burst_statuses.iter().all(|s| *s == 201 || *s == 200),
        "{burst_statuses:?}"
    );
    assert_eq!(
        count(&w.sandbox.store),
        start + 6,
        "three readings of two events each"
    );

    // No identifier and no If-None-Exist: refused, since a retry could not be recognised.
    let a = w
        .call("POST", "/Observation", &token, &[FHIR_JSON], &no_id)
        .await;
    assert_eq!(a.status, 422);
    assert_eq!(
        a.json()["issue"][0]["expression"][0],
        "Observation.identifier"
    );
    assert_eq!(count(&w.sandbox.store), start + 6);
}

#[tokio::test]
async fn a_stale_if_match_gets_412_and_changes_nothing() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    let nhs = w.ordinary_patient("vision", "demo-consult");
    let first = w
        .call("GET", &format!("/Patient/{nhs}"), &token, &[], b"")
        .await;
    let stale = first.header("etag").unwrap().to_owned();
    let patch = json!([{"op": "replace", "path": "/telecom", "value": [
        {"system": "phone", "value": "07700 900321", "use": "mobile"}
    ]}]);
    let ok = w
        .call(
            "PATCH",
            &format!("/Patient/{nhs}"),
            &token,
            &[JSON_PATCH, ("if-match", &stale)],
            &serde_json::to_vec(&patch).unwrap(),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    let current = w.sandbox.store.patient_by_nhs(&nhs).unwrap();
    assert_eq!(current.mobile.as_deref(), Some("07700 900321"));
    assert_eq!(
        current.home_phone, None,
        "replace /telecom leaves only the mobile"
    );

    let again = json!([{"op": "replace", "path": "/telecom", "value": [
        {"system": "phone", "value": "07700 900999", "use": "mobile"}
    ]}]);
    let refused = w
        .call(
            "PATCH",
            &format!("/Patient/{nhs}"),
            &token,
            &[JSON_PATCH, ("if-match", &stale)],
            &serde_json::to_vec(&again).unwrap(),
        )
        .await;
    assert_eq!(refused.status, 412);
    assert_eq!(refused.spine_code(), "PRECONDITION_FAILED");
    assert!(
        refused.diagnostics().contains("read it again"),
        "{}",
        refused.diagnostics()
    );
    assert_eq!(
        w.sandbox.store.patient_by_nhs(&nhs).unwrap(),
        current,
        "nothing changed"
    );
}

/// Versions as FHIR clients use them, on every GP system: `meta.versionId` is what the
/// ETag quotes, `If-None-Match` answers 304, `If-Match: *` updates whatever is current.
#[tokio::test]
async fn versions_are_version_ids_clients_can_send_back() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    for system in SYSTEMS {
        let nhs = w.ordinary_patient(system, "demo-consult");
        let read = w
            .call("GET", &format!("/Patient/{nhs}"), &token, &[], b"")
            .await;
        assert_eq!(read.status, 200, "{system}");
        let version_id = read.json()["meta"]["versionId"]
            .as_str()
            .unwrap_or_else(|| panic!("{system}: no meta.versionId"))
            .to_owned();
        assert!(
            version_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'),
            "{system}: {version_id} is not a FHIR id"
        );
        let etag = format!("W/\"{version_id}\"");
        assert_eq!(read.header("etag"), Some(etag.as_str()), "{system}");

        let again = w
            .call(
                "GET",
                &format!("/Patient/{nhs}"),
                &token,
                &[("if-none-match", &etag)],
                b"",
            )
            .await;
        assert_eq!(again.status, 304, "{system}");
        assert!(again.body.is_empty(), "{system}");
        assert_eq!(again.header("etag"), Some(etag.as_str()), "{system}");
        let other = w
            .call(
                "GET",
                &format!("/Patient/{nhs}"),
                &token,
                &[("if-none-match", "W/\"elsewhen\"")],
                b"",
            )
            .await;
        assert_eq!(other.status, 200, "{system}: another version is answered");

        let patch = json!([{"op": "replace", "path": "/telecom", "value": [
            {"system": "phone", "value": "07700 900432", "use": "mobile"}
        ]}]);
        let patched = w
            .call(
                "PATCH",
                &format!("/Patient/{nhs}"),
                &token,
                &[JSON_PATCH, ("if-match", "*")],
                &serde_json::to_vec(&patch).unwrap(),
            )
            .await;
        assert_eq!(
            patched.status,
            200,
            "{system}: {}",
            String::from_utf8_lossy(&patched.body)
        );
        let new_id = patched.json()["meta"]["versionId"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_ne!(new_id, version_id, "{system}: the version moved on");
        assert_eq!(
            patched.header("etag"),
            Some(format!("W/\"{new_id}\"").as_str()),
            "{system}"
        );
    }
    let metadata = w.call("GET", "/metadata", &token, &[], b"").await.json();
    for r in metadata["rest"][0]["resource"].as_array().unwrap() {
        let interactions: Vec<&str> = r["interaction"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["code"].as_str())
            .collect();
        // Record entries name their content version and serve vread of the current one;
        // the GP systems keep no history.
        let expected = if r["type"] == "Patient" {
            "versioned-update"
        } else if interactions.contains(&"vread") {
            "versioned"
        } else {
            "no-version"
        };
        assert_eq!(r["versioning"], expected, "{}", r["type"]);
        assert_eq!(r["readHistory"], false, "{}", r["type"]);
    }
}

/// Every entry a search answers can be read by its fullUrl, on every GP system, under
/// the search's release rules; an id never answered, or asked of the wrong type, is not
/// found, and a supplier not paired with the practice cannot read it either.
#[tokio::test]
async fn entries_are_read_by_their_full_url() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    let base = w.manifest().base_url.clone();
    for system in SYSTEMS {
        let nhs = w.ordinary_patient(system, "demo-consult");
        for t in ["Observation", "Condition", "Encounter"] {
            let search = w
                .call(
                    "GET",
                    &format!("/{t}?patient={nhs}&_count=3"),
                    &token,
                    &[],
                    b"",
                )
                .await;
            assert_eq!(search.status, 200, "{system} {t}");
            let bundle = search.json();
            for e in bundle["entry"].as_array().into_iter().flatten() {
                let url = e["fullUrl"].as_str().unwrap();
                let read = w
                    .call("GET", url.strip_prefix(&base).unwrap(), &token, &[], b"")
                    .await;
                assert_eq!(read.status, 200, "{system} {url}");
                assert_eq!(
                    read.json(),
                    e["resource"],
                    "{system} {url}: as the search gave it"
                );
            }
        }
        let search = w
            .call(
                "GET",
                &format!("/Observation?patient={nhs}&_count=1"),
                &token,
                &[],
                b"",
            )
            .await
            .json();
        let id = search["entry"][0]["resource"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let wrong_type = w
            .call("GET", &format!("/Condition/{id}"), &token, &[], b"")
            .await;
        assert_eq!(wrong_type.status, 404, "{system}");
        assert_eq!(wrong_type.spine_code(), "RESOURCE_NOT_FOUND");
        // demo-booking is paired with other practices than every system's first one.
        if !w
            .practices_of("demo-booking")
            .contains(&w.practice_of(&nhs))
        {
            let other = w.token("demo-booking").await;
            let unpaired = w
                .call("GET", &format!("/Observation/{id}"), &other, &[], b"")
                .await;
            assert!(
                [403, 404].contains(&unpaired.status),
                "{system}: {}",
                unpaired.status
            );
        }
    }
    let unknown = w
        .call("GET", "/Observation/never-answered-1", &token, &[], b"")
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.spine_code(), "RESOURCE_NOT_FOUND");
    assert!(
        unknown.diagnostics().contains("never-answered-1"),
        "{}",
        unknown.diagnostics()
    );
}

#[tokio::test]
async fn bad_writes_get_precise_errors_and_change_nothing() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    let nhs = w.ordinary_patient("emis", "demo-consult");
    let other = w.ordinary_patient("microtest", "demo-consult");
    let before = w.sandbox.store.patient_by_nhs(&nhs).unwrap();
    let other_before = w.sandbox.store.patient_by_nhs(&other).unwrap();
    let bp = blood_pressure(&nhs, "bad-1", 131, 84);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = bp.clone();
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    };
    let big = vec![b' '; 2 * 1024 * 1024];
    // (method, path, content type, body, status, Spine code, expression)
    type Case<'a> = (&'a str, String, &'a str, Vec<u8>, u16, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        ("POST", "/Observation".into(), "application/fhir+json", b"{\"resourceType\": \"Observation\",".to_vec(), 400, "INVALID_VALUE", ""),
        ("POST", "/Observation".into(), "application/fhir+json", with(&|v| v["resourceType"] = "Patient".into()), 422, "INVALID_RESOURCE", "Observation.resourceType"),
        ("POST", "/Observation".into(), "application/fhir+json", with(&|v| v["flavour"] = "salty".into()), 422, "INVALID_RESOURCE", "Observation.flavour"),
        ("POST", "/Observation".into(), "application/fhir+json", with(&|v| v["effectiveDateTime"] = "2026-02-30T08:00:00Z".into()), 422, "INVALID_RESOURCE", "Observation.effectiveDateTime"),
        ("POST", "/Observation".into(), "application/fhir+json", with(&|v| v["component"][0]["valueQuantity"]["code"] = "cm".into()), 422, "INVALID_RESOURCE", "Observation.component[0].valueQuantity.code"),
        ("POST", "/Observation".into(), "application/fhir+xml", with(&|_| {}), 415, "UNSUPPORTED_MEDIA_TYPE", ""),
        ("POST", "/Observation".into(), "application/fhir+json", big.clone(), 413, "PAYLOAD_TOO_LARGE", ""),
        ("PATCH", format!("/Patient/{nhs}"), "application/json-patch+json", serde_json::to_vec(&json!([{"op": "replace", "path": "/name/0/family", "value": "Hacker"}])).unwrap(), 422, "INVALID_RESOURCE", "Patient.name.0.family"),
        ("PATCH", format!("/Patient/{nhs}"), "application/json-patch+json", serde_json::to_vec(&json!([{"op": "replace", "path": "/id", "value": other}])).unwrap(), 422, "INVALID_RESOURCE", "Patient.id"),
        ("PATCH", format!("/Patient/{nhs}"), "application/json-patch+json", serde_json::to_vec(&json!([{"op": "replace", "path": "/address/0/postalCode", "value": "NOT A POSTCODE"}])).unwrap(), 422, "INVALID_RESOURCE", "Patient.address[0].postalCode"),
        ("PATCH", format!("/Patient/{nhs}"), "application/json-patch+json", b"{not json".to_vec(), 400, "INVALID_VALUE", ""),
        ("PATCH", format!("/Patient/{nhs}"), "application/fhir+json", serde_json::to_vec(&address_change()).unwrap(), 400, "INVALID_VALUE", ""),
        ("PATCH", format!("/Patient/{nhs}"), "application/xml", serde_json::to_vec(&address_change()).unwrap(), 415, "UNSUPPORTED_MEDIA_TYPE", ""),
        ("PATCH", format!("/Patient/{nhs}"), "application/json-patch+json", big, 413, "PAYLOAD_TOO_LARGE", ""),
    ];
    for (method, path, content_type, body, status, code, expression) in cases {
        let a = w
            .call(
                method,
                &path,
                &token,
                &[("content-type", content_type)],
                &body,
            )
            .await;
        let what = format!("{method} {path} ({content_type}, {} bytes)", body.len());
        assert_eq!(
            a.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&a.body)
        );
        assert_eq!(a.spine_code(), code, "{what}");
        let got = a.json()["issue"][0]["expression"][0]
            .as_str()
            .unwrap_or("")
            .to_owned();
        assert_eq!(got, expression, "{what}: {}", a.diagnostics());
    }
    assert_eq!(
        w.sandbox.store.patient_by_nhs(&nhs).unwrap(),
        before,
        "the GP record is unchanged"
    );
    assert_eq!(
        w.sandbox.store.patient_by_nhs(&other).unwrap(),
        other_before
    );
}

#[tokio::test]
async fn sensitive_dissenting_unpaired_and_unscoped_writes_are_refused() {
    let w = World::start().await;
    let consult = w.token("demo-consult").await;
    let monitoring = w.token("demo-monitoring").await;
    let booking = w.token("demo-booking").await;
    let practice = w.practices_of("demo-monitoring")[0].clone();
    let sensitive = w.patient(&practice, "sensitive");
    let dissent = w.patient(&practice, "dissent");
    let south = w
        .practices_of("demo-consult")
        .into_iter()
        .find(|p| !w.practices_of("demo-monitoring").contains(p))
        .unwrap();
    let unpaired = w.patient(&south, "");
    let snapshot = |n: &str| w.sandbox.store.patient_by_nhs(n).unwrap();
    let before: Vec<_> = [&sensitive, &dissent, &unpaired]
        .iter()
        .map(|n| snapshot(n))
        .collect();

    let post = |nhs: &str| serde_json::to_vec(&blood_pressure(nhs, "refused", 131, 84)).unwrap();
    let a = w
        .call(
            "POST",
            "/Observation",
            &consult,
            &[FHIR_JSON],
            &post(&sensitive),
        )
        .await;
    assert_eq!(
        (a.status, a.spine_code().as_str()),
        (404, "RESOURCE_NOT_FOUND")
    );
    let a = w
        .call(
            "POST",
            "/Observation",
            &consult,
            &[FHIR_JSON],
            &post(&dissent),
        )
        .await;
    assert_eq!(
        (a.status, a.spine_code().as_str()),
        (403, "NO_PATIENT_CONSENT")
    );
    let a = w
        .call(
            "POST",
            "/Observation",
            &monitoring,
            &[FHIR_JSON],
            &post(&unpaired),
        )
        .await;
    assert_eq!(a.status, 404, "unpaired looks like unknown");
    let patch = serde_json::to_vec(&address_change()).unwrap();
    let a = w
        .call(
            "PATCH",
            &format!("/Patient/{sensitive}"),
            &consult,
            &[JSON_PATCH],
            &patch,
        )
        .await;
    assert_eq!(a.status, 404);
    let a = w
        .call(
            "PATCH",
            &format!("/Patient/{dissent}"),
            &consult,
            &[JSON_PATCH],
            &patch,
        )
        .await;
    assert_eq!(a.status, 403);
    // Scopes: monitoring may not update patients; booking may not create observations.
    let a = w
        .call(
            "PATCH",
            &format!("/Patient/{unpaired}"),
            &monitoring,
            &[JSON_PATCH],
            &patch,
        )
        .await;
    assert_eq!(a.status, 403);
    assert!(a.diagnostics().contains("Patient"), "{}", a.diagnostics());
    let a = w
        .call(
            "POST",
            "/Observation",
            &booking,
            &[FHIR_JSON],
            &post(&unpaired),
        )
        .await;
    assert_eq!(a.status, 403);
    assert!(
        a.diagnostics().contains("Observation"),
        "{}",
        a.diagnostics()
    );
    let after: Vec<_> = [&sensitive, &dissent, &unpaired]
        .iter()
        .map(|n| snapshot(n))
        .collect();
    assert_eq!(before, after, "no refused write reached a GP record");
}

/// A create is recognised as a retry by its identifier within one supplier's own
/// readings: another supplier's reading with the same identifier is recorded too.
#[tokio::test]
async fn the_same_identifier_from_two_suppliers_is_two_readings() {
    let w = World::start().await;
    let nhs = w.ordinary_patient("emis", "demo-monitoring");
    let body = serde_json::to_vec(&blood_pressure(&nhs, "shared-reading-1", 131, 85)).unwrap();
    for client in ["demo-consult", "demo-monitoring"] {
        let token = w.token(client).await;
        let a = w
            .call("POST", "/Observation", &token, &[FHIR_JSON], &body)
            .await;
        assert_eq!(
            a.status,
            201,
            "{client}: {}",
            String::from_utf8_lossy(&a.body)
        );
    }
}

/// An identifier a GP system would not keep exactly as sent (over 200 characters, or
/// with surrounding spaces some systems trim) is refused, naming it, and nothing is
/// recorded: what is kept must read back as written.
#[tokio::test]
async fn identifiers_that_would_not_read_back_as_sent_are_refused() {
    let w = World::start().await;
    let token = w.token("demo-monitoring").await;
    for system in SYSTEMS {
        let nhs = w.ordinary_patient(system, "demo-monitoring");
        let held = |store: &gp_sim::SimStore| {
            store
                .patient_by_nhs(&nhs)
                .map(|p| p.observations.len())
                .unwrap()
        };
        let before = held(&w.sandbox.store);
        for value in [" padded".to_owned(), "x".repeat(201)] {
            let body = blood_pressure(&nhs, &value, 131, 84);
            let a = w
                .call(
                    "POST",
                    "/Observation",
                    &token,
                    &[FHIR_JSON],
                    &serde_json::to_vec(&body).unwrap(),
                )
                .await;
            assert_eq!(a.status, 422, "{system} {value:?}: {}", a.diagnostics());
            assert!(
                a.diagnostics().contains("Observation.identifier[0].value"),
                "{system}: {}",
                a.diagnostics()
            );
        }
        assert_eq!(held(&w.sandbox.store), before, "{system}: nothing recorded");
    }
}

/// A record entry read by id answers `If-None-Match` as a Patient read does, on every GP
/// system: its `meta.versionId`'s tag is `304` with the tag (fhirpy's `refresh()` sends
/// it), any other tag the entry.
#[tokio::test]
async fn an_entry_read_is_not_modified_while_its_version_is_current() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    for system in SYSTEMS {
        let nhs = w.ordinary_patient(system, "demo-consult");
        let search = w
            .call(
                "GET",
                &format!("/Condition?patient={nhs}&_count=1"),
                &token,
                &[],
                b"",
            )
            .await;
        assert_eq!(search.status, 200, "{system}");
        let bundle = search.json();
        let id = bundle["entry"][0]["resource"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{system}: the patient has a condition: {bundle}"))
            .to_owned();
        let path = format!("/Condition/{id}");
        let read = w.call("GET", &path, &token, &[], b"").await;
        assert_eq!(read.status, 200, "{system}");
        let version_id = read.json()["meta"]["versionId"]
            .as_str()
            .unwrap_or_else(|| panic!("{system}: no meta.versionId"))
            .to_owned();
        let etag = format!("W/\"{version_id}\"");
        assert_eq!(read.header("etag"), Some(etag.as_str()), "{system}");

        let again = w
            .call("GET", &path, &token, &[("if-none-match", &etag)], b"")
            .await;
        assert_eq!(again.status, 304, "{system}");
        assert!(again.body.is_empty(), "{system}");
        assert_eq!(again.header("etag"), Some(etag.as_str()), "{system}");
        let other = w
            .call(
                "GET",
                &path,
                &token,
                &[("if-none-match", "W/\"elsewhen\"")],
                b"",
            )
            .await;
        assert_eq!(other.status, 200, "{system}: another version is answered");
        assert_eq!(other.json()["id"], id.as_str(), "{system}");
    }
}
