//! The audit trail end to end: every request is recorded before its answer leaves, an
//! operator can search it as FHIR AuditEvents, and without it no patient data is released.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gp_e2e::World;
use gp_gateway::audit::{AuditBackend, AuditConfig};
use serde_json::Value;

fn events(bundle: &Value) -> Vec<&Value> {
    bundle["entry"]
        .as_array()
        .map(|e| e.iter().map(|x| &x["resource"]).collect())
        .unwrap_or_default()
}

fn agent(e: &Value) -> &str {
    e["agent"][0]["who"]["identifier"]["value"]
        .as_str()
        .unwrap_or("")
}

#[tokio::test]
async fn every_request_is_audited_and_an_operator_searches_the_trail() {
    let w = World::start().await;
    let consult = w.token("demo-consult").await;
    let monitoring = w.token("demo-monitoring").await;
    let operator = w.token("demo-operator").await;
    let nhs = w.ordinary_patient("emis", "demo-monitoring");
    let rid = "6f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b";
    let a = w
        .call(
            "GET",
            &format!("/Patient/{nhs}"),
            &consult,
            &[("x-request-id", rid)],
            b"",
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        w.call(
            "GET",
            &format!("/Observation?patient={nhs}"),
            &monitoring,
            &[],
            b""
        )
        .await
        .status,
        200
    );
    let refused = w
        .call(
            "GET",
            &format!("/Condition?patient={nhs}"),
            &monitoring,
            &[],
            b"",
        )
        .await;
    assert_eq!(refused.status, 403);

    let a = w
        .call(
            "GET",
            &format!("/AuditEvent?patient={nhs}"),
            &operator,
            &[],
            b"",
        )
        .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let bundle = a.json();
    let found = events(&bundle);
    assert_eq!(found.len(), 3, "{bundle:#}");
    // Most recent first: the refusal, the search, the read.
    assert_eq!(agent(found[0]), "demo-monitoring");
    assert_eq!(found[0]["outcome"], "4");
    assert!(
        found[0]["outcomeDesc"]
            .as_str()
            .unwrap()
            .contains("ACCESS_DENIED")
    );
    assert_eq!(found[1]["subtype"][0]["code"], "search-type");
    assert_eq!(agent(found[2]), "demo-consult");
    assert_eq!(found[2]["action"], "R");
    assert_eq!(found[2]["outcome"], "0");
    let entities = found[2]["entity"].as_array().unwrap();
    assert!(
        entities
            .iter()
            .any(|e| e["what"]["identifier"]["value"] == rid),
        "request id kept"
    );
    assert!(
        entities
            .iter()
            .any(|e| e["what"]["reference"] == format!("Patient/{nhs}"))
    );
    assert!(
        entities
            .iter()
            .any(|e| e["what"]["identifier"]["value"] == w.practice_of(&nhs)),
        "practice kept"
    );
    let body = String::from_utf8_lossy(&a.body);
    assert!(!body.contains(&consult), "tokens never reach the trail");

    // The operator narrows by agent; suppliers may not search the trail at all.
    let mine = w
        .call(
            "GET",
            "/AuditEvent?agent=demo-consult&date=ge2020-01-01",
            &operator,
            &[],
            b"",
        )
        .await
        .json();
    assert!(events(&mine).iter().all(|e| agent(e) == "demo-consult"));
    assert!(!events(&mine).is_empty());
    let a = w
        .call(
            "GET",
            &format!("/AuditEvent?patient={nhs}"),
            &consult,
            &[],
            b"",
        )
        .await;
    assert_eq!(a.status, 403);
    // The patient-facing view: who accessed the record, by name, successful accesses only,
    // nothing internal.
    let a = w
        .call(
            "GET",
            &format!("/Patient/{nhs}/$access-log"),
            &operator,
            &[],
            b"",
        )
        .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let log = a.json();
    assert_eq!(log["type"], "collection");
    let who: Vec<&str> = events(&log)
        .iter()
        .map(|e| e["agent"][0]["who"]["display"].as_str().unwrap())
        .collect();
    assert_eq!(
        who,
        [
            "Demo Remote Monitoring plc (sandbox)",
            "Demo Online Consult (sandbox)"
        ],
        "the refused request and the operator's own searches are not accesses"
    );
    assert_eq!(events(&log)[1]["outcomeDesc"], "read your Patient");
    let text = String::from_utf8_lossy(&a.body);
    assert!(
        !text.contains(rid) && !text.contains("replica"),
        "nothing internal: {text}"
    );
    let a = w
        .call(
            "GET",
            &format!("/Patient/{nhs}/$access-log"),
            &consult,
            &[],
            b"",
        )
        .await;
    assert_eq!(a.status, 403, "needs system/AuditEvent.r");

    // Token requests are in the trail too (one per token above).
    let all = w
        .call("GET", "/AuditEvent?_count=1000", &operator, &[], b"")
        .await
        .json();
    let tokens = events(&all)
        .iter()
        .filter(|e| e["subtype"][0]["code"] == "token")
        .count();
    assert!(tokens >= 3, "{tokens}");
}

/// Posts the token request `body` with `request_id`; returns the status and JSON body.
async fn post_token(w: &World, body: &str, request_id: &str) -> (u16, Value) {
    let a = w
        .send(
            "POST",
            &w.manifest().token_url,
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("x-request-id", request_id),
            ],
            body.as_bytes(),
        )
        .await;
    (a.status, a.json())
}

/// The AuditEvent recorded for the request `request_id`.
fn event_of<'a>(events: &[&'a Value], request_id: &str) -> Option<&'a Value> {
    events.iter().copied().find(|e| {
        e["entity"].as_array().is_some_and(|es| {
            es.iter()
                .any(|x| x["what"]["identifier"]["value"] == request_id)
        })
    })
}

fn token_id(e: &Value) -> Option<&str> {
    e["entity"].as_array()?.iter().find_map(|x| {
        let id = &x["what"]["identifier"];
        (id["system"] == gp_gateway::audit::search::TOKEN_ID_SYSTEM)
            .then(|| id["value"].as_str())?
    })
}

#[tokio::test]
async fn token_rows_name_a_registered_client_issued_or_refused_and_never_an_unknown_one() {
    let w = World::start().await;
    let demo = |id: &str| gp_gateway::sandbox::demo_identity(id).unwrap();
    let url = w.manifest().token_url.clone();

    // Issued: the row names the client and the token's id, which its API calls carry too.
    let issued = uuid::Uuid::new_v4().to_string();
    let (status, body) = post_token(
        &w,
        &demo("demo-booking").token_request_body(&url, None).unwrap(),
        &issued,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let nhs = w.ordinary_patient("emis", "demo-booking");
    let call = uuid::Uuid::new_v4().to_string();
    let read = w
        .call(
            "GET",
            &format!("/Patient/{nhs}"),
            &token,
            &[("x-request-id", &call)],
            b"",
        )
        .await;
    assert_eq!(read.status, 200);

    // Refused after naming a registered client: a bad signature (demo-booking's claims
    // and kid, demo-consult's key), and a suspended supplier.
    let mut forged = demo("demo-booking");
    forged.private_key_pem = demo("demo-consult").private_key_pem;
    let bad_signature = uuid::Uuid::new_v4().to_string();
    let (status, body) = post_token(
        &w,
        &forged.token_request_body(&url, None).unwrap(),
        &bad_signature,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let suspended = uuid::Uuid::new_v4().to_string();
    let (status, body) = post_token(
        &w,
        &demo("demo-suspended")
            .token_request_body(&url, None)
            .unwrap(),
        &suspended,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );

    // A client id nobody registered, correctly signed with a real key: refused, and the
    // row names no one (the caller's string never reaches the trail).
    let stranger = format!("intruder-{}", uuid::Uuid::new_v4().simple());
    let mut unknown = demo("demo-booking");
    unknown.client_id = stranger.clone();
    let unregistered = uuid::Uuid::new_v4().to_string();
    let (status, body) = post_token(
        &w,
        &unknown.token_request_body(&url, None).unwrap(),
        &unregistered,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );

    let operator = w.token("demo-operator").await;
    let all = w
        .call("GET", "/AuditEvent?_count=1000", &operator, &[], b"")
        .await;
    assert_eq!(all.status, 200);
    let text = String::from_utf8_lossy(&all.body).into_owned();
    let all = all.json();
    let found = events(&all);

    let row = event_of(&found, &issued).expect("the issued token's row");
    assert_eq!(row["subtype"][0]["code"], "token");
    assert_eq!(agent(row), "demo-booking");
    assert_eq!(row["outcomeDesc"], "HTTP 200");
    let jti = token_id(row).expect("the issued token's id");
    let used = event_of(&found, &call).expect("the read's row");
    assert_eq!(
        token_id(used),
        Some(jti),
        "the read ran on the token issued"
    );

    let row = event_of(&found, &bad_signature).expect("the bad signature's row");
    assert_eq!(agent(row), "demo-booking");
    assert_eq!(row["outcomeDesc"], "HTTP 401 invalid_client");
    assert_eq!(token_id(row), None, "no token was issued");
    let row = event_of(&found, &suspended).expect("the suspended supplier's row");
    assert_eq!(agent(row), "demo-suspended");
    assert_eq!(row["outcomeDesc"], "HTTP 401 invalid_client");

    let row = event_of(&found, &unregistered).expect("the unknown client's row");
    assert_eq!(row["subtype"][0]["code"], "token");
    assert_eq!(row["agent"][0]["who"]["display"], "unauthenticated caller");
    assert_eq!(agent(row), "");
    assert!(
        !text.contains(&stranger),
        "an unregistered client id reached the trail"
    );
    let by_agent = w
        .call(
            "GET",
            &format!("/AuditEvent?agent={stranger}"),
            &operator,
            &[],
            b"",
        )
        .await
        .json();
    assert!(events(&by_agent).is_empty(), "{by_agent:#}");
}

/// PostgreSQL on 127.0.0.1:5432; a schema per test, dropped at the end.
const PG: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=5";

async fn pg() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(PG, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at 127.0.0.1:5432 is needed for this test: {e}"));
    tokio::spawn(conn);
    client
}

/// The sandbox with its trail in a schema of its own on the machine's PostgreSQL, whose
/// writes wait at most `write_timeout_ms`.
async fn pg_world(write_timeout_ms: u64) -> (World, String) {
    let schema = format!("e2e_audit_{}", uuid::Uuid::new_v4().simple());
    let w = World::start_with_audit(AuditConfig {
        backend: AuditBackend::Postgres,
        postgres_url: Some(PG.into()),
        postgres_schema: schema.clone(),
        write_timeout_ms,
        ..AuditConfig::default()
    })
    .await;
    (w, schema)
}

#[tokio::test]
async fn no_audit_no_data_and_recovery_without_restart() {
    let (w, schema) = pg_world(2000).await;
    let token = w.token("demo-consult").await;
    let nhs = w.ordinary_patient("tpp", "demo-consult");
    assert_eq!(
        w.call("GET", &format!("/Patient/{nhs}"), &token, &[], b"")
            .await
            .status,
        200
    );

    // The trail goes away.
    let db = pg().await;
    db.batch_execute(&format!(
        "ALTER TABLE {schema}.audit_event RENAME TO audit_event_gone"
    ))
    .await
    .unwrap();
    let a = w
        .call("GET", &format!("/Patient/{nhs}"), &token, &[], b"")
        .await;
    assert_eq!(a.status, 503, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.spine_code(), "SERVICE_UNAVAILABLE");
    assert!(
        !String::from_utf8_lossy(&a.body).contains(&nhs),
        "no patient data released"
    );
    assert!(a.diagnostics().contains("audit"), "{}", a.diagnostics());
    let ready = w
        .send(
            "GET",
            &format!(
                "{}/_ready",
                w.manifest().base_url.trim_end_matches("/FHIR/R4")
            ),
            &[],
            b"",
        )
        .await;
    assert_eq!(
        ready.status,
        503,
        "{}",
        String::from_utf8_lossy(&ready.body)
    );

    // It comes back: served again, without a restart.
    db.batch_execute(&format!(
        "ALTER TABLE {schema}.audit_event_gone RENAME TO audit_event"
    ))
    .await
    .unwrap();
    let a = w
        .call("GET", &format!("/Patient/{nhs}"), &token, &[], b"")
        .await;
    assert_eq!(a.status, 200);
    let rows = db
        .query(
            &format!("SELECT status FROM {schema}.audit_event WHERE patient = $1 ORDER BY seq"),
            &[&nhs],
        )
        .await
        .unwrap();
    let statuses: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    // The refused read is recorded as the 503 it got once the trail is back, before
    // the read that follows.
    assert_eq!(statuses, [200, 503, 200]);
    db.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

/// `/_ready` on the gateway's main port.
async fn ready(w: &World) -> (u16, String) {
    let url = format!(
        "{}/_ready",
        w.manifest().base_url.trim_end_matches("/FHIR/R4")
    );
    let a = w.send("GET", &url, &[], b"").await;
    (a.status, String::from_utf8_lossy(&a.body).into_owned())
}

#[tokio::test]
async fn reads_refused_for_a_locked_trail_are_recorded_as_refused_not_as_served() {
    let (w, schema) = pg_world(300).await;
    let token = w.token("demo-consult").await;
    let operator = w.token("demo-operator").await;
    let nhs = w.ordinary_patient("emis", "demo-consult");
    let db = pg().await;
    db.batch_execute(&format!(
        "BEGIN; LOCK TABLE {schema}.audit_event IN ACCESS EXCLUSIVE MODE"
    ))
    .await
    .unwrap();
    let path = format!("/Patient/{nhs}");
    let reads = gp_e2e::join_all(
        (0..4)
            .map(|_| w.call("GET", &path, &token, &[], b""))
            .collect(),
    )
    .await;
    for a in &reads {
        assert_eq!(a.status, 503, "{}", String::from_utf8_lossy(&a.body));
        assert!(!String::from_utf8_lossy(&a.body).contains(&nhs));
    }
    db.batch_execute("COMMIT").await.unwrap();
    let a = w
        .call("GET", &format!("/Patient/{nhs}"), &token, &[], b"")
        .await;
    assert_eq!(a.status, 200);
    // What the operator reads of the trail: one read served, four refused.
    let trail = w
        .call(
            "GET",
            &format!("/AuditEvent?patient={nhs}"),
            &operator,
            &[],
            b"",
        )
        .await
        .json();
    let mut outcomes: Vec<(String, String)> = events(&trail)
        .iter()
        .map(|e| {
            (
                e["outcome"].as_str().unwrap_or("").to_owned(),
                e["outcomeDesc"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            ("0", "HTTP 200"),
            ("8", "HTTP 503 SERVICE_UNAVAILABLE"),
            ("8", "HTTP 503 SERVICE_UNAVAILABLE"),
            ("8", "HTTP 503 SERVICE_UNAVAILABLE"),
            ("8", "HTTP 503 SERVICE_UNAVAILABLE"),
        ]
        .map(|(o, d)| (o.to_owned(), d.to_owned())),
        "{trail}"
    );
    db.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_trail_that_refuses_every_row_makes_the_replica_unready_until_it_takes_rows() {
    let (w, schema) = pg_world(1000).await;
    let token = w.token("demo-consult").await;
    let nhs = w.ordinary_patient("tpp", "demo-consult");
    assert_eq!(ready(&w).await.0, 200);
    // In real life: a revoked INSERT grant, a full disk, a read-only standby. The
    // table still answers a SELECT.
    let db = pg().await;
    db.batch_execute(&format!(
        "ALTER TABLE {schema}.audit_event ADD CONSTRAINT refuse_all CHECK (status < 0) NOT VALID"
    ))
    .await
    .unwrap();
    let (status, body) = ready(&w).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("refuse_all"), "{body}");
    let a = w
        .call("GET", &format!("/Patient/{nhs}"), &token, &[], b"")
        .await;
    assert_eq!(a.status, 503);
    assert_eq!(ready(&w).await.0, 503);
    db.batch_execute(&format!(
        "ALTER TABLE {schema}.audit_event DROP CONSTRAINT refuse_all"
    ))
    .await
    .unwrap();
    // Back by itself, with no traffic (a load balancer sends none to an unready replica).
    let (status, body) = ready(&w).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        w.call("GET", &format!("/Patient/{nhs}"), &token, &[], b"")
            .await
            .status,
        200
    );
    db.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_operator_pages_through_the_trail_with_next_links() {
    let w = World::start().await;
    let consult = w.token("demo-consult").await;
    let operator = w.token("demo-operator").await;
    let nhs = w.ordinary_patient("vision", "demo-consult");
    for _ in 0..7 {
        let a = w
            .call("GET", &format!("/Patient/{nhs}"), &consult, &[], b"")
            .await;
        assert_eq!(a.status, 200);
    }
    // Pages of 3, each resuming where the last ended, newest first.
    let mut seen = Vec::new();
    let mut url = format!(
        "{}/AuditEvent?patient={nhs}&_count=3",
        w.manifest().base_url
    );
    let auth = format!("Bearer {operator}");
    let mut pages = 0;
    loop {
        let a = w
            .send(
                "GET",
                &url,
                &[
                    ("authorization", &auth),
                    ("accept", "application/fhir+json"),
                ],
                b"",
            )
            .await;
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        let page = a.json();
        pages += 1;
        let entries = events(&page);
        assert!(entries.len() <= 3);
        seen.extend(entries.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
        let recorded: Vec<&str> = entries
            .iter()
            .map(|e| e["recorded"].as_str().unwrap())
            .collect();
        assert!(recorded.windows(2).all(|p| p[0] >= p[1]), "{recorded:?}");
        let next = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_owned());
        match next {
            Some(n) => {
                assert!(page.get("total").is_none(), "no total on a partial page");
                url = n;
            }
            None => break,
        }
        // Rows added meanwhile (this page's own search, a new read) are newer than
        // every row paged so far: they never shift a page.
        w.call("GET", &format!("/Patient/{nhs}"), &consult, &[], b"")
            .await;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 7);
    let everything = w
        .call(
            "GET",
            &format!("/AuditEvent?patient={nhs}&_count=5000"),
            &operator,
            &[],
            b"",
        )
        .await;
    assert_eq!(
        everything.status, 200,
        "a large _count is served, not refused"
    );
    let everything = everything.json();
    let all: Vec<String> = events(&everything)
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(everything["total"], all.len());
    let from_first: Vec<String> = all
        .iter()
        .skip_while(|id| **id != seen[0])
        .cloned()
        .collect();
    assert_eq!(seen, from_first, "every row once, in the trail's order");

    let bad = w
        .call(
            "GET",
            "/AuditEvent?_cursor=not-a-cursor",
            &operator,
            &[],
            b"",
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.diagnostics().contains("_cursor"),
        "{}",
        bad.diagnostics()
    );
}
