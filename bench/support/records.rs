//! Native records for the mapping benchmarks, built from the simulators' own synthetic
//! population so every adapter maps exactly what its GP system simulator serves.
//! Included by each adapter's `benches/mapping.rs` with `#[path]` (one source, four crates).

/// The allocator the `gp-gateway` binary ships with (its `main.rs`), so every benchmark
/// that includes this file measures the mapping as it runs in the gateway.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use gp_sim::{EntryMeta, Population, PopulationSpec, Practice, SimPatient, SystemKind};

/// The sandbox's population seed (`gp_gateway::sandbox::DEFAULT_SEED`).
pub const SEED: u64 = 20_261_123;

/// Entries in the "large" record.
pub const LARGE: usize = 1_000;

/// The demo patient of `system` (a typical full record) and their practice.
pub fn typical(system: SystemKind) -> (Practice, SimPatient) {
    let population = Population::generate(SEED, &PopulationSpec::sandbox());
    let nhs = gp_sim::DEMO_NHS_NUMBERS
        .iter()
        .find(|(s, _)| *s == system)
        .map_or("", |(_, n)| *n);
    let patient = population
        .patient_by_nhs(nhs)
        .cloned()
        .unwrap_or_else(|| population.patients[0].clone());
    let practice = population
        .practice(&patient.practice)
        .cloned()
        .unwrap_or_else(|| population.practices[0].clone());
    (practice, patient)
}

/// Clinical entries of every kind a patient holds.
pub fn entries(p: &SimPatient) -> usize {
    p.allergies.len()
        + p.medications.len()
        + p.problems.len()
        + p.observations.len()
        + p.immunisations.len()
        + p.consultations.len()
}

/// `p` grown to exactly `n` clinical entries by repeating its own entries (same mix of
/// kinds, fresh GUIDs, none confidential so every one is mapped).
pub fn grown(p: &SimPatient, n: usize) -> SimPatient {
    let mut out = p.clone();
    let mut i = 0usize;
    let fresh = |meta: &EntryMeta, i: usize| EntryMeta {
        id: format!("b{:07x}-0000-4000-8000-{:012x}", i, i),
        confidential: false,
        external_key: None,
        ..meta.clone()
    };
    while entries(&out) < n {
        let before = entries(&out);
        macro_rules! grow {
            ($field:ident) => {
                for e in &p.$field {
                    if entries(&out) >= n {
                        break;
                    }
                    let mut e = e.clone();
                    e.meta = fresh(&e.meta, i);
                    i += 1;
                    out.$field.push(e);
                }
            };
        }
        grow!(observations);
        grow!(medications);
        grow!(problems);
        grow!(allergies);
        grow!(immunisations);
        grow!(consultations);
        if entries(&out) == before {
            break; // an empty record cannot grow
        }
    }
    out
}

/// Benches `map`, the 1,000-entry record's mapping, again as `1000_entries_national_maps`
/// with national-size terminology maps installed in place of the embedded ones, which answer
/// its codes alike (asserted first): only the maps' size differs (issue 26; BENCHMARKS.md,
/// "Terminology"). The embedded maps are installed again after.
#[allow(dead_code)] // the gateway's bench maps no record twice
pub fn with_national_maps<T: PartialEq>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    entries: usize,
    map: impl Fn() -> T,
) {
    use gp_adapter::terminology::{self, Maps, testdata};
    let embedded = map();
    terminology::install(testdata::national_maps().unwrap());
    assert!(map() == embedded, "the national maps map the record alike");
    group.throughput(criterion::Throughput::Elements(entries as u64));
    group.bench_function("1000_entries_national_maps", |b| b.iter(&map));
    terminology::install(Maps::embedded());
}

/// The searchset Bundle the gateway answers for `resources` (each a match, all on one
/// page), as JSON bytes, made as a search answer is made (`gp_fhir::bundle::Searchset`,
/// then straight to bytes): with the mapping, the whole uncached path from native record
/// bytes to answer bytes (issue 27).
#[allow(dead_code)] // the gateway's bench builds its own Bundles
pub fn bundle_bytes(resources: Vec<gp_fhir::model::Resource>) -> Vec<u8> {
    let total = u32::try_from(resources.len()).unwrap();
    let params = [("patient".to_owned(), "9000000009".to_owned())];
    gp_fhir::bundle::Searchset {
        base_url: "http://127.0.0.1:8080/FHIR/R4",
        resource_type: "Observation",
        params: &params,
        paging: gp_fhir::search::Paging {
            count: total,
            offset: 0,
        },
        total,
        id: "bench",
        last_updated: "2026-11-23T00:00:00Z",
    }
    .build(resources)
    .to_json()
}
