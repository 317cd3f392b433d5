//! `POST [base]` with a batch Bundle of reads and searches (issue 22 §8), end to end:
//! each entry is routed, authorised, charged to the rate limit and audited as the
//! request it stands for; a refused entry answers in its place, the batch goes on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gp_e2e::{Answer, World};
use serde_json::{Value, json};

const FHIR_JSON: (&str, &str) = ("content-type", "application/fhir+json");

async fn post_batch(w: &World, token: &str, bundle: &Value, request_id: &str) -> Answer {
    w.call(
        "POST",
        "",
        token,
        &[FHIR_JSON, ("x-request-id", request_id)],
        &serde_json::to_vec(bundle).unwrap(),
    )
    .await
}

fn get(url: &str) -> Value {
    json!({ "request": { "method": "GET", "url": url } })
}

fn batch(entries: Vec<Value>) -> Value {
    json!({ "resourceType": "Bundle", "type": "batch", "entry": entries })
}

fn status(entry: &Value) -> &str {
    entry["response"]["status"].as_str().unwrap()
}

fn spine_code(entry: &Value) -> &str {
    entry["response"]["outcome"]["issue"][0]["details"]["coding"][0]["code"]
        .as_str()
        .unwrap_or_default()
}

/// The audit rows of request `request_id`, once the trail has indexed `at_least` of them.
async fn audit_rows(
    w: &World,
    request_id: &str,
    at_least: usize,
) -> Vec<gp_gateway::audit::AuditRecord> {
    for _ in 0..40 {
        let rows = w
            .sandbox
            .app
            .audit
            .query(gp_gateway::audit::AuditQuery {
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        let rows: Vec<_> = rows
            .into_iter()
            .filter(|r| r.request_id == request_id)
            .collect();
        if rows.len() >= at_least {
            return rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("fewer than {at_least} audit rows for {request_id}");
}

#[tokio::test]
async fn each_entry_is_served_authorised_and_audited_as_its_own_request() {
    let w = World::start().await;
    // demo-monitoring: Patient.rs and Observation.crs, paired with the north practices.
    let token = w.token("demo-monitoring").await;
    let base = w.manifest().base_url.clone();
    let emis = w.ordinary_patient("emis", "demo-monitoring");
    let tpp = w.ordinary_patient("tpp", "demo-monitoring");
    let south = w
        .manifest()
        .patients
        .iter()
        .find(|p| p.flags.is_empty() && !w.practices_of("demo-monitoring").contains(&p.practice))
        .unwrap()
        .nhs_number
        .clone();
    let request_id = uuid::Uuid::new_v4().to_string();
    let bundle = batch(vec![
        get(&format!("Patient/{emis}")),
        get(&format!("Observation?patient={tpp}&_sort=-date&_count=2")),
        get(&format!("{base}/Observation?patient={emis}&_summary=count")),
        get(&format!("Condition?patient={emis}")),
        get(&format!("Patient/{south}")),
        json!({ "request": { "method": "POST", "url": "Observation" }, "resource": { "resourceType": "Observation" } }),
        get("Frobnicate/1"),
        get(&format!("Observation?patient={emis}&onset=2020")),
        get(&format!("https://elsewhere.example/fhir/Patient/{emis}")),
    ]);
    let a = post_batch(&w, &token, &bundle, &request_id).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert!(
        a.header("ratelimit").is_some(),
        "the state after the last entry"
    );
    let b = a.json();
    assert_eq!(b["resourceType"], "Bundle");
    assert_eq!(b["type"], "batch-response");
    let entries = b["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 9, "one answer per entry, in order");

    // A read: the resource and its ETag.
    assert_eq!(status(&entries[0]), "200 OK");
    assert_eq!(entries[0]["resource"]["id"], emis.as_str());
    assert!(
        entries[0]["response"]["etag"]
            .as_str()
            .unwrap()
            .starts_with("W/\"")
    );
    // Searches: searchsets, their parameters honoured.
    assert_eq!(status(&entries[1]), "200 OK");
    assert_eq!(entries[1]["resource"]["type"], "searchset");
    assert_eq!(entries[1]["resource"]["entry"].as_array().unwrap().len(), 2);
    assert!(entries[2]["resource"]["total"].as_u64().unwrap() > 0);
    assert!(
        entries[2]["resource"].get("entry").is_none(),
        "_summary=count"
    );
    // Refusals, each its own, with its OperationOutcome: scope, pairing, a write, an
    // unknown type, an unknown parameter, another server.
    for (i, code, want) in [
        (3, 403, "ACCESS_DENIED"),
        (4, 404, "RESOURCE_NOT_FOUND"),
        (5, 422, "INVALID_RESOURCE"),
        (6, 404, "UNSUPPORTED_SERVICE"),
        (7, 400, "INVALID_PARAMETER"),
        (8, 400, "INVALID_VALUE"),
    ] {
        let e = &entries[i];
        assert!(status(e).starts_with(&code.to_string()), "entry {i}: {e}");
        assert_eq!(spine_code(e), want, "entry {i}: {e}");
        assert!(e.get("resource").is_none(), "entry {i}");
    }
    assert!(
        entries[5]["response"]["outcome"]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("reads and searches only")
    );

    // The trail: the batch itself, and every entry as the interaction it was.
    let rows = audit_rows(&w, &request_id, 10).await;
    let row = |interaction: &str, resource_type: &str, status: u16| {
        rows.iter().any(|r| {
            r.interaction == interaction
                && r.resource_type.as_deref() == Some(resource_type)
                && r.status == status
                && r.supplier.as_deref() == Some("demo-monitoring")
        })
    };
    assert!(row("batch", "Bundle", 200), "{rows:?}");
    assert!(row("read", "Patient", 200), "{rows:?}");
    assert!(row("search-type", "Observation", 200), "{rows:?}");
    assert!(row("search-type", "Condition", 403), "{rows:?}");
    assert!(row("read", "Patient", 404), "{rows:?}");
    assert!(
        rows.iter()
            .any(|r| r.status == 403 && r.patient.as_deref() == Some(emis.as_str())),
        "the refused entry names its patient"
    );
    assert_eq!(rows.len(), 10, "the batch and its nine entries: {rows:?}");
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn a_batch_is_refused_whole_only_when_it_is_not_a_batch_of_reads() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    let id = || uuid::Uuid::new_v4().to_string();
    let transaction = json!({ "resourceType": "Bundle", "type": "transaction",
        "entry": [get("Patient/9000000009")] });
    let a = post_batch(&w, &token, &transaction, &id()).await;
    assert_eq!(a.status, 422, "{}", String::from_utf8_lossy(&a.body));
    assert!(a.diagnostics().contains("reads and searches only"));
    let collection = json!({ "resourceType": "Bundle", "type": "collection" });
    assert_eq!(post_batch(&w, &token, &collection, &id()).await.status, 422);
    let many = batch((0..101).map(|_| get("Patient/9000000009")).collect());
    let a = post_batch(&w, &token, &many, &id()).await;
    assert_eq!(a.status, 413, "{}", String::from_utf8_lossy(&a.body));
    assert!(a.diagnostics().contains("at most 100"));
    let patient = json!({ "resourceType": "Patient" });
    assert_eq!(post_batch(&w, &token, &patient, &id()).await.status, 400);
    // An empty batch is answered empty.
    let empty = post_batch(&w, &token, &batch(Vec::new()), &id()).await;
    assert_eq!(empty.status, 200);
    assert_eq!(empty.json()["type"], "batch-response");
    // Without a token nothing is served; the base answers POST only.
    let url = w.manifest().base_url.clone();
    let anonymous = w
        .send(
            "POST",
            &url,
            &[FHIR_JSON],
            &serde_json::to_vec(&batch(vec![get("Patient/9000000009")])).unwrap(),
        )
        .await;
    assert_eq!(anonymous.status, 401);
    let read_base = w.get("", Some(&token)).await;
    assert_eq!(read_base.status, 405);
    assert_eq!(read_base.header("allow"), Some("POST"));
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn every_entry_counts_against_the_rate_limit_and_if_none_match_answers_304() {
    let w = World::start().await;
    // demo-consult: 5 a second, bursts of 10. The batch costs one, each entry one.
    let token = w.token("demo-consult").await;
    let read = w.call("GET", "/Patient/9000000009", &token, &[], b"").await;
    let etag = read.header("etag").unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await; // a full bucket
    let mut entries = vec![
        json!({ "request": { "method": "GET", "url": "Patient/9000000009", "ifNoneMatch": etag } }),
    ];
    entries.extend((0..8).map(|_| get("Patient/9000000009")));
    let a = post_batch(
        &w,
        &token,
        &batch(entries),
        &uuid::Uuid::new_v4().to_string(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let b = a.json();
    let entries = b["entry"].as_array().unwrap();
    assert_eq!(status(&entries[0]), "304 Not Modified");
    assert!(entries[0].get("resource").is_none());
    assert!(entries[1..].iter().all(|e| status(e) == "200 OK"), "{b}");
    let ratelimit = a.header("ratelimit").unwrap_or_default().to_owned();
    assert!(
        ratelimit.contains("r=0"),
        "ten requests of ten: {ratelimit}"
    );

    // A batch that does not fit what is left (three refilled, one spent on the batch
    // itself): refused whole, with when it will fit.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let url = w.manifest().base_url.clone();
    let auth = format!("Bearer {token}");
    let five =
        serde_json::to_vec(&batch((0..5).map(|_| get("Patient/9000000009")).collect())).unwrap();
    let a = w
        .send("POST", &url, &[FHIR_JSON, ("authorization", &auth)], &five)
        .await;
    assert_eq!(a.status, 429, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.spine_code(), "TOO_MANY_REQUESTS");
    assert!(
        a.diagnostics().contains("batch of 5 entries"),
        "{}",
        a.diagnostics()
    );
    assert!(a.header("retry-after").is_some());

    // One that never fits at once: split it.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let ten = batch((0..10).map(|_| get("Patient/9000000009")).collect());
    let a = post_batch(&w, &token, &ten, &uuid::Uuid::new_v4().to_string()).await;
    assert_eq!(a.status, 413, "{}", String::from_utf8_lossy(&a.body));
    assert!(a.diagnostics().contains("at most 9"), "{}", a.diagnostics());
    w.sandbox.shutdown().await;
}

/// A batch entry's search takes `_include` as the search itself does: what the matches
/// refer to comes in as `include`, and an include outside the scopes refuses that
/// entry alone (403 naming the scope).
#[tokio::test]
async fn a_batch_entrys_search_includes_within_the_scopes_of_the_caller() {
    let w = World::start().await;
    let token = w.token("demo-monitoring").await;
    let nhs = w.ordinary_patient("tpp", "demo-monitoring");
    let bundle = batch(vec![
        get(&format!(
            "Observation?patient={nhs}&_count=5&_include=Observation:performer"
        )),
        get(&format!(
            "Observation?patient={nhs}&_count=5&_include=Observation:encounter"
        )),
    ]);
    let a = post_batch(&w, &token, &bundle, &uuid::Uuid::new_v4().to_string()).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let answer = a.json();
    let entries = answer["entry"].as_array().unwrap();
    assert_eq!(status(&entries[0]), "200 OK");
    let inner = entries[0]["resource"]["entry"].as_array().unwrap();
    let included: Vec<&Value> = inner
        .iter()
        .filter(|e| e["search"]["mode"] == "include")
        .collect();
    assert!(!included.is_empty(), "{:#}", entries[0]);
    assert!(
        included
            .iter()
            .all(|e| e["resource"]["resourceType"] == "Practitioner")
    );
    assert_eq!(status(&entries[1]), "403 Forbidden", "{:#}", entries[1]);
    assert!(
        entries[1]["response"]["outcome"]
            .to_string()
            .contains("system/Encounter.r"),
        "{:#}",
        entries[1]
    );
    w.sandbox.shutdown().await;
}
