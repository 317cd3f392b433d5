//! The adapter conformance harness: the checks every adapter crate's tests run against
//! its simulator, so every GP system is held to the same contract.
//!
//! ```ignore
//! let report = gp_adapter::harness::run(&adapter, &fixture).await;
//! report.assert_passed();
//! ```
//!
//! Appointment management is checked by [`run_appointments`] (`ADP-APT-*`, the
//! `appointments` group of the shared suite): slots round-trip, a booking reads back, a
//! retried booking books nothing, a race books a slot once, kept slots are refused, a
//! stale amend is refused, a cancel frees the slot, unknowns are typed errors, and
//! appointments booked at the practice are visible. An adapter that answers
//! `NotSupported` for appointments has them all reported as skipped.
//!
//! Documents are checked by [`run_documents`] (`ADP-DOC-*`, the `documents` group):
//! listing, content read back as listed, upload and filing round trips, idempotent
//! filing, a 6 MB PDF, unknowns. Reading details are checked by [`run_reading_details`]
//! (`ADP-RDG-*`, the `readings` group): every vital sign suppliers may write, and each
//! detail the adapter's `reading_support()` claims (date-only, interpretation, body
//! site, method, device, performer, original codings) round-trips.
//!
//! Change logs are checked by [`run_changes`] (`ADP-CHG-*`, the `changes` group): the
//! start-from-now cursor, changes made through the adapter and at the practice (the
//! latter through the backend's [`PracticeSide`]), a practice move, a page walk, a
//! cursor the system never gave.
//!
//! Backend failures are asserted with [`check_backend_failure`]: switch the simulator's
//! fault injection on (e.g. a 500, a hang, garbage), then check the adapter answers the
//! typed error, naming its system, for both a read and a search.

mod appointments;
mod changes;
mod documents;
mod faults;
mod people;
mod readings;
pub mod sim;
mod suite;
mod write;

pub use appointments::{BOOKED_BY, BOOKINGS_SYSTEM, run_appointments};
pub use changes::{PracticeSide, run_changes};
pub use documents::{DOCUMENTS_SYSTEM, FILED_BY, run_documents};
pub use faults::{
    ExpectedFailure, Fault, FaultTarget, READ_FAULTS, WRITE_FAULTS, check_backend_failure,
    check_fault_matrix, check_write_failure,
};
pub use readings::{DETAILS_SYSTEM, MORE_VITALS, run_reading_details};
pub use suite::{Backend, Suite, SuiteTarget};
pub use write::{blood_pressure, body_weight, run_writes};

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use gp_fhir::date::{DateRange, PartialDate};
use gp_fhir::ids::NHS_NUMBER_SYSTEM;
use gp_fhir::model::{
    CONFIDENTIALITY_SYSTEM, CodeableConcept, DMD, NHS_NUMBER_VERIFICATION_EXTENSION, Resource,
    SNOMED, UK_CORE_PROFILE_BASE,
};
use gp_fhir::{NhsNumber, OdsCode};

use crate::{
    Adapter, AdapterError, CallContext, ClinicalType, PatientRecord, PatientRequest, SearchRequest,
};

/// The patients a harness run uses.
#[derive(Debug, Clone)]
pub struct HarnessFixture {
    /// Known patients, with clinical data, and the practice each is registered at.
    /// The first is the one write-back, appointment and fault checks use; it is neither
    /// restricted nor dissenting. The appointment checks book at its practice and look for
    /// appointments booked at the practice among the patients registered there.
    pub patients: Vec<(NhsNumber, OdsCode)>,
    /// A patient the system does not hold at that practice.
    pub unknown: (NhsNumber, OdsCode),
    /// Which of `patients` the system holds as restricted (sensitive), and which as
    /// dissenting from sharing, by index; empty skips the flag checks.
    pub restricted: Vec<usize>,
    /// See `restricted`.
    pub dissenting: Vec<usize>,
    /// How many entries the system holds as confidential for each of `patients`, in
    /// order (one entry per FHIR resource the adapter should answer); `None` skips the
    /// confidentiality check.
    pub confidential: Option<Vec<usize>>,
    /// The record each of `patients` holds, as the system's own data says (in order);
    /// `None` skips the parity check.
    pub canonical: Option<Vec<CanonicalRecord>>,
}

/// What a patient's record holds, independent of any adapter: per clinical type, one
/// item per entry listing the concept codes (SNOMED CT, or dm+d for drugs) any of which
/// the entry's FHIR code must carry (`code`, `medicationCodeableConcept`, `vaccineCode`,
/// `Encounter.type`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CanonicalRecord {
    pub entries: BTreeMap<ClinicalType, Vec<Vec<String>>>,
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// Failed; the detail names the resource and element at fault.
    Fail(String),
    /// Not run, for the reason given (e.g. the adapter does not write).
    Skipped(String),
}

/// One check of the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Stable id, e.g. `ADP-PAT-01`, for reports and requirement tracing.
    pub id: &'static str,
    /// What is checked; a check repeated under several conditions (the fault matrix)
    /// names the condition in brackets.
    pub description: String,
    pub outcome: Outcome,
}

/// Every check a run made.
#[derive(Debug, Clone, Default)]
pub struct HarnessReport {
    pub checks: Vec<Check>,
}

impl HarnessReport {
    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Fail(_)))
    }

    /// The checks that were not run.
    pub fn skipped(&self) -> impl Iterator<Item = &Check> {
        self.checks
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Skipped(_)))
    }

    /// Appends `other`'s checks, naming `condition` in each description.
    pub fn extend_naming(&mut self, condition: &str, other: HarnessReport) {
        for mut c in other.checks {
            c.description = format!("{} [{condition}]", c.description);
            self.checks.push(c);
        }
    }

    /// Appends `other`'s checks as they are.
    pub fn extend(&mut self, other: HarnessReport) {
        self.checks.extend(other.checks);
    }

    fn skip(&mut self, id: &'static str, description: &str, why: &str) {
        self.checks.push(Check {
            id,
            description: description.to_owned(),
            outcome: Outcome::Skipped(why.to_owned()),
        });
    }

    /// True when every check passed.
    pub fn passed(&self) -> bool {
        self.failures().next().is_none()
    }

    /// Panics listing every failure. Test support only.
    #[allow(
        clippy::panic,
        reason = "test support: a failed conformance run must fail the calling test"
    )]
    pub fn assert_passed(&self) {
        if !self.passed() {
            panic!("adapter conformance harness failed:\n{self}");
        }
    }

    fn add(&mut self, id: &'static str, description: &str, failures: Vec<String>) {
        // One check per id, however many resources it looked at; the first failures are
        // listed so the report stays readable for a large record.
        let outcome = if failures.is_empty() {
            Outcome::Pass
        } else {
            let shown: Vec<&str> = failures.iter().take(10).map(String::as_str).collect();
            let more = failures.len().saturating_sub(shown.len());
            let tail = if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            };
            Outcome::Fail(format!("{}{tail}", shown.join("; ")))
        };
        self.checks.push(Check {
            id,
            description: description.to_owned(),
            outcome,
        });
    }
}

impl fmt::Display for HarnessReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.checks {
            match &c.outcome {
                Outcome::Pass => writeln!(f, "  PASS {} {}", c.id, c.description)?,
                Outcome::Fail(d) => writeln!(f, "  FAIL {} {}: {d}", c.id, c.description)?,
                Outcome::Skipped(why) => writeln!(f, "  SKIP {} {}: {why}", c.id, c.description)?,
            }
        }
        Ok(())
    }
}

fn ctx() -> CallContext {
    CallContext::new("adapter-harness")
}

fn search_req(
    nhs: NhsNumber,
    ods: &OdsCode,
    t: ClinicalType,
    date: DateRange,
    count: u32,
    offset: u32,
) -> SearchRequest {
    SearchRequest {
        nhs_number: nhs,
        practice: ods.clone(),
        resource_type: t,
        date,
        count,
        offset,
        context: ctx(),
    }
}

fn name(r: &Resource) -> String {
    format!("{}/{}", r.resource_type(), r.id())
}

fn date_key(r: &Resource) -> Option<PartialDate> {
    r.clinical_date().and_then(|d| PartialDate::parse(d).ok())
}

/// Everything one known patient returned.
struct PatientData {
    nhs: NhsNumber,
    ods: OdsCode,
    record: PatientRecord,
    /// Full result set per clinical type (one search with a page big enough for all).
    clinical: Vec<(ClinicalType, Vec<Resource>)>,
}

/// Runs every check against `adapter` with the fixture's patients.
pub async fn run(adapter: &dyn Adapter, fixture: &HarnessFixture) -> HarnessReport {
    let mut report = HarnessReport::default();

    let ready = adapter
        .ready(&ctx())
        .await
        .err()
        .map(|e| format!("ready() failed: {e}"));
    report.add(
        "ADP-RDY-01",
        "ready() succeeds",
        ready.into_iter().collect(),
    );

    // Fetch everything once; the structural checks below look at the collected data.
    let mut data = Vec::new();
    let mut fetch_failures = Vec::new();
    for (nhs, ods) in &fixture.patients {
        let req = PatientRequest {
            nhs_number: *nhs,
            practice: ods.clone(),
            context: ctx(),
        };
        let record = match adapter.read_patient(&req).await {
            Ok(r) => r,
            Err(e) => {
                fetch_failures.push(format!("read_patient({nhs} at {ods}) failed: {e}"));
                continue;
            }
        };
        let mut clinical = Vec::new();
        for &t in adapter.supported_types() {
            match adapter
                .search(&search_req(*nhs, ods, t, DateRange::default(), u32::MAX, 0))
                .await
            {
                Ok(page) => {
                    if page.total as usize != page.resources.len() {
                        fetch_failures.push(format!(
                            "search {t} for {nhs}: total {} but {} resources in a page of unlimited size",
                            page.total,
                            page.resources.len()
                        ));
                    }
                    if let Some(r) = page.resources.iter().find(|r| !t.matches(r)) {
                        fetch_failures.push(format!("search {t} for {nhs} returned {}", name(r)));
                    }
                    clinical.push((t, page.resources));
                }
                Err(e) => fetch_failures.push(format!("search {t} for {nhs} failed: {e}")),
            }
        }
        data.push(PatientData {
            nhs: *nhs,
            ods: ods.clone(),
            record,
            clinical,
        });
    }
    report.add(
        "ADP-PAT-01",
        "read_patient and search succeed for every known patient",
        fetch_failures,
    );

    let mut empty = Vec::new();
    for &t in adapter.supported_types() {
        let n: usize = data
            .iter()
            .flat_map(|p| &p.clinical)
            .filter(|(ct, _)| *ct == t)
            .map(|(_, r)| r.len())
            .sum();
        if n == 0 {
            empty.push(format!(
                "no {t} entries for any fixture patient, so its checks tested nothing"
            ));
        }
    }
    report.add(
        "ADP-DATA-01",
        "the fixture patients have entries of every supported type",
        empty,
    );

    check_together(&mut report, adapter, &data).await;
    check_patients(&mut report, &data);
    check_resources(&mut report, &data);
    check_unknown(&mut report, adapter, fixture).await;
    check_paging(&mut report, adapter, &data).await;
    check_date_range(&mut report, adapter, &data).await;
    check_flags(&mut report, fixture, &data);
    check_confidential(&mut report, fixture, &data);
    check_parity(&mut report, fixture, &data);
    people::check_practitioners(&mut report, adapter, &data).await;
    report
}

/// `read_patient_and_search` answers what `read_patient` and `search` answered apart, for
/// every patient and type, in a full page and in a later one.
async fn check_together(report: &mut HarnessReport, adapter: &dyn Adapter, data: &[PatientData]) {
    let mut failures = Vec::new();
    for p in data {
        for (t, apart) in &p.clinical {
            let pages = [(u32::MAX, 0), (2, 1)];
            for (count, offset) in pages {
                let req = search_req(p.nhs, &p.ods, *t, DateRange::default(), count, offset);
                let what = format!(
                    "read_patient_and_search {t} for {} (_count {count}, offset {offset})",
                    p.nhs
                );
                match adapter.read_patient_and_search(&req).await {
                    Err(e) => failures.push(format!("{what} failed: {e}")),
                    Ok((record, page)) => {
                        if record != p.record {
                            failures.push(format!(
                                "{what}: the demographics differ from read_patient's"
                            ));
                        }
                        let want: Vec<&Resource> = apart
                            .iter()
                            .skip(offset as usize)
                            .take(count as usize)
                            .collect();
                        let got: Vec<&Resource> = page.resources.iter().collect();
                        if got != want || page.total as usize != apart.len() {
                            failures.push(format!(
                                "{what}: {} entries of {} in all, search answered {} of {}",
                                got.len(),
                                page.total,
                                want.len(),
                                apart.len()
                            ));
                        }
                    }
                }
            }
        }
    }
    report.add(
        "ADP-PAT-04",
        "read_patient_and_search answers what read_patient and search answer apart",
        failures,
    );
}

/// The SNOMED CT and dm+d codes of a resource's primary concept.
fn concept_codes(r: &Resource) -> Vec<&str> {
    clinical_codes(r)
        .into_iter()
        .filter(|(path, _, _)| !matches!(*path, "component.code" | "reaction.manifestation"))
        .flat_map(|(_, cc, _)| &cc.coding)
        .filter(|c| matches!(c.system.as_deref(), Some(SNOMED | DMD)))
        .filter_map(|c| c.code.as_deref())
        .collect()
}

fn check_parity(report: &mut HarnessReport, fixture: &HarnessFixture, data: &[PatientData]) {
    const WHAT: &str = "every record answers the canonical record's entries: per clinical type the same number, each with its SNOMED CT / dm+d concept";
    let Some(records) = &fixture.canonical else {
        report.skip("ADP-PAR-01", WHAT, "the fixture has no canonical records");
        return;
    };
    let mut failures = Vec::new();
    for ((nhs, _), canonical) in fixture.patients.iter().zip(records) {
        let Some(p) = data.iter().find(|p| p.nhs == *nhs) else {
            continue;
        };
        for (t, answered) in &p.clinical {
            let want = canonical.entries.get(t).map(Vec::as_slice).unwrap_or(&[]);
            if answered.len() != want.len() {
                failures.push(format!(
                    "{t} for {nhs}: {} entries, the canonical record has {}",
                    answered.len(),
                    want.len()
                ));
                continue;
            }
            let mut unused: Vec<Vec<&str>> = answered.iter().map(concept_codes).collect();
            for codes in want {
                match unused
                    .iter()
                    .position(|got| got.iter().any(|c| codes.iter().any(|w| w == c)))
                {
                    Some(i) => {
                        unused.swap_remove(i);
                    }
                    None => failures.push(format!(
                        "{t} for {nhs}: no entry carries the canonical concept {codes:?}"
                    )),
                }
            }
        }
    }
    report.add("ADP-PAR-01", WHAT, failures);
}

fn all_resources(p: &PatientData) -> Vec<Resource> {
    let mut out = vec![Resource::Patient(p.record.patient.clone())];
    out.extend(p.record.organization.clone().map(Resource::Organization));
    out.extend(p.record.practitioner.clone().map(Resource::Practitioner));
    out.extend(p.clinical.iter().flat_map(|(_, rs)| rs.iter().cloned()));
    out
}

fn check_patients(report: &mut HarnessReport, data: &[PatientData]) {
    let mut failures = Vec::new();
    for p in data {
        let patient = &p.record.patient;
        if patient.id != p.nhs.to_string() {
            failures.push(format!(
                "Patient/{}: id is not the NHS number {}",
                patient.id, p.nhs
            ));
        }
        let ids: Vec<_> = patient
            .identifier
            .iter()
            .filter(|i| i.system.as_deref() == Some(NHS_NUMBER_SYSTEM))
            .collect();
        match ids.as_slice() {
            [one] => {
                match one.value.as_deref().map(NhsNumber::parse) {
                    Some(Ok(n)) if n == p.nhs => {}
                    Some(Ok(n)) => failures.push(format!(
                        "Patient/{}: NHS number identifier {n} is not {}",
                        patient.id, p.nhs
                    )),
                    Some(Err(e)) => failures.push(format!(
                        "Patient/{}: NHS number identifier: {e}",
                        patient.id
                    )),
                    None => failures.push(format!(
                        "Patient/{}: NHS number identifier has no value",
                        patient.id
                    )),
                }
                let verified = one.extension.iter().any(|e| {
                    e.url == NHS_NUMBER_VERIFICATION_EXTENSION
                        && e.value_codeable_concept
                            .as_ref()
                            .is_some_and(|cc| !cc.coding.is_empty())
                });
                if !verified {
                    failures.push(format!(
                        "Patient/{}: NHS number identifier has no verification-status extension",
                        patient.id
                    ));
                }
            }
            [] => failures.push(format!("Patient/{}: no NHS number identifier", patient.id)),
            _ => failures.push(format!(
                "Patient/{}: more than one NHS number identifier",
                patient.id
            )),
        }
        if p.record.version.is_empty() {
            failures.push(format!(
                "Patient/{}: the record version (ETag) is empty",
                patient.id
            ));
        }
        if p.record.flags.restricted != patient.is_restricted() {
            failures.push(format!(
                "Patient/{}: flags.restricted disagrees with meta.security R",
                patient.id
            ));
        }
    }
    report.add(
        "ADP-PAT-02",
        "Patient: id and a valid NHS number identifier with a verification-status extension; version set",
        failures,
    );
}

fn profile_of(r: &Resource) -> String {
    format!("{UK_CORE_PROFILE_BASE}{}", r.resource_type())
}

/// A FHIR `id`: 1-64 of `A-Z a-z 0-9 - .`.
fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// SNOMED CT (or dm+d, SNOMED's UK drug extension, for medication), or an original coding with text.
fn code_ok(cc: &CodeableConcept, allow_dmd: bool) -> Result<(), &'static str> {
    let complete = |c: &gp_fhir::model::Coding| {
        c.system.is_some() && c.code.as_deref().is_some_and(|s| !s.is_empty())
    };
    if cc.coding.iter().any(|c| !complete(c)) {
        return Err("has a coding without system or code");
    }
    if cc.code_in(SNOMED).is_some() || (allow_dmd && cc.code_in(DMD).is_some()) {
        return Ok(());
    }
    if cc.coding.is_empty() {
        return Err("has no coding");
    }
    if cc.text.as_deref().is_none_or(str::is_empty) {
        return Err("has no SNOMED CT coding and no text beside its original coding");
    }
    Ok(())
}

fn clinical_codes(r: &Resource) -> Vec<(&'static str, &CodeableConcept, bool)> {
    match r {
        Resource::Condition(c) => vec![("code", &c.code, false)],
        Resource::Observation(o) => {
            let mut v = vec![("code", &o.code, false)];
            v.extend(
                o.component
                    .iter()
                    .map(|c| ("component.code", &c.code, false)),
            );
            v
        }
        Resource::AllergyIntolerance(a) => {
            let mut v = vec![("code", &a.code, true)];
            v.extend(
                a.reaction
                    .iter()
                    .flat_map(|r| &r.manifestation)
                    .map(|m| ("reaction.manifestation", m, false)),
            );
            v
        }
        Resource::Immunization(i) => vec![("vaccineCode", &i.vaccine_code, false)],
        Resource::MedicationStatement(m) => vec![(
            "medicationCodeableConcept",
            &m.medication_codeable_concept,
            true,
        )],
        Resource::Encounter(e) => e.type_.iter().map(|t| ("type", t, false)).collect(),
        Resource::Patient(_) | Resource::Organization(_) | Resource::Practitioner(_) => Vec::new(),
        // Appointment-book resources are not record entries: no clinical codes.
        _ => Vec::new(),
    }
}

fn check_resources(report: &mut HarnessReport, data: &[PatientData]) {
    let (mut r4, mut profile, mut uk_rules, mut codes, mut nhs_ok) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut patient_refs, mut other_refs, mut encounter_refs, mut ids) =
        (vec![], vec![], vec![], vec![]);
    for p in data {
        let resources = all_resources(p);
        let patient_ref = format!("Patient/{}", p.nhs);
        // What a reference may resolve to: the read's Organization/Practitioner and
        // anything else the record returned.
        let known: HashSet<String> = resources.iter().map(name).collect();
        // The consultation an entry was recorded in must be one of this patient's Encounters.
        let encounters: HashSet<String> = resources
            .iter()
            .filter(|r| matches!(r, Resource::Encounter(_)))
            .map(name)
            .collect();
        let mut seen: HashMap<&str, HashSet<&str>> = HashMap::new();
        for r in &resources {
            let n = name(r);
            if let Err(e) = gp_fhir::validate::check_r4_json(&r.to_json()) {
                r4.push(format!("{n}: {e}"));
            }
            let want = profile_of(r);
            if !r.meta().is_some_and(|m| m.profile.contains(&want)) {
                profile.push(format!("{n}: meta.profile does not claim {want}"));
            }
            match r {
                Resource::AllergyIntolerance(a)
                    if a.code.coding.is_empty() && a.code.text.is_none() =>
                {
                    uk_rules.push(format!(
                        "{n}: code is empty (UK Core AllergyIntolerance.code is 1..1)"
                    ));
                }
                Resource::MedicationStatement(m)
                    if m.identifier.len() != 1
                        || m.identifier[0].system.is_none()
                        || m.identifier[0].value.is_none() =>
                {
                    uk_rules.push(format!(
                        "{n}: has {} identifiers; UK Core needs exactly one, with system and value",
                        m.identifier.len()
                    ));
                }
                _ => {}
            }
            for (element, cc, allow_dmd) in clinical_codes(r) {
                if let Err(why) = code_ok(cc, allow_dmd) {
                    codes.push(format!("{n}: {element} {why}"));
                }
            }
            for id in identifiers(r).filter(|i| i.system.as_deref() == Some(NHS_NUMBER_SYSTEM)) {
                if let Err(e) = NhsNumber::parse(id.value.as_deref().unwrap_or_default()) {
                    nhs_ok.push(format!("{n}: identifier: {e}"));
                }
            }
            for reference in r.references() {
                match reference.split_once('/') {
                    Some(("Patient", _)) if reference != patient_ref => {
                        patient_refs.push(format!("{n}: refers to {reference}, not {patient_ref}"));
                    }
                    Some(("Patient", _)) => {}
                    Some(("Encounter", id)) if valid_id(id) && encounters.contains(reference) => {}
                    Some(("Encounter", _)) => encounter_refs.push(format!(
                        "{n}: reference {reference} does not resolve to an Encounter returned for {patient_ref}"
                    )),
                    Some((_, id)) if valid_id(id) && known.contains(reference) => {}
                    // The Adapter trait can return only the usual GP, so a reference to
                    // another clinician of the practice (an entry's author) cannot be
                    // resolved through it; it must at least be a well-formed literal one.
                    Some(("Practitioner", id)) if valid_id(id) => {}
                    _ => other_refs.push(format!("{n}: reference {reference} does not resolve to a resource the record returned")),
                }
            }
            // Clinical resources must point at the patient at all.
            if !matches!(
                r,
                Resource::Patient(_) | Resource::Organization(_) | Resource::Practitioner(_)
            ) && !r.references().contains(&patient_ref.as_str())
            {
                patient_refs.push(format!("{n}: has no reference to {patient_ref}"));
            }
            if !valid_id(r.id()) {
                ids.push(format!("{n}: id is not a valid FHIR id"));
            } else if !seen.entry(r.resource_type()).or_default().insert(r.id()) {
                ids.push(format!(
                    "{n}: id is used twice for {} in one record",
                    r.resource_type()
                ));
            }
        }
        if let Some(org) = &p.record.organization
            && !org
                .identifier
                .iter()
                .any(|i| i.value.as_deref() == Some(p.ods.as_str()))
        {
            uk_rules.push(format!(
                "Organization/{}: has no ODS identifier {}",
                org.id, p.ods
            ));
        }
    }
    report.add(
        "ADP-R4-01",
        "every resource serialises to JSON that is strict FHIR R4",
        r4,
    );
    report.add(
        "ADP-UKC-01",
        "every resource claims its UK Core profile in meta.profile",
        profile,
    );
    report.add(
        "ADP-UKC-02",
        "UK Core rules: AllergyIntolerance.code present, MedicationStatement.identifier 1..1, Organization ODS identifier",
        uk_rules,
    );
    report.add(
        "ADP-CODE-01",
        "clinical codes carry a SNOMED CT coding, or keep their original coding with text",
        codes,
    );
    report.add(
        "ADP-NHS-01",
        "every NHS number identifier passes the modulus 11 check",
        nhs_ok,
    );
    report.add(
        "ADP-REF-01",
        "references to the patient are Patient/{nhs number}",
        patient_refs,
    );
    report.add(
        "ADP-REF-02",
        "references resolve to the read's Organization/Practitioner or a resource in the record (other clinicians: well-formed Practitioner/{id}; Encounters: ADP-REF-03)",
        other_refs,
    );
    report.add(
        "ADP-REF-03",
        "Encounter/{id} references (the consultation an entry was recorded in) resolve to an Encounter returned for that patient",
        encounter_refs,
    );
    report.add(
        "ADP-ID-01",
        "ids are valid and unique per resource type",
        ids,
    );
}

fn identifiers(r: &Resource) -> impl Iterator<Item = &gp_fhir::model::Identifier> {
    let ids: &[gp_fhir::model::Identifier] = match r {
        Resource::Patient(x) => &x.identifier,
        Resource::Organization(x) => &x.identifier,
        Resource::Practitioner(x) => &x.identifier,
        Resource::AllergyIntolerance(x) => &x.identifier,
        Resource::MedicationStatement(x) => &x.identifier,
        Resource::Condition(x) => &x.identifier,
        Resource::Observation(x) => &x.identifier,
        Resource::Immunization(x) => &x.identifier,
        Resource::Encounter(x) => &x.identifier,
        Resource::Appointment(x) => &x.identifier,
        _ => &[],
    };
    ids.iter()
}

async fn check_unknown(
    report: &mut HarnessReport,
    adapter: &dyn Adapter,
    fixture: &HarnessFixture,
) {
    let (read_fail, search_fail) = both_fail(adapter, &fixture.unknown, "PatientNotFound", |e| {
        matches!(e, AdapterError::PatientNotFound)
    })
    .await;
    report.add(
        "ADP-PAT-03",
        "read_patient for an unknown patient is PatientNotFound",
        read_fail,
    );
    report.add(
        "ADP-SRCH-01",
        "search for an unknown patient is PatientNotFound",
        search_fail,
    );
}

/// Reads `patient` and searches its first supported type: both must fail with an error
/// `accepts` takes (described as `expected`). Answers the failures of the read and of
/// the search.
async fn both_fail(
    adapter: &dyn Adapter,
    (nhs, ods): &(NhsNumber, OdsCode),
    expected: &str,
    accepts: impl Fn(&AdapterError) -> bool,
) -> (Vec<String>, Vec<String>) {
    let read = adapter
        .read_patient(&PatientRequest {
            nhs_number: *nhs,
            practice: ods.clone(),
            context: ctx(),
        })
        .await;
    let read_fail = match read {
        Err(e) if accepts(&e) => vec![],
        Err(e) => vec![format!(
            "read_patient({nhs} at {ods}) gave {e:?}, not {expected}"
        )],
        Ok(_) => vec![format!(
            "read_patient({nhs} at {ods}) answered a patient, not {expected}"
        )],
    };
    let mut search_fail = Vec::new();
    if let Some(&t) = adapter.supported_types().first() {
        match adapter
            .search(&search_req(*nhs, ods, t, DateRange::default(), 10, 0))
            .await
        {
            Err(e) if accepts(&e) => {}
            Err(e) => search_fail.push(format!("search {t} for {nhs} gave {e:?}, not {expected}")),
            Ok(_) => search_fail.push(format!(
                "search {t} for {nhs} answered a page, not {expected}"
            )),
        }
        match adapter
            .read_patient_and_search(&search_req(*nhs, ods, t, DateRange::default(), 10, 0))
            .await
        {
            Err(e) if accepts(&e) => {}
            Err(e) => search_fail.push(format!(
                "read_patient_and_search {t} for {nhs} gave {e:?}, not {expected}"
            )),
            Ok(_) => search_fail.push(format!(
                "read_patient_and_search {t} for {nhs} answered, not {expected}"
            )),
        }
    }
    (read_fail, search_fail)
}

async fn check_paging(report: &mut HarnessReport, adapter: &dyn Adapter, data: &[PatientData]) {
    let (mut paging, mut order) = (Vec::new(), Vec::new());
    for p in data {
        for (t, full) in &p.clinical {
            let expected: BTreeSet<&str> = full.iter().map(Resource::id).collect();
            let mut walked: Vec<String> = Vec::new();
            let mut offset = 0u32;
            // Bounded walk: a broken adapter must not loop the harness forever.
            for _ in 0..=full.len() / 2 + 1 {
                match adapter
                    .search(&search_req(
                        p.nhs,
                        &p.ods,
                        *t,
                        DateRange::default(),
                        2,
                        offset,
                    ))
                    .await
                {
                    Ok(page) => {
                        if page.total as usize != full.len() {
                            paging.push(format!(
                                "{t} for {}: total {} at offset {offset}, full set has {}",
                                p.nhs,
                                page.total,
                                full.len()
                            ));
                        }
                        if page.resources.len() > 2 {
                            paging.push(format!(
                                "{t} for {}: page of size 2 has {}",
                                p.nhs,
                                page.resources.len()
                            ));
                        }
                        let n = page.resources.len();
                        walked.extend(page.resources.iter().map(|r| r.id().to_owned()));
                        if n == 0 {
                            break;
                        }
                        offset += 2;
                    }
                    Err(e) => {
                        paging.push(format!("{t} for {} at offset {offset}: {e}", p.nhs));
                        break;
                    }
                }
            }
            let unique: BTreeSet<&str> = walked.iter().map(String::as_str).collect();
            if unique.len() != walked.len() {
                paging.push(format!("{t} for {}: pages repeat an entry", p.nhs));
            }
            if unique != expected {
                let gaps: Vec<&&str> = expected.difference(&unique).take(3).collect();
                paging.push(format!(
                    "{t} for {}: walking pages misses {gaps:?} (or adds extras)",
                    p.nhs
                ));
            }
            let full_ids: Vec<&str> = full.iter().map(Resource::id).collect();
            if walked
                .iter()
                .map(String::as_str)
                .ne(full_ids.iter().copied())
                && unique == expected
            {
                paging.push(format!(
                    "{t} for {}: pages are not in the same order as the full result",
                    p.nhs
                ));
            }
            for w in full.windows(2) {
                if let [a, b] = w
                    && date_key(a) < date_key(b)
                {
                    order.push(format!(
                        "{t}: {} ({:?}) comes before the more recent {} ({:?})",
                        name(a),
                        a.clinical_date(),
                        name(b),
                        b.clinical_date()
                    ));
                }
            }
        }
    }
    report.add(
        "ADP-PAGE-01",
        "walking pages of size 2 yields exactly the full result set, with a constant total",
        paging,
    );
    report.add(
        "ADP-PAGE-02",
        "results are ordered most recent first",
        order,
    );
}

async fn check_date_range(report: &mut HarnessReport, adapter: &dyn Adapter, data: &[PatientData]) {
    let (mut from, mut to) = (Vec::new(), Vec::new());
    for p in data {
        for (t, full) in &p.clinical {
            let dates: Vec<PartialDate> = full.iter().filter_map(date_key).collect();
            // From the most recent entry's first day on: older entries must go.
            if let Some(latest) = dates.iter().max() {
                let mut range = DateRange::default();
                range.at_least(latest.first_day());
                from.extend(selects(adapter, p, *t, full, range, &format!("from {latest}")).await);
            }
            // Up to the oldest entry's last day: newer entries must go.
            if let Some(earliest) = dates.iter().min() {
                let mut range = DateRange::default();
                range.at_most(earliest.last_day());
                to.extend(selects(adapter, p, *t, full, range, &format!("to {earliest}")).await);
            }
        }
    }
    report.add(
        "ADP-DATE-01",
        "a date range excludes out-of-range entries",
        from,
    );
    report.add(
        "ADP-DATE-02",
        "a date range with only an upper bound excludes newer entries",
        to,
    );
}

/// How a search of `t` with `range` differs from filtering the full result set.
async fn selects(
    adapter: &dyn Adapter,
    p: &PatientData,
    t: ClinicalType,
    full: &[Resource],
    range: DateRange,
    what: &str,
) -> Vec<String> {
    let mut failures = Vec::new();
    let expected: BTreeSet<&str> = full
        .iter()
        .filter(|r| range.contains(r.clinical_date()))
        .map(Resource::id)
        .collect();
    match adapter
        .search(&search_req(p.nhs, &p.ods, t, range, u32::MAX, 0))
        .await
    {
        Ok(page) => {
            let got: BTreeSet<&str> = page.resources.iter().map(Resource::id).collect();
            if got != expected {
                let extra: Vec<&&str> = got.difference(&expected).take(3).collect();
                let missing: Vec<&&str> = expected.difference(&got).take(3).collect();
                failures.push(format!(
                    "{t} for {} {what}: extra {extra:?}, missing {missing:?}",
                    p.nhs
                ));
            }
            if page.total as usize != expected.len() {
                failures.push(format!(
                    "{t} for {} {what}: total {} not {}",
                    p.nhs,
                    page.total,
                    expected.len()
                ));
            }
        }
        Err(e) => failures.push(format!("{t} for {} {what}: {e}", p.nhs)),
    }
    failures
}

/// `meta.security` code `R`: restricted, for a patient or a confidential entry.
fn restricted(r: &Resource) -> bool {
    r.meta().is_some_and(|m| {
        m.security.iter().any(|c| {
            c.system.as_deref() == Some(CONFIDENTIALITY_SYSTEM) && c.code.as_deref() == Some("R")
        })
    })
}

fn check_flags(report: &mut HarnessReport, fixture: &HarnessFixture, data: &[PatientData]) {
    const WHAT: &str = "restricted and dissenting patients are flagged (flags and Patient meta.security R), and no other patient is";
    if fixture.restricted.is_empty() && fixture.dissenting.is_empty() {
        report.skip(
            "ADP-FLG-01",
            WHAT,
            "the fixture names no restricted or dissenting patient",
        );
        return;
    }
    let mut failures = Vec::new();
    for (i, (nhs, _)) in fixture.patients.iter().enumerate() {
        let Some(p) = data.iter().find(|p| p.nhs == *nhs) else {
            failures.push(format!("Patient/{nhs} could not be read (ADP-PAT-01)"));
            continue;
        };
        let want_restricted = fixture.restricted.contains(&i);
        let want_dissent = fixture.dissenting.contains(&i);
        let flags = p.record.flags;
        if flags.restricted != want_restricted {
            failures.push(format!(
                "Patient/{nhs}: flags.restricted is {}, the system holds {want_restricted}",
                flags.restricted
            ));
        }
        if p.record.patient.is_restricted() != want_restricted {
            failures.push(format!(
                "Patient/{nhs}: meta.security R is {}, the system holds restricted {want_restricted}",
                p.record.patient.is_restricted()
            ));
        }
        if flags.dissent != want_dissent {
            failures.push(format!(
                "Patient/{nhs}: flags.dissent is {}, the system holds {want_dissent}",
                flags.dissent
            ));
        }
    }
    report.add("ADP-FLG-01", WHAT, failures);
}

fn check_confidential(report: &mut HarnessReport, fixture: &HarnessFixture, data: &[PatientData]) {
    const WHAT: &str =
        "entries a clinician marked confidential are answered with meta.security R, and only those";
    let Some(counts) = &fixture.confidential else {
        report.skip(
            "ADP-SEC-01",
            WHAT,
            "the fixture does not say how many entries are confidential",
        );
        return;
    };
    let mut failures = Vec::new();
    let mut marked_anywhere = false;
    for ((nhs, _), want) in fixture.patients.iter().zip(counts) {
        let Some(p) = data.iter().find(|p| p.nhs == *nhs) else {
            continue;
        };
        let marked = p
            .clinical
            .iter()
            .flat_map(|(_, rs)| rs)
            .filter(|r| restricted(r))
            .count();
        marked_anywhere |= marked > 0;
        if marked != *want {
            failures.push(format!(
                "Patient/{nhs}: {marked} entries carry meta.security R, the system holds {want} confidential"
            ));
        }
    }
    if !marked_anywhere && counts.iter().any(|n| *n > 0) && failures.is_empty() {
        failures.push("no confidential entry in the fixture, so the check tested nothing".into());
    }
    report.add("ADP-SEC-01", WHAT, failures);
}

#[cfg(test)]
mod tests {
    use gp_fhir::model::{Encounter, Observation, Patient, Reference};

    use super::*;

    fn outcome(report: &HarnessReport, id: &str) -> Outcome {
        report
            .checks
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.outcome.clone())
            .unwrap()
    }

    /// One patient with a consultation and an Observation recorded in `consultation`.
    fn data(consultation: &str) -> Vec<PatientData> {
        let nhs = NhsNumber::parse("9690937278").unwrap();
        let subject = Reference::to("Patient", &nhs.to_string());
        let encounter = Encounter {
            id: "c1".into(),
            status: "finished".into(),
            class: crate::uk_core::ambulatory(),
            subject: subject.clone(),
            ..Encounter::default()
        };
        let observation = Observation {
            id: "o1".into(),
            status: "final".into(),
            subject,
            encounter: Some(Reference::to("Encounter", consultation)),
            ..Observation::default()
        };
        vec![PatientData {
            nhs,
            ods: OdsCode::parse("B82617").unwrap(),
            record: PatientRecord {
                patient: Patient {
                    id: nhs.to_string(),
                    ..Patient::default()
                },
                organization: None,
                practitioner: None,
                version: "1".into(),
                flags: crate::PatientFlags::default(),
            },
            clinical: vec![
                (
                    ClinicalType::Encounter,
                    vec![Resource::Encounter(encounter)],
                ),
                (
                    ClinicalType::Observation,
                    vec![Resource::Observation(observation)],
                ),
            ],
        }]
    }

    #[test]
    fn encounter_references_must_resolve_to_the_patients_encounters() {
        let mut report = HarnessReport::default();
        check_resources(&mut report, &data("c1"));
        assert_eq!(outcome(&report, "ADP-REF-03"), Outcome::Pass);

        let mut report = HarnessReport::default();
        check_resources(&mut report, &data("c2"));
        assert_eq!(
            outcome(&report, "ADP-REF-03"),
            Outcome::Fail(
                "Observation/o1: reference Encounter/c2 does not resolve to an Encounter returned for Patient/9690937278"
                    .into()
            )
        );
        assert_eq!(
            outcome(&report, "ADP-REF-02"),
            Outcome::Pass,
            "reported once"
        );
    }
}
