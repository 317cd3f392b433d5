//! `[terminology]` end to end: a gateway loading national-size map files (generated in
//! the TRUD release formats, never real TRUD content) serves every GP system's records
//! with each code the files map normalised to the files' SNOMED CT concept, marks the
//! unassured ones, counts nothing unmapped, and keeps its running maps when a reloaded
//! file is broken.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use gp_adapter::terminology::{CodeScheme, EMIS_LOCAL_SYSTEM, MAP_ASSURANCE_URL, testdata};
use gp_e2e::World;
use gp_gateway::terminology::TerminologyConfig;
use serde_json::{Value, json};

const READ_V2: &str = "http://read.info/readv2";
const CTV3: &str = "http://read.info/ctv3";
const SNOMED: &str = "http://snomed.info/sct";

/// The code the files map elsewhere than the gateway's curated map does (asthma), to
/// tell the files' answer from the embedded one.
const REMAPPED: &str = "H33..";

/// What the files must make of each population code: (scheme system, code) →
/// (SNOMED CT id, assured).
type Expected = BTreeMap<(&'static str, String), (String, bool)>;

/// A fresh directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let p = std::env::temp_dir().join(format!("gp-terminology-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every code the synthetic population records, by scheme, with its concept, and the
/// codes the adapters add themselves (the blood pressure panel's), as the curated maps
/// map them.
fn population() -> Vec<(CodeScheme, &'static str, &'static str)> {
    let mut out = testdata::curated_codes();
    for c in gp_sim::concepts::all() {
        for (scheme, code) in [
            (CodeScheme::ReadV2, c.read2),
            (CodeScheme::Ctv3, c.ctv3),
            (CodeScheme::EmisLocal, c.emis),
        ] {
            if let Some(code) = code
                && !out.iter().any(|(s, k, _)| *s == scheme && *k == code)
            {
                out.push((scheme, code, c.snomed));
            }
        }
    }
    out
}

/// Writes national-size files for the population: Read v2 and CTV3 of `rows` rows, the
/// Read v2 code `REMAPPED` mapped to `remapped_to`, and one more Read v2 code (the
/// first other than it) only in a second, "not clinically assured" release file.
/// Returns the config and what each code must map to.
fn write_files(dir: &Path, rows: usize, remapped_to: &str) -> (TerminologyConfig, Expected) {
    let pop = population();
    let unassured = pop
        .iter()
        .find(|(s, c, _)| *s == CodeScheme::ReadV2 && *c != REMAPPED)
        .map(|(_, c, sct)| (*c, *sct))
        .unwrap();
    let mut expected = Expected::new();
    let mut known: Vec<(CodeScheme, &str, &str)> = Vec::new();
    for (scheme, code, snomed) in &pop {
        if *scheme == CodeScheme::ReadV2 && *code == unassured.0 {
            continue;
        }
        let snomed = if *scheme == CodeScheme::ReadV2 && *code == REMAPPED {
            remapped_to
        } else {
            snomed
        };
        known.push((*scheme, code, snomed));
        expected.insert(
            (scheme.system(), code.to_string()),
            (snomed.to_owned(), true),
        );
    }
    let files = testdata::write_all(dir, testdata::Sizes::all(rows), &known).unwrap();
    let unassured_path = dir.join("rcsctmap_uk_20261001000001.txt");
    std::fs::write(
        &unassured_path,
        format!(
            "MapId\tReadCode\tTermCode\tConceptId\tT30ID\tT60ID\tT198ID\tEffectiveDate\tMapStatus\r\n\
             {{6A1B2C3D-0000-4000-8000-000000000001}}\t{}\t00\t{}\t\t\t\t20200401\t1\r\n",
            unassured.0, unassured.1
        ),
    )
    .unwrap();
    expected.insert(
        (READ_V2, unassured.0.to_owned()),
        (unassured.1.to_owned(), false),
    );
    let mut read_v2 = files.read_v2.clone();
    read_v2.push(unassured_path);
    let cfg = TerminologyConfig {
        read_v2,
        ctv3: files.ctv3,
        emis_local: files.emis_local,
        reload_interval_secs: 1,
    };
    (cfg, expected)
}

fn structured_body(nhs: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "resourceType": "Parameters", "parameter": [
        { "name": "patientNHSNumber", "valueIdentifier": { "system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs } },
        { "name": "includeAllergies", "part": [{ "name": "includeResolvedAllergies", "valueBoolean": true }] },
        { "name": "includeMedication" },
        { "name": "includeConsultations" },
        { "name": "includeProblems" },
        { "name": "includeImmunisations" },
        { "name": "includeInvestigations" }
    ]}))
    .unwrap()
}

/// Every CodeableConcept (an object with a `coding` array) in a patient's whole record.
async fn concepts(w: &World, token: &str, nhs: &str) -> Vec<Value> {
    let a = w
        .call(
            "POST",
            "/Patient/$gpc.getstructuredrecord",
            token,
            &[("content-type", "application/fhir+json")],
            &structured_body(nhs),
        )
        .await;
    assert_eq!(a.status, 200, "{nhs}: {}", String::from_utf8_lossy(&a.body));
    let mut out = Vec::new();
    collect(&a.json(), &mut out);
    out
}

fn collect(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Object(m) => {
            if m.get("coding").is_some_and(Value::is_array) {
                out.push(v.clone());
            }
            m.values().for_each(|x| collect(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
        _ => {}
    }
}

/// The ordinary patients of `system` demo-consult may read, at most `n`.
fn patients(w: &World, system: &str, n: usize) -> Vec<String> {
    let paired = w.practices_of("demo-consult");
    w.manifest()
        .patients
        .iter()
        .filter(|p| p.system == system && p.flags.is_empty() && paired.contains(&p.practice))
        .take(n)
        .map(|p| p.nhs_number.clone())
        .collect()
}

async fn metrics(w: &World) -> String {
    let url = format!("http://{}/metrics", w.sandbox.admin.addr);
    let a = w.send("GET", &url, &[], b"").await;
    assert_eq!(a.status, 200);
    String::from_utf8(a.body.to_vec()).unwrap()
}

/// The value of the metric line starting `prefix` (0 when absent).
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn national_maps_normalise_every_code_the_files_map_on_every_gp_system() {
    let dir = TempDir::new();
    let remapped_to = testdata::sctid(4_242_424, "00");
    let (cfg, expected) = write_files(&dir.0, 200_000, &remapped_to);
    let w = World::start_with(gp_gateway::sandbox::Options {
        terminology: Some(cfg),
        ..Default::default()
    })
    .await;
    let token = w.token("demo-consult").await;
    let mut seen: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let (mut remapped_seen, mut unassured_seen) = (0, 0);
    for system in ["emis", "tpp", "vision", "microtest"] {
        let nhs_numbers = patients(&w, system, 6);
        assert!(!nhs_numbers.is_empty(), "{system}: no patients");
        for nhs in nhs_numbers {
            for cc in concepts(&w, &token, &nhs).await {
                let codings = cc["coding"].as_array().unwrap();
                let Some(original) = codings.iter().find(|c| {
                    [READ_V2, CTV3, EMIS_LOCAL_SYSTEM].contains(&c["system"].as_str().unwrap_or(""))
                }) else {
                    continue;
                };
                let scheme_system = original["system"].as_str().unwrap();
                let code = original["code"].as_str().unwrap().to_owned();
                let scheme = [READ_V2, CTV3, EMIS_LOCAL_SYSTEM]
                    .into_iter()
                    .find(|s| *s == scheme_system)
                    .unwrap();
                seen.entry(system).or_default().insert(scheme);
                let Some((snomed, assured)) = expected.get(&(scheme, code.clone())) else {
                    panic!("{system} {nhs}: {scheme} {code} is not a population code: {cc}");
                };
                assert_eq!(
                    codings[0]["system"], SNOMED,
                    "{system} {nhs}: the SNOMED CT coding comes first: {cc}"
                );
                assert_eq!(
                    codings[0]["code"],
                    snomed.as_str(),
                    "{system} {nhs}: {scheme} {code} maps as the files say: {cc}"
                );
                assert_eq!(original["userSelected"], true, "{cc}");
                let marked = codings[0]["extension"].as_array().is_some_and(|e| {
                    e.iter()
                        .any(|x| x["url"] == MAP_ASSURANCE_URL && x["valueCode"] == "unassured")
                });
                assert_eq!(
                    marked, !assured,
                    "{system} {nhs}: {code} assurance mark: {cc}"
                );
                if code == REMAPPED {
                    remapped_seen += 1;
                }
                if !assured {
                    unassured_seen += 1;
                }
            }
        }
    }
    assert!(remapped_seen > 0, "no record carried {REMAPPED}");
    assert!(unassured_seen > 0, "no record carried the unassured code");
    assert!(
        seen["emis"].contains(READ_V2) && seen["emis"].contains(EMIS_LOCAL_SYSTEM),
        "{seen:?}"
    );
    assert!(seen["tpp"].contains(CTV3), "{seen:?}");
    assert!(seen["vision"].contains(READ_V2), "{seen:?}");
    assert!(seen["microtest"].contains(READ_V2), "{seen:?}");
    // Operators see the maps' sizes and that nothing went unmapped.
    let text = metrics(&w).await;
    assert!(
        metric(
            &text,
            "gp_gateway_terminology_codes{scheme=\"readv2\",source=\"files\"}"
        ) > 50_000.0,
        "{text}"
    );
    assert!(
        metric(
            &text,
            "gp_gateway_terminology_codes{scheme=\"ctv3\",source=\"files\"}"
        ) > 50_000.0,
        "{text}"
    );
    for line in text
        .lines()
        .filter(|l| l.starts_with("gp_gateway_unmapped_codes_total{"))
    {
        assert!(line.ends_with(" 0"), "a code went unmapped: {line}");
    }
    w.sandbox.shutdown().await;
}

/// The SNOMED CT id `REMAPPED` reads as in a record that carries it.
async fn remapped_reads_as(w: &World, token: &str, nhs: &str) -> Option<String> {
    concepts(w, token, nhs).await.into_iter().find_map(|cc| {
        let codings = cc["coding"].as_array()?;
        codings
            .iter()
            .any(|c| c["system"] == READ_V2 && c["code"] == REMAPPED)
            .then(|| codings[0]["code"].as_str().unwrap_or("").to_owned())
    })
}

#[tokio::test]
async fn a_broken_file_never_replaces_the_running_maps_and_a_good_one_does() {
    let dir = TempDir::new();
    let first = testdata::sctid(4_242_424, "00");
    let (cfg, _) = write_files(&dir.0, 5_000, &first);
    let read_v2 = cfg.read_v2[0].clone();
    let w = World::start_with(gp_gateway::sandbox::Options {
        terminology: Some(cfg),
        ..Default::default()
    })
    .await;
    let token = w.token("demo-consult").await;
    // A patient whose record carries the remapped code.
    let mut patient = None;
    'find: for system in ["emis", "vision", "microtest"] {
        for nhs in patients(&w, system, 6) {
            if remapped_reads_as(&w, &token, &nhs).await.is_some() {
                patient = Some(nhs);
                break 'find;
            }
        }
    }
    let nhs = patient.expect("a patient whose record carries H33..");
    assert_eq!(
        remapped_reads_as(&w, &token, &nhs).await,
        Some(first.clone())
    );

    // A broken file: refused, the running maps kept.
    let good = std::fs::read_to_string(&read_v2).unwrap();
    let mut lines: Vec<String> = good.split("\r\n").map(str::to_owned).collect();
    let mut fields: Vec<&str> = lines[3].split('\t').collect();
    *fields.last_mut().unwrap() = "2"; // MapStatus
    lines[3] = fields.join("\t");
    std::fs::write(&read_v2, lines.join("\r\n")).unwrap();
    let refused = wait_for(
        &w,
        "gp_gateway_terminology_reloads_total{result=\"refused\"}",
    )
    .await;
    assert!(refused >= 1.0);
    assert_eq!(
        remapped_reads_as(&w, &token, &nhs).await,
        Some(first.clone()),
        "the running maps are kept"
    );

    // A good file with another concept: taken, and the cached record forgotten.
    let second = testdata::sctid(5_353_535, "00");
    let (_, _) = write_files(&dir.0, 5_000, &second);
    wait_for(&w, "gp_gateway_terminology_reloads_total{result=\"ok\"}").await;
    assert_eq!(remapped_reads_as(&w, &token, &nhs).await, Some(second));
    w.sandbox.shutdown().await;
}

/// Waits (at most 15 s) until the metric line starting `prefix` is above 0.
async fn wait_for(w: &World, prefix: &str) -> f64 {
    for _ in 0..150 {
        let v = metric(&metrics(w).await, prefix);
        if v > 0.0 {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{prefix} never counted");
}
