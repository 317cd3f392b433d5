//! The `appointments` suite against a small stand-in gateway on 127.0.0.1:0 that keeps
//! the appointment HTTP contract over an in-memory book: every test passes against it,
//! and a gateway that double-books fails the race test, with the evidence showing it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use gp_conformance::{RunOptions, Status};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use support::{manifest_file, scratch};
use time::format_description::well_known::Rfc3339;
use time::{Date, Duration, OffsetDateTime};

const SPINE: &str = "https://fhir.nhs.uk/R4/CodeSystem/Spine-ErrorOrWarningCode";
/// The stand-in's practices, their GP systems and test patients.
const PRACTICES: [(&str, &str, &str); 2] = [
    ("A11111", "emis", "9000000009"),
    ("B22222", "tpp", "9000000017"),
];
const CHANNELS: [&str; 3] = ["In-person", "Telephone", "Video"];

struct Slot {
    id: String,
    ods: &'static str,
    start: OffsetDateTime,
    end: OffsetDateTime,
    service: &'static str,
    channel: &'static str,
    free: bool,
}

struct Held {
    body: Value,
    version: u32,
    slot: String,
    key: String,
}

#[derive(Default)]
struct Book {
    slots: Vec<Slot>,
    appointments: BTreeMap<String, Held>,
    /// A broken gateway: books taken slots again.
    double_books: bool,
    base: String,
}

fn book(double_books: bool) -> Book {
    let now = OffsetDateTime::now_utc();
    let today = now.date();
    let mut slots = Vec::new();
    for (ods, _, _) in PRACTICES {
        for d in -3..15 {
            let day = today + Duration::days(d);
            for n in 0..18i64 {
                let start =
                    day.midnight().assume_utc() + Duration::hours(9) + Duration::minutes(10 * n);
                slots.push(Slot {
                    id: format!("{ods}-{}", slots.len() + 1000),
                    ods,
                    start,
                    end: start + Duration::minutes(10),
                    service: if n % 2 == 0 {
                        "GP consultation"
                    } else {
                        "Blood test"
                    },
                    channel: CHANNELS[usize::try_from(n % 3).unwrap()],
                    free: n % 4 != 3,
                });
            }
        }
    }
    Book {
        slots,
        double_books,
        ..Book::default()
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn outcome(status: u16, code: &str, expression: &str) -> (u16, Vec<(String, String)>, Value) {
    let mut issue = json!({"severity": "error", "code": "invalid",
        "details": {"coding": [{"system": SPINE, "code": code}]}});
    if !expression.is_empty() {
        issue["expression"] = json!([expression]);
    }
    (
        status,
        vec![],
        json!({"resourceType": "OperationOutcome", "issue": [issue]}),
    )
}

fn date(s: &str) -> Option<Date> {
    Date::parse(
        s,
        &time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()
}

fn ts(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

fn entry(mode: &str, r: Value) -> Value {
    json!({"resource": r, "search": {"mode": mode}})
}

/// Every value of query parameter `k`.
fn param<'a>(query: &'a [(String, String)], k: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    query
        .iter()
        .filter(move |(n, _)| n == k)
        .map(|(_, v)| v.as_str())
}

fn slots(b: &Book, query: &[(String, String)]) -> (u16, Vec<(String, String)>, Value) {
    let get = |k: &'static str| param(query, k);
    if get("status").any(|s| s != "free") {
        return outcome(422, "INVALID_PARAMETER", "status");
    }
    if !get("_include").any(|s| s == "Slot:schedule") {
        return outcome(422, "INVALID_PARAMETER", "_include");
    }
    let from = get("start")
        .next()
        .and_then(|s| date(s.trim_start_matches("ge")));
    let to = get("end")
        .next()
        .and_then(|s| date(s.trim_start_matches("le")));
    let (Some(from), Some(to)) = (from, to) else {
        return outcome(422, "INVALID_PARAMETER", "start");
    };
    if to - from > Duration::days(14) {
        return outcome(422, "INVALID_PARAMETER", "end");
    }
    let recurse: Vec<&str> = get("_include:recurse").collect();
    let practice = get("practice")
        .next()
        .map(|p| p.rsplit('|').next().unwrap_or(p).to_owned());
    let (lo, hi) = (
        from.midnight().assume_utc(),
        (to + Duration::days(1)).midnight().assume_utc(),
    );
    let mut entries = Vec::new();
    let mut practices: Vec<&str> = Vec::new();
    for s in b.slots.iter().filter(|s| {
        s.free
            && s.start >= lo
            && s.start < hi
            && practice.as_deref().is_none_or(|p| p == s.ods)
            && get("service-type").all(|t| t == s.service)
            && get("delivery-channel").all(|c| c == s.channel)
    }) {
        entries.push(entry(
            "match",
            json!({"resourceType": "Slot", "id": s.id, "status": "free",
            "start": ts(s.start), "end": ts(s.end), "serviceType": [{"text": s.service}],
            "schedule": {"reference": format!("Schedule/{}-sch", s.ods)}}),
        ));
        if !practices.contains(&s.ods) {
            practices.push(s.ods);
        }
    }
    for ods in practices {
        entries.push(entry(
            "include",
            json!({"resourceType": "Schedule", "id": format!("{ods}-sch"),
            "actor": [{"reference": format!("Practitioner/P{ods}")},
                      {"reference": format!("PractitionerRole/{ods}-role")},
                      {"reference": format!("Location/{ods}-loc")}]}),
        ));
        if recurse.contains(&"Schedule:actor:Practitioner") {
            entries.push(entry(
                "include",
                json!({"resourceType": "Practitioner", "id": format!("P{ods}")}),
            ));
            entries.push(entry(
                "include",
                json!({"resourceType": "PractitionerRole", "id": format!("{ods}-role")}),
            ));
        }
        if recurse.contains(&"Schedule:actor:Location") {
            entries.push(entry(
                "include",
                json!({"resourceType": "Location", "id": format!("{ods}-loc"),
                "managingOrganization": {"reference": format!("Organization/{ods}")}}),
            ));
        }
        if recurse.contains(&"Location:managingOrganization") {
            entries.push(entry(
                "include",
                json!({"resourceType": "Organization", "id": ods}),
            ));
        }
    }
    (
        200,
        vec![],
        json!({"resourceType": "Bundle", "type": "searchset", "entry": entries}),
    )
}

fn answer(h: &Held, base: &str, id: &str) -> (Vec<(String, String)>, Value) {
    let mut body = h.body.clone();
    body["id"] = json!(id);
    body["meta"] = json!({"versionId": h.version.to_string()});
    let headers = vec![
        ("etag".to_owned(), format!("W/\"{}\"", h.version)),
        (
            "location".to_owned(),
            format!("{base}/Appointment/{id}/_history/{}", h.version),
        ),
    ];
    (headers, body)
}

fn book_one(b: &mut Book, body: Value) -> (u16, Vec<(String, String)>, Value) {
    if body.get("reasonCode").is_some() {
        return outcome(422, "INVALID_RESOURCE", "Appointment.reasonCode");
    }
    let key = body["identifier"][0]["value"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    if let Some((id, h)) = b.appointments.iter().find(|(_, h)| h.key == key) {
        let (headers, body) = answer(h, &b.base, id);
        return (200, headers, body);
    }
    let slot_id = body["slot"][0]["reference"]
        .as_str()
        .unwrap_or("")
        .trim_start_matches("Slot/")
        .to_owned();
    let Some(slot) = b.slots.iter_mut().find(|s| s.id == slot_id) else {
        return outcome(422, "INVALID_RESOURCE", "Appointment.slot");
    };
    if slot.start <= OffsetDateTime::now_utc() {
        return outcome(422, "INVALID_RESOURCE", "Appointment.start");
    }
    if !slot.free && !b.double_books {
        return outcome(409, "DUPLICATE_REJECTED", "Appointment.slot");
    }
    slot.free = false;
    let id = format!("{}-a{}", slot.ods, b.appointments.len() + 1);
    let held = Held {
        body,
        version: 1,
        slot: slot_id,
        key,
    };
    let (headers, body) = answer(&held, &b.base, &id);
    b.appointments.insert(id, held);
    (201, headers, body)
}

fn change(
    b: &mut Book,
    id: &str,
    if_match: &str,
    body: Value,
) -> (u16, Vec<(String, String)>, Value) {
    let Some(h) = b.appointments.get_mut(id) else {
        return outcome(404, "RESOURCE_NOT_FOUND", "");
    };
    if if_match != format!("W/\"{}\"", h.version) {
        return outcome(412, "PRECONDITION_FAILED", "");
    }
    if h.body["status"] == "cancelled" {
        return outcome(422, "INVALID_RESOURCE", "Appointment.status");
    }
    h.body["description"] = body["description"].clone();
    h.body["comment"] = body["comment"].clone();
    if body["status"] == "cancelled" {
        h.body["status"] = json!("cancelled");
        h.body["cancelationReason"] = body["cancelationReason"].clone();
        let slot = h.slot.clone();
        if let Some(s) = b.slots.iter_mut().find(|s| s.id == slot) {
            s.free = true;
        }
    }
    let h = b.appointments.get_mut(id).unwrap();
    h.version += 1;
    let (headers, body) = answer(h, &b.base, id);
    (200, headers, body)
}

fn route(
    b: &mut Book,
    method: &str,
    path: &str,
    query: &[(String, String)],
    if_match: &str,
    body: &[u8],
) -> (u16, Vec<(String, String)>, Value) {
    let path = path.trim_start_matches("/FHIR/R4");
    match (method, path) {
        ("POST", "/oauth2/token") => (
            200,
            vec![],
            json!({"access_token": "stand-in", "token_type": "Bearer", "expires_in": 300}),
        ),
        ("GET", "/Slot") => slots(b, query),
        ("POST", "/Appointment") => book_one(b, serde_json::from_slice(body).unwrap()),
        ("GET", "/Appointment") => {
            let nhs = query
                .iter()
                .find(|(k, _)| k == "patient")
                .map(|(_, v)| format!("Patient/{v}"));
            let entries: Vec<Value> = b
                .appointments
                .iter()
                .filter(|(_, h)| {
                    Some(
                        h.body["participant"][0]["actor"]["reference"]
                            .as_str()
                            .unwrap_or("")
                            .to_owned(),
                    ) == nhs
                })
                .map(|(id, h)| entry("match", answer(h, &b.base, id).1))
                .collect();
            (
                200,
                vec![],
                json!({"resourceType": "Bundle", "type": "searchset", "entry": entries}),
            )
        }
        ("GET", p) if p.starts_with("/Appointment/") => {
            let id = p.trim_start_matches("/Appointment/");
            match b.appointments.get(id) {
                Some(h) => {
                    let (headers, body) = answer(h, &b.base, id);
                    (200, headers, body)
                }
                None => outcome(404, "RESOURCE_NOT_FOUND", ""),
            }
        }
        ("PUT", p) if p.starts_with("/Appointment/") => change(
            b,
            p.trim_start_matches("/Appointment/"),
            if_match,
            serde_json::from_slice(body).unwrap(),
        ),
        _ => outcome(404, "UNSUPPORTED_SERVICE", ""),
    }
}

/// Starts the stand-in gateway; its origin.
async fn stand_in(double_books: bool) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let mut b = book(double_books);
    b.base = format!("{origin}/FHIR/R4");
    let state = Arc::new(Mutex::new(b));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let state = state.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let state = state.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let mut body = body;
                        let mut bytes = Vec::new();
                        while let Some(frame) = body.frame().await {
                            if let Ok(data) = frame.unwrap().into_data() {
                                bytes.extend_from_slice(&data);
                            }
                        }
                        let body = bytes;
                        let query: Vec<(String, String)> = parts
                            .uri
                            .query()
                            .unwrap_or("")
                            .split('&')
                            .filter(|s| !s.is_empty())
                            .map(|kv| {
                                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                                (decode(k), decode(v))
                            })
                            .collect();
                        let if_match = parts
                            .headers
                            .get("if-match")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let (status, headers, value) = {
                            let mut b = state.lock().unwrap();
                            route(
                                &mut b,
                                parts.method.as_str(),
                                parts.uri.path(),
                                &query,
                                &if_match,
                                &body,
                            )
                        };
                        let mut resp = hyper::Response::builder()
                            .status(status)
                            .header("content-type", "application/fhir+json");
                        for (k, v) in headers {
                            resp = resp.header(k, v);
                        }
                        Ok::<_, std::convert::Infallible>(
                            resp.body(Full::new(Bytes::from(value.to_string())))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    origin
}

/// A manifest for the stand-in: the sandbox's booking supplier's key, its practices and
/// one unflagged patient at each.
fn manifest(origin: &str) -> Value {
    let key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/sandbox/demo-booking.private.pem"
    );
    json!({
        "base_url": format!("{origin}/FHIR/R4"),
        "token_url": format!("{origin}/oauth2/token"),
        "suppliers": [{"client_id": "demo-booking", "kid": "demo-booking-2025-01", "alg": "RS512",
            "private_key_pem": key, "scopes": ["system/Slot.rs", "system/Appointment.cruds"],
            "practices": PRACTICES.iter().map(|(o, _, _)| *o).collect::<Vec<_>>()}],
        "patients": PRACTICES.iter().map(|(o, s, n)| json!({"nhs_number": n, "practice": o, "system": s})).collect::<Vec<_>>()
    })
}

async fn run(double_books: bool) -> gp_conformance::Report {
    let origin = stand_in(double_books).await;
    let dir = scratch("appointments-stand-in");
    let opts = RunOptions {
        manifest: Some(manifest_file(&manifest(&origin), &dir)),
        ..support::options(&origin, &["appointments"])
    };
    let report = support::run(&opts, 120).await;
    let _ = std::fs::remove_dir_all(&dir);
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_keeping_the_contract_passes_every_appointment_test() {
    let report = run(false).await;
    let bad: Vec<String> = report
        .results
        .iter()
        .filter(|r| r.status != Status::Pass)
        .map(|r| format!("{} {:?}: {}", r.id, r.status, r.message))
        .collect();
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert_eq!(report.summary.total, 4 + 13 * 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_double_books_fails_the_race_with_the_evidence() {
    let report = run(true).await;
    for system in ["emis", "tpp"] {
        let race = report.result(&format!("APT-RACE-01/{system}")).unwrap();
        assert_eq!(race.status, Status::Fail, "{}", race.message);
        assert!(race.message.contains("not exactly one"), "{}", race.message);
        assert_eq!(race.evidence.iter().filter(|e| e.status == 201).count(), 10);
    }
    assert!(!report.passed());
}
