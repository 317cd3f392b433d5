#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Vision delimited extracts → UK Core: the patient extract plus the journal of the demo
//! patient and of a 1,000-entry record (also with national-size terminology maps),
//! rendered by the Vision simulator.
//! `cargo bench -p gp-adapter-vision`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gp_adapter_vision::{JournalOwner, map_journal, map_patient};
use gp_fhir::model::Resource;
use gp_fhir::{NhsNumber, OdsCode};
use gp_sim::SystemKind;

#[path = "../../../bench/support/records.rs"]
mod records;

fn mapping(c: &mut Criterion) {
    let (practice, patient) = records::typical(SystemKind::Vision);
    let large = records::grown(&patient, records::LARGE);
    let ods = OdsCode::parse(&practice.ods).unwrap();
    let owner = JournalOwner {
        pid: patient.id.clone(),
        nhs_number: NhsNumber::parse(&patient.nhs_number).unwrap(),
        ods: ods.clone(),
    };
    let map = |extract: &str, journal: &[String]| {
        let patient = map_patient(black_box(extract.as_bytes()), &ods).unwrap();
        let clinical = map_journal(black_box(journal), &owner).unwrap();
        (patient, clinical)
    };
    // The patient extract, and one page holding the whole journal (the simulator splits
    // at 500 rows).
    let native = |p| {
        (
            gp_sim::vision::render_patient(p),
            [gp_sim::vision::render_journal(p)],
        )
    };
    let mut group = c.benchmark_group("vision/map_record");
    for (name, p) in [("typical", &patient), ("1000_entries", &large)] {
        let (extract, journal) = native(p);
        // The same calls the timed loop makes, so `--list` under callgrind profiles exactly them.
        let (_, mapped) = map(&extract, &journal);
        assert!(mapped.len() >= records::entries(p) / 2, "{name}");
        group.throughput(Throughput::Elements(records::entries(p) as u64));
        group.bench_function(name, |b| b.iter(|| map(&extract, &journal)));
    }
    let (extract, journal) = native(&large);
    records::with_national_maps(&mut group, records::entries(&large), || {
        map(&extract, &journal)
    });
    group.finish();
    // Native bytes to answer bytes: the whole record mapped, then every entry
    // serialised into the searchset Bundle.
    let mut group = c.benchmark_group("vision/record_to_bundle_bytes");
    group.throughput(Throughput::Elements(records::entries(&large) as u64));
    group.bench_function("1000", |b| {
        b.iter(|| {
            let (patient, clinical) = map(&extract, &journal);
            let mut resources = Vec::with_capacity(clinical.len() + 1);
            resources.push(Resource::Patient(patient.patient));
            resources.extend(clinical);
            records::bundle_bytes(resources)
        })
    });
    group.finish();
}

criterion_group!(benches, mapping);
criterion_main!(benches);
