//! Running the suite against gp-sim's reference simulators: their fault injection as a
//! [`FaultTarget`], and a [`Backend`] for any system of the synthetic population.
//!
//! The glue lives here, not in gp-sim, so the simulators stay independent of the
//! adapters (they agree only on the native wire formats).

use gp_fhir::{NhsNumber, OdsCode};
use gp_sim::{Population, PopulationSpec, SimHandle, SimPatient, SimStore, SystemKind};

use super::{Backend, CanonicalRecord, Fault, FaultTarget, HarnessFixture, PracticeSide};
use crate::ClinicalType;

/// The population every simulator-backed suite run reads.
pub const SEED: u64 = 42;

impl FaultTarget for SimHandle {
    fn set(&self, fault: Fault) {
        self.set_fault(match fault {
            Fault::Status(s) => gp_sim::Fault::Status(s),
            Fault::Reset => gp_sim::Fault::Reset,
            Fault::Garbage => gp_sim::Fault::Garbage,
            Fault::Truncated => gp_sim::Fault::Truncated,
            Fault::MisEncoded => gp_sim::Fault::MisEncoded,
            Fault::MissingNhsNumber => gp_sim::Fault::MissingNhsNumber,
            Fault::Hang => gp_sim::Fault::Hang,
        });
    }

    fn clear(&self) {
        self.set_fault(gp_sim::Fault::None);
    }
}

/// The sandbox population ([`SEED`]).
pub fn population() -> Population {
    Population::generate(SEED, &PopulationSpec::sandbox())
}

/// Starts `system`'s simulator over `population` on a loopback port of its own.
///
/// # Panics
/// When no loopback port can be bound (test support).
#[allow(
    clippy::expect_used,
    reason = "test support: a simulator that cannot start must fail the calling test"
)]
pub async fn start(system: SystemKind, population: Population) -> SimHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port for the simulator");
    gp_sim::start(system, SimStore::new(population), listener)
        .await
        .expect("start the simulator")
}

/// A [`Backend`] for `system`: its simulator over the sandbox population, and the
/// fixture from [`fixture`].
pub async fn backend(system: SystemKind) -> Backend {
    let population = population();
    let fixture = fixture(&population, system);
    let store = SimStore::new(population);
    let sim = start_over(system, store.clone()).await;
    Backend {
        base_url: sim.base_url(),
        faults: Box::new(sim),
        fixture,
        practice: Some(Box::new(AtPractice { system, store })),
    }
}

/// Starts `system`'s simulator over `store` on a loopback port of its own.
///
/// # Panics
/// When no loopback port can be bound (test support).
#[allow(
    clippy::expect_used,
    reason = "test support: a simulator that cannot start must fail the calling test"
)]
pub async fn start_over(system: SystemKind, store: SimStore) -> SimHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port for the simulator");
    gp_sim::start(system, store, listener)
        .await
        .expect("start the simulator")
}

/// Changes made at a simulated practice, through its store (what a receptionist or
/// nurse does at the GP system's own screens).
pub struct AtPractice {
    pub system: SystemKind,
    pub store: SimStore,
}

#[async_trait::async_trait]
impl PracticeSide for AtPractice {
    async fn record_reading(&self, practice: &OdsCode, nhs: NhsNumber) -> Result<String, String> {
        let pulse = gp_sim::concepts::measurement_by_snomed("78564009")
            .ok_or("the simulator has no pulse rate concept")?;
        self.store
            .record_reading_at_practice(
                self.system,
                practice.as_str(),
                &nhs.to_string(),
                pulse,
                72.0,
            )
            .map_err(|e| e.to_string())
    }

    async fn change_contact(&self, practice: &OdsCode, nhs: NhsNumber) -> Result<(), String> {
        let (_, patient) = self
            .store
            .patient(practice.as_str(), &nhs.to_string())
            .ok_or("no such patient at the practice")?;
        let update = gp_sim::store::ContactUpdate {
            home_phone: patient.home_phone.clone(),
            mobile: Some("07700 900999".into()),
            email: patient.email.clone(),
            address: patient.address.clone(),
            language: patient.language.clone(),
        };
        self.store
            .update_contact_at_practice(self.system, practice.as_str(), &nhs.to_string(), update)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn cancel_appointment(&self, practice: &OdsCode) -> Result<(NhsNumber, i64), String> {
        let booking = self
            .store
            .practice_booking(self.system, practice.as_str(), gp_sim::appointments::now())
            .ok_or("no appointment booked at the practice to cancel")?;
        let cancelled = self
            .store
            .change_appointment_at_practice(
                self.system,
                practice.as_str(),
                &booking.id,
                gp_sim::appointments::Change::Cancel {
                    reason: "Clinician unavailable".into(),
                },
            )
            .map_err(|e| e.to_string())?;
        let nhs = NhsNumber::parse(&cancelled.nhs).map_err(|e| e.to_string())?;
        Ok((nhs, cancelled.start))
    }

    async fn transfer(&self, nhs: NhsNumber, to: &OdsCode) -> Result<(), String> {
        self.store
            .transfer_patient(&nhs.to_string(), to.as_str())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The patients of `system`'s practices the suite reads: six of the first practice
/// (led by the system's demo patient, then the restricted and the dissenting one) and
/// two of the second, with a valid NHS number nobody holds as the unknown patient.
///
/// # Panics
/// When the population has no practice of `system` or its NHS numbers do not parse
/// (test support).
#[allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test support: a population the suite cannot use must fail the calling test"
)]
pub fn fixture(population: &Population, system: SystemKind) -> HarnessFixture {
    let sites: Vec<&str> = population
        .practices
        .iter()
        .filter(|p| p.system == system)
        .map(|p| p.ods.as_str())
        .collect();
    let first = *sites.first().expect("a practice of the system");
    let held: Vec<&SimPatient> = sites
        .iter()
        .zip([6, 2])
        .flat_map(|(site, n)| {
            population
                .patients
                .iter()
                .filter(move |p| p.practice == *site)
                .take(n)
        })
        .collect();
    let demo = gp_sim::DEMO_NHS_NUMBERS
        .iter()
        .find(|(s, _)| *s == system)
        .map(|(_, n)| *n);
    if held.first().map(|p| p.nhs_number.as_str()) != demo {
        panic!("the demo patient {demo:?} must lead the first {system:?} practice");
    }
    let parse = |p: &SimPatient| {
        (
            NhsNumber::parse(&p.nhs_number).expect("a valid NHS number"),
            OdsCode::parse(&p.practice).expect("a valid ODS code"),
        )
    };
    let unknown = (0..)
        .filter_map(|stem| NhsNumber::from_stem(999_999_000 + stem))
        .find(|n| population.patient_by_nhs(&n.to_string()).is_none())
        .expect("an NHS number nobody holds");
    let at = |pred: fn(&SimPatient) -> bool| -> Vec<usize> {
        held.iter()
            .enumerate()
            .filter(|(_, p)| pred(p))
            .map(|(i, _)| i)
            .collect()
    };
    HarnessFixture {
        patients: held.iter().map(|p| parse(p)).collect(),
        unknown: (unknown, OdsCode::parse(first).expect("a valid ODS code")),
        restricted: at(|p| p.flags.sensitive),
        dissenting: at(|p| p.flags.dissent),
        confidential: Some(held.iter().map(|p| confidential(p, system)).collect()),
        canonical: Some(held.iter().map(|p| canonical(p)).collect()),
    }
}

/// How many of a patient's entries the system holds as confidential: those a clinician
/// marked, and on SystmOne also every entry recorded in a confidential consultation
/// (docs/native-formats/tpp.md, "A `Confidential="true"` consultation makes every Event
/// grouped in it confidential too").
fn confidential(p: &SimPatient, system: SystemKind) -> usize {
    let closed: Vec<&str> = p
        .consultations
        .iter()
        .filter(|c| c.meta.confidential)
        .map(|c| c.meta.id.as_str())
        .collect();
    let grouped = |m: &gp_sim::EntryMeta| {
        system == SystemKind::Tpp
            && m.consultation
                .as_deref()
                .is_some_and(|c| closed.contains(&c))
    };
    let pairs = gp_sim::blood_pressure_pairs(&p.observations);
    let metas = p
        .allergies
        .iter()
        .map(|e| &e.meta)
        .chain(p.medications.iter().map(|e| &e.meta))
        .chain(p.problems.iter().map(|e| &e.meta))
        // A blood pressure's two readings are one panel entry: its diastolic is not one.
        .chain(
            p.observations
                .iter()
                .enumerate()
                .filter_map(|(i, e)| (!pairs.iter().any(|(_, d)| *d == i)).then_some(&e.meta)),
        )
        .chain(p.immunisations.iter().map(|e| &e.meta))
        .chain(p.consultations.iter().map(|e| &e.meta));
    metas.filter(|m| m.confidential || grouped(m)).count()
}

/// The observations' codes, a blood pressure (a systolic reading and the diastolic one
/// taken with it) being one panel entry, as every adapter answers it.
fn observations(p: &SimPatient) -> Vec<Vec<String>> {
    let pairs = gp_sim::blood_pressure_pairs(&p.observations);
    p.observations
        .iter()
        .enumerate()
        .filter(|(i, _)| !pairs.iter().any(|(_, d)| d == i))
        .map(|(i, e)| {
            let panel = pairs.iter().any(|(s, _)| *s == i);
            let code = if panel {
                crate::vital_signs::BLOOD_PRESSURE_PANEL
            } else {
                e.concept.snomed
            };
            vec![code.to_owned()]
        })
        .collect()
}

/// The record as the population holds it: per type, each entry's SNOMED CT and dm+d codes.
fn canonical(p: &SimPatient) -> CanonicalRecord {
    let codes = |c: &gp_sim::concepts::Concept| -> Vec<String> {
        std::iter::once(c.snomed)
            .chain(c.dmd)
            .map(str::to_owned)
            .collect()
    };
    let of = |entries: Vec<&'static gp_sim::concepts::Concept>| -> Vec<Vec<String>> {
        entries.into_iter().map(codes).collect()
    };
    let entries = [
        (
            ClinicalType::AllergyIntolerance,
            of(p.allergies.iter().map(|e| e.concept).collect()),
        ),
        (
            ClinicalType::MedicationStatement,
            of(p.medications.iter().map(|e| e.drug).collect()),
        ),
        (
            ClinicalType::Condition,
            of(p.problems.iter().map(|e| e.concept).collect()),
        ),
        (ClinicalType::Observation, observations(p)),
        (
            ClinicalType::Immunization,
            of(p.immunisations.iter().map(|e| e.concept).collect()),
        ),
        (
            ClinicalType::Encounter,
            of(p.consultations.iter().map(|e| e.kind).collect()),
        ),
    ]
    .into_iter()
    .collect();
    CanonicalRecord { entries }
}
