//! Appointment management end to end, on every GP system: free slots, booking (once,
//! even when raced), reading, a patient's appointments, amending, cancelling (which
//! frees the slot) and the refusals, through the sandbox's gateway and simulators. The
//! four systems keep their books in four native shapes; the FHIR they answer is one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gp_e2e::World;
use serde_json::{Value, json};

const SYSTEMS: [&str; 4] = ["emis", "tpp", "vision", "microtest"];
const BOOKER: &str = "demo-booking";
const JSON_PATCH: (&str, &str) = ("content-type", "application/json-patch+json");
const FHIR_JSON: (&str, &str) = ("content-type", "application/fhir+json");
const CHANNEL: &str =
    "https://fhir.nhs.uk/STU3/StructureDefinition/Extension-GPConnect-DeliveryChannel-2";

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

fn slots_path(practice: &str, extra: &str) -> String {
    format!(
        "/Slot?start=ge{}&end=le{}&status=free&_include=Slot:schedule&practice={practice}{extra}",
        day(1),
        day(13)
    )
}

fn of_type<'a>(bundle: &'a Value, resource_type: &str) -> Vec<&'a Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == resource_type)
        .collect()
}

/// The first free slot of a search answer, its schedule and the schedule's location.
fn first_slot(bundle: &Value) -> (Value, String) {
    let slot = of_type(bundle, "Slot")
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no free slot: {bundle}"))
        .clone();
    let schedule = of_type(bundle, "Schedule")
        .into_iter()
        .find(|s| {
            Some(format!("Schedule/{}", s["id"].as_str().unwrap()).as_str())
                == slot["schedule"]["reference"].as_str()
        })
        .unwrap_or_else(|| panic!("the slot's schedule is not included: {bundle}"));
    let location = schedule["actor"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|a| {
            a["reference"]
                .as_str()
                .filter(|r| r.starts_with("Location/"))
        })
        .unwrap()
        .to_owned();
    (slot, location)
}

fn booking(slot: &Value, location: &str, nhs: &str, identifier: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "resourceType": "Appointment",
        "identifier": [{ "system": "https://demo-booking.example/bookings", "value": identifier }],
        "status": "booked",
        "slot": [{ "reference": format!("Slot/{}", slot["id"].as_str().unwrap()) }],
        "start": slot["start"],
        "end": slot["end"],
        "created": format!("{}T09:00:00+00:00", day(0)),
        "description": "Cough for two weeks",
        "comment": "Prefers a morning call",
        "participant": [
            { "actor": { "reference": format!("Patient/{nhs}") }, "status": "accepted" },
            { "actor": { "reference": location }, "status": "accepted" }
        ]
    }))
    .unwrap()
}

/// The element names of a resource, for comparing the systems' FHIR shapes.
fn shape(r: &Value) -> Vec<String> {
    let mut keys: Vec<String> = r.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn every_gp_system_offers_free_slots_in_one_fhir_shape() {
    let w = World::start().await;
    let token = w.token(BOOKER).await;
    let mut shapes = Vec::new();
    for system in SYSTEMS {
        let nhs = w.ordinary_patient(system, BOOKER);
        let practice = w.practice_of(&nhs);
        let a = w
            .call(
                "GET",
                &slots_path(
                    &practice,
                    "&_include:recurse=Schedule:actor:Practitioner&_include:recurse=Schedule:actor:PractitionerRole&_include:recurse=Schedule:actor:Location&_include:recurse=Location:managingOrganization",
                ),
                &token,
                &[],
                b"",
            )
            .await;
        assert_eq!(a.status, 200, "{system}: {}", a.diagnostics());
        let bundle = a.json();
        let slots = of_type(&bundle, "Slot");
        assert!(!slots.is_empty(), "{system}: no free slot in a fortnight");
        for s in &slots {
            assert_eq!(s["status"], "free", "{system}");
            assert!(
                s["id"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{practice}-")),
                "{system}: {s}"
            );
            assert_eq!(s["extension"][0]["url"], CHANNEL, "{system}");
            assert!(s["serviceType"][0]["text"].is_string(), "{system}: {s}");
        }
        for t in [
            "Schedule",
            "Practitioner",
            "PractitionerRole",
            "Location",
            "Organization",
        ] {
            assert!(!of_type(&bundle, t).is_empty(), "{system}: no {t} included");
        }
        // Each Schedule's Practitioner is readable by the reference given.
        let schedule = of_type(&bundle, "Schedule")[0];
        if let Some(p) = schedule["actor"].as_array().unwrap().iter().find_map(|a| {
            a["reference"]
                .as_str()
                .filter(|r| r.starts_with("Practitioner/"))
        }) {
            let consult = w.token("demo-consult").await;
            let read = w.call("GET", &format!("/{p}"), &consult, &[], b"").await;
            assert_eq!(read.status, 200, "{system}: {p}: {}", read.diagnostics());
        }
        shapes.push((system, shape(slots[0]), shape(schedule)));
    }
    for (system, slot, schedule) in &shapes[1..] {
        assert_eq!(slot, &shapes[0].1, "{system}'s Slot differs from EMIS's");
        assert_eq!(
            schedule, &shapes[0].2,
            "{system}'s Schedule differs from EMIS's"
        );
    }
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn on_every_gp_system_a_booking_is_made_once_amended_and_cancelled() {
    let w = World::start().await;
    let token = w.token(BOOKER).await;
    for system in SYSTEMS {
        let nhs = w.ordinary_patient(system, BOOKER);
        let practice = w.practice_of(&nhs);
        let found = w
            .call("GET", &slots_path(&practice, ""), &token, &[], b"")
            .await;
        assert_eq!(found.status, 200, "{system}: {}", found.diagnostics());
        let (slot, location) = first_slot(&found.json());
        let body = booking(&slot, &location, &nhs, &format!("{system}-1"));

        let made = w
            .call("POST", "/Appointment", &token, &[FHIR_JSON], &body)
            .await;
        assert_eq!(made.status, 201, "{system}: {}", made.diagnostics());
        let appointment = made.json();
        let id = appointment["id"].as_str().unwrap().to_owned();
        let etag = made.header("etag").unwrap().to_owned();
        assert!(
            made.header("location")
                .unwrap()
                .contains(&format!("/Appointment/{id}/_history/")),
            "{system}"
        );
        assert_eq!(appointment["status"], "booked", "{system}");
        assert_eq!(appointment["start"], slot["start"], "{system}");
        assert_eq!(
            appointment["description"], "Cough for two weeks",
            "{system}"
        );
        assert_eq!(
            appointment["contained"][0]["identifier"][0]["value"], "Y90001",
            "{system}: the registry's booking organisation"
        );

        // The same identifier again books nothing; another booking of the slot is refused.
        let again = w
            .call("POST", "/Appointment", &token, &[FHIR_JSON], &body)
            .await;
        assert_eq!(again.status, 200, "{system}: {}", again.diagnostics());
        assert_eq!(again.json()["id"], appointment["id"], "{system}");
        let other = booking(&slot, &location, &nhs, &format!("{system}-2"));
        let taken = w
            .call("POST", "/Appointment", &token, &[FHIR_JSON], &other)
            .await;
        assert_eq!(taken.status, 409, "{system}: {}", taken.diagnostics());
        assert_eq!(taken.spine_code(), "DUPLICATE_REJECTED", "{system}");
        let after = w
            .call("GET", &slots_path(&practice, ""), &token, &[], b"")
            .await;
        assert!(
            !of_type(&after.json(), "Slot")
                .iter()
                .any(|s| s["id"] == slot["id"]),
            "{system}: a booked slot is still offered"
        );

        // Read back, and among the patient's appointments.
        let read = w
            .call("GET", &format!("/Appointment/{id}"), &token, &[], b"")
            .await;
        assert_eq!(read.status, 200, "{system}: {}", read.diagnostics());
        assert_eq!(read.header("etag"), Some(etag.as_str()), "{system}");
        let listed = w
            .call(
                "GET",
                &format!(
                    "/Appointment?patient={nhs}&date=ge{}&date=le{}",
                    day(0),
                    day(20)
                ),
                &token,
                &[],
                b"",
            )
            .await;
        assert_eq!(listed.status, 200, "{system}: {}", listed.diagnostics());
        assert!(
            of_type(&listed.json(), "Appointment")
                .iter()
                .any(|a| a["id"] == appointment["id"]),
            "{system}"
        );

        // Amend the comment (PUT, If-Match); a stale If-Match is refused.
        let mut amended = read.json();
        amended["comment"] = json!("Please call on arrival");
        let put = w
            .call(
                "PUT",
                &format!("/Appointment/{id}"),
                &token,
                &[FHIR_JSON, ("if-match", &etag)],
                &serde_json::to_vec(&amended).unwrap(),
            )
            .await;
        assert_eq!(put.status, 200, "{system}: {}", put.diagnostics());
        assert_eq!(put.json()["comment"], "Please call on arrival", "{system}");
        let current = put.header("etag").unwrap().to_owned();
        assert_ne!(current, etag, "{system}");
        let stale = w
            .call(
                "PUT",
                &format!("/Appointment/{id}"),
                &token,
                &[FHIR_JSON, ("if-match", &etag)],
                &serde_json::to_vec(&amended).unwrap(),
            )
            .await;
        assert_eq!(stale.status, 412, "{system}: {}", stale.diagnostics());

        // Cancel with a JSON Patch: the slot is offered again.
        let cancel = json!([
            { "op": "replace", "path": "/status", "value": "cancelled" },
            { "op": "add", "path": "/cancelationReason", "value": { "text": "Feeling better" } }
        ]);
        let cancelled = w
            .call(
                "PATCH",
                &format!("/Appointment/{id}"),
                &token,
                &[JSON_PATCH, ("if-match", &current)],
                &serde_json::to_vec(&cancel).unwrap(),
            )
            .await;
        assert_eq!(
            cancelled.status,
            200,
            "{system}: {}",
            cancelled.diagnostics()
        );
        assert_eq!(cancelled.json()["status"], "cancelled", "{system}");
        let freed = w
            .call("GET", &slots_path(&practice, ""), &token, &[], b"")
            .await;
        assert!(
            of_type(&freed.json(), "Slot")
                .iter()
                .any(|s| s["id"] == slot["id"]),
            "{system}: the cancel did not free the slot"
        );
        // A cancelled appointment stays readable, and cannot change.
        let read = w
            .call("GET", &format!("/Appointment/{id}"), &token, &[], b"")
            .await;
        assert_eq!(read.json()["status"], "cancelled", "{system}");
        let mut changed = read.json();
        changed["comment"] = json!("changed my mind");
        let refused = w
            .call(
                "PUT",
                &format!("/Appointment/{id}"),
                &token,
                &[FHIR_JSON],
                &serde_json::to_vec(&changed).unwrap(),
            )
            .await;
        assert_eq!(refused.status, 422, "{system}: {}", refused.diagnostics());
    }
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn on_every_gp_system_a_raced_slot_is_booked_once() {
    let w = World::start().await;
    let token = w.token(BOOKER).await;
    for system in SYSTEMS {
        let nhs = w.ordinary_patient(system, BOOKER);
        let practice = w.practice_of(&nhs);
        let found = w
            .call("GET", &slots_path(&practice, ""), &token, &[], b"")
            .await;
        let (slot, location) = first_slot(&found.json());
        let bodies: Vec<Vec<u8>> = (0..8)
            .map(|i| booking(&slot, &location, &nhs, &format!("{system}-race-{i}")))
            .collect();
        let answers = gp_e2e::join_all(
            bodies
                .iter()
                .map(|b| w.call("POST", "/Appointment", &token, &[FHIR_JSON], b))
                .collect(),
        )
        .await;
        let created = answers.iter().filter(|a| a.status == 201).count();
        let refused = answers.iter().filter(|a| a.status == 409).count();
        assert_eq!(
            (created, refused),
            (1, 7),
            "{system}: {:?}",
            answers.iter().map(|a| a.status).collect::<Vec<_>>()
        );
    }
    w.sandbox.shutdown().await;
}

#[tokio::test]
async fn on_every_gp_system_bad_searches_and_bookings_are_refused_naming_the_element() {
    let w = World::start().await;
    let token = w.token(BOOKER).await;
    for system in SYSTEMS {
        let nhs = w.ordinary_patient(system, BOOKER);
        let practice = w.practice_of(&nhs);
        for (query, param) in [
            (
                format!(
                    "/Slot?start=ge{}&end=le{}&status=free&_include=Slot:schedule&practice={practice}",
                    day(1),
                    day(20)
                ),
                "end",
            ),
            (
                format!(
                    "/Slot?start=ge{}&end=le{}&status=free&practice={practice}",
                    day(1),
                    day(3)
                ),
                "_include",
            ),
            (
                format!(
                    "/Slot?start=ge{}&end=le{}&status=busy&_include=Slot:schedule&practice={practice}",
                    day(1),
                    day(3)
                ),
                "status",
            ),
        ] {
            let a = w.call("GET", &query, &token, &[], b"").await;
            assert_eq!(a.status, 422, "{system}: {query}");
            assert_eq!(a.spine_code(), "INVALID_PARAMETER", "{system}: {query}");
            assert_eq!(
                a.json()["issue"][0]["expression"],
                json!([param]),
                "{system}"
            );
        }
        let found = w
            .call("GET", &slots_path(&practice, ""), &token, &[], b"")
            .await;
        let (slot, location) = first_slot(&found.json());
        let good: Value =
            serde_json::from_slice(&booking(&slot, &location, &nhs, &format!("{system}-bad")))
                .unwrap();
        for (element, edit) in [
            (
                "Appointment.reasonCode",
                json!({ "reasonCode": [{ "text": "cough" }] }),
            ),
            (
                "Appointment.specialty",
                json!({ "specialty": [{ "text": "GP" }] }),
            ),
            (
                "Appointment.description",
                json!({ "description": "x".repeat(101) }),
            ),
            (
                "Appointment.start",
                json!({ "start": "2020-01-06T09:00:00+00:00" }),
            ),
        ] {
            let mut body = good.clone();
            for (k, v) in edit.as_object().unwrap() {
                body[k] = v.clone();
            }
            let a = w
                .call(
                    "POST",
                    "/Appointment",
                    &token,
                    &[FHIR_JSON],
                    &serde_json::to_vec(&body).unwrap(),
                )
                .await;
            assert_eq!(a.status, 422, "{system}: {element}: {}", a.diagnostics());
            assert_eq!(
                a.json()["issue"][0]["expression"],
                json!([element]),
                "{system}"
            );
        }
        // None of them booked it.
        let after = w
            .call("GET", &slots_path(&practice, ""), &token, &[], b"")
            .await;
        assert!(
            of_type(&after.json(), "Slot")
                .iter()
                .any(|s| s["id"] == slot["id"]),
            "{system}"
        );
    }
    w.sandbox.shutdown().await;
}
