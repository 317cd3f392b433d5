//! What the release rules withhold from a third-party supplier, and what they must not:
//! each case is one a broken rule would get wrong without any other test noticing (they
//! were found alive by `cargo mutants`). A layer over the GP systems' adapters makes a GP
//! system answer what the simulators never do: a patient restricted by one of the two
//! markers only, entries labelled with half of the confidential test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use gp_adapter::{
    Adapter, AdapterError, ClinicalType, GpSystem, PatientRecord, PatientRequest, SearchPage,
    SearchRequest,
};
use gp_e2e::World;
use gp_fhir::model::{CONFIDENTIALITY_SYSTEM, Coding, Meta, Resource};
use serde_json::Value;

/// The EMIS demo patient: a full record, at a practice every clinical demo supplier reaches.
const DEMO: &str = "9000000009";
/// A coding system that is not the confidentiality one, carrying its code `R`.
const OTHER_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

/// What the layer changes, and what it labelled.
#[derive(Default)]
struct Changes {
    /// Restricted by the GP system's record flag only (its Patient carries no marker).
    flag_only: String,
    /// Restricted by the Patient's `meta.security` marker only (the flag is clear).
    marker_only: String,
    /// Observation ids of the demo patient, by the label given: `N` (normal, in the
    /// confidentiality system), `R` in another system, `R` (confidential).
    labelled: Mutex<Vec<(String, &'static str)>>,
    /// Every Encounter of the demo patient is labelled confidential (from the start).
    encounters_confidential: std::sync::atomic::AtomicBool,
}

struct Layer {
    inner: Arc<dyn Adapter>,
    changes: Arc<Changes>,
}

fn security(meta: &mut Option<Meta>) -> &mut Vec<Coding> {
    &mut meta.get_or_insert_with(Meta::default).security
}

#[async_trait]
impl Adapter for Layer {
    fn system(&self) -> GpSystem {
        self.inner.system()
    }

    fn supported_types(&self) -> &'static [ClinicalType] {
        self.inner.supported_types()
    }

    async fn read_patient(&self, req: &PatientRequest) -> Result<PatientRecord, AdapterError> {
        let mut record = self.inner.read_patient(req).await?;
        let nhs = req.nhs_number.to_string();
        if nhs == self.changes.flag_only {
            record.flags.restricted = true;
        }
        if nhs == self.changes.marker_only {
            security(&mut record.patient.meta).push(Coding::new(
                CONFIDENTIALITY_SYSTEM,
                "R",
                "restricted",
            ));
        }
        Ok(record)
    }

    async fn search(&self, req: &SearchRequest) -> Result<SearchPage, AdapterError> {
        let mut page = self.inner.search(req).await?;
        if req.nhs_number.to_string() == DEMO
            && req.resource_type == ClinicalType::Encounter
            && self
                .changes
                .encounters_confidential
                .load(std::sync::atomic::Ordering::SeqCst)
        {
            for r in &mut page.resources {
                if let Resource::Encounter(e) = r {
                    security(&mut e.meta).push(Coding::new(CONFIDENTIALITY_SYSTEM, "R", ""));
                }
            }
        }
        if req.nhs_number.to_string() == DEMO && req.resource_type == ClinicalType::Observation {
            let mut labelled = self.changes.labelled.lock().unwrap();
            labelled.clear();
            let labels: [(&str, &str, &'static str); 3] = [
                (CONFIDENTIALITY_SYSTEM, "N", "N"),
                (OTHER_SYSTEM, "R", "other-R"),
                (CONFIDENTIALITY_SYSTEM, "R", "R"),
            ];
            let plain = page.resources.iter_mut().filter_map(|r| match r {
                Resource::Observation(o)
                    if o.meta.as_ref().is_none_or(|m| m.security.is_empty()) =>
                {
                    Some(o)
                }
                _ => None,
            });
            for (o, (system, code, label)) in plain.zip(labels) {
                security(&mut o.meta).push(Coding::new(system, code, ""));
                labelled.push((o.id.clone(), label));
            }
        }
        Ok(page)
    }
}

async fn world() -> (World, Arc<Changes>) {
    let population = gp_gateway::sandbox::population(gp_gateway::sandbox::DEFAULT_SEED);
    let ordinary: Vec<String> = population
        .manifest_patients()
        .into_iter()
        .filter(|p| p.nhs_number != DEMO && p.flags.is_empty())
        .map(|p| p.nhs_number)
        .take(2)
        .collect();
    let changes = Arc::new(Changes {
        flag_only: ordinary[0].clone(),
        marker_only: ordinary[1].clone(),
        ..Changes::default()
    });
    let shared = changes.clone();
    let w = World::start_layered(Box::new(move |inner| {
        Arc::new(Layer {
            inner,
            changes: shared.clone(),
        })
    }))
    .await;
    (w, changes)
}

#[tokio::test]
async fn a_patient_restricted_by_either_marker_alone_is_not_found() {
    let (w, changes) = world().await;
    let token = w.token("demo-consult").await;
    for nhs in [&changes.flag_only, &changes.marker_only] {
        let a = w
            .call("GET", &format!("/Patient/{nhs}"), &token, &[], b"")
            .await;
        assert_eq!(a.status, 404, "{nhs}: {}", String::from_utf8_lossy(&a.body));
        assert_eq!(a.spine_code(), "RESOURCE_NOT_FOUND");
        let a = w
            .call(
                "GET",
                &format!("/Observation?patient={nhs}"),
                &token,
                &[],
                b"",
            )
            .await;
        assert_eq!(a.status, 404, "{nhs}: {}", String::from_utf8_lossy(&a.body));
    }
    // The layer changes no one else.
    let a = w
        .call("GET", &format!("/Patient/{DEMO}"), &token, &[], b"")
        .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
}

/// The ids of the EMIS demo patient's observations a search with `params` answers.
async fn observation_ids(w: &World, token: &str, params: &str) -> Vec<String> {
    let a = w
        .call(
            "GET",
            &format!("/Observation?patient={DEMO}&{params}"),
            token,
            &[],
            b"",
        )
        .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let bundle: Value = a.json();
    bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|x| x["resource"]["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn only_entries_labelled_confidential_are_withheld() {
    let (w, changes) = world().await;
    let token = w.token("demo-consult").await;
    let released = observation_ids(&w, &token, "_count=100").await;
    let labelled = changes.labelled.lock().unwrap().clone();
    assert_eq!(
        labelled.len(),
        3,
        "the demo patient has three plain observations"
    );
    for (id, label) in &labelled {
        let shown = released.contains(id);
        match *label {
            "R" => assert!(!shown, "an entry labelled confidential was released"),
            // Half of the confidential test: the right system with another code, or the
            // code in another system. Neither is confidential.
            _ => assert!(shown, "an entry labelled {label} was withheld"),
        }
    }
}

#[tokio::test]
async fn a_patients_access_log_lists_only_their_own_accesses() {
    let w = World::start().await;
    let consult = w.token("demo-consult").await;
    let operator = w.token("demo-operator").await;
    let a_nhs = w.ordinary_patient("emis", "demo-consult");
    let b_nhs = w.ordinary_patient("tpp", "demo-consult");
    assert_ne!(a_nhs, b_nhs);
    for (nhs, reads) in [(&a_nhs, 1), (&b_nhs, 2)] {
        for _ in 0..reads {
            let a = w
                .call("GET", &format!("/Patient/{nhs}"), &consult, &[], b"")
                .await;
            assert_eq!(a.status, 200);
        }
    }
    for (nhs, reads) in [(&a_nhs, 1), (&b_nhs, 2)] {
        let a = w
            .call(
                "GET",
                &format!("/Patient/{nhs}/$access-log"),
                &operator,
                &[],
                b"",
            )
            .await;
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        let log = a.json();
        assert_eq!(log["total"], reads, "{nhs}: {log:#}");
        let entries = log["entry"].as_array().unwrap();
        assert_eq!(entries.len(), reads);
        assert!(
            entries.iter().all(
                |e| e["resource"]["entity"][0]["what"]["reference"] == format!("Patient/{nhs}")
            )
        );
    }
}

/// `_id` narrows a clinical search to the entries named, in the same filter that
/// withholds confidential ones (a mutant matching every *other* id went unnoticed).
#[tokio::test]
async fn a_search_by_id_returns_the_entries_named_and_no_other() {
    let w = World::start().await;
    let token = w.token("demo-consult").await;
    let all = observation_ids(&w, &token, "_count=100").await;
    assert!(all.len() >= 3, "{all:?}");
    for mut wanted in [vec![all[0].clone()], vec![all[1].clone(), all[2].clone()]] {
        let mut found = observation_ids(&w, &token, &format!("_id={}", wanted.join(","))).await;
        found.sort();
        wanted.sort();
        assert_eq!(found, wanted);
    }
}

/// A read by id answers the entry asked for, and never one the clinician marked
/// confidential, even when an answered entry refers to it (an Observation's encounter):
/// the one lookup that checks both was found alive by `cargo mutants` (`&&` → `||`
/// answered the first releasable entry whatever the id).
#[tokio::test]
async fn a_read_by_id_answers_that_entry_and_never_a_confidential_one() {
    let (w, changes) = world().await;
    changes
        .encounters_confidential
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let token = w.token("demo-consult").await;
    let a = w
        .call(
            "GET",
            &format!("/Observation?patient={DEMO}&_count=100"),
            &token,
            &[],
            b"",
        )
        .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let bundle = a.json();
    let entries = bundle["entry"].as_array().unwrap();
    assert!(entries.len() >= 3, "{bundle:#}");
    // Each entry, the last first (the first releasable entry is the wrong answer to all
    // but one of them), reads as itself.
    for e in entries.iter().rev().take(3) {
        let id = e["resource"]["id"].as_str().unwrap();
        let a = w
            .call("GET", &format!("/Observation/{id}"), &token, &[], b"")
            .await;
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        assert_eq!(a.json()["id"], id, "a read by id answered another entry");
    }
    // The encounters they refer to are confidential: remembered (an answer named
    // them), yet never released.
    let encounters: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["resource"]["encounter"]["reference"].as_str())
        .collect();
    assert!(
        !encounters.is_empty(),
        "the demo patient's observations refer to encounters"
    );
    for reference in encounters.iter().take(2) {
        let a = w
            .call("GET", &format!("/{reference}"), &token, &[], b"")
            .await;
        assert_eq!(
            a.status,
            404,
            "{reference}: {}",
            String::from_utf8_lossy(&a.body)
        );
        assert_eq!(a.spine_code(), "RESOURCE_NOT_FOUND");
    }
}

/// `_include` and `_revinclude` bring in what a read would answer: a confidential entry
/// never, though a match refers to it or it refers to a match.
#[tokio::test]
async fn an_include_never_brings_in_a_confidential_entry() {
    let (w, changes) = world().await;
    changes
        .encounters_confidential
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let token = w.token("demo-consult").await;
    let get = |path: String| {
        let (w, token) = (&w, &token);
        async move {
            let a = w.call("GET", &path, token, &[], b"").await;
            assert_eq!(
                a.status,
                200,
                "{path}: {}",
                String::from_utf8_lossy(&a.body)
            );
            a.json()
        }
    };
    let included = |bundle: &Value| -> Vec<String> {
        bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["search"]["mode"] == "include")
            .map(|e| {
                format!(
                    "{}/{}",
                    e["resource"]["resourceType"].as_str().unwrap(),
                    e["resource"]["id"].as_str().unwrap()
                )
            })
            .collect()
    };
    let bundle = get(format!(
        "/Observation?patient={DEMO}&_count=100&_include=Observation:encounter"
    ))
    .await;
    assert!(
        bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["resource"]["encounter"].is_object()),
        "the demo patient's observations refer to encounters"
    );
    assert_eq!(
        included(&bundle),
        Vec::<String>::new(),
        "a confidential encounter was included"
    );

    let bundle = get(format!(
        "/Patient?identifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C{DEMO}&_revinclude=Observation:patient&_revinclude=Encounter:patient"
    ))
    .await;
    let included = included(&bundle);
    let labelled = changes.labelled.lock().unwrap().clone();
    assert_eq!(labelled.len(), 3);
    for (id, label) in &labelled {
        let shown = included.contains(&format!("Observation/{id}"));
        assert_eq!(shown, *label != "R", "Observation/{id} labelled {label}");
    }
    assert!(
        !included.iter().any(|r| r.starts_with("Encounter/")),
        "a confidential encounter was included: {included:?}"
    );
}
