#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Gateway hot-path micro-benchmarks: structured-record Bundle serialisation, access-token
//! validation (signature check vs the validated-token cache), token issue, scope
//! evaluation and the NHS number check. `cargo bench -p gp-gateway --bench gateway`.
//! Runs on the sandbox's configuration and TEST-ONLY demo keys; no network.

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use gp_auth::{
    GatewayKeys, MemoryReplayStore, Permission, ScopeSet, SupplierRegistry, SupplierSet,
    TokenService,
};
use gp_fhir::NhsNumber;
use gp_fhir::model::Resource;
use gp_gateway::auth::AuthState;
use gp_gateway::config::LoadedConfig;
use gp_gateway::structured::{self, StructuredRequest};
use gp_sim::SystemKind;
use serde_json::json;

#[path = "../../../bench/support/records.rs"]
mod records;

const SIGNING_KEY: &[u8] = include_bytes!("../../../fixtures/sandbox/gateway-signing-ed25519.pem");
const CONSULT_SCOPES: &str = "system/Patient.rus system/AllergyIntolerance.rs system/MedicationStatement.rs system/Condition.rs system/Observation.crs system/Immunization.rs system/Encounter.rs";

fn sandbox_config() -> LoadedConfig {
    let population =
        gp_sim::Population::generate(records::SEED, &gp_sim::PopulationSpec::sandbox());
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 8080));
    gp_gateway::sandbox::config(listen, "http://127.0.0.1:9/pds", &[], &population).unwrap()
}

fn keys(cfg: &LoadedConfig) -> GatewayKeys {
    let kid = cfg.gateway.auth.as_ref().unwrap().active_kid.clone();
    GatewayKeys::from_pems(&kid, &[(kid.clone(), SIGNING_KEY.to_vec())]).unwrap()
}

/// A token service without the per-client token rate limit: measures issue cost only.
fn token_service(cfg: &LoadedConfig) -> TokenService {
    let registry = SupplierRegistry::new(SupplierSet::build(&cfg.suppliers, &cfg.dir).unwrap());
    TokenService::new(
        cfg.gateway.auth.clone().unwrap(),
        keys(cfg),
        registry,
        Arc::new(MemoryReplayStore::default()),
    )
}

fn token_form(cfg: &LoadedConfig) -> String {
    let token_url = &cfg.gateway.auth.as_ref().unwrap().token_url;
    gp_gateway::sandbox::demo_identity("demo-consult")
        .unwrap()
        .token_request_body(token_url, None)
        .unwrap()
}

fn tokens(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cfg = sandbox_config();
    let auth = rt
        .block_on(AuthState::build(&cfg, Some(keys(&cfg))))
        .unwrap();
    let service = token_service(&cfg);
    let token = rt
        .block_on(service.issue(token_form(&cfg).as_bytes()))
        .unwrap()
        .access_token;
    let header = format!("Bearer {token}");
    // Warm the cache once.
    rt.block_on(auth.verify(Some(&header))).unwrap();

    let mut group = c.benchmark_group("access_token");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify_cold_signature", |b| {
        b.iter(|| auth.verifier.verify(black_box(Some(&header))).unwrap())
    });
    group.bench_function("verify_cached", |b| {
        b.iter(|| rt.block_on(auth.verify(black_box(Some(&header)))).unwrap())
    });
    // The token endpoint's work for one request: assertion signature (RS384), claims,
    // replay guard, scopes, EdDSA access-token signature. Signing the assertion is the
    // client's work and is done outside the measurement.
    group.bench_function("issue_token", |b| {
        b.iter_batched(
            || token_form(&cfg),
            |form| {
                rt.block_on(service.issue(black_box(form.as_bytes())))
                    .unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn scopes(c: &mut Criterion) {
    let set = ScopeSet::parse(CONSULT_SCOPES).unwrap();
    let mut group = c.benchmark_group("scope");
    group.bench_function("parse_demo_consult", |b| {
        b.iter(|| ScopeSet::parse(black_box(CONSULT_SCOPES)).unwrap())
    });
    group.bench_function("allows_hit", |b| {
        b.iter(|| set.allows(black_box("Observation"), Permission::Search))
    });
    group.bench_function("require_miss", |b| {
        b.iter(|| set.require(black_box("AuditEvent"), Permission::Search))
    });
    group.finish();
}

fn nhs_number(c: &mut Criterion) {
    let mut group = c.benchmark_group("nhs_number");
    group.bench_function("parse_valid", |b| {
        b.iter(|| NhsNumber::parse(black_box("9000000009")).unwrap())
    });
    group.bench_function("parse_bad_check_digit", |b| {
        b.iter(|| NhsNumber::parse(black_box("9000000008")).unwrap_err())
    });
    group.finish();
}

fn structured_request(nhs: &str) -> StructuredRequest {
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "patientNHSNumber", "valueIdentifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs}},
        {"name": "includeAllergies", "part": [{"name": "includeResolvedAllergies", "valueBoolean": true}]},
        {"name": "includeMedication"},
        {"name": "includeConsultations"},
        {"name": "includeProblems"},
        {"name": "includeImmunisations"},
        {"name": "includeInvestigations"},
    ]});
    structured::parse(&serde_json::to_vec(&body).unwrap(), (2026, 11, 23)).unwrap()
}

fn bundle(c: &mut Criterion) {
    let (practice, patient) = records::typical(SystemKind::Emis);
    let large = records::grown(&patient, records::LARGE);
    let req = structured_request(&patient.nhs_number);
    let mut group = c.benchmark_group("structured_record");
    for (name, p) in [("typical", &patient), ("1000_entries", &large)] {
        let xml = gp_sim::emis::render_record(&practice, p);
        let record = gp_adapter_emis::map_record(xml.as_bytes()).unwrap();
        let mut demographics = vec![Resource::Patient(record.patient.clone())];
        demographics.push(Resource::Organization(record.organization.clone()));
        demographics.extend(record.practitioner.clone().map(Resource::Practitioner));
        let build = || {
            let areas = req
                .areas
                .iter()
                .map(|area| {
                    let of_type = record
                        .clinical
                        .iter()
                        .filter(|r| r.resource_type() == area.clinical_type().as_str());
                    (area, structured::select(area, of_type))
                })
                .collect();
            structured::bundle(
                "http://127.0.0.1:8080/FHIR/R4",
                "bench",
                "2026-11-23T00:00:00Z",
                record.nhs_number,
                demographics.clone(),
                areas,
            )
        };
        let bytes = serde_json::to_vec(&build()).unwrap();
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(format!("build_and_serialise/{name}"), |b| {
            b.iter(|| serde_json::to_vec(&build()).unwrap())
        });
        let built = build();
        group.bench_function(format!("serialise_only/{name}"), |b| {
            b.iter(|| serde_json::to_vec(black_box(&built)).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bundle, tokens, scopes, nhs_number);
criterion_main!(benches);
