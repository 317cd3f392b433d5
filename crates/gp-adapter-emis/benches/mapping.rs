#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! EMIS Web MedicalRecord XML → UK Core: the demo patient's record and a 1,000-entry
//! record, both rendered by the EMIS simulator. `cargo bench -p gp-adapter-emis`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gp_sim::SystemKind;

#[path = "../../../bench/support/records.rs"]
mod records;

fn mapping(c: &mut Criterion) {
    let (practice, patient) = records::typical(SystemKind::Emis);
    let large = records::grown(&patient, records::LARGE);
    let mut group = c.benchmark_group("emis/map_record");
    for (name, p) in [("typical", &patient), ("1000_entries", &large)] {
        let xml = gp_sim::emis::render_record(&practice, p);
        let mapped = gp_adapter_emis::map_record(xml.as_bytes()).unwrap();
        assert!(mapped.clinical.len() >= records::entries(p) / 2, "{name}");
        group.throughput(Throughput::Elements(records::entries(p) as u64));
        group.bench_function(name, |b| {
            b.iter(|| gp_adapter_emis::map_record(black_box(xml.as_bytes())).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, mapping);
criterion_main!(benches);
