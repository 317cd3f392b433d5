#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Write-back rendering on its own: neutral writes → the exact Evolution JSON bodies of
//! `docs/native-formats/microtest.md`, and Evolution's answers read back.

use gp_adapter::harness::{blood_pressure, body_weight};
use gp_adapter::{AdapterError, ContactDetails, HomeAddress, UtcDateTime};
use gp_adapter_microtest::{
    MicrotestDataError, map_patient, native_datetime, native_last_modified, parse_contact_updated,
    parse_recorded, render_contact_request, render_entries_request,
};
use gp_fhir::NhsNumber;
use serde_json::{Value, json};

const NHS: &str = "9912003888";

fn nhs() -> NhsNumber {
    NhsNumber::parse(NHS).unwrap()
}

fn body(bytes: Vec<u8>) -> Value {
    serde_json::from_slice(&bytes).unwrap()
}

fn utc(year: i32, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> UtcDateTime {
    UtcDateTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
    }
}

#[test]
fn blood_pressure_is_two_snomed_readings_in_uk_local_time() {
    let bp = blood_pressure("k-1");
    assert_eq!(
        body(render_entries_request(nhs(), &bp).unwrap()),
        json!({
            "nhs_number": NHS,
            "type": "observation",
            // 07:32:05Z in July is 08:32:05 BST.
            "date": {"value": "2026-07-14T08:32:05", "precision": "datetime"},
            "readings": [
                {"code": {"snomed": "271649006", "term": "Systolic blood pressure"}, "value": "131", "unit": "mm[Hg]"},
                {"code": {"snomed": "271650006", "term": "Diastolic blood pressure"}, "value": "84", "unit": "mm[Hg]"},
            ],
            // The supplier's identifier, which Evolution keeps with the entries.
            "external_identifier": {"system": "https://harness.example/readings", "value": "k-1"},
        })
    );
}

#[test]
fn numbers_are_strings_without_exponent_or_trailing_zero() {
    let mut w = body_weight("k-2");
    assert_eq!(
        body(render_entries_request(nhs(), &w).unwrap())["readings"][0]["value"],
        "72.4"
    );
    w.measurements[0].value = 0.5;
    assert_eq!(
        body(render_entries_request(nhs(), &w).unwrap())["readings"][0]["value"],
        "0.5"
    );
    w.measurements[0].value = 120.0;
    assert_eq!(
        body(render_entries_request(nhs(), &w).unwrap())["readings"][0]["value"],
        "120"
    );
}

#[test]
fn writes_evolution_cannot_hold_are_unprocessable_before_any_call() {
    let mut w = body_weight("k-3");
    w.measurements[0].snomed = "not-a-code".into();
    assert!(matches!(
        render_entries_request(nhs(), &w),
        Err(AdapterError::Unprocessable { system, detail }) if system == gp_adapter_microtest::SYSTEM && detail.contains("not-a-code")
    ));
    let mut w = body_weight("k-4");
    w.measurements[0].value = f64::NAN;
    assert!(matches!(
        render_entries_request(nhs(), &w),
        Err(AdapterError::Unprocessable { .. })
    ));
    let mut w = body_weight("k-5");
    w.measurements.clear();
    assert!(matches!(
        render_entries_request(nhs(), &w),
        Err(AdapterError::Unprocessable { .. })
    ));
    let details = ContactDetails {
        address: Some(HomeAddress {
            lines: vec![],
            town: "Leeds".into(),
            county: String::new(),
            postcode: "LS1 4AP".into(),
        }),
        ..ContactDetails::default()
    };
    assert!(matches!(
        render_contact_request(nhs(), "2024-01-15T10:30:00", &details),
        Err(AdapterError::Unprocessable { detail, .. }) if detail.contains("0 lines")
    ));
}

#[test]
fn local_time_follows_bst() {
    assert_eq!(
        native_datetime(utc(2024, 1, 15, 10, 30, 0)),
        "2024-01-15T10:30:00"
    );
    assert_eq!(
        native_datetime(utc(2024, 6, 30, 23, 15, 0)),
        "2024-07-01T00:15:00"
    );
    // BST starts at 01:00 GMT on 31 March 2024 and ends at 01:00 GMT on 27 October.
    assert_eq!(
        native_datetime(utc(2024, 3, 31, 0, 59, 59)),
        "2024-03-31T00:59:59"
    );
    assert_eq!(
        native_datetime(utc(2024, 3, 31, 1, 0, 0)),
        "2024-03-31T02:00:00"
    );
    assert_eq!(
        native_datetime(utc(2024, 10, 27, 0, 30, 0)),
        "2024-10-27T01:30:00"
    );
    assert_eq!(
        native_datetime(utc(2024, 10, 27, 1, 30, 0)),
        "2024-10-27T01:30:00"
    );
}

#[test]
fn versions_become_last_modified_values() {
    // The versions map_patient answers: the local time before the offset.
    for (version, native) in [
        ("2024-01-15T10:30:00+00:00", "2024-01-15T10:30:00"),
        ("2024-06-12T09:40:00+01:00", "2024-06-12T09:40:00"),
        // The repeated autumn hour stays as recorded.
        ("2024-10-27T01:30:00+01:00", "2024-10-27T01:30:00"),
    ] {
        assert_eq!(native_last_modified(version).as_deref(), Some(native));
    }
    // Every version map_patient gives maps back to the last_modified it read.
    for value in [
        "2024-01-15T10:30:00",
        "2024-07-01T00:00:01",
        "2024-03-31T02:30:00",
    ] {
        let mut doc = patient_doc();
        doc["last_modified"]["value"] = json!(value);
        let version = map_patient(doc.to_string().as_bytes()).unwrap().version;
        assert_eq!(native_last_modified(&version).as_deref(), Some(value));
    }
    // Other forms of the same instant are converted; non-instants are not versions.
    assert_eq!(
        native_last_modified("2024-06-12T08:40:00Z").as_deref(),
        Some("2024-06-12T09:40:00")
    );
    for bad in ["", "W/\"3\"", "2024-06-12", "2024-06-12T08:40:00"] {
        assert_eq!(native_last_modified(bad), None, "{bad}");
    }
}

#[test]
fn contact_details_are_every_field_with_null_for_none() {
    let details = ContactDetails {
        home_phone: Some("01632 960123".into()),
        mobile: None,
        email: Some("jane@example.com".into()),
        address: Some(HomeAddress {
            lines: vec!["12 Harness Row".into(), " Testville ".into()],
            town: "Leeds".into(),
            county: "West Yorkshire".into(),
            postcode: "LS1 4AP".into(),
        }),
        language: Some("cy".into()),
    };
    assert_eq!(
        body(render_contact_request(nhs(), "2024-01-15T10:30:00", &details).unwrap()),
        json!({
            "nhs_number": NHS,
            "last_modified": {"value": "2024-01-15T10:30:00", "precision": "datetime"},
            "home_phone": "01632 960123",
            "mobile_phone": null,
            "email": "jane@example.com",
            "address": {"lines": ["12 Harness Row", "Testville"], "town": "Leeds", "county": "West Yorkshire", "postcode": "LS1 4AP"},
            "preferred_language": {"code": "cy"},
        })
    );
    assert_eq!(
        body(
            render_contact_request(nhs(), "2024-01-15T10:30:00", &ContactDetails::default())
                .unwrap()
        ),
        json!({
            "nhs_number": NHS,
            "last_modified": {"value": "2024-01-15T10:30:00", "precision": "datetime"},
            "home_phone": null,
            "mobile_phone": null,
            "email": null,
            "address": null,
            "preferred_language": null,
        })
    );
}

/// What a contact update writes is what the read mapping gives back.
#[test]
fn contact_update_round_trips_through_the_read_mapping() {
    let details = ContactDetails {
        home_phone: Some("01632 960123".into()),
        mobile: Some("07700 900456".into()),
        email: None,
        address: Some(HomeAddress {
            lines: vec!["Flat 2".into(), "12 Harness Row".into(), "Testville".into()],
            town: "Leeds".into(),
            county: "West Yorkshire".into(),
            postcode: "LS1 4AP".into(),
        }),
        language: Some("pl".into()),
    };
    let sent = body(render_contact_request(nhs(), "2024-01-15T10:30:00", &details).unwrap());
    let mut doc = patient_doc();
    for (from, to) in [
        ("home_phone", "home_phone"),
        ("mobile_phone", "mobile_phone"),
        ("email", "email"),
        ("address", "address"),
        ("preferred_language", "preferred_language"),
    ] {
        doc[to] = sent[from].clone();
    }
    let p = map_patient(doc.to_string().as_bytes()).unwrap().patient;
    let a = &p.address[0];
    assert_eq!(a.line, details.address.as_ref().unwrap().lines);
    assert_eq!(
        (
            a.city.as_deref(),
            a.district.as_deref(),
            a.postal_code.as_deref()
        ),
        (Some("Leeds"), Some("West Yorkshire"), Some("LS1 4AP"))
    );
    let telecom: Vec<(Option<&str>, Option<&str>, Option<&str>)> = p
        .telecom
        .iter()
        .map(|t| (t.system.as_deref(), t.use_.as_deref(), t.value.as_deref()))
        .collect();
    assert_eq!(
        telecom,
        [
            (Some("phone"), Some("home"), Some("01632 960123")),
            (Some("phone"), Some("mobile"), Some("07700 900456")),
        ]
    );
    assert_eq!(p.preferred_language(), Some("pl"));
}

#[test]
fn answers_are_read_strictly() {
    assert_eq!(
        parse_recorded(br#"{"entry_ids":["a-1","b-2"]}"#, 2).unwrap(),
        ["a-1", "b-2"]
    );
    assert!(matches!(
        parse_recorded(br#"{"entry_ids":["a-1"]}"#, 2),
        Err(MicrotestDataError::Invalid { path, .. }) if path == "entry_ids"
    ));
    assert!(matches!(
        parse_recorded(br#"{"entry_ids":["a 1"]}"#, 1),
        Err(MicrotestDataError::Invalid { path, .. }) if path == "entry_ids[0]"
    ));
    assert!(matches!(
        parse_recorded(b"{}", 1),
        Err(MicrotestDataError::Missing { path }) if path == "entry_ids"
    ));
    let answer = br#"{"patient_id":"p-1","last_modified":{"value":"2024-06-12T09:40:01","precision":"datetime"}}"#;
    assert_eq!(
        parse_contact_updated(answer, "p-1").unwrap(),
        "2024-06-12T09:40:01+01:00"
    );
    assert!(matches!(
        parse_contact_updated(answer, "p-2"),
        Err(MicrotestDataError::Invalid { path, .. }) if path == "patient_id"
    ));
    assert!(matches!(
        parse_contact_updated(
            br#"{"patient_id":"p-1","last_modified":{"value":"2024-06-12","precision":"day"}}"#,
            "p-1"
        ),
        Err(MicrotestDataError::Invalid { .. })
    ));
}

#[test]
fn preferred_language_is_mapped_and_checked() {
    let mut doc = patient_doc();
    let p = map_patient(doc.to_string().as_bytes()).unwrap().patient;
    assert_eq!(
        serde_json::to_value(&p.communication).unwrap(),
        json!([{
            "language": {"coding": [{
                "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-HumanLanguage",
                "code": "cy",
                "display": "Welsh",
            }]},
            "preferred": true,
        }])
    );
    doc["preferred_language"] = Value::Null;
    assert!(
        map_patient(doc.to_string().as_bytes())
            .unwrap()
            .patient
            .communication
            .is_empty()
    );
    doc["preferred_language"] = json!({"code": "Welsh!"});
    assert_eq!(
        map_patient(doc.to_string().as_bytes()).unwrap_err(),
        MicrotestDataError::Invalid {
            path: "preferred_language.code".into(),
            reason: "'Welsh!' is not a language code".into()
        }
    );
    doc["preferred_language"] = json!({"term": "Welsh"});
    assert_eq!(
        map_patient(doc.to_string().as_bytes()).unwrap_err(),
        MicrotestDataError::Missing {
            path: "preferred_language.code".into()
        }
    );
}

fn patient_doc() -> Value {
    json!({
        "patient_id": "p-1",
        "family_name": "Smith",
        "nhs_number": NHS,
        "nhs_number_status": "01",
        "date_of_birth": {"value": "1970-03-02", "precision": "day"},
        "address": {"lines": ["12", "Acacia Avenue"], "town": "Leeds", "county": "West Yorkshire", "postcode": "LS1 4AP"},
        "home_phone": "01632 960001",
        "mobile_phone": null,
        "email": null,
        "preferred_language": {"code": "cy", "term": "Welsh"},
        "last_modified": {"value": "2024-01-15T10:30:00", "precision": "datetime"},
        "site": {"site_id": "s-1", "ods_code": "M85001"},
    })
}

#[test]
fn reading_details_are_carried_in_the_entries_body() {
    let coded = |system: &str, code: &str, display: &str| gp_adapter::Coded {
        system: system.into(),
        code: code.into(),
        display: Some(display.into()),
    };
    let v3 = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
    let mut bp = blood_pressure("k-9");
    bp.measurements[0].interpretation = Some(coded(v3, "H", "High"));
    bp.details = gp_adapter::ReadingDetails {
        date_only: true,
        original_codings: vec![coded("http://loinc.org", "85354-9", "Blood pressure panel")],
        interpretation: Some(coded(v3, "H", "High")),
        body_site: Some(coded("http://snomed.info/sct", "368209003", "Right arm")),
        method: Some(coded("http://snomed.info/sct", "37931006", "Auscultation")),
        device: Some("Omron M3".into()),
        performer: Some("clin-7".into()),
    };
    let b = body(render_entries_request(nhs(), &bp).unwrap());
    // A date alone is the UTC date as given, with precision day.
    assert_eq!(
        b["date"],
        json!({"value": "2026-07-14", "precision": "day"})
    );
    assert_eq!(
        b["readings"][0]["interpretation"],
        json!({"system": v3, "code": "H", "term": "High"})
    );
    assert!(b["readings"][1].get("interpretation").is_none());
    assert_eq!(b["interpretation"]["code"], "H");
    assert_eq!(
        b["body_site"],
        json!({"system": "http://snomed.info/sct", "code": "368209003", "term": "Right arm"})
    );
    assert_eq!(b["method"]["code"], "37931006");
    assert_eq!(b["device"], "Omron M3");
    assert_eq!(b["clinician_id"], "clin-7");
    assert_eq!(
        b["original_codes"],
        json!([{"system": "http://loinc.org", "code": "85354-9", "term": "Blood pressure panel"}])
    );
    // A single reading's interpretation travels on the reading, wherever it was given.
    let mut w = body_weight("k-10");
    w.details.interpretation = Some(coded(v3, "L", "Low"));
    let b = body(render_entries_request(nhs(), &w).unwrap());
    assert_eq!(b["readings"][0]["interpretation"]["code"], "L");
    assert!(b.get("interpretation").is_none());
    assert!(b.get("clinician_id").is_none() && b.get("device").is_none());
}
