//! Parity: the same clinical facts recorded in any of the four GP systems come out of
//! the adapters as the same UK Core FHIR (same SNOMED CT codes, same structure). One
//! synthetic patient is registered, identically, at a practice on each system; each
//! simulator serves it in its own native format; the four FHIR outputs are compared
//! after removing what is legitimately vendor-specific (native ids and identifiers,
//! original Read v2 / CTV3 / EMIS codings, the literal ids of referenced practitioners,
//! and the county, which SystmOne's native address does not record).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use gp_adapter::{Adapter, CallContext, ClinicalType, GpSystem, PatientRequest, SearchRequest};
use gp_fhir::date::DateRange;
use gp_fhir::model::{DMD, Resource, SNOMED};
use gp_fhir::{NhsNumber, OdsCode};
use gp_sim::{Population, PopulationSpec, SimHandle, SimPatient, SimStore, SystemKind};
use serde_json::Value;

/// Re-registers `source` at `practice`, moving its clinicians' roles to that practice's staff.
fn copy_to(source: &SimPatient, from: &gp_sim::Practice, to: &gp_sim::Practice) -> SimPatient {
    let remap = |id: &str| -> String {
        let i = from.clinicians.iter().position(|c| c.id == id).unwrap_or(0);
        to.clinicians[i % to.clinicians.len()].id.clone()
    };
    let mut p = source.clone();
    p.practice = to.ods.clone();
    p.usual_gp = remap(&p.usual_gp);
    for m in p.allergies.iter_mut().map(|e| &mut e.meta) {
        m.author = remap(&m.author);
    }
    for m in p.medications.iter_mut().map(|e| &mut e.meta) {
        m.author = remap(&m.author);
    }
    for m in p.problems.iter_mut().map(|e| &mut e.meta) {
        m.author = remap(&m.author);
    }
    for m in p.observations.iter_mut().map(|e| &mut e.meta) {
        m.author = remap(&m.author);
    }
    for m in p.immunisations.iter_mut().map(|e| &mut e.meta) {
        m.author = remap(&m.author);
    }
    for c in &mut p.consultations {
        c.meta.author = remap(&c.meta.author);
        c.clinician = remap(&c.clinician);
    }
    p
}

/// Strips what is vendor-specific, keeping the clinical content.
fn normalise(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.remove("id");
            map.remove("text");
            // SystmOne's native address has four free lines and no county
            // (docs/native-formats/tpp.md): the one demographic it cannot carry.
            map.remove("district");
            if let Some(Value::Object(meta)) = map.get_mut("meta") {
                meta.remove("versionId");
                meta.remove("lastUpdated");
            }
            // Only the NHS number identifier is shared across systems.
            if let Some(Value::Array(ids)) = map.get_mut("identifier") {
                ids.retain(|i| i["system"] == "https://fhir.nhs.uk/Id/nhs-number");
                if ids.is_empty() {
                    map.remove("identifier");
                }
            }
            // Original codings differ by design; the mapped SNOMED CT (and dm+d) ones must not.
            if let Some(Value::Array(codings)) = map.get_mut("coding") {
                let shared = |c: &Value| {
                    c["system"] == SNOMED
                        || c["system"] == DMD
                        || !c["system"]
                            .as_str()
                            .unwrap_or("")
                            .starts_with("http://read.info")
                };
                codings
                    .retain(|c| shared(c) && !c["system"].as_str().unwrap_or("").contains("emis"));
                for c in codings.iter_mut() {
                    if let Value::Object(c) = c {
                        c.remove("display");
                        c.remove("userSelected");
                    }
                }
            }
            if let Some(Value::String(r)) = map.get_mut("reference")
                && let Some((t, _)) = r.split_once('/')
                && t != "Patient"
            {
                *r = format!("{t}/*");
            }
            for child in map.values_mut() {
                normalise(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalise),
        _ => {}
    }
}

fn canonical(resources: &[Resource]) -> Vec<String> {
    let mut out: Vec<String> = resources
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap();
            normalise(&mut v);
            serde_json::to_string(&v).unwrap()
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn one_patient_in_four_systems_gives_the_same_uk_core_fhir() {
    let mut population = Population::generate(7, &PopulationSpec::sandbox());
    let source_practice = population
        .practices
        .iter()
        .find(|p| p.system == SystemKind::Emis)
        .unwrap()
        .clone();
    let source = population
        .patients
        .iter()
        .find(|p| p.practice == source_practice.ods && !p.flags.sensitive && !p.flags.dissent)
        .unwrap()
        .clone();
    // The same patient at the first practice of every other system the population runs.
    let mut homes: BTreeMap<SystemKind, OdsCode> = BTreeMap::new();
    homes.insert(
        SystemKind::Emis,
        OdsCode::parse(&source_practice.ods).unwrap(),
    );
    for kind in population.systems() {
        if kind == SystemKind::Emis {
            continue;
        }
        let to = population
            .practices
            .iter()
            .find(|p| p.system == kind)
            .unwrap()
            .clone();
        population
            .patients
            .push(copy_to(&source, &source_practice, &to));
        homes.insert(kind, OdsCode::parse(&to.ods).unwrap());
    }
    assert_eq!(homes.len(), 4, "the population runs the four GP systems");
    let store = SimStore::new(population);
    // Each system's simulator, and its adapter from the gateway's registry.
    let registry = gp_gateway::systems::builtin();
    let mut sims: Vec<SimHandle> = Vec::new();
    let mut adapters: Vec<(GpSystem, SystemKind, std::sync::Arc<dyn Adapter>)> = Vec::new();
    for kind in homes.keys().copied() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = gp_sim::start(kind, store.clone(), listener).await.unwrap();
        let config = registry
            .configure(kind.id(), serde_json::json!({ "base_url": sim.base_url() }))
            .unwrap();
        adapters.push((config.system(), kind, config.build().unwrap()));
        sims.push(sim);
    }
    let nhs = NhsNumber::parse(&source.nhs_number).unwrap();
    let mut outputs: BTreeMap<String, Vec<(GpSystem, Vec<String>)>> = BTreeMap::new();
    for (system, kind, adapter) in &adapters {
        let practice = homes[kind].clone();
        let ctx = CallContext::new("parity");
        let record = adapter
            .read_patient(&PatientRequest {
                nhs_number: nhs,
                practice: practice.clone(),
                context: ctx.clone(),
            })
            .await
            .unwrap();
        outputs
            .entry("Patient".into())
            .or_default()
            .push((*system, canonical(&[Resource::Patient(record.patient)])));
        for t in ClinicalType::ALL {
            let req = SearchRequest {
                nhs_number: nhs,
                practice: practice.clone(),
                resource_type: *t,
                date: DateRange::default(),
                count: 10_000,
                offset: 0,
                context: ctx.clone(),
            };
            let page = adapter
                .search(&req)
                .await
                .unwrap_or_else(|e| panic!("{system} {t}: {e}"));
            assert!(
                !page.resources.is_empty() || *t == ClinicalType::AllergyIntolerance,
                "{system} returned no {t}"
            );
            outputs
                .entry(t.as_str().into())
                .or_default()
                .push((*system, canonical(&page.resources)));
        }
    }
    let mut mismatches = Vec::new();
    for (area, per_system) in &outputs {
        let (reference_system, reference) = &per_system[0];
        for (system, got) in &per_system[1..] {
            if got != reference {
                let only_ref: Vec<&String> = reference
                    .iter()
                    .filter(|r| !got.contains(r))
                    .take(2)
                    .collect();
                let only_got: Vec<&String> = got
                    .iter()
                    .filter(|r| !reference.contains(r))
                    .take(2)
                    .collect();
                mismatches.push(format!(
                    "{area}: {system} differs from {reference_system} ({} vs {} resources)\n  only {reference_system}: {only_ref:?}\n  only {system}: {only_got:?}",
                    got.len(),
                    reference.len()
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "parity broken:\n{}",
        mismatches.join("\n")
    );
}
