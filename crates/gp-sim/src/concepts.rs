//! The catalogue of every clinical concept the generator uses.
//!
//! Provenance: hand-curated from NHS Digital TRUD Read v2/CTV3→SNOMED CT maps and
//! dm+d; verify before clinical use. A code is given only where we are confident of
//! it; otherwise the field is `None` (Read v2 was frozen in 2016, so newer concepts
//! such as COVID-19 vaccination have none). dm+d ids are VMP ids (which are SNOMED CT
//! concept ids). The EMIS local codes (`EMIS…`) are illustrative stand-ins for the
//! kind of local code EMIS Web uses; they are NOT EMIS's real codes.
//!
//! Adapters carry their own terminology maps keyed by these codes; a test elsewhere
//! checks every code in [`all()`] has a map entry.

use serde::Serialize;

/// What a concept is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConceptKind {
    /// A diagnosis on the problem list.
    Problem,
    /// An allergy or intolerance.
    Allergy,
    /// An allergic reaction (manifestation).
    Reaction,
    /// A measurement or finding.
    Observation,
    /// A vaccination.
    Immunisation,
    /// A medicine (dm+d VMP).
    Drug,
    /// The type of a consultation.
    ConsultationType,
}

/// One clinical concept and its codes in every scheme a simulator may emit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Concept {
    /// Stable simulator key (`"asthma"`); never shown to suppliers.
    pub key: &'static str,
    /// What the concept is used for.
    pub kind: ConceptKind,
    /// SNOMED CT concept id.
    pub snomed: &'static str,
    /// SNOMED CT preferred term (UK edition).
    pub term: &'static str,
    /// Read v2 code (5 characters, trailing dots).
    pub read2: Option<&'static str>,
    /// CTV3 code.
    pub ctv3: Option<&'static str>,
    /// EMIS local (EMISCLINICAL) code, for the few concepts EMIS codes locally.
    pub emis: Option<&'static str>,
    /// dm+d VMP id, for drugs.
    pub dmd: Option<&'static str>,
    /// UCUM unit of the value, for quantitative observations.
    pub units: Option<&'static str>,
}

const fn c(
    key: &'static str,
    kind: ConceptKind,
    snomed: &'static str,
    term: &'static str,
    read2: Option<&'static str>,
    ctv3: Option<&'static str>,
) -> Concept {
    Concept {
        key,
        kind,
        snomed,
        term,
        read2,
        ctv3,
        emis: None,
        dmd: None,
        units: None,
    }
}

const fn obs(
    key: &'static str,
    snomed: &'static str,
    term: &'static str,
    read2: &'static str,
    ctv3: Option<&'static str>,
    units: Option<&'static str>,
) -> Concept {
    Concept {
        units,
        ..c(
            key,
            ConceptKind::Observation,
            snomed,
            term,
            Some(read2),
            ctv3,
        )
    }
}

/// A quantitative observation with no Read v2 or CTV3 code (recorded in SNOMED CT).
const fn obs_sct(
    key: &'static str,
    snomed: &'static str,
    term: &'static str,
    units: &'static str,
) -> Concept {
    Concept {
        units: Some(units),
        ..c(key, ConceptKind::Observation, snomed, term, None, None)
    }
}

const fn drug(key: &'static str, vmp: &'static str, term: &'static str) -> Concept {
    Concept {
        dmd: Some(vmp),
        ..c(key, ConceptKind::Drug, vmp, term, None, None)
    }
}

const fn emis_local(concept: Concept, code: &'static str) -> Concept {
    Concept {
        emis: Some(code),
        ..concept
    }
}

use ConceptKind::{Allergy, ConsultationType, Immunisation, Problem, Reaction};

static ALL: &[Concept] = &[
    // Problems
    c(
        "asthma",
        Problem,
        "195967001",
        "Asthma",
        Some("H33.."),
        Some("H33.."),
    ),
    c(
        "essential-hypertension",
        Problem,
        "59621000",
        "Essential hypertension",
        Some("G20.."),
        Some("G20.."),
    ),
    c(
        "type-2-diabetes",
        Problem,
        "44054006",
        "Type 2 diabetes mellitus",
        Some("C10F."),
        Some("X40J5"),
    ),
    c(
        "copd",
        Problem,
        "13645005",
        "Chronic obstructive lung disease",
        Some("H3..."),
        None,
    ),
    // Allergies and reactions
    c(
        "penicillin-allergy",
        Allergy,
        "91936005",
        "Allergy to penicillin",
        Some("14L4."),
        None,
    ),
    c(
        "peanut-allergy",
        Allergy,
        "91935009",
        "Allergy to peanut",
        None,
        None,
    ),
    c(
        "house-dust-mite-allergy",
        Allergy,
        "232350006",
        "House dust mite allergy",
        None,
        None,
    ),
    c(
        "grass-pollen-allergy",
        Allergy,
        "418689008",
        "Allergy to grass pollen",
        None,
        None,
    ),
    c(
        "urticaria",
        Reaction,
        "126485001",
        "Urticaria",
        Some("M28.."),
        None,
    ),
    c(
        "anaphylaxis",
        Reaction,
        "39579001",
        "Anaphylaxis",
        None,
        None,
    ),
    // Observations
    obs(
        "systolic-bp",
        "271649006",
        "Systolic blood pressure",
        "2469.",
        Some("2469."),
        Some("mm[Hg]"),
    ),
    obs(
        "diastolic-bp",
        "271650006",
        "Diastolic blood pressure",
        "246A.",
        Some("246A."),
        Some("mm[Hg]"),
    ),
    obs(
        "body-weight",
        "27113001",
        "Body weight",
        "22A..",
        Some("22A.."),
        Some("kg"),
    ),
    obs(
        "body-height",
        "50373000",
        "Body height measure",
        "229..",
        Some("229.."),
        Some("cm"),
    ),
    obs(
        "bmi",
        "60621009",
        "Body mass index",
        "22K..",
        Some("22K.."),
        Some("kg/m2"),
    ),
    obs(
        "hba1c",
        "999791000000106",
        "Haemoglobin A1c level - IFCC standardised",
        "42W5.",
        Some("XaPbt"),
        Some("mmol/mol"),
    ),
    obs(
        "pulse-rate",
        "78564009",
        "Pulse rate",
        "242..",
        Some("242.."),
        Some("/min"),
    ),
    // Vital signs suppliers write (FHIR R4 vital-signs set and remote monitoring). Recorded
    // in SNOMED CT by every system (English GP systems have coded in SNOMED CT since
    // 2018); no Read v2 or CTV3 code is given where we are not confident of one.
    obs_sct("heart-rate", "364075005", "Heart rate", "/min"),
    obs_sct("respiratory-rate", "86290005", "Respiratory rate", "/min"),
    obs_sct("body-temperature", "386725007", "Body temperature", "Cel"),
    obs_sct(
        "oxygen-saturation",
        "431314004",
        "Peripheral oxygen saturation",
        "%",
    ),
    obs_sct(
        "head-circumference",
        "363812007",
        "Head circumference",
        "cm",
    ),
    obs_sct(
        "blood-glucose",
        "997671000000106",
        "Blood glucose level",
        "mmol/L",
    ),
    obs_sct("peak-flow", "313193002", "Peak flow rate", "L/min"),
    obs_sct(
        "waist-circumference",
        "276361009",
        "Waist circumference",
        "cm",
    ),
    obs(
        "serum-cholesterol",
        "1005671000000105",
        "Serum cholesterol level",
        "44P..",
        None,
        Some("mmol/L"),
    ),
    obs(
        "never-smoked",
        "266919005",
        "Never smoked tobacco",
        "1371.",
        Some("XE0oh"),
        None,
    ),
    obs(
        "ex-smoker",
        "8517006",
        "Ex-smoker",
        "137S.",
        Some("Ub1na"),
        None,
    ),
    obs(
        "current-smoker",
        "77176002",
        "Smoker",
        "137R.",
        Some("137R."),
        None,
    ),
    // Immunisations
    c(
        "influenza-vaccination",
        Immunisation,
        "86198006",
        "Influenza vaccination",
        Some("65E.."),
        Some("65E.."),
    ),
    c(
        "pneumococcal-vaccination",
        Immunisation,
        "12866006",
        "Pneumococcal vaccination",
        Some("6572."),
        None,
    ),
    c(
        "mmr-vaccination",
        Immunisation,
        "38598009",
        "Measles-mumps-rubella vaccination",
        None,
        None,
    ),
    emis_local(
        c(
            "covid-vaccination",
            Immunisation,
            "1324681000000101",
            "Administration of first dose of severe acute respiratory syndrome coronavirus 2 vaccine",
            None,
            None,
        ),
        "EMISCOV001",
    ),
    // Drugs (dm+d VMPs)
    drug(
        "salbutamol-inhaler",
        "39113611000001102",
        "Salbutamol 100micrograms/dose inhaler CFC free",
    ),
    drug("metformin", "325278007", "Metformin 500mg tablets"),
    drug("amlodipine", "319283006", "Amlodipine 5mg tablets"),
    drug("ramipril", "318901006", "Ramipril 2.5mg capsules"),
    drug("amoxicillin", "323509004", "Amoxicillin 250mg capsules"),
    drug("paracetamol", "322236009", "Paracetamol 500mg tablets"),
    // Consultation types: EMIS records these with local codes.
    emis_local(
        c(
            "face-to-face-consultation",
            ConsultationType,
            "11429006",
            "Consultation",
            None,
            None,
        ),
        "EMISCSFACE",
    ),
    emis_local(
        c(
            "telephone-consultation",
            ConsultationType,
            "185317003",
            "Telephone encounter",
            None,
            None,
        ),
        "EMISCSTELE",
    ),
    emis_local(
        c(
            "home-visit",
            ConsultationType,
            "439708006",
            "Home visit",
            None,
            None,
        ),
        "EMISCSHOME",
    ),
];

/// Every concept the simulators can emit.
pub fn all() -> &'static [Concept] {
    ALL
}

/// The concept with simulator key `key`.
pub fn get(key: &str) -> Option<&'static Concept> {
    ALL.iter().find(|c| c.key == key)
}

/// The measurement concept a native write names by Read v2 code (EMIS, Vision).
pub fn measurement_by_read2(code: &str) -> Option<&'static Concept> {
    measurements().find(|c| c.read2 == Some(code))
}

/// The measurement concept a native write names by CTV3 code (TPP SystmOne).
pub fn measurement_by_ctv3(code: &str) -> Option<&'static Concept> {
    measurements().find(|c| c.ctv3 == Some(code))
}

/// The measurement concept a native write names by SNOMED CT id (Microtest Evolution).
pub fn measurement_by_snomed(code: &str) -> Option<&'static Concept> {
    measurements().find(|c| c.snomed == code)
}

/// Quantitative observation concepts: the only ones a supplier may write.
fn measurements() -> impl Iterator<Item = &'static Concept> {
    ALL.iter()
        .filter(|c| c.kind == ConceptKind::Observation && c.units.is_some())
}

/// Like [`get`], for keys written in this crate. An unknown key is a programming error
/// caught by the catalogue test; falling back to the first entry keeps it panic-free.
pub(crate) fn known(key: &str) -> &'static Concept {
    get(key).unwrap_or(&ALL[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_unique_and_codes_well_formed() {
        let mut keys: Vec<_> = all().iter().map(|c| c.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), all().len());
        for c in all() {
            assert!(
                c.snomed.bytes().all(|b| b.is_ascii_digit()) && c.snomed.len() >= 6,
                "{}",
                c.key
            );
            if let Some(r) = c.read2 {
                assert_eq!(r.len(), 5, "{}", c.key);
            }
            if let Some(r) = c.ctv3 {
                assert_eq!(r.len(), 5, "{}", c.key);
            }
            assert_eq!(c.kind == ConceptKind::Drug, c.dmd.is_some(), "{}", c.key);
        }
    }
}
