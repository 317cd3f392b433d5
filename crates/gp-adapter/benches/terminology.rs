#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Terminology at national scale (issue 26): loading a 500,000-row Read v2 forward map,
//! looking codes up in national-size maps (hits and misses), and turning a coded item
//! into a CodeableConcept with national-size maps installed against the curated embedded
//! ones. `cargo bench -p gp-adapter --bench terminology`; the resident set a load holds is
//! the `terminology_load` example's. Targets and figures: BENCHMARKS.md, "Terminology".

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gp_adapter::GpSystem;
use gp_adapter::terminology::{self, CodeScheme, Maps, load, testdata};

/// The allocator the `gp-gateway` binary ships with, so the figures are the gateway's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROWS: usize = 500_000;

/// Codes a lookup bench cycles through: far more than one hot key, so each lookup pays
/// for finding its own bucket in a table of hundreds of thousands.
const CYCLE: usize = 1 << 16;

const SYSTEM: GpSystem = GpSystem::new("emis", "EMIS Web");

fn loading(c: &mut Criterion) {
    let generated = testdata::generate(
        CodeScheme::ReadV2,
        &[],
        &testdata::Options {
            rows: ROWS,
            expect: false,
            ..testdata::Options::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let paths = [dir.path().join(testdata::file_name(CodeScheme::ReadV2))];
    std::fs::write(&paths[0], &generated.text).unwrap();
    drop(generated);
    let loaded = load::load(CodeScheme::ReadV2, &paths).unwrap();
    assert!(loaded.report.rows >= ROWS as u64);
    assert!(
        loaded.report.codes > ROWS as u64 / 3,
        "{}",
        loaded.report.codes
    );
    drop(loaded);
    let mut group = c.benchmark_group("terminology");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("load_500k_rows", |b| {
        b.iter(|| load::load(CodeScheme::ReadV2, black_box(&paths)).unwrap())
    });
    group.finish();
}

fn lookups(c: &mut Criterion) {
    let national = testdata::national_maps().unwrap();
    let scheme = CodeScheme::ReadV2;
    let hits: Vec<String> = (1..)
        .map(|n| testdata::code(scheme, n))
        .filter(|code| national.get(scheme, code).is_some())
        .take(CYCLE)
        .collect();
    // Numbered far beyond any code written: none is in the map.
    let misses: Vec<String> = (20_000_000..)
        .map(|n| testdata::code(scheme, n))
        .take(CYCLE)
        .collect();
    assert!(
        misses
            .iter()
            .all(|code| national.get(scheme, code).is_none())
    );

    let mut group = c.benchmark_group("terminology");
    group.throughput(Throughput::Elements(1));
    for (name, codes) in [("lookup_hit", &hits), ("lookup_miss", &misses)] {
        group.bench_function(name, |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & (CYCLE - 1);
                national.get(scheme, black_box(&codes[i]))
            })
        });
    }

    // Every code the curated maps know, as a record carries them, mapped to a
    // CodeableConcept through the curated maps and then through national-size ones that
    // answer them alike.
    let embedded = Maps::embedded();
    let coded: Vec<(CodeScheme, &str, &str)> = testdata::curated_codes()
        .into_iter()
        .map(|(scheme, code, _)| {
            let term = embedded
                .get(scheme, code)
                .and_then(|m| m.term)
                .unwrap_or("");
            (scheme, code, term)
        })
        .collect();
    let map_all = || -> Vec<_> {
        coded
            .iter()
            .map(|(scheme, code, term)| terminology::coded(SYSTEM, *scheme, code, term, None))
            .collect()
    };
    terminology::install(Maps::embedded());
    let through_embedded = map_all();
    terminology::install(national.clone());
    assert!(
        map_all() == through_embedded,
        "the national maps answer the curated codes as the curated maps do"
    );
    for (name, maps) in [
        ("coded_embedded", Maps::embedded()),
        ("coded_national", national),
    ] {
        terminology::install(maps);
        group.bench_function(name, |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % coded.len();
                let (scheme, code, term) = coded[i];
                terminology::coded(SYSTEM, scheme, black_box(code), term, None)
            })
        });
    }
    terminology::install(Maps::embedded());
    group.finish();
}

criterion_group!(benches, loading, lookups);
criterion_main!(benches);
