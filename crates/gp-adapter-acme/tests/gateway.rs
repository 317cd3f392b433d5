//! The whole gateway with Acme registered from outside it: the shipped registry plus one
//! registration, a config tree on disk with `[systems.acme]` and practices on `acme`,
//! served on 127.0.0.1:0 in open access and answering FHIR over HTTP from the Acme
//! simulator. Nothing in gp-gateway names Acme.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use gp_adapter::{Registration, Registry};
use gp_adapter_acme::AcmeAdapter;
use gp_adapter_acme::sim::{self, PATIENTS, PRACTICES};
use gp_gateway::app::App;
use gp_gateway::config::LoadedConfig;
use gp_gateway::server::ServerHandle;
use gp_sim::server::Method;
use gp_sim::{Reply, Routed, SimHandle, Simulator};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const DEMO: &str = "9993000019";
const SENSITIVE: &str = "9993000027";
const DISSENTING: &str = "9993000035";

/// The shipped systems and Acme: all a vendor's own binary or test adds.
fn registry() -> Registry {
    gp_gateway::systems::builtin().with(Registration::of::<AcmeAdapter>())
}

/// Writes `gateway.toml` (with `acme_table` as `[systems.acme]`) and `practices.toml`
/// (the simulator's practices, on `acme`) into `dir`; answers the gateway.toml path.
fn write_config(dir: &Path, pds_url: &str, acme_table: &str) -> PathBuf {
    let gateway = format!(
        r#"practices_file = "practices.toml"

[server]
listen = "127.0.0.1:0"
public_base_url = "http://gateway.test"

[admin]
listen = "127.0.0.1:0"

[locator]
pds_base_url = "{pds_url}"

[access]
mode = "open"

[audit]
sqlite_path = "audit.sqlite"

[systems.acme]
{acme_table}
"#
    );
    let practices: String = PRACTICES
        .iter()
        .map(|p| {
            let (ods, name) = (p.ods, p.name);
            format!("[[practice]]\nods = \"{ods}\"\nname = \"{name}\"\nsystem = \"acme\"\n\n")
        })
        .collect();
    std::fs::write(dir.join("practices.toml"), practices).unwrap();
    let path = dir.join("gateway.toml");
    std::fs::write(&path, gateway).unwrap();
    path
}

/// The Personal Demographics Service, as far as the record locator asks it: each
/// simulator patient's registered practice. It marks no one restricted, so it is
/// Acme's own flag that keeps the sensitive patient back.
struct Pds;

impl Simulator for Pds {
    fn name(&self) -> &'static str {
        "pds"
    }

    fn route(&self, _: &Method, path: &str) -> Routed {
        let found = path
            .strip_prefix("/pds/Patient/")
            .and_then(|nhs| PATIENTS.iter().find(|p| p.nhs_number == nhs));
        let (status, body) = match found {
            Some(p) => (
                200,
                json!({
                    "resourceType": "Patient",
                    "id": p.nhs_number,
                    "generalPractitioner": [{"identifier": {
                        "system": "https://fhir.nhs.uk/Id/ods-organization-code",
                        "value": p.practice,
                    }}],
                }),
            ),
            None => (404, json!({"resourceType": "OperationOutcome"})),
        };
        Routed {
            reply: Reply {
                status,
                content_type: "application/fhir+json",
                body: body.to_string().into_bytes(),
            },
            record: true,
        }
    }

    // This stub is never faulted; the kit asks every simulator for these.
    fn error_reply(&self, status: u16) -> Reply {
        Reply {
            status,
            content_type: "application/fhir+json",
            body: br#"{"resourceType":"OperationOutcome"}"#.to_vec(),
        }
    }
    fn garbage(&self) -> Vec<u8> {
        Vec::new()
    }
    fn mis_encode(&self, body: &[u8]) -> Vec<u8> {
        body.to_vec()
    }
    fn drop_nhs_number(&self, body: &[u8]) -> Vec<u8> {
        body.to_vec()
    }
}

/// A running gateway with Acme, and what it stands on.
struct Rig {
    /// `http://127.0.0.1:PORT/FHIR/R4`.
    base: String,
    _server: ServerHandle,
    _acme: SimHandle,
    _pds: SimHandle,
    _dir: tempfile::TempDir,
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

async fn rig() -> Rig {
    let acme = sim::start(bind().await).unwrap();
    let pds = gp_sim::serve(Arc::new(Pds), bind().await).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pds_url = format!("{}/pds", pds.base_url());
    let path = write_config(
        dir.path(),
        &pds_url,
        &format!("base_url = \"{}\"", acme.base_url()),
    );
    let cfg = LoadedConfig::load(&path, &registry()).unwrap();
    let app = Arc::new(App::build(&cfg).await.unwrap());
    let server = gp_gateway::server::start(app, bind().await, &cfg.gateway.server, None).unwrap();
    Rig {
        base: format!("http://{}/FHIR/R4", server.addr),
        _server: server,
        _acme: acme,
        _pds: pds,
        _dir: dir,
    }
}

/// Sends a request to the gateway; answers the status and the JSON body.
async fn call(method: Method, url: &str, body: Option<Value>) -> (u16, Value) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = http::Request::builder()
        .method(method)
        .uri(url)
        .header("accept", "application/fhir+json");
    if body.is_some() {
        request = request.header("content-type", "application/fhir+json");
    }
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let response = client
        .request(request.body(Full::new(Bytes::from(payload))).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = gp_gateway::body::read_capped(response.into_body(), None, 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

async fn get(url: &str) -> (u16, Value) {
    call(Method::GET, url, None).await
}

/// The ids of a searchset's resources.
fn ids(bundle: &Value) -> Vec<&str> {
    let entries = bundle["entry"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    entries
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn the_gateway_serves_acme_records_under_its_release_rules() {
    let rig = rig().await;
    let base = &rig.base;

    let (status, metadata) = get(&format!("{base}/metadata")).await;
    assert_eq!(status, 200);
    let mut types: Vec<&str> = metadata["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    types.sort_unstable();
    // What Acme serves, and the gateway's own AuditEvent, practice Organizations, their
    // staff and the structured record's Bundle and Lists; no clinical type Acme lacks.
    assert_eq!(
        types,
        [
            "AuditEvent",
            "Bundle",
            "Condition",
            "List",
            "Observation",
            "Organization",
            "Patient",
            "Practitioner"
        ]
    );

    let (status, patient) = get(&format!("{base}/Patient/{DEMO}")).await;
    assert_eq!(status, 200, "{patient}");
    assert_eq!(patient["id"], DEMO);
    assert_eq!(patient["identifier"][0]["value"], DEMO);
    assert_eq!(
        patient["identifier"][0]["extension"][0]["valueCodeableConcept"]["coding"][0]["code"],
        "01"
    );
    assert_eq!(patient["name"][0]["family"], "Reed");
    assert_eq!(
        patient["managingOrganization"]["reference"],
        "Organization/Y99001"
    );
    assert_eq!(
        patient["generalPractitioner"][0]["reference"],
        "Practitioner/gp-okafor"
    );

    // Acme holds three problems for the demo patient; the confidential one is withheld.
    let (status, problems) = get(&format!("{base}/Condition?patient={DEMO}")).await;
    assert_eq!(status, 200, "{problems}");
    assert_eq!(problems["total"], 2);
    assert_eq!(
        ids(&problems),
        ["prb-0102", "prb-0101"],
        "most recent first"
    );
    let (_, measurements) = get(&format!("{base}/Observation?patient={DEMO}&_count=2")).await;
    assert_eq!(measurements["total"], 3);
    assert_eq!(ids(&measurements), ["msr-0101", "msr-0102"]);
    assert_eq!(
        measurements["entry"][0]["resource"]["effectiveDateTime"],
        "2024-05-01T09:30:00+01:00"
    );

    // The practice and usual GP come with the structured record.
    let parameters = json!({"resourceType": "Parameters", "parameter": [
        {"name": "patientNHSNumber", "valueIdentifier": {
            "system": "https://fhir.nhs.uk/Id/nhs-number", "value": DEMO}},
        {"name": "includeProblems"},
    ]});
    let url = format!("{base}/Patient/$gpc.getstructuredrecord");
    let (status, record) = call(Method::POST, &url, Some(parameters)).await;
    assert_eq!(status, 200, "{record}");
    let organization = record["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == "Organization")
        .expect("the practice");
    assert_eq!(organization["id"], "Y99001");
    assert_eq!(organization["name"], "Acme Demo Surgery");
    assert!(
        !record.to_string().contains("prb-0103"),
        "confidential entry released"
    );

    // Sensitive in Acme (PDS does not say so): not found, record and searches alike.
    for path in [
        format!("Patient/{SENSITIVE}"),
        format!("Condition?patient={SENSITIVE}"),
    ] {
        let (status, outcome) = get(&format!("{base}/{path}")).await;
        assert_eq!(status, 404, "{path}: {outcome}");
    }
    // Dissenting in Acme: refused for want of consent.
    let (status, outcome) = get(&format!("{base}/Patient/{DISSENTING}")).await;
    assert_eq!(status, 403);
    assert!(
        outcome.to_string().contains("NO_PATIENT_CONSENT"),
        "{outcome}"
    );
}

/// `check-config` reads `[systems.acme]` through Acme's factory: each mistake is named
/// `systems.acme`, with the setting as written; and a gateway without the registration
/// says it does not know `acme`.
#[test]
fn config_problems_name_systems_acme() {
    let dir = tempfile::tempdir().unwrap();
    let ok_url = "base_url = \"http://127.0.0.1:9\"";
    let cases = [
        (
            format!("{ok_url}\ntimeout = 1"),
            registry(),
            "systems.acme: unknown field `timeout`",
        ),
        (
            format!("{ok_url}\nrequest_timeout_ms = 0"),
            registry(),
            "systems.acme: acme.request_timeout_ms is 0 ms; it must be between 1 and 120000",
        ),
        (
            "base_url = \"https://acme.example\"".to_owned(),
            registry(),
            "systems.acme: acme.ca_file: an https:// base_url needs the CA bundle (PEM)",
        ),
        // The shipped registry alone cannot read the table.
        (
            ok_url.to_owned(),
            gp_gateway::systems::builtin(),
            "systems.acme: no GP system 'acme' is registered in this gateway (registered: emis, microtest, tpp, vision)",
        ),
    ];
    for (table, registry, expected) in cases {
        let path = write_config(dir.path(), "http://127.0.0.1:9/pds", &table);
        let problems = LoadedConfig::load(&path, &registry)
            .unwrap_err()
            .to_string();
        // One problem, keyed in gateway.toml.
        assert!(
            problems.contains(&format!("gateway.toml: {expected}")) && !problems.contains('\n'),
            "{table}: {problems}"
        );
    }
}
