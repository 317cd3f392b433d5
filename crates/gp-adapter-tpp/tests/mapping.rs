#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Mapping tests on hand-written SystmOne PatientRecord XML (`fixtures/full-record.xml`,
//! inline variants of it and generated multi-page records): every entry type, every
//! quirk, paging, and bad native data.

use gp_adapter::AdapterError;
use gp_adapter_tpp::{MappedRecord, TppDataError, map_page, map_record};
use gp_fhir::model::{CONFIDENTIALITY_SYSTEM, CTV3, DMD, Resource, SNOMED};

const FULL: &str = include_str!("fixtures/full-record.xml");
const DEMO_UID: &str = "aaaaaaaa-0000-4000-8000-00000000000";

fn full() -> MappedRecord {
    map_record(&[FULL.as_bytes()], 100).unwrap()
}

fn find(r: &MappedRecord, n: char) -> &Resource {
    let id = format!("{DEMO_UID}{}", n.to_ascii_lowercase());
    r.clinical.iter().find(|x| x.id() == id).unwrap()
}

fn json(r: &Resource) -> serde_json::Value {
    serde_json::from_slice(&r.to_json()).unwrap()
}

fn err(xml: &str) -> String {
    map_record(&[xml.as_bytes()], 100).unwrap_err().to_string()
}

fn restricted(r: &Resource) -> bool {
    r.meta().is_some_and(|m| {
        m.security.iter().any(|c| {
            c.system.as_deref() == Some(CONFIDENTIALITY_SYSTEM) && c.code.as_deref() == Some("R")
        })
    })
}

#[test]
fn patient_demographics_and_quirks() {
    let r = full();
    let p = &r.patient;
    assert_eq!(p.id, "9690937278");
    let v = json(&Resource::Patient(p.clone()));
    assert_eq!(
        v["identifier"][0]["system"],
        "https://fhir.nhs.uk/Id/nhs-number"
    );
    assert_eq!(v["identifier"][0]["value"], "9690937278");
    assert_eq!(
        v["identifier"][0]["extension"][0]["valueCodeableConcept"]["coding"][0]["code"],
        "01"
    );
    assert_eq!(
        v["identifier"][1]["system"],
        "https://tpp-uk.com/Id/patient-uid"
    );
    assert_eq!(
        v["identifier"][1]["value"], "8a2f1c3e-0b1d-4e5f-9a6b-7c8d9e0f1a2b",
        "braces dropped, lower case"
    );
    assert_eq!(v["name"][0]["family"], "Smith & Co");
    assert_eq!(
        v["name"][0]["given"],
        serde_json::json!(["Jane", "Anne", "Marie"]),
        "Forename then MiddleNames"
    );
    assert_eq!(v["name"][0]["prefix"][0], "Mrs");
    assert_eq!(v["gender"], "other", "Indeterminate");
    assert_eq!(v["birthDate"], "1970-03-02");
    assert!(v.get("deceasedDateTime").is_none());
    assert_eq!(
        v["address"][0]["line"],
        serde_json::json!(["12", "Acacia Avenue"])
    );
    assert_eq!(v["address"][0]["city"], "Leeds", "AddressLine4 is the town");
    assert_eq!(v["address"][0]["postalCode"], "LS1 4AP");
    assert_eq!(v["telecom"].as_array().unwrap().len(), 2);
    assert_eq!(
        v["communication"],
        serde_json::json!([{
            "language": {"coding": [{
                "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-HumanLanguage",
                "code": "cy",
                "display": "Welsh"
            }]},
            "preferred": true
        }]),
        "MainSpokenLanguage/@Code is the preferred language"
    );
    assert_eq!(
        v["generalPractitioner"][0]["reference"],
        "Practitioner/11111111-1111-1111-1111-111111111111"
    );
    assert_eq!(
        v["managingOrganization"]["reference"],
        "Organization/Y01234"
    );
    assert_eq!(
        v["meta"]["profile"][0],
        "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"
    );
    assert!(!p.is_restricted());
    assert!(r.flags.dissent && !r.flags.restricted);
    assert_eq!(r.version, "2024-07-15T09:30:00Z");
    gp_fhir::validate::check_r4_json(&Resource::Patient(p.clone()).to_json()).unwrap();

    let org = json(&Resource::Organization(r.organization.clone()));
    assert_eq!(org["id"], "Y01234");
    assert_eq!(org["identifier"][0]["value"], "Y01234");
    assert_eq!(
        org["identifier"][1]["system"],
        "https://tpp-uk.com/Id/organisation-uid"
    );
    assert_eq!(org["name"], "Moorside Surgery");
    let gp = json(&Resource::Practitioner(r.practitioner.clone().unwrap()));
    assert_eq!(gp["id"], "11111111-1111-1111-1111-111111111111");
    assert_eq!(
        gp["identifier"][0]["system"],
        "https://tpp-uk.com/Id/staff-uid"
    );
    assert_eq!(
        gp["identifier"][1]["system"],
        "https://fhir.nhs.uk/Id/sds-user-id"
    );
    assert_eq!(gp["identifier"][2]["value"], "1234567");
    assert_eq!(gp["gender"], "male");
}

#[test]
fn no_main_spoken_language_is_no_communication() {
    let xml = FULL.replace(
        "<MainSpokenLanguage Code=\"cy\">Welsh</MainSpokenLanguage>",
        "<MainSpokenLanguage>Welsh</MainSpokenLanguage>",
    );
    assert_ne!(xml, FULL);
    let r = map_record(&[xml.as_bytes()], 100).unwrap();
    assert!(r.patient.communication.is_empty());
}

#[test]
fn an_event_without_done_by_has_no_performer() {
    // What a third-party supplier's write looks like: no practice author.
    let xml = FULL.replacen(
        "<Event EventUID=\"AAAAAAAA-0000-4000-8000-000000000002\" DateTime=\"2024-06-12T08:40:00Z\" DoneBy=\"11111111-1111-1111-1111-111111111111\"",
        "<Event EventUID=\"AAAAAAAA-0000-4000-8000-000000000002\" DateTime=\"2024-06-12T08:40:00Z\"",
        1,
    );
    assert_ne!(xml, FULL);
    let r = map_record(&[xml.as_bytes()], 100).unwrap();
    let v = json(find(&r, '2'));
    assert_eq!(v["resourceType"], "Observation");
    assert!(v.get("performer").is_none(), "{v}");
    assert_eq!(v["valueQuantity"]["value"], 132.0);
    gp_fhir::validate::check_r4_json(&find(&r, '2').to_json()).unwrap();
}

#[test]
fn every_entry_type_maps_and_is_strict_r4() {
    let r = full();
    let types: Vec<&str> = r.clinical.iter().map(Resource::resource_type).collect();
    assert_eq!(
        types,
        [
            "Encounter",
            "Observation",
            "Condition",
            "AllergyIntolerance",
            "Condition",
            "Immunization",
            "MedicationStatement",
            "Encounter",
            "Observation",
            "Observation",
        ],
        "journal order; a consultation's events follow it"
    );
    for res in &r.clinical {
        gp_fhir::validate::check_r4_json(&res.to_json())
            .unwrap_or_else(|e| panic!("{}: {e}", res.id()));
        let v = json(res);
        assert_eq!(
            v["meta"]["profile"][0],
            format!(
                "https://fhir.hl7.org.uk/StructureDefinition/UKCore-{}",
                res.resource_type()
            )
        );
        assert_eq!(
            v["identifier"][0]["system"],
            "https://tpp-uk.com/Id/event-uid"
        );
        assert_eq!(v["identifier"][0]["value"], res.id());
        assert_eq!(
            res.id(),
            res.id().to_ascii_lowercase(),
            "ids are lower case"
        );
        assert!(res.references().contains(&"Patient/9690937278"));
    }

    let enc = json(find(&r, '1'));
    assert_eq!(enc["status"], "finished");
    assert_eq!(enc["class"]["code"], "AMB");
    assert_eq!(enc["type"][0]["coding"][0]["code"], "11429006");
    assert_eq!(
        enc["participant"][0]["individual"]["reference"],
        "Practitioner/11111111-1111-1111-1111-111111111111"
    );
    assert_eq!(enc["serviceProvider"]["reference"], "Organization/Y01234");

    let obs = json(find(&r, '2'));
    assert_eq!(obs["status"], "final");
    assert_eq!(obs["valueQuantity"]["value"], 132.0);
    assert_eq!(obs["valueQuantity"]["code"], "mm[Hg]");
    assert_eq!(obs["valueQuantity"]["system"], "http://unitsofmeasure.org");
    // Grouped in consultation ...01: references its Encounter, by the lower-cased id.
    let consultation = format!("Encounter/{DEMO_UID}1");
    assert_eq!(obs["encounter"]["reference"], consultation.as_str());
    assert!(find(&r, '2').references().contains(&consultation.as_str()));
    assert_eq!(
        json(find(&r, 'a'))["encounter"]["reference"],
        format!("Encounter/{DEMO_UID}8")
    );

    let active = json(find(&r, '3'));
    assert_eq!(active["clinicalStatus"]["coding"][0]["code"], "active");
    assert_eq!(
        active["verificationStatus"]["coding"][0]["code"],
        "confirmed"
    );
    assert_eq!(
        active["category"][0]["coding"][0]["code"],
        "problem-list-item"
    );
    let past = json(find(&r, '5'));
    assert_eq!(past["clinicalStatus"]["coding"][0]["code"], "inactive");
    assert!(
        past.get("encounter").is_none(),
        "top-level Event: no encounter"
    );

    let allergy = json(find(&r, '4'));
    assert_eq!(allergy["clinicalStatus"]["coding"][0]["code"], "resolved");
    assert_eq!(
        allergy["verificationStatus"]["coding"][0]["code"],
        "confirmed"
    );
    assert_eq!(allergy["category"][0], "medication");
    assert_eq!(allergy["code"]["coding"][0]["code"], "91936005");
    assert_eq!(
        allergy["reaction"][0]["manifestation"][0]["coding"][0]["code"],
        "126485001"
    );
    assert_eq!(allergy["reaction"][0]["severity"], "moderate");
    assert_eq!(allergy["note"][0]["text"], "Ended 2025");
    assert_eq!(allergy["encounter"]["reference"], consultation.as_str());

    let imm = json(find(&r, '6'));
    assert_eq!(imm["status"], "completed");
    assert_eq!(imm["lotNumber"], "AB1234");
    assert_eq!(imm["protocolApplied"][0]["doseNumberPositiveInt"], 2);
    assert_eq!(imm["vaccineCode"]["coding"][0]["code"], "86198006");

    let med = json(find(&r, '7'));
    assert_eq!(med["status"], "active");
    assert_eq!(med["medicationCodeableConcept"]["coding"][0]["system"], DMD);
    assert_eq!(med["dosage"][0]["text"], "One tablet daily");
    assert_eq!(
        med["note"][0]["text"],
        "Repeat prescription, quantity 28 tablet"
    );
    assert_eq!(med["identifier"].as_array().unwrap().len(), 1);
    assert!(med.get("context").is_none(), "top-level Event: no context");
}

#[test]
fn dates_keep_their_precision_and_times_become_uk_local() {
    let r = full();
    let d = |n| find(&r, n).clinical_date().unwrap().to_owned();
    assert_eq!(
        d('1'),
        "2024-06-12T09:40:00+01:00",
        "08:40Z in June is 09:40 BST"
    );
    assert_eq!(d('2'), "2024-06-12T09:40:00+01:00");
    assert_eq!(d('3'), "2024-06-12", "DatePrecision Date");
    assert_eq!(d('5'), "1998", "DatePrecision Year");
    assert_eq!(json(find(&r, '5'))["abatementDateTime"], "2010-03", "Month");
    assert_eq!(d('6'), "2023-11", "DatePrecision Month");
    assert_eq!(d('7'), "2024-01-12");
    assert_eq!(d('8'), "2024-01-12T09:40:00+00:00", "GMT in January");
}

#[test]
fn codings_put_mapped_snomed_first_and_the_original_ctv3_second() {
    let r = full();
    let code = |n| match find(&r, n) {
        Resource::Observation(o) => o.code.clone(),
        Resource::Condition(c) => c.code.clone(),
        Resource::AllergyIntolerance(a) => a.code.clone(),
        other => panic!("{other:?}"),
    };
    let bp = code('2');
    assert_eq!(bp.coding.len(), 2);
    assert_eq!(bp.coding[0].system.as_deref(), Some(SNOMED));
    assert_eq!(bp.coding[0].code.as_deref(), Some("271649006"));
    assert_eq!(bp.coding[0].user_selected, None);
    assert_eq!(bp.coding[1].system.as_deref(), Some(CTV3));
    assert_eq!(bp.coding[1].code.as_deref(), Some("2469."));
    assert_eq!(bp.coding[1].user_selected, Some(true));
    assert_eq!(
        bp.text.as_deref(),
        Some("Systolic blood pressure"),
        "text = Rubric"
    );
    assert_eq!(code('3').code_in(SNOMED), Some("44054006"), "X40J5");
    assert_eq!(code('9').code_in(SNOMED), Some("999791000000106"), "XaPbt");
    let snomed = code('4');
    assert_eq!(
        snomed.coding.len(),
        1,
        "SNOMED-coded entries have one coding"
    );
    // A CTV3 code the maps lack keeps its original coding and text.
    let unmapped = code('A');
    assert_eq!(unmapped.coding.len(), 1);
    assert_eq!(unmapped.coding[0].system.as_deref(), Some(CTV3));
    assert_eq!(unmapped.coding[0].user_selected, Some(true));
    assert_eq!(unmapped.text.as_deref(), Some("Local thing"));
}

#[test]
fn confidential_events_and_consultations_are_restricted() {
    let r = full();
    assert!(
        restricted(find(&r, '4')),
        "Confidential=\"true\" on the Event"
    );
    assert!(!restricted(find(&r, '1')) && !restricted(find(&r, '2')));
    assert!(
        !restricted(find(&r, '5')),
        "no attribute means not confidential"
    );
    assert!(restricted(find(&r, '8')));
    assert!(
        restricted(find(&r, '9')) && restricted(find(&r, 'A')),
        "what is recorded in a confidential consultation is confidential"
    );
}

#[test]
fn sensitive_and_dissent_flags() {
    let sensitive = FULL.replace(
        r#"Sensitive="false" ThirdPartyDissent="true""#,
        r#"Sensitive="true" ThirdPartyDissent="false""#,
    );
    let r = map_record(&[sensitive.as_bytes()], 100).unwrap();
    assert!(r.flags.restricted && r.patient.is_restricted() && !r.flags.dissent);
    // The flags decide what may be shared, so they are never assumed.
    let e = err(&FULL.replace(
        r#"<SharingFlags Sensitive="false" ThirdPartyDissent="true"/>"#,
        "",
    ));
    assert_eq!(e, "page 1: Patient/SharingFlags is missing");
    let e = err(&FULL.replace(r#" ThirdPartyDissent="true""#, ""));
    assert_eq!(
        e,
        "page 1: Patient/SharingFlags/@ThirdPartyDissent is missing"
    );
    let e = err(&FULL.replace(r#"Sensitive="false""#, r#"Sensitive="maybe""#));
    assert!(e.contains("SharingFlags/@Sensitive is invalid"), "{e}");
}

#[test]
fn bad_native_data_is_refused_with_the_reason() {
    let cases: Vec<(String, &str)> = vec![
        ("<PatientRecord><Patient>".into(), "not well-formed XML"),
        (FULL[..FULL.len() / 2].into(), "not well-formed XML"),
        ("{\"not\": \"xml\"}".into(), "not well-formed XML"),
        ("<MedicalRecord/>".into(), "root element is <MedicalRecord>"),
        (
            FULL.replace("<NHSNumber>9690937278</NHSNumber>", ""),
            "Patient/Identity/NHSNumber is missing",
        ),
        (
            FULL.replace("9690937278", "9690937279"),
            "Patient/Identity/NHSNumber is invalid",
        ),
        (
            FULL.replace("9690937278", "969 093 7278"),
            "is not 10 digits",
        ),
        (
            FULL.replace(
                "<NHSNumberStatus>01</NHSNumberStatus>",
                "<NHSNumberStatus>99</NHSNumberStatus>",
            ),
            "NHSNumberStatus is invalid",
        ),
        (
            FULL.replace("<Sex>Indeterminate</Sex>", "<Sex>I</Sex>"),
            "Demographics/Sex is invalid",
        ),
        (
            FULL.replace("<Surname>Smith &amp; Co</Surname>", ""),
            "Demographics/Surname is missing",
        ),
        (
            FULL.replace(
                "<OrganisationID>Y01234</OrganisationID>",
                "<OrganisationID>not an ods</OrganisationID>",
            ),
            "OrganisationID is invalid",
        ),
        (
            FULL.replace(r#"<Paging Page="1" PageSize="100" TotalEvents="5"/>"#, ""),
            "page 1: Paging is missing",
        ),
        (
            FULL.replace(r#"TotalEvents="5""#, r#"TotalEvents="lots""#),
            "Paging/@TotalEvents is invalid",
        ),
        (
            FULL.replace(r#"PageSize="100""#, r#"PageSize="500""#),
            "Paging/@PageSize is invalid",
        ),
        (
            FULL.replace(r#"PageSize="100""#, r#"PageSize="2""#),
            "holds 5 events, more than its PageSize 2",
        ),
        (
            FULL.replace(r#"TotalEvents="5""#, r#"TotalEvents="6""#),
            "holds 5 events, but 6 were expected",
        ),
        (
            FULL.replace(r#"EventUID="AAAAAAAA-0000-4000-8000-000000000005" "#, ""),
            "Patient/Clinical/Event[2]/@EventUID is missing",
        ),
        (
            FULL.replace(
                r#"DateTime="2023-11-05T00:00:00Z""#,
                r#"DateTime="05/11/2023""#,
            ),
            "Patient/Clinical/Event[3]/@DateTime is invalid",
        ),
        (
            FULL.replace(
                r#"DatePrecision="Month" DoneBy"#,
                r#"DatePrecision="Week" DoneBy"#,
            ),
            "Event[3]/@DatePrecision is invalid",
        ),
        (
            FULL.replace(
                r#"<Code Scheme="CTV3">2469.</Code>"#,
                r#"<Code Scheme="READ2">2469.</Code>"#,
            ),
            "Patient/Clinical/Event[1]/Event[1]/ClinicalCode/Code/@Scheme is invalid",
        ),
        (
            FULL.replace(
                r#"<Code Scheme="CTV3">65E..</Code>"#,
                r#"<Code>65E..</Code>"#,
            ),
            "Vaccination/Code/@Scheme is missing",
        ),
        (
            FULL.replace("<Value>132</Value>", "<Value>high</Value>"),
            "ClinicalCode/Value is invalid",
        ),
        (
            FULL.replace("<Status>Resolved</Status>", ""),
            "ClinicalCode/Allergy/Status is missing",
        ),
        (
            FULL.replace(
                "<Status>Active</Status></Medication>",
                "<Status>Paused</Status></Medication>",
            ),
            "Medication/Status is invalid",
        ),
        (
            FULL.replace(
                r#"<UsualGP StaffUID="11111111-1111-1111-1111-111111111111"/>"#,
                r#"<UsualGP StaffUID="33333333-3333-3333-3333-333333333333"/>"#,
            ),
            "is not a StaffMember",
        ),
        (
            FULL.replace("</Vaccination>", "</Vaccination><Medication/>"),
            "an Event holds one entry",
        ),
        (
            FULL.replace(r#"IsAllergy="true""#, r#"IsAllergy="yes""#),
            "@IsAllergy is invalid",
        ),
        (
            FULL.replace(
                "<LastUpdated>2024-07-15T09:30:00Z</LastUpdated>",
                "<LastUpdated>2024-07-15 09:30</LastUpdated>",
            ),
            "LastUpdated is invalid",
        ),
    ];
    for (xml, want) in cases {
        let Err(e) = map_record(&[xml.as_bytes()], 100) else {
            panic!("expected '{want}', but the record mapped");
        };
        let e = e.to_string();
        assert!(e.contains(want), "expected '{want}' in: {e}");
    }
    // Invalid UTF-8 inside an element.
    let mut bytes = FULL.as_bytes().to_vec();
    let at = FULL.find("<Surname>").unwrap() + "<Surname>".len();
    bytes.splice(at..at, [0xC3, 0x28]);
    let e = map_record(&[&bytes], 100).unwrap_err();
    assert!(e.to_string().contains("not valid UTF-8"), "{e}");
    // Every one reaches the gateway as InvalidNativeData naming TPP SystmOne.
    let adapter: AdapterError = e.into();
    assert!(matches!(adapter, AdapterError::InvalidNativeData { .. }));
    assert!(
        adapter
            .to_string()
            .starts_with("TPP SystmOne returned data that cannot be read: page 1: "),
        "{adapter}"
    );
}

// ---- paging ---------------------------------------------------------------------------

/// A minimal valid page holding observation events `events` (their UID suffixes).
fn page(nhs: &str, page: u32, size: u32, total: u32, events: &[u32]) -> String {
    let mut clinical = String::new();
    for n in events {
        clinical.push_str(&format!(
            r#"<Event EventUID="e-{n}" DateTime="2020-01-01T10:00:00Z" DoneBy="s-1"><ClinicalCode><Code Scheme="CTV3">22A..</Code><Rubric>Body weight</Rubric><Value>{n}</Value><Units>kg</Units></ClinicalCode></Event>"#
        ));
    }
    format!(
        r#"<PatientRecord><PatientUID>p-1</PatientUID><OrganisationID>Y01234</OrganisationID><Paging Page="{page}" PageSize="{size}" TotalEvents="{total}"/><Organisation OrganisationUID="o-1"/><Patient><Identity><NHSNumber>{nhs}</NHSNumber><NHSNumberStatus>01</NHSNumberStatus></Identity><Demographics><Surname>Doe</Surname><DateOfBirth DatePrecision="Date">1980-01-01T00:00:00Z</DateOfBirth><LastUpdated>2024-01-01T00:00:00Z</LastUpdated></Demographics><SharingFlags Sensitive="false" ThirdPartyDissent="false"/><Clinical>{clinical}</Clinical></Patient></PatientRecord>"#
    )
}

const NHS: &str = "9690937278";

fn pages(specs: &[String], size: u32) -> Result<MappedRecord, TppDataError> {
    let bodies: Vec<&[u8]> = specs.iter().map(|s| s.as_bytes()).collect();
    map_record(&bodies, size)
}

#[test]
fn pages_join_into_one_record() {
    let r = pages(
        &[
            page(NHS, 1, 2, 5, &[1, 2]),
            page(NHS, 2, 2, 5, &[3, 4]),
            page(NHS, 3, 2, 5, &[5]),
        ],
        2,
    )
    .unwrap();
    let ids: Vec<&str> = r.clinical.iter().map(Resource::id).collect();
    assert_eq!(ids, ["e-1", "e-2", "e-3", "e-4", "e-5"]);
    // An empty journal is one page with no events.
    assert!(
        pages(&[page(NHS, 1, 100, 0, &[])], 100)
            .unwrap()
            .clinical
            .is_empty()
    );
}

#[test]
fn inconsistent_pages_are_refused() {
    let p1 = page(NHS, 1, 2, 4, &[1, 2]);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![p1.clone()],
            "1 pages were read, but TotalEvents 4 at PageSize 2 makes 2",
        ),
        (
            vec![p1.clone(), page(NHS, 3, 2, 4, &[3, 4])],
            "page 2 was answered as Page 3",
        ),
        (
            vec![p1.clone(), page(NHS, 2, 2, 5, &[3, 4])],
            "page 2 has PageSize 2 and TotalEvents 5",
        ),
        (
            vec![p1.clone(), page(NHS, 2, 2, 4, &[3])],
            "page 2 holds 1 events, but 2 were expected",
        ),
        (
            vec![p1.clone(), page("9000000009", 2, 2, 4, &[3, 4])],
            "page 2 is for patient 9000000009",
        ),
        (
            vec![p1.clone(), page(NHS, 2, 2, 4, &[2, 3])],
            "event e-2 appears more than once",
        ),
        (
            vec![page(NHS, 2, 2, 4, &[1, 2])],
            "page 1 was requested, but Page 2 was answered",
        ),
        (vec![], "no page was read"),
    ];
    for (specs, want) in cases {
        let e = pages(&specs, 2).unwrap_err();
        assert!(matches!(e, TppDataError::Paging(_)), "{e:?}");
        assert!(e.to_string().contains(want), "expected '{want}' in: {e}");
    }
    let e = pages(std::slice::from_ref(&p1), 100).unwrap_err();
    assert!(
        e.to_string()
            .contains("pageSize 100 was requested, but page 1 has PageSize 2"),
        "{e}"
    );
    // A fault on a later page names that page.
    let e = pages(
        &[
            p1,
            page(NHS, 2, 2, 4, &[3, 4]).replace("<Surname>Doe</Surname>", ""),
        ],
        2,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "page 2: Patient/Demographics/Surname is missing"
    );
}

#[test]
fn a_thousand_entry_record_maps_whole() {
    let size = 100;
    let specs: Vec<String> = (0..10)
        .map(|p| {
            let events: Vec<u32> = (p * size + 1..=(p + 1) * size).collect();
            page(NHS, p + 1, size, 1000, &events)
        })
        .collect();
    let bodies: Vec<&[u8]> = specs.iter().map(|s| s.as_bytes()).collect();
    // All ten pages joined, every event mapped once; speed is measured by the
    // benchmarks, never by a timed test.
    let record = map_record(&bodies, size).unwrap();
    assert_eq!(record.clinical.len(), 1000);
    let mut ids: Vec<&str> = record.clinical.iter().map(|c| c.id()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 1000);
}

#[test]
fn map_page_alone_reads_one_page() {
    let p = map_page(page(NHS, 2, 2, 4, &[3, 4]).as_bytes()).unwrap();
    assert_eq!((p.paging.page, p.paging.total_events, p.events), (2, 4, 2));
    assert_eq!(p.patient_uid, "p-1");
}

#[test]
fn reading_details_are_read_and_malformed_ones_refused() {
    let with = |details: &str| {
        page(NHS, 1, 100, 1, &[1]).replace(
            "<Units>kg</Units></ClinicalCode>",
            &format!("<Units>kg</Units>{details}</ClinicalCode>"),
        )
    };
    let good = with(
        r#"<Interpretation System="urn:v3" Code="L">Low</Interpretation><BodySite><Code Scheme="Snomed">368209003</Code><Rubric>Right arm</Rubric></BodySite><Method><Code Scheme="Snomed">37931006</Code><Rubric>Auscultation</Rubric></Method>"#,
    );
    let r = pages(std::slice::from_ref(&good), 100).unwrap();
    let Resource::Observation(o) = &r.clinical[0] else {
        panic!("not an Observation")
    };
    let coding = |cc: &gp_fhir::model::CodeableConcept| {
        (
            cc.coding[0].system.clone().unwrap(),
            cc.coding[0].code.clone().unwrap(),
            cc.coding[0].display.clone(),
        )
    };
    assert_eq!(
        coding(&o.interpretation[0]),
        ("urn:v3".into(), "L".into(), Some("Low".into()))
    );
    assert_eq!(
        coding(o.body_site.as_ref().unwrap()),
        (SNOMED.into(), "368209003".into(), Some("Right arm".into()))
    );
    assert_eq!(
        coding(o.method.as_ref().unwrap()),
        (
            SNOMED.into(),
            "37931006".into(),
            Some("Auscultation".into())
        )
    );
    for bad in [
        good.replace(r#" Code="L""#, ""),
        good.replace(
            r#"<Code Scheme="Snomed">368209003"#,
            r#"<Code Scheme="CTV3">368209003"#,
        ),
        good.replace(r#"<Code Scheme="Snomed">37931006</Code>"#, ""),
    ] {
        assert!(pages(std::slice::from_ref(&bad), 100).is_err(), "{bad}");
    }
}

/// Mapping only what a read wants gives exactly what mapping the whole record and keeping
/// that gives: the hand-written record, and every SystmOne patient of the sandbox
/// population, in pages small enough that blood pressures and consultations straddle
/// them, for the demographics and each clinical area.
#[test]
fn mapping_only_what_is_wanted_is_the_whole_mapping_filtered() {
    use gp_adapter::{ClinicalType, Want};
    use gp_adapter_tpp::{map_page_for, map_record_for};
    use gp_sim::{Population, PopulationSpec, SystemKind};

    const SIZE: usize = 7;
    let population = Population::generate(20_261_123, &PopulationSpec::sandbox());
    let mut records: Vec<(Vec<String>, u32)> = vec![(vec![FULL.to_owned()], 100)];
    for p in &population.patients {
        let Some(practice) = population
            .practice(&p.practice)
            .filter(|pr| pr.system == SystemKind::Tpp)
        else {
            continue;
        };
        let mut pages = vec![gp_sim::tpp::render_page(practice, p, 1, SIZE)];
        let total = map_page(pages[0].as_bytes()).unwrap().paging.pages();
        for n in 2..=total as usize {
            pages.push(gp_sim::tpp::render_page(practice, p, n, SIZE));
        }
        records.push((pages, SIZE as u32));
    }
    assert!(records.len() > 10, "the population has SystmOne patients");
    let mut areas_seen = std::collections::BTreeSet::new();
    for (pages, size) in &records {
        let bodies: Vec<&[u8]> = pages.iter().map(|s| s.as_bytes()).collect();
        let whole = map_record(&bodies, *size).unwrap();
        let first = map_page(bodies[0]).unwrap();
        let demographics = map_page_for(bodies[0], Want::Demographics).unwrap();
        assert_eq!(demographics.patient, whole.patient);
        assert_eq!(demographics.organization, whole.organization);
        assert_eq!(demographics.practitioner, whole.practitioner);
        assert_eq!(
            (&demographics.version, demographics.flags),
            (&whole.version, whole.flags)
        );
        assert_eq!(
            (demographics.paging, demographics.events),
            (first.paging, first.events)
        );
        assert!(demographics.clinical.is_empty());
        for area in ClinicalType::ALL {
            let wanted: Vec<&Resource> =
                whole.clinical.iter().filter(|r| area.matches(r)).collect();
            let mapped = map_record_for(&bodies, *size, Want::Area(*area)).unwrap();
            assert_eq!(mapped.patient, whole.patient);
            assert_eq!(
                mapped.clinical.iter().collect::<Vec<_>>(),
                wanted,
                "{area:?}"
            );
            if !wanted.is_empty() {
                areas_seen.insert(area.as_str());
            }
        }
    }
    assert_eq!(areas_seen.len(), ClinicalType::ALL.len(), "{areas_seen:?}");
}
