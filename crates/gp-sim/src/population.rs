//! The deterministic synthetic population: same seed and spec ⇒ byte-identical output.
//!
//! Layout (documented so the README and tests can name patients):
//! practices are generated per system in the order EMIS, TPP, Vision, Microtest;
//! in every practice patient [`SENSITIVE_INDEX`] is sensitive (restricted) and
//! patient [`DISSENT_INDEX`] dissents from sharing; patient 0 of the first practice of
//! each system is the demo patient with the NHS number in [`DEMO_NHS_NUMBERS`] and a
//! full record (allergy, medication, problem, observations with BP, immunisation,
//! consultations). Everyone else has an NHS number in the 999 000 0000–999 999 9999
//! test range, never issued to real people.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::concepts::{self, Concept};
use crate::date::{Precision, SimDate};
use crate::model::*;
use crate::rng::Rng;

/// Published test NHS numbers given to patient 0 of the first practice of each system.
pub const DEMO_NHS_NUMBERS: [(SystemKind, &str); 4] = [
    (SystemKind::Emis, "9000000009"),
    (SystemKind::Tpp, "9690937278"),
    (SystemKind::Vision, "9658218865"),
    (SystemKind::Microtest, "9912003888"),
];
/// Position of the sensitive (restricted) patient in every practice.
pub const SENSITIVE_INDEX: usize = 1;
/// Position of the patient dissenting from sharing in every practice.
pub const DISSENT_INDEX: usize = 2;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PopulationSpec {
    /// Practices per GP system.
    pub practices_per_system: usize,
    /// Patients per practice (at least 3 to get the flagged patients).
    pub patients_per_practice: usize,
    /// The simulated "today": nothing is dated after it. Not the system clock, so
    /// output is deterministic.
    pub today: SimDate,
}

impl PopulationSpec {
    /// The default simulated today.
    pub const TODAY: SimDate = SimDate::ymd(2026, 11, 1);

    /// The sandbox: 2 practices per system, 12 patients each.
    pub fn sandbox() -> Self {
        Self {
            practices_per_system: 2,
            patients_per_practice: 12,
            today: Self::TODAY,
        }
    }
}

impl Default for PopulationSpec {
    fn default() -> Self {
        Self::sandbox()
    }
}

/// The whole synthetic world: practices and their registered patients.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Population {
    /// Seed it was generated from.
    pub seed: u64,
    /// Spec it was generated from.
    pub spec: PopulationSpec,
    /// Practices, by system then index.
    pub practices: Vec<Practice>,
    /// Patients, grouped by practice in practice order.
    pub patients: Vec<SimPatient>,
}

impl Population {
    /// Generates the population for `seed` and `spec`.
    pub fn generate(seed: u64, spec: &PopulationSpec) -> Population {
        let mut used_ods = BTreeSet::new();
        let mut used_nhs: BTreeSet<String> = DEMO_NHS_NUMBERS
            .iter()
            .map(|(_, n)| (*n).to_owned())
            .collect();
        let mut nhs_rng = Rng::fork(seed, 0x4E48_5300);
        let mut practices = Vec::new();
        let mut patients = Vec::new();
        for (si, system) in SystemKind::ALL.into_iter().enumerate() {
            for pi in 0..spec.practices_per_system {
                let salt = ((si as u64) << 40) | ((pi as u64) << 20);
                let practice =
                    gen_practice(&mut Rng::fork(seed, salt | 0xF_FFFF), system, &mut used_ods);
                for k in 0..spec.patients_per_practice {
                    let demo = DEMO_NHS_NUMBERS
                        .iter()
                        .find(|(s, _)| *s == system)
                        .map(|(_, n)| *n);
                    let nhs = match demo {
                        Some(n) if pi == 0 && k == 0 => n.to_owned(),
                        _ => gen_nhs(&mut nhs_rng, &mut used_nhs),
                    };
                    let mut r = Rng::fork(seed, salt | k as u64);
                    patients.push(PatientGen::new(&mut r, &practice, k, nhs, spec.today).build());
                }
                practices.push(practice);
            }
        }
        Population {
            seed,
            spec: spec.clone(),
            practices,
            patients,
        }
    }

    /// The GP systems this population's practices run, in population order, each once.
    pub fn systems(&self) -> Vec<SystemKind> {
        let mut out: Vec<SystemKind> = Vec::new();
        for p in &self.practices {
            if !out.contains(&p.system) {
                out.push(p.system);
            }
        }
        out
    }

    /// The practices running `system`, in population order.
    pub fn practices_of(&self, system: SystemKind) -> impl Iterator<Item = &Practice> {
        self.practices.iter().filter(move |p| p.system == system)
    }

    /// The practice with ODS code `ods`.
    pub fn practice(&self, ods: &str) -> Option<&Practice> {
        self.practices.iter().find(|p| p.ods == ods)
    }

    /// The patient with `nhs` registered at practice `ods`.
    pub fn patient(&self, ods: &str, nhs: &str) -> Option<&SimPatient> {
        self.patients
            .iter()
            .find(|p| p.practice == ods && p.nhs_number == nhs)
    }

    /// The patient with `nhs`, at whichever practice.
    pub fn patient_by_nhs(&self, nhs: &str) -> Option<&SimPatient> {
        self.patients.iter().find(|p| p.nhs_number == nhs)
    }

    /// One manifest row per patient, in population order.
    pub fn manifest_patients(&self) -> Vec<ManifestPatient> {
        self.patients
            .iter()
            .map(|p| {
                let mut flags = Vec::new();
                if p.flags.sensitive {
                    flags.push("sensitive".to_owned());
                }
                if p.flags.dissent {
                    flags.push("dissent".to_owned());
                }
                if p.deceased_on.is_some() {
                    flags.push("deceased".to_owned());
                }
                let system = self
                    .practice(&p.practice)
                    .map_or("unknown", |pr| pr.system.id());
                ManifestPatient {
                    nhs_number: p.nhs_number.clone(),
                    practice: p.practice.clone(),
                    system: system.to_owned(),
                    flags,
                }
            })
            .collect()
    }
}

fn gen_nhs(r: &mut Rng, used: &mut BTreeSet<String>) -> String {
    loop {
        let stem = 999_000_000 + r.below(1_000_000) as u32;
        if let Some(s) = crate::nhs::with_check_digit(stem)
            && used.insert(s.clone())
        {
            return s;
        }
    }
}

// ---- name and place tables (fictional combinations; drama-range phone numbers) ----

const MALE: &[&str] = &[
    "Oliver", "George", "Harry", "Jack", "Jacob", "Noah", "Charlie", "Thomas", "Oscar", "William",
    "James", "David", "Amir", "Mohammed", "Daniel", "Samuel", "Peter", "Richard", "Arjun", "Kwame",
];
const FEMALE: &[&str] = &[
    "Olivia", "Amelia", "Isla", "Ava", "Emily", "Sophie", "Grace", "Mia", "Poppy", "Ella", "Jane",
    "Margaret", "Susan", "Aisha", "Priya", "Zara", "Helen", "Chloe", "Niamh", "Zoë",
];
const FAMILY: &[&str] = &[
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Robinson",
    "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood",
    "Jackson", "Clarke", "Patel", "Khan", "O'Brien", "Nowak", "Okafor", "Ahmed", "Hughes",
    "Edwards",
];
const STREETS: &[&str] = &[
    "Acacia Avenue",
    "Church Lane",
    "High Street",
    "Station Road",
    "Mill Lane",
    "Victoria Road",
    "Park Road",
    "The Crescent",
    "Orchard Close",
    "Manor Way",
    "Queen's Road",
    "Chapel Street",
    "Meadow View",
    "School Lane",
];
const HOUSE_NAMES: &[&str] = &[
    "Rose Cottage",
    "The Old Forge",
    "Flat 2",
    "Flat 4B",
    "Ivy House",
    "The Willows",
];
/// (town, county, postcode area, villages)
const TOWNS: &[(&str, &str, &str, &[&str])] = &[
    (
        "Leeds",
        "West Yorkshire",
        "LS",
        &["Headingley", "Roundhay", "Horsforth"],
    ),
    (
        "Harrogate",
        "North Yorkshire",
        "HG",
        &["Pannal", "Killinghall"],
    ),
    ("York", "North Yorkshire", "YO", &["Haxby", "Bishopthorpe"]),
    (
        "Nottingham",
        "Nottinghamshire",
        "NG",
        &["Beeston", "Arnold"],
    ),
    ("Exeter", "Devon", "EX", &["Topsham", "Pinhoe"]),
    ("Norwich", "Norfolk", "NR", &["Taverham", "Costessey"]),
    ("Carlisle", "Cumbria", "CA", &["Dalston", "Wetheral"]),
    ("Reading", "Berkshire", "RG", &["Tilehurst", "Caversham"]),
];
const PRACTICE_PLACES: &[&str] = &[
    "Riverside",
    "Parkview",
    "Oakwood",
    "Meadowbank",
    "Castle Street",
    "Abbey",
    "Ashfield",
    "Beechwood",
    "Hillside",
    "Kingsway",
    "Northgate",
    "Priory",
    "Westfield",
    "Millbrook",
];
const PRACTICE_KINDS: &[&str] = &[
    "Medical Practice",
    "Surgery",
    "Health Centre",
    "Medical Centre",
    "Family Practice",
];
const ODS_LETTERS: &[char] = &[
    'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'J', 'K', 'L', 'M', 'N', 'P', 'Y',
];
// Inward-code letters exclude C I K M O V (Royal Mail rule).
const INWARD_LETTERS: &[char] = &[
    'A', 'B', 'D', 'E', 'F', 'G', 'H', 'J', 'L', 'N', 'P', 'Q', 'R', 'S', 'T', 'U', 'W', 'X', 'Y',
    'Z',
];

fn gen_address(r: &mut Rng, town_idx: Option<usize>) -> Address {
    let (town, county, area, villages) = match town_idx {
        Some(i) => TOWNS[i % TOWNS.len()],
        None => *r.pick(TOWNS),
    };
    let house = if r.chance(12) {
        (*r.pick(HOUSE_NAMES)).to_owned()
    } else {
        r.range(1, 180).to_string()
    };
    let village = if r.chance(35) {
        (*r.pick(villages)).to_owned()
    } else {
        String::new()
    };
    let postcode = format!(
        "{area}{} {}{}{}",
        r.range(1, 20),
        r.range(1, 9),
        r.pick(INWARD_LETTERS),
        r.pick(INWARD_LETTERS)
    );
    Address {
        house,
        street: (*r.pick(STREETS)).to_owned(),
        village,
        town: town.to_owned(),
        county: county.to_owned(),
        postcode,
    }
}

fn drama_landline(r: &mut Rng) -> String {
    format!("01632 960{:03}", r.below(1000))
}

fn gen_practice(r: &mut Rng, system: SystemKind, used: &mut BTreeSet<String>) -> Practice {
    let ods = loop {
        let code = format!("{}{}", r.pick(ODS_LETTERS), r.range(10_000, 99_999));
        if used.insert(code.clone()) {
            break code;
        }
    };
    let town = r.below(TOWNS.len() as u64) as usize;
    let name = format!("{} {}", r.pick(PRACTICE_PLACES), r.pick(PRACTICE_KINDS));
    let mut clinicians = Vec::new();
    let gps = r.range(2, 3);
    for i in 0..gps + r.range(1, 2) {
        let doctor = i < gps;
        let sex = if r.chance(50) { Sex::Male } else { Sex::Female };
        let given = (*r.pick(if sex == Sex::Male { MALE } else { FEMALE })).to_owned();
        let title = match (doctor, sex) {
            (true, _) => "Dr",
            (false, Sex::Male) => "Mr",
            (false, _) => *r.pick(&["Mrs", "Ms"]),
        };
        clinicians.push(Clinician {
            id: r.guid(),
            title: title.to_owned(),
            given,
            family: (*r.pick(FAMILY)).to_owned(),
            sex,
            role: if doctor { "GP" } else { "Practice Nurse" }.to_owned(),
            sds_user_id: format!("{:012}", 100_000_000_000 + r.below(900_000_000_000)),
            gmc: doctor.then(|| format!("G{:07}", r.range(1_000_000, 9_999_999))),
        });
    }
    Practice {
        ods,
        guid: r.guid(),
        name,
        system,
        address: gen_address(r, Some(town)),
        phone: drama_landline(r),
        clinicians,
    }
}

// ---- patient generation ----

const YEAR_DAYS: i64 = 365;

struct PatientGen<'a> {
    r: &'a mut Rng,
    practice: &'a Practice,
    k: usize,
    nhs: String,
    today: SimDate,
}

/// A clinical date window, in days since 1970.
#[derive(Clone, Copy)]
struct Window {
    lo: i64,
    hi: i64,
}

impl PatientGen<'_> {
    fn new<'a>(
        r: &'a mut Rng,
        practice: &'a Practice,
        k: usize,
        nhs: String,
        today: SimDate,
    ) -> PatientGen<'a> {
        PatientGen {
            r,
            practice,
            k,
            nhs,
            today,
        }
    }

    /// A day in the window; an empty window (lo > hi) yields `hi`, so nothing is ever
    /// dated after the window's end (today, or the date of death).
    fn day(&mut self, w: Window) -> SimDate {
        SimDate::from_days(self.r.range(w.lo.min(w.hi), w.hi))
    }

    fn clinician(&mut self, gp_only: bool) -> String {
        let pool: Vec<&Clinician> = self
            .practice
            .clinicians
            .iter()
            .filter(|c| !gp_only || c.role == "GP")
            .collect();
        if pool.is_empty() {
            return String::new();
        }
        pool[self.r.below(pool.len() as u64) as usize].id.clone()
    }

    fn nurse(&mut self) -> String {
        match self.practice.clinicians.iter().find(|c| c.role != "GP") {
            Some(c) => c.id.clone(),
            None => self.clinician(false),
        }
    }

    fn meta(&mut self, date: SimDate, author: String, consultation: Option<String>) -> EntryMeta {
        let confidential = self.r.chance(3);
        EntryMeta {
            id: self.r.guid(),
            date,
            author,
            consultation,
            confidential,
            external_key: None,
            external_id: None,
        }
    }

    fn build(mut self) -> SimPatient {
        let today = self.today.days();
        let special = self.k <= DISSENT_INDEX;
        let demo = self.k == 0;
        let age = if demo {
            self.r.range(35, 70)
        } else {
            match self.r.below(100) {
                0..=19 => self.r.range(0, 17),
                20..=79 => self.r.range(18, 64),
                _ => self.r.range(65, 95),
            }
        };
        let birth = SimDate::from_days(today - age * YEAR_DAYS - age / 4 - self.r.range(30, 360));
        let sex = match self.r.below(100) {
            _ if special => {
                if self.r.chance(50) {
                    Sex::Female
                } else {
                    Sex::Male
                }
            }
            0..=48 => Sex::Male,
            49..=97 => Sex::Female,
            98 => Sex::Indeterminate,
            _ => Sex::Unknown,
        };
        let female = sex == Sex::Female || (sex != Sex::Male && self.r.chance(50));
        let names = if female { FEMALE } else { MALE };
        let mut given = vec![(*self.r.pick(names)).to_owned()];
        if self.r.chance(30) {
            let middle = (*self.r.pick(names)).to_owned();
            if middle != given[0] {
                given.push(middle);
            }
        }
        let family = (*self.r.pick(FAMILY)).to_owned();
        let title = match (age >= 18, sex) {
            (false, _) => String::new(),
            (true, _) if self.r.chance(4) => "Dr".to_owned(),
            (true, Sex::Male) => "Mr".to_owned(),
            (true, Sex::Female) => (*self.r.pick(&["Mrs", "Ms", "Miss"])).to_owned(),
            (true, _) => "Mx".to_owned(),
        };
        let address = gen_address(self.r, None);
        let home_phone = self.r.chance(70).then(|| drama_landline(self.r));
        let mobile =
            (age >= 14 && self.r.chance(85)).then(|| format!("07700 900{:03}", self.r.below(1000)));
        let email = (age >= 16 && self.r.chance(60)).then(|| {
            let clean = |s: &str| {
                s.chars()
                    .filter(char::is_ascii_alphanumeric)
                    .collect::<String>()
                    .to_lowercase()
            };
            format!(
                "{}.{}{}@example.com",
                clean(&given[0]),
                clean(&family),
                self.r.below(100)
            )
        });
        let reg_lo = (birth.days() + 7).max(today - 30 * YEAR_DAYS);
        let registered_on = self.day(Window {
            lo: reg_lo,
            hi: today - 30,
        });
        let nhs_status = if special || self.r.chance(92) {
            "01".to_owned()
        } else {
            format!("{:02}", self.r.range(2, 8))
        };
        let deceased_on =
            (!special && age >= 65 && self.r.chance(8) && registered_on.days() + 60 < today).then(
                || {
                    self.day(Window {
                        lo: registered_on.days() + 60,
                        hi: today - 1,
                    })
                },
            );
        let end = deceased_on.map_or(today, |d| d.days());
        let last_modified = self
            .day(Window {
                lo: registered_on.days(),
                hi: end,
            })
            .at(
                self.r.range(8, 17) as u8,
                self.r.range(0, 59) as u8,
                self.r.range(0, 59) as u8,
            );
        let usual_gp = self.clinician(true);

        let mut p = SimPatient {
            id: self.r.guid(),
            nhs_number: std::mem::take(&mut self.nhs),
            title,
            given,
            family,
            sex,
            birth_date: birth,
            address,
            home_phone,
            mobile,
            email,
            // Deterministic and drawn from no random stream, so the rest of the population is unchanged.
            language: Some(
                match self.k % 6 {
                    4 => "pl",
                    5 => "cy",
                    _ => "en",
                }
                .to_owned(),
            ),
            practice: self.practice.ods.clone(),
            usual_gp,
            registered_on,
            nhs_status,
            deceased_on,
            flags: PatientFlags {
                sensitive: self.k == SENSITIVE_INDEX,
                dissent: self.k == DISSENT_INDEX,
            },
            last_modified,
            allergies: Vec::new(),
            medications: Vec::new(),
            problems: Vec::new(),
            observations: Vec::new(),
            immunisations: Vec::new(),
            consultations: Vec::new(),
        };
        self.clinical(&mut p, age, end);
        p
    }

    fn clinical(&mut self, p: &mut SimPatient, age: i64, end: i64) {
        let demo = self.k == 0;
        let female = p.sex == Sex::Female;
        let birth = p.birth_date.days();
        let years = |n: i64| n * YEAR_DAYS + n / 4;

        // Consultations first: most other entries are recorded in one.
        let n = if demo {
            self.r.range(4, 6)
        } else {
            self.r.range(1, 5)
        };
        let cw = Window {
            lo: p.registered_on.days().max(end - years(8)),
            hi: end,
        };
        for _ in 0..n {
            let day = self.day(cw);
            let kind = match self.r.below(100) {
                0..=64 => "face-to-face-consultation",
                65..=94 => "telephone-consultation",
                _ => "home-visit",
            };
            let kind = concepts::known(kind);
            let duration = if kind.key == "home-visit" {
                self.r.range(20, 40)
            } else {
                self.r.range(5, 20)
            } as u32;
            let clinician = if self.r.chance(60) {
                p.usual_gp.clone()
            } else {
                self.clinician(false)
            };
            let date = day.at(self.r.range(8, 17) as u8, (self.r.below(6) * 10) as u8, 0);
            let meta = self.meta(date, clinician.clone(), None);
            p.consultations.push(Consultation {
                meta,
                kind,
                duration_minutes: duration,
                clinician,
            });
        }
        p.consultations.sort_by_key(|c| c.meta.date);

        // Chronic conditions and the medicines that fit them.
        let smoking = (age >= 16).then(|| match self.r.below(100) {
            0..=54 => "never-smoked",
            55..=79 => "ex-smoker",
            _ => "current-smoker",
        });
        let mut conditions = Vec::new();
        let pct = |old: u64, mid: u64, young: u64| {
            if age >= 60 {
                old
            } else if age >= 40 {
                mid
            } else {
                young
            }
        };
        if demo || (age >= 3 && self.r.chance(12)) {
            conditions.push("asthma");
        }
        if demo || (age >= 18 && self.r.chance(pct(40, 20, 3))) {
            conditions.push("essential-hypertension");
        }
        if age >= 35 && self.r.chance(pct(15, 10, 3)) {
            conditions.push("type-2-diabetes");
        }
        if age >= 45 && smoking != Some("never-smoked") && self.r.chance(20) {
            conditions.push("copd");
        }
        for key in &conditions {
            let min_age = if *key == "asthma" {
                3
            } else {
                30.min(age - 1).max(18)
            };
            let w = Window {
                lo: (birth + years(min_age)).max(end - years(25)),
                hi: end - 60,
            };
            let mut onset = self.day(w);
            if onset.year < 2000 && self.r.chance(50) {
                onset = onset.truncate(if self.r.chance(50) {
                    Precision::Y
                } else {
                    Precision::YM
                });
            }
            let concept = concepts::known(key);
            let (status, end_date) = if *key == "asthma" && !demo && age < 40 && self.r.chance(15) {
                (
                    ProblemStatus::Past,
                    Some(self.day(Window {
                        lo: onset.days() + YEAR_DAYS,
                        hi: end,
                    })),
                )
            } else {
                (ProblemStatus::Active, None)
            };
            let significance = if *key == "asthma" && self.r.chance(50) {
                Significance::Minor
            } else {
                Significance::Major
            };
            let author = self.clinician(true);
            let meta = self.meta(onset, author, None);
            p.problems.push(Problem {
                meta,
                concept,
                status,
                significance,
                end_date,
            });

            let start = Window {
                lo: onset.days(),
                hi: (onset.days() + 90).min(end),
            };
            match *key {
                "asthma" | "copd" => {
                    self.medication(
                        p,
                        start,
                        end,
                        "salbutamol-inhaler",
                        "Two puffs when required",
                        200,
                        "dose",
                    );
                }
                "type-2-diabetes" => {
                    self.medication(
                        p,
                        start,
                        end,
                        "metformin",
                        "One tablet twice a day with meals",
                        56,
                        "tablet",
                    );
                    for _ in 0..self.r.range(2, 4) {
                        let w = Window {
                            lo: start.hi,
                            hi: end,
                        };
                        self.observation(p, w, "hba1c", Some((42.0, 75.0, 0)));
                    }
                }
                "essential-hypertension" => {
                    if self.r.chance(20) {
                        // Ramipril stopped for the classic ACE-inhibitor cough, then amlodipine.
                        let m = self.medication(
                            p,
                            start,
                            end,
                            "ramipril",
                            "One capsule once a day",
                            28,
                            "capsule",
                        );
                        {
                            let stop = self.day(Window {
                                lo: m.days() + 30,
                                hi: (m.days() + 120).min(end),
                            });
                            if let Some(last) = p.medications.last_mut() {
                                last.status = MedicationStatus::Cancelled;
                                last.end_date = Some(stop);
                            }
                            let after = Window {
                                lo: stop.days(),
                                hi: (stop.days() + 30).min(end),
                            };
                            self.medication(
                                p,
                                after,
                                end,
                                "amlodipine",
                                "One tablet once a day",
                                28,
                                "tablet",
                            );
                        }
                    } else if self.r.chance(50) {
                        self.medication(
                            p,
                            start,
                            end,
                            "amlodipine",
                            "One tablet once a day",
                            28,
                            "tablet",
                        );
                    } else {
                        self.medication(
                            p,
                            start,
                            end,
                            "ramipril",
                            "One capsule once a day",
                            28,
                            "capsule",
                        );
                    }
                }
                _ => {}
            }
        }

        // Allergies.
        if demo || self.r.chance(15) {
            let key = if demo {
                "penicillin-allergy"
            } else {
                *self.r.pick(&[
                    "penicillin-allergy",
                    "peanut-allergy",
                    "house-dust-mite-allergy",
                    "grass-pollen-allergy",
                ])
            };
            let category = match key {
                "penicillin-allergy" => AllergyCategory::Drug,
                "peanut-allergy" => AllergyCategory::Food,
                _ => AllergyCategory::Environment,
            };
            let mut date = self.day(Window {
                lo: birth + YEAR_DAYS,
                hi: end,
            });
            if date.year < 2000 && self.r.chance(40) {
                date = date.truncate(Precision::Y);
            }
            let (status, end_date) =
                if !demo && category == AllergyCategory::Environment && self.r.chance(20) {
                    (
                        AllergyStatus::Resolved,
                        Some(self.day(Window {
                            lo: date.days() + YEAR_DAYS,
                            hi: end,
                        })),
                    )
                } else {
                    (AllergyStatus::Active, None)
                };
            let reaction = if demo || self.r.chance(70) {
                Some(concepts::known(
                    if key == "peanut-allergy" && self.r.chance(30) {
                        "anaphylaxis"
                    } else {
                        "urticaria"
                    },
                ))
            } else {
                None
            };
            let severity = match reaction.map(|c| c.key) {
                Some("anaphylaxis") => Severity::Severe,
                _ if demo => Severity::Moderate,
                _ => *self.r.pick(&[Severity::Mild, Severity::Moderate]),
            };
            let author = self.clinician(true);
            let meta = self.meta(date, author, None);
            p.allergies.push(Allergy {
                meta,
                concept: concepts::known(key),
                category,
                status,
                end_date,
                reaction,
                severity,
            });
        }
        let penicillin_allergic = p
            .allergies
            .iter()
            .any(|a| a.concept.key == "penicillin-allergy");

        // Acute courses, prescribed in a consultation.
        let acute_window = Window {
            lo: p.registered_on.days().max(end - years(8)),
            hi: end,
        };
        if !penicillin_allergic && self.r.chance(30) {
            self.acute(
                p,
                acute_window,
                "amoxicillin",
                "One capsule three times a day",
                21,
                "capsule",
                7,
            );
        }
        if self.r.chance(20) {
            self.acute(
                p,
                acute_window,
                "paracetamol",
                "One or two tablets up to four times a day",
                100,
                "tablet",
                14,
            );
        }

        // Observations.
        let obs_window = Window {
            lo: p.registered_on.days().max(end - years(8)).max(birth + 1),
            hi: end,
        };
        if let Some(key) = smoking {
            self.observation(p, obs_window, key, None);
        }
        if age >= 16 {
            let hypertensive = conditions.contains(&"essential-hypertension");
            let readings = self.r.range(1, 3) + if hypertensive { 3 } else { 0 };
            for _ in 0..readings {
                let (sys, dia) = if hypertensive {
                    ((132.0, 162.0), (78.0, 98.0))
                } else {
                    ((108.0, 138.0), (62.0, 86.0))
                };
                let (date, consultation, author) = self.when(p, obs_window);
                let sys_v = self.r.real(sys.0, sys.1, 0);
                let dia_v = self.r.real(dia.0, dia.1, 0);
                self.push_obs(
                    p,
                    date,
                    consultation.clone(),
                    author.clone(),
                    "systolic-bp",
                    Some(sys_v),
                );
                self.push_obs(p, date, consultation, author, "diastolic-bp", Some(dia_v));
            }
            if self.r.chance(50) || demo {
                self.observation(p, obs_window, "pulse-rate", Some((55.0, 95.0, 0)));
            }
            let height = if female {
                self.r.real(152.0, 175.0, 0)
            } else {
                self.r.real(163.0, 190.0, 0)
            };
            let bmi = self.r.real(19.0, 34.0, 1);
            let metres = height / 100.0;
            let weight = crate::rng::round_to(bmi * metres * metres, 1);
            let (date, consultation, author) = self.when(p, obs_window);
            self.push_obs(
                p,
                date,
                consultation.clone(),
                author.clone(),
                "body-height",
                Some(height),
            );
            self.push_obs(
                p,
                date,
                consultation.clone(),
                author.clone(),
                "body-weight",
                Some(weight),
            );
            self.push_obs(p, date, consultation, author, "bmi", Some(bmi));
            if age >= 40 && self.r.chance(40) {
                self.observation(p, obs_window, "serum-cholesterol", Some((3.5, 6.8, 1)));
            }
        } else {
            // Children: growth measurements only, sized roughly for age.
            let on = self.day(obs_window);
            let years_old = f64::from(p.birth_date.age_on(&on).max(0));
            let height = self
                .r
                .real(70.0 + 6.0 * years_old, 78.0 + 6.5 * years_old, 0);
            let weight = self
                .r
                .real(8.0 + 2.4 * years_old, 11.0 + 3.0 * years_old, 1);
            let author = self.nurse();
            self.push_obs(p, on, None, author.clone(), "body-height", Some(height));
            self.push_obs(p, on, None, author, "body-weight", Some(weight));
        }

        // Immunisations.
        let nurse = self.nurse();
        for (dose, after) in [(1u32, 395i64), (2, 3 * YEAR_DAYS + 120)] {
            let at = birth + after + self.r.range(0, 40);
            if at <= end && p.birth_date.year >= 1990 {
                self.immunisation(p, SimDate::from_days(at), &nurse, "mmr-vaccination", dose);
            }
        }
        if demo || age >= 65 || !conditions.is_empty() {
            for year in (self.today.year - 3)..=self.today.year {
                let at = SimDate::ymd(year, 10, 1).days() + self.r.range(0, 45);
                if at <= end
                    && at >= p.registered_on.days()
                    && at >= birth + years(16).min(years(age.max(1)))
                {
                    self.immunisation(
                        p,
                        SimDate::from_days(at),
                        &nurse,
                        "influenza-vaccination",
                        1,
                    );
                }
            }
        }
        if age >= 66 {
            let at = birth + years(65) + self.r.range(0, 300);
            if at <= end {
                self.immunisation(
                    p,
                    SimDate::from_days(at),
                    &nurse,
                    "pneumococcal-vaccination",
                    1,
                );
            }
        }
        if p.birth_date.year <= 2003 && self.r.chance(70) {
            let at = SimDate::ymd(2021, 1, 10).days() + self.r.range(0, 120);
            if at <= end {
                self.immunisation(p, SimDate::from_days(at), &nurse, "covid-vaccination", 1);
            }
        }
    }

    /// A date for an entry: in a consultation (inheriting its day, clinician and id) when there is one in the window.
    fn when(&mut self, p: &SimPatient, w: Window) -> (SimDate, Option<String>, String) {
        let in_window: Vec<&Consultation> = p
            .consultations
            .iter()
            .filter(|c| c.meta.date.days() >= w.lo && c.meta.date.days() <= w.hi)
            .collect();
        if !in_window.is_empty() && self.r.chance(85) {
            let c = in_window[self.r.below(in_window.len() as u64) as usize];
            let date = if self.r.chance(50) {
                c.meta.date
            } else {
                c.meta.date.truncate(Precision::YMD)
            };
            return (date, Some(c.meta.id.clone()), c.clinician.clone());
        }
        let author = self.clinician(false);
        (self.day(w), None, author)
    }

    fn observation(
        &mut self,
        p: &mut SimPatient,
        w: Window,
        key: &str,
        value: Option<(f64, f64, u32)>,
    ) {
        let (date, consultation, author) = self.when(p, w);
        let v = value.map(|(lo, hi, dp)| self.r.real(lo, hi, dp));
        self.push_obs(p, date, consultation, author, key, v);
    }

    fn push_obs(
        &mut self,
        p: &mut SimPatient,
        date: SimDate,
        consultation: Option<String>,
        author: String,
        key: &str,
        value: Option<f64>,
    ) {
        let concept = concepts::known(key);
        let meta = self.meta(date, author, consultation);
        p.observations.push(Observation {
            meta,
            concept,
            value,
            units: value.and(concept.units),
            qualifiers: None,
        });
    }

    /// Adds a repeat medication started in `start`; returns its start date.
    #[allow(clippy::too_many_arguments)] // a plain record of prescribing facts; a struct would only rename them
    fn medication(
        &mut self,
        p: &mut SimPatient,
        start: Window,
        end: i64,
        key: &str,
        dosage: &str,
        quantity: u32,
        units: &str,
    ) -> SimDate {
        let date = self.day(start);
        let deceased = end < self.today.days();
        let author = self.clinician(true);
        let meta = self.meta(date, author, None);
        p.medications.push(Medication {
            meta,
            drug: concepts::known(key),
            dosage: dosage.to_owned(),
            quantity,
            quantity_units: units.to_owned(),
            kind: MedicationKind::Repeat,
            status: if deceased {
                MedicationStatus::Completed
            } else {
                MedicationStatus::Active
            },
            end_date: deceased.then(|| SimDate::from_days(end)),
        });
        date
    }

    #[allow(clippy::too_many_arguments)] // as for `medication`
    fn acute(
        &mut self,
        p: &mut SimPatient,
        w: Window,
        key: &str,
        dosage: &str,
        quantity: u32,
        units: &str,
        course_days: i64,
    ) {
        let (date, consultation, author) = self.when(p, w);
        let stop = SimDate::from_days((date.days() + course_days).min(w.hi));
        let meta = self.meta(date.truncate(Precision::YMD), author, consultation);
        p.medications.push(Medication {
            meta,
            drug: concepts::known(key),
            dosage: dosage.to_owned(),
            quantity,
            quantity_units: units.to_owned(),
            kind: MedicationKind::Acute,
            status: MedicationStatus::Completed,
            end_date: Some(stop),
        });
    }

    fn immunisation(
        &mut self,
        p: &mut SimPatient,
        date: SimDate,
        author: &str,
        key: &str,
        dose: u32,
    ) {
        let batch = format!(
            "{}{}{:04}",
            self.r.pick(INWARD_LETTERS),
            self.r.pick(INWARD_LETTERS),
            self.r.below(10_000)
        );
        let meta = self.meta(date, author.to_owned(), None);
        p.immunisations.push(Immunisation {
            meta,
            concept: concepts::known(key),
            batch,
            dose_sequence: dose,
        });
    }
}

/// Every concept referenced by a patient's record (for coverage checks).
pub fn concepts_used(p: &SimPatient) -> Vec<&'static Concept> {
    let mut out: Vec<&'static Concept> = Vec::new();
    out.extend(p.allergies.iter().map(|a| a.concept));
    out.extend(p.allergies.iter().filter_map(|a| a.reaction));
    out.extend(p.medications.iter().map(|m| m.drug));
    out.extend(p.problems.iter().map(|x| x.concept));
    out.extend(p.observations.iter().map(|x| x.concept));
    out.extend(p.immunisations.iter().map(|x| x.concept));
    out.extend(p.consultations.iter().map(|x| x.kind));
    out
}
