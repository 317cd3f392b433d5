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

/// A practice's book for a 14-day free-slot search: 4,000 slots of 10 minutes over 20
/// sessions a day (mostly free, some booked or kept from third parties), 10 clinicians
/// and 2 sites.
fn appointment_book() -> gp_adapter::AppointmentBook {
    use gp_adapter::appointments::{
        BookClinician, BookLocation, BookSession, BookSlot, DeliveryChannel, JobRole, SlotStatus,
    };
    use gp_adapter::time::UtcDateTime;
    let at = |day: u8, minutes: u32| UtcDateTime {
        year: 2026,
        month: 12,
        day,
        hour: (8 + minutes / 60) as u8,
        minute: (minutes % 60) as u8,
        second: 0,
    };
    let mut book = gp_adapter::AppointmentBook::default();
    for c in 0..10 {
        book.clinicians.push(BookClinician {
            id: format!("clinician-{c}"),
            prefix: Some("Dr".into()),
            given: "Amir".into(),
            family: format!("Khan{c}"),
            gender: Some("male".into()),
            sds_user_id: Some(format!("{:012}", 100_000 + c)),
            role: Some(JobRole {
                code: "R0260".into(),
                display: "General Medical Practitioner".into(),
            }),
        });
    }
    for l in 0..2 {
        book.locations.push(BookLocation {
            id: format!("site-{l}"),
            name: format!("Site {l}"),
            lines: vec!["1 High Street".into()],
            town: Some("Leeds".into()),
            postcode: Some("LS1 1AA".into()),
        });
    }
    let mut n = 0u32;
    'days: for day in 1..=14u8 {
        for session in 0..20u32 {
            let id = format!("session-{day}-{session}");
            book.sessions.push(BookSession {
                id: id.clone(),
                name: "Morning surgery".into(),
                clinician: Some(format!("clinician-{}", session % 10)),
                location: format!("site-{}", session % 2),
                service: Some("GP consultation".into()),
                start: at(day, 0),
                end: at(day, 150),
            });
            for slot in 0..15u32 {
                if n == 4_000 {
                    break 'days;
                }
                book.slots.push(BookSlot {
                    id: format!("slot-{n}"),
                    session: id.clone(),
                    start: at(day, slot * 10),
                    end: at(day, slot * 10 + 10),
                    slot_type: "GP consultation".into(),
                    channel: DeliveryChannel::InPerson,
                    status: match n % 10 {
                        0 => SlotStatus::Busy,
                        1 => SlotStatus::Unavailable,
                        _ => SlotStatus::Free,
                    },
                });
                n += 1;
            }
        }
    }
    book
}

/// The gateway's share of a 14-day free-slot search: the book mapped to FHIR (every
/// include) and the searchset Bundle serialised.
fn free_slots(c: &mut Criterion) {
    use gp_adapter::appointments::fhir::{SlotFilter, SlotIncludes, free_slots};
    let book = appointment_book();
    let ods = gp_fhir::OdsCode::parse("A99901").unwrap();
    let includes = SlotIncludes {
        schedule: true,
        practitioner: true,
        practitioner_role: true,
        location: true,
    };
    let mut g = c.benchmark_group("appointments");
    g.throughput(Throughput::Elements(book.slots.len() as u64));
    g.bench_function("free_slots_14_days_4000_slots_to_bundle_json", |b| {
        b.iter(|| {
            let found = free_slots(&ods, black_box(&book), &SlotFilter::default(), includes);
            let total = found.slots.len() as u32;
            let bundle = gp_fhir::bundle::Searchset {
                base_url: "http://127.0.0.1:8080/FHIR/R4",
                resource_type: "Slot",
                params: &[],
                paging: gp_fhir::search::Paging {
                    count: total,
                    offset: 0,
                },
                total,
                id: "bench",
                last_updated: "2026-12-01T09:00:00+00:00",
            }
            .build_with(found.slots, found.included);
            black_box(bundle.to_json())
        })
    });
    g.finish();
}

criterion_group!(benches, bundle, tokens, scopes, nhs_number, free_slots);
criterion_main!(benches);
