#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Mapping tests on hand-written Vision extracts: every entry kind, every quirk
//! (partial dates, HHMM times, sex codes, quoting, one-row BP), and bad native data.

use gp_adapter_vision::{
    JournalOwner, VisionDataError, map_journal, map_patient, map_practice, map_staff,
};
use gp_fhir::model::{CONFIDENTIALITY_SYSTEM, DMD, READ_V2, Resource, SNOMED};
use gp_fhir::{NhsNumber, OdsCode};

const JOURNAL_COLUMNS: &str = "PID|ID|DATE|CODE|SNOMED_CODE|DMD_CODE|RUBRIC|VALUE1|VALUE2|END_DATE|SEVERITY|TIME|TYPE|STATUS|UNITS|CATEGORY|AUTHOR|CONSULTATION_ID|CONFIDENTIAL|DOSAGE|QUANTITY|QUANTITY_UNITS|PRESCRIPTION_TYPE|BATCH|DOSE_NO|REACTION_CODE|REACTION_SNOMED|REACTION_RUBRIC|EXT_SYSTEM|EXT_ID";

const PATIENT: &str = concat!(
    "PID|NHS_NUMBER|SURNAME|FORENAME|DATE_OF_BIRTH|SEX|POSTCODE|GP_USUAL|ACTIVE|TITLE|MIDDLE_NAMES|ADDRESS1|ADDRESS2|ADDRESS3|TOWN|COUNTY|HOME_PHONE|MOBILE_PHONE|EMAIL|NHS_NUMBER_STATUS|DATE_OF_DEATH|REGISTERED_DATE|SENSITIVE|DISSENT|LAST_MODIFIED\r\n",
    "P1001|9658218865|\"O\"\"Brien | Smith\"|Jane|19700300|2|LS1 4AP|S01|Y|Mrs|Anne Marie|12|Acacia Avenue||Leeds|West Yorkshire|0113 496 0000||jane@example.com|01||20050401|N|Y|20240615103000\r\n",
    "EOF|1\r\n"
);

fn ods() -> OdsCode {
    OdsCode::parse("B82617").unwrap()
}

fn owner() -> JournalOwner {
    JournalOwner {
        pid: "P1001".into(),
        nhs_number: NhsNumber::parse("9658218865").unwrap(),
        ods: ods(),
    }
}

/// A journal body from rows given as `COLUMN=value` pairs (other columns empty).
fn journal(rows: &[&[(&str, &str)]]) -> String {
    let cols: Vec<&str> = JOURNAL_COLUMNS.split('|').collect();
    let mut out = format!("{JOURNAL_COLUMNS}\r\n");
    for row in rows {
        let fields: Vec<String> = cols
            .iter()
            .map(|c| {
                let v = if *c == "PID" { "P1001" } else { "" };
                let v = row.iter().find(|(k, _)| k == c).map_or(v, |(_, v)| v);
                if v.contains(['|', '"']) {
                    format!("\"{}\"", v.replace('"', "\"\""))
                } else {
                    v.to_owned()
                }
            })
            .collect();
        out.push_str(&fields.join("|"));
        out.push_str("\r\n");
    }
    out.push_str(&format!("EOF|{}\r\n", rows.len()));
    out
}

fn map(rows: &[&[(&str, &str)]]) -> Vec<Resource> {
    map_journal(&[journal(rows)], &owner()).unwrap()
}

fn err(rows: &[&[(&str, &str)]]) -> String {
    map_journal(&[journal(rows)], &owner())
        .unwrap_err()
        .to_string()
}

fn json(r: &Resource) -> serde_json::Value {
    serde_json::from_slice(&r.to_json()).unwrap()
}

#[test]
fn patient_demographics_and_quirks() {
    let p = map_patient(PATIENT.as_bytes(), &ods()).unwrap();
    assert_eq!(p.pid, "p1001", "ids are lower-cased");
    assert_eq!(
        p.version, "2024-06-15T10:30:00+01:00",
        "LAST_MODIFIED in BST"
    );
    assert!(!p.flags.restricted && p.flags.dissent);
    assert_eq!(p.usual_gp.as_deref(), Some("s01"));
    let v = json(&Resource::Patient(p.patient));
    assert_eq!(v["id"], "9658218865");
    assert_eq!(
        v["identifier"][0]["system"],
        "https://fhir.nhs.uk/Id/nhs-number"
    );
    assert_eq!(
        v["identifier"][0]["extension"][0]["valueCodeableConcept"]["coding"][0]["code"],
        "01"
    );
    assert_eq!(
        v["identifier"][1]["system"],
        "https://inps.co.uk/Id/patient-id"
    );
    assert_eq!(
        v["name"][0]["family"], "O\"Brien | Smith",
        "quoted field with a pipe and a doubled quote"
    );
    assert_eq!(
        v["name"][0]["given"],
        serde_json::json!(["Jane", "Anne", "Marie"])
    );
    assert_eq!(v["name"][0]["prefix"][0], "Mrs");
    assert_eq!(v["gender"], "female", "sex code 2");
    assert_eq!(v["birthDate"], "1970-03", "YYYYMM00 is a month");
    assert_eq!(
        v["address"][0]["line"],
        serde_json::json!(["12", "Acacia Avenue"])
    );
    assert_eq!(v["address"][0]["postalCode"], "LS1 4AP");
    assert_eq!(
        v["telecom"].as_array().unwrap().len(),
        2,
        "empty MOBILE_PHONE dropped"
    );
    assert_eq!(v["generalPractitioner"][0]["reference"], "Practitioner/s01");
    assert_eq!(
        v["managingOrganization"]["reference"],
        "Organization/B82617"
    );
    assert_eq!(v["active"], true);
    assert!(v.get("deceasedDateTime").is_none());
    assert_eq!(
        v["meta"]["profile"][0],
        "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"
    );
}

#[test]
fn sex_codes() {
    for (code, gender) in [
        ("1", "male"),
        ("2", "female"),
        ("9", "other"),
        ("0", "unknown"),
    ] {
        let body = PATIENT.replace("|19700300|2|", &format!("|19700300|{code}|"));
        let p = map_patient(body.as_bytes(), &ods()).unwrap();
        assert_eq!(p.patient.gender.as_deref(), Some(gender), "{code}");
    }
    let body = PATIENT.replace("|19700300|2|", "|19700300|F|");
    assert_eq!(
        map_patient(body.as_bytes(), &ods())
            .unwrap_err()
            .to_string(),
        "patient extract row 2 SEX is invalid: 'F' is not 1, 2, 9 or 0"
    );
}

#[test]
fn practice_and_staff() {
    let practice = "ODS_CODE|PRACTICE_ID|NAME|ADDRESS1|ADDRESS2|ADDRESS3|TOWN|COUNTY|POSTCODE|PHONE\r\nB82617|ORG-1|Riverside Medical Practice|1|High St||Leeds||LS1 1AA|0113 496 0001\r\nEOF|1\r\n";
    let (o, org) = map_practice(practice.as_bytes()).unwrap();
    assert_eq!(o, ods());
    let v = json(&Resource::Organization(org));
    assert_eq!(v["id"], "B82617");
    assert_eq!(v["identifier"][0]["value"], "B82617");
    assert_eq!(
        v["identifier"][1]["system"],
        "https://inps.co.uk/Id/practice-id"
    );
    assert_eq!(v["name"], "Riverside Medical Practice");
    let staff = "STAFF_ID|TITLE|FORENAME|SURNAME|SEX|ROLE|SDS_USER_ID|GMC_NUMBER\r\nS01|Dr|Amir|Khan|1|GP|100200300401|1234567\r\nS02|Mrs|Ann|Lee|2|Practice Nurse|100200300402|\r\nEOF|2\r\n";
    let gp = map_staff(staff.as_bytes(), "s01").unwrap().unwrap();
    let v = json(&Resource::Practitioner(gp));
    assert_eq!(v["id"], "s01");
    assert_eq!(
        v["identifier"][0]["system"],
        "https://inps.co.uk/Id/staff-id"
    );
    assert_eq!(v["identifier"][2]["value"], "1234567");
    assert_eq!(v["name"][0]["prefix"][0], "Dr");
    assert_eq!(v["gender"], "male");
    assert!(map_staff(staff.as_bytes(), "s99").unwrap().is_none());
}

#[test]
fn observation_with_read_code_time_and_value() {
    let r = map(&[&[
        ("ID", "J1"),
        ("TYPE", "OBSERVATION"),
        ("DATE", "20240112"),
        ("TIME", "0940"),
        ("CODE", "22A.."),
        ("SNOMED_CODE", "27113001"),
        ("RUBRIC", "Body weight"),
        ("VALUE1", "72.5"),
        ("UNITS", "kg"),
        ("AUTHOR", "S01"),
        ("CONFIDENTIAL", "Y"),
    ]]);
    let v = json(&r[0]);
    assert_eq!(v["resourceType"], "Observation");
    assert_eq!(v["id"], "j1");
    assert_eq!(
        v["identifier"][0]["system"],
        "https://inps.co.uk/Id/journal-id"
    );
    assert_eq!(v["status"], "final");
    assert_eq!(v["effectiveDateTime"], "2024-01-12T09:40:00+00:00");
    assert_eq!(v["code"]["coding"][0]["system"], SNOMED);
    assert_eq!(v["code"]["coding"][0]["code"], "27113001");
    assert_eq!(v["code"]["coding"][1]["system"], READ_V2);
    assert_eq!(v["code"]["coding"][1]["code"], "22A..");
    assert_eq!(v["code"]["coding"][1]["userSelected"], true);
    assert_eq!(v["code"]["text"], "Body weight");
    assert_eq!(v["valueQuantity"]["value"], 72.5);
    assert_eq!(v["valueQuantity"]["code"], "kg");
    assert_eq!(v["performer"][0]["reference"], "Practitioner/s01");
    assert_eq!(v["meta"]["security"][0]["system"], CONFIDENTIALITY_SYSTEM);
    assert_eq!(v["subject"]["reference"], "Patient/9658218865");
}

#[test]
fn one_bp_row_becomes_one_panel_with_both_readings() {
    let r = map(&[&[
        ("ID", "BP1"),
        ("TYPE", "OBSERVATION"),
        ("DATE", "20240112"),
        ("CODE", "246.."),
        ("SNOMED_CODE", "75367002"),
        ("RUBRIC", "O/E - blood pressure reading"),
        ("VALUE1", "128"),
        ("VALUE2", "82"),
        ("UNITS", "mm[Hg]"),
        ("EXT_SYSTEM", "https://example.com/r"),
        ("EXT_ID", "r-1"),
    ]]);
    assert_eq!(r.len(), 1);
    let p = json(&r[0]);
    assert_eq!(p["id"], "bp1", "the row's id");
    assert_eq!(p["code"]["coding"][0]["code"], "75367002");
    assert_eq!(p["code"]["coding"][1]["code"], "246..");
    assert_eq!(p["category"][0]["coding"][0]["code"], "vital-signs");
    let (s, d) = (&p["component"][0], &p["component"][1]);
    assert_eq!(s["code"]["coding"][0]["code"], "271649006");
    assert_eq!(s["code"]["coding"][1]["code"], "2469.");
    assert_eq!(s["code"]["text"], "Systolic blood pressure");
    assert_eq!(d["code"]["coding"][0]["code"], "271650006");
    assert_eq!(d["code"]["coding"][1]["code"], "246A.");
    assert_eq!(s["valueQuantity"]["value"], 128.0);
    assert_eq!(d["valueQuantity"]["value"], 82.0);
    assert_eq!(d["valueQuantity"]["unit"], "mm[Hg]");
    assert_eq!(
        p["identifier"][0],
        serde_json::json!({"system": "https://example.com/r", "value": "r-1"}),
        "the supplier's identifier first"
    );
    assert_eq!(p["identifier"][1]["value"], "bp1", "then the native row id");
    // VALUE2 on anything but BP is refused, as is a BP row without VALUE1.
    let e = err(&[&[
        ("ID", "X"),
        ("TYPE", "OBSERVATION"),
        ("CODE", "22A.."),
        ("VALUE1", "1"),
        ("VALUE2", "2"),
    ]]);
    assert!(e.contains("VALUE2 is invalid"), "{e}");
    let e = err(&[&[
        ("ID", "X"),
        ("TYPE", "OBSERVATION"),
        ("CODE", "246.."),
        ("VALUE2", "80"),
    ]]);
    assert_eq!(e, "journal extract row 2 VALUE1 is missing");
}

#[test]
fn problem_allergy_immunisation_therapy_consultation() {
    let r = map(&[
        &[
            ("ID", "PR1"),
            ("TYPE", "PROBLEM"),
            ("DATE", "19980000"),
            ("CODE", "H33.."),
            ("RUBRIC", "Asthma"),
            ("STATUS", "PAST"),
            ("END_DATE", "20100500"),
            ("SEVERITY", "MAJOR"),
        ],
        &[
            ("ID", "AL1"),
            ("TYPE", "ALLERGY"),
            ("DATE", "20150310"),
            ("SNOMED_CODE", "91936005"),
            ("RUBRIC", "Allergy to penicillin"),
            ("STATUS", "ACTIVE"),
            ("CATEGORY", "DRUG"),
            ("SEVERITY", "SEVERE"),
            ("REACTION_SNOMED", "39579001"),
            ("REACTION_RUBRIC", "Anaphylaxis"),
        ],
        &[
            ("ID", "IM1"),
            ("TYPE", "IMMUNISATION"),
            ("DATE", "20231005"),
            ("CODE", "65E.."),
            ("RUBRIC", "Influenza vaccination"),
            ("BATCH", "AB1234"),
            ("DOSE_NO", "1"),
            ("CONSULTATION_ID", "CO1"),
        ],
        &[
            ("ID", "TH1"),
            ("TYPE", "THERAPY"),
            ("DATE", "20240101"),
            ("DMD_CODE", "42206511000001102"),
            ("RUBRIC", "Salbutamol 100micrograms/dose inhaler"),
            ("STATUS", "CANCELLED"),
            ("END_DATE", "20240301"),
            ("DOSAGE", "Two puffs \"when\" needed | max 8"),
            ("QUANTITY", "1"),
            ("QUANTITY_UNITS", "inhaler"),
            ("PRESCRIPTION_TYPE", "REPEAT"),
            ("CONSULTATION_ID", "CO1"),
        ],
        &[
            ("ID", "CO1"),
            ("TYPE", "CONSULTATION"),
            ("DATE", "20240701"),
            ("TIME", "1415"),
            ("CODE", "9N1C."),
            ("RUBRIC", "Seen in GP's surgery"),
            ("AUTHOR", "S01"),
            ("VALUE1", "10"),
            ("UNITS", "min"),
        ],
    ]);
    let v: Vec<serde_json::Value> = r.iter().map(json).collect();
    // Problem
    assert_eq!(v[0]["resourceType"], "Condition");
    assert_eq!(v[0]["onsetDateTime"], "1998", "YYYY0000 is a year");
    assert_eq!(v[0]["abatementDateTime"], "2010-05");
    assert_eq!(v[0]["clinicalStatus"]["coding"][0]["code"], "inactive");
    assert_eq!(
        v[0]["category"][0]["coding"][0]["code"],
        "problem-list-item"
    );
    assert_eq!(v[0]["code"]["coding"][0]["code"], "195967001");
    assert!(v[0].get("encounter").is_none(), "no CONSULTATION_ID");
    // Allergy: SNOMED-only row, SNOMED-only reaction
    assert_eq!(v[1]["resourceType"], "AllergyIntolerance");
    assert_eq!(v[1]["code"]["coding"][0]["system"], SNOMED);
    assert_eq!(v[1]["code"]["coding"].as_array().unwrap().len(), 1);
    assert_eq!(v[1]["category"][0], "medication");
    assert_eq!(v[1]["clinicalStatus"]["coding"][0]["code"], "active");
    assert_eq!(
        v[1]["reaction"][0]["manifestation"][0]["coding"][0]["code"],
        "39579001"
    );
    assert_eq!(v[1]["reaction"][0]["severity"], "severe");
    // Immunisation
    assert_eq!(v[2]["resourceType"], "Immunization");
    assert_eq!(v[2]["occurrenceDateTime"], "2023-10-05");
    assert_eq!(v[2]["lotNumber"], "AB1234");
    assert_eq!(v[2]["protocolApplied"][0]["doseNumberPositiveInt"], 1);
    assert_eq!(v[2]["vaccineCode"]["coding"][0]["code"], "86198006");
    // Recorded in consultation CO1: references the Encounter that row becomes (lower case).
    assert_eq!(v[2]["encounter"]["reference"], "Encounter/co1");
    // Therapy: dm+d only, quoted dosage
    assert_eq!(v[3]["resourceType"], "MedicationStatement");
    assert_eq!(v[3]["status"], "stopped");
    assert_eq!(
        v[3]["medicationCodeableConcept"]["coding"][0]["system"],
        DMD
    );
    assert_eq!(
        v[3]["dosage"][0]["text"],
        "Two puffs \"when\" needed | max 8"
    );
    assert_eq!(v[3]["effectivePeriod"]["end"], "2024-03-01");
    assert_eq!(
        v[3]["note"][0]["text"],
        "Repeat prescription, quantity 1 inhaler"
    );
    assert_eq!(v[3]["identifier"].as_array().unwrap().len(), 1);
    assert_eq!(v[3]["context"]["reference"], "Encounter/co1");
    // Consultation
    assert_eq!(v[4]["resourceType"], "Encounter");
    assert_eq!(v[4]["id"], "co1");
    assert_eq!(v[4]["period"]["start"], "2024-07-01T14:15:00+01:00");
    assert_eq!(v[4]["class"]["code"], "AMB");
    assert_eq!(
        v[4]["participant"][0]["individual"]["reference"],
        "Practitioner/s01"
    );
}

#[test]
fn bad_rows_fail_the_whole_journal() {
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("ID", "X"), ("TYPE", "LETTER")],
            "TYPE is invalid: 'LETTER' is not CONSULTATION",
        ),
        (
            vec![("TYPE", "OBSERVATION"), ("CODE", "22A..")],
            "row 2 ID is missing",
        ),
        (
            vec![("ID", "a b"), ("TYPE", "OBSERVATION")],
            "ID is invalid: 'a b' is not a Vision id",
        ),
        (
            vec![
                ("ID", "X"),
                ("TYPE", "OBSERVATION"),
                ("CODE", "22A.."),
                ("DATE", "20241301"),
            ],
            "DATE is invalid",
        ),
        (
            vec![
                ("ID", "X"),
                ("TYPE", "OBSERVATION"),
                ("CODE", "22A.."),
                ("DATE", "20240100"),
                ("TIME", "0940"),
            ],
            "TIME is invalid: a TIME on a partial DATE",
        ),
        (
            vec![
                ("ID", "X"),
                ("TYPE", "OBSERVATION"),
                ("CODE", "22A.."),
                ("DATE", "20240101"),
                ("TIME", "2460"),
            ],
            "'2460' is not HHMM",
        ),
        (
            vec![
                ("ID", "X"),
                ("TYPE", "OBSERVATION"),
                ("CODE", "22A.."),
                ("VALUE1", "high"),
            ],
            "VALUE1 is invalid: 'high' is not a number",
        ),
        (
            vec![("ID", "X"), ("TYPE", "OBSERVATION"), ("CODE", "H33")],
            "CODE is invalid",
        ),
        (
            vec![("ID", "X"), ("TYPE", "OBSERVATION")],
            "row 2 CODE is missing",
        ),
        (
            vec![("ID", "X"), ("TYPE", "THERAPY"), ("STATUS", "ACTIVE")],
            "row 2 DMD_CODE is missing",
        ),
        (
            vec![
                ("ID", "X"),
                ("TYPE", "PROBLEM"),
                ("CODE", "H33.."),
                ("STATUS", "Maybe"),
            ],
            "STATUS is invalid",
        ),
        (
            vec![("ID", "X"), ("TYPE", "IMMUNISATION"), ("CODE", "65E..")],
            "row 2 DATE is missing",
        ),
        (
            vec![
                ("ID", "X"),
                ("TYPE", "OBSERVATION"),
                ("CODE", "22A.."),
                ("CONFIDENTIAL", "maybe"),
            ],
            "CONFIDENTIAL is invalid",
        ),
        (
            vec![
                ("PID", "P9999"),
                ("ID", "X"),
                ("TYPE", "OBSERVATION"),
                ("CODE", "22A.."),
            ],
            "PID is invalid: the row is for patient P9999, not P1001",
        ),
    ];
    for (row, want) in cases {
        let e = err(&[&row]);
        assert!(e.contains(want), "{row:?}: {e}");
    }
}

#[test]
fn malformed_extracts_are_refused_never_half_mapped() {
    let good = journal(&[&[("ID", "X"), ("TYPE", "OBSERVATION"), ("CODE", "22A..")]]);
    let cases: Vec<(String, &str)> = vec![
        (
            good.replace("|OBSERVATION|", "|OBSERVATION|extra|"),
            "has 31 fields, the header has 30",
        ),
        (
            good[..good.len() - 12].to_owned(),
            "truncated: row 2 does not end with CRLF",
        ),
        (good[..good.len() / 3].to_owned(), "not a Vision extract"),
        (good.replace("EOF|1", "EOF|2"), "truncated: the EOF trailer"),
        (good.replace("\r\n", "\n"), "does not end with CRLF"),
        (good.replace("|X|", "|\"X|"), "truncated"),
        ("<html>Please log in</html>".to_owned(), "malformed"),
        (good.replace("TYPE", "KIND"), "header has no TYPE column"),
        ("ERROR|INTERNAL_ERROR|x\r\n".to_owned(), "an ERROR line"),
    ];
    for (body, want) in cases {
        let e = map_journal(std::slice::from_ref(&body), &owner())
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{body:?}: {e}");
    }
    let mut bad = good.into_bytes();
    bad.insert(bad.len() - 12, 0xE9);
    assert!(matches!(
        map_journal(&[bad], &owner()),
        Err(VisionDataError::NotUtf8 {
            extract: "journal extract",
            ..
        })
    ));
}

#[test]
fn bad_patient_extracts() {
    let cases: Vec<(String, &str)> = vec![
        (PATIENT.replace("|9658218865|", "||"), "patient extract row 2 NHS_NUMBER is missing"),
        (PATIENT.replace("|9658218865|", "|9658218866|"), "NHS_NUMBER is invalid"),
        (PATIENT.replace("|01||", "|10||"), "NHS_NUMBER_STATUS is invalid: '10' is not a code 01 to 08"),
        (PATIENT.replace("|20240615103000", "|2024061510"), "LAST_MODIFIED is invalid"),
        (PATIENT.replace("|19700300|", "|19701300|"), "DATE_OF_BIRTH is invalid"),
        (PATIENT.replace("EOF|1", "EOF|0"), "truncated"),
        (PATIENT.replace("\r\nEOF|1", "\r\nP1002|9000000009|A|B|19700101|1||||||||||||||01||20050401|N|N|20240101000000\r\nEOF|2"), "has 2 data rows, expected exactly 1"),
    ];
    for (body, want) in cases {
        let e = map_patient(body.as_bytes(), &ods())
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{want}: {e}");
    }
    let mut bad = PATIENT.as_bytes().to_vec();
    bad.insert(PATIENT.find("Jane").unwrap(), 0xE9);
    let e = map_patient(&bad, &ods()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("the patient extract is not valid UTF-8"),
        "{e}"
    );
}

#[test]
fn a_thousand_entry_journal_maps_whole() {
    let row: &[(&str, &str)] = &[
        ("TYPE", "OBSERVATION"),
        ("DATE", "20240112"),
        ("TIME", "0940"),
        ("CODE", "22A.."),
        ("SNOMED_CODE", "27113001"),
        ("RUBRIC", "Body weight"),
        ("VALUE1", "72.5"),
        ("UNITS", "kg"),
        ("AUTHOR", "S01"),
        ("CONFIDENTIAL", "N"),
    ];
    let ids: Vec<String> = (0..1000).map(|i| format!("J{i}")).collect();
    let rows: Vec<Vec<(&str, &str)>> = ids
        .iter()
        .map(|id| {
            let mut r = row.to_vec();
            r.push(("ID", id));
            r
        })
        .collect();
    let refs: Vec<&[(&str, &str)]> = rows.iter().map(Vec::as_slice).collect();
    // Two pages, as the API would send them.
    let pages = [journal(&refs[..500]), journal(&refs[500..])];
    // Every row mapped across both pages; speed is measured by the benchmarks, never
    // by a timed test.
    let out = map_journal(&pages, &owner()).unwrap();
    assert_eq!(out.len(), 1000);
}

/// `MAIN_LANGUAGE` holds the ISO 639-1 code upper-cased; the column is optional
/// (older extracts have none) and an empty field is no language.
#[test]
fn main_language_becomes_the_preferred_communication() {
    let with_language = |value: &str| {
        PATIENT
            .replacen("|LAST_MODIFIED\r\n", "|LAST_MODIFIED|MAIN_LANGUAGE\r\n", 1)
            .replacen(
                "|20240615103000\r\n",
                &format!("|20240615103000|{value}\r\n"),
                1,
            )
    };
    let p = map_patient(with_language("PL").as_bytes(), &ods()).unwrap();
    assert_eq!(p.patient.preferred_language(), Some("pl"));
    let v = json(&Resource::Patient(p.patient));
    assert_eq!(
        v["communication"],
        serde_json::json!([{
            "language": {"coding": [{
                "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-HumanLanguage",
                "code": "pl",
                "display": "Polish"
            }]},
            "preferred": true
        }])
    );
    let none = map_patient(with_language("").as_bytes(), &ods()).unwrap();
    assert!(none.patient.communication.is_empty());
    let old = map_patient(PATIENT.as_bytes(), &ods()).unwrap();
    assert!(
        old.patient.communication.is_empty(),
        "no column, no language"
    );
    let bad = map_patient(with_language("Polish!").as_bytes(), &ods()).unwrap_err();
    assert_eq!(
        bad.to_string(),
        "patient extract row 2 MAIN_LANGUAGE is invalid: 'Polish!' is not a language code"
    );
}

/// Entries written through the API have seconds (`HHMMSS`) and no author: no performer.
#[test]
fn written_rows_have_seconds_and_no_performer() {
    let r = map(&[&[
        ("ID", "W1"),
        ("TYPE", "OBSERVATION"),
        ("DATE", "20260714"),
        ("TIME", "083205"),
        ("CODE", "246.."),
        ("SNOMED_CODE", "75367002"),
        ("VALUE1", "131"),
        ("VALUE2", "84"),
        ("UNITS", "mm[Hg]"),
        ("CONFIDENTIAL", "N"),
    ]]);
    assert_eq!(r.len(), 1, "one panel");
    for o in &r {
        let v = json(o);
        assert_eq!(v["effectiveDateTime"], "2026-07-14T08:32:05+01:00");
        assert!(v.get("performer").is_none(), "{v}");
        assert!(v.get("encounter").is_none(), "{v}");
    }
    for bad in ["08320", "083260", "0832051"] {
        let e = err(&[&[
            ("ID", "W1"),
            ("TYPE", "OBSERVATION"),
            ("DATE", "20260714"),
            ("TIME", bad),
            ("CODE", "22A.."),
            ("VALUE1", "70"),
            ("UNITS", "kg"),
        ]]);
        assert!(e.contains("is not HHMM or HHMMSS"), "{bad}: {e}");
    }
}

/// Mapping only the clinical area a search wants gives exactly what mapping the whole
/// journal and keeping that area gives, for every Vision patient of the sandbox
/// population and each clinical area.
#[test]
fn mapping_only_the_wanted_area_is_the_whole_journal_filtered() {
    use gp_adapter::{ClinicalType, Want};
    use gp_adapter_vision::map_journal_for;
    use gp_sim::{Population, PopulationSpec, SystemKind};

    let population = Population::generate(20_261_123, &PopulationSpec::sandbox());
    let mut journals = 0;
    let mut areas_seen = std::collections::BTreeSet::new();
    for p in &population.patients {
        let Some(practice) = population
            .practice(&p.practice)
            .filter(|pr| pr.system == SystemKind::Vision)
        else {
            continue;
        };
        let owner = JournalOwner {
            pid: p.id.clone(),
            nhs_number: NhsNumber::parse(&p.nhs_number).unwrap(),
            ods: OdsCode::parse(&practice.ods).unwrap(),
        };
        let pages = [gp_sim::vision::render_journal(p)];
        let whole = map_journal(&pages, &owner).unwrap();
        journals += 1;
        assert!(
            map_journal_for(&pages, &owner, Want::Demographics)
                .unwrap()
                .is_empty()
        );
        for area in ClinicalType::ALL {
            let wanted: Vec<&Resource> = whole.iter().filter(|r| area.matches(r)).collect();
            let mapped = map_journal_for(&pages, &owner, Want::Area(*area)).unwrap();
            assert_eq!(mapped.iter().collect::<Vec<_>>(), wanted, "{area:?}");
            if !wanted.is_empty() {
                areas_seen.insert(area.as_str());
            }
        }
    }
    assert!(journals > 10, "the population has Vision patients");
    assert_eq!(areas_seen.len(), ClinicalType::ALL.len(), "{areas_seen:?}");
}
