//! Patient updates in every form FHIR clients send them (issue 22 §6), end to end: the
//! whole resource (`PUT`, fhirpy's `save()`, medplum's `updateResource`), JSON Merge Patch
//! (fhirpy's `patch()`: a partial resource), FHIRPath Patch (HAPI's `Parameters`) and JSON
//! Patch reach every GP system's record; each refusal names what is wrong and changes
//! nothing. Also the conditional create fhirpy sends (`POST /Observation?identifier=…`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gp_e2e::{Answer, World};
use serde_json::{Value, json};

const SYSTEMS: [&str; 4] = ["emis", "tpp", "vision", "microtest"];
const LANGUAGE: &str = "https://fhir.hl7.org.uk/CodeSystem/UKCore-HumanLanguage";

fn body(a: &Answer) -> String {
    String::from_utf8_lossy(&a.body).into_owned()
}

/// The `expression`s of an OperationOutcome answer.
fn expressions(a: &Answer) -> Vec<String> {
    a.json()["issue"][0]["expression"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str().map(str::to_owned))
        .collect()
}

async fn read(w: &World, token: &str, nhs: &str) -> (Value, String) {
    let a = w
        .call("GET", &format!("/Patient/{nhs}"), token, &[], b"")
        .await;
    assert_eq!(a.status, 200, "{}", body(&a));
    (a.json(), a.header("etag").unwrap().to_owned())
}

/// Sends `method` with `body` to the patient, as `content_type`, with `If-Match` when given.
async fn change(
    w: &World,
    token: &str,
    method: &str,
    nhs: &str,
    content_type: &str,
    if_match: Option<&str>,
    body: &Value,
) -> Answer {
    let mut headers = vec![("content-type", content_type)];
    headers.extend(if_match.map(|e| ("if-match", e)));
    let bytes = serde_json::to_vec(body).unwrap();
    w.call(method, &format!("/Patient/{nhs}"), token, &headers, &bytes)
        .await
}

/// An update answer: 200, the Patient, and an ETag quoting its meta.versionId.
fn updated(a: &Answer, what: &str) -> Value {
    assert_eq!(a.status, 200, "{what}: {}", body(a));
    let p = a.json();
    let version = p["meta"]["versionId"].as_str().unwrap();
    assert_eq!(
        a.header("etag"),
        Some(format!("W/\"{version}\"").as_str()),
        "{what}"
    );
    p
}

#[tokio::test]
async fn every_update_form_reaches_every_gp_system() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    for system in SYSTEMS {
        let nhs = w.ordinary_patient(system, "demo-consult");

        // PUT: the Patient as read, with a new email, against the version read.
        let (mut p, etag) = read(&w, &token, &nhs).await;
        let email = format!("put.{system}@example.com");
        let mut telecom: Vec<Value> = p["telecom"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t["system"] != "email")
            .collect();
        telecom.push(json!({"system": "email", "value": email}));
        p["telecom"] = Value::Array(telecom);
        let a = change(
            &w,
            &token,
            "PUT",
            &nhs,
            "application/fhir+json",
            Some(&etag),
            &p,
        )
        .await;
        let answered = updated(&a, &format!("{system} PUT"));
        assert_ne!(
            a.header("etag"),
            Some(etag.as_str()),
            "{system}: new version"
        );
        assert_eq!(answered["name"], p["name"], "{system}");
        let stored = w.sandbox.store.patient_by_nhs(&nhs).unwrap();
        assert_eq!(stored.email.as_deref(), Some(email.as_str()), "{system}");

        // PUT without meta and text (server-managed), and without If-Match.
        let (mut p, _) = read(&w, &token, &nhs).await;
        let o = p.as_object_mut().unwrap();
        o.remove("meta");
        o.remove("text");
        o.remove("communication");
        let a = change(&w, &token, "PUT", &nhs, "application/json", None, &p).await;
        updated(&a, &format!("{system} PUT without meta"));
        assert_eq!(
            w.sandbox.store.patient_by_nhs(&nhs).unwrap().language,
            None,
            "{system}: a PUT without communication removes the preferred language"
        );

        // JSON Merge Patch, as fhirpy's patch() sends it: a partial resource.
        let mobile = "07700 900461";
        let (p, etag) = read(&w, &token, &nhs).await;
        let mut telecom: Vec<Value> = p["telecom"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t["use"] != "mobile")
            .collect();
        telecom.push(json!({"system": "phone", "value": mobile, "use": "mobile"}));
        let merge = json!({"resourceType": "Patient", "id": nhs, "telecom": telecom});
        let a = change(
            &w,
            &token,
            "PATCH",
            &nhs,
            "application/fhir+json",
            Some(&etag),
            &merge,
        )
        .await;
        updated(&a, &format!("{system} partial resource"));
        let stored = w.sandbox.store.patient_by_nhs(&nhs).unwrap();
        assert_eq!(stored.mobile.as_deref(), Some(mobile), "{system}");
        assert_eq!(
            stored.email.as_deref(),
            Some(email.as_str()),
            "{system}: kept"
        );

        // application/merge-patch+json: an address, with If-Match: *.
        let merge = json!({"address": [{"use": "home", "line": ["3 Mill Lane"], "city": "Otley", "postalCode": "LS21 1AB"}]});
        let a = change(
            &w,
            &token,
            "PATCH",
            &nhs,
            "application/merge-patch+json",
            Some("*"),
            &merge,
        )
        .await;
        let answered = updated(&a, &format!("{system} merge patch"));
        assert_eq!(answered["address"][0]["postalCode"], "LS21 1AB", "{system}");
        let stored = w.sandbox.store.patient_by_nhs(&nhs).unwrap();
        assert_eq!(stored.address.postcode, "LS21 1AB", "{system}");
        assert_eq!(stored.address.town, "Otley", "{system}");

        // FHIRPath Patch, as HAPI's client sends it.
        let (_, etag) = read(&w, &token, &nhs).await;
        let fhirpath = json!({"resourceType": "Parameters", "parameter": [
            {"name": "operation", "part": [
                {"name": "type", "valueCode": "replace"},
                {"name": "path", "valueString": "Patient.telecom.where(use = 'mobile').value"},
                {"name": "value", "valueString": "07700 900462"}
            ]},
            {"name": "operation", "part": [
                {"name": "type", "valueCode": "add"},
                {"name": "path", "valueString": "Patient"},
                {"name": "name", "valueString": "communication"},
                {"name": "value", "part": [
                    {"name": "language", "valueCodeableConcept": {"coding": [{"system": LANGUAGE, "code": "cy"}]}},
                    {"name": "preferred", "valueBoolean": true}
                ]}
            ]}
        ]});
        let a = change(
            &w,
            &token,
            "PATCH",
            &nhs,
            "application/fhir+json",
            Some(&etag),
            &fhirpath,
        )
        .await;
        updated(&a, &format!("{system} FHIRPath Patch"));
        let stored = w.sandbox.store.patient_by_nhs(&nhs).unwrap();
        assert_eq!(stored.mobile.as_deref(), Some("07700 900462"), "{system}");
        assert_eq!(stored.language.as_deref(), Some("cy"), "{system}");

        // And what a later read gives is what was written.
        let (p, _) = read(&w, &token, &nhs).await;
        assert_eq!(
            p["communication"][0]["language"]["coding"][0]["code"], "cy",
            "{system}"
        );
    }
}

#[tokio::test]
async fn refused_updates_name_what_is_wrong_and_change_nothing() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    for system in SYSTEMS {
        let nhs = w.ordinary_patient(system, "demo-consult");
        let patient = format!("/Patient/{nhs}");
        let before = w.sandbox.store.patient_by_nhs(&nhs).unwrap();
        let (current, etag) = read(&w, &token, &nhs).await;
        let with = |f: &dyn Fn(&mut Value)| {
            let mut v = current.clone();
            f(&mut v);
            serde_json::to_vec(&v).unwrap()
        };
        let new_email = |v: &mut Value| {
            v["telecom"] = json!([{"system": "email", "value": "refused@example.com"}]);
        };
        let fhirpath = |path: &str| {
            serde_json::to_vec(&json!({"resourceType": "Parameters", "parameter": [
                {"name": "operation", "part": [
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": path},
                    {"name": "value", "valueString": "Hacker"}
                ]}
            ]}))
            .unwrap()
        };
        let merge = |v: Value| serde_json::to_vec(&v).unwrap();
        let stale = "W/\"1999-01-01T00.3A00.3A00\"";
        // (method, content type, If-Match, body, status, Spine code, expressions)
        type Case<'a> = (
            &'a str,
            &'a str,
            &'a str,
            Vec<u8>,
            u16,
            &'a str,
            Vec<&'a str>,
        );
        let cases: Vec<Case> = vec![
            // PUT: another element changed, or left out.
            (
                "PUT",
                "application/fhir+json",
                &etag,
                with(&|v| {
                    new_email(v);
                    v["name"][0]["family"] = "Hacker".into();
                }),
                422,
                "INVALID_RESOURCE",
                vec!["Patient.name"],
            ),
            (
                "PUT",
                "application/fhir+json",
                &etag,
                with(&|v| {
                    new_email(v);
                    v["birthDate"] = "1901-01-01".into();
                    v["gender"] = "unknown".into();
                    v["meta"]["profile"] = json!(["https://example.com/other"]);
                }),
                422,
                "INVALID_RESOURCE",
                vec![
                    "Patient.birthDate",
                    "Patient.gender",
                    "Patient.meta.profile",
                ],
            ),
            (
                "PUT",
                "application/fhir+json",
                &etag,
                with(&|v| {
                    v.as_object_mut().unwrap().remove("identifier");
                }),
                422,
                "INVALID_RESOURCE",
                vec!["Patient.identifier"],
            ),
            // PUT: a writable element a GP record cannot hold.
            (
                "PUT",
                "application/fhir+json",
                &etag,
                with(&|v| {
                    v["telecom"] = json!([{"system": "fax", "value": "01632 960001"}]);
                }),
                422,
                "INVALID_RESOURCE",
                vec!["Patient.telecom[0].system"],
            ),
            // PUT: stale, wrong id, wrong type, not JSON, not FHIR JSON.
            (
                "PUT",
                "application/fhir+json",
                stale,
                with(&new_email),
                412,
                "PRECONDITION_FAILED",
                vec![],
            ),
            (
                "PUT",
                "application/fhir+json",
                "",
                with(&|v| {
                    new_email(v);
                    v["id"] = "someone-else".into();
                }),
                400,
                "INVALID_VALUE",
                vec![],
            ),
            (
                "PUT",
                "application/fhir+json",
                "",
                with(&|v| {
                    v.as_object_mut().unwrap().remove("id");
                }),
                400,
                "INVALID_VALUE",
                vec![],
            ),
            (
                "PUT",
                "application/fhir+json",
                "",
                with(&|v| v["resourceType"] = "Practitioner".into()),
                400,
                "INVALID_VALUE",
                vec![],
            ),
            (
                "PUT",
                "application/fhir+json",
                "",
                b"{\"resourceType\": \"Patient\",".to_vec(),
                400,
                "INVALID_VALUE",
                vec![],
            ),
            (
                "PUT",
                "application/fhir+xml",
                "",
                with(&new_email),
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                vec![],
            ),
            // Merge patch: another element, a bad postcode, stale, not an object.
            (
                "PATCH",
                "application/merge-patch+json",
                "",
                merge(json!({"birthDate": "1901-01-01"})),
                422,
                "INVALID_RESOURCE",
                vec!["Patient.birthDate"],
            ),
            (
                "PATCH",
                "application/fhir+json",
                "",
                merge(
                    json!({"resourceType": "Patient", "name": null, "telecom": [{"system": "email", "value": "refused@example.com"}]}),
                ),
                422,
                "INVALID_RESOURCE",
                vec!["Patient.name"],
            ),
            (
                "PATCH",
                "application/json",
                "",
                merge(
                    json!({"address": [{"line": ["1 A St"], "city": "Leeds", "postalCode": "NOPE"}]}),
                ),
                422,
                "INVALID_RESOURCE",
                vec!["Patient.address[0].postalCode"],
            ),
            (
                "PATCH",
                "application/merge-patch+json",
                stale,
                merge(json!({"telecom": [{"system": "email", "value": "refused@example.com"}]})),
                412,
                "PRECONDITION_FAILED",
                vec![],
            ),
            (
                "PATCH",
                "application/json",
                "",
                merge(json!([{"op": "remove", "path": "/telecom"}])),
                400,
                "INVALID_VALUE",
                vec![],
            ),
            (
                "PATCH",
                "application/merge-patch+json",
                "",
                b"{\"telecom\": ".to_vec(),
                400,
                "INVALID_VALUE",
                vec![],
            ),
            // FHIRPath Patch: another element, unsupported FHIRPath, malformed, stale.
            (
                "PATCH",
                "application/fhir+json",
                "",
                fhirpath("Patient.name[0].family"),
                422,
                "INVALID_RESOURCE",
                vec!["Patient.name[0].family"],
            ),
            (
                "PATCH",
                "application/fhir+json",
                "",
                fhirpath("Patient.telecom.select(value)"),
                422,
                "INVALID_RESOURCE",
                vec!["Patient.telecom.select(value)"],
            ),
            (
                "PATCH",
                "application/fhir+json",
                "",
                merge(
                    json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [{"name": "type", "valueCode": "upsert"}, {"name": "path", "valueString": "Patient.telecom"}]}]}),
                ),
                400,
                "INVALID_VALUE",
                vec![],
            ),
            (
                "PATCH",
                "application/fhir+json",
                stale,
                fhirpath("Patient.telecom[0].value"),
                412,
                "PRECONDITION_FAILED",
                vec![],
            ),
            // Neither a patch format nor FHIR JSON.
            (
                "PATCH",
                "text/plain",
                "",
                merge(json!({"telecom": []})),
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                vec![],
            ),
        ];
        for (method, content_type, if_match, body_bytes, status, code, expression) in cases {
            let mut headers = vec![("content-type", content_type)];
            if !if_match.is_empty() {
                headers.push(("if-match", if_match));
            }
            let a = w
                .call(method, &patient, &token, &headers, &body_bytes)
                .await;
            let what = format!(
                "{system}: {method} {content_type} {}",
                String::from_utf8_lossy(&body_bytes[..body_bytes.len().min(160)])
            );
            assert_eq!(a.status, status, "{what}: {}", body(&a));
            assert_eq!(a.spine_code(), code, "{what}");
            assert_eq!(expressions(&a), expression, "{what}: {}", a.diagnostics());
            if status == 415 && method == "PATCH" {
                for accepted in [
                    "application/json-patch+json",
                    "application/merge-patch+json",
                    "application/fhir+json",
                ] {
                    assert!(a.diagnostics().contains(accepted), "{}", a.diagnostics());
                }
            }
        }
        assert_eq!(
            w.sandbox.store.patient_by_nhs(&nhs).unwrap(),
            before,
            "{system}: no refused update reached the GP record"
        );
    }
}

/// The scope an update needs is the one PATCH needs (`system/Patient.u`), and the release
/// rules refuse a PUT as they refuse a read.
#[tokio::test]
async fn a_put_needs_the_update_scope_and_passes_the_release_rules() {
    let w = World::start().await;
    let consult = w.token("demo-consult").await;
    let monitoring = w.token("demo-monitoring").await;
    let practice = w.practices_of("demo-monitoring")[0].clone();
    let ordinary = w.patient(&practice, "");
    let dissent = w.patient(&practice, "dissent");
    let before = w.sandbox.store.patient_by_nhs(&ordinary).unwrap();
    let (p, _) = read(&w, &consult, &ordinary).await;
    let a = w
        .call(
            "PUT",
            &format!("/Patient/{ordinary}"),
            &monitoring,
            &[("content-type", "application/fhir+json")],
            &serde_json::to_vec(&p).unwrap(),
        )
        .await;
    assert_eq!(a.status, 403, "{}", body(&a));
    assert!(a.diagnostics().contains("Patient"), "{}", a.diagnostics());
    let mut other = p.clone();
    other["id"] = dissent.clone().into();
    let a = w
        .call(
            "PUT",
            &format!("/Patient/{dissent}"),
            &consult,
            &[("content-type", "application/fhir+json")],
            &serde_json::to_vec(&other).unwrap(),
        )
        .await;
    assert_eq!(
        (a.status, a.spine_code().as_str()),
        (403, "NO_PATIENT_CONSENT")
    );
    assert_eq!(w.sandbox.store.patient_by_nhs(&ordinary).unwrap(), before);
    let metadata = w.call("GET", "/metadata", &consult, &[], b"").await.json();
    let patient = metadata["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Patient")
        .unwrap()
        .clone();
    let interactions: Vec<&str> = patient["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["code"].as_str())
        .collect();
    assert!(interactions.contains(&"update"), "{interactions:?}");
    assert!(interactions.contains(&"patch"), "{interactions:?}");
    let formats = metadata["patchFormat"].to_string();
    for f in [
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/fhir+json",
    ] {
        assert!(formats.contains(f), "{formats}");
    }
}

/// fhirpy's `get_or_create` puts the condition in the query string: the same as
/// `If-None-Exist: identifier=…`.
#[tokio::test]
async fn a_conditional_create_may_name_its_identifier_in_the_query_string() {
    let w = World::start().await;
    let token = w.token("demo-monitoring").await;
    let nhs = w.ordinary_patient("tpp", "demo-monitoring");
    let system = "https://demo-monitoring.example/readings";
    let reading = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "27113001"}]},
        "subject": {"reference": format!("Patient/{nhs}")},
        "effectiveDateTime": "2026-11-20T08:30:00+00:00",
        "valueQuantity": {"value": 70.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}
    });
    let sent = serde_json::to_vec(&reading).unwrap();
    let fhir = ("content-type", "application/fhir+json");
    let condition = format!("identifier={system}%7Cq-1");
    let count = format!("/Observation?patient={nhs}&_summary=count");
    let post = |query: String, headers: Vec<(&'static str, String)>| {
        let w = &w;
        let token = &token;
        let sent = &sent;
        async move {
            let mut all = vec![fhir];
            all.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
            w.call("POST", &format!("/Observation?{query}"), token, &all, sent)
                .await
        }
    };
    let first = post(condition.clone(), vec![]).await;
    assert_eq!(first.status, 201, "{}", body(&first));
    let id = first.json()["id"].as_str().unwrap().to_owned();
    let again = post(condition.clone(), vec![]).await;
    assert_eq!(again.status, 200, "{}", body(&again));
    assert_eq!(again.json()["id"], id.as_str(), "found, not created again");
    // The header and the query string may name the same reading.
    let header = format!("identifier={system}|q-1");
    let both = post(condition.clone(), vec![("if-none-exist", header.clone())]).await;
    assert_eq!(both.status, 200, "{}", body(&both));
    let readings_before = w.call("GET", &count, &token, &[], b"").await.json()["total"].clone();
    for (query, headers) in [
        (
            format!("identifier={system}%7Cq-2"),
            vec![("if-none-exist", header.clone())],
        ),
        ("identifier=q-3".to_owned(), vec![]),
        (
            format!("identifier={system}%7Cq-4&identifier={system}%7Cq-5"),
            vec![],
        ),
        ("code=27113001".to_owned(), vec![]),
    ] {
        let a = post(query.clone(), headers).await;
        assert_eq!(a.status, 400, "{query}: {}", body(&a));
    }
    let readings_after = w.call("GET", &count, &token, &[], b"").await.json()["total"].clone();
    assert_eq!(readings_before, readings_after, "nothing recorded");
}
