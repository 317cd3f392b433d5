//! The FHIR API end to end: gateway and simulators over real HTTP on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gp_e2e::World;

/// The demo patient on EMIS Web (DOMAIN.md's published test number).
const EMIS_DEMO: &str = "9000000009";

#[tokio::test]
async fn a_paired_supplier_reads_a_uk_core_patient_and_their_allergies() {
    let w = World::start().await;
    // demo-monitoring is paired with the first practice of each system ("north").
    let practice = w.practice_of(EMIS_DEMO);
    assert!(w.practices_of("demo-monitoring").contains(&practice));
    let token = w.token("demo-monitoring").await;

    let a = w.get(&format!("/Patient/{EMIS_DEMO}"), Some(&token)).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let p = a.json();
    assert_eq!(p["resourceType"], "Patient");
    assert_eq!(p["id"], EMIS_DEMO);
    assert_eq!(
        p["meta"]["profile"][0],
        "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"
    );
    assert_eq!(
        p["identifier"][0]["system"],
        "https://fhir.nhs.uk/Id/nhs-number"
    );
    assert_eq!(p["identifier"][0]["value"], EMIS_DEMO);
    assert!(a.header("etag").unwrap().starts_with("W/\""));
    assert_eq!(a.header("cache-control"), Some("no-store"));
    assert!(
        a.header("content-type")
            .unwrap()
            .starts_with("application/fhir+json")
    );
    assert!(
        a.header("ratelimit").is_some(),
        "rate-limit state is reported"
    );

    let a = w
        .get(&format!("/Observation?patient={EMIS_DEMO}"), Some(&token))
        .await;
    assert_eq!(a.status, 200);
    let b = a.json();
    assert_eq!(b["type"], "searchset");
    assert!(b["total"].as_u64().unwrap() > 0);
    for e in b["entry"].as_array().unwrap() {
        assert_eq!(e["resource"]["resourceType"], "Observation");
        assert_eq!(
            e["resource"]["subject"]["reference"],
            format!("Patient/{EMIS_DEMO}")
        );
        assert!(
            e["fullUrl"]
                .as_str()
                .unwrap()
                .starts_with(&w.manifest().base_url),
            "links use the public base URL"
        );
    }

    // Allergies: demo-consult holds that scope at every practice.
    assert!(w.practices_of("demo-consult").contains(&practice));
    let consult = w.token("demo-consult").await;
    let a = w
        .get(
            &format!("/AllergyIntolerance?patient={EMIS_DEMO}"),
            Some(&consult),
        )
        .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    for e in a.json()["entry"].as_array().into_iter().flatten() {
        let r = &e["resource"];
        assert_eq!(r["resourceType"], "AllergyIntolerance");
        assert_eq!(
            r["code"]["coding"][0]["system"], "http://snomed.info/sct",
            "mapped SNOMED CT coding first"
        );
    }
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn pairing_and_scopes_are_enforced() {
    let w = World::start().await;
    // demo-monitoring is paired with the north practices only: a south patient does
    // not exist for it, though demo-consult reads the same record.
    let south = w
        .practices_of("demo-consult")
        .into_iter()
        .find(|p| !w.practices_of("demo-monitoring").contains(p))
        .unwrap();
    let patient = w.patient(&south, "");
    let consult = w.token("demo-consult").await;
    assert_eq!(
        w.get(&format!("/Patient/{patient}"), Some(&consult))
            .await
            .status,
        200
    );
    let monitoring = w.token("demo-monitoring").await;
    let a = w
        .get(&format!("/Patient/{patient}"), Some(&monitoring))
        .await;
    assert_eq!(a.status, 404);
    assert_eq!(a.spine_code(), "RESOURCE_NOT_FOUND");
    // ...exactly as for a patient registered nowhere.
    let unknown = w.get("/Patient/9434765919", Some(&monitoring)).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(
        a.diagnostics().replace(&patient, "N"),
        unknown.diagnostics().replace("9434765919", "N")
    );

    // demo-booking is paired everywhere but holds no Observation scope.
    let booking = w.token("demo-booking").await;
    let a = w
        .get(&format!("/Observation?patient={EMIS_DEMO}"), Some(&booking))
        .await;
    assert_eq!(a.status, 403);
    assert_eq!(a.spine_code(), "ACCESS_DENIED");
    assert!(
        a.diagnostics().contains("system/Observation"),
        "{}",
        a.diagnostics()
    );
    // ...but may read the Patient.
    assert_eq!(
        w.get(&format!("/Patient/{EMIS_DEMO}"), Some(&booking))
            .await
            .status,
        200
    );

    // demo-monitoring may not read allergies.
    let a = w
        .get(
            &format!("/AllergyIntolerance?patient={EMIS_DEMO}"),
            Some(&monitoring),
        )
        .await;
    assert_eq!(a.status, 403);
    assert!(
        a.diagnostics().contains("system/AllergyIntolerance"),
        "{}",
        a.diagnostics()
    );
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn missing_or_bad_tokens_get_401_with_a_reason() {
    let w = World::start().await;
    let a = w.get(&format!("/Patient/{EMIS_DEMO}"), None).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.spine_code(), "ACCESS_DENIED");
    assert!(a.header("www-authenticate").unwrap().starts_with("Bearer"));
    let a = w
        .get(&format!("/Patient/{EMIS_DEMO}"), Some("not.a.jwt"))
        .await;
    assert_eq!(a.status, 401);
    let url = format!("{}/Patient/{EMIS_DEMO}", w.manifest().base_url);
    let a = w
        .send("GET", &url, &[("authorization", "Basic Zm9vOmJhcg==")], b"")
        .await;
    assert_eq!(a.status, 401);
    assert!(!a.diagnostics().is_empty());
    // The CapabilityStatement is public.
    let a = w.get("/metadata", None).await;
    assert_eq!(a.status, 200);
    let cs = a.json();
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    let types: Vec<&str> = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    for t in [
        "Patient",
        "AllergyIntolerance",
        "MedicationStatement",
        "Condition",
        "Observation",
        "Immunization",
        "Encounter",
    ] {
        assert!(types.contains(&t), "{t} routed and declared");
    }
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn token_endpoint_speaks_oauth2() {
    let w = World::start().await;
    let a = w
        .token_request(
            "demo-monitoring",
            Some("system/Observation.rs system/Immunization.rs"),
        )
        .await;
    assert_eq!(a.status, 200);
    let t = a.json();
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(
        t["scope"], "system/Observation.rs",
        "granted = requested ∩ allowed"
    );
    // 15 minutes: a client library that refreshes 300 s before expiry (medplum) still
    // holds a usable token.
    assert_eq!(t["expires_in"].as_u64(), Some(900));
    assert_eq!(a.header("cache-control"), Some("no-store"));

    let a = w
        .token_request("demo-monitoring", Some("system/Immunization.rs"))
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["error"], "invalid_scope");

    // The same assertion twice: the second is a replay.
    let identity = gp_gateway::sandbox::demo_identity("demo-consult").unwrap();
    let body = identity
        .token_request_body(&w.manifest().token_url, None)
        .unwrap();
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let url = w.manifest().token_url.clone();
    assert_eq!(
        w.send("POST", &url, &form, body.as_bytes()).await.status,
        200
    );
    let replay = w.send("POST", &url, &form, body.as_bytes()).await;
    assert_eq!(replay.status, 400);
    assert_eq!(replay.json()["error"], "invalid_grant");
    assert!(
        replay.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("jti")
    );

    let a = w
        .send(
            "POST",
            &w.manifest().token_url,
            &[("content-type", "application/json")],
            b"{}",
        )
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["error"], "invalid_request");
    let a = w.send("GET", &w.manifest().token_url, &[], b"").await;
    assert_eq!(a.status, 405);

    let base = w
        .manifest()
        .base_url
        .trim_end_matches("/FHIR/R4")
        .to_owned();
    let smart = w
        .send(
            "GET",
            &format!("{base}/.well-known/smart-configuration"),
            &[],
            b"",
        )
        .await;
    assert_eq!(smart.status, 200);
    assert_eq!(
        smart.json()["token_endpoint"],
        w.manifest().token_url.as_str()
    );
    let jwks = w
        .send("GET", &format!("{base}/oauth2/jwks"), &[], b"")
        .await;
    assert_eq!(jwks.json()["keys"][0]["alg"], "EdDSA");
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn a_burst_past_the_limit_gets_429_and_recovers() {
    let w = World::start().await;
    let token = w.token("demo-monitoring").await; // 5/s, burst 10
    let mut limited = None;
    for _ in 0..25 {
        let a = w.get(&format!("/Patient/{EMIS_DEMO}"), Some(&token)).await;
        if a.status == 429 {
            limited = Some(a);
            break;
        }
        assert_eq!(a.status, 200);
    }
    let a = limited.expect("a burst of 25 requests passes a burst allowance of 10");
    assert_eq!(a.spine_code(), "TOO_MANY_REQUESTS");
    let retry: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry));
    assert!(a.header("ratelimit").is_some() && a.header("ratelimit-policy").is_some());
    tokio::time::sleep(std::time::Duration::from_secs(retry)).await;
    assert_eq!(
        w.get(&format!("/Patient/{EMIS_DEMO}"), Some(&token))
            .await
            .status,
        200,
        "recovers after Retry-After"
    );
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_precise_operation_outcomes() {
    let w = World::start().await;
    let token = w.token("demo-monitoring").await;
    let t = Some(token.as_str());
    let cases: Vec<(String, u16, &str, &str)> = vec![
        (
            "/Patient/12345".into(),
            400,
            "INVALID_RESOURCE_ID",
            "10 digits",
        ),
        (
            "/Patient/9000000008".into(),
            400,
            "INVALID_RESOURCE_ID",
            "modulus 11",
        ),
        (
            "/Patient/9434765919".into(),
            404,
            "RESOURCE_NOT_FOUND",
            "9434765919",
        ),
        ("/Frobnicate".into(), 404, "UNSUPPORTED_SERVICE", "no route"),
        // A read takes no search parameters: refused, never ignored.
        (
            format!("/Patient/{EMIS_DEMO}?name=smith"),
            400,
            "INVALID_PARAMETER",
            "name",
        ),
        // A type the gateway names but does not serve this way: not supported, never a
        // 404 that clients read as deleted.
        (
            "/Location/abc-123".into(),
            501,
            "NOT_IMPLEMENTED",
            "not supported",
        ),
        // No GP system holds an SDS job role.
        (
            "/PractitionerRole/abc-123".into(),
            501,
            "NOT_IMPLEMENTED",
            "not supported",
        ),
        // A structured record's List is served by the id an answer gave; any other is
        // not found.
        (
            "/List/abc-123".into(),
            404,
            "RESOURCE_NOT_FOUND",
            "List/abc-123",
        ),
        (
            format!("/Patient/{EMIS_DEMO}/_history/1"),
            501,
            "NOT_IMPLEMENTED",
            "Patient",
        ),
        (
            format!("/Observation?patient={EMIS_DEMO}&dtae=2020"),
            400,
            "INVALID_PARAMETER",
            "dtae",
        ),
        (
            format!("/Observation?patient={EMIS_DEMO}&_count=-1"),
            400,
            "INVALID_SEARCH_DATA",
            "_count",
        ),
        (
            format!("/Observation?patient={EMIS_DEMO}&_summary=text"),
            400,
            "INVALID_PARAMETER",
            "_summary",
        ),
        (
            format!("/Observation?patient={EMIS_DEMO}&date=2021-02-30"),
            400,
            "INVALID_SEARCH_DATA",
            "date",
        ),
        ("/Observation".into(), 400, "MISSING_VALUE", "patient"),
        (
            "/Patient?identifier=9000000009".into(),
            400,
            "INVALID_SEARCH_DATA",
            "identifier",
        ),
        (
            format!("/Patient/{EMIS_DEMO}?_format=xml"),
            406,
            "NOT_ACCEPTABLE",
            "XML",
        ),
    ];
    for (path, status, code, needle) in cases {
        // Paced: more cases than demo-monitoring's rate limit (10 in 2 s) allows at once.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let a = w.get(&path, t).await;
        assert_eq!(
            a.status,
            status,
            "{path}: {}",
            String::from_utf8_lossy(&a.body)
        );
        assert_eq!(a.spine_code(), code, "{path}");
        assert!(
            a.diagnostics().contains(needle),
            "{path}: '{}' lacks '{needle}'",
            a.diagnostics()
        );
        assert_eq!(a.json()["resourceType"], "OperationOutcome");
    }
    let base = &w.manifest().base_url;
    let auth = format!("Bearer {token}");
    let a = w
        .send(
            "DELETE",
            &format!("{base}/Patient/{EMIS_DEMO}"),
            &[("authorization", &auth)],
            b"",
        )
        .await;
    assert_eq!(a.status, 405);
    assert_eq!(a.header("allow"), Some("GET, PATCH, PUT"));
    let a = w
        .send(
            "GET",
            &format!("{base}/Patient/{EMIS_DEMO}"),
            &[("authorization", &auth), ("accept", "application/fhir+xml")],
            b"",
        )
        .await;
    assert_eq!(a.status, 406);
    let big = vec![b'x'; 2 * 1024 * 1024];
    let a = w
        .send(
            "POST",
            &format!("{base}/Patient"),
            &[("authorization", &auth)],
            &big,
        )
        .await;
    assert_eq!(a.status, 413);
    assert_eq!(a.spine_code(), "PAYLOAD_TOO_LARGE");
    // Ids: a caller's UUID is mirrored; anything else is refused, not echoed.
    let rid = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let a = w
        .send(
            "GET",
            &format!("{base}/metadata"),
            &[("x-request-id", rid), ("x-correlation-id", "abc-123")],
            b"",
        )
        .await;
    assert_eq!(a.header("x-request-id"), Some(rid));
    assert_eq!(a.header("x-correlation-id"), Some("abc-123"));
    let a = w
        .send(
            "GET",
            &format!("{base}/metadata"),
            &[("x-request-id", "not-a-uuid")],
            b"",
        )
        .await;
    assert_eq!(a.status, 400);
    assert!(
        a.header("x-request-id").is_some(),
        "a fresh id is minted for the error"
    );
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn searches_page_with_links_and_filter_by_date() {
    let w = World::start().await;
    let token = w.token("demo-monitoring").await;
    let t = Some(token.as_str());
    let all = w
        .get(&format!("/Observation?patient={EMIS_DEMO}&_count=250"), t)
        .await
        .json();
    let total = all["total"].as_u64().unwrap();
    assert!(total >= 3, "demo patient has observations");
    // A searchset says when it was answered: an instant (today, UTC), never empty.
    let answered = all["meta"]["lastUpdated"].as_str().unwrap_or_default();
    let (y, ..) = gp_fhir::date::parse_instant_utc(answered)
        .unwrap_or_else(|e| panic!("searchset meta.lastUpdated {answered:?}: {e}"));
    assert!(y >= 2026, "{answered}");
    let mut seen = Vec::new();
    let mut next = Some(format!(
        "{}/Observation?patient={EMIS_DEMO}&_count=2",
        w.manifest().base_url
    ));
    while let Some(url) = next.take() {
        let auth = format!("Bearer {token}");
        let page = w
            .send("GET", &url, &[("authorization", &auth)], b"")
            .await
            .json();
        assert_eq!(page["total"].as_u64().unwrap(), total);
        for e in page["entry"].as_array().unwrap() {
            seen.push(e["resource"]["id"].as_str().unwrap().to_owned());
        }
        next = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_owned());
        tokio::time::sleep(std::time::Duration::from_millis(150)).await; // stay under the rate limit
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no duplicates across pages");
    assert_eq!(seen.len() as u64, total, "no gaps across pages");
    let dates: Vec<&str> = all["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["resource"]["effectiveDateTime"].as_str())
        .collect();
    let pivot = &dates[dates.len() / 2][..10];
    let after = w
        .get(
            &format!("/Observation?patient={EMIS_DEMO}&date=ge{pivot}&_count=250"),
            t,
        )
        .await
        .json();
    for e in after["entry"].as_array().unwrap_or(&Vec::new()) {
        assert!(e["resource"]["effectiveDateTime"].as_str().unwrap()[..10] >= *pivot);
    }
    assert!(after["total"].as_u64().unwrap() < total || dates.iter().all(|d| d[..10] >= *pivot));
    w.sandbox.shutdown().await;
}

/// What client libraries send by default: medplum pages with `_count=1000`, its
/// `searchOne` and fhirpy's `first()` send `_count=1`, and `_count=0` / `_summary=count`
/// ask for the total alone.
#[tokio::test]
async fn searches_take_the_result_parameters_client_libraries_send() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    let max = 250;
    let all = w
        .get(&format!("/Observation?patient={EMIS_DEMO}"), Some(&token))
        .await
        .json();
    let total = all["total"].as_u64().unwrap();
    assert!(total > 0);

    let a = w
        .get(
            &format!("/Observation?patient={EMIS_DEMO}&_count=1000"),
            Some(&token),
        )
        .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let b = a.json();
    assert_eq!(b["total"].as_u64(), Some(total));
    let served = b["entry"].as_array().unwrap().len() as u64;
    assert_eq!(served, total.min(max), "served at the maximum page size");
    assert!(b["link"][0]["url"].as_str().unwrap().contains("_count=250"));

    for ask in ["_count=0", "_summary=count"] {
        let a = w
            .get(
                &format!("/Observation?patient={EMIS_DEMO}&{ask}"),
                Some(&token),
            )
            .await;
        assert_eq!(a.status, 200, "{ask}: {}", String::from_utf8_lossy(&a.body));
        let b = a.json();
        assert_eq!(b["total"].as_u64(), Some(total), "{ask}");
        assert!(b.get("entry").is_none(), "{ask}: the count only");
        let relations: Vec<&str> = b["link"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["relation"].as_str().unwrap())
            .collect();
        assert_eq!(relations, ["self"], "{ask}: nothing to page through");
    }

    let a = w
        .get(
            &format!("/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{EMIS_DEMO}&_count=1"),
            Some(&token),
        )
        .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let b = a.json();
    assert_eq!(b["total"], 1);
    assert_eq!(b["entry"][0]["resource"]["id"], EMIS_DEMO);
}

/// SMART discovery (fhir-kit-client, the SMART JS client) finds the token endpoint in
/// the CapabilityStatement's oauth-uris extension.
#[tokio::test]
async fn discovery_finds_the_token_endpoint_where_smart_clients_look() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    let metadata = w.get("/metadata", Some(&token)).await.json();
    let security = &metadata["rest"][0]["security"];
    let oauth = security["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
        })
        .expect("an oauth-uris extension");
    assert_eq!(oauth["extension"][0]["url"], "token");
    assert_eq!(
        oauth["extension"][0]["valueUri"].as_str(),
        Some(w.manifest().token_url.as_str())
    );
    // And the SMART configuration, below the FHIR base as at the origin.
    let smart = w.get("/.well-known/smart-configuration", None).await;
    assert_eq!(
        smart.status,
        200,
        "{}",
        String::from_utf8_lossy(&smart.body)
    );
    let smart = smart.json();
    assert_eq!(
        smart["token_endpoint"].as_str(),
        Some(w.manifest().token_url.as_str())
    );
    assert_eq!(
        smart["token_endpoint_auth_methods_supported"],
        serde_json::json!(["private_key_jwt"])
    );
    assert_eq!(
        smart["grant_types_supported"],
        serde_json::json!(["client_credentials"])
    );
}

/// `code` finds entries by what they record, by the SNOMED CT coding or by the GP
/// system's original one, on every GP system.
#[tokio::test]
async fn searches_find_entries_by_code() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    for system in ["emis", "tpp", "vision", "microtest"] {
        let nhs = w.ordinary_patient(system, "demo-consult");
        let all = w
            .get(
                &format!("/Observation?patient={nhs}&_count=250"),
                Some(&token),
            )
            .await
            .json();
        let entries = all["entry"].as_array().unwrap();
        let first = &entries[0]["resource"];
        // The SNOMED CT coding and the original one beside it, if any.
        for coding in first["code"]["coding"].as_array().unwrap().iter().take(2) {
            let (sys, code) = (
                coding["system"].as_str().unwrap(),
                coding["code"].as_str().unwrap(),
            );
            let found = w
                .get(
                    &format!(
                        "/Observation?patient={nhs}&_count=250&code={}",
                        gp_fhir::search::percent_encode(&format!("{sys}|{code}"))
                    ),
                    Some(&token),
                )
                .await;
            assert_eq!(
                found.status,
                200,
                "{system}: {}",
                String::from_utf8_lossy(&found.body)
            );
            let found = found.json();
            let ids: Vec<&str> = found["entry"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["resource"]["id"].as_str().unwrap())
                .collect();
            assert!(
                ids.contains(&first["id"].as_str().unwrap()),
                "{system}: {sys}|{code}"
            );
            let expected = entries
                .iter()
                .filter(|e| {
                    e["resource"]["code"]["coding"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|c| c["system"] == sys && c["code"] == code)
                })
                .count();
            assert_eq!(
                ids.len(),
                expected,
                "{system}: {sys}|{code} finds exactly those"
            );
        }
        let none = w
            .get(
                &format!("/Observation?patient={nhs}&code=http://snomed.info/sct|1"),
                Some(&token),
            )
            .await;
        assert_eq!(
            none.status,
            200,
            "{system}: {}",
            String::from_utf8_lossy(&none.body)
        );
        assert_eq!(none.json()["total"], 0, "{system}");
        // Four requests a system: within demo-consult's 5 a second.
        tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    }
}

/// `Patient.managingOrganization` resolves: the practice, to a supplier paired with it
/// and holding system/Organization.r.
#[tokio::test]
async fn a_patients_practice_is_read_through_its_reference() {
    let w = World::start().await;
    let consult = w.token("demo-consult").await;
    let patient = w
        .get(&format!("/Patient/{EMIS_DEMO}"), Some(&consult))
        .await
        .json();
    let reference = patient["managingOrganization"]["reference"]
        .as_str()
        .unwrap()
        .to_owned();
    let ods = reference.strip_prefix("Organization/").unwrap().to_owned();
    let a = w.get(&format!("/{reference}"), Some(&consult)).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let org = a.json();
    assert_eq!(org["resourceType"], "Organization");
    assert_eq!(org["id"], ods.as_str());
    assert_eq!(
        org["meta"]["profile"][0],
        "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Organization"
    );
    assert_eq!(
        org["identifier"][0]["system"],
        "https://fhir.nhs.uk/Id/ods-organization-code"
    );
    assert_eq!(org["identifier"][0]["value"], ods.as_str());
    assert!(org["name"].as_str().is_some_and(|n| !n.is_empty()));

    // Without the scope: 403; an unknown or unpaired practice: 404, alike.
    let booking = w.token("demo-booking").await;
    assert_eq!(
        w.get(&format!("/{reference}"), Some(&booking)).await.status,
        403
    );
    let unknown = w.get("/Organization/Z99999", Some(&consult)).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.spine_code(), "RESOURCE_NOT_FOUND");
    // demo-monitoring is paired with the "north" practices only.
    let monitoring = w.token("demo-monitoring").await;
    let paired = w.practices_of("demo-monitoring");
    let unpaired = w
        .manifest()
        .practices
        .iter()
        .map(|p| p.ods.clone())
        .find(|o| !paired.contains(o))
        .unwrap();
    let refused = w
        .get(&format!("/Organization/{unpaired}"), Some(&monitoring))
        .await;
    assert_eq!(refused.status, 404, "unpaired looks like unknown");
    assert_eq!(refused.spine_code(), "RESOURCE_NOT_FOUND");
    let own = w
        .get(&format!("/Organization/{}", paired[0]), Some(&monitoring))
        .await;
    assert_eq!(own.status, 200);
}

/// The demo patient of each GP system.
const DEMO_PATIENTS: [&str; 4] = ["9000000009", "9690937278", "9658218865", "9912003888"];

/// "Dr Amir Khan": a Practitioner's official name as references display it.
fn shown_name(p: &serde_json::Value) -> String {
    let n = &p["name"][0];
    let words = n["prefix"]
        .as_array()
        .into_iter()
        .chain(n["given"].as_array())
        .flatten()
        .filter_map(|v| v.as_str())
        .chain(n["family"].as_str());
    words.collect::<Vec<_>>().join(" ")
}

/// Every `Practitioner/{id}` reference in `resource`, with its display.
fn practitioner_refs(resource: &serde_json::Value, out: &mut Vec<(String, Option<String>)>) {
    let refs = gp_e2e::references(resource).into_iter();
    out.extend(refs.filter(|(r, _)| r.starts_with("Practitioner/")));
}

/// `Patient.generalPractitioner` and every author, performer, recorder and participant
/// in the record resolve: `GET /Practitioner/{id}` answers the person the reference names
/// (on every GP system), and each reference displays their name, as the practice's
/// reference displays its name.
#[tokio::test]
async fn every_practitioner_a_record_names_is_read_through_its_reference() {
    let w = World::start().await;
    let consult = w.token("demo-consult").await;
    for nhs in DEMO_PATIENTS {
        let patient = w
            .get(&format!("/Patient/{nhs}"), Some(&consult))
            .await
            .json();
        let org = &patient["managingOrganization"];
        let practice = w
            .get(
                &format!("/{}", org["reference"].as_str().unwrap()),
                Some(&consult),
            )
            .await
            .json();
        assert_eq!(
            org["display"], practice["name"],
            "{nhs}: the practice is named"
        );
        let mut refs = Vec::new();
        practitioner_refs(&patient, &mut refs);
        let usual = refs.first().cloned().expect("a usual GP");
        for kind in [
            "AllergyIntolerance",
            "MedicationStatement",
            "Condition",
            "Observation",
            "Immunization",
            "Encounter",
        ] {
            // Within demo-consult's 5 requests a second.
            tokio::time::sleep(std::time::Duration::from_millis(220)).await;
            let found = w
                .get(&format!("/{kind}?patient={nhs}&_count=250"), Some(&consult))
                .await;
            assert_eq!(
                found.status,
                200,
                "{nhs}: {}",
                String::from_utf8_lossy(&found.body)
            );
            practitioner_refs(&found.json(), &mut refs);
        }
        let mut people: Vec<(String, Option<String>)> = Vec::new();
        for r in refs {
            if !people.iter().any(|p| p.0 == r.0) {
                people.push(r);
            }
        }
        assert!(
            people.iter().any(|(r, _)| *r != usual.0),
            "{nhs}: the record names someone besides the usual GP: {people:?}"
        );
        for (reference, display) in &people {
            tokio::time::sleep(std::time::Duration::from_millis(220)).await;
            let a = w.get(&format!("/{reference}"), Some(&consult)).await;
            assert_eq!(
                a.status,
                200,
                "{nhs}: {reference}: {}",
                String::from_utf8_lossy(&a.body)
            );
            let person = a.json();
            assert_eq!(person["resourceType"], "Practitioner");
            assert_eq!(
                format!("Practitioner/{}", person["id"].as_str().unwrap()),
                *reference
            );
            assert_eq!(
                person["meta"]["profile"][0],
                "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Practitioner"
            );
            assert_eq!(
                display.as_deref(),
                Some(shown_name(&person).as_str()),
                "{nhs}: {reference} displays the person's name"
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
    }
    w.sandbox.shutdown().await;
}

/// A Practitioner is released under the same rules as the practice: the scope
/// `system/Practitioner.r` (else 403), and a pairing with their practice (else 404, like
/// an id no answer gave).
#[tokio::test]
async fn practitioners_follow_the_pairing_and_scope_rules() {
    let w = World::start().await;
    let consult = w.token("demo-consult").await;
    let monitoring = w.token("demo-monitoring").await;
    let booking = w.token("demo-booking").await;
    let gp_of = |patient: serde_json::Value| {
        patient["generalPractitioner"][0]["reference"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    for system in ["emis", "tpp", "vision", "microtest"] {
        let unpaired = w.unpaired_patient(system, "demo-monitoring");
        let own = w.ordinary_patient(system, "demo-monitoring");
        let theirs = gp_of(
            w.get(&format!("/Patient/{unpaired}"), Some(&consult))
                .await
                .json(),
        );
        let ours = gp_of(
            w.get(&format!("/Patient/{own}"), Some(&monitoring))
                .await
                .json(),
        );
        assert_eq!(
            w.get(&format!("/{theirs}"), Some(&consult)).await.status,
            200
        );
        let refused = w.get(&format!("/{theirs}"), Some(&monitoring)).await;
        assert_eq!(refused.status, 404, "{system}: unpaired looks like unknown");
        assert_eq!(refused.spine_code(), "RESOURCE_NOT_FOUND");
        assert_eq!(
            w.get(&format!("/{ours}"), Some(&monitoring)).await.status,
            200,
            "{system}"
        );
        let no_scope = w.get(&format!("/{ours}"), Some(&booking)).await;
        assert_eq!(no_scope.status, 403, "{system}");
        assert_eq!(no_scope.spine_code(), "ACCESS_DENIED");
        tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    }
    let unknown = w.get("/Practitioner/no-such-person", Some(&consult)).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.spine_code(), "RESOURCE_NOT_FOUND");
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn sensitive_and_dissenting_patients_are_withheld() {
    let w = World::start().await;
    let practice = w.practice_of(EMIS_DEMO);
    let token = w.token("demo-monitoring").await;
    let sensitive = w.patient(&practice, "sensitive");
    let a = w.get(&format!("/Patient/{sensitive}"), Some(&token)).await;
    assert_eq!(
        a.status, 404,
        "sensitive patients do not exist for third parties"
    );
    let a = w
        .get(
            &format!("/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{sensitive}"),
            Some(&token),
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["total"], 0);
    let dissent = w.patient(&practice, "dissent");
    let a = w.get(&format!("/Patient/{dissent}"), Some(&token)).await;
    assert_eq!(a.status, 403);
    assert_eq!(a.spine_code(), "NO_PATIENT_CONSENT");
    let a = w
        .get(&format!("/Observation?patient={dissent}"), Some(&token))
        .await;
    assert_eq!(a.status, 403);
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn a_suspended_suppliers_live_token_stops_working_on_reload() {
    let w = World::start().await;
    let token = w.token("demo-monitoring").await;
    assert_eq!(
        w.get(&format!("/Patient/{EMIS_DEMO}"), Some(&token))
            .await
            .status,
        200
    );
    let auth = w.sandbox.app.auth.as_ref().unwrap();
    let dir = std::env::temp_dir().join(format!("gp-e2e-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("suppliers.toml");
    // The sandbox's registry with every supplier suspended.
    let current = gp_gateway::sandbox::current_suppliers(&w.sandbox).unwrap();
    std::fs::write(
        &path,
        current.replace("status = \"active\"", "status = \"suspended\""),
    )
    .unwrap();
    auth.reload_from(&path).unwrap();
    let a = w.get(&format!("/Patient/{EMIS_DEMO}"), Some(&token)).await;
    assert_eq!(a.status, 403, "{}", String::from_utf8_lossy(&a.body));
    assert!(a.diagnostics().contains("suspended"), "{}", a.diagnostics());
    // An invalid registry is refused and the running one kept.
    std::fs::write(&path, "[[suppliers]]\nclient_id = 3\n").unwrap();
    assert!(auth.reload_from(&path).is_err());
    assert_eq!(
        w.get(&format!("/Patient/{EMIS_DEMO}"), Some(&token))
            .await
            .status,
        403
    );
    std::fs::remove_dir_all(&dir).ok();
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn links_never_follow_an_untrusted_callers_forwarding_headers() {
    let w = World::start().await;
    let token = w.token("demo-monitoring").await;
    let url = format!(
        "{}/Observation?patient={EMIS_DEMO}&_count=1",
        w.manifest().base_url
    );
    let auth = format!("Bearer {token}");
    let a = w
        .send(
            "GET",
            &url,
            &[
                ("authorization", &auth),
                ("x-forwarded-host", "evil.example"),
                ("x-forwarded-proto", "https"),
                ("forwarded", "host=evil.example;proto=https"),
            ],
            b"",
        )
        .await;
    assert_eq!(a.status, 200);
    let text = String::from_utf8_lossy(&a.body).to_string();
    assert!(
        !text.contains("evil.example"),
        "the sandbox trusts no proxy"
    );
    for l in a.json()["link"].as_array().unwrap() {
        assert!(
            l["url"]
                .as_str()
                .unwrap()
                .starts_with(&w.manifest().base_url)
        );
    }
    w.sandbox.shutdown().await;
}

/// An entry another supplier was answered, read by a supplier not paired with the
/// patient's practice, is 404 like an id never answered: the refusal names neither the
/// patient nor their NHS number (a GP system's entry ids do not say whose they are, and
/// the refusal must not either).
#[tokio::test]
async fn an_entry_read_never_names_a_patient_the_caller_may_not_see() {
    let w = World::start().await;
    let consult = w.token("demo-consult").await;
    let monitoring = w.token("demo-monitoring").await;
    let consult_practices = w.practices_of("demo-consult");
    let nhs = w
        .manifest()
        .patients
        .iter()
        .find(|p| {
            p.flags.is_empty()
                && consult_practices.contains(&p.practice)
                && !w.practices_of("demo-monitoring").contains(&p.practice)
        })
        .map(|p| p.nhs_number.clone())
        .expect("a patient demo-consult reaches and demo-monitoring does not");
    let search = w
        .get(&format!("/Observation?patient={nhs}"), Some(&consult))
        .await;
    assert_eq!(search.status, 200);
    let bundle = search.json();
    let id = bundle["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = w
        .get(&format!("/Observation/{id}"), Some(&monitoring))
        .await;
    assert_eq!(a.status, 404, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.spine_code(), "RESOURCE_NOT_FOUND");
    let body = String::from_utf8_lossy(&a.body);
    assert!(
        !body.contains(&nhs),
        "the refusal names the patient: {body}"
    );
    let never = w
        .get("/Observation/never-answered", Some(&monitoring))
        .await;
    let diagnostics = |b: &serde_json::Value| b["issue"][0]["diagnostics"].clone();
    assert_eq!(
        diagnostics(&a.json())
            .as_str()
            .map(|d| d.replace(&id, "{id}")),
        diagnostics(&never.json())
            .as_str()
            .map(|d| d.replace("never-answered", "{id}")),
        "withheld and unknown read alike"
    );
}
