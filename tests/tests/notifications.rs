//! Change notifications end to end, on every GP system: what one supplier records, or
//! the practice changes, another subscribed supplier is told of, signed and in order;
//! what a supplier may no longer see, it is told nothing of; a receiver that fails gets
//! its notifications later, in order, and can catch up with `$events`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use gp_e2e::World;
use gp_gateway::notify::receiver::{Received, Receiver};
use serde_json::{Value, json};

const SYSTEMS: [&str; 4] = ["emis", "tpp", "vision", "microtest"];
const SNOMED: &str = "http://snomed.info/sct";
const UCUM: &str = "http://unitsofmeasure.org";
const FHIR_JSON: (&str, &str) = ("content-type", "application/fhir+json");
const TOPIC: &str = "https://gp-gateway.invalid/SubscriptionTopic/";
const FILTER: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria";
const CONTENT: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content";
/// Long enough for a delivery (or a practice change poll, every second) on a busy machine.
const WAIT: Duration = Duration::from_secs(20);

fn subscription(topic: &str, filters: &[&str], content: &str, endpoint: &str) -> Value {
    let mut v = json!({
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "e2e",
        "criteria": format!("{TOPIC}{topic}"),
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": { "extension": [{ "url": CONTENT, "valueCode": content }] },
            "header": ["X-Receiver-Secret: e2e"]
        }
    });
    if !filters.is_empty() {
        let ext: Vec<Value> = filters
            .iter()
            .map(|f| json!({ "url": FILTER, "valueString": f }))
            .collect();
        v["_criteria"] = json!({ "extension": ext });
    }
    v
}

/// A receiver of the test's own (not the sandbox's), verifying with `w`'s notification key.
async fn own_receiver(w: &World) -> Receiver {
    let key = w
        .sandbox
        .app
        .notifier
        .as_ref()
        .unwrap()
        .signer
        .public_key()
        .to_vec();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Receiver::start(listener, vec![key], false).unwrap()
}

/// Subscribes and waits until the handshake has made it active; answers its id.
async fn subscribe(w: &World, token: &str, body: &Value, receiver: &Receiver) -> String {
    let created = w
        .call(
            "POST",
            "/Subscription",
            token,
            &[FHIR_JSON],
            &serde_json::to_vec(body).unwrap(),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.diagnostics());
    let sub = created.json();
    assert_eq!(sub["status"], "requested", "{sub}");
    let id = sub["id"].as_str().unwrap().to_owned();
    let got = receiver
        .wait_for(WAIT, |r| {
            r.iter()
                .any(|n| kind(n) == "handshake" && subscription_of(n) == id)
        })
        .await;
    let handshake = got
        .iter()
        .find(|n| kind(n) == "handshake" && subscription_of(n) == id)
        .unwrap_or_else(|| panic!("no handshake for {id}: {got:?}"));
    assert!(handshake.verified, "the handshake's signature verifies");
    for _ in 0..100 {
        if w.call("GET", &format!("/Subscription/{id}"), token, &[], b"")
            .await
            .json()["status"]
            == "active"
        {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("subscription {id} never became active");
}

fn param<'a>(n: &'a Received, name: &str) -> Option<&'a Value> {
    n.body
        .pointer("/entry/0/resource/parameter")?
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
}

fn kind(n: &Received) -> String {
    param(n, "type")
        .and_then(|p| p["valueCode"].as_str())
        .unwrap_or_default()
        .to_owned()
}

fn subscription_of(n: &Received) -> String {
    param(n, "subscription")
        .and_then(|p| p["valueReference"]["reference"].as_str())
        .and_then(|r| r.rsplit('/').next())
        .unwrap_or_default()
        .to_owned()
}

/// The (event number, focus) of an event notification.
fn event_of(n: &Received) -> (i64, String) {
    let part = param(n, "notification-event").unwrap()["part"]
        .as_array()
        .unwrap()
        .clone();
    let get = |name: &str| {
        part.iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_default()
    };
    (
        get("event-number")["valueString"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
        get("focus")["valueReference"]["reference"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

fn events_for(received: &[Received], sub: &str) -> Vec<Received> {
    received
        .iter()
        .filter(|n| kind(n) == "event-notification" && subscription_of(n) == sub)
        .cloned()
        .collect()
}

fn weight(nhs: &str, key: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "resourceType": "Observation",
        "identifier": [{"system": "https://demo-monitoring.example/readings", "value": key}],
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": SNOMED, "code": "27113001", "display": "Body weight"}]},
        "subject": {"reference": format!("Patient/{nhs}")},
        "effectiveDateTime": "2026-12-01T08:30:00+00:00",
        "valueQuantity": {"value": 72.5, "unit": "kg", "system": UCUM, "code": "kg"}
    }))
    .unwrap()
}

/// Records a reading for `nhs` as `token`'s supplier; answers the Observation id.
async fn record(w: &World, token: &str, nhs: &str) -> String {
    let key = uuid::Uuid::new_v4().to_string();
    let a = w
        .call(
            "POST",
            "/Observation",
            token,
            &[FHIR_JSON],
            &weight(nhs, &key),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.diagnostics());
    a.json()["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_reading_recorded_by_one_supplier_is_notified_to_another_on_every_system() {
    let w = World::start().await;
    let receiver = &w.sandbox.receiver;
    let consult = w.token("demo-consult").await;
    let monitoring = w.token("demo-monitoring").await;
    let body = subscription(
        "patient-record-changed",
        &["Observation?_type=Observation"],
        "full-resource",
        &receiver.url(),
    );
    let sub = subscribe(&w, &consult, &body, receiver).await;
    let mut written = Vec::new();
    for system in SYSTEMS {
        let nhs = w.ordinary_patient(system, "demo-monitoring");
        written.push((nhs.clone(), record(&w, &monitoring, &nhs).await));
    }
    let got = receiver
        .wait_for(WAIT, |r| events_for(r, &sub).len() >= 4)
        .await;
    let events = events_for(&got, &sub);
    assert_eq!(events.len(), 4, "one notification per reading: {events:?}");
    let base = &w.manifest().base_url;
    for (i, (n, (nhs, id))) in events.iter().zip(&written).enumerate() {
        assert!(n.verified, "signed with the key in the JWKS");
        assert!(
            n.headers
                .iter()
                .any(|(k, v)| k == "x-receiver-secret" && v == "e2e"),
            "channel.header sent as given"
        );
        let (number, focus) = event_of(n);
        assert_eq!(number, i as i64 + 1, "numbered in order");
        assert_eq!(focus, format!("{base}/Observation/{id}"));
        let resource = &n.body["entry"][1]["resource"];
        assert_eq!(resource["id"], id.as_str(), "the full resource: {resource}");
        assert_eq!(resource["subject"]["reference"], format!("Patient/{nhs}"));
        assert_eq!(n.body["type"], "history");
    }
    let ids: std::collections::BTreeSet<&str> = events.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids.len(), 4, "each notification has its own webhook-id");
    // The key receivers verify with is the one the JWKS publishes.
    let jwks = w
        .send(
            "GET",
            &w.manifest().token_url.replace("/token", "/jwks"),
            &[],
            b"",
        )
        .await
        .json();
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == "sandbox-webhook-1")
        .unwrap();
    assert_eq!(key["crv"], "Ed25519");
    // The supplier catches up with $events, and sees the count in $status.
    let status = w
        .call(
            "GET",
            &format!("/Subscription/{sub}/$status"),
            &consult,
            &[],
            b"",
        )
        .await;
    assert_eq!(status.status, 200, "{}", status.diagnostics());
    let st = status.json();
    let since = st["entry"][0]["resource"]["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "events-since-subscription-start")
        .unwrap()["valueString"]
        .clone();
    assert_eq!(since, "4");
    let caught = w
        .call(
            "GET",
            &format!("/Subscription/{sub}/$events?eventsSinceNumber=2&eventsUntilNumber=3"),
            &consult,
            &[],
            b"",
        )
        .await;
    assert_eq!(caught.status, 200, "{}", caught.diagnostics());
    let numbers: Vec<String> = caught.json()["entry"][0]["resource"]["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "notification-event")
        .map(|p| p["part"][0]["valueString"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(numbers, ["2", "3"]);
    // Another supplier neither sees nor manages this subscription.
    let booking = w.token("demo-booking").await;
    assert_eq!(
        w.call("GET", &format!("/Subscription/{sub}"), &booking, &[], b"")
            .await
            .status,
        404
    );
    assert_eq!(
        w.call(
            "DELETE",
            &format!("/Subscription/{sub}"),
            &booking,
            &[],
            b""
        )
        .await
        .status,
        404
    );
    let theirs = w
        .call("GET", "/Subscription", &booking, &[], b"")
        .await
        .json();
    assert_eq!(theirs["total"], 0, "{theirs}");
    assert_eq!(
        w.call(
            "DELETE",
            &format!("/Subscription/{sub}"),
            &consult,
            &[],
            b""
        )
        .await
        .status,
        204
    );
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn changes_made_at_the_practice_are_notified_on_every_system() {
    let w = World::start().await;
    let receiver = &w.sandbox.receiver;
    let consult = w.token("demo-consult").await;
    let booking = w.token("demo-booking").await;
    let appointments = subscription("appointment-changed", &[], "id-only", &receiver.url());
    let sub = subscribe(&w, &booking, &appointments, receiver).await;
    let registrations = subscription("registration-changed", &[], "id-only", &receiver.url());
    let reg = subscribe(&w, &consult, &registrations, receiver).await;
    let store = &w.sandbox.store;
    let mut expected: Vec<String> = Vec::new();
    for system in SYSTEMS {
        let kind = system_kind(system);
        let practice = w.practice_of(&w.ordinary_patient(system, "demo-consult"));
        let booking = practice_booking_of_ordinary_patient(&w, kind, &practice)
            .unwrap_or_else(|| panic!("{system}: no practice booking to cancel"));
        store
            .change_appointment_at_practice(
                kind,
                &practice,
                &booking.id,
                gp_sim::appointments::Change::Cancel {
                    reason: "Clinician ill".into(),
                },
            )
            .unwrap();
        expected.push(practice);
    }
    let got = receiver
        .wait_for(WAIT, |r| events_for(r, &sub).len() >= 4)
        .await;
    let events = events_for(&got, &sub);
    assert_eq!(events.len(), 4, "{events:?}");
    let mut told = Vec::new();
    for n in &events {
        let (_, focus) = event_of(n);
        let path = focus
            .strip_prefix(&w.manifest().base_url)
            .unwrap()
            .to_owned();
        let id = path
            .strip_prefix("/Appointment/")
            .unwrap_or_else(|| panic!("{focus}"));
        told.push(id.split('-').next().unwrap().to_owned());
        // The focus reads back as the cancelled appointment.
        let read = w.call("GET", &path, &booking, &[], b"").await;
        assert_eq!(read.status, 200, "{}", read.diagnostics());
        assert_eq!(read.json()["status"], "cancelled");
    }
    told.sort();
    expected.sort();
    assert_eq!(
        told, expected,
        "one cancellation per practice, practice-prefixed ids"
    );
    // A patient moves from one practice to another: both sides are told.
    let mover = w.ordinary_patient("emis", "demo-consult");
    let from = w.practice_of(&mover);
    let to = w
        .practices_of("demo-consult")
        .into_iter()
        .find(|p| *p != from)
        .unwrap();
    store.transfer_patient(&mover, &to).unwrap();
    let got = receiver
        .wait_for(WAIT, |r| events_for(r, &reg).len() >= 2)
        .await;
    let moved = events_for(&got, &reg);
    assert_eq!(moved.len(), 2, "{moved:?}");
    for n in &moved {
        assert_eq!(
            event_of(n).1,
            format!("{}/Patient/{mover}", w.manifest().base_url)
        );
    }
    w.sandbox.shutdown().await;
}

/// The event notifications `sub` has received, by focus.
fn foci(received: &[Received], sub: &str) -> Vec<String> {
    events_for(received, sub)
        .iter()
        .map(|n| event_of(n).1)
        .collect()
}

#[tokio::test]
async fn nothing_is_said_of_a_patient_the_supplier_may_no_longer_see() {
    let w = World::start().await;
    let receiver = &w.sandbox.receiver;
    let consult = w.token("demo-consult").await;
    let monitoring = w.token("demo-monitoring").await;
    let body = subscription("patient-record-changed", &[], "id-only", &receiver.url());
    let sub = subscribe(&w, &consult, &body, receiver).await;
    let base = w.manifest().base_url.clone();
    let store = &w.sandbox.store;
    let pulse = gp_sim::concepts::measurement_by_snomed("78564009").unwrap();
    let emis = gp_sim::SystemKind::Emis;
    let ordinary = w.ordinary_patient("emis", "demo-consult");
    let practice = w.practice_of(&ordinary);
    // Sensitive and dissenting patients' changes at the practice: nothing.
    for flag in ["sensitive", "dissent"] {
        let nhs = w.patient(&practice, flag);
        store
            .record_reading_at_practice(emis, &practice, &nhs, pulse, 70.0)
            .unwrap();
    }
    // A control change after them: it arrives, so the ones before were passed over.
    let control = store
        .record_reading_at_practice(emis, &practice, &ordinary, pulse, 71.0)
        .unwrap();
    let got = receiver
        .wait_for(WAIT, |r| !events_for(r, &sub).is_empty())
        .await;
    assert_eq!(
        foci(&got, &sub),
        [format!("{base}/Observation/{control}")],
        "only the control"
    );

    // Pairing removed: the practice's changes are no longer told.
    let other = w.ordinary_patient("tpp", "demo-monitoring");
    let other_practice = w.practice_of(&other);
    w.reload_suppliers(|toml| edit_supplier(&toml, "demo-consult", Some(&other_practice), None));
    record(&w, &monitoring, &other).await;
    let control = store
        .record_reading_at_practice(emis, &practice, &ordinary, pulse, 72.0)
        .unwrap();
    let got = receiver
        .wait_for(WAIT, |r| events_for(r, &sub).len() >= 2)
        .await;
    assert_eq!(
        foci(&got, &sub)[1..],
        [format!("{base}/Observation/{control}")],
        "nothing about the unpaired practice's patient"
    );
    // $events decides again now: nothing from the unpaired practice ever shows.
    let all = w
        .call(
            "GET",
            &format!("/Subscription/{sub}/$events"),
            &consult,
            &[],
            b"",
        )
        .await
        .json();
    assert!(!all.to_string().contains(&other), "{all}");

    // Scope removed: Observation is no longer readable, so readings are not told.
    // (Each reload starts from the registry the sandbox began with: both edits at once.)
    w.reload_suppliers(|toml| {
        edit_supplier(
            &toml,
            "demo-consult",
            Some(&other_practice),
            Some("system/Observation.crs"),
        )
    });
    store
        .record_reading_at_practice(emis, &practice, &ordinary, pulse, 73.0)
        .unwrap();
    let (_, held) = store.patient(&practice, &ordinary).unwrap();
    store
        .update_contact_at_practice(
            emis,
            &practice,
            &ordinary,
            gp_sim::store::ContactUpdate {
                home_phone: held.home_phone.clone(),
                mobile: Some("07700 900321".into()),
                email: held.email.clone(),
                address: held.address.clone(),
                language: held.language.clone(),
            },
        )
        .unwrap();
    let got = receiver
        .wait_for(WAIT, |r| events_for(r, &sub).len() >= 3)
        .await;
    let seen = foci(&got, &sub);
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(
        seen[2],
        format!("{base}/Patient/{ordinary}"),
        "the contact change, not the reading"
    );
    w.sandbox.shutdown().await;
}

/// The supplier registry TOML with `practice` taken out of `client_id`'s pairings and
/// `scope` out of its scopes.
fn edit_supplier(
    toml_text: &str,
    client_id: &str,
    practice: Option<&str>,
    scope: Option<&str>,
) -> String {
    let mut v: toml::Value = toml::from_str(toml_text).unwrap();
    let groups = v["practice_groups"].clone();
    for s in v["suppliers"].as_array_mut().unwrap() {
        if s["client_id"].as_str() != Some(client_id) {
            continue;
        }
        let expanded: Vec<toml::Value> = s["practices"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| match p.as_str().unwrap().strip_prefix("group:") {
                Some(g) => groups[g].as_array().unwrap().clone(),
                None => vec![p.clone()],
            })
            .filter(|p| p.as_str() != practice)
            .collect();
        s["practices"] = toml::Value::Array(expanded);
        let scopes: Vec<toml::Value> = s["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x.as_str() != scope)
            .cloned()
            .collect();
        s["scopes"] = toml::Value::Array(scopes);
    }
    toml::to_string(&v).unwrap()
}

/// A future appointment booked at `practice` itself, of a patient with no flag (the
/// release rules would rightly withhold a sensitive or dissenting patient's).
fn practice_booking_of_ordinary_patient(
    w: &World,
    kind: gp_sim::SystemKind,
    practice: &str,
) -> Option<gp_sim::appointments::Appointment> {
    let ordinary: Vec<String> = w
        .manifest()
        .patients
        .iter()
        .filter(|p| p.practice == practice && p.flags.is_empty())
        .map(|p| p.nhs_number.clone())
        .collect();
    let now = gp_sim::appointments::now();
    w.sandbox
        .store
        .with_book(kind, practice, |_, book| {
            book.appointments
                .iter()
                .find(|a| {
                    a.booked_by.is_none()
                        && a.state == gp_sim::appointments::AppointmentState::Booked
                        && a.start > now + 3_600
                        && ordinary.contains(&a.nhs)
                })
                .cloned()
        })
        .ok()
        .flatten()
}

fn system_kind(system: &str) -> gp_sim::SystemKind {
    gp_sim::SystemKind::ALL
        .into_iter()
        .find(|k| k.id() == system)
        .unwrap()
}

#[tokio::test]
async fn a_failing_receiver_gets_its_notifications_later_in_order_and_the_status_says_so() {
    let w = World::start().await;
    let receiver = &w.sandbox.receiver;
    let consult = w.token("demo-consult").await;
    let monitoring = w.token("demo-monitoring").await;
    let body = subscription(
        "patient-record-changed",
        &["_type=Observation"],
        "id-only",
        &receiver.url(),
    );
    let sub = subscribe(&w, &consult, &body, receiver).await;
    receiver.set_status(503);
    let nhs = w.ordinary_patient("vision", "demo-monitoring");
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(record(&w, &monitoring, &nhs).await);
    }
    // Failures in a row put it in error, with the receiver's answer as the reason.
    let mut status = Value::Null;
    for _ in 0..200 {
        status = w
            .call("GET", &format!("/Subscription/{sub}"), &consult, &[], b"")
            .await
            .json();
        if status["status"] == "error" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status["status"], "error", "{status}");
    assert!(
        status["error"].as_str().unwrap().contains("503"),
        "{status}"
    );
    // Catching up needs no delivery: the first event is there to read.
    let caught = w
        .call(
            "GET",
            &format!("/Subscription/{sub}/$events"),
            &consult,
            &[],
            b"",
        )
        .await
        .json();
    assert!(caught.to_string().contains(&ids[0]), "{caught}");
    receiver.set_status(204);
    let got = receiver
        .wait_for(Duration::from_secs(60), |r| events_for(r, &sub).len() >= 3)
        .await;
    let events = events_for(&got, &sub);
    let numbers: Vec<i64> = events.iter().map(|n| event_of(n).0).collect();
    assert_eq!(numbers, [1, 2, 3], "in order, each once");
    let foci: Vec<String> = events.iter().map(|n| event_of(n).1).collect();
    let want: Vec<String> = ids
        .iter()
        .map(|id| format!("{}/Observation/{id}", w.manifest().base_url))
        .collect();
    assert_eq!(foci, want);
    let back = w
        .call("GET", &format!("/Subscription/{sub}"), &consult, &[], b"")
        .await
        .json();
    assert_eq!(back["status"], "active", "{back}");
    assert!(back.get("error").is_none());
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn subscriptions_are_checked_element_by_element() {
    let w = World::start().await;
    let consult = w.token("demo-consult").await;
    let cases = [
        (
            subscription(
                "patient-record-changed",
                &[],
                "id-only",
                "http://hooks.example.com/in",
            ),
            "Subscription.channel.endpoint",
        ),
        (
            subscription(
                "patient-record-changed",
                &[],
                "id-only",
                "https://10.1.2.3/in",
            ),
            "Subscription.channel.endpoint",
        ),
        (
            subscription(
                "patient-record-changed",
                &[],
                "id-only",
                "http://127.0.0.1:1/in?x#f",
            ),
            "Subscription.channel.endpoint",
        ),
        (
            subscription("no-such-topic", &[], "id-only", "http://127.0.0.1:1/in"),
            "Subscription.criteria",
        ),
        (
            subscription(
                "patient-record-changed",
                &["Slot?patient=9000000009"],
                "id-only",
                "http://127.0.0.1:1/in",
            ),
            "Subscription.criteria.extension[0].valueString",
        ),
    ];
    for (body, path) in cases {
        let a = w
            .call(
                "POST",
                "/Subscription",
                &consult,
                &[FHIR_JSON],
                &serde_json::to_vec(&body).unwrap(),
            )
            .await;
        assert_eq!(a.status, 422, "{path}: {}", a.diagnostics());
        let expression = a.json()["issue"][0]["expression"][0].clone();
        assert_eq!(expression, path, "{}", a.diagnostics());
    }
    // A supplier without the scope cannot subscribe at all.
    let operator = w.token("demo-operator").await;
    let body = subscription(
        "patient-record-changed",
        &[],
        "id-only",
        "http://127.0.0.1:1/in",
    );
    let a = w
        .call(
            "POST",
            "/Subscription",
            &operator,
            &[FHIR_JSON],
            &serde_json::to_vec(&body).unwrap(),
        )
        .await;
    assert_eq!(a.status, 403, "{}", a.diagnostics());
    // The topics are published, without a token.
    let topics = w.get("/Basic?code=SubscriptionTopic", None).await;
    assert_eq!(topics.status, 200);
    assert_eq!(topics.json()["total"], 4);
    let cs = w.get("/metadata", None).await.json();
    let entry = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Subscription")
        .unwrap()
        .clone();
    let canonicals: Vec<&str> = entry["extension"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["valueCanonical"].as_str().unwrap())
        .collect();
    assert_eq!(canonicals.len(), 4, "{entry}");
    assert!(canonicals.contains(&"https://gp-gateway.invalid/SubscriptionTopic/document-filed"));
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn notifications_committed_before_a_restart_are_delivered_after_it() {
    let dir = std::env::temp_dir().join(format!("gp-e2e-restart-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let audit = gp_gateway::audit::AuditConfig {
        sqlite_path: dir.join("audit.sqlite"),
        ..Default::default()
    };
    let first = World::start_with_audit(audit.clone()).await;
    // A receiver of the test's own, alive across both gateways.
    let receiver = own_receiver(&first).await;
    let consult = first.token("demo-consult").await;
    let monitoring = first.token("demo-monitoring").await;
    let body = subscription(
        "patient-record-changed",
        &["_type=Observation"],
        "id-only",
        &receiver.url(),
    );
    let sub = subscribe(&first, &consult, &body, &receiver).await;
    receiver.set_status(500);
    let nhs = first.ordinary_patient("microtest", "demo-monitoring");
    let id = record(&first, &monitoring, &nhs).await;
    receiver.wait_for(Duration::from_secs(5), |_| false).await;
    first.sandbox.shutdown().await;
    receiver.set_status(204);
    let second = World::start_with_audit(audit).await;
    let got = receiver
        .wait_for(Duration::from_secs(60), |r| !events_for(r, &sub).is_empty())
        .await;
    let events = events_for(&got, &sub);
    assert_eq!(events.len(), 1, "{got:?}");
    assert!(events[0].verified);
    // The focus is the delivering gateway's URL of the reading.
    assert_eq!(
        event_of(&events[0]),
        (
            1,
            format!("{}/Observation/{id}", second.manifest().base_url)
        )
    );
    second.sandbox.shutdown().await;
    receiver.stop();
    std::fs::remove_dir_all(&dir).ok();
}

/// PostgreSQL on 127.0.0.1:5432; a schema per test, dropped at the end.
const PG: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=5";

fn pg_audit(schema: &str) -> gp_gateway::audit::AuditConfig {
    gp_gateway::audit::AuditConfig {
        backend: gp_gateway::audit::AuditBackend::Postgres,
        postgres_url: Some(PG.into()),
        postgres_schema: schema.to_owned(),
        ..Default::default()
    }
}

async fn drop_schema(schema: &str) {
    let (client, conn) = tokio_postgres::connect(PG, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at 127.0.0.1:5432 is needed for this test: {e}"));
    tokio::spawn(conn);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn two_replicas_deliver_each_event_once_and_hand_over_a_dead_replicas_lease() {
    let schema = format!("e2e_notify_{}", uuid::Uuid::new_v4().simple());
    let a = World::start_with_audit(pg_audit(&schema)).await;
    let b = World::start_with_audit(pg_audit(&schema)).await;
    let receiver = own_receiver(&a).await;
    let consult = a.token("demo-consult").await;
    let body = subscription(
        "patient-record-changed",
        &["_type=Observation"],
        "id-only",
        &receiver.url(),
    );
    let sub = subscribe(&a, &consult, &body, &receiver).await;
    // Readings written through both replicas, interleaved.
    let mut ids = Vec::new();
    for (i, system) in SYSTEMS.iter().chain(SYSTEMS.iter()).enumerate() {
        let w = if i % 2 == 0 { &a } else { &b };
        let token = w.token("demo-monitoring").await;
        let nhs = w.ordinary_patient(system, "demo-monitoring");
        ids.push(record(w, &token, &nhs).await);
    }
    let got = receiver
        .wait_for(WAIT, |r| events_for(r, &sub).len() >= ids.len())
        .await;
    // A moment more: a second delivery of any of them would show now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let events = events_for(&receiver.received(), &sub);
    assert!(got.len() >= ids.len());
    let numbers: Vec<i64> = events.iter().map(|n| event_of(n).0).collect();
    assert_eq!(
        numbers,
        (1..=ids.len() as i64).collect::<Vec<_>>(),
        "each once, in order"
    );
    let told: std::collections::BTreeSet<String> = events
        .iter()
        .map(|n| event_of(n).1.rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        told,
        ids.iter().cloned().collect(),
        "every reading, whichever replica wrote it"
    );

    // A replica takes the subscription and dies mid-delivery (numbered, never finished):
    // once its lease runs out, a live replica delivers that same notification.
    let store = a.sandbox.app.notifier.as_ref().unwrap().store.clone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let taken = loop {
        let t = store.claim("dead-replica", now, 3_000, 1000).await.unwrap();
        if t.iter().any(|s| s.id == sub) {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(taken.iter().any(|s| s.id == sub));
    let monitoring = a.token("demo-monitoring").await;
    let nhs = a.ordinary_patient("emis", "demo-monitoring");
    let last = record(&a, &monitoring, &nhs).await;
    let row = store.subscription(&sub).await.unwrap().unwrap();
    let next = loop {
        let e = store.events_after(row.cursor, 100).await.unwrap();
        if let Some(e) = e
            .into_iter()
            .find(|e| e.event.resource_id.as_deref() == Some(last.as_str()))
        {
            break e;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let dead = store
        .enqueue(&sub, "dead-replica", next.seq, "dead-replica-notification")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dead.number, ids.len() as i64 + 1);
    let got = receiver
        .wait_for(Duration::from_secs(30), |r| {
            events_for(r, &sub).len() > ids.len()
        })
        .await;
    let handed = events_for(&got, &sub);
    let redelivered = handed.last().unwrap();
    assert_eq!(
        redelivered.id, "dead-replica-notification",
        "the same notification id: receivers de-duplicate by it"
    );
    assert_eq!(event_of(redelivered).0, dead.number);
    assert!(event_of(redelivered).1.ends_with(&last));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        events_for(&receiver.received(), &sub).len(),
        ids.len() + 1,
        "delivered once more, no more"
    );
    a.sandbox.shutdown().await;
    b.sandbox.shutdown().await;
    receiver.stop();
    drop_schema(&schema).await;
}

/// A UTC day `offset` days from today, `YYYY-MM-DD`.
fn day(offset: i64) -> String {
    let d = gp_sim::appointments::utc_date_time(gp_sim::appointments::now() + offset * 86_400);
    format!(
        "{:04}-{:02}-{:02}",
        d.year,
        d.month.unwrap_or(1),
        d.day.unwrap_or(1)
    )
}

#[tokio::test]
async fn bookings_documents_and_contact_details_changed_through_the_gateway_are_notified() {
    let w = World::start().await;
    let receiver = &w.sandbox.receiver;
    let booking = w.token("demo-booking").await;
    let consult = w.token("demo-consult").await;
    // demo-booking hears of appointments; demo-consult of documents and contact details.
    let appointments = subscribe(
        &w,
        &booking,
        &subscription("appointment-changed", &[], "full-resource", &receiver.url()),
        receiver,
    )
    .await;
    let record = subscribe(
        &w,
        &consult,
        &subscription(
            "patient-record-changed",
            &["_type=DocumentReference,Patient"],
            "id-only",
            &receiver.url(),
        ),
        receiver,
    )
    .await;
    let base = w.manifest().base_url.clone();
    let nhs = w.ordinary_patient("tpp", "demo-booking");
    let practice = w.practice_of(&nhs);
    // Book a free slot, then cancel it.
    let slots = w
        .call(
            "GET",
            &format!(
                "/Slot?start=ge{}&end=le{}&status=free&_include=Slot:schedule&practice={practice}",
                day(1),
                day(13)
            ),
            &booking,
            &[],
            b"",
        )
        .await
        .json();
    let entries = slots["entry"].as_array().unwrap();
    let slot = entries
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == "Slot")
        .unwrap()
        .clone();
    let schedule = entries
        .iter()
        .map(|e| &e["resource"])
        .find(|r| {
            Some(format!("Schedule/{}", r["id"].as_str().unwrap()).as_str())
                == slot["schedule"]["reference"].as_str()
        })
        .unwrap();
    let location = schedule["actor"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|a| {
            a["reference"]
                .as_str()
                .filter(|r| r.starts_with("Location/"))
        })
        .unwrap();
    let body = json!({
        "resourceType": "Appointment",
        "identifier": [{ "system": "https://demo-booking.example/bookings", "value": uuid::Uuid::new_v4().to_string() }],
        "status": "booked",
        "slot": [{ "reference": format!("Slot/{}", slot["id"].as_str().unwrap()) }],
        "start": slot["start"], "end": slot["end"],
        "created": format!("{}T09:00:00+00:00", day(0)),
        "description": "Notification test",
        "participant": [
            { "actor": { "reference": format!("Patient/{nhs}") }, "status": "accepted" },
            { "actor": { "reference": location }, "status": "accepted" }
        ]
    });
    let booked = w
        .call(
            "POST",
            "/Appointment",
            &booking,
            &[FHIR_JSON],
            &serde_json::to_vec(&body).unwrap(),
        )
        .await;
    assert_eq!(booked.status, 201, "{}", booked.diagnostics());
    let appt = booked.json();
    let id = appt["id"].as_str().unwrap().to_owned();
    let etag = booked.header("etag").unwrap().to_owned();
    let cancel = serde_json::to_vec(&json!([
        { "op": "replace", "path": "/status", "value": "cancelled" },
        { "op": "add", "path": "/cancelationReason", "value": { "text": "No longer needed" } }
    ]))
    .unwrap();
    let cancelled = w
        .call(
            "PATCH",
            &format!("/Appointment/{id}"),
            &booking,
            &[
                ("content-type", "application/json-patch+json"),
                ("if-match", &etag),
            ],
            &cancel,
        )
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.diagnostics());
    // File a document; change the patient's contact details.
    let doc = json!({
        "resourceType": "DocumentReference", "status": "current",
        "identifier": [{ "system": "https://demo-consult.example/docs", "value": uuid::Uuid::new_v4().to_string() }],
        "type": { "coding": [{ "system": SNOMED, "code": "371530004" }] },
        "subject": { "reference": format!("Patient/{nhs}") },
        "description": "Notification test",
        "content": [{ "attachment": { "contentType": "text/plain", "data": "Tm90aWZpY2F0aW9uIHRlc3QK" } }]
    });
    let filed = w
        .call(
            "POST",
            "/DocumentReference",
            &consult,
            &[FHIR_JSON],
            &serde_json::to_vec(&doc).unwrap(),
        )
        .await;
    assert_eq!(filed.status, 201, "{}", filed.diagnostics());
    let doc_id = filed.json()["id"].as_str().unwrap().to_owned();
    let patient = w
        .call("GET", &format!("/Patient/{nhs}"), &consult, &[], b"")
        .await;
    // A new mobile number: replace the one held, or add one.
    let telecom = patient.json()["telecom"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mobile = telecom
        .iter()
        .position(|t| t["system"] == "phone" && t["use"] == "mobile");
    let op = match mobile {
        Some(i) => {
            json!({ "op": "replace", "path": format!("/telecom/{i}/value"), "value": "07700 900555" })
        }
        None => {
            json!({ "op": "add", "path": "/telecom/-", "value": { "system": "phone", "value": "07700 900555", "use": "mobile" } })
        }
    };
    let patch = serde_json::to_vec(&json!([op])).unwrap();
    let changed = w
        .call(
            "PATCH",
            &format!("/Patient/{nhs}"),
            &consult,
            &[
                ("content-type", "application/json-patch+json"),
                ("if-match", patient.header("etag").unwrap()),
            ],
            &patch,
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.diagnostics());

    let got = receiver
        .wait_for(WAIT, |r| {
            events_for(r, &appointments).len() >= 2 && events_for(r, &record).len() >= 2
        })
        .await;
    let told: Vec<String> = events_for(&got, &appointments)
        .iter()
        .map(|n| event_of(n).1)
        .collect();
    assert_eq!(
        told,
        [
            format!("{base}/Appointment/{id}"),
            format!("{base}/Appointment/{id}")
        ],
        "booked, then cancelled"
    );
    let full = events_for(&got, &appointments);
    assert_eq!(full[0].body["entry"][1]["resource"]["id"], id.as_str());
    assert_eq!(
        full[0].body["entry"][1]["request"]["method"], "POST",
        "booked: created"
    );
    assert_eq!(
        full[1].body["entry"][1]["request"]["method"], "PUT",
        "cancelled: updated"
    );
    assert_eq!(
        full[1].body["entry"][1]["resource"]["status"], "cancelled",
        "as read now"
    );
    let told: Vec<String> = events_for(&got, &record)
        .iter()
        .map(|n| event_of(n).1)
        .collect();
    assert_eq!(
        told,
        [
            format!("{base}/DocumentReference/{doc_id}"),
            format!("{base}/Patient/{nhs}")
        ]
    );
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn a_receiver_that_hangs_holds_up_neither_requests_nor_other_subscriptions() {
    let w = World::start().await;
    let consult = w.token("demo-consult").await;
    let monitoring = w.token("demo-monitoring").await;
    let hanging = own_receiver(&w).await;
    let slow = subscribe(
        &w,
        &consult,
        &subscription(
            "patient-record-changed",
            &["_type=Observation"],
            "id-only",
            &hanging.url(),
        ),
        &hanging,
    )
    .await;
    hanging.set_delay(Duration::from_secs(600));
    let live = subscribe(
        &w,
        &monitoring,
        &subscription(
            "patient-record-changed",
            &["_type=Observation"],
            "id-only",
            &w.sandbox.receiver.url(),
        ),
        &w.sandbox.receiver,
    )
    .await;
    let nhs = w.ordinary_patient("emis", "demo-monitoring");
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let id = record(&w, &monitoring, &nhs).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a write waits on no delivery: {:?}",
            started.elapsed()
        );
        let got = w
            .sandbox
            .receiver
            .wait_for(Duration::from_secs(3), |r| {
                events_for(r, &live)
                    .iter()
                    .any(|n| event_of(n).1.ends_with(&id))
            })
            .await;
        assert!(
            events_for(&got, &live)
                .iter()
                .any(|n| event_of(n).1.ends_with(&id)),
            "the live subscription is told within 3 s while the other's receiver hangs"
        );
    }
    assert!(
        events_for(&hanging.received(), &slow).is_empty(),
        "nothing completed at the hanging receiver"
    );
    hanging.stop();
    w.sandbox.shutdown().await;
}
