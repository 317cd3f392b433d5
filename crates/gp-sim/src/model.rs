//! The vendor-neutral population model every simulator renders in its own wire format.

use serde::Serialize;

use crate::concepts::Concept;
use crate::date::SimDate;

/// Which GP clinical system a practice runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SystemKind {
    /// EMIS Web.
    Emis,
    /// TPP SystmOne.
    Tpp,
    /// Vision (Cegedim).
    Vision,
    /// Microtest Evolution.
    Microtest,
}

impl SystemKind {
    /// All systems, in population order.
    pub const ALL: [SystemKind; 4] = [
        SystemKind::Emis,
        SystemKind::Tpp,
        SystemKind::Vision,
        SystemKind::Microtest,
    ];

    /// The lowercase id (`emis`, `tpp`, `vision`, `microtest`).
    pub fn id(self) -> &'static str {
        match self {
            SystemKind::Emis => "emis",
            SystemKind::Tpp => "tpp",
            SystemKind::Vision => "vision",
            SystemKind::Microtest => "microtest",
        }
    }
}

/// Administrative sex as GP systems record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Sex {
    /// Male.
    Male,
    /// Female.
    Female,
    /// Indeterminate.
    Indeterminate,
    /// Not known.
    Unknown,
}

/// A postal address; any part may be empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Address {
    /// House number or name / flat.
    pub house: String,
    /// Street.
    pub street: String,
    /// Village or locality (often empty).
    pub village: String,
    /// Post town.
    pub town: String,
    /// County.
    pub county: String,
    /// UK postcode, outward and inward parts separated by one space.
    pub postcode: String,
}

/// A GP practice.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Practice {
    /// ODS code: a letter and five digits (`B82617`).
    pub ods: String,
    /// The practice's own organisation GUID (GP systems key organisations by GUID too).
    pub guid: String,
    /// Practice name.
    pub name: String,
    /// The clinical system it runs.
    pub system: SystemKind,
    /// Postal address.
    pub address: Address,
    /// Reception telephone number.
    pub phone: String,
    /// Clinical staff.
    pub clinicians: Vec<Clinician>,
}

impl Practice {
    /// The member of staff with this GUID, matched as GP systems match GUIDs: without
    /// regard to case or surrounding braces.
    pub fn clinician(&self, guid: &str) -> Option<&Clinician> {
        let wanted = guid.trim_start_matches('{').trim_end_matches('}');
        self.clinicians
            .iter()
            .find(|c| c.id.eq_ignore_ascii_case(wanted))
    }
}

/// A member of practice clinical staff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Clinician {
    /// GUID.
    pub id: String,
    /// `Dr`, `Mr`, `Mrs`, `Ms`.
    pub title: String,
    /// Given name.
    pub given: String,
    /// Family name.
    pub family: String,
    /// Sex.
    pub sex: Sex,
    /// `GP` or `Practice Nurse`.
    pub role: String,
    /// 12-digit SDS user id.
    pub sds_user_id: String,
    /// GMC reference (`G` + 7 digits) for doctors; nurses have none.
    pub gmc: Option<String>,
}

/// Patient flags that change what may be shared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PatientFlags {
    /// Restricted / sensitive record (PDS "R").
    pub sensitive: bool,
    /// The patient dissents from sharing with third parties.
    pub dissent: bool,
}

/// A synthetic patient with their whole GP record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimPatient {
    /// GUID.
    pub id: String,
    /// 10 digits, valid modulus 11.
    pub nhs_number: String,
    /// Title (may be empty for children).
    pub title: String,
    /// Given names, first first.
    pub given: Vec<String>,
    /// Family name.
    pub family: String,
    /// Sex.
    pub sex: Sex,
    /// Date of birth (full date).
    pub birth_date: SimDate,
    /// Home address.
    pub address: Address,
    /// Landline in the Ofcom drama range `01632 960xxx`.
    pub home_phone: Option<String>,
    /// Mobile in the Ofcom drama range `07700 900xxx`.
    pub mobile: Option<String>,
    /// Email `@example.com`.
    pub email: Option<String>,
    /// Preferred language (UK Core HumanLanguage code: `en`, `cy`, `pl`, …).
    pub language: Option<String>,
    /// ODS code of the registered practice.
    pub practice: String,
    /// Clinician id of the usual GP.
    pub usual_gp: String,
    /// Date of registration at the practice.
    pub registered_on: SimDate,
    /// NHS number verification status, `01`..`08`.
    pub nhs_status: String,
    /// Date of death.
    pub deceased_on: Option<SimDate>,
    /// Sharing flags.
    pub flags: PatientFlags,
    /// Last change to demographics (YMDT).
    pub last_modified: SimDate,
    /// Allergies.
    pub allergies: Vec<Allergy>,
    /// Medications.
    pub medications: Vec<Medication>,
    /// Problem list.
    pub problems: Vec<Problem>,
    /// Observations and findings.
    pub observations: Vec<Observation>,
    /// Immunisations.
    pub immunisations: Vec<Immunisation>,
    /// Consultations.
    pub consultations: Vec<Consultation>,
}

/// Fields every clinical entry has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryMeta {
    /// GUID.
    pub id: String,
    /// When recorded / effective; precision Y, YM, YMD or YMDT.
    pub date: SimDate,
    /// Clinician id.
    pub author: String,
    /// Consultation id this entry was recorded in.
    pub consultation: Option<String>,
    /// Marked confidential by the practice (withheld from third parties).
    pub confidential: bool,
    /// The idempotency key a third-party supplier wrote the entry with (write-back only).
    pub external_key: Option<String>,
    /// The supplier's own identifier of what it wrote (write-back only).
    pub external_id: Option<ExternalId>,
}

/// The identifier a third-party supplier gave a reading it wrote: its identifier space
/// (a URI) and the value in it. GP systems keep it with the entries, so every reader
/// of the record sees which supplier reading an entry is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExternalId {
    /// The supplier's identifier space, a URI (at most 200 characters).
    pub system: String,
    /// The identifier (at most 200 characters).
    pub value: String,
}

impl ExternalId {
    /// Longest system or value a GP system keeps.
    pub const MAX: usize = 200;

    /// The identifier, if `system` and `value` are both 1 to [`Self::MAX`] characters
    /// without control characters; else why not.
    pub fn new(system: &str, value: &str) -> Result<Self, String> {
        for (name, v) in [("system", system), ("value", value)] {
            let n = v.chars().count();
            if n == 0 || n > Self::MAX || v.chars().any(char::is_control) {
                return Err(format!(
                    "the external identifier's {name} must be 1 to {} characters without control characters",
                    Self::MAX
                ));
            }
        }
        Ok(Self {
            system: system.to_owned(),
            value: value.to_owned(),
        })
    }
}

/// The blood pressures among `observations`: each systolic reading with a value and
/// the first diastolic reading with a value taken with it (same time, author,
/// consultation, confidentiality and write), as `(systolic, diastolic)` indices. GP
/// systems that file the two readings apart link them by this pairing (EMIS Web's
/// `ParentGUID`, SystmOne's `ParentEventUID`); Vision writes each pair as one BP row.
pub fn blood_pressure_pairs(observations: &[Observation]) -> Vec<(usize, usize)> {
    let partner = |x: &Observation, d: &Observation| {
        d.concept.key == "diastolic-bp"
            && d.meta.date == x.meta.date
            && d.meta.author == x.meta.author
            && d.meta.consultation == x.meta.consultation
            && d.meta.confidential == x.meta.confidential
            // Readings written through the API pair only within their own write.
            && d.meta.external_key == x.meta.external_key
            && d.value.is_some()
    };
    let mut used = vec![false; observations.len()];
    let mut pairs = Vec::new();
    for (i, x) in observations.iter().enumerate() {
        if used[i] {
            continue;
        }
        used[i] = true;
        if x.concept.key != "systolic-bp" || x.value.is_none() {
            continue;
        }
        let found = observations
            .iter()
            .enumerate()
            .position(|(j, d)| !used[j] && partner(x, d));
        if let Some(j) = found {
            used[j] = true;
            pairs.push((i, j));
        }
    }
    pairs
}

/// Allergy category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AllergyCategory {
    /// Drug.
    Drug,
    /// Food.
    Food,
    /// Environment.
    Environment,
}

/// Allergy status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AllergyStatus {
    /// Active.
    Active,
    /// Resolved.
    Resolved,
}

/// Reaction severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Severity {
    /// Mild.
    Mild,
    /// Moderate.
    Moderate,
    /// Severe.
    Severe,
}

/// An allergy or intolerance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Allergy {
    /// Common fields.
    #[serde(flatten)]
    pub meta: EntryMeta,
    /// The allergy concept.
    pub concept: &'static Concept,
    /// Category.
    pub category: AllergyCategory,
    /// Status.
    pub status: AllergyStatus,
    /// When resolved.
    pub end_date: Option<SimDate>,
    /// Reaction manifestation.
    pub reaction: Option<&'static Concept>,
    /// Severity of the reaction.
    pub severity: Severity,
}

/// Acute (one-off) or repeat prescribing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MedicationKind {
    /// One-off course.
    Acute,
    /// Repeat prescription.
    Repeat,
}

/// Medication status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MedicationStatus {
    /// Being taken.
    Active,
    /// Course finished.
    Completed,
    /// Stopped early.
    Cancelled,
}

/// A prescribed medication.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Medication {
    /// Common fields.
    #[serde(flatten)]
    pub meta: EntryMeta,
    /// The dm+d drug.
    pub drug: &'static Concept,
    /// Free-text dosage instructions.
    pub dosage: String,
    /// Quantity per issue.
    pub quantity: u32,
    /// Units of the quantity (`tablet`, `capsule`, `dose`).
    pub quantity_units: String,
    /// Acute or repeat.
    pub kind: MedicationKind,
    /// Status.
    pub status: MedicationStatus,
    /// When it ended (completed or cancelled).
    pub end_date: Option<SimDate>,
}

/// Problem status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ProblemStatus {
    /// Current.
    Active,
    /// Past.
    Past,
}

/// Problem significance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Significance {
    /// Major.
    Major,
    /// Minor.
    Minor,
}

/// A problem-list entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// Common fields (date = onset).
    #[serde(flatten)]
    pub meta: EntryMeta,
    /// The diagnosis.
    pub concept: &'static Concept,
    /// Status.
    pub status: ProblemStatus,
    /// Significance.
    pub significance: Significance,
    /// When it ended (past problems).
    pub end_date: Option<SimDate>,
}

/// A measurement or coded finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observation {
    /// Common fields.
    #[serde(flatten)]
    pub meta: EntryMeta,
    /// What was observed.
    pub concept: &'static Concept,
    /// Numeric value in `units`.
    pub value: Option<f64>,
    /// UCUM units of `value`.
    pub units: Option<&'static str>,
    /// What a supplier's reading carried beyond its value (write-back only): each
    /// simulator holds and serves what its system can.
    pub qualifiers: Option<Box<Qualifiers>>,
}

/// A code as a supplier sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Code {
    pub system: String,
    pub code: String,
    pub display: Option<String>,
}

/// A written reading's details (see gp-adapter's `ReadingDetails`). On a blood pressure
/// written as two entries, each entry holds its own `interpretation`; the first (systolic)
/// holds the panel's in `panel_interpretation` and the whole reading's other details.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Qualifiers {
    /// This measurement's interpretation.
    pub interpretation: Option<Code>,
    /// The whole panel's interpretation (blood pressure).
    pub panel_interpretation: Option<Code>,
    pub body_site: Option<Code>,
    pub method: Option<Code>,
    /// Device name.
    pub device: Option<String>,
    /// The supplier's own codings of the concept (LOINC), in order.
    pub original_codings: Vec<Code>,
}

/// A vaccination given.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Immunisation {
    /// Common fields.
    #[serde(flatten)]
    pub meta: EntryMeta,
    /// The vaccination.
    pub concept: &'static Concept,
    /// Vaccine batch number.
    pub batch: String,
    /// Dose number in the course.
    pub dose_sequence: u32,
}

/// A consultation (encounter).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Consultation {
    /// Common fields (date has a time; author = clinician).
    #[serde(flatten)]
    pub meta: EntryMeta,
    /// Consultation type.
    pub kind: &'static Concept,
    /// Duration in minutes.
    pub duration_minutes: u32,
    /// The clinician seen.
    pub clinician: String,
}

/// One row of the sandbox manifest (`gp-gateway sandbox --print-manifest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestPatient {
    /// NHS number.
    pub nhs_number: String,
    /// Practice ODS code.
    pub practice: String,
    /// System id (`emis`, `tpp`, `vision`, `microtest`).
    pub system: String,
    /// `sensitive`, `dissent`, `deceased`; empty for an ordinary patient.
    pub flags: Vec<String>,
}
