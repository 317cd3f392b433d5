#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Mapping tests on hand-written EMIS MedicalRecord XML (`fixtures/full-record.xml` and
//! inline variants of it): every entry type, every quirk, and bad native data.

use gp_adapter::terminology::EMIS_LOCAL_SYSTEM;
use gp_adapter_emis::{EmisDataError, MappedRecord, map_record};
use gp_fhir::model::{CONFIDENTIALITY_SYSTEM, DMD, READ_V2, Resource, SNOMED};

const FULL: &str = include_str!("fixtures/full-record.xml");

fn full() -> MappedRecord {
    map_record(FULL.as_bytes()).unwrap()
}

fn find<'a>(r: &'a MappedRecord, id: &str) -> &'a Resource {
    r.clinical.iter().find(|x| x.id() == id).unwrap()
}

fn json(r: &Resource) -> serde_json::Value {
    serde_json::from_slice(&r.to_json()).unwrap()
}

fn err(xml: &str) -> String {
    map_record(xml.as_bytes()).unwrap_err().to_string()
}

#[test]
fn patient_demographics_and_quirks() {
    let r = full();
    let p = &r.patient;
    assert_eq!(
        p.id, "9690937278",
        "spaced NHS number becomes the bare 10 digits"
    );
    assert_eq!(r.nhs_number.to_string(), "9690937278");
    let v = json(&Resource::Patient(p.clone()));
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
        "https://emis.com/Id/registration-guid"
    );
    assert_eq!(
        v["identifier"][1]["value"], "8a2f1c3e-0b1d-4e5f-9a6b-7c8d9e0f1a2b",
        "braces dropped, lower case"
    );
    assert_eq!(v["name"][0]["family"], "Smith & Co");
    assert_eq!(v["name"][0]["given"], serde_json::json!(["Jane", "Anne"]));
    assert_eq!(v["name"][0]["prefix"][0], "Mrs");
    assert_eq!(v["gender"], "female");
    assert_eq!(v["birthDate"], "1970-03-02");
    assert!(
        v.get("deceasedDateTime").is_none(),
        "empty DateOfDeath is absent"
    );
    assert_eq!(
        v["address"][0]["line"],
        serde_json::json!(["12", "Acacia Avenue"]),
        "empty Village dropped"
    );
    assert_eq!(v["address"][0]["city"], "Leeds");
    assert_eq!(v["address"][0]["postalCode"], "LS1 4AP");
    assert_eq!(
        v["telecom"].as_array().unwrap().len(),
        2,
        "empty MobileTelephone dropped"
    );
    assert_eq!(
        v["generalPractitioner"][0]["reference"],
        "Practitioner/11111111-1111-1111-1111-111111111111"
    );
    assert_eq!(
        v["managingOrganization"]["reference"],
        "Organization/B82617"
    );
    assert_eq!(
        v["meta"]["profile"][0],
        "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"
    );
    assert!(!p.is_restricted());
    assert!(r.flags.dissent && !r.flags.restricted);
    assert_eq!(
        r.version, "2024-07-15T10:30:00+01:00",
        "LastModified is UK local time, BST in July"
    );
    gp_fhir::validate::check_r4_json(&Resource::Patient(p.clone()).to_json()).unwrap();

    let org = json(&Resource::Organization(r.organization.clone()));
    assert_eq!(org["id"], "B82617");
    assert_eq!(org["identifier"][0]["value"], "B82617");
    assert_eq!(org["name"], "Riverside Medical Practice");
    let gp = json(&Resource::Practitioner(r.practitioner.clone().unwrap()));
    assert_eq!(gp["id"], "11111111-1111-1111-1111-111111111111");
    assert_eq!(
        gp["identifier"][1]["system"],
        "https://fhir.nhs.uk/Id/sds-user-id"
    );
    assert_eq!(gp["identifier"][2]["value"], "1234567");
    assert_eq!(gp["gender"], "male");
}

#[test]
fn every_entry_type_maps_and_is_strict_r4() {
    let r = full();
    let types: Vec<&str> = r.clinical.iter().map(Resource::resource_type).collect();
    assert_eq!(
        types,
        [
            "Encounter",
            "Encounter",
            "Observation",
            "Observation",
            "Condition",
            "Condition",
            "Immunization",
            "AllergyIntolerance",
            "MedicationStatement"
        ]
    );
    for res in &r.clinical {
        gp_fhir::validate::check_r4_json(&res.to_json())
            .unwrap_or_else(|e| panic!("{}: {e}", res.id()));
        let profile = format!(
            "https://fhir.hl7.org.uk/StructureDefinition/UKCore-{}",
            res.resource_type()
        );
        assert_eq!(res.meta().unwrap().profile, vec![profile]);
        assert!(res.references().contains(&"Patient/9690937278"));
    }
}

#[test]
fn consultations_are_encounters_with_gmt_and_bst_times() {
    let r = full();
    let winter = json(find(&r, "c0000000-0000-0000-0000-000000000001"));
    assert_eq!(winter["status"], "finished");
    assert_eq!(winter["class"]["code"], "AMB");
    assert_eq!(winter["period"]["start"], "2024-01-12T09:40:00+00:00");
    assert_eq!(winter["type"][0]["coding"][0]["code"], "185317003");
    assert_eq!(
        winter["participant"][0]["individual"]["reference"],
        "Practitioner/11111111-1111-1111-1111-111111111111"
    );
    assert_eq!(
        winter["serviceProvider"]["reference"],
        "Organization/B82617"
    );
    let summer = json(find(&r, "c0000000-0000-0000-0000-000000000002"));
    assert_eq!(summer["period"]["start"], "2024-06-12T14:05:30+01:00");
    // EMIS local code mapped with the MapCode EMIS supplied; original kept, user-selected.
    assert_eq!(summer["type"][0]["coding"][0]["system"], SNOMED);
    assert_eq!(summer["type"][0]["coding"][0]["code"], "11429006");
    assert_eq!(summer["type"][0]["coding"][1]["system"], EMIS_LOCAL_SYSTEM);
    assert_eq!(summer["type"][0]["coding"][1]["userSelected"], true);
}

#[test]
fn observations_with_values_and_partial_dates() {
    let r = full();
    let bp = json(find(&r, "e0000000-0000-0000-0000-000000000001"));
    assert_eq!(bp["status"], "final");
    assert_eq!(bp["code"]["coding"][0]["system"], SNOMED);
    assert_eq!(bp["code"]["coding"][0]["code"], "271649006");
    assert!(bp["code"]["coding"][0].get("userSelected").is_none());
    assert_eq!(bp["code"]["coding"][1]["system"], READ_V2);
    assert_eq!(bp["code"]["coding"][1]["code"], "2469.");
    assert_eq!(bp["code"]["coding"][1]["userSelected"], true);
    assert_eq!(bp["code"]["text"], "O/E - Systolic BP reading");
    assert_eq!(
        bp["valueQuantity"],
        serde_json::json!({"value":120,"unit":"mm[Hg]","system":"http://unitsofmeasure.org","code":"mm[Hg]"})
    );
    assert_eq!(bp["effectiveDateTime"], "2024-06-12T14:10:00+01:00");
    assert_eq!(
        bp["performer"][0]["reference"],
        "Practitioner/33333333-3333-3333-3333-333333333333"
    );
    // Recorded in a consultation: references that consultation's Encounter.
    assert_eq!(
        bp["encounter"]["reference"],
        "Encounter/c0000000-0000-0000-0000-000000000002"
    );
    let weight = json(find(&r, "e0000000-0000-0000-0000-000000000002"));
    assert_eq!(weight["effectiveDateTime"], "1998-03", "DatePart YM");
    assert!(
        weight.get("encounter").is_none(),
        "no ConsultationID, no encounter"
    );
    assert_eq!(weight["valueQuantity"]["value"], 72.5);
    assert!(
        weight.get("performer").is_none(),
        "empty AuthorID gives no performer"
    );
}

#[test]
fn problems_become_conditions() {
    let r = full();
    let asthma = json(find(&r, "e0000000-0000-0000-0000-000000000003"));
    assert_eq!(asthma["clinicalStatus"]["coding"][0]["code"], "active");
    assert_eq!(
        asthma["category"][0]["coding"][0]["code"],
        "problem-list-item"
    );
    assert_eq!(asthma["onsetDateTime"], "1998", "DatePart Y");
    assert_eq!(asthma["code"]["coding"][0]["code"], "195967001");
    assert!(asthma.get("abatementDateTime").is_none());
    assert!(asthma["meta"].get("security").is_none());
    let past = json(find(&r, "e0000000-0000-0000-0000-000000000004"));
    assert_eq!(past["clinicalStatus"]["coding"][0]["code"], "inactive");
    assert_eq!(
        past["onsetDateTime"], "2010-02-03",
        "DatePart absent means YMD"
    );
    assert_eq!(past["abatementDateTime"], "2011-05");
    // Unmapped local code: kept with its text, never dropped.
    assert_eq!(past["code"]["coding"].as_array().unwrap().len(), 1);
    assert_eq!(past["code"]["coding"][0]["system"], EMIS_LOCAL_SYSTEM);
    assert_eq!(past["code"]["text"], "Local problem code");
    // Confidential entries are mapped, marked restricted.
    assert_eq!(
        past["meta"]["security"][0]["system"],
        CONFIDENTIALITY_SYSTEM
    );
    assert_eq!(past["meta"]["security"][0]["code"], "R");
}

#[test]
fn immunisations_allergies_and_medications() {
    let r = full();
    let flu = json(find(&r, "e0000000-0000-0000-0000-000000000005"));
    assert_eq!(flu["status"], "completed");
    assert_eq!(flu["vaccineCode"]["coding"][0]["code"], "86198006");
    assert_eq!(flu["occurrenceDateTime"], "2023-10-15");
    assert_eq!(flu["lotNumber"], "AB1234");
    assert_eq!(flu["protocolApplied"][0]["doseNumberPositiveInt"], 1);
    let allergy = json(find(&r, "a0000000-0000-0000-0000-000000000001"));
    assert_eq!(
        allergy["code"]["coding"],
        serde_json::json!([{"system":SNOMED,"code":"91936005","display":"Allergy to penicillin"}])
    );
    assert_eq!(allergy["category"][0], "medication");
    assert_eq!(allergy["clinicalStatus"]["coding"][0]["code"], "active");
    assert_eq!(
        allergy["verificationStatus"]["coding"][0]["code"],
        "confirmed"
    );
    assert_eq!(
        allergy["reaction"][0]["manifestation"][0]["coding"][0]["code"],
        "126485001"
    );
    assert_eq!(allergy["reaction"][0]["severity"], "moderate");
    let med = json(find(&r, "m0000000-0000-0000-0000-000000000001"));
    assert_eq!(med["identifier"].as_array().unwrap().len(), 1);
    assert_eq!(
        med["identifier"][0]["system"],
        "https://emis.com/Id/medication-guid"
    );
    assert_eq!(med["status"], "stopped");
    assert_eq!(
        med["medicationCodeableConcept"]["coding"],
        serde_json::json!([{"system":DMD,"code":"319283006","display":"Amlodipine 5mg tablets"}])
    );
    assert_eq!(
        med["effectivePeriod"],
        serde_json::json!({"start":"2024-03-01","end":"2024-04-01"})
    );
    assert_eq!(med["dosage"][0]["text"], "One tablet daily");
    assert_eq!(
        med["note"][0]["text"],
        "Repeat prescription, quantity 28 tablet"
    );
}

#[test]
fn restricted_patient_and_sex_codes() {
    let xml = FULL.replace(
        "<Confidential>false</Confidential>\n    <SharingDissent>true",
        "<Confidential>true</Confidential>\n    <SharingDissent>false",
    );
    let r = map_record(xml.as_bytes()).unwrap();
    assert!(r.flags.restricted && !r.flags.dissent);
    assert!(r.patient.is_restricted());
    for (sex, gender) in [
        ("M", "male"),
        ("F", "female"),
        ("I", "other"),
        ("U", "unknown"),
    ] {
        let r = map_record(
            FULL.replacen("<Sex>F</Sex>", &format!("<Sex>{sex}</Sex>"), 1)
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(r.patient.gender.as_deref(), Some(gender));
    }
    assert_eq!(
        err(&FULL.replacen("<Sex>F</Sex>", "<Sex>X</Sex>", 1)),
        "Registration/Sex is invalid: 'X' is not M, F, I or U"
    );
}

#[test]
fn gmt_in_winter_and_dst_boundaries() {
    let winter = FULL.replace("15/07/2024 10:30:00", "27/10/2024 02:30:00");
    assert_eq!(
        map_record(winter.as_bytes()).unwrap().version,
        "2024-10-27T02:30:00+00:00"
    );
    let spring = FULL.replace("15/07/2024 10:30:00", "31/03/2024 00:30:00");
    assert_eq!(
        map_record(spring.as_bytes()).unwrap().version,
        "2024-03-31T00:30:00+00:00"
    );
    let after = FULL.replace("15/07/2024 10:30:00", "31/03/2024 02:30:00");
    assert_eq!(
        map_record(after.as_bytes()).unwrap().version,
        "2024-03-31T02:30:00+01:00"
    );
}

#[test]
fn bad_native_data_is_refused_precisely() {
    // Malformed and truncated XML.
    assert!(err("<MedicalRecord xmlns=\"http://www.e-mis.com/emisopen/MedicalRecord\"><Registration></MedicalRecord>")
        .starts_with("the record is not well-formed XML"));
    assert!(
        err(&FULL[..FULL.len() / 2])
            .starts_with("the record is not well-formed XML (truncated or malformed)")
    );
    // Invalid UTF-8 inside an element.
    let mut bytes = FULL.as_bytes().to_vec();
    let at = FULL.find("Smith").unwrap();
    bytes.splice(at..at, [0xC3, 0x28]);
    assert_eq!(
        map_record(&bytes).unwrap_err(),
        EmisDataError::NotUtf8 { offset: at }
    );
    // A ConsultationID that names no Consultation would dangle.
    assert!(
        err(&FULL.replace(
            "<ConsultationID>c0000000-0000-0000-0000-000000000002</ConsultationID>",
            "<ConsultationID>{C0000000-0000-0000-0000-0000000000FF}</ConsultationID>"
        ))
        .contains("c0000000-0000-0000-0000-0000000000ff is not a Consultation in ConsultationList")
    );
    // Wrong root / wrong namespace.
    assert_eq!(
        err("<Error xmlns=\"http://www.e-mis.com/emisopen/MedicalRecord\"><Code>X</Code></Error>"),
        "the root element is <{http://www.e-mis.com/emisopen/MedicalRecord}Error>, expected <MedicalRecord> in namespace http://www.e-mis.com/emisopen/MedicalRecord"
    );
    assert!(
        err(&FULL.replace(" xmlns=\"http://www.e-mis.com/emisopen/MedicalRecord\"", ""))
            .starts_with("the root element is <MedicalRecord>")
    );
    // Missing and invalid NHS numbers.
    assert_eq!(
        err(&FULL.replace("<NhsNumber>969 093 7278</NhsNumber>", "")),
        "Registration/NhsNumber is missing"
    );
    assert_eq!(
        err(&FULL.replace("<NhsNumber>969 093 7278</NhsNumber>", "<NhsNumber/>")),
        "Registration/NhsNumber is missing"
    );
    assert_eq!(
        err(&FULL.replace("969 093 7278", "969 093 7279")),
        "Registration/NhsNumber is invalid: NHS number fails the modulus 11 check: its check digit should be 8, not 9"
    );
    // Bad entries name the entry and element.
    assert_eq!(
        err(&FULL.replace("<Value>2469.</Value>", "")),
        "EventList/Event[1]/Code/Value is missing"
    );
    assert_eq!(
        err(&FULL.replace("<AssignedDate>15/10/2023</AssignedDate>", "<AssignedDate/>")),
        "EventList/Event[5]/AssignedDate is missing"
    );
    assert_eq!(
        err(&FULL.replace("<AssignedTime>09:40:00</AssignedTime>", "")),
        "ConsultationList/Consultation[1]/AssignedTime is missing"
    );
    assert_eq!(
        err(&FULL.replace(
            "<AssignedDate>01/02/2015</AssignedDate>",
            "<AssignedDate>31/02/2015</AssignedDate>"
        )),
        "AllergyList/Allergy[1]/AssignedDate is invalid: '31/02/2015' is not a dd/mm/yyyy date of precision Ymd"
    );
    assert_eq!(
        err(&FULL.replace(
            "<NumericValue>120</NumericValue>",
            "<NumericValue>high</NumericValue>"
        )),
        "EventList/Event[1]/NumericValue is invalid: 'high' is not a number"
    );
    assert_eq!(
        err(&FULL.replace("<Scheme>DMD</Scheme>", "<Scheme>BNF</Scheme>")),
        "MedicationList/Medication[1]/Drug/Code/Scheme is invalid: 'BNF' is not READ2, CTV3, EMISCLINICAL, SNOMED or DMD"
    );
    assert_eq!(
        err(&FULL.replace(
            "<UsualGpID>11111111-1111-1111-1111-111111111111</UsualGpID>",
            "<UsualGpID>99999999-1111-1111-1111-111111111111</UsualGpID>"
        )),
        "Registration/UsualGpID is invalid: 99999999-1111-1111-1111-111111111111 is not a Person in PeopleList"
    );
    assert_eq!(
        err(&FULL.replace("<LastModified>15/07/2024 10:30:00</LastModified>", "")),
        "Registration/LastModified is missing"
    );
    assert_eq!(
        map_record(b"").unwrap_err().to_string().split(':').next(),
        Some("the record is not well-formed XML (truncated or malformed)")
    );
}

#[test]
fn reaction_wrapping_a_code_element_is_read_too() {
    let xml = FULL.replace(
        "<Reaction><Value>126485001</Value><Scheme>SNOMED</Scheme><Term>Urticaria</Term></Reaction>",
        "<Reaction><Code><Value>39579001</Value><Scheme>SNOMED</Scheme><Term>Anaphylaxis</Term></Code></Reaction>",
    );
    let r = map_record(xml.as_bytes()).unwrap();
    let a = json(find(&r, "a0000000-0000-0000-0000-000000000001"));
    assert_eq!(
        a["reaction"][0]["manifestation"][0]["coding"][0]["code"],
        "39579001"
    );
}

#[test]
fn a_thousand_entry_record_maps_whole() {
    let event = FULL
        .split("<EventList>")
        .nth(1)
        .unwrap()
        .split("</EventList>")
        .next()
        .unwrap();
    let one = event.split("</Event>").next().unwrap().to_owned() + "</Event>";
    let mut many = String::new();
    for i in 0..1000 {
        many.push_str(&one.replace(
            "e0000000-0000-0000-0000-000000000001",
            &format!("e0000000-0000-0000-0000-{i:012}"),
        ));
    }
    let xml = FULL.replace(event, &many);
    let r = map_record(xml.as_bytes()).unwrap();
    assert!(r.clinical.len() > 1000);
    // Every event mapped, each with its own id: speed is measured by the benchmarks
    // (issue "Performance"), never by a timed test.
    let mut ids: Vec<&str> = r.clinical.iter().map(|c| c.id()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), r.clinical.len());
}

#[test]
fn main_spoken_language_is_the_preferred_communication() {
    assert!(full().patient.communication.is_empty(), "none recorded");
    let xml = FULL.replace(
        "<Email>jane.smith@example.com</Email>",
        "<Email>jane.smith@example.com</Email>\n    <MainSpokenLanguage><Value>cy</Value><Term>Welsh</Term></MainSpokenLanguage>",
    );
    let p = map_record(xml.as_bytes()).unwrap().patient;
    assert_eq!(p.preferred_language(), Some("cy"));
    let v = json(&Resource::Patient(p));
    assert_eq!(
        v["communication"],
        serde_json::json!([{
            "language": {"coding": [{"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-HumanLanguage", "code": "cy", "display": "Welsh"}]},
            "preferred": true
        }])
    );
}

#[test]
fn a_filed_reading_without_author_id_has_no_performer() {
    // As the simulator renders an entry a supplier filed: no AuthorID, no ConsultationID.
    let filed = r#"<EventList>
    <Event><GUID>0f0e0d0c-0b0a-4909-8807-060504030201</GUID><EventType>Observation</EventType>
      <AssignedDate>14/07/2026</AssignedDate><DatePart>YMDT</DatePart><AssignedTime>08:32:05</AssignedTime>
      <Code><Value>2469.</Value><Scheme>READ2</Scheme><Term>O/E - Systolic BP reading</Term></Code>
      <NumericValue>131</NumericValue><Units>mm[Hg]</Units><Confidential>false</Confidential></Event>"#;
    let xml = FULL.replacen("<EventList>", filed, 1);
    let r = map_record(xml.as_bytes()).unwrap();
    let o = json(find(&r, "0f0e0d0c-0b0a-4909-8807-060504030201"));
    assert!(o.get("performer").is_none(), "{o}");
    assert!(o.get("encounter").is_none());
    assert_eq!(o["effectiveDateTime"], "2026-07-14T08:32:05+01:00");
    assert_eq!(o["code"]["coding"][0]["code"], "271649006");
    assert_eq!(o["valueQuantity"]["value"], 131);
}

#[test]
fn written_contact_details_read_back_exactly() {
    use gp_adapter::{ContactDetails, HomeAddress};
    use gp_adapter_emis::mapping::render_contact_details;
    for lines in [
        vec!["12 Harness Row", "Testville"],
        vec!["Flat 2", "1 High St", "Roundhay"],
        vec!["1 High St"],
    ] {
        let details = ContactDetails {
            home_phone: Some("01632 960123".into()),
            mobile: Some("07700 900456".into()),
            email: Some("a&b@example.com".into()),
            address: Some(HomeAddress {
                lines: lines.iter().map(|l| (*l).to_owned()).collect(),
                town: "Leeds".into(),
                county: "West Yorkshire".into(),
                postcode: "LS1 4AP".into(),
            }),
            language: Some("pl".into()),
        };
        let update = render_contact_details("2024-07-15T10:30:00+01:00", &details).unwrap();
        // The request's Address, phones and email, spliced into a record as EMIS renders them.
        let between = |open: &str, close: &str| {
            let a = update.find(open).unwrap();
            let b = update.find(close).unwrap() + close.len();
            update[a..b].to_owned()
        };
        let address = between("<Address>", "</Address>");
        let contact = between("<HomeTelephone>", "</Email>");
        let language = between("<MainSpokenLanguage>", "</MainSpokenLanguage>");
        let start = FULL.find("<Address>").unwrap();
        let end = FULL.find("<UsualGpID>").unwrap();
        let xml = format!(
            "{}{address}\n    {contact}\n    {language}\n    {}",
            &FULL[..start],
            &FULL[end..]
        );
        let p = map_record(xml.as_bytes()).unwrap().patient;
        let a = &p.address[0];
        assert_eq!(a.line, lines, "{xml}");
        assert_eq!(a.city.as_deref(), Some("Leeds"));
        assert_eq!(a.district.as_deref(), Some("West Yorkshire"));
        assert_eq!(a.postal_code.as_deref(), Some("LS1 4AP"));
        let telecom: Vec<_> = p
            .telecom
            .iter()
            .map(|t| (t.use_.as_deref(), t.value.as_deref()))
            .collect();
        assert_eq!(
            telecom,
            [
                (Some("home"), Some("01632 960123")),
                (Some("mobile"), Some("07700 900456")),
                (None, Some("a&b@example.com"))
            ]
        );
        assert_eq!(p.preferred_language(), Some("pl"));
    }
}

/// Mapping only what a read wants gives exactly what mapping the whole record and keeping
/// that gives: the hand-written record, and every EMIS patient of the sandbox population
/// (and one grown to 1,000 entries), for the demographics and each clinical area.
#[test]
fn mapping_only_what_is_wanted_is_the_whole_mapping_filtered() {
    use gp_adapter::ClinicalType;
    use gp_adapter_emis::{Want, map_record_for};
    use gp_sim::{Population, PopulationSpec, SystemKind};

    let population = Population::generate(20_261_123, &PopulationSpec::sandbox());
    let mut bodies = vec![FULL.to_owned()];
    for p in population.patients.iter().filter(|p| {
        population
            .practice(&p.practice)
            .is_some_and(|pr| pr.system == SystemKind::Emis)
    }) {
        let practice = population.practice(&p.practice).unwrap();
        bodies.push(gp_sim::emis::render_record(practice, p));
    }
    assert!(bodies.len() > 10, "the population has EMIS patients");
    let mut areas_seen = std::collections::BTreeSet::new();
    for body in &bodies {
        let whole = map_record(body.as_bytes()).unwrap();
        let demographics = map_record_for(body.as_bytes(), Want::Demographics).unwrap();
        assert_eq!(demographics.patient, whole.patient);
        assert_eq!(demographics.organization, whole.organization);
        assert_eq!(demographics.practitioner, whole.practitioner);
        assert_eq!(demographics.version, whole.version);
        assert_eq!(demographics.flags, whole.flags);
        assert!(demographics.clinical.is_empty());
        for area in ClinicalType::ALL {
            let wanted: Vec<&Resource> =
                whole.clinical.iter().filter(|r| area.matches(r)).collect();
            let mapped = map_record_for(body.as_bytes(), Want::Area(*area)).unwrap();
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

/// A search for one area of events builds no event of another type: a Problem event
/// that is not even well-formed fails the Condition search (and the whole record) but not
/// the Observation or Immunization search, which never build it; an event that is not
/// plainly safe to pass over (a comment inside) is built, and fails them all.
#[test]
fn an_events_search_does_not_build_other_types_events() {
    use gp_adapter::ClinicalType;
    use gp_adapter_emis::{Want, map_record_for};
    let problem = "<EventType>Problem</EventType>";
    assert_eq!(FULL.matches(problem).count(), 2);
    // The first Problem holds an element never closed.
    let broken = FULL.replacen(problem, &format!("{problem}<Unclosed>"), 1);
    assert_ne!(broken, FULL);
    let area = |xml: &str, t| map_record_for(xml.as_bytes(), Want::Area(t));
    assert!(map_record(broken.as_bytes()).is_err());
    assert!(area(&broken, ClinicalType::Condition).is_err());
    let whole = full();
    for t in [ClinicalType::Observation, ClinicalType::Immunization] {
        let mapped = area(&broken, t).unwrap();
        let wanted: Vec<&Resource> = whole.clinical.iter().filter(|r| t.matches(r)).collect();
        assert_eq!(mapped.clinical.iter().collect::<Vec<_>>(), wanted, "{t:?}");
        assert!(!wanted.is_empty());
    }
    // Not plainly safe to pass over: built, so refused.
    let commented = broken.replacen("<Unclosed>", "<Unclosed><!-- c -->", 1);
    assert_ne!(commented, broken);
    assert!(area(&commented, ClinicalType::Observation).is_err());
}

/// A search for events reads the consultations only for their GUIDs (what events refer
/// to): a fault after a consultation's GUID fails the Encounter search (and the whole
/// record) but not the Observation search; a GUID that is not one, or an event referring
/// to a consultation the list does not hold, fails them all alike.
#[test]
fn an_events_search_reads_consultations_for_their_ids_only() {
    use gp_adapter::ClinicalType;
    use gp_adapter_emis::{Want, map_record_for};
    let area = |xml: &str, t| map_record_for(xml.as_bytes(), Want::Area(t));
    let first = "<GUID>c0000000-0000-0000-0000-000000000001</GUID>";
    assert_eq!(FULL.matches(first).count(), 1);
    let whole = full();
    let observations: Vec<&Resource> = whole
        .clinical
        .iter()
        .filter(|r| ClinicalType::Observation.matches(r))
        .collect();
    assert!(observations.iter().any(|r| {
        serde_json::to_string(r)
            .unwrap()
            .contains("Encounter/c0000000-0000-0000-0000-000000000002")
    }));
    // Not well-formed after the GUID: only what reads the consultation whole fails.
    let broken = FULL.replacen(first, &format!("{first}<Unclosed>"), 1);
    assert!(map_record(broken.as_bytes()).is_err());
    assert!(area(&broken, ClinicalType::Encounter).is_err());
    let mapped = area(&broken, ClinicalType::Observation).unwrap();
    assert_eq!(mapped.clinical.iter().collect::<Vec<_>>(), observations);
    // Its GUID braced and spaced as EMIS may write it: read alike either way.
    let braced = FULL.replacen(
        first,
        "<GUID> {C0000000-0000-0000-0000-000000000001}\n</GUID>",
        1,
    );
    let mapped = area(&braced, ClinicalType::Observation).unwrap();
    assert_eq!(mapped.clinical.iter().collect::<Vec<_>>(), observations);
    // A GUID that is not one, or none: refused with the same words as the whole record.
    for bad in ["<GUID>not a guid</GUID>", "<GUID></GUID>", "<GUID/>"] {
        let xml = FULL.replacen(first, bad, 1);
        let expected = map_record(xml.as_bytes()).unwrap_err().to_string();
        assert!(
            expected.contains("ConsultationList/Consultation[1]/GUID"),
            "{expected}"
        );
        let found = area(&xml, ClinicalType::Observation)
            .unwrap_err()
            .to_string();
        assert_eq!(found, expected, "{bad}");
    }
    // Another consultation's GUID: the event referring to the second one is refused.
    let moved = FULL.replacen(
        "<GUID>c0000000-0000-0000-0000-000000000002</GUID>",
        "<GUID>c0000000-0000-0000-0000-00000000000f</GUID>",
        1,
    );
    let expected = map_record(moved.as_bytes()).unwrap_err().to_string();
    assert!(expected.contains("is not a Consultation"), "{expected}");
    assert_eq!(
        area(&moved, ClinicalType::Observation)
            .unwrap_err()
            .to_string(),
        expected
    );
}

/// A Patient read parses the record only up to its first clinical list, and only when that
/// is plainly safe: whatever the record's shape, it answers what mapping the whole record
/// answers, and a cut answer fails as it always has.
#[test]
fn a_patient_read_answers_as_the_whole_record_whatever_its_shape() {
    use gp_adapter_emis::{Want, map_record_for};
    let demographics = |xml: &str| map_record_for(xml.as_bytes(), Want::Demographics);
    let whole = full();
    let same = |r: &MappedRecord| {
        assert_eq!(r.patient, whole.patient);
        assert_eq!(r.organization, whole.organization);
        assert_eq!(r.practitioner, whole.practitioner);
        assert_eq!((&r.version, r.flags), (&whole.version, whole.flags));
        assert!(r.clinical.is_empty());
    };
    same(&demographics(FULL).unwrap());
    // PeopleList after the clinical lists: the usual GP is still found.
    let start = FULL.find("  <PeopleList>").unwrap();
    let end = FULL.find("</PeopleList>").unwrap() + "</PeopleList>\n".len();
    let people = &FULL[start..end];
    let moved = FULL.replacen(people, "", 1).replacen(
        "</MedicalRecord>",
        &format!("{people}</MedicalRecord>"),
        1,
    );
    same(&demographics(&moved).unwrap());
    // A comment that looks like a list's start tag before the demographics end.
    let commented = FULL.replacen(
        "  <PeopleList>",
        "  <!-- <EventList> -->\n  <PeopleList>",
        1,
    );
    same(&demographics(&commented).unwrap());
    // The clinical part is not read at all: a fault there does not stop the demographics
    // (mapping the whole record refuses it).
    let bad_tail = FULL.replacen("<EventList>", "<EventList><Event><GUID>x</Event>", 1);
    assert!(map_record(bad_tail.as_bytes()).is_err());
    same(&demographics(&bad_tail).unwrap());
    // Cut in half: refused, as the whole record is.
    let cut = &FULL[..FULL.len() / 2];
    assert_eq!(
        demographics(cut).unwrap_err().to_string(),
        map_record(cut.as_bytes()).unwrap_err().to_string()
    );
    // Demographics in error: the whole record's error, not another.
    let no_family =
        FULL.replacen("<FamilyName>", "<Surname>", 1)
            .replacen("</FamilyName>", "</Surname>", 1);
    assert_eq!(
        demographics(&no_family).unwrap_err().to_string(),
        map_record(no_family.as_bytes()).unwrap_err().to_string()
    );
}
