#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Microtest Evolution JSON → UK Core: the patient document plus one entries page per
//! entry type, for the demo patient and a 1,000-entry record (also with national-size
//! terminology maps), rendered by the Evolution simulator. `cargo bench -p gp-adapter-microtest`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gp_adapter_microtest::{EntryType, map_entries, map_patient};
use gp_fhir::model::Resource;
use gp_fhir::{NhsNumber, OdsCode};
use gp_sim::{Practice, SimPatient, SystemKind};
use serde_json::json;

#[path = "../../../bench/support/records.rs"]
mod records;

const TYPES: [EntryType; 6] = [
    EntryType::Allergy,
    EntryType::Medication,
    EntryType::Problem,
    EntryType::Observation,
    EntryType::Immunisation,
    EntryType::Consultation,
];

/// The patient document and one entries page per entry type, as the simulator serves them.
fn native(practice: &Practice, p: &SimPatient) -> (Vec<u8>, Vec<(EntryType, Vec<u8>)>) {
    let doc = serde_json::to_vec(&gp_sim::microtest::render_patient(practice, p)).unwrap();
    let pages = TYPES
        .iter()
        .map(|t| {
            let entries = gp_sim::microtest::render_entries(p, t.as_str());
            let total = entries.len();
            let page = json!({"entries": entries, "total": total, "next_cursor": null});
            (*t, serde_json::to_vec(&page).unwrap())
        })
        .collect();
    (doc, pages)
}

fn mapping(c: &mut Criterion) {
    let (practice, patient) = records::typical(SystemKind::Microtest);
    let large = records::grown(&patient, records::LARGE);
    let nhs = NhsNumber::parse(&patient.nhs_number).unwrap();
    let ods = OdsCode::parse(&practice.ods).unwrap();
    let map = |doc: &[u8], pages: &[(EntryType, Vec<u8>)]| {
        let patient = map_patient(black_box(doc)).unwrap();
        let clinical: Vec<_> = pages
            .iter()
            .map(|(t, body)| map_entries(black_box(body), *t, nhs, &ods).unwrap())
            .collect();
        (patient, clinical)
    };
    let mut group = c.benchmark_group("microtest/map_record");
    for (name, p) in [("typical", &patient), ("1000_entries", &large)] {
        let (doc, pages) = native(&practice, p);
        // The same calls the timed loop makes, so `--list` under callgrind profiles exactly them.
        let mapped: usize = map(&doc, &pages).1.iter().map(|m| m.resources.len()).sum();
        assert!(mapped >= records::entries(p) / 2, "{name}");
        group.throughput(Throughput::Elements(records::entries(p) as u64));
        group.bench_function(name, |b| b.iter(|| map(&doc, &pages)));
    }
    let (doc, pages) = native(&practice, &large);
    records::with_national_maps(&mut group, records::entries(&large), || map(&doc, &pages));
    group.finish();
    // Native bytes to answer bytes: the whole record mapped (the patient document and a
    // page of each entry type), then every entry serialised into the searchset Bundle.
    let mut group = c.benchmark_group("microtest/record_to_bundle_bytes");
    group.throughput(Throughput::Elements(records::entries(&large) as u64));
    group.bench_function("1000", |b| {
        b.iter(|| {
            let (patient, pages) = map(&doc, &pages);
            let mut resources = vec![Resource::Patient(patient.patient)];
            resources.extend(pages.into_iter().flat_map(|p| p.resources));
            records::bundle_bytes(resources)
        })
    });
    group.finish();
}

criterion_group!(benches, mapping);
criterion_main!(benches);
