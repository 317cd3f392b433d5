//! Regenerates the seed corpora in `fuzz/corpus/<target>/`: native documents rendered
//! by the simulators over the sandbox's synthetic population (demo patients only), plus
//! hand-written request samples. Run from `fuzz/`:
//! `cargo run --example seed_corpora` (plain build, no nightly flags needed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};

use gp_sim::{DEMO_NHS_NUMBERS, Population, PopulationSpec, SimStore, SystemKind};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `gp_gateway::sandbox::DEFAULT_SEED`.
const SEED: u64 = 20_261_123;

fn corpus(target: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn put(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// The demo patient of `system` and their practice.
fn demo(population: &Population, system: SystemKind) -> (gp_sim::Practice, gp_sim::SimPatient) {
    let nhs = DEMO_NHS_NUMBERS
        .iter()
        .find(|(s, _)| *s == system)
        .map(|(_, n)| *n)
        .unwrap();
    let p = population.patient_by_nhs(nhs).unwrap().clone();
    let practice = population.practice(&p.practice).unwrap().clone();
    (practice, p)
}

const SNOMED: &str = "http://snomed.info/sct";
const UCUM: &str = "http://unitsofmeasure.org";

/// A blood pressure and a weight, as suppliers POST them.
fn observations() -> Vec<serde_json::Value> {
    vec![
        json!({
            "resourceType": "Observation",
            "identifier": [{"system": "https://example.com/readings", "value": "r-1"}],
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": SNOMED, "code": "75367002", "display": "Blood pressure"}]},
            "subject": {"reference": "Patient/9000000009"},
            "effectiveDateTime": "2026-11-20T08:30:00+00:00",
            "component": [
                {"code": {"coding": [{"system": SNOMED, "code": "271650006"}]},
                 "valueQuantity": {"value": 82, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
                {"code": {"coding": [{"system": SNOMED, "code": "271649006"}]},
                 "valueQuantity": {"value": 131, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}}
            ]
        }),
        json!({
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": SNOMED, "code": "27113001", "display": "Body weight"}]},
            "subject": {"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9690937278"}},
            "effectiveDateTime": "2026-11-21T07:05:00Z",
            "valueQuantity": {"value": 72.4, "unit": "kg", "system": UCUM, "code": "kg"}
        }),
    ]
}

/// Request bodies from outside: search queries, scopes, token requests, access tokens,
/// JSON Patches and FHIR bodies; and the GP write requests the adapters render from
/// them (what the simulators' XML reader takes).
fn requests() {
    let dir = corpus("search_params");
    for (i, q) in [
        "patient=9000000009",
        "patient=Patient/9000000009&date=ge2020-01&date=lt2026-11-01T10:00:00Z&_count=10&_offset=20",
        "patient:identifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C9690937278&_id=a-1,b.2&_format=json",
        "identifier=https://fhir.nhs.uk/Id/nhs-number|9658218865",
        "subject=9000000009&date=sa2019&date=eb2021-02-03&_count=1000",
        "patient=9000000009&dte=2020&_include=Patient:organization",
    ]
    .iter()
    .enumerate()
    {
        put(&dir, &format!("query-{i}"), q);
    }

    let dir = corpus("smart_scopes");
    for (i, s) in [
        "system/Patient.rs system/Observation.crs system/*.s\nsystem/*.cruds",
        "system/*.read system/AllergyIntolerance.write\nsystem/Patient.rs system/Observation.s",
        "system/Patient.* patient/Observation.rs user/*.read system/Slot.rs?x=1",
        "system/*.cruds\nsystem/AuditEvent.s",
    ]
    .iter()
    .enumerate()
    {
        put(&dir, &format!("scopes-{i}"), s);
    }

    let unsigned = "eyJhbGciOiJFUzM4NCIsImtpZCI6ImRlbW8tbW9uaXRvcmluZy0yMDI1LTAxIiwidHlwIjoiSldUIn0.eyJpc3MiOiJkZW1vLW1vbml0b3JpbmciLCJzdWIiOiJkZW1vLW1vbml0b3JpbmciLCJhdWQiOiJodHRwczovL2d3LmZ1enovb2F1dGgyL3Rva2VuIiwiZXhwIjoxLCJqdGkiOiJ4In0.c2ln";
    let claims = json!({
        "iss": "demo-monitoring", "sub": "demo-monitoring", "aud": "https://gw.fuzz/oauth2/token",
        "exp": 120, "iat": 0, "nbf": -5, "jti": "0b7e9d1c-5d0a-4a7e-9c55-111111111111"
    });
    let dir = corpus("token_request");
    put(
        &dir,
        "form-unsigned",
        format!(
            "\0grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={unsigned}&scope=system%2FPatient.rs+system/*.s"
        ),
    );
    put(
        &dir,
        "form-duplicate",
        "\0grant_type=client_credentials&grant_type=x&client_id=demo-booking&client_assertion=a.b.c.d.e",
    );
    put(&dir, "signed-claims", format!("\x01{claims}"));
    put(
        &dir,
        "signed-claims-scope",
        format!(
            "\x01{claims}\nscope=system%2FObservation.crs+system%2FPatient.r&client_id=demo-monitoring"
        ),
    );
    put(
        &dir,
        "signed-claims-odd",
        format!(
            "\x01{}",
            json!({"iss": "demo-monitoring", "sub": "demo-monitoring", "aud": ["https://gw.fuzz/oauth2/token"], "exp": 1.5e3, "iat": "now", "jti": ""})
        ),
    );

    let dir = corpus("access_token");
    put(&dir, "header-unsigned", format!("\0Bearer {unsigned}"));
    put(&dir, "header-basic", "\0Basic ZGVtbzpkZW1v");
    put(
        &dir,
        "signed-claims",
        format!(
            "\x01{}",
            json!({
                "iss": "https://gw.fuzz", "sub": "demo-booking", "client_id": "demo-booking",
                "aud": "https://gw.fuzz/FHIR/R4", "exp": 300, "iat": 0,
                "jti": "5f1c7a52-0000-4000-8000-000000000001", "scope": "system/Patient.rs system/*.s"
            })
        ),
    );

    let dir = corpus("json_patch");
    let patches = [
        json!([{"op": "replace", "path": "/telecom/0/value", "value": "01632 960002"}]),
        json!([
            {"op": "test", "path": "/telecom/2/system", "value": "email"},
            {"op": "remove", "path": "/telecom/2"},
            {"op": "add", "path": "/telecom/-", "value": {"system": "email", "value": "new@example.com", "use": "home"}}
        ]),
        json!([{"op": "replace", "path": "/address/0", "value": {"use": "home", "line": ["1 New Road"], "city": "York", "postalCode": "YO1 7HH"}}]),
        json!([{"op": "replace", "path": "/communication/0/language/coding/0/code", "value": "cy"}]),
        json!([{"op": "move", "from": "/telecom/0", "path": "/telecom/1"}, {"op": "copy", "from": "/address/0/line", "path": "/address/0/line/-"}]),
        json!([{"op": "replace", "path": "/name/0/family", "value": "X"}, {"op": "add", "path": "/a~1b~0c", "value": 1}]),
    ];
    for (i, p) in patches.iter().enumerate() {
        put(&dir, &format!("patch-{i}.json"), p.to_string());
    }

    let dir = corpus("fhir_json");
    for (i, o) in observations().iter().enumerate() {
        put(&dir, &format!("observation-{i}.json"), o.to_string());
    }
    put(
        &dir,
        "structured-record.json",
        json!({"resourceType": "Parameters", "parameter": [
            {"name": "patientNHSNumber", "valueIdentifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"}},
            {"name": "includeAllergies", "part": [{"name": "includeResolvedAllergies", "valueBoolean": true}]},
            {"name": "includeMedication", "part": [{"name": "medicationSearchFromDate", "valueDate": "2020-01-01"}]},
            {"name": "includeConsultations", "part": [{"name": "includeNumberOfMostRecent", "valueInteger": 3}]}
        ]}).to_string(),
    );
    put(
        &dir,
        "duplicate-keys.json",
        r#"{"resourceType":"Observation","status":"final","status":"amended"}"#,
    );

    // The write requests the EMIS and TPP adapters send, which the simulators read.
    let dir = corpus("sim_request_xml");
    let now = time::macros::datetime!(2026-11-23 12:00 UTC);
    for (i, o) in observations().iter().enumerate() {
        let mut incoming =
            gp_gateway::write_body::observation(o.to_string().as_bytes(), now).unwrap();
        incoming.observation.key = format!("{:064x}", i + 1);
        put(
            &dir,
            &format!("emis-batch-{i}.xml"),
            gp_adapter_emis::mapping::render_observation_batch(&incoming.observation).unwrap(),
        );
        put(
            &dir,
            &format!("tpp-events-{i}.xml"),
            gp_adapter_tpp::mapping::render_record_events(&incoming.observation).unwrap(),
        );
    }
    let details = gp_adapter::ContactDetails {
        home_phone: Some("01632 960001".into()),
        mobile: Some("07700 900001".into()),
        email: Some("test@example.com".into()),
        address: None,
        language: Some("cy".into()),
    };
    put(
        &dir,
        "emis-contact.xml",
        gp_adapter_emis::mapping::render_contact_details("2026-11-01T09:40:00+00:00", &details)
            .unwrap(),
    );
    put(
        &dir,
        "tpp-contact.xml",
        gp_adapter_tpp::mapping::render_contact_update("2026-11-01T09:40:00Z", &details).unwrap(),
    );
}

/// A GET against a simulator, body only (the simulators answer with Content-Length).
async fn get(base: &str, path: &str) -> Vec<u8> {
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    raw[at + 4..].to_vec()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let population = Population::generate(SEED, &PopulationSpec::sandbox());

    // EMIS Web XML.
    let dir = corpus("emis_xml");
    let (practice, p) = demo(&population, SystemKind::Emis);
    put(
        &dir,
        "record.xml",
        gp_sim::emis::render_record(&practice, &p),
    );
    put(
        &dir,
        "adapter-fixture.xml",
        std::fs::read("../crates/gp-adapter-emis/tests/fixtures/full-record.xml").unwrap(),
    );
    let emis = gp_sim::start_emis(
        SimStore::new(population.clone()),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .unwrap();
    put(
        &dir,
        "error.xml",
        get(&emis.base_url(), "/no-such-path").await,
    );
    emis.shutdown().await;

    // SystmOne XML: page 1 of 2 and a one-page record.
    let dir = corpus("tpp_xml");
    let (practice, p) = demo(&population, SystemKind::Tpp);
    put(
        &dir,
        "page-1-of-2.xml",
        gp_sim::tpp::render_page(&practice, &p, 1, 3),
    );
    put(
        &dir,
        "page-1.xml",
        gp_sim::tpp::render_page(&practice, &p, 1, 100),
    );
    let tpp = gp_sim::start_tpp(
        SimStore::new(population.clone()),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .unwrap();
    put(
        &dir,
        "error.xml",
        get(&tpp.base_url(), "/no-such-path").await,
    );
    tpp.shutdown().await;

    // Vision extracts, for the demo patient (whose identity the target reads).
    // The XML DOM on its own: every EMIS and SystmOne seed above.
    let dom = corpus("xml_dom");
    for (system, prefix) in [("emis_xml", "emis"), ("tpp_xml", "tpp")] {
        for entry in std::fs::read_dir(corpus(system)).unwrap() {
            let path = entry.unwrap().path();
            let name = format!("{prefix}-{}", path.file_name().unwrap().to_string_lossy());
            put(&dom, &name, std::fs::read(&path).unwrap());
        }
    }

    let dir = corpus("vision_extract");
    let (practice, p) = demo(&population, SystemKind::Vision);
    put(
        &dir,
        "owner.txt",
        format!("{} {} {}\n", p.id, p.nhs_number, practice.ods),
    );
    put(&dir, "patient.txt", gp_sim::vision::render_patient(&p));
    put(&dir, "journal.txt", gp_sim::vision::render_journal(&p));
    put(
        &dir,
        "practice.txt",
        gp_sim::vision::render_practice(&practice),
    );
    put(&dir, "staff.txt", gp_sim::vision::render_staff(&practice));

    // Microtest Evolution JSON.
    let dir = corpus("microtest_json");
    let (practice, p) = demo(&population, SystemKind::Microtest);
    put(
        &dir,
        "owner.txt",
        format!("{} {} {}\n", p.nhs_number, practice.ods, p.id),
    );
    put(
        &dir,
        "patient.json",
        gp_sim::microtest::render_patient(&practice, &p).to_string(),
    );
    for kind in [
        "allergy",
        "medication",
        "problem",
        "observation",
        "immunisation",
        "consultation",
    ] {
        let entries = gp_sim::microtest::render_entries(&p, kind);
        let n = entries.len();
        let page = json!({"entries": entries, "total": n, "next_cursor": null});
        put(&dir, &format!("entries-{kind}.json"), page.to_string());
    }
    let mt = gp_sim::start_microtest(
        SimStore::new(population.clone()),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .unwrap();
    let base = mt.base_url();
    let ods = &practice.ods;
    put(
        &dir,
        "index.json",
        get(
            &base,
            &format!("/sites/{ods}/patients?nhs_number={}", p.nhs_number),
        )
        .await,
    );
    if let Some(c) = practice.clinicians.first() {
        put(
            &dir,
            "clinician.json",
            get(&base, &format!("/sites/{ods}/clinicians/{}", c.id)).await,
        );
    }
    put(&dir, "error.json", get(&base, "/no-such-path").await);
    mt.shutdown().await;

    requests();
    println!("seed corpora written under {}", corpus("").display());
}
