#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! TPP SystmOne paged PatientRecord XML → UK Core: the demo patient's record and a
//! 1,000-entry record (also with national-size terminology maps), rendered by the
//! SystmOne simulator in pages of the adapter's default size and joined as the adapter
//! joins them. `cargo bench -p gp-adapter-tpp`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gp_adapter_tpp::config::MAX_PAGE_SIZE;
use gp_fhir::model::Resource;
use gp_sim::{Practice, SimPatient, SystemKind};

#[path = "../../../bench/support/records.rs"]
mod records;

/// Every page of the record, as the simulator serves them.
fn pages(practice: &Practice, p: &SimPatient) -> Vec<String> {
    let size = MAX_PAGE_SIZE as usize;
    let first = gp_sim::tpp::render_page(practice, p, 1, size);
    let total: usize = first
        .split("TotalEvents=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    let mut out = vec![first];
    for page in 2..=total.div_ceil(size) {
        out.push(gp_sim::tpp::render_page(practice, p, page, size));
    }
    out
}

fn mapping(c: &mut Criterion) {
    let (practice, patient) = records::typical(SystemKind::Tpp);
    let large = records::grown(&patient, records::LARGE);
    let mut group = c.benchmark_group("tpp/map_record");
    for (name, p) in [("typical", &patient), ("1000_entries", &large)] {
        let pages = pages(&practice, p);
        let bodies: Vec<&[u8]> = pages.iter().map(|s| s.as_bytes()).collect();
        let mapped = gp_adapter_tpp::map_record(&bodies, MAX_PAGE_SIZE).unwrap();
        assert!(mapped.clinical.len() >= records::entries(p) / 2, "{name}");
        group.throughput(Throughput::Elements(records::entries(p) as u64));
        group.bench_function(name, |b| {
            b.iter(|| gp_adapter_tpp::map_record(black_box(&bodies), MAX_PAGE_SIZE).unwrap())
        });
    }
    let pages = pages(&practice, &large);
    let bodies: Vec<&[u8]> = pages.iter().map(|s| s.as_bytes()).collect();
    records::with_national_maps(&mut group, records::entries(&large), || {
        gp_adapter_tpp::map_record(black_box(&bodies), MAX_PAGE_SIZE).unwrap()
    });
    group.finish();
    // Native bytes to answer bytes: the whole record mapped, then every entry
    // serialised into the searchset Bundle.
    let mut group = c.benchmark_group("tpp/record_to_bundle_bytes");
    group.throughput(Throughput::Elements(records::entries(&large) as u64));
    group.bench_function("1000", |b| {
        b.iter(|| {
            let r = gp_adapter_tpp::map_record(black_box(&bodies), MAX_PAGE_SIZE).unwrap();
            let mut resources = Vec::with_capacity(r.clinical.len() + 1);
            resources.push(Resource::Patient(r.patient));
            resources.extend(r.clinical);
            records::bundle_bytes(resources)
        })
    });
    group.finish();
}

criterion_group!(benches, mapping);
criterion_main!(benches);
